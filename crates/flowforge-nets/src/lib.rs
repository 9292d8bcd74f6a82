//! # flowforge-nets
//!
//! Networks for flowforge's objectives, each an `XConfig` + `init(&device)` + `forward` in
//! burn's style, and each with `forward_dual`: the exact forward-mode JVP by tangent
//! propagation ([`Dual`]) that the MeanFlow objective needs (burn has no forward-mode AD).
//!
//! - [`SinusoidalEmbedding`]: transformer-style time features (Vaswani et al. 2017; Ho et al.
//!   2020), or Gaussian Fourier features ([`GaussianFourierConfig`]; Tancik et al. 2020, Song et
//!   al. 2021);
//! - [`Mlp`]: the velocity / denoiser / average-velocity MLP of the 2-D experiments, optionally
//!   class-conditional (a learned embedding per class plus a learned **null label** for
//!   classifier-free guidance) and conditioned on continuous vectors; with `output_dim` set to a
//!   number of classes it is a noise-aware classifier `p(y | x_t, t)`.
//!
//! - [`UNet`]: DDPM's image U-Net (residual GroupNorm/SiLU blocks, attention at low resolution,
//!   time and class conditioning);
//! - [`Dit`]: a diffusion transformer (patchify, adaLN-Zero blocks; Peebles & Xie 2023);
//! - [`MlpVae`], [`ConvVae`]: VAE encoders/decoders behind [`VariationalAutoencoder`].
//!
//! The image networks are written once on [`Jet`]s (a value with an optional tangent), so
//! `forward` and the exact `forward_dual` share one code path.
//!
//! Networks implement [`Network`] and are not tied to a prediction kind; [`predicting`]
//! declares one, so the same `Mlp` is a velocity model for flow matching or a noise model for
//! DDPM.
#![warn(missing_docs)]

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use flowforge_core::jvp::{Dual, dual_column};
pub use flowforge_core::{AsModel, predicting};
use flowforge_core::tensor::check_labels;
use flowforge_core::{Condition, Error, Network, Result, Times};
use flowforge_losses::meanflow::{AverageVelocityJvp, AverageVelocityModel};
use flowforge_kernels::FusedActivation;
use serde::{Deserialize, Serialize};

/// `Network<4>` and MeanFlow's average-velocity traits for an image network with
/// `forward(x, &[t…], condition)` and `forward_dual(x, &[ṫ…], condition)`.
macro_rules! image_network_impls {
    ($ty:ty) => {
        impl $ty {
            /// # Shapes
            /// `x`: `[batch, C, H, W]`; each time `[batch, 1]` → `[batch, C, H, W]`.
            ///
            /// # Errors
            /// [`Error::ShapeMismatch`] for an image shape the network does not take or the
            /// wrong number or shape of times; the conditioning's label errors.
            pub fn forward(&self, x: Tensor<4>, times: &[Tensor<2>], condition: &Condition) -> Result<Tensor<4>> {
                let times: Vec<Jet<2>> = times.iter().cloned().map(Jet::plain).collect();
                Ok(self.run(Jet::plain(x), &times, condition)?.value)
            }

            /// The forward pass with its exact JVP along `(ẋ, ṫ…)` (the condition is held
            /// fixed), by tangent propagation through the same code path.
            ///
            /// # Errors
            /// As `forward`.
            pub fn forward_dual(&self, x: Dual<4>, times: &[Dual<2>], condition: &Condition) -> Result<Dual<4>> {
                let times: Vec<Jet<2>> = times.iter().cloned().map(Jet::from_dual).collect();
                Ok(self.run(Jet::from_dual(x), &times, condition)?.into_dual())
            }
        }

        impl flowforge_core::Network<4> for $ty {
            fn forward_network(&self, x: Tensor<4>, time: Tensor<2>, condition: &Condition) -> Result<Tensor<4>> {
                self.forward(x, &[time], condition)
            }
        }

        impl AverageVelocityModel<4> for $ty {
            fn average_velocity(&self, x: Tensor<4>, a: &Times, b: &Times, condition: &Condition) -> Result<Tensor<4>> {
                let device = x.device();
                self.forward(x, &[a.to_column(&device), b.to_column(&device)], condition)
            }
        }

        impl AverageVelocityJvp<4> for $ty {
            fn average_velocity_jvp(
                &self,
                x: Tensor<4>,
                x_dot: Tensor<4>,
                a: &Times,
                a_dot: f64,
                b: &Times,
                b_dot: f64,
                condition: &Condition,
            ) -> Result<(Tensor<4>, Tensor<4>)> {
                let device = x.device();
                let column = |t: &Times, dot: f64| dual_column(&t.to_vec(), &vec![dot; t.len()], &device);
                let out = self.forward_dual(Dual::new(x, x_dot), &[column(a, a_dot), column(b, b_dot)], condition)?;
                Ok((out.primal, out.tangent))
            }
        }
    };
}

