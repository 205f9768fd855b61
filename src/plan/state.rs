//! [`State`]: what userspace has put in the maps, frontend by frontend, and
//! the plans from it: to a new configuration (steps in `state/planner.rs`), or
//! deleting the lingering reply entries.

use std::collections::{BTreeMap, BTreeSet};

mod planner;

use super::port_flags::port_flag_changes;
use super::{Down, Plan};
use crate::abi::Endpoint;
use crate::config::{Config, FrontendConfig, Listen};
use planner::Planner;

/// A backend's identity within its frontend: (address, port).
pub type BackendId = (Option<std::net::IpAddr>, u16);

/// A configured frontend as the maps hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Live {
    pub(super) id: u32,
    /// The ring its frontend entries read: 2 * id or 2 * id + 1.
    pub(super) ring_id: u32,
    /// Its configuration as its ring is built (see
    /// [`effective`](super::effective)): down backends at weight 0, no
    /// health settings.
    pub(super) config: FrontendConfig,
    /// Backend (address, port) -> slot.
    pub(super) slots: BTreeMap<BackendId, u32>,
    /// The ring's fingerprint (see [`fingerprint`](super::hashes::fingerprint)).
    pub(super) fingerprint: u64,
    /// Entries in the ring.
    pub(super) ring_size: u32,
    /// Its backends the health checks hold down where that matters beyond
    /// the ring (see [`held_down`](super::down::held_down)): they take no
    /// pinned flows, and no CID routes while out of the ring.
    pub(super) down: BTreeSet<BackendId>,
    /// Its backends as the operator configured them, those health holds
    /// down marked so (see [`listing`](super::down::listing)): what the
    /// change lines show.
    pub(super) listing: String,
}

/// The maps' contents as the last plan leaves them (see
/// [`MapWriter`](super::MapWriter) for a plan that fails part-way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub(super) frontends: BTreeMap<Listen, Live>,
    /// Reply entries of removed backends, kept (with their port flags) so
    /// that replies already on their way are still translated; the daemon
    /// removes them a grace period later with [`State::expire`].
    pub(super) lingering: BTreeSet<Endpoint>,
}

/// Where each frontend's counters are, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub frontends: Vec<(u32, Vec<u32>)>,
}

impl State {
    /// The plan from this state to `config` with every backend up, and
    /// the state after it.
    pub fn plan(&self, config: &Config) -> (Plan, State) {
        self.plan_with(config, &Down::new())
    }

    /// The plan from this state to `config` with the backends in `down`
    /// out of their rings (see [`effective`](super::effective)), and the
    /// state after it.
    pub fn plan_with(&self, config: &Config, down: &Down) -> (Plan, State) {
        let as_built = super::effective(config, down);
        let mut planner = Planner::new(self);
        // `effective` keeps the frontends in order.
        for (fe, configured) in as_built.frontends.iter().zip(&config.frontends) {
            planner.plan_frontend(fe, configured, down);
        }
        planner.remove_unconfigured_frontends();
        planner.linger_removed_reply_keys();
        planner.keep_switched_keys();
        planner.set_port_flags();
        planner.order_moves();
        planner.done()
    }

    /// Reply keys of removed backends not yet expired.
    pub fn lingering(&self) -> &BTreeSet<Endpoint> {
        &self.lingering
    }

    /// The plan that deletes the lingering reply entries `keys` (those
    /// reused since are not lingering any more, and stay), and clears
    /// their ports' flags where nothing else uses them.
    pub fn expire(&self, keys: &BTreeSet<Endpoint>) -> (Plan, State) {
        let mut next = self.clone();
        next.lingering.retain(|k| !keys.contains(k));
        let mut plan = Plan {
            delete_replies: self.lingering.intersection(keys).copied().collect(),
            ..Plan::default()
        };
        (plan.port_flags, plan.port_flags_after) = port_flag_changes(self, &next);
        (plan, next)
    }

    /// Each frontend's ring fingerprint, in the order of `config` (which
    /// must be the one this state was planned for).
    pub fn fingerprints(&self, config: &Config) -> Vec<u64> {
        config
            .frontends
            .iter()
            .map(|fe| self.frontends[&fe.listen].fingerprint)
            .collect()
    }

