//! SQL types: `vector` (float4 elements) and `halfvec` (IEEE half elements).
//!
//! Both share one varlena layout, byte-compatible with pgvector's, so the binary send/recv format
//! and the on-disk format are what pgvector clients and dumps expect:
//!
//! ```text
//! offset 0: int32 varlena header (total size, set with SET_VARSIZE)
//! offset 4: int16 dim      number of elements, 1..=16000
//! offset 6: int16 unused   always 0
//! offset 8: element[dim]   float4 (vector) or half (halfvec), native byte order
//! ```
//!
//! The code is generic over [`Element`]; `vector.rs` and `halfvec.rs` only hold the thin
//! `#[pg_extern]` wrappers that give each SQL function its name and signature.

pub mod arrays;
pub mod bit;
pub mod halfvec;
pub mod io;
pub mod ops;
pub mod raw;
pub mod sparsevec;
pub mod vector;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

use core::marker::PhantomData;
use core::ptr::NonNull;

use half::f16;
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// Largest number of dimensions either type accepts (pgvector's limit).
pub const MAX_DIM: usize = 16000;

/// Bytes before the first element.
pub const HEADER_SIZE: usize = 8;

/// Raise an `ERROR` with the given SQLSTATE. Never returns.
#[track_caller]
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), "hnsw_ext").report(PgLogLevel::ERROR);
    unreachable!("ERROR returned")
}

/// Raise an `ERROR` with a DETAIL line.
#[track_caller]
pub fn raise_detail(code: PgSqlErrorCode, message: impl Into<String>, detail: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), "hnsw_ext").set_detail(detail.into()).report(PgLogLevel::ERROR);
    unreachable!("ERROR returned")
}

/// Raise an `ERROR` with a HINT line.
#[track_caller]
pub fn raise_hint(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), "hnsw_ext").set_hint(hint.into()).report(PgLogLevel::ERROR);
    unreachable!("ERROR returned")
}

/// The element type of a vector type: what differs between `vector` and `halfvec`.
pub trait Element: Copy + Default + PartialEq + 'static {
    /// SQL type name, used in error messages exactly as pgvector words them.
    const TYPE_NAME: &'static str;
    fn to_f32(self) -> f32;
    /// Round to this type. Finite input that does not fit comes back infinite, which callers
    /// turn into an "out of range" error.
    fn from_f32(v: f32) -> Self;
    fn is_nan(self) -> bool;
    fn is_infinite(self) -> bool;
    /// Convert a whole slice to `f32` (SIMD for `f16`).
    fn slice_to_f32(src: &[Self], dst: &mut [f32]);
}

impl Element for f32 {
    const TYPE_NAME: &'static str = "vector";
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    #[inline(always)]
    fn is_infinite(self) -> bool {
        f32::is_infinite(self)
    }
    fn slice_to_f32(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl Element for f16 {
    const TYPE_NAME: &'static str = "halfvec";
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f16::is_nan(self)
    }
    #[inline(always)]
    fn is_infinite(self) -> bool {
        f16::is_infinite(self)
    }
    fn slice_to_f32(src: &[Self], dst: &mut [f32]) {
        (hnsw_core::distance::kernels().f16_to_f32)(src, dst);
    }
}

/// `ERROR` unless `dim` is a legal number of dimensions.
pub fn check_dim<E: Element>(dim: i64) {
    if dim < 1 {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("{} must have at least 1 dimension", E::TYPE_NAME));
    }
    if dim > MAX_DIM as i64 {
        raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("{} cannot have more than {MAX_DIM} dimensions", E::TYPE_NAME));
    }
}

/// `ERROR` unless the typmod (declared dimensions, -1 when none) accepts `dim`.
pub fn check_expected_dim(typmod: i32, dim: usize) {
    if typmod != -1 && typmod as i64 != dim as i64 {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("expected {typmod} dimensions, not {dim}"));
    }
}

