//! Summaries of repeated measurements: median, min, max, and ratios taken
//! round by round.
//!
//! The machine is shared and noisy, so every case is measured several times,
//! interleaved with the cases it is compared to (A B C A B C ...). A ratio is
//! the median of the per-round ratios: the two figures of one round were
//! taken seconds apart, so a slow minute on the host moves both.

/// The values of one case, one per round, in the order they were taken.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    pub fn median(&self) -> f64 {
        median(&self.0)
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }

    /// Median over rounds of `self[i] / other[i]`. NaN if there is no
    /// round in common.
    pub fn ratio_to(&self, other: &Samples) -> f64 {
        let per_round: Vec<f64> = self
            .0
            .iter()
            .zip(&other.0)
            .filter(|(_, b)| **b != 0.0)
            .map(|(a, b)| a / b)
            .collect();
        median(&per_round)
    }
}

/// Median (mean of the two middle values for an even count); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_min_max() {
        let s = super::Samples(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!(s.median(), 2.5);
        assert_eq!(s.min(), 1.0);
        assert_eq!(s.max(), 10.0);
        assert_eq!(super::median(&[5.0, 1.0, 3.0]), 3.0);
        assert!(super::median(&[]).is_nan());
    }

    #[test]
    fn ratios_pair_rounds() {
        let a = super::Samples(vec![2.0, 4.0, 9.0]);
        let b = super::Samples(vec![1.0, 4.0, 3.0]);
        // Per round: 2, 1, 3 -> median 2 (a ratio of medians would say 4/3).
        assert_eq!(a.ratio_to(&b), 2.0);
        assert!(a.ratio_to(&super::Samples::default()).is_nan());
    }
}
