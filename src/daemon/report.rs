//! Human-readable counters, for `--stats` and the summary printed on exit.

use std::fmt::Write;

use crate::abi::{
    Counter, EGRESS_VERDICT_NAMES, FLOW_COUNTER_NAMES, QUIC_COUNTER_NAMES, REASON_NAMES,
};
use crate::config::{BackendConfig, Config, Listen, Sched};
use crate::datapath::Counters;

use super::health::Health;
use super::status::{health_line, HealthStatus};

/// A backend a reload took away, with its counters as they were then: they
/// stay in the reports (and /metrics, for a last scrape) for
/// [`KEEP_REMOVED`], the newest [`MAX_REMOVED`] of them at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub frontend: Listen,
    pub backend: BackendConfig,
    pub counter: Counter,
    /// When the reload took it away.
    pub at: std::time::Instant,
}

/// How long a removed backend's last counters stay: several scrape
/// intervals of any Prometheus, so its final values are collected.
pub const KEEP_REMOVED: std::time::Duration = std::time::Duration::from_secs(600);
/// Removed backends kept at most, newest first: reloads that churn through
/// ports cannot grow the reports, /metrics or memory without bound.
pub const MAX_REMOVED: usize = 256;

/// Adds `gone` (one reload's removals) to `kept`: a backend removed again
/// replaces its older line; then the bounds above apply.
pub fn keep_removed(kept: &mut Vec<Removed>, gone: Vec<Removed>, now: std::time::Instant) {
    for r in gone {
        kept.retain(|k| (k.frontend, k.backend.id()) != (r.frontend, r.backend.id()));
        kept.push(r);
    }
    kept.retain(|k| now.saturating_duration_since(k.at) < KEEP_REMOVED);
    let excess = kept.len().saturating_sub(MAX_REMOVED);
    kept.drain(..excess); // oldest first: pushed in order
}

/// The `--stats` report and the final counters: each frontend with its
/// backends (removed ones last) and replies, frontends a reload removed,
/// then the totals.
pub fn render(config: &Config, c: &Counters, removed: &[Removed], health: &Health) -> String {
    let mut s = String::new();
    let now = super::status::now_unix();
    for (i, fe) in config.frontends.iter().enumerate() {
        let _ = writeln!(s, "frontend {}", fe.listen);
        for (j, b) in fe.backends.iter().enumerate() {
            let note = backend_note(
                c,
                i,
                j,
                health.get(fe.listen, b.id()).map(|h| {
                    let st = HealthStatus::of(h, fe.health.check_of(&b.name()));
                    health_line(&st, now)
                }),
            );
            let counter = c.backends.get(i).and_then(|v| v.get(j));
            line(
                &mut s,
                b.to_string(),
                counter.copied().unwrap_or_default(),
                &note,
            );
        }
        removed_lines(&mut s, removed, &fe.listen);
        let r = c.replies.get(i).copied().unwrap_or_default();
        let _ = writeln!(
            s,
            "  replies        packets {:>12}  bytes {:>14}",
            r.packets, r.bytes
        );
    }
    let mut away: Vec<&Listen> = removed
        .iter()
        .map(|r| &r.frontend)
        .filter(|l| config.frontends.iter().all(|f| f.listen != **l))
        .collect();
    away.dedup();
    for listen in away {
        let _ = writeln!(s, "frontend {listen} (removed)");
        removed_lines(&mut s, removed, listen);
    }
    totals(&mut s, config, c);
    s
}

/// One backend's line: "9876" or "9876@3", its counters, then `note`.
fn line(s: &mut String, name: String, b: Counter, note: &str) {
    let _ = writeln!(
        s,
        "  backend {name:<5}  packets {:>12}  bytes {:>14}{note}",
        b.packets, b.bytes
    );
}

/// What follows backend `j` of frontend `i`'s counters: its passive
/// signals, its live flows (where walked), then its health.
fn backend_note(c: &Counters, i: usize, j: usize, health: Option<String>) -> String {
    let pa = c.passive.get(i).and_then(|v| v.get(j));
    let pa = pa.copied().unwrap_or_default();
    let flows = match c.live_flows.get(i).and_then(|v| v.get(j)) {
        Some(n) => format!("  flows {n:>8}"),
        None => String::new(),
    };
    let health = health.map(|h| format!("  {h}")).unwrap_or_default();
    format!(
        "  replies seen {:>10}  icmp errors {:>8}{flows}{health}",
        pa.replies, pa.icmp_errors,
    )
}

/// The backends a reload took from `listen`, with their last counters.
fn removed_lines(s: &mut String, removed: &[Removed], listen: &Listen) {
    for r in removed.iter().filter(|r| r.frontend == *listen) {
        line(s, r.backend.to_string(), r.counter, "  (removed)");
    }
}

