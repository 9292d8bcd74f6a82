//! Class-conditional flow matching on MNIST with classifier-free guidance.
//!
//! ```sh
//! cargo run --example cfg_mnist              # ~2 min on a 2-core CPU, writes out/cfg_mnist/*.png
//! cargo run --example cfg_mnist -- --steps 12000 --hidden 1024   # better digits
//! ```
//!
//! One MLP learns conditional and unconditional velocities (label dropout to the null label,
//! Ho & Salimans 2022) on the 10,000 bundled MNIST digits; sampling wraps it in
//! `ClassifierFreeGuidance` (one batched call per step) for w ∈ {1, 2, 4}. A classifier trained
//! on real digits (held-out accuracy printed) then reads the generated digits: the printed
//! accuracy is the fraction generated as the requested class.


use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use flowforge::cli::Args;
use flowforge::data::images::{bundled_mnist, to_unit_range};
use flowforge::data::{rng, standard_normal};
use flowforge::guidance::{CfgConvention, ClassifierFreeGuidance};
use flowforge::losses::RegressionLoss;
use flowforge::losses::conditioning::{LabelDropout, cross_entropy};
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::nets::{Mlp, MlpConfig, predicting};
use flowforge::paths::{AffinePath, CondOt};
use flowforge::plot::ImageGrid;
use flowforge::samplers::{Euler, NoNoise, PathModel, SolveOptions, TimeGrid, solve};
use flowforge::train::{LrSchedule, Trainer, TrainerConfig};
use flowforge::{Condition, Velocity};
use std::time::Instant;

const USAGE: &str = "cfg_mnist [--steps 4000] [--batch 128] [--hidden 512] [--lr 1e-3] [--dropout 0.1] \
[--classifier-steps 1000] [--per-class 10] [--eval-per-class 50] [--sampling-steps 50] [--seed 0] \
[--out out/cfg_mnist] [--device default|flex|wgpu|ndarray|cuda]";

