/* gelu_isa.h -- the int32-input i-GELU loop with 8-bit output of gelu.c, written once for every
 * ISA (gelu.c defines QK_V_IS512 as 0 or 1 and includes it after qk__igelu_out and
 * qk__igelu_fc; the primitives are elementwise/simd_v.h). No include guard: it is included once
 * per ISA. The arithmetic and why it is exact: gelu.c, "int32 input, 8-bit output". */
#include "elementwise/simd_v.h"

/* Elements [0, n) of x (channel i's constants at index i when pc, else index 0); returns the
 * elements done (a multiple of the lanes). Lanes whose float value is within 2^-12 of a rounding
 * tie are redone by the exact scalar qk__igelu_out. */
QK_V_TARGET static size_t QK__N(qk__igelu32f_)(const qk__igelu_fc *f, int pc,
                                              const qk_gelu_ibert_params *p, const int32_t *x,
                                              size_t n, uint8_t *y, int is_signed, int32_t zp,
                                              int32_t lo, int32_t hi) {
    (void)is_signed; /* AVX-512 truncates; AVX2 packs with it */
    const QK_VF flo = QK_VF_SET1((float)(lo - zp)), fhi = QK_VF_SET1((float)(hi - zp));
    const QK_VF near_tie = QK_VF_SET1(0.5f - 0x1p-12f);
    const QK_V vzp = QK_V_SET1(zp), r14 = QK_V_SET1(16383), zero = QK_V_SET1(0);
    QK_V nb = QK_V_SET1(f->nb[0]), cl = QK_V_SET1(f->cl[0]);
    QK_V ap = QK_V_SET1(f->ap[0]), an = QK_V_SET1(f->an[0]);
    QK_VF mf = QK_VF_SET1(f->mf[0]);
    size_t i = 0;
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        if (pc) {
            nb = QK_V_LOAD(f->nb + i);
            cl = QK_V_LOAD(f->cl + i);
            ap = QK_V_LOAD(f->ap + i);
            an = QK_V_LOAD(f->an + i);
            mf = QK_VF_LOAD(f->mf + i);
        }
        const QK_V xv = QK_V_LOAD(x + i);
        /* t = min(|x|, -b) + b in [b, 0]; u = t^2 + (c mod 2^14) < 2^32 (unsigned lanes) */
        const QK_V t = QK_V_SUB(QK_V_MINU(QK_V_ABS(xv), nb), nb);
        const QK_V u = QK_V_ADD(QK_V_MULLO(t, t), cl);
        /* K = L + shift: x > 0: (cH + shift) + floor(u / 2^14); else (shift - cH) - ceil(u / 2^14) */
        const QK_V kp = QK_V_ADD(ap, QK_V_SRLI(u, 14));
        const QK_V kn = QK_V_SUB(an, QK_V_SRLI(QK_V_ADD(u, r14), 14));
        const QK_V k = QK_V_SELECT(QK_V_GT(xv, zero), kp, kn);
        /* v = -x K M / 2^E in float (mf = -fl(M 2^-E)), clamped to the output's range */
        const QK_VF v = QK_VF_MUL(QK_VF_MUL(QK_VF_CVT(xv), QK_VF_CVT(k)), mf);
        const QK_VF w = QK_VF_MIN(QK_VF_MAX(v, flo), fhi);
        const QK_VF r = QK_VF_ROUND_RNE(w);
        const QK_VM tie = QK_VF_GE(QK_VF_ABS(QK_VF_SUB(w, r)), near_tie);
        QK_V_STORE_8(y + i, QK_V_ADD(QK_V_CVT_RNE(r), vzp), is_signed);
        if (QK_VM_ANY(tie)) {
            unsigned bits = QK_VM_BITS(tie);
            while (bits) {
                const int l = __builtin_ctz(bits);
                bits &= bits - 1;
                y[i + l] = (uint8_t)qk__igelu_out(p, pc ? i + l : 0, x[i + l], zp, lo, hi);
            }
        }
    }
    return i;
}

