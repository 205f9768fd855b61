//! Fixtures for remote backends (bpf/forward.h: DNAT in XDP) through
//! BPF_PROG_TEST_RUN: the rewrite, the TTL / hop limit, bpf_fib_lookup with
//! XDP_REDIRECT or XDP_PASS and its reason, and every checksum rule.
//!
//! bpf_fib_lookup runs in the caller's network namespace with the ctx's
//! ingress_ifindex, so each test moves its thread into a private namespace
//! holding this topology (veth pairs; the peers only give carrier):
//!
//!   client 198.18.0.1 / 2001:2::1 (neighbour entry, MAC_CLIENT)
//!     |  in0  198.18.0.2/24  2001:2::2/64    (ingress; MAC_IN)
//!   [ balancer: forwarding on ]
//!     |  bk1  198.18.1.1/24  2001:2:1::1/64  (MAC_BK1)
//!   srv1 198.18.1.2 / 2001:2:1::2 (neighbour entry, MAC_SRV1)
//!     |  bk2  198.18.2.1/24  2001:2:2::1/64  (MAC_BK2)
//!   srv2 198.18.2.2 / 2001:2:2::2 (neighbour entry, MAC_SRV2)
//!
//! and then changes it (neighbours, forwarding sysctls, routes) for each FIB
//! outcome. Expected outputs are computed from scratch: addresses, ports,
//! TTL and MACs set by hand, the IPv4 header checksum and the UDP checksum
//! recomputed over the whole header / datagram (RFC 1071 here, cross-checked
//! against etherparse), never with the datapath's incremental arithmetic;
//! outputs are compared byte for byte. Needs root: run `sudo make test`.

#[allow(dead_code)] // shared with tests/datapath.rs, which uses the rest
mod datapath_support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use datapath_support::fixture::{pin_to_one_cpu, require_privileges, Case, Fixture, Hit, XDP_PASS};
use datapath_support::packets::{
    ones_complement_sum, udp, udp_checksum, udp_checksum_computed, udp_checksum_etherparse, Frame,
    Port, MAC_DST, MAC_SRC, TPID_8021AD, TPID_8021Q,
};
use udplb::abi::{
    Counter, REASON_COUNT, UDPLB_REASON_BACKEND_TO_FRONTEND, UDPLB_REASON_FIB_FRAG_NEEDED,
    UDPLB_REASON_FIB_FWD_DISABLED, UDPLB_REASON_FIB_NO_NEIGH, UDPLB_REASON_FIB_OTHER,
    UDPLB_REASON_FIB_UNREACHABLE, UDPLB_REASON_FORWARDED, UDPLB_REASON_FRAGMENT,
    UDPLB_REASON_NO_FRONTEND, UDPLB_REASON_REPLY_FORWARDED, UDPLB_REASON_REPLY_TO_LOCAL,
    UDPLB_REASON_SPOOFED_REPLY, UDPLB_REASON_TTL_EXPIRED,
};
use udplb::config::{Config, Defaults, Sched};
use udplb::datapath::Datapath;
use udplb::plan::flow_hash::flow_hash;
use udplb::plan::State;

const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;

/// Frontend indices (configuration order).
const SPECS: &[&str] = &[
    // Round robin over two remote backends, one per egress device.
    "198.18.100.1:53=198.18.1.2:5353,198.18.2.2:5353",
    "[2001:2:100::1]:53=[2001:2:1::2]:5353,[2001:2:2::2]:5353",
    // One backend each: the outcome cases need no rotation bookkeeping.
    "198.18.100.2:53=198.18.1.2:5454",
    "[2001:2:100::2]:53=[2001:2:1::2]:5454",
];
const PAIR4: usize = 0;
const PAIR6: usize = 1;
const ONE4: usize = 2;
const ONE6: usize = 3;

const C4: &str = "198.18.0.1:40000";
const C6: &str = "[2001:2::1]:40000";
const FE4: &str = "198.18.100.1:53";
const FE6: &str = "[2001:2:100::1]:53";
const FE4B: &str = "198.18.100.2:53";
const FE6B: &str = "[2001:2:100::2]:53";
const B4: [&str; 2] = ["198.18.1.2:5353", "198.18.2.2:5353"];
const B6: [&str; 2] = ["[2001:2:1::2]:5353", "[2001:2:2::2]:5353"];
const B4B: &str = "198.18.1.2:5454";
const B6B: &str = "[2001:2:1::2]:5454";

/// The balancer's devices and the hosts' neighbour entries. The packets
/// built by datapath_support come from MAC_SRC (the client) to MAC_DST (in0).
const MAC_IN: [u8; 6] = MAC_DST;
const MAC_CLIENT: [u8; 6] = MAC_SRC;
const MAC_BK1: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const MAC_BK2: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const MAC_SRV1: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const MAC_SRV2: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];

