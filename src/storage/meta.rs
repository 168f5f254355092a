//! The meta page (block 0): what every scan and insert needs before touching the graph.

use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::buffer::{Buffer, Lock, Logging, Wal};
use super::page::{DiskRef, ItemRef, PAGE_META};
use crate::types::raise;

pub const META_BLOCK: u32 = 0;
pub const MAGIC: u32 = 0x574E_5348; // "HSNW"
/// On-disk format version; see the module docs of `storage`. Indexes whose walk reads
/// quantized codes are [`FORMAT_QUANTIZED`], so that builds before it refuse them instead of
/// taking codes for vectors; full-precision indexes keep this one, unchanged.
pub const FORMAT_VERSION: u32 = 2;
pub const FORMAT_QUANTIZED: u32 = 3;

/// How the graph walk sees vectors; the discriminants are the meta page's byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Quant {
    /// The walk measures the stored vectors themselves.
    None = 0,
    /// The walk measures 8-bit codes (per-dimension ranges trained by the build) and re-ranks
    /// its results with the full-precision vectors kept on other pages.
    Sq8 = 1,
    /// The walk measures 1-bit RaBitQ codes (random rotation, per-vector corrective factors,
    /// an unbiased distance estimate) and re-ranks as for `Sq8`.
    RaBitQ1 = 2,
}

impl Quant {
    pub fn from_u8(v: u8) -> Option<Quant> {
        match v {
            0 => Some(Quant::None),
            1 => Some(Quant::Sq8),
            2 => Some(Quant::RaBitQ1),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Quant::None => "none",
            Quant::Sq8 => "sq8",
            Quant::RaBitQ1 => "rabitq1",
        }
    }

    /// The format version of an index with this quantization.
    pub fn format(self) -> u32 {
        match self {
            Quant::None => FORMAT_VERSION,
            _ => FORMAT_QUANTIZED,
        }
    }
}

/// Element storage of the vector tuples; the discriminants are the meta page's byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ElemType {
    /// `vector`: float4 elements.
    F32 = 1,
    /// `halfvec`: IEEE half-precision elements.
    F16 = 2,
    /// `bit`: eight bits per byte as Postgres packs them; `dims` counts the bytes.
    Bit = 3,
    /// `sparsevec`: each vector tuple's body is `u32 nnz`, `nnz` i32 indices, `nnz` f32 values
    /// (`hnsw_core::sparse::SparseWord`s), so its length varies; `dims` is the type's.
    Sparse = 4,
}

impl ElemType {
    pub fn from_u8(v: u8) -> Option<ElemType> {
        match v {
            1 => Some(ElemType::F32),
            2 => Some(ElemType::F16),
            3 => Some(ElemType::Bit),
            4 => Some(ElemType::Sparse),
            _ => None,
        }
    }

