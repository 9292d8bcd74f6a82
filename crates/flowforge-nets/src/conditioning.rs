//! The conditioning vector of the image networks: time features through a small MLP, plus a
//! learned class embedding (with a null label for classifier-free guidance), as in DDPM's U-Net
//! (Ho et al. 2020) and DiT (Peebles & Xie 2023).

use crate::jet::Jet;
use crate::{SinusoidalEmbedding, SinusoidalEmbeddingConfig};
use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use flowforge_core::{Condition, Error, Result};

/// Configuration of [`Conditioning`]: `c = W₂ SiLU(W₁ [φ(t₁), …]) + E[y]`.
#[derive(Config, Debug, PartialEq)]
pub struct ConditioningConfig {
    /// Width of the output vector.
    pub dim: usize,
    /// Sinusoidal features per time input.
    #[config(default = 64)]
    pub time_features: usize,
    /// Scale of t inside the sinusoids (1000 maps t ∈ [0, 1] onto DDPM's integer steps).
    #[config(default = 1000.0)]
    pub time_scale: f64,
    /// Time inputs: 1 (velocity, noise, denoiser) or 2 (MeanFlow's ū(x, a, b)).
    #[config(default = 1)]
    pub time_inputs: usize,
    /// Classes (0: unconditional); the embedding has a further null row `num_classes`.
    #[config(default = 0)]
    pub num_classes: usize,
}

impl ConditioningConfig {
    /// Build it.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for zero sizes or time inputs outside {1, 2}.
    pub fn init(&self, device: &Device) -> Result<Conditioning> {
        flowforge_core::error::check::count_at_least_one("dim", self.dim)?;
        if !(1..=2).contains(&self.time_inputs) {
            return Err(Error::InvalidCount { name: "time_inputs", value: self.time_inputs as i64, requirement: "1 or 2" });
        }
        let embedding = SinusoidalEmbeddingConfig::new().with_dim(self.time_features).with_scale(self.time_scale).init()?;
        Ok(Conditioning {
            embedding,
            first: LinearConfig::new(self.time_features * self.time_inputs, self.dim).init(device),
            second: LinearConfig::new(self.dim, self.dim).init(device),
            classes: (self.num_classes > 0).then(|| Initializer::Normal { mean: 0.0, std: 1.0 }.init([self.num_classes + 1, self.dim], device)),
            num_classes: self.num_classes,
            time_inputs: self.time_inputs,
        })
    }
}

/// See [`ConditioningConfig`].
#[derive(Module, Debug)]
pub struct Conditioning {
    embedding: SinusoidalEmbedding,
    first: Linear,
    second: Linear,
    classes: Option<Param<Tensor<2>>>,
    num_classes: usize,
    time_inputs: usize,
}

impl Conditioning {
    /// Number of time inputs.
    pub fn time_inputs(&self) -> usize {
        self.time_inputs
    }

    /// Number of classes (0: unconditional).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The conditioning vector `[batch, dim]` for time columns `[batch, 1]` (with tangents)
    /// and the condition (held fixed: it carries no tangent). A class-conditional network
    /// given no labels uses the null label.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for the wrong number or shape of times or labels;
    /// [`Error::ClassOutOfRange`] for labels outside `0..=num_classes` or any label on an
    /// unconditional network; [`Error::ShapeMismatch`] for condition vectors (unsupported).
    pub fn forward(&self, times: &[Jet<2>], condition: &Condition, batch: usize, device: &Device) -> Result<Jet<2>> {
        if times.len() != self.time_inputs {
            return Err(Error::ShapeMismatch { what: "number of time inputs", expected: vec![self.time_inputs], actual: vec![times.len()] });
        }
        if let Some(bad) = times.iter().find(|t| t.dims() != [batch, 1]) {
            return Err(Error::ShapeMismatch { what: "time column", expected: vec![batch, 1], actual: bad.dims().to_vec() });
        }
        if let Some(v) = &condition.vectors {
            return Err(Error::ShapeMismatch { what: "condition vectors (image networks take class labels only)", expected: vec![batch, 0], actual: v.dims().to_vec() });
        }
        let frequencies = self.embedding.frequency_row(device);
        let features: Vec<Jet<2>> = times
            .iter()
            .map(|t| {
                let arg = t.clone().linear(|x| x * frequencies.clone());
                Jet::cat(vec![arg.clone().sin(), arg.cos()], 1)
            })
            .collect();
        let mut c = Jet::cat(features, 1).through_linear(&self.first).silu().through_linear(&self.second);
        if let Some(rows) = crate::class_embedding_rows(self.classes.as_ref(), condition, self.num_classes, batch, device, "the network's class embedding")? {
            c = c.add(Jet::plain(rows));
        }
        Ok(c)
    }
}
