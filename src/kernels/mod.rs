//! Reduction (`reduce`: a batch → its per-feature sums) and application
//! (`apply`: `x ∓ mean`) over any layout.
//!
//! # Layouts
//!
//! [`layout::plan`] classifies a view once, without copying:
//!
//! | plan | layouts | kernel |
//! |---|---|---|
//! | `Rows` | C order, NHWC images, one feature, row-sliced views | [`contiguous`]: lanes of `p` accumulators, feature = `i mod d` |
//! | `Columns` | Fortran order, column-sliced Fortran views | [`contiguous`] with `d = 1`, feature by feature |
//! | `Strided` | everything else (steps on the unit-stride axis, broadcast) | [`general`]: one sample at a time |
//!
//! Weighted batches and `NanPolicy::Ignore` take the general path's
//! arithmetic too, vectorised across features where a leaf is contiguous
//! rows or 2-D columns ([`samples`]).
//!
//! # Determinism
//!
//! A batch is cut into leaves by recursive halving of its outermost axis
//! until a leaf holds at most [`LEAF`](tree::LEAF) elements; leaves are reduced into
//! per-feature double-words and merged pairwise in the tree's fixed shape.
//! The tree depends only on the batch's shape and layout — rayon merely runs
//! the two halves of a node on different threads when the node is larger
//! than [`PARALLEL_MIN`](tree::PARALLEL_MIN) — so the result is bit-identical for any thread
//! count, and with the `rayon` feature off.
//!
//! Who runs a node does not change what it computes, which leaves room to
//! schedule for the machine: a call from outside the pool splits its root
//! between the caller and the pool and spins briefly instead of sleeping
//! (see `split_on_caller`), which took W7 — 2 MiB calls — from 0.78–0.81 to
//! 0.82–0.90 of W1's fit (alternating A/B runs); only nodes of `HANDOFF_MIN`
//! elements or more are handed to the pool whole.

//! # Files
//!
//! | file | what |
//! |---|---|
//! | `layout.rs` | the layout taxonomy: a view → a plan, without copying; broadcast axes as multiplicities |
//! | `tree.rs` | scheduling: the fixed halving tree, when halves run in parallel, chunks for linear passes |
//! | `reduce.rs` | a batch → its per-feature sums, on the plan |
//! | `apply.rs` | `x ∓ mean` into fresh or given buffers, or in place |
//! | `contiguous.rs` | the runtime-dispatched SIMD loops (sum lanes, apply patterns) |
//! | `narrow.rs` | inputs narrower than the sums: integer lanes, half-precision widening |
//! | `general.rs` | the always-correct per-sample paths: strides, weights, missing values, rescaled re-sums |
//! | `samples.rs` | the per-sample arithmetic vectorised across features, on rows and columns |
//! | `columns.rs` | columnar sources (one slice per feature, validity bitmaps), bit-identical to the array paths |
//! | `alloc.rs` | fallible, zeroed, huge-page output buffers |

//! Workload names (W1, W3, W7 …) in these modules' comments are the rows of
//! the benchmark table defined in the project's `WORKLOADS.md` and measured
//! by `crates/centering-bench/benches/roofline.rs` (W1: 2M×64 f64, C order;
//! W3: 8192×16384 f64; W7: W1 fed as 4096-row chunks).

// The two modules that need `unsafe`: runtime CPU-feature dispatch and
// same-type slice casts (contiguous, narrow), huge-page advice (alloc).
#[allow(unsafe_code)]
pub(crate) mod alloc;
mod apply;
pub(crate) mod columns;
#[allow(unsafe_code)]
pub(crate) mod contiguous;
pub(crate) mod general;
pub(crate) mod layout;
#[allow(unsafe_code)]
mod narrow;
mod reduce;
#[allow(unsafe_code)]
mod samples;
mod tree;

pub(crate) use apply::{Stores, apply_inplace, apply_input};
pub(crate) use reduce::reduce;
pub(crate) use tree::for_chunks_mut_at;
