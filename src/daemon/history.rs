//! What the status page graphs: each backend's packet rate and whether it
//! was down, one sample every [`EVERY_TICKS`] seconds for the last
//! [`POINTS`] samples (10 minutes), kept in memory by the daemon while its
//! metrics listener is on.
//!
//! Bounded: one ring of at most [`POINTS`] samples (5 bytes each) per
//! backend of the running configuration, so at most
//! `MAX_BACKEND_SLOTS (8192) x POINTS` samples, about 12 MB at the limit
//! and a few kB for ordinary configurations; one answer carries at most
//! [`MAX_ANSWER_SAMPLES`] of them. A backend that leaves the
//! configuration (or is only listed as removed) loses its ring at the next
//! sample. Pure: fed a [`Status`] and a time, no I/O.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde::Serialize;

use super::status::{BackendState, Health, Status};

/// Samples kept per backend: 10 minutes at one sample every 2 s.
pub const POINTS: usize = 300;
/// Event loop ticks (one a second) between two samples.
pub const EVERY_TICKS: u64 = 2;
/// Samples in one answer at most, over all backends (about 8 bytes each in
/// JSON): with thousands of backends a first poll gets the newest part of
/// each history, not megabytes that each of 64 clients would hold in the
/// server's buffers. An ordinary configuration gets everything.
pub const MAX_ANSWER_SAMPLES: usize = 100_000;

/// One backend's samples, oldest first, all at the same sample numbers as
/// every other backend's (the newest is the history's newest).
#[derive(Debug, Default)]
struct Ring {
    /// Packets per second over the interval before each sample.
    pps: VecDeque<f32>,
    /// Whether it was down at any moment of that interval: down at the
    /// sample, or its health changed since the previous one (a backend that
    /// went down and came back between two samples still shows).
    down: VecDeque<bool>,
    /// Its counters at the last sample: packets, health transitions.
    packets: u64,
    transitions: u64,
}

#[derive(Debug, Default)]
pub struct History {
    ticks: u64,
    /// Samples taken since the start; the newest has number `taken - 1`.
    taken: u64,
    last: Option<Instant>,
    /// By (frontend, backend), as the status names them.
    rings: BTreeMap<(String, String), Ring>,
}

/// The samples of one backend newer than what a client already has.
#[derive(Debug, Serialize, PartialEq)]
pub struct Series {
    pub frontend: String,
    pub backend: String,
    /// The number of the first sample given; the last is the view's `last`.
    pub first: u64,
    /// Rounded to 0.1 packet/s: the graph needs no more, the JSON stays short.
    pub pps: Vec<f64>,
    /// 1: down at some moment of the interval.
    pub down: Vec<u8>,
}

/// The history as `/status.json` serves it.
#[derive(Debug, Serialize, PartialEq)]
pub struct View {
    pub interval_seconds: u64,
    pub points: usize,
    /// The number of the newest sample (-1: none yet).
    pub last: i64,
    pub backends: Vec<Series>,
}

impl History {
    /// Called on every tick of the loop: whether a sample is due now.
    pub fn due(&mut self) -> bool {
        self.ticks += 1;
        (self.ticks - 1) % EVERY_TICKS == 0
    }

    /// Takes a sample of `s`, taken at `at`.
    pub fn record(&mut self, at: Instant, s: &Status) {
        let secs = self
            .last
            .map(|t| at.saturating_duration_since(t).as_secs_f64());
        let mut rings = BTreeMap::new();
        for fe in &s.frontends {
            for b in fe
                .backends
                .iter()
                .filter(|b| b.state == BackendState::Active)
            {
                let key = (fe.listen.clone(), b.name.clone());
                let old = self.rings.remove(&key);
                let was = old.as_ref().map(|r| (r.packets, r.transitions));
                let mut r = old.unwrap_or_default();
                let pps = match (was, secs) {
                    (Some((p, _)), Some(secs)) if secs > 0.0 => {
                        b.traffic.packets.saturating_sub(p) as f64 / secs
                    }
                    // New here: the daemon's own rate over the last second.
                    _ => b.traffic.packets_per_second,
                };
                let flapped = was.is_some_and(|(_, t)| t != b.health.transitions);
                r.pps.push_back(pps as f32);
                r.down.push_back(b.health.state == Health::Down || flapped);
                while r.pps.len() > POINTS {
                    r.pps.pop_front();
                    r.down.pop_front();
                }
                r.packets = b.traffic.packets;
                r.transitions = b.health.transitions;
                rings.insert(key, r);
            }
        }
        // Whatever is left in the old map is gone from the configuration.
        self.rings = rings;
        self.last = Some(at);
        self.taken += 1;
    }

