//! Make the thread that drives training and sampling one of the compute threads.
//!
//! flowforge's CPU kernels (and burn-flex, and the `gemm` crate) split work with rayon. Called
//! from a thread outside rayon's pool, every parallel region is *injected*: the caller queues
//! the job, wakes a pool thread, sleeps, and is woken when the job ends. Two futex round trips
//! per region are nothing next to a 65,536-row GEMM but dominate a batch-256 training step,
//! which runs a few dozen regions of tens of microseconds each; the profile of W1 showed the
//! calling thread asleep for most of the step. Made a pool thread (rayon's
//! `use_current_thread`), the caller runs its share of each region itself and only hands the
//! other half over: the W1 training loop went from ~790 to ~1,070 steps/s
//! (`docs/performance.md`).
//!
//! It is a process-wide setting of rayon's global pool, possible only before anything has used
//! that pool, so flowforge's library crates never apply it; [`crate::cli::main`] (every
//! bundled example) and the benchmarks do, and applications call it at the top of `main`.

/// Build rayon's global pool with the calling thread as its thread 0 (and as many threads in
/// all as `RAYON_NUM_THREADS` or the CPU count says). Returns whether it took effect: `false`
/// when the global pool already existed (something used rayon first), which leaves it as it was.
///
/// Call it from the thread that will run the training or sampling loop, and keep that thread
/// alive (it is normally `main`): the other pool threads hand work back to it.
pub fn compute_on_calling_thread() -> bool {
    rayon::ThreadPoolBuilder::new().use_current_thread().build_global().is_ok()
}

/// Whether the calling thread is one of rayon's pool threads (so parallel regions it starts run
/// without a hand-over).
pub fn calling_thread_computes() -> bool {
    rayon::current_thread_index().is_some()
}
