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

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::types::raise;

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
/// entry next to the index's [`super::opclass::Kind`].
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

const TAG_NULL: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_BYTES: u8 = 2;

/// A filter value as an i64 (order-preserving for every Int type).
fn int_value(typid: pg_sys::Oid, d: pg_sys::Datum) -> i64 {
    let raw = d.value() as u64;
    match typid {
        pg_sys::INT2OID => raw as i16 as i64,
        pg_sys::INT4OID | pg_sys::DATEOID => raw as i32 as i64,
        pg_sys::BOOLOID => (raw & 0xff != 0) as i64,
        _ => raw as i64,
    }
}

/// The bytes of a pass-by-reference value: a uuid's 16, or a varlena detoasted (4-byte header
/// included), valid for the current memory context.
fn flat_bytes<'a>(typid: pg_sys::Oid, d: pg_sys::Datum) -> &'a [u8] {
    if typid == pg_sys::UUIDOID {
        // SAFETY: a uuid datum points at 16 bytes.
        return unsafe { core::slice::from_raw_parts(d.cast_mut_ptr::<u8>(), 16) };
    }
    // SAFETY: a varlena datum of the column's type; detoasting gives a 4-byte-header copy (or
    // the value itself) that lives as long as the current memory context.
    unsafe {
        let v = pg_sys::pg_detoast_datum(d.cast_mut_ptr());
        let len = (v.cast::<u32>().read() >> 2) as usize;
        core::slice::from_raw_parts(v.cast::<u8>(), len)
    }
}

/// What a hash covers: a text's characters (not its header), a uuid's bytes.
fn content(typid: pg_sys::Oid, bytes: &[u8]) -> &[u8] {
    if typid == pg_sys::TEXTOID {
        &bytes[4..]
    } else {
        bytes
    }
}

/// 64-bit hash, the same in every backend and build (stored on disk).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    hnsw_core::graph::build::splitmix64(h)
}

fn element_bit(h: u64) -> u64 {
    1u64 << (hnsw_core::graph::build::splitmix64(h) % 64)
}

