//! Backend health: up or down per backend, from three sources, each a
//! plain input to [`Health`] (pure; [`driver`] feeds them in from the
//! event loop):
//!
//! - active checks ([`probe`]): `fall` failures in a row take a backend
//!   down, `rise` successes in a row bring it back (keepalived/HAProxy);
//! - the socket table: a local backend with no UDP socket bound to its port
//!   is down at once, and up again as soon as one is bound (a fact, not a
//!   guess: no hysteresis);
//! - passive signals from the datapath ([`PassiveSample`]): ICMP errors and
//!   no replies over an interval take a backend down for a hold time.
//!
//! A backend is up when every source says so. Every backend starts up.
//! Each change of that verdict is one [`Transition`], logged as one line
//! naming frontend, backend and cause; the balancer then applies a plan
//! with the down backends out of their rings (`plan::effective`).

pub mod driver;
pub mod probe;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{BackendConfig, Check, CheckKind, Config, Listen};
use crate::plan::{BackendId, Down};

/// How long a local backend that was never seen bound (since udplb started,
/// or since a reload added it) may take to bind before the socket table
/// counts against it.
pub const SOCKET_GRACE: Duration = Duration::from_secs(1);

/// keepalived's and HAProxy's rise/fall: a state that flips only after
/// enough results in a row say the other thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    pub up: bool,
    /// Results in a row that disagree with `up`.
    streak: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            up: true,
            streak: 0,
        }
    }
}

impl Hysteresis {
    /// Records one result; true if the state flipped.
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> bool {
        if ok == self.up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let need = if self.up { fall } else { rise };
        if self.streak >= need.max(1) {
            self.up = ok;
            self.streak = 0;
            return true;
        }
        false
    }
}

/// The datapath's passive counters of one backend, as running totals:
/// ICMP destination-unreachable errors about datagrams sent to it, and
/// replies seen from it. See [`passive_verdict`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassiveSample {
    pub icmp_errors: u64,
    pub replies: u64,
}

/// The passive rule's numbers: how far back it looks, how many ICMP errors
/// (with no reply at all) it takes, and how long a backend it took down
/// stays down before it is back on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveRule {
    pub window: Duration,
    pub min_errors: u64,
    pub hold: Duration,
}

/// The passive rule over a window (its oldest and newest samples): at
/// least `min_errors` ICMP errors and no reply mean the backend is gone
/// (`Some(false)`); a reply means it lives (`Some(true)`); fewer errors, or
/// none, say nothing (`None`: silence is normal for fire-and-forget
/// protocols, and one stray error is no evidence), nor does a counter that
/// went backwards (a slot reset).
pub fn passive_verdict(before: PassiveSample, now: PassiveSample, min_errors: u64) -> Option<bool> {
    if now.icmp_errors < before.icmp_errors || now.replies < before.replies {
        return None;
    }
    let errors = now.icmp_errors - before.icmp_errors;
    let replies = now.replies - before.replies;
    match (errors, replies) {
        (_, r) if r > 0 => Some(true),
        (e, 0) if e >= min_errors.max(1) => Some(false),
        _ => None,
    }
}

/// One change of a backend's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub frontend: Listen,
    pub backend: String,
    pub up: bool,
    pub cause: String,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.up { "up" } else { "down" };
        write!(
            f,
            "udplb: {} -> {} {state}: {}",
            self.frontend, self.backend, self.cause
        )
    }
}

/// One backend's health.
#[derive(Debug, Clone)]
pub struct BackendHealth {
    name: String,
    check: Check,
    /// The port whose socket-table entry keeps it up (local backends with
    /// `sockets` on).
    socket_port: Option<u16>,
    active: Hysteresis,
    /// Why the probes of the current streak failed, for the log line.
    failures: Vec<String>,
    socket_bound: bool,
    /// Until when a socket that was never seen bound does not count: a
    /// backend started just after udplb (or added by a reload) gets a
    /// moment to bind.
    socket_grace: Option<Instant>,
    /// The passive samples of the rule's window, oldest first.
    passive_window: VecDeque<(Instant, PassiveSample)>,
    passive_down_until: Option<Instant>,
    /// An active probe has succeeded since udplb started (or a reload
    /// added the backend): its being up is seen, not assumed.
    answered: bool,
    /// The verdict, since when, how often it changed, and why last.
    pub up: bool,
    pub since: SystemTime,
    pub transitions: u64,
    pub cause: String,
}

