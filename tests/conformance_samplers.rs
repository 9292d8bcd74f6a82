//! Conformance of flowforge's samplers with k-diffusion (`kdiffusion_samplers.json`) and
//! diffusers (`diffusers_ddpm_f64.json`, `diffusers_ddim_f64.json`), in f64, to 1e-6 (samples)
//! and 1e-10 (scalars).

mod common;

use burn::tensor::{Device, Tensor};
use common::*;
use flowforge::core::tensor::tensor_to_vec;
use flowforge::paths::*;
use flowforge::samplers::oracle::MixtureOracle;
use flowforge::samplers::*;
use flowforge::{Data, DiscreteTimesteps, EdmSigma, Noise, PredictionKind, PredictionType, Predicted, Times, VPrediction};
use serde_json::Value;

const SAMPLE_TOL: f64 = 1e-6;

fn close(what: &str, actual: Tensor<2>, expected: &Value) {
    let expected = flat(expected);
    let actual = tensor_to_vec(actual);
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!((a - e).abs() <= SAMPLE_TOL * e.abs().max(1.0), "{what}[{i}]: {a} vs {e}");
    }
}

fn kdiffusion_setup(dev: &Device) -> (Value, AffinePath<Edm>, MixtureOracle<Edm>) {
    let reference = reference("kdiffusion_samplers.json");
    let inputs = &reference["inputs"];
    let edm = EdmConfig::new()
        .with_sigma_min(inputs["sigma_min"].as_f64().unwrap())
        .with_sigma_max(inputs["sigma_max"].as_f64().unwrap())
        .with_rho(inputs["rho"].as_f64().unwrap())
        .init()
        .unwrap();
    let mixture = &inputs["mixture"];
    let oracle = MixtureOracle::new(
        edm,
        floats(&mixture["weights"]),
        rows(&mixture["means"]),
        floats(&mixture["isotropic_stds"]),
    )
    .unwrap();
    let _ = dev;
    (reference, AffinePath::new(edm), oracle)
}

#[test]
fn kdiffusion_mixture_denoiser_matches() {
    let dev = device_f64();
    let (reference, path, oracle) = kdiffusion_setup(&dev);
    let check = &reference["inputs"]["denoiser_check"];
    let sigmas = floats(&check["sigma"]);
    let x = rows(&check["x"]);
    let expected = rows(&reference["outputs"]["denoiser_check"]["D"]);
    for (i, sigma) in sigmas.iter().enumerate() {
        let t = path.schedule().time_at_edm_sigma(EdmSigma::new(*sigma).unwrap()).unwrap().value();
        let xi = flowforge::core::tensor::tensor_from_rows(&[x[i].clone()], &dev);
        let d = tensor_to_vec(oracle.denoise(xi, &Times::shared(t, 1).unwrap()).unwrap());
        for (a, e) in d.iter().zip(&expected[i]) {
            assert!((a - e).abs() <= 1e-10 * e.abs().max(1.0), "D(x[{i}], σ = {sigma}): {a} vs {e}");
        }
    }
}

/// k-diffusion's Euler / Heun in σ are flowforge's Euler / Heun in the noise-to-signal clock on
/// the EDM schedule, over the uniform t-grid (= Karras sigmas), followed by the final step to
/// σ = 0, which is the denoiser's output.
fn run_kdiffusion<O: OdeSolver + Copy>(solver: O, key: &str) {
    let dev = device_f64();
    let (reference, path, oracle) = kdiffusion_setup(&dev);
    let expected = &reference["outputs"]["samplers"][key];
    assert!(!expected.is_null(), "{key} in the reference");
    let n: usize = key.rsplit("n=").next().unwrap().parse().unwrap();
    let model = PathModel::new(&oracle, &path);
    let grid = TimeGrid::uniform(n - 1).unwrap();
    let x_t = tensor_on(&reference["inputs"]["x_T"], &dev);
    let solution = solve(&model, &NoiseToSignal(solver), x_t, &grid, &mut NoNoise, SolveOptions::default().save_at(SaveAt::Steps)).unwrap();
    let last = grid.end();
    let final_x = model.evaluate(solution.x.clone(), last).unwrap().data().unwrap();
    close(&format!("{key}.final"), final_x, &expected["final"]);
    assert_eq!(
        model.evaluations() as u64,
        expected["model_evaluations"].as_u64().unwrap(),
        "{key}: model evaluations"
    );
    if let Some(trajectory) = expected["trajectory"].as_array() {
        assert_eq!(trajectory.len(), n);
        for (i, record) in trajectory.iter().enumerate() {
            let (t, x) = &solution.saved[i];
            let sigma = path.schedule().sigma(*t);
            let want = record["sigma"].as_f64().unwrap();
            assert!((sigma - want).abs() <= 1e-12 * want, "{key} σ[{i}]: {sigma} vs {want}");
            close(&format!("{key}.trajectory[{i}].x"), x.clone(), &record["x"]);
            let denoised = oracle.denoise(x.clone(), &Times::shared(*t, x.dims()[0]).unwrap()).unwrap();
            close(&format!("{key}.trajectory[{i}].denoised"), denoised, &record["denoised"]);
        }
    }
}

