//! The flow table through BPF_PROG_TEST_RUN (bpf/flows.h): a reply pins
//! its flow to the backend that sent it, a request then follows the pin; a
//! pin to a removed backend, a stale slot or an idle flow falls through to
//! the ring; a drained backend keeps its pinned flows; requests alone (a
//! spoofer's) never pin; replies leaving through TC egress pin too.

use udplb_testkit as support;

use support::frame::Port;
use support::packets::udp;
use support::require_root;
use support::runner::{run_once, Case, Fixture, LOOPBACK, XDP_PASS};
use udplb::abi::{self, bytes_of, Flow, FlowKey, FLOW_COUNTER_COUNT, FLOW_COUNTER_NAMES};
use udplb::config::{Config, Defaults, Sched};
use udplb::datapath::Datapath;
use udplb::plan::MapWriter;

use libbpf_rs::{MapCore, MapFlags};

const CLIENT: &str = "198.18.0.1";

struct Lb {
    dp: Datapath,
    writer: MapWriter,
}

/// CONFIG_HZ as the kernel's configuration states it, to check udplb's
/// measure against: this test needs /proc/config.gz or /boot/config-*.
fn kernel_hz() -> u64 {
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy().into_owned();
    let text = std::process::Command::new("sh")
        .args([
            "-c",
            "zcat /proc/config.gz 2>/dev/null || cat /boot/config-\"$1\"",
            "sh",
        ])
        .arg(&release)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let hz = text.lines().find_map(|l| l.strip_prefix("CONFIG_HZ="));
    hz.unwrap_or_else(|| panic!("this test needs the kernel's configuration (/proc/config.gz or /boot/config-{release}) to check the measured CONFIG_HZ against"))
        .parse()
        .unwrap()
}

fn config(specs: &[&str], flow_timeout: u32) -> Config {
    Config::from_specs_with(
        specs,
        Defaults {
            sched: Sched::Maglev,
            table_size: 251,
            flow_timeout,
            ..Defaults::default()
        },
    )
    .expect("test configuration")
}

impl Lb {
    fn new(specs: &[&str]) -> Lb {
        require_root();
        support::cpu::pin_to_one_cpu();
        let dp = Datapath::load().expect("loading the datapath");
        let mut lb = Lb {
            dp,
            writer: MapWriter::default(),
        };
        lb.reload(specs);
        lb
    }

    fn reload(&mut self, specs: &[&str]) {
        self.reload_config(&config(specs, 60));
    }

    fn reload_config(&mut self, config: &Config) {
        self.writer.apply(&self.dp, config).expect("applying");
    }

    /// A request from CLIENT:sport to 127.0.0.1:9875: the backend port it
    /// was sent to.
    fn request(&self, sport: u16) -> u16 {
        self.request_from(CLIENT, sport)
    }

    fn request_from(&self, client: &str, sport: u16) -> u16 {
        let frame = udp(&format!("{client}:{sport}"), "127.0.0.1:9875").build();
        let (verdict, out) = run_once(self.dp.xdp_program(), &frame.bytes, None).expect("test run");
        assert_eq!(verdict, XDP_PASS);
        frame.port_in(&out, Port::Destination)
    }

    /// The backend on `port` answers CLIENT:sport (seen on lo, as XDP sees
    /// local replies).
    fn reply(&self, port: u16, sport: u16) {
        let frame = udp(&format!("127.0.0.1:{port}"), &format!("{CLIENT}:{sport}")).build();
        let (verdict, out) =
            run_once(self.dp.xdp_program(), &frame.bytes, Some(LOOPBACK)).expect("test run");
        assert_eq!(verdict, XDP_PASS);
        let sport_out = frame.port_in(&out, Port::Source);
        assert_eq!(sport_out, 9875, "the reply leaves from the frontend");
    }

    fn events(&self) -> [u64; FLOW_COUNTER_COUNT] {
        self.dp.flow_counters().expect("flow counters")
    }

    fn entries(&self) -> usize {
        self.dp.flows_map().keys().count()
    }
}

/// The count of one flow event by name.
fn ev(e: &[u64; FLOW_COUNTER_COUNT], name: &str) -> u64 {
    let i = FLOW_COUNTER_NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("no flow counter {name}"));
    e[i]
}