fn main() -> std::process::ExitCode {
    flowforge::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE)?;
    let steps = args.count("steps", 4000)?;
    let batch = args.positive("batch", 128)?;
    let hidden = args.count("hidden", 512)?;
    let lr: f64 = args.get("lr", 1e-3)?;
    let dropout: f64 = args.get("dropout", 0.1)?;
    let classifier_steps = args.count("classifier-steps", 1000)?;
    let per_class = args.positive("per-class", 10)?;
    let eval_per_class = args.positive("eval-per-class", 50)?;
    let sampling_steps = args.positive("sampling-steps", 50)?;
    let seed: u64 = args.get("seed", 0)?;
    let out = args.out_dir("cfg_mnist")?;
    let device = args.device()?;
    let train_device = device.clone().autodiff();
    device.seed(seed);

    let mnist = bundled_mnist()?;
    // Hold out the last 1,000 digits to measure the classifier on real data.
    let (train, held_out) = mnist.split_at(mnist.len() - 1000);
    let dim = mnist.pixels_per_image();
    println!("MNIST: {} digits of {}x{} ({} for training)", mnist.len(), mnist.rows, mnist.cols, train.len());
    let null_label = mnist.classes as i64;

    // 1. The class-conditional velocity model with label dropout.
    let config = MlpConfig::new(dim).with_hidden_dim(hidden).with_hidden_layers(3).with_num_classes(mnist.classes);
    let network = config.init(&train_device)?;
    let trainer_config = TrainerConfig::new(steps).with_learning_rate(lr).with_warmup_steps(100).with_schedule(LrSchedule::Cosine { final_fraction: 0.05 }).with_ema_decay(Some(0.999)).with_seed(seed);
    let mut trainer = Trainer::new(trainer_config, network)?;
    let path = AffinePath::new(CondOt::default());
    let objective = RegressionLoss::new(path.clone());
    let label_dropout = LabelDropout::new(dropout, null_label)?;
    let report = trainer.fit(|model: &Mlp, rng, _| {
        let (x1, labels) = train.batch(&train.sample_indices(batch, rng), &train_device)?;
        let x0 = standard_normal([batch, dim], rng, &train_device);
        let t = TimeSampling::default().sample(batch, rng, &CondOt::default())?;
        let condition = label_dropout.apply(&Condition::labels(labels), rng)?;
        objective.loss(&predicting::<Velocity, _>(model), x0, x1, None, &t, &condition)
    })?;
    println!("flow model: {steps} steps in {:.1} s ({:.1} steps/s), final loss {:.4}", report.seconds, report.steps_per_second, report.losses.last().copied().unwrap_or(f64::NAN));
    let (online, averaged) = trainer.into_parts();
    let net = averaged.unwrap_or_else(|| online.valid());

    // 2. A classifier of real digits (the same MLP with ten logits, time fixed at 1).
    let classifier_config = MlpConfig::new(dim).with_hidden_dim(256).with_hidden_layers(2).with_output_dim(Some(mnist.classes));
    let mut classifier_trainer = Trainer::new(TrainerConfig::new(classifier_steps).with_learning_rate(1e-3).with_seed(seed + 1), classifier_config.init(&train_device)?)?;
    let ones = |n: usize, device: &burn::tensor::Device| Tensor::<2>::ones([n, 1], device);
    let start = Instant::now();
    classifier_trainer.fit(|model: &Mlp, rng, _| {
        let (x, labels) = train.batch(&train.sample_indices(batch, rng), &train_device)?;
        cross_entropy(model.forward(x, &[ones(batch, &train_device)])?, labels)
    })?;
    let classifier = classifier_trainer.into_parts().0.valid();
    let accuracy = |x: Tensor<2>, labels: &[i64]| -> flowforge::Result<f64> {
        let n = labels.len();
        let predicted = classifier.forward(x, &[ones(n, &device)])?.argmax(1).try_into_vec_as::<i64>().map_err(|e| flowforge::Error::NonFinite { what: format!("{e:?}") })?;
        Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / n as f64)
    };
    let (real, real_labels) = held_out.head(held_out.len(), &device)?;
    let real_labels = real_labels.try_into_vec_as::<i64>().map_err(|e| format!("{e:?}"))?;
    println!("classifier: {classifier_steps} steps in {:.1} s, held-out accuracy on real digits {:.3}", start.elapsed().as_secs_f64(), accuracy(real, &real_labels)?);

    // 3. Guided sampling: a 10 × per_class grid per w, and the classifier's accuracy on
    //    eval_per_class samples of every class.
    let velocity = predicting::<Velocity, _>(&net);
    std::fs::create_dir_all(&out).map_err(|e| flowforge::Error::Output { path: out.display().to_string(), reason: e.to_string() })?;
    let grid = TimeGrid::uniform(sampling_steps)?;
    for w in [1.0, 2.0, 4.0] {
        let guided = ClassifierFreeGuidance::new(&velocity, w, CfgConvention::Interpolate, null_label)?;
        let generate = |per: usize, seed: u64| -> flowforge::Result<(Tensor<2>, Vec<i64>)> {
            let labels: Vec<i64> = (0..10 * per).map(|i| (i / per) as i64).collect();
            let condition = Condition::labels(Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [labels.len()]), &device));
            let field = PathModel::new(&guided, &path).with_condition(condition);
            let x0 = standard_normal([labels.len(), dim], &mut rng(seed), &device);
            Ok((solve(&field, &Euler, x0, &grid, &mut NoNoise, SolveOptions::default())?.x, labels))
        };
        let start = Instant::now();
        let (samples, labels) = generate(eval_per_class, seed + 100)?;
        let seconds = start.elapsed().as_secs_f64();
        let acc = accuracy(samples, &labels)?;
        println!(
            "w = {w}: {} samples by Euler-{sampling_steps} in {seconds:.1} s; classifier accuracy on generated digits {acc:.3}",
            labels.len()
        );
        let (picture, _) = generate(per_class, seed + 200)?;
        let images: Vec<Vec<f32>> = flowforge::core::tensor::tensor_to_rows(to_unit_range(picture)).into_iter().map(|r| r.into_iter().map(|v| v as f32).collect()).collect();
        let file = out.join(format!("cfg_w{w}.png"));
        ImageGrid::new(format!("CFG w = {w} (row = requested digit)"), images, mnist.cols, mnist.rows, per_class)
            .scale(2)
            .row_labels((0..10).map(|d| d.to_string()).collect())
            .save(&file)?;
        println!("wrote {}", file.display());
    }
    Ok(())
}
