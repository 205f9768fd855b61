//! Backends: `TARGET[#SERVER_ID][@WEIGHT]`, a port on this host or an
//! address and port on another.

use std::fmt;
use std::net::IpAddr;

use super::listen::{parse_listen, parse_port};
use super::quic::{ServerId, QUIC_MAX_SID};
use super::FrontendConfig;
use crate::abi::{Endpoint, UDPLB_MAX_WEIGHT};
use crate::error::UsageError;
use crate::usage;

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
    /// server ID and weight.
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

/// One backend: `PORT` on this host, or `IPv4:PORT` / `[IPv6]:PORT` on
/// another, with an optional `#SERVER_ID` and `@WEIGHT`.
pub fn parse_backend(s: &str, frontend: &str) -> Result<BackendConfig, UsageError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(usage!(
            "frontend {frontend}: empty entry in the backend list"
        ));
    }
    let (s_no_id, server_id) = split_server_id(s, frontend)?;
    let (target_text, weight_text) = match s_no_id.split_once('@') {
        Some((p, w)) => (p.trim(), Some(w.trim())),
        None => (s_no_id.as_str(), None),
    };
    let (addr, port) = target(target_text, s, frontend)?;
    let weight = match weight_text {
        None => 1,
        Some(w) => weight(w, s, frontend)?,
    };
    Ok(BackendConfig {
        addr,
        port,
        weight,
        server_id,
    })
}

/// `TARGET[#SERVER_ID][@WEIGHT]` (`s`) without its server ID, and the ID;
/// `#` after the weight is accepted too.
fn split_server_id(s: &str, frontend: &str) -> Result<(String, Option<ServerId>), UsageError> {
    let Some((head, tail)) = s.split_once('#') else {
        return Ok((s.to_string(), None));
    };
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
    Ok((format!("{}{rest}", head.trim()), Some(id)))
}

/// TARGET: a local `PORT` (no address), or `IPv4:PORT` / `[IPv6]:PORT` of
/// a host. `s` is the whole backend, as errors quote it.
fn target(text: &str, s: &str, frontend: &str) -> Result<(Option<IpAddr>, u16), UsageError> {
    if text.contains(':') || text.contains('[') {
        let remote = parse_listen(text).map_err(|e| {
            usage!(
                "frontend {frontend}: backend '{s}': {}",
                e.0.replace("frontend", "backend")
            )
        })?;
        let addr = remote.addr.filter(|a| !a.is_unspecified()).ok_or_else(|| {
            usage!("frontend {frontend}: backend '{s}' needs a host address, not a wildcard")
        })?;
        Ok((Some(addr), remote.port))
    } else if text.parse::<IpAddr>().is_ok() {
        Err(usage!(
            "frontend {frontend}: backend '{s}' needs a port: ADDRESS:PORT"
        ))
    } else {
        Ok((
            None,
            parse_port(text, &format!("frontend {frontend}: backend"))?,
        ))
    }
}

/// `@WEIGHT`: digits only, 0 to UDPLB_MAX_WEIGHT.
fn weight(w: &str, s: &str, frontend: &str) -> Result<u32, UsageError> {
    let digits = !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
    match w.parse::<u32>() {
        Ok(w) if digits && w <= UDPLB_MAX_WEIGHT => Ok(w),
        _ => Err(usage!(
            "frontend {frontend}: backend '{s}': weight must be 0-{UDPLB_MAX_WEIGHT}"
        )),
    }
}

/// A remote backend is one other host the datapath forwards to. A group
/// (multicast, broadcast), this host (loopback), no host (unspecified) or an
/// IPv4-mapped IPv6 address cannot be one.
pub(super) fn check_remote_backend_addr(addr: IpAddr) -> Result<(), &'static str> {
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

/// The backends' weights, in order.
pub fn weights(fe: &FrontendConfig) -> Vec<u32> {
    fe.backends.iter().map(|b| b.weight).collect()
}

#[cfg(test)]
mod tests {
    use crate::config::refused as err;
    use crate::config::Config;

    #[test]
    fn spaces_around_backends_are_accepted() {
        let c = Config::from_specs(&["9875= 9876, 9877"]).unwrap();
        let ports: Vec<u16> = c.frontends[0].backends.iter().map(|b| b.port).collect();
        assert_eq!(ports, vec![9876, 9877]);
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
}
