//! How an hnsw index lives in Postgres pages.
//!
//! Every page is a standard slotted page (`PageInit`, line pointers, `pd_lower`/`pd_upper`), so
//! full-page images compress the hole and `pageinspect` can read it, with an 8-byte special
//! space ([`page::Opaque`]) naming the page kind. Every read goes through shared buffers with a
//! share lock, every change through an exclusive lock and GenericXLog (or, inside `ambuild`,
//! directly, with the whole relation WAL-logged by `log_newpage_range` at the end).
//!
//! ```text
//! block 0   meta page      Meta (below) at PageGetContents; pd_lower past it
//! block 1.. data pages     at most 64 items each (so a page is one word of the visited
//!                          bitmap), each item a vector tuple or a node tuple:
//!
//! vector tuple   0  u8   kind = 1
//!                1  u8   flags (bit 0: element deleted; scans route through it, never return it)
//!                2  6B   node ref: where this element's node tuple is
//!                8  ...  dims elements: f32 (vector) or f16 (halfvec), native order, 8-aligned
//!
//! node tuple     0  u8   kind = 2
//!                1  u8   flags (bit 0: deleted)
//!                2  u8   level L (the element is on layers 0..=L)
//!                3  u8   number of heap TIDs in use (0..=4)
//!                4  6B   vector ref: where this element's vector tuple is
//!               10  u16  version, bumped by every change of a neighbour list (optimistic updates)
//!               12  4x6B heap TIDs (block u32, offset u16)
//!               36  per layer l in 0..=L: u16 count, then cap(l) refs of 6 bytes
//!                        cap(0) = 2*m, cap(l>0) = m; unused slots are zero
//!
//! a ref (6 bytes): block u32 LE, offset u16 LE — the address of a tuple in this index.
//! ```
//!
//! Neighbour lists hold *vector* refs: a search measures far more neighbours than it expands,
//! and a measured vector tuple names its node tuple, so each distance costs one page access and
//! each expansion one more. Vectors and graph are separate tuples so that vectors pack densely
//! (five 384-d float4 vectors per page) and neighbour updates rewrite only the small node tuple.
//!
//! The build writes vector tuples on pages of their own and node tuples after them; online
//! inserts put an element's two tuples side by side on one page, so that one exclusive lock
//! covers both. The meta page's `version` names this format; later formats (filter columns,
//! quantized vectors) bump it.

pub mod buffer;
pub mod meta;
pub mod page;
pub mod tuple;

pub use buffer::{Buffer, Wal};
pub use meta::Meta;
pub use page::{ItemRef, MAX_ITEMS};
