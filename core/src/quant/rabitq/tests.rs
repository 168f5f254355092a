//! RaBitQ: the rotation, the estimator's definition and error, ranking quality, the stored
//! format and the edges (tiny and huge dimensions, non-finite values, the centroid itself).

use super::*;
use crate::metric::{normalize, VectorElem};

use crate::quant::test_rng::{Rng, METRICS};

fn encode(rq: &RaBitQ, x: &[f32]) -> Vec<u8> {
    let mut code = vec![0u8; rq.code_len()];
    rq.encode(x, &mut code);
    code
}

fn factor(code: &[u8], k: usize) -> f32 {
    f32::from_le_bytes(code[4 * k..4 * k + 4].try_into().unwrap())
}

fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `v - c` in f64.
fn minus_centroid(rq: &RaBitQ, v: &[f32]) -> Vec<f64> {
    v.iter().zip(rq.centroid()).map(|(&x, &c)| f64::from(x) - f64::from(c)).collect()
}

#[test]
fn rotation_is_orthogonal_deterministic_and_mixing() {
    let mut rng = Rng(1);
    for dims in [1, 7, 64, 100, 128, 384, 1000, 1536, 3072, 16000] {
        let rq = RaBitQ::untrained(dims, 7);
        let d = rq.padded_dims();
        assert!(d.is_multiple_of(64) && d >= dims && d < dims + 64, "dims={dims}: padded {d}");
        let a = to64(&rng.vector(d, -1.0, 1.0));
        let b = to64(&rng.vector(d, -1.0, 1.0));
        let (mut ra, mut rb) = (a.clone(), b.clone());
        rq.rotate(&mut ra);
        rq.rotate(&mut rb);
        let (na, nb) = (dot64(&a, &a).sqrt(), dot64(&b, &b).sqrt());
        assert!((dot64(&ra, &ra).sqrt() - na).abs() <= 1e-12 * na, "dims={dims}: norm");
        assert!((dot64(&ra, &rb) - dot64(&a, &b)).abs() <= 1e-12 * na * nb, "dims={dims}: inner product");
        // The same seed gives the same rotation, bit for bit; another seed another one.
        let mut again = a.clone();
        rq.rotate(&mut again);
        assert_eq!(again, ra, "dims={dims}");
        let mut other = a.clone();
        RaBitQ::untrained(dims, 8).rotate(&mut other);
        assert!(other.iter().zip(&ra).any(|(x, y)| (x - y).abs() > 1e-3), "dims={dims}: seed ignored");
        // A basis vector is spread over every coordinate: none keeps much of it.
        for i in [0, dims - 1] {
            let mut e = vec![0.0f64; d];
            e[i] = 1.0;
            rq.rotate(&mut e);
            let max = e.iter().fold(0.0f64, |m, &v| m.max(v.abs()));
            assert!(max <= 6.0 / (d as f64).sqrt(), "dims={dims}: e_{i} rotates to a coordinate of {max}");
        }
    }
}

#[test]
fn code_lengths() {
    for (dims, len) in [(1, 20), (7, 20), (64, 20), (65, 28), (128, 28), (384, 60), (768, 108), (1536, 204), (3072, 396), (16000, 2012)] {
        assert_eq!(RaBitQ::untrained(dims, 0).code_len(), len, "dims={dims}");
    }
}

#[test]
fn training_takes_the_mean_of_finite_values() {
    let data = [vec![1.0f32, f32::NAN, -2.0, f32::INFINITY], vec![3.0, 5.0, 4.0, f32::NAN], vec![2.0, 7.0, 1.0, f32::NEG_INFINITY]];
    let rq = RaBitQ::train(4, 3, data.iter().map(|v| v.as_slice()));
    assert_eq!(rq.centroid(), [2.0, 6.0, 1.0, 0.0]);
    assert_eq!((rq.dims(), rq.padded_dims(), rq.seed()), (4, 64, 3));
    let rq = RaBitQ::train(3, 3, std::iter::empty());
    assert_eq!(rq, RaBitQ::untrained(3, 3));
}

