/* requantize_isa.h -- the SIMD loops of requantize.c (u8 / s8 outputs), written once for every
 * ISA. requantize.c defines QK_V_IS512 (0: AVX2, 1: AVX-512 F/BW) and the ISA's fixed-point
 * vector routine (qk__fxv_<isa>, whose algorithm differs between the ISAs), then includes this
 * file; the primitives are elementwise/simd_v.h. No include guard: it is included once per ISA.
 * Every name defined here ends in the ISA (qk__requantize_avx2, qk__fx_avx512). */
#include "elementwise/simd_v.h"

/* 8-bit output of four int32 vectors: saturate to int16, add the zero point with int16
 * saturation, saturate to 8 bits, clamp to [qmin, qmax] (clamp: narrower than the type). Exact
 * for any int32 values: once |v| > 2^15 the sum is beyond the 8-bit range either way, and the
 * saturations and the final clamp nest. */
QK_V_TARGET static QK_ALWAYS_INLINE void QK__N(qk__narrow_)(uint8_t *y, QK_V a, QK_V b, QK_V c,
                                                             QK_V d, QK_V zp16, QK_V lo8,
                                                             QK_V hi8, int is_signed, int clamp) {
    const QK_V ab = QK_V_ADDS16(QK_V_PACKS32(a, b), zp16);
    const QK_V cd = QK_V_ADDS16(QK_V_PACKS32(c, d), zp16);
    QK_V r = is_signed ? QK_V_PACKS16(ab, cd) : QK_V_PACKUS16(ab, cd);
    if (clamp)
        r = is_signed ? QK_V_MIN8(QK_V_MAX8(r, lo8), hi8) : QK_V_MINU8(QK_V_MAXU8(r, lo8), hi8);
    QK_V_STORE(y, QK_V_DWORD_ORDER(r));
}

/* fp32 and shift schemes (scheme: QK_REQ_FP32, or QK_REQ_SHIFT_* for a right shift >= 1): v
 * before the zero point; the fp32 value is clamped in float to [qmin - zp, qmax - zp] first
 * (exact: the bounds are integers), so the conversion cannot overflow. */
typedef struct {
    QK_VF s, flo, fhi;
    QK_V lowmask, half;
    __m128i cnt, cnt1;
} QK__N(qk__rq_c_);

QK_V_TARGET static QK_ALWAYS_INLINE QK_V QK__N(qk__rq_)(QK_V x, const QK__N(qk__rq_c_) *c,
                                                         int scheme) {
    const QK_V one = QK_V_SET1(1);
    if (scheme == QK_REQ_FP32) {
        const QK_VF f = QK_VF_MUL(QK_VF_CVT(x), c->s);
        return QK_V_CVT_RNE(QK_VF_MIN(QK_VF_MAX(f, c->flo), c->fhi));
    }
    const QK_V q = QK_V_SRA(x, c->cnt);
    if (scheme == QK_REQ_SHIFT_HALF_UP) /* floor + bit (shift - 1) */
        return QK_V_ADD(q, QK_V_AND(QK_V_SRA(x, c->cnt1), one));
    if (scheme == QK_REQ_SHIFT_FLOOR) return q;
    const QK_V rem = QK_V_AND(x, c->lowmask);
    const QK_VM gt = QK_V_GT(rem, c->half);
    const QK_VM eq = QK_V_EQ(rem, c->half);
    const QK_VM tie_up = scheme == QK_REQ_SHIFT_HALF_EVEN
                             ? QK_V_ODD(q, one)  /* at a tie, up when q is odd */
                             : QK_V_NONNEG(x);   /* half_away: up when x >= 0 */
    return QK_V_INC_WHERE(q, QK_VM_OR(gt, QK_VM_AND(eq, tie_up)), one);
}

QK_V_TARGET static QK_ALWAYS_INLINE size_t QK__N(qk__rq_loop_)(const int32_t *acc, size_t n,
                                                                int32_t shift, float scale,
                                                                int32_t zp, int32_t qmin,
                                                                int32_t qmax, uint8_t *y,
                                                                int is_signed, int scheme) {
    const int sh = shift >= 1 && shift <= 31 ? shift : 1;
    QK__N(qk__rq_c_) c;
    c.s = QK_VF_SET1(scale);
    c.flo = QK_VF_SET1((float)(qmin - zp));
    c.fhi = QK_VF_SET1((float)(qmax - zp));
    c.lowmask = QK_V_SET1((int32_t)((UINT32_C(1) << sh) - 1u));
    c.half = QK_V_SET1((int32_t)(UINT32_C(1) << (sh - 1)));
    c.cnt = _mm_cvtsi32_si128(sh);
    c.cnt1 = _mm_cvtsi32_si128(sh - 1);
    const QK_V zp16 = QK_V_SET1_16((int16_t)zp);
    const QK_V lo8 = QK_V_SET1_8((char)qmin), hi8 = QK_V_SET1_8((char)qmax);
    size_t i = 0;
    /* written out four times, no arrays: gcc -O2 keeps arrays of vectors in memory */
    for (; i + 4 * QK_V_LANES <= n; i += 4 * QK_V_LANES) {
        const QK_V v0 = QK__N(qk__rq_)(QK_V_LOAD(acc + i), &c, scheme);
        const QK_V v1 = QK__N(qk__rq_)(QK_V_LOAD(acc + i + QK_V_LANES), &c, scheme);
        const QK_V v2 = QK__N(qk__rq_)(QK_V_LOAD(acc + i + 2 * QK_V_LANES), &c, scheme);
        const QK_V v3 = QK__N(qk__rq_)(QK_V_LOAD(acc + i + 3 * QK_V_LANES), &c, scheme);
        QK__N(qk__narrow_)(y + i, v0, v1, v2, v3, zp16, lo8, hi8, is_signed, 1);
    }
    return i;
}