    /// Every backend's samples after sample number `after` (all kept, if
    /// `after` is None or older than they go back), the newest
    /// [`MAX_ANSWER_SAMPLES`] / backends of each at most.
    pub fn view(&self, after: Option<u64>) -> View {
        let last = self.taken as i64 - 1;
        let each = (MAX_ANSWER_SAMPLES / self.rings.len().max(1)).max(1) as u64;
        let backends = self
            .rings
            .iter()
            .map(|((frontend, backend), r)| {
                let first_kept = self.taken - r.pps.len() as u64;
                let first = after.map_or(first_kept, |a| (a + 1).max(first_kept));
                let first = first.max(self.taken.saturating_sub(each));
                let skip = (first - first_kept) as usize;
                Series {
                    frontend: frontend.clone(),
                    backend: backend.clone(),
                    first,
                    pps: (r.pps.iter().skip(skip))
                        .map(|&p| (p as f64 * 10.0).round() / 10.0)
                        .collect(),
                    down: r.down.iter().skip(skip).map(|&d| d as u8).collect(),
                }
            })
            .collect();
        View {
            interval_seconds: EVERY_TICKS,
            points: POINTS,
            last,
            backends,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{BackendStatus, FrontendStatus, Health, HealthStatus, Traffic};
    use std::time::Duration;

    fn backend(name: &str, packets: u64, up: bool, transitions: u64) -> BackendStatus {
        BackendStatus {
            name: name.into(),
            weight: 1,
            state: BackendState::Active,
            traffic: Traffic {
                packets,
                packets_per_second: 7.0,
                ..Traffic::default()
            },
            health: HealthStatus {
                state: if up { Health::Up } else { Health::Down },
                transitions,
                ..HealthStatus::default()
            },
            ..BackendStatus::default()
        }
    }

    fn status(backends: Vec<BackendStatus>) -> Status {
        Status {
            frontends: vec![FrontendStatus {
                listen: "*:53".into(),
                backends,
                ..FrontendStatus::default()
            }],
            ..Status::default()
        }
    }

    fn series<'a>(v: &'a View, name: &str) -> &'a Series {
        v.backends.iter().find(|s| s.backend == name).unwrap()
    }

    #[test]
    fn rates_are_counter_differences_and_a_flap_between_samples_shows() {
        let mut h = History::default();
        let t0 = Instant::now();
        h.record(t0, &status(vec![backend("5301", 100, true, 0)]));
        h.record(
            t0 + Duration::from_secs(2),
            &status(vec![backend("5301", 150, true, 0)]),
        );
        // Down and back up between two samples: two transitions.
        h.record(
            t0 + Duration::from_secs(4),
            &status(vec![backend("5301", 150, true, 2)]),
        );
        h.record(
            t0 + Duration::from_secs(6),
            &status(vec![backend("5301", 160, false, 3)]),
        );
        h.record(
            t0 + Duration::from_secs(8),
            &status(vec![backend("5301", 160, false, 3)]),
        );
        let v = h.view(None);
        assert_eq!(v.last, 4);
        let s = series(&v, "5301");
        assert_eq!(s.first, 0);
        // The first sample has no earlier counter: the daemon's own rate.
        assert_eq!(s.pps, vec![7.0, 25.0, 0.0, 5.0, 0.0]);
        assert_eq!(s.down, vec![0, 0, 1, 1, 1]);
    }

