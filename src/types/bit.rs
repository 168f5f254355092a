//! Distances between values of Postgres's own `bit` type (pgvector's binary-quantization
//! support): `hamming_distance` / `<~>` and `jaccard_distance` / `<%>`, and the detoasted
//! `bit` argument the hnsw access method reads too.
//!
//! A `bit` value is a varlena: 4-byte header, int32 bit length, then the bits packed eight per
//! byte, first bit in the most significant position, unused bits of the last byte zero
//! (varbit.c keeps them zero), so byte-wise popcounts give the exact distances.

use core::ptr::NonNull;

use hnsw_core::metric::{bits_distance, Metric};
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::raise;

/// Bytes before the bits: varlena header and int32 bit length.
const BIT_HEADER: usize = 8;

/// A detoasted `bit` (or `varbit`) argument, borrowed for the duration of the call.
pub struct BitArg<'a> {
    ptr: NonNull<u8>,
    bits: usize,
    _marker: core::marker::PhantomData<&'a [u8]>,
}

impl BitArg<'_> {
    /// # Safety
    /// `datum` must be a non-null `bit` or `varbit` datum.
    pub unsafe fn from_datum_unchecked(datum: pg_sys::Datum) -> Self {
        // SAFETY: the caller promises a varlena of a bit type; pg_detoast_datum returns it as-is
        // when it is plain, or a palloc'd, 4-byte-header copy otherwise.
        let raw = unsafe { pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) }.cast::<u8>();
        let ptr = NonNull::new(raw).expect("detoasted bit string is null");
        // SAFETY: a detoasted varlena has a 4-byte header, and every bit value holds its int32
        // length after it (read unaligned: nothing here relies on the varlena's alignment).
        let (size, bits) = unsafe { ((raw.cast::<u32>().read_unaligned() >> 2) as usize, raw.add(4).cast::<i32>().read_unaligned()) };
        // A length that claims more bytes than the varlena holds would make every later slice
        // read out of bounds.
        if bits < 0 || BIT_HEADER + (bits as usize).div_ceil(8) > size {
            raise(PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, format!("invalid bit string: {bits} bits in {size} bytes"));
        }
        BitArg { ptr, bits: bits as usize, _marker: core::marker::PhantomData }
    }

    /// Length in bits.
    #[inline]
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The packed bits: ceil(bits / 8) bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: from_datum_unchecked checked that these bytes follow the header.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().add(BIT_HEADER), self.bits.div_ceil(8)) }
    }
}

impl FromDatum for BitArg<'_> {
    // SAFETY: the caller (pgrx's argument unboxing) passes a datum of this function's declared
    // argument type, `bit`, which is detoasted before anything reads it.
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            None
        } else {
            // SAFETY: Postgres hands us a datum of the declared argument type, `bit`.
            Some(unsafe { Self::from_datum_unchecked(datum) })
        }
    }
}

// SAFETY: the argument is read through FromDatum, which detoasts a varlena of the declared SQL
// type `bit`.
unsafe impl<'fcx> ArgAbi<'fcx> for BitArg<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: pgrx calls this only for a non-null argument of the declared SQL type.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

impl_sql_translatable!(BitArg<'_>, arg_only = "bit");

/// `ERROR` unless two bit strings have the same length (pgvector's words and SQLSTATE).
pub fn check_same_bits(a: usize, b: usize) {
    if a != b {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("different bit lengths {a} and {b}"));
    }
}

fn distance(metric: Metric, a: &BitArg<'_>, b: &BitArg<'_>) -> f64 {
    check_same_bits(a.bits(), b.bits());
    bits_distance(metric, a.bytes(), b.bytes())
}

#[pg_extern(immutable, strict, parallel_safe)]
fn hamming_distance(a: BitArg, b: BitArg) -> f64 {
    distance(Metric::Hamming, &a, &b)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn jaccard_distance(a: BitArg, b: BitArg) -> f64 {
    distance(Metric::Jaccard, &a, &b)
}
