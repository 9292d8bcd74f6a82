//! MeanFlow: one-step generation by regressing the average velocity (Geng, Deng, Bai, Kolter &
//! He, *Mean Flows for One-step Generative Modeling*, 2025).
//!
//! ## Conventions
//!
//! flowforge runs time from noise (t = 0) to data (t = 1). An *average-velocity* model
//! `ū(x, a, b)` with `a ≤ b` predicts the displacement per unit time of the flow from time `a`
//! to the cleaner time `b`: `x_b = x_a + (b − a) ū(x_a, a, b)`. Differentiating
//! `(b − a) ū = ∫_a^b u dτ` in `a` gives the MeanFlow identity
//!
//! `ū(x_a, a, b) = u(x_a, a) + (b − a) d/da ū(x_a, a, b)`,
//!
//! with `d/da` the total derivative along the flow — the JVP of ū along `(u, 1, 0)`. Training
//! regresses ū onto `target = v + (b − a) JVP(ū; v, 1, 0)` under stop-gradient, `v` the
//! conditional velocity `x₁ − x₀`.
//!
//! The paper writes `z_t = (1 − t) x + t ε` (t = 1 noise) and `u(z, r, t)` with `r ≤ t`. The
//! two conventions are related by [`ReversedTime`] (`a = 1 − t`, `b = 1 − r`) and a sign: the
//! paper's velocities point from data to noise, so `ū = −u`, `v_flowforge = −v_paper`, the JVP
//! along `(v, 1, 0)` equals the paper's `du/dt` along `(v, 0, 1)`, and the target is minus the
//! paper's `u_tgt`. [`PaperCoordinates`] performs these conversions.

use burn::tensor::{Device, Tensor};
use flowforge_core::error::check;
use flowforge_core::jvp::{Dual, dual_column, jvp_finite_difference};
use flowforge_core::{Coefficient, Condition, Error, Result, ReversedTime, Time, Times};

/// A model of the average velocity `ū(x, a, b)` over `[a, b]` (flowforge time, `a ≤ b`).
pub trait AverageVelocityModel<const D: usize> {
    /// `ū(x, a, b)` for a batch (`a`, `b` one time per sample).
    ///
    /// # Errors
    /// Whatever the model reports.
    fn average_velocity(&self, x: Tensor<D>, a: &Times, b: &Times, condition: &Condition) -> Result<Tensor<D>>;
}

/// An average-velocity model that can also give its JVP along `(ẋ, ȧ, ḃ)`.
///
/// Implemented exactly by tangent propagation ([`DualFn`], flowforge's networks) or
/// approximately for any model by [`FiniteDifference`].
pub trait AverageVelocityJvp<const D: usize>: AverageVelocityModel<D> {
    /// `(ū, JVP)` at `(x, a, b)` along `(x_dot, a_dot, b_dot)` (the time tangents are the same
    /// for every sample).
    ///
    /// # Errors
    /// Whatever the model reports.
    #[allow(clippy::too_many_arguments)]
    fn average_velocity_jvp(
        &self,
        x: Tensor<D>,
        x_dot: Tensor<D>,
        a: &Times,
        a_dot: f64,
        b: &Times,
        b_dot: f64,
        condition: &Condition,
    ) -> Result<(Tensor<D>, Tensor<D>)>;
}

/// An average-velocity function written with [`Dual`] operations, `|x, a, b| ū` where `a`, `b`
/// are `[batch, 1]` dual columns: its JVP is exact.
pub struct DualFn<F>(pub F);

fn time_columns(t: &Times, dot: f64, device: &Device) -> Dual<2> {
    let values = t.to_vec();
    let dots = vec![dot; values.len()];
    dual_column(&values, &dots, device)
}

