//! Where stochastic samplers get their Gaussian noise.
//!
//! The noise source is an explicit argument of every step, never hidden scheduler state, so a
//! run is reproducible from its seed and a reference run can be replayed draw for draw.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use flowforge_core::{Error, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution as _, StandardNormal};
use std::collections::VecDeque;

/// A source of i.i.d. N(0, 1) tensors.
pub trait NoiseSource {
    /// A standard-normal tensor of `shape` on `device`.
    ///
    /// # Errors
    /// A replay source that is exhausted or holds a draw of another size.
    fn standard_normal<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Result<Tensor<D>>;
}

/// Noise drawn on the host from a seeded portable generator (ChaCha): identical on every
/// backend and machine for a given seed.
#[derive(Debug)]
pub struct SeededNoise {
    rng: StdRng,
}

impl SeededNoise {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The source of block `block` of a [`crate::solve_by_row_blocks`] run seeded with
    /// `seed`: block 0 draws what `SeededNoise::new(seed)` draws (so one block is [`crate::solve`]
    /// with that source), each other block a stream of its own, its seed `seed` and `block`
    /// mixed by SplitMix64's finaliser (Steele, Lea & Flood, *Fast splittable pseudorandom
    /// number generators*, OOPSLA 2014).
    pub fn for_block(seed: u64, block: usize) -> Self {
        if block == 0 {
            return Self::new(seed);
        }
        let mut z = seed ^ (block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self::new(z ^ (z >> 31))
    }
}

impl NoiseSource for SeededNoise {
    fn standard_normal<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Result<Tensor<D>> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut self.rng)).collect();
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }
}

/// Noise drawn by the backend's own generator (`Tensor::random`): no host work, but the stream
/// depends on the backend. Seed it with `device.seed(..)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceNoise;

impl NoiseSource for DeviceNoise {
    fn standard_normal<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Result<Tensor<D>> {
        Ok(Tensor::random(shape, Distribution::Normal(0.0, 1.0), device))
    }
}

/// Replays stored draws in order (reference runs of diffusers or k-diffusion).
#[derive(Debug, Clone, Default)]
pub struct ReplayNoise {
    draws: VecDeque<Vec<f64>>,
}

impl ReplayNoise {
    /// Replay `draws`, each a flattened row-major tensor.
    pub fn new(draws: impl IntoIterator<Item = Vec<f64>>) -> Self {
        Self {
            draws: draws.into_iter().collect(),
        }
    }

    /// Draws not yet used.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }
}

impl NoiseSource for ReplayNoise {
    fn standard_normal<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Result<Tensor<D>> {
        let draw = self.draws.pop_front().ok_or(Error::MissingInput {
            what: "a stored noise draw (the replay source is exhausted)",
        })?;
        let n: usize = shape.iter().product();
        if draw.len() != n {
            return Err(Error::ShapeMismatch {
                what: "stored noise draw",
                expected: shape.to_vec(),
                actual: vec![draw.len()],
            });
        }
        Ok(Tensor::from_data(TensorData::new(draw, shape), device))
    }
}

/// For deterministic samplers: asking it for noise is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNoise;

impl NoiseSource for NoNoise {
    fn standard_normal<const D: usize>(&mut self, _shape: [usize; D], _device: &Device) -> Result<Tensor<D>> {
        Err(Error::MissingInput {
            what: "a noise source (this sampler is stochastic; pass SeededNoise or DeviceNoise)",
        })
    }
}