pub mod conditioning;
pub mod dit;
pub mod jet;
pub mod unet;
pub mod vae;

pub use conditioning::{Conditioning, ConditioningConfig};
pub use dit::{Dit, DitConfig};
pub use jet::Jet;
pub use unet::{UNet, UNetConfig};
pub use vae::{ConvVae, ConvVaeConfig, MlpVae, MlpVaeConfig, VariationalAutoencoder};

image_network_impls!(UNet);
image_network_impls!(Dit);

/// `[sin(s·t·f_k), cos(s·t·f_k)]` with `f_k = exp(−ln(max_period)·k/(dim/2))`, k < dim/2.
#[derive(Config, Debug, PartialEq)]
pub struct SinusoidalEmbeddingConfig {
    /// Output features (even).
    #[config(default = 64)]
    pub dim: usize,
    /// Longest period, in units of `s·t`.
    #[config(default = 10000.0)]
    pub max_period: f64,
    /// Scale `s` applied to t ∈ [0, 1] (1000 maps it to DDPM's integer range).
    #[config(default = 1000.0)]
    pub scale: f64,
}

impl SinusoidalEmbeddingConfig {
    /// Build.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for an odd or zero `dim`; [`Error::InvalidParameter`] for a
    /// non-positive period or scale.
    pub fn init(&self) -> Result<SinusoidalEmbedding> {
        check_features(self.dim, self.scale)?;
        flowforge_core::error::check::positive("max_period", self.max_period)?;
        let half = self.dim / 2;
        let frequencies = (0..half).map(|k| self.scale * (-(self.max_period.ln()) * k as f64 / half as f64).exp()).collect();
        Ok(SinusoidalEmbedding { frequencies })
    }
}

/// A sin/cos feature count must be even and positive, and its scale positive.
fn check_features(dim: usize, scale: f64) -> Result<()> {
    if dim == 0 || !dim.is_multiple_of(2) {
        return Err(Error::InvalidCount { name: "dim", value: dim as i64, requirement: "even and >= 2" });
    }
    flowforge_core::error::check::positive("scale", scale)?;
    Ok(())
}

/// Gaussian Fourier features `[sin(2π B t), cos(2π B t)]` with fixed random frequencies
/// `B_k ~ N(0, scale²)` (Tancik et al., *Fourier Features*, NeurIPS 2020; the time embedding of
/// Song et al., *Score-Based Generative Modeling through SDEs*, ICLR 2021).
#[derive(Config, Debug, PartialEq)]
pub struct GaussianFourierConfig {
    /// Output features (even).
    #[config(default = 64)]
    pub dim: usize,
    /// Standard deviation of the frequencies (16 in Song et al.).
    #[config(default = 16.0)]
    pub scale: f64,
    /// Seed of the frequencies (they are fixed, not trained).
    #[config(default = 0)]
    pub seed: u64,
}

impl GaussianFourierConfig {
    /// Draw the frequencies.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for an odd or zero `dim`; [`Error::InvalidParameter`] for a
    /// non-positive scale.
    pub fn init(&self) -> Result<SinusoidalEmbedding> {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        check_features(self.dim, self.scale)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let frequencies = (0..self.dim / 2)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                2.0 * core::f64::consts::PI * self.scale * z
            })
            .collect();
        Ok(SinusoidalEmbedding { frequencies })
    }
}

