//! A U-Net for images (Ronneberger et al. 2015, in the form of DDPM's noise network: Ho et al.,
//! *Denoising Diffusion Probabilistic Models*, NeurIPS 2020, and Dhariwal & Nichol 2021):
//! residual blocks with GroupNorm and SiLU, the time/class vector added inside every block,
//! strided-convolution downsampling, nearest-neighbour upsampling, skip connections by
//! concatenation and self-attention at the chosen resolutions.

use crate::conditioning::{Conditioning, ConditioningConfig};
use crate::jet::Jet;
use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Device;
use flowforge_core::{Condition, Error, Result};

/// Configuration of a [`UNet`].
#[derive(Config, Debug, PartialEq)]
pub struct UNetConfig {
    /// Image channels (1 for MNIST).
    pub in_channels: usize,
    /// Base width; level `i` has `channels × channel_multipliers[i]` channels.
    #[config(default = 32)]
    pub channels: usize,
    /// Width multipliers, one per resolution (each level after the first halves H and W).
    #[config(default = "vec![1, 2, 2]")]
    pub channel_multipliers: Vec<usize>,
    /// Residual blocks per level (DDPM uses 2).
    #[config(default = 1)]
    pub res_blocks: usize,
    /// Levels (indices into `channel_multipliers`) with a self-attention block after their
    /// residual blocks.
    #[config(default = "vec![2]")]
    pub attention_levels: Vec<usize>,
    /// Self-attention between the two middle residual blocks.
    #[config(default = true)]
    pub middle_attention: bool,
    /// Downsample after the deepest level too, so the middle runs at half its resolution (the
    /// benchmark workload W4's layout); otherwise the middle runs at the deepest level's.
    #[config(default = false)]
    pub downsample_deepest: bool,
    /// Sinusoidal time features before the time MLP (0: `channels`).
    #[config(default = 0)]
    pub time_features: usize,
    /// Attention heads (must divide every attended width).
    #[config(default = 4)]
    pub attention_heads: usize,
    /// GroupNorm groups (must divide every width).
    #[config(default = 8)]
    pub norm_groups: usize,
    /// Time inputs: 1, or 2 for MeanFlow's ū(x, a, b).
    #[config(default = 1)]
    pub time_inputs: usize,
    /// Classes for class conditioning (0: none; the null label is `num_classes`).
    #[config(default = 0)]
    pub num_classes: usize,
    /// Start the output convolution at zero (the untrained network predicts 0).
    #[config(default = true)]
    pub zero_init_output: bool,
}

impl UNetConfig {
    /// The U-Net of the benchmark workload W4 (`unet_digits_step` in flowforge's
    /// `../shared/bench/WORKLOADS.md`, a small DDPM-style network for 1×16×16 images): widths
    /// 32 and 64 with two residual blocks each, stride-2 downsampling after both, a middle of
    /// two residual blocks at 4×4 without attention, 64 sinusoidal time features, GroupNorm with
    /// 8 groups; 781,281 parameters as in PyTorch. The output convolution is drawn like the
    /// others (PyTorch's default), not zeroed.
    pub fn benchmark_w4() -> Self {
        Self::new(1)
            .with_channels(32)
            .with_channel_multipliers(vec![1, 2])
            .with_res_blocks(2)
            .with_attention_levels(vec![])
            .with_middle_attention(false)
            .with_downsample_deepest(true)
            .with_time_features(64)
            .with_norm_groups(8)
            .with_zero_init_output(false)
    }

