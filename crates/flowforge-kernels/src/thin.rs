//! Products with a thin dimension (`m`, `n` or `k` at most [`THIN`]): the MLP's input layer
//! (`k` = 3), its 256 → 2 output layer (`n` = 2 forward, `k` = 2 for `∂x`), the weight gradient
//! of both, every bias gradient (`m` = 1, `1ᵀ·∂z`) and a one-channel convolution.
//!
//! A register-blocked GEMM is the wrong tool for them: its tiles are mostly padding and its
//! packing costs as much as the arithmetic. The `gemm` crate ran the W3 output layer's `∂x`
//! (4,096 × 256 × 2) at 0.8 GFLOP/s, 5 ms for a product that writes 4 MB. These products are
//! memory-bound, so they run as one of two streaming loops:
//!
//! - **row updates** (thin `k`, or thin `m` with B's rows contiguous): `C[i,:] += Σ_p A[i,p]·B[p,:]`;
//! - **dot products** (thin `n` with A's rows contiguous, or thin `m` with B's columns
//!   contiguous): `C[i,j] = ⟨A[i,:], B[:,j]⟩`.
//!
//! A thin operand in another layout is packed first (at most `THIN × len`), and a thin `n` with
//! A's columns contiguous is computed as `Cᵀ = Bᵀ·Aᵀ` by row updates.

use rayon::prelude::*;
use std::borrow::Cow;

use crate::flex::simd::{axpy_block, dot_block};

/// The largest dimension handled here.
pub(crate) const THIN: usize = 4;

/// Whether [`thin_gemm`] serves a product of this shape.
pub(crate) fn is_thin(m: usize, n: usize, k: usize) -> bool {
    m.min(n).min(k) <= THIN && m > 0 && n > 0 && k > 0
}

/// `C (+)= A·B` for a thin shape ([`is_thin`]) with `A[i,p] = lhs[i·lrs + p·lcs]`,
/// `B[p,j] = rhs[p·rrs + j·rcs]` and C row-major `m × n`. Returns false, touching nothing, when
/// the shape is not thin or the layout is one this module does not stream (both of a thick
/// operand's strides above 1); the caller then runs its general GEMM.
///
/// # Panics
/// When an index implied by the shapes and strides is out of bounds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn thin_gemm(
    parallel: bool,
    c: &mut [f32],
    accumulate: bool,
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    (lrs, lcs): (usize, usize),
    rhs: &[f32],
    (rrs, rcs): (usize, usize),
) -> bool {
    if !is_thin(m, n, k) {
        return false;
    }
    let c = &mut c[..m * n];
    if n <= THIN {
        if lcs == 1 {
            // C[i,j] = ⟨A[i,:], B[:,j]⟩, B's columns packed when they are not contiguous.
            let (b, ldb) = if rrs == 1 { (Cow::Borrowed(rhs), rcs) } else { (Cow::Owned(pack(rhs, (rcs, rrs), n, k)), k) };
            by_rows(parallel, c, n, 256, |i0, c| dot_block(c, n, c.len() / n, n, &lhs[i0 * lrs..], lrs, &b, ldb, k, accumulate));
            return true;
        }
        if lrs == 1 {
            // Cᵀ = Bᵀ·Aᵀ by row updates: Aᵀ's rows are A's contiguous columns.
            by_rows(parallel, c, n, 1024, |i0, c| {
                let rows = c.len() / n;
                let mut t = vec![0.0f32; n * rows];
                axpy_block(&mut t, rows, rows, rhs, (rcs, rrs), n, k, &lhs[i0..], lcs, false);
                for (r, c) in c.chunks_exact_mut(n).enumerate() {
                    for (j, c) in c.iter_mut().enumerate() {
                        *c = if accumulate { *c + t[j * rows + r] } else { t[j * rows + r] };
                    }
                }
            });
            return true;
        }
        return false;
    }
    if k <= THIN {
        // Row updates, B's k rows packed when they are not contiguous.
        let (b, ldb) = if rcs == 1 { (Cow::Borrowed(rhs), rrs) } else { (Cow::Owned(pack(rhs, (rrs, rcs), k, n)), n) };
        // About 32 KiB of C a block, so it stays in L1 across the k updates.
        let rows = (8192 / n).max(1);
        by_rows(parallel, c, n, rows, |i0, c| axpy_block(c, n, n, &lhs[i0 * lrs..], (lrs, lcs), c.len() / n, k, &b, ldb, accumulate));
        return true;
    }
    if rcs == 1 {
        // Thin m, B's rows contiguous: B streamed once in bands of rows, each band's partial
        // `m × n` sum apart (small), then added up.
        let band = if parallel { k.div_ceil(2 * rayon::current_num_threads()).max(256) } else { k };
        let partial = |p0: usize| {
            let rows = band.min(k - p0);
            let mut t = vec![0.0f32; m * n];
            axpy_block(&mut t, n, n, &lhs[p0 * lcs..], (lrs, lcs), m, rows, &rhs[p0 * rrs..], rrs, false);
            t
        };
        let starts: Vec<usize> = (0..k).step_by(band).collect();
        let partials: Vec<Vec<f32>> = if parallel { starts.par_iter().map(|&p0| partial(p0)).collect() } else { starts.iter().map(|&p0| partial(p0)).collect() };
        for (i, c) in c.iter_mut().enumerate() {
            let sum = partials.iter().fold(0.0f32, |s, t| s + t[i]);
            *c = if accumulate { *c + sum } else { sum };
        }
        return true;
    }
    if rrs != 1 {
        return false;
    }
    // Thin m, B's columns contiguous: dot products, C split into column blocks.
    let (a, lda) = if lcs == 1 { (Cow::Borrowed(lhs), lrs) } else { (Cow::Owned(pack(lhs, (lrs, lcs), m, k)), k) };
    let width = 64;
    let block = |j0: usize| {
        let cols = width.min(n - j0);
        let mut t: Vec<f32> = if accumulate { (0..m).flat_map(|i| c[i * n + j0..i * n + j0 + cols].iter().copied()).collect() } else { vec![0.0; m * cols] };
        dot_block(&mut t, cols, m, cols, &a, lda, &rhs[j0 * rcs..], rcs, k, accumulate);
        t
    };
    let starts: Vec<usize> = (0..n).step_by(width).collect();
    let blocks: Vec<Vec<f32>> = if parallel { starts.par_iter().map(|&j0| block(j0)).collect() } else { starts.iter().map(|&j0| block(j0)).collect() };
    for (&j0, t) in starts.iter().zip(&blocks) {
        let cols = width.min(n - j0);
        for i in 0..m {
            c[i * n + j0..i * n + j0 + cols].copy_from_slice(&t[i * cols..(i + 1) * cols]);
        }
    }
    true
}

