//! Differential test: the reference model (src/model.rs, written from the
//! specification) against the real XDP program (BPF_PROG_TEST_RUN).
//!
//! Random valid configurations (1-4 frontends: port-only, IPv4 or IPv6
//! address; 1-5 backends each; through `Config::from_specs`, so validation
//! applies and rejected configurations are skipped), each loaded into a fresh
//! datapath, then a sequence of random frames: valid IPv4/IPv6 UDP (0-2 VLAN
//! tags, IPv4 options, first and later fragments, checksum 0, short udp.len,
//! Ethernet padding, ports and addresses of the configuration or not) and
//! mutations of them (truncation, bit flips, header fields overwritten with
//! random or nearby values, extra VLAN tags, IPv6 extension headers). Each
//! frame arrives with no test-run context (the kernel runs it on lo), with
//! an xdp_md naming lo or ifindex 0, or naming a veth in a private network
//! namespace. Model and program must agree on the verdict, the output bytes
//! and every counter delta (reasons, per backend, replies), frame by frame.
//!
//! Frames checked per run: `UDPLB_FUZZ_CASES` (or `PROPTEST_CASES`), default
//! 10 000; `make fuzz CASES=N` runs N. The seed is random unless
//! `UDPLB_FUZZ_SEED` (hex) is set; a failure prints it. On a divergence the
//! (shrunk) case is printed as hex, with both outcomes, and as a fixture to
//! paste into tests/datapath.rs.
//!
//! Fixed scenarios at the end pin down what the property rests on or found:
//! a test run without context counts as arriving on lo; and a datagram from
//! the unspecified address (0.0.0.0 or ::) with a port-only frontend's
//! backend port as source, arriving on a wire-facing interface, is not a
//! reply (README: replies matched by port alone are rewritten only on lo).
//! The program rewrites it: its exact-address lookup builds an all-zero
//! address, which is the wildcard key. That test, and the property, fail
//! until bpf/udplb.bpf.c is fixed.
//!
//! Needs root (BPF, network namespaces): without it the test fails, saying so.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::ValueTree;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};

use udplb::config::{Config, Defaults, Sched};
use udplb::model::{self, checksum, reason_name, Bind, ModelConfig, ModelState, Outcome};

// ===========================================================================
// The program under test. Every use of udplb's kernel-facing API (Tables,
// Datapath, Counters) is in this module. Outside it the test uses only
// `Config::from_specs` (to validate) and the model (`ModelConfig::from_config`,
// `model::run`), so a change to Config, Tables or Datapath touches this
// module or the model's adapter and nothing else.

mod program {
    use udplb::abi::REASON_COUNT;
    use udplb::config::Config;
    use udplb::datapath::Datapath;
    use udplb::plan::Layout;

    /// Counters summed over CPUs: reasons, (packets, bytes) per backend per
    /// frontend, (packets, bytes) of replies per frontend.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Counts {
        pub reasons: Vec<u64>,
        pub backends: Vec<Vec<(u64, u64)>>,
        pub replies: Vec<(u64, u64)>,
    }

    impl Counts {
        pub fn zero(shape: &[usize]) -> Counts {
            Counts {
                reasons: vec![0; REASON_COUNT],
                backends: shape.iter().map(|&n| vec![(0, 0); n]).collect(),
                replies: vec![(0, 0); shape.len()],
            }
        }

        pub fn minus(&self, o: &Counts) -> Counts {
            let d = |a: (u64, u64), b: (u64, u64)| (a.0.wrapping_sub(b.0), a.1.wrapping_sub(b.1));
            Counts {
                reasons: self
                    .reasons
                    .iter()
                    .zip(&o.reasons)
                    .map(|(a, b)| a.wrapping_sub(*b))
                    .collect(),
                backends: self
                    .backends
                    .iter()
                    .zip(&o.backends)
                    .map(|(x, y)| x.iter().zip(y).map(|(a, b)| d(*a, *b)).collect())
                    .collect(),
                replies: self
                    .replies
                    .iter()
                    .zip(&o.replies)
                    .map(|(a, b)| d(*a, *b))
                    .collect(),
            }
        }
    }

    pub struct Program {
        dp: Datapath,
        layout: Layout,
        pub shape: Vec<usize>,
    }

    impl Program {
        /// A freshly loaded datapath (zero counters and cursors) holding `config`.
        pub fn load(config: &Config) -> Program {
            let dp = Datapath::load().expect("loading the datapath");
            let state = dp.configure(config).expect("writing the tables");
            let shape = config.frontends.iter().map(|f| f.backends.len()).collect();
            Program {
                layout: state.layout(config),
                dp,
                shape,
            }
        }

        pub fn counters(&self) -> Counts {
            let c = self.dp.counters(&self.layout).expect("reading counters");
            Counts {
                reasons: c.reasons.to_vec(),
                backends: c
                    .backends
                    .iter()
                    .map(|f| f.iter().map(|b| (b.packets, b.bytes)).collect())
                    .collect(),
                replies: c.replies.iter().map(|r| (r.packets, r.bytes)).collect(),
            }
        }

        /// One BPF_PROG_TEST_RUN; `None`: no context.
        pub fn run(&self, ingress_ifindex: Option<u32>, frame: &[u8]) -> (u32, Vec<u8>) {
            match ingress_ifindex {
                None => self.dp.test_run(frame),
                Some(i) => self.dp.test_run_on(i, frame),
            }
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN (ingress {ingress_ifindex:?}): {e:#}"))
        }
    }
}

use program::{Counts, Program};

// ===========================================================================
// The test thread's environment.

/// Loopback is ifindex 1 in every network namespace.
const LOOPBACK: u32 = 1;

struct Env {
    /// A veth in this thread's private network namespace: not lo.
    veth: u32,
}

