//! The stored forms of a filter value: the tagged entries of a payload, and the condensed
//! slot values (integers as themselves, hashes, array signatures) both sides must compute alike.

use pgrx::pg_sys;

pub(super) const TAG_NULL: u8 = 0;
pub(super) const TAG_INT: u8 = 1;
pub(super) const TAG_BYTES: u8 = 2;

/// A filter value as an i64 (order-preserving for every Int type).
pub(super) fn int_value(typid: pg_sys::Oid, d: pg_sys::Datum) -> i64 {
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
pub(super) fn flat_bytes<'a>(typid: pg_sys::Oid, d: pg_sys::Datum) -> &'a [u8] {
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
pub(super) fn content(typid: pg_sys::Oid, bytes: &[u8]) -> &[u8] {
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
pub(super) fn element_hashes(typid: pg_sys::Oid, d: pg_sys::Datum) -> Vec<u64> {
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

pub(super) fn signature(typid: pg_sys::Oid, d: pg_sys::Datum) -> u64 {
    element_hashes(typid, d).into_iter().fold(0, |s, h| s | element_bit(h))
}

/// One decoded filter value of a payload.
pub(super) enum Value<'a> {
    Null,
    Int(i64),
    Bytes(&'a [u8]),
}

/// Walk a payload's values in column order.
pub(super) fn payload_values(payload: &[u8], n: usize) -> Option<Vec<Value<'_>>> {
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