/* ---- qk_gelu_interp: the table GELU with linear interpolation (gelu.c, "interp") ---------- */
/* sat(RHU(x m / 2^e) + add) to [lo, hi], per lane: x int32, m in [0, 2^31), e in [1, 62]; the
 * products in 64-bit lanes (even and odd halves), exact. */
#ifndef QK__GI_MULSHIFT_DONE_AVX2
#define QK__GI_MULSHIFT_DONE_AVX2
QK_TARGET_AVX2 static QK_ALWAYS_INLINE __m256i qk__gi_half_avx2(__m256i p, __m256i e, __m256i add,
                                                                __m256i lo, __m256i hi) {
    /* p + 2^(e-1) + 2^62 >= 0 and < 2^64 (|p| < 2^62): a logical shift, then less 2^(62-e) */
    const __m256i one = _mm256_set1_epi64x(1), bias = _mm256_set1_epi64x(INT64_C(1) << 62);
    const __m256i v = _mm256_add_epi64(_mm256_add_epi64(p, bias),
                                       _mm256_sllv_epi64(one, _mm256_sub_epi64(e, one)));
    __m256i r = _mm256_sub_epi64(_mm256_srlv_epi64(v, e), _mm256_srlv_epi64(bias, e));
    r = _mm256_add_epi64(r, add);
    r = _mm256_blendv_epi8(r, lo, _mm256_cmpgt_epi64(lo, r));
    return _mm256_blendv_epi8(r, hi, _mm256_cmpgt_epi64(r, hi));
}
QK_TARGET_AVX2 static QK_ALWAYS_INLINE __m256i qk__gi_mulshift_avx2(__m256i x, __m256i m, __m256i e,
                                                                    __m256i add, __m256i lo,
                                                                    __m256i hi) {
    const __m256i low = _mm256_set1_epi64x(0xffffffff);
    const __m256i pe = _mm256_mul_epi32(x, m);
    const __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m, 32));
    const __m256i re = qk__gi_half_avx2(pe, _mm256_and_si256(e, low), add, lo, hi);
    const __m256i ro = qk__gi_half_avx2(po, _mm256_srli_epi64(e, 32), add, lo, hi);
    return _mm256_blend_epi32(re, _mm256_slli_epi64(ro, 32), 0xAA);
}
#endif
#ifndef QK__GI_MULSHIFT_DONE_AVX512
#define QK__GI_MULSHIFT_DONE_AVX512
QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m512i qk__gi_half_avx512(__m512i p, __m512i e,
                                                                    __m512i add, __m512i lo,
                                                                    __m512i hi) {
    const __m512i one = _mm512_set1_epi64(1);
    __m512i r = _mm512_srav_epi64(
        _mm512_add_epi64(p, _mm512_sllv_epi64(one, _mm512_sub_epi64(e, one))), e);
    return _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(r, add), lo), hi);
}
QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m512i qk__gi_mulshift_avx512(__m512i x, __m512i m,
                                                                        __m512i e, __m512i add,
                                                                        __m512i lo, __m512i hi) {
    const __m512i low = _mm512_set1_epi64(0xffffffff);
    const __m512i pe = _mm512_mul_epi32(x, m);
    const __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(m, 32));
    const __m512i re = qk__gi_half_avx512(pe, _mm512_and_si512(e, low), add, lo, hi);
    const __m512i ro = qk__gi_half_avx512(po, _mm512_srli_epi64(e, 32), add, lo, hi);
    return _mm512_mask_blend_epi32(0xAAAA, re, _mm512_slli_epi64(ro, 32));
}
#endif
#define QK__GI_MS QK__SEL(qk__gi_mulshift_avx2, qk__gi_mulshift_avx512)
#define QK__GI_GATHER(base, idx) QK__SEL(_mm256_i32gather_epi32(base, idx, 4), _mm512_i32gather_epi32(idx, base, 4))

/* Elements [0, n) of x (channel i's parameters at index i when pc, else index 0); returns the
 * elements done (a multiple of the lanes). Same integers as qk__ginterp_one. The 96-entry
 * segment tables: AVX-512 in registers (6 each, read by permutes), AVX2 by gathers. */
