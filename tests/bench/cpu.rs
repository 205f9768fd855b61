//! CPU time from /proc: per-CPU times from /proc/stat and a process's own
//! time from /proc/<pid>/stat, both in clock ticks (USER_HZ).
//!
//! On veth, the receive path (veth rx, XDP, netfilter, IP, UDP, queueing to
//! the socket) runs in softirq context on the CPU of the sender whose
//! system call put the packet on the wire. The kernel counts that as
//! softirq time, separately from the sender's own system time. So the
//! balancer side of a run is: softirq time on all CPUs (the receive path,
//! including udplb's XDP or nftables' DNAT, and for nginx its second hop on
//! lo) plus the time of the balancer's own processes (nginx; udplb's
//! process sleeps). The sender's and receivers' own system calls are left
//! out: they are the same clients and servers in every case.
//!
//! This kernel has no CONFIG_IRQ_TIME_ACCOUNTING, so softirq time is
//! sampled at each tick (CONFIG_HZ=250): over a 3 s run that is ~750
//! samples per CPU, a few percent of noise.

use anyhow::{Context, Result};

/// Column indices in a `cpuN` line of /proc/stat (after the name).
const SYSTEM: usize = 2;
const SOFTIRQ: usize = 6;
const STEAL: usize = 7;

/// Times of every CPU, in ticks: user nice system idle iowait irq softirq steal.
#[derive(Debug, Clone)]
pub struct CpuTimes(Vec<[u64; 8]>);

impl CpuTimes {
    pub fn now() -> Result<CpuTimes> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        Ok(parse_stat(&text))
    }

    fn delta(&self, before: &CpuTimes, col: usize) -> Vec<u64> {
        self.0
            .iter()
            .zip(&before.0)
            .map(|(a, b)| a[col].saturating_sub(b[col]))
            .collect()
    }

    /// Softirq seconds since `before`, summed over all CPUs.
    pub fn softirq_since(&self, before: &CpuTimes) -> f64 {
        ticks_to_secs(self.delta(before, SOFTIRQ).iter().sum())
    }

    /// Steal seconds since `before`, all CPUs: time the hypervisor gave to
    /// other guests (a shared host).
    pub fn steal_since(&self, before: &CpuTimes) -> f64 {
        ticks_to_secs(self.delta(before, STEAL).iter().sum())
    }

    /// Share of CPU `cpu`'s time since `before` that it was busy (anything
    /// but idle and iowait), whoever it was busy for.
    pub fn busy_share(&self, before: &CpuTimes, cpu: usize) -> f64 {
        let col = |c: usize| self.delta(before, c).get(cpu).copied().unwrap_or(0);
        let busy: u64 = [0, 1, SYSTEM, 5, SOFTIRQ, STEAL]
            .iter()
            .map(|&c| col(c))
            .sum();
        let total = busy + col(3) + col(4);
        if total == 0 {
            f64::NAN
        } else {
            busy as f64 / total as f64
        }
    }

    /// Share of CPU `cpu`'s busy time spent in softirq since `before`.
    pub fn softirq_share(&self, before: &CpuTimes, cpu: usize) -> f64 {
        let busy: u64 = [0, 1, SYSTEM, 5, SOFTIRQ]
            .iter()
            .map(|&c| self.delta(before, c).get(cpu).copied().unwrap_or(0))
            .sum();
        let soft = self.delta(before, SOFTIRQ).get(cpu).copied().unwrap_or(0);
        if busy == 0 {
            f64::NAN
        } else {
            soft as f64 / busy as f64
        }
    }
}

fn parse_stat(text: &str) -> CpuTimes {
    let per_cpu = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let mut v = [0u64; 8];
            for (slot, field) in v.iter_mut().zip(l.split_whitespace().skip(1)) {
                *slot = field.parse().unwrap_or(0);
            }
            v
        })
        .collect();
    CpuTimes(per_cpu)
}

/// User + system time of a process (all its threads), in seconds; 0 if it
/// is gone.
pub fn process_secs(pid: u32) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is field 3, utime 14, stime 15.
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks_to_secs(ticks)
}

/// CPU time of the calling thread, in seconds. Softirq work the kernel does
/// inside the thread's system calls is included: without IRQ time
/// accounting it is charged to the running task.
pub fn thread_secs() -> f64 {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for the call to fill in.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Run time of CPU `cpu`'s ksoftirqd, in seconds: softirq work the kernel
/// deferred there instead of doing it inside a system call.
pub fn ksoftirqd_secs(cpu: usize) -> f64 {
    let name = format!("ksoftirqd/{cpu}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            // schedstat: run time (ns), wait time (ns), time slices.
            let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
            let ns: u64 = stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return ns as f64 * 1e-9;
        }
    }
    0.0
}

fn ticks_to_secs(ticks: u64) -> f64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    ticks as f64 / hz as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_proc_stat() {
        let before = super::parse_stat(
            "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 10 0 20 100 0 0 30 1 0 0\ncpu1 0 0 0 100 0 0 0 0 0 0\nintr 1\n",
        );
        let after = super::parse_stat(
            "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 10 0 60 100 0 0 90 3 0 0\ncpu1 0 0 0 200 0 0 20 0 0 0\nintr 1\n",
        );
        assert_eq!(after.softirq_since(&before), super::ticks_to_secs(80));
        assert_eq!(after.steal_since(&before), super::ticks_to_secs(2));
        // CPU 0: 40 system + 60 softirq.
        assert_eq!(after.softirq_share(&before, 0), 0.6);
        // CPU 1: 20 softirq, 100 idle.
        assert_eq!(after.busy_share(&before, 1), 20.0 / 120.0);
    }

    #[test]
    fn reads_own_process_time() {
        let busy_until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < busy_until {}
        assert!(super::process_secs(std::process::id()) > 0.0);
        assert_eq!(super::process_secs(u32::MAX), 0.0);
        assert!(super::thread_secs() > 0.0);
        assert!(super::ksoftirqd_secs(0) >= 0.0);
    }
}
