//! Compose your own: a schedule written as two closures, the standard regression objective, and
//! two samplers that have never heard of that schedule.
//!
//! ```text
//! cargo run --example compose_your_own            # ≈ 15 s; writes out/compose_your_own/samples.png
//! ```


use burn::module::Module;
use flowforge::cli::Args;
use flowforge::data::{Toy2d, rng, standard_normal, tensor_to_points};
use flowforge::losses::RegressionLoss;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::metrics::{as_rows, wasserstein2};
use flowforge::nets::{MlpConfig, predicting};
use flowforge::paths::{AffinePath, FnSchedule};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::samplers::{Ddim, Heun, NoNoise, PathModel, SolveOptions, TimeGrid, solve};
use flowforge::train::{Trainer, TrainerConfig};
use flowforge::{Condition, Noise};
use std::f64::consts::FRAC_PI_2;
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse("compose_your_own [--steps 2000] [--out out/compose_your_own] [--device default]")?;
    let steps = args.count("steps", 2000)?;
    let out = args.out_dir("compose_your_own")?;
    let device = args.device()?;
    let train_device = device.clone().autodiff();
    device.seed(0);

    // 1. A path nobody shipped: α_t = sin²(πt/2), σ_t = 1 − t; derivatives by finite differences.
    let schedule = Arc::new(FnSchedule::new(|t| (FRAC_PI_2 * t).sin().powi(2), |t| 1.0 - t));
    let path = AffinePath::new(schedule.clone());

    // 2. The standard objective: regress the noise ε on this path.
    let objective = RegressionLoss::new(path.clone());
    let data = Toy2d::moons();
    let mut trainer = Trainer::new(TrainerConfig::new(steps), MlpConfig::new(2).init(&train_device)?)?;
    let report = trainer.fit(|model, rng, _| {
        let x1 = data.sample_tensor(256, rng, &train_device)?;
        let x0 = standard_normal([256, 2], rng, &train_device);
        // Avoid t ≈ 0, where α_t = 0 and x_t carries no information about the data.
        let t = TimeSampling::Uniform { low: 0.02, high: 1.0 }.sample(256, rng, &*schedule)?;
        objective.loss(&predicting::<Noise, _>(model), x0, x1, None, &t, &Condition::none())
    })?;
    println!("trained {steps} steps in {:.1} s", report.seconds);

    // 3. Any sampler: the ε-model is converted through the custom path as each sampler needs.
    let net = trainer.model().valid();
    let eps = predicting::<Noise, _>(&net);
    let field = PathModel::new(&eps, &path);
    let x0 = standard_normal([2000, 2], &mut rng(1), &device);
    let grid = TimeGrid::uniform_between(0.02, 1.0, 50)?;
    let ddim = tensor_to_points(solve(&field, &Ddim::new(0.0)?, x0.clone(), &grid, &mut NoNoise, SolveOptions::default())?.x);
    let heun = tensor_to_points(solve(&field, &Heun, x0, &grid, &mut NoNoise, SolveOptions::default())?.x);
    let target = as_rows(&Toy2d::make_moons(2000, 0.05, &mut rng(1001))?);
    println!("DDIM-50: W2 {:.4}; Heun-50: W2 {:.4}", wasserstein2(&as_rows(&ddim), &target)?, wasserstein2(&as_rows(&heun), &target)?);
    Figure::new("a custom schedule, an ε-objective, two samplers")
        .panel(Panel::new("DDIM, 50 steps").points(&ddim, Rgb::BLUE, 1))
        .panel(Panel::new("Heun, 50 steps").points(&heun, Rgb::GREEN, 1))
        .save(out.join("samples.png"))?;
    println!("wrote {}", out.join("samples.png").display());
    Ok(())
}