impl<F, const D: usize> AverageVelocityModel<D> for DualFn<F>
where
    F: Fn(Dual<D>, Dual<2>, Dual<2>) -> Dual<D>,
{
    fn average_velocity(&self, x: Tensor<D>, a: &Times, b: &Times, _condition: &Condition) -> Result<Tensor<D>> {
        let device = x.device();
        let (a, b) = (time_columns(a, 0.0, &device), time_columns(b, 0.0, &device));
        Ok((self.0)(Dual::constant(x), a, b).primal)
    }
}

impl<F, const D: usize> AverageVelocityJvp<D> for DualFn<F>
where
    F: Fn(Dual<D>, Dual<2>, Dual<2>) -> Dual<D>,
{
    fn average_velocity_jvp(
        &self,
        x: Tensor<D>,
        x_dot: Tensor<D>,
        a: &Times,
        a_dot: f64,
        b: &Times,
        b_dot: f64,
        _condition: &Condition,
    ) -> Result<(Tensor<D>, Tensor<D>)> {
        let device = x.device();
        let out = (self.0)(Dual::new(x, x_dot), time_columns(a, a_dot, &device), time_columns(b, b_dot, &device));
        Ok((out.primal, out.tangent))
    }
}

/// Any average-velocity model, with its JVP by finite differences of step `h`
/// ([`jvp_finite_difference`]: central inside `[0, 1]`, one-sided at its ends).
pub struct FiniteDifference<'m, M> {
    model: &'m M,
    h: f64,
}

impl<'m, M> FiniteDifference<'m, M> {
    /// Wrap `model` with step `h` (1e-3 suits f32).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 < h < 0.25`.
    pub fn new(model: &'m M, h: f64) -> Result<Self> {
        check::positive("h", h)?;
        if h >= 0.25 {
            return Err(Error::invalid("h", h, "< 0.25"));
        }
        Ok(Self { model, h })
    }
}

impl<M: AverageVelocityModel<D>, const D: usize> AverageVelocityModel<D> for FiniteDifference<'_, M> {
    fn average_velocity(&self, x: Tensor<D>, a: &Times, b: &Times, condition: &Condition) -> Result<Tensor<D>> {
        self.model.average_velocity(x, a, b, condition)
    }
}

impl<M: AverageVelocityModel<D>, const D: usize> AverageVelocityJvp<D> for FiniteDifference<'_, M> {
    fn average_velocity_jvp(
        &self,
        x: Tensor<D>,
        x_dot: Tensor<D>,
        a: &Times,
        a_dot: f64,
        b: &Times,
        b_dot: f64,
        condition: &Condition,
    ) -> Result<(Tensor<D>, Tensor<D>)> {
        jvp_finite_difference(
            |x, a_values, b_values| {
                let a = Times::per_sample(a_values.to_vec())?;
                let b = Times::per_sample(b_values.to_vec())?;
                self.model.average_velocity(x, &a, &b, condition)
            },
            x,
            x_dot,
            &a.to_vec(),
            a_dot,
            &b.to_vec(),
            b_dot,
            self.h,
        )
    }
}

/// The MeanFlow regression target and its ingredients for one batch.
#[derive(Debug, Clone)]
pub struct MeanFlowTarget<const D: usize> {
    /// The model's average velocity ū(x_a, a, b) (carries gradients).
    pub prediction: Tensor<D>,
    /// `d/da ū` along `(v, 1, 0)` (no gradients).
    pub jvp: Tensor<D>,
    /// `v + (b − a) d/da ū` (no gradients).
    pub target: Tensor<D>,
}

/// The direction in `x` along which MeanFlow's JVP differentiates `ū(x_a, a, b)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JvpTangent {
    /// The pair's conditional velocity `v = x₁ − x₀` (Geng et al. 2025, Eq. 8): the original
    /// MeanFlow target, which depends on `(x₀, x₁)` beyond `x_a`.
    #[default]
    Conditional,
    /// The network's own instantaneous velocity `ū(x_a, a, a)` under stop-gradient (improved
    /// MeanFlow, Geng, Lu, Wu, Shechtman, Kolter & He 2025, arXiv:2512.02012, Eq. 12, with the
    /// boundary condition `v_θ(z, t) = u_θ(z, t, t)`). The compound prediction
    /// `ū − (b − a)·JVP` is then a function of `x_a` alone and the loss an ordinary regression
    /// onto `v`; it costs one more forward pass without gradients.
    Model,
}

