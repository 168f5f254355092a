//! A scan's keys on filter columns, compiled once into a [`Filter`] that attribute records
//! (condensed, may only rule out) and payloads (exact, with the operator's function) are tested
//! against.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::codec::{content, flat_bytes, hash_bytes, int_value, payload_values, signature, Value};
use super::columns::{ColumnKind, Columns};
use super::{CONTAINS, EQ, GE, GT, LE, LT, NE, OVERLAP};
use crate::types::raise;

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