/// Elements of an int4[], int8[] or text[] value as hashes (NULL elements left out).
fn element_hashes(typid: pg_sys::Oid, d: pg_sys::Datum) -> Vec<u64> {
    let (elem, len, byval, align) = match typid {
        pg_sys::INT4ARRAYOID => (pg_sys::INT4OID, 4, true, b'i'),
        pg_sys::INT8ARRAYOID => (pg_sys::INT8OID, 8, true, b'd'),
        _ => (pg_sys::TEXTOID, -1, false, b'i'),
    };
    let mut elems: *mut pg_sys::Datum = core::ptr::null_mut();
    let mut nulls: *mut bool = core::ptr::null_mut();
    let mut n = 0;
    // SAFETY: `d` is an array of `elem` (checked by the caller's column type); deconstruct_array
    // pallocs `n` datums and flags.
    unsafe {
        let arr = pg_sys::pg_detoast_datum(d.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        pg_sys::deconstruct_array(arr, elem, len, byval, align as core::ffi::c_char, &mut elems, &mut nulls, &mut n);
    }
    (0..n as usize)
        .filter_map(|i| {
            // SAFETY: i < n, as returned above.
            let (e, null) = unsafe { (*elems.add(i), *nulls.add(i)) };
            if null {
                return None;
            }
            Some(if elem == pg_sys::TEXTOID {
                hash_bytes(content(pg_sys::TEXTOID, flat_bytes(pg_sys::TEXTOID, e)))
            } else {
                hash_bytes(&int_value(elem, e).to_le_bytes())
            })
        })
        .collect()
}

fn signature(typid: pg_sys::Oid, d: pg_sys::Datum) -> u64 {
    element_hashes(typid, d).into_iter().fold(0, |s, h| s | element_bit(h))
}

/// One decoded filter value of a payload.
enum Value<'a> {
    Null,
    Int(i64),
    Bytes(&'a [u8]),
}

/// Walk a payload's values in column order.
fn payload_values(payload: &[u8], n: usize) -> Option<Vec<Value<'_>>> {
    let mut out = Vec::with_capacity(n);
    let mut p = 0;
    for _ in 0..n {
        match *payload.get(p)? {
            TAG_NULL => {
                out.push(Value::Null);
                p += 1;
            }
            TAG_INT => {
                out.push(Value::Int(i64::from_le_bytes(payload.get(p + 1..p + 9)?.try_into().ok()?)));
                p += 9;
            }
            TAG_BYTES => {
                let len = u32::from_le_bytes(payload.get(p + 1..p + 5)?.try_into().ok()?) as usize;
                out.push(Value::Bytes(payload.get(p + 5..p + 5 + len)?));
                p += 5 + len;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The argument of a scan key, condensed like the column values it is compared with.
#[derive(Debug)]
enum Arg {
    Int(i64),
    /// `= ANY(array)`, sorted.
    IntSet(Vec<i64>),
    /// `op ANY(array)` for the other comparisons.
    IntAny(Vec<i64>),
    Hash(u64),
    HashSet(Vec<u64>),
    Sig(u64),
    /// Only the operator's function can decide (e.g. `<` on text).
    Opaque,
}

struct Key {
    col: usize,
    strategy: u16,
    typid: pg_sys::Oid,
    arg: Arg,
    /// `col op ANY(array)`: the array's non-NULL elements (never empty: see
    /// [`Filter::compile`]), each compared with the operator's function.
    elements: Vec<pg_sys::Datum>,
    /// Whether `argument` is such an array (not a value of the operator's right-hand type).
    array: bool,
    func: pg_sys::FmgrInfo,
    collation: pg_sys::Oid,
    argument: pg_sys::Datum,
}

/// The scan keys of a scan, compiled. A scan with no keys matches everything.
pub struct Filter {
    keys: Vec<Key>,
    /// A key can never match (a NULL argument): the scan returns nothing.
    pub impossible: bool,
    columns: usize,
    /// Scratch for copying stored values to aligned memory before calling a function on them.
    scratch: Vec<u64>,
}

impl Filter {
    /// Compile the scan's keys (all on filter columns: the vector column takes none).
    ///
    /// # Safety
    /// `keys` must point at `nkeys` initialized scan keys of this index's filter columns.
    pub unsafe fn compile(columns: &Columns, keys: *const pg_sys::ScanKeyData, nkeys: usize) -> Filter {
        let mut f = Filter { keys: Vec::new(), impossible: false, columns: columns.len(), scratch: Vec::new() };
        for i in 0..nkeys {
            // SAFETY: per the contract, `i < nkeys` initialized keys.
            let k = unsafe { &*keys.add(i) };
            if k.sk_flags & pg_sys::SK_ISNULL as i32 != 0 {
                f.impossible = true;
                continue;
            }
            let col_no = k.sk_attno as usize;
            if col_no < 2 || col_no - 2 >= columns.len() {
                raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("hnsw: scan key on unexpected column {col_no}"));
            }
            let col = columns.as_slice()[col_no - 2];
            // Cross-type operators (int4 column, int8 constant) name the argument's type.
            let arg_type = if k.sk_subtype != pg_sys::InvalidOid { k.sk_subtype } else { col.typid };
            let array = k.sk_flags & pg_sys::SK_SEARCHARRAY as i32 != 0;
            let mut elements = Vec::new();
            let arg = if array {
                // `col op ANY(array)`: only `=` is condensed; other operators go to the function.
                let elemtype;
                (elements, elemtype) = array_elements(k.sk_argument);
                if elements.is_empty() {
                    // `op ANY('{}')` is false and `op ANY('{NULL}')` is NULL: no row matches.
                    // (Never let the array itself reach the scalar operator below.)
                    f.impossible = true;
                    continue;
                }
                match (col.kind, k.sk_strategy) {
                    (ColumnKind::Int, EQ) => {
                        let mut set: Vec<i64> = elements.iter().map(|&e| int_value(elemtype, e)).collect();
                        set.sort_unstable();
                        set.dedup();
                        Arg::IntSet(set)
                    }
                    (ColumnKind::Int, LT..=NE) => Arg::IntAny(elements.iter().map(|&e| int_value(elemtype, e)).collect()),
                    (ColumnKind::Hashed, EQ) if deterministic(k.sk_collation) => {
                        Arg::HashSet(elements.iter().map(|&e| hash_bytes(content(col.typid, flat_bytes(col.typid, e)))).collect())
                    }
                    _ => Arg::Opaque,
                }
            } else {
                match (col.kind, k.sk_strategy) {
                    (ColumnKind::Int, LT..=NE) => Arg::Int(int_value(arg_type, k.sk_argument)),
                    (ColumnKind::Hashed, EQ) if deterministic(k.sk_collation) => {
                        Arg::Hash(hash_bytes(content(col.typid, flat_bytes(col.typid, k.sk_argument))))
                    }
                    (ColumnKind::Array, OVERLAP | CONTAINS) => Arg::Sig(signature(col.typid, k.sk_argument)),
                    _ => Arg::Opaque,
                }
            };
            f.keys.push(Key {
                col: col_no - 2,
                strategy: k.sk_strategy,
                typid: col.typid,
                arg,
                elements,
                array,
                func: k.sk_func,
                collation: k.sk_collation,
                argument: k.sk_argument,
            });
        }
        f
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && !self.impossible
    }

    /// Whether the attribute record's condensed values may match: `false` is certain, `true`
    /// is certain only if [`Filter::exact_on_records`].
    pub fn record_may_match(&self, nulls: u8, slots: &[u8]) -> bool {
        if self.impossible {
            return false;
        }
        self.keys.iter().all(|k| {
            if nulls & (1 << k.col) != 0 {
                return false;
            }
            let v = u64::from_le_bytes(slots[k.col * 8..k.col * 8 + 8].try_into().expect("8 bytes"));
            match &k.arg {
                Arg::Int(a) => compare(k.strategy, v as i64, *a),
                Arg::IntSet(set) => set.binary_search(&(v as i64)).is_ok(),
                Arg::IntAny(set) => set.iter().any(|&a| compare(k.strategy, v as i64, a)),
                Arg::Hash(h) => k.strategy != EQ || v == *h,
                Arg::HashSet(set) => set.contains(&v),
                Arg::Sig(s) => match k.strategy {
                    OVERLAP => v & s != 0,
                    CONTAINS => v & s == *s,
                    _ => true,
                },
                Arg::Opaque => true,
            }
        })
    }

    /// The one `column = integer` condition of this filter, if that is all it is: the common
    /// case, which an exact scan tests on each of the index's records with a plain load and
    /// compare instead of [`Filter::record_may_match`]'s general loop.
    pub fn single_int_eq(&self) -> Option<(usize, u64)> {
        match self.keys.as_slice() {
            [k] if !self.impossible && k.strategy == EQ => match k.arg {
                Arg::Int(a) => Some((k.col, a as u64)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether [`Filter::record_may_match`] decides exactly (every key on integer-like columns).
    pub fn exact_on_records(&self) -> bool {
        self.keys.iter().all(|k| matches!(k.arg, Arg::Int(_) | Arg::IntSet(_) | Arg::IntAny(_)))
    }

    /// Whether an element with these filter values (its payload) matches every key.
    pub fn payload_matches(&mut self, payload: &[u8]) -> bool {
        if self.impossible {
            return false;
        }
        if self.keys.is_empty() {
            return true;
        }
        let Some(values) = payload_values(payload, self.columns) else { return false };
        let scratch = &mut self.scratch;
        self.keys.iter_mut().all(|k| match (&values[k.col], &k.arg) {
            (Value::Null, _) => false,
            (Value::Int(v), Arg::Int(a)) => compare(k.strategy, *v, *a),
            (Value::Int(v), Arg::IntSet(set)) => set.binary_search(v).is_ok(),
            (Value::Int(v), Arg::IntAny(set)) => set.iter().any(|&a| compare(k.strategy, *v, a)),
            (Value::Bytes(b), _) => call_on_bytes(k, b, scratch),
            (Value::Int(_), _) => false,
        })
    }
}

/// Whether equal strings under `collation` are equal bytes (so hashes decide equality).
fn deterministic(collation: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup of a valid collation OID (C/POSIX/default are deterministic).
    collation == pg_sys::InvalidOid || unsafe { pg_sys::get_collation_isdeterministic(collation) }
}

fn compare(strategy: u16, v: i64, a: i64) -> bool {
    match strategy {
        LT => v < a,
        LE => v <= a,
        EQ => v == a,
        GE => v >= a,
        GT => v > a,
        NE => v != a,
        _ => false,
    }
}

/// Decide a key on a stored pass-by-reference value with the operator's function.
fn call_on_bytes(k: &mut Key, bytes: &[u8], scratch: &mut Vec<u64>) -> bool {
    // Stored values are unaligned inside the page; the functions expect aligned varlenas.
    scratch.clear();
    scratch.resize(bytes.len().div_ceil(8), 0);
    // SAFETY: `scratch` has room for `bytes` (rounded up to whole u64s).
    let copy = unsafe {
        let p = scratch.as_mut_ptr().cast::<u8>();
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        p
    };
    let stored = pg_sys::Datum::from(copy);
    let call = |func: &mut pg_sys::FmgrInfo, collation, arg| {
        // SAFETY: `func` is the operator's function from the scan key, called with a value of
        // the column's type and the key's argument, as the operator is declared.
        unsafe { pg_sys::FunctionCall2Coll(func, collation, stored, arg) }.value() != 0
    };
    if !k.array {
        let hash_ok = match &k.arg {
            Arg::Hash(h) => hash_bytes(content(k.typid, bytes)) == *h,
            _ => true,
        };
        hash_ok && call(&mut k.func, k.collation, k.argument)
    } else {
        let elements = core::mem::take(&mut k.elements);
        let hit = elements.iter().any(|&e| call(&mut k.func, k.collation, e));
        k.elements = elements;
        hit
    }
}

/// The elements of an array argument (`= ANY(...)`), NULLs left out, and their type.
fn array_elements(d: pg_sys::Datum) -> (Vec<pg_sys::Datum>, pg_sys::Oid) {
    let mut elems: *mut pg_sys::Datum = core::ptr::null_mut();
    let mut nulls: *mut bool = core::ptr::null_mut();
    let mut n = 0;
    let elemtype;
    // SAFETY: a SEARCHARRAY key's argument is an array of the operator's right-hand type;
    // deconstruct_array reads it with that type's layout and pallocs `n` datums and flags.
    unsafe {
        let arr = pg_sys::pg_detoast_datum(d.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        elemtype = (*arr).elemtype;
        let (mut len, mut byval, mut align) = (0i16, false, 0 as core::ffi::c_char);
        pg_sys::get_typlenbyvalalign(elemtype, &mut len, &mut byval, &mut align);
        pg_sys::deconstruct_array(arr, elemtype, len as i32, byval, align, &mut elems, &mut nulls, &mut n);
    }
    let values = (0..n as usize)
        // SAFETY: i < n, as returned above.
        .filter_map(|i| unsafe { (!*nulls.add(i)).then(|| *elems.add(i)) })
        .collect();
    (values, elemtype)
}

#[cfg(test)]
mod tests {
    use super::{compare, hash_bytes, EQ, GE, GT, LE, LT, NE};

    /// Hashes are stored on disk (attribute records): they must never change between builds.
    #[test]
    fn stored_hashes_are_stable() {
        assert_eq!(hash_bytes(b""), hash_bytes(b""));
        assert_ne!(hash_bytes(b"tag1"), hash_bytes(b"tag2"));
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
        assert_eq!(hash_bytes(b"tag1"), 0x48aa_9867_5d64_61dd_u64, "{:#x}", hash_bytes(b"tag1"));
    }

    #[test]
    fn comparisons_follow_the_strategy_numbers() {
        let all = [
            (LT, [true, false, false]),
            (LE, [true, true, false]),
            (EQ, [false, true, false]),
            (GE, [false, true, true]),
            (GT, [false, false, true]),
            (NE, [true, false, true]),
        ];
        for (strategy, want) in all {
            assert_eq!([compare(strategy, 1, 2), compare(strategy, 2, 2), compare(strategy, 3, 2)], want, "strategy {strategy}");
        }
    }
}
