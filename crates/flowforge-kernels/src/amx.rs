//! f32 products on Intel AMX through an exact three-way bf16 split (opt-in,
//! [`crate::f32_matmul_on_amx`]).
//!
//! Each f32 `a` is written `a₀ + a₁ + a₂`, three bf16 numbers, each the round-to-nearest-even
//! bf16 of what the ones before it left (the subtractions are exact, by Sterbenz's lemma):
//! 8 significant bits each, and with the signs of the remainders all 24 bits of a normal f32.
//! A product `a·b` is then the six terms `aᵢ·bⱼ` with `i + j ≤ 2`, each exact in f32, that
//! `tdpbf16ps` multiplies and adds in f32; the three terms left out are below 2⁻²⁶·|a·b|
//! together. So the result is as accurate as an f32 FMA chain (unit inputs, depth 256: largest
//! error 3.9·10⁻⁷ against 1.0·10⁻⁶; `docs/performance.md`, session 33), though not the same
//! bits. Where the split does not hold: `tdpbf16ps` reads bf16 subnormals as zero, so pieces
//! below 2⁻¹²⁶ (values under about 2⁻¹¹⁰) are lost, and values above bf16's largest (about
//! 3.39·10³⁸) become infinities and then NaN.
//!
//! Sapphire Rapids' `tdpbf16ps` does 16 × 16 × 32 multiply-adds in about 5.4 ns alone (on
//! zeros; 8.0 ns on real data in a loop that keeps its operands in L1). Six of them per 32-deep
//! slice, at about 8.5 ns each in [`linear_block`], leave a 224 × 256 × 256 block at 103–108
//! µs with the 10 µs split of its rows, against about 160 µs for the AVX-512 FMA kernel. The
//! pieces come from `vcvtne2ps2bf16` (AVX512-BF16), which rounds 32 floats in one instruction.
//! Tile loads must be 64-byte aligned (misaligned rows cost 16 ns a tile instead of 2.5), and
//! A's tiles are stored contiguous, which loads faster than rows of A in place (9.1 ns a
//! product).

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Rows of a tile; also the rows of a stripe of A.
const TILE_ROWS: usize = 16;
/// bf16 values in a tile row (64 bytes): the depth of one `tdpbf16ps`.
const DEPTH: usize = 32;
/// Output columns of a tile (16 f32).
const TILE_COLS: usize = 16;
/// The bf16 pieces of a split f32.
const PIECES: usize = 3;
/// The `(i, j)` of the six products `aᵢ·bⱼ`, grouped by `i` so that A's tiles load once each.
const PRODUCTS: [(usize, &[usize]); 3] = [(0, &[0, 1, 2]), (1, &[0, 1]), (2, &[0])];

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Ask for (or stop asking for) AMX products; whether they now run.
pub(crate) fn request(on: bool) -> bool {
    REQUESTED.store(on, Ordering::Relaxed);
    active()
}

/// Whether the products that can run on AMX do.
pub(crate) fn active() -> bool {
    REQUESTED.load(Ordering::Relaxed) && supported()
}

/// Whether the CPU has AMX-BF16, AMX-TILE, AVX-512F, -BW and -BF16, and Linux lets this
/// process use the tile registers.
pub(crate) fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // CPUID leaf 7, EDX: bit 22 AMX-BF16, bit 24 AMX-TILE.
        let has = |leaf: CpuidResult| leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0;
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
            && has(__cpuid_count(7, 0))
            && request_tile_data()
    })
}

