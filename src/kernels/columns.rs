//! Columnar sources: one contiguous slice per feature (Arrow's layout, a
//! Parquet column chunk), each with an optional validity bitmap, summed
//! without an interleaving copy.
//!
//! The result is bit-identical to fitting the same data as an `(n, d)`
//! array, because it runs the array paths' own arithmetic in the array
//! paths' own order:
//!
//! - `Reject` and no nulls: each column is what a column-major
//!   (Fortran-order) array's feature is to the `Columns` plan — a contiguous
//!   run summed by the same `sum_rows` tree with `d = 1`;
//! - otherwise (`Ignore`, or nulls): the general path's halving tree over
//!   rows (a leaf when `rows·d ≤ LEAF`), each feature's values added in row
//!   order by [`general::push_one`]'s arithmetic within a leaf (run by the
//!   vectorised columns kernel of `samples.rs`, four features at a time —
//!   eight for `f64` and `f32` columns on AVX2, bitmaps read as lane masks),
//!   leaves merged in the tree's order — which is what fitting the array
//!   with NaN at the nulls under `Ignore` computes, for any layout of the
//!   array;
//! - a batch whose sums would overflow is re-summed scaled, as the array
//!   paths do (the same scales, the same general tree).

use ndarray::{ArrayView1, ArrayViewD};

use super::contiguous::RowAcc;
use super::general;
#[cfg(feature = "half")]
use super::narrow::HalfAcc;
use super::narrow::{IntAcc, Lanes, exact_int, exact_pair};
use super::reduce::{check_weights, sum_rows};
use super::tree::{LEAF, PARALLEL_MIN, join};
use crate::error::{CenteringError, Result};
use crate::input::__private::{Batch, IntBatch};
use crate::state::{Dd, Sums, ldexp};
use crate::{Input, NanPolicy};

/// Which rows of a column hold a value: bit `offset + i` of `bits` (least
/// significant bit first within each byte, 1 = valid) is row `i` — Arrow's
/// validity bitmap, with the offset of a sliced array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity<'a> {
    bits: &'a [u8],
    offset: usize,
}

impl<'a> Validity<'a> {
    /// Row `i` is valid when bit `offset + i` of `bits` is set (least
    /// significant bit first), as in Arrow's `BooleanBuffer` (`values()`,
    /// `offset()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::Validity;
    /// // Rows 0, 2 and 3 valid, row 1 null.
    /// let v = Validity::new(&[0b0000_1101], 0);
    /// assert_eq!(v.is_valid(1), Some(false));
    /// assert_eq!(v.is_valid(3), Some(true));
    /// assert_eq!(v.is_valid(8), None); // beyond the bitmap
    /// ```
    pub fn new(bits: &'a [u8], offset: usize) -> Self {
        Validity { bits, offset }
    }

    /// Whether row `i` holds a value; `None` beyond the bitmap.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = centering::Validity::new(&[0b1000_0000, 0b0000_0001], 7);
    /// assert_eq!(v.is_valid(0), Some(true)); // bit 7
    /// assert_eq!(v.is_valid(1), Some(true)); // bit 8
    /// assert_eq!(v.is_valid(2), Some(false));
    /// ```
    pub fn is_valid(&self, i: usize) -> Option<bool> {
        let bit = self.offset.checked_add(i)?;
        self.bits.get(bit / 8).map(|b| b >> (bit % 8) & 1 == 1)
    }

    /// Whether rows `i..i + 4` hold a value, as bits 0–3 (bit `k`: row
    /// `i + k`), rows beyond the bitmap null: four [`is_valid`](Self::is_valid)
    /// at once (for bitmaps shorter than `usize::MAX / 8 − 1` bytes, so
    /// every bitmap the callers check against their rows).
    pub(crate) fn four(&self, i: usize) -> u8 {
        let Some(bit) = self.offset.checked_add(i) else {
            return 0;
        };
        let byte = |k: usize| u16::from(self.bits.get(k).copied().unwrap_or(0));
        let word = byte(bit / 8) | byte(bit / 8 + 1) << 8;
        (word >> (bit % 8)) as u8 & 0xF
    }

