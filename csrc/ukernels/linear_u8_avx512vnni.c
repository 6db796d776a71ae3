/* linear_u8_avx512vnni.c -- the tiles of qk_linear on the 8-bit path (AVX512-VNNI), with the
 * fused fp32 / int32 output stage; the driver is operators/linear_vnni.c.
 *
 * Register tile: 6 rows of x (u8 dwords broadcast) x up to 4 zmm of output channels (4 weight
 * panels [k4/4][16][4] read side by side: no repacking), so one k-quad costs 6 broadcasts and 4
 * loads for 24 vpdpbusd. Rows of a partial block repeat the last row (computed, never stored).
 * The k loop keeps the 24 accumulators in registers; the 6 x 64 tile then goes through the
 * stack (the output stage needs registers of its own: keeping both in registers measured no
 * faster) and straight into y: v = raw + cb[o] - wz[o] * rowsum (mod 2^32, the rowsum term only
 * when some wzp8 != 0), then the fp32 / int32 output stage of simd_avx512.h lane for lane: the
 * same operations in the same order as the scalar qk__epi1, so the same bits; or the float32
 * output fmaf((float)v, scale, float_bias) of QK_REQ_FLOAT (one vfmadd, like fmaf), or the
 * fixed-point stage (double rounding, its half-up form: qk__fx16__avx512, per-lane multiplier and
 * shift). Other schemes (single rounding, shifts): the same integer corrections without the
 * bias, then the channels output stage (which adds it).
 * Measured on Zen 4 (1 core): ~218 GMAC/s on the DeiT-small shapes, the vpdpbusd issue rate of
 * a plain loop of independent vpdpbusd (one zmm a cycle). */
#include "ukernels/simd_avx512.h"

#if QK_X86
enum { QK__L8_MR = 6, QK__L8_NZ = 4 };

/* Row r of a block (raw sums t, channels o0 .. of nz panels) through the scalar channels stage:
 * v = t + cb - wz * rowsum (cb holds the bias: the stage runs without it). */
static qk_status qk__l8_row_scalar(const qk_linear_u8_args *c, const int32_t *t, size_t r,
                                   size_t o0, int nz) {
    const size_t cols = c->n - o0;
    const size_t cnt = cols < 16 * (size_t)nz ? cols : 16 * (size_t)nz;
    const uint32_t rs = c->any_wz ? c->rowsum[r] : 0u;
    int32_t v[16 * QK__L8_NZ];
    for (size_t q = 0; q < cnt; q++)
        v[q] = (int32_t)((uint32_t)t[q] + c->cb[o0 + q] - (uint32_t)c->wz[o0 + q] * rs);
    qk_epilogue ep = *c->ep;
    ep.bias = NULL;
    return qk_epilogue_channels__scalar(&ep, o0, v, cnt, c->y + (r * c->n + o0) * c->osz);
}

