//! Diffusion samplers on any affine path: DDPM ancestral sampling, DDIM(η), the EDM stochastic
//! sampler and DPM-Solver++(2M).
//!
//! They are written with the general Gaussian transition of Kingma et al. (*Variational
//! Diffusion Models*, 2021, §3.2): between a noisier time t and a cleaner time s,
//! `α_{t|s} = α_t/α_s` and `σ²_{t|s} = σ_t² − α²_{t|s} σ_s²`. On a discrete DDPM schedule at its
//! own levels these are exactly `1 − β'` and `β' = 1 − ᾱ_t/ᾱ_s`, so the samplers reproduce
//! diffusers' `DDPMScheduler` and `DDIMScheduler` step for step.

use crate::field::PathModel;
use crate::noise::NoiseSource;
use crate::sampler::{Sampler, StepIndex};
use burn::tensor::Tensor;
use flowforge_core::error::check;
use flowforge_core::{EdmSigma, Error, Model, Result};
use flowforge_paths::{AffinePath, Schedule};
pub use flowforge_paths::DdpmVariance;
use serde::{Deserialize, Serialize};

/// Clean-sample post-processing applied to x̂₁ before it is used (diffusers' `clip_sample` and
/// `thresholding`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SampleClipping {
    /// Use x̂₁ as predicted.
    #[default]
    None,
    /// Clamp x̂₁ to `[−range, range]`.
    Clip {
        /// Half-width of the allowed interval.
        range: f64,
    },
    /// Dynamic thresholding (Saharia et al., *Imagen*, 2022): per sample, `s` = the `ratio`
    /// quantile of `|x̂₁|`, clamped to `[1, max_value]`; then `x̂₁ ← clamp(x̂₁, −s, s)/s`.
    Dynamic {
        /// Quantile (0.995 in Imagen).
        ratio: f64,
        /// Upper bound of `s`.
        max_value: f64,
    },
}

impl SampleClipping {
    /// Validate the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a non-positive range, a ratio outside (0, 1) or
    /// `max_value < 1`.
    pub fn validate(self) -> Result<Self> {
        match self {
            SampleClipping::None => {}
            SampleClipping::Clip { range } => {
                check::positive("range", range)?;
            }
            SampleClipping::Dynamic { ratio, max_value } => {
                check::open_unit("ratio", ratio)?;
                if !(max_value >= 1.0 && max_value.is_finite()) {
                    return Err(Error::invalid("max_value", max_value, "finite and >= 1"));
                }
            }
        }
        Ok(self)
    }

    /// Apply to a batch of clean-sample predictions.
    pub fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match *self {
            SampleClipping::None => x,
            SampleClipping::Clip { range } => x.clamp(-range, range),
            SampleClipping::Dynamic { ratio, max_value } => {
                let dims = x.dims();
                let batch = dims[0];
                let per_sample: usize = dims[1..].iter().product();
                let flat: Tensor<2> = x.clone().reshape([batch, per_sample]);
                // torch.quantile's linear interpolation between order statistics.
                let sorted = flat.abs().sort(1);
                let position = ratio * (per_sample.saturating_sub(1)) as f64;
                let lo = position.floor() as usize;
                let hi = (lo + 1).min(per_sample - 1);
                let frac = position - lo as f64;
                let q = sorted.clone().narrow(1, lo, 1).mul_scalar(1.0 - frac) + sorted.narrow(1, hi, 1).mul_scalar(frac);
                let s = q.clamp(1.0, max_value);
                let mut shape = [1usize; D];
                shape[0] = batch;
                let s: Tensor<D> = s.reshape(shape).expand(dims);
                x.max_pair(s.clone().neg()).min_pair(s.clone()) / s
            }
        }
    }
}

/// The Gaussian posterior `q(x_s | x_t, x̂₁)` of a step from `t_cur` (noisier) to `t_next`.
#[derive(Debug, Clone)]
pub struct Posterior<const D: usize> {
    /// Its mean.
    pub mean: Tensor<D>,
    /// Its (per-element) variance under the chosen [`DdpmVariance`].
    pub variance: f64,
}

