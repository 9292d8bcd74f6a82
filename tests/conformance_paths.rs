//! Conformance of flowforge's paths with the Python libraries, number for number:
//! facebookresearch/flow_matching (`flow_matching_paths.json`), torchcfm (`torchcfm.json`),
//! diffusers' DDPM tables (`diffusers_ddpm_f64.json`) and k-diffusion's Karras sigmas
//! (`kdiffusion_samplers.json`).
//!
//! Scalar schedule functions are compared in f64 to 1e-12 relative; tensor results (computed in
//! f32 on the default device) to 1e-5 relative.

mod common;

use common::*;
use flowforge::core::tensor::tensor_to_vec;
use flowforge::paths::*;
use flowforge::{Data, Noise, Predicted, Times, Velocity};
use serde_json::Value;

const SCALAR_REL: f64 = 1e-12;
const TENSOR_REL: f64 = 1e-5;
// Absolute floor for tensor entries that are (close to) zero, where a relative bound is
// meaningless; f32 carries ~7 significant digits of operands of order one.
const TENSOR_ABS: f64 = 1e-6;

fn flow_matching_schedules() -> Vec<(&'static str, AnySchedule)> {
    vec![
        ("CondOTScheduler", ScheduleConfig::CondOt(CondOtConfig::new()).init().unwrap()),
        ("CosineScheduler", ScheduleConfig::Cosine(CosineConfig::new()).init().unwrap()),
        (
            "VPScheduler(beta_min=0.1,beta_max=20.0)",
            ScheduleConfig::Vp(VpConfig::new().with_beta_min(0.1).with_beta_max(20.0)).init().unwrap(),
        ),
        ("LinearVPScheduler", ScheduleConfig::LinearVp(LinearVpConfig::new()).init().unwrap()),
        (
            "PolynomialConvexScheduler(n=2)",
            ScheduleConfig::PolynomialConvex(PolynomialConvexConfig::new().with_n(2.0)).init().unwrap(),
        ),
    ]
}

#[test]
fn flow_matching_scheduler_values_match_to_1e_12() {
    let reference = reference("flow_matching_paths.json");
    let ts = floats(&reference["inputs"]["t"]);
    let outputs = &reference["outputs"];
    assert_eq!(outputs.as_object().unwrap().len(), 5, "every scheduler in the file is covered");
    for (name, schedule) in flow_matching_schedules() {
        let expected = &outputs[name]["scheduler"];
        assert!(!expected.is_null(), "{name} missing from the reference");
        let columns: [(&str, &dyn Fn(f64) -> f64); 4] = [
            ("alpha_t", &|t| schedule.alpha(t)),
            ("sigma_t", &|t| schedule.sigma(t)),
            ("d_alpha_t", &|t| schedule.d_alpha(t)),
            ("d_sigma_t", &|t| schedule.d_sigma(t)),
        ];
        for (key, f) in columns {
            let actual: Vec<f64> = ts.iter().map(|&t| f(t)).collect();
            assert_close(&format!("{name}.{key}"), &actual, &floats(&expected[key]), SCALAR_REL, 0.0);
        }
    }
}

#[test]
fn flow_matching_snr_and_kappa_inverses_match_to_1e_12() {
    let reference = reference("flow_matching_paths.json");
    let snrs = floats(&reference["inputs"]["snr"]);
    for (name, schedule) in flow_matching_schedules() {
        let out = &reference["outputs"][name];
        let actual: Vec<f64> = snrs.iter().map(|&r| schedule.snr_inverse(r).unwrap()).collect();
        assert_close(&format!("{name}.snr_inverse"), &actual, &floats(&out["snr_inverse"]), SCALAR_REL, 0.0);
    }
    let kappa_schedules: [(&str, &dyn ConvexSchedule); 2] = [
        ("CondOTScheduler", &CondOtConfig::new().init().unwrap()),
        ("PolynomialConvexScheduler(n=2)", &PolynomialConvexConfig::new().with_n(2.0).init().unwrap()),
    ];
    for (name, schedule) in kappa_schedules {
        let block = &reference["outputs"][name]["kappa_inverse"];
        let actual: Vec<f64> = floats(&block["kappa"])
            .iter()
            .map(|&k| schedule.kappa_inverse(k).unwrap())
            .collect();
        assert_close(&format!("{name}.kappa_inverse"), &actual, &floats(&block["t"]), SCALAR_REL, 0.0);
    }
}

