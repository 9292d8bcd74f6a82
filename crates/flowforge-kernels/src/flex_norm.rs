//! Group normalisation with an optional SiLU after it, as one pass forward and two backward,
//! a burn backend extension with a hand-written backward for `Autodiff<B>`.
//!
//! burn's `GroupNorm` is about ten tensor ops forward (mean, centre, square, mean, add, sqrt,
//! divide, scale, shift), each a pass that allocates, and twice that backward; the SiLU after it
//! is two more. Here, per (image, group) block of `n = (C/G)·S` elements:
//!
//! - forward: `μ`, `σ² = mean((x − μ)²)`, `y = act(x̂ γ_c + β_c)`, `x̂ = (x − μ)/√(σ² + ε)`;
//! - backward (Wu & He 2018; the standard normalisation adjoint): with `g = ∂y ⊙ act'(z)`,
//!   `∂β_c = Σ g`, `∂γ_c = Σ g x̂`, and with `ĝ = g γ_c`,
//!   `∂x = (ĝ − mean(ĝ) − x̂ mean(ĝ x̂)) / √(σ² + ε)`, the means over the block.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor, TensorData};
use rayon::prelude::*;

use crate::flex::{f32_data, register_gradients, simd, unique_dense_f32};

/// The fused group normalisation's operations. Default bodies are plain backend ops.
#[backend_extension(Flex, Autodiff)]
pub trait FusedNormBackend: Backend {
    /// `act(GN(x) γ + β)` for `x` `[B, C, …]`, `gamma` and `beta` `[C]`.
    fn fused_group_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64, silu: bool) -> FloatTensor<Self> {
        plain::forward::<Self>(x, gamma, beta, groups, epsilon, silu)
    }

    /// `(∂x, ∂γ, ∂β)` of [`FusedNormBackend::fused_group_norm`] from the output gradient.
    #[allow(clippy::too_many_arguments)]
    fn fused_group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        plain::backward::<Self>(x, gamma, beta, grad, groups, epsilon, silu)
    }
}

/// The definitions in plain backend ops (the default bodies).
pub(crate) mod plain {
    use super::*;

    /// `act(GN(x) γ + β)` in the input's shape.
    pub(crate) fn forward<B: Backend>(x: FloatTensor<B>, gamma: FloatTensor<B>, beta: FloatTensor<B>, groups: usize, epsilon: f64, silu: bool) -> FloatTensor<B> {
        let shape = x.shape();
        let (xhat, _) = normalised::<B>(x, groups, epsilon);
        let z = affine::<B>(xhat, gamma, beta);
        let y = if silu { B::float_mul(z.clone(), B::sigmoid(z)) } else { z };
        B::float_reshape(y, shape)
    }

    /// `(x̂ as [B, C, S], 1/√(σ² + ε) as [B, G, 1])`.
    pub(super) fn normalised<B: Backend>(x: FloatTensor<B>, groups: usize, epsilon: f64) -> (FloatTensor<B>, FloatTensor<B>) {
        let shape = x.shape();
        let (batch, channels) = (shape[0], shape[1]);
        let spatial = shape.num_elements() / (batch * channels).max(1);
        let grouped = B::float_reshape(x, Shape::new([batch, groups, channels / groups * spatial]));
        let mean = B::float_mean_dim(grouped.clone(), 2);
        let centred = B::float_sub(grouped, mean);
        let variance = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), 2);
        let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(variance, epsilon.into())));
        (B::float_reshape(B::float_mul(centred, rstd.clone()), Shape::new([batch, channels, spatial])), rstd)
    }

    pub(super) fn affine<B: Backend>(xhat: FloatTensor<B>, gamma: FloatTensor<B>, beta: FloatTensor<B>) -> FloatTensor<B> {
        let c = gamma.shape()[0];
        B::float_add(B::float_mul(xhat, B::float_reshape(gamma, Shape::new([1, c, 1]))), B::float_reshape(beta, Shape::new([1, c, 1])))
    }

    pub(super) fn backward<B: Backend>(
        x: FloatTensor<B>,
        gamma: FloatTensor<B>,
        beta: FloatTensor<B>,
        grad: FloatTensor<B>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
        let shape = x.shape();
        let (batch, channels) = (shape[0], shape[1]);
        let spatial = shape.num_elements() / (batch * channels).max(1);
        let (xhat, rstd) = normalised::<B>(x, groups, epsilon);
        let mut g = B::float_reshape(grad, Shape::new([batch, channels, spatial]));
        if silu {
            // silu'(z) = σ(z)(1 + z(1 − σ(z)))
            let z = affine::<B>(xhat.clone(), gamma.clone(), beta);
            let s = B::sigmoid(z.clone());
            let one_minus_s = B::float_add_scalar(B::float_neg(s.clone()), 1.0.into());
            let d = B::float_add_scalar(B::float_mul(z, one_minus_s), 1.0.into());
            g = B::float_mul(g, B::float_mul(s, d));
        }
        let per_channel = |t: FloatTensor<B>| B::float_reshape(B::float_sum_dim(B::float_sum_dim(t, 2), 0), Shape::new([channels]));
        let grad_beta = per_channel(g.clone());
        let grad_gamma = per_channel(B::float_mul(g.clone(), xhat.clone()));
        let block = Shape::new([batch, groups, channels / groups * spatial]);
        let g_hat = B::float_reshape(B::float_mul(g, B::float_reshape(gamma, Shape::new([1, channels, 1]))), block.clone());
        let xhat = B::float_reshape(xhat, block);
        let mean_g = B::float_mean_dim(g_hat.clone(), 2);
        let mean_gx = B::float_mean_dim(B::float_mul(g_hat.clone(), xhat.clone()), 2);
        let dx = B::float_mul(B::float_sub(B::float_sub(g_hat, mean_g), B::float_mul(xhat, mean_gx)), rstd);
        (B::float_reshape(dx, shape), grad_gamma, grad_beta)
    }
}

