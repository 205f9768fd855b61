//! A reference model of the XDP datapath: packet bytes + configuration +
//! scheduler state -> verdict, output bytes and the counters the packet
//! moves. Pure logic, no kernel access.
//!
//! Written from the specification, not from the C:
//! - the parse order in the top comment of `bpf/parsing.h`;
//! - the verdict reasons in `include/udplb.h`;
//! - README "How it works" and "The rule for backends": an exact frontend
//!   address beats a port-only frontend; a reply is a datagram whose source
//!   is a backend, matched by the frontend's exact address anywhere and by
//!   port alone only on lo; the UDP checksum is updated for the port change
//!   (RFC 1624), an IPv4 checksum of 0 stays 0, a computed 0 is written
//!   0xFFFF, IPv6 checksums are always updated; every frame is passed;
//!   counters count whole frames.
//!
//! `tests/differential/` runs random and mutated packets through this
//! model and through the real program (BPF_PROG_TEST_RUN) and requires the
//! same result.
//!
//! Two seams keep it easy to change:
//! - [`ModelConfig::from_config`] is the only place that reads
//!   [`udplb::config::Config`];
//! - backend choice: the ring userspace writes (from the plan), walked by
//!   the [`Scheduler`] ([`RoundRobin`]) or indexed by [`Flow::hash`] (Maglev).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use udplb::abi;
use udplb::config::Config;

use super::checksum;

/// The kernel delivers the frame (rewritten or not).
pub const XDP_PASS: u32 = 2;
/// Refused: traffic only a spoofer or a loop makes.
pub const XDP_DROP: u32 = 1;

/// Reason codes (include/udplb.h, `enum udplb_reason`), as counter indices.
pub mod reason {
    use udplb::abi;
    pub const BALANCED: usize = abi::UDPLB_REASON_BALANCED as usize;
    pub const REPLY: usize = abi::UDPLB_REASON_REPLY as usize;
    pub const NOT_IP: usize = abi::UDPLB_REASON_NOT_IP as usize;
    pub const NOT_UDP: usize = abi::UDPLB_REASON_NOT_UDP as usize;
    pub const NO_FRONTEND: usize = abi::UDPLB_REASON_NO_FRONTEND as usize;
    pub const FRAGMENT: usize = abi::UDPLB_REASON_FRAGMENT as usize;
    pub const MALFORMED: usize = abi::UDPLB_REASON_MALFORMED as usize;
    pub const IPV6_EXT: usize = abi::UDPLB_REASON_IPV6_EXT as usize;
    pub const NO_BACKEND: usize = abi::UDPLB_REASON_NO_BACKEND as usize;
    pub const BACKEND_TO_FRONTEND: usize = abi::UDPLB_REASON_BACKEND_TO_FRONTEND as usize;
    pub const ICMP_TRANSLATED: usize = abi::UDPLB_REASON_ICMP_TRANSLATED as usize;
    pub const ICMP_TO_BACKEND: usize = abi::UDPLB_REASON_ICMP_TO_BACKEND as usize;
}

/// The name of a reason code, as the CLI prints it.
pub fn reason_name(code: usize) -> &'static str {
    abi::REASON_NAMES.get(code).copied().unwrap_or("(unknown)")
}

// ---------------------------------------------------------------------------
// Configuration.

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Which destination addresses a frontend answers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// Every address of one family (port-only frontends have both).
    Any(Family),
    /// One address; never the unspecified address (that is `Any`).
    Exact(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFrontend {
    pub port: u16,
    pub binds: Vec<Bind>,
    /// Local ports, in configuration order.
    pub backends: Vec<u16>,
    /// The scheduling ring userspace writes for this frontend (indices into
    /// `backends`): weights repeat a backend, drained ones are absent.
    pub ring: Vec<usize>,
    /// Maglev: the ring is indexed by the flow hash, not walked in turn.
    pub maglev: bool,
}

/// What the model needs of a configuration. Frontend `i` is the i-th of the
/// configuration: its id for counters and scheduling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelConfig {
    pub frontends: Vec<ModelFrontend>,
}

