//! Every sampler, run on the exact field of a Gaussian mixture, produces samples of that
//! mixture: matching mean and covariance, and an exact W2 to fresh mixture samples at the level
//! of the finite-sample noise floor. Also: DDIM (η = 0) on the full DDPM grid agrees with a
//! fine probability-flow ODE solve.

mod common;

use burn::tensor::Tensor;
use common::*;
use flowforge::core::tensor::tensor_to_rows;
use flowforge::data::{Toy2d, rng, standard_normal};
use flowforge::metrics::{mean_and_covariance, wasserstein2};
use flowforge::paths::*;
use flowforge::samplers::oracle::MixtureOracle;
use flowforge::samplers::*;
use flowforge::Velocity;

const N: usize = 600;

fn mixture_spec() -> (Vec<f64>, Vec<Vec<f64>>, Vec<f64>) {
    (vec![0.5, 0.3, 0.2], vec![vec![-2.0, 0.0], vec![1.5, 1.5], vec![1.0, -2.0]], vec![0.3, 0.5, 0.4])
}

fn oracle<S: Schedule>(schedule: S) -> MixtureOracle<S> {
    let (w, m, s) = mixture_spec();
    MixtureOracle::new(schedule, w, m, s).unwrap()
}

fn fresh(seed: u64) -> Vec<Vec<f64>> {
    let (w, m, s) = mixture_spec();
    let toy = Toy2d::GaussianMixture { weights: w, means: m.iter().map(|v| [v[0], v[1]]).collect(), stds: s };
    toy.sample(N, &mut rng(seed)).unwrap().iter().map(|p| p.to_vec()).collect()
}

/// Mean W2 between pairs of fresh sample sets, and its spread.
fn noise_floor() -> (f64, f64) {
    let values: Vec<f64> = (0..4).map(|k| wasserstein2(&fresh(100 + 2 * k), &fresh(101 + 2 * k)).unwrap()).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt();
    (mean, std)
}

fn check_samples(name: &str, x: Tensor<2>, floor: (f64, f64), evaluations: usize) {
    let samples = tensor_to_rows(x);
    let (w, m, s) = mixture_spec();
    let reference = MixtureOracle::new(CondOt::default(), w, m, s).unwrap();
    let (true_mean, true_cov) = reference.data_moments();
    let (mean, cov) = mean_and_covariance(&samples).unwrap();
    // Standard errors of a mean and a covariance entry from N samples, times 4.
    for i in 0..2 {
        let se_mean = (true_cov[i][i] / N as f64).sqrt();
        assert!((mean[i] - true_mean[i]).abs() <= 4.0 * se_mean, "{name}: mean[{i}] {} vs {} (4 se = {})", mean[i], true_mean[i], 4.0 * se_mean);
        for j in 0..2 {
            let se_cov = ((true_cov[i][i] * true_cov[j][j] + true_cov[i][j].powi(2)) / N as f64).sqrt();
            assert!((cov[i][j] - true_cov[i][j]).abs() <= 4.0 * se_cov + 0.02, "{name}: cov[{i}][{j}] {} vs {}", cov[i][j], true_cov[i][j]);
        }
    }
    let w2 = wasserstein2(&samples, &fresh(7)).unwrap();
    let bound = floor.0 + 4.0 * floor.1 + 0.05;
    println!("{name:<34} NFE {evaluations:>5}  W2 {w2:.4}  (noise floor {:.4} ± {:.4}, bound {bound:.4})", floor.0, floor.1);
    assert!(w2 <= bound, "{name}: W2 {w2} above the bound {bound}");
}

