//! The fused linear layer as a burn backend extension: host kernels on burn-flex's f32 buffers
//! (GEMMs by the crate's own AVX-512 or AVX2 + FMA micro-kernels where the CPU has them, otherwise
//! by the `gemm` crate, the library burn-flex itself calls; thin products by streaming loops), and
//! a hand-written backward for `Autodiff<B>`.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use rayon::prelude::*;
use std::borrow::Cow;

use crate::FusedActivation;

/// The fused linear layer's operations. Default bodies are the plain-op definition, so a backend
/// that lists the extension without kernels of its own is still correct.
#[backend_extension(Flex, Autodiff)]
pub trait FusedLinearBackend: Backend {
    /// `act(x·W + b)`; `x` `[m, k]`, `weight` `[k, n]`, `bias` `[n]` → `[m, n]`.
    fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>, silu: bool) -> FloatTensor<Self> {
        let z = affine::<Self>(x, weight, bias);
        if silu { Self::float_mul(z.clone(), Self::sigmoid(z)) } else { z }
    }

    /// `(silu(z), σ(z))` with `z = x·W + b`: the output and, with it, all the backward needs
    /// (`silu′(z) = σ + silu·(1 − σ)`, so the backward evaluates no `exp`).
    fn fused_linear_silu_with_sigmoid(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let z = affine::<Self>(x, weight, bias);
        let s = Self::sigmoid(z.clone());
        (Self::float_mul(z, s.clone()), s)
    }

    /// `silu(x) = x·σ(x)` element-wise, any shape.
    fn fused_silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_mul(x.clone(), Self::sigmoid(x))
    }

    /// `∂x = grad·σ(x)(1 + x(1 − σ(x)))`, the gradient of [`FusedLinearBackend::fused_silu`].
    fn fused_silu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let s = Self::sigmoid(x.clone());
        let one_minus_s = Self::float_add_scalar(Self::float_neg(s.clone()), 1.0.into());
        let d = Self::float_add_scalar(Self::float_mul(x, one_minus_s), 1.0.into());
        Self::float_mul(grad, Self::float_mul(s, d))
    }

    /// `silu(x·W₁ + b₁)·W₂ + b₂`, a SiLU layer and the linear layer after it (an MLP's last two
    /// layers); `x` `[m, k]`, `w1` `[k, n]`, `b1` `[n]`, `w2` `[n, p]`, `b2` `[p]` → `[m, p]`.
    /// Where a backend fuses it, the hidden activations are read back from cache, not memory.
    /// Under autodiff its backward is [`FusedLinearBackend::fused_linear_silu_linear_backward`].
    fn fused_linear_silu_linear(x: FloatTensor<Self>, w1: FloatTensor<Self>, b1: FloatTensor<Self>, w2: FloatTensor<Self>, b2: FloatTensor<Self>) -> FloatTensor<Self> {
        let h = Self::fused_linear(x, w1, b1, true);
        Self::fused_linear(h, w2, b2, false)
    }

    /// The backward of [`FusedLinearBackend::fused_linear_silu_linear`]: `((∂x, ∂W₁, ∂b₁),
    /// (∂W₂, ∂b₂))` from the output gradient `grad` and the forward's hidden `h = silu(z₁)` and
    /// `σ(z₁)`, `∂x` a placeholder without `need_x` (as in
    /// [`FusedLinearBackend::fused_linear_backward`]). Where a backend fuses it, the second
    /// layer's `∂h = grad·W₂ᵀ` is formed inside the SiLU backward's pass instead of going to
    /// memory.
    #[allow(clippy::type_complexity)]
    fn fused_linear_silu_linear_backward(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        hidden: FloatTensor<Self>,
        sigmoid: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        need_x: bool,
    ) -> ((FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>), (FloatTensor<Self>, FloatTensor<Self>)) {
        linear_silu_linear_backward_by_layers::<Self>(x, w1, w2, hidden, sigmoid, grad, need_x)
    }

    /// An MLP of `layers` (at most six) SiLU layers and a linear output layer:
    /// `x` `[m, w₀]`, `wᵢ` `[wᵢ, wᵢ₊₁]`, `bᵢ` `[wᵢ₊₁]` → `[m, w_L]`, SiLU after every layer but
    /// the last; the slots after `layers` hold anything and are not read. (Fixed slots because
    /// the extension macro routes no `Vec` or `Option` of tensors to a backend, and flattening
    /// the weights into one tensor cost a copy of them per call, 2% of a sampling step.) Where
    /// a backend fuses it, each block of rows goes through every layer while its activations
    /// are in cache. Under autodiff the whole MLP is one node, whose backward is
    /// [`FusedLinearBackend::fused_silu_mlp_backward`].
    #[allow(clippy::too_many_arguments)]
    fn fused_silu_mlp(
        x: FloatTensor<Self>,
        w0: FloatTensor<Self>,
        b0: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        b2: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
        w4: FloatTensor<Self>,
        b4: FloatTensor<Self>,
        w5: FloatTensor<Self>,
        b5: FloatTensor<Self>,
        layers: usize,
    ) -> FloatTensor<Self> {
        let slots = [(w0, b0), (w1, b1), (w2, b2), (w3, b3), (w4, b4), (w5, b5)];
        let mut h = x;
        for (i, (w, b)) in slots.into_iter().take(layers).enumerate() {
            h = Self::fused_linear(h, w, b, i + 1 < layers);
        }
        h
    }

    /// The backward of [`FusedLinearBackend::fused_silu_mlp`]: `(∂x, (∂W₀, …, ∂W₅), (∂b₀, …,
    /// ∂b₅))` from the output gradient `grad`, the input `x`, the weights and, for each SiLU
    /// layer `i < layers − 1`, its output `hᵢ = silu(zᵢ)` and `σ(zᵢ)` (`hᵢ`, `sᵢ`). Weight slots
    /// from `layers` on and activation slots from `layers − 1` on hold anything and are not
    /// read; the gradients returned there are placeholders, as is `∂x` without `need_x` (as in
    /// [`FusedLinearBackend::fused_linear_backward`]). The default is the layers' backwards one
    /// after the other, the last two as
    /// [`FusedLinearBackend::fused_linear_silu_linear_backward`]. Where a backend fuses it,
    /// each block of rows goes back through every layer while its gradients are in cache.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn fused_silu_mlp_backward(
        x: FloatTensor<Self>,
        w0: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        w4: FloatTensor<Self>,
        w5: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        s0: FloatTensor<Self>,
        h1: FloatTensor<Self>,
        s1: FloatTensor<Self>,
        h2: FloatTensor<Self>,
        s2: FloatTensor<Self>,
        h3: FloatTensor<Self>,
        s3: FloatTensor<Self>,
        h4: FloatTensor<Self>,
        s4: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        layers: usize,
        need_x: bool,
    ) -> (
        FloatTensor<Self>,
        (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>),
        (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>),
    ) {
        let activations = [(h0, s0), (h1, s1), (h2, s2), (h3, s3), (h4, s4)];
        let (gx, gw, gb) = silu_mlp_backward_by_layers::<Self>(x, [w0, w1, w2, w3, w4, w5], activations, grad, layers, need_x);
        (gx, six(gw), six(gb))
    }

    /// `(∂x, ∂W, ∂b)` from the output gradient `grad`. With `silu`, `output` and `sigmoid` are
    /// the forward's `y = silu(z)` and `σ(z)`, and `∂z = grad·(σ + y(1 − σ))`; without, they
    /// are not read. Without `need_x` (the input is data, not a parameter's function: an MLP's
    /// first layer) `∂x` is not computed and the first element is a placeholder, not to be
    /// read.
    fn fused_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output: FloatTensor<Self>,
        sigmoid: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        silu: bool,
        need_x: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let n = weight.shape()[1];
        let grad_pre = if silu {
            let one_minus_s = Self::float_add_scalar(Self::float_neg(sigmoid.clone()), 1.0.into());
            Self::float_mul(grad, Self::float_add(sigmoid, Self::float_mul(output, one_minus_s)))
        } else {
            grad
        };
        let grad_bias = Self::float_reshape(Self::float_sum_dim(grad_pre.clone(), 0), Shape::new([n]));
        let grad_weight = Self::float_matmul(Self::float_transpose(x.clone()), grad_pre.clone());
        let grad_x = if need_x { Self::float_matmul(grad_pre, Self::float_transpose(weight)) } else { x };
        (grad_x, grad_weight, grad_bias)
    }
}

/// [`FusedLinearBackend::fused_linear_silu_linear_backward`] as the two layers' backwards, one
/// after the other.
#[allow(clippy::type_complexity)]
fn linear_silu_linear_backward_by_layers<B: FusedLinearBackend>(
    x: FloatTensor<B>,
    w1: FloatTensor<B>,
    w2: FloatTensor<B>,
    hidden: FloatTensor<B>,
    sigmoid: FloatTensor<B>,
    grad: FloatTensor<B>,
    need_x: bool,
) -> ((FloatTensor<B>, FloatTensor<B>, FloatTensor<B>), (FloatTensor<B>, FloatTensor<B>)) {
    // The identity layer reads neither `output` nor `sigmoid`.
    let (grad_hidden, grad_w2, grad_b2) = B::fused_linear_backward(hidden.clone(), w2, grad.clone(), grad.clone(), grad, false, true);
    (B::fused_linear_backward(x, w1, hidden, sigmoid, grad_hidden, true, need_x), (grad_w2, grad_b2))
}

/// [`FusedLinearBackend::fused_silu_mlp_backward`] as the layers' backwards, last to first: the
/// last two as one [`FusedLinearBackend::fused_linear_silu_linear_backward`], the others as
/// [`FusedLinearBackend::fused_linear_backward`] (the backwards of the nodes that
/// [`FusedLinearBackend::fused_linear`] and `fused_linear_silu_linear` record, so the same
/// values). Placeholders (a clone of `x`) in the slots past `layers`.
#[allow(clippy::type_complexity)]
fn silu_mlp_backward_by_layers<B: FusedLinearBackend>(
    x: FloatTensor<B>,
    weights: [FloatTensor<B>; MAX_FUSED_LAYERS],
    activations: [(FloatTensor<B>, FloatTensor<B>); MAX_FUSED_LAYERS - 1],
    grad: FloatTensor<B>,
    layers: usize,
    need_x: bool,
) -> (FloatTensor<B>, [FloatTensor<B>; MAX_FUSED_LAYERS], [FloatTensor<B>; MAX_FUSED_LAYERS]) {
    let last = layers - 1;
    let mut gw: [Option<FloatTensor<B>>; MAX_FUSED_LAYERS] = Default::default();
    let mut gb: [Option<FloatTensor<B>>; MAX_FUSED_LAYERS] = Default::default();
    // Every layer but the first reads a hidden layer, a function of the parameters.
    let input = |i: usize| if i == 0 { x.clone() } else { activations[i - 1].0.clone() };
    let need = |i: usize| i > 0 || need_x;
    let mut g = if last == 0 {
        let (gx, w, b) = B::fused_linear_backward(x.clone(), weights[0].clone(), grad.clone(), grad.clone(), grad, false, need_x);
        (gw[0], gb[0]) = (Some(w), Some(b));
        gx
    } else {
        let (h, s) = activations[last - 1].clone();
        let ((gx, w1, b1), (w2, b2)) = B::fused_linear_silu_linear_backward(input(last - 1), weights[last - 1].clone(), weights[last].clone(), h, s, grad, need(last - 1));
        (gw[last - 1], gb[last - 1], gw[last], gb[last]) = (Some(w1), Some(b1), Some(w2), Some(b2));
        gx
    };
    for i in (0..last.saturating_sub(1)).rev() {
        let (h, s) = activations[i].clone();
        let (gx, w, b) = B::fused_linear_backward(input(i), weights[i].clone(), h, s, g, true, need(i));
        (gw[i], gb[i]) = (Some(w), Some(b));
        g = gx;
    }
    let fill = |slots: [Option<FloatTensor<B>>; MAX_FUSED_LAYERS]| slots.map(|t| t.unwrap_or_else(|| x.clone()));
    (g, fill(gw), fill(gb))
}

/// Six tensors as the tuple the extension macro routes.
#[allow(clippy::type_complexity)]
fn six<T>([a, b, c, d, e, f]: [T; 6]) -> (T, T, T, T, T, T) {
    (a, b, c, d, e, f)
}

fn affine<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, bias: FloatTensor<B>) -> FloatTensor<B> {
    let n = weight.shape()[1];
    B::float_add(B::float_matmul(x, weight), B::float_reshape(bias, Shape::new([1, n])))
}

/// Whether `device` is burn-flex (with or without autodiff).
pub(crate) fn is_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// Whether `device` is burn-flex without autodiff (where no gradient can be asked for).
/// (`Device`'s `==` cannot tell: it compares an autodiff device by the device it wraps.)
pub(crate) fn is_plain_flex(device: &Device) -> bool {
    is_flex(device) && !device.is_autodiff()
}

/// The fused paths apply to f32 tensors that all live on burn-flex (mixed devices take the
/// plain path, which reports them as burn does); each tensor is given as `(device, dtype)`.
pub(crate) fn all_flex_f32(parts: &[(Device, DType)]) -> bool {
    parts.iter().all(|(device, dtype)| is_flex(device) && *dtype == DType::F32)
}

pub(crate) fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedLinearBackend>::fused_silu(x.into_dispatch()))
}

pub(crate) fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>, activation: FusedActivation) -> Tensor<2> {
    let silu = activation == FusedActivation::Silu;
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedLinearBackend>::fused_linear(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch(), silu))
}

/// The most layers [`FusedLinearBackend::fused_silu_mlp`] takes.
pub(crate) const MAX_FUSED_LAYERS: usize = 6;

/// The MLP `layers` (weights `[wᵢ, wᵢ₊₁]` chaining from `x`'s width, biases `[wᵢ₊₁]`, one to
/// [`MAX_FUSED_LAYERS`] of them) through [`FusedLinearBackend::fused_silu_mlp`].
pub(crate) fn silu_mlp(x: Tensor<2>, layers: &[(Tensor<2>, Tensor<1>)]) -> Tensor<2> {
    assert!((1..=MAX_FUSED_LAYERS).contains(&layers.len()), "silu_mlp: 1 to {MAX_FUSED_LAYERS} layers");
    // The unused slots repeat the first layer (a reference count each, nothing copied).
    let slot = |i: usize| {
        let (w, b) = layers.get(i).unwrap_or(&layers[0]);
        (w.clone().into_dispatch(), b.clone().into_dispatch())
    };
    let [(w0, b0), (w1, b1), (w2, b2), (w3, b3), (w4, b4), (w5, b5)] = std::array::from_fn(slot);
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedLinearBackend>::fused_silu_mlp(x.into_dispatch(), w0, b0, w1, b1, w2, b2, w3, b3, w4, b4, w5, b5, layers.len()))
}

pub(crate) fn linear_silu_linear(x: Tensor<2>, w1: Tensor<2>, b1: Tensor<1>, w2: Tensor<2>, b2: Tensor<1>) -> Tensor<2> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedLinearBackend>::fused_linear_silu_linear(
        x.into_dispatch(),
        w1.into_dispatch(),
        b1.into_dispatch(),
        w2.into_dispatch(),
        b2.into_dispatch(),
    ))
}

