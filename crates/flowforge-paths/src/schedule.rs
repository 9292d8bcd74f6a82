//! The scheduler abstraction: α_t, σ_t and their time derivatives.
//!
//! An affine probability path (Lipman et al., *Flow Matching Guide and Code*, 2024, §4.8) is
//! `x_t = σ_t x₀ + α_t x₁` with `x₀` the source (noise) and `x₁` the data. Everything a path,
//! a loss or a sampler needs from it comes from the four scalar functions of [`Schedule`],
//! evaluated on the host in f64.

use flowforge_core::{EdmSigma, Error, Result, Time};
use core::fmt;

/// α_t, σ_t, α̇_t and σ̇_t at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleValues {
    /// Data coefficient α_t.
    pub alpha: f64,
    /// Source (noise) coefficient σ_t.
    pub sigma: f64,
    /// dα_t/dt.
    pub d_alpha: f64,
    /// dσ_t/dt.
    pub d_sigma: f64,
}

/// A scheduler: the coefficients of `x_t = σ_t x₀ + α_t x₁` as functions of `t ∈ [0, 1]`.
///
/// Implementations must make the signal-to-noise ratio `α_t / σ_t` non-decreasing in `t`
/// (noise at t = 0, data at t = 1); the default inverses rely on it. Methods take raw `f64`
/// times for speed and are only defined on `[0, 1]`; the path types validate times before
/// calling them.
///
/// A user-defined schedule is a type implementing the four required methods (or an
/// [`FnSchedule`](crate::FnSchedule) built from two closures) and composes with every path,
/// loss and sampler exactly like the built-ins.
pub trait Schedule: fmt::Debug + Send + Sync {
    /// α_t, the coefficient of the data x₁.
    fn alpha(&self, t: f64) -> f64;
    /// σ_t, the coefficient of the source x₀.
    fn sigma(&self, t: f64) -> f64;
    /// dα_t/dt.
    fn d_alpha(&self, t: f64) -> f64;
    /// dσ_t/dt.
    fn d_sigma(&self, t: f64) -> f64;

    /// `d(σ_t²)/dt = 2 σ_t σ̇_t`, the rate of change of the noise variance.
    ///
    /// Variance-preserving schedules override it with a form that stays finite at σ_t = 0,
    /// where σ̇_t itself is infinite (VP at t = 1); analytic velocities use it.
    fn d_sigma2(&self, t: f64) -> f64 {
        2.0 * self.sigma(t) * self.d_sigma(t)
    }

    /// All four values at `t`.
    fn values(&self, t: f64) -> ScheduleValues {
        ScheduleValues {
            alpha: self.alpha(t),
            sigma: self.sigma(t),
            d_alpha: self.d_alpha(t),
            d_sigma: self.d_sigma(t),
        }
    }

    /// Signal-to-noise ratio `α_t / σ_t` (+∞ where σ_t = 0).
    fn snr(&self, t: f64) -> f64 {
        self.alpha(t) / self.sigma(t)
    }

    /// Log signal-to-noise ratio `λ_t = log(α_t / σ_t)` (Kingma et al., *Variational Diffusion
    /// Models*, 2021), ±∞ where a coefficient vanishes.
    fn log_snr(&self, t: f64) -> f64 {
        self.alpha(t).ln() - self.sigma(t).ln()
    }

