//! HNSW graph algorithms (Malkov & Yashunin, arXiv:1603.09320), independent of storage.
//!
//! - [`search`]: the layer search over any [`search::Walk`] (memory or pages);
//! - [`heuristic`]: neighbour selection;
//! - [`maintain`]: keeping lists good and every node reachable as the graph changes (shared
//!   by the build and the extension's inserts and VACUUM);
//! - [`build`]: the in-memory graph that index builds fill in parallel, its lists in [`links`];
//! - [`visited`]: the visited set shared by both.

pub mod build;
pub mod heuristic;
#[allow(unsafe_code)]
pub mod links;
pub mod maintain;
pub mod search;
pub mod visited;

pub use build::{Cancelled, Graph, Params, VectorMemory};
pub use search::{Candidate, SearchScratch, Walk};
pub use visited::Visited;

#[cfg(test)]
mod tests;
