//! The UDP socket table of udplb's network namespace, from the kernel's
//! sock_diag netlink interface (inet_diag, as `ss -uan` reads it): one dump
//! per family gives every bound UDP socket's local address and port. The
//! health checks' socket-table liveness of local backends polls it (every
//! 100 ms), and the warnings about frontend and local backend ports (at start and
//! after each reload) read it, rather
//! than /proc/net/udp{,6}: the dump is binary (no text to format and parse),
//! and the request and messages are typed by the rust-netlink project's
//! `netlink-packet-sock-diag`, asked through [`Requester`](super::netlink::Requester)
//! as the announced addresses are.
//!
//! The dump runs inside the kernel while we read it: it never waits for
//! anything outside, so reading it on the event loop does not block.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use nix::sys::socket::SockProtocol;

use super::netlink::Requester;

/// A bound UDP socket's local address and port.
pub type Bound = (std::net::IpAddr, u16);

/// A NETLINK_SOCK_DIAG socket, opened once and reused for every dump.
pub struct SocketTable {
    nl: Requester,
}

impl SocketTable {
    pub fn open() -> Result<SocketTable> {
        let nl = Requester::open(SockProtocol::NetlinkSockDiag, "the UDP socket table")?;
        Ok(SocketTable { nl })
    }

    /// The local ports of every UDP socket (IPv4 and IPv6) bound now.
    pub fn udp_ports(&mut self) -> Result<BTreeSet<u16>> {
        Ok(self
            .udp_sockets()?
            .into_iter()
            .map(|(_, port)| port)
            .collect())
    }

    /// The local address and port of every UDP socket (IPv4 and IPv6)
    /// bound now.
    pub fn udp_sockets(&mut self) -> Result<BTreeSet<Bound>> {
        let mut found = BTreeSet::new();
        for (family, socket_id) in [
            (AF_INET, SocketId::new_v4()),
            (AF_INET6, SocketId::new_v6()),
        ] {
            let request = SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_UDP,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id,
            });
            let answers = (self.nl.request(request, NLM_F_DUMP))
                .with_context(|| format!("reading the UDP socket table (family {family})"))?;
            for m in answers {
                if let SockDiagMessage::InetResponse(r) = m {
                    let id = &r.header.socket_id;
                    found.insert((id.source_address, id.source_port));
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_is_in_the_table_and_a_closed_one_is_not() {
        let mut t = SocketTable::open().unwrap();
        let s4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let (p4, p6) = (
            s4.local_addr().unwrap().port(),
            s6.local_addr().unwrap().port(),
        );
        let ports = t.udp_ports().unwrap();
        assert!(ports.contains(&p4) && ports.contains(&p6), "{ports:?}");
        let sockets = t.udp_sockets().unwrap();
        assert!(
            sockets.contains(&(s4.local_addr().unwrap().ip(), p4)),
            "{sockets:?}"
        );
        assert!(
            sockets.contains(&(s6.local_addr().unwrap().ip(), p6)),
            "{sockets:?}"
        );
        drop(s4);
        assert!(!t.udp_ports().unwrap().contains(&p4));
    }
}
