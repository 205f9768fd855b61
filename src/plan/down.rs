//! The health checks' view: which backends are down, and what the rings
//! and the change lines make of it.

use std::collections::BTreeSet;

use super::BackendId;
use crate::config::{Config, FrontendConfig, Listen, OnAllDown, Sched};

/// The backends the health checks hold down.
pub type Down = BTreeSet<(Listen, BackendId)>;

/// Whether frontend `fe` has backends with weight and every one of them
/// is in `down`.
pub fn all_down(fe: &FrontendConfig, down: &Down) -> bool {
    let mut weighted = fe.backends.iter().filter(|b| b.weight > 0).peekable();
    weighted.peek().is_some() && weighted.all(|b| down.contains(&(fe.listen, b.id())))
}

/// What the rings are built from: `config` with every backend in `down`
/// at weight 0 in the ring, as a drained backend (its slot, counters and
/// reply entries stay, so its replies are still translated, and Maglev
/// moves only its own flows). A frontend whose backends are all down keeps
/// them all (fail open), unless its `on_all_down` is `drop`: then its ring
/// is empty. Health settings are cleared: they are the daemon's, and a
/// change to them alone must not rebuild a ring.
pub fn effective(config: &Config, down: &Down) -> Config {
    let mut out = config.clone();
    for fe in &mut out.frontends {
        let all = all_down(fe, down);
        if !all || fe.health.on_all_down == OnAllDown::Drop {
            let listen = fe.listen;
            for b in &mut fe.backends {
                if all || down.contains(&(listen, b.id())) {
                    b.weight = 0;
                }
            }
        }
        fe.health = Default::default();
    }
    out
}

/// The backends of `fe` in `down` where that matters beyond the ring: where
/// flows are pinned (a Maglev or quic frontend with a flow table), and on
/// quic frontends, where CID routes avoid down backends (see
/// [`backend_value`](super::values::backend_value)). A change to this set
/// rewrites the frontend.
pub(super) fn held_down(fe: &FrontendConfig, down: &Down) -> BTreeSet<BackendId> {
    let pins = (fe.sched.hashes() && fe.flow_timeout > 0) || fe.sched == Sched::Quic;
    (fe.backends.iter())
        .map(|b| b.id())
        .filter(|id| pins && down.contains(&(fe.listen, *id)))
        .collect()
}

/// A frontend's backends for the change lines: "9876, 9877@2 (down)".
/// Weights are the configured ones; a backend the health checks hold down
/// says "down" (its ring weight 0 is not the operator's drain, `@0`).
pub(super) fn listing(fe: &FrontendConfig, down: &Down) -> String {
    (fe.backends.iter())
        .map(|b| match down.contains(&(fe.listen, b.id())) {
            true => format!("{b} (down)"),
            false => b.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Defaults;
    use crate::plan::test_configs::{cfg, down, maglev};
    use crate::plan::State;

    /// Issue 24 item 6: after health took 51822 out, a reload that removed
    /// it printed `51821, 51822@0 (maglev) -> 51821`. Health's "down" is
    /// not the operator's weight 0, which still shows as `@0`.
    #[test]
    fn change_lines_say_down_for_health_and_at_0_for_a_drain() {
        let c = maglev(&["53=51821,51822@3"]);
        let (plan, up) = State::default().plan(&c);
        assert_eq!(plan.changes, ["frontend *:53 -> 51821, 51822@3 (maglev)"]);
        let (plan, held) = up.plan_with(&c, &down(&c, 0, &[51822]));
        assert_eq!(
            plan.changes,
            ["frontend *:53: 51821, 51822@3 (maglev) -> 51821, 51822@3 (down) (maglev)"]
        );
        let fewer = maglev(&["53=51821"]);
        let (plan, _) = held.plan_with(&fewer, &down(&c, 0, &[51822]));
        assert_eq!(
            plan.changes,
            ["frontend *:53: 51821, 51822@3 (down) (maglev) -> 51821 (maglev)"]
        );
        let drained = maglev(&["53=51821,51822@0"]);
        let (plan, _) = up.plan(&drained);
        assert_eq!(
            plan.changes,
            ["frontend *:53: 51821, 51822@3 (maglev) -> 51821, 51822@0 (maglev)"]
        );
    }

    #[test]
    fn a_down_backend_leaves_the_ring_and_keeps_its_slot_and_replies() {
        let c = cfg(&["9875=9876,9877,9878"]);
        let (_, up) = State::default().plan(&c);
        let (plan, state) = up.plan_with(&c, &down(&c, 0, &[9877]));
        // Only a new ring and the switch: no slot, counter or reply entry
        // is touched, so replies from 9877 are still translated.
        assert_eq!(plan.rings, vec![(1, vec![0, 2])]);
        assert!(plan.zero_counters.is_empty() && plan.replies.is_empty());
        assert!(plan.delete_replies.is_empty() && state.lingering().is_empty());
        assert_eq!(state.layout(&c), up.layout(&c), "same slots");
        // Back up: the original ring again.
        let (plan, back) = state.plan_with(&c, &Down::new());
        assert_eq!(plan.rings, vec![(0, vec![0, 1, 2])]);
        assert_eq!(back.fingerprints(&c), up.fingerprints(&c));
    }

    #[test]
    fn maglev_moves_only_the_down_backends_flows() {
        let c = Config::from_specs_with(
            &["53=1,2,3,4,5"],
            Defaults {
                sched: Sched::Maglev,
                table_size: 65537,
                ..Defaults::default()
            },
        )
        .unwrap();
        let (p0, s0) = State::default().plan(&c);
        let (p1, _) = s0.plan_with(&c, &down(&c, 0, &[3]));
        let (before, after) = (&p0.rings[0].1, &p1.rings[0].1);
        let down_slot = s0.layout(&c).frontends[0].1[2];
        let moved = (before.iter().zip(after))
            .filter(|(a, b)| a != b && **a != down_slot)
            .count();
        assert!(after.iter().all(|s| *s != down_slot));
        // Maglev's disruption beyond the removed backend's own share is
        // small (a few percent of the table).
        assert!(
            moved * 100 < before.len() * 3,
            "{moved} of {}",
            before.len()
        );
    }

    #[test]
    fn all_down_fails_open_or_drops_as_configured() {
        let mut c = cfg(&["9875=9876,9877,9878@0"]);
        let (_, up) = State::default().plan(&c);
        let all = down(&c, 0, &[9876, 9877]);
        assert!(all_down(&c.frontends[0], &all));
        assert!(!all_down(&c.frontends[0], &down(&c, 0, &[9876])));
        // Open: the ring as if all were up (the drained one stays drained).
        let (plan, _) = up.plan_with(&c, &all);
        assert!(plan.is_empty(), "{:?}", plan.changes);
        c.frontends[0].health.on_all_down = OnAllDown::Drop;
        let (plan, _) = up.plan_with(&c, &all);
        assert_eq!(plan.rings, vec![(1, vec![])]);
    }

    #[test]
    fn health_settings_alone_change_no_ring() {
        let c = cfg(&["9875=9876,9877"]);
        let (_, s) = State::default().plan(&c);
        let mut d = c.clone();
        d.set_check(&crate::config::CheckKind::Tcp { port: Some(80) });
        assert!(s.plan(&d).0.is_empty());
    }
}