impl Env {
    /// Fails without root; pins the thread to one CPU (the round-robin
    /// cursors are per CPU; the model is one CPU); moves it into a network
    /// namespace of its own holding a veth pair.
    fn setup(cpu_slot: usize) -> Env {
        if !nix::unistd::geteuid().is_root() {
            panic!(
                "the differential test needs root (BPF_PROG_TEST_RUN, network namespaces): \
                 run `sudo make test` or `sudo cargo test --test differential`"
            );
        }
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let allowed = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| allowed.is_set(c).unwrap_or(false))
            .collect();
        let mut one = CpuSet::new();
        one.set(cpus[cpu_slot % cpus.len()]).unwrap();
        sched_setaffinity(Pid::from_raw(0), &one).expect("sched_setaffinity");

        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let status = std::process::Command::new("ip")
            .args([
                "link", "add", "udplb-d0", "type", "veth", "peer", "name", "udplb-d1",
            ])
            .status()
            .expect("running ip (iproute2)");
        assert!(status.success(), "ip link add ... type veth: {status}");
        let veth = nix::net::if_::if_nametoindex("udplb-d0").expect("if_nametoindex");
        assert_ne!(veth, LOOPBACK);
        Env { veth }
    }
}

/// How a frame reaches the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ingress {
    /// BPF_PROG_TEST_RUN without a context: the kernel uses lo's rx queue.
    NoContext,
    /// An xdp_md with ingress_ifindex 1.
    Lo,
    /// An xdp_md with ingress_ifindex 0, which keeps the default (lo).
    ContextZero,
    /// An xdp_md naming a veth: a wire-facing interface.
    Veth,
}

impl Ingress {
    fn on_loopback(self) -> bool {
        self != Ingress::Veth
    }

    fn ifindex(self, env: &Env) -> Option<u32> {
        match self {
            Ingress::NoContext => None,
            Ingress::Lo => Some(LOOPBACK),
            Ingress::ContextZero => Some(0),
            Ingress::Veth => Some(env.veth),
        }
    }
}

// ===========================================================================
// Frames: a description of a valid frame, mutations, and the bytes.

const TPIDS: [u16; 2] = [0x8100, 0x88a8];
const EXT_HEADERS: [u8; 11] = [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254];
/// Values worth writing into header fields besides random ones.
const INTERESTING: [u16; 20] = [
    0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100, 0, 1, 4, 5, 6, 7, 8, 15, 17, 44, 59, 0x2000, 0x4000,
    0x1fff, 0xffff,
];

#[derive(Clone, Debug)]
enum Frag {
    Whole,
    /// MF set, offset 0; the IP payload is cut (udp.len stays the whole's).
    First(Index),
    /// A later fragment: offset 1..=0x1fff, MF or not.
    Later(bool, u16),
}

#[derive(Clone, Debug)]
enum Ip {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        /// IHL 5..=15: 0..=40 option bytes.
        options: Vec<u8>,
        tos: u8,
        id: u16,
        df: bool,
        frag: Frag,
        ttl: u8,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        class_flow: u32,
        hop_limit: u8,
    },
}

#[derive(Clone, Debug)]
enum Csum {
    Valid,
    Zero,
    Raw(u16),
    /// A value that an RFC 1624 update for the given port change (source or
    /// destination port to `new`) turns into 0, which must go out as 0xFFFF.
    ZeroAfter {
        source: bool,
        new: u16,
    },
}

/// `len` pseudo-random bytes from `seed` (xorshift): cheaper to shrink than
/// a vector of arbitrary bytes, where each shrink step loads a datapath.
fn filler(len: usize, seed: u32) -> Vec<u8> {
    let mut x = u64::from(seed) | 1 << 40;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Bytes of a length from `len`, cheap to shrink.
fn bytes(len: impl Strategy<Value = usize>) -> impl Strategy<Value = Vec<u8>> {
    (len, any::<u32>()).prop_map(|(n, seed)| filler(n, seed))
}

#[derive(Clone, Debug)]
struct FrameDesc {
    macs: [u8; 12],
    /// (TPID, TCI), outermost first.
    tags: Vec<(u16, u16)>,
    ip: Ip,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
    /// `Some`: udp.len shorter than the datagram (8 + index into payload).
    short_udp_len: Option<Index>,
    csum: Csum,
    /// Bytes after the IP packet (Ethernet padding or trailer).
    trailer: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
enum Field {
    /// The EtherType/TPID field of one link-layer level.
    EtherType(Index),
    Version,
    Ihl,
    TotLen,
    PayloadLen,
    /// IPv4 protocol or IPv6 next header.
    Protocol,
    FragOff,
    UdpLen,
    UdpCheck,
}

#[derive(Clone, Copy, Debug)]
enum Value {
    Random(u16),
    Near(i8),
    Pick(u16),
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Cut the frame to 14.. bytes.
    Truncate(Index),
    /// (within the first 96 bytes?, position, bit).
    FlipBits(Vec<(bool, Index, u8)>),
    Set(Field, Value),
    /// Extra outermost tag.
    PushVlan(u16, u16),
    /// Extension headers (type, length unit, filler) between the IPv6
    /// header and the UDP header, payload_len updated.
    InsertExt(Vec<(u8, u8, u8)>),
}

#[derive(Clone, Copy)]
enum Width {
    U16,
    U8,
    High4,
    Low4,
}

/// A frame's bytes and where its headers are (as built, then as moved).
struct Built {
    bytes: Vec<u8>,
    /// Offsets of the EtherType/TPID fields, outermost first.
    types: Vec<usize>,
    l3: usize,
    l4: usize,
    ipv6: bool,
}

impl Built {
    fn get16(&self, at: usize) -> Option<u16> {
        (at + 2 <= self.bytes.len())
            .then(|| u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]]))
    }

    fn set16(&mut self, at: usize, v: u16) {
        if at + 2 <= self.bytes.len() {
            self.bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
    }
}

