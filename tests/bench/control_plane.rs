//! Case (c): how long udplb takes to turn a configuration into map entries
//! and write them (`Tables::build` + `Datapath::write`), as on a start or a
//! reload, for one frontend with more and more backends.
//!
//! Each size has its own loaded datapath. Every sample builds the tables
//! for the next generation (alternating 0 and 1, as a reload writes the idle
//! table) and writes all of them: backend slots, reply entries (two per
//! backend: IPv4 and IPv6), then the frontend entries. Sizes are interleaved
//! round by round.

use std::time::Instant;

use anyhow::{bail, Result};
use udplb::abi::MAX_BACKENDS;
use udplb::config::Config;
use udplb::datapath::Datapath;
use udplb::tables::Tables;

use crate::report::{CaseResult, Report, Section};
use crate::stats::Samples;
use crate::stop_requested;

/// Backend counts; those above this build's UDPLB_MAX_BACKENDS are skipped
/// with a note (1024 is the limit planned next).
pub const BACKEND_COUNTS: &[usize] = &[10, 100, 256, 1024];
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
        let ports: Vec<String> = (0..n).map(|i| (20000 + i).to_string()).collect();
        let config = Config::from_specs(&[format!("9875={}", ports.join(","))])
            .map_err(|e| anyhow::anyhow!("{n} backends: {e}"))?;
        sizes.push((n, config, Datapath::load()?, Samples::default()));
    }
    println!("control plane: {} sizes, {ROUNDS} rounds ...", sizes.len());
    for round in 0..ROUNDS {
        if stop_requested() {
            bail!("interrupted");
        }
        for (_, config, dp, samples) in &mut sizes {
            let start = Instant::now();
            let tables = Tables::build(config, round as u32);
            dp.write(&tables)?;
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    let first = sizes.first().map(|s| s.3.clone()).unwrap_or_default();
    let cases = sizes
        .iter()
        .map(|(n, _, _, samples)| {
            let mut c = CaseResult::new(
                &format!("build_write_{n}"),
                &format!("build + write, {n} backends"),
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
        title: "Control plane: Tables::build + Datapath::write".into(),
        method: format!(
            "wall clock of one build and full write, one frontend (IPv4 + IPv6 keys), \
             {ROUNDS} rounds interleaved"
        ),
        cases,
    });
    Ok(())
}
