//! The image networks and VAEs: output shapes, typed errors for wrong shapes, and the exact
//! forward-mode JVP (tangent propagation) against central finite differences in f64.

mod common;

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use common::device_f64;
use flowforge::core::jvp::Dual;
use flowforge::losses::meanflow::AverageVelocityJvp;
use flowforge::nets::{ConvVaeConfig, DitConfig, MlpVaeConfig, UNetConfig, VariationalAutoencoder};
use flowforge::core::Network;
use flowforge::{Condition, Error, Times};

fn max_abs<const D: usize>(x: Tensor<D>) -> f64 {
    x.abs().max().into_scalar::<f64>()
}

/// `|JVP − (f(x + hẋ, t + hṫ) − f(x − hẋ, t − hṫ))/2h|` relative to the JVP's size.
fn relative_jvp_error<const D: usize>(f: impl Fn(Tensor<D>, f64) -> Tensor<D>, jvp: Tensor<D>, x: Tensor<D>, x_dot: Tensor<D>, t_dot: f64) -> f64 {
    // f64 throughout: round-off ~1e-16/h, truncation ~h²·f''' with f''' up to ~1e9 along t
    // (sinusoids of 1000·t), so h = 1e-7 balances both near 1e-9.
    let h = 1e-7;
    let fd = (f(x.clone() + x_dot.clone().mul_scalar(h), h * t_dot) - f(x - x_dot.mul_scalar(h), -h * t_dot)).div_scalar(2.0 * h);
    max_abs(jvp.clone() - fd) / max_abs(jvp).max(1e-12)
}

