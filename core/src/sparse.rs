//! Distances and ordering of sparse vectors (`sparsevec`), computed on the sorted index lists
//! without densifying.
//!
//! A sparse vector is its dimension count plus two parallel slices: strictly ascending 0-based
//! `indices` and their `values`. Every function walks both operands' indices in one ascending
//! merge, so a position where either side is non-zero is visited once, in index order. Sums
//! are in f32 in that order: adding a term for a position where both sides are zero would add
//! exactly +-0, so the results equal, to the bit, those of an f32 loop over the dense vectors
//! (pgvector's `sparsevec` arithmetic, and what the SQL functions must return).
//!
//! Malformed input (unsorted or duplicate indices, unequal slice lengths) is a caller bug: the
//! results are then meaningless, but nothing reads out of bounds.

use core::cmp::Ordering;

/// A borrowed sparse vector.
#[derive(Clone, Copy, Debug)]
pub struct Sparse<'a> {
    /// Number of dimensions.
    pub dim: usize,
    /// 0-based positions of the non-zero values, strictly ascending.
    pub indices: &'a [i32],
    /// The values at `indices`.
    pub values: &'a [f32],
}

impl Sparse<'_> {
    fn nnz(&self) -> usize {
        self.indices.len().min(self.values.len())
    }
}

/// One step of the merge: a position where `a`, `b` or both have a stored value.
enum Step {
    A(f32),
    B(f32),
    Both(f32, f32),
}

/// Call `f` for every position stored in `a` or `b`, in ascending index order.
#[inline(always)]
fn merge(a: Sparse<'_>, b: Sparse<'_>, mut f: impl FnMut(Step)) {
    let (na, nb) = (a.nnz(), b.nnz());
    let (mut i, mut j) = (0, 0);
    while i < na && j < nb {
        match a.indices[i].cmp(&b.indices[j]) {
            Ordering::Less => {
                f(Step::A(a.values[i]));
                i += 1;
            }
            Ordering::Greater => {
                f(Step::B(b.values[j]));
                j += 1;
            }
            Ordering::Equal => {
                f(Step::Both(a.values[i], b.values[j]));
                i += 1;
                j += 1;
            }
        }
    }
    a.values[i..na].iter().for_each(|&x| f(Step::A(x)));
    b.values[j..nb].iter().for_each(|&y| f(Step::B(y)));
}

/// Squared Euclidean distance.
pub fn l2_squared(a: Sparse<'_>, b: Sparse<'_>) -> f32 {
    let mut sum = 0.0f32;
    merge(a, b, |s| {
        let d = match s {
            Step::A(x) => x,
            Step::B(y) => y,
            Step::Both(x, y) => x - y,
        };
        sum += d * d;
    });
    sum
}

/// Manhattan distance.
pub fn l1(a: Sparse<'_>, b: Sparse<'_>) -> f32 {
    let mut sum = 0.0f32;
    merge(a, b, |s| {
        sum += match s {
            Step::A(x) => x.abs(),
            Step::B(y) => y.abs(),
            Step::Both(x, y) => (x - y).abs(),
        };
    });
    sum
}

/// Inner product. Only shared positions contribute, so this walks with a lighter loop than
/// [`merge`] (no work for positions stored on one side only). The steps do not branch on the
/// comparison (which of the two lists moves on is data the branch predictor cannot guess: an
/// hnsw index measures vectors this way thousands of times a search); the sum takes exactly
/// the shared positions' products, in index order, as a branching loop would.
pub fn dot(a: Sparse<'_>, b: Sparse<'_>) -> f32 {
    let (na, nb) = (a.nnz(), b.nnz());
    let (mut i, mut j) = (0, 0);
    let mut sum = 0.0f32;
    while i < na && j < nb {
        let (x, y) = (a.indices[i], b.indices[j]);
        let p = a.values[i] * b.values[j];
        if x == y {
            sum += p;
        }
        i += (x <= y) as usize;
        j += (y <= x) as usize;
    }
    sum
}

/// Sum of squares, in f32 (the norms inside [`cosine_distance`]).
pub fn norm_squared_f32(a: Sparse<'_>) -> f32 {
    a.values[..a.nnz()].iter().fold(0.0f32, |s, &x| s + x * x)
}