/// Linux keeps the 8 KiB tile state off until a process asks for it (`arch_prctl`
/// `ARCH_REQ_XCOMP_PERM` for `XFEATURE_XTILEDATA`); a tile instruction before that faults.
#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: the system call reads two integers and changes only this process's permissions.
    unsafe {
        asm!("syscall", inlateout("rax") SYS_ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM, in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// Whether a `k × n` weight runs on AMX: whole tiles of depth and of column pairs.
pub(crate) fn serves(k: usize, n: usize) -> bool {
    k > 0 && n > 0 && k.is_multiple_of(DEPTH) && n.is_multiple_of(2 * TILE_COLS)
}

/// `len` `u16` of `buffer` (grown to fit), starting on a 64-byte boundary.
fn aligned(buffer: &mut Vec<u16>, len: usize) -> &mut [u16] {
    if buffer.len() < len + 32 {
        buffer.resize(len + 32, 0);
    }
    let skip = buffer.as_ptr().align_offset(64);
    &mut buffer[skip..skip + len]
}

/// 32 floats rounded to bf16 (to nearest, ties to even), `lo`'s in the low 16 words:
/// `vcvtne2ps2bf16` (AVX512-BF16), one instruction for what takes five a vector by integer
/// rounding. (It reads f32 subnormals as zero, as `tdpbf16ps` reads bf16 ones.)
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16x32(lo: __m512, hi: __m512) -> __m512i {
    let out: __m512i;
    // SAFETY: register-only; the caller runs where AVX512-BF16 is present (`supported`).
    unsafe { asm!("vcvtne2ps2bf16 {o}, {h}, {l}", o = lateout(zmm_reg) out, h = in(zmm_reg) hi, l = in(zmm_reg) lo, options(pure, nomem, nostack)) };
    out
}

/// The f32 values of the 32 bf16 words of `w`: (low 16, high 16).
#[inline(always)]
unsafe fn widen32(w: __m512i) -> (__m512, __m512) {
    unsafe {
        let lo = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(w)));
        let hi = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64::<1>(w)));
        (_mm512_castsi512_ps(lo), _mm512_castsi512_ps(hi))
    }
}

/// The bf16 pieces of 32 floats (two vectors) as 32 `u16` in one vector, in order: each the
/// bf16 of what the ones before it left (the split of the module's header).
#[inline(always)]
unsafe fn pieces32(lo: __m512, hi: __m512) -> [__m512i; PIECES] {
    unsafe {
        let p0 = bf16x32(lo, hi);
        let (f_lo, f_hi) = widen32(p0);
        let (r_lo, r_hi) = (_mm512_sub_ps(lo, f_lo), _mm512_sub_ps(hi, f_hi));
        let p1 = bf16x32(r_lo, r_hi);
        let (f_lo, f_hi) = widen32(p1);
        let p2 = bf16x32(_mm512_sub_ps(r_lo, f_lo), _mm512_sub_ps(r_hi, f_hi));
        [p0, p1, p2]
    }
}

/// The bf16 pieces of two rows of 16 floats, paired: lane `c` holds `(even[c], odd[c])`, the
/// even row's bf16 in the low half.
#[inline(always)]
unsafe fn paired(even: __m512, odd: __m512) -> [__m512i; PIECES] {
    unsafe {
        // Word 2c from word c (even), word 2c + 1 from word 16 + c (odd).
        let interleave = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        pieces32(even, odd).map(|w| _mm512_permutexvar_epi16(interleave, w))
    }
}

/// A weight `W` (`k × n`, row-major, both multiples of 32) split into three bf16 planes, each
/// in the order `tdpbf16ps` reads B: for each 32-deep slice `s` and 16-wide column tile `t`,
/// one 1 KiB tile whose row `r` holds the pairs `(W[32s + 2r][16t + c], W[32s + 2r + 1][16t + c])`
/// for `c = 0..16`.
pub(crate) struct SplitB {
    data: Vec<u16>,
    skip: usize,
    k: usize,
    n: usize,
}