fn build(d: &FrameDesc) -> Built {
    let mut bytes = d.macs.to_vec();
    let mut types = vec![];
    for &(tpid, tci) in &d.tags {
        types.push(bytes.len());
        bytes.extend_from_slice(&tpid.to_be_bytes());
        bytes.extend_from_slice(&tci.to_be_bytes());
    }
    types.push(bytes.len());
    let ipv6 = matches!(d.ip, Ip::V6 { .. });
    bytes.extend_from_slice(&if ipv6 { 0x86ddu16 } else { 0x0800 }.to_be_bytes());
    let l3 = bytes.len();

    // The UDP datagram, checksum over udp.len bytes.
    let mut udp = Vec::with_capacity(8 + d.payload.len());
    udp.extend_from_slice(&d.sport.to_be_bytes());
    udp.extend_from_slice(&d.dport.to_be_bytes());
    let ulen = match &d.short_udp_len {
        None => 8 + d.payload.len(),
        Some(i) => 8 + i.index(d.payload.len() + 1),
    };
    udp.extend_from_slice(&(ulen as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&d.payload);
    let addrs: Vec<u8> = match &d.ip {
        Ip::V4 { src, dst, .. } => [src.octets(), dst.octets()].concat(),
        Ip::V6 { src, dst, .. } => [src.octets(), dst.octets()].concat(),
    };
    let check = match d.csum {
        Csum::Valid => checksum::udp(&addrs, &udp[..ulen], ipv6),
        Csum::Zero => 0,
        Csum::Raw(v) => v,
        Csum::ZeroAfter { source, new } => {
            let old = if source { d.sport } else { d.dport };
            // !(!hc + !old + new) = 0 when hc = !old + new (one's complement).
            let (sum, carry) = (!old).overflowing_add(new);
            sum + u16::from(carry)
        }
    };
    udp[6..8].copy_from_slice(&check.to_be_bytes());

    let l4;
    match &d.ip {
        Ip::V4 {
            options,
            tos,
            id,
            df,
            frag,
            ttl,
            ..
        } => {
            let (data, frag_field) = match frag {
                Frag::Whole => (&udp[..], 0),
                Frag::First(i) => (&udp[..8 + i.index(udp.len() - 8 + 1)], 0x2000),
                Frag::Later(mf, off) => (&udp[..], off & 0x1fff | if *mf { 0x2000 } else { 0 }),
            };
            let hlen = 20 + options.len();
            let mut h = vec![0x40 | (hlen / 4) as u8, *tos];
            h.extend_from_slice(&((hlen + data.len()) as u16).to_be_bytes());
            h.extend_from_slice(&id.to_be_bytes());
            h.extend_from_slice(&(frag_field | if *df { 0x4000 } else { 0 }).to_be_bytes());
            h.extend_from_slice(&[*ttl, 17, 0, 0]);
            h.extend_from_slice(&addrs);
            h.extend_from_slice(options);
            let hc = !checksum::sum(&h);
            h[10..12].copy_from_slice(&hc.to_be_bytes());
            bytes.extend_from_slice(&h);
            l4 = bytes.len();
            bytes.extend_from_slice(data);
        }
        Ip::V6 {
            class_flow,
            hop_limit,
            ..
        } => {
            bytes.extend_from_slice(&(0x6000_0000 | (class_flow & 0x0fff_ffff)).to_be_bytes());
            bytes.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&[17, *hop_limit]);
            bytes.extend_from_slice(&addrs);
            l4 = bytes.len();
            bytes.extend_from_slice(&udp);
        }
    }
    bytes.extend_from_slice(&d.trailer);
    Built {
        bytes,
        types,
        l3,
        l4,
        ipv6,
    }
}

fn mutate(b: &mut Built, m: &Mutation) {
    match m {
        Mutation::Truncate(i) => {
            if b.bytes.len() > 14 {
                let len = 14 + i.index(b.bytes.len() - 14);
                b.bytes.truncate(len);
            }
        }
        Mutation::FlipBits(flips) => {
            for (head, i, bit) in flips {
                let span = if *head {
                    b.bytes.len().min(96)
                } else {
                    b.bytes.len()
                };
                let at = i.index(span);
                b.bytes[at] ^= 1 << (bit % 8);
            }
        }
        Mutation::Set(field, value) => {
            use Width::*;
            let (at, width) = match *field {
                Field::EtherType(i) => (b.types[i.index(b.types.len())], U16),
                Field::Version => (b.l3, High4),
                Field::Ihl if !b.ipv6 => (b.l3, Low4),
                Field::TotLen if !b.ipv6 => (b.l3 + 2, U16),
                Field::PayloadLen if b.ipv6 => (b.l3 + 4, U16),
                Field::Protocol => (b.l3 + if b.ipv6 { 6 } else { 9 }, U8),
                Field::FragOff if !b.ipv6 => (b.l3 + 6, U16),
                Field::UdpLen => (b.l4 + 4, U16),
                Field::UdpCheck => (b.l4 + 6, U16),
                // A field the other family has: what sits there in this one.
                Field::Ihl => (b.l3, Low4),
                Field::TotLen | Field::FragOff => (b.l3 + 4, U16),
                Field::PayloadLen => (b.l3 + 2, U16),
            };
            let byte = b.bytes.get(at).copied().map(u16::from);
            let current = match width {
                U16 => b.get16(at),
                U8 => byte,
                High4 => byte.map(|v| v >> 4),
                Low4 => byte.map(|v| v & 0xf),
            };
            let Some(current) = current else {
                return; // cut off by an earlier truncation
            };
            let v = match *value {
                Value::Random(v) | Value::Pick(v) => v,
                Value::Near(d) => current.wrapping_add_signed(i16::from(d)),
            };
            match width {
                U16 => b.set16(at, v),
                U8 => b.bytes[at] = v as u8,
                High4 => b.bytes[at] = (b.bytes[at] & 0x0f) | ((v as u8 & 0xf) << 4),
                Low4 => b.bytes[at] = (b.bytes[at] & 0xf0) | (v as u8 & 0xf),
            }
        }
        Mutation::PushVlan(tpid, tci) => {
            let tag: Vec<u8> = [tpid.to_be_bytes(), tci.to_be_bytes()].concat();
            b.bytes.splice(12..12, tag);
            b.types = std::iter::once(12)
                .chain(b.types.iter().map(|t| t + 4))
                .collect();
            b.l3 += 4;
            b.l4 += 4;
        }
        Mutation::InsertExt(exts) => {
            let at = b.l3 + 40;
            if !b.ipv6 || b.bytes.len() < at || exts.is_empty() {
                return;
            }
            let mut next_after = b.bytes[b.l3 + 6];
            let mut chain: Vec<u8> = vec![];
            for &(kind, unit, fill) in exts.iter().rev() {
                let mut h = match kind {
                    // Fragment: offset and M from the filler.
                    44 => vec![next_after, 0, fill, fill & 0xf9, 0, 0, 0, 7],
                    // AH: 16 bytes, payload length in 4-octet units minus 2.
                    51 => {
                        let mut h = vec![next_after, 2, 0, 0];
                        h.extend_from_slice(&[fill; 12]);
                        h
                    }
                    // ESP: SPI and sequence number, then the (null-cipher) rest.
                    50 => vec![0, 0, 1, fill, 0, 0, 0, 1],
                    // The generic form: next header, length in 8-octet units - 1.
                    _ => {
                        let n = usize::from(unit % 3);
                        let mut h = vec![next_after, n as u8];
                        h.resize(8 * (n + 1), fill);
                        h
                    }
                };
                h.append(&mut chain);
                chain = h;
                next_after = kind;
            }
            let n = chain.len();
            b.bytes[b.l3 + 6] = next_after;
            b.bytes.splice(at..at, chain);
            let plen = b.get16(b.l3 + 4).unwrap_or(0);
            b.set16(b.l3 + 4, plen.wrapping_add(n as u16));
            b.l4 += n;
        }
    }
}

