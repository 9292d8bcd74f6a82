//! Log-likelihoods by the probability-flow ODE on a Gaussian mixture given by its exact
//! velocity field: the exact-divergence CNF log-density matches the closed-form density to
//! 1e-3, Hutchinson's estimate is unbiased within its standard error, and bits/dim follow.

mod common;

use common::*;
use flowforge::core::tensor::{tensor_from_rows, tensor_to_vec};
use flowforge::metrics::likelihood::{Divergence, log_likelihood};
use flowforge::paths::{AffinePath, CondOt};
use flowforge::samplers::PathModel;
use flowforge::samplers::oracle::MixtureOracle;
use flowforge::{Times, Velocity};

fn mixture() -> MixtureOracle<CondOt, Velocity> {
    MixtureOracle::new(CondOt::default(), vec![0.3, 0.5, 0.2], vec![vec![-1.0, 0.5], vec![1.2, -0.3], vec![0.0, 1.5]], vec![0.5, 0.7, 0.4])
        .unwrap()
        .predicting::<Velocity>()
}

#[test]
fn exact_divergence_cnf_matches_the_true_log_density() {
    let device = device_f64();
    let oracle = mixture();
    let path = AffinePath::new(CondOt::default());
    let field = PathModel::new(&oracle, &path);
    let points = vec![vec![-1.0, 0.5], vec![1.0, 0.0], vec![0.3, 1.2], vec![2.0, -1.0], vec![-0.5, -0.5], vec![0.0, 3.0]];
    let x = tensor_from_rows(&points, &device);
    let truth = tensor_to_vec(oracle.log_density(x.clone(), &Times::shared(1.0, points.len()).unwrap()).unwrap());
    let cnf = log_likelihood(&field, x, 100, Divergence::Exact).unwrap();
    for (i, (got, want)) in cnf.nats.iter().zip(&truth).enumerate() {
        assert!((got - want).abs() < 1e-3, "point {i}: CNF {got} vs true {want}");
    }
    // bits/dim is the mean NLL over d ln 2.
    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
    assert!((cnf.bits_per_dim(2) + mean / (2.0 * std::f64::consts::LN_2)).abs() < 1e-3);
    // Too few steps are measurably worse (the test can fail).
    let coarse = log_likelihood(&field, tensor_from_rows(&points, &device), 2, Divergence::Exact).unwrap();
    let worst = coarse.nats.iter().zip(&truth).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
    assert!(worst > 1e-3, "2 RK4 steps should not reach 1e-3 (error {worst})");
}

#[test]
fn hutchinson_estimate_is_unbiased_within_its_standard_error() {
    let device = device_f64();
    device.seed(7);
    let oracle = mixture();
    let path = AffinePath::new(CondOt::default());
    let field = PathModel::new(&oracle, &path);
    // 2,000 copies of one point: one probe each, so the spread is the estimator's.
    let copies = 2000;
    let x = tensor_from_rows(&vec![vec![0.4, 0.2]; copies], &device);
    let truth = tensor_to_vec(oracle.log_density(tensor_from_rows(&[vec![0.4, 0.2]], &device), &Times::shared(1.0, 1).unwrap()).unwrap())[0];
    let estimate = log_likelihood(&field, x, 100, Divergence::Hutchinson { probes: 1 }).unwrap();
    let n = estimate.nats.len() as f64;
    let mean = estimate.nats.iter().sum::<f64>() / n;
    let sd = (estimate.nats.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let se = sd / n.sqrt();
    eprintln!("Hutchinson: mean {mean:.4} ± {se:.4} (sd {sd:.3}) vs true {truth:.4}");
    assert!(sd > 1e-3, "the estimator must actually be stochastic");
    assert!((mean - truth).abs() < 3.0 * se + 1e-3, "mean {mean} vs {truth}, se {se}");
}
