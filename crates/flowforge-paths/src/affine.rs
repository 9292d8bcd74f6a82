//! The affine probability path `x_t = σ_t x₀ + α_t x₁` on any [`Schedule`], its conditional
//! velocity, the regression targets of every prediction kind, and conversions between
//! prediction kinds.

use crate::schedule::{Schedule, ScheduleValues};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use flowforge_core::tensor::{ensure_batch, ensure_same_shape};
use flowforge_core::{
    Coefficient, Error, PredictionKind, PredictionType, Predicted, Result, Times,
};

/// A denominator smaller than this in magnitude makes a conversion singular: the result would
/// be dominated by round-off (or be ±∞), so a typed error is returned instead.
pub const SINGULARITY_THRESHOLD: f64 = 1e-12;

/// A sample of a conditional path: the point `x_t` and the conditional velocity `dx_t/dt`.
#[derive(Debug, Clone)]
pub struct PathSample<const D: usize> {
    /// `x_t`.
    pub x_t: Tensor<D>,
    /// `dx_t/dt`, the flow-matching regression target.
    pub dx_t: Tensor<D>,
}

/// The schedule coefficients of a batch, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct PathCoefficients {
    /// α_t.
    pub alpha: Coefficient,
    /// σ_t.
    pub sigma: Coefficient,
    /// α̇_t.
    pub d_alpha: Coefficient,
    /// σ̇_t.
    pub d_sigma: Coefficient,
}

/// A conditional path between a source sample `x₀` and a data sample `x₁`.
///
/// This is the one capability losses need from a path: a point on it and the velocity there.
/// Paths with an extra Gaussian term (the Brownian bridge) consume `noise`; deterministic
/// interpolants ignore it.
pub trait ConditionalPath {
    /// Whether [`ConditionalPath::sample_conditional`] uses its `noise` argument.
    fn needs_noise(&self) -> bool;

    /// `x_t` and `dx_t/dt` for source `x0`, data `x1`, optional extra noise, at times `t`.
    ///
    /// # Errors
    /// Shape mismatches, or a time at which the path velocity is undefined.
    fn sample_conditional<const D: usize>(
        &self,
        x0: Tensor<D>,
        x1: Tensor<D>,
        noise: Option<Tensor<D>>,
        t: &Times,
    ) -> Result<PathSample<D>>;
}

/// The affine Gaussian path `x_t = σ_t x₀ + α_t x₁`, `x₀ ~ N(0, I)` (Lipman et al., *Flow
/// Matching Guide and Code*, 2024, §4.8; flow_matching's `AffineProbPath`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AffinePath<S> {
    schedule: S,
}

impl<S: Schedule> AffinePath<S> {
    /// The path of `schedule`.
    pub fn new(schedule: S) -> Self {
        Self { schedule }
    }

    /// The schedule.
    pub fn schedule(&self) -> &S {
        &self.schedule
    }

    /// α_t, σ_t, α̇_t, σ̇_t of every sample.
    pub fn coefficients(&self, t: &Times) -> PathCoefficients {
        PathCoefficients {
            alpha: t.map(|t| self.schedule.alpha(t)),
            sigma: t.map(|t| self.schedule.sigma(t)),
            d_alpha: t.map(|t| self.schedule.d_alpha(t)),
            d_sigma: t.map(|t| self.schedule.d_sigma(t)),
        }
    }

    /// `x_t = σ_t x₀ + α_t x₁` and `dx_t = σ̇_t x₀ + α̇_t x₁`.
    ///
    /// # Shapes
    /// `x0`, `x1`: `[batch, …]`; `t`: `batch` times.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x0` and `x1` differ or the batch is not `t.len()`;
    /// [`Error::SingularTime`] where the schedule's derivative is infinite (e.g. VP at t = 1).
    pub fn sample<const D: usize>(
        &self,
        x0: Tensor<D>,
        x1: Tensor<D>,
        t: &Times,
    ) -> Result<PathSample<D>> {
        ensure_same_shape("x1 vs x0", &x0, &x1)?;
        ensure_batch("x0 vs times", &x0, t.len())?;
        let c = self.coefficients(t);
        for coefficient in [&c.d_alpha, &c.d_sigma] {
            if let Some(i) = coefficient.first_non_finite() {
                return Err(Error::SingularTime {
                    what: "the conditional velocity dx_t/dt",
                    t: t.as_shared().unwrap_or_else(|| t.get(i)),
                    reason: "the schedule derivative is infinite there",
                });
            }
        }
        let x_t = c.sigma.combine(x0.clone(), &c.alpha, x1.clone());
        let dx_t = c.d_sigma.combine(x0, &c.d_alpha, x1);
        Ok(PathSample { x_t, dx_t })
    }

