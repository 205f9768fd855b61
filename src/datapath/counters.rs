//! Reading the datapath's counters back: per-CPU values summed over every
//! possible CPU, and one walk of the flow table for its live pins.

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use super::Datapath;
use crate::abi::{self, Counter, Passive, REASON_COUNT};
use crate::plan::Layout;

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

/// The flow table: pins summed per backend slot (see [`Datapath::flows`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowTable {
    /// Entries in the map, live or not.
    pub entries: u64,
    /// Live pins (last reply within the frontend's timeout) per backend slot.
    pub live: std::collections::BTreeMap<u32, u64>,
}

impl Datapath {
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