/// Sinusoidal time features `[sin(f_k t), cos(f_k t)]` (no trained parameters): transformer
/// frequencies from [`SinusoidalEmbeddingConfig`] or random ones from [`GaussianFourierConfig`].
#[derive(Module, Debug)]
pub struct SinusoidalEmbedding {
    #[module(skip)]
    frequencies: Vec<f64>,
}

impl SinusoidalEmbedding {
    /// Output features.
    pub fn dim(&self) -> usize {
        2 * self.frequencies.len()
    }

    /// The frequencies as a row `[1, dim/2]`.
    pub(crate) fn frequency_row(&self, device: &Device) -> Tensor<2> {
        self.frequencies(device)
    }

    fn frequencies(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(self.frequencies.clone(), [1, self.frequencies.len()]), device)
    }

    /// # Shapes
    /// `t`: `[batch, 1]` → `[batch, dim]`.
    pub fn forward(&self, t: Tensor<2>) -> Tensor<2> {
        let arg = t.clone() * self.frequencies(&t.device());
        Tensor::cat(vec![arg.clone().sin(), arg.cos()], 1)
    }

    /// The embedding with its tangent.
    pub fn forward_dual(&self, t: Dual<2>) -> Dual<2> {
        let f = self.frequencies(&t.primal.device());
        let arg = t.mul_constant(f);
        Dual::cat(vec![arg.clone().sin(), arg.cos()], 1)
    }
}

/// How an MLP sees time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TimeFeatures {
    /// t itself, one feature (the benchmark workloads' `cat[x, t]`).
    Raw,
    /// Sinusoidal features.
    Sinusoidal {
        /// Features per time.
        dim: usize,
        /// Scale applied to t.
        scale: f64,
    },
    /// Gaussian Fourier features ([`GaussianFourierConfig`], seed 0).
    GaussianFourier {
        /// Features per time.
        dim: usize,
        /// Standard deviation of the frequencies.
        scale: f64,
    },
}

/// The nonlinearity between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x σ(x)`.
    Silu,
    /// `max(x, 0)`.
    Relu,
    /// Exact GELU.
    Gelu,
}

impl Activation {
    fn apply(self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Activation::Silu => activation::silu(x),
            Activation::Relu => activation::relu(x),
            Activation::Gelu => activation::gelu(x),
        }
    }

    fn apply_dual(self, x: Dual<2>) -> Dual<2> {
        match self {
            Activation::Silu => x.silu(),
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
        }
    }
}

/// Configuration of an [`Mlp`]: `out = L_last(act(… act(L_1([x, φ(t₁), …])) …))`.
#[derive(Config, Debug, PartialEq)]
pub struct MlpConfig {
    /// Dimension of x (and of the output).
    pub data_dim: usize,
    /// Width of the hidden layers.
    #[config(default = 256)]
    pub hidden_dim: usize,
    /// Number of hidden layers (3 gives 4 linear layers, the benchmark workloads' MLP).
    #[config(default = 3)]
    pub hidden_layers: usize,
    /// Time inputs: 1 for velocity / noise models, 2 for MeanFlow's average velocity ū(x, a, b).
    #[config(default = 1)]
    pub time_inputs: usize,
    /// How time enters.
    #[config(default = "TimeFeatures::Raw")]
    pub time_features: TimeFeatures,
    /// Nonlinearity.
    #[config(default = "Activation::Silu")]
    pub activation: Activation,
    /// Number of classes for class conditioning (0: none). The embedding table has one more
    /// row, the null label `num_classes`, which stands for "no class" (label dropout, CFG).
    #[config(default = 0)]
    pub num_classes: usize,
    /// Dimension of continuous conditioning vectors (0: none).
    #[config(default = 0)]
    pub condition_dim: usize,
    /// Output width; `None` is `data_dim` (a velocity / denoiser), a number of classes makes
    /// the network a classifier's logits.
    #[config(default = "None")]
    pub output_dim: Option<usize>,
}

