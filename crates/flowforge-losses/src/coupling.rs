//! Couplings of source and data minibatches for conditional flow matching.
//!
//! CFM trains on pairs `(x₀, x₁)` drawn from a coupling π of the source and the data. The
//! independent coupling gives (rectified) flow matching; the minibatch optimal-transport
//! coupling straightens the learned paths (OT-CFM: Tong et al., *Improving and Generalizing
//! Flow-Based Generative Models with Minibatch Optimal Transport*, TMLR 2024; Pooladian et al.,
//! *Multisample Flow Matching*, ICML 2023); the entropic coupling with the Brownian bridge gives
//! Schrödinger-bridge CFM (Tong et al., *Simulation-Free Schrödinger Bridges via Score and Flow
//! Matching*, AISTATS 2024).
//!
//! Labels belong to the data: whenever data rows are reordered or resampled, their labels move
//! with them, so a conditional model sees each `x₁` with its own class.

use burn::tensor::{Device, Int, Tensor, TensorData};
use flowforge_core::error::check;
use flowforge_core::{Error, Result};
use flowforge_metrics::linear_sum_assignment;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// A coupled minibatch: row `i` of `x0` is paired with row `i` of `x1` (and its label).
#[derive(Debug, Clone)]
pub struct CoupledBatch {
    /// Source samples.
    pub x0: Tensor<2>,
    /// Data samples.
    pub x1: Tensor<2>,
    /// The data's labels, if any, aligned with `x1`.
    pub labels: Option<Tensor<1, Int>>,
}

/// How to pair a source minibatch with a data minibatch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Coupling {
    /// Pair row i with row i (π = p₀ ⊗ p₁).
    #[default]
    Independent,
    /// The exact minibatch OT plan for the squared Euclidean cost (a permutation, found by the
    /// Jonker–Volgenant assignment on the host; POT's `ot.emd` in torchcfm).
    ExactOt,
    /// The entropic OT plan `argmin ⟨π, C⟩ − reg·H(π)` by log-domain Sinkhorn on the device
    /// (Cuturi, *Sinkhorn Distances*, NeurIPS 2013), then one data partner drawn for every
    /// source row from its conditional `π(· | i)`. Schrödinger-bridge CFM uses `reg = 2σ²`.
    EntropicOt {
        /// Entropic regularisation (> 0), in units of the squared-distance cost.
        reg: f64,
        /// Sinkhorn iterations.
        iterations: usize,
    },
}

impl Coupling {
    /// The coupling of Schrödinger-bridge CFM with bridge noise σ: entropic OT with
    /// `reg = 2σ²` (torchcfm's `SchrodingerBridgeConditionalFlowMatcher`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless σ > 0.
    pub fn schrodinger_bridge(sigma: f64) -> Result<Self> {
        check::positive("sigma", sigma)?;
        Ok(Coupling::EntropicOt { reg: 2.0 * sigma * sigma, iterations: 100 })
    }

