//! Network namespaces and veth pairs that a test (or the bench) creates and
//! removes, in the shape of xdp-tools' `lib/testing/test_runner.sh`.
//!
//! Network rule: all traffic stays inside namespaces made here, on their own
//! lo or on veths with 198.18.0.0/15 and 2001:2::/48 addresses and no route
//! out. The fallible forms (`try_*`, returning `Result`) serve the bench;
//! the plain forms fail the test with the command's output.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

/// Runs a command; fails with its output if it fails.
pub fn try_sh(args: &[&str]) -> Result<String> {
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

/// Runs a command and fails the test if it fails.
pub fn sh(args: &[&str]) -> String {
    try_sh(args).unwrap_or_else(|e| panic!("{e:#}"))
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Namespace names of the tests: `udplbt-<tag>-<pid>-<n>`.
pub const TEST_PREFIX: &str = "udplbt";

/// A network namespace owned by the test (or bench); deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace named exactly `name`, with lo up.
    pub fn try_named(name: String) -> Result<Netns> {
        try_sh(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.try_ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A test namespace; fails the test without root.
    pub fn new(tag: &str) -> Netns {
        super::require_root();
        let name = format!(
            "{TEST_PREFIX}-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        Netns::try_named(name).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `ip -n <ns> ...`
    pub fn try_ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        try_sh(&full)
    }

    pub fn ip(&self, args: &[&str]) -> String {
        self.try_ip(args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs a command inside the namespace.
    pub fn try_exec(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        try_sh(&full)
    }

    pub fn exec(&self, args: &[&str]) -> String {
        self.try_exec(args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Moves the calling thread into this namespace.
    pub fn join(&self) -> Result<()> {
        let path = format!("/run/netns/{}", self.name);
        join_path(&path)
    }

    /// Runs `f` on a thread that has joined this namespace. Sockets made there
    /// stay in the namespace and can be used from any thread afterwards.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.join()
                    .unwrap_or_else(|e| panic!("setns into the test namespace: {e:#}"));
                f()
            })
            .join()
            .expect("thread in namespace panicked")
        })
    }

    /// A UDP socket bound inside the namespace.
    pub fn udp_bind(&self, addr: &str) -> std::net::UdpSocket {
        let addr: std::net::SocketAddr = addr.parse().expect("socket address");
        self.enter(|| {
            let s = std::net::UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            s
        })
    }

    /// A field of /proc/net/snmp (e.g. ("Udp", "InCsumErrors")) here.
    pub fn try_snmp(&self, proto: &str, field: &str) -> Result<u64> {
        let text = self.try_exec(&["cat", "/proc/net/snmp"])?;
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
        let v = values
            .split_whitespace()
            .nth(i)
            .with_context(|| format!("no value for {proto} {field}"))?;
        Ok(v.parse()?)
    }

    pub fn snmp(&self, proto: &str, field: &str) -> u64 {
        self.try_snmp(proto, field)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A field of /proc/net/snmp6 (e.g. "Udp6NoPorts") here.
    pub fn snmp6(&self, field: &str) -> u64 {
        let text = self.exec(&["cat", "/proc/net/snmp6"]);
        (text.lines())
            .filter_map(|l| l.split_once(char::is_whitespace))
            .find(|(name, _)| *name == field)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/net/snmp6"))
    }

    /// The XDP part of `ip -d link show <dev>`, empty when nothing is attached.
    pub fn xdp_on(&self, dev: &str) -> String {
        let out = self.ip(&["-d", "link", "show", "dev", dev]);
        out.lines()
            .filter(|l| l.contains("xdp") || l.contains("prog/xdp"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn join_path(path: &str) -> Result<()> {
    let file = File::open(path).with_context(|| path.to_string())?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("joining {path}"))
}

/// One end of a veth: namespace, device, Ethernet address (or none: the
/// kernel's), addresses with their prefix length (IPv6 ones without DAD).
pub struct End<'a> {
    pub ns: &'a Netns,
    pub dev: &'a str,
    pub mac: Option<&'a str>,
    pub addrs: &'a [&'a str],
}

/// A veth pair between two namespaces, addressed and up.
pub fn try_link(a: &End, b: &End) -> Result<()> {
    let mut cmd = vec!["ip", "link", "add", a.dev];
    if let Some(mac) = a.mac {
        cmd.extend(["address", mac]);
    }
    cmd.extend(["netns", &a.ns.name, "type", "veth", "peer", "name", b.dev]);
    if let Some(mac) = b.mac {
        cmd.extend(["address", mac]);
    }
    cmd.extend(["netns", &b.ns.name]);
    try_sh(&cmd)?;
    for end in [a, b] {
        for addr in end.addrs {
            if addr.contains(':') {
                end.ns
                    .try_ip(&["-6", "addr", "add", addr, "dev", end.dev, "nodad"])?;
            } else {
                end.ns.try_ip(&["addr", "add", addr, "dev", end.dev])?;
            }
        }
        end.ns.try_ip(&["link", "set", end.dev, "up"])?;
    }
    Ok(())
}

/// A permanent neighbour entry: no ARP runs during a measurement.
pub fn try_neigh(ns: &Netns, dev: &str, addr: &str, mac: &str) -> Result<()> {
    ns.try_ip(&[
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

/// Two namespaces joined by a veth pair: `a` (198.18.0.1, 2001:2::1) and
/// `b` (198.18.0.2, 2001:2::2). Interfaces are named `veth-a` / `veth-b`
/// inside their namespaces. No default route: nothing can leave.
pub fn veth_pair(a: &Netns, b: &Netns) {
    try_link(
        &End {
            ns: a,
            dev: "veth-a",
            mac: None,
            addrs: &["198.18.0.1/24", "2001:2::1/64"],
        },
        &End {
            ns: b,
            dev: "veth-b",
            mac: None,
            addrs: &["198.18.0.2/24", "2001:2::2/64"],
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Turns tx checksum offload on or off on a device in a namespace.
pub fn set_tx_csum(ns: &Netns, dev: &str, on: bool) {
    ns.exec(&["ethtool", "-K", dev, "tx", if on { "on" } else { "off" }]);
}

/// Moves the calling thread into a network namespace of its own, freed
/// with the thread, holding a veth pair `<prefix>0` / `<prefix>1`, and
/// returns the ifindex of the first: an interface that is not lo, for the
/// ingress_ifindex of a test run (the kernel looks it up in the caller's
/// namespace). The namespace keeps the host's interfaces out of the test.
pub fn private_netns_with_veth(prefix: &str) -> u32 {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    // The child inherits the namespace of the thread that spawns it.
    let (a, b) = (format!("{prefix}0"), format!("{prefix}1"));
    sh(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    let ifindex = nix::net::if_::if_nametoindex(a.as_str()).expect("if_nametoindex");
    assert_ne!(ifindex, super::runner::LOOPBACK);
    ifindex
}
