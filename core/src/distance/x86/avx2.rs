//! AVX2 + FMA + F16C kernels: 8 f32 lanes, eight accumulators per reduction (four for `l1_u8`),
//! masked tails; POPCNT for `dot_bits`.
//!
//! `super::avx2_kernels` checks all four features before handing out [`KERNELS`].

use half::f16;

use crate::distance::Kernels;

pub(super) static KERNELS: Kernels = super::kernel_table!("avx2");

super::all_safe_wrappers!(imp);

mod imp {
    use core::arch::x86_64::*;

    use half::f16;

    use crate::distance::{common_len, common_len3};

    /// f32 lanes per vector.
    const LANES: usize = 8;
    /// Independent accumulators per reduction: FMA latency (4 cycles) times two FMA ports needs
    /// eight chains in flight; eight accumulators plus operands still fit in 16 ymm registers.
    const UNROLL: usize = 8;
    /// The cosine kernel keeps three quantities; 3 x 2 accumulators plus the loaded operands
    /// fit in the 16 ymm registers without spilling.
    const COS_UNROLL: usize = 2;
    /// Round to nearest-even (what `half::f16::from_f32` does), independent of MXCSR.
    const ROUND: i32 = _MM_FROUND_TO_NEAREST_INT;
    /// Accumulators of `l1_u8`: each step is four dependent vector ops on two ports, so four
    /// chains already cover the add latency.
    const L1_U8_UNROLL: usize = 4;

