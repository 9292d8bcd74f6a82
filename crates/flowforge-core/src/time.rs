//! Time conventions and the typed conversions between them.
//!
//! flowforge uses one convention everywhere: continuous time `t ∈ [0, 1]` with **t = 0 the
//! source (noise) and t = 1 the data**, as in facebookresearch/flow_matching (Lipman et al.,
//! *Flow Matching Guide and Code*, 2024) and torchcfm (Tong et al., 2024).
//!
//! Other conventions enter only through the types of this module:
//!
//! | convention | type | relation to `t` |
//! |---|---|---|
//! | t = 1 is noise (MeanFlow, Geng et al. 2025; diffusers' flow-match scheduler "sigmas") | [`ReversedTime`] | `s = 1 − t` |
//! | DDPM integer timesteps `k ∈ {0, …, T−1}`, 0 the cleanest (Ho et al. 2020; diffusers) | [`DiscreteTimesteps`] | `t_k = 1 − (k + 1)/T` |
//! | EDM noise level σ (Karras et al. 2022; k-diffusion) | [`EdmSigma`] | `σ = σ_t / α_t` of the path (see `flowforge-paths`) |
//!
//! The DDPM map places the discrete level `k` at `t_k = 1 − (k+1)/T`, which is the flowforge
//! reading of Song et al. (2021)'s correspondence `t_song = (k+1)/T` between DDPM and the VP SDE:
//! `k = T−1` (the noisiest level) sits at `t = 0` and the clean data, "level −1", at `t = 1`.

use crate::error::{Error, Result};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// A validated continuous time in flowforge's convention (t = 0 noise, t = 1 data).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Time(f64);

impl Time {
    /// The source (noise) end, t = 0.
    pub const SOURCE: Time = Time(0.0);
    /// The data end, t = 1.
    pub const DATA: Time = Time(1.0);

    /// A time in `[0, 1]`.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] if `t` is NaN or outside `[0, 1]`.
    pub fn new(t: f64) -> Result<Self> {
        if (0.0..=1.0).contains(&t) {
            Ok(Self(t))
        } else {
            Err(Error::TimeOutOfRange { t })
        }
    }

    /// The time as a float.
    pub fn value(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Time {
    type Error = Error;
    fn try_from(t: f64) -> Result<Self> {
        Self::new(t)
    }
}

impl From<Time> for f64 {
    fn from(t: Time) -> f64 {
        t.0
    }
}

/// A time in the reversed convention, `s ∈ [0, 1]` with **s = 1 the noise** and s = 0 the data.
///
/// This is the convention of the MeanFlow paper (Geng et al., *Mean Flows for One-step Generative
/// Modeling*, 2025), of rectified-flow codebases that write `z_t = (1 − t) x + t ε`, and of the
/// `sigmas` of diffusers' `FlowMatchEulerDiscreteScheduler`. It relates to flowforge's time by
/// `s = 1 − t`; that subtraction is written once, here.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct ReversedTime(f64);

impl ReversedTime {
    /// A reversed time in `[0, 1]`.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] if `s` is NaN or outside `[0, 1]`.
    pub fn new(s: f64) -> Result<Self> {
        if (0.0..=1.0).contains(&s) {
            Ok(Self(s))
        } else {
            Err(Error::TimeOutOfRange { t: s })
        }
    }

    /// The reversed time as a float.
    pub fn value(self) -> f64 {
        self.0
    }
}

impl From<Time> for ReversedTime {
    fn from(t: Time) -> Self {
        ReversedTime(1.0 - t.0)
    }
}

impl From<ReversedTime> for Time {
    fn from(s: ReversedTime) -> Self {
        Time(1.0 - s.0)
    }
}

impl TryFrom<f64> for ReversedTime {
    type Error = Error;
    fn try_from(s: f64) -> Result<Self> {
        Self::new(s)
    }
}

impl From<ReversedTime> for f64 {
    fn from(s: ReversedTime) -> f64 {
        s.0
    }
}

/// The discrete DDPM time axis: `T` levels `k ∈ {0, …, T−1}`, 0 the least noisy (Ho et al. 2020).
///
/// Level `k` sits at continuous time `t_k = 1 − (k+1)/T`; the clean data (`ᾱ = 1`) sits at
/// `t = 1`, one grid spacing after level 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscreteTimesteps {
    num_train_timesteps: usize,
}

impl DiscreteTimesteps {
    /// A discrete axis with `num_train_timesteps` levels.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] if `num_train_timesteps == 0`.
    pub fn new(num_train_timesteps: usize) -> Result<Self> {
        crate::error::check::count_at_least_one("num_train_timesteps", num_train_timesteps)?;
        Ok(Self {
            num_train_timesteps,
        })
    }

