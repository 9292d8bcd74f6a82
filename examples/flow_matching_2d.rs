//! Flow matching on two moons — flowforge's main example.
//!
//! Trains conditional flow matching (CondOT / rectified flow) from N(0, I) to two moons with the
//! benchmark workloads' MLP (3 hidden layers × 256, SiLU, raw t), Adam 1e-3, batch 256, then
//! samples with Euler (100 steps) and RK4 (25 steps) and reports the exact W2 and the energy
//! distance to fresh target samples next to the noise floor (two fresh target sets).
//!
//! ```text
//! cargo run --example flow_matching_2d                  # ≈ 40 s on 2 CPU cores
//! cargo run --example flow_matching_2d -- --steps 10000 --ema 0.999 --device wgpu
//! ```
//!
//! Writes `samples.png`, `trajectories.png` and `loss.png` to `--out` (default
//! `out/flow_matching_2d`).


mod common;

use burn::module::Module;
use burn::tensor::Tensor;
use flowforge::cli::Args;
use flowforge::data::{Toy2d, rng, standard_normal, tensor_to_points};
use flowforge::losses::RegressionLoss;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::metrics::{as_rows, energy_distance, wasserstein2};
use flowforge::nets::{MlpConfig, predicting};
use flowforge::paths::{AffinePath, CondOt};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::samplers::{Euler, NoNoise, PathModel, Rk4, RowBlocks, SaveAt, SolveOptions, TimeGrid, solve, solve_by_row_blocks};
use flowforge::train::{LrSchedule, Trainer, TrainerConfig};
use flowforge::{Condition, Velocity};
use std::time::Instant;

