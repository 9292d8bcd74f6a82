//! Fused kernels for the layers that dominate flowforge's small-network workloads.
//!
//! A plain burn linear layer with SiLU is four passes over the activations, each allocating a
//! new tensor: `x·W`, `+ b`, `σ(z)` (a scalar `expf` per element), `z·σ(z)`; its backward is
//! five more. On burn-flex that element-wise traffic costs as much as the matrix products
//! (profile in `docs/performance.md`). [`linear`] computes `act(x·W + b)` instead as
//!
//! - **forward**: one GEMM whose epilogue adds the bias and applies SiLU to each finished tile
//!   in registers (the BLIS-style `sgemm`, with AVX-512 and AVX2 + FMA micro-kernels); on other
//!   CPUs, bias rows, the `gemm` crate's GEMM, then SiLU in place with a vectorised `exp`;
//! - **backward** (hand-written, burn's autodiff has no fusion on CPU): `∂z = ∂y ⊙ σ(z)(1 + z(1 −
//!   σ(z)))` in one pass, then `∂b = 1ᵀ∂z`, `∂W = xᵀ∂z`, `∂x = ∂z·Wᵀ` as three GEMMs reading the
//!   transposes in place through strides (no transpose copies).
//!
//! Products with a dimension of at most 4 (the input and output layers, every bias gradient)
//! are memory-bound and run as streaming loops instead of a tiled GEMM (`thin`).
//!
//! It is a burn 0.22 *backend extension* ([`flex::FusedLinearBackend`]) implemented for `Flex`
//! and for `Autodiff<B>` (the backward above). On every other device, for other dtypes, without
//! a bias, and when the `flex` feature is off, [`linear`] runs the same maths with plain burn ops
//! ([`linear_reference`]), so callers write one code path.
#![warn(missing_docs)]

use burn::tensor::{Tensor, activation};
use flowforge_core::{Error, Result};

#[cfg(feature = "flex")]
pub mod flex;
#[cfg(feature = "flex")]
pub mod flex_adam;
#[cfg(feature = "flex")]
pub mod flex_conv;
#[cfg(feature = "flex")]
pub mod flex_norm;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod amx;
#[cfg(feature = "flex")]
mod sgemm;
#[cfg(feature = "flex")]
mod thin;

/// The nonlinearity applied after the affine map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedActivation {
    /// No nonlinearity: `x·W + b`.
    Identity,
    /// `z·σ(z)` (SiLU / swish; Elfwing et al. 2018, Ramachandran et al. 2017).
    Silu,
}

/// `act(x·W + b)`: a linear layer and its activation in one fused kernel where one exists.
///
/// `weight` is `[in, out]` as burn's `Linear` stores it; `bias` is `[out]`.
///
/// # Shapes
/// `x`: `[batch, in]`, `weight`: `[in, out]`, `bias`: `[out]` → `[batch, out]`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `x`'s width is not `weight`'s rows or the bias is not `[out]`.
pub fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>, activation: FusedActivation) -> Result<Tensor<2>> {
    let [batch, width] = x.dims();
    let [rows, out] = weight.dims();
    if width != rows {
        return Err(Error::ShapeMismatch { what: "linear input vs weight rows", expected: vec![batch, rows], actual: vec![batch, width] });
    }
    if let Some(b) = bias.as_ref().filter(|b| b.dims() != [out]) {
        return Err(Error::ShapeMismatch { what: "linear bias", expected: vec![out], actual: b.dims().to_vec() });
    }
    #[cfg(feature = "flex")]
    if let Some(b) = bias.as_ref().filter(|b| flex::all_flex_f32(&[(x.device(), x.dtype()), (weight.device(), weight.dtype()), (b.device(), b.dtype())])) {
        return Ok(flex::linear(x, weight, b.clone(), activation));
    }
    Ok(linear_reference(x, weight, bias, activation))
}

/// `silu(x·W₁ + b₁)·W₂ + b₂`: a SiLU layer and the linear layer after it, as an MLP ends.
///
/// The same values, bit for bit, as [`linear`] twice (SiLU, then identity). On plain burn-flex
/// (no autodiff) with a thin second layer (at most 4 outputs, a 2-D velocity or noise), the
/// second layer runs on each block of rows of the hidden output as soon as the GEMM has
/// finished it, reading it from cache instead of memory; elsewhere the two layers run one after
/// the other. On burn-flex under autodiff the two layers are one node, whose backward (with a
/// thin second layer) forms the second layer's `∂h = ∂y·W₂ᵀ` and `∂W₂ = hᵀ·∂y` in the SiLU
/// backward's pass over `h` and `σ`, instead of writing `∂h` to memory and reading `h` and
/// `∂h` back (W3's training step at 65,536: 260–263 ms against 272–277, alternating).
///
/// # Shapes
/// `x`: `[batch, in]`, `w1`: `[in, hidden]`, `b1`: `[hidden]`, `w2`: `[hidden, out]`, `b2`:
/// `[out]` → `[batch, out]`.
///
/// # Errors
/// [`Error::ShapeMismatch`] as [`linear`], for either layer.
pub fn linear_silu_linear(x: Tensor<2>, w1: Tensor<2>, b1: Option<Tensor<1>>, w2: Tensor<2>, b2: Option<Tensor<1>>) -> Result<Tensor<2>> {
    #[cfg(feature = "flex")]
    if let (Some(b1), Some(b2)) = (&b1, &b2) {
        let parts = [(x.device(), x.dtype()), (w1.device(), w1.dtype()), (b1.device(), b1.dtype()), (w2.device(), w2.dtype()), (b2.device(), b2.dtype())];
        // Mismatched shapes take the two-layer path below, which reports them.
        let (width, [rows, hidden], [rows2, out]) = (x.dims()[1], w1.dims(), w2.dims());
        if flex::all_flex_f32(&parts) && width == rows && rows2 == hidden && b1.dims() == [hidden] && b2.dims() == [out] {
            return Ok(flex::linear_silu_linear(x, w1, b1.clone(), w2, b2.clone()));
        }
    }
    let h = linear(x, w1, b1, FusedActivation::Silu)?;
    linear(h, w2, b2, FusedActivation::Identity)
}

/// An MLP of SiLU layers and a linear output layer, `layers[i] = (Wᵢ, bᵢ)`:
/// `h₀ = x`, `hᵢ₊₁ = silu(hᵢ·Wᵢ + bᵢ)`, and `y = h_{L−1}·W_{L−1} + b_{L−1}` for the last.
///
/// The same values, bit for bit, as [`linear`] layer by layer (the last two as
/// [`linear_silu_linear`]), which is what it runs off burn-flex. On plain burn-flex
/// (inference) every layer runs on each block of 240 rows in turn, while the block's
/// activations are in cache, with the weights packed once for all blocks: the hidden
/// activations never go to memory, and the evaluation is one parallel region instead of one
/// per layer. On burn-flex under autodiff the whole MLP is one node, with the gradients of the
/// per-layer nodes to the bit; for a batch of 16,384 rows or more (a thin input layer, SiLU
/// GEMM layers, a thin output layer) its backward takes each block of 384 rows back through
/// every layer while the block's gradients are in cache, instead of writing each hidden
/// layer's `∂h` to memory and reading it back with `h` (W3's training step at 65,536:
/// 214–222 ms against 220–230, alternating). (Up to six layers with biases; deeper networks
/// run layer by layer.) With [`f32_matmul_on_amx`] on, the hidden layers of the inference
/// evaluation run on AMX where the CPU has it: as accurate, not the same bits.
///
/// # Shapes
/// `x`: `[batch, w₀]`, `Wᵢ`: `[wᵢ, wᵢ₊₁]`, `bᵢ`: `[wᵢ₊₁]` → `[batch, w_L]`.
///
/// # Errors
/// [`Error::ShapeMismatch`] as [`linear`], for any layer; for no layers at all.
pub fn silu_mlp(x: Tensor<2>, layers: &[(Tensor<2>, Option<Tensor<1>>)]) -> Result<Tensor<2>> {
    let Some(last) = layers.len().checked_sub(1) else {
        return Err(Error::ShapeMismatch { what: "silu_mlp layers", expected: vec![1], actual: vec![0] });
    };
    // The checks only on a flex input; elsewhere the layers below report mismatches.
    #[cfg(feature = "flex")]
    if flex::is_flex(&x.device()) {
        let mut width = x.dims()[1];
        let mut parts = vec![(x.device(), x.dtype())];
        let mut fused = Vec::with_capacity(layers.len());
        for (w, b) in layers {
            let [rows, out] = w.dims();
            let Some(b) = b.as_ref().filter(|b| rows == width && b.dims() == [out]) else { break };
            parts.extend([(w.device(), w.dtype()), (b.device(), b.dtype())]);
            fused.push((w.clone(), b.clone()));
            width = out;
        }
        if fused.len() == layers.len() && layers.len() <= flex::MAX_FUSED_LAYERS && flex::all_flex_f32(&parts) {
            return Ok(flex::silu_mlp(x, &fused));
        }
    }
    let mut h = x;
    for (i, (w, b)) in layers.iter().enumerate() {
        if i + 1 == last {
            let (w_out, b_out) = &layers[last];
            return linear_silu_linear(h, w.clone(), b.clone(), w_out.clone(), b_out.clone());
        }
        let activation = if i == last { FusedActivation::Identity } else { FusedActivation::Silu };
        h = linear(h, w.clone(), b.clone(), activation)?;
    }
    Ok(h)
}

