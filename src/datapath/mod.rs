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
//! This file opens and loads the libbpf-cargo skeleton, applies [`Plan`]s to
//! the maps and reads the per-CPU counters back.

pub mod addresses;
pub mod attach;
pub mod host;
pub mod links;
pub mod netlink;
pub mod pin;
pub mod privileges;
pub mod sock_diag;
pub mod sockets;

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, OpenObject};

use crate::abi::{self, bytes_of, Counter, Endpoint, Passive, REASON_COUNT};
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
    /// Packets per egress verdict (the TC program), indexed by enum
    /// udplb_egress_verdict.
    pub egress: [u64; abi::EGRESS_VERDICT_COUNT],
    /// Flow table events, indexed by enum udplb_flow_counter.
    pub flow_events: [u64; abi::FLOW_COUNTER_COUNT],
    /// How quic frontends routed requests, indexed by enum udplb_quic_counter.
    pub quic_events: [u64; abi::QUIC_COUNTER_COUNT],
    /// Live pinned flows per frontend, per backend (config order); empty
    /// when the table was not walked (see [`Datapath::flows`]).
    pub live_flows: Vec<Vec<u64>>,
    /// Entries in the flow table (live or idle) at the last walk.
    pub flow_entries: u64,
}

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

/// The flow table: pins summed per backend slot (see [`Datapath::flows`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowTable {
    /// Entries in the map, live or not.
    pub entries: u64,
    /// Live pins (last reply within the frontend's timeout) per backend slot.
    pub live: std::collections::BTreeMap<u32, u64>,
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

    /// The kernel's CONFIG_HZ, measured: jiffies counted between two of
    /// their edges against CLOCK_MONOTONIC (as Cilium does), rather than
    /// read from a kernel configuration file that containers and Debian's
    /// kernels do not have. Two measures that agree: over 20 ms first, then,
    /// where those disagree (a loaded or emulated machine, whose system
    /// calls and ticks come late by milliseconds), over 250 ms and 1 s,
    /// where such delays weigh less.
    fn measure_hz(&self) -> Result<u64> {
        let jiffies = || self.clock().map(|c| c.jiffies);
        let once = |window: Duration| -> Result<f64> {
            let deadline = Instant::now() + Duration::from_secs(2);
            let edge = |from: u64| -> Result<(u64, Instant)> {
                loop {
                    let j = jiffies()?;
                    if j != from {
                        return Ok((j, Instant::now()));
                    }
                    if Instant::now() > deadline {
                        anyhow::bail!("the kernel's jiffies did not move for 2 s");
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
            };
            let (j0, t0) = edge(jiffies()?)?;
            let (mut j, mut t) = edge(j0)?;
            // At least 5 ticks and the window: an edge seen 0.1 ms late is
            // then a 0.5 % error at most over 20 ms.
            while j - j0 < 5 || t - t0 < window {
                (j, t) = edge(j)?;
            }
            Ok((j - j0) as f64 / (t - t0).as_secs_f64())
        };
        let mut seen = Vec::new();
        let ms = Duration::from_millis;
        for window in [ms(20), ms(20), ms(20), ms(250), ms(250), ms(1000), ms(1000)] {
            let hz = snap_hz(once(window).context("measuring the kernel's clock (jiffies)")?);
            if seen.contains(&hz) {
                return Ok(hz);
            }
            seen.push(hz);
        }
        anyhow::bail!(
            "the kernel's clock measured differently each time: {seen:?} jiffies a second"
        )
    }

    /// Whether the flow table is the one a previous `udplb --pin` left.
    pub fn flows_reused(&self) -> bool {
        self.flows_reused
    }

    /// The flow table map (tests read and write pins through it).
    pub fn flows_map(&self) -> &libbpf_rs::MapMut<'static> {
        &self.skel.maps.flows
    }

    /// Flow table events (enum udplb_flow_counter), summed over all CPUs.
    pub fn flow_counters(&self) -> Result<[u64; abi::FLOW_COUNTER_COUNT]> {
        let mut out = [0u64; abi::FLOW_COUNTER_COUNT];
        for (i, total) in out.iter_mut().enumerate() {
            for cpu in percpu(&self.skel.maps.flow_counters, i as u32)? {
                *total += abi::from_bytes::<u64>(&cpu).unwrap_or(0);
            }
        }
        Ok(out)
    }

    /// QUIC routing events (enum udplb_quic_counter), summed over all CPUs.
    pub fn quic_counters(&self) -> Result<[u64; abi::QUIC_COUNTER_COUNT]> {
        let mut out = [0u64; abi::QUIC_COUNTER_COUNT];
        for (i, total) in out.iter_mut().enumerate() {
            for cpu in percpu(&self.skel.maps.quic_counters, i as u32)? {
                *total += abi::from_bytes::<u64>(&cpu).unwrap_or(0);
            }
        }
        Ok(out)
    }

    /// Walks the flow table once: entries, and live pins per backend slot.
    /// `slot_info(slot)` is the idle timeout (seconds) of the frontend the
    /// slot belongs to and the ident of the backend in it, `None` for a slot
    /// no frontend uses now. A pin is live if its last reply is within that
    /// timeout and the slot still holds the backend it was pinned to.
    pub fn flows(&self, slot_info: impl Fn(u32) -> Option<(u32, u32)>) -> Result<FlowTable> {
        let map = &self.skel.maps.flows;
        let clock = self.clock()?;
        let mut table = FlowTable::default();
        // One syscall per 4096 entries. A hash map that changes during the
        // walk may skip or repeat a few entries: these are estimates.
        let batches = map
            .lookup_batch(4096, MapFlags::ANY, MapFlags::ANY)
            .context("walking the flow table")?;
        for (_, bytes) in batches {
            table.entries += 1;
            let Some(flow) = abi::from_bytes::<abi::Flow>(&bytes) else {
                continue;
            };
            let Some((timeout, ident)) = slot_info(flow.slot) else {
                continue;
            };
            // As the datapath: a time over a second ahead is expired.
            let age = clock.jiffies.saturating_sub(flow.last_seen);
            let ahead = flow.last_seen.saturating_sub(clock.jiffies);
            if ident == flow.ident && age <= timeout as u64 * clock.hz && ahead <= clock.hz {
                *table.live.entry(flow.slot).or_default() += 1;
            }
        }
        Ok(table)
    }

    /// The datapath's clock: jiffies now, and the jiffies per second
    /// measured at load. Pins keep their time in jiffies, which only the
    /// kernel can read; this runs `udplb_clock` once.
    pub fn clock(&self) -> Result<abi::Clock> {
        // A minimum-size Ethernet frame (BPF_PROG_TEST_RUN needs at least
        // ETH_HLEN, 14 bytes).
        let frame = [0u8; 64];
        let input = libbpf_rs::ProgramInput {
            data_in: Some(&frame),
            repeat: 1,
            ..Default::default()
        };
        self.skel
            .progs
            .udplb_clock
            .test_run(input)
            .context("reading the datapath's clock (BPF_PROG_TEST_RUN of udplb_clock)")?;
        let value = self
            .skel
            .maps
            .clock
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .context("the clock map has no entry")?;
        abi::from_bytes(&value).context("the clock map's value")
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
    /// later plans. (Tests and benchmarks; the daemon goes through
    /// `plan::MapWriter`.)
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
        for (verdict, total) in c.egress.iter_mut().enumerate() {
            for cpu in percpu(&maps.egress_counters, verdict as u32)? {
                *total += abi::from_bytes::<u64>(&cpu).unwrap_or(0);
            }
        }
        c.flow_events = self.flow_counters()?;
        c.quic_events = self.quic_counters()?;
        Ok(c)
    }

    /// Notes exact-address frontend `key` live on ring `ring_id` (or gone), then
    /// points its port's port_exact entry at the port's only exact-address
    /// frontend of that family, at none, or at the hash for several, which
    /// already holds them all (written before, deleted after this).
    fn point_port_exact(&self, key: &Endpoint, ring_id: Option<u32>) -> Result<()> {
        let index = port_index(key);
        let mut exact = self.exact.lock().unwrap_or_else(|e| e.into_inner());
        let on_port = exact.entry(index).or_default();
        match ring_id {
            Some(t) => on_port.insert(key.addr_be, t),
            None => on_port.remove(&key.addr_be),
        };
        let only = match on_port.values().collect::<Vec<_>>()[..] {
            [] => 0,
            [t] => t + 1,
            _ => abi::UDPLB_PORT_EXACT_SEVERAL,
        };
        if on_port.is_empty() {
            exact.remove(&index);
        }
        write_port_entry(&self.skel.maps.port_exact, index, only)
    }
}