impl MlpConfig {
    /// Build with PyTorch's default initialisation (`U(±1/√fan_in)` for weights and biases).
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for zero sizes or time inputs outside {1, 2}.
    pub fn init(&self, device: &Device) -> Result<Mlp> {
        for (name, value) in [("data_dim", self.data_dim), ("hidden_dim", self.hidden_dim), ("hidden_layers", self.hidden_layers)] {
            flowforge_core::error::check::count_at_least_one(name, value)?;
        }
        if !(1..=2).contains(&self.time_inputs) {
            return Err(Error::InvalidCount { name: "time_inputs", value: self.time_inputs as i64, requirement: "1 or 2" });
        }
        let (embedding, per_time) = match self.time_features {
            TimeFeatures::Raw => (None, 1),
            TimeFeatures::Sinusoidal { dim, scale } => {
                let e = SinusoidalEmbeddingConfig::new().with_dim(dim).with_scale(scale).init()?;
                (Some(e), dim)
            }
            TimeFeatures::GaussianFourier { dim, scale } => (Some(GaussianFourierConfig::new().with_dim(dim).with_scale(scale).init()?), dim),
        };
        let input = self.data_dim + per_time * self.time_inputs;
        let mut layers = vec![LinearConfig::new(input, self.hidden_dim).init(device)];
        for _ in 1..self.hidden_layers {
            layers.push(LinearConfig::new(self.hidden_dim, self.hidden_dim).init(device));
        }
        let output_dim = self.output_dim.unwrap_or(self.data_dim);
        flowforge_core::error::check::count_at_least_one("output_dim", output_dim)?;
        layers.push(LinearConfig::new(self.hidden_dim, output_dim).init(device));
        // Class embeddings enter as a per-class bias of the first layer (N(0, 1) rows, as
        // torch.nn.Embedding); a vector condition through a bias-free linear map.
        let class_embedding = (self.num_classes > 0)
            .then(|| Initializer::Normal { mean: 0.0, std: 1.0 }.init([self.num_classes + 1, self.hidden_dim], device));
        let condition_projection =
            (self.condition_dim > 0).then(|| LinearConfig::new(self.condition_dim, self.hidden_dim).with_bias(false).init(device));
        Ok(Mlp {
            layers,
            embedding,
            class_embedding,
            condition_projection,
            activation: self.activation,
            time_inputs: self.time_inputs,
            num_classes: self.num_classes,
        })
    }
}

/// A multilayer perceptron of `(x, t)` (or `(x, a, b)`), optionally conditioned on a class
/// label and / or a continuous vector:
/// `h₁ = W₁[x, φ(t)] + b₁ + E[y] + W_c c`, then `act` and the remaining layers.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    embedding: Option<SinusoidalEmbedding>,
    class_embedding: Option<Param<Tensor<2>>>,
    condition_projection: Option<Linear>,
    #[module(skip)]
    activation: Activation,
    time_inputs: usize,
    num_classes: usize,
}

impl Mlp {
    /// Number of time inputs.
    pub fn time_inputs(&self) -> usize {
        self.time_inputs
    }

    /// Number of classes (0 for an unconditional network); the null label is this number.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The first layer's conditioning bias `E[y] + W_c c`, `[batch, hidden]`, or `None`.
    ///
    /// A conditional network given no labels uses the null label (its unconditional
    /// prediction); a continuous condition that is absent contributes nothing.
    fn condition_bias(&self, batch: usize, condition: &Condition, device: &Device) -> Result<Option<Tensor<2>>> {
        let mut bias: Option<Tensor<2>> = None;
        if let Some(rows) = class_embedding_rows(self.class_embedding.as_ref(), condition, self.num_classes, batch, device, "MLP")? {
            bias = Some(rows);
        }
        match (&self.condition_projection, &condition.vectors) {
            (None, Some(v)) => {
                return Err(Error::ShapeMismatch { what: "condition vectors (the MLP has condition_dim = 0)", expected: vec![batch, 0], actual: v.dims().to_vec() });
            }
            (Some(projection), Some(v)) => {
                let expected = projection.weight.dims()[0];
                if v.dims() != [batch, expected] {
                    return Err(Error::ShapeMismatch { what: "condition vectors", expected: vec![batch, expected], actual: v.dims().to_vec() });
                }
                let projected = projection.forward(v.clone());
                bias = Some(match bias {
                    Some(b) => b + projected,
                    None => projected,
                });
            }
            _ => {}
        }
        Ok(bias)
    }

