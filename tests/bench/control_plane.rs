//! Case (c): how long udplb takes to build and write a Maglev table, as on
//! a reload, for one frontend with more and more backends.
//!
//! Each size has its own loaded datapath. Every sample is one reload: the
//! configuration alternates between two that differ in one backend's
//! weight, so `State::plan` rebuilds the whole Maglev table (65537 entries)
//! and `Datapath::apply` writes it as a new ring into the idle table and
//! switches the frontend. Sizes are interleaved round by round.
//!
//! Each sample is also split into its two halves: the build (`State::plan`:
//! the Maglev permutation and table, in memory) and the write
//! (`Datapath::apply`: creating the new ring map, filling it, installing it
//! in the outer map, switching the frontend, removing the old ring). The
//! write of a map-in-map element waits for an RCU grace period in the
//! kernel (so that no program still uses the old inner map when the system
//! call returns), which is why it does not grow with the backend count.

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

/// One backend count: its datapath, the two configurations a reload
/// alternates between, and the samples (ms).
struct Size {
    n: usize,
    configs: [Config; 2],
    dp: Datapath,
    state: udplb::plan::State,
    total: Samples,
    build: Samples,
    write: Samples,
}

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
        sizes.push(Size {
            n,
            configs,
            dp,
            state,
            total: Samples::default(),
            build: Samples::default(),
            write: Samples::default(),
        });
    }
    println!("control plane: {} sizes, {ROUNDS} rounds ...", sizes.len());
    for round in 0..ROUNDS {
        if stop_requested() {
            bail!("interrupted");
        }
        for s in &mut sizes {
            let start = Instant::now();
            let (plan, next) = s.state.plan(&s.configs[(round + 1) % 2]);
            let built = Instant::now();
            s.dp.apply(&plan)?;
            let done = Instant::now();
            s.total.push((done - start).as_secs_f64() * 1e3);
            s.build.push((built - start).as_secs_f64() * 1e3);
            s.write.push((done - built).as_secs_f64() * 1e3);
            s.state = next;
        }
    }
    let first = sizes.first().map(|s| s.total.clone()).unwrap_or_default();
    let cases = sizes
        .iter()
        .map(|s| {
            let mut c = CaseResult::new(
                &format!("build_write_{}", s.n),
                &format!("Maglev build + write, {} backends", s.n),
                "ms",
                s.total.clone(),
            );
            c.ratios.push((
                format!("{} backends", BACKEND_COUNTS[0]),
                s.total.ratio_to(&first),
            ));
            c.extra.push(("build ms".into(), s.build.median()));
            c.extra.push(("write ms".into(), s.write.median()));
            c
        })
        .collect();
    report.sections.push(Section {
        key: "control_plane".into(),
        title: "Control plane: Maglev table (65537) build + write".into(),
        method: format!(
            "wall clock of one reload (State::plan = build, Datapath::apply = write) that \
             rebuilds one frontend's Maglev table and writes it as a new ring, {ROUNDS} rounds \
             interleaved"
        ),
        cases,
    });
    Ok(())
}
