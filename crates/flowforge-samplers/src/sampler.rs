//! The sampler contract and the one driver that runs any sampler over any grid.

use crate::field::VectorField;
use crate::grid::TimeGrid;
use crate::noise::NoiseSource;
use burn::tensor::Tensor;
use flowforge_core::tensor::ensure_finite;
use flowforge_core::{Error, Result};

/// Where a step sits in its grid (some samplers change order or noise on the first or last
/// step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepIndex {
    /// 0-based index of this step.
    pub step: usize,
    /// Total number of steps of the grid.
    pub steps: usize,
}

impl StepIndex {
    /// True for the last step.
    pub fn is_last(&self) -> bool {
        self.step + 1 == self.steps
    }
}

/// One step of a sampler: `x_next = step(field, x, t_cur, t_next, …)`.
///
/// Everything that persists between steps — multistep history, for instance — lives in the
/// explicit `State`, created fresh by the driver for each run; the noise comes from an explicit
/// source. A sampler holds only its configuration, so one value can run any number of solves.
pub trait Sampler<F, const D: usize> {
    /// What the sampler carries from one step to the next (`()` for one-step methods).
    type State: Default;

    /// Advance `x` from `t_cur` to `t_next`.
    ///
    /// # Errors
    /// Whatever the field reports (shape, singular conversion, non-finite output) and
    /// sampler-specific conditions (e.g. no noise for a stochastic sampler).
    #[allow(clippy::too_many_arguments)]
    fn step<N: NoiseSource>(
        &self,
        field: &F,
        x: Tensor<D>,
        t_cur: f64,
        t_next: f64,
        at: StepIndex,
        state: &mut Self::State,
        noise: &mut N,
    ) -> Result<Tensor<D>>;
}

/// Which intermediate states a solve records.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SaveAt {
    /// Only the final state.
    #[default]
    Final,
    /// The initial state and the state after every step.
    Steps,
    /// The states at these grid times (each must be a point of the grid).
    Times(Vec<f64>),
}

/// What a step reports to an observer (progress bars, logging).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Step just completed (0-based).
    pub step: usize,
    /// Total steps.
    pub steps: usize,
    /// Time the step started from.
    pub t_cur: f64,
    /// Time the step reached.
    pub t_next: f64,
    /// Model evaluations so far.
    pub evaluations: usize,
}

/// Options of a solve: what to record, whether to check for NaN/∞, whom to tell.
#[derive(Default)]
pub struct SolveOptions<'o> {
    /// Which states to keep.
    pub save_at: SaveAt,
    /// Check the state for NaN/∞ after every step ([`Error::NonFiniteAt`] names the step);
    /// reads the state back to the host once per step.
    pub check_finite: bool,
    /// Called after every step.
    pub observer: Option<&'o mut dyn FnMut(&StepInfo)>,
}

impl<'o> SolveOptions<'o> {
    /// Record `save_at`.
    pub fn save_at(mut self, save_at: SaveAt) -> Self {
        self.save_at = save_at;
        self
    }

    /// Turn the per-step finite check on or off.
    pub fn check_finite(mut self, check: bool) -> Self {
        self.check_finite = check;
        self
    }

    /// Report every step to `observer`.
    pub fn observer(mut self, observer: &'o mut dyn FnMut(&StepInfo)) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// The result of a solve.
#[derive(Debug, Clone)]
pub struct Solution<const D: usize> {
    /// The final state.
    pub x: Tensor<D>,
    /// Recorded `(t, x_t)` pairs, in grid order.
    pub saved: Vec<(f64, Tensor<D>)>,
    /// Model (field) evaluations used by this solve.
    pub evaluations: usize,
    /// Steps taken.
    pub steps: usize,
}

/// Runs `sampler` on `field` from `x` over `grid`: the one driver of flowforge.
///
/// Works in both directions (an increasing grid samples, a decreasing grid encodes, for
/// samplers that allow it). Per-step coefficients are computed on the host from the f64 grid;
/// the only host synchronisation is the opt-in finite check.
///
/// # Errors
/// The first error of any step; [`Error::InvalidGrid`] if a `SaveAt::Times` entry is not on the
/// grid; [`Error::NonFiniteAt`] with the finite check on.
pub fn solve<F, P, N, const D: usize>(
    field: &F,
    sampler: &P,
    x: Tensor<D>,
    grid: &TimeGrid,
    noise: &mut N,
    mut options: SolveOptions<'_>,
) -> Result<Solution<D>>
where
    F: VectorField<D>,
    P: Sampler<F, D>,
    N: NoiseSource,
{
    let times = grid.times();
    let keep: Vec<bool> = match &options.save_at {
        SaveAt::Final => vec![false; times.len()],
        SaveAt::Steps => vec![true; times.len()],
        SaveAt::Times(wanted) => {
            let mut keep = vec![false; times.len()];
            for (i, &w) in wanted.iter().enumerate() {
                let pos = times.iter().position(|&t| (t - w).abs() <= 1e-12).ok_or(Error::InvalidGrid {
                    reason: "a save-at time is not a point of the grid",
                    index: i,
                    value: w,
                })?;
                keep[pos] = true;
            }
            keep
        }
    };
    let start_evaluations = field.evaluations();
    let mut saved = Vec::new();
    if keep[0] {
        saved.push((times[0], x.clone()));
    }
    let mut state = P::State::default();
    let mut x = x;
    let steps = grid.steps();
    for (step, (t_cur, t_next)) in grid.intervals().enumerate() {
        field.begin_step(step);
        x = sampler.step(field, x, t_cur, t_next, StepIndex { step, steps }, &mut state, noise)?;
        if options.check_finite {
            ensure_finite("state", &x).map_err(|_| Error::NonFiniteAt {
                what: "state",
                step,
                t: t_next,
            })?;
        }
        if keep[step + 1] {
            saved.push((t_next, x.clone()));
        }
        if let Some(observer) = options.observer.as_mut() {
            observer(&StepInfo {
                step,
                steps,
                t_cur,
                t_next,
                evaluations: field.evaluations() - start_evaluations,
            });
        }
    }
    Ok(Solution {
        x,
        saved,
        evaluations: field.evaluations() - start_evaluations,
        steps,
    })
}

/// Rectified-flow "reflow" couplings (Liu, Gong & Liu, *Flow Straight and Fast*, ICLR 2023,
/// §2.2): push source samples through a trained flow to pair each `x₀` with the `x₁` it
/// reaches. Retraining flow matching on these deterministic pairs straightens the paths, so
/// fewer steps suffice.
///
/// # Errors
/// As [`solve`]; [`Error::InvalidGrid`] unless the grid runs from noise to data.
pub fn reflow_pairs<F, P, const D: usize>(field: &F, sampler: &P, x0: Tensor<D>, grid: &TimeGrid) -> Result<(Tensor<D>, Tensor<D>)>
where
    F: VectorField<D>,
    P: Sampler<F, D>,
{
    if !grid.is_increasing() {
        return Err(Error::InvalidGrid { reason: "reflow pairs are generated from noise to data (an increasing grid)", index: 0, value: grid.start() });
    }
    let x1 = solve(field, sampler, x0.clone(), grid, &mut crate::noise::NoNoise, SolveOptions::default())?.x;
    Ok((x0, x1))
}
