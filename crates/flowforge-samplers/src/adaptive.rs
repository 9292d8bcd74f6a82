//! Adaptive integration: the Dormand–Prince 5(4) pair with a PID step-size controller.
//!
//! Dormand & Prince, *A family of embedded Runge–Kutta formulae*, J. Comput. Appl. Math. 1980;
//! controller after Söderlind, *Digital filters in adaptive time-stepping*, ACM TOMS 2003, with
//! diffrax's parametrisation (`pcoeff`, `icoeff`, `dcoeff`). The controller reads one error norm
//! per step from the device — the only synchronisation the algorithm needs.

use crate::field::VectorField;
use crate::sampler::{SaveAt, Solution, StepInfo};
use burn::tensor::Tensor;
use flowforge_core::error::check;
use flowforge_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Step-size control for [`Dopri5`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PidController {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Proportional coefficient (0 for a plain I controller).
    pub pcoeff: f64,
    /// Integral coefficient (1 for a plain I controller).
    pub icoeff: f64,
    /// Derivative coefficient.
    pub dcoeff: f64,
    /// Safety factor applied to every proposed step.
    pub safety: f64,
    /// Smallest factor by which a step may shrink.
    pub factor_min: f64,
    /// Largest factor by which a step may grow.
    pub factor_max: f64,
    /// Budget of attempted steps; exceeding it is [`Error::StepBudgetExceeded`].
    pub max_steps: usize,
    /// First step size; `None` picks one (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4).
    pub dt0: Option<f64>,
}

impl PidController {
    /// An I controller with tolerances `rtol`, `atol` and a budget of 10,000 steps.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for non-positive tolerances.
    pub fn new(rtol: f64, atol: f64) -> Result<Self> {
        check::positive("rtol", rtol)?;
        check::positive("atol", atol)?;
        Ok(Self {
            rtol,
            atol,
            pcoeff: 0.0,
            icoeff: 1.0,
            dcoeff: 0.0,
            safety: 0.9,
            factor_min: 0.2,
            factor_max: 10.0,
            max_steps: 10_000,
            dt0: None,
        })
    }

    /// PID coefficients (e.g. 0.3, 0.4, 0 as diffrax suggests for smooth problems).
    pub fn with_pid(mut self, pcoeff: f64, icoeff: f64, dcoeff: f64) -> Self {
        self.pcoeff = pcoeff;
        self.icoeff = icoeff;
        self.dcoeff = dcoeff;
        self
    }

    /// The step budget.
    pub fn with_max_steps(mut self, max_steps: usize) -> Self {
        self.max_steps = max_steps;
        self
    }

    /// The first step size.
    pub fn with_dt0(mut self, dt0: f64) -> Self {
        self.dt0 = Some(dt0);
        self
    }
}

/// The Dormand–Prince 5(4) embedded Runge–Kutta pair (torchdiffeq's and diffrax's `dopri5`),
/// with first-same-as-last reuse of the final stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dopri5 {
    /// The step-size controller.
    pub controller: PidController,
}

const C: [f64; 6] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
    &[9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0],
    &[35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0],
];
/// Fifth-order weights (= the last row of A: FSAL).
const B5: [f64; 7] = [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0, 0.0];
/// Embedded fourth-order weights.
const B4: [f64; 7] = [
    5179.0 / 57600.0,
    0.0,
    7571.0 / 16695.0,
    393.0 / 640.0,
    -92097.0 / 339200.0,
    187.0 / 2100.0,
    1.0 / 40.0,
];
/// Order of the local error estimate plus one: the exponent of the controller.
const ERROR_ORDER: f64 = 5.0;

/// The result of an adaptive solve.
#[derive(Debug, Clone)]
pub struct AdaptiveSolution<const D: usize> {
    /// Final state, saved states and evaluation count.
    pub solution: Solution<D>,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected step attempts.
    pub rejected: usize,
}

fn lincomb<const D: usize>(x: &Tensor<D>, h: f64, weights: &[f64], ks: &[Tensor<D>]) -> Tensor<D> {
    let mut out = x.clone();
    for (w, k) in weights.iter().zip(ks) {
        if *w != 0.0 {
            out = out + k.clone().mul_scalar(h * w);
        }
    }
    out
}

/// RMS of `v / (atol + rtol max(|y0|, |y1|))`, read back to the host.
fn scaled_rms<const D: usize>(v: Tensor<D>, y0: &Tensor<D>, y1: &Tensor<D>, c: &PidController) -> f64 {
    let scale = y0.clone().abs().max_pair(y1.clone().abs()).mul_scalar(c.rtol).add_scalar(c.atol);
    let ratio = v / scale;
    ratio.square().mean().sqrt().into_scalar::<f64>()
}

impl Dopri5 {
    /// A Dopri5 solver with the given controller.
    pub fn new(controller: PidController) -> Self {
        Self { controller }
    }

