//! AVX-512F kernels: 16 f32 lanes, eight accumulators per reduction (four for `l1_u8`), masked
//! tails.
//!
//! Compiled for `avx512f,avx2,fma,f16c,popcnt`; `super::avx512_kernels` checks all five before
//! handing out [`KERNELS`]. No AVX-512BW/VL/FP16 instructions are used, so any AVX-512 CPU
//! qualifies. `dot_bits` alone uses AVX-512 VPOPCNTDQ, where a CPU has it (checked per call).

use half::f16;

use crate::distance::Kernels;

pub(super) static KERNELS: Kernels = super::kernel_table!("avx512");

super::all_safe_wrappers!(imp);

mod imp {
    use core::arch::x86_64::*;

    use half::f16;

    use crate::distance::{bits_shape, common_len, common_len3};

    /// f32 lanes per vector.
    const LANES: usize = 16;
    /// Independent accumulators per reduction: FMA latency (4 cycles) times two FMA ports needs
    /// eight chains in flight to keep both ports busy.
    const UNROLL: usize = 8;
    /// The cosine kernel keeps three quantities, so fewer vectors per quantity already give
    /// twelve independent chains.
    const COS_UNROLL: usize = 4;
    /// Round to nearest-even (what `half::f16::from_f32` does), independent of MXCSR.
    const ROUND: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    /// Accumulators of `l1_u8`: each step is four dependent vector ops on two ports, so four
    /// chains already cover the add latency.
    const L1_U8_UNROLL: usize = 4;

