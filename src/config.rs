//! The balancer's configuration: the `FRONTEND=BACKENDS` grammar and every
//! validation rule. Pure logic, no kernel access.
//!
//!   FRONTEND  = PORT | IPv4:PORT | [IPv6]:PORT
//!   BACKENDS  = PORT[,PORT...]            (ports on this host)
//!
//! A port-only frontend listens on every local address of both families;
//! `0.0.0.0:PORT` and `[::]:PORT` are the wildcard of one family.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::abi::{Endpoint, MAX_BACKENDS, MAX_FRONTENDS};

/// An input the user has to fix. `main` prints it on one line and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

macro_rules! usage {
    ($($arg:tt)*) => { UsageError(format!($($arg)*)) };
}

/// Where a frontend listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendConfig {
    pub listen: Listen,
    /// Local ports, in the order given (round robin follows it).
    pub backends: Vec<u16>,
}

/// A configuration that passed every check in [`Config::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub frontends: Vec<FrontendConfig>,
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

/// One backend: a local port. Addresses are refused until remote backends exist.
fn parse_backend(s: &str, frontend: &str) -> Result<u16, UsageError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(usage!(
            "frontend {frontend}: empty entry in the backend list"
        ));
    }
    if s.contains(':') || s.contains('[') || s.parse::<IpAddr>().is_ok() {
        return Err(usage!(
            "frontend {frontend}: backend '{s}': backends on other hosts are not supported yet; \
             give local ports"
        ));
    }
    parse_port(s, &format!("frontend {frontend}: backend"))
}

/// `FRONTEND=BACKENDS`.
pub fn parse_frontend(spec: &str) -> Result<FrontendConfig, UsageError> {
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
    Ok(FrontendConfig { listen, backends })
}

impl Config {
    /// Checks everything the datapath relies on. See README "Limits".
    pub fn new(frontends: Vec<FrontendConfig>) -> Result<Config, UsageError> {
        if frontends.is_empty() {
            return Err(usage!("no frontends given"));
        }
        if frontends.len() > MAX_FRONTENDS {
            return Err(usage!(
                "{} frontends given; the limit is {MAX_FRONTENDS}",
                frontends.len()
            ));
        }
        let mut keys: HashMap<Endpoint, Listen> = HashMap::new();
        let mut frontend_ports: HashMap<u16, Listen> = HashMap::new();
        for fe in &frontends {
            for key in fe.listen.endpoints() {
                if let Some(other) = keys.insert(key, fe.listen) {
                    return Err(usage!("frontend {} duplicates frontend {other}", fe.listen));
                }
            }
            frontend_ports.insert(fe.listen.port, fe.listen);
        }
        let mut owner: HashMap<u16, Listen> = HashMap::new();
        for fe in &frontends {
            let n = fe.backends.len();
            if n > MAX_BACKENDS {
                return Err(usage!(
                    "frontend {}: {n} backends given; the limit is {MAX_BACKENDS}",
                    fe.listen
                ));
            }
            for &port in &fe.backends {
                if let Some(f) = frontend_ports.get(&port) {
                    return Err(usage!(
                        "frontend {}: backend {port} is also frontend {f}: datagrams would loop",
                        fe.listen
                    ));
                }
                match owner.insert(port, fe.listen) {
                    Some(prev) if prev == fe.listen => {
                        return Err(usage!(
                            "frontend {}: backend {port} is listed twice",
                            fe.listen
                        ));
                    }
                    Some(prev) => {
                        return Err(usage!(
                            "backend {port} serves both frontend {prev} and frontend {}: its \
                             replies could not be told apart",
                            fe.listen
                        ));
                    }
                    None => {}
                }
            }
        }
        Ok(Config { frontends })
    }

    /// Parses and checks a list of `FRONTEND=BACKENDS` arguments.
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<Config, UsageError> {
        let frontends = specs
            .iter()
            .map(|s| parse_frontend(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Config::new(frontends)
    }
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
        assert_eq!(c.frontends[0].backends, vec![9876, 9877, 9878]);
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
        assert_eq!(c.frontends[0].backends, vec![9876, 9877]);
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
    fn remote_backends_are_not_supported_yet() {
        for b in ["198.18.0.2:53", "[2001:2::2]:53", "198.18.0.2"] {
            assert!(
                err(&[&format!("9875={b}")]).contains("not supported yet"),
                "{b}"
            );
        }
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
}
