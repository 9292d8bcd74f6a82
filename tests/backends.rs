//! Cross-backend agreement: a path, a sampler run, a training step and a guided sample computed
//! on another backend agree with the same computation on flex within float tolerance.
//!
//! - `cargo test --features wgpu --test backends`: the GPU code path on `Device::wgpu(..)`. On
//!   a machine without a GPU, Mesa's software Vulkan (lavapipe, Debian `mesa-vulkan-drivers`)
//!   provides the adapter; CI installs it and runs this.
//! - `cargo test --features ndarray --test backends`: the deprecated ndarray backend.
//!
//! With both features, wgpu is the one compared.
#![cfg(any(feature = "wgpu", feature = "ndarray"))]

mod common;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::assert_close;
use flowforge::core::tensor::{tensor_from_rows, tensor_to_vec};
use flowforge::data::{Toy2d, rng, standard_normal};
use flowforge::guidance::{CfgConvention, ClassifierFreeGuidance};
use flowforge::losses::RegressionLoss;
use flowforge::losses::time_sampling::TimeSampling;
use flowforge::nets::{Mlp, MlpConfig, predicting};
use flowforge::paths::{AffinePath, CondOt, Cosine};
use flowforge::samplers::oracle::{LabelledMixtureOracle, MixtureOracle};
use flowforge::samplers::{Euler, Heun, NoNoise, PathModel, SolveOptions, TimeGrid, solve};
use flowforge::train::{Trainer, TrainerConfig};
use flowforge::{Condition, Times, Velocity};

/// The backend under test.
#[cfg(feature = "wgpu")]
fn gpu() -> Device {
    Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
}

/// The backend under test.
#[cfg(not(feature = "wgpu"))]
#[allow(deprecated)]
fn gpu() -> Device {
    Device::ndarray()
}

fn cpu() -> Device {
    Device::flex()
}

#[test]
fn a_path_agrees_across_backends() {
    let path = AffinePath::new(Cosine::default());
    let rows0 = vec![vec![0.3, -1.2], vec![1.5, 0.2], vec![-0.7, 0.9]];
    let rows1 = vec![vec![1.0, 2.0], vec![-1.0, 0.5], vec![0.0, -2.0]];
    let t = Times::per_sample(vec![0.1, 0.5, 0.9]).unwrap();
    let on = |device: &Device| {
        let (x0, x1) = (tensor_from_rows(&rows0, device), tensor_from_rows(&rows1, device));
        let x_t = path.point(x0.clone(), x1.clone(), &t).unwrap();
        let target = path.target_kind(flowforge::PredictionKind::Velocity, x0, x1, &t).unwrap();
        (tensor_to_vec(x_t), tensor_to_vec(target))
    };
    let (cpu_x, cpu_v) = on(&cpu());
    let (gpu_x, gpu_v) = on(&gpu());
    assert_close("x_t vs flex", &gpu_x, &cpu_x, 1e-5, 1e-6);
    assert_close("velocity vs flex", &gpu_v, &cpu_v, 1e-5, 1e-6);
}

