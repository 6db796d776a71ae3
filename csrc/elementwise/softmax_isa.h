/* softmax_isa.h -- the int32-input exponent loops of softmax.c, written once for every ISA
 * (softmax.c defines QK_V_IS512 as 0 or 1 and includes it after qk__ibert_exp16 and the
 * qk__iexp32_c / qk__sole32_c constants; the primitives are elementwise/simd_v.h). No include
 * guard: it is included once per ISA. Why the arithmetic is exact: softmax.c. */
#include "elementwise/simd_v.h"

/* the sum of the lanes (each read as uint32) */
QK_V_TARGET static QK_ALWAYS_INLINE uint64_t QK__N(qk__hsum_u32_)(QK_V acc) {
    int32_t l32[QK_V_LANES];
    QK_V_STORE(l32, acc);
    uint64_t s = 0;
    for (int l = 0; l < QK_V_LANES; l++) s += (uint32_t)l32[l];
    return s;
}

/* the last n - i (< lanes) elements of x, padded with the row's maximum mx */
QK_V_TARGET static QK_ALWAYS_INLINE void QK__N(qk__pad_tail_)(const int32_t *x, size_t n, size_t i,
                                                              int32_t mx, int32_t *xt) {
    for (int l = 0; l < QK_V_LANES; l++) xt[l] = i + (size_t)l < n ? x[i + l] : mx;
}

/* I-BERT: the constants of the loop, in vectors */
typedef struct {
    QK_V ax0, b, c, abits, one, zero;
    QK_VF inv, del, flim;
} QK__N(qk__iexp32_v_);

/* I-BERT: the V of one vector of x (the i-exp of max(x, lo) - mx); *tie_out marks the lanes
 * whose float value may be on the other side of a tie (qk__iexp32_fix_ redoes them exactly). */
QK_V_TARGET static QK_ALWAYS_INLINE QK_V QK__N(qk__iexp32_vec_)(const QK__N(qk__iexp32_v_) *k,
                                                                const int32_t *x, QK_V vmx,
                                                                QK_V vlo, QK_VM *tie_out,
                                                                int clampz) {
    const QK_V ad = QK_V_SUB(vmx, QK_V_MAX(QK_V_LOAD(x), vlo)); /* |d| in [0, 30 |x0|] */
    /* q = floor(|d| / |x0|): a float estimate q or q - 1, then one correction */
    QK_V q = QK_V_CVTT(QK_VF_MUL(QK_VF_CVT(ad), k->inv));
    QK_V rr = QK_V_SUB(ad, QK_V_MULLO(q, k->ax0)); /* -r, in [0, 2 |x0|) */
    const QK_VM up = QK_V_GEU(rr, k->ax0);
    q = QK_V_ADD_WHERE(q, up, k->one);
    rr = QK_V_SUB_WHERE(rr, up, k->ax0);
    /* z = (r + b) r + c = c - rr (b - rr), clamped at 0 */
    QK_V z = QK_V_SUB(k->c, QK_V_MULLO(rr, QK_V_SUB(k->b, rr)));
    if (clampz) z = QK_V_MAX(z, k->zero); /* only parameters whose z can be < 0 need it */
    /* V = RNE(z m16 / 2^(s0 + q)): vf = fl(fl(z) A 2^-q) (A 2^-q: A's exponent less q) */
    const QK_VF aq = QK_VF_BITS(QK_V_SUB(k->abits, QK_V_SLLI(q, 23)));
    /* capped at 32767 as I-BERT caps V (v near any vf >= 32767 rounds to >= 32767), so the
     * conversions below stay in range */
    const QK_VF vf = QK_VF_MIN(QK_VF_MUL(QK_VF_CVT(z), aq), k->flim);
    /* RNE of vf (1 + 2^-20) and of vf (1 - 2^-20), each rounded once: when they agree, so does
     * RNE(v) (v is within 2^-21.41 vf of vf; RNE is monotone) */
    const QK_V rhi = QK_V_CVT_RNE_X(QK_VF_FMADD(vf, k->del, vf));
    const QK_VM tie = QK_V_NE(QK_V_CVT_RNE_X(QK_VF_FNMADD(vf, k->del, vf)), rhi);
    *tie_out = tie;
    return rhi;
}

