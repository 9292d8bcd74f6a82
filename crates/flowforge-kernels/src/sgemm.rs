//! Single-precision GEMM, `C = [C +] A·B`, in the BLIS layout: B packed into `KC × NR` column
//! slivers that stay in L1, A packed into `MR × KC` row slivers that stay in L2, and a register-
//! blocked micro-kernel (AVX-512 `12 × 32`, or AVX2 + FMA `6 × 16`) that streams them.
//!
//! Why not the `gemm` crate, which burn-flex calls: on AVX-512 machines (Zen 4/5) it reaches
//! about 60% of OpenBLAS's rate; the micro-kernel below keeps 24 `zmm` accumulators busy. On an
//! AVX2 Zen 1 it reached 37 GFLOP/s on the MLP's `4096 × 256 × 256` products where MKL reaches
//! 65: its packing and blocking, not its 12-register kernel, lose the time.
//! Reference: Van Zee & van de Geijn, "BLIS: A Framework for Rapidly Instantiating BLAS
//! Functionality", ACM TOMS 41(3), 2015; Goto & van de Geijn, "Anatomy of High-Performance
//! Matrix Multiplication", ACM TOMS 34(3), 2008.

use std::cell::RefCell;

/// A read-only strided matrix view: element `(i, j)` is at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef {
    pub(crate) ptr: *const f32,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl MatRef {
    /// The view starting at `(i, j)`.
    unsafe fn offset(self, i: usize, j: usize) -> Self {
        Self { ptr: unsafe { self.ptr.add(i * self.rs + j * self.cs) }, ..self }
    }
}

// SAFETY: a view handed to worker threads only reads, and the caller keeps the buffer alive.
unsafe impl Send for MatRef {}
unsafe impl Sync for MatRef {}

/// The im2col matrix of a stride-1 convolution, read straight from zero-padded images while B
/// is packed ("implicit GEMM"): nothing of size `C·kh·kw × columns` is ever written.
///
/// Row `r = (c·kh + i)·kw + j`, column `q = n·Ho·Wo + oy·Wo + ox` (image `n` of the group);
/// `B[r, q] = xp[n, c, oy + i, ox + j]` with `xp` the padded images ([`pad_images`] writes them).
#[derive(Clone, Copy)]
pub(crate) struct Im2col {
    /// The first padded image, `[images, C, Hp, Wp]` contiguous, with [`IM2COL_SLACK`]
    /// readable floats before and after (the packing loads whole 16- or 8-lane vectors and
    /// keeps only the lanes of each run).
    pub(crate) x: *const f32,
    pub(crate) channels: usize,
    /// `[Hp, Wp]`, the padded size.
    pub(crate) padded: [usize; 2],
    /// `[kh, kw]`.
    pub(crate) kernel: [usize; 2],
    /// `[Ho, Wo] = [Hp − kh + 1, Wp − kw + 1]`.
    pub(crate) out: [usize; 2],
    /// The first column this view starts at (a thread's share of the columns).
    pub(crate) first_column: usize,
    /// 0 where the padded images hold their zero columns (`Wp = W + 2·pw`); `pw` in the
    /// row-padded layout ([`PadLayout::Rows`]), where they hold only the zero rows (`Wp = W`)
    /// and a patch entry `(c, i, j)` starts `j − pw` from its column's pixel, its lanes that
    /// fall outside the image row masked off ([`entry_mask`]).
    pub(crate) column_pad: usize,
}

/// How [`pad_images`] lays out its padded images.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PadLayout {
    /// Zero rows and zero columns around each plane: every patch entry's run of a half-sliver
    /// is a contiguous run of an output row (rows a multiple of the kernels' half-sliver).
    Full,
    /// Zero rows only: a plane's rows stay contiguous, so a half-sliver of 16 lanes spans
    /// `16 / W` output rows of an 8-, 4-, 2- or 1-wide image and is still one load, with the
    /// lanes that would wrap into the neighbouring row masked ([`row_padded_im2col`]).
    Rows,
}

/// Readable floats an [`Im2col`] view needs before its first and after its last image.
pub(crate) const IM2COL_SLACK: usize = 16;

/// Floats [`pad_images`] needs for `images` images of `channels × [h, w]` padded by `padding`
/// in `layout`.
pub(crate) fn padded_len(images: usize, channels: usize, [h, w]: [usize; 2], [ph, pw]: [usize; 2], layout: PadLayout) -> usize {
    let stored_pw = if layout == PadLayout::Rows { 0 } else { pw };
    images * channels * (h + 2 * ph) * (w + 2 * stored_pw) + 2 * IM2COL_SLACK
}

/// Whether the row-padded layout ([`PadLayout::Rows`]) serves a stride-1 convolution with an
/// `out`-sized output, `kernel_w` wide and padded by `pw` on each side: a kernel that reads it
/// in place with masks (AVX-512), rows narrower than its 16-lane half and dividing it, planes
/// a whole number of halves (a half never spans two images, which are not contiguous), and an
/// output as wide as the input. The 8 × 8 and 4 × 4 levels of a U-Net were packed (a copy of
/// the whole im2col matrix) for want of it.
pub(crate) fn row_padded_im2col(out: [usize; 2], kernel_w: usize, pw: usize) -> bool {
    arch().is_some_and(|a| {
        let lanes = a.direct_im2col_lanes;
        a.masked_im2col && out[1] < lanes && lanes.is_multiple_of(out[1]) && (out[0] * out[1]).is_multiple_of(lanes) && kernel_w == 2 * pw + 1 && kernel_w <= MAX_KW_MASKED
    })
}

/// The widest kernel the row-padded layout serves (its masks are tabled per kernel column).
const MAX_KW_MASKED: usize = 15;

/// The lanes of a half-sliver (lane `l` the output pixel `l mod wo` of its row, half-slivers
/// starting on whole rows) whose input pixel for kernel column `j` lies inside the row, in the
/// row-padded layout: `0 ≤ l mod wo + j − pw < wo`.
fn entry_mask(j: usize, pw: usize, wo: usize, lanes: usize) -> u16 {
    (0..lanes).filter(|l| (l % wo + j).checked_sub(pw).is_some_and(|x| x < wo)).fold(0, |m, l| m | (1 << l))
}

/// `dst.copy_from_slice(src)` with inline moves for the lengths of image rows and planes the
/// U-Net has (4 to 64 floats): `copy_from_slice` of a run-time length is a `memcpy` call, and
/// those calls on 16-float rows were 2% of a U-Net step.
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let d: &mut [f32; N] = dst.try_into().expect("same length");
        *d = src.try_into().expect("same length");
    }
    match src.len() {
        4 => fixed::<4>(dst, src),
        8 => fixed::<8>(dst, src),
        16 => fixed::<16>(dst, src),
        32 => fixed::<32>(dst, src),
        64 => fixed::<64>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// `dst.fill(0.0)` with inline stores for the short lengths of image padding (a border column
/// of 1 or 2 floats, a border row of a padded 4-, 8-, 16- or 32-wide image): `fill` of a
/// run-time length is a `memset` call, and two of them per image row were 1.5% of a U-Net
/// pass.
#[inline(always)]
pub(crate) fn zero_short(dst: &mut [f32]) {
    fn fixed<const N: usize>(dst: &mut [f32]) {
        let d: &mut [f32; N] = dst.try_into().expect("same length");
        *d = [0.0; N];
    }
    match dst.len() {
        0 => {}
        1 => dst[0] = 0.0,
        2 => fixed::<2>(dst),
        6 => fixed::<6>(dst),
        10 => fixed::<10>(dst),
        18 => fixed::<18>(dst),
        34 => fixed::<34>(dst),
        _ => dst.fill(0.0),
    }
}

/// Copies the `images` images of `x` (`[images, C, H, W]`) into `out` with `padding` zeros
/// around each plane (and zero slack at both ends), and returns the [`Im2col`] view of a
/// `kernel`-sized stride-1 convolution over them. `out` holds [`padded_len`] floats.
///
/// With `planes`, one `(scale, shift)` per plane (`images·C` of them) and an `H·W` scratch
/// plane, each plane is written as `silu(x·scale + shift)` instead of copied: a normalisation
/// and its SiLU applied on the way into the convolution, so their output is never stored (the
/// zero padding stays zero, as it is for a convolution of the normalised input).
#[allow(clippy::too_many_arguments)]
#[allow(clippy::type_complexity, reason = "the optional (scale, shift) per plane and the per-plane output, together or not at all")]
pub(crate) fn pad_images(
    x: &[f32],
    images: usize,
    channels: usize,
    [h, w]: [usize; 2],
    [ph, pw]: [usize; 2],
    kernel: [usize; 2],
    layout: PadLayout,
    mut planes: Option<(&[(f32, f32)], &mut [f32])>,
    out: &mut [f32],
) -> Im2col {
    let rows_only = layout == PadLayout::Rows;
    assert!(!rows_only || kernel[1] == 2 * pw + 1, "pad_images: the row-padded layout keeps the width (kw = 2·pw + 1)");
    let (column_pad, pw) = if rows_only { (pw, 0) } else { (0, pw) };
    let [hp, wp] = [h + 2 * ph, w + 2 * pw];
    assert!(x.len() >= images * channels * h * w && out.len() >= padded_len(images, channels, [h, w], [ph, pw], PadLayout::Full) && kernel[0] <= hp && kernel[1] <= wp + 2 * column_pad);
    assert!(planes.as_ref().is_none_or(|(p, scratch)| p.len() >= images * channels && scratch.len() >= h * w), "pad_images: one (scale, shift) per plane, an H·W scratch plane");
    let (head, rest) = out.split_at_mut(IM2COL_SLACK);
    head.fill(0.0);
    let (body, tail) = rest.split_at_mut(images * channels * hp * wp);
    for (index, (plane_out, plane_in)) in body.chunks_exact_mut(hp * wp).zip(x.chunks_exact(h * w)).enumerate() {
        let (top, rest) = plane_out.split_at_mut(ph * wp);
        let (middle, bottom) = rest.split_at_mut(h * wp);
        for row in top.chunks_exact_mut(wp).chain(bottom.chunks_exact_mut(wp)) {
            zero_short(row);
        }
        if rows_only {
            // The plane's rows stay contiguous: one copy, or the map straight into place.
            match &planes {
                None => copy_short(middle, plane_in),
                Some((maps, _)) => {
                    let (scale, shift) = maps[index];
                    // SAFETY: f32 and MaybeUninit<f32> share a layout; scale_shift writes floats only.
                    let uninit = unsafe { &mut *(middle as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]) };
                    crate::flex::simd::scale_shift(uninit, plane_in, scale, shift, true);
                }
            }
            continue;
        }
        // The mapped plane is computed whole (full vectors, one call) into the scratch plane,
        // which stays in L1, then copied row by row as an unmapped plane is.
        let plane_in: &[f32] = match &mut planes {
            None => plane_in,
            Some((maps, scratch)) => {
                let (scale, shift) = maps[index];
                let mapped = &mut scratch[..h * w];
                // SAFETY: f32 and MaybeUninit<f32> share a layout; scale_shift writes floats only.
                let uninit = unsafe { &mut *(mapped as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]) };
                crate::flex::simd::scale_shift(uninit, plane_in, scale, shift, true);
                mapped
            }
        };
        for (row_out, row_in) in middle.chunks_exact_mut(wp).zip(plane_in.chunks_exact(w)) {
            zero_short(&mut row_out[..pw]);
            copy_short(&mut row_out[pw..pw + w], row_in);
            zero_short(&mut row_out[pw + w..]);
        }
    }
    tail[..IM2COL_SLACK].fill(0.0);
    let out = [hp - kernel[0] + 1, wp + 2 * column_pad - kernel[1] + 1];
    Im2col { x: body.as_ptr(), channels, padded: [hp, wp], kernel, out, first_column: 0, column_pad }
}

/// Writes the im2col matrix of `view` (its first `columns` columns), row-major `[C·kh·kw,
/// columns]`, into `col`, by the vector runs the implicit packing uses (for the weight
/// gradient, where the matrix is read as A; the scalar im2col of `flex_conv` was a tenth of a
/// U-Net training step).
///
/// # Panics
/// Where [`implicit_im2col`] is false (callers check), or when `col` is too short.
pub(crate) fn im2col_from_padded(view: Im2col, columns: usize, col: &mut [f32]) {
    let arch = arch().expect("im2col_from_padded: callers check sgemm::implicit_im2col()");
    assert_eq!(view.column_pad, 0, "im2col_from_padded: the full padded layout only");
    assert!(col.len() >= view.channels * view.kernel[0] * view.kernel[1] * columns, "im2col_from_padded: col too short");
    // SAFETY: the CPU has the routine's features; the view reads inside its padded buffer
    // and slack, and `col` holds every row.
    unsafe { (arch.write_im2col)(view, columns, col) };
}

/// Where the micro-kernels' B comes from: a strided matrix, or the im2col matrix of images.
#[derive(Clone, Copy)]
pub(crate) enum BSource {
    Matrix(MatRef),
    Im2col(Im2col),
}

impl Im2col {
    /// The offset from `x` of im2col column `q`'s patch entry `(0, 0, 0)`.
    fn column_offset(&self, q: usize) -> usize {
        let ([hp, wp], [ho, wo]) = (self.padded, self.out);
        let (image, rest) = (q / (ho * wo), q % (ho * wo));
        image * self.channels * hp * wp + (rest / wo) * wp + rest % wo
    }

    /// Where im2col column `q`'s patch entry `(0, 0, 0)` lies in the padded images.
    fn column_start(&self, q: usize) -> *const f32 {
        // SAFETY: the caller asks only for columns of this view, inside its padded images.
        unsafe { self.x.add(self.column_offset(q)) }
    }
}

impl BSource {
    /// The view starting at column `j` (row 0).
    unsafe fn starting_at_column(self, j: usize) -> Self {
        match self {
            BSource::Matrix(b) => BSource::Matrix(unsafe { b.offset(0, j) }),
            BSource::Im2col(g) => BSource::Im2col(Im2col { first_column: g.first_column + j, ..g }),
        }
    }
}

impl From<MatRef> for BSource {
    fn from(b: MatRef) -> Self {
        BSource::Matrix(b)
    }
}

// SAFETY: as for MatRef.
unsafe impl Send for Im2col {}
unsafe impl Sync for Im2col {}

#[derive(Clone, Copy)]
struct MatMut {
    ptr: *mut f32,
    rs: usize,
}
impl MatMut {
    /// The view starting at `(i, j)`.
    unsafe fn offset(self, i: usize, j: usize) -> Self {
        Self { ptr: unsafe { self.ptr.add(i * self.rs + j) }, ..self }
    }
}

