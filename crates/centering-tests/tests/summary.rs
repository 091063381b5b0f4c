//! The integration seam: batch summaries from arrays and from per-feature
//! columns with validity bitmaps, folded into estimators, against fitting
//! the same data as an array — bit for bit.

use centering::{BatchSummary, Centering, CenteringError, CenteringParams, EmaStart, NanPolicy, Validity};
use ndarray::{Array2, ShapeBuilder, array};
use proptest::prelude::*;

/// A column-major copy of `x` (Fortran order), the layout columns match.
fn fortran(x: &Array2<f64>) -> Array2<f64> {
    let mut f = Array2::zeros(x.raw_dim().f());
    f.assign(x);
    f
}

/// Arrow's validity bitmap of `valid` (LSB first), at a bit offset.
fn bitmap(valid: &[bool], offset: usize) -> Vec<u8> {
    let mut bits = vec![0u8; (valid.len() + offset).div_ceil(8)];
    for (i, &v) in valid.iter().enumerate() {
        if v {
            bits[(i + offset) / 8] |= 1 << ((i + offset) % 8);
        }
    }
    bits
}

fn params_all() -> Vec<CenteringParams> {
    vec![
        CenteringParams::new(),
        CenteringParams::new().batch_average(),
        CenteringParams::new().moving_average(0.9).start(EmaStart::Zero),
        CenteringParams::new().moving_average(0.7).start(EmaStart::Debiased),
    ]
}

fn bits_of(c: &Centering<f64>) -> Option<Vec<u64>> {
    c.mean().map(|m| m.iter().map(|v| v.to_bits()).collect())
}