/// Run the f32 products that can on Intel AMX (off until asked for); returns whether they now
/// do (`false` on CPUs without AMX-BF16, off Linux, or without the `flex` feature).
///
/// Today these are the hidden layers of [`silu_mlp`] in inference on burn-flex, whose widths
/// are multiples of 32 (a sampling step's network). Each f32 is split exactly into three bf16
/// pieces and each product into the six piece products that matter, which AMX's `tdpbf16ps`
/// multiplies and adds in f32: as accurate as the f32 FMA kernels (on unit inputs of depth
/// 256, a largest error of 3.9·10⁻⁷ against their 1.0·10⁻⁶), but not the same bits, and on
/// Sapphire Rapids about 1.5× as fast for a 256 × 256 × 256 product (`docs/performance.md`,
/// session 33). Not for values beyond bf16's range (above about 3.39·10³⁸) or below about
/// 2⁻¹¹⁰, where the split does not hold. A process-wide setting, like
/// `flowforge::allocator::retain_freed_memory`.
pub fn f32_matmul_on_amx(on: bool) -> bool {
    #[cfg(all(feature = "flex", target_arch = "x86_64"))]
    return amx::request(on);
    #[cfg(not(all(feature = "flex", target_arch = "x86_64")))]
    {
        let _ = on;
        false
    }
}

/// `[a | b | …]`: 2-D tensors of the same number of rows side by side (burn's `Tensor::cat`
/// along dimension 1).
///
/// On plain burn-flex (inference) with f32 parts, one pass writes each output row from the
/// parts' rows. burn-flex's `cat` along an inner dimension copies each part's slice of each
/// row with its own `memcpy` call: for an MLP's input `[x | t]` on W1's 10,000 sampling points
/// that is 20,000 calls of one to two floats, on the calling thread while the other waits
/// (0.2–0.5% of a DDPM sampling step in the profile). Under autodiff, on other devices and
/// dtypes it is `Tensor::cat`.
///
/// # Shapes
/// Each part `[rows, wᵢ]` → `[rows, Σ wᵢ]`.
///
/// # Panics
/// As `Tensor::cat`: on no parts, or parts with different numbers of rows.
pub fn cat_columns(parts: Vec<Tensor<2>>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if parts.len() > 1 && parts.iter().all(|p| flex::is_plain_flex(&p.device()) && p.dtype() == burn::tensor::DType::F32) {
        let rows = parts[0].dims()[0];
        if parts.iter().all(|p| p.dims()[0] == rows) {
            let device = parts[0].device();
            let widths: Vec<usize> = parts.iter().map(|p| p.dims()[1]).collect();
            let total: usize = widths.iter().sum();
            let data: Vec<_> = parts.into_iter().map(Tensor::into_data).collect();
            let slices: Vec<&[f32]> = data.iter().map(|d| d.as_slice::<f32>().expect("f32 parts (checked)")).collect();
            let mut out = vec![0.0f32; rows * total];
            let mut offset = 0;
            for (slice, &w) in slices.iter().zip(&widths) {
                // Element by element: a `memcpy` per row is what made burn's `cat` slow here.
                for (dst, src) in out.chunks_exact_mut(total).zip(slice.chunks_exact(w.max(1))) {
                    for (d, s) in dst[offset..offset + w].iter_mut().zip(src) {
                        *d = *s;
                    }
                }
                offset += w;
            }
            return Tensor::from_data(burn::tensor::TensorData::new(out, [rows, total]), &device);
        }
    }
    Tensor::cat(parts, 1)
}

/// [`linear`] with plain burn ops (any backend): the definition the fused kernels must match.
///
/// # Shapes
/// As [`linear`].
///
/// # Panics
/// On mismatched shapes, as burn's `matmul` does ([`linear`] checks them first).
pub fn linear_reference(x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>, act: FusedActivation) -> Tensor<2> {
    let mut z = x.matmul(weight);
    if let Some(b) = bias {
        z = z + b.unsqueeze_dim(0);
    }
    match act {
        FusedActivation::Identity => z,
        FusedActivation::Silu => activation::silu(z),
    }
}

/// `SiLU(x) = x·σ(x)` element-wise (Elfwing et al. 2018), fused on burn-flex (one pass with a
/// vectorised `exp`, and a one-pass backward), burn's `silu` elsewhere.
///
/// # Shapes
/// Any; the output has the input's shape.
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if flex::is_flex(&x.device()) && x.dtype() == burn::tensor::DType::F32 {
        return flex::silu(x);
    }
    activation::silu(x)
}

/// Group normalisation (Wu & He, *Group Normalization*, ECCV 2018) with its affine map and an
/// optional SiLU: `act(x̂ γ + β)`, `x̂` normalised over each group of `C/G` channels and all
/// positions, `x̂ = (x − μ)/√(σ² + ε)` with the biased variance (as burn's and PyTorch's
/// `GroupNorm`). One pass forward and two backward on burn-flex ([`flex_norm`]), plain burn
/// ops elsewhere ([`group_norm_reference`]). `γ`, `β` default to 1 and 0.
///
/// # Shapes
/// `x`: `[B, C, …]`, `gamma`, `beta`: `[C]` → the shape of `x`.
///
/// # Errors
/// [`Error::InvalidParameter`] when `groups` is 0 or does not divide `C`, or `epsilon` is not
/// positive; [`Error::ShapeMismatch`] for a `gamma` or `beta` that is not `[C]`.
pub fn group_norm<const D: usize>(
    x: Tensor<D>,
    groups: usize,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
    activation: FusedActivation,
) -> Result<Tensor<D>> {
    #[cfg_attr(not(feature = "flex"), allow(unused_variables))]
    let channels = check_group_norm(&x.dims(), groups, gamma.as_ref(), beta.as_ref(), epsilon)?;
    #[cfg(feature = "flex")]
    {
        let parts: Vec<_> = gamma.iter().chain(&beta).map(|p| (p.device(), p.dtype())).chain([(x.device(), x.dtype())]).collect();
        if flex::all_flex_f32(&parts) {
            let device = x.device();
            let gamma = gamma.unwrap_or_else(|| Tensor::ones([channels], &device));
            let beta = beta.unwrap_or_else(|| Tensor::zeros([channels], &device));
            return Ok(flex_norm::group_norm(x, gamma, beta, groups, epsilon, activation == FusedActivation::Silu));
        }
    }
    Ok(group_norm_reference(x, groups, gamma, beta, epsilon, activation))
}

/// [`group_norm`]'s checks; returns the channel count.
fn check_group_norm(dims: &[usize], groups: usize, gamma: Option<&Tensor<1>>, beta: Option<&Tensor<1>>, epsilon: f64) -> Result<usize> {
    if dims.len() < 2 {
        return Err(Error::ShapeMismatch { what: "group_norm input [B, C, …]", expected: vec![0, 0], actual: dims.to_vec() });
    }
    let channels = dims[1];
    if groups == 0 || !channels.is_multiple_of(groups) {
        return Err(Error::invalid("group_norm groups", groups as f64, "a positive divisor of the channels"));
    }
    if !(epsilon > 0.0 && epsilon.is_finite()) {
        return Err(Error::invalid("group_norm epsilon", epsilon, "positive and finite"));
    }
    for (what, p) in [("group_norm gamma", gamma), ("group_norm beta", beta)] {
        if let Some(p) = p.filter(|p| p.dims() != [channels]) {
            return Err(Error::ShapeMismatch { what, expected: vec![channels], actual: p.dims().to_vec() });
        }
    }
    Ok(channels)
}

/// [`group_norm`] with plain burn ops (any backend): the definition the kernels must match.
///
/// # Shapes
/// As [`group_norm`].
///
/// # Panics
/// On inconsistent shapes ([`group_norm`] checks them first).
pub fn group_norm_reference<const D: usize>(
    x: Tensor<D>,
    groups: usize,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
    activation: FusedActivation,
) -> Tensor<D> {
    let dims = x.dims();
    let (batch, channels) = (dims[0], dims[1]);
    let spatial = dims.iter().product::<usize>() / (batch * channels).max(1);
    let grouped: Tensor<3> = x.reshape([batch, groups, channels / groups * spatial]);
    let mean = grouped.clone().mean_dim(2);
    let centred = grouped - mean;
    let variance = centred.clone().square().mean_dim(2);
    let mut z: Tensor<3> = (centred / variance.add_scalar(epsilon).sqrt()).reshape([batch, channels, spatial]);
    if let Some(g) = gamma {
        z = z * g.reshape([1, channels, 1]);
    }
    if let Some(b) = beta {
        z = z + b.reshape([1, channels, 1]);
    }
    let z = match activation {
        FusedActivation::Identity => z,
        FusedActivation::Silu => activation::silu(z),
    };
    z.reshape(dims)
}

