//! Sample metrics against scipy/POT on fixed point sets (`tests/reference/metrics_scipy_pot.json`,
//! written by `tests/reference/metrics_scipy_pot.py`) and against the closed-form W2 between
//! Gaussians.

use approx::assert_relative_eq;
use flowforge::metrics::{energy_distance, mmd_rbf, sliced_wasserstein2, sliced_wasserstein2_along, wasserstein2};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/metrics_scipy_pot.json")).expect("reference file");
    serde_json::from_str(&text).expect("valid JSON")
}

fn rows(value: &Value) -> Vec<Vec<f64>> {
    value.as_array().expect("rows").iter().map(|row| row.as_array().expect("row").iter().map(|v| v.as_f64().expect("number")).collect()).collect()
}

fn number(value: &Value, key: &str) -> f64 {
    value[key].as_f64().unwrap_or_else(|| panic!("{key} missing"))
}

#[test]
fn exact_w2_matches_pot_emd2_and_scipy_assignment() {
    let r = reference();
    let (x, y) = (rows(&r["X"]), rows(&r["Y"]));
    let w2 = wasserstein2(&x, &y).unwrap();
    assert_relative_eq!(w2, number(&r, "w2_pot"), max_relative = 1e-12);
    assert_relative_eq!(w2, number(&r, "w2_scipy"), max_relative = 1e-12);
}

#[test]
fn energy_distance_and_mmd_match_scipy() {
    let r = reference();
    let (x, y) = (rows(&r["X"]), rows(&r["Y"]));
    assert_relative_eq!(energy_distance(&x, &y).unwrap(), number(&r, "energy"), max_relative = 1e-12);
    assert_relative_eq!(mmd_rbf(&x, &y, 1.0).unwrap(), number(&r, "mmd_h1"), max_relative = 1e-12);
    assert_relative_eq!(mmd_rbf(&x, &y, 0.5).unwrap(), number(&r, "mmd_h05"), max_relative = 1e-12);
    // scipy.stats.energy_distance (1-D, sets of different sizes) is the square root of ours.
    let column = |key: &str| -> Vec<Vec<f64>> { r[key].as_array().unwrap().iter().map(|v| vec![v.as_f64().unwrap()]).collect() };
    let (a, b) = (column("a1"), column("b1"));
    assert_relative_eq!(energy_distance(&a, &b).unwrap().sqrt(), number(&r, "energy_1d_scipy"), max_relative = 1e-12);
}

#[test]
fn sliced_w2_along_pots_directions_matches_pot() {
    let r = reference();
    let (x, y) = (rows(&r["X"]), rows(&r["Y"]));
    let directions = rows(&r["directions"]);
    assert_relative_eq!(sliced_wasserstein2_along(&x, &y, &directions).unwrap(), number(&r, "swd_pot"), max_relative = 1e-12);
    // Random directions: sliced W2 never exceeds W2 (each projection is 1-Lipschitz).
    let sliced = sliced_wasserstein2(&x, &y, 200, 3).unwrap();
    assert!(sliced > 0.0 && sliced <= wasserstein2(&x, &y).unwrap());
    assert!(sliced_wasserstein2_along(&x, &y, &[vec![0.0, 0.0, 0.0]]).is_err(), "a zero direction is a typed error");
}

#[test]
fn w2_between_gaussian_samples_matches_the_closed_form() {
    // X = m + s ⊙ z and Y = m' + s' ⊙ z with the same z: the map between them is the gradient of
    // a convex quadratic, hence optimal (Brenier), so the empirical W2² is exactly
    // |m − m'|² + mean ‖(s − s') ⊙ z‖², which tends to the Gaussian W2² = |m − m'|² + ‖s − s'‖².
    let mut rng = StdRng::seed_from_u64(11);
    let n = 600;
    let z: Vec<[f64; 2]> = (0..n).map(|_| [StandardNormal.sample(&mut rng), StandardNormal.sample(&mut rng)]).collect();
    let (m, s, m2, s2) = ([0.5, -1.0], [1.0, 0.5], [-0.5, 1.0], [2.0, 0.25]);
    let x: Vec<Vec<f64>> = z.iter().map(|z| vec![m[0] + s[0] * z[0], m[1] + s[1] * z[1]]).collect();
    let y: Vec<Vec<f64>> = z.iter().map(|z| vec![m2[0] + s2[0] * z[0], m2[1] + s2[1] * z[1]]).collect();
    let w2 = wasserstein2(&x, &y).unwrap();
    let shift: f64 = (0..2).map(|d| (m[d] - m2[d]).powi(2)).sum();
    let empirical: f64 = z.iter().map(|z| (0..2).map(|d| ((s[d] - s2[d]) * z[d]).powi(2)).sum::<f64>()).sum::<f64>() / n as f64;
    // Cross terms (mean of z) are part of the exact empirical value.
    let cross: f64 = z.iter().map(|z| (0..2).map(|d| 2.0 * (m[d] - m2[d]) * (s[d] - s2[d]) * z[d]).sum::<f64>()).sum::<f64>() / n as f64;
    assert_relative_eq!(w2 * w2, shift + empirical + cross, max_relative = 1e-9);
    let closed_form = (shift + (0..2).map(|d| (s[d] - s2[d]).powi(2)).sum::<f64>()).sqrt();
    assert_relative_eq!(w2, closed_form, max_relative = 0.03);
}

#[test]
fn sinkhorn_plan_matches_pot() {
    // The entropic plan behind Schrödinger-bridge CFM's coupling, against POT's ot.sinkhorn.
    let r = reference();
    let (x, y) = (rows(&r["X"]), rows(&r["Y"]));
    let cost: Vec<f64> = x[..8].iter().flat_map(|a| y[..8].iter().map(move |b| a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>())).collect();
    let plan = flowforge::losses::coupling::sinkhorn_plan(&cost, 8, 8, 0.5, 10_000, 1e-13).unwrap();
    let expected: Vec<f64> = rows(&r["sinkhorn_reg05_plan"]).concat();
    for (p, q) in plan.iter().zip(&expected) {
        assert!((p - q).abs() < 1e-9, "plan entry {p} vs POT {q}");
    }
    // Adding a constant to a row leaves the plan unchanged (it is absorbed by that row's
    // scaling) but makes the row's kernel underflow to zero: the log-domain route must agree.
    let mut shifted = cost.clone();
    shifted[..8].iter_mut().for_each(|c| *c += 1e6);
    let log_domain = flowforge::losses::coupling::sinkhorn_plan(&shifted, 8, 8, 0.5, 10_000, 1e-13).unwrap();
    for (p, q) in log_domain.iter().zip(&expected) {
        assert!((p - q).abs() < 1e-9, "log-domain plan entry {p} vs POT {q}");
    }
}