    /// Build the network; by default the output convolution starts at zero (the untrained
    /// network predicts 0, a common choice for residual denoisers).
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for zero sizes; [`Error::InvalidParameter`] for widths that
    /// the groups or heads do not divide, or attention levels out of range.
    pub fn init(&self, device: &Device) -> Result<UNet> {
        for (name, value) in [("in_channels", self.in_channels), ("channels", self.channels), ("levels", self.channel_multipliers.len()), ("res_blocks", self.res_blocks), ("norm_groups", self.norm_groups), ("attention_heads", self.attention_heads)] {
            flowforge_core::error::check::count_at_least_one(name, value)?;
        }
        let widths: Vec<usize> = self.channel_multipliers.iter().map(|m| m * self.channels).collect();
        for &w in &widths {
            if w == 0 || w % self.norm_groups != 0 || w % self.attention_heads != 0 {
                return Err(Error::invalid("channels × multiplier", w as f64, "positive and divisible by norm_groups and attention_heads"));
            }
        }
        if let Some(&bad) = self.attention_levels.iter().find(|&&l| l >= widths.len()) {
            return Err(Error::invalid("attention_levels", bad as f64, "an index into channel_multipliers"));
        }
        let emb = 4 * self.channels;
        let time_features = if self.time_features == 0 { self.channels } else { self.time_features };
        let conditioning = ConditioningConfig::new(emb).with_time_features(time_features).with_time_inputs(self.time_inputs).with_num_classes(self.num_classes).init(device)?;
        let conv3 = |i: usize, o: usize| Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device);
        let res = |i: usize, o: usize| ResBlock::new(i, o, emb, self.norm_groups, device);
        let blocks = |first_input: usize, w: usize| -> Vec<ResBlock> { (0..self.res_blocks).map(|k| res(if k == 0 { first_input } else { w }, w)).collect() };
        let attention = |w: usize| AttentionBlock::new(w, self.attention_heads, self.norm_groups, device);
        let downsampled = |level: usize| level + 1 < widths.len() || self.downsample_deepest;
        let mut down = Vec::new();
        let mut previous = self.channels;
        for (level, &w) in widths.iter().enumerate() {
            down.push(Level {
                blocks: blocks(previous, w),
                attention: self.attention_levels.contains(&level).then(|| attention(w)),
                resample: downsampled(level).then(|| Conv2dConfig::new([w, w], [3, 3]).with_stride([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device)),
            });
            previous = w;
        }
        let deepest = *widths.last().expect("at least one level");
        let middle = (res(deepest, deepest), self.middle_attention.then(|| attention(deepest)), res(deepest, deepest));
        // Up: back to the level's resolution (nearest ×2 and a 3×3 convolution) where the way
        // down halved it, then the skip is concatenated and the blocks run.
        let mut up = Vec::new();
        for (level, &w) in widths.iter().enumerate().rev() {
            up.push(Level {
                resample: downsampled(level).then(|| conv3(previous, previous)),
                blocks: blocks(previous + w, w),
                attention: self.attention_levels.contains(&level).then(|| attention(w)),
            });
            previous = w;
        }
        let output = Conv2dConfig::new([widths[0], self.in_channels], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_initializer(if self.zero_init_output { Initializer::Zeros } else { Conv2dConfig::new([1, 1], [1, 1]).initializer })
            .init(device);
        Ok(UNet {
            conditioning,
            input: conv3(self.in_channels, self.channels),
            down,
            middle_first: middle.0,
            middle_attention: middle.1,
            middle_second: middle.2,
            up,
            output_norm: GroupNormConfig::new(self.norm_groups, widths[0]).init(device),
            output,
            in_channels: self.in_channels,
            downsamplings: widths.len() - 1 + usize::from(self.downsample_deepest),
        })
    }
}

/// A residual block: `x + conv(SiLU(GN(conv(SiLU(GN(x))) + W c)))` (1×1 skip projection when
/// the width changes).
#[derive(Module, Debug)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    embedding: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(input: usize, output: usize, emb: usize, groups: usize, device: &Device) -> Self {
        let conv3 = |i: usize, o: usize| Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device);
        // GroupNorm over the input needs groups dividing it; concatenated skips may not.
        let input_groups = if input.is_multiple_of(groups) { groups } else { 1 };
        Self {
            norm1: GroupNormConfig::new(input_groups, input).init(device),
            conv1: conv3(input, output),
            embedding: LinearConfig::new(emb, output).init(device),
            norm2: GroupNormConfig::new(groups, output).init(device),
            conv2: conv3(output, output),
            skip: (input != output).then(|| Conv2dConfig::new([input, output], [1, 1]).init(device)),
        }
    }

    fn forward(&self, x: Jet<4>, c: &Jet<2>) -> Jet<4> {
        let h = x.clone().through_group_norm_silu_conv(&self.norm1, &self.conv1);
        let [b, ch, _, _] = h.dims();
        let shift = c.clone().silu().through_linear(&self.embedding).reshape([b, ch, 1, 1]);
        let h = h.add(shift).through_group_norm_silu_conv(&self.norm2, &self.conv2);
        let skip = match &self.skip {
            Some(conv) => x.through_conv(conv),
            None => x,
        };
        skip.add(h)
    }
}

/// Multi-head self-attention over the H·W positions, with a residual connection.
#[derive(Module, Debug)]
pub struct AttentionBlock {
    norm: GroupNorm,
    qkv: Linear,
    projection: Linear,
    heads: usize,
}

