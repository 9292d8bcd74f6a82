//! The built-in continuous schedules, each an `XConfig` (serde-serialisable, documented
//! defaults) whose `init()` validates the parameters and returns the schedule.
//!
//! All formulas are in flowforge's convention, t = 0 noise and t = 1 data, and follow
//! facebookresearch/flow_matching where that library has the schedule.

use crate::schedule::{ConvexSchedule, Schedule, check_snr, inverse_in_range};
use burn::config::Config;
use core::f64::consts::FRAC_PI_2;
use flowforge_core::error::check;
use flowforge_core::Result;
#[cfg(any(doc, test))]
use flowforge_core::Error;

// ---------------------------------------------------------------------------------------------
// CondOT
// ---------------------------------------------------------------------------------------------

/// Configuration of the [`CondOt`] schedule.
#[derive(Config, Debug, PartialEq)]
pub struct CondOtConfig {
    /// Noise level left at the data end, σ₁ = σ_min ∈ [0, 1). `0` gives rectified flow.
    #[config(default = 0.0)]
    pub sigma_min: f64,
}

impl CondOtConfig {
    /// Validate and build.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `sigma_min ∈ [0, 1)`.
    pub fn init(&self) -> Result<CondOt> {
        check::unit_right_open("sigma_min", self.sigma_min)?;
        Ok(CondOt {
            sigma_min: self.sigma_min,
        })
    }
}

/// The conditional optimal-transport (linear) schedule: `α_t = t`,
/// `σ_t = 1 − (1 − σ_min) t`.
///
/// Lipman et al., *Flow Matching for Generative Modeling*, ICLR 2023 (eq. 20, with σ_min);
/// Liu et al., *Flow Straight and Fast: Rectified Flow*, ICLR 2023 (σ_min = 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CondOt {
    sigma_min: f64,
}

impl Default for CondOt {
    fn default() -> Self {
        Self { sigma_min: 0.0 }
    }
}

impl CondOt {
    /// σ_min.
    pub fn sigma_min(&self) -> f64 {
        self.sigma_min
    }
}

impl Schedule for CondOt {
    fn alpha(&self, t: f64) -> f64 {
        t
    }
    fn sigma(&self, t: f64) -> f64 {
        1.0 - (1.0 - self.sigma_min) * t
    }
    fn d_alpha(&self, _t: f64) -> f64 {
        1.0
    }
    fn d_sigma(&self, _t: f64) -> f64 {
        -(1.0 - self.sigma_min)
    }
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        check_snr(snr)?;
        // t / (1 − c t) = r  ⇒  t = r / (1 + c r)
        let c = 1.0 - self.sigma_min;
        let t = if snr.is_infinite() { 1.0 / c } else { snr / (1.0 + c * snr) };
        inverse_in_range("snr", snr, t, (0.0, self.snr(1.0)))
    }
}

impl ConvexSchedule for CondOt {
    fn kappa_inverse(&self, kappa: f64) -> Result<f64> {
        inverse_in_range("kappa", kappa, kappa, (0.0, 1.0))
    }
}

// ---------------------------------------------------------------------------------------------
// Polynomial convex
// ---------------------------------------------------------------------------------------------

/// Configuration of the [`PolynomialConvex`] schedule.
#[derive(Config, Debug, PartialEq)]
pub struct PolynomialConvexConfig {
    /// Exponent n > 0 of κ_t = tⁿ.
    #[config(default = 2.0)]
    pub n: f64,
}

impl PolynomialConvexConfig {
    /// Validate and build.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `n` is finite and > 0.
    pub fn init(&self) -> Result<PolynomialConvex> {
        check::positive("n", self.n)?;
        Ok(PolynomialConvex { n: self.n })
    }
}

/// The polynomial convex schedule `κ_t = tⁿ`: `α_t = tⁿ`, `σ_t = 1 − tⁿ`
/// (Lipman et al., *Flow Matching Guide and Code*, 2024, §4.8.2; flow_matching's
/// `PolynomialConvexScheduler`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolynomialConvex {
    n: f64,
}

