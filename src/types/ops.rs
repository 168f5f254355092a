//! Operators and functions shared by `vector` and `halfvec`. Distances go through the SIMD
//! kernels of `hnsw_core::distance`; results are float8 as in pgvector.

use core::cmp::Ordering;

use half::f16;
use hnsw_core::distance::kernels;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::raw::BitOut;
use super::{check_dim, check_element, check_expected_dim, check_same_dims, raise, Element, VecArg, VecOut, MAX_DIM};

/// The distance kernels for one element type.
pub trait Distances: Element {
    fn l2_squared(a: &[Self], b: &[Self]) -> f32;
    fn dot(a: &[Self], b: &[Self]) -> f32;
    fn l1(a: &[Self], b: &[Self]) -> f32;
    fn cosine_parts(a: &[Self], b: &[Self]) -> (f32, f32, f32);
}

impl Distances for f32 {
    fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        (kernels().l2_squared)(a, b)
    }
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        (kernels().dot)(a, b)
    }
    fn l1(a: &[f32], b: &[f32]) -> f32 {
        (kernels().l1)(a, b)
    }
    fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        (kernels().cosine_parts)(a, b)
    }
}

impl Distances for f16 {
    fn l2_squared(a: &[f16], b: &[f16]) -> f32 {
        (kernels().l2_squared_f16)(a, b)
    }
    fn dot(a: &[f16], b: &[f16]) -> f32 {
        (kernels().dot_f16)(a, b)
    }
    fn l1(a: &[f16], b: &[f16]) -> f32 {
        (kernels().l1_f16)(a, b)
    }
    fn cosine_parts(a: &[f16], b: &[f16]) -> (f32, f32, f32) {
        (kernels().cosine_parts_f16)(a, b)
    }
}

fn pair<'a, E: Element>(a: &VecArg<'a, E>, b: &VecArg<'a, E>) -> (&'a [E], &'a [E]) {
    check_same_dims::<E>(a.dim(), b.dim());
    (a.as_slice(), b.as_slice())
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Block([u8; 64]);

/// A copy of a vector that starts on a 64-byte boundary: an index scan measures every candidate
/// against its query, so it keeps the query where the kernels' loads of it never straddle a
/// cache line. (The kernels sum in an order that depends only on the length, so an aligned and
/// an unaligned copy give the same distance to the last bit, as the SQL operators compute it.)
pub struct Aligned<E> {
    blocks: Vec<Block>,
    len: usize,
    _elem: core::marker::PhantomData<E>,
}

impl<E: Copy> Aligned<E> {
    pub fn new(v: &[E]) -> Self {
        let bytes = core::mem::size_of_val(v);
        let mut blocks = vec![Block([0; 64]); bytes.div_ceil(64)];
        // SAFETY: `blocks` has room for `bytes` bytes; E is a plain number type (f32 or f16).
        unsafe { core::ptr::copy_nonoverlapping(v.as_ptr() as *const u8, blocks.as_mut_ptr() as *mut u8, bytes) };
        Aligned { blocks, len: v.len(), _elem: core::marker::PhantomData }
    }

    pub fn as_slice(&self) -> &[E] {
        // SAFETY: `blocks` holds `len` elements copied in by `new`, and is aligned for E.
        unsafe { core::slice::from_raw_parts(self.blocks.as_ptr() as *const E, self.len) }
    }
}

pub fn l2_distance<E: Distances>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> f64 {
    let (a, b) = pair(a, b);
    (E::l2_squared(a, b) as f64).sqrt()
}

pub fn l2_squared_distance<E: Distances>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> f64 {
    let (a, b) = pair(a, b);
    E::l2_squared(a, b) as f64
}

pub fn inner_product<E: Distances>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> f64 {
    let (a, b) = pair(a, b);
    E::dot(a, b) as f64
}

pub fn negative_inner_product<E: Distances>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> f64 {
    -inner_product(a, b)
}

/// pgvector's `*_spherical_distance` (its ivfflat support function for normalized vectors):
/// acos of the inner product, clamped to [-1, 1], over pi.
pub fn spherical_distance<E: Distances>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> f64 {
    inner_product(a, b).clamp(-1.0, 1.0).acos() / core::f64::consts::PI
}

