//! QUIC frontends through BPF_PROG_TEST_RUN (bpf/quic.h): a request whose
//! destination connection ID carries a known server ID (QUIC-LB plaintext,
//! draft-ietf-quic-load-balancers-19) goes to that server's backend, from
//! any client address; everything else falls back to the Maglev ring on the
//! 4-tuple (the same backend `--sched maglev` would pick), each outcome
//! counted by reason: long and short headers, every truncation, Initial and
//! 0-RTT packets with the client's own CID, config rotation 0b111, unknown
//! server IDs, down and drained backends, IPv4 and IPv6, local and remote
//! backends, the flow table, and the draft's plaintext test vectors.

use udplb_testkit as support;

use support::forwarding::{private_topology, register_tx_ports};
use support::frame::Port;
use support::packets::udp;
use support::require_root;
use support::runner::{run_once, LOOPBACK, XDP_PASS, XDP_REDIRECT};
use udplb::abi::{QUIC_COUNTER_COUNT, QUIC_COUNTER_NAMES};
use udplb::config::{Config, Defaults, QuicSettings, Sched};
use udplb::datapath::Datapath;
use udplb::plan::{Down, MapWriter};

const C4: &str = "198.18.0.1";
const C6: &str = "[2001:2::1]";
/// Frontend 443: 3-byte server IDs, config 0, 8-byte CIDs (the draft's
/// first plaintext vector names server c4605e).
const SPECS: &str = "443=9876#c4605e,9877#0a0b0c,9878#112233";
/// Frontend 444: 5-byte server IDs, config 1, 11-byte CIDs (the draft's
/// second plaintext vector: server 350d28b420 in config 1).
const SPECS_5: &str = "444=9886#350d28b420,9887#0102030405";
const V1: u32 = 0x0000_0001;
const V2: u32 = 0x6b33_43cf;

fn settings(sched: Sched, flow_timeout: u32, cid_len: Option<u8>, config_id: u8) -> Defaults {
    Defaults {
        sched,
        table_size: 251,
        flow_timeout,
        quic: QuicSettings {
            server_id_len: None,
            cid_len,
            config_id,
        },
        ..Defaults::default()
    }
}

fn config(specs: &str, flow_timeout: u32) -> Config {
    let quic = settings(Sched::Quic, flow_timeout, None, 0);
    let five = settings(Sched::Quic, flow_timeout, Some(11), 1);
    let mut a = Config::from_specs_with(&[specs], quic).expect("test configuration");
    let b = Config::from_specs_with(&[SPECS_5], five).expect("test configuration");
    a.frontends.extend(b.frontends);
    Config::new(a.frontends).expect("test configuration")
}

struct Lb {
    dp: Datapath,
    writer: MapWriter,
}

impl Lb {
    fn new(specs: &str, flow_timeout: u32) -> Lb {
        require_root();
        support::cpu::pin_to_one_cpu();
        let mut lb = Lb {
            dp: Datapath::load().expect("loading the datapath"),
            writer: MapWriter::default(),
        };
        lb.writer
            .apply(&lb.dp, &config(specs, flow_timeout))
            .expect("applying");
        lb
    }

    /// The same backends under `--sched maglev`: where the fallback must go.
    fn maglev() -> Lb {
        let mut lb = Lb {
            dp: Datapath::load().expect("loading the datapath"),
            writer: MapWriter::default(),
        };
        let maglev = settings(Sched::Maglev, 0, None, 0);
        let c = Config::from_specs_with(&["443=9876,9877,9878"], maglev).unwrap();
        lb.writer.apply(&lb.dp, &c).expect("applying");
        lb
    }

    /// A request with UDP payload `payload` from `client` (IPv4 or IPv6
    /// address) port `sport` to the local frontend `port`: the backend
    /// port it went to.
    fn send(&self, client: &str, sport: u16, port: u16, payload: &[u8]) -> u16 {
        let v6 = client.starts_with('[');
        let dst = if v6 { "[::1]" } else { "127.0.0.1" };
        let frame = udp(&format!("{client}:{sport}"), &format!("{dst}:{port}"))
            .payload(payload)
            .build();
        let (verdict, out) = run_once(self.dp.xdp_program(), &frame.bytes, None).expect("test run");
        assert_eq!(verdict, XDP_PASS);
        frame.port_in(&out, Port::Destination)
    }

    fn to443(&self, sport: u16, payload: &[u8]) -> u16 {
        self.send(C4, sport, 443, payload)
    }

    fn counters(&self) -> [u64; QUIC_COUNTER_COUNT] {
        self.dp.quic_counters().expect("quic counters")
    }

