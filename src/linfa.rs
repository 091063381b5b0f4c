//! [linfa] linfa 0.8's `Fit` and `Transformer` traits, on linfa's own
//! ndarray (0.16), and the zero-copy bridge between ndarray 0.16 and this
//! crate's ndarray 0.17.
//!
//! # The bridge
//!
//! The two ndarray versions are different crates with the same memory
//! model: a pointer to the first logical element, a shape and signed
//! strides in elements. A 0.16 view becomes a 0.17 view over the *same*
//! memory (no element is copied) by handing that triple to 0.17's
//! `from_shape_ptr`, which only accepts non-negative strides: axes with
//! negative strides are inverted first (the pointer moves to the other end
//! and the stride flips sign), and inverted back on the 0.17 side, so the
//! result indexes exactly like the input. Owned results come back by moving
//! their `Vec` into a 0.16 array of the same memory order.
//!
//! # Errors instead of panics
//!
//! linfa's `Transformer::transform` has no error channel of its own, and
//! linfa's scalers panic when the feature count differs from the fitted
//! one. Here the output type of every `Transformer` impl is a
//! [`Result`] (the same shape linfa gives its own
//! `TransformGuard`s), so a feature mismatch or an unfitted estimator is a
//! [`CenteringError`] and nothing panics.

use linfa::ParamGuard;
use linfa::dataset::{AsTargets, DatasetBase, Records};
use linfa::traits::{Fit, Transformer};
use ndarray::ShapeBuilder as _;
use ndarray016 as nd16;

use crate::{Centering, CenteringError, CenteringParams, Element, Result, ValidParams};

/// A 0.16 view as a 0.17 view of the same memory, indexing identically.
pub(crate) fn view_to_017<'a, F>(mut x: nd16::ArrayView2<'a, F>) -> ndarray::ArrayView2<'a, F> {
    let (rows, cols) = x.dim();
    if rows == 0 || cols == 0 {
        // Nothing to point at: an empty view needs no pointer at all.
        // Cannot fail: a shape with no element fits an empty slice.
        #[allow(clippy::expect_used)]
        return ndarray::ArrayView2::from_shape((rows, cols), &[]).expect("an empty shape fits an empty slice");
    }
    let inverted = [x.strides()[0] < 0, x.strides()[1] < 0];
    for (axis, &inv) in inverted.iter().enumerate() {
        if inv {
            x.invert_axis(nd16::Axis(axis));
        }
    }
    let strides = (x.strides()[0] as usize, x.strides()[1] as usize);
    // SAFETY: `x` is a valid 0.16 view borrowed for 'a, so every element it
    // reaches from `as_ptr()` along its shape and strides lies in one live
    // allocation for 'a, is not mutably aliased for 'a, and the span between
    // the lowest and highest address fits in isize (ndarray 0.16's own view
    // invariants, the same list 0.17's `from_shape_ptr` asks for). The view
    // is not empty, so the pointer is not dangling, and it is aligned and
    // non-null. After the inversions above every stride is non-negative,
    // which is `from_shape_ptr`'s last requirement. Zero strides
    // (broadcasting) are allowed for a read-only view.
    let mut v = unsafe { ndarray::ArrayView2::from_shape_ptr((rows, cols).strides(strides), x.as_ptr()) };
    for (axis, &inv) in inverted.iter().enumerate() {
        if inv {
            v.invert_axis(ndarray::Axis(axis));
        }
    }
    v
}