    fn check_inputs(&self, x_dims: [usize; 2], times: &[[usize; 2]]) -> Result<()> {
        if times.len() != self.time_inputs {
            return Err(Error::ShapeMismatch { what: "number of time inputs", expected: vec![self.time_inputs], actual: vec![times.len()] });
        }
        let per_time = self.embedding.as_ref().map_or(1, SinusoidalEmbedding::dim);
        let data_dim = self.layers[0].weight.dims()[0] - per_time * self.time_inputs;
        if x_dims[1] != data_dim {
            return Err(Error::ShapeMismatch { what: "MLP input x", expected: vec![x_dims[0], data_dim], actual: x_dims.to_vec() });
        }
        if let Some(bad) = times.iter().find(|t| **t != [x_dims[0], 1]) {
            return Err(Error::ShapeMismatch { what: "MLP time column", expected: vec![x_dims[0], 1], actual: bad.to_vec() });
        }
        Ok(())
    }

    /// # Shapes
    /// `x`: `[batch, data_dim]`; each time `[batch, 1]` → `[batch, data_dim]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for the wrong number or shape of times, or an `x` of another
    /// dimension than the network's.
    pub fn forward(&self, x: Tensor<2>, times: &[Tensor<2>]) -> Result<Tensor<2>> {
        self.forward_conditional(x, times, &Condition::none())
    }

    /// [`Mlp::forward`] with a condition (class labels `[batch]`, vectors `[batch, condition_dim]`).
    ///
    /// # Errors
    /// As [`Mlp::forward`]; [`Error::ClassOutOfRange`] for a label outside `0..=num_classes`
    /// (or any label on an unconditional network); [`Error::ShapeMismatch`] for labels or
    /// vectors of the wrong size.
    pub fn forward_conditional(&self, x: Tensor<2>, times: &[Tensor<2>], condition: &Condition) -> Result<Tensor<2>> {
        self.check_inputs(x.dims(), &times.iter().map(Tensor::dims).collect::<Vec<_>>())?;
        let condition_bias = self.condition_bias(x.dims()[0], condition, &x.device())?;
        let mut parts = vec![x];
        for t in times {
            parts.push(match &self.embedding {
                Some(e) => e.forward(t.clone()),
                None => t.clone(),
            });
        }
        let mut h = flowforge_kernels::cat_columns(parts);
        // A SiLU network without a conditioning bias is one call: on flex, in inference, it runs
        // every layer on each block of rows while the block is in cache.
        if self.activation == Activation::Silu && condition_bias.is_none() {
            let layers: Vec<_> = self.layers.iter().map(|l| (l.weight.val(), l.bias.as_ref().map(Param::val))).collect();
            return flowforge_kernels::silu_mlp(h, &layers);
        }
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let extra_bias = if i == 0 { condition_bias.as_ref() } else { None };
            // The last SiLU layer and the output layer in one call: on flex the output layer
            // then reads each block of hidden rows from cache, as soon as it is finished.
            if i + 1 == last && self.activation == Activation::Silu && extra_bias.is_none() {
                let out = &self.layers[last];
                let bias = |l: &Linear| l.bias.as_ref().map(Param::val);
                return flowforge_kernels::linear_silu_linear(h, layer.weight.val(), bias(layer), out.weight.val(), bias(out));
            }
            let fused = match (i < last, self.activation) {
                (false, _) => Some(FusedActivation::Identity),
                (true, Activation::Silu) => Some(FusedActivation::Silu),
                (true, _) => None,
            };
            // One fused kernel for `act(hW + b)` (flowforge-kernels) unless a conditioning bias
            // has to enter between the affine map and the activation.
            if let (Some(act), None) = (fused, extra_bias) {
                h = flowforge_kernels::linear(h, layer.weight.val(), layer.bias.as_ref().map(Param::val), act)?;
                continue;
            }
            h = layer.forward(h);
            if let Some(bias) = extra_bias {
                h = h + bias.clone();
            }
            if i < last {
                h = self.activation.apply(h);
            }
        }
        Ok(h)
    }

    /// [`Mlp::forward`] with tangents: `(out, ∂out · (ẋ, ṫ…))`, exact.
    ///
    /// # Errors
    /// As [`Mlp::forward`].
    pub fn forward_dual(&self, x: Dual<2>, times: &[Dual<2>]) -> Result<Dual<2>> {
        self.forward_dual_conditional(x, times, &Condition::none())
    }

    /// [`Mlp::forward_conditional`] with tangents. The condition is held fixed (labels are
    /// discrete, and MeanFlow's tangent is along (x, a, b) only), so it shifts the primal.
    ///
    /// # Errors
    /// As [`Mlp::forward_conditional`].
    pub fn forward_dual_conditional(&self, x: Dual<2>, times: &[Dual<2>], condition: &Condition) -> Result<Dual<2>> {
        self.check_inputs(x.primal.dims(), &times.iter().map(|t| t.primal.dims()).collect::<Vec<_>>())?;
        let condition_bias = self.condition_bias(x.primal.dims()[0], condition, &x.primal.device())?;
        let mut parts = vec![x];
        for t in times {
            parts.push(match &self.embedding {
                Some(e) => e.forward_dual(t.clone()),
                None => t.clone(),
            });
        }
        let mut h = Dual::cat(parts, 1);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = linear_dual(layer, h);
            if i == 0 && let Some(bias) = &condition_bias {
                h = Dual::new(h.primal + bias.clone(), h.tangent);
            }
            if i < last {
                h = self.activation.apply_dual(h);
            }
        }
        Ok(h)
    }
}

