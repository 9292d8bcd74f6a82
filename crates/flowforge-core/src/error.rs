//! The one error type of flowforge.
//!
//! Every failure a user can cause (a bad parameter, a time outside `[0, 1]`, tensors of
//! mismatched shapes, a conversion through a singular coefficient, a non-finite value) is a
//! variant here, so the umbrella crate exposes a single `flowforge::Error` and callers can match
//! on what went wrong instead of parsing panic messages.

use crate::prediction::PredictionKind;

/// Result alias used throughout flowforge.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong in flowforge because of its inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A real-valued parameter violates its documented requirement (includes NaN and infinities).
    #[error("invalid parameter `{name}` = {value}: must be {requirement}")]
    InvalidParameter {
        /// Name of the parameter, as in the config struct.
        name: &'static str,
        /// The rejected value.
        value: f64,
        /// What the parameter must satisfy, in words (e.g. "in (0, 1)").
        requirement: &'static str,
    },

    /// Two parameters are individually valid but inconsistent with each other.
    #[error("inconsistent parameters: `{first}` = {first_value} and `{second}` = {second_value}: {requirement}")]
    InconsistentParameters {
        /// Name of the first parameter.
        first: &'static str,
        /// Value of the first parameter.
        first_value: f64,
        /// Name of the second parameter.
        second: &'static str,
        /// Value of the second parameter.
        second_value: f64,
        /// The relation they must satisfy, in words.
        requirement: &'static str,
    },

    /// An integer count (number of timesteps, batch size, number of samples) is invalid.
    #[error("invalid count `{name}` = {value}: must be {requirement}")]
    InvalidCount {
        /// Name of the count.
        name: &'static str,
        /// The rejected value (signed so that negative user input can be reported as given).
        value: i64,
        /// What the count must satisfy.
        requirement: &'static str,
    },

    /// A continuous time is NaN or outside `[0, 1]`.
    #[error("time {t} is outside [0, 1] (flowforge convention: t = 0 is the source/noise, t = 1 the data)")]
    TimeOutOfRange {
        /// The rejected time.
        t: f64,
    },

    /// A discrete timestep index is outside `0..num_train_timesteps`.
    #[error("discrete timestep {timestep} is outside 0..{num_train_timesteps}")]
    TimestepOutOfRange {
        /// The rejected index.
        timestep: usize,
        /// Number of training timesteps `T`.
        num_train_timesteps: usize,
    },

    /// A continuous time does not fall on a discrete grid when an exact grid point is required.
    #[error("time {t} is not on the discrete grid of {num_train_timesteps} timesteps (nearest grid time {nearest})")]
    TimeNotOnGrid {
        /// The rejected time.
        t: f64,
        /// Number of training timesteps `T`.
        num_train_timesteps: usize,
        /// The nearest time that is on the grid.
        nearest: f64,
    },

    /// Two tensors (or a tensor and a batch of times) that must agree in shape do not.
    #[error("shape mismatch for {what}: expected {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// What was being checked (e.g. "x1 vs x0").
        what: &'static str,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape that was supplied.
        actual: Vec<usize>,
    },

    /// A prediction cannot be converted at this time because a coefficient it divides by
    /// vanishes (e.g. noise → data where α_t = 0, data → noise where σ_t = 0).
    #[error("cannot convert a {from} prediction to a {to} prediction at t = {t}: {reason}")]
    SingularConversion {
        /// The prediction type converted from.
        from: PredictionKind,
        /// The prediction type converted to.
        to: PredictionKind,
        /// The time at which the conversion is singular.
        t: f64,
        /// Which coefficient vanishes.
        reason: &'static str,
    },

    /// A path quantity is undefined at this time (e.g. the Brownian-bridge velocity at t = 0).
    #[error("{what} is undefined at t = {t}: {reason}")]
    SingularTime {
        /// The quantity that cannot be evaluated.
        what: &'static str,
        /// The time at which it is undefined.
        t: f64,
        /// Why, in words.
        reason: &'static str,
    },

    /// A value that must be finite is NaN or infinite.
    #[error("non-finite value in {what}")]
    NonFinite {
        /// Where the value came from.
        what: String,
    },

    /// An inverse (SNR → t, σ → t) was asked for a value the schedule never attains.
    #[error("{what} = {value} is outside the range [{min}, {max}] attained by the schedule")]
    OutOfScheduleRange {
        /// The quantity being inverted ("snr", "edm sigma", "kappa").
        what: &'static str,
        /// The requested value.
        value: f64,
        /// Smallest value the schedule attains on [0, 1].
        min: f64,
        /// Largest value the schedule attains on [0, 1].
        max: f64,
    },

    /// A time grid is unusable: too few points, a point outside `[0, 1]`, or not strictly
    /// monotone.
    #[error("invalid time grid: {reason} (at index {index}, value {value})")]
    InvalidGrid {
        /// What is wrong.
        reason: &'static str,
        /// Index of the offending entry.
        index: usize,
        /// The offending value.
        value: f64,
    },

    /// A sampler produced (or a model returned) NaN or infinity; reported when the opt-in
    /// finite check is on.
    #[error("non-finite {what} at step {step} (t = {t})")]
    NonFiniteAt {
        /// What went non-finite ("model output", "state").
        what: &'static str,
        /// Index of the step (0-based).
        step: usize,
        /// Time at which it happened.
        t: f64,
    },

    /// An adaptive solver used up its step budget before reaching the end time.
    #[error("step budget of {max_steps} exhausted at t = {t} (target {t_end}); loosen rtol/atol or raise max_steps")]
    StepBudgetExceeded {
        /// The budget.
        max_steps: usize,
        /// How far the solver got.
        t: f64,
        /// Where it had to go.
        t_end: f64,
    },

    /// The training loss became NaN or infinite; the last good checkpoint is untouched.
    #[error("non-finite loss {value} at training step {step}; the last good checkpoint was kept")]
    NonFiniteLoss {
        /// The step at which the loss was non-finite.
        step: usize,
        /// The loss value.
        value: f64,
    },

    /// A checkpoint could not be written or read, or does not fit the model.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file or folder.
        path: String,
        /// What went wrong.
        reason: String,
    },

    /// A class label outside `0..num_classes` (the null label `num_classes` is accepted where a
    /// model was trained with label dropout).
    #[error("class label {label} is out of range for {what} with {num_classes} classes (valid: 0..{num_classes}{null})", null = if *.null_allowed { ", or the null label" } else { "" })]
    ClassOutOfRange {
        /// The offending label.
        label: i64,
        /// Number of classes.
        num_classes: usize,
        /// Whether the null label `num_classes` is allowed.
        null_allowed: bool,
        /// What received it.
        what: &'static str,
    },

    /// A data file could not be read or is malformed (wrong magic number, truncated, bad value).
    #[error("data file {path}: {reason}")]
    Data {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },

    /// An output file or folder could not be written.
    #[error("cannot write {path}: {reason}")]
    Output {
        /// The file or folder.
        path: String,
        /// What went wrong.
        reason: String,
    },

    /// A required input was not supplied (e.g. the noise of a stochastic interpolant).
    #[error("missing input: {what}")]
    MissingInput {
        /// What is missing.
        what: &'static str,
    },

    /// A backend was asked for by name that this build does not enable.
    #[error("backend `{name}` is not available in this build (enabled: {enabled}); enable the cargo feature of the same name")]
    BackendUnavailable {
        /// The requested backend.
        name: String,
        /// The backends this build enables.
        enabled: String,
    },

    /// A configuration could not be read or written.
    #[error("configuration error: {0}")]
    Config(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidParameter`].
    pub fn invalid(name: &'static str, value: f64, requirement: &'static str) -> Self {
        Self::InvalidParameter {
            name,
            value,
            requirement,
        }
    }
}

/// Parameter checks shared by every config's validation, each returning the typed error that
/// names the parameter.
pub mod check {
    use super::{Error, Result};

    /// `value` must be finite.
    pub fn finite(name: &'static str, value: f64) -> Result<f64> {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(Error::invalid(name, value, "finite"))
        }
    }

    /// `value` must be finite and strictly positive.
    pub fn positive(name: &'static str, value: f64) -> Result<f64> {
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(Error::invalid(name, value, "finite and > 0"))
        }
    }

    /// `value` must be finite and non-negative.
    pub fn non_negative(name: &'static str, value: f64) -> Result<f64> {
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(Error::invalid(name, value, "finite and >= 0"))
        }
    }

    /// `value` must lie in the open interval (0, 1).
    pub fn open_unit(name: &'static str, value: f64) -> Result<f64> {
        if value > 0.0 && value < 1.0 {
            Ok(value)
        } else {
            Err(Error::invalid(name, value, "in (0, 1)"))
        }
    }

    /// `value` must lie in the half-open interval [0, 1).
    pub fn unit_right_open(name: &'static str, value: f64) -> Result<f64> {
        if (0.0..1.0).contains(&value) {
            Ok(value)
        } else {
            Err(Error::invalid(name, value, "in [0, 1)"))
        }
    }

    /// `lower < upper`, both already validated individually.
    pub fn ordered(lower_name: &'static str, lower: f64, upper_name: &'static str, upper: f64) -> Result<()> {
        relation(lower < upper, (lower_name, lower), (upper_name, upper), "the first must be strictly smaller than the second")
    }

    /// `lower ≤ upper`, both already validated individually.
    pub fn not_greater(lower_name: &'static str, lower: f64, upper_name: &'static str, upper: f64) -> Result<()> {
        relation(lower <= upper, (lower_name, lower), (upper_name, upper), "the first must not exceed the second")
    }

    fn relation(holds: bool, first: (&'static str, f64), second: (&'static str, f64), requirement: &'static str) -> Result<()> {
        if holds {
            Ok(())
        } else {
            Err(Error::InconsistentParameters {
                first: first.0,
                first_value: first.1,
                second: second.0,
                second_value: second.1,
                requirement,
            })
        }
    }

    /// A count must be at least one.
    pub fn count_at_least_one(name: &'static str, value: usize) -> Result<usize> {
        if value >= 1 {
            Ok(value)
        } else {
            Err(Error::InvalidCount {
                name,
                value: value as i64,
                requirement: ">= 1",
            })
        }
    }
}