impl BackendHealth {
    fn new(b: &BackendConfig, check: Check, sockets: bool) -> BackendHealth {
        BackendHealth {
            name: b.name(),
            check,
            socket_port: (sockets && b.addr.is_none()).then_some(b.port),
            active: Hysteresis::default(),
            failures: Vec::new(),
            socket_bound: true,
            socket_grace: Some(Instant::now() + SOCKET_GRACE),
            passive_window: VecDeque::new(),
            passive_down_until: None,
            answered: false,
            up: true,
            since: SystemTime::now(),
            transitions: 0,
            cause: "starting up".into(),
        }
    }

    fn verdict(&self) -> bool {
        self.active.up && self.socket_bound && self.passive_down_until.is_none()
    }

    /// Moves `up` to the sources' verdict; the transition, if any.
    fn settle(&mut self, frontend: Listen, cause: impl FnOnce() -> String) -> Option<Transition> {
        let now = self.verdict();
        if now == self.up {
            return None;
        }
        self.up = now;
        self.since = SystemTime::now();
        self.transitions += 1;
        self.cause = cause();
        Some(Transition {
            frontend,
            backend: self.name.clone(),
            up: now,
            cause: self.cause.clone(),
        })
    }

    pub fn check(&self) -> &Check {
        &self.check
    }
}

/// What the checks' verb is for a success, for log lines.
fn answered(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::Tcp { .. } => "connected",
        CheckKind::Http { .. } => "returned 2xx",
        _ => "answered",
    }
}

/// "3 dns probes timed out", or "3 tcp probes failed (last: connection
/// refused)".
fn failed(kind: &CheckKind, why: &[String]) -> String {
    let n = why.len();
    let probes = if n == 1 { "probe" } else { "probes" };
    match why.last() {
        Some(last) if why.iter().all(|w| w == last) => {
            format!("{n} {} {probes} {last}", kind.code())
        }
        Some(last) => format!("{n} {} {probes} failed (last: {last})", kind.code()),
        None => format!("{} check failed", kind.code()),
    }
}

/// Every backend's health, by frontend and backend identity.
#[derive(Debug, Default)]
pub struct Health {
    backends: BTreeMap<(Listen, BackendId), BackendHealth>,
}

impl Health {
    /// Follows a configuration (at start and on each reload): backends that
    /// stay keep their state (with their new check), new ones start up,
    /// removed ones are forgotten.
    pub fn configure(&mut self, config: &Config) {
        let mut next = BTreeMap::new();
        for fe in &config.frontends {
            for b in &fe.backends {
                let key = (fe.listen, b.id());
                let check = fe.health.check_of(&b.name()).clone();
                let fresh = BackendHealth::new(b, check.clone(), fe.health.sockets);
                let h = match self.backends.remove(&key) {
                    Some(mut old) => {
                        if old.check.kind != check.kind {
                            old.active = Hysteresis::default();
                            old.failures.clear();
                        }
                        old.check = check;
                        if fresh.socket_port.is_none() {
                            old.socket_bound = true;
                        }
                        old.socket_port = fresh.socket_port;
                        old
                    }
                    None => fresh,
                };
                next.insert(key, h);
            }
        }
        self.backends = next;
    }

