//! Distance kernels for `vector` (f32) and `halfvec` (f16) data, for 8-bit codes
//! ([`crate::quant`]) and for 1-bit codes ([`crate::quant::rabitq`]), with runtime SIMD dispatch.
//!
//! Every kernel exists once per ISA level and the levels are grouped into a [`Kernels`] table of
//! plain `fn` pointers. [`kernels()`] picks the best table this CPU can run the first time it is
//! called; afterwards a call costs one relaxed atomic load plus an indirect call, which is what
//! the HNSW hot path can afford (no allocation, no repeated feature detection).
//!
//! Semantics shared by every kernel and every table:
//! - Accumulation is in f32. Different tables (and different lengths) sum in different orders,
//!   so results agree to f32 rounding, not bit for bit.
//! - Slices of unequal length are a caller bug: it trips a `debug_assert!`, and release builds
//!   use the shorter length so no kernel ever reads or writes out of bounds.
//! - f32 <-> f16 conversion rounds to nearest-even and matches `half::f16::from_f32` /
//!   `half::f16::to_f32` exactly (overflow to infinity, subnormals, signed zeros).
//!
//! Building with `-C target-cpu=native` is never needed: the SIMD tables are compiled with
//! per-function `#[target_feature]` and only handed out after `is_x86_feature_detected!`.

use std::sync::atomic::{AtomicPtr, Ordering};

use half::f16;

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

/// One ISA level's set of distance kernels.
///
/// All functions are safe to call with any slices: a table is only reachable through
/// [`kernels()`], [`available_kernels()`] or [`SCALAR`], and the first two hand out SIMD tables
/// only after checking that the running CPU supports them.
#[derive(Debug)]
// The field types spell out each kernel's signature on purpose: aliases would hide them.
#[allow(clippy::type_complexity)]
pub struct Kernels {
    /// "avx512", "avx2" or "scalar".
    pub name: &'static str,
    /// Squared Euclidean distance: sum (a-b)^2.
    pub l2_squared: fn(&[f32], &[f32]) -> f32,
    /// Inner product: sum a*b.
    pub dot: fn(&[f32], &[f32]) -> f32,
    /// Manhattan distance: sum |a-b|.
    pub l1: fn(&[f32], &[f32]) -> f32,
    /// sum a^2.
    pub norm_squared: fn(&[f32]) -> f32,
    /// (dot, |a|^2, |b|^2) in one pass, for cosine distance.
    pub cosine_parts: fn(&[f32], &[f32]) -> (f32, f32, f32),
    /// halfvec x halfvec squared Euclidean distance.
    pub l2_squared_f16: fn(&[f16], &[f16]) -> f32,
    /// halfvec x halfvec inner product.
    pub dot_f16: fn(&[f16], &[f16]) -> f32,
    /// halfvec x halfvec Manhattan distance.
    pub l1_f16: fn(&[f16], &[f16]) -> f32,
    /// halfvec squared norm.
    pub norm_squared_f16: fn(&[f16]) -> f32,
    /// halfvec x halfvec (dot, |a|^2, |b|^2).
    pub cosine_parts_f16: fn(&[f16], &[f16]) -> (f32, f32, f32),
    /// f32 query against a stored f16 vector: squared Euclidean distance.
    pub l2_squared_f32_f16: fn(&[f32], &[f16]) -> f32,
    /// f32 query against a stored f16 vector: inner product.
    pub dot_f32_f16: fn(&[f32], &[f16]) -> f32,
    /// f32 query against a stored f16 vector: Manhattan distance.
    pub l1_f32_f16: fn(&[f32], &[f16]) -> f32,
    /// Converts `min(src.len(), dst.len())` values, rounding to nearest-even.
    pub f32_to_f16: fn(&[f32], &mut [f16]),
    /// Converts `min(src.len(), dst.len())` values (exact).
    pub f16_to_f32: fn(&[f16], &mut [f32]),
    /// f32 weights against u8 codes: sum w*c (the code widened to f32).
    pub dot_u8: fn(&[f32], &[u8]) -> f32,
    /// Manhattan distance between `a` and the codes scaled per element: sum |a - s*c|.
    pub l1_u8: fn(&[f32], &[f32], &[u8]) -> f32,
    /// Signed integers in bit planes against bits: sum s_i * b_i (see [`dot_bits`]).
    pub dot_bits: fn(&[u64], &[u8]) -> i64,
    /// Hamming distance of two packed bit strings: popcount(a ^ b) (see [`hamming_bits`]).
    pub hamming_bits: fn(&[u8], &[u8]) -> u64,
    /// (popcount(a & b), popcount(a | b)) of two packed bit strings (see [`jaccard_bits`]).
    pub jaccard_bits: fn(&[u8], &[u8]) -> (u64, u64),
}