#[test]
fn flow_matching_path_samples_match_to_1e_5() {
    let reference = reference("flow_matching_paths.json");
    let inputs = &reference["inputs"];
    let t = Times::per_sample(floats(&inputs["t"])).unwrap();
    for (name, schedule) in flow_matching_schedules() {
        let path = AffinePath::new(schedule);
        let sample = path.sample(tensor(&inputs["x_0"]), tensor(&inputs["x_1"]), &t).unwrap();
        let expected = &reference["outputs"][name]["sample"];
        assert_tensor_close(&format!("{name}.x_t"), sample.x_t, &expected["x_t"], TENSOR_REL, TENSOR_ABS);
        assert_tensor_close(&format!("{name}.dx_t"), sample.dx_t, &expected["dx_t"], TENSOR_REL, TENSOR_ABS);
    }
}

#[test]
fn flow_matching_conversions_match_to_1e_5() {
    let reference = reference("flow_matching_paths.json");
    let conv = &reference["inputs"]["conversion_inputs"];
    let t = Times::per_sample(floats(&reference["inputs"]["t"])).unwrap();
    let x_t = || tensor(&conv["x_t"]);
    for (name, schedule) in flow_matching_schedules() {
        let path = AffinePath::new(schedule);
        let expected = &reference["outputs"][name]["conversions"];
        let check = |key: &str, actual: burn::tensor::Tensor<2>| {
            assert_tensor_close(&format!("{name}.{key}"), actual, &expected[key], TENSOR_REL, TENSOR_ABS);
        };
        let target = || Predicted::<Data, 2>::new(tensor(&conv["x_1"]));
        let epsilon = || Predicted::<Noise, 2>::new(tensor(&conv["epsilon"]));
        let vel = || Predicted::<Velocity, 2>::new(tensor(&conv["velocity"]));
        check("target_to_velocity", path.convert::<_, Velocity, 2>(target(), x_t(), &t).unwrap().into_tensor());
        check("epsilon_to_velocity", path.convert::<_, Velocity, 2>(epsilon(), x_t(), &t).unwrap().into_tensor());
        check("velocity_to_target", path.convert::<_, Data, 2>(vel(), x_t(), &t).unwrap().into_tensor());
        check("epsilon_to_target", path.convert::<_, Data, 2>(epsilon(), x_t(), &t).unwrap().into_tensor());
        check("velocity_to_epsilon", path.convert::<_, Noise, 2>(vel(), x_t(), &t).unwrap().into_tensor());
        check("target_to_epsilon", path.convert::<_, Noise, 2>(target(), x_t(), &t).unwrap().into_tensor());
    }
}

#[test]
fn torchcfm_constant_sigma_path_matches_to_1e_5() {
    let reference = reference("torchcfm.json");
    let inputs = &reference["inputs"];
    let out = &reference["outputs"]["matchers"]["ConditionalFlowMatcher(sigma=0.1)"];
    let sigma = out["sigma"].as_f64().unwrap();
    let path = StochasticInterpolant::constant_noise(sigma).unwrap();
    let t = Times::per_sample(floats(&inputs["t"])).unwrap();

    let mu = path.mean(tensor(&inputs["x0"]), tensor(&inputs["x1"]), &t).unwrap();
    assert_tensor_close("compute_mu_t", mu, &out["compute_mu_t"], TENSOR_REL, TENSOR_ABS);

    let gamma = path.noise_scale().gamma(0.37);
    assert_close("compute_sigma_t", &[gamma], &[out["compute_sigma_t"].as_f64().unwrap()], SCALAR_REL, 0.0);

    let sample = path
        .sample(tensor(&inputs["x0"]), tensor(&inputs["x1"]), tensor(&inputs["epsilon"]), &t)
        .unwrap();
    assert_tensor_close("sample_xt", sample.x_t, &out["sample_xt"], TENSOR_REL, TENSOR_ABS);
    assert_tensor_close("compute_conditional_flow", sample.dx_t, &out["compute_conditional_flow"], TENSOR_REL, TENSOR_ABS);
}

