//! Everything that touches the kernel: the loaded programs and their maps
//! (this file), attaching them to interfaces ([`attach`]), pinning
//! ([`pin`]), privileges ([`privileges`]) and interface names. Every syscall
//! and every `unsafe` of udplb lives under this module (the `plain::Plain`
//! impls of the ABI mirrors in `abi.rs` aside).
//!
//! This file opens and loads the libbpf-cargo skeleton, applies [`Plan`]s to
//! the maps and reads the per-CPU counters back.

pub mod addresses;
pub mod attach;
pub mod links;
pub mod pin;
pub mod privileges;
pub mod sock_diag;
pub mod sockets;

pub use attach::XdpMode;

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, OpenObject};

use crate::abi::{self, bytes_of, Counter, Passive, REASON_COUNT};
use crate::bpf::{UdplbSkel, UdplbSkelBuilder};
use crate::config::{check_interface_name, Config};
use crate::error::UsageError;
use crate::plan::{self, Layout, Op, Plan, State};

/// Counters summed over every possible CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per frontend (config order), per backend (config order).
    pub backends: Vec<Vec<Counter>>,
    /// Replies rewritten, per frontend.
    pub replies: Vec<Counter>,
    /// Passive signals, indexed like `backends`: ICMP errors about
    /// datagrams sent to each backend and replies seen from it.
    pub passive: Vec<Vec<Passive>>,
    /// Packets per verdict reason, indexed by reason code.
    pub reasons: [u64; REASON_COUNT],
}

pub struct Datapath {
    skel: UdplbSkel<'static>,
    /// Possible CPUs: the number of values in a per-CPU map entry.
    cpus: usize,
}

