//! What this host (the balancer's network namespace) has: the UDP sockets
//! bound on it, from /proc/net/udp and /proc/net/udp6, and its own
//! addresses. For start-up warnings; the health checks' socket-table
//! liveness builds on the same table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A bound UDP socket's local address and port.
pub type Bound = (IpAddr, u16);

/// Parses the text of /proc/net/udp (`ipv6` false) or /proc/net/udp6.
/// Addresses there are the kernel's 32-bit words printed in host order.
pub fn parse_proc_net_udp(text: &str, ipv6: bool) -> Vec<Bound> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let local = line.split_whitespace().nth(1)?;
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let words: Vec<u32> = (0..addr.len() / 8)
                .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16))
                .collect::<Result<_, _>>()
                .ok()?;
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let ip = match (ipv6, bytes.len()) {
                (false, 4) => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
                (true, 16) => {
                    IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?))
                }
                _ => return None,
            };
            Some((ip, port))
        })
        .collect()
}

/// Every UDP socket bound in this network namespace (none if /proc cannot
/// be read).
pub fn bound_udp() -> Vec<Bound> {
    [("/proc/net/udp", false), ("/proc/net/udp6", true)]
        .iter()
        .flat_map(|(path, v6)| {
            std::fs::read_to_string(path)
                .map(|t| parse_proc_net_udp(&t, *v6))
                .unwrap_or_default()
        })
        .collect()
}

/// This host's own addresses, on every interface.
pub fn own_addresses() -> Vec<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| {
                    let sa = a.address?;
                    if let Some(v4) = sa.as_sockaddr_in() {
                        return Some(IpAddr::V4(v4.ip()));
                    }
                    sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_lines() {
        let v4 = "  sl  local_address rem_address   st\n\
                  \x20 1: 0100007F:2694 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1\n\
                  \x20 2: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2\n";
        assert_eq!(
            parse_proc_net_udp(v4, false),
            vec![
                (IpAddr::V4(Ipv4Addr::LOCALHOST), 9876),
                (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 53)
            ]
        );
        let v6 = "  sl  local_address                         remote_address\n\
                  \x20 0: 00000000000000000000000001000000:2693 00000000000000000000000000000000:0000 07\n";
        assert_eq!(
            parse_proc_net_udp(v6, true),
            vec![(IpAddr::V6(Ipv6Addr::LOCALHOST), 9875)]
        );
        assert!(parse_proc_net_udp("header\ngarbage line\n", false).is_empty());
    }
}