impl AttentionBlock {
    fn new(width: usize, heads: usize, groups: usize, device: &Device) -> Self {
        Self {
            norm: GroupNormConfig::new(groups, width).init(device),
            qkv: LinearConfig::new(width, 3 * width).init(device),
            projection: LinearConfig::new(width, width).init(device),
            heads,
        }
    }

    fn forward(&self, x: Jet<4>) -> Jet<4> {
        let [b, c, h, w] = x.dims();
        let tokens = x.clone().through_group_norm(&self.norm).reshape([b, c, h * w]).swap_dims(1, 2);
        let attended = multi_head_attention(tokens, &self.qkv, &self.projection, self.heads);
        x.add(attended.swap_dims(1, 2).reshape([b, c, h, w]))
    }
}

/// `proj(MHA(x))` for tokens `[batch, n, width]`, `qkv` giving `[batch, n, 3·width]`.
pub(crate) fn multi_head_attention(tokens: Jet<3>, qkv: &Linear, projection: &Linear, heads: usize) -> Jet<3> {
    let [b, n, width] = tokens.dims();
    let head_dim = width / heads;
    let qkv = tokens.through_linear(qkv);
    // [b, n, 3, heads, d] → three [b·heads, n, d].
    let split = |k: usize| {
        qkv.clone()
            .linear(|x| x.reshape([b, n, 3, heads, head_dim]).slice([0..b, 0..n, k..k + 1, 0..heads, 0..head_dim]).reshape([b, n, heads, head_dim]).swap_dims(1, 2).reshape([b * heads, n, head_dim]))
    };
    let out = Jet::attention(split(0), split(1), split(2));
    out.linear(|x| x.reshape([b, heads, n, head_dim]).swap_dims(1, 2).reshape([b, n, width])).through_linear(projection)
}

/// One resolution: residual blocks and optional attention, with downsampling after them
/// (on the way down) or upsampling before them (on the way up).
#[derive(Module, Debug)]
pub struct Level {
    blocks: Vec<ResBlock>,
    attention: Option<AttentionBlock>,
    resample: Option<Conv2d>,
}

/// The U-Net of [`UNetConfig`]: `[batch, C, H, W]` (H and W divisible by 2 to the number of
/// downsamplings) and
/// one or two time columns to `[batch, C, H, W]`.
#[derive(Module, Debug)]
pub struct UNet {
    conditioning: Conditioning,
    input: Conv2d,
    down: Vec<Level>,
    middle_first: ResBlock,
    middle_attention: Option<AttentionBlock>,
    middle_second: ResBlock,
    up: Vec<Level>,
    output_norm: GroupNorm,
    output: Conv2d,
    in_channels: usize,
    downsamplings: usize,
}

impl UNet {
    /// The forward pass on jets: one code path for values and tangents.
    pub(crate) fn run(&self, x: Jet<4>, times: &[Jet<2>], condition: &Condition) -> Result<Jet<4>> {
        let [b, c, h, w] = x.dims();
        let factor = 1 << self.downsamplings;
        if c != self.in_channels || h % factor != 0 || w % factor != 0 || h == 0 || w == 0 {
            return Err(Error::ShapeMismatch { what: "U-Net input (channels; H and W divisible by 2^downsamplings)", expected: vec![b, self.in_channels, factor * h.div_ceil(factor).max(1), factor * w.div_ceil(factor).max(1)], actual: vec![b, c, h, w] });
        }
        let cond = self.conditioning.forward(times, condition, b, &x.value.device())?;
        let mut h = x.through_conv(&self.input);
        let mut skips = Vec::new();
        for level in &self.down {
            for block in &level.blocks {
                h = block.forward(h, &cond);
            }
            if let Some(a) = &level.attention {
                h = a.forward(h);
            }
            skips.push(h.clone());
            if let Some(down) = &level.resample {
                h = h.through_conv(down);
            }
        }
        h = self.middle_first.forward(h, &cond);
        if let Some(a) = &self.middle_attention {
            h = a.forward(h);
        }
        h = self.middle_second.forward(h, &cond);
        for level in &self.up {
            if let Some(conv) = &level.resample {
                h = h.upsample_nearest2().through_conv(conv);
            }
            let skip = skips.pop().expect("one skip per level");
            h = Jet::cat(vec![h, skip], 1);
            for block in &level.blocks {
                h = block.forward(h, &cond);
            }
            if let Some(a) = &level.attention {
                h = a.forward(h);
            }
        }
        Ok(h.through_group_norm_silu_conv(&self.output_norm, &self.output))
    }
}