impl ModelConfig {
    /// The one adapter from [`Config`]: when `Config` changes, only this
    /// function changes. Semantics (README "Command line"): `PORT` is every
    /// address of both families, `0.0.0.0:PORT` / `[::]:PORT` every address
    /// of one family, any other address exactly that address.
    ///
    /// The model covers round robin over local backends of weight 1; a
    /// configuration with anything else is refused here, loudly.
    pub fn from_config(config: &Config) -> ModelConfig {
        for fe in &config.frontends {
            assert!(
                fe.backends.iter().all(|b| b.addr.is_none()),
                "the model covers local backends, not those of {}",
                fe.listen
            );
        }
        // The rings are configuration, built by userspace: take them from
        // the plan that writes a fresh datapath (one ring per frontend, in
        // configuration order), as backend indices.
        let (plan, state) = udplb::plan::State::default().plan(config);
        let layout = state.layout(config);
        let frontends = config
            .frontends
            .iter()
            .enumerate()
            .map(|(i, fe)| {
                let slots = &layout.frontends[i].1;
                let ring = plan.rings[i]
                    .1
                    .iter()
                    .map(|s| {
                        slots
                            .iter()
                            .position(|x| x == s)
                            .expect("ring slot of this frontend")
                    })
                    .collect();
                ModelFrontend {
                    port: fe.listen.port,
                    binds: match fe.listen.addr {
                        None => vec![Bind::Any(Family::V4), Bind::Any(Family::V6)],
                        Some(a) if a.is_unspecified() => vec![Bind::Any(Family::of(&a))],
                        Some(a) => vec![Bind::Exact(a)],
                    },
                    backends: fe.backends.iter().map(|b| b.port).collect(),
                    ring,
                    maglev: fe.sched == udplb::config::Sched::Maglev,
                }
            })
            .collect();
        ModelConfig { frontends }
    }

    /// The frontend a datagram to `dst:port` is for: an exact address first,
    /// then the wildcard of the packet's family.
    pub fn frontend_for(&self, dst: IpAddr, port: u16) -> Option<usize> {
        self.find(port, Bind::Exact(dst))
            .or_else(|| self.find(port, Bind::Any(Family::of(&dst))))
    }

    /// The frontend a datagram from `src:port` is a reply for, if any: the
    /// source port is one of the frontend's backends and the source address
    /// is the frontend's exact address; or, only when `port_alone` (on lo),
    /// the frontend covers the source's family with a wildcard.
    pub fn reply_for(&self, src: IpAddr, port: u16, port_alone: bool) -> Option<usize> {
        let backs = |f: &ModelFrontend, p: u16| f.backends.contains(&p);
        let exact = self
            .frontends
            .iter()
            .position(|f| backs(f, port) && f.binds.contains(&Bind::Exact(src)));
        exact.or_else(|| {
            port_alone
                .then(|| {
                    self.frontends.iter().position(|f| {
                        backs(f, port) && f.binds.contains(&Bind::Any(Family::of(&src)))
                    })
                })
                .flatten()
        })
    }

    fn find(&self, port: u16, bind: Bind) -> Option<usize> {
        self.frontends
            .iter()
            .position(|f| f.port == port && f.binds.contains(&bind))
    }
}

// ---------------------------------------------------------------------------
// Scheduling.

/// The flow a datagram belongs to (protocol UDP), for schedulers that hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl Flow {
    /// The Maglev flow hash of this flow.
    pub fn hash(&self) -> u32 {
        let bytes = |a: &IpAddr| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        udplb::plan::flow_hash::flow_hash(
            &bytes(&self.src),
            &bytes(&self.dst),
            self.sport.to_be_bytes(),
            self.dport.to_be_bytes(),
        )
    }
}

