//! The UDP socket table of udplb's network namespace, from the kernel's
//! sock_diag netlink interface (inet_diag, as `ss -uan` reads it): one dump
//! per family gives every bound UDP socket's local address and port. The
//! health checks' socket-table liveness of local backends polls it (every
//! 100 ms), and the start-up warnings about frontends' ports read it, rather
//! than /proc/net/udp{,6}: the dump is binary (no text to format and parse),
//! and the request and messages are typed by the rust-netlink project's
//! `netlink-packet-sock-diag`, on the same netlink-packet-core as the link
//! events. The socket is nix's, as for link events.
//!
//! The dump runs inside the kernel while we read it: it never waits for
//! anything outside, so reading it on the event loop does not block.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use nix::errno::Errno;
use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};

/// A bound UDP socket's local address and port.
pub type Bound = (std::net::IpAddr, u16);

/// A NETLINK_SOCK_DIAG socket, opened once and reused for every dump.
pub struct SocketTable {
    fd: OwnedFd,
    seq: u32,
}

impl SocketTable {
    pub fn open() -> Result<SocketTable> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )
        .context("opening a sock_diag netlink socket")?;
        Ok(SocketTable { fd, seq: 0 })
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
        let mut ports = BTreeSet::new();
        for (family, id) in [
            (AF_INET, SocketId::new_v4()),
            (AF_INET6, SocketId::new_v6()),
        ] {
            self.seq = self.seq.wrapping_add(1);
            self.dump(family, id, &mut ports)
                .with_context(|| format!("reading the UDP socket table (family {family})"))?;
        }
        Ok(ports)
    }

    fn dump(&mut self, family: u8, socket_id: SocketId, found: &mut BTreeSet<Bound>) -> Result<()> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_UDP,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id,
            })
            .into(),
        );
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        send(self.fd.as_raw_fd(), &buf, MsgFlags::empty()).context("sending the dump request")?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("reading the dump"),
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let m = NetlinkMessage::<SockDiagMessage>::deserialize(rest)
                    .context("parsing a sock_diag message")?;
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    match m.payload {
                        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                            let id = &r.header.socket_id;
                            found.insert((id.source_address, id.source_port));
                        }
                        NetlinkPayload::Done(_) => return Ok(()),
                        NetlinkPayload::Error(e) => bail!("the kernel refused the dump: {e:?}"),
                        _ => {}
                    }
                }
                if len == 0 || len >= rest.len() {
                    break;
                }
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            }
        }
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
