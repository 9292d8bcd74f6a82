//! Guidance on a labelled 2-D Gaussian mixture whose class posterior is known exactly: a
//! class-conditional flow model (label dropout) under classifier-free guidance, the
//! unconditional part of the same model under classifier guidance with a trained noise-aware
//! classifier, and gradient guidance towards `x > 0`.
//!
//! ```sh
//! cargo run --example classifier_guidance_2d     # ~1 min on a 2-core CPU, writes out/classifier_guidance_2d/*.png
//! ```
//!
//! Printed: for every guidance scale, the fraction of samples whose **exact** data posterior
//! favours the requested class (next to the same fraction for real data of that class), and
//! for gradient guidance the fraction of samples with `x > 0`.


use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use flowforge::cli::Args;
use flowforge::core::tensor::tensor_to_rows;
use flowforge::data::{rng, standard_normal, tensor_to_points};
use flowforge::guidance::{CfgConvention, ClassifierFreeGuidance, ClassifierGuidance, DenoisedGradientGuidance};
use flowforge::losses::RegressionLoss;
use flowforge::losses::conditioning::{LabelDropout, cross_entropy};
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::nets::{Mlp, MlpConfig, predicting};
use flowforge::paths::{AffinePath, CondOt};
use flowforge::plot::{Figure, Panel, Rgb};
use flowforge::samplers::oracle::LabelledMixtureOracle;
use flowforge::samplers::{Euler, NoNoise, PathModel, SolveOptions, TimeGrid, solve};
use flowforge::train::{Trainer, TrainerConfig};
use flowforge::{Condition, Model, Times, Velocity};
use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;

const USAGE: &str = "classifier_guidance_2d [--steps 3000] [--classifier-steps 2000] [--batch 256] [--samples 3000] [--seed 0] \
[--out out/classifier_guidance_2d] [--device default|flex|wgpu|ndarray|cuda]";

const CLASSES: usize = 3;
/// Four overlapping components, three classes (class 0 owns two).
const MEANS: [[f64; 2]; 4] = [[-1.5, 0.0], [0.0, 1.5], [1.5, 0.0], [0.0, -1.5]];
const CLASS_OF: [usize; 4] = [0, 0, 1, 2];
const STD: f64 = 1.0;

fn oracle() -> flowforge::Result<LabelledMixtureOracle<CondOt, Velocity>> {
    Ok(LabelledMixtureOracle::new(CondOt::default(), vec![0.25; 4], MEANS.iter().map(|m| m.to_vec()).collect(), vec![STD; 4], CLASS_OF.to_vec())?.predicting())
}

/// `n` labelled data points (component uniformly, then its class).
fn data(n: usize, rng: &mut StdRng) -> (Vec<f64>, Vec<i64>) {
    let (mut points, mut labels) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    for _ in 0..n {
        let k = rng.random_range(0..4);
        for mean in MEANS[k] {
            let z: f64 = StandardNormal.sample(rng);
            points.push(mean + STD * z);
        }
        labels.push(CLASS_OF[k] as i64);
    }
    (points, labels)
}

/// Points of one requested class drawn from the data (for the reference fraction).
fn data_of_classes(labels: &[i64], rng: &mut StdRng) -> Vec<f64> {
    let mut points = Vec::with_capacity(2 * labels.len());
    for &y in labels {
        let members: Vec<usize> = (0..4).filter(|&k| CLASS_OF[k] as i64 == y).collect();
        let k = members[rng.random_range(0..members.len())];
        for mean in MEANS[k] {
            let z: f64 = StandardNormal.sample(rng);
            points.push(mean + STD * z);
        }
    }
    points
}

fn tensor(points: Vec<f64>, device: &Device) -> Tensor<2> {
    let n = points.len() / 2;
    Tensor::from_data(TensorData::new(points, [n, 2]), device)
}

fn labels_tensor(labels: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(labels.to_vec(), [labels.len()]), device)
}