/* the lanes of e marked in tie, redone exactly */
QK_V_TARGET static QK_V QK__N(qk__iexp32_fix_)(QK_V e, QK_VM tie, const qk_softmax_params *p,
                                               const int32_t *x, int32_t mx) {
    int32_t l32[QK_V_LANES];
    QK_V_STORE(l32, e);
    unsigned bits = QK_VM_BITS(tie);
    while (bits) {
        const int l = __builtin_ctz(bits);
        bits &= bits - 1;
        l32[l] = (int32_t)qk__ibert_exp16(p, (int64_t)x[l] - mx);
    }
    return QK_V_LOAD(l32);
}

/* v[i] = V of x[i] for a whole row (the tail through a padded copy); returns the sum of the V. */
QK_V_TARGET static QK_ALWAYS_INLINE uint64_t QK__N(qk__iexp32_row_)(
    const qk__iexp32_c *kc, const qk_softmax_params *p, const int32_t *x, size_t n, int32_t mx,
    int32_t lo, uint16_t *v, int clampz) {
    QK__N(qk__iexp32_v_) k;
    k.ax0 = QK_V_SET1(kc->ax0);
    k.b = QK_V_SET1(kc->b);
    k.c = QK_V_SET1(kc->c);
    k.abits = QK_V_SET1(kc->abits);
    k.one = QK_V_SET1(1);
    k.zero = QK_V_SET1(0);
    k.flim = QK_VF_SET1(32767.0f);
    k.inv = QK_VF_SET1(kc->inv);
    k.del = QK_VF_SET1(0x1p-20f);
    const QK_V vmx = QK_V_SET1(mx), vlo = QK_V_SET1(lo);
    QK_V acc = k.zero;
    uint64_t sum = 0;
    size_t i = 0, steps = 0;
    int32_t l32[QK_V_LANES];
    for (; i + 2 * QK_V_LANES <= n; i += 2 * QK_V_LANES) { /* two vectors a step */
        QK_VM t0, t1;
        QK_V e0 = QK__N(qk__iexp32_vec_)(&k, x + i, vmx, vlo, &t0, clampz);
        QK_V e1 = QK__N(qk__iexp32_vec_)(&k, x + i + QK_V_LANES, vmx, vlo, &t1, clampz);
        if (QK_VM_ANY(QK_VM_OR(t0, t1))) {
            e0 = QK__N(qk__iexp32_fix_)(e0, t0, p, x + i, mx);
            e1 = QK__N(qk__iexp32_fix_)(e1, t1, p, x + i + QK_V_LANES, mx);
        }
        QK_V_STORE_U16(v + i, e0);
        QK_V_STORE_U16(v + i + QK_V_LANES, e1);
        acc = QK_V_ADD(acc, QK_V_ADD(e0, e1));
        if (++steps == 2048) { /* lanes < 2^16 each step: flush before 2^15 steps */
            sum += QK__N(qk__hsum_u32_)(acc);
            acc = k.zero;
            steps = 0;
        }
    }
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        QK_VM t0;
        QK_V e = QK__N(qk__iexp32_vec_)(&k, x + i, vmx, vlo, &t0, clampz);
        if (QK_VM_ANY(t0)) e = QK__N(qk__iexp32_fix_)(e, t0, p, x + i, mx);
        QK_V_STORE_U16(v + i, e);
        acc = QK_V_ADD(acc, e);
        if (++steps == 2048) {
            sum += QK__N(qk__hsum_u32_)(acc);
            acc = k.zero;
            steps = 0;
        }
    }
    sum += QK__N(qk__hsum_u32_)(acc);
    if (i < n) { /* padded with the row's maximum; only the n - i real lanes are kept */
        int32_t xt[QK_V_LANES];
        QK__N(qk__pad_tail_)(x, n, i, mx, xt);
        QK_VM t0;
        QK_V e = QK__N(qk__iexp32_vec_)(&k, xt, vmx, vlo, &t0, clampz);
        if (QK_VM_ANY(t0)) e = QK__N(qk__iexp32_fix_)(e, t0, p, xt, mx);
        QK_V_STORE(l32, e);
        for (size_t l = 0; i + l < n; l++) {
            v[i + l] = (uint16_t)l32[l];
            sum += (uint32_t)l32[l];
        }
    }
    return sum;
}