/// Backend choice: the one function a new scheduler implements.
pub trait Scheduler: fmt::Debug {
    /// Position in the frontend's ring (of `backends` entries) for this
    /// datagram, or `None` when there is none to give (an empty ring).
    /// Called once per datagram to a round-robin frontend, in arrival order.
    fn pick(&mut self, frontend: usize, backends: usize, flow: &Flow) -> Option<usize>;
}

/// Round robin in configuration order, one cursor per frontend (shared by
/// both families). The datapath keeps one such cursor per CPU; the model is
/// one CPU, so a test must run the program from one CPU too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundRobin {
    next: Vec<usize>,
}

impl Scheduler for RoundRobin {
    fn pick(&mut self, frontend: usize, backends: usize, _flow: &Flow) -> Option<usize> {
        if backends == 0 {
            return None;
        }
        if self.next.len() <= frontend {
            self.next.resize(frontend + 1, 0);
        }
        // After the last backend (or past the end of a shrunk table), start
        // again at the first.
        let i = match self.next[frontend] {
            i if i < backends => i,
            _ => 0,
        };
        self.next[frontend] = i + 1;
        Some(i)
    }
}

/// What the datapath remembers between packets.
#[derive(Debug)]
pub struct ModelState {
    pub scheduler: Box<dyn Scheduler + Send>,
}

impl ModelState {
    pub fn round_robin() -> ModelState {
        ModelState::with_scheduler(RoundRobin::default())
    }

    pub fn with_scheduler(s: impl Scheduler + Send + 'static) -> ModelState {
        ModelState {
            scheduler: Box::new(s),
        }
    }
}

impl Default for ModelState {
    fn default() -> Self {
        ModelState::round_robin()
    }
}

// ---------------------------------------------------------------------------
// The result.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: u32,
    /// The frame as the program leaves it (same length as the input).
    pub output: Vec<u8>,
    /// The reason counter this packet increments (one per packet).
    pub reason: usize,
    /// (frontend id, backend index) whose counter counts this packet.
    pub backend: Option<(usize, usize)>,
    /// Frontend id whose reply counter counts this packet.
    pub reply: Option<usize>,
    /// Bytes added to that backend or reply counter: the whole frame.
    pub counted_bytes: u64,
    /// (frontend, backend index) whose passive reply counter counts this
    /// reply (the backend that sent it).
    pub reply_from: Option<(usize, usize)>,
    /// (frontend, backend index) whose passive ICMP error counter counts
    /// this destination unreachable.
    pub icmp_error: Option<(usize, usize)>,
    /// The rule of the specification that decided (for reports only).
    pub why: &'static str,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "verdict {}, reason {}",
            self.verdict,
            reason_name(self.reason)
        )?;
        if let Some((fe, b)) = self.backend {
            write!(f, ", backend[{fe}][{b}] +1 pkt +{} B", self.counted_bytes)?;
        }
        if let Some(fe) = self.reply {
            write!(f, ", reply[{fe}] +1 pkt +{} B", self.counted_bytes)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Parsing, in the order bpf/parsing.h specifies.

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const MAX_VLAN_TAGS: usize = 2;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const UDP_HLEN: usize = 8;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_FRAG_HLEN: usize = 8;

/// IANA "IPv6 Extension Header Types" (RFC 7045 and its registry): Hop-by-Hop
/// Options, Routing, Fragment, ESP, AH, Destination Options, Mobility, HIP,
/// Shim6, and the two values for experimentation.
pub const IPV6_EXTENSION_HEADERS: [u8; 11] = [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254];

/// A UDP datagram the datapath may rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Datagram {
    /// Offset of the UDP header in the frame.
    udp: usize,
    ipv6: bool,
    src: IpAddr,
    dst: IpAddr,
}

/// Why parsing stopped: a reason code and the rule that fired.
type Stop = (usize, &'static str);

/// An ICMP message (IPv4 protocol 1 not fragmented, IPv6 next header 58
/// right after the IPv6 header): where it starts and how long the IP header
/// says it is (bpf/icmp.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Icmp {
    at: usize,
    len: usize,
    ipv6: bool,
}

