//! # flowforge
//!
//! Generative modelling on [burn](https://burn.dev): flow matching, diffusion and VAEs as
//! composable parts.
//!
//! | crate | re-exported as | what lives there |
//! |---|---|---|
//! | `flowforge-core` | [`core`] (and the root) | time conventions, prediction kinds, model traits, errors |
//! | `flowforge-paths` | [`paths`] | schedules and probability paths |
//! | `flowforge-losses` | [`losses`] | training objectives |
//! | `flowforge-samplers` | [`samplers`] | ODE/SDE solvers, DDPM, DDIM, time grids |
//! | `flowforge-guidance` | [`guidance`] | classifier-free, classifier and gradient guidance |
//! | `flowforge-data` | [`data`] | seeded 2-D toy distributions, Gaussian noise |
//! | `flowforge-metrics` | [`metrics`] | exact assignment, W2, energy distance, MMD |
//! | `flowforge-nets` | [`nets`] | time embeddings, MLP networks with exact JVPs |
//! | `flowforge-train` | [`train`] | the training loop: optimisers, schedules, EMA, checkpoints |
//! | `flowforge-plot` | [`plot`] | PNG plots for examples |
//!
//! This crate owns the backend features: `flex` (default, pure-Rust CPU), `ndarray`, `wgpu`,
//! `cuda`. The library crates take a `&Device` and never pick a backend themselves, so
//! [`default_device`] (burn's `Device::default()`) is whatever the enabled features make it.
//!
//! The convention everywhere: **t = 0 is the source (noise), t = 1 is the data**, and
//! `x_t = σ_t x₀ + α_t x₁`. See `docs/conventions.md` for the mapping to diffusers, k-diffusion
//! and flow_matching.
//!
//! ## Quick start
//!
//! ```
//! use flowforge::prelude::*;
//! use flowforge::samplers::{oracle::MixtureOracle, solve, Ddim, NoNoise, PathModel, SolveOptions, TimeGrid};
//!
//! let device = default_device();
//! // What: a model bound to the path it was trained on (here the exact denoiser of a mixture).
//! let schedule = VpConfig::new().init()?;
//! let path = AffinePath::new(schedule);
//! let model = MixtureOracle::new(schedule, vec![0.5, 0.5], vec![vec![-2.0, 0.0], vec![2.0, 0.0]], vec![0.3, 0.3])?;
//! let field = PathModel::new(&model, &path);
//! // How, when, and from where.
//! let x0 = Tensor::<2>::random([1000, 2], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
//! let samples = solve(&field, &Ddim::new(0.0)?, x0, &TimeGrid::uniform(50)?, &mut NoNoise, SolveOptions::default())?;
//! assert_eq!(samples.evaluations, 50);
//! # Ok::<(), flowforge::Error>(())
//! ```
#![warn(missing_docs)]

pub use burn;

pub mod allocator;
pub mod cli;
pub mod threads;
pub use flowforge_core as core;
pub use flowforge_data as data;
pub use flowforge_guidance as guidance;
pub use flowforge_kernels as kernels;
pub use flowforge_losses as losses;
pub use flowforge_metrics as metrics;
pub use flowforge_nets as nets;
pub use flowforge_train as train;
pub use flowforge_paths as paths;
pub use flowforge_plot as plot;
pub use flowforge_samplers as samplers;

pub use flowforge_core::{
    Condition, Data, DiscreteTimesteps, EdmSigma, Error, Model, Noise, PredictionKind,
    PredictionType, Predicted, Result, ReversedTime, Score, Time, Times, VPrediction, Velocity,
    model_fn,
};

/// The default device of the enabled backends (burn's `Device::default()`): a GPU backend if
/// one is enabled, otherwise the CPU (flex).
pub fn default_device() -> burn::tensor::Device {
    burn::tensor::Device::default()
}

/// The backends enabled in this build, by the names [`device`] accepts.
pub fn enabled_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "flex") {
        names.push("flex");
    }
    if cfg!(feature = "ndarray") {
        names.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    names
}

/// A device by backend name: `"default"`, `"flex"`, `"ndarray"`, `"wgpu"` or `"cuda"`.
///
/// # Errors
/// [`Error::BackendUnavailable`] if the backend's cargo feature is not enabled.
pub fn device(name: &str) -> Result<burn::tensor::Device> {
    use burn::tensor::Device;
    let device = match name {
        "default" => Some(Device::default()),
        #[cfg(feature = "flex")]
        "flex" => Some(Device::flex()),
        // Deprecated upstream in favour of flex; kept because users ask for it.
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Some(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Some(Device::wgpu(burn::tensor::DeviceKind::default())),
        #[cfg(feature = "cuda")]
        "cuda" => Some(Device::cuda(0)),
        _ => None,
    };
    device.ok_or_else(|| Error::BackendUnavailable {
        name: name.to_owned(),
        enabled: enabled_backends().join(", "),
    })
}

/// The most used items in one import.
pub mod prelude {
    pub use crate::default_device;
    pub use burn::tensor::{Device, Tensor};
    pub use flowforge_core::prediction::{data, noise, score, v_prediction, velocity};
    pub use flowforge_core::{
        Condition, Data, Error, Model, Noise, PredictionKind, Predicted, Result, Score, Time,
        Times, VPrediction, Velocity, model_fn,
    };
    pub use flowforge_paths::{
        AffinePath, ConditionalPath, CondOt, CondOtConfig, Cosine, CosineConfig,
        DiscreteSchedule, DiscreteScheduleConfig, Edm, EdmConfig, FnSchedule, LinearVp,
        PathConfig, PolynomialConvex, PolynomialConvexConfig, Schedule, ScheduleConfig,
        StochasticInterpolant, SubVp, SubVpConfig, Ve, VeConfig, Vp, VpConfig,
    };
}