    #[test]
    fn each_ring_is_bounded_and_a_client_gets_only_what_it_lacks() {
        let mut h = History::default();
        let t0 = Instant::now();
        for i in 0..POINTS as u64 + 50 {
            let at = t0 + Duration::from_secs(2 * i);
            h.record(at, &status(vec![backend("5301", 10 * i, true, 0)]));
        }
        let v = h.view(None);
        let s = series(&v, "5301");
        assert_eq!(s.pps.len(), POINTS);
        assert_eq!(s.down.len(), POINTS);
        assert_eq!(v.last, POINTS as i64 + 49);
        assert_eq!(s.first, 50, "the oldest were evicted");
        assert!(s.pps.iter().all(|&p| p == 5.0), "{:?}", s.pps);
        // A client that has everything up to the one before last.
        let since = h.view(Some(v.last as u64 - 1));
        let s = series(&since, "5301");
        assert_eq!((s.first, s.pps.len()), (v.last as u64, 1));
        // One that is up to date gets nothing; one far behind gets all kept.
        assert!(series(&h.view(Some(v.last as u64)), "5301").pps.is_empty());
        assert_eq!(series(&h.view(Some(3)), "5301").first, 50);
    }

    #[test]
    fn one_answer_is_bounded_however_many_backends() {
        let mut h = History::default();
        let many: Vec<BackendStatus> = (0..8192)
            .map(|i| backend(&i.to_string(), 0, true, 0))
            .collect();
        let s = status(many);
        let t0 = Instant::now();
        for i in 0..20 {
            h.record(t0 + Duration::from_secs(2 * i), &s);
        }
        let v = h.view(None);
        let total: usize = v.backends.iter().map(|s| s.pps.len()).sum();
        assert_eq!(v.backends.len(), 8192);
        assert!(total <= MAX_ANSWER_SAMPLES, "{total}");
        // The newest of each, ending at the last sample.
        let each = MAX_ANSWER_SAMPLES / 8192;
        assert!(v
            .backends
            .iter()
            .all(|s| s.pps.len() == each && s.first == 20 - each as u64));
        // A client that is up to date gets the new sample of every backend.
        assert!(h.view(Some(18)).backends.iter().all(|s| s.pps.len() == 1));
    }

    #[test]
    fn a_backend_that_leaves_loses_its_history_and_a_new_one_starts_late() {
        let mut h = History::default();
        let t0 = Instant::now();
        let both = vec![backend("5301", 0, true, 0), backend("5302", 0, true, 0)];
        h.record(t0, &status(both.clone()));
        h.record(t0 + Duration::from_secs(2), &status(both));
        // A reload removed 5302 (listed as removed a while) and added 5303.
        let mut removed = backend("5302", 0, true, 0);
        removed.state = BackendState::Removed;
        h.record(
            t0 + Duration::from_secs(4),
            &status(vec![
                backend("5301", 0, true, 0),
                removed,
                backend("5303", 0, true, 0),
            ]),
        );
        let v = h.view(None);
        let names: Vec<&str> = v.backends.iter().map(|s| s.backend.as_str()).collect();
        assert_eq!(names, ["5301", "5303"]);
        assert_eq!(h.rings.len(), 2, "5302's ring is freed");
        assert_eq!((series(&v, "5303").first, v.last), (2, 2));
        // Back again later: a new ring, not the old one's samples.
        h.record(
            t0 + Duration::from_secs(6),
            &status(vec![backend("5302", 0, true, 0)]),
        );
        let v = h.view(Some(0));
        assert_eq!(v.backends.len(), 1);
        assert_eq!(
            (series(&v, "5302").first, series(&v, "5302").pps.len()),
            (3, 1)
        );
    }

    #[test]
    fn the_first_tick_takes_a_sample_then_every_other() {
        let mut h = History::default();
        let due: Vec<bool> = (0..5).map(|_| h.due()).collect();
        assert_eq!(due, [true, false, true, false, true]);
    }
}
