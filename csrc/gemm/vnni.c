/* vnni.c -- the u8 x s8 GEMM micro-kernels for CPUs with AVX512-VNNI (vpdpbusd: four
 * u8 x s8 products summed into each int32 lane, exactly, wrapping modulo 2^32 without
 * saturation), and their portable scalar twins (same sums in uint32, same bits).
 *
 * Operands are raw 8-bit values: activations as u8 (int8 activations are shifted by +128, their
 * zero point too) and weights as s8 (uint8 weights shifted by -128). The zero points are applied
 * afterwards by the drivers, exactly modulo 2^32:
 *   sum (x - xz)(w - wz) = sum x w - xz sum w - wz sum x + K xz wz
 * (sum w per channel is precomputed at pack time). Tiles: 12 rows (broadcast side) x 16 columns
 * (one zmm), K in quads: the vector side is a panel [K4/4][16][4] bytes, the broadcast side a
 * block [K4/4][12][4] bytes (12 rows interleaved by quads, so one pointer reaches all 12).
 *   qk_gemm_s8u8_12x16 / 16x16: broadcast s8 rows (weights), u8 panel (im2col) -- conv.
 * (Linear has its own 6 x 64 tiles over the same weight panels: linear_vnni.c.)
 */
#include "gemm/gemm_internal.h"

#include <stdatomic.h>
#include <string.h>

#if QK_X86
#include <immintrin.h>
#define QK_TARGET_VNNI \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#endif

static _Atomic int qk__vnni_choice = -1;

/* The AVX-512 level is chosen (CPU support, QKERNELS_SIMD; see qk__use_avx512) and the CPU also
 * has VNNI. Cached once, thread-safe. */
int qk__use_vnni(void) {
    int v = atomic_load_explicit(&qk__vnni_choice, memory_order_relaxed);
    if (v >= 0) return v;
    v = 0;
#if QK_X86 && defined(__GNUC__)
    if (qk__use_avx512()) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
    }
#endif
    atomic_store_explicit(&qk__vnni_choice, v, memory_order_relaxed);
    return v;
}


static void qk__gemm_s8u8_scalar(size_t rows, size_t kq, const int8_t *a, const uint8_t *b,
                                 int32_t *c) {
    for (size_t r = 0; r < rows; r++) {
        uint32_t acc[16] = {0};
        for (size_t p = 0; p < kq; p++) {
            const uint8_t *bp = b + p * 64;
            for (size_t j = 0; j < 16; j++) {
                int32_t s = 0;
                for (size_t q = 0; q < 4; q++)
                    s += (int32_t)a[4 * rows * p + 4 * r + q] * bp[4 * j + q];
                acc[j] += (uint32_t)s;
            }
        }
        for (size_t j = 0; j < 16; j++) c[r * 16 + j] = (int32_t)acc[j];
    }
}

void qk_gemm_s8u8_12x16__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c) {
    qk__gemm_s8u8_scalar(12, kq, a, b, c);
}

static void qk__gemm_s8u8_half_scalar(size_t rows, size_t kq, const int8_t *a, const uint8_t *b,
                                      int32_t *c) {
    for (size_t r = 0; r < rows; r++) {
        uint32_t acc[8] = {0};
        for (size_t p = 0; p < kq; p++) {
            const uint8_t *bp = b + p * 64;
            for (size_t j = 0; j < 8; j++) {
                int32_t s = 0;
                for (size_t q = 0; q < 4; q++)
                    s += (int32_t)a[4 * rows * p + 4 * r + q] * bp[4 * j + q];
                acc[j] += (uint32_t)s;
            }
        }
        for (size_t j = 0; j < 16; j++) c[r * 16 + j] = j < 8 ? (int32_t)acc[j] : 0;
    }
}

void qk_gemm_s8u8_12x8__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c) {
    qk__gemm_s8u8_half_scalar(12, kq, a, b, c);
}