/// DDPM ancestral sampling (Ho et al., *Denoising Diffusion Probabilistic Models*, 2020,
/// Alg. 2): `x_s = μ(x_t, x̂₁) + √var · z`, with no noise on a step that lands on the clean end
/// (σ_s = 0). Works for any prediction kind and any affine schedule; on a discrete schedule at
/// consecutive levels it is diffusers' `DDPMScheduler.step`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(try_from = "DdpmParams")]
pub struct Ddpm {
    variance: DdpmVariance,
    clipping: SampleClipping,
}

/// The serialised form of [`Ddpm`], validated on load.
#[derive(Deserialize)]
struct DdpmParams {
    variance: DdpmVariance,
    clipping: SampleClipping,
}

impl TryFrom<DdpmParams> for Ddpm {
    type Error = Error;
    fn try_from(p: DdpmParams) -> Result<Self> {
        Self::new(p.variance, p.clipping)
    }
}

impl Ddpm {
    /// A DDPM sampler.
    ///
    /// # Errors
    /// As [`SampleClipping::validate`].
    pub fn new(variance: DdpmVariance, clipping: SampleClipping) -> Result<Self> {
        Ok(Self {
            variance,
            clipping: clipping.validate()?,
        })
    }

    /// The posterior variance choice.
    pub fn variance(&self) -> DdpmVariance {
        self.variance
    }

    /// The post-processing of x̂₁.
    pub fn clipping(&self) -> SampleClipping {
        self.clipping
    }

    /// The posterior of the step `t_cur → t_next` given x̂₁ (already clipped) and `x_t`.
    ///
    /// # Errors
    /// [`Error::SingularTime`] if σ_{t_cur} = 0 (nothing to denoise) or α_{t_next} = 0.
    pub fn posterior<S: Schedule, const D: usize>(
        &self,
        path: &AffinePath<S>,
        data: Tensor<D>,
        x_t: Tensor<D>,
        t_cur: f64,
        t_next: f64,
    ) -> Result<Posterior<D>> {
        let q = path.transition(t_cur, t_next)?;
        Ok(Posterior {
            mean: data.mul_scalar(q.posterior_data) + x_t.mul_scalar(q.posterior_x),
            variance: self.variance.of(&q),
        })
    }
}

impl<'a, M: Model<D>, S: Schedule, const D: usize> Sampler<PathModel<'a, M, S>, D> for Ddpm {
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
        let data = self.clipping.apply(model.evaluate(x.clone(), t_cur)?.data()?);
        let posterior = self.posterior(model.path(), data, x.clone(), t_cur, t_next)?;
        if model.path().schedule().sigma(t_next) == 0.0 {
            return Ok(posterior.mean);
        }
        let z = noise.standard_normal(x.dims(), &x.device())?;
        Ok(posterior.mean + z.mul_scalar(posterior.variance.sqrt()))
    }
}

/// DDIM (Song, Meng & Ermon, *Denoising Diffusion Implicit Models*, ICLR 2021, eq. 12):
/// `x_s = α_s x̂₁ + √(σ_s² − c²) ε̂ + c z` with `c = η (σ_s/σ_t) σ_{t|s}`. η = 0 is deterministic
/// (the probability-flow ODE's Euler step in the noise-to-signal clock), η = 1 is DDPM-like.
/// Steps to the next entry of its grid, whatever the spacing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(try_from = "DdimParams")]
pub struct Ddim {
    eta: f64,
    clipping: SampleClipping,
}

/// The serialised form of [`Ddim`], validated on load.
#[derive(Deserialize)]
struct DdimParams {
    eta: f64,
    clipping: SampleClipping,
}

impl TryFrom<DdimParams> for Ddim {
    type Error = Error;
    fn try_from(p: DdimParams) -> Result<Self> {
        Self::new(p.eta)?.with_clipping(p.clipping)
    }
}

