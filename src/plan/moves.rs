//! The order of moves: a backend's reply keys that change frontend are
//! rewritten between the switch of the frontend that loses them and the
//! switch of the one that takes them (where backends swapped between
//! frontends allow no such order, the keys go first).

use std::collections::{BTreeMap, BTreeSet};

use super::values::reply_entries;
use super::{Op, Plan, State};
use crate::abi::Endpoint;

impl State {
    /// Takes the reply entries of keys this state already has, the switch
    /// of the frontends that take them and the deletion of the removed
    /// frontends that lose them out of `plan`, into [`Plan::moves`], in an
    /// order where each key is written after its old frontend switched and
    /// before its new one does. Backends swapped between frontends make a
    /// cycle no order serves: the rest of the keys go first then.
    pub(super) fn order_moves(&self, plan: &mut Plan, next: &State) {
        // The old frontend of each reply key this state has (lingering
        // keys: none).
        let mut owner: BTreeMap<Endpoint, Option<u32>> =
            self.lingering.iter().map(|k| (*k, None)).collect();
        for old in self.frontends.values() {
            let keys = old.config.listen.endpoints();
            for b in &old.config.backends {
                let slot = old.slots[&b.id()];
                owner.extend(reply_entries(&keys, b, old.id, slot).map(|(k, _)| (k, Some(old.id))));
            }
        }
        let (mut moved, new): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.replies)
            .into_iter()
            .partition(|(k, _)| owner.contains_key(k));
        plan.replies = new;
        let takers: BTreeSet<u32> = moved.iter().map(|(_, t)| t.frontend_id).collect();
        let (mut taking, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.frontends)
            .into_iter()
            .partition(|(_, f)| takers.contains(&f.id));
        plan.frontends = rest;
        let mut switched: BTreeSet<u32> = plan.frontends.iter().map(|(_, f)| f.id).collect();
        // Removed frontends that lose a key stop first.
        let losers: BTreeSet<u32> = moved.iter().filter_map(|(k, _)| owner[k]).collect();
        for (listen, old) in &self.frontends {
            if next.frontends.contains_key(listen) || !losers.contains(&old.id) {
                continue;
            }
            let keys = listen.endpoints();
            let (gone, kept) = std::mem::take(&mut plan.delete_frontends)
                .into_iter()
                .partition(|k| keys.contains(k));
            plan.delete_frontends = kept;
            plan.moves.extend(gone.into_iter().map(Op::DeleteFrontend));
            switched.insert(old.id);
        }
        while !moved.is_empty() || !taking.is_empty() {
            let (ready, wait): (Vec<_>, Vec<_>) = moved
                .into_iter()
                .partition(|(k, _)| owner[k].is_none_or(|id| switched.contains(&id)));
            moved = wait;
            let waiting: BTreeSet<u32> = moved.iter().map(|(_, t)| t.frontend_id).collect();
            let (go, stay): (Vec<_>, Vec<_>) = taking
                .into_iter()
                .partition(|(_, f)| !waiting.contains(&f.id));
            taking = stay;
            if ready.is_empty() && go.is_empty() {
                // A cycle: the keys, then the frontends.
                plan.moves
                    .extend(moved.drain(..).map(|(k, t)| Op::Reply(k, t)));
                continue;
            }
            plan.moves
                .extend(ready.into_iter().map(|(k, t)| Op::Reply(k, t)));
            switched.extend(go.iter().map(|(_, f)| f.id));
            plan.moves
                .extend(go.into_iter().map(|(k, f)| Op::Frontend(k, f)));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::test_configs::cfg;
    use crate::plan::{Op, Plan, State};

    #[test]
    fn a_backend_moving_between_frontends_keeps_a_reply_entry() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877", "53=5353"]));
        let (plan, _) = s1.plan(&cfg(&["9875=9876", "53=5353,9877"]));
        assert!(plan.moves.iter().any(
            |op| matches!(op, Op::Reply(k, t) if k.port() == 9877 && t.frontend.port() == 53)
        ));
        assert!(!plan.delete_replies.iter().any(|k| k.port() == 9877));
        // 9875 stops sending to 9877, then its replies go back from 53,
        // then 53 starts sending to it.
        let ops: Vec<Op> = plan.ops().collect();
        let at = |f: &dyn Fn(&Op) -> bool| ops.iter().position(f).expect("op in the plan");
        let reply = at(&|op| matches!(op, Op::Reply(k, _) if k.port() == 9877));
        let from = at(&|op| matches!(op, Op::Frontend(k, _) if k.port() == 9875));
        let to = at(&|op| matches!(op, Op::Frontend(k, _) if k.port() == 53));
        assert!(from < reply && reply < to, "{ops:?}");
    }

    /// Where op `f` is in `plan` (the first one it matches).
    fn position(plan: &Plan, f: impl Fn(&Op) -> bool) -> usize {
        let ops: Vec<Op> = plan.ops().collect();
        ops.iter()
            .position(f)
            .unwrap_or_else(|| panic!("not in {ops:?}"))
    }

    fn reply_at(plan: &Plan, port: u16) -> usize {
        position(plan, |op| matches!(op, Op::Reply(k, _) if k.port() == port))
    }

    fn switch_at(plan: &Plan, port: u16) -> usize {
        position(
            plan,
            |op| matches!(op, Op::Frontend(k, _) if k.port() == port),
        )
    }

    /// A chain of moves (9877 from 9875 to 53, 5354 from 53 to 54): each
    /// key is written after the frontend it leaves and before the one it
    /// joins, so 53 switches between the two keys.
    #[test]
    fn moves_in_a_chain_are_ordered() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877", "53=5353,5354", "54=5454"]));
        let (plan, _) = s1.plan(&cfg(&["9875=9876", "53=5353,9877", "54=5454,5354"]));
        let (r9877, r5354) = (reply_at(&plan, 9877), reply_at(&plan, 5354));
        let (f9875, f53, f54) = (
            switch_at(&plan, 9875),
            switch_at(&plan, 53),
            switch_at(&plan, 54),
        );
        assert!(
            f9875 < r9877 && r9877 < f53,
            "{:?}",
            plan.ops().collect::<Vec<_>>()
        );
        assert!(
            f53 < r5354 && r5354 < f54,
            "{:?}",
            plan.ops().collect::<Vec<_>>()
        );
    }

    /// Two backends swapped between two frontends: no order serves both,
    /// but every op is written, keys first.
    #[test]
    fn swapped_backends_are_all_written() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876", "53=5353"]));
        let (plan, _) = s1.plan(&cfg(&["9875=5353", "53=9876"]));
        let (r9876, r5353) = (reply_at(&plan, 9876), reply_at(&plan, 5353));
        let (f9875, f53) = (switch_at(&plan, 9875), switch_at(&plan, 53));
        assert!(r9876.max(r5353) < f9875.min(f53));
    }

    /// A removed frontend whose backend another one takes is deleted
    /// before the key moves; another removed frontend only after the
    /// switch, as before.
    #[test]
    fn a_removed_frontend_losing_a_backend_goes_first() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876", "9885=9886"]));
        let (plan, _) = s1.plan(&cfg(&["53=9876"]));
        let gone = |port: u16| {
            position(
                &plan,
                |op| matches!(op, Op::DeleteFrontend(k) if k.port() == port),
            )
        };
        let (r9876, f53) = (reply_at(&plan, 9876), switch_at(&plan, 53));
        assert!(gone(9875) < r9876 && r9876 < f53);
        assert!(f53 < gone(9885));
    }
}
