//! BPF_PROG_TEST_RUN on a program given as a file descriptor, and the
//! per-CPU reason counters that prove which path a timed run took.
//!
//! `Datapath` hands out its XDP program only as an fd (`xdp_prog()`), so this
//! makes the same `bpf_prog_test_run_opts` call that libbpf-rs's
//! `Program::test_run(ProgramInput { repeat, .. })` makes, on that fd. The
//! no-op floor goes through the same function, so both sides of every ratio
//! are measured by identical code.

use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{bail, Context, Result};
use udplb::abi::REASON_COUNT;
use udplb::datapath::Datapath;

pub const XDP_PASS: u32 = 2;

/// What one BPF_PROG_TEST_RUN call returned.
#[derive(Debug, Clone, Copy)]
pub struct RunResult {
    pub verdict: u32,
    /// The kernel's figure: nanoseconds per repetition, as an integer (it
    /// divides the loop's total time by `repeat`; time spent rescheduled
    /// inside the loop is left out).
    pub ns_per_run: u32,
}

/// Runs the program behind `prog` on `packet`, `repeat` times in one call.
/// With `repeat > 1` every repetition after the first sees the packet as the
/// previous one left it.
pub fn test_run(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> Result<RunResult> {
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: packet.as_ptr().cast(),
        data_size_in: packet.len() as u32,
        repeat: repeat as i32,
        ..Default::default()
    };
    // SAFETY: opts points at `packet`, which outlives the call; data_out and
    // ctx are null, so the kernel writes only into `opts` itself.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc != 0 {
        let err = std::io::Error::from_raw_os_error(-rc);
        return Err(err).context("BPF_PROG_TEST_RUN");
    }
    Ok(RunResult {
        verdict: opts.retval,
        ns_per_run: opts.duration,
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
