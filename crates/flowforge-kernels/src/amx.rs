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
//! Sapphire Rapids' `tdpbf16ps` does 16 × 16 × 32 multiply-adds in about 5.4 ns; six of them
//! per 32-deep slice still leave a 256 × 256 × 256 product at 118 µs, against about 180 µs for
//! the AVX-512 FMA kernel. Tile loads must be 64-byte aligned: misaligned rows cost 16 ns a
//! tile instead of 2.5.

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

/// Whether the CPU has AMX-BF16, AMX-TILE and AVX-512F, and Linux lets this process use the
/// tile registers.
pub(crate) fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // CPUID leaf 7, EDX: bit 22 AMX-BF16, bit 24 AMX-TILE.
        let has = |leaf: CpuidResult| leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0;
        std::arch::is_x86_feature_detected!("avx512f") && has(__cpuid_count(7, 0)) && request_tile_data()
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

/// Where, in `buffer` (grown to fit), `len` `u16` can start on a 64-byte boundary.
fn aligned_start(buffer: &mut Vec<u16>, len: usize) -> usize {
    if buffer.len() < len + 32 {
        buffer.resize(len + 32, 0);
    }
    buffer.as_ptr().align_offset(64)
}

/// `len` `u16` of `buffer` (grown to fit), starting on a 64-byte boundary.
fn aligned(buffer: &mut Vec<u16>, len: usize) -> &mut [u16] {
    let skip = aligned_start(buffer, len);
    &mut buffer[skip..skip + len]
}

/// `x` rounded to the nearest bf16 (ties to even), in the high half of each 32-bit lane.
#[inline(always)]
unsafe fn round_bf16(x: __m512) -> __m512i {
    unsafe {
        let bits = _mm512_castps_si512(x);
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        let rounded = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), odd);
        _mm512_and_si512(rounded, _mm512_set1_epi32(0xffff_0000_u32 as i32))
    }
}

/// The three bf16 pieces of 16 floats, each in the high half of its 32-bit lane.
#[inline(always)]
unsafe fn split(x: __m512) -> [__m512i; PIECES] {
    unsafe {
        let p0 = round_bf16(x);
        let r1 = _mm512_sub_ps(x, _mm512_castsi512_ps(p0));
        let p1 = round_bf16(r1);
        let r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(p1));
        [p0, p1, round_bf16(r2)]
    }
}

