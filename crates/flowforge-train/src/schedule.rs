//! Learning-rate schedules, evaluated on the host per step.

use serde::{Deserialize, Serialize};

/// The learning rate after warm-up, as a function of the step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Cosine decay from the base rate to `final_fraction × base` at the last step
    /// (Loshchilov & Hutter, *SGDR*, ICLR 2017, without restarts).
    Cosine {
        /// The final rate as a fraction of the base rate.
        final_fraction: f64,
    },
}

impl LrSchedule {
    /// The rate at `step` (0-based) of `total` steps with linear warm-up over `warmup` steps
    /// (from `base/warmup` at step 0 to `base` at step `warmup − 1`).
    pub fn rate(&self, base: f64, step: usize, total: usize, warmup: usize) -> f64 {
        if step < warmup {
            return base * (step + 1) as f64 / warmup as f64;
        }
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine { final_fraction } => {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (core::f64::consts::PI * progress).cos());
                base * (final_fraction + (1.0 - final_fraction) * cosine)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule::Cosine { final_fraction: 0.1 };
        assert_eq!(s.rate(1.0, 0, 100, 10), 0.1);
        assert_eq!(s.rate(1.0, 9, 100, 10), 1.0);
        assert_eq!(s.rate(1.0, 10, 100, 10), 1.0);
        assert!((s.rate(1.0, 55, 100, 10) - 0.55).abs() < 1e-12);
        assert!((s.rate(1.0, 100, 100, 10) - 0.1).abs() < 1e-12);
        assert_eq!(LrSchedule::Constant.rate(3e-4, 500, 1000, 0), 3e-4);
    }
}
