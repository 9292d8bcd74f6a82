//! Solvers tested by their measured convergence order on the Gaussian oracle, whose
//! probability-flow ODE has a closed-form solution; Dopri5 by its accuracy at tight tolerances.
//! f64 throughout, so round-off does not hide the truncation error.

mod common;

use burn::tensor::Tensor;
use common::*;
use flowforge::core::tensor::{tensor_from_rows, tensor_to_vec};
use flowforge::paths::*;
use flowforge::samplers::oracle::GaussianOracle;
use flowforge::samplers::*;
use flowforge::{Error, Velocity};

fn start(dev: &burn::tensor::Device) -> Tensor<2> {
    tensor_from_rows(&[vec![0.3, -1.2], vec![1.5, 0.7], vec![-2.0, 0.1], vec![0.0, 2.2]], dev)
}

fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f64 {
    tensor_to_vec(a - b).iter().fold(0.0_f64, |m, v| m.max(v.abs()))
}

/// Least-squares slope of log(error) against log(step size).
fn fitted_order(steps: &[usize], errors: &[f64]) -> f64 {
    let xs: Vec<f64> = steps.iter().map(|&n| (1.0 / n as f64).ln()).collect();
    let ys: Vec<f64> = errors.iter().map(|e| e.ln()).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / xs.len() as f64, ys.iter().sum::<f64>() / ys.len() as f64);
    let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    cov / var
}

fn measure<O: OdeSolver>(solver: O, schedule: AnySchedule, steps: &[usize]) -> (f64, Vec<f64>) {
    let dev = device_f64();
    let oracle = GaussianOracle::new(schedule.clone(), vec![1.0, -2.0], 0.5).unwrap().predicting::<Velocity>();
    let path = AffinePath::new(schedule);
    let model = PathModel::new(&oracle, &path);
    let x0 = start(&dev);
    let exact = oracle.flow(x0.clone(), 0.0, 1.0);
    let errors: Vec<f64> = steps
        .iter()
        .map(|&n| {
            let grid = TimeGrid::uniform(n).unwrap();
            let solution = solve(&model, &solver, x0.clone(), &grid, &mut NoNoise, SolveOptions::default()).unwrap();
            assert_eq!(solution.evaluations, n * solver.stages(), "NFE = steps × stages");
            max_abs_diff(solution.x, exact.clone())
        })
        .collect();
    (fitted_order(steps, &errors), errors)
}

fn assert_order<O: OdeSolver + Copy + std::fmt::Debug>(solver: O, steps: &[usize]) {
    // Cosine and VP: smooth, non-degenerate fields. (On CondOT the Gaussian's linear ODE
    // y' = v̇/(2v) y with v quadratic in t makes the midpoint rule's leading error term vanish —
    // it converges at order 3 there — so CondOT is not a fair order test.)
    for config in [ScheduleConfig::Cosine(CosineConfig::new()), ScheduleConfig::Vp(VpConfig::new())] {
        let (order, errors) = measure(solver, config.init().unwrap(), steps);
        println!("{solver:?} on {config:?}: errors {errors:?}, fitted order {order:.3}");
        let expected = solver.order() as f64;
        assert!((order - expected).abs() <= 0.3, "{solver:?}: fitted order {order} (expected {expected} ± 0.3), errors {errors:?}");
    }
}

#[test]
fn euler_converges_with_order_one() {
    assert_order(Euler, &[16, 32, 64, 128, 256]);
}

#[test]
fn midpoint_converges_with_order_two() {
    assert_order(Midpoint, &[8, 16, 32, 64, 128]);
}

#[test]
fn heun_converges_with_order_two() {
    assert_order(Heun, &[8, 16, 32, 64, 128]);
}

#[test]
fn rk4_converges_with_order_four() {
    assert_order(Rk4, &[8, 16, 32, 64, 128]);
}

