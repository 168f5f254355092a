//! Every kernel of every table this CPU can run, against plain f64 references.
//!
//! Tolerance: f32 accumulation of n terms in any order is within about n * eps * sum|terms| of
//! the exact sum in the worst case, and far closer in practice; 1e-5 * sum|terms| allows for
//! that at n = 16000 with the blocked orders used here, plus a few subnormal ulps per term for
//! products that underflow. Results that overflow must overflow exactly like the reference's
//! cast to f32, so the overflow inputs are chosen to make every term (or the total) overflow
//! by a wide margin, never by a rounding-sized hair.

use half::f16;

use super::*;

/// splitmix64: tiny, deterministic, good enough to spread test inputs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn sign(&mut self) -> f64 {
        if self.next_u64() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Case {
    Uniform,
    /// Magnitudes spread over many binades, mixed signs.
    Wide,
    Negative,
    Zeros,
    ZeroVsValue,
    Identical,
    /// f32 subnormals / f16 subnormals and the smallest normals.
    Tiny,
    /// Large but with sum|terms| <= 1e37, so no order of f32 accumulation overflows.
    HugeFinite,
    /// a >= 0 and b <= 0 with terms far beyond f32::MAX: every order overflows the same way.
    Overflow,
}

const CASES: [Case; 9] = [
    Case::Uniform,
    Case::Wide,
    Case::Negative,
    Case::Zeros,
    Case::ZeroVsValue,
    Case::Identical,
    Case::Tiny,
    Case::HugeFinite,
    Case::Overflow,
];

/// Inputs of one test: f32 pair, f16 pair and the f64 images of all four.
struct Inputs {
    a: Vec<f32>,
    b: Vec<f32>,
    ah: Vec<f16>,
    bh: Vec<f16>,
}

fn gen_f32(rng: &mut Rng, case: Case, n: usize, second: bool) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = match case {
                Case::Uniform | Case::Identical => rng.range(-1.0, 1.0),
                Case::Wide => rng.sign() * rng.range(1.0, 2.0) * 2f64.powi(rng.below(61) as i32 - 30),
                Case::Negative => -rng.range(0.0, 10.0),
                Case::Zeros => 0.0,
                Case::ZeroVsValue => {
                    if second {
                        rng.range(-1.0, 1.0)
                    } else {
                        0.0
                    }
                }
                Case::Tiny => rng.sign() * rng.range(1.0, 2.0) * 2f64.powi(-149 + rng.below(30) as i32),
                Case::HugeFinite => {
                    let s = 1e18f64.min((1e37 / n as f64).sqrt() / 2.0);
                    s * rng.range(-1.0, 1.0)
                }
                Case::Overflow => {
                    let m = if rng.below(2) == 0 { rng.range(0.6, 0.9) * f32::MAX as f64 } else { rng.range(1e20, 1e21) };
                    if second {
                        -m
                    } else {
                        m
                    }
                }
            };
            v as f32
        })
        .collect()
}

fn gen_f16(rng: &mut Rng, case: Case, n: usize, second: bool) -> Vec<f16> {
    (0..n)
        .map(|_| match case {
            Case::Wide => f16::from_f64(rng.sign() * rng.range(1.0, 2.0) * 2f64.powi(rng.below(29) as i32 - 14)),
            Case::Tiny => {
                let bits = 1 + rng.below(0x0800) as u16;
                let sign = if rng.below(2) == 0 { 0 } else { 0x8000 };
                f16::from_bits(bits | sign)
            }
            // Near f16::MAX: the largest values a halfvec can hold, far from overflowing f32.
            Case::HugeFinite | Case::Overflow => {
                let m = f16::from_f64(rng.range(30000.0, 65504.0));
                if second {
                    -m
                } else {
                    m
                }
            }
            _ => f16::from_f32(gen_f32(rng, case, 1, second)[0]),
        })
        .collect()
}

fn gen(rng: &mut Rng, case: Case, n: usize) -> Inputs {
    let a = gen_f32(rng, case, n, false);
    let b = match case {
        Case::Identical => a.clone(),
        _ => gen_f32(rng, case, n, true),
    };
    let ah = gen_f16(rng, case, n, false);
    let bh = match case {
        Case::Identical => ah.clone(),
        _ => gen_f16(rng, case, n, true),
    };
    Inputs { a, b, ah, bh }
}

