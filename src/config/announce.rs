//! Route health injection settings: which frontend addresses udplb puts on
//! an interface of its own (a dummy or lo) while it can serve them, so that
//! the routing daemon (BIRD's `protocol direct`, FRR's `redistribute
//! connected`) announces them only then. `--announce IFACE` on the command
//! line announces every frontend; in the file, `announce_interface` turns it
//! on and `announce = false` leaves one frontend out. Only unicast
//! addresses that routers can carry to this host are announced
//! ([`refusal`]). Pure: no kernel access.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::config::{Config, Listen};
use crate::error::UsageError;
use crate::usage;

/// How long udplb waits between withdrawing its addresses and detaching, on
/// SIGINT or SIGTERM: long enough for routers to converge.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);
pub const MAX_GRACE: Duration = Duration::from_secs(600);
/// Each address udplb adds expires after this unless udplb refreshes it,
/// which it does every quarter of it while its event loop runs: a udplb
/// that is killed (SIGKILL) or stuck stops attracting traffic after at
/// most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
pub const MIN_LEASE: Duration = Duration::from_secs(2);
pub const MAX_LEASE: Duration = Duration::from_secs(86400);

/// What to announce, where, and the two delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The interface the addresses go on; `None`: nothing is announced.
    pub interface: Option<String>,
    pub grace: Duration,
    pub lease: Duration,
    /// The frontends announced (each has an address).
    pub frontends: BTreeSet<Listen>,
}

impl Default for Announce {
    fn default() -> Self {
        Announce {
            interface: None,
            grace: DEFAULT_GRACE,
            lease: DEFAULT_LEASE,
            frontends: BTreeSet::new(),
        }
    }
}

impl Announce {
    /// `--announce IFACE`: every frontend of `config`; one without an
    /// address is refused.
    pub fn every(
        config: &Config,
        interface: &str,
        grace: Duration,
        lease: Duration,
    ) -> Result<Announce, UsageError> {
        crate::config::check_interface_name(interface)
            .map_err(|e| usage!("--announce {interface}: {}", e.0))?;
        let mut frontends = BTreeSet::new();
        for fe in &config.frontends {
            let instead = "announce from the config file with announce = false";
            if let Some(why) = refusal(&fe.listen, instead) {
                return Err(usage!("--announce: {why}"));
            }
            frontends.insert(fe.listen);
        }
        Ok(Announce {
            interface: Some(interface.to_string()),
            grace,
            lease,
            frontends,
        })
    }

    /// Whether anything is announced.
    pub fn on(&self) -> bool {
        self.interface.is_some()
    }
}

/// The address a frontend is announced by: its own; none for a port-only
/// frontend or a family wildcard (they answer on every address).
pub fn address(listen: &Listen) -> Option<IpAddr> {
    listen.addr.filter(|a| !a.is_unspecified())
}

/// Why `listen` cannot be announced, and what to do instead (`instead`:
/// how to leave it out); None if it can. Refused: no address (a port-only
/// frontend or a wildcard), and an address that [`not_routable`] refuses.
pub fn refusal(listen: &Listen, instead: &str) -> Option<String> {
    let Some(addr) = address(listen) else {
        return Some(format!(
            "frontend {listen} has no address to announce (it answers on every local address); \
             give it one (e.g. 198.18.100.1:{}) or {instead}",
            listen.port
        ));
    };
    let kind = not_routable(addr)?;
    Some(format!(
        "frontend {listen}: {addr} is {kind}, which routers do not carry to this host; \
         announce a unicast address (IPv4 outside 0/8, 127/8, 169.254/16, 224/3; \
         IPv6 global 2000::/3 or unique local fc00::/7) or {instead}"
    ))
}

/// What kind of address `addr` is if routers cannot carry it to one host
/// by a host route: every IPv4 address but this network (0/8), loopback
/// (127/8), link-local (169.254/16), multicast (224/4), class E and the
/// broadcast address (240/4); every IPv6 address but global unicast
/// (2000::/3, which excludes the IPv4-mapped and other embedded forms) and
/// unique local (fc00::/7). None: announceable.
pub fn not_routable(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) => not_routable_v4(a),
        IpAddr::V6(a) => not_routable_v6(a),
    }
}

fn not_routable_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [first, second, ..] = a.octets();
    match first {
        0 => Some("in 0.0.0.0/8 (this network)"),
        127 => Some("a loopback address"),
        169 if second == 254 => Some("a link-local address"),
        224..=239 => Some("a multicast address"),
        255 if a.is_broadcast() => Some("the broadcast address"),
        240..=255 => Some("a reserved (class E) address"),
        _ => None,
    }
}

fn not_routable_v6(a: Ipv6Addr) -> Option<&'static str> {
    let first = a.segments()[0];
    match first {
        _ if first & 0xe000 == 0x2000 => None, // 2000::/3, global unicast
        _ if first & 0xfe00 == 0xfc00 => None, // fc00::/7, unique local
        _ if a.is_loopback() => Some("the loopback address"),
        _ if first & 0xff00 == 0xff00 => Some("a multicast address"),
        _ if first & 0xffc0 == 0xfe80 => Some("a link-local address"),
        _ => Some("not a global or unique local unicast address"),
    }
}