void qk_gemm_s8u8_16x8__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c) {
    qk__gemm_s8u8_half_scalar(16, kq, a, b, c);
}

void qk_gemm_s8u8_16x16__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c) {
    qk__gemm_s8u8_scalar(16, kq, a, b, c);
}

#if QK_X86
/* ROWS(X): X(r) for the 12 rows. BCAST(r): the broadcast dword of row r at quad p. */
#define QK__ROWS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define QK__DECL(r) __m512i acc##r = _mm512_setzero_si512();
#define QK__STORE(r) _mm512_storeu_si512((void *)(c + 16 * r), acc##r);
#define QK__STEP_SU(r) acc##r = _mm512_dpbusd_epi32(acc##r, bv, _mm512_set1_epi32(qk__ld32(ap + 4 * r)));

QK_TARGET_VNNI void qk_gemm_s8u8_12x16__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b,
                                                   int32_t *c) {
    QK__ROWS12(QK__DECL)
    for (size_t p = 0; p < kq; p++) {
        const unsigned char *ap = (const unsigned char *)a + 48 * p;
        const __m512i bv = _mm512_loadu_si512((const void *)(b + 64 * p));
        QK__ROWS12(QK__STEP_SU)
    }
    QK__ROWS12(QK__STORE)
}

#define QK__ROWS16(X) QK__ROWS12(X) X(12) X(13) X(14) X(15)
QK_TARGET_VNNI void qk_gemm_s8u8_16x16__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b,
                                                   int32_t *c) {
    QK__ROWS16(QK__DECL)
    for (size_t p = 0; p < kq; p++) {
        const unsigned char *ap = (const unsigned char *)a + 64 * p;
        const __m512i bv = _mm512_loadu_si512((const void *)(b + 64 * p));
        QK__ROWS16(QK__STEP_SU)
    }
    QK__ROWS16(QK__STORE)
}

#define QK__DECLH(r) __m256i acc##r = _mm256_setzero_si256();
#define QK__STEPH(r) acc##r = _mm256_dpbusd_epi32(acc##r, bv, _mm256_set1_epi32(qk__ld32(ap + 4 * r)));
#define QK__STOREH(r)                                             \
    _mm256_storeu_si256((__m256i *)(c + 16 * r), acc##r);         \
    _mm256_storeu_si256((__m256i *)(c + 16 * r + 8), _mm256_setzero_si256());
QK_TARGET_VNNI void qk_gemm_s8u8_12x8__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b,
                                                  int32_t *c) {
    QK__ROWS12(QK__DECLH)
    for (size_t p = 0; p < kq; p++) {
        const unsigned char *ap = (const unsigned char *)a + 48 * p;
        const __m256i bv = _mm256_loadu_si256((const __m256i *)(b + 64 * p));
        QK__ROWS12(QK__STEPH)
    }
    QK__ROWS12(QK__STOREH)
}

QK_TARGET_VNNI void qk_gemm_s8u8_16x8__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b,
                                                  int32_t *c) {
    QK__ROWS16(QK__DECLH)
    for (size_t p = 0; p < kq; p++) {
        const unsigned char *ap = (const unsigned char *)a + 64 * p;
        const __m256i bv = _mm256_loadu_si256((const __m256i *)(b + 64 * p));
        QK__ROWS16(QK__STEPH)
    }
    QK__ROWS16(QK__STOREH)
}
#endif

qk_gemm_s8u8_ukernel qk__gemm_s8u8_half_ukernel(size_t mr) {
#if QK_X86
    if (qk__use_vnni()) return mr == 16 ? qk_gemm_s8u8_16x8__avx512vnni : qk_gemm_s8u8_12x8__avx512vnni;
#endif
    return mr == 16 ? qk_gemm_s8u8_16x8__scalar : qk_gemm_s8u8_12x8__scalar;
}

