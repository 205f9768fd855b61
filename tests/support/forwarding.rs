//! The remote-backend fixture shared by tests/remote_datapath_*.rs (bpf/forward.h: DNAT in XDP) through
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
//! recomputed over the whole header / datagram (the kit's RFC 1071 code,
//! cross-checked against etherparse), never with the datapath's incremental
//! arithmetic; outputs are compared byte for byte by the kit's runner.

use std::net::{IpAddr, SocketAddr};

use udplb::abi::{Counter, UDPLB_REASON_FORWARDED, UDPLB_REASON_REPLY_FORWARDED};
use udplb::datapath::Datapath;

use super::checksum::{self, udp_checksum_computed};
use super::netns::sh;
use super::packets::{udp, Frame, Port, MAC_DST, MAC_SRC};
use super::runner::{Case, Fixture, Hit, Prog, XDP_PASS, XDP_REDIRECT};

/// Frontend indices (configuration order).
pub const SPECS: &[&str] = &[
    // Round robin over two remote backends, one per egress device.
    "198.18.100.1:53=198.18.1.2:5353,198.18.2.2:5353",
    "[2001:2:100::1]:53=[2001:2:1::2]:5353,[2001:2:2::2]:5353",
    // One backend each: the outcome cases need no rotation bookkeeping.
    "198.18.100.2:53=198.18.1.2:5454",
    "[2001:2:100::2]:53=[2001:2:1::2]:5454",
];
pub const PAIR4: usize = 0;
pub const PAIR6: usize = 1;
pub const ONE4: usize = 2;
pub const ONE6: usize = 3;

pub const C4: &str = "198.18.0.1:40000";
pub const C6: &str = "[2001:2::1]:40000";
pub const FE4: &str = "198.18.100.1:53";
pub const FE6: &str = "[2001:2:100::1]:53";
pub const FE4B: &str = "198.18.100.2:53";
pub const FE6B: &str = "[2001:2:100::2]:53";
pub const B4: [&str; 2] = ["198.18.1.2:5353", "198.18.2.2:5353"];
pub const B6: [&str; 2] = ["[2001:2:1::2]:5353", "[2001:2:2::2]:5353"];
pub const B4B: &str = "198.18.1.2:5454";
pub const B6B: &str = "[2001:2:1::2]:5454";

/// The balancer's devices and the hosts' neighbour entries. The packets
/// built by the kit come from MAC_SRC (the client) to MAC_DST (in0).
pub const MAC_IN: [u8; 6] = MAC_DST;
pub const MAC_CLIENT: [u8; 6] = MAC_SRC;
pub const MAC_BK1: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
pub const MAC_BK2: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
pub const MAC_SRV1: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
pub const MAC_SRV2: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];

// ---------------------------------------------------------------------------
// The namespace.

pub fn run(cmd: &str, args: &[&str]) {
    let mut full = vec![cmd];
    full.extend_from_slice(args);
    sh(&full);
}

pub fn ip(args: &[&str]) {
    run("ip", args);
}

/// `sysctl -w` in the thread's namespace (the child inherits it).
pub fn sysctl(settings: &[&str]) {
    let mut args = vec!["-qw"];
    args.extend_from_slice(settings);
    run("sysctl", &args);
}

pub fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Ifindexes of the balancer's devices in the private namespace.
pub struct Net {
    pub ingress: u32,
    pub bk1: u32,
    pub bk2: u32,
}

