//! A user-defined schedule is first class: written as a trait impl or as a closure pair, it
//! runs through exactly the same sampling and loss code as the built-ins and gives the same
//! numbers as its built-in twin.

mod common;

use burn::tensor::Tensor;
use common::*;
use flowforge::core::tensor::tensor_to_vec;
use flowforge::data::{rng, standard_normal};
use flowforge::losses::RegressionLoss;
use flowforge::paths::*;
use flowforge::samplers::oracle::GaussianOracle;
use flowforge::samplers::*;
use flowforge::prelude::{noise, velocity};
use flowforge::{Condition, Times, Velocity, model_fn};

/// κ_t = t² written by a user as a trait impl.
#[derive(Debug, Clone, Copy)]
struct Quadratic;

impl Schedule for Quadratic {
    fn alpha(&self, t: f64) -> f64 {
        t * t
    }
    fn sigma(&self, t: f64) -> f64 {
        1.0 - t * t
    }
    fn d_alpha(&self, t: f64) -> f64 {
        2.0 * t
    }
    fn d_sigma(&self, t: f64) -> f64 {
        -2.0 * t
    }
}

fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f64 {
    tensor_to_vec(a - b).iter().fold(0.0, |m, v: &f64| m.max(v.abs()))
}

/// Samples with ODE, DDIM and DDPM on a schedule, and the CFM / ε losses on a fixed batch.
fn run<S: Schedule + Clone>(schedule: S) -> (Vec<Tensor<2>>, Vec<f64>) {
    let dev = device();
    let x0 = standard_normal([256, 2], &mut rng(1), &dev);
    let x1 = standard_normal([256, 2], &mut rng(2), &dev).add_scalar(1.5);
    let path = AffinePath::new(schedule.clone());
    let oracle = GaussianOracle::new(schedule.clone(), vec![1.0, -1.0], 0.5).unwrap();
    let velocity_oracle = oracle.clone().predicting::<Velocity>();
    let data_model = PathModel::new(&oracle, &path);
    let velocity_model = PathModel::new(&velocity_oracle, &path);
    let grid = TimeGrid::uniform_between(0.05, 1.0, 40).unwrap();
    let start = x0.clone();
    let samples = vec![
        solve(&velocity_model, &Rk4, start.clone(), &grid, &mut NoNoise, SolveOptions::default()).unwrap().x,
        solve(&data_model, &Ddim::new(0.0).unwrap(), start.clone(), &grid, &mut NoNoise, SolveOptions::default()).unwrap().x,
        solve(&data_model, &Ddpm::default(), start, &grid, &mut SeededNoise::new(5), SolveOptions::default()).unwrap().x,
    ];
    let t = Times::per_sample((0..256).map(|i| 0.05 + 0.9 * i as f64 / 255.0).collect()).unwrap();
    let loss = RegressionLoss::new(path.clone());
    let linear_velocity = model_fn(|x: Tensor<2>, _t: &Times| velocity(x.mul_scalar(-0.5)));
    let linear_noise = model_fn(|x: Tensor<2>, _t: &Times| noise(x.mul_scalar(0.3)));
    let losses = vec![
        loss.loss(&linear_velocity, x0.clone(), x1.clone(), None, &t, &Condition::none()).unwrap().into_scalar::<f64>(),
        loss.loss(&linear_noise, x0.clone(), x1.clone(), None, &t, &Condition::none()).unwrap().into_scalar::<f64>(),
        loss.loss(&velocity_oracle, x0, x1, None, &t, &Condition::none()).unwrap().into_scalar::<f64>(),
    ];
    (samples, losses)
}

#[test]
fn a_trait_impl_schedule_equals_its_builtin_twin() {
    let builtin = PolynomialConvexConfig::new().with_n(2.0).init().unwrap();
    let (samples_builtin, losses_builtin) = run(builtin);
    let (samples_custom, losses_custom) = run(Quadratic);
    for (i, (a, b)) in samples_builtin.into_iter().zip(samples_custom).enumerate() {
        let d = max_diff(a, b);
        assert!(d < 1e-5, "sampler {i}: max |Δ| = {d}");
    }
    for (a, b) in losses_builtin.iter().zip(&losses_custom) {
        assert!((a - b).abs() <= 1e-6 * a.abs(), "loss {a} vs {b}");
    }
}

#[test]
fn a_closure_pair_schedule_equals_its_builtin_twin() {
    let builtin = PolynomialConvexConfig::new().with_n(2.0).init().unwrap();
    let (samples_builtin, losses_builtin) = run(builtin);
    // Derivatives by finite differences: equal to the built-in to ~1e-10.
    let closures = std::sync::Arc::new(FnSchedule::new(|t| t * t, |t| 1.0 - t * t));
    let (samples_custom, losses_custom) = run(closures);
    for (i, (a, b)) in samples_builtin.into_iter().zip(samples_custom).enumerate() {
        let d = max_diff(a, b);
        assert!(d < 1e-5, "sampler {i}: max |Δ| = {d}");
    }
    for (a, b) in losses_builtin.iter().zip(&losses_custom) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "loss {a} vs {b}");
    }
}

#[test]
fn a_custom_schedule_gets_the_default_inverses() {
    // No snr_inverse / edm_sigma written by the user: the defaults invert by bisection.
    for t in [0.1, 0.5, 0.9] {
        let snr = Quadratic.snr(t);
        assert!((Quadratic.snr_inverse(snr).unwrap() - t).abs() < 1e-12);
        let sigma = Quadratic.edm_sigma(flowforge::Time::new(t).unwrap());
        assert!((Quadratic.time_at_edm_sigma(sigma).unwrap().value() - t).abs() < 1e-12);
    }
    // Karras grids work on it too.
    let grid = TimeGrid::karras_range(10, 0.01, 50.0, 7.0, &Quadratic).unwrap();
    assert_eq!(grid.steps(), 10);
    assert!(grid.is_increasing());
}