/// Euclidean norm, summed in f64 (the SQL `l2_norm` and `l2_normalize`).
pub fn norm(a: Sparse<'_>) -> f64 {
    // fold from +0: `Sum` of no floats is -0, and the norm of a zero vector prints as 0.
    a.values[..a.nnz()].iter().fold(0.0f64, |s, &x| s + x as f64 * x as f64).sqrt()
}

/// `1 - cos(a, b)`, clamped to [0, 2]; NaN when either vector is zero (it has no direction) or
/// when an f32 sum overflows, as pgvector computes it.
pub fn cosine_distance(a: Sparse<'_>, b: Sparse<'_>) -> f64 {
    let d = dot(a, b) as f64;
    let (na, nb) = (norm_squared_f32(a) as f64, norm_squared_f32(b) as f64);
    // sqrt(na * nb) rather than sqrt(na) * sqrt(nb): one rounding.
    let similarity = d / (na * nb).sqrt();
    // f64::clamp keeps NaN, which is the answer for a zero vector.
    1.0 - similarity.clamp(-1.0, 1.0)
}

/// Total order of `sparsevec`: the values compared position by position over the dimensions
/// both vectors have (a missing position counts as 0), then the shorter vector first — the
/// order of the dense vectors, and of Postgres arrays.
pub fn cmp(a: Sparse<'_>, b: Sparse<'_>) -> Ordering {
    let common = a.dim.min(b.dim);
    // Stored positions at or beyond `common` cannot decide: only the dimension counts can.
    let in_common = |v: Sparse<'_>| v.indices[..v.nnz()].partition_point(|&i| (i as i64) < common as i64);
    let a = Sparse { indices: &a.indices[..in_common(a)], ..a };
    let b = Sparse { indices: &b.indices[..in_common(b)], ..b };
    let mut order = Ordering::Equal;
    // The first position (in index order) whose values differ decides.
    let (na, nb) = (a.indices.len(), b.indices.len());
    let (mut i, mut j) = (0, 0);
    while order == Ordering::Equal && (i < na || j < nb) {
        let (x, y) = match (a.indices.get(i), b.indices.get(j)) {
            (Some(ai), Some(bi)) if ai == bi => {
                i += 1;
                j += 1;
                (a.values[i - 1], b.values[j - 1])
            }
            (Some(ai), Some(bi)) if ai < bi => {
                i += 1;
                (a.values[i - 1], 0.0)
            }
            (Some(_), None) => {
                i += 1;
                (a.values[i - 1], 0.0)
            }
            _ => {
                j += 1;
                (0.0, b.values[j - 1])
            }
        };
        order = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    order.then(a.dim.cmp(&b.dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::build::splitmix64;

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = splitmix64(self.0);
            self.0 % n
        }
        fn value(&mut self) -> f32 {
            // Small integers and their halves: ties between vectors happen often enough to test
            // the ordering, and every sum stays exact.
            let v = (self.below(9) as f32 - 4.0) / 2.0;
            if v == 0.0 {
                1.5
            } else {
                v
            }
        }
    }

    struct Owned {
        dim: usize,
        indices: Vec<i32>,
        values: Vec<f32>,
    }

    impl Owned {
        fn view(&self) -> Sparse<'_> {
            Sparse { dim: self.dim, indices: &self.indices, values: &self.values }
        }
        fn dense(&self) -> Vec<f32> {
            let mut d = vec![0.0; self.dim];
            for (&i, &v) in self.indices.iter().zip(&self.values) {
                d[i as usize] = v;
            }
            d
        }
        fn from_dense(d: &[f32]) -> Owned {
            let (indices, values) = d.iter().enumerate().filter(|(_, &v)| v != 0.0).map(|(i, &v)| (i as i32, v)).unzip();
            Owned { dim: d.len(), indices, values }
        }
    }

    fn random(rng: &mut Rng, dim: usize, density: u64) -> Owned {
        let d: Vec<f32> = (0..dim).map(|_| if rng.below(100) < density { rng.value() } else { 0.0 }).collect();
        Owned::from_dense(&d)
    }

    // The dense references sum in f32 in index order, as the sparse kernels must.
    fn dense_l2(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).fold(0.0f32, |s, (x, y)| s + (x - y) * (x - y))
    }
    fn dense_l1(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).fold(0.0f32, |s, (x, y)| s + (x - y).abs())
    }
    fn dense_dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).fold(0.0f32, |s, (x, y)| s + x * y)
    }
    fn dense_cmp(a: &[f32], b: &[f32]) -> Ordering {
        for (x, y) in a.iter().zip(b) {
            match x.partial_cmp(y).unwrap() {
                Ordering::Equal => {}
                o => return o,
            }
        }
        a.len().cmp(&b.len())
    }

    #[test]
    fn distances_equal_dense_loops_bit_for_bit() {
        let mut rng = Rng(7);
        for round in 0..2000 {
            let dim = 1 + rng.below(40) as usize;
            let density = [0, 5, 30, 70, 100][round % 5];
            let (a, b) = (random(&mut rng, dim, density), random(&mut rng, dim, density));
            let (da, db) = (a.dense(), b.dense());
            assert_eq!(l2_squared(a.view(), b.view()).to_bits(), dense_l2(&da, &db).to_bits(), "{da:?} {db:?}");
            assert_eq!(l1(a.view(), b.view()).to_bits(), dense_l1(&da, &db).to_bits(), "{da:?} {db:?}");
            // +0 and -0 are the same inner product (x * 0 may be -0 in the dense loop).
            assert_eq!(dot(a.view(), b.view()), dense_dot(&da, &db), "{da:?} {db:?}");
            let na = da.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            assert_eq!(norm(a.view()), na);
        }
    }

    #[test]
    fn distances_with_random_values_match_f64_reference() {
        let mut rng = Rng(11);
        for _ in 0..500 {
            let dim = 1 + rng.below(300) as usize;
            let mut a = random(&mut rng, dim, 20);
            let mut b = random(&mut rng, dim, 20);
            for v in a.values.iter_mut().chain(b.values.iter_mut()) {
                *v *= 1.0 + (rng.below(1000) as f32) / 997.0;
            }
            let (da, db) = (a.dense(), b.dense());
            let l2: f64 = da.iter().zip(&db).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
            let ip: f64 = da.iter().zip(&db).map(|(&x, &y)| x as f64 * y as f64).sum();
            let l1r: f64 = da.iter().zip(&db).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum();
            let tol = |r: f64| 1e-4 * (1.0 + r.abs());
            assert!((l2_squared(a.view(), b.view()) as f64 - l2).abs() <= tol(l2));
            assert!((dot(a.view(), b.view()) as f64 - ip).abs() <= tol(ip) + 1e-3);
            assert!((l1(a.view(), b.view()) as f64 - l1r).abs() <= tol(l1r));
            let (na, nb) = (norm(a.view()), norm(b.view()));
            if na > 0.0 && nb > 0.0 {
                let cos = 1.0 - (ip / (na * nb)).clamp(-1.0, 1.0);
                assert!((cosine_distance(a.view(), b.view()) - cos).abs() < 1e-5, "{cos}");
            }
        }
    }

    #[test]
    fn cosine_edge_cases() {
        let x = Owned { dim: 2, indices: vec![0, 1], values: vec![1.0, 2.0] };
        let y = Owned { dim: 2, indices: vec![0, 1], values: vec![2.0, 4.0] };
        let zero = Owned { dim: 2, indices: vec![], values: vec![] };
        let neg = Owned { dim: 2, indices: vec![0, 1], values: vec![-1.0, -2.0] };
        assert_eq!(cosine_distance(x.view(), y.view()), 0.0);
        assert_eq!(cosine_distance(x.view(), neg.view()), 2.0);
        assert!(cosine_distance(x.view(), zero.view()).is_nan());
        assert!(cosine_distance(zero.view(), zero.view()).is_nan());
        let big = Owned { dim: 1, indices: vec![0], values: vec![3e38] };
        // The f32 sums overflow: inf / inf, as pgvector computes it.
        assert!(cosine_distance(big.view(), big.view()).is_nan());
        assert_eq!(dot(big.view(), big.view()), f32::INFINITY);
    }

    #[test]
    fn order_is_the_dense_order() {
        let mut rng = Rng(3);
        for round in 0..5000 {
            let (da, db) = (1 + rng.below(6) as usize, 1 + rng.below(6) as usize);
            let density = [0, 20, 50, 90][round % 4];
            let a = random(&mut rng, da, density);
            let mut b = random(&mut rng, db, density);
            if round % 3 == 0 {
                // Same prefix often: the later positions and the dimensions must decide.
                let mut d = a.dense();
                d.resize(db, 0.0);
                if rng.below(2) == 0 && db > 0 {
                    d[db - 1] = rng.value();
                }
                b = Owned::from_dense(&d);
            }
            let expected = dense_cmp(&a.dense(), &b.dense());
            assert_eq!(cmp(a.view(), b.view()), expected, "{:?} {:?}", a.dense(), b.dense());
            assert_eq!(cmp(b.view(), a.view()), expected.reverse());
        }
    }

    #[test]
    fn empty_and_disjoint() {
        let a = Owned { dim: 4, indices: vec![0, 2], values: vec![1.0, 3.0] };
        let b = Owned { dim: 4, indices: vec![1, 3], values: vec![2.0, 4.0] };
        let e = Owned { dim: 4, indices: vec![], values: vec![] };
        assert_eq!(dot(a.view(), b.view()), 0.0);
        assert_eq!(l2_squared(a.view(), b.view()), 30.0);
        assert_eq!(l1(a.view(), b.view()), 10.0);
        assert_eq!(l2_squared(e.view(), b.view()), 20.0);
        assert_eq!(l1(a.view(), e.view()), 4.0);
        assert_eq!(cmp(e.view(), e.view()), Ordering::Equal);
        assert_eq!(norm(e.view()).to_bits(), 0.0f64.to_bits());
    }
}

