//! Forward-mode differentiation by tangent propagation.
//!
//! burn has reverse-mode autodiff only: no JVP and no higher-order gradients. MeanFlow's target
//! needs the directional derivative of the network along `(ẋ, ȧ, ḃ)`, so flowforge carries a
//! tangent next to every value: a [`Dual`] is `(primal, tangent)` and each operation applies
//! its derivative to the tangent (the chain rule, one layer at a time). Networks built from
//! these operations get an *exact* JVP for the cost of about two extra forward passes; any other
//! model gets a central finite difference ([`jvp_finite_difference`]).
//!
//! Griewank & Walther, *Evaluating Derivatives*, 2008, ch. 3 (forward mode).

use burn::tensor::activation;
use burn::tensor::{Tensor, TensorData};

/// A value with its tangent: `(f, ḟ)` for a directional derivative along a fixed direction.
#[derive(Debug, Clone)]
pub struct Dual<const D: usize> {
    /// The value.
    pub primal: Tensor<D>,
    /// Its derivative along the direction of differentiation.
    pub tangent: Tensor<D>,
}

impl<const D: usize> Dual<D> {
    /// A value with the given tangent.
    pub fn new(primal: Tensor<D>, tangent: Tensor<D>) -> Self {
        Self { primal, tangent }
    }

    /// A constant: zero tangent.
    pub fn constant(primal: Tensor<D>) -> Self {
        let tangent = primal.zeros_like();
        Self { primal, tangent }
    }

    /// `f + g`.
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, other: Self) -> Self {
        Self::new(self.primal + other.primal, self.tangent + other.tangent)
    }

    /// `f − g`.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, other: Self) -> Self {
        Self::new(self.primal - other.primal, self.tangent - other.tangent)
    }

    /// `f · g` (element-wise, broadcasting): `(fg)˙ = ḟ g + f ġ`.
    #[allow(clippy::should_implement_trait)]
    pub fn mul(self, other: Self) -> Self {
        let tangent = self.tangent * other.primal.clone() + self.primal.clone() * other.tangent;
        Self::new(self.primal * other.primal, tangent)
    }

    /// `f · c` for a constant tensor `c`.
    pub fn mul_constant(self, c: Tensor<D>) -> Self {
        Self::new(self.primal * c.clone(), self.tangent * c)
    }

    /// `f + c` for a constant tensor `c`.
    pub fn add_constant(self, c: Tensor<D>) -> Self {
        Self::new(self.primal + c, self.tangent)
    }

    /// `a · f`.
    pub fn mul_scalar(self, a: f64) -> Self {
        Self::new(self.primal.mul_scalar(a), self.tangent.mul_scalar(a))
    }

    /// `f + a`.
    pub fn add_scalar(self, a: f64) -> Self {
        Self::new(self.primal.add_scalar(a), self.tangent)
    }

    /// `f W` for a constant matrix `W` (a linear layer's weight): `(fW)˙ = ḟ W`.
    pub fn matmul_constant(self, w: Tensor<D>) -> Self {
        Self::new(self.primal.matmul(w.clone()), self.tangent.matmul(w))
    }

    /// `tanh f`: derivative `1 − tanh²`.
    pub fn tanh(self) -> Self {
        let y = self.primal.tanh();
        let d = y.clone().square().neg().add_scalar(1.0);
        Self::new(y, self.tangent * d)
    }

    /// `sin f`: derivative `cos f`.
    pub fn sin(self) -> Self {
        let d = self.primal.clone().cos();
        Self::new(self.primal.sin(), self.tangent * d)
    }

    /// `cos f`: derivative `−sin f`.
    pub fn cos(self) -> Self {
        let d = self.primal.clone().sin().neg();
        Self::new(self.primal.cos(), self.tangent * d)
    }

    /// `exp f`.
    pub fn exp(self) -> Self {
        let y = self.primal.exp();
        Self::new(y.clone(), self.tangent * y)
    }

    /// `f²`.
    pub fn square(self) -> Self {
        let tangent = self.tangent * self.primal.clone().mul_scalar(2.0);
        Self::new(self.primal.square(), tangent)
    }

    /// `SiLU(f) = f σ(f)`: derivative `σ(f)(1 + f(1 − σ(f)))`.
    pub fn silu(self) -> Self {
        let s = activation::sigmoid(self.primal.clone());
        let d = s.clone() * (self.primal.clone() * s.clone().neg().add_scalar(1.0)).add_scalar(1.0);
        Self::new(self.primal * s, self.tangent * d)
    }

    /// `ReLU(f)`: derivative `1[f > 0]`.
    pub fn relu(self) -> Self {
        let mask = self.primal.clone().greater_elem(0.0).float();
        Self::new(activation::relu(self.primal), self.tangent * mask)
    }

    /// `GELU(f)` (exact, erf form): derivative `Φ(f) + f φ(f)`.
    pub fn gelu(self) -> Self {
        let x = self.primal.clone();
        let cdf = x.clone().div_scalar(core::f64::consts::SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5);
        let pdf = x.clone().square().mul_scalar(-0.5).exp().mul_scalar(1.0 / (2.0 * core::f64::consts::PI).sqrt());
        let d = cdf + x * pdf;
        Self::new(activation::gelu(self.primal), self.tangent * d)
    }

    /// Concatenate along `dim`.
    pub fn cat(parts: Vec<Self>, dim: usize) -> Self {
        let (primals, tangents): (Vec<_>, Vec<_>) = parts.into_iter().map(|d| (d.primal, d.tangent)).unzip();
        Self::new(Tensor::cat(primals, dim), Tensor::cat(tangents, dim))
    }

    /// Reshape both parts.
    pub fn reshape<const D2: usize>(self, shape: [usize; D2]) -> Dual<D2> {
        Dual::new(self.primal.reshape(shape), self.tangent.reshape(shape))
    }

    /// Stop the primal's gradient and the tangent's (for targets under stop-gradient).
    pub fn detach(self) -> Self {
        Self::new(self.primal.detach(), self.tangent.detach())
    }
}

