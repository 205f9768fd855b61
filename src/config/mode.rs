//! Forwarding modes: how a frontend's requests reach its backends (NAT, or
//! direct server return by IPIP, GUE or L2), and the outer source address
//! of the encapsulating modes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::abi::{TunnelSource, UDPLB_FAMILY_IPV4, UDPLB_FAMILY_IPV6};
use crate::abi::{UDPLB_MODE_GUE, UDPLB_MODE_IPIP, UDPLB_MODE_L2, UDPLB_MODE_NAT};
use crate::error::UsageError;
use crate::usage;

/// How a frontend's requests reach its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The destination becomes the backend's address and port; replies
    /// come back through the balancer, which translates them.
    #[default]
    Nat,
    /// Direct server return in an outer IP header to the backend
    /// (`ip link add ... type ipip external`, ip6tnl, sit).
    Ipip,
    /// Direct server return in an outer IP and UDP header to the backends'
    /// decapsulation `port` (`ip fou add port PORT gue`).
    Gue { port: u16 },
    /// Direct server return on a shared segment: only the destination MAC
    /// becomes the backend's (IPVS's DR).
    L2,
}

impl Mode {
    /// `nat`, `ipip`, `gue:PORT` or `l2`.
    pub fn parse(s: &str) -> Result<Mode, UsageError> {
        match s.trim() {
            "nat" => Ok(Mode::Nat),
            "ipip" => Ok(Mode::Ipip),
            "l2" => Ok(Mode::L2),
            "gue" => Err(usage!(
                "mode gue needs the port the backends decapsulate on: gue:PORT \
                 (their `ip fou add port PORT gue`)"
            )),
            t => match t.strip_prefix("gue:").map(str::parse::<u16>) {
                Some(Ok(port @ 1..)) => Ok(Mode::Gue { port }),
                Some(_) => Err(usage!("'{t}': the GUE port must be 1 to 65535")),
                None => Err(usage!("'{t}' is not nat, ipip, gue:PORT or l2")),
            },
        }
    }

    /// As written in the configuration.
    pub fn code(self) -> String {
        match self {
            Mode::Nat => "nat".into(),
            Mode::Ipip => "ipip".into(),
            Mode::Gue { port } => format!("gue:{port}"),
            Mode::L2 => "l2".into(),
        }
    }

    /// Direct server return: replies skip the balancer.
    pub fn is_dsr(self) -> bool {
        self != Mode::Nat
    }

    /// Requests get an outer header, whose source is a tunnel source.
    pub fn encapsulates(self) -> bool {
        matches!(self, Mode::Ipip | Mode::Gue { .. })
    }

    /// struct udplb_frontend.mode.
    pub fn abi(self) -> u8 {
        (match self {
            Mode::Nat => UDPLB_MODE_NAT,
            Mode::Ipip => UDPLB_MODE_IPIP,
            Mode::Gue { .. } => UDPLB_MODE_GUE,
            Mode::L2 => UDPLB_MODE_L2,
        }) as u8
    }