#[derive(Clone, Debug)]
struct Shot {
    ingress: Ingress,
    desc: FrameDesc,
    mutations: Vec<Mutation>,
    frame: Vec<u8>,
}

impl Shot {
    fn new(ingress: Ingress, desc: FrameDesc, mutations: Vec<Mutation>) -> Shot {
        let mut b = build(&desc);
        for m in &mutations {
            mutate(&mut b, m);
        }
        Shot {
            ingress,
            desc,
            mutations,
            frame: b.bytes,
        }
    }

    /// One line on how the frame was made.
    fn recipe(&self) -> String {
        let d = &self.desc;
        let mut s = match &d.ip {
            Ip::V4 {
                src,
                dst,
                options,
                frag,
                ..
            } => {
                let f = match frag {
                    Frag::Whole => String::new(),
                    Frag::First(_) => " first fragment".into(),
                    Frag::Later(mf, off) => format!(" fragment MF={} offset {off}", *mf as u8),
                };
                format!(
                    "IPv4 IHL {}{f} {src}:{} -> {dst}:{}",
                    5 + options.len() / 4,
                    d.sport,
                    d.dport
                )
            }
            Ip::V6 { src, dst, .. } => format!("IPv6 [{src}]:{} -> [{dst}]:{}", d.sport, d.dport),
        };
        if !d.tags.is_empty() {
            let t: Vec<String> = d.tags.iter().map(|(p, _)| format!("{p:#06x}")).collect();
            s = format!("{} tags, {s}", t.join("+"));
        }
        let _ = write!(
            s,
            ", {} payload bytes, checksum {:?}",
            d.payload.len(),
            d.csum
        );
        if d.short_udp_len.is_some() {
            s += ", short udp.len";
        }
        if !d.trailer.is_empty() {
            let _ = write!(s, ", {}-byte trailer", d.trailer.len());
        }
        for m in &self.mutations {
            let _ = write!(s, "; then {}", describe(m));
        }
        s
    }
}

fn describe(m: &Mutation) -> String {
    match m {
        Mutation::Truncate(_) => "truncate".into(),
        Mutation::FlipBits(f) => format!("flip {} bit(s)", f.len()),
        Mutation::Set(field, v) => format!("set {field:?} to {v:?}"),
        Mutation::PushVlan(t, _) => format!("push tag {t:#06x}"),
        Mutation::InsertExt(e) => {
            let k: Vec<String> = e.iter().map(|x| x.0.to_string()).collect();
            format!("insert IPv6 extension header(s) {}", k.join(","))
        }
    }
}

// ===========================================================================
// Strategies.

const V4_POOL: [Ipv4Addr; 4] = [
    Ipv4Addr::new(198, 18, 0, 1),
    Ipv4Addr::new(198, 18, 0, 2),
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::UNSPECIFIED,
];

