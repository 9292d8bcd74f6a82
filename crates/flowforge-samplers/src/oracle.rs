//! Analytic oracles: exact denoisers (hence velocities and scores, through the path) of
//! Gaussian, Gaussian-mixture and empirical data distributions, for any affine path with a
//! standard Gaussian source.
//!
//! With `x_t = σ_t x₀ + α_t x₁`, `x₀ ~ N(0, I)` and data `x₁ ~ p`, the marginal is
//! `p_t = (α_t)_# p ∗ N(0, σ_t² I)` and the optimal predictions are posterior means. For a
//! Gaussian component `N(μ, s² I)`: `x_t ~ N(α μ, v I)` with `v = α² s² + σ²`, and
//! `E[x₁ | x_t] = μ + (α s²/v)(x_t − α μ)`. Mixtures weight components by their posterior
//! responsibilities; an empirical data set is a mixture of point masses (s = 0) — the
//! "non-parametric" marginal flow of Lipman et al. (2023) and Bertrand et al. (2025).
//!
//! Each oracle is a [`Model`] predicting [`Data`], so every sampler can run on it and every
//! other prediction kind follows from [`AffinePath::convert`](flowforge_paths::AffinePath::convert).
//! They are training-free baselines for users and ground truth for tests.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use flowforge_core::error::check;
use core::marker::PhantomData;
use flowforge_core::tensor::ensure_batch;
use flowforge_core::{Condition, Data, Error, Model, PredictionKind, PredictionType, Predicted, Result, Times};
use flowforge_paths::Schedule;

fn row(values: &[f64], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
}

fn flatten<const D: usize>(x: Tensor<D>) -> (Tensor<2>, [usize; D]) {
    let dims = x.dims();
    let per_sample: usize = dims[1..].iter().product();
    (x.reshape([dims[0], per_sample]), dims)
}

/// The data distribution `N(m, s² I)` seen through a schedule: a one-component
/// [`MixtureOracle`] plus the exact probability-flow map, for convergence tests.
#[derive(Debug, Clone)]
pub struct GaussianOracle<S, P = Data> {
    mixture: MixtureOracle<S, P>,
    mean: Vec<f64>,
    std: f64,
}

impl<S: Schedule> GaussianOracle<S, Data> {
    /// Data `N(mean, std² I)`, path given by `schedule`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a non-positive or NaN std or a non-finite mean.
    pub fn new(schedule: S, mean: Vec<f64>, std: f64) -> Result<Self> {
        check::positive("std", std)?;
        Ok(Self {
            mixture: MixtureOracle::new(schedule, vec![1.0], vec![mean.clone()], vec![std])?,
            mean,
            std,
        })
    }
}

impl<S: Schedule, P: PredictionType> GaussianOracle<S, P> {
    /// The same oracle, predicting kind `Q` as a [`Model`].
    pub fn predicting<Q: PredictionType>(self) -> GaussianOracle<S, Q> {
        GaussianOracle {
            mixture: self.mixture.predicting(),
            mean: self.mean,
            std: self.std,
        }
    }

    /// The underlying one-component mixture (densities, all prediction kinds).
    pub fn mixture(&self) -> &MixtureOracle<S, P> {
        &self.mixture
    }

    /// Per-coordinate variance of the marginal at `t`: `α_t² s² + σ_t²`.
    pub fn marginal_variance(&self, t: f64) -> f64 {
        let schedule = self.mixture.schedule();
        let (a, s) = (schedule.alpha(t), schedule.sigma(t));
        a * a * self.std * self.std + s * s
    }

    /// The exact probability-flow map from time `t_from` to `t_to`:
    /// `x ↦ α_to m + √(v_to / v_from) (x − α_from m)`.
    pub fn flow<const D: usize>(&self, x: Tensor<D>, t_from: f64, t_to: f64) -> Tensor<D> {
        let schedule = self.mixture.schedule();
        let (flat, dims) = flatten(x);
        let m = row(&self.mean, &flat.device());
        let [batch, dim] = flat.dims();
        let ratio = (self.marginal_variance(t_to) / self.marginal_variance(t_from)).sqrt();
        let centred = flat - m.clone().expand([batch, dim]).mul_scalar(schedule.alpha(t_from));
        (centred.mul_scalar(ratio) + m.expand([batch, dim]).mul_scalar(schedule.alpha(t_to))).reshape(dims)
    }

    /// `E[x₁ | x_t]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the per-sample size is not the mean's dimension.
    pub fn denoise<const D: usize>(&self, x: Tensor<D>, t: &Times) -> Result<Tensor<D>> {
        self.mixture.denoise(x, t)
    }
}

