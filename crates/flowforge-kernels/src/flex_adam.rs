//! The Adam(W) update as one pass over the parameter, its gradient and both moments, on
//! burn-flex's f32 buffers.
//!
//! burn-optim's Adam is about a dozen tensor ops per parameter (`m·β₁`, `g·(1−β₁)`, their sum,
//! `g²`, …, `p − Δ`), each a pass over memory and a fresh allocation; at the W1 MLP's size
//! (133k parameters, batch 256) they cost a fifth of a training step. Here the moments and the
//! parameter are rewritten in place when their buffers are not shared (the usual case: the
//! optimiser owns its state, and the previous parameter dies with the step), and copied
//! first when they are (a checkpoint's record or a user's clone keeps its values).

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::AdamStep;
use crate::flex::simd::{self, AdamScalars};
use crate::flex::{f32_data, unique_dense_f32};

/// Element-wise passes split across threads in chunks of this many elements; smaller tensors
/// stay on the calling thread (waking a worker costs more than the pass).
const CHUNK: usize = 1 << 15;

/// The fused Adam update as a burn backend extension (flex only; other devices run
/// [`crate::adam_update_reference`]).
#[backend_extension(Flex)]
pub trait FusedAdamBackend: Backend {
    /// `(p′, m′, v′)` after one Adam(W) step with the given per-step scalars.
    #[allow(clippy::too_many_arguments)]
    fn fused_adam(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment1: FloatTensor<Self>,
        moment2: FloatTensor<Self>,
        beta1: f64,
        beta2: f64,
        step_size: f64,
        epsilon_hat: f64,
        decay: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

pub(crate) fn adam<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment1: Tensor<D>,
    moment2: Tensor<D>,
    step: &AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = <burn::backend::Dispatch as FusedAdamBackend>::fused_adam(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment1.into_dispatch(),
        moment2.into_dispatch(),
        step.beta1,
        step.beta2,
        step.step_size,
        step.epsilon_hat,
        step.decay,
    );
    (Tensor::from_dispatch(p), Tensor::from_dispatch(m), Tensor::from_dispatch(v))
}

/// The tensor itself when its buffer may be rewritten in place, else a dense copy.
fn owned_dense(mut t: FlexTensor) -> FlexTensor {
    if unique_dense_f32(&mut t).is_some() {
        return t;
    }
    let shape = t.layout().shape().clone();
    FlexTensor::from_data(TensorData::new(f32_data(&t).into_owned(), shape))
}

impl FusedAdamBackend for Flex {
    fn fused_adam(
        param: FlexTensor,
        grad: FlexTensor,
        moment1: FlexTensor,
        moment2: FlexTensor,
        beta1: f64,
        beta2: f64,
        step_size: f64,
        epsilon_hat: f64,
        decay: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let c = AdamScalars {
            beta1: beta1 as f32,
            beta2: beta2 as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            step_size: step_size as f32,
            epsilon_hat: epsilon_hat as f32,
            decay: decay as f32,
        };
        let (mut p, mut m, mut v) = (owned_dense(param), owned_dense(moment1), owned_dense(moment2));
        let g = f32_data(&grad);
        {
            let (ps, ms, vs) = (
                unique_dense_f32(&mut p).expect("made dense and unshared above"),
                unique_dense_f32(&mut m).expect("made dense and unshared above"),
                unique_dense_f32(&mut v).expect("made dense and unshared above"),
            );
            if ps.len() <= CHUNK {
                simd::adam(ps, ms, vs, &g, &c);
            } else {
                ps.par_chunks_mut(CHUNK)
                    .zip(ms.par_chunks_mut(CHUNK))
                    .zip(vs.par_chunks_mut(CHUNK))
                    .zip(g.par_chunks(CHUNK))
                    .for_each(|(((p, m), v), g)| simd::adam(p, m, v, g, &c));
            }
        }
        (p, m, v)
    }
}