    /// The backends held down now.
    pub fn down(&self) -> Down {
        (self.backends.iter())
            .filter(|(_, h)| !h.up)
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn get(&self, frontend: Listen, backend: BackendId) -> Option<&BackendHealth> {
        self.backends.get(&(frontend, backend))
    }

    /// Whether a backend is up and that is known rather than assumed: its
    /// active check (if any) has answered, and its socket (a local backend
    /// with socket liveness) has been seen bound. Announcing a frontend
    /// waits for this; every backend starts up only so that traffic is not
    /// refused while the checks have not run yet.
    pub fn proven(&self, frontend: Listen, backend: BackendId) -> bool {
        self.get(frontend, backend).is_some_and(|h| {
            h.up && (h.answered || h.check.kind == CheckKind::None)
                && (h.socket_port.is_none() || h.socket_grace.is_none())
        })
    }

    /// Every backend with its health.
    pub fn iter(&self) -> impl Iterator<Item = (&(Listen, BackendId), &BackendHealth)> {
        self.backends.iter()
    }

    /// Whether any backend needs the socket table.
    pub fn wants_socket_table(&self) -> bool {
        self.backends.values().any(|h| h.socket_port.is_some())
    }

    /// The UDP ports with a socket bound in this namespace, from one dump
    /// of the socket table.
    pub fn socket_table(&mut self, bound: &BTreeSet<u16>, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        for ((listen, _), h) in &mut self.backends {
            let Some(port) = h.socket_port else { continue };
            if bound.contains(&port) {
                h.socket_grace = None;
            } else if h.socket_grace.is_some_and(|t| now < t) {
                continue;
            }
            h.socket_bound = bound.contains(&port);
            let cause = || match bound.contains(&port) {
                true => format!("a UDP socket is bound to port {port}"),
                false => format!("no UDP socket is bound to port {port}"),
            };
            out.extend(h.settle(*listen, cause));
        }
        out
    }

    /// The outcome of one active probe: `Ok(())` or why it failed
    /// ("timed out", "connection refused", ...).
    pub fn probe_result(
        &mut self,
        frontend: Listen,
        backend: BackendId,
        result: Result<(), String>,
    ) -> Option<Transition> {
        let h = self.backends.get_mut(&(frontend, backend))?;
        let (rise, fall) = (h.check.rise, h.check.fall);
        let ok = result.is_ok();
        h.answered |= ok;
        match result {
            Ok(()) => h.failures.clear(),
            Err(why) => h.failures.push(why),
        }
        if h.active.up == ok {
            h.failures.clear();
        }
        if !h.active.record(ok, rise, fall) {
            return None;
        }
        let kind = h.check.kind.clone();
        let why = std::mem::take(&mut h.failures);
        h.settle(frontend, || match ok {
            true => format!("{rise} {} probes {}", kind.code(), answered(&kind)),
            false => failed(&kind, &why),
        })
    }

    /// The passive counters now (running totals per backend), read every
    /// `driver::PASSIVE_INTERVAL`. A backend that the rule finds gone over its window is down for
    /// `rule.hold`, then back on trial with an empty window (it gets no
    /// traffic while down, so no passive signal could bring it back, and
    /// the errors that took it down must not take it down again).
    pub fn passive(
        &mut self,
        samples: &BTreeMap<(Listen, BackendId), PassiveSample>,
        rule: PassiveRule,
        now: Instant,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        for (key, h) in &mut self.backends {
            let expired = h.passive_down_until.is_some_and(|t| t <= now);
            if expired {
                h.passive_down_until = None;
                h.passive_window.clear();
                let hold = rule.hold;
                let cause = || format!("back on trial after {hold:?} held down by ICMP errors");
                out.extend(h.settle(key.0, cause));
            }
            let Some(&sample) = samples.get(key) else {
                h.passive_window.clear();
                continue;
            };
            let w = &mut h.passive_window;
            if w.back().is_some_and(|(_, last)| {
                sample.icmp_errors < last.icmp_errors || sample.replies < last.replies
            }) {
                w.clear(); // a reset slot: start again
            }
            w.push_back((now, sample));
            while w.len() > 1 && w[0].0 + rule.window < now {
                w.pop_front();
            }
            if h.passive_down_until.is_some() {
                continue;
            }
            let (since, before) = w[0];
            if passive_verdict(before, sample, rule.min_errors) == Some(false) {
                h.passive_down_until = Some(now + rule.hold);
                w.clear();
                let errors = sample.icmp_errors - before.icmp_errors;
                let ms = Duration::from_millis((now - since).as_millis() as u64);
                let cause = || {
                    format!(
                        "passive: {errors} ICMP errors and no reply in {ms:?}, held down for {:?}",
                        rule.hold
                    )
                };
                out.extend(h.settle(key.0, cause));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_count_results_in_a_row() {
        let mut h = Hysteresis::default();
        assert!(h.up, "starts up");
        // fall 3: two failures, a success, two failures: still up.
        for ok in [false, false, true, false, false] {
            assert!(!h.record(ok, 2, 3));
        }
        assert!(h.record(false, 2, 3), "the third failure in a row");
        assert!(!h.up);
        // rise 2: a success, a failure, a success: still down; then up.
        for ok in [true, false, true] {
            assert!(!h.record(ok, 2, 3));
        }
        assert!(h.record(true, 2, 3));
        assert!(h.up);
        // rise 1 / fall 1: every result counts.
        assert!(h.record(false, 1, 1) && h.record(true, 1, 1));
    }

    #[test]
    fn the_passive_rule() {
        let s = |icmp_errors, replies| PassiveSample {
            icmp_errors,
            replies,
        };
        assert_eq!(passive_verdict(s(0, 0), s(3, 0), 3), Some(false));
        assert_eq!(passive_verdict(s(0, 0), s(2, 0), 3), None, "too few");
        assert_eq!(
            passive_verdict(s(0, 0), s(1, 0), 3),
            None,
            "one stray error"
        );
        assert_eq!(passive_verdict(s(0, 0), s(30, 1), 3), Some(true));
        assert_eq!(passive_verdict(s(5, 5), s(5, 5), 3), None, "silence");
        assert_eq!(passive_verdict(s(5, 5), s(0, 0), 3), None, "a reset slot");
        assert_eq!(passive_verdict(s(5, 5), s(9, 0), 3), None, "a reset slot");
    }

    fn config(text: &str) -> Config {
        crate::config::file::parse(text, "t.toml").unwrap().config
    }

    const DNS: &str = r#"
interface = "lo"
[[frontend]]
listen = "198.18.0.2:53"
backends = [5301, 5302, "198.18.1.2:53"]
[frontend.health]
check = "dns"
interval = "200ms"
rise = 2
fall = 2
"#;

    #[test]
    fn probes_take_a_backend_down_and_back_with_one_line_each() {
        let c = config(DNS);
        let mut h = Health::default();
        h.configure(&c);
        let fe = c.frontends[0].listen;
        let b = (None, 5302);
        assert!(h.down().is_empty());
        assert_eq!(h.probe_result(fe, b, Err("timed out".into())), None);
        let t = h.probe_result(fe, b, Err("timed out".into())).unwrap();
        assert_eq!(
            t.to_string(),
            "udplb: 198.18.0.2:53 -> 5302 down: 2 dns probes timed out"
        );
        assert_eq!(h.down(), [(fe, b)].into());
        assert_eq!(h.probe_result(fe, b, Ok(())), None);
        let t = h.probe_result(fe, b, Ok(())).unwrap();
        assert_eq!(
            t.to_string(),
            "udplb: 198.18.0.2:53 -> 5302 up: 2 dns probes answered"
        );
        assert_eq!(h.get(fe, b).unwrap().transitions, 2);
        // Mixed causes name the last one.
        h.probe_result(fe, b, Err("timed out".into()));
        let t = h.probe_result(fe, b, Err("RCODE Refused".into())).unwrap();
        assert_eq!(t.cause, "2 dns probes failed (last: RCODE Refused)");
    }

    #[test]
    fn the_socket_table_is_a_fact_for_local_backends_only() {
        let c = config(DNS);
        let mut h = Health::default();
        h.configure(&c);
        assert!(h.wants_socket_table());
        let fe = c.frontends[0].listen;
        // Not bound yet, but udplb just started: it may be on its way.
        assert!(h.socket_table(&[5301].into(), Instant::now()).is_empty());
        let later = Instant::now() + SOCKET_GRACE;
        let t = h.socket_table(&[5301].into(), later);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(
            t[0].to_string(),
            "udplb: 198.18.0.2:53 -> 5302 down: no UDP socket is bound to port 5302"
        );
        // A remote backend is not judged by this host's sockets.
        assert!(h.get(fe, ("198.18.1.2".parse().ok(), 53)).unwrap().up);
        let t = h.socket_table(&[5301, 5302].into(), later);
        assert_eq!(t[0].cause, "a UDP socket is bound to port 5302");
        // Both sources must agree: bound but failing probes stays down.
        h.probe_result(fe, (None, 5301), Err("timed out".into()));
        h.probe_result(fe, (None, 5301), Err("timed out".into()));
        let t = h.socket_table(&[5302].into(), later);
        assert!(t.iter().all(|t| t.backend != "5301"), "already down");
        let t = h.socket_table(&[5301, 5302].into(), later);
        assert!(t.is_empty(), "bound, but its probes still fail: {t:?}");
        // `sockets = false` turns it off.
        let off = config(&DNS.replace("fall = 2", "fall = 2\nsockets = false"));
        let mut h = Health::default();
        h.configure(&off);
        assert!(!h.wants_socket_table());
    }

    #[test]
    fn up_is_proven_by_an_answer_or_a_bound_socket_not_assumed() {
        let c = config(DNS);
        let mut h = Health::default();
        h.configure(&c);
        let fe = c.frontends[0].listen;
        let (local, remote) = ((None, 5301), ("198.18.1.2".parse().ok(), 53));
        assert!(h.get(fe, remote).unwrap().up, "starts up");
        assert!(!h.proven(fe, remote), "but no probe has answered");
        h.probe_result(fe, remote, Ok(()));
        assert!(h.proven(fe, remote));
        h.probe_result(fe, local, Ok(()));
        assert!(!h.proven(fe, local), "its socket has not been seen");
        h.socket_table(&[5301].into(), Instant::now());
        assert!(h.proven(fe, local));
        h.probe_result(fe, remote, Err("timed out".into()));
        h.probe_result(fe, remote, Err("timed out".into()));
        assert!(!h.proven(fe, remote), "down");
        // No active check and no socket: nothing to wait for.
        let none = config(
            &DNS.replace("check = \"dns\"", "check = \"none\"")
                .replace("fall = 2", "fall = 2\nsockets = false"),
        );
        let mut h = Health::default();
        h.configure(&none);
        assert!(h.proven(fe, local) && h.proven(fe, remote));
    }

    #[test]
    fn a_reload_keeps_the_state_of_backends_that_stay() {
        let c = config(DNS);
        let mut h = Health::default();
        h.configure(&c);
        let fe = c.frontends[0].listen;
        h.socket_table(&[5301].into(), Instant::now() + SOCKET_GRACE);
        h.configure(&config(&DNS.replace("5301, 5302,", "5302, 5303,")));
        assert_eq!(h.down(), [(fe, (None, 5302))].into());
        assert!(h.get(fe, (None, 5301)).is_none());
        assert!(h.get(fe, (None, 5303)).unwrap().up);
    }

    #[test]
    fn passive_signals_hold_a_backend_down_then_put_it_on_trial() {
        let c = config(DNS);
        let mut h = Health::default();
        h.configure(&c);
        let fe = c.frontends[0].listen;
        let key = (fe, ("198.18.1.2".parse().ok(), 53));
        let tick = Duration::from_millis(200);
        let rule = PassiveRule {
            window: Duration::from_secs(2),
            min_errors: 3,
            hold: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        let sample = |e, r| {
            [(
                key,
                PassiveSample {
                    icmp_errors: e,
                    replies: r,
                },
            )]
            .into()
        };
        let mut at = |e, r, n: u32| h.passive(&sample(e, r), rule, t0 + n * tick);
        assert!(at(0, 10, 0).is_empty());
        assert!(at(0, 20, 1).is_empty());
        // Errors while replies still come: alive.
        assert!(at(5, 21, 2).is_empty());
        // One stray error, then another a while later: not enough.
        assert!(at(6, 21, 13).is_empty());
        assert!(at(7, 21, 20).is_empty());
        // The two above are older than the window by tick 31: the window
        // starts again there, and three errors within it count.
        assert!(at(8, 21, 31).is_empty());
        assert!(at(10, 21, 32).is_empty());
        let t = at(11, 21, 40);
        assert_eq!(
            t[0].to_string(),
            "udplb: 198.18.0.2:53 -> 198.18.1.2:53 down: passive: 3 ICMP errors and no reply in \
             1.8s, held down for 5s"
        );
        // Held down whatever comes; then back on trial, with a fresh window.
        assert!(at(30, 21, 41).is_empty());
        let t = at(40, 21, 66);
        assert!(t[0].up, "{t:?}");
        assert!(at(41, 21, 67).is_empty(), "the errors before are forgotten");
        assert!(!at(43, 21, 68).is_empty(), "three fresh ones count");
    }
}
