//! Scaling out with real BGP: two balancers run udplb (the same Maglev
//! configuration) and BIRD 2 with the README's configuration
//! (scripts/bird/), and announce the frontends to a router running BIRD
//! with `merge paths on`, which spreads the client's flows over them by
//! ECMP. udplb puts each frontend's address on lo only while it can serve
//! it; BIRD's `protocol direct` announces what is there.
//!
//!   - 1000 flows keep their backend across both balancers; SIGTERM on one
//!     withdraws it from the router's multipath route before it detaches,
//!     and the flows move to the other balancer with their backends (the
//!     withdrawal time and the loss window are printed);
//!   - a frontend whose backends are all down on one balancer is withdrawn
//!     there only, and announced again when they are back;
//!   - a restart announces again only once attached and healthy; a killed
//!     udplb's address is removed at the next start, or expires with its
//!     lease.

use udplb_testkit as support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::bgp::*;
use support::operate::status;
use support::process::*;

const WAIT: Duration = Duration::from_secs(20);

fn start(t: &Bgp, i: usize, conf: &TempFile) -> Udplb {
    Udplb::start(&t.lbs[i], &["--config", conf.path()])
}

/// Blocks (or unblocks) what backend host `srv` sends to balancer `lb`
/// directly: its health probes' answers. Client traffic still flows.
fn cut(t: &Bgp, srv: usize, lb: usize, on: bool) {
    let verb = if on { "add" } else { "del" };
    let dst = format!("198.18.10.{}/32", lb + 1);
    t.srv[srv].ip(&["route", verb, "blackhole", &dst]);
}

#[test]
fn the_readme_shows_the_bird_configurations_the_tests_run() {
    let readme = include_str!("../README.md");
    for (name, conf) in [("balancer", BALANCER_CONF), ("router", ROUTER_CONF)] {
        assert!(
            readme.contains(&format!("```\n{conf}```\n")),
            "README.md must include scripts/bird/{name}.conf verbatim"
        );
    }
}