/// One 32-bit word of a sparse vector as an hnsw index stores it: `nnz`, then `nnz` indices,
/// then `nnz` values (f32 bits). The length is in the first word, so a stored vector is
/// self-describing and takes `1 + 2 * nnz` words, whatever its dimension count.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct SparseWord(pub u32);

/// Words of a stored sparse vector of `nnz` elements.
pub fn stored_words(nnz: usize) -> usize {
    1 + 2 * nnz
}

/// The stored form of a sparse vector (see [`SparseWord`]).
pub fn encode_words(indices: &[i32], values: &[f32]) -> Vec<SparseWord> {
    let nnz = indices.len().min(values.len());
    let mut out = Vec::with_capacity(stored_words(nnz));
    out.push(SparseWord(nnz as u32));
    out.extend(indices[..nnz].iter().map(|&i| SparseWord(i as u32)));
    out.extend(values[..nnz].iter().map(|&x| SparseWord(x.to_bits())));
    out
}

/// The indices and values of a stored sparse vector, or `None` when its length word does not
/// match the number of words.
#[allow(unsafe_code)]
pub fn decode_words(w: &[SparseWord]) -> Option<(&[i32], &[f32])> {
    let nnz = w.first()?.0 as usize;
    if w.len() != stored_words(nnz) {
        return None;
    }
    // SAFETY: SparseWord is a transparent u32; i32 and f32 have its size and alignment and
    // every bit pattern is valid for both.
    let (indices, values) = unsafe {
        (
            core::slice::from_raw_parts(w[1..].as_ptr().cast::<i32>(), nnz),
            core::slice::from_raw_parts(w[1 + nnz..].as_ptr().cast::<f32>(), nnz),
        )
    };
    Some((indices, values))
}

