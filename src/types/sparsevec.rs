//! The `sparsevec` SQL type: a vector of up to 1,000,000,000 dimensions that stores only its
//! non-zero elements (at most 16,000), as pgvector 0.8 does.
//!
//! The varlena layout is pgvector's, so binary COPY, dumps and future index code agree:
//!
//! ```text
//! offset 0:          int32 varlena header (total size, set with SET_VARSIZE)
//! offset 4:          int32 dim      number of dimensions, 1..=1_000_000_000
//! offset 8:          int32 nnz      number of stored elements, 0..=min(16000, dim)
//! offset 12:         int32 unused   always 0
//! offset 16:         int32 indices[nnz]  0-based, strictly ascending
//! offset 16+4*nnz:   float4 values[nnz]  never zero, NaN or infinite
//! ```
//!
//! The text form is `{1:1.5,3:2}/5`: 1-based `index:value` pairs, then `/dim`. Zero values are
//! dropped on input. Distances merge the two index lists (`hnsw_core::sparse`) and never build
//! the dense vectors.

use core::cmp::Ordering;
use core::ffi::{c_char, c_int, c_long, CStr};
use core::marker::PhantomData;
use core::ptr::NonNull;

use half::f16;
use hnsw_core::sparse::{self, Sparse};
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::Internal;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::raw::{ArrayArg, ByteaOut, CStringArrayArg, CStringOut, Float4ArrayArg, Float8ArrayArg, Int4ArrayArg, NumericArrayArg};
use super::{arrays, check_expected_dim, element_from_f32, io, raise, raise_detail, Element, HalfvecArg, VecArg, VecOut, VectorArg};

/// Largest number of dimensions (pgvector's `SPARSEVEC_MAX_DIM`).
pub const MAX_DIM: i64 = 1_000_000_000;

/// Largest number of stored (non-zero) elements (pgvector's `SPARSEVEC_MAX_NNZ`).
pub const MAX_NNZ: usize = 16000;

/// Bytes before the first index.
const HEADER_SIZE: usize = 16;

#[repr(C)]
struct Header {
    vl_len: u32,
    dim: i32,
    nnz: i32,
    unused: i32,
}

fn size_for(nnz: usize) -> usize {
    HEADER_SIZE + nnz * (size_of::<i32>() + size_of::<f32>())
}

// Checks, with pgvector's messages and SQLSTATEs.

fn check_dim(dim: i64) {
    if dim < 1 {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "sparsevec must have at least 1 dimension");
    }
    if dim > MAX_DIM {
        raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("sparsevec cannot have more than {MAX_DIM} dimensions"));
    }
}

fn check_nnz(nnz: i64, dim: i64) {
    if nnz < 0 {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "sparsevec cannot have negative number of elements");
    }
    if nnz > MAX_NNZ as i64 {
        raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("sparsevec cannot have more than {MAX_NNZ} non-zero elements"));
    }
    if nnz > dim {
        raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, "sparsevec cannot have more elements than dimensions");
    }
}

/// `indices[i]` must be inside the vector and after `indices[i - 1]`.
fn check_index(indices: &[i32], i: usize, dim: i64) {
    let index = indices[i];
    if index < 0 || index as i64 >= dim {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "sparsevec index out of bounds");
    }
    if i > 0 {
        if index < indices[i - 1] {
            raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "sparsevec indices must be in ascending order");
        }
        if index == indices[i - 1] {
            raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "sparsevec indices must not contain duplicates");
        }
    }
}

fn check_value(v: f32) {
    if v.is_nan() {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "NaN not allowed in sparsevec");
    }
    if v.is_infinite() {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "infinite value not allowed in sparsevec");
    }
}

fn check_same_dims(a: &SparseArg<'_>, b: &SparseArg<'_>) {
    check_same_dim_counts(a.dim, b.dim);
}

/// The operators' check of two dimension counts (also an index scan's, of its query).
pub fn check_same_dim_counts(a: usize, b: usize) {
    if a != b {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("different sparsevec dimensions {a} and {b}"));
    }
}