impl FusedLinearBackend for Flex {
    fn fused_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, silu: bool) -> FlexTensor {
        let (m, k, n) = dims(&x, &weight);
        let (y, _) = kernels::linear_forward(&f32_data(&x), &f32_data(&weight), &f32_data(&bias), m, k, n, silu, false);
        from_vec(y, m, n)
    }

    fn fused_linear_silu_with_sigmoid(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> (FlexTensor, FlexTensor) {
        let (m, k, n) = dims(&x, &weight);
        let (y, s) = kernels::linear_forward(&f32_data(&x), &f32_data(&weight), &f32_data(&bias), m, k, n, true, true);
        (from_vec(y, m, n), from_vec(s.expect("asked for the sigmoid"), m, n))
    }

    fn fused_linear_silu_linear(x: FlexTensor, w1: FlexTensor, b1: FlexTensor, w2: FlexTensor, b2: FlexTensor) -> FlexTensor {
        let (m, k, n) = dims(&x, &w1);
        let outputs = w2.layout().shape()[1];
        let y = kernels::linear_silu_linear_forward(&f32_data(&x), (&f32_data(&w1), &f32_data(&b1)), (&f32_data(&w2), &f32_data(&b2)), (m, k, n, outputs));
        from_vec(y, m, outputs)
    }

    fn fused_linear_silu_linear_backward(
        x: FlexTensor,
        w1: FlexTensor,
        w2: FlexTensor,
        hidden: FlexTensor,
        sigmoid: FlexTensor,
        grad: FlexTensor,
        need_x: bool,
    ) -> ((FlexTensor, FlexTensor, FlexTensor), (FlexTensor, FlexTensor)) {
        let (m, k, n) = dims(&x, &w1);
        let p = w2.layout().shape()[1];
        if !(1..=crate::thin::THIN).contains(&p) || n == 0 {
            return linear_silu_linear_backward_by_layers::<Self>(x, w1, w2, hidden, sigmoid, grad, need_x);
        }
        // W₂ᵀ, `p × n`: each of its rows is one output's weights over the hidden units.
        let w2t = crate::thin::pack(&f32_data(&w2), (1, p), p, n);
        let (g, h, s) = (f32_data(&grad), f32_data(&hidden), f32_data(&sigmoid));
        let head = kernels::PreActivationGrad::Head { grad: &g, p, w2t: &w2t, y: &h, s: &s };
        let (x_data, w1_data) = (f32_data(&x), f32_data(&w1));
        let blocked = if need_x { kernels::backward_by_row_blocks(&x_data, &w1_data, head, (m, k, n)) } else { None };
        let (gx, gw1, sums) = match blocked {
            Some((gx, gw1, sums)) => (Some(gx), gw1, sums.expect("a head's sums")),
            None => {
                let (dz, sums) = kernels::pre_activation_grad(head, m, n);
                // `∂b₁` is in `sums` already: an empty one stands in, so that no pass sums it again.
                let (gx, gw1, _) = kernels::affine_backward(&x_data, &w1_data, &dz, (m, k, n), need_x, Some(Vec::new()));
                (gx, gw1, sums)
            }
        };
        let (gb1, gw2, gb2) = kernels::split_head_sums(sums, n, p);
        let gx = gx.map_or_else(|| from_vec(Vec::new(), 0, k), |gx| from_vec(gx, m, k));
        let gb1 = FlexTensor::from_data(TensorData::new(gb1, [n]));
        ((gx, from_vec(gw1, k, n), gb1), (from_vec(gw2, n, p), FlexTensor::from_data(TensorData::new(gb2, [p]))))
    }

    fn fused_silu_mlp(
        x: FlexTensor,
        w0: FlexTensor,
        b0: FlexTensor,
        w1: FlexTensor,
        b1: FlexTensor,
        w2: FlexTensor,
        b2: FlexTensor,
        w3: FlexTensor,
        b3: FlexTensor,
        w4: FlexTensor,
        b4: FlexTensor,
        w5: FlexTensor,
        b5: FlexTensor,
        layers: usize,
    ) -> FlexTensor {
        let slots = [(w0, b0), (w1, b1), (w2, b2), (w3, b3), (w4, b4), (w5, b5)];
        let slots = &slots[..layers];
        let m = x.layout().shape()[0];
        let widths: Vec<usize> = std::iter::once(x.layout().shape()[1]).chain(slots.iter().map(|(w, _)| w.layout().shape()[1])).collect();
        let data: Vec<_> = slots.iter().map(|(w, b)| (f32_data(w), f32_data(b))).collect();
        let layers: Vec<(&[f32], &[f32])> = data.iter().map(|(w, b)| (&**w, &**b)).collect();
        let y = kernels::silu_mlp_forward(&f32_data(&x), &layers, &widths, m);
        from_vec(y, m, widths[widths.len() - 1])
    }

    fn fused_silu_mlp_backward(
        x: FlexTensor,
        w0: FlexTensor,
        w1: FlexTensor,
        w2: FlexTensor,
        w3: FlexTensor,
        w4: FlexTensor,
        w5: FlexTensor,
        h0: FlexTensor,
        s0: FlexTensor,
        h1: FlexTensor,
        s1: FlexTensor,
        h2: FlexTensor,
        s2: FlexTensor,
        h3: FlexTensor,
        s3: FlexTensor,
        h4: FlexTensor,
        s4: FlexTensor,
        grad: FlexTensor,
        layers: usize,
        need_x: bool,
    ) -> (FlexTensor, (FlexTensor, FlexTensor, FlexTensor, FlexTensor, FlexTensor, FlexTensor), (FlexTensor, FlexTensor, FlexTensor, FlexTensor, FlexTensor, FlexTensor)) {
        let weights = [w0, w1, w2, w3, w4, w5];
        let activations = [(h0, s0), (h1, s1), (h2, s2), (h3, s3), (h4, s4)];
        if !need_x && layers >= 3 {
            let m = x.layout().shape()[0];
            let widths: Vec<usize> = std::iter::once(x.layout().shape()[1]).chain(weights[..layers].iter().map(|w| w.layout().shape()[1])).collect();
            let w_data: Vec<_> = weights[..layers].iter().map(f32_data).collect();
            let a_data: Vec<_> = activations[..layers - 1].iter().map(|(h, s)| (f32_data(h), f32_data(s))).collect();
            let w_refs: Vec<&[f32]> = w_data.iter().map(|w| &**w).collect();
            let a_refs: Vec<(&[f32], &[f32])> = a_data.iter().map(|(h, s)| (&**h, &**s)).collect();
            if let Some((gw, gb)) = kernels::silu_mlp_backward_by_row_blocks(&f32_data(&x), &w_refs, &a_refs, &f32_data(&grad), &widths, m) {
                // `∂x` and the slots past `layers`: placeholders, not to be read.
                let unread = || from_vec(Vec::new(), 0, widths[0]);
                let mut gw = gw.into_iter().enumerate().map(|(i, g)| from_vec(g, widths[i], widths[i + 1]));
                let mut gb = gb.into_iter().map(|g| { let n = g.len(); FlexTensor::from_data(TensorData::new(g, [n])) });
                let gw: [FlexTensor; MAX_FUSED_LAYERS] = std::array::from_fn(|_| gw.next().unwrap_or_else(unread));
                let gb: [FlexTensor; MAX_FUSED_LAYERS] = std::array::from_fn(|_| gb.next().unwrap_or_else(unread));
                return (unread(), six(gw), six(gb));
            }
        }
        let (gx, gw, gb) = silu_mlp_backward_by_layers::<Self>(x, weights, activations, grad, layers, need_x);
        (gx, six(gw), six(gb))
    }

    fn fused_silu(x: FlexTensor) -> FlexTensor {
        let shape = x.layout().shape().clone();
        FlexTensor::from_data(TensorData::new(kernels::silu_of(&f32_data(&x)), shape))
    }

    fn fused_silu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let shape = x.layout().shape().clone();
        let mut grad = grad;
        if let Some(g) = unique_dense_f32(&mut grad) {
            kernels::silu_backward_in_place(g, &f32_data(&x));
            return grad;
        }
        let mut g = f32_data(&grad).into_owned();
        kernels::silu_backward_in_place(&mut g, &f32_data(&x));
        FlexTensor::from_data(TensorData::new(g, shape))
    }

    fn fused_linear_backward(x: FlexTensor, weight: FlexTensor, output: FlexTensor, sigmoid: FlexTensor, grad: FlexTensor, silu: bool, need_x: bool) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (m, k, n) = dims(&x, &weight);
        let bias = |gb: Vec<f32>| FlexTensor::from_data(TensorData::new(gb, [n]));
        // The placeholder for an `∂x` nobody reads.
        let unread = || from_vec(Vec::new(), 0, k);
        if silu && !need_x && (1..=crate::thin::THIN).contains(&k) && n > 0 {
            // A thin-depth first layer (the MLP's `[x | t]`, k = 3): `∂W` and `∂b` in the pass
            // that forms `∂z`, which is then neither written nor read again.
            let (gw, gb) = kernels::thin_silu_weight_backward(&f32_data(&x), &f32_data(&grad), &f32_data(&output), &f32_data(&sigmoid), m, k, n);
            return (unread(), from_vec(gw, k, n), bias(gb));
        }
        if silu && need_x {
            // A large batch: `∂z` formed a block of rows at a time inside the blocked products.
            let (y, s, g) = (f32_data(&output), f32_data(&sigmoid), f32_data(&grad));
            let dz = kernels::PreActivationGrad::Silu { grad: &g, y: &y, s: &s };
            if let Some((gx, gw, Some(gb))) = kernels::backward_by_row_blocks(&f32_data(&x), &f32_data(&weight), dz, (m, k, n)) {
                return (from_vec(gx, m, k), from_vec(gw, k, n), bias(gb));
            }
        }
        let mut grad = grad;
        let mut copied = None;
        let mut column_sums = None;
        if silu {
            let (y, s) = (f32_data(&output), f32_data(&sigmoid));
            // The incoming gradient is usually owned by this call alone: rewrite it in place,
            // summing its columns (`∂b`) in the same pass.
            match unique_dense_f32(&mut grad) {
                Some(g) => column_sums = Some(kernels::silu_backward_from_sigmoid_in_place(g, &y, &s, n)),
                None => {
                    let mut g = f32_data(&grad).into_owned();
                    column_sums = Some(kernels::silu_backward_from_sigmoid_in_place(&mut g, &y, &s, n));
                    copied = Some(g);
                }
            }
        }
        let grad_pre = match &copied {
            Some(g) => Cow::Borrowed(g.as_slice()),
            None => f32_data(&grad),
        };
        let (gx, gw, gb) = kernels::affine_backward(&f32_data(&x), &f32_data(&weight), &grad_pre, (m, k, n), need_x, column_sums);
        (gx.map_or_else(unread, |gx| from_vec(gx, m, k)), from_vec(gw, k, n), bias(gb))
    }
}

/// Register each parent's gradient (parents that need none are `None`).
pub(crate) fn register_gradients<B: Backend, const N: usize>(grads: &mut Gradients, parents: [Option<NodeId>; N], values: [FloatTensor<B>; N]) {
    for (node, value) in parents.into_iter().zip(values) {
        if let Some(node) = node {
            grads.register::<B>(node, value);
        }
    }
}

fn dims(x: &FlexTensor, weight: &FlexTensor) -> (usize, usize, usize) {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    (xs[0], xs[1], ws[1])
}

/// The tensor's elements in row-major order: borrowed when contiguous, copied otherwise.
pub(crate) fn f32_data(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.layout().contiguous_offsets() {
        Some((start, end)) => Cow::Borrowed(&t.storage::<f32>()[start..end]),
        None => Cow::Owned(t.clone().into_data().try_to_vec::<f32>().expect("an f32 tensor (checked by `all_flex_f32`)")),
    }
}

/// The tensor's whole buffer, mutable, when it is contiguous from offset 0 and not shared.
pub(crate) fn unique_dense_f32(t: &mut FlexTensor) -> Option<&mut [f32]> {
    let n = t.layout().num_elements();
    if t.layout().contiguous_offsets() != Some((0, n)) {
        return None;
    }
    t.try_storage_mut::<f32>().filter(|s| s.len() == n)
}

fn from_vec(values: Vec<f32>, rows: usize, cols: usize) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, [rows, cols]))
}

impl<B: FusedLinearBackend, C: CheckpointStrategy> FusedLinearBackend for Autodiff<B, C> {
    fn fused_silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        /// Backward of `silu(x)`; the state is `x`.
        #[derive(Debug)]
        struct FusedSiluGrad;

        impl<B: FusedLinearBackend> Backward<B, 1> for FusedSiluGrad {
            type State = FloatTensor<B>;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                if let [Some(node)] = ops.parents {
                    grads.register::<B>(node.id, B::fused_silu_backward(ops.state, grad));
                }
            }
        }

        let node = x.node();
        let x = x.into_primitive();
        match FusedSiluGrad.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x.clone(), B::fused_silu(x)),
            OpsKind::UnTracked(prep) => prep.finish(B::fused_silu(x)),
        }
    }

    fn fused_linear_silu_linear(x: FloatTensor<Self>, w1: FloatTensor<Self>, b1: FloatTensor<Self>, w2: FloatTensor<Self>, b2: FloatTensor<Self>) -> FloatTensor<Self> {
        /// Backward of `silu(x·W₁ + b₁)·W₂ + b₂`; the state is `(x, W₁, W₂, h, σ(z₁))`.
        #[derive(Debug)]
        struct FusedLinearSiluLinearGrad;

        impl<B: FusedLinearBackend> Backward<B, 5> for FusedLinearSiluLinearGrad {
            type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

            fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (x, w1, w2, hidden, sigmoid) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let need_x = ops.parents[0].is_some();
                let ((gx, gw1, gb1), (gw2, gb2)) = B::fused_linear_silu_linear_backward(x, w1, w2, hidden, sigmoid, grad, need_x);
                register_gradients::<B, 5>(grads, ops.parents.map(|p| p.map(|n| n.id)), [gx, gw1, gb1, gw2, gb2]);
            }
        }

        let nodes = [x.node(), w1.node(), b1.node(), w2.node(), b2.node()];
        let (x, w1, b1, w2, b2) = (x.into_primitive(), w1.into_primitive(), b1.into_primitive(), w2.into_primitive(), b2.into_primitive());
        match FusedLinearSiluLinearGrad.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (hidden, sigmoid) = B::fused_linear_silu_with_sigmoid(x.clone(), w1.clone(), b1);
                let y = B::fused_linear(hidden.clone(), w2.clone(), b2, false);
                prep.finish((x, w1, w2, hidden, sigmoid), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_linear_silu_linear(x, w1, b1, w2, b2)),
        }
    }

    fn fused_silu_mlp(
        x: FloatTensor<Self>,
        w0: FloatTensor<Self>,
        b0: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        b2: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
        w4: FloatTensor<Self>,
        b4: FloatTensor<Self>,
        w5: FloatTensor<Self>,
        b5: FloatTensor<Self>,
        layers: usize,
    ) -> FloatTensor<Self> {
        let slots = [(w0, b0), (w1, b1), (w2, b2), (w3, b3), (w4, b4), (w5, b5)];
        // A node's parents are a fixed-size array: one size per depth.
        match layers {
            1 => silu_mlp_node::<B, C, 3>(x, slots, layers),
            2 => silu_mlp_node::<B, C, 5>(x, slots, layers),
            3 => silu_mlp_node::<B, C, 7>(x, slots, layers),
            4 => silu_mlp_node::<B, C, 9>(x, slots, layers),
            5 => silu_mlp_node::<B, C, 11>(x, slots, layers),
            _ => silu_mlp_node::<B, C, 13>(x, slots, layers),
        }
    }

    fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>, silu: bool) -> FloatTensor<Self> {
        /// Backward of `act(x·W + b)`; the state is `(x, W)` and, for SiLU, `(silu(z), σ(z))`.
        #[derive(Debug)]
        struct FusedLinearGrad;

        impl<B: FusedLinearBackend> Backward<B, 3> for FusedLinearGrad {
            type State = (FloatTensor<B>, FloatTensor<B>, Option<(FloatTensor<B>, FloatTensor<B>)>);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (x, weight, activation) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let silu = activation.is_some();
                let (output, sigmoid) = activation.unwrap_or_else(|| (grad.clone(), grad.clone()));
                let need_x = ops.parents[0].is_some();
                let (grad_x, grad_weight, grad_bias) = B::fused_linear_backward(x, weight, output, sigmoid, grad, silu, need_x);
                register_gradients::<B, 3>(grads, ops.parents.map(|p| p.map(|n| n.id)), [grad_x, grad_weight, grad_bias]);
            }
        }

        let nodes = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (x.into_primitive(), weight.into_primitive(), bias.into_primitive());
        match FusedLinearGrad.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                if silu {
                    let (y, s) = B::fused_linear_silu_with_sigmoid(x.clone(), weight.clone(), bias);
                    prep.finish((x, weight, Some((y.clone(), s))), y)
                } else {
                    let y = B::fused_linear(x.clone(), weight.clone(), bias, false);
                    prep.finish((x, weight, None), y)
                }
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_linear(x, weight, bias, silu)),
        }
    }
}

/// Backward of [`FusedLinearBackend::fused_silu_mlp`] with `N = 1 + 2·layers` parents (`x`,
/// then each layer's weight and bias); the state is `x`, the weights and each SiLU layer's
/// `(silu(zᵢ), σ(zᵢ))`.
#[derive(Debug)]
struct FusedSiluMlpGrad;

/// Two tensors: a layer's `(weight, bias)`, or a SiLU layer's `(silu(z), σ(z))`.
type Pair<B> = (FloatTensor<B>, FloatTensor<B>);

/// [`FusedSiluMlpGrad`]'s state.
type SiluMlpState<B> = (FloatTensor<B>, Vec<FloatTensor<B>>, Vec<Pair<B>>);

impl<B: FusedLinearBackend, const N: usize> Backward<B, N> for FusedSiluMlpGrad {
    type State = SiluMlpState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weights, activations) = ops.state;
        let layers = weights.len();
        let grad = grads.consume::<B>(&ops.node);
        let need_x = ops.parents[0].is_some();
        // The slots past the network repeat its first tensors (not read).
        let w: [FloatTensor<B>; MAX_FUSED_LAYERS] = std::array::from_fn(|i| weights.get(i).unwrap_or(&weights[0]).clone());
        let a: [(FloatTensor<B>, FloatTensor<B>); MAX_FUSED_LAYERS - 1] = std::array::from_fn(|i| activations.get(i).cloned().unwrap_or_else(|| (x.clone(), x.clone())));
        let [w0, w1, w2, w3, w4, w5] = w;
        let [(h0, s0), (h1, s1), (h2, s2), (h3, s3), (h4, s4)] = a;
        let (gx, gw, gb) = B::fused_silu_mlp_backward(x, w0, w1, w2, w3, w4, w5, h0, s0, h1, s1, h2, s2, h3, s3, h4, s4, grad, layers, need_x);
        let (gw, gb) = ([gw.0, gw.1, gw.2, gw.3, gw.4, gw.5], [gb.0, gb.1, gb.2, gb.3, gb.4, gb.5]);
        let mut params = gw.into_iter().zip(gb).take(layers).flat_map(|(w, b)| [w, b]);
        let mut gx = Some(gx);
        let values: [FloatTensor<B>; N] = std::array::from_fn(|i| if i == 0 { gx.take() } else { params.next() }.expect("N = 1 + 2·layers"));
        register_gradients::<B, N>(grads, ops.parents.map(|p| p.map(|n| n.id)), values);
    }
}