/// Verdicts, then egress verdicts, flow table and quic events where they
/// mean something.
fn totals(s: &mut String, config: &Config, c: &Counters) {
    let named = |names: &[&str], values: &[u64]| -> String {
        let pairs: Vec<String> = (names.iter().zip(values))
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        pairs.join(", ")
    };
    let _ = writeln!(s, "verdicts: {}", named(&REASON_NAMES, &c.reasons));
    // Only an interface other than lo has the egress program.
    if c.egress.iter().any(|n| *n > 0) {
        let egress = named(&EGRESS_VERDICT_NAMES, &c.egress);
        let _ = writeln!(s, "egress verdicts: {egress}");
    }
    let flows = |f: &crate::config::FrontendConfig| f.flow_timeout > 0 && f.sched.hashes();
    if config.frontends.iter().any(flows) {
        let events = named(&FLOW_COUNTER_NAMES, &c.flow_events);
        let _ = writeln!(s, "flow table: {} entries; {events}", c.flow_entries);
    }
    if config.frontends.iter().any(|f| f.sched == Sched::Quic) {
        let _ = writeln!(s, "quic: {}", named(&QUIC_COUNTER_NAMES, &c.quic_events));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{Counter, Passive, REASON_COUNT};

    #[test]
    fn renders_every_backend_and_reason() {
        let config = Config::from_specs(&["9875=9876,9877"]).unwrap();
        let mut c = Counters {
            backends: vec![vec![
                Counter {
                    packets: 2,
                    bytes: 100,
                },
                Counter {
                    packets: 1,
                    bytes: 50,
                },
            ]],
            replies: vec![Counter {
                packets: 3,
                bytes: 150,
            }],
            passive: vec![vec![
                Passive {
                    icmp_errors: 0,
                    replies: 3,
                },
                Passive {
                    icmp_errors: 2,
                    replies: 0,
                },
            ]],
            reasons: [0; REASON_COUNT],
            ..Counters::default()
        };
        c.reasons[0] = 3;
        let text = render(&config, &c, &[], &Health::default());
        assert!(text.contains("frontend *:9875"), "{text}");
        assert!(
            text.contains(
                "backend 9876   packets            2  bytes            100  replies seen          3  \
                 icmp errors        0"
            ),
            "{text}"
        );
        assert!(
            text.contains("bytes             50  replies seen          0  icmp errors        2"),
            "{text}"
        );
        assert!(
            text.contains("backend 9877   packets            1"),
            "{text}"
        );
        assert!(
            text.contains("replies        packets            3"),
            "{text}"
        );
        assert!(
            text.contains("verdicts: balanced 3, reply 0, not_ip 0"),
            "{text}"
        );
        assert!(!text.contains("egress verdicts"), "{text}");
        c.egress[crate::abi::UDPLB_EGRESS_REPLY as usize] = 3;
        let text = render(&config, &c, &[], &Health::default());
        assert!(
            text.contains("egress verdicts: reply 3, reply_forwarded 0, "),
            "{text}"
        );

        // Backends and frontends a reload removed keep their line.
        let old = Config::from_specs(&["9875=9876,9877,9878", "53=5353"]).unwrap();
        let removed = [
            Removed {
                frontend: old.frontends[0].listen,
                backend: old.frontends[0].backends[2],
                counter: Counter {
                    packets: 4,
                    bytes: 40,
                },
                at: std::time::Instant::now(),
            },
            Removed {
                frontend: old.frontends[1].listen,
                backend: old.frontends[1].backends[0],
                counter: Counter {
                    packets: 5,
                    bytes: 50,
                },
                at: std::time::Instant::now(),
            },
        ];
        let text = render(&config, &c, &removed, &Health::default());
        assert!(
            text.contains(
                "  backend 9877   packets            1  bytes             50  replies seen          0  \
                 icmp errors        2\n  backend 9878   packets            4  bytes             40  \
                 (removed)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("frontend *:53 (removed)\n  backend 5353   packets            5"),
            "{text}"
        );
    }

    #[test]
    fn removed_backends_are_kept_for_a_while_and_a_number() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let spec: Vec<String> = (0..600).map(|p| format!("{}", 10000 + p)).collect();
        let config = Config::from_specs(&[&format!("9875={}", spec.join(","))]).unwrap();
        let fe = &config.frontends[0];
        let gone = |j: usize, at: Instant| Removed {
            frontend: fe.listen,
            backend: fe.backends[j],
            counter: Counter {
                packets: j as u64,
                bytes: 0,
            },
            at,
        };
        let mut kept = Vec::new();
        // One removal a reload, 600 reloads: the newest MAX_REMOVED stay.
        for j in 0..600 {
            keep_removed(&mut kept, vec![gone(j, t0)], t0);
        }
        assert_eq!(kept.len(), MAX_REMOVED);
        assert_eq!(kept[0].counter.packets, (600 - MAX_REMOVED) as u64);
        // Removed again: one line, the newer counters.
        let mut again = gone(599, t0);
        again.counter.packets = 7;
        keep_removed(&mut kept, vec![again], t0);
        assert_eq!(kept.len(), MAX_REMOVED);
        assert_eq!(kept.last().unwrap().counter.packets, 7);
        // Past KEEP_REMOVED, the old ones go on the next call.
        let later = t0 + KEEP_REMOVED + Duration::from_secs(1);
        keep_removed(&mut kept, vec![gone(0, later)], later);
        assert_eq!(kept.len(), 1);
    }
}