pub(crate) fn group_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, beta: Tensor<1>, groups: usize, epsilon: f64, silu: bool) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedNormBackend>::fused_group_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        groups,
        epsilon,
        silu,
    ))
}

impl FusedNormBackend for Flex {
    fn fused_group_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, groups: usize, epsilon: f64, silu: bool) -> FlexTensor {
        let shape = x.layout().shape().clone();
        let blocks = Blocks::new(&shape, groups);
        let y = kernels::forward(&blocks, &f32_data(&x), &f32_data(&gamma), &f32_data(&beta), epsilon, silu);
        FlexTensor::from_data(TensorData::new(y, shape))
    }

    fn fused_group_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        grad: FlexTensor,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = x.layout().shape().clone();
        let blocks = Blocks::new(&shape, groups);
        let (x, gamma, beta) = (f32_data(&x), f32_data(&gamma), f32_data(&beta));
        let c = blocks.channels;
        let params = |gg: Vec<f32>, gb: Vec<f32>| (FlexTensor::from_data(TensorData::new(gg, [c])), FlexTensor::from_data(TensorData::new(gb, [c])));
        // The incoming gradient is usually owned by this call alone: ∂x is written over it (no
        // zeroed buffer and copy, 1% of a U-Net training step).
        let mut grad = grad;
        if let Some(g) = unique_dense_f32(&mut grad) {
            let (gg, gb) = kernels::backward_in_place(&blocks, &x, &gamma, &beta, g, epsilon, silu);
            let (gg, gb) = params(gg, gb);
            return (grad, gg, gb);
        }
        let mut gx = f32_data(&grad).into_owned();
        let (gg, gb) = kernels::backward_in_place(&blocks, &x, &gamma, &beta, &mut gx, epsilon, silu);
        let (gg, gb) = params(gg, gb);
        (FlexTensor::from_data(TensorData::new(gx, shape)), gg, gb)
    }
}

impl<B: FusedNormBackend, C: CheckpointStrategy> FusedNormBackend for Autodiff<B, C> {
    fn fused_group_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64, silu: bool) -> FloatTensor<Self> {
        /// Backward of the normalisation; the state is `(x, γ, β)` and the settings.
        #[derive(Debug)]
        struct FusedGroupNormGrad;

        impl<B: FusedNormBackend> Backward<B, 3> for FusedGroupNormGrad {
            type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, usize, f64, bool);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (x, gamma, beta, groups, epsilon, silu) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let (grad_x, grad_gamma, grad_beta) = B::fused_group_norm_backward(x, gamma, beta, grad, groups, epsilon, silu);
                register_gradients::<B, 3>(grads, ops.parents.map(|p| p.map(|n| n.id)), [grad_x, grad_gamma, grad_beta]);
            }
        }

        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
        match FusedGroupNormGrad.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_group_norm(x.clone(), gamma.clone(), beta.clone(), groups, epsilon, silu);
                prep.finish((x, gamma, beta, groups, epsilon, silu), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_group_norm(x, gamma, beta, groups, epsilon, silu)),
        }
    }
}