    /// Runs `f` and returns the quic counters it moved, by name.
    fn moved<T>(&self, f: impl FnOnce() -> T) -> Vec<(&'static str, u64)> {
        let before = self.counters();
        let _ = f();
        let after = self.counters();
        (0..QUIC_COUNTER_COUNT)
            .filter(|i| after[*i] != before[*i])
            .map(|i| (QUIC_COUNTER_NAMES[i], after[i] - before[i]))
            .collect()
    }
}

/// A QUIC-LB CID: first octet (config rotation, length - 1 in the low 5
/// bits), server ID, nonce.
fn cid(cr: u8, sid: &[u8], nonce: &[u8]) -> Vec<u8> {
    let len = 1 + sid.len() + nonce.len();
    let mut c = vec![(cr << 5) | (len as u8 - 1)];
    c.extend_from_slice(sid);
    c.extend_from_slice(nonce);
    c
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A 1-RTT (short header) packet: fixed bit set, DCID, then a protected
/// packet number and payload (opaque here).
fn short(dcid: &[u8]) -> Vec<u8> {
    let mut p = vec![0x40 | 0x01];
    p.extend_from_slice(dcid);
    p.extend_from_slice(&[0xaa; 24]);
    p
}

/// A long header packet of `version` and type bits `ty` (0-3).
fn long(version: u32, ty: u8, dcid: &[u8]) -> Vec<u8> {
    let mut p = vec![0xc0 | (ty << 4)];
    p.extend_from_slice(&version.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(8);
    p.extend_from_slice(&[0x5c; 8]);
    p.extend_from_slice(&[0xbb; 24]);
    p
}

const NONCE: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

fn sid_of(port: u16) -> Vec<u8> {
    match port {
        9876 => hex("c4605e"),
        9877 => hex("0a0b0c"),
        9878 => hex("112233"),
        _ => unreachable!(),
    }
}

#[test]
fn short_headers_follow_the_server_id_from_any_address() {
    let lb = Lb::new(SPECS, 0);
    for port in [9876, 9877, 9878] {
        let p = short(&cid(0, &sid_of(port), &NONCE));
        let moved = lb.moved(|| {
            // A rebinding client: every port, both families, one backend.
            for sport in 40000..40050 {
                assert_eq!(lb.to443(sport, &p), port, "from port {sport}");
                assert_eq!(lb.send(C6, sport, 443, &p), port, "IPv6 from port {sport}");
            }
        });
        assert_eq!(moved, [("routed", 100)]);
    }
}

#[test]
fn the_drafts_plaintext_test_vectors() {
    let lb = Lb::new(SPECS, 0);
    // cr_bits 0, sid c4605e, nonce 4504cc4f, cid 07c4605e4504cc4f.
    let v1 = hex("07c4605e4504cc4f");
    assert_eq!(v1, cid(0, &hex("c4605e"), &hex("4504cc4f")));
    for sport in [40000, 50000, 60000] {
        assert_eq!(lb.to443(sport, &short(&v1)), 9876);
        assert_eq!(lb.to443(sport, &long(V1, 2, &v1)), 9876, "Handshake");
    }
    // cr_bits 1, sid 350d28b420: the draft prints this CID as
    // 20a350d28b4203487d970b, with an odd number of nonce digits and a
    // first octet (0x20) that contradicts its length encoding; its config
    // rotation and server ID, in a CID of the configured 11 bytes, are
    // what a load balancer extracts.
    let v2 = cid(1, &hex("350d28b420"), &hex("3487d970b0"));
    assert_eq!(v2[0], 0x2a);
    for sport in [40000, 50000, 60000] {
        assert_eq!(lb.send(C4, sport, 444, &short(&v2)), 9886);
        assert_eq!(lb.send(C6, sport, 444, &long(V1, 2, &v2)), 9886);
    }
    // The same server ID in config 0 is another configuration's: unknown.
    let other = short(&cid(0, &hex("350d28b420"), &hex("3487d970b0")));
    let moved = lb.moved(|| lb.send(C4, 40000, 444, &other));
    assert_eq!(moved, [("unknown_server", 1)]);
}

#[test]
fn long_headers_by_version_and_type() {
    let lb = Lb::new(SPECS, 0);
    let maglev = Lb::maglev();
    let known = cid(0, &sid_of(9878), &NONCE);
    let random = hex("5f8e2a7c91d3b460");
    // (what, packet, outcome): routed goes to 9878, the rest by the ring.
    let cases: [(&str, Vec<u8>, &str); 10] = [
        ("v1 Handshake", long(V1, 2, &known), "routed"),
        ("v1 Retry type", long(V1, 3, &known), "routed"),
        // The client's Initial that acknowledges the server's: its CID.
        ("v1 Initial, server's CID", long(V1, 0, &known), "routed"),
        ("v1 0-RTT, server's CID", long(V1, 1, &known), "routed"),
        ("v2 Handshake", long(V2, 3, &known), "routed"),
        (
            "v1 Initial, client's CID",
            long(V1, 0, &random),
            "client_cid",
        ),
        ("v1 0-RTT, client's CID", long(V1, 1, &random), "client_cid"),
        (
            "v2 Initial, client's CID",
            long(V2, 1, &random),
            "client_cid",
        ),
        ("v2 0-RTT, client's CID", long(V2, 2, &random), "client_cid"),
        // An unknown version is routed by its DCID alone (the draft: a
        // long header the balancer cannot parse goes by the DCID).
        (
            "unknown version, unknown ID",
            long(0xfaceb00c, 0, &random),
            "unknown_server",
        ),
    ];
    for (what, p, outcome) in &cases {
        for sport in [41000, 42000, 43000] {
            let mut to = 0;
            let moved = lb.moved(|| to = lb.to443(sport, p));
            assert_eq!(moved, [(*outcome, 1)], "{what}");
            if *outcome == "routed" {
                assert_eq!(to, 9878, "{what}");
            } else {
                assert_eq!(to, maglev.to443(sport, p), "{what}: the Maglev fallback");
            }
        }
    }
    let unknown_version = long(0xfaceb00c, 0, &known);
    assert_eq!(lb.to443(41000, &unknown_version), 9878);
    // A client's Initial DCID shorter than a server ID: its own CID too.
    let moved = lb.moved(|| lb.to443(41000, &long(V1, 0, &[1, 2])));
    assert_eq!(moved, [("client_cid", 1)]);
    let moved = lb.moved(|| lb.to443(41000, &long(V1, 2, &[0, 0x11, 0x22])));
    assert_eq!(
        moved,
        [("too_short", 1)],
        "a Handshake DCID without a whole server ID"
    );
}

#[test]
fn fallback_reasons_go_by_the_ring() {
    let lb = Lb::new(SPECS, 0);
    let maglev = Lb::maglev();
    let sid = sid_of(9877);
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "config rotation 0b111",
            short(&cid(7, &sid, &NONCE)),
            "unroutable",
        ),
        (
            "another config rotation",
            short(&cid(2, &sid, &NONCE)),
            "unknown_server",
        ),
        (
            "unknown server ID",
            short(&cid(0, &hex("0a0b0d"), &NONCE)),
            "unknown_server",
        ),
        (
            "no fixed bit",
            {
                let mut p = short(&cid(0, &sid, &NONCE));
                p[0] = 0x01;
                p
            },
            "not_quic",
        ),
        (
            "DCID longer than 20 bytes",
            long(V1, 2, &[0u8; 21]),
            "not_quic",
        ),
        ("empty datagram", Vec::new(), "too_short"),
    ];
    for (what, p, outcome) in &cases {
        for sport in 44000..44020 {
            let mut to = 0;
            let moved = lb.moved(|| to = lb.to443(sport, p));
            assert_eq!(moved, [(*outcome, 1)], "{what}");
            assert_eq!(to, maglev.to443(sport, p), "{what}: the Maglev fallback");
        }
    }
}