    /// Loads 16 f32.
    ///
    /// # Safety
    /// `p .. p + 16` must be readable f32s.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    unsafe fn load_f32(p: *const f32) -> __m512 {
        // SAFETY: the caller guarantees 16 readable f32s; loadu has no alignment requirement.
        unsafe { _mm512_loadu_ps(p) }
    }

    /// Loads 16 f16 and widens them to f32 (exact).
    ///
    /// # Safety
    /// `p .. p + 16` must be readable f16s.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    unsafe fn load_f16(p: *const f16) -> __m512 {
        // SAFETY: the caller guarantees 16 readable f16s = 32 bytes; loadu has no alignment
        // requirement, and f16 is a transparent u16 so the bits are the IEEE binary16 encoding.
        _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast::<__m256i>()) })
    }

    /// Loads 16 u8 codes and widens them to f32 (exact).
    ///
    /// # Safety
    /// `p .. p + 16` must be readable bytes.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    unsafe fn load_u8(p: *const u8) -> __m512 {
        // SAFETY: the caller guarantees 16 readable bytes; loadu has no alignment requirement.
        let b = unsafe { _mm_loadu_si128(p.cast::<__m128i>()) };
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b))
    }

    /// Loads the first `min(s.len(), 16)` f32 of `s`; the other lanes are 0.0, which adds nothing
    /// to any of the reductions below.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    fn tail_f32(s: &[f32]) -> __m512 {
        let m = s.len().min(LANES);
        let mask = ((1u32 << m) - 1) as __mmask16;
        // SAFETY: the mask enables only the first m <= s.len() lanes; masked-off lanes are not
        // accessed (and cannot fault), so nothing outside `s` is read.
        unsafe { _mm512_maskz_loadu_ps(mask, s.as_ptr()) }
    }

    /// Like `tail_f32` for f16. A masked 16-bit load needs AVX-512BW, so whole f16 pairs come in
    /// through a masked 32-bit load and an odd last element is blended in from a broadcast.
    /// (Going through a stack buffer instead costs a store-forwarding stall per call, which
    /// showed up as +10..30 ns on ~768-dim halfvecs.)
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    fn tail_f16(s: &[f16]) -> __m512 {
        let m = s.len().min(LANES);
        let pairs = m / 2;
        let mask = ((1u32 << pairs) - 1) as __mmask16;
        // SAFETY: the mask enables only the first m / 2 dwords, i.e. f16 elements 0 .. 2 * (m / 2)
        // <= s.len(); masked-off dwords are not accessed (and cannot fault). loadu has no
        // alignment requirement.
        let v = unsafe { _mm512_maskz_loadu_epi32(mask, s.as_ptr().cast::<i32>()) };
        let mut h = _mm512_castsi512_si256(v);
        if m % 2 == 1 {
            let last = _mm256_set1_epi16(s[m - 1].to_bits() as i16);
            let lane = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let at = _mm256_cmpeq_epi16(lane, _mm256_set1_epi16((m - 1) as i16));
            h = _mm256_blendv_epi8(h, last, at);
        }
        _mm512_cvtph_ps(h)
    }

    /// Like `tail_f32` for u8 codes. A byte-masked load needs AVX-512BW, so the bytes are
    /// gathered in general registers (a stack buffer would cost a store-forwarding stall).
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    fn tail_u8(s: &[u8]) -> __m512 {
        let mut bits = 0u128;
        for (j, &b) in s.iter().take(LANES).enumerate() {
            bits |= u128::from(b) << (8 * j);
        }
        let v = _mm_set_epi64x((bits >> 64) as i64, bits as i64);
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v))
    }

    /// Sums all lanes of all accumulators; N must be a power of two. Adding pairwise keeps the
    /// dependency chain at log2(N) vector adds before the in-register reduction.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    fn hsum<const N: usize>(mut acc: [__m512; N]) -> f32 {
        let mut w = N;
        while w > 1 {
            w /= 2;
            for k in 0..w {
                acc[k] = _mm512_add_ps(acc[k], acc[k + w]);
            }
        }
        _mm512_reduce_add_ps(acc[0])
    }

    /// Defines a two-slice reduction `sum step(a[i], b[i])` with `UNROLL` accumulators.
    macro_rules! reduce2 {
        ($name:ident($ta:ty, $tb:ty), $la:ident / $tla:ident, $lb:ident / $tlb:ident,
         |$acc:ident, $x:ident, $y:ident| $step:expr) => {
            #[target_feature(enable = "avx512f,avx2,fma,f16c")]
            pub(super) fn $name(a: &[$ta], b: &[$tb]) -> f32 {
                let n = common_len(a.len(), b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut acc = [_mm512_setzero_ps(); UNROLL];
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
        let d = _mm512_sub_ps(x, y);
        _mm512_fmadd_ps(d, d, acc)
    });
    reduce2!(dot(f32, f32), load_f32 / tail_f32, load_f32 / tail_f32, |acc, x, y| _mm512_fmadd_ps(x, y, acc));
    reduce2!(l1(f32, f32), load_f32 / tail_f32, load_f32 / tail_f32, |acc, x, y| _mm512_add_ps(acc, _mm512_abs_ps(_mm512_sub_ps(x, y))));

    reduce2!(l2_squared_f16(f16, f16), load_f16 / tail_f16, load_f16 / tail_f16, |acc, x, y| {
        let d = _mm512_sub_ps(x, y);
        _mm512_fmadd_ps(d, d, acc)
    });
    reduce2!(dot_f16(f16, f16), load_f16 / tail_f16, load_f16 / tail_f16, |acc, x, y| _mm512_fmadd_ps(x, y, acc));
    reduce2!(l1_f16(f16, f16), load_f16 / tail_f16, load_f16 / tail_f16, |acc, x, y| _mm512_add_ps(
        acc,
        _mm512_abs_ps(_mm512_sub_ps(x, y))
    ));

    reduce2!(l2_squared_f32_f16(f32, f16), load_f32 / tail_f32, load_f16 / tail_f16, |acc, x, y| {
        let d = _mm512_sub_ps(x, y);
        _mm512_fmadd_ps(d, d, acc)
    });
    reduce2!(dot_f32_f16(f32, f16), load_f32 / tail_f32, load_f16 / tail_f16, |acc, x, y| _mm512_fmadd_ps(x, y, acc));
    reduce2!(l1_f32_f16(f32, f16), load_f32 / tail_f32, load_f16 / tail_f16, |acc, x, y| _mm512_add_ps(
        acc,
        _mm512_abs_ps(_mm512_sub_ps(x, y))
    ));

    // The byte widening (one shuffle-port uop per 16 codes) bounds this one, not the FMAs.
    reduce2!(dot_u8(f32, u8), load_f32 / tail_f32, load_u8 / tail_u8, |acc, x, y| _mm512_fmadd_ps(x, y, acc));

    /// acc + |a - s*c|, with a - s*c in one rounding.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    fn l1_u8_step(acc: __m512, a: __m512, s: __m512, c: __m512) -> __m512 {
        _mm512_add_ps(acc, _mm512_abs_ps(_mm512_fnmadd_ps(s, c, a)))
    }

    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) fn l1_u8(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
        let n = common_len3(a.len(), s.len(), c.len());
        let (pa, ps, pc) = (a.as_ptr(), s.as_ptr(), c.as_ptr());
        let mut acc = [_mm512_setzero_ps(); L1_U8_UNROLL];
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
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) fn norm_squared(a: &[f32]) -> f32 {
        dot(a, a)
    }

    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) fn norm_squared_f16(a: &[f16]) -> f32 {
        dot_f16(a, a)
    }

    /// Defines a one-pass (dot, |a|^2, |b|^2) kernel with `COS_UNROLL` accumulators each.
    macro_rules! cosine {
        ($name:ident($t:ty), $ld:ident / $tl:ident) => {
            #[target_feature(enable = "avx512f,avx2,fma,f16c")]
            pub(super) fn $name(a: &[$t], b: &[$t]) -> (f32, f32, f32) {
                let n = common_len(a.len(), b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut ab = [_mm512_setzero_ps(); COS_UNROLL];
                let mut aa = [_mm512_setzero_ps(); COS_UNROLL];
                let mut bb = [_mm512_setzero_ps(); COS_UNROLL];
                let mut i = 0;
                // No alignment step, as in `reduce2`.
                while i + COS_UNROLL * LANES <= n {
                    for k in 0..COS_UNROLL {
                        let o = i + k * LANES;
                        // SAFETY: o + LANES <= i + COS_UNROLL * LANES <= n, and n is at most the
                        // length of either slice.
                        let (x, y) = unsafe { ($ld(pa.add(o)), $ld(pb.add(o))) };
                        ab[k] = _mm512_fmadd_ps(x, y, ab[k]);
                        aa[k] = _mm512_fmadd_ps(x, x, aa[k]);
                        bb[k] = _mm512_fmadd_ps(y, y, bb[k]);
                    }
                    i += COS_UNROLL * LANES;
                }
                while i + LANES <= n {
                    // SAFETY: i + LANES <= n, and n is at most the length of either slice.
                    let (x, y) = unsafe { ($ld(pa.add(i)), $ld(pb.add(i))) };
                    ab[0] = _mm512_fmadd_ps(x, y, ab[0]);
                    aa[0] = _mm512_fmadd_ps(x, x, aa[0]);
                    bb[0] = _mm512_fmadd_ps(y, y, bb[0]);
                    i += LANES;
                }
                if i < n {
                    let (x, y) = ($tl(&a[i..n]), $tl(&b[i..n]));
                    ab[1] = _mm512_fmadd_ps(x, y, ab[1]);
                    aa[1] = _mm512_fmadd_ps(x, x, aa[1]);
                    bb[1] = _mm512_fmadd_ps(y, y, bb[1]);
                }
                (hsum(ab), hsum(aa), hsum(bb))
            }
        };
    }

    cosine!(cosine_parts(f32), load_f32 / tail_f32);
    cosine!(cosine_parts_f16(f16), load_f16 / tail_f16);

    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
        let n = common_len(src.len(), dst.len());
        let (ps, pd) = (src.as_ptr(), dst.as_mut_ptr().cast::<u16>());
        let mut i = 0;
        while i + LANES <= n {
            // SAFETY: i + LANES <= n, so 16 f32 are readable at ps + i and 16 f16 (f16 is a
            // transparent u16) are writable at pd + i; loadu/storeu need no alignment.
            unsafe {
                let h = _mm512_cvtps_ph::<ROUND>(load_f32(ps.add(i)));
                _mm256_storeu_si256(pd.add(i).cast::<__m256i>(), h);
            }
            i += LANES;
        }
        if i < n {
            let h = _mm512_cvtps_ph::<ROUND>(tail_f32(&src[i..n]));
            let mut buf = [0u16; LANES];
            // SAFETY: `buf` is 16 u16 = 32 writable bytes; storeu needs no alignment.
            unsafe { _mm256_storeu_si256(buf.as_mut_ptr().cast::<__m256i>(), h) };
            for (d, &bits) in dst[i..n].iter_mut().zip(&buf) {
                *d = f16::from_bits(bits);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
        let n = common_len(src.len(), dst.len());
        let (ps, pd) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        while i + LANES <= n {
            // SAFETY: i + LANES <= n, so 16 f16 are readable at ps + i and 16 f32 are writable
            // at pd + i; loadu/storeu need no alignment.
            unsafe { _mm512_storeu_ps(pd.add(i), load_f16(ps.add(i))) };
            i += LANES;
        }
        if i < n {
            let x = tail_f16(&src[i..n]);
            let mask = ((1u32 << (n - i)) - 1) as __mmask16;
            // SAFETY: n - i < 16 and the mask enables only lanes 0 .. n - i, all inside `dst`;
            // masked-off lanes are not written (and cannot fault).
            unsafe { _mm512_mask_storeu_ps(pd.add(i), mask, x) };
        }
    }

    /// VPOPCNTDQ where the CPU has it (Ice Lake and later, Zen 4 and later) and the code has at
    /// least one whole 8-word group (512 dimensions), else the portable body compiled with
    /// POPCNT, which is faster on shorter codes (no masked loads and lane reductions to pay
    /// for). The feature check is a load of std's cached feature bits, and keeps one AVX-512
    /// table for CPUs with and without the extension.
    #[target_feature(enable = "avx512f,avx2,fma,f16c,popcnt")]
    pub(super) fn dot_bits(planes: &[u64], bits: &[u8]) -> i64 {
        if bits.len() >= 64 && is_x86_feature_detected!("avx512vpopcntdq") {
            // SAFETY: VPOPCNTDQ was just detected, and every other feature `dot_bits_vpopcnt` is
            // compiled with is one this function is compiled with (so the CPU has it).
            unsafe { dot_bits_vpopcnt(planes, bits) }
        } else {
            crate::distance::scalar::dot_bits_words(planes, bits)
        }
    }

    /// `dot_bits` on 8 words at a time; a partial last group comes in through masked loads.
    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx2,fma,f16c,popcnt")]
    fn dot_bits_vpopcnt(planes: &[u64], bits: &[u8]) -> i64 {
        let (words, np) = bits_shape(planes.len(), bits.len());
        match np {
            0 => 0,
            1 => dot_bits_vpopcnt_n::<1>(planes, bits, words),
            2 => dot_bits_vpopcnt_n::<2>(planes, bits, words),
            3 => dot_bits_vpopcnt_n::<3>(planes, bits, words),
            4 => dot_bits_vpopcnt_n::<4>(planes, bits, words),
            5 => dot_bits_vpopcnt_n::<5>(planes, bits, words),
            6 => dot_bits_vpopcnt_n::<6>(planes, bits, words),
            7 => dot_bits_vpopcnt_n::<7>(planes, bits, words),
            _ => dot_bits_vpopcnt_n::<8>(planes, bits, words),
        }
    }

    /// N planes of `words` words (N * words <= planes.len(), 8 * words <= bits.len()): each
    /// group of code words is loaded once for all planes, the planes' counts are weighted in
    /// the vector and summed across lanes once.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx2,fma,f16c,popcnt")]
    fn dot_bits_vpopcnt_n<const N: usize>(planes: &[u64], bits: &[u8], words: usize) -> i64 {
        const WORDS: usize = 8;
        let p: [*const i64; N] = std::array::from_fn(|j| planes[j * words..(j + 1) * words].as_ptr().cast::<i64>());
        let pc = bits[..8 * words].as_ptr().cast::<i64>();
        let mut acc = [_mm512_setzero_si512(); N];
        let mut w = 0;
        while w + WORDS <= words {
            // SAFETY: w + 8 <= words, so 64 bytes of `bits` (8 * words of them) are readable at
            // word w; loadu needs no alignment.
            let c = unsafe { _mm512_loadu_epi64(pc.add(w)) };
            for (a, &pj) in acc.iter_mut().zip(&p) {
                // SAFETY: each plane pointer starts a subslice of `words` u64 of `planes`, and
                // w + 8 <= words.
                let x = unsafe { _mm512_loadu_epi64(pj.add(w)) };
                *a = _mm512_add_epi64(*a, _mm512_popcnt_epi64(_mm512_and_si512(x, c)));
            }
            w += WORDS;
        }
        if w < words {
            // 1 <= words - w <= 7 lanes.
            let mask: __mmask8 = (1u8 << (words - w)) - 1;
            // SAFETY: the mask enables only lanes 0 .. words - w, i.e. bytes 8w .. 8 * words of
            // `bits`; masked-off lanes are neither read nor able to fault.
            let c = unsafe { _mm512_maskz_loadu_epi64(mask, pc.add(w)) };
            for (a, &pj) in acc.iter_mut().zip(&p) {
                // SAFETY: as above, words w .. words of a plane's subslice of `words` u64.
                let x = unsafe { _mm512_maskz_loadu_epi64(mask, pj.add(w)) };
                *a = _mm512_add_epi64(*a, _mm512_popcnt_epi64(_mm512_and_si512(x, c)));
            }
        }
        let mut total = _mm512_setzero_si512();
        for (j, &a) in acc.iter().enumerate() {
            let weighted = _mm512_sll_epi64(a, _mm_cvtsi64_si128(j as i64));
            total = if j + 1 == N { _mm512_sub_epi64(total, weighted) } else { _mm512_add_epi64(total, weighted) };
        }
        _mm512_reduce_add_epi64(total)
    }

    /// VPOPCNTDQ on 64 bytes at a time where the CPU has it and the strings are that long
    /// (checked per call, like `dot_bits`); POPCNT per word otherwise.
    #[target_feature(enable = "avx512f,avx2,fma,f16c,popcnt")]
    pub(super) fn hamming_bits(a: &[u8], b: &[u8]) -> u64 {
        if a.len() >= 64 && is_x86_feature_detected!("avx512vpopcntdq") {
            // SAFETY: VPOPCNTDQ was just detected; the other features are this function's.
            let (v, done) = unsafe { popcnt_blocks::<0>(a, b) };
            v.0 + crate::distance::scalar::hamming_bits_words(&a[done..], &b[done..])
        } else {
            crate::distance::scalar::hamming_bits_words(a, b)
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma,f16c,popcnt")]
    pub(super) fn jaccard_bits(a: &[u8], b: &[u8]) -> (u64, u64) {
        if a.len() >= 64 && is_x86_feature_detected!("avx512vpopcntdq") {
            // SAFETY: VPOPCNTDQ was just detected; the other features are this function's.
            let (v, done) = unsafe { popcnt_blocks::<1>(a, b) };
            let t = crate::distance::scalar::jaccard_bits_words(&a[done..], &b[done..]);
            (v.0 + t.0, v.1 + t.1)
        } else {
            crate::distance::scalar::jaccard_bits_words(a, b)
        }
    }

    /// Popcounts over the whole 64-byte blocks of `a` and `b`: (popcount(a ^ b), 0) for
    /// `OP == 0`, (popcount(a & b), popcount(a | b)) for `OP == 1`; and the bytes consumed (the
    /// caller counts the rest).
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx2,fma,f16c,popcnt")]
    fn popcnt_blocks<const OP: u8>(a: &[u8], b: &[u8]) -> ((u64, u64), usize) {
        const BYTES: usize = 64;
        let n = common_len(a.len(), b.len()) / BYTES * BYTES;
        let (pa, pb) = (a.as_ptr().cast::<i64>(), b.as_ptr().cast::<i64>());
        let (mut x0, mut x1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut at = 0;
        while at < n {
            // SAFETY: at + 64 <= n <= both lengths; loadu needs no alignment.
            let (va, vb) = unsafe { (_mm512_loadu_epi64(pa.add(at / 8)), _mm512_loadu_epi64(pb.add(at / 8))) };
            if OP == 0 {
                x0 = _mm512_add_epi64(x0, _mm512_popcnt_epi64(_mm512_xor_si512(va, vb)));
            } else {
                x0 = _mm512_add_epi64(x0, _mm512_popcnt_epi64(_mm512_and_si512(va, vb)));
                x1 = _mm512_add_epi64(x1, _mm512_popcnt_epi64(_mm512_or_si512(va, vb)));
            }
            at += BYTES;
        }
        ((_mm512_reduce_add_epi64(x0) as u64, _mm512_reduce_add_epi64(x1) as u64), n)
    }
}
