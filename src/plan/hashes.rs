//! What every balancer with the same configuration computes alike: the key
//! a backend is hashed by in Maglev, its slot ident, and a ring's
//! fingerprint (FNV-1a, fixed for all time).

use super::maglev::{fnv1a64_from, FNV1A64_START};
use crate::abi::bytes_of;
use crate::config::{BackendConfig, Listen};

/// The identity a backend is hashed by in the Maglev table: the same on
/// every balancer with the same configuration.
pub(super) fn maglev_key(b: &BackendConfig) -> Vec<u8> {
    bytes_of(&b.endpoint()).to_vec()
}

/// FNV-1a of the frontend's keys and the backend's endpoint, folded to 32 bits.
pub fn backend_ident(listen: &Listen, b: &BackendConfig) -> u32 {
    let mut h = FNV1A64_START;
    for key in listen.endpoints() {
        h = fnv1a64_from(h, bytes_of(&key));
    }
    h = fnv1a64_from(h, bytes_of(&b.endpoint()));
    (h ^ (h >> 32)) as u32
}

/// A ring's fingerprint: FNV-1a over the [`maglev_key`]s of its backends,
/// in ring order. Slots differ from balancer to balancer; the fingerprint
/// is the same on every balancer that sends each flow where this one does,
/// which is what operators compare across an ECMP group.
pub(super) fn fingerprint<'a>(keys_in_ring_order: impl Iterator<Item = &'a [u8]>) -> u64 {
    keys_in_ring_order.fold(FNV1A64_START, fnv1a64_from)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::plan::test_configs::{cfg, maglev};
    use crate::plan::State;

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
}
