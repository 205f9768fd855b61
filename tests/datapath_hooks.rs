//! Datapath fixtures for the rewrite shared by the XDP program (`udplb_xdp`)
//! and the TC egress program (`udplb_egress`): IPv6 first and later
//! fragments, replies whose frontend has an address leaving through egress,
//! IPv6 UDP length 0, and which counters a refused fragment moves.
//!
//! Each case is a row: a description, the hook it runs on, an input frame,
//! the expected verdict, the expected output bytes and the expected counter
//! changes. Expected outputs are built from scratch as the frame the client
//! (or backend) must receive, with every checksum recomputed over the whole
//! datagram (RFC 1071 code here, cross-checked against etherparse); never by
//! an incremental update.
//!
//! Needs root (loading BPF programs): the tests fail without it, they never
//! skip.

mod support;

use std::net::{IpAddr, SocketAddr};

use support::runner::run_once;

use udplb::abi::{
    UDPLB_REASON_BALANCED, UDPLB_REASON_FRAGMENT, UDPLB_REASON_IPV6_EXT, UDPLB_REASON_REPLY,
};
use udplb::config::Config;
use udplb::datapath::{Counters, Datapath};
use udplb::plan::Layout;

const XDP_PASS: u32 = 2;
/// udplb_egress always answers "no opinion" (TC_ACT_UNSPEC, -1).
const TC_ACT_UNSPEC: u32 = -1i32 as u32;

/// One backend per frontend, so no case depends on a round-robin position.
const SPECS: &[&str] = &[
    "9875=9876",                       // LOCAL: a port on this host
    "198.18.0.1:53=198.18.0.2:5353",   // ADDR4: a backend with an address
    "[2001:2::1]:53=[2001:2::2]:5353", // ADDR6
];
const LOCAL: usize = 0;
const ADDR4: usize = 1;
const ADDR6: usize = 2;

const C4: &str = "192.0.2.10:40000";
const C6: &str = "[2001:db8::10]:40000";
const H6: &str = "2001:db8::1";

// ---------------------------------------------------------------------------
// Checksums from scratch.

fn sum_words(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The UDP checksum of `datagram` (its checksum field taken as zero) as
/// transmitted; `len` is the pseudo-header length (the datagram's real
/// length, also when its length field says 0).
fn udp_checksum(src: &IpAddr, dst: &IpAddr, datagram: &[u8]) -> u16 {
    let mut d = datagram.to_vec();
    d[6..8].copy_from_slice(&[0, 0]);
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&t.octets());
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&(d.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&t.octets());
            pseudo.extend_from_slice(&(d.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
        }
        _ => panic!("test bug: mixed families"),
    }
    let c = match !fold(sum_words(&pseudo) + sum_words(&d)) {
        0 => 0xffff,
        c => c,
    };
    // A second opinion, when the length field is the real length.
    if u16::from_be_bytes([d[4], d[5]]) as usize == d.len() {
        let h = etherparse::UdpHeader::from_slice(&d).unwrap().0;
        let theirs = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(t)) => h
                .calc_checksum_ipv4_raw(s.octets(), t.octets(), &d[8..])
                .unwrap(),
            (IpAddr::V6(s), IpAddr::V6(t)) => h
                .calc_checksum_ipv6_raw(s.octets(), t.octets(), &d[8..])
                .unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(c, theirs, "RFC 1071 code and etherparse disagree");
    }
    c
}

// ---------------------------------------------------------------------------
// Frames, by hand, so that fragments and odd lengths are exact.

#[derive(Clone, Debug)]
struct Dgram {
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
    /// IPv6: a Fragment header (offset in 8-byte units, M).
    frag6: Option<(u16, bool)>,
    /// IPv4: flags and offset field (MF = 0x2000).
    frag4: u16,
    /// Keep only this many bytes of the datagram (a first fragment); the
    /// checksum still covers all of it.
    keep: Option<usize>,
    /// Write 0 in the UDP length field (IPv6 jumbogram form).
    ulen_zero: bool,
    /// A fixed UDP checksum field instead of the computed one.
    check: Option<u16>,
}

