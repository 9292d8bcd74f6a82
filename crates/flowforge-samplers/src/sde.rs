//! Stochastic samplers: Euler–Maruyama on the family of SDEs that share the probability-flow
//! ODE's marginals, and the Langevin corrector for predictor–corrector sampling.
//!
//! For any diffusion coefficient `g(t) ≥ 0`, the SDE (forward in flowforge time, noise → data)
//!
//! `dx = [u_t(x) + ½ g(t)² ∇log p_t(x)] dt + g(t) dW`
//!
//! has the same marginals p_t as the ODE `dx = u_t(x) dt` (the extra drift and the diffusion
//! cancel in the Fokker–Planck equation). `g = 0` is the PF-ODE; `g² = 2σ_t² dλ/dt`,
//! λ = log(α_t/σ_t), is the reverse-time SDE of the forward diffusion that has these marginals
//! (Song et al., *Score-Based Generative Modeling through SDEs*, ICLR 2021, eq. 6).

use crate::field::PathModel;
use crate::noise::NoiseSource;
use crate::sampler::{Sampler, StepIndex};
use burn::tensor::Tensor;
use flowforge_core::error::check;
use flowforge_core::{Error, Model, Result};
use flowforge_paths::{Schedule, ScheduleValues};
use serde::{Deserialize, Serialize};

/// The diffusion coefficient g(t) of the sampling SDE.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Diffusion {
    /// `g(t) = g`.
    Constant {
        /// g ≥ 0.
        g: f64,
    },
    /// `g(t)² = scale · 2σ_t² dλ_t/dt`: `scale = 1` is the reverse-time SDE of the forward
    /// diffusion (DDPM-like), `scale = 0` the PF-ODE.
    ReverseDiffusion {
        /// Multiplier ≥ 0 of the reverse-diffusion g².
        scale: f64,
    },
}

impl Diffusion {
    /// Validate the parameter.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a negative or NaN coefficient.
    pub fn validate(self) -> Result<Self> {
        match self {
            Diffusion::Constant { g } => check::non_negative("g", g)?,
            Diffusion::ReverseDiffusion { scale } => check::non_negative("scale", scale)?,
        };
        Ok(self)
    }

    /// `g(t)²` for schedule values `v` at time `t`.
    pub fn g2(&self, v: ScheduleValues) -> f64 {
        match *self {
            Diffusion::Constant { g } => g * g,
            Diffusion::ReverseDiffusion { scale } => {
                if scale == 0.0 {
                    return 0.0;
                }
                let d_lambda = v.d_alpha / v.alpha - v.d_sigma / v.sigma;
                scale * 2.0 * v.sigma * v.sigma * d_lambda
            }
        }
    }
}

/// Euler–Maruyama: `x + h [u + ½ g² s] + g √h z`, with u and the score s from one model call.
/// Sampling direction only (increasing grids).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EulerMaruyama {
    diffusion: Diffusion,
}

impl EulerMaruyama {
    /// Euler–Maruyama with diffusion `g`.
    ///
    /// # Errors
    /// As [`Diffusion::validate`].
    pub fn new(diffusion: Diffusion) -> Result<Self> {
        Ok(Self {
            diffusion: diffusion.validate()?,
        })
    }
}

impl<'a, M: Model<D>, S: Schedule, const D: usize> Sampler<PathModel<'a, M, S>, D> for EulerMaruyama {
    type State = ();

