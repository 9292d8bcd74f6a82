//! Opt-in tuning of the C allocator for large CPU tensors.
//!
//! burn-flex allocates every activation and gradient anew. glibc serves allocations above its
//! mmap threshold (at most 32 MiB) with a fresh `mmap`, so each step of a large-batch training
//! loop maps, page-faults in (zero-filled) and unmaps the same few hundred MB: at batch 65,536
//! that was a fifth of the W3 training step (`docs/performance.md`). [`retain_freed_memory`]
//! makes glibc serve large blocks from its heap and keep freed memory for reuse instead.
//!
//! It is a process-wide setting, so flowforge never applies it by itself: call it at the top of
//! `main` when CPU throughput matters more than returning memory to the system. The price is
//! that the process keeps its peak heap size until it exits.

/// Make glibc keep freed memory for reuse (`mallopt(M_MMAP_MAX, 0)` and an unbounded
/// `M_TRIM_THRESHOLD`). Returns whether the setting was applied: `false` on anything other than
/// Linux with glibc, where it does nothing.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's allocation policy; both parameters are valid
        // options and values, and existing allocations are unaffected.
        unsafe { libc::mallopt(libc::M_MMAP_MAX, 0) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn applies_on_glibc_and_large_buffers_still_work() {
        assert!(super::retain_freed_memory());
        // A 64 MiB buffer, freed and allocated again, is intact (served from the heap now).
        for round in 0..2u32 {
            let v = vec![round as f32; 16 << 20];
            assert!(v.iter().all(|x| *x == round as f32));
        }
    }
}