impl Datapath {
    /// Opens and loads the program and creates its maps. Nothing is attached.
    pub fn load() -> Result<Datapath> {
        // The skeleton borrows its object storage for as long as it lives;
        // one small allocation per load, owned by the skeleton in practice.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = UdplbSkelBuilder::default()
            .open(storage)
            .context("opening the BPF object")?;
        let skel = open.load().map_err(|e| {
            let hint = if is_eperm(&e) {
                " (loading udplb needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
            } else {
                ""
            };
            anyhow::anyhow!("loading the BPF programs into the kernel failed: {e}{hint}")
        })?;
        let cpus = libbpf_rs::num_possible_cpus().context("counting possible CPUs")?;
        Ok(Datapath { skel, cpus })
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

    /// Applies a plan in the order that keeps every packet on a consistent
    /// backend set (see [`Plan::ops`]).
    pub fn apply(&self, plan: &Plan) -> Result<()> {
        plan::apply_from(self, plan, 0).map_err(|i| i.error)
    }

    /// Writes `config` into freshly loaded maps; returns the state for
    /// later plans. (Tests and first start.)
    pub fn configure(&self, config: &Config) -> Result<State> {
        let (plan, state) = State::default().plan(config);
        self.apply(&plan)?;
        Ok(state)
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
        let _ = delete(&self.skel.maps.tx_ports, &ifindex.to_ne_bytes());
    }

    /// Pins every map under `dir` (for `--pin`), replacing older pins.
    pub fn pin_maps(&mut self, dir: &std::path::Path) -> Result<()> {
        for mut map in self.skel.object_mut().maps_mut() {
            let path = dir.join(map.name());
            let _ = std::fs::remove_file(&path);
            map.pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        Ok(())
    }

    /// Reads every counter, summed over all possible CPUs.
    pub fn counters(&self, layout: &Layout) -> Result<Counters> {
        let maps = &self.skel.maps;
        let mut c = Counters::default();
        for (id, slots) in &layout.frontends {
            let per_backend = slots
                .iter()
                .map(|s| sum_counter(&maps.backend_counters, *s))
                .collect::<Result<Vec<_>>>()?;
            c.backends.push(per_backend);
            let passive = slots
                .iter()
                .map(|s| sum_passive(&maps.passive_counters, *s))
                .collect::<Result<Vec<_>>>()?;
            c.passive.push(passive);
            c.replies.push(sum_counter(&maps.reply_counters, *id)?);
        }
        for (reason, total) in c.reasons.iter_mut().enumerate() {
            for cpu in percpu(&maps.reason_counters, reason as u32)? {
                *total += abi::from_bytes::<u64>(&cpu).unwrap_or(0);
            }
        }
        Ok(c)
    }
}

/// Each op is one map update (a ring: a new inner map, then one update of
/// the outer map), so a packet sees a map entry either before or after it.
impl plan::Maps for Datapath {
    fn write(&self, op: Op<'_>) -> Result<()> {
        let maps = &self.skel.maps;
        let zeros = |len: usize| vec![vec![0u8; len]; self.cpus];
        match op {
            Op::ZeroCounters(slot) => {
                maps.backend_counters
                    .update_percpu(
                        &slot.to_ne_bytes(),
                        &zeros(size_of::<Counter>()),
                        MapFlags::ANY,
                    )
                    .with_context(|| format!("clearing the counters of backend slot {slot}"))?;
                maps.passive_counters
                    .update_percpu(
                        &slot.to_ne_bytes(),
                        &zeros(size_of::<Passive>()),
                        MapFlags::ANY,
                    )
                    .with_context(|| {
                        format!("clearing the passive counters of backend slot {slot}")
                    })
            }
            Op::ResetFrontend(id) => {
                let key = id.to_ne_bytes();
                maps.rr_cursors
                    .update_percpu(&key, &zeros(4), MapFlags::ANY)
                    .context("resetting a cursor")?;
                maps.reply_counters
                    .update_percpu(&key, &zeros(size_of::<Counter>()), MapFlags::ANY)
                    .context("clearing reply counters")
            }
            Op::Backend(slot, backend) => maps
                .backends
                .update(&slot.to_ne_bytes(), bytes_of(&backend), MapFlags::ANY)
                .with_context(|| format!("writing backend slot {slot}")),
            Op::Reply(key, target) => maps
                .replies
                .update(bytes_of(&key), bytes_of(&target), MapFlags::ANY)
                .context("writing the reply map"),
            Op::Ring(table, ring) => {
                let inner = new_ring(table, ring)?;
                maps.rings
                    .update(
                        &table.to_ne_bytes(),
                        &inner.as_fd().as_raw_fd().to_ne_bytes(),
                        MapFlags::ANY,
                    )
                    .with_context(|| format!("installing ring {table}"))
            }
            Op::PortFlags(port, flags) => write_port_flags(&maps.port_flags, port, flags),
            Op::Frontend(key, fe) => maps
                .frontends
                .update(bytes_of(&key), bytes_of(&fe), MapFlags::ANY)
                .context("writing the frontend map"),
            // Deletions tolerate a missing key: a frontend that never changed
            // has only one of its two rings, and a plan may be applied again.
            Op::DeleteFrontend(key) => {
                delete(&maps.frontends, bytes_of(&key)).context("removing a frontend")
            }
            Op::DeleteReply(key) => {
                delete(&maps.replies, bytes_of(&key)).context("removing a reply entry")
            }
            Op::DeleteRing(table) => delete(&maps.rings, &table.to_ne_bytes())
                .with_context(|| format!("removing ring {table}")),
        }
    }
}

/// Deletes `key`; a key that is already gone is fine.
fn delete(map: &impl MapCore, key: &[u8]) -> libbpf_rs::Result<()> {
    match map.delete(key) {
        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn write_port_flags(map: &impl MapCore, port: u16, flags: u8) -> Result<()> {
    map.update(&(port as u32).to_ne_bytes(), &[flags], MapFlags::ANY)
        .with_context(|| format!("writing the flags of port {port}"))
}

/// A ring as an inner map of `rings`: an array of backend slots, sized to
/// the ring (BPF_F_INNER_MAP allows sizes to differ from the template).
fn new_ring(table: u32, ring: &[u32]) -> Result<MapHandle> {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: libbpf_sys::BPF_F_INNER_MAP,
        ..Default::default()
    };
    // An array cannot be empty; ring_size 0 keeps the datapath away from it.
    let entries = ring.len().max(1) as u32;
    let map = MapHandle::create(
        MapType::Array,
        Some(format!("udplb_ring{table}")),
        4,
        4,
        entries,
        &opts,
    )
    .with_context(|| format!("creating a ring of {entries} entries"))?;
    if !ring.is_empty() {
        let keys: Vec<u8> = (0..ring.len() as u32).flat_map(u32::to_ne_bytes).collect();
        let values: Vec<u8> = ring.iter().flat_map(|s| s.to_ne_bytes()).collect();
        map.update_batch(
            &keys,
            &values,
            ring.len() as u32,
            MapFlags::ANY,
            MapFlags::ANY,
        )
        .context("writing a ring")?;
    }
    Ok(map)
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

fn percpu(map: &impl MapCore, key: u32) -> Result<Vec<Vec<u8>>> {
    map.lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)
        .with_context(|| format!("reading counter {key}"))?
        .with_context(|| format!("counter {key} missing"))
}

fn sum_counter(map: &impl MapCore, key: u32) -> Result<Counter> {
    let mut sum = Counter::default();
    for cpu in percpu(map, key)? {
        let v: Counter = abi::from_bytes(&cpu).context("short counter value")?;
        sum.packets += v.packets;
        sum.bytes += v.bytes;
    }
    Ok(sum)
}

fn sum_passive(map: &impl MapCore, key: u32) -> Result<Passive> {
    let mut sum = Passive::default();
    for cpu in percpu(map, key)? {
        let v: Passive = abi::from_bytes(&cpu).context("short passive counter value")?;
        sum.icmp_errors += v.icmp_errors;
        sum.replies += v.replies;
    }
    Ok(sum)
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
    Ok(out)
}