/// A detoasted `sparsevec` argument, borrowed for the duration of the call.
pub struct SparseArg<'a> {
    ptr: NonNull<Header>,
    dim: usize,
    nnz: usize,
    _marker: PhantomData<&'a [f32]>,
}

impl<'a> SparseArg<'a> {
    /// # Safety
    /// `datum` must be a non-null `sparsevec` datum.
    pub unsafe fn from_datum_unchecked(datum: pg_sys::Datum) -> Self {
        // SAFETY: the caller promises a sparsevec varlena; pg_detoast_datum returns it as-is
        // when it is plain (4-byte header, int-aligned as the type is), or a palloc'd, 4-byte
        // header, MAXALIGNed copy otherwise.
        let raw = unsafe { pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) };
        let ptr = NonNull::new(raw.cast::<Header>()).expect("detoasted sparsevec is null");
        // SAFETY: a detoasted varlena has a 4-byte header (which holds its size) followed by
        // its payload; the size is checked to cover the fixed header before dim/nnz are read.
        let size = (unsafe { raw.cast::<u32>().read() } >> 2) as usize;
        let (dim, nnz) = if size >= HEADER_SIZE {
            // SAFETY: checked just above that the header is there.
            unsafe { ((*ptr.as_ptr()).dim as i64, (*ptr.as_ptr()).nnz as i64) }
        } else {
            (0, 0)
        };
        // Trust nothing on disk blindly: counts the varlena cannot hold would make every later
        // slice read out of bounds.
        if !(1..=MAX_DIM).contains(&dim) || nnz < 0 || nnz > (MAX_NNZ as i64).min(dim) || size_for(nnz as usize) > size {
            raise(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!("invalid sparsevec value: {dim} dimensions and {nnz} elements in {size} bytes"),
            );
        }
        SparseArg { ptr, dim: dim as usize, nnz: nnz as usize, _marker: PhantomData }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn indices(&self) -> &'a [i32] {
        // SAFETY: from_datum_unchecked checked that nnz indices follow the 16-byte header; a
        // detoasted varlena is at least 4-aligned.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>().add(HEADER_SIZE).cast::<i32>(), self.nnz) }
    }

    pub fn values(&self) -> &'a [f32] {
        // SAFETY: nnz floats follow the indices (checked size), 4-aligned like them.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>().add(HEADER_SIZE + 4 * self.nnz).cast::<f32>(), self.nnz) }
    }

    pub fn view(&self) -> Sparse<'a> {
        Sparse { dim: self.dim, indices: self.indices(), values: self.values() }
    }

    pub fn datum(&self) -> pg_sys::Datum {
        pg_sys::Datum::from(self.ptr.as_ptr())
    }
}

impl FromDatum for SparseArg<'_> {
    // SAFETY: the caller (pgrx's argument unboxing) passes a datum of this function's declared
    // argument type, `sparsevec`, which is detoasted before anything reads it.
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            None
        } else {
            // SAFETY: Postgres hands us a datum of the declared argument type, sparsevec.
            Some(unsafe { Self::from_datum_unchecked(datum) })
        }
    }
}

// SAFETY: the argument is read through FromDatum, which detoasts and checks a sparsevec varlena.
unsafe impl<'fcx> ArgAbi<'fcx> for SparseArg<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: pgrx calls this only for a non-null argument of the declared SQL type.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

/// A freshly palloc'd `sparsevec`, returned to Postgres.
pub struct SparseOut {
    ptr: NonNull<Header>,
    nnz: usize,
}

impl SparseOut {
    /// A value of `dim` dimensions with room for `nnz` elements, all zeroed, in the current
    /// memory context. Callers have checked `dim` and `nnz`.
    fn zeroed(dim: usize, nnz: usize) -> Self {
        debug_assert!(dim as i64 <= MAX_DIM && nnz <= MAX_NNZ.min(dim));
        let size = size_for(nnz);
        // SAFETY: palloc0 either returns `size` zeroed bytes or raises an ERROR.
        let raw = unsafe { pg_sys::palloc0(size) }.cast::<Header>();
        // SAFETY: `raw` holds at least the header; SET_VARSIZE stores size << 2 for a 4-byte header.
        unsafe {
            (*raw).vl_len = (size as u32) << 2;
            (*raw).dim = dim as i32;
            (*raw).nnz = nnz as i32;
        }
        SparseOut { ptr: NonNull::new(raw).expect("palloc0 returned null"), nnz }
    }