/// Run `f(first_row, rows)` on blocks of `rows_per_block` rows of the row-major `m × n` C, in
/// parallel or in order.
fn by_rows(parallel: bool, c: &mut [f32], n: usize, rows_per_block: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let len = rows_per_block * n;
    if parallel {
        c.par_chunks_mut(len).enumerate().for_each(|(b, c)| f(b * rows_per_block, c));
    } else {
        c.chunks_mut(len).enumerate().for_each(|(b, c)| f(b * rows_per_block, c));
    }
}

/// The `rows × cols` matrix `M[r, s] = x[r·rs + s·cs]`, row-major.
pub(crate) fn pack(x: &[f32], (rs, cs): (usize, usize), rows: usize, cols: usize) -> Vec<f32> {
    (0..rows).flat_map(|r| (0..cols).map(move |s| x[r * rs + s * cs])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sgemm::tests::{assert_product, values};

    /// Every thin shape of the MLP and the convolutions (and a few ragged ones), every
    /// transpose of A and B, in order and in parallel, overwrite and accumulate: against an f64
    /// triple loop. Every one of these layouts is served here (none falls back).
    #[test]
    fn thin_products_match_a_triple_loop_for_every_layout() {
        let shapes = [
            (4096, 256, 2),
            (300, 70, 3),
            (257, 2, 256),
            (1000, 1, 37),
            (256, 2, 4096),
            (1, 256, 4096),
            (3, 130, 1000),
            (4, 4, 4),
            (1, 1, 1),
            (2, 3, 1),
            (7, 9, 4),
        ];
        for &(m, n, k) in &shapes {
            for (transpose_a, transpose_b) in [(false, false), (true, false), (false, true), (true, true)] {
                for parallel in [false, true] {
                    for accumulate in [false, true] {
                        let a = values(m * k, 1);
                        let b = values(k * n, 2);
                        let (ars, acs) = if transpose_a { (1, m) } else { (k, 1) };
                        let (brs, bcs) = if transpose_b { (1, k) } else { (n, 1) };
                        let c0 = values(m * n, 3);
                        let mut c = c0.clone();
                        let served = thin_gemm(parallel, &mut c, accumulate, (m, n, k), &a, (ars, acs), &b, (brs, bcs));
                        let case = format!("{m}×{n}×{k} ta {transpose_a} tb {transpose_b} parallel {parallel} acc {accumulate}");
                        assert!(served, "{case} was not served");
                        assert_product(&case, &c, &c0, accumulate, (m, n, k), (&a, (ars, acs)), (&b, (brs, bcs)));
                    }
                }
            }
        }
    }

    #[test]
    fn thick_shapes_and_unstreamable_layouts_are_left_to_the_gemm() {
        let (a, b) = (vec![1.0f32; 64 * 64], vec![1.0f32; 64 * 64]);
        let mut c = vec![7.0f32; 64 * 64];
        assert!(!thin_gemm(false, &mut c, false, (8, 8, 8), &a, (8, 1), &b, (8, 1)));
        // Thin n with A strided both ways (neither its rows nor its columns contiguous).
        assert!(!thin_gemm(false, &mut c, false, (8, 2, 8), &a, (16, 2), &b, (2, 1)));
        assert!(c.iter().all(|&v| v == 7.0), "a refused product wrote to C");
        assert!(!thin_gemm(false, &mut c, false, (0, 2, 8), &a, (8, 1), &b, (2, 1)));
    }
}
