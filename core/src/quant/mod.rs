//! Quantization of f32 vectors: 8-bit scalar quantization (SQ8, [`Sq8`], here) and 1-bit
//! RaBitQ ([`rabitq`]).
//!
//! Each dimension `i` has a trained range `[lo_i, lo_i + 255 * step_i]` of 256 evenly spaced
//! values, and a vector is stored as one byte per dimension, so a graph walk reads a quarter of
//! the bytes it would read for `vector` data. The walk orders by distances to the *decoded*
//! vectors and re-ranks its candidates exactly afterwards.
//!
//! A code is [`Sq8::code_len`] bytes: an f32 factor (little-endian: |x̂|^2, the squared norm of
//! the decoded vector x̂, which the L2 distance needs) followed by the `dims` codes. A query is
//! turned into per-dimension weights once ([`Sq8::query`]), so that a distance to a code is one
//! pass of a SIMD kernel over the bytes (`dot_u8` or `l1_u8` in [`crate::distance`]) plus a few
//! flops, without decoding it.

use serde::{Deserialize, Serialize};

use crate::distance::kernels;
use crate::metric::Metric;

pub mod rabitq;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod tests;

pub use rabitq::{RaBitQ, RaBitQQuery};

/// Bytes of the f32 factor in front of the codes.
const FACTOR_LEN: usize = 4;

/// The format [`Sq8::to_bytes`] writes.
const FORMAT_VERSION: u32 = 1;

/// Trained per-dimension ranges.
///
/// `x_i` is coded as `c_i = round((clamp(x_i, lo_i, lo_i + 255 * step_i) - lo_i) / step_i)` and
/// decoded as `x̂_i = lo_i + step_i * c_i`. Every `step_i` is finite and positive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sq8 {
    pub lo: Vec<f32>,
    pub step: Vec<f32>,
}

/// What [`Sq8::to_bytes`] writes: the version first, so that a later format can be told apart
/// before anything else is read.
#[derive(Serialize)]
struct StoredRef<'a> {
    version: u32,
    params: &'a Sq8,
}

/// What [`Sq8::from_bytes`] reads (the same layout as `StoredRef`).
#[derive(Deserialize)]
struct Stored {
    version: u32,
    params: Sq8,
}

/// The step that makes `[lo, lo + 255 * step]` cover `[lo, hi]` (`lo <= hi`, both finite).
///
/// A step never goes below about one f32 ulp of the range's values (finer steps would not tell
/// more f32 values apart), nor into the subnormals (a query's weights `q_i * step_i` would be
/// subnormal too, which is slow on x86). That floor is also the "tiny positive step" of a
/// range of width 0: the trained value is `lo` itself, code 0, so it still decodes exactly.
fn step_for(lo: f32, hi: f32) -> f32 {
    let (lo, hi) = (f64::from(lo), f64::from(hi));
    // In f64 `hi - lo` cannot overflow, and a step of at most 2 * f32::MAX / 255 fits in f32.
    let scale = lo.abs().max(hi.abs());
    let floor = if scale > 0.0 { scale } else { 1.0 } * f64::from(f32::EPSILON) / 2.0;
    let mut step = ((hi - lo) / 255.0).max(floor).max(f64::from(f32::MIN_POSITIVE)) as f32;
    // Rounding to f32 may have left the top of the range just below `hi`.
    while lo + 255.0 * f64::from(step) < hi {
        step = step.next_up();
    }
    step
}

/// The code of `x` in the range of `lo`, `step` (NaN codes as 0, i.e. as `lo`).
#[inline]
fn code_of(x: f32, lo: f32, step: f32) -> u8 {
    if x.is_nan() {
        return 0;
    }
    // In f64 `x - lo` cannot overflow; infinities clamp to the ends of the range.
    let t = ((f64::from(x) - f64::from(lo)) / f64::from(step)).round();
    t.clamp(0.0, 255.0) as u8
}

/// `lo + step * c`, rounded once, and kept finite where the top of a range of nearly the whole
/// f32 span would round past f32::MAX.
#[inline]
fn decoded(lo: f32, step: f32, c: u8) -> f32 {
    let max = f64::from(f32::MAX);
    (f64::from(lo) + f64::from(step) * f64::from(c)).clamp(-max, max) as f32
}