#[test]
fn diffusers_ddpm_tables_match_to_1e_12() {
    let reference = reference("diffusers_ddpm_f64.json");
    let inputs = &reference["inputs"];
    assert_eq!(inputs["num_train_timesteps"].as_u64(), Some(1000));
    let indices: Vec<usize> = floats(&inputs["table_indices"]).iter().map(|&k| k as usize).collect();
    let kinds: Vec<String> = inputs["beta_schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds.len(), 3);
    for kind in &kinds {
        let schedule = diffusers_schedule(kind);
        let expected = &reference["outputs"][kind.as_str()];
        let betas: Vec<f64> = indices.iter().map(|&k| schedule.betas()[k]).collect();
        let bars: Vec<f64> = indices.iter().map(|&k| schedule.alphas_cumprod()[k]).collect();
        assert_close(&format!("{kind}.betas"), &betas, &floats(&expected["betas"]), SCALAR_REL, 0.0);
        assert_close(&format!("{kind}.alphas_cumprod"), &bars, &floats(&expected["alphas_cumprod"]), SCALAR_REL, 0.0);
    }
}

#[test]
fn diffusers_add_noise_matches_to_1e_5() {
    let reference = reference("diffusers_ddpm_f64.json");
    let add = &reference["inputs"]["add_noise"];
    let steps: Vec<usize> = floats(&add["t"]).iter().map(|&k| k as usize).collect();
    for kind in ["linear", "scaled_linear", "squaredcos_cap_v2"] {
        let schedule = diffusers_schedule(kind);
        let noisy = schedule.add_noise(tensor(&add["x0"]), tensor(&add["eps"]), &steps).unwrap();
        assert_tensor_close(&format!("{kind}.add_noise"), noisy, &reference["outputs"][kind]["add_noise"], TENSOR_REL, TENSOR_ABS);
    }
}

#[test]
fn discrete_schedule_as_a_path_equals_add_noise_at_grid_times() {
    // The continuous reading of the DDPM table (t_k = 1 − (k+1)/T) gives the same x_t as
    // diffusers' add_noise at integer levels: x₀ (flowforge's noise) = eps, x₁ = clean.
    let reference = reference("diffusers_ddpm_f64.json");
    let add = &reference["inputs"]["add_noise"];
    let schedule = diffusers_schedule("linear");
    let axis = schedule.timesteps();
    let times: Vec<f64> = floats(&add["t"]).iter().map(|&k| axis.to_time(k as usize).unwrap().value()).collect();
    let path = AffinePath::new(schedule);
    let x_t = path
        .sample(tensor(&add["eps"]), tensor(&add["x0"]), &Times::per_sample(times).unwrap())
        .unwrap()
        .x_t;
    assert_tensor_close("path x_t at DDPM levels", x_t, &reference["outputs"]["linear"]["add_noise"], TENSOR_REL, TENSOR_ABS);
}

#[test]
fn karras_sigmas_are_the_edm_schedule_on_a_uniform_grid() {
    let reference = reference("kdiffusion_samplers.json");
    let edm = EdmConfig::new().init().unwrap();
    let karras = &reference["outputs"]["sigmas_karras"];
    let mut checked = 0;
    for (key, value) in karras.as_object().expect("sigmas_karras is an object") {
        let expected = floats(value);
        // k-diffusion appends a final 0 after the n noise levels.
        let n = expected.len() - 1;
        assert_eq!(expected[n], 0.0, "{key}: appended zero");
        let actual: Vec<f64> = (0..n).map(|i| edm.sigma(i as f64 / (n - 1) as f64)).collect();
        assert_close(&format!("karras_sigmas[{key}]"), &actual, &expected[..n], SCALAR_REL, 0.0);
        checked += 1;
    }
    assert!(checked >= 2, "both grids (n = 10, 40) are present");
}

#[test]
fn reference_files_state_the_conventions_we_rely_on() {
    // If a regenerated reference flips a convention, fail loudly rather than compare the
    // wrong quantities.
    let fm = reference("flow_matching_paths.json");
    assert!(fm["notes"].as_str().unwrap().contains("t=0 is the SOURCE/noise"));
    let cfm = reference("torchcfm.json");
    assert!(cfm["notes"].as_str().unwrap().contains("x0 = source (noise) at t=0"));
    let _: &Value = &cfm["inputs"]["x0"];
    let x = tensor_to_vec(tensor(&fm["inputs"]["x_0"]));
    assert_eq!(x.len(), 18);
}