    /// Each frontend's ring size, in the order of `config` (which must be
    /// the one this state was planned for).
    pub fn ring_sizes(&self, config: &Config) -> Vec<u32> {
        config
            .frontends
            .iter()
            .map(|fe| self.frontends[&fe.listen].ring_size)
            .collect()
    }

    /// Counter locations for `config` (which must be the one this state was
    /// planned for).
    pub fn layout(&self, config: &Config) -> Layout {
        let frontends = config
            .frontends
            .iter()
            .map(|fe| {
                let live = &self.frontends[&fe.listen];
                (
                    live.id,
                    fe.backends.iter().map(|b| live.slots[&b.id()]).collect(),
                )
            })
            .collect();
        Layout { frontends }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{
        Frontend, UDPLB_FRONTEND_IDS, UDPLB_PORT_BACKEND_ANY, UDPLB_PORT_FRONTEND_ANY,
        UDPLB_SCHED_RR,
    };
    use crate::plan::test_configs::{cfg, cfg_owned};
    use crate::plan::Op;

    #[test]
    fn first_plan_writes_everything_before_the_switch() {
        let (plan, state) = State::default().plan(&cfg(&["9875=9876,9877,9878"]));
        assert_eq!(plan.new_frontend_ids, vec![0]);
        assert_eq!(plan.zero_counters, vec![0, 1, 2]);
        let ports: Vec<u16> = plan.backends.iter().map(|(_, b)| b.ep.port()).collect();
        assert_eq!(ports, vec![9876, 9877, 9878]);
        assert_eq!(plan.rings, vec![(0, vec![0, 1, 2])]);
        assert_eq!(plan.frontends.len(), 2, "IPv4 and IPv6 wildcard keys");
        for (key, fe) in &plan.frontends {
            assert_eq!(key.port(), 9875);
            assert_eq!(
                *fe,
                Frontend {
                    id: 0,
                    ring_id: 0,
                    ring_size: 3,
                    sched: UDPLB_SCHED_RR,
                    flow_timeout_s: 0,
                    port_be: 9875u16.to_be(),
                    ring: [0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    ..Frontend::default()
                }
            );
        }
        assert_eq!(plan.replies.len(), 6);
        assert!(plan
            .replies
            .iter()
            .all(|(k, t)| t.frontend.port() == 9875 && k.port() != 9875));
        assert!(plan.delete_frontends.is_empty() && plan.delete_replies.is_empty());
        let layout = state.layout(&cfg(&["9875=9876,9877,9878"]));
        assert_eq!(layout.frontends, vec![(0, vec![0, 1, 2])]);
        let any = UDPLB_PORT_BACKEND_ANY as u8;
        assert_eq!(
            plan.port_flags,
            vec![
                (9875, UDPLB_PORT_FRONTEND_ANY as u8),
                (9876, any),
                (9877, any),
                (9878, any)
            ]
        );
        assert!(plan.port_flags_after.is_empty());
    }

    #[test]
    fn the_same_config_again_changes_nothing() {
        let c = cfg(&["9875=9876,9877", "53=5353"]);
        let (_, s1) = State::default().plan(&c);
        let (plan, s2) = s1.plan(&c);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan, Plan::default());
        assert_eq!(s1.frontends, s2.frontends);
    }

    #[test]
    fn reweighting_flips_the_ring_and_keeps_slots() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877"]));
        let (plan, s2) = s1.plan(&cfg(&["9875=9876@3,9877"]));
        assert_eq!(plan.rings.len(), 1);
        assert_eq!(plan.rings[0].0, 1, "the idle ring");
        assert_eq!(plan.rings[0].1.iter().filter(|&&s| s == 0).count(), 3);
        assert!(
            plan.zero_counters.is_empty(),
            "counters of kept backends survive"
        );
        assert!(plan.replies.is_empty() && plan.delete_replies.is_empty());
        assert_eq!(plan.backends.len(), 1, "only the reweighted backend");
        assert!(plan
            .frontends
            .iter()
            .all(|(_, f)| f.ring_id == 1 && f.ring_size == 4));
        let (plan, _) = s2.plan(&cfg(&["9875=9876,9877"]));
        assert_eq!(plan.rings[0].0, 0, "and back");
    }

