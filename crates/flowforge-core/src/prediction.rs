//! What a model predicts.
//!
//! For an affine path `x_t = σ_t x₀ + α_t x₁` with Gaussian source `x₀ ~ N(0, I)`
//! (notation of Lipman et al., *Flow Matching Guide and Code*, 2024), a network can be trained to
//! output any of five quantities, each a linear function of `x_t` and of the posterior means
//! `ε̂ = E[x₀ | x_t]`, `x̂₁ = E[x₁ | x_t]`:
//!
//! | kind | symbol | in terms of (ε̂, x̂₁) | used by |
//! |---|---|---|---|
//! | [`Noise`] | ε | `ε̂` | DDPM (Ho et al. 2020) |
//! | [`Data`] | x̂₁ | `x̂₁` | EDM denoiser `D(x; σ)` (Karras et al. 2022), diffusers "sample" |
//! | [`Velocity`] | u | `σ̇_t ε̂ + α̇_t x̂₁` | flow matching (Lipman et al. 2023), rectified flow |
//! | [`VPrediction`] | v | `α_t ε̂ − σ_t x̂₁` | progressive distillation (Salimans & Ho 2022), diffusers "v_prediction" |
//! | [`Score`] | ∇ log p_t | `−ε̂ / σ_t` | score SDEs (Song et al. 2021) |
//!
//! Conversions between any pair, for any schedule, live on the path (`AffinePath::convert` in
//! `flowforge-paths`), because they need α_t, σ_t and their derivatives.
//!
//! Prediction kinds are also *types* ([`PredictionType`]): a model declares the kind it outputs
//! through the type of [`Predicted`] it returns, so a closure `|x, t| velocity(…)` is a velocity
//! model without any wrapper and a sampler that needs velocities converts from whatever it gets.

use burn::tensor::Tensor;
use core::fmt;
use core::marker::PhantomData;
use serde::{Deserialize, Serialize};

/// The kind of quantity a model predicts (runtime value; see [`PredictionType`] for the types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionKind {
    /// The source sample (noise) ε = x₀.
    Noise,
    /// The data sample x̂₁ (the denoised estimate).
    Data,
    /// The flow-matching velocity u_t = dx_t/dt.
    Velocity,
    /// diffusers' v: `α_t ε − σ_t x₁`.
    VPrediction,
    /// The score ∇ₓ log p_t(x) of the marginal at time t.
    Score,
}

impl PredictionKind {
    /// All kinds, for exhaustive tests.
    pub const ALL: [PredictionKind; 5] = [
        PredictionKind::Noise,
        PredictionKind::Data,
        PredictionKind::Velocity,
        PredictionKind::VPrediction,
        PredictionKind::Score,
    ];
}

impl fmt::Display for PredictionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PredictionKind::Noise => "noise (epsilon)",
            PredictionKind::Data => "data (x1-hat)",
            PredictionKind::Velocity => "velocity",
            PredictionKind::VPrediction => "v",
            PredictionKind::Score => "score",
        })
    }
}

/// A prediction kind as a type, so that the kind a model outputs is checked at compile time.
pub trait PredictionType: Copy + Send + Sync + fmt::Debug + 'static {
    /// The runtime value of this kind.
    const KIND: PredictionKind;
}

macro_rules! prediction_type {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $ctor:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl PredictionType for $name {
            const KIND: PredictionKind = PredictionKind::$kind;
        }

        #[doc = concat!("Declare `tensor` a [`", stringify!($name), "`] prediction.")]
        pub fn $ctor<const D: usize>(tensor: Tensor<D>) -> Predicted<$name, D> {
            Predicted::new(tensor)
        }
    };
}

prediction_type!(
    /// Marker: the model predicts the noise ε.
    Noise, Noise, noise
);
prediction_type!(
    /// Marker: the model predicts the data x̂₁.
    Data, Data, data
);
prediction_type!(
    /// Marker: the model predicts the velocity u_t.
    Velocity, Velocity, velocity
);
prediction_type!(
    /// Marker: the model predicts diffusers' v = α_t ε − σ_t x₁.
    VPrediction, VPrediction, v_prediction
);
prediction_type!(
    /// Marker: the model predicts the score ∇ log p_t.
    Score, Score, score
);

/// A tensor tagged with the kind of prediction it is.
#[derive(Debug, Clone)]
pub struct Predicted<P: PredictionType, const D: usize> {
    tensor: Tensor<D>,
    kind: PhantomData<P>,
}

impl<P: PredictionType, const D: usize> Predicted<P, D> {
    /// Tag `tensor` as a prediction of kind `P`.
    pub fn new(tensor: Tensor<D>) -> Self {
        Self {
            tensor,
            kind: PhantomData,
        }
    }

    /// The runtime kind.
    pub fn kind(&self) -> PredictionKind {
        P::KIND
    }

    /// The tensor.
    pub fn tensor(&self) -> &Tensor<D> {
        &self.tensor
    }

    /// The tensor, untagged.
    pub fn into_tensor(self) -> Tensor<D> {
        self.tensor
    }
}