/// Fraction of `x` whose exact data posterior favours the requested label.
fn favoured(exact: &LabelledMixtureOracle<CondOt, Velocity>, x: Tensor<2>, labels: &[i64]) -> flowforge::Result<f64> {
    let posterior = tensor_to_rows(exact.class_posterior(x, &Times::shared(1.0, labels.len())?)?);
    let hits = posterior
        .iter()
        .zip(labels)
        .filter(|&(p, y)| p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as i64) == Some(*y))
        .count();
    Ok(hits as f64 / labels.len() as f64)
}

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE)?;
    let steps = args.count("steps", 3000)?;
    let classifier_steps = args.count("classifier-steps", 2000)?;
    let batch = args.positive("batch", 256)?;
    let n = args.positive("samples", 3000)?;
    let seed: u64 = args.get("seed", 0)?;
    let out = args.out_dir("classifier_guidance_2d")?;
    let device = args.device()?;
    let train_device = device.clone().autodiff();
    device.seed(seed);
    let exact = oracle()?;
    let path = AffinePath::new(CondOt::default());

    // 1. A class-conditional velocity MLP (3×256) with 20% label dropout to the null label 3.
    let dropout = LabelDropout::new(0.2, CLASSES as i64)?;
    let conditional = MlpConfig::new(2).with_num_classes(CLASSES).init(&train_device)?;
    let mut trainer = Trainer::new(TrainerConfig::new(steps).with_seed(seed), conditional)?;
    let objective = RegressionLoss::new(path.clone());
    let report = trainer.fit(|model: &Mlp, rng, _| {
        let (points, labels) = data(batch, rng);
        let x1 = tensor(points, &train_device);
        let x0 = standard_normal([batch, 2], rng, &train_device);
        let t = TimeSampling::default().sample(batch, rng, &CondOt::default())?;
        let condition = dropout.apply(&Condition::labels(labels_tensor(&labels, &train_device)), rng)?;
        objective.loss(&predicting::<Velocity, _>(model), x0, x1, None, &t, &condition)
    })?;
    println!("conditional flow model: {steps} steps in {:.1} s ({:.0} steps/s)", report.seconds, report.steps_per_second);
    let net = trainer.into_parts().0.valid();

    // 2. A noise-aware classifier p(y | x_t, t) trained on path samples x_t.
    let classifier_net = MlpConfig::new(2).with_output_dim(Some(CLASSES)).init(&train_device)?;
    let mut classifier_trainer = Trainer::new(TrainerConfig::new(classifier_steps).with_seed(seed + 1), classifier_net)?;
    let report = classifier_trainer.fit(|model: &Mlp, rng, _| {
        let (points, labels) = data(batch, rng);
        let x1 = tensor(points, &train_device);
        let x0 = standard_normal([batch, 2], rng, &train_device);
        let t = TimeSampling::default().sample(batch, rng, &CondOt::default())?;
        let x_t = path.point(x0, x1, &t)?;
        cross_entropy(model.forward(x_t, &[t.to_column(&train_device)])?, labels_tensor(&labels, &train_device))
    })?;
    println!("noise-aware classifier: {classifier_steps} steps in {:.1} s", report.seconds);
    let classifier_net = classifier_trainer.into_parts().0.valid();
    let classifier = |x: Tensor<2>, t: &Times| {
        let column = t.to_column(&x.device());
        classifier_net.forward(x, &[column])
    };

    // 3. Sampling: Euler-100 from t = 1e-3 (the score ↔ velocity conversion of classifier
    //    guidance is singular at t = 0, where α = 0).
    let labels: Vec<i64> = (0..n).map(|i| (i % CLASSES) as i64).collect();
    let condition = Condition::labels(labels_tensor(&labels, &device));
    let grid = TimeGrid::uniform_between(1e-3, 1.0, 100)?;
    let x0 = standard_normal([n, 2], &mut rng(seed + 7), &device);
    let run = |m: &dyn ModelRef| -> flowforge::Result<Tensor<2>> { m.sample(x0.clone(), &grid, &path, &condition) };
    let reference = favoured(&exact, tensor(data_of_classes(&labels, &mut rng(seed + 9)), &device), &labels)?;
    println!("real data: {:.3} of the points favour their own class under the exact posterior", reference);

    let velocity = predicting::<Velocity, _>(&net);
    let mut pictures: Vec<(String, Tensor<2>, bool)> = Vec::new();
    let start = Instant::now();
    let mut cfg_curve = Vec::new();
    for w in [0.0, 1.0, 1.5, 2.0, 3.0, 5.0] {
        let guided = ClassifierFreeGuidance::new(&velocity, w, CfgConvention::Interpolate, CLASSES as i64)?;
        let x = run(&guided)?;
        cfg_curve.push((w, favoured(&exact, x.clone(), &labels)?));
        if w == 1.0 || w == 3.0 {
            pictures.push((format!("CFG w = {w}"), x, true));
        }
    }
    println!("classifier-free guidance, fraction favouring the requested class (w: fraction): {}", curve_text(&cfg_curve));
    let unconditional = ConditionFree(&velocity);
    let mut classifier_curve = Vec::new();
    for s in [0.0, 1.0, 2.0, 4.0] {
        let guided = ClassifierGuidance::new(&unconditional, &classifier, &path, s)?;
        let x = run(&guided)?;
        classifier_curve.push((s, favoured(&exact, x.clone(), &labels)?));
        if s == 1.0 {
            pictures.push((format!("classifier guidance s = {s}"), x, true));
        }
    }
    println!("classifier guidance (unconditional model + trained classifier), same fraction (s: fraction): {}", curve_text(&classifier_curve));
    let rightwards = |x: Tensor<2>| -> flowforge::Result<Tensor<1>> { Ok(x.narrow(1, 0, 1).squeeze_dim(1)) };
    let mut gradient_curve = Vec::new();
    for s in [0.0, 0.1, 0.3, 1.0] {
        let guided = DenoisedGradientGuidance::new(&unconditional, &rightwards, &path, s)?;
        let x = guided_unlabelled(&guided, x0.clone(), &grid, &path)?;
        let right = tensor_to_points(x.clone()).iter().filter(|p| p[0] > 0.0).count() as f64 / n as f64;
        gradient_curve.push((s, right));
        if s == 0.3 {
            pictures.push((format!("gradient guidance J = x, s = {s} (unlabelled)"), x, false));
        }
    }
    println!("gradient guidance towards x > 0, fraction with x > 0 (s: fraction): {}", curve_text(&gradient_curve));
    println!("sampling: {} runs of {n} samples by Euler-100 in {:.1} s", cfg_curve.len() + classifier_curve.len() + gradient_curve.len(), start.elapsed().as_secs_f64());

    // Pictures: samples coloured by requested class.
    let colours = [Rgb::BLUE, Rgb::ORANGE, Rgb::GREEN];
    let range = ((-4.5, 4.5), (-4.5, 4.5));
    let (points, data_labels) = data(n, &mut rng(seed + 11));
    let data_points = tensor_to_points(tensor(points, &device));
    let mut figure = Figure::new("guidance on a labelled Gaussian mixture (colour = requested class)").columns(3);
    let mut panel = Panel::new("data (colour = class)").range(range.0, range.1);
    for (c, &colour) in colours.iter().enumerate() {
        let of: Vec<[f64; 2]> = data_points.iter().zip(&data_labels).filter(|(_, l)| **l == c as i64).map(|(p, _)| *p).collect();
        panel = panel.points(&of, colour, 1);
    }
    figure = figure.panel(panel);
    for (title, x, labelled) in pictures {
        let points = tensor_to_points(x);
        let mut panel = Panel::new(title).range(range.0, range.1);
        if !labelled {
            panel = panel.points(&points, Rgb::GREY, 1);
        } else {
            for (c, &colour) in colours.iter().enumerate() {
                let of: Vec<[f64; 2]> = points.iter().zip(&labels).filter(|(_, l)| **l == c as i64).map(|(p, _)| *p).collect();
                panel = panel.points(&of, colour, 1);
            }
        }
        figure = figure.panel(panel);
    }
    figure.save(out.join("guidance.png"))?;
    let curves = Panel::new("blue: CFG, orange: classifier, grey: data")
        .labels("guidance scale (w or s)", "fraction favouring the requested class")
        .range((0.0, 5.0), (0.0, 1.05))
        .lines(&[cfg_curve.iter().map(|&(w, f)| [w, f]).collect()], Rgb::BLUE, 2, 1.0)
        .lines(&[classifier_curve.iter().map(|&(s, f)| [s, f]).collect()], Rgb::ORANGE, 2, 1.0)
        .lines(&[vec![[0.0, reference], [5.0, reference]]], Rgb::GREY, 1, 1.0);
    Figure::new("guidance curves").panel(curves).panel_size(520, 380).save(out.join("curves.png"))?;
    println!("wrote {}/{{guidance,curves}}.png", out.display());
    Ok(())
}

