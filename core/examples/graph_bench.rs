//! In-process build and search of the HNSW graph on a data set from `../shared/data`, to
//! measure the algorithm apart from Postgres:
//! `cargo run -p hnsw_core --release --example graph_bench -- DIR [threads] [n]`
//! DIR holds minilm-384-base.npy, minilm-384-queries.npy and minilm-384-gt100-ids.npy.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Instant;

use hnsw_core::graph::{Graph, Params};
use hnsw_core::metric::{normalize, Metric};

/// Read a 2-d .npy of little-endian f2, f4 or i4 into f32/i32 rows.
fn read_npy(path: &str) -> (Vec<f32>, usize, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let dims: Vec<usize> = shape.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let data = &bytes[start + hlen..];
    let vals: Vec<f32> = if header.contains("'<f2'") {
        data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
    } else if header.contains("'<f4'") {
        data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    } else if header.contains("'<i4'") {
        data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect()
    } else {
        panic!("unsupported dtype in {header}")
    };
    (vals, dims[0], dims[1])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map(String::as_str).unwrap_or("../shared/data");
    let threads: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(2);
    let (mut base, n_all, dim) = read_npy(&format!("{dir}/minilm-384-base.npy"));
    let n: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(n_all);
    let (mut queries, nq, _) = read_npy(&format!("{dir}/minilm-384-queries.npy"));
    let (gt, _, gtk) = read_npy(&format!("{dir}/minilm-384-gt100-ids.npy"));
    base.truncate(n * dim);
    base.chunks_exact_mut(dim).for_each(|v| {
        normalize(v);
    });
    queries.chunks_exact_mut(dim).for_each(|v| {
        normalize(v);
    });
    let params = Params { m: 16, ef_construction: 64, metric: Metric::Cosine, max_level: 16, seed: 1 };
    let mut g = Graph::<f32>::new(dim, params);
    for v in base.chunks_exact(dim) {
        g.push(v);
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let t = Instant::now();
    g.build(&pool, &AtomicUsize::new(0), &AtomicBool::new(false)).unwrap();
    println!("build: n={n} dim={dim} threads={threads} {:.2}s", t.elapsed().as_secs_f64());
    if n != n_all {
        return;
    }
    let k = 10;
    for ef in [10, 20, 40, 80, 120, 200] {
        let t = Instant::now();
        let mut hits = 0;
        for (qi, q) in queries.chunks_exact(dim).enumerate().take(nq) {
            let truth: Vec<u32> = gt[qi * gtk..qi * gtk + k].iter().map(|&x| x as u32).collect();
            let got = g.search(q, k, ef);
            hits += got.iter().filter(|c| truth.contains(&c.item)).count();
        }
        let secs = t.elapsed().as_secs_f64();
        println!("ef={ef:4} recall@10={:.4} qps={:.0}", hits as f64 / (nq * k) as f64, nq as f64 / secs);
    }
}