impl SplitB {
    /// `w` (`k × n`, row-major) split; `None` where [`serves`] does not hold or AMX is not
    /// [`supported`].
    pub(crate) fn new(k: usize, n: usize, w: &[f32]) -> Option<Self> {
        if !serves(k, n) || !supported() {
            return None;
        }
        assert!(w.len() >= k * n);
        let len = PIECES * k * n;
        // Not zeroed first: `split_weights` writes every value of the planes (zeroing them was
        // a `memset` a fifth as long as the split).
        let mut data = Vec::<u16>::with_capacity(len + 32);
        let skip = data.as_ptr().align_offset(64);
        // SAFETY: AVX-512 and AVX512-BF16 are present (`supported`); w holds k × n floats
        // (asserted); the capacity holds `skip + len` values, the `skip` before the planes
        // zeroed here and all `len` of the planes written by split_weights, so every value is
        // written before the length covers it.
        unsafe {
            data.as_mut_ptr().write_bytes(0, skip);
            split_weights(data.as_mut_ptr().add(skip), k, n, w.as_ptr());
            data.set_len(skip + len);
        }
        Some(SplitB { data, skip, k, n })
    }

    /// Tile `(s, t)` of plane `piece`.
    fn tile(&self, piece: usize, s: usize, t: usize) -> *const u16 {
        let (slices, tiles) = (self.k / DEPTH, self.n / TILE_COLS);
        self.data[self.skip + ((piece * slices + s) * tiles + t) * TILE_ROWS * DEPTH..].as_ptr()
    }
}

/// [`SplitB`]'s planes from `w` (`k × n`, row-major, both multiples of 32): every value of the
/// `3 × k/32 × n/16` tiles written.
///
/// # Safety
/// `planes` must have room for `3·k·n` values and `w` hold `k × n` floats.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn split_weights(planes: *mut u16, k: usize, n: usize, w: *const f32) {
    let (slices, tiles) = (k / DEPTH, n / TILE_COLS);
    for s in 0..slices {
        for r in 0..TILE_ROWS {
            // Row r of each tile of the slice pairs W's rows 32s + 2r and 32s + 2r + 1.
            let (even, odd) = unsafe { (w.add((s * DEPTH + 2 * r) * n), w.add((s * DEPTH + 2 * r + 1) * n)) };
            for t in 0..tiles {
                // SAFETY: 16 floats of each row from column 16t (t < n / 16).
                let pairs = unsafe { paired(_mm512_loadu_ps(even.add(t * TILE_COLS)), _mm512_loadu_ps(odd.add(t * TILE_COLS))) };
                for (piece, pair) in pairs.into_iter().enumerate() {
                    let at = ((piece * slices + s) * tiles + t) * TILE_ROWS * DEPTH + r * DEPTH;
                    // SAFETY: the tile row `at..at + 32` is inside the planes.
                    unsafe { _mm512_storeu_si512(planes.add(at).cast(), pair) };
                }
            }
        }
    }
}

/// A's `rows` rows (`k` wide and row-major, `k` a multiple of 32) into three bf16 planes of
/// tiles: for each 16-row stripe and 32-deep slice one 1 KiB tile, row `r` the slice of A's
/// row `16·stripe + r`; rows past `rows` (to a multiple of 32) are zero. Contiguous tiles load
/// at stride 64: the kernel runs at 8.5 ns a product against 9.1 on rows of A in place.
///
/// # Safety
/// `planes` must hold `3 × rows.next_multiple_of(32) × k` values and `a` the rows.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn split_rows(planes: &mut [u16], rows: usize, k: usize, a: *const f32) {
    let (stripes, slices) = (rows.div_ceil(2 * TILE_ROWS) * 2, k / DEPTH);
    for st in 0..stripes {
        for r in 0..TILE_ROWS {
            let i = st * TILE_ROWS + r;
            for s in 0..slices {
                let pieces = if i < rows {
                    // SAFETY: 32 floats of row i from depth 32s.
                    unsafe {
                        let at = a.add(i * k + s * DEPTH);
                        pieces32(_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16)))
                    }
                } else {
                    [_mm512_setzero_si512(); PIECES]
                };
                for (piece, row) in pieces.into_iter().enumerate() {
                    let at = ((piece * stripes + st) * slices + s) * TILE_ROWS * DEPTH + r * DEPTH;
                    // SAFETY: row r of tile (st, s) is inside the planes.
                    unsafe { _mm512_storeu_si512(planes[at..at + DEPTH].as_mut_ptr().cast(), row) };
                }
            }
        }
    }
}