    /// Whether rows `i..i + 16` hold a value, as bits 0–15 (bit `k`: row
    /// `i + k`), rows beyond the bitmap null: [`four`](Self::four) for
    /// sixteen rows (for bitmaps shorter than `usize::MAX / 8 − 2` bytes).
    pub(crate) fn sixteen(&self, i: usize) -> u16 {
        let Some(bit) = self.offset.checked_add(i) else {
            return 0;
        };
        let byte = |k: usize| u32::from(self.bits.get(k).copied().unwrap_or(0));
        let at = bit / 8;
        let word = byte(at) | byte(at + 1) << 8 | byte(at + 2) << 16;
        (word >> (bit % 8)) as u16
    }

    /// The bitmap of the rows from `by` on.
    pub(crate) fn shifted(&self, by: usize) -> Self {
        Validity {
            bits: self.bits,
            offset: self.offset.saturating_add(by),
        }
    }

    /// How many rows the bitmap covers.
    pub(crate) fn rows(&self) -> usize {
        (self.bits.len().saturating_mul(8)).saturating_sub(self.offset)
    }

    /// The first null row below `n`, if any.
    fn first_null(&self, n: usize) -> Option<usize> {
        (0..n).find(|&i| self.is_valid(i) != Some(true))
    }
}

/// The per-feature sums of `columns` (each of `n ≥ 1` rows), nulls where a
/// validity bitmap says so. The caller has checked lengths.
///
/// # Errors
///
/// [`CenteringError::NullValue`] for a null under `Reject`,
/// [`CenteringError::NonFinite`] for a value `policy` rejects (the first in
/// row-major order, as for an array), [`CenteringError::WeightOverflow`].
pub(crate) fn reduce_columns<T: Input>(
    columns: &[&[T]],
    validity: &[Option<Validity<'_>>],
    policy: NanPolicy,
) -> Result<Sums> {
    let d = columns.len();
    let n = columns.first().map_or(0, |c| c.len());
    let valid = |j: usize| validity.get(j).copied().flatten();
    let nulls = (0..d).any(|j| valid(j).is_some_and(|v| v.first_null(n).is_some()));
    if nulls && policy == NanPolicy::Reject {
        // The first null in row-major order, as an array reports its first NaN.
        let (row, feature) = (0..d)
            .filter_map(|j| valid(j).and_then(|v| v.first_null(n)).map(|i| (i, j)))
            .min()
            .unwrap_or((0, 0));
        return Err(CenteringError::NullValue {
            index: vec![row, feature],
        });
    }
    let sums = if policy == NanPolicy::Reject {
        Sums::counted(sum_slices(columns, 0, d), n)
    } else {
        let leaf = |r0: usize, r1: usize| sum_range(columns, validity, r0, r1, policy, &[]);
        rows_tree(0, n, d, &leaf)
    };
    if sums.sum.iter().all(Dd::is_finite) {
        return check_weights(sums);
    }
    // A value the policy rejects: the first in row-major order.
    let rejected = |x: f64| match policy {
        NanPolicy::Reject => !x.is_finite(),
        NanPolicy::Ignore => x.is_infinite(),
    };
    for i in 0..n {
        for (j, col) in columns.iter().enumerate() {
            if valid(j).is_none_or(|v| v.is_valid(i) == Some(true)) && rejected(col[i].widen()) {
                return Err(CenteringError::NonFinite {
                    index: vec![i, j],
                    value: col[i].widen(),
                });
            }
        }
    }
    // The sums overflowed: re-sum each feature scaled down, in one chain.
    let top: Vec<i32> = (0..d)
        .map(|j| {
            (0..n)
                .filter(|&i| valid(j).is_none_or(|v| v.is_valid(i) == Some(true)))
                .map(|i| columns[j][i].widen())
                .filter(|v| v.is_finite() && *v != 0.0)
                .map(general::ilogb)
                .max()
                .unwrap_or(i32::MIN)
        })
        .collect();
    let scale = general::scales::<f64>(&top);
    let leaf = |r0: usize, r1: usize| sum_range(columns, validity, r0, r1, policy, &scale);
    check_weights(rows_tree(0, n, d, &leaf))
}

/// The fast sums of features `f0..f1`, one contiguous column each: the
/// `Columns` plan's `sum_columns`, on separate buffers.
fn sum_slices<T: Input>(columns: &[&[T]], f0: usize, f1: usize) -> Vec<Dd<f64>> {
    let n = columns.first().map_or(0, |c| c.len());
    let size = (f1 - f0) * n;
    if f1 - f0 > 1 && size >= PARALLEL_MIN {
        let mid = f0 + (f1 - f0) / 2;
        let (mut a, b) = join(size, || sum_slices(columns, f0, mid), || sum_slices(columns, mid, f1));
        a.extend(b);
        return a;
    }
    (f0..f1).map(|f| column_sum(columns[f])).collect()
}

/// One contiguous column's sum by the lanes the array paths use for its
/// element type (`d = 1`).
fn column_sum<T: Input>(col: &[T]) -> Dd<f64> {
    fn by<T: Sync + Clone, A: Lanes<T>>(v: ArrayViewD<'_, T>) -> Dd<f64> {
        sum_rows::<T, A>(v, 1)[0]
    }
    match T::batch(ArrayView1::from(col).into_dyn()) {
        Batch::F32(v) => by::<_, RowAcc<f32>>(v),
        Batch::F64(v) => by::<_, RowAcc<f64>>(v),
        Batch::Int(IntBatch::U8(v)) => by::<_, IntAcc<u8>>(v),
        Batch::Int(IntBatch::I8(v)) => by::<_, IntAcc<i8>>(v),
        Batch::Int(IntBatch::U16(v)) => by::<_, IntAcc<u16>>(v),
        Batch::Int(IntBatch::I16(v)) => by::<_, IntAcc<i16>>(v),
        Batch::Int(IntBatch::U32(v)) => by::<_, IntAcc<u32>>(v),
        Batch::Int(IntBatch::I32(v)) => by::<_, IntAcc<i32>>(v),
        Batch::Int(IntBatch::U64(v)) => by::<_, IntAcc<u64>>(v),
        Batch::Int(IntBatch::I64(v)) => by::<_, IntAcc<i64>>(v),
        #[cfg(feature = "half")]
        Batch::F16(v) => by::<_, HalfAcc>(v),
        #[cfg(feature = "half")]
        Batch::Bf16(v) => by::<_, HalfAcc>(v),
    }
}

/// The general path's halving tree over rows `r0..r1` of a `d`-feature
/// batch: a leaf when `rows·d ≤ LEAF` or a single row, else halves at
/// `rows / 2` (as `cut_axis` halves axis 0 of an `(n, d)` array).
fn rows_tree(r0: usize, r1: usize, d: usize, leaf: &(impl Fn(usize, usize) -> Sums + Sync)) -> Sums {
    let rows = r1 - r0;
    let len = rows * d;
    if len <= LEAF || rows <= 1 {
        return leaf(r0, r1);
    }
    let mid = r0 + rows / 2;
    let (a, b) = join(len, || rows_tree(r0, mid, d, leaf), || rows_tree(mid, r1, d, leaf));
    Sums::merged(a, b)
}

/// Rows `r0..r1` of every column, feature by feature in row order, skipping
/// nulls (and NaN under `Ignore`); each value divided by `2^scale[j]` first
/// when `scale` is not empty — `general::sum_lanes`, column-wise.
fn sum_range<T: Input>(
    columns: &[&[T]],
    validity: &[Option<Validity<'_>>],
    r0: usize,
    r1: usize,
    policy: NanPolicy,
    scale: &[i32],
) -> Sums {
    if !T::EXACT {
        // 64-bit integers: never NaN, never overflowing, not all exact in
        // an f64.
        return wide_int_range(columns, validity, r0, r1);
    }
    if scale.is_empty() {
        // The same arithmetic in the same order, several features at once.
        return super::samples::column_range_sums(columns, validity, r0, r1, policy);
    }
    let d = columns.len();
    let mut sums = Sums::zeros(d);
    for (j, col) in columns.iter().enumerate() {
        let valid = validity.get(j).copied().flatten();
        let (sum, count) = (&mut sums.sum[j], &mut sums.weight[j]);
        for (i, &x) in col.iter().enumerate().take(r1).skip(r0) {
            let x = x.widen();
            if valid.is_some_and(|v| v.is_valid(i) != Some(true)) || (policy == NanPolicy::Ignore && x.is_nan()) {
                continue;
            }
            // Widened first, then scaled, as the array paths' `push_lane`.
            let x = if scale.is_empty() { x } else { ldexp(x, -scale[j]) };
            general::push_one(sum, count, x);
        }
    }
    Sums {
        sum: sums.sum.iter().map(|s| s.normalized()).collect(),
        scale: if scale.is_empty() { vec![0; d] } else { scale.to_vec() },
        weight: sums.weight.iter().map(|w| w.normalized()).collect(),
    }
}

/// Rows `r0..r1` of 64-bit integer columns, nulls skipped: exact `i128`
/// sums per feature (a leaf's are below 2¹⁵·2⁶⁴), as the array paths sum
/// these types.
fn wide_int_range<T: Input>(columns: &[&[T]], validity: &[Option<Validity<'_>>], r0: usize, r1: usize) -> Sums {
    let d = columns.len();
    let mut sums = Sums::zeros(d);
    for (j, col) in columns.iter().enumerate() {
        let valid = validity.get(j).copied().flatten();
        let (mut total, mut count) = (0i128, 0u64);
        for (i, &x) in col.iter().enumerate().take(r1).skip(r0) {
            if valid.is_none_or(|v| v.is_valid(i) == Some(true)) {
                total += exact_int(x);
                count += 1;
            }
        }
        sums.sum[j] = exact_pair(total);
        sums.weight[j] = Dd {
            hi: count as f64,
            lo: 0.0,
        };
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `four(i)` and `sixteen(i)` are `is_valid(i + k)` for `k` in 0..4 and
    /// 0..16 as bits, rows beyond the bitmap (and offsets past `usize`)
    /// null, at every bit offset.
    #[test]
    fn four_and_sixteen_rows_are_is_valid() {
        let bits = [0b1011_0110u8, 0b0100_1101, 0b1111_0001, 0b0010_1110, 0b1001_0111];
        for offset in [0usize, 1, 3, 7, 8, 13, 22, usize::MAX - 2] {
            let v = Validity::new(&bits, offset);
            let want = |i: usize, rows: usize| {
                (0..rows).fold(0u16, |m, k| {
                    let valid = i.checked_add(k).is_some_and(|r| v.is_valid(r) == Some(true));
                    m | u16::from(valid) << k
                })
            };
            for i in 0..45usize {
                assert_eq!(u16::from(v.four(i)), want(i, 4), "four, offset {offset}, row {i}");
                assert_eq!(v.sixteen(i), want(i, 16), "sixteen, offset {offset}, row {i}");
            }
        }
    }

    /// The vectorised range sums (no scale) are the per-value loop's bits
    /// (zero scales run that loop with the same arithmetic): with and
    /// without bitmaps, sliced bitmaps, NaN, odd ranges and widths.
    #[test]
    fn range_sums_are_the_per_value_loops_bits() {
        let n: usize = 203;
        let mut z = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            z
        };
        for d in [1usize, 3, 4, 7, 9, 17] {
            let data: Vec<Vec<f64>> = (0..d)
                .map(|_| {
                    (0..n)
                        .map(|_| match next() % 11 {
                            0 => f64::NAN,
                            k => (next() >> 11) as f64 * 1e-12 * if k % 2 == 0 { 1e6 } else { -1e-3 },
                        })
                        .collect()
                })
                .collect();
            let bits: Vec<Vec<u8>> = (0..d)
                .map(|_| (0..n.div_ceil(8) + 1).map(|_| next() as u8).collect())
                .collect();
            let columns: Vec<&[f64]> = data.iter().map(Vec::as_slice).collect();
            // Offsets 0 and 3 with a bitmap on every other column (the
            // strips, masked, for `d ≥ 8`); `None`: no bitmap at all.
            for offset in [Some(0usize), Some(3), None] {
                let validity: Vec<Option<Validity<'_>>> = (0..d)
                    .map(|j| offset.filter(|_| j % 2 == 0).map(|o| Validity::new(&bits[j], o)))
                    .collect();
                for (r0, r1) in [(0, n), (5, 6), (17, 200)] {
                    let zeros = vec![0; d];
                    let want = sum_range(&columns, &validity, r0, r1, NanPolicy::Ignore, &zeros);
                    let got = sum_range(&columns, &validity, r0, r1, NanPolicy::Ignore, &[]);
                    assert_eq!(got, want, "d {d}, offset {offset:?}, rows {r0}..{r1}");
                }
            }
        }
    }
}