/// A mutable 0.16 view as a mutable 0.17 view of the same memory.
pub(crate) fn view_mut_to_017<'a, F>(mut x: nd16::ArrayViewMut2<'a, F>) -> ndarray::ArrayViewMut2<'a, F> {
    let (rows, cols) = x.dim();
    if rows == 0 || cols == 0 {
        // Cannot fail: a shape with no element fits an empty slice.
        #[allow(clippy::expect_used)]
        return ndarray::ArrayViewMut2::from_shape((rows, cols), &mut []).expect("an empty shape fits an empty slice");
    }
    let inverted = [x.strides()[0] < 0, x.strides()[1] < 0];
    for (axis, &inv) in inverted.iter().enumerate() {
        if inv {
            x.invert_axis(nd16::Axis(axis));
        }
    }
    let strides = (x.strides()[0] as usize, x.strides()[1] as usize);
    // SAFETY: `x` is a valid, non-empty 0.16 mutable view borrowed for 'a and
    // consumed here, so the elements it reaches from `as_mut_ptr()` lie in
    // one live allocation for 'a and nothing else can reach them for 'a (a
    // mutable view never aliases itself: ndarray 0.16 rejects overlapping
    // strides for mutable views, and `as_mut_ptr` on a view does not
    // reallocate). The pointer is non-null and aligned, the address span fits
    // in isize, and after the inversions above every stride is non-negative.
    let mut v = unsafe { ndarray::ArrayViewMut2::from_shape_ptr((rows, cols).strides(strides), x.as_mut_ptr()) };
    for (axis, &inv) in inverted.iter().enumerate() {
        if inv {
            v.invert_axis(ndarray::Axis(axis));
        }
    }
    v
}

/// An owned 0.17 array as an owned 0.16 array: its `Vec` is moved, not
/// copied, when it is contiguous in C or Fortran order from the start of its
/// buffer — always the case for the arrays this crate allocates.
pub(crate) fn array_to_016<F: Copy>(a: ndarray::Array2<F>) -> nd16::Array2<F> {
    let (rows, cols) = a.dim();
    let n = rows * cols;
    let c_order = a.is_standard_layout();
    let f_order = !c_order && a.t().is_standard_layout();
    if !(c_order || f_order) {
        // Not contiguous (never produced by this crate): copy, in C order.
        return nd16::Array2::from_shape_fn((rows, cols), |(i, j)| a[[i, j]]);
    }
    let (vec, offset) = a.into_raw_vec_and_offset();
    let offset = offset.unwrap_or(0);
    let data = if offset == 0 && vec.len() == n {
        vec
    } else {
        // A contiguous array that does not start its buffer (sliced in place):
        // never produced by this crate.
        vec[offset..offset + n].to_vec()
    };
    let shape = if f_order {
        nd16::ShapeBuilder::f((rows, cols))
    } else {
        nd16::ShapeBuilder::into_shape_with_order((rows, cols))
    };
    // Cannot fail: `data` holds exactly rows·cols elements in the order the
    // shape says.
    #[allow(clippy::expect_used)]
    nd16::Array2::from_shape_vec(shape, data).expect("a contiguous buffer of rows·cols elements fits its own shape")
}

/// linfa's error, for `Fit`'s `E: From<linfa::Error>` requirement; also
/// what fitting a dataset without samples returns
/// (`linfa::Error::NotEnoughSamples`, as linfa's scalers do).
impl From<linfa::Error> for CenteringError {
    fn from(e: linfa::Error) -> Self {
        CenteringError::Linfa { message: e.to_string() }
    }
}

