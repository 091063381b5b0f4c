//! `Centering<F>`: the public operations. Shapes and parameters are checked
//! here; arithmetic lives in `state` and `kernels`.

use ndarray::{Array, Array1, ArrayBase, ArrayView1, ArrayViewD, Data, DataMut, Dimension, ShapeBuilder, StrideShape};

use crate::error::{CenteringError, Result};
use crate::kernels::{self, Stores};
use crate::params::{CenteringBuilder, ValidParams};
use crate::state::{Accumulator, Fitted, Sums};
use crate::{Element, Input};

/// Learns one mean per feature (the last axis) and subtracts it.
///
/// See the [crate documentation](crate) for the modes and conventions.
///
/// # Examples
///
/// ```
/// use centering::Centering;
/// use ndarray::array;
///
/// let mut c = Centering::<f64>::new();
/// c.partial_fit(&array![[1.0, 10.0], [3.0, 30.0]])?;
/// c.partial_fit(&array![[5.0, 50.0]])?;
/// assert_eq!(c.mean().unwrap(), array![3.0, 30.0]);
/// let y = c.transform(&array![[4.0, 40.0]])?;
/// assert_eq!(y, array![[1.0, 10.0]]);
/// # Ok::<(), centering::CenteringError>(())
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(
        try_from = "crate::persist::CenteringState",
        into = "crate::persist::CenteringState",
        bound = "F: crate::Element"
    )
)]
pub struct Centering<F> {
    pub(crate) params: ValidParams,
    pub(crate) fitted: Option<Fitted<F>>,
}

/// `==` is *state* equality: the same parameters (the momentum's convention
/// included) and the same learned state — the counts, the batch count
/// among them, and the accumulator bit for bit (up to the sign of zero) —
/// which is what a save and reload preserves. Two equal estimators give the
/// same results for every later sequence of calls.
///
/// Estimators fitted on the same data cut into different batches are
/// generally not `==` (their batch counts differ) even when their means are
/// bit-identical; [`same_estimate`](Centering::same_estimate) compares what
/// they estimate instead.
///
/// # Examples
///
/// ```
/// use centering::Centering;
/// use ndarray::array;
///
/// let x = array![[1.0, 10.0], [2.0, 20.0], [6.0, 30.0]];
/// let mut once = Centering::<f64>::new();
/// once.fit(&x)?;
/// let mut twice = Centering::<f64>::new();
/// twice.partial_fit(&x.slice(ndarray::s![..1, ..]))?;
/// twice.partial_fit(&x.slice(ndarray::s![1.., ..]))?;
///
/// assert_eq!(once.mean(), twice.mean());
/// assert_ne!(once, twice); // 1 batch vs 2
/// assert!(once.same_estimate(&twice));
/// assert_eq!(once, once.clone());
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl<F: PartialEq> PartialEq for Centering<F> {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params && self.fitted == other.fitted
    }
}

/// One line for people: the element type, the parameters (as
/// [`ValidParams`]'s `Display`: the convention and the start of a moving
/// average), and what was learned.
///
/// # Examples
///
/// ```
/// use centering::Centering;
/// use ndarray::array;
///
/// let mut c = Centering::<f32>::builder().torch(0.1).build()?;
/// assert_eq!(
///     c.to_string(),
///     "Centering<f32> [moving average, PyTorch momentum 0.1 (Keras 0.9), zero start (as Keras and PyTorch), \
///      NaN rejected]: not fitted"
/// );
/// c.partial_fit(&array![[1.0f32, 2.0], [3.0, 4.0]])?;
/// assert!(c.to_string().ends_with("]: 2 features, 2 samples in 1 batch"));
/// assert!(format!("{c:?}").contains("convention: PyTorch")); // Debug says it too
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl<F: Element> std::fmt::Display for Centering<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Centering<{}> [{}]: ", std::any::type_name::<F>(), self.params)?;
        match &self.fitted {
            None => write!(f, "not fitted"),
            Some(s) => write!(
                f,
                "{} feature{}, {} sample{} in {} batch{}",
                s.n_features(),
                if s.n_features() == 1 { "" } else { "s" },
                s.n_samples,
                if s.n_samples == 1 { "" } else { "s" },
                s.n_batches,
                if s.n_batches == 1 { "" } else { "es" },
            ),
        }
    }
}

impl<F: Element> Default for Centering<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Element> Centering<F> {
    /// An unfitted estimator of the exact cumulative mean (the default).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = centering::Centering::<f32>::new();
    /// assert!(!c.is_fitted());
    /// ```
    pub fn new() -> Self {
        Self::with_params(ValidParams::default())
    }

