//! The 2-D convolution as a burn backend extension: im2col + one GEMM per group of images in
//! both directions on burn-flex, and a hand-written backward for `Autodiff<B>`.
//!
//! burn-flex computes a convolution's input gradient as a transposed convolution in a direct
//! scalar loop and its weight gradient as a convolution over the batch axis with an
//! `H×W`-sized kernel (profile in `docs/performance.md`). Here all three products are GEMMs over
//! the same im2col matrix (Chellapilla, Puri & Simard, *High Performance Convolutional Neural
//! Networks for Document Processing*, 2006):
//!
//! - forward: `Y[b] = W·col(x[b]) + b` with `W` as `[C_out, C_in·kh·kw]`;
//! - `∂W = Σ_b ∂Y[b]·col(x[b])ᵀ`, `∂b = Σ_b ∂Y[b]·1`;
//! - `∂x[b] = col⁻¹(Wᵀ·∂Y[b])` (col2im, the adjoint of im2col, scatters the patches back).
//!
//! Images are processed in groups whose im2col matrix has about 256 columns (several images at
//! 4×4, one at 16×16), the groups split across threads, each thread with its own buffers.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, Tensor, TensorData};
use rayon::prelude::*;

use crate::flex::kernels::gemm_into_with;
use crate::sgemm::{BSource, Epilogue, MatRef, PadLayout, copy_short, im2col_from_padded, pad_images, padded_len, zero_short};
use crate::flex::{f32_data, register_gradients};

/// The fused convolution's operations. Default bodies are burn's own convolution ops, so a
/// backend listed without kernels of its own stays correct.
#[backend_extension(Flex, Autodiff)]
pub trait FusedConvBackend: Backend {
    /// `conv(x, W) + b`: `x` `[B, C, H, W]`, `weight` `[C_out, C, kh, kw]`, `bias` `[C_out]`,
    /// the given strides and symmetric zero padding, dilation 1, one group.
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), ConvOptions::new([stride_h, stride_w], [pad_h, pad_w], [1, 1], 1))
    }

    /// `conv(silu(GN(x) γ + β), W) + b` ([`crate::flex_norm`]'s normalisation with `groups`
    /// groups, then [`FusedConvBackend::fused_conv2d`]), the U-Net's normalise → activate →
    /// convolve. Where a backend fuses it, the normalised activations are never stored. No
    /// backward of its own: training goes through the two ops.
    #[allow(clippy::too_many_arguments)]
    fn fused_group_norm_silu_conv2d(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self> {
        let h = crate::flex_norm::plain::forward::<Self>(x, gamma, beta, groups, epsilon, true);
        Self::fused_conv2d(h, weight, bias, stride_h, stride_w, pad_h, pad_w)
    }

    /// `(∂x, ∂W, ∂b)` of [`FusedConvBackend::fused_conv2d`] from the output gradient `grad`.
    /// With `input_grad` false (the input is data, not a parameter's descendant) a backend may
    /// skip `∂x` and return zeros in its place.
    #[allow(clippy::too_many_arguments)]
    fn fused_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let _ = input_grad;
        let options = ConvOptions::new([stride_h, stride_w], [pad_h, pad_w], [1, 1], 1);
        let shape = grad.shape();
        let (batch, channels, plane) = (shape[0], shape[1], shape[2] * shape[3]);
        let grad_x = Self::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
        let grad_weight = Self::conv2d_weight_backward(x, weight, grad.clone(), options);
        let per_image = Self::float_sum_dim(Self::float_reshape(grad, Shape::new([batch, channels, plane])), 2);
        let grad_bias = Self::float_reshape(Self::float_sum_dim(per_image, 0), Shape::new([channels]));
        (grad_x, grad_weight, grad_bias)
    }
}

