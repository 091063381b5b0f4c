//! A batch, summarised: the per-feature sums and counts that fitting the
//! batch folds into a state, built by the crate's own kernels — from an
//! array of any layout, or from one slice per feature (columnar sources:
//! Arrow arrays, Parquet column chunks) with optional validity bitmaps —
//! and folded by [`Centering::partial_fit_summary`].
//!
//! This is the seam for integrations that do not hold one strided array: a
//! DataFusion aggregate summarises each record batch's columns without an
//! interleaving copy; a reader of files summarises chunk by chunk.

use ndarray::{Array1, ArrayBase, ArrayViewD, Axis, Data, Dimension, IxDyn};

use crate::error::{CenteringError, Result};
use crate::kernels::{self, columns::Validity};
use crate::state::Sums;
use crate::{Centering, Element, Input, NanPolicy};

/// The sums of one batch, feature by feature: what
/// [`Centering::partial_fit`] would fold into the state, as a value.
///
/// Folding a summary with [`Centering::partial_fit_summary`] is exactly
/// fitting its batch: the same bits, in every mode (a moving average takes
/// one step with the summary's mean). Summaries of the *same* batch cut into
/// chunks of rows combine with [`merge`](Self::merge).
///
/// # Examples
///
/// ```
/// use centering::{BatchSummary, Centering, NanPolicy, Validity};
/// use ndarray::array;
///
/// // Two columns of four rows; row 1 of column b is null (bit 1 cleared).
/// let a = [1.0, 2.0, 3.0, 4.0];
/// let b = [10.0, 99.0, 30.0, 40.0];
/// let bits = [0b0000_1101u8];
/// let s = BatchSummary::from_columns(&[&a[..], &b[..]], &[None, Some(Validity::new(&bits, 0))], NanPolicy::Ignore)?;
/// assert_eq!(s.n_samples(), 4);
/// assert_eq!(s.counts(), array![4.0, 3.0]);
///
/// let mut c = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).build()?;
/// c.partial_fit_summary(&s)?;
/// assert_eq!(c.mean().unwrap(), array![2.5, 80.0 / 3.0]);
///
/// // The same as fitting the rows, with NaN where the null is.
/// let mut rows = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).build()?;
/// rows.partial_fit(&array![[1.0, 10.0], [2.0, f64::NAN], [3.0, 30.0], [4.0, 40.0]])?;
/// assert_eq!(rows, c);
/// # Ok::<(), centering::CenteringError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSummary {
    sums: Sums,
    n_samples: u64,
    nan_policy: NanPolicy,
}

impl BatchSummary {
    /// Summarises an array of shape `(samples…, D)` (or `(D,)`, one sample),
    /// any layout, as [`Centering::partial_fit`] reads it.
    ///
    /// # Errors
    ///
    /// [`CenteringError::ZeroDimensional`], [`CenteringError::NoFeatures`],
    /// [`CenteringError::NonFinite`] (a value `nan_policy` rejects),
    /// [`CenteringError::WeightOverflow`].
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{BatchSummary, NanPolicy};
    /// let s = BatchSummary::from_array(&ndarray::array![[1.0, 2.0], [3.0, 6.0]], NanPolicy::Reject)?;
    /// assert_eq!((s.n_features(), s.n_samples()), (2, 2));
    /// assert_eq!(s.mean::<f64>(), ndarray::array![2.0, 4.0]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn from_array<T, S, D>(x: &ArrayBase<S, D>, nan_policy: NanPolicy) -> Result<Self>
    where
        T: Input,
        S: Data<Elem = T>,
        D: Dimension,
    {
        let x = x.view().into_dyn();
        let (d, n) = batch_shape(x.shape())?;
        let sums = reduce_batch::<T, f64>(&x, None, nan_policy)?.unwrap_or_else(|| Sums::zeros(d));
        Ok(BatchSummary {
            sums,
            n_samples: n as u64,
            nan_policy,
        })
    }

