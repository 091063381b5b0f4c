//! The layer's moving mean: a `centering::Centering<f32>` on the host,
//! shared by the module's clones (as burn's `RunningState` is), with one
//! pending step per thread so that data-parallel replicas combine as
//! DESIGN.md "Replicas" says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use burn_core::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor, Param, ParamId,
};
use burn_core::tensor::{DType, Device, Int, Tensor, TensorData};
use centering::{BatchSummary, Centering, Mode};

/// One replica's step, not yet combined with the others'.
#[derive(Debug, Clone)]
struct Pending {
    /// The committed state with this replica's batch folded in.
    stepped: Centering<f32>,
    /// This replica's batch alone (cumulative mode: what `merge` adds).
    own: Centering<f32>,
}

#[derive(Debug)]
struct Shared {
    committed: Centering<f32>,
    pending: HashMap<ThreadId, Pending>,
    /// Batches whose mean was refused (a NaN or an infinity: a diverged
    /// step): the state skipped them, as the core's all-or-nothing update.
    skipped: u64,
}

impl Shared {
    /// Folds every replica's pending step into the committed state: moving
    /// averages take `Centering::average` of the stepped states (lock-step
    /// replicas); the cumulative mode merges each replica's own batch into
    /// the committed state (averaging would weigh shards wrongly, merging
    /// the stepped states would count the committed prefix once per
    /// replica).
    fn sync(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        let next = if pending.len() == 1 {
            pending.into_iter().next().map(|p| p.stepped)
        } else if self.committed.params().mode() == Mode::Cumulative {
            let mut c = self.committed.clone();
            pending
                .iter()
                .try_for_each(|p| c.merge(&p.own).map(|_| ()))
                .ok()
                .map(|()| c)
        } else {
            let stepped: Vec<Centering<f32>> = pending.into_iter().map(|p| p.stepped).collect();
            Centering::average(&stepped).ok()
        };
        match next {
            Some(c) => self.committed = c,
            None => self.skipped += 1,
        }
    }
}

/// The host-side state of a [`MeanCentering`](crate::MeanCentering) layer.
///
/// In burn's records it is one integer tensor of bytes, `state`: the
/// core's versioned JSON (what `centering inspect` reads), padded with
/// spaces to a length fixed by the number of features so that a fresh
/// layer and a trained one have the same record shapes.
#[derive(Debug, Clone)]
pub struct HostState {
    id: ParamId,
    device: Device,
    d: usize,
    shared: Arc<Mutex<Shared>>,
}

/// The record's blob length for `d` features: room for the longest JSON
/// any state of that size serialises to (every number at its longest).
pub(crate) fn capacity(d: usize) -> usize {
    1024 + 320 * d
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic elsewhere while holding the lock leaves a consistent state
    // (every update is all or nothing), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HostState {
    pub(crate) fn new(state: Centering<f32>, d: usize, device: &Device) -> Self {
        Self::with_id(ParamId::new(), state, d, device)
    }

    fn with_id(id: ParamId, state: Centering<f32>, d: usize, device: &Device) -> Self {
        HostState {
            id,
            device: device.clone(),
            d,
            shared: Arc::new(Mutex::new(Shared {
                committed: state,
                pending: HashMap::new(),
                skipped: 0,
            })),
        }
    }

    /// The number of features.
    pub(crate) fn n_features(&self) -> usize {
        self.d
    }

    /// The state with every replica's step combined.
    pub(crate) fn get(&self) -> Centering<f32> {
        let mut s = lock(&self.shared);
        s.sync();
        s.committed.clone()
    }

    /// Replaces the state (every clone sees it).
    pub(crate) fn set(&self, state: Centering<f32>) {
        let mut s = lock(&self.shared);
        s.pending.clear();
        s.committed = state;
    }

    pub(crate) fn skipped(&self) -> u64 {
        lock(&self.shared).skipped
    }

    /// Folds one batch's mean (`n ≥ 1` samples) as this thread's step: a
    /// summary of `n` samples whose mean is `batch_mean` (so the cumulative
    /// mode weighs batches by their sizes and counts samples, not steps). A
    /// thread that already has a step pending starts a new round: the
    /// previous one is combined first (lock step, as `RunningState`).
    pub(crate) fn step(&self, batch_mean: Vec<f32>, n: usize) {
        let mut s = lock(&self.shared);
        let me = std::thread::current().id();
        if s.pending.contains_key(&me) {
            s.sync();
        }
        let nan_policy = s.committed.params().nan_policy();
        let summary = BatchSummary::from_mean(&batch_mean, n as u64, nan_policy);
        let Some(summary) = summary.ok().filter(|s| s.n_features() == self.d) else {
            s.skipped += 1;
            return;
        };
        let fold = |c: &mut Centering<f32>| c.partial_fit_summary(&summary).map(|_| ());
        let mut stepped = s.committed.clone();
        let mut own = Centering::with_params(*s.committed.params());
        match fold(&mut stepped).and_then(|()| fold(&mut own)) {
            Ok(()) => {
                s.pending.insert(me, Pending { stepped, own });
            }
            Err(_) => s.skipped += 1,
        }
    }

    /// A snapshot with its own storage (what `valid` and `train` return,
    /// as `RunningState` does).
    fn snapshot(&self) -> Self {
        Self::with_id(self.id, self.get(), self.d, &self.device)
    }

    fn blob(&self) -> Tensor<1, Int> {
        let mut bytes = serde_json::to_vec(&self.get()).unwrap_or_default();
        let cap = capacity(self.d);
        if bytes.len() < cap {
            bytes.resize(cap, b' ');
        }
        let n = bytes.len();
        Tensor::from_data(TensorData::new(bytes, [n]), (&self.device, DType::U8))
    }

    fn load_blob(&self, t: Tensor<1, Int>) {
        let Ok(data) = t.try_into_data() else { return };
        let bytes: Option<Vec<u8>> = data.iter::<i64>().map(|b| u8::try_from(b).ok()).collect();
        if let Some(Ok(c)) = bytes.map(|b| serde_json::from_slice::<Centering<f32>>(&b))
            && c.n_features().is_none_or(|d| d == self.d)
        {
            self.set(c);
        } else {
            // Not a state of this layer: nothing is loaded, and the
            // failure is visible through `MeanCentering::skipped_updates`.
            lock(&self.shared).skipped += 1;
        }
    }
}

impl Module for HostState {
    fn collect_devices(&self, mut devices: Devices) -> Devices {
        if !devices.contains(&self.device) {
            devices.push(self.device.clone());
        }
        devices
    }

    fn fork(mut self, device: &Device) -> Self {
        self.device = device.clone();
        self
    }

    fn to_device(mut self, device: &Device) -> Self {
        self.device = device.clone();
        self
    }

    fn train(self) -> Self {
        self.snapshot()
    }

    fn valid(&self) -> Self {
        self.snapshot()
    }

    fn materialize(self) -> Self {
        self
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visitor.visit_int(&Param::initialized(self.id, self.blob()));
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        let param = mapper.map_int(Param::initialized(self.id, self.blob()));
        let (id, tensor, _) = param.consume();
        let mut out = self;
        out.id = id;
        out.load_blob(tensor);
        out
    }
}

impl ModuleDisplayDefault for HostState {
    fn content(&self, content: Content) -> Option<Content> {
        content.add_formatted(&self.get().to_string()).optional()
    }
}

impl ModuleDisplay for HostState {}
