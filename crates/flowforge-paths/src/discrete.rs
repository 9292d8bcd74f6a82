//! Discrete DDPM noise schedules: β tables, ᾱ tables, `add_noise`, zero-terminal-SNR
//! rescaling, and their continuous-time reading as a [`Schedule`].
//!
//! The tables are computed exactly as diffusers' `DDPMScheduler` computes them (Ho et al.,
//! *Denoising Diffusion Probabilistic Models*, 2020; Nichol & Dhariwal, *Improved DDPM*, 2021;
//! Lin et al., *Common Diffusion Noise Schedules and Sample Steps Are Flawed*, 2024), in f64.

use crate::schedule::Schedule;
use burn::config::Config;
use burn::tensor::{Tensor, TensorData};
use flowforge_core::error::check;
use flowforge_core::{DiscreteTimesteps, Error, Result};
use serde::{Deserialize, Serialize};

/// How the β table of a discrete schedule is laid out (diffusers' `beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `β_k = linspace(β_start, β_end, T)` (Ho et al. 2020).
    Linear,
    /// `β_k = linspace(√β_start, √β_end, T)²` (Stable Diffusion's "scaled_linear").
    ScaledLinear,
    /// Glide's cosine ᾱ, `ᾱ(τ) = cos²((τ + 0.008)/1.008 · π/2)`, with
    /// `β_k = min(1 − ᾱ((k+1)/T)/ᾱ(k/T), 0.999)` (Nichol & Dhariwal 2021). Ignores β_start/β_end.
    SquaredcosCapV2,
    /// `β_k = sigmoid(linspace(−6, 6, T)) (β_end − β_start) + β_start` (GeoDiff, Xu et al. 2022).
    Sigmoid,
}

/// Configuration of a [`DiscreteSchedule`]; defaults are diffusers' `DDPMScheduler`'s.
#[derive(Config, Debug, PartialEq)]
pub struct DiscreteScheduleConfig {
    /// Number of training timesteps T.
    #[config(default = 1000)]
    pub num_train_timesteps: usize,
    /// Layout of the β table.
    #[config(default = "BetaSchedule::Linear")]
    pub beta_schedule: BetaSchedule,
    /// First β (linear, scaled_linear, sigmoid), in (0, 1).
    #[config(default = 0.0001)]
    pub beta_start: f64,
    /// Last β (linear, scaled_linear, sigmoid), in (0, 1).
    #[config(default = 0.02)]
    pub beta_end: f64,
    /// Rescale so that the last level has zero SNR (`ᾱ_{T−1} = 0`; Lin et al. 2024, Alg. 1).
    #[config(default = false)]
    pub rescale_zero_terminal_snr: bool,
}

impl DiscreteScheduleConfig {
    /// Build the tables.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] if `num_train_timesteps == 0`; [`Error::InvalidParameter`] if
    /// `beta_start` or `beta_end` (or any computed β before rescaling) is outside (0, 1).
    pub fn init(&self) -> Result<DiscreteSchedule> {
        let axis = DiscreteTimesteps::new(self.num_train_timesteps)?;
        let n = self.num_train_timesteps;
        let betas = match self.beta_schedule {
            BetaSchedule::Linear => {
                check::open_unit("beta_start", self.beta_start)?;
                check::open_unit("beta_end", self.beta_end)?;
                linspace(self.beta_start, self.beta_end, n)
            }
            BetaSchedule::ScaledLinear => {
                check::open_unit("beta_start", self.beta_start)?;
                check::open_unit("beta_end", self.beta_end)?;
                linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            BetaSchedule::SquaredcosCapV2 => {
                let alpha_bar = |tau: f64| {
                    let c = ((tau + 0.008) / 1.008 * core::f64::consts::PI / 2.0).cos();
                    c * c
                };
                (0..n)
                    .map(|i| {
                        let t1 = i as f64 / n as f64;
                        let t2 = (i + 1) as f64 / n as f64;
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                    })
                    .collect()
            }
            BetaSchedule::Sigmoid => {
                check::open_unit("beta_start", self.beta_start)?;
                check::open_unit("beta_end", self.beta_end)?;
                linspace(-6.0, 6.0, n)
                    .into_iter()
                    .map(|x| 1.0 / (1.0 + (-x).exp()) * (self.beta_end - self.beta_start) + self.beta_start)
                    .collect()
            }
        };
        if let Some(&bad) = betas.iter().find(|&&b| !(b > 0.0 && b < 1.0)) {
            return Err(Error::invalid("beta", bad, "in (0, 1) for every level"));
        }
        let betas = if self.rescale_zero_terminal_snr {
            rescale_zero_terminal_snr(&betas)
        } else {
            betas
        };
        Ok(DiscreteSchedule::from_betas_unchecked(betas, axis))
    }
}

/// `torch.linspace(start, end, n)` in f64, element for element: torch fills the first half
/// forward from `start` and the second half backward from `end`, so both ends are exact.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                start + step * i as f64
            } else {
                end - step * (n - 1 - i) as f64
            }
        })
        .collect()
}

