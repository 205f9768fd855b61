//! The steps of [`State::plan_with`]: one plan in the making, frontend by
//! frontend, then what the whole plan needs (removed frontends, lingering
//! keys, port flags, the order of moves).

use std::collections::{BTreeMap, BTreeSet};

use super::{Live, State};
use crate::abi::{Endpoint, UDPLB_BACKEND_SLOTS, UDPLB_FRONTEND_IDS};
use crate::config::FrontendConfig;
use crate::plan::down::{held_down, listing};
use crate::plan::port_flags::port_flag_changes;
use crate::plan::values::{
    backend_value, frontend_entries, quic_entries, reply_entries, retired_value, ring,
};
use crate::plan::{Down, Plan};

/// Lowest numbers in 0..limit that are not in `taken`.
struct Allocator {
    taken: BTreeSet<u32>,
    next: u32,
    limit: u32,
}

impl Allocator {
    fn new(limit: u32) -> Allocator {
        Allocator {
            taken: BTreeSet::new(),
            next: 0,
            limit,
        }
    }

    fn alloc(&mut self) -> u32 {
        while self.taken.contains(&self.next) {
            self.next += 1;
        }
        assert!(
            self.next < self.limit,
            "allocator exhausted: validation should prevent this"
        );
        self.taken.insert(self.next);
        self.next
    }
}

/// A plan from `old` in the making, and the state it leads to.
pub(super) struct Planner<'a> {
    old: &'a State,
    plan: Plan,
    next: State,
    /// Reply keys of the backends this plan removes.
    removed: BTreeSet<Endpoint>,
    ids: Allocator,
    slots: Allocator,
}