/// Moves the calling thread into a new network namespace (freed with the
/// thread; the host's stays untouched) and builds the topology above.
pub fn private_topology() -> Net {
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
pub fn register_tx_ports(dp: &Datapath, net: &Net) {
    for ifindex in [net.ingress, net.bk1, net.bk2] {
        dp.add_tx_port(ifindex)
            .expect("registering a redirect target");
    }
}

/// net.ipv4.ip_forward and net.ipv6.conf.all.forwarding, which also set
/// every device's own `forwarding`.
pub fn forwarding(on: bool) {
    let v = if on { "1" } else { "0" };
    sysctl(&[
        &format!("net.ipv4.ip_forward={v}"),
        &format!("net.ipv6.conf.all.forwarding={v}"),
    ]);
}

pub const NEIGHBOURS: &[(&str, [u8; 6], &str)] = &[
    ("198.18.0.1", MAC_CLIENT, "in0"),
    ("2001:2::1", MAC_CLIENT, "in0"),
    ("198.18.1.2", MAC_SRV1, "bk1"),
    ("2001:2:1::2", MAC_SRV1, "bk1"),
    ("198.18.2.2", MAC_SRV2, "bk2"),
    ("2001:2:2::2", MAC_SRV2, "bk2"),
];

/// Permanent neighbour entries for the client and both servers.
pub fn neighbours(add: bool) {
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

/// A permanent neighbour entry on in0 for another client address (its
/// MAC the client's): a remote backend's reply to it is then sent on by
/// XDP (and rewritten there), not passed to the kernel as it came.
pub fn client_neighbour(client: IpAddr) {
    let a = client.to_string();
    let m = mac(MAC_CLIENT);
    ip(&[
        "neigh",
        "replace",
        &a,
        "lladdr",
        &m,
        "dev",
        "in0",
        "nud",
        "permanent",
    ]);
}

/// Removes the neighbour entries of srv1 (the ONE4 / ONE6 backend host).
pub fn forget_srv1() {
    ip(&["neigh", "del", "198.18.1.2", "dev", "bk1"]);
    ip(&["neigh", "del", "2001:2:1::2", "dev", "bk1"]);
}

// ---------------------------------------------------------------------------
// Checksums and expectations, from scratch.

pub fn get16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

pub fn set16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

pub fn l4(f: &Frame) -> usize {
    f.l4()
}

/// What a sender with checksum offload leaves in the field: the folded,
/// not inverted, sum of the pseudo-header.
pub fn partial_value(bytes: &[u8], f: &Frame) -> u16 {
    checksum::partial_value(bytes, f.l3, f.l4(), f.ipv6)
}

/// The UDP checksum of `bytes` from scratch, as sent (a computed 0 is
/// 0xFFFF), by two independent implementations.
pub fn full_checksum(bytes: &[u8], f: &Frame) -> u16 {
    checksum::udp_checksum_checked(bytes, f.l3, f.l4(), f.ipv6)
}

/// What the UDP checksum field of a case's input holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Csum {
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
pub enum Leg {
    /// XDP_REDIRECT from the egress device's MAC to the next hop's.
    Sent { smac: [u8; 6], dmac: [u8; 6] },
    /// XDP_PASS to the kernel: TTL and MACs as they came.
    Passed,
}

pub const TO_SRV1: Leg = Leg::Sent {
    smac: MAC_BK1,
    dmac: MAC_SRV1,
};
pub const TO_SRV2: Leg = Leg::Sent {
    smac: MAC_BK2,
    dmac: MAC_SRV2,
};
pub const TO_CLIENT: Leg = Leg::Sent {
    smac: MAC_IN,
    dmac: MAC_CLIENT,
};

pub fn sock(s: &str) -> SocketAddr {
    s.parse().expect("address:port")
}

/// The input's UDP checksum field is what `csum` says it is.
pub fn check_input(f: &Frame, csum: Csum) {
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
pub fn with_endpoint(f: &Frame, which: Port, to: SocketAddr) -> Vec<u8> {
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
pub fn expected(f: &Frame, which: Port, to: SocketAddr, csum: Csum, leg: Leg) -> Vec<u8> {
    check_input(f, csum);
    let l4 = l4(f);
    let field_in = get16(&f.bytes, l4 + 6);
    let mut out = with_endpoint(f, which, to);
    hop(&mut out, f.l3, f.ipv6, leg);
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

/// What `leg` does to a frame at the IP layer: sent, its TTL / hop limit
/// one less and the next hop's MACs; passed, nothing. The IPv4 header
/// checksum is computed from scratch either way.
pub fn hop(out: &mut [u8], l3: usize, ipv6: bool, leg: Leg) {
    if let Leg::Sent { smac, dmac } = leg {
        let hop = l3 + if ipv6 { 7 } else { 8 };
        assert!(out[hop] > 1, "test bug: a frame with TTL <= 1 is not sent");
        out[hop] -= 1;
        out[0..6].copy_from_slice(&dmac);
        out[6..12].copy_from_slice(&smac);
    }
    if !ipv6 {
        checksum::refresh_ipv4_header(out, l3);
    }
}

/// A request to a remote backend or a reply from one, on its way to
/// becoming a [`Case`]: the endpoint it must get, the kind of checksum it
/// carries (valid unless said), and the device it arrives on.
pub struct Fwd {
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
    pub fn req(&self, name: &str, f: &Frame, (fe, b): (usize, usize), to: &str) -> Fwd {
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
    pub fn rep(&self, name: &str, f: &Frame, fe: usize, frontend: &str) -> Fwd {
        Fwd {
            which: Port::Source,
            hit: Hit::Reply(fe),
            on: self.bk1,
            ..self.req(name, f, (fe, 0), frontend)
        }
    }

    /// A frame that must come out as it went in, arriving on in0.
    pub fn untouched(&self, name: &str, bytes: &[u8], reason: u32) -> Case {
        Case::untouched(name, bytes, reason).on(self.ingress)
    }
}

impl Fwd {
    pub fn csum(mut self, csum: Csum) -> Fwd {
        self.csum = csum;
        self
    }

    pub fn on(mut self, ifindex: u32) -> Fwd {
        self.on = ifindex;
        self
    }

    pub fn case(self, verdict: u32, reason: u32, leg: Leg) -> Case {
        Case {
            output: expected(&self.frame, self.which, self.to, self.csum, leg),
            name: self.name,
            prog: Prog::Xdp,
            input: self.frame.bytes,
            ingress_ifindex: Some(self.on),
            verdict,
            reason: Some(reason),
            hit: self.hit,
            passive: None,
        }
    }

    /// XDP_REDIRECT to the next hop `leg`.
    pub fn sent(self, leg: Leg) -> Case {
        let reason = match self.which {
            Port::Destination => UDPLB_REASON_FORWARDED,
            Port::Source => UDPLB_REASON_REPLY_FORWARDED,
        };
        self.case(XDP_REDIRECT, reason, leg)
    }

    /// XDP_PASS for `reason`: a request rewritten; a reply as it came
    /// (the kernel routes it and udplb_egress translates it as it leaves:
    /// rewritten here, it would carry this host's address as its source
    /// into the kernel, a martian), and not counted as a reply.
    pub fn passed(self, reason: u32) -> Case {
        match self.which {
            Port::Destination => self.case(XDP_PASS, reason, Leg::Passed),
            Port::Source => Case::untouched(self.name, &self.frame.bytes, reason).on(self.on),
        }
    }

    /// XDP_PASS for `reason`, a reply rewritten and counted: its route
    /// leaves through a device udplb does not run on, where no egress
    /// program of udplb's would translate what the kernel sends.
    pub fn passed_rewritten(self, reason: u32) -> Case {
        assert!(matches!(self.which, Port::Source), "test bug: replies only");
        self.case(XDP_PASS, reason, Leg::Passed)
    }

    /// XDP_DROP, refused for `reason` before any rewrite: nothing counted
    /// but the reason.
    pub fn dropped(self, reason: u32) -> Case {
        Case::dropped(self.name, &self.frame.bytes, reason).on(self.on)
    }
}

// ---------------------------------------------------------------------------
// Frames.

/// The frame with the UDP checksum field set to `v`.
pub fn field(f: &Frame, v: u16) -> Frame {
    f.clone().udp_checksum_field(v)
}

/// The frame with the partial checksum of a sender with offload.
pub fn partial(f: &Frame) -> Frame {
    field(f, partial_value(&f.bytes, f))
}

/// The frame with a checksum damaged on the wire (and neither 0 nor the
/// pseudo-header sum).
pub fn corrupt(f: &Frame) -> Frame {
    let good = get16(&f.bytes, l4(f) + 6);
    let g = field(f, good ^ 0x5a5a);
    check_input(&g, Csum::Corrupt);
    g
}

/// The frame with another TTL / hop limit (IPv4 header checksum redone).
pub fn ttl(f: &Frame, ttl: u8) -> Frame {
    let mut g = f.clone();
    if f.ipv6 {
        g.bytes[f.l3 + 7] = ttl;
    } else {
        g.bytes[f.l3 + 8] = ttl;
        checksum::refresh_ipv4_header(&mut g.bytes, f.l3);
    }
    g
}

/// The IPv4 frame with DF clear (header checksum redone).
pub fn without_df(f: &Frame) -> Frame {
    let mut g = f.clone();
    assert_eq!(g.bytes[f.l3 + 6] & 0x40, 0x40, "test bug: DF already clear");
    g.bytes[f.l3 + 6] &= !0x40;
    checksum::refresh_ipv4_header(&mut g.bytes, f.l3);
    g
}

/// A frame whose IP packet is `ip_len` bytes long.
pub fn of_ip_len(src: &str, dst: &str, ip_len: usize) -> Frame {
    let hdrs = if sock(src).is_ipv6() { 48 } else { 28 };
    let f = udp(src, dst).payload(&vec![0x61; ip_len - hdrs]).build();
    assert_eq!(f.len() - f.l3, ip_len);
    f
}

/// The first 2-byte payload (of 65536) for which `pred` holds; asserts
/// there is one.
pub fn search(what: &str, src: &str, dst: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
    (0..=u16::MAX)
        .map(|v| udp(src, dst).payload(&v.to_be_bytes()).build())
        .find(|f| pred(f))
        .unwrap_or_else(|| panic!("no payload found: {what}"))
}

/// A frame whose checksum computes to 0 (goes out as 0xFFFF) once its
/// `which` endpoint is `to`.
pub fn zero_after(src: &str, dst: &str, which: Port, to: &str) -> Frame {
    search("checksum computing to 0 after the rewrite", src, dst, |f| {
        let out = with_endpoint(f, which, sock(to));
        udp_checksum_computed(&out, f.l3, l4(f), f.ipv6) == 0
    })
}

// ---------------------------------------------------------------------------
// Running.

pub fn fixture() -> (Fixture, Net) {
    let fx = Fixture::new(SPECS);
    let net = private_topology();
    register_tx_ports(&fx.dp, &net);
    (fx, net)
}

/// Only the given reasons have counted, this many times each.
pub fn counter(frames: &[&Frame]) -> Counter {
    Counter {
        packets: frames.len() as u64,
        bytes: frames.iter().map(|f| f.len() as u64).sum(),
    }
}

// ---------------------------------------------------------------------------
// Tests.

/// The single backends' (frontend, backend) indices.
pub const O4: (usize, usize) = (ONE4, 0);
pub const O6: (usize, usize) = (ONE6, 0);
