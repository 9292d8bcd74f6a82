//! Samplers: bad input gets a typed error naming the problem.

mod common;

use burn::tensor::Tensor;
use common::*;
use flowforge::core::tensor::tensor_from_rows;
use flowforge::paths::*;
use flowforge::samplers::*;
use flowforge::prelude::velocity;
use flowforge::{Error, Times, model_fn};

fn x() -> Tensor<2> {
    tensor_from_rows(&[vec![0.5, -0.5], vec![1.0, 2.0]], &device())
}

#[test]
fn non_monotone_or_out_of_range_grids() {
    assert!(matches!(TimeGrid::new(vec![0.0, 0.3, 0.2, 1.0]), Err(Error::InvalidGrid { index: 2, .. })));
    assert!(matches!(TimeGrid::new(vec![0.0, 0.5, 0.5]), Err(Error::InvalidGrid { index: 2, .. })));
    assert!(matches!(TimeGrid::new(vec![-0.1, 1.0]), Err(Error::InvalidGrid { index: 0, .. })));
    assert!(matches!(TimeGrid::new(vec![0.0, f64::NAN]), Err(Error::InvalidGrid { .. })));
    let err = TimeGrid::new(vec![0.0, 0.3, 0.2]).unwrap_err();
    assert!(err.to_string().contains("monotone"), "{err}");
    // Grids in a config file are validated on load.
    assert!(serde_json::from_str::<TimeGrid>("[0.0, 0.7, 0.6]").is_err());
    assert!(serde_json::from_str::<TimeGrid>("[0.0, 0.5, 1.0]").is_ok());
}

#[test]
fn eta_outside_unit_interval() {
    for eta in [-0.1, 1.5, f64::NAN] {
        assert!(matches!(Ddim::new(eta), Err(Error::InvalidParameter { name: "eta", .. })), "eta = {eta}");
    }
    assert!(Ddim::new(0.0).is_ok() && Ddim::new(1.0).is_ok());
}

#[test]
fn model_output_of_the_wrong_shape() {
    let path = AffinePath::new(CondOt::default());
    let wrong = model_fn(|x: Tensor<2>, _t: &Times| velocity(Tensor::cat(vec![x.clone(), x], 1)));
    let model = PathModel::new(&wrong, &path);
    let err = solve(&model, &Euler, x(), &TimeGrid::uniform(4).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap_err();
    assert_eq!(err, Error::ShapeMismatch { what: "model output vs x_t", expected: vec![2, 2], actual: vec![2, 4] });
}

#[test]
fn nan_from_the_model_names_the_step_and_time() {
    let path = AffinePath::new(CondOt::default());
    // A field that blows up after t = 0.5.
    let bad = model_fn(|x: Tensor<2>, t: &Times| velocity(if t.get(0) > 0.5 { x.div_scalar(0.0).mul_scalar(0.0) } else { x }));
    let grid = TimeGrid::uniform(8).unwrap();
    // Checking the model's output: the first evaluation after t = 0.5 is step 5 at t = 0.625.
    let model = PathModel::new(&bad, &path).with_finite_check(true);
    let err = solve(&model, &Euler, x(), &grid, &mut NoNoise, SolveOptions::default()).unwrap_err();
    assert_eq!(err, Error::NonFiniteAt { what: "model output", step: 5, t: 0.625 });
    // Checking the state instead: the state after step 5 (at t = 0.75) is the first non-finite one.
    let model = PathModel::new(&bad, &path);
    let err = solve(&model, &Euler, x(), &grid, &mut NoNoise, SolveOptions::default().check_finite(true)).unwrap_err();
    assert_eq!(err, Error::NonFiniteAt { what: "state", step: 5, t: 0.75 });
    assert!(err.to_string().contains("step 5") && err.to_string().contains("0.75"));
    // Without the opt-in checks the NaN propagates silently, as in the peers.
    let model = PathModel::new(&bad, &path);
    assert!(solve(&model, &Euler, x(), &grid, &mut NoNoise, SolveOptions::default()).is_ok());
}

#[test]
fn stochastic_samplers_need_a_noise_source() {
    let schedule = VpConfig::new().init().unwrap();
    let path = AffinePath::new(schedule);
    let oracle = flowforge::samplers::oracle::GaussianOracle::new(schedule, vec![0.0, 0.0], 1.0).unwrap();
    let model = PathModel::new(&oracle, &path);
    let err = solve(&model, &Ddpm::default(), x(), &TimeGrid::uniform(4).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap_err();
    assert!(matches!(err, Error::MissingInput { .. }), "{err}");
}

#[test]
fn save_at_times_off_the_grid() {
    let path = AffinePath::new(CondOt::default());
    let field = model_fn(|x: Tensor<2>, _t: &Times| velocity(x));
    let model = PathModel::new(&field, &path);
    let options = SolveOptions::default().save_at(SaveAt::Times(vec![0.3]));
    let err = solve(&model, &Euler, x(), &TimeGrid::uniform(4).unwrap(), &mut NoNoise, options).unwrap_err();
    assert!(matches!(err, Error::InvalidGrid { value, .. } if value == 0.3), "{err}");
}

#[test]
fn invalid_sampler_parameters() {
    assert!(matches!(EdmStochastic::new(-1.0, 0.0, 1.0, 1.0), Err(Error::InvalidParameter { name: "s_churn", .. })));
    assert!(matches!(EdmStochastic::new(1.0, 2.0, 1.0, 1.0), Err(Error::InconsistentParameters { .. })));
    assert!(matches!(PidController::new(0.0, 1e-6), Err(Error::InvalidParameter { name: "rtol", .. })));
    assert!(matches!(Langevin::new(-0.16, 1), Err(Error::InvalidParameter { name: "snr", .. })));
    assert!(matches!(EulerMaruyama::new(Diffusion::Constant { g: f64::NAN }), Err(Error::InvalidParameter { .. })));
    assert!(matches!(SampleClipping::Dynamic { ratio: 1.5, max_value: 1.0 }.validate(), Err(Error::InvalidParameter { name: "ratio", .. })));
    assert!(matches!(TimeGrid::karras(10, 7.0, &CondOt::default()), Err(Error::InvalidParameter { name: "sigma_max", .. })));
}