    /// [`from_array`](Self::from_array) with one weight per sample, as
    /// [`Centering::partial_fit_weighted`] takes them.
    ///
    /// # Errors
    ///
    /// As [`from_array`](Self::from_array), and
    /// [`CenteringError::WeightShape`], [`CenteringError::InvalidWeight`].
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{BatchSummary, NanPolicy};
    /// let s = BatchSummary::from_array_weighted(&ndarray::array![[1.0], [4.0]], &ndarray::array![2.0, 1.0], NanPolicy::Reject)?;
    /// assert_eq!(s.mean::<f64>()[0], 2.0);
    /// assert_eq!(s.counts()[0], 3.0); // the total weight
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn from_array_weighted<T, W, S, D, SW, DW>(
        x: &ArrayBase<S, D>,
        weights: &ArrayBase<SW, DW>,
        nan_policy: NanPolicy,
    ) -> Result<Self>
    where
        T: Input,
        W: Element,
        S: Data<Elem = T>,
        D: Dimension,
        SW: Data<Elem = W>,
        DW: Dimension,
    {
        let x = x.view().into_dyn();
        let (d, n) = batch_shape(x.shape())?;
        let w = weights.view().into_dyn();
        let sums = reduce_batch(&x, Some(&w), nan_policy)?.unwrap_or_else(|| Sums::zeros(d));
        Ok(BatchSummary {
            sums,
            n_samples: n as u64,
            nan_policy,
        })
    }

