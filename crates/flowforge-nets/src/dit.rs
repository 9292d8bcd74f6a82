//! A small diffusion transformer (DiT: Peebles & Xie, *Scalable Diffusion Models with
//! Transformers*, ICCV 2023): non-overlapping p×p patches embedded linearly with fixed 2-D
//! sin-cos positions, transformer blocks modulated by the time/class vector through adaLN-Zero
//! (shift, scale and a gate per sub-layer, regressed from the conditioning and initialised to
//! zero so every block starts as the identity), and a zero-initialised adaLN output layer.

use crate::conditioning::{Conditioning, ConditioningConfig};
use crate::jet::Jet;
use crate::unet::multi_head_attention;
use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use flowforge_core::{Condition, Error, Result};

/// Configuration of a [`Dit`].
#[derive(Config, Debug, PartialEq)]
pub struct DitConfig {
    /// Image channels.
    pub in_channels: usize,
    /// Image height and width (square images).
    pub image_size: usize,
    /// Patch side p (must divide `image_size`).
    #[config(default = 4)]
    pub patch_size: usize,
    /// Token width.
    #[config(default = 128)]
    pub hidden: usize,
    /// Transformer blocks.
    #[config(default = 4)]
    pub depth: usize,
    /// Attention heads (must divide `hidden`).
    #[config(default = 4)]
    pub heads: usize,
    /// MLP width as a multiple of `hidden`.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Time inputs: 1, or 2 for MeanFlow's ū(x, a, b).
    #[config(default = 1)]
    pub time_inputs: usize,
    /// Classes (0: unconditional; null label `num_classes`).
    #[config(default = 0)]
    pub num_classes: usize,
    /// adaLN-Zero: start the modulations and the output layer at zero (every block the
    /// identity). `false` draws them like any linear layer (for tests of the full map).
    #[config(default = true)]
    pub zero_init: bool,
}

impl DitConfig {
    /// Build the network (adaLN modulations and the output layer start at zero, as in DiT).
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for zero sizes; [`Error::InvalidParameter`] if p does not divide
    /// the image size or the heads do not divide `hidden`.
    pub fn init(&self, device: &Device) -> Result<Dit> {
        for (name, value) in [("in_channels", self.in_channels), ("image_size", self.image_size), ("patch_size", self.patch_size), ("hidden", self.hidden), ("depth", self.depth), ("heads", self.heads), ("mlp_ratio", self.mlp_ratio)] {
            flowforge_core::error::check::count_at_least_one(name, value)?;
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(Error::invalid("patch_size", self.patch_size as f64, "a divisor of image_size"));
        }
        if !self.hidden.is_multiple_of(self.heads) || !self.hidden.is_multiple_of(4) {
            return Err(Error::invalid("hidden", self.hidden as f64, "divisible by heads and by 4 (2-D sin-cos positions)"));
        }
        let zero = |i: usize, o: usize| {
            let config = LinearConfig::new(i, o);
            if self.zero_init { config.with_initializer(Initializer::Zeros).init(device) } else { config.init(device) }
        };
        let patch_dim = self.in_channels * self.patch_size * self.patch_size;
        let blocks = (0..self.depth)
            .map(|_| DitBlock {
                modulation: zero(self.hidden, 6 * self.hidden),
                qkv: LinearConfig::new(self.hidden, 3 * self.hidden).init(device),
                projection: LinearConfig::new(self.hidden, self.hidden).init(device),
                mlp_in: LinearConfig::new(self.hidden, self.mlp_ratio * self.hidden).init(device),
                mlp_out: LinearConfig::new(self.mlp_ratio * self.hidden, self.hidden).init(device),
                heads: self.heads,
            })
            .collect();
        Ok(Dit {
            conditioning: ConditioningConfig::new(self.hidden).with_time_features(self.hidden).with_time_inputs(self.time_inputs).with_num_classes(self.num_classes).init(device)?,
            patch_embedding: LinearConfig::new(patch_dim, self.hidden).init(device),
            blocks,
            final_modulation: zero(self.hidden, 2 * self.hidden),
            output: zero(self.hidden, patch_dim),
            positions: sincos_positions(self.hidden, self.image_size / self.patch_size),
            in_channels: self.in_channels,
            image_size: self.image_size,
            patch_size: self.patch_size,
            hidden: self.hidden,
        })
    }
}