#[test]
fn every_truncation_falls_back_as_too_short() {
    let lb = Lb::new(SPECS, 0);
    let c = cid(0, &sid_of(9877), &NONCE);
    let s = short(&c);
    // The short header needs the first octet and the whole 8-byte CID.
    for n in 0..1 + c.len() {
        let moved = lb.moved(|| lb.to443(45000, &s[..n]));
        assert_eq!(moved, [("too_short", 1)], "short header cut at {n}");
    }
    assert_eq!(lb.to443(45000, &s[..1 + c.len()]), 9877);
    // The long header: first octet, version, DCID length, the DCID.
    let l = long(V1, 2, &c);
    for n in 0..6 + c.len() {
        let moved = lb.moved(|| lb.to443(45000, &l[..n]));
        assert_eq!(moved, [("too_short", 1)], "long header cut at {n}");
    }
    assert_eq!(lb.to443(45000, &l[..6 + c.len()]), 9877);
    // The same over IPv6.
    for n in 0..1 + c.len() {
        let moved = lb.moved(|| lb.send(C6, 45000, 443, &s[..n]));
        assert_eq!(moved, [("too_short", 1)], "IPv6 short header cut at {n}");
    }
}

#[test]
fn down_backends_fall_back_and_drained_ones_keep_their_connections() {
    let mut lb = Lb::new(SPECS, 0);
    let to_9878 = short(&cid(0, &sid_of(9878), &NONCE));
    let c = config(SPECS, 0);
    let down: Down = [(c.frontends[0].listen, (None, 9878))].into();
    lb.writer.apply_with(&lb.dp, &c, &down).expect("applying");
    for sport in 46000..46100 {
        let mut to = 0;
        let moved = lb.moved(|| to = lb.to443(sport, &to_9878));
        assert_eq!(moved, [("backend_down", 1)]);
        assert_ne!(to, 9878, "a down backend leaves the ring too");
    }
    lb.writer
        .apply(
            &lb.dp,
            &config("443=9876#c4605e,9877#0a0b0c,9878#112233@0", 0),
        )
        .expect("applying");
    for sport in 46000..46100 {
        assert_eq!(
            lb.to443(sport, &to_9878),
            9878,
            "drained: its connections stay"
        );
    }
    // Removed: its server ID is gone.
    lb.writer
        .apply(&lb.dp, &config("443=9876#c4605e,9877#0a0b0c", 0))
        .expect("applying");
    let moved = lb.moved(|| lb.to443(46000, &to_9878));
    assert_eq!(moved, [("unknown_server", 1)]);
}