/// A 2-D convolution `conv(x, W) + b` with strides and symmetric zero padding (dilation 1, one
/// group), by im2col + GEMM in both directions where a kernel exists ([`flex_conv`] on
/// burn-flex), burn's own `conv2d` elsewhere.
///
/// # Shapes
/// `x`: `[B, C, H, W]`, `weight`: `[C_out, C, kh, kw]`, `bias`: `[C_out]` →
/// `[B, C_out, (H + 2p₀ − kh)/s₀ + 1, (W + 2p₁ − kw)/s₁ + 1]`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the channels or the bias disagree with the weight;
/// [`Error::InvalidParameter`] for a zero stride or a kernel larger than the padded input.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, stride: [usize; 2], padding: [usize; 2]) -> Result<Tensor<4>> {
    #[cfg_attr(not(feature = "flex"), allow(unused_variables))]
    let out_channels = check_conv2d(x.dims(), weight.dims(), bias.as_ref(), stride, padding)?;
    #[cfg(feature = "flex")]
    {
        let parts: Vec<_> = bias.iter().map(|b| (b.device(), b.dtype())).chain([(x.device(), x.dtype()), (weight.device(), weight.dtype())]).collect();
        if flex::all_flex_f32(&parts) {
            let b = bias.unwrap_or_else(|| Tensor::zeros([out_channels], &weight.device()));
            return Ok(flex_conv::conv2d(x, weight, b, stride, padding));
        }
    }
    Ok(conv2d_reference(x, weight, bias, stride, padding))
}

/// [`conv2d`]'s checks; returns the output channel count.
fn check_conv2d(x: [usize; 4], weight: [usize; 4], bias: Option<&Tensor<1>>, stride: [usize; 2], padding: [usize; 2]) -> Result<usize> {
    let [batch, channels, height, width] = x;
    let [out_channels, weight_channels, kh, kw] = weight;
    if channels != weight_channels {
        return Err(Error::ShapeMismatch {
            what: "conv2d input channels vs weight",
            expected: vec![batch, weight_channels, height, width],
            actual: vec![batch, channels, height, width],
        });
    }
    if let Some(b) = bias.as_ref().filter(|b| b.dims() != [out_channels]) {
        return Err(Error::ShapeMismatch { what: "conv2d bias", expected: vec![out_channels], actual: b.dims().to_vec() });
    }
    if let Some(&s) = stride.iter().find(|&&s| s == 0) {
        return Err(Error::invalid("conv2d stride", s as f64, "positive"));
    }
    for (size, k, p) in [(height, kh, padding[0]), (width, kw, padding[1])] {
        if k == 0 || k > size + 2 * p {
            return Err(Error::invalid("conv2d kernel size", k as f64, "between 1 and the padded input size"));
        }
    }
    Ok(out_channels)
}

/// `conv(silu(GN(x) γ + β), W) + b`: [`group_norm`] with SiLU, then [`conv2d`] — the pre-
/// activation residual block's normalise → activate → convolve (Ho et al., *DDPM*, 2020,
/// after Wide ResNets).
///
/// For inference on burn-flex (tensors on the plain `Device::flex()`, not its autodiff
/// device) the two run as one kernel where the implicit-GEMM convolution serves the
/// geometry: the normalisation becomes a `(scale, shift)` per image and channel, applied with
/// SiLU while the convolution pads each image group, so the normalised activations are never
/// written out. Elsewhere, and whenever gradients may be taken, it is the two ops in turn
/// (each with its own fused backward on burn-flex: a fused backward that maps `x` again for
/// the weight gradient instead of keeping `h` measured the same speed on a U-Net step).
///
/// # Shapes
/// `x`: `[B, C, H, W]`, `gamma`, `beta`: `[C]`, `weight`: `[C_out, C, kh, kw]`, `bias`:
/// `[C_out]` → as [`conv2d`].
///
/// # Errors
/// As [`group_norm`] and [`conv2d`].
#[allow(clippy::too_many_arguments)]
pub fn group_norm_silu_conv2d(
    x: Tensor<4>,
    groups: usize,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Result<Tensor<4>> {
    #[cfg_attr(not(feature = "flex"), allow(unused_variables))]
    let channels = check_group_norm(&x.dims(), groups, gamma.as_ref(), beta.as_ref(), epsilon)?;
    #[cfg_attr(not(feature = "flex"), allow(unused_variables))]
    let out_channels = check_conv2d(x.dims(), weight.dims(), bias.as_ref(), stride, padding)?;
    #[cfg(feature = "flex")]
    {
        let parts: Vec<_> = gamma.iter().chain(&beta).chain(&bias).map(|p| (p.device(), p.dtype())).chain([(x.device(), x.dtype()), (weight.device(), weight.dtype())]).collect();
        if flex::all_flex_f32(&parts) && parts.iter().all(|(device, _)| flex::is_plain_flex(device)) {
            let device = x.device();
            let gamma = gamma.unwrap_or_else(|| Tensor::ones([channels], &device));
            let beta = beta.unwrap_or_else(|| Tensor::zeros([channels], &device));
            let bias = bias.unwrap_or_else(|| Tensor::zeros([out_channels], &device));
            return Ok(flex_conv::group_norm_silu_conv2d(x, gamma, beta, groups, epsilon, weight, bias, stride, padding));
        }
    }
    conv2d(group_norm(x, groups, gamma, beta, epsilon, FusedActivation::Silu)?, weight, bias, stride, padding)
}

/// [`conv2d`] with burn's own `conv2d` (any backend): the definition the kernels must match.
///
/// # Shapes
/// As [`conv2d`].
///
/// # Panics
/// On inconsistent shapes, as burn does ([`conv2d`] checks them first).
pub fn conv2d_reference(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, stride: [usize; 2], padding: [usize; 2]) -> Tensor<4> {
    burn::tensor::module::conv2d(x, weight, bias, burn::tensor::ops::ConvOptions::new(stride, padding, [1, 1], 1))
}

/// The per-step scalars of one Adam or AdamW update (Kingma & Ba, *Adam*, ICLR 2015;
/// Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019), computed on the
/// host in f64 so the kernel is one fused multiply-add chain per element:
///
/// ```text
/// m ← β₁ m + (1 − β₁) g
/// v ← β₂ v + (1 − β₂) g²
/// p ← decay · p − step_size · m / (√v + ε̂)
/// step_size = lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ),  ε̂ = ε · √(1 − β₂ᵗ),  decay = 1 − lr · λ
/// ```
///
/// which is `torch.optim.Adam(W)`'s `p ← p − lr · m̂ / (√v̂ + ε)` with `m̂ = m/(1 − β₁ᵗ)`,
/// `v̂ = v/(1 − β₂ᵗ)` multiplied through by `√(1 − β₂ᵗ)` (burn-optim's form).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// β₁, the first moment's decay.
    pub beta1: f64,
    /// β₂, the second moment's decay.
    pub beta2: f64,
    /// `lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ)`.
    pub step_size: f64,
    /// `ε · √(1 − β₂ᵗ)`.
    pub epsilon_hat: f64,
    /// `1 − lr · λ` (decoupled weight decay λ; 1 for Adam).
    pub decay: f64,
}

impl AdamStep {
    /// The scalars of step `t` (1 for the first update) at learning rate `lr`, decoupled weight
    /// decay `weight_decay` (0 for plain Adam).
    pub fn new(lr: f64, beta1: f64, beta2: f64, epsilon: f64, weight_decay: f64, t: usize) -> Self {
        let t = t.max(1) as i32;
        let bias2 = (1.0 - beta2.powi(t)).sqrt();
        AdamStep { beta1, beta2, step_size: lr * bias2 / (1.0 - beta1.powi(t)), epsilon_hat: epsilon * bias2, decay: 1.0 - lr * weight_decay }
    }
}