/// `conv(silu(GN(x) γ + β), W) + b` through [`FusedConvBackend::fused_group_norm_silu_conv2d`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm_silu_conv2d(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    epsilon: f64,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedConvBackend>::fused_group_norm_silu_conv2d(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        groups,
        epsilon,
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride[0],
        stride[1],
        padding[0],
        padding[1],
    ))
}

pub(crate) fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: [usize; 2], padding: [usize; 2]) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedConvBackend>::fused_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride[0],
        stride[1],
        padding[0],
        padding[1],
    ))
}

impl FusedConvBackend for Flex {
    fn fused_conv2d(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, stride_h: usize, stride_w: usize, pad_h: usize, pad_w: usize) -> FlexTensor {
        let g = Geometry::new(x.layout().shape(), weight.layout().shape(), [stride_h, stride_w], [pad_h, pad_w]);
        let y = kernels::forward(&g, &f32_data(&x), &f32_data(&weight), &f32_data(&bias));
        FlexTensor::from_data(TensorData::new(y, [g.batch, g.out_channels, g.out[0], g.out[1]]))
    }

    fn fused_group_norm_silu_conv2d(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        epsilon: f64,
        weight: FlexTensor,
        bias: FlexTensor,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FlexTensor {
        let shape = x.layout().shape().clone();
        let g = Geometry::new(&shape, weight.layout().shape(), [stride_h, stride_w], [pad_h, pad_w]);
        let (x, gamma, beta) = (f32_data(&x), f32_data(&gamma), f32_data(&beta));
        let (w, bias) = (f32_data(&weight), f32_data(&bias));
        let y = if kernels::implicit(&g) {
            // The normalisation as one affine map per plane, applied (with SiLU) while each
            // image group is padded for the implicit GEMM: its output is never written out.
            let planes = crate::flex_norm::plane_affines(&shape, groups, &x, &gamma, &beta, epsilon);
            kernels::forward_of_normalised(&g, &x, &planes, &w, &bias)
        } else {
            let h = crate::flex_norm::forward_silu(&shape, groups, &x, &gamma, &beta, epsilon);
            kernels::forward(&g, &h, &w, &bias)
        };
        FlexTensor::from_data(TensorData::new(y, [g.batch, g.out_channels, g.out[0], g.out[1]]))
    }

    fn fused_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
        input_grad: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let g = Geometry::new(x.layout().shape(), weight.layout().shape(), [stride_h, stride_w], [pad_h, pad_w]);
        let (gx, gw, gb) = kernels::backward(&g, &f32_data(&x), &f32_data(&weight), &f32_data(&grad), input_grad);
        (
            FlexTensor::from_data(TensorData::new(gx, [g.batch, g.channels, g.input[0], g.input[1]])),
            FlexTensor::from_data(TensorData::new(gw, [g.out_channels, g.channels, g.kernel[0], g.kernel[1]])),
            FlexTensor::from_data(TensorData::new(gb, [g.out_channels])),
        )
    }
}

impl<B: FusedConvBackend, C: CheckpointStrategy> FusedConvBackend for Autodiff<B, C> {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self> {
        /// Backward of the convolution; the state is `(x, W)` and the geometry.
        #[derive(Debug)]
        struct FusedConvGrad;

        impl<B: FusedConvBackend> Backward<B, 3> for FusedConvGrad {
            type State = (FloatTensor<B>, FloatTensor<B>, [usize; 4]);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (x, weight, [sh, sw, ph, pw]) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let input_grad = ops.parents[0].is_some();
                let (grad_x, grad_weight, grad_bias) = B::fused_conv2d_backward(x, weight, grad, sh, sw, ph, pw, input_grad);
                register_gradients::<B, 3>(grads, ops.parents.map(|p| p.map(|n| n.id)), [grad_x, grad_weight, grad_bias]);
            }
        }

        let nodes = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (x.into_primitive(), weight.into_primitive(), bias.into_primitive());
        match FusedConvGrad.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_conv2d(x.clone(), weight.clone(), bias, stride_h, stride_w, pad_h, pad_w);
                prep.finish((x, weight, [stride_h, stride_w, pad_h, pad_w]), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_conv2d(x, weight, bias, stride_h, stride_w, pad_h, pad_w)),
        }
    }
}

