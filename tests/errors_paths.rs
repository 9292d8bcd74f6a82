//! Bad input gets a typed error naming the problem — one test per case.

mod common;

use common::*;
use flowforge::core::tensor::tensor_from_rows;
use flowforge::paths::*;
use flowforge::{Error, Noise, Predicted, Score, Time, Times, DiscreteTimesteps};

#[test]
fn beta_outside_unit_interval() {
    for (start, end, name) in [(0.0, 0.02, "beta_start"), (1e-4, 1.0, "beta_end"), (-0.1, 0.02, "beta_start"), (1e-4, 3.0, "beta_end")] {
        let err = DiscreteScheduleConfig::new().with_beta_start(start).with_beta_end(end).init().unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: n, .. } if n == name), "{err}");
        assert!(err.to_string().contains(name) && err.to_string().contains("(0, 1)"), "{err}");
    }
    assert!(matches!(DiscreteSchedule::from_betas(vec![0.01, 1.5]), Err(Error::InvalidParameter { name: "beta", .. })));
}

#[test]
fn sigma_min_not_below_sigma_max() {
    let err = VeConfig::new().with_sigma_min(5.0).with_sigma_max(5.0).init().unwrap_err();
    assert!(matches!(err, Error::InconsistentParameters { first: "sigma_min", second: "sigma_max", .. }), "{err}");
    let err = EdmConfig::new().with_sigma_min(100.0).init().unwrap_err();
    assert!(matches!(err, Error::InconsistentParameters { first: "sigma_min", second: "sigma_max", .. }), "{err}");
    assert!(err.to_string().contains("sigma_min") && err.to_string().contains("sigma_max"));
}

#[test]
fn zero_timesteps() {
    let err = DiscreteScheduleConfig::new().with_num_train_timesteps(0).init().unwrap_err();
    assert!(matches!(err, Error::InvalidCount { name: "num_train_timesteps", value: 0, .. }), "{err}");
    assert!(matches!(DiscreteTimesteps::new(0), Err(Error::InvalidCount { .. })));
    assert!(matches!(DiscreteSchedule::from_betas(vec![]), Err(Error::InvalidCount { .. })));
}

#[test]
fn rho_not_positive() {
    for rho in [0.0, -7.0] {
        let err = EdmConfig::new().with_rho(rho).init().unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "rho", .. }), "{err}");
    }
}

#[test]
fn nan_parameters() {
    let nan = f64::NAN;
    let errors = [
        CondOtConfig::new().with_sigma_min(nan).init().map(|_| ()).unwrap_err(),
        VpConfig::new().with_beta_min(nan).init().map(|_| ()).unwrap_err(),
        SubVpConfig::new().with_beta_max(nan).init().map(|_| ()).unwrap_err(),
        VeConfig::new().with_sigma_max(nan).init().map(|_| ()).unwrap_err(),
        PolynomialConvexConfig::new().with_n(nan).init().map(|_| ()).unwrap_err(),
        EdmConfig::new().with_sigma_data(nan).init().map(|_| ()).unwrap_err(),
        DiscreteScheduleConfig::new().with_beta_end(nan).init().map(|_| ()).unwrap_err(),
        StochasticInterpolant::brownian_bridge(nan).map(|_| ()).unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, Error::InvalidParameter { value, .. } if value.is_nan()), "{err}");
    }
    // Infinities are rejected the same way.
    assert!(VpConfig::new().with_beta_max(f64::INFINITY).init().is_err());
}

#[test]
fn time_outside_unit_interval() {
    assert!(matches!(Time::new(1.01), Err(Error::TimeOutOfRange { t }) if t == 1.01));
    assert!(matches!(Times::shared(-0.5, 3), Err(Error::TimeOutOfRange { .. })));
    let err = Times::per_sample(vec![0.2, f64::NAN]).unwrap_err();
    assert!(matches!(err, Error::TimeOutOfRange { t } if t.is_nan()));
    assert!(err.to_string().contains("outside [0, 1]"));
}

