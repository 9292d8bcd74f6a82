//! The exact minibatch OT plan of torchcfm (POT's `ot.emd` on the squared Euclidean cost),
//! reproduced by flowforge's Jonker–Volgenant assignment (`torchcfm.json`).

mod common;

use common::*;
use flowforge::metrics::{linear_sum_assignment, wasserstein2};

#[test]
fn torchcfm_exact_ot_plan_is_reproduced() {
    let reference = reference("torchcfm.json");
    let x0 = rows(&reference["inputs"]["ot_x0"]);
    let x1 = rows(&reference["inputs"]["ot_x1"]);
    let expected = &reference["outputs"]["ot_exact"];
    let n = x0.len();
    assert_eq!(n, 16);
    let cost: Vec<f64> = x0
        .iter()
        .flat_map(|a| x1.iter().map(move |b| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)))
        .collect();
    let assignment = linear_sum_assignment(&cost, n).unwrap();
    // The optimum is unique, so the permutation must equal POT's plan row by row.
    let want: Vec<usize> = floats(&expected["plan_argmax_per_row"]).iter().map(|&j| j as usize).collect();
    assert_eq!(assignment, want);
    let plan = rows(&expected["plan"]);
    for (i, row) in plan.iter().enumerate() {
        for (j, &mass) in row.iter().enumerate() {
            let ours = if assignment[i] == j { 1.0 / n as f64 } else { 0.0 };
            assert_eq!(ours, mass, "plan[{i}][{j}]");
        }
    }
    let total: f64 = assignment.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum::<f64>() / n as f64;
    let want_total = expected["plan_total_cost_sum_pi_M"].as_f64().unwrap();
    assert!((total - want_total).abs() <= 1e-12 * want_total, "Σ π M = {total} vs {want_total}");
    // W2 is the square root of that cost.
    let w2 = wasserstein2(&x0, &x1).unwrap();
    assert!((w2 * w2 - want_total).abs() <= 1e-12 * want_total);
}
