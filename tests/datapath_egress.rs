//! Datapath fixtures for the reply path: the TC egress program
//! (`udplb_egress`) run once per case through BPF_PROG_TEST_RUN on packets
//! built here. Every case has a name, an input frame, an expected verdict,
//! expected output bytes and expected counter deltas (Katran-style table).
//!
//! Expected outputs are computed from scratch and independently of the
//! datapath: the input is rebuilt with the new source port and its UDP
//! checksum recomputed over the whole rewritten datagram with the RFC 768
//! pseudo-header (RFC 1071 code here, cross-checked against etherparse),
//! never with an incremental update.
//!
//! Needs root (loading BPF programs): run `sudo make test`. Without root the
//! tests fail, they never skip.

use std::net::{IpAddr, SocketAddr};

use udplb::abi::Counter;
use udplb::config::Config;
use udplb::datapath::{Counters, Datapath};
use udplb::state::Layout;

/// The only verdict udplb_egress returns: TC_ACT_UNSPEC / TCX_NEXT (-1),
/// "no opinion", so programs after it on the interface still run.
const TC_ACT_UNSPEC: u32 = -1i32 as u32;

/// The configuration of the brief. Frontend ids follow config order.
const SPECS: &[&str] = &[
    "9875=9876,9877",      // RR: port-only (wildcard, both families)
    "198.18.0.1:53=5353",  // DNS_V4: exact IPv4 frontend
    "[2001:2::1]:53=6363", // DNS_V6: exact IPv6 frontend
];
const RR: usize = 0;
const DNS_V4: usize = 1;
const DNS_V6: usize = 2;

/// Clients the replies go to.
const C4: &str = "192.0.2.10:40000";
const C6: &str = "[2001:db8::10]:40000";
/// Addresses of this host that no frontend names exactly.
const H4: &str = "192.0.2.1";
const H6: &str = "2001:db8::1";

const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IP_MF: u16 = 0x2000;

fn v4(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}
fn v6(host: &str, port: u16) -> String {
    format!("[{host}]:{port}")
}

// ---------------------------------------------------------------------------
// Checksums (RFC 1071), written here, cross-checked against etherparse.
// ---------------------------------------------------------------------------