/// The shapes of one convolution (symmetric zero padding, dilation 1, one group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) batch: usize,
    pub(crate) channels: usize,
    pub(crate) input: [usize; 2],
    pub(crate) out_channels: usize,
    pub(crate) kernel: [usize; 2],
    pub(crate) stride: [usize; 2],
    pub(crate) padding: [usize; 2],
    pub(crate) out: [usize; 2],
}

impl Geometry {
    /// From the shapes of `x` `[B, C, H, W]` and `W` `[C_out, C, kh, kw]` (checked by the caller).
    pub(crate) fn new(x: &Shape, w: &Shape, stride: [usize; 2], padding: [usize; 2]) -> Self {
        let input = [x[2], x[3]];
        let kernel = [w[2], w[3]];
        let out = [0, 1].map(|d| (input[d] + 2 * padding[d] - kernel[d]) / stride[d] + 1);
        Self { batch: x[0], channels: x[1], input, out_channels: w[0], kernel, stride, padding, out }
    }

    /// Rows of the im2col matrix: `C·kh·kw`.
    fn patch(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Stride 1 and an output the size of the input (3×3 with padding 1, 1×1 without): the
    /// im2col rows are shifted copies of the input planes.
    fn preserves_size(&self) -> bool {
        self.stride == [1, 1] && self.out == self.input
    }

    /// The GEMMs' own threading: none when the image groups already keep the threads busy,
    /// gemm's when a single group (one image) is all there is.
    fn gemm_threads(&self) -> gemm::Parallelism {
        if self.batch.div_ceil(self.images_per_group()) >= 2 { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(0) }
    }

    fn in_plane(&self) -> usize {
        self.input[0] * self.input[1]
    }

    fn out_plane(&self) -> usize {
        self.out[0] * self.out[1]
    }

    /// Images per group: about 256 im2col columns, and at least two groups when the batch has
    /// two images (both threads busy).
    fn images_per_group(&self) -> usize {
        let wanted = 256usize.div_ceil(self.out_plane().max(1)).max(1);
        wanted.min(self.batch.div_ceil(2)).max(1)
    }

    /// The output positions `o` along dimension `d` whose input `o·s + k − p` lies inside, for
    /// kernel offset `k`: a half-open range.
    fn valid(&self, d: usize, k: usize) -> (usize, usize) {
        let (s, p, n, o) = (self.stride[d], self.padding[d], self.input[d], self.out[d]);
        let lo = if p > k { (p - k).div_ceil(s) } else { 0 };
        let hi = if n + p > k { ((n + p - k - 1) / s + 1).min(o) } else { 0 };
        (lo.min(hi), hi)
    }
}

/// The host kernels on row-major f32 buffers.
mod kernels {
    use super::*;

    /// Call `f(row, c, i, j, valid oy, valid ox)` for every im2col row `(c·kh + i)·kw + j`.
    fn for_each_row(g: &Geometry, mut f: impl FnMut(usize, usize, usize, usize, (usize, usize), (usize, usize))) {
        let mut row = 0;
        for c in 0..g.channels {
            for i in 0..g.kernel[0] {
                let rows = g.valid(0, i);
                for j in 0..g.kernel[1] {
                    f(row, c, i, j, rows, g.valid(1, j));
                    row += 1;
                }
            }
        }
    }

