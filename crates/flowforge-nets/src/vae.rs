//! Variational autoencoders (Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014):
//! an encoder giving the Gaussian posterior `q(z | x) = N(μ(x), diag exp(log σ²(x)))` and a
//! decoder giving the likelihood's parameters (Bernoulli logits or Gaussian means) of
//! `p(x | z)`. Train with [`flowforge_losses::elbo`]; the latent space then hosts a flow
//! (latent flow matching, Rombach et al., *High-Resolution Image Synthesis with Latent
//! Diffusion Models*, CVPR 2022).
//!
//! Two architectures behind one trait, both on flattened data `[batch, d]`:
//! [`MlpVae`] (fully connected) and [`ConvVae`] (strided convolutions down, nearest-neighbour
//! upsampling and convolutions up, for `[C, S, S]` images with S divisible by 4).

use crate::jet::Jet;
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use flowforge_core::jvp::Dual;
use flowforge_core::{Error, Result};

/// What a VAE offers: `encode` (posterior parameters), `decode` (likelihood parameters), both
/// with exact JVPs.
pub trait VariationalAutoencoder {
    /// Dimension of the flattened data.
    fn data_dim(&self) -> usize;
    /// Dimension of the latent space.
    fn latent_dim(&self) -> usize;
    /// `(μ, log σ²)`, each `[batch, latent]`, for `x` `[batch, data_dim]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for another data dimension.
    fn encode(&self, x: Tensor<2>) -> Result<(Tensor<2>, Tensor<2>)>;
    /// The likelihood's parameters `[batch, data_dim]` for `z` `[batch, latent]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for another latent dimension.
    fn decode(&self, z: Tensor<2>) -> Result<Tensor<2>>;
    /// `encode` with its exact JVP along `ẋ`: `((μ, μ̇), (log σ², (log σ²)˙))`.
    ///
    /// # Errors
    /// As [`VariationalAutoencoder::encode`].
    fn encode_dual(&self, x: Dual<2>) -> Result<(Dual<2>, Dual<2>)>;
    /// `decode` with its exact JVP along `ż`.
    ///
    /// # Errors
    /// As [`VariationalAutoencoder::decode`].
    fn decode_dual(&self, z: Dual<2>) -> Result<Dual<2>>;
}

fn check_width(what: &'static str, x: [usize; 2], expected: usize) -> Result<()> {
    if x[1] != expected {
        return Err(Error::ShapeMismatch { what, expected: vec![x[0], expected], actual: x.to_vec() });
    }
    Ok(())
}

fn mlp_layers(input: usize, hidden: usize, layers: usize, output: usize, device: &Device) -> Vec<Linear> {
    let mut sizes = vec![input];
    sizes.extend(std::iter::repeat_n(hidden, layers));
    sizes.push(output);
    sizes.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect()
}

fn run_mlp(layers: &[Linear], mut h: Jet<2>) -> Jet<2> {
    let last = layers.len() - 1;
    for (i, layer) in layers.iter().enumerate() {
        h = h.through_linear(layer);
        if i < last {
            h = h.silu();
        }
    }
    h
}

/// Configuration of an [`MlpVae`].
#[derive(Config, Debug, PartialEq)]
pub struct MlpVaeConfig {
    /// Dimension of the (flattened) data.
    pub data_dim: usize,
    /// Latent dimension.
    #[config(default = 16)]
    pub latent_dim: usize,
    /// Hidden width of encoder and decoder.
    #[config(default = 512)]
    pub hidden_dim: usize,
    /// Hidden layers of encoder and decoder.
    #[config(default = 2)]
    pub hidden_layers: usize,
}

impl MlpVaeConfig {
    /// Build it.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for zero sizes.
    pub fn init(&self, device: &Device) -> Result<MlpVae> {
        for (name, value) in [("data_dim", self.data_dim), ("latent_dim", self.latent_dim), ("hidden_dim", self.hidden_dim), ("hidden_layers", self.hidden_layers)] {
            flowforge_core::error::check::count_at_least_one(name, value)?;
        }
        Ok(MlpVae {
            encoder: mlp_layers(self.data_dim, self.hidden_dim, self.hidden_layers, 2 * self.latent_dim, device),
            decoder: mlp_layers(self.latent_dim, self.hidden_dim, self.hidden_layers, self.data_dim, device),
            data_dim: self.data_dim,
            latent_dim: self.latent_dim,
        })
    }
}

/// A fully connected VAE: SiLU MLPs `x ↦ [μ, log σ²]` and `z ↦ x̂`.
#[derive(Module, Debug)]
pub struct MlpVae {
    encoder: Vec<Linear>,
    decoder: Vec<Linear>,
    data_dim: usize,
    latent_dim: usize,
}

impl MlpVae {
    fn encode_jet(&self, x: Jet<2>) -> Result<(Jet<2>, Jet<2>)> {
        check_width("VAE input", x.dims(), self.data_dim)?;
        Ok(split_posterior(run_mlp(&self.encoder, x), self.latent_dim))
    }

    fn decode_jet(&self, z: Jet<2>) -> Result<Jet<2>> {
        check_width("VAE latent", z.dims(), self.latent_dim)?;
        Ok(run_mlp(&self.decoder, z))
    }
}