/// [`FusedLinearBackend::fused_silu_mlp`] under autodiff: one node for the whole MLP with
/// `N = 1 + 2·layers` parents. Tracked, the forward keeps what the backward reads (each SiLU
/// layer's output and sigmoid, as the per-layer nodes would); untracked it is the backend's
/// fused evaluation.
fn silu_mlp_node<B: FusedLinearBackend, C: CheckpointStrategy, const N: usize>(x: FloatTensor<Autodiff<B, C>>, slots: [Pair<Autodiff<B, C>>; MAX_FUSED_LAYERS], layers: usize) -> FloatTensor<Autodiff<B, C>> {
    let mut parents = std::iter::once(x.node()).chain(slots[..layers].iter().flat_map(|(w, b)| [w.node(), b.node()]));
    let nodes: [_; N] = std::array::from_fn(|_| parents.next().expect("N = 1 + 2·layers"));
    let x = x.into_primitive();
    let params: Vec<(FloatTensor<B>, FloatTensor<B>)> = slots.into_iter().take(layers).map(|(w, b)| (w.into_primitive(), b.into_primitive())).collect();
    match <FusedSiluMlpGrad as Backward<B, N>>::prepare::<C>(FusedSiluMlpGrad, nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let mut activations = Vec::with_capacity(layers - 1);
            let mut h = x.clone();
            for (w, b) in &params[..layers - 1] {
                let (y, s) = B::fused_linear_silu_with_sigmoid(h, w.clone(), b.clone());
                activations.push((y.clone(), s));
                h = y;
            }
            let (w, b) = params[layers - 1].clone();
            let y = B::fused_linear(h, w, b, false);
            let weights = params.into_iter().map(|(w, _)| w).collect();
            prep.finish((x, weights, activations), y)
        }
        OpsKind::UnTracked(prep) => {
            let slot = |i: usize| params.get(i).unwrap_or(&params[0]).clone();
            let [(w0, b0), (w1, b1), (w2, b2), (w3, b3), (w4, b4), (w5, b5)] = std::array::from_fn(slot);
            prep.finish(B::fused_silu_mlp(x, w0, b0, w1, b1, w2, b2, w3, b3, w4, b4, w5, b5, layers))
        }
    }
}

/// The host kernels on row-major f32 buffers.
pub(crate) mod kernels {
    use super::*;

    /// Below this many multiply-adds a GEMM runs on one thread (burn-flex's own threshold).
    const GEMM_PARALLEL: usize = 192 * 192 * 192;
    /// Element-wise passes split across threads in chunks of this many elements.
    const CHUNK: usize = 1 << 14;

    /// From this many outputs a SiLU layer's GEMM is threaded whatever its depth: the epilogue's
    /// `exp` per output, not the multiply-adds, is the work of a shallow one (the MLP's input
    /// layer, `k` = 3).
    const EPILOGUE_PARALLEL: usize = 1 << 15;

    /// Below this many elements of A, B and C together a thin product runs on one thread.
    const THIN_PARALLEL: usize = 1 << 17;

    /// From this many multiply-adds a thin layer's `∂x` and `∂W` run on two threads side by
    /// side (each unsplit), as a wide layer's do.
    const THIN_PAIR_PARALLEL: usize = 1 << 16;

    fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
        let threaded = if crate::thin::is_thin(m, n, k) {
            // Memory-bound: the elements streamed, not the multiply-adds, set the work.
            m * n + m * k + k * n >= THIN_PARALLEL
        } else {
            m.saturating_mul(n).saturating_mul(k) >= GEMM_PARALLEL
        };
        if threaded { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None }
    }

    /// The threads our sgemm splits a product over for the `gemm` crate's threading choice.
    pub(crate) fn thread_count(parallelism: gemm::Parallelism) -> usize {
        match parallelism {
            gemm::Parallelism::None => 1,
            gemm::Parallelism::Rayon(0) => rayon::current_num_threads(),
            gemm::Parallelism::Rayon(t) => t,
        }
    }

    /// `dst = α·dst + β·lhs·rhs` (`read_dst`: α = 1) for row-major or strided operands, threaded
    /// when the product is large.
    fn gemm_into(
        dst: &mut [f32],
        read_dst: bool,
        shape: (usize, usize, usize),
        lhs: &[f32],
        lhs_strides: (usize, usize),
        rhs: &[f32],
        rhs_strides: (usize, usize),
    ) {
        let (m, n, k) = shape;
        gemm_into_with(parallelism(m, n, k), dst, read_dst, shape, lhs, lhs_strides, rhs, rhs_strides)
    }

    /// [`gemm_into`] with the threading chosen by the caller (`None` inside a parallel loop).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_into_with(
        parallelism: gemm::Parallelism,
        dst: &mut [f32],
        read_dst: bool,
        (m, n, k): (usize, usize, usize),
        lhs: &[f32],
        (lhs_rs, lhs_cs): (usize, usize),
        rhs: &[f32],
        (rhs_rs, rhs_cs): (usize, usize),
    ) {
        assert!(dst.len() >= m * n && (m == 0 || k == 0 || (lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs)));
        assert!(n == 0 || k == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
        // A thin dimension (≤ 4): streaming loops, not a tiled GEMM (see `crate::thin`).
        let threaded = thread_count(parallelism) > 1;
        if crate::thin::thin_gemm(threaded, dst, read_dst, (m, n, k), lhs, (lhs_rs, lhs_cs), rhs, (rhs_rs, rhs_cs)) {
            return;
        }
        // Our micro-kernel (AVX-512 or AVX2) where the CPU has one and C has at least half a
        // tile each way (narrower products waste most of each tile and stay with `gemm`).
        if crate::sgemm::serves(m, n) {
            let threads = thread_count(parallelism);
            let lhs = crate::sgemm::MatRef { ptr: lhs.as_ptr(), rs: lhs_rs, cs: lhs_cs };
            let rhs = crate::sgemm::MatRef { ptr: rhs.as_ptr(), rs: rhs_rs, cs: rhs_cs };
            // SAFETY: as below.
            unsafe { crate::sgemm::sgemm(m, n, k, lhs, rhs, dst.as_mut_ptr(), n, read_dst, threads) };
            return;
        }
        // SAFETY: the asserts above keep every index gemm reads or writes inside the slices;
        // dst does not alias lhs or rhs (a `&mut` and two `&`).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                read_dst,
                lhs.as_ptr(),
                lhs_cs as isize,
                lhs_rs as isize,
                rhs.as_ptr(),
                rhs_cs as isize,
                rhs_rs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }

    /// `lhs·rhs` into a new row-major `m × n` buffer. On our micro-kernel's path the buffer is
    /// not zeroed first (the kernel writes every element without reading it): the zeroing was
    /// a memset as long as a weight gradient's packing at batch 256.
    fn gemm_new(shape: (usize, usize, usize), lhs: &[f32], lhs_strides: (usize, usize), rhs: &[f32], rhs_strides: (usize, usize)) -> Vec<f32> {
        gemm_new_with(parallelism(shape.0, shape.1, shape.2), shape, lhs, lhs_strides, rhs, rhs_strides)
    }

    /// [`gemm_new`] with the threading chosen by the caller.
    fn gemm_new_with(
        parallelism: gemm::Parallelism,
        (m, n, k): (usize, usize, usize),
        lhs: &[f32],
        (lhs_rs, lhs_cs): (usize, usize),
        rhs: &[f32],
        (rhs_rs, rhs_cs): (usize, usize),
    ) -> Vec<f32> {
        if k > 0 && !crate::thin::is_thin(m, n, k) && crate::sgemm::serves(m, n) {
            assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs && rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
            let mut c = Vec::<f32>::with_capacity(m * n);
            let threads = thread_count(parallelism);
            let lhs = crate::sgemm::MatRef { ptr: lhs.as_ptr(), rs: lhs_rs, cs: lhs_cs };
            let rhs = crate::sgemm::MatRef { ptr: rhs.as_ptr(), rs: rhs_rs, cs: rhs_cs };
            // SAFETY: the assert keeps every read inside lhs and rhs; with `accumulate` false
            // sgemm writes all m·n elements of C (row stride n) and reads none.
            unsafe {
                crate::sgemm::sgemm(m, n, k, lhs, rhs, c.as_mut_ptr(), n, false, threads);
                c.set_len(m * n);
            }
            return c;
        }
        if crate::thin::is_thin(m, n, k) {
            // Not zeroed first either: a thin product overwriting C writes every element and
            // reads none. (The zeroing of the W3 output layer's 64 MiB `∂x` at batch 65,536
            // was a `memset` of 2% of the step.)
            let mut c = Vec::<f32>::with_capacity(m * n);
            // SAFETY: the slice covers the vector's capacity; thin_gemm with `accumulate` false
            // only writes it (every element) and reads none, and the length is set only then.
            let dst = unsafe { std::slice::from_raw_parts_mut(c.as_mut_ptr(), m * n) };
            if crate::thin::thin_gemm(thread_count(parallelism) > 1, dst, false, (m, n, k), lhs, (lhs_rs, lhs_cs), rhs, (rhs_rs, rhs_cs)) {
                // SAFETY: as above, all m·n elements are written.
                unsafe { c.set_len(m * n) };
                return c;
            }
        }
        let mut c = vec![0.0; m * n];
        gemm_into_with(parallelism, &mut c, false, (m, n, k), lhs, (lhs_rs, lhs_cs), rhs, (rhs_rs, rhs_cs));
        c
    }

    /// `z = x·W + b`: the bias rows first, then one GEMM accumulating into them.
    pub(super) fn affine(x: &[f32], w: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut z = bias_rows(&b[..n], m);
        gemm_into(&mut z, true, (m, n, k), x, (k, 1), w, (n, 1));
        z
    }

    /// `m` copies of the bias row `b`: the output a GEMM then accumulates onto.
    fn bias_rows(b: &[f32], m: usize) -> Vec<f32> {
        let mut z = Vec::with_capacity(m * b.len());
        for _ in 0..m {
            z.extend_from_slice(b);
        }
        z
    }

    /// Whether a SiLU layer of depth `k` and width `n` runs as the thin-depth loop
    /// ([`simd::thin_linear_silu`]) rather than through the GEMM, in inference.
    fn thin_depth_silu(k: usize, n: usize) -> bool {
        k <= crate::thin::THIN && n >= 8
    }

    /// The threads a layer's GEMM runs on: all of them for a SiLU epilogue over a large output
    /// (its `exp`s are work of their own), else as the product's size decides.
    fn gemm_threads(m: usize, n: usize, k: usize, silu: bool) -> usize {
        if silu && m * n >= EPILOGUE_PARALLEL { rayon::current_num_threads() } else { thread_count(parallelism(m, n, k)) }
    }

    /// `y = act(x·W + b)`, and with `keep_pre` (SiLU only) also `σ(z)`, `z = x·W + b`:
    /// `(y, Some(σ(z)))`, what the backward reads.
    ///
    /// Where our GEMM (AVX-512 or AVX2) serves the product, the bias and SiLU are its
    /// epilogue, applied in registers to each finished tile (no bias pre-fill of the output, no
    /// second pass over it); otherwise bias rows, a GEMM accumulating into them, then SiLU in
    /// place.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn linear_forward(x: &[f32], w: &[f32], b: &[f32], m: usize, k: usize, n: usize, silu: bool, keep_pre: bool) -> (Vec<f32>, Option<Vec<f32>>) {
        assert!(x.len() >= m * k && w.len() >= k * n && b.len() >= n);
        if silu && !keep_pre && thin_depth_silu(k, n) {
            let mut y = Vec::<f32>::with_capacity(m * n);
            let rows = (CHUNK / n).max(2).next_multiple_of(2);
            let run = |(t, y): (usize, &mut [std::mem::MaybeUninit<f32>])| simd::thin_linear_silu(y, &x[t * rows * k..], k, &w[..k * n], &b[..n]);
            let out = &mut y.spare_capacity_mut()[..m * n];
            let done = if m * n >= EPILOGUE_PARALLEL { out.par_chunks_mut(rows * n).enumerate().all(run) } else { out.chunks_mut(rows * n).enumerate().all(run) };
            if done {
                // SAFETY: every chunk reported all its elements written.
                unsafe { y.set_len(m * n) };
                return (y, None);
            }
        }
        if crate::sgemm::serves(m, n) {
            let threads = gemm_threads(m, n, k, silu);
            let mut z = Vec::<f32>::with_capacity(m * n);
            let mut y = if silu && keep_pre { Vec::<f32>::with_capacity(m * n) } else { Vec::new() };
            let zp = z.as_mut_ptr();
            let epilogue = crate::sgemm::Epilogue {
                bias: b.as_ptr(),
                row_bias: std::ptr::null(),
                silu: match (silu, keep_pre) {
                    (false, _) => std::ptr::null_mut(),
                    (true, false) => zp,
                    (true, true) => y.as_mut_ptr(),
                },
            };
            let lhs = crate::sgemm::MatRef { ptr: x.as_ptr(), rs: k, cs: 1 };
            let rhs = crate::sgemm::MatRef { ptr: w.as_ptr(), rs: n, cs: 1 };
            // SAFETY: x is m×k, w is k×n, b has n entries (asserted); z (and y) have room for m×n
            // and, with `accumulate` false, sgemm writes every element of them before any read.
            unsafe {
                crate::sgemm::sgemm_with(m, n, k, lhs, rhs, zp, n, false, epilogue, None, threads);
                z.set_len(m * n);
                if silu && keep_pre {
                    y.set_len(m * n);
                }
            }
            return if silu && keep_pre { (y, Some(z)) } else { (z, None) };
        }
        let mut z = affine(x, w, b, m, k, n);
        if !silu {
            return (z, None);
        }
        if keep_pre {
            let s = sigmoid_of(&z);
            let y = z.iter().zip(&s).map(|(z, s)| z * s).collect();
            return (y, Some(s));
        }
        silu_in_place(&mut z);
        (z, None)
    }

    /// `y = silu(x·W₁ + b₁)·W₂ + b₂`, `(m, k, n, p)` the batch and the three widths.
    ///
    /// Where [`linear_forward`] would run the hidden layer through our GEMM and the second layer
    /// is thin (`p ≤ 4`, the dot-product loop of [`crate::thin`]), that loop runs as the GEMM's
    /// [`crate::sgemm::Head`] on each finished row block, while the block is in L2, instead of a
    /// second pass over the whole hidden output. Otherwise the two layers run one after the
    /// other. Either way the arithmetic, and so every bit of `y`, is the same.
    pub(super) fn linear_silu_linear_forward(x: &[f32], (w1, b1): (&[f32], &[f32]), (w2, b2): (&[f32], &[f32]), (m, k, n, p): (usize, usize, usize, usize)) -> Vec<f32> {
        assert!(x.len() >= m * k && w1.len() >= k * n && b1.len() >= n && w2.len() >= n * p && b2.len() >= p);
        let hidden_by_gemm = !thin_depth_silu(k, n) && crate::sgemm::serves(m, n);
        if hidden_by_gemm && (1..=crate::thin::THIN).contains(&p) {
            // The second layer's columns contiguous (the dot-product loop's B), its output rows
            // holding the bias, which the loop accumulates onto (as `affine` does).
            let columns = crate::thin::pack(w2, (1, p), p, n);
            let mut y = bias_rows(&b2[..p], m);
            let mut h = Vec::<f32>::with_capacity(m * n);
            let hp = h.as_mut_ptr();
            let threads = gemm_threads(m, n, k, true);
            let epilogue = crate::sgemm::Epilogue { bias: b1.as_ptr(), row_bias: std::ptr::null(), silu: hp };
            let head = crate::sgemm::Head { weight: columns.as_ptr(), cols: p, out: y.as_mut_ptr() };
            let lhs = crate::sgemm::MatRef { ptr: x.as_ptr(), rs: k, cs: 1 };
            let rhs = crate::sgemm::MatRef { ptr: w1.as_ptr(), rs: n, cs: 1 };
            // SAFETY: x is m×k, w1 k×n, b1 n (asserted); h has room for m×n, every element of
            // which sgemm writes (`accumulate` false) before the head reads it; the head's
            // columns are p×n and y holds m×p.
            unsafe { crate::sgemm::sgemm_with(m, n, k, lhs, rhs, hp, n, false, epilogue, Some(head), threads) };
            return y;
        }
        let (h, _) = linear_forward(x, w1, b1, m, k, n, true, false);
        linear_forward(&h, w2, b2, m, n, p, false, false).0
    }

    /// A layer of the row-blocked MLP evaluation: how its product runs on a block of rows.
    enum BlockLayer<'a> {
        /// The thin-depth SiLU loop ([`simd::thin_linear_silu`]): depth at most 4.
        ThinDepth { w: &'a [f32], b: &'a [f32] },
        /// Our GEMM on weights packed once, the bias (and SiLU) in its epilogue.
        Gemm { w: crate::sgemm::PackedB, b: &'a [f32], silu: bool },
        /// The dot-product loop of a thin output ([`crate::sgemm::Head`]) onto bias rows.
        ThinOut { columns: Vec<f32> },
        /// A SiLU layer on AMX ([`crate::f32_matmul_on_amx`]), the weights split once.
        #[cfg(target_arch = "x86_64")]
        Amx { w: crate::amx::SplitB, b: &'a [f32] },
    }

    impl BlockLayer<'_> {
        /// The rows a block should have for this layer, if it is a product (on our GEMM or
        /// on AMX) whose f32 output a thin output layer can read as its head.
        fn block_rows(&self) -> Option<usize> {
            match self {
                BlockLayer::Gemm { w, .. } => Some(w.block_rows()),
                #[cfg(target_arch = "x86_64")]
                BlockLayer::Amx { .. } => Some(AMX_BLOCK_ROWS),
                _ => None,
            }
        }
    }

    /// Rows of a block when a layer runs on AMX: a multiple of its 32-row blocks.
    #[cfg(target_arch = "x86_64")]
    const AMX_BLOCK_ROWS: usize = 224;

    thread_local! {
        /// Each worker's two blocks of hidden activations (one layer's input, the next's output).
        static MLP_BLOCKS: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
    }

    #[cfg(target_arch = "x86_64")]
    thread_local! {
        /// Each worker's buffers for the AMX layers.
        static AMX_SCRATCH: std::cell::RefCell<crate::amx::Scratch> = std::cell::RefCell::new(crate::amx::Scratch::default());
    }

    /// `y = silu(… silu(x·W₀ + b₀) …)·W_L + b_L`, an MLP of SiLU layers and a linear output
    /// layer (`layers[i] = (Wᵢ, bᵢ)`, `Wᵢ` `widths[i] × widths[i + 1]` row-major, `m` rows of
    /// `x`), evaluated one block of rows at a time: each worker takes a block of 240 rows
    /// ([`crate::sgemm::PackedB::block_rows`]) through every layer while its activations stay in L2, the weights packed once for all
    /// blocks. The layer-by-layer evaluation ([`linear_forward`], [`linear_silu_linear_forward`])
    /// writes each hidden layer's 10 MB (W1's sampling batch) to memory and reads it back, in one
    /// parallel region per layer.
    ///
    /// Every kernel and every sum is the one the layer-by-layer evaluation runs, so `y` is the
    /// same to the bit; where some layer would not run on those kernels (no AVX2, too few rows,
    /// thin hidden layers, more than 4,096 outputs) this is that evaluation. The exception is
    /// [`crate::f32_matmul_on_amx`]: with it on, the hidden SiLU layers whose widths are
    /// multiples of 32 run on AMX ([`crate::amx::linear_block`], blocks of 224 rows), as
    /// accurate as the FMA kernels but not the same bits.
    pub(super) fn silu_mlp_forward(x: &[f32], layers: &[(&[f32], &[f32])], widths: &[usize], m: usize) -> Vec<f32> {
        let depth = layers.len();
        assert!(depth >= 1 && widths.len() == depth + 1 && x.len() >= m * widths[0]);
        for (i, (w, b)) in layers.iter().enumerate() {
            assert!(w.len() >= widths[i] * widths[i + 1] && b.len() >= widths[i + 1]);
        }
        let layered = || {
            let mut h = Cow::Borrowed(&x[..m * widths[0]]);
            for i in 0..depth.saturating_sub(2) {
                h = Cow::Owned(linear_forward(&h, layers[i].0, layers[i].1, m, widths[i], widths[i + 1], true, false).0);
            }
            match depth {
                1 => linear_forward(&h, layers[0].0, layers[0].1, m, widths[0], widths[1], false, false).0,
                _ => {
                    let (k, n, p) = (widths[depth - 2], widths[depth - 1], widths[depth]);
                    linear_silu_linear_forward(&h, layers[depth - 2], layers[depth - 1], (m, k, n, p))
                }
            }
        };
        let Some(plan) = block_plan(layers, widths, m) else { return layered() };
        let p = widths[depth];
        let mut y = Vec::<f32>::with_capacity(m * p);
        if let Some(BlockLayer::ThinOut { .. }) = plan.last() {
            y = bias_rows(&layers[depth - 1].1[..p], m);
        }
        let rows = match plan.iter().find_map(BlockLayer::block_rows) {
            Some(rows) => rows,
            None => return layered(),
        };
        let widest = widths[1..depth].iter().copied().max().unwrap_or(0);
        let out = SendPtr(y.as_mut_ptr());
        let block = |index: usize| {
            let (r0, mb) = (index * rows, rows.min(m - index * rows));
            MLP_BLOCKS.with_borrow_mut(|[from, to]| {
                for buffer in [&mut *from, &mut *to] {
                    if buffer.len() < rows * widest {
                        buffer.resize(rows * widest, 0.0);
                    }
                }
                let mut input = x[r0 * widths[0]..(r0 + mb) * widths[0]].as_ptr();
                for (i, layer) in plan.iter().enumerate() {
                    let (k, n) = (widths[i], widths[i + 1]);
                    let last = i + 1 == depth;
                    // The hidden output into the buffer that is not this layer's input; the
                    // last layer's into its rows of y.
                    let target = if last { out.row(r0 * n) } else if i % 2 == 0 { from.as_mut_ptr() } else { to.as_mut_ptr() };
                    match layer {
                        BlockLayer::ThinDepth { w, b } => {
                            // SAFETY: target holds `mb × n` floats (a buffer of `rows × widest`).
                            let y = unsafe { std::slice::from_raw_parts_mut(target.cast::<std::mem::MaybeUninit<f32>>(), mb * n) };
                            let x = unsafe { std::slice::from_raw_parts(input, mb * k) };
                            assert!(simd::thin_linear_silu(y, x, k, w, b), "block_plan checked the thin-depth kernel");
                        }
                        BlockLayer::Gemm { w, b, silu } => {
                            let epilogue = crate::sgemm::Epilogue { bias: b.as_ptr(), row_bias: std::ptr::null(), silu: if *silu { target } else { std::ptr::null_mut() } };
                            let a = crate::sgemm::MatRef { ptr: input, rs: k, cs: 1 };
                            // SAFETY: the input holds `mb × k` floats, the target room for
                            // `mb × n`, and they do not overlap (two buffers, or y).
                            unsafe { crate::sgemm::sgemm_packed(mb, a, w, target, n, epilogue) };
                        }
                        #[cfg(target_arch = "x86_64")]
                        BlockLayer::Amx { w, b } => {
                            // SAFETY: the input holds `mb × k` floats, the target room for
                            // `mb × n`, not overlapping; the plan made `w` only where AMX runs.
                            AMX_SCRATCH.with_borrow_mut(|scratch| unsafe { crate::amx::linear_block(mb, input, w, b.as_ptr(), true, target, scratch) });
                        }
                        BlockLayer::ThinOut { columns } => {
                            let head = crate::sgemm::Head { weight: columns.as_ptr(), cols: n, out: target };
                            // SAFETY: the input is `mb × k`, the columns `n × k`, and the
                            // block's rows of y hold the bias.
                            unsafe { head.apply(input, k, k, 0, mb) };
                        }
                    }
                    input = target;
                }
            });
        };
        let blocks = m.div_ceil(rows);
        if m * widest >= EPILOGUE_PARALLEL {
            (0..blocks).into_par_iter().for_each(block);
        } else {
            (0..blocks).for_each(block);
        }
        // SAFETY: every block wrote (or, onto its bias rows, accumulated into) its rows of y.
        unsafe { y.set_len(m * p) };
        y
    }

    /// How each layer of [`silu_mlp_forward`] runs on a block of rows, where every layer runs on
    /// the kernels the layer-by-layer evaluation would use for all `m` rows; `None` elsewhere.
    fn block_plan<'a>(layers: &[(&'a [f32], &'a [f32])], widths: &[usize], m: usize) -> Option<Vec<BlockLayer<'a>>> {
        let depth = layers.len();
        if depth < 2 || !matches!(simd::level(), simd::Level::Avx2 | simd::Level::Avx512) {
            return None;
        }
        let mut plan = Vec::with_capacity(depth);
        for (i, &(w, b)) in layers.iter().enumerate() {
            let (k, n) = (widths[i], widths[i + 1]);
            let gemm = || {
                // SAFETY: w holds k × n floats (asserted by the caller).
                let packed = crate::sgemm::serves(m, n).then(|| unsafe { crate::sgemm::PackedB::new(k, n, crate::sgemm::MatRef { ptr: w.as_ptr(), rs: n, cs: 1 }) });
                packed.flatten().map(|w| BlockLayer::Gemm { w, b, silu: i + 1 < depth })
            };
            plan.push(match i {
                0 if thin_depth_silu(k, n) => BlockLayer::ThinDepth { w: &w[..k * n], b: &b[..n] },
                // The layer-by-layer path's output layer after a GEMM hidden layer: the head.
                _ if i + 1 == depth && (1..=crate::thin::THIN).contains(&n) && plan.last().and_then(BlockLayer::block_rows).is_some() => {
                    BlockLayer::ThinOut { columns: crate::thin::pack(w, (1, n), n, k) }
                }
                _ if i > 0 && thin_depth_silu(k, n) => return None,
                #[cfg(target_arch = "x86_64")]
                _ if i + 1 < depth && crate::amx::active() && crate::amx::serves(k, n) => match crate::amx::SplitB::new(k, n, w) {
                    Some(w) => BlockLayer::Amx { w, b: &b[..n] },
                    None => gemm()?,
                },
                _ => gemm()?,
            });
        }
        Some(plan)
    }

    /// A pointer the row blocks write through, each its own rows.
    #[derive(Clone, Copy)]
    struct SendPtr(*mut f32);
    // SAFETY: each block writes a disjoint range of rows.
    unsafe impl Send for SendPtr {}
    unsafe impl Sync for SendPtr {}

    impl SendPtr {
        /// The pointer `offset` floats on (a method, so that closures capture the whole `Sync`
        /// wrapper rather than its raw pointer).
        fn row(self, offset: usize) -> *mut f32 {
            self.0.wrapping_add(offset)
        }
    }

    /// `(∂x, ∂W, ∂b) = (∂z·Wᵀ, xᵀ·∂z, 1ᵀ∂z)`, the transposes read through strides.
    ///
    /// `∂x` and `∂W` are independent products of the same `m·k·n` multiply-adds: where both
    /// would be split across the threads, each runs on its own half of them instead (at
    /// batch 256 that is one hand-over instead of two, no split tails, and the bias gradient,
    /// a serial pass, beside `∂x` rather than after both).
    /// Rows per block of [`backward_by_row_blocks`]: a block's `∂z` (384 KiB at n = 256) is
    /// still in L2 when the weight gradient reads it after `∂x` has.
    const BACKWARD_BLOCK: usize = 384;

    /// From this batch on the fused linear backward runs by row blocks
    /// ([`backward_by_row_blocks`]): where `∂z` no longer fits in cache. At 4,096 rows (4 MiB
    /// at n = 256) it was 3–5% slower than the two products side by side.
    const BACKWARD_BY_BLOCKS: usize = 16_384;

    /// Where the row-blocked backward ([`backward_by_row_blocks`]) finds a layer's `∂z`
    /// (`m × n`).
    #[derive(Clone, Copy)]
    pub(super) enum PreActivationGrad<'a> {
        /// `∂z` itself, formed by an earlier pass.
        Given(&'a [f32]),
        /// A SiLU layer's `∂z = ∂y·(σ + y(1 − σ))` from `∂y` and the forward's `y = silu(z)` and
        /// `σ = σ(z)`, formed one block of rows at a time into a buffer that stays in L2, its
        /// column sums (`∂b`) with it. Forming it in a pass of its own writes all of `∂z` to
        /// memory and reads it back (64 MiB each way a layer in W3 at 65,536).
        Silu { grad: &'a [f32], y: &'a [f32], s: &'a [f32] },
        /// The same layer when a thin linear layer follows it (`W₂`, `n × p`, `p ≤ 4`, given
        /// as `W₂ᵀ`): `∂y = ∂out·W₂ᵀ` from that layer's output gradient `grad` (`m × p`) in the
        /// same pass, with `W₂`'s gradient `hᵀ·∂out` and `∂b₂`. The layer-at-a-time backward
        /// writes `∂y` (64 MiB in W3 at 65,536), reads `h` for `∂W₂`, then both again.
        Head { grad: &'a [f32], p: usize, w2t: &'a [f32], y: &'a [f32], s: &'a [f32] },
    }

    impl PreActivationGrad<'_> {
        /// The length of a block's sums: `∂b` for [`Self::Silu`], `[∂b | ∂W₂ᵀ | ∂b₂]` for
        /// [`Self::Head`].
        fn sums_len(self, n: usize) -> usize {
            match self {
                Self::Given(_) => 0,
                Self::Silu { .. } => n,
                Self::Head { p, .. } => n + p * n + p,
            }
        }

        /// Whether every operand holds `m` rows.
        fn holds(self, m: usize, n: usize) -> bool {
            match self {
                Self::Given(g) => g.len() >= m * n,
                Self::Silu { grad, y, s } => grad.len() >= m * n && y.len() >= m * n && s.len() >= m * n,
                Self::Head { grad, p, w2t, y, s } => (1..=crate::thin::THIN).contains(&p) && grad.len() >= m * p && w2t.len() == p * n && y.len() >= m * n && s.len() >= m * n,
            }
        }

        /// Rows `r0..r0 + dz.len() / n` of `∂z` into `dz`, their sums added to `sums`.
        fn form(self, dz: &mut [f32], r0: usize, n: usize, sums: &mut [f32]) {
            let span = r0 * n..r0 * n + dz.len();
            match self {
                Self::Given(g) => dz.copy_from_slice(&g[span]),
                Self::Silu { grad, y, s } => simd::silu_backward_from_sigmoid_summing(dz, Some(&grad[span.clone()]), &y[span.clone()], &s[span], sums),
                Self::Head { grad, p, w2t, y, s } => {
                    let rows = dz.len() / n;
                    simd::head_silu_backward_summing(dz, &grad[r0 * p..(r0 + rows) * p], p, w2t, &y[span.clone()], &s[span], sums)
                }
            }
        }
    }

    /// `∂z` (`m × n`) and its sums ([`PreActivationGrad::sums_len`]) in one parallel pass, by
    /// blocks of rows whose sums are added in order (the same bits on any number of threads).
    pub(super) fn pre_activation_grad(dz: PreActivationGrad, m: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        assert!(n > 0 && dz.holds(m, n));
        let len = dz.sums_len(n);
        let rows = (CHUNK / n).max(1);
        let mut out = vec![0.0f32; m * n];
        let partials: Vec<Vec<f32>> = out
            .par_chunks_mut(rows * n)
            .enumerate()
            .map(|(b, block)| {
                let mut sums = vec![0.0f32; len];
                dz.form(block, b * rows, n, &mut sums);
                sums
            })
            .collect();
        (out, add_in_order(partials, len))
    }

    /// `(∂x, ∂W, sums)` of [`backward_by_row_blocks`], the sums where it formed `∂z`.
    pub(super) type BlockedBackward = (Vec<f32>, Vec<f32>, Option<Vec<f32>>);

    /// `(∂x, ∂W, ∂b)` of a batch of at least [`BACKWARD_BY_BLOCKS`] rows, `∂z` read from memory
    /// once: each thread takes its share of the rows a block at a time, `∂x` of the
    /// block (`∂z·Wᵀ`, `Wᵀ` packed once) and then the block's term of its partial `∂W`
    /// (`xᵀ·∂z`) while the block's `∂z` is in L2; the threads' partial `∂W` are added in order.
    /// Side by side, the two products each read all of `∂z` from memory (64 MiB a layer at
    /// 65,536; W3's step there: 247–259 ms against 256–264, alternating). `∂b` only where this
    /// pass forms `∂z`: each block's sums ([`PreActivationGrad::sums_len`]), added in the
    /// blocks' order (the same bits on any number of threads). `None` where our GEMM does not
    /// serve both products, or for a smaller batch.
    pub(super) fn backward_by_row_blocks(x: &[f32], w: &[f32], dz: PreActivationGrad, (m, k, n): (usize, usize, usize)) -> Option<BlockedBackward> {
        let threads = rayon::current_num_threads();
        if m < BACKWARD_BY_BLOCKS || threads < 2 || crate::thin::is_thin(m, n, k) || !crate::sgemm::serves(BACKWARD_BLOCK, k) || !crate::sgemm::serves(k, n) {
            return None;
        }
        assert!(x.len() >= m * k && w.len() >= k * n && dz.holds(m, n));
        // Wᵀ (`n × k`, element `(j, i)` at `w[i·n + j]`) packed once for every block's `∂x`.
        // SAFETY: w holds k × n floats (asserted).
        let wt = unsafe { crate::sgemm::PackedB::new(n, k, crate::sgemm::MatRef { ptr: w.as_ptr(), rs: 1, cs: n }) }?;
        let mut gx = Vec::<f32>::with_capacity(m * k);
        let out = SendPtr(gx.as_mut_ptr());
        let share = m.div_ceil(threads).next_multiple_of(BACKWARD_BLOCK);
        // Each thread's partial `∂W` and its blocks' column sums, in order.
        let partials: Vec<(Vec<f32>, Vec<Vec<f32>>)> = (0..m.div_ceil(share))
            .into_par_iter()
            .map(|t| {
                let (r0, r1) = (t * share, ((t + 1) * share).min(m));
                let mut gw = Vec::<f32>::with_capacity(k * n);
                let mut block_sums = Vec::new();
                let mut formed = match dz {
                    PreActivationGrad::Given(_) => Vec::new(),
                    _ => vec![0.0f32; BACKWARD_BLOCK * n],
                };
                for b0 in (r0..r1).step_by(BACKWARD_BLOCK) {
                    let rows = BACKWARD_BLOCK.min(r1 - b0);
                    let block = match dz {
                        PreActivationGrad::Given(g) => &g[b0 * n..(b0 + rows) * n],
                        _ => {
                            let mut sums = vec![0.0f32; dz.sums_len(n)];
                            let block = &mut formed[..rows * n];
                            dz.form(block, b0, n, &mut sums);
                            block_sums.push(sums);
                            &*block
                        }
                    };
                    let dz = crate::sgemm::MatRef { ptr: block.as_ptr(), rs: n, cs: 1 };
                    // SAFETY: the block's rows of ∂z (rows × n) and of ∂x (rows × k, this
                    // thread's alone) are in bounds; gw holds k × n, written by the first
                    // block (`accumulate` false) before any block reads it.
                    unsafe {
                        crate::sgemm::sgemm_packed(rows, dz, &wt, out.row(b0 * k), k, crate::sgemm::Epilogue::NONE);
                        let xt = crate::sgemm::MatRef { ptr: x[b0 * k..].as_ptr(), rs: 1, cs: k };
                        crate::sgemm::sgemm_with(k, n, rows, xt, dz, gw.as_mut_ptr(), n, b0 > r0, crate::sgemm::Epilogue::NONE, None, 1);
                    }
                }
                // SAFETY: the first block wrote all k × n.
                unsafe { gw.set_len(k * n) };
                (gw, block_sums)
            })
            .collect();
        // SAFETY: the blocks wrote every row of ∂x.
        unsafe { gx.set_len(m * k) };
        let (weights, sums): (Vec<_>, Vec<_>) = partials.into_iter().unzip();
        let len = dz.sums_len(n);
        let gb = (len > 0).then(|| add_in_order(sums.into_iter().flatten().collect(), len));
        Some((gx, add_in_order(weights, k * n), gb))
    }

    /// A head's sums `[∂b₁ | ∂W₂ᵀ | ∂b₂]` ([`PreActivationGrad::sums_len`], `n` hidden units,
    /// `p` outputs) as `(∂b₁, ∂W₂, ∂b₂)`, `∂W₂` `n × p` row-major.
    pub(super) fn split_head_sums(mut sums: Vec<f32>, n: usize, p: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let gb2 = sums.split_off(n + p * n);
        let gw2 = crate::thin::pack(&sums.split_off(n), (1, n), n, p);
        (sums, gw2, gb2)
    }

    /// Per-layer `(∂W, ∂b)`, each layer's in the order of [`silu_mlp_backward_by_row_blocks`]'s
    /// `layers`.
    pub(crate) type LayerGrads = (Vec<Vec<f32>>, Vec<Vec<f32>>);

    /// `(∂Wᵢ, ∂bᵢ)` of every layer of an MLP trained on a batch of at least
    /// [`BACKWARD_BY_BLOCKS`] rows whose input `x` needs no gradient: a thin-depth SiLU input
    /// layer (the `[x | t]` of W1–W3, [`thin_silu_weight_backward`]), SiLU GEMM layers and a
    /// thin linear output layer (`layers` `(Wᵢ, bᵢ)` chained as in [`silu_mlp_forward`],
    /// `activations[i] = (hᵢ, σᵢ)` the forward's SiLU outputs and sigmoids, `grad` the output's
    /// gradient).
    ///
    /// Each thread takes its share of the rows a block of [`BACKWARD_BLOCK`] at a time back
    /// through every layer: the head's `∂z` ([`PreActivationGrad::Head`]), then for each GEMM
    /// layer `∂h = ∂z·Wᵀ` into a buffer that stays in L2, its partial `∂W += hᵀ·∂z`, and the
    /// layer below's `∂z` from that buffer ([`PreActivationGrad::Silu`], or the input layer's
    /// sums). The layer-at-a-time backward ([`backward_by_row_blocks`] per layer) writes each
    /// `∂h` to memory and reads it back with `h` again (64 MiB each a layer in W3 at 65,536).
    ///
    /// Every kernel, block and sum is the one the layer-at-a-time backward runs, in the same
    /// order, so the gradients are the same to the bit. `None` where that backward would not
    /// run by row blocks for every layer (a smaller batch, one thread, other layer shapes).
    pub(crate) fn silu_mlp_backward_by_row_blocks(x: &[f32], layers: &[&[f32]], activations: &[(&[f32], &[f32])], grad: &[f32], widths: &[usize], m: usize) -> Option<LayerGrads> {
        let depth = layers.len();
        let threads = rayon::current_num_threads();
        if depth < 3 || widths.len() != depth + 1 || activations.len() != depth - 1 || m < BACKWARD_BY_BLOCKS || threads < 2 {
            return None;
        }
        let (k0, n0, p) = (widths[0], widths[1], widths[depth]);
        // The input layer's sums are per block of `CHUNK / n₀` rows ([`thin_silu_weight_backward`]):
        // those blocks must tile ours.
        let thin_rows = (CHUNK / n0.max(1)).max(1);
        if !(1..=crate::thin::THIN).contains(&k0) || n0 == 0 || !(1..=crate::thin::THIN).contains(&p) || !BACKWARD_BLOCK.is_multiple_of(thin_rows) {
            return None;
        }
        for i in 1..depth - 1 {
            let (k, n) = (widths[i], widths[i + 1]);
            if crate::thin::is_thin(m, n, k) || !crate::sgemm::serves(BACKWARD_BLOCK, k) || !crate::sgemm::serves(k, n) {
                return None;
            }
        }
        assert!(x.len() >= m * k0 && grad.len() >= m * p);
        for (i, w) in layers.iter().enumerate() {
            assert!(w.len() >= widths[i] * widths[i + 1]);
        }
        for (i, (h, s)) in activations.iter().enumerate() {
            assert!(h.len() >= m * widths[i + 1] && s.len() >= m * widths[i + 1]);
        }
        // Each GEMM layer's Wᵀ (`n × k`), packed once for every block's `∂h`.
        // SAFETY: Wᵢ holds k × n floats (asserted).
        let packed: Vec<crate::sgemm::PackedB> = (1..depth - 1)
            .map(|i| unsafe { crate::sgemm::PackedB::new(widths[i + 1], widths[i], crate::sgemm::MatRef { ptr: layers[i].as_ptr(), rs: 1, cs: widths[i + 1] }) })
            .collect::<Option<_>>()?;
        let last_hidden = widths[depth - 1];
        let w_out_t = crate::thin::pack(layers[depth - 1], (1, p), p, last_hidden);
        let (h_last, s_last) = activations[depth - 2];
        let head = PreActivationGrad::Head { grad, p, w2t: &w_out_t, y: h_last, s: s_last };
        let widest = widths[1..depth].iter().copied().max().unwrap_or(0);
        let share = m.div_ceil(threads).next_multiple_of(BACKWARD_BLOCK);

        /// One thread's part: its partial `∂W` of each GEMM layer, and its blocks' sums (the
        /// head's, each SiLU GEMM layer's `∂b`, the input layer's) in order.
        struct Part {
            weights: Vec<Vec<f32>>,
            head: Vec<Vec<f32>>,
            silu: Vec<Vec<Vec<f32>>>,
            input: Vec<Vec<f32>>,
        }
        let parts: Vec<Part> = (0..m.div_ceil(share))
            .into_par_iter()
            .map(|t| {
                let (r0, r1) = (t * share, ((t + 1) * share).min(m));
                let mut part = Part { weights: (1..depth - 1).map(|i| Vec::with_capacity(widths[i] * widths[i + 1])).collect(), head: Vec::new(), silu: vec![Vec::new(); depth], input: Vec::new() };
                let (mut dz, mut dh) = (vec![0.0f32; BACKWARD_BLOCK * widest], vec![0.0f32; BACKWARD_BLOCK * widest]);
                for b0 in (r0..r1).step_by(BACKWARD_BLOCK) {
                    let rows = BACKWARD_BLOCK.min(r1 - b0);
                    let mut sums = vec![0.0f32; head.sums_len(last_hidden)];
                    head.form(&mut dz[..rows * last_hidden], b0, last_hidden, &mut sums);
                    part.head.push(sums);
                    for i in (1..depth - 1).rev() {
                        let (k, n) = (widths[i], widths[i + 1]);
                        let (h, s) = activations[i - 1];
                        let a = crate::sgemm::MatRef { ptr: dz.as_ptr(), rs: n, cs: 1 };
                        // SAFETY: the block's `∂z` (rows × n) and `∂h` (rows × k) fit their
                        // buffers (rows × widest); the partial ∂W holds k × n, written by the
                        // first block (`accumulate` false) before any block reads it.
                        unsafe {
                            crate::sgemm::sgemm_packed(rows, a, &packed[i - 1], dh.as_mut_ptr(), k, crate::sgemm::Epilogue::NONE);
                            let ht = crate::sgemm::MatRef { ptr: h[b0 * k..].as_ptr(), rs: 1, cs: k };
                            crate::sgemm::sgemm_with(k, n, rows, ht, a, part.weights[i - 1].as_mut_ptr(), n, b0 > r0, crate::sgemm::Epilogue::NONE, None, 1);
                        }
                        let span = b0 * k..(b0 + rows) * k;
                        if i > 1 {
                            // The SiLU GEMM layer below: its `∂z` over this one's.
                            let mut sums = vec![0.0f32; k];
                            PreActivationGrad::Silu { grad: &dh[..rows * k], y: &h[span.clone()], s: &s[span] }.form(&mut dz[..rows * k], 0, k, &mut sums);
                            part.silu[i - 1].push(sums);
                        } else {
                            // The input layer: `∂W₀` and `∂b₀` by its own blocks of rows.
                            for j0 in (0..rows).step_by(thin_rows) {
                                let (g0, r) = (b0 + j0, thin_rows.min(rows - j0));
                                let mut sums = vec![0.0f32; (k0 + 1) * n0];
                                let span = g0 * n0..(g0 + r) * n0;
                                simd::thin_silu_weight_summing(&x[g0 * k0..(g0 + r) * k0], &dh[j0 * n0..(j0 + r) * n0], &h[span.clone()], &s[span], k0, &mut sums);
                                part.input.push(sums);
                            }
                        }
                    }
                }
                // SAFETY: the first block wrote all of each partial ∂W.
                for (i, w) in part.weights.iter_mut().enumerate() {
                    unsafe { w.set_len(widths[i + 1] * widths[i + 2]) };
                }
                part
            })
            .collect();
        let mut gw: Vec<Vec<f32>> = vec![Vec::new(); depth];
        let mut gb: Vec<Vec<f32>> = vec![Vec::new(); depth];
        let mut thread_weights: Vec<_> = (1..depth - 1).map(|_| Vec::with_capacity(parts.len())).collect();
        let (mut head_sums, mut silu_sums, mut input_sums) = (Vec::new(), vec![Vec::new(); depth], Vec::new());
        for part in parts {
            for (all, w) in thread_weights.iter_mut().zip(part.weights) {
                all.push(w);
            }
            head_sums.extend(part.head);
            for (all, s) in silu_sums.iter_mut().zip(part.silu) {
                all.extend(s);
            }
            input_sums.extend(part.input);
        }
        for (i, weights) in (1..depth - 1).zip(thread_weights) {
            gw[i] = add_in_order(weights, widths[i] * widths[i + 1]);
        }
        for (i, sums) in silu_sums.into_iter().enumerate().take(depth - 2).skip(1) {
            gb[i] = add_in_order(sums, widths[i + 1]);
        }
        (gb[depth - 2], gw[depth - 1], gb[depth - 1]) = split_head_sums(add_in_order(head_sums, head.sums_len(last_hidden)), last_hidden, p);
        let mut sums = add_in_order(input_sums, (k0 + 1) * n0);
        gb[0] = sums.split_off(k0 * n0);
        gw[0] = sums;
        Some((gw, gb))
    }

    /// `(∂x, ∂W, ∂b)` of `z = x·W + b` from `∂z` (`grad_pre`, `m × n`); `∂x` only when
    /// `need_x`, `∂b` given where the pass that formed `∂z` summed it already.
    pub(super) fn affine_backward(x: &[f32], w: &[f32], grad_pre: &[f32], (m, k, n): (usize, usize, usize), need_x: bool, bias: Option<Vec<f32>>) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let bias_grad = move || {
            bias.unwrap_or_else(|| {
                let mut gb = vec![0.0; n];
                let ones = vec![1.0f32; m];
                gemm_into(&mut gb, false, (1, n, m), &ones, (m, 1), grad_pre, (n, 1));
                gb
            })
        };
        if !need_x {
            let gw = gemm_new((k, n, m), x, (1, k), grad_pre, (n, 1));
            return (None, gw, bias_grad());
        }
        if let Some((gx, gw, _)) = backward_by_row_blocks(x, w, PreActivationGrad::Given(grad_pre), (m, k, n)) {
            return (Some(gx), gw, bias_grad());
        }
        let threads = rayon::current_num_threads();
        let threaded = |p: gemm::Parallelism| thread_count(p) > 1;
        let both_threaded = threaded(parallelism(m, k, n)) && threaded(parallelism(k, n, m));
        // Two thin products (the input and output layers) are memory-bound passes of a few
        // tens of µs: each on its own thread as well, unsplit.
        let thin_pair = crate::thin::is_thin(m, k, n) && m * k * n >= THIN_PAIR_PARALLEL;
        if threads >= 2 && (both_threaded || thin_pair) {
            let half = threads / 2;
            let ((gx, gb), gw) = rayon::join(
                || (gemm_new_with(gemm::Parallelism::Rayon(half), (m, k, n), grad_pre, (n, 1), w, (1, n)), bias_grad()),
                || gemm_new_with(gemm::Parallelism::Rayon(threads - half), (k, n, m), x, (1, k), grad_pre, (n, 1)),
            );
            return (Some(gx), gw, gb);
        }
        let gx = gemm_new((m, k, n), grad_pre, (n, 1), w, (1, n));
        let gw = gemm_new((k, n, m), x, (1, k), grad_pre, (n, 1));
        (Some(gx), gw, bias_grad())
    }

    pub(super) fn silu_in_place(z: &mut [f32]) {
        z.par_chunks_mut(CHUNK).for_each(simd::silu);
    }

    /// `silu(z)` into a new buffer in one pass (no copy-then-rewrite).
    pub(super) fn silu_of(z: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0f32; z.len()];
        y.par_chunks_mut(CHUNK).zip(z.par_chunks(CHUNK)).for_each(|(y, z)| simd::silu_into(y, z));
        y
    }

    pub(super) fn silu_backward_in_place(grad: &mut [f32], z: &[f32]) {
        grad.par_chunks_mut(CHUNK).zip(z.par_chunks(CHUNK)).for_each(|(g, z)| simd::silu_backward(g, z));
    }

    /// `σ(z)` into a new buffer.
    fn sigmoid_of(z: &[f32]) -> Vec<f32> {
        let mut s = vec![0.0f32; z.len()];
        s.par_chunks_mut(CHUNK).zip(z.par_chunks(CHUNK)).for_each(|(s, z)| simd::sigmoid_into(s, z));
        s
    }

    /// `grad ← grad·(σ + y(1 − σ))` from the forward's `y = silu(z)` and `σ = σ(z)`, `grad`
    /// rows of `n`; returns the new `grad`'s column sums (the bias gradient), summed in the same
    /// pass instead of a second read of `grad` (64 MiB a layer in W3 at 65,536).
    ///
    /// The sums run over blocks of rows, each block's partial sum added in order: the same bits
    /// on any number of threads.
    pub(super) fn silu_backward_from_sigmoid_in_place(grad: &mut [f32], y: &[f32], s: &[f32], n: usize) -> Vec<f32> {
        assert!(n > 0 && grad.len().is_multiple_of(n) && grad.len() == y.len() && grad.len() == s.len());
        let block = (CHUNK / n).max(1) * n;
        let partials: Vec<Vec<f32>> = grad
            .par_chunks_mut(block)
            .zip(y.par_chunks(block))
            .zip(s.par_chunks(block))
            .map(|((g, y), s)| {
                let mut sums = vec![0.0f32; n];
                simd::silu_backward_from_sigmoid_summing(g, None, y, s, &mut sums);
                sums
            })
            .collect();
        add_in_order(partials, n)
    }

    /// `(∂W, ∂b)` of a thin-depth SiLU layer `y = silu(x·W + b)` (`x` `m × k`, `k ≤ 4`) from
    /// `∂y` and the forward's `y` and `σ`, when `∂x` is not wanted: `∂z = ∂y·(σ + y(1 − σ))`
    /// row by row into `∂b = Σᵢ ∂zᵢ` and `∂W = Σᵢ xᵢᵀ·∂zᵢ`, without writing `∂z` (which the
    /// layer-at-a-time backward writes, then reads twice more: for `∂W` and for `∂b`). Blocks of
    /// rows in parallel, their partial sums added in order.
    pub(super) fn thin_silu_weight_backward(x: &[f32], grad: &[f32], y: &[f32], s: &[f32], m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        assert!(n > 0 && x.len() >= m * k && grad.len() >= m * n && y.len() >= m * n && s.len() >= m * n);
        let rows = (CHUNK / n).max(1);
        let partials: Vec<Vec<f32>> = (0..m.div_ceil(rows))
            .into_par_iter()
            .map(|b| {
                let (r0, r1) = (b * rows, ((b + 1) * rows).min(m));
                // `∂W`'s k rows, then `∂b`.
                let mut sums = vec![0.0f32; (k + 1) * n];
                let span = r0 * n..r1 * n;
                simd::thin_silu_weight_summing(&x[r0 * k..r1 * k], &grad[span.clone()], &y[span.clone()], &s[span], k, &mut sums);
                sums
            })
            .collect();
        let mut sums = add_in_order(partials, (k + 1) * n);
        let gb = sums.split_off(k * n);
        (sums, gb)
    }

    /// The element-wise sum of `partials` (each `len` long), added in order.
    fn add_in_order(partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
        let mut parts = partials.into_iter();
        let mut total = parts.next().unwrap_or_else(|| vec![0.0; len]);
        for part in parts {
            for (t, p) in total.iter_mut().zip(&part) {
                *t += p;
            }
        }
        total
    }
}

