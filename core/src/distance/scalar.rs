//! Portable kernels: what every target gets when no SIMD table applies, and the baseline the
//! benchmarks compare the SIMD tables with.
//!
//! Each reduction is a straightforward sequential loop with one f32 running sum (restarted
//! every `BLOCK` elements for accuracy, see `accumulate`), i.e. what a portable build of the
//! obvious code gives: without fast-math LLVM may not reassociate a float sum, so it cannot
//! vectorise these loops. Several interleaved accumulators would be faster, but LLVM then
//! SLP-vectorises them into packed SSE adds, which turns "scalar" into a partly-SIMD baseline
//! and understates what the SIMD tables buy. Speeding up non-x86 targets is a job for a NEON
//! table, not for this one.
//!
//! f16 inputs are converted in small blocks into stack buffers with `half`'s slice conversion,
//! which is exact and picks up F16C / FP16 hardware where the `half` crate finds it, instead of
//! paying a conversion call (and a feature check) per element.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::{bits_shape, common_len, common_len3, Kernels};

pub(super) const KERNELS: Kernels = Kernels {
    name: "scalar",
    l2_squared,
    dot,
    l1,
    norm_squared,
    cosine_parts,
    l2_squared_f16,
    dot_f16,
    l1_f16,
    norm_squared_f16,
    cosine_parts_f16,
    l2_squared_f32_f16,
    dot_f32_f16,
    l1_f32_f16,
    f32_to_f16,
    f16_to_f32,
    dot_u8,
    l1_u8,
    dot_bits,
    hamming_bits,
    jaccard_bits,
};

/// Elements per partial sum, and per stack block for the f16 kernels: big enough to amortise
/// the conversion call, small enough (2 x 256 bytes) to stay in L1 and off the heap.
const BLOCK: usize = 64;

#[inline(always)]
fn l2_term(x: f32, y: f32) -> f32 {
    let d = x - y;
    d * d
}

#[inline(always)]
fn dot_term(x: f32, y: f32) -> f32 {
    x * y
}

#[inline(always)]
fn l1_term(x: f32, y: f32) -> f32 {
    (x - y).abs()
}

/// Adds `sum term(a[i], b[i])` to `acc`. `a` and `b` must have equal lengths (callers slice
/// them first).
///
/// Each `BLOCK` is summed sequentially into its own partial sum, which is then added to `acc`:
/// the same dependency chain (and speed) as one running sum, but the running total no longer
/// swallows small terms once it has grown large, so the error grows with `BLOCK + n / BLOCK`
/// rather than `n` and stays comparable to the SIMD tables' many-lane sums.
#[inline(always)]
fn accumulate(acc: &mut f32, a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) {
    for (ca, cb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut s = 0.0f32;
        for (&x, &y) in ca.iter().zip(cb) {
            s += term(x, y);
        }
        *acc += s;
    }
}

#[inline(always)]
fn reduce_f32(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = common_len(a.len(), b.len());
    let mut acc = 0.0f32;
    accumulate(&mut acc, &a[..n], &b[..n], term);
    acc
}

#[inline(always)]
fn reduce_f16(a: &[f16], b: &[f16], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = common_len(a.len(), b.len());
    let mut acc = 0.0f32;
    let mut xa = [0.0f32; BLOCK];
    let mut xb = [0.0f32; BLOCK];
    for (ca, cb) in a[..n].chunks(BLOCK).zip(b[..n].chunks(BLOCK)) {
        let m = ca.len();
        ca.convert_to_f32_slice(&mut xa[..m]);
        cb.convert_to_f32_slice(&mut xb[..m]);
        accumulate(&mut acc, &xa[..m], &xb[..m], &term);
    }
    acc
}

#[inline(always)]
fn reduce_f32_f16(a: &[f32], b: &[f16], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = common_len(a.len(), b.len());
    let mut acc = 0.0f32;
    let mut xb = [0.0f32; BLOCK];
    for (ca, cb) in a[..n].chunks(BLOCK).zip(b[..n].chunks(BLOCK)) {
        let m = ca.len();
        cb.convert_to_f32_slice(&mut xb[..m]);
        accumulate(&mut acc, ca, &xb[..m], &term);
    }
    acc
}

