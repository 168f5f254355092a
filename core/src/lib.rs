//! Postgres-free core of hnsw_ext.
//!
//! Nothing in this crate knows about pages, buffers or pgrx: it is plain Rust that the extension
//! crate (and its tests and benchmarks) call directly.
//!
//! - [`distance`]: distance kernels with runtime SIMD dispatch (AVX-512F, AVX2+FMA, F16C);
//! - [`metric`]: the index metrics and the element types a graph stores;
//! - [`graph`]: HNSW search, neighbour selection and the parallel in-memory build;
//! - [`quant`]: 8-bit scalar quantization (SQ8) and 1-bit RaBitQ codes of vectors, and distances
//!   (exact to the decoded vector, or estimated) to the codes;
//! - [`sparse`]: distances and ordering of sparse vectors (`sparsevec`) on their index lists.

// Unsafe code lives only where it must: the SIMD kernels (and the dispatch and prefetch beside
// them), the link store's interior mutability (`graph::links`), and the reinterpretation of
// stored sparse vectors' words as indices and values (`sparse`).
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod distance;
pub mod graph;
pub mod metric;
pub mod quant;
pub mod sparse;