    /// The point `x_t = σ_t x₀ + α_t x₁` alone (no velocity, so no singular derivative).
    ///
    /// # Errors
    /// Shape errors as [`AffinePath::sample`].
    pub fn point<const D: usize>(&self, x0: Tensor<D>, x1: Tensor<D>, t: &Times) -> Result<Tensor<D>> {
        ensure_same_shape("x1 vs x0", &x0, &x1)?;
        ensure_batch("x0 vs times", &x0, t.len())?;
        let alpha = t.map(|t| self.schedule.alpha(t));
        let sigma = t.map(|t| self.schedule.sigma(t));
        Ok(sigma.combine(x0, &alpha, x1))
    }

    /// The conditional regression target of prediction kind `P` for the pair `(x0, x1)`:
    /// noise `x₀`, data `x₁`, velocity `σ̇ x₀ + α̇ x₁`, v `α x₀ − σ x₁`, score `−x₀/σ`
    /// (the score of `N(α_t x₁, σ_t² I)` at `x_t`).
    ///
    /// # Errors
    /// Shape errors as [`AffinePath::sample`]; [`Error::SingularConversion`] for the score
    /// where σ_t = 0; [`Error::SingularTime`] for the velocity where a derivative is infinite.
    pub fn target<P: PredictionType, const D: usize>(
        &self,
        x0: Tensor<D>,
        x1: Tensor<D>,
        t: &Times,
    ) -> Result<Predicted<P, D>> {
        self.target_kind(P::KIND, x0, x1, t).map(Predicted::new)
    }

    /// [`AffinePath::target`] with a runtime kind.
    ///
    /// # Errors
    /// As [`AffinePath::target`].
    pub fn target_kind<const D: usize>(
        &self,
        kind: PredictionKind,
        x0: Tensor<D>,
        x1: Tensor<D>,
        t: &Times,
    ) -> Result<Tensor<D>> {
        ensure_same_shape("x1 vs x0", &x0, &x1)?;
        ensure_batch("x0 vs times", &x0, t.len())?;
        Ok(match kind {
            PredictionKind::Noise => x0,
            PredictionKind::Data => x1,
            PredictionKind::Velocity => self.sample(x0, x1, t)?.dx_t,
            PredictionKind::VPrediction => {
                let alpha = t.map(|t| self.schedule.alpha(t));
                let minus_sigma = t.map(|t| -self.schedule.sigma(t));
                alpha.combine(x0, &minus_sigma, x1)
            }
            PredictionKind::Score => {
                let scale = self.per_time(t, |v| {
                    nonzero(v.sigma, "σ_t = 0").map(|sigma| -1.0 / sigma)
                }, PredictionKind::Noise, PredictionKind::Score)?;
                scale.scale(x0)
            }
        })
    }

    /// Convert a prediction of kind `F` at `(x_t, t)` into kind `T`.
    ///
    /// Every conversion is `c_x(t) x_t + c_y(t) y` with host-computed coefficients (see
    /// [`AffinePath::conversion_coefficients`]); the score assumes a standard Gaussian source.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`]; [`Error::SingularConversion`] where a coefficient divided by
    /// vanishes (e.g. noise → data at α_t = 0).
    pub fn convert<F: PredictionType, T: PredictionType, const D: usize>(
        &self,
        prediction: Predicted<F, D>,
        x_t: Tensor<D>,
        t: &Times,
    ) -> Result<Predicted<T, D>> {
        self.convert_kind(F::KIND, T::KIND, prediction.into_tensor(), x_t, t)
            .map(Predicted::new)
    }