const BACKENDS: [u16; 3] = [9876, 9877, 9878];

/// A port of BACKENDS other than `p`.
fn other(p: u16) -> u16 {
    *BACKENDS.iter().find(|b| **b != p).unwrap()
}

#[test]
fn a_reply_pins_and_the_next_request_follows_it() {
    let lb = Lb::new(&["9875=9876,9877,9878"]);
    let ring = lb.request(40000);
    assert_eq!(ev(&lb.events(), "miss"), 1);
    assert_eq!(lb.entries(), 0, "a request pins nothing");
    // Another backend answered (the ring changed on another balancer, say).
    let answered = other(ring);
    lb.reply(answered, 40000);
    assert_eq!(ev(&lb.events(), "pin_created"), 1);
    assert_eq!(lb.entries(), 1);
    for _ in 0..3 {
        assert_eq!(lb.request(40000), answered, "the pin wins over the ring");
    }
    assert_eq!(ev(&lb.events(), "hit"), 3);
    // The same backend again: the time is refreshed in place.
    lb.reply(answered, 40000);
    let e = lb.events();
    assert_eq!((ev(&e, "pin_refreshed"), ev(&e, "pin_moved")), (1, 0));
    // Another backend answers: the pin moves to it.
    let third = BACKENDS
        .iter()
        .copied()
        .find(|b| *b != answered && *b != ring)
        .unwrap();
    lb.reply(third, 40000);
    assert_eq!(ev(&lb.events(), "pin_moved"), 1);
    assert_eq!(lb.request(40000), third);
    // Other flows are untouched by this one's pin.
    lb.request(40001);
    assert_eq!(ev(&lb.events(), "miss"), 2);
}

#[test]
fn a_pin_to_a_removed_backend_falls_through_to_the_ring() {
    let mut lb = Lb::new(&["9875=9876,9877,9878"]);
    // Pin flows to 9877 until one of them would go elsewhere by the ring.
    let sport = (41000..41100)
        .find(|s| lb.request(*s) != 9877)
        .expect("a flow the ring sends elsewhere");
    lb.reply(9877, sport);
    assert_eq!(lb.request(sport), 9877);
    lb.reload(&["9875=9876,9878"]);
    let now = lb.request(sport);
    assert_ne!(now, 9877, "the removed backend gets nothing");
    assert_eq!(ev(&lb.events(), "stale"), 1);
    // Its lingering replies pin nothing to the retired slot either.
    let before = lb.events();
    lb.reply(9877, sport);
    assert_eq!(
        lb.events(),
        before,
        "a retired backend's reply pins nothing"
    );
}

#[test]
fn a_drained_backend_keeps_its_pinned_flows_and_gets_no_new_ones() {
    let mut lb = Lb::new(&["9875=9876,9877,9878"]);
    let pinned: Vec<u16> = (42000..42300).filter(|s| lb.request(*s) == 9876).collect();
    assert!(pinned.len() > 50, "{} flows on 9876", pinned.len());
    for s in &pinned {
        lb.reply(9876, *s);
    }
    lb.reload(&["9875=9876@0,9877,9878"]);
    for s in &pinned {
        assert_eq!(
            lb.request(*s),
            9876,
            "pinned flow {s} stays on the drained backend"
        );
    }
    for s in 43000..43300 {
        assert_ne!(lb.request(s), 9876, "new flow {s} on the drained backend");
    }
}

#[test]
fn adding_a_backend_moves_no_pinned_flow() {
    let mut lb = Lb::new(&["9875=9876,9877,9878"]);
    let flows: Vec<(u16, u16)> = (44000..44300).map(|s| (s, lb.request(s))).collect();
    for (s, b) in &flows {
        lb.reply(*b, *s);
    }
    lb.reload(&["9875=9876,9877,9878,9879"]);
    let moved = flows.iter().filter(|(s, b)| lb.request(*s) != *b).count();
    assert_eq!(moved, 0, "pinned flows moved by an added backend");
    // Unpinned flows do reach the new backend.
    assert!((45000..45300).any(|s| lb.request(s) == 9879));
}