/// Element-wise loops written so LLVM vectorises them; on x86-64 they are compiled again for
/// AVX2 + FMA and for AVX-512 and chosen at run time (the crate itself targets baseline x86-64).
pub(crate) mod simd {
    /// The constants of `1 + e⁻ᶻ`, shared by [`one_plus_exp_neg`] and the AVX2 kernels'
    /// `one_plus_exp_neg8`, so that both compute the same function.
    pub(crate) mod exp_neg {
        /// `z` is clamped to [`Z_MIN`, `Z_MAX`], so that `n ∈ [−126, 127]` and `2ⁿ` is normal.
        pub(crate) const Z_MIN: f32 = -88.0;
        /// See [`Z_MIN`].
        pub(crate) const Z_MAX: f32 = 87.3;
        /// `−log₂ e`: `n = round(−z·log₂ e)`.
        pub(crate) const NEG_LOG2E: f32 = -std::f32::consts::LOG2_E;
        /// Adding 1.5·2²³ rounds to the nearest integer in the low mantissa bits; the extra 127
        /// is the exponent bias, so that shifting those bits into place gives 2ⁿ.
        pub(crate) const ROUND_BIASED: f32 = 12_582_912.0 + 127.0;
        /// Cody–Waite's two-part ln 2 (as Cephes `expf`): `r = z + n·LN2_HI + n·LN2_LO`.
        pub(crate) const LN2_HI: f32 = 0.693_359_4;
        /// See [`LN2_HI`].
        pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
        /// `q(r) ≈ e⁻ʳ` on |r| ≤ ln2/2, the degree-6 minimax polynomial for relative error,
        /// highest degree first (Horner's order).
        pub(crate) const POLY: [f32; 7] = [1.383_683_5e-3, -8.374_824e-3, 4.166_822_5e-2, -1.666_642e-1, 0.499_999_9, -1.0, 1.0];
    }