/* The loop above specialised per scheme and signedness; returns the elements done. */
QK_V_TARGET static size_t QK__N(qk__requantize_)(const int32_t *acc, size_t n, int scheme,
                                                 int32_t shift, float scale, int32_t zp,
                                                 int32_t qmin, int32_t qmax, void *y,
                                                 int is_signed) {
    uint8_t *yb = (uint8_t *)y;
#define QK__RQ_SIGNS(SCHEME)                                                                   \
    return is_signed ? QK__N(qk__rq_loop_)(acc, n, shift, scale, zp, qmin, qmax, yb, 1, SCHEME) \
                     : QK__N(qk__rq_loop_)(acc, n, shift, scale, zp, qmin, qmax, yb, 0, SCHEME);
    switch (scheme) {
        case QK_REQ_FP32: QK__RQ_SIGNS(QK_REQ_FP32)
        case QK_REQ_SHIFT_HALF_UP: QK__RQ_SIGNS(QK_REQ_SHIFT_HALF_UP)
        case QK_REQ_SHIFT_HALF_EVEN: QK__RQ_SIGNS(QK_REQ_SHIFT_HALF_EVEN)
        case QK_REQ_SHIFT_HALF_AWAY: QK__RQ_SIGNS(QK_REQ_SHIFT_HALF_AWAY)
        case QK_REQ_SHIFT_FLOOR: QK__RQ_SIGNS(QK_REQ_SHIFT_FLOOR)
        default: return 0;
    }
#undef QK__RQ_SIGNS
}

/* double_round / single_round (see qk__fx_params in requantize.c): four vectors a step; with
 * check, the loop stops before a block holding an x outside [xlo, xhi] (the scalar loop then
 * reports the overflow). */
QK_V_TARGET static QK_ALWAYS_INLINE size_t QK__N(qk__fx_loop_)(const int32_t *acc, size_t n,
                                                                const qk__fx_params *f,
                                                                int32_t zp, int32_t qmin,
                                                                int32_t qmax, uint8_t *y,
                                                                int is_signed, int corr,
                                                                int k_lt32, int check,
                                                                int clamp) {
    const QK_V vm = QK_V_SET1(f->m);
    /* the second constant: cn (AVX2 selects it), cp - cn (AVX-512 subtracts it) */
    const QK_V cp = QK_V_SET1_64(f->cp), c2 = QK_V_SET1_64(QK__SEL(f->cn, f->cp - f->cn));
    const __m128i sh = _mm_cvtsi32_si128(f->k < 32 ? 32 - f->k : f->k - 32);
    const QK_V zp16 = QK_V_SET1_16((int16_t)zp);
    const QK_V lo8 = QK_V_SET1_8((char)qmin), hi8 = QK_V_SET1_8((char)qmax);
    const QK_V xlo = QK_V_SET1(f->xlo), xhi = QK_V_SET1(f->xhi);
    size_t i = 0;
    for (; i + 4 * QK_V_LANES <= n; i += 4 * QK_V_LANES) { /* no arrays of vectors */
        const QK_V x0 = QK_V_LOAD(acc + i);
        const QK_V x1 = QK_V_LOAD(acc + i + QK_V_LANES);
        const QK_V x2 = QK_V_LOAD(acc + i + 2 * QK_V_LANES);
        const QK_V x3 = QK_V_LOAD(acc + i + 3 * QK_V_LANES);
        if (check) {
#define QK__OUT(X) QK_VM_OR(QK_V_GT(xlo, X), QK_V_GT(X, xhi))
            if (QK_VM_ANY(QK_VM_OR(QK_VM_OR(QK__OUT(x0), QK__OUT(x1)),
                                   QK_VM_OR(QK__OUT(x2), QK__OUT(x3)))))
                break;
#undef QK__OUT
        }
        QK__N(qk__narrow_)(y + i, QK__N(qk__fxv_)(x0, vm, cp, c2, sh, corr, k_lt32),
                           QK__N(qk__fxv_)(x1, vm, cp, c2, sh, corr, k_lt32),
                           QK__N(qk__fxv_)(x2, vm, cp, c2, sh, corr, k_lt32),
                           QK__N(qk__fxv_)(x3, vm, cp, c2, sh, corr, k_lt32), zp16, lo8, hi8,
                           is_signed, clamp);
    }
    return i;
}