/// An exact-ish reference value and the sum of |terms| that scales the tolerance.
#[derive(Clone, Copy, Debug)]
struct Ref {
    val: f64,
    mag: f64,
}

fn ref_l2(a: &[f64], b: &[f64]) -> Ref {
    let s: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    Ref { val: s, mag: s }
}

fn ref_dot(a: &[f64], b: &[f64]) -> Ref {
    Ref { val: a.iter().zip(b).map(|(x, y)| x * y).sum(), mag: a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum() }
}

fn ref_l1(a: &[f64], b: &[f64]) -> Ref {
    let s: f64 = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum();
    Ref { val: s, mag: s }
}

fn check(got: f32, r: Ref, n: usize, what: &dyn Fn() -> String) {
    let want = r.val as f32;
    if want.is_infinite() {
        assert_eq!(got, want, "{}: expected overflow to {want}, got {got}", what());
        return;
    }
    // A few subnormal ulps per term for products that underflow in f32 but not in f64.
    let tiny = (n as f64 + 1.0) * 4.0 * f64::from(f32::from_bits(1));
    let tol = 1e-5 * r.mag + tiny;
    assert!(got.is_finite() && (f64::from(got) - r.val).abs() <= tol, "{}: got {got}, reference {} (tolerance {tol})", what(), r.val);
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn to64h(v: &[f16]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// Checks every reduction kernel of `k` on one input pair.
fn check_all(k: &Kernels, a: &[f32], b: &[f32], ah: &[f16], bh: &[f16], ctx: &str) {
    let n = a.len();
    let (a64, b64, ah64, bh64) = (to64(a), to64(b), to64h(ah), to64h(bh));
    let w = |f: &str| format!("{} {f} {ctx}", k.name);

    check((k.l2_squared)(a, b), ref_l2(&a64, &b64), n, &|| w("l2_squared"));
    check((k.dot)(a, b), ref_dot(&a64, &b64), n, &|| w("dot"));
    check((k.l1)(a, b), ref_l1(&a64, &b64), n, &|| w("l1"));
    check((k.norm_squared)(a), ref_dot(&a64, &a64), n, &|| w("norm_squared"));
    let (d, na, nb) = (k.cosine_parts)(a, b);
    check(d, ref_dot(&a64, &b64), n, &|| w("cosine_parts.dot"));
    check(na, ref_dot(&a64, &a64), n, &|| w("cosine_parts.aa"));
    check(nb, ref_dot(&b64, &b64), n, &|| w("cosine_parts.bb"));

    check((k.l2_squared_f16)(ah, bh), ref_l2(&ah64, &bh64), n, &|| w("l2_squared_f16"));
    check((k.dot_f16)(ah, bh), ref_dot(&ah64, &bh64), n, &|| w("dot_f16"));
    check((k.l1_f16)(ah, bh), ref_l1(&ah64, &bh64), n, &|| w("l1_f16"));
    check((k.norm_squared_f16)(ah), ref_dot(&ah64, &ah64), n, &|| w("norm_squared_f16"));
    let (d, na, nb) = (k.cosine_parts_f16)(ah, bh);
    check(d, ref_dot(&ah64, &bh64), n, &|| w("cosine_parts_f16.dot"));
    check(na, ref_dot(&ah64, &ah64), n, &|| w("cosine_parts_f16.aa"));
    check(nb, ref_dot(&bh64, &bh64), n, &|| w("cosine_parts_f16.bb"));

    check((k.l2_squared_f32_f16)(a, bh), ref_l2(&a64, &bh64), n, &|| w("l2_squared_f32_f16"));
    check((k.dot_f32_f16)(a, bh), ref_dot(&a64, &bh64), n, &|| w("dot_f32_f16"));
    check((k.l1_f32_f16)(a, bh), ref_l1(&a64, &bh64), n, &|| w("l1_f32_f16"));
}

/// Runs `check_all` for every table, case and a few misalignments at dimension `n`.
fn check_dim(rng: &mut Rng, n: usize) {
    for case in CASES {
        // Generate a few extra elements and start at a random offset so the kernels also see
        // slices that are not 32/64-byte aligned.
        let (oa, ob) = (rng.below(4) as usize, rng.below(4) as usize);
        let inp = gen(rng, case, n + 4);
        let mut b = inp.b[ob..ob + n].to_vec();
        let mut bh = inp.bh[ob..ob + n].to_vec();
        if let Case::Identical = case {
            b = inp.a[oa..oa + n].to_vec();
            bh = inp.ah[oa..oa + n].to_vec();
        }
        for k in available_kernels() {
            let ctx = format!("n={n} case={case:?} offsets=({oa},{ob})");
            check_all(k, &inp.a[oa..oa + n], &b, &inp.ah[oa..oa + n], &bh, &ctx);
        }
    }
}

#[test]
fn reductions_small_dims() {
    let mut rng = Rng::new(1);
    for n in 0..=300 {
        check_dim(&mut rng, n);
    }
}

#[test]
fn reductions_large_dims() {
    let mut rng = Rng::new(2);
    for n in [
        383, 384, 385, 511, 512, 513, 767, 768, 769, 783, 784, 1000, 1023, 1024, 1025, 1535, 1536, 1537, 2000, 4095, 4096, 4097, 15999,
        16000,
    ] {
        check_dim(&mut rng, n);
    }
}

#[test]
fn tables_agree_with_each_other() {
    // Same inputs through every table: a cheap cross-check independent of the f64 reference.
    let mut rng = Rng::new(3);
    for n in [1, 7, 8, 15, 16, 17, 63, 64, 65, 100, 768, 1536] {
        let inp = gen(&mut rng, Case::Uniform, n);
        let base = (SCALAR.l2_squared)(&inp.a, &inp.b);
        for k in available_kernels() {
            let got = (k.l2_squared)(&inp.a, &inp.b);
            assert!((got - base).abs() <= 1e-5 * base, "{} n={n}: {got} vs {base}", k.name);
            let got = (k.l2_squared_f32_f16)(&inp.a, &inp.bh);
            let mut bf = vec![0.0f32; n];
            (SCALAR.f16_to_f32)(&inp.bh, &mut bf);
            let want = (SCALAR.l2_squared)(&inp.a, &bf);
            assert!((got - want).abs() <= 1e-5 * want, "{} n={n}: {got} vs {want}", k.name);
        }
    }
}

#[test]
fn exact_small_results() {
    // Small integers are exact in f32, so every table must return the exact value.
    for k in available_kernels() {
        for n in 0..100usize {
            let a: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
            let ah: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
            let bh: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
            let l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            let dt: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let l1: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
            let aa: f32 = a.iter().map(|x| x * x).sum();
            let bb: f32 = b.iter().map(|x| x * x).sum();
            let ctx = format!("{} n={n}", k.name);
            assert_eq!((k.l2_squared)(&a, &b), l2, "{ctx}");
            assert_eq!((k.dot)(&a, &b), dt, "{ctx}");
            assert_eq!((k.l1)(&a, &b), l1, "{ctx}");
            assert_eq!((k.norm_squared)(&a), aa, "{ctx}");
            assert_eq!((k.cosine_parts)(&a, &b), (dt, aa, bb), "{ctx}");
            assert_eq!((k.l2_squared_f16)(&ah, &bh), l2, "{ctx}");
            assert_eq!((k.dot_f16)(&ah, &bh), dt, "{ctx}");
            assert_eq!((k.l1_f16)(&ah, &bh), l1, "{ctx}");
            assert_eq!((k.norm_squared_f16)(&ah), aa, "{ctx}");
            assert_eq!((k.cosine_parts_f16)(&ah, &bh), (dt, aa, bb), "{ctx}");
            assert_eq!((k.l2_squared_f32_f16)(&a, &bh), l2, "{ctx}");
            assert_eq!((k.dot_f32_f16)(&a, &bh), dt, "{ctx}");
            assert_eq!((k.l1_f32_f16)(&a, &bh), l1, "{ctx}");
        }
    }
}

#[test]
fn nan_propagates() {
    for k in available_kernels() {
        for n in [1, 5, 16, 37, 100] {
            for pos in [0, n / 2, n - 1] {
                let mut a = vec![0.5f32; n];
                let b = vec![0.25f32; n];
                a[pos] = f32::NAN;
                let ah: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
                let bh: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
                let ctx = format!("{} n={n} pos={pos}", k.name);
                assert!((k.l2_squared)(&a, &b).is_nan(), "{ctx}");
                assert!((k.dot)(&a, &b).is_nan(), "{ctx}");
                assert!((k.l1)(&a, &b).is_nan(), "{ctx}");
                assert!((k.l2_squared_f16)(&ah, &bh).is_nan(), "{ctx}");
                assert!((k.dot_f32_f16)(&a, &bh).is_nan(), "{ctx}");
            }
        }
    }
}

#[test]
fn dispatch() {
    let all = available_kernels();
    assert_eq!(all.last().unwrap().name, "scalar");
    assert!(std::ptr::eq(kernels(), all[0]));
    // Chosen once: later calls return the same table.
    assert!(std::ptr::eq(kernels(), kernels()));
    #[cfg(target_arch = "x86_64")]
    {
        let names: Vec<&str> = all.iter().map(|k| k.name).collect();
        let has = |f: &[bool]| f.iter().all(|&x| x);
        let avx2 = has(&[is_x86_feature_detected!("avx2"), is_x86_feature_detected!("fma"), is_x86_feature_detected!("f16c")]);
        let avx512 = avx2 && is_x86_feature_detected!("avx512f");
        assert_eq!(names.contains(&"avx2"), avx2, "{names:?}");
        assert_eq!(names.contains(&"avx512"), avx512, "{names:?}");
    }

    // The free functions go through the selected table.
    let k = kernels();
    let a: Vec<f32> = (0..77).map(|i| i as f32 * 0.1).collect();
    let b: Vec<f32> = (0..77).map(|i| 1.0 - i as f32 * 0.05).collect();
    let ah: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
    let bh: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
    assert_eq!(l2_squared(&a, &b), (k.l2_squared)(&a, &b));
    assert_eq!(dot(&a, &b), (k.dot)(&a, &b));
    assert_eq!(l1(&a, &b), (k.l1)(&a, &b));
    assert_eq!(norm_squared(&a), (k.norm_squared)(&a));
    assert_eq!(cosine_parts(&a, &b), (k.cosine_parts)(&a, &b));
    assert_eq!(l2_squared_f16(&ah, &bh), (k.l2_squared_f16)(&ah, &bh));
    assert_eq!(dot_f16(&ah, &bh), (k.dot_f16)(&ah, &bh));
    assert_eq!(l1_f16(&ah, &bh), (k.l1_f16)(&ah, &bh));
    assert_eq!(norm_squared_f16(&ah), (k.norm_squared_f16)(&ah));
    assert_eq!(cosine_parts_f16(&ah, &bh), (k.cosine_parts_f16)(&ah, &bh));
    assert_eq!(l2_squared_f32_f16(&a, &bh), (k.l2_squared_f32_f16)(&a, &bh));
    assert_eq!(dot_f32_f16(&a, &bh), (k.dot_f32_f16)(&a, &bh));
    assert_eq!(l1_f32_f16(&a, &bh), (k.l1_f32_f16)(&a, &bh));
    let c: Vec<u8> = (0..77).map(|i| (i * 37 % 256) as u8).collect();
    assert_eq!(dot_u8(&a, &c), (k.dot_u8)(&a, &c));
    assert_eq!(l1_u8(&a, &b, &c), (k.l1_u8)(&a, &b, &c));
    let mut h = vec![f16::ZERO; 77];
    f32_to_f16(&a, &mut h);
    assert_eq!(h, ah);
    let mut back = vec![0.0f32; 77];
    f16_to_f32(&h, &mut back);
    let want: Vec<f32> = ah.iter().map(|x| x.to_f32()).collect();
    assert_eq!(back, want);
}

#[test]
#[cfg_attr(debug_assertions, should_panic(expected = "unequal length"))]
fn unequal_lengths_use_the_shorter() {
    // Debug builds flag the caller bug; release builds must stay in bounds and use the prefix.
    let a: Vec<f32> = (0..40).map(|i| i as f32 * 0.25 - 3.0).collect();
    let b: Vec<f32> = (0..37).map(|i| 2.0 - i as f32 * 0.125).collect();
    let ah: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
    let bh: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
    for k in available_kernels() {
        let n = 37;
        assert_eq!((k.l2_squared)(&a, &b), (k.l2_squared)(&a[..n], &b));
        assert_eq!((k.dot)(&b, &a), (k.dot)(&b, &a[..n]));
        assert_eq!((k.l1)(&a, &b), (k.l1)(&a[..n], &b));
        assert_eq!((k.cosine_parts)(&a, &b), (k.cosine_parts)(&a[..n], &b));
        assert_eq!((k.l2_squared_f16)(&ah, &bh), (k.l2_squared_f16)(&ah[..n], &bh));
        assert_eq!((k.dot_f16)(&bh, &ah), (k.dot_f16)(&bh, &ah[..n]));
        assert_eq!((k.l1_f16)(&ah, &bh), (k.l1_f16)(&ah[..n], &bh));
        assert_eq!((k.cosine_parts_f16)(&ah, &bh), (k.cosine_parts_f16)(&ah[..n], &bh));
        assert_eq!((k.l2_squared_f32_f16)(&a, &bh), (k.l2_squared_f32_f16)(&a[..n], &bh));
        assert_eq!((k.dot_f32_f16)(&b, &ah), (k.dot_f32_f16)(&b, &ah[..n]));
        assert_eq!((k.l1_f32_f16)(&a, &bh), (k.l1_f32_f16)(&a[..n], &bh));
        let c: Vec<u8> = (0..38).map(|i| (i * 7) as u8).collect();
        assert_eq!((k.dot_u8)(&a, &c[..n]), (k.dot_u8)(&a[..n], &c[..n]), "{}", k.name);
        assert_eq!((k.dot_u8)(&b, &c), (k.dot_u8)(&b, &c[..n]), "{}", k.name);
        assert_eq!((k.l1_u8)(&a, &b, &c), (k.l1_u8)(&a[..n], &b, &c[..n]), "{}", k.name);
        assert_eq!((k.l1_u8)(&b, &a, &c), (k.l1_u8)(&b, &a[..n], &c[..n]), "{}", k.name);

        let sentinel = f16::from_f32(-7.0);
        let mut h = vec![sentinel; 40];
        (k.f32_to_f16)(&b, &mut h);
        assert_eq!(&h[..n], &bh[..]);
        assert!(h[n..].iter().all(|&x| x == sentinel), "{}", k.name);
        let mut f = vec![-7.0f32; 20];
        (k.f16_to_f32)(&ah, &mut f);
        assert_eq!(&f[..], &a[..20]);
    }
}

#[test]
fn f16_to_f32_exhaustive() {
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let want: Vec<u32> = all.iter().map(|x| x.to_f32().to_bits()).collect();
    // half's hardware path and its software path must agree too, or "matches half" would
    // depend on the machine.
    for (h, &w) in all.iter().zip(&want) {
        assert_eq!(h.to_f32_const().to_bits(), w, "half hw/sw disagree on {:#06x}", h.to_bits());
    }
    for k in available_kernels() {
        let mut got = vec![0.0f32; all.len()];
        (k.f16_to_f32)(&all, &mut got);
        for (i, (g, &w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w, "{} f16 bits {i:#06x}", k.name);
        }
    }
}

/// f32 inputs that exercise every rounding decision of f32 -> f16: for each pair of adjacent
/// f16 values, their exact midpoint (a tie) and its f32 neighbours, plus a stride through all
/// f32 bit patterns and the special values.
fn f32_conversion_inputs() -> Vec<f32> {
    let mut v = Vec::new();
    for bits in 0..0x7C00u16 {
        let lo = f16::from_bits(bits).to_f64();
        let hi = f16::from_bits(bits + 1).to_f64(); // 0x7C00 is +inf: the overflow threshold.
        let mid = if bits == 0x7BFF {
            65520.0 // Halfway between f16::MAX and the next (nonexistent) binade step.
        } else {
            (lo + hi) / 2.0
        };
        let m = mid as f32;
        assert_eq!(f64::from(m), mid, "midpoint must be exact in f32");
        for x in [lo as f32, m, f32::from_bits(m.to_bits() + 1), f32::from_bits(m.to_bits().saturating_sub(1))] {
            v.push(x);
            v.push(-x);
        }
    }
    let mut bits: u32 = 0;
    while let Some(next) = bits.checked_add(4099) {
        v.push(f32::from_bits(bits));
        bits = next;
    }
    v.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::EPSILON,
        65504.0,
        65519.99,
        65520.0,
        1e10,
        2f32.powi(-24),
        2f32.powi(-25),
        f32::from_bits(2f32.powi(-25).to_bits() + 1),
        2f32.powi(-26),
    ]);
    // NaNs: quiet and signalling, with payload bits that do and do not survive truncation.
    for payload in [1u32, 0x1FFF, 0x2000, 0x3F_FFFF, 0x40_0000, 0x40_0001, 0x7F_FFFF] {
        v.push(f32::from_bits(0x7F80_0000 | payload));
        v.push(f32::from_bits(0xFF80_0000 | payload));
    }
    v
}