    /// `1 + e⁻ᶻ` for f32, the sigmoid's denominator, branch-free so it vectorises: the same
    /// arithmetic as the AVX2 kernels' `one_plus_exp_neg8` (see there), with the multiply-adds
    /// left unfused (a fused one is a library call on baseline x86-64). `e⁻ᶻ = 2ⁿ·q(r)` with
    /// `−z = n ln 2 − r`, |r| ≤ ln2/2, constants in [`exp_neg`].
    #[inline(always)]
    fn one_plus_exp_neg(z: f32) -> f32 {
        use exp_neg::*;
        let z = z.clamp(Z_MIN, Z_MAX);
        let t = z * NEG_LOG2E + ROUND_BIASED;
        let n = t - ROUND_BIASED;
        let r = z + n * LN2_HI + n * LN2_LO;
        let mut q = POLY[0];
        for coefficient in &POLY[1..] {
            q = q * r + coefficient;
        }
        1.0 + q * f32::from_bits(t.to_bits() << 23)
    }

    #[inline(always)]
    fn sigmoid(z: f32) -> f32 {
        1.0 / one_plus_exp_neg(z)
    }

    #[inline(always)]
    fn silu_portable(z: &mut [f32]) {
        for v in z {
            *v *= sigmoid(*v);
        }
    }

    #[inline(always)]
    fn silu_into_portable(y: &mut [f32], z: &[f32]) {
        for (y, &z) in y.iter_mut().zip(z) {
            *y = z * sigmoid(z);
        }
    }

    #[inline(always)]
    fn sigmoid_into_portable(s: &mut [f32], z: &[f32]) {
        for (s, &z) in s.iter_mut().zip(z) {
            *s = sigmoid(z);
        }
    }

    /// `grad ← grad·silu′(z)` on rows of `sums.len()`, each new row added to `sums`:
    /// `silu′(z) = σ(1 + z(1 − σ)) = σ + y(1 − σ)` with `y = z·σ`, no `exp`, so a plain
    /// vectorised loop is memory-bound already.
    #[inline(always)]
    fn silu_backward_from_sigmoid_summing_portable(dz: &mut [f32], grad: Option<&[f32]>, y: &[f32], s: &[f32], sums: &mut [f32]) {
        let n = sums.len();
        let rows = dz.chunks_exact_mut(n).zip(y.chunks_exact(n)).zip(s.chunks_exact(n));
        match grad {
            None => {
                for ((d, y), s) in rows {
                    for (((d, &y), &s), sum) in d.iter_mut().zip(y).zip(s).zip(sums.iter_mut()) {
                        *d *= s + y * (1.0 - s);
                        *sum += *d;
                    }
                }
            }
            Some(grad) => {
                for (((d, y), s), g) in rows.zip(grad.chunks_exact(n)) {
                    for ((((d, &g), &y), &s), sum) in d.iter_mut().zip(g).zip(y).zip(s).zip(sums.iter_mut()) {
                        *d = g * (s + y * (1.0 - s));
                        *sum += *d;
                    }
                }
            }
        }
    }

    /// Rows of a SiLU layer's `∂z` when a thin linear layer follows it (an MLP's last hidden
    /// layer and its output): `∂hᵢ = ∂yᵢ·W₂ᵀ` (`∂y` rows of `p`, `W₂ᵀ` given as `p` rows of
    /// `n`), `∂zᵢ = ∂hᵢ·(s + h(1 − s))` into `dz`, and into `sums` (`[∂b₁ | ∂W₂ᵀ | ∂b₂]`,
    /// `n + p·n + p`): `∂zᵢ`, `∂yᵢ[q]·hᵢ` to row `q` of `∂W₂ᵀ`, and `∂yᵢ`.
    #[inline(always)]
    fn head_silu_backward_summing_portable(dz: &mut [f32], grad: &[f32], p: usize, w2t: &[f32], h: &[f32], s: &[f32], sums: &mut [f32]) {
        let n = w2t.len() / p;
        let (gb1, rest) = sums.split_at_mut(n);
        let (gw2t, gb2) = rest.split_at_mut(p * n);
        for (((d, g), h), s) in dz.chunks_exact_mut(n).zip(grad.chunks_exact(p)).zip(h.chunks_exact(n)).zip(s.chunks_exact(n)) {
            for (d, &w) in d.iter_mut().zip(&w2t[..n]) {
                *d = g[0] * w;
            }
            for (q, &gq) in g.iter().enumerate().skip(1) {
                for (d, &w) in d.iter_mut().zip(&w2t[q * n..(q + 1) * n]) {
                    *d += gq * w;
                }
            }
            for (((d, &h), &s), sum) in d.iter_mut().zip(h).zip(s).zip(gb1.iter_mut()) {
                *d *= s + h * (1.0 - s);
                *sum += *d;
            }
            for ((row, &gq), b) in gw2t.chunks_exact_mut(n).zip(g).zip(gb2.iter_mut()) {
                for (w, &h) in row.iter_mut().zip(h) {
                    *w += gq * h;
                }
                *b += gq;
            }
        }
    }

    /// Rows of `∂z = ∂y·(s + y(1 − s))` (`n = sums.len() / (k + 1)` wide, into a row buffer)
    /// added to `sums`: `x[i, p]·∂zᵢ` to its row `p < k` and `∂zᵢ` to row `k`.
    #[inline(always)]
    fn thin_silu_weight_summing_portable(x: &[f32], grad: &[f32], y: &[f32], s: &[f32], k: usize, sums: &mut [f32]) {
        let n = sums.len() / (k + 1);
        let mut dz = vec![0.0f32; n];
        for (((g, y), s), x) in grad.chunks_exact(n).zip(y.chunks_exact(n)).zip(s.chunks_exact(n)).zip(x.chunks_exact(k)) {
            for (((d, &g), &y), &s) in dz.iter_mut().zip(g).zip(y).zip(s) {
                *d = g * (s + y * (1.0 - s));
            }
            for (row, &xp) in sums.chunks_exact_mut(n).zip(x.iter().chain(std::iter::once(&1.0))) {
                for (w, &d) in row.iter_mut().zip(&dz) {
                    *w += xp * d;
                }
            }
        }
    }

    #[inline(always)]
    fn silu_backward_portable(grad: &mut [f32], z: &[f32]) {
        for (g, &z) in grad.iter_mut().zip(z) {
            let s = sigmoid(z);
            *g *= s * (1.0 + z * (1.0 - s));
        }
    }

