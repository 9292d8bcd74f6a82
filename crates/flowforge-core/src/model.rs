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
use crate::error::Result;
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

/// Helps type inference for closure models: `model_fn(|x, t| velocity(x))` needs no argument
/// annotations.
pub fn model_fn<P, const D: usize, F>(f: F) -> F
where
    F: Fn(Tensor<D>, &Times) -> Predicted<P, D>,
    P: PredictionType,
{
    f
}