#[test]
fn f32_to_f16_matches_half() {
    let inputs = f32_conversion_inputs();
    let want: Vec<u16> = inputs.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
    for (&x, &w) in inputs.iter().zip(&want) {
        assert_eq!(f16::from_f32_const(x).to_bits(), w, "half hw/sw disagree on {x:e}");
    }
    for k in available_kernels() {
        let mut got = vec![f16::ZERO; inputs.len()];
        (k.f32_to_f16)(&inputs, &mut got);
        for ((&x, g), &w) in inputs.iter().zip(&got).zip(&want) {
            assert_eq!(g.to_bits(), w, "{}: f32 {x:e} ({:#010x}) -> {:#06x}, half gives {w:#06x}", k.name, x.to_bits(), g.to_bits());
        }
    }
}

#[test]
fn conversion_tails_and_offsets() {
    // Every length around the vector widths, at several offsets, must convert exactly the
    // requested elements and leave the rest of the destination alone.
    let mut rng = Rng::new(4);
    let src: Vec<f32> = (0..80).map(|_| rng.range(-70000.0, 70000.0) as f32).collect();
    let srch: Vec<f16> = src.iter().map(|&x| f16::from_f32(x)).collect();
    for k in available_kernels() {
        for off in 0..4 {
            for n in 0..=70 {
                let sentinel = f16::from_bits(0x5555);
                let mut h = [sentinel; 80];
                (k.f32_to_f16)(&src[off..off + n], &mut h[off..off + n]);
                assert_eq!(&h[off..off + n], &srch[off..off + n], "{} n={n}", k.name);
                assert!(h[..off].iter().chain(&h[off + n..]).all(|&x| x == sentinel));

                let mut f = [-1.5f32; 80];
                (k.f16_to_f32)(&srch[off..off + n], &mut f[off..off + n]);
                for i in 0..80 {
                    let want = if (off..off + n).contains(&i) { srch[i].to_f32() } else { -1.5 };
                    assert_eq!(f[i].to_bits(), want.to_bits(), "{} n={n} i={i}", k.name);
                }
            }
        }
    }
}