/// Portable kernels: plain Rust loops, available on every target.
pub static SCALAR: Kernels = scalar::KERNELS;

/// Null until the first [`kernels()`] call; afterwards always points at a `'static` table.
static SELECTED: AtomicPtr<Kernels> = AtomicPtr::new(std::ptr::null_mut());

/// The best kernel table for the running CPU, chosen once.
#[inline]
pub fn kernels() -> &'static Kernels {
    // Relaxed is enough: the pointee is a `static` that is fully initialised at compile time, so
    // there is no data whose publication the load would have to synchronise with.
    let p = SELECTED.load(Ordering::Relaxed);
    if p.is_null() {
        return select();
    }
    // SAFETY: SELECTED is only ever stored by `select`, which stores a pointer derived from a
    // `&'static Kernels`; nothing ever writes through it, so a shared 'static borrow is valid.
    unsafe { &*p }
}

#[cold]
#[inline(never)]
fn select() -> &'static Kernels {
    // Racing first callers all compute the same answer, so a plain store (no CAS) is fine.
    let best = available_kernels()[0];
    SELECTED.store(std::ptr::from_ref(best).cast_mut(), Ordering::Relaxed);
    best
}

/// The number of elements a two-slice kernel processes: the shorter length.
///
/// Unequal lengths are a caller bug (caught in debug builds); release builds still never touch
/// memory past either slice.
#[inline(always)]
fn common_len(a: usize, b: usize) -> usize {
    debug_assert_eq!(a, b, "distance kernel called with slices of unequal length");
    a.min(b)
}

/// The number of elements a three-slice kernel processes: the shortest length (see `common_len`).
#[inline(always)]
fn common_len3(a: usize, b: usize, c: usize) -> usize {
    common_len(common_len(a, b), c)
}

/// The most bit planes a [`dot_bits`] query may have.
pub const MAX_BIT_PLANES: usize = 8;

/// (words per plane, planes) of a [`dot_bits`] call: `bits.len() / 8` words, and as many
/// planes as `planes` holds whole, at most [`MAX_BIT_PLANES`].
///
/// A ragged shape is a caller bug (caught in debug builds); release builds use the whole words
/// and planes and never read past either slice.
#[inline(always)]
fn bits_shape(planes: usize, bits: usize) -> (usize, usize) {
    debug_assert_eq!(bits % 8, 0, "dot_bits: {bits} code bytes, not whole u64 words");
    let words = bits / 8;
    if words == 0 {
        return (0, 0);
    }
    debug_assert!(
        planes.is_multiple_of(words) && (1..=MAX_BIT_PLANES).contains(&(planes / words)),
        "dot_bits: {planes} plane words for {words} code words"
    );
    (words, (planes / words).min(MAX_BIT_PLANES))
}

/// Every kernel table this CPU can run, best first, [`SCALAR`] last.
///
/// Intended for tests and benchmarks that compare the tables against each other.
pub fn available_kernels() -> Vec<&'static Kernels> {
    let mut v: Vec<&'static Kernels> = Vec::with_capacity(3);
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(k) = x86::avx512_kernels() {
            v.push(k);
        }
        if let Some(k) = x86::avx2_kernels() {
            v.push(k);
        }
    }
    v.push(&SCALAR);
    v
}

/// Squared Euclidean distance of two f32 vectors.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2_squared)(a, b)
}

/// Inner product of two f32 vectors.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// Manhattan distance of two f32 vectors.
#[inline]
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l1)(a, b)
}

/// Squared Euclidean norm of an f32 vector.
#[inline]
pub fn norm_squared(a: &[f32]) -> f32 {
    (kernels().norm_squared)(a)
}

/// (dot, |a|^2, |b|^2) of two f32 vectors in one pass.
#[inline]
pub fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    (kernels().cosine_parts)(a, b)
}