/// The rows `E[y]` `[batch, width]` of a class-embedding table (with its null row
/// `num_classes`) for the condition's labels, the null label where none are given, and `None`
/// for an unconditional network without labels.
///
/// # Errors
/// [`Error::ClassOutOfRange`] for labels given to an unconditional network or outside
/// `0..=num_classes`; [`Error::ShapeMismatch`] for a label count other than `batch`.
pub(crate) fn class_embedding_rows(
    table: Option<&Param<Tensor<2>>>,
    condition: &Condition,
    num_classes: usize,
    batch: usize,
    device: &Device,
    network: &'static str,
) -> Result<Option<Tensor<2>>> {
    let Some(table) = table else {
        return match condition.labels {
            Some(_) => Err(Error::ClassOutOfRange { label: 0, num_classes: 0, null_allowed: false, what: "an unconditional network (num_classes = 0) given class labels" }),
            None => Ok(None),
        };
    };
    let labels = match &condition.labels {
        Some(l) => {
            if l.dims()[0] != batch {
                return Err(Error::ShapeMismatch { what: "class labels vs x", expected: vec![batch], actual: l.dims().to_vec() });
            }
            check_labels(l, num_classes, true, network)?;
            l.clone()
        }
        None => Tensor::<1, Int>::full([batch], num_classes as i64, device),
    };
    Ok(Some(table.val().select(0, labels)))
}

/// A linear layer on a dual value: `(xW + b, ẋW)`.
pub fn linear_dual(layer: &Linear, x: Dual<2>) -> Dual<2> {
    let primal = layer.forward(x.primal);
    let tangent = x.tangent.matmul(layer.weight.val());
    Dual::new(primal, tangent)
}

impl Network<2> for Mlp {
    fn forward_network(&self, x: Tensor<2>, time: Tensor<2>, condition: &Condition) -> Result<Tensor<2>> {
        flowforge_core::tensor::ensure_batch("x vs time column", &x, time.dims()[0])?;
        self.forward_conditional(x, &[time], condition)
    }
}

impl AverageVelocityModel<2> for Mlp {
    fn average_velocity(&self, x: Tensor<2>, a: &Times, b: &Times, condition: &Condition) -> Result<Tensor<2>> {
        let device = x.device();
        self.forward_conditional(x, &[a.to_column(&device), b.to_column(&device)], condition)
    }
}