    /// Loads 8 f32.
    ///
    /// # Safety
    /// `p .. p + 8` must be readable f32s.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_f32(p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees 8 readable f32s; loadu has no alignment requirement.
        unsafe { _mm256_loadu_ps(p) }
    }

    /// Loads 8 f16 and widens them to f32 (exact).
    ///
    /// # Safety
    /// `p .. p + 8` must be readable f16s.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_f16(p: *const f16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable f16s = 16 bytes; loadu has no alignment
        // requirement, and f16 is a transparent u16 so the bits are the IEEE binary16 encoding.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast::<__m128i>()) })
    }

    /// Loads 8 u8 codes and widens them to f32 (exact).
    ///
    /// # Safety
    /// `p .. p + 8` must be readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_u8(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 8 readable bytes; movq has no alignment requirement.
        let b = unsafe { _mm_loadl_epi64(p.cast::<__m128i>()) };
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b))
    }

    /// Lane mask with the first `m` (<= 8) lanes enabled, for maskload / maskstore.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn first_lanes(m: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(m.min(LANES) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// Loads the first `min(s.len(), 8)` f32 of `s`; the other lanes are 0.0, which adds nothing
    /// to any of the reductions below.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn tail_f32(s: &[f32]) -> __m256 {
        let mask = first_lanes(s.len());
        // SAFETY: the mask enables only the first min(s.len(), 8) lanes; vmaskmovps does not
        // access (or fault on) masked-off lanes, so nothing outside `s` is read.
        unsafe { _mm256_maskload_ps(s.as_ptr(), mask) }
    }

    /// Like `tail_f32` for f16. AVX2 has no 16-bit masked load, so whole f16 pairs come in
    /// through a masked 32-bit load and an odd last element is blended in from a broadcast.
    /// (Going through a stack buffer instead costs a store-forwarding stall per call.)
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn tail_f16(s: &[f16]) -> __m256 {
        let m = s.len().min(LANES);
        let pairs = (m / 2) as i32;
        let mask = _mm_cmpgt_epi32(_mm_set1_epi32(pairs), _mm_setr_epi32(0, 1, 2, 3));
        // SAFETY: the mask enables only the first m / 2 dwords, i.e. f16 elements 0 .. 2 * (m / 2)
        // <= s.len(); vpmaskmovd does not access (or fault on) masked-off dwords.
        let mut h = unsafe { _mm_maskload_epi32(s.as_ptr().cast::<i32>(), mask) };
        if m % 2 == 1 {
            let last = _mm_set1_epi16(s[m - 1].to_bits() as i16);
            let lane = _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7);
            let at = _mm_cmpeq_epi16(lane, _mm_set1_epi16((m - 1) as i16));
            h = _mm_blendv_epi8(h, last, at);
        }
        _mm256_cvtph_ps(h)
    }

    /// Like `tail_f32` for u8 codes. AVX2 has no byte-masked load, so the bytes are gathered in
    /// a general register (a stack buffer would cost a store-forwarding stall instead).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn tail_u8(s: &[u8]) -> __m256 {
        let mut bits = 0u64;
        for (j, &b) in s.iter().take(LANES).enumerate() {
            bits |= u64::from(b) << (8 * j);
        }
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bits as i64)))
    }

    /// Sums all lanes of all accumulators; N must be a power of two. Adding pairwise keeps the
    /// dependency chain at log2(N) vector adds before the in-register reduction.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum<const N: usize>(mut acc: [__m256; N]) -> f32 {
        let mut w = N;
        while w > 1 {
            w /= 2;
            for k in 0..w {
                acc[k] = _mm256_add_ps(acc[k], acc[k + w]);
            }
        }
        let v = acc[0];
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn abs(x: __m256) -> __m256 {
        _mm256_andnot_ps(_mm256_set1_ps(-0.0), x)
    }

    /// Defines a two-slice reduction `sum step(a[i], b[i])` with `UNROLL` accumulators.
    macro_rules! reduce2 {
        ($name:ident($ta:ty, $tb:ty), $la:ident / $tla:ident, $lb:ident / $tlb:ident,
         |$acc:ident, $x:ident, $y:ident| $step:expr) => {
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(super) fn $name(a: &[$ta], b: &[$tb]) -> f32 {
                let n = common_len(a.len(), b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut acc = [_mm256_setzero_ps(); UNROLL];
                let mut i = 0;
                // No partial first vector to align `a`: the order of the sums, and so the last
                // bit of a distance, must not depend on where a vector lies in memory, or an
                // index scan and the SQL operator could order two rows differently.
                while i + UNROLL * LANES <= n {
                    for (k, slot) in acc.iter_mut().enumerate() {
                        let o = i + k * LANES;
                        // SAFETY: o + LANES <= i + UNROLL * LANES <= n, and n is at most the
                        // length of either slice.
                        let ($x, $y) = unsafe { ($la(pa.add(o)), $lb(pb.add(o))) };
                        let $acc = *slot;
                        *slot = $step;
                    }
                    i += UNROLL * LANES;
                }
                // The remainder still spreads over several accumulators, so short vectors
                // (below one unrolled block) do not serialise on one FMA chain.
                while i + 2 * LANES <= n {
                    for (k, slot) in acc[..2].iter_mut().enumerate() {
                        let o = i + k * LANES;
                        // SAFETY: o + LANES <= i + 2 * LANES <= n, and n is at most the length
                        // of either slice.
                        let ($x, $y) = unsafe { ($la(pa.add(o)), $lb(pb.add(o))) };
                        let $acc = *slot;
                        *slot = $step;
                    }
                    i += 2 * LANES;
                }
                if i + LANES <= n {
                    // SAFETY: i + LANES <= n, and n is at most the length of either slice.
                    let ($x, $y) = unsafe { ($la(pa.add(i)), $lb(pb.add(i))) };
                    let $acc = acc[2];
                    acc[2] = $step;
                    i += LANES;
                }
                if i < n {
                    let ($x, $y) = ($tla(&a[i..n]), $tlb(&b[i..n]));
                    let $acc = acc[3];
                    acc[3] = $step;
                }
                hsum(acc)
            }
        };
    }

    reduce2!(l2_squared(f32, f32), load_f32 / tail_f32, load_f32 / tail_f32, |acc, x, y| {
        let d = _mm256_sub_ps(x, y);
        _mm256_fmadd_ps(d, d, acc)
    });
    reduce2!(dot(f32, f32), load_f32 / tail_f32, load_f32 / tail_f32, |acc, x, y| _mm256_fmadd_ps(x, y, acc));
    reduce2!(l1(f32, f32), load_f32 / tail_f32, load_f32 / tail_f32, |acc, x, y| _mm256_add_ps(acc, abs(_mm256_sub_ps(x, y))));

    reduce2!(l2_squared_f16(f16, f16), load_f16 / tail_f16, load_f16 / tail_f16, |acc, x, y| {
        let d = _mm256_sub_ps(x, y);
        _mm256_fmadd_ps(d, d, acc)
    });
    reduce2!(dot_f16(f16, f16), load_f16 / tail_f16, load_f16 / tail_f16, |acc, x, y| _mm256_fmadd_ps(x, y, acc));
    reduce2!(l1_f16(f16, f16), load_f16 / tail_f16, load_f16 / tail_f16, |acc, x, y| _mm256_add_ps(acc, abs(_mm256_sub_ps(x, y))));

    reduce2!(l2_squared_f32_f16(f32, f16), load_f32 / tail_f32, load_f16 / tail_f16, |acc, x, y| {
        let d = _mm256_sub_ps(x, y);
        _mm256_fmadd_ps(d, d, acc)
    });
    reduce2!(dot_f32_f16(f32, f16), load_f32 / tail_f32, load_f16 / tail_f16, |acc, x, y| _mm256_fmadd_ps(x, y, acc));
    reduce2!(l1_f32_f16(f32, f16), load_f32 / tail_f32, load_f16 / tail_f16, |acc, x, y| _mm256_add_ps(acc, abs(_mm256_sub_ps(x, y))));

    // The byte widening (one shuffle-port uop per 8 codes) bounds this one, not the FMAs.
    reduce2!(dot_u8(f32, u8), load_f32 / tail_f32, load_u8 / tail_u8, |acc, x, y| _mm256_fmadd_ps(x, y, acc));

    /// acc + |a - s*c|, with a - s*c in one rounding.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn l1_u8_step(acc: __m256, a: __m256, s: __m256, c: __m256) -> __m256 {
        _mm256_add_ps(acc, abs(_mm256_fnmadd_ps(s, c, a)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn l1_u8(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
        let n = common_len3(a.len(), s.len(), c.len());
        let (pa, ps, pc) = (a.as_ptr(), s.as_ptr(), c.as_ptr());
        let mut acc = [_mm256_setzero_ps(); L1_U8_UNROLL];
        let mut i = 0;
        // No alignment step, as in `reduce2`.
        while i + L1_U8_UNROLL * LANES <= n {
            for (k, slot) in acc.iter_mut().enumerate() {
                let o = i + k * LANES;
                // SAFETY: o + LANES <= i + L1_U8_UNROLL * LANES <= n, and n is at most the
                // length of each slice.
                let (x, sc, y) = unsafe { (load_f32(pa.add(o)), load_f32(ps.add(o)), load_u8(pc.add(o))) };
                *slot = l1_u8_step(*slot, x, sc, y);
            }
            i += L1_U8_UNROLL * LANES;
        }
        // Fewer than L1_U8_UNROLL vectors are left: each goes to its own accumulator, and the
        // partial one to the last, which none of them reaches.
        let mut k = 0;
        while i + LANES <= n {
            // SAFETY: i + LANES <= n, and n is at most the length of each slice.
            let (x, sc, y) = unsafe { (load_f32(pa.add(i)), load_f32(ps.add(i)), load_u8(pc.add(i))) };
            acc[k] = l1_u8_step(acc[k], x, sc, y);
            k += 1;
            i += LANES;
        }
        if i < n {
            let (x, sc, y) = (tail_f32(&a[i..n]), tail_f32(&s[i..n]), tail_u8(&c[i..n]));
            acc[L1_U8_UNROLL - 1] = l1_u8_step(acc[L1_U8_UNROLL - 1], x, sc, y);
        }
        hsum(acc)
    }

    // After inlining both loads come from the same address, so LLVM keeps one of them.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn norm_squared(a: &[f32]) -> f32 {
        dot(a, a)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn norm_squared_f16(a: &[f16]) -> f32 {
        dot_f16(a, a)
    }

    /// Defines a one-pass (dot, |a|^2, |b|^2) kernel with `COS_UNROLL` accumulators each.
    macro_rules! cosine {
        ($name:ident($t:ty), $ld:ident / $tl:ident) => {
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(super) fn $name(a: &[$t], b: &[$t]) -> (f32, f32, f32) {
                let n = common_len(a.len(), b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut ab = [_mm256_setzero_ps(); COS_UNROLL];
                let mut aa = [_mm256_setzero_ps(); COS_UNROLL];
                let mut bb = [_mm256_setzero_ps(); COS_UNROLL];
                let mut i = 0;
                // No alignment step, as in `reduce2`.
                while i + COS_UNROLL * LANES <= n {
                    for k in 0..COS_UNROLL {
                        let o = i + k * LANES;
                        // SAFETY: o + LANES <= i + COS_UNROLL * LANES <= n, and n is at most
                        // the length of either slice.
                        let (x, y) = unsafe { ($ld(pa.add(o)), $ld(pb.add(o))) };
                        ab[k] = _mm256_fmadd_ps(x, y, ab[k]);
                        aa[k] = _mm256_fmadd_ps(x, x, aa[k]);
                        bb[k] = _mm256_fmadd_ps(y, y, bb[k]);
                    }
                    i += COS_UNROLL * LANES;
                }
                while i + LANES <= n {
                    // SAFETY: i + LANES <= n, and n is at most the length of either slice.
                    let (x, y) = unsafe { ($ld(pa.add(i)), $ld(pb.add(i))) };
                    ab[0] = _mm256_fmadd_ps(x, y, ab[0]);
                    aa[0] = _mm256_fmadd_ps(x, x, aa[0]);
                    bb[0] = _mm256_fmadd_ps(y, y, bb[0]);
                    i += LANES;
                }
                if i < n {
                    let (x, y) = ($tl(&a[i..n]), $tl(&b[i..n]));
                    ab[1] = _mm256_fmadd_ps(x, y, ab[1]);
                    aa[1] = _mm256_fmadd_ps(x, x, aa[1]);
                    bb[1] = _mm256_fmadd_ps(y, y, bb[1]);
                }
                (hsum(ab), hsum(aa), hsum(bb))
            }
        };
    }

    cosine!(cosine_parts(f32), load_f32 / tail_f32);
    cosine!(cosine_parts_f16(f16), load_f16 / tail_f16);

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
        let n = common_len(src.len(), dst.len());
        let (ps, pd) = (src.as_ptr(), dst.as_mut_ptr().cast::<u16>());
        let mut i = 0;
        while i + LANES <= n {
            // SAFETY: i + LANES <= n, so 8 f32 are readable at ps + i and 8 f16 (f16 is a
            // transparent u16) are writable at pd + i; loadu/storeu need no alignment.
            unsafe {
                let h = _mm256_cvtps_ph::<ROUND>(load_f32(ps.add(i)));
                _mm_storeu_si128(pd.add(i).cast::<__m128i>(), h);
            }
            i += LANES;
        }
        if i < n {
            let h = _mm256_cvtps_ph::<ROUND>(tail_f32(&src[i..n]));
            let mut buf = [0u16; LANES];
            // SAFETY: `buf` is 8 u16 = 16 writable bytes; storeu needs no alignment.
            unsafe { _mm_storeu_si128(buf.as_mut_ptr().cast::<__m128i>(), h) };
            for (d, &bits) in dst[i..n].iter_mut().zip(&buf) {
                *d = f16::from_bits(bits);
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
        let n = common_len(src.len(), dst.len());
        let (ps, pd) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        while i + LANES <= n {
            // SAFETY: i + LANES <= n, so 8 f16 are readable at ps + i and 8 f32 are writable at
            // pd + i; loadu/storeu need no alignment.
            unsafe { _mm256_storeu_ps(pd.add(i), load_f16(ps.add(i))) };
            i += LANES;
        }
        if i < n {
            let x = tail_f16(&src[i..n]);
            let mask = first_lanes(n - i);
            // SAFETY: n - i < 8 and the mask enables only lanes 0 .. n - i, all inside `dst`;
            // vmaskmovps does not write (or fault on) masked-off lanes.
            unsafe { _mm256_maskstore_ps(pd.add(i), mask, x) };
        }
    }

    /// The portable body, compiled with POPCNT (one instruction per word instead of a
    /// bit-twiddling sequence). RaBitQ codes are short (48 bytes at 384 dims), so a vector
    /// popcount through byte shuffles would spend more on its setup and tail than it saves.
    #[target_feature(enable = "avx2,fma,f16c,popcnt")]
    pub(super) fn dot_bits(planes: &[u64], bits: &[u8]) -> i64 {
        crate::distance::scalar::dot_bits_words(planes, bits)
    }

    /// Popcounts of short bit strings (48 bytes for a binary-quantized 384-dimension vector):
    /// one POPCNT per word, like `dot_bits`.
    #[target_feature(enable = "avx2,fma,f16c,popcnt")]
    pub(super) fn hamming_bits(a: &[u8], b: &[u8]) -> u64 {
        crate::distance::scalar::hamming_bits_words(a, b)
    }

    #[target_feature(enable = "avx2,fma,f16c,popcnt")]
    pub(super) fn jaccard_bits(a: &[u8], b: &[u8]) -> (u64, u64) {
        crate::distance::scalar::jaccard_bits_words(a, b)
    }
}
