//! flowforge objectives under **burn-train** (`SupervisedTraining`, its metrics, checkpointers
//! and execution strategies: one device, several devices, DDP).
//!
//! burn-train trains a module that implements its `TrainStep` / `InferenceStep`. An
//! [`ObjectiveModel`] is that module: a network `N` plus an [`Objective`] (any flowforge loss:
//! CFM with a coupling, DSM / DDPM, EDM, MeanFlow, ELBO) that maps a data batch to a scalar
//! loss. The objective's randomness (source noise, times, couplings) comes from a seeded
//! [`StdRng`] owned by the model, so a run is reproducible from its seed on one device.
//!
//! Errors never panic: a failed objective (shape mismatch, non-finite data, …) or a NaN/∞ loss
//! makes the step's [`ObjectiveOutput`] fail to synchronise, which burn-train reports as the
//! run's `LearningResult::error` and stops training. The loss value is read on burn-train's
//! metric thread, so the check adds no host synchronisation to the training loop.
//!
//! ```ignore
//! let objective = objective_fn(|net: &Mlp, x1: Tensor<2>, rng: &mut StdRng| {
//!     let x0 = standard_normal_like(&x1);
//!     let t = TimeSampling::default().sample(x1.dims()[0], rng, &CondOt::default())?;
//!     RegressionLoss::new(path.clone()).loss(&predicting::<Velocity, _>(net), x0, x1, None, &t, &Condition::none())
//! });
//! let model = ObjectiveModel::new(network, objective, seed);
//! let result = SupervisedTraining::new(dir, train_loader, valid_loader)
//!     .metric_train_numeric(LossMetric::new())
//!     .launch(Learner::new(model, AdamConfig::new().init(), 1e-3));
//! ```

use burn::module::{Module, ModuleDisplay};
use burn::tensor::{ExecutionError, Tensor};
use burn::train::metric::{Adaptor, LossInput};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};
use flowforge_core::Result;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// A training objective: a scalar loss for a network on one data batch.
///
/// Implemented by [`FnObjective`] for closures; implement it for your own types to give them a
/// name (and a `Debug` line in burn-train's model summary).
pub trait Objective<N>: Clone + fmt::Debug + Send + Sync + 'static {
    /// One batch from burn-train's data loader (for example the data tensor `[batch, dim]`, or
    /// data plus labels).
    type Batch: Send + 'static;

    /// The loss on `batch`, a one-element tensor differentiable in `network`'s parameters when
    /// they are tracked (burn-train hands the training step an autodiff module and the
    /// validation step a plain one).
    ///
    /// # Errors
    /// Whatever the objective reports (shape mismatches, non-finite data, invalid times).
    fn loss(&self, network: &N, batch: Self::Batch, rng: &mut StdRng) -> Result<Tensor<1>>;
}

/// An [`Objective`] from a closure `|network, batch, rng| -> Result<loss>`.
pub struct FnObjective<F, B> {
    function: Arc<F>,
    batch: PhantomData<fn(B)>,
}

/// Wrap a closure as an [`Objective`] on batches of type `B`.
pub fn objective_fn<B, F>(function: F) -> FnObjective<F, B> {
    FnObjective { function: Arc::new(function), batch: PhantomData }
}

impl<F, B> Clone for FnObjective<F, B> {
    fn clone(&self) -> Self {
        Self { function: self.function.clone(), batch: PhantomData }
    }
}

impl<F, B> fmt::Debug for FnObjective<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnObjective")
    }
}

impl<N, F, B> Objective<N> for FnObjective<F, B>
where
    F: Fn(&N, B, &mut StdRng) -> Result<Tensor<1>> + Send + Sync + 'static,
    B: Send + 'static,
{
    type Batch = B;

    fn loss(&self, network: &N, batch: B, rng: &mut StdRng) -> Result<Tensor<1>> {
        (self.function)(network, batch, rng)
    }
}

/// The objective's random-number generator, shared by the clones burn-train makes of the model
/// (it forks the module for validation and for every device).
#[derive(Clone)]
pub struct SharedRng(Arc<Mutex<StdRng>>);

