//! Values with an optional tangent: one code path for a network's forward pass and its exact
//! forward-mode JVP.
//!
//! A [`Jet`] is a tensor and, when a directional derivative is wanted, its tangent. Every
//! operation below applies its derivative to the tangent if there is one (the chain rule, one
//! layer at a time; Griewank & Walther, *Evaluating Derivatives*, 2008, ch. 3) and costs
//! nothing extra if there is not, so [`crate::UNet`], [`crate::Dit`] and the VAE networks write
//! their forward pass once and get `forward` and `forward_dual` from it.

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;
use burn::tensor::activation;
use flowforge_core::jvp::Dual;
use flowforge_kernels::FusedActivation;

/// A value and, optionally, its tangent along a fixed direction.
#[derive(Debug, Clone)]
pub struct Jet<const D: usize> {
    /// The value.
    pub value: Tensor<D>,
    /// Its derivative along the direction of differentiation, if one is being propagated.
    pub tangent: Option<Tensor<D>>,
}

impl<const D: usize> Jet<D> {
    /// A plain value (no tangent is propagated).
    pub fn plain(value: Tensor<D>) -> Self {
        Self { value, tangent: None }
    }

    /// A value with its tangent.
    pub fn dual(value: Tensor<D>, tangent: Tensor<D>) -> Self {
        Self { value, tangent: Some(tangent) }
    }

    /// From a [`Dual`].
    pub fn from_dual(d: Dual<D>) -> Self {
        Self::dual(d.primal, d.tangent)
    }

    /// As a [`Dual`] (a zero tangent where none was propagated).
    pub fn into_dual(self) -> Dual<D> {
        match self.tangent {
            Some(t) => Dual::new(self.value, t),
            None => Dual::constant(self.value),
        }
    }

    /// Shape of the value.
    pub fn dims(&self) -> [usize; D] {
        self.value.dims()
    }

    /// A linear map applied to both parts: `(L x, L ẋ)`.
    pub fn linear<const E: usize>(self, map: impl Fn(Tensor<D>) -> Tensor<E>) -> Jet<E> {
        Jet { tangent: self.tangent.map(&map), value: map(self.value) }
    }

    /// An affine map `A x + c`: `value` applies it, `tangent_map` its linear part.
    pub fn affine<const E: usize>(self, value: impl FnOnce(Tensor<D>) -> Tensor<E>, tangent_map: impl FnOnce(Tensor<D>) -> Tensor<E>) -> Jet<E> {
        Jet { tangent: self.tangent.map(tangent_map), value: value(self.value) }
    }