qk_gemm_s8u8_ukernel qk__gemm_s8u8_ukernel(size_t mr) {
#if QK_X86
    if (qk__use_vnni()) return mr == 16 ? qk_gemm_s8u8_16x16__avx512vnni : qk_gemm_s8u8_12x16__avx512vnni;
#endif
    return mr == 16 ? qk_gemm_s8u8_16x16__scalar : qk_gemm_s8u8_12x16__scalar;
}

/* ---- tile output: zero-point correction + epilogue ------------------------------------------
 * Scalar form (the reference, and the fallback): v = raw + corr - wz * xsum (mod 2^32), then
 * qk__epilogue_channels / qk__epilogue_run. The AVX-512 form does the same operations on 16
 * lanes (vpmulld / vpaddd wrap like uint32; fp32 scheme as in epilogue.c), bit for bit. */
#if QK_X86
QK_TARGET_VNNI static int qk__vec_ok(const qk_epilogue *ep) {
    return ep->scheme == QK_REQ_FP32 || ep->scheme == QK_REQ_NONE;
}

QK_TARGET_VNNI static inline void qk__out16(const qk_epilogue *ep, __m512i acc, __m512i vbias,
                                            __m512 vfb, __m512 vsc, __m512 flo, __m512 fhi,
                                            __m512i vzp, __mmask16 mask, char *y) {
    if (ep->bias) acc = _mm512_add_epi32(acc, vbias);
    if (ep->scheme == QK_REQ_NONE) {
        _mm512_mask_storeu_epi32(y, mask, acc);
        return;
    }
    __m512 f = _mm512_cvtepi32_ps(acc);
    if (ep->float_bias) f = _mm512_add_ps(f, vfb);
    f = _mm512_mul_ps(f, vsc);
    f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), vzp); /* inside the 8-bit range */
    /* narrowed in a register, then a masked byte store: the memory form of vpmovdb is slow on
     * some cores (Zen 4) */
    __m128i b = _mm512_cvtepi32_epi8(q);
    __asm__("" : "+v"(b)); /* keeps the compiler from folding the two into the memory form */
    _mm_mask_storeu_epi8(y, mask, b);
}

/* Conv: tile rows are channels o0.., columns cnt <= 16 pixels (xsum per pixel). */
QK_TARGET_VNNI static void qk__tile_conv_avx512(const qk_epilogue *ep, const int32_t *wzp8,
                                                const uint32_t *corr, const uint32_t *pixsum,
                                                size_t o0, const int32_t *tile, size_t mr,
                                                size_t cnt, char *y, size_t ystride) {
    const __m512i vps = pixsum ? _mm512_loadu_si512((const void *)pixsum) : _mm512_setzero_si512();
    const __m512 flo = _mm512_set1_ps(qk__ep_flo(ep));
    const __m512 fhi = _mm512_set1_ps(qk__ep_fhi(ep));
    const __m512i vzp = _mm512_set1_epi32(ep->zero_point);
    const __mmask16 mask = (__mmask16)((1u << cnt) - 1u);
    for (size_t r = 0; r < mr; r++) {
        const size_t o = o0 + r;
        __m512i acc = _mm512_add_epi32(_mm512_loadu_si512((const void *)(tile + 16 * r)),
                                       _mm512_set1_epi32((int32_t)corr[o]));
        if (pixsum) acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(wzp8[o]), vps));
        qk__out16(ep, acc, ep->bias ? _mm512_set1_epi32(ep->bias[o]) : _mm512_setzero_si512(),
                  ep->float_bias ? _mm512_set1_ps(ep->float_bias[o]) : _mm512_setzero_ps(),
                  ep->scale ? _mm512_set1_ps(ep->scale[o]) : _mm512_setzero_ps(), flo, fhi, vzp,
                  mask, y + r * ystride);
    }
}
#endif