    fn step<N: NoiseSource>(
        &self,
        model: &PathModel<'a, M, S>,
        x: Tensor<D>,
        t_cur: f64,
        t_next: f64,
        _at: StepIndex,
        _state: &mut (),
        noise: &mut N,
    ) -> Result<Tensor<D>> {
        let h = t_next - t_cur;
        if h <= 0.0 {
            return Err(Error::InvalidGrid {
                reason: "Euler–Maruyama samples forward in time only (an increasing grid)",
                index: 0,
                value: t_next,
            });
        }
        let g2 = self.diffusion.g2(model.path().schedule().values(t_cur));
        if !g2.is_finite() {
            return Err(Error::SingularTime {
                what: "the diffusion coefficient g(t)²",
                t: t_cur,
                reason: "α_t or σ_t vanishes there; start the grid after the singular end",
            });
        }
        let evaluation = model.evaluate(x.clone(), t_cur)?;
        let mut drift = evaluation.velocity()?;
        if g2 > 0.0 {
            drift = drift + evaluation.score()?.mul_scalar(0.5 * g2);
        }
        let x = x + drift.mul_scalar(h);
        if g2 == 0.0 {
            return Ok(x);
        }
        let z = noise.standard_normal(x.dims(), &x.device())?;
        Ok(x + z.mul_scalar((g2 * h).sqrt()))
    }
}

/// Langevin MCMC at a fixed time (Song et al. 2021, Alg. 4): `x ← x + ε s + √(2ε) z`, with the
/// step size set so the signal-to-noise ratio `‖ε s‖/‖√(2ε) z‖` is `snr`:
/// `ε = 2 (snr ‖z‖ / ‖s‖)²`, norms averaged over the batch (computed on the device, no host
/// synchronisation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Langevin {
    snr: f64,
    steps: usize,
}

impl Langevin {
    /// `steps` Langevin steps with target signal-to-noise ratio `snr` (0.16 in Song et al.).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a non-positive snr.
    pub fn new(snr: f64, steps: usize) -> Result<Self> {
        check::positive("snr", snr)?;
        Ok(Self { snr, steps })
    }

    /// Run the corrector at time `t`.
    ///
    /// # Errors
    /// [`Error::SingularConversion`] where the score is undefined (σ_t = 0).
    pub fn correct<M: Model<D>, S: Schedule, N: NoiseSource, const D: usize>(
        &self,
        model: &PathModel<'_, M, S>,
        mut x: Tensor<D>,
        t: f64,
        noise: &mut N,
    ) -> Result<Tensor<D>> {
        let dims = x.dims();
        let batch = dims[0];
        let per_sample: usize = dims[1..].iter().product();
        let mean_norm = |v: Tensor<D>| -> Tensor<D> {
            let flat: Tensor<2> = v.reshape([batch, per_sample]);
            flat.square().sum_dim(1).sqrt().mean().reshape([1usize; D])
        };
        for _ in 0..self.steps {
            let score = model.evaluate(x.clone(), t)?.score()?;
            let z = noise.standard_normal(dims, &x.device())?;
            let ratio = mean_norm(z.clone()).mul_scalar(self.snr) / mean_norm(score.clone());
            let eps = ratio.square().mul_scalar(2.0);
            x = x + score * eps.clone() + z * eps.mul_scalar(2.0).sqrt();
        }
        Ok(x)
    }
}

/// A predictor followed by Langevin correction at the new time (Song et al. 2021, §4.2);
/// no correction at a time where σ_t = 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictorCorrector<P> {
    /// The predictor (any sampler on a path model).
    pub predictor: P,
    /// The corrector.
    pub corrector: Langevin,
}

impl<'a, P, M, S, const D: usize> Sampler<PathModel<'a, M, S>, D> for PredictorCorrector<P>
where
    P: Sampler<PathModel<'a, M, S>, D>,
    M: Model<D>,
    S: Schedule,
{
    type State = P::State;

    fn step<N: NoiseSource>(
        &self,
        model: &PathModel<'a, M, S>,
        x: Tensor<D>,
        t_cur: f64,
        t_next: f64,
        at: StepIndex,
        state: &mut P::State,
        noise: &mut N,
    ) -> Result<Tensor<D>> {
        let x = self.predictor.step(model, x, t_cur, t_next, at, state, noise)?;
        if model.path().schedule().sigma(t_next) > 0.0 {
            self.corrector.correct(model, x, t_next, noise)
        } else {
            Ok(x)
        }
    }
}