    /// `col[(c·kh + i)·kw + j, n·P + oy·wo + ox] = x[n, c, oy·s + i − p, ox·s + j − p]` (0 in
    /// the padding) for the `images` images in `x`, `P` the output plane.
    pub(super) fn im2col(g: &Geometry, x: &[f32], images: usize, col: &mut [f32]) {
        let (plane, columns) = (g.out_plane(), images * g.out_plane());
        let [wi, wo] = [g.input[1], g.out[1]];
        let [s0, s1] = g.stride;
        for_each_row(g, |row, c, i, j, (oy_lo, oy_hi), (ox_lo, ox_hi)| {
            let dst_row = &mut col[row * columns..(row + 1) * columns];
            for n in 0..images {
                let src = &x[(n * g.channels + c) * g.in_plane()..][..g.in_plane()];
                let dst = &mut dst_row[n * plane..(n + 1) * plane];
                if g.preserves_size() {
                    // The patch plane is the input plane shifted by (i − p₀, j − p₁):
                    // one contiguous copy, then the wrapped-around edge columns zeroed.
                    dst[..oy_lo * wo].fill(0.0);
                    dst[oy_hi * wo..].fill(0.0);
                    let (start, end) = (oy_lo * wo, oy_hi * wo);
                    if start < end {
                        let shift = (i * wi + j) as isize - (g.padding[0] * wi + g.padding[1]) as isize;
                        let from = (start as isize + shift).max(0) as usize;
                        let lead = from as isize - (start as isize + shift);
                        let len = (end - start - lead as usize).min(src.len() - from);
                        dst[start..start + lead as usize].fill(0.0);
                        dst[start + lead as usize..start + lead as usize + len].copy_from_slice(&src[from..from + len]);
                        dst[start + lead as usize + len..end].fill(0.0);
                        for oy in oy_lo..oy_hi {
                            zero_short(&mut dst[oy * wo..oy * wo + ox_lo]);
                            zero_short(&mut dst[oy * wo + ox_hi..(oy + 1) * wo]);
                        }
                    }
                    continue;
                }
                dst[..oy_lo * wo].fill(0.0);
                dst[oy_hi * wo..].fill(0.0);
                for oy in oy_lo..oy_hi {
                    let y = oy * s0 + i - g.padding[0];
                    let out_row = &mut dst[oy * wo..(oy + 1) * wo];
                    zero_short(&mut out_row[..ox_lo]);
                    zero_short(&mut out_row[ox_hi..]);
                    let in_row = &src[y * wi..(y + 1) * wi];
                    if ox_lo < ox_hi {
                        let x0 = ox_lo * s1 + j - g.padding[1];
                        if s1 == 1 {
                            out_row[ox_lo..ox_hi].copy_from_slice(&in_row[x0..x0 + (ox_hi - ox_lo)]);
                        } else {
                            for (k, v) in out_row[ox_lo..ox_hi].iter_mut().enumerate() {
                                *v = in_row[x0 + k * s1];
                            }
                        }
                    }
                }
            }
        });
    }

    /// The adjoint of [`im2col`]: `gx[n, c, y, x] += col[…]` over every patch that read it.
    /// `gx` holds the `images` images and starts at zero.
    pub(super) fn col2im(g: &Geometry, col: &[f32], images: usize, gx: &mut [f32]) {
        let (plane, columns) = (g.out_plane(), images * g.out_plane());
        let [wi, wo] = [g.input[1], g.out[1]];
        let [s0, s1] = g.stride;
        for_each_row(g, |row, c, i, j, (oy_lo, oy_hi), (ox_lo, ox_hi)| {
            let src_row = &col[row * columns..(row + 1) * columns];
            for n in 0..images {
                let dst = &mut gx[(n * g.channels + c) * g.in_plane()..][..g.in_plane()];
                let src = &src_row[n * plane..(n + 1) * plane];
                if g.preserves_size() {
                    // Row by row over the valid columns, as one loop per row without
                    // bounds juggling: the adjoint of the shifted copy in `im2col`.
                    let shift = (i * wi + j) as isize - (g.padding[0] * wi + g.padding[1]) as isize;
                    for oy in oy_lo..oy_hi {
                        let (a, b) = (oy * wo + ox_lo, oy * wo + ox_hi);
                        if a < b {
                            let to = (a as isize + shift) as usize;
                            for (d, v) in dst[to..to + (b - a)].iter_mut().zip(&src[a..b]) {
                                *d += v;
                            }
                        }
                    }
                    continue;
                }
                for oy in oy_lo..oy_hi {
                    let y = oy * s0 + i - g.padding[0];
                    if ox_lo >= ox_hi {
                        continue;
                    }
                    let x0 = ox_lo * s1 + j - g.padding[1];
                    let in_row = &mut dst[y * wi..(y + 1) * wi];
                    let patch = &src[oy * wo + ox_lo..oy * wo + ox_hi];
                    if s1 == 1 {
                        for (d, v) in in_row[x0..x0 + patch.len()].iter_mut().zip(patch) {
                            *d += v;
                        }
                    } else {
                        for (k, v) in patch.iter().enumerate() {
                            in_row[x0 + k * s1] += v;
                        }
                    }
                }
            }
        });
    }

