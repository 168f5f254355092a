//! RaBitQ: 1-bit quantization of f32 vectors with an unbiased distance estimator (Gao & Long,
//! SIGMOD 2024, arXiv 2405.12497).
//!
//! A vector `x` is stored relative to a trained centroid `c`: `o = x - c` is rotated by a random
//! orthogonal transform `P` (`r = P o`, in `padded_dims` >= `dims` dimensions, the extra ones
//! 0), and only the signs `b_i = (r_i > 0)` are kept, plus three f32 factors. With
//! `x̄ = (2b - 1) / sqrt(D)` (a unit vector) and `ô = r / |r|`, the paper's estimator
//!
//! ```text
//! <o, v> ≈ |o| * <x̄, P v> / <x̄, ô>
//! ```
//!
//! is unbiased over the random rotation for any fixed `v`, with an error of order
//! `|o| |v| / sqrt(D)`. Since `<x̄, ô> = sum |r_i| / (sqrt(D) |o|)`, this is
//! `f * sum_i (2 b_i - 1) (P v)_i` with the per-vector factor `f = |o|^2 / sum |r_i|`.
//!
//! The query side takes `v = q - c`, rotates it once and rounds it to 4-bit signed integers
//! `s_i` (step `delta = max |(P v)_i| / 7`), kept as four bit planes, so that
//! `sum_i b_i s_i` is four AND + popcount passes over the code's words
//! ([`crate::distance::dot_bits`]), and `sum_i (2 b_i - 1) s_i = 2 sum b_i s_i - sum s_i`. The
//! estimate is then unbiased for the rounded query; the rounding (at most `delta / 2` per
//! rotated coordinate, independent of the codes) adds a few percent to the estimator's own
//! error. The metrics follow from `<o, q - c>`:
//!
//! - L2: `|q - x|^2 = |q - c|^2 + |o|^2 - 2 <o, q - c>`;
//! - inner product / cosine: `<q, x> = <o, q - c> + <c, o> + <q, c>`;
//! - L1: RaBitQ has no L1 estimator; the squared-L2 estimate stands in as the proxy (a walk on
//!   it finds L2-near candidates, and the exact re-rank orders them by L1).
//!
//! A code is [`RaBitQ::code_len`] bytes: three little-endian f32 factors (`|o|^2`, `f`,
//! `<c, o>`) followed by `padded_dims / 8` bytes of sign bits (dimension `i` in bit `i % 8` of
//! byte `i / 8`).
//!
//! The rotation is never stored as a matrix (it would be `D^2` floats, 1 GB at 16,000
//! dimensions): it is four rounds of random sign flips and a normalized fast Walsh–Hadamard
//! transform on a power-of-two block, plus, where `D` is not a power of two, a butterfly between
//! the two halves of the vector (the "FHT-Kac" rotator of the RaBitQ library). The signs come
//! from the seed, so only the seed is stored, and everything is computed in f64, so encoding
//! is deterministic on every platform.

use serde::{Deserialize, Serialize};

use crate::distance::kernels;
use crate::graph::build::splitmix64;
use crate::metric::Metric;

#[cfg(test)]
mod tests;

/// The f32 factors in front of the sign bits: |o|^2, f = |o|^2 / sum |r_i| and <c, o>.
const FACTORS: usize = 3;
/// Bytes of the factors.
const FACTOR_LEN: usize = 4 * FACTORS;

/// The format [`RaBitQ::to_bytes`] writes.
const FORMAT_VERSION: u32 = 1;

/// Rounds of sign flips + Walsh–Hadamard transform (+ Kac butterfly) in the rotation. Three
/// rounds of HD are the usual choice for a pseudo-random rotation; the fourth makes up for
/// the partial blocks when `D` is not a power of two.
const ROUNDS: u64 = 4;

/// Bits of a query's rotated coordinates: the paper finds 4 enough for the estimate to be as
/// good as with exact coordinates, up to a few percent.
pub const QUERY_BITS: usize = 4;

/// The largest magnitude of a quantized query coordinate: 4-bit two's complement holds -8..=7,
/// and a symmetric range keeps the rounding unbiased for either sign.
const QUERY_LEVELS: i64 = (1 << (QUERY_BITS - 1)) - 1;

