//! The training loop.

use crate::checkpoint::{self, TrainerState};
use crate::ema::Ema;
use crate::schedule::LrSchedule;
use burn::config::Config;
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use crate::optimizer::FusedAdam;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use flowforge_core::error::check;
use flowforge_core::{Error, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The optimiser: Adam or AdamW with PyTorch's defaults, run as [`FusedAdam`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OptimizerConfig {
    /// Adam (Kingma & Ba, ICLR 2015).
    Adam {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// ε.
        epsilon: f64,
    },
    /// AdamW, decoupled weight decay (Loshchilov & Hutter, ICLR 2019).
    AdamW {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// ε.
        epsilon: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    /// `torch.optim.Adam` defaults: β = (0.9, 0.999), ε = 1e-8.
    pub fn adam() -> Self {
        OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }
    }

    /// `torch.optim.AdamW` defaults: β = (0.9, 0.999), ε = 1e-8, weight decay 0.01.
    pub fn adamw() -> Self {
        OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weight_decay: 0.01 }
    }

    fn build(&self, clip: Option<f64>) -> ModuleOptimizer {
        let fused = match *self {
            OptimizerConfig::Adam { beta1, beta2, epsilon } => FusedAdam { beta1, beta2, epsilon, weight_decay: 0.0 },
            OptimizerConfig::AdamW { beta1, beta2, epsilon, weight_decay } => FusedAdam { beta1, beta2, epsilon, weight_decay },
        };
        let optimizer = fused.into_module_optimizer();
        match clip {
            Some(c) => optimizer.with_grad_clipping(GradientClippingConfig::Norm(c as f32).init()),
            None => optimizer,
        }
    }

    fn validate(&self) -> Result<()> {
        let (b1, b2, eps) = match *self {
            OptimizerConfig::Adam { beta1, beta2, epsilon } => (beta1, beta2, epsilon),
            OptimizerConfig::AdamW { beta1, beta2, epsilon, weight_decay } => {
                check::non_negative("weight_decay", weight_decay)?;
                (beta1, beta2, epsilon)
            }
        };
        check::unit_right_open("beta1", b1)?;
        check::unit_right_open("beta2", b2)?;
        check::positive("epsilon", eps)?;
        Ok(())
    }
}

/// Configuration of a [`Trainer`].
#[derive(Config, Debug, PartialEq)]
pub struct TrainerConfig {
    /// Total optimisation steps.
    pub steps: usize,
    /// Base learning rate.
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    /// Linear warm-up steps.
    #[config(default = 0)]
    pub warmup_steps: usize,
    /// Schedule after warm-up.
    #[config(default = "LrSchedule::Constant")]
    pub schedule: LrSchedule,
    /// The optimiser.
    #[config(default = "OptimizerConfig::adam()")]
    pub optimizer: OptimizerConfig,
    /// Clip the global gradient norm to this value.
    pub grad_clip_norm: Option<f64>,
    /// Keep an EMA of the weights with this decay.
    pub ema_decay: Option<f64>,
    /// Write a checkpoint every this many steps (and at the end) when a folder is set.
    pub checkpoint_every: Option<usize>,
    /// How many checkpoints to keep.
    #[config(default = 2)]
    pub keep_checkpoints: usize,
    /// Seed of the per-step randomness.
    #[config(default = 0)]
    pub seed: u64,
    /// Show a progress bar on the terminal.
    #[config(default = true)]
    pub progress: bool,
}

impl TrainerConfig {
    fn validate(&self) -> Result<()> {
        check::count_at_least_one("steps", self.steps)?;
        check::positive("learning_rate", self.learning_rate)?;
        self.optimizer.validate()?;
        if let Some(c) = self.grad_clip_norm {
            check::positive("grad_clip_norm", c)?;
        }
        if let Some(d) = self.ema_decay {
            check::unit_right_open("ema_decay", d)?;
        }
        if let Some(every) = self.checkpoint_every {
            check::count_at_least_one("checkpoint_every", every)?;
        }
        Ok(())
    }
}