/// The MeanFlow target at `(x_a, a, b)` with conditional velocity `v` (the original MeanFlow:
/// the JVP runs along `v`, [`JvpTangent::Conditional`]).
///
/// # Errors
/// [`Error::ShapeMismatch`] if `v` differs from `x` or the times from the batch; the model's
/// errors.
pub fn meanflow_target<M: AverageVelocityJvp<D>, const D: usize>(
    model: &M,
    x: Tensor<D>,
    v: Tensor<D>,
    a: &Times,
    b: &Times,
    condition: &Condition,
) -> Result<MeanFlowTarget<D>> {
    meanflow_target_along(model, x, v, JvpTangent::Conditional, a, b, condition)
}

/// The MeanFlow target `v + (b − a)·JVP(ū; w, 1, 0)` with the JVP along the chosen tangent `w`
/// ([`JvpTangent`]); `v` is the conditional velocity in both cases.
///
/// # Errors
/// As [`meanflow_target`].
pub fn meanflow_target_along<M: AverageVelocityJvp<D>, const D: usize>(
    model: &M,
    x: Tensor<D>,
    v: Tensor<D>,
    tangent: JvpTangent,
    a: &Times,
    b: &Times,
    condition: &Condition,
) -> Result<MeanFlowTarget<D>> {
    flowforge_core::tensor::ensure_same_shape("v vs x", &x, &v)?;
    flowforge_core::tensor::ensure_batch("x vs start times", &x, a.len())?;
    flowforge_core::tensor::ensure_batch("x vs end times", &x, b.len())?;
    if let Some(i) = (0..a.len()).find(|&i| a.get(i) > b.get(i)) {
        return Err(Error::InconsistentParameters {
            first: "start time a",
            first_value: a.get(i),
            second: "end time b",
            second_value: b.get(i),
            requirement: "MeanFlow averages over [a, b] with a <= b (a the noisier time)",
        });
    }
    let direction = match tangent {
        JvpTangent::Conditional => v.clone(),
        JvpTangent::Model => model.average_velocity(x.clone(), a, a, condition)?.detach(),
    };
    let (prediction, jvp) = model.average_velocity_jvp(x, direction, a, 1.0, b, 0.0, condition)?;
    let jvp = jvp.detach();
    let gap = match (a.as_shared(), b.as_shared()) {
        (Some(a), Some(b)) => Coefficient::Shared(b - a),
        _ => Coefficient::PerSample((0..a.len()).map(|i| b.get(i) - a.get(i)).collect()),
    };
    let target = (v + gap.scale(jvp.clone())).detach();
    Ok(MeanFlowTarget { prediction, jvp, target })
}

/// Classifier-free guidance folded into the MeanFlow target (Geng et al. 2025, §4.2 and its
/// improved form with κ): the velocity regressed on becomes
/// `ṽ = ω v + κ ū(x_a, a, a | c) + (1 − ω − κ) ū(x_a, a, a | ∅)`, where `ū(x, a, a)` is the
/// network's own instantaneous velocity (under stop-gradient), conditional and unconditional.
/// ω = 1, κ = 0 is no guidance.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeanFlowGuidance {
    /// ω, the weight of the ground-truth conditional velocity.
    pub omega: f64,
    /// κ, the weight of the model's conditional velocity.
    pub kappa: f64,
}

