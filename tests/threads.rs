//! `flowforge::threads`: the calling thread joins rayon's global pool as its thread 0, once, and
//! the parallel kernels it then starts compute what they computed before. (Its own test binary:
//! the global pool is process-wide.)

use burn::tensor::{Distribution, Tensor};
use flowforge::kernels::{FusedActivation, linear, linear_reference};
use flowforge::threads::{calling_thread_computes, compute_on_calling_thread, keep_workers_polling};
use rayon::prelude::*;

#[test]
fn the_calling_thread_becomes_a_compute_thread_once_and_kernels_agree() {
    assert!(!calling_thread_computes(), "a test thread starts outside rayon's pool");
    assert!(keep_workers_polling().is_none(), "outside the pool there is nothing to keep polling");
    assert!(compute_on_calling_thread());
    assert!(calling_thread_computes());
    // The pool exists now: a second call changes nothing and says so.
    assert!(!compute_on_calling_thread());
    assert!(calling_thread_computes());

    // A product large enough to be split across threads, from this thread, against plain ops.
    let device = flowforge::default_device();
    device.seed(9);
    let x = Tensor::<2>::random([1000, 256], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<2>::random([256, 256], Distribution::Normal(0.0, 0.1), &device);
    let b = Tensor::<1>::random([256], Distribution::Normal(0.0, 0.1), &device);
    let fused = linear(x.clone(), w.clone(), Some(b.clone()), FusedActivation::Silu).unwrap();
    let plain = linear_reference(x.clone(), w.clone(), Some(b.clone()), FusedActivation::Silu);
    let diff = (fused.clone() - plain).abs().max().into_scalar::<f64>();
    assert!(diff < 1e-4, "max |fused − plain| = {diff}");

    // With the other threads polling (they run the regions' jobs from inside their polling
    // job), the same product gives the same bits, nested regions finish, and after the guard
    // is dropped the pool still serves work.
    let polling = keep_workers_polling().expect("a pool thread");
    for _ in 0..20 {
        let again = linear(x.clone(), w.clone(), Some(b.clone()), FusedActivation::Silu).unwrap();
        assert_eq!(again.into_data(), fused.clone().into_data());
        let nested: u64 = (0..64u64).into_par_iter().map(|i| (0..1000u64).into_par_iter().map(|j| i * j).sum::<u64>()).sum();
        assert_eq!(nested, (0..64u64).sum::<u64>() * (0..1000u64).sum::<u64>());
    }
    drop(polling);
    let total: u64 = (0..100_000u64).into_par_iter().sum();
    assert_eq!(total, 99_999 * 100_000 / 2);
}