impl<S: Schedule, P: PredictionType, const D: usize> Model<D> for GaussianOracle<S, P> {
    type Prediction = P;

    fn predict(&self, x_t: Tensor<D>, t: &Times, condition: &Condition) -> Result<Predicted<P, D>> {
        self.mixture.predict(x_t, t, condition)
    }
}

fn check_dim(flat: &Tensor<2>, dim: usize) -> Result<()> {
    let [batch, d] = flat.dims();
    if d == dim {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what: "x_t vs oracle dimension",
            expected: vec![batch, dim],
            actual: vec![batch, d],
        })
    }
}

/// An isotropic Gaussian mixture `Σ_k w_k N(μ_k, s_k² I)` seen through a schedule, predicting
/// kind `P` (x̂₁ by default; [`MixtureOracle::predicting`] picks another).
///
/// Every prediction kind is computed in closed form, component by component, and averaged with
/// the posterior responsibilities — so the velocity and score stay finite at σ_t = 0 when every
/// s_k > 0, where converting x̂₁ through the path would divide by zero. Per component, with
/// `δ = x − α μ_k` and `v_k = α² s_k² + σ²`: x̂₁ = μ_k + (α s_k²/v_k) δ, ε̂ = (σ/v_k) δ,
/// score = −δ/v_k, u = α̇ μ_k + (v̇_k/2v_k) δ.
#[derive(Debug, Clone)]
pub struct MixtureOracle<S, P = Data> {
    schedule: S,
    log_weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    stds: Vec<f64>,
    kind: PhantomData<P>,
}

impl<S: Schedule> MixtureOracle<S, Data> {
    /// A mixture; weights are normalised.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for no components; [`Error::ShapeMismatch`] if the lists differ
    /// in length or the means in dimension; [`Error::InvalidParameter`] for a negative weight
    /// or a negative std (std = 0 gives a point mass).
    pub fn new(schedule: S, weights: Vec<f64>, means: Vec<Vec<f64>>, stds: Vec<f64>) -> Result<Self> {
        check::count_at_least_one("components", weights.len())?;
        if means.len() != weights.len() || stds.len() != weights.len() {
            return Err(Error::ShapeMismatch {
                what: "mixture weights / means / stds",
                expected: vec![weights.len(); 3],
                actual: vec![weights.len(), means.len(), stds.len()],
            });
        }
        let dim = means[0].len();
        if let Some(bad) = means.iter().find(|m| m.len() != dim) {
            return Err(Error::ShapeMismatch { what: "mixture mean dimension", expected: vec![dim], actual: vec![bad.len()] });
        }
        for m in means.iter().flatten() {
            check::finite("mean", *m)?;
        }
        for &w in &weights {
            check::non_negative("weight", w)?;
        }
        for &s in &stds {
            check::non_negative("std", s)?;
        }
        let total: f64 = weights.iter().sum();
        check::positive("sum of weights", total)?;
        Ok(Self {
            schedule,
            log_weights: weights.iter().map(|w| (w / total).ln()).collect(),
            means,
            stds,
            kind: PhantomData,
        })
    }
}

impl<S: Schedule, P: PredictionType> MixtureOracle<S, P> {
    /// The same oracle, predicting kind `Q` as a [`Model`].
    pub fn predicting<Q: PredictionType>(self) -> MixtureOracle<S, Q> {
        MixtureOracle {
            schedule: self.schedule,
            log_weights: self.log_weights,
            means: self.means,
            stds: self.stds,
            kind: PhantomData,
        }
    }

    /// The schedule.
    pub fn schedule(&self) -> &S {
        &self.schedule
    }

    /// Dimension of the data.
    pub fn dim(&self) -> usize {
        self.means[0].len()
    }

    /// Variance of component `k` of the marginal at `t` (floored at 1e-300 for point masses
    /// at σ = 0, where the responsibilities then select the nearest component).
    fn variance(&self, k: usize, t: f64) -> f64 {
        let (a, s) = (self.schedule.alpha(t), self.schedule.sigma(t));
        (a * a * self.stds[k] * self.stds[k] + s * s).max(1e-300)
    }

