//! # flowforge-metrics
//!
//! Sample-based distances between point clouds, computed on the host in f64:
//!
//! - [`linear_sum_assignment`]: the exact minimum-cost perfect matching (shortest augmenting
//!   paths, Jonker & Volgenant 1987, in the form of Crouse 2016 — scipy's algorithm);
//! - [`wasserstein2`]: the exact 2-Wasserstein distance between two equal-size empirical
//!   measures (an assignment problem, as POT's `ot.emd2` computes it);
//! - [`energy_distance`] (Székely & Rizzo 2013, V-statistic), [`mmd_rbf`] (Gretton et al. 2012,
//!   biased estimator) and [`sliced_wasserstein2`] (Bonneel et al. 2015).
//!
//! Points are rows `&[Vec<f64>]` (or `[f64; 2]` via [`as_rows`]).
//!
//! [`likelihood`] computes exact log-likelihoods of flow models by the probability-flow ODE
//! (exact divergence or Hutchinson's estimator), in nats and bits per dimension.
#![warn(missing_docs)]

pub mod likelihood;

use flowforge_core::{Error, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

/// Converts 2-D points to rows.
pub fn as_rows(points: &[[f64; 2]]) -> Vec<Vec<f64>> {
    points.iter().map(|p| p.to_vec()).collect()
}

fn check_sets(x: &[Vec<f64>], y: &[Vec<f64>]) -> Result<usize> {
    if x.is_empty() || y.is_empty() {
        return Err(Error::InvalidCount { name: "points", value: 0, requirement: ">= 1 in each set" });
    }
    let d = x[0].len();
    for p in x.iter().chain(y) {
        if p.len() != d {
            return Err(Error::ShapeMismatch { what: "point dimension", expected: vec![d], actual: vec![p.len()] });
        }
        if p.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "a point of the sample".into() });
        }
    }
    Ok(d)
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum()
}

/// The minimum-cost assignment of an `n × n` cost matrix (row-major): `col_for_row[i]` is the
/// column matched to row `i`.
///
/// Shortest augmenting paths with Dijkstra on reduced costs (Jonker & Volgenant, *A shortest
/// augmenting path algorithm for dense and sparse linear assignment problems*, Computing 1987;
/// Crouse, *On implementing 2D rectangular assignment algorithms*, IEEE TAES 2016). `O(n³)`.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `cost.len() == n²`; [`Error::NonFinite`] for a NaN or
/// infinite cost.
pub fn linear_sum_assignment(cost: &[f64], n: usize) -> Result<Vec<usize>> {
    if cost.len() != n * n {
        return Err(Error::ShapeMismatch { what: "cost matrix", expected: vec![n, n], actual: vec![cost.len()] });
    }
    if cost.iter().any(|c| !c.is_finite()) {
        return Err(Error::NonFinite { what: "assignment cost matrix".into() });
    }
    const NONE: usize = usize::MAX;
    let mut u = vec![0.0_f64; n];
    let mut v = vec![0.0_f64; n];
    let mut shortest = vec![f64::INFINITY; n];
    let mut path = vec![NONE; n];
    let mut col_for_row = vec![NONE; n];
    let mut row_for_col = vec![NONE; n];
    let mut visited_rows = vec![false; n];
    let mut visited_cols = vec![false; n];
    let mut remaining: Vec<usize> = Vec::with_capacity(n);
    for current in 0..n {
        shortest.fill(f64::INFINITY);
        visited_rows.fill(false);
        visited_cols.fill(false);
        remaining.clear();
        remaining.extend((0..n).rev());
        let mut min_value = 0.0;
        let mut i = current;
        let sink = loop {
            visited_rows[i] = true;
            let mut best = NONE;
            let mut lowest = f64::INFINITY;
            for (slot, &j) in remaining.iter().enumerate() {
                let reduced = min_value + cost[i * n + j] - u[i] - v[j];
                if reduced < shortest[j] {
                    path[j] = i;
                    shortest[j] = reduced;
                }
                if shortest[j] < lowest || (shortest[j] == lowest && row_for_col[j] == NONE) {
                    lowest = shortest[j];
                    best = slot;
                }
            }
            min_value = lowest;
            let j = remaining.swap_remove(best);
            visited_cols[j] = true;
            if row_for_col[j] == NONE {
                break j;
            }
            i = row_for_col[j];
        };
        u[current] += min_value;
        for r in 0..n {
            if visited_rows[r] && r != current {
                u[r] += min_value - shortest[col_for_row[r]];
            }
        }
        for c in 0..n {
            if visited_cols[c] {
                v[c] -= min_value - shortest[c];
            }
        }
        let mut j = sink;
        loop {
            let r = path[j];
            row_for_col[j] = r;
            core::mem::swap(&mut col_for_row[r], &mut j);
            if r == current {
                break;
            }
        }
    }
    Ok(col_for_row)
}