fn dgram(src: &str, dst: &str) -> Dgram {
    Dgram {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        payload: (0..64u8).collect(),
        frag6: None,
        frag4: 0,
        keep: None,
        ulen_zero: false,
        check: None,
    }
}

impl Dgram {
    fn frag6(mut self, offset: u16, more: bool) -> Self {
        self.frag6 = Some((offset, more));
        self
    }
    fn frag4(mut self, field: u16) -> Self {
        self.frag4 = field;
        self
    }
    fn keep(mut self, n: usize) -> Self {
        self.keep = Some(n);
        self
    }
    fn ulen_zero(mut self) -> Self {
        self.ulen_zero = true;
        self
    }
    fn check(mut self, c: u16) -> Self {
        self.check = Some(c);
        self
    }
    fn from(&self, src: &str) -> Self {
        Dgram {
            src: src.parse().unwrap(),
            ..self.clone()
        }
    }
    fn to(&self, dst: &str) -> Self {
        Dgram {
            dst: dst.parse().unwrap(),
            ..self.clone()
        }
    }

    fn datagram(&self) -> Vec<u8> {
        let len = 8 + self.payload.len();
        let mut d = Vec::new();
        d.extend_from_slice(&self.src.port().to_be_bytes());
        d.extend_from_slice(&self.dst.port().to_be_bytes());
        let field = if self.ulen_zero { 0 } else { len as u16 };
        d.extend_from_slice(&field.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&self.payload);
        let c = self
            .check
            .unwrap_or_else(|| udp_checksum(&self.src.ip(), &self.dst.ip(), &d));
        d[6..8].copy_from_slice(&c.to_be_bytes());
        d
    }

    fn frame(&self) -> Vec<u8> {
        let mut l4 = self.datagram();
        if let Some(n) = self.keep {
            l4.truncate(n);
        }
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                assert!(self.frag6.is_none());
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut h = vec![0x45, 0];
                h.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
                h.extend_from_slice(&0x1234u16.to_be_bytes());
                h.extend_from_slice(&self.frag4.to_be_bytes());
                h.extend_from_slice(&[64, 17, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                let c = !fold(sum_words(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let ext = if self.frag6.is_some() { 8 } else { 0 };
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&((ext + l4.len()) as u16).to_be_bytes());
                f.push(if self.frag6.is_some() { 44 } else { 17 });
                f.push(64);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                if let Some((offset, more)) = self.frag6 {
                    let field = (offset << 3) | u16::from(more);
                    f.extend_from_slice(&[17, 0]);
                    f.extend_from_slice(&field.to_be_bytes());
                    f.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
                }
            }
            _ => panic!("test bug: mixed families"),
        }
        f.extend_from_slice(&l4);
        f
    }
}

// ---------------------------------------------------------------------------
// The table runner: one BPF_PROG_TEST_RUN per row, every mismatch reported.

#[derive(Clone, Copy, Debug)]
enum Hook {
    /// udplb_xdp without a context (the kernel runs it as if on lo).
    Xdp,
    /// udplb_egress (the test-run skb carries a socket, as local sends do).
    Tc,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hit {
    Nothing,
    /// Backend 0 of this frontend.
    Backend(usize),
    /// This frontend's replies.
    Reply(usize),
}

struct Case {
    name: &'static str,
    hook: Hook,
    input: Vec<u8>,
    verdict: u32,
    output: Vec<u8>,
    /// XDP: the reason counter that moves (TC moves none).
    reason: Option<u32>,
    hit: Hit,
}

impl Case {
    fn new(name: &'static str, hook: Hook, input: &Dgram, output: &Dgram) -> Case {
        let (input, output) = (input.frame(), output.frame());
        assert_eq!(input.len(), output.len(), "test bug: {name}");
        Case {
            name,
            hook,
            verdict: match hook {
                Hook::Xdp => XDP_PASS,
                Hook::Tc => TC_ACT_UNSPEC,
            },
            input,
            output,
            reason: None,
            hit: Hit::Nothing,
        }
    }
    fn untouched(name: &'static str, hook: Hook, input: &Dgram) -> Case {
        Case::new(name, hook, input, input)
    }
    fn reason(mut self, r: u32) -> Case {
        self.reason = Some(r);
        self
    }
    fn hit(mut self, h: Hit) -> Case {
        self.hit = h;
        self
    }
}

struct Fixture {
    dp: Datapath,
    layout: Layout,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root: run sudo make test (BPF_PROG_TEST_RUN)"
        );
        let config = Config::from_specs(SPECS).expect("test configuration");
        let dp = Datapath::load().expect("loading the datapath");
        let state = dp.configure(&config).expect("writing the tables");
        Fixture {
            layout: state.layout(&config),
            dp,
        }
    }

