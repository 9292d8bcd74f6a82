//! Conformance of the objectives with torch: MeanFlow's JVP and target
//! (`meanflow_jvp.json`, `torch.func.jvp`) exactly by tangent propagation (1e-5 in f32) and by
//! finite differences (1e-3); the VAE terms (`vae_gaussian.json`, `torch.distributions`).

mod common;

use burn::tensor::Tensor;
use common::*;
use flowforge::core::jvp::Dual;
use flowforge::core::tensor::{tensor_from_rows, tensor_to_vec};
use flowforge::losses::elbo::{gaussian_kl, gaussian_log_likelihood, gaussian_log_likelihood_scalar};
use flowforge::losses::meanflow::*;
use flowforge::{Condition, Times};

fn assert_close_f32(what: &str, actual: Tensor<2>, expected: &[f64], tol: f64) {
    let actual = tensor_to_vec(actual);
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= tol * e.abs().max(1.0), "{what}[{i}]: {a} vs {e}");
    }
}

/// The reference function `u(z, r, t) = tanh(z Aᵀ)(t − r) + sin(3t) z + r` (paper convention),
/// written as a flowforge average velocity `ū(x, a, b) = −u(x, 1 − b, 1 − a)` with dual ops.
fn reference_model(a_matrix: Tensor<2>) -> DualFn<impl Fn(Dual<2>, Dual<2>, Dual<2>) -> Dual<2>> {
    DualFn(move |x: Dual<2>, a: Dual<2>, b: Dual<2>| {
        let t = a.mul_scalar(-1.0).add_scalar(1.0);
        let r = b.mul_scalar(-1.0).add_scalar(1.0);
        let gated = x.clone().matmul_constant(a_matrix.clone().transpose()).tanh().mul(t.clone().sub(r.clone()));
        let oscillation = t.mul_scalar(3.0).sin().mul(x);
        gated.add(oscillation).add(r).mul_scalar(-1.0)
    })
}

#[test]
fn meanflow_jvp_and_target_match_torch_func_jvp() {
    let reference = reference("meanflow_jvp.json");
    let inputs = &reference["inputs"];
    let outputs = &reference["outputs"];
    let dev = device();
    let model = reference_model(tensor(&inputs["A"]));
    let (r, t) = (floats(&inputs["r"]), floats(&inputs["t"]));
    let (a, b): (Vec<f64>, Vec<f64>) = r.iter().zip(&t).map(|(&r, &t)| PaperCoordinates::times_from_paper(r, t).unwrap()).unzip();
    let (a, b) = (Times::per_sample(a).unwrap(), Times::per_sample(b).unwrap());
    let z = tensor(&inputs["z"]);
    let v = PaperCoordinates::velocity(tensor(&inputs["v"]));
    let target = meanflow_target(&model, z.clone(), v.clone(), &a, &b, &Condition::none()).unwrap();
    assert_close_f32("u", PaperCoordinates::velocity(target.prediction), &flat(&outputs["u"]), 1e-5);
    assert_close_f32("du/dt", target.jvp, &flat(&outputs["dudt"]), 1e-5);
    assert_close_f32("u_tgt", PaperCoordinates::velocity(target.target), &flat(&outputs["u_tgt"]), 1e-5);

    // Sample 0 has r = t: the target is v itself.
    let tgt0 = &tensor_to_vec(PaperCoordinates::velocity(meanflow_target(&model, z.clone(), v.clone(), &a, &b, &Condition::none()).unwrap().target))[..2];
    assert_close_f32("u_tgt[0] = v[0]", tensor_from_rows(&[tgt0.to_vec()], &dev), &flat(&inputs["v"])[..2], 1e-6);

    // Any model, by central finite differences.
    let fd = FiniteDifference::new(&model, 1e-3).unwrap();
    let target = meanflow_target(&fd, z, v, &a, &b, &Condition::none()).unwrap();
    assert_close_f32("du/dt (finite differences)", target.jvp, &flat(&outputs["dudt"]), 1e-3);
    assert_close_f32("u_tgt (finite differences)", PaperCoordinates::velocity(target.target), &flat(&outputs["u_tgt"]), 1e-3);
}

#[test]
fn meanflow_one_step_sampling_maps_the_reversed_convention() {
    // With the exact average velocity of a known flow, one MeanFlow step lands exactly: for the
    // flow x_b = x_a + (b − a) c (constant velocity c), ū = c, so any grid gives x₀ + c.
    let dev = device();
    let c = tensor_from_rows(&[vec![1.0, -2.0]], &dev);
    let model = DualFn(move |x: Dual<2>, _a: Dual<2>, _b: Dual<2>| Dual::constant(c.clone().expand(x.primal.dims())));
    let x0 = tensor_from_rows(&[vec![0.5, 0.5], vec![-1.0, 2.0]], &dev);
    for grid in [vec![0.0, 1.0], vec![0.0, 0.3, 1.0]] {
        let x1 = meanflow_sample(&model, x0.clone(), &grid, &Condition::none()).unwrap();
        assert_close_f32("one-step sample", x1, &[1.5, -1.5, 0.0, 0.0], 1e-6);
    }
    assert!(meanflow_sample(&model, x0.clone(), &[0.5, 0.2], &Condition::none()).is_err());
    // A start time after the end time is a typed error.
    let a = Times::shared(0.8, 2).unwrap();
    let b = Times::shared(0.2, 2).unwrap();
    assert!(matches!(
        meanflow_target(&model, x0.clone(), x0, &a, &b, &Condition::none()),
        Err(flowforge::Error::InconsistentParameters { .. })
    ));
}

#[test]
fn vae_terms_match_torch_distributions() {
    let reference = reference("vae_gaussian.json");
    let (kl_in, ll_in) = (&reference["inputs"]["kl"], &reference["inputs"]["loglik"]);
    let out = &reference["outputs"];
    let kl = gaussian_kl(tensor(&kl_in["mu"]), tensor(&kl_in["logvar"])).unwrap();
    assert_close_f32("kl per element", kl.clone(), &flat(&out["kl_per_element"]), 1e-5);
    let kl_sum: Tensor<2> = kl.sum_dim(1);
    assert_close_f32("kl summed", kl_sum, &floats(&out["kl_sum_over_dims"]), 1e-5);
    let ll = gaussian_log_likelihood(tensor(&ll_in["x"]), tensor(&ll_in["mean"]), tensor(&ll_in["sigma"])).unwrap();
    assert_close_f32("log_prob per element", ll.clone(), &flat(&out["log_prob_per_element"]), 1e-5);
    assert_close_f32("log_prob summed", ll.sum_dim(1), &floats(&out["log_prob_sum_over_dims"]), 1e-5);
    let sigma = ll_in["sigma_scalar"].as_f64().unwrap();
    let ll = gaussian_log_likelihood_scalar(tensor(&ll_in["x"]), tensor(&ll_in["mean"]), sigma).unwrap();
    assert_close_f32("log_prob scalar σ", ll.clone(), &flat(&out["log_prob_scalar_sigma_per_element"]), 1e-5);
    assert_close_f32("log_prob scalar σ summed", ll.sum_dim(1), &floats(&out["log_prob_scalar_sigma_sum_over_dims"]), 1e-5);
}
