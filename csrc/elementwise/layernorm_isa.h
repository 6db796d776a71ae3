/* layernorm_isa.h -- the statistics loops of both methods and the int64-lane output stage of
 * layernorm.c, written once for AVX2 and AVX-512 (layernorm.c includes it after qk__ln_factors
 * through simd_twins.h, with QK_V_IS512 0 then 1; the primitives are elementwise/simd_v.h). No
 * include guard: it is included once per ISA. The AVX-512-only output stage for F in [32, 52] (int32 lanes and a
 * two-source permute) stays in layernorm.c. Every loop gives the scalar loop's integers. */
#include "elementwise/simd_v.h"
#include "elementwise/simd_r64.h"

/* int16 lanes: 16 (AVX2) or 32 (AVX-512) channels a step */
#define QK__LN_L16 (2 * QK_V_LANES)

/* The step at channel c: d = q - zp (*d, int16), 2^alpha (*pw, int16, by a byte shuffle of the
 * powers 1..128) and x = d 2^alpha (returned; stored at xb + c with xb), x added to S1's int32
 * lanes (*s1: the pair sums of _mm*_madd_epi16 with ones). */
QK_V_TARGET static QK_ALWAYS_INLINE QK_V QK__N(qk__ln_x16_)(const uint8_t *q, const uint8_t *alpha,
                                                            int32_t c, int16_t *xb, QK_V vzp,
                                                            QK_VH pow2, QK_V *s1, QK_V *d,
                                                            QK_V *pw) {
    *pw = QK_V_CVTU8_16(QK_VH_SHUFFLE8(pow2, QK_VH_LOAD(alpha + c)));
    *d = QK_V_SUB16(QK_V_CVTU8_16(QK_VH_LOAD(q + c)), vzp);
    const QK_V x = QK_V_MULLO16(*d, *pw);
    if (xb != NULL) QK_V_STORE(xb + c, x);
    *s1 = QK_V_ADD(*s1, QK_V_MADD16(x, QK_V_SET1_16(1)));
    return x;
}

#define QK__LN_POW2 \
    QK_VH_BCAST128(_mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, (char)128, 0, 0, 0, 0, 0, 0, 0, 0))

/* The exact method's S1 and S2 over channels [0, n & ~(lanes - 1)) in int16 lanes:
 * x = (q - zp) * 2^alpha fits int16 (|x| <= 255 * 128 = 32640), a pair x0^2 + x1^2 <= 2 * 32640^2
 * (_mm*_madd_epi16) fits int32 and is non-negative; the squares are summed in int32 lanes for
 * `steps` steps (steps * the largest pair < 2^31: many when the call's largest alpha is small),
 * then their even and odd dwords added to int64 lanes. S1 in int32 lanes (at most 2048 steps of
 * 2 * 32640 < 2^17 a lane; |S1| <= 32768 * 32640 < 2^31). With xb, the x_i are stored there.
 * Returns the channels done. */
QK_V_TARGET static int32_t QK__N(qk__ln_sums_)(const uint8_t *q, const uint8_t *alpha, int32_t n,
                                               int32_t zp, int64_t *s1, int64_t *s2, int16_t *xb,
                                               int32_t steps) {
    const int32_t nl = n & ~(QK__LN_L16 - 1);
    const QK_V vzp = QK_V_SET1_16((int16_t)zp);
    const QK_V lo32 = QK_V_SET1_64(0xFFFFFFFF), zero = QK_V_SET1(0);
    const QK_VH pow2 = QK__LN_POW2;
    QK_V acc1 = zero, acc2 = zero;
    for (int32_t c = 0; c < nl;) {
        const int32_t end = (nl - c) / QK__LN_L16 > steps ? c + QK__LN_L16 * steps : nl;
        QK_V sq = zero;
        for (; c < end; c += QK__LN_L16) {
            QK_V d, pw;
            const QK_V x = QK__N(qk__ln_x16_)(q, alpha, c, xb, vzp, pow2, &acc1, &d, &pw);
            sq = QK_V_ADD(sq, QK_V_MADD16(x, x));
        }
        acc2 = QK_V_ADD64(acc2, QK_V_AND(sq, lo32));
        acc2 = QK_V_ADD64(acc2, QK_V_SRLI64(sq, 32));
    }
    *s1 += QK_V_HSUM32(acc1);
    *s2 += QK_V_HSUM64(acc2);
    return nl;
}

/* The sole method's S1 and Ex2 (modulo 2^64, as the scalar loop) over channels
 * [0, n & ~(lanes - 1)) in int16 lanes: the compressed square c^2 << 4 flag (<= 3600), times
 * 4^alpha (<= 16384, 2^alpha squared) by _mm*_madd_epi16: a pair <= 2 * 3600 * 16384 < 2^27, so
 * 16 steps add up in int32 lanes (< 2^31) before they are widened to int64. S1 and xb as above.
 * Returns the channels done. */
