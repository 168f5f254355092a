//! SQ8 coding, distances to codes, ranking quality and the stored format.

use super::*;
use crate::metric::VectorElem;

use super::test_rng::{Rng, METRICS};

fn encode(sq: &Sq8, x: &[f32]) -> Vec<u8> {
    let mut code = vec![0u8; sq.code_len()];
    sq.encode(x, &mut code);
    code
}

fn decode(sq: &Sq8, code: &[u8]) -> Vec<f32> {
    let mut out = vec![f32::NAN; sq.dims()];
    sq.decode(code, &mut out);
    out
}

fn factor(code: &[u8]) -> f32 {
    f32::from_le_bytes(code[..4].try_into().unwrap())
}

/// `x̂` within half a step of `x` (plus the f32 rounding of `x̂`) in every dimension.
fn assert_within_half_step(sq: &Sq8, x: &[f32], xh: &[f32], ctx: &str) {
    for i in 0..x.len() {
        let tol = f64::from(sq.step[i]) * 0.5 * (1.0 + 1e-6) + f64::from(x[i].abs()) * f64::from(f32::EPSILON);
        let err = (f64::from(x[i]) - f64::from(xh[i])).abs();
        assert!(err <= tol, "{ctx} dim {i}: {} -> {} (error {err}, step {})", x[i], xh[i], sq.step[i]);
    }
}

fn hi(sq: &Sq8, i: usize) -> f64 {
    f64::from(sq.lo[i]) + 255.0 * f64::from(sq.step[i])
}

#[test]
fn round_trip_error_is_at_most_half_a_step() {
    let mut rng = Rng(1);
    let dims = 37;
    // Per-dimension ranges of very different widths and offsets, one of them constant.
    let ranges: Vec<(f64, f64)> = (0..dims)
        .map(|i| match i % 5 {
            0 => (-1.0, 1.0),
            1 => (1000.0, 1000.5),
            2 => (-1e-6, 3e-6),
            3 => (-5e4, 2e5),
            _ => (0.25, 0.25),
        })
        .collect();
    let data: Vec<Vec<f32>> = (0..500).map(|_| ranges.iter().map(|&(lo, hi)| rng.range(lo, hi.max(lo))).collect()).collect();
    let sq = Sq8::train(dims, data.iter().map(|v| v.as_slice()));
    assert_eq!((sq.dims(), sq.code_len()), (dims, dims + 4));
    for i in 0..dims {
        let (mn, mx) = data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v[i]), b.max(v[i])));
        assert_eq!(sq.lo[i], mn, "dim {i}");
        assert!(sq.step[i] > 0.0 && hi(&sq, i) >= f64::from(mx), "dim {i}: range does not cover the max {mx}");
    }
    for (j, x) in data.iter().enumerate() {
        let code = encode(&sq, x);
        let xh = decode(&sq, &code);
        assert_within_half_step(&sq, x, &xh, &format!("vector {j}"));
        let norm: f64 = xh.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        assert_eq!(factor(&code), norm as f32, "vector {j}: factor is |x̂|^2");
    }
}

#[test]
fn constant_dims_and_empty_training_decode_exactly() {
    // A constant dimension (zero, positive, negative, huge) keeps its value exactly.
    let data = [[0.0f32, 3.5, -7.25, 3e38, 1e-30], [0.0, 3.5, -7.25, 3e38, 1e-30]];
    let sq = Sq8::train(5, data.iter().map(|v| v.as_slice()));
    assert!(sq.step.iter().all(|&s| s > 0.0 && s.is_normal()), "{:?}", sq.step);
    assert_eq!(decode(&sq, &encode(&sq, &data[0])), data[0]);

    // No vectors at all: every dimension is a constant 0.
    let sq = Sq8::train(3, std::iter::empty());
    assert_eq!(sq.lo, [0.0; 3]);
    assert!(sq.step.iter().all(|&s| s > 0.0 && s.is_normal()));
    assert_eq!(decode(&sq, &encode(&sq, &[0.0; 3])), [0.0; 3]);
}

