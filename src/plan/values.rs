//! What a plan writes into each map for a frontend and its backends: the
//! backends-map values, reply entries, QUIC server IDs, the ring and the
//! frontend entries that point to it.

use std::collections::BTreeMap;

use super::hashes::{backend_ident, fingerprint, maglev_key};
use super::{maglev, rr, BackendId};
use crate::abi::{
    Backend, Endpoint, Frontend, InlineRing, QuicKey, QuicTarget, ReplyTarget, UDPLB_BACKEND_F_CID,
    UDPLB_BACKEND_F_PINNED, UDPLB_BY_PORT_IPV4, UDPLB_BY_PORT_IPV6, UDPLB_FAMILY_IPV4,
    UDPLB_FAMILY_IPV6, UDPLB_SCHED_MAGLEV, UDPLB_SCHED_QUIC, UDPLB_SCHED_RR,
};
use crate::config::{weights, BackendConfig, FrontendConfig, Sched};

/// The reply-map entries of backend `b` of the frontend with keys `keys`.
/// A local backend answers from the address the client used, so it is keyed
/// like each frontend key, on its own port, and only the port is rewritten
/// back. A remote backend is keyed by its address and port, and its replies
/// get the frontend's address and port.
pub(super) fn reply_entries<'a>(
    keys: &'a [Endpoint],
    b: &'a BackendConfig,
    frontend_id: u32,
    backend_slot: u32,
) -> impl Iterator<Item = (Endpoint, ReplyTarget)> + 'a {
    // A remote backend of another family than the key (direct server
    // return, encapsulated) has no reply to translate into it.
    let family = |a: std::net::IpAddr| {
        if a.is_ipv4() {
            UDPLB_FAMILY_IPV4
        } else {
            UDPLB_FAMILY_IPV6
        }
    };
    (keys.iter())
        .filter(move |key| b.addr.is_none_or(|a| u32::from(key.family) == family(a)))
        .map(move |key| match b.addr {
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
/// flows (UDPLB_BACKEND_F_PINNED) on a Maglev or quic frontend with a flow
/// table, unless the health checks hold it `down`: its flows move, as if it
/// were removed (a drained backend, weight 0 but up, keeps its pinned
/// flows). `ident` names who holds the slot, the same on every start, so a
/// pin to a slot since reused by another backend is not followed.
///
/// On a quic frontend it takes packets routed by its server ID
/// (UDPLB_BACKEND_F_CID) unless it is held down and out of the ring (a
/// frontend whose backends are all down and that fails open keeps them).
pub(super) fn backend_value(
    fe: &FrontendConfig,
    id: u32,
    b: &BackendConfig,
    down: bool,
) -> Backend {
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
        client_bits: fe.hash.client_bits(),
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

/// A removed backend's slot: no more pinned flows to it (nor pins learned
/// from its lingering replies), nor packets routed by its server ID.
pub(super) fn retired_value(fe: &FrontendConfig, id: u32, b: &BackendConfig) -> Backend {
    Backend {
        flags: 0,
        ..backend_value(fe, id, b, true)
    }
}

/// The quic_servers entries of frontend `fe` (id `id`, backends at
/// `slots`): none unless it is a quic frontend.
pub(super) fn quic_entries(
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

/// The ring of backend slots for a frontend's configuration (round robin
/// or Maglev, by its scheduler), and its [`fingerprint`].
pub(super) fn ring(fe: &FrontendConfig, slots: &BTreeMap<BackendId, u32>) -> (Vec<u32>, u64) {
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
            maglev::ring(&keyed, fe.table_size)
        }
    };
    let ring = (picks.iter())
        .map(|&i| slots[&fe.backends[i as usize].id()])
        .collect();
    (
        ring,
        fingerprint(picks.iter().map(|&i| &keys[i as usize][..])),
    )
}

/// The frontends-map entries of `fe`, one per key, each with the key's
/// address: frontend `id`, reading `ring`, the ring at `ring_id`.
pub(super) fn frontend_entries(
    fe: &FrontendConfig,
    id: u32,
    ring_id: u32,
    ring: &[u32],
) -> impl Iterator<Item = (Endpoint, Frontend)> {
    let value = Frontend {
        id,
        ring_id,
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
        ring: inline_ring(ring),
        client_bits: fe.hash.client_bits(),
        mode: fe.mode.abi(),
        gue_port_be: fe.mode.gue_port_be(),
        tunnel: [
            fe.tunnels.v4.map(|t| t.abi()).unwrap_or_default(),
            fe.tunnels.v6.map(|t| t.abi()).unwrap_or_default(),
        ],
    };
    (fe.listen.endpoints().into_iter()).map(move |k| {
        let value = Frontend {
            addr_be: k.addr_be,
            ..value
        };
        (k, value)
    })
}

fn sched_code(s: Sched) -> u32 {
    match s {
        Sched::Rr => UDPLB_SCHED_RR,
        Sched::Maglev => UDPLB_SCHED_MAGLEV,
        Sched::Quic => UDPLB_SCHED_QUIC,
    }
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

#[cfg(test)]
mod tests {
    use crate::abi::UDPLB_SCHED_MAGLEV;
    use crate::abi::{QuicKey, UDPLB_BACKEND_F_CID, UDPLB_BACKEND_F_PINNED, UDPLB_SCHED_QUIC};
    use crate::plan::fake::FakeMaps;
    use crate::plan::test_configs::{cfg, down, maglev, quic};
    use crate::plan::{Down, MapWriter, Plan, State};

    #[test]
    fn quic_server_ids_follow_their_backends() {
        let maps = FakeMaps::default();
        let mut writer = MapWriter::default();
        let sid = |id: &[u8]| QuicKey::new(0, 0, id);
        writer
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
        writer
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
        writer.apply_with(&maps, &c3, &down).unwrap();
        let c = maps.contents.borrow().clone();
        let s3 = c.quic[&sid(&[0x0a, 0x03])].slot;
        assert_eq!(c.backends[&s3].flags & UDPLB_BACKEND_F_CID, 0);
        // Removed frontend: its server IDs go.
        writer.apply(&maps, &cfg(&["9875=9876"])).unwrap();
        assert!(maps.contents.borrow().quic.is_empty());
        assert!(maps.violations.borrow().is_empty());
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
    fn all_drained_means_an_empty_ring() {
        let (plan, _) = State::default().plan(&cfg(&["9875=9876@0"]));
        assert_eq!(plan.rings, vec![(0, vec![])]);
        assert!(plan.frontends.iter().all(|(_, f)| f.ring_size == 0));
    }
}