/// One Adam(W) update of a parameter tensor: `(p′, m′, v′)` from the parameter, its gradient and
/// the moments (`None` before the first step: zeros). One pass in place on burn-flex (the
/// buffers are copied first when shared, so a clone the caller keeps is never changed); plain
/// burn ops elsewhere ([`adam_update_reference`]).
///
/// # Shapes
/// All tensors share one shape; the outputs have it too.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the gradient or a moment has another shape than the parameter.
pub fn adam_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    step: &AdamStep,
) -> Result<(Tensor<D>, Tensor<D>, Tensor<D>)> {
    let dims = param.dims();
    let (m, v) = moments.unwrap_or_else(|| (Tensor::zeros(dims, &param.device()), Tensor::zeros(dims, &param.device())));
    for (what, t) in [("adam gradient", &grad), ("adam first moment", &m), ("adam second moment", &v)] {
        if t.dims() != dims {
            return Err(Error::ShapeMismatch { what, expected: dims.to_vec(), actual: t.dims().to_vec() });
        }
    }
    #[cfg(feature = "flex")]
    if flex::all_flex_f32(&[(param.device(), param.dtype()), (grad.device(), grad.dtype()), (m.device(), m.dtype()), (v.device(), v.dtype())]) {
        return Ok(flex_adam::adam(param, grad, m, v, step));
    }
    Ok(adam_update_reference(param, grad, m, v, step))
}

/// [`adam_update`] with plain burn ops (any backend): the definition the kernel must match.
///
/// # Panics
/// On mismatched shapes ([`adam_update`] checks them first).
pub fn adam_update_reference<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    m: Tensor<D>,
    v: Tensor<D>,
    step: &AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let m = m.mul_scalar(step.beta1).add(grad.clone().mul_scalar(1.0 - step.beta1));
    let v = v.mul_scalar(step.beta2).add(grad.square().mul_scalar(1.0 - step.beta2));
    let delta = m.clone().div(v.clone().sqrt().add_scalar(step.epsilon_hat)).mul_scalar(step.step_size);
    let p = if step.decay == 1.0 { param } else { param.mul_scalar(step.decay) };
    (p - delta, m, v)
}