impl MeanFlowGuidance {
    /// The guided velocity `ṽ` for the batch (to pass as `v` to [`meanflow_target`]).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for non-finite ω or κ; the model's errors.
    pub fn guided_velocity<M: AverageVelocityModel<D>, const D: usize>(
        &self,
        model: &M,
        x: Tensor<D>,
        v: Tensor<D>,
        a: &Times,
        condition: &Condition,
        unconditional: &Condition,
    ) -> Result<Tensor<D>> {
        check::finite("omega", self.omega)?;
        check::finite("kappa", self.kappa)?;
        let mut guided = v.mul_scalar(self.omega);
        if self.kappa != 0.0 {
            let conditional = model.average_velocity(x.clone(), a, a, condition)?.detach();
            guided = guided + conditional.mul_scalar(self.kappa);
        }
        let rest = 1.0 - self.omega - self.kappa;
        if rest != 0.0 {
            let free = model.average_velocity(x, a, a, unconditional)?.detach();
            guided = guided + free.mul_scalar(rest);
        }
        Ok(guided)
    }
}

/// Typed conversions between flowforge's MeanFlow quantities and the paper's (t = 1 noise).
#[derive(Debug, Clone, Copy, Default)]
pub struct PaperCoordinates;

impl PaperCoordinates {
    /// flowforge's `(a, b)` from the paper's `(r, t)` (`r ≤ t`).
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] for times outside `[0, 1]`.
    pub fn times_from_paper(r: f64, t: f64) -> Result<(f64, f64)> {
        let a = Time::from(ReversedTime::new(t)?).value();
        let b = Time::from(ReversedTime::new(r)?).value();
        Ok((a, b))
    }

    /// A velocity or average velocity (or the target) between conventions: they differ by sign,
    /// because the paper's time runs from data to noise.
    pub fn velocity<const D: usize>(v: Tensor<D>) -> Tensor<D> {
        v.neg()
    }
}

/// The density of each of the two time draws of [`TimePairSampling`], in the paper's time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PairDensity {
    /// `σ(mean + std·z)`, z ~ N(0, 1) (the paper's best ImageNet setting: mean −0.4, std 1.0).
    LogitNormal {
        /// Mean of the logit.
        mean: f64,
        /// Standard deviation of the logit (> 0).
        std: f64,
    },
    /// U(0, 1) (the paper's other ablation; it reaches the interval ends, where one-step
    /// sampling starts, far more often than the logit-normal).
    Uniform,
    /// Beta(α, β); α = β < 1 is U-shaped and puts the sorted pair's ends near 0 and 1, so long
    /// intervals (the one-step sampler's `[0, 1]`) are drawn far more often than under U(0, 1).
    Beta {
        /// α (> 0).
        alpha: f64,
        /// β (> 0).
        beta: f64,
    },
}

/// The MeanFlow paper's sampling of `(r, t)` (Geng et al. 2025, §4.3): two draws from
/// [`PairDensity`] over the paper's time, sorted so `r ≤ t`, and with probability
/// `equal_fraction` `r = t` (plain flow matching); returned in flowforge time as `(a, b)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimePairSampling {
    /// The density of each draw.
    pub density: PairDensity,
    /// Fraction of pairs with `r = t` (0.75 in the paper).
    pub equal_fraction: f64,
}

impl Default for TimePairSampling {
    /// The paper's setting: logit-normal(−0.4, 1.0), 75% of pairs with `r = t`.
    fn default() -> Self {
        Self { density: PairDensity::LogitNormal { mean: -0.4, std: 1.0 }, equal_fraction: 0.75 }
    }
}