// SAFETY: the threaded driver gives each worker a disjoint rectangle of C.
unsafe impl Send for MatMut {}
unsafe impl Sync for MatMut {}

/// What becomes of each finished element `z` of C (applied once, after the last KC block):
/// `z += bias[j]` when `bias` is not null (a linear layer's bias, one per column), `z +=
/// row_bias[i]` when `row_bias` is not null (a convolution's, one per output channel); then,
/// when `silu` is not null, `silu(z) = z·σ(z)` is stored at the same `(i, j)` of the matrix
/// `silu` points to (row stride `ldc`, as C). With `silu == c` C receives `silu(z)` only;
/// otherwise C receives `σ(z)`, which with `silu(z)` is all the backward needs
/// (`silu′(z) = σ + silu·(1 − σ)`, no second `exp`).
#[derive(Clone, Copy)]
pub(crate) struct Epilogue {
    pub(crate) bias: *const f32,
    pub(crate) row_bias: *const f32,
    pub(crate) silu: *mut f32,
}

impl Epilogue {
    /// Store `z` as it is.
    pub(crate) const NONE: Epilogue = Epilogue { bias: std::ptr::null(), row_bias: std::ptr::null(), silu: std::ptr::null_mut() };

    /// The epilogue of the block starting at `(i, j)` of a C with row stride `ldc`.
    unsafe fn offset(self, i: usize, j: usize, ldc: usize) -> Self {
        Epilogue {
            bias: if self.bias.is_null() { self.bias } else { unsafe { self.bias.add(j) } },
            row_bias: if self.row_bias.is_null() { self.row_bias } else { unsafe { self.row_bias.add(i) } },
            silu: if self.silu.is_null() { self.silu } else { unsafe { self.silu.add(i * ldc + j) } },
        }
    }

    /// The epilogue of one finished value at `(i, j)` of the block, written to `c` (and the
    /// SiLU output at the same offset).
    #[inline(always)]
    unsafe fn apply_scalar(self, z: f32, i: usize, j: usize, c: *mut f32, offset: usize) {
        let z = if self.bias.is_null() { z } else { z + unsafe { *self.bias.add(j) } };
        let z = if self.row_bias.is_null() { z } else { z + unsafe { *self.row_bias.add(i) } };
        if self.silu.is_null() {
            unsafe { *c.add(offset) = z };
        } else {
            let y = unsafe { self.silu.add(offset) };
            let s = 1.0 / (1.0 + (-z).exp());
            if y != unsafe { c.add(offset) } {
                unsafe { *c.add(offset) = s };
            }
            unsafe { *y = z * s };
        }
    }
}

// SAFETY: as for MatMut (each worker writes a disjoint rectangle of the SiLU output too).
unsafe impl Send for Epilogue {}
unsafe impl Sync for Epilogue {}

/// A thin linear layer after the product: `out[i, :] += Y[i, :]·Vᵀ` for each finished row of
/// `Y` (the epilogue's output: the SiLU's where there is one, else C), computed per row block
/// while the block is still in cache. `V` is `cols × n` (row `o` is the layer's output column
/// `o`), `out` is row-major with `cols` columns and holds the layer's bias (or zeros) on entry.
///
/// Why: the MLP's 256 → 2 output layer read its 10 MB input back from memory after the last
/// hidden layer had written it (0.85 ms an evaluation on two cores). Here it reads each
/// 120-row block from L2, with the same dot-product loop in the same order ([`crate::thin`]),
/// so the result is the same to the bit. One evaluation of the W1 MLP on 10,000 points took
/// 41.1–41.4 ms against 41.7–42.3 (medians, alternating in one process, Zen 1).
#[derive(Clone, Copy)]
pub(crate) struct Head {
    pub(crate) weight: *const f32,
    pub(crate) cols: usize,
    pub(crate) out: *mut f32,
}

impl Head {
    /// The head of the block starting at row `i`.
    unsafe fn offset(self, i: usize) -> Self {
        Head { out: unsafe { self.out.add(i * self.cols) }, ..self }
    }

    /// Rows `i0..i0 + rows` of `y` (row stride `ldy`, `n` wide) into their rows of `out`.
    pub(crate) unsafe fn apply(self, y: *const f32, ldy: usize, n: usize, i0: usize, rows: usize) {
        if rows == 0 || n == 0 {
            return;
        }
        // SAFETY: the caller keeps `rows × n` of Y (stride ldy), `cols × n` of V and the block's
        // `rows × cols` of out in bounds, out not overlapping the others.
        let (y, v, out) = unsafe {
            (
                std::slice::from_raw_parts(y.add(i0 * ldy), (rows - 1) * ldy + n),
                std::slice::from_raw_parts(self.weight, self.cols * n),
                std::slice::from_raw_parts_mut(self.out.add(i0 * self.cols), rows * self.cols),
            )
        };
        crate::flex::simd::dot_block(out, self.cols, rows, self.cols, y, ldy, v, n, n, true);
    }
}

// SAFETY: as for MatMut (each worker writes a disjoint block of rows of `out`).
unsafe impl Send for Head {}
unsafe impl Sync for Head {}

/// Largest depth of one packed block (the `k` extent a micro-kernel call streams) on AVX2; `k`
/// is cut into blocks of equal size up to this.
const KC: usize = 256;
/// [`KC`] on AVX-512: deeper blocks, since each C tile is loaded and stored once per block and
/// a 12 × 32 tile costs more of that against its work (1,024³ and W3 at 65,536: 1–3% faster
/// than 256 on two Sapphire Rapids cores).
const AVX512_KC: usize = 384;
/// The largest depth block of any arch.
const MAX_KC: usize = if KC > AVX512_KC { KC } else { AVX512_KC };
/// Columns of B packed at once (the packed block is `kc × NC`, 4 or 6 MiB, in L3).
const NC: usize = 4096;

/// The largest `MR` of any micro-kernel (the row stride of a packed A sliver).
const MAX_MR: usize = 12;

/// The most row tiles of one `mc` block: AVX2's 120 rows as 19 six-row tiles and two of four.
const MAX_TILES: usize = 24;

/// `(MR, NR, micro-kernels)` chosen once for this CPU.
#[derive(Clone, Copy)]
struct Arch {
    mr: usize,
    nr: usize,
    mc: usize,
    /// The largest depth block (`k` is cut into blocks of equal size up to this).
    kc: usize,
    /// The micro-kernels on a packed A sliver, indexed by `(rows − 1) / 4`: AVX-512 has 4, 8
    /// and 12 rows (a last sliver of 32 or 64 output channels, `12 + 12 + 8` and `5·12 + 4`,
    /// runs the smallest that covers it instead of a 12-row tile that is a third empty); AVX2
    /// has 4, 6 and 6.
    kernels: [Kernel; 3],
    /// The MR-row kernel reading a row-major A in place (`lda` its row stride).
    kernel_rows: Kernel,
    /// A 4-row kernel reading A in place, where there is one (AVX2: the two 4-row tiles that
    /// end 32 output channels; AVX-512: the 4-row tile that ends 64 or 256).
    kernel_rows_4: Option<Kernel>,
    /// An 8-row kernel reading A in place, where there is one (AVX-512: the tile that ends 32
    /// output channels, `12 + 12 + 8`, which was packed on every call).
    kernel_rows_8: Option<Kernel>,
    /// The packing routines, compiled for this CPU's vector width.
    pack_a: Pack,
    pack_b: Pack,
    /// Packs B straight from padded images ([`Im2col`]), for this CPU's `nr`.
    pack_im2col: PackIm2col,
    /// Writes the whole im2col matrix of an [`Im2col`] view ([`im2col_from_padded`]).
    write_im2col: WriteIm2col,
    /// An `mr`-row kernel reading an [`Im2col`] matrix in place as A ([`sgemm_im2col_a`]).
    kernel_gathered_a: Option<GatheredKernel>,
    /// The lanes of a half-sliver when the kernels can read an [`Im2col`] B in place
    /// ([`BPanel`]): 8 on AVX2, 16 on AVX-512.
    direct_im2col_lanes: usize,
    /// Whether the in-place kernels take lane masks ([`PadLayout::Rows`]): AVX-512.
    masked_im2col: bool,
}

/// `(dst, matrix, row or column start, extent, p0, kc, mr or nr)`: [`pack_a_block`] or
/// [`pack_matrix_block`].
type Pack = unsafe fn(&mut [f32], MatRef, usize, usize, usize, usize, usize);

/// `(dst, view, p0, kc, j0, nc, nr)`: `x86::pack_im2col_avx512` or `x86::pack_im2col_avx2`.
type PackIm2col = unsafe fn(&mut [f32], Im2col, usize, usize, usize, usize, usize);

/// `(view, columns, col)`: `x86::im2col_avx512` or `x86::im2col_avx2`.
type WriteIm2col = unsafe fn(Im2col, usize, &mut [f32]);

/// `(kc, a, lda (unused when packed), b, c, ldc, accumulate, epilogue, rows, cols)`: the tile's
/// `rows × cols` corner (at most `MR × NR`) is stored, the rest neither read nor written.
type Kernel = unsafe fn(usize, *const f32, usize, BPanel, *mut f32, usize, bool, Epilogue, usize, usize);

/// `(kc, a, b, c, ldc, accumulate, cols)`: `x86::kernel_6x16_gathered`.
#[cfg(target_arch = "x86_64")]
type GatheredKernel = unsafe fn(usize, x86::GatheredA, BPanel, *mut f32, usize, bool, usize);
#[cfg(not(target_arch = "x86_64"))]
type GatheredKernel = fn();

/// Where a micro-kernel reads its `kc × NR` B sliver.
///
/// - Packed (`offsets` null): row `p` is the `NR` floats at `ptr + p·NR`.
/// - Read in place from padded images: row `p` is the `NR/2` floats at `ptr + offsets[p]` then
///   the `NR/2` at `second + offsets[p]` (8 and 8 on AVX2, 16 and 16 on AVX-512). Each half of
///   the sliver is then `NR/2` consecutive output pixels of one image row, so for every patch
///   entry it is one contiguous run of the padded image (`offsets[p]` the entry's offset): the
///   packing pass, a copy of the whole im2col matrix, is skipped.
///
/// In the row-padded layout `masks[p]` (not null) holds the lanes of row `p`'s halves to load;
/// the others read as zero.
#[derive(Clone, Copy)]
pub(crate) struct BPanel {
    ptr: *const f32,
    second: *const f32,
    offsets: *const isize,
    masks: *const u16,
}

impl BPanel {
    fn packed(ptr: *const f32) -> Self {
        BPanel { ptr, second: std::ptr::null(), offsets: std::ptr::null(), masks: std::ptr::null() }
    }
}

fn arch() -> Option<Arch> {
    use std::sync::OnceLock;
    static ARCH: OnceLock<Option<Arch>> = OnceLock::new();
    *ARCH.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Some(Arch {
                    mr: 12,
                    nr: 32,
                    mc: 144,
                    kc: AVX512_KC,
                    kernels: [x86::kernel_4x32, x86::kernel_8x32, x86::kernel_12x32],
                    kernel_rows: x86::kernel_12x32_rows,
                    kernel_rows_4: Some(x86::kernel_4x32_rows),
                    kernel_rows_8: Some(x86::kernel_8x32_rows),
                    pack_a: x86::pack_a_avx512,
                    pack_b: x86::pack_b_avx512,
                    pack_im2col: x86::pack_im2col_avx512,
                    write_im2col: x86::im2col_avx512,
                    kernel_gathered_a: Some(x86::kernel_12x32_gathered),
                    direct_im2col_lanes: 16,
                    masked_im2col: true,
                });
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // Six rows of two 8-lane vectors: 12 of the 16 `ymm` registers accumulate.
                return Some(Arch {
                    mr: x86::AVX2_MR,
                    nr: 16,
                    mc: 120,
                    kc: KC,
                    kernels: [x86::kernel_4x16, x86::kernel_6x16, x86::kernel_6x16],
                    kernel_rows: x86::kernel_6x16_rows,
                    kernel_rows_4: Some(x86::kernel_4x16_rows),
                    kernel_rows_8: None,
                    pack_a: x86::pack_a_avx2,
                    pack_b: x86::pack_b_avx2,
                    pack_im2col: x86::pack_im2col_avx2,
                    write_im2col: x86::im2col_avx2,
                    kernel_gathered_a: Some(x86::kernel_6x16_gathered),
                    direct_im2col_lanes: 8,
                    masked_im2col: false,
                });
            }
        }
        None
    })
}

/// Whether [`sgemm`] has a micro-kernel for this CPU.
#[cfg(test)]
fn available() -> bool {
    arch().is_some()
}

/// Whether [`sgemm`] should serve an `m × n` product: a micro-kernel for this CPU, and C at
/// least half a tile each way (narrower products waste most of each tile; the `gemm` crate or
/// the thin-product loops serve them).
pub(crate) fn serves(m: usize, n: usize) -> bool {
    arch().is_some_and(|a| 2 * m >= a.mr && 2 * n >= a.nr)
}

/// Whether B can be an [`Im2col`] view on this CPU (the implicit-GEMM convolution): whenever
/// [`sgemm`] has a micro-kernel here.
pub(crate) fn implicit_im2col() -> bool {
    arch().is_some()
}

thread_local! {
    static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `C = A·B` (`accumulate`: `C += A·B`) with `A` `m × k`, `B` `k × n` strided and `C` row-major
/// with row stride `ldc`, on one thread or split across rayon's threads.
///
/// # Safety
/// Every `(i, p)` of A, `(p, j)` of B and `(i, j)` of C indexed by the shapes and strides must be
/// in bounds, and C must not overlap A or B.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(m: usize, n: usize, k: usize, a: MatRef, b: MatRef, c: *mut f32, ldc: usize, accumulate: bool, threads: usize) {
    unsafe { sgemm_with(m, n, k, a, b, c, ldc, accumulate, Epilogue::NONE, None, threads) }
}

