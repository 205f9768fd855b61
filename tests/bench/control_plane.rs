//! Case (c): how long udplb takes to build and write a Maglev table, as on
//! a reload, for one frontend with more and more backends.
//!
//! Each size has its own loaded datapath. Every sample is one reload: the
//! configuration alternates between two that differ in one backend's
//! weight, so `State::plan` rebuilds the whole Maglev table (65537 entries)
//! and `Datapath::apply` writes it as a new ring into the idle table and
//! switches the frontend. Sizes are interleaved round by round.

use std::time::Instant;

use anyhow::{bail, Result};
use udplb::abi::MAX_BACKENDS;
use udplb::config::{Config, Defaults, Sched};
use udplb::datapath::Datapath;

use super::report::{CaseResult, Report, Section};
use super::stats::Samples;
use super::stop_requested;

/// Backend counts; those above this build's UDPLB_MAX_BACKENDS are skipped
/// with a note (1024 is the limit planned next).
pub const BACKEND_COUNTS: &[usize] = &[10, 100, 1000];
pub const ROUNDS: usize = 15;

pub fn run(report: &mut Report) -> Result<()> {
    let mut sizes = Vec::new();
    for &n in BACKEND_COUNTS {
        if n > MAX_BACKENDS {
            report.notes.push(format!(
                "control plane: skipped {n} backends (limit {MAX_BACKENDS})"
            ));
            continue;
        }
        let maglev = Defaults {
            sched: Sched::Maglev,
            ..Defaults::default()
        };
        let spec = |first_weight: u32| {
            let ports: Vec<String> = (0..n)
                .map(|i| {
                    if i == 0 {
                        format!("20000@{first_weight}")
                    } else {
                        (20000 + i).to_string()
                    }
                })
                .collect();
            Config::from_specs_with(&[format!("9875={}", ports.join(","))], maglev)
                .map_err(|e| anyhow::anyhow!("{n} backends: {e}"))
        };
        let configs = [spec(1)?, spec(2)?];
        let dp = Datapath::load()?;
        let state = dp.configure(&configs[0])?;
        sizes.push((n, configs, dp, state, Samples::default()));
    }
    println!("control plane: {} sizes, {ROUNDS} rounds ...", sizes.len());
    for round in 0..ROUNDS {
        if stop_requested() {
            bail!("interrupted");
        }
        for (_, configs, dp, state, samples) in &mut sizes {
            let start = Instant::now();
            let (plan, next) = state.plan(&configs[(round + 1) % 2]);
            dp.apply(&plan)?;
            samples.push(start.elapsed().as_secs_f64() * 1e6);
            *state = next;
        }
    }
    let first = sizes.first().map(|s| s.4.clone()).unwrap_or_default();
    let cases = sizes
        .iter()
        .map(|(n, _, _, _, samples)| {
            let mut c = CaseResult::new(
                &format!("build_write_{n}"),
                &format!("Maglev build + write, {n} backends"),
                "µs",
                samples.clone(),
            );
            c.ratios.push((
                format!("{} backends", BACKEND_COUNTS[0]),
                samples.ratio_to(&first),
            ));
            c.extra
                .push(("µs per backend".into(), samples.median() / *n as f64));
            c
        })
        .collect();
    report.sections.push(Section {
        key: "control_plane".into(),
        title: "Control plane: Maglev table (65537) build + write".into(),
        method: format!(
            "wall clock of one reload (State::plan + Datapath::apply) that rebuilds one \
             frontend's Maglev table and writes it as a new ring, {ROUNDS} rounds interleaved"
        ),
        cases,
    });
    Ok(())
}
