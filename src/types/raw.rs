//! Raw pass-by-reference arguments and results whose SQL type pgrx cannot name by itself
//! (`cstring`, `bytea` built in place, `bit`, and arrays we must inspect as `ArrayType`).

use core::ffi::c_char;
use core::ptr::NonNull;

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::pg_sys;
use pgrx::prelude::*;

macro_rules! raw_ret {
    ($(#[$doc:meta] $name:ident($ptr:ty) => $sql:literal;)*) => {$(
        #[$doc]
        pub struct $name(pub $ptr);
        // SAFETY: the pointer returned is palloc'd data of the SQL type named in the mapping.
        unsafe impl BoxRet for $name {
            unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
                // SAFETY: the pointer was palloc'd in the function's memory context and holds a
                // value of the declared SQL return type.
                unsafe { fcinfo.return_raw_datum(pg_sys::Datum::from(self.0)) }
            }
        }
        impl_sql_translatable!($name, $sql);
    )*};
}

raw_ret! {
    /// A palloc'd NUL-terminated string returned as `cstring` (type output functions).
    CStringOut(*mut c_char) => "cstring";
    /// A palloc'd `bytea` built in place (binary send functions).
    ByteaOut(*mut pg_sys::varlena) => "bytea";
    /// A palloc'd `bit(n)` value.
    BitOut(*mut pg_sys::varlena) => "bit";
}

/// A detoasted array argument, inspected as a raw `ArrayType` so we can check its dimensions
/// and NULLs and read its elements with the right type.
pub struct ArrayArg<const K: u8>(pub NonNull<pg_sys::ArrayType>);

pub const INT4: u8 = 0;
pub const FLOAT4: u8 = 1;
pub const FLOAT8: u8 = 2;
pub const NUMERIC: u8 = 3;
pub const CSTRING: u8 = 4;

/// ARR_OVERHEAD_NONULLS(1): the header of a one-dimensional array without a NULL bitmap.
const ARR_OVERHEAD_NONULLS_1: usize = (core::mem::size_of::<pg_sys::ArrayType>() + 2 * core::mem::size_of::<i32>()).next_multiple_of(8);

pub type Int4ArrayArg = ArrayArg<INT4>;
pub type Float4ArrayArg = ArrayArg<FLOAT4>;
pub type Float8ArrayArg = ArrayArg<FLOAT8>;
pub type NumericArrayArg = ArrayArg<NUMERIC>;
pub type CStringArrayArg = ArrayArg<CSTRING>;

impl_sql_translatable!(ArrayArg<INT4>, arg_only = "integer[]");
impl_sql_translatable!(ArrayArg<FLOAT4>, arg_only = "real[]");
impl_sql_translatable!(ArrayArg<FLOAT8>, arg_only = "double precision[]");
impl_sql_translatable!(ArrayArg<NUMERIC>, arg_only = "numeric[]");
impl_sql_translatable!(ArrayArg<CSTRING>, arg_only = "cstring[]");

impl<const K: u8> FromDatum for ArrayArg<K> {
    // SAFETY: the caller (pgrx's argument unboxing) passes a datum of this function's declared
    // array argument type, which is detoasted below before anything reads it.
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            return None;
        }
        // SAFETY: Postgres passes an array datum for an array-typed argument; detoasting gives
        // a 4-byte-header, aligned ArrayType.
        let raw = unsafe { pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) };
        NonNull::new(raw.cast()).map(ArrayArg)
    }
}

// SAFETY: the argument is read through FromDatum, which detoasts an array datum of the declared
// SQL array type.
unsafe impl<'fcx, const K: u8> ArgAbi<'fcx> for ArrayArg<K> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: pgrx calls this only for a non-null argument of the declared SQL type.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

impl<const K: u8> ArrayArg<K> {
    pub fn as_ptr(&self) -> *mut pg_sys::ArrayType {
        self.0.as_ptr()
    }