#[test]
fn training_ignores_non_finite_values() {
    let data = [vec![1.0f32, f32::NAN, -2.0], vec![f32::INFINITY, 4.0, f32::NEG_INFINITY], vec![3.0, 5.0, -1.0], vec![f32::NAN; 3]];
    let sq = Sq8::train(3, data.iter().map(|v| v.as_slice()));
    assert_eq!(sq.lo, [1.0, 4.0, -2.0]);
    for (i, want_hi) in [3.0, 5.0, -1.0].into_iter().enumerate() {
        assert!(hi(&sq, i) >= want_hi && hi(&sq, i) < want_hi + 1e-3, "dim {i}: {}", hi(&sq, i));
    }
    // A dimension with no finite value at all is a constant 0.
    let sq = Sq8::train(2, [[f32::NAN, 1.0].as_slice(), &[f32::INFINITY, 2.0]].into_iter());
    assert_eq!(sq.lo[0], 0.0);
    assert_eq!(decode(&sq, &encode(&sq, &[0.0, 2.0])), [0.0, 2.0]);
}

#[test]
fn out_of_range_and_nan_values_are_clamped() {
    let sq = Sq8::train(6, [[0.0f32; 6].as_slice(), &[1.0; 6]].into_iter());
    let x = [-5.0f32, 9.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5];
    let code = encode(&sq, &x);
    assert_eq!(&code[4..9], &[0, 255, 0, 255, 0]);
    let xh = decode(&sq, &code);
    assert_eq!(xh[0], 0.0);
    assert_eq!(xh[1] as f64, hi(&sq, 1) as f32 as f64);
    assert_eq!(xh[2], 0.0, "NaN codes as lo");
    assert!(xh.iter().all(|v| v.is_finite()));
    let norm: f64 = xh.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    assert_eq!(factor(&code), norm as f32);

    // The widest possible range: decoding stays finite at both ends.
    let sq = Sq8::train(1, [[f32::MIN].as_slice(), &[f32::MAX]].into_iter());
    for x in [f32::MIN, f32::MAX, 0.0, f32::INFINITY, f32::NEG_INFINITY] {
        let xh = decode(&sq, &encode(&sq, &[x]))[0];
        assert!(xh.is_finite(), "{x} -> {xh}");
        if x.is_finite() {
            assert_within_half_step(&sq, &[x], &[xh], "widest range");
        }
    }
}

#[test]
fn from_one_covers_its_vector() {
    let mut rng = Rng(2);
    for dims in [1, 7, 384] {
        let v = rng.vector(dims, -3.0, 2.0);
        let m = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let sq = Sq8::from_one(&v);
        assert_eq!(sq.dims(), dims);
        for i in 0..dims {
            assert_eq!(sq.lo[i], -2.0 * m);
            assert!(hi(&sq, i) >= f64::from(2.0 * m));
            assert_eq!(sq.step[i], sq.step[0]);
        }
        let xh = decode(&sq, &encode(&sq, &v));
        assert_within_half_step(&sq, &v, &xh, &format!("from_one dims={dims}"));
    }
    // Nothing to scale by: [-1, 1].
    for v in [vec![0.0f32; 4], vec![f32::INFINITY, 1.0], vec![f32::NAN; 2], vec![]] {
        let sq = Sq8::from_one(&v);
        assert!(sq.lo.iter().all(|&l| l == -1.0), "{v:?}");
        assert!((0..v.len()).all(|i| hi(&sq, i) >= 1.0), "{v:?}");
    }
    // NaNs are ignored; a huge value caps the range at f32::MAX.
    assert_eq!(Sq8::from_one(&[f32::NAN, 0.5]).lo, [-1.0, -1.0]);
    let v = [3e38f32, -1.0];
    let sq = Sq8::from_one(&v);
    assert_eq!(sq.lo, [f32::MIN; 2]);
    let xh = decode(&sq, &encode(&sq, &v));
    assert!(xh.iter().all(|x| x.is_finite()));
    assert_within_half_step(&sq, &v, &xh, "from_one huge");
}