fn v6_pool() -> Vec<Ipv6Addr> {
    ["2001:2::1", "2001:2::2", "::1", "::", "::ffff:198.18.0.1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect()
}

/// `FRONTEND` of a spec.
fn listen() -> impl Strategy<Value = String> {
    let port = || prop_oneof![8 => 1000u16..1006, 1 => any::<u16>()];
    let v4 =
        prop_oneof![3 => select(V4_POOL.to_vec()), 1 => any::<[u8; 4]>().prop_map(Ipv4Addr::from)];
    let v6 = prop_oneof![3 => select(v6_pool()), 1 => any::<[u8; 16]>().prop_map(Ipv6Addr::from)];
    prop_oneof![
        3 => port().prop_map(|p| p.to_string()),
        2 => (v4, port()).prop_map(|(a, p)| format!("{a}:{p}")),
        2 => (v6, port()).prop_map(|(a, p)| format!("[{a}]:{p}")),
    ]
}

/// Valid configurations, as `FRONTEND=BACKENDS` strings and as parsed.
fn configuration() -> impl Strategy<Value = (Vec<String>, bool, Config)> {
    let ports: Vec<u16> = (2000..2030).collect();
    (
        vec(
            (
                listen(),
                vec(prop::option::weighted(0.3, 0u32..=3), 1..=5),
                prop::option::weighted(0.05, any::<u16>()),
            ),
            1..=4,
        ),
        Just(ports).prop_shuffle(),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(fronts, ports, maglev)| {
            let mut pool = ports.into_iter();
            let specs = fronts
                .into_iter()
                .map(|(listen, weights, odd)| {
                    let mut b: Vec<String> = weights
                        .iter()
                        .zip(pool.by_ref())
                        .map(|(w, p)| match w {
                            Some(w) => format!("{p}@{w}"),
                            None => p.to_string(),
                        })
                        .collect();
                    if let Some(p) = odd {
                        b[0] = p.to_string(); // may collide or be 0: rejected then
                    }
                    format!("{listen}={}", b.join(","))
                })
                .collect::<Vec<_>>();
            (specs, maglev)
        })
        .prop_filter_map("rejected by Config::from_specs", |(specs, maglev)| {
            config_of(&specs, maglev).map(|c| (specs, maglev, c))
        })
}

/// What frames should aim at: the configuration's ports and addresses.
struct Aims {
    frontend_ports: Vec<u16>,
    backend_ports: Vec<u16>,
    /// The frontends' exact addresses (the pool's if there are none).
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
}

impl Aims {
    /// Read from the model's view of the configuration, so that only
    /// `ModelConfig::from_config` depends on the shape of `Config`.
    fn of(config: &ModelConfig) -> Aims {
        let mut a = Aims {
            frontend_ports: vec![],
            backend_ports: vec![],
            v4: vec![],
            v6: vec![],
        };
        for fe in &config.frontends {
            a.frontend_ports.push(fe.port);
            a.backend_ports.extend_from_slice(&fe.backends);
            for bind in &fe.binds {
                match bind {
                    Bind::Exact(IpAddr::V4(x)) => a.v4.push(*x),
                    Bind::Exact(IpAddr::V6(x)) => a.v6.push(*x),
                    Bind::Any(_) => {}
                }
            }
        }
        if a.v4.is_empty() {
            a.v4 = V4_POOL.to_vec();
        }
        if a.v6.is_empty() {
            a.v6 = v6_pool();
        }
        a
    }

    fn ports(&self) -> Vec<u16> {
        [&self.frontend_ports[..], &self.backend_ports[..]].concat()
    }

    /// Mostly a frontend port, sometimes a backend's or any.
    fn dport(&self) -> impl Strategy<Value = u16> {
        prop_oneof![
            6 => select(self.frontend_ports.clone()),
            2 => select(self.backend_ports.clone()),
            1 => prop_oneof![1000u16..1006, 2000u16..2030],
            1 => any::<u16>(),
        ]
    }

    /// Mostly a backend port (a reply), sometimes a frontend's or any.
    fn sport(&self) -> impl Strategy<Value = u16> {
        prop_oneof![
            4 => select(self.backend_ports.clone()),
            1 => select(self.frontend_ports.clone()),
            1 => prop_oneof![1000u16..1006, 2000u16..2030],
            2 => any::<u16>(),
        ]
    }
}

fn ip(a: &Aims) -> impl Strategy<Value = Ip> {
    let v4 = prop_oneof![
        3 => select(a.v4.clone()),
        2 => select(V4_POOL.to_vec()),
        1 => any::<[u8; 4]>().prop_map(Ipv4Addr::from),
    ];
    let v6 = prop_oneof![
        3 => select(a.v6.clone()),
        2 => select(v6_pool()),
        1 => any::<[u8; 16]>().prop_map(Ipv6Addr::from),
    ];
    let frag = prop_oneof![
        8 => Just(Frag::Whole),
        1 => any::<Index>().prop_map(Frag::First),
        1 => (any::<bool>(), 1u16..=0x1fff).prop_map(|(mf, o)| Frag::Later(mf, o)),
    ];
    let options = bytes((0usize..=10).prop_map(|n| 4 * n));
    let options = prop_oneof![2 => Just(vec![]), 1 => options];
    prop_oneof![
        (v4.clone(), v4, options, any::<(u8, u16, bool, u8)>(), frag).prop_map(
            |(src, dst, options, (tos, id, df, ttl), frag)| Ip::V4 {
                src,
                dst,
                options,
                tos,
                id,
                df,
                frag,
                ttl,
            }
        ),
        (v6.clone(), v6, any::<u32>(), any::<u8>()).prop_map(
            |(src, dst, class_flow, hop_limit)| {
                Ip::V6 {
                    src,
                    dst,
                    class_flow,
                    hop_limit,
                }
            }
        ),
    ]
}

fn frame(a: &Aims) -> impl Strategy<Value = FrameDesc> {
    let tags = vec((select(TPIDS.to_vec()), any::<u16>()), 0..=2);
    let payload = prop_oneof![6 => bytes(0usize..48), 1 => bytes(48usize..1400)];
    let csum = prop_oneof![
        8 => Just(Csum::Valid),
        2 => Just(Csum::Zero),
        1 => prop_oneof![Just(0xffff), any::<u16>()].prop_map(Csum::Raw),
        1 => (any::<bool>(), select(a.ports()))
            .prop_map(|(source, new)| Csum::ZeroAfter { source, new }),
    ];
    let trailer = prop_oneof![6 => Just(vec![]), 1 => bytes(1usize..40)];
    let macs = any::<u32>().prop_map(|seed| {
        let mut m = [0u8; 12];
        m.copy_from_slice(&filler(12, seed));
        m
    });
    (
        macs,
        tags,
        ip(a),
        (a.sport(), a.dport()),
        payload,
        prop::option::weighted(0.1, any::<Index>()),
        csum,
        trailer,
    )
        .prop_map(
            |(macs, tags, ip, (sport, dport), payload, short_udp_len, csum, trailer)| FrameDesc {
                macs,
                tags,
                ip,
                sport,
                dport,
                payload,
                short_udp_len,
                csum,
                trailer,
            },
        )
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let field = prop_oneof![
        2 => any::<Index>().prop_map(Field::EtherType),
        1 => Just(Field::Version),
        2 => Just(Field::Ihl),
        2 => Just(Field::TotLen),
        2 => Just(Field::PayloadLen),
        2 => Just(Field::Protocol),
        2 => Just(Field::FragOff),
        3 => Just(Field::UdpLen),
        1 => Just(Field::UdpCheck),
    ];
    let value = prop_oneof![
        1 => any::<u16>().prop_map(Value::Random),
        2 => (-9i8..=9).prop_map(Value::Near),
        2 => select(INTERESTING.to_vec()).prop_map(Value::Pick),
    ];
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => vec((prop::bool::weighted(0.8), any::<Index>(), 0u8..8), 1..=4).prop_map(Mutation::FlipBits),
        5 => (field, value).prop_map(|(f, v)| Mutation::Set(f, v)),
        1 => (select(vec![0x8100u16, 0x88a8, 0x9100]), any::<u16>())
            .prop_map(|(t, c)| Mutation::PushVlan(t, c)),
        2 => vec((select(EXT_HEADERS.to_vec()), any::<u8>(), any::<u8>()), 1..=3)
            .prop_map(Mutation::InsertExt),
    ]
}

fn ingress() -> impl Strategy<Value = Ingress> {
    prop_oneof![
        5 => Just(Ingress::NoContext),
        1 => Just(Ingress::Lo),
        1 => Just(Ingress::ContextZero),
        4 => Just(Ingress::Veth),
    ]
}