    pub fn ndim(&self) -> i32 {
        // SAFETY: the pointer is a detoasted ArrayType.
        unsafe { (*self.0.as_ptr()).ndim }
    }

    pub fn elemtype(&self) -> pg_sys::Oid {
        // SAFETY: the pointer is a detoasted ArrayType.
        unsafe { (*self.0.as_ptr()).elemtype }
    }

    /// Number of elements, from the header (all dimensions multiplied).
    pub fn nitems(&self) -> usize {
        // SAFETY: a detoasted ArrayType: `ndim` dimension lengths follow the fixed header
        // (ARR_DIMS); ArrayGetNItems multiplies them, raising on overflow.
        unsafe {
            let a = self.0.as_ptr();
            let dims = a.cast::<u8>().add(core::mem::size_of::<pg_sys::ArrayType>()).cast::<i32>();
            pg_sys::ArrayGetNItems((*a).ndim, dims).max(0) as usize
        }
    }

    /// Whether any element is NULL, from the NULL bitmap alone.
    pub fn contains_nulls(&self) -> bool {
        // SAFETY: a detoasted ArrayType; array_contains_nulls reads its header and bitmap.
        unsafe { pg_sys::array_contains_nulls(self.as_ptr()) }
    }

    /// An aggregate's float8[] state `{count, sum_1, ...}` as a slice, checked as pgvector
    /// checks it (one dimension, at least one element, no NULLs, float8), with its message.
    pub fn float8_state(&self, caller: &str) -> &[f64] {
        // SAFETY: a detoasted ArrayType; ARR_DIMS follows the fixed header.
        let dim0 = unsafe { *self.as_ptr().cast::<u8>().add(core::mem::size_of::<pg_sys::ArrayType>()).cast::<i32>() };
        if self.ndim() != 1 || dim0 < 1 || self.contains_nulls() || self.elemtype() != pg_sys::FLOAT8OID {
            // pgvector raises this with elog(), hence XX000.
            super::raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("{caller}: expected state array"));
        }
        // SAFETY: a one-dimensional float8 array without NULLs (checked above) stores its
        // `dim0` elements at ARR_DATA_PTR, 8-aligned, right after the MAXALIGNed header
        // (ARR_OVERHEAD_NONULLS(1)).
        unsafe {
            let data = self.as_ptr().cast::<u8>().add(ARR_OVERHEAD_NONULLS_1).cast::<f64>();
            core::slice::from_raw_parts(data, dim0 as usize)
        }
    }

    /// The elements as datums plus a flag telling whether any is NULL.
    /// The datums live in the current memory context.
    pub fn elements(&self) -> (Vec<pg_sys::Datum>, bool) {
        let elemtype = self.elemtype();
        let (mut typlen, mut typbyval, mut typalign) = (0i16, false, 0 as c_char);
        let mut elems: *mut pg_sys::Datum = core::ptr::null_mut();
        let mut nulls: *mut bool = core::ptr::null_mut();
        let mut n = 0i32;
        // SAFETY: get_typlenbyvalalign fills the three outputs for a valid type OID (ERROR
        // otherwise); deconstruct_array reads the detoasted array with that layout and pallocs
        // the two output arrays of `n` entries.
        unsafe {
            pg_sys::get_typlenbyvalalign(elemtype, &mut typlen, &mut typbyval, &mut typalign);
            pg_sys::deconstruct_array(self.as_ptr(), elemtype, typlen as i32, typbyval, typalign, &mut elems, &mut nulls, &mut n);
        }
        if n == 0 {
            return (Vec::new(), false);
        }
        // SAFETY: deconstruct_array returned `n` datums and `n` null flags.
        let (elems, nulls) = unsafe { (core::slice::from_raw_parts(elems, n as usize), core::slice::from_raw_parts(nulls, n as usize)) };
        (elems.to_vec(), nulls.iter().any(|&b| b))
    }
}