impl PolynomialConvex {
    /// The exponent n.
    pub fn n(&self) -> f64 {
        self.n
    }
}

impl Schedule for PolynomialConvex {
    fn alpha(&self, t: f64) -> f64 {
        t.powf(self.n)
    }
    fn sigma(&self, t: f64) -> f64 {
        1.0 - t.powf(self.n)
    }
    fn d_alpha(&self, t: f64) -> f64 {
        self.n * t.powf(self.n - 1.0)
    }
    fn d_sigma(&self, t: f64) -> f64 {
        -self.d_alpha(t)
    }
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        check_snr(snr)?;
        // κ/(1−κ) = r  ⇒  κ = r/(1+r)
        let kappa = if snr.is_infinite() { 1.0 } else { snr / (1.0 + snr) };
        self.kappa_inverse(kappa)
    }
}

impl ConvexSchedule for PolynomialConvex {
    fn kappa_inverse(&self, kappa: f64) -> Result<f64> {
        let t = kappa.powf(1.0 / self.n);
        inverse_in_range("kappa", kappa, t, (0.0, 1.0))
    }
}

// ---------------------------------------------------------------------------------------------
// Cosine
// ---------------------------------------------------------------------------------------------

/// Configuration of the [`Cosine`] schedule (no parameters).
#[derive(Config, Debug, PartialEq)]
pub struct CosineConfig {}

impl CosineConfig {
    /// Build (cannot fail; returns `Result` like every schedule config).
    pub fn init(&self) -> Result<Cosine> {
        Ok(Cosine)
    }
}

/// The trigonometric schedule `α_t = sin(πt/2)`, `σ_t = cos(πt/2)` (variance preserving).
///
/// Nichol & Dhariwal, *Improved DDPM*, 2021 (cosine ᾱ); Albergo & Vanden-Eijnden, *Building
/// Normalizing Flows with Stochastic Interpolants*, ICLR 2023; flow_matching's
/// `CosineScheduler`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cosine;

impl Schedule for Cosine {
    fn alpha(&self, t: f64) -> f64 {
        (FRAC_PI_2 * t).sin()
    }
    fn sigma(&self, t: f64) -> f64 {
        (FRAC_PI_2 * t).cos()
    }
    fn d_alpha(&self, t: f64) -> f64 {
        FRAC_PI_2 * (FRAC_PI_2 * t).cos()
    }
    fn d_sigma(&self, t: f64) -> f64 {
        -FRAC_PI_2 * (FRAC_PI_2 * t).sin()
    }
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        check_snr(snr)?;
        Ok(snr.atan() / FRAC_PI_2)
    }
}

// ---------------------------------------------------------------------------------------------
// Linear VP
// ---------------------------------------------------------------------------------------------

/// Configuration of the [`LinearVp`] schedule (no parameters).
#[derive(Config, Debug, PartialEq)]
pub struct LinearVpConfig {}

impl LinearVpConfig {
    /// Build (cannot fail).
    pub fn init(&self) -> Result<LinearVp> {
        Ok(LinearVp)
    }
}

/// The linear variance-preserving schedule `α_t = t`, `σ_t = √(1 − t²)`
/// (flow_matching's `LinearVPScheduler`; Lipman et al. 2024, §4.8).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinearVp;

impl Schedule for LinearVp {
    fn alpha(&self, t: f64) -> f64 {
        t
    }
    fn sigma(&self, t: f64) -> f64 {
        (1.0 - t * t).sqrt()
    }
    fn d_alpha(&self, _t: f64) -> f64 {
        1.0
    }
    fn d_sigma(&self, t: f64) -> f64 {
        -t / (1.0 - t * t).sqrt()
    }
    fn d_sigma2(&self, t: f64) -> f64 {
        -2.0 * t
    }
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        check_snr(snr)?;
        Ok(if snr.is_infinite() { 1.0 } else { snr / (1.0 + snr * snr).sqrt() })
    }
}

