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

#[test]
fn the_ddpm_bound_is_tight_where_the_reverse_kernel_is_exact() {
    // Data N(0, I) is stationary under the VP forward process, so the true reverse kernel is
    // N(posterior mean, β_t): DDPM with the exact denoiser and the "large" variance β_t is the
    // exact reverse process and its bound equals the NLL (up to the one-sample noise).
    use flowforge::losses::vlb::{bits_per_dim, ddpm_vlb};
    use flowforge::paths::{DdpmVariance, DiscreteScheduleConfig};
    use flowforge::samplers::oracle::GaussianOracle;
    let device = device_f64();
    device.seed(3);
    let schedule = DiscreteScheduleConfig::new().init().unwrap();
    let axis = schedule.timesteps();
    let (mean, std) = (vec![0.0, 0.0], 1.0);
    let oracle = GaussianOracle::new(schedule.clone(), mean.clone(), std).unwrap();
    let path = AffinePath::new(schedule);
    // Every DDPM level from the noisiest (k = 999) to the cleanest (k = 0), then the data.
    let mut times: Vec<f64> = (0..1000).rev().map(|k| axis.to_time(k).unwrap().value()).collect();
    times.push(1.0);
    let n = 2000;
    let mut r = flowforge::data::rng(5);
    let x1 = standard_normal_rows(n, &mut r).into_iter().map(|z| vec![mean[0] + std * z[0], mean[1] + std * z[1]]).collect::<Vec<_>>();
    let nll: Vec<f64> = x1
        .iter()
        .map(|x| {
            let q: f64 = x.iter().zip(&mean).map(|(a, m)| (a - m).powi(2)).sum::<f64>() / (std * std);
            0.5 * q + 2.0 * (std.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln())
        })
        .collect();
    let vlb = tensor_to_vec(ddpm_vlb(&oracle, &path, tensor_from_rows(&x1, &device), &times, DdpmVariance::FixedLarge, &flowforge::Condition::none()).unwrap());
    let gap: Vec<f64> = vlb.iter().zip(&nll).map(|(v, l)| v - l).collect();
    let mean_gap = gap.iter().sum::<f64>() / n as f64;
    let se = (gap.iter().map(|g| (g - mean_gap).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt() / (n as f64).sqrt();
    eprintln!("DDPM VLB {:.4} bits/dim vs exact NLL {:.4} bits/dim; gap {mean_gap:.4} ± {se:.4} nats", bits_per_dim(&vlb, 2), bits_per_dim(&nll, 2));
    assert!(mean_gap.abs() < 3.0 * se + 0.01, "VLB − NLL = {mean_gap} ± {se} nats");
}

fn standard_normal_rows(n: usize, r: &mut rand::rngs::StdRng) -> Vec<[f64; 2]> {
    use rand_distr::{Distribution, StandardNormal};
    (0..n).map(|_| [StandardNormal.sample(r), StandardNormal.sample(r)]).collect()
}
