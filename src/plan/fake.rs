//! The maps in memory, for the tests of the apply order: each op is checked
//! against what a packet could be reading at that moment.

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
/// ports with flags. (Ids, ring ids and slots are the plan's business.)
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
                let ring = &c.rings[&f.ring_id];
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
        let live_rings: Vec<u32> = c.frontends.values().map(|f| f.ring_id).collect();
        let live_slots: Vec<u32> = live_rings
            .iter()
            .flat_map(|t| c.rings.get(t).cloned().unwrap_or_default())
            .collect();
        match op {
            Op::Ring(t, _) | Op::DeleteRing(t) if live_rings.contains(&t) => {
                self.violation(format!("{op:?} while a frontend reads ring {t}"))
            }
            Op::Backend(s, b)
                if live_slots.contains(&s) && c.backends.get(&s).is_some_and(|o| o.ep != b.ep) =>
            {
                self.violation(format!("{op:?}: slot {s} is in a live ring"))
            }
            Op::Frontend(k, f) if !c.rings.contains_key(&f.ring_id) => {
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