#[test]
fn spoofed_sources_never_pin() {
    let lb = Lb::new(&["9875=9876,9877,9878"]);
    lb.reply(9876, 40000);
    for i in 0..2000u32 {
        let client = format!("198.19.{}.{}", (i >> 8) & 0xff, i & 0xff);
        lb.request_from(&client, 1024 + (i % 60000) as u16);
    }
    assert_eq!(lb.entries(), 1, "only the answered flow is in the table");
    assert_eq!(ev(&lb.events(), "miss"), 2000);
    assert_eq!(lb.request(40000), 9876, "the answered flow kept its pin");
}

#[test]
fn idle_and_foreign_pins_are_not_followed() {
    let lb = Lb::new(&["9875=9876,9877,9878"]);
    let sport = (46000..46100).find(|s| lb.request(*s) != 9877).unwrap();
    lb.reply(9877, sport);
    let map = lb.dp.flows_map();
    let (key, value) = {
        let k = map.keys().next().expect("one pin");
        let v = map.lookup(&k, MapFlags::ANY).unwrap().unwrap();
        (k, abi::from_bytes::<Flow>(&v).unwrap())
    };
    let key: FlowKey = abi::from_bytes(&key).unwrap();
    assert_eq!(u16::from_be(key.client_port_be), sport);
    assert_eq!(u16::from_be(key.frontend_port_be), 9875);
    // Idle for longer than the timeout (60 s): the ring decides.
    let hz = lb.dp.clock().unwrap().hz;
    assert_eq!(hz, kernel_hz(), "the measured jiffies per second");
    let idle = Flow {
        last_seen: value.last_seen - 61 * hz,
        ..value
    };
    map.update(bytes_of(&key), bytes_of(&idle), MapFlags::ANY)
        .unwrap();
    assert_ne!(lb.request(sport), 9877);
    assert_eq!(ev(&lb.events(), "expired"), 1);
    // The slot now holds someone else (another ident): not followed.
    let foreign = Flow {
        ident: value.ident ^ 1,
        ..value
    };
    map.update(bytes_of(&key), bytes_of(&foreign), MapFlags::ANY)
        .unwrap();
    assert_ne!(lb.request(sport), 9877);
    assert_eq!(ev(&lb.events(), "stale"), 1);
}

#[test]
fn round_robin_and_timeout_zero_have_no_table() {
    let mut lb = Lb::new(&["9875=9876,9877,9878"]);
    lb.reload_config(&config(&["9875=9876,9877,9878"], 0));
    lb.reply(9876, 40000);
    lb.request(40000);
    assert_eq!(lb.events(), [0; FLOW_COUNTER_COUNT]);
    assert_eq!(lb.entries(), 0);
    lb.reload_config(&Config::from_specs(&["9875=9876,9877,9878"]).unwrap());
    lb.reply(9876, 40000);
    lb.request(40000);
    assert_eq!(lb.events(), [0; FLOW_COUNTER_COUNT]);
}

#[test]
fn replies_leaving_through_tc_egress_pin_too() {
    let f = Fixture::with_config(&config(&["9875=9876,9877,9878"], 60));
    let reply = udp("198.18.0.2:9876", "198.18.0.1:40000");
    let outcome = f.check(&Case::egress_reply(
        "a local reply leaves eth0",
        &reply,
        9875,
        0,
    ));
    assert!(outcome.is_ok(), "{outcome:?}");
    let e = f.dp.flow_counters().unwrap();
    assert_eq!(ev(&e, "pin_created"), 1);
    let frame = udp("198.18.0.1:40000", "198.18.0.2:9875").build();
    for _ in 0..5 {
        let (_, out) = run_once(f.dp.xdp_program(), &frame.bytes, None).unwrap();
        assert_eq!(frame.port_in(&out, Port::Destination), 9876);
    }
    assert_eq!(ev(&f.dp.flow_counters().unwrap(), "hit"), 5);
}

#[test]
fn ipv6_flows_pin_too() {
    let lb = Lb::new(&["9875=9876,9877,9878"]);
    let req = |sport: u16| {
        let frame = udp(&format!("[2001:2::1]:{sport}"), "[::1]:9875").build();
        let (_, out) = run_once(lb.dp.xdp_program(), &frame.bytes, None).unwrap();
        frame.port_in(&out, Port::Destination)
    };
    let ring = req(47000);
    let answered = other(ring);
    let frame = udp(&format!("[::1]:{answered}"), "[2001:2::1]:47000").frame();
    run_once(lb.dp.xdp_program(), &frame, Some(LOOPBACK)).unwrap();
    assert_eq!(req(47000), answered);
}