    /// Whether the implicit GEMM serves this convolution: stride 1, our micro-kernel (AVX-512
    /// or AVX2, whose packing reads padded images), and enough output channels to fill its
    /// tiles (a 1-channel output would leave all but one row of each tile empty; such
    /// convolutions keep the explicit im2col and the `gemm` crate).
    pub(super) fn implicit(g: &Geometry) -> bool {
        g.stride == [1, 1] && crate::sgemm::implicit_im2col() && g.out_channels >= 6
    }

    /// The output `[B, C_out, ho, wo]`.
    pub(super) fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        if implicit(g) {
            let images = ImageBatch { x, batch: g.batch, channels: g.channels, size: g.input, planes: None };
            return implicit_conv(images, g.padding, g.kernel, g.images_per_group(), g.gemm_threads(), w, g.out_channels, Some(bias));
        }
        let (k, plane, co) = (g.patch(), g.out_plane(), g.out_channels);
        let group = g.images_per_group();
        let mut y = vec![0.0f32; g.batch * co * plane];
        let x_group = group * g.channels * g.in_plane();
        y.par_chunks_mut(group * co * plane).zip(x.par_chunks(x_group)).for_each(|(y, x)| {
            let images = x.len() / (g.channels * g.in_plane());
            let columns = images * plane;
            with_scratch([k * columns, co * columns, 0], |[col, out, _]| {
                im2col(g, x, images, col);
                // Y = W·col + b: the bias rows first, then one GEMM accumulating into them
                // (straight into the output when the group is one image).
                let product = |out: &mut [f32]| {
                    for (row, b) in out.chunks_mut(columns).zip(bias) {
                        row.fill(*b);
                    }
                    gemm_into_with(g.gemm_threads(), out, true, (co, columns, k), w, (k, 1), col, (columns, 1));
                };
                if images == 1 {
                    product(y);
                } else {
                    product(out);
                    scatter_images(out, y, images, co, plane);
                }
            });
        });
        y
    }

    /// [`forward`] of `silu(x·scale + shift)`, one `(scale, shift)` per plane of `x` (`B·C`),
    /// by the implicit GEMM only ([`implicit`] holds): the map is applied as the images are
    /// padded.
    pub(super) fn forward_of_normalised(g: &Geometry, x: &[f32], planes: &[(f32, f32)], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let images = ImageBatch { x, batch: g.batch, channels: g.channels, size: g.input, planes: Some(planes) };
        implicit_conv(images, g.padding, g.kernel, g.images_per_group(), g.gemm_threads(), w, g.out_channels, Some(bias))
    }

