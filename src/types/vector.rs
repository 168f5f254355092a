//! SQL functions of the `vector` type (float4 elements). Each is a thin wrapper that names a
//! generic implementation; `sql/finalize.sql` builds the type, casts, operators and aggregates
//! on top of them.

use core::ffi::CStr;

use pgrx::datum::Internal;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::raw::{BitOut, ByteaOut, CStringArrayArg, CStringOut, Float4ArrayArg, Float8ArrayArg, Int4ArrayArg, NumericArrayArg};
use super::{arrays, check_expected_dim, io, ops, HalfvecOut, VectorArg, VectorOut, VectorSame};

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_in(input: &CStr, _oid: pg_sys::Oid, typmod: i32) -> VectorOut {
    io::text_in(input, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_out(v: VectorArg) -> CStringOut {
    io::text_out(&v)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_typmod_in(mods: CStringArrayArg) -> i32 {
    io::typmod_in::<f32>(mods)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_recv(buf: Internal, _oid: pg_sys::Oid, typmod: i32) -> VectorOut {
    io::recv(buf, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_send(v: VectorArg) -> ByteaOut {
    io::send(&v)
}

/// Typmod coercion: `vector(n)` columns and `::vector(n)` casts.
#[pg_extern(immutable, strict, parallel_safe)]
fn vector(v: VectorArg, typmod: i32, _explicit: bool) -> VectorSame {
    check_expected_dim(typmod, v.dim());
    VectorSame(v.datum())
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_vector")]
fn array_int4_to_vector(a: Int4ArrayArg, typmod: i32, _explicit: bool) -> VectorOut {
    arrays::array_to_vec(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_vector")]
fn array_float4_to_vector(a: Float4ArrayArg, typmod: i32, _explicit: bool) -> VectorOut {
    arrays::array_to_vec(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_vector")]
fn array_float8_to_vector(a: Float8ArrayArg, typmod: i32, _explicit: bool) -> VectorOut {
    arrays::array_to_vec(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_vector")]
fn array_numeric_to_vector(a: NumericArrayArg, typmod: i32, _explicit: bool) -> VectorOut {
    arrays::array_to_vec(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_to_float4(v: VectorArg, _typmod: i32, _explicit: bool) -> Vec<f32> {
    arrays::vec_to_float4_array(&v)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_to_halfvec(v: VectorArg, typmod: i32, _explicit: bool) -> HalfvecOut {
    ops::convert(&v, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "l2_distance")]
fn vector_l2_distance(a: VectorArg, b: VectorArg) -> f64 {
    ops::l2_distance(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_l2_squared_distance(a: VectorArg, b: VectorArg) -> f64 {
    ops::l2_squared_distance(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe, name = "inner_product")]
fn vector_inner_product(a: VectorArg, b: VectorArg) -> f64 {
    ops::inner_product(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_negative_inner_product(a: VectorArg, b: VectorArg) -> f64 {
    ops::negative_inner_product(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_spherical_distance(a: VectorArg, b: VectorArg) -> f64 {
    ops::spherical_distance(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe, name = "cosine_distance")]
fn vector_cosine_distance(a: VectorArg, b: VectorArg) -> f64 {
    ops::cosine_distance(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe, name = "l1_distance")]
fn vector_l1_distance(a: VectorArg, b: VectorArg) -> f64 {
    ops::l1_distance(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_dims(v: VectorArg) -> i32 {
    v.dim() as i32
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_norm(v: VectorArg) -> f64 {
    ops::norm(&v)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn l2_normalize(v: VectorArg) -> VectorOut {
    ops::l2_normalize(&v)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn binary_quantize(v: VectorArg) -> BitOut {
    ops::binary_quantize(&v)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn subvector(v: VectorArg, start: i32, count: i32) -> VectorOut {
    ops::subvector(&v, start, count)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_add(a: VectorArg, b: VectorArg) -> VectorOut {
    ops::add(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_sub(a: VectorArg, b: VectorArg) -> VectorOut {
    ops::sub(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_mul(a: VectorArg, b: VectorArg) -> VectorOut {
    ops::mul(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_concat(a: VectorArg, b: VectorArg) -> VectorOut {
    ops::concat(&a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_cmp(a: VectorArg, b: VectorArg) -> i32 {
    ops::cmp(&a, &b) as i32
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_lt(a: VectorArg, b: VectorArg) -> bool {
    ops::cmp(&a, &b).is_lt()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_le(a: VectorArg, b: VectorArg) -> bool {
    ops::cmp(&a, &b).is_le()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_eq(a: VectorArg, b: VectorArg) -> bool {
    ops::cmp(&a, &b).is_eq()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_ne(a: VectorArg, b: VectorArg) -> bool {
    ops::cmp(&a, &b).is_ne()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_ge(a: VectorArg, b: VectorArg) -> bool {
    ops::cmp(&a, &b).is_ge()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_gt(a: VectorArg, b: VectorArg) -> bool {
    ops::cmp(&a, &b).is_gt()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_accum(state_in: Float8ArrayArg, v: VectorArg) -> Vec<f64> {
    ops::accum(state_in.float8_state("vector_accum"), &v)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_combine(a: Float8ArrayArg, b: Float8ArrayArg) -> Vec<f64> {
    ops::combine(a.float8_state("vector_combine"), b.float8_state("vector_combine"))
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_avg(state_in: Float8ArrayArg) -> Option<VectorOut> {
    ops::avg(state_in.float8_state("vector_avg"))
}
