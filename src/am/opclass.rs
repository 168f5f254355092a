//! What an index orders by: its metric and element type, read from its operator class.
//!
//! Support function 1 of every hnsw operator class is the SQL distance function of its ordering
//! operator (`l2_distance`, `vector_negative_inner_product`, `cosine_distance`, `l1_distance`
//! and their halfvec overloads, `sparsevec_l2_squared_distance`,
//! `sparsevec_negative_inner_product` and the sparsevec `cosine_distance` and `l1_distance`,
//! `hamming_distance` and `jaccard_distance` for `bit`); the opclass input type says `vector`,
//! `halfvec`, `sparsevec` or `bit`.

use core::ffi::CStr;

use hnsw_core::metric::Metric;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::filter::Columns;
use crate::storage::meta::{ElemType, Quant};
use crate::types::{raise, raise_hint};

/// Indexed dimensions: a vector tuple must fit in one page.
pub const MAX_DIMS_F32: usize = 2000;
pub const MAX_DIMS_F16: usize = 4000;
/// With 8-bit codes the walk's tuple holds a byte per dimension (and the full vector is a
/// chain of tuples on pages of their own): up to 8000, for `vector` and `halfvec` alike,
/// leaving room for filter values.
pub const MAX_DIMS_SQ8: usize = 8000;
/// With 1-bit codes (about dims / 8 bytes), as many as the types take.
pub const MAX_DIMS_RABITQ: usize = 16000;
/// `bit`: 64000 bits (pgvector's limit), 8000 bytes: a vector tuple as large as `vector`'s.
pub const MAX_BITS: usize = 64000;
/// `sparsevec`: as many dimensions as the type takes (nothing is allocated per dimension)...
pub const MAX_DIMS_SPARSE: usize = crate::types::sparsevec::MAX_DIM as usize;
/// ...and up to 1000 non-zero elements (pgvector's `HNSW_MAX_NNZ`): 8004 bytes of body.
pub const MAX_NNZ_SPARSE: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Kind {
    pub metric: Metric,
    pub elem: ElemType,
    /// Elements from the column's typmod, if it has one (bytes for `bit`: see `bits`).
    pub typmod_dims: Option<u32>,
    /// `bit`: the column's length in bits (from its typmod, which a `bit` index requires);
    /// 0 for the vector types.
    pub bits: u32,
}

impl Kind {
    pub fn max_dims(&self, quant: Quant) -> usize {
        match (quant, self.elem) {
            (_, ElemType::Bit) => MAX_BITS,
            (_, ElemType::Sparse) => MAX_DIMS_SPARSE,
            (Quant::Sq8, _) => MAX_DIMS_SQ8,
            (Quant::RaBitQ1, _) => MAX_DIMS_RABITQ,
            (Quant::None, ElemType::F32) => MAX_DIMS_F32,
            (Quant::None, ElemType::F16) => MAX_DIMS_F16,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self.elem {
            ElemType::F32 => "vector",
            ElemType::F16 => "halfvec",
            ElemType::Bit => "bit",
            ElemType::Sparse => "sparsevec",
        }
    }

    /// The declared dimensions [`Kind::check_dims`] takes: bits for `bit`, elements otherwise.
    pub fn declared_dims(&self) -> Option<usize> {
        match self.elem {
            ElemType::Bit => Some(self.bits as usize),
            _ => self.typmod_dims.map(|d| d as usize),
        }
    }

    /// `ERROR` unless quantization `quant` applies to this index's type: `bit` values are
    /// already one bit per dimension and their distances are exact popcounts; `sparsevec`
    /// values store only their non-zero elements, which per-dimension codes do not fit.
    pub fn check_quant(&self, quant: Quant) {
        if self.elem == ElemType::Bit && quant != Quant::None {
            raise_hint(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "quantization is not supported for hnsw indexes on bit",
                "Leave out the quantization option: bit values are stored at one bit per dimension already.",
            );
        }
        if self.elem == ElemType::Sparse && quant != Quant::None {
            raise_hint(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "quantization is not supported for hnsw indexes on sparsevec",
                "Leave out the quantization option: sparsevec values are stored as their non-zero elements.",
            );
        }
    }

    /// `ERROR` if a sparse vector has more non-zero elements than an index takes (pgvector's
    /// words and SQLSTATE).
    pub fn check_nnz(&self, nnz: usize) {
        if nnz > MAX_NNZ_SPARSE {
            raise(
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("sparsevec cannot have more than {MAX_NNZ_SPARSE} non-zero elements for hnsw index"),
            );
        }
    }

    /// `ERROR` if `dims` cannot be indexed with quantization `quant`.
    pub fn check_dims(&self, dims: usize, quant: Quant) {
        let max = self.max_dims(quant);
        if dims > max {
            // pgvector's words, then how to index more.
            let message = format!("column cannot have more than {max} dimensions for hnsw index");
            match quant {
                Quant::None | Quant::Sq8 if dims <= MAX_DIMS_RABITQ && self.elem != ElemType::Bit => raise_hint(
                    PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                    message,
                    format!(
                        "An index WITH (quantization = 'sq8') takes up to {MAX_DIMS_SQ8} dimensions, WITH (quantization = 'rabitq1') up to {MAX_DIMS_RABITQ}."
                    ),
                ),
                _ => raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, message),
            }
        }
    }
}