impl TimePairSampling {
    /// `n` pairs `(a, b)` in flowforge time, `a ≤ b`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a non-positive or non-finite std, a non-finite mean, or a
    /// fraction outside [0, 1].
    pub fn sample<R: rand::Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<(Times, Times)> {
        use rand::RngExt;
        use rand_distr::{Distribution, StandardNormal};
        if let PairDensity::LogitNormal { mean, std } = self.density {
            check::finite("mean", mean)?;
            check::positive("std", std)?;
        }
        let beta = match self.density {
            PairDensity::Beta { alpha, beta } => {
                check::positive("alpha", alpha)?;
                check::positive("beta", beta)?;
                Some(rand_distr::Beta::new(alpha, beta).map_err(|_| Error::invalid("alpha", alpha, "a valid Beta(alpha, beta)"))?)
            }
            _ => None,
        };
        if !(0.0..=1.0).contains(&self.equal_fraction) {
            return Err(Error::invalid("equal_fraction", self.equal_fraction, "in [0, 1]"));
        }
        let draw = |rng: &mut R| -> f64 {
            match self.density {
                PairDensity::LogitNormal { mean, std } => {
                    let z: f64 = StandardNormal.sample(rng);
                    1.0 / (1.0 + (-(mean + std * z)).exp())
                }
                PairDensity::Uniform => rng.random::<f64>(),
                PairDensity::Beta { .. } => beta.as_ref().map_or(0.5, |d| d.sample(rng)),
            }
        };
        let mut a = Vec::with_capacity(n);
        let mut b = Vec::with_capacity(n);
        for _ in 0..n {
            let (x, y) = (draw(rng), draw(rng));
            let (mut r, t) = (x.min(y), x.max(y));
            if rng.random::<f64>() < self.equal_fraction {
                r = t;
            }
            let (start, end) = PaperCoordinates::times_from_paper(r, t)?;
            a.push(start);
            b.push(end);
        }
        Ok((Times::per_sample(a)?, Times::per_sample(b)?))
    }
}