qk_status qk__tile_out_conv(const qk_epilogue *ep, const qk_packed_weights *w,
                            const uint32_t *corr, const uint32_t *pixsum, size_t o0, size_t cnt,
                            int32_t *tile, size_t mr, char *y, size_t ystride) {
#if QK_X86
    if (qk__use_vnni() && qk__vec_ok(ep)) {
        qk__tile_conv_avx512(ep, w->wzp8, corr, pixsum, o0, tile, mr, cnt, y, ystride);
        return QK_OK;
    }
#endif
    qk_status st = QK_OK;
    for (size_t r = 0; r < mr; r++) {
        int32_t *t = tile + r * 16;
        const uint32_t c = corr[o0 + r], wz = (uint32_t)w->wzp8[o0 + r];
        for (size_t i = 0; i < cnt; i++)
            t[i] = (int32_t)((uint32_t)t[i] + c - (pixsum ? wz * pixsum[i] : 0u));
        if (qk__epilogue_run(ep, o0 + r, t, cnt, y + r * ystride) != QK_OK) st = QK_ERR_OVERFLOW;
    }
    return st;
}

/* ---- depthwise plane, AVX-512BW: 32 outputs of a row at a time ---------------------------
 * The same pairing of taps as qk_dw_plane__avx2 (vpmaddwd on interleaved tap pairs, exact), on
 * 32 lanes of int16; stride 2 keeps the even elements with vpmovdw. Reads may run up to
 * 2 * 32 + 63 elements past the last input the plane needs (the caller's slack). */
#if QK_X86
QK_TARGET_VNNI static inline __m512i qk__dw_load32(const int16_t *p, size_t stride_w) {
    if (stride_w == 1) return _mm512_loadu_si512((const void *)p);
    const __m256i lo = _mm512_cvtepi32_epi16(_mm512_loadu_si512((const void *)p));
    const __m256i hi = _mm512_cvtepi32_epi16(_mm512_loadu_si512((const void *)(p + 32)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

QK_TARGET_VNNI void qk_dw_plane__avx512(const int16_t *x, size_t wp, const int16_t *w, size_t kh,
                                        size_t kw, size_t stride_h, size_t stride_w, size_t dil_h,
                                        size_t dil_w, size_t oh, size_t ow, int32_t *out) {
    enum { MAXT = 64 };
    const size_t taps = kh * kw;
    if (!(stride_w == 1 || stride_w == 2) || taps > MAXT) {
        qk_dw_plane__scalar(x, wp, w, kh, kw, stride_h, stride_w, dil_h, dil_w, oh, ow, out);
        return;
    }
    size_t off[MAXT + 1];
    int32_t wpair[MAXT / 2 + 1];
    for (size_t t = 0; t < taps; t++) off[t] = (t / kw) * dil_h * wp + (t % kw) * dil_w;
    off[taps] = off[taps - 1];
    for (size_t t = 0; t < taps; t += 2) {
        const uint32_t w0 = (uint16_t)w[t], w1 = t + 1 < taps ? (uint16_t)w[t + 1] : 0u;
        wpair[t / 2] = (int32_t)(w0 | (w1 << 16));
    }
    const __m512i ia = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i ib = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    if (ow <= 16) {
        /* Narrow planes: two output rows per vector, lanes 0-15 row i, lanes 16-31 row i + 1
         * (the last row of an odd count is computed twice and stored once). */
        const __mmask16 m = (__mmask16)(ow == 16 ? 0xFFFFu : (1u << ow) - 1u);
        for (size_t i = 0; i < oh; i += 2) {
            const size_t i2 = i + 1 < oh ? i + 1 : i;
            const int16_t *r0 = x + i * stride_h * wp, *r1 = x + i2 * stride_h * wp;
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
            for (size_t t = 0; t < taps; t += 2) {
                const __m512i v0 = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm512_castsi512_si256(qk__dw_load32(r0 + off[t], stride_w))),
                    _mm512_castsi512_si256(qk__dw_load32(r1 + off[t], stride_w)), 1);
                const __m512i v1 = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm512_castsi512_si256(qk__dw_load32(r0 + off[t + 1], stride_w))),
                    _mm512_castsi512_si256(qk__dw_load32(r1 + off[t + 1], stride_w)), 1);
                const __m512i wv = _mm512_set1_epi32(wpair[t / 2]);
                lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(v0, v1), wv));
                hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(v0, v1), wv));
            }
            _mm512_mask_storeu_epi32(out + i * ow, m, _mm512_permutex2var_epi64(lo, ia, hi));
            if (i2 != i)
                _mm512_mask_storeu_epi32(out + i2 * ow, m, _mm512_permutex2var_epi64(lo, ib, hi));
        }
        return;
    }
    for (size_t i = 0; i < oh; i++) {
        const int16_t *xrow = x + i * stride_h * wp;
        int32_t *orow = out + i * ow;
        for (size_t j = 0; j < ow; j += 32) {
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
            const int16_t *base = xrow + j * stride_w;
            for (size_t t = 0; t < taps; t += 2) {
                const __m512i v0 = qk__dw_load32(base + off[t], stride_w);
                const __m512i v1 = qk__dw_load32(base + off[t + 1], stride_w);
                const __m512i wv = _mm512_set1_epi32(wpair[t / 2]);
                lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(v0, v1), wv));
                hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(v0, v1), wv));
            }
            const __m512i a = _mm512_permutex2var_epi64(lo, ia, hi);   /* outputs j .. j+15 */
            const __m512i b = _mm512_permutex2var_epi64(lo, ib, hi);   /* outputs j+16 .. j+31 */
            const size_t left = ow - j;
            if (left >= 32) {
                _mm512_storeu_si512((void *)(orow + j), a);
                _mm512_storeu_si512((void *)(orow + j + 16), b);
            } else if (left > 16) {
                _mm512_storeu_si512((void *)(orow + j), a);
                _mm512_mask_storeu_epi32(orow + j + 16, (__mmask16)((1u << (left - 16)) - 1u), b);
            } else {
                _mm512_mask_storeu_epi32(orow + j, (__mmask16)(left == 16 ? 0xFFFFu : (1u << left) - 1u), a);
            }
        }
    }
}
#endif