fn split_posterior(out: Jet<2>, latent: usize) -> (Jet<2>, Jet<2>) {
    let b = out.dims()[0];
    let mu = out.clone().linear(|x| x.slice([0..b, 0..latent]));
    let logvar = out.linear(|x| x.slice([0..b, latent..2 * latent]));
    (mu, logvar)
}

/// Configuration of a [`ConvVae`].
#[derive(Config, Debug, PartialEq)]
pub struct ConvVaeConfig {
    /// Image channels.
    pub in_channels: usize,
    /// Image side S (square images; divisible by 4).
    pub image_size: usize,
    /// Width of the first convolution (the second has twice as many).
    #[config(default = 32)]
    pub channels: usize,
    /// Latent dimension.
    #[config(default = 16)]
    pub latent_dim: usize,
}

impl ConvVaeConfig {
    /// Build it.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for zero sizes; [`Error::InvalidParameter`] for an image side
    /// not divisible by 4.
    pub fn init(&self, device: &Device) -> Result<ConvVae> {
        for (name, value) in [("in_channels", self.in_channels), ("image_size", self.image_size), ("channels", self.channels), ("latent_dim", self.latent_dim)] {
            flowforge_core::error::check::count_at_least_one(name, value)?;
        }
        if !self.image_size.is_multiple_of(4) {
            return Err(Error::invalid("image_size", self.image_size as f64, "divisible by 4"));
        }
        let (c, s) = (self.channels, self.image_size / 4);
        let conv = |i: usize, o: usize, stride: usize| Conv2dConfig::new([i, o], [3, 3]).with_stride([stride, stride]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device);
        Ok(ConvVae {
            down: vec![conv(self.in_channels, c, 2), conv(c, 2 * c, 2)],
            to_posterior: LinearConfig::new(2 * c * s * s, 2 * self.latent_dim).init(device),
            from_latent: LinearConfig::new(self.latent_dim, 2 * c * s * s).init(device),
            up: vec![conv(2 * c, c, 1), conv(c, c, 1)],
            output: conv(c, self.in_channels, 1),
            in_channels: self.in_channels,
            image_size: self.image_size,
            channels: c,
            latent_dim: self.latent_dim,
        })
    }
}

/// A convolutional VAE: two stride-2 3×3 convolutions (S → S/4) and a linear map to
/// `[μ, log σ²]`; back through a linear map, two (upsample ×2, 3×3 convolution) stages and an
/// output convolution.
#[derive(Module, Debug)]
pub struct ConvVae {
    down: Vec<Conv2d>,
    to_posterior: Linear,
    from_latent: Linear,
    up: Vec<Conv2d>,
    output: Conv2d,
    in_channels: usize,
    image_size: usize,
    channels: usize,
    latent_dim: usize,
}

impl ConvVae {
    fn encode_jet(&self, x: Jet<2>) -> Result<(Jet<2>, Jet<2>)> {
        let (c, s) = (self.in_channels, self.image_size);
        check_width("VAE input (flattened image)", x.dims(), c * s * s)?;
        let b = x.dims()[0];
        let mut h = x.reshape([b, c, s, s]);
        for conv in &self.down {
            h = h.through_conv(conv).silu();
        }
        let features = h.reshape([b, 2 * self.channels * (s / 4) * (s / 4)]);
        Ok(split_posterior(features.through_linear(&self.to_posterior), self.latent_dim))
    }

    fn decode_jet(&self, z: Jet<2>) -> Result<Jet<2>> {
        check_width("VAE latent", z.dims(), self.latent_dim)?;
        let (b, q) = (z.dims()[0], self.image_size / 4);
        let mut h = z.through_linear(&self.from_latent).silu().reshape([b, 2 * self.channels, q, q]);
        for conv in &self.up {
            h = h.upsample_nearest2().through_conv(conv).silu();
        }
        let s = self.image_size;
        Ok(h.through_conv(&self.output).reshape([b, self.in_channels * s * s]))
    }
}

macro_rules! vae_via_jets {
    ($ty:ty, $data_dim:expr) => {
        impl VariationalAutoencoder for $ty {
            fn data_dim(&self) -> usize {
                $data_dim(self)
            }
            fn latent_dim(&self) -> usize {
                self.latent_dim
            }
            fn encode(&self, x: Tensor<2>) -> Result<(Tensor<2>, Tensor<2>)> {
                let (mu, logvar) = self.encode_jet(Jet::plain(x))?;
                Ok((mu.value, logvar.value))
            }
            fn decode(&self, z: Tensor<2>) -> Result<Tensor<2>> {
                Ok(self.decode_jet(Jet::plain(z))?.value)
            }
            fn encode_dual(&self, x: Dual<2>) -> Result<(Dual<2>, Dual<2>)> {
                let (mu, logvar) = self.encode_jet(Jet::from_dual(x))?;
                Ok((mu.into_dual(), logvar.into_dual()))
            }
            fn decode_dual(&self, z: Dual<2>) -> Result<Dual<2>> {
                Ok(self.decode_jet(Jet::from_dual(z))?.into_dual())
            }
        }
    };
}

vae_via_jets!(MlpVae, |v: &MlpVae| v.data_dim);
vae_via_jets!(ConvVae, |v: &ConvVae| v.in_channels * v.image_size * v.image_size);
