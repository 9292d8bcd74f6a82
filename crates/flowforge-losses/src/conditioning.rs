//! Conditioning for training: label dropout (one network learns conditional and
//! unconditional predictions, for classifier-free guidance) and the noise-aware classifier's
//! cross-entropy (for classifier guidance).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use flowforge_core::tensor::check_labels;
use flowforge_core::{Condition, Error, Result};
use rand::{Rng, RngExt};

/// Label dropout (Ho & Salimans, *Classifier-Free Diffusion Guidance*, 2022): each sample's
/// condition is replaced, with probability `probability`, by the null label (class labels) and
/// by zeros (continuous vectors).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelDropout {
    /// Probability of dropping a sample's condition (0.1–0.2 is usual).
    pub probability: f64,
    /// The null label (the number of classes, for flowforge's conditional networks).
    pub null_label: i64,
}

impl LabelDropout {
    /// Dropout with `probability` to `null_label`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a probability outside [0, 1] or a negative null label.
    pub fn new(probability: f64, null_label: i64) -> Result<Self> {
        if !(0.0..=1.0).contains(&probability) {
            return Err(Error::invalid("label dropout probability", probability, "in [0, 1]"));
        }
        if null_label < 0 {
            return Err(Error::invalid("null label", null_label as f64, ">= 0"));
        }
        Ok(Self { probability, null_label })
    }

    /// The condition with a random subset of its samples dropped (the draws come from `rng`, on
    /// the host, so a run is reproducible from its seed on every backend).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if labels and vectors disagree on the batch size.
    pub fn apply<R: Rng + ?Sized>(&self, condition: &Condition, rng: &mut R) -> Result<Condition> {
        let batch = match (&condition.labels, &condition.vectors) {
            (Some(l), Some(v)) if l.dims()[0] != v.dims()[0] => {
                return Err(Error::ShapeMismatch { what: "labels vs condition vectors", expected: vec![v.dims()[0]], actual: l.dims().to_vec() });
            }
            (Some(l), _) => l.dims()[0],
            (None, Some(v)) => v.dims()[0],
            (None, None) => return Ok(Condition::none()),
        };
        let dropped: Vec<bool> = (0..batch).map(|_| rng.random::<f64>() < self.probability).collect();
        let device = condition.labels.as_ref().map(Tensor::device).or_else(|| condition.vectors.as_ref().map(Tensor::device)).unwrap_or_default();
        let mask = Tensor::<1, Bool>::from_data(TensorData::new(dropped, [batch]), &device);
        Ok(Condition {
            labels: condition.labels.clone().map(|l| l.mask_fill(mask.clone(), self.null_label)),
            vectors: condition.vectors.clone().map(|v| {
                let dim = v.dims()[1];
                v.mask_fill(mask.clone().reshape([batch, 1]).expand([batch, dim]), 0.0)
            }),
        })
    }
}

/// Mean cross-entropy `−mean_i log softmax(logits_i)[y_i]` of classifier logits `[batch,
/// classes]` against labels `[batch]`: the loss of a noise-aware classifier `p(y | x_t, t)`
/// trained on path samples `x_t` (Dhariwal & Nichol, *Diffusion Models Beat GANs on Image
/// Synthesis*, NeurIPS 2021), and of an ordinary classifier at `t = 1`.
///
/// # Errors
/// [`Error::ShapeMismatch`] for labels of another batch size; [`Error::ClassOutOfRange`] for a
/// label outside `0..classes`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Result<Tensor<1>> {
    let [batch, classes] = logits.dims();
    if labels.dims()[0] != batch {
        return Err(Error::ShapeMismatch { what: "labels vs logits", expected: vec![batch], actual: labels.dims().to_vec() });
    }
    check_labels(&labels, classes, false, "the classifier")?;
    let log_p = log_softmax(logits, 1);
    Ok(log_p.gather(1, labels.reshape([batch, 1])).mean().neg())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use flowforge_core::tensor::{tensor_from_rows, tensor_to_vec};
    use rand::SeedableRng;

    #[test]
    fn cross_entropy_matches_the_hand_computed_value() {
        let device = Device::flex();
        let logits = tensor_from_rows(&[vec![1.0, 2.0, 0.5], vec![0.0, 0.0, 0.0]], &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
        let value = cross_entropy(logits, labels).unwrap().into_scalar::<f64>();
        let first = -(2.0f64 - (1.0f64.exp() + 2.0f64.exp() + 0.5f64.exp()).ln());
        let second = 3.0f64.ln();
        assert!((value - (first + second) / 2.0).abs() < 1e-6, "{value}");
    }

    #[test]
    fn out_of_range_labels_are_typed_errors() {
        let device = Device::flex();
        let logits = tensor_from_rows(&[vec![1.0, 2.0]], &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64], [1]), &device);
        assert!(matches!(cross_entropy(logits, labels), Err(Error::ClassOutOfRange { label: 2, num_classes: 2, .. })));
    }

    #[test]
    fn dropout_replaces_the_expected_fraction_with_the_null_label() {
        let device = Device::flex();
        let n = 4000;
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64; n], [n]), &device);
        let vectors = Tensor::<2>::ones([n, 2], &device);
        let condition = Condition { labels: Some(labels), vectors: Some(vectors) };
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let out = LabelDropout::new(0.2, 10).unwrap().apply(&condition, &mut rng).unwrap();
        let labels = out.labels.unwrap().try_into_vec_as::<i64>().unwrap();
        let vectors = tensor_to_vec(out.vectors.unwrap());
        let dropped = labels.iter().filter(|&&l| l == 10).count();
        assert!(labels.iter().all(|&l| l == 3 || l == 10));
        // Binomial(4000, 0.2): mean 800, sd 25.
        assert!((dropped as f64 - 800.0).abs() < 100.0, "{dropped}");
        // The same samples lose their vectors.
        for (i, &l) in labels.iter().enumerate() {
            let zero = vectors[2 * i] == 0.0 && vectors[2 * i + 1] == 0.0;
            assert_eq!(zero, l == 10);
        }
        assert!(LabelDropout::new(1.5, 10).is_err());
    }
}