    /// Number of levels `T`.
    pub fn len(&self) -> usize {
        self.num_train_timesteps
    }

    /// Always false: an axis has at least one level.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The continuous time of level `k`: `t_k = 1 − (k + 1)/T`.
    ///
    /// # Errors
    /// [`Error::TimestepOutOfRange`] if `k ≥ T`.
    pub fn to_time(&self, k: usize) -> Result<Time> {
        if k >= self.num_train_timesteps {
            return Err(Error::TimestepOutOfRange {
                timestep: k,
                num_train_timesteps: self.num_train_timesteps,
            });
        }
        Ok(Time(self.time_unchecked(k)))
    }

    /// `1 − (k + 1)/T` without the range check (for tables built by this crate).
    pub fn time_unchecked(&self, k: usize) -> f64 {
        1.0 - (k as f64 + 1.0) / self.num_train_timesteps as f64
    }

    /// The position of `t` on the axis as a real number: `T(1 − t) − 1` (−1 is the clean data).
    pub fn position(&self, t: Time) -> f64 {
        self.num_train_timesteps as f64 * (1.0 - t.0) - 1.0
    }

    /// The level whose time is exactly `t` (to 1e-9 grid spacings).
    ///
    /// # Errors
    /// [`Error::TimeNotOnGrid`] if `t` lies between levels, or is the clean end `t = 1`.
    pub fn from_time(&self, t: Time) -> Result<usize> {
        let position = self.position(t);
        let nearest = self.nearest(t);
        if (position - nearest as f64).abs() <= 1e-9 {
            Ok(nearest)
        } else {
            Err(Error::TimeNotOnGrid {
                t: t.0,
                num_train_timesteps: self.num_train_timesteps,
                nearest: self.time_unchecked(nearest),
            })
        }
    }

    /// The level nearest to `t` (clamped to `0..T`).
    pub fn nearest(&self, t: Time) -> usize {
        let position = self.position(t).round();
        position.clamp(0.0, (self.num_train_timesteps - 1) as f64) as usize
    }
}

/// An EDM noise level σ ≥ 0 (Karras et al., *Elucidating the Design Space of Diffusion-Based
/// Generative Models*, 2022): `x = x_data + σ n`.
///
/// Any affine path `x_t = σ_t x₀ + α_t x₁` is, after dividing by `α_t`, an EDM process with
/// `σ = σ_t / α_t`; the conversion to and from [`Time`] therefore belongs to the path's
/// schedule (`Schedule::edm_sigma` and `Schedule::time_at_edm_sigma` in `flowforge-paths`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct EdmSigma(f64);

impl EdmSigma {
    /// A noise level; `f64::INFINITY` is allowed (pure noise, where α_t = 0).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `sigma` is NaN or negative.
    pub fn new(sigma: f64) -> Result<Self> {
        if sigma >= 0.0 {
            Ok(Self(sigma))
        } else {
            Err(Error::invalid("sigma", sigma, ">= 0 (infinity allowed)"))
        }
    }

