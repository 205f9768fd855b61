//! The kernel's BPF and netlink interfaces: the loaded programs and their
//! maps (this file), attaching them to interfaces ([`attach`]), pinning
//! ([`pin`]), privileges ([`privileges`]), link events ([`links`]), the
//! announced addresses ([`addresses`]) and the UDP socket table
//! ([`sock_diag`], [`sockets`]). Every `unsafe` block of udplb that makes
//! a syscall is under this module (`lib.rs` denies `unsafe_code` elsewhere
//! but in `abi.rs`, whose `Plain` impls are proven by their layout, and the
//! generated skeleton). Plain
//! socket I/O (control socket, HTTP, probes) is the daemon's.
//!
//! This file opens and loads the libbpf-cargo skeleton; [`apply`] writes
//! [`Plan`](crate::plan::Plan)s to its maps, [`counters`] reads them back, and [`clock`]
//! measures the kernel's jiffies at load.

pub mod addresses;
mod apply;
pub mod attach;
mod clock;
mod counters;
pub mod host;
pub mod links;
pub mod neighbours;
pub mod netlink;
pub mod pin;
pub mod privileges;
pub mod sock_diag;
pub mod sockets;

pub use clock::snap_hz;
pub use counters::{Counters, FlowTable};

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::sync::Mutex;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, OpenObject};

use crate::abi;
use crate::bpf::{UdplbSkel, UdplbSkelBuilder};
use crate::config::check_interface_name;
use crate::error::UsageError;

pub struct Datapath {
    skel: UdplbSkel<'static>,
    /// Possible CPUs: the number of values in a per-CPU map entry.
    cpus: usize,
    /// Whether the flow table came from a pin (`--pin` restart).
    flows_reused: bool,
    /// The exact-address frontends written, by port entry (see
    /// [`port_index`]): address -> table. What port_exact must say.
    exact: Mutex<BTreeMap<u32, BTreeMap<[u32; 4], u32>>>,
}

/// What [`Datapath::load_with`] may change before load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Flow table entries (`None`: UDPLB_DEFAULT_FLOW_TABLE_SIZE).
    pub flow_table_size: Option<u32>,
    /// A pinned flow table to keep using (a `--pin` restart), if one is
    /// there and has the same shape and size.
    pub reuse_flows: Option<std::path::PathBuf>,
}

impl Datapath {
    /// Opens and loads the program and creates its maps. Nothing is attached.
    pub fn load() -> Result<Datapath> {
        Datapath::load_with(&LoadOptions::default())
    }

    /// [`Datapath::load`] with a flow table size and a pinned table to reuse.
    pub fn load_with(opts: &LoadOptions) -> Result<Datapath> {
        // The skeleton borrows its object storage for as long as it lives,
        // and a `Datapath` owns the skeleton: the storage is leaked, one
        // small allocation per load (udplb loads once per run; the tests
        // and the bench load a few hundred times at most).
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = UdplbSkelBuilder::default()
            .open(storage)
            .context("opening the BPF object")?;
        let size = opts
            .flow_table_size
            .unwrap_or(abi::UDPLB_DEFAULT_FLOW_TABLE_SIZE);
        open.maps
            .flows
            .set_max_entries(size)
            .context("sizing the flow table")?;
        let pinned = opts
            .reuse_flows
            .as_deref()
            .and_then(|p| pinned_flows(p, size));
        if let Some(old) = &pinned {
            open.maps
                .flows
                .reuse_fd(old.as_fd())
                .context("reusing the pinned flow table")?;
        }
        let skel = open.load().map_err(|e| {
            let hint = if is_eperm(&e) {
                " (loading udplb needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
            } else {
                ""
            };
            anyhow::anyhow!("loading the BPF programs into the kernel failed: {e}{hint}")
        })?;
        let cpus = libbpf_rs::num_possible_cpus().context("counting possible CPUs")?;
        let mut dp = Datapath {
            skel,
            cpus,
            flows_reused: pinned.is_some(),
            exact: Mutex::default(),
        };
        let hz = dp.measure_hz()?;
        dp.skel
            .maps
            .bss_data
            .as_deref_mut()
            .context("the program's .bss")?
            .jiffies_hz = hz;
        Ok(dp)
    }