    /// Build from (0-based index, value) pairs already in ascending index order.
    fn from_pairs(dim: usize, pairs: &[(i32, f32)]) -> Self {
        let mut out = Self::zeroed(dim, pairs.len());
        let (indices, values) = out.parts_mut();
        for ((i, v), &(pi, pv)) in indices.iter_mut().zip(values.iter_mut()).zip(pairs) {
            *i = pi;
            *v = pv;
        }
        out
    }

    fn parts_mut(&mut self) -> (&mut [i32], &mut [f32]) {
        // SAFETY: zeroed() allocated the header plus nnz indices and nnz values, 4-aligned
        // (palloc is MAXALIGNed), and we own the allocation; the two slices do not overlap.
        unsafe {
            let base = self.ptr.as_ptr().cast::<u8>().add(HEADER_SIZE);
            (
                core::slice::from_raw_parts_mut(base.cast::<i32>(), self.nnz),
                core::slice::from_raw_parts_mut(base.add(4 * self.nnz).cast::<f32>(), self.nnz),
            )
        }
    }
}

// SAFETY: the datum returned is a palloc'd sparsevec varlena, the function's declared type.
unsafe impl BoxRet for SparseOut {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: the pointer is a palloc'd varlena of the function's declared return type.
        unsafe { fcinfo.return_raw_datum(pg_sys::Datum::from(self.ptr.as_ptr())) }
    }
}

/// Returning an argument unchanged (typmod casts) without copying it.
pub struct SparseSame(pg_sys::Datum);

// SAFETY: the datum returned is a sparsevec argument, passed back unchanged.
unsafe impl BoxRet for SparseSame {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: the datum came from an argument of the same type as the return type.
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

impl_sql_translatable!(SparseArg<'_>, "sparsevec");
impl_sql_translatable!(SparseOut, "sparsevec");
impl_sql_translatable!(SparseSame, "sparsevec");

// ---------------------------------------------------------------------------------------------
// Text I/O. Numbers are read with the C library's strtol and strtof, as pgvector (and float4in)
// do, so that exactly the same literals are accepted (hex floats, "inf", leading '+') and an
// out-of-range number is reported with exactly the characters strtof consumed.

/// The calling thread's `errno`.
fn errno() -> *mut c_int {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: returns the address of this thread's errno, valid for the thread's life.
    unsafe {
        libc::__errno_location()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: as above, the BSD/macOS spelling.
    unsafe {
        libc::__error()
    }
}

struct Parser<'a> {
    /// The literal with its terminating NUL, which the C parsers stop at.
    s: &'a [u8],
    pos: usize,
    lit: String,
}

impl Parser<'_> {
    fn peek(&self) -> u8 {
        self.s[self.pos]
    }

    fn skip_space(&mut self) {
        while io::is_space(self.peek()) {
            self.pos += 1;
        }
    }

    fn invalid(&self) -> ! {
        raise(PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION, format!("invalid input syntax for type sparsevec: \"{}\"", self.lit))
    }

    fn invalid_detail(&self, detail: &str) -> ! {
        raise_detail(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type sparsevec: \"{}\"", self.lit),
            detail,
        )
    }

    /// A base-10 integer (strtol: optional sign, saturating), or a syntax error.
    fn integer(&mut self) -> i64 {
        let start = self.s[self.pos..].as_ptr().cast::<c_char>();
        let mut end: *mut c_char = core::ptr::null_mut();
        // SAFETY: `start` points into the NUL-terminated literal; strtol reads up to the NUL
        // at most and sets `end` to a position inside it.
        let v: c_long = unsafe { libc::strtol(start, &mut end, 10) };
        // SAFETY: `end` is `start` or after it, within the same string.
        let used = unsafe { end.cast_const().offset_from(start) } as usize;
        if used == 0 {
            self.invalid();
        }
        self.pos += used;
        v as i64
    }