fn shot(a: &Aims) -> impl Strategy<Value = Shot> {
    let mutations = prop_oneof![2 => Just(vec![]), 3 => vec(mutation(), 1..=3)];
    (ingress(), frame(a), mutations).prop_map(|(i, d, m)| Shot::new(i, d, m))
}

#[derive(Clone, Debug)]
struct Scenario {
    specs: Vec<String>,
    /// Every frontend uses Maglev (table size 7) instead of round robin.
    maglev: bool,
    shots: Vec<Shot>,
}

impl Scenario {
    fn config(&self) -> Config {
        config_of(&self.specs, self.maglev).expect("the strategy makes valid configurations")
    }
}

fn config_of(specs: &[String], maglev: bool) -> Option<Config> {
    let sched = if maglev { Sched::Maglev } else { Sched::Rr };
    Config::from_specs_with(
        specs,
        Defaults {
            sched,
            table_size: 7,
        },
    )
    .ok()
}

const MAX_SHOTS: usize = 48;

fn scenario() -> impl Strategy<Value = Scenario> {
    configuration().prop_flat_map(|(specs, maglev, config)| {
        let aims = Aims::of(&ModelConfig::from_config(&config));
        vec(shot(&aims), 1..=MAX_SHOTS).prop_map(move |shots| Scenario {
            specs: specs.clone(),
            maglev,
            shots,
        })
    })
}

// ===========================================================================
// The check.

/// The counter deltas the model's outcome stands for.
fn expected_delta(o: &Outcome, shape: &[usize]) -> Counts {
    let mut c = Counts::zero(shape);
    c.reasons[o.reason] += 1;
    if let Some((f, b)) = o.backend {
        c.backends[f][b] = (1, o.counted_bytes);
    }
    if let Some(f) = o.reply {
        c.replies[f] = (1, o.counted_bytes);
    }
    c
}

/// What the frames that agreed exercised, by the model's outcome.
#[derive(Default)]
struct Stats {
    reasons: Vec<u64>,
    on_veth: u64,
    mutated: u64,
}

impl Stats {
    fn count(&mut self, shot: &Shot, o: &Outcome) {
        if self.reasons.len() <= o.reason {
            self.reasons.resize(o.reason + 1, 0);
        }
        self.reasons[o.reason] += 1;
        self.on_veth += u64::from(shot.ingress == Ingress::Veth);
        self.mutated += u64::from(!shot.mutations.is_empty());
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r: Vec<String> = (0..udplb::abi::REASON_NAMES.len())
            .map(|i| format!("{} {}", reason_name(i), self.reasons.get(i).unwrap_or(&0)))
            .collect();
        write!(
            f,
            "{}; {} mutated, {} on a veth",
            r.join(", "),
            self.mutated,
            self.on_veth
        )
    }
}

/// Runs a scenario through a fresh datapath and the model, frame by frame;
/// the error is the full report of the first divergence.
fn check(env: &Env, sc: &Scenario, stats: &RefCell<Stats>) -> Result<(), String> {
    let config = sc.config();
    let model_config = ModelConfig::from_config(&config);
    let mut state = ModelState::round_robin();
    let program = Program::load(&config);
    let mut before = program.counters();
    let mut outcomes = Vec::with_capacity(sc.shots.len());
    for (i, shot) in sc.shots.iter().enumerate() {
        let want = model::run(
            &shot.frame,
            &model_config,
            &mut state,
            shot.ingress.on_loopback(),
        );
        let (verdict, output) = program.run(shot.ingress.ifindex(env), &shot.frame);
        let after = program.counters();
        let got = after.minus(&before);
        let want_delta = expected_delta(&want, &program.shape);
        outcomes.push(want.clone());
        if verdict != want.verdict || output != want.output || got != want_delta {
            return Err(report(env, sc, i, &outcomes, verdict, &output, &got));
        }
        stats.borrow_mut().count(shot, &want);
        before = after;
    }
    Ok(())
}

// ===========================================================================
// Reports.