    /// `f + g` (broadcasting).
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, other: Self) -> Self {
        let tangent = match (self.tangent, other.tangent) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        Self { value: self.value + other.value, tangent }
    }

    /// `f · g` (element-wise, broadcasting): `ḟ g + f ġ`.
    #[allow(clippy::should_implement_trait)]
    pub fn mul(self, other: Self) -> Self {
        let tangent = match (self.tangent, other.tangent) {
            (Some(a), Some(b)) => Some(a * other.value.clone() + self.value.clone() * b),
            (Some(a), None) => Some(a * other.value.clone()),
            (None, Some(b)) => Some(self.value.clone() * b),
            (None, None) => None,
        };
        Self { value: self.value * other.value, tangent }
    }

    /// `f + a`.
    pub fn add_scalar(self, a: f64) -> Self {
        Self { value: self.value.add_scalar(a), tangent: self.tangent }
    }

    /// `SiLU(f) = f σ(f)`: derivative `σ(f)(1 + f(1 − σ(f)))`.
    pub fn silu(self) -> Self {
        if self.tangent.is_none() {
            // No tangent: the fused kernel (one pass each way on burn-flex).
            return Self::plain(flowforge_kernels::silu(self.value));
        }
        let s = activation::sigmoid(self.value.clone());
        let tangent = self.tangent.map(|t| {
            let d = s.clone() * (self.value.clone() * s.clone().neg().add_scalar(1.0)).add_scalar(1.0);
            t * d
        });
        Self { value: self.value * s, tangent }
    }

    /// `sin f`: derivative `cos f`.
    pub fn sin(self) -> Self {
        let tangent = self.tangent.map(|t| t * self.value.clone().cos());
        Self { value: self.value.sin(), tangent }
    }

    /// `cos f`: derivative `−sin f`.
    pub fn cos(self) -> Self {
        let tangent = self.tangent.map(|t| t * self.value.clone().sin().neg());
        Self { value: self.value.cos(), tangent }
    }

    /// `GELU(f)` (erf form): derivative `Φ(f) + f φ(f)`.
    pub fn gelu(self) -> Self {
        let tangent = self.tangent.map(|t| {
            let x = self.value.clone();
            let cdf = x.clone().div_scalar(core::f64::consts::SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5);
            let pdf = x.clone().square().mul_scalar(-0.5).exp().mul_scalar(1.0 / (2.0 * core::f64::consts::PI).sqrt());
            t * (cdf + x * pdf)
        });
        Self { value: activation::gelu(self.value), tangent }
    }

    /// Concatenation along `dim`; parts without a tangent contribute zeros.
    pub fn cat(parts: Vec<Self>, dim: usize) -> Self {
        let any_tangent = parts.iter().any(|p| p.tangent.is_some());
        let tangent = any_tangent.then(|| Tensor::cat(parts.iter().map(|p| p.tangent.clone().unwrap_or_else(|| p.value.zeros_like())).collect(), dim));
        Self { value: Tensor::cat(parts.into_iter().map(|p| p.value).collect(), dim), tangent }
    }

    /// Reshape both parts.
    pub fn reshape<const E: usize>(self, shape: [usize; E]) -> Jet<E> {
        self.linear(|x| x.reshape(shape))
    }

    /// Swap two dimensions of both parts.
    pub fn swap_dims(self, a: usize, b: usize) -> Self {
        self.linear(|x| x.swap_dims(a, b))
    }

    /// Normalisation over the last dimension without affine parameters,
    /// `x̂ = (x − μ)/√(σ² + ε)`; tangent `(ẋ − mean ẋ − x̂ mean(x̂ ẋ))/√(σ² + ε)`.
    pub fn normalize_last(self, epsilon: f64) -> Self {
        let last = D - 1;
        let mean = self.value.clone().mean_dim(last);
        let centred = self.value - mean;
        let variance = centred.clone().square().mean_dim(last);
        let inv_std = variance.add_scalar(epsilon).sqrt().recip();
        let normalised = centred * inv_std.clone();
        let tangent = self.tangent.map(|t| {
            let t_centred = t.clone() - t.mean_dim(last);
            let projection = (normalised.clone() * t_centred.clone()).mean_dim(last);
            (t_centred - normalised.clone() * projection) * inv_std
        });
        Self { value: normalised, tangent }
    }
}

impl Jet<2> {
    /// A linear layer: `(x W + b, ẋ W)`.
    pub fn through_linear(self, layer: &Linear) -> Self {
        let weight = layer.weight.val();
        self.affine(|x| layer.forward(x), |t| t.matmul(weight))
    }
}

impl Jet<3> {
    /// A linear layer applied to every token of `[batch, tokens, features]`.
    pub fn through_linear(self, layer: &Linear) -> Self {
        let weight = layer.weight.val();
        let [b, n, _] = self.dims();
        let out = weight.dims()[1];
        self.affine(|x| layer.forward(x), |t| t.reshape([b * n, weight.dims()[0]]).matmul(weight.clone()).reshape([b, n, out]))
    }

    /// Scaled dot-product attention of `[batch·heads, tokens, head_dim]` queries, keys and
    /// values: `O = softmax(QKᵀ/√d) V`, with `Ṡ = (Q̇Kᵀ + QK̇ᵀ)/√d`,
    /// `Ṗ = P ⊙ (Ṡ − rowsum(P ⊙ Ṡ))` and `Ȯ = ṖV + PV̇` (Vaswani et al., *Attention Is All You
    /// Need*, NeurIPS 2017).
    pub fn attention(q: Self, k: Self, v: Self) -> Self {
        let scale = 1.0 / (q.dims()[2] as f64).sqrt();
        let k_t = k.value.clone().swap_dims(1, 2);
        let scores = q.value.clone().matmul(k_t.clone()).mul_scalar(scale);
        let p = activation::softmax(scores, 2);
        let out = p.clone().matmul(v.value.clone());
        let score_tangent = match (&q.tangent, &k.tangent) {
            (None, None) => None,
            (qt, kt) => {
                let mut s = None::<Tensor<3>>;
                if let Some(qt) = qt {
                    s = Some(qt.clone().matmul(k_t.clone()));
                }
                if let Some(kt) = kt {
                    let term = q.value.clone().matmul(kt.clone().swap_dims(1, 2));
                    s = Some(match s {
                        Some(s) => s + term,
                        None => term,
                    });
                }
                s.map(|s| s.mul_scalar(scale))
            }
        };
        let mut tangent = score_tangent.map(|s| {
            let weighted = p.clone() * s;
            let p_dot = weighted.clone() - p.clone() * weighted.sum_dim(2);
            p_dot.matmul(v.value.clone())
        });
        if let Some(vt) = v.tangent {
            let term = p.matmul(vt);
            tangent = Some(match tangent {
                Some(t) => t + term,
                None => term,
            });
        }
        Self { value: out, tangent }
    }
}