/// [`sgemm`] with an [`Epilogue`] (bias, SiLU) applied to each finished element in registers,
/// then, with a [`Head`], that head applied to each finished row block of the epilogue's output
/// (C is then split across threads by rows only). With `accumulate` false, C may be
/// uninitialised memory: every element is written, never read.
///
/// # Safety
/// As [`sgemm`]; the bias must hold `n` floats and the SiLU output C's shape and stride; a
/// head's weight must hold `cols × n` floats and its output `m × cols`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_with(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: impl Into<BSource>,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    epilogue: Epilogue,
    head: Option<Head>,
    threads: usize,
) {
    let b = b.into();
    let arch = arch().expect("sgemm::available() checked by the caller");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                let offset = i * ldc + j;
                let z = if accumulate { unsafe { *c.add(offset) } } else { 0.0 };
                unsafe { epilogue.apply_scalar(z, i, j, c, offset) };
            }
        }
        if let Some(head) = head {
            let y = if epilogue.silu.is_null() { c } else { epilogue.silu };
            unsafe { head.apply(y, ldc, n, 0, m) };
        }
        return;
    }
    let c = MatMut { ptr: c, rs: ldc };
    let threads = threads.max(1);
    if threads == 1 {
        unsafe { sgemm_serial(arch, m, n, k, a, b, c, accumulate, epilogue, head) };
        return;
    }
    use rayon::prelude::*;
    // A long product into a small C (a weight gradient: `m, n` the layer's widths, `k` the
    // batch): split C and each worker packs a whole operand of depth k. Split k instead; worker
    // 0 accumulates into C, the others into `m × n` partials added in at the end.
    if let BSource::Matrix(b) = b
        && head.is_none()
        && k >= 4 * m.max(n)
        && epilogue.bias.is_null()
        && epilogue.row_bias.is_null()
        && epilogue.silu.is_null()
    {
        let band = k.div_ceil(threads);
        let partials: Vec<Vec<f32>> = (0..k.div_ceil(band))
            .into_par_iter()
            .filter_map(|t| {
                let (p0, depth) = (t * band, band.min(k - t * band));
                let (a, b) = unsafe { (a.offset(0, p0), BSource::Matrix(b.offset(p0, 0))) };
                if t == 0 {
                    unsafe { sgemm_serial(arch, m, n, depth, a, b, c, accumulate, Epilogue::NONE, None) };
                    return None;
                }
                let mut partial = Vec::<f32>::with_capacity(m * n);
                // SAFETY: with `accumulate` false every element is written before it is read.
                unsafe {
                    sgemm_serial(arch, m, n, depth, a, b, MatMut { ptr: partial.as_mut_ptr(), rs: n }, false, Epilogue::NONE, None);
                    partial.set_len(m * n);
                }
                Some(partial)
            })
            .collect();
        for partial in &partials {
            for (i, row) in partial.chunks_exact(n).enumerate() {
                let c_row = unsafe { std::slice::from_raw_parts_mut(c.ptr.add(i * c.rs), n) };
                c_row.iter_mut().zip(row).for_each(|(c, p)| *c += p);
            }
        }
        return;
    }
    // Split C into `threads` rectangles along its longer side (in whole micro-tiles); each worker
    // packs what it reads itself, which costs O(k·(m + n)) against O(m·n·k / threads) of work.
    // A row-major A is read in place, not packed: then splitting the columns halves the packing
    // of B (each worker packs only its own columns), worth it while A is not much taller than
    // B is wide (every worker streams all of A).
    let split_rows = head.is_some() || if a.cs == 1 && n >= threads * arch.nr { m > 2 * n } else { m >= n };
    if split_rows {
        let chunk = m.div_ceil(threads).next_multiple_of(arch.mr);
        (0..m.div_ceil(chunk)).into_par_iter().for_each(|t| {
            let i0 = t * chunk;
            let rows = chunk.min(m - i0);
            let (a, c, e, h) = unsafe { (a.offset(i0, 0), c.offset(i0, 0), epilogue.offset(i0, 0, c.rs), head.map(|h| h.offset(i0))) };
            unsafe { sgemm_serial(arch, rows, n, k, a, b, c, accumulate, e, h) };
        });
    } else {
        let chunk = n.div_ceil(threads).next_multiple_of(arch.nr);
        (0..n.div_ceil(chunk)).into_par_iter().for_each(|t| {
            let j0 = t * chunk;
            let cols = chunk.min(n - j0);
            let (b, c, e) = unsafe { (b.starting_at_column(j0), c.offset(0, j0), epilogue.offset(0, j0, c.rs)) };
            unsafe { sgemm_serial(arch, m, cols, k, a, b, c, accumulate, e, None) };
        });
    }
}

/// B (`k × n`) packed once in [`sgemm_serial`]'s layout, for a product repeated on many
/// blocks of rows (an MLP's weights in a row-blocked evaluation): `⌈k / kc⌉` depth blocks of
/// the same `kc` as [`sgemm_serial`] chooses, each `⌈n / NR⌉` zero-padded slivers of `kc × NR`.
/// [`sgemm_packed`] on it gives the bits [`sgemm_with`] gives on B.
pub(crate) struct PackedB {
    arch: Arch,
    data: Vec<f32>,
    /// Where the 64-byte-aligned packing starts in `data`.
    skip: usize,
    /// Floats from one depth block to the next.
    stride: usize,
    k: usize,
    n: usize,
    kc_max: usize,
}

impl PackedB {
    /// `b` (`k × n`, any strides) packed; `None` where [`sgemm`] has no kernel for this CPU, for
    /// an empty product, or for `n` wider than one column block (4,096).
    ///
    /// # Safety
    /// Every `(p, j)` of `b` must be in bounds.
    pub(crate) unsafe fn new(k: usize, n: usize, b: MatRef) -> Option<Self> {
        let arch = arch()?;
        if k == 0 || n == 0 || n > NC {
            return None;
        }
        // The depth blocks of `sgemm_serial`, so that every sum runs in the same order.
        let kc_max = k.div_ceil(k.div_ceil(arch.kc));
        let stride = kc_max * n.next_multiple_of(arch.nr);
        let mut data = Vec::new();
        let start = aligned(&mut data, k.div_ceil(kc_max) * stride).as_ptr();
        // SAFETY: `start` points into `data`.
        let skip = unsafe { start.offset_from(data.as_ptr()) } as usize;
        for (d, p0) in (0..k).step_by(kc_max).enumerate() {
            let kc = kc_max.min(k - p0);
            unsafe { pack_b_block(arch, &mut data[skip + d * stride..], BSource::Matrix(b), p0, kc, 0, n) };
        }
        Some(PackedB { arch, data, skip, stride, k, n, kc_max })
    }

    /// Rows a block of a row-blocked evaluation should have: 240, twenty 12-row tiles (forty
    /// of 6 on AVX2). A block's two 240 × 256 activations and two packed 256 × 256 layers take
    /// 1 MiB of a 2 MiB L2. On W2's DDPM sampling (Sapphire Rapids) 192–240 rows ran 4% faster
    /// than the GEMM's own 144-row block, 96 and 288 in between.
    pub(crate) fn block_rows(&self) -> usize {
        240
    }
}

/// `C = epilogue(A·B)` on the calling thread, B packed by [`PackedB::new`]: the same arithmetic,
/// and so the same bits, as [`sgemm_with`] on the unpacked B. With the epilogue's SiLU output
/// equal to C, C receives `silu(z)` only.
///
/// # Safety
/// A's `m × k` and C's `m × n` (row stride `ldc`) must be in bounds, C not overlapping A; as
/// [`sgemm_with`] for the epilogue.
pub(crate) unsafe fn sgemm_packed(m: usize, a: MatRef, b: &PackedB, c: *mut f32, ldc: usize, epilogue: Epilogue) {
    let arch = b.arch;
    let c = MatMut { ptr: c, rs: ldc };
    PACK_A.with_borrow_mut(|pack_a| {
        let pack_a = aligned(pack_a, b.kc_max * arch.mc.min(m.next_multiple_of(arch.mr)));
        for (d, p0) in (0..b.k).step_by(b.kc_max).enumerate() {
            let kc = b.kc_max.min(b.k - p0);
            let block = b.data[b.skip + d * b.stride..].as_ptr();
            let last = p0 + kc == b.k;
            for i0 in (0..m).step_by(arch.mc) {
                let mcb = arch.mc.min(m - i0);
                // No prefetch of the next rows: a block's A is the previous layer's output, in L2.
                let panel = |jr: usize, _| BPanel::packed(unsafe { block.add(jr * kc) });
                unsafe { row_block(arch, a, (i0, mcb, 0), (p0, kc, p0 > 0), (0, b.n), panel, c, last.then_some(epilogue), pack_a) };
            }
        }
    });
}

/// Rows `i0..i0 + mcb` of C against depth block `p0..p0 + kc` and column block `j0..j0 + nc`:
/// the block's row tiles against each `NR`-wide sliver of B (`panel(jr, width)`), with
/// `epilogue` (already offset to C's origin) when this is the last depth block. `next_rows`
/// rows after the block are prefetched while it runs, if any tile reads A in place.
///
/// # Safety
/// As [`sgemm_serial`]; `panel` must give the slivers of this depth and column block, and
/// `pack_a` must hold `kc × mc` floats.
#[allow(clippy::too_many_arguments)]
unsafe fn row_block(
    arch: Arch,
    a: MatRef,
    (i0, mcb, next_rows): (usize, usize, usize),
    (p0, kc, acc): (usize, usize, bool),
    (j0, nc): (usize, usize),
    panel: impl Fn(usize, usize) -> BPanel,
    c: MatMut,
    epilogue: Option<Epilogue>,
    pack_a: &mut [f32],
) {
    let Arch { mr, nr, kernels, kernel_rows, kernel_rows_4, kernel_rows_8, pack_a: pack_a_fn, .. } = arch;
    // A row-major A is read in place by the micro-kernel (its twelve rows of one KC block are
    // 12 KiB, as L1-friendly as a packed sliver): packing it was a fifth of an inference
    // pass. Only a tile that no kernel reads in place is packed (zero-padded).
    let direct = a.cs == 1;
    let in_place_kernel = |rows: usize| match rows {
        _ if !direct => None,
        r if r == mr => Some(kernel_rows),
        4 => kernel_rows_4,
        8 => kernel_rows_8,
        _ => None,
    };
    // Row tiles: `mr` rows each, except that a remainder of a row or two
    // (AVX2's 6-row tiles: 32 output channels are 5·6 + 2) joins the last
    // full tile as two 4-row tiles, which run as fast per row on the 4-row
    // kernel and do not compute the empty rows of a 6-row one.
    let rem = mcb % mr;
    let (body, tail) = if rem != 0 && mcb > mr && rem + mr <= 8 { (mcb - rem - mr, [4, rem + mr - 4]) } else { (mcb - rem, [rem, 0]) };
    // A tile with a kernel reading A in place is not packed; every other
    // tile is (zero-padded, so no kernel reads past A), one sliver each.
    let mut tiles = [(0usize, 0usize); MAX_TILES];
    let mut count = 0;
    for ir in (0..body).step_by(mr) {
        tiles[count] = (ir, mr);
        count += 1;
    }
    for h in tail.into_iter().filter(|&h| h > 0) {
        let ir = tiles[..count].last().map_or(0, |&(ir, h)| ir + h);
        tiles[count] = (ir, h);
        count += 1;
    }
    for (slot, &(ir, h)) in tiles[..count].iter().filter(|&&(_, h)| in_place_kernel(h).is_none()).enumerate() {
        unsafe { pack_a_fn(&mut pack_a[slot * kc * mr..], a, i0 + ir, h, p0, kc, mr) };
    }
    let reads_in_place = tiles[..count].iter().any(|&(_, h)| in_place_kernel(h).is_some());
    let next_rows = if reads_in_place { next_rows } else { 0 };
    let mut next = NextRows::new(a, i0 + mcb, next_rows, p0, kc, count * nc.div_ceil(nr));
    for jr in (0..nc).step_by(nr) {
        let nrb = nr.min(nc - jr);
        let bp = panel(jr, nrb);
        let mut slot = 0;
        for &(ir, mrb) in &tiles[..count] {
            let cp = unsafe { c.ptr.add((i0 + ir) * c.rs + j0 + jr) };
            let (kern, ap, lda): (Kernel, *const f32, usize) = match in_place_kernel(mrb) {
                Some(kern) => (kern, unsafe { a.ptr.add((i0 + ir) * a.rs + p0) }, a.rs),
                None => {
                    slot += 1;
                    (kernels[(mrb - 1) / 4], unsafe { pack_a.as_ptr().add((slot - 1) * kc * mr) }, 0)
                }
            };
            let epi = match epilogue {
                Some(e) => unsafe { e.offset(i0 + ir, j0 + jr, c.rs) },
                None => Epilogue::NONE,
            };
            next.advance();
            unsafe { kern(kc, ap, lda, bp, cp, c.rs, acc, epi, mrb, nrb) };
        }
    }
}

/// The five BLIS loops on one thread; the head, if any, after each row block's last tile.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_serial(arch: Arch, m: usize, n: usize, k: usize, a: MatRef, b: BSource, c: MatMut, accumulate: bool, epilogue: Epilogue, head: Option<Head>) {
    let Arch { mr, nr, mc, .. } = arch;
    // An im2col B whose half-slivers each lie in one output row is read in place: every
    // half-sliver starts a multiple of `lanes` columns in, and rows are a multiple long.
    let lanes = arch.direct_im2col_lanes;
    // A row-padded B is only ever read in place (`row_padded_im2col` admits no other).
    let in_place = match b {
        BSource::Im2col(g) if g.column_pad > 0 => {
            assert!(row_padded_im2col(g.out, g.kernel[1], g.column_pad) && g.first_column.is_multiple_of(lanes), "sgemm: a row-padded im2col B that no kernel reads in place");
            Some(g)
        }
        BSource::Im2col(g) if lanes > 0 && g.out[1] % lanes == 0 && g.first_column % lanes == 0 => Some(g),
        _ => None,
    };
    let mut offsets = [0isize; MAX_KC];
    let mut masks = [0u16; MAX_KC];
    // The row-padded layout's lane masks, one per kernel column (computed per entry they were
    // a tenth of the product's time at 8 × 8).
    let mut mask_of_column = [0u16; MAX_KW_MASKED];
    if let Some(g) = in_place.filter(|g| g.column_pad > 0) {
        for (j, mask) in mask_of_column[..g.kernel[1]].iter_mut().enumerate() {
            *mask = entry_mask(j, g.column_pad, g.out[1], lanes);
        }
    }
    PACK_A.with_borrow_mut(|pack_a| {
        PACK_B.with_borrow_mut(|pack_b| {
            let nc_max = NC.min(n.next_multiple_of(nr));
            // Depth blocks of equal size: k = 288 as 144 + 144 rather than 256 + 32, whose short
            // second block loads and stores every C tile again for 32 steps of work.
            let kc_max = k.div_ceil(k.div_ceil(arch.kc));
            let mc_max = mc.min(m.next_multiple_of(mr));
            let pack_b = aligned(pack_b, kc_max * nc_max);
            let pack_a = aligned(pack_a, kc_max * mc_max);
            for j0 in (0..n).step_by(NC) {
                let nc = NC.min(n - j0);
                for p0 in (0..k).step_by(kc_max) {
                    let kc = kc_max.min(k - p0);
                    let acc = accumulate || p0 > 0;
                    let last = p0 + kc == k;
                    match in_place {
                        Some(g) => for_each_entry(&g, p0, kc, |p, entry, j| {
                            offsets[p] = entry;
                            masks[p] = mask_of_column[j.min(MAX_KW_MASKED - 1)];
                        }),
                        None => unsafe { pack_b_block(arch, pack_b, b, p0, kc, j0, nc) },
                    }
                    for i0 in (0..m).step_by(mc) {
                        let mcb = mc.min(m - i0);
                        let panel = |jr: usize, nrb: usize| match in_place {
                            Some(g) => {
                                let q = g.first_column + j0 + jr;
                                // An absent second half reads the first's (in bounds; its
                                // lanes are not stored).
                                let second = if nrb > lanes { q + lanes } else { q };
                                let masks = if g.column_pad > 0 { masks.as_ptr() } else { std::ptr::null() };
                                BPanel { ptr: g.column_start(q), second: g.column_start(second), offsets: offsets.as_ptr(), masks }
                            }
                            None => BPanel::packed(unsafe { pack_b.as_ptr().add(jr * kc) }),
                        };
                        unsafe { row_block(arch, a, (i0, mcb, mc.min(m - i0 - mcb)), (p0, kc, acc), (j0, nc), panel, c, last.then_some(epilogue), pack_a) };
                        // The block's rows are final once the last depth block of the last
                        // column block has been through the epilogue.
                        if let Some(head) = head.filter(|_| last && j0 + nc == n) {
                            let y = if epilogue.silu.is_null() { c.ptr } else { epilogue.silu };
                            unsafe { head.apply(y, c.rs, n, i0, mcb) };
                        }
                    }
                }
            }
        })
    })
}