/// A kernel's result must not depend on where its arguments lie in memory, to the last bit: an
/// index scan (aligned query copy) and the SQL operator (vectors wherever Postgres put them)
/// must order two rows the same way.
#[test]
fn results_do_not_depend_on_alignment() {
    let mut rng = Rng::new(4);
    for n in [5, 16, 33, 100, 384, 385, 1536] {
        let inp = gen(&mut rng, Case::Uniform, n);
        let c = codes(&mut rng, n);
        for k in available_kernels() {
            let want = (
                (k.l2_squared)(&inp.a, &inp.b).to_bits(),
                (k.dot)(&inp.a, &inp.b).to_bits(),
                (k.l1)(&inp.a, &inp.b).to_bits(),
                (k.l2_squared_f32_f16)(&inp.a, &inp.bh).to_bits(),
                (k.dot_u8)(&inp.a, &c).to_bits(),
                (k.l1_u8)(&inp.b, &inp.a, &c).to_bits(),
            );
            for shift in 1..16 {
                // The same values, starting `shift` f32s into a fresh buffer.
                let mut buf = vec![0.0f32; n + shift];
                buf[shift..].copy_from_slice(&inp.a);
                let a = &buf[shift..];
                let mut cbuf = vec![0u8; n + shift];
                cbuf[shift..].copy_from_slice(&c);
                let cs = &cbuf[shift..];
                let got = (
                    (k.l2_squared)(a, &inp.b).to_bits(),
                    (k.dot)(a, &inp.b).to_bits(),
                    (k.l1)(a, &inp.b).to_bits(),
                    (k.l2_squared_f32_f16)(a, &inp.bh).to_bits(),
                    (k.dot_u8)(a, cs).to_bits(),
                    (k.l1_u8)(&inp.b, a, cs).to_bits(),
                );
                assert_eq!(got, want, "{} n={n} shift={shift}", k.name);
            }
        }
    }
}

