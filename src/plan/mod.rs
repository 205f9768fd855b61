//! What userspace has put in the maps, and the plan that takes the maps from
//! one configuration to the next. Pure logic: `datapath` applies plans.
//!
//! Identity: a frontend is its `Listen` (address, port); it keeps its id for
//! as long as it is configured. A backend is its port within its frontend;
//! it keeps its slot (and so its counters) for as long as it is configured.
//!
//! Atomicity: a frontend whose backends, weights or scheduler change gets a
//! new ring in the table it does not use, and only then is its frontend
//! entry replaced, in one map update (see `Plan` for the order). Slots and
//! ids freed by a plan are not reused within that plan, so a packet that
//! read the old ring a moment ago never lands on a slot that now means
//! something else; the next plan, seconds later at the earliest, may reuse
//! them.

pub mod flow_hash;
pub mod maglev;
pub mod rr;

use std::collections::{BTreeMap, BTreeSet};

use crate::abi::{bytes_of, InlineRing};
use crate::abi::{
    Backend, Endpoint, Frontend, QuicKey, QuicTarget, ReplyTarget, UDPLB_BACKEND_F_CID,
    UDPLB_BACKEND_F_PINNED, UDPLB_BACKEND_SLOTS, UDPLB_BY_PORT_IPV4, UDPLB_BY_PORT_IPV6,
    UDPLB_FAMILY_IPV6, UDPLB_FRONTEND_IDS, UDPLB_PORT_BACKEND_ANY, UDPLB_PORT_BACKEND_EXACT,
    UDPLB_PORT_FRONTEND_ANY, UDPLB_PORT_FRONTEND_EXACT, UDPLB_SCHED_MAGLEV, UDPLB_SCHED_QUIC,
    UDPLB_SCHED_RR,
};
use crate::config::{weights, BackendConfig, Config, FrontendConfig, Listen, Sched};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    id: u32,
    table: u32,
    config: FrontendConfig,
    /// Backend (address, port) -> slot.
    slots: BTreeMap<BackendId, u32>,
    /// The ring's fingerprint (see [`ring`]).
    fingerprint: u64,
    /// Entries in the ring.
    ring_size: u32,
    /// Its backends the health checks hold down: they take no pinned flows.
    down: BTreeSet<BackendId>,
    /// Its backends as the operator configured them, those health holds
    /// down marked so (see [`listing`]): what the change lines show.
    listing: String,
}

/// The maps' contents as userspace last wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    frontends: BTreeMap<Listen, Live>,
    /// Reply entries of removed backends, kept (with their port flags) so
    /// that replies already on their way are still translated; the daemon
    /// removes them a grace period later with [`State::expire`].
    lingering: BTreeSet<Endpoint>,
}

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
    /// (table, ring of backend slots).
    pub rings: Vec<(u32, Vec<u32>)>,
    /// QUIC server IDs new or moved to another slot: written with the
    /// rings, before the switch (a packet naming one fell back until now).
    pub quic_servers: Vec<(QuicKey, QuicTarget)>,
    /// Port flags for the union of the old and new configuration, written
    /// before the switch so no packet of either is skipped...
    pub port_flags: Vec<(u16, u8)>,
    /// The switch: each frontend entry is replaced in one update.
    pub frontends: Vec<(Endpoint, Frontend)>,
    pub delete_frontends: Vec<Endpoint>,
    /// Backends that move to another frontend: their reply keys had a
    /// target already. Each key is rewritten after the frontend that sent
    /// to it has switched (or is deleted) and before the one that takes it
    /// switches, so that a request reaching the backend is answered from
    /// the frontend that sent it (a reply in flight across the switch may
    /// not be). Reply, Frontend and DeleteFrontend ops in that order, after
    /// `frontends` (see [`State::order_moves`]).
    pub moves: Vec<Op<'static>>,
    /// Only [`State::expire`] deletes reply entries; a reload leaves those of
    /// removed backends lingering.
    pub delete_replies: Vec<Endpoint>,
    pub delete_rings: Vec<u32>,
    /// QUIC server IDs no backend holds any more: deleted after the switch
    /// (their backends' slots already refuse CID routes, see
    /// [`retired_value`]).
    pub delete_quic_servers: Vec<QuicKey>,
    /// ...and the new configuration's alone, written after it.
    pub port_flags_after: Vec<(u16, u8)>,
    /// One line per change, for the log.
    pub changes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The plan as single map writes, in the order they must be applied:
    /// counters and backends, new reply entries, the new rings and port
    /// flags, then the frontend entries (the switch; moved backends' reply
    /// entries in the middle of it), and only then deletions.
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

/// The tables as userspace wrote them: the [`State`] that plans start from,
/// kept in step with the maps whatever happens to a plan.
///
/// A plan that fails part-way leaves the maps between two states: some
/// frontends may already read their new table, whose twin the old state
/// calls idle. Planning again from the old state would write a ring that
/// packets are reading. So the state moves to the plan's target at once,
/// and the rest of the failed plan (from the step that failed; every write
/// is idempotent) is finished before anything else is written. Then no
/// plan ever writes a ring a frontend entry points to, and the maps end up
/// exactly as a clean apply would leave them.
#[derive(Debug, Default)]
pub struct Tables {
    state: State,
    /// A plan that stopped part-way, and the step to resume at.
    unfinished: Option<(Plan, usize)>,
}

impl Tables {
    /// The state the maps hold, or are on their way to if a plan failed.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Finishes a plan that failed earlier, then plans the change to
    /// `config` and applies it. Returns the changes made, one line each
    /// (none: the maps already held `config`). On error the tables are
    /// on their way to `config`, and the next call finishes the job.
    pub fn apply(&mut self, maps: &impl Maps, config: &Config) -> anyhow::Result<Vec<String>> {
        self.apply_with(maps, config, &Down::new())
    }

    /// As [`apply`](Self::apply), with the backends in `down` out of their
    /// rings: a health transition is a plan like a reload's.
    pub fn apply_with(
        &mut self,
        maps: &impl Maps,
        config: &Config,
        down: &Down,
    ) -> anyhow::Result<Vec<String>> {
        let mut changes = self.finish(maps)?;
        let (plan, next) = self.state.plan_with(config, down);
        changes.extend(self.run(maps, plan, next)?);
        Ok(changes)
    }

    /// Deletes the lingering reply entries `keys` (see [`State::expire`]),
    /// after finishing a plan that failed earlier.
    pub fn expire(&mut self, maps: &impl Maps, keys: &BTreeSet<Endpoint>) -> anyhow::Result<()> {
        self.finish(maps)?;
        let (plan, next) = self.state.expire(keys);
        self.run(maps, plan, next).map(drop)
    }

    /// Writes the rest of a plan that failed part-way, if there is one;
    /// returns its changes.
    pub fn finish(&mut self, maps: &impl Maps) -> anyhow::Result<Vec<String>> {
        let Some((plan, step)) = self.unfinished.take() else {
            return Ok(Vec::new());
        };
        match apply_from(maps, &plan, step) {
            Ok(()) => Ok(plan.changes),
            Err(i) => {
                self.unfinished = Some((plan, i.step));
                Err(i
                    .error
                    .context("finishing the previous, interrupted change"))
            }
        }
    }

    /// Applies `plan`, which takes the maps to `next`; returns its changes.
    fn run(&mut self, maps: &impl Maps, plan: Plan, next: State) -> anyhow::Result<Vec<String>> {
        self.state = next;
        match apply_from(maps, &plan, 0) {
            Ok(()) => Ok(plan.changes),
            Err(i) => {
                self.unfinished = Some((plan, i.step));
                Err(i.error)
            }
        }
    }
}

