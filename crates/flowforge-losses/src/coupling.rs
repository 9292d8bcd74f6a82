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
    /// The entropic OT plan `argmin ⟨π, C⟩ − reg·H(π)` by Sinkhorn's matrix scaling on the
    /// host in f64 (Cuturi, *Sinkhorn Distances*, NeurIPS 2013; POT's `ot.sinkhorn`, which
    /// torchcfm calls), then one data partner drawn for every source row from its conditional
    /// `π(· | i)`. Schrödinger-bridge CFM uses `reg = 2σ²`.
    EntropicOt {
        /// Entropic regularisation (> 0), in units of the squared-distance cost.
        reg: f64,
        /// The most Sinkhorn iterations.
        iterations: usize,
        /// Stop once the row marginals are within this ℓ¹ distance of uniform (POT's
        /// `stopThr`, 1e-9 there; 1e-6 is ample for drawing partners and needs about half the
        /// iterations).
        tolerance: f64,
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
        Ok(Coupling::EntropicOt { reg: 2.0 * sigma * sigma, iterations: 1000, tolerance: 1e-6 })
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
        if let Some(l) = &labels
            && l.dims()[0] != n1
        {
            return Err(Error::ShapeMismatch { what: "labels vs x1", expected: vec![n1], actual: l.dims().to_vec() });
        }
        match *self {
            Coupling::Independent => Ok(CoupledBatch { x0, x1, labels }),
            Coupling::ExactOt => {
                // The plan is a constant of the loss: compute it off the autodiff graph.
                let cost = squared_distances(&x0.clone().without_autodiff(), &x1.clone().without_autodiff());
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
            Coupling::EntropicOt { reg, iterations, tolerance } => {
                check::positive("reg", reg)?;
                check::count_at_least_one("iterations", iterations)?;
                // The plan is a constant of the loss: computed off the autodiff graph, on the
                // host in f64 (one read of the n × n cost), like the exact assignment.
                let cost = squared_distances(&x0.clone().without_autodiff(), &x1.clone().without_autodiff());
                let host = cost.try_into_vec_as::<f64>().map_err(|e| Error::NonFinite { what: format!("reading the cost matrix: {e:?}") })?;
                if host.iter().any(|c| !c.is_finite()) {
                    return Err(Error::NonFinite { what: "the OT cost matrix (NaN or ∞ in x0 or x1)".into() });
                }
                let plan = sinkhorn_plan(&host, n0, n1, reg, iterations, tolerance)?;
                // Inverse-CDF sampling of one partner per row from host uniforms.
                let partner: Vec<usize> = plan
                    .chunks(n1)
                    .map(|row| {
                        let total: f64 = row.iter().sum();
                        let target = rng.random::<f64>() * total;
                        let mut acc = 0.0;
                        row.iter().position(|p| {
                            acc += p;
                            acc > target
                        })
                        .unwrap_or(n1 - 1)
                    })
                    .collect();
                let index = index_tensor(&partner, &x1.device());
                let labels = labels.map(|l| l.select(0, index.clone()));
                Ok(CoupledBatch { x0, x1: x1.select(0, index), labels })
            }
        }
    }
}

