//! Text and binary I/O shared by `vector` and `halfvec`, following pgvector's formats and error
//! messages so that clients and tests written for pgvector see the same behaviour.

use core::ffi::{c_char, c_int, CStr};

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::raw::{ByteaOut, CStringArrayArg, CStringOut};
use super::{check_dim, check_element, check_expected_dim, raise, raise_detail, Element, VecArg, VecOut, MAX_DIM};

extern "C" {
    // Exported by the server (src/common/f2s.c): the shortest decimal string that reads back as
    // the same float4, which is what float4out and pgvector print.
    fn float_to_shortest_decimal_bufn(f: f32, result: *mut c_char) -> c_int;
}

/// Longest output of `float_to_shortest_decimal_bufn` (FLOAT_SHORTEST_DECIMAL_LEN - 1).
const FLOAT_LEN: usize = 15;

/// The shortest decimal that reads back as `f` (what `float4out` prints), e.g. `1e+10`.
pub fn shortest_decimal(f: f32) -> String {
    let mut buf = [0u8; FLOAT_LEN + 1];
    // SAFETY: the buffer holds the longest possible output; bufn writes no NUL and returns the
    // number of bytes written.
    let len = unsafe { float_to_shortest_decimal_bufn(f, buf.as_mut_ptr().cast::<c_char>()) } as usize;
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Postgres' `scanner_isspace` as pgvector uses it on Postgres 15 (C `isspace` in the C locale).
pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

fn invalid_syntax<E: Element>(lit: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION, format!("invalid input syntax for type {}: \"{lit}\"", E::TYPE_NAME))
}

/// Parse one number the way `strtof` + pgvector's checks do: an out-of-range finite literal is
/// an error, an explicit `inf`/`nan` literal is rejected by `check_element`.
fn parse_number<E: Element>(token: &str, lit: &str) -> E {
    let v: f32 = token.parse().unwrap_or_else(|_| invalid_syntax::<E>(lit));
    let e = E::from_f32(v);
    if e.is_infinite() {
        let word = token.trim_start_matches(['+', '-']).to_ascii_lowercase();
        if word != "inf" && word != "infinity" {
            raise(PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, format!("\"{token}\" is out of range for type {}", E::TYPE_NAME));
        }
    }
    check_element(e);
    e
}

/// `[1, 2.5, -3]` with whitespace anywhere between tokens.
pub fn text_in<E: Element>(input: &CStr, typmod: i32) -> VecOut<E> {
    let lit = input.to_str().unwrap_or_else(|_| {
        raise(PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION, format!("invalid input syntax for type {}", E::TYPE_NAME))
    });
    let s = lit.as_bytes();
    let mut pos = 0;
    let skip_space = |pos: &mut usize| {
        while *pos < s.len() && is_space(s[*pos]) {
            *pos += 1;
        }
    };
    skip_space(&mut pos);
    if s.get(pos) != Some(&b'[') {
        raise_detail(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type {}: \"{lit}\"", E::TYPE_NAME),
            "Vector contents must start with \"[\".",
        );
    }
    pos += 1;
    skip_space(&mut pos);
    if s.get(pos) == Some(&b']') {
        raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("{} must have at least 1 dimension", E::TYPE_NAME));
    }
    // At most one element per two bytes of input, and never more than MAX_DIM: a huge
    // malformed literal must not reserve memory in proportion to its length.
    let mut values: Vec<E> = Vec::with_capacity((s.len() / 2).min(MAX_DIM));
    loop {
        if values.len() == MAX_DIM {
            raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, format!("{} cannot have more than {MAX_DIM} dimensions", E::TYPE_NAME));
        }
        skip_space(&mut pos);
        let start = pos;
        while pos < s.len() && !is_space(s[pos]) && s[pos] != b',' && s[pos] != b']' {
            pos += 1;
        }
        if start == pos {
            invalid_syntax::<E>(lit);
        }
        values.push(parse_number::<E>(&lit[start..pos], lit));
        skip_space(&mut pos);
        match s.get(pos) {
            Some(b',') => pos += 1,
            Some(b']') => {
                pos += 1;
                break;
            }
            _ => invalid_syntax::<E>(lit),
        }
    }
    skip_space(&mut pos);
    if pos != s.len() {
        raise_detail(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type {}: \"{lit}\"", E::TYPE_NAME),
            "Junk after closing right brace.",
        );
    }
    check_dim::<E>(values.len() as i64);
    check_expected_dim(typmod, values.len());
    VecOut::from_slice(&values)
}

/// `[x1,x2,...]` with each element printed as the shortest decimal that reads back exactly.
pub fn text_out<E: Element>(v: &VecArg<'_, E>) -> CStringOut {
    let xs = v.as_slice();
    let cap = xs.len() * (FLOAT_LEN + 1) + 3;
    // SAFETY: palloc returns `cap` bytes or raises an ERROR.
    let buf = unsafe { pg_sys::palloc(cap) }.cast::<c_char>();
    let mut len = 0usize;
    // SAFETY: every write below stays within `cap`: one '[', at most FLOAT_LEN bytes plus one
    // separator per element, one ']' and the NUL.
    unsafe {
        *buf = b'[' as c_char;
        len += 1;
        for (i, x) in xs.iter().enumerate() {
            if i > 0 {
                *buf.add(len) = b',' as c_char;
                len += 1;
            }
            len += float_to_shortest_decimal_bufn(x.to_f32(), buf.add(len)) as usize;
        }
        *buf.add(len) = b']' as c_char;
        *buf.add(len + 1) = 0;
    }
    CStringOut(buf)
}