    /// One element-wise loop compiled for AVX-512, for AVX2 + FMA and for baseline x86-64 (or
    /// the target's default elsewhere), the widest the CPU has chosen at run time.
    macro_rules! dispatch {
        ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $portable:ident) => {
            $(#[$doc])*
            $vis fn $name($($arg: $ty),*) $(-> $ret)? {
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
                    fn wide($($arg: $ty),*) $(-> $ret)? {
                        $portable($($arg),*)
                    }
                    #[target_feature(enable = "avx2,fma")]
                    fn narrow($($arg: $ty),*) $(-> $ret)? {
                        $portable($($arg),*)
                    }
                    match $crate::flex::simd::level() {
                        // SAFETY: the CPU has the features (checked at run time).
                        $crate::flex::simd::Level::Avx512 => return unsafe { wide($($arg),*) },
                        $crate::flex::simd::Level::Avx2 => return unsafe { narrow($($arg),*) },
                        $crate::flex::simd::Level::Baseline => {}
                    }
                }
                $portable($($arg),*)
            }
        };
    }
    /// For loops outside this module (the group normalisation's backward).
    pub(crate) use dispatch;

    #[cfg(target_arch = "x86_64")]
    #[derive(Clone, Copy)]
    pub(crate) enum Level {
        Avx512,
        Avx2,
        Baseline,
    }

    #[cfg(target_arch = "x86_64")]
    pub(crate) fn level() -> Level {
        use std::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512dq") && has!("avx2") && has!("fma") {
            Level::Avx512
        } else if has!("avx2") && has!("fma") {
            Level::Avx2
        } else {
            Level::Baseline
        }
    }

    dispatch! {
        /// `z ← z·σ(z)`, vectorised by LLVM.
        fn silu_autovectorised(z: &mut [f32]) => silu_portable
    }

    dispatch! {
        /// `y ← z·σ(z)`, vectorised by LLVM.
        fn silu_into_autovectorised(y: &mut [f32], z: &[f32]) => silu_into_portable
    }

    dispatch! {
        /// `grad ← grad·σ(z)(1 + z(1 − σ(z)))`, vectorised by LLVM.
        fn silu_backward_autovectorised(grad: &mut [f32], z: &[f32]) => silu_backward_portable
    }

    dispatch! {
        /// `s ← σ(z)` (the fallback's forward keeping what the backward reads).
        pub(super) fn sigmoid_into(s: &mut [f32], z: &[f32]) => sigmoid_into_portable
    }

    dispatch! {
        /// `dz ← grad·(s + y(1 − s))`, the SiLU backward from the forward's `y = silu(z)` and
        /// `s = σ(z)`, on rows of `sums.len()`, the new rows added to `sums`; `grad` is `dz`
        /// itself where it is `None` (in place).
        pub(super) fn silu_backward_from_sigmoid_summing(dz: &mut [f32], grad: Option<&[f32]>, y: &[f32], s: &[f32], sums: &mut [f32]) => silu_backward_from_sigmoid_summing_portable
    }

    dispatch! {
        /// A SiLU layer's `∂z` rows into `dz` when a thin layer (`W₂ᵀ`, `p × n`) follows it,
        /// from that layer's output gradient rows `grad` (`p` wide) and the forward's `h` and `s`; the
        /// rows' `[∂b₁ | ∂W₂ᵀ | ∂b₂]` added to `sums`.
        pub(super) fn head_silu_backward_summing(dz: &mut [f32], grad: &[f32], p: usize, w2t: &[f32], h: &[f32], s: &[f32], sums: &mut [f32]) => head_silu_backward_summing_portable
    }

    dispatch! {
        /// A thin-depth SiLU layer's `∂W` (rows `0..k` of `sums`) and `∂b` (row `k`) from rows
        /// of `∂y`, `y`, `s` and `x` (`k` wide), `∂z` not stored.
        pub(super) fn thin_silu_weight_summing(x: &[f32], grad: &[f32], y: &[f32], s: &[f32], k: usize, sums: &mut [f32]) => thin_silu_weight_summing_portable
    }

    #[inline(always)]
    fn scale_shift_portable(y: &mut [std::mem::MaybeUninit<f32>], x: &[f32], scale: f32, shift: f32, silu: bool) {
        for (y, &x) in y.iter_mut().zip(x) {
            let z = x * scale + shift;
            y.write(if silu { z * sigmoid(z) } else { z });
        }
    }

    dispatch! {
        /// `y ← x·scale + shift`, then SiLU when `silu`, vectorised by LLVM.
        fn scale_shift_autovectorised(y: &mut [std::mem::MaybeUninit<f32>], x: &[f32], scale: f32, shift: f32, silu: bool) => scale_shift_portable
    }

    /// `y ← x·scale + shift`, then `y ← y·σ(y)` when `silu`, in one pass (a normalisation's
    /// affine map and its activation). Writes every element of `y`, which has `x`'s length.
    pub(crate) fn scale_shift(y: &mut [std::mem::MaybeUninit<f32>], x: &[f32], scale: f32, shift: f32, silu: bool) {
        assert_eq!(y.len(), x.len());
        #[cfg(target_arch = "x86_64")]
        match level() {
            // SAFETY: as in `silu`; `y` holds `x.len()` floats.
            Level::Avx2 => return unsafe { avx2::scale_shift(y.as_mut_ptr().cast(), x, scale, shift, silu) },
            // SAFETY: the CPU has AVX-512F (`level`); `y` holds `x.len()` floats.
            Level::Avx512 => return unsafe { avx512::scale_shift(y.as_mut_ptr().cast(), x, scale, shift, silu) },
            Level::Baseline => {}
        }
        scale_shift_autovectorised(y, x, scale, shift, silu)
    }

    /// Sums in 16 lanes (vectorisable; the order of a pairwise-like reduction).
    #[inline(always)]
    fn sum_portable(values: &[f32]) -> f32 {
        let mut lanes = [0.0f32; 16];
        let mut chunks = values.chunks_exact(16);
        for chunk in &mut chunks {
            for (l, v) in lanes.iter_mut().zip(chunk) {
                *l += v;
            }
        }
        lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
    }

    dispatch! {
        /// `Σ values`, in 16 lanes.
        pub(crate) fn sum(values: &[f32]) -> f32 => sum_portable
    }

    #[inline(always)]
    fn mean_and_squares_portable(block: &[f32]) -> (f32, f32) {
        let mean = sum_portable(block) / block.len() as f32;
        let mut lanes = [0.0f32; 16];
        let mut chunks = block.chunks_exact(16);
        for chunk in &mut chunks {
            for (l, v) in lanes.iter_mut().zip(chunk) {
                let d = v - mean;
                *l += d * d;
            }
        }
        (mean, lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum::<f32>())
    }

    dispatch! {
        /// `(μ, Σ(x − μ)²)` of a block, two passes (no cancellation), 16 lanes each.
        pub(crate) fn mean_and_squares(block: &[f32]) -> (f32, f32) => mean_and_squares_portable
    }

    /// `y = silu(x·W + b)` for `x` `rows × k` with `k` at most four, `W` `k × n`, `b` `[n]`,
    /// all row-major, into `y` (`rows × n`); false, writing nothing, where there is no kernel
    /// for this CPU or depth (the caller then runs the GEMM).
    pub(crate) fn thin_linear_silu(y: &mut [std::mem::MaybeUninit<f32>], x: &[f32], k: usize, w: &[f32], b: &[f32]) -> bool {
        let n = b.len();
        if n == 0 || !y.len().is_multiple_of(n) {
            return false;
        }
        let rows = y.len() / n;
        #[cfg(target_arch = "x86_64")]
        if let Level::Avx2 | Level::Avx512 = level() {
            assert!(x.len() >= rows * k && w.len() >= k * n);
            let (yp, xp, wp, bp) = (y.as_mut_ptr().cast::<f32>(), x.as_ptr(), w.as_ptr(), b.as_ptr());
            // The loop for depth `k` from `module` (a const generic per depth).
            macro_rules! by_depth {
                ($module:ident) => {
                    match k {
                        1 => $module::thin_linear_silu::<1>(yp, xp, rows, wp, n, bp),
                        2 => $module::thin_linear_silu::<2>(yp, xp, rows, wp, n, bp),
                        3 => $module::thin_linear_silu::<3>(yp, xp, rows, wp, n, bp),
                        4 => $module::thin_linear_silu::<4>(yp, xp, rows, wp, n, bp),
                        _ => return false,
                    }
                };
            }
            // AVX-512 where there is one: the same bits (the exponential is shared), and 1–3% of
            // a DDPM sampling step faster once the layer's output stays in L2
            // (`silu_mlp_forward`); writing to memory it was neutral (session 28).
            // SAFETY: the CPU has AVX2 and FMA, or AVX-512 (checked at run time); the extents
            // are asserted and every element of `y` is written.
            unsafe {
                if matches!(level(), Level::Avx512) {
                    by_depth!(avx512)
                } else {
                    by_depth!(avx2)
                }
            }
            return true;
        }
        false
    }

    /// `z ← z·σ(z)`.
    pub(crate) fn silu(z: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if let Level::Avx2 = level() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe { avx2::silu(z) };
        }
        silu_autovectorised(z)
    }

    /// `y ← z·σ(z)`.
    pub(super) fn silu_into(y: &mut [f32], z: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if let Level::Avx2 = level() {
            // SAFETY: as in `silu`.
            return unsafe { avx2::silu_into(y, z) };
        }
        silu_into_autovectorised(y, z)
    }

    /// `grad ← grad·σ(z)(1 + z(1 − σ(z)))`.
    pub(crate) fn silu_backward(grad: &mut [f32], z: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        match level() {
            // SAFETY: as in `silu`.
            Level::Avx2 => return unsafe { avx2::silu_backward(grad, z) },
            // SAFETY: the CPU has AVX-512F (`level`).
            Level::Avx512 => return unsafe { avx512::silu_backward(grad, z) },
            Level::Baseline => {}
        }
        silu_backward_autovectorised(grad, z)
    }

    /// The normalisation's map in AVX-512 intrinsics. The autovectorised loop has no fused
    /// multiply-adds (no fast-math), divides, and leaves a scalar tail (a 4 × 4 plane is all
    /// tail): the U-Net sampler's normalise-and-pad of a 32 × 16 × 16 image took 8.2 µs, now
    /// 6.7 (the rest is reading the image and writing the padded rows).
    #[cfg(target_arch = "x86_64")]
    mod avx512 {
        use crate::sgemm::x86::{sigmoid16, silu16};
        use std::arch::x86_64::*;

        /// Applies `f` to `len` elements of the `inputs` 16 lanes at a time into `out`, the tail
        /// through masked loads and stores (every element sees the same arithmetic).
        #[inline(always)]
        unsafe fn map<const N: usize>(out: *mut f32, inputs: [*const f32; N], len: usize, f: impl Fn([__m512; N]) -> __m512) {
            let mut i = 0;
            while i < len {
                let mask = if len - i >= 16 { u16::MAX } else { ((1u32 << (len - i)) - 1) as u16 };
                unsafe {
                    let v = inputs.map(|p| _mm512_maskz_loadu_ps(mask, p.add(i)));
                    _mm512_mask_storeu_ps(out.add(i), mask, f(v));
                }
                i += 16;
            }
        }

        /// `grad ← grad·σ(z)(1 + z(1 − σ(z)))` (SiLU's derivative); the autovectorised loop
        /// divides and leaves a scalar tail: 1–2% of a U-Net training step, through the group
        /// normalisation's backward.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn silu_backward(grad: &mut [f32], z: &[f32]) {
            assert_eq!(grad.len(), z.len());
            let g = grad.as_mut_ptr();
            unsafe {
                map(g, [g as *const f32, z.as_ptr()], z.len(), |[g, z]| {
                    let (one, s) = (_mm512_set1_ps(1.0), sigmoid16(z));
                    // `1 − s` first, as the portable loop does: for large z, `(1 + z) − z·s` cancels.
                    let d = _mm512_fmadd_ps(z, _mm512_sub_ps(one, s), one);
                    _mm512_mul_ps(g, _mm512_mul_ps(s, d))
                })
            }
        }

        /// [`super::avx2::thin_linear_silu`] 32 columns at a time: the same operations in the
        /// same order on each element (product, multiply-adds, bias, then `z / (1 + e⁻ᶻ)`), so
        /// the same bits; a ragged last block masked.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn thin_linear_silu<const K: usize>(y: *mut f32, x: *const f32, rows: usize, w: *const f32, n: usize, b: *const f32) {
            let mask = |left: usize| if left >= 16 { u16::MAX } else { ((1u32 << left) - 1) as u16 };
            unsafe {
                for i in (0..rows).step_by(2) {
                    let second = i + 1 < rows;
                    let next = if second { i + 1 } else { i };
                    let xa: [__m512; K] = std::array::from_fn(|p| _mm512_set1_ps(*x.add(i * K + p)));
                    let xb: [__m512; K] = std::array::from_fn(|p| _mm512_set1_ps(*x.add(next * K + p)));
                    let mut j = 0;
                    while j < n {
                        let (m0, m1) = (mask(n - j), mask((n - j).saturating_sub(16)));
                        let load = |p: *const f32| (_mm512_maskz_loadu_ps(m0, p), _mm512_maskz_loadu_ps(m1, p.add(16)));
                        let (w0, w1) = load(w.add(j));
                        let mut z = [_mm512_mul_ps(xa[0], w0), _mm512_mul_ps(xa[0], w1), _mm512_mul_ps(xb[0], w0), _mm512_mul_ps(xb[0], w1)];
                        for p in 1..K {
                            let (w0, w1) = load(w.add(p * n + j));
                            z[0] = _mm512_fmadd_ps(xa[p], w0, z[0]);
                            z[1] = _mm512_fmadd_ps(xa[p], w1, z[1]);
                            z[2] = _mm512_fmadd_ps(xb[p], w0, z[2]);
                            z[3] = _mm512_fmadd_ps(xb[p], w1, z[3]);
                        }
                        let (b0, b1) = load(b.add(j));
                        let z = [_mm512_add_ps(z[0], b0), _mm512_add_ps(z[1], b1), _mm512_add_ps(z[2], b0), _mm512_add_ps(z[3], b1)];
                        let row = y.add(i * n + j);
                        _mm512_mask_storeu_ps(row, m0, silu16(z[0]));
                        _mm512_mask_storeu_ps(row.add(16), m1, silu16(z[1]));
                        if second {
                            let row = y.add(next * n + j);
                            _mm512_mask_storeu_ps(row, m0, silu16(z[2]));
                            _mm512_mask_storeu_ps(row.add(16), m1, silu16(z[3]));
                        }
                        j += 32;
                    }
                }
            }
        }

        /// `y ← x·scale + shift`, then SiLU when `silu`.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn scale_shift(y: *mut f32, x: &[f32], scale: f32, shift: f32, silu: bool) {
            let (a, b) = (_mm512_set1_ps(scale), _mm512_set1_ps(shift));
            unsafe {
                if silu {
                    map(y, [x.as_ptr()], x.len(), |[x]| silu16(_mm512_fmadd_ps(x, a, b)))
                } else {
                    map(y, [x.as_ptr()], x.len(), |[x]| _mm512_fmadd_ps(x, a, b))
                }
            }
        }
    }

    /// The SiLU loops in AVX2 + FMA intrinsics. LLVM vectorises the portable loops but cannot
    /// fuse their multiply-adds (no fast-math in Rust), and each 8-lane `exp` then is a chain
    /// of some 30 dependent instructions: on a Zen 1 the loop ran latency-bound at 2.3 ns an
    /// element. With FMA and two independent vectors per iteration it runs at a third of that.
    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use crate::sgemm::x86::{Lanes16, sigmoid8};
        use std::arch::x86_64::*;

        /// Applies `f` to `z` 16 lanes at a time (two independent vectors), the tail through
        /// masked loads and stores so that every element sees the same arithmetic.
        #[inline(always)]
        unsafe fn map<const N: usize>(out: *mut f32, inputs: [*const f32; N], len: usize, f: impl Fn([__m256; N]) -> __m256) {
            unsafe {
                let mut i = 0;
                while i + 16 <= len {
                    let a = inputs.map(|p| _mm256_loadu_ps(p.add(i)));
                    let b = inputs.map(|p| _mm256_loadu_ps(p.add(i + 8)));
                    let (ya, yb) = (f(a), f(b));
                    _mm256_storeu_ps(out.add(i), ya);
                    _mm256_storeu_ps(out.add(i + 8), yb);
                    i += 16;
                }
                while i < len {
                    let lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32((len - i) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                    let v = inputs.map(|p| _mm256_maskload_ps(p.add(i), lanes));
                    _mm256_maskstore_ps(out.add(i), lanes, f(v));
                    i += 8;
                }
            }
        }

        /// [`super::dot_block`] for one to four columns (a layer with a thin output, the MLP's
        /// 256 → 2): `R` rows by `C` columns of two 8-lane accumulators each, every load of A
        /// used for all `C` columns. The autovectorised loop split its 32 partial sums into
        /// 2-lane pieces with spills and unfused multiply-adds: 256 → 2 on 120 cache-resident
        /// rows took 20 µs, now 9 µs with the call's overhead (at 10,000 rows both are bound
        /// by reading A from memory).
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn dot_block(c: *mut f32, ldc: usize, rows: usize, cols: usize, a: *const f32, lda: usize, b: *const f32, ldb: usize, k: usize, accumulate: bool) {
            #[inline(always)]
            unsafe fn rows_of<const R: usize, const C: usize>(c: *mut f32, ldc: usize, rows: usize, a: *const f32, lda: usize, b: *const f32, ldb: usize, k: usize, accumulate: bool) {
                let mut i = 0;
                while i + R <= rows {
                    unsafe { tile::<R, C>(c.add(i * ldc), ldc, a.add(i * lda), lda, b, ldb, k, accumulate) };
                    i += R;
                }
                while i < rows {
                    unsafe { tile::<1, C>(c.add(i * ldc), ldc, a.add(i * lda), lda, b, ldb, k, accumulate) };
                    i += 1;
                }
            }
            #[inline(always)]
            unsafe fn tile<const R: usize, const C: usize>(c: *mut f32, ldc: usize, a: *const f32, lda: usize, b: *const f32, ldb: usize, k: usize, accumulate: bool) {
                unsafe {
                    let mut acc = [[[_mm256_setzero_ps(); 2]; C]; R];
                    let mut p = 0;
                    while p + 16 <= k {
                        for u in 0..2 {
                            let bv: [__m256; C] = std::array::from_fn(|j| _mm256_loadu_ps(b.add(j * ldb + p + 8 * u)));
                            for (r, acc) in acc.iter_mut().enumerate() {
                                let av = _mm256_loadu_ps(a.add(r * lda + p + 8 * u));
                                for j in 0..C {
                                    acc[j][u] = _mm256_fmadd_ps(av, bv[j], acc[j][u]);
                                }
                            }
                        }
                        p += 16;
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        for (j, acc) in acc.iter().enumerate() {
                            let v = _mm256_add_ps(acc[0], acc[1]);
                            let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                            let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                            let h = _mm_add_ss(h, _mm_movehdup_ps(h));
                            let mut sum = _mm_cvtss_f32(h);
                            for q in p..k {
                                sum += *a.add(r * lda + q) * *b.add(j * ldb + q);
                            }
                            let out = c.add(r * ldc + j);
                            *out = if accumulate { *out + sum } else { sum };
                        }
                    }
                }
            }
            // At most eight accumulators, so that they, C rows of B and a row of A fit in 16 `ymm`.
            unsafe {
                match cols {
                    1 => rows_of::<4, 1>(c, ldc, rows, a, lda, b, ldb, k, accumulate),
                    2 => rows_of::<2, 2>(c, ldc, rows, a, lda, b, ldb, k, accumulate),
                    3 => rows_of::<1, 3>(c, ldc, rows, a, lda, b, ldb, k, accumulate),
                    _ => rows_of::<1, 4>(c, ldc, rows, a, lda, b, ldb, k, accumulate),
                }
            }
        }

        /// `y = silu(x·W + b)` for a depth `K` of at most four (the MLP's input layer, `k` = 3;
        /// `x` `rows × K`, `W` `K × n`, all row-major): two rows at a time, 16 columns each, the
        /// four exponentials interleaved as in the GEMM's epilogue. The GEMM served this layer
        /// with 6 × 16 tiles three steps deep, whose call, spill of the accumulators and out-of-
        /// line epilogue cost a sixth of the layer (10,000 × 3 → 256 on one core: 4.9 ms, now
        /// 4.0). The arithmetic is the GEMM's in the same
        /// order (`x₀w₀`, then one multiply-add per further step, then the bias), so the output
        /// is bit-identical to it.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn thin_linear_silu<const K: usize>(y: *mut f32, x: *const f32, rows: usize, w: *const f32, n: usize, b: *const f32) {
            unsafe {
                for i in (0..rows).step_by(2) {
                    let second = i + 1 < rows;
                    let next = if second { i + 1 } else { i };
                    let xa: [__m256; K] = std::array::from_fn(|p| _mm256_set1_ps(*x.add(i * K + p)));
                    let xb: [__m256; K] = std::array::from_fn(|p| _mm256_set1_ps(*x.add(next * K + p)));
                    let mut j = 0;
                    while j < n {
                        let lanes = Lanes16::first(n - j);
                        let (w0, w1) = lanes.load(w.add(j));
                        let mut z = [_mm256_mul_ps(xa[0], w0), _mm256_mul_ps(xa[0], w1), _mm256_mul_ps(xb[0], w0), _mm256_mul_ps(xb[0], w1)];
                        for p in 1..K {
                            let (w0, w1) = lanes.load(w.add(p * n + j));
                            z[0] = _mm256_fmadd_ps(xa[p], w0, z[0]);
                            z[1] = _mm256_fmadd_ps(xa[p], w1, z[1]);
                            z[2] = _mm256_fmadd_ps(xb[p], w0, z[2]);
                            z[3] = _mm256_fmadd_ps(xb[p], w1, z[3]);
                        }
                        let (b0, b1) = lanes.load(b.add(j));
                        z = [_mm256_add_ps(z[0], b0), _mm256_add_ps(z[1], b1), _mm256_add_ps(z[2], b0), _mm256_add_ps(z[3], b1)];
                        let d = crate::sgemm::x86::one_plus_exp_neg8(z);
                        lanes.store(y.add(i * n + j), _mm256_div_ps(z[0], d[0]), _mm256_div_ps(z[1], d[1]));
                        if second {
                            lanes.store(y.add(next * n + j), _mm256_div_ps(z[2], d[2]), _mm256_div_ps(z[3], d[3]));
                        }
                        j += 16;
                    }
                }
            }
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn scale_shift(y: *mut f32, x: &[f32], scale: f32, shift: f32, silu: bool) {
            let (a, b) = (_mm256_set1_ps(scale), _mm256_set1_ps(shift));
            unsafe {
                if silu {
                    map(y, [x.as_ptr()], x.len(), |[x]| {
                        let z = _mm256_fmadd_ps(x, a, b);
                        _mm256_mul_ps(z, sigmoid8(z))
                    })
                } else {
                    map(y, [x.as_ptr()], x.len(), |[x]| _mm256_fmadd_ps(x, a, b))
                }
            }
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn silu(z: &mut [f32]) {
            let p = z.as_mut_ptr();
            unsafe { map(p, [p as *const f32], z.len(), |[z]| _mm256_mul_ps(z, sigmoid8(z))) }
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn silu_into(y: &mut [f32], z: &[f32]) {
            assert_eq!(y.len(), z.len());
            unsafe { map(y.as_mut_ptr(), [z.as_ptr()], z.len(), |[z]| _mm256_mul_ps(z, sigmoid8(z))) }
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn silu_backward(grad: &mut [f32], z: &[f32]) {
            assert_eq!(grad.len(), z.len());
            let g = grad.as_mut_ptr();
            unsafe {
                map(g, [g as *const f32, z.as_ptr()], z.len(), |[g, z]| {
                    // g·s·(1 + z(1 − s)); `1 − s` first, as the portable loop does: for large
                    // z, `(1 + z) − z·s` cancels.
                    let s = sigmoid8(z);
                    let one = _mm256_set1_ps(1.0);
                    let d = _mm256_fmadd_ps(z, _mm256_sub_ps(one, s), one);
                    _mm256_mul_ps(g, _mm256_mul_ps(s, d))
                })
            }
        }
    }

    /// The per-step scalars of one Adam update (see [`crate::AdamStep`]), in f32.
    #[derive(Clone, Copy)]
    pub(crate) struct AdamScalars {
        pub beta1: f32,
        pub beta2: f32,
        /// `1 − β₁` and `1 − β₂` rounded from f64: in f32, `1 − 0.999` loses four digits.
        pub one_minus_beta1: f32,
        pub one_minus_beta2: f32,
        pub step_size: f32,
        pub epsilon_hat: f32,
        pub decay: f32,
    }

    #[inline(always)]
    fn adam_portable(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: &AdamScalars) {
        let (one_minus_b1, one_minus_b2) = (c.one_minus_beta1, c.one_minus_beta2);
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let m1 = c.beta1 * *m + one_minus_b1 * g;
            let m2 = c.beta2 * *v + one_minus_b2 * (g * g);
            *m = m1;
            *v = m2;
            *p = *p * c.decay - c.step_size * m1 / (m2.sqrt() + c.epsilon_hat);
        }
    }

    dispatch! {
        /// One Adam(W) update in place: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
        /// `p ← decay·p − step_size·m/(√v + ε̂)`.
        pub(crate) fn adam(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: &AdamScalars) => adam_portable
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn axpy_block_portable(c: &mut [f32], ldc: usize, cols: usize, a: &[f32], a_strides: (usize, usize), rows: usize, k: usize, b: &[f32], ldb: usize, accumulate: bool) {
        let (ars, acs) = a_strides;
        // Overwriting, the first update stores `A[i,0]·B[0,:]` (bit for bit `0 + A[i,0]·B[0,:]`)
        // instead of a zero fill followed by an update: the fill was a `memset` call per row,
        // a third of the time of the W3 output layer's `∂x`.
        let first = match (accumulate, k) {
            (true, _) => 0,
            (false, 0) => {
                for i in 0..rows {
                    c[i * ldc..i * ldc + cols].fill(0.0);
                }
                return;
            }
            (false, _) => {
                let b_row = &b[..cols];
                for i in 0..rows {
                    let s = a[i * ars];
                    for (c, &b) in c[i * ldc..i * ldc + cols].iter_mut().zip(b_row) {
                        *c = s * b;
                    }
                }
                1
            }
        };
        // p outermost: each row of B is read once while the block's C rows stay in L1.
        for p in first..k {
            let b_row = &b[p * ldb..p * ldb + cols];
            for i in 0..rows {
                let s = a[i * ars + p * acs];
                for (c, &b) in c[i * ldc..i * ldc + cols].iter_mut().zip(b_row) {
                    *c += s * b;
                }
            }
        }
    }

    /// `⟨a, b⟩` with 32 independent partial sums (four vector registers of AVX2), so the loop
    /// vectorises and is not bound by one addition chain's latency.
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        const LANES: usize = 32;
        let main = a.len() / LANES * LANES;
        let mut acc = [0.0f32; LANES];
        for (x, y) in a[..main].chunks_exact(LANES).zip(b[..main].chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] += x[l] * y[l];
            }
        }
        let mut width = LANES;
        while width > 1 {
            width /= 2;
            for l in 0..width {
                acc[l] += acc[l + width];
            }
        }
        a[main..].iter().zip(&b[main..]).fold(acc[0], |s, (x, y)| s + x * y)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn dot_block_portable(c: &mut [f32], ldc: usize, rows: usize, cols: usize, a: &[f32], lda: usize, b: &[f32], ldb: usize, k: usize, accumulate: bool) {
        for i in 0..rows {
            let a_row = &a[i * lda..i * lda + k];
            for j in 0..cols {
                let d = dot(a_row, &b[j * ldb..j * ldb + k]);
                let c = &mut c[i * ldc + j];
                *c = if accumulate { *c + d } else { d };
            }
        }
    }

    dispatch! {
        /// `C (+)= A·B` on a `rows × cols` block as row updates: `C[i,:] += Σ_p A[i,p]·B[p,:]`,
        /// `A[i,p] = a[i·ars + p·acs]`, B's rows contiguous (`B[p,j] = b[p·ldb + j]`), C's rows
        /// `ldc` apart. For products with a thin inner or outer dimension.
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn axpy_block(c: &mut [f32], ldc: usize, cols: usize, a: &[f32], a_strides: (usize, usize), rows: usize, k: usize, b: &[f32], ldb: usize, accumulate: bool) => axpy_block_portable
    }

    dispatch! {
        /// [`dot_block`] vectorised by LLVM.
        #[allow(clippy::too_many_arguments)]
        fn dot_block_autovectorised(c: &mut [f32], ldc: usize, rows: usize, cols: usize, a: &[f32], lda: usize, b: &[f32], ldb: usize, k: usize, accumulate: bool) => dot_block_portable
    }

    /// `C[i,j] (+)= ⟨A[i,:], B[:,j]⟩` on a `rows × cols` block, A's rows (`a[i·lda..][..k]`)
    /// and B's columns (`b[j·ldb..][..k]`) contiguous. For products with a thin output.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dot_block(c: &mut [f32], ldc: usize, rows: usize, cols: usize, a: &[f32], lda: usize, b: &[f32], ldb: usize, k: usize, accumulate: bool) {
        #[cfg(target_arch = "x86_64")]
        if let (Level::Avx2 | Level::Avx512, 1..=4) = (level(), cols)
            && rows > 0
        {
            assert!(a.len() >= (rows - 1) * lda + k && b.len() >= (cols - 1) * ldb + k && c.len() >= (rows - 1) * ldc + cols);
            // SAFETY: the CPU has AVX2 and FMA (checked at run time); the operands' extents are
            // asserted above.
            return unsafe { avx2::dot_block(c.as_mut_ptr(), ldc, rows, cols, a.as_ptr(), lda, b.as_ptr(), ldb, k, accumulate) };
        }
        dot_block_autovectorised(c, ldc, rows, cols, a, lda, b, ldb, k, accumulate)
    }

    #[cfg(test)]
    mod tests {
        /// The thin-depth SiLU layer (the MLP's input layer) on every depth it serves, odd row
        /// counts and column tails: against f64, and bit for bit against the GEMM path that
        /// served it before (still the training forward's, which keeps σ).
        #[test]
        fn thin_linear_silu_matches_f64_and_the_gemm_bit_for_bit() {
            let value = |i: usize, scale: f32| ((i as f32 * 0.618).fract() - 0.5) * scale;
            // The GEMM's epilogue computes the same exponential in its AVX2 and AVX-512 kernels.
            #[cfg(target_arch = "x86_64")]
            let same_exp = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            #[cfg(not(target_arch = "x86_64"))]
            let same_exp = false;
            for k in 1..=4 {
                for (m, n) in [(1, 8), (7, 19), (33, 256), (301, 40), (1000, 256)] {
                    let x: Vec<f32> = (0..m * k).map(|i| value(i, 6.0)).collect();
                    let w: Vec<f32> = (0..k * n).map(|i| value(i + 7, 4.0)).collect();
                    let b: Vec<f32> = (0..n).map(|i| value(i + 3, 2.0)).collect();
                    let (y, kept) = crate::flex::kernels::linear_forward(&x, &w, &b, m, k, n, true, false);
                    assert!(kept.is_none() && y.len() == m * n);
                    for (e, &got) in y.iter().enumerate() {
                        let (i, j) = (e / n, e % n);
                        let z = (0..k).map(|p| f64::from(x[i * k + p]) * f64::from(w[p * n + j])).sum::<f64>() + f64::from(b[j]);
                        let want = z / (1.0 + (-z).exp());
                        assert!((f64::from(got) - want).abs() < 2e-6 * (1.0 + want.abs()), "k {k} {m}×{n} ({i}, {j}): {got} vs {want}");
                    }
                    // On AVX-512 the loop above ran 32 columns at a time: the AVX2 loop's bits.
                    #[cfg(target_arch = "x86_64")]
                    if matches!(super::level(), super::Level::Avx512) {
                        let mut narrow = vec![f32::NAN; m * n];
                        let (yp, xp, wp, bp) = (narrow.as_mut_ptr(), x.as_ptr(), w.as_ptr(), b.as_ptr());
                        // SAFETY: AVX-512 implies AVX2 and FMA; x is m × k, w k × n, b n, y m × n.
                        unsafe {
                            match k {
                                1 => super::avx2::thin_linear_silu::<1>(yp, xp, m, wp, n, bp),
                                2 => super::avx2::thin_linear_silu::<2>(yp, xp, m, wp, n, bp),
                                3 => super::avx2::thin_linear_silu::<3>(yp, xp, m, wp, n, bp),
                                _ => super::avx2::thin_linear_silu::<4>(yp, xp, m, wp, n, bp),
                            }
                        }
                        assert!(y.iter().zip(&narrow).all(|(a, b)| a.to_bits() == b.to_bits()), "k {k} {m}×{n}: AVX-512 and AVX2 differ");
                    }
                    if same_exp && crate::sgemm::serves(m, n) {
                        let mut gemm = vec![f32::NAN; m * n];
                        let epilogue = crate::sgemm::Epilogue { bias: b.as_ptr(), row_bias: std::ptr::null(), silu: gemm.as_mut_ptr() };
                        let (a, wm) = (crate::sgemm::MatRef { ptr: x.as_ptr(), rs: k, cs: 1 }, crate::sgemm::MatRef { ptr: w.as_ptr(), rs: n, cs: 1 });
                        // SAFETY: x is m × k, w k × n, b and gemm hold n and m × n floats.
                        unsafe { crate::sgemm::sgemm_with(m, n, k, a, wm, gemm.as_mut_ptr(), n, false, epilogue, None, 1) };
                        assert!(y.iter().zip(&gemm).all(|(a, b)| a.to_bits() == b.to_bits()), "k {k} {m}×{n}: not the GEMM's bits");
                    }
                }
            }
        }

        /// A SiLU layer and a thin layer (1–4 outputs) with the thin layer as the GEMM's head:
        /// against f64, and bit for bit against the two layers run one after the other. Row
        /// counts end mid-block and mid-tile; the large ones split across threads. Five outputs
        /// (not fused) and a thin-depth hidden layer (not the GEMM) take the two-layer path.
        #[test]
        fn linear_silu_linear_is_the_two_layers_bit_for_bit() {
            use crate::flex::kernels::{linear_forward, linear_silu_linear_forward};
            let value = |i: usize, scale: f32| ((i as f32 * 0.618).fract() - 0.5) * scale;
            for (m, k, n) in [(7, 16, 16), (121, 64, 40), (1000, 256, 256), (4099, 32, 72), (50, 3, 64)] {
                for p in 1..=5 {
                    let x: Vec<f32> = (0..m * k).map(|i| value(i, 4.0)).collect();
                    let w1: Vec<f32> = (0..k * n).map(|i| value(i + 5, 0.5)).collect();
                    let b1: Vec<f32> = (0..n).map(|i| value(i + 3, 1.0)).collect();
                    let w2: Vec<f32> = (0..n * p).map(|i| value(i + 11, 0.5)).collect();
                    let b2: Vec<f32> = (0..p).map(|i| value(i + 2, 1.0)).collect();
                    let fused = linear_silu_linear_forward(&x, (&w1, &b1), (&w2, &b2), (m, k, n, p));
                    let (h, _) = linear_forward(&x, &w1, &b1, m, k, n, true, false);
                    let (two, _) = linear_forward(&h, &w2, &b2, m, n, p, false, false);
                    assert_eq!(fused.len(), m * p);
                    assert!(fused.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits()), "{m}×{k}×{n}×{p}: not the two layers' bits");
                    for i in (0..m).step_by(m / 7 + 1).chain([m - 1]) {
                        let hidden: Vec<f64> = (0..n)
                            .map(|j| {
                                let z = (0..k).map(|q| f64::from(x[i * k + q]) * f64::from(w1[q * n + j])).sum::<f64>() + f64::from(b1[j]);
                                z / (1.0 + (-z).exp())
                            })
                            .collect();
                        for o in 0..p {
                            let terms = hidden.iter().enumerate().map(|(j, h)| h * f64::from(w2[j * p + o]));
                            let (want, size) = terms.fold((f64::from(b2[o]), 1.0), |(s, a), t| (s + t, a + t.abs()));
                            let got = f64::from(fused[i * p + o]);
                            assert!((got - want).abs() < 1e-5 * size, "{m}×{k}×{n}×{p} ({i}, {o}): {got} vs {want}");
                        }
                    }
                }
            }
        }

        #[test]
        fn exp_neg_is_accurate_over_the_clamped_range() {
            let mut worst = 0.0f64;
            for i in 0..=20_000 {
                let z = (-88.0 + 175.3 * f64::from(i) / 20_000.0) as f32;
                let got = f64::from(super::one_plus_exp_neg(z)) - 1.0;
                let want = (-f64::from(z)).exp();
                // Relative to 1 + e⁻ᶻ, what the sigmoid divides by.
                worst = worst.max((got - want).abs() / (1.0 + want));
            }
            assert!(worst < 3e-7, "worst relative error {worst:e}");
        }

        /// The one-pass affine map + SiLU, on every tail length of the 16-lane loop, and the
        /// block statistics, against f64.
        #[test]
        fn scale_shift_and_block_statistics_match_f64() {
            for len in 0..40 {
                let x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 3.0 + 0.5).collect();
                for silu in [false, true] {
                    let mut y = vec![std::mem::MaybeUninit::new(f32::NAN); len];
                    super::scale_shift(&mut y, &x, 1.7, -0.4, silu);
                    for (&x, y) in x.iter().zip(&y) {
                        let z = f64::from(x) * 1.7 - 0.4;
                        let want = if silu { z / (1.0 + (-z).exp()) } else { z };
                        let got = f64::from(unsafe { y.assume_init() });
                        assert!((got - want).abs() < 1e-6 * (1.0 + want.abs()), "len {len} silu {silu}: {got} vs {want}");
                    }
                }
                if len > 0 {
                    let (mean, squares) = super::mean_and_squares(&x);
                    let want_mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / len as f64;
                    let want_squares = x.iter().map(|&v| (f64::from(v) - want_mean).powi(2)).sum::<f64>();
                    assert!((f64::from(mean) - want_mean).abs() < 1e-6, "mean, len {len}");
                    assert!((f64::from(squares) - want_squares).abs() < 1e-5 * (1.0 + want_squares), "squares, len {len}");
                }
            }
        }

        #[test]
        fn silu_and_its_derivative_match_f64() {
            let z: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
            let mut y = z.clone();
            super::silu(&mut y);
            let mut y2 = vec![0.0f32; z.len()];
            super::silu_into(&mut y2, &z);
            assert_eq!(y, y2);
            let mut g = vec![1.0f32; z.len()];
            super::silu_backward(&mut g, &z);
            for ((&z, &y), &g) in z.iter().zip(&y).zip(&g) {
                let s = 1.0 / (1.0 + (-f64::from(z)).exp());
                assert!((f64::from(y) - f64::from(z) * s).abs() < 1e-6 * (1.0 + f64::from(z).abs()), "silu({z})");
                assert!((f64::from(g) - s * (1.0 + f64::from(z) * (1.0 - s))).abs() < 1e-6, "silu'({z})");
            }
        }

        /// The backward from the forward's `(silu(z), σ(z))`, on a range where `z(1 − σ)`
        /// matters and where it cancels, against f64; the sigmoid pass too.
        #[test]
        fn silu_derivative_from_the_sigmoid_matches_f64() {
            let z: Vec<f32> = (-401..=400).map(|i| i as f32 * 0.05).collect();
            let mut s = vec![f32::NAN; z.len()];
            super::sigmoid_into(&mut s, &z);
            let y: Vec<f32> = z.iter().zip(&s).map(|(z, s)| z * s).collect();
            let mut g: Vec<f32> = (0..z.len()).map(|i| 1.0 + (i % 3) as f32).collect();
            // Rows of 2: the column sums of the result come back in `sums` (added to what it held).
            let mut sums = vec![0.5f32, -0.25];
            super::silu_backward_from_sigmoid_summing(&mut g, None, &y, &s, &mut sums);
            for (j, &sum) in sums.iter().enumerate() {
                let want = [0.5, -0.25][j] + g.iter().skip(j).step_by(2).map(|&g| f64::from(g)).sum::<f64>();
                assert!((f64::from(sum) - want).abs() < 1e-5 * want.abs(), "column {j}: {sum} vs {want}");
            }
            for (i, (&z, (&s, &g))) in z.iter().zip(s.iter().zip(&g)).enumerate() {
                let want_s = 1.0 / (1.0 + (-f64::from(z)).exp());
                assert!((f64::from(s) - want_s).abs() < 1e-6, "σ({z}): {s} vs {want_s}");
                let want = (1.0 + (i % 3) as f64) * want_s * (1.0 + f64::from(z) * (1.0 - want_s));
                assert!((f64::from(g) - want).abs() < 2e-6 * (1.0 + want.abs()), "silu'({z}): {g} vs {want}");
            }
        }
    }
}