/// Lin et al. (2024), Algorithm 1: shift and scale `√ᾱ` so that `√ᾱ_{T−1} = 0` while keeping
/// `√ᾱ_0`, then recover the betas. The last β becomes 1.
pub fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let alphas_cumprod = cumprod_one_minus(betas);
    let mut sqrt_bar: Vec<f64> = alphas_cumprod.iter().map(|a| a.sqrt()).collect();
    let (first, last) = (sqrt_bar[0], *sqrt_bar.last().expect("non-empty"));
    for s in &mut sqrt_bar {
        *s = (*s - last) * first / (first - last);
    }
    let bar: Vec<f64> = sqrt_bar.iter().map(|s| s * s).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    for k in 1..bar.len() {
        out.push(1.0 - bar[k] / bar[k - 1]);
    }
    out
}

fn cumprod_one_minus(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0;
    betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc
        })
        .collect()
}

/// A discrete DDPM schedule: `β_k` and `ᾱ_k = Π_{j≤k}(1 − β_j)` for `k ∈ {0, …, T−1}`.
///
/// As a continuous [`Schedule`], level `k` sits at `t_k = 1 − (k+1)/T` (see
/// [`DiscreteTimesteps`]) and the clean data (ᾱ = 1) at `t = 1`; between grid times ᾱ is
/// interpolated linearly, so `α_t = √ᾱ(t)`, `σ_t = √(1 − ᾱ(t))` agree with the table exactly
/// at every level and α̇, σ̇ are the derivatives of that interpolant.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteSchedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    axis: DiscreteTimesteps,
}

impl DiscreteSchedule {
    fn from_betas_unchecked(betas: Vec<f64>, axis: DiscreteTimesteps) -> Self {
        let alphas_cumprod = cumprod_one_minus(&betas);
        Self {
            betas,
            alphas_cumprod,
            axis,
        }
    }

    /// A schedule from an explicit β table (e.g. one trained elsewhere).
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for an empty table; [`Error::InvalidParameter`] if a β is
    /// outside (0, 1] (β = 1 is allowed, for a zero-terminal-SNR last level).
    pub fn from_betas(betas: Vec<f64>) -> Result<Self> {
        let axis = DiscreteTimesteps::new(betas.len())?;
        if let Some(&bad) = betas.iter().find(|&&b| !(b > 0.0 && b <= 1.0)) {
            return Err(Error::invalid("beta", bad, "in (0, 1]"));
        }
        Ok(Self::from_betas_unchecked(betas, axis))
    }

    /// The β table.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// The ᾱ table.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// The discrete time axis (T levels).
    pub fn timesteps(&self) -> DiscreteTimesteps {
        self.axis
    }

    /// ᾱ at level `k`, and 1 at level "−1" (the clean data) when `k` is `None`.
    ///
    /// # Errors
    /// [`Error::TimestepOutOfRange`] if `k ≥ T`.
    pub fn alpha_bar(&self, k: Option<usize>) -> Result<f64> {
        match k {
            None => Ok(1.0),
            Some(k) => self.alphas_cumprod.get(k).copied().ok_or(Error::TimestepOutOfRange {
                timestep: k,
                num_train_timesteps: self.axis.len(),
            }),
        }
    }

    /// The forward process at integer levels: `x_k = √ᾱ_k x_clean + √(1 − ᾱ_k) ε`, row `i` at
    /// level `timesteps[i]` (diffusers' `add_noise`; note that flowforge calls the clean data
    /// x₁ and the noise x₀).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `clean` and `noise` differ in shape or the batch is not
    /// `timesteps.len()`; [`Error::TimestepOutOfRange`] for a level ≥ T.
    pub fn add_noise<const D: usize>(
        &self,
        clean: Tensor<D>,
        noise: Tensor<D>,
        timesteps: &[usize],
    ) -> Result<Tensor<D>> {
        flowforge_core::tensor::ensure_same_shape("noise vs clean", &clean, &noise)?;
        flowforge_core::tensor::ensure_batch("clean vs timesteps", &clean, timesteps.len())?;
        let bars = timesteps
            .iter()
            .map(|&k| self.alpha_bar(Some(k)))
            .collect::<Result<Vec<_>>>()?;
        let device = clean.device();
        let mut shape = [1usize; D];
        shape[0] = bars.len();
        let column = |f: &dyn Fn(f64) -> f64| {
            let values: Vec<f64> = bars.iter().map(|&a| f(a)).collect();
            Tensor::<D>::from_data(TensorData::new(values, shape), &device)
        };
        let signal = column(&|a| a.sqrt());
        let noise_scale = column(&|a| (1.0 - a).sqrt());
        Ok(clean * signal + noise * noise_scale)
    }