/// The code holds what the module docs say, and a distance is the estimator computed from it
/// (checked against the formula evaluated in f64 from the code's bits and the rotated query).
#[test]
fn distance_matches_its_definition() {
    let mut rng = Rng(2);
    for dims in [1, 7, 100, 384] {
        let data: Vec<Vec<f32>> = (0..50).map(|_| rng.vector(dims, -1.0, 2.0)).collect();
        let rq = RaBitQ::train(dims, 11, data.iter().map(|v| v.as_slice()));
        let d = rq.padded_dims();
        let c = to64(rq.centroid());
        for x in data.iter().take(5) {
            let code = encode(&rq, x);
            let o = minus_centroid(&rq, x);
            let mut r = o.clone();
            r.resize(d, 0.0);
            rq.rotate(&mut r);
            let abs: f64 = r.iter().map(|v| v.abs()).sum();
            assert_eq!(factor(&code, 0), dot64(&o, &o) as f32);
            assert!((f64::from(factor(&code, 1)) - dot64(&r, &r) / abs).abs() <= 1e-6 * dot64(&r, &r) / abs);
            assert!((f64::from(factor(&code, 2)) - dot64(&o, &c)).abs() <= 1e-6 * (1.0 + dot64(&o, &o).sqrt() * dot64(&c, &c).sqrt()));
            for (i, &ri) in r.iter().enumerate() {
                assert_eq!((code[FACTOR_LEN + i / 8] >> (i % 8)) & 1 == 1, ri > 0.0, "dims={dims} bit {i}");
            }
            for _ in 0..3 {
                let q = rng.vector(dims, -1.0, 2.0);
                let mut rq_q = minus_centroid(&rq, &q);
                let qc2 = dot64(&rq_q, &rq_q);
                rq_q.resize(d, 0.0);
                rq.rotate(&mut rq_q);
                let delta = rq_q.iter().fold(0.0f64, |m, v| m.max(v.abs())) / QUERY_LEVELS as f64;
                let pm: f64 = rq_q
                    .iter()
                    .zip(&r)
                    .map(|(&v, &ri)| {
                        let s = (v / delta).round();
                        assert!(s.abs() <= QUERY_LEVELS as f64);
                        if ri > 0.0 {
                            s
                        } else {
                            -s
                        }
                    })
                    .sum();
                let est = f64::from(factor(&code, 1)) * delta * pm;
                let q_dot_c = dot64(&to64(&q), &c);
                let c_dot_o = f64::from(factor(&code, 2));
                let n2 = f64::from(factor(&code, 0));
                for metric in METRICS {
                    let want = match metric {
                        Metric::L2 | Metric::L1 | Metric::Hamming | Metric::Jaccard => qc2 + n2 - 2.0 * est,
                        Metric::InnerProduct => -(est + c_dot_o + q_dot_c),
                        Metric::Cosine => 1.0 - (est + c_dot_o + q_dot_c),
                    };
                    let got = rq.query(metric, &q).distance(&code);
                    let mag = qc2 + n2 + 2.0 * est.abs() + c_dot_o.abs() + q_dot_c.abs() + 1.0;
                    assert!((f64::from(got) - want).abs() <= 1e-5 * mag, "{metric:?} dims={dims}: {got} vs {want}");
                }
            }
        }
    }
}

/// Error statistics of the estimate of <x - c, q - c>, each error divided by |x - c| |q - c|.
struct ErrorStats {
    mean: f64,
    rms: f64,
    max: f64,
}

fn error_stats(errors: &[f64]) -> ErrorStats {
    let n = errors.len() as f64;
    ErrorStats {
        mean: errors.iter().sum::<f64>() / n,
        rms: (errors.iter().map(|e| e * e).sum::<f64>() / n).sqrt(),
        max: errors.iter().fold(0.0f64, |m, e| m.max(e.abs())),
    }
}

