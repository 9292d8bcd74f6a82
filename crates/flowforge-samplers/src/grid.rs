//! Time grids: the "when" of a solve, as plain validated data.
//!
//! A grid is a strictly monotone list of times in `[0, 1]`. Increasing grids sample (noise →
//! data), decreasing grids encode (data → noise). Samplers always step from one entry to the
//! next entry of the grid — never to a time recomputed from a step ratio, which is how
//! diffusers' DDIM goes wrong for `trailing` and `linspace` spacings.

use flowforge_core::error::check;
use flowforge_core::{DiscreteTimesteps, Error, Result, ReversedTime, Time};
use flowforge_paths::Schedule;
use serde::{Deserialize, Serialize};

/// A validated, strictly monotone grid of times in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f64>", into = "Vec<f64>")]
pub struct TimeGrid {
    times: Vec<f64>,
}

impl TryFrom<Vec<f64>> for TimeGrid {
    type Error = Error;
    fn try_from(times: Vec<f64>) -> Result<Self> {
        Self::new(times)
    }
}

impl From<TimeGrid> for Vec<f64> {
    fn from(grid: TimeGrid) -> Vec<f64> {
        grid.times
    }
}

/// How DDIM picks its subsequence of the T training levels (diffusers' `timestep_spacing`;
/// Lin et al. 2024, Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DdimSpacing {
    /// `k_i = i·⌊T/n⌋ + steps_offset`, i = 0..n (diffusers' default; never reaches level T−1).
    Leading {
        /// Added to every level (diffusers' `steps_offset`, 1 for Stable Diffusion).
        steps_offset: usize,
    },
    /// `k_i = round(T − i·T/n) − 1`: starts at the noisiest level T−1.
    Trailing,
    /// `k_i = round(linspace(0, T − 1, n))`.
    Linspace,
}

impl TimeGrid {
    /// A grid from explicit times.
    ///
    /// # Errors
    /// [`Error::InvalidGrid`] for fewer than two points, a point that is NaN or outside
    /// `[0, 1]`, or a grid that is not strictly increasing or strictly decreasing.
    pub fn new(times: Vec<f64>) -> Result<Self> {
        if times.len() < 2 {
            return Err(Error::InvalidGrid {
                reason: "a grid needs at least two times",
                index: times.len(),
                value: times.first().copied().unwrap_or(f64::NAN),
            });
        }
        if let Some((i, &t)) = times.iter().enumerate().find(|(_, t)| !(0.0..=1.0).contains(*t)) {
            return Err(Error::InvalidGrid {
                reason: "time outside [0, 1]",
                index: i,
                value: t,
            });
        }
        let increasing = times[1] > times[0];
        for i in 1..times.len() {
            let ok = if increasing { times[i] > times[i - 1] } else { times[i] < times[i - 1] };
            if !ok {
                return Err(Error::InvalidGrid {
                    reason: "times are not strictly monotone",
                    index: i,
                    value: times[i],
                });
            }
        }
        Ok(Self { times })
    }

    /// `steps` equal steps from `t0` to `t1`.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for zero steps; [`Error::InvalidGrid`] if `t0 == t1` or either is
    /// outside `[0, 1]`.
    pub fn uniform_between(t0: f64, t1: f64, steps: usize) -> Result<Self> {
        check::count_at_least_one("steps", steps)?;
        let times = (0..=steps)
            .map(|i| {
                if i == steps {
                    t1
                } else {
                    t0 + (t1 - t0) * i as f64 / steps as f64
                }
            })
            .collect();
        Self::new(times)
    }

    /// `steps` equal steps from noise (t = 0) to data (t = 1).
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for zero steps.
    pub fn uniform(steps: usize) -> Result<Self> {
        Self::uniform_between(0.0, 1.0, steps)
    }

    /// The Karras et al. (2022, eq. 5) ρ-spacing of the noise-to-signal ratio σ̃ = σ_t/α_t
    /// between the schedule's own endpoints σ̃(0) and σ̃(1): `steps + 1` points
    /// `σ̃_i = (σ̃_max^{1/ρ} + i/steps (σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ`, mapped to times.
    ///
    /// On the [`Edm`](flowforge_paths::Edm) schedule this is a uniform grid in t and equals
    /// k-diffusion's `get_sigmas_karras` (without its appended zero).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for ρ ≤ 0 or a schedule whose σ̃(0) is infinite (α₀ = 0,
    /// e.g. CondOT; use [`TimeGrid::karras_range`]); [`Error::InvalidCount`] for zero steps.
    pub fn karras<S: Schedule + ?Sized>(steps: usize, rho: f64, schedule: &S) -> Result<Self> {
        let sigma_max = schedule.edm_sigma(Time::SOURCE).value();
        let sigma_min = schedule.edm_sigma(Time::DATA).value();
        if !sigma_max.is_finite() {
            return Err(Error::invalid(
                "sigma_max",
                sigma_max,
                "finite: this schedule has α = 0 at t = 0, give an explicit range to karras_range",
            ));
        }
        Self::karras_range(steps, sigma_min, sigma_max, rho, schedule)
    }

