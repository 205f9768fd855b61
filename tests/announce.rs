//! Route health injection on one host, without BGP: what udplb puts on its
//! announce interface, and when (tests/bgp.rs has the routers).
//!
//!   - a frontend address over local backends with an active udp check is
//!     announced (its probes cannot wait for that address) and its backends
//!     stay up;
//!   - an address the kernel refuses is logged once, not at every event;
//!   - a udplb replaced by another (`--force`) withdraws what only it
//!     announced, leaves what the new one announces, and exits;
//!   - a second udplb that fails to start (no `--force`) leaves the
//!     running one's address alone.

use udplb_testkit as support;

use std::net::UdpSocket;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::bgp::F1;
use support::netns::*;
use support::operate::status;
use support::process::*;
use support::servers::Echo;

const WAIT: Duration = Duration::from_secs(15);

/// Whether `addr` (a host address) is on `dev` in `ns`.
fn on(ns: &Netns, dev: &str, addr: &str) -> bool {
    let out = ns.ip(&["addr", "show", "dev", dev]);
    out.contains(&format!(" {addr}/"))
}

#[test]
fn local_backends_behind_a_udp_check_get_their_frontend_announced() {
    let ns = Netns::new("anu");
    let _b = [
        Echo::named(&ns, "0.0.0.0:5301", "b1"),
        Echo::named(&ns, "0.0.0.0:5302", "b2"),
    ];
    let conf = TempFile::new(
        "lb.toml",
        &format!(
            "interface = \"lo\"\nannounce_interface = \"lo\"\nannounce_grace = \"0s\"\n\
             [[frontend]]\nlisten = \"{F1}:53\"\nbackends = [5301, 5302]\n\
             [frontend.health]\ncheck = \"udp\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\n\
             rise = 2\nfall = 2\nsockets = false\n"
        ),
    );
    let mut u = Udplb::start(&ns, &["--config", conf.path()]);
    // The probes answered before the address was there.
    u.wait_for(&format!("announcing {F1} on lo: {F1}:53 has"), WAIT);
    assert!(on(&ns, "lo", F1));
    // Ten intervals later, both still up: the probes still answered.
    std::thread::sleep(Duration::from_secs(1));
    for b in status(&ns)["frontends"][0]["backends"].as_array().unwrap() {
        assert_eq!(b["health"]["state"], "up", "{b}");
    }
    // And the frontend answers at its address, from its address.
    let (from, reply) = ns.enter(|| {
        let c = UdpSocket::bind("198.18.100.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.send_to(b"hello", (F1, 53)).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = c.recv_from(&mut buf).expect("an answer from the frontend");
        (from, String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    assert_eq!(from.to_string(), format!("{F1}:53"));
    assert!(reply.ends_with(" hello"), "{reply}");
    let (status, out) = u.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert!(!out.contains(" down"), "{out}");
    assert!(!on(&ns, "lo", F1), "withdrawn on SIGTERM");
}

#[test]
fn an_address_the_kernel_refuses_is_logged_once() {
    let ns = Netns::new("anf");
    // An announce interface where IPv6 addresses are refused (EACCES).
    ns.ip(&[
        "link", "add", "ann0", "type", "veth", "peer", "name", "ann1",
    ]);
    ns.ip(&["link", "set", "ann0", "up"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.ann0.disable_ipv6=1"]);
    let _b = [ns.udp_bind("0.0.0.0:5301"), ns.udp_bind("[::]:5302")];
    let mut u = Udplb::start(
        &ns,
        &[
            "--announce",
            "ann0",
            "--announce-grace",
            "0",
            "lo",
            &format!("{F1}:53=5301"),
            "[2001:2:100::1]:53=5302",
        ],
    );
    u.wait_for(&format!("announcing {F1} on ann0"), WAIT);
    let line = u.wait_for("announcing 2001:2:100::1 on ann0", WAIT);
    assert!(
        line.contains("IPv6 is disabled") || line.contains("denied"),
        "{line}"
    );
    // Two seconds of events (the socket table alone is read ten times a
    // second, and each event syncs the addresses): still one line.
    std::thread::sleep(Duration::from_secs(2));
    let (status, out) = u.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    let failed = out.matches("announcing 2001:2:100::1 on ann0").count();
    assert_eq!(failed, 1, "{out}");
    assert!(!on(&ns, "ann0", F1), "withdrawn on SIGTERM");
}

#[test]
fn a_udplb_replaced_by_force_withdraws_what_only_it_announced_and_exits() {
    let ns = Netns::new("anr");
    let _b = Echo::named(&ns, "0.0.0.0:5301", "b1");
    let text = |announce: &str, lease: u32| {
        format!(
            "interface = \"lo\"\n{announce}announce_lease = {lease}\n\
             [[frontend]]\nlisten = \"{F1}:53\"\nbackends = [5301]\n"
        )
    };
    let on_lo = "announce_interface = \"lo\"\n";
    let announcing = TempFile::new("lb.toml", &text(on_lo, 4));
    // Renewed every 10 s: not while the test runs.
    let renewing_late = TempFile::new("lb.toml", &text(on_lo, 40));
    let silent = TempFile::new("lb.toml", &text("", 4));
    let start = |conf: &TempFile, force: bool| {
        let mut args = vec!["--config", conf.path()];
        if force {
            args.push("--force");
        }
        Udplb::start(&ns, &args)
    };
    let announced = format!("announcing {F1} on lo");
    let replaced = "another udplb --force replaced this one); stopping";

    // A announces; B, which announces nothing, replaces it: A withdraws
    // the address (nothing serves it any more) and exits.
    let mut a = start(&announcing, false);
    a.wait_for(&announced, WAIT);
    let b = start(&silent, true);
    let (status, out) = a.exited(WAIT);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("lo: udplb's XDP program was detached") && out.contains(replaced),
        "{out}"
    );
    assert!(
        out.contains(&format!("withdrew {F1} from lo: this udplb was replaced")),
        "{out}"
    );
    assert!(!on(&ns, "lo", F1), "A's address outlived it");

    // C, which announces, replaces B; D replaces C: C exits and the
    // address stays with D, which serves it. (D removes C's address when
    // it starts; a C that renewed its lease meanwhile would find it gone
    // and add it again, and withdraw that one unless D has written it
    // since: C renews too late for that here.)
    let mut c = start(&renewing_late, true);
    let (status, out) = b.exited(WAIT);
    assert!(status.success() && out.contains(replaced), "{out}");
    c.wait_for(&announced, WAIT);
    let mut d = start(&announcing, true);
    let (status, out) = c.exited(WAIT);
    assert!(status.success() && out.contains(replaced), "{out}");
    assert!(!out.contains(&format!("withdrew {F1}")), "{out}");
    d.wait_for(&announced, WAIT);
    // Three lease renewals later (every second: lease 4): still there, and
    // D never found it gone.
    std::thread::sleep(Duration::from_secs(3));
    assert!(on(&ns, "lo", F1), "D's address went");
    assert_eq!(
        status_pid(&ns),
        d.pid().as_raw() as u64,
        "the control socket is D's"
    );
    let (status, out) = d.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert!(!out.contains("without udplb"), "{out}");
    let added = format!("{announced}: {F1}:53 has 1 backend up");
    assert_eq!(out.matches(&added).count(), 1, "{out}");
}

/// A second udplb started on the same interfaces without `--force` (a
/// mistake, a unit started twice) fails to attach and must change nothing:
/// the running one's announced address stays, routers keep the route.
/// (It must not take the running udplb's address for one a killed udplb
/// left.)
#[test]
fn a_second_udplb_that_fails_to_start_leaves_the_running_ones_address() {
    let ns = Netns::new("ans");
    let _b = Echo::named(&ns, "0.0.0.0:5301", "b1");
    let conf = TempFile::new(
        "lb.toml",
        &format!(
            "interface = \"lo\"\nannounce_interface = \"lo\"\n\
             [[frontend]]\nlisten = \"{F1}:53\"\nbackends = [5301]\n"
        ),
    );
    let mut a = Udplb::start(&ns, &["--config", conf.path()]);
    a.wait_for(&format!("announcing {F1} on lo"), WAIT);
    let (code, out, err) = support::operate::udplb_cmd(&ns, &["--config", conf.path()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("use --force to replace it"), "{out}{err}");
    let still = on(&ns, "lo", F1);
    assert!(
        still,
        "the failed start withdrew the running udplb's address: {out}{err}"
    );
    let (status, out) = a.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert!(!out.contains("went from lo without udplb"), "{out}");
}

/// The PID `udplb status` reports in `ns`.
fn status_pid(ns: &Netns) -> u64 {
    status(ns)["pid"].as_u64().expect("a pid")
}