/// The paper's bound: the error of <ô, q̂>'s estimate is of order 1/sqrt(D) (its standard
/// deviation about sqrt(1 - 2/π) / sqrt(2/π) / sqrt(D) = 0.76 / sqrt(D) for vectors with
/// Gaussian-like rotated coordinates), and the estimator is unbiased: the mean error over many
/// pairs, from several rotations, is a small fraction of the spread.
#[test]
fn estimator_error_is_unbiased_and_of_order_one_over_sqrt_d() {
    let mut rng = Rng(3);
    for dims in [128, 384, 1536] {
        // Off-centre data (the centroid is about 0.5 in every dimension), and unit vectors.
        for unit in [false, true] {
            let gen = |rng: &mut Rng| if unit { rng.unit_vector(dims) } else { rng.vector(dims, -1.0, 2.0) };
            let mut errors: Vec<[f64; 3]> = Vec::new();
            // Per metric: how many truths lie outside estimate ± bound.
            let mut bound_misses = [0usize; 3];
            for seed in 0..4 {
                let data: Vec<Vec<f32>> = (0..200).map(|_| gen(&mut rng)).collect();
                let rq = RaBitQ::train(dims, seed, data.iter().map(|v| v.as_slice()));
                let codes: Vec<Vec<u8>> = data.iter().map(|x| encode(&rq, x)).collect();
                for _ in 0..8 {
                    let q = gen(&mut rng);
                    let qc = minus_centroid(&rq, &q);
                    let queries = [rq.query(Metric::L2, &q), rq.query(Metric::InnerProduct, &q), rq.query(Metric::Cosine, &q)];
                    for (x, code) in data.iter().zip(&codes) {
                        let o = minus_centroid(&rq, x);
                        let scale = (dot64(&o, &o) * dot64(&qc, &qc)).sqrt();
                        let (xq, l2) = (dot64(&to64(x), &to64(&q)), dot64(&o, &o) + dot64(&qc, &qc) - 2.0 * dot64(&o, &qc));
                        // Each metric's error as the error (estimate - truth) of <o, q - c>.
                        errors.push([
                            (l2 - f64::from(queries[0].distance(code))) / 2.0 / scale,
                            (-f64::from(queries[1].distance(code)) - xq) / scale,
                            (1.0 - f64::from(queries[2].distance(code)) - xq) / scale,
                        ]);
                        for (m, truth) in [l2, -xq, 1.0 - xq].into_iter().enumerate() {
                            let (est, bound) = queries[m].distance_with_bound(code);
                            assert_eq!(est, queries[m].distance(code));
                            bound_misses[m] += usize::from((f64::from(est) - truth).abs() > f64::from(bound));
                        }
                    }
                }
            }
            let sqrt_d = (padded_dims(dims) as f64).sqrt();
            let misses = bound_misses.iter().sum::<usize>() as f64 / (3 * errors.len()) as f64;
            assert!(misses <= 0.1, "dims={dims} unit={unit}: {misses} of the estimates outside their bound");
            for (m, name) in ["L2", "inner product", "cosine"].iter().enumerate() {
                let s = error_stats(&errors.iter().map(|e| e[m]).collect::<Vec<_>>());
                let ctx = format!(
                    "{name} dims={dims} unit={unit}: mean {:.4} rms {:.4} max {:.4} (x sqrt(D))",
                    s.mean * sqrt_d,
                    s.rms * sqrt_d,
                    s.max * sqrt_d
                );
                eprintln!("{ctx}, {misses:.3} outside the bound");
                assert!(s.rms * sqrt_d <= 0.95, "{ctx}");
                assert!(s.max * sqrt_d <= 5.0, "{ctx}");
                assert!(s.mean.abs() <= 0.05 * s.rms, "{ctx}");
            }
        }
    }
}

