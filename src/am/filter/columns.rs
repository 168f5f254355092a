//! The filter columns of an index, and a row's filter values encoded as its payload and the
//! condensed columns of its attribute record.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::codec::{content, flat_bytes, hash_bytes, int_value, payload_values, signature, Value, TAG_BYTES, TAG_INT, TAG_NULL};
use super::MAX_FILTERS;
use crate::types::raise;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// int2, int4, int8, bool, date, timestamptz: compared as i64.
    Int,
    /// text (by hash), uuid (by hash).
    Hashed,
    /// int4[], int8[], text[] (by signature).
    Array,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub typid: pg_sys::Oid,
    pub kind: ColumnKind,
}

/// The filter columns of an index, in key order. Plain data, so it can live in the relcache
/// entry next to the index's [`crate::am::opclass::Kind`].
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    n: u8,
    cols: [Column; MAX_FILTERS],
}

fn type_name(oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be looks the OID up in the catalog and returns a palloc'd name.
    unsafe { core::ffi::CStr::from_ptr(pg_sys::format_type_be(oid)) }.to_string_lossy().into_owned()
}

impl Columns {
    /// Read and check the key columns after the first.
    pub(crate) fn of(index: pg_sys::Relation) -> Columns {
        // SAFETY: an open index; rd_att and rd_index describe its columns.
        let (natts, attrs) = unsafe {
            let desc = (*index).rd_att;
            let n = (*(*index).rd_index).indnkeyatts as usize;
            (n, (*desc).attrs.as_slice(n))
        };
        if natts - 1 > MAX_FILTERS {
            raise(
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("an hnsw index can have at most {MAX_FILTERS} filter columns after the vector"),
            );
        }
        let mut c = Columns { n: (natts - 1) as u8, cols: [Column { typid: pg_sys::InvalidOid, kind: ColumnKind::Int }; MAX_FILTERS] };
        for (i, a) in attrs[1..natts].iter().enumerate() {
            let kind = match a.atttypid {
                pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID | pg_sys::BOOLOID | pg_sys::DATEOID | pg_sys::TIMESTAMPTZOID => {
                    ColumnKind::Int
                }
                pg_sys::TEXTOID | pg_sys::UUIDOID => ColumnKind::Hashed,
                pg_sys::INT4ARRAYOID | pg_sys::INT8ARRAYOID | pg_sys::TEXTARRAYOID => ColumnKind::Array,
                other => raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("hnsw filter columns cannot be of type {}", type_name(other)),
                ),
            };
            c.cols[i] = Column { typid: a.atttypid, kind };
        }
        c
    }

    pub fn as_slice(&self) -> &[Column] {
        &self.cols[..self.n as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn len(&self) -> usize {
        self.n as usize
    }

    /// Bytes of an attribute record: flags, NULL bitmap, vector ref, 8 bytes per column.
    pub fn record_size(&self) -> usize {
        crate::storage::attr::ATTR_HEADER + 8 * self.len()
    }

    /// Encode one row's filter values (`values`/`nulls` of the columns after the vector) into
    /// its payload and the column part of its attribute record (`slots`, NULL bitmap).
    pub fn encode(&self, values: &[pg_sys::Datum], nulls: &[bool], payload: &mut Vec<u8>, slots: &mut Vec<u64>) -> u8 {
        payload.clear();
        slots.clear();
        let mut null_mask = 0u8;
        for (i, col) in self.as_slice().iter().enumerate() {
            if nulls[i] {
                payload.push(TAG_NULL);
                slots.push(0);
                null_mask |= 1 << i;
                continue;
            }
            match col.kind {
                ColumnKind::Int => {
                    let v = int_value(col.typid, values[i]);
                    payload.push(TAG_INT);
                    payload.extend_from_slice(&v.to_le_bytes());
                    slots.push(v as u64);
                }
                ColumnKind::Hashed | ColumnKind::Array => {
                    let bytes = flat_bytes(col.typid, values[i]);
                    payload.push(TAG_BYTES);
                    payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    payload.extend_from_slice(bytes);
                    slots.push(if col.kind == ColumnKind::Array {
                        signature(col.typid, values[i])
                    } else {
                        hash_bytes(content(col.typid, bytes))
                    });
                }
            }
        }
        null_mask
    }
}

/// One row's filter values: exact (the payload stored after its vector) and condensed (the
/// columns of its attribute record).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attrs {
    pub payload: Vec<u8>,
    pub slots: Vec<u64>,
    pub nulls: u8,
}

impl Columns {
    /// Encode the filter columns of an index row (`values`/`isnull` of all key columns).
    ///
    /// # Safety
    /// `values` and `isnull` must have an entry per key column of the index.
    pub unsafe fn encode_row(&self, values: *const pg_sys::Datum, isnull: *const bool) -> Attrs {
        let mut a = Attrs::default();
        if self.is_empty() {
            return a;
        }
        // SAFETY: per the contract, entries 1..=n exist (entry 0 is the vector).
        let (v, n) =
            unsafe { (core::slice::from_raw_parts(values.add(1), self.len()), core::slice::from_raw_parts(isnull.add(1), self.len())) };
        a.nulls = self.encode(v, n, &mut a.payload, &mut a.slots);
        a
    }
}

impl Columns {
    /// Whether an attribute record's NULL bitmap and condensed values agree with the payload
    /// they were made from (integers exactly, hashed values by hash; array signatures are not
    /// recomputed). For `hnsw_index_check`.
    pub fn record_agrees(&self, payload: &[u8], nulls: u8, slots: &[u8]) -> bool {
        let Some(values) = payload_values(payload, self.len()) else { return false };
        if slots.len() != 8 * self.len() {
            return false;
        }
        self.as_slice().iter().zip(values).enumerate().all(|(i, (col, v))| {
            let slot = u64::from_le_bytes(slots[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            let null = nulls & (1 << i) != 0;
            match v {
                Value::Null => null,
                Value::Int(x) => !null && col.kind == ColumnKind::Int && slot == x as u64,
                Value::Bytes(b) => {
                    !null
                        && match col.kind {
                            ColumnKind::Hashed => slot == hash_bytes(content(col.typid, b)),
                            ColumnKind::Array => true,
                            ColumnKind::Int => false,
                        }
                }
            }
        })
    }
}