// ---------------------------------------------------------------------------------------------
// VP and sub-VP (Song et al. 2021)
// ---------------------------------------------------------------------------------------------

/// Configuration of the [`Vp`] schedule.
#[derive(Config, Debug, PartialEq)]
pub struct VpConfig {
    /// β at the data end (t = 1), β_min > 0.
    #[config(default = 0.1)]
    pub beta_min: f64,
    /// β at the noise end (t = 0), β_max ≥ β_min.
    #[config(default = 20.0)]
    pub beta_max: f64,
}

impl VpConfig {
    /// Validate and build.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless both betas are finite and > 0;
    /// [`Error::InconsistentParameters`] if `beta_min > beta_max`.
    pub fn init(&self) -> Result<Vp> {
        Ok(Vp {
            beta: LinearBeta::new(self.beta_min, self.beta_max)?,
        })
    }
}

/// Configuration of the [`SubVp`] schedule.
#[derive(Config, Debug, PartialEq)]
pub struct SubVpConfig {
    /// β at the data end (t = 1), β_min > 0.
    #[config(default = 0.1)]
    pub beta_min: f64,
    /// β at the noise end (t = 0), β_max ≥ β_min.
    #[config(default = 20.0)]
    pub beta_max: f64,
}

impl SubVpConfig {
    /// Validate and build.
    ///
    /// # Errors
    /// As [`VpConfig::init`].
    pub fn init(&self) -> Result<SubVp> {
        Ok(SubVp {
            beta: LinearBeta::new(self.beta_min, self.beta_max)?,
        })
    }
}

/// The linear β(s) = β_min + s(β_max − β_min) of Song et al. (2021), in noise time `s = 1 − t`,
/// and its integral `B(t) = ∫₀^{1−t} β = β_min s + ½ s² (β_max − β_min)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LinearBeta {
    beta_min: f64,
    beta_max: f64,
}

impl LinearBeta {
    fn new(beta_min: f64, beta_max: f64) -> Result<Self> {
        check::positive("beta_min", beta_min)?;
        check::positive("beta_max", beta_max)?;
        check::not_greater("beta_min", beta_min, "beta_max", beta_max)?;
        Ok(Self { beta_min, beta_max })
    }

    /// B(t).
    fn integral(&self, t: f64) -> f64 {
        let s = 1.0 - t;
        0.5 * s * s * (self.beta_max - self.beta_min) + s * self.beta_min
    }

    /// dB/dt = −β(1 − t).
    fn d_integral(&self, t: f64) -> f64 {
        let s = 1.0 - t;
        -(s * (self.beta_max - self.beta_min) + self.beta_min)
    }

    /// The time at which B(t) = b (b ≥ 0), from the quadratic in s = 1 − t.
    fn time_at_integral(&self, b: f64) -> f64 {
        let a = 0.5 * (self.beta_max - self.beta_min);
        let s = if a == 0.0 {
            b / self.beta_min
        } else {
            // Stable root of a s² + β_min s − b = 0 with s ≥ 0.
            2.0 * b / (self.beta_min + (self.beta_min * self.beta_min + 4.0 * a * b).sqrt())
        };
        1.0 - s
    }
}

/// The variance-preserving schedule of the VP SDE with linear β (Song et al., *Score-Based
/// Generative Modeling through Stochastic Differential Equations*, ICLR 2021; the continuous
/// limit of DDPM): `α_t = exp(−B(t)/2)`, `σ_t = √(1 − exp(−B(t)))` with
/// `B(t) = ½(1−t)²(β_max − β_min) + (1−t)β_min` (flow_matching's `VPScheduler`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vp {
    beta: LinearBeta,
}

impl Vp {
    /// β_min.
    pub fn beta_min(&self) -> f64 {
        self.beta.beta_min
    }
    /// β_max.
    pub fn beta_max(&self) -> f64 {
        self.beta.beta_max
    }
}