    fn counters(&self) -> Counters {
        self.dp.counters(&self.layout).expect("reading counters")
    }

    fn check(&self, c: &Case) -> Result<(), String> {
        let before = self.counters();
        let (verdict, output) = match c.hook {
            Hook::Xdp => run_once(self.dp.xdp_program(), &c.input, None),
            Hook::Tc => run_once(self.dp.egress_prog(), &c.input, None),
        }
        .map_err(|e| format!("BPF_PROG_TEST_RUN: {e:#}"))?;
        let after = self.counters();
        let mut want = before.clone();
        if let Some(r) = c.reason {
            want.reasons[r as usize] += 1;
        }
        let bytes = c.input.len() as u64;
        match c.hit {
            Hit::Nothing => {}
            Hit::Backend(f) => {
                want.backends[f][0].packets += 1;
                want.backends[f][0].bytes += bytes;
            }
            Hit::Reply(f) => {
                want.replies[f].packets += 1;
                want.replies[f].bytes += bytes;
                support::runner::reply_seen(&before, &after, &mut want, f);
            }
        }
        let mut err = Vec::new();
        if verdict != c.verdict {
            err.push(format!("verdict {verdict}, expected {}", c.verdict));
        }
        if output != c.output {
            err.push(format!("output differs:\n{}", diff(&c.output, &output)));
        }
        if after != want {
            err.push(format!(
                "counters: got {:?}\n  expected {:?}",
                delta(&before, &after),
                delta(&before, &want)
            ));
        }
        if err.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "case {:?} ({:?}): {}",
                c.name,
                c.hook,
                err.join("; ")
            ))
        }
    }

    fn check_all(&self, cases: &[Case]) {
        let failures: Vec<String> = cases.iter().filter_map(|c| self.check(c).err()).collect();
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}

fn delta(a: &Counters, b: &Counters) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (x, y)) in a.reasons.iter().zip(&b.reasons).enumerate() {
        if x != y {
            out.push(format!("{} +{}", udplb::abi::REASON_NAMES[i], y - x));
        }
    }
    for (f, (x, y)) in a.backends.iter().zip(&b.backends).enumerate() {
        if x != y {
            out.push(format!("backend[{f}] {x:?} -> {y:?}"));
        }
    }
    for (f, (x, y)) in a.replies.iter().zip(&b.replies).enumerate() {
        if x != y {
            out.push(format!("reply[{f}] {x:?} -> {y:?}"));
        }
    }
    out
}

fn diff(want: &[u8], got: &[u8]) -> String {
    let mut s = format!("  {} bytes expected, {} got\n", want.len(), got.len());
    for row in (0..want.len().max(got.len())).step_by(16) {
        let r = |b: &[u8]| {
            (row..row + 16)
                .map(|i| b.get(i).map_or("--".into(), |v| format!("{v:02x}")))
                .collect::<Vec<String>>()
                .join(" ")
        };
        if r(want) != r(got) {
            s += &format!("  {row:04x} want {}\n       got  {}\n", r(want), r(got));
        }
    }
    s
}

// ---------------------------------------------------------------------------
// The cases.