/// Whether [`linear`] runs the fused kernel for tensors on `device` (f32 on burn-flex with the
/// `flex` feature), for reports and benchmarks.
pub fn fused_on(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "flex")]
    {
        flex::is_flex(device)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    fn device() -> Device {
        Device::flex()
    }

    fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f64 {
        let a = a.into_data().try_to_vec::<f32>().unwrap();
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        a.iter().zip(&b).map(|(p, q)| f64::from((p - q).abs())).fold(0.0, f64::max)
    }

    #[test]
    fn shape_errors_name_the_mismatch() {
        let d = device();
        let x = Tensor::<2>::zeros([4, 3], &d);
        let w = Tensor::<2>::zeros([2, 5], &d);
        match linear(x.clone(), w, None, FusedActivation::Silu) {
            Err(Error::ShapeMismatch { what, .. }) => {
                assert_eq!(what, "linear input vs weight rows")
            }
            other => panic!("expected a shape error, got {other:?}"),
        }
        let w = Tensor::<2>::zeros([3, 5], &d);
        let b = Tensor::<1>::zeros([4], &d);
        assert!(matches!(linear(x, w, Some(b), FusedActivation::Identity), Err(Error::ShapeMismatch { what: "linear bias", .. })));
    }

    #[test]
    fn silu_layer_matches_hand_computed_values() {
        // x = [[1, −2]], W = [[0.5, −1], [0.25, 2]], b = [0.1, 0.2] → z = [0.1, −4.8].
        let d = device();
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0], [1, 2]), &d);
        let w = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -1.0, 0.25, 2.0], [2, 2]), &d);
        let b = Tensor::<1>::from_data(TensorData::new(vec![0.1f32, 0.2], [2]), &d);
        let y = linear(x, w, Some(b), FusedActivation::Silu).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let silu = |z: f64| z / (1.0 + (-z).exp());
        assert!((f64::from(y[0]) - silu(0.1)).abs() < 1e-7, "{y:?}");
        assert!((f64::from(y[1]) - silu(-4.8)).abs() < 1e-7, "{y:?}");
    }

    /// Forward values and all three gradients of the fused layer against plain burn ops, at a
    /// size below and one above the threading thresholds, with a transposed (strided) input;
    /// above them (and for the thin input and output layers at a batch of hundreds) the
    /// backward runs `∂x` and `∂W` side by side on two threads, and from 16,384 rows by blocks
    /// of rows (a last block partial). Each case also with an input that needs no gradient,
    /// where `∂x` is skipped (and a thin-depth SiLU layer's `∂W` and `∂b` come from one pass
    /// that stores no `∂z`), at a batch that splits into several blocks of rows.
    #[test]
    fn fused_forward_and_backward_match_plain_burn() {
        let d = device().autodiff();
        for (batch, input, output) in [(7usize, 3usize, 5usize), (600, 64, 256), (400, 3, 256), (384, 256, 2), (1000, 3, 256), (16_500, 40, 48)] {
            for act in [FusedActivation::Silu, FusedActivation::Identity] {
                for x_needs_grad in [true, false] {
                    d.seed(11);
                    let x_t = Tensor::<2>::random([input, batch], Distribution::Normal(0.0, 3.0), &d);
                    let w = Tensor::<2>::random([input, output], Distribution::Normal(0.0, 0.5), &d).require_grad();
                    let b = Tensor::<1>::random([output], Distribution::Normal(0.0, 1.0), &d).require_grad();
                    let x = if x_needs_grad { x_t.clone().require_grad() } else { x_t.clone() };
                    let probe = Tensor::<2>::random([batch, output], Distribution::Normal(0.0, 1.0), &d);
                    let fused = linear(x.clone().transpose(), w.clone(), Some(b.clone()), act).unwrap();
                    let plain = linear_reference(x.clone().transpose(), w.clone(), Some(b.clone()), act);
                    let scale = 1.0 + plain.clone().abs().max().into_scalar::<f64>();
                    assert!(max_abs_diff(fused.clone(), plain.clone()) < 2e-6 * scale, "forward {batch}×{input}×{output} {act:?}");
                    let g_fused = (fused * probe.clone()).sum().backward();
                    let g_plain = (plain * probe).sum().backward();
                    let case = format!("{batch}×{input}×{output} {act:?}, x needs a gradient: {x_needs_grad}");
                    assert_eq!(x.grad(&g_fused).is_some(), x_needs_grad, "{case}");
                    let mut pairs = vec![("dw", w.grad(&g_fused).unwrap(), w.grad(&g_plain).unwrap())];
                    if x_needs_grad {
                        pairs.push(("dx", x.grad(&g_fused).unwrap(), x.grad(&g_plain).unwrap()));
                    }
                    for (name, a, b2) in pairs {
                        let scale = 1.0 + b2.clone().abs().max().into_scalar::<f64>();
                        assert!(max_abs_diff(a, b2) < 1e-5 * scale, "{name} {case}");
                    }
                    let (db_f, db_p) = (b.grad(&g_fused).unwrap(), b.grad(&g_plain).unwrap());
                    let scale = 1.0 + db_p.clone().abs().max().into_scalar::<f64>();
                    assert!(max_abs_diff(db_f.unsqueeze_dim(0), db_p.unsqueeze_dim(0)) < 1e-5 * scale, "db {case}");
                }
            }
        }
    }

    /// The two-layer call: bit for bit the two `linear` calls on plain flex (fused there at
    /// these shapes), and the same with a bias missing (which takes the two-layer path) or on
    /// an autodiff device (one node); each layer's shape errors are reported.
    #[test]
    fn linear_silu_linear_is_two_linear_calls() {
        let bits = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for d in [device(), device().autodiff()] {
            d.seed(5);
            let x = Tensor::<2>::random([1000, 3], Distribution::Normal(0.0, 2.0), &d);
            let w0 = Tensor::<2>::random([3, 64], Distribution::Normal(0.0, 0.5), &d);
            let w1 = Tensor::<2>::random([64, 64], Distribution::Normal(0.0, 0.2), &d);
            let b1 = Tensor::<1>::random([64], Distribution::Normal(0.0, 1.0), &d);
            let w2 = Tensor::<2>::random([64, 2], Distribution::Normal(0.0, 0.2), &d);
            let b2 = Tensor::<1>::random([2], Distribution::Normal(0.0, 1.0), &d);
            let h = linear(x, w0, Some(b1.clone()), FusedActivation::Silu).unwrap();
            for (b1, b2) in [(Some(b1.clone()), Some(b2.clone())), (None, Some(b2)), (Some(b1), None)] {
                let both = linear_silu_linear(h.clone(), w1.clone(), b1.clone(), w2.clone(), b2.clone()).unwrap();
                let two = linear(linear(h.clone(), w1.clone(), b1, FusedActivation::Silu).unwrap(), w2.clone(), b2, FusedActivation::Identity).unwrap();
                assert_eq!(both.dims(), [1000, 2]);
                assert_eq!(bits(both), bits(two));
            }
            let wrong = Tensor::<2>::zeros([63, 2], &d);
            assert!(matches!(linear_silu_linear(h.clone(), w1.clone(), None, wrong, None), Err(Error::ShapeMismatch { what: "linear input vs weight rows", .. })));
            let short = Tensor::<1>::zeros([3], &d);
            assert!(matches!(linear_silu_linear(h, w1, None, w2, Some(short)), Err(Error::ShapeMismatch { what: "linear bias", .. })));
        }
    }

    /// The two-layer call's own backward (one autodiff node; with a thin second layer its
    /// `∂h = ∂y·W₂ᵀ` is formed inside the SiLU backward's pass, from 16,384 rows inside the
    /// blocked products) against plain burn ops: all five gradients, with and without a
    /// gradient on the input, for thin outputs (1, 2, 4), a wider one (5, layer by layer), a
    /// batch of one block and one of several with a partial last.
    #[test]
    fn linear_silu_linear_gradients_match_plain_burn() {
        let d = device().autodiff();
        for (batch, input, hidden, out) in [(7usize, 3usize, 5usize, 2usize), (300, 64, 48, 2), (300, 64, 48, 5), (1000, 3, 256, 1), (16_500, 40, 48, 2), (16_500, 40, 48, 4)] {
            for x_needs_grad in [true, false] {
                d.seed(batch as u64 + out as u64);
                let x = Tensor::<2>::random([batch, input], Distribution::Normal(0.0, 2.0), &d);
                let x = if x_needs_grad { x.require_grad() } else { x };
                let w1 = Tensor::<2>::random([input, hidden], Distribution::Normal(0.0, 0.5), &d).require_grad();
                let b1 = Tensor::<1>::random([hidden], Distribution::Normal(0.0, 1.0), &d).require_grad();
                let w2 = Tensor::<2>::random([hidden, out], Distribution::Normal(0.0, 0.5), &d).require_grad();
                let b2 = Tensor::<1>::random([out], Distribution::Normal(0.0, 1.0), &d).require_grad();
                let probe = Tensor::<2>::random([batch, out], Distribution::Normal(0.0, 1.0), &d);
                let fused = linear_silu_linear(x.clone(), w1.clone(), Some(b1.clone()), w2.clone(), Some(b2.clone())).unwrap();
                let h = linear_reference(x.clone(), w1.clone(), Some(b1.clone()), FusedActivation::Silu);
                let plain = linear_reference(h, w2.clone(), Some(b2.clone()), FusedActivation::Identity);
                let case = format!("{batch}×{input}×{hidden}×{out}, x needs a gradient: {x_needs_grad}");
                let scale = 1.0 + plain.clone().abs().max().into_scalar::<f64>();
                assert!(max_abs_diff(fused.clone(), plain.clone()) < 2e-6 * scale, "forward {case}");
                let g_fused = (fused * probe.clone()).sum().backward();
                let g_plain = (plain * probe).sum().backward();
                assert_eq!(x.grad(&g_fused).is_some(), x_needs_grad, "{case}");
                let mut pairs = vec![("dw1", w1.grad(&g_fused).unwrap(), w1.grad(&g_plain).unwrap()), ("dw2", w2.grad(&g_fused).unwrap(), w2.grad(&g_plain).unwrap())];
                pairs.push(("db1", b1.grad(&g_fused).unwrap().unsqueeze_dim(0), b1.grad(&g_plain).unwrap().unsqueeze_dim(0)));
                pairs.push(("db2", b2.grad(&g_fused).unwrap().unsqueeze_dim(0), b2.grad(&g_plain).unwrap().unsqueeze_dim(0)));
                if x_needs_grad {
                    pairs.push(("dx", x.grad(&g_fused).unwrap(), x.grad(&g_plain).unwrap()));
                }
                for (name, a, b) in pairs {
                    let scale = 1.0 + b.clone().abs().max().into_scalar::<f64>();
                    assert!(max_abs_diff(a, b) < 1e-5 * scale, "{name} {case}");
                }
            }
        }
    }

    /// The whole-MLP call against `linear` layer by layer, bit for bit, on shapes that take the
    /// row-blocked path (thin or GEMM input layer, thin or GEMM output layer, a hidden width
    /// deeper than one depth block, row counts that leave partial blocks and tiles, six layers)
    /// and shapes that fall back to the layers (too few rows, a narrow non-thin output, two
    /// layers, seven).
    #[test]
    fn silu_mlp_is_linear_layer_by_layer() {
        let bits = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let cases: [(&[usize], &[usize]); 9] = [
            (&[3, 256, 256, 256, 2], &[10_000, 1001, 150, 13, 5]),
            (&[3, 40, 40, 40, 40, 40, 2], &[500]),
            (&[3, 40, 40, 40, 40, 40, 40, 2], &[500]),
            (&[20, 100, 70, 40], &[1000, 7]),
            (&[3, 500, 64, 1], &[777]),
            (&[5, 48, 48, 3], &[301]),
            (&[3, 64, 10], &[400]),
            (&[3, 64, 2], &[400]),
            (&[8, 33], &[100]),
        ];
        for d in [device(), device().autodiff()] {
            for (widths, batches) in cases {
                for &m in batches {
                    d.seed(m as u64);
                    let x = Tensor::<2>::random([m, widths[0]], Distribution::Normal(0.0, 2.0), &d);
                    let layers: Vec<_> = widths
                        .windows(2)
                        .map(|w| (Tensor::<2>::random([w[0], w[1]], Distribution::Normal(0.0, 1.0 / (w[0] as f64).sqrt()), &d), Some(Tensor::<1>::random([w[1]], Distribution::Normal(0.0, 0.5), &d))))
                        .collect();
                    let whole = silu_mlp(x.clone(), &layers).unwrap();
                    let mut h = x;
                    for (i, (w, b)) in layers.iter().enumerate() {
                        let act = if i + 1 == layers.len() { FusedActivation::Identity } else { FusedActivation::Silu };
                        h = linear(h, w.clone(), b.clone(), act).unwrap();
                    }
                    assert_eq!(whole.dims(), [m, widths[widths.len() - 1]]);
                    assert_eq!(bits(whole), bits(h), "widths {widths:?}, {m} rows, autodiff {}", d.is_autodiff());
                }
            }
        }
        let d = device();
        let x = Tensor::<2>::zeros([4, 3], &d);
        assert!(matches!(silu_mlp(x.clone(), &[]), Err(Error::ShapeMismatch { what: "silu_mlp layers", .. })));
        let layers = [(Tensor::<2>::zeros([3, 8], &d), None), (Tensor::<2>::zeros([7, 2], &d), None)];
        assert!(matches!(silu_mlp(x, &layers), Err(Error::ShapeMismatch { what: "linear input vs weight rows", .. })));
    }

    /// Under autodiff `silu_mlp` is one node: its gradients are, to the bit, those of the
    /// per-layer nodes it replaced (`linear` for each layer, `linear_silu_linear` for the last
    /// two), whether its backward goes by blocks of rows through every layer (batches from
    /// 16,384 rows on two threads, a thin input layer, 128 or 256 wide) or layer by layer; and
    /// they are the plain burn ops' within float tolerance.
    #[test]
    fn silu_mlp_gradients_are_the_layers_gradients() {
        let bits = |t: Tensor<2>| t.into_data().iter::<f32>().map(f32::to_bits).collect::<Vec<_>>();
        let cases: [(&[usize], usize, bool); 7] = [
            (&[3, 256, 256, 256, 2], 16_384 + 333, false),
            (&[3, 128, 64, 128, 2], 20_000, false),
            (&[3, 128, 64, 128, 2], 20_000, true),
            (&[3, 40, 40, 40, 2], 500, false),
            (&[2, 64, 48, 16, 40, 1], 700, true),
            (&[3, 64, 2], 300, false),
            (&[8, 33], 100, true),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            let d = device().autodiff();
            for (widths, m, x_grad) in cases {
                d.seed(m as u64 + widths.len() as u64);
                let x = Tensor::<2>::random([m, widths[0]], Distribution::Normal(0.0, 2.0), &d);
                let x = if x_grad { x.require_grad() } else { x };
                let layers: Vec<_> = widths
                    .windows(2)
                    .map(|w| {
                        let weight = Tensor::<2>::random([w[0], w[1]], Distribution::Normal(0.0, 1.0 / (w[0] as f64).sqrt()), &d).require_grad();
                        (weight, Some(Tensor::<1>::random([w[1]], Distribution::Normal(0.0, 0.5), &d).require_grad()))
                    })
                    .collect();
                let probe = Tensor::<2>::random([m, widths[widths.len() - 1]], Distribution::Normal(0.0, 1.0), &d);
                let whole = silu_mlp(x.clone(), &layers).unwrap();
                let mut h = x.clone();
                let last = layers.len() - 1;
                for (i, (w, b)) in layers.iter().enumerate() {
                    if i + 1 == last {
                        h = linear_silu_linear(h, w.clone(), b.clone(), layers[last].0.clone(), layers[last].1.clone()).unwrap();
                        break;
                    }
                    let act = if i == last { FusedActivation::Identity } else { FusedActivation::Silu };
                    h = linear(h, w.clone(), b.clone(), act).unwrap();
                }
                let mut plain = x.clone();
                for (i, (w, b)) in layers.iter().enumerate() {
                    let act = if i == last { FusedActivation::Identity } else { FusedActivation::Silu };
                    plain = linear_reference(plain, w.clone(), b.clone(), act);
                }
                let case = format!("widths {widths:?}, {m} rows, x needs a gradient: {x_grad}");
                let (a, b) = (bits(whole.clone()), bits(h.clone()));
                assert!(a == b, "{case}: the outputs differ");
                let g_whole = (whole * probe.clone()).sum().backward();
                let g_layers = (h * probe.clone()).sum().backward();
                let g_plain = (plain * probe).sum().backward();
                // Each parameter's gradient in the three graphs (biases as one row).
                type GradOf = Box<dyn Fn(&burn::tensor::Gradients) -> Tensor<2>>;
                let mut params: Vec<GradOf> = Vec::new();
                for (w, b) in &layers {
                    let (w, b) = (w.clone(), b.clone().unwrap());
                    params.push(Box::new(move |g| w.grad(g).expect("a gradient")));
                    params.push(Box::new(move |g| b.grad(g).expect("a gradient").unsqueeze_dim(0)));
                }
                if x_grad {
                    let x = x.clone();
                    params.push(Box::new(move |g| x.grad(g).expect("a gradient")));
                }
                for (j, grad) in params.iter().enumerate() {
                    let (whole, layered, plain) = (grad(&g_whole), grad(&g_layers), grad(&g_plain));
                    let (a, b) = (bits(whole.clone()), bits(layered));
                    let differ = a.iter().zip(&b).filter(|(p, q)| p != q).count();
                    assert!(a.len() == b.len() && differ == 0, "{case}: parameter {j}, {differ} of {} values differ", a.len());
                    let scale = plain.clone().into_data().iter::<f32>().fold(1.0f64, |a, v| a.max(f64::from(v.abs())));
                    assert!(max_abs_diff(whole, plain) <= 2e-4 * scale, "{case}: parameter {j} against the plain ops");
                }
            }
        });
        // The first cases' backward by blocks of rows ran (the one it replaces is checked above).
        let (m, widths) = (16_384 + 333, [3usize, 256, 256, 256, 2]);
        let x = vec![0.5f32; m * 3];
        let w: Vec<Vec<f32>> = widths.windows(2).map(|w| vec![0.01f32; w[0] * w[1]]).collect();
        let a: Vec<(Vec<f32>, Vec<f32>)> = widths[1..4].iter().map(|&n| (vec![0.2f32; m * n], vec![0.6f32; m * n])).collect();
        let w_refs: Vec<&[f32]> = w.iter().map(Vec::as_slice).collect();
        let a_refs: Vec<(&[f32], &[f32])> = a.iter().map(|(h, s)| (h.as_slice(), s.as_slice())).collect();
        let blocked = pool.install(|| flex::kernels::silu_mlp_backward_by_row_blocks(&x, &w_refs, &a_refs, &vec![1.0f32; m * 2], &widths, m));
        let (gw, gb) = blocked.expect("by blocks of rows");
        assert_eq!(gw.iter().map(Vec::len).collect::<Vec<_>>(), [768, 65_536, 65_536, 512]);
        assert_eq!(gb.iter().map(Vec::len).collect::<Vec<_>>(), [256, 256, 256, 2]);
    }

    /// Columns side by side as burn's `cat` along dimension 1 puts them, on plain flex (the
    /// row pass) and under autodiff (burn's `cat`, gradients included), with an empty part.
    #[test]
    fn cat_columns_is_burns_cat() {
        for d in [device(), device().autodiff()] {
            d.seed(3);
            let parts = [[1000usize, 2], [1000, 1], [1000, 0], [1000, 5]].map(|shape| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &d));
            let ours = cat_columns(parts.to_vec());
            let burns = Tensor::cat(parts.to_vec(), 1);
            assert_eq!(ours.dims(), [1000, 8]);
            assert_eq!(ours.into_data().try_to_vec::<f32>().unwrap(), burns.into_data().try_to_vec::<f32>().unwrap());
        }
        let d = device().autodiff();
        let x = Tensor::<2>::random([7, 2], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let t = Tensor::<2>::random([7, 1], Distribution::Normal(0.0, 1.0), &d);
        let grads = (cat_columns(vec![x.clone(), t]) * 3.0).sum().backward();
        assert_eq!(x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap(), vec![3.0; 14]);
    }

    #[test]
    fn silu_and_its_gradient_match_burn() {
        let d = device().autodiff();
        let x = Tensor::<3>::random([3, 40, 70], Distribution::Normal(0.0, 4.0), &d).require_grad();
        let probe = Tensor::<3>::random([3, 40, 70], Distribution::Normal(0.0, 1.0), &d);
        let (fused, plain) = (silu(x.clone()), activation::silu(x.clone()));
        let flat = |t: Tensor<3>| t.reshape([120, 70]);
        assert!(max_abs_diff(flat(fused.clone()), flat(plain.clone())) < 1e-5);
        let (g_fused, g_plain) = ((fused * probe.clone()).sum().backward(), (plain * probe).sum().backward());
        assert!(max_abs_diff(flat(x.grad(&g_fused).unwrap()), flat(x.grad(&g_plain).unwrap())) < 1e-5);
    }

    /// Values and gradients of [`group_norm`] (with and without SiLU) against plain burn ops,
    /// and against burn-nn's `GroupNorm`.
    #[test]
    fn group_norm_forward_and_backward_match_burn() {
        let d = device().autodiff();
        for (batch, channels, h, w, groups) in [(3usize, 8usize, 5usize, 4usize, 2usize), (4, 32, 16, 16, 8), (2, 6, 1, 1, 3)] {
            for act in [FusedActivation::Identity, FusedActivation::Silu] {
                d.seed(5);
                let x = Tensor::<4>::random([batch, channels, h, w], Distribution::Normal(1.5, 2.0), &d).require_grad();
                let gamma = Tensor::<1>::random([channels], Distribution::Normal(1.0, 0.5), &d).require_grad();
                let beta = Tensor::<1>::random([channels], Distribution::Normal(0.0, 0.5), &d).require_grad();
                let fused = group_norm(x.clone(), groups, Some(gamma.clone()), Some(beta.clone()), 1e-5, act).unwrap();
                let plain = group_norm_reference(x.clone(), groups, Some(gamma.clone()), Some(beta.clone()), 1e-5, act);
                let case = format!("{batch}×{channels}×{h}×{w} G{groups} {act:?}");
                assert!(max_abs_diff4(fused.clone(), plain.clone()) < 1e-5, "forward {case}");
                let probe = Tensor::<4>::random([batch, channels, h, w], Distribution::Normal(0.0, 1.0), &d);
                let g_fused = (fused * probe.clone()).sum().backward();
                let g_plain = (plain * probe).sum().backward();
                assert!(max_abs_diff4(x.grad(&g_fused).unwrap(), x.grad(&g_plain).unwrap()) < 1e-4, "dx {case}");
                for (name, p) in [("dgamma", &gamma), ("dbeta", &beta)] {
                    let (a, b) = (p.grad(&g_fused).unwrap(), p.grad(&g_plain).unwrap());
                    assert!(max_abs_diff(a.unsqueeze_dim(0), b.unsqueeze_dim(0)) < 1e-3, "{name} {case}");
                }
            }
        }
        // A gradient the backward may not write over (shared with another parent of an
        // addition): the copying path.
        let x = Tensor::<4>::random([2, 8, 4, 4], Distribution::Normal(0.5, 2.0), &d).require_grad();
        let other = Tensor::<4>::random([2, 8, 4, 4], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let probe = Tensor::<4>::random([2, 8, 4, 4], Distribution::Normal(0.0, 1.0), &d);
        let g_fused = ((group_norm(x.clone(), 2, None, None, 1e-5, FusedActivation::Silu).unwrap() + other.clone()) * probe.clone()).sum().backward();
        let g_plain = ((group_norm_reference(x.clone(), 2, None, None, 1e-5, FusedActivation::Silu) + other) * probe).sum().backward();
        assert!(max_abs_diff4(x.grad(&g_fused).unwrap(), x.grad(&g_plain).unwrap()) < 1e-4, "dx from a shared gradient");
        // burn-nn's layer (affine, ε = 1e-5) gives the same values.
        let plain = device();
        let norm = burn::nn::GroupNormConfig::new(4, 8).init(&plain);
        let x = Tensor::<4>::random([2, 8, 3, 3], Distribution::Normal(0.0, 3.0), &plain);
        let ours =
            group_norm(x.clone(), 4, Some(norm.gamma.clone().unwrap().val()), Some(norm.beta.clone().unwrap().val()), norm.epsilon, FusedActivation::Identity)
                .unwrap();
        assert!(max_abs_diff4(ours, norm.forward(x)) < 1e-5);
        // Hand values: one group [1, 2, 3, 4] → (x − 2.5)/√(1.25 + ε).
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 4]), &plain);
        let y = group_norm(x, 1, None, None, 1e-5, FusedActivation::Identity).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let s = (1.25f64 + 1e-5).sqrt();
        for (got, want) in y.iter().zip([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{y:?}");
        }
        assert!(matches!(group_norm(Tensor::<2>::zeros([1, 6], &plain), 4, None, None, 1e-5, FusedActivation::Identity), Err(Error::InvalidParameter { .. })));
        assert!(matches!(
            group_norm(Tensor::<2>::zeros([1, 6], &plain), 3, Some(Tensor::ones([5], &plain)), None, 1e-5, FusedActivation::Identity),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    fn max_abs_diff4(a: Tensor<4>, b: Tensor<4>) -> f64 {
        let [n, c, h, w] = a.dims();
        max_abs_diff(a.reshape([n * c, h * w]), b.reshape([n * c, h * w]))
    }

    /// Values and the three gradients of [`conv2d`] against burn's `conv2d`, over strides,
    /// paddings, kernel shapes, odd sizes and batches that do not split evenly into groups.
    #[test]
    fn conv2d_forward_and_backward_match_burn() {
        let d = device().autodiff();
        // (batch, c_in, c_out, h, w, kernel, stride, padding)
        // The stride-1 cases with at least 6 channels each way take the implicit GEMM (on
        // CPUs with AVX-512 or AVX2 + FMA), the others the explicit im2col.
        type Case = (usize, usize, usize, usize, usize, [usize; 2], [usize; 2], [usize; 2]);
        let cases: [Case; 10] = [
            (5, 3, 4, 16, 16, [3, 3], [1, 1], [1, 1]),
            (3, 6, 12, 16, 16, [3, 3], [1, 1], [1, 1]),
            (3, 7, 13, 7, 5, [2, 3], [1, 1], [1, 0]),
            (2, 8, 9, 6, 6, [1, 1], [1, 1], [0, 0]),
            (2, 6, 7, 5, 6, [3, 3], [1, 1], [2, 2]),
            (3, 4, 6, 8, 8, [3, 3], [2, 2], [1, 1]),
            (7, 6, 5, 4, 4, [1, 1], [1, 1], [0, 0]),
            (2, 2, 3, 7, 5, [2, 3], [1, 2], [1, 0]),
            (1, 1, 2, 5, 6, [3, 3], [1, 1], [2, 2]),
            (33, 8, 8, 4, 4, [3, 3], [1, 1], [1, 1]),
        ];
        for (batch, cin, cout, h, w, kernel, stride, padding) in cases {
            d.seed(3);
            let x = Tensor::<4>::random([batch, cin, h, w], Distribution::Normal(0.0, 1.0), &d).require_grad();
            let wt = Tensor::<4>::random([cout, cin, kernel[0], kernel[1]], Distribution::Normal(0.0, 0.5), &d).require_grad();
            let b = Tensor::<1>::random([cout], Distribution::Normal(0.0, 1.0), &d).require_grad();
            let fused = conv2d(x.clone(), wt.clone(), Some(b.clone()), stride, padding).unwrap();
            let plain = conv2d_reference(x.clone(), wt.clone(), Some(b.clone()), stride, padding);
            assert_eq!(fused.dims(), plain.dims());
            let probe = Tensor::<4>::random(plain.dims(), Distribution::Normal(0.0, 1.0), &d);
            let case = format!("{batch}×{cin}→{cout} {h}×{w} k{kernel:?} s{stride:?} p{padding:?}");
            assert!(max_abs_diff4(fused.clone(), plain.clone()) < 1e-5, "forward {case}");
            let g_fused = (fused * probe.clone()).sum().backward();
            let g_plain = (plain * probe).sum().backward();
            assert!(max_abs_diff4(x.grad(&g_fused).unwrap(), x.grad(&g_plain).unwrap()) < 1e-4, "dx {case}");
            assert!(max_abs_diff4(wt.grad(&g_fused).unwrap(), wt.grad(&g_plain).unwrap()) < 1e-4, "dw {case}");
            let (db_f, db_p) = (b.grad(&g_fused).unwrap(), b.grad(&g_plain).unwrap());
            assert!(max_abs_diff(db_f.unsqueeze_dim(0), db_p.unsqueeze_dim(0)) < 1e-4, "db {case}");
        }
        // The input as data (no gradient asked for): ∂W and ∂b unchanged.
        for (cin, cout) in [(3, 4), (8, 16)] {
            let x = Tensor::<4>::random([3, cin, 8, 8], Distribution::Normal(0.0, 1.0), &d);
            let wt = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Normal(0.0, 0.5), &d).require_grad();
            let b = Tensor::<1>::random([cout], Distribution::Normal(0.0, 1.0), &d).require_grad();
            let probe = Tensor::<4>::random([3, cout, 8, 8], Distribution::Normal(0.0, 1.0), &d);
            let g_fused = (conv2d(x.clone(), wt.clone(), Some(b.clone()), [1, 1], [1, 1]).unwrap() * probe.clone()).sum().backward();
            let g_plain = (conv2d_reference(x, wt.clone(), Some(b.clone()), [1, 1], [1, 1]) * probe).sum().backward();
            assert!(max_abs_diff4(wt.grad(&g_fused).unwrap(), wt.grad(&g_plain).unwrap()) < 1e-4, "dw, data input {cin}→{cout}");
            let (db_f, db_p) = (b.grad(&g_fused).unwrap(), b.grad(&g_plain).unwrap());
            assert!(max_abs_diff(db_f.unsqueeze_dim(0), db_p.unsqueeze_dim(0)) < 1e-4, "db, data input {cin}→{cout}");
        }
        // Without a bias, on a plain (non-autodiff) device.
        let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(0.0, 1.0), &device());
        let wt = Tensor::<4>::random([4, 3, 3, 3], Distribution::Normal(0.0, 1.0), &device());
        let got = conv2d(x.clone(), wt.clone(), None, [1, 1], [1, 1]).unwrap();
        assert!(max_abs_diff4(got, conv2d_reference(x, wt, None, [1, 1], [1, 1])) < 1e-5);
    }

    /// The normalise → SiLU → convolve op against the two reference ops, on the plain device
    /// (fused where the implicit GEMM serves the geometry: the first four cases on AVX2 or
    /// AVX-512 CPUs) and on the autodiff device (the two fused ops, every gradient through both
    /// against burn's own ops).
    #[test]
    fn group_norm_silu_conv2d_matches_its_two_ops() {
        // (batch, c_in, groups, c_out, h, w, kernel, stride, padding)
        type Case = (usize, usize, usize, usize, usize, usize, [usize; 2], [usize; 2], [usize; 2]);
        let cases: [Case; 6] = [
            (5, 32, 8, 32, 16, 16, [3, 3], [1, 1], [1, 1]),
            (3, 12, 4, 8, 8, 8, [3, 3], [1, 1], [1, 1]),
            (2, 6, 3, 7, 5, 6, [3, 3], [1, 1], [2, 2]),
            (33, 8, 2, 8, 4, 4, [1, 1], [1, 1], [0, 0]),
            (3, 8, 4, 8, 8, 8, [3, 3], [2, 2], [1, 1]),
            (2, 8, 8, 1, 6, 6, [3, 3], [1, 1], [1, 1]),
        ];
        for (batch, cin, groups, cout, h, w, kernel, stride, padding) in cases {
            let case = format!("{batch}×{cin}/{groups}→{cout} {h}×{w} k{kernel:?} s{stride:?} p{padding:?}");
            for d in [device(), device().autodiff()] {
                d.seed(11);
                // A shifted, scaled input: the statistics are not those of a standard normal.
                let x = Tensor::<4>::random([batch, cin, h, w], Distribution::Normal(0.7, 2.0), &d);
                let gamma = Tensor::<1>::random([cin], Distribution::Normal(1.0, 0.5), &d);
                let beta = Tensor::<1>::random([cin], Distribution::Normal(0.0, 1.0), &d);
                let wt = Tensor::<4>::random([cout, cin, kernel[0], kernel[1]], Distribution::Normal(0.0, 0.3), &d);
                let b = Tensor::<1>::random([cout], Distribution::Normal(0.0, 1.0), &d);
                let (x, gamma, beta, wt, b) = if !d.is_autodiff() { (x, gamma, beta, wt, b) } else { (x.require_grad(), gamma.require_grad(), beta.require_grad(), wt.require_grad(), b.require_grad()) };
                let got = group_norm_silu_conv2d(x.clone(), groups, Some(gamma.clone()), Some(beta.clone()), 1e-5, wt.clone(), Some(b.clone()), stride, padding).unwrap();
                let h = group_norm_reference(x.clone(), groups, Some(gamma.clone()), Some(beta.clone()), 1e-5, FusedActivation::Silu);
                let want = conv2d_reference(h, wt.clone(), Some(b.clone()), stride, padding);
                assert_eq!(got.dims(), want.dims(), "{case}");
                // The same arithmetic as the two fused ops, to the bit (not plain burn ops).
                let two_ops = conv2d(group_norm(x.clone(), groups, Some(gamma.clone()), Some(beta.clone()), 1e-5, FusedActivation::Silu).unwrap(), wt.clone(), Some(b.clone()), stride, padding).unwrap();
                assert_eq!(got.to_data(), two_ops.to_data(), "{case} on {d:?}: not the two fused ops' result");
                assert!(max_abs_diff4(got.clone(), want.clone()) < 1e-4, "forward {case} on {d:?}: {}", max_abs_diff4(got.clone(), want.clone()));
                if d.is_autodiff() {
                    let probe = Tensor::<4>::random(want.dims(), Distribution::Normal(0.0, 1.0), &d);
                    let (g_got, g_want) = ((got * probe.clone()).sum().backward(), (want * probe).sum().backward());
                    assert!(max_abs_diff4(x.grad(&g_got).unwrap(), x.grad(&g_want).unwrap()) < 1e-4, "dx {case}");
                    // ∂W sums B·H·W products (magnitudes in the hundreds): relative to its size.
                    let (dw_got, dw_want) = (wt.grad(&g_got).unwrap(), wt.grad(&g_want).unwrap());
                    let scale = 1.0 + dw_want.clone().abs().max().into_scalar::<f64>();
                    assert!(max_abs_diff4(dw_got.clone(), dw_want.clone()) < 1e-6 * scale, "dw {case}: {} of {scale}", max_abs_diff4(dw_got, dw_want));
                    for (name, p) in [("dγ", &gamma), ("dβ", &beta), ("db", &b)] {
                        let (got, want) = (p.grad(&g_got).unwrap(), p.grad(&g_want).unwrap());
                        assert!(max_abs_diff(got.unsqueeze_dim(0), want.unsqueeze_dim(0)) < 1e-3, "{name} {case}");
                    }
                }
            }
        }
        // Defaults (γ = 1, β = 0, no bias) and the checks of both ops.
        let d = device();
        let x = Tensor::<4>::random([2, 8, 6, 6], Distribution::Normal(0.0, 1.0), &d);
        let wt = Tensor::<4>::random([8, 8, 3, 3], Distribution::Normal(0.0, 0.3), &d);
        let got = group_norm_silu_conv2d(x.clone(), 4, None, None, 1e-5, wt.clone(), None, [1, 1], [1, 1]).unwrap();
        let want = conv2d_reference(group_norm_reference(x.clone(), 4, None, None, 1e-5, FusedActivation::Silu), wt.clone(), None, [1, 1], [1, 1]);
        assert!(max_abs_diff4(got, want) < 1e-4);
        assert!(matches!(group_norm_silu_conv2d(x.clone(), 3, None, None, 1e-5, wt.clone(), None, [1, 1], [1, 1]), Err(Error::InvalidParameter { .. })));
        let narrow = Tensor::<4>::zeros([8, 4, 3, 3], &d);
        assert!(matches!(
            group_norm_silu_conv2d(x, 4, None, None, 1e-5, narrow, None, [1, 1], [1, 1]),
            Err(Error::ShapeMismatch { what: "conv2d input channels vs weight", .. })
        ));
    }

    #[test]
    fn conv2d_hand_computed_and_errors() {
        // A 3×3 input, the kernel [[0, 1], [2, 3]], stride 1, no padding, bias 0.5:
        // y[0, 0] = 0·1 + 1·2 + 2·4 + 3·5 + 0.5 = 25.5.
        let d = device();
        let x = Tensor::<4>::from_data(TensorData::new((1..=9).map(|v| v as f32).collect::<Vec<_>>(), [1, 1, 3, 3]), &d);
        let w = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0], [1, 1, 2, 2]), &d);
        let b = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), &d);
        let y = conv2d(x.clone(), w.clone(), Some(b), [1, 1], [0, 0]).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![25.5, 31.5, 43.5, 49.5]);
        let wide = Tensor::<4>::zeros([1, 2, 2, 2], &d);
        assert!(matches!(conv2d(x.clone(), wide, None, [1, 1], [0, 0]), Err(Error::ShapeMismatch { what: "conv2d input channels vs weight", .. })));
        assert!(matches!(conv2d(x.clone(), w.clone(), None, [0, 1], [0, 0]), Err(Error::InvalidParameter { .. })));
        let big = Tensor::<4>::zeros([1, 1, 5, 5], &d);
        assert!(matches!(conv2d(x.clone(), big, None, [1, 1], [0, 0]), Err(Error::InvalidParameter { .. })));
        assert!(matches!(conv2d(x, w, Some(Tensor::zeros([3], &d)), [1, 1], [0, 0]), Err(Error::ShapeMismatch { what: "conv2d bias", .. })));
    }

    /// Five Adam and AdamW steps by the fused update against plain burn ops, on a tensor above
    /// the threading threshold and on a small one, with the caller keeping clones of the
    /// parameter and the moments (which must not change), and the first step by hand.
    #[test]
    fn adam_update_matches_plain_ops_and_leaves_shared_buffers_alone() {
        let d = device();
        for (rows, cols) in [(3usize, 5usize), (300, 257)] {
            for weight_decay in [0.0, 0.05] {
                d.seed(7);
                let mut p = Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 1.0), &d);
                let mut reference = (p.clone(), Tensor::zeros([rows, cols], &d), Tensor::zeros([rows, cols], &d));
                let mut moments = None;
                for t in 1..=5 {
                    let g = Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 2.0), &d);
                    let step = AdamStep::new(1e-2, 0.9, 0.999, 1e-8, weight_decay, t);
                    let kept = p.clone().into_data();
                    let kept_moments = moments.as_ref().map(|(m, v): &(Tensor<2>, Tensor<2>)| (m.clone(), v.clone()));
                    let kept_m = kept_moments.as_ref().map(|(m, _)| m.clone().into_data());
                    let (p2, m2, v2) = adam_update(p.clone(), g.clone(), kept_moments, &step).unwrap();
                    assert_eq!(p.clone().into_data(), kept, "the caller's clone of the parameter changed");
                    if let (Some((m, _)), Some(kept_m)) = (moments.as_ref(), kept_m) {
                        assert_eq!(m.clone().into_data(), kept_m, "the caller's clone of the moment changed");
                    }
                    let (rp, rm, rv) = adam_update_reference(reference.0, g, reference.1, reference.2, &step);
                    let case = format!("{rows}×{cols} λ={weight_decay} t={t}");
                    assert!(max_abs_diff(p2.clone(), rp.clone()) < 1e-6, "param {case}");
                    assert!(max_abs_diff(m2.clone(), rm.clone()) < 1e-6, "m {case}");
                    assert!(max_abs_diff(v2.clone(), rv.clone()) < 1e-6, "v {case} {}", max_abs_diff(v2.clone(), rv.clone()));
                    reference = (rp, rm, rv);
                    (p, moments) = (p2, Some((m2, v2)));
                }
            }
        }
        // First step by hand: m̂ = g, v̂ = g², so p′ = p − lr·g/(|g| + ε) (≈ p − lr·sign g).
        let p = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5], [3]), &d);
        let g = Tensor::<1>::from_data(TensorData::new(vec![0.5f32, -4.0, 0.0], [3]), &d);
        let (p1, m1, v1) = adam_update(p, g, None, &AdamStep::new(0.1, 0.9, 0.999, 1e-8, 0.0, 1)).unwrap();
        let p1 = p1.into_data().try_to_vec::<f32>().unwrap();
        for (got, want) in p1.iter().zip([1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 4.0 / (4.0 + 1e-8), 0.5]) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{p1:?}");
        }
        assert_eq!(m1.into_data().try_to_vec::<f32>().unwrap(), vec![0.05, -0.4, 0.0]);
        let v1 = v1.into_data().try_to_vec::<f32>().unwrap();
        assert!((v1[1] - 0.016).abs() < 1e-7, "{v1:?}");
        let wrong = Tensor::<1>::zeros([4], &d);
        assert!(matches!(
            adam_update(Tensor::<1>::zeros([3], &d), wrong, None, &AdamStep::new(0.1, 0.9, 0.999, 1e-8, 0.0, 1)),
            Err(Error::ShapeMismatch { what: "adam gradient", .. })
        ));
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex_runs_the_fused_kernel() {
        assert!(fused_on(&device()));
        assert!(fused_on(&device().autodiff()));
    }
}