impl Schedule for Vp {
    fn alpha(&self, t: f64) -> f64 {
        (-0.5 * self.beta.integral(t)).exp()
    }
    fn sigma(&self, t: f64) -> f64 {
        (-(-self.beta.integral(t)).exp_m1()).sqrt()
    }
    fn d_alpha(&self, t: f64) -> f64 {
        -0.5 * self.beta.d_integral(t) * self.alpha(t)
    }
    fn d_sigma(&self, t: f64) -> f64 {
        let b = self.beta.integral(t);
        0.5 * self.beta.d_integral(t) * (-b).exp() / (-(-b).exp_m1()).sqrt()
    }
    fn d_sigma2(&self, t: f64) -> f64 {
        // σ² = 1 − e^{−B}
        self.beta.d_integral(t) * (-self.beta.integral(t)).exp()
    }
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        check_snr(snr)?;
        // α²/σ² = r²  ⇒  e^{−B} = r²/(1+r²)  ⇒  B = log(1 + 1/r²)
        let b = (1.0 / (snr * snr)).ln_1p();
        let t = self.beta.time_at_integral(b);
        inverse_in_range("snr", snr, t, (self.snr(0.0), f64::INFINITY))
    }
}

/// The sub-VP schedule (Song et al. 2021, eq. 29): the VP mean with the smaller standard
/// deviation `σ_t = 1 − exp(−B(t))`, so `α_t = exp(−B(t)/2)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubVp {
    beta: LinearBeta,
}

impl SubVp {
    /// β_min.
    pub fn beta_min(&self) -> f64 {
        self.beta.beta_min
    }
    /// β_max.
    pub fn beta_max(&self) -> f64 {
        self.beta.beta_max
    }
}

impl Schedule for SubVp {
    fn alpha(&self, t: f64) -> f64 {
        (-0.5 * self.beta.integral(t)).exp()
    }
    fn sigma(&self, t: f64) -> f64 {
        -(-self.beta.integral(t)).exp_m1()
    }
    fn d_alpha(&self, t: f64) -> f64 {
        -0.5 * self.beta.d_integral(t) * self.alpha(t)
    }
    fn d_sigma(&self, t: f64) -> f64 {
        self.beta.d_integral(t) * (-self.beta.integral(t)).exp()
    }
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        check_snr(snr)?;
        // a/(1 − a²) = r with a = α  ⇒  r a² + a − r = 0  ⇒  a = 2r / (1 + √(1 + 4r²))
        let a = if snr.is_infinite() { 1.0 } else { 2.0 * snr / (1.0 + (1.0 + 4.0 * snr * snr).sqrt()) };
        let b = -2.0 * a.ln();
        let t = self.beta.time_at_integral(b);
        inverse_in_range("snr", snr, t, (self.snr(0.0), f64::INFINITY))
    }
}

// ---------------------------------------------------------------------------------------------
// VE
// ---------------------------------------------------------------------------------------------

/// Configuration of the [`Ve`] schedule.
#[derive(Config, Debug, PartialEq)]
pub struct VeConfig {
    /// Noise level at the data end (t = 1), σ_min > 0.
    #[config(default = 0.01)]
    pub sigma_min: f64,
    /// Noise level at the noise end (t = 0), σ_max > σ_min.
    #[config(default = 50.0)]
    pub sigma_max: f64,
}

impl VeConfig {
    /// Validate and build.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless both sigmas are finite and > 0;
    /// [`Error::InconsistentParameters`] if `sigma_min >= sigma_max`.
    pub fn init(&self) -> Result<Ve> {
        check::positive("sigma_min", self.sigma_min)?;
        check::positive("sigma_max", self.sigma_max)?;
        check::ordered("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)?;
        Ok(Ve {
            sigma_min: self.sigma_min,
            sigma_max: self.sigma_max,
        })
    }
}

/// The variance-exploding schedule with geometric noise levels (Song & Ermon, NCSN, 2019;
/// Song et al. 2021): `α_t = 1`, `σ_t = σ_min (σ_max/σ_min)^{1−t}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ve {
    sigma_min: f64,
    sigma_max: f64,
}