    /// struct udplb_frontend.gue_port_be: 0 but for gue.
    pub fn gue_port_be(self) -> u16 {
        match self {
            Mode::Gue { port } => port.to_be(),
            _ => 0,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

/// The outer source address of encapsulated requests of one family: an
/// address, or a prefix whose host bits (the last 32 at most; others keep
/// the address's) carry the
/// flow hash, so that the routers' ECMP and the backends' RSS, which see
/// only the outer header of IPIP, spread the flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Tunnel {
    /// `ADDRESS` or `ADDRESS/PREFIX`, a unicast address a router would
    /// forward from.
    pub fn parse(s: &str) -> Result<Tunnel, UsageError> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| usage!("tunnel source '{s}': not an IPv4 or IPv6 address"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        // The hash fills at most the last 32 bits: below /8 an IPv4
        // source could land in 0/8, 127/8 or multicast.
        let least = if addr.is_ipv4() { 8 } else { 0 };
        let prefix = match p.map(str::parse::<u8>) {
            None => width,
            Some(Ok(n)) if (least..=width).contains(&n) => n,
            Some(_) => {
                return Err(usage!(
                    "tunnel source '{s}': the prefix must be {least} to {width}"
                ))
            }
        };
        let bad = match addr {
            IpAddr::V4(v) => v.is_unspecified() || v.is_multicast() || v.is_broadcast(),
            IpAddr::V6(v) => v.is_unspecified() || v.is_multicast(),
        };
        if bad || addr.is_loopback() {
            return Err(usage!(
                "tunnel source '{s}': needs a unicast address that the backends can be sent from"
            ));
        }
        Ok(Tunnel { addr, prefix })
    }

    /// The host bits the flow hash fills: the last 32 at most.
    fn hash_mask(&self) -> u32 {
        let host_bits = u32::from(if self.addr.is_ipv4() { 32 } else { 128 } - self.prefix);
        if host_bits >= 32 {
            u32::MAX
        } else {
            (1u32 << host_bits) - 1
        }
    }

    /// Whether an outer source of this tunnel source can be `a`.
    pub fn covers(&self, a: IpAddr) -> bool {
        // Only the hash's bits (the last 32 at most) vary.
        let fixed = !u128::from(self.hash_mask());
        match (self.addr, a) {
            (IpAddr::V4(t), IpAddr::V4(a)) => {
                (u128::from(u32::from(t)) ^ u128::from(u32::from(a))) & fixed == 0
            }
            (IpAddr::V6(t), IpAddr::V6(a)) => (u128::from(t) ^ u128::from(a)) & fixed == 0,
            _ => false,
        }
    }

    /// As the datapath stores it.
    pub fn abi(&self) -> TunnelSource {
        let mut t = TunnelSource {
            hash_mask_be: self.hash_mask().to_be(),
            ..TunnelSource::default()
        };
        match self.addr {
            IpAddr::V4(a) => {
                t.family = UDPLB_FAMILY_IPV4 as u8;
                t.addr_be[0] = u32::from_ne_bytes(a.octets());
            }
            IpAddr::V6(a) => {
                t.family = UDPLB_FAMILY_IPV6 as u8;
                for (i, w) in a.octets().chunks(4).enumerate() {
                    t.addr_be[i] = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
                }
            }
        }
        t
    }

    /// The outer source a flow of hash `hash` gets (the datapath's
    /// tunnel_source, for the tests and the reference model).
    pub fn source_for(&self, hash: u32) -> IpAddr {
        let mask = self.hash_mask();
        match self.addr {
            IpAddr::V4(a) => Ipv4Addr::from((u32::from(a) & !mask) | (hash & mask)).into(),
            IpAddr::V6(a) => {
                let v = u128::from(a);
                let m = u128::from(mask);
                Ipv6Addr::from((v & !m) | (u128::from(hash) & m)).into()
            }
        }
    }
}

impl fmt::Display for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        match self.prefix == width {
            true => write!(f, "{}", self.addr),
            false => write!(f, "{}/{}", self.addr, self.prefix),
        }
    }
}

/// The tunnel sources of a frontend, at most one per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tunnels {
    pub v4: Option<Tunnel>,
    pub v6: Option<Tunnel>,
}

