//! # flowforge-paths
//!
//! Probability paths between a source (noise, t = 0) and the data (t = 1):
//!
//! - the [`Schedule`] abstraction (α_t, σ_t, α̇_t, σ̇_t, SNR and its inverse, EDM σ);
//! - the built-in schedules: [`CondOt`] (linear / rectified flow, optional σ_min), [`Cosine`],
//!   [`Vp`], [`LinearVp`], [`SubVp`], [`Ve`], [`PolynomialConvex`], [`Edm`], the discrete DDPM
//!   [`DiscreteSchedule`] (`linear`, `scaled_linear`, `squaredcos_cap_v2`, `sigmoid`, zero
//!   terminal SNR) and user-defined [`FnSchedule`]s;
//! - the [`AffinePath`] `x_t = σ_t x₀ + α_t x₁` with its conditional velocity, regression
//!   targets and conversions between prediction kinds;
//! - the [`StochasticInterpolant`] `x_t = σ_t x₀ + α_t x₁ + γ_t ε` (Brownian bridge,
//!   constant-σ CFM);
//! - serialisable [`ScheduleConfig`] / [`PathConfig`].
//!
//! Every schedule is evaluated on the host in f64; tensors only ever see the resulting
//! coefficients.
#![warn(missing_docs)]

mod affine;
mod config;
mod discrete;
mod interpolant;
mod schedule;
mod schedules;

pub use affine::{AffinePath, ConditionalPath, DdpmVariance, GaussianTransition, PathCoefficients, PathSample, SINGULARITY_THRESHOLD};
pub use config::{AnyPath, AnySchedule, PathConfig, ScheduleConfig};
pub use discrete::{BetaSchedule, DiscreteSchedule, DiscreteScheduleConfig, rescale_zero_terminal_snr};
pub use interpolant::{NoiseScale, StochasticInterpolant};
pub use schedule::{ConvexSchedule, Schedule, ScheduleValues};
pub use schedules::{
    CondOt, CondOtConfig, Cosine, CosineConfig, Edm, EdmConfig, FnSchedule, LinearVp,
    LinearVpConfig, PolynomialConvex, PolynomialConvexConfig, SubVp, SubVpConfig, Ve, VeConfig, Vp,
    VpConfig,
};