fn codes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// The u8-code kernels against f64 references: every length up to 70 (every tail of both
/// vector widths, with and without full unrolled blocks), the common large dims, a few
/// misalignments, and codes over the whole 0..=255 range.
#[test]
fn u8_code_kernels() {
    let mut rng = Rng::new(5);
    for n in (0..=70).chain([127, 128, 129, 384, 1536, 3072]) {
        for case in [Case::Uniform, Case::Wide, Case::Zeros] {
            let (oa, ob, oc) = (rng.below(4) as usize, rng.below(4) as usize, rng.below(4) as usize);
            let a = gen_f32(&mut rng, case, n + 4, false);
            // Scales as a quantizer has them: positive, around range / 255.
            let s: Vec<f32> = (0..n + 4).map(|_| (rng.range(0.0, 1.0) * 2f64.powi(rng.below(20) as i32 - 15)) as f32).collect();
            let c = codes(&mut rng, n + 4);
            let (a, s, c) = (&a[oa..oa + n], &s[ob..ob + n], &c[oc..oc + n]);
            let (a64, s64) = (to64(a), to64(s));
            let c64: Vec<f64> = c.iter().map(|&x| f64::from(x)).collect();
            let dot = ref_dot(&a64, &c64);
            let l1 = Ref {
                val: a64.iter().zip(&s64).zip(&c64).map(|((x, y), z)| (x - y * z).abs()).sum(),
                // The scalar table rounds s*c before subtracting: its error scales with |s*c|.
                mag: a64.iter().zip(&s64).zip(&c64).map(|((x, y), z)| x.abs() + y * z).sum(),
            };
            for k in available_kernels() {
                let w = |f: &str| format!("{} {f} n={n} case={case:?} offsets=({oa},{ob},{oc})", k.name);
                check((k.dot_u8)(a, c), dot, n, &|| w("dot_u8"));
                check((k.l1_u8)(a, s, c), l1, n, &|| w("l1_u8"));
            }
        }
    }
}

