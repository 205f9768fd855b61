//! Threaded NAPI: a veth's receive work (its XDP program, and the kernel's
//! receive path for what that passes) moved out of softirq context into a
//! kernel thread `napi/<dev>-<napi id>`, which the bench pins to a CPU. On
//! the balancer's veth that thread is the balancer's core: its run time is
//! what the balancer cost.
//!
//! The thread appears when `/sys/class/net/<dev>/threaded` is set to 1 while
//! the device's NAPI is enabled (a veth enables it for an XDP program or
//! GRO). Every case has its own `veth-b`, so the thread is found as the one
//! named `napi/<dev>-*` that was not there before the write.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;

use super::netns::Netns;

/// A device's NAPI kernel thread, pinned to one CPU.
pub struct NapiThread {
    pub pid: i32,
    pub name: String,
}

impl NapiThread {
    /// Turns on threaded NAPI for `dev` in `ns`, and pins its thread to
    /// `cpu` at nice `nice` (the bench's own threads' priority on a shared
    /// machine).
    pub fn start(ns: &Netns, dev: &str, cpu: usize, nice: i32) -> Result<NapiThread> {
        let prefix = format!("napi/{dev}-");
        let before = napi_threads(&prefix);
        // `ip netns exec` mounts the namespace's own /sys for the command.
        ns.try_exec(&[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{dev}/threaded"),
        ])
        .with_context(|| format!("turning on threaded NAPI on {dev}"))?;
        let new: Vec<(i32, String)> = napi_threads(&prefix)
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        let [(pid, name)] = new.as_slice() else {
            bail!(
                "expected one new NAPI thread for {dev} in {} after enabling threaded NAPI, \
                 found {new:?} (is NAPI on: GRO or an XDP program?)",
                ns.name
            );
        };
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu)?;
        nix::sched::sched_setaffinity(Pid::from_raw(*pid), &set)
            .with_context(|| format!("pinning {name} to CPU {cpu}"))?;
        super::netns::renice(*pid, nice)?;
        Ok(NapiThread {
            pid: *pid,
            name: name.clone(),
        })
    }

    /// Its time so far, in seconds, on a CPU and waiting for one while
    /// runnable (schedstat).
    pub fn times(&self) -> Result<ThreadTimes> {
        let path = format!("/proc/{}/schedstat", self.pid);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} (pid {}) is gone", self.name, self.pid))?;
        parse_schedstat(&text).with_context(|| format!("reading {path}"))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThreadTimes {
    pub run: f64,
    pub wait: f64,
}

/// /proc/PID/schedstat: "run_ns wait_ns slices".
fn parse_schedstat(text: &str) -> Option<ThreadTimes> {
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    let (run, wait) = (f.next()??, f.next()??);
    Some(ThreadTimes {
        run: run as f64 * 1e-9,
        wait: wait as f64 * 1e-9,
    })
}

/// Threads (pid, name) whose name starts with `prefix`.
fn napi_threads(prefix: &str) -> BTreeSet<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let comm = comm.trim();
            comm.starts_with(prefix).then(|| (pid, comm.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_schedstat() {
        let t = super::parse_schedstat("1500000000 250000000 3\n").unwrap();
        assert_eq!((t.run, t.wait), (1.5, 0.25));
        assert_eq!(super::parse_schedstat(""), None);
    }
}
