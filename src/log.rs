//! Output that can never stop or hold the balancer.
//!
//! Stop: `println!` panics when stdout is a closed pipe (`udplb --stats 1
//! ... | head -3`, a log reader that went away); these write what they can
//! and ignore the rest.
//!
//! Hold: a write to a pipe nobody reads (`udplb --stats 1 ... | sleep 40`, a
//! stuck log shipper) blocks once the pipe is full, and the signals the
//! daemon handles are blocked for its signalfd, so not even SIGTERM would
//! end that wait. Once the daemon runs ([`detach`]), lines go into a
//! bounded queue that one writer thread empties: the thread may wait on the
//! reader, the event loop never does. A full queue drops lines and counts
//! them; the writer says how many it dropped as soon as it can write again.
//! At exit [`finish`] gives the queue a bounded time to drain.
//!
//! Before [`detach`] (and for the short-lived `udplb status`, `reload`,
//! `--unpin`) lines are written directly, as any command-line tool does.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

/// Lines (or blocks, such as the final report) the queue holds before it
/// drops: minutes of `--stats 1` output, a few KB to a few MB.
pub const QUEUE_LINES: usize = 1024;

#[derive(Clone, Copy)]
enum To {
    Out,
    Err,
}

enum Item {
    Line(To, String),
    /// Answered once everything queued before it is written.
    Flush(SyncSender<()>),
}

struct Queue {
    tx: SyncSender<Item>,
    dropped: AtomicU64,
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

fn write_direct(to: To, text: &str) {
    let _ = match to {
        To::Out => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes()).and_then(|()| o.flush())
        }
        To::Err => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}

fn writer(rx: Receiver<Item>) {
    let queue = QUEUE.get().expect("queue set before the writer starts");
    for item in rx {
        let dropped = queue.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note = format!("udplb: {dropped} lines of output dropped: it was not read\n");
            write_direct(To::Err, &note);
        }
        match item {
            Item::Line(to, text) => write_direct(to, &text),
            Item::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// From now on, lines go through the queue and its writer thread.
pub fn detach() {
    let (tx, rx) = sync_channel(QUEUE_LINES);
    if QUEUE
        .set(Queue {
            tx,
            dropped: AtomicU64::new(0),
        })
        .is_err()
    {
        return; // detached already
    }
    // Without a thread, the queue fills and drops: output lost, the
    // balancer unharmed.
    let _ = std::thread::Builder::new()
        .name("udplb-log".into())
        .spawn(move || writer(rx));
}

/// Waits at most `within` for the queued lines to be written. Returns
/// whether they were (always true before [`detach`]).
pub fn finish(within: Duration) -> bool {
    let Some(q) = QUEUE.get() else { return true };
    let (done_tx, done_rx) = sync_channel(1);
    let deadline = std::time::Instant::now() + within;
    // The queue may be full: try until the deadline rather than block.
    let mut item = Item::Flush(done_tx);
    loop {
        match q.tx.try_send(item) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) => {
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                item = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    done_rx.recv_timeout(left).is_ok()
}

fn emit(to: To, args: fmt::Arguments<'_>) {
    let mut text = args.to_string();
    text.push('\n');
    match QUEUE.get() {
        None => write_direct(to, &text),
        Some(q) => {
            if q.tx.try_send(Item::Line(to, text)).is_err() {
                q.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One line (or block) on stdout; never blocks once the daemon runs.
pub fn out(args: fmt::Arguments<'_>) {
    emit(To::Out, args)
}

/// One line on stderr; never blocks once the daemon runs.
pub fn err(args: fmt::Arguments<'_>) {
    emit(To::Err, args)
}

/// `say!("...")`: a line on stdout that cannot panic nor hold the daemon.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::log::out(format_args!($($arg)*)) };
}

/// `warn!("...")`: a line on stderr that cannot panic nor hold the daemon.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::err(format_args!($($arg)*)) };
}