// ---------------------------------------------------------------------------
// The namespace.

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// `sysctl -w` in the thread's namespace (the child inherits it).
fn sysctl(settings: &[&str]) {
    let mut args = vec!["-qw"];
    args.extend_from_slice(settings);
    run("sysctl", &args);
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Ifindexes of the balancer's devices in the private namespace.
struct Net {
    ingress: u32,
    bk1: u32,
    bk2: u32,
}

/// Moves the calling thread into a new network namespace (freed with the
/// thread; the host's stays untouched) and builds the topology above.
fn private_topology() -> Net {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    ip(&["link", "set", "lo", "up"]);
    let devs = [
        ("in0", MAC_IN, "198.18.0.2/24", "2001:2::2/64"),
        ("bk1", MAC_BK1, "198.18.1.1/24", "2001:2:1::1/64"),
        ("bk2", MAC_BK2, "198.18.2.1/24", "2001:2:2::1/64"),
    ];
    for (dev, m, a4, a6) in devs {
        let peer = format!("{dev}p");
        let mut peer_mac = m;
        peer_mac[5] = 0xfe;
        ip(&[
            "link",
            "add",
            dev,
            "address",
            &mac(m),
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "address",
            &mac(peer_mac),
        ]);
        // Up first: routes of addresses on a down device are not usable.
        ip(&["link", "set", dev, "up"]);
        ip(&["link", "set", &peer, "up"]);
        ip(&["addr", "add", a4, "dev", dev]);
        ip(&["-6", "addr", "add", a6, "dev", dev, "nodad"]);
    }
    forwarding(true);
    neighbours(true);
    let idx = |d: &str| nix::net::if_::if_nametoindex(d).expect("if_nametoindex");
    Net {
        ingress: idx("in0"),
        bk1: idx("bk1"),
        bk2: idx("bk2"),
    }
}

/// Lets the datapath redirect out of the test's devices, as udplb does for
/// the interfaces it is attached to (`Datapath::add_tx_port`).
fn register_tx_ports(dp: &Datapath, net: &Net) {
    for ifindex in [net.ingress, net.bk1, net.bk2] {
        dp.add_tx_port(ifindex)
            .expect("registering a redirect target");
    }
}

/// net.ipv4.ip_forward and net.ipv6.conf.all.forwarding, which also set
/// every device's own `forwarding`.
fn forwarding(on: bool) {
    let v = if on { "1" } else { "0" };
    sysctl(&[
        &format!("net.ipv4.ip_forward={v}"),
        &format!("net.ipv6.conf.all.forwarding={v}"),
    ]);
}

const NEIGHBOURS: &[(&str, [u8; 6], &str)] = &[
    ("198.18.0.1", MAC_CLIENT, "in0"),
    ("2001:2::1", MAC_CLIENT, "in0"),
    ("198.18.1.2", MAC_SRV1, "bk1"),
    ("2001:2:1::2", MAC_SRV1, "bk1"),
    ("198.18.2.2", MAC_SRV2, "bk2"),
    ("2001:2:2::2", MAC_SRV2, "bk2"),
];

/// Permanent neighbour entries for the client and both servers.
fn neighbours(add: bool) {
    for (addr, m, dev) in NEIGHBOURS {
        if add {
            ip(&[
                "neigh",
                "replace",
                addr,
                "lladdr",
                &mac(*m),
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        } else {
            ip(&["neigh", "del", addr, "dev", dev]);
        }
    }
}

/// Removes the neighbour entries of srv1 (the ONE4 / ONE6 backend host).
fn forget_srv1() {
    ip(&["neigh", "del", "198.18.1.2", "dev", "bk1"]);
    ip(&["neigh", "del", "2001:2:1::2", "dev", "bk1"]);
}

// ---------------------------------------------------------------------------
// Checksums and expectations, from scratch.

fn get16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

fn set16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

fn l4(f: &Frame) -> usize {
    f.l4.expect("test bug: not a UDP frame")
}

/// The UDP pseudo-header of the datagram in `bytes` (laid out as `f`).
fn pseudo_header(bytes: &[u8], f: &Frame) -> Vec<u8> {
    let ulen = get16(bytes, l4(f) + 4);
    let mut ph = Vec::new();
    if f.ipv6 {
        ph.extend_from_slice(&bytes[f.l3 + 8..f.l3 + 40]);
        ph.extend_from_slice(&u32::from(ulen).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 17]);
    } else {
        ph.extend_from_slice(&bytes[f.l3 + 12..f.l3 + 20]);
        ph.extend_from_slice(&[0, 17]);
        ph.extend_from_slice(&ulen.to_be_bytes());
    }
    ph
}

/// What a sender with checksum offload leaves in the field: the folded,
/// not inverted, sum of the pseudo-header (the kernel's
/// `~csum_tcpudp_magic(...)`).
fn partial_value(bytes: &[u8], f: &Frame) -> u16 {
    ones_complement_sum(&pseudo_header(bytes, f))
}

/// The IPv4 header checksum of `bytes` recomputed from scratch in place,
/// cross-checked against etherparse.
fn refresh_ipv4_header_checksum(bytes: &mut [u8], l3: usize) {
    let hlen = usize::from(bytes[l3] & 0x0f) * 4;
    set16(bytes, l3 + 10, 0);
    let c = !ones_complement_sum(&bytes[l3..l3 + hlen]);
    set16(bytes, l3 + 10, c);
    let (h, _) = etherparse::Ipv4Header::from_slice(&bytes[l3..]).expect("IPv4 header");
    assert_eq!(
        h.calc_header_checksum(),
        c,
        "test bug: etherparse disagrees on the IPv4 header checksum"
    );
}

/// The UDP checksum of `bytes` from scratch, as sent (a computed 0 is
/// 0xFFFF), by two independent implementations.
fn full_checksum(bytes: &[u8], f: &Frame) -> u16 {
    let c = udp_checksum(bytes, f.l3, l4(f), f.ipv6);
    assert_eq!(
        c,
        udp_checksum_etherparse(bytes, f.l3, l4(f), f.ipv6),
        "test bug: the two from-scratch checksums disagree"
    );
    c
}

/// What the UDP checksum field of a case's input holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Csum {
    /// IPv4 only: 0, no checksum.
    None,
    /// The correct checksum over the whole datagram.
    Valid,
    /// Neither correct, nor the pseudo-header sum, nor (IPv4) 0.
    Corrupt,
    /// The pseudo-header sum a sender with checksum offload leaves.
    Partial,
    /// The correct checksum, which happens to equal the pseudo-header sum
    /// (1 datagram in 65536): only defined when the frame is redirected.
    ValidLooksPartial,
}

/// Where the datapath must send the frame.
#[derive(Clone, Copy, Debug)]
enum Leg {
    /// XDP_REDIRECT from the egress device's MAC to the next hop's.
    Sent { smac: [u8; 6], dmac: [u8; 6] },
    /// XDP_PASS to the kernel: TTL and MACs as they came.
    Passed,
}

const TO_SRV1: Leg = Leg::Sent {
    smac: MAC_BK1,
    dmac: MAC_SRV1,
};
const TO_SRV2: Leg = Leg::Sent {
    smac: MAC_BK2,
    dmac: MAC_SRV2,
};
const TO_CLIENT: Leg = Leg::Sent {
    smac: MAC_IN,
    dmac: MAC_CLIENT,
};

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("address:port")
}

/// The input's UDP checksum field is what `csum` says it is.
fn check_input(f: &Frame, csum: Csum) {
    let field = get16(&f.bytes, l4(f) + 6);
    let full = full_checksum(&f.bytes, f);
    let partial = partial_value(&f.bytes, f);
    let ok = match csum {
        Csum::None => !f.ipv6 && field == 0,
        Csum::Valid => field == full && field != partial,
        Csum::Corrupt => field != full && field != partial && (f.ipv6 || field != 0),
        Csum::Partial => field == partial && field != full,
        Csum::ValidLooksPartial => field == full && field == partial,
    };
    assert!(
        ok,
        "test bug: input checksum {field:#06x} is not {csum:?} (full {full:#06x}, pseudo-header \
         sum {partial:#06x})"
    );
}

/// The input with the destination (request) or source (reply) address and
/// port set to `to`, nothing else changed (checksums stale).
fn with_endpoint(f: &Frame, which: Port, to: SocketAddr) -> Vec<u8> {
    let mut b = f.bytes.clone();
    let (addr_off, port_off) = match (which, f.ipv6) {
        (Port::Source, false) => (f.l3 + 12, l4(f)),
        (Port::Destination, false) => (f.l3 + 16, l4(f) + 2),
        (Port::Source, true) => (f.l3 + 8, l4(f)),
        (Port::Destination, true) => (f.l3 + 24, l4(f) + 2),
    };
    match to.ip() {
        IpAddr::V4(a) if !f.ipv6 => b[addr_off..addr_off + 4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) if f.ipv6 => b[addr_off..addr_off + 16].copy_from_slice(&a.octets()),
        _ => panic!("test bug: {to} is of the other family"),
    }
    set16(&mut b, port_off, to.port());
    b
}