QK_V_TARGET static uint64_t QK__N(qk__iexp32_)(const qk__iexp32_c *kc, const qk_softmax_params *p,
                                               const int32_t *x, size_t n, int32_t mx, int32_t lo,
                                               uint16_t *v) {
    return kc->zpos ? QK__N(qk__iexp32_row_)(kc, p, x, n, mx, lo, v, 0)
                    : QK__N(qk__iexp32_row_)(kc, p, x, n, mx, lo, v, 1);
}

/* SOLE: v[i] = k of x[i] = the number of thresholds t[1..15] that j = mx - x[i] (uint32) reaches,
 * found in four steps (k + 8, + 4, + 2, + 1) over the 16-entry table, capped at kmax; returns the
 * sum of the 2^(16 - k). */
QK_V_TARGET static QK_ALWAYS_INLINE QK_V QK__N(qk__sole32_vec_)(const uint32_t *t, QK_V tlo,
                                                                QK_V thi, const int32_t *x,
                                                                QK_V vmx, QK_V kmax) {
    (void)t;
    (void)thi; /* AVX-512: the table is one vector */
    const QK_V j = QK_V_SUB(vmx, QK_V_LOAD(x));
    QK_V k = QK_V_SET1(0);
    for (int s = 8; s >= 1; s >>= 1) {
        const QK_V c = QK_V_ADD(k, QK_V_SET1(s));
        k = QK_V_SELECT(QK_V_GEU(j, QK__N(qk__lookup16_)(tlo, thi, c)), c, k);
    }
    return QK_V_MINU(k, kmax);
}

QK_V_TARGET static uint64_t QK__N(qk__sole32_)(const uint32_t *t, uint32_t kmax, const int32_t *x,
                                               size_t n, int32_t mx, uint16_t *v) {
    const QK_V tlo = QK_V_LOAD(t), thi = QK_V_LOAD(t + (QK_V_LANES == 16 ? 0 : 8));
    const QK_V vmx = QK_V_SET1(mx), vk = QK_V_SET1((int32_t)kmax);
    const QK_V one = QK_V_SET1(1), sixteen = QK_V_SET1(16), zero = QK_V_SET1(0);
    QK_V acc = zero;
    uint64_t sum = 0;
    size_t i = 0, steps = 0;
    int32_t l32[QK_V_LANES];
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        const QK_V k = QK__N(qk__sole32_vec_)(t, tlo, thi, x + i, vmx, vk);
        QK_V_STORE_U16(v + i, k);
        acc = QK_V_ADD(acc, QK_V_SLLV(one, QK_V_SUB(sixteen, k)));
        if (++steps == 4096) { /* lanes <= 2^16 each */
            sum += QK__N(qk__hsum_u32_)(acc);
            acc = zero;
            steps = 0;
        }
    }
    sum += QK__N(qk__hsum_u32_)(acc);
    if (i < n) { /* padded with the row's maximum; only the n - i real lanes are kept */
        int32_t xt[QK_V_LANES];
        QK__N(qk__pad_tail_)(x, n, i, mx, xt);
        QK_V_STORE(l32, QK__N(qk__sole32_vec_)(t, tlo, thi, xt, vmx, vk));
        for (size_t l = 0; i + l < n; l++) {
            v[i + l] = (uint16_t)l32[l];
            sum += UINT64_C(1) << (16 - l32[l]);
        }
    }
    return sum;
}