/// The exact 2-Wasserstein distance between the empirical measures of `x` and `y` (equal
/// sizes, uniform weights): `√(min_π (1/n) Σ_i ‖x_i − y_π(i)‖²)`.
///
/// # Errors
/// [`Error::ShapeMismatch`] for different sizes or dimensions; [`Error::InvalidCount`] for
/// empty sets; [`Error::NonFinite`] for NaN points.
pub fn wasserstein2(x: &[Vec<f64>], y: &[Vec<f64>]) -> Result<f64> {
    check_sets(x, y)?;
    if x.len() != y.len() {
        return Err(Error::ShapeMismatch { what: "sample sizes for exact W2", expected: vec![x.len()], actual: vec![y.len()] });
    }
    let n = x.len();
    let cost: Vec<f64> = x.iter().flat_map(|a| y.iter().map(move |b| squared_distance(a, b))).collect();
    let assignment = linear_sum_assignment(&cost, n)?;
    let total: f64 = assignment.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum();
    Ok((total / n as f64).sqrt())
}

fn mean_pairwise(x: &[Vec<f64>], y: &[Vec<f64>], f: impl Fn(f64) -> f64) -> f64 {
    let mut total = 0.0;
    for a in x {
        for b in y {
            total += f(squared_distance(a, b));
        }
    }
    total / (x.len() * y.len()) as f64
}

/// The squared energy distance `2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖` (V-statistic: full matrices
/// with their zero diagonals), as in the benchmark workloads.
///
/// # Errors
/// As [`wasserstein2`] (sizes may differ).
pub fn energy_distance(x: &[Vec<f64>], y: &[Vec<f64>]) -> Result<f64> {
    check_sets(x, y)?;
    let xy = mean_pairwise(x, y, f64::sqrt);
    let xx = mean_pairwise(x, x, f64::sqrt);
    let yy = mean_pairwise(y, y, f64::sqrt);
    Ok(2.0 * xy - xx - yy)
}

/// The squared maximum mean discrepancy with the RBF kernel `exp(−‖a − b‖²/(2 bandwidth²))`,
/// biased (V-statistic) estimator.
///
/// # Errors
/// As [`energy_distance`]; [`Error::InvalidParameter`] for a non-positive bandwidth.
pub fn mmd_rbf(x: &[Vec<f64>], y: &[Vec<f64>], bandwidth: f64) -> Result<f64> {
    flowforge_core::error::check::positive("bandwidth", bandwidth)?;
    check_sets(x, y)?;
    let k = |d2: f64| (-d2 / (2.0 * bandwidth * bandwidth)).exp();
    Ok(mean_pairwise(x, x, k) + mean_pairwise(y, y, k) - 2.0 * mean_pairwise(x, y, k))
}

/// The sliced 2-Wasserstein distance over `projections` random directions (seeded, uniform on
/// the sphere): `√(mean_θ W2²(θᵀX, θᵀY))`, each 1-D W2 exact by sorting (Rabin et al. 2011;
/// POT's `ot.sliced_wasserstein_distance` with `p = 2`).
///
/// # Errors
/// As [`wasserstein2`]; [`Error::InvalidCount`] for zero projections.
pub fn sliced_wasserstein2(x: &[Vec<f64>], y: &[Vec<f64>], projections: usize, seed: u64) -> Result<f64> {
    let d = check_sets(x, y)?;
    flowforge_core::error::check::count_at_least_one("projections", projections)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let directions: Vec<Vec<f64>> = (0..projections).map(|_| (0..d).map(|_| StandardNormal.sample(&mut rng)).collect()).collect();
    sliced_wasserstein2_along(x, y, &directions)
}

