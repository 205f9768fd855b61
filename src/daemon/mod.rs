//! The running balancer: one event loop ([`event_loop`]) that owns the
//! [`Balancer`](balancer::Balancer) (datapath, tables, attachments) and
//! wakes for signals, timers, and the clients of its two listeners
//! ([`server`]): the metrics endpoint and the control socket. Health probes
//! and netlink events plug in the same way: timers, the link-event socket
//! registered with the loop, and the probes' sockets handed to each wait
//! as the server's are. With `--announce`, [`announce`] keeps the
//! frontend addresses on the announce interface while this balancer can
//! serve them, and withdraws them before the datapath goes.

pub mod announce;
pub mod attachments;
pub mod balancer;
pub mod control;
pub mod event_loop;
pub mod health;
pub mod history;
pub mod metrics;
pub mod notify;
pub mod page;
pub mod reload;
pub mod report;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod warnings;

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::config::settings::Settings;
use crate::datapath::{links, pin, privileges};
use crate::{say, warn};
use balancer::Balancer;
use control::Answer;
use event_loop::{Event, EventLoop};
use server::{Kind, Server, Source};

/// What the loop's timers and descriptors stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `--stats SECS`: print the counters.
    Stats,
    /// Every second: a counter sample for rates; drop stalled clients.
    Tick,
    /// A listener or a client of the server.
    Server(Source),
    /// A reload's grace period for removed backends' replies is over.
    ExpireReplies,
    /// The netlink socket of link events is readable.
    Links,
    /// Every 100 ms: the socket table (local backends' liveness).
    Sockets,
    /// A health probe is due, or one times out.
    Probes,
    /// Health probe `.0`'s socket is ready.
    Probe(u64),
    /// Read the datapath's passive signals into the health state.
    Passive,
    /// Renew the lease of the announced addresses.
    Announce,
    /// Stopping: the routers have had the grace to move traffic away.
    Grace,
    /// Resolve the next hops DSR requests found unresolved.
    Neighbours,
}

/// How often the socket table is read: a local backend whose socket went
/// is down within this (plus the time of one dump).
pub const SOCKET_POLL: Duration = Duration::from_millis(100);

/// How often the next hops that DSR requests found unresolved are handed
/// to the kernel: the requests to a next hop nobody talked to yet are
/// dropped for about this long plus the neighbour's answer.
pub const NEIGHBOUR_POLL: Duration = Duration::from_millis(100);

/// How long the reply entries of a removed backend stay after a reload, so
/// that replies already sent (or sent while the backend winds down) still
/// come from the frontend. Longer than any round trip worth waiting for;
/// short enough that a port reused by something else soon stops being
/// translated.
pub const REPLY_GRACE: Duration = Duration::from_secs(3);

/// Runs the balancer until SIGINT or SIGTERM.
pub fn run(settings: Settings) -> Result<()> {
    // First: from here on a SIGTERM or SIGINT waits in the signalfd, so one
    // that arrives while the datapath is loading still ends in a clean stop.
    let mut events = EventLoop::new()?;
    // After the signals are blocked, so that the writer thread inherits
    // the mask: from here on no output can hold the loop.
    crate::log::detach();
    raise_open_file_limit();
    let mut daemon = Daemon::start(&mut events, settings)?;
    // A failure of the loop itself still withdraws the announcements
    // before the datapath goes.
    let outcome = daemon.serve(&mut events);
    daemon.stop(&mut events, outcome)
}

/// What the loop owns besides the loop itself.
struct Daemon {
    lb: Balancer,
    server: Server,
    /// The status page's graphs, kept only while there is a listener to
    /// show them.
    history: Option<history::History>,
    announcer: Option<announce::Announcer>,
    /// The probe timer: one pending at a time, at the prober's next
    /// deadline (a later one may still fire; it finds nothing due).
    armed: Option<Instant>,
    /// `--pin`: at the stop the programs stay, so there is no grace to wait.
    pin: bool,
}

