//! The cumulative state: everything fitted, as [`Sums`] holds it, in as
//! little memory as its values allow.
//!
//! A state of `D` features held as [`Sums`] takes 36 bytes per feature (a
//! double-word sum, a scale, a double-word weight), 4.5 times a sample of
//! `f64`s: for one wide sample (10⁸ features) that was 3.6 GB of fresh
//! memory to touch. Most of it is redundant in the common cases, so
//! [`Total`] stores
//!
//! - the sums' high words always, their low words from the first
//!   operation that can make one non-zero on (a second sample, a merge):
//!   none for a state of one sample (`0 + x` is exact), or one loaded
//!   whose low words are all `+0`;
//! - the scales only once one is not 0 (sums near `f64::MAX`);
//! - one weight for all features while they share it bit for bit (every
//!   fit without missing values: each feature's weight is the count, or
//!   the sum of the row weights), one per feature otherwise.
//!
//! Every operation gives the bits [`Sums`]' would on the expanded values,
//! and equality, persistence and the mean see only those values.

use super::dd::Dd;
use super::sums::{MEAN_BLOCK, Sums, add_scaled, means_block};
use crate::kernels::alloc::{collect_huge, filled_huge};

/// What a merge reads of the other side, feature by feature: a batch's
/// [`Sums`] or another [`Total`].
pub(crate) trait Parts {
    fn n_features(&self) -> usize;
    fn sum(&self, j: usize) -> Dd<f64>;
    fn scale(&self, j: usize) -> i32;
    fn weight(&self, j: usize) -> Dd<f64>;
    /// The weight of every feature, if all have the same bits.
    fn same_weight(&self) -> Option<Dd<f64>>;
}

/// The same bits (so that a `-0` low word or weight is kept as it was).
fn same_bits(a: Dd<f64>, b: Dd<f64>) -> bool {
    a.hi.to_bits() == b.hi.to_bits() && a.lo.to_bits() == b.lo.to_bits()
}

impl Parts for Sums {
    fn n_features(&self) -> usize {
        self.sum.len()
    }
    fn sum(&self, j: usize) -> Dd<f64> {
        self.sum[j]
    }
    fn scale(&self, j: usize) -> i32 {
        self.scale[j]
    }
    fn weight(&self, j: usize) -> Dd<f64> {
        self.weight[j]
    }
    fn same_weight(&self) -> Option<Dd<f64>> {
        let first = *self.weight.first()?;
        self.weight.iter().all(|&w| same_bits(w, first)).then_some(first)
    }
}

/// The cumulative state's sums and weights (see the module docs).
#[derive(Clone)]
pub(crate) struct Total {
    hi: Vec<f64>,
    /// Empty: every low word is `+0` (not the converse: once stored, they
    /// stay).
    lo: Vec<f64>,
    /// Empty: every scale is 0 (stored from the first one that is not).
    scale: Vec<i32>,
    weight: Weights,
}

#[derive(Debug, Clone)]
enum Weights {
    /// Every feature's weight.
    Same(Dd<f64>),
    Each(Vec<Dd<f64>>),
}

impl Parts for Total {
    fn n_features(&self) -> usize {
        self.hi.len()
    }
    #[inline]
    fn sum(&self, j: usize) -> Dd<f64> {
        Dd {
            hi: self.hi[j],
            lo: if self.lo.is_empty() { 0.0 } else { self.lo[j] },
        }
    }
    #[inline]
    fn scale(&self, j: usize) -> i32 {
        if self.scale.is_empty() { 0 } else { self.scale[j] }
    }
    #[inline]
    fn weight(&self, j: usize) -> Dd<f64> {
        match &self.weight {
            Weights::Same(w) => *w,
            Weights::Each(w) => w[j],
        }
    }
    fn same_weight(&self) -> Option<Dd<f64>> {
        match &self.weight {
            Weights::Same(w) => Some(*w),
            Weights::Each(_) => None,
        }
    }
}

