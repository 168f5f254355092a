//! Index metrics and the element types a graph can store.
//!
//! A graph orders by a *proxy* of the SQL distance that is cheaper and monotone in it:
//! squared L2 for `<->`, `-dot` for `<#>`, `1 - dot` of unit vectors for `<=>` (cosine indexes
//! store normalized vectors and normalize the query), and L1 for `<+>`. Indexes on `bit` order
//! by the SQL distances themselves: the Hamming distance for `<~>`, the Jaccard distance for
//! `<%>`.

use half::f16;

use crate::distance::kernels;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Metric {
    L2 = 1,
    InnerProduct = 2,
    Cosine = 3,
    L1 = 4,
    /// `bit` only: the number of differing bits.
    Hamming = 5,
    /// `bit` only: 1 - |a & b| / |a | b| (1 when no bit is set in both).
    Jaccard = 6,
}

impl Metric {
    pub fn from_u8(v: u8) -> Option<Metric> {
        match v {
            1 => Some(Metric::L2),
            2 => Some(Metric::InnerProduct),
            3 => Some(Metric::Cosine),
            4 => Some(Metric::L1),
            5 => Some(Metric::Hamming),
            6 => Some(Metric::Jaccard),
            _ => None,
        }
    }

    /// Whether vectors are stored (and queries taken) at unit length.
    pub fn normalizes(self) -> bool {
        self == Metric::Cosine
    }

    /// Whether the metric is one of `bit`'s (stored as packed `u8`, never as floats).
    pub fn is_bits(self) -> bool {
        matches!(self, Metric::Hamming | Metric::Jaccard)
    }
}

/// Scale `v` to unit length in place. Returns false (and leaves `v` alone) for a zero vector,
/// which has no direction and cannot take part in a cosine index.
pub fn normalize(v: &mut [f32]) -> bool {
    // The norm in f64: squared in f32, components above ~1.8e19 overflow to infinity and
    // components below ~1e-23 vanish, and such a vector would be taken for a zero vector (left
    // out of the index) or scaled wrongly. Every finite f32 vector has a finite, nonzero f64
    // norm unless it is zero.
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if norm.is_nan() || norm <= 0.0 || norm.is_infinite() {
        return false;
    }
    // Divide in f64 so that the stored unit vector is as close to exact as f32 allows.
    for x in v.iter_mut() {
        *x = (*x as f64 / norm) as f32;
    }
    true
}

/// An element type a graph can store: `f32` for `vector`, `f16` for `halfvec`. Queries are
/// always `f32` (a halfvec query is widened once per scan).
pub trait VectorElem: Copy + Default + Send + Sync + 'static {
    /// Bytes per element on disk.
    const SIZE: usize;
    /// Distance proxy between two stored vectors.
    fn distance(metric: Metric, a: &[Self], b: &[Self]) -> f32;
    /// Distance proxy between an `f32` query and a stored vector.
    fn distance_to(metric: Metric, q: &[f32], x: &[Self]) -> f32;
    fn from_f32(src: &[f32], dst: &mut [Self]);
    fn to_f32(src: &[Self], dst: &mut [f32]);
}