/// Each op is one change a packet sees before or after it, never half: one
/// map update (a ring: a new inner map, then one update of the outer map),
/// or a few in an order where every step between is one of those states —
/// a value first, what finds it after (a frontend's record, then its port
/// entry or hash key; a reply's hash key, then its port entry); a removal
/// only takes away what finds a value.
impl plan::Maps for Datapath {
    // Over 80 lines: one arm per kind of op, read as a table of what each
    // writes and in which order; the orders above are easier to check side
    // by side than spread over a function per op.
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
            // A local backend of a port-only frontend is found by its slot
            // (whose backend value, written before, says the rest), and by
            // the hash when the slot has gone to another backend.
            Op::Reply(key, target) => {
                maps.replies
                    .update(bytes_of(&key), bytes_of(&target), MapFlags::ANY)
                    .context("writing the reply map")?;
                if !key.is_wildcard() {
                    return Ok(());
                }
                write_port_entry(
                    &maps.port_replies,
                    port_index(&key),
                    target.backend_slot + 1,
                )
            }
            Op::Ring(ring_id, ring) => {
                let inner = new_ring(ring_id, ring)?;
                maps.rings
                    .update(
                        &ring_id.to_ne_bytes(),
                        &inner.as_fd().as_raw_fd().to_ne_bytes(),
                        MapFlags::ANY,
                    )
                    .with_context(|| format!("installing ring {ring_id}"))
            }
            Op::PortFlags(port, flags) => write_port_flags(&maps.port_flags, port, flags),
            Op::QuicServer(key, target) => maps
                .quic_servers
                .update(bytes_of(&key), bytes_of(&target), MapFlags::ANY)
                .context("writing a QUIC server ID"),
            Op::DeleteQuicServer(key) => {
                delete(&maps.quic_servers, bytes_of(&key)).context("removing a QUIC server ID")
            }
            // A frontend's record at its table first (no packet reads it:
            // the ring just installed there waited for every program that
            // could), then what points to it: the port's entry, one 4-byte
            // store; an exact address's hash entry, and its port's entry if
            // it is the port's only one.
            Op::Frontend(key, fe) => {
                maps.fe_records
                    .update(&fe.ring_id.to_ne_bytes(), bytes_of(&fe), MapFlags::ANY)
                    .with_context(|| format!("writing frontend record {}", fe.ring_id))?;
                if key.is_wildcard() {
                    return write_port_entry(
                        &maps.port_frontends,
                        port_index(&key),
                        fe.ring_id + 1,
                    );
                }
                maps.frontends
                    .update(bytes_of(&key), bytes_of(&fe), MapFlags::ANY)
                    .context("writing the frontend map")?;
                self.point_port_exact(&key, Some(fe.ring_id))
            }
            Op::DeleteFrontend(key) if key.is_wildcard() => {
                write_port_entry(&maps.port_frontends, port_index(&key), 0)
            }
            // Deletions tolerate a missing key: a frontend that never changed
            // has only one of its two rings, and a plan may be applied again.
            Op::DeleteFrontend(key) => {
                delete(&maps.frontends, bytes_of(&key)).context("removing a frontend")?;
                self.point_port_exact(&key, None)
            }
            Op::DeleteReply(key) => {
                if key.is_wildcard() {
                    write_port_entry(&maps.port_replies, port_index(&key), 0)?;
                }
                delete(&maps.replies, bytes_of(&key)).context("removing a reply entry")
            }
            Op::DeleteRing(ring_id) => delete(&maps.rings, &ring_id.to_ne_bytes())
                .with_context(|| format!("removing ring {ring_id}")),
        }
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