/// The values, as [`Sums`] prints them, however they are stored (as
/// equality sees them: a state and its saved and loaded copy print alike).
impl std::fmt::Debug for Total {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.n_features();
        f.debug_struct("Sums")
            .field("sum", &(0..d).map(|j| self.sum(j)).collect::<Vec<_>>())
            .field("scale", &(0..d).map(|j| self.scale(j)).collect::<Vec<_>>())
            .field("weight", &(0..d).map(|j| self.weight(j)).collect::<Vec<_>>())
            .finish()
    }
}

/// Equal values, however each side stores them (as [`Sums`]' equality).
impl PartialEq for Total {
    fn eq(&self, other: &Self) -> bool {
        let d = self.n_features();
        d == other.n_features()
            && (0..d).all(|j| {
                self.sum(j) == other.sum(j) && self.scale(j) == other.scale(j) && self.weight(j) == other.weight(j)
            })
    }
}

impl Total {
    /// `sums`, in the least memory their values allow.
    pub(crate) fn from_sums(sums: Sums) -> Self {
        let weight = match sums.same_weight() {
            Some(w) => Weights::Same(w),
            None => Weights::Each(sums.weight),
        };
        let lo = if sums.sum.iter().all(|s| s.lo.to_bits() == 0) {
            Vec::new()
        } else {
            collect_huge(sums.sum.len(), sums.sum.iter().map(|s| s.lo))
        };
        let scale = if sums.scale.iter().all(|&k| k == 0) {
            Vec::new()
        } else {
            sums.scale
        };
        Total {
            hi: collect_huge(sums.sum.len(), sums.sum.iter().map(|s| s.hi)),
            lo,
            scale,
            weight,
        }
    }

    /// The sums of one sample of finite `values` (`d` of them): the values
    /// themselves and one weight of 1 — 8 bytes per feature.
    pub(crate) fn of_sample(d: usize, values: impl Iterator<Item = f64>) -> Self {
        Total {
            hi: collect_huge(d, values),
            lo: Vec::new(),
            scale: Vec::new(),
            weight: Weights::Same(Dd { hi: 1.0, lo: 0.0 }),
        }
    }

    /// The low words, stored from now on.
    fn lo_mut(&mut self) -> &mut [f64] {
        if self.lo.is_empty() {
            self.lo = filled_huge(self.hi.len(), 0.0);
        }
        &mut self.lo
    }

    /// The scales, stored from now on.
    fn scale_mut(&mut self) -> &mut [i32] {
        if self.scale.is_empty() {
            self.scale = filled_huge(self.hi.len(), 0);
        }
        &mut self.scale
    }

    /// [`Sums::add_sample`]: the same additions, so the same bits.
    pub(crate) fn add_sample(&mut self, values: impl Iterator<Item = f64>) {
        let d = self.hi.len();
        let one = Dd { hi: 1.0, lo: 0.0 };
        match &mut self.weight {
            Weights::Same(w) => *w = w.add(one),
            Weights::Each(w) => w.iter_mut().for_each(|w| *w = w.add(one)),
        }
        self.lo_mut();
        let Total { hi, lo, scale, .. } = self;
        let features = hi.iter_mut().zip(lo.iter_mut()).zip(values).enumerate();
        for (j, ((hi, lo), x)) in features {
            let x = Dd { hi: x, lo: 0.0 };
            let k0 = if scale.is_empty() { 0 } else { scale[j] };
            if k0 == 0 {
                // Unscaled: `add_scaled`'s first step, unless it overflows.
                let s = Dd { hi: *hi, lo: *lo }.add(x);
                if s.is_finite() {
                    (*hi, *lo) = (s.hi, s.lo);
                    continue;
                }
            }
            let (s, k) = add_scaled(Dd { hi: *hi, lo: *lo }, k0, x, 0);
            (*hi, *lo) = (s.hi, s.lo);
            if k != k0 {
                if scale.is_empty() {
                    *scale = filled_huge(d, 0);
                }
                scale[j] = k;
            }
        }
    }