/// Recall@10 of the exact top 10 among the top 100 by estimate, re-ranked exactly.
fn recall(data: &[Vec<f32>], queries: &[Vec<f32>], metric: Metric, rq: &RaBitQ) -> f64 {
    let (k, candidates) = (10, 100);
    let codes: Vec<Vec<u8>> = data.iter().map(|x| encode(rq, x)).collect();
    let top = |d: &mut Vec<(f32, usize)>, n: usize| -> Vec<usize> {
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.iter().take(n).map(|&(_, i)| i).collect()
    };
    let mut hits = 0;
    for q in queries {
        let exact = top(&mut data.iter().enumerate().map(|(i, x)| (f32::distance_to(metric, q, x), i)).collect(), k);
        let rqq = rq.query(metric, q);
        let cand = top(&mut codes.iter().enumerate().map(|(i, c)| (rqq.distance(c), i)).collect(), candidates);
        let reranked = top(&mut cand.iter().map(|&i| (f32::distance_to(metric, q, &data[i]), i)).collect(), k);
        hits += reranked.iter().filter(|i| exact.contains(i)).count();
    }
    hits as f64 / (queries.len() * k) as f64
}

/// Unit vectors around random unit centres (20 per centre on average for 100 centres), the
/// shape of real embeddings, whose neighbours are much nearer than the bulk of the data: the
/// noise has 1.5 times the norm of the centre, so members of a cluster are at cosine ~0.3
/// (and random pairs at 0 ± 0.05 to 0.09).
fn clustered(rng: &mut Rng, centres: &[Vec<f32>], n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let c = &centres[(rng.unit() * centres.len() as f64) as usize];
            let a = (6.75 / c.len() as f64).sqrt();
            let mut v: Vec<f32> = c.iter().map(|&x| x + rng.range(-a, a)).collect();
            assert!(normalize(&mut v));
            v
        })
        .collect()
}

/// Recall on 2000 unit vectors of 128 and 384 dimensions. On uniformly random directions
/// (the worst case: every distance is about the same, and 1 bit per dimension cannot tell the
/// top 10 from the next few hundred) RaBitQ's recall is 0.80-0.87 at any dimension (its
/// error and the spread of the distances both scale as 1/sqrt(D)); on clustered data it is
/// 0.99-1.0 (L1, ranked by the L2 estimate: 0.96-1.0).
#[test]
fn rabitq_ranking_recall() {
    let mut rng = Rng(4);
    for dims in [128, 384] {
        let random: Vec<Vec<f32>> = (0..2000).map(|_| rng.unit_vector(dims)).collect();
        let random_q: Vec<Vec<f32>> = (0..30).map(|_| rng.unit_vector(dims)).collect();
        let centres: Vec<Vec<f32>> = (0..100).map(|_| rng.unit_vector(dims)).collect();
        let cl = clustered(&mut rng, &centres, 2000);
        let cl_q = clustered(&mut rng, &centres, 30);
        for (name, data, queries, floor, l1_floor) in [("random", &random, &random_q, 0.75, 0.6), ("clustered", &cl, &cl_q, 0.95, 0.9)] {
            let rq = RaBitQ::train(dims, 42, data.iter().map(|v| v.as_slice()));
            for metric in METRICS {
                let r = recall(data, queries, metric, &rq);
                eprintln!("recall {name} dims={dims} {metric:?}: {r:.3}");
                let floor = if metric == Metric::L1 { l1_floor } else { floor };
                assert!(r >= floor, "{name} dims={dims} {metric:?}: recall@10 {r}");
            }
        }
    }
}