    /// A float4 (strtof), or a syntax or range error.
    fn number(&mut self) -> f32 {
        let start = self.s[self.pos..].as_ptr().cast::<c_char>();
        let mut end: *mut c_char = core::ptr::null_mut();
        // SAFETY: as in integer(); errno is per thread, reset first so a stale ERANGE is not
        // taken for this call's.
        let (v, err) = unsafe {
            *errno() = 0;
            let v = libc::strtof(start, &mut end);
            (v, *errno())
        };
        // SAFETY: `end` is `start` or after it, within the same string.
        let used = unsafe { end.cast_const().offset_from(start) } as usize;
        if used == 0 {
            self.invalid();
        }
        // Like float4in: an error only when the value overflowed or underflowed to zero (a
        // subnormal result is kept).
        if err == libc::ERANGE && (v == 0.0 || v.is_infinite()) {
            let token = String::from_utf8_lossy(&self.s[self.pos..self.pos + used]);
            raise(PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, format!("\"{token}\" is out of range for type sparsevec"));
        }
        self.pos += used;
        v
    }
}

fn text_in(input: &CStr, typmod: i32) -> SparseOut {
    let bytes = input.to_bytes();
    let lit = String::from_utf8_lossy(bytes).into_owned();
    // Every element but the last ends with a comma: this bounds the elements (and the memory
    // reserved for them) before anything is parsed.
    let max_nnz = 1 + bytes.iter().filter(|&&c| c == b',').count();
    if max_nnz > MAX_NNZ {
        raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("sparsevec cannot have more than {MAX_NNZ} non-zero elements"));
    }
    let mut p = Parser { s: input.to_bytes_with_nul(), pos: 0, lit };
    let mut pairs: Vec<(i32, f32)> = Vec::with_capacity(max_nnz);

    p.skip_space();
    if p.peek() != b'{' {
        p.invalid_detail("Vector contents must start with \"{\".");
    }
    p.pos += 1;
    p.skip_space();
    if p.peek() == b'}' {
        p.pos += 1;
    } else {
        loop {
            p.skip_space();
            if p.peek() == 0 {
                p.invalid();
            }
            // Clamped into the int range, so that a huge index is reported as out of bounds.
            let index = p.integer().clamp(i32::MIN as i64 + 1, i32::MAX as i64);
            p.skip_space();
            if p.peek() != b':' {
                p.invalid();
            }
            p.pos += 1;
            p.skip_space();
            let value = p.number();
            check_value(value);
            // Zeros are not stored; the text is 1-based, the storage 0-based.
            if value != 0.0 {
                pairs.push(((index - 1) as i32, value));
            }
            p.skip_space();
            match p.peek() {
                b',' => p.pos += 1,
                b'}' => {
                    p.pos += 1;
                    break;
                }
                _ => p.invalid(),
            }
        }
    }
    p.skip_space();
    if p.peek() != b'/' {
        p.invalid_detail("Unexpected end of input.");
    }
    p.pos += 1;
    p.skip_space();
    let dim = p.integer().clamp(i32::MIN as i64, i32::MAX as i64);
    p.skip_space();
    if p.peek() != 0 {
        p.invalid_detail("Junk after closing.");
    }
    check_dim(dim);
    check_expected_dim(typmod, dim as usize);

    // Elements may come in any order; out-of-bounds and duplicate indices are reported in
    // sorted order, as pgvector does.
    pairs.sort_by_key(|&(i, _)| i);
    let indices: Vec<i32> = pairs.iter().map(|&(i, _)| i).collect();
    (0..indices.len()).for_each(|i| check_index(&indices, i, dim));
    SparseOut::from_pairs(dim as usize, &pairs)
}

