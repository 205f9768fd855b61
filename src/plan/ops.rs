//! A plan as map writes: [`Plan`] groups them by kind, [`Plan::ops`] puts
//! them in the order that keeps every packet on a consistent backend set,
//! and [`apply_from`] writes them through [`Maps`].

use crate::abi::{Backend, Endpoint, Frontend, QuicKey, QuicTarget, ReplyTarget};

/// Map operations, applied in the order of [`Plan::ops`] (see
/// `Datapath::apply`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Slots (re)used by a new backend: their counters start at zero.
    pub zero_counters: Vec<u32>,
    /// New frontends' ids: their round-robin cursors start at zero, and
    /// their reply counters too.
    pub new_frontend_ids: Vec<u32>,
    pub backends: Vec<(u32, Backend)>,
    pub replies: Vec<(Endpoint, ReplyTarget)>,
    /// (ring id, ring of backend slots).
    pub rings: Vec<(u32, Vec<u32>)>,
    /// QUIC server IDs new or pointing to another target: written with
    /// the rings, before the switch (a packet naming a new one fell back
    /// until now).
    pub quic_servers: Vec<(QuicKey, QuicTarget)>,
    /// Port flags for the union of the old and new state, written before
    /// the switch so no packet of either is skipped...
    pub port_flags: Vec<(u16, u8)>,
    /// The switch: each frontend entry is replaced in one update.
    pub frontends: Vec<(Endpoint, Frontend)>,
    pub delete_frontends: Vec<Endpoint>,
    /// Backends that move to another frontend (or come back while their
    /// keys linger): their reply keys had a target already. Each key is
    /// rewritten after the frontend that sent to it has switched (or is
    /// deleted) and before the one that takes it switches, so that a
    /// request reaching the backend is answered from the frontend that sent
    /// it (a reply in flight across the switch may not be). DeleteFrontend,
    /// Reply and Frontend ops, after `frontends`, in the order
    /// `State::order_moves` (moves.rs) gives them.
    pub moves: Vec<Op<'static>>,
    /// Only [`State::expire`](super::State::expire) deletes reply entries;
    /// a reload leaves those of removed backends lingering.
    pub delete_replies: Vec<Endpoint>,
    pub delete_rings: Vec<u32>,
    /// QUIC server IDs no backend holds any more: deleted after the switch
    /// (a removed backend's slot already refuses CID routes, see
    /// `retired_value` in values.rs; a kept backend whose ID changed takes
    /// packets naming its old one until then).
    pub delete_quic_servers: Vec<QuicKey>,
    /// ...and the new state's alone, written after it.
    pub port_flags_after: Vec<(u16, u8)>,
    /// One line per change, for the log.
    pub changes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The plan as single map writes, in the order they must be applied:
    /// counters and backends, new reply entries, the new rings, QUIC server
    /// IDs and port flags, then the frontend entries (the switch; moved
    /// backends' reply entries in the middle of it), and only then the
    /// deletions of frontends, reply entries and server IDs, the port
    /// flags lowered to the new state's, and last the old rings.
    pub fn ops(&self) -> impl Iterator<Item = Op<'_>> {
        let p = self;
        (p.zero_counters.iter().map(|&s| Op::ZeroCounters(s)))
            .chain(p.new_frontend_ids.iter().map(|&id| Op::ResetFrontend(id)))
            .chain(p.backends.iter().map(|(s, b)| Op::Backend(*s, *b)))
            .chain(p.replies.iter().map(|(k, t)| Op::Reply(*k, *t)))
            .chain(p.rings.iter().map(|(t, r)| Op::Ring(*t, r)))
            .chain(p.quic_servers.iter().map(|(k, t)| Op::QuicServer(*k, *t)))
            .chain(p.port_flags.iter().map(|&(p, f)| Op::PortFlags(p, f)))
            .chain(p.frontends.iter().map(|(k, f)| Op::Frontend(*k, *f)))
            .chain(p.moves.iter().copied())
            .chain(p.delete_frontends.iter().map(|&k| Op::DeleteFrontend(k)))
            .chain(p.delete_replies.iter().map(|&k| Op::DeleteReply(k)))
            .chain(
                p.delete_quic_servers
                    .iter()
                    .map(|&k| Op::DeleteQuicServer(k)),
            )
            .chain(p.port_flags_after.iter().map(|&(p, f)| Op::PortFlags(p, f)))
            .chain(p.delete_rings.iter().map(|&t| Op::DeleteRing(t)))
    }
}

/// One map write of a [`Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// Zero a backend slot's per-CPU counters.
    ZeroCounters(u32),
    /// Zero a new frontend id's round-robin cursors and reply counters.
    ResetFrontend(u32),
    Backend(u32, Backend),
    Reply(Endpoint, ReplyTarget),
    /// Install a new ring (a fresh inner map) as table `.0`.
    Ring(u32, &'a [u32]),
    PortFlags(u16, u8),
    /// A QUIC server ID and the backend holding it.
    QuicServer(QuicKey, QuicTarget),
    Frontend(Endpoint, Frontend),
    /// Deletions tolerate a missing key.
    DeleteFrontend(Endpoint),
    DeleteReply(Endpoint),
    DeleteRing(u32),
    DeleteQuicServer(QuicKey),
}

/// Whatever carries out [`Op`]s: the real maps (`datapath::Datapath`), or
/// a model of them in tests.
pub trait Maps {
    fn write(&self, op: Op<'_>) -> anyhow::Result<()>;
}

/// A plan that stopped part-way: `step` (an index into [`Plan::ops`])
/// failed, every step before it was written.
#[derive(Debug)]
pub struct Interrupted {
    pub step: usize,
    pub error: anyhow::Error,
}

/// Applies `plan`'s ops from `from` on, in order, stopping at the first
/// that fails.
pub fn apply_from(maps: &impl Maps, plan: &Plan, from: usize) -> Result<(), Interrupted> {
    for (step, op) in plan.ops().enumerate().skip(from) {
        maps.write(op)
            .map_err(|error| Interrupted { step, error })?;
    }
    Ok(())
}
