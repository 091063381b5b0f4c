//! `center_fit`'s [`GroupsAccumulator`]: one [`Centering<f64>`] per group,
//! fed through the core's public summary API.
//!
//! DataFusion's per-group `Accumulator` adapter would reach the same
//! states: for each batch it gathers every group's rows (in row order) and
//! calls the group's `update_batch` with them. What it costs on top is the
//! machinery around that — `take` and `slice` of every column into Arrow
//! arrays per group and batch, one `ScalarValue` per group for the partial
//! state and the result, and their conversion back into arrays. Here each
//! batch is reordered once (a stable counting sort of its rows by group),
//! and each group's run of rows is summarised straight from that buffer
//! with [`BatchSummary::from_columns`] and folded with
//! [`Centering::partial_fit_summary`]: the same summary of the same rows in
//! the same order, so the same bits as the adapter and as an in-process
//! `partial_fit` of each group's rows of each batch.
//!
//! The partial phase may switch to skipping aggregation when groups are
//! nearly as many as rows (DataFusion's
//! `skip_partial_aggregation_probe_*` options); then
//! [`convert_to_state`](GroupsAccumulator::convert_to_state) turns each row
//! into the state of a one-row fit, as the adapter does.

use std::mem::size_of;

use centering::{BatchSummary, Centering, Input, NanPolicy, Validity};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray};
use datafusion::arrow::datatypes::{
    ArrowNativeType, ArrowPrimitiveType, DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use crate::{decode_state, encode_states, external, for_each_state, results, summarise};

/// One estimator per group index, and the scratch that reorders a batch.
pub(crate) struct CenterFitGroups {
    /// The unfitted estimator each new group starts from.
    template: Centering<f64>,
    features: usize,
    groups: Vec<Centering<f64>>,
    /// Per group index, its position in `touched` during an update, else
    /// `usize::MAX` (so between calls every entry is `usize::MAX`).
    slot: Vec<usize>,
}

/// Which rows of a batch go to which group: `rows[starts[s]..starts[s + 1]]`
/// are the rows (in their order) of group `touched[s]`.
struct Runs {
    touched: Vec<usize>,
    starts: Vec<usize>,
    rows: Vec<usize>,
}

impl CenterFitGroups {
    pub(crate) fn new(template: Centering<f64>, features: usize) -> Self {
        CenterFitGroups {
            template,
            features,
            groups: Vec::new(),
            slot: Vec::new(),
        }
    }

    fn nan_policy(&self) -> NanPolicy {
        self.template.params().nan_policy()
    }

    fn ensure_groups(&mut self, total_num_groups: usize) {
        if self.groups.len() < total_num_groups {
            self.groups.resize(total_num_groups, self.template.clone());
            self.slot.resize(total_num_groups, usize::MAX);
        }
    }

    /// Checks `group_indices` (and the filter) against a batch of `n` rows.
    fn check_indices(&self, group_indices: &[usize], n: usize, filter: Option<&BooleanArray>) -> Result<()> {
        if group_indices.len() != n {
            return exec_err!("center_fit: {} group indices for {n} rows", group_indices.len());
        }
        if let Some(f) = filter
            && f.len() != n
        {
            return exec_err!("center_fit: a filter of {} rows for {n} rows", f.len());
        }
        if let Some(g) = group_indices.iter().find(|&&g| g >= self.groups.len()) {
            return exec_err!("center_fit: group index {g} of {} groups", self.groups.len());
        }
        Ok(())
    }

    /// The rows of each group present in the batch (those the filter keeps),
    /// groups in order of first appearance, rows in batch order.
    fn runs(&mut self, group_indices: &[usize], filter: Option<&BooleanArray>) -> Runs {
        // A null filter value drops the row, as SQL's FILTER (WHERE …) does.
        let keep = |i: usize| filter.is_none_or(|f| f.is_valid(i) && f.value(i));
        let mut touched = Vec::new();
        let mut counts: Vec<usize> = Vec::new();
        for (i, &g) in group_indices.iter().enumerate() {
            if !keep(i) {
                continue;
            }
            // `check_indices` made every index < groups.len() == slot.len().
            let s = &mut self.slot[g];
            if *s == usize::MAX {
                *s = touched.len();
                touched.push(g);
                counts.push(0);
            }
            counts[*s] += 1;
        }
        let mut starts = Vec::with_capacity(touched.len() + 1);
        let mut total = 0;
        starts.push(0);
        for c in &counts {
            total += c;
            starts.push(total);
        }
        // Stable placement: `next[s]` is where group `s`'s next row goes.
        let mut next = counts;
        next.copy_from_slice(&starts[..touched.len()]);
        let mut rows = vec![0; total];
        for (i, &g) in group_indices.iter().enumerate() {
            if keep(i) {
                let s = self.slot[g];
                rows[next[s]] = i;
                next[s] += 1;
            }
        }
        for &g in &touched {
            self.slot[g] = usize::MAX;
        }
        Runs { touched, starts, rows }
    }

    /// Takes the groups `emit_to` asks for, keeping the others (shifted
    /// down, as DataFusion then numbers them).
    fn take(&mut self, emit_to: EmitTo) -> Vec<Centering<f64>> {
        let emit_to = match emit_to {
            EmitTo::First(n) if n < self.groups.len() => EmitTo::First(n),
            _ => EmitTo::All,
        };
        let taken = emit_to.take_needed(&mut self.groups);
        // Every slot is `usize::MAX` between calls: only the length changes.
        self.slot.truncate(self.groups.len());
        taken
    }
}

/// Folds each group's rows of a batch of columns of one primitive type into
/// its estimator.
fn fold_runs<F, T>(groups: &mut [Centering<f64>], values: &[ArrayRef], runs: &Runs, nan_policy: NanPolicy) -> Result<()>
where
    F: Input + ArrowNativeType,
    T: ArrowPrimitiveType<Native = F>,
{
    let columns: Vec<&PrimitiveArray<T>> = values
        .iter()
        .map(|v| match v.as_primitive_opt::<T>() {
            Some(a) => Ok(a),
            None => exec_err!("center_fit: mixed column types {} and {}", T::DATA_TYPE, v.data_type()),
        })
        .collect::<Result<_>>()?;
    let m = runs.rows.len();
    // The batch reordered by group, column by column: `gathered[j]` holds
    // column j's values in the order of `runs.rows`, and `bits[j]` their
    // validity (where column j has nulls).
    let gathered: Vec<Vec<F>> = columns
        .iter()
        .map(|a| {
            let v = a.values();
            runs.rows.iter().map(|&i| v[i]).collect()
        })
        .collect();
    let bits: Vec<Option<Vec<u8>>> = columns
        .iter()
        .map(|a| {
            a.nulls().filter(|n| n.null_count() > 0).map(|n| {
                let mut b = vec![0u8; m.div_ceil(8)];
                for (k, &i) in runs.rows.iter().enumerate() {
                    if n.is_valid(i) {
                        b[k / 8] |= 1 << (k % 8);
                    }
                }
                b
            })
        })
        .collect();
    let any_nulls = bits.iter().any(Option::is_some);
    let mut slices: Vec<&[F]> = Vec::with_capacity(columns.len());
    let mut valid: Vec<Option<Validity<'_>>> = Vec::with_capacity(columns.len());
    for (s, &g) in runs.touched.iter().enumerate() {
        let (Some(&start), Some(&end)) = (runs.starts.get(s), runs.starts.get(s + 1)) else {
            return exec_err!("center_fit: internal error: no run for group {g}");
        };
        slices.clear();
        slices.extend(gathered.iter().map(|c| &c[start..end]));
        valid.clear();
        if any_nulls {
            valid.extend(bits.iter().map(|b| b.as_deref().map(|b| Validity::new(b, start))));
        }
        let summary = BatchSummary::from_columns(&slices, &valid, nan_policy).map_err(external)?;
        let Some(c) = groups.get_mut(g) else {
            return exec_err!("center_fit: internal error: group {g} out of range");
        };
        c.partial_fit_summary(&summary).map_err(external)?;
    }
    Ok(())
}

impl GroupsAccumulator for CenterFitGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        if values.len() != self.features {
            return exec_err!("center_fit: {} columns, expected {}", values.len(), self.features);
        }
        let Some(first) = values.first() else {
            return exec_err!("center_fit needs at least one feature column");
        };
        let n = first.len();
        if let Some(v) = values.iter().find(|v| v.len() != n) {
            return exec_err!("center_fit: columns of {} and {n} rows", v.len());
        }
        self.ensure_groups(total_num_groups);
        self.check_indices(group_indices, n, opt_filter)?;
        let runs = self.runs(group_indices, opt_filter);
        let nan_policy = self.nan_policy();
        // One group and every row kept: the columns as they are, no copy
        // (exactly the `Accumulator`'s path).
        if let [g] = runs.touched[..]
            && runs.rows.len() == n
        {
            if let Some(s) = summarise(values, nan_policy)?
                && let Some(c) = self.groups.get_mut(g)
            {
                c.partial_fit_summary(&s).map_err(external)?;
            }
            return Ok(());
        }
        if runs.rows.is_empty() {
            return Ok(());
        }
        let groups = &mut self.groups[..];
        match first.data_type() {
            DataType::Float64 => fold_runs::<f64, Float64Type>(groups, values, &runs, nan_policy),
            DataType::Float32 => fold_runs::<f32, Float32Type>(groups, values, &runs, nan_policy),
            DataType::Float16 => fold_runs::<half::f16, Float16Type>(groups, values, &runs, nan_policy),
            DataType::Int8 => fold_runs::<i8, Int8Type>(groups, values, &runs, nan_policy),
            DataType::Int16 => fold_runs::<i16, Int16Type>(groups, values, &runs, nan_policy),
            DataType::Int32 => fold_runs::<i32, Int32Type>(groups, values, &runs, nan_policy),
            DataType::Int64 => fold_runs::<i64, Int64Type>(groups, values, &runs, nan_policy),
            DataType::UInt8 => fold_runs::<u8, UInt8Type>(groups, values, &runs, nan_policy),
            DataType::UInt16 => fold_runs::<u16, UInt16Type>(groups, values, &runs, nan_policy),
            DataType::UInt32 => fold_runs::<u32, UInt32Type>(groups, values, &runs, nan_policy),
            DataType::UInt64 => fold_runs::<u64, UInt64Type>(groups, values, &runs, nan_policy),
            t => exec_err!("center_fit: unexpected column type {t} after coercion"),
        }
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let taken = self.take(emit_to);
        Ok(std::sync::Arc::new(results(taken.iter())?))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = self.take(emit_to);
        Ok(vec![encode_states(taken.iter())?])
    }

    /// Merges each row's partial state into its group, in row order (the
    /// order the adapter would merge them in, group by group).
    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        let [states] = values else {
            return exec_err!("center_fit: {} partial state columns, expected 1", values.len());
        };
        self.ensure_groups(total_num_groups);
        self.check_indices(group_indices, states.len(), None)?;
        let groups = &mut self.groups;
        for_each_state(states, |i, s| {
            let (Some(s), Some(c)) = (s, group_indices.get(i).and_then(|&g| groups.get_mut(g))) else {
                return Ok(());
            };
            c.merge(&decode_state(s)?).map_err(external)?;
            Ok(())
        })
    }

    /// Each row as its own group: the partial state of a one-row fit (an
    /// unfitted state for a row the filter drops), as DataFusion's adapter
    /// builds it from the `Accumulator`.
    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        if values.len() != self.features {
            return exec_err!("center_fit: {} columns, expected {}", values.len(), self.features);
        }
        let Some(first) = values.first() else {
            return exec_err!("center_fit needs at least one feature column");
        };
        let n = first.len();
        if let Some(f) = opt_filter
            && f.len() != n
        {
            return exec_err!("center_fit: a filter of {} rows for {n} rows", f.len());
        }
        let nan_policy = self.nan_policy();
        let mut states = Vec::with_capacity(n);
        for i in 0..n {
            let mut c = self.template.clone();
            if opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i)) {
                let row: Vec<ArrayRef> = values.iter().map(|v| v.slice(i, 1)).collect();
                if let Some(s) = summarise(&row, nan_policy)? {
                    c.partial_fit_summary(&s).map_err(external)?;
                }
            }
            states.push(c);
        }
        Ok(vec![encode_states(states.iter())?])
    }

    /// An upper bound, O(1): every group counted as fitted (the core keeps
    /// per feature two double-word sums, a scale and the mean).
    fn size(&self) -> usize {
        let per_group = size_of::<Centering<f64>>() + 4 * size_of::<Vec<u8>>() + 48 * self.features;
        self.groups.capacity() * per_group + self.slot.capacity() * size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use centering::{Centering, NanPolicy};
    use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, Int32Array};
    use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

    use super::CenterFitGroups;
    use crate::decode_state;

    fn acc(features: usize) -> CenterFitGroups {
        let c = Centering::<f64>::builder()
            .nan_policy(NanPolicy::Ignore)
            .build()
            .unwrap();
        CenterFitGroups::new(c, features)
    }

    fn col(v: &[Option<f64>]) -> ArrayRef {
        Arc::new(Float64Array::from(v.to_vec()))
    }

    /// The estimators of a `state` output (one column).
    fn states(a: &[ArrayRef]) -> Vec<Centering<f64>> {
        a[0].as_binary::<i64>()
            .iter()
            .map(|s| decode_state(s.unwrap()).unwrap())
            .collect()
    }

    /// The in-process fit of rows `[a, b]` (NaN for null), one batch.
    fn fit(rows: &[[Option<f64>; 2]]) -> Centering<f64> {
        let mut c = Centering::<f64>::builder()
            .nan_policy(NanPolicy::Ignore)
            .build()
            .unwrap();
        if !rows.is_empty() {
            let x = ndarray::Array2::from_shape_fn((rows.len(), 2), |(i, j)| rows[i][j].unwrap_or(f64::NAN));
            c.partial_fit(&x).unwrap();
        }
        c
    }

    #[test]
    fn emit_first_n_takes_those_groups_and_shifts_the_rest() {
        let mut g = acc(2);
        let a = [Some(1.0), Some(2.0), Some(3.0), None, Some(5.0)];
        let b = [Some(10.0), None, Some(30.0), Some(40.0), Some(50.0)];
        g.update_batch(&[col(&a), col(&b)], &[0, 1, 2, 1, 0], None, 3).unwrap();
        let first = states(&g.state(EmitTo::First(2)).unwrap());
        assert_eq!(first.len(), 2);
        assert_eq!(first[0], fit(&[[a[0], b[0]], [a[4], b[4]]]));
        assert_eq!(first[1], fit(&[[a[1], b[1]], [a[3], b[3]]]));
        // Group 2 is now group 0; a new group 1 arrives.
        g.update_batch(&[col(&[Some(7.0)]), col(&[Some(70.0)])], &[1], None, 2)
            .unwrap();
        let rest = g.evaluate(EmitTo::All).unwrap();
        let rest = rest.as_struct();
        assert_eq!(rest.len(), 2);
        let json = rest.column_by_name("state").unwrap().as_string::<i32>();
        let c0: Centering<f64> = serde_json::from_str(json.value(0)).unwrap();
        assert_eq!(c0, fit(&[[a[2], b[2]]]));
        let c1: Centering<f64> = serde_json::from_str(json.value(1)).unwrap();
        assert_eq!(c1, fit(&[[Some(7.0), Some(70.0)]]));
        // Everything emitted: the accumulator is empty again; an oversized
        // First(n) emits what there is.
        assert_eq!(g.evaluate(EmitTo::All).unwrap().len(), 0);
        g.update_batch(&[col(&[Some(1.0)]), col(&[Some(2.0)])], &[0], None, 1)
            .unwrap();
        assert_eq!(g.evaluate(EmitTo::First(5)).unwrap().len(), 1);
    }

    #[test]
    fn the_filter_drops_false_and_null_rows_and_a_group_without_rows_stays_unfitted() {
        let mut g = acc(2);
        let a = [Some(1.0), Some(2.0), Some(3.0), Some(4.0)];
        let filter = BooleanArray::from(vec![Some(true), Some(false), None, Some(true)]);
        g.update_batch(&[col(&a), col(&a)], &[0, 1, 1, 0], Some(&filter), 2)
            .unwrap();
        let s = states(&g.state(EmitTo::All).unwrap());
        assert_eq!(s[0], fit(&[[a[0], a[0]], [a[3], a[3]]]));
        assert!(!s[1].is_fitted());
    }

    #[test]
    fn merge_batch_folds_states_in_row_order_and_equals_one_accumulator() {
        let a = [Some(1.5), Some(-2.0), Some(3.25), Some(8.0)];
        let b = [None, Some(4.0), Some(0.5), Some(1.0)];
        let (mut p, mut q) = (acc(2), acc(2));
        p.update_batch(&[col(&a[..2]), col(&b[..2])], &[0, 1], None, 2).unwrap();
        q.update_batch(&[col(&a[2..]), col(&b[2..])], &[1, 0], None, 2).unwrap();
        let (sp, sq) = (p.state(EmitTo::All).unwrap(), q.state(EmitTo::All).unwrap());
        let mut m = acc(2);
        m.merge_batch(&sp, &[0, 1], 2).unwrap();
        m.merge_batch(&sq, &[0, 1], 2).unwrap();
        let got = states(&m.state(EmitTo::All).unwrap());
        let mut want0 = fit(&[[a[0], b[0]]]);
        want0.merge(&fit(&[[a[3], b[3]]])).unwrap();
        let mut want1 = fit(&[[a[1], b[1]]]);
        want1.merge(&fit(&[[a[2], b[2]]])).unwrap();
        assert_eq!(got, vec![want0, want1]);
    }

    #[test]
    fn convert_to_state_is_one_state_per_row() {
        let g = acc(2);
        let a = [Some(1.0), None, Some(3.0)];
        let filter = BooleanArray::from(vec![true, true, false]);
        let s = states(&g.convert_to_state(&[col(&a), col(&a)], Some(&filter)).unwrap());
        assert_eq!(s, vec![fit(&[[a[0], a[0]]]), fit(&[[a[1], a[1]]]), fit(&[])]);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut g = acc(2);
        let x = col(&[Some(1.0), Some(2.0)]);
        // Wrong column count, lengths, group indices, filter, types.
        assert!(g.update_batch(std::slice::from_ref(&x), &[0, 0], None, 1).is_err());
        assert!(
            g.update_batch(&[x.clone(), col(&[Some(1.0)])], &[0, 0], None, 1)
                .is_err()
        );
        assert!(g.update_batch(&[x.clone(), x.clone()], &[0], None, 1).is_err());
        assert!(g.update_batch(&[x.clone(), x.clone()], &[0, 5], None, 2).is_err());
        let short = BooleanArray::from(vec![true]);
        assert!(
            g.update_batch(&[x.clone(), x.clone()], &[0, 1], Some(&short), 2)
                .is_err()
        );
        let i: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        assert!(g.update_batch(&[x.clone(), i.clone()], &[0, 1], None, 2).is_err());
        assert!(g.update_batch(&[i.clone(), x.clone()], &[0, 1], None, 2).is_err());
        assert!(g.convert_to_state(std::slice::from_ref(&x), None).is_err());
        assert!(g.convert_to_state(&[x.clone(), x.clone()], Some(&short)).is_err());
        // States that are not states, or of another column type.
        let junk: ArrayRef = Arc::new(BinaryArray::from(vec![&b"\x02\xff"[..]]));
        assert!(g.merge_batch(&[junk], &[0], 1).is_err());
        assert!(g.merge_batch(std::slice::from_ref(&x), &[0, 1], 2).is_err());
        assert!(g.merge_batch(&[], &[], 0).is_err());
        // A valid state with bytes after it.
        let mut ok = acc(2);
        ok.update_batch(&[x.clone(), x.clone()], &[0, 0], None, 1).unwrap();
        let s = ok.state(EmitTo::All).unwrap();
        let mut bytes = s[0].as_binary::<i64>().value(0).to_vec();
        bytes.push(0);
        let trailing: ArrayRef = Arc::new(BinaryArray::from(vec![&bytes[..]]));
        assert!(g.merge_batch(&[trailing], &[0], 1).is_err());
        // After all that, a well-formed call still works.
        g.update_batch(&[x.clone(), x], &[0, 1], None, 2).unwrap();
        assert_eq!(g.evaluate(EmitTo::All).unwrap().len(), 2);
    }
}
