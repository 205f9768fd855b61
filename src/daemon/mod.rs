//! The running balancer: one event loop ([`event_loop`]) that owns the
//! [`Balancer`](balancer::Balancer) (datapath, tables, attachments) and
//! wakes for signals and timers — and, as they come, for health probes,
//! the metrics listener and the control socket, each a descriptor or a timer
//! registered with the loop.

pub mod balancer;
pub mod event_loop;
pub mod log;
pub mod reload;
pub mod report;
pub mod warnings;

use std::time::Duration;

use anyhow::Result;

use crate::cli::Args;
use crate::datapath::{links, pin, privileges};
use crate::{say, warn};
use balancer::Balancer;
use event_loop::{Event, EventLoop};

/// What the loop's timers and descriptors stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `--stats SECS`: print the counters.
    Stats,
    /// A reload's grace period for removed backends' replies is over.
    ExpireReplies,
    /// The netlink socket of link events is readable.
    Links,
}

/// How long the reply entries of a removed backend stay after a reload, so
/// that replies already sent (or sent while the backend winds down) still
/// come from the frontend. Longer than any round trip worth waiting for;
/// short enough that a port reused by something else soon stops being
/// translated.
pub const REPLY_GRACE: Duration = Duration::from_secs(3);

/// Runs the balancer until SIGINT or SIGTERM.
pub fn run(args: &Args) -> Result<()> {
    // First: from here on a SIGTERM or SIGINT waits in the signalfd, so one
    // that arrives while the datapath is loading still ends in a clean stop.
    let mut events = EventLoop::new()?;
    // Subscribed before attaching: an interface deleted in between is
    // still noticed.
    events.watch(links::link_events()?, Token::Links);
    let mut lb = Balancer::start(args)?;
    if let Some(secs) = args.stats {
        events.every(Token::Stats, Duration::from_secs(secs));
    }
    loop {
        match events.wait()? {
            Event::Stop(_) => break,
            Event::Reload => {
                if lb.reload() {
                    events.after(Token::ExpireReplies, REPLY_GRACE);
                }
            }
            Event::Timer(Token::ExpireReplies) => lb.expire_replies(),
            Event::Timer(Token::Stats) => lb.print_counters(),
            Event::Readable(Token::Links) => {
                let read = events.fd(Token::Links).map(links::read_link_events);
                match read {
                    Some(Ok(changes)) => lb.link_events(changes),
                    Some(Err(e)) => warn!("udplb: {e:#}"),
                    None => {}
                }
            }
            Event::Readable(_) | Event::Timer(Token::Links) => {}
        }
    }
    lb.stop()
}

/// `udplb --unpin IFACE`.
pub fn unpin(iface: &str) -> Result<()> {
    privileges::check_self(privileges::Task::Unpin)?;
    let removed = pin::unpin(iface)?;
    say!(
        "udplb: unpinned {iface} ({}); its programs are detached",
        removed.join(", ")
    );
    Ok(())
}