impl Sq8 {
    /// Per-dimension min/max over `vectors` (each of `dims` f32; a longer one is cut to `dims`
    /// and a shorter one trains only its own dimensions).
    ///
    /// Non-finite values are ignored. A dimension that saw no finite value gets the range of a
    /// constant 0; a range of width 0 gets a tiny positive step (see `step_for`) so that the
    /// trained value decodes exactly.
    pub fn train<'a>(dims: usize, vectors: impl Iterator<Item = &'a [f32]>) -> Sq8 {
        let mut min = vec![f32::INFINITY; dims];
        let mut max = vec![f32::NEG_INFINITY; dims];
        for v in vectors {
            for ((&x, lo), hi) in v.iter().zip(&mut min).zip(&mut max) {
                if x.is_finite() {
                    *lo = lo.min(x);
                    *hi = hi.max(x);
                }
            }
        }
        let mut step = Vec::with_capacity(dims);
        for (lo, hi) in min.iter_mut().zip(&mut max) {
            if *lo > *hi {
                (*lo, *hi) = (0.0, 0.0);
            }
            step.push(step_for(*lo, *hi));
        }
        Sq8 { lo: min, step }
    }

    /// Parameters from a single vector (an index built empty, trained by its first insert):
    /// the same symmetric range `[-r, r]` for every dimension, with `r = 2 * max|v_i|`, room
    /// for later vectors somewhat larger than the first.
    ///
    /// `r` is 1.0 where `max|v_i|` is 0 or not finite (NaNs are ignored), and at most f32::MAX.
    pub fn from_one(v: &[f32]) -> Sq8 {
        let m = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let r = if m > 0.0 && m.is_finite() { (2.0 * m).min(f32::MAX) } else { 1.0 };
        let step = step_for(-r, r);
        Sq8 { lo: vec![-r; v.len()], step: vec![step; v.len()] }
    }

    pub fn dims(&self) -> usize {
        self.lo.len()
    }

    /// Bytes of a stored code: 4 (an f32 factor, little-endian: |x̂|^2, the squared norm of the
    /// decoded vector) + `dims` (u8 codes).
    pub fn code_len(&self) -> usize {
        FACTOR_LEN + self.dims()
    }

    /// Encodes `x` (`dims` values) into `out` (`code_len()` bytes). Values outside the trained
    /// range are clamped to it (infinities too); NaN codes as `lo`.
    ///
    /// # Panics
    /// If `out` is shorter than the 4-byte factor. Other length mismatches are caller bugs
    /// (a `debug_assert!`) that release builds answer by coding the common prefix.
    pub fn encode(&self, x: &[f32], out: &mut [u8]) {
        debug_assert_eq!(x.len(), self.dims(), "SQ8 encode: vector length");
        debug_assert_eq!(out.len(), self.code_len(), "SQ8 encode: code length");
        let (factor, codes) = out.split_at_mut(FACTOR_LEN);
        let mut norm = 0.0f64;
        for (((&x, &lo), &step), c) in x.iter().zip(&self.lo).zip(&self.step).zip(codes) {
            *c = code_of(x, lo, step);
            let xh = f64::from(decoded(lo, step, *c));
            norm += xh * xh;
        }
        factor.copy_from_slice(&(norm as f32).to_le_bytes());
    }

    /// Writes x̂, the decoded vector of `code` (`code_len()` bytes), into `out` (`dims` values).
    ///
    /// # Panics
    /// If `code` is shorter than the 4-byte factor. Other length mismatches are caller bugs
    /// (a `debug_assert!`) that release builds answer by decoding the common prefix.
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        debug_assert_eq!(code.len(), self.code_len(), "SQ8 decode: code length");
        debug_assert_eq!(out.len(), self.dims(), "SQ8 decode: vector length");
        for (((&c, &lo), &step), o) in code[FACTOR_LEN..].iter().zip(&self.lo).zip(&self.step).zip(out) {
            *o = decoded(lo, step, c);
        }
    }

    /// Precomputes `q` (`dims` values; normalized already for [`Metric::Cosine`], like every
    /// cosine query and stored vector) for distances to codes under `metric`.
    pub fn query(&self, metric: Metric, q: &[f32]) -> Sq8Query {
        debug_assert_eq!(q.len(), self.dims(), "SQ8 query: vector length");
        let n = q.len().min(self.dims());
        let (q, lo, step) = (&q[..n], &self.lo[..n], &self.step[..n]);
        // dot(q, x̂) = sum q_i * lo_i + sum (q_i * step_i) * c_i: the first sum is the same for
        // every code, so it is taken here once, in f64.
        let q_lo: f64 = q.iter().zip(lo).map(|(&x, &l)| f64::from(x) * f64::from(l)).sum();
        let weights = |scale: f32| q.iter().zip(step).map(|(&x, &s)| scale * x * s).collect();
        match metric {
            // Quantized indexes refuse `bit` (opclass.rs); L2 keeps the match total.
            Metric::L2 | Metric::Hamming | Metric::Jaccard => {
                // |q - x̂|^2 = |q|^2 - 2 dot(q, x̂) + |x̂|^2, the last from the code's factor.
                let qq: f64 = q.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
                Sq8Query { metric, base: (qq - 2.0 * q_lo) as f32, w: weights(-2.0), step: Vec::new() }
            }
            Metric::InnerProduct => Sq8Query { metric, base: -q_lo as f32, w: weights(-1.0), step: Vec::new() },
            Metric::Cosine => Sq8Query { metric, base: (1.0 - q_lo) as f32, w: weights(-1.0), step: Vec::new() },
            Metric::L1 => {
                // |q_i - x̂_i| = |(q_i - lo_i) - step_i * c_i|.
                let w = q.iter().zip(lo).map(|(&x, &l)| x - l).collect();
                Sq8Query { metric, base: 0.0, w, step: step.to_vec() }
            }
        }
    }

    /// The parameters in a versioned bincode format, for [`Sq8::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serialize(&StoredRef { version: FORMAT_VERSION, params: self }).expect("serializing plain vectors into memory cannot fail")
    }

    /// Reads what [`Sq8::to_bytes`] wrote. Garbage, a truncated or overlong buffer, an unknown
    /// format version or parameters that could not have been trained (lengths of `lo` and
    /// `step` that differ, a non-finite `lo`, a step that is not finite and positive) give an
    /// `Err`, never a panic.
    pub fn from_bytes(b: &[u8]) -> Result<Sq8, String> {
        use bincode::Options;

        // bincode's fixed-width little-endian u32 leads the buffer: check it before trusting
        // anything else in a layout that may not be version 1's.
        let version = match b.first_chunk::<4>() {
            Some(v) => u32::from_le_bytes(*v),
            None => return Err(format!("SQ8 parameters: {} bytes, too short for a format version", b.len())),
        };
        if version != FORMAT_VERSION {
            return Err(format!("SQ8 parameters: unknown format version {version}"));
        }
        // The options of `bincode::serialize`, minus its tolerance of trailing bytes; the
        // limit keeps a garbage length prefix from reserving more than the buffer could hold.
        let opts =
            bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian().reject_trailing_bytes().with_limit(b.len() as u64);
        let stored: Stored = opts.deserialize(b).map_err(|e| format!("SQ8 parameters: {e}"))?;
        debug_assert_eq!(stored.version, FORMAT_VERSION);
        let p = stored.params;
        if p.lo.len() != p.step.len() {
            return Err(format!("SQ8 parameters: {} lower bounds but {} steps", p.lo.len(), p.step.len()));
        }
        if let Some(i) = p.lo.iter().position(|x| !x.is_finite()) {
            return Err(format!("SQ8 parameters: lower bound {} of dimension {i} is not finite", p.lo[i]));
        }
        if let Some(i) = p.step.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format!("SQ8 parameters: step {} of dimension {i} is not finite and positive", p.step[i]));
        }
        Ok(p)
    }
}