impl Ddim {
    /// DDIM with stochasticity η ∈ [0, 1].
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for η outside [0, 1] (or NaN).
    pub fn new(eta: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&eta) {
            return Err(Error::invalid("eta", eta, "in [0, 1]"));
        }
        Ok(Self {
            eta,
            clipping: SampleClipping::None,
        })
    }

    /// Post-process x̂₁ (diffusers' `clip_sample` / `thresholding`).
    ///
    /// # Errors
    /// As [`SampleClipping::validate`].
    pub fn with_clipping(mut self, clipping: SampleClipping) -> Result<Self> {
        self.clipping = clipping.validate()?;
        Ok(self)
    }

    /// η.
    pub fn eta(&self) -> f64 {
        self.eta
    }

    /// The standard deviation `c` of the injected noise for the step `t_cur → t_next`.
    pub fn noise_std<S: Schedule>(&self, path: &AffinePath<S>, t_cur: f64, t_next: f64) -> f64 {
        if self.eta == 0.0 {
            return 0.0;
        }
        let (cur, next) = (path.schedule().values(t_cur), path.schedule().values(t_next));
        match path.transition(t_cur, t_next) {
            Ok(q) => self.eta * (next.sigma / cur.sigma) * q.sigma2_ts.sqrt(),
            Err(_) => 0.0,
        }
    }

    /// The DDIM update from the model's (x̂₁, ε̂), with `z` the noise (ignored when η = 0).
    pub fn update<S: Schedule, const D: usize>(
        &self,
        path: &AffinePath<S>,
        data: Tensor<D>,
        eps: Tensor<D>,
        t_cur: f64,
        t_next: f64,
        z: Option<Tensor<D>>,
    ) -> Tensor<D> {
        let next = path.schedule().values(t_next);
        let c = self.noise_std(path, t_cur, t_next);
        let direction = (next.sigma * next.sigma - c * c).max(0.0).sqrt();
        let x = data.mul_scalar(next.alpha) + eps.mul_scalar(direction);
        match z {
            Some(z) if c > 0.0 => x + z.mul_scalar(c),
            _ => x,
        }
    }
}

impl<'a, M: Model<D>, S: Schedule, const D: usize> Sampler<PathModel<'a, M, S>, D> for Ddim {
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
        let evaluation = model.evaluate(x.clone(), t_cur)?;
        let (data, eps) = match self.clipping {
            SampleClipping::None => (evaluation.data()?, evaluation.noise()?),
            clipping => {
                // As diffusers: ε̂ is re-derived from the clipped x̂₁.
                let data = clipping.apply(evaluation.data()?);
                let t = flowforge_core::Times::shared(t_cur, x.dims()[0])?;
                let eps = model.path().convert_kind(
                    flowforge_core::PredictionKind::Data,
                    flowforge_core::PredictionKind::Noise,
                    data.clone(),
                    x.clone(),
                    &t,
                )?;
                (data, eps)
            }
        };
        let z = if self.noise_std(model.path(), t_cur, t_next) > 0.0 {
            Some(noise.standard_normal(x.dims(), &x.device())?)
        } else {
            None
        };
        Ok(self.update(model.path(), data, eps, t_cur, t_next, z))
    }
}

/// The EDM stochastic sampler (Karras et al., *Elucidating the Design Space of Diffusion-Based
/// Generative Models*, NeurIPS 2022, Alg. 2), on any affine path through its noise-to-signal
/// clock σ̃ = σ_t/α_t: churn the noise level up by `γ = min(S_churn/N, √2 − 1)` when
/// `σ̃ ∈ [S_min, S_max]`, take a Heun step down to the next level, and skip the correction when
/// the next level is σ̃ = 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EdmParams")]
pub struct EdmStochastic {
    s_churn: f64,
    s_min: f64,
    s_max: f64,
    s_noise: f64,
}

/// The serialised form of [`EdmStochastic`], validated on load.
#[derive(Deserialize)]
struct EdmParams {
    s_churn: f64,
    s_min: f64,
    s_max: f64,
    s_noise: f64,
}