/// Hardening item 4: a local backend's IPv6 reply larger than the MTU leaves
/// in fragments; the first (Fragment header, offset 0) holds the UDP header
/// and must leave from the frontend port. Later fragments pass untouched.
#[test]
fn ipv6_fragments() {
    let fx = Fixture::new();
    let reply = dgram(&format!("[{H6}]:9876"), C6);
    // The first 8 + 40 bytes of a 72-byte datagram (fragment data is 8n).
    let first = reply.clone().frag6(0, true).keep(48);
    // A later fragment whose data happens to read as UDP from 9876.
    let later = reply.clone().frag6(6, true);
    let last = reply.clone().frag6(6, false);
    let request = dgram(C6, &format!("[{H6}]:9875"));
    let req_first = request.clone().frag6(0, true).keep(48);
    let remote_req = dgram(C6, "[2001:2::1]:53").frag6(0, true).keep(48);
    let remote_reply = dgram("[2001:2::2]:5353", C6).frag6(0, true).keep(48);
    let cases = vec![
        Case::new(
            "TC: IPv6 first fragment of a local backend's reply",
            Hook::Tc,
            &first,
            &first.from(&format!("[{H6}]:9875")),
        )
        .hit(Hit::Reply(LOCAL)),
        Case::new(
            "TC: IPv6 atomic fragment (offset 0, M clear)",
            Hook::Tc,
            &reply.clone().frag6(0, false),
            &reply.from(&format!("[{H6}]:9875")).frag6(0, false),
        )
        .hit(Hit::Reply(LOCAL)),
        Case::untouched("TC: IPv6 later fragment (M set)", Hook::Tc, &later),
        Case::untouched("TC: IPv6 last fragment", Hook::Tc, &last),
        Case::new(
            "XDP: IPv6 first fragment of a local backend's reply, on lo",
            Hook::Xdp,
            &first,
            &first.from(&format!("[{H6}]:9875")),
        )
        .reason(UDPLB_REASON_REPLY)
        .hit(Hit::Reply(LOCAL)),
        Case::new(
            "XDP: IPv6 first fragment of a request to a local backend",
            Hook::Xdp,
            &req_first,
            &req_first.to(&format!("[{H6}]:9876")),
        )
        .reason(UDPLB_REASON_BALANCED)
        .hit(Hit::Backend(LOCAL)),
        Case::untouched("XDP: IPv6 later fragment", Hook::Xdp, &later)
            .reason(UDPLB_REASON_FRAGMENT),
        Case::untouched("XDP: IPv6 last fragment", Hook::Xdp, &last).reason(UDPLB_REASON_FRAGMENT),
        Case::untouched(
            "XDP: IPv6 first fragment of a request to a remote backend",
            Hook::Xdp,
            &remote_req,
        )
        .reason(UDPLB_REASON_FRAGMENT),
        Case::untouched(
            "XDP: IPv6 first fragment of a remote backend's reply",
            Hook::Xdp,
            &remote_reply,
        )
        .reason(UDPLB_REASON_FRAGMENT),
    ];
    fx.check_all(&cases);
}

/// Only the Fragment header is parsed: a Fragment header in front of
/// another extension header, or another extension header first, still goes
/// to the kernel as IPV6_EXT.
#[test]
fn other_extension_headers_stay_ipv6_ext() {
    let fx = Fixture::new();
    let mut behind_frag = dgram(C6, &format!("[{H6}]:9875")).frag6(0, true).frame();
    behind_frag[54] = 60; // Fragment's next header: Destination Options
    let mut hbh = dgram(C6, &format!("[{H6}]:9875")).frame();
    hbh[20] = 0; // Hop-by-Hop where UDP was (its bytes read as UDP)
    let row = |name, frame: Vec<u8>| Case {
        name,
        hook: Hook::Xdp,
        verdict: XDP_PASS,
        output: frame.clone(),
        input: frame,
        reason: Some(UDPLB_REASON_IPV6_EXT),
        hit: Hit::Nothing,
    };
    fx.check_all(&[
        row("Fragment header, then Destination Options", behind_frag),
        row("Hop-by-Hop header first", hbh),
    ]);
}