/// The ones' complement sum of `data` as 16-bit big-endian words (an odd
/// last byte is padded with zero), not yet folded.
fn sum_words(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The IPv4 header checksum of `header` (whose checksum field is zero).
fn ipv4_header_checksum(header: &[u8]) -> u16 {
    !fold(sum_words(header))
}

/// The UDP checksum as computed, before RFC 768's "0 is sent as 0xFFFF":
/// the complement of the sum of the pseudo-header and the datagram (whose
/// checksum field is zero).
fn udp_checksum_raw(src: &[u8], dst: &[u8], datagram: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    if src.len() == 4 {
        pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
        pseudo.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
    } else {
        pseudo.extend_from_slice(&(datagram.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_UDP]);
    }
    !fold(sum_words(&pseudo) + sum_words(datagram))
}

/// The UDP checksum as transmitted (a computed zero is sent as 0xFFFF),
/// cross-checked against etherparse.
fn udp_checksum(src: &[u8], dst: &[u8], datagram: &[u8]) -> u16 {
    let raw = udp_checksum_raw(src, dst, datagram);
    let ours = if raw == 0 { 0xffff } else { raw };
    let header = etherparse::UdpHeader {
        source_port: u16::from_be_bytes([datagram[0], datagram[1]]),
        destination_port: u16::from_be_bytes([datagram[2], datagram[3]]),
        length: datagram.len() as u16,
        checksum: 0,
    };
    let payload = &datagram[8..];
    let theirs = if src.len() == 4 {
        header
            .calc_checksum_ipv4_raw(src.try_into().unwrap(), dst.try_into().unwrap(), payload)
            .unwrap()
    } else {
        header
            .calc_checksum_ipv6_raw(src.try_into().unwrap(), dst.try_into().unwrap(), payload)
            .unwrap()
    };
    assert_eq!(ours, theirs, "RFC 1071 code and etherparse disagree");
    ours
}

// ---------------------------------------------------------------------------
// Packet building, by hand so every field can be set (or broken) exactly.
// ---------------------------------------------------------------------------

/// Ethernet (+ VLAN tags, outermost first) around `body`.
fn ethernet(vlans: &[(u16, u16)], ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for &(tpid, tci) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[derive(Clone, Debug)]
enum L3 {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        options: Vec<u8>,
        /// Flags and fragment offset.
        frag: u16,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
    },
}

impl L3 {
    fn between(src: IpAddr, dst: IpAddr) -> L3 {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => L3::V4 {
                src: s.octets(),
                dst: d.octets(),
                options: Vec::new(),
                frag: 0,
            },
            (IpAddr::V6(s), IpAddr::V6(d)) => L3::V6 {
                src: s.octets(),
                dst: d.octets(),
            },
            _ => panic!("{src} and {dst} are of different families"),
        }
    }

    fn ethertype(&self) -> u16 {
        match self {
            L3::V4 { .. } => ETH_P_IP,
            L3::V6 { .. } => ETH_P_IPV6,
        }
    }

    fn addrs(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            L3::V4 { src, dst, .. } => (src.to_vec(), dst.to_vec()),
            L3::V6 { src, dst } => (src.to_vec(), dst.to_vec()),
        }
    }

    /// The IP packet carrying `payload` as protocol `proto`.
    fn packet(&self, proto: u8, payload: &[u8]) -> Vec<u8> {
        match self {
            L3::V4 {
                src,
                dst,
                options,
                frag,
            } => {
                assert!(options.len() % 4 == 0 && options.len() <= 40);
                let hlen = 20 + options.len();
                let mut h = vec![0x40 | (hlen / 4) as u8, 0];
                h.extend_from_slice(&((hlen + payload.len()) as u16).to_be_bytes());
                h.extend_from_slice(&0x1234u16.to_be_bytes()); // identification
                h.extend_from_slice(&frag.to_be_bytes());
                h.extend_from_slice(&[64, proto, 0, 0]);
                h.extend_from_slice(src);
                h.extend_from_slice(dst);
                h.extend_from_slice(options);
                let c = ipv4_header_checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                // Cross-check the header checksum against etherparse.
                let parsed = etherparse::Ipv4HeaderSlice::from_slice(&h)
                    .expect("etherparse parses the IPv4 header")
                    .to_header();
                assert_eq!(parsed.calc_header_checksum(), c, "IPv4 header checksum");
                h.extend_from_slice(payload);
                h
            }
            L3::V6 { src, dst } => {
                let mut h = vec![0x60, 0, 0, 0];
                h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                h.extend_from_slice(&[proto, 64]);
                h.extend_from_slice(src);
                h.extend_from_slice(dst);
                h.extend_from_slice(payload);
                h
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Csum {
    /// Computed from scratch over the datagram (as transmitted).
    Computed,
    /// This exact value (0: "no checksum" for IPv4).
    Fixed(u16),
}

/// A UDP datagram in an Ethernet frame.
#[derive(Clone, Debug)]
struct Udp {
    vlans: Vec<(u16, u16)>,
    l3: L3,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
    csum: Csum,
    /// IP payload bytes after the UDP datagram (udp.len < IP payload length).
    ip_trailer: Vec<u8>,
    /// Bytes after the IP packet (Ethernet padding).
    eth_trailer: Vec<u8>,
    /// Keep only this many bytes of the UDP datagram in the IP packet (a
    /// first fragment); the checksum still covers the whole datagram.
    keep_l4: Option<usize>,
}

/// A UDP datagram from `src` to `dst` ("a.b.c.d:port" or "[v6]:port").
fn udp(src: &str, dst: &str) -> Udp {
    let s: SocketAddr = src.parse().unwrap();
    let d: SocketAddr = dst.parse().unwrap();
    Udp {
        vlans: Vec::new(),
        l3: L3::between(s.ip(), d.ip()),
        sport: s.port(),
        dport: d.port(),
        payload: b"reply payload".to_vec(),
        csum: Csum::Computed,
        ip_trailer: Vec::new(),
        eth_trailer: Vec::new(),
        keep_l4: None,
    }
}

impl Udp {
    fn payload(mut self, p: &[u8]) -> Udp {
        self.payload = p.to_vec();
        self
    }
    fn csum(mut self, c: Csum) -> Udp {
        self.csum = c;
        self
    }
    fn vlans(mut self, v: &[(u16, u16)]) -> Udp {
        self.vlans = v.to_vec();
        self
    }
    fn ipv4_options(mut self, o: &[u8]) -> Udp {
        match &mut self.l3 {
            L3::V4 { options, .. } => *options = o.to_vec(),
            L3::V6 { .. } => panic!("IPv4 options on IPv6"),
        }
        self
    }
    fn ipv4_frag(mut self, f: u16) -> Udp {
        match &mut self.l3 {
            L3::V4 { frag, .. } => *frag = f,
            L3::V6 { .. } => panic!("IPv4 fragment on IPv6"),
        }
        self
    }
    fn ip_trailer(mut self, t: &[u8]) -> Udp {
        self.ip_trailer = t.to_vec();
        self
    }
    fn eth_trailer(mut self, t: &[u8]) -> Udp {
        self.eth_trailer = t.to_vec();
        self
    }
    fn keep_l4(mut self, n: usize) -> Udp {
        self.keep_l4 = Some(n);
        self
    }
    fn with_sport(&self, sport: u16) -> Udp {
        let mut u = self.clone();
        u.sport = sport;
        u
    }

    /// The UDP datagram (header and payload) with its checksum.
    fn datagram(&self) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&self.sport.to_be_bytes());
        d.extend_from_slice(&self.dport.to_be_bytes());
        d.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&self.payload);
        let c = match self.csum {
            Csum::Computed => {
                let (src, dst) = self.l3.addrs();
                udp_checksum(&src, &dst, &d)
            }
            Csum::Fixed(c) => c,
        };
        d[6..8].copy_from_slice(&c.to_be_bytes());
        d
    }

    fn checksum(&self) -> u16 {
        let d = self.datagram();
        u16::from_be_bytes([d[6], d[7]])
    }

    fn frame(&self) -> Vec<u8> {
        let mut l4 = self.datagram();
        if let Some(n) = self.keep_l4 {
            l4.truncate(n);
        }
        l4.extend_from_slice(&self.ip_trailer);
        let mut f = ethernet(
            &self.vlans,
            self.l3.ethertype(),
            &self.l3.packet(IPPROTO_UDP, &l4),
        );
        f.extend_from_slice(&self.eth_trailer);
        // etherparse leaves fragments' transport headers alone.
        let fragment = matches!(self.l3, L3::V4 { frag, .. } if frag & (IP_MF | 0x1fff) != 0);
        if !fragment {
            sanity_check_udp(&f, self.sport, self.dport);
        }
        f
    }
}

