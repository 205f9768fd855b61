//! The balancer's configuration: the `FRONTEND=BACKENDS` grammar and every
//! validation rule. Pure logic, no kernel access.
//!
//!   FRONTEND  = PORT | IPv4:PORT | [IPv6]:PORT
//!   BACKENDS  = BACKEND[,BACKEND...]
//!   BACKEND   = TARGET[#SERVER_ID][@WEIGHT]  (weight 0..=1000, default 1; 0 drains it)
//!   TARGET    = PORT                      (a port on this host)
//!             | IPv4:PORT | [IPv6]:PORT   (another host: forwarded in XDP)
//!   SERVER_ID = 1 to 15 bytes in hex (`0a01`): the backend's QUIC-LB server
//!               ID, on quic frontends only (`--sched quic`), where every
//!               backend has one, all of the same length, each once
//!
//! A port-only frontend listens on every local address of both families;
//! `0.0.0.0:PORT` and `[::]:PORT` are the wildcard of one family.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

pub mod announce;
pub mod file;
pub mod health;

pub use health::{Check, CheckKind, FrontendHealth, OnAllDown};

use crate::error::UsageError;
use crate::usage;

use crate::abi::{
    Endpoint, MAX_BACKENDS, MAX_BACKEND_SLOTS, MAX_FRONTENDS, UDPLB_MAX_RING,
    UDPLB_MAX_RING_ENTRIES, UDPLB_MAX_WEIGHT,
};

// A round-robin cycle (sum of weights) always fits in the largest ring.
const _: () = assert!(UDPLB_MAX_WEIGHT as u64 * MAX_BACKENDS as u64 <= UDPLB_MAX_RING as u64);

/// Where a frontend listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listen {
    /// `None`: every local address, IPv4 and IPv6.
    pub addr: Option<IpAddr>,
    pub port: u16,
}

impl Listen {
    /// The datapath keys this frontend owns: one per family it covers.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        match self.addr {
            None => vec![
                Endpoint::ipv4(None, self.port),
                Endpoint::ipv6(None, self.port),
            ],
            Some(IpAddr::V4(a)) => {
                vec![Endpoint::ipv4(
                    (!a.is_unspecified()).then_some(a),
                    self.port,
                )]
            }
            Some(IpAddr::V6(a)) => {
                vec![Endpoint::ipv6(
                    (!a.is_unspecified()).then_some(a),
                    self.port,
                )]
            }
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            None => write!(f, "*:{}", self.port),
            Some(IpAddr::V4(a)) => write!(f, "{a}:{}", self.port),
            Some(IpAddr::V6(a)) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// How a frontend spreads datagrams over its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sched {
    /// Per-datagram weighted round robin (stateless protocols: DNS, syslog).
    #[default]
    Rr,
    /// Flow-consistent: Maglev hashing of the 4-tuple (QUIC, DTLS, games).
    Maglev,
    /// QUIC: the server ID in the destination connection ID (QUIC-LB
    /// plaintext); Maglev (and its flow table) for what it cannot route.
    Quic,
}

impl Sched {
    pub fn parse(s: &str) -> Option<Sched> {
        match s {
            "rr" => Some(Sched::Rr),
            "maglev" => Some(Sched::Maglev),
            "quic" => Some(Sched::Quic),
            _ => None,
        }
    }

    /// As written in the configuration: "rr", "maglev" or "quic".
    pub fn code(self) -> &'static str {
        match self {
            Sched::Rr => "rr",
            Sched::Maglev => "maglev",
            Sched::Quic => "quic",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sched::Rr => "round robin",
            Sched::Maglev => "maglev",
            Sched::Quic => "quic",
        }
    }

    /// Whether the frontend has a Maglev ring (and so a flow table).
    pub fn hashes(self) -> bool {
        self != Sched::Rr
    }
}

/// A QUIC-LB server ID: 1 to 15 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId {
    len: u8,
    bytes: [u8; crate::abi::UDPLB_QUIC_MAX_SERVER_ID_LEN as usize],
}

impl ServerId {
    /// From hex: an even number of digits, 1 to 15 bytes.
    pub fn parse(hex: &str) -> Option<ServerId> {
        let hex = hex.trim();
        let n = hex.len() / 2;
        if hex.len() % 2 != 0 || !(1..=QUIC_MAX_SID).contains(&n) {
            return None;
        }
        let mut id = ServerId {
            len: n as u8,
            bytes: [0; QUIC_MAX_SID],
        };
        for (i, b) in id.bytes[..n].iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(id)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_bytes()
            .iter()
            .try_for_each(|b| write!(f, "{b:02x}"))
    }
}

const QUIC_MAX_SID: usize = crate::abi::UDPLB_QUIC_MAX_SERVER_ID_LEN as usize;
const QUIC_MIN_NONCE: u8 = crate::abi::UDPLB_QUIC_MIN_NONCE_LEN as u8;
const QUIC_MAX_CID: u8 = crate::abi::UDPLB_QUIC_MAX_CID_LEN as u8;