/* The loop above, specialised (always_inline) for each combination of the flags. */
QK_V_TARGET static size_t QK__N(qk__fx_)(const int32_t *acc, size_t n, const qk__fx_params *f,
                                         int32_t zp, int32_t qmin, int32_t qmax, void *y,
                                         int is_signed) {
    uint8_t *yb = (uint8_t *)y;
    const int lt32 = f->k < 32;
    const int cl = qmin != (is_signed ? INT8_MIN : 0) || qmax != (is_signed ? INT8_MAX : UINT8_MAX);
#define QK__FX_CASE(S, C, L, K, CL) \
    return QK__N(qk__fx_loop_)(acc, n, f, zp, qmin, qmax, yb, S, C, L, K, CL)
    if (f->check) { /* double_round with a left shift: k < 32, no correction */
        if (is_signed) QK__FX_CASE(1, 0, 1, 1, 1);
        QK__FX_CASE(0, 0, 1, 1, 1);
    }
    if (is_signed) {
        if (f->corr) { /* the correction comes with k >= 32 */
            if (cl) QK__FX_CASE(1, 1, 0, 0, 1);
            QK__FX_CASE(1, 1, 0, 0, 0);
        }
        if (lt32) QK__FX_CASE(1, 0, 1, 0, 1);
        if (cl) QK__FX_CASE(1, 0, 0, 0, 1);
        QK__FX_CASE(1, 0, 0, 0, 0);
    }
    if (f->corr) {
        if (cl) QK__FX_CASE(0, 1, 0, 0, 1);
        QK__FX_CASE(0, 1, 0, 0, 0);
    }
    if (lt32) QK__FX_CASE(0, 0, 1, 0, 1);
    if (cl) QK__FX_CASE(0, 0, 0, 0, 1);
    QK__FX_CASE(0, 0, 0, 0, 0);
#undef QK__FX_CASE
}

/* double_round / single_round to int32 (s32 out), one vector a step: clamp(v + zp, qmin, qmax)
 * as clamp(v, lo, hi) + zp with lo = max(qmin - zp, INT32_MIN), hi = min(qmax - zp, INT32_MAX)
 * (exact and without overflow: zp lies in [qmin, qmax], checked); with check, the loop stops
 * before a vector holding an x outside [xlo, xhi] (the scalar loop then reports the overflow). */
QK_V_TARGET static QK_ALWAYS_INLINE size_t QK__N(qk__fx32_loop_)(const int32_t *acc, size_t n,
                                                                  const qk__fx_params *f,
                                                                  int32_t lo, int32_t hi,
                                                                  int32_t zp, int32_t *y,
                                                                  int corr, int k_lt32,
                                                                  int check) {
    const QK_V vm = QK_V_SET1(f->m);
    const QK_V cp = QK_V_SET1_64(f->cp), c2 = QK_V_SET1_64(QK__SEL(f->cn, f->cp - f->cn));
    const __m128i sh = _mm_cvtsi32_si128(f->k < 32 ? 32 - f->k : f->k - 32);
    const QK_V vlo = QK_V_SET1(lo), vhi = QK_V_SET1(hi), vzp = QK_V_SET1(zp);
    const QK_V xlo = QK_V_SET1(f->xlo), xhi = QK_V_SET1(f->xhi);
    size_t i = 0;
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        const QK_V x = QK_V_LOAD(acc + i);
        if (check && QK_VM_ANY(QK_VM_OR(QK_V_GT(xlo, x), QK_V_GT(x, xhi)))) break;
        const QK_V v = QK__N(qk__fxv_)(x, vm, cp, c2, sh, corr, k_lt32);
        QK_V_STORE(y + i, QK_V_ADD(QK_V_MIN(QK_V_MAX(v, vlo), vhi), vzp));
    }
    return i;
}

/* The loop above, specialised for the flags' combinations of qk__fx_setup. */
QK_V_TARGET static size_t QK__N(qk__fx32_)(const int32_t *acc, size_t n, const qk__fx_params *f,
                                           int32_t lo, int32_t hi, int32_t zp, int32_t *y) {
    if (f->check) return QK__N(qk__fx32_loop_)(acc, n, f, lo, hi, zp, y, 0, 1, 1);
    if (f->corr) return QK__N(qk__fx32_loop_)(acc, n, f, lo, hi, zp, y, 1, 0, 0);
    if (f->k < 32) return QK__N(qk__fx32_loop_)(acc, n, f, lo, hi, zp, y, 0, 1, 0);
    return QK__N(qk__fx32_loop_)(acc, n, f, lo, hi, zp, y, 0, 0, 0);
}
