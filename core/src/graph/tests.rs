//! Recall of the in-memory graph against brute force.

use std::sync::atomic::{AtomicBool, AtomicUsize};

use half::f16;

use super::*;
use crate::graph::build::splitmix64;
use crate::metric::{normalize, Metric, VectorElem};

/// Gaussian-ish clustered data: `clusters` centres, points scattered around them, which is
/// harder for a graph than uniform noise and closer to real embeddings.
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut next = || {
        state = splitmix64(state);
        (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| (0..dim).map(|_| next() * 4.0).collect()).collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % clusters];
            c.iter().map(|x| x + (next() + next() + next())).collect()
        })
        .collect()
}

fn exact<E: VectorElem>(metric: Metric, data: &[Vec<E>], q: &[f32], k: usize) -> Vec<u32> {
    let mut d: Vec<(f32, u32)> = data.iter().enumerate().map(|(i, v)| (E::distance_to(metric, q, v), i as u32)).collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    d.into_iter().take(k).map(|x| x.1).collect()
}

fn recall<E: VectorElem>(metric: Metric, threads: usize, n: usize, dim: usize) -> f64 {
    let params = Params { m: 16, ef_construction: 64, metric, max_level: 16, seed: 42 };
    // Queries come from the same clusters as the data, as real queries do.
    let mut raw = clustered(n + 100, dim, 20, 7);
    let mut queries = raw.split_off(n);
    if metric.normalizes() {
        raw.iter_mut().chain(queries.iter_mut()).for_each(|v| assert!(normalize(v)));
    }
    let data: Vec<Vec<E>> = raw
        .iter()
        .map(|v| {
            let mut e = vec![E::default(); dim];
            E::from_f32(v, &mut e);
            e
        })
        .collect();
    let mut g = Graph::<E>::new(dim, params);
    for v in &data {
        g.push(v);
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let progress = AtomicUsize::new(0);
    g.build(&pool, &progress, &AtomicBool::new(false)).unwrap();
    assert_eq!(progress.load(std::sync::atomic::Ordering::Relaxed), n);
    let k = 10;
    let mut hits = 0;
    for q in &queries {
        let truth = exact(metric, &data, q, k);
        let got: Vec<u32> = g.search(q, k, 100).iter().map(|c| c.item).collect();
        hits += got.iter().filter(|x| truth.contains(x)).count();
    }
    hits as f64 / (queries.len() * k) as f64
}

#[test]
fn recall_every_metric_serial_and_parallel() {
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1] {
        for threads in [1, 4] {
            let r = recall::<f32>(metric, threads, 3000, 24);
            // Inner product is not a metric; HNSW's triangle-inequality intuition holds less.
            let floor = if metric == Metric::InnerProduct { 0.97 } else { 0.99 };
            eprintln!("{metric:?} threads={threads}: recall {r}");
            assert!(r >= floor, "{metric:?} threads={threads}: recall {r}");
        }
    }
}

#[test]
fn recall_half_precision() {
    let r = recall::<f16>(Metric::L2, 2, 3000, 24);
    assert!(r >= 0.99, "recall {r}");
}

#[test]
fn levels_are_geometric_and_deterministic() {
    let p = Params { m: 16, ef_construction: 64, metric: Metric::L2, max_level: 16, seed: 1 };
    let n = 200_000u64;
    let upper = (0..n).filter(|&i| p.level_of(i) >= 1).count() as f64 / n as f64;
    // P(level >= 1) = 1/M.
    assert!((upper - 1.0 / 16.0).abs() < 0.005, "{upper}");
    assert_eq!(p.level_of(12345), p.level_of(12345));
}