#[test]
fn ddim_is_euler_in_the_noise_to_signal_clock_and_first_order() {
    // On VP, where α > 0 everywhere, deterministic DDIM and NoiseToSignal(Euler) are the same
    // algorithm; both converge to the exact flow at order 1.
    let dev = device_f64();
    let schedule = ScheduleConfig::Vp(VpConfig::new()).init().unwrap();
    let oracle = GaussianOracle::new(schedule.clone(), vec![1.0, -2.0], 0.5).unwrap();
    let path = AffinePath::new(schedule);
    let model = PathModel::new(&oracle, &path);
    let x0 = start(&dev);
    let exact = oracle.flow(x0.clone(), 0.0, 1.0);
    let steps = [16, 32, 64, 128, 256];
    let mut errors = Vec::new();
    for &n in &steps {
        let grid = TimeGrid::uniform(n).unwrap();
        let ddim = solve(&model, &Ddim::new(0.0).unwrap(), x0.clone(), &grid, &mut NoNoise, SolveOptions::default()).unwrap();
        let euler = solve(&model, &NoiseToSignal(Euler), x0.clone(), &grid, &mut NoNoise, SolveOptions::default()).unwrap();
        assert!(max_abs_diff(ddim.x.clone(), euler.x) < 1e-10, "DDIM(η=0) = Euler in σ/α");
        errors.push(max_abs_diff(ddim.x, exact.clone()));
    }
    let order = fitted_order(&steps, &errors);
    assert!((order - 1.0).abs() <= 0.3, "DDIM order {order}, errors {errors:?}");
}

#[test]
fn dopri5_at_tight_tolerance_is_within_1e_6_and_reports_nfe() {
    let dev = device_f64();
    let schedule = ScheduleConfig::CondOt(CondOtConfig::new()).init().unwrap();
    let oracle = GaussianOracle::new(schedule.clone(), vec![1.0, -2.0], 0.5).unwrap().predicting::<Velocity>();
    let path = AffinePath::new(schedule);
    let model = PathModel::new(&oracle, &path);
    let x0 = start(&dev);
    let solver = Dopri5::new(PidController::new(1e-8, 1e-8).unwrap());
    let out = solver.solve(&model, x0.clone(), 0.0, 1.0, &SaveAt::Times(vec![0.25, 0.5]), None).unwrap();
    let error = max_abs_diff(out.solution.x.clone(), oracle.flow(x0.clone(), 0.0, 1.0));
    println!(
        "Dopri5 rtol = atol = 1e-8: error {error:.2e}, NFE {}, accepted {}, rejected {}",
        out.solution.evaluations, out.accepted, out.rejected
    );
    assert!(error <= 1e-6, "Dopri5 error {error}");
    assert_eq!(out.solution.evaluations, model.evaluations());
    assert_eq!(out.solution.saved.len(), 2);
    for (t, x) in &out.solution.saved {
        assert!(max_abs_diff(x.clone(), oracle.flow(x0.clone(), 0.0, *t)) <= 1e-6, "save-at t = {t}");
    }
    // Looser tolerances cost fewer evaluations.
    let loose = Dopri5::new(PidController::new(1e-4, 1e-4).unwrap())
        .solve(&model, x0, 0.0, 1.0, &SaveAt::Final, None)
        .unwrap();
    assert!(loose.solution.evaluations < out.solution.evaluations);
}

#[test]
fn integration_runs_backwards_to_encode() {
    // Data → noise with a decreasing grid recovers the starting noise (RK4, 64 steps).
    let dev = device_f64();
    let schedule = ScheduleConfig::Cosine(CosineConfig::new()).init().unwrap();
    let oracle = GaussianOracle::new(schedule.clone(), vec![1.0, -2.0], 0.5).unwrap().predicting::<Velocity>();
    let path = AffinePath::new(schedule);
    let model = PathModel::new(&oracle, &path);
    let x0 = start(&dev);
    let grid = TimeGrid::uniform(64).unwrap();
    let data = solve(&model, &Rk4, x0.clone(), &grid, &mut NoNoise, SolveOptions::default()).unwrap().x;
    let back = solve(&model, &Rk4, data, &grid.reversed(), &mut NoNoise, SolveOptions::default()).unwrap().x;
    assert!(max_abs_diff(back, x0) < 1e-8);
    let dopri = Dopri5::new(PidController::new(1e-9, 1e-9).unwrap());
    let there = dopri.solve(&model, start(&dev), 0.0, 1.0, &SaveAt::Final, None).unwrap().solution.x;
    let again = dopri.solve(&model, there, 1.0, 0.0, &SaveAt::Final, None).unwrap().solution.x;
    assert!(max_abs_diff(again, start(&dev)) < 1e-6);
}

#[test]
fn dopri5_exceeding_its_budget_is_an_error_not_a_hang() {
    let dev = device_f64();
    let field = FnField::new(|x: Tensor<2>, t: f64| x.mul_scalar(50.0 * (20.0 * t).cos()));
    let solver = Dopri5::new(PidController::new(1e-10, 1e-10).unwrap().with_max_steps(5));
    let err = solver.solve(&field, start(&dev), 0.0, 1.0, &SaveAt::Final, None).unwrap_err();
    assert!(matches!(err, Error::StepBudgetExceeded { max_steps: 5, .. }), "{err}");
}