/// The generator of step `step`: all randomness of a step derives from `(seed, step)`, so a
/// resumed run draws exactly what the uninterrupted run drew.
pub fn step_rng(seed: u64, step: usize) -> StdRng {
    // SplitMix64 finaliser of (seed, step): distinct, well-mixed streams per step.
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// What the observer sees after every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Steps completed (1-based count).
    pub step: usize,
    /// The step's loss.
    pub loss: f64,
    /// The learning rate used.
    pub learning_rate: f64,
}

/// The result of [`Trainer::fit`].
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The loss of every step run by this call, in order.
    pub losses: Vec<f64>,
    /// Wall time of this call, seconds.
    pub seconds: f64,
    /// Steps per second of this call.
    pub steps_per_second: f64,
    /// The last checkpoint written, if any.
    pub last_checkpoint: Option<PathBuf>,
}

/// Trains a burn module by minimising a loss closure (see the crate docs).
pub struct Trainer<M: Module> {
    config: TrainerConfig,
    model: Option<M>,
    optimizer: ModuleOptimizer,
    ema: Option<Ema<M>>,
    step: usize,
    checkpoint_dir: Option<PathBuf>,
}

impl<M: Module + Clone> Trainer<M> {
    /// A fresh run. `model` must live on an autodiff device.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] / [`Error::InvalidCount`] for a bad configuration.
    pub fn new(config: TrainerConfig, model: M) -> Result<Self> {
        config.validate()?;
        let optimizer = config.optimizer.build(config.grad_clip_norm);
        let ema = config.ema_decay.map(|d| Ema::new(&model, d)).transpose()?;
        Ok(Self { config, model: Some(model), optimizer, ema, step: 0, checkpoint_dir: None })
    }

    /// Continue the run checkpointed in `dir` if there is one, else start fresh; either way,
    /// checkpoints go to `dir`. `model` is the freshly initialised architecture to load into.
    ///
    /// # Errors
    /// As [`Trainer::new`]; [`Error::Checkpoint`] for an unreadable checkpoint or one of a
    /// different architecture.
    pub fn resume_or_new(config: TrainerConfig, model: M, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let mut trainer = Self::new(config, model)?;
        if let Some(latest) = checkpoint::latest(&dir)? {
            let state = checkpoint::read_state(&latest)?;
            let model = trainer.model.take().expect("model present");
            trainer.model = Some(checkpoint::load_module(model, &latest.join("model.bpk"))?);
            let optimizer_path = latest.join("optimizer.bpk");
            trainer.optimizer = trainer
                .optimizer
                .load(&optimizer_path)
                .map_err(|e| Error::Checkpoint { path: optimizer_path.display().to_string(), reason: format!("{e:?}") })?;
            if let (Some(ema), Some(updates)) = (&trainer.ema, state.ema_updates) {
                let model = checkpoint::load_module(ema.model().clone(), &latest.join("ema.bpk"))?;
                trainer.ema = Some(Ema::restore(model, ema.decay(), updates));
            }
            trainer.step = state.step;
        }
        trainer.checkpoint_dir = Some(dir);
        Ok(trainer)
    }