fn hex_row(bytes: &[u8], row: usize) -> String {
    (row..row + 16)
        .map(|i| bytes.get(i).map_or("--".into(), |b| format!("{b:02x}")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn hex_dump(bytes: &[u8]) -> String {
    (0..bytes.len())
        .step_by(16)
        .map(|row| format!("    {row:04x}  {}\n", hex_row(bytes, row)))
        .collect()
}

fn hex_diff(want: &[u8], got: &[u8]) -> String {
    let mut s = String::new();
    for row in (0..want.len().max(got.len())).step_by(16) {
        let differs: Vec<bool> = (row..row + 16).map(|i| want.get(i) != got.get(i)).collect();
        if !differs.contains(&true) {
            continue;
        }
        let marks: Vec<&str> = differs
            .iter()
            .map(|&d| if d { "^^" } else { "  " })
            .collect();
        let _ = writeln!(s, "    {row:04x}  model   {}", hex_row(want, row));
        let _ = writeln!(s, "          program {}", hex_row(got, row));
        let _ = writeln!(s, "                  {}", marks.join(" ").trim_end());
    }
    s
}

/// `vec![0x.., ...]`, 16 bytes a line, indented for the fixture.
fn rust_bytes(bytes: &[u8], indent: &str) -> String {
    let mut s = String::from("vec![\n");
    for row in bytes.chunks(16) {
        let r: Vec<String> = row.iter().map(|b| format!("0x{b:02x}")).collect();
        let _ = writeln!(s, "{indent}    {},", r.join(", "));
    }
    s + indent + "]"
}

/// What the counters say the program did.
fn program_outcome(verdict: u32, d: &Counts) -> String {
    let mut s = format!("verdict {verdict}");
    for (r, &n) in d.reasons.iter().enumerate() {
        if n != 0 {
            let _ = write!(s, ", reason {} {n:+}", reason_name(r));
        }
    }
    for (f, bs) in d.backends.iter().enumerate() {
        for (b, &(p, n)) in bs.iter().enumerate() {
            if (p, n) != (0, 0) {
                let _ = write!(s, ", backend[{f}][{b}] {:+} pkt {:+} B", p as i64, n as i64);
            }
        }
    }
    for (f, &(p, n)) in d.replies.iter().enumerate() {
        if (p, n) != (0, 0) {
            let _ = write!(s, ", reply[{f}] {:+} pkt {:+} B", p as i64, n as i64);
        }
    }
    s
}

fn reason_const(code: usize) -> String {
    format!(
        "udplb::abi::UDPLB_REASON_{}",
        reason_name(code).to_uppercase()
    )
}

/// A test for tests/datapath.rs: the frames up to the diverging one, with
/// the model's outcomes as expectations. Earlier frames are kept only if
/// they moved a round-robin cursor (the diverging frame's backend depends
/// on them).
fn fixture(sc: &Scenario, at: usize, outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let keep: Vec<usize> = (0..at)
        .filter(|&i| outcomes[i].backend.is_some())
        .chain([at])
        .collect();
    let specs: Vec<String> = sc.specs.iter().map(|x| format!("{x:?}")).collect();
    let _ = writeln!(s, "#[test]\nfn differential_regression() {{");
    if sc.maglev {
        let _ = writeln!(s, "    // Scheduler: maglev, table size 7 (build the Fixture's Config with from_specs_with).");
    }
    let _ = writeln!(s, "    let fx = Fixture::new(&[{}]);", specs.join(", "));
    if keep.iter().any(|&i| sc.shots[i].ingress == Ingress::Veth) {
        let _ = writeln!(s, "    let veth = private_netns_with_veth();");
    }
    for &i in &keep {
        let (shot, o) = (&sc.shots[i], &outcomes[i]);
        let _ = writeln!(s, "    // {}", shot.recipe());
        let _ = writeln!(
            s,
            "    let input{i}: Vec<u8> = {};",
            rust_bytes(&shot.frame, "    ")
        );
        if o.output != shot.frame {
            let _ = writeln!(
                s,
                "    let output{i}: Vec<u8> = {};",
                rust_bytes(&o.output, "    ")
            );
        }
    }
    let _ = writeln!(s, "    fx.check_all(&[");
    for &i in &keep {
        let (shot, o) = (&sc.shots[i], &outcomes[i]);
        let ingress = match shot.ingress {
            Ingress::NoContext => "None".to_string(),
            Ingress::Lo => "Some(LOOPBACK)".into(),
            Ingress::ContextZero => "Some(0)".into(),
            Ingress::Veth => "Some(veth)".into(),
        };
        let hit = match (o.backend, o.reply) {
            (Some((f, b)), _) => format!("Hit::Backend({f}, {b})"),
            (_, Some(f)) => format!("Hit::Reply({f})"),
            _ => "Hit::Nothing".into(),
        };
        let name = if i == at {
            format!(
                "differential #{i}: the model ({}) and the program disagreed",
                o.why
            )
        } else {
            format!("differential #{i}: moves the round robin")
        };
        let output = if o.output != shot.frame {
            format!("output{i}")
        } else {
            format!("input{i}.clone()")
        };
        let _ = writeln!(s, "        Case {{");
        let _ = writeln!(s, "            name: {name:?}.into(),");
        let _ = writeln!(s, "            input: input{i}.clone(),");
        let _ = writeln!(s, "            ingress_ifindex: {ingress},");
        let _ = writeln!(s, "            verdict: {},", o.verdict);
        let _ = writeln!(s, "            output: {output},");
        let _ = writeln!(s, "            reason: {},", reason_const(o.reason));
        let _ = writeln!(s, "            hit: {hit},");
        let _ = writeln!(s, "        }},");
    }
    let _ = writeln!(s, "    ]);");
    let _ = writeln!(s, "}}");
    s
}

fn report(
    env: &Env,
    sc: &Scenario,
    at: usize,
    outcomes: &[Outcome],
    verdict: u32,
    output: &[u8],
    got: &Counts,
) -> String {
    let shot = &sc.shots[at];
    let want = &outcomes[at];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "DIVERGENCE between the model (src/model.rs) and the XDP program"
    );
    let _ = writeln!(
        s,
        "configuration: {:?}{}",
        sc.specs,
        if sc.maglev {
            " (maglev, table size 7)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "frame {} of {}{}, ingress: {:?}{}",
        at + 1,
        sc.shots.len(),
        if at > 0 {
            " (the earlier ones agreed)"
        } else {
            ""
        },
        shot.ingress,
        match shot.ingress {
            Ingress::Veth => format!(" (ifindex {}, not lo)", env.veth),
            _ => " (lo)".into(),
        }
    );
    let _ = writeln!(s, "made as: {}", shot.recipe());
    let _ = writeln!(
        s,
        "input ({} bytes):\n{}",
        shot.frame.len(),
        hex_dump(&shot.frame)
    );
    let hex: String = shot.frame.iter().map(|b| format!("{b:02x}")).collect();
    let _ = writeln!(s, "input as one hex string:\n    {hex}\n");
    let _ = writeln!(s, "model   (the specification): {want}   [{}]", want.why);
    let _ = writeln!(
        s,
        "program (BPF_PROG_TEST_RUN):  {}",
        program_outcome(verdict, got)
    );
    if output != want.output.as_slice() {
        let _ = writeln!(
            s,
            "output bytes differ ({} model, {} program):\n{}",
            want.output.len(),
            output.len(),
            hex_diff(&want.output, output)
        );
    } else {
        let _ = writeln!(s, "output bytes agree");
    }
    let _ = writeln!(
        s,
        "\nFixture for tests/datapath.rs (expectations from the model, i.e. the spec):\n\n{}",
        fixture(sc, at, outcomes)
    );
    s
}

// ===========================================================================
// Driving.

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    let parsed = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

/// Frames to check: UDPLB_FUZZ_CASES, else PROPTEST_CASES, else 10 000.
fn frames_wanted() -> u64 {
    env_number("UDPLB_FUZZ_CASES")
        .or_else(|| env_number("PROPTEST_CASES"))
        .unwrap_or(10_000)
}

fn seed() -> u64 {
    env_number("UDPLB_FUZZ_SEED").unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.finish()
    })
}

fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        // splitmix64, so every seed fills all 32 bytes.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    let config = RunnerConfig {
        failure_persistence: None,
        max_local_rejects: u32::MAX,
        // Each shrink step loads a datapath (~40 ms): shrink for 30 s at most.
        max_shrink_iters: env_number("PROPTEST_MAX_SHRINK_ITERS").map_or(2000, |n| n as u32),
        max_shrink_time: 30_000,
        ..RunnerConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Runs scenarios from `strategy` until `frames` frames have been checked.
fn run_differential(env: &Env, frames: u64, seed: u64) {
    let mut runner = runner(seed);
    let strategy = scenario();
    let start = Instant::now();
    let mut last_note = start;
    let (mut done, mut configs) = (0u64, 0u64);
    let stats = RefCell::new(Stats::default());
    while done < frames {
        let tree = strategy
            .new_tree(&mut runner)
            .unwrap_or_else(|e| panic!("generating a scenario: {e}"));
        let n = tree.current().shots.len() as u64;
        match runner.run_one(tree, |sc| {
            check(env, &sc, &stats).map_err(TestCaseError::fail)
        }) {
            Ok(_) => {}
            Err(TestError::Fail(why, minimal)) => panic!(
                "{why}\n(shrunk to {} frame(s); found in configuration #{} after {done} frames \
                 that agreed)\nreproduce: UDPLB_FUZZ_SEED={seed:#x} UDPLB_FUZZ_CASES={frames} \
                 cargo test --release --test differential -- --nocapture\n",
                minimal.shots.len(),
                configs + 1
            ),
            Err(TestError::Abort(why)) => panic!("proptest aborted: {why}"),
        }
        done += n;
        configs += 1;
        if last_note.elapsed() > Duration::from_secs(30) {
            last_note = Instant::now();
            eprintln!(
                "differential: {done}/{frames} frames, {configs} configurations, {:.0?}",
                start.elapsed()
            );
        }
    }
    println!(
        "differential: {done} frames in {configs} configurations agreed, {:.1?} (seed {seed:#x})\n\
         by the model's verdict reason: {}",
        start.elapsed(),
        stats.borrow()
    );
}

#[test]
fn model_and_program_agree_on_random_frames() {
    let env = Env::setup(0);
    run_differential(&env, frames_wanted(), seed());
}

// ===========================================================================
// Fixed cases: what the property found or rests on, checked on every run
// whatever the seed.

fn v4_frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> FrameDesc {
    FrameDesc {
        macs: [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1],
        tags: vec![],
        ip: Ip::V4 {
            src,
            dst,
            options: vec![],
            tos: 0,
            id: 0x1234,
            df: false,
            frag: Frag::Whole,
            ttl: 64,
        },
        sport,
        dport,
        payload: b"udplb".to_vec(),
        short_udp_len: None,
        csum: Csum::Valid,
        trailer: vec![],
    }
}

fn v6_frame(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16) -> FrameDesc {
    FrameDesc {
        ip: Ip::V6 {
            src,
            dst,
            class_flow: 0,
            hop_limit: 64,
        },
        ..v4_frame(Ipv4Addr::UNSPECIFIED, sport, Ipv4Addr::UNSPECIFIED, dport)
    }
}

/// Runs fixed scenarios; panics with every divergence report.
fn check_fixed(env: &Env, scenarios: &[Scenario]) {
    let stats = RefCell::new(Stats::default());
    let failures: Vec<String> = scenarios
        .iter()
        .filter_map(|sc| check(env, sc, &stats).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixed scenarios diverged:\n\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n\n")
    );
}

/// BPF_PROG_TEST_RUN without a context (and with ingress_ifindex 0) runs
/// the program as if on lo: a port-only backend's reply is rewritten there,
/// and not on a veth. The model is told so; this pins it down.
#[test]
fn no_context_runs_as_if_on_lo() {
    let env = Env::setup(1);
    let client = Ipv4Addr::new(192, 0, 2, 10);
    let host = Ipv4Addr::new(192, 0, 2, 1);
    let reply = v4_frame(host, 2000, client, 40000);
    let shots: Vec<Shot> = [
        Ingress::NoContext,
        Ingress::ContextZero,
        Ingress::Lo,
        Ingress::Veth,
    ]
    .into_iter()
    .map(|i| Shot::new(i, reply.clone(), vec![]))
    .collect();
    let cfg = ModelConfig::from_config(&Config::from_specs(&["1000=2000"]).unwrap());
    let reasons: Vec<&str> = shots
        .iter()
        .map(|s| {
            let o = model::run(
                &s.frame,
                &cfg,
                &mut ModelState::default(),
                s.ingress.on_loopback(),
            );
            reason_name(o.reason)
        })
        .collect();
    assert_eq!(reasons, ["reply", "reply", "reply", "no_frontend"]);
    check_fixed(
        &env,
        &[Scenario {
            specs: vec!["1000=2000".into()],
            maglev: false,
            shots,
        }],
    );
}

/// The unspecified source address (0.0.0.0, ::) is a packet address like
/// any other, not the wildcard: on a wire-facing interface a datagram from
/// 0.0.0.0:<backend port of a port-only frontend> is a stranger's and must
/// be left alone (README: "Replies matched by port alone are rewritten by
/// XDP only on lo, so that a stranger on the wire using such a port as its
/// source is never touched").
#[test]
fn unspecified_source_on_the_wire_is_not_a_reply() {
    let env = Env::setup(1);
    let client4 = Ipv4Addr::new(192, 0, 2, 10);
    let client6: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let zero4 = v4_frame(Ipv4Addr::UNSPECIFIED, 2000, client4, 40000);
    let zero6 = v6_frame(Ipv6Addr::UNSPECIFIED, 2000, client6, 40000);
    // One scenario per frame, so that each divergence is reported.
    let scenarios: Vec<Scenario> = [
        (Ingress::Veth, zero4.clone()),
        (Ingress::Veth, zero6.clone()),
        // On lo they are matched by port, like any other source address.
        (Ingress::NoContext, zero4),
        (Ingress::NoContext, zero6),
        // An exact frontend's backend from 0.0.0.0 is no reply anywhere.
        (
            Ingress::NoContext,
            v4_frame(Ipv4Addr::UNSPECIFIED, 2001, client4, 40000),
        ),
    ]
    .into_iter()
    .map(|(ingress, frame)| Scenario {
        specs: vec!["1000=2000".into(), "198.18.0.1:1001=2001".into()],
        maglev: false,
        shots: vec![Shot::new(ingress, frame, vec![])],
    })
    .collect();
    check_fixed(&env, &scenarios);
}
