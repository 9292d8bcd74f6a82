//! The regression objective shared by flow matching and denoising diffusion.

use burn::tensor::Tensor;
use crate::time_sampling::Weighting;
use flowforge_core::{Coefficient, Condition, Error, Model, PredictionKind, PredictionType, Result, Times};
use flowforge_paths::{AffinePath, ConditionalPath, Schedule, StochasticInterpolant};

/// A path that provides a conditional regression target for a prediction kind.
pub trait TargetPath {
    /// Per-sample loss weights for `weighting` and a loss on `kind`.
    ///
    /// # Errors
    /// As [`Weighting::weights`].
    fn loss_weights(&self, weighting: &Weighting, t: &Times, kind: PredictionKind) -> Result<Coefficient>;

    /// `(x_t, target)` for source `x0`, data `x1`, extra noise (if the path uses it), times `t`.
    ///
    /// # Errors
    /// Shape mismatches, singular times, or a kind the path cannot target.
    fn point_and_target<const D: usize>(
        &self,
        kind: PredictionKind,
        x0: Tensor<D>,
        x1: Tensor<D>,
        noise: Option<Tensor<D>>,
        t: &Times,
    ) -> Result<(Tensor<D>, Tensor<D>)>;
}

impl<S: Schedule> TargetPath for AffinePath<S> {
    fn loss_weights(&self, weighting: &Weighting, t: &Times, kind: PredictionKind) -> Result<Coefficient> {
        weighting.weights(t, kind, self.schedule())
    }

    fn point_and_target<const D: usize>(
        &self,
        kind: PredictionKind,
        x0: Tensor<D>,
        x1: Tensor<D>,
        _noise: Option<Tensor<D>>,
        t: &Times,
    ) -> Result<(Tensor<D>, Tensor<D>)> {
        let x_t = self.point(x0.clone(), x1.clone(), t)?;
        Ok((x_t, self.target_kind(kind, x0, x1, t)?))
    }
}

impl<S: Schedule> TargetPath for StochasticInterpolant<S> {
    fn loss_weights(&self, weighting: &Weighting, t: &Times, kind: PredictionKind) -> Result<Coefficient> {
        weighting.weights(t, kind, self.affine().schedule())
    }

    fn point_and_target<const D: usize>(
        &self,
        kind: PredictionKind,
        x0: Tensor<D>,
        x1: Tensor<D>,
        noise: Option<Tensor<D>>,
        t: &Times,
    ) -> Result<(Tensor<D>, Tensor<D>)> {
        match kind {
            PredictionKind::Velocity => {
                let sample = self.sample_conditional(x0, x1, noise, t)?;
                Ok((sample.x_t, sample.dx_t))
            }
            PredictionKind::Data => {
                let sample = self.sample_conditional(x0, x1.clone(), noise, t)?;
                Ok((sample.x_t, x1))
            }
            other => Err(Error::SingularConversion {
                from: PredictionKind::Velocity,
                to: other,
                t: t.as_shared().unwrap_or(f64::NAN),
                reason: "a stochastic interpolant only provides velocity and data targets",
            }),
        }
    }
}

/// Mean-squared regression of a model onto a path's conditional targets (CFM, DDPM "simple"),
/// optionally weighted per time ([`Weighting`]: SNR, min-SNR-γ, EDM's λ(σ)).
#[derive(Debug, Clone)]
pub struct RegressionLoss<P> {
    path: P,
    weighting: Weighting,
}

impl<P: TargetPath> RegressionLoss<P> {
    /// The unweighted objective on `path`.
    pub fn new(path: P) -> Self {
        Self { path, weighting: Weighting::Uniform }
    }

    /// Weight each sample's squared error by `weighting(t)`.
    pub fn with_weighting(mut self, weighting: Weighting) -> Self {
        self.weighting = weighting;
        self
    }

    /// The path.
    pub fn path(&self) -> &P {
        &self.path
    }

    /// The loss on one batch: `mean_i w(t_i) mean_j (f_θ(x_t, t)_ij − target_ij)²` (with uniform
    /// weights, the mean over every element), as a one-element tensor (differentiable when the
    /// model's parameters are tracked).
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for an empty batch; shape mismatches; the model's errors.
    pub fn loss<M: Model<D>, const D: usize>(
        &self,
        model: &M,
        x0: Tensor<D>,
        x1: Tensor<D>,
        noise: Option<Tensor<D>>,
        t: &Times,
        condition: &Condition,
    ) -> Result<Tensor<1>> {
        if x1.dims()[0] == 0 {
            return Err(Error::InvalidCount { name: "batch", value: 0, requirement: ">= 1" });
        }
        let kind = <M::Prediction as PredictionType>::KIND;
        let (x_t, target) = self.path.point_and_target(kind, x0, x1, noise, t)?;
        let prediction = model.predict(x_t, t, condition)?.into_tensor();
        flowforge_core::tensor::ensure_same_shape("model output vs target", &target, &prediction)?;
        let squared = (prediction - target).square();
        if self.weighting == Weighting::Uniform {
            return Ok(squared.mean());
        }
        let weights = self.path.loss_weights(&self.weighting, t, kind)?;
        let dims = squared.dims();
        let per_sample: Tensor<2> = squared.reshape([dims[0], dims[1..].iter().product::<usize>()]).mean_dim(1);
        Ok(weights.scale(per_sample).mean())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use flowforge_core::prediction::{noise, velocity};
    use flowforge_core::tensor::tensor_from_rows;
    use flowforge_paths::CondOt;

    #[test]
    fn a_perfect_conditional_model_has_zero_loss() {
        let device = Device::flex();
        let x0 = tensor_from_rows(&[vec![1.0, 2.0], vec![-1.0, 0.5]], &device);
        let x1 = tensor_from_rows(&[vec![3.0, -2.0], vec![0.0, 0.0]], &device);
        let t = Times::per_sample(vec![0.25, 0.75]).unwrap();
        let loss = RegressionLoss::new(AffinePath::new(CondOt::default()));
        // Knowing x1 − x0, a "model" that returns it exactly has zero loss.
        let target = x1.clone() - x0.clone();
        let oracle = |_x: Tensor<2>, _t: &Times| velocity(target.clone());
        let value = loss.loss(&oracle, x0.clone(), x1.clone(), None, &t, &Condition::none()).unwrap();
        assert_eq!(value.into_scalar::<f64>(), 0.0);
        // A zero noise model has loss mean(x0²).
        let zero = |x: Tensor<2>, _t: &Times| noise(x.zeros_like());
        let value = loss.loss(&zero, x0, x1, None, &t, &Condition::none()).unwrap();
        assert!((value.into_scalar::<f64>() - (1.0 + 4.0 + 1.0 + 0.25) / 4.0).abs() < 1e-6);
    }
}