fn text_out(v: &SparseArg<'_>) -> CStringOut {
    use core::fmt::Write;
    let mut s = String::with_capacity(v.nnz * 24 + 16);
    s.push('{');
    for (n, (&i, &x)) in v.indices().iter().zip(v.values()).enumerate() {
        if n > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}:{}", i as i64 + 1, io::shortest_decimal(x));
    }
    let _ = write!(s, "}}/{}", v.dim);
    // SAFETY: palloc returns len + 1 bytes or raises an ERROR; we copy the text and a NUL.
    let buf = unsafe {
        let buf = pg_sys::palloc(s.len() + 1).cast::<u8>();
        core::ptr::copy_nonoverlapping(s.as_ptr(), buf, s.len());
        *buf.add(s.len()) = 0;
        buf
    };
    CStringOut(buf.cast())
}

// ---------------------------------------------------------------------------------------------
// SQL functions

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_in(input: &CStr, _oid: pg_sys::Oid, typmod: i32) -> SparseOut {
    text_in(input, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_out(v: SparseArg) -> CStringOut {
    text_out(&v)
}

/// `sparsevec(n)`: exactly one modifier between 1 and 1,000,000,000.
#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_typmod_in(arr: CStringArrayArg) -> i32 {
    let mut n = 0;
    // SAFETY: ArrayGetIntegerTypmods parses a cstring[] (ERROR on non-integers) and returns a
    // palloc'd array of `n` int32.
    let mods = unsafe { pg_sys::ArrayGetIntegerTypmods(arr.as_ptr(), &mut n) };
    if n != 1 {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "invalid type modifier");
    }
    // SAFETY: n == 1, so one element is there.
    let dims = unsafe { *mods };
    if dims < 1 {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "dimensions for type sparsevec must be at least 1");
    }
    if dims as i64 > MAX_DIM {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("dimensions for type sparsevec cannot exceed {MAX_DIM}"));
    }
    dims
}

/// Binary form: int32 dim, int32 nnz, int32 unused (0), int32 indices[nnz] (0-based), then
/// float4 values[nnz], all in network byte order.
#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_recv(buf: Internal, _oid: pg_sys::Oid, typmod: i32) -> SparseOut {
    io::read_message(buf, |msg| {
        let dim = msg.take_i32();
        let nnz = msg.take_i32();
        let unused = msg.take_i32();
        check_dim(dim as i64);
        check_nnz(nnz as i64, dim as i64);
        check_expected_dim(typmod, dim as usize);
        if unused != 0 {
            raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("expected unused to be 0, not {unused}"));
        }
        let mut out = SparseOut::zeroed(dim as usize, nnz as usize);
        let (indices, values) = out.parts_mut();
        for i in 0..indices.len() {
            indices[i] = msg.take_i32();
            check_index(indices, i, dim as i64);
        }
        for v in values.iter_mut() {
            *v = msg.take_f32();
            check_value(*v);
            if *v == 0.0 {
                raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "binary representation of sparsevec cannot contain zero values");
            }
        }
        out
    })
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_send(v: SparseArg) -> ByteaOut {
    let size = pg_sys::VARHDRSZ + 12 + 8 * v.nnz;
    // SAFETY: palloc returns `size` bytes or raises an ERROR.
    let raw = unsafe { pg_sys::palloc(size) }.cast::<u8>();
    // SAFETY: we fill exactly `size` bytes: the varlena header, then the payload below.
    let bytes = unsafe {
        raw.cast::<u32>().write((size as u32) << 2);
        core::slice::from_raw_parts_mut(raw.add(pg_sys::VARHDRSZ), size - pg_sys::VARHDRSZ)
    };
    let words = [v.dim as i32, v.nnz as i32, 0].into_iter().chain(v.indices().iter().copied()).map(|w| w.to_be_bytes());
    let words = words.chain(v.values().iter().map(|x| x.to_bits().to_be_bytes()));
    for (out, w) in bytes.chunks_exact_mut(4).zip(words) {
        out.copy_from_slice(&w);
    }
    ByteaOut(raw.cast())
}

