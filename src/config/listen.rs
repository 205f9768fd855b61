//! Where udplb listens: the interfaces it attaches to and each frontend's
//! address (`PORT`, `IPv4:PORT` or `[IPv6]:PORT`).

use std::fmt;
use std::net::IpAddr;

use crate::abi::Endpoint;
use crate::error::UsageError;
use crate::usage;

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

/// A port number, 1-65535; `what` names it in the error.
pub(super) fn parse_port(s: &str, what: &str) -> Result<u16, UsageError> {
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
pub(super) fn check_frontend_addr(addr: IpAddr) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::refused as err;

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
    fn bad_addresses() {
        assert!(err(&["1.2.3:53=9876"]).contains("not an IPv4 address"));
        assert!(err(&["300.1.1.1:53=9876"]).contains("not an IPv4 address"));
        assert!(err(&["[2001:2::zz]:53=9876"]).contains("not an IPv6 address"));
        assert!(err(&["[2001:2::1]53=9876"]).contains("[ADDRESS]:PORT"));
        assert!(err(&["2001:2::1:53=9876"]).contains("[ADDRESS]:PORT"));
        assert!(err(&[":53=9876"]).contains("not an IPv4 address"));
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
}