impl<'a> Planner<'a> {
    pub(super) fn new(old: &'a State) -> Planner<'a> {
        let mut ids = Allocator::new(UDPLB_FRONTEND_IDS);
        let mut slots = Allocator::new(UDPLB_BACKEND_SLOTS);
        // Everything the old state uses stays taken while we allocate, so
        // nothing is reused within one plan.
        for live in old.frontends.values() {
            ids.taken.insert(live.id);
            slots.taken.extend(live.slots.values());
        }
        Planner {
            old,
            plan: Plan::default(),
            next: State::default(),
            removed: BTreeSet::new(),
            ids,
            slots,
        }
    }

    /// Plans frontend `fe` (as its ring is built), configured as
    /// `configured`: no write if the maps already hold it (the next state
    /// takes its new listing), else its backends, QUIC server IDs, a new
    /// ring in a slot it does not read and the switch to it, and the
    /// retirement of the backends it lost.
    pub(super) fn plan_frontend(
        &mut self,
        fe: &FrontendConfig,
        configured: &FrontendConfig,
        down: &Down,
    ) {
        let old = self.old.frontends.get(&fe.listen);
        let shown = listing(configured, down);
        let held = held_down(fe, down);
        if let Some(old) = old.filter(|o| o.config == *fe && o.down == held) {
            let kept = Live {
                listing: shown,
                ..old.clone()
            };
            self.next.frontends.insert(fe.listen, kept);
            return;
        }
        let (id, ring_id) = self.id_and_ring(old);
        let mut live = Live {
            id,
            ring_id,
            config: fe.clone(),
            slots: BTreeMap::new(),
            fingerprint: 0,
            ring_size: 0,
            down: held,
            listing: shown,
        };
        self.place_backends(fe, old, &mut live);
        self.update_quic_servers(fe, old, &live);
        self.ring_and_switch(fe, &mut live);
        self.plan.changes.push(describe(old, &live));
        if let Some(old) = old {
            self.retire_removed_backends(old, &live);
        }
        self.next.frontends.insert(fe.listen, live);
    }

    /// A frontend's id and the ring id its new ring goes to: a kept
    /// frontend keeps its id and flips to its other ring; a new one gets a
    /// fresh id (its cursors and counters reset) and the first of its two.
    fn id_and_ring(&mut self, old: Option<&Live>) -> (u32, u32) {
        match old {
            Some(o) => (o.id, o.ring_id ^ 1),
            None => {
                let id = self.ids.alloc();
                self.plan.new_frontend_ids.push(id);
                (id, 2 * id)
            }
        }
    }

    /// Gives each backend of `fe` its slot: the one it had in this
    /// frontend, or a fresh one, whose counters start at zero and whose
    /// reply entries are written. Writes the backends-map values that
    /// change.
    fn place_backends(&mut self, fe: &FrontendConfig, old: Option<&Live>, live: &mut Live) {
        let keys = fe.listen.endpoints();
        for b in &fe.backends {
            let kept = old.and_then(|o| o.slots.get(&b.id()).copied());
            let slot = kept.unwrap_or_else(|| self.slots.alloc());
            live.slots.insert(b.id(), slot);
            if kept.is_none() {
                self.plan.zero_counters.push(slot);
                (self.plan.replies).extend(reply_entries(&keys, b, live.id, slot));
            }
            let value = backend_value(fe, live.id, b, live.down.contains(&b.id()));
            let was = old.and_then(|o| {
                let x = o.config.backends.iter().find(|x| x.id() == b.id())?;
                Some(backend_value(&o.config, o.id, x, o.down.contains(&x.id())))
            });
            if was != Some(value) {
                self.plan.backends.push((slot, value));
            }
        }
    }

    /// Writes the QUIC server IDs of `fe` that are new or point elsewhere,
    /// and deletes those it no longer has.
    fn update_quic_servers(&mut self, fe: &FrontendConfig, old: Option<&Live>, live: &Live) {
        let old_quic = old
            .map(|o| quic_entries(&o.config, o.id, &o.slots))
            .unwrap_or_default();
        let new_quic = quic_entries(fe, live.id, &live.slots);
        self.plan.quic_servers.extend(
            (new_quic.iter())
                .filter(|(k, t)| old_quic.get(k) != Some(t))
                .map(|(k, t)| (*k, *t)),
        );
        (self.plan.delete_quic_servers)
            .extend(old_quic.keys().filter(|k| !new_quic.contains_key(k)));
    }

    /// Writes the ring of `fe` into `live`'s ring id, and the frontend
    /// entries, one per key, that switch to it.
    fn ring_and_switch(&mut self, fe: &FrontendConfig, live: &mut Live) {
        let (ring, fingerprint) = ring(fe, &live.slots);
        live.fingerprint = fingerprint;
        live.ring_size = ring.len() as u32;
        (self.plan.frontends).extend(frontend_entries(fe, live.id, live.ring_id, &ring));
        self.plan.rings.push((live.ring_id, ring));
    }

    /// Backends `old` had and `live` has not: their slots refuse pins and
    /// CID routes ([`retired_value`]), and their reply keys linger.
    fn retire_removed_backends(&mut self, old: &Live, live: &Live) {
        let keys = old.config.listen.endpoints();
        for b in &old.config.backends {
            if !live.slots.contains_key(&b.id()) {
                let slot = old.slots[&b.id()];
                (self.removed).extend(reply_entries(&keys, b, live.id, slot).map(|(k, _)| k));
                (self.plan.backends).push((slot, retired_value(&old.config, live.id, b)));
            }
        }
    }

    /// The old state's frontends that the configuration no longer has:
    /// their keys and both rings go, their backends retire, and their
    /// reply keys linger.
    pub(super) fn remove_unconfigured_frontends(&mut self) {
        for (listen, old) in &self.old.frontends {
            if self.next.frontends.contains_key(listen) {
                continue;
            }
            let keys = listen.endpoints();
            self.plan.delete_frontends.extend(keys.iter().copied());
            for b in &old.config.backends {
                let slot = old.slots[&b.id()];
                (self.removed).extend(reply_entries(&keys, b, old.id, slot).map(|(k, _)| k));
                (self.plan.backends).push((slot, retired_value(&old.config, old.id, b)));
            }
            self.plan.delete_rings.extend([2 * old.id, 2 * old.id + 1]);
            (self.plan.delete_quic_servers)
                .extend(quic_entries(&old.config, old.id, &old.slots).into_keys());
            self.plan.changes.push(format!("removed frontend {listen}"));
        }
    }

    /// Removed backends' reply keys linger, old ones stay lingering,
    /// unless the new configuration uses the key again (a backend that
    /// moved to another frontend, or came back): this plan writes its new
    /// reply entry, which must not be deleted.
    pub(super) fn linger_removed_reply_keys(&mut self) {
        let rewritten: BTreeSet<Endpoint> = self.plan.replies.iter().map(|(k, _)| *k).collect();
        self.next.lingering = (self.old.lingering.iter().chain(&self.removed))
            .filter(|k| !rewritten.contains(k))
            .copied()
            .collect();
    }

    /// A key that moved from a removed frontend to a new one (a port-only
    /// frontend rewritten as 0.0.0.0:PORT, say) is switched, not deleted.
    pub(super) fn keep_switched_keys(&mut self) {
        let switched: BTreeSet<Endpoint> = self.plan.frontends.iter().map(|(k, _)| *k).collect();
        self.plan.delete_frontends.retain(|k| !switched.contains(k));
    }

    /// The port flags of the old and new state before the switch, the new
    /// state's after it (see [`port_flag_changes`]).
    pub(super) fn set_port_flags(&mut self) {
        (self.plan.port_flags, self.plan.port_flags_after) =
            port_flag_changes(self.old, &self.next);
    }

    /// Moves the reply keys that change frontend, with the switches and
    /// deletions around them, into [`Plan::moves`] (see
    /// [`State::order_moves`]).
    pub(super) fn order_moves(&mut self) {
        self.old.order_moves(&mut self.plan, &self.next);
    }

    /// The plan, and the state after it.
    pub(super) fn done(self) -> (Plan, State) {
        (self.plan, self.next)
    }
}

/// The change line of a frontend that is new or changed.
fn describe(old: Option<&Live>, new: &Live) -> String {
    let (listen, sched) = (new.config.listen, new.config.sched.name());
    match old {
        None => format!("frontend {listen} -> {} ({sched})", new.listing),
        Some(o) => format!(
            "frontend {listen}: {} ({}) -> {} ({sched})",
            o.listing,
            o.config.sched.name(),
            new.listing,
        ),
    }
}