    /// Per-component log-densities `[B, K]` and centred inputs `x − α μ_k`.
    fn components(&self, flat: &Tensor<2>, t: &Times) -> (Tensor<2>, Vec<Tensor<2>>) {
        let device = flat.device();
        let [batch, dim] = flat.dims();
        let alpha = t.map(|t| self.schedule.alpha(t));
        let ones = Tensor::<2>::ones([batch, 1], &device);
        let mut logits = Vec::with_capacity(self.means.len());
        let mut centred = Vec::with_capacity(self.means.len());
        for k in 0..self.means.len() {
            let diff = flat.clone() - alpha.scale(row(&self.means[k], &device).expand([batch, dim]));
            let q = diff.clone().square().sum_dim(1);
            let log_norm = t.map(|t| {
                self.log_weights[k] - 0.5 * dim as f64 * (2.0 * core::f64::consts::PI * self.variance(k, t)).ln()
            });
            let inv = t.map(|t| -0.5 / self.variance(k, t));
            logits.push(inv.scale(q) + log_norm.scale(ones.clone()));
            centred.push(diff);
        }
        (Tensor::cat(logits, 1), centred)
    }

    /// The prediction of `kind` at `(x, t)` in closed form.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the per-sample size is not the mixture's dimension.
    pub fn predict_kind<const D: usize>(&self, x: Tensor<D>, t: &Times, kind: PredictionKind) -> Result<Tensor<D>> {
        let (flat, dims) = flatten(x);
        check_dim(&flat, self.dim())?;
        ensure_batch("x_t vs times", &flat, t.len())?;
        let device = flat.device();
        let [batch, dim] = flat.dims();
        let (logits, centred) = self.components(&flat, t);
        let responsibilities = softmax(logits, 1);
        let mut out = Tensor::<2>::zeros([batch, dim], &device);
        for (k, diff) in centred.into_iter().enumerate() {
            let s2 = self.stds[k] * self.stds[k];
            // (coefficient of μ_k, coefficient of δ) of the requested kind, per sample.
            let coefficients = |t: f64| -> (f64, f64) {
                let v = self.schedule.values(t);
                let var = self.variance(k, t);
                let gain = v.alpha * s2 / var;
                match kind {
                    PredictionKind::Data => (1.0, gain),
                    PredictionKind::Noise => (0.0, v.sigma / var),
                    PredictionKind::Score => (0.0, -1.0 / var),
                    PredictionKind::Velocity => {
                        let d_var = 2.0 * v.alpha * v.d_alpha * s2 + self.schedule.d_sigma2(t);
                        (v.d_alpha, d_var / (2.0 * var))
                    }
                    PredictionKind::VPrediction => (-v.sigma, v.alpha * v.sigma / var - v.sigma * gain),
                }
            };
            let on_mean = t.map(|t| coefficients(t).0);
            let on_diff = t.map(|t| coefficients(t).1);
            let mean = row(&self.means[k], &device).expand([batch, dim]);
            let component = on_mean.scale(mean) + on_diff.scale(diff);
            out = out + component * responsibilities.clone().narrow(1, k, 1);
        }
        Ok(out.reshape(dims))
    }

    /// `E[x₁ | x_t]`.
    ///
    /// # Errors
    /// As [`MixtureOracle::predict_kind`].
    pub fn denoise<const D: usize>(&self, x: Tensor<D>, t: &Times) -> Result<Tensor<D>> {
        self.predict_kind(x, t, PredictionKind::Data)
    }

    /// `log p_t(x)` of the marginal, `[batch]`.
    ///
    /// # Errors
    /// As [`MixtureOracle::predict_kind`].
    pub fn log_density<const D: usize>(&self, x: Tensor<D>, t: &Times) -> Result<Tensor<1>> {
        let (flat, _) = flatten(x);
        check_dim(&flat, self.dim())?;
        ensure_batch("x_t vs times", &flat, t.len())?;
        let (logits, _) = self.components(&flat, t);
        let max = logits.clone().max_dim(1);
        let lse = (logits - max.clone()).exp().sum_dim(1).log() + max;
        Ok(lse.squeeze_dim(1))
    }

    /// Posterior probabilities of the components given `x_t`, `[batch, K]`.
    ///
    /// # Errors
    /// As [`MixtureOracle::predict_kind`].
    pub fn responsibilities<const D: usize>(&self, x: Tensor<D>, t: &Times) -> Result<Tensor<2>> {
        let (flat, _) = flatten(x);
        check_dim(&flat, self.dim())?;
        ensure_batch("x_t vs times", &flat, t.len())?;
        let (logits, _) = self.components(&flat, t);
        Ok(log_softmax(logits, 1).exp())
    }

