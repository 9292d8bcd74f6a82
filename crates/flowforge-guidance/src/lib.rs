//! # flowforge-guidance
//!
//! Guidance as model decorators: a guided model is itself a [`Model`], so it composes with
//! every sampler, path and prediction kind.
//!
//! - [`ClassifierFreeGuidance`] (Ho & Salimans, *Classifier-Free Diffusion Guidance*, 2022):
//!   conditional and unconditional predictions from **one batched forward**, combined in the
//!   model's own prediction space, with an optional guidance interval (Kynkäänniemi et al.,
//!   *Applying Guidance in a Limited Interval Improves Sample and Distribution Quality*, 2024)
//!   and guidance rescale φ (Lin et al., *Common Diffusion Noise Schedules and Sample Steps Are
//!   Flawed*, 2024, §3.4).
//!
//! - [`ClassifierGuidance`] (Dhariwal & Nichol, *Diffusion Models Beat GANs on Image
//!   Synthesis*, NeurIPS 2021; Song et al. 2021, §I): adds `s ∇ₓ log p(y | x_t, t)` of a
//!   noise-aware classifier to the model's score, the gradient taken by burn's autodiff, and
//!   converted through the path into the model's own prediction kind;
//! - [`DenoisedGradientGuidance`]: explicit guidance by any differentiable objective `J(x)` (a
//!   reward, a constraint), moving the denoised estimate `x̂₁ ← x̂₁ + s ∇J(x̂₁)` and converting
//!   back (the "reconstruction guidance" family: Chung et al., *Diffusion Posterior Sampling*,
//!   ICLR 2023, without differentiating through the model; Ho et al., *Video Diffusion
//!   Models*, 2022).
//!
//! Because every prediction conversion of an affine path is affine in the prediction
//! (`c_x x_t + c_y y`), guiding in ε-space, velocity space or x̂₁-space gives the same result:
//! classifier-free guidance never needs to know the path, and the gradient guidances only need
//! the coefficient `c_y` that maps a change of score (or of x̂₁) into the model's prediction.
#![warn(missing_docs)]

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use flowforge_core::error::check;
use flowforge_core::tensor::{check_labels, input_gradient};
use flowforge_core::{Coefficient, Condition, Error, Model, Predicted, PredictionKind, PredictionType, Result, Times};
use flowforge_paths::{AffinePath, Schedule};
use serde::{Deserialize, Serialize};

/// How the guidance scale is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CfgConvention {
    /// `uncond + w (cond − uncond)`: w = 1 is the conditional model, w = 0 the unconditional
    /// (Ho & Salimans; diffusers' `guidance_scale`).
    #[default]
    Interpolate,
    /// `(1 + w) cond − w uncond`: w = 0 is the conditional model (flow_matching's and the
    /// original classifier-free guidance paper's `w`). Equals `Interpolate` with `w + 1`.
    Extrapolate,
}

/// Classifier-free guidance around a class-conditional model.
///
/// The wrapped model must accept `Condition::labels` and treat `null_label` as "no class" (it
/// was trained with label dropout to that label).
#[derive(Debug)]
pub struct ClassifierFreeGuidance<'m, M> {
    model: &'m M,
    scale: f64,
    convention: CfgConvention,
    null_label: i64,
    interval: Option<(f64, f64)>,
    rescale: f64,
}

impl<'m, M> ClassifierFreeGuidance<'m, M> {
    /// Guide `model` with scale `scale` (in `convention`) against the null label `null_label`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a NaN or infinite scale.
    pub fn new(model: &'m M, scale: f64, convention: CfgConvention, null_label: i64) -> Result<Self> {
        check::finite("guidance scale", scale)?;
        Ok(Self { model, scale, convention, null_label, interval: None, rescale: 0.0 })
    }

    /// Apply guidance only for times in `[t_lo, t_hi]` (flowforge time); outside, the
    /// conditional prediction is used as is.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] / [`Error::InconsistentParameters`] for a bad interval.
    pub fn with_interval(mut self, t_lo: f64, t_hi: f64) -> Result<Self> {
        flowforge_core::Time::new(t_lo)?;
        flowforge_core::Time::new(t_hi)?;
        check::not_greater("t_lo", t_lo, "t_hi", t_hi)?;
        self.interval = Some((t_lo, t_hi));
        Ok(self)
    }