/// The frame forward.h must produce from `f`: `which` endpoint rewritten to
/// `to`, then sent (TTL / hop limit - 1, MACs of the next hop) or passed
/// (TTL untouched), with every checksum computed here from scratch.
fn expected(f: &Frame, which: Port, to: SocketAddr, csum: Csum, leg: Leg) -> Vec<u8> {
    check_input(f, csum);
    let l4 = l4(f);
    let field_in = get16(&f.bytes, l4 + 6);
    let mut out = with_endpoint(f, which, to);
    if let Leg::Sent { smac, dmac } = leg {
        let hop = f.l3 + if f.ipv6 { 7 } else { 8 };
        assert!(out[hop] > 1, "test bug: a frame with TTL <= 1 is not sent");
        out[hop] -= 1;
        out[0..6].copy_from_slice(&dmac);
        out[6..12].copy_from_slice(&smac);
    }
    if !f.ipv6 {
        refresh_ipv4_header_checksum(&mut out, f.l3);
    }
    let sent = matches!(leg, Leg::Sent { .. });
    let field_out = match csum {
        Csum::None => 0,
        Csum::Valid => full_checksum(&out, f),
        // RFC 1624: the field keeps its (one's-complement) distance from the
        // correct value. Residues mod 0xFFFF; 0 goes out as 0xFFFF (RFC 768).
        Csum::Corrupt => {
            let correct_in = i64::from(udp_checksum_computed(&f.bytes, f.l3, l4, f.ipv6));
            let correct_out = i64::from(udp_checksum_computed(&out, f.l3, l4, f.ipv6));
            let r = (correct_out + i64::from(field_in) - correct_in).rem_euclid(0xffff) as u16;
            let v = if r == 0 { 0xffff } else { r };
            assert_ne!(v, full_checksum(&out, f), "test bug: became valid");
            v
        }
        Csum::Partial if sent => full_checksum(&out, f),
        // The kernel finishes it from the new pseudo-header.
        Csum::Partial => partial_value(&out, f),
        Csum::ValidLooksPartial if sent => full_checksum(&out, f),
        Csum::ValidLooksPartial => panic!("test bug: unspecified when passed"),
    };
    set16(&mut out, l4 + 6, field_out);
    out
}

/// A request to a remote backend or a reply from one, on its way to
/// becoming a [`Case`]: the endpoint it must get, the kind of checksum it
/// carries (valid unless said), and the device it arrives on.
struct Fwd {
    name: String,
    frame: Frame,
    which: Port,
    to: SocketAddr,
    csum: Csum,
    hit: Hit,
    on: u32,
}

impl Net {
    /// A request for backend `b` (at `to`) of frontend `fe`, arriving on
    /// in0.
    fn req(&self, name: &str, f: &Frame, (fe, b): (usize, usize), to: &str) -> Fwd {
        Fwd {
            name: name.to_string(),
            frame: f.clone(),
            which: Port::Destination,
            to: sock(to),
            csum: Csum::Valid,
            hit: Hit::Backend(fe, b),
            on: self.ingress,
        }
    }

    /// A reply from a backend of frontend `fe`, whose address `frontend` it
    /// gets as its source, arriving on bk1.
    fn rep(&self, name: &str, f: &Frame, fe: usize, frontend: &str) -> Fwd {
        Fwd {
            which: Port::Source,
            hit: Hit::Reply(fe),
            on: self.bk1,
            ..self.req(name, f, (fe, 0), frontend)
        }
    }

    /// A frame that must come out as it went in, arriving on in0.
    fn untouched(&self, name: &str, bytes: &[u8], reason: u32) -> Case {
        Case::untouched(name, bytes, reason).on(self.ingress)
    }
}

impl Fwd {
    fn csum(mut self, csum: Csum) -> Fwd {
        self.csum = csum;
        self
    }

    fn on(mut self, ifindex: u32) -> Fwd {
        self.on = ifindex;
        self
    }

    fn case(self, verdict: u32, reason: u32, leg: Leg) -> Case {
        Case {
            output: expected(&self.frame, self.which, self.to, self.csum, leg),
            name: self.name,
            input: self.frame.bytes,
            ingress_ifindex: Some(self.on),
            verdict,
            reason,
            hit: self.hit,
        }
    }

    /// XDP_REDIRECT to the next hop `leg`.
    fn sent(self, leg: Leg) -> Case {
        let reason = match self.which {
            Port::Destination => UDPLB_REASON_FORWARDED,
            Port::Source => UDPLB_REASON_REPLY_FORWARDED,
        };
        self.case(XDP_REDIRECT, reason, leg)
    }

    /// XDP_PASS, rewritten, for `reason`.
    fn passed(self, reason: u32) -> Case {
        self.case(XDP_PASS, reason, Leg::Passed)
    }

    /// XDP_DROP, refused for `reason` before any rewrite: nothing counted
    /// but the reason.
    fn dropped(self, reason: u32) -> Case {
        Case {
            verdict: XDP_DROP,
            reason,
            hit: Hit::Nothing,
            ..Case::untouched(self.name, &self.frame.bytes, reason).on(self.on)
        }
    }

    /// XDP_DROP, refused for `reason` once the next hop was looked up, so
    /// with the source already rewritten: nothing counted but the reason.
    fn dropped_rewritten(self, reason: u32) -> Case {
        Case {
            hit: Hit::Nothing,
            ..self.case(XDP_DROP, reason, Leg::Passed)
        }
    }
}

// ---------------------------------------------------------------------------
// Frames.

/// The frame with the UDP checksum field set to `v`.
fn field(f: &Frame, v: u16) -> Frame {
    f.clone().udp_checksum_field(v)
}

/// The frame with the partial checksum of a sender with offload.
fn partial(f: &Frame) -> Frame {
    field(f, partial_value(&f.bytes, f))
}

/// The frame with a checksum damaged on the wire (and neither 0 nor the
/// pseudo-header sum).
fn corrupt(f: &Frame) -> Frame {
    let good = get16(&f.bytes, l4(f) + 6);
    let g = field(f, good ^ 0x5a5a);
    check_input(&g, Csum::Corrupt);
    g
}

/// The frame with another TTL / hop limit (IPv4 header checksum redone).
fn ttl(f: &Frame, ttl: u8) -> Frame {
    let mut g = f.clone();
    if f.ipv6 {
        g.bytes[f.l3 + 7] = ttl;
    } else {
        g.bytes[f.l3 + 8] = ttl;
        refresh_ipv4_header_checksum(&mut g.bytes, f.l3);
    }
    g
}

/// The IPv4 frame with DF clear (header checksum redone).
fn without_df(f: &Frame) -> Frame {
    let mut g = f.clone();
    assert_eq!(g.bytes[f.l3 + 6] & 0x40, 0x40, "test bug: DF already clear");
    g.bytes[f.l3 + 6] &= !0x40;
    refresh_ipv4_header_checksum(&mut g.bytes, f.l3);
    g
}

