//! The program under test. Every use of udplb's kernel-facing API (MapWriter,
//! Datapath, Counters) is in this module. Outside it the test uses only
//! `Config::from_specs` (to validate) and the model (`ModelConfig::from_config`,
//! `model::run`), so a change to Config, MapWriter or Datapath touches this
//! module or the model's adapter and nothing else.

use super::support::runner::run_once;
use libbpf_rs::MapCore;
use udplb::config::Config;
use udplb::config::Hash;
use udplb::datapath::{Counters, Datapath};
use udplb::plan::{Layout, Maps as _, Op, State};

pub struct Program {
    dp: Datapath,
    /// What the maps hold, for the next reload plan.
    state: State,
    layout: Layout,
    pub shape: Vec<usize>,
    /// The configuration the maps hold, as (specs, maglev).
    pub holds: Option<(Vec<String>, Option<Hash>)>,
    /// How many configurations this datapath has held.
    pub configurations: u64,
}

impl Program {
    /// A freshly loaded datapath holding no configuration. It is loaded
    /// once and reconfigured for each configuration ([`Program::hold`]).
    pub fn load() -> Program {
        Program {
            dp: Datapath::load().expect("loading the datapath"),
            state: State::default(),
            layout: Layout { frontends: vec![] },
            shape: vec![],
            holds: None,
            configurations: 0,
        }
    }

    /// Makes the maps hold `config` (parsed from `specs`, `maglev`),
    /// unless they already do: the plan a reload applies, from whatever
    /// they held before, then the expiry of the removed backends'
    /// lingering reply entries, so that the maps hold `config` and
    /// nothing else, as a fresh load would (frontend ids and backend
    /// slots may differ; counters are compared as deltas).
    pub fn hold(&mut self, specs: &[String], maglev: Option<Hash>, config: &Config) {
        if self
            .holds
            .as_ref()
            .is_some_and(|(s, m)| s == specs && *m == maglev)
        {
            return;
        }
        let (plan, next) = self.state.plan(config);
        self.dp.apply(&plan).expect("writing the maps");
        let (expiry, next) = next.expire(&next.lingering().clone());
        self.dp.apply(&expiry).expect("expiring lingering replies");
        self.layout = next.layout(config);
        self.shape = config.frontends.iter().map(|f| f.backends.len()).collect();
        self.state = next;
        self.holds = Some((specs.to_vec(), maglev));
        self.configurations += 1;
    }

    /// Round-robin cursors back to zero (and reply counters, which are
    /// compared as deltas) and an empty flow table, as in a freshly loaded
    /// datapath: each batch of frames starts where the model's fresh state
    /// does.
    pub fn reset(&self) {
        for (id, _) in &self.layout.frontends {
            self.dp
                .write(Op::ResetFrontend(*id))
                .expect("resetting a round-robin cursor");
        }
        let flows = self.dp.flows_map();
        for key in flows.keys().collect::<Vec<_>>() {
            flows.delete(&key).expect("emptying the flow table");
        }
    }

    /// Every counter, summed over CPUs.
    pub fn counters(&self) -> Counters {
        self.dp.counters(&self.layout).expect("reading counters")
    }

    /// One BPF_PROG_TEST_RUN; `None`: no context.
    pub fn run(&self, ingress_ifindex: Option<u32>, frame: &[u8]) -> (u32, Vec<u8>) {
        run_once(self.dp.xdp_program(), frame, ingress_ifindex)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN (ingress {ingress_ifindex:?}): {e:#}"))
    }
}
