//! DDPM against DDIM on two moons: one ε-prediction network (Ho et al. 2020, 1,000-level linear
//! β schedule), sampled by ancestral DDPM and by deterministic DDIM (Song et al. 2021, η = 0)
//! with 10 to 1,000 steps. DDIM keeps its quality with far fewer steps; DDPM needs them all.
//!
//! ```text
//! cargo run --example ddpm_vs_ddim_2d                   # ≈ 40 s on 2 CPU cores
//! cargo run --example ddpm_vs_ddim_2d -- --steps 10000 --ema 0.999 --device wgpu
//! ```
//!
//! Writes `samples.png` (DDPM and DDIM at 10, 50 and 1,000 steps) and `w2_vs_steps.png` to
//! `--out` (default `out/ddpm_vs_ddim_2d`), and prints the W2 of every run.

mod common;

use burn::module::Module;
use common::{MoonsMetrics, Setup, TRAIN_FLAGS, gaussian, timed};
use flowforge::cli::Args;
use flowforge::data::{Toy2d, rng, tensor_to_points};
use flowforge::losses::RegressionLoss;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::nets::{Mlp, MlpConfig, predicting};
use flowforge::paths::{AffinePath, DiscreteScheduleConfig};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::samplers::{Ddim, DdimSpacing, Ddpm, NoNoise, PathModel, SeededNoise, SolveOptions, TimeGrid, solve};
use flowforge::train::Trainer;
use flowforge::{Condition, Noise};

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let usage = format!("ddpm_vs_ddim_2d {TRAIN_FLAGS}");
    let args = Args::parse(&usage)?;
    let setup = Setup::read(&args, "ddpm_vs_ddim_2d", 4000)?;
    let (batch, device, train_device) = (setup.batch, setup.device.clone(), setup.train_device.clone());

    // ε-prediction on the DDPM schedule, levels drawn uniformly from {0, …, 999}.
    let schedule = DiscreteScheduleConfig::new().init()?;
    let path = AffinePath::new(schedule.clone());
    let objective = RegressionLoss::new(path.clone());
    let levels = TimeSampling::DiscreteUniform { num_train_timesteps: 1000 };
    let data = Toy2d::moons();
    let mut trainer = Trainer::new(setup.config.clone(), MlpConfig::new(2).init(&train_device)?)?;
    let report = trainer.fit(|model, rng, _| {
        let x1 = data.sample_tensor(batch, rng, &train_device)?;
        let x0 = gaussian(batch, rng, &train_device);
        let t = levels.sample(batch, rng, &schedule)?;
        objective.loss(&predicting::<Noise, _>(model), x0, x1, None, &t, &Condition::none())
    })?;
    println!("trained {} steps in {:.1} s ({:.0} steps/s)", setup.steps, report.seconds, report.steps_per_second);
    let (online, averaged) = trainer.into_parts();
    let net: Mlp = averaged.unwrap_or_else(|| online.valid());
    let eps = predicting::<Noise, _>(&net);
    let field = PathModel::new(&eps, &path);

    // The same starting noise for every run; DDPM also draws fresh noise at each step.
    let metrics = MoonsMetrics::new(setup.samples)?;
    let start = gaussian(setup.samples, &mut rng(setup.seed + 7), &device);
    let axis = schedule.timesteps();
    let ddim = Ddim::new(0.0)?;
    let mut curves: Vec<(&str, Vec<[f64; 2]>)> = vec![("DDPM", Vec::new()), ("DDIM", Vec::new())];
    let mut pictures = Vec::new();
    for steps in [10, 20, 50, 100, 250, 1000] {
        // diffusers' "leading" spacing ending at the clean sample, as in its DDIM/DDPM pipelines.
        let grid = TimeGrid::ddim(DdimSpacing::Leading { steps_offset: 0 }, steps, axis, true)?;
        let (ancestral, ddpm_s) = timed(|| solve(&field, &Ddpm::default(), start.clone(), &grid, &mut SeededNoise::new(setup.seed + 8), SolveOptions::default()))?;
        let (implicit, ddim_s) = timed(|| solve(&field, &ddim, start.clone(), &grid, &mut NoNoise, SolveOptions::default()))?;
        for (k, (name, solution, seconds)) in [("DDPM", ancestral, ddpm_s), ("DDIM", implicit, ddim_s)].into_iter().enumerate() {
            let points = tensor_to_points(solution.x);
            let w2 = metrics.report(&format!("{name}-{steps}"), &points, seconds, solution.evaluations)?;
            curves[k].1.push([(steps as f64).log10(), w2]);
            if [10, 50, 1000].contains(&steps) {
                pictures.push((format!("{name}, {steps} steps (W2 {w2:.3})"), points));
            }
        }
    }

    let (x_range, y_range) = common::MOONS_RANGE;
    let mut figure = Figure::new(format!("DDPM vs DDIM from one ε-network ({} training steps)", setup.steps)).columns(4).panel(
        Panel::new("target").range(x_range, y_range).points(&Toy2d::make_moons(setup.samples, 0.05, &mut rng(5))?, Rgb::GREY, 1),
    );
    // Row-major: the DDPM runs, then the DDIM runs.
    pictures.sort_by_key(|(name, _)| !name.starts_with("DDPM"));
    for (i, (name, points)) in pictures.iter().enumerate() {
        if i == 3 {
            figure = figure.panel(Panel::new("the shared start noise").range((-3.5, 3.5), (-3.5, 3.5)).points(&tensor_to_points(start.clone()), Rgb::GREY, 1));
        }
        figure = figure.panel(Panel::new(name.clone()).range(x_range, y_range).points(points, Rgb::BLUE, 1));
    }
    figure.save(setup.out.join("samples.png"))?;
    let floor = vec![[1.0, metrics.floor], [3.0, metrics.floor]];
    Figure::new("exact W2 to fresh moons vs sampling steps")
        .panel(
            Panel::new("blue: DDPM, orange: DDIM η=0, grey: noise floor")
                .labels("log10(steps)", "W2")
                .lines(&[curves[0].1.clone()], Rgb::BLUE, 2, 1.0)
                .lines(&[curves[1].1.clone()], Rgb::ORANGE, 2, 1.0)
                .lines(&[floor], Rgb::GREY, 1, 1.0),
        )
        .panel_size(560, 400)
        .save(setup.out.join("w2_vs_steps.png"))?;
    println!("wrote {}/{{samples,w2_vs_steps}}.png", setup.out.display());
    Ok(())
}
