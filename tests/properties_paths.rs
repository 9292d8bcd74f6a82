//! Property tests for every path: endpoints, velocity = time derivative, conversions.
//!
//! Each schedule is listed with its endpoint coefficients written out analytically (not read
//! from the schedule), so a wrong schedule fails here.

mod common;

use burn::tensor::Tensor;
use common::*;
use flowforge::core::tensor::{tensor_from_rows, tensor_to_vec};
use flowforge::paths::*;
use flowforge::{PredictionKind, Times};
use proptest::prelude::*;

/// A schedule with its analytic endpoint coefficients `(α₀, σ₀, α₁, σ₁)`.
struct Case {
    name: &'static str,
    schedule: AnySchedule,
    endpoints: (f64, f64, f64, f64),
    /// Piecewise-linear ᾱ: derivative checks must not straddle a knot.
    knots: Option<usize>,
}

fn ddpm_alpha_bar_last(betas: impl Iterator<Item = f64>) -> f64 {
    betas.fold(1.0, |acc, b| acc * (1.0 - b))
}

fn cases() -> Vec<Case> {
    let vp_b0: f64 = 0.5 * 19.9 + 0.1; // B(0) = ½(β_max − β_min) + β_min
    let linear_betas = (0..1000).map(|i| 0.0001 + (0.02 - 0.0001) * i as f64 / 999.0);
    let ddpm_bar = ddpm_alpha_bar_last(linear_betas);
    let cos_bar = {
        let f = |x: f64| ((x + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
        // Π (ᾱ((k+1)/T)/ᾱ(k/T)) telescopes, except where β hits its 0.999 cap (the last level).
        ddpm_alpha_bar_last((0..1000).map(|i| {
            (1.0 - f((i + 1) as f64 / 1000.0) / f(i as f64 / 1000.0)).min(0.999)
        }))
    };
    let c = |s: ScheduleConfig| s.init().unwrap();
    vec![
        Case { name: "condot", schedule: c(ScheduleConfig::CondOt(CondOtConfig::new())), endpoints: (0.0, 1.0, 1.0, 0.0), knots: None },
        Case {
            name: "condot σ_min = 0.1",
            schedule: c(ScheduleConfig::CondOt(CondOtConfig::new().with_sigma_min(0.1))),
            endpoints: (0.0, 1.0, 1.0, 0.1),
            knots: None,
        },
        Case { name: "cosine", schedule: c(ScheduleConfig::Cosine(CosineConfig::new())), endpoints: (0.0, 1.0, 1.0, 0.0), knots: None },
        Case {
            name: "vp",
            schedule: c(ScheduleConfig::Vp(VpConfig::new())),
            endpoints: ((-0.5 * vp_b0).exp(), (1.0 - (-vp_b0).exp()).sqrt(), 1.0, 0.0),
            knots: None,
        },
        Case { name: "linear vp", schedule: c(ScheduleConfig::LinearVp(LinearVpConfig::new())), endpoints: (0.0, 1.0, 1.0, 0.0), knots: None },
        Case {
            name: "sub-vp",
            schedule: c(ScheduleConfig::SubVp(SubVpConfig::new())),
            endpoints: ((-0.5 * vp_b0).exp(), 1.0 - (-vp_b0).exp(), 1.0, 0.0),
            knots: None,
        },
        Case { name: "ve", schedule: c(ScheduleConfig::Ve(VeConfig::new())), endpoints: (1.0, 50.0, 1.0, 0.01), knots: None },
        Case {
            name: "polynomial n = 3",
            schedule: c(ScheduleConfig::PolynomialConvex(PolynomialConvexConfig::new().with_n(3.0))),
            endpoints: (0.0, 1.0, 1.0, 0.0),
            knots: None,
        },
        Case { name: "edm", schedule: c(ScheduleConfig::Edm(EdmConfig::new())), endpoints: (1.0, 80.0, 1.0, 0.002), knots: None },
        Case {
            name: "ddpm linear",
            schedule: c(ScheduleConfig::Discrete(DiscreteScheduleConfig::new())),
            endpoints: (ddpm_bar.sqrt(), (1.0 - ddpm_bar).sqrt(), 1.0, 0.0),
            knots: Some(1000),
        },
        Case {
            name: "ddpm squaredcos_cap_v2",
            schedule: c(ScheduleConfig::Discrete(
                DiscreteScheduleConfig::new().with_beta_schedule(BetaSchedule::SquaredcosCapV2),
            )),
            endpoints: (cos_bar.sqrt(), (1.0 - cos_bar).sqrt(), 1.0, 0.0),
            knots: Some(1000),
        },
    ]
}

/// A time in [lo, hi] that keeps a ±2h stencil inside one linear piece of a discrete schedule.
fn stencil_time(u: f64, lo: f64, hi: f64, knots: Option<usize>) -> f64 {
    let t = lo + (hi - lo) * u;
    match knots {
        None => t,
        Some(n) => {
            // Snap to the middle of the piece containing t.
            let n = n as f64;
            ((t * n).floor() + 0.5) / n
        }
    }
}

fn points(values: &[f64], batch: usize) -> Vec<Vec<f64>> {
    values.chunks(values.len() / batch).map(<[f64]>::to_vec).collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0_f64, |m, x| m.max(x.abs()))
}

#[test]
fn endpoints_are_source_and_data_up_to_the_schedules_floor() {
    let dev = device();
    let x0 = tensor_from_rows(&[vec![0.3, -1.2, 2.0], vec![1.0, 0.5, -0.7]], &dev);
    let x1 = tensor_from_rows(&[vec![-2.0, 0.4, 1.1], vec![0.2, 3.0, -1.5]], &dev);
    for case in cases() {
        let path = AffinePath::new(case.schedule.clone());
        let (a0, s0, a1, s1) = case.endpoints;
        for (t, a, s) in [(0.0, a0, s0), (1.0, a1, s1)] {
            assert!((case.schedule.alpha(t) - a).abs() <= 1e-12 * (1.0 + a.abs()), "{}: α({t})", case.name);
            assert!((case.schedule.sigma(t) - s).abs() <= 1e-12 * (1.0 + s.abs()), "{}: σ({t})", case.name);
            let times = Times::shared(t, 2).unwrap();
            // The t = 1 end of VP-type schedules has an infinite σ̇; x_t itself is still defined.
            let x_t = tensor_to_vec(
                (x0.clone().mul_scalar(s) + x1.clone().mul_scalar(a)) - match path.sample(x0.clone(), x1.clone(), &times) {
                    Ok(sample) => sample.x_t,
                    Err(_) => {
                        let c = path.coefficients(&times);
                        c.sigma.combine(x0.clone(), &c.alpha, x1.clone())
                    }
                },
            );
            assert!(max_abs(&x_t) <= 1e-5 * (1.0 + s.max(a)), "{}: x_t at t = {t}", case.name);
        }
        // Interpolating schedules hit x₀ and x₁ exactly (up to σ_min at the data end).
        if (a0, s0) == (0.0, 1.0) {
            let at0 = path.sample(x0.clone(), x1.clone(), &Times::shared(0.0, 2).unwrap()).unwrap().x_t;
            assert!(max_abs(&tensor_to_vec(at0 - x0.clone())) < 1e-6, "{}: x_0 ≠ x₀", case.name);
        }
    }
    // The Brownian bridge pins both ends exactly, whatever the noise.
    let bridge = StochasticInterpolant::brownian_bridge(0.8).unwrap();
    let eps = tensor_from_rows(&[vec![5.0, -5.0, 5.0], vec![1.0, 1.0, 1.0]], &dev);
    for (t, end) in [(0.0, &x0), (1.0, &x1)] {
        let times = Times::shared(t, 2).unwrap();
        let x_t = bridge.mean(x0.clone(), x1.clone(), &times).unwrap()
            + eps.clone().mul_scalar(bridge.noise_scale().gamma(t));
        assert!(max_abs(&tensor_to_vec(x_t - end.clone())) < 1e-6, "bridge end t = {t}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// α̇ and σ̇ equal the fourth-order central difference of α and σ, in f64.
    #[test]
    fn schedule_derivatives_are_time_derivatives(u in 0.0f64..1.0) {
        for case in cases() {
            let t = stencil_time(u, 0.02, 0.98, case.knots);
            let h = 1e-5;
            let fd = |f: &dyn Fn(f64) -> f64| (f(t - 2.0 * h) - 8.0 * f(t - h) + 8.0 * f(t + h) - f(t + 2.0 * h)) / (12.0 * h);
            let s = &case.schedule;
            let (da, ds) = (fd(&|t| s.alpha(t)), fd(&|t| s.sigma(t)));
            prop_assert!((s.d_alpha(t) - da).abs() <= 1e-6 * (1.0 + da.abs()), "{}: α̇({t}) = {} vs FD {da}", case.name, s.d_alpha(t));
            prop_assert!((s.d_sigma(t) - ds).abs() <= 1e-6 * (1.0 + ds.abs()), "{}: σ̇({t}) = {} vs FD {ds}", case.name, s.d_sigma(t));
            let dv = fd(&|t| s.sigma(t).powi(2));
            prop_assert!((s.d_sigma2(t) - dv).abs() <= 1e-6 * (1.0 + dv.abs()), "{}: d(σ²)/dt({t}) = {} vs FD {dv}", case.name, s.d_sigma2(t));
        }
    }

    /// The tensor path's dx_t equals the finite-difference time derivative of its x_t.
    #[test]
    fn conditional_velocity_is_the_derivative_of_x_t(
        u in 0.0f64..1.0,
        x0 in prop::collection::vec(-3.0f64..3.0, 6),
        x1 in prop::collection::vec(-3.0f64..3.0, 6),
        eps in prop::collection::vec(-3.0f64..3.0, 6),
    ) {
        let dev = device();
        let (x0, x1, eps) = (tensor_from_rows(&points(&x0, 2), &dev), tensor_from_rows(&points(&x1, 2), &dev), tensor_from_rows(&points(&eps, 2), &dev));
        let h = 1e-3;
        let check = |name: &str, knots: Option<usize>, sample: &dyn Fn(f64) -> (Tensor<2>, Tensor<2>)| -> Result<(), TestCaseError> {
            let t = stencil_time(u, 0.05, 0.95, knots);
            let x = |t| tensor_to_vec(sample(t).0);
            let (m2, m1, p1, p2) = (x(t - 2.0 * h), x(t - h), x(t + h), x(t + 2.0 * h));
            let dx = tensor_to_vec(sample(t).1);
            let scale = 1.0 + max_abs(&x(t)) + max_abs(&dx);
            for i in 0..dx.len() {
                let fd = (m2[i] - 8.0 * m1[i] + 8.0 * p1[i] - p2[i]) / (12.0 * h);
                prop_assert!((dx[i] - fd).abs() <= 2e-3 * scale, "{name} at t = {t}: dx_t[{i}] = {} vs FD {fd}", dx[i]);
            }
            Ok(())
        };
        for case in cases() {
            let path = AffinePath::new(case.schedule.clone());
            check(case.name, case.knots, &|t| {
                let s = path.sample(x0.clone(), x1.clone(), &Times::shared(t, 2).unwrap()).unwrap();
                (s.x_t, s.dx_t)
            })?;
        }
        for (name, path) in [
            ("brownian bridge", StochasticInterpolant::brownian_bridge(0.5).unwrap()),
            ("constant-σ cfm", StochasticInterpolant::constant_noise(0.1).unwrap()),
        ] {
            check(name, None, &|t| {
                let s = path.sample(x0.clone(), x1.clone(), eps.clone(), &Times::shared(t, 2).unwrap()).unwrap();
                (s.x_t, s.dx_t)
            })?;
        }
    }

    /// Converting the exact conditional target of any kind into any other kind gives that
    /// kind's exact target (which also makes every conversion round-trip).
    #[test]
    fn conversions_between_all_kinds_agree_and_round_trip(
        t in 0.1f64..0.9,
        x0 in prop::collection::vec(-3.0f64..3.0, 6),
        x1 in prop::collection::vec(-3.0f64..3.0, 6),
    ) {
        let dev = device();
        let (x0, x1) = (tensor_from_rows(&points(&x0, 2), &dev), tensor_from_rows(&points(&x1, 2), &dev));
        let times = Times::per_sample(vec![t, 1.0 - t]).unwrap();
        for case in cases() {
            let path = AffinePath::new(case.schedule.clone());
            let x_t = path.sample(x0.clone(), x1.clone(), &times).unwrap().x_t;
            let target = |kind: PredictionKind| -> Tensor<2> {
                use flowforge::{Data, Noise, Score, VPrediction, Velocity};
                match kind {
                    PredictionKind::Noise => path.target::<Noise, 2>(x0.clone(), x1.clone(), &times).unwrap().into_tensor(),
                    PredictionKind::Data => path.target::<Data, 2>(x0.clone(), x1.clone(), &times).unwrap().into_tensor(),
                    PredictionKind::Velocity => path.target::<Velocity, 2>(x0.clone(), x1.clone(), &times).unwrap().into_tensor(),
                    PredictionKind::VPrediction => path.target::<VPrediction, 2>(x0.clone(), x1.clone(), &times).unwrap().into_tensor(),
                    PredictionKind::Score => path.target::<Score, 2>(x0.clone(), x1.clone(), &times).unwrap().into_tensor(),
                }
            };
            for from in PredictionKind::ALL {
                for to in PredictionKind::ALL {
                    let converted = path.convert_kind(from, to, target(from), x_t.clone(), &times).unwrap();
                    let back = path.convert_kind(to, from, converted.clone(), x_t.clone(), &times).unwrap();
                    let (got, want) = (tensor_to_vec(converted), tensor_to_vec(target(to)));
                    let (round, orig) = (tensor_to_vec(back), tensor_to_vec(target(from)));
                    let tol = |v: &[f64]| 1e-3 * (1.0 + max_abs(v));
                    for i in 0..got.len() {
                        prop_assert!((got[i] - want[i]).abs() <= tol(&want), "{}: {from} → {to} at t = {t}: [{i}] {} vs {}", case.name, got[i], want[i]);
                        prop_assert!((round[i] - orig[i]).abs() <= tol(&orig), "{}: {from} → {to} → {from} at t = {t}: [{i}] {} vs {}", case.name, round[i], orig[i]);
                    }
                }
            }
        }
    }

    /// Custom schedules compose like the built-ins: a closure pair reproduces CondOT exactly.
    #[test]
    fn fn_schedule_equals_its_builtin_twin(t in 0.0f64..1.0) {
        let custom = FnSchedule::new(|t| t, |t| 1.0 - t);
        let builtin = CondOt::default();
        prop_assert!((custom.alpha(t) - builtin.alpha(t)).abs() < 1e-15);
        prop_assert!((custom.d_sigma(t) - builtin.d_sigma(t)).abs() < 1e-9);
        prop_assert!((custom.snr_inverse(builtin.snr(t.min(0.999))).unwrap() - t.min(0.999)).abs() < 1e-9);
    }
}
