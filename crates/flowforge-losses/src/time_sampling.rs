//! Where training times come from, and how each time's loss is weighted.
//!
//! All densities are over flowforge time (t = 0 noise, t = 1 data). Densities published in the
//! reversed convention (SD3's logit-normal and mode-with-scale are over a noise time) are
//! converted through [`ReversedTime`] by their constructors.

use flowforge_core::error::check;
use flowforge_core::{Coefficient, DiscreteTimesteps, EdmSigma, Error, PredictionKind, Result, ReversedTime, Time, Times};
use flowforge_paths::Schedule;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// A density of training times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TimeSampling {
    /// `t ~ U(low, high)`.
    Uniform {
        /// Lower end (≥ 0).
        low: f64,
        /// Upper end (≤ 1).
        high: f64,
    },
    /// DDPM's integer levels: `k ~ U{0, …, T−1}`, `t = 1 − (k+1)/T` (Ho et al. 2020).
    DiscreteUniform {
        /// Number of levels T.
        num_train_timesteps: usize,
    },
    /// `t = sigmoid(mean + std·n)`, `n ~ N(0, 1)` (Esser et al., *Scaling Rectified Flow
    /// Transformers*, 2024, eq. 19, in flowforge time; see [`TimeSampling::sd3_logit_normal`]).
    LogitNormal {
        /// Mean of the logit.
        mean: f64,
        /// Standard deviation of the logit.
        std: f64,
    },
    /// EDM's log-normal noise levels, `log σ ~ N(p_mean, p_std²)` (Karras et al. 2022, Table 1:
    /// −1.2, 1.2), mapped to times through the path's schedule; σ is clamped to the schedule's
    /// range.
    LogNormalSigma {
        /// P_mean.
        p_mean: f64,
        /// P_std.
        p_std: f64,
    },
    /// SD3's mode-with-scale density (Esser et al. 2024, eq. 20): the noise time
    /// `s = 1 − u − scale·(cos²(πu/2) − 1 + u)`, `u ~ U(0, 1)`, as flowforge time `t = 1 − s`.
    ModeWithScale {
        /// The scale s ∈ [−1, 2/(π − 2)].
        scale: f64,
    },
}

impl Default for TimeSampling {
    fn default() -> Self {
        TimeSampling::Uniform { low: 0.0, high: 1.0 }
    }
}

impl TimeSampling {
    /// SD3's logit-normal over its noise time `s` (`logit s ~ N(m, std²)`; m = 0, std = 1 in the
    /// paper) as flowforge time: `logit t = −logit s`, so the mean flips sign.
    pub fn sd3_logit_normal(m: f64, std: f64) -> Self {
        TimeSampling::LogitNormal { mean: -m, std }
    }

    /// EDM's defaults (P_mean = −1.2, P_std = 1.2).
    pub fn edm() -> Self {
        TimeSampling::LogNormalSigma { p_mean: -1.2, p_std: 1.2 }
    }

    /// Validate the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] / [`Error::InconsistentParameters`] / [`Error::InvalidCount`]
    /// naming the bad parameter.
    pub fn validate(&self) -> Result<()> {
        match *self {
            TimeSampling::Uniform { low, high } => {
                Time::new(low)?;
                Time::new(high)?;
                check::ordered("low", low, "high", high)
            }
            TimeSampling::DiscreteUniform { num_train_timesteps } => DiscreteTimesteps::new(num_train_timesteps).map(|_| ()),
            TimeSampling::LogitNormal { mean, std } => {
                check::finite("mean", mean)?;
                check::positive("std", std).map(|_| ())
            }
            TimeSampling::LogNormalSigma { p_mean, p_std } => {
                check::finite("p_mean", p_mean)?;
                check::positive("p_std", p_std).map(|_| ())
            }
            TimeSampling::ModeWithScale { scale } => {
                let max = 2.0 / (core::f64::consts::PI - 2.0);
                if (-1.0..=max).contains(&scale) {
                    Ok(())
                } else {
                    Err(Error::invalid("scale", scale, "in [-1, 2/(π - 2)] so the density stays monotone"))
                }
            }
        }
    }