/* I-BERT by the i-exp table (softmax.c: the parameters the int32 lanes above refuse): v[i] =
 * t[mx - max(x[i], lo)] by 32-bit gathers of the 16-bit entries (the low half kept; the table has
 * one entry of slack), the tail through a padded copy (j = 0 in the padding); returns the sum of
 * the V. */
QK_V_TARGET static uint64_t QK__N(qk__iexp_lookup_)(const uint16_t *t, const int32_t *x, size_t n,
                                                    int32_t mx, int32_t lo, uint16_t *v) {
    const QK_V vlo = QK_V_SET1(lo), vmx = QK_V_SET1(mx), m16 = QK_V_SET1(0xFFFF);
    const QK_V zero = QK_V_SET1(0);
    QK_V acc = zero;
    uint64_t sum = 0;
    size_t i = 0, steps = 0;
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        const QK_V j = QK_V_SUB(vmx, QK_V_MAX(QK_V_LOAD(x + i), vlo));
        const QK_V e = QK_V_AND(QK_V_GATHER32_X2(t, j), m16);
        QK_V_STORE_U16(v + i, e);
        acc = QK_V_ADD(acc, e);
        if (++steps == 4096) { /* lanes < 2^15 each step */
            sum += QK__N(qk__hsum_u32_)(acc);
            acc = zero;
            steps = 0;
        }
    }
    sum += QK__N(qk__hsum_u32_)(acc);
    if (i < n) { /* padded with the row's maximum; only the n - i real lanes are kept */
        int32_t xt[QK_V_LANES], l32[QK_V_LANES];
        QK__N(qk__pad_tail_)(x, n, i, mx, xt);
        const QK_V j = QK_V_SUB(vmx, QK_V_MAX(QK_V_LOAD(xt), vlo));
        QK_V_STORE(l32, QK_V_AND(QK_V_GATHER32_X2(t, j), m16));
        for (size_t l = 0; i + l < n; l++) {
            v[i + l] = (uint16_t)l32[l];
            sum += (uint32_t)l32[l];
        }
    }
    return sum;
}

/* ---- qk_softmax_exp2: one row of int32 scores (softmax.c, "exp2"); the same integers as
 * qk__exp2_p: d = max - x is exact in uint32 lanes, min(d, cap - 1) < 2^31 times mult in 64-bit
 * lanes, z < 2^31 (checked once a call), the two 32-entry Q15 tables read by permutes (AVX-512:
 * two registers each) or gathers (AVX2). */
#define QK__E2_GATHER(base, idx) QK__SEL(_mm256_i32gather_epi32(base, idx, 4), _mm512_i32gather_epi32(idx, base, 4))
#define QK__E2_SRLV(a, b) QK__SEL(_mm256_srlv_epi32, _mm512_srlv_epi32)(a, b)
#define QK__E2_MUL64(a, b) QK__SEL(_mm256_mul_epu32, _mm512_mul_epu32)(a, b)
#define QK__E2_ADD64(a, b) QK__SEL(_mm256_add_epi64, _mm512_add_epi64)(a, b)
#define QK__E2_SRL64(a, c) QK__SEL(_mm256_srl_epi64, _mm512_srl_epi64)(a, c)
#define QK__E2_SRLI64(a, c) QK__SEL(_mm256_srli_epi64, _mm512_srli_epi64)(a, c)
#define QK__E2_SLLI64(a, c) QK__SEL(_mm256_slli_epi64, _mm512_slli_epi64)(a, c)
#define QK__E2_ODD(e, o) QK__SEL(_mm256_blend_epi32(e, o, 0xAA), _mm512_mask_blend_epi32(0xAAAA, e, o))
QK_V_TARGET static void QK__N(qk__exp2_row_)(const qk_softmax_exp2_params *p, const int32_t *x,
                                            size_t n, uint8_t *y) {
    size_t i = 0;
    QK_V mv = QK_V_SET1(INT32_MIN);
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) mv = QK_V_MAX(mv, QK_V_LOAD(x + i));
    int32_t l32[QK_V_LANES];
    QK_V_STORE(l32, mv);
    int32_t mx = INT32_MIN;
    for (int l = 0; l < QK_V_LANES; l++) mx = l32[l] > mx ? l32[l] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    const QK_V vmx = QK_V_SET1(mx), cap = QK_V_SET1(p->cap), capm1 = QK_V_SET1(p->cap - 1);
    const QK_V m = QK_V_SET1(p->mult), rnd = QK_V_SET1_64(INT64_C(1) << (p->shift - 1));
    const __m128i sh = _mm_cvtsi32_si128(p->shift);
    const QK_V fm = QK_V_SET1((1 << QK_EXP2_FRAC_BITS) - 1), n17 = QK_V_SET1(17);
    const QK_V c14 = QK_V_SET1(14), c15 = QK_V_SET1(15), one = QK_V_SET1(1);
    const QK_V c255 = QK_V_SET1(255), zero = QK_V_SET1(0), c31 = QK_V_SET1(31);
    const QK_V c16k = QK_V_SET1(16384);