/// A convolution's explicit padding as `[(top, bottom), (left, right)]` (`Same`: none).
fn explicit_padding(conv: &Conv2d) -> Option<[(usize, usize); 2]> {
    match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some([(top, bottom), (left, right)]),
        PaddingConfig2d::Valid => Some([(0, 0), (0, 0)]),
        PaddingConfig2d::Same => None,
    }
}

/// The padding `[p₀, p₁]` of a convolution [`flowforge_kernels::conv2d`] takes: symmetric
/// explicit (or no) padding, dilation 1, one group.
fn symmetric_padding(conv: &Conv2d) -> Option<[usize; 2]> {
    explicit_padding(conv).filter(|p| p.iter().all(|(a, b)| a == b) && conv.dilation == [1, 1] && conv.groups == 1).map(|p| p.map(|(a, _)| a))
}

impl Jet<4> {
    /// A 2-D convolution: `(conv(x) + b, conv(ẋ))`. The tangent is the same convolution
    /// without the bias. Symmetric explicit or no padding with dilation 1 and one group (what
    /// flowforge's networks use) runs [`flowforge_kernels::conv2d`] (im2col + GEMM both ways on
    /// burn-flex); any other configuration runs burn's `Conv2d` (with the tangent as
    /// `conv(ẋ) + b − b` for padding rules other than explicit).
    ///
    /// # Panics
    /// When the input's channels are not the layer's or its spatial size is smaller than the
    /// kernel, as burn's `Conv2d::forward` does (the networks check their input first).
    pub fn through_conv(self, conv: &Conv2d) -> Self {
        let padding = explicit_padding(conv);
        if let Some(padding) = symmetric_padding(conv) {
            // An input the layer cannot take goes to burn's own op, which reports it as before.
            let run = |x: Tensor<4>, bias: Option<Tensor<1>>| {
                flowforge_kernels::conv2d(x.clone(), conv.weight.val(), bias.clone(), conv.stride, padding)
                    .unwrap_or_else(|_| flowforge_kernels::conv2d_reference(x, conv.weight.val(), bias, conv.stride, padding))
            };
            let bias = conv.bias.as_ref().map(|b| b.val());
            return self.affine(|x| run(x, bias), |t| run(t, None));
        }
        let bias = conv.bias.as_ref().map(|b| b.val().reshape([1, b.dims()[0], 1, 1]));
        self.affine(
            |x| conv.forward(x),
            |t| match (padding, bias) {
                (Some(padding), _) => {
                    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
                    burn::tensor::module::conv2d(t, conv.weight.val(), None, options)
                }
                (None, Some(b)) => conv.forward(t) - b,
                (None, None) => conv.forward(t),
            },
        )
    }

    /// Group normalisation (Wu & He, *Group Normalization*, ECCV 2018) with the layer's
    /// affine parameters, differentiated through the group statistics. Without a tangent it
    /// runs [`flowforge_kernels::group_norm`] (one fused pass on burn-flex).
    ///
    /// # Panics
    /// When the input's channels are not the layer's, as burn's `GroupNorm::forward` does.
    pub fn through_group_norm(self, norm: &GroupNorm) -> Self {
        self.group_norm_then(norm, FusedActivation::Identity)
    }

    /// `conv(SiLU(GN(x)))`: [`Jet::through_group_norm_silu`] then [`Jet::through_conv`]. With
    /// no tangent and a convolution [`flowforge_kernels::conv2d`] takes, one
    /// [`flowforge_kernels::group_norm_silu_conv2d`] (in inference on burn-flex the normalised
    /// activations are then never stored).
    ///
    /// # Panics
    /// As [`Jet::through_conv`].
    pub fn through_group_norm_silu_conv(self, norm: &GroupNorm, conv: &Conv2d) -> Self {
        if let (None, Some(padding)) = (&self.tangent, symmetric_padding(conv)) {
            let gamma = norm.gamma.as_ref().map(|g| g.val());
            let beta = norm.beta.as_ref().map(|b| b.val());
            let bias = conv.bias.as_ref().map(|b| b.val());
            // An input the ops cannot take goes through them one by one, which report it.
            if let Ok(y) = flowforge_kernels::group_norm_silu_conv2d(self.value.clone(), norm.num_groups, gamma, beta, norm.epsilon, conv.weight.val(), bias, conv.stride, padding) {
                return Self::plain(y);
            }
        }
        self.through_group_norm_silu(norm).through_conv(conv)
    }