/// A quic frontend's QUIC-LB settings as given (`[frontend.quic]`,
/// `--quic-cid-len`, `--quic-config-id`); [`FrontendConfig::quic`] resolves
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuicSettings {
    /// Server ID bytes; default: the length of the backends' server IDs.
    pub server_id_len: Option<u8>,
    /// The connection ID length of short headers (which do not carry it);
    /// default max(8, server_id_len + 5).
    pub cid_len: Option<u8>,
    /// The config rotation codepoint the servers use (0-6).
    pub config_id: u8,
}

/// A quic frontend's resolved QUIC-LB parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicParams {
    pub server_id_len: u8,
    pub cid_len: u8,
    pub config_id: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    /// `None`: a port on this host. `Some`: a host the datagrams are
    /// forwarded to.
    pub addr: Option<IpAddr>,
    pub port: u16,
    /// Share of traffic relative to the other backends; 0 drains.
    pub weight: u32,
    /// Its QUIC-LB server ID (quic frontends).
    pub server_id: Option<ServerId>,
}

impl BackendConfig {
    /// What identifies the backend: the same (address, port) is the same
    /// backend, whatever its weight.
    pub fn id(&self) -> (Option<IpAddr>, u16) {
        (self.addr, self.port)
    }

    /// The backend as the datapath stores it (an all-zero address: local).
    pub fn endpoint(&self) -> Endpoint {
        match self.addr {
            None => Endpoint {
                port_be: self.port.to_be(),
                ..Endpoint::default()
            },
            Some(IpAddr::V4(a)) => Endpoint::ipv4(Some(a), self.port),
            Some(IpAddr::V6(a)) => Endpoint::ipv6(Some(a), self.port),
        }
    }

    /// `9876` (a local port) or `198.18.1.2:53`: the backend without its
    /// weight.
    pub fn name(&self) -> String {
        match self.addr {
            None => self.port.to_string(),
            Some(IpAddr::V4(a)) => format!("{a}:{}", self.port),
            Some(IpAddr::V6(a)) => format!("[{a}]:{}", self.port),
        }
    }
}