/// A frame whose IP packet is `ip_len` bytes long.
fn of_ip_len(src: &str, dst: &str, ip_len: usize) -> Frame {
    let hdrs = if sock(src).is_ipv6() { 48 } else { 28 };
    let f = udp(src, dst).payload(&vec![0x61; ip_len - hdrs]).build();
    assert_eq!(f.len() - f.l3, ip_len);
    f
}

/// The first 2-byte payload (of 65536) for which `pred` holds; asserts
/// there is one.
fn search(what: &str, src: &str, dst: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
    (0..=u16::MAX)
        .map(|v| udp(src, dst).payload(&v.to_be_bytes()).build())
        .find(|f| pred(f))
        .unwrap_or_else(|| panic!("no payload found: {what}"))
}

/// A frame whose checksum computes to 0 (goes out as 0xFFFF) once its
/// `which` endpoint is `to`.
fn zero_after(src: &str, dst: &str, which: Port, to: &str) -> Frame {
    search("checksum computing to 0 after the rewrite", src, dst, |f| {
        let out = with_endpoint(f, which, sock(to));
        udp_checksum_computed(&out, f.l3, l4(f), f.ipv6) == 0
    })
}

// ---------------------------------------------------------------------------
// Running.

fn fixture() -> (Fixture, Net) {
    let fx = Fixture::new(SPECS);
    let net = private_topology();
    register_tx_ports(&fx.dp, &net);
    (fx, net)
}

/// Only the given reasons have counted, this many times each.
fn assert_reasons(fx: &Fixture, expected: &[(u32, u64)]) {
    let mut want = [0u64; REASON_COUNT];
    for &(r, n) in expected {
        want[r as usize] += n;
    }
    assert_eq!(fx.counters().reasons, want, "reason counters");
}

fn counter(frames: &[&Frame]) -> Counter {
    Counter {
        packets: frames.len() as u64,
        bytes: frames.iter().map(|f| f.len() as u64).sum(),
    }
}

// ---------------------------------------------------------------------------
// Tests.

/// The single backends' (frontend, backend) indices.
const O4: (usize, usize) = (ONE4, 0);
const O6: (usize, usize) = (ONE6, 0);

#[test]
fn requests_are_rewritten_and_redirected_to_the_backend() {
    let (fx, net) = fixture();
    let v4: Vec<Frame> = (1..=4)
        .map(|i| {
            udp(C4, FE4)
                .payload(format!("request {i}").as_bytes())
                .build()
        })
        .collect();
    let v6: Vec<Frame> = (1..=3)
        .map(|i| {
            udp(C6, FE6)
                .payload(format!("request six {i}").as_bytes())
                .build()
        })
        .collect();
    let options = udp(C4, FE4B).ihl(6).payload(&[0x77; 301]).build();
    let one6 = udp(C6, FE6B).payload(&[0x66; 999]).build();

    // In order: round robin alternates the two backends, each behind its
    // own device.
    fx.check_all(&[
        net.req("IPv4 #1 -> srv1 via bk1", &v4[0], (PAIR4, 0), B4[0])
            .sent(TO_SRV1),
        net.req("IPv4 #2 -> srv2 via bk2", &v4[1], (PAIR4, 1), B4[1])
            .sent(TO_SRV2),
        net.req("IPv4 #3 -> srv1", &v4[2], (PAIR4, 0), B4[0])
            .sent(TO_SRV1),
        net.req("IPv4 #4 -> srv2", &v4[3], (PAIR4, 1), B4[1])
            .sent(TO_SRV2),
        net.req("IPv6 #1 -> srv1 via bk1", &v6[0], (PAIR6, 0), B6[0])
            .sent(TO_SRV1),
        net.req("IPv6 #2 -> srv2 via bk2", &v6[1], (PAIR6, 1), B6[1])
            .sent(TO_SRV2),
        net.req("IPv6 #3 -> srv1", &v6[2], (PAIR6, 0), B6[0])
            .sent(TO_SRV1),
        net.req("IPv4 with options (IHL 6)", &options, O4, B4B)
            .sent(TO_SRV1),
        net.req("IPv6, 999 bytes of payload", &one6, O6, B6B)
            .sent(TO_SRV1),
        // The FIB lookup starts from the ingress device, whichever it is.
        net.req("IPv4 arriving on bk2", &v4[0], (PAIR4, 0), B4[0])
            .on(net.bk2)
            .sent(TO_SRV1),
        net.req("IPv6 arriving on bk1", &v6[0], (PAIR6, 1), B6[1])
            .on(net.bk1)
            .sent(TO_SRV2),
    ]);

    let c = fx.counters();
    assert_eq!(
        c.backends[PAIR4],
        vec![
            counter(&[&v4[0], &v4[2], &v4[0]]),
            counter(&[&v4[1], &v4[3]])
        ]
    );
    assert_eq!(
        c.backends[PAIR6],
        vec![counter(&[&v6[0], &v6[2]]), counter(&[&v6[1], &v6[0]])]
    );
    assert_eq!(c.backends[ONE4], vec![counter(&[&options])]);
    assert_eq!(c.backends[ONE6], vec![counter(&[&one6])]);
    assert_eq!(c.replies, vec![Counter::default(); SPECS.len()]);
    assert_reasons(&fx, &[(UDPLB_REASON_FORWARDED, 11)]);
}