/* One block: rows r0 .. r0+mr-1 (mr <= 6), panels p0 .. p0+NZ-1 (channels o0 = 16 p0 ..). */
QK_TARGET_AVX512VNNI static QK_ALWAYS_INLINE qk_status qk__l8_block(const qk_linear_u8_args *c,
                                                                    size_t r0, size_t mr,
                                                                    size_t p0, const int NZ,
                                                                    const int FLIP) {
    const size_t lda = c->lda, kq = c->kq;
    const uint8_t *a0 = c->a + r0 * lda;
    const uint8_t *ar[QK__L8_MR];
    for (size_t r = 0; r < QK__L8_MR; r++) ar[r] = a0 + (r < mr ? r : mr - 1) * lda;
    const int8_t *b = c->b + p0 * c->bstride;
    const size_t bs = c->bstride;
    /* the k loop on named registers (arrays there make GCC shuffle and spill accumulators) */
#define QK__L8_Z(r, z) __m512i c##r##z = _mm512_setzero_si512();
#define QK__L8_R(r) QK__L8_Z(r, 0) QK__L8_Z(r, 1) QK__L8_Z(r, 2) QK__L8_Z(r, 3)
    QK__L8_R(0) QK__L8_R(1) QK__L8_R(2) QK__L8_R(3) QK__L8_R(4) QK__L8_R(5)
#undef QK__L8_Z
    const uint8_t *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    const uint8_t *a0r = ar[0];
    const __m512i vflip = _mm512_set1_epi32((int32_t)0x80808080u); /* int8 x: x + 128 as u8 */
    for (size_t p = 0; p < kq; p++) {
        const int8_t *bp = b + 64 * p;
        const __m512i b0 = _mm512_loadu_si512((const void *)bp);
        const __m512i b1 = NZ > 1 ? _mm512_loadu_si512((const void *)(bp + bs)) : b0;
        const __m512i b2 = NZ > 2 ? _mm512_loadu_si512((const void *)(bp + 2 * bs)) : b0;
        const __m512i b3 = NZ > 3 ? _mm512_loadu_si512((const void *)(bp + 3 * bs)) : b0;
#define QK__L8_STEP(r, ap)                                              \
        {                                                               \
            __m512i av = _mm512_set1_epi32(qk__ld32(ap + 4 * p));       \
            if (FLIP) av = _mm512_xor_si512(av, vflip);                 \
            c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, b0);             \
            if (NZ > 1) c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, b1); \
            if (NZ > 2) c##r##2 = _mm512_dpbusd_epi32(c##r##2, av, b2); \
            if (NZ > 3) c##r##3 = _mm512_dpbusd_epi32(c##r##3, av, b3); \
        }
        QK__L8_STEP(0, a0r) QK__L8_STEP(1, a1) QK__L8_STEP(2, a2) QK__L8_STEP(3, a3)
        QK__L8_STEP(4, a4) QK__L8_STEP(5, a5)
#undef QK__L8_STEP
    }
    /* through a tile in memory (see the top of the file) */
    int32_t tile[QK__L8_MR][64];
#define QK__L8_Z(r, z) if (z < NZ) _mm512_storeu_si512((void *)&tile[r][16 * z], c##r##z);
    QK__L8_R(0) QK__L8_R(1) QK__L8_R(2) QK__L8_R(3) QK__L8_R(4) QK__L8_R(5)
#undef QK__L8_Z
#undef QK__L8_R
    /* output stage */
    const qk_epilogue *ep = c->ep;
    const size_t o0 = 16 * p0;
    const size_t cols = c->n - o0; /* channels left from o0 (> 0) */
    const qk__outc_avx512 zc = qk__outc__avx512(ep);
    __mmask16 mask[QK__L8_NZ];
#pragma GCC unroll 4
    for (int z = 0; z < NZ; z++) {
        const size_t left = cols > 16 * (size_t)z ? cols - 16 * (size_t)z : 0;
        mask[z] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    }
    if (!c->vec) {
        qk_status st = QK_OK;
        const size_t cnt = cols < 16 * (size_t)NZ ? cols : 16 * (size_t)NZ;
        for (size_t r = 0; r < mr; r++) {
            const uint32_t rs = c->any_wz ? c->rowsum[r0 + r] : 0u;
            int32_t *t = tile[r];
            for (size_t q = 0; q < cnt; q++)
                t[q] = (int32_t)((uint32_t)t[q] + c->cb[o0 + q] - (uint32_t)c->wz[o0 + q] * rs);
            if (qk_epilogue_channels__avx2(ep, o0, t, cnt,
                                           c->y + ((r0 + r) * c->n + o0) * c->osz) != QK_OK)
                st = QK_ERR_OVERFLOW;
        }
        return st;
    }
    const int any_wz = c->any_wz, fp32 = c->fp32, flt = c->flt, fx = c->fx;
    const uint32_t *cb = c->cb + o0;
    const int32_t *wz = c->wz + o0;
    const float *fb = c->fb + o0, *sc = c->sc + o0;
    const int32_t *mul = c->mul + o0, *shf = c->shf + o0;
    const size_t ystride = c->n * c->osz;
    char *y0 = c->y + (r0 * c->n + o0) * c->osz;
    qk__fxc_avx512 fc = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    if (fx) fc = qk__fxc__avx512(ep); /* (act_min, act_max unchecked without requantization) */
    qk_status st = QK_OK;
    /* fx, strict mode: a row holding a left shift that overflows stops being stored there and
     * is redone by the scalar channels stage, which reports it (the same bits as the scalar
     * path, up to the element it stops at) */