/// DiT's fixed 2-D sin-cos position table `[grid², hidden]`, row-major over the patch grid:
/// half the features encode the row, half the column, each `[sin(p ω_k), cos(p ω_k)]` with
/// `ω_k = 10000^(−k/(hidden/4))`.
fn sincos_positions(hidden: usize, grid: usize) -> Vec<f64> {
    let quarter = hidden / 4;
    let mut table = Vec::with_capacity(grid * grid * hidden);
    for row in 0..grid {
        for col in 0..grid {
            for position in [row, col] {
                let p = position as f64;
                let omegas = (0..quarter).map(|k| 10000f64.powf(-(k as f64) / quarter as f64));
                let (sines, cosines): (Vec<f64>, Vec<f64>) = omegas.map(|w| ((p * w).sin(), (p * w).cos())).unzip();
                table.extend(sines);
                table.extend(cosines);
            }
        }
    }
    table
}

/// `x ⊙ (1 + scale) + shift` for tokens `[b, n, d]` and per-sample `[b, d]` modulations.
fn modulate(x: Jet<3>, shift: Jet<2>, scale: Jet<2>) -> Jet<3> {
    let [b, _, d] = x.dims();
    x.mul(scale.add_scalar(1.0).reshape([b, 1, d])).add(shift.reshape([b, 1, d]))
}

/// Column block `k` of `width` features of a `[b, m·width]` jet.
fn chunk(c: &Jet<2>, k: usize, width: usize) -> Jet<2> {
    let b = c.dims()[0];
    c.clone().linear(|x| x.slice([0..b, k * width..(k + 1) * width]))
}

/// A DiT block with adaLN-Zero conditioning.
#[derive(Module, Debug)]
pub struct DitBlock {
    modulation: Linear,
    qkv: Linear,
    projection: Linear,
    mlp_in: Linear,
    mlp_out: Linear,
    heads: usize,
}

impl DitBlock {
    fn forward(&self, x: Jet<3>, c: &Jet<2>) -> Jet<3> {
        let [b, _, d] = x.dims();
        let m = c.clone().silu().through_linear(&self.modulation);
        let gate = |k: usize| chunk(&m, k, d).reshape([b, 1, d]);
        let attended = multi_head_attention(modulate(x.clone().normalize_last(1e-6), chunk(&m, 0, d), chunk(&m, 1, d)), &self.qkv, &self.projection, self.heads);
        let x = x.add(gate(2).mul(attended));
        let hidden = modulate(x.clone().normalize_last(1e-6), chunk(&m, 3, d), chunk(&m, 4, d)).through_linear(&self.mlp_in).gelu().through_linear(&self.mlp_out);
        x.add(gate(5).mul(hidden))
    }
}

/// The DiT of [`DitConfig`]: `[batch, C, S, S]` and one or two time columns to
/// `[batch, C, S, S]`.
#[derive(Module, Debug)]
pub struct Dit {
    conditioning: Conditioning,
    patch_embedding: Linear,
    blocks: Vec<DitBlock>,
    final_modulation: Linear,
    output: Linear,
    #[module(skip)]
    positions: Vec<f64>,
    in_channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden: usize,
}

impl Dit {
    pub(crate) fn run(&self, x: Jet<4>, times: &[Jet<2>], condition: &Condition) -> Result<Jet<4>> {
        let [b, c, h, w] = x.dims();
        let (s, p) = (self.image_size, self.patch_size);
        if [c, h, w] != [self.in_channels, s, s] {
            return Err(Error::ShapeMismatch { what: "DiT input image", expected: vec![b, self.in_channels, s, s], actual: vec![b, c, h, w] });
        }
        let device = x.value.device();
        let cond = self.conditioning.forward(times, condition, b, &device)?;
        let g = s / p;
        let n = g * g;
        // [b, c, g, p, g, p] → [b, g, g, c, p, p] → tokens [b, n, c·p·p].
        let patches = x.linear(|x| x.reshape([b, c, g, p, g, p]).permute([0, 2, 4, 1, 3, 5]).reshape([b, n, c * p * p]));
        let positions = Tensor::<2>::from_data(TensorData::new(self.positions.clone(), [n, self.hidden]), &device).reshape([1, n, self.hidden]);
        let mut tokens = patches.through_linear(&self.patch_embedding).add(Jet::plain(positions));
        for block in &self.blocks {
            tokens = block.forward(tokens, &cond);
        }
        let m = cond.silu().through_linear(&self.final_modulation);
        let out = modulate(tokens.normalize_last(1e-6), chunk(&m, 0, self.hidden), chunk(&m, 1, self.hidden)).through_linear(&self.output);
        Ok(out.linear(|x| x.reshape([b, g, g, c, p, p]).permute([0, 3, 1, 4, 2, 5]).reshape([b, c, s, s])))
    }
}