    /// Mixture mean and (full) covariance of the data distribution.
    pub fn data_moments(&self) -> (Vec<f64>, Vec<Vec<f64>>) {
        let d = self.dim();
        let w: Vec<f64> = self.log_weights.iter().map(|l| l.exp()).collect();
        let mean: Vec<f64> = (0..d).map(|i| w.iter().zip(&self.means).map(|(w, m)| w * m[i]).sum()).collect();
        let mut cov = vec![vec![0.0; d]; d];
        for (k, m) in self.means.iter().enumerate() {
            for i in 0..d {
                for j in 0..d {
                    let within = if i == j { self.stds[k] * self.stds[k] } else { 0.0 };
                    cov[i][j] += w[k] * (within + (m[i] - mean[i]) * (m[j] - mean[j]));
                }
            }
        }
        (mean, cov)
    }
}

impl<S: Schedule, P: PredictionType, const D: usize> Model<D> for MixtureOracle<S, P> {
    type Prediction = P;

    fn predict(&self, x_t: Tensor<D>, t: &Times, _condition: &Condition) -> Result<Predicted<P, D>> {
        self.predict_kind(x_t, t, P::KIND).map(Predicted::new)
    }
}

/// A Gaussian mixture whose components carry class labels: the exact class-conditional
/// model `p_t(x | y)` for labels `0..classes`, the exact unconditional model for the null label
/// `classes` (or no labels), and the exact noisy class posterior `p(y | x_t, t)` — ground truth
/// for classifier-free guidance, classifier guidance and their tests.
#[derive(Debug, Clone)]
pub struct LabelledMixtureOracle<S, P = Data> {
    marginal: MixtureOracle<S, P>,
    classes: Vec<MixtureOracle<S, P>>,
    component_class: Vec<usize>,
}

impl<S: Schedule + Clone> LabelledMixtureOracle<S, Data> {
    /// Components `(weight, mean, std, class)`; classes are `0..=max(class)` and each must own a
    /// component of positive weight.
    ///
    /// # Errors
    /// As [`MixtureOracle::new`]; [`Error::ShapeMismatch`] for a class list of another
    /// length; [`Error::InvalidCount`] for a class without weight.
    pub fn new(schedule: S, weights: Vec<f64>, means: Vec<Vec<f64>>, stds: Vec<f64>, classes: Vec<usize>) -> Result<Self> {
        if classes.len() != weights.len() {
            return Err(Error::ShapeMismatch { what: "component classes vs weights", expected: vec![weights.len()], actual: vec![classes.len()] });
        }
        let marginal = MixtureOracle::new(schedule.clone(), weights.clone(), means.clone(), stds.clone())?;
        let count = classes.iter().max().map_or(0, |m| m + 1);
        let mut per_class = Vec::with_capacity(count);
        for c in 0..count {
            let members: Vec<usize> = (0..weights.len()).filter(|&k| classes[k] == c && weights[k] > 0.0).collect();
            if members.is_empty() {
                return Err(Error::InvalidCount { name: "components of a class", value: 0, requirement: ">= 1 with positive weight for every class" });
            }
            per_class.push(MixtureOracle::new(
                schedule.clone(),
                members.iter().map(|&k| weights[k]).collect(),
                members.iter().map(|&k| means[k].clone()).collect(),
                members.iter().map(|&k| stds[k]).collect(),
            )?);
        }
        Ok(Self { marginal, classes: per_class, component_class: classes })
    }
}

impl<S: Schedule, P: PredictionType> LabelledMixtureOracle<S, P> {
    /// The same oracle, predicting kind `Q`.
    pub fn predicting<Q: PredictionType>(self) -> LabelledMixtureOracle<S, Q> {
        LabelledMixtureOracle {
            marginal: self.marginal.predicting(),
            classes: self.classes.into_iter().map(MixtureOracle::predicting).collect(),
            component_class: self.component_class,
        }
    }

    /// Number of classes (the null label is this number).
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The unconditional mixture.
    pub fn marginal(&self) -> &MixtureOracle<S, P> {
        &self.marginal
    }

    /// The mixture of class `class`.
    ///
    /// # Errors
    /// [`Error::ClassOutOfRange`] for a class outside `0..classes`.
    pub fn class(&self, class: usize) -> Result<&MixtureOracle<S, P>> {
        self.classes.get(class).ok_or(Error::ClassOutOfRange { label: class as i64, num_classes: self.classes.len(), null_allowed: false, what: "the labelled mixture" })
    }

