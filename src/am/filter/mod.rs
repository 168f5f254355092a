//! Filter columns: the index key columns after the vector
//! (`USING hnsw (embedding vector_l2_ops, category_id, tenant_id)`), and the scan keys the
//! planner hands us for them (`WHERE category_id = 7`, `tenant_id IN (...)`, `tags && '{..}'`).
//!
//! Each element keeps its filter values twice: exactly, in its vector tuple after the vector
//! (the *payload*, checked whenever the element is measured), and condensed to 8 bytes per
//! column in an *attribute record* (see `storage::attr`), which is what an exact scan of the
//! matching elements reads: integers, booleans, dates and timestamps as their value (so every
//! comparison is decided there), text and uuid as a hash, arrays as a 64-bit signature of their
//! elements. Hashes and signatures can only rule an element out; a possible match is decided
//! on the payload, with the operator's own function.
//!
//! - `columns`: the filter columns of an index and the encoding of a row's values;
//! - `codec`: the stored forms of a value (payload entries, hashes, array signatures);
//! - `keys`: a scan's keys compiled into a [`Filter`] and tested against stored values.

mod codec;
mod columns;
mod keys;

pub use codec::hash_bytes;
pub use columns::{Attrs, Column, ColumnKind, Columns};
pub use keys::Filter;

/// At most this many filter columns (the NULL bitmap of an attribute record is one byte).
pub const MAX_FILTERS: usize = 8;

/// Operator strategies of the filter operator classes (sql/finalize.sql).
pub const LT: u16 = 1;
pub const LE: u16 = 2;
pub const EQ: u16 = 3;
pub const GE: u16 = 4;
pub const GT: u16 = 5;
pub const NE: u16 = 6;
pub const OVERLAP: u16 = 7;
pub const CONTAINS: u16 = 8;