QK_V_TARGET static size_t QK__N(qk__ginterp_)(const qk_gelu_interp_params *p, int pc,
                                             const int32_t *x, size_t n, void *y, qk_dtype yt,
                                             int32_t zp, int32_t lo, int32_t hi) {
    const QK_V tend = QK_V_SET1((int32_t)QK__GI_T), last = QK_V_SET1(QK__GI_SEG - 1);
    const QK_V fm = QK_V_SET1((1 << QK__GI_K) - 1), one_k = QK_V_SET1(1 << QK__GI_K);
    const QK_V half = QK_V_SET1(1 << (QK__GI_K - 1)), zero = QK_V_SET1(0);
    const QK_V a0 = QK_V_SET1_64(0), i32lo = QK_V_SET1_64(-INT32_MAX), i32hi = QK_V_SET1_64(INT32_MAX);
    const QK_V vzp = QK_V_SET1_64(zp), vlo = QK_V_SET1_64(lo), vhi = QK_V_SET1_64(hi);
    const int32_t *tb = p->table;
#if QK_V_IS512
    QK_V ta[6], tbv[6], tc[6];
    for (int r = 0; r < 6; r++) {
        ta[r] = QK_V_LOAD(tb + 16 * r);
        tbv[r] = QK_V_LOAD(tb + QK__GI_SEG + 16 * r);
        tc[r] = QK_V_LOAD(tb + 2 * QK__GI_SEG + 16 * r);
    }
    const QK_V c31 = QK_V_SET1(31), c63 = QK_V_SET1(63);
#endif
    QK_V mi = QK_V_SET1(p->in_multiplier[0]), ei = QK_V_SET1(p->in_rshift[0]);
    QK_V mo = QK_V_SET1(p->multiplier[0]), eo = QK_V_SET1(p->rshift[0]);
    const int sg = yt == QK_DT_S8;
    (void)sg; /* AVX-512 truncates; AVX2 packs with it */
    size_t i = 0;
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        if (pc) {
            mi = QK_V_LOAD(p->in_multiplier + i);
            ei = QK_V_LOAD(p->in_rshift + i);
            mo = QK_V_LOAD(p->multiplier + i);
            eo = QK_V_LOAD(p->rshift + i);
        }
        const QK_V u = QK__GI_MS(QK_V_LOAD(x + i), mi, ei, a0, i32lo, i32hi);
        const QK_V t = QK_V_ABS(u);                       /* |u| <= 2^31 - 1 */
        const QK_V idx = QK_V_MIN(QK_V_SRLI(t, QK__GI_K), last), f = QK_V_AND(t, fm);
#if QK_V_IS512
        const __mmask16 m1 = _mm512_cmpgt_epi32_mask(idx, c31), m2 = _mm512_cmpgt_epi32_mask(idx, c63);
#define QK__GI_LOOK(tv)                                                                         \
    _mm512_mask_blend_epi32(m2,                                                                 \
                            _mm512_mask_blend_epi32(m1, _mm512_permutex2var_epi32(tv[0], idx, tv[1]), \
                                                    _mm512_permutex2var_epi32(tv[2], idx, tv[3])),   \
                            _mm512_permutex2var_epi32(tv[4], idx, tv[5]))
        const QK_V va = QK__GI_LOOK(ta), vb = QK__GI_LOOK(tbv), vc = QK__GI_LOOK(tc);
#undef QK__GI_LOOK
#else
        const QK_V va = QK__GI_GATHER(tb, idx), vb = QK__GI_GATHER(tb + QK__GI_SEG, idx);
        const QK_V vc = QK__GI_GATHER(tb + 2 * QK__GI_SEG, idx);
#endif
        const QK_V w = QK__SEL(_mm256_srai_epi32, _mm512_srai_epi32)(
            QK_V_MULLO(f, QK_V_SUB(f, one_k)), QK__GI_K);
        const QK_V s = QK_V_ADD(QK_V_ADD(QK_V_MULLO(vb, f), QK_V_MULLO(vc, w)), half);
        QK_V h = QK_V_ADD(va, QK__SEL(_mm256_srai_epi32, _mm512_srai_epi32)(s, QK__GI_K));
        h = QK_V_SELECT(QK_V_GT(tend, t), h, zero);       /* t >= 6 2^16: h = 0 */
        const QK_V g = QK_V_SUB(QK_V_MAX(u, zero), h);
        const QK_V v = QK__GI_MS(g, mo, eo, vzp, vlo, vhi);
        if (yt == QK_DT_S32)
            QK_V_STORE((int32_t *)y + i, v);
        else
            QK_V_STORE_8((uint8_t *)y + i, v, sg);
    }
    return i;
}
#undef QK__GI_MS
#undef QK__GI_GATHER