#[test]
fn cancel_stops_the_build() {
    let params = Params { m: 8, ef_construction: 32, metric: Metric::L2, max_level: 16, seed: 3 };
    let mut g = Graph::<f32>::new(8, params);
    for v in clustered(2000, 8, 4, 1) {
        g.push(&v);
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let cancel = AtomicBool::new(true);
    assert_eq!(g.build(&pool, &AtomicUsize::new(0), &cancel), Err(Cancelled));
}

#[test]
fn neighbour_lists_respect_capacity_and_point_to_valid_nodes() {
    let params = Params { m: 4, ef_construction: 16, metric: Metric::L2, max_level: 16, seed: 5 };
    let mut g = Graph::<f32>::new(4, params);
    for v in clustered(1500, 4, 3, 2) {
        g.push(&v);
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    g.build(&pool, &AtomicUsize::new(0), &AtomicBool::new(false)).unwrap();
    for id in 0..g.len() as u32 {
        for l in 0..=g.level(id) {
            let ns = g.neighbors(id, l);
            assert!(ns.len() <= params.max_links(l));
            assert!(!ns.is_empty(), "node {id} isolated on layer {l}");
            for n in ns {
                assert!((n as usize) < g.len() && n != id && g.level(n) >= l);
            }
        }
    }
}

/// Nodes no layer-0 walk from the entry point reaches.
fn unreachable<E: VectorElem>(g: &Graph<E>) -> Vec<u32> {
    let (ep, _) = g.entry().unwrap();
    let mut seen = vec![false; g.len()];
    let mut stack = vec![ep];
    seen[ep as usize] = true;
    while let Some(n) = stack.pop() {
        for m in g.neighbors(n, 0) {
            if !seen[m as usize] {
                seen[m as usize] = true;
                stack.push(m);
            }
        }
    }
    (0..g.len() as u32).filter(|&i| !seen[i as usize]).collect()
}

/// Every node must be reachable on layer 0 from the entry point: an unreachable node is a row
/// no search can return. Checked for serial and parallel builds, on data with near-duplicates.
#[test]
fn every_node_is_reachable() {
    for (threads, m) in [(1, 16), (2, 16), (4, 16), (2, 6), (2, 3)] {
        for seed in 0..8u64 {
            let params = Params { m, ef_construction: 4 * m, metric: Metric::L2, max_level: 16, seed };
            let mut g = Graph::<f32>::new(16, params);
            for v in clustered(5000, 16, 50, seed + 10) {
                g.push(&v);
            }
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            g.build(&pool, &AtomicUsize::new(0), &AtomicBool::new(false)).unwrap();
            let lost = unreachable(&g);
            let why: Vec<String> = lost
                .iter()
                .map(|&q| {
                    let inbound = (0..g.len() as u32).filter(|&e| g.neighbors(e, 0).contains(&q)).count();
                    format!("{q}: level {} out {:?} inbound {inbound}", g.level(q), g.neighbors(q, 0))
                })
                .collect();
            assert!(lost.is_empty(), "threads {threads} m {m} seed {seed}: unreachable nodes {why:?}");
        }
    }
}

/// Uniform points in [0, 1)^dim.
fn uniform(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut next = || {
        state = splitmix64(state);
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    (0..n).map(|_| (0..dim).map(|_| next()).collect()).collect()
}

/// recall@k at `ef` of a graph built on `data`, over `queries`.
fn recall_of<E: VectorElem>(metric: Metric, threads: usize, data: &[Vec<f32>], queries: &[Vec<f32>], k: usize, ef: usize) -> f64 {
    let dim = data[0].len();
    let params = Params { m: 16, ef_construction: 64, metric, max_level: 16, seed: 42 };
    let data: Vec<Vec<E>> = data
        .iter()
        .map(|v| {
            let mut e = vec![E::default(); dim];
            E::from_f32(v, &mut e);
            e
        })
        .collect();
    let mut g = Graph::<E>::new(dim, params);
    for v in &data {
        g.push(v);
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    g.build(&pool, &AtomicUsize::new(0), &AtomicBool::new(false)).unwrap();
    assert_eq!(unreachable(&g), Vec::<u32>::new(), "{metric:?} threads={threads}");
    let mut hits = 0;
    for q in queries {
        let truth = exact(metric, &data, q, k);
        let got: Vec<u32> = g.search(q, k, ef).iter().map(|c| c.item).collect();
        hits += got.iter().filter(|x| truth.contains(x)).count();
    }
    hits as f64 / (queries.len() * k) as f64
}

/// Inner product on low-dimensional uniform data (issue 9, item 14): 85% of the points are
/// nobody's nearest by `-dot` (they lie inside the hull), so the pass that reconnects
/// unreachable nodes runs for most of the graph; it used to take places in the lists of the
/// few hull points every search walks, and recall@20 at ef 40 fell to 0.75 (pgvector: >= 0.97).
/// Serial builds are deterministic; parallel ones are not: the recall of one 4-thread build
/// over 200 queries ranges 0.956-0.984 (CI once saw 0.9575 for a halfvec build over the 20
/// queries this test used to take). So the serial builds must reach 0.965 (they give f32
/// 0.972, halfvec 0.9705) and the mean of four parallel builds per type 0.955, each at least
/// 0.93: far above the bug's 0.75, and no longer a coin toss.
#[test]
fn inner_product_recall_on_low_dimensional_uniform_data() {
    let data = uniform(10_000, 3, 11);
    let queries = uniform(200, 3, 13);
    let r32 = recall_of::<f32>(Metric::InnerProduct, 1, &data, &queries, 20, 40);
    let r16 = recall_of::<f16>(Metric::InnerProduct, 1, &data, &queries, 20, 40);
    eprintln!("inner product 3-d serial: recall f32 {r32} f16 {r16}");
    assert!(r32 >= 0.965, "serial: recall {r32}");
    assert!(r16 >= 0.965, "serial: halfvec recall {r16}");
    for half in [false, true] {
        let runs: Vec<f64> = (0..4)
            .map(|_| match half {
                false => recall_of::<f32>(Metric::InnerProduct, 4, &data, &queries, 20, 40),
                true => recall_of::<f16>(Metric::InnerProduct, 4, &data, &queries, 20, 40),
            })
            .collect();
        let mean = runs.iter().sum::<f64>() / runs.len() as f64;
        eprintln!("inner product 3-d 4 threads, halfvec={half}: recall {runs:?}, mean {mean:.4}");
        assert!(mean >= 0.955 && runs.iter().all(|&r| r >= 0.93), "4 threads, halfvec={half}: recall {runs:?}");
    }
    for m in [Metric::L2, Metric::L1] {
        let r = recall_of::<f32>(m, 2, &data, &queries, 20, 40);
        eprintln!("{m:?} 3-d 2 threads: recall {r}");
        assert!(r >= 0.99, "{m:?}: recall {r}");
    }
}

/// Small `m`, every metric (inner product above all: a node's nearest by `-dot` is not itself,
/// and the heuristic can turn every candidate down), low dimensions and clusters: after a
/// build, and after more nodes are linked into the built graph, every node is reachable on
/// layer 0 from the entry point, and a search as wide as the graph returns every node.
#[test]
fn small_m_every_metric_reachable_on_layer_0_after_build_and_inserts() {
    for metric in [Metric::InnerProduct, Metric::L2, Metric::Cosine, Metric::L1] {
        for m in [2usize, 3, 4, 8] {
            for (dim, seed) in [(3usize, 1u64), (3, 2), (8, 3), (57, 4)] {
                let params = Params { m, ef_construction: (4 * m).max(10), metric, max_level: 16, seed };
                let mut raw = if seed % 2 == 0 { clustered(600, dim, 6, seed) } else { uniform(600, dim, seed) };
                if metric.normalizes() {
                    raw.iter_mut().for_each(|v| assert!(normalize(v)));
                }
                let mut g = Graph::<f32>::new(dim, params);
                let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
                // A build of 200, then 4 more batches linked into it, the last of one node.
                for batch in [0..200, 200..350, 350..500, 500..599, 599..600] {
                    for v in &raw[batch] {
                        g.push(v);
                    }
                    g.build(&pool, &AtomicUsize::new(0), &AtomicBool::new(false)).unwrap();
                    let lost = unreachable(&g);
                    assert!(lost.is_empty(), "{metric:?} m {m} dim {dim} seed {seed}, {} nodes: {} unreachable", g.len(), lost.len());
                }
                for q in raw.iter().step_by(97) {
                    let got = g.search(q, g.len(), g.len());
                    assert_eq!(got.len(), g.len(), "{metric:?} m {m} dim {dim} seed {seed}: a full-width search misses nodes");
                }
            }
        }
    }
}

/// A graph of packed bits (`bit` indexes: u8 elements, queries as one byte value per f32)
/// finds the Hamming and Jaccard nearest neighbours of sign-quantized clustered data, serial
/// and parallel. Bit distances tie often, so a hit is a returned point within the k-th true
/// distance.
#[test]
fn recall_packed_bits() {
    let (n, dim, k) = (3000, 256, 10);
    let mut raw = clustered(n + 100, dim, 20, 11);
    let queries = raw.split_off(n);
    let pack = |v: &Vec<f32>| -> Vec<u8> {
        let mut b = vec![0u8; dim / 8];
        for (i, &x) in v.iter().enumerate() {
            if x > 0.0 {
                b[i / 8] |= 0x80 >> (i % 8);
            }
        }
        b
    };
    let data: Vec<Vec<u8>> = raw.iter().map(pack).collect();
    for metric in [Metric::Hamming, Metric::Jaccard] {
        for threads in [1, 4] {
            let params = Params { m: 16, ef_construction: 64, metric, max_level: 16, seed: 42 };
            let mut g = Graph::<u8>::new(dim / 8, params);
            for v in &data {
                g.push(v);
            }
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            g.build(&pool, &AtomicUsize::new(0), &AtomicBool::new(false)).unwrap();
            assert_eq!(unreachable(&g), Vec::<u32>::new(), "{metric:?} threads={threads}");
            let mut hits = 0;
            for q in &queries {
                let qb: Vec<f32> = pack(q).iter().map(|&b| f32::from(b)).collect();
                let mut d: Vec<f32> = data.iter().map(|v| u8::distance_to(metric, &qb, v)).collect();
                let got: Vec<u32> = g.search(&qb, k, 100).iter().map(|c| c.item).collect();
                assert_eq!(got.len(), k);
                let found: Vec<f32> = got.iter().map(|&i| d[i as usize]).collect();
                d.sort_by(f32::total_cmp);
                hits += found.iter().filter(|&&x| x <= d[k - 1]).count();
            }
            let r = hits as f64 / (queries.len() * k) as f64;
            eprintln!("{metric:?} threads={threads}: recall {r}");
            assert!(r >= 0.99, "{metric:?} threads={threads}: recall {r}");
        }
    }
}

/// Sparse vectors (variable-length stored words, a graph of `dim` 0): every node reachable,
/// recall against brute force with the same distance functions as the SQL operators.
#[test]
fn sparse_graph_recall() {
    use crate::sparse::{encode_words, SparseWord};
    let (n, dims, k) = (2000usize, 5000u64, 10);
    let mut state = 99u64;
    let mut next = || {
        state = splitmix64(state);
        state
    };
    // Zipf-ish vocabulary: small indices are frequent; 5 to 40 terms a vector.
    let mut vector = || {
        let nnz = 5 + (next() % 36) as usize;
        let mut pairs: Vec<(i32, f32)> = (0..nnz)
            .map(|_| {
                let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                ((dims as f64).powf(u) as i32 - 1, 1.0 + (next() % 3) as f32)
            })
            .collect();
        pairs.sort_by_key(|p| p.0);
        pairs.dedup_by_key(|p| p.0);
        pairs
    };
    let raw: Vec<Vec<(i32, f32)>> = (0..n + 50).map(|_| vector()).collect();
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1] {
        let words: Vec<Vec<SparseWord>> = raw
            .iter()
            .map(|p| {
                let idx: Vec<i32> = p.iter().map(|x| x.0).collect();
                let mut val: Vec<f32> = p.iter().map(|x| x.1).collect();
                if metric.normalizes() {
                    assert!(normalize(&mut val));
                }
                encode_words(&idx, &val)
            })
            .collect();
        let (data, queries) = words.split_at(n);
        let params = Params { m: 16, ef_construction: 64, metric, max_level: 16, seed: 42 };
        let mut g = Graph::<SparseWord>::new(0, params);
        for v in data {
            g.push(v);
        }
        assert!(g.bytes() > data.iter().map(|v| v.len() * 4).sum::<usize>());
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        g.build(&pool, &AtomicUsize::new(0), &AtomicBool::new(false)).unwrap();
        assert_eq!(unreachable(&g), Vec::<u32>::new(), "{metric:?}");
        let mut hits = 0;
        for q in queries {
            let mut qf = vec![0.0f32; q.len()];
            SparseWord::to_f32(q, &mut qf);
            let mut d: Vec<f32> = data.iter().map(|v| SparseWord::distance_to(metric, &qf, v)).collect();
            let got: Vec<u32> = g.search(&qf, k, 100).iter().map(|c| c.item).collect();
            assert_eq!(got.len(), k);
            let found: Vec<f32> = got.iter().map(|&i| d[i as usize]).collect();
            d.sort_by(f32::total_cmp);
            hits += found.iter().filter(|&&x| x <= d[k - 1]).count();
        }
        let r = hits as f64 / (queries.len() * k) as f64;
        eprintln!("sparse {metric:?}: recall {r}");
        assert!(r >= 0.95, "{metric:?}: recall {r}");
    }
}

/// A graph whose vectors live outside it (detached part way, as a build that outgrows its
/// memory does, then attached) links exactly as the same graph holding them: same lists on
/// every layer with one thread, dense and sparse.
#[test]
fn detached_vectors_build_the_same_graph() {
    fn lists<E: VectorElem>(g: &Graph<E>) -> Vec<Vec<u32>> {
        (0..g.len() as u32).flat_map(|i| (0..=g.level(i)).map(move |l| (i, l))).map(|(i, l)| g.neighbors(i, l)).collect()
    }
    fn both<E: VectorElem + PartialEq + core::fmt::Debug + Send + Sync + 'static>(dim: usize, data: &[Vec<E>], metric: Metric) {
        let params = Params { m: 8, ef_construction: 32, metric, max_level: 16, seed: 5 };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let mut plain = Graph::<E>::new(dim, params);
        data.iter().for_each(|v| {
            plain.push(v);
        });
        plain.build(&pool, &AtomicUsize::new(0), &AtomicBool::new(false)).unwrap();

        let mut g = Graph::<E>::new(dim, params);
        let (first, rest) = data.split_at(data.len() / 3);
        first.iter().for_each(|v| {
            g.push(v);
        });
        let before = g.bytes();
        let mut outside = g.detach_vectors();
        assert!(g.is_detached() && g.bytes() < before, "detaching frees the vectors' share");
        for v in rest {
            g.push_detached(v.len());
            outside.extend_from_slice(v);
        }
        g.attach(Box::new(outside));
        g.build(&pool, &AtomicUsize::new(0), &AtomicBool::new(false)).unwrap();
        for (i, v) in data.iter().enumerate() {
            assert_eq!(g.vector(i as u32), v.as_slice());
        }
        assert_eq!(lists(&g), lists(&plain));
    }
    let dense = clustered(1500, 16, 6, 11);
    both::<f32>(16, &dense, Metric::L2);
    let sparse: Vec<Vec<crate::sparse::SparseWord>> = (0..800u64)
        .map(|i| {
            let idx: Vec<i32> = (0..1 + i % 7)
                .map(|j| (splitmix64(i * 31 + j) % 500) as i32)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let val: Vec<f32> = idx.iter().map(|&x| 1.0 + (x % 5) as f32).collect();
            crate::sparse::encode_words(&idx, &val)
        })
        .collect();
    both(0, &sparse, Metric::L2);
}

#[test]
#[should_panic(expected = "attached vectors of the wrong length")]
fn attaching_too_few_vectors_is_refused() {
    let params = Params { m: 8, ef_construction: 32, metric: Metric::L2, max_level: 16, seed: 5 };
    let mut g = Graph::<f32>::new(4, params);
    g.push(&[1.0, 2.0, 3.0, 4.0]);
    let mut outside = g.detach_vectors();
    g.push_detached(4);
    outside.extend_from_slice(&[1.0; 3]);
    g.attach(Box::new(outside));
}