#[test]
fn x0_x1_shape_mismatch() {
    let dev = device();
    let path = AffinePath::new(CondOt::default());
    let x0 = tensor_from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0]], &dev);
    let x1 = tensor_from_rows(&[vec![1.0, 2.0, 3.0], vec![3.0, 4.0, 5.0]], &dev);
    let t = Times::shared(0.5, 2).unwrap();
    let err = path.sample(x0.clone(), x1.clone(), &t).unwrap_err();
    assert_eq!(
        err,
        Error::ShapeMismatch { what: "x1 vs x0", expected: vec![2, 2], actual: vec![2, 3] }
    );
    let bridge = StochasticInterpolant::brownian_bridge(0.5).unwrap();
    assert!(matches!(bridge.sample(x0.clone(), x0.clone(), x1, &t), Err(Error::ShapeMismatch { what: "noise vs x0", .. })));
    // A batch of times that does not match the tensors.
    let t3 = Times::shared(0.5, 3).unwrap();
    assert!(matches!(path.sample(x0.clone(), x0, &t3), Err(Error::ShapeMismatch { what: "x0 vs times", .. })));
}

#[test]
fn singular_endpoints_are_errors_not_infinities() {
    let dev = device();
    let x = tensor_from_rows(&[vec![1.0, 2.0]], &dev);
    // Score at the data end (σ = 0) of CondOT.
    let path = AffinePath::new(CondOt::default());
    let err = path
        .convert::<Noise, Score, 2>(Predicted::new(x.clone()), x.clone(), &Times::shared(1.0, 1).unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::SingularConversion { t, .. } if t == 1.0), "{err}");
    // VP's σ̇ is infinite at t = 1: sampling the velocity there is an error.
    let vp = AffinePath::new(VpConfig::new().init().unwrap());
    let err = vp.sample(x.clone(), x.clone(), &Times::shared(1.0, 1).unwrap()).unwrap_err();
    assert!(matches!(err, Error::SingularTime { t, .. } if t == 1.0), "{err}");
    // The Brownian-bridge velocity diverges at t = 0.
    let bridge = StochasticInterpolant::brownian_bridge(0.5).unwrap();
    let err = bridge.sample(x.clone(), x.clone(), x, &Times::shared(0.0, 1).unwrap()).unwrap_err();
    assert!(matches!(err, Error::SingularTime { t, .. } if t == 0.0), "{err}");
}

#[test]
fn inverses_outside_the_schedules_range() {
    let ve = VeConfig::new().init().unwrap();
    assert!(matches!(ve.snr_inverse(1e9), Err(Error::OutOfScheduleRange { what: "snr", .. })));
    assert!(matches!(ve.snr_inverse(-1.0), Err(Error::InvalidParameter { name: "snr", .. })));
    let edm = EdmConfig::new().init().unwrap();
    let err = edm.time_at_edm_sigma(flowforge::EdmSigma::new(500.0).unwrap()).unwrap_err();
    assert!(matches!(err, Error::OutOfScheduleRange { what: "edm sigma", .. }), "{err}");
    let poly = PolynomialConvexConfig::new().init().unwrap();
    assert!(poly.kappa_inverse(1.5).is_err());
}

#[test]
fn invalid_configs_read_from_json_fail_at_init() {
    let json = r#"{"schedule":"ve","sigma_min":10.0,"sigma_max":1.0}"#;
    let config: ScheduleConfig = serde_json::from_str(json).unwrap();
    assert!(matches!(config.init(), Err(Error::InconsistentParameters { .. })));
    let json = r#"{"path":"stochastic_interpolant","schedule":{"schedule":"cond_ot","sigma_min":0.0},"noise":{"kind":"brownian_bridge","sigma":-1.0}}"#;
    let config: PathConfig = serde_json::from_str(json).unwrap();
    assert!(matches!(config.init(), Err(Error::InvalidParameter { name: "sigma", .. })));
}
