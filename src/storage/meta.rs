//! The meta page (block 0): what every scan and insert needs before touching the graph.

use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::buffer::{Buffer, Lock, Logging, Wal};
use super::page::{ItemRef, PAGE_META};
use crate::types::raise;

pub const META_BLOCK: u32 = 0;
pub const MAGIC: u32 = 0x574E_5348; // "HSNW"
/// On-disk format version; see the module docs of `storage`.
pub const FORMAT_VERSION: u32 = 2;

/// Element storage of the vector tuples; the discriminants are the meta page's byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ElemType {
    /// `vector`: float4 elements.
    F32 = 1,
    /// `halfvec`: IEEE half-precision elements.
    F16 = 2,
}

impl ElemType {
    pub fn from_u8(v: u8) -> Option<ElemType> {
        match v {
            1 => Some(ElemType::F32),
            2 => Some(ElemType::F16),
            _ => None,
        }
    }

    /// Bytes per element in a vector tuple.
    pub fn size(self) -> usize {
        match self {
            ElemType::F32 => 4,
            ElemType::F16 => 2,
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
}

const LEN: usize = 48;

impl Meta {
    pub fn has_entry(&self) -> bool {
        self.entry_node.is_valid()
    }

    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.dims.to_le_bytes());
        b[12..14].copy_from_slice(&self.m.to_le_bytes());
        b[14..16].copy_from_slice(&self.ef_construction.to_le_bytes());
        b[16] = self.metric as u8;
        b[17] = self.elem as u8;
        b[18] = self.max_level;
        b[19] = self.entry_level;
        self.entry_vector.write(&mut b[20..26]);
        self.entry_node.write(&mut b[26..32]);
        b[32..36].copy_from_slice(&self.insert_page.to_le_bytes());
        b[36] = self.filters;
        b[38..40].copy_from_slice(&self.attr_record.to_le_bytes());
        b[40..44].copy_from_slice(&self.attr_first.to_le_bytes());
        b[44..48].copy_from_slice(&self.attr_last.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Meta {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        if u32_at(0) != MAGIC {
            raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, "hnsw index meta page has a bad magic number");
        }
        let version = u32_at(4);
        if version != FORMAT_VERSION {
            raise(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("hnsw index format version {version} is not supported by this build (expected {FORMAT_VERSION}); REINDEX it"),
            );
        }
        let Some(metric) = Metric::from_u8(b[16]) else {
            raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index meta page names an unknown metric ({})", b[16]));
        };
        let Some(elem) = ElemType::from_u8(b[17]) else {
            raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index meta page names an unknown element type ({})", b[17]));
        };
        Meta {
            version,
            dims: u32_at(8),
            m: u16_at(12),
            ef_construction: u16_at(14),
            metric,
            elem,
            max_level: b[18],
            entry_level: b[19],
            entry_vector: ItemRef::read(&b[20..26]),
            entry_node: ItemRef::read(&b[26..32]),
            insert_page: u32_at(32),
            filters: b[36],
            attr_record: u16_at(38),
            attr_first: u32_at(40),
            attr_last: u32_at(44),
        }
    }

    /// Read the meta page under a share lock.
    pub fn read(rel: pg_sys::Relation) -> Meta {
        let buf = Buffer::read(rel, META_BLOCK, Lock::Share);
        let page = buf.page();
        page.expect_kind(PAGE_META);
        Meta::decode(page.contents(LEN))
    }

    /// Format `buf` (exclusively locked, new) as the meta page.
    pub fn init_page(&self, rel: pg_sys::Relation, buf: &Buffer, logging: Logging) {
        Wal::edit(rel, buf, logging, true, |page| {
            page.init(PAGE_META);
            page.contents_mut(LEN).copy_from_slice(&self.encode());
        });
    }

    /// Re-read under an exclusive lock, let `change` edit it, and write it back if it says so.
    pub fn update(rel: pg_sys::Relation, logging: Logging, change: impl FnOnce(&mut Meta) -> bool) -> Meta {
        let buf = Buffer::read(rel, META_BLOCK, Lock::Exclusive);
        buf.page().expect_kind(PAGE_META);
        let mut meta = Meta::decode(buf.page().contents(LEN));
        if change(&mut meta) {
            Wal::edit(rel, &buf, logging, false, |page| page.contents_mut(LEN).copy_from_slice(&meta.encode()));
        }
        meta
    }
}
