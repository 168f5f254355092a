//! How an hnsw index lives in Postgres pages.
//!
//! Every page is a standard slotted page (`PageInit`, line pointers, `pd_lower`/`pd_upper`), so
//! full-page images compress the hole and `pageinspect` can read it, with an 8-byte special
//! space ([`page::Opaque`]) naming the page kind. Every read goes through shared buffers with a
//! share lock, every change through an exclusive lock and GenericXLog (or, inside `ambuild`,
//! directly, with the whole relation WAL-logged by `log_newpage_range` at the end).
//!
//! Each fixed-size record below is a `#[repr(C)]` zerocopy struct (all fields unaligned,
//! multi-byte integers little-endian) whose doc comment names its row here, with a
//! compile-time assertion of its size beside it: [`page::DiskRef`] (a ref), [`page::Opaque`]
//! (special space), `meta::MetaData` (meta page), and, private to their modules, the headers
//! of the vector tuple, node tuple, neighbour list, TID list and attribute record. The
//! variable-length parts after those headers are slices computed from them.
//!
//! ```text
//! special   8 bytes at pd_special of every page, native byte order like the page header:
//! space      0  u16  page kind (1 meta, 2 data, 3 attribute, 4 parameters)   2  u16  magic 0x4857
//!            4  u32  next attribute (or parameter) page; 0 on others
//!
//! block 0   meta page      the meta record at PageGetContents; pd_lower past it (64 bytes;
//!                          format 2 indexes written before quantization have 48, and indexes
//!                          written before retraining 56, read as if the rest were zeros):
//!                0  u32  magic "HSNW"        4  u32  format version     8  u32  dims
//!               12  u16  m                  14  u16  ef_construction
//!               16  u8   metric (1 l2, 2 inner product, 3 cosine, 4 l1)
//!               17  u8   element (1 float4, 2 half, 3 bit, 4 sparse)  18  u8  max level
//!               19  u8   entry level        20  6B   entry vector ref  26  6B  entry node ref
//!               32  u32  insert page        36  u8   filter columns
//!               37  u8   quantization (0 none: format 2; 1 sq8, 2 rabitq1: format 3)
//!               38  u16  attribute record size    40  u32  first, 44  u32  last attr page
//!               48  u32  first parameter page (quantized; 0 until trained)
//!               52  u32  page where inserts put full-vector tuples (quantized)
//!               56  u32  first page of the first parameters, once an insert retrained them
//!                        (codes of generation 0 use them; 0 otherwise)
//!               60  u32  rows + inserts while trained on fewer than 1,000 rows (0 otherwise)
//! block 1.. data pages     at most 64 items each (so a page is one word of the visited
//!                          bitmap), each item a vector tuple, a node tuple or a TID list:
//!
//! vector tuple   0  u8   kind = 1
//!                1  u8   flags (bit 0: element deleted; scans route through it, never return it)
//!                2  6B   node ref: where this element's node tuple is
//!                8  ...  the body: dims elements, f32 (vector) or f16 (halfvec), native order,
//!                        8-aligned; sparsevec: u32 nnz, nnz i32 indices, nnz f32 values (its
//!                        length varies: 4 + 8 nnz bytes, nnz <= 1000); in a quantized index a
//!                        code body instead:
//!                          0 6B ref of the full-vector tuple  6 u8 generation of the
//!                            parameters of the code (0, or 1 after a retraining)  7 u8 zero
//!                          8 the code: sq8: f32 LE |x̂|² (the decoded vector's squared
//!                            norm), then dims u8 codes; rabitq1: 3 f32 LE factors, then
//!                            padded_dims / 8 bytes of sign bits (see hnsw_core::quant)
//!                        then the element's filter values (see am/filter/)
//!
//! full vector    a vector tuple of kind 4 without filter values, on data pages holding nothing
//!                else: quantized indexes only, read to re-rank, to check, and (rabitq1) for
//!                graph maintenance. A vector longer than a page is a chain of such tuples
//!                (`tuple::full_chunks`), each one's node ref naming the next (invalid at the end)
//!
//! parameters     pages of kind 4 chained through the special space, one item each: the bincode
//!                blob of the trained quantizer (hnsw_core::quant), prefixed by its u32 length
//!
//! node tuple     0  u8   kind = 2
//!                1  u8   flags (as in the vector tuple, kept equal; bit 3: neighbour codes follow)
//!                2  u8   level L (the element is on layers 0..=L)
//!                3  u8   number of inline heap TIDs in use (0..=3)
//!                4  6B   vector ref: where this element's vector tuple is
//!               10  u16  version, bumped by every change (optimistic updates)
//!               12  3x6B heap TIDs (block u32, offset u16)
//!               30  6B   first TID-list tuple, for an element with more rows (duplicates)
//!               36  6B   attribute record (block, index) in an index with filter columns
//!               42  per layer l in 0..=L: u16 count, then cap(l) refs of 6 bytes
//!                        cap(0) = 2*m, cap(l>0) = m; unused slots are zero
//!                        (a reused tuple may be longer than its level needs)
//!                with flag bit 3 (`neighbor_codes`), at the end of the tuple: cap(0) slots
//!                of S bytes each, then u16 S. Slot k, for layer-0 entry k: 6B its element's
//!                node ref (zeros: no code kept), S - 6 bytes its code body. A list change
//!                moves each kept entry's slot with it and zeroes those of new entries, which
//!                an insert then fills with its new element's code (`tuple::NeighborCodes`)
//!
//! attribute     a page of fixed-size records instead of items, packed from PageGetContents
//! pages         to pd_lower; special space: kind 3 and the next attribute page. A record:
//!                0  u8   flags (bit 0: element deleted)   1  u8  NULL bitmap of the columns
//!                2  6B   vector ref                        8  8B per filter column: the value
//!                        (integers, dates, timestamps, booleans), a 64-bit hash (text, uuid) or
//!                        a 64-bit signature of the elements (arrays): enough to rule an element
//!                        out without touching its vector page; a possible match is then
//!                        checked exactly against the filter values in its vector tuple.
//!
//! TID list       0  u8   kind = 3
//!                1  u8   flags
//!                2  u16  count
//!                4  u16  capacity (64)
//!                6  6B   next TID-list tuple of the same element
//!               12  ...  heap TIDs
//!
//! a ref (6 bytes): block u32 LE, offset u16 LE — the address of a tuple in this index.
//! ```
//!
//! Neighbour lists hold *vector* refs: a search measures far more neighbours than it expands,
//! and a measured vector tuple names its node tuple, so each distance costs one page access and
//! each expansion one more. Vectors and graph are separate tuples so that vectors pack densely
//! (five 384-d float4 vectors per page) and neighbour updates rewrite only the small node tuple.
//!
//! Rows with identical vectors share one element (inline TIDs, then TID lists), so duplicates
//! cannot crowd neighbour lists or fall out of reach. The build writes vector tuples page after
//! page and puts node tuples in the room those pages leave, then on pages of their own; online
//! inserts put an element's two tuples side by side on one page, so that one exclusive lock
//! covers both, or reuse the two tuples of an element VACUUM freed. The meta page's `version` names this format:
//! 2, or 3 for indexes whose walk reads quantized codes (see `quant`).

pub mod attr;
pub mod buffer;
pub mod element;
pub mod lock;
pub mod meta;
pub mod page;
pub mod prefetch;
pub mod quant;
pub mod tuple;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

pub use buffer::{Buffer, Wal};
pub use meta::Meta;
pub use page::{ItemRef, MAX_ITEMS};
