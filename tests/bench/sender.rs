//! The end-to-end sender: prebuilt Ethernet frames written straight to the
//! client's veth through an AF_PACKET socket, `BATCH` per `sendmmsg` call.
//!
//! Why raw frames: on a veth the whole receive path (veth, XDP, netfilter,
//! IP, UDP, the socket queue) runs on the sender's CPU inside its system
//! calls, so every nanosecond the sender spends on its own is a nanosecond
//! the balancer is not measured in. A UDP socket sender (one connected
//! socket per flow, sendmmsg) spent about half of that CPU in its own send
//! path; frames skip the client's UDP/IP output and route lookup, so the
//! receive path, where the balancers differ, takes most of the CPU.
//!
//! Flows: `FLOWS` frames, one source port each (nftables and nginx see that
//! many flows), with valid checksums, all framed for the balancer's veth.
//! Flow i goes to the i-th destination modulo their number (the direct and
//! plain-routing cases: three backends). A burst is `BATCH` consecutive
//! flows. The sender stops after `duration` or
//! `MAX_DATAGRAMS`, whichever comes first.

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::libc;

use super::cpu::{ksoftirqd_secs, thread_secs};
use super::netns::{Netns, Spawn};
use super::packets;

/// Client flows (source ports 10000..); a multiple of 3 so the direct case
/// spreads them evenly over the three backends.
pub const FLOWS: usize = 255;
const FIRST_SOURCE_PORT: u16 = 10000;
/// Datagrams per sendmmsg / recvmmsg call.
pub const BATCH: usize = 32;
/// Bound on one sender run, whatever its duration.
pub const MAX_DATAGRAMS: u64 = 100_000_000;

#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub datagrams: u64,
    pub secs: f64,
    /// sendmmsg calls that sent nothing (ENOBUFS, ...).
    pub failed_calls: u64,
    /// CPU time the sender's CPU spent on the sending loop: the thread's own
    /// (its system calls, with the receive path inline in them) plus that
    /// CPU's ksoftirqd (receive work deferred there). Unlike wall time, this
    /// does not grow when another process takes the CPU away.
    pub cpu_secs: f64,
}

/// Sends from `client`'s `dev` on `cpu`: flow i to `dsts[i % dsts.len()]`,
/// every frame addressed to the balancer's veth.
pub fn send(
    client: &Netns,
    dev: &'static str,
    cpu: usize,
    dsts: Vec<SocketAddrV4>,
    duration: Duration,
) -> JoinHandle<Result<Sent>> {
    client.spawn(cpu, move || {
        if dsts.is_empty() {
            bail!("no destination to send to");
        }
        let frames: Vec<Vec<u8>> = (0..FLOWS)
            .map(|i| {
                let d = dsts[i % dsts.len()];
                packets::udp4_to(d.ip().octets(), FIRST_SOURCE_PORT + i as u16, d.port())
            })
            .collect();
        let sock = packet_socket(dev)?;
        let mut iovs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // FLOWS + BATCH - 1 headers, header i for flow i % FLOWS: a burst
        // starting at any flow is one contiguous slice.
        let mut msgs: Vec<libc::mmsghdr> = (0..FLOWS + BATCH - 1)
            .map(|i| {
                // SAFETY: mmsghdr is plain data; all-zero is a valid empty one.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = &mut iovs[i % FLOWS];
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let (mut sent, mut failed_calls, mut next) = (0u64, 0u64, 0usize);
        let cpu_start = thread_secs() + ksoftirqd_secs(cpu);
        let start = Instant::now();
        while sent < MAX_DATAGRAMS && start.elapsed() < duration {
            // SAFETY: msgs[next..next + BATCH] is in bounds; the headers,
            // iovecs and frames they point at outlive the call, which only
            // reads them.
            let n = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr().add(next),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                sent += n as u64;
                next = (next + n as usize) % FLOWS;
            } else {
                failed_calls += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        Ok(Sent {
            datagrams: sent,
            secs,
            failed_calls,
            cpu_secs: thread_secs() + ksoftirqd_secs(cpu) - cpu_start,
        })
    })
}

/// An AF_PACKET socket that sends on `dev` (of the calling thread's
/// namespace) and receives nothing (protocol 0). PACKET_QDISC_BYPASS: frames
/// go straight to the driver, as the veth's noqueue would anyway.
fn packet_socket(dev: &str) -> Result<OwnedFd> {
    // SAFETY: plain system calls on integers and on structs that live
    // across each call.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
        }
        let sock = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("PACKET_QDISC_BYPASS");
        }
        let ifindex = nix::net::if_::if_nametoindex(dev).with_context(|| format!("no {dev}"))?;
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        let rc = libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        );
        if rc != 0 {
            bail!("binding to {dev}: {}", std::io::Error::last_os_error());
        }
        Ok(sock)
    }
}
