//! Direct server return through real tunnels (modes ipip and gue): dig
//! asks the frontend, udplb encapsulates each query in XDP, the backend's
//! kernel takes it out of the tunnel (tunl0, ip6tnl0, fou), and dnsmasq
//! answers the client itself from the frontend's address, which dig
//! insists on. Each backend is set up by the README's lines, run verbatim
//! from scripts/dsr/.
//!
//! This machine kind's kernel has no ipip, fou or ip6_tunnel modules, so
//! the tests are ignored by `cargo test` (and counted by `make test`'s
//! summary); `make test-kernels` runs them in a VM of a Debian kernel that
//! has them. Where the modules cannot be loaded, the tests fail saying the
//! kernel lacks them.
//!
//! client (198.18.0.1) -- balancer (198.18.0.2 | 198.18.1.1 | 198.18.2.1)
//! -- backends 198.18.1.2, 198.18.2.2 (IPv6 alike), routed through the
//! balancer (tests/support/topology.rs), which does not own the frontend's
//! address: the answers pass its kernel as any routed packet, never udplb.

use udplb_testkit as support;

use support::operate::status;
use support::process::Udplb;
use support::servers::{dig_svc, dnsmasq, wait_bound};
use support::topology::{triangle, Triangle, VIP4, VIP6};

const IPIP: &str = include_str!("../scripts/dsr/backend-ipip.sh");
const GUE: &str = include_str!("../scripts/dsr/backend-gue.sh");
const ANSWERS: [&str; 2] = ["198.19.1.2", "198.19.2.2"];

/// The triangle with two dnsmasq backends set up by `setup`, the
/// frontend's address only on the backends.
fn topology(setup: &str) -> (Triangle, Vec<support::servers::Server>) {
    let t = triangle();
    t.lb.ip(&["addr", "del", &format!("{VIP4}/32"), "dev", "lo"]);
    t.lb.ip(&["-6", "addr", "del", &format!("{VIP6}/128"), "dev", "lo"]);
    // dig retries from a new socket on the same port (see dsr_l2.rs).
    t.client
        .exec(&["sysctl", "-qw", "net.ipv4.udp_early_demux=0"]);
    for srv in &t.srv {
        if let Err(e) = srv.try_exec(&["sh", "-ec", setup]) {
            panic!(
                "the kernel lacks what the README's backend setup needs (ipip, fou, \
                 ip6_tunnel: CONFIG_NET_IPIP, CONFIG_NET_FOU, CONFIG_IPV6_TUNNEL); \
                 `make test-kernels` runs this in a VM: {e:#}"
            );
        }
    }
    let dns: Vec<_> = (0..2)
        .map(|i| dnsmasq(&t.srv[i], 53, "svc.test", ANSWERS[i]))
        .collect();
    for srv in &t.srv {
        wait_bound(srv, 53);
    }
    (t, dns)
}

/// Queries from 12 source ports per family in `families`: every one
/// answered from the frontend's address, by both backends between them,
/// none through udplb.
fn answered(t: &Triangle, families: &[(&str, &str)]) {
    let mut seen = [0usize; 2];
    for (server, family) in families {
        for sport in 40000..40012u16 {
            let (answer, said) = dig_svc(&t.client, server, sport, 2);
            let i = ANSWERS
                .iter()
                .position(|a| *a == answer)
                .unwrap_or_else(|| {
                    let verdicts = status(&t.lb)["verdicts"].to_string();
                    panic!("{family} query from port {sport}: dig said {said:?}; {verdicts}")
                });
            seen[i] += 1;
        }
    }
    assert!(
        seen.iter().all(|&n| n > 0),
        "both backends answered: {seen:?}"
    );
    let st = status(&t.lb);
    let sent = st["verdicts"]["dsr_sent"].as_u64().unwrap();
    assert!(sent >= 12 * families.len() as u64, "dsr_sent {sent}");
    for fe in st["frontends"].as_array().unwrap() {
        assert_eq!(fe["replies"]["packets"], 0, "no reply passes udplb");
    }
}

fn frontends(v6: bool) -> Vec<String> {
    let mut f = vec![format!("{VIP4}:53=198.18.1.2:53,198.18.2.2:53")];
    if v6 {
        f.push(format!("[{VIP6}]:53=[2001:2:1::2]:53,[2001:2:2::2]:53"));
    }
    f
}

#[test]
#[ignore = "needs the ipip and ip6_tunnel modules: `make test-kernels` runs it in a VM"]
fn ipip_backends_answer_dig_from_the_frontend_address() {
    let (t, _dns) = topology(IPIP);
    let fe = frontends(true);
    let mut args = vec!["--sched", "maglev", "--mode", "ipip"];
    args.extend([
        "--tunnel-source",
        "198.18.1.1",
        "--tunnel-source",
        "2001:2:1::1",
    ]);
    args.push("l0,l1,l2");
    args.extend(fe.iter().map(String::as_str));
    let lb = Udplb::start(&t.lb, &args);
    assert!(lb
        .line_with(&format!("{VIP4}:53 ->"))
        .contains("(maglev, ipip)"));
    answered(&t, &[(VIP4, "IPv4"), (VIP6, "IPv6")]);
}

#[test]
#[ignore = "needs the fou and ipip modules: `make test-kernels` runs it in a VM"]
fn gue_backends_answer_dig_from_the_frontend_address() {
    let (t, _dns) = topology(GUE);
    let fe = frontends(false);
    let mut args = vec!["--sched", "maglev", "--mode", "gue:6080"];
    args.extend(["--tunnel-source", "198.18.1.1", "l0,l1,l2"]);
    args.extend(fe.iter().map(String::as_str));
    let lb = Udplb::start(&t.lb, &args);
    assert!(lb
        .line_with(&format!("{VIP4}:53 ->"))
        .contains("(maglev, gue:6080)"));
    answered(&t, &[(VIP4, "IPv4")]);
}