/// What parsing found: a UDP datagram or an ICMP message.
enum Parsed {
    Udp(Datagram),
    Icmp(Icmp),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn stop<T>(code: usize, why: &'static str) -> Result<T, Stop> {
    Err((code, why))
}

fn parse(frame: &[u8]) -> Result<Parsed, Stop> {
    // Ethernet (14 bytes) -> up to two 802.1Q/802.1ad tags -> EtherType.
    if frame.len() < ETH_HLEN {
        return stop(reason::MALFORMED, "Ethernet: fewer than 14 bytes");
    }
    let is_tag = |t: u16| t == TPID_8021Q || t == TPID_8021AD;
    let mut ethertype = be16(frame, 12);
    let mut at = ETH_HLEN;
    let mut tags = 0;
    while is_tag(ethertype) {
        if tags == MAX_VLAN_TAGS {
            return stop(reason::NOT_IP, "VLAN: more than two tags");
        }
        if frame.len() < at + VLAN_HLEN {
            return stop(reason::MALFORMED, "VLAN: tag truncated");
        }
        ethertype = be16(frame, at + 2);
        at += VLAN_HLEN;
        tags += 1;
    }
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(frame, at),
        ETHERTYPE_IPV6 => parse_ipv6(frame, at),
        _ => stop(reason::NOT_IP, "EtherType is neither IPv4 nor IPv6"),
    }
}

fn parse_ipv4(frame: &[u8], l3: usize) -> Result<Parsed, Stop> {
    let ip = &frame[l3..];
    if ip.len() < IPV4_MIN_HLEN {
        return stop(reason::MALFORMED, "IPv4: fewer than 20 bytes");
    }
    if ip[0] >> 4 != 4 {
        return stop(reason::MALFORMED, "IPv4: version is not 4");
    }
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    if hlen < IPV4_MIN_HLEN {
        return stop(reason::MALFORMED, "IPv4: IHL < 5");
    }
    if ip.len() < hlen {
        return stop(reason::MALFORMED, "IPv4: header (IHL*4) not all present");
    }
    let tot_len = usize::from(be16(ip, 2));
    if tot_len < hlen {
        return stop(reason::MALFORMED, "IPv4: tot_len < IHL*4");
    }
    if ip.len() < tot_len {
        return stop(reason::MALFORMED, "IPv4: tot_len bytes not present");
    }
    let frag = be16(ip, 6);
    if ip[9] == IPPROTO_ICMP && frag & 0x3fff == 0 {
        return Ok(Parsed::Icmp(Icmp {
            at: l3 + hlen,
            len: tot_len - hlen,
            ipv6: false,
        }));
    }
    if ip[9] != IPPROTO_UDP {
        return stop(reason::NOT_UDP, "IPv4: protocol is not UDP");
    }
    let more_fragments = frag & 0x2000 != 0;
    if frag & 0x1fff != 0 {
        return stop(reason::FRAGMENT, "IPv4: fragment offset is not 0");
    }
    if tot_len - hlen < UDP_HLEN {
        return stop(reason::MALFORMED, "IPv4: UDP header not within tot_len");
    }
    let udp_len = usize::from(be16(ip, hlen + 4));
    if udp_len < UDP_HLEN {
        return stop(reason::MALFORMED, "IPv4: udp.len < 8");
    }
    // A first fragment's datagram continues in later fragments, so its
    // udp.len may exceed this packet.
    if !more_fragments && udp_len > tot_len - hlen {
        return stop(reason::MALFORMED, "IPv4: udp.len > tot_len - IHL*4");
    }
    let addr = |at: usize| IpAddr::V4(Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]));
    Ok(Parsed::Udp(Datagram {
        udp: l3 + hlen,
        ipv6: false,
        src: addr(12),
        dst: addr(16),
    }))
}

