//! The terms of the diffusion variational bound, `L_vlb` (Ho et al., *DDPM*, 2020, eq. 5;
//! Nichol & Dhariwal, *Improved DDPM*, 2021, §3.1), on any affine path.
//!
//! Between a noisier time t and a cleaner time s the reverse model is
//! `p_θ(x_s | x_t) = N(μ(x_t, x̂₁), v)` with the posterior mean of
//! [`GaussianTransition`](flowforge_paths::GaussianTransition) evaluated at the model's x̂₁ and
//! a fixed variance v ([`DdpmVariance`]); the bound's term is
//! `KL(q(x_s | x_t, x₁) ‖ p_θ(x_s | x_t))`. On the last step, to the clean end (σ_s = 0), the
//! term is the decoder's negative log-likelihood `−log N(x₁; μ, σ²_{t|s})` (DDPM's
//! `σ₁² = β₁`). All in nats, summed over features: one value per sample.

use burn::tensor::{Distribution, Tensor};
use flowforge_core::tensor::ensure_same_shape;
use flowforge_core::{Condition, Data, Error, Model, Predicted, Result, Times};
use flowforge_paths::{AffinePath, DdpmVariance, Schedule};

fn per_sample_sum<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let dims = x.dims();
    let per: usize = dims[1..].iter().product();
    let flat: Tensor<2> = x.reshape([dims[0], per]);
    flat.sum_dim(1).squeeze_dim(1)
}

/// The bound's term of the step `t_cur → t_next` for data `x1`, noisy point `x_t` and the
/// model's x̂₁ `predicted`, per sample (nats).
///
/// # Errors
/// [`Error::ShapeMismatch`]; [`Error::SingularTime`] where the transition is undefined.
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(a > b)` is true for NaN too, which must fail the check")]
pub fn vlb_term<S: Schedule, const D: usize>(
    path: &AffinePath<S>,
    x1: Tensor<D>,
    x_t: Tensor<D>,
    predicted: Tensor<D>,
    t_cur: f64,
    t_next: f64,
    variance: DdpmVariance,
) -> Result<Tensor<1>> {
    ensure_same_shape("x_t vs x1", &x1, &x_t)?;
    ensure_same_shape("predicted vs x1", &x1, &predicted)?;
    let q = path.transition(t_cur, t_next)?;
    let mean_p = predicted.mul_scalar(q.posterior_data) + x_t.clone().mul_scalar(q.posterior_x);
    let next = path.schedule().values(t_next);
    if next.sigma == 0.0 {
        // Decoder: −log N(α_s x₁; μ_p, σ²_{t|s}).
        let v = q.sigma2_ts;
        if !(v > 0.0) {
            return Err(Error::SingularTime { what: "the decoder likelihood", t: t_cur, reason: "σ²_{t|s} = 0 (the two times coincide)" });
        }
        let nll = (x1.mul_scalar(next.alpha) - mean_p).square().mul_scalar(0.5 / v).add_scalar(0.5 * (2.0 * core::f64::consts::PI * v).ln());
        return Ok(per_sample_sum(nll));
    }
    let mean_q = x1.mul_scalar(q.posterior_data) + x_t.mul_scalar(q.posterior_x);
    let (var_q, var_p) = (q.posterior_variance.max(1e-20), variance.of(&q));
    let constant = 0.5 * ((var_p / var_q).ln() + var_q / var_p - 1.0);
    let kl = (mean_q - mean_p).square().mul_scalar(0.5 / var_p).add_scalar(constant);
    Ok(per_sample_sum(kl))
}

/// The whole variational bound `L_vlb = L_prior + Σ_k L_k + L_decoder` per sample (nats) of a
/// model sampled by DDPM on `times` (increasing, from the noisiest time to the data at 1, e.g.
/// a `DiscreteTimesteps` axis): the prior term `KL(q(x_{t₀} | x₁) ‖ N(0, I))`, one
/// [`vlb_term`] per step with `x_t ~ q(x_t | x₁)` drawn afresh on the device (Ho et al. 2020,
/// eq. 5, the unbiased one-sample estimate), and the decoder's NLL on the last step. Divide
/// by `d ln 2` for bits per dimension ([`bits_per_dim`]).
///
/// # Errors
/// [`Error::InvalidGrid`] unless `times` increases to exactly 1 with at least two points;
/// the model's and [`vlb_term`]'s errors.
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(a > b)` is true for NaN too, which must fail the check")]
pub fn ddpm_vlb<M: Model<D>, S: Schedule, const D: usize>(
    model: &M,
    path: &AffinePath<S>,
    x1: Tensor<D>,
    times: &[f64],
    variance: DdpmVariance,
    condition: &Condition,
) -> Result<Tensor<1>> {
    if times.len() < 2 || times.windows(2).any(|w| !(w[1] > w[0])) || times.last() != Some(&1.0) || times[0] < 0.0 {
        return Err(Error::InvalidGrid { reason: "the VLB needs increasing times in [0, 1] ending at 1", index: 0, value: times.first().copied().unwrap_or(f64::NAN) });
    }
    let batch = x1.dims()[0];
    let device = x1.device();
    let start = path.schedule().values(times[0]);
    // KL(N(α x₁, σ²) ‖ N(0, 1)) per feature: ½(σ² + α² x₁² − 1 − ln σ²).
    let sigma2 = (start.sigma * start.sigma).max(1e-300);
    let prior = x1.clone().square().mul_scalar(start.alpha * start.alpha).add_scalar(sigma2 - 1.0 - sigma2.ln()).mul_scalar(0.5);
    let mut total = per_sample_sum(prior);
    for w in times.windows(2) {
        let (t_cur, t_next) = (w[0], w[1]);
        let at = path.schedule().values(t_cur);
        let noise = Tensor::<D>::random(x1.dims(), Distribution::Normal(0.0, 1.0), &device);
        let x_t = x1.clone().mul_scalar(at.alpha) + noise.mul_scalar(at.sigma);
        let t = Times::shared(t_cur, batch)?;
        let prediction = model.predict(x_t.clone(), &t, condition)?;
        let denoised = path.convert::<M::Prediction, Data, D>(prediction, x_t.clone(), &t).map(Predicted::into_tensor)?;
        total = total + vlb_term(path, x1.clone(), x_t, denoised, t_cur, t_next, variance)?;
    }
    Ok(total)
}

