//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, section 3.4), with weights.
//!
//! Each backend has a permutation of the M table positions, derived from its
//! identity alone (offset and skip from a hash of its key). Backends take
//! turns claiming their next preferred free position until the table is full.
//! The table therefore depends only on the set of (key, weight) pairs:
//! backends are visited in key order, never in the order they were listed,
//! so every balancer with the same backends builds the same table.
//!
//! Weights: in each round a backend earns `weight` credits and claims one
//! position per `max weight` credits, so each backend ends up with its
//! proportional share of M to within a couple of entries. Weight 0 claims
//! nothing (drained).

/// FNV-1a's 64-bit offset basis: the hash of no bytes.
pub const FNV1A64_START: u64 = 0xcbf29ce484222325;

/// FNV-1a, 64-bit, continued from `h` over `bytes`: small, fixed for all
/// time (unlike std's hasher), which is what lets independent balancers
/// agree.
pub fn fnv1a64_from(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_from(FNV1A64_START, bytes)
}

/// SplitMix64's finaliser: spreads FNV's output over all 64 bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// Builds a ring of `m` entries (Maglev's lookup table; m prime, larger
/// than the number of backends). `backends` are (identity key, weight); entries are indices into
/// `backends`. Empty when no backend has a weight.
pub fn ring(backends: &[(Vec<u8>, u32)], m: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..backends.len()).filter(|&i| backends[i].1 > 0).collect();
    if order.is_empty() {
        return Vec::new();
    }
    assert!(
        m as usize > order.len(),
        "maglev ring of {m} for {} backends",
        order.len()
    );
    order.sort_by(|&a, &b| backends[a].0.cmp(&backends[b].0));

    let m64 = m as u64;
    // (next position in its permutation, skip, credit) per backend in order.
    let mut perm: Vec<(u64, u64, u64)> = order
        .iter()
        .map(|&i| {
            let h = mix64(fnv1a64(&backends[i].0));
            let offset = (h >> 32) % m64;
            let skip = (h & 0xffff_ffff) % (m64 - 1) + 1;
            (offset, skip, 0)
        })
        .collect();
    let max_weight = order
        .iter()
        .map(|&i| backends[i].1 as u64)
        .max()
        .unwrap_or(1);

    const EMPTY: u32 = u32::MAX;
    let mut entries = vec![EMPTY; m as usize];
    let mut filled = 0;
    loop {
        for (k, &i) in order.iter().enumerate() {
            let p = &mut perm[k];
            p.2 += backends[i].1 as u64;
            while p.2 >= max_weight {
                p.2 -= max_weight;
                // The backend's next preferred position that is still free.
                while entries[p.0 as usize] != EMPTY {
                    p.0 = (p.0 + p.1) % m64;
                }
                entries[p.0 as usize] = i as u32;
                p.0 = (p.0 + p.1) % m64;
                filled += 1;
                if filled == m as usize {
                    return entries;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = mix64(self.0.wrapping_add(0x9e3779b97f4a7c15));
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn key(port: u16) -> Vec<u8> {
        port.to_be_bytes().to_vec()
    }

    fn counts(t: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &i in t {
            c[i as usize] += 1;
        }
        c
    }

    const M: u32 = 65537;

    /// Every backend gets its weight's share of the table to within two
    /// entries (the best a table of whole entries can do: with 65537
    /// entries that is within 1% of the share whenever the share is at
    /// least 200 entries, ~0.3% of the table).
    #[test]
    fn shares_follow_weights() {
        let mut rng = Rng(1);
        let mut worst_entries = 0f64;
        let mut worst_rel = 0f64;
        for n in [2usize, 3, 10, 57, 100, 256, 500, 1000] {
            for _ in 0..3 {
                let backends: Vec<(Vec<u8>, u32)> = (0..n)
                    .map(|i| (key(10000 + i as u16), 1 + rng.below(10) as u32))
                    .collect();
                let t = ring(&backends, M);
                assert_eq!(t.len(), M as usize);
                let total: u64 = backends.iter().map(|b| b.1 as u64).sum();
                for (i, c) in counts(&t, n).into_iter().enumerate() {
                    let want = M as f64 * backends[i].1 as f64 / total as f64;
                    let off = (c as f64 - want).abs();
                    assert!(off <= 2.0, "n={n} backend {i}: {c} entries, want {want:.1}");
                    worst_entries = worst_entries.max(off);
                    if want >= 200.0 {
                        worst_rel = worst_rel.max(off / want);
                    }
                }
            }
        }
        assert!(worst_rel <= 0.01, "relative deviation {worst_rel}");
        println!(
            "max deviation {worst_entries:.2} entries; {:.3}% of shares >= 200 entries",
            worst_rel * 100.0
        );
    }

    #[test]
    fn equal_weights_split_evenly() {
        let backends: Vec<(Vec<u8>, u32)> = (0..3).map(|i| (key(9876 + i), 1)).collect();
        let c = counts(&ring(&backends, M), 3);
        assert!(c.iter().all(|&x| x == 21845 || x == 21846), "{c:?}");
    }

    #[test]
    fn order_of_listing_does_not_matter() {
        let mut rng = Rng(7);
        let backends: Vec<(Vec<u8>, u32)> = (0..50)
            .map(|i| (key(20000 + i * 7), 1 + rng.below(5) as u32))
            .collect();
        let t = ring(&backends, 16381);
        for _ in 0..5 {
            let mut shuffled: Vec<usize> = (0..backends.len()).collect();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let permuted: Vec<(Vec<u8>, u32)> =
                shuffled.iter().map(|&i| backends[i].clone()).collect();
            let t2 = ring(&permuted, 16381);
            // Same backend at every position, whatever the listing order.
            for (a, b) in t.iter().zip(&t2) {
                assert_eq!(backends[*a as usize].0, permuted[*b as usize].0);
            }
        }
    }

    /// Removing one of N backends moves its own flows, and only a small
    /// fraction of the others' (Maglev is not perfectly minimal).
    #[test]
    fn removing_a_backend_moves_few_other_flows() {
        let mut worst = 0f64;
        for n in [5usize, 10, 100, 1000] {
            let backends: Vec<(Vec<u8>, u32)> =
                (0..n).map(|i| (key(10000 + i as u16), 1)).collect();
            let before = ring(&backends, M);
            let gone = n / 2;
            let mut fewer = backends.clone();
            fewer.remove(gone);
            let after = ring(&fewer, M);
            let mut moved_others = 0;
            let mut others = 0;
            for (b, a) in before.iter().zip(&after) {
                if *b as usize == gone {
                    continue;
                }
                others += 1;
                if backends[*b as usize].0 != fewer[*a as usize].0 {
                    moved_others += 1;
                }
            }
            let frac = moved_others as f64 / others as f64;
            worst = worst.max(frac);
            assert!(
                frac < 0.02,
                "n={n}: {:.2}% of other flows moved",
                frac * 100.0
            );
        }
        println!(
            "worst disruption of unaffected flows: {:.3}%",
            worst * 100.0
        );
    }

    #[test]
    fn drained_backends_get_nothing() {
        let backends = vec![(key(1), 1), (key(2), 0), (key(3), 2)];
        let c = counts(&ring(&backends, 7), 3);
        assert_eq!(c[1], 0);
        assert_eq!(c[0] + c[2], 7);
        assert!(ring(&[(key(1), 0)], 7).is_empty());
    }
}