    #[test]
    fn removed_backends_and_frontends_are_cleaned_up_and_not_reused_at_once() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877", "53=5353"]));
        let (plan, s2) = s1.plan(&cfg(&["9875=9876,9878"]));
        // 9877 gone: its reply keys linger; 9878 gets a new slot (not
        // 9877's, nor 53's, freed in this same plan).
        assert_eq!(plan.zero_counters, vec![3]);
        assert!(plan.delete_replies.is_empty());
        let mut lingering: Vec<u16> = s2.lingering().iter().map(|k| k.port()).collect();
        lingering.sort();
        assert_eq!(
            lingering,
            vec![5353, 5353, 9877, 9877],
            "IPv4 and IPv6 keys"
        );
        assert_eq!(plan.delete_frontends.len(), 2);
        assert_eq!(plan.delete_rings, vec![2, 3]);
        assert!(plan.changes.iter().any(|c| c == "removed frontend *:53"));
        // Ports still in use keep their flags (lingering reply keys too);
        // freed ones are cleared after the switch, new ones set before it.
        assert_eq!(plan.port_flags, vec![(9878, UDPLB_PORT_BACKEND_ANY as u8)]);
        assert_eq!(plan.port_flags_after, vec![(53, 0)]);
        // The grace period over, they go, and so do their ports' flags.
        let (expiry, s2) = s2.expire(&s2.lingering().clone());
        assert_eq!(expiry.delete_replies.len(), 4);
        assert_eq!(expiry.port_flags_after, vec![(5353, 0), (9877, 0)]);
        assert!(expiry.port_flags.is_empty() && s2.lingering().is_empty());
        // The next plan may reuse them.
        let (plan, _) = s2.plan(&cfg(&["9875=9876,9878", "54=5454,5455"]));
        assert_eq!(plan.new_frontend_ids, vec![1]);
        assert_eq!(plan.zero_counters, vec![1, 2]);
    }

    #[test]
    fn removed_backends_reply_entries_linger_until_expired_unless_reused() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877"]));
        let (_, s2) = s1.plan(&cfg(&["9875=9876"]));
        let gone = s2.lingering().clone();
        assert_eq!(gone.len(), 2, "{gone:?}");
        // Another reload within the grace period keeps them lingering...
        let (plan, s3) = s2.plan(&cfg(&["9875=9876", "53=5353"]));
        assert_eq!(s3.lingering(), &gone);
        assert!(plan.delete_replies.is_empty() && plan.port_flags_after.is_empty());
        // ...until a configuration uses 9877 again: then it is live, and
        // expiring the old keys leaves it alone.
        let (plan, s4) = s3.plan(&cfg(&["9875=9876", "53=5353,9877"]));
        assert!(plan
            .moves
            .iter()
            .any(|op| matches!(op, Op::Reply(k, _) if k.port() == 9877)));
        assert!(s4.lingering().is_empty());
        let (expiry, _) = s4.expire(&gone);
        assert!(expiry.delete_replies.is_empty(), "{expiry:?}");
        assert!(expiry.port_flags_after.is_empty(), "{expiry:?}");
    }

    #[test]
    fn replacing_every_frontend_at_the_limit_fits() {
        let specs = |base: usize| -> Vec<String> {
            (0..crate::abi::MAX_FRONTENDS)
                .map(|i| format!("{}={}", base + i, base + 1000 + i))
                .collect()
        };
        let (_, s1) = State::default().plan(&cfg_owned(specs(10000)));
        let (plan, _) = s1.plan(&cfg_owned(specs(20000)));
        assert_eq!(plan.new_frontend_ids.len(), crate::abi::MAX_FRONTENDS);
        assert!(plan
            .new_frontend_ids
            .iter()
            .all(|&id| id < UDPLB_FRONTEND_IDS));
    }

    #[test]
    fn a_key_moving_to_a_new_frontend_is_not_deleted() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876"]));
        let (plan, _) = s1.plan(&cfg(&["0.0.0.0:9875=9876"]));
        let v4 = Endpoint::ipv4(None, 9875);
        assert!(plan
            .ops()
            .any(|op| matches!(op, Op::Frontend(k, _) if k == v4)));
        let deleted: Vec<Endpoint> = (plan.ops())
            .filter_map(|op| match op {
                Op::DeleteFrontend(k) => Some(k),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec![Endpoint::ipv6(None, 9875)]);
    }
}
