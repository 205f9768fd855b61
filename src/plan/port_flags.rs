//! The port_flags map: which ports have a frontend or a backend's reply
//! key, by exact address or by port alone, so the datapath skips the
//! lookups that cannot match.

use std::collections::{BTreeMap, BTreeSet};

use super::values::reply_entries;
use super::State;
use crate::abi::{
    Endpoint, UDPLB_PORT_BACKEND_ANY, UDPLB_PORT_BACKEND_EXACT, UDPLB_PORT_FRONTEND_ANY,
    UDPLB_PORT_FRONTEND_EXACT,
};

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

pub(super) type PortFlags = Vec<(u16, u8)>;

/// Port flags to write from `old` to `new`: the union of both before the
/// switch, so no packet of either is skipped, and `new`'s alone after it.
/// Ports whose flags do not change are not written.
pub(super) fn port_flag_changes(old: &State, new: &State) -> (PortFlags, PortFlags) {
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
