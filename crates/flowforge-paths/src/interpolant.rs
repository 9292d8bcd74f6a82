//! Stochastic interpolants: an affine path plus an independent Gaussian term,
//! `x_t = σ_t x₀ + α_t x₁ + γ_t ε`, `ε ~ N(0, I)` (Albergo, Boffi & Vanden-Eijnden,
//! *Stochastic Interpolants*, 2023). The Brownian bridge of Schrödinger-bridge CFM and torchcfm's
//! constant-σ "independent CFM" path are the two built-in γ's.

use crate::affine::{AffinePath, ConditionalPath, PathSample};
use crate::schedule::Schedule;
use crate::schedules::CondOt;
use burn::tensor::Tensor;
use flowforge_core::error::check;
use flowforge_core::tensor::{ensure_batch, ensure_same_shape};
use flowforge_core::{Error, Result, Times};
use serde::{Deserialize, Serialize};

/// The scale γ_t of the extra Gaussian term.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NoiseScale {
    /// `γ_t = σ` at every t: torchcfm's `ConditionalFlowMatcher(sigma)` (Tong et al., *Improving
    /// and Generalizing Flow-Based Generative Models with Minibatch Optimal Transport*, 2024).
    Constant {
        /// σ ≥ 0.
        sigma: f64,
    },
    /// `γ_t = σ √(t(1 − t))`: the Brownian bridge between x₀ and x₁ with diffusion σ, the path of
    /// Schrödinger-bridge CFM (Tong et al., *Simulation-Free Schrödinger Bridges via Score and
    /// Flow Matching*, 2024).
    BrownianBridge {
        /// σ > 0.
        sigma: f64,
    },
}

impl NoiseScale {
    /// Validate the parameter.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`]: `sigma` must be ≥ 0 (constant) or > 0 (bridge), finite.
    pub fn validate(self) -> Result<Self> {
        match self {
            NoiseScale::Constant { sigma } => check::non_negative("sigma", sigma)?,
            NoiseScale::BrownianBridge { sigma } => check::positive("sigma", sigma)?,
        };
        Ok(self)
    }

    /// γ_t.
    pub fn gamma(&self, t: f64) -> f64 {
        match *self {
            NoiseScale::Constant { sigma } => sigma,
            NoiseScale::BrownianBridge { sigma } => sigma * (t * (1.0 - t)).max(0.0).sqrt(),
        }
    }

    /// dγ_t/dt (infinite for the bridge at t ∈ {0, 1}).
    pub fn d_gamma(&self, t: f64) -> f64 {
        match *self {
            NoiseScale::Constant { .. } => 0.0,
            NoiseScale::BrownianBridge { sigma } => {
                sigma * (1.0 - 2.0 * t) / (2.0 * (t * (1.0 - t)).sqrt())
            }
        }
    }
}

/// `x_t = σ_t x₀ + α_t x₁ + γ_t ε` with conditional velocity
/// `u_t = σ̇_t x₀ + α̇_t x₁ + γ̇_t ε`.
///
/// For the Brownian bridge `γ̇_t ε = (1 − 2t)/(2t(1 − t)) (x_t − μ_t)`, torchcfm's form (without
/// its `1e-8` regulariser); it diverges at t ∈ {0, 1}, where [`StochasticInterpolant::sample`]
/// returns [`Error::SingularTime`] rather than an infinity. Sample t from the open interval.
#[derive(Debug, Clone, PartialEq)]
pub struct StochasticInterpolant<S> {
    path: AffinePath<S>,
    noise: NoiseScale,
}

impl StochasticInterpolant<CondOt> {
    /// The Brownian bridge `x_t = (1−t) x₀ + t x₁ + σ√(t(1−t)) ε` (Schrödinger-bridge CFM).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `sigma` is finite and > 0.
    pub fn brownian_bridge(sigma: f64) -> Result<Self> {
        Self::new(CondOt::default(), NoiseScale::BrownianBridge { sigma })
    }