    /// Guidance rescale φ ∈ [0, 1]: blend the guided prediction with its version rescaled to the
    /// conditional prediction's per-sample standard deviation, against over-saturation.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for φ outside [0, 1].
    pub fn with_rescale(mut self, phi: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&phi) {
            return Err(Error::invalid("rescale", phi, "in [0, 1]"));
        }
        self.rescale = phi;
        Ok(self)
    }

    /// The weight `w` of `cond − uncond` in the interpolation form, per sample.
    fn weights(&self, t: &Times) -> Coefficient {
        let w = match self.convention {
            CfgConvention::Interpolate => self.scale,
            CfgConvention::Extrapolate => self.scale + 1.0,
        };
        match self.interval {
            None => Coefficient::Shared(w),
            Some((lo, hi)) => t.map(|t| if (lo..=hi).contains(&t) { w } else { 1.0 }),
        }
    }
}

fn per_sample_std<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let per: usize = dims[1..].iter().product();
    let flat: Tensor<2> = x.reshape([dims[0], per]);
    let mut shape = [1usize; D];
    shape[0] = dims[0];
    flat.var(1).sqrt().reshape(shape)
}

impl<M: Model<D>, const D: usize> Model<D> for ClassifierFreeGuidance<'_, M> {
    type Prediction = M::Prediction;

    fn predict(&self, x_t: Tensor<D>, t: &Times, condition: &Condition) -> Result<Predicted<M::Prediction, D>> {
        let labels = condition.labels.clone().ok_or(Error::MissingInput {
            what: "class labels for classifier-free guidance (Condition::labels)",
        })?;
        let batch = x_t.dims()[0];
        if labels.dims()[0] != batch {
            return Err(Error::ShapeMismatch { what: "labels vs x_t", expected: vec![batch], actual: labels.dims().to_vec() });
        }
        let weights = self.weights(t);
        if weights == Coefficient::Shared(1.0) {
            // Outside the interval (or w = 1): the conditional model alone.
            return self.model.predict(x_t, t, condition);
        }
        // One batched call: [x; x] with [labels; null].
        let null = Tensor::<1, Int>::full([batch], self.null_label, &labels.device());
        let doubled_times = Times::per_sample(t.to_vec().into_iter().chain(t.to_vec()).collect())?;
        let doubled = Condition {
            labels: Some(Tensor::cat(vec![labels, null], 0)),
            vectors: condition.vectors.clone().map(|v| Tensor::cat(vec![v.clone(), v], 0)),
        };
        let out = self.model.predict(Tensor::cat(vec![x_t.clone(), x_t], 0), &doubled_times, &doubled)?.into_tensor();
        let cond = out.clone().narrow(0, 0, batch);
        let uncond = out.narrow(0, batch, batch);
        let mut guided = uncond.clone() + weights.scale(cond.clone() - uncond);
        if self.rescale > 0.0 {
            let rescaled = guided.clone() * (per_sample_std(cond) / per_sample_std(guided.clone()).clamp_min(1e-12));
            guided = rescaled.mul_scalar(self.rescale) + guided.mul_scalar(1.0 - self.rescale);
        }
        Ok(Predicted::new(guided))
    }
}

/// A noise-aware classifier: the logits of `p(y | x_t, t)`, `[batch, classes]`.
///
/// Implemented for closures `|x_t, t| -> Result<logits>`, so any burn module (for example a
/// flowforge `Mlp` with `output_dim = classes`) plugs in with one line.
pub trait NoisyClassifier<const D: usize> {
    /// Logits for `x_t` `[batch, …]` at times `t`.
    ///
    /// # Errors
    /// The classifier's own (shape mismatches, …).
    fn logits(&self, x_t: Tensor<D>, t: &Times) -> Result<Tensor<2>>;
}