/// The reply path cannot be abused from the client side: a backend's source
/// is believed only on the interface that leads to that backend, a reply is
/// never delivered to this host, and a backend's datagram to a frontend
/// starts no loop. (Before: the first four were rewritten to come from the
/// frontend and redirected or passed; the last two balanced.)
#[test]
fn forged_replies_and_loops_are_refused() {
    let (fx, net) = fixture();
    let r4 = [udp(B4[0], C4).build(), udp(B4[1], C4).build()];
    let r6 = [udp(B6[0], C6).build(), udp(B6[1], C6).build()];
    let to_self4 = udp(B4[0], "198.18.0.2:40000").build();
    let to_self6 = udp(B6[0], "[2001:2::2]:40000").build();
    let to_vip4 = udp(B4[1], "198.18.100.1:9999").build();
    let loop4 = udp(B4[1], FE4).build();
    let loop6 = udp(B6[1], FE6).build();
    let spoofed = UDPLB_REASON_SPOOFED_REPLY;
    fx.check_all(&[
        net.rep(
            "IPv4 from srv1's address, forged on in0",
            &r4[0],
            PAIR4,
            FE4,
        )
        .on(net.ingress)
        .dropped(spoofed),
        net.rep(
            "IPv6 from srv2's address, forged on in0",
            &r6[1],
            PAIR6,
            FE6,
        )
        .on(net.ingress)
        .dropped(spoofed),
        net.rep(
            "IPv4 from srv2's address, arriving on bk1",
            &r4[1],
            PAIR4,
            FE4,
        )
        .dropped(spoofed),
        net.rep(
            "IPv6 from srv1's address, arriving on bk2",
            &r6[0],
            PAIR6,
            FE6,
        )
        .on(net.bk2)
        .dropped(spoofed),
        net.rep(
            "IPv4 from srv1 to the balancer's address",
            &to_self4,
            PAIR4,
            FE4,
        )
        .dropped_rewritten(UDPLB_REASON_REPLY_TO_LOCAL),
        net.rep(
            "IPv6 from srv1 to the balancer's address",
            &to_self6,
            PAIR6,
            FE6,
        )
        .dropped_rewritten(UDPLB_REASON_REPLY_TO_LOCAL),
        net.rep(
            "IPv4 from srv2 to the frontend's address, other port",
            &to_vip4,
            PAIR4,
            FE4,
        )
        .on(net.bk2)
        .dropped_rewritten(UDPLB_REASON_REPLY_TO_LOCAL),
        net.rep(
            "IPv4 from srv2 to the frontend (a loop)",
            &loop4,
            PAIR4,
            FE4,
        )
        .on(net.bk2)
        .dropped(UDPLB_REASON_BACKEND_TO_FRONTEND),
        net.rep(
            "IPv6 from srv2 to the frontend (a loop)",
            &loop6,
            PAIR6,
            FE6,
        )
        .on(net.bk2)
        .dropped(UDPLB_REASON_BACKEND_TO_FRONTEND),
        net.rep(
            "IPv4 from srv2 to the frontend, forged on in0",
            &loop4,
            PAIR4,
            FE4,
        )
        .on(net.ingress)
        .dropped(UDPLB_REASON_BACKEND_TO_FRONTEND),
    ]);
    let c = fx.counters();
    assert_eq!(c.replies, vec![Counter::default(); SPECS.len()]);
    assert!(c
        .backends
        .iter()
        .flatten()
        .all(|b| *b == Counter::default()));
    assert_reasons(
        &fx,
        &[
            (spoofed, 4),
            (UDPLB_REASON_REPLY_TO_LOCAL, 3),
            (UDPLB_REASON_BACKEND_TO_FRONTEND, 3),
        ],
    );
}

#[test]
fn replies_are_rewritten_and_redirected_to_the_client() {
    let (fx, net) = fixture();
    let r4 = [
        udp(B4[0], C4).build(),
        udp(B4[1], C4).payload(b"two").build(),
    ];
    let r6 = [
        udp(B6[0], C6).build(),
        udp(B6[1], C6).payload(b"six").build(),
    ];
    let r4b = udp(B4B, C4).payload(&[0x42; 513]).build();
    let r6b = udp(B6B, C6).build();
    // A client the balancer has no neighbour entry for.
    let stranger4 = udp(B4[0], "198.18.0.9:40000").build();
    let stranger6 = udp(B6[0], "[2001:2::9]:40000").build();
    let nn = UDPLB_REASON_FIB_NO_NEIGH;
    let te = UDPLB_REASON_TTL_EXPIRED;
    let nf = UDPLB_REASON_NO_FRONTEND;

    fx.check_all(&[
        net.rep("IPv4 from srv1:5353 on bk1", &r4[0], PAIR4, FE4)
            .sent(TO_CLIENT),
        net.rep("IPv4 from srv2:5353 on bk2", &r4[1], PAIR4, FE4)
            .on(net.bk2)
            .sent(TO_CLIENT),
        net.rep("IPv4 from srv1:5454 on bk1", &r4b, ONE4, FE4B)
            .sent(TO_CLIENT),
        net.rep("IPv6 from srv1:5353 on bk1", &r6[0], PAIR6, FE6)
            .sent(TO_CLIENT),
        net.rep("IPv6 from srv2:5353 on bk2", &r6[1], PAIR6, FE6)
            .on(net.bk2)
            .sent(TO_CLIENT),
        net.rep("IPv6 from srv1:5454 on bk1", &r6b, ONE6, FE6B)
            .sent(TO_CLIENT),
        // The lookup cannot finish: passed, source already rewritten.
        net.rep(
            "IPv4 to a client without neighbour entry",
            &stranger4,
            PAIR4,
            FE4,
        )
        .passed(nn),
        net.rep(
            "IPv6 to a client without neighbour entry",
            &stranger6,
            PAIR6,
            FE6,
        )
        .passed(nn),
        net.rep("IPv4 reply with TTL 1", &ttl(&r4[0], 1), PAIR4, FE4)
            .passed(te),
        net.rep("IPv6 reply with hop limit 1", &ttl(&r6[0], 1), PAIR6, FE6)
            .passed(te),
        net.rep("IPv4 reply with TTL 2", &ttl(&r4[1], 2), PAIR4, FE4)
            .on(net.bk2)
            .sent(TO_CLIENT),
        // Same host, another port: not a backend.
        net.untouched(
            "IPv4 from srv1:9999",
            &udp("198.18.1.2:9999", C4).build().bytes,
            nf,
        )
        .on(net.bk1),
        net.untouched(
            "IPv6 from srv1:9999",
            &udp("[2001:2:1::2]:9999", C6).build().bytes,
            nf,
        )
        .on(net.bk1),
        // A request's destination is never mistaken for a reply's source.
        net.untouched("IPv4 to srv1:5353", &udp(C4, B4[0]).build().bytes, nf),
    ]);

    let c = fx.counters();
    assert_eq!(
        c.replies,
        vec![
            counter(&[&r4[0], &r4[1], &stranger4, &r4[0], &r4[1]]),
            counter(&[&r6[0], &r6[1], &stranger6, &r6[0]]),
            counter(&[&r4b]),
            counter(&[&r6b]),
        ]
    );
    assert!(c
        .backends
        .iter()
        .flatten()
        .all(|b| *b == Counter::default()));
    assert_reasons(
        &fx,
        &[(UDPLB_REASON_REPLY_FORWARDED, 7), (nn, 2), (te, 2), (nf, 3)],
    );
}