/// Fits a new [`Centering`] on a linfa dataset's records (any ndarray 0.16
/// storage: owned, view, shared), without copying them. The targets are
/// ignored. The dataset's sample weights, when it has any, are used as
/// [`Centering::fit_weighted`] would.
///
/// # Errors
///
/// Every error of [`Centering::fit`] / [`Centering::fit_weighted`], and
/// [`CenteringError::Linfa`] (linfa's "not enough samples") when the
/// records have no samples, or the weights sum to zero, so that the
/// result would be unfitted.
///
/// # Examples
///
/// ```
/// use centering::CenteringParams;
/// use linfa::DatasetBase;
/// use linfa::traits::Fit;
/// use ndarray016::{Array1, array};
///
/// let params = CenteringParams::new().check()?;
/// let dataset = DatasetBase::new(array![[1.0, 10.0], [3.0, 30.0]], Array1::<usize>::zeros(2));
/// let model = params.fit(&dataset)?;
/// assert_eq!(model.mean().unwrap().to_vec(), vec![2.0, 20.0]);
///
/// let weighted = dataset.with_weights(Array1::from(vec![3.0f32, 1.0]));
/// assert_eq!(params.fit(&weighted)?.mean().unwrap().to_vec(), vec![1.5, 15.0]);
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl<F, S, T> Fit<nd16::ArrayBase<S, nd16::Ix2>, T, CenteringError> for ValidParams
where
    F: Element,
    S: nd16::Data<Elem = F>,
{
    type Object = Centering<F>;

    fn fit(&self, dataset: &DatasetBase<nd16::ArrayBase<S, nd16::Ix2>, T>) -> Result<Centering<F>> {
        let mut model = Centering::with_params(*self);
        let x = view_to_017(dataset.records.view());
        let fitted = if dataset.weights.is_empty() {
            model.fit(&x).map(|_| ())
        } else {
            // linfa's weights are f32; a weight that does not convert becomes
            // NaN and is reported as an invalid weight.
            let w: ndarray::Array1<F> = dataset
                .weights
                .iter()
                .map(|&w| F::from(w).unwrap_or_else(F::nan))
                .collect();
            model.fit_weighted(&x, &w).map(|_| ())
        };
        match fitted {
            // Nothing to learn: linfa's own word for it.
            Err(CenteringError::EmptyFit { .. }) => Err(linfa::Error::NotEnoughSamples.into()),
            Err(e) => Err(e),
            Ok(()) => Ok(model),
        }
    }
}

/// linfa's checked-parameters pattern: [`CenteringParams`] wraps the
/// [`ValidParams`] it will become, so linfa's blanket `Fit for P: ParamGuard`
/// checks the parameters, then fits as [`ValidParams`] does.
///
/// # Errors
///
/// [`CenteringError::InvalidMomentum`] from [`CenteringParams::check`]; when
/// fitting, then as [`ValidParams`]'s `Fit`.
///
/// # Examples
///
/// ```
/// use centering::{CenteringError, CenteringParams};
/// use linfa::DatasetBase;
/// use linfa::prelude::*;
/// use ndarray016::{Array1, array};
///
/// let dataset = DatasetBase::new(array![[1.0], [3.0]], Array1::<usize>::zeros(2));
/// let model = CenteringParams::new().moving_average(0.5).fit(&dataset)?;
/// assert_eq!(model.mean().unwrap()[0], 2.0); // one batch: its own mean
///
/// let err = CenteringParams::new().moving_average(1.5).fit(&dataset).unwrap_err();
/// assert!(matches!(err, CenteringError::InvalidMomentum { .. }));
/// assert!(ParamGuard::check_ref(&CenteringParams::new().moving_average(0.9)).is_ok());
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl ParamGuard for CenteringParams {
    type Checked = ValidParams;
    type Error = CenteringError;

    fn check_ref(&self) -> Result<&ValidParams> {
        CenteringParams::check_ref(self)
    }

    fn check(self) -> Result<ValidParams> {
        CenteringParams::check(&self)
    }
}

/// Centres owned ndarray 0.16 records in place (no allocation) and returns
/// them.
///
/// [`Centering`]'s inherent `transform` takes precedence in method-call
/// syntax: call this one as [`model.transform_dataset(x)`](Centering::transform_dataset)
/// or `Transformer::transform(&model, x)`.
///
/// # Errors
///
/// As [`Centering::transform_inplace`]: [`CenteringError::NotFitted`],
/// [`CenteringError::NoFeatures`], [`CenteringError::FeatureMismatch`].
/// The input is consumed either way.
///
/// # Examples
///
/// ```
/// use centering::{Centering, CenteringError};
/// use linfa::traits::Transformer;
///
/// let mut model = Centering::<f64>::new();
/// model.fit(&ndarray::array![[1.0, 10.0], [3.0, 30.0]])?; // this crate's ndarray
///
/// let y = Transformer::transform(&model, ndarray016::array![[2.0, 25.0]])?; // linfa's
/// assert_eq!(y, ndarray016::array![[0.0, 5.0]]);
///
/// let err = Transformer::transform(&model, ndarray016::array![[1.0]]).unwrap_err();
/// assert_eq!(err, CenteringError::FeatureMismatch { expected: 2, found: 1 });
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl<F: Element> Transformer<nd16::Array2<F>, Result<nd16::Array2<F>>> for Centering<F> {
    fn transform(&self, mut x: nd16::Array2<F>) -> Result<nd16::Array2<F>> {
        self.transform_inplace(&mut view_mut_to_017(x.view_mut()))?;
        Ok(x)
    }
}