/// etherparse finds the UDP header we meant to build.
fn sanity_check_udp(frame: &[u8], sport: u16, dport: u16) {
    let p = etherparse::SlicedPacket::from_ethernet(frame)
        .unwrap_or_else(|e| panic!("etherparse rejects a built frame: {e:?}\n{}", hex(frame)));
    match p.transport {
        Some(etherparse::TransportSlice::Udp(u)) => {
            assert_eq!(
                (u.source_port(), u.destination_port()),
                (sport, dport),
                "built frame"
            )
        }
        other => panic!("built frame is not UDP to etherparse: {other:?}"),
    }
}

/// A non-UDP IP packet whose first transport bytes are `l4`.
fn ip_frame(vlans: &[(u16, u16)], src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    let l3 = L3::between(src.parse().unwrap(), dst.parse().unwrap());
    ethernet(vlans, l3.ethertype(), &l3.packet(proto, l4))
}

/// A TCP segment (SYN-ACK) from `src` to `dst`, checksum left zero: the
/// datapath must not look at it at all.
fn tcp_frame(src: &str, dst: &str) -> Vec<u8> {
    let s: SocketAddr = src.parse().unwrap();
    let d: SocketAddr = dst.parse().unwrap();
    let mut t = Vec::new();
    t.extend_from_slice(&s.port().to_be_bytes());
    t.extend_from_slice(&d.port().to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes()); // seq
    t.extend_from_slice(&1u32.to_be_bytes()); // ack
    t.extend_from_slice(&[0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(b"tcp data");
    ip_frame(
        &[],
        &s.ip().to_string(),
        &d.ip().to_string(),
        IPPROTO_TCP,
        &t,
    )
}

/// An ICMP message whose type/code bytes read as port 9876 (0x2694) and
/// whose next two bytes read as port 9875 to anything that mistook it for
/// UDP.
fn icmp_like_port(src: &str, dst: &str, proto: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&9876u16.to_be_bytes());
    t.extend_from_slice(&9875u16.to_be_bytes());
    t.extend_from_slice(&[0, 16, 0, 0]);
    t.extend_from_slice(b"icmp  payload");
    ip_frame(&[], src, dst, proto, &t)
}

fn patched(mut frame: Vec<u8>, offset: usize, bytes: &[u8]) -> Vec<u8> {
    frame[offset..offset + bytes.len()].copy_from_slice(bytes);
    frame
}

/// `base` with a payload chosen so that (`on_output`) the datagram with its
/// source port rewritten to `to` has a computed checksum of zero (sent as
/// 0xFFFF), or (`!on_output`) the input itself has a computed zero.
fn find_zero_checksum(base: &Udp, to: u16, on_output: bool) -> Udp {
    for x in 0..=u16::MAX {
        let mut payload = b"zero checksum ".to_vec();
        payload.extend_from_slice(&x.to_be_bytes());
        let cand = base.clone().payload(&payload);
        let probe = if on_output {
            cand.with_sport(to)
        } else {
            cand.clone()
        };
        let (src, dst) = probe.l3.addrs();
        let mut d = probe.datagram();
        d[6..8].copy_from_slice(&[0, 0]);
        if udp_checksum_raw(&src, &dst, &d) == 0 {
            assert_eq!(
                probe.checksum(),
                0xffff,
                "a computed zero is sent as 0xFFFF"
            );
            return cand;
        }
    }
    panic!("no payload gives a computed UDP checksum of zero");
}

// ---------------------------------------------------------------------------
// The fixture: a case table, one BPF_PROG_TEST_RUN per case.
// ---------------------------------------------------------------------------

struct Case {
    name: String,
    input: Vec<u8>,
    verdict: u32,
    output: Vec<u8>,
    /// Expected change of the reply counter of each frontend.
    replies: Vec<(usize, Counter)>,
}

/// Whether BPF_PROG_TEST_RUN may refuse `frame` (EINVAL) before the program
/// runs: Linux 6.18 refuses an skb whose EtherType is IPv4 or IPv6 but which
/// is shorter than Ethernet plus a minimal IP header. Such a frame cannot
/// reach the program through test runs; the same truncations behind VLAN
/// tags (EtherType 802.1Q/802.1ad, which the kernel does not check) do.
fn kernel_may_refuse(frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return true;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ETH_P_IP => frame.len() < 14 + 20,
        ETH_P_IPV6 => frame.len() < 14 + 40,
        _ => false,
    }
}