#[test]
fn udp_checksums_through_the_rewrite() {
    let (fx, net) = fixture();
    let (c, p) = (Csum::Corrupt, Csum::Partial);
    let base4 = udp(C4, FE4B).build();
    let base6 = udp(C6, FE6B).build();
    let reply4 = udp(B4B, C4).build();
    let dst = Port::Destination;
    let zero4 = zero_after(C4, FE4B, dst, B4B);
    let zero6 = zero_after(C6, FE6B, dst, B6B);
    let zero_reply = zero_after(B4B, C4, Port::Source, FE4B);
    // 0xFFFF on input is a checksum (a computed 0), not "none".
    let ffff_in = search("IPv4 checksum computing to 0 before", C4, FE4B, |f| {
        udp_checksum_computed(&f.bytes, f.l3, l4(f), false) == 0
    });
    assert_eq!(ffff_in.udp_check(), 0xffff);
    let looks_partial = search(
        "a full checksum equal to its pseudo-header sum",
        C4,
        FE4B,
        |f| f.udp_check() == partial_value(&f.bytes, f),
    );
    let padded = partial(&udp(C4, FE4B).payload(b"x").build()).pad_to(60);
    let options = partial(&udp(C4, FE4B).ihl(15).payload(&[0x5c; 77]).build());
    let te = UDPLB_REASON_TTL_EXPIRED;

    // Redirected: the backend's host gets a finished checksum.
    let mut sent = vec![
        net.req("IPv4 checksum 0 (none) stays 0", &field(&base4, 0), O4, B4B)
            .csum(Csum::None)
            .sent(TO_SRV1),
        net.req("IPv4 valid stays valid", &base4, O4, B4B)
            .sent(TO_SRV1),
        net.req(
            "IPv4 corrupt stays corrupt by as much",
            &corrupt(&base4),
            O4,
            B4B,
        )
        .csum(c)
        .sent(TO_SRV1),
        net.req("IPv6 valid stays valid", &base6, O6, B6B)
            .sent(TO_SRV1),
        net.req(
            "IPv6 corrupt stays corrupt by as much",
            &corrupt(&base6),
            O6,
            B6B,
        )
        .csum(c)
        .sent(TO_SRV1),
        // IPv6 has no "none": 0 is damage like any other value.
        net.req("IPv6 checksum 0 stays wrong", &field(&base6, 0), O6, B6B)
            .csum(c)
            .sent(TO_SRV1),
        net.req("IPv4 partial is completed", &partial(&base4), O4, B4B)
            .csum(p)
            .sent(TO_SRV1),
        net.req("IPv6 partial is completed", &partial(&base6), O6, B6B)
            .csum(p)
            .sent(TO_SRV1),
        net.req("IPv4 computing to 0 -> 0xFFFF", &zero4, O4, B4B)
            .sent(TO_SRV1),
        net.req("IPv6 computing to 0 -> 0xFFFF", &zero6, O6, B6B)
            .sent(TO_SRV1),
        net.req(
            "IPv4 partial completed to 0 -> 0xFFFF",
            &partial(&zero4),
            O4,
            B4B,
        )
        .csum(p)
        .sent(TO_SRV1),
        net.req(
            "IPv6 partial completed to 0 -> 0xFFFF",
            &partial(&zero6),
            O6,
            B6B,
        )
        .csum(p)
        .sent(TO_SRV1),
        net.req("IPv4 input 0xFFFF is updated", &ffff_in, O4, B4B)
            .sent(TO_SRV1),
        net.req(
            "IPv4 full checksum equal to its pseudo-header sum",
            &looks_partial,
            O4,
            B4B,
        )
        .csum(Csum::ValidLooksPartial)
        .sent(TO_SRV1),
        net.req(
            "IPv4 partial, 1 byte, Ethernet padding not summed",
            &padded,
            O4,
            B4B,
        )
        .csum(p)
        .sent(TO_SRV1),
        net.req(
            "IPv4 partial behind 40 bytes of options (IHL 15)",
            &options,
            O4,
            B4B,
        )
        .csum(p)
        .sent(TO_SRV1),
        net.rep(
            "reply: IPv4 partial is completed",
            &partial(&reply4),
            ONE4,
            FE4B,
        )
        .csum(p)
        .sent(TO_CLIENT),
        net.rep(
            "reply: IPv4 corrupt stays corrupt",
            &corrupt(&reply4),
            ONE4,
            FE4B,
        )
        .csum(c)
        .sent(TO_CLIENT),
        net.rep("reply: IPv4 none stays 0", &field(&reply4, 0), ONE4, FE4B)
            .csum(Csum::None)
            .sent(TO_CLIENT),
        net.rep(
            "reply: IPv6 partial is completed",
            &partial(&udp(B6B, C6).build()),
            ONE6,
            FE6B,
        )
        .csum(p)
        .sent(TO_CLIENT),
        net.rep("reply: computing to 0 -> 0xFFFF", &zero_reply, ONE4, FE4B)
            .sent(TO_CLIENT),
        // The lookup succeeds and the checksum is completed, then the TTL
        // expires: the kernel gets the partial value of the new addresses.
        net.req("IPv4 partial, TTL 1", &partial(&ttl(&base4, 1)), O4, B4B)
            .csum(p)
            .passed(te),
        net.req(
            "IPv6 partial, hop limit 1",
            &partial(&ttl(&base6, 1)),
            O6,
            B6B,
        )
        .csum(p)
        .passed(te),
    ];
    // Completion over every tail length and across the 4-, 64- and
    // 512-byte steps of the sum, up to a 1500-byte IP packet.
    let lengths = (0..=9).chain([63, 64, 65, 511, 512, 513, 1027]);
    for n in lengths.clone().chain([1472]) {
        let f = partial(&udp(C4, FE4B).payload(&vec![0xa5; n]).build());
        let name = format!("IPv4 partial, {n}-byte payload");
        sent.push(net.req(&name, &f, O4, B4B).csum(p).sent(TO_SRV1));
    }
    for n in lengths.chain([1452]) {
        let f = partial(&udp(C6, FE6B).payload(&vec![0x5a; n]).build());
        let name = format!("IPv6 partial, {n}-byte payload");
        sent.push(net.req(&name, &f, O6, B6B).csum(p).sent(TO_SRV1));
    }
    fx.check_all(&sent);

    // Passed (srv1 has no neighbour entry any more): the kernel finishes a
    // partial checksum, so it gets the new pseudo-header sum; the rest as
    // above.
    forget_srv1();
    let nn = UDPLB_REASON_FIB_NO_NEIGH;
    let big = partial(&udp(C4, FE4B).payload(&[1; 1472]).build());
    fx.check_all(&[
        net.req("passed: IPv4 none stays 0", &field(&base4, 0), O4, B4B)
            .csum(Csum::None)
            .passed(nn),
        net.req("passed: IPv4 valid stays valid", &base4, O4, B4B)
            .passed(nn),
        net.req(
            "passed: IPv4 corrupt stays corrupt",
            &corrupt(&base4),
            O4,
            B4B,
        )
        .csum(c)
        .passed(nn),
        net.req("passed: IPv6 valid stays valid", &base6, O6, B6B)
            .passed(nn),
        net.req(
            "passed: IPv6 corrupt stays corrupt",
            &corrupt(&base6),
            O6,
            B6B,
        )
        .csum(c)
        .passed(nn),
        net.req(
            "passed: IPv4 partial -> new pseudo-header sum",
            &partial(&base4),
            O4,
            B4B,
        )
        .csum(p)
        .passed(nn),
        net.req(
            "passed: IPv6 partial -> new pseudo-header sum",
            &partial(&base6),
            O6,
            B6B,
        )
        .csum(p)
        .passed(nn),
        net.req("passed: IPv4 partial, 1500-byte packet", &big, O4, B4B)
            .csum(p)
            .passed(nn),
        net.req("passed: IPv4 computing to 0 -> 0xFFFF", &zero4, O4, B4B)
            .passed(nn),
        net.req("passed: IPv6 computing to 0 -> 0xFFFF", &zero6, O6, B6B)
            .passed(nn),
    ]);
}