/// Squared Euclidean distance of two f16 vectors.
#[inline]
pub fn l2_squared_f16(a: &[f16], b: &[f16]) -> f32 {
    (kernels().l2_squared_f16)(a, b)
}

/// Inner product of two f16 vectors.
#[inline]
pub fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
    (kernels().dot_f16)(a, b)
}

/// Manhattan distance of two f16 vectors.
#[inline]
pub fn l1_f16(a: &[f16], b: &[f16]) -> f32 {
    (kernels().l1_f16)(a, b)
}

/// Squared Euclidean norm of an f16 vector.
#[inline]
pub fn norm_squared_f16(a: &[f16]) -> f32 {
    (kernels().norm_squared_f16)(a)
}

/// (dot, |a|^2, |b|^2) of two f16 vectors in one pass.
#[inline]
pub fn cosine_parts_f16(a: &[f16], b: &[f16]) -> (f32, f32, f32) {
    (kernels().cosine_parts_f16)(a, b)
}

/// Squared Euclidean distance between an f32 query and a stored f16 vector.
#[inline]
pub fn l2_squared_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    (kernels().l2_squared_f32_f16)(a, b)
}

/// Inner product of an f32 query and a stored f16 vector.
#[inline]
pub fn dot_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    (kernels().dot_f32_f16)(a, b)
}

/// Manhattan distance between an f32 query and a stored f16 vector.
#[inline]
pub fn l1_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    (kernels().l1_f32_f16)(a, b)
}

/// Converts `min(src.len(), dst.len())` f32 values to f16 (round to nearest-even).
#[inline]
pub fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    (kernels().f32_to_f16)(src, dst)
}

/// Converts `min(src.len(), dst.len())` f16 values to f32 (exact).
#[inline]
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    (kernels().f16_to_f32)(src, dst)
}

/// sum w*c of f32 weights and u8 codes.
#[inline]
pub fn dot_u8(w: &[f32], c: &[u8]) -> f32 {
    (kernels().dot_u8)(w, c)
}

/// sum |a - s*c| of f32 values, f32 scales and u8 codes.
#[inline]
pub fn l1_u8(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
    (kernels().l1_u8)(a, s, c)
}

/// sum over i of s_i * b_i, where b_i is bit i of `bits` (bit i % 8 of byte i / 8) and s_i is
/// a signed integer given in two's complement by its bit planes: `planes` holds P planes of
/// `bits.len() / 8` u64 words each, one after the other, and bit i (bit i % 64 of word i / 64)
/// of plane j is bit j of s_i, so plane j weighs 2^j except the last (P - 1), which weighs
/// -2^(P-1). 1 <= P <= [`MAX_BIT_PLANES`].
///
/// This is RaBitQ's query-against-code inner product: a query quantized to P-bit integers
/// against a 1-bit code costs P AND + popcount passes over the code's words.
#[inline]
pub fn dot_bits(planes: &[u64], bits: &[u8]) -> i64 {
    (kernels().dot_bits)(planes, bits)
}

/// The number of differing bits of two packed bit strings (Postgres `bit` data: any length,
/// unused bits of the last byte zero in both, so they never count).
#[inline]
pub fn hamming_bits(a: &[u8], b: &[u8]) -> u64 {
    (kernels().hamming_bits)(a, b)
}

/// (bits set in both, bits set in either) of two packed bit strings, the parts of the Jaccard
/// distance 1 - |a & b| / |a | b|.
#[inline]
pub fn jaccard_bits(a: &[u8], b: &[u8]) -> (u64, u64) {
    (kernels().jaccard_bits)(a, b)
}

/// Asks the CPU to start loading the first 128 bytes of `v` (a hint; a no-op off x86_64).
///
/// Graph walks call it for the next vector while measuring this one: neighbour vectors are
/// scattered, so without it every distance starts with a cache miss.
#[inline(always)]
pub fn prefetch<E>(v: &[E]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = v.as_ptr().cast::<i8>();
        let bytes = core::mem::size_of_val(v);
        // SAFETY: prefetch is a hint that never faults; the addresses lie inside `v`.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            if bytes > 64 {
                _mm_prefetch::<_MM_HINT_T0>(p.add(64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