/// Where each frontend's counters are, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub frontends: Vec<(u32, Vec<u32>)>,
}

/// A backend's identity within its frontend: (address, port).
pub type BackendId = (Option<std::net::IpAddr>, u16);

/// The backends the health checks hold down.
pub type Down = BTreeSet<(Listen, BackendId)>;

/// Whether frontend `fe` has backends with weight and every one of them
/// is in `down`.
pub fn all_down(fe: &FrontendConfig, down: &Down) -> bool {
    let mut weighted = fe.backends.iter().filter(|b| b.weight > 0).peekable();
    weighted.peek().is_some() && weighted.all(|b| down.contains(&(fe.listen, b.id())))
}

/// What the rings are built from: `config` with every backend in `down`
/// at weight 0 in the ring, as a drained backend (its slot, counters and
/// reply entries stay, so its replies are still translated, and Maglev
/// moves only its own flows). A frontend whose backends are all down keeps
/// them all (fail open), unless its `on_all_down` is `drop`: then its ring
/// is empty. Health settings are cleared: they are the daemon's, and a
/// change to them alone must not rebuild a ring.
pub fn effective(config: &Config, down: &Down) -> Config {
    let mut out = config.clone();
    for fe in &mut out.frontends {
        let all = all_down(fe, down);
        if !all || fe.health.on_all_down == crate::config::OnAllDown::Drop {
            let listen = fe.listen;
            for b in &mut fe.backends {
                if all || down.contains(&(listen, b.id())) {
                    b.weight = 0;
                }
            }
        }
        fe.health = Default::default();
    }
    out
}

/// The identity a backend is hashed by in the Maglev table: the same on
/// every balancer with the same configuration.
fn maglev_key(b: &BackendConfig) -> Vec<u8> {
    bytes_of(&b.endpoint()).to_vec()
}

/// The reply-map entries of backend `b` of the frontend with keys `keys`.
/// A local backend answers from the address the client used, so it is keyed
/// like each frontend key, on its own port, and only the port is rewritten
/// back. A remote backend is keyed by its address and port, and its replies
/// get the frontend's address and port.
fn reply_entries<'a>(
    keys: &'a [Endpoint],
    b: &'a BackendConfig,
    frontend_id: u32,
    backend_slot: u32,
) -> impl Iterator<Item = (Endpoint, ReplyTarget)> + 'a {
    keys.iter().map(move |key| match b.addr {
        None => {
            let mut frontend = *key;
            frontend.addr_be = [0; 4];
            (
                key.with_port(b.port),
                ReplyTarget {
                    frontend,
                    frontend_id,
                    backend_slot,
                },
            )
        }
        Some(_) => (
            b.endpoint(),
            ReplyTarget {
                frontend: *key,
                frontend_id,
                backend_slot,
            },
        ),
    })
}

/// The backends-map value of backend `b` of frontend `fe`. It takes pinned
/// flows (UDPLB_BACKEND_F_PINNED) on a Maglev frontend with a flow table,
/// unless the health checks hold it `down`: its flows move, as if it were
/// removed (a drained backend, weight 0 but up, keeps its pinned flows).
/// `ident` names who holds the slot, the same on every start, so a pin to a
/// slot since reused by another backend is not followed.
///
/// On a quic frontend it takes packets routed by its server ID
/// (UDPLB_BACKEND_F_CID) unless it is held down and out of the ring (a
/// frontend whose backends are all down and that fails open keeps them).
fn backend_value(fe: &FrontendConfig, id: u32, b: &BackendConfig, down: bool) -> Backend {
    let pinned = fe.sched.hashes() && fe.flow_timeout > 0 && !down;
    let cid = fe.sched == Sched::Quic && !(down && b.weight == 0);
    let mut flags = 0;
    if pinned {
        flags |= UDPLB_BACKEND_F_PINNED;
    }
    if cid {
        flags |= UDPLB_BACKEND_F_CID;
    }
    Backend {
        ep: b.endpoint(),
        weight: b.weight,
        flags,
        ident: backend_ident(&fe.listen, b),
        frontend_id: id,
        frontend_port_be: fe.listen.port.to_be(),
        by_port: by_port(fe, b),
        pad: 0,
    }
}

/// The families whose reply keys of backend `b` of `fe` are by port alone,
/// as [`reply_entries`] writes them.
fn by_port(fe: &FrontendConfig, b: &BackendConfig) -> u8 {
    let keys = fe.listen.endpoints();
    let bits = (reply_entries(&keys, b, 0, 0))
        .filter(|(k, _)| k.is_wildcard())
        .map(|(k, _)| match u32::from(k.family) {
            UDPLB_FAMILY_IPV6 => UDPLB_BY_PORT_IPV6,
            _ => UDPLB_BY_PORT_IPV4,
        })
        .fold(0, |bits, bit| bits | bit);
    bits as u8
}

/// FNV-1a of the frontend's keys and the backend's endpoint, folded to 32 bits.
pub fn backend_ident(listen: &Listen, b: &BackendConfig) -> u32 {
    let mut h = maglev::FNV1A64_START;
    for key in listen.endpoints() {
        h = maglev::fnv1a64_from(h, bytes_of(&key));
    }
    h = maglev::fnv1a64_from(h, bytes_of(&b.endpoint()));
    (h ^ (h >> 32)) as u32
}

/// A removed backend's slot: no more pinned flows to it (nor pins learned
/// from its lingering replies).
fn retired_value(fe: &FrontendConfig, id: u32, b: &BackendConfig) -> Backend {
    Backend {
        flags: 0,
        ..backend_value(fe, id, b, true)
    }
}

/// The quic_servers entries of frontend `fe` (id `id`, backends at
/// `slots`): none unless it is a quic frontend.
fn quic_entries(
    fe: &FrontendConfig,
    id: u32,
    slots: &BTreeMap<BackendId, u32>,
) -> BTreeMap<QuicKey, QuicTarget> {
    let Some(q) = fe.quic() else {
        return BTreeMap::new();
    };
    (fe.backends.iter())
        .filter_map(|b| {
            let key = QuicKey::new(id, q.config_id, b.server_id?.as_bytes());
            let target = QuicTarget {
                slot: slots[&b.id()],
                ident: backend_ident(&fe.listen, b),
            };
            Some((key, target))
        })
        .collect()
}

fn sched_code(s: Sched) -> u32 {
    match s {
        Sched::Rr => UDPLB_SCHED_RR,
        Sched::Maglev => UDPLB_SCHED_MAGLEV,
        Sched::Quic => UDPLB_SCHED_QUIC,
    }
}

/// The ring of backend slots for a frontend's configuration, and its
/// fingerprint: FNV-1a over the identities of the backends in ring order.
/// Slots differ from balancer to balancer; the fingerprint is the same on
/// every balancer that sends each flow where this one does, which is what
/// operators compare across an ECMP group.
fn ring(fe: &FrontendConfig, slots: &BTreeMap<BackendId, u32>) -> (Vec<u32>, u64) {
    let keys: Vec<Vec<u8>> = fe.backends.iter().map(maglev_key).collect();
    let picks = match fe.sched {
        Sched::Rr => rr::ring(&weights(fe)),
        Sched::Maglev | Sched::Quic => {
            let keyed: Vec<(Vec<u8>, u32)> = fe
                .backends
                .iter()
                .zip(&keys)
                .map(|(b, k)| (k.clone(), b.weight))
                .collect();
            maglev::table(&keyed, fe.table_size)
        }
    };
    let mut fingerprint = maglev::FNV1A64_START;
    let ring = picks
        .into_iter()
        .map(|i| {
            fingerprint = maglev::fnv1a64_from(fingerprint, &keys[i as usize]);
            slots[&fe.backends[i as usize].id()]
        })
        .collect();
    (ring, fingerprint)
}