#[test]
fn a_sampler_run_agrees_across_backends() {
    let oracle = MixtureOracle::new(CondOt::default(), vec![0.5, 0.5], vec![vec![-2.0, 0.0], vec![2.0, 1.0]], vec![0.4, 0.6]).unwrap().predicting::<Velocity>();
    let path = AffinePath::new(CondOt::default());
    let run = |device: &Device| {
        let field = PathModel::new(&oracle, &path);
        let x0 = standard_normal([256, 2], &mut rng(1), device);
        tensor_to_vec(solve(&field, &Heun, x0, &TimeGrid::uniform(20).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap().x)
    };
    assert_close("Heun-20 samples vs flex", &run(&gpu()), &run(&cpu()), 1e-4, 1e-4);
}

#[test]
fn a_training_step_agrees_across_backends() {
    let initial = MlpConfig::new(2).with_hidden_dim(64).init(&cpu().autodiff()).unwrap();
    let step = |device: &Device| -> Vec<f64> {
        let train = device.clone().autodiff();
        let model = initial.clone().fork(&train);
        let mut trainer = Trainer::new(TrainerConfig::new(2).with_seed(4).with_progress(false), model).unwrap();
        trainer
            .fit(|model: &Mlp, rng, _| {
                let x1 = Toy2d::moons().sample_tensor(128, rng, &train)?;
                let x0 = standard_normal([128, 2], rng, &train);
                let t = TimeSampling::default().sample(128, rng, &CondOt::default())?;
                RegressionLoss::new(AffinePath::new(CondOt::default())).loss(&predicting::<Velocity, _>(model), x0, x1, None, &t, &Condition::none())
            })
            .unwrap();
        let net = trainer.into_parts().0.valid();
        let probe = tensor_from_rows(&[vec![0.5, -0.5], vec![-1.0, 1.0]], device);
        tensor_to_vec(net.forward(probe, &[tensor_from_rows(&[vec![0.3], vec![0.8]], device)]).unwrap())
    };
    assert_close("MLP output after two Adam steps vs flex", &step(&gpu()), &step(&cpu()), 1e-4, 1e-5);
}

/// The U-Net runs flowforge's fused convolution and GroupNorm kernels on flex and burn's own
/// ops elsewhere: a forward pass and the gradients of one loss agree.
#[test]
fn a_unet_step_agrees_across_backends() {
    use flowforge::core::Network;
    use flowforge::nets::{UNet, UNetConfig};
    let config = UNetConfig::new(1).with_channels(8).with_channel_multipliers(vec![1, 2]).with_attention_levels(vec![]).with_middle_attention(false).with_norm_groups(4).with_zero_init_output(false);
    let initial: UNet = config.init(&cpu().autodiff()).unwrap();
    let pixels: Vec<f32> = (0..2 * 8 * 8).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let run = |device: &Device| -> (Vec<f64>, Vec<f64>) {
        let train = device.clone().autodiff();
        let net = initial.clone().fork(&train);
        let x = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [2, 1, 8, 8]), &train).require_grad();
        let t = tensor_from_rows(&[vec![0.25], vec![0.75]], &train);
        let out = net.forward_network(x.clone(), t, &Condition::none()).unwrap();
        let grads = out.clone().square().mean().backward();
        let grad = x.grad(&grads).unwrap();
        (tensor_to_vec(out.inner().reshape([2, 64])), tensor_to_vec(grad.reshape([2, 64])))
    };
    let (gpu_out, gpu_grad) = run(&gpu());
    let (cpu_out, cpu_grad) = run(&cpu());
    assert_close("U-Net output vs flex", &gpu_out, &cpu_out, 1e-4, 1e-5);
    assert_close("U-Net input gradient vs flex", &gpu_grad, &cpu_grad, 1e-3, 1e-6);
}

#[test]
fn a_guided_sample_agrees_across_backends() {
    let oracle = LabelledMixtureOracle::new(CondOt::default(), vec![0.5, 0.5], vec![vec![-1.0, 0.0], vec![1.0, 0.0]], vec![0.8, 0.8], vec![0, 1]).unwrap().predicting::<Velocity>();
    let path = AffinePath::new(CondOt::default());
    let run = |device: &Device| {
        let guided = ClassifierFreeGuidance::new(&oracle, 3.0, CfgConvention::Interpolate, 2).unwrap();
        let labels = Tensor::<1, Int>::from_data(TensorData::new((0..128).map(|i| i % 2).collect::<Vec<i64>>(), [128]), device);
        let field = PathModel::new(&guided, &path).with_condition(Condition::labels(labels));
        let x0 = standard_normal([128, 2], &mut rng(2), device);
        tensor_to_vec(solve(&field, &Euler, x0, &TimeGrid::uniform(30).unwrap(), &mut NoNoise, SolveOptions::default()).unwrap().x)
    };
    assert_close("CFG samples vs flex", &run(&gpu()), &run(&cpu()), 1e-4, 1e-4);
}