/* ---- qk_gelu_interp on AVX2: no 32-bit gathers, the requantizations from per-channel constants
 * (gelu.c, "interp on AVX2"). AVX-512 keeps the loop above (tables in registers). */
#if !QK_V_IS512
/* One vector of 8 elements (channels ch .. ch + 7 of block k, or channel 0 of k when the
 * parameters are per tensor): u, h, g as in qk__ginterp_one. Lanes the guards or the tie test
 * flag are redone by the exact scalar qk__ginterp_one. out8: 8-bit output (float stage 2),
 * else int32 output (exact stage 2). */
QK_TARGET_AVX2 static QK_ALWAYS_INLINE void qk__gi2_vec_avx2(
    const qk__gi_blk *k, const int64_t *tq, const qk_gelu_interp_params *p, size_t ch, int pc,
    const int32_t *x, void *y, int out8, int sg, int32_t zp, int32_t lo, int32_t hi, __m256 fl8,
    __m256 fh8, __m256i vzp) {
    const __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    /* stage 1: u = RHU(x m / 2^e) on the even and the odd lanes (exact, unsaturated under the
     * guard |x| < 2^(e-1)) */
    const __m256i pe = _mm256_mul_epi32(xv, _mm256_load_si256((const __m256i *)k->m1));
    const __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(xv, 32),
                                        _mm256_load_si256((const __m256i *)(k->m1 + 4)));
    const __m256i qe = _mm256_srlv_epi64(_mm256_add_epi64(pe, _mm256_load_si256((const __m256i *)k->k1)),
                                         _mm256_load_si256((const __m256i *)k->s1));
    const __m256i qo = _mm256_srlv_epi64(
        _mm256_add_epi64(po, _mm256_load_si256((const __m256i *)(k->k1 + 4))),
        _mm256_load_si256((const __m256i *)(k->s1 + 4)));
    const __m256i u = _mm256_add_epi32(_mm256_blend_epi32(qe, _mm256_slli_epi64(qo, 32), 0xAA),
                                       _mm256_load_si256((const __m256i *)k->c1));
    __m256i flag = _mm256_add_epi32(_mm256_abs_epi32(xv), _mm256_load_si256((const __m256i *)k->g1));
    /* h: segment min(t >> 12, 96) of the 97-entry table tq (entry 96 is 0: h = 0 from 6 2^16);
     * A' = 2^12 A + 2^11 in the low dword, (B, C) int16 in the high one; two 4-lane qword
     * gathers (lanes 0 1 4 5 and 2 3 6 7: the shuffles put them back in order) */
    const __m256i t = _mm256_abs_epi32(u);
    const __m256i idx = _mm256_min_epi32(_mm256_srli_epi32(t, QK__GI_K), _mm256_set1_epi32(QK__GI_SEG));
    const __m256i pidx = _mm256_permutevar8x32_epi32(idx, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
    const __m256i q0 = _mm256_i32gather_epi64((const long long *)tq, _mm256_castsi256_si128(pidx), 8);
    const __m256i q1 = _mm256_i32gather_epi64((const long long *)tq, _mm256_extracti128_si256(pidx, 1), 8);
    const __m256i va = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(q0), _mm256_castsi256_ps(q1), 0x88));
    const __m256i vbc = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(q0), _mm256_castsi256_ps(q1), 0xDD));
    /* f in the low word, w = floor(f (f - 2^12) / 2^12) = the high half of (8 f) (2 (f - 2^12))
     * in the high word (8 f < 2^15, 2 (f - 2^12) in [-2^13, -2]) */
    const __m256i f = _mm256_and_si256(t, _mm256_set1_epi32((1 << QK__GI_K) - 1));
    const __m256i w = _mm256_mulhi_epi16(_mm256_slli_epi32(f, 19),
                                         _mm256_slli_epi32(_mm256_sub_epi32(f, _mm256_set1_epi32(1 << QK__GI_K)), 17));
    const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(vbc, _mm256_or_si256(f, w)), va);
    const __m256i g = _mm256_sub_epi32(_mm256_max_epi32(u, _mm256_setzero_si256()), _mm256_srai_epi32(s, QK__GI_K));
    if (out8) {
        /* stage 2 in float: |fl(fl(g) r) - g m / 2^e| <= 2^-22.4 |.|; clamped to [lo - zp,
         * hi - zp] (|.| <= 255) the error is below 2^-13, so RNE of w is RHU of the exact value
         * unless w is within 2^-13 of a tie (flagged) */
        const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(g), _mm256_load_ps(k->rf));
        const __m256 wv = _mm256_min_ps(_mm256_max_ps(v, fl8), fh8);
        const __m256 r = _mm256_round_ps(wv, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 d = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(wv, r));
        flag = _mm256_or_si256(flag, _mm256_castps_si256(_mm256_cmp_ps(d, _mm256_set1_ps(0.5f - 0x1p-13f), _CMP_GE_OQ)));
        qk__v_store8_avx2((uint8_t *)y, _mm256_add_epi32(_mm256_cvtps_epi32(r), vzp), sg);
    } else {
        /* stage 2 exact: y = RHU(g m / 2^e) + zp, unsaturated under the guard |g| < 2^(e-1) */
        const __m256i ge = _mm256_mul_epi32(g, _mm256_load_si256((const __m256i *)k->m2));
        const __m256i go = _mm256_mul_epi32(_mm256_srli_epi64(g, 32),
                                            _mm256_load_si256((const __m256i *)(k->m2 + 4)));
        const __m256i re = _mm256_srlv_epi64(_mm256_add_epi64(ge, _mm256_load_si256((const __m256i *)k->k2)),
                                             _mm256_load_si256((const __m256i *)k->s2));
        const __m256i ro = _mm256_srlv_epi64(
            _mm256_add_epi64(go, _mm256_load_si256((const __m256i *)(k->k2 + 4))),
            _mm256_load_si256((const __m256i *)(k->s2 + 4)));
        const __m256i yv = _mm256_add_epi32(_mm256_blend_epi32(re, _mm256_slli_epi64(ro, 32), 0xAA),
                                            _mm256_load_si256((const __m256i *)k->c2));
        flag = _mm256_or_si256(flag, _mm256_add_epi32(_mm256_abs_epi32(g),
                                                      _mm256_load_si256((const __m256i *)k->g2)));
        _mm256_storeu_si256((__m256i *)y, yv);
    }
    unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(flag));
    while (bits) {
        const int l = __builtin_ctz(bits);
        bits &= bits - 1;
        const int32_t v = qk__ginterp_one(p, pc ? ch + (size_t)l : 0, x[l], zp, lo, hi);
        if (out8)
            ((uint8_t *)y)[l] = (uint8_t)v;
        else
            ((int32_t *)y)[l] = v;
    }
}