#[test]
fn flows_keep_their_backend_when_a_balancer_stops() {
    let t = topology("bgs");
    let _echo = t.echoes();
    let conf = TempFile::new("lb.toml", &udplb_conf("1s", 3));
    let t0 = Instant::now();
    let mut lbs: Vec<Udplb> = (0..2).map(|i| start(&t, i, &conf)).collect();
    for u in &mut lbs {
        u.wait_for(&format!("announcing {F1} on lo"), WAIT);
    }
    t.wait_hops(F1, &HOPS, WAIT);
    println!(
        "both balancers in the router's route {:?} after starting udplb",
        t0.elapsed()
    );

    let first = flows(&t.client, F1, 1000);
    assert_eq!(flows(&t.client, F1, 1000), first, "flows changed backend");
    for b in ["srv0", "srv1"] {
        let n = first.values().filter(|v| *v == b).count();
        assert!(n > 300, "{b} got {n} of 1000 flows");
    }

    // ECMP spread the flows: balancer 0 carried its share of those 2000
    // datagrams (read now: its status goes with it).
    let verdicts = &status(&t.lbs[0])["verdicts"];
    let forwarded = verdicts["forwarded"].as_u64().unwrap_or(0);
    assert!(
        forwarded > 300,
        "balancer 0 carried {forwarded}: {verdicts}"
    );

    // Traffic on 64 of those flows while balancer 0 stops: SIGTERM
    // withdraws its address, waits the grace (1 s), then detaches.
    let (streamed, withdrawal, out) = std::thread::scope(|s| {
        let traffic = s.spawn(|| {
            stream(
                &t.client,
                F1,
                &first,
                64,
                Duration::from_millis(1),
                Duration::from_millis(3000),
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let lb0 = lbs.remove(0);
        let sent = Instant::now();
        let stopping = s.spawn(move || lb0.stop(Signal::SIGTERM));
        t.wait_hops(F1, &HOPS[1..], Duration::from_secs(5));
        let withdrawal = sent.elapsed();
        let (status, out) = stopping.join().unwrap();
        assert!(status.success(), "{out}");
        (traffic.join().unwrap(), withdrawal, out)
    });
    assert!(
        out.contains(&format!("withdrew {F1} from lo: stopping")),
        "{out}"
    );
    assert!(out.contains("detaching in 1s"), "{out}");
    println!(
        "SIGTERM to the router's withdrawal: {withdrawal:?}; lost {} of {} datagrams \
         (1 every ms over 64 flows), loss window {:?}",
        streamed.lost.len(),
        streamed.sent,
        streamed.loss_window()
    );
    assert!(
        withdrawal < Duration::from_secs(1),
        "the route must go within the grace: {withdrawal:?}"
    );
    assert!(
        streamed.lost.is_empty(),
        "datagrams lost although the route went before the datapath: {:?}",
        streamed.lost
    );
    assert_eq!(
        flows(&t.client, F1, 1000),
        first,
        "a flow moved when a balancer was withdrawn"
    );
    // BGP itself stayed up: the route was withdrawn, not the session.
    assert!(t.birds[1].birdc("show protocols").contains("Established"));
}

#[test]
fn a_frontend_whose_backends_are_down_on_one_balancer_is_withdrawn_there_only() {
    let t = topology("bgh");
    let mut echo = t.echoes();
    let conf = TempFile::new("lb.toml", &udplb_conf("1s", 3));
    let mut lbs: Vec<Udplb> = (0..2).map(|i| start(&t, i, &conf)).collect();
    for u in &mut lbs {
        u.wait_for(&format!("announcing {F2} on lo"), WAIT);
    }
    t.wait_hops(F1, &HOPS, WAIT);
    t.wait_hops(F2, &HOPS, WAIT);

    // Balancer 0 loses sight of F2's only backend: it withdraws F2, and
    // nothing else; balancer 1 goes on announcing both.
    cut(&t, 2, 0, true);
    lbs[0].wait_for(
        &format!("withdrew {F2} from lo: {F2}:53 has no backend up"),
        WAIT,
    );
    t.wait_hops(F2, &HOPS[1..], Duration::from_secs(5));
    assert_eq!(t.next_hops(F1), HOPS, "F1 stays on both balancers");
    let answered = flows(&t.client, F2, 100);
    assert!(answered.values().all(|b| b == "srv2"), "{answered:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.next_hops(F2), HOPS[1..], "no flapping");

    // Back: announced again.
    cut(&t, 2, 0, false);
    lbs[0].wait_for(
        &format!("announcing {F2} on lo: {F2}:53 has 1 backend up"),
        WAIT,
    );
    t.wait_hops(F2, &HOPS, Duration::from_secs(5));

    // Down everywhere: no balancer announces it; F1 is untouched.
    echo[2].tcp = None;
    for u in &mut lbs {
        u.wait_for(
            &format!("withdrew {F2} from lo: {F2}:53 has no backend up"),
            WAIT,
        );
    }
    t.wait_hops(F2, &[], Duration::from_secs(5));
    assert_eq!(t.next_hops(F1), HOPS);
    let outs: Vec<String> = lbs.into_iter().map(|u| u.stop(Signal::SIGTERM).1).collect();
    for out in outs {
        assert!(
            !out.contains(&format!("withdrew {F1} from lo: {F1}")),
            "{out}"
        );
    }
}

#[test]
fn a_restart_announces_once_attached_and_healthy_and_a_killed_one_does_not_linger() {
    let t = topology("bgr");
    let _echo = t.echoes();
    let lease = 3;
    let conf = TempFile::new("lb.toml", &udplb_conf("1s", lease));
    let mut lb1 = start(&t, 1, &conf);
    lb1.wait_for(&format!("announcing {F1} on lo"), WAIT);
    let mut lb0 = start(&t, 0, &conf);
    lb0.wait_for(&format!("announcing {F1} on lo"), WAIT);
    t.wait_hops(F1, &HOPS, WAIT);

    // SIGKILL: no withdrawal, the address stays ... until the next start,
    // which removes it before it attaches.
    let (_, out) = lb0.stop(Signal::SIGKILL);
    assert!(!out.contains("withdrew"), "{out}");
    assert_eq!(t.next_hops(F1), HOPS, "the address stays after SIGKILL");
    let mut lb0 = start(&t, 0, &conf);
    lb0.wait_for(&format!("announcing {F1} on lo"), WAIT);
    let removed = lb0.line_with(&format!("removed {F1} from lo: an earlier udplb left it"));
    let i = |needle: &str| lb0.output.iter().position(|l| l.contains(needle));
    assert!(i(removed) < i("attached to"), "{:?}", lb0.output);

    // ... or until its lease runs out, with no udplb at all.
    let (_, out) = lb0.stop(Signal::SIGKILL);
    assert!(!out.contains("withdrew"), "{out}");
    let killed = Instant::now();
    let waited = t.wait_hops(F1, &HOPS[1..], Duration::from_secs(u64::from(lease) + 3));
    println!(
        "SIGKILL to the router's withdrawal (lease {lease} s): {:?}",
        killed.elapsed()
    );
    assert!(
        waited >= Duration::from_millis(500),
        "withdrawn at once? {waited:?}"
    );

    // A restart while F1's backends do not answer balancer 0: attached, F2
    // announced, F1 not (its backends start up, but unproven) ...
    cut(&t, 0, 0, true);
    cut(&t, 1, 0, true);
    let mut lb0 = start(&t, 0, &conf);
    lb0.wait_for(&format!("announcing {F2} on lo"), WAIT);
    lb0.wait_for(&format!("{F1}:53 -> 198.18.10.12:5353 down"), WAIT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        t.next_hops(F1),
        HOPS[1..],
        "announced before it was healthy"
    );
    assert!(
        !lb0.output
            .iter()
            .any(|l| l.contains(&format!("announcing {F1}"))),
        "{:?}",
        lb0.output
    );
    // ... and once they answer, announced, after the attach.
    cut(&t, 0, 0, false);
    cut(&t, 1, 0, false);
    let restarted = Instant::now();
    lb0.wait_for(&format!("announcing {F1} on lo"), WAIT);
    t.wait_hops(F1, &HOPS, WAIT);
    println!(
        "backends answering to both next hops at the router: {:?}",
        restarted.elapsed()
    );
    let i = |needle: &str| lb0.output.iter().position(|l| l.contains(needle)).unwrap();
    assert!(i("attached to lan0") < i(&format!("announcing {F2}")));
    // Announced with the first backend that answered; flows agree across
    // the balancers once both see the same backends up.
    for b in ["198.18.10.11", "198.18.10.12"] {
        lb0.wait_for(&format!("{F1}:53 -> {b}:5353 up"), WAIT);
    }
    let first = flows(&t.client, F1, 200);
    assert_eq!(flows(&t.client, F1, 200), first);
    for b in ["srv0", "srv1"] {
        assert!(first.values().any(|v| v == b), "{first:?}");
    }
    for u in [lb0, lb1] {
        let (status, out) = u.stop(Signal::SIGTERM);
        assert!(status.success(), "{out}");
    }
    t.wait_hops(F1, &[], Duration::from_secs(5));
}

#[test]
fn addresses_udplb_did_not_add_stay_and_a_reload_can_stop_announcing() {
    let ns = support::netns::Netns::new("ban");
    // Someone else's address, which is also a frontend's.
    ns.ip(&["addr", "add", &format!("{F2}/32"), "dev", "lo"]);
    let _backends: Vec<_> = ["0.0.0.0:5301", "0.0.0.0:5302", "[::]:5303"]
        .iter()
        .map(|a| ns.udp_bind(a))
        .collect();
    let text = |last: &str| {
        format!(
            "interface = \"lo\"\nannounce_interface = \"lo\"\nannounce_grace = \"0s\"\n\
             [[frontend]]\nlisten = \"{F1}:53\"\nbackends = [5301]\n\
             [[frontend]]\nlisten = \"{F2}:53\"\nbackends = [5302]\n\
             [[frontend]]\nlisten = \"[2001:2:100::1]:53\"\nbackends = [5303]\n{last}"
        )
    };
    let conf = TempFile::new("lb.toml", &text(""));
    let mut u = Udplb::start(&ns, &["--config", conf.path()]);
    u.wait_for(
        &format!("announcing {F1} on lo: {F1}:53 has 1 backend up"),
        WAIT,
    );
    u.wait_for("announcing 2001:2:100::1 on lo", WAIT);
    u.wait_for(
        &format!("{F2} is on lo already and udplb did not add it"),
        WAIT,
    );
    let v4 = ns.ip(&["-4", "addr", "show", "dev", "lo"]);
    assert!(
        v4.contains(&format!("{F1}/32 scope global dynamic")),
        "{v4}"
    );
    let v6 = ns.ip(&["-6", "addr", "show", "dev", "lo"]);
    assert!(v6.contains("2001:2:100::1/128"), "{v6}");

    // A reload that stops announcing the IPv6 frontend withdraws it.
    conf.write(&text("announce = false\n"));
    u.signal(Signal::SIGHUP);
    u.wait_for("[2001:2:100::1]:53: no longer announced", WAIT);
    u.wait_for(
        "withdrew 2001:2:100::1 from lo: no frontend announces it any more",
        WAIT,
    );
    let (status, out) = u.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert!(!out.contains("detaching in"), "grace 0: no wait\n{out}");
    let left = ns.ip(&["addr", "show", "dev", "lo"]);
    assert!(!left.contains(&format!("{F1}/")), "{left}");
    assert!(!left.contains("2001:2:100::1"), "{left}");
    assert!(left.contains(&format!("{F2}/32")), "not udplb's: {left}");
}
