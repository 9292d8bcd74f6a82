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
//! Because every prediction conversion of an affine path is affine in the prediction
//! (`c_x x_t + c_y y`), guiding in ε-space, velocity space or x̂₁-space gives the same result:
//! the decorator never needs to know the path.
#![warn(missing_docs)]

use burn::tensor::{Int, Tensor};
use flowforge_core::error::check;
use flowforge_core::{Coefficient, Condition, Error, Model, Predicted, Result, Times};
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