    /// Pair `x0` `[n, d]` with `x1` `[n, d]` (and `x1`'s labels).
    ///
    /// The exact plan reads the `n × n` cost matrix back to the host (one synchronisation per
    /// batch, inherent to a combinatorial solver); the entropic plan stays on the device; `rng`
    /// draws the entropic plan's partners.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for an empty batch; [`Error::ShapeMismatch`] for different batch
    /// sizes or dimensions, or labels of another length; [`Error::NonFinite`] for NaN/∞ data;
    /// [`Error::InvalidParameter`] for reg ≤ 0.
    pub fn couple<R: Rng + ?Sized>(
        &self,
        x0: Tensor<2>,
        x1: Tensor<2>,
        labels: Option<Tensor<1, Int>>,
        rng: &mut R,
    ) -> Result<CoupledBatch> {
        let [n0, d0] = x0.dims();
        let [n1, d1] = x1.dims();
        if n1 == 0 {
            return Err(Error::InvalidCount { name: "batch", value: 0, requirement: ">= 1" });
        }
        if (n0, d0) != (n1, d1) {
            return Err(Error::ShapeMismatch { what: "x0 vs x1 (a coupling needs equal batches)", expected: vec![n1, d1], actual: vec![n0, d0] });
        }
        if let Some(l) = &labels {
            if l.dims()[0] != n1 {
                return Err(Error::ShapeMismatch { what: "labels vs x1", expected: vec![n1], actual: l.dims().to_vec() });
            }
        }
        match *self {
            Coupling::Independent => Ok(CoupledBatch { x0, x1, labels }),
            Coupling::ExactOt => {
                let cost = squared_distances(&x0, &x1);
                let host = cost.try_into_vec_as::<f64>().map_err(|e| Error::NonFinite { what: format!("reading the cost matrix: {e:?}") })?;
                if host.iter().any(|c| !c.is_finite()) {
                    return Err(Error::NonFinite { what: "the OT cost matrix (NaN or ∞ in x0 or x1)".into() });
                }
                let partner = linear_sum_assignment(&host, n1)?;
                // Row i of x0 goes with row partner[i] of x1: gather the data (and labels).
                let index = index_tensor(&partner, &x1.device());
                let labels = labels.map(|l| l.select(0, index.clone()));
                Ok(CoupledBatch { x0, x1: x1.select(0, index), labels })
            }
            Coupling::EntropicOt { reg, iterations } => {
                check::positive("reg", reg)?;
                check::count_at_least_one("iterations", iterations)?;
                let plan = sinkhorn_log_plan(squared_distances(&x0, &x1), reg, iterations);
                // Inverse-CDF sampling of one partner per row from host uniforms (reproducible
                // from the seed on every backend, no synchronisation).
                let conditional = plan.clone().exp();
                let cdf = (conditional.clone() / conditional.sum_dim(1)).cumsum(1);
                let uniforms: Vec<f64> = (0..n1).map(|_| rng.random::<f64>()).collect();
                let u = Tensor::<2>::from_data(TensorData::new(uniforms, [n1, 1]), &x1.device());
                let index: Tensor<1, Int> = cdf.lower(u).int().sum_dim(1).clamp_max(n1 as i64 - 1).squeeze_dim(1);
                let labels = labels.map(|l| l.select(0, index.clone()));
                Ok(CoupledBatch { x0, x1: x1.select(0, index), labels })
            }
        }
    }
}

/// `C_ij = ‖x0_i − x1_j‖²`, `[n, n]`, by one matrix product.
pub fn squared_distances(x0: &Tensor<2>, x1: &Tensor<2>) -> Tensor<2> {
    let a = x0.clone().square().sum_dim(1); // [n, 1]
    let b = x1.clone().square().sum_dim(1).transpose(); // [1, n]
    (a + b - x0.clone().matmul(x1.clone().transpose()).mul_scalar(2.0)).clamp_min(0.0)
}

/// The log of the entropic OT plan between uniform marginals for cost `C`, by log-domain
/// Sinkhorn: `log π_ij = (f_i + g_j − C_ij)/reg − log n²` after alternating
/// `f = −reg·LSE_j((g_j − C_ij)/reg)`, `g = −reg·LSE_i((f_i − C_ij)/reg)` (Peyré & Cuturi,
/// *Computational Optimal Transport*, 2019, §4.4). Rows of `exp(log π)` sum to 1/n at
/// convergence.
pub fn sinkhorn_log_plan(cost: Tensor<2>, reg: f64, iterations: usize) -> Tensor<2> {
    let [n, m] = cost.dims();
    let scaled = cost.div_scalar(reg); // C/reg
    let log_a = -(n as f64).ln();
    let log_b = -(m as f64).ln();
    let lse = |x: Tensor<2>, dim: usize| -> Tensor<2> {
        let max = x.clone().max_dim(dim);
        (x - max.clone()).exp().sum_dim(dim).log() + max
    };
    // Potentials in units of reg: f̃ = f/reg, g̃ = g/reg.
    let mut f = Tensor::<2>::zeros([n, 1], &scaled.device());
    let mut g = Tensor::<2>::zeros([1, m], &scaled.device());
    for _ in 0..iterations {
        f = lse(g.clone() - scaled.clone(), 1).neg().add_scalar(log_a);
        g = lse(f.clone() - scaled.clone(), 0).neg().add_scalar(log_b);
    }
    f + g - scaled
}

fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowforge_core::tensor::{tensor_from_rows, tensor_to_rows, tensor_to_vec};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn sinkhorn_plan_has_uniform_marginals_and_tends_to_the_exact_plan() {
        let device = Device::flex();
        let x0 = tensor_from_rows(&[vec![0.0, 0.0], vec![1.0, 0.0], vec![0.0, 3.0]], &device);
        let x1 = tensor_from_rows(&[vec![0.1, 3.1], vec![0.1, 0.1], vec![1.2, -0.1]], &device);
        let plan = sinkhorn_log_plan(squared_distances(&x0, &x1), 0.05, 200).exp();
        let rows = tensor_to_vec(plan.clone().sum_dim(1));
        let cols = tensor_to_vec(plan.clone().sum_dim(0));
        for v in rows.iter().chain(&cols) {
            assert!((v - 1.0 / 3.0).abs() < 1e-4, "marginal {v}");
        }
        // Small reg: the mass concentrates on the optimal permutation 0→1, 1→2, 2→0.
        let p = tensor_to_rows(plan);
        assert!(p[0][1] > 0.33 && p[1][2] > 0.33 && p[2][0] > 0.33, "{p:?}");
    }

    #[test]
    fn couplings_keep_labels_with_their_data() {
        let device = Device::flex();
        let x0 = tensor_from_rows(&[vec![10.0], vec![0.0], vec![20.0]], &device);
        let x1 = tensor_from_rows(&[vec![0.5], vec![19.0], vec![9.0]], &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![7i64, 8, 9], [3]), &device);
        let mut rng = StdRng::seed_from_u64(0);
        for coupling in [Coupling::ExactOt, Coupling::EntropicOt { reg: 0.01, iterations: 200 }] {
            let out = coupling.couple(x0.clone(), x1.clone(), Some(labels.clone()), &mut rng).unwrap();
            assert_eq!(tensor_to_vec(out.x1), vec![9.0, 0.5, 19.0], "{coupling:?}");
            let l: Vec<i64> = out.labels.unwrap().try_into_vec_as::<i64>().unwrap();
            assert_eq!(l, vec![9, 7, 8], "{coupling:?}");
        }
    }

    #[test]
    fn bad_batches_are_typed_errors() {
        let device = Device::flex();
        let mut rng = StdRng::seed_from_u64(0);
        let a = tensor_from_rows(&[vec![0.0, 1.0], vec![1.0, 2.0]], &device);
        let b = tensor_from_rows(&[vec![0.0, 1.0]], &device);
        assert!(matches!(Coupling::ExactOt.couple(a.clone(), b, None, &mut rng), Err(Error::ShapeMismatch { .. })));
        let nan = tensor_from_rows(&[vec![f64::NAN, 1.0], vec![1.0, 2.0]], &device);
        assert!(matches!(Coupling::ExactOt.couple(a.clone(), nan, None, &mut rng), Err(Error::NonFinite { .. })));
        let empty = Tensor::<2>::zeros([0, 2], &device);
        assert!(matches!(Coupling::ExactOt.couple(empty.clone(), empty, None, &mut rng), Err(Error::InvalidCount { .. })));
        assert!(matches!(Coupling::schrodinger_bridge(0.0), Err(Error::InvalidParameter { name: "sigma", .. })));
        assert!(matches!(
            Coupling::EntropicOt { reg: -1.0, iterations: 10 }.couple(a.clone(), a, None, &mut rng),
            Err(Error::InvalidParameter { name: "reg", .. })
        ));
    }
}