impl Daemon {
    /// The listeners, the announcer and the balancer, in the order that
    /// leaves nothing behind when one of them fails; then the timers.
    fn start(events: &mut EventLoop<Token>, settings: Settings) -> Result<Daemon> {
        let run = settings.run;
        let ifaces = balancer::preflight(&settings)?;
        // A control socket that answers belongs to a udplb running on these
        // interfaces (see below).
        let control = control::socket_path(&settings.iface);
        let taken = control::answers(&control);
        // Before attaching: addresses a killed udplb left are removed, and an
        // announce interface that does not exist is an error that leaves
        // nothing behind. Not while a udplb runs here without --force: this
        // start will fail, and the addresses are that udplb's. With --force
        // they are removed as before: the replaced udplb withdraws only what
        // nobody wrote since, so it must not find its own stamps on them.
        let announcer = announce::Announcer::open(&settings.announce, !taken || run.force)?;
        // Subscribed before attaching: an interface deleted in between is
        // still noticed.
        events.watch(links::link_events()?, Token::Links);
        // The listeners before anything is attached: a port already taken is
        // an error that leaves nothing behind.
        let mut server = Server::default();
        if let Some(addr) = settings.metrics {
            server.listen_metrics(addr)?;
            say!("udplb: metrics on http://{addr}/metrics, status page on http://{addr}/");
        }
        let history = settings.metrics.map(|_| history::History::default());
        // The control socket before attaching, so that it answers as soon as
        // udplb says it is attached (and READY=1 follows). One that answers
        // belongs to a running udplb on these interfaces: only --force takes it
        // over; without, the attach below fails anyway and leaves it alone.
        if !taken || run.force {
            server.listen_control(&control)?;
        }
        let mut lb = Balancer::start(settings, ifaces)?;
        if taken && !run.force {
            server.listen_control(&control)?;
        }
        notify::ready(&lb.summary());
        if let Some(every) = run.stats {
            events.every(Token::Stats, every);
        }
        events.every(Token::Tick, Duration::from_secs(1));
        events.every(Token::Sockets, SOCKET_POLL);
        events.every(Token::Neighbours, NEIGHBOUR_POLL);
        events.every(Token::Passive, health::driver::PASSIVE_INTERVAL);
        if announcer.is_some() {
            let every = announce::Announcer::refresh_every(lb.announce());
            events.every(Token::Announce, every);
        }
        lb.sample();
        Ok(Daemon {
            lb,
            server,
            history,
            announcer,
            armed: None,
            pin: run.pin,
        })
    }

    /// The loop, until a signal stops it (Ok(false)) or another udplb
    /// replaced this one (Ok(true)).
    fn serve(&mut self, events: &mut EventLoop<Token>) -> Result<bool> {
        loop {
            // Before anything is announced or renewed: a udplb replaced by
            // another (--force) stops, or it would go on renewing addresses,
            // and adding again those the new one removed when it started.
            if let Some(name) = self.lb.replaced_on() {
                warn!(
                    "udplb: {name}: udplb's XDP program was detached from it \
                     (another udplb --force replaced this one); stopping"
                );
                return Ok(true);
            }
            // After every event: whatever it changed (health, a reload, an
            // interface) may change what is announced.
            if let Some(a) = self.announcer.as_mut() {
                a.sync(
                    self.lb.announce(),
                    &self.lb.serving(),
                    self.lb.attached_everywhere(),
                );
            }
            self.arm_probes(events);
            match self.wait(events)? {
                Event::Stop(_) => return Ok(false),
                event => self.handle(events, event),
            }
        }
    }

    /// Sets the probe timer to the prober's next deadline, if that is
    /// earlier than the one pending.
    fn arm_probes(&mut self, events: &mut EventLoop<Token>) {
        if let Some(due) = self.lb.probe_deadline() {
            if self.armed.is_none_or(|a| due < a) {
                events.after(Token::Probes, due.saturating_duration_since(Instant::now()));
                self.armed = Some(due);
            }
        }
    }

