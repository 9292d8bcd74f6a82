//! Fixed-step ODE solvers — the "how" of a solve — and the noise-to-signal clock that turns them
//! into the diffusion samplers of DDIM and k-diffusion.

use crate::field::{PathModel, VectorField};
use crate::noise::NoiseSource;
use crate::sampler::{Sampler, StepIndex};
use burn::tensor::Tensor;
use flowforge_core::{EdmSigma, Model, Result, Time};
use flowforge_paths::Schedule;
use serde::{Deserialize, Serialize};

/// An explicit one-step ODE method for `dx/dt = v(x, t)`.
///
/// Every `OdeSolver` is a [`Sampler`] for every [`VectorField`], with no state and no noise.
pub trait OdeSolver {
    /// Order p of the global error, `O(h^p)`.
    fn order(&self) -> u32;

    /// Field evaluations per step.
    fn stages(&self) -> usize;

    /// One step from `(x, t0)` to `t1` (either direction).
    ///
    /// # Errors
    /// Whatever the field reports.
    fn step_ode<F: VectorField<D>, const D: usize>(&self, field: &F, x: Tensor<D>, t0: f64, t1: f64) -> Result<Tensor<D>>;
}

/// Forward Euler: `x + h v(x, t)`. Order 1, one evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Euler;

/// Explicit midpoint: `x + h v(x + h/2 v(x, t), t + h/2)`. Order 2, two evaluations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Midpoint;

/// Heun's method (explicit trapezoid; Karras et al. 2022's 2nd-order sampler). Order 2, two
/// evaluations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Heun;

/// The classic fourth-order Runge–Kutta method (weights 1/6, 1/3, 1/3, 1/6). Order 4, four
/// evaluations. (torchdiffeq's `rk4` is the 3/8 rule, a different method.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rk4;

fn axpy<const D: usize>(x: &Tensor<D>, h: f64, k: &Tensor<D>) -> Tensor<D> {
    x.clone() + k.clone().mul_scalar(h)
}

impl OdeSolver for Euler {
    fn order(&self) -> u32 {
        1
    }
    fn stages(&self) -> usize {
        1
    }
    fn step_ode<F: VectorField<D>, const D: usize>(&self, field: &F, x: Tensor<D>, t0: f64, t1: f64) -> Result<Tensor<D>> {
        let k1 = field.velocity(x.clone(), t0)?;
        Ok(axpy(&x, t1 - t0, &k1))
    }
}

impl OdeSolver for Midpoint {
    fn order(&self) -> u32 {
        2
    }
    fn stages(&self) -> usize {
        2
    }
    fn step_ode<F: VectorField<D>, const D: usize>(&self, field: &F, x: Tensor<D>, t0: f64, t1: f64) -> Result<Tensor<D>> {
        let h = t1 - t0;
        let k1 = field.velocity(x.clone(), t0)?;
        let k2 = field.velocity(axpy(&x, 0.5 * h, &k1), t0 + 0.5 * h)?;
        Ok(axpy(&x, h, &k2))
    }
}

impl OdeSolver for Heun {
    fn order(&self) -> u32 {
        2
    }
    fn stages(&self) -> usize {
        2
    }
    fn step_ode<F: VectorField<D>, const D: usize>(&self, field: &F, x: Tensor<D>, t0: f64, t1: f64) -> Result<Tensor<D>> {
        let h = t1 - t0;
        let k1 = field.velocity(x.clone(), t0)?;
        let k2 = field.velocity(axpy(&x, h, &k1), t1)?;
        Ok(axpy(&x, 0.5 * h, &(k1 + k2)))
    }
}

impl OdeSolver for Rk4 {
    fn order(&self) -> u32 {
        4
    }
    fn stages(&self) -> usize {
        4
    }
    fn step_ode<F: VectorField<D>, const D: usize>(&self, field: &F, x: Tensor<D>, t0: f64, t1: f64) -> Result<Tensor<D>> {
        let h = t1 - t0;
        let k1 = field.velocity(x.clone(), t0)?;
        let k2 = field.velocity(axpy(&x, 0.5 * h, &k1), t0 + 0.5 * h)?;
        let k3 = field.velocity(axpy(&x, 0.5 * h, &k2), t0 + 0.5 * h)?;
        let k4 = field.velocity(axpy(&x, h, &k3), t1)?;
        let sum = k1 + k2.mul_scalar(2.0) + k3.mul_scalar(2.0) + k4;
        Ok(axpy(&x, h / 6.0, &sum))
    }
}