impl fmt::Display for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(id) = self.server_id {
            write!(f, "#{id}")?;
        }
        match self.weight {
            1 => Ok(()),
            w => write!(f, "@{w}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendConfig {
    pub listen: Listen,
    /// In the order given (round robin follows it).
    pub backends: Vec<BackendConfig>,
    pub sched: Sched,
    /// Maglev table size (a prime); unused by round robin.
    pub table_size: u32,
    /// Checks and what to do when every backend is down. The plan ignores
    /// it: it takes the checks' verdicts instead.
    pub health: FrontendHealth,
    /// Idle timeout of pinned flows in seconds (Maglev only; 0: no flow
    /// table for this frontend).
    pub flow_timeout: u32,
    /// QUIC-LB settings (quic frontends).
    pub quic_settings: QuicSettings,
}

impl FrontendConfig {
    /// The QUIC-LB parameters of a quic frontend (`None` for the others),
    /// once [`Config::check`] has accepted it.
    pub fn quic(&self) -> Option<QuicParams> {
        if self.sched != Sched::Quic {
            return None;
        }
        let s = self.quic_settings;
        let server_id_len = s.server_id_len.unwrap_or_else(|| {
            (self.backends.iter())
                .find_map(|b| b.server_id.map(|i| i.len))
                .unwrap_or(1)
        });
        Some(QuicParams {
            server_id_len,
            cid_len: s
                .cid_len
                .unwrap_or((1 + server_id_len + QUIC_MIN_NONCE).max(8)),
            config_id: s.config_id,
        })
    }

    /// The QUIC-LB rules: on a quic frontend every backend has a server ID
    /// of the configured length, each once, and the CID length leaves room
    /// for the first octet, the server ID and a 4-byte nonce; elsewhere no
    /// backend has one. An error names the backend (its index) if it is
    /// about one.
    pub fn check_quic(&self) -> Result<(), (Option<usize>, String)> {
        let listen = self.listen;
        let Some(q) = self.quic() else {
            return match self.backends.iter().position(|b| b.server_id.is_some()) {
                Some(i) => Err((
                    Some(i),
                    format!(
                        "frontend {listen}: backend {} has a server ID, which only a quic \
                         frontend uses (--sched quic, or sched = \"quic\")",
                        self.backends[i]
                    ),
                )),
                None => Ok(()),
            };
        };
        if !(1..=QUIC_MAX_SID as u8).contains(&q.server_id_len) {
            return Err((
                None,
                format!(
                    "frontend {listen}: a server ID length of {} bytes is out of range: 1 to \
                     {QUIC_MAX_SID}",
                    q.server_id_len
                ),
            ));
        }
        let least = 1 + q.server_id_len + QUIC_MIN_NONCE;
        if !(least..=QUIC_MAX_CID).contains(&q.cid_len) {
            return Err((
                None,
                format!(
                    "frontend {listen}: a connection ID of {} bytes cannot hold the first \
                     octet, a {}-byte server ID and a {QUIC_MIN_NONCE}-byte nonce: use {least} \
                     to {QUIC_MAX_CID}",
                    q.cid_len, q.server_id_len
                ),
            ));
        }
        if q.config_id >= crate::abi::UDPLB_QUIC_CR_UNROUTABLE as u8 {
            return Err((
                None,
                format!(
                    "frontend {listen}: config ID {} is out of range: 0 to 6 (7 is the \
                     unroutable codepoint)",
                    q.config_id
                ),
            ));
        }
        let mut seen: HashMap<ServerId, &BackendConfig> = HashMap::new();
        for (i, b) in self.backends.iter().enumerate() {
            let Some(id) = b.server_id else {
                return Err((
                    Some(i),
                    format!(
                        "frontend {listen}: backend {b} needs a server ID on a quic frontend: \
                         write {}#HEX",
                        b.name()
                    ),
                ));
            };
            if id.len != q.server_id_len {
                return Err((
                    Some(i),
                    format!(
                        "frontend {listen}: backend {b}: server ID {id} is {} bytes long, not \
                         {} like the others",
                        id.len, q.server_id_len
                    ),
                ));
            }
            if let Some(other) = seen.insert(id, b) {
                return Err((
                    Some(i),
                    format!(
                        "frontend {listen}: backends {} and {} have the same server ID {id}",
                        other.name(),
                        b.name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A configuration that passed every check in [`Config::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub frontends: Vec<FrontendConfig>,
}

/// Scheduler settings that apply to frontends that do not set their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub sched: Sched,
    pub table_size: u32,
    pub flow_timeout: u32,
    pub quic: QuicSettings,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            sched: Sched::Rr,
            table_size: crate::abi::UDPLB_DEFAULT_MAGLEV_SIZE,
            flow_timeout: crate::abi::UDPLB_DEFAULT_FLOW_TIMEOUT,
            quic: QuicSettings::default(),
        }
    }
}

pub fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d: &u32| (*d as u64) * (*d as u64) <= n as u64)
            .all(|d| n % d != 0)
}

/// A Maglev table size: a prime, at most UDPLB_MAX_RING.
pub fn parse_table_size(s: &str) -> Result<u32, UsageError> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| usage!("table size '{s}' is not a number"))?;
    if !is_prime(n) || n > UDPLB_MAX_RING {
        return Err(usage!(
            "table size {n} must be a prime no larger than {UDPLB_MAX_RING} (e.g. 16381, 65537, 131071)"
        ));
    }
    Ok(n)
}

/// A flow idle timeout in seconds: 0 (no flow table) to UDPLB_MAX_FLOW_TIMEOUT.
pub fn parse_flow_timeout(s: &str) -> Result<u32, UsageError> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= crate::abi::UDPLB_MAX_FLOW_TIMEOUT => Ok(n),
        _ => Err(usage!(
            "flow timeout '{s}' must be a number of seconds from 0 (no flow table) to {}",
            crate::abi::UDPLB_MAX_FLOW_TIMEOUT
        )),
    }
}

/// A flow table size: 1 to UDPLB_MAX_FLOW_TABLE_SIZE entries.
pub fn parse_flow_table_size(s: &str) -> Result<u32, UsageError> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=crate::abi::UDPLB_MAX_FLOW_TABLE_SIZE).contains(&n) => Ok(n),
        _ => Err(usage!(
            "flow table size '{s}' must be a number of entries from 1 to {}",
            crate::abi::UDPLB_MAX_FLOW_TABLE_SIZE
        )),
    }
}

fn parse_port(s: &str, what: &str) -> Result<u16, UsageError> {
    let digits = s.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(usage!("{what} '{s}' is not a port number (1-65535)"));
    }
    match digits.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(usage!("{what} {digits} is out of range: ports are 1-65535")),
    }
}

/// A frontend address must be one a packet can carry. An IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`) never is: IPv4 datagrams arrive as IPv4, so
/// such a frontend would never match.
fn check_frontend_addr(addr: IpAddr) -> Result<(), String> {
    match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => Err(format!(
                "an IPv4-mapped address never appears in a packet, so this frontend could \
                 never match; write {v4}:PORT"
            )),
            None => Ok(()),
        },
        IpAddr::V4(_) => Ok(()),
    }
}

/// A remote backend is one other host the datapath forwards to. A group
/// (multicast, broadcast), this host (loopback), no host (unspecified) or an
/// IPv4-mapped IPv6 address cannot be one.
fn check_remote_backend_addr(addr: IpAddr) -> Result<(), &'static str> {
    let v4_mapped = matches!(addr, IpAddr::V6(a) if a.to_ipv4_mapped().is_some());
    let broadcast = matches!(addr, IpAddr::V4(a) if a.is_broadcast());
    match () {
        _ if addr.is_unspecified() => Err("is not a host address (a wildcard)"),
        _ if addr.is_multicast() => Err("is a multicast address: a backend is one host"),
        _ if broadcast => Err("is the broadcast address: a backend is one host"),
        _ if addr.is_loopback() => {
            Err("is a loopback address, which is this host: write a local backend as PORT")
        }
        _ if v4_mapped => Err("is an IPv4-mapped address: write it as IPv4:PORT"),
        _ => Ok(()),
    }
}

/// An interface name as the kernel accepts one (`dev_valid_name`): 1-15
/// bytes, not `.` or `..`, no `/`, `:`, whitespace or NUL. udplb joins the
/// name to /sys/fs/bpf/udplb/ for `--pin` and `--unpin`, so a name that
/// passes here can never reach outside that directory.
pub fn check_interface_name(name: &str) -> Result<(), UsageError> {
    let valid = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    match valid {
        true => Ok(()),
        false => Err(usage!(
            "'{}' is not an interface name (1-15 bytes, no '/', ':' or spaces, not '.' or '..')",
            name.escape_debug()
        )),
    }
}

/// `PORT`, `IPv4:PORT` or `[IPv6]:PORT`.
pub fn parse_listen(s: &str) -> Result<Listen, UsageError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, port) = rest
            .split_once("]:")
            .ok_or_else(|| usage!("frontend '{s}': an IPv6 frontend is written [ADDRESS]:PORT"))?;
        let addr = addr
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| usage!("frontend '{s}': '{addr}' is not an IPv6 address"))?;
        return Ok(Listen {
            addr: Some(addr.into()),
            port: parse_port(port, "frontend port")?,
        });
    }
    match s.rsplit_once(':') {
        None => Ok(Listen {
            addr: None,
            port: parse_port(s, "frontend port")?,
        }),
        Some((addr, port)) => {
            if addr.contains(':') {
                return Err(usage!(
                    "frontend '{s}': write IPv6 frontends as [ADDRESS]:PORT"
                ));
            }
            let addr = addr
                .parse::<std::net::Ipv4Addr>()
                .map_err(|_| usage!("frontend '{s}': '{addr}' is not an IPv4 address"))?;
            Ok(Listen {
                addr: Some(addr.into()),
                port: parse_port(port, "frontend port")?,
            })
        }
    }
}

/// One backend: `PORT` on this host, or `IPv4:PORT` / `[IPv6]:PORT` on
/// another, with an optional `@WEIGHT`.
pub fn parse_backend(s: &str, frontend: &str) -> Result<BackendConfig, UsageError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(usage!(
            "frontend {frontend}: empty entry in the backend list"
        ));
    }
    // TARGET[#SERVER_ID][@WEIGHT]; `#` after the weight is accepted too.
    let (s_no_id, server_id) = match s.split_once('#') {
        None => (s.to_string(), None),
        Some((head, tail)) => {
            let (hex, rest) = match tail.split_once('@') {
                Some((hex, w)) => (hex, format!("@{w}")),
                None => (tail, String::new()),
            };
            let id = ServerId::parse(hex).ok_or_else(|| {
                usage!(
                    "frontend {frontend}: backend '{s}': server ID '{}' is not 1 to \
                     {QUIC_MAX_SID} bytes in hex (e.g. 0a01)",
                    hex.trim()
                )
            })?;
            (format!("{}{rest}", head.trim()), Some(id))
        }
    };
    let (port, weight) = match s_no_id.split_once('@') {
        Some((p, w)) => (p.trim(), Some(w.trim())),
        None => (s_no_id.as_str(), None),
    };
    let what = format!("frontend {frontend}: backend");
    let (addr, port) = if port.contains(':') || port.contains('[') {
        let remote = parse_listen(port).map_err(|e| {
            usage!(
                "frontend {frontend}: backend '{s}': {}",
                e.0.replace("frontend", "backend")
            )
        })?;
        let addr = remote.addr.filter(|a| !a.is_unspecified()).ok_or_else(|| {
            usage!("frontend {frontend}: backend '{s}' needs a host address, not a wildcard")
        })?;
        (Some(addr), remote.port)
    } else if port.parse::<IpAddr>().is_ok() {
        return Err(usage!(
            "frontend {frontend}: backend '{s}' needs a port: ADDRESS:PORT"
        ));
    } else {
        (None, parse_port(port, &what)?)
    };
    let weight = match weight {
        None => 1,
        Some(w) => {
            let digits = !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
            match w.parse::<u32>() {
                Ok(w) if digits && w <= UDPLB_MAX_WEIGHT => w,
                _ => {
                    return Err(usage!(
                        "frontend {frontend}: backend '{s}': weight must be 0-{UDPLB_MAX_WEIGHT}"
                    ))
                }
            }
        }
    };
    Ok(BackendConfig {
        addr,
        port,
        weight,
        server_id,
    })
}

