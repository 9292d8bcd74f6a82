//! # flowforge-losses
//!
//! Training objectives:
//!
//! - [`RegressionLoss`]: regress a model onto a path's conditional target of its own prediction
//!   kind — conditional flow matching for velocity models (Lipman et al., *Flow Matching for
//!   Generative Modeling*, ICLR 2023, eq. 9), the "simple" DDPM loss for noise models (Ho et al.
//!   2020, eq. 14) — on any path;
//! - [`meanflow`]: the MeanFlow objective (Geng et al. 2025) with exact or finite-difference
//!   JVPs, in flowforge's time convention with typed conversions to the paper's;
//! - [`time_sampling`]: densities of training times (uniform, discrete, logit-normal, EDM
//!   log-normal, SD3 mode-with-scale);
//! - [`coupling`]: independent, exact-OT and entropic-OT (Schrödinger bridge) minibatch
//!   couplings that carry labels with their data;
//! - [`conditioning`]: label dropout for classifier-free guidance and the noise-aware
//!   classifier's cross-entropy for classifier guidance;
//! - [`edm`]: EDM preconditioning as a model decorator;
//! - [`vlb`]: the diffusion variational bound's terms (KL per step, decoder likelihood);
//! - [`elbo`]: the Gaussian VAE ELBO terms (closed-form KL, Gaussian and Bernoulli likelihoods).
#![warn(missing_docs)]

pub mod conditioning;
pub mod coupling;
pub mod edm;
pub mod elbo;
pub mod meanflow;
mod regression;
pub mod time_sampling;
pub mod vlb;

pub use regression::{RegressionLoss, TargetPath};