fn labels(values: &[i64], device: &burn::tensor::Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

#[test]
fn unet_shapes_conditioning_and_errors() {
    let device = device_f64();
    let net = UNetConfig::new(1).with_channels(8).with_channel_multipliers(vec![1, 2]).with_attention_levels(vec![1]).with_attention_heads(2).with_norm_groups(4).with_num_classes(3).init(&device).unwrap();
    let x = Tensor::<4>::random([2, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<2>::from_data(TensorData::new(vec![0.2, 0.7], [2, 1]), &device);
    let out = net.forward_network(x.clone(), t.clone(), &Condition::labels(labels(&[0, 2], &device))).unwrap();
    assert_eq!(out.dims(), [2, 1, 8, 8]);
    // The output convolution starts at zero: the untrained network predicts exactly 0.
    assert_eq!(max_abs(out), 0.0);
    let odd = Tensor::<4>::zeros([2, 1, 7, 7], &device);
    assert!(matches!(net.forward_network(odd, t.clone(), &Condition::none()), Err(Error::ShapeMismatch { .. })));
    let rgb = Tensor::<4>::zeros([2, 3, 8, 8], &device);
    assert!(matches!(net.forward_network(rgb, t.clone(), &Condition::none()), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(net.forward_network(x, t, &Condition::labels(labels(&[0, 4], &device))), Err(Error::ClassOutOfRange { .. })));
    assert!(UNetConfig::new(1).with_channels(6).with_norm_groups(4).init(&device).is_err(), "6 channels in 4 groups");
}

#[test]
fn unet_reproduces_the_w4_workload_architecture() {
    // ../shared/bench/WORKLOADS.md, W4: conv_in 1→32 @16; two Res per level (32, 64), stride-2
    // downsampling after both, a middle of two Res at 4×4 without attention, nearest ×2 + conv
    // on the way up, 64 sinusoidal time features → 128. PyTorch counts 781,281 parameters.
    let device = device_f64();
    let net = UNetConfig::benchmark_w4().init(&device).unwrap();
    assert_eq!(burn::module::Module::num_params(&net), 781_281);
    let x = Tensor::<4>::zeros([2, 1, 16, 16], &device);
    let t = Tensor::<2>::zeros([2, 1], &device);
    assert_eq!(net.forward_network(x, t.clone(), &Condition::none()).unwrap().dims(), [2, 1, 16, 16]);
    // Two downsamplings: 10×10 is not divisible by 4.
    assert!(matches!(net.forward_network(Tensor::<4>::zeros([2, 1, 10, 10], &device), t, &Condition::none()), Err(Error::ShapeMismatch { .. })));
}

#[test]
fn unet_jvp_matches_finite_differences() {
    let device = device_f64();
    let net = UNetConfig::new(2)
        .with_channels(8)
        .with_channel_multipliers(vec![1, 2])
        .with_attention_levels(vec![1])
        .with_attention_heads(2)
        .with_norm_groups(4)
        .with_res_blocks(2)
        .with_time_inputs(2)
        .with_num_classes(3)
        .with_zero_init_output(false)
        .init(&device)
        .unwrap();
    let x = Tensor::<4>::random([2, 2, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let x_dot = Tensor::<4>::random([2, 2, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let (a, b) = (vec![0.1, 0.4], vec![0.6, 0.9]);
    let condition = Condition::labels(labels(&[1, 3], &device));
    let (value, jvp) = net.average_velocity_jvp(x.clone(), x_dot.clone(), &Times::per_sample(a.clone()).unwrap(), 1.0, &Times::per_sample(b.clone()).unwrap(), 1.0, &condition).unwrap();
    assert_eq!(value.dims(), [2, 2, 8, 8]);
    let f = |x: Tensor<4>, dt: f64| {
        let column = |v: &[f64]| Tensor::<2>::from_data(TensorData::new(v.iter().map(|t| t + dt).collect::<Vec<_>>(), [2, 1]), &device);
        net.forward(x, &[column(&a), column(&b)], &condition).unwrap()
    };
    let error = relative_jvp_error(f, jvp, x, x_dot, 1.0);
    assert!(error < 1e-6, "U-Net JVP relative error {error:e}");
}

#[test]
fn dit_shapes_identity_start_and_jvp() {
    let device = device_f64();
    let zero = DitConfig::new(1, 8).with_patch_size(2).with_hidden(16).with_depth(2).with_heads(2).init(&device).unwrap();
    let x = Tensor::<4>::random([3, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<2>::from_data(TensorData::new(vec![0.1, 0.5, 0.9], [3, 1]), &device);
    let out = zero.forward_network(x.clone(), t.clone(), &Condition::none()).unwrap();
    assert_eq!(out.dims(), [3, 1, 8, 8]);
    assert_eq!(max_abs(out), 0.0, "adaLN-Zero: the untrained DiT predicts 0");
    assert!(matches!(zero.forward_network(Tensor::<4>::zeros([3, 1, 6, 6], &device), t.clone(), &Condition::none()), Err(Error::ShapeMismatch { .. })));
    assert!(DitConfig::new(1, 8).with_patch_size(3).init(&device).is_err(), "3 does not divide 8");

    let net = DitConfig::new(2, 8).with_patch_size(2).with_hidden(16).with_depth(2).with_heads(2).with_num_classes(2).with_zero_init(false).init(&device).unwrap();
    let x = Tensor::<4>::random([3, 2, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let x_dot = Tensor::<4>::random([3, 2, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let times = vec![0.1, 0.5, 0.9];
    let condition = Condition::labels(labels(&[0, 1, 2], &device));
    let column = |v: &[f64], dot: f64| Dual::new(Tensor::<2>::from_data(TensorData::new(v.to_vec(), [3, 1]), &device), Tensor::<2>::full([3, 1], dot, &device));
    let out = net.forward_dual(Dual::new(x.clone(), x_dot.clone()), &[column(&times, 0.5)], &condition).unwrap();
    let f = |x: Tensor<4>, dt: f64| net.forward(x, &[Tensor::<2>::from_data(TensorData::new(times.iter().map(|t| t + dt).collect::<Vec<_>>(), [3, 1]), &device)], &condition).unwrap();
    let error = relative_jvp_error(f, out.tangent, x, x_dot, 0.5);
    assert!(error < 1e-6, "DiT JVP relative error {error:e}");
}

#[test]
fn vae_shapes_and_jvps() {
    let device = device_f64();
    let vaes: Vec<(&str, Box<dyn VariationalAutoencoder>)> = vec![
        ("mlp", Box::new(MlpVaeConfig::new(64).with_latent_dim(4).with_hidden_dim(32).init(&device).unwrap())),
        ("conv", Box::new(ConvVaeConfig::new(1, 8).with_channels(4).with_latent_dim(4).init(&device).unwrap())),
    ];
    for (name, vae) in vaes {
        assert_eq!((vae.data_dim(), vae.latent_dim()), (64, 4), "{name}");
        let x = Tensor::<2>::random([5, 64], Distribution::Normal(0.0, 1.0), &device);
        let x_dot = Tensor::<2>::random([5, 64], Distribution::Normal(0.0, 1.0), &device);
        let (mu, logvar) = vae.encode(x.clone()).unwrap();
        assert_eq!((mu.dims(), logvar.dims()), ([5, 4], [5, 4]), "{name}");
        assert_eq!(vae.decode(mu).unwrap().dims(), [5, 64], "{name}");
        assert!(matches!(vae.encode(Tensor::<2>::zeros([5, 63], &device)), Err(Error::ShapeMismatch { .. })), "{name}");
        assert!(matches!(vae.decode(Tensor::<2>::zeros([5, 3], &device)), Err(Error::ShapeMismatch { .. })), "{name}");

        let (mu_dual, logvar_dual) = vae.encode_dual(Dual::new(x.clone(), x_dot.clone())).unwrap();
        let error = relative_jvp_error(|x, _| vae.encode(x).unwrap().0, mu_dual.tangent, x.clone(), x_dot.clone(), 0.0);
        assert!(error < 1e-6, "{name} encoder μ JVP error {error:e}");
        let error = relative_jvp_error(|x, _| vae.encode(x).unwrap().1, logvar_dual.tangent, x, x_dot, 0.0);
        assert!(error < 1e-6, "{name} encoder log σ² JVP error {error:e}");
        let z = Tensor::<2>::random([5, 4], Distribution::Normal(0.0, 1.0), &device);
        let z_dot = Tensor::<2>::random([5, 4], Distribution::Normal(0.0, 1.0), &device);
        let decoded = vae.decode_dual(Dual::new(z.clone(), z_dot.clone())).unwrap();
        let error = relative_jvp_error(|z, _| vae.decode(z).unwrap(), decoded.tangent, z, z_dot, 0.0);
        assert!(error < 1e-6, "{name} decoder JVP error {error:e}");
    }
}
