//! Every training objective end to end on 2-D data, with the same MLP (3 × 256, SiLU) and the
//! same budget, reporting training time, sampling time, exact W2 and energy distance to fresh
//! target samples next to the noise floor, and path straightness for the ODE methods.
//!
//! ```text
//! cargo run --example objectives_2d -- --method cfm
//! cargo run --example objectives_2d -- --method ot-cfm --source 8gaussians
//! cargo run --example objectives_2d -- --method sb-cfm --source 8gaussians
//! cargo run --example objectives_2d -- --method reflow     # 1-RF, then 2-RF on its couplings
//! cargo run --example objectives_2d -- --method ddpm
//! cargo run --example objectives_2d -- --method edm
//! cargo run --example objectives_2d -- --method meanflow
//! ```
//!
//! Flags: `--steps 3000 --batch 256 --lr 1e-3 --ema 0 --cosine --seed 0 --samples 2000
//! --out out/objectives_2d --device default`. Prints one JSON line of metrics at the end and
//! writes `<method>_samples.png` (and `<method>_trajectories.png` for ODE methods).


use burn::module::Module;
use burn::tensor::{Device, Tensor};
use flowforge::cli::Args;
use flowforge::data::{Toy2d, rng, standard_normal, tensor_to_points};
use flowforge::losses::RegressionLoss;
use flowforge::losses::coupling::Coupling;
use flowforge::losses::edm::EdmPreconditioned;
use flowforge::losses::meanflow::{AdaptiveWeight, JvpTangent, MeanFlowLoss, PairDensity, TimePairSampling, meanflow_sample};
use flowforge::losses::time_sampling::{TimeSampling, Weighting};
use flowforge::metrics::{as_rows, energy_distance, straightness, wasserstein2};
use flowforge::nets::{Mlp, MlpConfig, TimeFeatures, predicting};
use flowforge::paths::{AffinePath, CondOt, DiscreteScheduleConfig, EdmConfig, Schedule, StochasticInterpolant};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::samplers::{Ddim, Ddpm, DdimSpacing, EdmStochastic, Euler, NoNoise, PathModel, SaveAt, SeededNoise, SolveOptions, TimeGrid, solve};
use flowforge::train::{LrSchedule, Trainer, TrainerConfig};
use flowforge::{Condition, Noise, Velocity};
use rand::rngs::StdRng;
use std::time::Instant;

const USAGE: &str = "objectives_2d --method cfm|ot-cfm|sb-cfm|reflow|ddpm|edm|meanflow [--source gaussian|8gaussians] \
[--steps 3000] [--batch 256] [--lr 1e-3] [--ema 0] [--cosine] [--sigma 0.5 (sb-cfm)] [--time-features raw|sinusoidal] [--seed 0] [--samples 2000] \
[--mf-density logit-normal|uniform|beta --mf-mean -0.4 --mf-std 1.0 --mf-alpha 0.5 --mf-equal 0.75 --mf-power 1.0 --mf-offset 1e-3 --mf-tangent conditional|model --mf-fm-warmup 0 --mf-coupling independent|exact-ot (meanflow)] \
[--out out/objectives_2d] [--device default|flex|wgpu|ndarray|cuda]";

struct Run {
    samples: Vec<(String, Vec<[f64; 2]>, f64, usize)>,
    trajectories: Option<Vec<(f64, Vec<Vec<f64>>)>>,
}

