//! CPU pinning. XDP runs on the CPU that processes the receive (for lo and
//! veth traffic from a local sender, the sender's own CPU), test runs on the
//! caller's CPU, and round robin is per CPU: tests that count exact splits
//! pin their senders and their test-run threads.

use anyhow::{Context, Result};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Pins the calling thread to CPU `cpu`.
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("pinning to CPU {cpu}"))
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    let allowed = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect()
}

/// Pins the calling thread to the `slot`-th CPU it may run on (modulo
/// their number), so parallel test threads can spread out.
pub fn pin_to_allowed_cpu(slot: usize) {
    let cpus = allowed_cpus();
    assert!(!cpus.is_empty(), "no CPU allowed");
    let cpu = cpus[slot % cpus.len()];
    pin_to_cpu(cpu).unwrap_or_else(|e| panic!("{e:#}"));
}

/// Pins the calling thread to the first CPU it may run on.
pub fn pin_to_one_cpu() {
    pin_to_allowed_cpu(0);
}

/// Pins the calling thread to CPU 0 (senders whose XDP runs must stay on
/// one CPU for exact round-robin splits).
pub fn pin_to_cpu0() {
    pin_to_cpu(0).unwrap_or_else(|e| panic!("{e:#}"));
}
