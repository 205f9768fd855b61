//! Timed BPF_PROG_TEST_RUN through the test kit's runner
//! (tests/support/runner.rs, libbpf-rs's `test_run` with a repeat count),
//! and the per-CPU reason counters that prove which path a timed run took.
//! The no-op floor goes through the same function, so both sides of every
//! ratio are measured by identical code.

use anyhow::{bail, Context, Result};
use libbpf_rs::ProgramMut;
use udplb::abi::REASON_COUNT;
use udplb::datapath::Datapath;

pub use super::support::runner::XDP_PASS;

/// What one BPF_PROG_TEST_RUN call returned.
#[derive(Debug, Clone, Copy)]
pub struct RunResult {
    pub verdict: u32,
    /// The kernel's figure: nanoseconds per repetition, as an integer (it
    /// divides the loop's total time by `repeat`; time spent rescheduled
    /// inside the loop is left out).
    pub ns_per_run: u32,
}

/// Runs `prog` on `packet`, `repeat` times in one call. With `repeat > 1`
/// every repetition after the first sees the packet as the previous one
/// left it.
pub fn test_run(prog: &ProgramMut<'_>, packet: &[u8], repeat: u32) -> Result<RunResult> {
    let r = super::support::runner::run_timed(prog, packet, repeat)?;
    Ok(RunResult {
        verdict: r.verdict,
        ns_per_run: u32::try_from(r.per_run.as_nanos()).unwrap_or(u32::MAX),
    })
}

/// Packets per verdict reason so far, summed over every CPU.
pub fn reasons(dp: &Datapath) -> Result<[u64; REASON_COUNT]> {
    let no_frontends = udplb::plan::Layout {
        frontends: Vec::new(),
    };
    Ok(dp
        .counters(&no_frontends)
        .context("reading reason counters")?
        .reasons)
}

/// Fails unless exactly `n` packets were counted under `reason` (and none
/// under any other) between `before` and `after`: a timed run that left its
/// path would otherwise be reported as if it had not.
pub fn check_path(
    case: &str,
    before: &[u64; REASON_COUNT],
    after: &[u64; REASON_COUNT],
    reason: u32,
    n: u64,
) -> Result<()> {
    for (r, (b, a)) in before.iter().zip(after).enumerate() {
        let want = if r == reason as usize { n } else { 0 };
        if a - b != want {
            bail!(
                "{case}: {} packets counted as {}, expected {want}: the timed runs did not all \
                 take the measured path",
                a - b,
                udplb::abi::REASON_NAMES[r]
            );
        }
    }
    Ok(())
}