impl Ve {
    /// σ_min.
    pub fn sigma_min(&self) -> f64 {
        self.sigma_min
    }
    /// σ_max.
    pub fn sigma_max(&self) -> f64 {
        self.sigma_max
    }
    fn log_ratio(&self) -> f64 {
        (self.sigma_max / self.sigma_min).ln()
    }
}

impl Schedule for Ve {
    fn alpha(&self, _t: f64) -> f64 {
        1.0
    }
    fn sigma(&self, t: f64) -> f64 {
        self.sigma_min * ((1.0 - t) * self.log_ratio()).exp()
    }
    fn d_alpha(&self, _t: f64) -> f64 {
        0.0
    }
    fn d_sigma(&self, t: f64) -> f64 {
        -self.log_ratio() * self.sigma(t)
    }
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        check_snr(snr)?;
        let t = 1.0 - (1.0 / snr / self.sigma_min).ln() / self.log_ratio();
        inverse_in_range("snr", snr, t, (1.0 / self.sigma_max, 1.0 / self.sigma_min))
    }
}

// ---------------------------------------------------------------------------------------------
// EDM / Karras
// ---------------------------------------------------------------------------------------------

/// Configuration of the [`Edm`] schedule; defaults are Karras et al. (2022), Table 1.
#[derive(Config, Debug, PartialEq)]
pub struct EdmConfig {
    /// Smallest noise level (t = 1).
    #[config(default = 0.002)]
    pub sigma_min: f64,
    /// Largest noise level (t = 0).
    #[config(default = 80.0)]
    pub sigma_max: f64,
    /// Warping exponent ρ > 0 of the noise levels (7 in the paper).
    #[config(default = 7.0)]
    pub rho: f64,
    /// Standard deviation of the data, used by EDM preconditioning and loss weighting.
    #[config(default = 0.5)]
    pub sigma_data: f64,
}

impl EdmConfig {
    /// Validate and build.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless every parameter is finite and > 0;
    /// [`Error::InconsistentParameters`] if `sigma_min >= sigma_max`.
    pub fn init(&self) -> Result<Edm> {
        check::positive("sigma_min", self.sigma_min)?;
        check::positive("sigma_max", self.sigma_max)?;
        check::positive("rho", self.rho)?;
        check::positive("sigma_data", self.sigma_data)?;
        check::ordered("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)?;
        Ok(Edm {
            sigma_min: self.sigma_min,
            sigma_max: self.sigma_max,
            rho: self.rho,
            sigma_data: self.sigma_data,
        })
    }
}

/// The EDM schedule in σ-space (Karras et al., *Elucidating the Design Space of
/// Diffusion-Based Generative Models*, NeurIPS 2022, eq. 5): `α_t = 1` and
/// `σ_t = (σ_max^{1/ρ} + t (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`, so a uniform grid in t is exactly
/// the Karras ρ-grid of k-diffusion's `get_sigmas_karras`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edm {
    sigma_min: f64,
    sigma_max: f64,
    rho: f64,
    sigma_data: f64,
}

impl Edm {
    /// σ_min.
    pub fn sigma_min(&self) -> f64 {
        self.sigma_min
    }
    /// σ_max.
    pub fn sigma_max(&self) -> f64 {
        self.sigma_max
    }
    /// ρ.
    pub fn rho(&self) -> f64 {
        self.rho
    }
    /// σ_data.
    pub fn sigma_data(&self) -> f64 {
        self.sigma_data
    }
    fn inv_rho_endpoints(&self) -> (f64, f64) {
        (
            self.sigma_max.powf(1.0 / self.rho),
            self.sigma_min.powf(1.0 / self.rho),
        )
    }
}