impl<F, const D: usize> NoisyClassifier<D> for F
where
    F: Fn(Tensor<D>, &Times) -> Result<Tensor<2>>,
{
    fn logits(&self, x_t: Tensor<D>, t: &Times) -> Result<Tensor<2>> {
        self(x_t, t)
    }
}

/// `∇ₓ Σᵢ log p(yᵢ | xᵢ, t)` by burn's reverse-mode autodiff: `x` is lifted onto the autodiff
/// graph (the classifier's weights stay constants), so it works on any backend and on models
/// sampled on a plain device.
///
/// # Errors
/// [`Error::ClassOutOfRange`] for a label outside the classifier's classes;
/// [`Error::ShapeMismatch`] for labels of another batch size; [`Error::NonFinite`] if the
/// classifier does not depend on `x` (no gradient).
pub fn class_log_likelihood_gradient<C: NoisyClassifier<D>, const D: usize>(
    classifier: &C,
    x: Tensor<D>,
    t: &Times,
    labels: &Tensor<1, Int>,
) -> Result<Tensor<D>> {
    let batch = x.dims()[0];
    if labels.dims()[0] != batch {
        return Err(Error::ShapeMismatch { what: "labels vs x_t", expected: vec![batch], actual: labels.dims().to_vec() });
    }
    let (gradient, ()) = input_gradient(x, "the classifier's log-likelihood", |x| {
        let logits = classifier.logits(x, t)?;
        let [rows, classes] = logits.dims();
        if rows != batch {
            return Err(Error::ShapeMismatch { what: "classifier logits vs x_t", expected: vec![batch, classes], actual: vec![rows, classes] });
        }
        check_labels(labels, classes, false, "the classifier of classifier guidance")?;
        Ok((log_softmax(logits, 1).gather(1, labels.clone().reshape([batch, 1])).sum(), ()))
    })?;
    Ok(gradient)
}

/// The coefficient `c_y(t)` with which a change `δ` of a prediction of kind `from` changes the
/// model's prediction of kind `to` at fixed `x_t` (conversions are affine: `to = c_x x_t + c_y from`).
fn change_coefficient<S: Schedule>(path: &AffinePath<S>, from: PredictionKind, to: PredictionKind, t: &Times) -> Result<Coefficient> {
    Ok(path.conversion_coefficients(from, to, t)?.1)
}

/// Classifier guidance around a (usually unconditional) model: the guided score is
/// `∇ log p_t(x) + s ∇ₓ log p(y | x_t, t)`, i.e. the model's prediction of kind `K` plus
/// `s · c_y(t) · ∇ₓ log p(y | x_t, t)`, where `c_y` converts a score into `K` on `path`.
///
/// With the exact noisy-class posterior and `s = 1` this is exactly the class-conditional
/// model (Bayes: `∇ log p_t(x | y) = ∇ log p_t(x) + ∇ log p_t(y | x)`); `s > 1` sharpens it.
/// The labels of the condition are consumed by the classifier; the model sees the rest.
///
/// Works with every sampler (ODE and SDE): the decorator is a model.
#[derive(Debug)]
pub struct ClassifierGuidance<'m, M, C, S> {
    model: &'m M,
    classifier: &'m C,
    path: &'m AffinePath<S>,
    scale: f64,
}

impl<'m, M, C, S> ClassifierGuidance<'m, M, C, S> {
    /// Guide `model` with `classifier` at scale `scale` on `path` (the path the model and the
    /// classifier were trained on).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a NaN or infinite scale.
    pub fn new(model: &'m M, classifier: &'m C, path: &'m AffinePath<S>, scale: f64) -> Result<Self> {
        check::finite("classifier guidance scale", scale)?;
        Ok(Self { model, classifier, path, scale })
    }
}

