/* ukernel.c -- the GEMM micro-kernels (6 x 16 tile of int32 sums over int16 operands) and the
 * depthwise row kernels, each as a portable scalar twin and an AVX2 version with the same bits.
 *
 * qk_gemm_s16_6x16__avx2: per pair of k, two 16-column B vectors and one broadcast 32-bit
 * (int16 pair) per A row; vpmaddwd multiplies int16 x int16 and adds adjacent products into
 * int32 exactly (|a|, |b| <= 255 here), vpaddd accumulates modulo 2^32. The scalar twin does the
 * same sums in uint32.
 */
#include "operators/operators.h"

#include <string.h>

#if QK_X86
#include <immintrin.h>
#endif

void qk_gemm_s16_6x16__scalar(size_t mr, size_t kp, const int16_t *a, size_t lda,
                              const int16_t *b, int32_t *c) {
    for (size_t r = 0; r < QK_GEMM_MR; r++) {
        const int16_t *ar = a + (r < mr ? r : mr - 1) * lda;
        uint32_t acc[QK_GEMM_NR];
        for (size_t j = 0; j < QK_GEMM_NR; j++) acc[j] = 0;
        for (size_t p = 0; p < kp; p++) {
            const int32_t a0 = ar[2 * p], a1 = ar[2 * p + 1];
            const int16_t *bp = b + p * 2 * QK_GEMM_NR;
            for (size_t j = 0; j < QK_GEMM_NR; j++)
                acc[j] += (uint32_t)(a0 * bp[2 * j] + a1 * bp[2 * j + 1]);
        }
        for (size_t j = 0; j < QK_GEMM_NR; j++) c[r * QK_GEMM_NR + j] = (int32_t)acc[j];
    }
}

#if QK_X86
QK_TARGET_AVX2 void qk_gemm_s16_6x16__avx2(size_t mr, size_t kp, const int16_t *a, size_t lda,
                                           const int16_t *b, int32_t *c) {
    const int16_t *a0 = a;
    const int16_t *a1 = a + (mr > 1 ? 1 : 0) * lda;
    const int16_t *a2 = a + (mr > 2 ? 2 : mr - 1) * lda;
    const int16_t *a3 = a + (mr > 3 ? 3 : mr - 1) * lda;
    const int16_t *a4 = a + (mr > 4 ? 4 : mr - 1) * lda;
    const int16_t *a5 = a + (mr > 5 ? 5 : mr - 1) * lda;
    __m256i c00 = _mm256_setzero_si256(), c01 = _mm256_setzero_si256();
    __m256i c10 = _mm256_setzero_si256(), c11 = _mm256_setzero_si256();
    __m256i c20 = _mm256_setzero_si256(), c21 = _mm256_setzero_si256();
    __m256i c30 = _mm256_setzero_si256(), c31 = _mm256_setzero_si256();
    __m256i c40 = _mm256_setzero_si256(), c41 = _mm256_setzero_si256();
    __m256i c50 = _mm256_setzero_si256(), c51 = _mm256_setzero_si256();
    for (size_t p = 0; p < kp; p++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + 32 * p));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 32 * p + 16));
        __m256i va = _mm256_set1_epi32(qk__ld32(a0 + 2 * p));
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(va, b0));
        c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(va, b1));
        va = _mm256_set1_epi32(qk__ld32(a1 + 2 * p));
        c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(va, b0));
        c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(va, b1));
        va = _mm256_set1_epi32(qk__ld32(a2 + 2 * p));
        c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(va, b0));
        c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(va, b1));
        va = _mm256_set1_epi32(qk__ld32(a3 + 2 * p));
        c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(va, b0));
        c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(va, b1));
        va = _mm256_set1_epi32(qk__ld32(a4 + 2 * p));
        c40 = _mm256_add_epi32(c40, _mm256_madd_epi16(va, b0));
        c41 = _mm256_add_epi32(c41, _mm256_madd_epi16(va, b1));
        va = _mm256_set1_epi32(qk__ld32(a5 + 2 * p));
        c50 = _mm256_add_epi32(c50, _mm256_madd_epi16(va, b0));
        c51 = _mm256_add_epi32(c51, _mm256_madd_epi16(va, b1));
    }
    _mm256_storeu_si256((__m256i *)(c + 0), c00);
    _mm256_storeu_si256((__m256i *)(c + 8), c01);
    _mm256_storeu_si256((__m256i *)(c + 16), c10);
    _mm256_storeu_si256((__m256i *)(c + 24), c11);
    _mm256_storeu_si256((__m256i *)(c + 32), c20);
    _mm256_storeu_si256((__m256i *)(c + 40), c21);
    _mm256_storeu_si256((__m256i *)(c + 48), c30);
    _mm256_storeu_si256((__m256i *)(c + 56), c31);
    _mm256_storeu_si256((__m256i *)(c + 64), c40);
    _mm256_storeu_si256((__m256i *)(c + 72), c41);
    _mm256_storeu_si256((__m256i *)(c + 80), c50);
    _mm256_storeu_si256((__m256i *)(c + 88), c51);
}
#endif