/// Centres an ndarray 0.16 view into a new array (read without copying,
/// one allocation for the result).
///
/// # Errors
///
/// As [`Centering::transform`].
///
/// # Examples
///
/// ```
/// use centering::Centering;
/// use linfa::traits::Transformer;
/// use ndarray016::s;
///
/// let mut model = Centering::<f32>::new();
/// model.fit(&ndarray::array![[1.0f32, 2.0], [3.0, 4.0]])?;
/// let x = ndarray016::array![[2.0f32, 3.0], [4.0, 5.0]];
/// let y = Transformer::transform(&model, x.slice(s![..;-1, ..]))?; // rows reversed
/// assert_eq!(y, ndarray016::array![[2.0, 2.0], [0.0, 0.0]]);
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl<'a, F: Element> Transformer<nd16::ArrayView2<'a, F>, Result<nd16::Array2<F>>> for Centering<F> {
    fn transform(&self, x: nd16::ArrayView2<'a, F>) -> Result<nd16::Array2<F>> {
        Ok(array_to_016(Centering::transform(self, &view_to_017(x))?))
    }
}

/// Centres an owned dataset's records in place; targets, weights, feature
/// and target names are kept as they are.
///
/// # Errors
///
/// As [`Centering::transform_inplace`]. The dataset is consumed either way.
///
/// # Examples
///
/// ```
/// use centering::CenteringParams;
/// use linfa::DatasetBase;
/// use linfa::traits::{Fit, Transformer};
/// use ndarray016::{array, Array1};
///
/// let dataset = DatasetBase::new(array![[1.0, 10.0], [3.0, 30.0]], Array1::from(vec![0usize, 1]))
///     .with_feature_names(vec!["a", "b"]);
/// let model = CenteringParams::new().fit(&dataset)?;
/// let centred = Transformer::transform(&model, dataset)?;
/// assert_eq!(centred.records, array![[-1.0, -10.0], [1.0, 10.0]]);
/// assert_eq!(centred.targets, Array1::from(vec![0usize, 1]));
/// assert_eq!(centred.feature_names(), ["a", "b"]);
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl<F: Element, T> Transformer<DatasetBase<nd16::Array2<F>, T>, Result<DatasetBase<nd16::Array2<F>, T>>>
    for Centering<F>
{
    fn transform(&self, mut dataset: DatasetBase<nd16::Array2<F>, T>) -> Result<DatasetBase<nd16::Array2<F>, T>> {
        self.transform_inplace(&mut view_mut_to_017(dataset.records.view_mut()))?;
        Ok(dataset)
    }
}

