//! Exponential moving average of model weights.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use flowforge_core::error::check;
use flowforge_core::{Error, Result};

/// An exponential moving average of a model's weights, `θ̄ ← d θ̄ + (1 − d) θ`, with the warm-up
/// `d_k = min(decay, (1 + k)/(10 + k))` so that early averages are not dominated by the random
/// initialisation (the schedule of TensorFlow's `ExponentialMovingAverage` with `num_updates`,
/// used by DDPM and Score SDE). The average lives on the plain (non-autodiff) device.
#[derive(Debug, Clone)]
pub struct Ema<M> {
    model: M,
    decay: f64,
    updates: usize,
}

/// Collects every float parameter, flattened, in visiting order.
struct Collect {
    tensors: Vec<Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().inner();
        self.tensors.push(value.flatten(0, D - 1));
    }
}

/// Blends every float parameter with the collected online values, in the same order.
struct Blend {
    online: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let online = self.online.next().expect("EMA and online models have the same parameters");
        let decay = self.decay;
        param.map(|average| {
            let dims = average.dims();
            average.mul_scalar(decay) + online.reshape(dims).mul_scalar(1.0 - decay)
        })
    }
}

impl<M: Module + Clone> Ema<M> {
    /// Start an average at `model` (its non-autodiff copy).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `decay ∈ [0, 1)`.
    pub fn new(model: &M, decay: f64) -> Result<Self> {
        check::unit_right_open("decay", decay)?;
        Ok(Self { model: model.valid(), decay, updates: 0 })
    }

    /// The decay used by the next update.
    pub fn current_decay(&self) -> f64 {
        self.decay.min((1.0 + self.updates as f64) / (10.0 + self.updates as f64))
    }

    /// Fold the online weights in.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `online` has another number of parameters.
    pub fn update(&mut self, online: &M) -> Result<()> {
        let mut collect = Collect { tensors: Vec::new() };
        online.visit(&mut collect);
        let expected = self.model.num_params();
        let got: usize = collect.tensors.iter().map(|t| t.dims()[0]).sum();
        if got != expected {
            return Err(Error::ShapeMismatch { what: "EMA vs online parameters", expected: vec![expected], actual: vec![got] });
        }
        let mut blend = Blend { online: collect.tensors.into_iter(), decay: self.current_decay() };
        self.model = self.model.clone().map(&mut blend);
        self.updates += 1;
        Ok(())
    }

    /// The averaged model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Number of updates folded in.
    pub fn updates(&self) -> usize {
        self.updates
    }

    pub(crate) fn restore(model: M, decay: f64, updates: usize) -> Self {
        Self { model, decay, updates }
    }

    /// The configured decay.
    pub fn decay(&self) -> f64 {
        self.decay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    #[test]
    fn the_average_follows_the_warmup_decay_and_converges() {
        let device = Device::flex();
        let start = LinearConfig::new(2, 2).init(&device);
        let target = LinearConfig::new(2, 2).init(&device);
        let mut ema = Ema::new(&start, 0.9).unwrap();
        assert!((ema.current_decay() - 0.1).abs() < 1e-12, "warm-up: (1 + 0)/(10 + 0)");
        let w0: Vec<f64> = start.weight.val().try_into_vec_as::<f64>().unwrap();
        let w1: Vec<f64> = target.weight.val().try_into_vec_as::<f64>().unwrap();
        ema.update(&target).unwrap();
        let avg: Vec<f64> = ema.model().weight.val().try_into_vec_as::<f64>().unwrap();
        for ((a, x), y) in avg.iter().zip(&w0).zip(&w1) {
            assert!((a - (0.1 * x + 0.9 * y)).abs() < 1e-6);
        }
        for _ in 0..200 {
            ema.update(&target).unwrap();
        }
        let avg: Vec<f64> = ema.model().weight.val().try_into_vec_as::<f64>().unwrap();
        for (a, y) in avg.iter().zip(&w1) {
            assert!((a - y).abs() < 1e-6);
        }
        assert!(Ema::new(&start, 1.0).is_err());
    }
}