const _: () = assert!(QUERY_BITS <= crate::distance::MAX_BIT_PLANES);

/// The paper's eps0 for [`RaBitQQuery::distance_with_bound`]: the estimator's error is close to
/// normal, and 1.9 standard deviations cover about 95% of it.
pub const BOUND_EPSILON: f64 = 1.9;

/// A trained RaBitQ quantizer: the centroid and the seed of the rotation.
///
/// Invariants (checked by [`RaBitQ::from_bytes`]): `centroid.len() == dims`, `padded ==
/// padded_dims(dims)`, every centroid value finite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RaBitQ {
    dims: usize,
    /// `dims` rounded up to a multiple of 64 (at least 64): the rotated space, and the bits
    /// of a code.
    padded: usize,
    /// Seed of the rotation's sign flips.
    seed: u64,
    centroid: Vec<f32>,
}

/// What [`RaBitQ::to_bytes`] writes: the version first, as in `Sq8`'s format.
#[derive(Serialize)]
struct StoredRef<'a> {
    version: u32,
    params: &'a RaBitQ,
}

/// What [`RaBitQ::from_bytes`] reads (the same layout as `StoredRef`).
#[derive(Deserialize)]
struct Stored {
    version: u32,
    params: RaBitQ,
}

/// The rotated space of `dims` dimensions: a multiple of 64 (whole u64 words of bits), at
/// least 64.
fn padded_dims(dims: usize) -> usize {
    dims.max(1).div_ceil(64) * 64
}

/// `v` as f32, finite: f64 values past the f32 range saturate at ±f32::MAX.
fn saturating_f32(v: f64) -> f32 {
    let max = f64::from(f32::MAX);
    v.clamp(-max, max) as f32
}

/// In-place normalized fast Walsh–Hadamard transform of a power-of-two block.
fn fwht(v: &mut [f64]) {
    let n = v.len();
    debug_assert!(n.is_power_of_two());
    let mut h = 1;
    while h < n {
        for block in v.chunks_exact_mut(2 * h) {
            let (lo, hi) = block.split_at_mut(h);
            for (a, b) in lo.iter_mut().zip(hi) {
                let (x, y) = (*a, *b);
                *a = x + y;
                *b = x - y;
            }
        }
        h *= 2;
    }
    let scale = 1.0 / (n as f64).sqrt();
    for x in v {
        *x *= scale;
    }
}

