//! Guidance on a labelled 2-D Gaussian mixture whose class posterior is exact: classifier-free
//! guidance, classifier guidance and gradient guidance move samples as intended (fractions
//! measured against the exact posterior), classifier guidance with the exact noisy posterior
//! *is* the conditional model, and bad input gives typed errors.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use flowforge::core::tensor::{tensor_to_rows, tensor_to_vec};
use flowforge::data::{rng, standard_normal};
use flowforge::guidance::{CfgConvention, ClassifierFreeGuidance, ClassifierGuidance, DenoisedGradientGuidance};
use flowforge::nets::MlpConfig;
use flowforge::paths::{AffinePath, CondOt};
use flowforge::samplers::oracle::LabelledMixtureOracle;
use flowforge::samplers::{Diffusion, Euler, EulerMaruyama, NoNoise, PathModel, SeededNoise, SolveOptions, TimeGrid, solve};
use flowforge::{Condition, Data, Error, Model, Times, Velocity};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

const CLASSES: usize = 3;

/// Three classes on four overlapping components (class 0 owns two).
fn components() -> (Vec<f64>, Vec<Vec<f64>>, Vec<f64>, Vec<usize>) {
    (
        vec![0.25, 0.25, 0.25, 0.25],
        vec![vec![-1.5, 0.0], vec![0.0, 1.5], vec![1.5, 0.0], vec![0.0, -1.5]],
        vec![1.0; 4],
        vec![0, 0, 1, 2],
    )
}

fn oracle() -> LabelledMixtureOracle<CondOt, Velocity> {
    let (w, m, s, c) = components();
    LabelledMixtureOracle::new(CondOt::default(), w, m, s, c).unwrap().predicting::<Velocity>()
}

fn labels_tensor(labels: &[i64]) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(labels.to_vec(), [labels.len()]), &device())
}

/// `n` requested labels, in turn 0, 1, 2, …
fn requested(n: usize) -> Vec<i64> {
    (0..n).map(|i| (i % CLASSES) as i64).collect()
}

/// For each requested class, the fraction of `points` whose exact data posterior favours it.
fn favoured_fraction(points: Tensor<2>, labels: &[i64]) -> f64 {
    let n = labels.len();
    let posterior = oracle().class_posterior(points, &Times::shared(1.0, n).unwrap()).unwrap();
    let rows = tensor_to_rows(posterior);
    let hits = rows
        .iter()
        .zip(labels)
        .filter(|&(p, y)| {
            let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            best as i64 == *y
        })
        .count();
    hits as f64 / n as f64
}

/// The same fraction for real data: points drawn from each requested class's mixture.
fn data_fraction(labels: &[i64]) -> f64 {
    let (w, m, s, c) = components();
    let mut r = rng(99);
    let mut points = Vec::with_capacity(labels.len());
    for &y in labels {
        let members: Vec<usize> = (0..w.len()).filter(|&k| c[k] as i64 == y).collect();
        let k = members[r.random_range(0..members.len())];
        let z: [f64; 2] = [StandardNormal.sample(&mut r), StandardNormal.sample(&mut r)];
        points.push(vec![m[k][0] + s[k] * z[0], m[k][1] + s[k] * z[1]]);
    }
    favoured_fraction(tensor_rows(&points), labels)
}

fn tensor_rows(rows: &[Vec<f64>]) -> Tensor<2> {
    flowforge::core::tensor::tensor_from_rows(rows, &device())
}

/// Euler-200 from t = `start` with `model`, conditioned on `labels`.
fn sample<M: Model<2>>(model: &M, labels: &[i64], start: f64) -> Tensor<2> {
    let path = AffinePath::new(CondOt::default());
    let field = PathModel::new(model, &path).with_condition(Condition::labels(labels_tensor(labels)));
    let x0 = standard_normal([labels.len(), 2], &mut rng(5), &device());
    let grid = TimeGrid::uniform_between(start, 1.0, 200).unwrap();
    solve(&field, &Euler, x0, &grid, &mut NoNoise, SolveOptions::default()).unwrap().x
}

/// Strictly rising until it saturates near 1.
fn assert_rises(curve: &[(f64, f64)]) {
    for pair in curve.windows(2) {
        let (before, after) = (pair[0].1, pair[1].1);
        assert!(after > before || before > 0.995 && after >= before - 0.003, "the fraction must rise with the scale: {curve:?}");
    }
}

#[test]
fn classifier_free_guidance_sharpens_classes_monotonically_and_w1_matches_the_data() {
    let n = 3000;
    let labels = requested(n);
    let exact = oracle();
    let data = data_fraction(&labels);
    let mut curve = Vec::new();
    for w in [0.0, 1.0, 1.5, 2.0, 3.0, 5.0] {
        let cfg = ClassifierFreeGuidance::new(&exact, w, CfgConvention::Interpolate, CLASSES as i64).unwrap();
        curve.push((w, favoured_fraction(sample(&cfg, &labels, 0.0), &labels)));
    }
    eprintln!("CFG: fraction favouring the requested class {curve:?} (data {data:.3})");
    // w = 0 is the unconditional model: about a third of the samples favour any given class
    // (class 0 owns half the mass: (1/2 + 1/4 + 1/4)/3 ≈ 0.33 on average).
    assert!((curve[0].1 - 1.0 / 3.0).abs() < 0.04, "unconditional {curve:?}");
    // w = 1 is the exact conditional model: the same fraction as real data of each class.
    assert!((curve[1].1 - data).abs() < 0.03, "w = 1 {:.3} vs data {data:.3}", curve[1].1);
    assert_rises(&curve);
    assert!(curve.last().unwrap().1 > data + 0.05, "strong guidance must beat the data's fraction: {curve:?}");
}

