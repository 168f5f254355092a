//! Time per distance call to a stored code: SQ8 (`Sq8Query::distance`) against RaBitQ
//! (`RaBitQQuery::distance`), with the kernel table `kernels()` picks on this CPU.
//!
//! Run: `cargo bench -p hnsw_core --bench quant -- --warm-up-time 1 --measurement-time 2`
//! Ids are `<quantizer>/<metric>/<dims>`. Each iteration measures one query against 256 codes
//! (about the codes a few HNSW neighbour lists hold), so the codes stay in L1/L2 as in a walk.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hnsw_core::metric::Metric;
use hnsw_core::quant::{RaBitQ, Sq8};

const DIMS: [usize; 3] = [128, 384, 1536];
const CODES: usize = 256;

/// Deterministic unit vectors (splitmix64), so runs are comparable.
fn vectors(seed: u64, n: usize, dims: usize) -> Vec<Vec<f32>> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    (0..n)
        .map(|_| {
            let mut v: Vec<f32> = (0..dims).map(|_| next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

fn bench_quant(c: &mut Criterion) {
    for metric in [Metric::L2, Metric::InnerProduct] {
        let mut g = c.benchmark_group(format!("{metric:?}"));
        g.throughput(Throughput::Elements(CODES as u64));
        for dims in DIMS {
            let data = vectors(1, CODES, dims);
            let q = &vectors(2, 1, dims)[0];

            let sq = Sq8::train(dims, data.iter().map(|v| v.as_slice()));
            let codes: Vec<Vec<u8>> = data
                .iter()
                .map(|x| {
                    let mut code = vec![0u8; sq.code_len()];
                    sq.encode(x, &mut code);
                    code
                })
                .collect();
            let query = sq.query(metric, q);
            g.bench_with_input(BenchmarkId::new("sq8", dims), &codes, |b, codes| {
                b.iter(|| codes.iter().map(|code| query.distance(black_box(code))).sum::<f32>())
            });

            let rq = RaBitQ::train(dims, 7, data.iter().map(|v| v.as_slice()));
            let codes: Vec<Vec<u8>> = data
                .iter()
                .map(|x| {
                    let mut code = vec![0u8; rq.code_len()];
                    rq.encode(x, &mut code);
                    code
                })
                .collect();
            let query = rq.query(metric, q);
            g.bench_with_input(BenchmarkId::new("rabitq", dims), &codes, |b, codes| {
                b.iter(|| codes.iter().map(|code| query.distance(black_box(code))).sum::<f32>())
            });
            g.bench_function(BenchmarkId::new("rabitq_query_prep", dims), |b| b.iter(|| rq.query(metric, black_box(q))));
        }
        g.finish();
    }
}

criterion_group!(benches, bench_quant);
criterion_main!(benches);