impl Schedule for Edm {
    fn alpha(&self, _t: f64) -> f64 {
        1.0
    }
    fn sigma(&self, t: f64) -> f64 {
        let (max_inv, min_inv) = self.inv_rho_endpoints();
        (max_inv + t * (min_inv - max_inv)).powf(self.rho)
    }
    fn d_alpha(&self, _t: f64) -> f64 {
        0.0
    }
    fn d_sigma(&self, t: f64) -> f64 {
        let (max_inv, min_inv) = self.inv_rho_endpoints();
        self.rho * (min_inv - max_inv) * (max_inv + t * (min_inv - max_inv)).powf(self.rho - 1.0)
    }
    fn snr_inverse(&self, snr: f64) -> Result<f64> {
        check_snr(snr)?;
        let (max_inv, min_inv) = self.inv_rho_endpoints();
        let sigma = 1.0 / snr;
        let t = (sigma.powf(1.0 / self.rho) - max_inv) / (min_inv - max_inv);
        inverse_in_range("snr", snr, t, (1.0 / self.sigma_max, 1.0 / self.sigma_min))
    }
}

// ---------------------------------------------------------------------------------------------
// User-defined schedules from closures
// ---------------------------------------------------------------------------------------------

type ScalarFn = Box<dyn Fn(f64) -> f64 + Send + Sync>;

/// A user-defined schedule from a closure pair `(α, σ)`, optionally with their derivatives.
///
/// Without explicit derivatives, α̇ and σ̇ come from fourth-order finite differences with step
/// `h = 1e-3` (central inside `[2h, 1 − 2h]`, one-sided near the ends so the closures are never
/// evaluated outside `[0, 1]`); their error is `O(h⁴)` ≈ 1e-12 times the fifth derivative.
///
/// ```
/// use flowforge_paths::{FnSchedule, Schedule};
/// // A "quadratic-in, linear-out" schedule written on the spot.
/// let s = FnSchedule::new(|t| t * t, |t| 1.0 - t);
/// assert!((s.d_alpha(0.5) - 1.0).abs() < 1e-9);
/// ```
pub struct FnSchedule {
    alpha: ScalarFn,
    sigma: ScalarFn,
    derivatives: Option<(ScalarFn, ScalarFn)>,
}

impl FnSchedule {
    /// A schedule from `α(t)` and `σ(t)`, derivatives by finite differences.
    pub fn new(
        alpha: impl Fn(f64) -> f64 + Send + Sync + 'static,
        sigma: impl Fn(f64) -> f64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            alpha: Box::new(alpha),
            sigma: Box::new(sigma),
            derivatives: None,
        }
    }

    /// Supply exact derivatives `α̇(t)` and `σ̇(t)`.
    pub fn with_derivatives(
        mut self,
        d_alpha: impl Fn(f64) -> f64 + Send + Sync + 'static,
        d_sigma: impl Fn(f64) -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.derivatives = Some((Box::new(d_alpha), Box::new(d_sigma)));
        self
    }
}

impl core::fmt::Debug for FnSchedule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FnSchedule")
            .field("exact_derivatives", &self.derivatives.is_some())
            .finish()
    }
}

/// Fourth-order finite-difference derivative of `f` at `t`, never leaving `[0, 1]`.
pub(crate) fn derivative(f: &dyn Fn(f64) -> f64, t: f64) -> f64 {
    const H: f64 = 1e-3;
    if (2.0 * H..=1.0 - 2.0 * H).contains(&t) {
        (f(t - 2.0 * H) - 8.0 * f(t - H) + 8.0 * f(t + H) - f(t + 2.0 * H)) / (12.0 * H)
    } else if t < 2.0 * H {
        (-25.0 * f(t) + 48.0 * f(t + H) - 36.0 * f(t + 2.0 * H) + 16.0 * f(t + 3.0 * H)
            - 3.0 * f(t + 4.0 * H))
            / (12.0 * H)
    } else {
        (25.0 * f(t) - 48.0 * f(t - H) + 36.0 * f(t - 2.0 * H) - 16.0 * f(t - 3.0 * H)
            + 3.0 * f(t - 4.0 * H))
            / (12.0 * H)
    }
}

