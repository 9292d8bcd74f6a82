//! # flowforge-data
//!
//! Seeded data for examples, tests and benchmarks:
//!
//! - [`Toy2d`]: the 2-D distributions of the flow-matching literature (two moons, eight
//!   Gaussians, circles, checkerboard, swiss roll, two spirals, labelled Gaussian mixtures);
//! - [`standard_normal`]: Gaussian source samples;
//! - [`images`]: MNIST IDX and 8x8 digits CSV readers (both data sets ship in `data/`), seeded
//!   shuffling and batching, normalisation.
//!
//! Everything is generated on the host from a caller-supplied seeded RNG (`StdRng`, portable
//! ChaCha), then uploaded once, so runs are reproducible on every backend.
#![warn(missing_docs)]

pub mod images;
mod toy2d;

pub use toy2d::{Toy2d, points_to_tensor, tensor_to_points};

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Re-exported so callers seed the same generator type flowforge uses.
pub use rand::rngs::StdRng;
pub use rand::SeedableRng;

/// A seeded portable generator.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `shape` i.i.d. N(0, 1) samples as an f32 tensor on `device`.
pub fn standard_normal<const D: usize, R: Rng + ?Sized>(shape: [usize; D], rng: &mut R, device: &Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}