    /// The next event, watching the server's and the probes' sockets too.
    fn wait(&self, events: &mut EventLoop<Token>) -> Result<Event<Token>> {
        let server =
            (self.server.sources().into_iter()).map(|(fd, s, flags)| (fd, Token::Server(s), flags));
        let probes = (self.lb.probe_sources().into_iter())
            .map(|(fd, id, flags)| (fd, Token::Probe(id), flags));
        let sources: Vec<_> = server.chain(probes).collect();
        events.wait_with(&sources)
    }

    fn handle(&mut self, events: &mut EventLoop<Token>, event: Event<Token>) {
        let lb = &mut self.lb;
        match event {
            Event::Stop(_) => {}
            Event::Reload => {
                if lb.reload().1 {
                    events.after(Token::ExpireReplies, REPLY_GRACE);
                }
            }
            Event::Timer(Token::ExpireReplies) => lb.expire_replies(),
            Event::Readable(Token::Links) => {
                let read = events.fd(Token::Links).map(links::read_link_events);
                match read {
                    Some(Ok(changes)) => lb.link_events(changes),
                    Some(Err(e)) => warn!("udplb: {e:#}"),
                    None => {}
                }
            }
            Event::Timer(Token::Stats) => lb.print_counters(),
            Event::Timer(Token::Passive) => lb.passive_tick(),
            Event::Timer(Token::Neighbours) => lb.resolve_neighbours(),
            Event::Timer(Token::Announce) => {
                // Renewed only by a udplb still attached (see serve).
                if let (Some(a), None) = (self.announcer.as_mut(), lb.replaced_on()) {
                    a.refresh(lb.announce());
                }
            }
            Event::Timer(Token::Sockets) => {
                if lb.wants_socket_table() {
                    lb.poll_sockets();
                }
            }
            Event::Timer(Token::Probes) => {
                if self.armed.is_some_and(|a| a <= Instant::now()) {
                    self.armed = None;
                }
                lb.run_probes();
            }
            Event::Readable(Token::Probe(id)) => lb.probe_ready(id),
            Event::Timer(Token::Tick) => {
                lb.sample();
                self.server.expire();
                if let Some(h) = self.history.as_mut() {
                    if h.due() {
                        if let Ok(s) = lb.status_without_flows() {
                            h.record(Instant::now(), &s);
                        }
                    }
                }
            }
            Event::Readable(Token::Server(source)) => {
                let (history, mut grace) = (self.history.as_ref(), false);
                self.server.ready(source, |kind, request| {
                    answer(lb, history, kind, request, &mut grace)
                });
                if grace {
                    events.after(Token::ExpireReplies, REPLY_GRACE);
                }
            }
            Event::Timer(_) | Event::Readable(_) => {}
        }
    }

    /// Withdraws the announcements (waiting the grace where that keeps
    /// clients served), then detaches. `outcome` is the loop's.
    fn stop(mut self, events: &mut EventLoop<Token>, outcome: Result<bool>) -> Result<()> {
        notify::stopping();
        drop(self.server);
        let mut waited = Ok(());
        if let Some(a) = self.announcer.as_mut() {
            if matches!(outcome, Ok(true)) {
                // No grace: nothing of this udplb's forwards any more.
                a.withdraw_replaced();
            } else if a.withdraw_all() && !self.pin && outcome.is_ok() {
                waited = grace(events, self.lb.announce().grace);
            }
        }
        let stopped = self.lb.stop();
        outcome.map(|_| ()).and(waited).and(stopped)
    }
}

/// Raises the soft limit on open files to the hard one, as Go's runtime
/// and systemd's own services do: a round of probes takes one descriptor a
/// backend (thousands), besides the listeners' clients, and systemd's
/// default soft limit (1024) would leave idle clients able to starve the
/// probes of descriptors. Failing to raise it is not fatal.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Withdrawn, still attached: waits `grace` for the routers to move the
/// traffic to other balancers before the datapath goes. A second SIGINT or
/// SIGTERM cuts it short.
fn grace(events: &mut EventLoop<Token>, grace: Duration) -> Result<()> {
    if grace.is_zero() {
        return Ok(());
    }
    say!("udplb: detaching in {grace:?}, once routers have moved the traffic away");
    events.after(Token::Grace, grace);
    loop {
        match events.wait()? {
            Event::Stop(_) | Event::Timer(Token::Grace) => return Ok(()),
            Event::Readable(Token::Links) => {
                // Drained, or the loop would wake for them at once again.
                let _ = events.fd(Token::Links).map(links::read_link_events);
            }
            _ => {}
        }
    }
}