/// Typmod coercion: `sparsevec(n)` columns and `::sparsevec(n)` casts.
#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec(v: SparseArg, typmod: i32, _explicit: bool) -> SparseSame {
    check_expected_dim(typmod, v.dim());
    SparseSame(v.datum())
}

/// The non-zero elements of a dense vector.
fn from_dense<E: Element>(v: &VecArg<'_, E>, typmod: i32) -> SparseOut {
    check_dim(v.dim() as i64);
    check_expected_dim(typmod, v.dim());
    let xs = v.as_slice();
    let nnz = xs.iter().filter(|x| x.to_f32() != 0.0).count();
    check_nnz(nnz as i64, xs.len() as i64);
    let mut out = SparseOut::zeroed(xs.len(), nnz);
    let (indices, values) = out.parts_mut();
    let nonzero = xs.iter().enumerate().filter(|(_, x)| x.to_f32() != 0.0);
    for ((i, v), (pos, x)) in indices.iter_mut().zip(values.iter_mut()).zip(nonzero) {
        *i = pos as i32;
        *v = x.to_f32();
    }
    out
}

/// The dense vector (`vector` or `halfvec`, with their own dimension limit and, for halfvec,
/// the "out of range" error for values that do not fit).
fn to_dense<E: Element>(v: &SparseArg<'_>, typmod: i32) -> VecOut<E> {
    super::check_dim::<E>(v.dim() as i64);
    check_expected_dim(typmod, v.dim());
    let mut out = VecOut::<E>::zeroed(v.dim());
    let dst = out.as_mut_slice();
    for (&i, &x) in v.indices().iter().zip(v.values()) {
        // Indices are checked on input; a corrupt one must not write out of bounds.
        let slot =
            dst.get_mut(i as usize).unwrap_or_else(|| raise(PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, "sparsevec index out of bounds"));
        *slot = element_from_f32::<E>(x);
    }
    out
}