QK_V_TARGET static int32_t QK__N(qk__ln_sole_sums_)(const uint8_t *q, const uint8_t *alpha,
                                                    int32_t n, int32_t zp, uint32_t rnd_hi,
                                                    uint32_t rnd_lo, int64_t *s1, uint64_t *ex2,
                                                    int16_t *xb) {
    const int32_t nl = n & ~(QK__LN_L16 - 1);
    const QK_V vzp = QK_V_SET1_16((int16_t)zp);
    const QK_V rh = QK_V_SET1_16((int16_t)rnd_hi), rl = QK_V_SET1_16((int16_t)rnd_lo);
    const QK_V c15 = QK_V_SET1_16(15), c63 = QK_V_SET1_16(63);
    const QK_V lo32 = QK_V_SET1_64(0xFFFFFFFF), zero = QK_V_SET1(0);
    const QK_VH pow2 = QK__LN_POW2;
    QK_V acc1 = zero, acc2 = zero;
    for (int32_t c = 0; c < nl;) {
        const int32_t end = nl - c > 16 * QK__LN_L16 ? c + 16 * QK__LN_L16 : nl;
        QK_V e32 = zero;
        for (; c < end; c += QK__LN_L16) {
            QK_V d, pw;
            (void)QK__N(qk__ln_x16_)(q, alpha, c, xb, vzp, pow2, &acc1, &d, &pw);
            const QK_V a = QK_V_ABS16(d);
            const QK_VM16 flag = QK_V_GT16(a, c63); /* a >= 64 */
            const QK_V hi = QK_V_SRLI16(QK_V_ADD16(a, rh), 4);
            const QK_V lo = QK_V_SRLI16(QK_V_ADD16(a, rl), 2);
            const QK_V cv = QK_V_MIN16(QK_V_SELECT16(flag, hi, lo), c15);
            const QK_V sq = QK_V_SLLI16_WHERE(QK_V_MULLO16(cv, cv), flag, 4);
            e32 = QK_V_ADD(e32, QK_V_MADD16(sq, QK_V_MULLO16(pw, pw)));
        }
        acc2 = QK_V_ADD64(acc2, QK_V_AND(e32, lo32));
        acc2 = QK_V_ADD64(acc2, QK_V_SRLI64(e32, 32));
    }
    *s1 += QK_V_HSUM32(acc1);
    *ex2 += (uint64_t)QK_V_HSUM64(acc2);
    return nl;
}

/* The output stage over the block's channels [0, n & ~(lanes - 1)), 4 (AVX2) or 8 (AVX-512) a
 * step in int64 lanes; the same integers as qk__ln_output_scalar. x * a with 0 <= a < 2^47 is
 * built from two 24-bit pieces of a (each product fits _mm*_mul_epi32: |x| < 2^15, piece < 2^24);
 * z and G_i fit int32; w = RHU(z G_i + B_i, F) + zp (|w| < 2^45) is clamped to [qmin, qmax] in
 * int64 and its low byte stored. Returns the channels done. */
QK_V_TARGET static int32_t QK__N(qk__ln_output_)(const qk_layernorm_params *p,
                                                 const qk__ln_factors *f, const uint8_t *q,
                                                 int64_t a, int64_t b, int rshift, int8_t *y) {
    enum { L = QK_V_LANES / 2 };
    const int32_t nl = f->n & ~(L - 1);
    const QK_V zp = QK_V_SET1_64(p->in_zero_point);
    const QK_V a0 = QK_V_SET1_64(a & 0xFFFFFF), a1 = QK_V_SET1_64(a >> 24);
    const QK_V vb = QK_V_SET1_64(b);
    const __m128i rs = _mm_cvtsi32_si128(rshift), sh = _mm_cvtsi32_si128(p->shift);
    const QK_V zmax = QK_V_SET1_64(QK__LN_ZMAX), zmin = QK_V_SET1_64(-QK__LN_ZMAX);
    const QK_V orr = QK_V_SET1_64(INT64_C(1) << (p->shift - 1));
    const QK_V ozp = QK_V_SET1_64(p->out_zero_point);
    const QK_V qmin = QK_V_SET1_64(p->out_qmin), qmax = QK_V_SET1_64(p->out_qmax);
    for (int32_t c = 0; c < nl; c += L) {
        const QK_V x = QK_V_SLLV64(QK_V_SUB64(QK_V64_LOADU8(q + c), zp),
                                   QK_V64_LOADU8(f->alpha + c));
        /* x * a = (x*a1 << 24) + x*a0 */
        const QK_V xa = QK_V_ADD64(QK_V_SLLI64(QK_V_MUL32(x, a1), 24), QK_V_MUL32(x, a0));
        QK_V z = QK_V_SRA64(QK_V_ADD64(xa, vb), rs);
        z = QK_V_MAX64(QK_V_MIN64(z, zmax), zmin);
        const QK_V acc = QK_V_ADD64(QK_V_MUL32(z, QK_V64_LOAD32(f->g + c)), QK_V_LOAD(f->b + c));
        const QK_V w = QK_V_ADD64(QK_V_SRA64(QK_V_ADD64(acc, orr), sh), ozp);
        QK_V64_STORE8(y + c, QK_V_MAX64(QK_V_MIN64(w, qmax), qmin));
    }
    return nl;
}