const USAGE: &str = "flow_matching_2d [--steps 3000] [--batch 256] [--lr 1e-3] [--ema 0 (off) | 0.999] [--cosine] \
[--samples 10000] [--seed 0] [--out out/flow_matching_2d] [--device default|flex|wgpu|ndarray|cuda]";

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE)?;
    let steps = args.count("steps", 3000)?;
    let batch = args.positive("batch", 256)?;
    let lr: f64 = args.get("lr", 1e-3)?;
    let ema: f64 = args.get("ema", 0.0)?;
    let cosine: bool = args.get("cosine", false)?;
    let n_samples = args.positive("samples", 10_000)?;
    let seed: u64 = args.get("seed", 0)?;
    let out = args.out_dir("flow_matching_2d")?;
    let device = args.device()?;
    let train_device = device.clone().autodiff();
    println!("device: {device:?}");

    // Model and objective.
    device.seed(seed);
    let mlp = MlpConfig::new(2).init(&train_device)?;
    println!("MLP 3×256 SiLU, {} parameters", mlp.num_params());
    let path = AffinePath::new(CondOt::default());
    let objective = RegressionLoss::new(path.clone());
    let config = TrainerConfig::new(steps)
        .with_learning_rate(lr)
        .with_schedule(if cosine { LrSchedule::Cosine { final_fraction: 0.01 } } else { LrSchedule::Constant })
        .with_ema_decay((ema > 0.0).then_some(ema))
        .with_seed(seed);
    let mut trainer = Trainer::new(config, mlp)?;
    let data = Toy2d::moons();
    let report = trainer.fit(|model, rng, _step| {
        let x1 = data.sample_tensor(batch, rng, &train_device)?;
        let x0 = standard_normal([batch, 2], rng, &train_device);
        let t = TimeSampling::default().sample(batch, rng, &CondOt::default())?;
        objective.loss(&predicting::<Velocity, _>(model), x0, x1, None, &t, &Condition::none())
    })?;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    println!("trained {steps} steps in {:.1} s ({:.0} steps/s); {}", report.seconds, report.steps_per_second, common::loss_summary(&report.losses));

    // Sampling with the (EMA of the) trained weights, on the plain device.
    let (online, averaged) = trainer.into_parts();
    let net = averaged.unwrap_or_else(|| online.valid());
    let velocity = predicting::<Velocity, _>(&net);
    let field = PathModel::new(&velocity, &path);
    let x0 = standard_normal([n_samples, 2], &mut rng(seed + 7), &device);
    let mut results = Vec::new();
    // The MLP treats points independently, so each thread can take its share of them from the
    // first step to the last (`solve_by_row_blocks`): the same points as `solve` on all of
    // them, without meeting the other thread at every step.
    let blocks = |_rows| Ok(PathModel::new(&velocity, &path));
    for (name, grid, rk4) in [("Euler-100", TimeGrid::uniform(100)?, false), ("RK4-25", TimeGrid::uniform(25)?, true)] {
        let start = Instant::now();
        let solution = if rk4 {
            solve_by_row_blocks(blocks, &Rk4, x0.clone(), &grid, |_| NoNoise, RowBlocks::OnePerThread, SaveAt::Final)?
        } else {
            solve_by_row_blocks(blocks, &Euler, x0.clone(), &grid, |_| NoNoise, RowBlocks::OnePerThread, SaveAt::Final)?
        };
        let points = tensor_to_points(solution.x);
        let seconds = start.elapsed().as_secs_f64();
        results.push((name, points, seconds, solution.evaluations));
    }

    // Metrics on 2,000 points against 2,000 fresh target points in scikit-learn's make_moons
    // layout, and the noise floor between two such sets (the workloads' protocol).
    // (Fewer when fewer samples were asked for: exact W2 compares sets of equal size.)
    let m = 2000.min(n_samples);
    let target = as_rows(&Toy2d::make_moons(m, 0.05, &mut rng(1001))?);
    let floor_a = as_rows(&Toy2d::make_moons(m, 0.05, &mut rng(2001))?);
    let floor_b = as_rows(&Toy2d::make_moons(m, 0.05, &mut rng(2002))?);
    let floor_w2 = wasserstein2(&floor_a, &floor_b)?;
    let floor_energy = energy_distance(&floor_a, &floor_b)?;
    println!("noise floor ({m} vs {m} target points): W2 {floor_w2:.4}, energy {floor_energy:.5}");
    for (name, points, seconds, nfe) in &results {
        let generated = as_rows(&points[..m]);
        let w2 = wasserstein2(&generated, &target)?;
        let energy = energy_distance(&generated, &target)?;
        println!(
            "{name:<9} {n_samples} samples in {seconds:.2} s ({nfe} NFE): W2 {w2:.4} ({:.1}× floor), energy {energy:.5}",
            w2 / floor_w2
        );
    }

    // Pictures: samples next to the data, trajectories, the loss curve.
    let data_points = data.sample(n_samples, &mut rng(99))?;
    let range = ((-2.0, 3.0), (-1.5, 2.0));
    let mut figure = Figure::new(format!("flow matching on two moons ({steps} steps)"))
        .panel(Panel::new("target data").range(range.0, range.1).points(&data_points, Rgb::GREY, 1));
    for (name, points, _, _) in &results {
        figure = figure.panel(Panel::new(format!("generated, {name}")).range(range.0, range.1).points(points, Rgb::BLUE, 1));
    }
    figure.save(out.join("samples.png"))?;
    let few = x0.clone().slice([0..300, 0..2]);
    let saved = solve(&field, &Euler, few, &TimeGrid::uniform(100)?, &mut NoNoise, SolveOptions::default().save_at(SaveAt::Steps))?.saved;
    let snapshots: Vec<Vec<[f64; 2]>> = saved.into_iter().map(|(_, x): (f64, Tensor<2>)| tensor_to_points(x)).collect();
    let lines: Vec<Vec<[f64; 2]>> = (0..300).map(|i| snapshots.iter().map(|s| s[i]).collect()).collect();
    let starts: Vec<[f64; 2]> = lines.iter().map(|l| l[0]).collect();
    let ends: Vec<[f64; 2]> = lines.iter().map(|l| *l.last().expect("non-empty")).collect();
    Figure::new("trajectories of the learned ODE (t: 0 → 1)")
        .panel(Panel::new("300 paths").lines(&lines, Rgb::GREY, 1, 0.5).points(&starts, Rgb::BLUE, 2).points(&ends, Rgb::ORANGE, 2))
        .panel_size(520, 520)
        .save(out.join("trajectories.png"))?;
    let curve: Vec<[f64; 2]> = report
        .losses
        .chunks(25)
        .enumerate()
        .map(|(i, c)| [(i * 25 + c.len()) as f64, mean(c)])
        .collect();
    Figure::new("training loss (mean over 25 steps)")
        .panel(Panel::new("CFM loss").labels("step", "loss").lines(&[curve], Rgb::RED, 2, 1.0))
        .panel_size(520, 360)
        .save(out.join("loss.png"))?;
    println!("wrote {}/{{samples,trajectories,loss}}.png", out.display());
    Ok(())
}