/// `C (+)= col·B` on one thread, with `col` the im2col matrix of `view` read in place as A:
/// row `r` a patch entry `(c, i, j)`, column `q` one of the view's first `columns` output
/// positions. `B` is `columns × n` (strided), C `rows × n` row-major with row stride `ldc`. For
/// a convolution's weight gradient (`∂Wᵀ = col·∂Yᵀ`), where writing `col` out was 3% of a
/// U-Net training step.
///
/// Returns false, having done nothing, where no kernel serves the product: a kernel for this
/// CPU, rows a multiple of its tile's (6 on AVX2, 12 on AVX-512), and C at least half a tile
/// wide.
///
/// # Safety
/// The view's padded images (and slack) must be readable, B's `columns × n` elements in
/// bounds, and C's `rows × n` elements writable, not overlapping the others.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn sgemm_im2col_a(view: Im2col, columns: usize, n: usize, b: MatRef, c: *mut f32, ldc: usize, accumulate: bool) -> bool {
    let Some(arch) = arch() else { return false };
    let Some(kernel) = arch.kernel_gathered_a else { return false };
    if view.column_pad > 0 {
        return false;
    }
    let rows = view.channels * view.kernel[0] * view.kernel[1];
    let (mr, nr) = (arch.mr, arch.nr);
    if columns == 0 || !rows.is_multiple_of(mr) || 2 * n < nr {
        return false;
    }
    let mut column_offsets = [0isize; KC];
    PACK_B.with_borrow_mut(|pack_b| {
        let kc_max = columns.div_ceil(columns.div_ceil(KC));
        let pack_b = aligned(pack_b, kc_max * NC.min(n.next_multiple_of(nr)));
        for j0 in (0..n).step_by(NC) {
            let nc = NC.min(n - j0);
            for p0 in (0..columns).step_by(kc_max) {
                let kc = kc_max.min(columns - p0);
                for (p, offset) in column_offsets[..kc].iter_mut().enumerate() {
                    *offset = view.column_offset(view.first_column + p0 + p) as isize;
                }
                unsafe { (arch.pack_b)(pack_b, b, p0, kc, j0, nc, nr) };
                let acc = accumulate || p0 > 0;
                for ir in (0..rows).step_by(mr) {
                    // The tile's patch entries, on the stack: no allocation per image group.
                    let mut row_offsets = [0isize; MAX_MR];
                    for_each_entry(&view, ir, mr, |r, entry, _| row_offsets[r] = entry);
                    let a = x86::GatheredA { ptr: view.x, rows: row_offsets.as_ptr(), columns: column_offsets.as_ptr() };
                    for jr in (0..nc).step_by(nr) {
                        let bp = BPanel::packed(unsafe { pack_b.as_ptr().add(jr * kc) });
                        unsafe { kernel(kc, a, bp, c.add(ir * ldc + j0 + jr), ldc, acc, nr.min(nc - jr)) };
                    }
                }
            }
        }
    });
    true
}

/// Without x86-64 kernels nothing is served ([`sgemm_im2col_a`] on x86-64).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn sgemm_im2col_a(_: Im2col, _: usize, _: usize, _: MatRef, _: *mut f32, _: usize, _: bool) -> bool {
    false
}

/// `len` floats of `buf` starting on a 64-byte boundary, so that no packed load splits a line.
fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len + 16 {
        buf.resize(len + 16, 0.0);
    }
    let skip = buf.as_ptr().align_offset(64).min(16);
    &mut buf[skip..skip + len]
}

/// Fetches the next row block of an A read in place into the caches, a few lines before each
/// micro-kernel call of the current block, so that its first pass does not wait on memory.
///
/// Why: the micro-kernels read A's rows where they lie, six or twelve streams advancing four
/// bytes a step, and the hardware prefetchers do not keep them ahead: on a 10,000-row A the
/// first column sliver of each block (1/16 of the work at `n` = 256) ran at two thirds of the
/// speed of the others, 4% of the whole product on one core. The block's rows are spread over
/// all its tiles (at the MLP's shapes seven lines per 6 × 16 × 256 tile, about 3,000 cycles).
struct NextRows {
    /// The first element of the next block's first row at this depth block (`A[i, p0]`).
    start: *const f32,
    row_stride: usize,
    rows: usize,
    /// The depth block's width `kc`: each row is prefetched at `⌈kc/16⌉ + 1` addresses, 16
    /// floats apart and the last at its final element (a row need not start on a line).
    kc: usize,
    per_tile: usize,
    row: usize,
    line: usize,
}

impl NextRows {
    /// Rows `i0..i0 + rows` of `a` at depth `p0..p0 + kc`, spread over `tiles` calls.
    fn new(a: MatRef, i0: usize, rows: usize, p0: usize, kc: usize, tiles: usize) -> Self {
        let lines = rows * (kc.div_ceil(16) + 1);
        // SAFETY (of the pointer arithmetic): only formed for rows inside A; prefetching an
        // address never faults, and nothing is read through it.
        let start = if rows == 0 { a.ptr } else { a.ptr.wrapping_add(i0 * a.rs + p0) };
        NextRows { start, row_stride: a.rs, rows, kc, per_tile: lines.div_ceil(tiles.max(1)), row: 0, line: 0 }
    }

    /// Prefetches the next `per_tile` lines, if any are left.
    #[inline(always)]
    fn advance(&mut self) {
        for _ in 0..self.per_tile {
            if self.row == self.rows {
                return;
            }
            let offset = (self.line * 16).min(self.kc - 1);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is a hint; it never faults and reads nothing into the program.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(self.start.wrapping_add(self.row * self.row_stride + offset).cast());
            }
            self.line += 1;
            if self.line > self.kc.div_ceil(16) {
                self.line = 0;
                self.row += 1;
            }
        }
    }
}

/// Packs `B[p0..p0+kc, j0..j0+nc]` as `⌈nc/nr⌉` slivers of `kc × nr` (row-major, zero-padded)
/// with the arch's packing routine for the source (a strided matrix or padded images).
unsafe fn pack_b_block(arch: Arch, dst: &mut [f32], b: BSource, p0: usize, kc: usize, j0: usize, nc: usize) {
    match b {
        BSource::Matrix(b) => unsafe { (arch.pack_b)(dst, b, p0, kc, j0, nc, arch.nr) },
        BSource::Im2col(g) => {
            assert_eq!(g.column_pad, 0, "pack_im2col: the full padded layout only");
            unsafe { (arch.pack_im2col)(dst, g, p0, kc, j0, nc, arch.nr) }
        }
    }
}

/// One run of consecutive output columns `ox..ox + len` of one output row `oy` of image
/// `image`, landing on lanes `lane..lane + len` of one vector-wide half of a sliver row.
#[derive(Clone, Copy, Default)]
struct Run {
    /// The run's lanes.
    mask: u16,
    /// Where lane 0 of the run's load starts for patch entry `(0, 0, 0)`:
    /// `image·C·Hp·Wp + oy·Wp + ox − lane` (negative down to `1 − LANES` for the first run).
    start: isize,
}

/// The runs of one `LANES`-wide half of a sliver (at most one per lane).
#[derive(Clone, Copy, Default)]
struct Runs {
    runs: [Run; 16],
    count: usize,
}

/// The runs of the two `LANES`-lane halves of the sliver of `width ≤ 2·LANES` im2col columns
/// starting at column `q0` of `g`: output positions split where an output row ends or a half
/// does.
fn sliver_runs<const LANES: usize>(g: &Im2col, q0: usize, width: usize) -> [Runs; 2] {
    let ([hp, wp], [_, wo]) = (g.padded, g.out);
    let (image_len, out_plane) = (g.channels * hp * wp, g.out[0] * wo);
    let mut halves = [Runs::default(); 2];
    let mut lane = 0;
    while lane < width {
        let q = q0 + lane;
        let (image, rest) = (q / out_plane, q % out_plane);
        let (oy, ox) = (rest / wo, rest % wo);
        let len = (wo - ox).min(width - lane).min(LANES - lane % LANES);
        let half = &mut halves[lane / LANES];
        let mask = (((1u32 << len) - 1) << (lane % LANES)) as u16;
        half.runs[half.count] = Run { mask, start: (image * image_len + oy * wp + ox) as isize - (lane % LANES) as isize };
        half.count += 1;
        lane += len;
    }
    halves
}

/// Calls `f(p, entry, j)` for the `kc` patch entries from row `p0` of `g`'s im2col matrix:
/// `entry = c·Hp·Wp + i·Wp + j − column_pad` for row `(c·kh + i)·kw + j`.
#[inline(always)]
fn for_each_entry(g: &Im2col, p0: usize, kc: usize, mut f: impl FnMut(usize, isize, usize)) {
    let ([hp, wp], [kh, kw]) = (g.padded, g.kernel);
    let (mut c, mut i, mut j) = (p0 / (kh * kw), (p0 / kw) % kh, p0 % kw);
    for p in 0..kc {
        f(p, (c * hp * wp + i * wp + j) as isize - g.column_pad as isize, j);
        j += 1;
        if j == kw {
            j = 0;
            i += 1;
            if i == kh {
                i = 0;
                c += 1;
            }
        }
    }
}

/// [`pack_b_block`] for a strided matrix. Compiled for the arch's vector width (`x86::pack_b_*`),
/// so the short row copies are inline vector moves rather than `memmove` calls (a tenth of a
/// large-batch training step).
#[inline(always)]
unsafe fn pack_matrix_block(dst: &mut [f32], b: MatRef, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize) {
    for (s, jr) in (0..nc).step_by(nr).enumerate() {
        let w = nr.min(nc - jr);
        let sliver = &mut dst[s * kc * nr..(s + 1) * kc * nr];
        for p in 0..kc {
            let out = &mut sliver[p * nr..(p + 1) * nr];
            let src = unsafe { b.ptr.add((p0 + p) * b.rs + (j0 + jr) * b.cs) };
            if b.cs == 1 && w == 32 && nr == 32 {
                let out: &mut [f32; 32] = out.try_into().expect("nr = 32");
                *out = unsafe { *(src as *const [f32; 32]) };
                continue;
            } else if b.cs == 1 && w == 16 && nr == 16 {
                let out: &mut [f32; 16] = out.try_into().expect("nr = 16");
                *out = unsafe { *(src as *const [f32; 16]) };
                continue;
            } else if b.cs == 1 {
                out[..w].copy_from_slice(unsafe { std::slice::from_raw_parts(src, w) });
            } else {
                for (j, o) in out[..w].iter_mut().enumerate() {
                    *o = unsafe { *src.add(j * b.cs) };
                }
            }
            out[w..].fill(0.0);
        }
    }
}