/// Every dimension count works, up to 16,000, and the estimate stays near the truth.
#[test]
fn tiny_and_huge_dimensions() {
    let mut rng = Rng(5);
    for dims in [1, 2, 7, 63, 64, 65, 384, 3072, 16000] {
        let data: Vec<Vec<f32>> = (0..4).map(|_| rng.vector(dims, -1.0, 1.0)).collect();
        for rq in [RaBitQ::train(dims, 9, data.iter().map(|v| v.as_slice())), RaBitQ::untrained(dims, 9)] {
            let q = rng.vector(dims, -1.0, 1.0);
            let qc = minus_centroid(&rq, &q);
            for x in &data {
                let code = encode(&rq, x);
                let o = minus_centroid(&rq, x);
                let scale = (dot64(&o, &o) * dot64(&qc, &qc)).sqrt();
                for metric in METRICS {
                    let got = f64::from(rq.query(metric, &q).distance(&code));
                    let want = match metric {
                        Metric::L2 | Metric::L1 => f64::from(f32::distance_to(Metric::L2, &q, x)),
                        _ => f64::from(f32::distance_to(metric, &q, x)),
                    };
                    let bound = 2.0 * 6.0 * scale / (rq.padded_dims() as f64).sqrt() + 1e-4 * (1.0 + want.abs());
                    assert!((got - want).abs() <= bound, "{metric:?} dims={dims}: {got} vs {want} (bound {bound})");
                }
            }
        }
    }
}

/// A vector at the centroid has o = 0: its estimate is exact.
#[test]
fn the_centroid_itself_is_exact() {
    let mut rng = Rng(6);
    let data: Vec<Vec<f32>> = (0..10).map(|_| rng.vector(100, -1.0, 1.0)).collect();
    let rq = RaBitQ::train(100, 1, data.iter().map(|v| v.as_slice()));
    let c = rq.centroid().to_vec();
    let code = encode(&rq, &c);
    assert_eq!([factor(&code, 0), factor(&code, 1), factor(&code, 2)], [0.0; 3]);
    let q = rng.vector(100, -1.0, 1.0);
    for metric in METRICS {
        let want = match metric {
            Metric::L1 => f32::distance_to(Metric::L2, &q, &c),
            _ => f32::distance_to(metric, &q, &c),
        };
        let got = rq.query(metric, &q).distance(&code);
        assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{metric:?}: {got} vs {want}");
    }
    // The untrained centroid is 0, so the zero vector is exact there.
    let rq = RaBitQ::untrained(100, 1);
    let code = encode(&rq, &[0.0; 100]);
    let got = rq.query(Metric::L2, &q).distance(&code);
    let want = f32::distance_to(Metric::L2, &q, &[0.0; 100]);
    assert!((got - want).abs() <= 1e-5 * want, "{got} vs {want}");
    // A query at the centroid: every estimate of <o, q - c> is 0, the rest is exact.
    let x = &data[0];
    let code = encode(&rq, x);
    let got = rq.query(Metric::L2, &[0.0; 100]).distance(&code);
    let want = f32::distance_to(Metric::L2, &[0.0; 100], x);
    assert!((got - want).abs() <= 1e-5 * want, "{got} vs {want}");
}

#[test]
fn non_finite_and_huge_values_give_finite_codes_and_no_nan() {
    let rq = RaBitQ::train(5, 2, [[1.0f32, 2.0, 3.0, 4.0, 5.0].as_slice(), &[0.0; 5]].into_iter());
    let x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0, 2.0];
    let code = encode(&rq, &x);
    // Non-finite values count as the centroid's: the same code as with those values replaced.
    let mut y = x;
    y[..3].copy_from_slice(&rq.centroid()[..3]);
    assert_eq!(code, encode(&rq, &y));
    assert!((0..3).all(|k| factor(&code, k).is_finite()));
    for metric in METRICS {
        let d = rq.query(metric, &[f32::NAN, 1.0, 1.0, f32::INFINITY, 0.0]).distance(&code);
        assert!(d.is_finite(), "{metric:?}: {d}");
    }
    // Magnitudes near f32::MAX: factors saturate, nothing is NaN.
    let big = [3e38f32, -3e38, 3e38, 1.0, 0.0];
    let code = encode(&rq, &big);
    assert!((0..3).all(|k| factor(&code, k).is_finite()));
    for metric in METRICS {
        for q in [big, [1.0; 5], [-3e38; 5]] {
            let d = rq.query(metric, &q).distance(&code);
            assert!(!d.is_nan(), "{metric:?} {q:?}");
        }
    }
}