fn source(kind: &str, n: usize, rng: &mut StdRng, device: &Device) -> flowforge::Result<Tensor<2>> {
    Ok(match kind {
        "8gaussians" => Toy2d::eight_gaussians().sample_tensor(n, rng, device)?.div_scalar(2.5),
        _ => standard_normal([n, 2], rng, device),
    })
}

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE)?;
    let method: String = args.get("method", "cfm".to_owned())?;
    let source_kind: String = args.get("source", "gaussian".to_owned())?;
    let steps = args.count("steps", 3000)?;
    let batch = args.positive("batch", 256)?;
    let lr: f64 = args.get("lr", 1e-3)?;
    let ema: f64 = args.get("ema", 0.0)?;
    let cosine: bool = args.get("cosine", false)?;
    let sigma: f64 = args.get("sigma", 0.5)?;
    let seed: u64 = args.get("seed", 0)?;
    let mf_defaults = TimePairSampling::default();
    let mf_density = match args.get("mf-density", "logit-normal".to_owned())?.as_str() {
        "uniform" => PairDensity::Uniform,
        "beta" => PairDensity::Beta { alpha: args.get("mf-alpha", 0.5)?, beta: args.get("mf-alpha", 0.5)? },
        _ => PairDensity::LogitNormal { mean: args.get("mf-mean", -0.4)?, std: args.get("mf-std", 1.0)? },
    };
    let mf_pairs = TimePairSampling { density: mf_density, equal_fraction: args.get("mf-equal", mf_defaults.equal_fraction)? };
    let mf_weight = AdaptiveWeight { power: args.get("mf-power", AdaptiveWeight::default().power)?, offset: args.get("mf-offset", AdaptiveWeight::default().offset)? };
    let mf_tangent = match args.get("mf-tangent", "conditional".to_owned())?.as_str() {
        "model" => JvpTangent::Model,
        "conditional" => JvpTangent::Conditional,
        other => return Err(format!("unknown --mf-tangent {other}\n\n{USAGE}").into()),
    };
    let fm_warmup = args.count("mf-fm-warmup", 0)?;
    let mf_coupling = match args.get("mf-coupling", "independent".to_owned())?.as_str() {
        "exact-ot" => Coupling::ExactOt,
        "independent" => Coupling::Independent,
        other => return Err(format!("unknown --mf-coupling {other}\n\n{USAGE}").into()),
    };
    let n = args.positive("samples", 2000)?;
    let out = args.out_dir("objectives_2d")?;
    let device = args.device()?;
    let train_device = device.clone().autodiff();
    device.seed(seed);

    let config = TrainerConfig::new(steps)
        .with_learning_rate(lr)
        .with_schedule(if cosine { LrSchedule::Cosine { final_fraction: 0.01 } } else { LrSchedule::Constant })
        .with_ema_decay((ema > 0.0).then_some(ema))
        .with_seed(seed);
    let data = Toy2d::moons();
    let uniform = TimeSampling::default();
    let condot = AffinePath::new(CondOt::default());
    let x_start = source(&source_kind, n, &mut rng(seed + 7), &device)?;
    let trajectory_options = || SolveOptions::default().save_at(SaveAt::Steps);
    let to_rows = |saved: Vec<(f64, Tensor<2>)>| -> Vec<(f64, Vec<Vec<f64>>)> {
        saved.into_iter().map(|(t, x)| (t, as_rows(&tensor_to_points(x)))).collect()
    };
    let timed = |name: &str, f: &mut dyn FnMut() -> flowforge::Result<(Tensor<2>, usize)>| -> flowforge::Result<(String, Vec<[f64; 2]>, f64, usize)> {
        let start = Instant::now();
        let (x, nfe) = f()?;
        let points = tensor_to_points(x);
        Ok((name.to_owned(), points, start.elapsed().as_secs_f64(), nfe))
    };

    let time_features = match args.get("time-features", "raw".to_owned())?.as_str() {
        "sinusoidal" => TimeFeatures::Sinusoidal { dim: 32, scale: 100.0 },
        _ => TimeFeatures::Raw,
    };
    let mlp = |time_inputs: usize| MlpConfig::new(2).with_time_inputs(time_inputs).with_time_features(time_features).init(&train_device);
    let (run, train_seconds, final_loss): (Run, f64, f64) = match method.as_str() {
        "cfm" | "ot-cfm" | "sb-cfm" => {
            let coupling = match method.as_str() {
                "cfm" => Coupling::Independent,
                "ot-cfm" => Coupling::ExactOt,
                _ => Coupling::schrodinger_bridge(sigma)?,
            };
            let bridge = StochasticInterpolant::brownian_bridge(sigma)?;
            let sb = method == "sb-cfm";
            let mut trainer = Trainer::new(config, mlp(1)?)?;
            let report = trainer.fit(|model, rng, _| {
                let x1 = data.sample_tensor(batch, rng, &train_device)?;
                let x0 = source(&source_kind, batch, rng, &train_device)?;
                let pair = coupling.couple(x0, x1, None, rng)?;
                let velocity = predicting::<Velocity, _>(model);
                if sb {
                    // Bridge times in the open interval, where its velocity is defined.
                    let t = TimeSampling::Uniform { low: 1e-3, high: 1.0 - 1e-3 }.sample(batch, rng, &CondOt::default())?;
                    let noise = standard_normal([batch, 2], rng, &train_device);
                    RegressionLoss::new(bridge.clone()).loss(&velocity, pair.x0, pair.x1, Some(noise), &t, &Condition::none())
                } else {
                    let t = uniform.sample(batch, rng, &CondOt::default())?;
                    RegressionLoss::new(condot.clone()).loss(&velocity, pair.x0, pair.x1, None, &t, &Condition::none())
                }
            })?;
            let (online, averaged) = trainer.into_parts();
            let net: Mlp = averaged.unwrap_or_else(|| online.valid());
            let velocity = predicting::<Velocity, _>(&net);
            let field = PathModel::new(&velocity, &condot);
            let grid = TimeGrid::uniform(100)?;
            let mut trajectories = None;
            let sample = timed("Euler-100", &mut || {
                let s = solve(&field, &Euler, x_start.clone(), &grid, &mut NoNoise, trajectory_options())?;
                let x = s.x.clone();
                trajectories = Some(to_rows(s.saved));
                Ok((x, s.evaluations))
            })?;
            (Run { samples: vec![sample], trajectories }, report.seconds, *report.losses.last().unwrap_or(&f64::NAN))
        }
        "reflow" => {
            // 1-rectified flow: CFM with independent pairs.
            let objective = RegressionLoss::new(condot.clone());
            let mut trainer = Trainer::new(config.clone(), mlp(1)?)?;
            let first = trainer.fit(|model, rng, _| {
                let x1 = data.sample_tensor(batch, rng, &train_device)?;
                let x0 = source(&source_kind, batch, rng, &train_device)?;
                let t = uniform.sample(batch, rng, &CondOt::default())?;
                objective.loss(&predicting::<Velocity, _>(model), x0, x1, None, &t, &Condition::none())
            })?;
            let (online, averaged) = trainer.into_parts();
            let net1: Mlp = averaged.unwrap_or_else(|| online.clone().valid());
            // Reflow couplings: 20,000 noise samples pushed through the learned flow (RK4-25).
            let pool = 20_000;
            let v1 = predicting::<Velocity, _>(&net1);
            let field1 = PathModel::new(&v1, &condot);
            let (pool_x0, pool_x1) = flowforge::samplers::reflow_pairs(&field1, &flowforge::samplers::Rk4, source(&source_kind, pool, &mut rng(seed + 100), &device)?, &TimeGrid::uniform(25)?)?;
            let (pool_x0, pool_x1) = (pool_x0.autodiff(), pool_x1.autodiff());
            // 2-rectified flow: fine-tune on the pairs.
            let mut trainer = Trainer::new(config, online)?;
            let second = trainer.fit(|model, rng, _| {
                let rows: Vec<i64> = (0..batch).map(|_| rand::RngExt::random_range(rng, 0..pool as i64)).collect();
                let index = Tensor::<1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(rows, [batch]), &train_device);
                let (x0, x1) = (pool_x0.clone().select(0, index.clone()), pool_x1.clone().select(0, index));
                let t = uniform.sample(batch, rng, &CondOt::default())?;
                objective.loss(&predicting::<Velocity, _>(model), x0, x1, None, &t, &Condition::none())
            })?;
            let (online, averaged) = trainer.into_parts();
            let net2: Mlp = averaged.unwrap_or_else(|| online.valid());
            let v2 = predicting::<Velocity, _>(&net2);
            let field2 = PathModel::new(&v2, &condot);
            let mut samples = Vec::new();
            let mut trajectories = None;
            for (label, field) in [("1-RF", &field1), ("2-RF", &field2)] {
                let mut saved = None;
                samples.push(timed(&format!("{label} Euler-100"), &mut || {
                    let s = solve(field, &Euler, x_start.clone(), &TimeGrid::uniform(100)?, &mut NoNoise, trajectory_options())?;
                    let x = s.x.clone();
                    saved = Some(to_rows(s.saved));
                    Ok((x, s.evaluations))
                })?);
                let s = straightness(saved.as_ref().expect("saved"))?;
                println!("{label}: straightness {s:.4}");
                samples.push(timed(&format!("{label} Euler-1"), &mut || {
                    let s = solve(field, &Euler, x_start.clone(), &TimeGrid::uniform(1)?, &mut NoNoise, SolveOptions::default())?;
                    Ok((s.x, s.evaluations))
                })?);
                trajectories = saved;
            }
            (Run { samples, trajectories }, first.seconds + second.seconds, *second.losses.last().unwrap_or(&f64::NAN))
        }
        "ddpm" => {
            let schedule = DiscreteScheduleConfig::new().init()?;
            let path = AffinePath::new(schedule.clone());
            let objective = RegressionLoss::new(path.clone());
            let levels = TimeSampling::DiscreteUniform { num_train_timesteps: 1000 };
            let mut trainer = Trainer::new(config, mlp(1)?)?;
            let report = trainer.fit(|model, rng, _| {
                let x1 = data.sample_tensor(batch, rng, &train_device)?;
                let x0 = standard_normal([batch, 2], rng, &train_device);
                let t = levels.sample(batch, rng, &schedule)?;
                objective.loss(&predicting::<Noise, _>(model), x0, x1, None, &t, &Condition::none())
            })?;
            let (online, averaged) = trainer.into_parts();
            let net: Mlp = averaged.unwrap_or_else(|| online.valid());
            let eps = predicting::<Noise, _>(&net);
            let field = PathModel::new(&eps, &path);
            let axis = schedule.timesteps();
            let start = standard_normal([n, 2], &mut rng(seed + 7), &device);
            let ancestral = timed("DDPM-1000", &mut || {
                let grid = TimeGrid::ddim(DdimSpacing::Leading { steps_offset: 0 }, 1000, axis, true)?;
                let s = solve(&field, &Ddpm::default(), start.clone(), &grid, &mut SeededNoise::new(seed + 8), SolveOptions::default())?;
                Ok((s.x, s.evaluations))
            })?;
            let ddim = timed("DDIM-50", &mut || {
                let grid = TimeGrid::ddim(DdimSpacing::Leading { steps_offset: 0 }, 50, axis, true)?;
                let s = solve(&field, &Ddim::new(0.0)?, start.clone(), &grid, &mut NoNoise, SolveOptions::default())?;
                Ok((s.x, s.evaluations))
            })?;
            (Run { samples: vec![ancestral, ddim], trajectories: None }, report.seconds, *report.losses.last().unwrap_or(&f64::NAN))
        }
        "edm" => {
            let schedule = EdmConfig::new().init()?;
            let path = AffinePath::new(schedule);
            let objective = RegressionLoss::new(path.clone()).with_weighting(Weighting::Edm { sigma_data: 0.5 });
            let noise_levels = TimeSampling::edm();
            let mut trainer = Trainer::new(config, mlp(1)?)?;
            let report = trainer.fit(|model, rng, _| {
                let x1 = data.sample_tensor(batch, rng, &train_device)?;
                let x0 = standard_normal([batch, 2], rng, &train_device);
                let t = noise_levels.sample(batch, rng, &schedule)?;
                let denoiser = EdmPreconditioned::new(model, schedule, 0.5)?;
                objective.loss(&denoiser, x0, x1, None, &t, &Condition::none())
            })?;
            let (online, averaged) = trainer.into_parts();
            let net: Mlp = averaged.unwrap_or_else(|| online.valid());
            let denoiser = EdmPreconditioned::new(&net, schedule, 0.5)?;
            let field = PathModel::new(&denoiser, &path);
            let start = standard_normal([n, 2], &mut rng(seed + 7), &device).mul_scalar(schedule.sigma(0.0));
            let heun = timed("EDM Heun-18", &mut || {
                let s = solve(&field, &EdmStochastic::default(), start.clone(), &TimeGrid::uniform(17)?, &mut NoNoise, SolveOptions::default())?;
                // The final step to σ = 0 is the denoiser's output.
                Ok((field.evaluate(s.x, 1.0)?.data()?, field.evaluations()))
            })?;
            (Run { samples: vec![heun], trajectories: None }, report.seconds, *report.losses.last().unwrap_or(&f64::NAN))
        }
        "meanflow" => {
            let (pairs, objective) = (mf_pairs, MeanFlowLoss { weight: mf_weight, tangent: mf_tangent });
            let mut trainer = Trainer::new(config, mlp(2)?)?;
            let report = trainer.fit(|model, rng, step| {
                let x1 = data.sample_tensor(batch, rng, &train_device)?;
                let x0 = standard_normal([batch, 2], rng, &train_device);
                // Flow matching alone (every pair r = t) for the first `--mf-fm-warmup` steps.
                let pairs = if step < fm_warmup { TimePairSampling { equal_fraction: 1.0, ..pairs } } else { pairs };
                let (a, b) = pairs.sample(batch, rng)?;
                // With `--mf-coupling exact-ot`, minibatch OT pairs (Tong et al. 2024) instead of
                // independent ones: straighter conditional paths, lower-variance JVP targets.
                let pair = mf_coupling.couple(x0, x1, None, rng)?;
                let (x0, x1) = (pair.x0, pair.x1);
                let x_a = condot.point(x0.clone(), x1.clone(), &a)?;
                objective.loss(model, x_a, x1 - x0, &a, &b, &Condition::none())
            })?;
            let (online, averaged) = trainer.into_parts();
            let net: Mlp = averaged.unwrap_or_else(|| online.valid());
            let sample_with = |x: Tensor<2>, grid: &[f64]| meanflow_sample(&net, x, grid, &Condition::none());
            let one = timed("MeanFlow 1-step", &mut || Ok((sample_with(x_start.clone(), &[0.0, 1.0])?, 1)))?;
            let two = timed("MeanFlow 2-step", &mut || Ok((sample_with(x_start.clone(), &[0.0, 0.5, 1.0])?, 2)))?;
            let four = timed("MeanFlow 4-step", &mut || Ok((sample_with(x_start.clone(), &[0.0, 0.25, 0.5, 0.75, 1.0])?, 4)))?;
            let grid: Vec<f64> = (0..=100).map(|k| k as f64 / 100.0).collect();
            let hundred = timed("MeanFlow 100-step", &mut || Ok((sample_with(x_start.clone(), &grid)?, 100)))?;
            (Run { samples: vec![one, two, four, hundred], trajectories: None }, report.seconds, *report.losses.last().unwrap_or(&f64::NAN))
        }
        other => return Err(format!("unknown --method {other}\n\n{USAGE}").into()),
    };

    // Metrics (the workloads' protocol: 2,000 points against make_moons(2000) target sets).
    // (Fewer when fewer samples were asked for: exact W2 compares sets of equal size.)
    let m = 2000.min(n);
    let target = as_rows(&Toy2d::make_moons(m, 0.05, &mut rng(1001))?);
    let floor = wasserstein2(&as_rows(&Toy2d::make_moons(m, 0.05, &mut rng(2001))?), &as_rows(&Toy2d::make_moons(m, 0.05, &mut rng(2002))?))?;
    println!("method {method}, source {source_kind}, {steps} steps: trained in {train_seconds:.1} s ({:.0} steps/s), final loss {final_loss:.4}", steps as f64 / train_seconds);
    println!("noise floor W2 {floor:.4}");
    let straight = run.trajectories.as_ref().map(|t| straightness(t)).transpose()?;
    if let Some(s) = straight {
        println!("straightness of the learned ODE paths: {s:.4}");
    }
    let mut json = vec![
        format!("\"method\":\"{method}\""),
        format!("\"source\":\"{source_kind}\""),
        format!("\"steps\":{steps}"),
        format!("\"train_s\":{train_seconds:.3}"),
        format!("\"noise_floor_w2\":{floor:.5}"),
    ];
    if let Some(s) = straight {
        json.push(format!("\"straightness\":{s:.5}"));
    }
    let mut figure = Figure::new(format!("{method} ({source_kind} → moons, {steps} steps)"))
        .panel(Panel::new("target").range((-2.0, 3.0), (-1.5, 2.0)).points(&Toy2d::make_moons(n, 0.05, &mut rng(5))?, Rgb::GREY, 1));
    for (name, points, seconds, nfe) in &run.samples {
        let generated = as_rows(&points[..m]);
        let w2 = wasserstein2(&generated, &target)?;
        let energy = energy_distance(&generated, &target)?;
        println!("{name:<16} {} samples in {seconds:.2} s ({nfe} NFE): W2 {w2:.4} ({:.1}× floor), energy {energy:.5}", points.len(), w2 / floor);
        json.push(format!("\"{name}\":{{\"w2\":{w2:.5},\"energy\":{energy:.6},\"sample_s\":{seconds:.3},\"nfe\":{nfe}}}"));
        figure = figure.panel(Panel::new(name.clone()).range((-2.0, 3.0), (-1.5, 2.0)).points(points, Rgb::BLUE, 1));
    }
    figure.save(out.join(format!("{method}_{source_kind}_samples.png")))?;
    if let Some(trajectories) = &run.trajectories {
        let lines: Vec<Vec<[f64; 2]>> = (0..200.min(n)).map(|i| trajectories.iter().map(|(_, p)| [p[i][0], p[i][1]]).collect()).collect();
        let ends: Vec<[f64; 2]> = lines.iter().map(|l| *l.last().expect("non-empty")).collect();
        let starts: Vec<[f64; 2]> = lines.iter().map(|l| l[0]).collect();
        Figure::new(format!("{method}: 200 learned ODE paths"))
            .panel(Panel::new(format!("straightness {:.3}", straight.unwrap_or(f64::NAN))).lines(&lines, Rgb::GREY, 1, 0.5).points(&starts, Rgb::BLUE, 2).points(&ends, Rgb::ORANGE, 2))
            .panel_size(480, 480)
            .save(out.join(format!("{method}_{source_kind}_trajectories.png")))?;
    }
    println!("{{{}}}", json.join(","));
    Ok(())
}