    /// [`AffinePath::convert`] with runtime kinds.
    ///
    /// # Errors
    /// As [`AffinePath::convert`].
    pub fn convert_kind<const D: usize>(
        &self,
        from: PredictionKind,
        to: PredictionKind,
        prediction: Tensor<D>,
        x_t: Tensor<D>,
        t: &Times,
    ) -> Result<Tensor<D>> {
        ensure_same_shape("prediction vs x_t", &x_t, &prediction)?;
        ensure_batch("x_t vs times", &x_t, t.len())?;
        if from == to {
            return Ok(prediction);
        }
        let (c_x, c_y) = self.conversion_coefficients(from, to, t)?;
        Ok(c_x.combine(x_t, &c_y, prediction))
    }

    /// The coefficients `(c_x, c_y)` with `to = c_x x_t + c_y from`, per time.
    ///
    /// # Errors
    /// [`Error::SingularConversion`] naming the first time where a needed denominator is
    /// below [`SINGULARITY_THRESHOLD`].
    pub fn conversion_coefficients(
        &self,
        from: PredictionKind,
        to: PredictionKind,
        t: &Times,
    ) -> Result<(Coefficient, Coefficient)> {
        let pairs = self.per_time_pair(t, |v| conversion_at(from, to, v), from, to)?;
        Ok(pairs)
    }

    fn per_time(
        &self,
        t: &Times,
        f: impl Fn(ScheduleValues) -> core::result::Result<f64, &'static str>,
        from: PredictionKind,
        to: PredictionKind,
    ) -> Result<Coefficient> {
        let (a, _) = self.per_time_pair(t, |v| f(v).map(|a| (a, 0.0)), from, to)?;
        Ok(a)
    }

    fn per_time_pair(
        &self,
        t: &Times,
        f: impl Fn(ScheduleValues) -> core::result::Result<(f64, f64), &'static str>,
        from: PredictionKind,
        to: PredictionKind,
    ) -> Result<(Coefficient, Coefficient)> {
        let eval = |time: f64| {
            f(self.schedule.values(time)).map_err(|reason| Error::SingularConversion {
                from,
                to,
                t: time,
                reason,
            })
        };
        match t.as_shared() {
            Some(time) => {
                let (a, b) = eval(time)?;
                Ok((Coefficient::Shared(a), Coefficient::Shared(b)))
            }
            None => {
                let mut xs = Vec::with_capacity(t.len());
                let mut ys = Vec::with_capacity(t.len());
                for time in t.to_vec() {
                    let (a, b) = eval(time)?;
                    xs.push(a);
                    ys.push(b);
                }
                Ok((Coefficient::PerSample(xs), Coefficient::PerSample(ys)))
            }
        }
    }
}

/// The Gaussian transition of an affine path from a noisier time `t` to a cleaner time `s`
/// (Kingma et al., *Variational Diffusion Models*, 2021, §3.2 and App. A): the forward kernel
/// `q(x_t | x_s) = N(α_{t|s} x_s, σ²_{t|s} I)` with `α_{t|s} = α_t/α_s`,
/// `σ²_{t|s} = σ_t² − α²_{t|s} σ_s²`, and the posterior
/// `q(x_s | x_t, x₁) = N(c_data x₁ + c_x x_t, σ²_{t|s} σ_s²/σ_t² I)`. On a DDPM table at
/// consecutive levels, `σ²_{t|s}` is β and the posterior variance is β̃ (Ho et al. 2020, eq. 7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianTransition {
    /// `α_{t|s}`.
    pub alpha_ts: f64,
    /// `σ²_{t|s}` (DDPM's β between the two levels).
    pub sigma2_ts: f64,
    /// Posterior-mean coefficient of the data `x₁`: `α_s σ²_{t|s}/σ_t²`.
    pub posterior_data: f64,
    /// Posterior-mean coefficient of `x_t`: `α_{t|s} σ_s²/σ_t²`.
    pub posterior_x: f64,
    /// Posterior variance `σ²_{t|s} σ_s²/σ_t²` (DDPM's β̃).
    pub posterior_variance: f64,
}

/// The variance of DDPM's reverse transitions (diffusers' `variance_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DdpmVariance {
    /// The true posterior variance `σ²_{t|s} σ_s²/σ_t²` (β̃ in Ho et al. 2020), clamped at 1e-20.
    #[default]
    FixedSmall,
    /// The forward variance `σ²_{t|s}` (β in Ho et al. 2020).
    FixedLarge,
}