/// `integer[]`, `real[]`, `double precision[]` and `numeric[]` to sparsevec, keeping the
/// elements that are not zero as float4.
fn from_array<const K: u8>(arr: ArrayArg<K>, typmod: i32) -> SparseOut {
    if arr.ndim() > 1 {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "array must be 1-D");
    }
    if arr.contains_nulls() {
        raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "array must not contain nulls");
    }
    let (elems, _) = arr.elements();
    let n = elems.len();
    check_dim(n as i64);
    check_expected_dim(typmod, n);
    let elemtype = arr.elemtype();
    // Every element is converted (numeric's own range errors come in array order), but only
    // up to MAX_NNZ + 1 non-zeros are kept: one more is already an error.
    let mut pairs: Vec<(i32, f32)> = Vec::new();
    let mut nnz = 0usize;
    for (pos, &d) in elems.iter().enumerate() {
        let x = arrays::datum_to_f32(d, elemtype);
        // NaN compares unequal to zero, so it is kept here and rejected below.
        if x != 0.0 {
            nnz += 1;
            if pairs.len() <= MAX_NNZ {
                pairs.push((pos as i32, x));
            }
        }
    }
    check_nnz(nnz as i64, n as i64);
    let out = SparseOut::from_pairs(n, &pairs);
    pairs.iter().for_each(|&(_, x)| check_value(x));
    out
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_to_sparsevec(v: VectorArg, typmod: i32, _explicit: bool) -> SparseOut {
    from_dense(&v, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn halfvec_to_sparsevec(v: HalfvecArg, typmod: i32, _explicit: bool) -> SparseOut {
    from_dense(&v, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_to_vector(v: SparseArg, typmod: i32, _explicit: bool) -> VecOut<f32> {
    to_dense(&v, typmod)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_to_halfvec(v: SparseArg, typmod: i32, _explicit: bool) -> VecOut<f16> {
    to_dense(&v, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_sparsevec")]
fn array_int4_to_sparsevec(a: Int4ArrayArg, typmod: i32, _explicit: bool) -> SparseOut {
    from_array(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_sparsevec")]
fn array_float4_to_sparsevec(a: Float4ArrayArg, typmod: i32, _explicit: bool) -> SparseOut {
    from_array(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_sparsevec")]
fn array_float8_to_sparsevec(a: Float8ArrayArg, typmod: i32, _explicit: bool) -> SparseOut {
    from_array(a, typmod)
}

#[pg_extern(immutable, strict, parallel_safe, name = "array_to_sparsevec")]
fn array_numeric_to_sparsevec(a: NumericArrayArg, typmod: i32, _explicit: bool) -> SparseOut {
    from_array(a, typmod)
}

// Distances: f32 sums in index order (hnsw_core::sparse), returned as float8, as in pgvector.

#[pg_extern(immutable, strict, parallel_safe, name = "l2_distance")]
fn sparsevec_l2_distance(a: SparseArg, b: SparseArg) -> f64 {
    check_same_dims(&a, &b);
    (sparse::l2_squared(a.view(), b.view()) as f64).sqrt()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_l2_squared_distance(a: SparseArg, b: SparseArg) -> f64 {
    check_same_dims(&a, &b);
    sparse::l2_squared(a.view(), b.view()) as f64
}

#[pg_extern(immutable, strict, parallel_safe, name = "inner_product")]
fn sparsevec_inner_product(a: SparseArg, b: SparseArg) -> f64 {
    check_same_dims(&a, &b);
    sparse::dot(a.view(), b.view()) as f64
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_negative_inner_product(a: SparseArg, b: SparseArg) -> f64 {
    check_same_dims(&a, &b);
    -(sparse::dot(a.view(), b.view()) as f64)
}

#[pg_extern(immutable, strict, parallel_safe, name = "cosine_distance")]
fn sparsevec_cosine_distance(a: SparseArg, b: SparseArg) -> f64 {
    check_same_dims(&a, &b);
    sparse::cosine_distance(a.view(), b.view())
}

#[pg_extern(immutable, strict, parallel_safe, name = "l1_distance")]
fn sparsevec_l1_distance(a: SparseArg, b: SparseArg) -> f64 {
    check_same_dims(&a, &b);
    sparse::l1(a.view(), b.view()) as f64
}

#[pg_extern(immutable, strict, parallel_safe, name = "l2_norm")]
fn sparsevec_l2_norm(v: SparseArg) -> f64 {
    sparse::norm(v.view())
}

/// Unit-length copy. A zero vector stays zero; elements that underflow to zero are dropped.
#[pg_extern(immutable, strict, parallel_safe, name = "l2_normalize")]
fn sparsevec_l2_normalize(v: SparseArg) -> SparseOut {
    let norm = sparse::norm(v.view());
    if norm == 0.0 {
        return SparseOut::zeroed(v.dim(), 0);
    }
    let mut pairs = Vec::with_capacity(v.nnz);
    for (&i, &x) in v.indices().iter().zip(v.values()) {
        let y = (x as f64 / norm) as f32;
        if y.is_infinite() {
            raise(PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "value out of range: overflow");
        }
        if y != 0.0 {
            pairs.push((i, y));
        }
    }
    SparseOut::from_pairs(v.dim(), &pairs)
}

// Comparisons (btree operator class): the order of the dense vectors, then the dimensions.

fn cmp(a: &SparseArg<'_>, b: &SparseArg<'_>) -> Ordering {
    sparse::cmp(a.view(), b.view())
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_cmp(a: SparseArg, b: SparseArg) -> i32 {
    cmp(&a, &b) as i32
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_lt(a: SparseArg, b: SparseArg) -> bool {
    cmp(&a, &b).is_lt()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_le(a: SparseArg, b: SparseArg) -> bool {
    cmp(&a, &b).is_le()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_eq(a: SparseArg, b: SparseArg) -> bool {
    cmp(&a, &b).is_eq()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_ne(a: SparseArg, b: SparseArg) -> bool {
    cmp(&a, &b).is_ne()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_ge(a: SparseArg, b: SparseArg) -> bool {
    cmp(&a, &b).is_ge()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn sparsevec_gt(a: SparseArg, b: SparseArg) -> bool {
    cmp(&a, &b).is_gt()
}