/// The metric's distance proxy computed on the decoded f32 vector, and a magnitude for the
/// f32 rounding tolerance.
fn reference(metric: Metric, q: &[f32], xh: &[f32], sq: &Sq8) -> (f32, f64) {
    let want = f32::distance_to(metric, q, xh);
    let a = |v: f32| f64::from(v.abs());
    let mag: f64 = match metric {
        Metric::L2 | Metric::Hamming | Metric::Jaccard => {
            q.iter().zip(xh).map(|(&x, &y)| a(x) * a(x) + 2.0 * a(x) * a(y) + a(y) * a(y)).sum()
        }
        Metric::InnerProduct | Metric::Cosine => {
            1.0 + q.iter().zip(xh).zip(&sq.lo).map(|((&x, &y), &l)| a(x) * (a(l) + a(y) + a(y - l))).sum::<f64>()
        }
        Metric::L1 => q.iter().zip(xh).zip(&sq.lo).map(|((&x, &y), &l)| a(x) + a(l) + a(y) + a(y - l)).sum(),
    };
    (want, mag)
}

#[test]
fn query_distance_equals_the_metric_on_the_decoded_vector() {
    let mut rng = Rng(3);
    for dims in [1, 7, 384, 3072] {
        for metric in METRICS {
            let gen = |rng: &mut Rng| if metric.normalizes() { rng.unit_vector(dims) } else { rng.vector(dims, -2.0, 3.0) };
            let data: Vec<Vec<f32>> = (0..50).map(|_| gen(&mut rng)).collect();
            let sq = Sq8::train(dims, data.iter().map(|v| v.as_slice()));
            for qi in 0..5 {
                let q = gen(&mut rng);
                let sqq = sq.query(metric, &q);
                assert_eq!(sqq.metric(), metric);
                // Training vectors, and vectors partly outside the trained range.
                let wide: Vec<Vec<f32>> = (0..5).map(|_| rng.vector(dims, -4.0, 4.0)).collect();
                for (j, x) in data.iter().take(10).chain(&wide).enumerate() {
                    let code = encode(&sq, x);
                    let xh = decode(&sq, &code);
                    let (want, mag) = reference(metric, &q, &xh, &sq);
                    let got = sqq.distance(&code);
                    let tol = 1e-5 * mag + 1e-6;
                    assert!(
                        (f64::from(got) - f64::from(want)).abs() <= tol,
                        "{metric:?} dims={dims} query {qi} vector {j}: {got} vs {want} (tolerance {tol})"
                    );
                }
            }
        }
    }
}

/// Top-10 by SQ8 distance against exact top-10 on 2000 random unit vectors of 128 dims.
#[test]
fn sq8_ranking_recall() {
    let (n, dims, k, queries) = (2000, 128, 10, 20);
    let mut rng = Rng(4);
    let data: Vec<Vec<f32>> = (0..n).map(|_| rng.unit_vector(dims)).collect();
    let sq = Sq8::train(dims, data.iter().map(|v| v.as_slice()));
    let codes: Vec<Vec<u8>> = data.iter().map(|x| encode(&sq, x)).collect();
    let qs: Vec<Vec<f32>> = (0..queries).map(|_| rng.unit_vector(dims)).collect();
    let top = |d: &mut Vec<(f32, usize)>| -> Vec<usize> {
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.iter().take(k).map(|&(_, i)| i).collect()
    };
    for metric in METRICS {
        let mut hits = 0;
        for q in &qs {
            let exact = top(&mut data.iter().enumerate().map(|(i, x)| (f32::distance_to(metric, q, x), i)).collect());
            let sqq = sq.query(metric, q);
            let approx = top(&mut codes.iter().enumerate().map(|(i, c)| (sqq.distance(c), i)).collect());
            hits += approx.iter().filter(|i| exact.contains(i)).count();
        }
        let recall = hits as f64 / (queries * k) as f64;
        assert!(recall >= 0.9, "{metric:?}: recall@{k} {recall}");
    }
}

