//! EDM on two moons (Karras et al., *Elucidating the Design Space of Diffusion-Based Generative
//! Models*, NeurIPS 2022): the preconditioned denoiser `D(x; σ) = c_skip x + c_out F(c_in x, c_noise)`
//! trained with log-normal σ (P_mean −1.2, P_std 1.2) and the λ(σ) weighting, then sampled on the
//! ρ = 7 Karras grid by deterministic Heun (Alg. 1), by Euler in σ (= DDIM), and by the stochastic sampler
//! (Alg. 2, S_churn > 0).
//!
//! ```text
//! cargo run --example edm_2d                            # ≈ 40 s on 2 CPU cores
//! cargo run --example edm_2d -- --steps 10000 --churn 20 --device wgpu
//! ```
//!
//! Writes `samples.png` (the three samplers at 18 levels) and `denoised.png` (the denoiser's
//! estimate D(x_σ; σ) along one Heun run, from σ = 80 down) to `--out` (default `out/edm_2d`).

mod common;

use burn::module::Module;
use burn::tensor::Tensor;
use common::{MoonsMetrics, Setup, TRAIN_FLAGS, gaussian, timed};
use flowforge::cli::Args;
use flowforge::data::{Toy2d, rng, tensor_to_points};
use flowforge::losses::RegressionLoss;
use flowforge::losses::edm::EdmPreconditioned;
use flowforge::losses::time_sampling::{TimeSampling, Weighting};
use flowforge::nets::{Mlp, MlpConfig};
use flowforge::paths::{AffinePath, EdmConfig, Schedule};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::samplers::{Ddim, EdmStochastic, NoNoise, PathModel, SaveAt, SeededNoise, SolveOptions, TimeGrid, solve};
use flowforge::train::Trainer;
use flowforge::Condition;

/// EDM's σ_data for the preconditioning (the moons' per-coordinate std is about 0.5–0.9).
const SIGMA_DATA: f64 = 0.5;

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let usage = format!("edm_2d [--levels 18] [--churn 10 (stochastic sampler's S_churn)] {TRAIN_FLAGS}");
    let args = Args::parse(&usage)?;
    let levels = args.positive("levels", 18)?;
    let churn: f64 = args.get("churn", 10.0)?;
    let setup = Setup::read(&args, "edm_2d", 4000)?;
    let (batch, device, train_device) = (setup.batch, setup.device.clone(), setup.train_device.clone());

    let schedule = EdmConfig::new().init()?;
    let path = AffinePath::new(schedule);
    let objective = RegressionLoss::new(path.clone()).with_weighting(Weighting::Edm { sigma_data: SIGMA_DATA });
    let noise_levels = TimeSampling::edm();
    let data = Toy2d::moons();
    let mut trainer = Trainer::new(setup.config.clone(), MlpConfig::new(2).init(&train_device)?)?;
    let report = trainer.fit(|model, rng, _| {
        let x1 = data.sample_tensor(batch, rng, &train_device)?;
        let x0 = gaussian(batch, rng, &train_device);
        let t = noise_levels.sample(batch, rng, &schedule)?;
        objective.loss(&EdmPreconditioned::new(model, schedule, SIGMA_DATA)?, x0, x1, None, &t, &Condition::none())
    })?;
    println!("trained {} steps in {:.1} s ({:.0} steps/s)", setup.steps, report.seconds, report.steps_per_second);
    let (online, averaged) = trainer.into_parts();
    let net: Mlp = averaged.unwrap_or_else(|| online.valid());
    let denoiser = EdmPreconditioned::new(&net, schedule, SIGMA_DATA)?;
    let field = PathModel::new(&denoiser, &path);

    // On the EDM schedule a uniform grid in t is the ρ = 7 Karras grid from σ_max = 80 to
    // σ_min = 0.002; the last step to σ = 0 is the denoiser's output D(x; σ_min).
    let metrics = MoonsMetrics::new(setup.samples)?;
    let start = gaussian(setup.samples, &mut rng(setup.seed + 7), &device).mul_scalar(schedule.sigma(0.0));
    let finish = |x: Tensor<2>| -> flowforge::Result<Tensor<2>> { field.evaluate(x, 1.0)?.data() };
    let stochastic = EdmStochastic::new(churn, 0.05, 50.0, 1.003)?;
    let ddim = Ddim::new(0.0)?;
    let mut pictures = Vec::new();
    for n in [levels / 3, levels, 2 * levels].into_iter().filter(|&n| n >= 2) {
        let grid = TimeGrid::uniform(n - 1)?;
        let runs = [
            ("Heun", timed(|| solve(&field, &EdmStochastic::default(), start.clone(), &grid, &mut NoNoise, SolveOptions::default()))?),
            // DDIM is Euler's method on the ODE in the σ clock (k-diffusion's `sample_euler`).
            ("Euler", timed(|| solve(&field, &ddim, start.clone(), &grid, &mut NoNoise, SolveOptions::default()))?),
            (
                "stochastic",
                timed(|| solve(&field, &stochastic, start.clone(), &grid, &mut SeededNoise::new(setup.seed + 8), SolveOptions::default()))?,
            ),
        ];
        for (name, (solution, seconds)) in runs {
            let points = tensor_to_points(finish(solution.x)?);
            let w2 = metrics.report(&format!("EDM {name}, {n} levels"), &points, seconds, solution.evaluations + 1)?;
            if n == levels {
                pictures.push((format!("{name}, {n} levels (W2 {w2:.3})"), points));
            }
        }
    }

    let (x_range, y_range) = common::MOONS_RANGE;
    let mut figure = Figure::new(format!("EDM samplers on the Karras grid ({} training steps)", setup.steps))
        .panel(Panel::new("target").range(x_range, y_range).points(&Toy2d::make_moons(setup.samples, 0.05, &mut rng(5))?, Rgb::GREY, 1));
    for (name, points) in &pictures {
        figure = figure.panel(Panel::new(name.clone()).range(x_range, y_range).points(points, Rgb::BLUE, 1));
    }
    figure.save(setup.out.join("samples.png"))?;

    // What the network sees: the denoised estimate along one deterministic run.
    let few = start.clone().slice([0..1000.min(setup.samples), 0..2]);
    let saved = solve(&field, &EdmStochastic::default(), few, &TimeGrid::uniform(levels - 1)?, &mut NoNoise, SolveOptions::default().save_at(SaveAt::Steps))?.saved;
    let mut figure = Figure::new("D(x_σ; σ) along one Heun run (x_σ itself spans ±3σ)").columns(5);
    let last = saved.len() - 1;
    for k in [0, last / 4, last / 2, 3 * last / 4, last] {
        let (t, x) = saved[k].clone();
        let denoised = tensor_to_points(field.evaluate(x, t)?.data()?);
        figure = figure.panel(Panel::new(format!("σ = {:.3}", schedule.sigma(t))).range(x_range, y_range).points(&denoised, Rgb::PURPLE, 1));
    }
    figure.save(setup.out.join("denoised.png"))?;
    println!("wrote {}/{{samples,denoised}}.png", setup.out.display());
    Ok(())
}