/// A stored sparse vector as a [`Sparse`] (of unknown dimension count: distances need none);
/// a malformed one reads as the zero vector (index code checks bodies before they get here).
#[inline]
pub fn view_words(w: &[SparseWord]) -> Sparse<'_> {
    let (indices, values) = decode_words(w).unwrap_or((&[], &[]));
    Sparse { dim: 0, indices, values }
}

/// The words of an f32 slice that carries a stored sparse vector bit for bit (an index's
/// queries are f32 slices).
#[inline]
#[allow(unsafe_code)]
pub fn words_of_f32(q: &[f32]) -> &[SparseWord] {
    // SAFETY: f32 and SparseWord (a transparent u32) have the same size and alignment, and
    // every bit pattern is valid for both.
    unsafe { core::slice::from_raw_parts(q.as_ptr().cast::<SparseWord>(), q.len()) }
}

/// Whether `w` is a well-formed stored sparse vector of a `dim`-dimensional type with at most
/// `max_nnz` elements: indices strictly ascending in `0..dim`, values finite and non-zero.
pub fn valid_words(w: &[SparseWord], dim: usize, max_nnz: usize) -> bool {
    let Some((indices, values)) = decode_words(w) else { return false };
    indices.len() <= max_nnz
        && indices.iter().all(|&i| i >= 0 && (i as usize) < dim)
        && indices.windows(2).all(|p| p[0] < p[1])
        && values.iter().all(|x| x.is_finite())
}

