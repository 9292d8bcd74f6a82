//! What to integrate: vector fields, and models bound to the path they were trained on.

use burn::tensor::Tensor;
use core::cell::Cell;
use flowforge_core::tensor::{ensure_finite, ensure_same_shape};
use flowforge_core::{Condition, Error, Model, PredictionKind, PredictionType, Result, Times};
use flowforge_paths::{AffinePath, Schedule};

/// A time-dependent vector field `dx/dt = v(x, t)`: what an ODE solver integrates.
///
/// Implemented by [`PathModel`] (any model, its prediction converted to the velocity of its
/// path — the probability-flow ODE for diffusion models) and by [`FnField`] (a plain closure).
pub trait VectorField<const D: usize> {
    /// `v(x, t)`.
    ///
    /// # Errors
    /// Whatever the field reports: a shape mismatch, a singular conversion, a non-finite output.
    fn velocity(&self, x: Tensor<D>, t: f64) -> Result<Tensor<D>>;

    /// Number of evaluations so far (the NFE).
    fn evaluations(&self) -> usize;

    /// Called by the driver before each step so errors can name it.
    fn begin_step(&self, _step: usize) {}
}

/// A closure `|x, t| v(x, t)` as a [`VectorField`], counting its evaluations.
pub struct FnField<F> {
    f: F,
    count: Cell<usize>,
}

impl<F> FnField<F> {
    /// Wrap `f`.
    pub fn new(f: F) -> Self {
        Self { f, count: Cell::new(0) }
    }
}

impl<F, const D: usize> VectorField<D> for FnField<F>
where
    F: Fn(Tensor<D>, f64) -> Tensor<D>,
{
    fn velocity(&self, x: Tensor<D>, t: f64) -> Result<Tensor<D>> {
        self.count.set(self.count.get() + 1);
        let out = (self.f)(x.clone(), t);
        ensure_same_shape("field output vs x", &x, &out)?;
        Ok(out)
    }

    fn evaluations(&self) -> usize {
        self.count.get()
    }
}

/// A model bound to the affine path it was trained on, with its conditioning.
///
/// This is what diffusion samplers consume: one model call gives an [`Evaluation`] from which
/// the sampler takes whichever quantities it needs (ε̂, x̂₁, u, score), converted through the
/// path. It counts model evaluations and can check every output for NaN/∞ (opt-in, because the
/// check reads the output back to the host).
pub struct PathModel<'a, M, S> {
    model: &'a M,
    path: &'a AffinePath<S>,
    condition: Condition,
    check_finite: bool,
    count: Cell<usize>,
    step: Cell<usize>,
}

impl<'a, M, S: Schedule> PathModel<'a, M, S> {
    /// Bind `model` to `path`, unconditionally.
    pub fn new(model: &'a M, path: &'a AffinePath<S>) -> Self {
        Self {
            model,
            path,
            condition: Condition::none(),
            check_finite: false,
            count: Cell::new(0),
            step: Cell::new(0),
        }
    }

    /// Condition every evaluation on `condition`.
    pub fn with_condition(mut self, condition: Condition) -> Self {
        self.condition = condition;
        self
    }

    /// Check every model output for NaN/∞ and fail with [`Error::NonFiniteAt`] naming the step
    /// and time (synchronises with the device once per evaluation).
    pub fn with_finite_check(mut self, check: bool) -> Self {
        self.check_finite = check;
        self
    }

    /// The path.
    pub fn path(&self) -> &'a AffinePath<S> {
        self.path
    }

    /// The model.
    pub fn model(&self) -> &'a M {
        self.model
    }

    /// Number of model evaluations so far.
    pub fn evaluations(&self) -> usize {
        self.count.get()
    }

    /// Evaluate the model at `(x, t)` for the whole batch.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`]; [`Error::ShapeMismatch`] if the model's output has another
    /// shape than `x`; [`Error::NonFiniteAt`] with the finite check on.
    pub fn evaluate<const D: usize>(&self, x: Tensor<D>, t: f64) -> Result<Evaluation<'a, S, D>>
    where
        M: Model<D>,
    {
        let times = Times::shared(t, x.dims()[0])?;
        self.evaluate_times(x, times)
    }

    /// Evaluate at per-sample times.
    ///
    /// # Errors
    /// As [`PathModel::evaluate`], plus [`Error::ShapeMismatch`] if the batch is not `t.len()`.
    pub fn evaluate_times<const D: usize>(&self, x: Tensor<D>, t: Times) -> Result<Evaluation<'a, S, D>>
    where
        M: Model<D>,
    {
        flowforge_core::tensor::ensure_batch("x vs times", &x, t.len())?;
        self.count.set(self.count.get() + 1);
        let output = self.model.predict(x.clone(), &t, &self.condition)?.into_tensor();
        ensure_same_shape("model output vs x_t", &x, &output)?;
        if self.check_finite {
            let time = t.as_shared().unwrap_or(f64::NAN);
            ensure_finite("model output", &output).map_err(|_| Error::NonFiniteAt {
                what: "model output",
                step: self.step.get(),
                t: time,
            })?;
        }
        Ok(Evaluation {
            path: self.path,
            kind: <M::Prediction as PredictionType>::KIND,
            output,
            x,
            t,
        })
    }
}

impl<M: Model<D>, S: Schedule, const D: usize> VectorField<D> for PathModel<'_, M, S> {
    fn velocity(&self, x: Tensor<D>, t: f64) -> Result<Tensor<D>> {
        self.evaluate(x, t)?.velocity()
    }

    fn evaluations(&self) -> usize {
        self.count.get()
    }

    fn begin_step(&self, step: usize) {
        self.step.set(step);
    }
}

/// One model evaluation at `(x, t)`, convertible to any prediction kind.
#[derive(Debug, Clone)]
pub struct Evaluation<'p, S, const D: usize> {
    path: &'p AffinePath<S>,
    kind: PredictionKind,
    output: Tensor<D>,
    x: Tensor<D>,
    t: Times,
}

impl<S: Schedule, const D: usize> Evaluation<'_, S, D> {
    /// The kind the model predicted.
    pub fn kind(&self) -> PredictionKind {
        self.kind
    }

    /// The raw model output.
    pub fn output(&self) -> &Tensor<D> {
        &self.output
    }

    /// The prediction converted to `kind` through the path.
    ///
    /// # Errors
    /// [`Error::SingularConversion`] where the conversion divides by a vanishing coefficient.
    pub fn get(&self, kind: PredictionKind) -> Result<Tensor<D>> {
        self.path.convert_kind(self.kind, kind, self.output.clone(), self.x.clone(), &self.t)
    }

    /// x̂₁, the denoised estimate.
    ///
    /// # Errors
    /// As [`Evaluation::get`].
    pub fn data(&self) -> Result<Tensor<D>> {
        self.get(PredictionKind::Data)
    }

    /// ε̂, the estimated noise.
    ///
    /// # Errors
    /// As [`Evaluation::get`].
    pub fn noise(&self) -> Result<Tensor<D>> {
        self.get(PredictionKind::Noise)
    }

    /// The velocity u_t(x).
    ///
    /// # Errors
    /// As [`Evaluation::get`].
    pub fn velocity(&self) -> Result<Tensor<D>> {
        self.get(PredictionKind::Velocity)
    }

    /// The score ∇ log p_t(x).
    ///
    /// # Errors
    /// As [`Evaluation::get`].
    pub fn score(&self) -> Result<Tensor<D>> {
        self.get(PredictionKind::Score)
    }
}