    /// Summarises a batch given as one slice per feature (`columns[j][i]` is
    /// feature `j` of row `i`), each with an optional validity bitmap whose
    /// cleared bits mark nulls — Arrow's layout — without copying them into
    /// rows. `validity` is empty (no nulls anywhere) or has one entry per
    /// column. The element type is any [`Input`]: `f32`, `f64`, the
    /// integers (summed exactly, as in an array) and, with the `half`
    /// feature, `f16`/`bf16` — an Arrow `Int32Array` or `Float16Array`'s
    /// values as they are, without a cast.
    ///
    /// Bit for bit the summary of the `(rows, D)` array of the same values:
    /// in column-major (Fortran) order under [`NanPolicy::Reject`] without
    /// nulls (columns are what that layout's kernel sums, at the same
    /// speed); and, under [`NanPolicy::Ignore`], of the array in any layout
    /// with NaN where the nulls are (nulls are missing values, skipped per
    /// feature, as NaN is).
    ///
    /// # Errors
    ///
    /// [`CenteringError::NoFeatures`] for no columns,
    /// [`CenteringError::ColumnLength`] for columns (or bitmaps, too short
    /// for their column) of other lengths than column 0,
    /// [`CenteringError::NullValue`] for a null under `Reject`,
    /// [`CenteringError::NonFinite`] for a value `nan_policy` rejects
    /// (`index` is `[row, feature]`), [`CenteringError::WeightOverflow`].
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{BatchSummary, CenteringError, NanPolicy, Validity};
    ///
    /// let (a, b) = ([1.0f32, 2.0, 3.0], [4.0f32, 5.0, 6.0]);
    /// let s = BatchSummary::from_columns(&[&a[..], &b[..]], &[], NanPolicy::Reject)?;
    /// assert_eq!(s.mean::<f32>(), ndarray::array![2.0, 5.0]);
    ///
    /// // A null is a missing value; under Reject it is an error naming it.
    /// let bits = [0b0000_0101u8]; // row 1 null
    /// let err = BatchSummary::from_columns(&[&a[..], &b[..]], &[None, Some(Validity::new(&bits, 0))], NanPolicy::Reject)
    ///     .unwrap_err();
    /// assert_eq!(err, CenteringError::NullValue { index: vec![1, 1] });
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn from_columns<T: Input>(
        columns: &[&[T]],
        validity: &[Option<Validity<'_>>],
        nan_policy: NanPolicy,
    ) -> Result<Self> {
        let Some(first) = columns.first() else {
            return Err(CenteringError::NoFeatures);
        };
        let n = first.len();
        if let Some((feature, c)) = columns.iter().enumerate().find(|(_, c)| c.len() != n) {
            return Err(CenteringError::ColumnLength {
                feature,
                expected: n,
                found: c.len(),
            });
        }
        if !validity.is_empty() && validity.len() != columns.len() {
            return Err(CenteringError::ColumnLength {
                feature: validity.len().min(columns.len()),
                expected: columns.len(),
                found: validity.len(),
            });
        }
        if let Some((feature, v)) = validity
            .iter()
            .enumerate()
            .find_map(|(j, v)| v.filter(|v| v.rows() < n).map(|v| (j, v)))
        {
            return Err(CenteringError::ColumnLength {
                feature,
                expected: n,
                found: v.rows(),
            });
        }
        let d = columns.len();
        let sums = if n == 0 {
            Sums::zeros(d)
        } else {
            kernels::columns::reduce_columns(columns, validity, nan_policy)?
        };
        Ok(BatchSummary {
            sums,
            n_samples: n as u64,
            nan_policy,
        })
    }

    /// Summarises a batch given by its per-feature mean and its number of
    /// samples — what a device computed (a training step's batch mean), or
    /// a mean reported by another system — so that folding it counts
    /// `count` samples: the cumulative mode weighs it by `count`, and a
    /// moving average takes one step with `mean` itself.
    ///
    /// The sums are `mean·count`, exactly (a double-word product, rescaled
    /// by a power of two if it would overflow), so the summary's own mean is
    /// `mean` bit for bit. A `count` of zero is an empty batch (folding it is
    /// a no-op). Under [`NanPolicy::Ignore`] a NaN mean marks a feature with
    /// no observed value.
    ///
    /// # Errors
    ///
    /// [`CenteringError::NoFeatures`] for an empty `mean`;
    /// [`CenteringError::NonFinite`] for an infinity, or a NaN under
    /// [`NanPolicy::Reject`], naming its index.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{BatchSummary, Centering, NanPolicy};
    /// // Two batch means, of 3 and of 1 samples: the cumulative mean weighs them.
    /// let mut c = Centering::<f32>::new();
    /// c.partial_fit_summary(&BatchSummary::from_mean(&[2.0f32, 10.0], 3, NanPolicy::Reject)?)?;
    /// c.partial_fit_summary(&BatchSummary::from_mean(&[6.0f32, 50.0], 1, NanPolicy::Reject)?)?;
    /// assert_eq!(c.mean().unwrap(), ndarray::array![3.0, 20.0]);
    /// assert_eq!(c.n_samples_seen(), 4);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn from_mean<F: Element>(mean: &[F], count: u64, nan_policy: NanPolicy) -> Result<Self> {
        if mean.is_empty() {
            return Err(CenteringError::NoFeatures);
        }
        if let Some((j, &m)) = mean
            .iter()
            .enumerate()
            .find(|(_, m)| m.is_infinite() || (m.is_nan() && nan_policy == NanPolicy::Reject))
        {
            return Err(CenteringError::NonFinite {
                index: vec![j],
                value: m.to_f64().unwrap_or(f64::NAN),
            });
        }
        let mut sums = Sums::zeros(mean.len());
        if count > 0 {
            for (j, &m) in mean.iter().enumerate() {
                let m = m.to_f64().unwrap_or(f64::NAN);
                if m.is_nan() {
                    continue; // Ignore: nothing observed for this feature
                }
                let (sum, scale, weight) = crate::state::scaled_product(m, count);
                sums.sum[j] = sum;
                sums.scale[j] = scale;
                sums.weight[j] = weight;
            }
        }
        Ok(BatchSummary {
            sums,
            n_samples: count,
            nan_policy,
        })
    }