impl Case {
    /// `dgram` leaves with its source port rewritten to `sport` and counts
    /// one reply (and its frame length) for `frontend`.
    fn rewritten(name: impl Into<String>, dgram: &Udp, sport: u16, frontend: usize) -> Case {
        let input = dgram.frame();
        let output = dgram.with_sport(sport).frame();
        assert_eq!(input.len(), output.len());
        assert_ne!(
            input, output,
            "a rewrite that changes nothing tests nothing"
        );
        Case {
            name: name.into(),
            verdict: TC_ACT_UNSPEC,
            replies: vec![(
                frontend,
                Counter {
                    packets: 1,
                    bytes: input.len() as u64,
                },
            )],
            input,
            output,
        }
    }

    /// `input` leaves byte for byte as it came, and no counter moves.
    fn untouched(name: impl Into<String>, input: Vec<u8>) -> Case {
        Case {
            name: name.into(),
            verdict: TC_ACT_UNSPEC,
            output: input.clone(),
            input,
            replies: Vec::new(),
        }
    }
}

enum Outcome {
    Ran,
    /// The kernel refused the input (see [`kernel_may_refuse`]).
    RefusedByKernel,
}

struct Fixture {
    dp: Datapath,
    layout: Layout,
}

fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "needs root: run sudo make test (the egress datapath fixtures load BPF programs \
             and run them with BPF_PROG_TEST_RUN)"
        );
    }
}

