//! # flowforge-samplers
//!
//! Sampling as three orthogonal values and one driver, in the spirit of diffrax:
//!
//! - **what** to integrate: a [`VectorField`] — a [`PathModel`] (any model bound to the path it
//!   was trained on; its prediction is converted as each sampler needs) or a plain [`FnField`];
//! - **how**: a [`Sampler`] — ODE solvers [`Euler`], [`Midpoint`], [`Heun`], [`Rk4`] (in time,
//!   or in the noise-to-signal clock with [`NoiseToSignal`]), the adaptive [`Dopri5`], SDE
//!   samplers [`EulerMaruyama`] and [`PredictorCorrector`] with [`Langevin`], and the diffusion
//!   samplers [`Ddpm`], [`Ddim`], [`EdmStochastic`] and [`DpmSolverPp2m`];
//! - **when**: a [`TimeGrid`] (uniform, Karras ρ, SD3 shift, DDIM spacings, your own), which is
//!   plain validated data;
//! - **what to record**: [`SaveAt`].
//!
//! [`solve`] runs any sampler over any grid and returns the final state, the recorded
//! trajectory and the number of model evaluations. Samplers are stateless values: multistep
//! history lives in an explicit state created per run, noise comes from an explicit
//! [`NoiseSource`].
//!
//! The [`oracle`] module gives exact denoisers of Gaussian, mixture and empirical data for any
//! path: training-free baselines and ground truth for tests.
#![warn(missing_docs)]

mod adaptive;
mod diffusion;
mod field;
mod grid;
mod noise;
mod ode;
pub mod oracle;
mod sampler;
mod sde;

pub use adaptive::{AdaptiveSolution, Dopri5, PidController};
pub use diffusion::{Ddim, Ddpm, DdpmVariance, DpmHistory, DpmSolverPp2m, EdmStochastic, Posterior, SampleClipping};
pub use field::{Evaluation, FnField, PathModel, VectorField};
pub use grid::{DdimSpacing, TimeGrid, ddim_levels};
pub use noise::{DeviceNoise, NoNoise, NoiseSource, ReplayNoise, SeededNoise};
pub use ode::{Euler, Heun, Midpoint, NoiseToSignal, OdeSolver, Rk4};
pub use sampler::{RowBlocks, SaveAt, Sampler, Solution, SolveOptions, StepIndex, StepInfo, reflow_pairs, solve, solve_by_row_blocks};
pub use sde::{Diffusion, EulerMaruyama, Langevin, PredictorCorrector};