impl SharedRng {
    fn seeded(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-draw; the generator state is
        // still a valid state, so keep using it.
        let mut guard = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

impl fmt::Debug for SharedRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedRng")
    }
}

/// A network trained with a flowforge [`Objective`], as a burn-train model: it implements
/// `TrainStep` (loss, backward, gradients) and `InferenceStep` (loss) with [`ObjectiveOutput`]
/// items, so burn-train's `LossMetric` logs the objective.
#[derive(Module, Debug)]
pub struct ObjectiveModel<N, O> {
    /// The network being trained.
    pub network: N,
    #[module(skip)]
    objective: O,
    #[module(skip)]
    rng: SharedRng,
}

impl<N: Module, O: Objective<N>> ObjectiveModel<N, O> {
    /// Train `network` with `objective`, drawing the objective's randomness from `seed`.
    pub fn new(network: N, objective: O, seed: u64) -> Self {
        Self { network, objective, rng: SharedRng::seeded(seed) }
    }

    /// The trained network.
    pub fn into_network(self) -> N {
        self.network
    }

    fn loss(&self, batch: O::Batch) -> Result<Tensor<1>> {
        self.rng.with(|rng| self.objective.loss(&self.network, batch, rng))
    }

    /// A placeholder loss for a failed step, on the network's device.
    fn failed(&self) -> Tensor<1> {
        let device = self.network.devices().into_iter().next().unwrap_or_default();
        Tensor::from_floats([f32::NAN], &device)
    }
}

/// One step's result: the loss, or why the step failed.
pub struct ObjectiveOutput {
    /// The loss (NaN when the step failed).
    pub loss: Tensor<1>,
    /// The objective's error, if it failed.
    pub failure: Option<String>,
}

impl ItemLazy for ObjectiveOutput {
    /// Reads the loss back (on burn-train's metric thread) and fails on an objective error or a
    /// non-finite loss, which stops the run with the reason in `LearningResult::error`.
    fn sync(self) -> std::result::Result<Self, ExecutionError> {
        if let Some(reason) = self.failure {
            return Err(ExecutionError::WithContext { reason: format!("flowforge objective failed: {reason}") });
        }
        let loss = self.loss.without_autodiff();
        let value = loss
            .clone()
            .try_into_scalar::<f64>()
            .map_err(|e| ExecutionError::WithContext { reason: format!("reading the loss: {e:?}") })?;
        if !value.is_finite() {
            return Err(ExecutionError::WithContext { reason: format!("flowforge objective: non-finite loss {value}") });
        }
        Ok(Self { loss, failure: None })
    }
}

impl Adaptor<LossInput> for ObjectiveOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

impl<N: Module + ModuleDisplay + 'static, O: Objective<N>> TrainStep for ObjectiveModel<N, O> {
    type Input = O::Batch;
    type Output = ObjectiveOutput;

    fn step(&self, batch: O::Batch) -> TrainOutput<ObjectiveOutput> {
        match self.loss(batch) {
            Ok(loss) => {
                let gradients = loss.backward();
                TrainOutput::new(self, gradients, ObjectiveOutput { loss, failure: None })
            }
            // No gradients: the optimiser leaves the weights untouched, and the failed item stops
            // the run when burn-train synchronises it.
            Err(error) => TrainOutput {
                grads: burn::optim::GradientsParams::new(),
                item: ObjectiveOutput { loss: self.failed(), failure: Some(error.to_string()) },
            },
        }
    }
}

impl<N: Module + ModuleDisplay + 'static, O: Objective<N>> InferenceStep for ObjectiveModel<N, O> {
    type Input = O::Batch;
    type Output = ObjectiveOutput;

    fn step(&self, batch: O::Batch) -> ObjectiveOutput {
        match self.loss(batch) {
            Ok(loss) => ObjectiveOutput { loss, failure: None },
            Err(error) => ObjectiveOutput { loss: self.failed(), failure: Some(error.to_string()) },
        }
    }
}