#[test]
fn a_pin_learned_for_one_frontend_is_not_followed_by_another() {
    // 9876 belongs to the port-only frontend; a reply from it on lo
    // carrying 127.0.0.2 (its client wrote to 127.0.0.2:9876 directly) is
    // that frontend's reply, and pins (client, 127.0.0.2:9875) to 9876. A
    // request to 127.0.0.2:9875 is the exact frontend's: its only backend is
    // 9877, whatever the table says.
    let lb = Lb::new(&["9875=9876", "127.0.0.2:9875=9877"]);
    let frame = udp("127.0.0.2:9876", &format!("{CLIENT}:40000")).frame();
    run_once(lb.dp.xdp_program(), &frame, Some(LOOPBACK)).unwrap();
    assert_eq!(ev(&lb.events(), "pin_created"), 1);
    let frame = udp(&format!("{CLIENT}:40000"), "127.0.0.2:9875").build();
    let (_, out) = run_once(lb.dp.xdp_program(), &frame.bytes, None).unwrap();
    assert_eq!(
        frame.port_in(&out, Port::Destination),
        9877,
        "a request followed another frontend's pin"
    );
    assert_eq!(ev(&lb.events(), "stale"), 1);
}

#[test]
fn a_backend_going_down_loses_its_pinned_flows_and_gets_them_back_up() {
    let mut lb = Lb::new(&["9875=9876,9877,9878"]);
    let pinned: Vec<u16> = (48000..48300).filter(|s| lb.request(*s) == 9876).collect();
    assert!(pinned.len() > 50, "{} flows on 9876", pinned.len());
    for s in &pinned {
        lb.reply(9876, *s);
    }
    let c = config(&["9875=9876,9877,9878"], 60);
    let down: udplb::plan::Down = [(c.frontends[0].listen, (None, 9876))].into();
    lb.writer.apply_with(&lb.dp, &c, &down).expect("applying");
    for s in &pinned {
        assert_ne!(lb.request(*s), 9876, "flow {s} stayed on a down backend");
    }
    // Up again before the pins are idle: they are followed again.
    lb.writer
        .apply_with(&lb.dp, &c, &Default::default())
        .expect("applying");
    for s in &pinned {
        assert_eq!(lb.request(*s), 9876, "flow {s} did not come back");
    }
}

#[test]
fn a_pin_stamped_in_the_future_is_expired_not_live_forever() {
    // `--pin` reuses a pinned table whose key and value sizes match, and
    // builds before 35bddd9 stored bpf_ktime_get_coarse_ns() in last_seen:
    // after such an upgrade every pin is far "in the future" in jiffies. An
    // idle one must still expire (a drained backend empties), and must not
    // count as live (udplb status would never show it at 0).
    let lb = Lb::new(&["9875=9876,9877,9878"]);
    let sport = (46000..46100).find(|s| lb.request(*s) != 9877).unwrap();
    lb.reply(9877, sport);
    let map = lb.dp.flows_map();
    let k = map.keys().next().expect("one pin");
    let value = abi::from_bytes::<Flow>(&map.lookup(&k, MapFlags::ANY).unwrap().unwrap()).unwrap();
    let clock = lb.dp.clock().unwrap();
    assert_eq!(clock.hz, kernel_hz(), "the measured jiffies per second");
    let nanoseconds = Flow {
        last_seen: clock.jiffies * (1_000_000_000 / clock.hz),
        ..value
    };
    map.update(&k, bytes_of(&nanoseconds), MapFlags::ANY)
        .unwrap();
    let live = lb
        .dp
        .flows(|_| Some((60, value.ident)))
        .expect("walking the table");
    assert_eq!(live.entries, 1);
    assert!(
        live.live.is_empty(),
        "a pin from the future counted live: {:?}",
        live.live
    );
    assert_ne!(
        lb.request(sport),
        9877,
        "a pin from the future was followed"
    );
    assert_eq!(ev(&lb.events(), "expired"), 1);
}
