//! Seeded test data shared by the quantizers' tests.

use crate::graph::build::splitmix64;
use crate::metric::{normalize, Metric};

pub(crate) const METRICS: [Metric; 4] = [Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1];

/// Deterministic uniform f32s in [lo, hi) (splitmix64).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 = splitmix64(self.0);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f32 {
        (lo + (hi - lo) * self.unit()) as f32
    }

    pub(crate) fn vector(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| self.range(lo, hi)).collect()
    }

    pub(crate) fn unit_vector(&mut self, n: usize) -> Vec<f32> {
        let mut v = self.vector(n, -1.0, 1.0);
        assert!(normalize(&mut v));
        v
    }
}