impl<M: Model<D>, C: NoisyClassifier<D>, S: Schedule, const D: usize> Model<D> for ClassifierGuidance<'_, M, C, S> {
    type Prediction = M::Prediction;

    /// # Errors
    /// [`Error::MissingInput`] without labels; [`Error::SingularConversion`] where the path
    /// cannot relate a score to the model's prediction kind (for a velocity model on the
    /// linear path, t = 0 where α = 0: start the time grid just above 0); the classifier's and
    /// the model's errors.
    fn predict(&self, x_t: Tensor<D>, t: &Times, condition: &Condition) -> Result<Predicted<M::Prediction, D>> {
        let labels = condition.labels.clone().ok_or(Error::MissingInput { what: "class labels for classifier guidance (Condition::labels)" })?;
        let coefficient = change_coefficient(self.path, PredictionKind::Score, <M::Prediction as PredictionType>::KIND, t)?;
        let gradient = class_log_likelihood_gradient(self.classifier, x_t.clone(), t, &labels)?;
        let rest = Condition { labels: None, vectors: condition.vectors.clone() };
        let prediction = self.model.predict(x_t, t, &rest)?.into_tensor();
        Ok(Predicted::new(prediction + coefficient.scale(gradient.mul_scalar(self.scale))))
    }
}

/// A differentiable objective `J(x)` per sample, `[batch]` (higher is better): a reward, a
/// log-likelihood of a measurement, a soft constraint. Implemented for closures.
pub trait DifferentiableObjective<const D: usize> {
    /// `J(x)` for each sample of `x` `[batch, …]`.
    ///
    /// # Errors
    /// The objective's own.
    fn value(&self, x: Tensor<D>) -> Result<Tensor<1>>;
}

impl<F, const D: usize> DifferentiableObjective<D> for F
where
    F: Fn(Tensor<D>) -> Result<Tensor<1>>,
{
    fn value(&self, x: Tensor<D>) -> Result<Tensor<1>> {
        self(x)
    }
}

/// Gradient guidance on the denoised estimate: `x̂₁ ← x̂₁ + s ∇J(x̂₁)` at every evaluation,
/// converted back into the model's prediction kind at fixed `x_t` (so a velocity model's
/// velocity changes by `s · c_y(t) · ∇J`, with `c_y` the x̂₁ → velocity coefficient). The
/// gradient of `J` is taken by burn's autodiff at `x̂₁`; the model is not differentiated.
#[derive(Debug)]
pub struct DenoisedGradientGuidance<'m, M, J, S> {
    model: &'m M,
    objective: &'m J,
    path: &'m AffinePath<S>,
    scale: f64,
}

impl<'m, M, J, S> DenoisedGradientGuidance<'m, M, J, S> {
    /// Guide `model` towards higher `objective` with step `scale` on `path`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a NaN or infinite scale.
    pub fn new(model: &'m M, objective: &'m J, path: &'m AffinePath<S>, scale: f64) -> Result<Self> {
        check::finite("gradient guidance scale", scale)?;
        Ok(Self { model, objective, path, scale })
    }
}