    /// The number of features `D`.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = centering::BatchSummary::from_array(&ndarray::Array2::<f64>::zeros((0, 3)), Default::default())?;
    /// assert_eq!(s.n_features(), 3);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn n_features(&self) -> usize {
        self.sums.sum.len()
    }

    /// The number of samples (rows) in the batch, missing values included.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = centering::BatchSummary::from_array(&ndarray::Array3::<f32>::zeros((2, 5, 3)), Default::default())?;
    /// assert_eq!(s.n_samples(), 10);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn n_samples(&self) -> u64 {
        self.n_samples
    }

    /// The NaN policy the batch was summarised under (and which an
    /// estimator folding it must have).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{BatchSummary, NanPolicy};
    /// let s = BatchSummary::from_array(&ndarray::array![[1.0]], NanPolicy::Ignore)?;
    /// assert_eq!(s.nan_policy(), NanPolicy::Ignore);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn nan_policy(&self) -> NanPolicy {
        self.nan_policy
    }

    /// Per feature, the total weight of the observed values (their count
    /// without weights), exactly (an `f64` is exact for counts up to 2⁵³).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{BatchSummary, NanPolicy};
    /// let s = BatchSummary::from_array(&ndarray::array![[1.0, f64::NAN], [2.0, 3.0]], NanPolicy::Ignore)?;
    /// assert_eq!(s.counts(), ndarray::array![2.0, 1.0]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn counts(&self) -> Array1<f64> {
        Array1::from(self.sums.weights())
    }

    /// The batch's own mean, rounded once to `F`; NaN for a feature with no
    /// observed value.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{BatchSummary, NanPolicy};
    /// let s = BatchSummary::from_array(&ndarray::array![[1.0f32, f32::NAN]], NanPolicy::Ignore)?;
    /// let m = s.mean::<f32>();
    /// assert_eq!(m[0], 1.0);
    /// assert!(m[1].is_nan());
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn mean<F: num_traits::Float>(&self) -> Array1<F> {
        Array1::from(self.sums.means::<F>())
    }

    /// Whether the batch has nothing to learn from: no sample, zero total
    /// weight, or only missing values.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = centering::BatchSummary::from_array(&ndarray::Array2::<f64>::zeros((0, 2)), Default::default())?;
    /// assert!(s.is_empty());
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.n_samples == 0 || self.sums.is_empty()
    }

    /// Adds `other`, another chunk of rows of the *same* batch (the sum of
    /// sums; for the moving averages the result is still one batch, one
    /// step). To combine separately fitted batches, fold each into an
    /// estimator and [`merge`](Centering::merge) the estimators instead.
    ///
    /// # Errors
    ///
    /// [`CenteringError::FeatureMismatch`] for another `D`,
    /// [`CenteringError::IncompatibleMerge`] for another NaN policy,
    /// [`CenteringError::WeightOverflow`], [`CenteringError::CountOverflow`];
    /// `self` is then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{BatchSummary, NanPolicy};
    /// let mut s = BatchSummary::from_array(&ndarray::array![[1.0], [2.0]], NanPolicy::Reject)?;
    /// s.merge(&BatchSummary::from_array(&ndarray::array![[6.0]], NanPolicy::Reject)?)?;
    /// assert_eq!((s.n_samples(), s.mean::<f64>()[0]), (3, 3.0));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if other.n_features() != self.n_features() {
            return Err(CenteringError::FeatureMismatch {
                expected: self.n_features(),
                found: other.n_features(),
            });
        }
        if other.nan_policy != self.nan_policy {
            return Err(CenteringError::IncompatibleMerge {
                what: "NaN policy",
                this: format!("{:?}", self.nan_policy),
                other: format!("{:?}", other.nan_policy),
            });
        }
        let n_samples = self
            .n_samples
            .checked_add(other.n_samples)
            .ok_or(CenteringError::CountOverflow {
                what: "sample",
                this: self.n_samples,
                added: other.n_samples,
            })?;
        let mut sums = self.sums.clone();
        sums.merge(&other.sums)
            .map_err(|feature| CenteringError::WeightOverflow { feature })?;
        self.sums = sums;
        self.n_samples = n_samples;
        Ok(())
    }

    pub(crate) fn sums(&self) -> &Sums {
        &self.sums
    }
}

/// `(D, n)` of a batch of this shape.
pub(crate) fn batch_shape(shape: &[usize]) -> Result<(usize, usize)> {
    let (&d, samples) = shape.split_last().ok_or(CenteringError::ZeroDimensional)?;
    if d == 0 {
        return Err(CenteringError::NoFeatures);
    }
    Ok((d, samples.iter().product()))
}