/// `ERROR` for NaN and infinities, which no distance can order.
pub fn check_element<E: Element>(v: E) {
    if v.is_nan() {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("NaN not allowed in {}", E::TYPE_NAME));
    }
    if v.is_infinite() {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("infinite value not allowed in {}", E::TYPE_NAME));
    }
}

/// `ERROR` unless both operands of a binary operator have the same dimensions.
pub fn check_same_dims<E: Element>(a: usize, b: usize) {
    if a != b {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("different {} dimensions {a} and {b}", E::TYPE_NAME));
    }
}

/// Round an `f32` to `E` like pgvector's `Float4ToHalf`: a finite value that does not fit is an
/// "out of range" error naming the value; NaN and infinities pass through for `check_element`.
pub fn element_from_f32<E: Element>(v: f32) -> E {
    let e = E::from_f32(v);
    if e.is_infinite() && !v.is_infinite() {
        raise(
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!("\"{}\" is out of range for type {}", io::shortest_decimal(v), E::TYPE_NAME),
        );
    }
    e
}

#[repr(C)]
struct Header {
    vl_len: u32,
    dim: i16,
    unused: i16,
}

/// A detoasted `vector`/`halfvec` argument, borrowed for the duration of the call.
pub struct VecArg<'a, E: Element> {
    ptr: NonNull<Header>,
    dim: usize,
    _marker: PhantomData<&'a [E]>,
}

impl<'a, E: Element> VecArg<'a, E> {
    /// # Safety
    /// `datum` must be a non-null datum of the SQL type that `E` stands for.
    pub unsafe fn from_datum_unchecked(datum: pg_sys::Datum) -> Self {
        // SAFETY: the caller promises a varlena of our type; pg_detoast_datum returns it as-is
        // when it is plain, or a palloc'd, 4-byte-header, MAXALIGNed copy otherwise.
        let raw = unsafe { pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) };
        let ptr = NonNull::new(raw.cast::<Header>()).expect("detoasted vector is null");
        // SAFETY: a detoasted varlena has a 4-byte header followed by its payload.
        let (size, dim) = unsafe { (varsize(raw), (*ptr.as_ptr()).dim) };
        let dim = dim as i64;
        // Trust nothing on disk blindly: a header that claims more elements than the varlena
        // holds would make every later slice read out of bounds.
        if dim < 1 || HEADER_SIZE + dim as usize * size_of::<E>() > size {
            raise(PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, format!("invalid {} value: {dim} dimensions in {size} bytes", E::TYPE_NAME));
        }
        VecArg { ptr, dim: dim as usize, _marker: PhantomData }
    }

    #[inline]
    pub fn dim(&self) -> usize {
        self.dim
    }

    #[inline]
    pub fn as_slice(&self) -> &'a [E] {
        // SAFETY: from_datum_unchecked checked that `dim` elements follow the header, and the
        // data is aligned: the varlena is at least 4-aligned and elements are at most 4 bytes.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>().add(HEADER_SIZE).cast::<E>(), self.dim) }
    }

    /// The value as a datum, to return an argument unchanged.
    pub fn datum(&self) -> pg_sys::Datum {
        pg_sys::Datum::from(self.ptr.as_ptr())
    }
}

/// # Safety
/// `ptr` must point at a varlena with a 4-byte header.
unsafe fn varsize(ptr: *const pg_sys::varlena) -> usize {
    // SAFETY: caller guarantees a 4-byte header; its upper 30 bits hold the size.
    (unsafe { ptr.cast::<u32>().read() } >> 2) as usize
}

impl<'a, E: Element> FromDatum for VecArg<'a, E> {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            None
        } else {
            // SAFETY: Postgres hands us a datum of the declared argument type.
            Some(unsafe { Self::from_datum_unchecked(datum) })
        }
    }
}

