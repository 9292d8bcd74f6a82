//! Two-dimensional toy distributions.

use burn::tensor::{Device, Tensor, TensorData};
use flowforge_core::error::check;
use flowforge_core::{Error, Result};
use core::f64::consts::PI;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// A 2-D toy distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Toy2d {
    /// scikit-learn's `make_moons(noise)`: two interleaved half circles, outer
    /// `(cos s, sin s)` and inner `(1 − cos s, 1 − sin s − ½)`, s ∈ [0, π], plus N(0, noise²).
    /// Unscaled, as in the benchmark workloads (support ≈ [−1, 2] × [−0.5, 1]).
    Moons {
        /// Standard deviation of the added Gaussian noise (0.05 in the workloads).
        noise: f64,
    },
    /// Eight Gaussians on a circle of radius `radius` (torchcfm's `sample_8gaussians`: radius 5,
    /// standard deviation √0.1).
    EightGaussians {
        /// Radius of the circle of centres.
        radius: f64,
        /// Standard deviation of each component.
        std: f64,
    },
    /// scikit-learn's `make_circles`: two concentric circles (radius 1 and `factor`).
    Circles {
        /// Ratio of the inner radius to the outer.
        factor: f64,
        /// Standard deviation of the added noise.
        noise: f64,
    },
    /// The 4 × 4 checkerboard on [−4, 4]² used by FFJORD (Grathwohl et al. 2019).
    Checkerboard,
    /// FFJORD's 2-D swiss roll: scikit-learn's `make_swiss_roll(noise)` projected on (x, z) and
    /// divided by 5 (about [−3, 3]²).
    SwissRoll {
        /// Standard deviation of the noise added before scaling (1.0 in FFJORD).
        noise: f64,
    },
    /// Two interleaved spirals (FFJORD's `2spirals`).
    TwoSpirals {
        /// Standard deviation of the added noise.
        noise: f64,
    },
    /// An isotropic Gaussian mixture `Σ_k w_k N(μ_k, s_k² I)` with labels `k`.
    GaussianMixture {
        /// Mixture weights (normalised on use).
        weights: Vec<f64>,
        /// Component means.
        means: Vec<[f64; 2]>,
        /// Component standard deviations.
        stds: Vec<f64>,
    },
}

impl Toy2d {
    /// Two moons with the workloads' noise 0.05.
    pub fn moons() -> Self {
        Toy2d::Moons { noise: 0.05 }
    }

    /// torchcfm's eight Gaussians.
    pub fn eight_gaussians() -> Self {
        Toy2d::EightGaussians {
            radius: 5.0,
            std: 0.1_f64.sqrt(),
        }
    }

    /// Check the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for negative or non-finite noise levels, radii, factors,
    /// standard deviations or weights; [`Error::InvalidCount`] for a mixture without components;
    /// [`Error::ShapeMismatch`] for mixture lists of different lengths.
    pub fn validate(&self) -> Result<()> {
        match self {
            Toy2d::Moons { noise } | Toy2d::SwissRoll { noise } | Toy2d::TwoSpirals { noise } => {
                check::non_negative("noise", *noise)?;
            }
            Toy2d::EightGaussians { radius, std } => {
                check::finite("radius", *radius)?;
                check::non_negative("std", *std)?;
            }
            Toy2d::Circles { factor, noise } => {
                check::finite("factor", *factor)?;
                check::non_negative("noise", *noise)?;
            }
            Toy2d::Checkerboard => {}
            Toy2d::GaussianMixture { weights, means, stds } => {
                check::count_at_least_one("components", weights.len())?;
                if means.len() != weights.len() || stds.len() != weights.len() {
                    return Err(Error::ShapeMismatch {
                        what: "mixture weights / means / stds",
                        expected: vec![weights.len(); 3],
                        actual: vec![weights.len(), means.len(), stds.len()],
                    });
                }
                for &w in weights {
                    check::non_negative("weight", w)?;
                }
                check::positive("sum of weights", weights.iter().sum())?;
                for &s in stds {
                    check::non_negative("std", s)?;
                }
                for &m in means.iter().flatten() {
                    check::finite("mean", m)?;
                }
            }
        }
        Ok(())
    }

