//! SQL functions of the `halfvec` type (IEEE half elements). Arithmetic happens in float4 and is
//! rounded back, with "out of range" errors where a result does not fit a half.

use core::ffi::CStr;

use pgrx::datum::Internal;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::raw::{BitOut, ByteaOut, CStringArrayArg, CStringOut, Float4ArrayArg, Float8ArrayArg, Int4ArrayArg, NumericArrayArg};
use super::{arrays, check_expected_dim, io, ops, HalfvecArg, HalfvecOut, HalfvecSame, VectorOut};

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_in(input: &CStr, _oid: pg_sys::Oid, typmod: i32) -> HalfvecOut {
    io::text_in(input, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_out(v: HalfvecArg) -> CStringOut {
    io::text_out(&v)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_typmod_in(mods: CStringArrayArg) -> i32 {
    io::typmod_in::<half::f16>(mods)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_recv(buf: Internal, _oid: pg_sys::Oid, typmod: i32) -> HalfvecOut {
    io::recv(buf, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_send(v: HalfvecArg) -> ByteaOut {
    io::send(&v)
}

/// Typmod coercion: `halfvec(n)` columns and `::halfvec(n)` casts.
#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec(v: HalfvecArg, typmod: i32, _explicit: bool) -> HalfvecSame {
    check_expected_dim(typmod, v.dim());
    HalfvecSame(v.datum())
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_halfvec")]
fn array_int4_to_halfvec(a: Int4ArrayArg, typmod: i32, _explicit: bool) -> HalfvecOut {
    arrays::array_to_vec(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_halfvec")]
fn array_float4_to_halfvec(a: Float4ArrayArg, typmod: i32, _explicit: bool) -> HalfvecOut {
    arrays::array_to_vec(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_halfvec")]
fn array_float8_to_halfvec(a: Float8ArrayArg, typmod: i32, _explicit: bool) -> HalfvecOut {
    arrays::array_to_vec(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_halfvec")]
fn array_numeric_to_halfvec(a: NumericArrayArg, typmod: i32, _explicit: bool) -> HalfvecOut {
    arrays::array_to_vec(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_to_float4(v: HalfvecArg, _typmod: i32, _explicit: bool) -> Vec<f32> {
    arrays::vec_to_float4_array(&v)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_to_vector(v: HalfvecArg, typmod: i32, _explicit: bool) -> VectorOut {
    ops::convert(&v, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "l2_distance")]
fn halfvec_l2_distance(a: HalfvecArg, b: HalfvecArg) -> f64 {
    ops::l2_distance(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_l2_squared_distance(a: HalfvecArg, b: HalfvecArg) -> f64 {
    ops::l2_squared_distance(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe, name = "inner_product")]
fn halfvec_inner_product(a: HalfvecArg, b: HalfvecArg) -> f64 {
    ops::inner_product(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_negative_inner_product(a: HalfvecArg, b: HalfvecArg) -> f64 {
    ops::negative_inner_product(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_spherical_distance(a: HalfvecArg, b: HalfvecArg) -> f64 {
    ops::spherical_distance(&a, &b)
}

/// pgvector's halfvec aggregates combine with this name; it is vector_combine (same states,
/// same messages, as in pgvector, where both are the one C function).
#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_combine(a: Float8ArrayArg, b: Float8ArrayArg) -> Vec<f64> {
    ops::combine(a.float8_state("vector_combine"), b.float8_state("vector_combine"))
}

#[pg_extern(immutable, strict, parallel_safe, name = "cosine_distance")]
fn halfvec_cosine_distance(a: HalfvecArg, b: HalfvecArg) -> f64 {
    ops::cosine_distance(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe, name = "l1_distance")]
fn halfvec_l1_distance(a: HalfvecArg, b: HalfvecArg) -> f64 {
    ops::l1_distance(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe, name = "vector_dims")]
fn halfvec_vector_dims(v: HalfvecArg) -> i32 {
    v.dim() as i32
}

#[pg_extern(immutable, strict, parallel_safe, name = "l2_norm")]
fn halfvec_l2_norm(v: HalfvecArg) -> f64 {
    ops::norm(&v)
}

#[pg_extern(immutable, strict, parallel_safe, name = "l2_normalize")]
fn halfvec_l2_normalize(v: HalfvecArg) -> HalfvecOut {
    ops::l2_normalize(&v)
}

#[pg_extern(immutable, strict, parallel_safe, name = "binary_quantize")]
fn halfvec_binary_quantize(v: HalfvecArg) -> BitOut {
    ops::binary_quantize(&v)
}

#[pg_extern(immutable, strict, parallel_safe, name = "subvector")]
fn halfvec_subvector(v: HalfvecArg, start: i32, count: i32) -> HalfvecOut {
    ops::subvector(&v, start, count)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_add(a: HalfvecArg, b: HalfvecArg) -> HalfvecOut {
    ops::add(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_sub(a: HalfvecArg, b: HalfvecArg) -> HalfvecOut {
    ops::sub(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_mul(a: HalfvecArg, b: HalfvecArg) -> HalfvecOut {
    ops::mul(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_concat(a: HalfvecArg, b: HalfvecArg) -> HalfvecOut {
    ops::concat(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_cmp(a: HalfvecArg, b: HalfvecArg) -> i32 {
    ops::cmp(&a, &b) as i32
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_lt(a: HalfvecArg, b: HalfvecArg) -> bool {
    ops::cmp(&a, &b).is_lt()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_le(a: HalfvecArg, b: HalfvecArg) -> bool {
    ops::cmp(&a, &b).is_le()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_eq(a: HalfvecArg, b: HalfvecArg) -> bool {
    ops::cmp(&a, &b).is_eq()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_ne(a: HalfvecArg, b: HalfvecArg) -> bool {
    ops::cmp(&a, &b).is_ne()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_ge(a: HalfvecArg, b: HalfvecArg) -> bool {
    ops::cmp(&a, &b).is_ge()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_gt(a: HalfvecArg, b: HalfvecArg) -> bool {
    ops::cmp(&a, &b).is_gt()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_accum(state_in: Float8ArrayArg, v: HalfvecArg) -> Vec<f64> {
    ops::accum(state_in.float8_state("halfvec_accum"), &v)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_avg(state_in: Float8ArrayArg) -> Option<HalfvecOut> {
    ops::avg(state_in.float8_state("halfvec_avg"))
}