/// `silu(GN(x) γ + β)` of `x` with `shape`, on the host (the fused convolution's fallback).
pub(crate) fn forward_silu(shape: &Shape, groups: usize, x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64) -> Vec<f32> {
    kernels::forward(&Blocks::new(shape, groups), x, gamma, beta, epsilon, true)
}

/// One `(scale, shift)` per `(image, channel)` plane of `x` with `shape`, such that
/// `x·scale + shift = x̂ γ_c + β_c`: the normalisation as a per-plane affine map, for a
/// consumer that applies it as it reads `x` (the fused convolution's padding).
pub(crate) fn plane_affines(shape: &Shape, groups: usize, x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64) -> Vec<(f32, f32)> {
    kernels::plane_affines(&Blocks::new(shape, groups), x, gamma, beta, epsilon)
}

/// The layout of `[B, C, S…]` as `B·G` contiguous blocks of `C/G` channels of `S` elements.
#[derive(Debug, Clone, Copy)]
struct Blocks {
    channels: usize,
    per_group: usize,
    spatial: usize,
}

impl Blocks {
    fn new(shape: &Shape, groups: usize) -> Self {
        let (batch, channels) = (shape[0], shape[1]);
        let spatial = shape.num_elements() / (batch * channels).max(1);
        Self { channels, per_group: channels / groups, spatial }
    }

    fn len(&self) -> usize {
        self.per_group * self.spatial
    }
}

/// The host kernels on row-major f32 buffers.
mod kernels {
    use super::*;