/// Columns with nulls under Ignore (every third column without a bitmap),
/// large enough for many leaves of the columns kernel (several leaves per
/// node the pool does not split) and for the parallel tree, as the array
/// with NaN at the nulls: the same summary, bit for bit; and without any
/// bitmap (the `f64` strips, eight columns at a time), as the array.
#[test]
fn columns_with_nulls_across_many_leaves_are_the_arrays_bits() {
    let (n, d) = (70_001, 11);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let x = Array2::from_shape_fn((n, d), |(_, j)| 1e6 * j as f64 + next() - 0.5);
    let valid: Vec<Vec<bool>> = (0..d)
        .map(|j| (0..n).map(|_| j % 3 == 0 || next() >= 0.1).collect())
        .collect();
    let cols: Vec<Vec<f64>> = (0..d).map(|j| x.column(j).to_vec()).collect();
    let col_refs: Vec<&[f64]> = cols.iter().map(|c| &c[..]).collect();
    let maps: Vec<Vec<u8>> = valid.iter().map(|v| bitmap(v, 5)).collect();
    let validity: Vec<Option<Validity<'_>>> = maps
        .iter()
        .enumerate()
        .map(|(j, m)| (j % 3 != 0).then(|| Validity::new(m, 5)))
        .collect();
    let with_nan = Array2::from_shape_fn((n, d), |(i, j)| if valid[j][i] { x[[i, j]] } else { f64::NAN });
    let s = BatchSummary::from_columns(&col_refs, &validity, NanPolicy::Ignore).unwrap();
    assert_eq!(s, BatchSummary::from_array(&with_nan, NanPolicy::Ignore).unwrap());
    assert_eq!(
        s,
        BatchSummary::from_array(&fortran(&with_nan), NanPolicy::Ignore).unwrap()
    );
    // Without any bitmap: every column through the strips.
    let s = BatchSummary::from_columns(&col_refs, &[], NanPolicy::Ignore).unwrap();
    assert_eq!(s, BatchSummary::from_array(&x, NanPolicy::Ignore).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Columns with nulls under Ignore = the array with NaN at the nulls,
    /// in C and Fortran order; without nulls under Reject = the Fortran
    /// array. Several batches, every mode; sizes across the leaf size.
    #[test]
    fn columns_fold_like_the_array(
        n in prop_oneof![0usize..40, 30_000usize..40_000],
        d in 1usize..5,
        batches in 1usize..3,
        seed in any::<u64>(),
        offset in 0usize..9,
        null_rate in prop_oneof![Just(0.0), 0.0f64..0.5],
    ) {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for params in params_all() {
            let mut by_cols_ignore: Centering<f64> = params.nan_policy(NanPolicy::Ignore).build().unwrap();
            let mut by_rows_ignore_c: Centering<f64> = params.nan_policy(NanPolicy::Ignore).build().unwrap();
            let mut by_rows_ignore_f: Centering<f64> = params.nan_policy(NanPolicy::Ignore).build().unwrap();
            let mut by_cols_reject: Centering<f64> = params.build().unwrap();
            let mut by_rows_reject_f: Centering<f64> = params.build().unwrap();
            for _ in 0..batches {
                let x = Array2::from_shape_fn((n, d), |(_, j)| 1e6 * j as f64 + next() - 0.5);
                let valid: Vec<Vec<bool>> = (0..d).map(|_| (0..n).map(|_| next() >= null_rate).collect()).collect();
                let cols: Vec<Vec<f64>> = (0..d).map(|j| x.column(j).to_vec()).collect();
                let col_refs: Vec<&[f64]> = cols.iter().map(|c| &c[..]).collect();
                let maps: Vec<Vec<u8>> = valid.iter().map(|v| bitmap(v, offset)).collect();
                let validity: Vec<Option<Validity<'_>>> = maps.iter().map(|m| Some(Validity::new(m, offset))).collect();
                let with_nan = Array2::from_shape_fn((n, d), |(i, j)| if valid[j][i] { x[[i, j]] } else { f64::NAN });

                let s = BatchSummary::from_columns(&col_refs, &validity, NanPolicy::Ignore).unwrap();
                prop_assert_eq!(&s, &BatchSummary::from_array(&with_nan, NanPolicy::Ignore).unwrap());
                by_cols_ignore.partial_fit_summary(&s).unwrap();
                by_rows_ignore_c.partial_fit(&with_nan).unwrap();
                by_rows_ignore_f.partial_fit(&fortran(&with_nan)).unwrap();

                let s = BatchSummary::from_columns(&col_refs, &[], NanPolicy::Reject).unwrap();
                by_cols_reject.partial_fit_summary(&s).unwrap();
                by_rows_reject_f.partial_fit(&fortran(&x)).unwrap();
            }
            prop_assert_eq!(&by_cols_ignore, &by_rows_ignore_c, "{:?}", params);
            prop_assert_eq!(&by_cols_ignore, &by_rows_ignore_f, "{:?}", params);
            prop_assert_eq!(bits_of(&by_cols_ignore), bits_of(&by_rows_ignore_c));
            prop_assert_eq!(&by_cols_reject, &by_rows_reject_f, "{:?}", params);
            prop_assert_eq!(bits_of(&by_cols_reject), bits_of(&by_rows_reject_f));
        }
    }

    /// A batch cut into chunks of rows and merged is one batch: the same
    /// count, sums within rounding (the chunks' sums are added pairwise).
    #[test]
    fn chunks_of_one_batch_merge(n in 1usize..200, cut in 0usize..200, d in 1usize..4) {
        let cut = cut.min(n);
        let x = Array2::from_shape_fn((n, d), |(i, j)| (i * 7 + j * 3) as f64 % 11.0);
        let mut s = BatchSummary::from_array(&x.slice(ndarray::s![..cut, ..]), NanPolicy::Reject).unwrap();
        s.merge(&BatchSummary::from_array(&x.slice(ndarray::s![cut.., ..]), NanPolicy::Reject).unwrap()).unwrap();
        let whole = BatchSummary::from_array(&x, NanPolicy::Reject).unwrap();
        prop_assert_eq!(s.n_samples(), whole.n_samples());
        prop_assert_eq!(s.counts(), whole.counts());
        // Small integers: every sum is exact, so the means agree exactly.
        prop_assert_eq!(s.mean::<f64>(), whole.mean::<f64>());
        // One step for a moving average, whatever the chunks.
        let mut c: Centering<f64> = CenteringParams::new().moving_average(0.5).build().unwrap();
        c.partial_fit_summary(&s).unwrap();
        prop_assert_eq!(c.n_batches(), 1);
    }
}

#[test]
fn f32_columns_fold_like_the_fortran_array() {
    let x = Array2::from_shape_fn((50_000, 3), |(i, j)| 1e4 * j as f32 + (i % 97) as f32 * 0.01);
    let cols: Vec<Vec<f32>> = (0..3).map(|j| x.column(j).to_vec()).collect();
    let refs: Vec<&[f32]> = cols.iter().map(|c| &c[..]).collect();
    let mut a = Centering::<f32>::new();
    a.partial_fit_summary(&BatchSummary::from_columns(&refs, &[], NanPolicy::Reject).unwrap())
        .unwrap();
    let mut f = Array2::zeros(x.raw_dim().f());
    f.assign(&x);
    let mut b = Centering::<f32>::new();
    b.partial_fit(&f).unwrap();
    assert_eq!(a, b);
}

#[test]
fn column_errors_name_what_is_wrong() {
    let (a, b, short) = ([1.0, 2.0, 3.0], [4.0, f64::INFINITY, 6.0], [1.0, 2.0]);
    assert_eq!(
        BatchSummary::from_columns::<f64>(&[], &[], NanPolicy::Reject).unwrap_err(),
        CenteringError::NoFeatures
    );
    let err = BatchSummary::from_columns(&[&a[..], &short[..]], &[], NanPolicy::Reject).unwrap_err();
    assert_eq!(
        err,
        CenteringError::ColumnLength {
            feature: 1,
            expected: 3,
            found: 2
        }
    );
    assert!(err.to_string().contains("column 1"), "{err}");
    // A bitmap too short for its column.
    let bits = [0u8];
    let err = BatchSummary::from_columns(&[&a[..]], &[Some(Validity::new(&bits, 6))], NanPolicy::Ignore).unwrap_err();
    assert!(matches!(err, CenteringError::ColumnLength { found: 2, .. }), "{err}");
    // One entry per column or none.
    let err = BatchSummary::from_columns(&[&a[..], &a[..]], &[None], NanPolicy::Ignore).unwrap_err();
    assert!(matches!(err, CenteringError::ColumnLength { .. }), "{err}");
    // ±inf is rejected in both policies, at [row, feature].
    for policy in [NanPolicy::Reject, NanPolicy::Ignore] {
        let err = BatchSummary::from_columns(&[&a[..], &b[..]], &[], policy).unwrap_err();
        assert!(
            matches!(err, CenteringError::NonFinite { ref index, .. } if index == &vec![1, 1]),
            "{err}"
        );
    }
    // Nulls under Reject: the first in row-major order.
    let (v0, v1) = (bitmap(&[true, true, false], 0), bitmap(&[true, false, true], 0));
    let err = BatchSummary::from_columns(
        &[&a[..], &a[..]],
        &[Some(Validity::new(&v0, 0)), Some(Validity::new(&v1, 0))],
        NanPolicy::Reject,
    )
    .unwrap_err();
    assert_eq!(err, CenteringError::NullValue { index: vec![1, 1] });
    assert!(err.to_string().contains("Ignore"), "{err}");
}

#[test]
fn folding_checks_the_estimator() {
    let s = BatchSummary::from_array(&array![[1.0, 2.0]], NanPolicy::Reject).unwrap();
    let mut ignore: Centering<f64> = CenteringParams::new().nan_policy(NanPolicy::Ignore).build().unwrap();
    assert!(matches!(
        ignore.partial_fit_summary(&s),
        Err(CenteringError::IncompatibleMerge { what: "NaN policy", .. })
    ));
    let mut c = Centering::<f64>::new();
    c.fit(&array![[1.0, 2.0, 3.0]]).unwrap();
    let before = c.clone();
    assert_eq!(
        c.partial_fit_summary(&s).unwrap_err(),
        CenteringError::FeatureMismatch { expected: 3, found: 2 }
    );
    assert_eq!(c, before);
    // An empty summary is a no-op, as an empty batch is.
    let empty = BatchSummary::from_array(&Array2::<f64>::zeros((0, 3)), NanPolicy::Reject).unwrap();
    assert!(empty.is_empty());
    c.partial_fit_summary(&empty).unwrap();
    assert_eq!(c, before);
    // All-null columns: nothing observed; the batch is no step.
    let a = [1.0, 2.0];
    let none = [0u8];
    let s = BatchSummary::from_columns(&[&a[..]], &[Some(Validity::new(&none, 0))], NanPolicy::Ignore).unwrap();
    assert!(s.is_empty());
    assert!(s.mean::<f64>()[0].is_nan());
    let mut m: Centering<f64> = CenteringParams::new()
        .moving_average(0.9)
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    m.partial_fit_summary(&s).unwrap();
    assert!(!m.is_fitted());
}

/// Sums that overflow are re-summed scaled, in the same tree, by columns
/// and by the array alike: bit for bit, with and without nulls.
#[test]
fn overflowing_columns_rescale_like_the_array() {
    let n = 70_000; // several leaves
    let x = Array2::from_shape_fn((n, 2), |(i, j)| {
        if j == 0 {
            f64::MAX * (0.5 + (i % 7) as f64 / 16.0)
        } else {
            -f64::MAX / (1.0 + (i % 3) as f64)
        }
    });
    let valid: Vec<bool> = (0..n).map(|i| i % 11 != 3).collect();
    let bits = bitmap(&valid, 0);
    let cols: Vec<Vec<f64>> = (0..2).map(|j| x.column(j).to_vec()).collect();
    let refs: Vec<&[f64]> = cols.iter().map(|c| &c[..]).collect();
    // Reject, no nulls: the Fortran array.
    let s = BatchSummary::from_columns(&refs, &[], NanPolicy::Reject).unwrap();
    assert_eq!(s, BatchSummary::from_array(&fortran(&x), NanPolicy::Reject).unwrap());
    assert!(s.mean::<f64>().iter().all(|m| m.is_finite()));
    // Ignore, nulls in column 1: the array with NaN there.
    let with_nan = Array2::from_shape_fn((n, 2), |(i, j)| if j == 1 && !valid[i] { f64::NAN } else { x[[i, j]] });
    let s = BatchSummary::from_columns(&refs, &[None, Some(Validity::new(&bits, 0))], NanPolicy::Ignore).unwrap();
    assert_eq!(s, BatchSummary::from_array(&with_nan, NanPolicy::Ignore).unwrap());
    assert!(s.mean::<f64>().iter().all(|m| m.is_finite()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A batch given by its mean and size folds as that many copies of
    /// the mean's row (a broadcast view): the same mean in every mode, and
    /// the same sample count.
    #[test]
    fn a_mean_and_a_count_fold_like_that_many_rows(
        means in prop::collection::vec(prop::collection::vec(
            prop_oneof![-1e6f64..1e6, Just(f64::MAX), Just(-f64::MAX), Just(1e-300)], 2), 1..5),
        counts in prop::collection::vec(1u64..50, 5),
    ) {
        for p in params_all() {
            let mut from_means = p.build::<f64>().unwrap();
            let mut from_rows = p.build::<f64>().unwrap();
            for (m, &n) in means.iter().zip(&counts) {
                let s = BatchSummary::from_mean(m, n, NanPolicy::Reject).unwrap();
                prop_assert_eq!(s.mean::<f64>().to_vec(), m.clone(), "the summary's own mean");
                from_means.partial_fit_summary(&s).unwrap();
                let row = ndarray::Array1::from(m.clone());
                from_rows.partial_fit(&row.broadcast((n as usize, 2)).unwrap()).unwrap();
            }
            prop_assert_eq!(bits_of(&from_means), bits_of(&from_rows), "{:?}", p);
            prop_assert_eq!(from_means.n_samples_seen(), from_rows.n_samples_seen());
        }
    }
}

#[test]
fn a_mean_and_a_count_check_their_values() {
    let nan = BatchSummary::from_mean(&[1.0f32, f32::NAN], 4, NanPolicy::Reject).unwrap_err();
    assert!(
        matches!(nan, CenteringError::NonFinite { ref index, .. } if index == &[1]),
        "{nan:?}"
    );
    let inf = BatchSummary::from_mean(&[f64::INFINITY], 4, NanPolicy::Ignore).unwrap_err();
    assert!(
        matches!(inf, CenteringError::NonFinite { ref index, .. } if index == &[0]),
        "{inf:?}"
    );
    assert_eq!(
        BatchSummary::from_mean::<f64>(&[], 4, NanPolicy::Reject),
        Err(CenteringError::NoFeatures)
    );

    // Under Ignore a NaN is a feature with nothing observed.
    let s = BatchSummary::from_mean(&[3.0f64, f64::NAN], 4, NanPolicy::Ignore).unwrap();
    assert_eq!(s.counts(), array![4.0, 0.0]);
    // A count of zero is an empty batch: folding it changes nothing.
    let empty = BatchSummary::from_mean(&[3.0f64], 0, NanPolicy::Reject).unwrap();
    assert!(empty.is_empty());
    let mut c = Centering::<f64>::new();
    c.partial_fit_summary(&empty).unwrap();
    assert_eq!(c, Centering::new());
    // Counts beyond 2⁵³ are kept exactly in the weight.
    let big = BatchSummary::from_mean(&[1.0f64], (1 << 60) + 1, NanPolicy::Reject).unwrap();
    assert_eq!(big.n_samples(), (1 << 60) + 1);
    assert_eq!(big.mean::<f64>()[0], 1.0);
}

/// Integer columns with nulls: the exact mean of the valid values, the same
/// as the array with those rows left out of each feature; without nulls,
/// the Fortran array's summary bit for bit.
#[test]
fn integer_columns_are_summed_exactly() {
    let n = 70_001;
    let a: Vec<i32> = (0..n)
        .map(|i| (i as i32).wrapping_mul(2_654_435) % 1_000_003 - 500_000)
        .collect();
    let b: Vec<u8> = (0..n).map(|i| (i * 7919 % 256) as u8).collect();
    let valid: Vec<bool> = (0..n).map(|i| i % 7 != 3).collect();
    let bits = bitmap(&valid, 0);
    let s = BatchSummary::from_columns(&[&a[..]], &[Some(Validity::new(&bits, 0))], NanPolicy::Ignore).unwrap();
    let (sum, count) = a
        .iter()
        .zip(&valid)
        .filter(|(_, v)| **v)
        .fold((0i128, 0u64), |(s, c), (&x, _)| (s + i128::from(x), c + 1));
    assert_eq!(s.counts()[0], count as f64);
    // Exactly rounded: |sum| < 2⁵³, so `sum / count` in f64 is the nearest
    // f64 to the exact quotient.
    assert_eq!(s.mean::<f64>()[0], sum as f64 / count as f64);

    let s = BatchSummary::from_columns(&[&b[..], &b[..]], &[], NanPolicy::Reject).unwrap();
    let mut x = Array2::<u8>::zeros((n, 2).f());
    for i in 0..n {
        x[[i, 0]] = b[i];
        x[[i, 1]] = b[i];
    }
    assert_eq!(s, BatchSummary::from_array(&x, NanPolicy::Reject).unwrap());
    let exact: u64 = b.iter().map(|&v| u64::from(v)).sum();
    assert_eq!(s.mean::<f64>()[0], exact as f64 / n as f64);
}

#[cfg(feature = "half")]
#[test]
fn half_columns_fold_like_the_fortran_array() {
    use half::f16;
    let n = 40_003;
    let cols: Vec<Vec<f16>> = (0..3)
        .map(|j| {
            (0..n)
                .map(|i| f16::from_f32(100.0 * j as f32 + ((i * 37) % 101) as f32 / 8.0))
                .collect()
        })
        .collect();
    let refs: Vec<&[f16]> = cols.iter().map(Vec::as_slice).collect();
    let s = BatchSummary::from_columns(&refs, &[], NanPolicy::Reject).unwrap();
    let mut x = Array2::from_elem((n, 3).f(), f16::ZERO);
    for (j, c) in cols.iter().enumerate() {
        for (i, &v) in c.iter().enumerate() {
            x[[i, j]] = v;
        }
    }
    assert_eq!(s, BatchSummary::from_array(&x, NanPolicy::Reject).unwrap());
    // With nulls, under Ignore: the array with NaN at the nulls, any layout.
    let valid: Vec<bool> = (0..n).map(|i| i % 5 != 0).collect();
    let bits = bitmap(&valid, 0);
    let v = Some(Validity::new(&bits, 0));
    let s = BatchSummary::from_columns(&refs, &[v, None, v], NanPolicy::Ignore).unwrap();
    let mut y = Array2::from_elem((n, 3), f16::ZERO);
    for (j, c) in cols.iter().enumerate() {
        for (i, &val) in c.iter().enumerate() {
            y[[i, j]] = if j != 1 && !valid[i] { f16::NAN } else { val };
        }
    }
    assert_eq!(s, BatchSummary::from_array(&y, NanPolicy::Ignore).unwrap());
}