/// The sliced 2-Wasserstein distance along given directions (normalised here), for
/// reproducing another library's projections exactly.
///
/// # Errors
/// As [`wasserstein2`]; [`Error::InvalidCount`] for no directions; [`Error::ShapeMismatch`]
/// for a direction of the wrong dimension; [`Error::InvalidParameter`] for a zero direction.
pub fn sliced_wasserstein2_along(x: &[Vec<f64>], y: &[Vec<f64>], directions: &[Vec<f64>]) -> Result<f64> {
    let d = check_sets(x, y)?;
    flowforge_core::error::check::count_at_least_one("directions", directions.len())?;
    if x.len() != y.len() {
        return Err(Error::ShapeMismatch { what: "sample sizes for sliced W2", expected: vec![x.len()], actual: vec![y.len()] });
    }
    let mut total = 0.0;
    for direction in directions {
        if direction.len() != d {
            return Err(Error::ShapeMismatch { what: "projection direction", expected: vec![d], actual: vec![direction.len()] });
        }
        let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
        flowforge_core::error::check::positive("direction norm", norm)?;
        let project = |p: &Vec<f64>| p.iter().zip(direction).map(|(a, b)| a * b).sum::<f64>() / norm;
        let mut px: Vec<f64> = x.iter().map(project).collect();
        let mut py: Vec<f64> = y.iter().map(project).collect();
        px.sort_by(f64::total_cmp);
        py.sort_by(f64::total_cmp);
        total += px.iter().zip(&py).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / x.len() as f64;
    }
    Ok((total / directions.len() as f64).sqrt())
}

