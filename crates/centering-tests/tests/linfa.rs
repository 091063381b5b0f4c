//! The linfa integration: `Fit` and `Transformer` on linfa's ndarray 0.16,
//! checked bit for bit against this crate's own ndarray 0.17 results for
//! every layout the bridge handles (C and Fortran order, sliced, reversed,
//! transposed, broadcast, empty).
#![cfg(feature = "linfa")]

use centering::{Centering, CenteringError, CenteringParams, NanPolicy, ValidParams};
use linfa::DatasetBase;
use linfa::traits::{Fit, Transformer};
use ndarray016 as nd16;

#[derive(Clone, Copy, Debug)]
enum Order {
    C,
    Fortran,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cut {
    Whole,
    Sliced,
    ReversedRows,
    ReversedBoth,
    Transposed,
    Broadcast,
    Empty,
}

const CUTS: [Cut; 7] = [
    Cut::Whole,
    Cut::Sliced,
    Cut::ReversedRows,
    Cut::ReversedBoth,
    Cut::Transposed,
    Cut::Broadcast,
    Cut::Empty,
];

fn value(i: usize, j: usize) -> f64 {
    // Values whose sums round, so that a different reduction order would show.
    ((i * 7 + j * 3) % 11) as f64 * 0.1 + 1e3 * j as f64 + 1.0 / (i + 1) as f64
}

/// The same 7×5 array in both ndarray versions, in the same memory order.
fn bases(order: Order) -> (nd16::Array2<f64>, ndarray::Array2<f64>) {
    match order {
        Order::C => (
            nd16::Array2::from_shape_fn((7, 5), |(i, j)| value(i, j)),
            ndarray::Array2::from_shape_fn((7, 5), |(i, j)| value(i, j)),
        ),
        Order::Fortran => (
            nd16::Array2::from_shape_fn(nd16::ShapeBuilder::f((7, 5)), |(i, j)| value(i, j)),
            ndarray::Array2::from_shape_fn(ndarray::ShapeBuilder::f((7, 5)), |(i, j)| value(i, j)),
        ),
    }
}

/// Calls `f` with the view `cut` of `a` (a callback: the broadcast view
/// borrows a temporary).
fn cut16<R>(a: &nd16::Array2<f64>, cut: Cut, f: impl FnOnce(nd16::ArrayView2<'_, f64>) -> R) -> R {
    use nd16::s;
    let row = a.row(2).insert_axis(nd16::Axis(0));
    f(match cut {
        Cut::Whole => a.view(),
        Cut::Sliced => a.slice(s![1..6;2, ..]),
        Cut::ReversedRows => a.slice(s![..;-1, ..]),
        Cut::ReversedBoth => a.slice(s![..;-2, ..;-1]),
        Cut::Transposed => a.t(),
        Cut::Broadcast => row.broadcast((4, 5)).unwrap(),
        Cut::Empty => a.slice(s![3..3, ..]),
    })
}

/// As [`cut16`], in this crate's ndarray.
fn cut17<R>(a: &ndarray::Array2<f64>, cut: Cut, f: impl FnOnce(ndarray::ArrayView2<'_, f64>) -> R) -> R {
    use ndarray::s;
    let row = a.row(2).insert_axis(ndarray::Axis(0));
    f(match cut {
        Cut::Whole => a.view(),
        Cut::Sliced => a.slice(s![1..6;2, ..]),
        Cut::ReversedRows => a.slice(s![..;-1, ..]),
        Cut::ReversedBoth => a.slice(s![..;-2, ..;-1]),
        Cut::Transposed => a.t(),
        Cut::Broadcast => row.broadcast((4, 5)).unwrap(),
        Cut::Empty => a.slice(s![3..3, ..]),
    })
}

fn bits16<F: Copy + Into<f64>>(a: &nd16::ArrayView2<'_, F>) -> (Vec<usize>, Vec<u64>) {
    (a.shape().to_vec(), a.iter().map(|&x| x.into().to_bits()).collect())
}

fn bits17<F: Copy + Into<f64>>(a: &ndarray::ArrayView2<'_, F>) -> (Vec<usize>, Vec<u64>) {
    (a.shape().to_vec(), a.iter().map(|&x| x.into().to_bits()).collect())
}

fn mean_bits(c: &Centering<f64>) -> Vec<u64> {
    c.mean().unwrap().iter().map(|m| m.to_bits()).collect()
}

/// A model fitted on data unrelated to the layouts, so that transform tests
/// do not depend on fit.
fn model() -> Centering<f64> {
    let mut c = Centering::new();
    c.fit(&ndarray::Array2::from_shape_fn((9, 5), |(i, j)| {
        (i as f64).sqrt() + j as f64 * 1e3
    }))
    .unwrap();
    c
}

#[test]
fn fit_matches_the_crates_own_fit_bit_for_bit_for_every_layout() {
    let params = ValidParams::default();
    for order in [Order::C, Order::Fortran] {
        let (a16, a17) = bases(order);
        for cut in CUTS {
            let fitted = cut16(&a16, cut, |v16| params.fit(&DatasetBase::new(v16, ())));
            cut17(&a17, cut, |v17| {
                if v17.is_empty() {
                    let err = fitted.unwrap_err();
                    assert!(matches!(err, CenteringError::Linfa { .. }), "{order:?} {cut:?}: {err}");
                    assert_eq!(err.to_string(), "linfa: not enough samples");
                    return;
                }
                let mut reference = Centering::<f64>::new();
                reference.fit(&v17).unwrap();
                let fitted = fitted.unwrap();
                assert_eq!(mean_bits(&fitted), mean_bits(&reference), "{order:?} {cut:?}");
                assert_eq!(fitted, reference, "{order:?} {cut:?}");
            });
        }
    }
}

#[test]
fn transform_of_views_matches_the_crates_own_transform_bit_for_bit() {
    let model = model();
    for order in [Order::C, Order::Fortran] {
        let (a16, a17) = bases(order);
        for cut in CUTS {
            let ours = cut16(&a16, cut, |v16| Transformer::transform(&model, v16));
            if cut == Cut::Transposed {
                // 7 features, the model has 5.
                assert_eq!(
                    ours.unwrap_err(),
                    CenteringError::FeatureMismatch { expected: 5, found: 7 }
                );
                continue;
            }
            let ours: nd16::Array2<f64> = ours.unwrap();
            let reference = cut17(&a17, cut, |v17| model.transform(&v17).unwrap());
            assert_eq!(bits16(&ours.view()), bits17(&reference.view()), "{order:?} {cut:?}");
            // Same memory order as the crate's own output.
            if !ours.is_empty() {
                assert_eq!(ours.strides(), reference.strides(), "{order:?} {cut:?}");
            }
        }
    }
}

#[test]
fn owned_records_are_centred_in_place_for_every_layout() {
    use nd16::s;
    let model = model();
    for order in [Order::C, Order::Fortran] {
        let (a16, a17) = bases(order);
        // Owned arrays with unusual strides: rows reversed in place (negative
        // strides), sliced in place (an offset into the buffer, strides > 1).
        let owned: Vec<(&str, nd16::Array2<f64>, ndarray::Array2<f64>)> = vec![
            ("whole", a16.clone(), a17.clone()),
            (
                "reversed",
                {
                    let mut a = a16.clone();
                    a.invert_axis(nd16::Axis(0));
                    a.invert_axis(nd16::Axis(1));
                    a
                },
                {
                    let mut a = a17.clone();
                    a.invert_axis(ndarray::Axis(0));
                    a.invert_axis(ndarray::Axis(1));
                    a
                },
            ),
            (
                "sliced",
                {
                    let mut a = a16.clone();
                    a.slice_collapse(s![1..;2, ..]);
                    a
                },
                {
                    let mut a = a17.clone();
                    a.slice_collapse(ndarray::s![1..;2, ..]);
                    a
                },
            ),
            ("empty", nd16::Array2::zeros((0, 5)), ndarray::Array2::zeros((0, 5))),
        ];
        for (kind, x16, mut x17) in owned {
            let ptr = x16.as_ptr();
            let strides = x16.strides().to_vec();
            let ours = Transformer::transform(&model, x16).unwrap();
            model.transform_inplace(&mut x17).unwrap();
            assert_eq!(bits16(&ours.view()), bits17(&x17.view()), "{order:?} {kind}");
            if !ours.is_empty() {
                assert_eq!(ours.as_ptr(), ptr, "{order:?} {kind}: in place");
            }
            assert_eq!(ours.strides(), &strides[..], "{order:?} {kind}");
        }
    }
}

#[test]
fn datasets_keep_targets_weights_and_names() {
    let records = nd16::array![[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]];
    let targets = nd16::array![[1usize, 0], [0, 1], [1, 1]];
    let dataset = DatasetBase::new(records, targets.clone())
        .with_weights(nd16::Array1::from(vec![1.0f32, 1.0, 2.0]))
        .with_feature_names(vec!["x", "y"])
        .with_target_names(vec!["p", "q"]);
    let model = CenteringParams::new().fit(&dataset).unwrap();
    assert_eq!(model.mean().unwrap(), ndarray::array![3.5, 20.0]); // weighted: (1 + 3 + 10) / 4
    let expected = nd16::array![[-2.5, -10.0], [-0.5, 10.0], [1.5, 0.0]];

    // A view of the dataset: a new owned dataset with everything carried over.
    let from_view = Transformer::transform(&model, dataset.view()).unwrap();
    assert_eq!(from_view.records, expected);
    assert_eq!(from_view.targets, targets);
    assert_eq!(from_view.weights().unwrap(), &[1.0f32, 1.0, 2.0]);
    assert_eq!(from_view.feature_names(), ["x", "y"]);
    assert_eq!(from_view.target_names(), ["p", "q"]);

    // The dataset itself: records centred in place, the rest untouched.
    let ptr = dataset.records.as_ptr();
    let owned = Transformer::transform(&model, dataset).unwrap();
    assert_eq!(owned.records, expected);
    assert_eq!(owned.records.as_ptr(), ptr);
    assert_eq!(owned.targets, targets);
    assert_eq!(owned.weights().unwrap(), &[1.0f32, 1.0, 2.0]);
    assert_eq!(owned.feature_names(), ["x", "y"]);
    assert_eq!(owned.target_names(), ["p", "q"]);
}

#[test]
fn dataset_weights_fit_exactly_like_fit_weighted() {
    let (a16, a17) = bases(Order::Fortran);
    let w: Vec<f32> = (0..7).map(|i| (i % 3) as f32 * 0.75).collect();
    let dataset = DatasetBase::new(a16.slice(nd16::s![..;-1, ..]), ()).with_weights(nd16::Array1::from(w.clone()));
    let ours = ValidParams::default().fit(&dataset).unwrap();
    let mut reference = Centering::<f64>::new();
    let w17 = ndarray::Array1::from_iter(w.iter().map(|&x| f64::from(x)));
    reference
        .fit_weighted(&a17.slice(ndarray::s![..;-1, ..]), &w17)
        .unwrap();
    assert_eq!(mean_bits(&ours), mean_bits(&reference));
    assert_eq!(ours, reference);
}

#[test]
fn fit_errors_are_errors() {
    let params = ValidParams::default();
    let x = nd16::array![[1.0, 2.0], [3.0, 4.0]];

    let short = DatasetBase::new(x.view(), ()).with_weights(nd16::Array1::from(vec![1.0f32]));
    assert_eq!(
        params.fit(&short).unwrap_err(),
        CenteringError::WeightShape {
            expected: vec![2],
            per_first_axis: None,
            found: vec![1]
        }
    );
    let negative = DatasetBase::new(x.view(), ()).with_weights(nd16::Array1::from(vec![1.0f32, -1.0]));
    assert!(matches!(
        params.fit(&negative),
        Err(CenteringError::InvalidWeight { .. })
    ));
    let zero = DatasetBase::new(x.view(), ()).with_weights(nd16::Array1::from(vec![0.0f32, 0.0]));
    assert_eq!(
        params.fit(&zero).unwrap_err(),
        CenteringError::Linfa {
            message: "not enough samples".into()
        }
    );

    // A NaN is reported at its index in the input's own axes, reversed or not.
    let mut nan = nd16::Array2::<f64>::zeros((3, 4));
    nan[[0, 1]] = f64::NAN;
    let reversed = nan.slice(nd16::s![..;-1, ..;-1]); // [0, 1] is now at [2, 2]
    let err = params.fit(&DatasetBase::new(reversed, ())).unwrap_err();
    assert!(
        matches!(err, CenteringError::NonFinite { ref index, .. } if index == &[2, 2]),
        "{err}"
    );
    // ... unless NaN is a missing value.
    let lenient = CenteringParams::new().nan_policy(NanPolicy::Ignore);
    let fitted = lenient.fit(&DatasetBase::new(reversed, ())).unwrap();
    assert_eq!(fitted.weight_sums().unwrap(), ndarray::array![3.0, 3.0, 2.0, 3.0]);

    let no_features = DatasetBase::new(nd16::Array2::<f64>::zeros((3, 0)), ());
    assert_eq!(params.fit(&no_features).unwrap_err(), CenteringError::NoFeatures);

    let bad = CenteringParams::new().torch_momentum(-0.1);
    let err = bad.fit(&DatasetBase::new(x.view(), ())).unwrap_err();
    assert_eq!(err, CenteringError::InvalidMomentum { momentum: -0.1 });
}

#[test]
fn transform_errors_are_errors_not_panics() {
    let unfitted = Centering::<f64>::new();
    let x = nd16::array![[1.0, 2.0]];
    assert_eq!(
        Transformer::transform(&unfitted, x.view()).unwrap_err(),
        CenteringError::NotFitted
    );
    assert_eq!(
        Transformer::transform(&unfitted, x.clone()).unwrap_err(),
        CenteringError::NotFitted
    );

    let model = model(); // 5 features
    let mismatch = CenteringError::FeatureMismatch { expected: 5, found: 2 };
    assert_eq!(Transformer::transform(&model, x.view()).unwrap_err(), mismatch);
    assert_eq!(Transformer::transform(&model, x.clone()).unwrap_err(), mismatch);
    let ds = DatasetBase::new(x.clone(), nd16::array![0usize]);
    assert_eq!(Transformer::transform(&model, ds.view()).unwrap_err(), mismatch);
    assert_eq!(Transformer::transform(&model, ds).unwrap_err(), mismatch);
}

#[test]
fn f32_and_moving_average_go_through_the_same_bridge() {
    let x16 = nd16::Array2::from_shape_fn((6, 3), |(i, j)| (i * 3 + j) as f32 * 0.3);
    let x17 = ndarray::Array2::from_shape_fn((6, 3), |(i, j)| (i * 3 + j) as f32 * 0.3);
    let params = CenteringParams::new().moving_average(0.9).check().unwrap();
    let ours = params
        .fit(&DatasetBase::new(x16.slice(nd16::s![..;-1, ..]), ()))
        .unwrap();
    let mut reference = Centering::<f32>::with_params(params);
    reference.fit(&x17.slice(ndarray::s![..;-1, ..])).unwrap();
    assert_eq!(ours, reference);
    let y: nd16::Array2<f32> = Transformer::transform(&ours, x16.t().reversed_axes()).unwrap();
    assert_eq!(bits16(&y.view()), bits17(&reference.transform(&x17).unwrap().view()));
}

/// `transform_dataset` is linfa's `Transformer::transform` in method syntax,
/// for each of the four inputs, with the same results and errors.
#[test]
fn transform_dataset_is_the_trait_in_method_syntax() {
    let model = model(); // 5 features
    let x = nd16::Array2::from_shape_fn((4, 5), |(i, j)| value(i, j));
    let want = Transformer::transform(&model, x.view()).unwrap();

    let from_view: nd16::Array2<f64> = model.transform_dataset(x.slice(nd16::s![.., ..])).unwrap();
    assert_eq!(bits16(&from_view.view()), bits16(&want.view()));
    let ptr = x.as_ptr();
    let owned = model.transform_dataset(x.clone()).unwrap();
    assert_eq!(bits16(&owned.view()), bits16(&want.view()));

    let targets = nd16::Array1::from(vec![0usize, 1, 0, 1]);
    let dataset = DatasetBase::new(x, targets.clone()).with_feature_names(vec!["a", "b", "c", "d", "e"]);
    let from_dataset_view = model.transform_dataset(dataset.view()).unwrap();
    assert_eq!(bits16(&from_dataset_view.records.view()), bits16(&want.view()));
    assert_eq!(from_dataset_view.targets, targets);
    let centred = model.transform_dataset(dataset).unwrap();
    assert_eq!(centred.records.as_ptr(), ptr, "the owned dataset is centred in place");
    assert_eq!(bits16(&centred.records.view()), bits16(&want.view()));
    assert_eq!(centred.feature_names(), ["a", "b", "c", "d", "e"]);

    // The same errors as the trait's.
    let narrow = nd16::Array2::<f64>::zeros((2, 3));
    let mismatch = CenteringError::FeatureMismatch { expected: 5, found: 3 };
    assert_eq!(model.transform_dataset(narrow.view()).unwrap_err(), mismatch);
    assert_eq!(model.transform_dataset(narrow.clone()).unwrap_err(), mismatch);
    let ds = DatasetBase::new(narrow, nd16::Array1::<usize>::zeros(2));
    assert_eq!(model.transform_dataset(ds.view()).unwrap_err(), mismatch);
    assert_eq!(model.transform_dataset(ds).unwrap_err(), mismatch);
    let unfitted = Centering::<f64>::new();
    assert_eq!(
        unfitted.transform_dataset(nd16::array![[1.0]]).unwrap_err(),
        CenteringError::NotFitted
    );
}

#[test]
fn the_error_converts_from_linfa() {
    let e: CenteringError = linfa::Error::Parameters("momentum".into()).into();
    assert_eq!(e.to_string(), "linfa: invalid parameter momentum");
}
