//! Helpers shared by the 2-D examples: the common training flags, the moons metrics protocol
//! (exact W2 and energy distance against fresh target samples, next to the noise floor) and
//! trajectory pictures.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor};
use flowforge::cli::{ArgError, Args};
use flowforge::data::{Toy2d, rng, standard_normal, tensor_to_points};
use flowforge::metrics::{as_rows, energy_distance, straightness, wasserstein2};
use flowforge::plot::{Panel, Rgb};
use flowforge::train::{LrSchedule, TrainerConfig};
use rand::Rng;
use std::path::PathBuf;

/// The flags every training example shares (append to an example's own usage text).
pub const TRAIN_FLAGS: &str = "[--steps N] [--batch 256] [--lr 1e-3] [--ema 0 (off) | 0.999] [--cosine] [--seed 0] \
[--samples 2000] [--out DIR] [--device default|flex|wgpu|ndarray|cuda]";

/// The plotting window that holds two moons.
pub const MOONS_RANGE: ((f64, f64), (f64, f64)) = ((-2.0, 3.0), (-1.5, 2.0));

/// The values behind [`TRAIN_FLAGS`], read and checked before any work starts.
pub struct Setup {
    /// Optimiser steps.
    pub steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Seed of the weights, the data stream and the sampling noise.
    pub seed: u64,
    /// Samples drawn at the end.
    pub samples: usize,
    /// Output folder (created and checked writable).
    pub out: PathBuf,
    /// The plain device (sampling).
    pub device: Device,
    /// The autodiff device (training).
    pub train_device: Device,
    /// Trainer settings from the flags.
    pub config: TrainerConfig,
}

impl Setup {
    /// Reads the shared flags; `default_steps` is the example's own default budget.
    pub fn read(args: &Args, example: &str, default_steps: usize) -> Result<Self, ArgError> {
        let steps = args.count("steps", default_steps)?;
        let batch = args.positive("batch", 256)?;
        let lr: f64 = args.get("lr", 1e-3)?;
        let ema: f64 = args.get("ema", 0.0)?;
        let cosine = args.flag("cosine")?;
        let seed: u64 = args.get("seed", 0)?;
        let samples = args.positive("samples", 2000)?;
        let out = args.out_dir(example)?;
        let device = args.device()?;
        let train_device = device.clone().autodiff();
        device.seed(seed);
        println!("device: {device:?}");
        let config = TrainerConfig::new(steps)
            .with_learning_rate(lr)
            .with_schedule(if cosine { LrSchedule::Cosine { final_fraction: 0.01 } } else { LrSchedule::Constant })
            .with_ema_decay((ema > 0.0).then_some(ema))
            .with_seed(seed);
        Ok(Self { steps, batch, seed, samples, out, device, train_device, config })
    }
}

/// torchcfm's eight Gaussians scaled to radius 2 (so that it sits beside the moons).
pub fn eight_gaussians<R: Rng + ?Sized>(n: usize, rng: &mut R, device: &Device) -> flowforge::Result<Tensor<2>> {
    Ok(Toy2d::eight_gaussians().sample_tensor(n, rng, device)?.div_scalar(2.5))
}

/// N(0, I) in 2-D.
pub fn gaussian<R: Rng + ?Sized>(n: usize, rng: &mut R, device: &Device) -> Tensor<2> {
    standard_normal([n, 2], rng, device)
}

/// The workloads' metric protocol: up to 2,000 generated points against 2,000 fresh
/// `make_moons(noise = 0.05)` points, next to the noise floor between two such target sets.
pub struct MoonsMetrics {
    target: Vec<Vec<f64>>,
    /// W2 between two independent target sets of the same size.
    pub floor: f64,
    size: usize,
}

impl MoonsMetrics {
    /// Prepares target and floor for `samples` generated points (at most 2,000 are compared).
    pub fn new(samples: usize) -> flowforge::Result<Self> {
        let size = 2000.min(samples);
        let target = as_rows(&Toy2d::make_moons(size, 0.05, &mut rng(1001))?);
        let floor = wasserstein2(
            &as_rows(&Toy2d::make_moons(size, 0.05, &mut rng(2001))?),
            &as_rows(&Toy2d::make_moons(size, 0.05, &mut rng(2002))?),
        )?;
        println!("noise floor ({size} vs {size} target points): W2 {floor:.4}");
        Ok(Self { target, floor, size })
    }

    /// Prints one line (name, timing, NFE, W2 and its ratio to the floor, energy) and returns W2.
    pub fn report(&self, name: &str, points: &[[f64; 2]], seconds: f64, nfe: usize) -> flowforge::Result<f64> {
        let generated = as_rows(&points[..self.size.min(points.len())]);
        let w2 = wasserstein2(&generated, &self.target)?;
        let energy = energy_distance(&generated, &self.target)?;
        println!(
            "{name:<22} {} samples in {seconds:.2} s ({nfe:>4} NFE): W2 {w2:.4} ({:.1}× floor), energy {energy:.5}",
            points.len(),
            w2 / self.floor
        );
        Ok(w2)
    }
}

/// Saved ODE states `(t, x_t)` as per-sample polylines.
pub struct Trajectories {
    snapshots: Vec<(f64, Vec<Vec<f64>>)>,
}

impl Trajectories {
    /// From a solver's `saved` states (`SaveAt::Steps`).
    pub fn new(saved: Vec<(f64, Tensor<2>)>) -> Self {
        Self { snapshots: saved.into_iter().map(|(t, x)| (t, as_rows(&tensor_to_points(x)))).collect() }
    }

    /// Liu et al.'s straightness `E ∫ ‖(x₁ − x₀) − v‖² dt` (0 for straight paths).
    pub fn straightness(&self) -> flowforge::Result<f64> {
        straightness(&self.snapshots)
    }

    /// The last state.
    pub fn end_points(&self) -> Vec<[f64; 2]> {
        self.snapshots.last().map(|(_, x)| x.iter().map(|p| [p[0], p[1]]).collect()).unwrap_or_default()
    }

    /// A panel with the first `count` paths in grey, their starts in blue and ends in orange.
    pub fn panel(&self, title: impl Into<String>, count: usize) -> Panel {
        let count = count.min(self.snapshots.first().map_or(0, |(_, x)| x.len()));
        let lines: Vec<Vec<[f64; 2]>> = (0..count).map(|i| self.snapshots.iter().map(|(_, x)| [x[i][0], x[i][1]]).collect()).collect();
        let starts: Vec<[f64; 2]> = lines.iter().map(|l| l[0]).collect();
        let ends: Vec<[f64; 2]> = lines.iter().filter_map(|l| l.last().copied()).collect();
        Panel::new(title).lines(&lines, Rgb::GREY, 1, 0.5).points(&starts, Rgb::BLUE, 2).points(&ends, Rgb::ORANGE, 2)
    }
}

/// Runs `f` and returns its value with the wall time in seconds.
pub fn timed<T>(f: impl FnOnce() -> flowforge::Result<T>) -> flowforge::Result<(T, f64)> {
    let start = std::time::Instant::now();
    let value = f()?;
    Ok((value, start.elapsed().as_secs_f64()))
}