fn parse_ipv6(frame: &[u8], l3: usize) -> Result<Parsed, Stop> {
    let ip = &frame[l3..];
    if ip.len() < IPV6_HLEN {
        return stop(reason::MALFORMED, "IPv6: fewer than 40 bytes");
    }
    if ip[0] >> 4 != 6 {
        return stop(reason::MALFORMED, "IPv6: version is not 6");
    }
    let payload_len = usize::from(be16(ip, 4));
    if ip.len() < IPV6_HLEN + payload_len {
        return stop(
            reason::MALFORMED,
            "IPv6: 40 + payload_len bytes not present",
        );
    }
    // The one extension header parsed: Fragment (44), whose first fragment
    // (offset 0) holds the UDP header.
    let (mut next, mut at, mut rest, mut more) = (ip[6], IPV6_HLEN, payload_len, false);
    let mut offset = 0;
    if next == IPV6_FRAGMENT {
        if payload_len < IPV6_FRAG_HLEN {
            return stop(
                reason::MALFORMED,
                "IPv6: Fragment header not within payload_len",
            );
        }
        next = ip[IPV6_HLEN];
        let field = be16(ip, IPV6_HLEN + 2);
        offset = field & 0xfff8;
        more = field & 1 != 0;
        at += IPV6_FRAG_HLEN;
        rest -= IPV6_FRAG_HLEN;
    }
    if next == IPPROTO_ICMPV6 && at == IPV6_HLEN {
        return Ok(Parsed::Icmp(Icmp {
            at: l3 + at,
            len: rest,
            ipv6: true,
        }));
    }
    if IPV6_EXTENSION_HEADERS.contains(&next) {
        return stop(reason::IPV6_EXT, "IPv6: next header is an extension header");
    }
    if next != IPPROTO_UDP {
        return stop(reason::NOT_UDP, "IPv6: next header is not UDP");
    }
    if offset != 0 {
        return stop(reason::FRAGMENT, "IPv6: fragment offset is not 0");
    }
    if rest < UDP_HLEN {
        return stop(reason::MALFORMED, "IPv6: UDP header not within payload_len");
    }
    // Linux reads udp.len 0 as the rest of the payload (RFC 2675's form).
    let udp_len = match usize::from(be16(ip, at + 4)) {
        0 => rest,
        n => n,
    };
    if udp_len < UDP_HLEN {
        return stop(reason::MALFORMED, "IPv6: udp.len < 8");
    }
    // A first fragment's datagram continues in later fragments.
    if !more && udp_len > rest {
        return stop(reason::MALFORMED, "IPv6: udp.len > payload_len");
    }
    let addr = |at: usize| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&ip[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Ok(Parsed::Udp(Datagram {
        udp: l3 + at,
        ipv6: true,
        src: addr(8),
        dst: addr(24),
    }))
}

/// Sets the UDP port at `field` (0: source, 2: destination) and updates the
/// checksum for it.
fn set_port(frame: &mut [u8], d: &Datagram, field: usize, port: u16) {
    let at = d.udp + field;
    let old = be16(frame, at);
    frame[at..at + 2].copy_from_slice(&port.to_be_bytes());
    let check = be16(frame, d.udp + 6);
    // RFC 768: an IPv4 checksum of 0 means "no checksum" and stays so. IPv6
    // has no such value (RFC 8200): always update.
    if !d.ipv6 && check == 0 {
        return;
    }
    let new = match checksum::update(check, old, port) {
        0 => 0xffff,
        c => c,
    };
    frame[d.udp + 6..d.udp + 8].copy_from_slice(&new.to_be_bytes());
}

// ---------------------------------------------------------------------------
// The datapath.

/// Runs one frame through the model. `on_loopback`: the frame arrived on lo
/// (where replies are also matched by port alone).
pub fn run(
    frame: &[u8],
    config: &ModelConfig,
    state: &mut ModelState,
    on_loopback: bool,
) -> Outcome {
    let mut out = Outcome {
        verdict: XDP_PASS,
        output: frame.to_vec(),
        reason: reason::NO_FRONTEND,
        backend: None,
        reply: None,
        counted_bytes: frame.len() as u64,
        reply_from: None,
        icmp_error: None,
        why: "",
    };
    let d = match parse(frame) {
        Ok(Parsed::Udp(d)) => d,
        Ok(Parsed::Icmp(m)) => {
            let (code, why) = icmp(&mut out, m, config, on_loopback);
            out.reason = code;
            out.why = why;
            return out;
        }
        Err((code, why)) => {
            out.reason = code;
            out.why = why;
            return out;
        }
    };
    let flow = Flow {
        src: d.src,
        dst: d.dst,
        sport: be16(frame, d.udp),
        dport: be16(frame, d.udp + 2),
    };

    // The destination is looked up first; a datagram from a backend to a
    // frontend is refused (a loop, or a spoof meant to start one).
    if let Some(fe) = config.frontend_for(flow.dst, flow.dport) {
        if config
            .reply_for(flow.src, flow.sport, on_loopback)
            .is_some()
        {
            out.verdict = XDP_DROP;
            out.reason = reason::BACKEND_TO_FRONTEND;
            out.why = "source is a backend, destination a frontend";
            return out;
        }
        let f = &config.frontends[fe];
        let n = f.ring.len();
        // Round robin walks the ring; Maglev indexes it with the flow hash
        // (src/plan/flow_hash.rs: the function the datapath computes).
        let position = match (n, f.maglev) {
            (0, _) => None,
            (_, true) => Some(flow.hash() as usize % n),
            (_, false) => state.scheduler.pick(fe, n, &flow),
        };
        match position.filter(|&p| p < n).map(|p| f.ring[p]) {
            None => {
                out.reason = reason::NO_BACKEND;
                out.why = "frontend without backends";
            }
            Some(b) => {
                set_port(&mut out.output, &d, 2, config.frontends[fe].backends[b]);
                out.reason = reason::BALANCED;
                out.backend = Some((fe, b));
                out.why = "destination is a frontend";
            }
        }
        return out;
    }
    if let Some(fe) = config.reply_for(flow.src, flow.sport, on_loopback) {
        set_port(&mut out.output, &d, 0, config.frontends[fe].port);
        out.reason = reason::REPLY;
        out.reply = Some(fe);
        let b = config.frontends[fe]
            .backends
            .iter()
            .position(|&p| p == flow.sport);
        out.reply_from = b.map(|b| (fe, b));
        out.why = "source is a backend";
        return out;
    }
    out.why = "UDP, neither to a frontend nor from a backend";
    out
}

// ---------------------------------------------------------------------------
// ICMP errors about balanced datagrams (bpf/icmp.h's contract, in its parse
// order). The model's backends are local: only ports change.

/// Sets the 16-bit word at `at` and returns the old value.
fn put16(frame: &mut [u8], at: usize, v: u16) -> u16 {
    let old = be16(frame, at);
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
    old
}

/// Rewrites the quoted datagram's port at `field` (0 source, 2
/// destination) to `port`: the quoted UDP checksum as for any port change
/// (IPv4 0 stays 0), and the ICMP checksum for both changed words.
fn icmp_set_port(frame: &mut [u8], m: Icmp, quoted: &Datagram, field: usize, port: u16) {
    let at = quoted.udp + field;
    let check_at = quoted.udp + 6;
    let old_port = be16(frame, at);
    let old_check = be16(frame, check_at);
    set_port(frame, quoted, field, port);
    let new_check = be16(frame, check_at);
    let mut c = be16(frame, m.at + 2);
    c = checksum::update(c, old_port, port);
    if new_check != old_check {
        c = checksum::update(c, old_check, new_check);
    }
    put16(frame, m.at + 2, c);
}

fn icmp(out: &mut Outcome, m: Icmp, config: &ModelConfig, on_loopback: bool) -> Stop {
    let f = out.output.clone();
    let end = m.at + m.len;
    if m.len < 8 {
        return (reason::MALFORMED, "ICMP: header not within the message");
    }
    let (typ, code) = (f[m.at], f[m.at + 1]);
    let translated = if m.ipv6 {
        matches!(typ, 1..=3)
    } else {
        matches!(typ, 3 | 11)
    };
    if !translated {
        return (reason::NOT_UDP, "ICMP: not an error udplb translates");
    }
    let too_big = if m.ipv6 {
        typ == 2
    } else {
        typ == 3 && code == 4
    };
    let unreachable = if m.ipv6 {
        typ == 1
    } else {
        typ == 3 && code != 4
    };
    let off = m.at + 8;
    let (udp, src, dst) = if m.ipv6 {
        if off + IPV6_HLEN > end {
            return (reason::MALFORMED, "ICMP: quoted IPv6 header cut");
        }
        if f[off] >> 4 != 6 {
            return (reason::MALFORMED, "ICMP: quoted version is not 6");
        }
        if f[off + 6] != IPPROTO_UDP {
            return (reason::NOT_UDP, "ICMP: quoted next header is not UDP");
        }
        let a = |at: usize| {
            let o: [u8; 16] = f[at..at + 16].try_into().unwrap();
            IpAddr::V6(Ipv6Addr::from(o))
        };
        (off + IPV6_HLEN, a(off + 8), a(off + 24))
    } else {
        if off + IPV4_MIN_HLEN > end {
            return (reason::MALFORMED, "ICMP: quoted IPv4 header cut");
        }
        if f[off] >> 4 != 4 {
            return (reason::MALFORMED, "ICMP: quoted version is not 4");
        }
        let hlen = usize::from(f[off] & 0x0f) * 4;
        if hlen < IPV4_MIN_HLEN {
            return (reason::MALFORMED, "ICMP: quoted IHL < 5");
        }
        if off + hlen > end {
            return (reason::MALFORMED, "ICMP: quoted IPv4 options cut");
        }
        if f[off + 9] != IPPROTO_UDP {
            return (reason::NOT_UDP, "ICMP: quoted protocol is not UDP");
        }
        if be16(&f, off + 6) & 0x1fff != 0 {
            return (reason::NOT_UDP, "ICMP: quoted later fragment");
        }
        let a = |at: usize| IpAddr::V4(Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]));
        (off + hlen, a(off + 12), a(off + 16))
    };
    if udp + UDP_HLEN > end {
        return (reason::MALFORMED, "ICMP: quoted UDP header cut");
    }
    let quoted = Datagram {
        udp,
        ipv6: m.ipv6,
        src,
        dst,
    };
    let (sport, dport) = (be16(&f, udp), be16(&f, udp + 2));
    // Toward the client: the quoted destination is a backend (matched as a
    // reply's source is).
    if let Some(fe) = config.reply_for(dst, dport, on_loopback) {
        icmp_set_port(&mut out.output, m, &quoted, 2, config.frontends[fe].port);
        if unreachable {
            let b = config.frontends[fe]
                .backends
                .iter()
                .position(|&p| p == dport);
            out.icmp_error = b.map(|b| (fe, b));
        }
        return (
            reason::ICMP_TRANSLATED,
            "ICMP error about a datagram to a backend",
        );
    }
    // Packet too big about a reply from a frontend: to the backend the
    // flow's requests hash to.
    if too_big {
        if let Some(fe) = config.frontend_for(src, sport) {
            let fr = &config.frontends[fe];
            if fr.ring.is_empty() {
                return (
                    reason::NO_BACKEND,
                    "ICMP packet too big, frontend without backends",
                );
            }
            let request = Flow {
                src: dst,
                dst: src,
                sport: dport,
                dport: sport,
            };
            let b = fr.ring[request.hash() as usize % fr.ring.len()];
            icmp_set_port(&mut out.output, m, &quoted, 0, fr.backends[b]);
            return (reason::ICMP_TO_BACKEND, "packet too big about a reply");
        }
    }
    (reason::NOT_UDP, "ICMP error not about a balanced datagram")
}