#define QK__L8_OUT(r, z)                                                                       \
    if (z < NZ && !bad) {                                                                      \
        __m512i v = _mm512_add_epi32(_mm512_loadu_si512((const void *)&tile[r][16 * z]),       \
                                     _mm512_loadu_si512((const void *)(cb + 16 * z)));         \
        if (any_wz)                                                                            \
            v = _mm512_sub_epi32(v, _mm512_mullo_epi32(                                        \
                    _mm512_loadu_si512((const void *)(wz + 16 * z)), vrs));                    \
        if (fx) {                                                                              \
            __mmask16 ovf;                                                                     \
            const __m512i rq = qk__fx16__avx512(v, _mm512_loadu_si512((const void *)(mul + 16 * z)), \
                                                _mm512_loadu_si512((const void *)(shf + 16 * z)), \
                                                c->half_up, &ovf);                             \
            if ((ovf & mask[z]) && !ep->wrap)                                                  \
                bad = 1;                                                                       \
            else                                                                               \
                _mm_mask_storeu_epi8(yr + 16 * z, mask[z], qk__fx_bytes16__avx512(rq, &fc));   \
        } else if (flt) {                                                                      \
            _mm512_mask_storeu_ps(yr + 64 * z, mask[z],                                        \
                                  _mm512_fmadd_ps(_mm512_cvtepi32_ps(v),                       \
                                                  _mm512_loadu_ps(sc + 16 * z),                \
                                                  _mm512_loadu_ps(fb + 16 * z)));              \
        } else if (!fp32) {                                                                    \
            _mm512_mask_storeu_epi32(yr + 64 * z, mask[z], v);                                 \
        } else {                                                                               \
            _mm_mask_storeu_epi8(yr + 16 * z, mask[z],                                         \
                                 qk__fp32_bytes16__avx512(v, 1, _mm512_loadu_ps(fb + 16 * z),  \
                                                          _mm512_loadu_ps(sc + 16 * z), &zc)); \
        }                                                                                      \
    }
#define QK__L8_ROW(r)                                                              \
    if (r < mr) {                                                                  \
        char *yr = y0 + r * ystride;                                               \
        const __m512i vrs = any_wz ? _mm512_set1_epi32((int32_t)c->rowsum[r0 + r]) \
                                   : _mm512_setzero_si512();                       \
        int bad = 0;                                                               \
        QK__L8_OUT(r, 0) QK__L8_OUT(r, 1) QK__L8_OUT(r, 2) QK__L8_OUT(r, 3)        \
        if (bad && qk__l8_row_scalar(c, tile[r], r0 + r, o0, NZ) != QK_OK)         \
            st = QK_ERR_OVERFLOW;                                                  \
    }
    QK__L8_ROW(0) QK__L8_ROW(1) QK__L8_ROW(2) QK__L8_ROW(3) QK__L8_ROW(4) QK__L8_ROW(5)
#undef QK__L8_ROW
#undef QK__L8_OUT
    return st;
}

/* The block kernel specialized for each panel count and flip (always-inline body above). */
#define QK__L8_SPEC(NZ, FLIP)                                          \
    QK_TARGET_AVX512VNNI static qk_status qk__l8_block_##NZ##_##FLIP(  \
        const qk_linear_u8_args *c, size_t r0, size_t mr, size_t p0) { \
        return qk__l8_block(c, r0, mr, p0, NZ, FLIP);                  \
    }