qk_gemm_ukernel qk__gemm_ukernel(void) {
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX2) return qk_gemm_s16_6x16__avx2;
#endif
    return qk_gemm_s16_6x16__scalar;
}

/* ---- depthwise: one output plane of one channel --------------------------------------- */
void qk_dw_plane__scalar(const int16_t *x, size_t wp, const int16_t *w, size_t kh, size_t kw,
                         size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                         size_t ow, int32_t *out) {
    for (size_t i = 0; i < oh; i++)
        for (size_t j = 0; j < ow; j++) {
            uint32_t acc = 0;
            for (size_t r = 0; r < kh; r++) {
                const int16_t *xr = x + (i * stride_h + r * dil_h) * wp + j * stride_w;
                for (size_t s = 0; s < kw; s++)
                    acc += (uint32_t)((int32_t)xr[s * dil_w] * w[r * kw + s]);
            }
            out[i * ow + j] = (int32_t)acc;
        }
}

#if QK_X86
/* 16 int16 of one input row for outputs j..j+15: contiguous (stride 1) or the even elements of
 * 32 (stride 2). */
QK_TARGET_AVX2 static inline __m256i qk__dw_load16(const int16_t *p, size_t stride_w) {
    if (stride_w == 1) return _mm256_loadu_si256((const __m256i *)p);
    const __m256i m = _mm256_set1_epi32(0xFFFF);
    const __m256i v0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), m);
    const __m256i v1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 16)), m);
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(v0, v1), 0xD8);
}

/* 16 outputs of a row at a time; taps are taken in pairs, interleaved (unpacklo/hi) and
 * multiplied by the weight pair with vpmaddwd (exact for |x|, |w| <= 255); an odd last tap pairs
 * with weight 0. The last block of a row computes 16 outputs and keeps ow - j of them: reads may
 * run up to 2 * 16 + 31 elements past the last input the plane needs (the caller provides that
 * slack; the extra lanes are discarded). Strides other than 1 and 2: the scalar twin. */
QK_TARGET_AVX2 void qk_dw_plane__avx2(const int16_t *x, size_t wp, const int16_t *w, size_t kh,
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
    int32_t tmp[16];
    for (size_t i = 0; i < oh; i++) {
        const int16_t *xrow = x + i * stride_h * wp;
        int32_t *orow = out + i * ow;
        for (size_t j = 0; j < ow; j += 16) {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            const int16_t *base = xrow + j * stride_w;
            for (size_t t = 0; t < taps; t += 2) {
                const __m256i v0 = qk__dw_load16(base + off[t], stride_w);
                const __m256i v1 = qk__dw_load16(base + off[t + 1], stride_w);
                const __m256i wv = _mm256_set1_epi32(wpair[t / 2]);
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(v0, v1), wv));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(v0, v1), wv));
            }
            int32_t *dst = j + 16 <= ow ? orow + j : tmp;
            _mm256_storeu_si256((__m256i *)dst, _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(dst + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
            if (dst == tmp)
                for (size_t q = 0; j + q < ow; q++) orow[j + q] = tmp[q];
        }
    }
}
#endif

qk_dw_plane_kernel qk__dw_plane_kernel(void) {
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX512VNNI) return qk_dw_plane__avx512;
    if (qk__level() >= QK_LEVEL_AVX2) return qk_dw_plane__avx2;
#endif
    return qk_dw_plane__scalar;
}
