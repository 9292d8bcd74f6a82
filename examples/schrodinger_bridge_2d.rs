//! Schrödinger-bridge conditional flow matching (SB-CFM; Tong et al., *Improving and
//! Generalizing Flow-Based Generative Models with Minibatch Optimal Transport*, TMLR 2024 and
//! *Simulation-Free Schrödinger Bridges via Score and Flow Matching*, AISTATS 2024) from eight
//! Gaussians to two moons: batches are paired by the entropic OT plan with ε = 2σ², and the
//! network regresses the velocity of the Brownian bridge
//! `x_t = (1 − t) x₀ + t x₁ + σ √(t(1 − t)) ε` between the pairs. The learned ODE transports the
//! bridge's marginals, so it moves the eight Gaussians onto the moons.
//!
//! ```text
//! cargo run --example schrodinger_bridge_2d              # ≈ 60 s on 2 CPU cores
//! cargo run --example schrodinger_bridge_2d -- --sigma 0.2 --steps 10000
//! ```
//!
//! Writes `bridges.png` (Brownian bridges between entropic-OT pairs, the learned ODE paths and
//! the samples) to `--out` (default `out/schrodinger_bridge_2d`).

mod common;

use burn::module::Module;
use common::{MoonsMetrics, Setup, TRAIN_FLAGS, Trajectories, eight_gaussians, timed};
use flowforge::cli::Args;
use flowforge::data::{Toy2d, rng, standard_normal, tensor_to_points};
use flowforge::losses::RegressionLoss;
use flowforge::losses::coupling::Coupling;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::nets::{Mlp, MlpConfig, predicting};
use flowforge::paths::{AffinePath, CondOt, StochasticInterpolant};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::samplers::{Euler, NoNoise, PathModel, SaveAt, SolveOptions, TimeGrid, solve};
use flowforge::train::Trainer;
use flowforge::{Condition, Velocity};
use rand_distr::{Distribution, StandardNormal};

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let usage = format!("schrodinger_bridge_2d [--sigma 0.2 (bridge noise; entropic OT ε = 2σ²)] {TRAIN_FLAGS}");
    let args = Args::parse(&usage)?;
    let sigma: f64 = args.get("sigma", 0.2)?;
    let setup = Setup::read(&args, "schrodinger_bridge_2d", 3000)?;
    let (batch, device, train_device) = (setup.batch, setup.device.clone(), setup.train_device.clone());

    let coupling = Coupling::schrodinger_bridge(sigma)?;
    let bridge = StochasticInterpolant::brownian_bridge(sigma)?;
    let objective = RegressionLoss::new(bridge.clone());
    // The bridge's velocity is singular at t ∈ {0, 1}: train on the open interval.
    let times = TimeSampling::Uniform { low: 1e-3, high: 1.0 - 1e-3 };
    let data = Toy2d::moons();
    let mut trainer = Trainer::new(setup.config.clone(), MlpConfig::new(2).init(&train_device)?)?;
    let report = trainer.fit(|model, rng, _| {
        let x1 = data.sample_tensor(batch, rng, &train_device)?;
        let x0 = eight_gaussians(batch, rng, &train_device)?;
        let pair = coupling.couple(x0, x1, None, rng)?;
        let t = times.sample(batch, rng, &CondOt::default())?;
        let noise = standard_normal([batch, 2], rng, &train_device);
        objective.loss(&predicting::<Velocity, _>(model), pair.x0, pair.x1, Some(noise), &t, &Condition::none())
    })?;
    println!("SB-CFM σ = {sigma}: trained {} steps in {:.1} s ({:.0} steps/s)", setup.steps, report.seconds, report.steps_per_second);
    let (online, averaged) = trainer.into_parts();
    let net: Mlp = averaged.unwrap_or_else(|| online.valid());
    let velocity = predicting::<Velocity, _>(&net);
    // The learned field is the bridge's marginal velocity; its ODE runs on the mean path.
    let path = AffinePath::new(CondOt::default());
    let field = PathModel::new(&velocity, &path);

    let metrics = MoonsMetrics::new(setup.samples)?;
    let start = eight_gaussians(setup.samples, &mut rng(setup.seed + 7), &device)?;
    let (solution, seconds) = timed(|| solve(&field, &Euler, start.clone(), &TimeGrid::uniform(100)?, &mut NoNoise, SolveOptions::default().save_at(SaveAt::Steps)))?;
    let nfe = solution.evaluations;
    let trajectories = Trajectories::new(solution.saved);
    let points = tensor_to_points(solution.x);
    let w2 = metrics.report("SB-CFM Euler-100", &points, seconds, nfe)?;
    println!("straightness of the learned ODE paths: {:.4}", trajectories.straightness()?);

    // Brownian bridges between 40 entropic-OT pairs, simulated exactly on a 100-step grid:
    // B_t = (1 − t) x₀ + t x₁ + σ (W_t − t W₁).
    let mut host = rng(setup.seed + 11);
    let pair = coupling.couple(eight_gaussians(256, &mut host, &device)?, data.sample_tensor(256, &mut host, &device)?, None, &mut host)?;
    let (x0, x1) = (tensor_to_points(pair.x0), tensor_to_points(pair.x1));
    let steps = 100;
    let bridges: Vec<Vec<[f64; 2]>> = (0..40)
        .map(|i| {
            let mut w = vec![[0.0_f64; 2]];
            for _ in 0..steps {
                let [a, b] = *w.last().expect("non-empty");
                let dw: [f64; 2] = [StandardNormal.sample(&mut host), StandardNormal.sample(&mut host)];
                let h = (1.0 / steps as f64).sqrt();
                w.push([a + h * dw[0], b + h * dw[1]]);
            }
            let w1 = w[steps];
            (0..=steps)
                .map(|k| {
                    let t = k as f64 / steps as f64;
                    let mean = [(1.0 - t) * x0[i][0] + t * x1[i][0], (1.0 - t) * x0[i][1] + t * x1[i][1]];
                    [mean[0] + sigma * (w[k][0] - t * w1[0]), mean[1] + sigma * (w[k][1] - t * w1[1])]
                })
                .collect()
        })
        .collect();

    let range = ((-3.0, 3.0), (-3.0, 3.0));
    Figure::new(format!("Schrödinger-bridge CFM, eight Gaussians → moons (σ = {sigma}, {} steps)", setup.steps))
        .panel(
            Panel::new("Brownian bridges between entropic-OT pairs")
                .range(range.0, range.1)
                .lines(&bridges, Rgb::GREY, 1, 0.7)
                .points(&x0[..40], Rgb::BLUE, 3)
                .points(&x1[..40], Rgb::ORANGE, 3),
        )
        .panel(trajectories.panel(format!("learned ODE paths (straightness {:.3})", trajectories.straightness()?), 300).range(range.0, range.1))
        .panel(
            Panel::new(format!("samples, Euler-100 (W2 {w2:.3})"))
                .range(range.0, range.1)
                .points(&tensor_to_points(start), Rgb::GREY, 1)
                .points(&points, Rgb::BLUE, 1),
        )
        .panel_size(480, 480)
        .save(setup.out.join("bridges.png"))?;
    println!("wrote {}/bridges.png", setup.out.display());
    Ok(())
}