/// A weight `k × n` split into three bf16 planes, each in the order `tdpbf16ps` reads B: for
/// each 32-deep slice `s` and 16-wide column tile `t`, one 1 KiB tile whose row `r` holds the
/// pairs `(W[32s + 2r][16t + c], W[32s + 2r + 1][16t + c])` for `c = 0..16`.
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
        let mut data = Vec::new();
        let len = PIECES * k * n;
        let skip = aligned_start(&mut data, len);
        // SAFETY: AVX-512F is present (`supported`); every index is inside `w` and the planes.
        unsafe { split_weights(&mut data[skip..skip + len], k, n, w) };
        Some(SplitB { data, skip, k, n })
    }

    /// Tile `(s, t)` of plane `piece`.
    fn tile(&self, piece: usize, s: usize, t: usize) -> *const u16 {
        let tiles = self.n / TILE_COLS;
        let slices = self.k / DEPTH;
        self.data[self.skip + ((piece * slices + s) * tiles + t) * TILE_ROWS * DEPTH..].as_ptr()
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn split_weights(planes: &mut [u16], k: usize, n: usize, w: &[f32]) {
    let tiles = n / TILE_COLS;
    let slices = k / DEPTH;
    for s in 0..slices {
        for r in 0..TILE_ROWS {
            let (even, odd) = (&w[(s * DEPTH + 2 * r) * n..], &w[(s * DEPTH + 2 * r + 1) * n..]);
            for t in 0..tiles {
                // SAFETY: 16 floats of each row from column 16t (t < n / 16).
                let (lo, hi) = unsafe { (split(_mm512_loadu_ps(even[t * TILE_COLS..].as_ptr())), split(_mm512_loadu_ps(odd[t * TILE_COLS..].as_ptr()))) };
                for piece in 0..PIECES {
                    // The pair of each column: the even depth's bf16 low, the odd one's high.
                    let pair = _mm512_or_si512(_mm512_srli_epi32::<16>(lo[piece]), hi[piece]);
                    let at = ((piece * slices + s) * tiles + t) * TILE_ROWS * DEPTH + r * DEPTH;
                    // SAFETY: the tile row `at..at + 32` is inside the planes.
                    unsafe { _mm512_storeu_si512(planes[at..at + DEPTH].as_mut_ptr().cast(), pair) };
                }
            }
        }
    }
}

/// One thread's buffers for [`linear_block`]: A's three planes and a 32 × 32 block of C.
#[derive(Default)]
pub(crate) struct Scratch {
    a: Vec<u16>,
    c: Vec<u16>,
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

/// `out = act(a·W + bias)` for `rows` rows: `a` `rows × k` (row stride `k`), `out` `rows × n`
/// (row stride `n`), `act` SiLU or the identity. A is split into its three planes (rows padded
/// to 32), then each 32 × 32 block of C accumulates its six products per 32-deep slice in four
/// tiles (two row stripes × two column tiles: A's two tiles and B's two per product), and the
/// epilogue adds the bias and applies the SiLU of the FMA kernels ([`crate::sgemm`]).
///
/// # Safety
/// [`supported`] must hold; `a` must hold `rows × k` floats, `bias` `n`, `out` room for
/// `rows × n`, not overlapping `a`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn linear_block(rows: usize, a: *const f32, w: &SplitB, bias: *const f32, silu: bool, out: *mut f32, scratch: &mut Scratch) {
    let (k, n) = (w.k, w.n);
    let padded = rows.next_multiple_of(2 * TILE_ROWS);
    let plane = padded * k;
    let planes = aligned(&mut scratch.a, PIECES * plane);
    for i in 0..rows {
        for p in (0..k).step_by(16) {
            // SAFETY: row i's floats p..p + 16 are inside a (k is a multiple of 32).
            let pieces = unsafe { split(_mm512_loadu_ps(a.add(i * k + p))) };
            for (piece, bits) in pieces.into_iter().enumerate() {
                let packed = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(bits));
                let at = piece * plane + i * k + p;
                // SAFETY: 16 values of row i inside plane `piece`.
                unsafe { _mm256_storeu_si256(planes[at..at + 16].as_mut_ptr().cast(), packed) };
            }
        }
    }
    let planes = planes.as_ptr();
    // C's 32 × 32 block as f32 (4 KiB), 64-byte aligned.
    let c = aligned(&mut scratch.c, 2 * 32 * 32).as_mut_ptr().cast::<f32>();
    let (a_stride, b_stride, c_stride) = (2 * k, 2 * DEPTH, 4 * 32usize);
    // SAFETY: the configuration is a valid palette-1 layout; every tile load reads 16 rows of
    // 64 bytes inside the planes or the split weight, every store 16 rows inside C's block.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        for r in (0..padded).step_by(2 * TILE_ROWS) {
            for t in (0..n / TILE_COLS).step_by(2) {
                asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                for s in 0..k / DEPTH {
                    for (i, js) in PRODUCTS {
                        let a0 = planes.add(i * plane + r * k + s * DEPTH);
                        load!("4", a0, a_stride);
                        load!("5", a0.add(TILE_ROWS * k), a_stride);
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
                store!("0", c, c_stride);
                store!("1", c.add(TILE_COLS), c_stride);
                store!("2", c.add(TILE_ROWS * 32), c_stride);
                store!("3", c.add(TILE_ROWS * 32 + TILE_COLS), c_stride);
                let (b0, b1) = (_mm512_loadu_ps(bias.add(t * TILE_COLS)), _mm512_loadu_ps(bias.add(t * TILE_COLS + 16)));
                for row in 0..(rows - r).min(2 * TILE_ROWS) {
                    let z0 = _mm512_add_ps(_mm512_loadu_ps(c.add(row * 32)), b0);
                    let z1 = _mm512_add_ps(_mm512_loadu_ps(c.add(row * 32 + 16)), b1);
                    let (y0, y1) = if silu { (crate::sgemm::x86::silu16(z0), crate::sgemm::x86::silu16(z1)) } else { (z0, z1) };
                    let o = out.add((r + row) * n + t * TILE_COLS);
                    _mm512_storeu_ps(o, y0);
                    _mm512_storeu_ps(o.add(16), y1);
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