    /// An unfitted estimator with checked parameters.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringParams};
    /// let p = CenteringParams::new().moving_average(0.9).check()?;
    /// let c = Centering::<f64>::with_params(p);
    /// assert_eq!(c.params().momentum(), Some(0.9));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn with_params(params: ValidParams) -> Self {
        Centering { params, fitted: None }
    }

    /// The parameter builder of a `Centering<F>`: the defaults of
    /// [`CenteringParams::new`](crate::CenteringParams::new), with the
    /// element type already known, so that `F` is named once. This is the
    /// way to build an estimator with parameters other than the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, EmaStart, Mode};
    ///
    /// let c = Centering::<f64>::builder().batch_average().build()?;
    /// assert_eq!(c.params().mode(), Mode::BatchAverage);
    /// let keras = Centering::<f32>::builder().keras(0.99).build()?; // Keras's moving mean, zero start
    /// assert_eq!(keras.params().start(), Some(EmaStart::Zero));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn builder() -> CenteringBuilder<F> {
        CenteringBuilder::default()
    }

    /// The parameters.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = centering::Centering::<f64>::new();
    /// assert_eq!(c.params().mode(), centering::Mode::Cumulative);
    /// ```
    pub fn params(&self) -> &ValidParams {
        &self.params
    }

    /// Whether a non-empty batch has been fitted.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.partial_fit(&ndarray::Array2::<f64>::zeros((0, 3)))?; // empty: a no-op
    /// assert!(!c.is_fitted());
    /// c.partial_fit(&ndarray::array![1.0, 2.0, 3.0])?; // one sample
    /// assert!(c.is_fitted());
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn is_fitted(&self) -> bool {
        self.fitted.is_some()
    }

    /// The learned mean, one value per feature; `None` before any fit.
    ///
    /// Under [`NanPolicy::Ignore`](crate::NanPolicy::Ignore), a feature with no observed value yet has
    /// a NaN mean (as in scikit-learn and `numpy.nanmean`); so has every
    /// feature of a [`EmaStart::FirstBatch`](crate::EmaStart::FirstBatch) or [`EmaStart::Debiased`](crate::EmaStart::Debiased) moving
    /// average that has not taken a step, while [`EmaStart::Zero`](crate::EmaStart::Zero) reports 0
    /// (Keras's and PyTorch's initial moving mean).
    ///
    /// The mean is computed from the state's sums on the first read after
    /// an update (one division per feature) and kept until the next one, so
    /// a loop of `partial_fit` calls on a wide state (millions of features)
    /// does not pay for a mean nobody reads.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// assert!(c.mean().is_none());
    /// c.fit(&ndarray::array![[1.0], [2.0]])?;
    /// assert_eq!(c.mean().unwrap()[0], 1.5);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn mean(&self) -> Option<ArrayView1<'_, F>> {
        self.fitted.as_ref().map(|f| ArrayView1::from(f.mean(&self.params)))
    }

    /// The learned mean, as [`mean`](Self::mean), or
    /// [`CenteringError::NotFitted`] before any fit: for `?` in a function
    /// that returns this crate's [`Result`] (or any error a
    /// [`CenteringError`] converts into).
    ///
    /// # Errors
    ///
    /// [`CenteringError::NotFitted`] before any non-empty batch was fitted.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringError};
    /// use ndarray::array;
    ///
    /// fn offsets(batches: &[ndarray::Array2<f64>]) -> centering::Result<Vec<f64>> {
    ///     let mut c = Centering::<f64>::new();
    ///     for b in batches {
    ///         c.partial_fit(b)?; // a statement: the returned `&mut` borrow ends here
    ///     }
    ///     Ok(c.try_mean()?.to_vec())
    /// }
    /// assert_eq!(offsets(&[array![[1.0], [3.0]], array![[5.0]]])?, vec![3.0]);
    /// assert_eq!(offsets(&[]), Err(CenteringError::NotFitted));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn try_mean(&self) -> Result<ArrayView1<'_, F>> {
        self.mean().ok_or(CenteringError::NotFitted)
    }

    /// Whether `self` and `other` estimate the same thing: the same
    /// parameters, both unfitted or both fitted with the same mean bit for
    /// bit (NaN equal to NaN, up to the sign of zero), the same
    /// [`n_samples_seen`](Self::n_samples_seen) and the same
    /// [`weight_sums`](Self::weight_sums). Batch counts and how the
    /// accumulator holds its sums are not compared. So `transform` gives the
    /// same results for both, now; later fits may differ by rounding, and in
    /// the moving-average modes, where every batch is a step, by more.
    ///
    /// `==` is the stricter state equality (see [`Centering`]'s `PartialEq`).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::Centering;
    /// use ndarray::{Array2, Axis};
    ///
    /// // Ten shards merged, against one fit of the same data.
    /// let x = Array2::from_shape_fn((1000, 3), |(i, j)| ((i * 7 + j) % 13) as f64 - 6.0);
    /// let mut merged = Centering::<f64>::new();
    /// for shard in x.axis_chunks_iter(Axis(0), 100) {
    ///     let mut c = Centering::<f64>::new();
    ///     c.fit(&shard)?;
    ///     merged.merge(&c)?;
    /// }
    /// let mut whole = Centering::<f64>::new();
    /// whole.fit(&x)?;
    /// assert!(merged.same_estimate(&whole));
    /// assert_ne!(merged, whole); // 10 batches against 1
    /// assert_eq!((merged.n_batches(), whole.n_batches()), (10, 1));
    ///
    /// let mut more = whole.clone();
    /// more.partial_fit(&ndarray::array![[0.0, 0.0, 0.0]])?; // one more sample, same mean or not
    /// assert!(!more.same_estimate(&whole));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn same_estimate(&self, other: &Self) -> bool {
        let same_mean =
            |a: &[F], b: &[F]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (x.is_nan() && y.is_nan()));
        self.params == other.params
            && match (&self.fitted, &other.fitted) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.n_samples == b.n_samples
                        && same_mean(a.mean(&self.params), b.mean(&other.params))
                        && self.weight_sums() == other.weight_sums()
                }
                _ => false,
            }
    }

    /// The number of features `D`, once fitted.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f32>::new();
    /// c.fit(&ndarray::Array3::<f32>::ones((2, 4, 3)))?;
    /// assert_eq!(c.n_features(), Some(3));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn n_features(&self) -> Option<usize> {
        self.fitted.as_ref().map(Fitted::n_features)
    }

    /// The number of samples in all fitted batches (whatever their weights
    /// or missing values), as scikit-learn's `n_samples_seen_` without
    /// weights.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.partial_fit(&ndarray::Array3::<f64>::zeros((2, 5, 3)))?;
    /// assert_eq!(c.n_samples_seen(), 10);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn n_samples_seen(&self) -> u64 {
        self.fitted.as_ref().map_or(0, |f| f.n_samples)
    }

    /// The number of fitted non-empty batches: the moving average's step
    /// count.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.partial_fit(&ndarray::array![[1.0]])?;
    /// c.partial_fit(&ndarray::array![[2.0], [3.0]])?;
    /// assert_eq!(c.n_batches(), 2);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn n_batches(&self) -> u64 {
        self.fitted.as_ref().map_or(0, |f| f.n_batches)
    }

    /// Per feature, the total weight of the observed values: the count of
    /// non-missing values without weights. `None` before any fit and in the
    /// moving-average modes (which weigh batches, not samples).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, NanPolicy};
    /// let mut c = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).build()?;
    /// c.fit(&ndarray::array![[1.0, f64::NAN], [3.0, 4.0]])?;
    /// assert_eq!(c.weight_sums().unwrap(), ndarray::array![2.0, 1.0]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn weight_sums(&self) -> Option<Array1<F>> {
        match &self.fitted.as_ref()?.acc {
            Accumulator::Cumulative(s) => Some(
                s.weights()
                    .into_iter()
                    .map(|w| F::from(w).unwrap_or_else(F::infinity))
                    .collect(),
            ),
            Accumulator::Moving(_) => None,
        }
    }

    /// Forgets everything learned; the parameters stay.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.fit(&ndarray::array![[1.0]])?;
    /// c.reset();
    /// assert!(!c.is_fitted());
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn reset(&mut self) {
        self.fitted = None;
    }

    /// Folds the batch `x` (shape `(samples…, D)`, or `(D,)` for one sample)
    /// into the estimate. A batch with no samples is a no-op.
    ///
    /// # Errors
    ///
    /// [`CenteringError::ZeroDimensional`], [`CenteringError::NoFeatures`],
    /// [`CenteringError::FeatureMismatch`] (a `D` other than the fitted
    /// one), [`CenteringError::NonFinite`] (a value the
    /// [`NanPolicy`](crate::NanPolicy) rejects), [`CenteringError::WeightOverflow`]. On error
    /// the estimator is unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringError};
    /// use ndarray::array;
    ///
    /// let mut c = Centering::<f64>::new();
    /// c.partial_fit(&array![[1.0, 2.0]])?;
    /// let err = c.partial_fit(&array![[f64::NAN, 0.0]]).unwrap_err();
    /// assert!(matches!(err, CenteringError::NonFinite { .. }));
    /// assert_eq!(c.n_samples_seen(), 1); // unchanged
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn partial_fit<S, D>(&mut self, x: &ArrayBase<S, D>) -> Result<&mut Self>
    where
        S: Data<Elem = F>,
        D: Dimension,
    {
        self.partial_fit_input(x)
    }

    /// [`partial_fit`](Self::partial_fit) with one non-negative weight per
    /// sample, shaped like the sample axes (`x.shape()[..ndim − 1]`); for an
    /// input of 3 or more dimensions, a 1-D weight of length `x.shape()[0]`
    /// is also accepted and applies to every sample under that index (one
    /// weight per image, say). A batch whose weights sum to 0 is a no-op.
    /// In the moving-average modes, weights weigh the batch mean.
    ///
    /// # Errors
    ///
    /// As [`partial_fit`](Self::partial_fit), and
    /// [`CenteringError::WeightShape`], [`CenteringError::InvalidWeight`]
    /// (negative, NaN or infinite).
    ///
    /// # Examples
    ///
    /// ```
    /// use ndarray::array;
    /// let mut c = centering::Centering::<f64>::new();
    /// c.partial_fit_weighted(&array![[1.0], [4.0]], &array![2.0, 1.0])?;
    /// assert_eq!(c.mean().unwrap()[0], 2.0); // (2·1 + 1·4) / 3
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn partial_fit_weighted<S, D, SW, DW>(
        &mut self,
        x: &ArrayBase<S, D>,
        weights: &ArrayBase<SW, DW>,
    ) -> Result<&mut Self>
    where
        S: Data<Elem = F>,
        D: Dimension,
        SW: Data<Elem = F>,
        DW: Dimension,
    {
        self.partial_fit_input_weighted(x, weights)
    }

    /// Forgets everything, then [`partial_fit`](Self::partial_fit)s `x`.
    /// On error the previous state is kept.
    ///
    /// A batch that carries nothing to learn — no samples, or (with
    /// weights, or under [`NanPolicy::Ignore`](crate::NanPolicy::Ignore))
    /// no observed value — is an error, [`CenteringError::EmptyFit`], as
    /// scikit-learn's `fit` raises on an empty array: forgetting the state
    /// to learn nothing is never what was meant, and the state is kept.
    /// [`partial_fit`](Self::partial_fit) of such a batch is a no-op.
    ///
    /// # Errors
    ///
    /// As [`partial_fit`](Self::partial_fit), except that a `D` different
    /// from a previous fit is allowed; and [`CenteringError::EmptyFit`].
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.fit(&ndarray::array![[1.0, 2.0]])?;
    /// c.fit(&ndarray::array![[5.0]])?; // a new D is fine: everything was forgotten
    /// assert_eq!(c.mean().unwrap(), ndarray::array![5.0]);
    ///
    /// // Nothing to learn: an error, and the state is kept.
    /// let err = c.fit(&ndarray::Array2::<f64>::zeros((0, 1))).unwrap_err();
    /// assert_eq!(err, centering::CenteringError::EmptyFit { samples: 0 });
    /// assert_eq!(c.mean().unwrap(), ndarray::array![5.0]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn fit<S, D>(&mut self, x: &ArrayBase<S, D>) -> Result<&mut Self>
    where
        S: Data<Elem = F>,
        D: Dimension,
    {
        self.fit_input(x)
    }

    /// Forgets everything, then
    /// [`partial_fit_weighted`](Self::partial_fit_weighted)s `x`; a batch
    /// whose weights sum to 0 is an error, as in [`fit`](Self::fit).
    ///
    /// # Errors
    ///
    /// As [`partial_fit_weighted`](Self::partial_fit_weighted), and
    /// [`CenteringError::EmptyFit`].
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.fit_weighted(&ndarray::array![[0.0], [10.0]], &ndarray::array![3.0, 1.0])?;
    /// assert_eq!(c.mean().unwrap()[0], 2.5);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn fit_weighted<S, D, SW, DW>(&mut self, x: &ArrayBase<S, D>, weights: &ArrayBase<SW, DW>) -> Result<&mut Self>
    where
        S: Data<Elem = F>,
        D: Dimension,
        SW: Data<Elem = F>,
        DW: Dimension,
    {
        let mut fresh = Self::with_params(self.params);
        fresh.partial_fit_weighted(x, weights)?;
        fresh.require_fitted(x.shape())?;
        *self = fresh;
        Ok(self)
    }

    /// `fit(x)` then `transform(x)`, all or nothing: on error (including a
    /// refused output allocation) the estimator is unchanged.
    ///
    /// # Errors
    ///
    /// As [`fit`](Self::fit) (so [`CenteringError::EmptyFit`] for a batch
    /// with nothing to learn), and [`CenteringError::Allocation`].
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// let y = c.fit_transform(&ndarray::array![[1.0], [3.0]])?;
    /// assert_eq!(y, ndarray::array![[-1.0], [1.0]]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn fit_transform<S, D>(&mut self, x: &ArrayBase<S, D>) -> Result<Array<F, D>>
    where
        S: Data<Elem = F>,
        D: Dimension,
    {
        let mut fresh = Self::with_params(self.params);
        fresh.fit(x)?;
        let y = fresh.transform(x)?;
        *self = fresh;
        Ok(y)
    }

    /// Batch centering, the training mode of a normalisation layer: returns
    /// `x − mean(x)` with the batch's *own* mean, and folds the batch into
    /// the estimate (the layer's moving mean). An empty batch gives an empty
    /// result and changes nothing.
    ///
    /// # Errors
    ///
    /// As [`partial_fit`](Self::partial_fit).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::Centering;
    /// use ndarray::array;
    ///
    /// let mut layer = Centering::<f64>::builder().moving_average(0.9).build()?;
    /// let y = layer.center_batch(&array![[1.0], [3.0]])?;
    /// assert_eq!(y, array![[-1.0], [1.0]]); // centred on the batch mean, 2
    /// assert_eq!(layer.mean().unwrap()[0], 2.0); // debiased moving mean after one step
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn center_batch<S, D>(&mut self, x: &ArrayBase<S, D>) -> Result<Array<F, D>>
    where
        S: Data<Elem = F>,
        D: Dimension,
    {
        self.center_batch_input(x)
    }

    /// In-place [`center_batch`](Self::center_batch).
    ///
    /// # Errors
    ///
    /// As [`partial_fit`](Self::partial_fit); on error `x` is untouched.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f32>::new();
    /// let mut x = ndarray::array![[1.0f32, 0.0], [3.0, 2.0]];
    /// c.center_batch_inplace(&mut x)?;
    /// assert_eq!(x, ndarray::array![[-1.0, -1.0], [1.0, 1.0]]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn center_batch_inplace<S, D>(&mut self, x: &mut ArrayBase<S, D>) -> Result<()>
    where
        S: DataMut<Elem = F>,
        D: Dimension,
    {
        let batch_mean = self.fold(&x.view().into_dyn(), None, true)?;
        if let Some(m) = batch_mean {
            kernels::apply_inplace(x.view_mut().into_dyn(), &m, false);
        }
        Ok(())
    }

    /// `x − mean`, broadcast along the last axis, as a new array of the same
    /// shape (and the same memory order for Fortran-ordered input).
    ///
    /// # Errors
    ///
    /// [`CenteringError::NotFitted`], [`CenteringError::ZeroDimensional`],
    /// [`CenteringError::NoFeatures`], [`CenteringError::FeatureMismatch`].
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringError};
    ///
    /// let mut c = Centering::<f64>::new();
    /// assert_eq!(c.transform(&ndarray::array![[1.0]]), Err(CenteringError::NotFitted));
    /// c.fit(&ndarray::array![[1.0, 2.0], [3.0, 4.0]])?;
    /// let y = c.transform(&ndarray::array![[2.0, 3.0]])?;
    /// assert_eq!(y, ndarray::array![[0.0, 0.0]]);
    /// let err = c.transform(&ndarray::array![[2.0, 3.0, 4.0]]).unwrap_err();
    /// assert_eq!(err, CenteringError::FeatureMismatch { expected: 2, found: 3 });
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn transform<S, D>(&self, x: &ArrayBase<S, D>) -> Result<Array<F, D>>
    where
        S: Data<Elem = F>,
        D: Dimension,
    {
        self.apply_new(x, false)
    }

    /// `y + mean`: undoes [`transform`](Self::transform).
    ///
    /// # Errors
    ///
    /// As [`transform`](Self::transform).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.fit(&ndarray::array![[1.0], [3.0]])?;
    /// let x = ndarray::array![[7.0]];
    /// assert_eq!(c.inverse_transform(&c.transform(&x)?)?, x);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn inverse_transform<S, D>(&self, y: &ArrayBase<S, D>) -> Result<Array<F, D>>
    where
        S: Data<Elem = F>,
        D: Dimension,
    {
        self.apply_new(y, true)
    }

    /// [`transform`](Self::transform) into the caller's buffer `out` (same
    /// shape as `x`, any layout): no allocation.
    ///
    /// # Errors
    ///
    /// As [`transform`](Self::transform), and [`CenteringError::OutputShape`].
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.fit(&ndarray::array![[1.0], [3.0]])?;
    /// let mut out = ndarray::Array2::zeros((1, 1));
    /// c.transform_into(&ndarray::array![[5.0]], &mut out)?;
    /// assert_eq!(out[[0, 0]], 3.0);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn transform_into<S, D, SO>(&self, x: &ArrayBase<S, D>, out: &mut ArrayBase<SO, D>) -> Result<()>
    where
        S: Data<Elem = F>,
        SO: DataMut<Elem = F>,
        D: Dimension,
    {
        self.apply_into(x, out, false)
    }

    /// [`inverse_transform`](Self::inverse_transform) into the caller's
    /// buffer.
    ///
    /// # Errors
    ///
    /// As [`transform_into`](Self::transform_into).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.fit(&ndarray::array![[1.0], [3.0]])?;
    /// let mut out = ndarray::Array2::zeros((1, 1));
    /// c.inverse_transform_into(&ndarray::array![[1.0]], &mut out)?;
    /// assert_eq!(out[[0, 0]], 3.0);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn inverse_transform_into<S, D, SO>(&self, y: &ArrayBase<S, D>, out: &mut ArrayBase<SO, D>) -> Result<()>
    where
        S: Data<Elem = F>,
        SO: DataMut<Elem = F>,
        D: Dimension,
    {
        self.apply_into(y, out, true)
    }

    /// [`partial_fit`](Self::partial_fit) of an array of any [`Input`]
    /// element type — `u8`/`u16` images, `i16` sensor streams, `f16`
    /// activations (feature `half`), or `F` itself — without converting it
    /// first. Integers are summed exactly (see [`Input`]), so the mean of
    /// integer data depends on the exact sum and count only: bit-identical
    /// whatever the batch split, merge order and thread count. Integer and
    /// float batches mix in one estimator (the sum is then as exact as the
    /// float batches allow).
    ///
    /// (`partial_fit` itself takes `F` arrays only, so that `F` and the
    /// element type of an array literal keep being inferred from each other.)
    ///
    /// # Errors
    ///
    /// As [`partial_fit`](Self::partial_fit).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::Centering;
    /// use ndarray::array;
    ///
    /// // Two RGB pixels stored as u8, a mean in f32.
    /// let mut c = Centering::<f32>::new();
    /// c.partial_fit_input(&array![[0u8, 128, 255], [255, 129, 0]])?;
    /// assert_eq!(c.mean().unwrap(), array![127.5f32, 128.5, 127.5]);
    /// let y = c.transform_input(&array![[255u8, 128, 0]])?; // f32 out
    /// assert_eq!(y, array![[127.5f32, -0.5, -127.5]]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn partial_fit_input<T, S, D>(&mut self, x: &ArrayBase<S, D>) -> Result<&mut Self>
    where
        T: Input,
        S: Data<Elem = T>,
        D: Dimension,
    {
        let x = x.view().into_dyn();
        self.fold(&x, None, false)?;
        Ok(self)
    }

    /// [`partial_fit_weighted`](Self::partial_fit_weighted) of an array of
    /// any [`Input`] element type (the weights stay `F`).
    ///
    /// # Errors
    ///
    /// As [`partial_fit_weighted`](Self::partial_fit_weighted).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.partial_fit_input_weighted(&ndarray::array![[1u8], [4]], &ndarray::array![2.0, 1.0])?;
    /// assert_eq!(c.mean().unwrap()[0], 2.0);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn partial_fit_input_weighted<T, S, D, SW, DW>(
        &mut self,
        x: &ArrayBase<S, D>,
        weights: &ArrayBase<SW, DW>,
    ) -> Result<&mut Self>
    where
        T: Input,
        S: Data<Elem = T>,
        D: Dimension,
        SW: Data<Elem = F>,
        DW: Dimension,
    {
        let x = x.view().into_dyn();
        let w = weights.view().into_dyn();
        self.fold(&x, Some(&w), false)?;
        Ok(self)
    }

    /// Fits only the positions where `mask` is true: a `(N, T, D)` batch of
    /// padded sequences with a `(N, T)` mask (PyTorch's masked batch norm),
    /// or any batch with a mask shaped like its sample axes (or, for 3 or
    /// more dimensions, `(N,)`). In every mode: the moving averages take
    /// the masked batch's mean. Exactly the weighted fit with weights 1 and
    /// 0, at its speed: the masked-out positions weigh nothing, but under
    /// [`NanPolicy::Reject`](crate::NanPolicy::Reject) they must still be
    /// finite (zero padding is; pad with NaN under `Ignore`).
    ///
    /// # Errors
    ///
    /// As [`partial_fit_weighted`](Self::partial_fit_weighted).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::Centering;
    /// use ndarray::{Array3, array};
    ///
    /// // Two sequences of 3 steps, 1 feature; the second has 1 real step.
    /// let x = Array3::from_shape_vec((2, 3, 1), vec![1.0, 2.0, 3.0, 10.0, 0.0, 0.0]).unwrap();
    /// let mask = array![[true, true, true], [true, false, false]];
    /// let mut c = Centering::<f64>::new();
    /// c.partial_fit_masked(&x, &mask)?;
    /// assert_eq!(c.mean().unwrap()[0], 4.0); // (1 + 2 + 3 + 10) / 4
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn partial_fit_masked<T, S, D, SM, DM>(
        &mut self,
        x: &ArrayBase<S, D>,
        mask: &ArrayBase<SM, DM>,
    ) -> Result<&mut Self>
    where
        T: Input,
        S: Data<Elem = T>,
        D: Dimension,
        SM: Data<Elem = bool>,
        DM: Dimension,
    {
        let weights = mask.mapv(|m| if m { F::one() } else { F::zero() });
        self.partial_fit_input_weighted(x, &weights)
    }

    /// [`fit`](Self::fit) of an array of any [`Input`] element type.
    ///
    /// # Errors
    ///
    /// As [`fit`](Self::fit).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f32>::new();
    /// c.fit_input(&ndarray::array![[1i16, -3], [2, 4]])?;
    /// assert_eq!(c.mean().unwrap(), ndarray::array![1.5f32, 0.5]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn fit_input<T, S, D>(&mut self, x: &ArrayBase<S, D>) -> Result<&mut Self>
    where
        T: Input,
        S: Data<Elem = T>,
        D: Dimension,
    {
        let mut fresh = Self::with_params(self.params);
        fresh.partial_fit_input(x)?;
        fresh.require_fitted(x.shape())?;
        *self = fresh;
        Ok(self)
    }

    /// [`transform`](Self::transform) of an array of any [`Input`] element
    /// type: `x − mean` as an `F` array (each value widened, the mean
    /// subtracted, the difference rounded once to `F`).
    ///
    /// # Errors
    ///
    /// As [`transform`](Self::transform).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f32>::new();
    /// c.fit_input(&ndarray::array![[10u8], [20]])?;
    /// assert_eq!(c.transform_input(&ndarray::array![[0u8]])?, ndarray::array![[-15.0f32]]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn transform_input<T, S, D>(&self, x: &ArrayBase<S, D>) -> Result<Array<F, D>>
    where
        T: Input,
        S: Data<Elem = T>,
        D: Dimension,
    {
        let mean = self.checked_mean(x.shape())?;
        let mut out = alloc_like(x)?;
        kernels::apply_input(
            x.view().into_dyn(),
            out.view_mut().into_dyn(),
            mean,
            false,
            Stores::Cached,
        );
        Ok(out)
    }

    /// [`transform_input`](Self::transform_input) into the caller's `F`
    /// buffer.
    ///
    /// # Errors
    ///
    /// As [`transform_into`](Self::transform_into).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.fit_input(&ndarray::array![[2u16]])?;
    /// let mut out = ndarray::Array2::zeros((1, 1));
    /// c.transform_input_into(&ndarray::array![[5u16]], &mut out)?;
    /// assert_eq!(out[[0, 0]], 3.0);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn transform_input_into<T, S, D, SO>(&self, x: &ArrayBase<S, D>, out: &mut ArrayBase<SO, D>) -> Result<()>
    where
        T: Input,
        S: Data<Elem = T>,
        SO: DataMut<Elem = F>,
        D: Dimension,
    {
        let mean = self.checked_mean(x.shape())?;
        if out.shape() != x.shape() {
            return Err(CenteringError::OutputShape {
                expected: x.shape().to_vec(),
                found: out.shape().to_vec(),
            });
        }
        let stores = Stores::into_buffer(out.len() * size_of::<F>());
        kernels::apply_input(x.view().into_dyn(), out.view_mut().into_dyn(), mean, false, stores);
        Ok(())
    }

    /// [`center_batch`](Self::center_batch) of an array of any [`Input`]
    /// element type: `x − mean(x)` as an `F` array, the batch folded in —
    /// a normalisation layer's training step on `f16` activations with an
    /// `f32` state, say.
    ///
    /// # Errors
    ///
    /// As [`center_batch`](Self::center_batch).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut layer = centering::Centering::<f32>::builder().keras(0.9).build()?;
    /// let y = layer.center_batch_input(&ndarray::array![[1u8], [3]])?;
    /// assert_eq!(y, ndarray::array![[-1.0f32], [1.0]]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn center_batch_input<T, S, D>(&mut self, x: &ArrayBase<S, D>) -> Result<Array<F, D>>
    where
        T: Input,
        S: Data<Elem = T>,
        D: Dimension,
    {
        let xd = x.view().into_dyn();
        let mut out = alloc_like(x)?;
        if let Some(m) = self.fold(&xd, None, true)? {
            kernels::apply_input(xd, out.view_mut().into_dyn(), &m, false, Stores::Cached);
        }
        Ok(out)
    }

    /// [`transform`](Self::transform) in place: `x −= mean`.
    ///
    /// # Errors
    ///
    /// As [`transform`](Self::transform); on error `x` is untouched.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.fit(&ndarray::array![[2.0]])?;
    /// let mut x = ndarray::array![[5.0], [6.0]];
    /// c.transform_inplace(&mut x)?;
    /// assert_eq!(x, ndarray::array![[3.0], [4.0]]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn transform_inplace<S, D>(&self, x: &mut ArrayBase<S, D>) -> Result<()>
    where
        S: DataMut<Elem = F>,
        D: Dimension,
    {
        let mean = self.checked_mean(x.shape())?;
        kernels::apply_inplace(x.view_mut().into_dyn(), mean, false);
        Ok(())
    }

    /// [`inverse_transform`](Self::inverse_transform) in place: `y += mean`.
    ///
    /// # Errors
    ///
    /// As [`transform`](Self::transform); on error `y` is untouched.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f64>::new();
    /// c.fit(&ndarray::array![[2.0]])?;
    /// let mut y = ndarray::array![[1.0]];
    /// c.inverse_transform_inplace(&mut y)?;
    /// assert_eq!(y, ndarray::array![[3.0]]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn inverse_transform_inplace<S, D>(&self, y: &mut ArrayBase<S, D>) -> Result<()>
    where
        S: DataMut<Elem = F>,
        D: Dimension,
    {
        let mean = self.checked_mean(y.shape())?;
        kernels::apply_inplace(y.view_mut().into_dyn(), mean, true);
        Ok(())
    }

    /// Folds `other`'s learned state into `self`.
    ///
    /// - Cumulative: the result is what one estimator fed both inputs holds
    ///   (weights and per-feature missing counts included); commutative.
    /// - Moving averages: `other`'s batches *follow* `self`'s, as if fed after
    ///   them; ordered, not commutative. A segment of batches acts as
    ///   `m ↦ d·m + c` with `d = momentumᵗ`, and segments compose. This lets
    ///   a time-ordered stream be fitted in shards and merged in order.
    ///
    /// An unfitted side is the identity.
    ///
    /// # Errors
    ///
    /// [`CenteringError::IncompatibleMerge`] for a different mode, momentum,
    /// start, NaN policy or number of features;
    /// [`CenteringError::WeightOverflow`]. On error `self` is unchanged.
    /// (Momenta given in different conventions but equal, such as Keras's
    /// 0.9 and PyTorch's 0.1, merge; the result keeps `self`'s convention.)
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringError};
    /// use ndarray::array;
    ///
    /// let (mut a, mut b) = (Centering::<f64>::new(), Centering::new());
    /// a.fit(&array![[1.0], [2.0]])?;
    /// b.fit(&array![[6.0]])?;
    /// a.merge(&b)?; // a statement: `a` can be read right after
    /// assert_eq!(a.try_mean()?[0], 3.0);
    /// assert_eq!(a.n_samples_seen(), 3);
    ///
    /// let mut wide = Centering::<f64>::new();
    /// wide.fit(&array![[1.0, 2.0]])?;
    /// let err = a.merge(&wide).unwrap_err(); // D = 1 against D = 2
    /// assert!(matches!(err, CenteringError::IncompatibleMerge { what: "number of features", .. }));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn merge(&mut self, other: &Self) -> Result<&mut Self> {
        check_same_params(&self.params, &other.params)?;
        let Some(theirs) = &other.fitted else {
            return Ok(self);
        };
        let Some(ours) = &self.fitted else {
            self.fitted = Some(theirs.clone());
            return Ok(self);
        };
        self.fitted = Some(ours.merge(theirs)?);
        Ok(self)
    }

    /// The estimate of data-parallel replicas that ran in lock step — each
    /// fed its own shard of every global batch, as a layer with
    /// `aggregation=MEAN` is:
    ///
    /// - moving averages: the mean of the replicas' moving means, which —
    ///   the moving average being linear in the batch means — is the moving
    ///   average of the averaged batch means. Every replica must have taken
    ///   the same steps (per feature too) with the same parameters;
    /// - cumulative: the same as [`merge`](Self::merge)ing them, which
    ///   weights each shard by its counts. That is more correct than
    ///   averaging means when shards differ in size (the average of shard
    ///   means is not the mean of the union: the class of bug behind
    ///   miscounted means in synchronised batch norms).
    ///
    /// Samples seen add up; batches are the common count. The result has
    /// the first replica's parameters.
    ///
    /// # Errors
    ///
    /// [`CenteringError::NoReplicas`] for an empty slice,
    /// [`CenteringError::IncompatibleMerge`] for replicas with another mode,
    /// momentum, start, NaN policy, number of features or step count, and
    /// the errors of [`merge`](Self::merge).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::Centering;
    /// use ndarray::array;
    ///
    /// // Two replicas, each fed half of every global batch.
    /// let mut a = Centering::<f64>::builder().keras(0.5).build()?;
    /// let mut b = a.clone();
    /// a.partial_fit(&array![[1.0], [3.0]])?; // shard mean 2
    /// b.partial_fit(&array![[6.0], [6.0]])?; // shard mean 6
    /// let avg = Centering::average(&[a, b])?;
    /// assert_eq!(avg.mean().unwrap()[0], 0.5 * 4.0); // zero start: (1 − β)·mean(2, 6)
    /// assert_eq!(avg.n_batches(), 1);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn average(replicas: &[Self]) -> Result<Self> {
        let Some(first) = replicas.first() else {
            return Err(CenteringError::NoReplicas);
        };
        for r in &replicas[1..] {
            check_same_params(&first.params, &r.params)?;
        }
        let fitted: Vec<&Fitted<F>> = replicas.iter().filter_map(|r| r.fitted.as_ref()).collect();
        if fitted.is_empty() {
            return Ok(Self::with_params(first.params));
        }
        // An unfitted replica took no step: only the cumulative mode, where
        // it is the identity of merge, can average it with fitted ones.
        if fitted.len() != replicas.len() && first.params.mode() != crate::Mode::Cumulative {
            return Err(CenteringError::IncompatibleMerge {
                what: "step count (replicas must run in lock step)",
                this: "fitted".into(),
                other: "unfitted".into(),
            });
        }
        let mut c = Self::with_params(first.params);
        c.fitted = Some(Fitted::average(&fitted)?);
        Ok(c)
    }

    /// `fit`'s rule: a fresh estimator that learned nothing from `x` (of
    /// this shape) is [`CenteringError::EmptyFit`].
    fn require_fitted(&self, shape: &[usize]) -> Result<()> {
        if self.is_fitted() {
            return Ok(());
        }
        let samples = shape.split_last().map_or(0, |(_, s)| s.iter().product());
        Err(CenteringError::EmptyFit { samples })
    }

    /// Checks `x`'s shape against the state: `(d, n)`.
    fn check_shape(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let (d, n) = crate::summary::batch_shape(shape)?;
        if let Some(expected) = self.n_features()
            && expected != d
        {
            return Err(CenteringError::FeatureMismatch { expected, found: d });
        }
        Ok((d, n))
    }

    fn checked_mean(&self, shape: &[usize]) -> Result<&[F]> {
        self.check_shape(shape)?;
        Ok(self
            .fitted
            .as_ref()
            .ok_or(CenteringError::NotFitted)?
            .mean(&self.params))
    }

    fn apply_new<S, D>(&self, x: &ArrayBase<S, D>, add: bool) -> Result<Array<F, D>>
    where
        S: Data<Elem = F>,
        D: Dimension,
    {
        let mean = self.checked_mean(x.shape())?;
        let mut out = alloc_like(x)?;
        kernels::apply_input(
            x.view().into_dyn(),
            out.view_mut().into_dyn(),
            mean,
            add,
            Stores::Cached,
        );
        Ok(out)
    }

    fn apply_into<S, D, SO>(&self, x: &ArrayBase<S, D>, out: &mut ArrayBase<SO, D>, add: bool) -> Result<()>
    where
        S: Data<Elem = F>,
        SO: DataMut<Elem = F>,
        D: Dimension,
    {
        let mean = self.checked_mean(x.shape())?;
        if out.shape() != x.shape() {
            return Err(CenteringError::OutputShape {
                expected: x.shape().to_vec(),
                found: out.shape().to_vec(),
            });
        }
        let stores = Stores::into_buffer(out.len() * size_of::<F>());
        kernels::apply_input(x.view().into_dyn(), out.view_mut().into_dyn(), mean, add, stores);
        Ok(())
    }

    /// Folds a batch in, all or nothing. Returns the batch's own mean when
    /// it had samples (`None` for a no-op).
    fn fold<T: Input>(
        &mut self,
        x: &ArrayViewD<'_, T>,
        w: Option<&ArrayViewD<'_, F>>,
        want_mean: bool,
    ) -> Result<Option<Vec<F>>> {
        let (d, n) = self.check_shape(x.shape())?;
        if T::EXACT && n == 1 && w.is_none() && !want_mean {
            // One sample: its values are its sums (`0 + x` has no error) and
            // its means, so they are added to the state (or stepped into a
            // moving average) as they are, with no batch sums of `D` pairs
            // and weights (36 bytes per feature, allocated and merged per
            // call: most of a 10⁷-feature call's time before).
            // `+ 0.0` under `Ignore`: the general path's `0 + x` there turns
            // a `-0` into `+0` (the fast kernels under `Reject` keep it).
            let zero = if self.params.nan_policy() == crate::NanPolicy::Ignore {
                0.0
            } else {
                -0.0
            };
            let widen = move |v: &T| v.widen() + zero;
            let folded = match x.as_slice() {
                // Read where they lie: twice (a check, then the fold), no copy.
                Some(s) => self.fold_sample(d, s.iter().map(widen)),
                None => {
                    let values: Vec<f64> = x.iter().map(widen).collect();
                    self.fold_sample(d, values.into_iter())
                }
            };
            if let Some(folded) = folded {
                return folded.map(|()| None);
            }
        }
        match crate::summary::reduce_batch(x, w, self.params.nan_policy())? {
            None => Ok(None),
            Some(batch) => self.fold_sums(d, n as u64, batch, want_mean),
        }
    }

    /// Folds one sample (its `d` values, widened) into the estimate, or
    /// `None` when a value is missing or not finite (the general path then
    /// skips or reports it).
    fn fold_sample(&mut self, d: usize, values: impl Iterator<Item = f64> + Clone) -> Option<Result<()>> {
        if !values.clone().all(f64::is_finite) {
            return None;
        }
        Some(match &mut self.fitted {
            Some(f) => f.fold_sample(values, &self.params),
            None => Fitted::first_sample(self.params.mode(), d, values, &self.params).map(|f| {
                self.fitted = Some(f);
            }),
        })
    }

    /// Folds the sums of one batch of `n ≥ 1` samples and `d` features into
    /// the estimate, all or nothing: the one way every batch — an array, a
    /// [`BatchSummary`](crate::BatchSummary) — enters the state. Returns the
    /// batch's own mean.
    ///
    /// The batch's mean is computed only where it is needed: by the moving
    /// averages, and when `want_mean` (batch centering) asks for it.
    pub(crate) fn fold_sums(&mut self, d: usize, n: u64, batch: Sums, want_mean: bool) -> Result<Option<Vec<F>>> {
        if batch.is_empty() {
            // Zero total weight, or every value missing: nothing to learn.
            return Ok(want_mean.then(|| batch.means()));
        }
        let moving = self.params.mode() != crate::Mode::Cumulative;
        let batch_mean: Option<Vec<F>> = (moving || want_mean).then(|| batch.means());
        match &mut self.fitted {
            // All or nothing, in place (no copy of a wide state).
            Some(f) => f.fold_in_place(&batch, batch_mean.as_deref(), n, &self.params)?,
            None => {
                self.fitted = Some(Fitted::first(
                    self.params.mode(),
                    d,
                    batch,
                    batch_mean.as_deref(),
                    n,
                    &self.params,
                )?)
            }
        }
        Ok(batch_mean)
    }
}

