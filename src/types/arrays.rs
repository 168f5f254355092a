//! Casts between the vector types and SQL arrays (`integer[]`, `real[]`, `double precision[]`,
//! `numeric[]` in; `real[]` out).

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::raw::ArrayArg;
use super::{check_dim, check_element, check_expected_dim, raise, Element, VecArg, VecOut};

/// One array element as `f32`, by the array's element type, converted like pgvector does: a
/// float8 too large for float4 becomes infinite (and is then rejected by `check_element`).
pub(super) fn datum_to_f32(d: pg_sys::Datum, elemtype: pg_sys::Oid) -> f32 {
    match elemtype {
        pg_sys::INT4OID => d.value() as i32 as f32,
        pg_sys::FLOAT4OID => f32::from_bits(d.value() as u32),
        pg_sys::FLOAT8OID => f64::from_bits(d.value() as u64) as f32,
        pg_sys::NUMERICOID => {
            // numeric_float4 raises its own "out of range for type real" error.
            // SAFETY: `d` is a numeric datum taken from a numeric[] array.
            unsafe { pgrx::direct_function_call::<f32>(pg_sys::numeric_float4, &[Some(d)]) }.expect("numeric_float4 returned NULL")
        }
        other => raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("unsupported array element type {}", other.to_u32())),
    }
}

pub fn array_to_vec<E: Element, const K: u8>(arr: ArrayArg<K>, typmod: i32) -> VecOut<E> {
    if arr.ndim() > 1 {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "array must be 1-D");
    }
    // Checked on the array's header and NULL bitmap before any element is copied: a huge
    // array of the wrong size fails without first being deconstructed (pgvector's order).
    if arr.contains_nulls() {
        raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "array must not contain nulls");
    }
    let n = arr.nitems();
    check_dim::<E>(n as i64);
    check_expected_dim(typmod, n);
    let (elems, _) = arr.elements();
    let elemtype = arr.elemtype();
    // Convert every element before checking any, as pgvector does: an out-of-range element is
    // reported even when a NaN comes before it.
    let mut out = VecOut::<E>::from_f32_checked(elems.into_iter().map(|d| datum_to_f32(d, elemtype)));
    out.as_mut_slice().iter().for_each(|x| check_element(*x));
    out
}

pub fn vec_to_float4_array<E: Element>(v: &VecArg<'_, E>) -> Vec<f32> {
    let mut out = vec![0.0f32; v.dim()];
    E::slice_to_f32(v.as_slice(), &mut out);
    out
}
