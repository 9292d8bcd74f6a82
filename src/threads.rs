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

/// While it lives, rayon's other pool threads poll for work instead of sleeping between
/// parallel regions ([`keep_workers_polling`]); dropping it lets them sleep again.
#[must_use = "the workers poll only while the guard lives"]
pub struct PollingWorkers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for PollingWorkers {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Keep rayon's other pool threads polling for work, one core each, until the returned guard is
/// dropped: a parallel region this thread starts is then picked up at once rather than after a
/// futex wake-up. Returns `None`, doing nothing, when the calling thread is not a pool thread
/// (call [`compute_on_calling_thread`] first).
///
/// Why: an idle rayon thread yields for a few dozen rounds and then sleeps, and waking it costs
/// 7–30 µs. A batch-256 training step of the W1 MLP is about 1.5 ms of some ten parallel
/// regions with serial work between them (autodiff bookkeeping, small ops), so the other core
/// slept and was woken several times a step. Polling took the W3 step at batch 256 from
/// 1.44–1.54 to 1.10–1.20 ms and W1 / W2 training from 591–628 to 730–747 steps/s on a
/// two-core Sapphire Rapids (`docs/performance.md`, session 28). PyTorch's OpenMP threads do
/// the same by default (libgomp spins `GOMP_SPINCOUNT` = 300,000 rounds before sleeping).
///
/// Each polling thread runs a job that executes whatever work it finds (`rayon::yield_now`)
/// and spins otherwise, so nothing waits on it; it keeps its core busy while the guard lives,
/// which is the price: hold the guard around training and sampling loops, not for a whole
/// program that mostly waits.
///
/// Take it from the thread that drives the loop, outside any parallel region, as the examples
/// do. (A polling job can start on a thread while one of its jobs waits for another; taken
/// inside a parallel region, the guard's owner could end up waiting for that suspended job,
/// which only resumes once the guard is dropped.)
pub fn keep_workers_polling() -> Option<PollingWorkers> {
    let me = rayon::current_thread_index()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    rayon::spawn_broadcast(move |context| {
        // The calling thread's own copy of the job returns at once.
        if context.index() == me {
            return;
        }
        while !flag.load(std::sync::atomic::Ordering::Acquire) {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::hint::spin_loop();
            }
        }
    });
    Some(PollingWorkers { stop })
}