QK__L8_SPEC(4, 0) QK__L8_SPEC(3, 0) QK__L8_SPEC(2, 0) QK__L8_SPEC(1, 0)
QK__L8_SPEC(4, 1) QK__L8_SPEC(3, 1) QK__L8_SPEC(2, 1) QK__L8_SPEC(1, 1)
#undef QK__L8_SPEC

QK_TARGET_AVX512VNNI qk_status qk_linear_u8_6x64__avx512vnni(const qk_linear_u8_args *c,
                                                             size_t r0, size_t r1, size_t p0,
                                                             size_t nz) {
    qk_status (*const block)(const qk_linear_u8_args *, size_t, size_t, size_t) =
        c->flip ? (nz >= 4 ? qk__l8_block_4_1 : nz == 3 ? qk__l8_block_3_1
                                               : nz == 2 ? qk__l8_block_2_1 : qk__l8_block_1_1)
                : (nz >= 4 ? qk__l8_block_4_0 : nz == 3 ? qk__l8_block_3_0
                                               : nz == 2 ? qk__l8_block_2_0 : qk__l8_block_1_0);
    qk_status st = QK_OK;
    for (size_t r = r0; r < r1; r += QK__L8_MR)
        if (block(c, r, r1 - r < QK__L8_MR ? r1 - r : QK__L8_MR, p0) != QK_OK) st = QK_ERR_OVERFLOW;
    return st;
}

/* vpsadbw, 64 bytes at a time, a masked tail */
QK_TARGET_AVX512VNNI uint32_t qk_sum_u8__avx512vnni(const uint8_t *s, size_t n, uint8_t flip) {
    const __m512i vf = _mm512_set1_epi8((char)flip);
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(
            _mm512_xor_si512(_mm512_loadu_si512((const void *)(s + i)), vf), _mm512_setzero_si512()));
    if (i < n) {
        const __mmask64 m = (__mmask64)((~0ull) >> (64 - (n - i)));
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(
            _mm512_maskz_mov_epi8(m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, s + i), vf)),
            _mm512_setzero_si512()));
    }
    return (uint32_t)_mm512_reduce_add_epi64(acc);
}

QK_TARGET_AVX512VNNI void qk_linear_u8_setup__avx512vnni(size_t n, size_t k, const int32_t *wzp8,
                                                         const int32_t *colsum, int32_t xz8,
                                                         const qk_epilogue *ep, int vec,
                                                         size_t np, uint32_t *cb, int32_t *wz,
                                                         float *fb, float *sc) {
    const __m512i kx = _mm512_set1_epi32((int32_t)((uint32_t)k * (uint32_t)xz8));
    const __m512i vx = _mm512_set1_epi32(xz8);
    for (size_t o = 0; o < np; o += 16) {
        const __mmask16 m = n - o >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - o)) - 1u);
        const __m512i z = _mm512_maskz_loadu_epi32(m, wzp8 + o);
        __m512i v = _mm512_sub_epi32(_mm512_mullo_epi32(kx, z),
                                     _mm512_mullo_epi32(vx, _mm512_maskz_loadu_epi32(m, colsum + o)));
        if (ep->bias && vec) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(m, ep->bias + o));
        _mm512_storeu_si512((void *)(cb + o), v);
        _mm512_storeu_si512((void *)(wz + o), z);
        _mm512_storeu_ps(fb + o, ep->float_bias ? _mm512_maskz_loadu_ps(m, ep->float_bias + o)
                                                : _mm512_setzero_ps());
        _mm512_storeu_ps(sc + o, ep->scale ? _mm512_maskz_loadu_ps(m, ep->scale + o)
                                           : _mm512_setzero_ps());
    }
}
#endif