/// One-step (or few-step) MeanFlow sampling: `x_b = x_a + (b − a) ū(x_a, a, b)` over a grid.
///
/// # Errors
/// [`Error::InvalidGrid`] for an unusable grid (fewer than two points, decreasing, outside
/// `[0, 1]`); the model's errors.
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(a > b)` is true for NaN too, which must fail the check")]
pub fn meanflow_sample<M: AverageVelocityModel<D>, const D: usize>(
    model: &M,
    x: Tensor<D>,
    times: &[f64],
    condition: &Condition,
) -> Result<Tensor<D>> {
    if times.len() < 2 || times.windows(2).any(|w| !(w[1] > w[0])) || times.iter().any(|t| !(0.0..=1.0).contains(t)) {
        return Err(Error::InvalidGrid {
            reason: "MeanFlow sampling needs an increasing grid in [0, 1] with at least two points",
            index: 0,
            value: times.first().copied().unwrap_or(f64::NAN),
        });
    }
    let batch = x.dims()[0];
    let mut x = x;
    for w in times.windows(2) {
        let (a, b) = (Times::shared(w[0], batch)?, Times::shared(w[1], batch)?);
        let u = model.average_velocity(x.clone(), &a, &b, condition)?;
        x = x + u.mul_scalar(w[1] - w[0]);
    }
    Ok(x)
}

/// MeanFlow's adaptive loss weight `w = 1/(‖Δ‖² + c)^p` per sample, under stop-gradient; the
/// loss is `mean(w ‖Δ‖²)` with `Δ = ū − target` (Geng et al. 2025, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdaptiveWeight {
    /// Power p (1 in the paper's best setting; 0 is the plain squared error).
    pub power: f64,
    /// Offset c.
    pub offset: f64,
}

impl Default for AdaptiveWeight {
    fn default() -> Self {
        Self { power: 1.0, offset: 1e-3 }
    }
}

impl AdaptiveWeight {
    /// The weighted loss for prediction and target of shape `[batch, …]`.
    pub fn loss<const D: usize>(&self, prediction: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
        let dims = prediction.dims();
        let batch = dims[0];
        let per: usize = dims[1..].iter().product();
        let delta: Tensor<2> = (prediction - target).reshape([batch, per]);
        let squared = delta.square().sum_dim(1); // [batch, 1]
        if self.power == 0.0 {
            return squared.mean();
        }
        let weight = squared.clone().add_scalar(self.offset).powf_scalar(-self.power).detach();
        (weight * squared).mean()
    }
}

/// The full MeanFlow loss on one batch: target along the conditional velocity, then adaptive
/// weighting (the original MeanFlow; [`MeanFlowLoss`] chooses the tangent).
///
/// # Errors
/// As [`meanflow_target`].
pub fn meanflow_loss<M: AverageVelocityJvp<D>, const D: usize>(
    model: &M,
    x: Tensor<D>,
    v: Tensor<D>,
    a: &Times,
    b: &Times,
    condition: &Condition,
    weight: AdaptiveWeight,
) -> Result<Tensor<1>> {
    MeanFlowLoss { weight, tangent: JvpTangent::Conditional }.loss(model, x, v, a, b, condition)
}

/// The MeanFlow loss as a value: the adaptive weight and the JVP's tangent.
/// `MeanFlowLoss::default()` is the original MeanFlow (p = 1, conditional tangent);
/// `MeanFlowLoss::improved()` is improved MeanFlow (iMF: the model's own velocity as tangent).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeanFlowLoss {
    /// The per-sample adaptive weight.
    pub weight: AdaptiveWeight,
    /// The JVP's direction in `x`.
    pub tangent: JvpTangent,
}

impl MeanFlowLoss {
    /// Improved MeanFlow (arXiv:2512.02012): the model's velocity as tangent, p = 1.
    pub fn improved() -> Self {
        Self { weight: AdaptiveWeight::default(), tangent: JvpTangent::Model }
    }

    /// The weighted loss at `(x_a, a, b)` with conditional velocity `v`.
    ///
    /// # Errors
    /// As [`meanflow_target`].
    pub fn loss<M: AverageVelocityJvp<D>, const D: usize>(
        &self,
        model: &M,
        x: Tensor<D>,
        v: Tensor<D>,
        a: &Times,
        b: &Times,
        condition: &Condition,
    ) -> Result<Tensor<1>> {
        let MeanFlowTarget { prediction, target, .. } = meanflow_target_along(model, x, v, self.tangent, a, b, condition)?;
        Ok(self.weight.loss(prediction, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Int, TensorData};
    use flowforge_core::tensor::{tensor_from_rows, tensor_to_vec};

    /// ū(x, a, b | c) = x + label (0 without a label).
    struct Toy;
    impl AverageVelocityModel<2> for Toy {
        fn average_velocity(&self, x: Tensor<2>, _a: &Times, _b: &Times, c: &Condition) -> Result<Tensor<2>> {
            Ok(match &c.labels {
                Some(l) => x.clone() + l.clone().float().reshape([x.dims()[0], 1]),
                None => x,
            })
        }
    }

    #[test]
    fn guidance_mixes_the_three_velocities() {
        let device = Device::flex();
        let x = tensor_from_rows(&[vec![1.0, 2.0]], &device);
        let v = tensor_from_rows(&[vec![10.0, 20.0]], &device);
        let a = Times::shared(0.3, 1).unwrap();
        let labels = Condition::labels(Tensor::<1, Int>::from_data(TensorData::new(vec![4i64], [1]), &device));
        let g = MeanFlowGuidance { omega: 2.0, kappa: 0.5 };
        let out = tensor_to_vec(g.guided_velocity(&Toy, x.clone(), v.clone(), &a, &labels, &Condition::none()).unwrap());
        // 2·v + 0.5·(x + 4) + (1 − 2 − 0.5)·x
        assert_eq!(out, vec![20.0 + 2.5 - 1.5, 40.0 + 3.0 - 3.0]);
        let none = MeanFlowGuidance { omega: 1.0, kappa: 0.0 };
        assert_eq!(tensor_to_vec(none.guided_velocity(&Toy, x.clone(), v.clone(), &a, &labels, &Condition::none()).unwrap()), vec![10.0, 20.0]);
        assert!(MeanFlowGuidance { omega: f64::NAN, kappa: 0.0 }.guided_velocity(&Toy, x, v, &a, &labels, &Condition::none()).is_err());
    }

    #[test]
    fn the_tangent_is_the_conditional_or_the_model_velocity() {
        // ū(x, a, b) = 2x + a: ū(x, a, a) = 2x + a and JVP along (w, 1, 0) = 2w + 1.
        let device = Device::flex();
        let model = DualFn(|x: Dual<2>, a: Dual<2>, _b: Dual<2>| x.mul_scalar(2.0).add(a));
        let x = tensor_from_rows(&[vec![1.0, -1.0], vec![0.5, 3.0]], &device);
        let v = tensor_from_rows(&[vec![4.0, 0.0], vec![-2.0, 1.0]], &device);
        let a = Times::per_sample(vec![0.2, 0.5]).unwrap();
        let b = Times::per_sample(vec![0.7, 0.5]).unwrap();
        let conditional = meanflow_target_along(&model, x.clone(), v.clone(), JvpTangent::Conditional, &a, &b, &Condition::none()).unwrap();
        // Row 0: v + 0.5 (2v + 1); row 1 has a = b: the target is v.
        assert_eq!(tensor_to_vec(conditional.target), vec![4.0 + 0.5 * 9.0, 0.5 * 1.0, -2.0, 1.0]);
        let improved = meanflow_target_along(&model, x, v, JvpTangent::Model, &a, &b, &Condition::none()).unwrap();
        // Row 0: w = 2x + 0.2 = (2.2, −1.8), JVP = 2w + 1 = (5.4, −2.6), target v + 0.5 JVP.
        let close = |got: Vec<f64>, want: [f64; 4]| {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        };
        close(tensor_to_vec(improved.target), [4.0 + 0.5 * 5.4, 0.5 * -2.6, -2.0, 1.0]);
        close(tensor_to_vec(improved.prediction), [2.2, -1.8, 1.5, 6.5]);
    }

    #[test]
    fn time_pairs_follow_their_densities() {
        use rand::SeedableRng;
        let n = 20_000;
        // P(min of two draws < 0.5 or 0.1) in the paper's time r = 1 − b.
        let phi_04 = 0.655_421_7; // Φ(0.4): P(σ(−0.4 + z) < 0.5)
        let arcsine_01 = 2.0 / std::f64::consts::PI * 0.1f64.sqrt().asin(); // Beta(½, ½) CDF at 0.1
        let cases = [
            (PairDensity::Uniform, 0.1, 1.0 - 0.9f64 * 0.9),
            (PairDensity::LogitNormal { mean: -0.4, std: 1.0 }, 0.5, 1.0 - (1.0 - phi_04) * (1.0 - phi_04)),
            (PairDensity::Beta { alpha: 0.5, beta: 0.5 }, 0.1, 1.0 - (1.0 - arcsine_01) * (1.0 - arcsine_01)),
        ];
        for (density, cut, want) in cases {
            let sampling = TimePairSampling { density, equal_fraction: 0.25 };
            let (a, b) = sampling.sample(n, &mut rand::rngs::StdRng::seed_from_u64(9)).unwrap();
            let (a, b) = (a.to_vec(), b.to_vec());
            assert!(a.iter().zip(&b).all(|(a, b)| a <= b), "{density:?}: a <= b");
            let equal = a.iter().zip(&b).filter(|(a, b)| a == b).count() as f64 / n as f64;
            assert!((equal - 0.25).abs() < 0.015, "{density:?}: equal fraction {equal}");
            let unequal: Vec<f64> = a.iter().zip(&b).filter(|(a, b)| a != b).map(|(_, b)| 1.0 - b).collect();
            let below = unequal.iter().filter(|&&r| r < cut).count() as f64 / unequal.len() as f64;
            assert!((below - want).abs() < 0.015, "{density:?}: P(r < {cut}) = {below}, want {want}");
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(TimePairSampling { density: PairDensity::Beta { alpha: 0.0, beta: 1.0 }, equal_fraction: 0.5 }.sample(4, &mut rng).is_err());
        assert!(TimePairSampling { density: PairDensity::Uniform, equal_fraction: 1.5 }.sample(4, &mut rng).is_err());
    }
}