#[test]
fn kdiffusion_sample_euler_n10_and_n40() {
    run_kdiffusion(Euler, "sample_euler|n=10");
    run_kdiffusion(Euler, "sample_euler|n=40");
}

#[test]
fn kdiffusion_sample_heun_n10_and_n40() {
    run_kdiffusion(Heun, "sample_heun|n=10");
    run_kdiffusion(Heun, "sample_heun|n=40");
}

/// A model that returns a stored output, whatever its input.
fn stored<P: PredictionType>(output: Tensor<2>) -> impl Fn(Tensor<2>, &Times) -> Predicted<P, 2> {
    move |_x, _t| Predicted::new(output.clone())
}

fn kind_of(prediction_type: &str) -> PredictionKind {
    match prediction_type {
        "epsilon" => PredictionKind::Noise,
        "sample" => PredictionKind::Data,
        "v_prediction" => PredictionKind::VPrediction,
        other => panic!("unknown prediction type {other}"),
    }
}

/// Runs `sampler.step` with a model returning `output` (of the given kind) and replayed noise.
#[allow(clippy::too_many_arguments)]
fn step_with<Smp>(sampler: &Smp, kind: PredictionKind, path: &AffinePath<DiscreteSchedule>, output: Tensor<2>, x: Tensor<2>, t_cur: f64, t_next: f64, noise: Vec<f64>) -> Tensor<2>
where
    Smp: for<'a> Sampler<PathModel<'a, Box<dyn Fn(Tensor<2>, &Times) -> Predicted<Noise, 2>>, DiscreteSchedule>, 2>
        + for<'a> Sampler<PathModel<'a, Box<dyn Fn(Tensor<2>, &Times) -> Predicted<Data, 2>>, DiscreteSchedule>, 2>
        + for<'a> Sampler<PathModel<'a, Box<dyn Fn(Tensor<2>, &Times) -> Predicted<VPrediction, 2>>, DiscreteSchedule>, 2>,
{
    let at = StepIndex { step: 0, steps: 1 };
    let mut replay = ReplayNoise::new([noise]);
    macro_rules! go {
        ($p:ty) => {{
            let model: Box<dyn Fn(Tensor<2>, &Times) -> Predicted<$p, 2>> = Box::new(stored::<$p>(output));
            let pm = PathModel::new(&model, path);
            let mut state = Default::default();
            Sampler::<_, 2>::step(sampler, &pm, x, t_cur, t_next, at, &mut state, &mut replay).unwrap()
        }};
    }
    match kind {
        PredictionKind::Noise => go!(Noise),
        PredictionKind::Data => go!(Data),
        PredictionKind::VPrediction => go!(VPrediction),
        _ => unreachable!(),
    }
}

#[test]
fn diffusers_ddpm_steps_match() {
    let dev = device_f64();
    let reference = reference("diffusers_ddpm_f64.json");
    let mut checked = 0;
    for kind in ["linear", "scaled_linear", "squaredcos_cap_v2"] {
        let schedule = diffusers_schedule(kind);
        let axis = schedule.timesteps();
        let path = AffinePath::new(schedule);
        for (key, expected) in reference["outputs"][kind]["step"].as_object().unwrap() {
            let level = expected["t"].as_u64().unwrap() as usize;
            let inputs = &reference["inputs"]["step"][level.to_string().as_str()];
            let prediction = kind_of(expected["prediction_type"].as_str().unwrap());
            let variance = match expected["variance_type"].as_str().unwrap() {
                "fixed_small" => DdpmVariance::FixedSmall,
                "fixed_large" => DdpmVariance::FixedLarge,
                other => panic!("{other}"),
            };
            let sampler = Ddpm::new(variance, SampleClipping::None).unwrap();
            let t_cur = axis.to_time(level).unwrap().value();
            let t_next = if level == 0 { 1.0 } else { axis.to_time(level - 1).unwrap().value() };
            let output = tensor_on(&inputs["model_output"], &dev);
            let x = tensor_on(&inputs["sample"], &dev);
            let times = Times::shared(t_cur, 4).unwrap();

            let x0_hat = path.convert_kind(prediction, PredictionKind::Data, output.clone(), x.clone(), &times).unwrap();
            close(&format!("{kind}/{key}.pred_original_sample"), x0_hat.clone(), &expected["pred_original_sample"]);
            let posterior = sampler.posterior(&path, x0_hat, x.clone(), t_cur, t_next).unwrap();
            let want = expected["variance"].as_f64().unwrap();
            assert!((posterior.variance - want).abs() <= 1e-10 * want.abs().max(1e-20), "{kind}/{key}.variance: {} vs {want}", posterior.variance);

            let prev = step_with(&sampler, prediction, &path, output, x, t_cur, t_next, flat(&inputs["variance_noise"]));
            close(&format!("{kind}/{key}.prev_sample"), prev, &expected["prev_sample"]);
            assert_eq!(expected["noise_used"].as_bool().unwrap(), level > 0);
            checked += 1;
        }
    }
    assert_eq!(checked, 72, "3 schedules × 3 prediction types × 2 variances × 4 timesteps");
}