/// The answer to one request from the metrics endpoint or the control
/// socket.
fn answer(
    lb: &mut Balancer,
    history: Option<&history::History>,
    kind: Kind,
    request: &str,
    grace: &mut bool,
) -> Vec<u8> {
    match kind {
        Kind::Metrics => http(lb, history, request),
        Kind::Control => match request.trim() {
            "status" => match lb.status() {
                Ok(s) => Answer::status(s),
                Err(e) => Answer {
                    refused: false,
                    ..Answer::error(format!("reading counters: {e:#}"))
                },
            },
            "reload" => {
                let (a, g) = lb.reload();
                *grace = g;
                a
            }
            other => Answer::error(format!("unknown request '{other}': status or reload")),
        }
        .to_line(),
    }
}

/// `GET /metrics`, the status page (`/`) and its data (`/status.json`,
/// see [`page`]); anything else gets the status code it deserves.
fn http(lb: &Balancer, history: Option<&history::History>, request: &str) -> Vec<u8> {
    let line = request.lines().next().unwrap_or("");
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let (code, kind, body) = match (method, path) {
        ("GET", "/") => ("200 OK", page::HTML_TYPE, page::HTML.to_string()),
        ("GET", "/status.json") => match lb.status() {
            Ok(s) => (
                "200 OK",
                page::JSON_TYPE,
                page::status_json(&s, history.unwrap_or(&Default::default()), query),
            ),
            Err(e) => (
                "500 Internal Server Error",
                "text/plain",
                format!("reading counters: {e:#}\n"),
            ),
        },
        ("GET", "/metrics") => match lb.status() {
            Ok(s) => ("200 OK", metrics::CONTENT_TYPE, metrics::render(&s)),
            Err(e) => (
                "500 Internal Server Error",
                "text/plain",
                format!("reading counters: {e:#}\n"),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "udplb: see / or /metrics\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "udplb: GET / or /metrics\n".into(),
        ),
    };
    format!(
        "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{body}",
        body.len(),
        page::HEADERS
    )
    .into_bytes()
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

/// `udplb status [IFACE] [--json]`.
pub fn status(iface: Option<&str>, json: bool) -> Result<()> {
    let a = control::ask(iface, "status", Duration::from_secs(10))?;
    match (a.status, json) {
        (Some(s), true) => say!("{}", serde_json::to_string_pretty(&s)?),
        (Some(s), false) => say!("{}", status::render_text(&s).trim_end()),
        (None, _) => anyhow::bail!("{}", a.error.unwrap_or_else(|| "no status".into())),
    }
    Ok(())
}

/// `udplb reload [IFACE]`: what changed, or the error (exit 2 for a bad
/// file, 1 for a failure while writing the maps).
pub fn reload(iface: Option<&str>) -> Result<()> {
    // A reload to the largest tables takes seconds; give it a minute.
    let a = control::ask(iface, "reload", Duration::from_secs(60))?;
    match (a.ok, a.changes) {
        (true, Some(c)) if c.is_empty() => say!("udplb: reloaded: no change"),
        (true, Some(c)) => {
            say!("udplb: reloaded:");
            for line in c {
                say!("  {line}");
            }
        }
        _ => {
            let msg = a.error.unwrap_or_else(|| "reload failed".into());
            if a.refused {
                return Err(crate::error::UsageError(msg).into());
            }
            warn!("udplb: {msg}");
            anyhow::bail!("the running configuration may be partly applied");
        }
    }
    Ok(())
}