/// The ring as the frontend's value also holds it, if it is short enough
/// (include/udplb.h, UDPLB_INLINE_RING); zeros otherwise.
fn inline_ring(ring: &[u32]) -> InlineRing {
    let mut inline = InlineRing::default();
    if ring.len() <= inline.len() {
        for (to, slot) in inline.iter_mut().zip(ring) {
            // Slots are below UDPLB_BACKEND_SLOTS, which u16 holds.
            *to = *slot as u16;
        }
    }
    inline
}

/// Lowest numbers in 0..limit that are in none of `taken`.
struct Allocator {
    taken: BTreeSet<u32>,
    next: u32,
    limit: u32,
}

impl Allocator {
    fn alloc(&mut self) -> u32 {
        while self.taken.contains(&self.next) {
            self.next += 1;
        }
        assert!(
            self.next < self.limit,
            "allocator exhausted: validation should prevent this"
        );
        self.taken.insert(self.next);
        self.next
    }
}

impl State {
    /// The plan from this state to `config` with every backend up, and
    /// the state after it.
    pub fn plan(&self, config: &Config) -> (Plan, State) {
        self.plan_with(config, &Down::new())
    }

    /// The plan from this state to `config` with the backends in `down`
    /// out of their rings (see [`effective`]), and the state after it.
    pub fn plan_with(&self, config: &Config, down: &Down) -> (Plan, State) {
        let configured = config;
        let config = &effective(config, down);
        let mut plan = Plan::default();
        let mut next = State::default();
        // Reply keys of the backends this plan removes.
        let mut removed = BTreeSet::new();

        let mut ids = Allocator {
            taken: BTreeSet::new(),
            next: 0,
            limit: UDPLB_FRONTEND_IDS,
        };
        let mut slots = Allocator {
            taken: BTreeSet::new(),
            next: 0,
            limit: UDPLB_BACKEND_SLOTS,
        };
        // Everything the old state uses stays taken while we allocate, so
        // nothing is reused within one plan.
        for live in self.frontends.values() {
            ids.taken.insert(live.id);
            slots.taken.extend(live.slots.values());
        }

        // `effective` keeps the frontends in order.
        for (fe, set) in config.frontends.iter().zip(&configured.frontends) {
            let old = self.frontends.get(&fe.listen);
            let shown = listing(set, down);
            // Down matters beyond the ring only where flows are pinned.
            // (and on quic frontends, where CID routes avoid down backends).
            let pins = (fe.sched.hashes() && fe.flow_timeout > 0) || fe.sched == Sched::Quic;
            let here: BTreeSet<BackendId> = (fe.backends.iter())
                .map(|b| b.id())
                .filter(|id| pins && down.contains(&(fe.listen, *id)))
                .collect();
            if let Some(old) = old.filter(|o| o.config == *fe && o.down == here) {
                let kept = Live {
                    listing: shown,
                    ..old.clone()
                };
                next.frontends.insert(fe.listen, kept);
                continue;
            }
            let (id, table) = match old {
                Some(o) => (o.id, o.table ^ 1),
                None => {
                    let id = ids.alloc();
                    plan.new_frontend_ids.push(id);
                    (id, 2 * id)
                }
            };
            let mut live = Live {
                id,
                table,
                config: fe.clone(),
                slots: BTreeMap::new(),
                fingerprint: 0,
                ring_size: 0,
                down: here,
                listing: shown,
            };
            let keys = fe.listen.endpoints();
            for b in &fe.backends {
                let kept = old.and_then(|o| o.slots.get(&b.id()).copied());
                let slot = kept.unwrap_or_else(|| slots.alloc());
                live.slots.insert(b.id(), slot);
                let old_weight =
                    old.and_then(|o| o.config.backends.iter().find(|x| x.id() == b.id()));
                if kept.is_none() {
                    plan.zero_counters.push(slot);
                    plan.replies.extend(reply_entries(&keys, b, id, slot));
                }
                let value = backend_value(fe, id, b, live.down.contains(&b.id()));
                let old_value = old_weight
                    .zip(old)
                    .map(|(x, o)| backend_value(&o.config, o.id, x, o.down.contains(&x.id())));
                if old_value != Some(value) {
                    plan.backends.push((slot, value));
                }
            }
            let old_quic = old
                .map(|o| quic_entries(&o.config, o.id, &o.slots))
                .unwrap_or_default();
            let new_quic = quic_entries(fe, id, &live.slots);
            plan.quic_servers.extend(
                (new_quic.iter())
                    .filter(|(k, t)| old_quic.get(k) != Some(t))
                    .map(|(k, t)| (*k, *t)),
            );
            plan.delete_quic_servers
                .extend(old_quic.keys().filter(|k| !new_quic.contains_key(k)));
            let (ring, fingerprint) = ring(fe, &live.slots);
            live.fingerprint = fingerprint;
            live.ring_size = ring.len() as u32;
            let value = Frontend {
                id,
                table,
                ring_size: ring.len() as u32,
                sched: sched_code(fe.sched),
                flow_timeout_s: match fe.sched {
                    Sched::Maglev | Sched::Quic => fe.flow_timeout,
                    Sched::Rr => 0,
                },
                quic_server_id_len: fe.quic().map_or(0, |q| q.server_id_len),
                quic_cid_len: fe.quic().map_or(0, |q| q.cid_len),
                port_be: fe.listen.port.to_be(),
                addr_be: [0; 4],
                ring: inline_ring(&ring),
            };
            plan.rings.push((table, ring));
            plan.frontends.extend(keys.iter().map(|k| {
                let value = Frontend {
                    addr_be: k.addr_be,
                    ..value
                };
                (*k, value)
            }));
            plan.changes.push(describe(old, &live));

            if let Some(old) = old {
                for b in &old.config.backends {
                    if !live.slots.contains_key(&b.id()) {
                        let slot = old.slots[&b.id()];
                        removed.extend(reply_entries(&keys, b, id, slot).map(|(k, _)| k));
                        plan.backends
                            .push((slot, retired_value(&old.config, id, b)));
                    }
                }
            }
            next.frontends.insert(fe.listen, live);
        }

        for (listen, old) in &self.frontends {
            if next.frontends.contains_key(listen) {
                continue;
            }
            let keys = listen.endpoints();
            plan.delete_frontends.extend(keys.iter().copied());
            for b in &old.config.backends {
                let slot = old.slots[&b.id()];
                removed.extend(reply_entries(&keys, b, old.id, slot).map(|(k, _)| k));
                plan.backends
                    .push((slot, retired_value(&old.config, old.id, b)));
            }
            plan.delete_rings.extend([2 * old.id, 2 * old.id + 1]);
            (plan.delete_quic_servers)
                .extend(quic_entries(&old.config, old.id, &old.slots).into_keys());
            plan.changes.push(format!("removed frontend {listen}"));
        }
        // Removed backends' reply keys linger, old ones stay lingering,
        // unless the new configuration uses the key again (a backend that
        // moved to another frontend, or came back): its new reply entry was
        // written above and must not be deleted.
        let rewritten: BTreeSet<Endpoint> = plan.replies.iter().map(|(k, _)| *k).collect();
        next.lingering = (self.lingering.iter().chain(&removed))
            .filter(|k| !rewritten.contains(k))
            .copied()
            .collect();
        // A key that moved from a removed frontend to a new one (a port-only
        // frontend rewritten as 0.0.0.0:PORT, say) is not deleted either.
        let switched: BTreeSet<Endpoint> = plan.frontends.iter().map(|(k, _)| *k).collect();
        plan.delete_frontends.retain(|k| !switched.contains(k));
        (plan.port_flags, plan.port_flags_after) = port_flag_changes(self, &next);
        self.order_moves(&mut plan, &next);
        (plan, next)
    }