/* The table by vpshufb: the segment numbers of 32 elements packed to bytes (in the order of
 * packs: lane 0 holds elements 0-3 of each of the 4 vectors, lane 1 elements 4-7), each byte of
 * A, B, C (int16) read from nch 16-entry chunks: XOR over k <= i >> 4 of D_k[i & 15] with
 * D_k = T_k ^ T_(k-1) (vpshufb gives 0 where i - 16 k < 0); the unpacks undo the packs' order. */
#if defined(__clang__) || defined(__GNUC__)
#define QK__GI_UNROLL4 _Pragma("GCC unroll 4")
#else
#define QK__GI_UNROLL4
#endif
typedef struct {
    __m256i d[6][(QK__GI_SEG + 16) / 16]; /* A lo, A hi, B lo, B hi, C lo, C hi; chunk k */
    int nch, last;                        /* chunks; segments from `last` on are 0 */
    int c8;                               /* every C fits int8: C's high byte is its sign */
} qk__gi_shuf;

QK_TARGET_AVX2 static QK_ALWAYS_INLINE void qk__gi3_blk_avx2(
    const qk__gi_blk *k, int pc, const qk__gi_shuf *sh, const qk_gelu_interp_params *p, size_t ch,
    const int32_t *x, void *y, int out8, int sg, int32_t zp, int32_t lo, int32_t hi, __m256 fl8,
    __m256 fh8, __m256i vzp, int c8) {
    __m256i u[4], flag[4], t[4];
    QK__GI_UNROLL4
    for (int v = 0; v < 4; v++) {
        const qk__gi_blk *kb = k + (pc ? v : 0);
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 8 * v));
        const __m256i pe = _mm256_mul_epi32(xv, _mm256_load_si256((const __m256i *)kb->m1));
        const __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(xv, 32),
                                            _mm256_load_si256((const __m256i *)(kb->m1 + 4)));
        const __m256i qe = _mm256_srlv_epi64(_mm256_add_epi64(pe, _mm256_load_si256((const __m256i *)kb->k1)),
                                             _mm256_load_si256((const __m256i *)kb->s1));
        const __m256i qo = _mm256_srlv_epi64(
            _mm256_add_epi64(po, _mm256_load_si256((const __m256i *)(kb->k1 + 4))),
            _mm256_load_si256((const __m256i *)(kb->s1 + 4)));
        u[v] = _mm256_add_epi32(_mm256_blend_epi32(qe, _mm256_slli_epi64(qo, 32), 0xAA),
                                _mm256_load_si256((const __m256i *)kb->c1));
        flag[v] = _mm256_add_epi32(_mm256_abs_epi32(xv), _mm256_load_si256((const __m256i *)kb->g1));
        t[v] = _mm256_abs_epi32(u[v]);
    }
    /* segment bytes: min(t >> 12, last) (packs saturate: t >> 12 < 2^19) */
    __m256i ib = _mm256_packus_epi16(
        _mm256_packs_epi32(_mm256_srli_epi32(t[0], QK__GI_K), _mm256_srli_epi32(t[1], QK__GI_K)),
        _mm256_packs_epi32(_mm256_srli_epi32(t[2], QK__GI_K), _mm256_srli_epi32(t[3], QK__GI_K)));
    ib = _mm256_min_epu8(ib, _mm256_set1_epi8((char)sh->last));
    __m256i r0 = _mm256_shuffle_epi8(sh->d[0][0], ib), r1 = _mm256_shuffle_epi8(sh->d[1][0], ib);
    __m256i r2 = _mm256_shuffle_epi8(sh->d[2][0], ib), r3 = _mm256_shuffle_epi8(sh->d[3][0], ib);
    __m256i r4 = _mm256_shuffle_epi8(sh->d[4][0], ib);
    __m256i r5 = c8 ? r4 : _mm256_shuffle_epi8(sh->d[5][0], ib);
    for (int c = 1; c < sh->nch; c++) {
        ib = _mm256_sub_epi8(ib, _mm256_set1_epi8(16));
        r0 = _mm256_xor_si256(r0, _mm256_shuffle_epi8(sh->d[0][c], ib));
        r1 = _mm256_xor_si256(r1, _mm256_shuffle_epi8(sh->d[1][c], ib));
        r2 = _mm256_xor_si256(r2, _mm256_shuffle_epi8(sh->d[2][c], ib));
        r3 = _mm256_xor_si256(r3, _mm256_shuffle_epi8(sh->d[3][c], ib));
        r4 = _mm256_xor_si256(r4, _mm256_shuffle_epi8(sh->d[4][c], ib));
        if (!c8) r5 = _mm256_xor_si256(r5, _mm256_shuffle_epi8(sh->d[5][c], ib));
    }
    if (c8) r5 = _mm256_cmpgt_epi8(_mm256_setzero_si256(), r4);
    /* words (vectors 0 and 1 in the low unpack, 2 and 3 in the high), then dwords in order */
    const __m256i aw[2] = {_mm256_unpacklo_epi8(r0, r1), _mm256_unpackhi_epi8(r0, r1)};
    const __m256i bw[2] = {_mm256_unpacklo_epi8(r2, r3), _mm256_unpackhi_epi8(r2, r3)};
    const __m256i cw[2] = {_mm256_unpacklo_epi8(r4, r5), _mm256_unpackhi_epi8(r4, r5)};
    __m256i g[4];
    QK__GI_UNROLL4
    for (int v = 0; v < 4; v++) {
        const int hw = v >> 1;
        const __m256i as = _mm256_srai_epi16(aw[hw], 15);
        const __m256i va = (v & 1) ? _mm256_unpackhi_epi16(aw[hw], as) : _mm256_unpacklo_epi16(aw[hw], as);
        const __m256i vbc = (v & 1) ? _mm256_unpackhi_epi16(bw[hw], cw[hw]) : _mm256_unpacklo_epi16(bw[hw], cw[hw]);
        const __m256i f = _mm256_and_si256(t[v], _mm256_set1_epi32((1 << QK__GI_K) - 1));
        const __m256i w = _mm256_mulhi_epi16(
            _mm256_slli_epi32(f, 19), _mm256_slli_epi32(_mm256_sub_epi32(f, _mm256_set1_epi32(1 << QK__GI_K)), 17));
        const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(vbc, _mm256_or_si256(f, w)),
                                           _mm256_set1_epi32(1 << (QK__GI_K - 1)));
        const __m256i h = _mm256_add_epi32(va, _mm256_srai_epi32(s, QK__GI_K));
        g[v] = _mm256_sub_epi32(_mm256_max_epi32(u[v], _mm256_setzero_si256()), h);
    }
    if (out8) {
        __m256i yv[4];
        QK__GI_UNROLL4
    for (int v = 0; v < 4; v++) {
            const qk__gi_blk *kb = k + (pc ? v : 0);
            const __m256 vf = _mm256_mul_ps(_mm256_cvtepi32_ps(g[v]), _mm256_load_ps(kb->rf));
            const __m256 wv = _mm256_min_ps(_mm256_max_ps(vf, fl8), fh8);
            const __m256 r = _mm256_round_ps(wv, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m256 d = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(wv, r));
            flag[v] = _mm256_or_si256(flag[v], _mm256_castps_si256(_mm256_cmp_ps(d, _mm256_set1_ps(0.5f - 0x1p-13f), _CMP_GE_OQ)));
            yv[v] = _mm256_add_epi32(_mm256_cvtps_epi32(r), vzp);
        }
        /* the lanes are within the 8-bit type: packs keep them; the permute undoes the order */
        const __m256i w01 = _mm256_packs_epi32(yv[0], yv[1]), w23 = _mm256_packs_epi32(yv[2], yv[3]);
        const __m256i b = sg ? _mm256_packs_epi16(w01, w23) : _mm256_packus_epi16(w01, w23);
        _mm256_storeu_si256((__m256i *)y, _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    } else {
        QK__GI_UNROLL4
    for (int v = 0; v < 4; v++) {
            const qk__gi_blk *kb = k + (pc ? v : 0);
            const __m256i ge = _mm256_mul_epi32(g[v], _mm256_load_si256((const __m256i *)kb->m2));
            const __m256i go = _mm256_mul_epi32(_mm256_srli_epi64(g[v], 32),
                                                _mm256_load_si256((const __m256i *)(kb->m2 + 4)));
            const __m256i re = _mm256_srlv_epi64(_mm256_add_epi64(ge, _mm256_load_si256((const __m256i *)kb->k2)),
                                                 _mm256_load_si256((const __m256i *)kb->s2));
            const __m256i ro = _mm256_srlv_epi64(
                _mm256_add_epi64(go, _mm256_load_si256((const __m256i *)(kb->k2 + 4))),
                _mm256_load_si256((const __m256i *)(kb->s2 + 4)));
            flag[v] = _mm256_or_si256(flag[v], _mm256_add_epi32(_mm256_abs_epi32(g[v]),
                                                                _mm256_load_si256((const __m256i *)kb->g2)));
            _mm256_storeu_si256((__m256i *)y + v,
                                _mm256_add_epi32(_mm256_blend_epi32(re, _mm256_slli_epi64(ro, 32), 0xAA),
                                                 _mm256_load_si256((const __m256i *)kb->c2)));
        }
    }
    const __m256i any = _mm256_or_si256(_mm256_or_si256(flag[0], flag[1]), _mm256_or_si256(flag[2], flag[3]));
    if (_mm256_movemask_ps(_mm256_castsi256_ps(any)) == 0) return;
    QK__GI_UNROLL4
    for (int v = 0; v < 4; v++) {
        unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(flag[v]));
        while (bits) {
            const int l = __builtin_ctz(bits) + 8 * v;
            bits &= bits - 1;
            const int32_t r = qk__ginterp_one(p, pc ? ch + (size_t)l : 0, x[l], zp, lo, hi);
            if (out8)
                ((uint8_t *)y)[l] = (uint8_t)r;
            else
                ((int32_t *)y)[l] = r;
        }
    }
}