/// `FRONTEND=BACKENDS`, with the scheduler settings of `defaults`.
pub fn parse_frontend(spec: &str, defaults: Defaults) -> Result<FrontendConfig, UsageError> {
    let (front, backs) = spec
        .split_once('=')
        .ok_or_else(|| usage!("'{spec}': expected FRONTEND=BACKENDS, e.g. 9875=9876,9877"))?;
    let listen = parse_listen(front.trim())?;
    if backs.trim().is_empty() {
        return Err(usage!("frontend {listen}: no backends given after '='"));
    }
    let backends = backs
        .split(',')
        .map(|b| parse_backend(b, &listen.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FrontendConfig {
        listen,
        backends,
        sched: defaults.sched,
        table_size: defaults.table_size,
        health: FrontendHealth::new(Check::default()),
        flow_timeout: defaults.flow_timeout,
        quic_settings: defaults.quic,
    })
}

impl Config {
    /// Checks everything the datapath relies on. See README "Limits".
    pub fn new(frontends: Vec<FrontendConfig>) -> Result<Config, UsageError> {
        Config::check(frontends).map_err(|(_, e)| e)
    }

    /// As [`Config::new`]; an error also names the index of the frontend it
    /// is about, when it is about one (the config file adds its line).
    pub fn check(frontends: Vec<FrontendConfig>) -> Result<Config, (Option<usize>, UsageError)> {
        macro_rules! fail {
            ($i:expr, $($arg:tt)*) => { return Err(($i, usage!($($arg)*))) };
        }
        if frontends.is_empty() {
            fail!(None, "no frontends given");
        }
        if frontends.len() > MAX_FRONTENDS {
            fail!(
                None,
                "{} frontends given; the limit is {MAX_FRONTENDS}",
                frontends.len()
            );
        }
        let mut keys: HashMap<Endpoint, Listen> = HashMap::new();
        let mut frontend_ports: HashMap<u16, Listen> = HashMap::new();
        for (i, fe) in frontends.iter().enumerate() {
            if let Some(Err(why)) = fe.listen.addr.map(check_frontend_addr) {
                fail!(Some(i), "frontend {}: {why}", fe.listen);
            }
            for key in fe.listen.endpoints() {
                if let Some(other) = keys.insert(key, fe.listen) {
                    fail!(
                        Some(i),
                        "frontend {} duplicates frontend {other}",
                        fe.listen
                    );
                }
            }
            frontend_ports.insert(fe.listen.port, fe.listen);
        }
        let mut owner: HashMap<(Option<IpAddr>, u16), Listen> = HashMap::new();
        let mut total = 0;
        for (i, fe) in frontends.iter().enumerate() {
            let n = fe.backends.len();
            if n > MAX_BACKENDS {
                fail!(
                    Some(i),
                    "frontend {}: {n} backends given; the limit is {MAX_BACKENDS}",
                    fe.listen
                );
            }
            total += n;
            for b in &fe.backends {
                let port = b.port;
                if let Some(addr) = b.addr {
                    if let Err(why) = check_remote_backend_addr(addr) {
                        fail!(Some(i), "frontend {}: backend {b} {why}", fe.listen);
                    }
                    let same_family = fe
                        .listen
                        .addr
                        .is_some_and(|a| a.is_ipv4() == addr.is_ipv4());
                    if fe.listen.addr.is_none_or(|a| a.is_unspecified()) {
                        fail!(
                            Some(i),
                            "frontend {}: backend {b} is on another host, so the frontend needs \
                             an address (IPv4:PORT or [IPv6]:PORT) for its replies to come from",
                            fe.listen
                        );
                    }
                    if !same_family {
                        fail!(
                            Some(i),
                            "frontend {}: backend {b} is of another address family",
                            fe.listen
                        );
                    }
                    if keys.contains_key(&b.endpoint()) {
                        fail!(
                            Some(i),
                            "frontend {}: backend {b} is a frontend: datagrams would loop",
                            fe.listen
                        );
                    }
                } else if let Some(f) = frontend_ports.get(&port) {
                    fail!(
                        Some(i),
                        "frontend {}: backend {port} is also frontend {f}: datagrams would loop",
                        fe.listen
                    );
                }
                let name = BackendConfig {
                    weight: 1,
                    server_id: None,
                    ..*b
                };
                match owner.insert(b.id(), fe.listen) {
                    Some(prev) if prev == fe.listen => {
                        fail!(
                            Some(i),
                            "frontend {}: backend {name} is listed twice",
                            fe.listen
                        );
                    }
                    Some(prev) => {
                        fail!(
                            Some(i),
                            "backend {name} serves both frontend {prev} and frontend {}: its \
                             replies could not be told apart",
                            fe.listen
                        );
                    }
                    None => {}
                }
            }
            if let Err((_, e)) = fe.check_quic() {
                fail!(Some(i), "{e}");
            }
            // Round robin needs no check: weights <= UDPLB_MAX_WEIGHT over at
            // most MAX_BACKENDS backends fit in UDPLB_MAX_RING (asserted below).
            match fe.sched {
                Sched::Maglev | Sched::Quic if fe.table_size as usize <= n => {
                    fail!(
                        Some(i),
                        "frontend {}: a maglev table of {} entries cannot hold {n} backends; \
                         use a larger --table-size",
                        fe.listen,
                        fe.table_size
                    );
                }
                _ => {}
            }
        }
        if total > MAX_BACKEND_SLOTS {
            fail!(
                None,
                "{total} backends over all frontends; the limit is {MAX_BACKEND_SLOTS}"
            );
        }
        // Every ring entry costs kernel memory and time to write: cap the
        // sum, not just each table.
        let entries: u64 = frontends.iter().map(ring_len).sum();
        if entries > UDPLB_MAX_RING_ENTRIES as u64 {
            fail!(
                None,
                "the frontends' tables hold {entries} entries in all; the limit is \
                 {UDPLB_MAX_RING_ENTRIES} (8 bytes of kernel memory each): use smaller \
                 --table-size values or fewer frontends"
            );
        }
        Ok(Config { frontends })
    }

    /// The command line's `--health KIND`: every frontend checks its
    /// backends with KIND at the default timing.
    pub fn set_check(&mut self, kind: &CheckKind) {
        for fe in &mut self.frontends {
            fe.health.check.kind = kind.clone();
        }
    }

    /// Parses and checks a list of `FRONTEND=BACKENDS` arguments with the
    /// default scheduler (round robin).
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<Config, UsageError> {
        Config::from_specs_with(specs, Defaults::default())
    }

    pub fn from_specs_with<S: AsRef<str>>(
        specs: &[S],
        defaults: Defaults,
    ) -> Result<Config, UsageError> {
        let frontends = specs
            .iter()
            .map(|s| parse_frontend(s.as_ref(), defaults))
            .collect::<Result<Vec<_>, _>>()?;
        Config::new(frontends)
    }
}

/// The number of entries of a frontend's ring: its Maglev table, or one
/// round-robin cycle (the weights divided by their gcd; see plan::rr).
pub fn ring_len(fe: &FrontendConfig) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    match fe.sched {
        Sched::Maglev | Sched::Quic => fe.table_size as u64,
        Sched::Rr => {
            let w: Vec<u64> = fe.backends.iter().map(|b| b.weight as u64).collect();
            let g = w.iter().copied().fold(0, gcd);
            w.iter().map(|x| x / g.max(1)).sum()
        }
    }
}