    /// `[batch, C, H, W]` images, and optionally one `(scale, shift)` per plane (`batch·C`):
    /// the convolution then reads `silu(x·scale + shift)` (a group normalisation and its SiLU,
    /// applied as the images are padded, never stored).
    #[derive(Clone, Copy)]
    struct ImageBatch<'a> {
        x: &'a [f32],
        batch: usize,
        channels: usize,
        size: [usize; 2],
        planes: Option<&'a [(f32, f32)]>,
    }

    /// `Y[n] = W·col(x[n]) (+ b)`, stride 1, for every image: each group of `group` images is
    /// zero-padded once into scratch and its patches packed from there by the GEMM (no im2col
    /// matrix), `W` row-major `[C_out, C·kh·kw]`, the bias added in the GEMM's epilogue.
    /// Returns `[batch, C_out, ho, wo]`.
    #[allow(clippy::too_many_arguments)]
    fn implicit_conv(
        images: ImageBatch<'_>,
        padding: [usize; 2],
        kernel: [usize; 2],
        group: usize,
        threads: gemm::Parallelism,
        w: &[f32],
        co: usize,
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        let ImageBatch { x, batch, channels, size, planes } = images;
        let out = [0, 1].map(|d| size[d] + 2 * padding[d] - kernel[d] + 1);
        let (k, plane, image_in) = (channels * kernel[0] * kernel[1], out[0] * out[1], channels * size[0] * size[1]);
        assert!(x.len() >= batch * image_in && w.len() >= co * k && bias.is_none_or(|b| b.len() >= co));
        let total = batch * co * plane;
        // Rows narrower than the kernels' half-sliver (the 8 × 8 and 4 × 4 levels) are read in
        // place from row-padded images where a kernel takes masks; otherwise packed.
        let layout = if crate::sgemm::row_padded_im2col(out, kernel[1], padding[1]) { PadLayout::Rows } else { PadLayout::Full };
        let mut y = Vec::<f32>::with_capacity(total);
        let y_ptr = SendPtr(y.as_mut_ptr());
        let threads = crate::flex::kernels::thread_count(threads);
        let epilogue = Epilogue { bias: std::ptr::null(), row_bias: bias.map_or(std::ptr::null(), <[f32]>::as_ptr), silu: std::ptr::null_mut() };
        let a = MatRef { ptr: w.as_ptr(), rs: k, cs: 1 };
        (0..batch.div_ceil(group)).into_par_iter().for_each(|t| {
            let (first, images) = (t * group, group.min(batch - t * group));
            let columns = images * plane;
            let x = &x[first * image_in..(first + images) * image_in];
            // SAFETY (the writes below): each task writes its own images' slice of `y`.
            let dst = unsafe { y_ptr.get().add(first * co * plane) };
            let product_len = if images == 1 { 0 } else { co * columns };
            let scratch_plane = if planes.is_some() { size[0] * size[1] } else { 0 };
            with_scratch([padded_len(images, channels, size, padding, layout), product_len, scratch_plane], |[padded, product, scratch]| {
                let planes = planes.map(|p| (&p[first * channels..(first + images) * channels], scratch));
                let b = BSource::Im2col(pad_images(x, images, channels, size, padding, kernel, layout, planes, padded));
                if images == 1 {
                    unsafe { crate::sgemm::sgemm_with(co, columns, k, a, b, dst, plane, false, epilogue, None, threads) };
                    return;
                }
                unsafe { crate::sgemm::sgemm_with(co, columns, k, a, b, product.as_mut_ptr(), columns, false, epilogue, None, threads) };
                // `[C_out, images·P]` to `[images, C_out, P]`.
                // SAFETY: this task's images: `images·C_out·P` floats from `dst`.
                let dst = unsafe { std::slice::from_raw_parts_mut(dst, images * co * plane) };
                scatter_images(product, dst, images, co, plane);
            });
        });
        // SAFETY: the groups cover every image, and sgemm (accumulate false) or the copy wrote
        // every element of each.
        unsafe { y.set_len(total) };
        y
    }

    /// A raw output pointer shared by tasks that write disjoint parts of it.
    #[derive(Clone, Copy)]
    struct SendPtr(*mut f32);
    impl SendPtr {
        fn get(self) -> *mut f32 {
            self.0
        }
    }
    // SAFETY: see each use (disjoint writes).
    unsafe impl Send for SendPtr {}
    unsafe impl Sync for SendPtr {}

    thread_local! {
        /// Per-thread im2col and output buffers, kept across calls (the pool's threads live
        /// for the process): no allocation or zeroing per image group.
        static SCRATCH: std::cell::RefCell<[Vec<f32>; 3]> = const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
    }

    /// Run `f` on three scratch slices of the given lengths (contents unspecified: `f` writes
    /// before it reads).
    fn with_scratch<R>(lengths: [usize; 3], f: impl FnOnce([&mut [f32]; 3]) -> R) -> R {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffers) => {
                for (buffer, &len) in buffers.iter_mut().zip(&lengths) {
                    if buffer.len() < len {
                        buffer.resize(len, 0.0);
                    }
                }
                let [a, b, c] = &mut *buffers;
                f([&mut a[..lengths[0]], &mut b[..lengths[1]], &mut c[..lengths[2]]])
            }
            // Re-entered on this thread (not expected): fresh buffers.
            Err(_) => {
                let [mut a, mut b, mut c] = lengths.map(|len| vec![0.0; len]);
                f([&mut a, &mut b, &mut c])
            }
        })
    }

    /// `[C, images·P]` (column blocks per image) to `[images, C, P]`, and back with
    /// [`gather_images`].
    fn scatter_images(src: &[f32], dst: &mut [f32], images: usize, channels: usize, plane: usize) {
        for n in 0..images {
            for c in 0..channels {
                copy_short(&mut dst[(n * channels + c) * plane..][..plane], &src[c * images * plane + n * plane..][..plane]);
            }
        }
    }

    fn gather_images(src: &[f32], dst: &mut [f32], images: usize, channels: usize, plane: usize) {
        for n in 0..images {
            for c in 0..channels {
                copy_short(&mut dst[c * images * plane + n * plane..][..plane], &src[(n * channels + c) * plane..][..plane]);
            }
        }
    }

    /// `(∂x, ∂W, ∂b)` from the output gradient (`∂x` zeros when `input_grad` is false).
    ///
    /// On the implicit path (stride 1, padding at most `kernel − 1`): `∂Wᵀ = col·∂Yᵀ` with
    /// `col` the explicit im2col read in place as A (its transpose would be packed one float
    /// at a time), and `∂x` as the forward convolution of `∂Y` with the flipped, transposed
    /// kernel and padding `kernel − 1 − p` (Dumoulin & Visin, *A guide to convolution
    /// arithmetic for deep learning*, 2016, §4), so no `∂col` matrix and no col2im.
    pub(super) fn backward(g: &Geometry, x: &[f32], w: &[f32], grad: &[f32], input_grad: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (k, plane, co) = (g.patch(), g.out_plane(), g.out_channels);
        let [kh, kw] = g.kernel;
        // ∂x by the implicit GEMM needs its own `m = C` to fill tiles, as the forward does.
        let transposed = (implicit(g) && g.channels >= 6 && g.padding[0] < kh && g.padding[1] < kw).then(|| [kh - 1 - g.padding[0], kw - 1 - g.padding[1]]);
        let mut gx = match (input_grad, transposed) {
            (true, Some(padding)) => {
                // W' [C, C_out·kh·kw]: W'[c, (o·kh + i)·kw + j] = W[o, c, kh−1−i, kw−1−j].
                let mut flipped = vec![0.0f32; w.len()];
                for o in 0..co {
                    for c in 0..g.channels {
                        for i in 0..kh {
                            for j in 0..kw {
                                flipped[c * co * kh * kw + (o * kh + i) * kw + j] = w[((o * g.channels + c) * kh + kh - 1 - i) * kw + kw - 1 - j];
                            }
                        }
                    }
                }
                let images = ImageBatch { x: grad, batch: g.batch, channels: co, size: g.out, planes: None };
                implicit_conv(images, padding, g.kernel, g.images_per_group(), g.gemm_threads(), &flipped, g.channels, None)
            }
            // Zeros: skipped, or accumulated by col2im below.
            _ => vec![0.0f32; x.len()],
        };
        let explicit_x = input_grad && transposed.is_none();
        // Stride 1: the im2col matrix for ∂W written from the padded images by vector runs
        // (the scalar `im2col`, its short copies and edge fills, was a tenth of a U-Net step).
        let padded_im2col = g.stride == [1, 1] && crate::sgemm::implicit_im2col();
        let group = g.images_per_group();
        let x_group = group * g.channels * g.in_plane();
        // Per task: ∂Wᵀ `[k, C_out]` (transposed once at the end): `col` is then read in place
        // as A, and only the small `∂Yᵀ` is packed through strides.
        let (gw_t, gb) = gx
            .par_chunks_mut(x_group)
            .zip(x.par_chunks(x_group))
            .zip(grad.par_chunks(group * co * plane))
            .fold(
                || (vec![0.0f32; co * k], vec![0.0f32; co]),
                |(mut gw_t, mut gb), ((gx, x), grad)| {
                    let images = x.len() / (g.channels * g.in_plane());
                    let columns = images * plane;
                    let padded_len = if padded_im2col { padded_len(images, g.channels, g.input, g.padding, PadLayout::Full) } else { 0 };
                    with_scratch([k * columns, co * columns, padded_len], |[col, dy, padded]| {
                        let dy: &[f32] = if images == 1 {
                            grad
                        } else {
                            gather_images(grad, dy, images, co, plane);
                            dy
                        };
                        for (b, row) in gb.iter_mut().zip(dy.chunks(columns)) {
                            *b += crate::flex::simd::sum(row);
                        }
                        // ∂Wᵀ += col·∂Yᵀ: on one thread, `col` read in place from the padded
                        // images where a kernel serves it; otherwise written out first.
                        let mut done = false;
                        if padded_im2col {
                            let view = pad_images(x, images, g.channels, g.input, g.padding, g.kernel, PadLayout::Full, None, padded);
                            if matches!(g.gemm_threads(), gemm::Parallelism::None) {
                                let dy_t = MatRef { ptr: dy.as_ptr(), rs: 1, cs: columns };
                                // SAFETY: the view reads inside `padded`; ∂Yᵀ is `columns × C_out`
                                // through strides inside `dy`; ∂Wᵀ is `k × C_out`, its own buffer.
                                done = unsafe { crate::sgemm::sgemm_im2col_a(view, columns, co, dy_t, gw_t.as_mut_ptr(), co, true) };
                            }
                            if !done {
                                im2col_from_padded(view, columns, col);
                            }
                        } else {
                            im2col(g, x, images, col);
                        }
                        if !done {
                            gemm_into_with(g.gemm_threads(), &mut gw_t, true, (k, co, columns), col, (columns, 1), dy, (1, columns));
                        }
                        if explicit_x {
                            // ∂col = Wᵀ·∂Y, then back to the image.
                            gemm_into_with(g.gemm_threads(), col, false, (k, columns, co), w, (1, k), dy, (columns, 1));
                            col2im(g, col, images, gx);
                        }
                    });
                    (gw_t, gb)
                },
            )
            .reduce(
                || (vec![0.0f32; co * k], vec![0.0f32; co]),
                |(mut gw, mut gb), (gw2, gb2)| {
                    gw.iter_mut().zip(&gw2).for_each(|(a, b)| *a += b);
                    gb.iter_mut().zip(&gb2).for_each(|(a, b)| *a += b);
                    (gw, gb)
                },
            );
        let mut gw = vec![0.0f32; co * k];
        for r in 0..k {
            for o in 0..co {
                gw[o * k + r] = gw_t[r * co + o];
            }
        }
        (gx, gw, gb)
    }
}
