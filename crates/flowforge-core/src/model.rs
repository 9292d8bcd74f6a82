//! Model traits: what samplers, losses and guidance require of a model.
//!
//! A model maps `(x_t, t, condition)` to a prediction of a declared [`PredictionType`]. The
//! kind is part of the type, so requirements are trait bounds (`M: Model<D, Prediction =
//! Velocity>`) in the spirit of argmin's capability traits, and samplers that accept any kind
//! convert through the path.
//!
//! Closures are models too (as in candle's `Module` for closures): any
//! `Fn(Tensor<D>, &Times) -> Predicted<P, D>` implements [`Model`], so an analytic field or a
//! hand-written network plugs in without a wrapper:
//!
//! ```
//! use burn::tensor::Tensor;
//! use flowforge_core::{prediction::{velocity, Velocity}, time::Times, model::Model};
//!
//! // The exact marginal velocity of the CondOT path from N(0, I) to the point mass at 0:
//! // x_t = (1 - t) x0, so u = -x_t / (1 - t).
//! let field = |x: Tensor<2>, t: &Times| velocity(x.div_scalar(-(1.0 - t.get(0))));
//! fn requires_velocity<M: Model<2, Prediction = Velocity>>(_: &M) {}
//! requires_velocity(&field);
//! ```

use crate::prediction::{PredictionType, Predicted};
use crate::error::{Error, Result};
use crate::time::Times;
use burn::tensor::{Int, Tensor};

/// What a model is conditioned on, besides `x_t` and `t`.
///
/// Both fields may be present (a class label and a continuous vector). The guidance crate adds
/// the null label used by classifier-free guidance.
#[derive(Debug, Clone, Default)]
pub struct Condition {
    /// Class labels, shape `[batch]`.
    pub labels: Option<Tensor<1, Int>>,
    /// Continuous conditioning vectors, shape `[batch, dim]`.
    pub vectors: Option<Tensor<2>>,
}

impl Condition {
    /// No conditioning (an unconditional model).
    pub fn none() -> Self {
        Self::default()
    }

    /// Condition on class labels `[batch]`.
    pub fn labels(labels: Tensor<1, Int>) -> Self {
        Self {
            labels: Some(labels),
            vectors: None,
        }
    }

    /// Condition on continuous vectors `[batch, dim]`.
    pub fn vectors(vectors: Tensor<2>) -> Self {
        Self {
            labels: None,
            vectors: Some(vectors),
        }
    }

    /// True when there is nothing to condition on.
    pub fn is_none(&self) -> bool {
        self.labels.is_none() && self.vectors.is_none()
    }

    /// The conditioning of rows `rows` of the batch (labels and vectors sliced alike), for a
    /// block of a batch run on its own (`flowforge_samplers::solve_by_row_blocks`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `rows` reaches past the labels or the vectors.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Result<Self> {
        let within = |what: &'static str, batch: usize| {
            if rows.start <= rows.end && rows.end <= batch {
                Ok(())
            } else {
                Err(Error::ShapeMismatch { what, expected: vec![rows.end], actual: vec![batch] })
            }
        };
        if let Some(labels) = &self.labels {
            within("condition labels for a block of rows", labels.dims()[0])?;
        }
        if let Some(vectors) = &self.vectors {
            within("condition vectors for a block of rows", vectors.dims()[0])?;
        }
        Ok(Self {
            labels: self.labels.clone().map(|l| l.narrow(0, rows.start, rows.len())),
            vectors: self.vectors.clone().map(|v| v.narrow(0, rows.start, rows.len())),
        })
    }
}

/// A model of `x_t ↦` prediction at time `t`, for batches of rank-`D` tensors.
///
/// # Shapes
/// - `x_t`: `[batch, …]` (rank `D`)
/// - `t`: `batch` times (shared or per sample)
/// - output: same shape as `x_t`
pub trait Model<const D: usize> {
    /// The kind of prediction this model outputs.
    type Prediction: PredictionType;

    /// Predict at `(x_t, t)` given `condition`.
    ///
    /// # Errors
    /// A model that can be handed unusable input (an input of the wrong dimension for an
    /// analytic oracle, a class index out of range for a conditional network) reports it as a
    /// typed error rather than panicking.
    fn predict(
        &self,
        x_t: Tensor<D>,
        t: &Times,
        condition: &Condition,
    ) -> Result<Predicted<Self::Prediction, D>>;
}

/// Closures `|x_t, t| …` are unconditional models; they ignore the condition.
impl<F, P, const D: usize> Model<D> for F
where
    F: Fn(Tensor<D>, &Times) -> Predicted<P, D>,
    P: PredictionType,
{
    type Prediction = P;

    fn predict(&self, x_t: Tensor<D>, t: &Times, _condition: &Condition) -> Result<Predicted<P, D>> {
        Ok(self(x_t, t))
    }
}

/// A raw network of `(x, scalar conditioning column, condition)`, not tied to a prediction
/// kind: the interface between burn modules and flowforge's models.
///
/// The conditioning column is usually the time t, `[batch, 1]`; decorators such as EDM's
/// preconditioning feed it something else (`c_noise(σ)`), which is why it is a tensor here and
/// not validated [`Times`].
pub trait Network<const D: usize> {
    /// # Shapes
    /// `x`: `[batch, …]`, `time`: `[batch, 1]` → same shape as `x`.
    ///
    /// # Errors
    /// Shape errors and other invalid input.
    fn forward_network(&self, x: Tensor<D>, time: Tensor<2>, condition: &Condition) -> Result<Tensor<D>>;
}

/// A [`Network`] declared to predict kind `P`: see [`predicting`].
#[derive(Debug)]
pub struct AsModel<'n, N, P> {
    net: &'n N,
    kind: core::marker::PhantomData<P>,
}

/// Use `net` as a model predicting `P`, fed the time t: `predicting::<Velocity, _>(&mlp)`.
pub fn predicting<P: PredictionType, N>(net: &N) -> AsModel<'_, N, P> {
    AsModel { net, kind: core::marker::PhantomData }
}

impl<N: Network<D>, P: PredictionType, const D: usize> Model<D> for AsModel<'_, N, P> {
    type Prediction = P;

    fn predict(&self, x_t: Tensor<D>, t: &Times, condition: &Condition) -> Result<Predicted<P, D>> {
        crate::tensor::ensure_batch("x_t vs times", &x_t, t.len())?;
        let column = t.to_column(&x_t.device());
        self.net.forward_network(x_t, column, condition).map(Predicted::new)
    }
}

/// Helps type inference for closure models: `model_fn(|x, t| velocity(x))` needs no argument
/// annotations.
pub fn model_fn<P, const D: usize, F>(f: F) -> F
where
    F: Fn(Tensor<D>, &Times) -> Predicted<P, D>,
    P: PredictionType,
{
    f
}
