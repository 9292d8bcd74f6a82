//! Path explorer: how x_t moves from Gaussian noise (t = 0) to two moons (t = 1) along several
//! probability paths, with the empirical moments of x_t checked against the closed form.
//!
//! ```text
//! cargo run --example path_explorer                 # writes out/path_explorer/*.png
//! cargo run --example path_explorer -- --n 5000 --out /tmp/paths --device flex
//! ```
//!
//! For an affine path `x_t = σ_t x₀ + α_t x₁` with `x₀ ~ N(0, I)` independent of the data `x₁`,
//! `E[x_t] = α_t E[x₁]` and `Var[x_t] = σ_t² + α_t² Var[x₁]` per coordinate; the Brownian bridge
//! adds `γ_t²`. The example prints both, so a wrong schedule shows up as a mismatch.


use burn::tensor::Tensor;
use flowforge::data::{Toy2d, rng, standard_normal, tensor_to_points};
use flowforge::paths::*;
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::Times;
use std::time::Instant;

const USAGE: &str = "path_explorer [--n 2000] [--seed 0] [--out out/path_explorer] [--device default|flex|wgpu|ndarray|cuda]";

/// A named path: the deterministic schedule and an optional Brownian-bridge σ.
struct Entry {
    name: &'static str,
    schedule: AnySchedule,
    bridge_sigma: Option<f64>,
}

fn moments(points: &[[f64; 2]]) -> ([f64; 2], [f64; 2]) {
    let n = points.len() as f64;
    let mean = [0, 1].map(|d| points.iter().map(|p| p[d]).sum::<f64>() / n);
    let var = [0, 1].map(|d| points.iter().map(|p| (p[d] - mean[d]).powi(2)).sum::<f64>() / (n - 1.0));
    (mean, var)
}

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE)?;
    let n = args.positive("n", 2000)?;
    let seed: u64 = args.get("seed", 0)?;
    let out = args.out_dir("path_explorer")?;
    let device = args.device()?;
    let started = Instant::now();

    let mut generator = rng(seed);
    let data = Toy2d::moons();
    let x1: Tensor<2> = data.sample_tensor(n, &mut generator, &device)?;
    let x0: Tensor<2> = standard_normal([n, 2], &mut generator, &device);
    let eps: Tensor<2> = standard_normal([n, 2], &mut generator, &device);
    let (data_mean, data_var) = moments(&tensor_to_points(x1.clone()));

    let entries = vec![
        Entry { name: "CondOT (rectified flow)", schedule: ScheduleConfig::CondOt(CondOtConfig::new()).init()?, bridge_sigma: None },
        Entry { name: "cosine", schedule: ScheduleConfig::Cosine(CosineConfig::new()).init()?, bridge_sigma: None },
        Entry { name: "VP (β 0.1..20)", schedule: ScheduleConfig::Vp(VpConfig::new()).init()?, bridge_sigma: None },
        Entry { name: "polynomial κ = t³", schedule: ScheduleConfig::PolynomialConvex(PolynomialConvexConfig::new().with_n(3.0)).init()?, bridge_sigma: None },
        Entry { name: "Brownian bridge σ = 0.5", schedule: ScheduleConfig::CondOt(CondOtConfig::new()).init()?, bridge_sigma: Some(0.5) },
    ];
    let times = [0.0, 0.25, 0.5, 0.75, 1.0];

    let mut figure = Figure::new(format!("x_t from N(0, I) (t = 0) to two moons (t = 1), {n} points")).columns(times.len()).panel_size(260, 260);
    let mut trajectories = Figure::new("conditional paths of 40 pairs (x0 → x1)").columns(entries.len()).panel_size(320, 320);
    println!("{:<26} {:>5}  {:>22}  {:>22}  {:>9}", "path", "t", "mean (empirical)", "mean (exact)", "max |Δvar|");
    let mut worst = 0.0_f64;
    for entry in &entries {
        let affine = AffinePath::new(entry.schedule.clone());
        let bridge = entry.bridge_sigma.map(|s| StochasticInterpolant::new(entry.schedule.clone(), NoiseScale::BrownianBridge { sigma: s })).transpose()?;
        let x_at = |t: f64| -> flowforge::Result<Tensor<2>> {
            let times = Times::shared(t, n)?;
            match &bridge {
                Some(b) => Ok(b.mean(x0.clone(), x1.clone(), &times)? + eps.clone().mul_scalar(b.noise_scale().gamma(t))),
                None => {
                    let c = affine.coefficients(&times);
                    Ok(c.sigma.combine(x0.clone(), &c.alpha, x1.clone()))
                }
            }
        };
        for &t in &times {
            let points = tensor_to_points(x_at(t)?);
            let (mean, var) = moments(&points);
            let (a, s) = (entry.schedule.alpha(t), entry.schedule.sigma(t));
            let g = entry.bridge_sigma.map_or(0.0, |sigma| sigma * (t * (1.0 - t)).sqrt());
            let exact_mean = data_mean.map(|m| a * m);
            let exact_var = [0, 1].map(|d| s * s + a * a * data_var[d] + g * g);
            let dvar = (0..2).map(|d| (var[d] - exact_var[d]).abs() / exact_var[d]).fold(0.0, f64::max);
            worst = worst.max(dvar);
            println!(
                "{:<26} {:>5.2}  ({:>8.4}, {:>8.4})  ({:>8.4}, {:>8.4})  {:>8.2}%",
                entry.name, t, mean[0], mean[1], exact_mean[0], exact_mean[1], 100.0 * dvar
            );
            // One scale for every panel, so the contraction from noise to data is visible.
            let panel = Panel::new(format!("{}, t = {t}", entry.name)).range((-3.5, 3.5), (-3.5, 3.5));
            figure = figure.panel(panel.points(&points, Rgb::palette(times.iter().position(|&x| x == t).unwrap()), 1));
        }
        // Trajectories of the first 40 pairs on a fine time grid.
        let grid: Vec<f64> = (0..=50).map(|k| k as f64 / 50.0).collect();
        let snapshots: Vec<Vec<[f64; 2]>> = grid.iter().map(|&t| x_at(t).map(tensor_to_points)).collect::<Result<_, _>>()?;
        let lines: Vec<Vec<[f64; 2]>> = (0..40.min(n)).map(|i| snapshots.iter().map(|s| s[i]).collect()).collect();
        let starts: Vec<[f64; 2]> = lines.iter().map(|l| l[0]).collect();
        let ends: Vec<[f64; 2]> = lines.iter().map(|l| *l.last().unwrap()).collect();
        trajectories = trajectories.panel(
            Panel::new(entry.name)
                .lines(&lines, Rgb::GREY, 1, 0.6)
                .points(&starts, Rgb::BLUE, 3)
                .points(&ends, Rgb::ORANGE, 3),
        );
    }
    let grid_png = out.join("paths_grid.png");
    let traj_png = out.join("trajectories.png");
    figure.save(&grid_png)?;
    trajectories.save(&traj_png)?;
    println!("\nlargest relative variance mismatch: {:.2}% (sampling error of {n} points ≈ {:.1}%)", 100.0 * worst, 100.0 * (2.0 / n as f64).sqrt() * 2.0);
    println!("wrote {} and {}", grid_png.display(), traj_png.display());
    println!("wall time: {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

use flowforge::cli::Args;
