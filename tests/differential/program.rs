//! The program under test. Every use of udplb's kernel-facing API (Tables,
//! Datapath, Counters) is in this module. Outside it the test uses only
//! `Config::from_specs` (to validate) and the model (`ModelConfig::from_config`,
//! `model::run`), so a change to Config, Tables or Datapath touches this
//! module or the model's adapter and nothing else.

use super::support::runner::run_once;
use libbpf_rs::MapCore;
use udplb::abi::{FLOW_COUNTER_COUNT, REASON_COUNT};
use udplb::config::Config;
use udplb::datapath::Datapath;
use udplb::plan::{Layout, Maps as _, Op, State};

/// Counters summed over CPUs: reasons, (packets, bytes) per backend per
/// frontend, (packets, bytes) of replies per frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    pub reasons: Vec<u64>,
    pub backends: Vec<Vec<(u64, u64)>>,
    pub replies: Vec<(u64, u64)>,
    /// Passive signals per backend per frontend: (icmp_errors, replies).
    pub passive: Vec<Vec<(u64, u64)>>,
    /// Flow table events (`enum udplb_flow_counter`).
    pub flow_events: Vec<u64>,
}

impl Counts {
    pub fn zero(shape: &[usize]) -> Counts {
        Counts {
            reasons: vec![0; REASON_COUNT],
            backends: shape.iter().map(|&n| vec![(0, 0); n]).collect(),
            replies: vec![(0, 0); shape.len()],
            passive: shape.iter().map(|&n| vec![(0, 0); n]).collect(),
            flow_events: vec![0; FLOW_COUNTER_COUNT],
        }
    }

    /// Adds `o` to `self`, counter by counter.
    pub fn add(&mut self, o: &Counts) {
        for (a, b) in self.reasons.iter_mut().zip(&o.reasons) {
            *a += b;
        }
        for (x, y) in self.backends.iter_mut().zip(&o.backends) {
            for (a, b) in x.iter_mut().zip(y) {
                a.0 += b.0;
                a.1 += b.1;
            }
        }
        for (a, b) in self.replies.iter_mut().zip(&o.replies) {
            a.0 += b.0;
            a.1 += b.1;
        }
        for (x, y) in self.passive.iter_mut().zip(&o.passive) {
            for (a, b) in x.iter_mut().zip(y) {
                a.0 += b.0;
                a.1 += b.1;
            }
        }
        for (a, b) in self.flow_events.iter_mut().zip(&o.flow_events) {
            *a += b;
        }
    }

    pub fn minus(&self, o: &Counts) -> Counts {
        let d = |a: (u64, u64), b: (u64, u64)| (a.0.wrapping_sub(b.0), a.1.wrapping_sub(b.1));
        Counts {
            reasons: self
                .reasons
                .iter()
                .zip(&o.reasons)
                .map(|(a, b)| a.wrapping_sub(*b))
                .collect(),
            backends: self
                .backends
                .iter()
                .zip(&o.backends)
                .map(|(x, y)| x.iter().zip(y).map(|(a, b)| d(*a, *b)).collect())
                .collect(),
            replies: self
                .replies
                .iter()
                .zip(&o.replies)
                .map(|(a, b)| d(*a, *b))
                .collect(),
            passive: self
                .passive
                .iter()
                .zip(&o.passive)
                .map(|(x, y)| x.iter().zip(y).map(|(a, b)| d(*a, *b)).collect())
                .collect(),
            flow_events: (self.flow_events.iter().zip(&o.flow_events))
                .map(|(a, b)| a.wrapping_sub(*b))
                .collect(),
        }
    }
}

pub struct Program {
    dp: Datapath,
    /// What the maps hold, for the next reload plan.
    state: State,
    layout: Layout,
    pub shape: Vec<usize>,
    /// The configuration the maps hold, as (specs, maglev).
    pub holds: Option<(Vec<String>, bool)>,
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
    pub fn hold(&mut self, specs: &[String], maglev: bool, config: &Config) {
        if self
            .holds
            .as_ref()
            .is_some_and(|(s, m)| s == specs && *m == maglev)
        {
            return;
        }
        let (plan, next) = self.state.plan(config);
        self.dp.apply(&plan).expect("writing the tables");
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

    pub fn counters(&self) -> Counts {
        let c = self.dp.counters(&self.layout).expect("reading counters");
        Counts {
            reasons: c.reasons.to_vec(),
            backends: c
                .backends
                .iter()
                .map(|f| f.iter().map(|b| (b.packets, b.bytes)).collect())
                .collect(),
            replies: c.replies.iter().map(|r| (r.packets, r.bytes)).collect(),
            passive: c
                .passive
                .iter()
                .map(|f| f.iter().map(|p| (p.icmp_errors, p.replies)).collect())
                .collect(),
            flow_events: self
                .dp
                .flow_counters()
                .expect("reading flow counters")
                .to_vec(),
        }
    }

    /// One BPF_PROG_TEST_RUN; `None`: no context.
    pub fn run(&self, ingress_ifindex: Option<u32>, frame: &[u8]) -> (u32, Vec<u8>) {
        run_once(self.dp.xdp_program(), frame, ingress_ifindex)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN (ingress {ingress_ifindex:?}): {e:#}"))
    }
}