/// The backends' weights, in order.
pub fn weights(fe: &FrontendConfig) -> Vec<u32> {
    fe.backends.iter().map(|b| b.weight).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(specs: &[&str]) -> String {
        Config::from_specs(specs).expect_err("should be rejected").0
    }

    #[test]
    fn the_example_line() {
        let c = Config::from_specs(&["9875=9876,9877,9878"]).unwrap();
        assert_eq!(c.frontends.len(), 1);
        assert_eq!(
            c.frontends[0].listen,
            Listen {
                addr: None,
                port: 9875
            }
        );
        let ports: Vec<u16> = c.frontends[0].backends.iter().map(|b| b.port).collect();
        assert_eq!(ports, vec![9876, 9877, 9878]);
        assert!(c.frontends[0].backends.iter().all(|b| b.weight == 1));
        assert_eq!(c.frontends[0].sched, Sched::Rr);
        assert_eq!(c.frontends[0].listen.endpoints().len(), 2, "both families");
    }

    #[test]
    fn frontend_forms() {
        let v4 = parse_listen("198.18.0.1:53").unwrap();
        assert_eq!(v4.addr, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(v4.to_string(), "198.18.0.1:53");
        let v6 = parse_listen("[2001:2::1]:53").unwrap();
        assert_eq!(v6.addr, Some("2001:2::1".parse().unwrap()));
        assert_eq!(v6.to_string(), "[2001:2::1]:53");
        assert_eq!(parse_listen("53").unwrap().to_string(), "*:53");
        // The explicit wildcard of one family is a wildcard key of that family only.
        let any4 = parse_listen("0.0.0.0:53").unwrap().endpoints();
        assert_eq!(any4, vec![Endpoint::ipv4(None, 53)]);
        let any6 = parse_listen("[::]:53").unwrap().endpoints();
        assert_eq!(any6, vec![Endpoint::ipv6(None, 53)]);
    }

    #[test]
    fn spaces_around_backends_are_accepted() {
        let c = Config::from_specs(&["9875= 9876, 9877"]).unwrap();
        let ports: Vec<u16> = c.frontends[0].backends.iter().map(|b| b.port).collect();
        assert_eq!(ports, vec![9876, 9877]);
    }

    #[test]
    fn bad_ports() {
        assert!(err(&["0=9876"]).contains("out of range"));
        assert!(err(&["65536=9876"]).contains("out of range"));
        assert!(err(&["9875=0"]).contains("out of range"));
        assert!(err(&["9875=70000"]).contains("out of range"));
        assert!(err(&["9875=99999999999999999999"]).contains("out of range"));
        assert!(err(&["abc=9876"]).contains("not a port number"));
        assert!(err(&["9875=x"]).contains("not a port number"));
        assert!(err(&["9875=-1"]).contains("not a port number"));
        assert!(err(&["9875=+1"]).contains("not a port number"));
    }

    #[test]
    fn bad_backend_lists() {
        assert!(err(&["9875"]).contains("expected FRONTEND=BACKENDS"));
        assert!(err(&["9875="]).contains("no backends"));
        assert!(err(&["9875=9876,"]).contains("empty entry"));
        assert!(err(&["9875=,9876"]).contains("empty entry"));
        assert!(err(&["9875=9876,,9877"]).contains("empty entry"));
        assert!(err(&["9875=9876,9876"]).contains("listed twice"));
    }

    #[test]
    fn remote_backends() {
        let c =
            Config::from_specs(&["198.18.0.1:53=198.18.1.2:5353,198.18.1.3:53@2,5300"]).unwrap();
        let b = &c.frontends[0].backends;
        assert_eq!(b[0].addr, Some("198.18.1.2".parse().unwrap()));
        assert_eq!((b[1].port, b[1].weight), (53, 2));
        assert_eq!(b[1].to_string(), "198.18.1.3:53@2");
        assert_eq!(b[2].addr, None, "local and remote mix");
        let c = Config::from_specs(&["[2001:2::1]:53=[2001:2:1::2]:53"]).unwrap();
        assert_eq!(c.frontends[0].backends[0].to_string(), "[2001:2:1::2]:53");
        assert!(err(&["53=198.18.1.2:53"]).contains("the frontend needs an address"));
        assert!(err(&["0.0.0.0:53=198.18.1.2:53"]).contains("the frontend needs an address"));
        assert!(err(&["198.18.0.1:53=[2001:2::2]:53"]).contains("another address family"));
        assert!(err(&["198.18.0.1:53=198.18.1.2"]).contains("needs a port"));
        assert!(err(&["198.18.0.1:53=0.0.0.0:53"]).contains("not a wildcard"));
        assert!(err(&["198.18.0.1:53=198.18.1.300:53"]).contains("is not an IPv4 address"));
        assert!(err(&["198.18.0.1:53=198.18.1.2:0"]).contains("out of range"));
        assert!(err(&["198.18.0.1:53=198.18.0.1:53"]).contains("would loop"));
        assert!(err(&["198.18.0.1:53=198.18.1.2:53,198.18.1.2:53@3"]).contains("listed twice"));
        assert!(
            err(&["198.18.0.1:53=198.18.1.2:53", "198.18.0.1:54=198.18.1.2:53"])
                .contains("serves both")
        );
    }

    #[test]
    fn bad_addresses() {
        assert!(err(&["1.2.3:53=9876"]).contains("not an IPv4 address"));
        assert!(err(&["300.1.1.1:53=9876"]).contains("not an IPv4 address"));
        assert!(err(&["[2001:2::zz]:53=9876"]).contains("not an IPv6 address"));
        assert!(err(&["[2001:2::1]53=9876"]).contains("[ADDRESS]:PORT"));
        assert!(err(&["2001:2::1:53=9876"]).contains("[ADDRESS]:PORT"));
        assert!(err(&[":53=9876"]).contains("not an IPv4 address"));
    }

    #[test]
    fn duplicates_and_loops() {
        assert!(err(&["9875=9876", "9875=9877"]).contains("duplicates"));
        assert!(err(&["9875=9876", "0.0.0.0:9875=9877"]).contains("duplicates"));
        assert!(err(&["9875=9876", "[::]:9875=9877"]).contains("duplicates"));
        assert!(err(&["9875=9875"]).contains("loop"));
        assert!(err(&["9875=9876", "9876=9877"]).contains("loop"));
        assert!(err(&["9875=9876", "9000=9876"]).contains("serves both"));
        // An exact address beside the wildcard is allowed: the exact one wins.
        Config::from_specs(&["9875=9876", "127.0.0.2:9875=9877"]).unwrap();
        // The same port on two families' explicit wildcards is two frontends.
        Config::from_specs(&["0.0.0.0:9875=9876", "[::]:9875=9877"]).unwrap();
    }

    #[test]
    fn weights_and_schedulers() {
        let c = Config::from_specs(&["9875=9876@3,9877,9878@0"]).unwrap();
        let w: Vec<u32> = c.frontends[0].backends.iter().map(|b| b.weight).collect();
        assert_eq!(w, vec![3, 1, 0]);
        assert_eq!(c.frontends[0].backends[0].to_string(), "9876@3");
        assert!(err(&["9875=9876@"]).contains("weight must be 0-1000"));
        assert!(err(&["9875=9876@1001"]).contains("weight must be 0-1000"));
        assert!(err(&["9875=9876@-1"]).contains("weight must be 0-1000"));
        assert!(err(&["9875=9876@+1"]).contains("weight must be 0-1000"));
        assert!(err(&["9875=9876@x"]).contains("weight must be 0-1000"));
        let maglev = Defaults {
            sched: Sched::Maglev,
            table_size: 7,
            ..Defaults::default()
        };
        let c = Config::from_specs_with(&["9875=9876,9877"], maglev).unwrap();
        assert_eq!(
            (c.frontends[0].sched, c.frontends[0].table_size),
            (Sched::Maglev, 7)
        );
        let e = Config::from_specs_with(&["9875=1,2,3,4,5,6,7"], maglev)
            .unwrap_err()
            .0;
        assert!(e.contains("cannot hold 7 backends"), "{e}");
    }

    #[test]
    fn addresses_that_can_never_work() {
        let e = err(&["[::ffff:198.18.0.1]:53=9876"]);
        assert!(
            e.contains("frontend [::ffff:198.18.0.1]:53") && e.contains("IPv4-mapped"),
            "{e}"
        );
        for (spec, why) in [
            ("198.18.0.1:53=224.0.0.1:53", "multicast"),
            ("198.18.0.1:53=239.1.2.3:53", "multicast"),
            ("198.18.0.1:53=255.255.255.255:53", "broadcast"),
            ("198.18.0.1:53=127.0.0.2:53", "loopback"),
            ("[2001:2::1]:53=[ff02::1]:53", "multicast"),
            ("[2001:2::1]:53=[::1]:53", "loopback"),
            ("[2001:2::1]:53=[::ffff:198.18.1.2]:53", "IPv4-mapped"),
        ] {
            let e = err(&[spec]);
            let (front, back) = spec.split_once('=').unwrap();
            assert!(
                e.contains(&format!("frontend {front}: backend {back}")) && e.contains(why),
                "{spec}: {e}"
            );
        }
        // A loopback frontend is fine: it is local.
        Config::from_specs(&["127.0.0.1:53=9876"]).unwrap();
    }

    #[test]
    fn quic_frontends() {
        let quic = Defaults {
            sched: Sched::Quic,
            ..Defaults::default()
        };
        let c = Config::from_specs_with(&["443=9876#0a01,9877#0A02@2,9878@3#0a03"], quic).unwrap();
        let fe = &c.frontends[0];
        let ids: Vec<String> = fe.backends.iter().map(|b| b.to_string()).collect();
        assert_eq!(ids, ["9876#0a01", "9877#0a02@2", "9878#0a03@3"]);
        assert_eq!(
            fe.quic(),
            Some(QuicParams {
                server_id_len: 2,
                cid_len: 8,
                config_id: 0
            })
        );
        let long = Config::from_specs_with(&["443=1#00112233445566"], quic).unwrap();
        assert_eq!(long.frontends[0].quic().unwrap().cid_len, 12, "1 + 7 + 4");
        let e = |spec: &str, d: Defaults| Config::from_specs_with(&[spec], d).unwrap_err().0;
        for (spec, why) in [
            ("443=9876#0a01,9877", "backend 9877 needs a server ID"),
            (
                "443=9876#0a01,9877#0a01",
                "backends 9876 and 9877 have the same server ID 0a01",
            ),
            ("443=9876#0a01,9877#0a0102", "is 3 bytes long, not 2"),
            (
                "443=9876#0a1",
                "server ID '0a1' is not 1 to 15 bytes in hex",
            ),
            ("443=9876#zz", "server ID 'zz' is not"),
            ("443=9876#", "server ID '' is not"),
            (
                "443=9876#00112233445566778899aabbccddeeff",
                "is not 1 to 15 bytes",
            ),
        ] {
            let m = e(spec, quic);
            assert!(m.contains(why), "{spec}: {m}");
        }
        let m = e("443=9876#0a01", Defaults::default());
        assert!(m.contains("only a quic frontend uses"), "{m}");
        let short = Defaults {
            quic: QuicSettings {
                cid_len: Some(6),
                ..QuicSettings::default()
            },
            ..quic
        };
        assert!(e("443=9876#0a01", short).contains("use 7 to 20"));
        let cr7 = Defaults {
            quic: QuicSettings {
                config_id: 7,
                ..QuicSettings::default()
            },
            ..quic
        };
        assert!(e("443=9876#0a01", cr7).contains("config ID 7 is out of range"));
    }

    #[test]
    fn interface_names() {
        for ok in ["lo", "eth0", "veth-b", "fifteen-bytes-x", "br0.100", "a..b"] {
            check_interface_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "../../srv",
            "a/b",
            "eth0:1",
            "eth 0",
            " lo",
            "lo\t",
            "a\0b",
            "sixteen-bytes-xx",
        ] {
            let e = check_interface_name(bad).unwrap_err().0;
            assert!(e.contains("is not an interface name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn table_sizes() {
        assert_eq!(parse_table_size("65537"), Ok(65537));
        assert_eq!(parse_table_size("7"), Ok(7));
        for bad in ["65536", "1", "0", "x", "1048583"] {
            assert!(parse_table_size(bad).is_err(), "{bad}");
        }
        assert!(is_prime(crate::abi::UDPLB_MAX_RING));
        assert!(is_prime(crate::abi::UDPLB_DEFAULT_MAGLEV_SIZE));
    }

    #[test]
    fn limits() {
        let many: Vec<String> = (0..=MAX_BACKENDS)
            .map(|i| (20000 + i).to_string())
            .collect();
        let spec = format!("9875={}", many.join(","));
        assert!(err(&[&spec]).contains(&format!("the limit is {MAX_BACKENDS}")));
        let at_limit = format!("9875={}", many[..MAX_BACKENDS].join(","));
        Config::from_specs(&[at_limit]).unwrap();

        let fronts: Vec<String> = (0..=MAX_FRONTENDS)
            .map(|i| format!("{}={}", 1000 + i, 30000 + i))
            .collect();
        let refs: Vec<&str> = fronts.iter().map(String::as_str).collect();
        assert!(err(&refs).contains(&format!("the limit is {MAX_FRONTENDS}")));
        Config::from_specs(&refs[..MAX_FRONTENDS]).unwrap();
    }

    #[test]
    fn ring_entries_over_all_frontends_are_capped() {
        let maglev = |n: usize, table_size: u32| {
            let specs: Vec<String> = (0..n)
                .map(|i| format!("{}={}", 1000 + i, 30000 + i))
                .collect();
            let defaults = Defaults {
                sched: Sched::Maglev,
                table_size,
                ..Defaults::default()
            };
            Config::from_specs_with(&specs, defaults)
        };
        // Every frontend at the default size fits...
        maglev(MAX_FRONTENDS, crate::abi::UDPLB_DEFAULT_MAGLEV_SIZE).unwrap();
        // ...but not 17 of the largest tables (2.1 GB at 256 of them).
        let e = maglev(17, UDPLB_MAX_RING).unwrap_err().to_string();
        let total = 17 * UDPLB_MAX_RING as u64;
        assert!(
            e.contains(&format!(
                "{total} entries in all; the limit is {UDPLB_MAX_RING_ENTRIES}"
            )),
            "{e}"
        );
        // Round-robin cycles count too.
        let rr = Config::from_specs(&["9875=9876@1000,9877@999"]).unwrap();
        assert_eq!(ring_len(&rr.frontends[0]), 1999);
    }
}