    fn initial_step<F: VectorField<D>, const D: usize>(
        &self,
        field: &F,
        y0: &Tensor<D>,
        f0: &Tensor<D>,
        t0: f64,
        direction: f64,
        span: f64,
    ) -> Result<f64> {
        if let Some(dt0) = self.controller.dt0 {
            return Ok(dt0.abs().min(span));
        }
        let c = &self.controller;
        let d0 = scaled_rms(y0.clone(), y0, y0, c);
        let d1 = scaled_rms(f0.clone(), y0, y0, c);
        let h0 = if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 };
        let y1 = y0.clone() + f0.clone().mul_scalar(direction * h0);
        let f1 = field.velocity(y1, t0 + direction * h0)?;
        let d2 = scaled_rms(f1 - f0.clone(), y0, y0, c) / h0;
        let h1 = if d1.max(d2) <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / d1.max(d2)).powf(1.0 / ERROR_ORDER)
        };
        Ok((100.0 * h0).min(h1).min(span))
    }

    /// Integrate `field` from `(x, t0)` to `t1` (either direction), recording `save_at`.
    ///
    /// # Errors
    /// [`Error::StepBudgetExceeded`] when the budget runs out (never a hang);
    /// [`Error::NonFinite`] if the error estimate is NaN (a diverging field); field errors.
    pub fn solve<F: VectorField<D>, const D: usize>(
        &self,
        field: &F,
        x: Tensor<D>,
        t0: f64,
        t1: f64,
        save_at: &SaveAt,
        mut observer: Option<&mut dyn FnMut(&StepInfo)>,
    ) -> Result<AdaptiveSolution<D>> {
        let c = &self.controller;
        let span = (t1 - t0).abs();
        let direction = if t1 >= t0 { 1.0 } else { -1.0 };
        let start_evaluations = field.evaluations();
        // Times the solver must land on exactly: the requested save times, then t1.
        let mut targets: Vec<f64> = match save_at {
            SaveAt::Times(times) => times
                .iter()
                .copied()
                .filter(|&s| (s - t0) * direction > 0.0 && (t1 - s) * direction >= 0.0)
                .collect(),
            _ => Vec::new(),
        };
        targets.push(t1);
        targets.sort_by(|a, b| ((a - t0) * direction).total_cmp(&((b - t0) * direction)));
        targets.dedup();
        let mut saved = Vec::new();
        let save_every = matches!(save_at, SaveAt::Steps);
        let save_start = save_every
            || matches!(save_at, SaveAt::Times(ts) if ts.iter().any(|&s| (s - t0).abs() <= 1e-12));
        if save_start {
            saved.push((t0, x.clone()));
        }
        if span == 0.0 {
            return Ok(AdaptiveSolution {
                solution: Solution { x, saved, evaluations: 0, steps: 0 },
                accepted: 0,
                rejected: 0,
            });
        }

        let mut y = x;
        let mut t = t0;
        let mut k1 = field.velocity(y.clone(), t)?;
        let mut h = self.initial_step(field, &y, &k1, t, direction, span)?;
        let (mut accepted, mut rejected) = (0usize, 0usize);
        let (mut err_prev, mut err_prev2) = (1.0_f64, 1.0_f64);
        let mut target = 0;
        while target < targets.len() {
            if accepted + rejected >= c.max_steps {
                return Err(Error::StepBudgetExceeded { max_steps: c.max_steps, t, t_end: t1 });
            }
            let to_target = (targets[target] - t).abs();
            let lands = h >= to_target;
            let step = if lands { to_target } else { h };
            let hs = direction * step;
            let mut ks = Vec::with_capacity(7);
            ks.push(k1.clone());
            for (i, row) in A.iter().enumerate() {
                let yi = lincomb(&y, hs, row, &ks);
                ks.push(field.velocity(yi, t + C[i] * hs)?);
            }
            // Stage 7 was evaluated at y_next (the last row of A is B5): FSAL.
            let y_next = lincomb(&y, hs, &B5[..6], &ks[..6]);
            let error_weights: Vec<f64> = B5.iter().zip(B4.iter()).map(|(a, b)| a - b).collect();
            let error = lincomb(&y.zeros_like(), hs, &error_weights, &ks);
            let err = scaled_rms(error, &y, &y_next, c);
            if !err.is_finite() {
                return Err(Error::NonFinite { what: format!("Dopri5 error estimate at t = {t}") });
            }
            let beta1 = (c.pcoeff + c.icoeff + c.dcoeff) / ERROR_ORDER;
            if err <= 1.0 {
                accepted += 1;
                t = if lands { targets[target] } else { t + hs };
                y = y_next;
                k1 = ks.pop().expect("seven stages");
                let beta2 = -(c.pcoeff + 2.0 * c.dcoeff) / ERROR_ORDER;
                let beta3 = c.dcoeff / ERROR_ORDER;
                let e = err.max(1e-10);
                let factor = c.safety * e.powf(-beta1) * err_prev.powf(-beta2) * err_prev2.powf(-beta3);
                err_prev2 = err_prev;
                err_prev = e;
                // A landing may have clipped this step; the proposal grows from the unclipped h.
                h *= factor.clamp(c.factor_min, c.factor_max);
                if lands {
                    target += 1;
                    if save_every || matches!(save_at, SaveAt::Times(_)) {
                        saved.push((t, y.clone()));
                    }
                } else if save_every {
                    saved.push((t, y.clone()));
                }
                if let Some(observer) = observer.as_mut() {
                    observer(&StepInfo {
                        step: accepted - 1,
                        steps: 0,
                        t_cur: t - hs,
                        t_next: t,
                        evaluations: field.evaluations() - start_evaluations,
                    });
                }
            } else {
                rejected += 1;
                let factor = c.safety * err.powf(-beta1);
                h = step * factor.clamp(c.factor_min, 1.0);
            }
        }
        // The final time is saved once, as the result, unless every step is recorded.
        if !save_every && !matches!(save_at, SaveAt::Times(ts) if ts.iter().any(|&s| (s - t1).abs() <= 1e-12)) {
            saved.retain(|(s, _)| (s - t1).abs() > 1e-12);
        }
        Ok(AdaptiveSolution {
            solution: Solution {
                x: y,
                saved,
                evaluations: field.evaluations() - start_evaluations,
                steps: accepted,
            },
            accepted,
            rejected,
        })
    }
}