impl DdpmVariance {
    /// The variance of this choice for a transition (fixed_small clamped at 1e-20 as diffusers).
    pub fn of(&self, q: &GaussianTransition) -> f64 {
        match self {
            DdpmVariance::FixedSmall => q.posterior_variance.max(1e-20),
            DdpmVariance::FixedLarge => q.sigma2_ts,
        }
    }
}

impl<S: Schedule> AffinePath<S> {
    /// The Gaussian transition from `t_cur` (noisier) to `t_next` (cleaner).
    ///
    /// # Errors
    /// [`Error::SingularTime`] unless σ > 0 at `t_cur` and α > 0 at `t_next`.
    pub fn transition(&self, t_cur: f64, t_next: f64) -> Result<GaussianTransition> {
        let (cur, next) = (self.schedule.values(t_cur), self.schedule.values(t_next));
        if !(cur.sigma > 0.0 && next.alpha > 0.0) {
            return Err(Error::SingularTime {
                what: "the Gaussian transition between two times",
                t: t_cur,
                reason: "needs σ > 0 at the noisier time and α > 0 at the cleaner one",
            });
        }
        let alpha_ts = cur.alpha / next.alpha;
        let sigma2_ts = (cur.sigma * cur.sigma - alpha_ts * alpha_ts * next.sigma * next.sigma).max(0.0);
        let sigma2_t = cur.sigma * cur.sigma;
        Ok(GaussianTransition {
            alpha_ts,
            sigma2_ts,
            posterior_data: next.alpha * sigma2_ts / sigma2_t,
            posterior_x: alpha_ts * next.sigma * next.sigma / sigma2_t,
            posterior_variance: sigma2_ts * next.sigma * next.sigma / sigma2_t,
        })
    }
}

impl<S: Schedule> ConditionalPath for AffinePath<S> {
    fn needs_noise(&self) -> bool {
        false
    }

    fn sample_conditional<const D: usize>(
        &self,
        x0: Tensor<D>,
        x1: Tensor<D>,
        _noise: Option<Tensor<D>>,
        t: &Times,
    ) -> Result<PathSample<D>> {
        self.sample(x0, x1, t)
    }
}