impl VectorElem for f32 {
    const SIZE: usize = 4;
    #[inline]
    fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
        Self::distance_to(metric, a, b)
    }
    #[inline]
    fn distance_to(metric: Metric, q: &[f32], x: &[f32]) -> f32 {
        let k = kernels();
        match metric {
            // Bit metrics never pair with float elements (the operator classes tie each to
            // `bit`); L2 keeps the match total without a branch that could panic in a walk.
            Metric::L2 | Metric::Hamming | Metric::Jaccard => (k.l2_squared)(q, x),
            Metric::InnerProduct => -(k.dot)(q, x),
            Metric::Cosine => 1.0 - (k.dot)(q, x),
            Metric::L1 => (k.l1)(q, x),
        }
    }
    fn from_f32(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn to_f32(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl VectorElem for f16 {
    const SIZE: usize = 2;
    #[inline]
    fn distance(metric: Metric, a: &[f16], b: &[f16]) -> f32 {
        let k = kernels();
        match metric {
            // See the f32 impl: bit metrics never reach float elements.
            Metric::L2 | Metric::Hamming | Metric::Jaccard => (k.l2_squared_f16)(a, b),
            Metric::InnerProduct => -(k.dot_f16)(a, b),
            Metric::Cosine => 1.0 - (k.dot_f16)(a, b),
            Metric::L1 => (k.l1_f16)(a, b),
        }
    }
    #[inline]
    fn distance_to(metric: Metric, q: &[f32], x: &[f16]) -> f32 {
        let k = kernels();
        match metric {
            Metric::L2 | Metric::Hamming | Metric::Jaccard => (k.l2_squared_f32_f16)(q, x),
            Metric::InnerProduct => -(k.dot_f32_f16)(q, x),
            Metric::Cosine => 1.0 - (k.dot_f32_f16)(q, x),
            Metric::L1 => (k.l1_f32_f16)(q, x),
        }
    }
    fn from_f32(src: &[f32], dst: &mut [f16]) {
        (kernels().f32_to_f16)(src, dst);
    }
    fn to_f32(src: &[f16], dst: &mut [f32]) {
        (kernels().f16_to_f32)(src, dst);
    }
}

/// The SQL distance of two packed bit strings (Postgres `bit` data: the first bit is a byte's
/// most significant, unused bits of the last byte are zero) under a bit metric.
#[inline]
pub fn bits_distance(metric: Metric, a: &[u8], b: &[u8]) -> f64 {
    let k = kernels();
    match metric {
        Metric::Jaccard => {
            let (and, or) = (k.jaccard_bits)(a, b);
            jaccard(and, or)
        }
        _ => (k.hamming_bits)(a, b) as f64,
    }
}

/// pgvector's Jaccard distance from the popcounts: strings with no bit set in both are as far
/// apart as Jaccard goes, even two strings of zeros (whose union is empty).
#[inline]
fn jaccard(and: u64, or: u64) -> f64 {
    if and == 0 {
        1.0
    } else {
        1.0 - and as f64 / or as f64
    }
}

/// Bytes of a query converted per block in `u8::distance_to`: on the stack, and a 64000-bit
/// string is 8000 bytes.
const QUERY_BLOCK: usize = 256;

/// `bit` elements: eight bits packed per byte as Postgres packs them ([`bits_distance`]), so a
/// graph stores ceil(bits / 8) of them per element, and an f32 query holds one byte value
/// (0..=255, exact in f32) per element.
impl VectorElem for u8 {
    const SIZE: usize = 1;
    #[inline]
    fn distance(metric: Metric, a: &[u8], b: &[u8]) -> f32 {
        bits_distance(metric, a, b) as f32
    }
    #[inline]
    fn distance_to(metric: Metric, q: &[f32], x: &[u8]) -> f32 {
        let k = kernels();
        let mut buf = [0u8; QUERY_BLOCK];
        let (mut xor, mut and, mut or) = (0u64, 0u64, 0u64);
        for (qc, xc) in q.chunks(QUERY_BLOCK).zip(x.chunks(QUERY_BLOCK)) {
            for (d, &s) in buf.iter_mut().zip(qc) {
                *d = s as u8;
            }
            let n = qc.len().min(xc.len());
            if metric == Metric::Jaccard {
                let (a, o) = (k.jaccard_bits)(&buf[..n], &xc[..n]);
                and += a;
                or += o;
            } else {
                xor += (k.hamming_bits)(&buf[..n], &xc[..n]);
            }
        }
        if metric == Metric::Jaccard {
            jaccard(and, or) as f32
        } else {
            xor as f32
        }
    }
    fn from_f32(src: &[f32], dst: &mut [u8]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s as u8;
        }
    }
    fn to_f32(src: &[u8], dst: &mut [f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f32::from(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_monotone_in_the_sql_distances() {
        let q = [0.6f32, 0.8, 0.0];
        let near = [0.0f32, 1.0, 0.0];
        let far = [0.0f32, 0.0, 1.0];
        for m in [Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1] {
            assert!(f32::distance_to(m, &q, &near) < f32::distance_to(m, &q, &far), "{m:?}");
            let (qh, nh, fh): (Vec<f16>, Vec<f16>, Vec<f16>) = (
                q.iter().map(|&x| f16::from_f32(x)).collect(),
                near.iter().map(|&x| f16::from_f32(x)).collect(),
                far.iter().map(|&x| f16::from_f32(x)).collect(),
            );
            assert!(f16::distance(m, &qh, &nh) < f16::distance(m, &qh, &fh), "{m:?}");
            assert!(f16::distance_to(m, &q, &nh) < f16::distance_to(m, &q, &fh), "{m:?}");
        }
    }

    #[test]
    fn normalize_rejects_zero_and_scales_to_unit() {
        let mut z = [0.0f32; 4];
        assert!(!normalize(&mut z));
        let mut v = [3.0f32, 4.0];
        assert!(normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
    }

    /// Norms whose square leaves the f32 range are still norms: such vectors have a direction.
    #[test]
    fn normalize_handles_huge_and_tiny_norms() {
        let h = core::f32::consts::FRAC_1_SQRT_2;
        for scale in [1e20f32, 3e38, 1e-30, 1e-40, f32::MIN_POSITIVE] {
            let mut v = [scale, scale, 0.0];
            assert!(normalize(&mut v), "{scale:e}");
            assert!((v[0] - h).abs() < 1e-6 && (v[1] - h).abs() < 1e-6 && v[2] == 0.0, "{scale:e}: {v:?}");
            let d = f32::distance_to(Metric::Cosine, &v, &[h, h, 0.0]);
            assert!(d.abs() < 1e-6, "{scale:e}: {d}");
        }
        let mut inf = [f32::INFINITY, 1.0];
        assert!(!normalize(&mut inf));
    }

    /// Stored-against-stored and f32-query-against-stored agree with the SQL distances, below
    /// and above the query block size.
    #[test]
    fn bits_distances() {
        for len in [1usize, 3, 48, 255, 256, 257, 1000] {
            let a: Vec<u8> = (0..len).map(|i| (i * 37 % 256 + 1) as u8).collect();
            let b: Vec<u8> = (0..len).map(|i| (i * 91 % 253) as u8).collect();
            let mut q = vec![0.0f32; len];
            u8::to_f32(&a, &mut q);
            for m in [Metric::Hamming, Metric::Jaccard] {
                let want = bits_distance(m, &a, &b) as f32;
                assert_eq!(u8::distance(m, &a, &b), want, "{m:?} {len}");
                assert_eq!(u8::distance_to(m, &q, &b), want, "{m:?} {len}");
                assert_eq!(u8::distance_to(m, &q, &a), bits_distance(m, &a, &a) as f32, "{m:?} {len}");
            }
        }
        assert_eq!(bits_distance(Metric::Jaccard, &[0], &[0]), 1.0);
        assert_eq!(bits_distance(Metric::Jaccard, &[0b1100_0000], &[0b1000_0000]), 0.5);
        assert_eq!(bits_distance(Metric::Hamming, &[0b1110_0000], &[0b0000_0000]), 3.0);
    }
}