/* nv vectors of 8 elements at x (channel ch onwards, block k onwards when pc; else all of
 * channel 0 with block k) */
QK_TARGET_AVX2 static void qk__gi2_avx2(const qk__gi_blk *k, const int64_t *tq,
                                        const qk__gi_shuf *sh, const qk_gelu_interp_params *p,
                                        size_t ch, int pc, const int32_t *x, size_t nv, void *y,
                                        int out8, int sg, int32_t zp, int32_t lo, int32_t hi) {
    /* int64: with int32 output hi - zp may leave int32 (the floats are used for 8-bit output) */
    const __m256 fl8 = _mm256_set1_ps((float)((int64_t)lo - zp));
    const __m256 fh8 = _mm256_set1_ps((float)((int64_t)hi - zp));
    const __m256i vzp = _mm256_set1_epi32(zp);
    size_t j0 = 0;
    if (sh != NULL) {
        const size_t ysz = out8 ? 1 : 4;
        for (; j0 + 4 <= nv; j0 += 4)
            if (sh->c8)
                qk__gi3_blk_avx2(k + (pc ? j0 : 0), pc, sh, p, ch + 8 * j0, x + 8 * j0,
                                 (char *)y + 8 * j0 * ysz, out8, sg, zp, lo, hi, fl8, fh8, vzp, 1);
            else
                qk__gi3_blk_avx2(k + (pc ? j0 : 0), pc, sh, p, ch + 8 * j0, x + 8 * j0,
                                 (char *)y + 8 * j0 * ysz, out8, sg, zp, lo, hi, fl8, fh8, vzp, 0);
    }
    if (out8)
        for (size_t j = j0; j < nv; j++)
            qk__gi2_vec_avx2(k + (pc ? j : 0), tq, p, ch + 8 * j, pc, x + 8 * j, (uint8_t *)y + 8 * j,
                             1, sg, zp, lo, hi, fl8, fh8, vzp);
    else
        for (size_t j = j0; j < nv; j++)
            qk__gi2_vec_avx2(k + (pc ? j : 0), tq, p, ch + 8 * j, pc, x + 8 * j, (int32_t *)y + 8 * j,
                             0, sg, zp, lo, hi, fl8, fh8, vzp);
}
#endif
