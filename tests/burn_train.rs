//! flowforge objectives under burn-train's `SupervisedTraining` on a CPU device: CFM trained
//! through burn-train's data loader, optimiser and learner reaches the moons, on one device and
//! with the multi-device strategy; a failing objective stops the run with its reason instead of
//! panicking.

mod common;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::lr_scheduler::constant::ConstantLr;
use burn::optim::AdamConfig;
use burn::tensor::{Device, Tensor, TensorData};
use burn::train::metric::LossMetric;
use burn::train::{ExecutionStrategy, Learner, MultiDeviceOptim, SupervisedTraining};
use common::*;
use flowforge::core::tensor::{ensure_finite, tensor_to_rows};
use flowforge::data::{Toy2d, rng, standard_normal};
use flowforge::losses::RegressionLoss;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::metrics::{as_rows, wasserstein2};
use flowforge::nets::{Mlp, MlpConfig, predicting};
use flowforge::paths::{AffinePath, CondOt};
use flowforge::samplers::{Euler, NoNoise, PathModel, SolveOptions, TimeGrid, solve};
use flowforge::train::learner::{ObjectiveModel, objective_fn};
use flowforge::{Condition, Velocity};
use rand::rngs::StdRng;
use std::sync::Arc;

/// Rows of 2-D points → a `[batch, 2]` tensor on the loader's device.
#[derive(Clone)]
struct Points;

impl Batcher<[f64; 2], Tensor<2>> for Points {
    fn batch(&self, items: Vec<[f64; 2]>, device: &Device) -> Tensor<2> {
        let n = items.len();
        let flat: Vec<f64> = items.into_iter().flatten().collect();
        Tensor::from_data(TensorData::new(flat, [n, 2]), device)
    }
}

fn loader(points: Vec<[f64; 2]>, batch: usize, seed: u64) -> Arc<dyn DataLoader<Tensor<2>>> {
    DataLoaderBuilder::new(Points).batch_size(batch).shuffle(seed).build(InMemDataset::new(points))
}

/// CFM on the linear path with independent coupling, as a burn-train model.
fn cfm_model(network: Mlp, seed: u64) -> ObjectiveModel<Mlp, impl flowforge::train::learner::Objective<Mlp, Batch = Tensor<2>>> {
    let objective = objective_fn(|net: &Mlp, x1: Tensor<2>, rng: &mut StdRng| {
        ensure_finite("data batch", &x1)?;
        let [n, d] = x1.dims();
        let x0 = standard_normal([n, d], rng, &x1.device());
        let t = TimeSampling::default().sample(n, rng, &CondOt::default())?;
        RegressionLoss::new(AffinePath::new(CondOt::default())).loss(&predicting::<Velocity, _>(net), x0, x1, None, &t, &Condition::none())
    });
    ObjectiveModel::new(network, objective, seed)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flowforge-burn-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// W2 between 500 Euler-50 samples of `net` and 500 fresh moons.
fn w2_to_moons(net: &Mlp) -> f64 {
    let dev = device();
    let velocity = predicting::<Velocity, _>(net);
    let path = AffinePath::new(CondOt::default());
    let field = PathModel::new(&velocity, &path);
    let x0 = standard_normal([500, 2], &mut rng(11), &dev);
    let x = solve(&field, &Euler, x0, &TimeGrid::uniform(50).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap().x;
    let target = as_rows(&Toy2d::moons().sample(500, &mut rng(12)).unwrap());
    wasserstein2(&tensor_to_rows(x), &target).unwrap()
}

fn train(strategy: Option<ExecutionStrategy>, data: Vec<[f64; 2]>, name: &str) -> burn::train::LearningResult<ObjectiveModel<Mlp, impl flowforge::train::learner::Objective<Mlp, Batch = Tensor<2>>>> {
    let dev = device().autodiff();
    let network = MlpConfig::new(2).with_hidden_dim(64).with_hidden_layers(2).init(&dev).unwrap();
    let model = cfm_model(network, 5);
    let valid: Vec<[f64; 2]> = Toy2d::moons().sample(256, &mut rng(2)).unwrap();
    let mut training = SupervisedTraining::new(scratch(name), loader(data, 128, 3), loader(valid, 128, 4))
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .with_application_logger(None)
        .num_epochs(6);
    if let Some(strategy) = strategy {
        training = training.with_training_strategy(strategy.into());
    }
    training.launch(Learner::new(model, AdamConfig::new().init(), ConstantLr::new(3e-3)))
}

#[test]
fn cfm_trains_under_supervised_training_on_one_cpu_device() {
    let untrained = MlpConfig::new(2).with_hidden_dim(64).with_hidden_layers(2).init(&device()).unwrap();
    let before = w2_to_moons(&untrained);
    eprintln!("W2 untrained: {before:.3}");
    // 4,096 moons, batch 128, 6 epochs: 192 optimiser steps through burn-train's learner.
    let data = Toy2d::moons().sample(4096, &mut rng(1)).unwrap();
    let result = train(None, data, "single");
    assert!(result.error.is_none(), "training failed: {:?}", result.error);
    let after = w2_to_moons(&result.model.into_network());
    eprintln!("W2 after burn-train: {after:.3}");
    // Untrained, the samples stay near N(0, I) (W2 ≈ 0.9); trained, they reach the moons.
    assert!(before > 0.6, "untrained W2 {before}");
    assert!(after < 0.35, "trained W2 {after} (untrained {before})");
}

#[test]
fn cfm_trains_with_the_multi_device_strategy() {
    // burn-train's data-parallel strategy over two CPU devices (the same flex device twice;
    // the gradients of the two replicas are summed on the main device).
    let dev = device().autodiff();
    let data = Toy2d::moons().sample(4096, &mut rng(1)).unwrap();
    let strategy = ExecutionStrategy::multi(vec![dev.clone(), dev], MultiDeviceOptim::OptimMainDevice);
    let result = train(Some(strategy), data, "multi");
    assert!(result.error.is_none(), "training failed: {:?}", result.error);
    let after = w2_to_moons(&result.model.into_network());
    eprintln!("W2 after burn-train: {after:.3}");
    assert!(after < 0.35, "trained W2 {after}");
}

#[test]
fn a_failing_objective_stops_the_run_with_its_reason() {
    let mut data = Toy2d::moons().sample(512, &mut rng(1)).unwrap();
    for point in data.iter_mut() {
        point[0] = f64::NAN;
    }
    let result = train(None, data, "nan");
    let error = result.error.expect("non-finite data must stop the run");
    let message = format!("{error:?}");
    assert!(message.contains("data batch"), "the error names what was wrong: {message}");
}