#[test]
fn u8_code_kernels_exact_small_results() {
    // Small integers and power-of-two scales are exact in f32, so every table must be exact.
    for k in available_kernels() {
        for n in 0..100usize {
            let a: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
            let s: Vec<f32> = (0..n).map(|i| [0.5f32, 1.0, 0.25][i % 3]).collect();
            let c: Vec<u8> = (0..n).map(|i| (i * 13 % 256) as u8).collect();
            let dt: f32 = a.iter().zip(&c).map(|(x, &y)| x * f32::from(y)).sum();
            let l1: f32 = a.iter().zip(&s).zip(&c).map(|((x, y), &z)| (x - y * f32::from(z)).abs()).sum();
            assert_eq!((k.dot_u8)(&a, &c), dt, "{} n={n}", k.name);
            assert_eq!((k.l1_u8)(&a, &s, &c), l1, "{} n={n}", k.name);
        }
    }
}

/// `dot_bits` by its definition, one dimension at a time.
fn ref_dot_bits(planes: &[u64], bits: &[u8], np: usize) -> i64 {
    let words = bits.len() / 8;
    (0..64 * words)
        .map(|i| {
            let b = i64::from((bits[i / 8] >> (i % 8)) & 1);
            let s: i64 = (0..np)
                .map(|j| {
                    let bit = ((planes[j * words + i / 64] >> (i % 64)) & 1) as i64;
                    let weight = 1i64 << j;
                    bit * if j + 1 == np { -weight } else { weight }
                })
                .sum();
            s * b
        })
        .sum()
}