/// Adds dot, |a|^2 and |b|^2 terms to `acc`, blocked like `accumulate`.
#[inline(always)]
fn accumulate_cosine(acc: &mut (f32, f32, f32), a: &[f32], b: &[f32]) {
    for (ca, cb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut s = (0.0f32, 0.0f32, 0.0f32);
        for (&x, &y) in ca.iter().zip(cb) {
            s.0 += x * y;
            s.1 += x * x;
            s.2 += y * y;
        }
        acc.0 += s.0;
        acc.1 += s.1;
        acc.2 += s.2;
    }
}

fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    reduce_f32(a, b, l2_term)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    reduce_f32(a, b, dot_term)
}

fn l1(a: &[f32], b: &[f32]) -> f32 {
    reduce_f32(a, b, l1_term)
}

fn norm_squared(a: &[f32]) -> f32 {
    reduce_f32(a, a, dot_term)
}

fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let n = common_len(a.len(), b.len());
    let mut acc = (0.0f32, 0.0f32, 0.0f32);
    accumulate_cosine(&mut acc, &a[..n], &b[..n]);
    acc
}

fn l2_squared_f16(a: &[f16], b: &[f16]) -> f32 {
    reduce_f16(a, b, l2_term)
}

fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
    reduce_f16(a, b, dot_term)
}

fn l1_f16(a: &[f16], b: &[f16]) -> f32 {
    reduce_f16(a, b, l1_term)
}

fn norm_squared_f16(a: &[f16]) -> f32 {
    let mut acc = 0.0f32;
    let mut xa = [0.0f32; BLOCK];
    for ca in a.chunks(BLOCK) {
        let m = ca.len();
        ca.convert_to_f32_slice(&mut xa[..m]);
        accumulate(&mut acc, &xa[..m], &xa[..m], dot_term);
    }
    acc
}

fn cosine_parts_f16(a: &[f16], b: &[f16]) -> (f32, f32, f32) {
    let n = common_len(a.len(), b.len());
    let mut acc = (0.0f32, 0.0f32, 0.0f32);
    let mut xa = [0.0f32; BLOCK];
    let mut xb = [0.0f32; BLOCK];
    for (ca, cb) in a[..n].chunks(BLOCK).zip(b[..n].chunks(BLOCK)) {
        let m = ca.len();
        ca.convert_to_f32_slice(&mut xa[..m]);
        cb.convert_to_f32_slice(&mut xb[..m]);
        accumulate_cosine(&mut acc, &xa[..m], &xb[..m]);
    }
    acc
}

fn l2_squared_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    reduce_f32_f16(a, b, l2_term)
}

fn dot_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    reduce_f32_f16(a, b, dot_term)
}

fn l1_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    reduce_f32_f16(a, b, l1_term)
}

fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    let n = common_len(src.len(), dst.len());
    dst[..n].convert_from_f32_slice(&src[..n]);
}

fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    let n = common_len(src.len(), dst.len());
    src[..n].convert_to_f32_slice(&mut dst[..n]);
}

fn dot_u8(w: &[f32], c: &[u8]) -> f32 {
    let n = common_len(w.len(), c.len());
    let mut acc = 0.0f32;
    for (cw, cc) in w[..n].chunks(BLOCK).zip(c[..n].chunks(BLOCK)) {
        let mut s = 0.0f32;
        for (&x, &y) in cw.iter().zip(cc) {
            s += x * f32::from(y);
        }
        acc += s;
    }
    acc
}

fn l1_u8(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
    let n = common_len3(a.len(), s.len(), c.len());
    let mut acc = 0.0f32;
    for ((ca, cs), cc) in a[..n].chunks(BLOCK).zip(s[..n].chunks(BLOCK)).zip(c[..n].chunks(BLOCK)) {
        let mut t = 0.0f32;
        for ((&x, &y), &z) in ca.iter().zip(cs).zip(cc) {
            t += (x - y * f32::from(z)).abs();
        }
        acc += t;
    }
    acc
}