/// 1 - cos(a, b); NaN when either vector is zero (no direction), as in pgvector.
pub fn cosine_distance<E: Distances>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> f64 {
    let (a, b) = pair(a, b);
    let (d32, na32, nb32) = E::cosine_parts(a, b);
    let (mut dot, mut na, mut nb) = (d32 as f64, na32 as f64, nb32 as f64);
    if !(na32.is_normal() && nb32.is_normal() && d32.is_finite()) {
        // A square left the f32 range (components above ~1e19 or below ~1e-19): the f32 sums
        // (pgvector's arithmetic) would make such a vector look zero or infinitely long. Sum
        // in f64 instead, as the index normalizes its vectors; ordinary vectors keep
        // pgvector's exact results.
        (dot, na, nb) = (0.0, 0.0, 0.0);
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (x.to_f32() as f64, y.to_f32() as f64);
            dot += x * y;
            na += x * x;
            nb += y * y;
        }
    }
    // sqrt(na * nb) rather than sqrt(na) * sqrt(nb): one rounding, as pgvector does.
    let similarity = (dot / (na * nb).sqrt()).clamp(-1.0, 1.0);
    1.0 - similarity
}

pub fn l1_distance<E: Distances>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> f64 {
    let (a, b) = pair(a, b);
    E::l1(a, b) as f64
}

/// Euclidean norm, accumulated in float8 like pgvector's `vector_norm`.
pub fn norm<E: Element>(a: &VecArg<'_, E>) -> f64 {
    a.as_slice().iter().map(|x| x.to_f32() as f64 * x.to_f32() as f64).sum::<f64>().sqrt()
}

/// Unit-length copy; a zero vector gives a zero vector (it has no direction to keep), with
/// every element +0 as in pgvector.
pub fn l2_normalize<E: Element>(a: &VecArg<'_, E>) -> VecOut<E> {
    let n = norm(a);
    let xs = a.as_slice();
    if n == 0.0 {
        return VecOut::zeroed(xs.len());
    }
    VecOut::from_f32_checked(xs.iter().map(|x| (x.to_f32() as f64 / n) as f32))
}

/// `f` applied pairwise in f32 and rounded to `E`, then `check` on each (result, a, b) in order.
fn elementwise<E: Element>(a: &VecArg<'_, E>, b: &VecArg<'_, E>, f: impl Fn(f32, f32) -> f32, check: impl Fn(E, E, E)) -> VecOut<E> {
    let (xa, xb) = pair(a, b);
    let mut out = VecOut::<E>::zeroed(xa.len());
    for ((dst, x), y) in out.as_mut_slice().iter_mut().zip(xa).zip(xb) {
        *dst = E::from_f32(f(x.to_f32(), y.to_f32()));
        check(*dst, *x, *y);
    }
    out
}

fn check_overflow<E: Element>(r: E) {
    if r.is_infinite() {
        raise(PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "value out of range: overflow");
    }
}

pub fn add<E: Element>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> VecOut<E> {
    elementwise(a, b, |x, y| x + y, |r, _, _| check_overflow(r))
}

pub fn sub<E: Element>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> VecOut<E> {
    elementwise(a, b, |x, y| x - y, |r, _, _| check_overflow(r))
}

pub fn mul<E: Element>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> VecOut<E> {
    // Overflow and underflow are checked element by element, so the first bad element decides
    // which error is reported, as in pgvector.
    elementwise(
        a,
        b,
        |x, y| x * y,
        |r, x, y| {
            check_overflow(r);
            // A product of two non-zero numbers that rounds to zero lost all its digits.
            if r.to_f32() == 0.0 && x.to_f32() != 0.0 && y.to_f32() != 0.0 {
                raise(PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "value out of range: underflow");
            }
        },
    )
}

pub fn concat<E: Element>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> VecOut<E> {
    let dim = a.dim() + b.dim();
    if dim > MAX_DIM {
        raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("{} cannot have more than {MAX_DIM} dimensions", E::TYPE_NAME));
    }
    let mut out = VecOut::<E>::zeroed(dim);
    let dst = out.as_mut_slice();
    dst[..a.dim()].copy_from_slice(a.as_slice());
    dst[a.dim()..].copy_from_slice(b.as_slice());
    out
}

/// Elements `start..start+count` (1-based, clipped like `substring`).
pub fn subvector<E: Element>(a: &VecArg<'_, E>, start: i32, count: i32) -> VecOut<E> {
    let dim = a.dim() as i64;
    let (mut start, count) = (start as i64, count as i64);
    if count < 1 {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("{} must have at least 1 dimension", E::TYPE_NAME));
    }
    let end = if start > dim - count { dim + 1 } else { start + count };
    if start < 1 {
        start = 1;
    } else if start > dim {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("{} must have at least 1 dimension", E::TYPE_NAME));
    }
    check_dim::<E>(end - start);
    VecOut::from_slice(&a.as_slice()[(start - 1) as usize..(end - 1) as usize])
}