/// Centres a dataset view's records into an owned dataset (records read
/// without copying; one allocation for the result); targets, weights,
/// feature and target names are carried over.
///
/// # Errors
///
/// As [`Centering::transform`].
///
/// # Examples
///
/// ```
/// use centering::CenteringParams;
/// use linfa::DatasetBase;
/// use linfa::traits::{Fit, Transformer};
/// use ndarray016::{array, Array1};
///
/// let dataset = DatasetBase::new(array![[1.0, 10.0], [3.0, 30.0]], Array1::from(vec![0usize, 1]));
/// let model = CenteringParams::new().fit(&dataset)?;
/// let centred = Transformer::transform(&model, dataset.view())?;
/// assert_eq!(centred.records, array![[-1.0, -10.0], [1.0, 10.0]]);
/// assert_eq!(centred.targets, dataset.targets);
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl<'a, F: Element, T: AsTargets>
    Transformer<DatasetBase<nd16::ArrayView2<'a, F>, T>, Result<DatasetBase<nd16::Array2<F>, T>>> for Centering<F>
{
    fn transform(&self, dataset: DatasetBase<nd16::ArrayView2<'a, F>, T>) -> Result<DatasetBase<nd16::Array2<F>, T>> {
        let records = array_to_016(Centering::transform(self, &view_to_017(dataset.records.view()))?);
        let feature_names = dataset.feature_names().to_vec();
        let target_names = dataset.target_names().to_vec();
        Ok(DatasetBase::new(records, dataset.targets)
            .with_weights(dataset.weights)
            .with_feature_names(feature_names)
            .with_target_names(target_names))
    }
}