    /// The segment of the ᾱ interpolant containing `t`: `(ᾱ_lo, ᾱ_hi, frac)` with
    /// `ᾱ(t) = ᾱ_lo (1 − frac) + ᾱ_hi frac`, where "lo" is the less noisy knot.
    fn segment(&self, t: f64) -> (f64, f64, f64) {
        let n = self.axis.len();
        // Position on the axis: −1 at t = 1 (clean), T − 1 at t = 0.
        let position = n as f64 * (1.0 - t) - 1.0;
        let lo = position.floor().clamp(-1.0, n as f64 - 2.0);
        let frac = position - lo;
        let knot = |k: f64| {
            if k < 0.0 {
                1.0
            } else {
                self.alphas_cumprod[k as usize]
            }
        };
        (knot(lo), knot(lo + 1.0), frac)
    }

    fn alpha_bar_continuous(&self, t: f64) -> f64 {
        let (a, b, frac) = self.segment(t);
        a + (b - a) * frac
    }

    fn d_alpha_bar_continuous(&self, t: f64) -> f64 {
        let (a, b, _) = self.segment(t);
        // d position / dt = −T
        -(b - a) * self.axis.len() as f64
    }
}

impl Schedule for DiscreteSchedule {
    fn alpha(&self, t: f64) -> f64 {
        self.alpha_bar_continuous(t).sqrt()
    }
    fn sigma(&self, t: f64) -> f64 {
        (1.0 - self.alpha_bar_continuous(t)).max(0.0).sqrt()
    }
    fn d_alpha(&self, t: f64) -> f64 {
        self.d_alpha_bar_continuous(t) / (2.0 * self.alpha(t))
    }
    fn d_sigma(&self, t: f64) -> f64 {
        -self.d_alpha_bar_continuous(t) / (2.0 * self.sigma(t))
    }
    fn d_sigma2(&self, t: f64) -> f64 {
        -self.d_alpha_bar_continuous(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn linspace_matches_torch_endpoints() {
        let v = linspace(0.0001, 0.02, 1000);
        assert_eq!(v[0], 0.0001);
        assert_eq!(v[999], 0.02);
        assert_eq!(v.len(), 1000);
    }

    #[test]
    fn continuous_reading_hits_the_table_at_grid_times() {
        let s = DiscreteScheduleConfig::new().init().unwrap();
        let axis = s.timesteps();
        for k in [0, 1, 10, 500, 998, 999] {
            let t = axis.to_time(k).unwrap().value();
            assert_relative_eq!(s.alpha(t).powi(2), s.alphas_cumprod()[k], max_relative = 1e-12);
        }
        assert_eq!(s.alpha(1.0), 1.0);
        assert_eq!(s.sigma(1.0), 0.0);
    }

    #[test]
    fn zero_terminal_snr_ends_at_pure_noise() {
        let s = DiscreteScheduleConfig::new()
            .with_beta_schedule(BetaSchedule::ScaledLinear)
            .with_beta_start(0.00085)
            .with_beta_end(0.012)
            .with_rescale_zero_terminal_snr(true)
            .init()
            .unwrap();
        let plain = DiscreteScheduleConfig::new()
            .with_beta_schedule(BetaSchedule::ScaledLinear)
            .with_beta_start(0.00085)
            .with_beta_end(0.012)
            .init()
            .unwrap();
        assert!(s.alphas_cumprod()[999].abs() < 1e-15);
        assert_relative_eq!(s.alphas_cumprod()[0], plain.alphas_cumprod()[0], max_relative = 1e-12);
        assert_eq!(s.alpha(0.0), 0.0);
    }

    #[test]
    fn sigmoid_betas_follow_the_logistic_curve() {
        let s = DiscreteScheduleConfig::new()
            .with_beta_schedule(BetaSchedule::Sigmoid)
            .with_beta_start(0.0001)
            .with_beta_end(0.02)
            .init()
            .unwrap();
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let b = s.betas();
        assert_relative_eq!(b[0], sigmoid(-6.0) * (0.02 - 0.0001) + 0.0001, max_relative = 1e-14);
        assert_relative_eq!(b[999], sigmoid(6.0) * (0.02 - 0.0001) + 0.0001, max_relative = 1e-14);
        // Symmetric about the middle: β_k + β_{T−1−k} = β_start + β_end.
        assert_relative_eq!(b[100] + b[899], 0.0201, max_relative = 1e-12);
        assert!(b.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn invalid_betas_are_typed_errors() {
        let err = DiscreteScheduleConfig::new().with_beta_end(1.5).init().unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "beta_end", .. }));
        let err = DiscreteScheduleConfig::new().with_beta_start(0.0).init().unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "beta_start", .. }));
        let err = DiscreteScheduleConfig::new()
            .with_num_train_timesteps(0)
            .init()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidCount { name: "num_train_timesteps", .. }));
        assert!(DiscreteSchedule::from_betas(vec![0.1, -0.2]).is_err());
    }
}
