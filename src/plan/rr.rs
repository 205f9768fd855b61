//! Weighted round robin as a cycle of backend indices, computed once per
//! configuration; the datapath walks it with a per-CPU cursor.

use crate::config::rr_turns as turns;

/// One cycle: backend i appears weight_i / g times (`turns`), its turns
/// spread evenly over the cycle. Equal weights give 0, 1, 2, ... in the
/// order listed; weight 0 never appears.
pub fn ring(weights: &[u32]) -> Vec<u32> {
    // The k-th turn of backend i falls at time (k + 1/2) / w_i; ordering all
    // turns by time (ties by index) interleaves them evenly. Compare the
    // fractions (2k + 1) / (2 w_i) exactly by cross-multiplying.
    let mut turns_at: Vec<(u64, u64, u32)> = Vec::new();
    for (i, w) in turns(weights).enumerate() {
        for k in 0..w {
            turns_at.push((2 * k + 1, 2 * w, i as u32));
        }
    }
    turns_at.sort_by(|a, b| (a.0 * b.1).cmp(&(b.0 * a.1)).then(a.2.cmp(&b.2)));
    turns_at.into_iter().map(|t| t.2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cycle_len;

    #[test]
    fn equal_weights_follow_the_listed_order() {
        assert_eq!(ring(&[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(ring(&[5, 5]), vec![0, 1]);
    }

    #[test]
    fn weights_set_the_share_and_turns_interleave() {
        let r = ring(&[3, 1]);
        assert_eq!(r.len(), 4);
        assert_eq!(r.iter().filter(|&&i| i == 0).count(), 3);
        assert_ne!(
            r,
            vec![0, 0, 0, 1],
            "the weight-1 backend is not left to the end"
        );
        let r = ring(&[2, 3, 0, 1]);
        let count = |b| r.iter().filter(|&&i| i == b).count();
        assert_eq!((count(0), count(1), count(2), count(3)), (2, 3, 0, 1));
        // Turns of the heavy backend are spread, not bunched in one block.
        let r = ring(&[1, 1, 1, 1, 4]);
        assert_eq!(r, vec![4, 4, 0, 1, 2, 3, 4, 4]);
    }

    #[test]
    fn all_drained_is_empty() {
        assert!(ring(&[0, 0]).is_empty());
        assert!(ring(&[]).is_empty());
        assert_eq!(cycle_len(&[0, 0]), 0);
    }

    #[test]
    fn cycle_len_is_the_ring_length() {
        for w in [
            &[1, 1, 1][..],
            &[3, 1],
            &[2, 3, 0, 1],
            &[4, 6],
            &[1000, 999],
            &[0, 5],
        ] {
            assert_eq!(cycle_len(w), ring(w).len() as u64, "{w:?}");
        }
        assert_eq!(cycle_len(&[4, 6]), 5, "divided by the gcd");
    }
}