/// The straightness of trajectories (Liu, Gong & Liu, *Flow Straight and Fast*, ICLR 2023,
/// eq. 12): `S = ∫₀¹ E‖(x₁ − x₀) − ẋ_t‖² dt`, zero exactly for straight constant-speed paths,
/// estimated from snapshots `(t_k, points)` by finite differences between consecutive
/// snapshots.
///
/// # Errors
/// [`Error::InvalidCount`] for fewer than two snapshots; [`Error::ShapeMismatch`] for
/// snapshots of different sizes; [`Error::InvalidGrid`] for non-increasing times.
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(a > b)` is true for NaN too, which must fail the check")]
pub fn straightness(snapshots: &[(f64, Vec<Vec<f64>>)]) -> Result<f64> {
    if snapshots.len() < 2 {
        return Err(Error::InvalidCount { name: "snapshots", value: snapshots.len() as i64, requirement: ">= 2" });
    }
    let n = snapshots[0].1.len();
    if let Some((_, bad)) = snapshots.iter().find(|(_, p)| p.len() != n) {
        return Err(Error::ShapeMismatch { what: "trajectory snapshot", expected: vec![n], actual: vec![bad.len()] });
    }
    let (t0, first) = &snapshots[0];
    let (t1, last) = snapshots.last().expect("two snapshots");
    let span = t1 - t0;
    let mut total = 0.0;
    for w in snapshots.windows(2) {
        let ((ta, a), (tb, b)) = (&w[0], &w[1]);
        let dt = tb - ta;
        if !(dt > 0.0) {
            return Err(Error::InvalidGrid { reason: "snapshot times must increase", index: 0, value: *tb });
        }
        for i in 0..n {
            let mut sq = 0.0;
            for d in 0..a[i].len() {
                let chord = (last[i][d] - first[i][d]) / span;
                let speed = (b[i][d] - a[i][d]) / dt;
                sq += (chord - speed).powi(2);
            }
            total += sq * dt / n as f64;
        }
    }
    Ok(total / span)
}

/// Mean and covariance (unbiased) of a sample.
///
/// # Errors
/// [`Error::InvalidCount`] for fewer than two points.
pub fn mean_and_covariance(x: &[Vec<f64>]) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    if x.len() < 2 {
        return Err(Error::InvalidCount { name: "points", value: x.len() as i64, requirement: ">= 2" });
    }
    let d = x[0].len();
    let n = x.len() as f64;
    let mean: Vec<f64> = (0..d).map(|j| x.iter().map(|p| p[j]).sum::<f64>() / n).collect();
    let mut cov = vec![vec![0.0; d]; d];
    for p in x {
        for i in 0..d {
            for j in 0..d {
                cov[i][j] += (p[i] - mean[i]) * (p[j] - mean[j]) / (n - 1.0);
            }
        }
    }
    Ok((mean, cov))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn brute_force(cost: &[f64], n: usize) -> f64 {
        fn permute(k: usize, perm: &mut Vec<usize>, cost: &[f64], n: usize, best: &mut f64) {
            if k == n {
                let c: f64 = perm.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum();
                *best = best.min(c);
                return;
            }
            for i in k..n {
                perm.swap(k, i);
                permute(k + 1, perm, cost, n, best);
                perm.swap(k, i);
            }
        }
        let mut best = f64::INFINITY;
        permute(0, &mut (0..n).collect(), cost, n, &mut best);
        best
    }

    #[test]
    fn assignment_is_optimal_on_random_matrices() {
        let mut rng = StdRng::seed_from_u64(5);
        for n in 1..=7 {
            for _ in 0..20 {
                let cost: Vec<f64> = (0..n * n).map(|_| StandardNormal.sample(&mut rng)).collect();
                let a = linear_sum_assignment(&cost, n).unwrap();
                let mut seen = vec![false; n];
                for &j in &a {
                    assert!(!seen[j], "a permutation");
                    seen[j] = true;
                }
                let total: f64 = a.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum();
                assert_relative_eq!(total, brute_force(&cost, n), epsilon = 1e-12);
            }
        }
    }

    #[test]
    fn w2_of_a_translation_is_its_length() {
        let x: Vec<Vec<f64>> = (0..50).map(|i| vec![i as f64 * 0.1, (i * 7 % 13) as f64]).collect();
        let y: Vec<Vec<f64>> = x.iter().map(|p| vec![p[0] + 3.0, p[1] - 4.0]).collect();
        assert_relative_eq!(wasserstein2(&x, &y).unwrap(), 5.0, epsilon = 1e-12);
        assert_eq!(wasserstein2(&x, &x).unwrap(), 0.0);
    }

    #[test]
    fn identical_sets_have_zero_discrepancy() {
        let x: Vec<Vec<f64>> = (0..30).map(|i| vec![(i as f64).sin(), (i as f64).cos()]).collect();
        assert_relative_eq!(energy_distance(&x, &x).unwrap(), 0.0, epsilon = 1e-12);
        assert_relative_eq!(mmd_rbf(&x, &x, 0.5).unwrap(), 0.0, epsilon = 1e-12);
        assert_relative_eq!(sliced_wasserstein2(&x, &x, 10, 0).unwrap(), 0.0, epsilon = 1e-12);
    }

    #[test]
    fn straight_paths_have_zero_straightness_and_curved_ones_do_not() {
        let times: Vec<f64> = (0..=20).map(|k| k as f64 / 20.0).collect();
        let straight: Vec<(f64, Vec<Vec<f64>>)> = times.iter().map(|&t| (t, vec![vec![t, 2.0 * t], vec![-t, 0.0]])).collect();
        assert!(straightness(&straight).unwrap() < 1e-20);
        // A quarter circle of radius 1 at unit angular speed π/2: chord speed √2, arc speed π/2,
        // S = ∫ |chord − velocity|² dt = (π/2)² + 2 − 2·(π/2)·√2·(2√2/π) = π²/4 − 2.
        let arc: Vec<(f64, Vec<Vec<f64>>)> = (0..=2000)
            .map(|k| {
                let t = k as f64 / 2000.0;
                let a = core::f64::consts::FRAC_PI_2 * t;
                (t, vec![vec![a.cos(), a.sin()]])
            })
            .collect();
        let expected = core::f64::consts::PI.powi(2) / 4.0 - 2.0;
        assert_relative_eq!(straightness(&arc).unwrap(), expected, epsilon = 1e-5);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert!(matches!(linear_sum_assignment(&[1.0, 2.0, 3.0], 2), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(linear_sum_assignment(&[1.0, f64::NAN, 3.0, 4.0], 2), Err(Error::NonFinite { .. })));
        assert!(matches!(wasserstein2(&[vec![0.0]], &[vec![0.0], vec![1.0]]), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(energy_distance(&[], &[vec![0.0]]), Err(Error::InvalidCount { .. })));
        assert!(matches!(mmd_rbf(&[vec![0.0]], &[vec![0.0]], 0.0), Err(Error::InvalidParameter { .. })));
    }
}