    /// The exact class posterior `p(y | x_t, t)`, `[batch, classes]` (at t = 1 with a data
    /// schedule, the Bayes classifier of the data). Built from tensor ops, so it is
    /// differentiable in `x` on an autodiff device.
    ///
    /// # Errors
    /// As [`MixtureOracle::responsibilities`].
    pub fn class_posterior<const D: usize>(&self, x: Tensor<D>, t: &Times) -> Result<Tensor<2>> {
        let responsibilities = self.marginal.responsibilities(x, t)?;
        let device = responsibilities.device();
        let (k, c) = (self.component_class.len(), self.classes.len());
        let mut membership = vec![0.0; k * c];
        for (component, &class) in self.component_class.iter().enumerate() {
            membership[component * c + class] = 1.0;
        }
        Ok(responsibilities.matmul(Tensor::from_data(TensorData::new(membership, [k, c]), &device)))
    }
}

impl<S: Schedule, P: PredictionType, const D: usize> Model<D> for LabelledMixtureOracle<S, P> {
    type Prediction = P;

    /// Row i is class `labels[i]`'s prediction, or the unconditional one for the null label
    /// (or without labels).
    fn predict(&self, x_t: Tensor<D>, t: &Times, condition: &Condition) -> Result<Predicted<P, D>> {
        let Some(labels) = &condition.labels else {
            return self.marginal.predict_kind(x_t, t, P::KIND).map(Predicted::new);
        };
        let batch = x_t.dims()[0];
        if labels.dims()[0] != batch {
            return Err(Error::ShapeMismatch { what: "labels vs x_t", expected: vec![batch], actual: labels.dims().to_vec() });
        }
        flowforge_core::tensor::check_labels(labels, self.classes.len(), true, "the labelled mixture oracle")?;
        let mut shape = [1usize; D];
        shape[0] = batch;
        let select = |class: usize, prediction: Tensor<D>| -> Tensor<D> {
            let mask = labels.clone().equal_elem(class as i64).float().reshape(shape);
            prediction * mask
        };
        let mut out = select(self.classes.len(), self.marginal.predict_kind(x_t.clone(), t, P::KIND)?);
        for (class, oracle) in self.classes.iter().enumerate() {
            out = out + select(class, oracle.predict_kind(x_t.clone(), t, P::KIND)?);
        }
        Ok(Predicted::new(out))
    }
}

/// The empirical distribution of a data set (a mixture of point masses): the exact marginal
/// flow that memorises the training set.
#[derive(Debug, Clone)]
pub struct EmpiricalOracle<S> {
    schedule: S,
    data: Tensor<2>,
    squared_norms: Tensor<2>,
}

impl<S: Schedule> EmpiricalOracle<S> {
    /// The empirical distribution of the rows of `data` (`[N, d]`).
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for an empty data set.
    pub fn new(schedule: S, data: Tensor<2>) -> Result<Self> {
        check::count_at_least_one("data points", data.dims()[0])?;
        let squared_norms = data.clone().square().sum_dim(1).transpose();
        Ok(Self { schedule, data, squared_norms })
    }

    /// `E[x₁ | x_t] = Σ_j softmax_j(−‖x − α y_j‖²/(2σ²)) y_j` (the nearest point where σ = 0).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the per-sample size is not the data's dimension.
    pub fn denoise<const D: usize>(&self, x: Tensor<D>, t: &Times) -> Result<Tensor<D>> {
        let (flat, dims) = flatten(x);
        check_dim(&flat, self.data.dims()[1])?;
        ensure_batch("x_t vs times", &flat, t.len())?;
        let alpha = t.map(|t| self.schedule.alpha(t));
        // −‖x − α y‖²/(2σ²) = (2α x·y − α²‖y‖² − ‖x‖²)/(2σ²); the ‖x‖² term is constant per row.
        let precision = t.map(|t| {
            let s = self.schedule.sigma(t);
            (0.5 / (s * s)).min(1e20)
        });
        let cross = flat.matmul(self.data.clone().transpose());
        let logits = alpha.map(|a| 2.0 * a).scale(cross) - alpha.map(|a| a * a).scale(self.squared_norms.clone().expand([dims[0], self.data.dims()[0]]));
        let weights = softmax(precision.scale(logits), 1);
        Ok(weights.matmul(self.data.clone()).reshape(dims))
    }
}

impl<S: Schedule, const D: usize> Model<D> for EmpiricalOracle<S> {
    type Prediction = Data;

    fn predict(&self, x_t: Tensor<D>, t: &Times, _condition: &Condition) -> Result<Predicted<Data, D>> {
        self.denoise(x_t, t).map(Predicted::new)
    }
}