/// A per-sample column `[batch, 1]` of host values, as a dual constant with the given tangent
/// values (e.g. times with tangent 1).
pub fn dual_column(values: &[f64], tangents: &[f64], device: &burn::tensor::Device) -> Dual<2> {
    let n = values.len();
    Dual::new(
        Tensor::from_data(TensorData::new(values.to_vec(), [n, 1]), device),
        Tensor::from_data(TensorData::new(tangents.to_vec(), [n, 1]), device),
    )
}

/// Finite-difference JVP of a function of `(x, a, b)` along `(ẋ, ȧ, ḃ)`, for models without
/// exact tangent propagation. Returns `(f(x, a, b), JVP)`.
///
/// Each sample uses the second-order central difference `[f(+h) − f(−h)]/2h` when both shifted
/// times stay in `[0, 1]`, and otherwise the second-order one-sided difference
/// `[−3f(0) + 4f(±h) − f(±2h)]/(±2h)` pointing into the interval. Error: `O(h²)` truncation plus
/// `O(ε/h)` round-off (f32: h ≈ 1e-3 gives ~1e-4 relative).
///
/// # Errors
/// Whatever `f` reports; [`crate::Error::InvalidParameter`] for `h` outside (0, 0.25).
#[allow(clippy::too_many_arguments)]
pub fn jvp_finite_difference<const D: usize, F>(
    f: F,
    x: Tensor<D>,
    x_dot: Tensor<D>,
    a: &[f64],
    a_dot: f64,
    b: &[f64],
    b_dot: f64,
    h: f64,
) -> crate::Result<(Tensor<D>, Tensor<D>)>
where
    F: Fn(Tensor<D>, &[f64], &[f64]) -> crate::Result<Tensor<D>>,
{
    if !(h > 0.0 && h < 0.25) {
        return Err(crate::Error::invalid("h", h, "in (0, 0.25)"));
    }
    let inside = |i: usize, offset: f64| {
        (0.0..=1.0).contains(&(a[i] + offset * a_dot)) && (0.0..=1.0).contains(&(b[i] + offset * b_dot))
    };
    // Per sample: (offsets, weights) of a three-point stencil.
    let stencils: Vec<([f64; 3], [f64; 3])> = (0..a.len())
        .map(|i| {
            if inside(i, -h) && inside(i, h) {
                ([-h, 0.0, h], [-0.5 / h, 0.0, 0.5 / h])
            } else if inside(i, 2.0 * h) {
                ([0.0, h, 2.0 * h], [-1.5 / h, 2.0 / h, -0.5 / h])
            } else {
                ([0.0, -h, -2.0 * h], [1.5 / h, -2.0 / h, 0.5 / h])
            }
        })
        .collect();
    let value = f(x.clone(), a, b)?;
    let mut jvp = value.zeros_like();
    for s in 0..3 {
        let weights: Vec<f64> = stencils.iter().map(|(_, w)| w[s]).collect();
        if weights.iter().all(|&w| w == 0.0) {
            continue;
        }
        let offsets: Vec<f64> = stencils.iter().map(|(o, _)| o[s]).collect();
        let shifted_x = x.clone() + crate::Coefficient::PerSample(offsets.clone()).scale(x_dot.clone());
        let shifted_a: Vec<f64> = a.iter().zip(&offsets).map(|(t, o)| (t + o * a_dot).clamp(0.0, 1.0)).collect();
        let shifted_b: Vec<f64> = b.iter().zip(&offsets).map(|(t, o)| (t + o * b_dot).clamp(0.0, 1.0)).collect();
        let value_s = f(shifted_x, &shifted_a, &shifted_b)?.detach();
        jvp = jvp + crate::Coefficient::PerSample(weights).scale(value_s);
    }
    Ok((value, jvp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{tensor_from_rows, tensor_to_vec};
    use burn::tensor::Device;

    /// Every elementary derivative against a central difference of its primal.
    #[test]
    fn elementary_tangents_match_finite_differences() {
        let device = Device::flex();
        let x = tensor_from_rows(&[vec![-1.3, -0.2, 0.4, 2.1]], &device);
        let dir = tensor_from_rows(&[vec![0.7, -1.1, 0.3, 0.5]], &device);
        type Op = fn(Dual<2>) -> Dual<2>;
        let ops: Vec<(&str, Op)> = vec![
            ("tanh", Dual::tanh),
            ("sin", Dual::sin),
            ("cos", Dual::cos),
            ("exp", Dual::exp),
            ("square", Dual::square),
            ("silu", Dual::silu),
            ("gelu", Dual::gelu),
            ("relu", Dual::relu),
        ];
        let h = 1e-3;
        for (name, op) in ops {
            let exact = tensor_to_vec(op(Dual::new(x.clone(), dir.clone())).tangent);
            let plus = op(Dual::constant(x.clone() + dir.clone().mul_scalar(h))).primal;
            let minus = op(Dual::constant(x.clone() - dir.clone().mul_scalar(h))).primal;
            let fd = tensor_to_vec((plus - minus).div_scalar(2.0 * h));
            for (e, f) in exact.iter().zip(&fd) {
                assert!((e - f).abs() < 2e-3 * (1.0 + e.abs()), "{name}: {e} vs {f}");
            }
        }
    }
}
