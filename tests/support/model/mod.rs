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
//!   the [`Scheduler`] ([`RoundRobin`]) or indexed by [`Flow::hash_for`]
//!   (Maglev: the flow's hash, or its client's with `hash = "client"`),
//!   after the flow table (README "Flow table") of a Maglev frontend: a
//!   reply pins its flow (client, frontend address and port; by client, the
//!   client's address alone) to the backend that sent it, and a request to
//!   the same frontend follows the pin.
//!   Pins never expire here: the model runs well inside the timeout.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use udplb::abi;
use udplb::config::Config;

use super::checksum;

mod icmp;
mod parse;

use icmp::*;
use parse::*;

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
    pub const SPOOFED_REPLY: usize = abi::UDPLB_REASON_SPOOFED_REPLY as usize;
    pub const ICMP_TO_BACKEND: usize = abi::UDPLB_REASON_ICMP_TO_BACKEND as usize;
    pub const ICMP_NO_FLOW: usize = abi::UDPLB_REASON_ICMP_NO_FLOW as usize;
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
    /// Maglev with a flow timeout: replies pin flows, requests follow pins.
    pub pins: bool,
    /// 0: Maglev hashes the flow; else the client's address, an IPv6 one
    /// cut to this many bits, and pins are per client.
    pub client_bits: u8,
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
                    pins: fe.sched == udplb::config::Sched::Maglev && fe.flow_timeout > 0,
                    client_bits: fe.hash.client_bits(),
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
    /// The hash Maglev indexes its ring with: the flow's, or with
    /// `client_bits` its client's (the source) alone.
    pub fn hash_for(&self, client_bits: u8) -> u32 {
        if client_bits == 0 {
            return self.hash();
        }
        match self.src {
            IpAddr::V4(a) => udplb::plan::flow_hash::client_hash(&a.octets(), client_bits),
            IpAddr::V6(a) => udplb::plan::flow_hash::client_hash(&a.octets(), client_bits),
        }
    }

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

/// A flow as the table keys it: the client's address and port, and the
/// frontend address and port it wrote to.
pub type PinKey = (IpAddr, u16, IpAddr, u16);

/// The key of a flow's pin: per flow, or with `client_bits` per client
/// (port 0, an IPv6 address cut to that many bits), as bpf/flows.h keys it.
pub fn pin_key(client: IpAddr, port: u16, frontend: IpAddr, fport: u16, client_bits: u8) -> PinKey {
    match (client_bits, client) {
        (0, _) => (client, port, frontend, fport),
        (bits, IpAddr::V6(a)) => {
            let cut = udplb::plan::flow_hash::ipv6_prefix(a.octets(), bits);
            (IpAddr::V6(cut.into()), 0, frontend, fport)
        }
        (_, v4) => (v4, 0, frontend, fport),
    }
}

/// Flow table events (include/udplb.h, `enum udplb_flow_counter`).
pub mod flow_event {
    use udplb::abi;
    pub const HIT: usize = abi::UDPLB_FLOW_HIT as usize;
    pub const MISS: usize = abi::UDPLB_FLOW_MISS as usize;
    pub const STALE: usize = abi::UDPLB_FLOW_STALE as usize;
    pub const PIN_CREATED: usize = abi::UDPLB_FLOW_PIN_CREATED as usize;
    pub const PIN_REFRESHED: usize = abi::UDPLB_FLOW_PIN_REFRESHED as usize;
    pub const PIN_MOVED: usize = abi::UDPLB_FLOW_PIN_MOVED as usize;
}

/// What the datapath remembers between packets.
#[derive(Debug)]
pub struct ModelState {
    pub scheduler: Box<dyn Scheduler + Send>,
    /// The flow table: pin -> (frontend, backend index).
    pub flows: HashMap<PinKey, (usize, usize)>,
}

impl ModelState {
    pub fn round_robin() -> ModelState {
        ModelState::with_scheduler(RoundRobin::default())
    }

    pub fn with_scheduler(s: impl Scheduler + Send + 'static) -> ModelState {
        ModelState {
            scheduler: Box::new(s),
            flows: HashMap::new(),
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
    /// The flow table event this packet counts (see [`flow_event`]).
    pub flow_event: Option<usize>,
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
        flow_event: None,
        why: "",
    };
    let d = match parse(frame) {
        Ok(Parsed::Udp(d)) => d,
        Ok(Parsed::Icmp(m)) => {
            let (code, why) = icmp(&mut out, m, config, state, on_loopback);
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
        // The flow table first: a pin this frontend learned wins, even over
        // an empty ring (a drained backend keeps its pinned flows).
        let pinned = match f.pins {
            false => None,
            true => match state.flows.get(&pin_key(
                flow.src,
                flow.sport,
                flow.dst,
                flow.dport,
                f.client_bits,
            )) {
                None => {
                    out.flow_event = Some(flow_event::MISS);
                    None
                }
                Some(&(pf, b)) if pf == fe => {
                    out.flow_event = Some(flow_event::HIT);
                    Some(b)
                }
                Some(_) => {
                    out.flow_event = Some(flow_event::STALE);
                    None
                }
            },
        };
        // Round robin walks the ring; Maglev indexes it with the flow hash
        // (src/plan/flow_hash.rs: the function the datapath computes).
        let position = match (n, f.maglev) {
            _ if pinned.is_some() => None,
            (0, _) => None,
            (_, true) => Some(flow.hash_for(f.client_bits) as usize % n),
            (_, false) => state.scheduler.pick(fe, n, &flow),
        };
        match pinned.or(position.filter(|&p| p < n).map(|p| f.ring[p])) {
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
        // The model's backends are local: their replies come from this
        // host's sockets, which XDP sees on lo only. Off lo (an exact
        // frontend's address matched) the source is forged.
        if !on_loopback {
            out.verdict = XDP_DROP;
            out.reason = reason::SPOOFED_REPLY;
            out.why = "a local backend's source off lo";
            return out;
        }
        set_port(&mut out.output, &d, 0, config.frontends[fe].port);
        out.reason = reason::REPLY;
        out.reply = Some(fe);
        let b = config.frontends[fe]
            .backends
            .iter()
            .position(|&p| p == flow.sport);
        out.reply_from = b.map(|b| (fe, b));
        // The reply pins its flow: the client is its destination, and a
        // local backend answers from the address the client wrote to.
        if let Some(b) = b.filter(|_| config.frontends[fe].pins) {
            let f = &config.frontends[fe];
            let key = pin_key(flow.dst, flow.dport, flow.src, f.port, f.client_bits);
            out.flow_event = Some(match state.flows.insert(key, (fe, b)) {
                None => flow_event::PIN_CREATED,
                Some(old) if old == (fe, b) => flow_event::PIN_REFRESHED,
                Some(_) => flow_event::PIN_MOVED,
            });
        }
        out.why = "source is a backend";
        return out;
    }
    out.why = "UDP, neither to a frontend nor from a backend";
    out
}
