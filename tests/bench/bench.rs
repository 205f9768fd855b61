//! `make bench` (`cargo bench --bench bench`, as root): udplb's benchmarks.
//!
//! Four sections, each measured in interleaved rounds (A B C A B C ...) on
//! a shared, noisy machine and summarised as median, min and max:
//!
//! - `datapath`: the XDP program's cost per packet through BPF_PROG_TEST_RUN,
//!   as a ratio to a no-op program (datapath_cost.rs);
//! - `control`: building and writing a Maglev table (control_plane.rs);
//! - `e2e`: datagrams per second delivered to local backends across a veth,
//!   direct vs udplb vs nftables vs nginx (end_to_end.rs);
//! - `remote`: datagrams per second forwarded through a balancer namespace
//!   to backends on another host, plain routing vs nftables DNAT vs udplb
//!   (e2e_remote.rs);
//! - `nic`: the balancer on a core of its own, fed by an XDP traffic
//!   generator as a NIC would feed it, local and remote backends (nic.rs).
//!
//! Prints a table and writes target/bench/results.json; BENCHMARKS.md says
//! how each figure is taken. Run some sections only with
//! `cargo bench --bench bench -- datapath e2e`, or some end-to-end cases
//! only with `cargo bench --bench bench -- direct udplb remote_udplb
//! nic_udplb`.
//!
//! Everything it makes (namespaces, processes, temporary files) is removed
//! on the way out, by drop guards, also after Ctrl-C; what a killed run left
//! is removed at the next start (netns.rs).

mod balancers;
mod control_plane;
mod cpu;
mod datapath_cost;
mod deps;
mod e2e_remote;
mod end_to_end;
mod json;
mod machine;
mod napi;
mod netns;
mod nic;
mod nic_progs;
mod packets;
mod priority;
mod prog_test_run;
mod receivers;
mod report;
mod sender;
mod stats;
mod targets;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
// The test kit (tests/support/), which the modules here name `super::support`.
use udplb_testkit as support;

use report::{HostRefused, Report};

static STOP: AtomicBool = AtomicBool::new(false);

/// True once SIGINT or SIGTERM arrived: sections stop between runs and
/// their guards clean up.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

const SECTIONS: &[&str] = &["datapath", "control", "e2e", "remote", "nic"];

pub(crate) fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the bench needs root (BPF programs, network namespaces): sudo make bench");
    }
    ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed))
        .context("installing the signal handler")?;
    // cargo passes `--bench`; other words choose sections or end-to-end
    // cases (which imply their section, e2e or remote).
    let (mut chosen, mut cases, mut remote_cases, mut nic_cases) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for a in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        if SECTIONS.contains(&a.as_str()) {
            chosen.push(a);
        } else if end_to_end::CASES.contains(&a.as_str()) {
            cases.push(a);
        } else if e2e_remote::CASES.contains(&a.as_str()) {
            remote_cases.push(a);
        } else if nic::CASES.contains(&a.as_str()) {
            nic_cases.push(a);
        } else {
            bail!(
                "unknown section or case '{a}'; sections: {}; end-to-end cases: {} {} {}",
                SECTIONS.join(", "),
                end_to_end::CASES.join(", "),
                e2e_remote::CASES.join(", "),
                nic::CASES.join(", ")
            );
        }
    }
    if !cases.is_empty() {
        chosen.push("e2e".into());
    }
    if !remote_cases.is_empty() {
        chosen.push("remote".into());
    }
    if !nic_cases.is_empty() {
        chosen.push("nic".into());
    }
    let wanted = |s: &str| chosen.is_empty() || chosen.iter().any(|c| c == s);

    let start = Instant::now();
    netns::remove_leftovers()?;
    let mut report = Report {
        machine: machine::describe(),
        ..Report::default()
    };
    // A failed section is reported, and fails the run, but does not stop
    // the others: what was measured is still printed and written.
    let mut failed = Vec::new();
    let mut section = |name: &str, result: Result<()>, report: &mut Report| {
        if let Some(refused) = result
            .as_ref()
            .err()
            .and_then(|e| e.downcast_ref::<HostRefused>())
        {
            eprintln!("bench: section {name} not measured: {refused}");
            report
                .not_measured
                .push((name.to_string(), refused.to_string()));
        } else if let Err(e) = result {
            eprintln!("bench: section {name} failed: {e:#}");
            report.notes.push(format!("section {name} failed: {e:#}"));
            failed.push(name.to_string());
        }
    };
    if wanted("datapath") {
        let r = datapath_cost::run(&mut report);
        section("datapath", r, &mut report);
    }
    if wanted("control") && !stop_requested() {
        let r = control_plane::run(&mut report);
        section("control", r, &mut report);
    }
    let tools = (wanted("e2e") || wanted("remote") || wanted("nic")).then(deps::ensure);
    if let (true, Some(tools)) = (wanted("e2e") && !stop_requested(), &tools) {
        let r = end_to_end::run(&mut report, tools, &cases);
        section("e2e", r, &mut report);
    }
    if let (true, Some(tools)) = (wanted("remote") && !stop_requested(), &tools) {
        let r = e2e_remote::run(&mut report, tools, &remote_cases);
        section("remote", r, &mut report);
    }
    if let (true, Some(tools)) = (wanted("nic") && !stop_requested(), &tools) {
        let r = nic::run(&mut report, tools, &nic_cases);
        section("nic", r, &mut report);
    }
    report.targets = targets::judge(&report);
    report
        .notes
        .push(format!("bench took {:.0} s", start.elapsed().as_secs_f64()));

    println!("\n{}", report.table());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("results.json");
    std::fs::write(&path, report.json().render())
        .with_context(|| format!("writing {}", path.display()))?;
    println!("results written to {}", path.display());
    if !failed.is_empty() {
        bail!("failed sections: {}", failed.join(", "));
    }
    Ok(())
}