#[test]
fn every_sampler_reproduces_the_mixture() {
    let dev = device();
    let floor = noise_floor();
    let x0 = standard_normal([N, 2], &mut rng(3), &dev);

    // ODE solvers on the exact velocity of the CondOT path.
    let condot = AffinePath::new(CondOt::default());
    let velocity_oracle = oracle(CondOt::default()).predicting::<Velocity>();
    let model = PathModel::new(&velocity_oracle, &condot);
    let run = |name: &str, sampler: &dyn Fn(&Tensor<2>) -> Solution<2>| {
        let s = sampler(&x0);
        check_samples(name, s.x, floor, s.evaluations);
    };
    run("Euler, CondOT, 200 steps", &|x| solve(&model, &Euler, x.clone(), &TimeGrid::uniform(200).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap());
    run("Midpoint, CondOT, 50 steps", &|x| solve(&model, &Midpoint, x.clone(), &TimeGrid::uniform(50).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap());
    run("Heun, CondOT, 50 steps", &|x| solve(&model, &Heun, x.clone(), &TimeGrid::uniform(50).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap());
    run("RK4, CondOT, 25 steps", &|x| solve(&model, &Rk4, x.clone(), &TimeGrid::uniform(25).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap());
    run("Dopri5, CondOT, 1e-5", &|x| {
        Dopri5::new(PidController::new(1e-5, 1e-5).unwrap()).solve(&model, x.clone(), 0.0, 1.0, &SaveAt::Final, None).unwrap().solution
    });

    // Diffusion samplers on a VP path, from the model's x̂₁.
    let vp_schedule = VpConfig::new().init().unwrap();
    let vp = AffinePath::new(vp_schedule);
    let vp_oracle = oracle(vp_schedule);
    let vp_model = PathModel::new(&vp_oracle, &vp);
    // Start from the VP marginal at t = 0: σ₀ x₀ + α₀ x₁ ≈ N(0, I) up to α₀ = 0.0066.
    let vp_start = x0.clone().mul_scalar(vp_schedule.sigma(0.0));
    let grid = |n| TimeGrid::uniform(n).unwrap();
    let run_vp = |name: &str, s: Solution<2>| check_samples(name, s.x, floor, s.evaluations);
    run_vp("DDIM η = 0, VP, 50 steps", solve(&vp_model, &Ddim::new(0.0).unwrap(), vp_start.clone(), &grid(50), &mut NoNoise, SolveOptions::default()).unwrap());
    run_vp("DDIM η = 1, VP, 200 steps", solve(&vp_model, &Ddim::new(1.0).unwrap(), vp_start.clone(), &grid(200), &mut SeededNoise::new(11), SolveOptions::default()).unwrap());
    run_vp("DDPM ancestral, VP, 500 steps", solve(&vp_model, &Ddpm::default(), vp_start.clone(), &grid(500), &mut SeededNoise::new(12), SolveOptions::default()).unwrap());
    run_vp("DPM-Solver++(2M), VP, 20 steps", solve(&vp_model, &DpmSolverPp2m, vp_start.clone(), &grid(20), &mut NoNoise, SolveOptions::default()).unwrap());
    run_vp("Heun in σ/α, VP Karras, 30 steps", solve(&vp_model, &NoiseToSignal(Heun), vp_start.clone(), &TimeGrid::karras(30, 7.0, &vp_schedule).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap());
    run_vp(
        "Euler–Maruyama reverse SDE, 500",
        solve(&vp_model, &EulerMaruyama::new(Diffusion::ReverseDiffusion { scale: 1.0 }).unwrap(), vp_start.clone(), &grid(500), &mut SeededNoise::new(13), SolveOptions::default()).unwrap(),
    );
    let pc = PredictorCorrector { predictor: Ddim::new(0.0).unwrap(), corrector: Langevin::new(0.1, 1).unwrap() };
    run_vp("DDIM + Langevin corrector, 100", solve(&vp_model, &pc, vp_start.clone(), &grid(100), &mut SeededNoise::new(14), SolveOptions::default()).unwrap());

    // The EDM stochastic sampler on the EDM schedule (σ from 80 to 0.002), then the final
    // denoising step to σ = 0.
    let edm_schedule = EdmConfig::new().init().unwrap();
    let edm = AffinePath::new(edm_schedule);
    let edm_oracle = oracle(edm_schedule);
    let edm_model = PathModel::new(&edm_oracle, &edm);
    let edm_start = x0.clone().mul_scalar(80.0);
    let sampler = EdmStochastic::new(40.0, 0.05, 50.0, 1.003).unwrap();
    let s = solve(&edm_model, &sampler, edm_start, &TimeGrid::uniform(40).unwrap(), &mut SeededNoise::new(15), SolveOptions::default()).unwrap();
    let denoised = edm_model.evaluate(s.x, 1.0).unwrap().data().unwrap();
    check_samples("EDM stochastic (churn 40), 40 steps", denoised, floor, edm_model.evaluations());
}

#[test]
fn ddim_on_the_full_ddpm_grid_agrees_with_a_fine_pf_ode_solve() {
    let dev = device();
    let schedule = DiscreteScheduleConfig::new().init().unwrap();
    let axis = schedule.timesteps();
    let path = AffinePath::new(schedule.clone());
    let model_data = oracle(schedule.clone());
    let data_model = PathModel::new(&model_data, &path);
    let start_t = axis.to_time(axis.len() - 1).unwrap().value();
    let x = standard_normal([64, 2], &mut rng(21), &dev).mul_scalar(schedule.sigma(start_t));
    let full = TimeGrid::ddim(DdimSpacing::Leading { steps_offset: 0 }, 1000, axis, true).unwrap();
    assert_eq!(full.steps(), 1000);
    let ddim = solve(&data_model, &Ddim::new(0.0).unwrap(), x.clone(), &full, &mut NoNoise, SolveOptions::default()).unwrap();
    // The reference: the same PF-ODE in t, integrated by RK4 on a 4× finer grid that contains
    // every DDPM level (so each step stays inside one linear piece of ᾱ).
    let velocity_oracle = oracle(schedule).predicting::<Velocity>();
    let velocity_model = PathModel::new(&velocity_oracle, &path);
    let mut fine = Vec::new();
    for (a, b) in full.intervals() {
        for k in 0..4 {
            fine.push(a + (b - a) * k as f64 / 4.0);
        }
    }
    fine.push(1.0);
    let reference = solve(&velocity_model, &Rk4, x, &TimeGrid::new(fine).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap();
    let a = tensor_to_rows(ddim.x);
    let b = tensor_to_rows(reference.x);
    let max_diff = a.iter().flatten().zip(b.iter().flatten()).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    println!("DDIM(η = 0, 1000 steps) vs RK4 (4000 steps): max |Δ| = {max_diff:.2e}");
    assert!(max_diff < 0.02, "DDIM vs fine PF-ODE: {max_diff}");
}