#[test]
fn bytes_round_trip() {
    let mut rng = Rng(7);
    let data: Vec<Vec<f32>> = (0..20).map(|_| rng.vector(33, -1.0, 1.0)).collect();
    for rq in [
        RaBitQ::train(33, 5, data.iter().map(|v| v.as_slice())),
        RaBitQ::untrained(33, u64::MAX),
        RaBitQ::train(0, 0, std::iter::empty()),
        RaBitQ::untrained(16000, 3),
    ] {
        let b = rq.to_bytes();
        assert_eq!(&b[..4], &1u32.to_le_bytes(), "the format version leads");
        assert_eq!(RaBitQ::from_bytes(&b), Ok(rq.clone()));
        // The same parameters code the same way after the round trip.
        let back = RaBitQ::from_bytes(&b).unwrap();
        let x = rng.vector(rq.dims(), -1.0, 1.0);
        assert_eq!(encode(&rq, &x), encode(&back, &x));
    }
}

#[test]
fn bytes_reject_bad_input() {
    let rq = RaBitQ::train(5, 1, [[0.0f32, 1.0, 2.0, 3.0, 4.0].as_slice()].into_iter());
    let good = rq.to_bytes();
    for len in 0..good.len() {
        assert!(RaBitQ::from_bytes(&good[..len]).is_err(), "truncated to {len}");
    }
    let mut long = good.clone();
    long.push(0);
    assert!(RaBitQ::from_bytes(&long).is_err());
    for v in [0u32, 2, u32::MAX] {
        let mut b = good.clone();
        b[..4].copy_from_slice(&v.to_le_bytes());
        let e = RaBitQ::from_bytes(&b).unwrap_err();
        assert!(e.contains("version"), "{e}");
    }
    let bad = [
        RaBitQ { dims: 4, ..rq.clone() },
        RaBitQ { dims: 6, ..rq.clone() },
        RaBitQ { dims: usize::MAX, ..rq.clone() },
        RaBitQ { padded: 128, ..rq.clone() },
        RaBitQ { padded: 0, ..rq.clone() },
        RaBitQ { padded: 5, ..rq.clone() },
        RaBitQ { centroid: vec![0.0, f32::NAN, 0.0, 0.0, 0.0], ..rq.clone() },
        RaBitQ { centroid: vec![0.0, 0.0, 0.0, 0.0, f32::INFINITY], ..rq.clone() },
        RaBitQ { dims: 0, centroid: vec![], padded: 0, seed: 0 },
    ];
    for p in bad {
        assert!(RaBitQ::from_bytes(&p.to_bytes()).is_err(), "{p:?}");
    }
    // A length prefix far beyond the buffer must fail without reserving it.
    let mut b = 1u32.to_le_bytes().to_vec();
    b.extend([5u8, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    b.extend(u64::MAX.to_le_bytes());
    b.extend([0u8; 64]);
    assert!(RaBitQ::from_bytes(&b).is_err());
    let mut rng = Rng(8);
    for i in 0..2000 {
        let len = (rng.unit() * 100.0) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| (rng.unit() * 256.0) as u8).collect();
        if i % 2 == 0 && len >= 4 {
            b[..4].copy_from_slice(&1u32.to_le_bytes());
        }
        if i % 4 == 0 && len >= 36 {
            b[28..36].copy_from_slice(&((rng.unit() * 8.0) as u64).to_le_bytes());
        }
        let _ = RaBitQ::from_bytes(&b);
    }
}

/// In release builds a code too short for its factors is a far-away point, not a panic (debug
/// builds flag the caller bug).
#[test]
#[cfg(not(debug_assertions))]
fn short_code_is_infinitely_far() {
    let rq = RaBitQ::untrained(2, 0);
    for m in METRICS {
        assert_eq!(rq.query(m, &[0.6, 0.8]).distance(&[1, 2, 3]), f32::INFINITY);
    }
}