    /// Write checkpoints to `dir` (every `checkpoint_every` steps and at the end).
    pub fn with_checkpoints(mut self, dir: impl AsRef<Path>) -> Self {
        self.checkpoint_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The model being trained.
    pub fn model(&self) -> &M {
        self.model.as_ref().expect("the model is only taken during a step")
    }

    /// The EMA of the weights, if configured.
    pub fn ema(&self) -> Option<&M> {
        self.ema.as_ref().map(Ema::model)
    }

    /// Steps completed so far (including those before a resume).
    pub fn step(&self) -> usize {
        self.step
    }

    /// The model and its EMA.
    pub fn into_parts(self) -> (M, Option<M>) {
        let ema = self.ema.map(|e| e.model().clone());
        (self.model.expect("model present"), ema)
    }

    fn save(&self) -> Result<Option<PathBuf>> {
        let Some(dir) = &self.checkpoint_dir else { return Ok(None) };
        let state = TrainerState {
            step: self.step,
            ema_updates: self.ema.as_ref().map(Ema::updates),
            config: serde_json::to_value(&self.config).map_err(|e| Error::Config(e.to_string()))?,
        };
        let model = self.model().clone().into_record();
        let ema = self.ema.as_ref().map(|e| e.model().clone().into_record());
        checkpoint::write(dir, self.step, model, &self.optimizer, ema, &state, self.config.keep_checkpoints).map(Some)
    }

    /// Run the remaining steps, minimising `loss_fn(model, rng, step)`.
    ///
    /// # Errors
    /// The loss closure's errors; [`Error::NonFiniteLoss`] naming the step (no update is made
    /// and no checkpoint written, so the last good one survives); [`Error::Checkpoint`].
    pub fn fit<F>(&mut self, loss_fn: F) -> Result<TrainReport>
    where
        F: FnMut(&M, &mut StdRng, usize) -> Result<Tensor<1>>,
    {
        self.fit_with(loss_fn, |_, _| {})
    }

    /// [`Trainer::fit`] with an observer called after every step (evaluation, logging).
    ///
    /// # Errors
    /// As [`Trainer::fit`].
    pub fn fit_with<F, O>(&mut self, mut loss_fn: F, mut observer: O) -> Result<TrainReport>
    where
        F: FnMut(&M, &mut StdRng, usize) -> Result<Tensor<1>>,
        O: FnMut(&StepReport, &M),
    {
        let total = self.config.steps;
        let start = Instant::now();
        let first = self.step;
        let bar = self.progress_bar(total);
        let mut losses = Vec::with_capacity(total.saturating_sub(first));
        let mut last_checkpoint = None;
        while self.step < total {
            let step = self.step;
            let mut rng = step_rng(self.config.seed, step);
            let model = self.model.take().expect("model present");
            let loss = match loss_fn(&model, &mut rng, step) {
                Ok(loss) => loss,
                Err(e) => {
                    self.model = Some(model);
                    return Err(e);
                }
            };
            let value = loss.clone().into_scalar::<f64>();
            if !value.is_finite() {
                self.model = Some(model);
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(Error::NonFiniteLoss { step, value });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = self.config.schedule.rate(self.config.learning_rate, step, total, self.config.warmup_steps);
            let model = self.optimizer.step(lr, model, grads);
            if let Some(ema) = &mut self.ema {
                ema.update(&model)?;
            }
            self.model = Some(model);
            self.step += 1;
            losses.push(value);
            if let Some(bar) = &bar {
                bar.set_position((self.step - first) as u64);
                if self.step.is_multiple_of(10) || self.step == total {
                    bar.set_message(format!("loss {value:.4}"));
                }
            }
            observer(&StepReport { step: self.step, loss: value, learning_rate: lr }, self.model());
            let due = self.config.checkpoint_every.is_some_and(|every| self.step.is_multiple_of(every)) || self.step == total;
            if due && let Some(path) = self.save()? {
                last_checkpoint = Some(path);
            }
        }
        if let Some(bar) = bar {
            bar.finish();
        }
        let seconds = start.elapsed().as_secs_f64();
        let steps = losses.len();
        Ok(TrainReport {
            losses,
            seconds,
            steps_per_second: if seconds > 0.0 { steps as f64 / seconds } else { 0.0 },
            last_checkpoint,
        })
    }

    fn progress_bar(&self, total: usize) -> Option<indicatif::ProgressBar> {
        if !self.config.progress {
            return None;
        }
        let bar = indicatif::ProgressBar::new((total - self.step.min(total)) as u64);
        let style = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}] {per_sec} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Some(bar)
    }
}