// SAFETY: the argument is read through FromDatum, which detoasts a varlena of the declared
// SQL type (vector or halfvec, matching E).
unsafe impl<'fcx, E: Element> ArgAbi<'fcx> for VecArg<'fcx, E> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: pgrx calls this only for a non-null argument of the declared SQL type.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

/// A freshly palloc'd `vector`/`halfvec`, returned to Postgres.
pub struct VecOut<E: Element> {
    ptr: NonNull<Header>,
    _marker: PhantomData<E>,
}

impl<E: Element> VecOut<E> {
    /// A zeroed value of `dim` elements in the current memory context.
    pub fn zeroed(dim: usize) -> Self {
        check_dim::<E>(dim as i64);
        let size = HEADER_SIZE + dim * size_of::<E>();
        // SAFETY: palloc0 either returns `size` zeroed bytes or raises an ERROR.
        let raw = unsafe { pg_sys::palloc0(size) }.cast::<Header>();
        // SAFETY: `raw` holds at least the header; SET_VARSIZE stores size << 2 for a 4-byte header.
        unsafe {
            (*raw).vl_len = (size as u32) << 2;
            (*raw).dim = dim as i16;
        }
        VecOut { ptr: NonNull::new(raw).expect("palloc0 returned null"), _marker: PhantomData }
    }

    pub fn from_slice(values: &[E]) -> Self {
        let mut out = Self::zeroed(values.len());
        out.as_mut_slice().copy_from_slice(values);
        out
    }

    /// Build from `f32` values with [`element_from_f32`]: a finite value that does not fit `E`
    /// (only possible for `halfvec`) is an "out of range" error.
    pub fn from_f32_checked(values: impl ExactSizeIterator<Item = f32>) -> Self {
        let mut out = Self::zeroed(values.len());
        for (dst, v) in out.as_mut_slice().iter_mut().zip(values) {
            *dst = element_from_f32(v);
        }
        out
    }

    pub fn as_mut_slice(&mut self) -> &mut [E] {
        // SAFETY: zeroed() allocated HEADER_SIZE + dim elements, and we own the allocation.
        unsafe {
            let dim = (*self.ptr.as_ptr()).dim as usize;
            core::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u8>().add(HEADER_SIZE).cast::<E>(), dim)
        }
    }

    pub fn into_datum(self) -> pg_sys::Datum {
        pg_sys::Datum::from(self.ptr.as_ptr())
    }
}

// SAFETY: the datum returned is a palloc'd varlena of the SQL type the function declares.
unsafe impl<E: Element> BoxRet for VecOut<E> {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: the pointer is a palloc'd varlena of the function's declared return type.
        unsafe { fcinfo.return_raw_datum(self.into_datum()) }
    }
}

pub type VectorArg<'a> = VecArg<'a, f32>;
pub type HalfvecArg<'a> = VecArg<'a, f16>;
pub type VectorOut = VecOut<f32>;
pub type HalfvecOut = VecOut<f16>;
/// Returning an argument unchanged (typmod casts) without copying it.
pub struct VectorSame(pub pg_sys::Datum);
pub struct HalfvecSame(pub pg_sys::Datum);

macro_rules! same_datum_ret {
    ($($t:ty),*) => {$(
        // SAFETY: the datum returned is an argument of the same SQL type, passed back unchanged.
        unsafe impl BoxRet for $t {
            unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
                // SAFETY: the datum came from an argument of the same type as the return type.
                unsafe { fcinfo.return_raw_datum(self.0) }
            }
        }
    )*};
}
same_datum_ret!(VectorSame, HalfvecSame);

impl_sql_translatable!(VecArg<'_, f32>, "vector");
impl_sql_translatable!(VecArg<'_, f16>, "halfvec");
impl_sql_translatable!(VecOut<f32>, "vector");
impl_sql_translatable!(VecOut<f16>, "halfvec");
impl_sql_translatable!(VectorSame, "vector");
impl_sql_translatable!(HalfvecSame, "halfvec");