/// One thread's buffers for [`linear_block`]: A's three planes, C's f32 copy (deep
/// products) and a 32 × 32 block of C.
#[derive(Default)]
pub(crate) struct Scratch {
    a: Vec<u16>,
    c: Vec<u16>,
    block: Vec<u16>,
}

/// The tile configuration: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = {
    let mut config = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row: [0; 16], rows: [0; 16] };
    let mut t = 0;
    while t < 8 {
        config.bytes_per_row[t] = 64;
        config.rows[t] = 16;
        t += 1;
    }
    config
};

macro_rules! load {
    ($tile:literal, $ptr:expr, $stride:expr) => {
        asm!(concat!("tileloadd tmm", $tile, ", [{p} + {s}*1]"), p = in(reg) $ptr, s = in(reg) $stride, options(nostack, readonly))
    };
}
macro_rules! store {
    ($tile:literal, $ptr:expr, $stride:expr) => {
        asm!(concat!("tilestored [{p} + {s}*1], tmm", $tile), p = in(reg) $ptr, s = in(reg) $stride, options(nostack))
    };
}
macro_rules! product {
    ($c:literal, $a:literal, $b:literal) => {
        asm!(concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b), options(nostack, nomem))
    };
}

/// Depth a block of C accumulates in its tiles before going to memory: slices of A and of the
/// weight this deep stay in L2 while every block of C reads them.
const DEPTH_BLOCK: usize = 512;