/// The index of `key`'s port and family in the arrays by port
/// (include/udplb.h, UDPLB_PORT_KEYS).
fn port_index(key: &Endpoint) -> u32 {
    u32::from(key.port()) * 2 + u32::from(key.family == abi::UDPLB_FAMILY_IPV6 as u8)
}

/// Sets entry `index` of port_frontends, port_exact or port_replies to
/// `value`: one 4-byte store.
fn write_port_entry(map: &impl MapCore, index: u32, value: u32) -> Result<()> {
    map.update(&index.to_ne_bytes(), &value.to_ne_bytes(), MapFlags::ANY)
        .with_context(|| format!("writing the entry of port {}", index / 2))
}

/// A ring as an inner map of `rings`: an array of backend slots, sized to
/// the ring (BPF_F_INNER_MAP allows sizes to differ from the template).
fn new_ring(ring_id: u32, ring: &[u32]) -> Result<MapHandle> {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: libbpf_sys::BPF_F_INNER_MAP,
        ..Default::default()
    };
    // An array cannot be empty; ring_size 0 keeps the datapath away from it.
    let entries = ring.len().max(1) as u32;
    let map = MapHandle::create(
        MapType::Array,
        Some(format!("udplb_ring{ring_id}")),
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

/// A measured rate of jiffies, as the CONFIG_HZ it is: the nearest of the
/// values x86 kernels are built with, when within 10 %; else the measure
/// itself, rounded (another architecture's value).
pub fn snap_hz(measured: f64) -> u64 {
    const BUILT: [u64; 4] = [100, 250, 300, 1000];
    let near = BUILT
        .iter()
        .min_by(|a, b| {
            let d = |x: &&u64| (measured / **x as f64 - 1.0).abs();
            d(a).total_cmp(&d(b))
        })
        .copied()
        .unwrap_or(0);
    match (measured / near as f64 - 1.0).abs() <= 0.10 {
        true => near,
        false => measured.round().max(1.0) as u64,
    }
}

#[cfg(test)]
mod hz_tests {
    use super::snap_hz;

    #[test]
    fn measured_rates_snap_to_the_configured_hz() {
        for (measured, hz) in [
            (99.0, 100),
            (104.0, 100),
            (245.0, 250),
            (262.0, 250),
            (290.0, 300),
            (310.0, 300),
            (960.0, 1000),
            (1030.0, 1000),
            (24.2, 24),
            (1500.4, 1500),
        ] {
            assert_eq!(snap_hz(measured), hz, "{measured}");
        }
    }
}
