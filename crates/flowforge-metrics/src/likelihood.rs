//! Exact log-likelihoods of flow models by the probability-flow ODE (the instantaneous change
//! of variables; Chen et al., *Neural ODEs*, NeurIPS 2018; Grathwohl et al., *FFJORD*, ICLR
//! 2019; Song et al. 2021, App. D.2).
//!
//! In flowforge time (t = 0 the standard-Gaussian source, t = 1 the data), along
//! `dx/dt = v(x, t)` the density obeys `d log p_t(x_t)/dt = −∇·v(x_t, t)`, so
//!
//! `log p₁(x) = log N(x₀; 0, I) − ∫₀¹ ∇·v(x_t, t) dt`,
//!
//! with `x₀` found by integrating the ODE backward from `x₁ = x`. The state `(x, ∫∇·v)` is
//! integrated with classical RK4 on a uniform grid from 1 to 0. The divergence is exact
//! (`d` reverse-mode passes, one per coordinate: for low dimension) or Hutchinson's unbiased
//! estimate `E[εᵀ (∂v/∂x) ε]` with Gaussian probes (one pass per probe: for images).

use burn::tensor::{Distribution as TensorDistribution, Tensor};
use flowforge_core::error::check;
use flowforge_core::tensor::input_gradient;
use flowforge_core::{Error, Result};
use flowforge_samplers::VectorField;

/// How the divergence `∇·v` is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Divergence {
    /// `Σᵢ ∂vᵢ/∂xᵢ` by one reverse-mode pass per coordinate (exact).
    Exact,
    /// Hutchinson's estimator `mean_k ε_kᵀ (∂v/∂x) ε_k`, ε_k ~ N(0, I) drawn on the device
    /// (fresh at every evaluation, as FFJORD's training estimator; seed the device for
    /// reproducibility).
    Hutchinson {
        /// Probes per evaluation (≥ 1).
        probes: usize,
    },
}

/// `∇·v(x, t)` per sample, `[batch]`.
///
/// # Errors
/// [`Error::NonFinite`] if the field does not depend on `x` (no gradient); the field's errors.
pub fn divergence<F: VectorField<2>>(field: &F, x: Tensor<2>, t: f64, method: Divergence) -> Result<(Tensor<2>, Tensor<1>)> {
    let [batch, dim] = x.dims();
    let x = x.without_autodiff();
    let device = x.device();
    // burn frees the tape at each backward (no retain_graph): one forward per reverse pass.
    let gradient_of = |weights: Tensor<2>| -> Result<(Tensor<2>, Tensor<2>)> {
        let (g, v) = input_gradient(x.clone(), "the vector field (for its divergence)", |x| {
            let v = field.velocity(x, t)?;
            Ok(((v.clone() * weights).sum(), v.without_autodiff()))
        })?;
        Ok((v, g))
    };
    let mut velocity = None;
    let mut total = Tensor::<2>::zeros([batch, 1], &device);
    match method {
        Divergence::Exact => {
            for i in 0..dim {
                // Row-wise ∂v_i/∂x_i: the gradient of Σ_b v_bi, column i.
                let mut basis = vec![0.0; dim];
                basis[i] = 1.0;
                let e = Tensor::<2>::from_data(burn::tensor::TensorData::new(basis, [1, dim]), &device).expand([batch, dim]);
                let (v, g) = gradient_of(e)?;
                total = total + g.narrow(1, i, 1);
                velocity.get_or_insert(v);
            }
        }
        Divergence::Hutchinson { probes } => {
            check::count_at_least_one("probes", probes)?;
            for _ in 0..probes {
                let eps = Tensor::<2>::random([batch, dim], TensorDistribution::Normal(0.0, 1.0), &device);
                let (v, g) = gradient_of(eps.clone())?;
                total = total + (g * eps).sum_dim(1);
                velocity.get_or_insert(v);
            }
            total = total.div_scalar(probes as f64);
        }
    }
    let velocity = velocity.ok_or(Error::InvalidCount { name: "dimension", value: 0, requirement: ">= 1" })?;
    Ok((velocity, total.squeeze_dim(1)))
}

/// Per-sample log-likelihoods in nats, and the source points `x₀` the data flowed back to.
#[derive(Debug, Clone)]
pub struct LogLikelihood {
    /// `log p₁(x)` per sample (nats).
    pub nats: Vec<f64>,
    /// `x₀`, the backward ODE's end points.
    pub source: Tensor<2>,
}

impl LogLikelihood {
    /// Mean negative log-likelihood in bits per dimension, `−mean log p / (d ln 2)`.
    pub fn bits_per_dim(&self, dim: usize) -> f64 {
        let mean = self.nats.iter().sum::<f64>() / self.nats.len().max(1) as f64;
        -mean / (dim as f64 * core::f64::consts::LN_2)
    }
}

/// `log p₁(x)` of the model whose probability-flow ODE is `field`, by RK4 with `steps` uniform
/// steps from t = 1 back to t = 0 (see the module docs).
///
/// # Errors
/// [`Error::InvalidCount`] for zero steps or an empty batch; [`Error::NonFinite`] for a
/// non-finite result; the field's errors.
pub fn log_likelihood<F: VectorField<2>>(field: &F, x: Tensor<2>, steps: usize, method: Divergence) -> Result<LogLikelihood> {
    check::count_at_least_one("steps", steps)?;
    let [batch, dim] = x.dims();
    check::count_at_least_one("batch", batch)?;
    // The augmented RK4 on (x, ℓ) with dℓ/dt = ∇·v; integrating from 1 to 0 gives
    // ℓ(0) − ℓ(1) = −∫₀¹ ∇·v dt.
    let h = -1.0 / steps as f64;
    let mut x = x.without_autodiff();
    let mut integral = Tensor::<1>::zeros([batch], &x.device());
    let n = steps as f64;
    for k in 0..steps {
        // Times from exact ratios, so the last one is exactly 0.
        let (t, middle, next) = ((steps - k) as f64 / n, (2 * (steps - k) - 1) as f64 / (2.0 * n), (steps - k - 1) as f64 / n);
        let (k1, d1) = divergence(field, x.clone(), t, method)?;
        let (k2, d2) = divergence(field, x.clone() + k1.clone().mul_scalar(h / 2.0), middle, method)?;
        let (k3, d3) = divergence(field, x.clone() + k2.clone().mul_scalar(h / 2.0), middle, method)?;
        let (k4, d4) = divergence(field, x.clone() + k3.clone().mul_scalar(h), next, method)?;
        x = x + (k1 + k2.mul_scalar(2.0) + k3.mul_scalar(2.0) + k4).mul_scalar(h / 6.0);
        integral = integral + (d1 + d2.mul_scalar(2.0) + d3.mul_scalar(2.0) + d4).mul_scalar(h / 6.0);
    }
    // log N(x₀; 0, I) + (ℓ(0) − ℓ(1)).
    let log_normal = x.clone().square().sum_dim(1).squeeze_dim(1).mul_scalar(-0.5).sub_scalar(0.5 * dim as f64 * (2.0 * core::f64::consts::PI).ln());
    let nats = (log_normal + integral)
        .try_into_vec_as::<f64>()
        .map_err(|e| Error::NonFinite { what: format!("reading the log-likelihood: {e:?}") })?;
    if let Some(i) = nats.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what: format!("the log-likelihood of sample {i}") });
    }
    Ok(LogLikelihood { nats, source: x })
}
