//! Schedulers and their settings: the scheduler of each frontend, the size
//! of a Maglev table, and the flow table's timeout and size.

use crate::abi::UDPLB_MAX_RING;
use crate::error::UsageError;
use crate::usage;

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

/// Every scheduler and its name, in the order `Sched` declares them, so
/// that `SCHEDS[s as usize]` is the entry of `s` (asserted below).
pub const SCHEDS: [(Sched, &str); 3] = [
    (Sched::Rr, "rr"),
    (Sched::Maglev, "maglev"),
    (Sched::Quic, "quic"),
];

const _: () = {
    let mut i = 0;
    while i < SCHEDS.len() {
        assert!(SCHEDS[i].0 as usize == i);
        i += 1;
    }
};

impl Sched {
    /// Every scheduler, in the order of [`SCHEDS`] (the command line's
    /// choices).
    pub const ALL: [Sched; SCHEDS.len()] = {
        let mut all = [Sched::Rr; SCHEDS.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = SCHEDS[i].0;
            i += 1;
        }
        all
    };

    /// The scheduler called `s` in [`SCHEDS`].
    pub fn parse(s: &str) -> Option<Sched> {
        SCHEDS
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(sched, _)| *sched)
    }

    /// As written in the configuration: "rr", "maglev" or "quic".
    pub fn code(self) -> &'static str {
        // SCHEDS is in declaration order (asserted there).
        SCHEDS[self as usize].1
    }

    /// As a person reads it: "round robin", "maglev" or "quic".
    pub fn name(self) -> &'static str {
        match self {
            Sched::Rr => "round robin",
            Sched::Maglev => "maglev",
            Sched::Quic => "quic",
        }
    }

    /// Whether the frontend has a Maglev ring (and so can have a flow
    /// table).
    pub fn hashes(self) -> bool {
        self != Sched::Rr
    }
}

/// What a hashing frontend (maglev, and quic for what the connection ID
/// does not route) hashes to pick a backend, and pins in its flow table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hash {
    /// The flow: both addresses and both ports. Each flow of a client has
    /// a backend of its own.
    #[default]
    Flow,
    /// The client's address alone, an IPv6 one cut to its first
    /// `ipv6_prefix` bits (128: the whole address): every flow of a
    /// client on one backend (SIP with RTP, RADIUS EAP, WebRTC media,
    /// Kubernetes `sessionAffinity: ClientIP`), one pin per client.
    Client { ipv6_prefix: u8 },
}

impl Hash {
    /// `flow`, `client` (every address bit) or `client/N` (an IPv6
    /// client's first N bits, 1-128; an IPv4 client's whole address).
    pub fn parse(s: &str) -> Result<Hash, UsageError> {
        let bad = || usage!("'{s}' is not flow, client or client/PREFIX (e.g. client/64)");
        match s.trim().split_once('/') {
            None if s.trim() == "flow" => Ok(Hash::Flow),
            None if s.trim() == "client" => Ok(Hash::Client { ipv6_prefix: 128 }),
            Some(("client", n)) => match n.parse::<u8>() {
                Ok(p @ 1..=128) => Ok(Hash::Client { ipv6_prefix: p }),
                _ => Err(usage!(
                    "'{s}': the IPv6 prefix of a client must be 1 to 128 bits"
                )),
            },
            _ => Err(bad()),
        }
    }

    /// As written in the configuration: `flow`, `client` or `client/64`.
    pub fn code(self) -> String {
        match self {
            Hash::Flow => "flow".into(),
            Hash::Client { ipv6_prefix: 128 } => "client".into(),
            Hash::Client { ipv6_prefix } => format!("client/{ipv6_prefix}"),
        }
    }

    /// struct udplb_frontend.client_bits: 0 for the flow.
    pub fn client_bits(self) -> u8 {
        match self {
            Hash::Flow => 0,
            Hash::Client { ipv6_prefix } => ipv6_prefix,
        }
    }
}

/// The number of entries of a frontend's ring: its Maglev table, or one
/// round-robin cycle (the length of `plan::rr::ring`, which lays out the
/// same [`rr_turns`]). Here rather than in plan/: the check of the
/// frontends' total (check.rs) needs it.
pub fn ring_len(fe: &super::FrontendConfig) -> u64 {
    match fe.sched {
        Sched::Maglev | Sched::Quic => fe.table_size as u64,
        Sched::Rr => cycle_len(&super::weights(fe)),
    }
}

/// The length of a round-robin cycle of these weights, without building it.
pub fn cycle_len(weights: &[u32]) -> u64 {
    rr_turns(weights).sum()
}

/// How many turns each backend has in one round-robin cycle: weight_i / g,
/// g the gcd of the non-zero weights (all 0 when every weight is 0).
pub fn rr_turns(weights: &[u32]) -> impl Iterator<Item = u64> + '_ {
    let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
    weights
        .iter()
        .map(move |&w| w.checked_div(g).unwrap_or(0) as u64)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Whether `n` is prime (trial division up to its square root).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::refused as err;
    use crate::config::{Config, Defaults};

    #[test]
    fn names_read_back() {
        for s in Sched::ALL {
            assert_eq!(Sched::parse(s.code()), Some(s));
        }
        assert_eq!(Sched::ALL, [Sched::Rr, Sched::Maglev, Sched::Quic]);
        assert_eq!(Sched::parse("random"), None);
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
}
