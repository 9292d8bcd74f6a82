//! # flowforge-core
//!
//! The vocabulary every flowforge crate speaks:
//!
//! - [`time`]: the time convention (t = 0 noise, t = 1 data) and typed conversions to DDPM
//!   timesteps, EDM sigmas and the reversed convention;
//! - [`prediction`]: the five prediction kinds (noise, data, velocity, v, score) as values and
//!   as types;
//! - [`model`]: the [`Model`] trait, implemented by networks and by closures;
//! - [`error`]: the single typed [`Error`];
//! - [`jvp`]: forward-mode tangent propagation ([`Dual`](jvp::Dual)) and finite-difference JVPs;
//! - [`tensor`]: shape checks and host ↔ device helpers.
//!
//! Library crates take a `&Device` and enable no burn backend; the umbrella crate `flowforge`
//! picks backends through its features.
#![warn(missing_docs)]

pub mod error;
pub mod jvp;
pub mod model;
pub mod prediction;
pub mod tensor;
pub mod time;

pub use error::{Error, Result};
pub use model::{AsModel, Condition, Model, Network, model_fn, predicting};
pub use prediction::{Data, Noise, PredictionKind, PredictionType, Predicted, Score, VPrediction, Velocity};
pub use time::{Coefficient, DiscreteTimesteps, EdmSigma, ReversedTime, Time, Times};