/// A query prepared by [`Sq8::query`] for distances to codes.
#[derive(Clone, Debug)]
pub struct Sq8Query {
    metric: Metric,
    /// The part of the distance that does not depend on the code.
    base: f32,
    /// Per dimension: the weight of the code in the dot product, with the metric's sign (and
    /// L2's factor 2) folded in; for L1, `q_i - lo_i`.
    w: Vec<f32>,
    /// L1 only: the steps (empty for the other metrics).
    step: Vec<f32>,
}

impl Sq8Query {
    /// The metric's distance proxy (the units of `VectorElem::distance_to`: squared L2, -dot,
    /// 1 - dot, L1) between the query and the decoded vector x̂ of `code`, computed from the
    /// bytes in one kernel pass without decoding them.
    ///
    /// Accurate to f32 rounding of the terms involved; in particular a squared L2 distance
    /// comes from `|q|^2 - 2 dot + |x̂|^2` and may be a few ulps of those below 0 when q is x̂.
    /// A code shorter than its 4-byte factor (a caller bug) is infinitely far.
    #[inline]
    pub fn distance(&self, code: &[u8]) -> f32 {
        let Some((factor, codes)) = code.split_first_chunk::<FACTOR_LEN>() else {
            debug_assert!(false, "SQ8 code of {} bytes", code.len());
            return f32::INFINITY;
        };
        let k = kernels();
        match self.metric {
            Metric::L2 | Metric::Hamming | Metric::Jaccard => self.base + f32::from_le_bytes(*factor) + (k.dot_u8)(&self.w, codes),
            Metric::InnerProduct | Metric::Cosine => self.base + (k.dot_u8)(&self.w, codes),
            Metric::L1 => (k.l1_u8)(&self.w, &self.step, codes),
        }
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }
}