    /// The noise level as a float.
    pub fn value(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for EdmSigma {
    type Error = Error;
    fn try_from(s: f64) -> Result<Self> {
        Self::new(s)
    }
}

impl From<EdmSigma> for f64 {
    fn from(s: EdmSigma) -> f64 {
        s.0
    }
}

/// The times of a batch: one time shared by every sample (sampling) or one time per sample
/// (training). Values live on the host in f64 so that schedule coefficients are computed exactly
/// and sent to the device as scalars or one small column, never read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Times {
    repr: TimesRepr,
}

#[derive(Debug, Clone, PartialEq)]
enum TimesRepr {
    Shared { t: f64, batch: usize },
    PerSample(Vec<f64>),
}

impl Times {
    /// One time `t` for a batch of `batch` samples.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] if `t` is NaN or outside `[0, 1]`.
    pub fn shared(t: f64, batch: usize) -> Result<Self> {
        Time::new(t)?;
        Ok(Self {
            repr: TimesRepr::Shared { t, batch },
        })
    }

    /// One time per sample.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] naming the first value that is NaN or outside `[0, 1]`.
    pub fn per_sample(values: Vec<f64>) -> Result<Self> {
        if let Some(&t) = values.iter().find(|t| !(0.0..=1.0).contains(*t)) {
            return Err(Error::TimeOutOfRange { t });
        }
        Ok(Self {
            repr: TimesRepr::PerSample(values),
        })
    }

    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        match &self.repr {
            TimesRepr::Shared { batch, .. } => *batch,
            TimesRepr::PerSample(v) => v.len(),
        }
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shared time, if every sample has the same one by construction.
    pub fn as_shared(&self) -> Option<f64> {
        match &self.repr {
            TimesRepr::Shared { t, .. } => Some(*t),
            TimesRepr::PerSample(_) => None,
        }
    }

    /// The time of sample `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get(&self, i: usize) -> f64 {
        match &self.repr {
            TimesRepr::Shared { t, batch } => {
                assert!(i < *batch, "sample index {i} out of range for batch {batch}");
                *t
            }
            TimesRepr::PerSample(v) => v[i],
        }
    }

    /// Every sample's time (materialised for a shared time).
    pub fn to_vec(&self) -> Vec<f64> {
        match &self.repr {
            TimesRepr::Shared { t, batch } => vec![*t; *batch],
            TimesRepr::PerSample(v) => v.clone(),
        }
    }

    /// Apply a host function to every distinct time: a shared time stays shared.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Coefficient {
        match &self.repr {
            TimesRepr::Shared { t, .. } => Coefficient::Shared(f(*t)),
            TimesRepr::PerSample(v) => Coefficient::PerSample(v.iter().map(|&t| f(t)).collect()),
        }
    }

    /// The times as a `[batch, 1]` column on `device` (what a network's time input consumes).
    pub fn to_column(&self, device: &Device) -> Tensor<2> {
        let values = self.to_vec();
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [n, 1]), device)
    }

    /// The times as a `[batch]` tensor on `device` (what a network's time embedding consumes).
    pub fn to_tensor(&self, device: &Device) -> Tensor<1> {
        // f64 host data is cast to the device's float dtype on creation (f32 by default).
        let values = self.to_vec();
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [n]), device)
    }
}

/// A per-sample scalar coefficient computed on the host (a schedule value such as α_t), applied
/// to a batch tensor by broadcasting over every dimension but the first.
#[derive(Debug, Clone, PartialEq)]
pub enum Coefficient {
    /// The same value for every sample: applied as a scalar multiply.
    Shared(f64),
    /// One value per sample: uploaded as a `[batch, 1, …, 1]` column.
    PerSample(Vec<f64>),
}

