//! EDM preconditioning as a model decorator (Karras et al., *Elucidating the Design Space of
//! Diffusion-Based Generative Models*, NeurIPS 2022, Table 1 and eq. 7).
//!
//! A raw network `F` is wrapped into the denoiser
//! `D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ))` with
//! `c_skip = σ_d²/(σ² + σ_d²)`, `c_out = σ σ_d/√(σ² + σ_d²)`, `c_in = 1/√(σ² + σ_d²)`,
//! `c_noise = ¼ ln σ`. On a general affine path the decorator works on `y = x/α_t` with
//! `σ = σ_t/α_t`, so the same trained network can be sampled by any flowforge sampler: it is
//! a [`Model`] predicting x̂₁.

use burn::tensor::{Tensor, TensorData};
use flowforge_core::error::check;
use flowforge_core::{Coefficient, Condition, Data, Error, Model, Network, Predicted, Result, Times};
use flowforge_paths::Schedule;

/// A network preconditioned à la EDM: a denoiser (x̂₁ model).
#[derive(Debug)]
pub struct EdmPreconditioned<'n, N, S> {
    net: &'n N,
    schedule: S,
    sigma_data: f64,
}

impl<'n, N, S: Schedule> EdmPreconditioned<'n, N, S> {
    /// Wrap `net` for the path of `schedule`, with data standard deviation `sigma_data`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `sigma_data > 0`.
    pub fn new(net: &'n N, schedule: S, sigma_data: f64) -> Result<Self> {
        check::positive("sigma_data", sigma_data)?;
        Ok(Self { net, schedule, sigma_data })
    }

    /// `(c_skip, c_out, c_in, c_noise)` at noise level σ.
    pub fn coefficients(&self, sigma: f64) -> (f64, f64, f64, f64) {
        let sd = self.sigma_data;
        let total = sigma * sigma + sd * sd;
        (sd * sd / total, sigma * sd / total.sqrt(), 1.0 / total.sqrt(), 0.25 * sigma.ln())
    }
}

impl<N: Network<D>, S: Schedule, const D: usize> Model<D> for EdmPreconditioned<'_, N, S> {
    type Prediction = Data;

    fn predict(&self, x_t: Tensor<D>, t: &Times, condition: &Condition) -> Result<Predicted<Data, D>> {
        flowforge_core::tensor::ensure_batch("x_t vs times", &x_t, t.len())?;
        let sigmas: Vec<f64> = t.to_vec().iter().map(|&t| self.schedule.sigma(t) / self.schedule.alpha(t)).collect();
        if let Some((i, &s)) = sigmas.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::SingularTime {
                what: "EDM preconditioning",
                t: t.get(i),
                reason: if s == 0.0 { "σ = 0 there, where c_noise = ¼ ln σ is −∞" } else { "α_t = 0 there" },
            });
        }
        let alpha = t.map(|t| 1.0 / self.schedule.alpha(t));
        let y = alpha.scale(x_t);
        let coefficient = |k: usize| Coefficient::PerSample(sigmas.iter().map(|&s| {
            let c = self.coefficients(s);
            [c.0, c.1, c.2, c.3][k]
        }).collect());
        let noise: Vec<f64> = sigmas.iter().map(|&s| self.coefficients(s).3).collect();
        let n = noise.len();
        let c_noise = Tensor::<2>::from_data(TensorData::new(noise, [n, 1]), &y.device());
        let f = self.net.forward_network(coefficient(2).scale(y.clone()), c_noise, condition)?;
        Ok(Predicted::new(coefficient(0).scale(y) + coefficient(1).scale(f)))
    }
}