impl Fixture {
    fn new(specs: &[&str]) -> Fixture {
        require_root();
        let config = Config::from_specs(specs).expect("valid test configuration");
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

    /// Runs every case in order and fails with every mismatch at once.
    fn check_all(&self, cases: &[Case]) {
        let mut failures = Vec::new();
        let mut refused = 0;
        for case in cases {
            match self.check(case) {
                Ok(Outcome::Ran) => {}
                Ok(Outcome::RefusedByKernel) => refused += 1,
                Err(e) => failures.push(format!("case '{}': {e}", case.name)),
            }
        }
        eprintln!(
            "{} cases: {} ran, {refused} refused by BPF_PROG_TEST_RUN (short IP frame), {} failed",
            cases.len(),
            cases.len() - refused,
            failures.len()
        );
        if !failures.is_empty() {
            panic!(
                "{} of {} egress cases failed:\n\n{}",
                failures.len(),
                cases.len(),
                failures.join("\n\n")
            );
        }
    }

    fn check(&self, case: &Case) -> Result<Outcome, String> {
        let before = self.counters();
        let run = self.dp.test_run_egress(&case.input);
        let after = self.counters();
        let (verdict, output) = match run {
            Ok(r) => r,
            Err(e) => {
                let einval = e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>()
                        .and_then(|io| io.raw_os_error())
                        == Some(nix::errno::Errno::EINVAL as i32)
                }) || format!("{e:#}").contains("os error 22");
                if einval && kernel_may_refuse(&case.input) && case.output == case.input {
                    if after != before {
                        return Err("refused by the kernel, yet counters changed".into());
                    }
                    return Ok(Outcome::RefusedByKernel);
                }
                return Err(format!(
                    "BPF_PROG_TEST_RUN failed: {e:#}\ninput:\n{}",
                    hex(&case.input)
                ));
            }
        };
        let mut errors = Vec::new();
        if verdict != case.verdict {
            errors.push(format!("verdict {verdict}, expected {}", case.verdict));
        }
        if output != case.output {
            errors.push(format!(
                "output differs from the expected bytes\ninput:\n{}\n{}",
                hex(&case.input),
                hex_diff(&case.output, &output)
            ));
        }
        let mut want = vec![Counter::default(); self.layout.frontends.len()];
        for &(fe, c) in &case.replies {
            want[fe].packets += c.packets;
            want[fe].bytes += c.bytes;
        }
        let got: Vec<Counter> = before
            .replies
            .iter()
            .zip(&after.replies)
            .map(|(b, a)| Counter {
                packets: a.packets - b.packets,
                bytes: a.bytes - b.bytes,
            })
            .collect();
        if got != want {
            errors.push(format!(
                "reply counter deltas per frontend: got {got:?}, expected {want:?}"
            ));
        }
        // The egress program counts replies only.
        if after.backends != before.backends {
            errors.push("backend counters changed".into());
        }
        if after.reasons != before.reasons {
            errors.push(format!(
                "reason counters changed: {:?} -> {:?}",
                before.reasons, after.reasons
            ));
        }
        if errors.is_empty() {
            Ok(Outcome::Ran)
        } else {
            Err(errors.join("\n"))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, line)| {
            let h: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            format!("  {:04x}: {}", i * 16, h.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expected and got, 16 bytes a line; differing bytes are marked with `^`.
fn hex_diff(expected: &[u8], got: &[u8]) -> String {
    let mut s = format!(
        "expected {} bytes, got {} bytes (lines with a difference only)\n",
        expected.len(),
        got.len()
    );
    let n = expected.len().max(got.len());
    for start in (0..n).step_by(16) {
        let end = (start + 16).min(n);
        let e: Vec<Option<u8>> = (start..end).map(|i| expected.get(i).copied()).collect();
        let g: Vec<Option<u8>> = (start..end).map(|i| got.get(i).copied()).collect();
        if e == g {
            continue;
        }
        let fmt = |v: &[Option<u8>]| {
            v.iter()
                .map(|b| b.map_or("--".to_string(), |b| format!("{b:02x}")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let marks: String = e
            .iter()
            .zip(&g)
            .map(|(a, b)| if a == b { "   " } else { "^^ " })
            .collect();
        s += &format!(
            "  {start:04x} expected: {}\n  {start:04x} got:      {}\n                  {}\n",
            fmt(&e),
            fmt(&g),
            marks.trim_end()
        );
    }
    s
}

// ---------------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------------

#[test]
fn replies_are_rewritten_to_the_frontend_port() {
    let fx = Fixture::new(SPECS);
    let q = (TPID_8021Q, 100);
    let ad = (TPID_8021AD, 200);
    let nops4 = [1, 1, 1, 0]; // NOP NOP NOP EOL: IHL 6
    let mut opts40 = vec![1u8; 39]; // 39 NOPs and EOL: IHL 15
    opts40.push(0);

    let r4 = udp(&v4(H4, 9876), C4);
    let r6 = udp(&v6(H6, 9876), C6);
    let cases = vec![
        Case::rewritten("IPv4 reply from 9876", &r4, 9875, RR),
        Case::rewritten(
            "IPv4 reply from the second backend 9877",
            &udp(&v4(H4, 9877), C4),
            9875,
            RR,
        ),
        Case::rewritten("IPv6 reply from 9876", &r6, 9875, RR),
        Case::rewritten(
            "IPv6 reply from the second backend 9877",
            &udp(&v6(H6, 9877), C6),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4 checksum 0 (none) stays 0",
            &r4.clone().csum(Csum::Fixed(0)),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4 options, IHL 6",
            &r4.clone().ipv4_options(&nops4),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4 options, IHL 15",
            &r4.clone().ipv4_options(&opts40),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4 options IHL 15, checksum 0",
            &r4.clone().ipv4_options(&opts40).csum(Csum::Fixed(0)),
            9875,
            RR,
        ),
        Case::rewritten("IPv4, one 802.1Q tag", &r4.clone().vlans(&[q]), 9875, RR),
        Case::rewritten(
            "IPv4, 802.1ad + 802.1Q tags",
            &r4.clone().vlans(&[ad, q]),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4, 802.1ad + 802.1Q tags and IHL 15 (deepest UDP header)",
            &r4.clone().vlans(&[ad, q]).ipv4_options(&opts40),
            9875,
            RR,
        ),
        Case::rewritten("IPv6, one 802.1Q tag", &r6.clone().vlans(&[q]), 9875, RR),
        Case::rewritten(
            "IPv6, 802.1ad + 802.1Q tags",
            &r6.clone().vlans(&[ad, q]),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4, two 802.1Q tags",
            &r4.clone().vlans(&[q, q]),
            9875,
            RR,
        ),
        Case::rewritten("IPv4, empty payload", &r4.clone().payload(b""), 9875, RR),
        Case::rewritten("IPv6, empty payload", &r6.clone().payload(b""), 9875, RR),
        Case::rewritten(
            "IPv4, odd-length payload",
            &r4.clone().payload(b"odd"),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4, 1400-byte payload",
            &r4.clone().payload(&[0xa5; 1400]),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv6, 1400-byte payload",
            &r6.clone().payload(&[0x5a; 1400]),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4 minimum frame, Ethernet padding after the IP packet",
            &r4.clone().payload(b"x").eth_trailer(&[0; 17]),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv6, trailing bytes after the IP packet",
            &r6.clone().eth_trailer(&[0xee; 6]),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4, UDP length shorter than the IP payload",
            &r4.clone().ip_trailer(b"beyond udp.len"),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv6, UDP length shorter than the IP payload",
            &r6.clone().ip_trailer(b"beyond udp.len"),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4 first fragment (MF, offset 0): checksum covers the whole datagram",
            &r4.clone()
                .payload(&[0x3c; 64])
                .ipv4_frag(IP_MF)
                .keep_l4(8 + 16),
            9875,
            RR,
        ),
        Case::rewritten("IPv4 with DF set", &r4.clone().ipv4_frag(0x4000), 9875, RR),
    ];
    fx.check_all(&cases);
}

#[test]
fn computed_zero_checksum_is_sent_as_ffff() {
    let fx = Fixture::new(SPECS);
    let q = (TPID_8021Q, 7);
    let z4 = find_zero_checksum(&udp(&v4(H4, 9876), C4), 9875, true);
    let z6 = find_zero_checksum(&udp(&v6(H6, 9876), C6), 9875, true);
    let z4x = find_zero_checksum(&udp(&v4("198.18.0.1", 5353), C4), 53, true);
    assert_eq!(z4.with_sport(9875).checksum(), 0xffff);
    assert_eq!(z6.with_sport(9875).checksum(), 0xffff);
    assert_eq!(z4x.with_sport(53).checksum(), 0xffff);
    // And the other way: the input's checksum is a computed zero (0xFFFF).
    let i4 = find_zero_checksum(&udp(&v4(H4, 9877), C4), 9875, false);
    let i6 = find_zero_checksum(&udp(&v6(H6, 9877), C6), 9875, false);
    assert_eq!(i4.checksum(), 0xffff);
    assert_eq!(i6.checksum(), 0xffff);
    let cases = vec![
        Case::rewritten("IPv4, rewritten checksum computes to 0", &z4, 9875, RR),
        Case::rewritten("IPv6, rewritten checksum computes to 0", &z6, 9875, RR),
        Case::rewritten(
            "IPv4 802.1Q, rewritten checksum computes to 0",
            &z4.clone().vlans(&[q]),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4 exact frontend, rewritten checksum computes to 0",
            &z4x,
            53,
            DNS_V4,
        ),
        Case::rewritten("IPv4, input checksum is 0xFFFF", &i4, 9875, RR),
        Case::rewritten("IPv6, input checksum is 0xFFFF", &i6, 9875, RR),
    ];
    fx.check_all(&cases);
}

#[test]
fn exact_keys_before_wildcard_keys() {
    let fx = Fixture::new(SPECS);
    let cases = vec![
        Case::rewritten(
            "IPv4 from the exact frontend address, backend port 5353",
            &udp(&v4("198.18.0.1", 5353), C4),
            53,
            DNS_V4,
        ),
        Case::untouched(
            "IPv4 from another address, port 5353 (exact-only backend)",
            udp(&v4("198.18.0.9", 5353), C4).frame(),
        ),
        Case::untouched(
            "IPv4 from this host's other address, port 5353",
            udp(&v4(H4, 5353), C4).frame(),
        ),
        Case::untouched(
            "IPv6 from port 5353 (an IPv4-only backend)",
            udp(&v6("2001:2::1", 5353), C6).frame(),
        ),
        Case::untouched(
            "IPv6 from ::ffff:198.18.0.1, port 5353",
            udp(&v6("::ffff:198.18.0.1", 5353), C6).frame(),
        ),
        Case::rewritten(
            "IPv6 from the exact frontend address, backend port 6363",
            &udp(&v6("2001:2::1", 6363), C6),
            53,
            DNS_V6,
        ),
        Case::untouched(
            "IPv6 from another address, port 6363 (exact-only backend)",
            udp(&v6("2001:2::9", 6363), C6).frame(),
        ),
        Case::untouched(
            "IPv4 from 198.18.0.1, port 6363 (an IPv6-only backend)",
            udp(&v4("198.18.0.1", 6363), C4).frame(),
        ),
        Case::rewritten(
            "IPv4 from the exact frontend address, wildcard backend 9876",
            &udp(&v4("198.18.0.1", 9876), C4),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv6 from the exact frontend address, wildcard backend 9877",
            &udp(&v6("2001:2::1", 9877), C6),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4 from any address, wildcard backend 9876",
            &udp(&v4("203.0.113.77", 9876), "198.51.100.1:9"),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv6 from any address, wildcard backend 9876",
            &udp(&v6("fe80::1", 9876), "[ff02::1]:9"),
            9875,
            RR,
        ),
        Case::rewritten(
            "IPv4 exact frontend reply behind 802.1ad + 802.1Q",
            &udp(&v4("198.18.0.1", 5353), C4).vlans(&[(TPID_8021AD, 1), (TPID_8021Q, 2)]),
            53,
            DNS_V4,
        ),
        Case::rewritten(
            "IPv6 exact frontend reply, checksum recomputed",
            &udp(&v6("2001:2::1", 6363), C6).payload(&[0xff; 33]),
            53,
            DNS_V6,
        ),
    ];
    fx.check_all(&cases);
}

#[test]
fn family_specific_wildcards() {
    // 0.0.0.0:PORT and [::]:PORT are wildcards of one family only.
    let fx = Fixture::new(&["0.0.0.0:7000=7001", "[::]:7100=7101"]);
    let cases = vec![
        Case::rewritten(
            "IPv4 from 7001 (IPv4 wildcard backend)",
            &udp(&v4(H4, 7001), C4),
            7000,
            0,
        ),
        Case::untouched(
            "IPv6 from 7001 (IPv4-only wildcard backend)",
            udp(&v6(H6, 7001), C6).frame(),
        ),
        Case::rewritten(
            "IPv6 from 7101 (IPv6 wildcard backend)",
            &udp(&v6(H6, 7101), C6),
            7100,
            1,
        ),
        Case::untouched(
            "IPv4 from 7101 (IPv6-only wildcard backend)",
            udp(&v4(H4, 7101), C4).frame(),
        ),
    ];
    fx.check_all(&cases);
}

#[test]
fn everything_else_is_untouched() {
    let fx = Fixture::new(SPECS);
    let hbh = {
        // IPv6 Hop-by-Hop (PadN) then UDP from 9876.
        let dg = udp(&v6(H6, 9876), C6).datagram();
        let mut ext = vec![IPPROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&dg);
        ip_frame(&[], H6, "2001:db8::10", 0, &ext)
    };
    let three_tags = udp(&v4(H4, 9876), C4)
        .vlans(&[(TPID_8021AD, 1), (TPID_8021Q, 2), (TPID_8021Q, 3)])
        .frame();
    let cases = vec![
        Case::untouched(
            "IPv4 from an unrelated port",
            udp(&v4(H4, 40001), C4).frame(),
        ),
        Case::untouched(
            "IPv6 from an unrelated port",
            udp(&v6(H6, 40001), C6).frame(),
        ),
        Case::untouched(
            "IPv4 from the frontend port itself",
            udp(&v4(H4, 9875), C4).frame(),
        ),
        Case::untouched(
            "IPv4 request to the frontend port",
            udp(C4, &v4(H4, 9875)).frame(),
        ),
        Case::untouched(
            "IPv4 to backend port 9876 (destination, not source)",
            udp(C4, &v4(H4, 9876)).frame(),
        ),
        Case::untouched(
            "IPv6 to backend port 9876 (destination, not source)",
            udp(C6, &v6(H6, 9876)).frame(),
        ),
        Case::untouched("TCP over IPv4 from port 9876", tcp_frame(&v4(H4, 9876), C4)),
        Case::untouched("TCP over IPv6 from port 9876", tcp_frame(&v6(H6, 9876), C6)),
        Case::untouched(
            "ICMP whose type/code read as port 9876",
            icmp_like_port(H4, "192.0.2.10", IPPROTO_ICMP),
        ),
        Case::untouched(
            "ICMPv6 whose type/code read as port 9876",
            icmp_like_port(H6, "2001:db8::10", IPPROTO_ICMPV6),
        ),
        Case::untouched("IPv6 Hop-by-Hop header, then UDP from 9876", hbh),
        // An IPv6 first fragment (Fragment header, offset 0) is rewritten:
        // tests/datapath_hooks.rs, ipv6_fragments.
        Case::untouched(
            "IPv4 middle fragment (offset 1480, MF) whose data reads as UDP from 9876",
            udp(&v4(H4, 9876), C4).ipv4_frag(185 | IP_MF).frame(),
        ),
        Case::untouched(
            "IPv4 last fragment (offset 1480, MF clear) whose data reads as UDP from 9876",
            udp(&v4(H4, 9876), C4).ipv4_frag(185).frame(),
        ),
        Case::untouched("three VLAN tags (deeper than parsed)", three_tags),
        Case::untouched(
            "ARP frame",
            ethernet(&[], ETH_P_ARP, &[[0x26u8, 0x94]; 14].concat()),
        ),
        Case::untouched(
            "Ethernet header only, EtherType 802.1Q (tag missing)",
            ethernet(&[], TPID_8021Q, &[]),
        ),
        Case::untouched(
            "802.1Q tag to IPv4, no IP header",
            ethernet(&[(TPID_8021Q, 5)], ETH_P_IP, &[]),
        ),
        Case::untouched(
            "802.1Q tag to IPv6, no IP header",
            ethernet(&[(TPID_8021Q, 5)], ETH_P_IPV6, &[]),
        ),
    ];
    fx.check_all(&cases);
}

#[test]
fn malformed_headers_are_untouched() {
    let fx = Fixture::new(SPECS);
    let r4 = udp(&v4(H4, 9876), C4).frame();
    let r6 = udp(&v6(H6, 9876), C6).frame();
    let ip4_tot = (r4.len() - 14) as u16;
    let udp4_len = ip4_tot - 20;
    let ip6_plen = (r6.len() - 54) as u16;
    // Offsets: IPv4 header at 14, UDP at 34; IPv6 header at 14, UDP at 54.
    let cases = vec![
        Case::untouched("IPv4 IHL 4", patched(r4.clone(), 14, &[0x44])),
        Case::untouched("IPv4 IHL 0", patched(r4.clone(), 14, &[0x40])),
        Case::untouched(
            "IPv4 EtherType, version 6",
            patched(r4.clone(), 14, &[0x65]),
        ),
        Case::untouched(
            "IPv4 IHL 15 but no options present",
            patched(r4.clone(), 14, &[0x4f]),
        ),
        Case::untouched(
            "IPv4 tot_len 19 (< IHL*4)",
            patched(r4.clone(), 16, &19u16.to_be_bytes()),
        ),
        Case::untouched(
            "IPv4 tot_len beyond the frame",
            patched(r4.clone(), 16, &(ip4_tot + 1).to_be_bytes()),
        ),
        Case::untouched(
            "IPv4 tot_len 27 (UDP header cut by tot_len)",
            patched(r4.clone(), 16, &27u16.to_be_bytes()),
        ),
        Case::untouched(
            "IPv4 UDP length 7",
            patched(r4.clone(), 38, &7u16.to_be_bytes()),
        ),
        Case::untouched(
            "IPv4 UDP length 0",
            patched(r4.clone(), 38, &0u16.to_be_bytes()),
        ),
        Case::untouched(
            "IPv4 UDP length beyond tot_len",
            patched(r4.clone(), 38, &(udp4_len + 1).to_be_bytes()),
        ),
        Case::untouched(
            "IPv6 EtherType, version 4",
            patched(r6.clone(), 14, &[0x40]),
        ),
        Case::untouched(
            "IPv6 payload length beyond the frame",
            patched(r6.clone(), 18, &(ip6_plen + 1).to_be_bytes()),
        ),
        Case::untouched(
            "IPv6 payload length 7",
            patched(r6.clone(), 18, &7u16.to_be_bytes()),
        ),
        // IPv6 UDP length 0 is read as payload_len, as Linux does:
        // tests/datapath_hooks.rs, ipv6_udp_length_zero.
        Case::untouched(
            "IPv6 UDP length 7",
            patched(r6.clone(), 58, &7u16.to_be_bytes()),
        ),
        Case::untouched(
            "IPv6 UDP length beyond the payload length",
            patched(r6.clone(), 58, &(ip6_plen + 1).to_be_bytes()),
        ),
    ];
    fx.check_all(&cases);
}

#[test]
fn truncated_replies_are_untouched() {
    let fx = Fixture::new(SPECS);
    let mut cases = Vec::new();
    for (family, dgram) in [
        ("IPv4", udp(&v4(H4, 9876), C4)),
        ("IPv6", udp(&v6(H6, 9876), C6)),
        (
            "IPv4 802.1ad+802.1Q IHL 6",
            udp(&v4(H4, 9876), C4)
                .vlans(&[(TPID_8021AD, 1), (TPID_8021Q, 2)])
                .ipv4_options(&[1, 1, 1, 0]),
        ),
        (
            "IPv4 802.1Q",
            udp(&v4(H4, 9876), C4).vlans(&[(TPID_8021Q, 2)]),
        ),
        (
            "IPv6 802.1Q",
            udp(&v6(H6, 9876), C6).vlans(&[(TPID_8021Q, 2)]),
        ),
        (
            "IPv4 IHL 15",
            udp(&v4(H4, 9876), C4).ipv4_options(&[[1u8; 39].as_slice(), &[0]].concat()),
        ),
    ] {
        let full = dgram.frame();
        // BPF_PROG_TEST_RUN for TC needs at least the 14 Ethernet bytes.
        for len in 14..full.len() {
            cases.push(Case::untouched(
                format!("{family} reply truncated to {len} of {} bytes", full.len()),
                full[..len].to_vec(),
            ));
        }
        // The whole frame is a valid reply: it is what the truncations cut.
        cases.push(Case::rewritten(
            format!("{family} reply, untruncated ({} bytes)", full.len()),
            &dgram,
            9875,
            RR,
        ));
    }
    assert!(cases.len() > 200);
    fx.check_all(&cases);
}
