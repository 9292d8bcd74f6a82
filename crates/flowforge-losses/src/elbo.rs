//! The evidence lower bound of a VAE with a Gaussian posterior (Kingma & Welling,
//! *Auto-Encoding Variational Bayes*, ICLR 2014; β-VAE: Higgins et al., ICLR 2017):
//!
//! `ELBO(x) = E_{q(z|x)}[log p(x | z)] − β KL(q(z | x) ‖ N(0, I))`,
//!
//! with `q(z | x) = N(μ, diag exp(logvar))`, the reparameterisation `z = μ + exp(logvar/2) ε`,
//! the closed-form KL and Gaussian or Bernoulli likelihoods. All terms are per element; sum
//! over the feature dimensions for per-sample values.

use burn::tensor::Tensor;
use burn::tensor::activation::softplus;
use flowforge_core::error::check;
use flowforge_core::tensor::ensure_same_shape;
use flowforge_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// `z = μ + exp(logvar/2) ε`.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless the three tensors agree.
pub fn reparameterize<const D: usize>(mu: Tensor<D>, logvar: Tensor<D>, eps: Tensor<D>) -> Result<Tensor<D>> {
    ensure_same_shape("logvar vs mu", &mu, &logvar)?;
    ensure_same_shape("eps vs mu", &mu, &eps)?;
    Ok(mu + logvar.mul_scalar(0.5).exp() * eps)
}

/// `KL(N(μ, exp(logvar)) ‖ N(0, 1))` per element: `−½ (1 + logvar − μ² − exp(logvar))`.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `mu` and `logvar` agree.
pub fn gaussian_kl<const D: usize>(mu: Tensor<D>, logvar: Tensor<D>) -> Result<Tensor<D>> {
    ensure_same_shape("logvar vs mu", &mu, &logvar)?;
    Ok((logvar.clone().add_scalar(1.0) - mu.square() - logvar.exp()).mul_scalar(-0.5))
}

/// `log N(x; mean, std²)` per element with a per-element standard deviation.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless the tensors agree.
pub fn gaussian_log_likelihood<const D: usize>(x: Tensor<D>, mean: Tensor<D>, std: Tensor<D>) -> Result<Tensor<D>> {
    ensure_same_shape("mean vs x", &x, &mean)?;
    ensure_same_shape("std vs x", &x, &std)?;
    let half_log_two_pi = 0.5 * (2.0 * core::f64::consts::PI).ln();
    let z = (x - mean) / std.clone();
    Ok(z.square().mul_scalar(-0.5) - std.log().add_scalar(half_log_two_pi))
}

/// `log N(x; mean, σ²)` per element with one scalar standard deviation σ.
///
/// # Errors
/// [`Error::ShapeMismatch`]; [`Error::InvalidParameter`] for σ ≤ 0.
pub fn gaussian_log_likelihood_scalar<const D: usize>(x: Tensor<D>, mean: Tensor<D>, sigma: f64) -> Result<Tensor<D>> {
    check::positive("sigma", sigma)?;
    ensure_same_shape("mean vs x", &x, &mean)?;
    let constant = sigma.ln() + 0.5 * (2.0 * core::f64::consts::PI).ln();
    Ok((x - mean).square().mul_scalar(-0.5 / (sigma * sigma)).sub_scalar(constant))
}

/// `log Bernoulli(x; sigmoid(logits))` per element, for x ∈ [0, 1] (the continuous relaxation
/// used for grey-scale images): `x·logits − softplus(logits)`, stable for large logits.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless the tensors agree.
pub fn bernoulli_log_likelihood<const D: usize>(x: Tensor<D>, logits: Tensor<D>) -> Result<Tensor<D>> {
    ensure_same_shape("logits vs x", &x, &logits)?;
    Ok(x * logits.clone() - softplus(logits, 1.0))
}

/// The decoder likelihood of an [`Elbo`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Likelihood {
    /// `N(x; decoder output, σ² I)`.
    Gaussian {
        /// The fixed standard deviation σ.
        sigma: f64,
    },
    /// `Bernoulli(x; sigmoid(decoder output))`.
    Bernoulli,
}

/// The negative β-ELBO, averaged over the batch: `mean_i [−log p(x_i | z_i) + β KL_i]`, each
/// term summed over features.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Elbo {
    /// The likelihood.
    pub likelihood: Likelihood,
    /// The KL weight β (1 is the ELBO).
    pub beta: f64,
}

/// The terms of a negative ELBO.
#[derive(Debug, Clone)]
pub struct ElboTerms {
    /// Batch mean of the reconstruction negative log-likelihood (nats per sample).
    pub reconstruction: Tensor<1>,
    /// Batch mean of the KL (nats per sample).
    pub kl: Tensor<1>,
    /// `reconstruction + β kl`, the loss to minimise.
    pub loss: Tensor<1>,
}

impl Elbo {
    /// The terms for data `x` `[batch, features]`, decoder output, and posterior `(μ, logvar)`
    /// `[batch, latent]`.
    ///
    /// # Errors
    /// Shape mismatches; [`Error::InvalidParameter`] for β < 0 or σ ≤ 0.
    pub fn terms(&self, x: Tensor<2>, decoded: Tensor<2>, mu: Tensor<2>, logvar: Tensor<2>) -> Result<ElboTerms> {
        check::non_negative("beta", self.beta)?;
        let log_likelihood = match self.likelihood {
            Likelihood::Gaussian { sigma } => gaussian_log_likelihood_scalar(x, decoded, sigma)?,
            Likelihood::Bernoulli => bernoulli_log_likelihood(x, decoded)?,
        };
        if mu.dims()[0] != log_likelihood.dims()[0] {
            return Err(Error::ShapeMismatch {
                what: "posterior batch vs data batch",
                expected: vec![log_likelihood.dims()[0]],
                actual: vec![mu.dims()[0]],
            });
        }
        let reconstruction = log_likelihood.sum_dim(1).neg().mean();
        let kl = gaussian_kl(mu, logvar)?.sum_dim(1).mean();
        let loss = reconstruction.clone() + kl.clone().mul_scalar(self.beta);
        Ok(ElboTerms { reconstruction, kl, loss })
    }
}