fn curve_text(curve: &[(f64, f64)]) -> String {
    curve.iter().map(|(s, f)| format!("{s}: {f:.3}")).collect::<Vec<_>>().join(", ")
}

/// A conditional model asked for its unconditional prediction: drops the labels, so the
/// network uses its null label.
struct ConditionFree<'m, M>(&'m M);

impl<M: Model<2>> Model<2> for ConditionFree<'_, M> {
    type Prediction = M::Prediction;
    fn predict(&self, x: Tensor<2>, t: &Times, condition: &Condition) -> flowforge::Result<flowforge::Predicted<M::Prediction, 2>> {
        self.0.predict(x, t, &Condition { labels: None, vectors: condition.vectors.clone() })
    }
}

/// Sampling through a trait object, so the loop above can take any guided model.
trait ModelRef {
    fn sample(&self, x0: Tensor<2>, grid: &TimeGrid, path: &AffinePath<CondOt>, condition: &Condition) -> flowforge::Result<Tensor<2>>;
}

impl<M: Model<2>> ModelRef for M {
    fn sample(&self, x0: Tensor<2>, grid: &TimeGrid, path: &AffinePath<CondOt>, condition: &Condition) -> flowforge::Result<Tensor<2>> {
        let field = PathModel::new(self, path).with_condition(condition.clone());
        Ok(solve(&field, &Euler, x0, grid, &mut NoNoise, SolveOptions::default())?.x)
    }
}

fn guided_unlabelled<M: Model<2>>(model: &M, x0: Tensor<2>, grid: &TimeGrid, path: &AffinePath<CondOt>) -> flowforge::Result<Tensor<2>> {
    model.sample(x0, grid, path, &Condition::none())
}