    /// Whether the flow table is the one a previous `udplb --pin` left.
    pub fn flows_reused(&self) -> bool {
        self.flows_reused
    }

    /// The flow table map (tests read and write pins through it).
    pub fn flows_map(&self) -> &libbpf_rs::MapMut<'static> {
        &self.skel.maps.flows
    }

    /// The XDP program (ingress), for attaching and for BPF_PROG_TEST_RUN.
    pub fn xdp_program(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.skel.progs.udplb_xdp
    }

    /// The TC egress program that rewrites replies leaving an interface.
    pub fn egress_prog(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.skel.progs.udplb_egress
    }

    /// An XDP program that only returns XDP_PASS: the cost floor the
    /// benchmarks compare against.
    pub fn noop_program(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.skel.progs.udplb_noop
    }

    /// Lets the datapath redirect remote-backend traffic out of `ifindex`
    /// (one of the interfaces udplb is attached to).
    pub fn add_tx_port(&self, ifindex: u32) -> Result<()> {
        let key = ifindex.to_ne_bytes();
        self.skel
            .maps
            .tx_ports
            .update(&key, &key, MapFlags::ANY)
            .with_context(|| format!("adding ifindex {ifindex} to the redirect targets"))
    }

    /// The interface `ifindex` is gone: no more redirects to it. (The
    /// kernel drops it from the devmap itself when it unregisters; this only
    /// makes sure.)
    pub fn remove_tx_port(&self, ifindex: u32) {
        let _ = apply::delete(&self.skel.maps.tx_ports, &ifindex.to_ne_bytes());
    }

    /// Pins every map under `dir` (for `--pin`), replacing older pins.
    pub fn pin_maps(&mut self, dir: &std::path::Path) -> Result<()> {
        for mut map in self.skel.object_mut().maps_mut() {
            // Internal maps (`.bss`: jiffies_hz, written at every load)
            // belong to one load of the program, not to the state a --pin
            // restart keeps; bpffs refuses names with a period anyway.
            if map.name().to_string_lossy().contains('.') {
                continue;
            }
            let path = dir.join(map.name());
            let _ = std::fs::remove_file(&path);
            map.pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        Ok(())
    }
}

/// The pinned flow table at `path` if it can serve as this one: an LRU hash
/// with the same key and value sizes and `size` entries. Anything else
/// (another size, an older udplb) starts a new table, and says so.
fn pinned_flows(path: &std::path::Path, size: u32) -> Option<MapHandle> {
    let old = MapHandle::from_pinned_path(path).ok()?;
    let same = old.map_type() == MapType::LruHash
        && old.key_size() as usize == size_of::<abi::FlowKey>()
        && old.value_size() as usize == size_of::<abi::Flow>()
        && old.max_entries() == size;
    if !same {
        crate::say!(
            "udplb: the pinned flow table ({} entries) does not fit this one ({size}): \
             starting with an empty one",
            old.max_entries()
        );
        return None;
    }
    Some(old)
}

/// EPERM (missing capability), as opposed to EACCES (verifier refusal).
fn is_eperm(e: &libbpf_rs::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.raw_os_error() == Some(nix::errno::Errno::EPERM as i32);
        }
        source = s.source();
    }
    false
}

/// Loopback is ifindex 1 in every network namespace.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// `eth0` or `eth0,eth1`: names and indexes, each once.
pub fn interfaces(list: &str) -> Result<Vec<(String, u32)>, UsageError> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for name in list.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(UsageError(format!("empty interface name in '{list}'")));
        }
        check_interface_name(name)?;
        let ifindex = nix::net::if_::if_nametoindex(name)
            .map_err(|_| UsageError(format!("unknown interface '{name}'")))?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(UsageError(format!("interface {name} is listed twice")));
        }
        out.push((name.to_string(), ifindex));
    }
    if out.len() > abi::UDPLB_MAX_INTERFACES as usize {
        return Err(UsageError(format!(
            "{} interfaces given; the limit is {}",
            out.len(),
            abi::UDPLB_MAX_INTERFACES
        )));
    }
    Ok(out)
}
