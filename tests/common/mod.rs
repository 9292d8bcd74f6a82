//! Shared helpers for the integration tests: reference-file loading and tolerant comparisons.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor};
use flowforge::core::tensor::{tensor_from_rows, tensor_to_vec};
use serde_json::Value;
use std::path::PathBuf;

/// The directory of the peer libraries' reference vectors, `../shared/reference` beside the
/// checkout (override with `FLOWFORGE_REFERENCE_DIR`).
pub fn reference_dir() -> PathBuf {
    std::env::var_os("FLOWFORGE_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"))
}

/// Loads a reference JSON file. A missing file fails the test: a conformance test that skips
/// is not a test.
pub fn reference(name: &str) -> Value {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("reference file {} is required and could not be read: {e}", path.display())
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

/// The test device: the umbrella crate's default (flex unless another backend is enabled).
pub fn device() -> Device {
    flowforge::default_device()
}

/// A JSON array of numbers.
pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("expected a number, got {x}")))
        .collect()
}

/// A JSON array of arrays of numbers.
pub fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array of rows, got {v}"))
        .iter()
        .map(floats)
        .collect()
}

/// A `[batch, dim]` tensor from a JSON array of rows.
pub fn tensor(v: &Value) -> Tensor<2> {
    tensor_from_rows(&rows(v), &device())
}

/// Asserts `|actual − expected| ≤ rel · |expected| + abs` element-wise, naming the first
/// offender.
pub fn assert_close(what: &str, actual: &[f64], expected: &[f64], rel: f64, abs: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length differs");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let tolerance = rel * e.abs() + abs;
        assert!(
            (a - e).abs() <= tolerance,
            "{what}[{i}]: got {a}, expected {e} (|diff| {} > tolerance {tolerance})",
            (a - e).abs()
        );
    }
}

/// [`assert_close`] for a tensor against JSON rows.
pub fn assert_tensor_close(what: &str, actual: Tensor<2>, expected: &Value, rel: f64, abs: f64) {
    let expected: Vec<f64> = rows(expected).into_iter().flatten().collect();
    assert_close(what, &tensor_to_vec(actual), &expected, rel, abs);
}

/// The flex CPU device configured for f64 tensors, for tight (1e-6 … 1e-12) comparisons with
/// f64 references. Device settings are process-wide, so a test binary uses either this or
/// [`device`], never both.
pub fn device_f64() -> Device {
    use burn::tensor::FloatDType;
    use std::sync::OnceLock;
    static CONFIGURED: OnceLock<()> = OnceLock::new();
    let mut device = Device::flex();
    CONFIGURED.get_or_init(|| {
        device.configure(FloatDType::F64).expect("flex supports f64 tensors");
    });
    device
}

/// A `[batch, dim]` tensor on `device` from a JSON array of rows.
pub fn tensor_on(v: &Value, device: &Device) -> Tensor<2> {
    tensor_from_rows(&rows(v), device)
}

/// Flattened JSON rows.
pub fn flat(v: &Value) -> Vec<f64> {
    rows(v).into_iter().flatten().collect()
}

/// diffusers' `DDPMScheduler` table for `beta_schedule` (T = 1000, β from 1e-4 to 0.02).
pub fn diffusers_schedule(kind: &str) -> flowforge::paths::DiscreteSchedule {
    use flowforge::paths::{BetaSchedule, DiscreteScheduleConfig};
    let beta_schedule = match kind {
        "linear" => BetaSchedule::Linear,
        "scaled_linear" => BetaSchedule::ScaledLinear,
        "squaredcos_cap_v2" => BetaSchedule::SquaredcosCapV2,
        other => panic!("unknown beta schedule {other}"),
    };
    DiscreteScheduleConfig::new()
        .with_num_train_timesteps(1000)
        .with_beta_start(0.0001)
        .with_beta_end(0.02)
        .with_beta_schedule(beta_schedule)
        .init()
        .unwrap()
}
