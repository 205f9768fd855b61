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

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};

pub const PREFIX: &str = "udplbb";

/// Runs a command; fails with its output if it fails.
pub fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A namespace owned by this bench run; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Result<Netns> {
        let name = format!("{PREFIX}-{}-{tag}", std::process::id());
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Starts `f` on a new thread that has joined this namespace, is
    /// pinned to `cpu` and runs at [`NICE`]. Sockets it opens belong to the
    /// namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        cpu: usize,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> JoinHandle<Result<T>> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).with_context(|| path.clone())?;
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("joining {path}"))?;
            pin_to_cpu(cpu)?;
            renice(0, NICE)?;
            f()
        })
    }

    /// A field of /proc/net/snmp (e.g. ("Udp", "RcvbufErrors")) here.
    pub fn snmp(&self, proto: &str, field: &str) -> Result<u64> {
        let text = self.exec(&["cat", "/proc/net/snmp"])?;
        let prefix = format!("{proto}:");
        let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
        let (names, values) = (rows.next(), rows.next());
        let (Some(names), Some(values)) = (names, values) else {
            bail!("no {proto} rows in /proc/net/snmp");
        };
        let i = names
            .split_whitespace()
            .position(|n| n == field)
            .with_context(|| format!("no {proto} {field} in /proc/net/snmp"))?;
        let v = values.split_whitespace().nth(i).unwrap_or("0");
        Ok(v.parse()?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
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

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning to CPU {cpu}"))
}

/// The client side of a veth pair.
pub const CLIENT_V4: &str = "198.18.0.1";
/// The balancer (and backends) side.
pub const BALANCER_V4: &str = "198.18.0.2";
pub const CLIENT_MAC: &str = "02:00:00:00:00:01";
pub const BALANCER_MAC: &str = "02:00:00:00:00:02";

/// One end of a veth: namespace, device, Ethernet address, IPv4 addresses
/// with their prefix length.
pub struct End<'a> {
    pub ns: &'a Netns,
    pub dev: &'a str,
    pub mac: &'a str,
    pub addrs: &'a [&'a str],
}

/// A veth pair between two namespaces, addressed and up.
pub fn link(a: &End, b: &End) -> Result<()> {
    sh(&[
        "ip", "link", "add", a.dev, "address", a.mac, "netns", &a.ns.name, "type", "veth", "peer",
        "name", b.dev, "address", b.mac, "netns", &b.ns.name,
    ])?;
    for end in [a, b] {
        for addr in end.addrs {
            end.ns.ip(&["addr", "add", addr, "dev", end.dev])?;
        }
        end.ns.ip(&["link", "set", end.dev, "up"])?;
    }
    Ok(())
}

/// A permanent neighbour entry: no ARP runs during a measurement.
pub fn neigh(ns: &Netns, dev: &str, addr: &str, mac: &str) -> Result<()> {
    ns.ip(&[
        "neigh",
        "replace",
        addr,
        "lladdr",
        mac,
        "dev",
        dev,
        "nud",
        "permanent",
    ])?;
    Ok(())
}

/// Joins `client` (veth-a, 198.18.0.1/24) and `balancer` (veth-b,
/// 198.18.0.2/24) with a veth pair. No default route: nothing can leave.
/// Neighbour entries are static, so no ARP runs during a measurement.
pub fn veth_pair(client: &Netns, balancer: &Netns) -> Result<()> {
    let (c, b) = (format!("{CLIENT_V4}/24"), format!("{BALANCER_V4}/24"));
    link(
        &End {
            ns: client,
            dev: "veth-a",
            mac: CLIENT_MAC,
            addrs: &[&c],
        },
        &End {
            ns: balancer,
            dev: "veth-b",
            mac: BALANCER_MAC,
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
