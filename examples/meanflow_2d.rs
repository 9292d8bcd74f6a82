//! MeanFlow on two moons (Geng et al., *Mean Flows for One-step Generative Modeling*, 2025): the
//! network learns the average velocity `u(x_t, r, t) = (1/(t − r)) ∫ᵣᵗ v dτ` from the MeanFlow
//! identity `u = v − (t − r) du/dt`, whose total derivative is a JVP that flowforge propagates
//! exactly through its MLP. One network evaluation then jumps from noise to data; more steps
//! refine.
//!
//! Recipe (the best found for 2-D in flowforge's sweeps, `docs/guide.md`): minibatch exact-OT
//! pairs of noise and data (Tong et al. 2024; the coupling makes the conditional paths straighter
//! and the JVP targets far less noisy: at 20,000 steps the one-step W2 drops from 0.109 to 0.076),
//! uniform time pairs with half of them r = t, adaptive loss weight with power 0.75, sinusoidal
//! time features, EMA 0.999 and a cosine learning-rate decay.
//!
//! ```text
//! cargo run --example meanflow_2d                          # ≈ 2 min on 2 CPU cores
//! cargo run --example meanflow_2d -- --steps 20000         # 1-step W2 ≈ 0.08 (seeds 0–2)
//! cargo run --example meanflow_2d -- --coupling independent  # the paper's independent pairs
//! ```
//!
//! Writes `samples.png` (1, 2, 4 and 100 steps) and `one_step_map.png` (where one step sends a
//! grid of noise points) to `--out` (default `out/meanflow_2d`).

mod common;

use common::{MoonsMetrics, Setup, TRAIN_FLAGS, gaussian, timed};
use flowforge::cli::Args;
use flowforge::data::{Toy2d, rng, tensor_to_points};
use flowforge::losses::coupling::Coupling;
use flowforge::losses::meanflow::{AdaptiveWeight, PairDensity, TimePairSampling, meanflow_loss, meanflow_sample};
use flowforge::nets::{Mlp, MlpConfig, TimeFeatures};
use flowforge::paths::{AffinePath, CondOt};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::train::{LrSchedule, Trainer};
use flowforge::Condition;
use burn::module::Module;

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let usage = format!("meanflow_2d [--equal-fraction 0.5] [--weight-power 0.75] [--coupling exact-ot|independent] {TRAIN_FLAGS}");
    let args = Args::parse(&usage)?;
    let equal_fraction: f64 = args.get("equal-fraction", 0.5)?;
    let power: f64 = args.get("weight-power", 0.75)?;
    let coupling = match args.get("coupling", "exact-ot".to_owned())?.as_str() {
        "exact-ot" => Coupling::ExactOt,
        "independent" => Coupling::Independent,
        other => return Err(format!("unknown --coupling {other}\n\n{usage}").into()),
    };
    let mut setup = Setup::read(&args, "meanflow_2d", 8000)?;
    // MeanFlow's one-step quality depends on averaging: EMA on and a cosine decay by default.
    let ema: f64 = args.get("ema", 0.999)?;
    setup.config = setup.config.clone().with_ema_decay((ema > 0.0).then_some(ema)).with_schedule(LrSchedule::Cosine { final_fraction: 0.01 });
    let (batch, device, train_device) = (setup.batch, setup.device.clone(), setup.train_device.clone());

    let pairs = TimePairSampling { density: PairDensity::Uniform, equal_fraction };
    let weight = AdaptiveWeight { power, ..AdaptiveWeight::default() };
    let path = AffinePath::new(CondOt::default());
    let mlp = MlpConfig::new(2).with_time_inputs(2).with_time_features(TimeFeatures::Sinusoidal { dim: 32, scale: 100.0 }).init(&train_device)?;
    let data = Toy2d::moons();
    let mut trainer = Trainer::new(setup.config.clone(), mlp)?;
    let report = trainer.fit(|model, rng, _| {
        let x1 = data.sample_tensor(batch, rng, &train_device)?;
        let x0 = gaussian(batch, rng, &train_device);
        let pair = coupling.couple(x0, x1, None, rng)?;
        let (x0, x1) = (pair.x0, pair.x1);
        let (r, t) = pairs.sample(batch, rng)?;
        let x_r = path.point(x0.clone(), x1.clone(), &r)?;
        meanflow_loss(model, x_r, x1 - x0, &r, &t, &Condition::none(), weight)
    })?;
    println!("trained {} steps in {:.1} s ({:.0} steps/s)", setup.steps, report.seconds, report.steps_per_second);
    let (online, averaged) = trainer.into_parts();
    let net: Mlp = averaged.unwrap_or_else(|| online.valid());

    let metrics = MoonsMetrics::new(setup.samples)?;
    let start = gaussian(setup.samples, &mut rng(setup.seed + 7), &device);
    let (x_range, y_range) = common::MOONS_RANGE;
    let mut figure = Figure::new(format!("MeanFlow on two moons ({} steps): one network, 1 to 100 sampling steps", setup.steps))
        .panel(Panel::new("target").range(x_range, y_range).points(&Toy2d::make_moons(setup.samples, 0.05, &mut rng(5))?, Rgb::GREY, 1));
    for steps in [1, 2, 4, 100] {
        let grid: Vec<f64> = (0..=steps).map(|k| k as f64 / steps as f64).collect();
        let (x, seconds) = timed(|| meanflow_sample(&net, start.clone(), &grid, &Condition::none()))?;
        let points = tensor_to_points(x);
        let w2 = metrics.report(&format!("MeanFlow {steps}-step"), &points, seconds, steps)?;
        figure = figure.panel(Panel::new(format!("{steps} step{} (W2 {w2:.3})", if steps == 1 { "" } else { "s" })).range(x_range, y_range).points(&points, Rgb::BLUE, 1));
    }
    figure.save(setup.out.join("samples.png"))?;

    // The one-step map x₀ ↦ x₀ + u(x₀, 0, 1) on a grid of noise points, as arrows (segments).
    let grid: Vec<[f64; 2]> = (0..15).flat_map(|i| (0..15).map(move |j| [-2.5 + 5.0 * i as f64 / 14.0, -2.5 + 5.0 * j as f64 / 14.0])).collect();
    let jumped = tensor_to_points(meanflow_sample(&net, flowforge::data::points_to_tensor(&grid, &device), &[0.0, 1.0], &Condition::none())?);
    let arrows: Vec<Vec<[f64; 2]>> = grid.iter().zip(&jumped).map(|(a, b)| vec![*a, *b]).collect();
    Figure::new("one MeanFlow step: noise grid (blue) → data (orange)")
        .panel(Panel::new("x₀ ↦ x₀ + u(x₀, 0, 1)").range((-3.0, 3.0), (-3.0, 3.0)).lines(&arrows, Rgb::GREY, 1, 0.6).points(&grid, Rgb::BLUE, 2).points(&jumped, Rgb::ORANGE, 2))
        .panel_size(560, 560)
        .save(setup.out.join("one_step_map.png"))?;
    println!("wrote {}/{{samples,one_step_map}}.png", setup.out.display());
    Ok(())
}
