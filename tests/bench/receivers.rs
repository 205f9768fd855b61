//! The receivers: one thread, pinned to the CPU the sender does not use,
//! reading the backend sockets in turn with non-blocking `recvmmsg`.
//! A blocking receiver would make the sender's CPU pay for a wake-up per
//! burst and the figures swing by about 2× (as seen on the 6.18 hosts it was measured on); this
//! one never sleeps, and yields its CPU only when all its sockets are
//! empty, so that a proxy sharing that CPU (nginx) gets to run.

use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::libc;

use super::netns::{Netns, Spawn};
use super::sender::BATCH;

/// Receive buffer per backend socket (SO_RCVBUFFORCE: rmem_max cannot be
/// raised inside a namespace).
const RCVBUF: usize = 32 << 20;
/// A receiver thread gives up this long after its start even if nobody
/// stops it: a bound on every loop.
const RECEIVER_LIMIT: Duration = Duration::from_secs(60);

/// Receivers running on their own thread; [`Receivers::finish`] stops them.
pub struct Receivers {
    stop: Arc<AtomicBool>,
    counts: Arc<Vec<AtomicU64>>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl Receivers {
    /// Binds `addrs` in `ns` (0.0.0.0:port: every address of the
    /// namespace) and starts draining them on `cpu`. Returns once the
    /// sockets are bound.
    pub fn start(ns: &Netns, cpu: usize, addrs: &[SocketAddrV4]) -> Result<Receivers> {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<Vec<AtomicU64>> =
            Arc::new(addrs.iter().map(|_| AtomicU64::new(0)).collect());
        let (ready_tx, ready_rx) = mpsc::channel();
        let addrs = addrs.to_vec();
        let (stop2, counts2) = (stop.clone(), counts.clone());
        let handle = ns.spawn(cpu, move || {
            let socks = addrs
                .iter()
                .map(|&a| {
                    let s = UdpSocket::bind(a).with_context(|| format!("bind {a}"))?;
                    nix::sys::socket::setsockopt(
                        &s,
                        nix::sys::socket::sockopt::RcvBufForce,
                        &RCVBUF,
                    )
                    .context("SO_RCVBUFFORCE")?;
                    Ok(s)
                })
                .collect::<Result<Vec<_>>>();
            let socks = match socks {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return Err(e);
                }
            };
            drain(&socks, &stop2, &counts2);
            Ok(())
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("receivers: {e}"),
            Err(_) => bail!("receivers did not start"),
        }
        Ok(Receivers {
            stop,
            counts,
            handle: Some(handle),
        })
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Waits until nothing more arrives (what was sent during the run and is
    /// still queued is delivered, and counted), stops the thread and
    /// returns the count per socket.
    pub fn finish(mut self) -> Result<Vec<u64>> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = self.total();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.total();
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
        }
        Ok(self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect())
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The receive loop: non-blocking recvmmsg on each socket in turn.
fn drain(socks: &[UdpSocket], stop: &AtomicBool, counts: &[AtomicU64]) {
    // The payload is not looked at: every message lands in the same buffer.
    let mut buf = [0u8; 2048];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty one.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < RECEIVER_LIMIT {
        let mut idle = true;
        for (sock, count) in socks.iter().zip(counts) {
            // SAFETY: msgs, iov and buf outlive the call; the kernel writes
            // at most iov_len bytes into buf and fills in the headers.
            let n = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n > 0 {
                count.fetch_add(n as u64, Ordering::Relaxed);
                idle = false;
            }
        }
        if idle {
            let _ = nix::sched::sched_yield();
        }
    }
}