    /// The time `t` at which `α_t / σ_t = snr`.
    ///
    /// The default inverts numerically by bisection (to machine precision), relying on the SNR
    /// being non-decreasing; built-in schedules override it with their closed forms.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a NaN or negative `snr`;
    /// [`Error::OutOfScheduleRange`] if the schedule never attains `snr` on `[0, 1]`.
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        check_snr(snr)?;
        let (lo, hi) = (self.snr(0.0), self.snr(1.0));
        if !(lo <= snr && snr <= hi) {
            return Err(Error::OutOfScheduleRange {
                what: "snr",
                value: snr,
                min: lo,
                max: hi,
            });
        }
        let (mut a, mut b) = (0.0_f64, 1.0_f64);
        for _ in 0..200 {
            let mid = 0.5 * (a + b);
            if mid <= a || mid >= b {
                break;
            }
            if self.snr(mid) < snr {
                a = mid;
            } else {
                b = mid;
            }
        }
        Ok(0.5 * (a + b))
    }

    /// The EDM noise level of time `t`: `σ = σ_t / α_t` (+∞ where α_t = 0), i.e. the path
    /// rescaled by `1/α_t` is `x₁ + σ x₀` (Karras et al. 2022, eq. 1).
    fn edm_sigma(&self, t: Time) -> EdmSigma {
        let t = t.value();
        let sigma = self.sigma(t) / self.alpha(t);
        EdmSigma::new(sigma).expect("σ_t / α_t of a valid schedule is non-negative")
    }

    /// The time whose EDM noise level is `sigma`: the inverse of [`Schedule::edm_sigma`],
    /// through `snr = 1/σ`.
    ///
    /// # Errors
    /// [`Error::OutOfScheduleRange`] if the schedule never reaches `sigma` on `[0, 1]`.
    fn time_at_edm_sigma(&self, sigma: EdmSigma) -> Result<Time> {
        let snr = 1.0 / sigma.value();
        match self.snr_inverse(snr) {
            Ok(t) => Time::new(t),
            Err(Error::OutOfScheduleRange { min, max, .. }) => Err(Error::OutOfScheduleRange {
                what: "edm sigma",
                value: sigma.value(),
                min: 1.0 / max,
                max: 1.0 / min,
            }),
            Err(e) => Err(e),
        }
    }
}

/// A convex scheduler (Lipman et al. 2024, §4.8.2): `α_t = κ_t`, `σ_t = 1 − κ_t` (up to σ_min).
pub trait ConvexSchedule: Schedule {
    /// κ_t.
    fn kappa(&self, t: f64) -> f64 {
        self.alpha(t)
    }

    /// The time at which `κ_t = kappa`.
    ///
    /// # Errors
    /// [`Error::OutOfScheduleRange`] for `kappa` outside `[0, 1]`.
    fn kappa_inverse(&self, kappa: f64) -> Result<f64>;
}

pub(crate) fn check_snr(snr: f64) -> Result<()> {
    if snr >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid("snr", snr, ">= 0"))
    }
}

/// Checks that a closed-form inverse landed in `[0, 1]`; otherwise the value was out of range.
pub(crate) fn inverse_in_range(
    what: &'static str,
    value: f64,
    t: f64,
    range: (f64, f64),
) -> Result<f64> {
    // Round-off can push an endpoint a few ulps outside [0, 1].
    let tolerance = 1e-12;
    if t.is_finite() && (-tolerance..=1.0 + tolerance).contains(&t) {
        Ok(t.clamp(0.0, 1.0))
    } else {
        Err(Error::OutOfScheduleRange {
            what,
            value,
            min: range.0,
            max: range.1,
        })
    }
}

macro_rules! forward_schedule {
    ($($ty:ty),*) => {$(
        impl<S: Schedule + ?Sized> Schedule for $ty {
            fn alpha(&self, t: f64) -> f64 { (**self).alpha(t) }
            fn sigma(&self, t: f64) -> f64 { (**self).sigma(t) }
            fn d_alpha(&self, t: f64) -> f64 { (**self).d_alpha(t) }
            fn d_sigma(&self, t: f64) -> f64 { (**self).d_sigma(t) }
            fn values(&self, t: f64) -> ScheduleValues { (**self).values(t) }
            fn d_sigma2(&self, t: f64) -> f64 { (**self).d_sigma2(t) }
            fn snr(&self, t: f64) -> f64 { (**self).snr(t) }
            fn log_snr(&self, t: f64) -> f64 { (**self).log_snr(t) }
            fn snr_inverse(&self, snr: f64) -> Result<f64> { (**self).snr_inverse(snr) }
            fn edm_sigma(&self, t: Time) -> EdmSigma { (**self).edm_sigma(t) }
            fn time_at_edm_sigma(&self, sigma: EdmSigma) -> Result<Time> { (**self).time_at_edm_sigma(sigma) }
        }
    )*};
}

forward_schedule!(&S, Box<S>, std::sync::Arc<S>);