#[test]
fn every_fib_outcome_passes_the_rewritten_packet() {
    let (fx, net) = fixture();
    let f4 = udp(C4, FE4B).build();
    let f6 = udp(C6, FE6B).build();
    let sent = |what: &str| {
        fx.check_all(&[
            net.req(&format!("IPv4 {what}"), &f4, O4, B4B).sent(TO_SRV1),
            net.req(&format!("IPv6 {what}"), &f6, O6, B6B).sent(TO_SRV1),
        ])
    };
    let passed = |what: &str, reason: u32| {
        fx.check_all(&[
            net.req(&format!("IPv4 {what}"), &f4, O4, B4B)
                .passed(reason),
            net.req(&format!("IPv6 {what}"), &f6, O6, B6B)
                .passed(reason),
        ])
    };
    let mut n_sent = 0;
    let mut reasons: BTreeMap<u32, u64> = BTreeMap::new();
    let mut count = |reason: u32, n: u64| *reasons.entry(reason).or_default() += n;

    sent("with everything in place");
    n_sent += 2;

    forget_srv1();
    passed("without a neighbour entry", UDPLB_REASON_FIB_NO_NEIGH);
    count(UDPLB_REASON_FIB_NO_NEIGH, 2);
    // Any valid state will do (the kernel revalidates a stale one).
    for addr in ["198.18.1.2", "2001:2:1::2"] {
        let m = mac(MAC_SRV1);
        ip(&[
            "neigh", "replace", addr, "lladdr", &m, "dev", "bk1", "nud", "stale",
        ]);
    }
    sent("to a stale neighbour entry");
    n_sent += 2;
    neighbours(true);

    let fd = UDPLB_REASON_FIB_FWD_DISABLED;
    sysctl(&[
        "net.ipv4.conf.in0.forwarding=0",
        "net.ipv6.conf.in0.forwarding=0",
    ]);
    passed("with forwarding off on the ingress device", fd);
    sysctl(&[
        "net.ipv4.conf.in0.forwarding=1",
        "net.ipv6.conf.in0.forwarding=1",
    ]);
    forwarding(false);
    passed("with forwarding off everywhere", fd);
    count(fd, 4);
    forwarding(true);
    sent("with forwarding back on");
    n_sent += 2;

    // The route's MTU counts for bpf_fib_lookup when locked (IPv4 without
    // the lock would need net.ipv4.ip_forward_use_pmtu).
    ip(&[
        "route",
        "add",
        "198.18.1.2/32",
        "dev",
        "bk1",
        "mtu",
        "lock",
        "1280",
    ]);
    ip(&[
        "-6",
        "route",
        "add",
        "2001:2:1::2/128",
        "dev",
        "bk1",
        "mtu",
        "lock",
        "1280",
    ]);
    let fits4 = of_ip_len(C4, FE4B, 1280);
    let fits6 = of_ip_len(C6, FE6B, 1280);
    let big4 = of_ip_len(C4, FE4B, 1281);
    let big6 = of_ip_len(C6, FE6B, 1281);
    let fnd = UDPLB_REASON_FIB_FRAG_NEEDED;
    fx.check_all(&[
        net.req("IPv4 of exactly the route's MTU", &fits4, O4, B4B)
            .sent(TO_SRV1),
        net.req("IPv6 of exactly the route's MTU", &fits6, O6, B6B)
            .sent(TO_SRV1),
        net.req("IPv4 one byte over the route's MTU", &big4, O4, B4B)
            .passed(fnd),
        net.req("IPv6 one byte over the route's MTU", &big6, O6, B6B)
            .passed(fnd),
        net.req("IPv4 partial over the MTU", &partial(&big4), O4, B4B)
            .csum(Csum::Partial)
            .passed(fnd),
        // The lookup does not look at DF (etherparse sets it): the kernel
        // fragments or sends ICMP.
        net.req("IPv4 without DF over the MTU", &without_df(&big4), O4, B4B)
            .passed(fnd),
    ]);
    n_sent += 2;
    count(fnd, 4);
    ip(&["route", "del", "198.18.1.2/32", "dev", "bk1"]);
    ip(&["-6", "route", "del", "2001:2:1::2/128", "dev", "bk1"]);

    for kind in ["blackhole", "unreachable", "prohibit"] {
        ip(&["route", "replace", kind, "198.18.1.2/32"]);
        ip(&["-6", "route", "replace", kind, "2001:2:1::2/128"]);
        passed(
            &format!("with a {kind} route"),
            UDPLB_REASON_FIB_UNREACHABLE,
        );
        count(UDPLB_REASON_FIB_UNREACHABLE, 2);
    }
    ip(&["route", "del", "198.18.1.2/32"]);
    ip(&["-6", "route", "del", "2001:2:1::2/128"]);
    sent("with the routes removed again");
    n_sent += 2;

    let te = UDPLB_REASON_TTL_EXPIRED;
    fx.check_all(&[
        net.req("IPv4 TTL 1", &ttl(&f4, 1), O4, B4B).passed(te),
        net.req("IPv4 TTL 0", &ttl(&f4, 0), O4, B4B).passed(te),
        net.req("IPv6 hop limit 1", &ttl(&f6, 1), O6, B6B)
            .passed(te),
        net.req("IPv6 hop limit 0", &ttl(&f6, 0), O6, B6B)
            .passed(te),
        net.req("IPv4 TTL 2 leaves with 1", &ttl(&f4, 2), O4, B4B)
            .sent(TO_SRV1),
        net.req("IPv6 hop limit 2 leaves with 1", &ttl(&f6, 2), O6, B6B)
            .sent(TO_SRV1),
        net.req("IPv4 TTL 255", &ttl(&f4, 255), O4, B4B)
            .sent(TO_SRV1),
    ]);
    count(te, 4);
    n_sent += 3;

    // No route at all (the connected routes to srv1's subnet removed): the
    // lookup says "not forwarded", which forward.h counts as fib_other (the
    // README lists blackhole, unreachable and prohibit as fib_unreachable).
    ip(&["route", "del", "198.18.1.0/24", "dev", "bk1"]);
    ip(&["-6", "route", "del", "2001:2:1::/64", "dev", "bk1"]);
    passed("with no route", UDPLB_REASON_FIB_OTHER);
    count(UDPLB_REASON_FIB_OTHER, 2);

    count(UDPLB_REASON_FORWARDED, n_sent);
    let want: Vec<(u32, u64)> = reasons.into_iter().collect();
    assert_reasons(&fx, &want);
    let total: u64 = want.iter().map(|(_, n)| n).sum();
    let c = fx.counters();
    assert_eq!(
        c.backends[ONE4][0].packets + c.backends[ONE6][0].packets,
        total,
        "every request, sent or passed, counts for its backend"
    );
}