#undef QK__LN_POW2

/* ---- int16 in, int16 out (qk_layernorm_s16_s16_exact) ---------------------------------------- */
/* S1 and S2 of an int16 row over [0, n & ~(lanes - 1)): _mm*_madd_epi16 pairs. S1's pairs
 * (|x0 + x1| <= 2^16) add up in int32 lanes (at most 1024 steps of 2^16 a lane: C <= 32768);
 * a pair of squares x0^2 + x1^2 <= 2^31 is read as unsigned 32 bits (the signed madd wraps only
 * at 2^31 itself, whose bits are 2^31 unsigned) and widened to int64 lanes before it is added.
 * Returns the channels done. */
QK_V_TARGET static size_t QK__N(qk__ln16_sums_)(const int16_t *x, size_t n, int64_t *s1,
                                               int64_t *s2) {
    const size_t nl = n & ~(size_t)(QK__LN_L16 - 1);
    QK_V a1 = QK_V_SET1(0);
    QK_R64 a2 = QK_R64_SET1(0);
    const QK_V one = QK_V_SET1_16(1);
    for (size_t c = 0; c < nl; c += QK__LN_L16) {
        const QK_V v = QK_V_LOAD(x + c);
        a1 = QK_V_ADD(a1, QK_V_MADD16(v, one));
        const QK_V sq = QK_V_MADD16(v, v);
        a2 = QK_R64_ADD(a2, QK__SEL(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(sq)),
                                    _mm512_cvtepu32_epi64(_mm512_castsi512_si256(sq))));
        a2 = QK_R64_ADD(a2, QK__SEL(_mm256_cvtepu32_epi64(_mm256_extracti128_si256(sq, 1)),
                                    _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(sq, 1))));
    }
    int32_t b1[QK_V_LANES];
    int64_t b2[QK_R64_LANES];
    QK_V_STORE(b1, a1);
    QK__SEL(_mm256_storeu_si256((__m256i *)b2, a2), _mm512_storeu_si512((void *)b2, a2));
    for (int l = 0; l < QK_V_LANES; l++) *s1 += b1[l];
    for (int l = 0; l < QK_R64_LANES; l++) *s2 += b2[l];
    return nl;
}

/* The output stage of an int16 row over [0, n & ~(lanes - 1)) (exact method, G_i = gamma_i and
 * B_i = beta_i: multipliers 1): z = (x a + b) >> rshift with a = a1 2^24 + a0 (a < 2^47: two
 * exact products of int32 dwords, |x a| < 2^62), acc = z G + B + 2^(F-1) (|z| < 2^24: one
 * product), y = clamp(acc >> F) to int16. Returns the channels done. */
QK_V_TARGET static size_t QK__N(qk__ln16_out_)(const int16_t *x, size_t n, int64_t a, int64_t b,
                                              int rshift, const int32_t *g, const int64_t *bb,
                                              int shift, int16_t *y) {
    const QK_R64 a0 = QK_R64_SET1(a & 0xFFFFFF), a1 = QK_R64_SET1(a >> 24);
    const QK_R64 vb = QK_R64_SET1(b), rnd = QK_R64_SET1(INT64_C(1) << (shift - 1));
    const QK_R64 lo = QK_R64_SET1(INT16_MIN), hi = QK_R64_SET1(INT16_MAX);
    size_t c = 0;
    for (; c + QK_R64_LANES <= n; c += QK_R64_LANES) {
        const QK_R64 v = QK_R64_FROM16(x + c);
        QK_R64 t = QK_R64_ADD(QK_R64_MUL32(v, a0), vb);
        t = QK_R64_ADD(t, QK__SEL(_mm256_slli_epi64, _mm512_slli_epi64)(QK_R64_MUL32(v, a1), 24));
        const QK_R64 z = rshift > 0 ? QK__N(qk__r64_sra_)(t, rshift) : t;
        const QK_R64 bv = QK__SEL(_mm256_loadu_si256((const __m256i *)(bb + c)),
                                  _mm512_loadu_si512((const void *)(bb + c)));
        QK_R64 acc = QK_R64_ADD(QK_R64_ADD(QK_R64_MUL32(z, QK_R64_FROM32(g + c)), bv), rnd);
        acc = QK__N(qk__r64_clamp_)(QK__N(qk__r64_sra_)(acc, shift), lo, hi);
        QK__N(qk__r64_store16_)(y + c, acc);
    }
    return c;
}
#undef QK__LN_L16