impl RaBitQ {
    /// Trains the centroid: the per-dimension mean over `vectors` (each of `dims` f32; a longer
    /// one is cut to `dims` and a shorter one trains only its own dimensions), ignoring
    /// non-finite values. A dimension that saw no finite value gets 0. The rotation is drawn
    /// from `seed`.
    pub fn train<'a>(dims: usize, seed: u64, vectors: impl Iterator<Item = &'a [f32]>) -> RaBitQ {
        let mut sum = vec![0.0f64; dims];
        let mut count = vec![0u64; dims];
        for v in vectors {
            for ((s, n), &x) in sum.iter_mut().zip(&mut count).zip(v) {
                if x.is_finite() {
                    *s += f64::from(x);
                    *n += 1;
                }
            }
        }
        let centroid = sum.iter().zip(&count).map(|(&s, &n)| if n > 0 { saturating_f32(s / n as f64) } else { 0.0 }).collect();
        RaBitQ { dims, padded: padded_dims(dims), seed, centroid }
    }

    /// Parameters for an index built empty and trained by its first insert: one sample says
    /// nothing about the data's mean, so the centroid is 0 (RaBitQ's estimator is unbiased for
    /// any centroid; a good one only makes its error smaller).
    pub fn untrained(dims: usize, seed: u64) -> RaBitQ {
        RaBitQ { dims, padded: padded_dims(dims), seed, centroid: vec![0.0; dims] }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Dimensions of the rotated space: `dims` rounded up to a multiple of 64, at least 64.
    pub fn padded_dims(&self) -> usize {
        self.padded
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn centroid(&self) -> &[f32] {
        &self.centroid
    }

    /// Bytes of a stored code: 12 (three f32 factors, little-endian: |o|^2, |o|^2 / sum |r_i|
    /// and <c, o>, where o = x - c and r = P o) + `padded_dims / 8` (the sign bits of r).
    pub fn code_len(&self) -> usize {
        FACTOR_LEN + self.padded / 8
    }

    /// Applies the rotation `P` to `v` (`padded_dims` values) in place.
    ///
    /// Each round flips the signs of a seeded random subset of the coordinates and applies a
    /// normalized Walsh–Hadamard transform to the largest power-of-two block, alternately at
    /// the front and at the back of `v`; where that block is not all of `v`, a butterfly
    /// `(a, b) -> ((a + b), (a - b)) / sqrt(2)` between the two halves then spreads it over the
    /// rest. Every step is orthogonal, so `P` is.
    fn rotate(&self, v: &mut [f64]) {
        let d = v.len();
        debug_assert_eq!(d, self.padded);
        debug_assert!(d.is_multiple_of(64) && d > 0);
        let block = 1usize << (usize::BITS - 1 - d.leading_zeros());
        for round in 0..ROUNDS {
            for (w, chunk) in v.chunks_mut(64).enumerate() {
                let signs = splitmix64(self.seed ^ splitmix64((round << 40) ^ w as u64));
                for (t, x) in chunk.iter_mut().enumerate() {
                    // Flipping the sign bit negates exactly (zeros and all).
                    *x = f64::from_bits(x.to_bits() ^ (((signs >> t) & 1) << 63));
                }
            }
            if round % 2 == 0 {
                fwht(&mut v[..block]);
            } else {
                fwht(&mut v[d - block..]);
            }
            if block < d {
                let (lo, hi) = v.split_at_mut(d / 2);
                for (a, b) in lo.iter_mut().zip(hi) {
                    let (x, y) = (*a, *b);
                    *a = (x + y) * std::f64::consts::FRAC_1_SQRT_2;
                    *b = (x - y) * std::f64::consts::FRAC_1_SQRT_2;
                }
            }
        }
    }

    /// `v - c` (`dims` values), padded with zeros to `padded_dims`, in f64. A coordinate whose
    /// difference is not finite (a NaN or infinite `v_i`) is taken as `c_i`, i.e. 0.
    fn centred(&self, v: &[f32]) -> Vec<f64> {
        let mut o = vec![0.0f64; self.padded];
        for ((o, &x), &c) in o.iter_mut().zip(v).zip(&self.centroid) {
            let d = f64::from(x) - f64::from(c);
            if d.is_finite() {
                *o = d;
            }
        }
        o
    }

    /// Encodes `x` (`dims` values) into `out` (`code_len()` bytes). Non-finite values are
    /// taken as the centroid's; factors beyond the f32 range saturate at ±f32::MAX.
    ///
    /// # Panics
    /// If `out` is shorter than the 12 bytes of factors. Other length mismatches are caller
    /// bugs (a `debug_assert!`) that release builds answer by coding the common prefix.
    pub fn encode(&self, x: &[f32], out: &mut [u8]) {
        debug_assert_eq!(x.len(), self.dims(), "RaBitQ encode: vector length");
        debug_assert_eq!(out.len(), self.code_len(), "RaBitQ encode: code length");
        let (factors, bits) = out.split_at_mut(FACTOR_LEN);
        let mut r = self.centred(x);
        let norm2: f64 = r.iter().map(|&v| v * v).sum();
        let c_dot_o: f64 = r.iter().zip(&self.centroid).map(|(&v, &c)| v * f64::from(c)).sum();
        self.rotate(&mut r);
        // |r| = |o| up to rounding; taking both sums from r keeps f exactly the estimator's.
        let (rr, abs): (f64, f64) = r.iter().fold((0.0, 0.0), |(s, a), &v| (s + v * v, a + v.abs()));
        // o = 0 (x is the centroid): every <o, v> is 0, and f = 0 says so exactly.
        let f = if abs > 0.0 { rr / abs } else { 0.0 };
        for (dst, v) in factors.chunks_exact_mut(4).zip([norm2, f, c_dot_o]) {
            dst.copy_from_slice(&saturating_f32(v).to_le_bytes());
        }
        for (byte, rs) in bits.iter_mut().zip(r.chunks_exact(8)) {
            *byte = rs.iter().enumerate().fold(0u8, |b, (t, &v)| b | (u8::from(v > 0.0) << t));
        }
    }

    /// Precomputes `q` (`dims` values; normalized already for [`Metric::Cosine`], like every
    /// cosine query and stored vector) for estimated distances to codes under `metric`.
    /// Non-finite values are taken as the centroid's.
    pub fn query(&self, metric: Metric, q: &[f32]) -> RaBitQQuery {
        debug_assert_eq!(q.len(), self.dims(), "RaBitQ query: vector length");
        let mut r = self.centred(q);
        let qc2: f64 = r.iter().map(|&v| v * v).sum();
        // <q, c> = <q - c, c> + |c|^2, with the same treatment of non-finite q_i as `centred`.
        let qc_dot_c: f64 = r.iter().zip(&self.centroid).map(|(&v, &c)| v * f64::from(c)).sum();
        let c2: f64 = self.centroid.iter().map(|&c| f64::from(c) * f64::from(c)).sum();
        let q_dot_c = qc_dot_c + c2;
        self.rotate(&mut r);

        let max = r.iter().fold(0.0f64, |m, &v| m.max(v.abs()));
        let delta = max / QUERY_LEVELS as f64;
        let words = self.padded / 64;
        let mut planes = vec![0u64; QUERY_BITS * words];
        let mut sum_s = 0i64;
        if delta > 0.0 {
            for (i, &v) in r.iter().enumerate() {
                let s = (v / delta).round().clamp(-QUERY_LEVELS as f64, QUERY_LEVELS as f64) as i64;
                sum_s += s;
                // Two's complement: bit j of s goes to plane j.
                for j in 0..QUERY_BITS {
                    planes[j * words + i / 64] |= ((s as u64 >> j) & 1) << (i % 64);
                }
            }
        }
        // <o, q - c> ≈ f * delta * (2 S - sum s) with S = dot_bits(planes, bits); each metric
        // scales that by `sign` and adds per-vector factors.
        let (base, w_norm2, w_c_dot_o, sign): (f64, f32, f32, f64) = match metric {
            // Quantized indexes refuse `bit` (opclass.rs); L2's case keeps the match total.
            Metric::L2 | Metric::L1 | Metric::Hamming | Metric::Jaccard => (qc2, 1.0, 0.0, -2.0),
            Metric::InnerProduct => (-q_dot_c, 0.0, -1.0, -1.0),
            Metric::Cosine => (1.0 - q_dot_c, 0.0, -1.0, -1.0),
        };
        // The error bound's per-query part: |sign| * eps0 * |q - c| / sqrt(D - 1).
        let bound = sign.abs() * BOUND_EPSILON * qc2.sqrt() / (self.padded as f64 - 1.0).sqrt();
        RaBitQQuery {
            metric,
            planes,
            padded: self.padded as f32,
            bound: saturating_f32(bound),
            base: saturating_f32(base),
            w_norm2,
            w_c_dot_o,
            a: saturating_f32(sign * 2.0 * delta),
            b: saturating_f32(-sign * delta * sum_s as f64),
        }
    }

    /// The parameters in a versioned bincode format, for [`RaBitQ::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serialize(&StoredRef { version: FORMAT_VERSION, params: self }).expect("serializing plain values into memory cannot fail")
    }

    /// Reads what [`RaBitQ::to_bytes`] wrote. Garbage, a truncated or overlong buffer, an
    /// unknown format version or parameters that could not have been trained (a centroid of
    /// the wrong length or with a non-finite value, padded dimensions that do not belong to
    /// `dims`) give an `Err`, never a panic.
    pub fn from_bytes(b: &[u8]) -> Result<RaBitQ, String> {
        use bincode::Options;

        let version = match b.first_chunk::<4>() {
            Some(v) => u32::from_le_bytes(*v),
            None => return Err(format!("RaBitQ parameters: {} bytes, too short for a format version", b.len())),
        };
        if version != FORMAT_VERSION {
            return Err(format!("RaBitQ parameters: unknown format version {version}"));
        }
        // As in `Sq8::from_bytes`: `bincode::serialize`'s options, rejecting trailing bytes,
        // and a limit that keeps a garbage length prefix from reserving memory.
        let opts =
            bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian().reject_trailing_bytes().with_limit(b.len() as u64);
        let stored: Stored = opts.deserialize(b).map_err(|e| format!("RaBitQ parameters: {e}"))?;
        debug_assert_eq!(stored.version, FORMAT_VERSION);
        let p = stored.params;
        // The centroid's length is bounded by the buffer, so checking it first also bounds
        // `dims` before anything computes with it.
        if p.centroid.len() != p.dims {
            return Err(format!("RaBitQ parameters: {} dimensions but a centroid of {}", p.dims, p.centroid.len()));
        }
        if p.padded != padded_dims(p.dims) {
            return Err(format!("RaBitQ parameters: {} padded dimensions for {} dimensions", p.padded, p.dims));
        }
        if let Some(i) = p.centroid.iter().position(|x| !x.is_finite()) {
            return Err(format!("RaBitQ parameters: centroid value {} of dimension {i} is not finite", p.centroid[i]));
        }
        Ok(p)
    }
}