/// linfa's `Transformer` in method-call syntax.
impl<F: Element> Centering<F> {
    /// linfa's [`Transformer::transform`], callable as a method:
    /// `model.transform_dataset(x)?` for any `x` linfa's trait is
    /// implemented for here — an owned or borrowed `DatasetBase` with
    /// ndarray 0.16 records, or an ndarray 0.16 `Array2` or `ArrayView2` —
    /// with the same result type (a `Result` of the same kind of value:
    /// owned inputs are centred in place and returned, views into a new
    /// array). [`Centering`]'s inherent [`transform`](Centering::transform),
    /// for this crate's ndarray 0.17, would otherwise shadow the trait's
    /// method.
    ///
    /// # Errors
    ///
    /// As the `Transformer` impls: [`CenteringError::NotFitted`],
    /// [`CenteringError::FeatureMismatch`]. An owned input is consumed either
    /// way.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringError, CenteringParams};
    /// use linfa::DatasetBase;
    /// use linfa::traits::Fit;
    /// use ndarray016::{Array1, array};
    ///
    /// let dataset = DatasetBase::new(array![[1.0, 10.0], [3.0, 30.0]], Array1::from(vec![0usize, 1]));
    /// let model = CenteringParams::new().fit(&dataset)?;
    ///
    /// let centred = array![[-1.0, -10.0], [1.0, 10.0]];
    /// let from_view = model.transform_dataset(dataset.view())?; // a new dataset
    /// assert_eq!(from_view.records, centred);
    /// let in_place = model.transform_dataset(dataset)?; // the records centred in place
    /// assert_eq!(in_place.records, centred);
    /// assert_eq!(in_place.targets, Array1::from(vec![0usize, 1]));
    ///
    /// let y = model.transform_dataset(array![[2.0, 20.0]])?; // linfa's ndarray, records only
    /// assert_eq!(y, array![[0.0, 0.0]]);
    /// let err = model.transform_dataset(array![[2.0]]).unwrap_err();
    /// assert_eq!(err, CenteringError::FeatureMismatch { expected: 2, found: 1 });
    /// assert_eq!(Centering::<f64>::new().transform_dataset(array![[2.0]]), Err(CenteringError::NotFitted));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn transform_dataset<X, Y>(&self, x: X) -> Y
    where
        X: Records,
        Self: Transformer<X, Y>,
    {
        Transformer::transform(self, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0.16 inputs of every layout: C, Fortran, sliced, reversed, broadcast.
    fn layouts() -> Vec<(&'static str, nd16::Array2<f64>)> {
        let base = nd16::Array2::from_shape_fn((7, 5), |(i, j)| (i * 5 + j) as f64 * 0.37 - 3.0);
        let f = {
            let mut f = nd16::Array2::zeros(nd16::ShapeBuilder::f((7, 5)));
            f.assign(&base);
            f
        };
        vec![("c", base.clone()), ("fortran", f)]
    }

    /// Calls `f` with views of every kind into `a` (the broadcast one borrows
    /// a temporary, hence the callback).
    fn for_views(a: &nd16::Array2<f64>, mut f: impl FnMut(&str, nd16::ArrayView2<'_, f64>)) {
        use nd16::s;
        f("whole", a.view());
        f("sliced", a.slice(s![1..6;2, 1..]));
        f("reversed rows", a.slice(s![..;-1, ..]));
        f("reversed both", a.slice(s![..;-2, ..;-1]));
        f("transposed", a.t());
        let row = a.row(2).insert_axis(nd16::Axis(0));
        f("broadcast row", row.broadcast((4, 5)).unwrap());
        f("empty", a.slice(s![3..3, ..]));
    }

    fn same_bits(a: nd16::ArrayView2<'_, f64>, b: ndarray::ArrayView2<'_, f64>) -> bool {
        a.dim() == b.dim() && a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn view_bridge_indexes_the_same_memory() {
        for (layout, a) in layouts() {
            for_views(&a, |kind, v| {
                let w = view_to_017(v);
                assert!(same_bits(v.view(), w.view()), "{layout} / {kind}");
                if !v.is_empty() {
                    assert_eq!(v.strides(), w.strides(), "{layout} / {kind}");
                    assert_eq!(v.as_ptr(), w.as_ptr(), "{layout} / {kind}: no copy");
                }
            });
        }
    }

    #[test]
    fn view_mut_bridge_writes_through() {
        for (layout, a) in layouts() {
            use nd16::s;
            for kind in ["whole", "sliced", "reversed", "transposed"] {
                let mut a = a.clone();
                let expect = a.mapv(|x| x * 2.0);
                let v = match kind {
                    "whole" => a.view_mut(),
                    "sliced" => a.slice_mut(s![..;1, ..]),
                    "reversed" => a.slice_mut(s![..;-1, ..;-1]),
                    _ => a.view_mut().reversed_axes(),
                };
                let ptr = v.as_ptr();
                let mut w = view_mut_to_017(v);
                assert_eq!(w.as_ptr(), ptr, "{layout} / {kind}: no copy");
                w.mapv_inplace(|x| x * 2.0);
                assert_eq!(a, expect, "{layout} / {kind}");
            }
        }
        let mut empty = nd16::Array2::<f64>::zeros((0, 3));
        assert_eq!(view_mut_to_017(empty.view_mut()).dim(), (0, 3));
    }

    #[test]
    fn array_back_moves_the_buffer() {
        let c = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64);
        let ptr = c.as_ptr();
        let back = array_to_016(c.clone());
        assert!(same_bits(back.view(), c.view()));
        let moved = array_to_016(c);
        assert_eq!(moved.as_ptr(), ptr, "moved, not copied");

        let f = ndarray::Array2::from_shape_fn(ndarray::ShapeBuilder::f((3, 4)), |(i, j)| (i * 4 + j) as f64);
        let ptr = f.as_ptr();
        let back = array_to_016(f.clone());
        assert!(same_bits(back.view(), f.view()));
        assert_eq!(back.strides(), f.strides());
        assert_eq!(array_to_016(f).as_ptr(), ptr, "moved, not copied");

        // The copying fallbacks: a buffer sliced in place, a strided array.
        let mut sliced = ndarray::Array2::from_shape_fn((4, 4), |(i, j)| (i * 4 + j) as f64);
        sliced.slice_collapse(ndarray::s![1.., ..]);
        let back = array_to_016(sliced.clone());
        assert!(same_bits(back.view(), sliced.view()));
        let mut strided = ndarray::Array2::from_shape_fn((4, 4), |(i, j)| (i * 4 + j) as f64);
        strided.slice_collapse(ndarray::s![.., ..;2]);
        let back = array_to_016(strided.clone());
        assert!(same_bits(back.view(), strided.view()));
        assert_eq!(array_to_016(ndarray::Array2::<f64>::zeros((0, 2))).dim(), (0, 2));
    }
}