    fn sum_of_products(a: &[f32], b: &[f32]) -> f32 {
        let mut lanes = [0.0f32; 16];
        let (mut ca, mut cb) = (a.chunks_exact(16), b.chunks_exact(16));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for ((l, p), q) in lanes.iter_mut().zip(x).zip(y) {
                *l += p * q;
            }
        }
        lanes.iter().sum::<f32>() + ca.remainder().iter().zip(cb.remainder()).map(|(p, q)| p * q).sum::<f32>()
    }

    /// `(μ, 1/√(σ² + ε))` of one block, two-pass (no cancellation).
    fn statistics(block: &[f32], epsilon: f64) -> (f32, f32) {
        let (mean, squares) = simd::mean_and_squares(block);
        let variance = f64::from(squares / block.len() as f32);
        (mean, (1.0 / (variance + epsilon).sqrt()) as f32)
    }

    /// Channel `c`'s `(scale, shift)` in a block with statistics `(μ, rstd)`:
    /// `x̂ γ_c + β_c = x·scale + shift`.
    fn channel_affine(mean: f32, rstd: f32, gamma_c: f32, beta_c: f32) -> (f32, f32) {
        let scale = rstd * gamma_c;
        (scale, beta_c - mean * scale)
    }

    pub(super) fn plane_affines(b: &Blocks, x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64) -> Vec<(f32, f32)> {
        let groups = b.channels / b.per_group.max(1);
        x.par_chunks(b.len())
            .enumerate()
            .flat_map_iter(|(index, x)| {
                let (mean, rstd) = statistics(x, epsilon);
                let first = (index % groups) * b.per_group;
                (first..first + b.per_group).map(move |c| channel_affine(mean, rstd, gamma[c], beta[c]))
            })
            .collect()
    }

    pub(super) fn forward(b: &Blocks, x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64, silu: bool) -> Vec<f32> {
        // Written block by block without zeroing first (a memset of the whole output was 1% of
        // a U-Net step).
        let mut y = Vec::<f32>::with_capacity(x.len());
        let groups = b.channels / b.per_group.max(1);
        y.spare_capacity_mut()[..x.len()].par_chunks_mut(b.len()).zip(x.par_chunks(b.len())).enumerate().for_each(|(index, (y, x))| {
            let (mean, rstd) = statistics(x, epsilon);
            let first = (index % groups) * b.per_group;
            // Normalisation, affine map and SiLU in one pass per channel.
            for (c, (y, x)) in y.chunks_mut(b.spatial).zip(x.chunks(b.spatial)).enumerate() {
                let (scale, shift) = channel_affine(mean, rstd, gamma[first + c], beta[first + c]);
                simd::scale_shift(y, x, scale, shift, silu);
            }
        });
        // SAFETY: the blocks cover `x.len()` elements, all written.
        unsafe { y.set_len(x.len()) };
        y
    }

    pub(super) fn backward_in_place(b: &Blocks, x: &[f32], gamma: &[f32], beta: &[f32], gx: &mut [f32], epsilon: f64, silu: bool) -> (Vec<f32>, Vec<f32>) {
        assert_eq!(gx.len(), x.len(), "the gradient has the input's shape");
        let groups = b.channels / b.per_group.max(1);
        let channels = b.channels;
        gx.par_chunks_mut(b.len())
            .zip(x.par_chunks(b.len()))
            .enumerate()
            .fold(
                || (vec![0.0f32; channels], vec![0.0f32; channels], vec![0.0f32; b.spatial], vec![0.0f32; b.spatial]),
                |(mut gg, mut gb, mut xhat, mut z), (index, (gx, x))| {
                    let first = (index % groups) * b.per_group;
                    let channels = first..first + b.per_group;
                    let (gamma, beta) = (&gamma[channels.clone()], &beta[channels.clone()]);
                    block_backward(b.spatial, x, gx, (gamma, beta), (epsilon, silu), (&mut gg[channels.clone()], &mut gb[channels]), (&mut xhat, &mut z));
                    (gg, gb, xhat, z)
                },
            )
            .map(|(gg, gb, _, _)| (gg, gb))
            .reduce(
                || (vec![0.0f32; channels], vec![0.0f32; channels]),
                |(mut gg, mut gb), (gg2, gb2)| {
                    gg.iter_mut().zip(&gg2).for_each(|(a, b)| *a += b);
                    gb.iter_mut().zip(&gb2).for_each(|(a, b)| *a += b);
                    (gg, gb)
                },
            )
    }

    /// One (image, group) block's backward, both passes, with `gamma`, `beta`, `gg`, `gb` the
    /// block's channels, `xhat` and `z` one plane of scratch each, and `(ε, SiLU or not)`.
    /// Compiled for AVX-512 or AVX2 where the CPU has them (`block_backward`): as plain x86-64
    /// its element loops ran four lanes wide, and the normalisation's backward took 1.15 ms on
    /// a 128 × 32 × 16 × 16 U-Net activation.
    #[inline(always)]
    fn block_backward_portable(spatial: usize, x: &[f32], gx: &mut [f32], (gamma, beta): (&[f32], &[f32]), (epsilon, silu): (f64, bool), (gg, gb): (&mut [f32], &mut [f32]), (xhat, z): (&mut [f32], &mut [f32])) {
        let (mean, rstd) = statistics(x, epsilon);
        // Pass 1: g (through SiLU's derivative) into gx, the parameter gradients, and the
        // block sums of ĝ and ĝ x̂.
        let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
        for (c, (gx, x)) in gx.chunks_mut(spatial).zip(x.chunks(spatial)).enumerate() {
            let (gamma_c, beta_c) = (gamma[c], beta[c]);
            for (h, x) in xhat.iter_mut().zip(x) {
                *h = (x - mean) * rstd;
            }
            if silu {
                // gx ← grad·silu'(z), z = x̂γ + β.
                for (z, h) in z.iter_mut().zip(xhat.iter()) {
                    *z = h * gamma_c + beta_c;
                }
                simd::silu_backward(gx, z);
            }
            let (s_g, s_gx) = (simd::sum(gx), sum_of_products(gx, xhat));
            gb[c] += s_g;
            gg[c] += s_gx;
            sum_g += s_g * gamma_c;
            sum_gx += s_gx * gamma_c;
        }
        // Pass 2: ∂x = (ĝ − mean(ĝ) − x̂ mean(ĝ x̂))·rstd with ĝ = g γ_c.
        let n = x.len() as f32;
        let (mean_g, mean_gx) = (sum_g / n, sum_gx / n);
        for (c, (gx, x)) in gx.chunks_mut(spatial).zip(x.chunks(spatial)).enumerate() {
            let gamma_c = gamma[c];
            for (g, x) in gx.iter_mut().zip(x) {
                let h = (x - mean) * rstd;
                *g = (*g * gamma_c - mean_g - h * mean_gx) * rstd;
            }
        }
    }

    simd::dispatch! {
        /// [`block_backward_portable`] compiled for the widest vectors the CPU has.
        fn block_backward(spatial: usize, x: &[f32], gx: &mut [f32], params: (&[f32], &[f32]), settings: (f64, bool), grads: (&mut [f32], &mut [f32]), scratch: (&mut [f32], &mut [f32])) => block_backward_portable
    }
}