#[test]
fn bytes_round_trip() {
    let mut rng = Rng(5);
    let data: Vec<Vec<f32>> = (0..20).map(|_| rng.vector(33, -1.0, 1.0)).collect();
    for sq in [Sq8::train(33, data.iter().map(|v| v.as_slice())), Sq8::from_one(&data[0]), Sq8::train(0, std::iter::empty())] {
        let b = sq.to_bytes();
        assert_eq!(&b[..4], &1u32.to_le_bytes(), "the format version leads");
        assert_eq!(Sq8::from_bytes(&b), Ok(sq.clone()));
    }
}

#[test]
fn bytes_reject_bad_input() {
    let sq = Sq8::train(5, [[0.0f32, 1.0, 2.0, 3.0, 4.0].as_slice(), &[1.0, 2.0, 3.0, 4.0, 8.0]].into_iter());
    let good = sq.to_bytes();
    // Every truncation, and a trailing byte.
    for len in 0..good.len() {
        assert!(Sq8::from_bytes(&good[..len]).is_err(), "truncated to {len}");
    }
    let mut long = good.clone();
    long.push(0);
    assert!(Sq8::from_bytes(&long).is_err());
    // Unknown versions.
    for v in [0u32, 2, u32::MAX] {
        let mut b = good.clone();
        b[..4].copy_from_slice(&v.to_le_bytes());
        let e = Sq8::from_bytes(&b).unwrap_err();
        assert!(e.contains("version"), "{e}");
    }
    // Parameters no training produces.
    let bad = [
        Sq8 { lo: vec![0.0; 3], step: vec![1.0; 2] },
        Sq8 { lo: vec![0.0; 2], step: vec![1.0, 0.0] },
        Sq8 { lo: vec![0.0; 2], step: vec![1.0, -1.0] },
        Sq8 { lo: vec![0.0; 2], step: vec![f32::NAN, 1.0] },
        Sq8 { lo: vec![0.0; 2], step: vec![f32::INFINITY, 1.0] },
        Sq8 { lo: vec![f32::NAN, 0.0], step: vec![1.0; 2] },
        Sq8 { lo: vec![f32::NEG_INFINITY, 0.0], step: vec![1.0; 2] },
    ];
    for p in bad {
        assert!(Sq8::from_bytes(&p.to_bytes()).is_err(), "{p:?}");
    }
    // A length prefix far beyond the buffer must fail without reserving it.
    let mut b = 1u32.to_le_bytes().to_vec();
    b.extend(u64::MAX.to_le_bytes());
    b.extend([0u8; 64]);
    assert!(Sq8::from_bytes(&b).is_err());
    // Random garbage, with and without a valid version in front.
    let mut rng = Rng(6);
    for i in 0..2000 {
        let len = (rng.unit() * 100.0) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| (rng.unit() * 256.0) as u8).collect();
        if i % 2 == 0 && len >= 4 {
            b[..4].copy_from_slice(&1u32.to_le_bytes());
        }
        // Short lengths are likely after a valid version: make some of them so.
        if i % 4 == 0 && len >= 12 {
            b[4..12].copy_from_slice(&((rng.unit() * 8.0) as u64).to_le_bytes());
        }
        let _ = Sq8::from_bytes(&b);
    }
}

/// In release builds a code too short for its factor is a far-away point, not a panic (debug
/// builds flag the caller bug).
#[test]
#[cfg(not(debug_assertions))]
fn short_code_is_infinitely_far() {
    let sq = Sq8::from_one(&[1.0, 2.0]);
    for m in METRICS {
        assert_eq!(sq.query(m, &[0.6, 0.8]).distance(&[1, 2, 3]), f32::INFINITY);
    }
}
