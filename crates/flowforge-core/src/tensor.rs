//! Small tensor helpers shared by the flowforge crates: shape checks that return typed errors,
//! and host ↔ device conversions for tests, examples and reference data.

use crate::error::{Error, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Fails with [`Error::ShapeMismatch`] unless `actual` has the shape of `expected`.
pub fn ensure_same_shape<const D: usize>(
    what: &'static str,
    expected: &Tensor<D>,
    actual: &Tensor<D>,
) -> Result<()> {
    let (e, a) = (expected.dims(), actual.dims());
    if e == a {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected: e.to_vec(),
            actual: a.to_vec(),
        })
    }
}

/// Fails with [`Error::ShapeMismatch`] unless the first dimension of `x` is `batch`.
pub fn ensure_batch<const D: usize>(what: &'static str, x: &Tensor<D>, batch: usize) -> Result<()> {
    let dims = x.dims();
    if dims[0] == batch {
        Ok(())
    } else {
        let mut expected = dims.to_vec();
        expected[0] = batch;
        Err(Error::ShapeMismatch {
            what,
            expected,
            actual: dims.to_vec(),
        })
    }
}

/// Reads a tensor back and fails with [`Error::NonFinite`] if any element is NaN or infinite.
///
/// This synchronises with the device; samplers call it only when the user opts in.
pub fn ensure_finite<const D: usize>(what: impl Into<String>, x: &Tensor<D>) -> Result<()> {
    let bad = x.clone().is_finite().bool_not().any().into_scalar::<bool>();
    if bad {
        Err(Error::NonFinite { what: what.into() })
    } else {
        Ok(())
    }
}

/// A `[rows, cols]` tensor from f64 rows (reference data, test fixtures), in the device's
/// float dtype.
///
/// # Panics
/// If the rows have different lengths.
pub fn tensor_from_rows(rows: &[Vec<f64>], device: &Device) -> Tensor<2> {
    let cols = rows.first().map_or(0, Vec::len);
    assert!(rows.iter().all(|r| r.len() == cols), "ragged rows");
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), cols]), device)
}

/// The elements of a tensor, row-major, as f64 (reads the tensor back to the host).
pub fn tensor_to_vec<const D: usize>(x: Tensor<D>) -> Vec<f64> {
    x.try_into_vec_as::<f64>()
        .expect("reading a float tensor back to the host")
}

/// The rows of a `[rows, cols]` tensor as f64 (reads the tensor back to the host).
pub fn tensor_to_rows(x: Tensor<2>) -> Vec<Vec<f64>> {
    let [_, cols] = x.dims();
    tensor_to_vec(x)
        .chunks(cols.max(1))
        .map(<[f64]>::to_vec)
        .collect()
}

/// Check that every label is in `0..num_classes` (or `..=num_classes` with the null label).
///
/// Reads the labels back to the host (a `[batch]` integer tensor: negligible next to a forward).
///
/// # Errors
/// [`Error::ClassOutOfRange`] naming the first offending label.
pub fn check_labels(labels: &Tensor<1, Int>, num_classes: usize, null_allowed: bool, what: &'static str) -> Result<()> {
    let limit = num_classes as i64 + i64::from(null_allowed);
    let host = labels
        .clone()
        .try_into_vec_as::<i64>()
        .map_err(|e| Error::NonFinite { what: format!("reading class labels: {e:?}") })?;
    match host.into_iter().find(|&l| !(0..limit).contains(&l)) {
        Some(label) => Err(Error::ClassOutOfRange { label, num_classes, null_allowed, what }),
        None => Ok(()),
    }
}

/// `∇ₓ f(x)` for a scalar-valued `f` (a one-element tensor), by burn's reverse-mode autodiff:
/// `x` is lifted onto the autodiff graph as a fresh leaf (any parameters `f` closes over stay
/// constants unless they are tracked), `f` runs once, and its output is returned alongside the
/// gradient (without autodiff). Works on any backend, from plain or autodiff tensors.
///
/// # Errors
/// `f`'s errors; [`Error::NonFinite`] naming `what` if `f` does not depend on `x`.
pub fn input_gradient<const D: usize, T>(
    x: Tensor<D>,
    what: &str,
    f: impl FnOnce(Tensor<D>) -> Result<(Tensor<1>, T)>,
) -> Result<(Tensor<D>, T)> {
    let tracked = x.without_autodiff().autodiff().require_grad();
    let (value, extra) = f(tracked.clone())?;
    let gradients = value.backward();
    let gradient = tracked
        .grad(&gradients)
        .ok_or_else(|| Error::NonFinite { what: format!("the gradient of {what} (it does not depend on its input)") })?;
    Ok((gradient, extra))
}