    /// Takes the reply entries of keys this state already has, the switch
    /// of the frontends that take them and the deletion of the removed
    /// frontends that lose them out of `plan`, into [`Plan::moves`], in an
    /// order where each key is written after its old frontend switched and
    /// before its new one does. Backends swapped between frontends make a
    /// cycle no order serves: the rest of the keys go first then.
    fn order_moves(&self, plan: &mut Plan, next: &State) {
        // The old frontend of each reply key this state has (lingering
        // keys: none).
        let mut owner: BTreeMap<Endpoint, Option<u32>> =
            self.lingering.iter().map(|k| (*k, None)).collect();
        for old in self.frontends.values() {
            let keys = old.config.listen.endpoints();
            for b in &old.config.backends {
                let slot = old.slots[&b.id()];
                owner.extend(reply_entries(&keys, b, old.id, slot).map(|(k, _)| (k, Some(old.id))));
            }
        }
        let (mut moved, new): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.replies)
            .into_iter()
            .partition(|(k, _)| owner.contains_key(k));
        plan.replies = new;
        let takers: BTreeSet<u32> = moved.iter().map(|(_, t)| t.frontend_id).collect();
        let (mut taking, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.frontends)
            .into_iter()
            .partition(|(_, f)| takers.contains(&f.id));
        plan.frontends = rest;
        let mut switched: BTreeSet<u32> = plan.frontends.iter().map(|(_, f)| f.id).collect();
        // Removed frontends that lose a key stop first.
        let losers: BTreeSet<u32> = moved.iter().filter_map(|(k, _)| owner[k]).collect();
        for (listen, old) in &self.frontends {
            if next.frontends.contains_key(listen) || !losers.contains(&old.id) {
                continue;
            }
            let keys = listen.endpoints();
            let (gone, kept) = std::mem::take(&mut plan.delete_frontends)
                .into_iter()
                .partition(|k| keys.contains(k));
            plan.delete_frontends = kept;
            plan.moves.extend(gone.into_iter().map(Op::DeleteFrontend));
            switched.insert(old.id);
        }
        while !moved.is_empty() || !taking.is_empty() {
            let (ready, wait): (Vec<_>, Vec<_>) = moved
                .into_iter()
                .partition(|(k, _)| owner[k].is_none_or(|id| switched.contains(&id)));
            moved = wait;
            let waiting: BTreeSet<u32> = moved.iter().map(|(_, t)| t.frontend_id).collect();
            let (go, stay): (Vec<_>, Vec<_>) = taking
                .into_iter()
                .partition(|(_, f)| !waiting.contains(&f.id));
            taking = stay;
            if ready.is_empty() && go.is_empty() {
                // A cycle: the keys, then the frontends.
                plan.moves
                    .extend(moved.drain(..).map(|(k, t)| Op::Reply(k, t)));
                continue;
            }
            plan.moves
                .extend(ready.into_iter().map(|(k, t)| Op::Reply(k, t)));
            switched.extend(go.iter().map(|(_, f)| f.id));
            plan.moves
                .extend(go.into_iter().map(|(k, f)| Op::Frontend(k, f)));
        }
    }

    /// Reply keys of removed backends not yet expired.
    pub fn lingering(&self) -> &BTreeSet<Endpoint> {
        &self.lingering
    }

    /// The plan that deletes the lingering reply entries `keys` (those
    /// reused since are not lingering any more, and stay), and clears
    /// their ports' flags where nothing else uses them.
    pub fn expire(&self, keys: &BTreeSet<Endpoint>) -> (Plan, State) {
        let mut next = self.clone();
        next.lingering.retain(|k| !keys.contains(k));
        let mut plan = Plan {
            delete_replies: self.lingering.intersection(keys).copied().collect(),
            ..Plan::default()
        };
        (plan.port_flags, plan.port_flags_after) = port_flag_changes(self, &next);
        (plan, next)
    }

    /// Each frontend's ring fingerprint, in the order of `config` (which
    /// must be the one this state was planned for).
    pub fn fingerprints(&self, config: &Config) -> Vec<u64> {
        config
            .frontends
            .iter()
            .map(|fe| self.frontends[&fe.listen].fingerprint)
            .collect()
    }

    /// Each frontend's ring size, in the order of `config`.
    pub fn ring_sizes(&self, config: &Config) -> Vec<u32> {
        config
            .frontends
            .iter()
            .map(|fe| self.frontends[&fe.listen].ring_size)
            .collect()
    }

    /// Counter locations for `config` (which must be the one this state was
    /// planned for).
    pub fn layout(&self, config: &Config) -> Layout {
        let frontends = config
            .frontends
            .iter()
            .map(|fe| {
                let live = &self.frontends[&fe.listen];
                (
                    live.id,
                    fe.backends.iter().map(|b| live.slots[&b.id()]).collect(),
                )
            })
            .collect();
        Layout { frontends }
    }
}

/// The UDPLB_PORT_* flags of every port a state uses: its frontends and
/// their backends' reply keys, and its lingering reply keys.
fn port_flags(state: &State) -> BTreeMap<u16, u8> {
    let mut flags = BTreeMap::new();
    let mut set = |ep: &Endpoint, exact: u32, any: u32| {
        let bit = if ep.addr_be == [0; 4] { any } else { exact };
        *flags.entry(ep.port()).or_insert(0) |= bit as u8;
    };
    for fe in state.frontends.values().map(|l| &l.config) {
        let keys = fe.listen.endpoints();
        for key in &keys {
            set(key, UDPLB_PORT_FRONTEND_EXACT, UDPLB_PORT_FRONTEND_ANY);
        }
        for b in &fe.backends {
            for (key, _) in reply_entries(&keys, b, 0, 0) {
                set(&key, UDPLB_PORT_BACKEND_EXACT, UDPLB_PORT_BACKEND_ANY);
            }
        }
    }
    for key in &state.lingering {
        set(key, UDPLB_PORT_BACKEND_EXACT, UDPLB_PORT_BACKEND_ANY);
    }
    flags
}

type PortFlags = Vec<(u16, u8)>;

/// Port flags to write from `old` to `new`: the union of both before the
/// switch, so no packet of either is skipped, and `new`'s alone after it.
fn port_flag_changes(old: &State, new: &State) -> (PortFlags, PortFlags) {
    let (old_flags, new_flags) = (port_flags(old), port_flags(new));
    let ports: BTreeSet<u16> = old_flags.keys().chain(new_flags.keys()).copied().collect();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for port in ports {
        let (old, new) = (
            old_flags.get(&port).copied().unwrap_or(0),
            new_flags.get(&port).copied().unwrap_or(0),
        );
        if old | new != old {
            before.push((port, old | new));
        }
        if new != old | new {
            after.push((port, new));
        }
    }
    (before, after)
}