/// `--announce-grace`: seconds (`2`, `0.5`) or a duration (`500ms`, `2s`),
/// at most [`MAX_GRACE`].
pub fn parse_grace(s: &str) -> Result<Duration, UsageError> {
    let d = seconds(s)?;
    if d > MAX_GRACE {
        return Err(usage!("{s} is out of range: 0 to {}s", MAX_GRACE.as_secs()));
    }
    Ok(d)
}

/// `--announce-lease`: whole seconds, [`MIN_LEASE`] to [`MAX_LEASE`] (the
/// kernel counts address lifetimes in seconds).
pub fn parse_lease(s: &str) -> Result<Duration, UsageError> {
    let d = seconds(s)?;
    if d < MIN_LEASE || d > MAX_LEASE || d.subsec_nanos() != 0 {
        return Err(usage!(
            "{s} is out of range: whole seconds, {} to {}",
            MIN_LEASE.as_secs(),
            MAX_LEASE.as_secs()
        ));
    }
    Ok(d)
}

fn seconds(s: &str) -> Result<Duration, UsageError> {
    let t = s.trim();
    if t.ends_with('s') {
        return crate::config::health::parse_duration(t);
    }
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| usage!("'{s}' is not a number of seconds (e.g. 2 or 500ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frontend_needs_an_address() {
        let c = Config::from_specs(&["198.18.100.1:53=5301", "[2001:2:100::1]:53=5302"]).unwrap();
        let a = Announce::every(&c, "udplb0", DEFAULT_GRACE, DEFAULT_LEASE).unwrap();
        assert_eq!(a.frontends.len(), 2);
        assert!(a.on());
        for spec in ["53=5301", "0.0.0.0:53=5301", "[::]:53=5301"] {
            let c = Config::from_specs(&[spec]).unwrap();
            let e = Announce::every(&c, "udplb0", DEFAULT_GRACE, DEFAULT_LEASE)
                .unwrap_err()
                .0;
            assert!(e.starts_with("--announce: frontend "), "{e}");
            assert!(e.contains("has no address to announce"), "{e}");
        }
        let e = Announce::every(&c, "a/b", DEFAULT_GRACE, DEFAULT_LEASE).unwrap_err();
        assert!(e.0.starts_with("--announce a/b: "), "{}", e.0);
        assert!(!Announce::default().on());
    }

    #[test]
    fn only_unicast_addresses_routers_carry_are_announced() {
        for (spec, kind) in [
            ("224.0.0.1:53=5301", "a multicast address"),
            ("239.255.255.250:53=5301", "a multicast address"),
            ("255.255.255.255:53=5301", "the broadcast address"),
            ("240.0.0.1:53=5301", "a reserved (class E) address"),
            ("0.0.0.1:53=5301", "in 0.0.0.0/8"),
            ("127.0.0.2:53=5301", "a loopback address"),
            ("169.254.1.1:53=5301", "a link-local address"),
            ("[fe80::1]:53=5301", "a link-local address"),
            ("[ff02::1]:53=5301", "a multicast address"),
            ("[::1]:53=5301", "the loopback address"),
            (
                "[::2]:53=5301",
                "not a global or unique local unicast address",
            ),
            ("[64:ff9b::1]:53=5301", "not a global or unique local"),
        ] {
            let c = Config::from_specs(&[spec]).unwrap();
            let e = Announce::every(&c, "udplb0", DEFAULT_GRACE, DEFAULT_LEASE)
                .unwrap_err()
                .0;
            assert!(e.starts_with("--announce: frontend "), "{spec}: {e}");
            assert!(e.contains(kind), "{spec}: {e}");
            assert!(e.contains("announce = false"), "{spec}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        for spec in [
            "198.18.100.1:53=5301",
            "1.1.1.1:53=5301",
            "10.0.0.1:53=5301",
            "223.255.255.254:53=5301",
            "169.253.1.1:53=5301",
            "[2001:2:100::1]:53=5301",
            "[fd00::1]:53=5301",
            "[3fff::1]:53=5301",
        ] {
            let c = Config::from_specs(&[spec]).unwrap();
            assert!(
                Announce::every(&c, "udplb0", DEFAULT_GRACE, DEFAULT_LEASE).is_ok(),
                "{spec}"
            );
        }
    }

    #[test]
    fn delays() {
        assert_eq!(parse_grace("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_grace("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_grace("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_grace("0"), Ok(Duration::ZERO));
        assert!(parse_grace("601").unwrap_err().0.contains("out of range"));
        assert!(parse_grace("soon").unwrap_err().0.contains("not a number"));
        assert!(parse_grace("-1").is_err());
        assert_eq!(parse_lease("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_lease("10s"), Ok(Duration::from_secs(10)));
        for bad in ["1", "2.5", "100000"] {
            assert!(parse_lease(bad).unwrap_err().0.contains("out of range"));
        }
    }
}