/* One channel's run of raw sums (fp32 / int32 schemes), 16 lanes at a time and a masked tail;
 * returns the elements done (all of them, or 0 for the other schemes). Same bits as qk__epi1. */
#if QK_X86
QK_TARGET_VNNI size_t qk__epilogue_run_avx512(const qk_epilogue *ep, size_t o, const int32_t *src,
                                              size_t cnt, void *y) {
    if (!qk__vec_ok(ep)) return 0;
    const size_t osz = ep->out_type == QK_DT_S32 ? 4 : 1;
    const __m512 flo = _mm512_set1_ps(qk__ep_flo(ep));
    const __m512 fhi = _mm512_set1_ps(qk__ep_fhi(ep));
    const __m512i vzp = _mm512_set1_epi32(ep->zero_point);
    const __m512i vbias = ep->bias ? _mm512_set1_epi32(ep->bias[o]) : _mm512_setzero_si512();
    const __m512 vfb = ep->float_bias ? _mm512_set1_ps(ep->float_bias[o]) : _mm512_setzero_ps();
    const __m512 vsc = ep->scale ? _mm512_set1_ps(ep->scale[o]) : _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= cnt; i += 16)
        qk__out16(ep, _mm512_loadu_si512((const void *)(src + i)), vbias, vfb, vsc, flo, fhi, vzp,
                  0xFFFF, (char *)y + i * osz);
    if (i < cnt) { /* the tail, with masked loads and stores (masked-off lanes are not accessed) */
        const __mmask16 m = (__mmask16)((1u << (cnt - i)) - 1u);
        qk__out16(ep, _mm512_maskz_loadu_epi32(m, src + i), vbias, vfb, vsc, flo, fhi, vzp, m,
                  (char *)y + i * osz);
        i = cnt;
    }
    return i;
}
#endif