/// The sums of a batch `x` of checked shape with optional weights, or `None`
/// for a batch without samples (after checking the weights' shape): the one
/// way an array becomes sums, for `partial_fit` and for summaries alike.
pub(crate) fn reduce_batch<T: Input, W: Element>(
    x: &ArrayViewD<'_, T>,
    w: Option<&ArrayViewD<'_, W>>,
    policy: NanPolicy,
) -> Result<Option<Sums>> {
    let column = w.map(|w| weights_for(x, w)).transpose()?;
    if x.is_empty() {
        return Ok(None);
    }
    // Bad weights are reported in the weights' own axes, not in the
    // broadcast view's (a `(n0,)` weight names `[i]`, not `[i, 0, …]`).
    if let Some(given) = w
        && let Some((index, weight)) = kernels::general::first_bad_weight(given)
    {
        return Err(CenteringError::InvalidWeight {
            index,
            weight: weight.to_f64().unwrap_or(f64::NAN),
        });
    }
    let samples = IxDyn(&x.shape()[..x.ndim() - 1]);
    // `weights_for` returns a view that broadcasts to the sample axes; were
    // it ever not to, that is the weights' shape error.
    let weights = match column.as_ref() {
        Some(c) => Some(
            c.broadcast(samples.clone())
                .ok_or_else(|| CenteringError::WeightShape {
                    expected: samples.slice().to_vec(),
                    per_first_axis: None,
                    found: c.shape().to_vec(),
                })?,
        ),
        None => None,
    };
    kernels::reduce(x, weights.as_ref(), policy).map(Some)
}

/// The weights as a view that broadcasts to the sample axes of `x`: either
/// exactly that shape, or `(n, 1, …, 1)` from a 1-D weight per first index.
fn weights_for<'a, T, W>(x: &ArrayViewD<'_, T>, w: &ArrayViewD<'a, W>) -> Result<ArrayViewD<'a, W>> {
    let samples = &x.shape()[..x.ndim() - 1];
    if w.shape() == samples {
        return Ok(w.clone());
    }
    if samples.len() >= 2 && w.ndim() == 1 && w.len() == samples[0] {
        let mut v = w.clone();
        for ax in 1..samples.len() {
            v = v.insert_axis(Axis(ax));
        }
        return Ok(v);
    }
    Err(CenteringError::WeightShape {
        expected: samples.to_vec(),
        per_first_axis: (samples.len() >= 2).then(|| samples[0]),
        found: w.shape().to_vec(),
    })
}

impl<F: Element> Centering<F> {
    /// Folds a [`BatchSummary`] into the estimate: exactly what fitting the
    /// summarised batch does (a moving average takes one step with the
    /// summary's mean). A summary with nothing to learn is a no-op.
    ///
    /// # Errors
    ///
    /// [`CenteringError::FeatureMismatch`] for a `D` other than the fitted
    /// one, [`CenteringError::IncompatibleMerge`] for a summary made under
    /// another NaN policy, [`CenteringError::WeightOverflow`],
    /// [`CenteringError::CountOverflow`]. On error the estimator is
    /// unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{BatchSummary, Centering, NanPolicy};
    /// let x = ndarray::array![[1.0, 2.0], [3.0, 4.0]];
    /// let mut a = Centering::<f64>::new();
    /// a.partial_fit_summary(&BatchSummary::from_array(&x, NanPolicy::Reject)?)?;
    /// let mut b = Centering::<f64>::new();
    /// b.partial_fit(&x)?;
    /// assert_eq!(a, b);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn partial_fit_summary(&mut self, summary: &BatchSummary) -> Result<&mut Self> {
        if summary.nan_policy() != self.params().nan_policy() {
            return Err(CenteringError::IncompatibleMerge {
                what: "NaN policy",
                this: format!("{:?}", self.params().nan_policy()),
                other: format!("{:?}", summary.nan_policy()),
            });
        }
        let d = summary.n_features();
        if let Some(expected) = self.n_features()
            && expected != d
        {
            return Err(CenteringError::FeatureMismatch { expected, found: d });
        }
        if summary.n_samples() > 0 {
            self.fold_sums(d, summary.n_samples(), summary.sums().clone(), false)?;
        }
        Ok(self)
    }
}
