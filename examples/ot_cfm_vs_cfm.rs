//! Independent-coupling CFM against minibatch OT-CFM (Tong et al., *Improving and Generalizing
//! Flow-Based Generative Models with Minibatch Optimal Transport*, TMLR 2024; Pooladian et al.
//! 2023): the same network and budget, from eight Gaussians (or N(0, I)) to two moons. Pairing
//! each batch by exact OT makes the learned ODE's paths nearly straight, so few Euler steps
//! suffice.
//!
//! ```text
//! cargo run --example ot_cfm_vs_cfm                      # ≈ 50 s on 2 CPU cores
//! cargo run --example ot_cfm_vs_cfm -- --source gaussian --steps 10000
//! ```
//!
//! Writes `trajectories.png` (the two flows side by side with their straightness) and
//! `samples.png` (Euler with 1, 4 and 100 steps for each) to `--out` (default
//! `out/ot_cfm_vs_cfm`).

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use common::{MoonsMetrics, Setup, TRAIN_FLAGS, Trajectories, eight_gaussians, gaussian, timed};
use flowforge::cli::Args;
use flowforge::data::{Toy2d, rng, tensor_to_points};
use flowforge::losses::RegressionLoss;
use flowforge::losses::coupling::Coupling;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::nets::{Mlp, MlpConfig, predicting};
use flowforge::paths::{AffinePath, CondOt};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::samplers::{Euler, NoNoise, PathModel, SaveAt, SolveOptions, TimeGrid, solve};
use flowforge::train::Trainer;
use flowforge::{Condition, Velocity};
use rand::rngs::StdRng;

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let usage = format!("ot_cfm_vs_cfm [--source 8gaussians|gaussian] {TRAIN_FLAGS}");
    let args = Args::parse(&usage)?;
    let source_kind = args.choice("source", "8gaussians", &["8gaussians", "gaussian"])?;
    let setup = Setup::read(&args, "ot_cfm_vs_cfm", 3000)?;
    let (batch, device, train_device) = (setup.batch, setup.device.clone(), setup.train_device.clone());
    let source = |n: usize, rng: &mut StdRng, device: &Device| -> flowforge::Result<Tensor<2>> {
        if source_kind == "gaussian" { Ok(gaussian(n, rng, device)) } else { eight_gaussians(n, rng, device) }
    };

    let path = AffinePath::new(CondOt::default());
    let objective = RegressionLoss::new(path.clone());
    let data = Toy2d::moons();
    let metrics = MoonsMetrics::new(setup.samples)?;
    let start = source(setup.samples, &mut rng(setup.seed + 7), &device)?;
    let mut flows = Vec::new();
    let mut samples = Vec::new();
    for (name, coupling) in [("CFM", Coupling::Independent), ("OT-CFM", Coupling::ExactOt)] {
        // The same initial weights and data stream for both.
        device.seed(setup.seed);
        let mut trainer = Trainer::new(setup.config.clone(), MlpConfig::new(2).init(&train_device)?)?;
        let report = trainer.fit(|model, rng, _| {
            let x1 = data.sample_tensor(batch, rng, &train_device)?;
            let x0 = source(batch, rng, &train_device)?;
            let pair = coupling.couple(x0, x1, None, rng)?;
            let t = TimeSampling::default().sample(batch, rng, &CondOt::default())?;
            objective.loss(&predicting::<Velocity, _>(model), pair.x0, pair.x1, None, &t, &Condition::none())
        })?;
        println!("{name}: trained {} steps in {:.1} s ({:.0} steps/s)", setup.steps, report.seconds, report.steps_per_second);
        let (online, averaged) = trainer.into_parts();
        let net: Mlp = averaged.unwrap_or_else(|| online.valid());
        let velocity = predicting::<Velocity, _>(&net);
        let field = PathModel::new(&velocity, &path);
        for steps in [1, 2, 4, 100] {
            let options = if steps == 100 { SolveOptions::default().save_at(SaveAt::Steps) } else { SolveOptions::default() };
            let (solution, seconds) = timed(|| solve(&field, &Euler, start.clone(), &TimeGrid::uniform(steps)?, &mut NoNoise, options))?;
            let nfe = solution.evaluations;
            let points = tensor_to_points(solution.x);
            let w2 = metrics.report(&format!("{name} Euler-{steps}"), &points, seconds, nfe)?;
            if steps == 100 {
                let trajectories = Trajectories::new(solution.saved);
                let straightness = trajectories.straightness()?;
                println!("{name}: straightness of the learned paths {straightness:.4} (0 = straight)");
                flows.push((format!("{name}: straightness {straightness:.3}"), trajectories));
            }
            if steps != 2 {
                samples.push((format!("{name}, Euler-{steps} (W2 {w2:.3})"), points));
            }
        }
    }

    let range = ((-3.0, 3.0), (-3.0, 3.0));
    let mut figure = Figure::new(format!("learned ODE paths, {source_kind} → moons ({} steps)", setup.steps)).panel_size(480, 480);
    for (title, trajectories) in &flows {
        figure = figure.panel(trajectories.panel(title.clone(), 300).range(range.0, range.1));
    }
    figure.save(setup.out.join("trajectories.png"))?;
    let mut figure = Figure::new("samples by Euler with 1, 4 and 100 steps").columns(3);
    for (title, points) in &samples {
        figure = figure.panel(Panel::new(title.clone()).range(range.0, range.1).points(points, Rgb::BLUE, 1));
    }
    figure.save(setup.out.join("samples.png"))?;
    println!("wrote {}/{{trajectories,samples}}.png", setup.out.display());
    Ok(())
}