fn nonzero(value: f64, reason: &'static str) -> core::result::Result<f64, &'static str> {
    if value.is_finite() && value.abs() >= SINGULARITY_THRESHOLD {
        Ok(value)
    } else {
        Err(reason)
    }
}

/// A linear form `a x_t + b y`.
type Form = (f64, f64);

/// The coefficients of `to = c_x x_t + c_y y` where `y` is a `from` prediction, at one time.
///
/// `from` is first expressed in the basis (ε̂, x̂₁) — each of which may be unavailable when its
/// denominator vanishes — and `to` is then assembled from the basis elements it actually uses.
fn conversion_at(
    from: PredictionKind,
    to: PredictionKind,
    v: ScheduleValues,
) -> core::result::Result<(f64, f64), &'static str> {
    use PredictionKind::*;
    let ScheduleValues {
        alpha: a,
        sigma: s,
        d_alpha: da,
        d_sigma: ds,
    } = v;
    if from == to {
        return Ok((0.0, 1.0));
    }
    type Basis = core::result::Result<Form, &'static str>;
    // ε̂ and x̂₁ as forms in (x_t, y).
    let (eps, data): (Basis, Basis) = match from {
        Noise => (Ok((0.0, 1.0)), nonzero(a, "α_t = 0: the noise carries no information about the data").map(|a| (1.0 / a, -s / a))),
        Data => (nonzero(s, "σ_t = 0: x_t carries no noise to recover").map(|s| (1.0 / s, -a / s)), Ok((0.0, 1.0))),
        Velocity => {
            let det = s * da - a * ds;
            match nonzero(det, "σ_t α̇_t − α_t σ̇_t = 0: the velocity does not determine the endpoints") {
                Ok(det) => (Ok((da / det, -a / det)), Ok((-ds / det, s / det))),
                Err(r) => (Err(r), Err(r)),
            }
        }
        VPrediction => match nonzero(a * a + s * s, "α_t² + σ_t² = 0") {
            Ok(n) => (Ok((s / n, a / n)), Ok((a / n, -s / n))),
            Err(r) => (Err(r), Err(r)),
        },
        Score => (
            Ok((0.0, -s)),
            nonzero(a, "α_t = 0: the score carries no information about the data").map(|a| (1.0 / a, s * s / a)),
        ),
    };
    // Linear combination `p ε̂ + q x̂₁`, needing only the basis elements with nonzero weight.
    let combine = |p: f64, q: f64| -> core::result::Result<Form, &'static str> {
        let mut out = (0.0, 0.0);
        for (w, basis) in [(p, &eps), (q, &data)] {
            if w != 0.0 {
                let (bx, by) = (*basis)?;
                out.0 += w * bx;
                out.1 += w * by;
            }
        }
        Ok(out)
    };
    let result = match to {
        Noise => combine(1.0, 0.0)?,
        Data => combine(0.0, 1.0)?,
        Velocity => combine(ds, da)?,
        VPrediction => combine(a, -s)?,
        Score => {
            let s = nonzero(s, "σ_t = 0: the score is undefined at the data end")?;
            combine(-1.0 / s, 0.0)?
        }
    };
    if result.0.is_finite() && result.1.is_finite() {
        Ok(result)
    } else {
        Err("a schedule coefficient is not finite at this time")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::{CondOt, CosineConfig};
    use burn::tensor::Device;
    use flowforge_core::tensor::{tensor_from_rows, tensor_to_vec};
    use flowforge_core::{Data, Noise, Velocity};

    fn device() -> Device {
        Device::flex()
    }

    #[test]
    fn condot_sample_is_the_straight_line() {
        let path = AffinePath::new(CondOt::default());
        let x0 = tensor_from_rows(&[vec![1.0, 2.0], vec![0.0, -1.0]], &device());
        let x1 = tensor_from_rows(&[vec![3.0, 0.0], vec![4.0, 1.0]], &device());
        let t = Times::per_sample(vec![0.25, 0.5]).unwrap();
        let s = path.sample(x0, x1, &t).unwrap();
        let x_t = tensor_to_vec(s.x_t);
        let dx = tensor_to_vec(s.dx_t);
        assert_eq!(x_t, vec![1.5, 1.5, 2.0, 0.0]);
        assert_eq!(dx, vec![2.0, -2.0, 4.0, 2.0]);
    }

    #[test]
    fn noise_to_data_at_alpha_zero_is_a_typed_error() {
        let path = AffinePath::new(CondOt::default());
        let x = tensor_from_rows(&[vec![1.0, 2.0]], &device());
        let t = Times::shared(0.0, 1).unwrap();
        let err = path
            .convert::<Noise, Data, 2>(Predicted::new(x.clone()), x.clone(), &t)
            .unwrap_err();
        assert!(matches!(
            err,
            Error::SingularConversion {
                from: PredictionKind::Noise,
                to: PredictionKind::Data,
                ..
            }
        ));
        // …but noise → velocity at t = 1 (σ = 0) only divides by α = 1: u = x_t − ε.
        let t1 = Times::shared(1.0, 1).unwrap();
        let u = path
            .convert::<Noise, Velocity, 2>(Predicted::new(x.clone().mul_scalar(0.5)), x, &t1)
            .unwrap();
        assert_eq!(tensor_to_vec(u.into_tensor()), vec![0.5, 1.0]);
    }

    #[test]
    fn mismatched_shapes_are_typed_errors() {
        let path = AffinePath::new(CosineConfig::new().init().unwrap());
        let x0 = tensor_from_rows(&[vec![1.0, 2.0]], &device());
        let x1 = tensor_from_rows(&[vec![1.0, 2.0, 3.0]], &device());
        let t = Times::shared(0.5, 1).unwrap();
        assert!(matches!(
            path.sample(x0.clone(), x1, &t),
            Err(Error::ShapeMismatch { what: "x1 vs x0", .. })
        ));
        let t2 = Times::shared(0.5, 2).unwrap();
        assert!(matches!(
            path.sample(x0.clone(), x0, &t2),
            Err(Error::ShapeMismatch { what: "x0 vs times", .. })
        ));
    }
}