impl Tunnels {
    /// A list of `ADDRESS[/PREFIX]`, one per family at most.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Tunnels, UsageError> {
        let mut t = Tunnels::default();
        for s in list {
            let one = Tunnel::parse(s.as_ref())?;
            let slot = if one.addr.is_ipv4() {
                &mut t.v4
            } else {
                &mut t.v6
            };
            if let Some(before) = slot.replace(one) {
                return Err(usage!(
                    "tunnel sources {before} and {one}: one per family (IPv4, IPv6) at most"
                ));
            }
        }
        Ok(t)
    }

    /// The one for an outer header of the backend's family.
    pub fn for_backend(&self, backend: IpAddr) -> Option<Tunnel> {
        if backend.is_ipv4() {
            self.v4
        } else {
            self.v6
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// As written in the configuration: `198.18.0.1, 2001:2::/96`.
    pub fn code(&self) -> Vec<String> {
        self.v4
            .iter()
            .chain(self.v6.iter())
            .map(Tunnel::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for s in ["nat", "ipip", "gue:6080", "l2"] {
            assert_eq!(Mode::parse(s).unwrap().code(), s);
        }
        assert!(Mode::parse("gue").unwrap_err().0.contains("gue:PORT"));
        assert!(Mode::parse("gue:0").unwrap_err().0.contains("1 to 65535"));
        assert!(Mode::parse("dr")
            .unwrap_err()
            .0
            .contains("nat, ipip, gue:PORT or l2"));
        assert!(!Mode::Nat.is_dsr() && Mode::L2.is_dsr() && !Mode::L2.encapsulates());
        assert_eq!(Mode::Gue { port: 6080 }.gue_port_be(), 6080u16.to_be());
    }

    fn dsr(spec: &str, mode: &str, tunnels: &[&str]) -> Result<(), String> {
        let defaults = crate::config::Defaults {
            mode: Mode::parse(mode).unwrap(),
            tunnels: Tunnels::parse(tunnels).unwrap(),
            ..Default::default()
        };
        crate::config::Config::from_specs_with(&[spec], defaults)
            .map(drop)
            .map_err(|e| e.0)
    }

    #[test]
    fn dsr_frontends_and_their_backends() {
        let t = ["198.18.0.1", "2001:2::1"];
        assert_eq!(
            dsr("198.18.0.10:53=198.18.1.2:53,[2001:2::5]:53", "ipip", &t),
            Ok(())
        );
        assert_eq!(dsr("198.18.0.10:53=198.18.1.2:53", "l2", &[]), Ok(()));
        let e = dsr("53=198.18.1.2:53", "ipip", &t).unwrap_err();
        assert!(e.contains("needs the frontend's address"), "{e}");
        let e = dsr("198.18.0.10:53=5301", "gue:6080", &t).unwrap_err();
        assert!(e.contains("a port on this host"), "{e}");
        let e = dsr("198.18.0.10:53=198.18.1.2:53", "ipip", &["198.18.1.0/24"]).unwrap_err();
        assert!(e.contains("covers the frontend's or backend"), "{e}");
        let mixed = crate::config::Config::from_specs_with(
            &["198.18.0.10:6080=198.18.1.2:6080"],
            crate::config::Defaults::default(),
        )
        .unwrap();
        let mut fes = mixed.frontends;
        let defaults = crate::config::Defaults {
            mode: Mode::Gue { port: 6080 },
            tunnels: Tunnels::parse(&t).unwrap(),
            ..Default::default()
        };
        fes.push(crate::config::parse_frontend("198.18.0.11:53=198.18.1.2:53", defaults).unwrap());
        let e = crate::config::Config::new(fes).unwrap_err().0;
        assert!(e.contains("has that host decapsulate GUE"), "{e}");
        let e = dsr("198.18.0.10:6080=198.18.1.2:6080", "gue:6080", &t).unwrap_err();
        assert!(e.contains("GUE port must be another"), "{e}");
        let e = dsr("198.18.0.10:53=198.18.1.2:5353", "l2", &t).unwrap_err();
        assert!(e.contains("list it as 198.18.1.2:53"), "{e}");
        let e = dsr("198.18.0.10:53=[2001:2::5]:53", "ipip", &["198.18.0.1"]).unwrap_err();
        assert!(e.contains("needs an IPv6 tunnel source"), "{e}");
        // l2 does not encapsulate: the families must agree.
        let e = dsr("198.18.0.10:53=[2001:2::5]:53", "l2", &t).unwrap_err();
        assert!(e.contains("another address family"), "{e}");
    }

    #[test]
    fn tunnel_sources_carry_the_hash_in_their_host_bits() {
        let t = Tunnel::parse("198.18.0.1").unwrap();
        assert_eq!(
            t.source_for(0xdead_beef),
            "198.18.0.1".parse::<IpAddr>().unwrap()
        );
        let t = Tunnel::parse("198.18.0.0/16").unwrap();
        assert_eq!(
            t.source_for(0x1234_5678),
            "198.18.86.120".parse::<IpAddr>().unwrap()
        );
        let t = Tunnel::parse("2001:2::1:0:0/64").unwrap();
        assert_eq!(
            t.source_for(0x0102_0304),
            "2001:2::1:102:304".parse::<IpAddr>().unwrap()
        );
        assert_eq!(t.abi().hash_mask_be, u32::MAX.to_be());
        assert!(Tunnel::parse("2001:2::/129")
            .unwrap_err()
            .0
            .contains("0 to 128"));
        assert!(Tunnel::parse("198.0.0.0/7")
            .unwrap_err()
            .0
            .contains("8 to 32"));
        // A /64 varies in its last 32 bits only.
        let t64 = Tunnel::parse("2001:2::/64").unwrap();
        assert!(!t64.covers("2001:2::1:0:0".parse().unwrap()));
        assert!(t64.covers("2001:2::1".parse().unwrap()));
        let t = Tunnel::parse("198.18.0.0/24").unwrap();
        assert!(t.covers("198.18.0.77".parse().unwrap()));
        assert!(!t.covers("198.18.1.77".parse().unwrap()));
        assert!(Tunnel::parse("198.18.0.1")
            .unwrap()
            .covers("198.18.0.1".parse().unwrap()));
        assert!(Tunnel::parse("127.0.0.1").is_err());
        assert!(Tunnel::parse("0.0.0.0").is_err());
        let both = Tunnels::parse(&["198.18.0.1", "2001:2::1"]).unwrap();
        assert_eq!(both.code(), ["198.18.0.1", "2001:2::1"]);
        assert!(Tunnels::parse(&["198.18.0.1", "198.18.0.2"])
            .unwrap_err()
            .0
            .contains("one per family"));
    }
}