/// Every table's `dot_bits` against the definition: every plane count, word counts across
/// every tail of the 8-word AVX-512 groups, random, all-ones and all-zeros bits, and codes at
/// every byte offset (pages hold them unaligned).
#[test]
fn dot_bits_kernels() {
    let mut rng = Rng::new(41);
    for k in available_kernels() {
        for words in (0..=40).chain([63, 64, 65, 250]) {
            for np in 1..=MAX_BIT_PLANES {
                for fill in 0..3 {
                    let gen = |rng: &mut Rng| match fill {
                        0 => rng.next_u64(),
                        1 => u64::MAX,
                        _ => rng.next_u64() & rng.next_u64(),
                    };
                    let planes: Vec<u64> = (0..np * words).map(|_| gen(&mut rng)).collect();
                    let code: Vec<u8> = (0..8 * words).map(|_| gen(&mut rng) as u8).collect();
                    let want = ref_dot_bits(&planes, &code, np);
                    let shift = (rng.below(8)) as usize;
                    let mut buf = vec![0xA5u8; 8 * words + shift];
                    buf[shift..].copy_from_slice(&code);
                    assert_eq!((k.dot_bits)(&planes, &buf[shift..]), want, "{} words={words} planes={np} fill={fill}", k.name);
                }
            }
        }
        // The extremes of the two's complement: every s_i = -2^(P-1) (only the top plane set)
        // or 2^(P-1) - 1 (every other plane set), every bit set.
        for np in 1..=MAX_BIT_PLANES {
            let words = 13;
            let code = vec![0xFFu8; 8 * words];
            let mut planes = vec![0u64; np * words];
            planes[(np - 1) * words..].fill(u64::MAX);
            assert_eq!((k.dot_bits)(&planes, &code), -(64 * words as i64) << (np - 1), "{} planes={np}", k.name);
            let mut planes = vec![u64::MAX; np * words];
            planes[(np - 1) * words..].fill(0);
            assert_eq!((k.dot_bits)(&planes, &code), 64 * words as i64 * ((1i64 << (np - 1)) - 1), "{} planes={np}", k.name);
        }
    }
    assert_eq!(dot_bits(&[3, 1], &[1, 0, 0, 0, 0, 0, 0, 0]), 1 - 2);
}

