//! Adam and AdamW as one fused pass per parameter tensor.

use burn::optim::{AdaptiveMomentumState, AdamState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};
use flowforge_kernels::{AdamStep, adam_update};

/// Adam (Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015) with optional
/// decoupled weight decay (AdamW; Loshchilov & Hutter, *Decoupled Weight Decay
/// Regularization*, ICLR 2019), the update of `torch.optim.Adam(W)`:
///
/// ```text
/// m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
/// p ← (1 − lr·λ) p − lr · m̂ / (√v̂ + ε),   m̂ = m/(1 − β₁ᵗ),  v̂ = v/(1 − β₂ᵗ)
/// ```
///
/// Each parameter tensor is updated by [`flowforge_kernels::adam_update`]: one pass in place on
/// burn-flex instead of burn-optim's dozen tensor ops, plain burn ops on other devices. The
/// per-step scalars (bias corrections, `1 − β`) are computed on the host in f64. The state is
/// burn-optim's [`AdamState`], so optimiser checkpoints have burn's Adam layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedAdam {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub epsilon: f64,
    /// Decoupled weight decay λ (0: Adam).
    pub weight_decay: f64,
}

impl Default for FusedAdam {
    /// `torch.optim.Adam`'s defaults: β = (0.9, 0.999), ε = 1e-8, no weight decay.
    fn default() -> Self {
        FusedAdam { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weight_decay: 0.0 }
    }
}

impl FusedAdam {
    /// burn's [`ModuleOptimizer`] driving this update over every parameter of a module.
    pub fn into_module_optimizer(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(&self, lr: LearningRate, tensor: Tensor<D>, grad: Tensor<D>, state: Option<Self::State<D>>) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, moments) = match state {
            Some(s) => (s.momentum.time + 1, Some((s.momentum.moment_1, s.momentum.moment_2))),
            None => (1, None),
        };
        let step = AdamStep::new(lr, self.beta1, self.beta2, self.epsilon, self.weight_decay, time);
        // The module optimiser hands over a parameter and its own gradient: same shapes.
        let (param, m, v) = adam_update(tensor, grad, moments, &step).expect("a parameter and its gradient share a shape");
        (param, Some(AdamState::new(AdaptiveMomentumState::new(time, m, v))))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamConfig, AdamWConfig};
    use burn::tensor::Distribution;

    fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f64 {
        let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
        a.iter().zip(&b).map(|(p, q)| f64::from((p - q).abs())).fold(0.0, f64::max)
    }

    /// Twelve steps of burn-optim's Adam and AdamW and of [`FusedAdam`] from the same start and
    /// gradients agree (burn's own tests check its Adam against PyTorch's), and the states are
    /// interchangeable: each step starts from the other optimiser's last state. (Parameters
    /// are O(1), so 4e-6 is a few ulps; a 0.1% error in the update, ~1e-5, fails.)
    #[test]
    fn fused_adam_follows_burns_adam_and_adamw() {
        let device = Device::flex();
        for weight_decay in [0.0, 0.1] {
            let ours = FusedAdam { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weight_decay };
            device.seed(3);
            let mut p = Tensor::<2>::random([70, 300], Distribution::Normal(0.0, 1.0), &device);
            let mut p_burn = p.clone();
            let mut state: Option<AdamState<2>> = None;
            for step in 0..12 {
                let lr = 1e-2 * (1.0 + step as f64 / 10.0);
                let g = Tensor::<2>::random([70, 300], Distribution::Normal(0.0, 3.0), &device);
                let (next, next_state) = ours.step(lr, p, g.clone(), state.clone());
                if weight_decay == 0.0 {
                    let adam = AdamConfig::new().with_epsilon(1e-8).build();
                    let (theirs, their_state) = adam.step(lr, p_burn, g, state);
                    assert!(max_abs_diff(next.clone(), theirs.clone()) < 4e-6, "Adam step {step}: {}", max_abs_diff(next.clone(), theirs.clone()));
                    // Alternate whose state carries on.
                    state = if step % 2 == 0 { their_state } else { next_state };
                    p_burn = theirs;
                } else {
                    let adamw = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(weight_decay as f32).build();
                    let w_state = state.map(|s| burn::optim::AdamWState::new(s.momentum));
                    let (theirs, _) = adamw.step(lr, p_burn, g, w_state);
                    assert!(max_abs_diff(next.clone(), theirs.clone()) < 4e-6, "AdamW step {step}");
                    state = next_state;
                    p_burn = theirs;
                }
                assert_eq!(state.as_ref().unwrap().momentum.time, step + 1);
                p = next;
            }
        }
    }
}