#if QK_V_IS512
    const QK_V hi0 = QK_V_LOAD(p->table), hi1 = QK_V_LOAD(p->table + 16);
    const QK_V lo0 = QK_V_LOAD(p->table + 32), lo1 = QK_V_LOAD(p->table + 48);
#endif
    for (i = 0; i + QK_V_LANES <= n; i += QK_V_LANES) {
        const QK_V d = QK_V_SUB(vmx, QK_V_LOAD(x + i));      /* max - x in [0, 2^32): uint32 */
        const QK_VM big = QK_V_GEU(d, cap);
        const QK_V dd = QK_V_MINU(d, capm1);
        const QK_V ze = QK__E2_SRL64(QK__E2_ADD64(QK__E2_MUL64(dd, m), rnd), sh);
        const QK_V zo = QK__E2_SRL64(QK__E2_ADD64(QK__E2_MUL64(QK__E2_SRLI64(dd, 32), m), rnd), sh);
        const QK_V z = QK__E2_ODD(ze, QK__E2_SLLI64(zo, 32));
        const QK_V k = QK_V_MIN(QK_V_SRLI(z, QK_EXP2_FRAC_BITS), n17);
        const QK_V f = QK_V_AND(z, fm);
#if QK_V_IS512
        /* the two 32-entry tables in registers: one permute each */
        const QK_V th = _mm512_permutex2var_epi32(hi0, QK_V_SRLI(f, 5), hi1);
        const QK_V tl = _mm512_permutex2var_epi32(lo0, QK_V_AND(f, c31), lo1);
#else
        const QK_V th = QK__E2_GATHER(p->table, QK_V_SRLI(f, 5));
        const QK_V tl = QK__E2_GATHER(p->table + 32, QK_V_AND(f, c31));
#endif
        const QK_V t = QK_V_SRLI(QK_V_ADD(QK_V_MULLO(th, tl), c16k), 15);
        const QK_V num = QK_V_ADD(QK_V_MULLO(t, c255), QK_V_SLLV(one, QK_V_ADD(k, c14)));
        const QK_V pv = QK_V_SELECT(big, zero, QK__E2_SRLV(num, QK_V_ADD(k, c15)));
        QK_V_STORE_8(y + i, pv, 0);
    }
    for (; i < n; i++) y[i] = qk__exp2_p(p, (uint64_t)((int64_t)mx - x[i]));
}
#undef QK__E2_GATHER
#undef QK__E2_SRLV
#undef QK__E2_MUL64
#undef QK__E2_ADD64
#undef QK__E2_SRL64
#undef QK__E2_SRLI64
#undef QK__E2_SLLI64
#undef QK__E2_ODD