fn dot_bits(planes: &[u64], bits: &[u8]) -> i64 {
    dot_bits_words(planes, bits)
}

/// The body of every table's `dot_bits` short of AVX-512 VPOPCNTDQ: inlined into a function
/// compiled with `popcnt`, `count_ones` is one instruction per word; here it is LLVM's portable
/// bit-twiddling sequence.
#[inline(always)]
pub(super) fn dot_bits_words(planes: &[u64], bits: &[u8]) -> i64 {
    let (words, np) = bits_shape(planes.len(), bits.len());
    // A plane count known at compile time keeps the counts in registers and reads each code
    // word once for all planes.
    match np {
        0 => 0,
        1 => dot_bits_n::<1>(planes, bits, words),
        2 => dot_bits_n::<2>(planes, bits, words),
        3 => dot_bits_n::<3>(planes, bits, words),
        4 => dot_bits_n::<4>(planes, bits, words),
        5 => dot_bits_n::<5>(planes, bits, words),
        6 => dot_bits_n::<6>(planes, bits, words),
        7 => dot_bits_n::<7>(planes, bits, words),
        _ => dot_bits_n::<8>(planes, bits, words),
    }
}

/// `dot_bits` with N planes of `words` words (N * words <= planes.len(), 8 * words <=
/// bits.len()).
#[inline(always)]
fn dot_bits_n<const N: usize>(planes: &[u64], bits: &[u8], words: usize) -> i64 {
    let p: [&[u64]; N] = std::array::from_fn(|j| &planes[j * words..(j + 1) * words]);
    let mut counts = [0u64; N];
    for (w, c) in bits.chunks_exact(8).take(words).enumerate() {
        let c = u64::from_le_bytes(*c.first_chunk::<8>().expect("chunks_exact(8) yields 8 bytes"));
        for (count, plane) in counts.iter_mut().zip(&p) {
            *count += u64::from((plane[w] & c).count_ones());
        }
    }
    counts.iter().enumerate().map(|(j, &count)| if j + 1 == N { -(count as i64) << j } else { (count as i64) << j }).sum()
}

fn hamming_bits(a: &[u8], b: &[u8]) -> u64 {
    hamming_bits_words(a, b)
}

fn jaccard_bits(a: &[u8], b: &[u8]) -> (u64, u64) {
    jaccard_bits_words(a, b)
}

/// Folds `f` over the u64 words of two byte strings, then over their last `len % 8` bytes
/// (each zero-extended to a word, which every popcount of AND / OR / XOR leaves exact).
#[inline(always)]
fn fold_words<A>(a: &[u8], b: &[u8], mut acc: A, mut f: impl FnMut(&mut A, u64, u64)) -> A {
    let n = common_len(a.len(), b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (wa.remainder(), wb.remainder());
    for (x, y) in wa.zip(wb) {
        let x = u64::from_le_bytes(*x.first_chunk::<8>().expect("chunks_exact(8) yields 8 bytes"));
        let y = u64::from_le_bytes(*y.first_chunk::<8>().expect("chunks_exact(8) yields 8 bytes"));
        f(&mut acc, x, y);
    }
    for (&x, &y) in ta.iter().zip(tb) {
        f(&mut acc, u64::from(x), u64::from(y));
    }
    acc
}

/// The body of every table's `hamming_bits` short of AVX-512 VPOPCNTDQ (one POPCNT per word
/// when inlined into a function compiled with `popcnt`).
#[inline(always)]
pub(super) fn hamming_bits_words(a: &[u8], b: &[u8]) -> u64 {
    fold_words(a, b, 0u64, |acc, x, y| *acc += u64::from((x ^ y).count_ones()))
}

/// The body of every table's `jaccard_bits` short of AVX-512 VPOPCNTDQ.
#[inline(always)]
pub(super) fn jaccard_bits_words(a: &[u8], b: &[u8]) -> (u64, u64) {
    fold_words(a, b, (0u64, 0u64), |acc, x, y| {
        acc.0 += u64::from((x & y).count_ones());
        acc.1 += u64::from((x | y).count_ones());
    })
}
