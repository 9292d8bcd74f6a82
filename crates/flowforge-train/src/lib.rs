//! # flowforge-train
//!
//! A small training loop around burn's optimisers, for any objective written as a closure
//! `|model, rng, step| -> loss`:
//!
//! - Adam / AdamW ([`OptimizerConfig`]; [`FusedAdam`] updates each tensor in one pass), linear
//!   warm-up then constant or cosine learning rate ([`LrSchedule`]), gradient-norm clipping;
//! - an exponential moving average of the weights with warm-up ([`Ema`]; burn has none);
//! - a progress bar with loss and it/s (indicatif), an observer for evaluation callbacks;
//! - checkpoints written atomically ([`checkpoint`]) and **exact resume**: every step draws its
//!   randomness from `(seed, step)`, and the model, optimiser and EMA states are restored, so the
//!   losses after a resume equal those of an uninterrupted run;
//! - a NaN/∞ loss stops training with [`Error::NonFiniteLoss`](flowforge_core::Error) naming the
//!   step, before any update, so the last good checkpoint survives;
//! - with the `burn-train` feature, [`learner`] runs any objective under burn-train's
//!   `SupervisedTraining` (its metrics, checkpointers and multi-device / DDP strategies).
#![warn(missing_docs)]

pub mod checkpoint;
mod ema;
#[cfg(feature = "burn-train")]
pub mod learner;
mod optimizer;
mod schedule;
mod trainer;

pub use ema::Ema;
pub use optimizer::FusedAdam;
pub use schedule::LrSchedule;
pub use trainer::{OptimizerConfig, StepReport, TrainReport, Trainer, TrainerConfig, step_rng};