    /// The first feature whose weight would not be finite once `other`'s
    /// is added (what [`merge`](Self::merge) would store).
    pub(crate) fn weight_overflow(&self, other: &impl Parts) -> Option<usize> {
        if let (Weights::Same(a), Some(b)) = (&self.weight, other.same_weight()) {
            return (!a.add(b).is_finite()).then_some(0);
        }
        (0..self.n_features()).find(|&j| !self.weight(j).add(other.weight(j)).is_finite())
    }

    /// [`Sums::merge`] of `other`'s values: the same additions, so the
    /// same bits, and the same result on overflow.
    pub(crate) fn merge(&mut self, other: &impl Parts) -> Result<(), usize> {
        self.lo_mut();
        for j in 0..self.n_features() {
            let k0 = self.scale(j);
            let (s, k) = add_scaled(self.sum(j), k0, other.sum(j), other.scale(j));
            (self.hi[j], self.lo[j]) = (s.hi, s.lo);
            if k != k0 {
                self.scale_mut()[j] = k;
            }
        }
        if let (Weights::Same(a), Some(b)) = (&mut self.weight, other.same_weight()) {
            *a = a.add(b);
            return if a.is_finite() { Ok(()) } else { Err(0) };
        }
        let mut each: Vec<Dd<f64>> = match std::mem::replace(&mut self.weight, Weights::Each(Vec::new())) {
            Weights::Same(w) => vec![w; self.n_features()],
            Weights::Each(w) => w,
        };
        let mut overflow = None;
        for (j, w) in each.iter_mut().enumerate() {
            *w = w.add(other.weight(j));
            if overflow.is_none() && !w.is_finite() {
                overflow = Some(j);
            }
        }
        self.weight = Weights::Each(each);
        overflow.map_or(Ok(()), Err)
    }

    /// Whether feature `j` has observed anything.
    #[cfg(any(test, feature = "serde"))]
    pub(crate) fn observed(&self, j: usize) -> bool {
        !self.weight(j).is_zero()
    }

    /// The per-feature weight sums (counts without weights), in `f64`.
    pub(crate) fn weights(&self) -> Vec<f64> {
        (0..self.n_features()).map(|j| self.weight(j).value()).collect()
    }

    /// [`Sums::means_into`] of the expanded values: the same bits. Each
    /// way the parts can be stored is its own loop, so that the block's
    /// arithmetic stays vectorised (a copy into expanded blocks first made
    /// a 10⁷-feature read a third slower).
    pub(crate) fn means_into<F: num_traits::Float>(&self, at: usize, out: &mut [F]) {
        let (hi, lo) = (&self.hi[..], &self.lo[..]);
        match (&self.weight, lo.is_empty(), self.scale.is_empty()) {
            (Weights::Same(w), true, true) => blocks(at, out, |j: usize| (Dd { hi: hi[j], lo: 0.0 }, 0, *w)),
            (Weights::Same(w), false, true) => blocks(at, out, |j: usize| (Dd { hi: hi[j], lo: lo[j] }, 0, *w)),
            (Weights::Each(w), false, true) => blocks(at, out, |j: usize| (Dd { hi: hi[j], lo: lo[j] }, 0, w[j])),
            // Scaled sums (values near `f64::MAX`), or per-feature weights
            // of one sample: rare.
            _ => blocks(at, out, |j: usize| (self.sum(j), self.scale(j), self.weight(j))),
        }
    }
}