    /// torchcfm's independent-coupling CFM path `x_t = (1−t) x₀ + t x₁ + σ ε`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `sigma` is finite and ≥ 0.
    pub fn constant_noise(sigma: f64) -> Result<Self> {
        Self::new(CondOt::default(), NoiseScale::Constant { sigma })
    }
}

impl<S: Schedule> StochasticInterpolant<S> {
    /// An interpolant on `schedule` with extra noise `noise`.
    ///
    /// # Errors
    /// As [`NoiseScale::validate`].
    pub fn new(schedule: S, noise: NoiseScale) -> Result<Self> {
        Ok(Self {
            path: AffinePath::new(schedule),
            noise: noise.validate()?,
        })
    }

    /// The deterministic part.
    pub fn affine(&self) -> &AffinePath<S> {
        &self.path
    }

    /// The noise scale.
    pub fn noise_scale(&self) -> NoiseScale {
        self.noise
    }

    /// The mean `μ_t = σ_t x₀ + α_t x₁`.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn mean<const D: usize>(&self, x0: Tensor<D>, x1: Tensor<D>, t: &Times) -> Result<Tensor<D>> {
        ensure_same_shape("x1 vs x0", &x0, &x1)?;
        ensure_batch("x0 vs times", &x0, t.len())?;
        let c = self.path.coefficients(t);
        Ok(c.sigma.combine(x0, &c.alpha, x1))
    }

    /// `x_t` and the conditional velocity, for the given standard-normal `noise` ε.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`]; [`Error::SingularTime`] where γ̇_t is infinite (the bridge at
    /// t ∈ {0, 1}).
    pub fn sample<const D: usize>(
        &self,
        x0: Tensor<D>,
        x1: Tensor<D>,
        noise: Tensor<D>,
        t: &Times,
    ) -> Result<PathSample<D>> {
        ensure_same_shape("noise vs x0", &x0, &noise)?;
        let gamma = t.map(|t| self.noise.gamma(t));
        let d_gamma = t.map(|t| self.noise.d_gamma(t));
        if let Some(i) = d_gamma.first_non_finite() {
            return Err(Error::SingularTime {
                what: "the Brownian-bridge velocity",
                t: t.as_shared().unwrap_or_else(|| t.get(i)),
                reason: "dγ/dt = σ(1 − 2t)/(2√(t(1 − t))) diverges at the endpoints",
            });
        }
        let PathSample { x_t, dx_t } = self.path.sample(x0, x1, t)?;
        let x_t = x_t + gamma.scale(noise.clone());
        let dx_t = dx_t + d_gamma.scale(noise);
        Ok(PathSample { x_t, dx_t })
    }
}

impl<S: Schedule> ConditionalPath for StochasticInterpolant<S> {
    fn needs_noise(&self) -> bool {
        true
    }

    fn sample_conditional<const D: usize>(
        &self,
        x0: Tensor<D>,
        x1: Tensor<D>,
        noise: Option<Tensor<D>>,
        t: &Times,
    ) -> Result<PathSample<D>> {
        let noise = noise.ok_or(Error::MissingInput {
            what: "the noise ε of a stochastic interpolant",
        })?;
        self.sample(x0, x1, noise, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn bridge_rejects_non_positive_sigma() {
        assert!(matches!(
            StochasticInterpolant::brownian_bridge(0.0),
            Err(Error::InvalidParameter { name: "sigma", .. })
        ));
        assert!(StochasticInterpolant::brownian_bridge(f64::NAN).is_err());
        assert!(StochasticInterpolant::constant_noise(0.0).is_ok());
        assert!(StochasticInterpolant::constant_noise(-0.1).is_err());
    }

    #[test]
    fn bridge_gamma_derivative_matches_finite_differences() {
        let scale = NoiseScale::BrownianBridge { sigma: 0.7 };
        for t in [0.1, 0.3, 0.5, 0.8] {
            let h = 1e-6;
            let fd = (scale.gamma(t + h) - scale.gamma(t - h)) / (2.0 * h);
            assert_relative_eq!(scale.d_gamma(t), fd, epsilon = 1e-8);
        }
        assert!(!scale.d_gamma(0.0).is_finite());
    }
}