/// A zeroed array shaped like `x`, with `x`'s memory order when `x` is
/// contiguous with non-negative strides (so that both are walked in one
/// linear pass), C order otherwise.
///
/// # Errors
///
/// [`CenteringError::Allocation`] when the buffer cannot be had (a broadcast
/// view can be far larger than the memory behind it).
fn alloc_like<F: Element, S: Data, D: Dimension>(x: &ArrayBase<S, D>) -> Result<Array<F, D>> {
    let buf = kernels::alloc::zeroed(x.len())?;
    let same = !x.is_standard_layout()
        && !x.is_empty()
        && x.as_slice_memory_order().is_some()
        && x.strides().iter().all(|&s| s >= 0);
    let shape: StrideShape<D> = if same {
        let mut strides = x.raw_dim();
        for (t, &s) in strides.slice_mut().iter_mut().zip(x.strides()) {
            *t = s.unsigned_abs();
        }
        x.raw_dim().strides(strides)
    } else {
        x.raw_dim().into()
    };
    // `buf` has exactly `x.len()` elements, and the strides are those of a
    // contiguous, non-negative view of the same shape (or C order): ndarray
    // accepts both, so the error arm is unreachable; it is still an error
    // rather than a panic.
    Array::from_shape_vec(shape, buf).map_err(|_| CenteringError::OutputShape {
        expected: x.shape().to_vec(),
        found: vec![x.len()],
    })
}

/// Whether two estimators' states can combine: the same mode (momentum and
/// start included) and NaN policy.
fn check_same_params(a: &ValidParams, b: &ValidParams) -> Result<()> {
    if a.mode() != b.mode() {
        return Err(CenteringError::IncompatibleMerge {
            what: "mode",
            this: a.mode().to_string(),
            other: b.mode().to_string(),
        });
    }
    if a.nan_policy() != b.nan_policy() {
        return Err(CenteringError::IncompatibleMerge {
            what: "NaN policy",
            this: format!("{:?}", a.nan_policy()),
            other: format!("{:?}", b.nan_policy()),
        });
    }
    Ok(())
}
