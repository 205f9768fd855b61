//! Link notifications: a NETLINK_ROUTE socket subscribed to RTMGRP_LINK,
//! for the daemon's event loop, and the events read from it. udplb uses
//! them to notice that an interface it is attached to went away, and to
//! attach again when an interface of that name comes back.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// The rtnetlink multicast group of link changes (RTMGRP_LINK).
const RTMGRP_LINK: u32 = 1;

/// A change the kernel announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: an interface appeared or changed.
    New { name: String, ifindex: u32 },
    /// RTM_DELLINK: an interface was removed.
    Gone { name: String, ifindex: u32 },
    /// The socket overflowed (ENOBUFS): events were lost, so whoever
    /// reads them should look again at the interfaces it cares about.
    Lost,
}

/// A non-blocking socket that receives every link change in this network
/// namespace; register it with the event loop.
pub fn link_events() -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkRoute,
    )
    .context("opening a netlink socket for link events")?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_LINK))
        .context("subscribing to link events")?;
    Ok(fd)
}

/// Every event waiting on `fd`, oldest first.
pub fn read_link_events(fd: BorrowedFd<'_>) -> Result<Vec<LinkEvent>> {
    let mut events = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => parse(&buf[..n], &mut events),
            Err(Errno::EAGAIN) => return Ok(events),
            Err(Errno::EINTR) => {}
            Err(Errno::ENOBUFS) => events.push(LinkEvent::Lost),
            Err(e) => return Err(e).context("reading link events"),
        }
    }
}

/// The link messages of one datagram (it may hold several). A message that
/// does not parse ends the datagram (its length cannot be trusted to find
/// the next): the events after it are lost, as on a buffer overrun, and
/// the periodic look at every interface (LinkEvent::Lost) is not asked
/// for; an event we cannot read is one we ignore.
fn parse(mut datagram: &[u8], events: &mut Vec<LinkEvent>) {
    while !datagram.is_empty() {
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(datagram) else {
            return;
        };
        let len = (msg.header.length as usize).next_multiple_of(4);
        let link = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => Some((l, true)),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => Some((l, false)),
            _ => None,
        };
        if let Some((link, new)) = link {
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            if let Some(name) = name {
                let ifindex = link.header.index;
                events.push(match new {
                    true => LinkEvent::New { name, ifindex },
                    false => LinkEvent::Gone { name, ifindex },
                });
            }
        }
        if len == 0 || len >= datagram.len() {
            return;
        }
        datagram = &datagram[len..];
    }
}