/// Hamming distance and Jaccard parts by their definition, one bit at a time.
fn ref_bits(a: &[u8], b: &[u8]) -> (u64, u64, u64) {
    let (mut xor, mut and, mut or) = (0, 0, 0);
    for i in 0..8 * a.len() {
        let (x, y) = ((a[i / 8] >> (i % 8)) & 1, (b[i / 8] >> (i % 8)) & 1);
        xor += u64::from(x ^ y);
        and += u64::from(x & y);
        or += u64::from(x | y);
    }
    (xor, and, or)
}

/// Every table's `hamming_bits` / `jaccard_bits` against the definition: every length up to
/// three 64-byte AVX-512 blocks and beyond (odd lengths, every word and byte tail), random,
/// sparse, all-ones and all-zeros strings, at every byte offset (pages hold them unaligned).
#[test]
fn hamming_jaccard_bits_kernels() {
    let mut rng = Rng::new(43);
    for k in available_kernels() {
        for len in (0..=200).chain([255, 256, 257, 1000, 8000]) {
            for fill in 0..4 {
                let gen = |rng: &mut Rng| match fill {
                    0 => rng.next_u64() as u8,
                    1 => 0xFF,
                    2 => 0,
                    _ => (rng.next_u64() & rng.next_u64() & rng.next_u64()) as u8,
                };
                let a: Vec<u8> = (0..len).map(|_| gen(&mut rng)).collect();
                let b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                let (xor, and, or) = ref_bits(&a, &b);
                let shift = rng.below(8) as usize;
                let mut buf = vec![0x5Au8; len + shift];
                buf[shift..].copy_from_slice(&a);
                let a = &buf[shift..];
                assert_eq!((k.hamming_bits)(a, &b), xor, "{} len={len} fill={fill}", k.name);
                assert_eq!((k.jaccard_bits)(a, &b), (and, or), "{} len={len} fill={fill}", k.name);
                assert_eq!((k.hamming_bits)(a, a), 0, "{} len={len}", k.name);
            }
        }
    }
    assert_eq!(hamming_bits(&[0b1010_0000], &[0b0110_0000]), 2);
    assert_eq!(jaccard_bits(&[0b1110_0000, 1], &[0b1100_0000, 0]), (2, 4));
    assert_eq!(jaccard_bits(&[], &[]), (0, 0));
}