/// [`means_block`] of every block of `out` (features `at..`), feature
/// `j`'s parts given by `parts(j)`: one function per way of storing them.
fn blocks<F: num_traits::Float>(at: usize, out: &mut [F], parts: impl Fn(usize) -> (Dd<f64>, i32, Dd<f64>)) {
    for (b, out) in out.chunks_mut(MEAN_BLOCK).enumerate() {
        let a = at + b * MEAN_BLOCK;
        means_block(|i| parts(a + i), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random sums of every kind `Sums` can hold, `d` features.
    fn random_sums(d: usize, seed: u64, uniform: bool, lo: bool, scaled: bool) -> Sums {
        let mut z = seed | 1;
        let mut next = move || {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            z
        };
        let mut s = Sums::zeros(d);
        for j in 0..d {
            let r = next();
            let hi = (r % 1_000_000) as f64 * 0.37 - 1e5;
            s.sum[j] = Dd {
                hi,
                lo: if lo { hi * 1e-17 } else { 0.0 },
            };
            s.weight[j] = Dd {
                hi: if uniform { 3.0 } else { (1 + r % 9) as f64 },
                lo: 0.0,
            };
            if scaled && j % 5 == 0 {
                s.scale[j] = 64;
            }
        }
        s
    }

    fn expanded(t: &Total) -> Sums {
        let d = t.n_features();
        Sums {
            sum: (0..d).map(|j| t.sum(j)).collect(),
            scale: (0..d).map(|j| t.scale(j)).collect(),
            weight: (0..d).map(|j| t.weight(j)).collect(),
        }
    }

    /// Every operation on a compact state gives `Sums`' bits on the
    /// expanded one, whichever parts are stored; merges of every mix of
    /// stored parts, samples added (including a sum that must rescale), and
    /// the means.
    #[test]
    fn compact_states_are_sums_bit_for_bit() {
        let d = 700;
        let mut cases = Vec::new();
        for (i, &(u, l, k)) in [
            (true, false, false),
            (true, true, false),
            (false, true, false),
            (true, true, true),
            (false, false, true),
        ]
        .iter()
        .enumerate()
        {
            cases.push(random_sums(d, 0x9E37_79B9 + i as u64, u, l, k));
        }
        let mut sample: Vec<f64> = (0..d).map(|j| j as f64 * 1.25 - 300.0).collect();
        sample[3] = f64::MAX;
        for a in &cases {
            for b in &cases {
                let mut total = Total::from_sums(a.clone());
                assert_eq!(expanded(&total), *a);
                let means = |t: &Total, s: &Sums| {
                    for at in [0, 1, 256, 699] {
                        let mut m1 = vec![0.0f32; d - at];
                        let mut m2 = vec![0.0f32; d - at];
                        t.means_into(at, &mut m1);
                        s.means_into(at, &mut m2);
                        assert_eq!(m1, m2);
                        let mut m1 = vec![0.0f64; d - at];
                        let mut m2 = vec![0.0f64; d - at];
                        t.means_into(at, &mut m1);
                        s.means_into(at, &mut m2);
                        assert_eq!(m1, m2);
                    }
                };
                means(&total, a);
                let mut sums = a.clone();
                let (r1, r2) = (total.merge(b), sums.merge(b));
                assert_eq!(r1, r2);
                let bits = |s: &Sums| -> Vec<(u64, u64, i32, u64, u64)> {
                    (0..d)
                        .map(|j| {
                            let (x, w) = (s.sum[j], s.weight[j]);
                            (
                                x.hi.to_bits(),
                                x.lo.to_bits(),
                                s.scale[j],
                                w.hi.to_bits(),
                                w.lo.to_bits(),
                            )
                        })
                        .collect()
                };
                assert_eq!(bits(&expanded(&total)), bits(&sums));
                let other = Total::from_sums(b.clone());
                let mut t2 = Total::from_sums(a.clone());
                t2.merge(&other).unwrap();
                assert_eq!(bits(&expanded(&t2)), bits(&sums));
                total.add_sample(sample.iter().copied());
                total.add_sample(sample.iter().copied());
                sums.add_sample(sample.iter().copied());
                sums.add_sample(sample.iter().copied());
                assert_eq!(bits(&expanded(&total)), bits(&sums));
                means(&total, &sums);
            }
        }
    }

    /// One sample is stored as its values alone; a second adds the low
    /// words; the scales appear only when a sum must rescale.
    #[test]
    fn parts_are_stored_when_needed() {
        let mut t = Total::of_sample(3, [1.0, 2.0, 0.1].into_iter());
        assert!(t.lo.is_empty() && t.scale.is_empty());
        assert!(matches!(t.weight, Weights::Same(_)));
        t.add_sample([0.2, 1e-30, 0.3].into_iter());
        assert_eq!(t.lo.len(), 3);
        assert!(t.scale.is_empty());
        t.add_sample([f64::MAX, 0.0, 0.0].into_iter());
        t.add_sample([f64::MAX, 0.0, 0.0].into_iter());
        assert_eq!(t.scale.len(), 3);
        assert_eq!(t.weights(), vec![4.0; 3]);
        // A batch with a feature unobserved makes the weights per feature.
        let mut batch = Sums::zeros(3);
        batch.sum[0] = Dd { hi: 5.0, lo: 0.0 };
        batch.weight[0] = Dd { hi: 1.0, lo: 0.0 };
        t.merge(&batch).unwrap();
        assert_eq!(t.weights(), vec![5.0, 4.0, 4.0]);
        assert!(t.observed(2));
        // Stored low words of zero and none are the same values, alike printed.
        let mut one = Total::of_sample(2, [1.0, 2.0].into_iter());
        let stored = {
            let mut s = one.clone();
            s.merge(&Sums::zeros(2)).unwrap();
            s
        };
        assert_eq!(stored.lo, vec![0.0; 2]);
        let compact = Total::from_sums(expanded(&stored));
        assert!(compact.lo.is_empty());
        assert_eq!(compact, stored);
        assert_eq!(format!("{compact:?}"), format!("{stored:?}"));
        one.hi[1] = 3.0;
        assert_ne!(one, stored);
        // An overflowing shared weight is reported, as per feature.
        let huge = Total::from_sums(Sums::counted(vec![Dd::zero(); 3], 1));
        let mut big = huge.clone();
        big.weight = Weights::Same(Dd { hi: f64::MAX, lo: 0.0 });
        let mut other = big.clone();
        assert_eq!(big.weight_overflow(&other), Some(0));
        assert_eq!(other.merge(&big), Err(0));
        assert_eq!(huge.weight_overflow(&huge), None);
        // Per-feature weights against a shared one, overflowing at feature
        // 2 only: reported there, as `Sums::merge` reports it.
        let mut each = Sums::counted(vec![Dd::zero(); 4], 1);
        each.weight[2] = Dd { hi: f64::MAX, lo: 0.0 };
        let mut shared = Sums::counted(vec![Dd::zero(); 4], 1);
        shared.weight.fill(Dd { hi: f64::MAX, lo: 0.0 });
        for (a, b) in [(&each, &shared), (&shared, &each)] {
            let mut t = Total::from_sums(a.clone());
            let other = Total::from_sums(b.clone());
            let mut reference = a.clone();
            assert_eq!(reference.merge(b), Err(2));
            assert_eq!(t.weight_overflow(&other), Some(2));
            assert_eq!(t.weight_overflow(b), Some(2));
            assert_eq!(t.merge(&other), Err(2));
        }
        // Low words of -0 are kept (the bits persistence writes).
        let mut negative = Sums::counted(vec![Dd { hi: 1.0, lo: 0.0 }; 3], 1);
        negative.sum[1].lo = -0.0;
        let kept = Total::from_sums(negative.clone());
        assert_eq!(kept.lo.len(), 3);
        assert_eq!(kept.sum(1).lo.to_bits(), (-0.0f64).to_bits());
        assert_eq!(expanded(&kept), negative);
    }
}