impl<S: OdeSolver, F: VectorField<D>, const D: usize> Sampler<F, D> for S {
    type State = ();

    fn step<N: NoiseSource>(
        &self,
        field: &F,
        x: Tensor<D>,
        t_cur: f64,
        t_next: f64,
        _at: StepIndex,
        _state: &mut (),
        _noise: &mut N,
    ) -> Result<Tensor<D>> {
        self.step_ode(field, x, t_cur, t_next)
    }
}

/// Runs an ODE solver on the probability-flow ODE written in the noise-to-signal clock
/// `σ̃ = σ_t/α_t` for the rescaled state `y = x/α_t`, where it reads `dy/dσ̃ = ε̂(x, t)`
/// (Song et al., *DDIM*, 2021, eq. 14; Karras et al. 2022, eq. 4).
///
/// In this clock `NoiseToSignal(Euler)` *is* deterministic DDIM (η = 0) and, on the EDM
/// schedule, k-diffusion's `sample_euler`; `NoiseToSignal(Heun)` is k-diffusion's / EDM's
/// `sample_heun`. A step that ends at σ̃ = 0 (the clean end of VP-type schedules) is an Euler
/// step, as in k-diffusion, because ε̂ is undefined there; it returns the denoised x̂₁.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NoiseToSignal<S>(pub S);

/// The field `ε̂` over the clock σ̃, for the state `y = x/α`.
struct EpsilonInSigma<'p, 'a, M, S> {
    model: &'p PathModel<'a, M, S>,
    /// The exact times of the two grid points, so they are not re-derived by inversion.
    known: [(f64, f64); 2],
}

impl<M, S: Schedule> EpsilonInSigma<'_, '_, M, S> {
    fn time_of(&self, sigma: f64) -> Result<f64> {
        if let Some(&(_, t)) = self.known.iter().find(|(s, _)| *s == sigma) {
            return Ok(t);
        }
        let schedule = self.model.path().schedule();
        schedule.time_at_edm_sigma(EdmSigma::new(sigma)?).map(Time::value)
    }
}

impl<M: Model<D>, S: Schedule, const D: usize> VectorField<D> for EpsilonInSigma<'_, '_, M, S> {
    fn velocity(&self, y: Tensor<D>, sigma: f64) -> Result<Tensor<D>> {
        let t = self.time_of(sigma)?;
        let alpha = self.model.path().schedule().alpha(t);
        self.model.evaluate(y.mul_scalar(alpha), t)?.noise()
    }

    fn evaluations(&self) -> usize {
        self.model.evaluations()
    }
}

impl<'a, O, M, S, const D: usize> Sampler<PathModel<'a, M, S>, D> for NoiseToSignal<O>
where
    O: OdeSolver,
    M: Model<D>,
    S: Schedule,
{
    type State = ();

    fn step<N: NoiseSource>(
        &self,
        model: &PathModel<'a, M, S>,
        x: Tensor<D>,
        t_cur: f64,
        t_next: f64,
        _at: StepIndex,
        _state: &mut (),
        _noise: &mut N,
    ) -> Result<Tensor<D>> {
        let schedule = model.path().schedule();
        let (alpha_cur, alpha_next) = (schedule.alpha(t_cur), schedule.alpha(t_next));
        let sigma_cur = schedule.sigma(t_cur) / alpha_cur;
        let sigma_next = schedule.sigma(t_next) / alpha_next;
        if !sigma_cur.is_finite() || !sigma_next.is_finite() {
            return Err(flowforge_core::Error::SingularTime {
                what: "the noise-to-signal clock σ_t/α_t",
                t: if sigma_cur.is_finite() { t_next } else { t_cur },
                reason: "α_t = 0 there; start the grid after t = 0 or integrate in t",
            });
        }
        if sigma_next == 0.0 {
            // Euler to σ̃ = 0: y − σ̃ ε̂ = x̂₁.
            return Ok(model.evaluate(x, t_cur)?.data()?.mul_scalar(alpha_next));
        }
        let field = EpsilonInSigma {
            model,
            known: [(sigma_cur, t_cur), (sigma_next, t_next)],
        };
        let y = x.div_scalar(alpha_cur);
        let y_next = self.0.step_ode(&field, y, sigma_cur, sigma_next)?;
        Ok(y_next.mul_scalar(alpha_next))
    }
}
