//! Serialisable descriptions of schedules and paths, so a whole run can be written to JSON,
//! read back and reproduced.
//!
//! ```
//! use flowforge_paths::{ScheduleConfig, VpConfig, Schedule};
//! let config = ScheduleConfig::Vp(VpConfig::new().with_beta_max(10.0));
//! let json = serde_json::to_string(&config).unwrap();
//! let back: ScheduleConfig = serde_json::from_str(&json).unwrap();
//! assert_eq!(back, config);
//! let schedule = back.init().unwrap();
//! assert!(schedule.alpha(1.0) == 1.0);
//! ```

use crate::affine::{AffinePath, ConditionalPath, PathSample};
use crate::discrete::{DiscreteSchedule, DiscreteScheduleConfig};
use crate::interpolant::{NoiseScale, StochasticInterpolant};
use crate::schedule::Schedule;
use crate::schedules::*;
use burn::tensor::Tensor;
use flowforge_core::{EdmSigma, Result, Time, Times};
use serde::{Deserialize, Serialize};

/// Any built-in schedule, by its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "schedule")]
pub enum ScheduleConfig {
    /// [`CondOt`].
    CondOt(CondOtConfig),
    /// [`Cosine`].
    Cosine(CosineConfig),
    /// [`Vp`].
    Vp(VpConfig),
    /// [`LinearVp`].
    LinearVp(LinearVpConfig),
    /// [`SubVp`].
    SubVp(SubVpConfig),
    /// [`Ve`].
    Ve(VeConfig),
    /// [`PolynomialConvex`].
    PolynomialConvex(PolynomialConvexConfig),
    /// [`Edm`].
    Edm(EdmConfig),
    /// [`DiscreteSchedule`].
    Discrete(DiscreteScheduleConfig),
}

impl ScheduleConfig {
    /// Validate and build.
    ///
    /// # Errors
    /// The typed error of the variant's `init`.
    pub fn init(&self) -> Result<AnySchedule> {
        Ok(match self {
            ScheduleConfig::CondOt(c) => AnySchedule::CondOt(c.init()?),
            ScheduleConfig::Cosine(c) => AnySchedule::Cosine(c.init()?),
            ScheduleConfig::Vp(c) => AnySchedule::Vp(c.init()?),
            ScheduleConfig::LinearVp(c) => AnySchedule::LinearVp(c.init()?),
            ScheduleConfig::SubVp(c) => AnySchedule::SubVp(c.init()?),
            ScheduleConfig::Ve(c) => AnySchedule::Ve(c.init()?),
            ScheduleConfig::PolynomialConvex(c) => AnySchedule::PolynomialConvex(c.init()?),
            ScheduleConfig::Edm(c) => AnySchedule::Edm(c.init()?),
            ScheduleConfig::Discrete(c) => AnySchedule::Discrete(c.init()?),
        })
    }
}

/// A built-in schedule chosen at run time (what [`ScheduleConfig::init`] returns).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum AnySchedule {
    CondOt(CondOt),
    Cosine(Cosine),
    Vp(Vp),
    LinearVp(LinearVp),
    SubVp(SubVp),
    Ve(Ve),
    PolynomialConvex(PolynomialConvex),
    Edm(Edm),
    Discrete(DiscreteSchedule),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnySchedule::CondOt($s) => $e,
            AnySchedule::Cosine($s) => $e,
            AnySchedule::Vp($s) => $e,
            AnySchedule::LinearVp($s) => $e,
            AnySchedule::SubVp($s) => $e,
            AnySchedule::Ve($s) => $e,
            AnySchedule::PolynomialConvex($s) => $e,
            AnySchedule::Edm($s) => $e,
            AnySchedule::Discrete($s) => $e,
        }
    };
}

impl Schedule for AnySchedule {
    fn alpha(&self, t: f64) -> f64 {
        dispatch!(self, s => s.alpha(t))
    }
    fn sigma(&self, t: f64) -> f64 {
        dispatch!(self, s => s.sigma(t))
    }
    fn d_alpha(&self, t: f64) -> f64 {
        dispatch!(self, s => s.d_alpha(t))
    }
    fn d_sigma(&self, t: f64) -> f64 {
        dispatch!(self, s => s.d_sigma(t))
    }
    fn d_sigma2(&self, t: f64) -> f64 {
        dispatch!(self, s => s.d_sigma2(t))
    }
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        dispatch!(self, s => s.snr_inverse(snr))
    }
    fn edm_sigma(&self, t: Time) -> EdmSigma {
        dispatch!(self, s => s.edm_sigma(t))
    }
    fn time_at_edm_sigma(&self, sigma: EdmSigma) -> Result<Time> {
        dispatch!(self, s => s.time_at_edm_sigma(sigma))
    }
}

/// Any built-in conditional path, by its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "path")]
pub enum PathConfig {
    /// The affine path of a schedule.
    Affine {
        /// The schedule.
        schedule: ScheduleConfig,
    },
    /// A stochastic interpolant: a schedule plus an extra Gaussian term.
    StochasticInterpolant {
        /// The schedule of the deterministic part.
        schedule: ScheduleConfig,
        /// The extra noise γ_t.
        noise: NoiseScale,
    },
}

impl PathConfig {
    /// Validate and build.
    ///
    /// # Errors
    /// The typed error of the schedule or noise scale.
    pub fn init(&self) -> Result<AnyPath> {
        Ok(match self {
            PathConfig::Affine { schedule } => AnyPath::Affine(AffinePath::new(schedule.init()?)),
            PathConfig::StochasticInterpolant { schedule, noise } => {
                AnyPath::StochasticInterpolant(StochasticInterpolant::new(schedule.init()?, *noise)?)
            }
        })
    }
}

/// A built-in path chosen at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyPath {
    /// An affine path.
    Affine(AffinePath<AnySchedule>),
    /// A stochastic interpolant.
    StochasticInterpolant(StochasticInterpolant<AnySchedule>),
}

impl AnyPath {
    /// The deterministic affine part (used for prediction conversions).
    pub fn affine(&self) -> &AffinePath<AnySchedule> {
        match self {
            AnyPath::Affine(p) => p,
            AnyPath::StochasticInterpolant(p) => p.affine(),
        }
    }
}

impl ConditionalPath for AnyPath {
    fn needs_noise(&self) -> bool {
        matches!(self, AnyPath::StochasticInterpolant(_))
    }

    fn sample_conditional<const D: usize>(
        &self,
        x0: Tensor<D>,
        x1: Tensor<D>,
        noise: Option<Tensor<D>>,
        t: &Times,
    ) -> Result<PathSample<D>> {
        match self {
            AnyPath::Affine(p) => p.sample_conditional(x0, x1, noise, t),
            AnyPath::StochasticInterpolant(p) => p.sample_conditional(x0, x1, noise, t),
        }
    }
}