/// Mean negative log-likelihood in bits per dimension from per-sample nats and the data
/// dimension `d`: `mean(nats) / (d ln 2)`.
pub fn bits_per_dim(nats: &[f64], dim: usize) -> f64 {
    nats.iter().sum::<f64>() / nats.len().max(1) as f64 / (dim as f64 * core::f64::consts::LN_2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use flowforge_core::tensor::{tensor_from_rows, tensor_to_vec};
    use flowforge_paths::DiscreteScheduleConfig;

    #[test]
    fn kl_vanishes_for_the_true_data_and_matches_the_closed_form() {
        let device = Device::flex();
        let schedule = DiscreteScheduleConfig::new().init().unwrap();
        let axis = schedule.timesteps();
        let path = AffinePath::new(schedule.clone());
        let x1 = tensor_from_rows(&[vec![0.5, -1.0]], &device);
        let x_t = tensor_from_rows(&[vec![0.2, 0.3]], &device);
        let (t, s) = (axis.to_time(500).unwrap().value(), axis.to_time(499).unwrap().value());
        let exact = tensor_to_vec(vlb_term(&path, x1.clone(), x_t.clone(), x1.clone(), t, s, DdpmVariance::FixedSmall).unwrap());
        assert!(exact[0].abs() < 1e-9, "KL with the true x̂₁ and the posterior variance: {}", exact[0]);
        // Off by δ in x̂₁: KL = ‖c_data δ‖²/(2 β̃) with β̃ the posterior variance.
        let wrong = tensor_from_rows(&[vec![0.6, -1.0]], &device);
        let kl = tensor_to_vec(vlb_term(&path, x1.clone(), x_t.clone(), wrong, t, s, DdpmVariance::FixedSmall).unwrap())[0];
        let q = path.transition(t, s).unwrap();
        let expected = (q.posterior_data * 0.1).powi(2) / (2.0 * q.posterior_variance);
        assert!((kl - expected).abs() <= 1e-3 * expected, "{kl} vs {expected}");
        // With the larger variance β there is a constant: ½(log(β/β̃) + β̃/β − 1) per feature.
        let kl_large = tensor_to_vec(vlb_term(&path, x1.clone(), x_t.clone(), x1.clone(), t, s, DdpmVariance::FixedLarge).unwrap())[0];
        let ratio = q.posterior_variance / q.sigma2_ts;
        assert!((kl_large - 2.0 * 0.5 * (-ratio.ln() + ratio - 1.0)).abs() < 1e-6);
        // The last step is the decoder's NLL at variance β₀.
        let t0 = axis.to_time(0).unwrap().value();
        let nll = tensor_to_vec(vlb_term(&path, x1.clone(), x_t, x1, t0, 1.0, DdpmVariance::FixedSmall).unwrap())[0];
        let beta0 = schedule.betas()[0];
        assert!((nll - 2.0 * 0.5 * (2.0 * core::f64::consts::PI * beta0).ln()).abs() < 1e-4);
    }
}
