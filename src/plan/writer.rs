//! [`MapWriter`]: the state the maps are in, and a plan that failed part-way,
//! finished before anything else is written.

use std::collections::BTreeSet;

use super::{apply_from, Down, Maps, Plan, State};
use crate::abi::Endpoint;
use crate::config::Config;

/// The maps as userspace wrote them: the [`State`] that plans start from,
/// kept in step with the maps whatever happens to a plan.
///
/// A plan that fails part-way leaves the maps between two states: some
/// frontends may already read their new ring, whose twin the old state
/// calls idle. Planning again from the old state would write a ring that
/// packets are reading. So the state moves to the plan's target at once,
/// and the rest of the failed plan (from the step that failed; every write
/// is idempotent) is finished before anything else is written. Then no
/// plan ever writes a ring a frontend entry points to, and the maps end up
/// exactly as a clean apply would leave them.
#[derive(Debug, Default)]
pub struct MapWriter {
    state: State,
    /// A plan that stopped part-way, and the step to resume at.
    unfinished: Option<(Plan, usize)>,
}

impl MapWriter {
    /// The state the maps hold, or are on their way to if a plan failed.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Finishes a plan that failed earlier, then plans the change to
    /// `config` and applies it. Returns the changes made, one line each
    /// (none: the maps already held `config`). On error the maps are on
    /// their way to `config` (or, if finishing the earlier plan failed,
    /// still to that plan's target), and the next call finishes the job.
    pub fn apply(&mut self, maps: &impl Maps, config: &Config) -> anyhow::Result<Vec<String>> {
        self.apply_with(maps, config, &Down::new())
    }

    /// As [`apply`](Self::apply), with the backends in `down` out of their
    /// rings: a health transition is a plan like a reload's.
    pub fn apply_with(
        &mut self,
        maps: &impl Maps,
        config: &Config,
        down: &Down,
    ) -> anyhow::Result<Vec<String>> {
        let mut changes = self.finish(maps)?;
        let (plan, next) = self.state.plan_with(config, down);
        changes.extend(self.run(maps, plan, next)?);
        Ok(changes)
    }

    /// Deletes the lingering reply entries `keys` (see [`State::expire`]),
    /// after finishing a plan that failed earlier.
    pub fn expire(&mut self, maps: &impl Maps, keys: &BTreeSet<Endpoint>) -> anyhow::Result<()> {
        self.finish(maps)?;
        let (plan, next) = self.state.expire(keys);
        self.run(maps, plan, next).map(drop)
    }

    /// Writes the rest of a plan that failed part-way, if there is one;
    /// returns its changes.
    pub fn finish(&mut self, maps: &impl Maps) -> anyhow::Result<Vec<String>> {
        let Some((plan, step)) = self.unfinished.take() else {
            return Ok(Vec::new());
        };
        match apply_from(maps, &plan, step) {
            Ok(()) => Ok(plan.changes),
            Err(i) => {
                self.unfinished = Some((plan, i.step));
                Err(i
                    .error
                    .context("finishing the previous, interrupted change"))
            }
        }
    }

    /// Applies `plan`, which takes the maps to `next`; returns its changes.
    fn run(&mut self, maps: &impl Maps, plan: Plan, next: State) -> anyhow::Result<Vec<String>> {
        self.state = next;
        match apply_from(maps, &plan, 0) {
            Ok(()) => Ok(plan.changes),
            Err(i) => {
                self.unfinished = Some((plan, i.step));
                Err(i.error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fake::FakeMaps;
    use crate::plan::test_configs::cfg;

    /// Three configurations that flip rings, add, remove and move
    /// frontends and backends, with wildcard frontends (two keys each, so a
    /// switch can stop between them).
    fn o_n_c() -> [Config; 3] {
        [
            cfg(&["9875=9876,9877", "53=5353", "0.0.0.0:7000=7001"]),
            cfg(&["9875=9876@3,9878", "54=5454", "0.0.0.0:7000=7001,7002"]),
            cfg(&["9875=9876,9879", "53=5353", "0.0.0.0:7000=7002"]),
        ]
    }

    #[test]
    fn a_plan_that_fails_at_any_step_leaves_the_next_one_safe() {
        let [o, n, c] = o_n_c();
        let clean = FakeMaps::default();
        let mut t = MapWriter::default();
        for config in [&o, &c] {
            t.apply(&clean, config).unwrap();
        }
        t.expire(&clean, &t.state().lingering().clone()).unwrap();
        let steps = State::default().plan(&o).1.plan(&n).0.ops().count();
        let mut failures = Vec::new();
        for k in 0..steps {
            let maps = FakeMaps::default();
            let mut t = MapWriter::default();
            t.apply(&maps, &o).unwrap();
            maps.fail_at.set(Some(maps.written.get() + k));
            assert!(t.apply(&maps, &n).is_err(), "step {k} did not fail");
            maps.fail_at.set(None);
            t.apply(&maps, &c).unwrap();
            t.expire(&maps, &t.state().lingering().clone()).unwrap();
            let violations = maps.violations.borrow();
            if !violations.is_empty() {
                failures.push(format!("failure at step {k}: {}", violations.join("; ")));
            } else if maps.view() != clean.view() {
                failures.push(format!(
                    "failure at step {k}: the maps differ from a clean apply"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {steps} cases:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