    /// `SiLU(GN(x))`: [`Jet::through_group_norm`] then [`Jet::silu`], fused into one kernel when
    /// no tangent is propagated.
    pub fn through_group_norm_silu(self, norm: &GroupNorm) -> Self {
        self.group_norm_then(norm, FusedActivation::Silu)
    }

    fn group_norm_then(self, norm: &GroupNorm, activation: FusedActivation) -> Self {
        if self.tangent.is_none() {
            let gamma = norm.gamma.as_ref().map(|g| g.val());
            let beta = norm.beta.as_ref().map(|b| b.val());
            let x = self.value;
            let y = flowforge_kernels::group_norm(x.clone(), norm.num_groups, gamma.clone(), beta.clone(), norm.epsilon, activation)
                .unwrap_or_else(|_| flowforge_kernels::group_norm_reference(x, norm.num_groups, gamma, beta, norm.epsilon, activation));
            return Self::plain(y);
        }
        let out = self.group_norm_with_tangent(norm);
        match activation {
            FusedActivation::Identity => out,
            FusedActivation::Silu => out.silu(),
        }
    }

    fn group_norm_with_tangent(self, norm: &GroupNorm) -> Self {
        let [b, c, h, w] = self.dims();
        let groups = norm.num_groups;
        let grouped = self.reshape([b, groups, (c / groups) * h * w]).normalize_last(norm.epsilon);
        let mut out = grouped.reshape([b, c, h, w]);
        if let Some(gamma) = &norm.gamma {
            let gamma = gamma.val().reshape([1, c, 1, 1]);
            out = out.linear(|x| x * gamma.clone());
        }
        if let Some(beta) = &norm.beta {
            let beta = beta.val().reshape([1, c, 1, 1]);
            out = Self { value: out.value + beta, tangent: out.tangent };
        }
        out
    }

    /// Nearest-neighbour upsampling by 2 in both spatial dimensions: burn's nearest
    /// `interpolate`, one gather pass (two `repeat_dim` copies were 2% of U-Net sampling).
    pub fn upsample_nearest2(self) -> Self {
        let [_, _, h, w] = self.dims();
        let options = InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([2 * h, 2 * w]);
        self.linear(|x| interpolate(x, options.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// `(f(x + h ẋ) − f(x − h ẋ)) / 2h` against the propagated tangent.
    fn check<const D: usize, const E: usize>(f: impl Fn(Jet<D>) -> Jet<E>, x: Tensor<D>, dir: Tensor<D>, tolerance: f64) {
        let h = 2e-3;
        let exact = f(Jet::dual(x.clone(), dir.clone())).tangent.expect("tangent");
        let fd = (f(Jet::plain(x.clone() + dir.clone().mul_scalar(h))).value - f(Jet::plain(x - dir.mul_scalar(h))).value).div_scalar(2.0 * h);
        let error = (exact.clone() - fd).abs().max().into_scalar::<f64>();
        let scale = exact.abs().max().into_scalar::<f64>();
        assert!(error <= tolerance * (1.0 + scale), "tangent error {error} (scale {scale})");
    }

    #[test]
    fn attention_and_normalisation_tangents_match_central_differences() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let dir = Tensor::<3>::random([2, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        check(|j: Jet<3>| Jet::attention(j.clone(), j.clone().mul(j.clone()), j.silu()), x.clone().mul_scalar(0.5), dir.clone(), 5e-3);
        check(|j: Jet<3>| j.normalize_last(1e-5), x.clone(), dir.clone(), 2e-3);
        check(|j: Jet<3>| j.gelu(), x, dir, 2e-3);
    }

    #[test]
    fn upsampling_repeats_each_pixel() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]), &device);
        let up = Jet::plain(x).upsample_nearest2().value;
        let values: Vec<f32> = up.try_into_vec_as::<f32>().unwrap();
        assert_eq!(values, vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]);
        // The gradient sums each 2×2 block of the output's gradient back onto its pixel.
        let ad = device.autodiff();
        let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]), &ad).require_grad();
        let weights = Tensor::<4>::from_data(burn::tensor::TensorData::new((0..16).map(|i| i as f32).collect::<Vec<_>>(), [1, 1, 4, 4]), &ad);
        let grads = (Jet::plain(x.clone()).upsample_nearest2().value * weights).sum().backward();
        let grad: Vec<f32> = x.grad(&grads).expect("gradient").try_into_vec_as::<f32>().unwrap();
        assert_eq!(grad, vec![0.0 + 1.0 + 4.0 + 5.0, 2.0 + 3.0 + 6.0 + 7.0, 8.0 + 9.0 + 12.0 + 13.0, 10.0 + 11.0 + 14.0 + 15.0]);
    }
}