#[test]
fn vlan_tagged_requests_and_fragments_go_to_the_kernel() {
    let (fx, net) = fixture();
    let other = UDPLB_REASON_FIB_OTHER;
    let frag = UDPLB_REASON_FRAGMENT;
    let q4 = udp(C4, FE4B).tags(&[TPID_8021Q]).build();
    let qinq4 = udp(C4, FE4B).tags(&[TPID_8021AD, TPID_8021Q]).build();
    let q6 = udp(C6, FE6B).tags(&[TPID_8021Q]).build();
    let q_reply = udp(B4B, C4).tags(&[TPID_8021Q]).build();
    let whole = udp(C4, FE4B).payload(&[0x33; 200]).build();
    let first = Frame::first_fragment_of(&whole.bytes, whole.l3, 64);
    let whole_pair = udp(C4, FE4).payload(&[0x44; 200]).build();
    let first_pair = Frame::first_fragment_of(&whole_pair.bytes, whole_pair.l3, 64);
    let middle = whole.clone().ipv4_frag(true, 8);
    let last = whole.clone().ipv4_frag(false, 8);

    fx.check_all(&[
        // The kernel's VLAN devices rewrite tags; XDP does not.
        net.req("IPv4 in 802.1Q", &q4, O4, B4B).passed(other),
        net.req("IPv4 in 802.1ad + 802.1Q", &qinq4, O4, B4B)
            .passed(other),
        net.req("IPv6 in 802.1Q", &q6, O6, B6B).passed(other),
        net.req("IPv4 partial in 802.1Q", &partial(&q4), O4, B4B)
            .csum(Csum::Partial)
            .passed(other),
        net.rep("IPv4 reply in 802.1Q", &q_reply, ONE4, FE4B)
            .passed(other),
        // Fragments of a datagram to a frontend with remote backends: all
        // untouched, none counted for a backend.
        net.untouched("IPv4 first fragment (MF, offset 0)", &first, frag),
        net.untouched(
            "IPv4 first fragment, round-robin frontend",
            &first_pair,
            frag,
        ),
        net.untouched("IPv4 middle fragment (MF, offset 64)", &middle.bytes, frag),
        net.untouched("IPv4 last fragment (offset 64)", &last.bytes, frag),
        // Neither DF (etherparse sets it) nor its absence makes a fragment.
        net.req("IPv4 with DF", &whole, O4, B4B).sent(TO_SRV1),
        net.req("IPv4 without DF", &without_df(&whole), O4, B4B)
            .sent(TO_SRV1),
    ]);
    let c = fx.counters();
    assert_eq!(c.backends[PAIR4], vec![Counter::default(); 2]);
    assert_eq!(c.backends[ONE4][0].packets, 5);
}

#[test]
fn maglev_keeps_each_flow_on_one_remote_backend() {
    require_privileges();
    pin_to_one_cpu();
    let config = Config::from_specs_with(
        &SPECS[..2],
        Defaults {
            sched: Sched::Maglev,
            table_size: 65537,
        },
    )
    .expect("test configuration");
    let (plan, state) = State::default().plan(&config);
    let dp = Datapath::load().expect("loading the datapath");
    dp.apply(&plan).expect("writing the tables");
    let layout = state.layout(&config);
    let net = private_topology();
    register_tx_ports(&dp, &net);

    // The backend the Rust side predicts: src/flow_hash.rs over the ring the
    // plan wrote for the frontend.
    let predict = |fe: usize, f: &Frame| -> usize {
        let key = config.frontends[fe].listen.endpoints()[0];
        let (_, entry) = plan
            .frontends
            .iter()
            .find(|(k, _)| *k == key)
            .expect("frontend");
        let (_, ring) = plan
            .rings
            .iter()
            .find(|(t, _)| *t == entry.table)
            .expect("ring");
        let b = &f.bytes;
        let (src, dst) = if f.ipv6 {
            (&b[f.l3 + 8..f.l3 + 24], &b[f.l3 + 24..f.l3 + 40])
        } else {
            (&b[f.l3 + 12..f.l3 + 16], &b[f.l3 + 16..f.l3 + 20])
        };
        let l4 = l4(f);
        let h = flow_hash(src, dst, [b[l4], b[l4 + 1]], [b[l4 + 2], b[l4 + 3]]);
        let slot = ring[(h % ring.len() as u32) as usize];
        layout.frontends[fe]
            .1
            .iter()
            .position(|s| *s == slot)
            .expect("slot")
    };
    let fx = Fixture {
        dp,
        layout: layout.clone(),
    };

    let mut cases = Vec::new();
    let mut hits = [[0u64; 2]; 2];
    for i in 0..64u16 {
        for (fe, client, frontend, backends) in [
            (PAIR4, format!("198.18.0.1:{}", 30000 + i * 7), FE4, B4),
            (PAIR6, format!("[2001:2::1]:{}", 30000 + i * 7), FE6, B6),
        ] {
            let f = udp(&client, frontend)
                .payload(format!("flow {i}").as_bytes())
                .build();
            let b = predict(fe, &f);
            // Three times each, interleaved with the other family's flow:
            // always the same backend.
            for n in 0..3 {
                let name = format!("flow {i} ({client}) #{n} -> backend {b}");
                cases.push(
                    net.req(&name, &f, (fe, b), backends[b])
                        .sent([TO_SRV1, TO_SRV2][b]),
                );
            }
            hits[fe][b] += 3;
        }
    }
    fx.check_all(&cases);
    assert!(
        hits.iter().flatten().all(|&n| n > 0),
        "64 flows should reach both backends of each frontend: {hits:?}"
    );
    let c = fx.counters();
    for fe in [PAIR4, PAIR6] {
        let packets: Vec<u64> = c.backends[fe].iter().map(|b| b.packets).collect();
        assert_eq!(packets, hits[fe], "frontend {fe}");
    }
    assert_reasons(&fx, &[(UDPLB_REASON_FORWARDED, 64 * 2 * 3)]);
}

/// A route out of a device udplb is not attached to (not in tx_ports): the
/// rewritten packet goes to the kernel (fib_other), TTL untouched, instead
/// of a redirect the device could not take.
#[test]
fn a_route_out_of_another_device_goes_to_the_kernel() {
    let fx = Fixture::new(SPECS);
    let net = private_topology();
    fx.dp.add_tx_port(net.ingress).expect("ingress");
    fx.dp.add_tx_port(net.bk1).expect("bk1");
    // Round robin: the first request goes to srv1 (bk1), the second to
    // srv2, whose device bk2 is not a redirect target.
    let first = udp(C4, FE4).payload(b"to srv1").build();
    let second = udp(C4, FE4).payload(b"to srv2").build();
    fx.check_all(&[
        net.req("srv1 via bk1, registered", &first, (PAIR4, 0), B4[0])
            .sent(TO_SRV1),
        net.req("srv2 via bk2, not registered", &second, (PAIR4, 1), B4[1])
            .passed(UDPLB_REASON_FIB_OTHER),
    ]);
}
