//! x86_64 SIMD kernel tables and the feature checks that guard them.
//!
//! Soundness rests on one rule: the `KERNELS` tables of the submodules hold safe `fn` wrappers
//! around `#[target_feature]` code, and the only way out of this module to those tables is the
//! two functions below, which return them only after `is_x86_feature_detected!` confirmed every
//! feature the code was compiled for. Keep the tables private to this module.

mod avx2;
mod avx512;

use super::Kernels;

/// The AVX-512 table, if this CPU has AVX-512F plus the AVX2, FMA, F16C and POPCNT it is
/// compiled with.
pub(super) fn avx512_kernels() -> Option<&'static Kernels> {
    let ok = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("popcnt");
    ok.then_some(&avx512::KERNELS)
}

/// The AVX2 table, if this CPU has AVX2, FMA, F16C and POPCNT (every AVX2 CPU has POPCNT, but
/// the table is compiled with it, so it is checked like the others).
pub(super) fn avx2_kernels() -> Option<&'static Kernels> {
    let ok = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("popcnt");
    ok.then_some(&avx2::KERNELS)
}

/// Defines safe `fn` wrappers, coercible to the table's `fn` pointer types, around
/// `#[target_feature]` kernels of the same name in `$imp`.
///
/// Each wrapper is private to its ISA module and only stored in that module's `KERNELS`, so it
/// can only run after the detection in `avx512_kernels` / `avx2_kernels` succeeded.
macro_rules! safe_wrappers {
    ($imp:ident: $($name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {
        $(
            fn $name($($arg: $ty),*) $(-> $ret)? {
                // SAFETY: this wrapper is only reachable through this module's `KERNELS`, which
                // `super::*_kernels()` hands out only after detecting every target feature that
                // `$imp::$name` is compiled with (see the module docs of `distance::x86`).
                unsafe { $imp::$name($($arg),*) }
            }
        )*
    };
}
pub(crate) use safe_wrappers;

/// Fills a `Kernels` table from functions with the field names in the current module.
macro_rules! kernel_table {
    ($name:literal) => {
        Kernels {
            name: $name,
            l2_squared,
            dot,
            l1,
            norm_squared,
            cosine_parts,
            l2_squared_f16,
            dot_f16,
            l1_f16,
            norm_squared_f16,
            cosine_parts_f16,
            l2_squared_f32_f16,
            dot_f32_f16,
            l1_f32_f16,
            f32_to_f16,
            f16_to_f32,
            dot_u8,
            l1_u8,
            dot_bits,
            hamming_bits,
            jaccard_bits,
        }
    };
}
pub(crate) use kernel_table;

/// The wrapper list both ISA modules share: one line per `Kernels` field.
macro_rules! all_safe_wrappers {
    ($imp:ident) => {
        $crate::distance::x86::safe_wrappers! { $imp:
            l2_squared(a: &[f32], b: &[f32]) -> f32;
            dot(a: &[f32], b: &[f32]) -> f32;
            l1(a: &[f32], b: &[f32]) -> f32;
            norm_squared(a: &[f32]) -> f32;
            cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32);
            l2_squared_f16(a: &[f16], b: &[f16]) -> f32;
            dot_f16(a: &[f16], b: &[f16]) -> f32;
            l1_f16(a: &[f16], b: &[f16]) -> f32;
            norm_squared_f16(a: &[f16]) -> f32;
            cosine_parts_f16(a: &[f16], b: &[f16]) -> (f32, f32, f32);
            l2_squared_f32_f16(a: &[f32], b: &[f16]) -> f32;
            dot_f32_f16(a: &[f32], b: &[f16]) -> f32;
            l1_f32_f16(a: &[f32], b: &[f16]) -> f32;
            f32_to_f16(src: &[f32], dst: &mut [f16]);
            f16_to_f32(src: &[f16], dst: &mut [f32]);
            dot_u8(w: &[f32], c: &[u8]) -> f32;
            l1_u8(a: &[f32], s: &[f32], c: &[u8]) -> f32;
            dot_bits(planes: &[u64], bits: &[u8]) -> i64;
            hamming_bits(a: &[u8], b: &[u8]) -> u64;
            jaccard_bits(a: &[u8], b: &[u8]) -> (u64, u64);
        }
    };
}
pub(crate) use all_safe_wrappers;