/// A query prepared by [`RaBitQ::query`] for estimated distances to codes.
#[derive(Clone, Debug)]
pub struct RaBitQQuery {
    metric: Metric,
    /// The rotated, 4-bit quantized `q - c` in bit planes, for `dot_bits`.
    planes: Vec<u64>,
    /// The part of the distance that does not depend on the code.
    base: f32,
    /// Weights of the code's |o|^2 and <c, o> factors (1 or 0, 0 or -1).
    w_norm2: f32,
    w_c_dot_o: f32,
    /// The estimate's term is `f * (a * S + b)`, S = `dot_bits(planes, bits)`.
    a: f32,
    b: f32,
    /// `padded_dims` and the query's part of the error bound, for `distance_with_bound`.
    padded: f32,
    bound: f32,
}

impl RaBitQQuery {
    /// The estimated distance proxy (the units of `VectorElem::distance_to`: squared L2, -dot,
    /// 1 - dot; for L1 the squared-L2 estimate, see the module docs) between the query and the
    /// vector of `code`, in one `dot_bits` pass over its bits and a few flops.
    ///
    /// Unbiased over the rotation (for the 4-bit query), with an error of order
    /// `|x - c| |q - c| / sqrt(padded_dims)`; a squared L2 estimate may be below 0. A code
    /// shorter than its factors (a caller bug) is infinitely far, and so is one whose factors
    /// overflow into a NaN estimate (vectors with norms near f32::MAX).
    #[inline]
    pub fn distance(&self, code: &[u8]) -> f32 {
        let Some((f, bits)) = code.split_first_chunk::<FACTOR_LEN>() else {
            debug_assert!(false, "RaBitQ code of {} bytes", code.len());
            return f32::INFINITY;
        };
        let factor = |k: usize| f32::from_le_bytes([f[4 * k], f[4 * k + 1], f[4 * k + 2], f[4 * k + 3]]);
        let s = (kernels().dot_bits)(&self.planes, bits) as f32;
        let d = self.base + self.w_norm2 * factor(0) + self.w_c_dot_o * factor(2) + factor(1) * (self.a * s + self.b);
        if d.is_nan() {
            f32::INFINITY
        } else {
            d
        }
    }

    /// [`Self::distance`] and the half-width of the paper's confidence interval around it:
    /// the true distance proxy lies within `estimate ± bound` except with a small probability
    /// (about 5% at the paper's eps0 = 1.9, a little more with the query's 4-bit rounding).
    ///
    /// The bound is `eps0 * |o| |q - c| sqrt(1 - <x̄,ô>^2) / <x̄,ô> / sqrt(D - 1)` (twice that
    /// for L2), from the code's own factors: `|o| sqrt(1 / <x̄,ô>^2 - 1) = sqrt(D f^2 - |o|^2)`.
    /// An index can re-rank only the candidates whose lower end beats its current k-th
    /// distance. A code shorter than its factors gets (infinity, 0).
    #[inline]
    pub fn distance_with_bound(&self, code: &[u8]) -> (f32, f32) {
        let Some(f) = code.first_chunk::<FACTOR_LEN>() else {
            return (self.distance(code), 0.0);
        };
        let factor = |k: usize| f32::from_le_bytes([f[4 * k], f[4 * k + 1], f[4 * k + 2], f[4 * k + 3]]);
        let (norm2, fo) = (factor(0), factor(1));
        (self.distance(code), self.bound * (self.padded * fo * fo - norm2).max(0.0).sqrt())
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }
}