    /// The Karras ρ-spacing between explicit noise-to-signal ratios `sigma_max > sigma_min ≥ 0`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] / [`Error::InconsistentParameters`] for a bad range or ρ;
    /// [`Error::OutOfScheduleRange`] if the schedule does not reach the range.
    pub fn karras_range<S: Schedule + ?Sized>(
        steps: usize,
        sigma_min: f64,
        sigma_max: f64,
        rho: f64,
        schedule: &S,
    ) -> Result<Self> {
        check::count_at_least_one("steps", steps)?;
        check::positive("rho", rho)?;
        check::non_negative("sigma_min", sigma_min)?;
        check::positive("sigma_max", sigma_max)?;
        check::ordered("sigma_min", sigma_min, "sigma_max", sigma_max)?;
        let (max_inv, min_inv) = (sigma_max.powf(1.0 / rho), sigma_min.powf(1.0 / rho));
        let times = (0..=steps)
            .map(|i| {
                let sigma = (max_inv + i as f64 / steps as f64 * (min_inv - max_inv)).powf(rho);
                schedule
                    .time_at_edm_sigma(flowforge_core::EdmSigma::new(sigma)?)
                    .map(Time::value)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(times)
    }

    /// The SD3 timestep shift (Esser et al., *Scaling Rectified Flow Transformers*, 2024,
    /// eq. 23): uniform steps in the reversed time `s = 1 − t`, warped by
    /// `s' = shift·s / (1 + (shift − 1) s)`, so shift > 1 spends more steps at high noise.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for shift ≤ 0; [`Error::InvalidCount`] for zero steps.
    pub fn shifted(steps: usize, shift: f64) -> Result<Self> {
        check::count_at_least_one("steps", steps)?;
        check::positive("shift", shift)?;
        let times = (0..=steps)
            .map(|i| {
                let s = 1.0 - i as f64 / steps as f64;
                let warped = (shift * s / (1.0 + (shift - 1.0) * s)).clamp(0.0, 1.0);
                Ok(Time::from(ReversedTime::new(warped)?).value())
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(times)
    }

    /// The DDIM subsequence of `num_inference_steps` levels of a `T`-level discrete schedule,
    /// as times (`t_k = 1 − (k+1)/T`), followed by the clean end t = 1 when `to_clean` (diffusers'
    /// `set_alpha_to_one = True`); otherwise the grid ends at its last level.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] if `num_inference_steps` is 0 or exceeds T; [`Error::InvalidGrid`]
    /// if the spacing produces repeated levels.
    pub fn ddim(
        spacing: DdimSpacing,
        num_inference_steps: usize,
        axis: DiscreteTimesteps,
        to_clean: bool,
    ) -> Result<Self> {
        let levels = ddim_levels(spacing, num_inference_steps, axis)?;
        let mut times = levels
            .iter()
            .map(|&k| axis.to_time(k).map(Time::value))
            .collect::<Result<Vec<_>>>()?;
        if to_clean {
            times.push(1.0);
        }
        Self::new(times)
    }

    /// The times.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// Number of steps (points − 1).
    pub fn steps(&self) -> usize {
        self.times.len() - 1
    }

    /// First time.
    pub fn start(&self) -> f64 {
        self.times[0]
    }

    /// Last time.
    pub fn end(&self) -> f64 {
        *self.times.last().expect("a grid has at least two points")
    }

    /// Whether the grid runs from noise towards data.
    pub fn is_increasing(&self) -> bool {
        self.times[1] > self.times[0]
    }

    /// The same grid traversed backwards (e.g. to encode data into noise).
    pub fn reversed(&self) -> Self {
        let mut times = self.times.clone();
        times.reverse();
        Self { times }
    }

    /// `(t_cur, t_next)` of every step, in order.
    pub fn intervals(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.times.windows(2).map(|w| (w[0], w[1]))
    }
}

/// The DDIM levels, noisiest first (diffusers' `DDIMScheduler.set_timesteps`).
///
/// # Errors
/// [`Error::InvalidCount`] if `n` is 0 or exceeds `T`; [`Error::TimestepOutOfRange`] if the
/// offset pushes a level past T − 1.
pub fn ddim_levels(spacing: DdimSpacing, n: usize, axis: DiscreteTimesteps) -> Result<Vec<usize>> {
    let big_t = axis.len();
    check::count_at_least_one("num_inference_steps", n)?;
    if n > big_t {
        return Err(Error::InvalidCount {
            name: "num_inference_steps",
            value: n as i64,
            requirement: "<= num_train_timesteps",
        });
    }
    let mut levels: Vec<usize> = match spacing {
        DdimSpacing::Leading { steps_offset } => {
            let ratio = big_t / n;
            (0..n).rev().map(|i| i * ratio + steps_offset).collect()
        }
        DdimSpacing::Trailing => {
            let ratio = big_t as f64 / n as f64;
            (0..n).map(|i| ((big_t as f64 - i as f64 * ratio).round() as usize).saturating_sub(1)).collect()
        }
        DdimSpacing::Linspace => {
            let last = (big_t - 1) as f64;
            (0..n)
                .rev()
                .map(|i| if n == 1 { 0 } else { (last * i as f64 / (n - 1) as f64).round() as usize })
                .collect()
        }
    };
    if let Some(&bad) = levels.iter().find(|&&k| k >= big_t) {
        return Err(Error::TimestepOutOfRange {
            timestep: bad,
            num_train_timesteps: big_t,
        });
    }
    levels.dedup();
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowforge_paths::EdmConfig;

    #[test]
    fn uniform_grid_has_exact_endpoints() {
        let g = TimeGrid::uniform(3).unwrap();
        assert_eq!(g.times(), &[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert_eq!(g.steps(), 3);
        assert!(g.is_increasing());
        assert!(!g.reversed().is_increasing());
    }

    #[test]
    fn invalid_grids_are_typed_errors() {
        assert!(matches!(TimeGrid::new(vec![0.0]), Err(Error::InvalidGrid { .. })));
        assert!(matches!(
            TimeGrid::new(vec![0.0, 0.5, 0.5, 1.0]),
            Err(Error::InvalidGrid { index: 2, .. })
        ));
        assert!(matches!(
            TimeGrid::new(vec![0.0, 0.6, 0.4]),
            Err(Error::InvalidGrid { index: 2, .. })
        ));
        assert!(matches!(
            TimeGrid::new(vec![0.0, 1.2]),
            Err(Error::InvalidGrid { reason: "time outside [0, 1]", .. })
        ));
        assert!(TimeGrid::new(vec![0.0, f64::NAN]).is_err());
        assert!(matches!(TimeGrid::uniform(0), Err(Error::InvalidCount { .. })));
        assert!(matches!(TimeGrid::shifted(10, 0.0), Err(Error::InvalidParameter { name: "shift", .. })));
    }

    #[test]
    fn karras_grid_on_edm_is_uniform_in_t() {
        let edm = EdmConfig::new().init().unwrap();
        let g = TimeGrid::karras(9, 7.0, &edm).unwrap();
        for (i, &t) in g.times().iter().enumerate() {
            assert!((t - i as f64 / 9.0).abs() < 1e-12, "{i}: {t}");
        }
    }

    #[test]
    fn shift_one_is_uniform_and_shift_three_favours_noise() {
        let plain = TimeGrid::shifted(4, 1.0).unwrap();
        for (a, b) in plain.times().iter().zip(TimeGrid::uniform(4).unwrap().times()) {
            assert!((a - b).abs() < 1e-15);
        }
        let shifted = TimeGrid::shifted(4, 3.0).unwrap();
        assert!(shifted.times()[1] < 0.25);
        assert_eq!(shifted.start(), 0.0);
        assert_eq!(shifted.end(), 1.0);
    }

    #[test]
    fn ddim_spacings_match_diffusers() {
        let axis = DiscreteTimesteps::new(1000).unwrap();
        let leading = ddim_levels(DdimSpacing::Leading { steps_offset: 0 }, 50, axis).unwrap();
        assert_eq!(&leading[..3], &[980, 960, 940]);
        assert_eq!(*leading.last().unwrap(), 0);
        let trailing = ddim_levels(DdimSpacing::Trailing, 50, axis).unwrap();
        assert_eq!(&trailing[..2], &[999, 979]);
        assert_eq!(*trailing.last().unwrap(), 19);
        let linspace = ddim_levels(DdimSpacing::Linspace, 50, axis).unwrap();
        assert_eq!(linspace[0], 999);
        assert_eq!(*linspace.last().unwrap(), 0);
        let grid = TimeGrid::ddim(DdimSpacing::Trailing, 50, axis, true).unwrap();
        assert_eq!(grid.steps(), 50);
        assert_eq!(grid.start(), 0.0);
        assert_eq!(grid.end(), 1.0);
    }
}