impl Coefficient {
    /// Apply a function to every value.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Coefficient {
        match self {
            Coefficient::Shared(a) => Coefficient::Shared(f(*a)),
            Coefficient::PerSample(v) => Coefficient::PerSample(v.iter().map(|&a| f(a)).collect()),
        }
    }

    /// The values (one for a shared coefficient).
    pub fn values(&self) -> &[f64] {
        match self {
            Coefficient::Shared(a) => core::slice::from_ref(a),
            Coefficient::PerSample(v) => v,
        }
    }

    /// Index of the first non-finite value, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        self.values().iter().position(|v| !v.is_finite())
    }

    /// `self · x`, broadcasting over all dimensions but the batch dimension.
    pub fn scale<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Coefficient::Shared(a) => x.mul_scalar(*a),
            Coefficient::PerSample(v) => {
                let column = self.column::<D>(v, &x.device());
                x * column
            }
        }
    }

    /// `self · x + other · y`, the affine combination every path, conversion and solver step is
    /// made of.
    pub fn combine<const D: usize>(
        &self,
        x: Tensor<D>,
        other: &Coefficient,
        y: Tensor<D>,
    ) -> Tensor<D> {
        self.scale(x) + other.scale(y)
    }

    /// The values as a `[batch, 1, …, 1]` tensor of rank `D`.
    fn column<const D: usize>(&self, values: &[f64], device: &Device) -> Tensor<D> {
        let mut shape = [1usize; D];
        shape[0] = values.len();
        Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_rejects_out_of_range_and_nan() {
        assert!(Time::new(0.0).is_ok());
        assert!(Time::new(1.0).is_ok());
        assert_eq!(Time::new(1.5), Err(Error::TimeOutOfRange { t: 1.5 }));
        assert!(matches!(Time::new(-1e-9), Err(Error::TimeOutOfRange { .. })));
        assert!(matches!(Time::new(f64::NAN), Err(Error::TimeOutOfRange { .. })));
    }

    #[test]
    fn reversed_time_round_trips() {
        let t = Time::new(0.3).unwrap();
        let s = ReversedTime::from(t);
        assert!((s.value() - 0.7).abs() < 1e-15);
        assert_eq!(Time::from(s).value(), 1.0 - (1.0 - 0.3));
        assert_eq!(ReversedTime::from(Time::SOURCE).value(), 1.0);
        assert_eq!(Time::from(ReversedTime::new(0.0).unwrap()), Time::DATA);
    }

    #[test]
    fn discrete_timesteps_map_levels_to_times_and_back() {
        let axis = DiscreteTimesteps::new(1000).unwrap();
        assert_eq!(axis.to_time(999).unwrap().value(), 0.0);
        assert!((axis.to_time(0).unwrap().value() - 0.999).abs() < 1e-15);
        for k in [0, 1, 250, 500, 998, 999] {
            let t = axis.to_time(k).unwrap();
            assert_eq!(axis.from_time(t).unwrap(), k);
        }
        assert!(matches!(
            axis.from_time(Time::new(0.9995).unwrap()),
            Err(Error::TimeNotOnGrid { .. })
        ));
        assert!(matches!(
            axis.to_time(1000),
            Err(Error::TimestepOutOfRange { timestep: 1000, .. })
        ));
        assert_eq!(axis.nearest(Time::DATA), 0);
        assert_eq!(axis.nearest(Time::SOURCE), 999);
    }

    #[test]
    fn zero_timesteps_is_a_typed_error() {
        assert!(matches!(
            DiscreteTimesteps::new(0),
            Err(Error::InvalidCount {
                name: "num_train_timesteps",
                value: 0,
                ..
            })
        ));
    }

    #[test]
    fn times_validate_every_value() {
        assert!(Times::per_sample(vec![0.0, 0.5, 1.0]).is_ok());
        assert_eq!(
            Times::per_sample(vec![0.0, 1.2, -3.0]),
            Err(Error::TimeOutOfRange { t: 1.2 })
        );
        assert!(matches!(
            Times::shared(f64::NAN, 4),
            Err(Error::TimeOutOfRange { .. })
        ));
    }

    #[test]
    fn edm_sigma_rejects_negative_and_nan() {
        assert!(EdmSigma::new(0.0).is_ok());
        assert!(EdmSigma::new(f64::INFINITY).is_ok());
        assert!(matches!(
            EdmSigma::new(-0.1),
            Err(Error::InvalidParameter { name: "sigma", .. })
        ));
        assert!(EdmSigma::new(f64::NAN).is_err());
    }
}