impl crate::metric::VectorElem for SparseWord {
    const SIZE: usize = 4;

    /// The metric's proxy, from the same functions as the SQL operators: squared L2, `-dot`,
    /// `1 - dot` of unit vectors (cosine indexes store normalized vectors), L1.
    #[inline]
    fn distance(metric: crate::metric::Metric, a: &[Self], b: &[Self]) -> f32 {
        use crate::metric::Metric;
        let (a, b) = (view_words(a), view_words(b));
        match metric {
            // Bit metrics never pair with sparse vectors (the operator classes tie each to
            // `bit`); L2 keeps the match total.
            Metric::L2 | Metric::Hamming | Metric::Jaccard => l2_squared(a, b),
            Metric::InnerProduct => -dot(a, b),
            Metric::Cosine => 1.0 - dot(a, b),
            Metric::L1 => l1(a, b),
        }
    }

    /// `q` carries the query's words bit for bit (see [`words_of_f32`]).
    #[inline]
    fn distance_to(metric: crate::metric::Metric, q: &[f32], x: &[Self]) -> f32 {
        Self::distance(metric, words_of_f32(q), x)
    }

    /// Bit copies: a sparse vector travels through f32 slices unchanged.
    fn from_f32(src: &[f32], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = SparseWord(s.to_bits());
        }
    }

    fn to_f32(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(s.0);
        }
    }
}

#[cfg(test)]
mod word_tests {
    use super::*;
    use crate::metric::{Metric, VectorElem};

    #[test]
    fn words_round_trip_and_measure_like_the_operators() {
        let (ai, av) = (vec![0, 7, 900_000_000], vec![1.5f32, -2.0, 0.25]);
        let (bi, bv) = (vec![7, 8], vec![3.0f32, 1.0]);
        let (a, b) = (encode_words(&ai, &av), encode_words(&bi, &bv));
        assert_eq!(a.len(), stored_words(3));
        assert_eq!(decode_words(&a), Some((&ai[..], &av[..])));
        let (sa, sb) = (Sparse { dim: 1_000_000_000, indices: &ai, values: &av }, Sparse { dim: 1_000_000_000, indices: &bi, values: &bv });
        assert_eq!(SparseWord::distance(Metric::L2, &a, &b), l2_squared(sa, sb));
        assert_eq!(SparseWord::distance(Metric::InnerProduct, &a, &b), -dot(sa, sb));
        assert_eq!(SparseWord::distance(Metric::L1, &a, &b), l1(sa, sb));
        let mut q = vec![0.0f32; b.len()];
        SparseWord::to_f32(&b, &mut q);
        assert_eq!(SparseWord::distance_to(Metric::L2, &q, &a), l2_squared(sa, sb));
        let mut back = vec![SparseWord::default(); q.len()];
        SparseWord::from_f32(&q, &mut back);
        assert_eq!(back, b);
        // The empty vector.
        let z = encode_words(&[], &[]);
        assert_eq!(z, vec![SparseWord(0)]);
        assert_eq!(SparseWord::distance(Metric::L2, &z, &b), 10.0);
    }

    #[test]
    fn malformed_words_are_caught() {
        let a = encode_words(&[1, 5], &[1.0, 2.0]);
        assert!(valid_words(&a, 6, 1000));
        assert!(!valid_words(&a, 5, 1000), "index beyond the dimensions");
        assert!(!valid_words(&a, 6, 1), "too many elements");
        assert!(!valid_words(&a[..4], 6, 1000), "short");
        assert!(!valid_words(&encode_words(&[5, 1], &[1.0, 2.0]), 6, 1000), "unsorted");
        assert!(!valid_words(&encode_words(&[1, 1], &[1.0, 2.0]), 6, 1000), "duplicate");
        assert!(!valid_words(&encode_words(&[-1], &[1.0]), 6, 1000), "negative");
        assert!(!valid_words(&[SparseWord(u32::MAX)], 6, 1000), "huge length");
        assert!(!valid_words(&[], 6, 1000));
        // Reading a malformed body never goes out of bounds: it is the zero vector.
        assert!(view_words(&a[..4]).indices.is_empty());
    }
}
