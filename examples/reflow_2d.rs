//! Rectified flow and reflow (Liu, Gong & Liu, *Flow Straight and Fast: Learning to Generate and
//! Transfer Data with Rectified Flow*, ICLR 2023): 1-RF is CFM with independent pairs; its ODE
//! then pairs each noise point with the data point it reaches, and 2-RF is trained on those
//! deterministic pairs. The pairs no longer cross, so 2-RF's paths are nearly straight and a
//! single Euler step lands on the data.
//!
//! ```text
//! cargo run --example reflow_2d                          # ≈ 60 s on 2 CPU cores
//! cargo run --example reflow_2d -- --steps 10000 --pairs 50000
//! ```
//!
//! Writes `trajectories.png` (1-RF and 2-RF paths from the same noise) and `samples.png`
//! (Euler with 1 and 100 steps) to `--out` (default `out/reflow_2d`).

mod common;

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use common::{MoonsMetrics, Setup, TRAIN_FLAGS, Trajectories, gaussian, timed};
use flowforge::cli::Args;
use flowforge::data::{Toy2d, rng, tensor_to_points};
use flowforge::losses::RegressionLoss;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::nets::{Mlp, MlpConfig, predicting};
use flowforge::paths::{AffinePath, CondOt};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::samplers::{Euler, NoNoise, PathModel, Rk4, SaveAt, SolveOptions, TimeGrid, reflow_pairs, solve};
use flowforge::train::Trainer;
use flowforge::{Condition, Velocity};
use rand::RngExt;

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let usage = format!("reflow_2d [--pairs 20000 (reflow couplings)] {TRAIN_FLAGS}");
    let args = Args::parse(&usage)?;
    let pool = args.positive("pairs", 20_000)?;
    let setup = Setup::read(&args, "reflow_2d", 3000)?;
    let (batch, device, train_device) = (setup.batch, setup.device.clone(), setup.train_device.clone());

    let path = AffinePath::new(CondOt::default());
    let objective = RegressionLoss::new(path.clone());
    let uniform = TimeSampling::default();
    let data = Toy2d::moons();

    // 1-RF: CFM with independent pairs.
    let mut trainer = Trainer::new(setup.config.clone(), MlpConfig::new(2).init(&train_device)?)?;
    let first = trainer.fit(|model, rng, _| {
        let x1 = data.sample_tensor(batch, rng, &train_device)?;
        let x0 = gaussian(batch, rng, &train_device);
        let t = uniform.sample(batch, rng, &CondOt::default())?;
        objective.loss(&predicting::<Velocity, _>(model), x0, x1, None, &t, &Condition::none())
    })?;
    println!("1-RF: trained {} steps in {:.1} s", setup.steps, first.seconds);
    let (online, averaged) = trainer.into_parts();
    let net1: Mlp = averaged.unwrap_or_else(|| online.clone().valid());
    let v1 = predicting::<Velocity, _>(&net1);
    let field1 = PathModel::new(&v1, &path);

    // Reflow couplings: fresh noise pushed through 1-RF's ODE (RK4, 25 steps).
    let ((pool_x0, pool_x1), seconds) = timed(|| reflow_pairs(&field1, &Rk4, gaussian(pool, &mut rng(setup.seed + 100), &device), &TimeGrid::uniform(25)?))?;
    println!("reflow: {pool} couplings by RK4-25 in {seconds:.1} s");
    let (pool_x0, pool_x1) = (pool_x0.autodiff(), pool_x1.autodiff());

    // 2-RF: fine-tune 1-RF's weights on the couplings.
    let mut trainer = Trainer::new(setup.config.clone(), online)?;
    let second = trainer.fit(|model, rng, _| {
        let rows: Vec<i64> = (0..batch).map(|_| rng.random_range(0..pool as i64)).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [batch]), &train_device);
        let (x0, x1) = (pool_x0.clone().select(0, index.clone()), pool_x1.clone().select(0, index));
        let t = uniform.sample(batch, rng, &CondOt::default())?;
        objective.loss(&predicting::<Velocity, _>(model), x0, x1, None, &t, &Condition::none())
    })?;
    println!("2-RF: trained {} steps in {:.1} s", setup.steps, second.seconds);
    let (online, averaged) = trainer.into_parts();
    let net2: Mlp = averaged.unwrap_or_else(|| online.valid());
    let v2 = predicting::<Velocity, _>(&net2);
    let field2 = PathModel::new(&v2, &path);

    let metrics = MoonsMetrics::new(setup.samples)?;
    let start = gaussian(setup.samples, &mut rng(setup.seed + 7), &device);
    let (x_range, y_range) = common::MOONS_RANGE;
    let mut paths = Figure::new("learned ODE paths from the same noise").panel_size(480, 480);
    let mut samples = Figure::new(format!("1-RF and 2-RF ({} + {} training steps)", setup.steps, setup.steps)).columns(2);
    for (name, field) in [("1-RF", &field1), ("2-RF", &field2)] {
        let (many, seconds) = timed(|| solve(field, &Euler, start.clone(), &TimeGrid::uniform(100)?, &mut NoNoise, SolveOptions::default().save_at(SaveAt::Steps)))?;
        let nfe = many.evaluations;
        let trajectories = Trajectories::new(many.saved);
        let straightness = trajectories.straightness()?;
        let many_points = tensor_to_points(many.x);
        let w2_many = metrics.report(&format!("{name} Euler-100"), &many_points, seconds, nfe)?;
        let (one, seconds) = timed(|| solve(field, &Euler, start.clone(), &TimeGrid::uniform(1)?, &mut NoNoise, SolveOptions::default()))?;
        let one_points = tensor_to_points(one.x);
        let w2_one = metrics.report(&format!("{name} Euler-1"), &one_points, seconds, one.evaluations)?;
        println!("{name}: straightness {straightness:.4} (0 = straight)");
        paths = paths.panel(trajectories.panel(format!("{name}: straightness {straightness:.4}"), 300).range((-3.0, 3.0), (-3.0, 3.0)));
        samples = samples
            .panel(Panel::new(format!("{name}, Euler-100 (W2 {w2_many:.3})")).range(x_range, y_range).points(&many_points, Rgb::BLUE, 1))
            .panel(Panel::new(format!("{name}, Euler-1 (W2 {w2_one:.3})")).range(x_range, y_range).points(&one_points, Rgb::ORANGE, 1));
    }
    paths.save(setup.out.join("trajectories.png"))?;
    samples.save(setup.out.join("samples.png"))?;
    println!("wrote {}/{{trajectories,samples}}.png", setup.out.display());
    Ok(())
}