/// The entropic OT plan `π = diag(u) K diag(v)`, `K = exp(−(C − min C)/reg)`, between uniform
/// marginals for the row-major `n × m` cost `C`, by Sinkhorn's alternating scaling
/// `u = a / (K v)`, `v = b / (Kᵀ u)` in f64 (Cuturi 2013; POT's `ot.sinkhorn` with
/// `method = "sinkhorn"`), stopping once `‖u ⊙ K v − a‖₁ < tolerance` (POT's `stopThr`). Where the
/// kernel underflows (a row or column of K all zero, for `reg` tiny against the costs) it runs
/// the same iteration in the log domain instead. Returns π row-major; rows sum to 1/n.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `cost.len() != n·m`; [`Error::InvalidParameter`] for
/// `reg ≤ 0` or a negative tolerance; [`Error::InvalidCount`] for empty marginals or zero
/// iterations.
pub fn sinkhorn_plan(cost: &[f64], n: usize, m: usize, reg: f64, iterations: usize, tolerance: f64) -> Result<Vec<f64>> {
    check::non_negative("tolerance", tolerance)?;
    check::positive("reg", reg)?;
    check::count_at_least_one("rows", n)?;
    check::count_at_least_one("columns", m)?;
    check::count_at_least_one("iterations", iterations)?;
    if cost.len() != n * m {
        return Err(Error::ShapeMismatch { what: "Sinkhorn cost matrix", expected: vec![n * m], actual: vec![cost.len()] });
    }
    let (a, b) = (1.0 / n as f64, 1.0 / m as f64);
    let floor = cost.iter().copied().fold(f64::INFINITY, f64::min);
    let kernel: Vec<f64> = cost.iter().map(|c| (-(c - floor) / reg).exp()).collect();
    let row_ok = kernel.chunks(m).all(|row| row.iter().any(|&k| k > 0.0));
    let col_ok = (0..m).all(|j| (0..n).any(|i| kernel[i * m + j] > 0.0));
    if !(row_ok && col_ok) {
        return Ok(sinkhorn_log_host(cost, n, m, reg, iterations));
    }
    let mut u = vec![a; n];
    let mut v = vec![b; m];
    let mut kv = vec![0.0; n];
    for _ in 0..iterations {
        for (i, row) in kernel.chunks(m).enumerate() {
            kv[i] = row.iter().zip(&v).map(|(k, v)| k * v).sum();
        }
        let error: f64 = u.iter().zip(&kv).map(|(u, kv)| (u * kv - a).abs()).sum();
        if error < tolerance {
            break;
        }
        u.iter_mut().zip(&kv).for_each(|(u, kv)| *u = a / kv);
        let mut ktu = vec![0.0; m];
        for (row, &ui) in kernel.chunks(m).zip(&u) {
            ktu.iter_mut().zip(row).for_each(|(acc, k)| *acc += k * ui);
        }
        v.iter_mut().zip(&ktu).for_each(|(v, ktu)| *v = b / ktu);
    }
    Ok(kernel.chunks(m).zip(&u).flat_map(|(row, &ui)| row.iter().zip(&v).map(move |(k, vj)| ui * k * vj)).collect())
}

/// Log-domain Sinkhorn on the host, for kernels that underflow.
fn sinkhorn_log_host(cost: &[f64], n: usize, m: usize, reg: f64, iterations: usize) -> Vec<f64> {
    // One-pass log-sum-exp (running maximum), so the n + m reductions per iteration allocate
    // nothing.
    let lse = |values: &mut dyn Iterator<Item = f64>| -> f64 {
        let (mut max, mut sum) = (f64::NEG_INFINITY, 0.0);
        for v in values {
            if v > max {
                sum = sum * (max - v).exp() + 1.0;
                max = v;
            } else {
                sum += (v - max).exp();
            }
        }
        max + sum.ln()
    };
    let (log_a, log_b) = (-(n as f64).ln(), -(m as f64).ln());
    let (mut f, mut g) = (vec![0.0; n], vec![0.0; m]);
    for _ in 0..iterations {
        for i in 0..n {
            f[i] = log_a - lse(&mut (0..m).map(|j| g[j] - cost[i * m + j] / reg));
        }
        for j in 0..m {
            g[j] = log_b - lse(&mut (0..n).map(|i| f[i] - cost[i * m + j] / reg));
        }
    }
    (0..n).flat_map(|i| (0..m).map(move |j| (i, j))).map(|(i, j)| (f[i] + g[j] - cost[i * m + j] / reg).exp()).collect()
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
        for coupling in [Coupling::ExactOt, Coupling::EntropicOt { reg: 0.01, iterations: 200, tolerance: 1e-9 }] {
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
            Coupling::EntropicOt { reg: -1.0, iterations: 10, tolerance: 1e-9 }.couple(a.clone(), a, None, &mut rng),
            Err(Error::InvalidParameter { name: "reg", .. })
        ));
    }
}