/// Unqualified name of a type or function OID (format_type_be may schema-qualify it).
fn unqualified(name: *mut core::ffi::c_char) -> String {
    if name.is_null() {
        return String::new();
    }
    // SAFETY: a palloc'd NUL-terminated string from the catalog lookups below.
    let s = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    s.rsplit('.').next().unwrap_or("").trim_matches('"').to_string()
}

/// What the catalog says about an index: [`resolve`] and its filter columns.
#[derive(Clone, Copy, Debug)]
struct Cached {
    kind: Kind,
    columns: Columns,
}

fn cache(index: pg_sys::Relation) -> Cached {
    // SAFETY: rd_amcache is ours: null, or a Cached (plain data) we allocated in rd_indexcxt
    // below, freed with the relcache entry on invalidation.
    unsafe {
        if (*index).rd_amcache.is_null() {
            let c = Cached { kind: resolve(index), columns: Columns::of(index) };
            let p = pg_sys::MemoryContextAlloc((*index).rd_indexcxt, core::mem::size_of::<Cached>()).cast::<Cached>();
            p.write(c);
            (*index).rd_amcache = p.cast();
        }
        *((*index).rd_amcache as *const Cached)
    }
}

/// [`resolve`], cached in the relcache entry, so per-row inserts and per-query scans skip the
/// catalog lookups.
pub fn cached(index: pg_sys::Relation) -> Kind {
    cache(index).kind
}

/// The index's filter columns (cached like [`cached`]).
pub fn columns(index: pg_sys::Relation) -> Columns {
    cache(index).columns
}

pub(crate) fn resolve(index: pg_sys::Relation) -> Kind {
    // SAFETY: `index` is an open index relation with one key column; rd_opcintype and the
    // tuple descriptor are valid while it is open, and index_getprocid reads its opclass.
    let (type_oid, att_type, typmod, proc) = unsafe {
        let att = (*(*index).rd_att).attrs.as_slice(1)[0];
        (*(*index).rd_opcintype, att.atttypid, att.atttypmod, pg_sys::index_getprocid(index, 1, 1))
    };
    // SAFETY: both lookups take OIDs from the catalog and return palloc'd names.
    let (type_name, func_name) = unsafe { (unqualified(pg_sys::format_type_be(type_oid)), unqualified(pg_sys::get_func_name(proc))) };
    let elem = match type_name.as_str() {
        "vector" => ElemType::F32,
        "halfvec" => ElemType::F16,
        // A varbit column passes for bit (binary coercible), but an index needs one length.
        "bit" if att_type == pg_sys::VARBITOID => raise(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, "type not supported for hnsw index"),
        "bit" => ElemType::Bit,
        "sparsevec" => ElemType::Sparse,
        other => raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the first column of an hnsw index must be of type vector, halfvec, sparsevec or bit, not {other}"),
        ),
    };
    let metric = match func_name.as_str() {
        "l2_distance" | "vector_l2_squared_distance" | "halfvec_l2_squared_distance" | "sparsevec_l2_squared_distance" => Metric::L2,
        "vector_negative_inner_product" | "halfvec_negative_inner_product" | "sparsevec_negative_inner_product" | "inner_product" => {
            Metric::InnerProduct
        }
        "cosine_distance" => Metric::Cosine,
        "l1_distance" => Metric::L1,
        "hamming_distance" => Metric::Hamming,
        "jaccard_distance" => Metric::Jaccard,
        other => raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("hnsw operator class support function {other} is not a known distance"),
        ),
    };
    if metric.is_bits() != (elem == ElemType::Bit) {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("hnsw operator class support function {func_name} does not apply to type {type_name}"),
        );
    }
    if elem == ElemType::Bit {
        // Every element of a bit index has the column's length (pgvector's check and words).
        if typmod <= 0 {
            raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "column does not have dimensions");
        }
        let bits = typmod as u32;
        return Kind { metric, elem, typmod_dims: Some(bits.div_ceil(8)), bits };
    }
    if elem == ElemType::Sparse && typmod <= 0 {
        // The checker and the scans check indices against one dimension count (pgvector
        // requires it for every type).
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "column does not have dimensions");
    }
    let typmod_dims = (typmod > 0).then_some(typmod as u32);
    Kind { metric, elem, typmod_dims, bits: 0 }
}