/// `bit(dim)` with bit i set where element i is positive.
pub fn binary_quantize<E: Element>(a: &VecArg<'_, E>) -> BitOut {
    let xs = a.as_slice();
    let nbytes = xs.len().div_ceil(8);
    let size = pg_sys::VARHDRSZ + 4 + nbytes;
    // SAFETY: palloc0 returns `size` zeroed bytes or raises an ERROR.
    let raw = unsafe { pg_sys::palloc0(size) }.cast::<u8>();
    // SAFETY: the VarBit layout is a 4-byte varlena header, int32 bit length, then the bytes,
    // all inside the `size` bytes just allocated.
    unsafe {
        raw.cast::<u32>().write((size as u32) << 2);
        raw.add(4).cast::<i32>().write_unaligned(xs.len() as i32);
        let bits = core::slice::from_raw_parts_mut(raw.add(8), nbytes);
        for (i, x) in xs.iter().enumerate() {
            if x.to_f32() > 0.0 {
                bits[i / 8] |= 0x80 >> (i % 8);
            }
        }
    }
    BitOut(raw.cast())
}

/// Lexicographic by value, then by dimension, like Postgres arrays.
pub fn cmp<E: Element>(a: &VecArg<'_, E>, b: &VecArg<'_, E>) -> Ordering {
    for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
        match x.to_f32().partial_cmp(&y.to_f32()) {
            Some(Ordering::Equal) | None => {}
            Some(o) => return o,
        }
    }
    a.dim().cmp(&b.dim())
}

// Aggregates: the state is a float8[] of {count, sum_1, ..., sum_dim}, so partial states from
// parallel workers can be added by `vector_combine`.

// The state functions take states already checked by `ArrayArg::float8_state`: one
// dimension, at least one element, no NULLs.

pub fn accum<E: Element>(state: &[f64], v: &VecArg<'_, E>) -> Vec<f64> {
    let xs = v.as_slice();
    let n = state[0] + 1.0;
    // The initial state '{0}' has no sums yet; any other state fixes the dimensions.
    if state.len() == 1 {
        let mut out = Vec::with_capacity(xs.len() + 1);
        out.push(n);
        out.extend(xs.iter().map(|x| x.to_f32() as f64));
        return out;
    }
    check_expected_dim((state.len() - 1) as i32, xs.len());
    let mut out = Vec::with_capacity(state.len());
    out.push(n);
    for (s, x) in state[1..].iter().zip(xs) {
        let v = s + x.to_f32() as f64;
        if v.is_infinite() {
            raise(PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "value out of range: overflow");
        }
        out.push(v);
    }
    out
}

pub fn combine(a: &[f64], b: &[f64]) -> Vec<f64> {
    // One combine function serves both types, under the name vector_combine; like pgvector's,
    // it checks the dimensions of what it returns with vector's limits.
    if a[0] == 0.0 {
        // Two empty states (parallel workers that saw no rows) combine to an empty state;
        // pgvector raises here, so its avg() over no rows fails in a parallel plan.
        if b[0] != 0.0 {
            check_dim::<f32>(b.len() as i64 - 1);
        }
        return b.to_vec();
    }
    if b[0] == 0.0 {
        check_dim::<f32>(a.len() as i64 - 1);
        return a.to_vec();
    }
    check_dim::<f32>(a.len() as i64 - 1);
    check_expected_dim((a.len() - 1) as i32, b.len() - 1);
    let mut out = Vec::with_capacity(a.len());
    out.push(a[0] + b[0]);
    for (x, y) in a[1..].iter().zip(&b[1..]) {
        let v = x + y;
        if v.is_infinite() {
            raise(PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "value out of range: overflow");
        }
        out.push(v);
    }
    out
}

/// Mean of the accumulated vectors; NULL for no rows.
pub fn avg<E: Element>(state: &[f64]) -> Option<VecOut<E>> {
    let n = state[0];
    if n == 0.0 {
        return None;
    }
    check_dim::<E>(state.len() as i64 - 1);
    let mut out = VecOut::<E>::from_f32_checked(state[1..].iter().map(|s| (s / n) as f32));
    // Means of finite values are finite, but check like every other constructor does.
    out.as_mut_slice().iter().for_each(|x| check_element(*x));
    Some(out)
}

/// Convert between element types (vector <-> halfvec casts).
pub fn convert<A: Element, B: Element>(a: &VecArg<'_, A>, typmod: i32) -> VecOut<B> {
    super::check_expected_dim(typmod, a.dim());
    VecOut::<B>::from_f32_checked(a.as_slice().iter().map(|x| x.to_f32()))
}