    /// `n` labelled samples: points and the index of the component / moon / circle they came
    /// from (0 for unlabelled distributions).
    ///
    /// # Errors
    /// As [`Toy2d::validate`].
    pub fn sample_labelled<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<(Vec<[f64; 2]>, Vec<usize>)> {
        self.validate()?;
        let normal = |rng: &mut R| -> f64 { StandardNormal.sample(rng) };
        let mut points = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        match self {
            Toy2d::Moons { noise } => {
                // make_moons: n_out = n/2 on the outer moon, the rest inner, on evenly spaced
                // angles; then shuffled. We draw the angle uniformly instead of a linspace so
                // that every prefix of a stream is a fair sample.
                for _ in 0..n {
                    let inner = rng.random::<bool>();
                    let s = rng.random::<f64>() * PI;
                    let (x, y) = if inner { (1.0 - s.cos(), 1.0 - s.sin() - 0.5) } else { (s.cos(), s.sin()) };
                    points.push([x + noise * normal(rng), y + noise * normal(rng)]);
                    labels.push(inner as usize);
                }
            }
            Toy2d::EightGaussians { radius, std } => {
                for _ in 0..n {
                    let k = rng.random_range(0..8usize);
                    let angle = 2.0 * PI * k as f64 / 8.0;
                    points.push([radius * angle.cos() + std * normal(rng), radius * angle.sin() + std * normal(rng)]);
                    labels.push(k);
                }
            }
            Toy2d::Circles { factor, noise } => {
                for _ in 0..n {
                    let inner = rng.random::<bool>();
                    let s = rng.random::<f64>() * 2.0 * PI;
                    let r = if inner { *factor } else { 1.0 };
                    points.push([r * s.cos() + noise * normal(rng), r * s.sin() + noise * normal(rng)]);
                    labels.push(inner as usize);
                }
            }
            Toy2d::Checkerboard => {
                for _ in 0..n {
                    let x1 = rng.random::<f64>() * 4.0 - 2.0;
                    let col = rng.random_range(0..2usize) as f64 * 2.0 - 2.0;
                    let x2 = rng.random::<f64>() + col + (x1.floor() % 2.0 + 2.0) % 2.0;
                    points.push([x1 * 2.0, x2 * 2.0]);
                    labels.push(0);
                }
            }
            Toy2d::SwissRoll { noise } => {
                for _ in 0..n {
                    let s = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
                    let (x, y) = (s * s.cos(), s * s.sin());
                    points.push([(x + noise * normal(rng)) / 5.0, (y + noise * normal(rng)) / 5.0]);
                    labels.push(0);
                }
            }
            Toy2d::TwoSpirals { noise } => {
                for _ in 0..n {
                    let s = rng.random::<f64>().sqrt() * 540.0 * (2.0 * PI) / 360.0;
                    let arm = rng.random::<bool>();
                    let sign = if arm { 1.0 } else { -1.0 };
                    let x = sign * (-s.cos() * s + rng.random::<f64>() * 0.5);
                    let y = sign * (s.sin() * s + rng.random::<f64>() * 0.5);
                    points.push([x / 3.0 + noise * normal(rng), y / 3.0 + noise * normal(rng)]);
                    labels.push(arm as usize);
                }
            }
            Toy2d::GaussianMixture { weights, means, stds } => {
                let total: f64 = weights.iter().sum();
                for _ in 0..n {
                    let mut u = rng.random::<f64>() * total;
                    let mut k = 0;
                    while k + 1 < weights.len() && u >= weights[k] {
                        u -= weights[k];
                        k += 1;
                    }
                    points.push([means[k][0] + stds[k] * normal(rng), means[k][1] + stds[k] * normal(rng)]);
                    labels.push(k);
                }
            }
        }
        Ok((points, labels))
    }

    /// scikit-learn's `make_moons(n, noise, shuffle=True)` layout exactly: `n/2` outer and
    /// `n − n/2` inner points on *evenly spaced* angles (`linspace(0, π, ·)`), shuffled, plus
    /// N(0, noise²). Two such sets are much closer to each other than two i.i.d. samples, which
    /// is why the benchmark workloads' noise floor (W2 ≈ 0.027 at n = 2000) uses this layout.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a negative or non-finite noise.
    pub fn make_moons<R: Rng + ?Sized>(n: usize, noise: f64, rng: &mut R) -> Result<Vec<[f64; 2]>> {
        check::non_negative("noise", noise)?;
        let n_out = n / 2;
        let n_in = n - n_out;
        let linspace = |m: usize, i: usize| if m <= 1 { 0.0 } else { PI * i as f64 / (m - 1) as f64 };
        let mut points: Vec<[f64; 2]> = (0..n_out)
            .map(|i| {
                let s = linspace(n_out, i);
                [s.cos(), s.sin()]
            })
            .chain((0..n_in).map(|i| {
                let s = linspace(n_in, i);
                [1.0 - s.cos(), 1.0 - s.sin() - 0.5]
            }))
            .collect();
        // Fisher–Yates shuffle, then the noise.
        for i in (1..points.len()).rev() {
            let j = rng.random_range(0..=i);
            points.swap(i, j);
        }
        for p in &mut points {
            let (a, b): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
            p[0] += noise * a;
            p[1] += noise * b;
        }
        Ok(points)
    }

    /// `n` samples.
    ///
    /// # Errors
    /// As [`Toy2d::validate`].
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Vec<[f64; 2]>> {
        Ok(self.sample_labelled(n, rng)?.0)
    }

    /// `n` samples as a `[n, 2]` tensor on `device`.
    ///
    /// # Errors
    /// As [`Toy2d::validate`].
    pub fn sample_tensor<R: Rng + ?Sized>(&self, n: usize, rng: &mut R, device: &Device) -> Result<Tensor<2>> {
        Ok(points_to_tensor(&self.sample(n, rng)?, device))
    }
}

