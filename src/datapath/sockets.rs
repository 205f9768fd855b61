//! What this host (the balancer's network namespace) has, for the warnings
//! at start and after each reload: the UDP sockets bound on it (from the sock_diag table that the
//! health checks' socket-table liveness also reads) and its own addresses.

use std::net::IpAddr;

pub use super::sock_diag::Bound;

/// Every UDP socket bound in this network namespace (none if the socket
/// table cannot be read: these are warnings, not worth failing a start).
pub fn bound_udp() -> Vec<Bound> {
    let table = super::sock_diag::SocketTable::open().and_then(|mut t| t.udp_sockets());
    table.map(|t| t.into_iter().collect()).unwrap_or_default()
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
