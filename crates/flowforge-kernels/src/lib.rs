//! Fused kernels for the layers that dominate flowforge's small-network workloads.
//!
//! A plain burn linear layer with SiLU is four passes over the activations, each allocating a
//! new tensor: `x·W`, `+ b`, `σ(z)` (a scalar `expf` per element), `z·σ(z)`; its backward is
//! five more. On burn-flex that element-wise traffic costs as much as the matrix products
//! (profile in `docs/performance.md`). [`linear`] computes `act(x·W + b)` instead as
//!
//! - **forward**: one GEMM into a buffer pre-filled with the bias rows, then SiLU in place with
//!   a vectorised `exp` (AVX2/FMA when the CPU has it), the rows split across threads;
//! - **backward** (hand-written, burn's autodiff has no fusion on CPU): `∂z = ∂y ⊙ σ(z)(1 + z(1 −
//!   σ(z)))` in one pass, then `∂b = 1ᵀ∂z`, `∂W = xᵀ∂z`, `∂x = ∂z·Wᵀ` as three GEMMs reading the
//!   transposes in place through strides (no transpose copies).
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
    if let Some(b) = bias.as_ref().filter(|b| flex::applies(&x, &weight, b)) {
        return Ok(flex::linear(x, weight, b.clone(), activation));
    }
    Ok(linear_reference(x, weight, bias, activation))
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
            Err(Error::ShapeMismatch { what, .. }) => assert_eq!(what, "linear input vs weight rows"),
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
    /// size below and one above the threading thresholds, with a transposed (strided) input.
    #[test]
    fn fused_forward_and_backward_match_plain_burn() {
        let d = device().autodiff();
        for (batch, input, output) in [(7usize, 3usize, 5usize), (600, 64, 256)] {
            for act in [FusedActivation::Silu, FusedActivation::Identity] {
                d.seed(11);
                let x_t = Tensor::<2>::random([input, batch], Distribution::Normal(0.0, 3.0), &d);
                let w = Tensor::<2>::random([input, output], Distribution::Normal(0.0, 0.5), &d).require_grad();
                let b = Tensor::<1>::random([output], Distribution::Normal(0.0, 1.0), &d).require_grad();
                let x = x_t.clone().require_grad();
                let probe = Tensor::<2>::random([batch, output], Distribution::Normal(0.0, 1.0), &d);
                let fused = linear(x.clone().transpose(), w.clone(), Some(b.clone()), act).unwrap();
                let plain = linear_reference(x.clone().transpose(), w.clone(), Some(b.clone()), act);
                let scale = 1.0 + plain.clone().abs().max().into_scalar::<f64>();
                assert!(max_abs_diff(fused.clone(), plain.clone()) < 2e-6 * scale, "forward {batch}×{input}×{output} {act:?}");
                let g_fused = (fused * probe.clone()).sum().backward();
                let g_plain = (plain * probe).sum().backward();
                for (name, a, b2) in [
                    ("dx", x.grad(&g_fused).unwrap(), x.grad(&g_plain).unwrap()),
                    ("dw", w.grad(&g_fused).unwrap(), w.grad(&g_plain).unwrap()),
                ] {
                    let scale = 1.0 + b2.clone().abs().max().into_scalar::<f64>();
                    assert!(max_abs_diff(a, b2) < 1e-5 * scale, "{name} {batch}×{input}×{output} {act:?}");
                }
                let (db_f, db_p) = (b.grad(&g_fused).unwrap(), b.grad(&g_plain).unwrap());
                let scale = 1.0 + db_p.clone().abs().max().into_scalar::<f64>();
                assert!(max_abs_diff(db_f.unsqueeze_dim(0), db_p.unsqueeze_dim(0)) < 1e-5 * scale, "db {act:?}");
            }
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex_runs_the_fused_kernel() {
        assert!(fused_on(&device()));
        assert!(fused_on(&device().autodiff()));
    }
}