#[test]
fn diffusers_ddim_grids_and_steps_match() {
    let dev = device_f64();
    let reference = reference("diffusers_ddim_f64.json");
    let inputs = &reference["inputs"];
    let n = inputs["num_inference_steps"].as_u64().unwrap() as usize;
    let axis = DiscreteTimesteps::new(inputs["num_train_timesteps"].as_u64().unwrap() as usize).unwrap();
    let mut checked = 0;
    for (config_key, out) in reference["outputs"].as_object().unwrap() {
        let config = &out["config"];
        assert_eq!(config["timestep_spacing"], "leading");
        let to_clean = config["set_alpha_to_one"].as_bool().unwrap();
        let levels = ddim_levels(DdimSpacing::Leading { steps_offset: 0 }, n, axis).unwrap();
        let expected_levels: Vec<usize> = floats(&out["timesteps"]).iter().map(|&k| k as usize).collect();
        assert_eq!(levels, expected_levels, "{config_key}: timesteps");
        let schedule = diffusers_schedule(config["beta_schedule"].as_str().unwrap());
        let final_alpha_bar = if to_clean { 1.0 } else { schedule.alphas_cumprod()[0] };
        assert_eq!(final_alpha_bar, out["final_alpha_cumprod"].as_f64().unwrap());
        let grid = TimeGrid::ddim(DdimSpacing::Leading { steps_offset: 0 }, n, axis, to_clean).unwrap();
        let path = AffinePath::new(schedule);
        // The grid's last point carries the final ᾱ.
        let end_alpha_bar = path.schedule().alpha(grid.end()).powi(2);
        assert!((end_alpha_bar - final_alpha_bar).abs() < 1e-15, "{config_key}: final ᾱ {end_alpha_bar}");

        for (key, expected) in out["step"].as_object().unwrap() {
            let position = expected["position"].as_u64().unwrap() as usize;
            let step_inputs = &inputs["step_inputs"][expected["input_index"].as_u64().unwrap() as usize];
            let eta = expected["eta"].as_f64().unwrap();
            let prediction = kind_of(expected["prediction_type"].as_str().unwrap());
            // The step goes to the next entry of the grid; for the last entry of a grid that
            // ends at level 0 (set_alpha_to_one = False) diffusers steps to ᾱ_0 again, i.e. to
            // the same time.
            let t_cur = grid.times()[position];
            let t_next = grid.times().get(position + 1).copied().unwrap_or(t_cur);
            assert_eq!(axis.to_time(expected["t"].as_u64().unwrap() as usize).unwrap().value(), t_cur);
            let sampler = Ddim::new(eta).unwrap();
            let std = sampler.noise_std(&path, t_cur, t_next);
            let want_var = expected["variance"].as_f64().unwrap();
            assert!((std * std - eta * eta * want_var).abs() <= 1e-10 * want_var.max(1e-12), "{config_key}/{key}: variance");

            let output = tensor_on(&step_inputs["model_output"], &dev);
            let x = tensor_on(&step_inputs["sample"], &dev);
            let times = Times::shared(t_cur, 4).unwrap();
            let x0_hat = path.convert_kind(prediction, PredictionKind::Data, output.clone(), x.clone(), &times).unwrap();
            close(&format!("{config_key}/{key}.pred_original_sample"), x0_hat, &expected["pred_original_sample"]);
            let prev = step_with(&sampler, prediction, &path, output, x, t_cur, t_next, flat(&step_inputs["variance_noise"]));
            close(&format!("{config_key}/{key}.prev_sample"), prev, &expected["prev_sample"]);
            checked += 1;
        }
    }
    assert_eq!(checked, 48, "4 configs × 12 steps");
}