#[test]
fn classifier_guidance_with_the_exact_posterior_is_the_conditional_model() {
    let exact = oracle();
    let path = AffinePath::new(CondOt::default());
    let posterior = oracle();
    let classifier = |x: Tensor<2>, t: &Times| Ok(posterior.class_posterior(x, t)?.clamp_min(1e-30).log());
    let n = 64;
    let labels = requested(n);
    let x = standard_normal([n, 2], &mut rng(3), &device()).mul_scalar(1.5);
    for t in [0.1, 0.4, 0.7, 0.95] {
        let times = Times::shared(t, n).unwrap();
        let guided = ClassifierGuidance::new(exact.marginal(), &classifier, &path, 1.0).unwrap();
        let condition = Condition::labels(labels_tensor(&labels));
        let guided = tensor_to_vec(guided.predict(x.clone(), &times, &condition).unwrap().into_tensor());
        let conditional = tensor_to_vec(exact.predict(x.clone(), &times, &condition).unwrap().into_tensor());
        assert_close("classifier-guided vs conditional velocity", &guided, &conditional, 2e-4, 2e-4);
    }
}

#[test]
fn classifier_guidance_raises_the_requested_fraction_with_ode_and_sde_samplers() {
    let n = 1500;
    let labels = requested(n);
    let exact = oracle();
    let path = AffinePath::new(CondOt::default());
    let posterior = oracle();
    let classifier = |x: Tensor<2>, t: &Times| Ok(posterior.class_posterior(x, t)?.clamp_min(1e-30).log());
    let data = data_fraction(&labels);
    let mut curve = Vec::new();
    for s in [0.0, 1.0, 2.0, 4.0] {
        let guided = ClassifierGuidance::new(exact.marginal(), &classifier, &path, s).unwrap();
        // The velocity ↔ score conversion is singular at t = 0 (α = 0): start just above it.
        curve.push((s, favoured_fraction(sample(&guided, &labels, 1e-3), &labels)));
    }
    eprintln!("classifier guidance (ODE): {curve:?} (data {data:.3})");
    assert!((curve[0].1 - 1.0 / 3.0).abs() < 0.05, "{curve:?}");
    assert!((curve[1].1 - data).abs() < 0.04, "s = 1 is the conditional model: {curve:?} vs {data:.3}");
    assert_rises(&curve);
    // The same decorator under an SDE sampler (Euler–Maruyama, reverse-diffusion noise).
    let sde = EulerMaruyama::new(Diffusion::Constant { g: 0.5 }).unwrap();
    let mut sde_curve = Vec::new();
    for s in [0.0, 2.0] {
        let guided = ClassifierGuidance::new(exact.marginal(), &classifier, &path, s).unwrap();
        let field = PathModel::new(&guided, &path).with_condition(Condition::labels(labels_tensor(&labels)));
        let x0 = standard_normal([n, 2], &mut rng(6), &device());
        let grid = TimeGrid::uniform_between(1e-3, 0.999, 400).unwrap();
        let x = solve(&field, &sde, x0, &grid, &mut SeededNoise::new(1), SolveOptions::default()).unwrap().x;
        sde_curve.push((s, favoured_fraction(x, &labels)));
    }
    eprintln!("classifier guidance (SDE): {sde_curve:?}");
    assert!(sde_curve[1].1 > sde_curve[0].1 + 0.2, "{sde_curve:?}");
}

