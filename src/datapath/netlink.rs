//! One way to ask the kernel something over netlink: a socket opened once,
//! one request at a time, its answers read until the kernel says it is
//! done. The announced addresses (rtnetlink, addresses.rs) and the UDP
//! socket table (sock_diag, sock_diag.rs) both ask through it; the
//! messages are typed by the rust-netlink project's crates, the socket is
//! nix's. (Link events, links.rs, are a subscription, not a request.)
//!
//! The kernel handles a request within the send and the reads that follow
//! (a dump is produced as it is read): a request never waits for anything
//! outside the kernel, so asking from the event loop does not hold it.

use std::fmt::Debug;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_REQUEST,
};
use nix::errno::Errno;
use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};

/// Messages one answer may hold before udplb gives up on it: far more than
/// any table it asks for (addresses on one interface, UDP sockets).
const MAX_ANSWER_MESSAGES: usize = 1_000_000;

/// A netlink socket for requests, opened once and reused.
pub struct Requester {
    fd: OwnedFd,
    seq: u32,
}

impl Requester {
    /// A socket of `protocol` (NETLINK_ROUTE, NETLINK_SOCK_DIAG); `what`
    /// names its use in the error.
    pub fn open(protocol: SockProtocol, what: &str) -> Result<Requester> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            protocol,
        )
        .with_context(|| format!("opening a netlink socket for {what}"))?;
        Ok(Requester { fd, seq: 0 })
    }

    /// Sends `inner` with NLM_F_REQUEST and `flags` (NLM_F_DUMP, NLM_F_ACK,
    /// ...), then reads until the end of its dump (NLMSG_DONE) or its
    /// acknowledgement: the messages that came back. A refusal is the
    /// kernel's errno, for callers to match. Messages of earlier requests
    /// still queued (another sequence number) are skipped.
    pub fn request<I>(&mut self, inner: I, flags: u16) -> Result<Vec<I>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
        NetlinkPayload<I>: From<I>,
    {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, inner.into());
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        send(self.fd.as_raw_fd(), &buf, MsgFlags::empty()).context("sending a netlink request")?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("reading a netlink answer"),
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let m =
                    NetlinkMessage::<I>::deserialize(rest).context("parsing a netlink answer")?;
                let len = m.header.length as usize;
                if m.header.sequence_number == self.seq {
                    match m.payload {
                        NetlinkPayload::InnerMessage(i) => out.push(i),
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::Error(e) => match e.code {
                            None => return Ok(out),
                            Some(c) => return Err(Errno::from_raw(-c.get()).into()),
                        },
                        _ => {}
                    }
                }
                if len == 0 || len >= rest.len() {
                    break;
                }
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            }
            if out.len() > MAX_ANSWER_MESSAGES {
                bail!("netlink answer without end");
            }
        }
    }
}