    /// Bytes per element in a vector tuple.
    pub fn size(self) -> usize {
        match self {
            ElemType::F32 => 4,
            ElemType::F16 => 2,
            ElemType::Bit => 1,
            // A word of the stored form (the body's length is in its first word).
            ElemType::Sparse => 4,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Meta {
    pub version: u32,
    /// 0 until the first vector arrives in an index built without a typmod.
    pub dims: u32,
    pub m: u16,
    pub ef_construction: u16,
    pub metric: Metric,
    pub elem: ElemType,
    /// Highest level an element may get in this index.
    pub max_level: u8,
    /// Entry point: its vector and node tuples and its level; invalid refs when empty.
    pub entry_vector: ItemRef,
    pub entry_node: ItemRef,
    pub entry_level: u8,
    /// Last page known to have had room: where inserts try first.
    pub insert_page: u32,
    /// Filter columns (index key columns after the vector), and the size of their attribute
    /// records; the first and last attribute page (0 when there are none).
    pub filters: u8,
    pub attr_record: u16,
    pub attr_first: u32,
    pub attr_last: u32,
    /// How the walk sees vectors; with quantization, the first page of the trained parameters
    /// (0 until trained: an index built without rows is trained by its first insert) and the
    /// page where inserts put full-precision vectors.
    pub quant: Quant,
    pub params: u32,
    pub cold_page: u32,
    /// Once a quantized index trained on fewer than [`RETRAIN_AT`] vectors has been retrained:
    /// the first page of its first parameters, which codes of generation 0 were made with
    /// (`params` are then generation 1); 0 otherwise.
    pub params_first: u32,
    /// While a quantized index's parameters come from fewer than [`RETRAIN_AT`] vectors (an
    /// index built on a small or empty table): the rows it was trained on plus the inserts
    /// since; 0 once trained on enough (by a build, or by retraining).
    pub provisional: u32,
}

/// Rows after which a quantized index trained on fewer is retrained by an insert (see
/// `am::insert::retrain`).
pub const RETRAIN_AT: u32 = 1000;

/// The meta record as stored at PageGetContents of block 0 ("meta page" in the `storage`
/// layout table).
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct MetaData {
    magic: U32,
    version: U32,
    dims: U32,
    m: U16,
    ef_construction: U16,
    metric: u8,
    elem: u8,
    max_level: u8,
    entry_level: u8,
    entry_vector: DiskRef,
    entry_node: DiskRef,
    insert_page: U32,
    filters: u8,
    /// Zero (none) in format 2.
    quant: u8,
    attr_record: U16,
    attr_first: U32,
    attr_last: U32,
    /// Zero in format 2 (meta pages of format 2 were written 48 bytes long on zeroed pages).
    params: U32,
    cold_page: U32,
    /// Zero in meta records written before retraining existed (56 bytes long).
    params_first: U32,
    provisional: U32,
}

const LEN: usize = core::mem::size_of::<MetaData>();
const _: () = assert!(LEN == 64);
/// Length of the meta record of format 2 indexes written before quantization existed.
const LEN_V2: usize = 48;

/// The meta record of a meta page, the fields a shorter (older) record lacks as zeros.
fn record(page: crate::storage::page::Page<'_>) -> [u8; LEN] {
    let n = page.contents_len().clamp(LEN_V2, LEN);
    let mut b = [0u8; LEN];
    b[..n].copy_from_slice(page.contents(n));
    b
}

impl Meta {
    pub fn has_entry(&self) -> bool {
        self.entry_node.is_valid()
    }

    fn encode(&self) -> MetaData {
        MetaData {
            magic: MAGIC.into(),
            version: self.version.into(),
            dims: self.dims.into(),
            m: self.m.into(),
            ef_construction: self.ef_construction.into(),
            metric: self.metric as u8,
            elem: self.elem as u8,
            max_level: self.max_level,
            entry_level: self.entry_level,
            entry_vector: self.entry_vector.into(),
            entry_node: self.entry_node.into(),
            insert_page: self.insert_page.into(),
            filters: self.filters,
            quant: self.quant as u8,
            attr_record: self.attr_record.into(),
            attr_first: self.attr_first.into(),
            attr_last: self.attr_last.into(),
            params: self.params.into(),
            cold_page: self.cold_page.into(),
            params_first: self.params_first.into(),
            provisional: self.provisional.into(),
        }
    }

    fn decode(b: &[u8]) -> Meta {
        let Ok(d) = MetaData::ref_from_bytes(b) else {
            raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, "hnsw index meta page is too short");
        };
        if d.magic.get() != MAGIC {
            raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, "hnsw index meta page has a bad magic number");
        }
        let version = d.version.get();
        let quant = Quant::from_u8(d.quant).filter(|q| q.format() == version);
        if version != FORMAT_VERSION && version != FORMAT_QUANTIZED {
            raise(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("hnsw index format version {version} is not supported by this build (expected {FORMAT_VERSION}); REINDEX it"),
            );
        }
        let Some(metric) = Metric::from_u8(d.metric) else {
            raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index meta page names an unknown metric ({})", d.metric));
        };
        let Some(elem) = ElemType::from_u8(d.elem) else {
            raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index meta page names an unknown element type ({})", d.elem));
        };
        let Some(quant) = quant else {
            raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index meta page names an unknown quantization ({})", d.quant));
        };
        Meta {
            version,
            dims: d.dims.get(),
            m: d.m.get(),
            ef_construction: d.ef_construction.get(),
            metric,
            elem,
            max_level: d.max_level,
            entry_level: d.entry_level,
            entry_vector: d.entry_vector.get(),
            entry_node: d.entry_node.get(),
            insert_page: d.insert_page.get(),
            filters: d.filters,
            attr_record: d.attr_record.get(),
            attr_first: d.attr_first.get(),
            attr_last: d.attr_last.get(),
            quant,
            params: d.params.get(),
            cold_page: d.cold_page.get(),
            params_first: d.params_first.get(),
            provisional: d.provisional.get(),
        }
    }

    /// Read the meta page under a share lock.
    pub fn read(rel: pg_sys::Relation) -> Meta {
        let buf = Buffer::read(rel, META_BLOCK, Lock::Share);
        let page = buf.page();
        page.expect_kind(PAGE_META);
        Meta::decode(&record(page))
    }

    /// Format `buf` (exclusively locked, new) as the meta page.
    pub fn init_page(&self, rel: pg_sys::Relation, buf: &Buffer, logging: Logging) {
        Wal::edit(rel, buf, logging, true, |page| {
            page.init(PAGE_META);
            page.contents_mut(LEN).copy_from_slice(self.encode().as_bytes());
        });
    }

    /// Re-read under an exclusive lock, let `change` edit it, and write it back if it says so.
    pub fn update(rel: pg_sys::Relation, logging: Logging, change: impl FnOnce(&mut Meta) -> bool) -> Meta {
        let buf = Buffer::read(rel, META_BLOCK, Lock::Exclusive);
        buf.page().expect_kind(PAGE_META);
        let mut meta = Meta::decode(&record(buf.page()));
        if change(&mut meta) {
            Wal::edit(rel, &buf, logging, false, |page| page.contents_mut(LEN).copy_from_slice(meta.encode().as_bytes()));
        }
        meta
    }
}