#[test]
fn gradient_guidance_adds_the_converted_gradient_and_moves_samples() {
    let exact = oracle();
    let path = AffinePath::new(CondOt::default());
    // J(x) = first coordinate: ∇J = e₁, so a velocity changes by s · c_y(t) · e₁ with
    // c_y = α̇ − σ̇ α/σ... here written through the path's own x̂₁ → velocity coefficient.
    let objective = |x: Tensor<2>| -> flowforge::Result<Tensor<1>> { Ok(x.narrow(1, 0, 1).squeeze_dim(1)) };
    let n = 8;
    let x = standard_normal([n, 2], &mut rng(4), &device());
    let t = 0.6;
    let times = Times::shared(t, n).unwrap();
    let guided = DenoisedGradientGuidance::new(exact.marginal(), &objective, &path, 0.5).unwrap();
    let plain = tensor_to_vec(exact.marginal().predict(x.clone(), &times, &Condition::none()).unwrap().into_tensor());
    let moved = tensor_to_vec(guided.predict(x.clone(), &times, &Condition::none()).unwrap().into_tensor());
    // CondOT: v = (x̂₁ − x_t)/(1 − t), so δv = δx̂₁ / (1 − t) = 0.5 e₁ / 0.4.
    for i in 0..n {
        assert!((moved[2 * i] - plain[2 * i] - 0.5 / (1.0 - t)).abs() < 1e-4, "{} vs {}", moved[2 * i], plain[2 * i]);
        assert!((moved[2 * i + 1] - plain[2 * i + 1]).abs() < 1e-5);
    }
    // Sampling: the fraction of samples right of the y-axis rises with the scale.
    let m = 1500;
    let mut curve = Vec::new();
    for s in [0.0, 0.1, 0.3, 1.0] {
        let guided = DenoisedGradientGuidance::new(exact.marginal(), &objective, &path, s).unwrap();
        let field = PathModel::new(&guided, &path);
        let x0 = standard_normal([m, 2], &mut rng(7), &device());
        let x = solve(&field, &Euler, x0, &TimeGrid::uniform(100).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap().x;
        let right = tensor_to_rows(x).iter().filter(|p| p[0] > 0.0).count() as f64 / m as f64;
        curve.push((s, right));
    }
    eprintln!("gradient guidance: fraction with x > 0 {curve:?}");
    assert!((curve[0].1 - 0.5).abs() < 0.05, "{curve:?}");
    for pair in curve.windows(2) {
        assert!(pair[1].1 > pair[0].1, "{curve:?}");
    }
}

#[test]
fn bad_guidance_input_is_a_typed_error() {
    let exact = oracle();
    let path = AffinePath::new(CondOt::default());
    let posterior = oracle();
    let classifier = |x: Tensor<2>, t: &Times| Ok(posterior.class_posterior(x, t)?.clamp_min(1e-30).log());
    let objective = |x: Tensor<2>| -> flowforge::Result<Tensor<1>> { Ok(x.sum_dim(1).squeeze_dim(1)) };
    let x = standard_normal([2, 2], &mut rng(1), &device());
    let half = Times::shared(0.5, 2).unwrap();
    // NaN scales.
    assert!(matches!(ClassifierFreeGuidance::new(&exact, f64::NAN, CfgConvention::Interpolate, 3), Err(Error::InvalidParameter { .. })));
    assert!(matches!(ClassifierGuidance::new(exact.marginal(), &classifier, &path, f64::NAN), Err(Error::InvalidParameter { .. })));
    assert!(matches!(DenoisedGradientGuidance::new(exact.marginal(), &objective, &path, f64::INFINITY), Err(Error::InvalidParameter { .. })));
    // A class index out of range, through CFG into the model and into the classifier.
    let cfg = ClassifierFreeGuidance::new(&exact, 2.0, CfgConvention::Interpolate, 3).unwrap();
    let bad = Condition::labels(labels_tensor(&[0, 7]));
    assert!(matches!(cfg.predict(x.clone(), &half, &bad), Err(Error::ClassOutOfRange { label: 7, num_classes: 3, .. })));
    let guided = ClassifierGuidance::new(exact.marginal(), &classifier, &path, 1.0).unwrap();
    assert!(matches!(guided.predict(x.clone(), &half, &Condition::labels(labels_tensor(&[0, 3]))), Err(Error::ClassOutOfRange { label: 3, .. })));
    assert!(matches!(guided.predict(x.clone(), &half, &Condition::none()), Err(Error::MissingInput { .. })));
    // Classifier guidance where the path cannot turn a score into the model's prediction:
    // an x̂₁ model at t = 0 (α = 0).
    let denoiser = oracle().predicting::<Data>();
    let on_data = ClassifierGuidance::new(denoiser.marginal(), &classifier, &path, 1.0).unwrap();
    let at_zero = Times::shared(0.0, 2).unwrap();
    assert!(matches!(on_data.predict(x.clone(), &at_zero, &Condition::labels(labels_tensor(&[0, 1]))), Err(Error::SingularConversion { .. })));
    // A conditional network: labels beyond the null label, and condition vectors of the wrong size.
    let net = MlpConfig::new(2).with_hidden_dim(16).with_num_classes(10).with_condition_dim(4).init(&device()).unwrap();
    let model = flowforge::nets::predicting::<Velocity, _>(&net);
    let eleven = Condition::labels(labels_tensor(&[1, 11]));
    assert!(matches!(model.predict(x.clone(), &half, &eleven), Err(Error::ClassOutOfRange { label: 11, num_classes: 10, .. })));
    let null = Condition::labels(labels_tensor(&[10, 10]));
    assert!(model.predict(x.clone(), &half, &null).is_ok(), "the null label is accepted");
    let wrong = Condition::vectors(Tensor::zeros([2, 3], &device()));
    assert!(matches!(model.predict(x.clone(), &half, &wrong), Err(Error::ShapeMismatch { .. })));
    let unconditional = MlpConfig::new(2).with_hidden_dim(16).init(&device()).unwrap();
    let plain = flowforge::nets::predicting::<Velocity, _>(&unconditional);
    assert!(matches!(plain.predict(x, &half, &Condition::labels(labels_tensor(&[0, 1]))), Err(Error::ClassOutOfRange { .. })));
}