impl<M: Model<D>, J: DifferentiableObjective<D>, S: Schedule, const D: usize> Model<D> for DenoisedGradientGuidance<'_, M, J, S> {
    type Prediction = M::Prediction;

    /// # Errors
    /// [`Error::SingularConversion`] where the model's prediction does not determine x̂₁ (a
    /// noise model at α = 0) or x̂₁ does not move it; [`Error::ShapeMismatch`] for an
    /// objective that does not return one value per sample; the model's errors.
    fn predict(&self, x_t: Tensor<D>, t: &Times, condition: &Condition) -> Result<Predicted<M::Prediction, D>> {
        let kind = <M::Prediction as PredictionType>::KIND;
        let prediction = self.model.predict(x_t.clone(), t, condition)?.into_tensor();
        let denoised = self.path.convert_kind(kind, PredictionKind::Data, prediction.clone(), x_t, t)?;
        let coefficient = change_coefficient(self.path, PredictionKind::Data, kind, t)?;
        let batch = denoised.dims()[0];
        let (gradient, ()) = input_gradient(denoised, "the guidance objective J", |x| {
            let values = self.objective.value(x)?;
            if values.dims() != [batch] {
                return Err(Error::ShapeMismatch { what: "objective values (one per sample)", expected: vec![batch], actual: values.dims().to_vec() });
            }
            Ok((values.sum(), ()))
        })?;
        Ok(Predicted::new(prediction + coefficient.scale(gradient.mul_scalar(self.scale))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use core::cell::Cell;
    use flowforge_core::Velocity;
    use flowforge_core::tensor::{tensor_from_rows, tensor_to_vec};

    /// A toy conditional model: velocity = x + label (null label 9 ↦ 0), counting its calls and
    /// the batch sizes it sees.
    struct Toy {
        calls: Cell<usize>,
        batch: Cell<usize>,
    }

    impl Model<2> for Toy {
        type Prediction = Velocity;
        fn predict(&self, x: Tensor<2>, _t: &Times, c: &Condition) -> Result<Predicted<Velocity, 2>> {
            self.calls.set(self.calls.get() + 1);
            self.batch.set(x.dims()[0]);
            let labels = c.labels.clone().expect("labels");
            let shift = labels.clone().equal_elem(9).int().neg().add_scalar(1) * labels;
            let shift: Tensor<2> = shift.float().reshape([x.dims()[0], 1]);
            Ok(Predicted::new(x + shift))
        }
    }

    fn setup() -> (Toy, Tensor<2>, Condition) {
        let device = Device::flex();
        let x = tensor_from_rows(&[vec![1.0, 2.0], vec![0.0, 0.0]], &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 5], [2]), &device);
        (Toy { calls: Cell::new(0), batch: Cell::new(0) }, x, Condition::labels(labels))
    }

    #[test]
    fn one_batched_call_and_the_guidance_formula() {
        let (toy, x, c) = setup();
        let t = Times::shared(0.5, 2).unwrap();
        let cfg = ClassifierFreeGuidance::new(&toy, 3.0, CfgConvention::Interpolate, 9).unwrap();
        let out = tensor_to_vec(cfg.predict(x.clone(), &t, &c).unwrap().into_tensor());
        assert_eq!(toy.calls.get(), 1, "exactly one model call");
        assert_eq!(toy.batch.get(), 4, "conditional and unconditional in one batch");
        // uncond = x, cond = x + label: guided = x + 3·label.
        assert_eq!(out, vec![10.0, 11.0, 15.0, 15.0]);
        // The extrapolation convention with w = 2 is the same guidance.
        let cfg = ClassifierFreeGuidance::new(&toy, 2.0, CfgConvention::Extrapolate, 9).unwrap();
        assert_eq!(tensor_to_vec(cfg.predict(x, &t, &c).unwrap().into_tensor()), out);
    }

    #[test]
    fn outside_the_interval_the_conditional_model_is_used_alone() {
        let (toy, x, c) = setup();
        let cfg = ClassifierFreeGuidance::new(&toy, 3.0, CfgConvention::Interpolate, 9).unwrap().with_interval(0.2, 0.6).unwrap();
        let out = tensor_to_vec(cfg.predict(x.clone(), &Times::shared(0.9, 2).unwrap(), &c).unwrap().into_tensor());
        assert_eq!(out, vec![4.0, 5.0, 5.0, 5.0]);
        assert_eq!(toy.batch.get(), 2);
        // Per-sample times: guided inside, conditional outside.
        let out = tensor_to_vec(cfg.predict(x, &Times::per_sample(vec![0.3, 0.9]).unwrap(), &c).unwrap().into_tensor());
        assert_eq!(out, vec![10.0, 11.0, 5.0, 5.0]);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let (toy, x, _) = setup();
        assert!(matches!(ClassifierFreeGuidance::new(&toy, f64::NAN, CfgConvention::Interpolate, 9), Err(Error::InvalidParameter { .. })));
        let cfg = ClassifierFreeGuidance::new(&toy, 2.0, CfgConvention::Interpolate, 9).unwrap();
        assert!(matches!(cfg.predict(x, &Times::shared(0.5, 2).unwrap(), &Condition::none()), Err(Error::MissingInput { .. })));
        assert!(matches!(ClassifierFreeGuidance::new(&toy, 2.0, CfgConvention::Interpolate, 9).unwrap().with_rescale(1.5), Err(Error::InvalidParameter { .. })));
        assert!(ClassifierFreeGuidance::new(&toy, 2.0, CfgConvention::Interpolate, 9).unwrap().with_interval(0.7, 0.2).is_err());
    }
}
