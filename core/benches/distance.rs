//! Time per distance call for every kernel table this CPU can run.
//!
//! Run: `cargo bench -p hnsw_core --bench distance -- --warm-up-time 1 --measurement-time 2`
//! Benchmark ids are `<kernel>/<table>/<dim>`, e.g. `l2_squared/avx512/768`; add a filter
//! argument (`-- l2_squared/`) to run a subset.
//!
//! The vectors are small enough to stay in L1/L2, as the current query and a neighbour list's
//! vectors do during an HNSW search, so this measures the kernels rather than memory. The
//! `scalar` table is the plain sequential-loop baseline (see `distance/scalar.rs` for why it is
//! not unrolled), so `scalar / avx2` and `scalar / avx512` are the SIMD speedups.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use half::f16;
use hnsw_core::distance::{available_kernels, Kernels};

const DIMS: [usize; 5] = [128, 384, 768, 784, 1536];

/// Deterministic inputs in [-1, 1) (splitmix64), so runs are comparable.
fn vector(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// SQ8-style codes, spread over 0..=255.
fn codes(v: &[f32]) -> Vec<u8> {
    v.iter().map(|&x| ((x + 1.0) * 127.5) as u8).collect()
}

fn halves(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

type F32Fn = fn(&[f32], &[f32]) -> f32;
type F16Fn = fn(&[f16], &[f16]) -> f32;
type MixedFn = fn(&[f32], &[f16]) -> f32;
/// Picks one kernel out of a table, so one loop can run it for every table.
type Pick<F> = fn(&Kernels) -> F;

fn bench_distances(c: &mut Criterion) {
    let tables: Vec<&'static Kernels> = available_kernels();

    let f32_kernels: [(&str, Pick<F32Fn>); 3] = [("l2_squared", |k| k.l2_squared), ("dot", |k| k.dot), ("l1", |k| k.l1)];
    let f16_kernels: [(&str, Pick<F16Fn>); 2] = [("l2_squared_f16", |k| k.l2_squared_f16), ("dot_f16", |k| k.dot_f16)];
    let mixed_kernels: [(&str, Pick<MixedFn>); 2] = [("l2_squared_f32_f16", |k| k.l2_squared_f32_f16), ("dot_f32_f16", |k| k.dot_f32_f16)];

    for (name, pick) in f32_kernels {
        let mut g = c.benchmark_group(name);
        for &dim in &DIMS {
            let (a, b) = (vector(1, dim), vector(2, dim));
            for k in &tables {
                let f = pick(k);
                g.bench_with_input(BenchmarkId::new(k.name, dim), &dim, |bch, _| bch.iter(|| f(black_box(&a), black_box(&b))));
            }
        }
        g.finish();
    }

    {
        let mut g = c.benchmark_group("cosine_parts");
        for &dim in &DIMS {
            let (a, b) = (vector(1, dim), vector(2, dim));
            for k in &tables {
                let f = k.cosine_parts;
                g.bench_with_input(BenchmarkId::new(k.name, dim), &dim, |bch, _| bch.iter(|| f(black_box(&a), black_box(&b))));
            }
        }
        g.finish();
    }

    for (name, pick) in f16_kernels {
        let mut g = c.benchmark_group(name);
        for &dim in &DIMS {
            let (a, b) = (halves(&vector(1, dim)), halves(&vector(2, dim)));
            for k in &tables {
                let f = pick(k);
                g.bench_with_input(BenchmarkId::new(k.name, dim), &dim, |bch, _| bch.iter(|| f(black_box(&a), black_box(&b))));
            }
        }
        g.finish();
    }

    for (name, pick) in mixed_kernels {
        let mut g = c.benchmark_group(name);
        for &dim in &DIMS {
            let (a, b) = (vector(1, dim), halves(&vector(2, dim)));
            for k in &tables {
                let f = pick(k);
                g.bench_with_input(BenchmarkId::new(k.name, dim), &dim, |bch, _| bch.iter(|| f(black_box(&a), black_box(&b))));
            }
        }
        g.finish();
    }

    // An SQ8 distance is one of these per code (see `quant::Sq8Query::distance`).
    {
        let mut g = c.benchmark_group("dot_u8");
        for &dim in &DIMS {
            let (w, c) = (vector(1, dim), codes(&vector(2, dim)));
            for k in &tables {
                let f = k.dot_u8;
                g.bench_with_input(BenchmarkId::new(k.name, dim), &dim, |bch, _| bch.iter(|| f(black_box(&w), black_box(&c))));
            }
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("l1_u8");
        for &dim in &DIMS {
            let (a, s, c) = (vector(1, dim), vector(3, dim), codes(&vector(2, dim)));
            for k in &tables {
                let f = k.l1_u8;
                g.bench_with_input(BenchmarkId::new(k.name, dim), &dim, |bch, _| {
                    bch.iter(|| f(black_box(&a), black_box(&s), black_box(&c)))
                });
            }
        }
        g.finish();
    }
    // A RaBitQ distance is one of these per code (see `quant::RaBitQQuery::distance`): a 4-bit
    // query in bit planes against the sign bits of `dim` rounded up to whole u64 words.
    {
        let mut g = c.benchmark_group("dot_bits");
        for &dim in &DIMS {
            let words = dim.div_ceil(64);
            let planes: Vec<u64> =
                vector(1, 4 * words * 2).chunks(2).map(|p| ((p[0].to_bits() as u64) << 32) | p[1].to_bits() as u64).collect();
            let bits: Vec<u8> = codes(&vector(2, 8 * words));
            for k in &tables {
                let f = k.dot_bits;
                g.bench_with_input(BenchmarkId::new(k.name, dim), &dim, |bch, _| bch.iter(|| f(black_box(&planes), black_box(&bits))));
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench_distances);
criterion_main!(benches);
