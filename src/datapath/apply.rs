//! Applying a [`Plan`] to the maps: each op of the plan as the map
//! updates that make it, in the order that keeps every packet on a
//! consistent backend set.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::Datapath;
use crate::abi::{self, bytes_of, Counter, Endpoint, Passive};
use crate::config::Config;
use crate::plan::{self, Op, Plan, State};

impl Datapath {
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

/// Deletes `key`; a key that is already gone is fine.
pub(super) fn delete(map: &impl MapCore, key: &[u8]) -> libbpf_rs::Result<()> {
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