/// Hardening item 6: a reply from a backend that has an address (one of
/// this host's own, sending from a local socket) leaves through egress with
/// the frontend's address and port, both checksums right.
#[test]
fn egress_rewrites_the_frontend_address() {
    let fx = Fixture::new();
    let r4 = dgram("198.18.0.2:5353", C4);
    let r6 = dgram("[2001:2::2]:5353", C6);
    let cases = vec![
        Case::new(
            "TC: IPv4 reply from 198.18.0.2:5353",
            Hook::Tc,
            &r4,
            &r4.from("198.18.0.1:53"),
        )
        .hit(Hit::Reply(ADDR4)),
        Case::new(
            "TC: IPv4 reply with checksum 0 (none): stays 0",
            Hook::Tc,
            &r4.clone().check(0),
            &r4.from("198.18.0.1:53").check(0),
        )
        .hit(Hit::Reply(ADDR4)),
        Case::new(
            "TC: IPv6 reply from [2001:2::2]:5353",
            Hook::Tc,
            &r6,
            &r6.from("[2001:2::1]:53"),
        )
        .hit(Hit::Reply(ADDR6)),
        Case::new(
            "TC: IPv4 first fragment of a local backend's reply (port only)",
            Hook::Tc,
            &dgram("192.0.2.1:9876", C4).frag4(0x2000).keep(32),
            &dgram("192.0.2.1:9875", C4).frag4(0x2000).keep(32),
        )
        .hit(Hit::Reply(LOCAL)),
        // The later fragments would keep the old source address: the client
        // could not reassemble a first fragment with a new one.
        Case::untouched(
            "TC: IPv4 first fragment of a reply whose address would change",
            Hook::Tc,
            &r4.clone().frag4(0x2000).keep(32),
        ),
        Case::untouched(
            "TC: IPv6 first fragment of a reply whose address would change",
            Hook::Tc,
            &r6.clone().frag6(0, true).keep(48),
        ),
    ];
    fx.check_all(&cases);
}

/// Hardening item 9a: a fragment refused on the remote path moves the
/// FRAGMENT reason and no backend or reply counter, requests and replies
/// alike.
#[test]
fn refused_fragments_count_no_packet() {
    let fx = Fixture::new();
    let cases = vec![
        Case::untouched(
            "XDP: IPv4 first fragment of a remote backend's reply",
            Hook::Xdp,
            &dgram("198.18.0.2:5353", C4).frag4(0x2000).keep(32),
        )
        .reason(UDPLB_REASON_FRAGMENT),
        Case::untouched(
            "XDP: IPv4 first fragment of a request to a remote backend",
            Hook::Xdp,
            &dgram(C4, "198.18.0.1:53").frag4(0x2000).keep(32),
        )
        .reason(UDPLB_REASON_FRAGMENT),
    ];
    fx.check_all(&cases);
}

/// Hardening item 14: Linux reads an IPv6 UDP length of 0 as "the rest of
/// the payload" (the jumbogram form); so does udplb.
#[test]
fn ipv6_udp_length_zero() {
    let fx = Fixture::new();
    let req = dgram(C6, &format!("[{H6}]:9875")).ulen_zero();
    let reply = dgram(&format!("[{H6}]:9876"), C6).ulen_zero();
    let cases = vec![
        Case::new(
            "XDP: request to a local backend",
            Hook::Xdp,
            &req,
            &req.to(&format!("[{H6}]:9876")),
        )
        .reason(UDPLB_REASON_BALANCED)
        .hit(Hit::Backend(LOCAL)),
        Case::new(
            "XDP: local backend's reply on lo",
            Hook::Xdp,
            &reply,
            &reply.from(&format!("[{H6}]:9875")),
        )
        .reason(UDPLB_REASON_REPLY)
        .hit(Hit::Reply(LOCAL)),
        Case::new(
            "TC: local backend's reply",
            Hook::Tc,
            &reply,
            &reply.from(&format!("[{H6}]:9875")),
        )
        .hit(Hit::Reply(LOCAL)),
        Case::new(
            "TC: reply whose address changes",
            Hook::Tc,
            &dgram("[2001:2::2]:5353", C6).ulen_zero(),
            &dgram("[2001:2::1]:53", C6).ulen_zero(),
        )
        .hit(Hit::Reply(ADDR6)),
    ];
    fx.check_all(&cases);
}