    /// `n` times, one per sample; `schedule` maps EDM noise levels to times (ignored by the
    /// other densities).
    ///
    /// # Errors
    /// As [`TimeSampling::validate`]; [`Error::OutOfScheduleRange`] if σ cannot be mapped.
    pub fn sample<R: Rng + ?Sized, S: Schedule + ?Sized>(&self, n: usize, rng: &mut R, schedule: &S) -> Result<Times> {
        self.validate()?;
        let normal = |rng: &mut R| -> f64 { StandardNormal.sample(rng) };
        let values: Vec<f64> = match *self {
            TimeSampling::Uniform { low, high } => (0..n).map(|_| low + (high - low) * rng.random::<f64>()).collect(),
            TimeSampling::DiscreteUniform { num_train_timesteps } => {
                let axis = DiscreteTimesteps::new(num_train_timesteps)?;
                (0..n).map(|_| axis.time_unchecked(rng.random_range(0..num_train_timesteps))).collect()
            }
            TimeSampling::LogitNormal { mean, std } => (0..n).map(|_| 1.0 / (1.0 + (-(mean + std * normal(rng))).exp())).collect(),
            TimeSampling::LogNormalSigma { p_mean, p_std } => {
                let top = schedule.edm_sigma(Time::SOURCE).value();
                let bottom = schedule.edm_sigma(Time::DATA).value();
                (0..n)
                    .map(|_| {
                        let sigma = (p_mean + p_std * normal(rng)).exp().clamp(bottom, top);
                        schedule.time_at_edm_sigma(EdmSigma::new(sigma)?).map(Time::value)
                    })
                    .collect::<Result<_>>()?
            }
            TimeSampling::ModeWithScale { scale } => (0..n)
                .map(|_| {
                    let u: f64 = rng.random();
                    let c = (core::f64::consts::FRAC_PI_2 * u).cos();
                    let s = (1.0 - u - scale * (c * c - 1.0 + u)).clamp(0.0, 1.0);
                    Ok(Time::from(ReversedTime::new(s)?).value())
                })
                .collect::<Result<_>>()?,
        };
        Times::per_sample(values)
    }
}

/// How each sample's squared error is weighted in a diffusion loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Weighting {
    /// Every time counts the same.
    #[default]
    Uniform,
    /// `w = SNR(t) = α²/σ²` (Kingma et al., *VDM*, 2021: the ε-loss weighted into an x̂₁-loss).
    Snr,
    /// Min-SNR-γ (Hang et al., *Efficient Diffusion Training via Min-SNR Weighting Strategy*,
    /// ICCV 2023): `min(SNR, γ)` expressed for the loss's prediction kind — divided by SNR for
    /// ε, by SNR + 1 for v, as is for x̂₁.
    MinSnr {
        /// γ (5 in the paper).
        gamma: f64,
    },
    /// EDM's `λ(σ) = (σ² + σ_data²)/(σ σ_data)²` (Karras et al. 2022, eq. 8) with σ = σ_t/α_t,
    /// for a denoiser (x̂₁) loss.
    Edm {
        /// σ_data.
        sigma_data: f64,
    },
}