impl TryFrom<EdmParams> for EdmStochastic {
    type Error = Error;
    fn try_from(p: EdmParams) -> Result<Self> {
        Self::new(p.s_churn, p.s_min, p.s_max, p.s_noise)
    }
}

impl Default for EdmStochastic {
    /// Deterministic Heun (`S_churn = 0`), `S_min = 0`, `S_max = ∞`, `S_noise = 1`.
    fn default() -> Self {
        Self {
            s_churn: 0.0,
            s_min: 0.0,
            s_max: f64::INFINITY,
            s_noise: 1.0,
        }
    }
}

impl EdmStochastic {
    /// A stochastic EDM sampler with `S_churn` (total churn over the run; 0 is deterministic
    /// Heun), `S_min`/`S_max` (churn only for σ̃ in this range) and `S_noise` (scale of the
    /// added noise; slightly above 1 counteracts detail loss).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for negative or NaN parameters,
    /// [`Error::InconsistentParameters`] if `s_min > s_max`.
    #[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(a > b)` is true for NaN too, which must fail the check")]
    pub fn new(s_churn: f64, s_min: f64, s_max: f64, s_noise: f64) -> Result<Self> {
        check::non_negative("s_churn", s_churn)?;
        check::non_negative("s_min", s_min)?;
        if !(s_max >= 0.0) {
            return Err(Error::invalid("s_max", s_max, ">= 0 (infinity allowed)"));
        }
        check::positive("s_noise", s_noise)?;
        check::not_greater("s_min", s_min, "s_max", s_max)?;
        Ok(Self {
            s_churn,
            s_min,
            s_max,
            s_noise,
        })
    }
}

impl<'a, M: Model<D>, S: Schedule, const D: usize> Sampler<PathModel<'a, M, S>, D> for EdmStochastic {
    type State = ();

    fn step<N: NoiseSource>(
        &self,
        model: &PathModel<'a, M, S>,
        x: Tensor<D>,
        t_cur: f64,
        t_next: f64,
        at: StepIndex,
        _state: &mut (),
        noise: &mut N,
    ) -> Result<Tensor<D>> {
        let schedule = model.path().schedule();
        let (alpha_cur, alpha_next) = (schedule.alpha(t_cur), schedule.alpha(t_next));
        let sigma_cur = schedule.sigma(t_cur) / alpha_cur;
        let sigma_next = schedule.sigma(t_next) / alpha_next;
        if !sigma_cur.is_finite() {
            return Err(Error::SingularTime {
                what: "the EDM sampler's noise level σ_t/α_t",
                t: t_cur,
                reason: "α_t = 0 there; start the grid after t = 0",
            });
        }
        let gamma = if (self.s_min..=self.s_max).contains(&sigma_cur) {
            (self.s_churn / at.steps as f64).min(core::f64::consts::SQRT_2 - 1.0)
        } else {
            0.0
        };
        // The churned level cannot exceed the schedule's own largest noise level (its time
        // would be before t = 0): a documented clamp.
        let sigma_top = schedule.sigma(0.0) / schedule.alpha(0.0);
        let sigma_hat = (sigma_cur * (1.0 + gamma)).min(sigma_top.max(sigma_cur));
        let mut y = x.clone().div_scalar(alpha_cur);
        let t_hat = if sigma_hat > sigma_cur {
            let z = noise.standard_normal(x.dims(), &x.device())?;
            y = y + z.mul_scalar((sigma_hat * sigma_hat - sigma_cur * sigma_cur).sqrt() * self.s_noise);
            schedule.time_at_edm_sigma(EdmSigma::new(sigma_hat)?)?.value()
        } else {
            t_cur
        };
        let alpha_hat = schedule.alpha(t_hat);
        let d = model.evaluate(y.clone().mul_scalar(alpha_hat), t_hat)?.noise()?;
        let y_euler = y.clone() + d.clone().mul_scalar(sigma_next - sigma_hat);
        if sigma_next == 0.0 {
            return Ok(y_euler.mul_scalar(alpha_next));
        }
        let d_next = model.evaluate(y_euler.mul_scalar(alpha_next), t_next)?.noise()?;
        let y_next = y + (d + d_next).mul_scalar(0.5 * (sigma_next - sigma_hat));
        Ok(y_next.mul_scalar(alpha_next))
    }
}