#[test]
fn cid_routes_need_no_pin_and_fallbacks_use_the_flow_table() {
    let lb = Lb::new(SPECS, 60);
    let before = lb.dp.flow_counters().unwrap();
    for sport in 47000..47010 {
        assert_eq!(
            lb.to443(sport, &short(&cid(0, &sid_of(9876), &NONCE))),
            9876
        );
    }
    assert_eq!(lb.dp.flow_counters().unwrap(), before, "no flow lookup");
    // A fallback consults the table (a miss), and a reply pins it.
    let initial = long(V1, 0, &hex("5f8e2a7c91d3b460"));
    let ring = lb.to443(47100, &initial);
    let reply = udp(&format!("127.0.0.1:{ring}"), &format!("{C4}:47100")).frame();
    let (verdict, out) = run_once(lb.dp.xdp_program(), &reply, Some(LOOPBACK)).unwrap();
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(
        u16::from_be_bytes([out[34], out[35]]),
        443,
        "reply from the frontend"
    );
    let names = udplb::abi::FLOW_COUNTER_NAMES;
    let after = lb.dp.flow_counters().unwrap();
    let ev = |n: &str| after[names.iter().position(|x| *x == n).unwrap()];
    assert_eq!((ev("miss"), ev("pin_created")), (1, 1));
    assert_eq!(lb.to443(47100, &initial), ring);
    assert_eq!(lb.dp.flow_counters().unwrap()[0], 1, "a hit");
}

#[test]
fn remote_backends_are_routed_by_cid_in_both_families() {
    require_root();
    support::cpu::pin_to_one_cpu();
    let net = private_topology();
    let dp = Datapath::load().expect("loading the datapath");
    register_tx_ports(&dp, &net);
    let quic = settings(Sched::Quic, 0, None, 0);
    let c = Config::from_specs_with(
        &[
            "198.18.100.1:443=198.18.1.2:4433#0a01,198.18.2.2:4433#0a02",
            "[2001:2:100::1]:443=[2001:2:1::2]:4433#0a01,[2001:2:2::2]:4433#0a02",
        ],
        quic,
    )
    .unwrap();
    let mut writer = MapWriter::default();
    writer.apply(&dp, &c).unwrap();
    for (client, fe, backends) in [
        ("198.18.0.1", "198.18.100.1", ["198.18.1.2", "198.18.2.2"]),
        (
            "[2001:2::1]",
            "[2001:2:100::1]",
            ["2001:2:1::2", "2001:2:2::2"],
        ),
    ] {
        for (i, sid) in [[0x0a, 0x01], [0x0a, 0x02]].iter().enumerate() {
            for sport in [40000, 40001, 50000] {
                let p = short(&cid(0, sid, &[1, 2, 3, 4, 5]));
                let frame = udp(&format!("{client}:{sport}"), &format!("{fe}:443"))
                    .payload(&p)
                    .build();
                let (verdict, out) =
                    run_once(dp.xdp_program(), &frame.bytes, Some(net.ingress)).unwrap();
                assert_eq!(verdict, XDP_REDIRECT, "{client} -> backend {i}");
                let want: std::net::IpAddr = backends[i].parse().unwrap();
                assert_eq!(
                    frame.dst_addr_in(&out),
                    want,
                    "{client}:{sport} with server ID {sid:02x?}"
                );
                assert_eq!(frame.port_in(&out, Port::Destination), 4433);
            }
        }
    }
    let routed = dp.quic_counters().unwrap()[0];
    assert_eq!(routed, 12);
}