/// `[n, 2]` tensor from points (in the device's float dtype).
pub fn points_to_tensor(points: &[[f64; 2]], device: &Device) -> Tensor<2> {
    let flat: Vec<f64> = points.iter().flat_map(|p| [p[0], p[1]]).collect();
    Tensor::from_data(TensorData::new(flat, [points.len(), 2]), device)
}

/// Points from a `[n, 2]` tensor (reads it back to the host).
pub fn tensor_to_points(x: Tensor<2>) -> Vec<[f64; 2]> {
    let values = x.try_into_vec_as::<f64>().expect("reading a float tensor back to the host");
    values.chunks_exact(2).map(|p| [p[0], p[1]]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    fn mean_and_std(points: &[[f64; 2]]) -> ([f64; 2], [f64; 2]) {
        let n = points.len() as f64;
        let m = [points.iter().map(|p| p[0]).sum::<f64>() / n, points.iter().map(|p| p[1]).sum::<f64>() / n];
        let s = [
            (points.iter().map(|p| (p[0] - m[0]).powi(2)).sum::<f64>() / n).sqrt(),
            (points.iter().map(|p| (p[1] - m[1]).powi(2)).sum::<f64>() / n).sqrt(),
        ];
        (m, s)
    }

    #[test]
    fn moons_have_the_sklearn_moments() {
        // make_moons(noise = 0.05): E[x] = 0.5, E[y] = 0.25 (outer mean 2/π, inner 0.5 − 2/π).
        let points = Toy2d::moons().sample(200_000, &mut rng(0)).unwrap();
        let (m, _) = mean_and_std(&points);
        assert!((m[0] - 0.5).abs() < 0.01, "{m:?}");
        assert!((m[1] - 0.25).abs() < 0.01, "{m:?}");
        assert!(points.iter().all(|p| p[0] > -1.4 && p[0] < 2.4 && p[1] > -0.9 && p[1] < 1.4));
    }

    #[test]
    fn make_moons_sets_are_close_to_each_other() {
        let a = Toy2d::make_moons(400, 0.0, &mut rng(1)).unwrap();
        let b = Toy2d::make_moons(400, 0.0, &mut rng(2)).unwrap();
        let mut sa: Vec<_> = a.iter().map(|p| (p[0] * 1e6) as i64).collect();
        let mut sb: Vec<_> = b.iter().map(|p| (p[0] * 1e6) as i64).collect();
        sa.sort();
        sb.sort();
        assert_eq!(sa, sb, "without noise two layouts are the same set, shuffled");
        assert_ne!(a, b);
    }

    #[test]
    fn eight_gaussians_sit_on_the_circle() {
        let (points, labels) = Toy2d::eight_gaussians().sample_labelled(20_000, &mut rng(1)).unwrap();
        for (p, &k) in points.iter().zip(&labels) {
            let a = 2.0 * PI * k as f64 / 8.0;
            let d = ((p[0] - 5.0 * a.cos()).powi(2) + (p[1] - 5.0 * a.sin()).powi(2)).sqrt();
            assert!(d < 2.5, "point {p:?} far from centre {k}");
        }
        assert!((0..8).all(|k| labels.iter().filter(|&&l| l == k).count() > 2_000));
    }

    #[test]
    fn sampling_is_reproducible_from_the_seed() {
        let a = Toy2d::moons().sample(10, &mut rng(42)).unwrap();
        let b = Toy2d::moons().sample(10, &mut rng(42)).unwrap();
        let c = Toy2d::moons().sample(10, &mut rng(43)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bad_parameters_are_typed_errors_not_panics() {
        let empty = Toy2d::GaussianMixture { weights: vec![], means: vec![], stds: vec![] };
        assert!(matches!(empty.sample(3, &mut rng(0)), Err(Error::InvalidCount { .. })));
        let ragged = Toy2d::GaussianMixture { weights: vec![1.0, 1.0], means: vec![[0.0, 0.0]], stds: vec![0.1, 0.1] };
        assert!(matches!(ragged.sample(3, &mut rng(0)), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(Toy2d::Moons { noise: -0.1 }.sample(3, &mut rng(0)), Err(Error::InvalidParameter { name: "noise", .. })));
        assert!(Toy2d::make_moons(10, f64::NAN, &mut rng(0)).is_err());
    }

    #[test]
    fn mixture_weights_are_respected() {
        let mix = Toy2d::GaussianMixture {
            weights: vec![0.2, 0.8],
            means: vec![[-3.0, 0.0], [3.0, 0.0]],
            stds: vec![0.5, 0.5],
        };
        let (_, labels) = mix.sample_labelled(50_000, &mut rng(3)).unwrap();
        let frac = labels.iter().filter(|&&k| k == 1).count() as f64 / 50_000.0;
        assert!((frac - 0.8).abs() < 0.01, "{frac}");
    }
}