/// DPM-Solver++(2M) (Lu et al., *DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
/// Probabilistic Models*, 2022, Alg. 2), the multistep second-order data-prediction solver in
/// the log-SNR λ = log(α/σ); the first step and a step to σ = 0 are first order (as
/// k-diffusion's `sample_dpmpp_2m`). Its state is the previous x̂₁ and step size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DpmSolverPp2m;

/// The multistep history of [`DpmSolverPp2m`].
#[derive(Debug, Clone, Default)]
pub struct DpmHistory<const D: usize> {
    previous: Option<(Tensor<D>, f64)>,
}

impl<'a, M: Model<D>, S: Schedule, const D: usize> Sampler<PathModel<'a, M, S>, D> for DpmSolverPp2m {
    type State = DpmHistory<D>;

    fn step<N: NoiseSource>(
        &self,
        model: &PathModel<'a, M, S>,
        x: Tensor<D>,
        t_cur: f64,
        t_next: f64,
        _at: StepIndex,
        state: &mut DpmHistory<D>,
        _noise: &mut N,
    ) -> Result<Tensor<D>> {
        let schedule = model.path().schedule();
        let (cur, next) = (schedule.values(t_cur), schedule.values(t_next));
        if cur.sigma <= 0.0 || cur.alpha <= 0.0 {
            return Err(Error::SingularTime {
                what: "DPM-Solver++'s log-SNR",
                t: t_cur,
                reason: "needs α > 0 and σ > 0 at the current time",
            });
        }
        let data = model.evaluate(x.clone(), t_cur)?.data()?;
        // e^{−h} = σ̃_next / σ̃_cur, finite even when the next level is σ = 0 (h = ∞).
        let ratio = (next.sigma / next.alpha) / (cur.sigma / cur.alpha);
        let h = -ratio.ln();
        let denoised = match (&state.previous, next.sigma == 0.0) {
            (Some((prev, h_prev)), false) => {
                let r = h_prev / h;
                data.clone().mul_scalar(1.0 + 1.0 / (2.0 * r)) - prev.clone().mul_scalar(1.0 / (2.0 * r))
            }
            _ => data.clone(),
        };
        state.previous = Some((data, h));
        Ok(x.mul_scalar(next.sigma / cur.sigma) - denoised.mul_scalar(next.alpha * (ratio - 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use flowforge_core::tensor::{tensor_from_rows, tensor_to_vec};

    #[test]
    fn dynamic_thresholding_matches_the_imagen_rule() {
        let x = tensor_from_rows(&[vec![0.5, 2.0, -3.0, 1.0], vec![0.1, -0.2, 0.3, 0.4]], &Device::flex());
        let clip = SampleClipping::Dynamic { ratio: 0.5, max_value: 10.0 };
        let out = tensor_to_vec(clip.apply(x));
        // Row 0: |x| sorted = [0.5, 1, 2, 3]; the 0.5 quantile (torch's linear rule) is 1.5, so
        // x is clamped to [−1.5, 1.5] and divided by 1.5.
        let expected_row0 = [0.5 / 1.5, 1.0, -1.0, 1.0 / 1.5];
        // Row 1: the quantile 0.25 is below 1, so s = 1 and the row is unchanged.
        let expected_row1 = [0.1, -0.2, 0.3, 0.4];
        for (a, e) in out.iter().zip(expected_row0.iter().chain(&expected_row1)) {
            assert!((a - e).abs() < 1e-6, "{a} vs {e}");
        }
        let clip = SampleClipping::Clip { range: 1.0 };
        let x = tensor_from_rows(&[vec![-2.0, 0.5, 3.0]], &Device::flex());
        assert_eq!(tensor_to_vec(clip.apply(x)), vec![-1.0, 0.5, 1.0]);
    }
}
