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

/// Saves images `[n, rows·cols]` in [−1, 1] (the `ImageSet::batch` range) as a grid PNG.
pub fn save_image_grid(images: Tensor<2>, rows: usize, cols: usize, columns: usize, title: impl Into<String>, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let pixels: Vec<Vec<f32>> = flowforge::core::tensor::tensor_to_rows(flowforge::data::images::to_unit_range(images))
        .into_iter()
        .map(|row| row.into_iter().map(|v| v as f32).collect())
        .collect();
    // Small images (14×14) are drawn larger so the grid stays readable.
    let scale = (56 / rows.max(1)).max(2) as u32;
    flowforge::plot::ImageGrid::new(title, pixels, cols, rows, columns).scale(scale).save(path)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Trains a VAE on `train` (images mapped to [0, 1]) with the negative β-ELBO.
pub fn train_vae<V: flowforge::nets::VariationalAutoencoder + burn::module::Module + Clone>(
    vae: V,
    train: &flowforge::data::images::ImageSet,
    config: flowforge::train::TrainerConfig,
    batch: usize,
    beta: f64,
    device: &Device,
) -> Result<V, Box<dyn std::error::Error>> {
    let elbo = flowforge::losses::elbo::Elbo { likelihood: flowforge::losses::elbo::Likelihood::Bernoulli, beta };
    let mut trainer = flowforge::train::Trainer::new(config, vae)?;
    let report = trainer.fit(|model: &V, rng, _| {
        let (x, _) = train.batch(&train.sample_indices(batch, rng), device)?;
        let x = flowforge::data::images::to_unit_range(x);
        let (mu, logvar) = model.encode(x.clone())?;
        let eps = standard_normal(mu.dims(), rng, device);
        let z = flowforge::losses::elbo::reparameterize(mu.clone(), logvar.clone(), eps)?;
        Ok(elbo.terms(x, model.decode(z)?, mu, logvar)?.loss)
    })?;
    println!("VAE: {} steps in {:.1} s ({:.0} steps/s), final loss {:.2} nats", report.losses.len(), report.seconds, report.steps_per_second, report.losses.last().copied().unwrap_or(f64::NAN));
    let (online, averaged) = trainer.into_parts();
    Ok(averaged.unwrap_or(online))
}


/// "loss first k: a, last k: b" over the first and last (up to) 100 recorded losses.
pub fn loss_summary(losses: &[f64]) -> String {
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let k = losses.len().min(100);
    format!("loss first {k}: {:.4}, last {k}: {:.4}", mean(&losses[..k]), mean(&losses[losses.len() - k..]))
}

/// What the MNIST examples share: output folder, devices (seeded), and the bundled digits split
/// into 9,000 for training and 1,000 held out.
pub struct MnistSetup {
    /// Output folder (created and checked writable).
    pub out: PathBuf,
    /// The plain device.
    pub device: Device,
    /// The autodiff device.
    pub train_device: Device,
    /// The first 9,000 digits.
    pub train: flowforge::data::images::ImageSet,
    /// The last 1,000 digits.
    pub held_out: flowforge::data::images::ImageSet,
}

impl MnistSetup {
    /// Reads `--out` and `--device`, seeds the device and loads the bundled digits.
    pub fn read(args: &Args, example: &str, seed: u64) -> Result<Self, Box<dyn std::error::Error>> {
        let out = args.out_dir(example)?;
        let device = args.device()?;
        let train_device = device.clone().autodiff();
        device.seed(seed);
        let mnist = flowforge::data::images::bundled_mnist()?;
        let (train, held_out) = mnist.split_at(mnist.len() - 1000);
        println!("MNIST: {} training and {} held-out digits of {}x{}", train.len(), held_out.len(), mnist.rows, mnist.cols);
        Ok(Self { out, device, train_device, train, held_out })
    }
}