/// `out = act(a·W + bias)` for `rows` rows: `a` `rows × k` (row stride `k`), `out` `rows × n`
/// (row stride `n`), `act` SiLU or the identity. A is split into its three planes of tiles
/// ([`split_rows`], rows padded to 32), then each 32 × 32 block of C accumulates its six
/// products per 32-deep slice in four tiles (two row stripes × two column tiles: A's two tiles
/// and B's two per product), and the epilogue adds the bias and applies the SiLU of the FMA
/// kernels ([`crate::sgemm`]). Deeper than [`DEPTH_BLOCK`], the blocks go to an f32 copy of C
/// between depth blocks.
///
/// # Safety
/// [`supported`] must hold; `a` must hold `rows × k` floats, `bias` `n`, `out` room for
/// `rows × n`, not overlapping `a`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn linear_block(rows: usize, a: *const f32, w: &SplitB, bias: *const f32, silu: bool, out: *mut f32, scratch: &mut Scratch) {
    let (k, n) = (w.k, w.n);
    let (stripes, slices, tiles) = (rows.div_ceil(2 * TILE_ROWS) * 2, k / DEPTH, n / TILE_COLS);
    let plane = stripes * slices * TILE_ROWS * DEPTH;
    let planes = aligned(&mut scratch.a, PIECES * plane);
    // SAFETY: as the caller promises (k is a multiple of 32: `SplitB` exists).
    unsafe { split_rows(planes, rows, k, a) };
    let planes = planes.as_ptr();
    let a_tile = |piece: usize, st: usize, s: usize| unsafe { planes.add(((piece * stripes + st) * slices + s) * TILE_ROWS * DEPTH) };
    // C's 32 × 32 block as f32 (4 KiB), 64-byte aligned; where the depth is split, an f32 copy
    // of all of C holds the blocks between depth blocks.
    let block = aligned(&mut scratch.block, 2 * 32 * 32).as_mut_ptr().cast::<f32>();
    let depth_blocks = slices.div_ceil(DEPTH_BLOCK / DEPTH);
    let c_all = if depth_blocks > 1 { aligned(&mut scratch.c, 2 * stripes * TILE_ROWS * n).as_mut_ptr().cast::<f32>() } else { block };
    let (a_stride, b_stride, block_stride, c_stride) = (2 * DEPTH, 2 * DEPTH, 4 * 32usize, 4 * n);
    // SAFETY: the configuration is a valid palette-1 layout; every tile load reads 16 rows of
    // 64 bytes inside A's planes, the split weight or C's copy, every store 16 rows inside C's
    // block or copy; the epilogue writes rows `< rows` of out and reads n values of bias.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        for d in 0..depth_blocks {
            let (s0, s1) = (d * DEPTH_BLOCK / DEPTH, ((d + 1) * DEPTH_BLOCK / DEPTH).min(slices));
            let last = d + 1 == depth_blocks;
            for st in (0..stripes).step_by(2) {
                for t in (0..tiles).step_by(2) {
                    let c = c_all.add(st * TILE_ROWS * n + t * TILE_COLS);
                    if d == 0 {
                        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                    } else {
                        load!("0", c, c_stride);
                        load!("1", c.add(TILE_COLS), c_stride);
                        load!("2", c.add(TILE_ROWS * n), c_stride);
                        load!("3", c.add(TILE_ROWS * n + TILE_COLS), c_stride);
                    }
                    for s in s0..s1 {
                        for (i, js) in PRODUCTS {
                            load!("4", a_tile(i, st, s), a_stride);
                            load!("5", a_tile(i, st + 1, s), a_stride);
                            for &j in js {
                                load!("6", w.tile(j, s, t), b_stride);
                                load!("7", w.tile(j, s, t + 1), b_stride);
                                product!("0", "4", "6");
                                product!("1", "4", "7");
                                product!("2", "5", "6");
                                product!("3", "5", "7");
                            }
                        }
                    }
                    if !last {
                        store!("0", c, c_stride);
                        store!("1", c.add(TILE_COLS), c_stride);
                        store!("2", c.add(TILE_ROWS * n), c_stride);
                        store!("3", c.add(TILE_ROWS * n + TILE_COLS), c_stride);
                        continue;
                    }
                    store!("0", block, block_stride);
                    store!("1", block.add(TILE_COLS), block_stride);
                    store!("2", block.add(TILE_ROWS * 32), block_stride);
                    store!("3", block.add(TILE_ROWS * 32 + TILE_COLS), block_stride);
                    let (b0, b1) = (_mm512_loadu_ps(bias.add(t * TILE_COLS)), _mm512_loadu_ps(bias.add(t * TILE_COLS + 16)));
                    for row in 0..rows.saturating_sub(st * TILE_ROWS).min(2 * TILE_ROWS) {
                        let z0 = _mm512_add_ps(_mm512_loadu_ps(block.add(row * 32)), b0);
                        let z1 = _mm512_add_ps(_mm512_loadu_ps(block.add(row * 32 + 16)), b1);
                        let (y0, y1) = if silu { (crate::sgemm::x86::silu16(z0), crate::sgemm::x86::silu16(z1)) } else { (z0, z1) };
                        let o = out.add((st * TILE_ROWS + row) * n + t * TILE_COLS);
                        _mm512_storeu_ps(o, y0);
                        _mm512_storeu_ps(o.add(16), y1);
                    }
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in `[-scale/2, scale/2)`.
    fn values(len: usize, seed: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|i| (((i * 7 + seed * 13) as f32 * 0.618_034).fract() - 0.5) * scale).collect()
    }

    /// Products deeper than [`DEPTH_BLOCK`] (C's copy between depth blocks) and a full
    /// 256 × 256 × 256 one are as accurate as an f32 FMA chain, the bias added.
    #[test]
    fn deep_products_are_as_accurate_as_f32() {
        if !supported() {
            eprintln!("no AMX here: nothing to check");
            return;
        }
        let mut scratch = Scratch::default();
        for (m, k, n) in [(33usize, 1088usize, 64usize), (256, 256, 256)] {
            let (a, w, bias) = (values(m * k, 1, 2.0), values(k * n, 2, 0.25), values(n, 3, 1.0));
            let exact: Vec<f64> = (0..m * n).map(|x| (0..k).map(|p| f64::from(a[(x / n) * k + p]) * f64::from(w[p * n + x % n])).sum::<f64>() + f64::from(bias[x % n])).collect();
            let fma: Vec<f32> = (0..m * n).map(|x| (0..k).fold(0.0f32, |acc, p| a[(x / n) * k + p].mul_add(w[p * n + x % n], acc)) + bias[x % n]).collect();
            let worst_fma = fma.iter().zip(&exact).map(|(f, e)| (f64::from(*f) - e).abs()).fold(0.0, f64::max);
            let split = SplitB::new(k, n, &w).expect("AMX serves multiples of 32");
            let mut out = vec![f32::NAN; m * n];
            // SAFETY: AMX is supported; the buffers hold what the call reads and writes.
            unsafe { linear_block(m, a.as_ptr(), &split, bias.as_ptr(), false, out.as_mut_ptr(), &mut scratch) };
            let worst = out.iter().zip(&exact).map(|(c, e)| (f64::from(*c) - e).abs()).fold(0.0, f64::max);
            assert!(worst <= 2.0 * worst_fma && worst < 2e-5, "{m}×{k}×{n}: AMX error {worst:e}, FMA chain {worst_fma:e}");
        }
    }

    /// The six-product split is as accurate as an f32 FMA chain (against f64), with and
    /// without SiLU, on a block of rows that is not a multiple of 32, and far more accurate
    /// than bf16 alone would be.
    #[test]
    fn amx_products_are_as_accurate_as_f32() {
        if !supported() {
            eprintln!("no AMX here: nothing to check");
            return;
        }
        let (rows, k, n) = (75usize, 256usize, 96usize);
        let value = |i: usize, scale: f32| ((i as f32 * 0.618_034).fract() - 0.5) * scale;
        let a: Vec<f32> = (0..rows * k).map(|i| value(i, 2.0)).collect();
        let w: Vec<f32> = (0..k * n).map(|i| value(i * 7 + 3, 0.25)).collect();
        let bias: Vec<f32> = (0..n).map(|i| value(i * 13 + 1, 0.5)).collect();
        let split = SplitB::new(k, n, &w).expect("AMX serves 256 × 96");
        let mut scratch = Scratch::default();
        for silu in [false, true] {
            let mut out = vec![f32::NAN; rows * n];
            // SAFETY: AMX is supported; the buffers hold what the call reads and writes.
            unsafe { linear_block(rows, a.as_ptr(), &split, bias.as_ptr(), silu, out.as_mut_ptr(), &mut scratch) };
            let (mut worst_amx, mut worst_fma) = (0.0f64, 0.0f64);
            for i in 0..rows {
                for j in 0..n {
                    let exact: f64 = (0..k).map(|p| f64::from(a[i * k + p]) * f64::from(w[p * n + j])).sum::<f64>() + f64::from(bias[j]);
                    let fma = (0..k).fold(0.0f32, |acc, p| a[i * k + p].mul_add(w[p * n + j], acc)) + bias[j];
                    let act = |z: f64| if silu { z / (1.0 + (-z).exp()) } else { z };
                    worst_amx = worst_amx.max((f64::from(out[i * n + j]) - act(exact)).abs());
                    worst_fma = worst_fma.max((act(f64::from(fma)) - act(exact)).abs());
                }
            }
            assert!(worst_amx <= 2.0 * worst_fma && worst_amx < 1e-5, "silu {silu}: AMX error {worst_amx:e}, FMA chain {worst_fma:e}");
        }
    }
}