impl Schedule for FnSchedule {
    fn alpha(&self, t: f64) -> f64 {
        (self.alpha)(t)
    }
    fn sigma(&self, t: f64) -> f64 {
        (self.sigma)(t)
    }
    fn d_alpha(&self, t: f64) -> f64 {
        match &self.derivatives {
            Some((d_alpha, _)) => d_alpha(t),
            None => derivative(&*self.alpha, t),
        }
    }
    fn d_sigma(&self, t: f64) -> f64 {
        match &self.derivatives {
            Some((_, d_sigma)) => d_sigma(t),
            None => derivative(&*self.sigma, t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn config_defaults_are_the_papers() {
        let vp = VpConfig::new().init().unwrap();
        assert_eq!((vp.beta_min(), vp.beta_max()), (0.1, 20.0));
        let edm = EdmConfig::new().init().unwrap();
        assert_eq!(
            (edm.sigma_min(), edm.sigma_max(), edm.rho(), edm.sigma_data()),
            (0.002, 80.0, 7.0, 0.5)
        );
        assert_eq!(CondOtConfig::new().init().unwrap().sigma_min(), 0.0);
        assert_eq!(PolynomialConvexConfig::new().init().unwrap().n(), 2.0);
    }

    #[test]
    fn edm_endpoints_are_sigma_max_and_sigma_min() {
        let edm = EdmConfig::new().init().unwrap();
        assert_relative_eq!(edm.sigma(0.0), 80.0, max_relative = 1e-13);
        assert_relative_eq!(edm.sigma(1.0), 0.002, max_relative = 1e-13);
    }

    #[test]
    fn ve_endpoints_and_inverse() {
        let ve = VeConfig::new().init().unwrap();
        assert_relative_eq!(ve.sigma(0.0), 50.0, max_relative = 1e-13);
        assert_relative_eq!(ve.sigma(1.0), 0.01, max_relative = 1e-13);
        for t in [0.0, 0.3, 0.9, 1.0] {
            assert_relative_eq!(ve.snr_inverse(ve.snr(t)).unwrap(), t, epsilon = 1e-12);
        }
        assert!(matches!(
            ve.snr_inverse(1e6),
            Err(Error::OutOfScheduleRange { what: "snr", .. })
        ));
    }

    #[test]
    fn closed_form_inverses_agree_with_bisection() {
        #[derive(Debug)]
        struct Bisect<S: Schedule>(S);
        impl<S: Schedule> Schedule for Bisect<S> {
            fn alpha(&self, t: f64) -> f64 {
                self.0.alpha(t)
            }
            fn sigma(&self, t: f64) -> f64 {
                self.0.sigma(t)
            }
            fn d_alpha(&self, t: f64) -> f64 {
                self.0.d_alpha(t)
            }
            fn d_sigma(&self, t: f64) -> f64 {
                self.0.d_sigma(t)
            }
        }
        let sub_vp = SubVpConfig::new().init().unwrap();
        let edm = EdmConfig::new().init().unwrap();
        for snr in [0.05, 0.5, 1.0, 3.0, 40.0] {
            assert_relative_eq!(
                sub_vp.snr_inverse(snr).unwrap(),
                Bisect(sub_vp).snr_inverse(snr).unwrap(),
                max_relative = 1e-12
            );
            assert_relative_eq!(
                edm.snr_inverse(snr).unwrap(),
                Bisect(edm).snr_inverse(snr).unwrap(),
                max_relative = 1e-12
            );
        }
    }

    #[test]
    fn fn_schedule_finite_differences_are_accurate_to_the_edges() {
        let s = FnSchedule::new(|t: f64| (1.3 * t).sin(), |t: f64| (-2.0 * t).exp());
        for t in [0.0, 0.001, 0.5, 0.999, 1.0] {
            assert_relative_eq!(s.d_alpha(t), 1.3 * (1.3 * t).cos(), max_relative = 1e-10);
            assert_relative_eq!(s.d_sigma(t), -2.0 * (-2.0 * t).exp(), max_relative = 1e-10);
        }
    }
}