/* ---- 8-bit depthwise plane -------------------------------------------------------------------
 * Output j of a row, kernel row r, quad b of taps: the four bytes x[(j * sw) + (4b + q) * dw],
 * q = 0..3, against the four s8 taps (zero past kw): one vpdpbusd per quad for 16 outputs, the
 * dwords gathered from one 64-byte load by vpermb (VBMI). Sums wrap modulo 2^32, as the scalar
 * twin's uint32 arithmetic. */
void qk_dw8_plane__scalar(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh, size_t kq,
                          size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                          size_t ow, uint32_t corr, int32_t *out) {
    for (size_t i = 0; i < oh; i++)
        for (size_t j = 0; j < ow; j++) {
            uint32_t acc = corr;
            for (size_t r = 0; r < kh; r++) {
                const uint8_t *xr = x + (i * stride_h + r * dil_h) * wp + j * stride_w;
                for (size_t t = 0; t < 4 * kq; t++) {
                    const int32_t wv = w8[r * 4 * kq + t];
                    if (wv != 0) acc += (uint32_t)((int32_t)xr[t * dil_w] * wv);
                }
            }
            out[i * ow + j] = (int32_t)acc;
        }
}

#if QK_X86
#define QK_TARGET_VBMI \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))

QK_TARGET_VBMI void qk_dw8_plane__avx512vbmi(const uint8_t *x, size_t wp, const int8_t *w8,
                                             size_t kh, size_t kq, size_t stride_h,
                                             size_t stride_w, size_t dil_h, size_t dil_w,
                                             size_t oh, size_t ow, uint32_t corr, int32_t *out) {
    enum { MAXQ = 64 };
    if (kh * kq > MAXQ || !qk__dw8_fits(kq, stride_w, dil_w)) {
        qk_dw8_plane__scalar(x, wp, w8, kh, kq, stride_h, stride_w, dil_h, dil_w, oh, ow, corr,
                             out);
        return;
    }
    const __m512i idx = qk__dw8_gather_index(stride_w, dil_w);
    __m512i wv[MAXQ];
    size_t off[MAXQ];
    const size_t nq = kh * kq;
    qk__dw8_taps(w8, kh, kq, dil_h, dil_w, wp, wv, off);
    const __m512i vc = _mm512_set1_epi32((int32_t)corr);
    size_t i = 0;
    for (; i + 4 <= oh; i += 4) { /* four rows at a time: four independent vpdpbusd chains */
        const uint8_t *xrow = x + i * stride_h * wp;
        const size_t rs = stride_h * wp;
        for (size_t j = 0; j < ow; j += 16) {
            const uint8_t *base = xrow + j * stride_w;
            __m512i a[4] = {vc, vc, vc, vc};
            qk__dw8_rows4(base, rs, off, wv, nq, idx, a);
            const size_t left = ow - j;
            const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
            int32_t *o = out + i * ow + j;
            _mm512_mask_storeu_epi32(o, m, a[0]);
            _mm512_mask_storeu_epi32(o + ow, m, a[1]);
            _mm512_mask_storeu_epi32(o + 2 * ow, m, a[2]);
            _mm512_mask_storeu_epi32(o + 3 * ow, m, a[3]);
        }
    }
    for (; i < oh; i++) {
        const uint8_t *xrow = x + i * stride_h * wp;
        int32_t *orow = out + i * ow;
        for (size_t j = 0; j < ow; j += 16) {
            const uint8_t *base = xrow + j * stride_w;
            __m512i acc = vc;
            for (size_t t = 0; t < nq; t++) {
                const __m512i v = _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)(base + off[t])));
                acc = _mm512_dpbusd_epi32(acc, v, wv[t]);
            }
            const size_t left = ow - j;
            _mm512_mask_storeu_epi32(orow + j, left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u), acc);
        }
    }
}
#endif

qk_dw8_plane_kernel qk__dw8_plane_kernel(void) {
#if QK_X86 && defined(__GNUC__)
    if (qk__use_vnni()) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512vbmi")) return qk_dw8_plane__avx512vbmi;
    }
#endif
    return NULL;
}