impl Weighting {
    /// The weight of each sample for a loss on prediction kind `kind`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a non-positive γ or σ_data; [`Error::SingularTime`] where
    /// the weight is infinite (σ_t = 0 for the SNR weightings).
    pub fn weights<S: Schedule + ?Sized>(&self, t: &Times, kind: PredictionKind, schedule: &S) -> Result<Coefficient> {
        match *self {
            Weighting::MinSnr { gamma } => {
                check::positive("gamma", gamma)?;
            }
            Weighting::Edm { sigma_data } => {
                check::positive("sigma_data", sigma_data)?;
            }
            _ => {}
        }
        let snr2 = |t: f64| {
            let r = schedule.snr(t);
            r * r
        };
        let weights = t.map(|time| match *self {
            Weighting::Uniform => 1.0,
            Weighting::Snr => snr2(time),
            Weighting::MinSnr { gamma } => {
                let snr = snr2(time);
                let clipped = snr.min(gamma);
                match kind {
                    PredictionKind::Noise => clipped / snr,
                    PredictionKind::VPrediction => clipped / (snr + 1.0),
                    _ => clipped,
                }
            }
            Weighting::Edm { sigma_data } => {
                let sigma = schedule.sigma(time) / schedule.alpha(time);
                (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data).powi(2)
            }
        });
        if let Some(i) = weights.first_non_finite() {
            return Err(Error::SingularTime {
                what: "the loss weight",
                t: t.as_shared().unwrap_or_else(|| t.get(i)),
                reason: "it is infinite where σ_t = 0; sample times below 1",
            });
        }
        Ok(weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowforge_paths::{CondOt, EdmConfig, VpConfig};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn moments(t: &Times) -> (f64, f64) {
        let v = t.to_vec();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (m, v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64)
    }

    #[test]
    fn densities_have_their_moments() {
        let mut rng = StdRng::seed_from_u64(0);
        let n = 100_000;
        let uniform = TimeSampling::default().sample(n, &mut rng, &CondOt::default()).unwrap();
        let (m, v) = moments(&uniform);
        assert!((m - 0.5).abs() < 0.005 && (v - 1.0 / 12.0).abs() < 0.002);
        // SD3's logit-normal(0, 1) is symmetric about 1/2 in either convention; with m = 1
        // (more noise in SD3's time) flowforge times concentrate below 1/2.
        let shifted = TimeSampling::sd3_logit_normal(1.0, 1.0).sample(n, &mut rng, &CondOt::default()).unwrap();
        assert!(moments(&shifted).0 < 0.35);
        let discrete = TimeSampling::DiscreteUniform { num_train_timesteps: 10 }.sample(n, &mut rng, &CondOt::default()).unwrap();
        assert!(discrete.to_vec().iter().all(|t| ((t * 10.0).round() - t * 10.0).abs() < 1e-9 && *t < 1.0));
        // EDM log-normal: log σ has mean −1.2 (σ within the EDM range almost surely).
        let edm = EdmConfig::new().init().unwrap();
        let times = TimeSampling::edm().sample(n, &mut rng, &edm).unwrap();
        let log_sigma: Vec<f64> = times.to_vec().iter().map(|&t| edm.sigma(t).ln()).collect();
        let mean = log_sigma.iter().sum::<f64>() / n as f64;
        assert!((mean + 1.2).abs() < 0.02, "{mean}");
        // Mode-with-scale with scale 0 is uniform.
        let mode = TimeSampling::ModeWithScale { scale: 0.0 }.sample(n, &mut rng, &CondOt::default()).unwrap();
        assert!((moments(&mode).0 - 0.5).abs() < 0.005);
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        let mut rng = StdRng::seed_from_u64(0);
        let s = CondOt::default();
        assert!(matches!(TimeSampling::Uniform { low: 0.5, high: 0.2 }.sample(3, &mut rng, &s), Err(Error::InconsistentParameters { .. })));
        assert!(matches!(TimeSampling::LogitNormal { mean: 0.0, std: -1.0 }.sample(3, &mut rng, &s), Err(Error::InvalidParameter { name: "std", .. })));
        assert!(matches!(TimeSampling::DiscreteUniform { num_train_timesteps: 0 }.sample(3, &mut rng, &s), Err(Error::InvalidCount { .. })));
        assert!(matches!(TimeSampling::ModeWithScale { scale: 5.0 }.sample(3, &mut rng, &s), Err(Error::InvalidParameter { name: "scale", .. })));
    }

    #[test]
    fn min_snr_weights_follow_the_paper() {
        let vp = VpConfig::new().init().unwrap();
        let t = Times::per_sample(vec![0.2, 0.9]).unwrap();
        let snr: Vec<f64> = t.to_vec().iter().map(|&t| vp.snr(t).powi(2)).collect();
        assert!(snr[0] < 5.0 && snr[1] > 5.0);
        let w = Weighting::MinSnr { gamma: 5.0 }.weights(&t, PredictionKind::Noise, &vp).unwrap();
        assert!((w.values()[0] - 1.0).abs() < 1e-12);
        assert!((w.values()[1] - 5.0 / snr[1]).abs() < 1e-12);
        let w = Weighting::MinSnr { gamma: 5.0 }.weights(&t, PredictionKind::VPrediction, &vp).unwrap();
        assert!((w.values()[1] - 5.0 / (snr[1] + 1.0)).abs() < 1e-12);
        assert!(matches!(
            Weighting::Snr.weights(&Times::shared(1.0, 1).unwrap(), PredictionKind::Noise, &vp),
            Err(Error::SingularTime { .. })
        ));
        let edm = EdmConfig::new().init().unwrap();
        let w = Weighting::Edm { sigma_data: 0.5 }.weights(&Times::shared(0.5, 1).unwrap(), PredictionKind::Data, &edm).unwrap();
        let sigma = edm.sigma(0.5);
        assert!((w.values()[0] - (sigma * sigma + 0.25) / (sigma * 0.5).powi(2)).abs() < 1e-9);
    }
}