/// Packs `A[i0..i0+mc, p0..p0+kc]` as `⌈mc/mr⌉` slivers of `kc × mr` (column-major, zero-padded).
/// Compiled for the arch's vector width as [`pack_matrix_block`] is.
#[inline(always)]
unsafe fn pack_a_block(dst: &mut [f32], a: MatRef, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize) {
    for (s, ir) in (0..mc).step_by(mr).enumerate() {
        let h = mr.min(mc - ir);
        let sliver = &mut dst[s * kc * mr..(s + 1) * kc * mr];
        if a.rs == 1 {
            // Column-major A (a transpose read through strides): each column is contiguous.
            for p in 0..kc {
                let src = unsafe { a.ptr.add((i0 + ir) + (p0 + p) * a.cs) };
                if h == 12 && mr == 12 {
                    let out: &mut [f32; 12] = (&mut sliver[p * 12..p * 12 + 12]).try_into().expect("mr = 12");
                    *out = unsafe { *(src as *const [f32; 12]) };
                } else if h == 6 && mr == 6 {
                    // Inline moves: a `memcpy` call per six floats was 2% of an MLP step.
                    let out: &mut [f32; 6] = (&mut sliver[p * 6..p * 6 + 6]).try_into().expect("mr = 6");
                    *out = unsafe { *(src as *const [f32; 6]) };
                } else {
                    sliver[p * mr..p * mr + h].copy_from_slice(unsafe { std::slice::from_raw_parts(src, h) });
                    sliver[p * mr + h..(p + 1) * mr].fill(0.0);
                }
            }
        } else {
            // Row-major A: walk k with the sliver's rows as parallel streams, so that the
            // writes are contiguous (writing one row at a time strides by MR and ran 3x slower).
            let mut rows = [std::ptr::null::<f32>(); MAX_MR];
            for (i, row) in rows.iter_mut().enumerate().take(h) {
                *row = unsafe { a.ptr.add((i0 + ir + i) * a.rs + p0 * a.cs) };
            }
            for p in 0..kc {
                let out = &mut sliver[p * mr..(p + 1) * mr];
                for (o, row) in out[..h].iter_mut().zip(&rows) {
                    *o = unsafe { *row.add(p * a.cs) };
                }
                out[h..].fill(0.0);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments, reason = "the micro-kernels share one signature, `Kernel`")]
pub(crate) mod x86 {
    use super::{BPanel, Epilogue, Im2col, Runs};
    use std::arch::x86_64::*;

    use super::MatRef;

    /// [`super::pack_a_block`] compiled for AVX-512.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_a_avx512(dst: &mut [f32], a: MatRef, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize) {
        unsafe { super::pack_a_block(dst, a, i0, mc, p0, kc, mr) }
    }

    /// [`super::pack_matrix_block`] compiled for AVX-512; a column-major B by the 8 × 8
    /// register transposes of [`pack_columns`] (the generic gather was 4.5% of a W3 step at
    /// batch 256, packing `Wᵀ` for `∂x`).
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn pack_b_avx512(dst: &mut [f32], b: MatRef, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize) {
        if b.rs == 1 && b.cs != 1 && nr == 32 {
            unsafe { pack_columns::<32>(dst, b, p0, kc, j0, nc) };
        } else {
            unsafe { super::pack_matrix_block(dst, b, p0, kc, j0, nc, nr) }
        }
    }

    /// [`super::pack_a_block`] compiled for AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn pack_a_avx2(dst: &mut [f32], a: MatRef, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize) {
        unsafe { super::pack_a_block(dst, a, i0, mc, p0, kc, mr) }
    }

    /// [`super::pack_matrix_block`] compiled for AVX2; a column-major B (a transpose read
    /// through strides, as the weight in `∂x = ∂z·Wᵀ`) by 8 × 8 register transposes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn pack_b_avx2(dst: &mut [f32], b: MatRef, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize) {
        if b.rs == 1 && b.cs != 1 && nr == 16 {
            unsafe { pack_columns::<16>(dst, b, p0, kc, j0, nc) };
        } else {
            unsafe { super::pack_matrix_block(dst, b, p0, kc, j0, nc, nr) }
        }
    }

    /// Packs `B[p0..p0+kc, j0..j0+nc]` of a column-major B (`rs` = 1) as `NR`-wide slivers
    /// (16 for AVX2, 32 for AVX-512). Gathering each sliver row from `NR` columns was 40% of
    /// the packing in an MLP step: here each 8 × 8 block is 8 contiguous column loads,
    /// transposed in registers, stored as 8 eighth-rows of the sliver. Depth left over from the
    /// blocks of 8, and a sliver's missing columns (zeros), element by element.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pack_columns<const NR: usize>(dst: &mut [f32], b: MatRef, p0: usize, kc: usize, j0: usize, nc: usize) {
        let blocks = kc / 8 * 8;
        for (s, jr) in (0..nc).step_by(NR).enumerate() {
            let w = NR.min(nc - jr);
            let sliver = &mut dst[s * kc * NR..(s + 1) * kc * NR];
            let column = |j: usize| unsafe { b.ptr.add(p0 + (j0 + jr + j) * b.cs) };
            for half in 0..NR / 8 {
                let lanes = w.saturating_sub(half * 8).min(8);
                let transposed = if lanes == 8 { blocks } else { 0 };
                if lanes == 8 {
                    let cols: [*const f32; 8] = std::array::from_fn(|c| column(half * 8 + c));
                    for p in (0..blocks).step_by(8) {
                        let rows = unsafe { transpose8(cols.map(|c| _mm256_loadu_ps(c.add(p)))) };
                        for (q, row) in rows.into_iter().enumerate() {
                            unsafe { _mm256_storeu_ps(sliver.as_mut_ptr().add((p + q) * NR + half * 8), row) };
                        }
                    }
                }
                for p in transposed..kc {
                    for c in 0..8 {
                        sliver[p * NR + half * 8 + c] = if c < lanes { unsafe { *column(half * 8 + c).add(p) } } else { 0.0 };
                    }
                }
            }
        }
    }

    /// The 8 × 8 transpose of eight row vectors (unpack pairs, then quads, then halves).
    #[inline(always)]
    unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        unsafe {
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ]
        }
    }

    /// Rows of the AVX2 micro-kernel's tile (and the row stride of its packed A slivers).
    pub(super) const AVX2_MR: usize = 6;

    /// Where an AVX2 micro-kernel reads `A[i, p]`: `at(column(p), i)`.
    pub(super) trait ASource: Copy {
        /// What the rows of depth step `p` share (its column's address or offset).
        type Column: Copy;
        unsafe fn column(self, p: usize) -> Self::Column;
        unsafe fn at(self, column: Self::Column, i: usize) -> *const f32;
    }

    /// A packed sliver: `A[i, p]` at `ptr[p·6 + i]` (the 6-row stride whatever the kernel's MR).
    #[derive(Clone, Copy)]
    pub(super) struct PackedA(pub(super) *const f32);

    impl ASource for PackedA {
        type Column = *const f32;
        #[inline(always)]
        unsafe fn column(self, p: usize) -> *const f32 {
            unsafe { self.0.add(p * AVX2_MR) }
        }
        #[inline(always)]
        unsafe fn at(self, column: *const f32, i: usize) -> *const f32 {
            unsafe { column.add(i) }
        }
    }

    /// A row-major A read in place: `A[i, p]` at `ptr[i·lda + p]`.
    #[derive(Clone, Copy)]
    pub(super) struct RowsA {
        pub(super) ptr: *const f32,
        pub(super) lda: usize,
    }

    impl ASource for RowsA {
        type Column = *const f32;
        #[inline(always)]
        unsafe fn column(self, p: usize) -> *const f32 {
            unsafe { self.ptr.add(p) }
        }
        #[inline(always)]
        unsafe fn at(self, column: *const f32, i: usize) -> *const f32 {
            unsafe { column.add(i * self.lda) }
        }
    }

    /// An im2col matrix read in place from padded images: `A[i, p]` at
    /// `ptr[rows[i] + columns[p]]`, row `i` a patch entry's offset and column `p` an output
    /// position's (see [`super::sgemm_im2col_a`]).
    #[derive(Clone, Copy)]
    pub(crate) struct GatheredA {
        pub(super) ptr: *const f32,
        pub(super) rows: *const isize,
        pub(super) columns: *const isize,
    }

    impl ASource for GatheredA {
        type Column = *const f32;
        #[inline(always)]
        unsafe fn column(self, p: usize) -> *const f32 {
            unsafe { self.ptr.offset(*self.columns.add(p)) }
        }
        #[inline(always)]
        unsafe fn at(self, column: *const f32, i: usize) -> *const f32 {
            unsafe { column.offset(*self.rows.add(i)) }
        }
    }

    /// The 6 × 16 kernel on an im2col A read in place ([`GatheredA`]), B packed. All six rows
    /// are present.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn kernel_6x16_gathered(kc: usize, a: GatheredA, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, cols: usize) {
        unsafe { kernel_body_avx2::<_, 6, false>(kc, a, b, c, rsc, accumulate, Epilogue::NONE, 6, cols) }
    }

    /// `C[6 × 16] (+)= Apanel(kc × 6)ᵀ · Bpanel(kc × 16)` in 12 `ymm` accumulators, A packed
    /// (element `(i, p)` at `a[p·6 + i]`; `lda` unused); the `rows × cols` corner stored.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_6x16(kc: usize, a: *const f32, _lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body_avx2::<_, 6, true>(kc, PackedA(a), b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// [`kernel_6x16`] for a sliver of at most 4 rows (8 accumulators).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_4x16(kc: usize, a: *const f32, _lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body_avx2::<_, 4, true>(kc, PackedA(a), b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// [`kernel_4x16`] reading A in place as [`kernel_6x16_rows`] does. Only called with all
    /// four rows present.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_4x16_rows(kc: usize, a: *const f32, lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body_avx2::<_, 4, true>(kc, RowsA { ptr: a, lda }, b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// [`kernel_6x16`] reading A where it lies, row-major with row stride `lda`. Only called
    /// with all six rows present.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_6x16_rows(kc: usize, a: *const f32, lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body_avx2::<_, 6, true>(kc, RowsA { ptr: a, lda }, b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// `1 + e⁻ᶻ` on `N` vectors of 8 lanes, the sigmoid's denominator: `e⁻ᶻ = 2ⁿ·q(r)` with
    /// `−z = n ln 2 − r`, |r| ≤ ln2/2, and `q(r) ≈ e⁻ʳ` the degree-6 minimax polynomial for
    /// relative error (9e-8 evaluated in f32; constants in `flex::simd::exp_neg`). Adding 1.5·2²³ + 127 rounds `n` into the low
    /// mantissa bits already biased, so one shift builds `2ⁿ` (no rounding or conversion
    /// instruction); `z` is clamped to [−88, 87.3], so `n ∈ [−126, 127]` and `2ⁿ` is normal.
    ///
    /// Each step is applied to all `N` vectors before the next: one vector's chain of ~70
    /// cycles of latency is longer than Zen 1's scheduler can hide, so interleaved chains are
    /// what makes a SiLU epilogue cheap.
    #[inline(always)]
    pub(crate) unsafe fn one_plus_exp_neg8<const N: usize>(z: [__m256; N]) -> [__m256; N] {
        unsafe {
            use crate::flex::simd::exp_neg::*;
            let (lo, hi) = (_mm256_set1_ps(Z_MIN), _mm256_set1_ps(Z_MAX));
            // Plain loops, not `array::map`: a closure passed to a function compiled without
            // AVX2 is not inlined.
            let mut t = [_mm256_setzero_ps(); N];
            let mut r = [_mm256_setzero_ps(); N];
            for i in 0..N {
                let z = _mm256_min_ps(_mm256_max_ps(z[i], lo), hi);
                t[i] = _mm256_fmadd_ps(z, _mm256_set1_ps(NEG_LOG2E), _mm256_set1_ps(ROUND_BIASED));
                let n = _mm256_sub_ps(t[i], _mm256_set1_ps(ROUND_BIASED));
                r[i] = _mm256_fmadd_ps(n, _mm256_set1_ps(LN2_LO), _mm256_fmadd_ps(n, _mm256_set1_ps(LN2_HI), z));
            }
            let mut q = [_mm256_set1_ps(POLY[0]); N];
            for &coefficient in &POLY[1..] {
                for i in 0..N {
                    q[i] = _mm256_fmadd_ps(q[i], r[i], _mm256_set1_ps(coefficient));
                }
            }
            let mut d = [_mm256_setzero_ps(); N];
            for i in 0..N {
                d[i] = _mm256_fmadd_ps(q[i], _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(t[i]))), _mm256_set1_ps(1.0));
            }
            d
        }
    }

    /// `σ(z) = 1 / (1 + e⁻ᶻ)` on 8 lanes (for the element-wise SiLU loops of `flex::simd`).
    #[inline(always)]
    pub(crate) unsafe fn sigmoid8(z: __m256) -> __m256 {
        unsafe { _mm256_div_ps(_mm256_set1_ps(1.0), one_plus_exp_neg8([z])[0]) }
    }

    /// The AVX2 micro-kernel: `MR` rows of two 8-lane accumulators over the depth, then the
    /// epilogue. With `STRAIGHT_STORE`, a full tile without SiLU is stored from the registers
    /// and every other tile goes out of line ([`finish_tile`]); without it the whole epilogue
    /// stays in line ([`store_tile`]), which the gathered-A kernel needs to keep its loop free
    /// of spills.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel_body_avx2<A: ASource, const MR: usize, const STRAIGHT_STORE: bool>(
        kc: usize,
        a: A,
        b: BPanel,
        c: *mut f32,
        rsc: usize,
        accumulate: bool,
        epi: Epilogue,
        rows: usize,
        cols: usize,
    ) {
        debug_assert!(b.masks.is_null(), "AVX2 reads no row-padded images");
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            #[inline(always)]
            unsafe fn step<A: ASource, const MR: usize>(acc: &mut [[__m256; 2]; MR], a: A, p: usize, b0: __m256, b1: __m256) {
                let column = unsafe { a.column(p) };
                for (i, row) in acc.iter_mut().enumerate() {
                    unsafe {
                        let ai = _mm256_broadcast_ss(&*a.at(column, i));
                        row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                        row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
                    }
                }
            }
            if b.offsets.is_null() {
                let mut bp = b.ptr;
                for p in 0..kc {
                    step::<A, MR>(&mut acc, a, p, _mm256_loadu_ps(bp), _mm256_loadu_ps(bp.add(8)));
                    bp = bp.add(16);
                }
            } else {
                for p in 0..kc {
                    let offset = *b.offsets.add(p);
                    step::<A, MR>(&mut acc, a, p, _mm256_loadu_ps(b.ptr.offset(offset)), _mm256_loadu_ps(b.second.offset(offset)));
                }
            }
            // A full tile without SiLU, the common case: stored straight from the registers,
            // with the C it accumulates onto and its column or row bias. Every other case goes
            // through `finish_tile`, out of line, so that the accumulators stay in registers here
            // (a loop over a run-time row count kept them in memory for the whole call: 4% of the
            // kernel's time in a 256-deep product).
            if STRAIGHT_STORE && rows == MR && cols >= 16 && epi.silu.is_null() {
                store_tile::<MR, true>(&acc, c, rsc, accumulate, epi, rows, cols);
            } else if !STRAIGHT_STORE {
                // In line: the gathered kernel's loop spills accumulators when the epilogue is
                // out of line (LLVM then groups its six broadcasts).
                store_tile::<MR, false>(&acc, c, rsc, accumulate, epi, rows, cols);
            } else {
                // A copy: passing `acc` itself by reference kept it in memory inside the loop.
                let spilled = acc;
                finish_tile::<MR>(&spilled, c, rsc, accumulate, epi, rows, cols);
            }
        }
    }

    /// The first `cols` (at most 16) lanes of a row as two 8-lane halves: whole loads and
    /// stores when all 16 are there, otherwise masked ones (masked lanes are neither read nor
    /// written, and cannot fault). For the edges of a tile or of a row.
    #[derive(Clone, Copy)]
    pub(crate) struct Lanes16 {
        full: bool,
        masks: [__m256i; 2],
    }

    impl Lanes16 {
        #[inline(always)]
        pub(crate) unsafe fn first(cols: usize) -> Self {
            unsafe {
                let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let mask = |from: i32| _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32 - from), lane);
                Lanes16 { full: cols >= 16, masks: [mask(0), mask(8)] }
            }
        }

        #[inline(always)]
        pub(crate) unsafe fn load(self, p: *const f32) -> (__m256, __m256) {
            unsafe {
                if self.full {
                    (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
                } else {
                    (_mm256_maskload_ps(p, self.masks[0]), _mm256_maskload_ps(p.add(8), self.masks[1]))
                }
            }
        }

        #[inline(always)]
        pub(crate) unsafe fn store(self, p: *mut f32, v0: __m256, v1: __m256) {
            unsafe {
                if self.full {
                    _mm256_storeu_ps(p, v0);
                    _mm256_storeu_ps(p.add(8), v1);
                } else {
                    _mm256_maskstore_ps(p, self.masks[0], v0);
                    _mm256_maskstore_ps(p.add(8), self.masks[1], v1);
                }
            }
        }
    }

    /// The epilogue of [`kernel_body_avx2`] out of line: edge tiles and SiLU.
    #[inline(never)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn finish_tile<const MR: usize>(acc: &[[__m256; 2]; MR], c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { store_tile::<MR, false>(acc, c, rsc, accumulate, epi, rows, cols) }
    }

    /// The `rows × cols` corner of the accumulators, through the epilogue (C accumulated onto,
    /// then the column bias, the row bias, SiLU), into C. `FULL_PLAIN` promises a full tile
    /// without SiLU: the row loop then has a constant count, is unrolled, and reads the
    /// accumulators from registers.
    #[inline(always)]
    unsafe fn store_tile<const MR: usize, const FULL_PLAIN: bool>(acc: &[[__m256; 2]; MR], c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe {
            let lanes = Lanes16::first(if FULL_PLAIN { 16 } else { cols });
            let load = |p: *const f32| lanes.load(p);
            let store = |p: *mut f32, v0: __m256, v1: __m256| lanes.store(p, v0, v1);
            let y = if FULL_PLAIN { std::ptr::null_mut() } else { epi.silu };
            // The tile's row `i` plus what the epilogue adds before the activation: C, the
            // column bias, the row bias. A macro, not a closure: a closure big enough to stay out
            // of line is compiled without AVX2, and its intrinsics become calls.
            macro_rules! pre_activation {
                ($i:expr) => {{
                    let i = $i;
                    let cp = c.add(i * rsc);
                    let (mut r0, mut r1) = (acc[i][0], acc[i][1]);
                    if accumulate {
                        let (c0, c1) = load(cp);
                        r0 = _mm256_add_ps(r0, c0);
                        r1 = _mm256_add_ps(r1, c1);
                    }
                    if !epi.bias.is_null() {
                        let (b0, b1) = load(epi.bias);
                        r0 = _mm256_add_ps(r0, b0);
                        r1 = _mm256_add_ps(r1, b1);
                    }
                    if !epi.row_bias.is_null() {
                        let bi = _mm256_set1_ps(*epi.row_bias.add(i));
                        r0 = _mm256_add_ps(r0, bi);
                        r1 = _mm256_add_ps(r1, bi);
                    }
                    (r0, r1)
                }};
            }
            if FULL_PLAIN || y.is_null() {
                for i in 0..if FULL_PLAIN { MR } else { rows } {
                    let (r0, r1) = pre_activation!(i);
                    store(c.add(i * rsc), r0, r1);
                }
            } else {
                // SiLU two rows at a time, so that four exponentials interleave (see
                // `one_plus_exp_neg8`). Rows past `rows` are neither read nor written.
                for pair in (0..rows).step_by(2) {
                    let (a0, a1) = pre_activation!(pair);
                    let second = pair + 1 < rows;
                    let (b0, b1) = if second { pre_activation!(pair + 1) } else { (a0, a1) };
                    let z = [a0, a1, b0, b1];
                    let d = one_plus_exp_neg8(z);
                    let mut out = [_mm256_setzero_ps(); 4];
                    if y == c {
                        for k in 0..4 {
                            out[k] = _mm256_div_ps(z[k], d[k]);
                        }
                        store(c.add(pair * rsc), out[0], out[1]);
                        if second {
                            store(c.add((pair + 1) * rsc), out[2], out[3]);
                        }
                    } else {
                        let mut sigma = [_mm256_setzero_ps(); 4];
                        for k in 0..4 {
                            sigma[k] = _mm256_div_ps(_mm256_set1_ps(1.0), d[k]);
                            out[k] = _mm256_mul_ps(z[k], sigma[k]);
                        }
                        store(c.add(pair * rsc), sigma[0], sigma[1]);
                        store(y.add(pair * rsc), out[0], out[1]);
                        if second {
                            store(c.add((pair + 1) * rsc), sigma[2], sigma[3]);
                            store(y.add((pair + 1) * rsc), out[2], out[3]);
                        }
                    }
                }
            }
        }
    }

    /// The 16 lanes of an AVX-512 sliver half for the patch entry at offset `entry`: one
    /// whole-vector load per run, blended in by the run's lanes (the images are padded, so no
    /// lane needs a bounds check; the loads are independent, the blends one cycle each).
    #[inline(always)]
    unsafe fn gather16(half: &Runs, x: *const f32, entry: isize) -> __m512 {
        unsafe {
            let mut lanes = _mm512_setzero_ps();
            for run in &half.runs[..half.count] {
                let v = _mm512_loadu_ps(x.offset(run.start + entry));
                lanes = _mm512_mask_blend_ps(run.mask, lanes, v);
            }
            lanes
        }
    }

    /// [`super::pack_b_block`] for an [`Im2col`] view, `nr = 32`: each sliver row is the patch
    /// entry `(c, i, j)` of 32 consecutive output positions, gathered as runs along image rows.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_im2col_avx512(dst: &mut [f32], g: Im2col, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize) {
        assert_eq!(nr, 32, "the AVX-512 im2col packing fills 32-lane slivers");
        for (s, jr) in (0..nc).step_by(32).enumerate() {
            let [first, second] = super::sliver_runs::<16>(&g, g.first_column + j0 + jr, 32.min(nc - jr));
            let sliver = dst[s * kc * 32..(s + 1) * kc * 32].as_mut_ptr();
            super::for_each_entry(&g, p0, kc, |p, entry, _| unsafe {
                _mm512_storeu_ps(sliver.add(p * 32), gather16(&first, g.x, entry));
                _mm512_storeu_ps(sliver.add(p * 32 + 16), gather16(&second, g.x, entry));
            });
        }
    }

    /// One 8-lane half of an AVX2 sliver: its runs' starts and their lanes as `vblendvps`
    /// masks (sign bit set on the run's lanes).
    #[derive(Clone, Copy)]
    struct Half8 {
        starts: [isize; 8],
        masks: [__m256; 8],
        count: usize,
        /// A single run covering all 8 lanes: a plain load.
        whole: bool,
    }

    impl Half8 {
        #[inline(always)]
        unsafe fn new(half: &Runs) -> Self {
            unsafe {
                let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
                let mut out = Half8 { starts: [0; 8], masks: [_mm256_setzero_ps(); 8], count: half.count, whole: half.count == 1 && half.runs[0].mask == 0xff };
                for (r, run) in half.runs[..half.count].iter().enumerate() {
                    out.starts[r] = run.start;
                    let on = _mm256_and_si256(_mm256_set1_epi32(run.mask as i32), bits);
                    out.masks[r] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(on, _mm256_setzero_si256()));
                }
                out
            }
        }

        /// The half's 8 lanes for the patch entry at offset `entry` (as [`gather16`]).
        #[inline(always)]
        unsafe fn gather(&self, x: *const f32, entry: isize) -> __m256 {
            unsafe {
                if self.whole {
                    return _mm256_loadu_ps(x.offset(self.starts[0] + entry));
                }
                let mut lanes = _mm256_setzero_ps();
                for r in 0..self.count {
                    let v = _mm256_loadu_ps(x.offset(self.starts[r] + entry));
                    lanes = _mm256_blendv_ps(lanes, v, self.masks[r]);
                }
                lanes
            }
        }
    }

    /// [`super::pack_b_block`] for an [`Im2col`] view, `nr = 16`, as
    /// [`pack_im2col_avx512`] in two 8-lane halves.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn pack_im2col_avx2(dst: &mut [f32], g: Im2col, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize) {
        assert_eq!(nr, 16, "the AVX2 im2col packing fills 16-lane slivers");
        for (s, jr) in (0..nc).step_by(16).enumerate() {
            let [first, second] = super::sliver_runs::<8>(&g, g.first_column + j0 + jr, 16.min(nc - jr));
            let (first, second) = unsafe { (Half8::new(&first), Half8::new(&second)) };
            let sliver = dst[s * kc * 16..(s + 1) * kc * 16].as_mut_ptr();
            super::for_each_entry(&g, p0, kc, |p, entry, _| unsafe {
                _mm256_storeu_ps(sliver.add(p * 16), first.gather(g.x, entry));
                _mm256_storeu_ps(sliver.add(p * 16 + 8), second.gather(g.x, entry));
            });
        }
    }

    /// [`super::im2col_from_padded`] on AVX-512: 32 columns at a time by the runs of
    /// [`pack_im2col_avx512`] (a ragged last block masked).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn im2col_avx512(g: Im2col, columns: usize, col: &mut [f32]) {
        let rows = g.channels * g.kernel[0] * g.kernel[1];
        let out = col.as_mut_ptr();
        for q0 in (0..columns).step_by(32) {
            let width = 32.min(columns - q0);
            let [first, second] = super::sliver_runs::<16>(&g, g.first_column + q0, width);
            let m0 = if width >= 16 { u16::MAX } else { ((1u32 << width) - 1) as u16 };
            let m1 = if width >= 32 { u16::MAX } else if width > 16 { ((1u32 << (width - 16)) - 1) as u16 } else { 0 };
            super::for_each_entry(&g, 0, rows, |r, entry, _| unsafe {
                let dst = out.add(r * columns + q0);
                _mm512_mask_storeu_ps(dst, m0, gather16(&first, g.x, entry));
                if m1 != 0 {
                    _mm512_mask_storeu_ps(dst.add(16), m1, gather16(&second, g.x, entry));
                }
            });
        }
    }

    /// [`super::im2col_from_padded`] on AVX2: 16 columns at a time by the runs of
    /// [`pack_im2col_avx2`] (a ragged last block masked).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn im2col_avx2(g: Im2col, columns: usize, col: &mut [f32]) {
        let rows = g.channels * g.kernel[0] * g.kernel[1];
        let out = col.as_mut_ptr();
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for q0 in (0..columns).step_by(16) {
            let width = 16.min(columns - q0);
            let [first, second] = super::sliver_runs::<8>(&g, g.first_column + q0, width);
            let (first, second) = unsafe { (Half8::new(&first), Half8::new(&second)) };
            let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width as i32), lane);
            let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width as i32 - 8), lane);
            super::for_each_entry(&g, 0, rows, |r, entry, _| unsafe {
                let dst = out.add(r * columns + q0);
                if width == 16 {
                    _mm256_storeu_ps(dst, first.gather(g.x, entry));
                    _mm256_storeu_ps(dst.add(8), second.gather(g.x, entry));
                } else {
                    _mm256_maskstore_ps(dst, m0, first.gather(g.x, entry));
                    if width > 8 {
                        _mm256_maskstore_ps(dst.add(8), m1, second.gather(g.x, entry));
                    }
                }
            });
        }
    }

    /// `C[12 × 32] (+)= Apanel(kc × 12)ᵀ · Bpanel(kc × 32)` in 24 `zmm` accumulators, A packed
    /// (element `(i, p)` at `a[p·12 + i]`; `lda` unused); the `rows × cols` corner stored.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_12x32(kc: usize, a: *const f32, lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body::<true, 12>(kc, a, lda, b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// [`kernel_12x32`] for a sliver of at most 8 rows (16 accumulators).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_8x32(kc: usize, a: *const f32, lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body::<true, 8>(kc, a, lda, b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// [`kernel_8x32`] reading A in place as [`kernel_12x32_rows`] does. Only called with all
    /// eight rows present.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_8x32_rows(kc: usize, a: *const f32, lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body::<false, 8>(kc, a, lda, b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// [`kernel_4x32`] reading A in place as [`kernel_12x32_rows`] does. Only called with all
    /// four rows present.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_4x32_rows(kc: usize, a: *const f32, lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body::<false, 4>(kc, a, lda, b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// [`kernel_12x32`] for a sliver of at most 4 rows (8 accumulators).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_4x32(kc: usize, a: *const f32, lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body::<true, 4>(kc, a, lda, b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// [`kernel_12x32`] reading A where it lies, row-major with row stride `lda` (element
    /// `(i, p)` at `a[i·lda + p]`): twelve sequential row streams instead of a packing pass.
    /// Only called with all twelve rows present.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_12x32_rows(kc: usize, a: *const f32, lda: usize, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe { kernel_body::<false, 12>(kc, a, lda, b, c, rsc, accumulate, epi, rows, cols) }
    }

    /// `1 + e⁻ᶻ` on 16 lanes: the arithmetic of [`one_plus_exp_neg8`] (constants in
    /// `flex::simd::exp_neg`), so the AVX-512 and AVX2 kernels give the same bits. It replaced a
    /// Cephes `exp` built on `vroundscaleps` and `vscalefps` (three more operations a vector on
    /// the FMA ports; see `docs/performance.md`, session 28).
    #[inline(always)]
    unsafe fn one_plus_exp_neg16(z: __m512) -> __m512 {
        unsafe {
            use crate::flex::simd::exp_neg::*;
            let z = _mm512_min_ps(_mm512_max_ps(z, _mm512_set1_ps(Z_MIN)), _mm512_set1_ps(Z_MAX));
            let t = _mm512_fmadd_ps(z, _mm512_set1_ps(NEG_LOG2E), _mm512_set1_ps(ROUND_BIASED));
            let n = _mm512_sub_ps(t, _mm512_set1_ps(ROUND_BIASED));
            let r = _mm512_fmadd_ps(n, _mm512_set1_ps(LN2_LO), _mm512_fmadd_ps(n, _mm512_set1_ps(LN2_HI), z));
            let mut q = _mm512_set1_ps(POLY[0]);
            for &coefficient in &POLY[1..] {
                q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(coefficient));
            }
            _mm512_fmadd_ps(q, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(t))), _mm512_set1_ps(1.0))
        }
    }

    /// `z·σ(z) = z / (1 + e⁻ᶻ)` on 16 lanes.
    #[inline(always)]
    pub(crate) unsafe fn silu16(z: __m512) -> __m512 {
        unsafe { _mm512_div_ps(z, one_plus_exp_neg16(z)) }
    }

    /// `σ(z) = 1 / (1 + e⁻ᶻ)` on 16 lanes.
    #[inline(always)]
    pub(crate) unsafe fn sigmoid16(z: __m512) -> __m512 {
        unsafe { _mm512_div_ps(_mm512_set1_ps(1.0), one_plus_exp_neg16(z)) }
    }

    /// Two depth steps of one A row of the 12 × 32 kernel: a broadcast from `$row + $d` against
    /// B's first row (`zmm24`, `zmm25`) and one from `$row + $d2` against its second (`zmm26`,
    /// `zmm27`).
    macro_rules! row_steps {
        ($row:literal, $d:literal, $d2:literal, $c0:literal, $c1:literal) => {
            concat!(
                "vbroadcastss zmm28, dword ptr [", $row, " + ", $d, "]\n",
                "vbroadcastss zmm29, dword ptr [", $row, " + ", $d2, "]\n",
                "vfmadd231ps zmm", $c0, ", zmm28, zmm24\n",
                "vfmadd231ps zmm", $c1, ", zmm28, zmm25\n",
                "vfmadd231ps zmm", $c0, ", zmm29, zmm26\n",
                "vfmadd231ps zmm", $c1, ", zmm29, zmm27\n",
            )
        };
    }

    /// Two depth steps (A byte offsets `$d`, `$d2`; B rows at byte offset `$b`) for all twelve
    /// rows: row `4g + j` at `a_g + j·lda` (`{l}` = `lda` in bytes, `{l3}` = three times that).
    macro_rules! pair_steps {
        ($d:literal, $d2:literal, $b:literal) => {
            concat!(
                "vmovups zmm24, zmmword ptr [{b} + ", $b, "]\n",
                "vmovups zmm25, zmmword ptr [{b} + ", $b, " + 64]\n",
                "vmovups zmm26, zmmword ptr [{b} + ", $b, " + 128]\n",
                "vmovups zmm27, zmmword ptr [{b} + ", $b, " + 192]\n",
                row_steps!("{a0}", $d, $d2, "0", "1"),
                row_steps!("{a0} + {l}", $d, $d2, "2", "3"),
                row_steps!("{a0} + 2*{l}", $d, $d2, "4", "5"),
                row_steps!("{a0} + {l3}", $d, $d2, "6", "7"),
                row_steps!("{a4}", $d, $d2, "8", "9"),
                row_steps!("{a4} + {l}", $d, $d2, "10", "11"),
                row_steps!("{a4} + 2*{l}", $d, $d2, "12", "13"),
                row_steps!("{a4} + {l3}", $d, $d2, "14", "15"),
                row_steps!("{a8}", $d, $d2, "16", "17"),
                row_steps!("{a8} + {l}", $d, $d2, "18", "19"),
                row_steps!("{a8} + 2*{l}", $d, $d2, "20", "21"),
                row_steps!("{a8} + {l3}", $d, $d2, "22", "23"),
            )
        };
    }

    /// Depth steps `0..4·quads` of [`kernel_12x32_rows`] with B packed, written out: every A
    /// address is one of three row-group pointers plus `lda` or `3·lda` (scaled in the address),
    /// so a step of four depth entries costs four pointer increments and the loop branch beside
    /// its 96 FMAs. LLVM's version of the same loop rebuilt the twelve row addresses with a
    /// dependent chain of adds every two steps. Written out, the MLP's evaluation ran 3–4%
    /// faster and the 1024³ product 16% (session 32 in `docs/performance.md`), though extra
    /// ALU operations alone cost a loop of FMAs nothing there: what LLVM's schedule lost is not
    /// port time.
    ///
    /// # Safety
    /// AVX-512F; `a` must hold twelve rows of `4·quads` floats at stride `lda`, `b` `4·quads`
    /// packed rows of 32 floats; `quads > 0`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn depth_12x32_rows(acc: &mut [[__m512; 2]; 12], a: *const f32, lda: usize, b: *const f32, quads: usize) {
        let [[mut c0, mut c1], [mut c2, mut c3], [mut c4, mut c5], [mut c6, mut c7], [mut c8, mut c9], [mut c10, mut c11], [mut c12, mut c13], [mut c14, mut c15], [mut c16, mut c17], [mut c18, mut c19], [mut c20, mut c21], [mut c22, mut c23]] = *acc;
        unsafe {
            std::arch::asm!(
                ".p2align 5",
                "2:",
                pair_steps!("0", "4", "0"),
                pair_steps!("8", "12", "256"),
                "add {a0}, 16",
                "add {a4}, 16",
                "add {a8}, 16",
                "add {b}, 512",
                "dec {n}",
                "jnz 2b",
                a0 = inout(reg) a => _,
                a4 = inout(reg) a.add(4 * lda) => _,
                a8 = inout(reg) a.add(8 * lda) => _,
                b = inout(reg) b => _,
                n = inout(reg) quads => _,
                l = in(reg) lda * 4,
                l3 = in(reg) lda * 12,
                inout("zmm0") c0, inout("zmm1") c1, inout("zmm2") c2, inout("zmm3") c3,
                inout("zmm4") c4, inout("zmm5") c5, inout("zmm6") c6, inout("zmm7") c7,
                inout("zmm8") c8, inout("zmm9") c9, inout("zmm10") c10, inout("zmm11") c11,
                inout("zmm12") c12, inout("zmm13") c13, inout("zmm14") c14, inout("zmm15") c15,
                inout("zmm16") c16, inout("zmm17") c17, inout("zmm18") c18, inout("zmm19") c19,
                inout("zmm20") c20, inout("zmm21") c21, inout("zmm22") c22, inout("zmm23") c23,
                out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _, out("zmm28") _, out("zmm29") _,
                options(nostack, readonly),
            );
        }
        *acc = [[c0, c1], [c2, c3], [c4, c5], [c6, c7], [c8, c9], [c10, c11], [c12, c13], [c14, c15], [c16, c17], [c18, c19], [c20, c21], [c22, c23]];
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel_body<const PACKED: bool, const MR: usize>(
        kc: usize,
        a: *const f32,
        lda: usize,
        b: BPanel,
        c: *mut f32,
        rsc: usize,
        accumulate: bool,
        epi: Epilogue,
        rows: usize,
        cols: usize,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            #[inline(always)]
            unsafe fn step<const PACKED: bool, const MR: usize>(acc: &mut [[__m512; 2]; MR], a: *const f32, lda: usize, p: usize, b0: __m512, b1: __m512) {
                for (i, row) in acc.iter_mut().enumerate() {
                    // Packed slivers keep the 12-row stride whatever the kernel's MR.
                    unsafe {
                        let ai = _mm512_set1_ps(if PACKED { *a.add(p.wrapping_mul(super::MAX_MR).wrapping_add(i)) } else { *a.add(i.wrapping_mul(lda).wrapping_add(p)) });
                        row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                        row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                    }
                }
            }
            /// Two depth steps `p`, `p + 1`; A read in place: each row's address is computed
            /// once for both (LLVM builds the twelve addresses as a chain of adds each step,
            /// which competes with the FMAs for ports: +4–6% on 1024³ on Sapphire Rapids).
            #[inline(always)]
            unsafe fn step2<const MR: usize>(acc: &mut [[__m512; 2]; MR], a: *const f32, lda: usize, p: usize, b: [__m512; 4]) {
                for (i, row) in acc.iter_mut().enumerate() {
                    unsafe {
                        let at = a.add(i.wrapping_mul(lda).wrapping_add(p));
                        let (a0, a1) = (_mm512_set1_ps(*at), _mm512_set1_ps(*at.add(1)));
                        row[0] = _mm512_fmadd_ps(a0, b[0], row[0]);
                        row[1] = _mm512_fmadd_ps(a0, b[1], row[1]);
                        row[0] = _mm512_fmadd_ps(a1, b[2], row[0]);
                        row[1] = _mm512_fmadd_ps(a1, b[3], row[1]);
                    }
                }
            }
            /// The depth loop, B's row `p` from `row(p)` (called for `p` in order): pairs of steps where A is read in
            /// place ([`step2`]), single steps otherwise and for an odd last step.
            #[inline(always)]
            unsafe fn depth<const PACKED: bool, const MR: usize>(acc: &mut [[__m512; 2]; MR], a: *const f32, lda: usize, kc: usize, mut row: impl FnMut(usize) -> (__m512, __m512)) {
                let mut p = 0;
                if !PACKED {
                    while p + 2 <= kc {
                        let ((b0, b1), (b2, b3)) = (row(p), row(p + 1));
                        unsafe { step2::<MR>(acc, a, lda, p, [b0, b1, b2, b3]) };
                        p += 2;
                    }
                }
                while p < kc {
                    let (b0, b1) = row(p);
                    unsafe { step::<PACKED, MR>(acc, a, lda, p, b0, b1) };
                    p += 1;
                }
            }
            if b.offsets.is_null() {
                // Packed: rows in order, 32 floats apart (a running pointer, not `p·32`).
                let mut bp = b.ptr;
                let (mut a, mut kc) = (a, kc);
                if !PACKED && MR == 12 && kc >= 4 {
                    let quads = kc / 4;
                    // SAFETY: MR == 12, so `acc` is the 12-row array the loop expects.
                    depth_12x32_rows(&mut *(&mut acc as *mut [[__m512; 2]; MR] as *mut [[__m512; 2]; 12]), a, lda, bp, quads);
                    (a, bp, kc) = (a.add(4 * quads), bp.add(128 * quads), kc % 4);
                }
                depth::<PACKED, MR>(&mut acc, a, lda, kc, |_| {
                    let row = (_mm512_loadu_ps(bp), _mm512_loadu_ps(bp.add(16)));
                    bp = bp.add(32);
                    row
                });
            } else if !b.masks.is_null() {
                // Row-padded images (see `BPanel`): each half is whole output rows, the lanes
                // that would wrap into the neighbouring row masked to zero.
                depth::<PACKED, MR>(&mut acc, a, lda, kc, |p| {
                    let (offset, mask) = (*b.offsets.add(p), *b.masks.add(p));
                    (_mm512_maskz_loadu_ps(mask, b.ptr.offset(offset)), _mm512_maskz_loadu_ps(mask, b.second.offset(offset)))
                });
            } else {
                // B read in place from the padded images (see `BPanel`): each 16-lane half of
                // the sliver is one output row's run of an image row.
                depth::<PACKED, MR>(&mut acc, a, lda, kc, |p| {
                    let offset = *b.offsets.add(p);
                    (_mm512_loadu_ps(b.ptr.offset(offset)), _mm512_loadu_ps(b.second.offset(offset)))
                });
            }
            finish_tile_512::<MR>(acc, c, rsc, accumulate, epi, rows, cols);
        }
    }

    /// The AVX-512 kernels' epilogue: C (+)= the accumulators, then the bias, row bias and
    /// SiLU of [`Epilogue`], the `rows × cols` corner stored.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn finish_tile_512<const MR: usize>(acc: [[__m512; 2]; MR], c: *mut f32, rsc: usize, accumulate: bool, epi: Epilogue, rows: usize, cols: usize) {
        unsafe {
            // The column masks of the two 16-lane halves (all set for a full tile).
            let m0 = if cols >= 16 { u16::MAX } else { ((1u32 << cols) - 1) as u16 };
            let m1 = if cols >= 32 { u16::MAX } else if cols > 16 { ((1u32 << (cols - 16)) - 1) as u16 } else { 0 };
            let y = epi.silu;
            // A copy for the loop over a run-time row count, which indexes it in memory: so
            // that `acc` itself is never addressed and stays in registers from its zeroing on
            // (indexing `acc` here cost a 1.5 KiB `memset` before the depth loop and a reload
            // after it, on every call).
            let spilled = acc;
            for (i, row) in spilled.iter().enumerate().take(rows) {
                let cp = c.add(i * rsc);
                let (mut r0, mut r1) = (row[0], row[1]);
                if accumulate {
                    r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(m0, cp));
                    r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(m1, cp.add(16)));
                }
                if !epi.bias.is_null() {
                    r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(m0, epi.bias));
                    r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(m1, epi.bias.add(16)));
                }
                if !epi.row_bias.is_null() {
                    let bi = _mm512_set1_ps(*epi.row_bias.add(i));
                    r0 = _mm512_add_ps(r0, bi);
                    r1 = _mm512_add_ps(r1, bi);
                }
                if y.is_null() {
                    _mm512_mask_storeu_ps(cp, m0, r0);
                    _mm512_mask_storeu_ps(cp.add(16), m1, r1);
                } else if y == c {
                    _mm512_mask_storeu_ps(cp, m0, silu16(r0));
                    _mm512_mask_storeu_ps(cp.add(16), m1, silu16(r1));
                } else {
                    let (s0, s1) = (sigmoid16(r0), sigmoid16(r1));
                    _mm512_mask_storeu_ps(cp, m0, s0);
                    _mm512_mask_storeu_ps(cp.add(16), m1, s1);
                    let yp = y.add(i * rsc);
                    _mm512_mask_storeu_ps(yp, m0, _mm512_mul_ps(r0, s0));
                    _mm512_mask_storeu_ps(yp.add(16), m1, _mm512_mul_ps(r1, s1));
                }
            }
        }
    }

    /// The 12 × 32 kernel on an im2col A read in place ([`GatheredA`]), B packed, for a
    /// convolution's weight gradient ([`super::sgemm_im2col_a`]). All twelve rows are present.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn kernel_12x32_gathered(kc: usize, a: GatheredA, b: BPanel, c: *mut f32, rsc: usize, accumulate: bool, cols: usize) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; 12];
            let mut bp = b.ptr;
            for p in 0..kc {
                let column = a.column(p);
                let (b0, b1) = (_mm512_loadu_ps(bp), _mm512_loadu_ps(bp.add(16)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.at(column, i));
                    row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                    // A compiler barrier for memory: LLVM otherwise hoists all twelve
                    // broadcasts above the FMAs and spills accumulators to make room.
                    std::arch::asm!("", options(nostack, preserves_flags));
                }
                bp = bp.add(32);
            }
            finish_tile_512::<12>(acc, c, rsc, accumulate, Epilogue::NONE, 12, cols);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `len` reproducible values in [−0.5, 0.5) (xorshift).
    pub(crate) fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Asserts `c = [c0 +] A·B` (row-major `m × n`) against an f64 triple loop, within
    /// `1e-5·√(1 + k)`.
    pub(crate) fn assert_product(case: &str, c: &[f32], c0: &[f32], accumulate: bool, (m, n, k): (usize, usize, usize), (a, (ars, acs)): (&[f32], (usize, usize)), (b, (brs, bcs)): (&[f32], (usize, usize))) {
        for i in 0..m {
            for j in 0..n {
                let mut want = if accumulate { c0[i * n + j] as f64 } else { 0.0 };
                for p in 0..k {
                    want += a[i * ars + p * acs] as f64 * b[p * brs + j * bcs] as f64;
                }
                let got = c[i * n + j] as f64;
                assert!((got - want).abs() <= 1e-5 * (1.0 + k as f64).sqrt(), "{case}: C[{i},{j}] = {got}, want {want}");
            }
        }
    }

    /// Every edge case of the blocking (partial micro-tiles both ways, several `KC` and `NC`
    /// blocks, a single row or column), every transpose, one and two threads, overwrite and
    /// accumulate: against an f64 triple loop.
    #[test]
    fn sgemm_matches_a_triple_loop_for_every_layout() {
        if !available() {
            eprintln!("no AVX2 or AVX-512 on this CPU: the gemm crate serves every product, nothing to test");
            return;
        }
        // (…, 40, 36, 1000): k ≥ 4·max(m, n), split along k across threads.
        // (20, …) and (64, …): a last tile of 8 and of 4 rows (AVX-512 reads both in place).
        let shapes = [(1, 1, 1), (7, 3, 5), (12, 32, 256), (13, 33, 300), (37, 70, 513), (300, 4130, 20), (2, 256, 256), (256, 2, 7), (25, 64, 0), (40, 36, 1000), (20, 40, 50), (64, 33, 70)];
        for &(m, n, k) in &shapes {
            for (transpose_a, transpose_b) in [(false, false), (true, false), (false, true), (true, true)] {
                for threads in [1, 2] {
                    for accumulate in [false, true] {
                        let a = values(m * k, 1);
                        let b = values(k * n, 2);
                        let (ars, acs) = if transpose_a { (1, m) } else { (k, 1) };
                        let (brs, bcs) = if transpose_b { (1, k) } else { (n, 1) };
                        let c0 = values(m * n, 3);
                        let mut c = c0.clone();
                        // SAFETY: the strides above index inside a, b and c.
                        unsafe {
                            sgemm(
                                m,
                                n,
                                k,
                                MatRef { ptr: a.as_ptr(), rs: ars, cs: acs },
                                MatRef { ptr: b.as_ptr(), rs: brs, cs: bcs },
                                c.as_mut_ptr(),
                                n,
                                accumulate,
                                threads,
                            )
                        };
                        let case = format!("{m}×{n}×{k} ta {transpose_a} tb {transpose_b} threads {threads} acc {accumulate}");
                        assert_product(&case, &c, &c0, accumulate, (m, n, k), (&a, (ars, acs)), (&b, (brs, bcs)));
                    }
                }
            }
        }
    }

    /// The epilogue (bias, then SiLU in place or into a second matrix with `σ(z)` in C) on full
    /// and edge tiles, one and several KC blocks, k = 0, one and two threads.
    #[test]
    fn sgemm_epilogue_adds_the_bias_and_applies_silu() {
        if !available() {
            return;
        }
        for &(m, n, k) in &[(30, 70, 40), (12, 32, 600), (7, 20, 0), (100, 256, 256)] {
            for threads in [1, 2] {
                for separate in [false, true] {
                    let a = values(m * k, 6);
                    let b = values(k * n, 7);
                    let bias = values(n, 8);
                    let mut c = vec![f32::NAN; m * n];
                    let mut y = vec![f32::NAN; m * n];
                    let silu_out = if separate { y.as_mut_ptr() } else { c.as_mut_ptr() };
                    let epilogue = Epilogue { bias: bias.as_ptr(), row_bias: std::ptr::null(), silu: silu_out };
                    // SAFETY: a is m×k, b is k×n, c and y are m×n, bias has n entries.
                    unsafe {
                        sgemm_with(
                            m,
                            n,
                            k,
                            MatRef { ptr: a.as_ptr(), rs: k, cs: 1 },
                            MatRef { ptr: b.as_ptr(), rs: n, cs: 1 },
                            c.as_mut_ptr(),
                            n,
                            false,
                            epilogue,
                            None,
                            threads,
                        )
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let z = bias[j] as f64 + (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum::<f64>();
                            let silu = z / (1.0 + (-z).exp());
                            let case = format!("{m}×{n}×{k} threads {threads} separate {separate} [{i},{j}]");
                            let (got_y, got_c) = if separate { (y[i * n + j], Some(c[i * n + j])) } else { (c[i * n + j], None) };
                            assert!((got_y as f64 - silu).abs() < 1e-5 * (1.0 + z.abs()), "silu {case}: {got_y} vs {silu}");
                            if let Some(got_c) = got_c {
                                let sigmoid = 1.0 / (1.0 + (-z).exp());
                                assert!((got_c as f64 - sigmoid).abs() < 1e-6, "σ(z) {case}: {got_c} vs {sigmoid}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The AVX2 sigmoid (the SiLU epilogue's `1 + e⁻ᶻ`) against f64 over [−100, 100], where it
    /// saturates, at the clamps and at ±∞: relative error within 3e-7 wherever `σ(z)` is a
    /// normal float, never above 1, never negative.
    #[test]
    fn sigmoid_is_accurate_and_saturates() {
        if !std::arch::is_x86_feature_detected!("avx2") || !std::arch::is_x86_feature_detected!("fma") {
            return;
        }
        let mut z = vec![-88.0, -87.9, -87.3, 87.3, 88.0, 88.7, -1e4, 1e4, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, 1e-30, -1e-30, 0.5, -0.5];
        z.extend((-100_000..100_000).map(|i| i as f32 * 1e-3));
        assert_eq!(z.len() % 8, 0);
        let mut worst = 0.0f64;
        for chunk in z.chunks_exact(8) {
            let mut got = [0.0f32; 8];
            // SAFETY: AVX2 and FMA are present (checked above); both arrays hold 8 floats.
            unsafe {
                use std::arch::x86_64::*;
                #[target_feature(enable = "avx2,fma")]
                unsafe fn sigmoid(z: &[f32], out: &mut [f32; 8]) {
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), x86::sigmoid8(_mm256_loadu_ps(z.as_ptr()))) }
                }
                sigmoid(chunk, &mut got);
            }
            for (&z, &got) in chunk.iter().zip(&got) {
                let want = 1.0 / (1.0 + (-f64::from(z)).exp());
                assert!((0.0..=1.0).contains(&got), "σ({z}) = {got}");
                if want >= f64::from(f32::MIN_POSITIVE) {
                    worst = worst.max((f64::from(got) - want).abs() / want);
                } else {
                    assert!(f64::from(got) < 1e-37, "σ({z}) = {got}, want {want}");
                }
            }
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
    }

    /// The implicit im2col B (and the explicit matrix written from the same view) against the
    /// convolution's definition: images whose rows are narrower and wider than a vector half,
    /// several images per sliver, padding on every side (up to `kernel − 1`), a patch depth over
    /// several KC blocks, one and two threads; rows a multiple of the vector half long (B read in
    /// place, [`BPanel`]) and others (packed).
    #[test]
    fn sgemm_on_implicit_im2col_is_the_convolution() {
        if !implicit_im2col() {
            return;
        }
        // (images, C, [H, W], [kh, kw], [ph, pw], C_out)
        let cases = [
            (2, 3, [16, 16], [3, 3], [1, 1], 13),
            (5, 4, [4, 4], [3, 3], [1, 1], 12),
            (3, 2, [7, 5], [2, 3], [1, 0], 7),
            (1, 48, [8, 8], [3, 3], [1, 1], 25),
            (4, 5, [6, 20], [1, 1], [0, 0], 9),
            (2, 1, [4, 4], [5, 5], [4, 4], 6),
            (1, 3, [3, 37], [3, 3], [2, 1], 12),
            // Rows a multiple of AVX2's 8-lane half: B is read in place (a half-sliver that
            // is a row; one spanning two rows, as 24 = 16 + 8 makes; a last sliver of one half).
            (1, 2, [2, 24], [3, 3], [1, 1], 7),
            (3, 2, [1, 8], [1, 3], [0, 1], 5),
            // The same for AVX-512's 16-lane half (the first case, 16 wide, too): two halves in
            // one row, over two depth blocks (432 = 2·216 deep); 48 = 32 + 16, a last sliver of
            // one half.
            (1, 48, [3, 32], [3, 3], [1, 1], 14),
            (3, 2, [1, 16], [1, 3], [0, 1], 5),
            // col read in place as A over two depth blocks (288 columns = 2·144 deep), 36 rows
            // (a multiple of both kernels' tile rows).
            (2, 4, [12, 12], [3, 3], [1, 1], 13),
            // Row-padded on AVX-512: halves of two 8-wide rows over three images, of one 4 × 4
            // image each (with (5, 4, [4, 4]) and (1, 48, [8, 8]) above), of eight 2-wide rows
            // (2 × 8, tall planes); a 5 × 5 kernel (pw 2, masks two lanes deep).
            (3, 3, [8, 8], [3, 3], [1, 1], 20),
            (2, 3, [8, 2], [3, 3], [1, 1], 9),
            (2, 2, [8, 8], [5, 5], [2, 2], 6),
        ];
        let (mut served_any, mut served_rows) = (false, false);
        for (images, channels, [h, w], [kh, kw], [ph, pw], co) in cases {
            let out = [h + 2 * ph - kh + 1, w + 2 * pw - kw + 1];
            let (k, n) = (channels * kh * kw, images * out[0] * out[1]);
            let x = values(images * channels * h * w, 11);
            let weight = values(co * k, 12);
            let at = |img: usize, c: usize, y: isize, x_: isize| {
                if y < 0 || x_ < 0 || y >= h as isize || x_ >= w as isize { 0.0 } else { x[((img * channels + c) * h + y as usize) * w + x_ as usize] as f64 }
            };
            let mut padded = vec![f32::NAN; padded_len(images, channels, [h, w], [ph, pw], PadLayout::Full)];
            let g = pad_images(&x, images, channels, [h, w], [ph, pw], [kh, kw], PadLayout::Full, None, &mut padded);
            assert_eq!(g.out, out);
            // The same view written out as the explicit matrix (the weight gradient's A).
            let mut col = vec![f32::NAN; k * n + 1];
            im2col_from_padded(g, n, &mut col);
            for (r, row) in col[..k * n].chunks(n).enumerate() {
                let (c, i, j) = (r / (kh * kw), (r / kw) % kh, r % kw);
                for (q, &got) in row.iter().enumerate() {
                    let (img, oy, ox) = (q / (out[0] * out[1]), (q / out[1]) % out[0], q % out[1]);
                    let want = at(img, c, (oy + i) as isize - ph as isize, (ox + j) as isize - pw as isize);
                    assert_eq!(got as f64, want, "im2col {images}×{channels}×{h}×{w} k{kh}×{kw} p{ph},{pw} [{r},{q}]");
                }
            }
            assert!(col[k * n].is_nan(), "im2col wrote past its matrix");
            // The same matrix read in place as A (a weight gradient's `col·∂Yᵀ`), accumulated
            // onto C, where a kernel serves it (rows a multiple of the tile's 6 or 12): against
            // col·B in f64, C one sliver or part of one, or a sliver and a part (40 = 32 + 8).
            for width in [16, 21, 40] {
                let b = values(n * width, 13);
                let c0 = values(k * width, 14);
                let mut got = c0.clone();
                // SAFETY: B is n × width (strides (1, n): read transposed), C is k × width.
                let served = unsafe { sgemm_im2col_a(g, n, width, MatRef { ptr: b.as_ptr(), rs: 1, cs: n }, got.as_mut_ptr(), width, true) };
                for r in 0..k * usize::from(served) {
                    for j in 0..width {
                        let want = c0[r * width + j] as f64 + (0..n).map(|q| col[r * n + q] as f64 * b[j * n + q] as f64).sum::<f64>();
                        let got = got[r * width + j] as f64;
                        assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "col·B {images}×{channels}×{h}×{w} k{kh}×{kw} [{r},{j}]: {got} vs {want}");
                    }
                }
                served_any |= served;
            }
            // The row-padded layout too, where a kernel reads it (AVX-512; rows of 8, 4 or 2).
            let mut rows_padded = vec![f32::NAN; padded_len(images, channels, [h, w], [ph, pw], PadLayout::Rows)];
            let rows_view = row_padded_im2col(out, kw, pw).then(|| pad_images(&x, images, channels, [h, w], [ph, pw], [kh, kw], PadLayout::Rows, None, &mut rows_padded));
            served_rows |= rows_view.is_some();
            for (view, threads) in [(g, 1), (g, 2)].into_iter().chain(rows_view.map(|v| (v, 1))).chain(rows_view.map(|v| (v, 2))) {
                assert_eq!(view.out, out);
                let mut got = vec![f32::NAN; co * n];
                // SAFETY: the weight is co × k row-major, C is co × n, the view reads inside x.
                unsafe { sgemm_with(co, n, k, MatRef { ptr: weight.as_ptr(), rs: k, cs: 1 }, BSource::Im2col(view), got.as_mut_ptr(), n, false, Epilogue::NONE, None, threads) };
                for o in 0..co {
                    for q in 0..n {
                        let (img, oy, ox) = (q / (out[0] * out[1]), (q / out[1]) % out[0], q % out[1]);
                        let mut want = 0.0;
                        for c in 0..channels {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let v = at(img, c, (oy + i) as isize - ph as isize, (ox + j) as isize - pw as isize);
                                    want += weight[o * k + (c * kh + i) * kw + j] as f64 * v;
                                }
                            }
                        }
                        let case = format!("{images}×{channels}×{h}×{w} k{kh}×{kw} p{ph},{pw} threads {threads} rows-padded {} [{o},{q}]", view.column_pad > 0);
                        assert!((got[o * n + q] as f64 - want).abs() <= 1e-5 * (1.0 + k as f64).sqrt(), "{case}: {} vs {want}", got[o * n + q]);
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(served_any, available(), "which CPUs read col in place");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(served_rows, is_x86_feature_detected!("avx512f"), "which CPUs read row-padded images");
    }

    /// C with a row stride wider than its columns (a block of a bigger matrix) keeps the
    /// columns outside the block untouched.
    #[test]
    fn sgemm_writes_only_inside_a_strided_c() {
        if !available() {
            return;
        }
        let (m, n, k, ldc) = (13, 40, 9, 47);
        let a = values(m * k, 4);
        let b = values(k * n, 5);
        let mut c = vec![7.0f32; m * ldc];
        // SAFETY: C rows are ldc apart and hold n ≤ ldc columns each.
        unsafe { sgemm(m, n, k, MatRef { ptr: a.as_ptr(), rs: k, cs: 1 }, MatRef { ptr: b.as_ptr(), rs: n, cs: 1 }, c.as_mut_ptr(), ldc, false, 2) };
        for i in 0..m {
            for j in 0..ldc {
                let want = if j < n { (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum::<f64>() } else { 7.0 };
                assert!((c[i * ldc + j] as f64 - want).abs() < 1e-5, "C[{i},{j}]");
            }
        }
    }
}