impl AverageVelocityJvp<2> for Mlp {
    fn average_velocity_jvp(
        &self,
        x: Tensor<2>,
        x_dot: Tensor<2>,
        a: &Times,
        a_dot: f64,
        b: &Times,
        b_dot: f64,
        condition: &Condition,
    ) -> Result<(Tensor<2>, Tensor<2>)> {
        let device = x.device();
        let column = |t: &Times, dot: f64| dual_column(&t.to_vec(), &vec![dot; t.len()], &device);
        let out = self.forward_dual_conditional(Dual::new(x, x_dot), &[column(a, a_dot), column(b, b_dot)], condition)?;
        Ok((out.primal, out.tangent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowforge_core::{Model, Velocity};
    use flowforge_core::tensor::{tensor_from_rows, tensor_to_vec};
    use flowforge_losses::meanflow::FiniteDifference;

    #[test]
    fn gaussian_fourier_frequencies_have_the_requested_spread_and_give_sin_cos_pairs() {
        let device = Device::flex();
        let embedding = GaussianFourierConfig::new().with_dim(4000).with_scale(3.0).init().unwrap();
        let f = &embedding.frequencies;
        let n = f.len() as f64;
        let mean = f.iter().sum::<f64>() / n;
        let sd = (f.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        // 2π · 3 = 18.85; the sample sd of 2,000 normals is within 5% with overwhelming odds.
        assert!((sd / (2.0 * core::f64::consts::PI * 3.0) - 1.0).abs() < 0.05, "sd {sd}");
        let t = tensor_from_rows(&[vec![0.3]], &device);
        let out = tensor_to_vec(embedding.forward(t));
        let half = f.len();
        for k in [0, 7, half - 1] {
            assert!((out[k] - (f[k] * 0.3).sin()).abs() < 1e-4 * (1.0 + f[k].abs()));
            assert!((out[half + k] - (f[k] * 0.3).cos()).abs() < 1e-4 * (1.0 + f[k].abs()));
        }
        // Fixed by the seed.
        assert_eq!(GaussianFourierConfig::new().init().unwrap().frequencies, GaussianFourierConfig::new().init().unwrap().frequencies);
    }

    #[test]
    fn shapes_and_parameter_count() {
        let device = Device::flex();
        let mlp = MlpConfig::new(2).init(&device).unwrap();
        // The workloads' MLP: 3→256→256→256→2 = 133,122 parameters.
        assert_eq!(mlp.num_params(), 133_122);
        let x = tensor_from_rows(&[vec![0.1, 0.2], vec![0.3, 0.4], vec![0.5, 0.6]], &device);
        let model = predicting::<Velocity, _>(&mlp);
        let out = model.predict(x, &Times::shared(0.5, 3).unwrap(), &Condition::none()).unwrap();
        assert_eq!(out.tensor().dims(), [3, 2]);
        assert!(matches!(mlp.forward(tensor_from_rows(&[vec![0.0, 0.0]], &device), &[]), Err(Error::ShapeMismatch { .. })));
        // An input of the wrong dimension is a typed error, not a panic inside burn's Linear.
        let three = tensor_from_rows(&[vec![0.0, 0.0, 0.0]], &device);
        let t = tensor_from_rows(&[vec![0.5]], &device);
        assert!(matches!(mlp.forward(three, &[t]), Err(Error::ShapeMismatch { what: "MLP input x", .. })));
    }

    #[test]
    fn exact_jvp_matches_finite_differences() {
        let device = Device::flex();
        for features in [TimeFeatures::Raw, TimeFeatures::Sinusoidal { dim: 16, scale: 10.0 }, TimeFeatures::GaussianFourier { dim: 16, scale: 1.0 }] {
            for act in [Activation::Silu, Activation::Gelu] {
                let mlp = MlpConfig::new(2).with_hidden_dim(32).with_time_inputs(2).with_time_features(features).with_activation(act).init(&device).unwrap();
                let x = tensor_from_rows(&[vec![0.3, -0.7], vec![1.2, 0.4], vec![-0.5, 0.9]], &device);
                let v = tensor_from_rows(&[vec![1.0, 0.5], vec![-0.3, 0.8], vec![0.2, -1.1]], &device);
                let a = Times::per_sample(vec![0.1, 0.4, 0.0]).unwrap();
                let b = Times::per_sample(vec![0.6, 0.4, 1.0]).unwrap();
                let (_, exact) = mlp.average_velocity_jvp(x.clone(), v.clone(), &a, 1.0, &b, 0.0, &Condition::none()).unwrap();
                let fd = FiniteDifference::new(&mlp, 1e-3).unwrap();
                let (_, approx) = fd.average_velocity_jvp(x, v, &a, 1.0, &b, 0.0, &Condition::none()).unwrap();
                for (e, f) in tensor_to_vec(exact).iter().zip(tensor_to_vec(approx)) {
                    assert!((e - f).abs() <= 2e-3 * (1.0 + e.abs()), "{features:?} {act:?}: {e} vs {f}");
                }
            }
        }
    }

    #[test]
    fn conditional_jvp_matches_finite_differences_and_labels_change_the_output() {
        use burn::tensor::Int;
        let device = Device::flex();
        let mlp = MlpConfig::new(2).with_hidden_dim(32).with_time_inputs(2).with_num_classes(4).with_condition_dim(3).init(&device).unwrap();
        let x = tensor_from_rows(&[vec![0.3, -0.7], vec![1.2, 0.4]], &device);
        let v = tensor_from_rows(&[vec![1.0, 0.5], vec![-0.3, 0.8]], &device);
        let a = Times::per_sample(vec![0.1, 0.4]).unwrap();
        let b = Times::per_sample(vec![0.6, 0.9]).unwrap();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 4], [2]), &device);
        let vectors = tensor_from_rows(&[vec![0.5, -1.0, 2.0], vec![0.0, 0.3, -0.2]], &device);
        let condition = Condition { labels: Some(labels), vectors: Some(vectors) };
        let (primal, exact) = mlp.average_velocity_jvp(x.clone(), v.clone(), &a, 1.0, &b, 0.0, &condition).unwrap();
        let fd = FiniteDifference::new(&mlp, 1e-3).unwrap();
        let (_, approx) = fd.average_velocity_jvp(x.clone(), v, &a, 1.0, &b, 0.0, &condition).unwrap();
        for (e, f) in tensor_to_vec(exact).iter().zip(tensor_to_vec(approx)) {
            assert!((e - f).abs() <= 2e-3 * (1.0 + e.abs()), "{e} vs {f}");
        }
        // The dual primal is the plain conditional forward (to f32 rounding: the forward runs
        // the fused kernels with their own exp), and the condition matters.
        let plain = mlp.average_velocity(x.clone(), &a, &b, &condition).unwrap();
        for (p, q) in tensor_to_vec(primal).iter().zip(tensor_to_vec(plain.clone())) {
            assert!((p - q).abs() <= 1e-6 * (1.0 + q.abs()), "{p} vs {q}");
        }
        let unconditional = mlp.average_velocity(x, &a, &b, &Condition::none()).unwrap();
        assert_ne!(tensor_to_vec(plain), tensor_to_vec(unconditional));
    }

    #[test]
    fn a_classifier_head_has_one_logit_per_class() {
        let device = Device::flex();
        let classifier = MlpConfig::new(2).with_hidden_dim(16).with_output_dim(Some(5)).init(&device).unwrap();
        let x = tensor_from_rows(&[vec![0.3, -0.7], vec![1.2, 0.4]], &device);
        let t = tensor_from_rows(&[vec![0.5], vec![0.2]], &device);
        assert_eq!(classifier.forward(x, &[t]).unwrap().dims(), [2, 5]);
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let device = Device::flex();
        assert!(matches!(MlpConfig::new(0).init(&device), Err(Error::InvalidCount { name: "data_dim", .. })));
        assert!(matches!(MlpConfig::new(2).with_time_inputs(3).init(&device), Err(Error::InvalidCount { name: "time_inputs", .. })));
        assert!(matches!(SinusoidalEmbeddingConfig::new().with_dim(7).init(), Err(Error::InvalidCount { name: "dim", .. })));
        assert!(matches!(GaussianFourierConfig::new().with_dim(0).init(), Err(Error::InvalidCount { name: "dim", .. })));
        assert!(matches!(GaussianFourierConfig::new().with_scale(-1.0).init(), Err(Error::InvalidParameter { .. })));
    }
}