/// A frontend's backends for the change lines: "9876, 9877@2 (down)".
/// Weights are the configured ones; a backend the health checks hold down
/// says "down" (its ring weight 0 is not the operator's drain, `@0`).
fn listing(fe: &FrontendConfig, down: &Down) -> String {
    (fe.backends.iter())
        .map(|b| match down.contains(&(fe.listen, b.id())) {
            true => format!("{b} (down)"),
            false => b.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(old: Option<&Live>, new: &Live) -> String {
    let (listen, sched) = (new.config.listen, new.config.sched.name());
    match old {
        None => format!("frontend {listen} -> {} ({sched})", new.listing),
        Some(o) => format!(
            "frontend {listen}: {} ({}) -> {} ({sched})",
            o.listing,
            o.config.sched.name(),
            new.listing,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Defaults;

    fn cfg(specs: &[&str]) -> Config {
        Config::from_specs(specs).unwrap()
    }

    fn cfg_owned(specs: Vec<String>) -> Config {
        Config::from_specs(&specs).unwrap()
    }

    fn maglev(specs: &[&str]) -> Config {
        Config::from_specs_with(
            specs,
            Defaults {
                sched: Sched::Maglev,
                table_size: 13,
                ..Defaults::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn fingerprints_follow_the_ring_not_the_slots_or_the_listing() {
        let fp = |c: &Config| State::default().plan(c).1.fingerprints(c);
        let a = maglev(&["53=9876,9877,9878"]);
        let b = maglev(&["53=9878,9876,9877"]);
        assert_eq!(fp(&a), fp(&b), "Maglev: any listing order");
        // Other slots (a frontend planned before this one), same ring.
        let shifted = maglev(&["54=5454", "53=9876,9877,9878"]);
        assert_eq!(fp(&shifted)[1], fp(&a)[0]);
        assert_ne!(fp(&maglev(&["53=9876@2,9877,9878"])), fp(&a), "a weight");
        assert_ne!(fp(&maglev(&["53=9876,9877"])), fp(&a), "a backend");
        // Round robin follows the listing order, and so does its ring.
        assert_ne!(fp(&cfg(&["53=1,2"])), fp(&cfg(&["53=2,1"])));
        // A reload that changes nothing keeps it; one that changes the ring
        // changes it.
        let (_, s1) = State::default().plan(&a);
        let (_, s2) = s1.plan(&a);
        assert_eq!(s2.fingerprints(&a), fp(&a));
        let c = maglev(&["53=9876,9877,9878@0"]);
        assert_ne!(s2.plan(&c).1.fingerprints(&c), fp(&a));
    }

    fn quic(specs: &[&str]) -> Config {
        let defaults = Defaults {
            sched: Sched::Quic,
            table_size: 13,
            ..Defaults::default()
        };
        Config::from_specs_with(specs, defaults).unwrap()
    }

    #[test]
    fn quic_server_ids_follow_their_backends() {
        let maps = fake::FakeMaps::default();
        let mut tables = Tables::default();
        let sid = |id: &[u8]| QuicKey::new(0, 0, id);
        tables
            .apply(&maps, &quic(&["443=9876#0a01,9877#0a02"]))
            .unwrap();
        let c = maps.contents.borrow().clone();
        assert_eq!(c.quic.len(), 2);
        let slot = c.quic[&sid(&[0x0a, 0x01])].slot;
        assert_eq!(c.backends[&slot].ep.port(), 9876);
        assert_eq!(c.backends[&slot].ident, c.quic[&sid(&[0x0a, 0x01])].ident);
        assert!(c
            .backends
            .values()
            .all(|b| b.flags & UDPLB_BACKEND_F_CID != 0));
        let fe = c.frontends.values().next().unwrap();
        assert_eq!(
            (fe.sched, fe.quic_server_id_len, fe.quic_cid_len),
            (UDPLB_SCHED_QUIC, 2, 8)
        );
        // A new server ID for 9877, a drained 9876, a new backend 9878.
        tables
            .apply(&maps, &quic(&["443=9876#0a01@0,9877#0b02,9878#0a03"]))
            .unwrap();
        let c = maps.contents.borrow().clone();
        let ids: Vec<&[u8]> = c.quic.keys().map(|k| &k.server_id[..2]).collect();
        assert_eq!(ids, vec![&[0x0a, 0x01][..], &[0x0a, 0x03], &[0x0b, 0x02]]);
        let drained = c.quic[&sid(&[0x0a, 0x01])].slot;
        assert_ne!(
            c.backends[&drained].flags & UDPLB_BACKEND_F_CID,
            0,
            "drained keeps CIDs"
        );
        // 9878 down: it leaves the ring and takes no CID routes.
        let c3 = quic(&["443=9876#0a01@0,9877#0b02,9878#0a03"]);
        let down: Down = [(c3.frontends[0].listen, (None, 9878))].into();
        tables.apply_with(&maps, &c3, &down).unwrap();
        let c = maps.contents.borrow().clone();
        let s3 = c.quic[&sid(&[0x0a, 0x03])].slot;
        assert_eq!(c.backends[&s3].flags & UDPLB_BACKEND_F_CID, 0);
        // Removed frontend: its server IDs go.
        tables.apply(&maps, &cfg(&["9875=9876"])).unwrap();
        assert!(maps.contents.borrow().quic.is_empty());
        assert!(maps.violations.borrow().is_empty());
    }

    #[test]
    fn first_plan_writes_everything_before_the_switch() {
        let (plan, state) = State::default().plan(&cfg(&["9875=9876,9877,9878"]));
        assert_eq!(plan.new_frontend_ids, vec![0]);
        assert_eq!(plan.zero_counters, vec![0, 1, 2]);
        let ports: Vec<u16> = plan.backends.iter().map(|(_, b)| b.ep.port()).collect();
        assert_eq!(ports, vec![9876, 9877, 9878]);
        assert_eq!(plan.rings, vec![(0, vec![0, 1, 2])]);
        assert_eq!(plan.frontends.len(), 2, "IPv4 and IPv6 wildcard keys");
        for (key, fe) in &plan.frontends {
            assert_eq!(key.port(), 9875);
            assert_eq!(
                *fe,
                Frontend {
                    id: 0,
                    table: 0,
                    ring_size: 3,
                    sched: UDPLB_SCHED_RR,
                    flow_timeout_s: 0,
                    port_be: 9875u16.to_be(),
                    ring: [0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    ..Frontend::default()
                }
            );
        }
        assert_eq!(plan.replies.len(), 6);
        assert!(plan
            .replies
            .iter()
            .all(|(k, t)| t.frontend.port() == 9875 && k.port() != 9875));
        assert!(plan.delete_frontends.is_empty() && plan.delete_replies.is_empty());
        let layout = state.layout(&cfg(&["9875=9876,9877,9878"]));
        assert_eq!(layout.frontends, vec![(0, vec![0, 1, 2])]);
        let any = UDPLB_PORT_BACKEND_ANY as u8;
        assert_eq!(
            plan.port_flags,
            vec![
                (9875, UDPLB_PORT_FRONTEND_ANY as u8),
                (9876, any),
                (9877, any),
                (9878, any)
            ]
        );
        assert!(plan.port_flags_after.is_empty());
    }

    #[test]
    fn the_same_config_again_changes_nothing() {
        let c = cfg(&["9875=9876,9877", "53=5353"]);
        let (_, s1) = State::default().plan(&c);
        let (plan, s2) = s1.plan(&c);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan, Plan::default());
        assert_eq!(s1.frontends, s2.frontends);
    }

    #[test]
    fn reweighting_flips_the_table_and_keeps_slots() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877"]));
        let (plan, s2) = s1.plan(&cfg(&["9875=9876@3,9877"]));
        assert_eq!(plan.rings.len(), 1);
        assert_eq!(plan.rings[0].0, 1, "the idle table");
        assert_eq!(plan.rings[0].1.iter().filter(|&&s| s == 0).count(), 3);
        assert!(
            plan.zero_counters.is_empty(),
            "counters of kept backends survive"
        );
        assert!(plan.replies.is_empty() && plan.delete_replies.is_empty());
        assert_eq!(plan.backends.len(), 1, "only the reweighted backend");
        assert!(plan
            .frontends
            .iter()
            .all(|(_, f)| f.table == 1 && f.ring_size == 4));
        let (plan, _) = s2.plan(&cfg(&["9875=9876,9877"]));
        assert_eq!(plan.rings[0].0, 0, "and back");
    }

    #[test]
    fn removed_backends_and_frontends_are_cleaned_up_and_not_reused_at_once() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877", "53=5353"]));
        let (plan, s2) = s1.plan(&cfg(&["9875=9876,9878"]));
        // 9877 gone: its reply keys linger; 9878 gets a new slot (not
        // 9877's, nor 53's, freed in this same plan).
        assert_eq!(plan.zero_counters, vec![3]);
        assert!(plan.delete_replies.is_empty());
        let mut lingering: Vec<u16> = s2.lingering().iter().map(|k| k.port()).collect();
        lingering.sort();
        assert_eq!(
            lingering,
            vec![5353, 5353, 9877, 9877],
            "IPv4 and IPv6 keys"
        );
        assert_eq!(plan.delete_frontends.len(), 2);
        assert_eq!(plan.delete_rings, vec![2, 3]);
        assert!(plan.changes.iter().any(|c| c == "removed frontend *:53"));
        // Ports still in use keep their flags (lingering reply keys too);
        // freed ones are cleared after the switch, new ones set before it.
        assert_eq!(plan.port_flags, vec![(9878, UDPLB_PORT_BACKEND_ANY as u8)]);
        assert_eq!(plan.port_flags_after, vec![(53, 0)]);
        // The grace period over, they go, and so do their ports' flags.
        let (expiry, s2) = s2.expire(&s2.lingering().clone());
        assert_eq!(expiry.delete_replies.len(), 4);
        assert_eq!(expiry.port_flags_after, vec![(5353, 0), (9877, 0)]);
        assert!(expiry.port_flags.is_empty() && s2.lingering().is_empty());
        // The next plan may reuse them.
        let (plan, _) = s2.plan(&cfg(&["9875=9876,9878", "54=5454,5455"]));
        assert_eq!(plan.new_frontend_ids, vec![1]);
        assert_eq!(plan.zero_counters, vec![1, 2]);
    }

    #[test]
    fn a_backend_moving_between_frontends_keeps_a_reply_entry() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877", "53=5353"]));
        let (plan, _) = s1.plan(&cfg(&["9875=9876", "53=5353,9877"]));
        assert!(plan.moves.iter().any(
            |op| matches!(op, Op::Reply(k, t) if k.port() == 9877 && t.frontend.port() == 53)
        ));
        assert!(!plan.delete_replies.iter().any(|k| k.port() == 9877));
        // 9875 stops sending to 9877, then its replies go back from 53,
        // then 53 starts sending to it.
        let ops: Vec<Op> = plan.ops().collect();
        let at = |f: &dyn Fn(&Op) -> bool| ops.iter().position(f).expect("op in the plan");
        let reply = at(&|op| matches!(op, Op::Reply(k, _) if k.port() == 9877));
        let from = at(&|op| matches!(op, Op::Frontend(k, _) if k.port() == 9875));
        let to = at(&|op| matches!(op, Op::Frontend(k, _) if k.port() == 53));
        assert!(from < reply && reply < to, "{ops:?}");
    }

    #[test]
    fn removed_backends_reply_entries_linger_until_expired_unless_reused() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877"]));
        let (_, s2) = s1.plan(&cfg(&["9875=9876"]));
        let gone = s2.lingering().clone();
        assert_eq!(gone.len(), 2, "{gone:?}");
        // Another reload within the grace period keeps them lingering...
        let (plan, s3) = s2.plan(&cfg(&["9875=9876", "53=5353"]));
        assert_eq!(s3.lingering(), &gone);
        assert!(plan.delete_replies.is_empty() && plan.port_flags_after.is_empty());
        // ...until a configuration uses 9877 again: then it is live, and
        // expiring the old keys leaves it alone.
        let (plan, s4) = s3.plan(&cfg(&["9875=9876", "53=5353,9877"]));
        assert!(plan
            .moves
            .iter()
            .any(|op| matches!(op, Op::Reply(k, _) if k.port() == 9877)));
        assert!(s4.lingering().is_empty());
        let (expiry, _) = s4.expire(&gone);
        assert!(expiry.delete_replies.is_empty(), "{expiry:?}");
        assert!(expiry.port_flags_after.is_empty(), "{expiry:?}");
    }

    #[test]
    fn maglev_ring_entries_are_slots() {
        let c = maglev(&["9875=9876,9877@2,9878@0"]);
        let (plan, state) = State::default().plan(&c);
        let ring = &plan.rings[0].1;
        assert_eq!(ring.len(), 13);
        assert!(plan
            .frontends
            .iter()
            .all(|(_, f)| f.sched == UDPLB_SCHED_MAGLEV && f.ring_size == 13));
        let layout = state.layout(&c);
        let slot_of = |i: usize| layout.frontends[0].1[i];
        assert!(!ring.contains(&slot_of(2)), "drained backend");
        let twice = ring.iter().filter(|&&s| s == slot_of(1)).count();
        assert!(
            (8..=9).contains(&twice),
            "weight 2 gets two thirds: {twice}"
        );
        // A drained backend still has its reply entries.
        assert!(plan.replies.iter().any(|(k, _)| k.port() == 9878));
    }

    #[test]
    fn replacing_every_frontend_at_the_limit_fits() {
        let specs = |base: usize| -> Vec<String> {
            (0..crate::abi::MAX_FRONTENDS)
                .map(|i| format!("{}={}", base + i, base + 1000 + i))
                .collect()
        };
        let (_, s1) = State::default().plan(&cfg_owned(specs(10000)));
        let (plan, _) = s1.plan(&cfg_owned(specs(20000)));
        assert_eq!(plan.new_frontend_ids.len(), crate::abi::MAX_FRONTENDS);
        assert!(plan
            .new_frontend_ids
            .iter()
            .all(|&id| id < UDPLB_FRONTEND_IDS));
    }

    /// Where op `f` is in `plan` (the first one it matches).
    fn position(plan: &Plan, f: impl Fn(&Op) -> bool) -> usize {
        let ops: Vec<Op> = plan.ops().collect();
        ops.iter()
            .position(f)
            .unwrap_or_else(|| panic!("not in {ops:?}"))
    }

    fn reply_at(plan: &Plan, port: u16) -> usize {
        position(plan, |op| matches!(op, Op::Reply(k, _) if k.port() == port))
    }

    fn switch_at(plan: &Plan, port: u16) -> usize {
        position(
            plan,
            |op| matches!(op, Op::Frontend(k, _) if k.port() == port),
        )
    }

    /// A chain of moves (9877 from 9875 to 53, 5354 from 53 to 54): each
    /// key is written after the frontend it leaves and before the one it
    /// joins, so 53 switches between the two keys.
    #[test]
    fn moves_in_a_chain_are_ordered() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876,9877", "53=5353,5354", "54=5454"]));
        let (plan, _) = s1.plan(&cfg(&["9875=9876", "53=5353,9877", "54=5454,5354"]));
        let (r9877, r5354) = (reply_at(&plan, 9877), reply_at(&plan, 5354));
        let (f9875, f53, f54) = (
            switch_at(&plan, 9875),
            switch_at(&plan, 53),
            switch_at(&plan, 54),
        );
        assert!(
            f9875 < r9877 && r9877 < f53,
            "{:?}",
            plan.ops().collect::<Vec<_>>()
        );
        assert!(
            f53 < r5354 && r5354 < f54,
            "{:?}",
            plan.ops().collect::<Vec<_>>()
        );
    }

    /// Two backends swapped between two frontends: no order serves both,
    /// but every op is written, keys first.
    #[test]
    fn swapped_backends_are_all_written() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876", "53=5353"]));
        let (plan, _) = s1.plan(&cfg(&["9875=5353", "53=9876"]));
        let (r9876, r5353) = (reply_at(&plan, 9876), reply_at(&plan, 5353));
        let (f9875, f53) = (switch_at(&plan, 9875), switch_at(&plan, 53));
        assert!(r9876.max(r5353) < f9875.min(f53));
    }

    /// A removed frontend whose backend another one takes is deleted
    /// before the key moves; another removed frontend only after the
    /// switch, as before.
    #[test]
    fn a_removed_frontend_losing_a_backend_goes_first() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876", "9885=9886"]));
        let (plan, _) = s1.plan(&cfg(&["53=9876"]));
        let gone = |port: u16| {
            position(
                &plan,
                |op| matches!(op, Op::DeleteFrontend(k) if k.port() == port),
            )
        };
        let (r9876, f53) = (reply_at(&plan, 9876), switch_at(&plan, 53));
        assert!(gone(9875) < r9876 && r9876 < f53);
        assert!(f53 < gone(9885));
    }

    #[test]
    fn a_key_moving_to_a_new_frontend_is_not_deleted() {
        let (_, s1) = State::default().plan(&cfg(&["9875=9876"]));
        let (plan, _) = s1.plan(&cfg(&["0.0.0.0:9875=9876"]));
        let v4 = Endpoint::ipv4(None, 9875);
        assert!(plan
            .ops()
            .any(|op| matches!(op, Op::Frontend(k, _) if k == v4)));
        let deleted: Vec<Endpoint> = (plan.ops())
            .filter_map(|op| match op {
                Op::DeleteFrontend(k) => Some(k),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec![Endpoint::ipv6(None, 9875)]);
    }

    /// Three configurations that flip tables, add, remove and move
    /// frontends and backends, with wildcard frontends (two keys each, so a
    /// switch can stop between them).
    fn o_n_c() -> [Config; 3] {
        [
            cfg(&["9875=9876,9877", "53=5353", "0.0.0.0:7000=7001"]),
            cfg(&["9875=9876@3,9878", "54=5454", "0.0.0.0:7000=7001,7002"]),
            cfg(&["9875=9876,9879", "53=5353", "0.0.0.0:7000=7002"]),
        ]
    }

    #[test]
    fn a_plan_that_fails_at_any_step_leaves_the_next_one_safe() {
        use fake::FakeMaps;
        let [o, n, c] = o_n_c();
        let clean = FakeMaps::default();
        let mut t = Tables::default();
        for config in [&o, &c] {
            t.apply(&clean, config).unwrap();
        }
        t.expire(&clean, &t.state().lingering().clone()).unwrap();
        let steps = State::default().plan(&o).1.plan(&n).0.ops().count();
        let mut failures = Vec::new();
        for k in 0..steps {
            let maps = FakeMaps::default();
            let mut t = Tables::default();
            t.apply(&maps, &o).unwrap();
            maps.fail_at.set(Some(maps.written.get() + k));
            assert!(t.apply(&maps, &n).is_err(), "step {k} did not fail");
            maps.fail_at.set(None);
            t.apply(&maps, &c).unwrap();
            t.expire(&maps, &t.state().lingering().clone()).unwrap();
            let violations = maps.violations.borrow();
            if !violations.is_empty() {
                failures.push(format!("failure at step {k}: {}", violations.join("; ")));
            } else if maps.view() != clean.view() {
                failures.push(format!(
                    "failure at step {k}: the maps differ from a clean apply"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {steps} cases:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn all_drained_means_an_empty_ring() {
        let (plan, _) = State::default().plan(&cfg(&["9875=9876@0"]));
        assert_eq!(plan.rings, vec![(0, vec![])]);
        assert!(plan.frontends.iter().all(|(_, f)| f.ring_size == 0));
    }

    fn down(c: &Config, fe: usize, ports: &[u16]) -> Down {
        let listen = c.frontends[fe].listen;
        ports.iter().map(|&p| (listen, (None, p))).collect()
    }

    /// Issue 24 item 6: after health took 51822 out, a reload that removed
    /// it printed `51821, 51822@0 (maglev) -> 51821`. Health's "down" is
    /// not the operator's weight 0, which still shows as `@0`.
    #[test]
    fn change_lines_say_down_for_health_and_at_0_for_a_drain() {
        let c = maglev(&["53=51821,51822@3"]);
        let (plan, up) = State::default().plan(&c);
        assert_eq!(plan.changes, ["frontend *:53 -> 51821, 51822@3 (maglev)"]);
        let (plan, held) = up.plan_with(&c, &down(&c, 0, &[51822]));
        assert_eq!(
            plan.changes,
            ["frontend *:53: 51821, 51822@3 (maglev) -> 51821, 51822@3 (down) (maglev)"]
        );
        let fewer = maglev(&["53=51821"]);
        let (plan, _) = held.plan_with(&fewer, &down(&c, 0, &[51822]));
        assert_eq!(
            plan.changes,
            ["frontend *:53: 51821, 51822@3 (down) (maglev) -> 51821 (maglev)"]
        );
        let drained = maglev(&["53=51821,51822@0"]);
        let (plan, _) = up.plan(&drained);
        assert_eq!(
            plan.changes,
            ["frontend *:53: 51821, 51822@3 (maglev) -> 51821, 51822@0 (maglev)"]
        );
    }

    #[test]
    fn a_down_backend_leaves_the_ring_and_keeps_its_slot_and_replies() {
        let c = cfg(&["9875=9876,9877,9878"]);
        let (_, up) = State::default().plan(&c);
        let (plan, state) = up.plan_with(&c, &down(&c, 0, &[9877]));
        // Only a new ring and the switch: no slot, counter or reply entry
        // is touched, so replies from 9877 are still translated.
        assert_eq!(plan.rings, vec![(1, vec![0, 2])]);
        assert!(plan.zero_counters.is_empty() && plan.replies.is_empty());
        assert!(plan.delete_replies.is_empty() && state.lingering().is_empty());
        assert_eq!(state.layout(&c), up.layout(&c), "same slots");
        // Back up: the original ring again.
        let (plan, back) = state.plan_with(&c, &Down::new());
        assert_eq!(plan.rings, vec![(0, vec![0, 1, 2])]);
        assert_eq!(back.fingerprints(&c), up.fingerprints(&c));
    }

    #[test]
    fn maglev_moves_only_the_down_backends_flows() {
        let c = Config::from_specs_with(
            &["53=1,2,3,4,5"],
            Defaults {
                sched: Sched::Maglev,
                table_size: 65537,
                ..Defaults::default()
            },
        )
        .unwrap();
        let (p0, s0) = State::default().plan(&c);
        let (p1, _) = s0.plan_with(&c, &down(&c, 0, &[3]));
        let (before, after) = (&p0.rings[0].1, &p1.rings[0].1);
        let down_slot = s0.layout(&c).frontends[0].1[2];
        let moved = (before.iter().zip(after))
            .filter(|(a, b)| a != b && **a != down_slot)
            .count();
        assert!(after.iter().all(|s| *s != down_slot));
        // Maglev's disruption beyond the removed backend's own share is
        // small (a few percent of the table).
        assert!(
            moved * 100 < before.len() * 3,
            "{moved} of {}",
            before.len()
        );
    }

    #[test]
    fn all_down_fails_open_or_drops_as_configured() {
        let mut c = cfg(&["9875=9876,9877,9878@0"]);
        let (_, up) = State::default().plan(&c);
        let all = down(&c, 0, &[9876, 9877]);
        assert!(all_down(&c.frontends[0], &all));
        assert!(!all_down(&c.frontends[0], &down(&c, 0, &[9876])));
        // Open: the ring as if all were up (the drained one stays drained).
        let (plan, _) = up.plan_with(&c, &all);
        assert!(plan.is_empty(), "{:?}", plan.changes);
        c.frontends[0].health.on_all_down = crate::config::OnAllDown::Drop;
        let (plan, _) = up.plan_with(&c, &all);
        assert_eq!(plan.rings, vec![(1, vec![])]);
    }

    #[test]
    fn a_down_backend_takes_no_pinned_flows_a_drained_one_keeps_them() {
        let pinned = |plan: &Plan, port: u16| {
            let b = plan.backends.iter().find(|(_, b)| b.ep.port() == port);
            b.map(|(_, b)| b.flags & UDPLB_BACKEND_F_PINNED != 0)
        };
        let c = maglev(&["53=9876,9877,9878@0"]);
        let (first, up) = State::default().plan(&c);
        assert_eq!(pinned(&first, 9878), Some(true), "drained: pins stay");
        // Down: its pins are no longer followed (its flows move); the others
        // are not rewritten.
        let (plan, st) = up.plan_with(&c, &down(&c, 0, &[9877]));
        assert_eq!(pinned(&plan, 9877), Some(false));
        assert_eq!((pinned(&plan, 9876), pinned(&plan, 9878)), (None, None));
        // Drained and then down: the ring does not change, the flag does.
        let (plan, _) = st.plan_with(&c, &down(&c, 0, &[9877, 9878]));
        assert_eq!(pinned(&plan, 9878), Some(false));
        // Up again: pins are followed again.
        let (plan, _) = st.plan_with(&c, &Down::new());
        assert_eq!(pinned(&plan, 9877), Some(true));
    }

    #[test]
    fn health_settings_alone_change_no_ring() {
        let c = cfg(&["9875=9876,9877"]);
        let (_, s) = State::default().plan(&c);
        let mut d = c.clone();
        d.set_check(&crate::config::CheckKind::Tcp { port: Some(80) });
        assert!(s.plan(&d).0.is_empty());
    }
}

/// The maps in memory, for the tests of the apply order: each op is checked
/// against what a packet could be reading at that moment.
#[cfg(test)]
pub(crate) mod fake {
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    use super::{Maps, Op};
    use crate::abi::{Backend, Endpoint, Frontend, QuicKey, QuicTarget, ReplyTarget};

    #[derive(Debug, Default, Clone)]
    pub struct Contents {
        pub frontends: BTreeMap<Endpoint, Frontend>,
        pub rings: BTreeMap<u32, Vec<u32>>,
        pub backends: BTreeMap<u32, Backend>,
        pub replies: BTreeMap<Endpoint, ReplyTarget>,
        pub port_flags: BTreeMap<u16, u8>,
        pub quic: BTreeMap<QuicKey, QuicTarget>,
    }

    /// What a packet sees: per frontend key its scheduler and ring as
    /// backend endpoints; per reply key the frontend it answers for; the
    /// ports with flags. (Ids, tables and slots are the plan's business.)
    pub type View = (
        BTreeMap<Endpoint, (u32, Vec<Endpoint>)>,
        BTreeMap<Endpoint, Endpoint>,
        BTreeMap<u16, u8>,
    );

    #[derive(Default)]
    pub struct FakeMaps {
        pub contents: RefCell<Contents>,
        /// Ops written so far; the one numbered `fail_at` fails instead.
        pub written: Cell<usize>,
        pub fail_at: Cell<Option<usize>>,
        /// Writes that a packet could have seen half-done.
        pub violations: RefCell<Vec<String>>,
    }

    impl FakeMaps {
        pub fn view(&self) -> View {
            let c = self.contents.borrow();
            let fronts = c
                .frontends
                .iter()
                .map(|(k, f)| {
                    let ring = &c.rings[&f.table];
                    assert_eq!(ring.len(), f.ring_size as usize, "{k:?}: ring size");
                    let eps = ring.iter().map(|s| c.backends[s].ep).collect();
                    (*k, (f.sched, eps))
                })
                .collect();
            let replies = c.replies.iter().map(|(k, t)| (*k, t.frontend)).collect();
            let flags = c
                .port_flags
                .iter()
                .filter(|(_, f)| **f != 0)
                .map(|(p, f)| (*p, *f))
                .collect();
            (fronts, replies, flags)
        }

        fn violation(&self, what: String) {
            self.violations.borrow_mut().push(what);
        }
    }

    impl Maps for FakeMaps {
        fn write(&self, op: Op<'_>) -> anyhow::Result<()> {
            let n = self.written.get();
            if self.fail_at.get() == Some(n) {
                anyhow::bail!("simulated failure at op {n}: {op:?}");
            }
            self.written.set(n + 1);
            let mut c = self.contents.borrow_mut();
            let live_tables: Vec<u32> = c.frontends.values().map(|f| f.table).collect();
            let live_slots: Vec<u32> = live_tables
                .iter()
                .flat_map(|t| c.rings.get(t).cloned().unwrap_or_default())
                .collect();
            match op {
                Op::Ring(t, _) | Op::DeleteRing(t) if live_tables.contains(&t) => {
                    self.violation(format!("{op:?} while a frontend reads table {t}"))
                }
                Op::Backend(s, b)
                    if live_slots.contains(&s)
                        && c.backends.get(&s).is_some_and(|o| o.ep != b.ep) =>
                {
                    self.violation(format!("{op:?}: slot {s} is in a live ring"))
                }
                Op::Frontend(k, f) if !c.rings.contains_key(&f.table) => {
                    self.violation(format!("{op:?}: {k:?} switched to a missing ring"))
                }
                _ => {}
            }
            match op {
                Op::ZeroCounters(_) | Op::ResetFrontend(_) => {}
                Op::QuicServer(k, t) => drop(c.quic.insert(k, t)),
                Op::DeleteQuicServer(k) => drop(c.quic.remove(&k)),
                Op::Backend(s, b) => drop(c.backends.insert(s, b)),
                Op::Reply(k, t) => drop(c.replies.insert(k, t)),
                Op::Ring(t, r) => drop(c.rings.insert(t, r.to_vec())),
                Op::PortFlags(p, f) => drop(c.port_flags.insert(p, f)),
                Op::Frontend(k, f) => drop(c.frontends.insert(k, f)),
                Op::DeleteFrontend(k) => drop(c.frontends.remove(&k)),
                Op::DeleteReply(k) => drop(c.replies.remove(&k)),
                Op::DeleteRing(t) => drop(c.rings.remove(&t)),
            }
            Ok(())
        }
    }
}
