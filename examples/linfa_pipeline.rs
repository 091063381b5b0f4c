//! A linfa `DatasetBase` centred with `centering`'s linfa `Fit` and
//! `Transformer`, on linfa's own ndarray (0.16), without copying the records.
//!
//! ```text
//! cargo run --example linfa_pipeline --features linfa
//! ```

use centering::{CenteringError, CenteringParams};
use linfa::DatasetBase;
use linfa::traits::Fit;
use ndarray016::{Array1, Array2, Axis};

fn main() -> Result<(), CenteringError> {
    // 200 samples of 3 sensors with offsets 20, -5 and 1000, and a class label.
    let records = Array2::from_shape_fn((200, 3), |(i, j)| {
        [20.0, -5.0, 1000.0][j] + ((i * 37 + j * 11) % 21) as f64 - 10.0
    });
    let targets = Array1::from_shape_fn(200, |i| i % 2);
    let dataset = DatasetBase::new(records, targets).with_feature_names(vec!["temperature", "pressure", "altitude"]);

    // Fit on the training dataset (the records are read in place)...
    let params = CenteringParams::new().check()?;
    let model = params.fit(&dataset)?;
    println!("learned means: {}", model.mean().expect("fitted"));

    // ...and centre it: the records in place, targets and names kept.
    // `transform_dataset` is linfa's `Transformer::transform` as a method
    // (`Centering`'s inherent `transform` is for ndarray 0.17 arrays).
    let centred = model.transform_dataset(dataset)?;
    let means = centred.records.mean_axis(Axis(0)).expect("non-empty");
    println!("means after centring: {means}");
    assert!(means.iter().all(|m| m.abs() < 1e-12));
    assert_eq!(centred.feature_names(), ["temperature", "pressure", "altitude"]);
    assert_eq!(centred.targets[1], 1);

    // A feature mismatch is an error, never a panic.
    let wrong = DatasetBase::new(Array2::<f64>::zeros((2, 4)), Array1::<usize>::zeros(2));
    match model.transform_dataset(wrong) {
        Err(e) => println!("4 features instead of 3: {e}"),
        Ok(_) => unreachable!("the feature count is checked"),
    }
    Ok(())
}