/// `vector(n)`: exactly one modifier between 1 and 16000.
pub fn typmod_in<E: Element>(arr: CStringArrayArg) -> i32 {
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
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("dimensions for type {} must be at least 1", E::TYPE_NAME));
    }
    if dims as usize > MAX_DIM {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("dimensions for type {} cannot exceed {MAX_DIM}", E::TYPE_NAME));
    }
    dims
}

/// Cursor over a binary message (`StringInfo`), with the server's error for short messages.
pub(super) struct Message<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Message<'_> {
    pub(super) fn take(&mut self, n: usize) -> &[u8] {
        if self.data.len().saturating_sub(self.pos) < n {
            raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, "insufficient data left in message");
        }
        self.pos += n;
        &self.data[self.pos - n..self.pos]
    }

    fn take_i16(&mut self) -> i16 {
        let b = self.take(2);
        i16::from_be_bytes([b[0], b[1]])
    }

    pub(super) fn take_i32(&mut self) -> i32 {
        let b = self.take(4);
        i32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub(super) fn take_f32(&mut self) -> f32 {
        f32::from_bits(self.take_i32() as u32)
    }
}

/// Run `read` over the message a type's receive function got, then move the message's cursor
/// past what `read` consumed.
pub(super) fn read_message<T>(buf: pgrx::datum::Internal, read: impl FnOnce(&mut Message<'_>) -> T) -> T {
    let si = buf.unwrap().expect("recv buffer").cast_mut_ptr::<pg_sys::StringInfoData>();
    // SAFETY: a type's receive function gets a StringInfo holding the message; we read only
    // within `len` and advance `cursor` past what we consumed, as the pq_getmsg* helpers do.
    let (data, start) = unsafe { (core::slice::from_raw_parts((*si).data.cast::<u8>(), (*si).len as usize), (*si).cursor as usize) };
    let mut msg = Message { data, pos: start };
    let out = read(&mut msg);
    // SAFETY: see above; pos never exceeds len.
    unsafe { (*si).cursor = msg.pos as i32 };
    out
}

/// Per-element wire encoding: float4 for `vector`, the raw 16 bits for `halfvec`, big-endian.
pub trait WireElement: Element {
    const WIRE_SIZE: usize;
    fn read(b: &[u8]) -> Self;
    fn write(self, out: &mut [u8]);
}

impl WireElement for f32 {
    const WIRE_SIZE: usize = 4;
    fn read(b: &[u8]) -> Self {
        f32::from_bits(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn write(self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_bits().to_be_bytes());
    }
}

impl WireElement for half::f16 {
    const WIRE_SIZE: usize = 2;
    fn read(b: &[u8]) -> Self {
        half::f16::from_bits(u16::from_be_bytes([b[0], b[1]]))
    }
    fn write(self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_bits().to_be_bytes());
    }
}

/// pgvector's binary layout: int16 dim, int16 unused (0), then the elements, network order.
pub fn recv<E: WireElement>(buf: pgrx::datum::Internal, typmod: i32) -> VecOut<E> {
    read_message(buf, |msg| {
        let dim = msg.take_i16();
        let unused = msg.take_i16();
        check_dim::<E>(dim as i64);
        check_expected_dim(typmod, dim as usize);
        if unused != 0 {
            raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, format!("expected unused to be 0, not {unused}"));
        }
        let mut out = VecOut::<E>::zeroed(dim as usize);
        let bytes = msg.take(dim as usize * E::WIRE_SIZE);
        for (x, chunk) in out.as_mut_slice().iter_mut().zip(bytes.chunks_exact(E::WIRE_SIZE)) {
            *x = E::read(chunk);
            check_element(*x);
        }
        out
    })
}

pub fn send<E: WireElement>(v: &VecArg<'_, E>) -> ByteaOut {
    let xs = v.as_slice();
    let size = pg_sys::VARHDRSZ + 4 + xs.len() * E::WIRE_SIZE;
    // SAFETY: palloc returns `size` bytes or raises an ERROR.
    let raw = unsafe { pg_sys::palloc(size) }.cast::<u8>();
    // SAFETY: we fill exactly `size` bytes: the varlena header, dim, unused and the elements.
    let bytes = unsafe {
        raw.cast::<u32>().write((size as u32) << 2);
        core::slice::from_raw_parts_mut(raw.add(pg_sys::VARHDRSZ), size - pg_sys::VARHDRSZ)
    };
    bytes[0..2].copy_from_slice(&(xs.len() as i16).to_be_bytes());
    bytes[2..4].copy_from_slice(&0i16.to_be_bytes());
    for (x, out) in xs.iter().zip(bytes[4..].chunks_exact_mut(E::WIRE_SIZE)) {
        x.write(out);
    }
    ByteaOut(raw.cast())
}
