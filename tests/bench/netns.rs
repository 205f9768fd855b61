//! Network namespaces and veth pairs made by the bench, removed on drop, and
//! the removal of leftovers from a bench run that was killed.
//!
//! Network rule: all bench traffic is sent and received inside namespaces
//! made here, on veths addressed from 198.18.0.0/15 with no default route,
//! so nothing can leave them. The bench never opens a socket in the root
//! namespace: threads that send or receive first join a bench namespace.
//!
//! Names are `udplbb-<pid>-<tag>`: the pid of the bench that made them, so
//! a later run removes only leftovers whose bench is gone.

use std::thread::JoinHandle;

use anyhow::{Context, Result};

pub use super::support::netns::{try_link as link, try_neigh as neigh, try_sh as sh, End, Netns};

pub const PREFIX: &str = "udplbb";

/// A namespace owned by this bench run (`udplbb-<pid>-<tag>`); deleted on
/// drop.
pub fn create(tag: &str) -> Result<Netns> {
    Netns::try_named(format!("{PREFIX}-{}-{tag}", std::process::id()))
}

/// Threads of the bench inside a namespace.
pub trait Spawn {
    /// Starts `f` on a new thread that has joined this namespace, is pinned
    /// to `cpu` and runs at [`NICE`]. Sockets it opens belong to the
    /// namespace.
    fn spawn<T: Send + 'static>(
        &self,
        cpu: usize,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> JoinHandle<Result<T>>;
}

impl Spawn for Netns {
    fn spawn<T: Send + 'static>(
        &self,
        cpu: usize,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> JoinHandle<Result<T>> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            super::support::netns::join_path(&path)?;
            super::support::cpu::pin_to_cpu(cpu)?;
            renice(0, NICE)?;
            f()
        })
    }
}

/// Nice value of the bench's sender, receivers and proxy, and of its
/// session's scheduling group (priority.rs): the machine is shared.
pub const NICE: i32 = -10;

/// Sets the nice value of one thread or process (Linux nice is per thread;
/// 0 is the calling thread).
pub fn renice(tid: i32, nice: i32) -> Result<()> {
    // SAFETY: plain system call on integers.
    let rc =
        unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, tid as nix::libc::id_t, nice) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setpriority");
    }
    Ok(())
}

/// The client side of a veth pair.
pub const CLIENT_V4: &str = "198.18.0.1";
/// The balancer (and backends) side.
pub const BALANCER_V4: &str = "198.18.0.2";
pub const CLIENT_MAC: &str = "02:00:00:00:00:01";
pub const BALANCER_MAC: &str = "02:00:00:00:00:02";

/// Joins `client` (veth-a, 198.18.0.1/24) and `balancer` (veth-b,
/// 198.18.0.2/24) with a veth pair. No default route: nothing can leave.
/// Neighbour entries are static, so no ARP runs during a measurement.
pub fn veth_pair(client: &Netns, balancer: &Netns) -> Result<()> {
    let (c, b) = (format!("{CLIENT_V4}/24"), format!("{BALANCER_V4}/24"));
    link(
        &End {
            ns: client,
            dev: "veth-a",
            mac: Some(CLIENT_MAC),
            addrs: &[&c],
        },
        &End {
            ns: balancer,
            dev: "veth-b",
            mac: Some(BALANCER_MAC),
            addrs: &[&b],
        },
    )?;
    neigh(client, "veth-a", BALANCER_V4, BALANCER_MAC)?;
    neigh(balancer, "veth-b", CLIENT_V4, CLIENT_MAC)?;
    Ok(())
}

/// Removes what a killed bench run left: its namespaces (after killing, by
/// PID, the processes still inside them: a udplb or nginx it started) and
/// its nginx directories. Only names with our prefix whose bench PID is no
/// longer running are touched.
pub fn remove_leftovers() -> Result<()> {
    let list = sh(&["ip", "netns", "list"])?;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(owner) = bench_pid(name) else {
            continue;
        };
        if is_running(owner) {
            continue;
        }
        let pids = sh(&["ip", "netns", "pids", name]).unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            println!("bench: killing leftover process {pid} in namespace {name}");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        println!("bench: removing leftover namespace {name}");
        let _ = sh(&["ip", "netns", "del", name]);
    }
    for entry in std::fs::read_dir(std::env::temp_dir())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(owner) = bench_pid(&name) {
            if !is_running(owner) {
                println!("bench: removing leftover {}", entry.path().display());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(())
}

/// The bench PID in a `udplbb-<pid>-...` name.
fn bench_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    rest.split('-').next()?.parse().ok()
}

fn is_running(pid: i32) -> bool {
    pid == std::process::id() as i32 || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    #[test]
    fn leftover_names() {
        assert_eq!(super::bench_pid("udplbb-1234-direct-c"), Some(1234));
        assert_eq!(super::bench_pid("udplbb-1234-nginx"), Some(1234));
        assert_eq!(
            super::bench_pid("udplbt-1234-x"),
            None,
            "the tests' namespaces"
        );
        assert_eq!(super::bench_pid("udplbbx-1234"), None);
        assert_eq!(super::bench_pid("udplbb-x"), None);
    }
}
