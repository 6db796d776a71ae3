/* ukernel.c -- the GEMM micro-kernels (6 x 16 tile of int32 sums over int16 operands) and the
 * depthwise row kernels, each as a portable scalar twin and an AVX2 version with the same bits.
 *
 * qk_gemm_s16_6x16__avx2: per pair of k, two 16-column B vectors and one broadcast 32-bit
 * (int16 pair) per A row; vpmaddwd multiplies int16 x int16 and adds adjacent products into
 * int32 exactly (|a|, |b| <= 255 here), vpaddd accumulates modulo 2^32. The scalar twin does the
 * same sums in uint32.
 */
#include "gemm/gemm_internal.h"

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
static inline int32_t qk__ld32(const int16_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

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
    if (qk__use_avx2()) return qk_gemm_s16_6x16__avx2;
#endif
    return qk_gemm_s16_6x16__scalar;
}

/* ---- depthwise: one output row of one channel ------------------------------------------- */
void qk_dw_row__scalar(const int16_t *xrow0, size_t wp, const int16_t *w, size_t kh, size_t kw,
                       size_t stride_w, size_t dil_h, size_t dil_w, size_t ow, int32_t *out) {
    for (size_t j = 0; j < ow; j++) {
        uint32_t acc = 0;
        for (size_t r = 0; r < kh; r++) {
            const int16_t *xr = xrow0 + r * dil_h * wp + j * stride_w;
            for (size_t s = 0; s < kw; s++)
                acc += (uint32_t)((int32_t)xr[s * dil_w] * w[r * kw + s]);
        }
        out[j] = (int32_t)acc;
    }
}

#if QK_X86
/* 8 outputs at a time: widen 8 int16 (strided by stride_w) to int32 and multiply-accumulate with
 * vpmulld (exact: |x| * |w| <= 255 * 255). Stride 1 loads contiguously; other strides gather. */
QK_TARGET_AVX2 void qk_dw_row__avx2(const int16_t *xrow0, size_t wp, const int16_t *w, size_t kh,
                                    size_t kw, size_t stride_w, size_t dil_h, size_t dil_w,
                                    size_t ow, int32_t *out) {
    size_t j = 0;
    if (stride_w == 1) {
        for (; j + 8 <= ow; j += 8) {
            __m256i acc = _mm256_setzero_si256();
            for (size_t r = 0; r < kh; r++) {
                const int16_t *xr = xrow0 + r * dil_h * wp + j;
                for (size_t s = 0; s < kw; s++) {
                    const __m256i xv = _mm256_cvtepi16_epi32(
                        _mm_loadu_si128((const __m128i *)(xr + s * dil_w)));
                    acc = _mm256_add_epi32(
                        acc, _mm256_mullo_epi32(xv, _mm256_set1_epi32(w[r * kw + s])));
                }
            }
            _mm256_storeu_si256((__m256i *)(out + j), acc);
        }
    } else if (stride_w == 2) {
        /* load 16 int16, keep the even ones: sign-extend the low half of each 32-bit lane */
        for (; j + 8 <= ow; j += 8) {
            __m256i acc = _mm256_setzero_si256();
            for (size_t r = 0; r < kh; r++) {
                const int16_t *xr = xrow0 + r * dil_h * wp + 2 * j;
                for (size_t s = 0; s < kw; s++) {
                    const __m256i v =
                        _mm256_loadu_si256((const __m256i *)(xr + s * dil_w));
                    const __m256i xv = _mm256_srai_epi32(_mm256_slli_epi32(v, 16), 16);
                    acc = _mm256_add_epi32(
                        acc, _mm256_mullo_epi32(xv, _mm256_set1_epi32(w[r * kw + s])));
                }
            }
            _mm256_storeu_si256((__m256i *)(out + j), acc);
        }
    }
    if (j < ow)
        qk_dw_row__scalar(xrow0 + j * stride_w, wp, w, kh, kw, stride_w, dil_h, dil_w, ow - j,
                          out + j);
}
#endif

qk_dw_row_kernel qk__dw_row_kernel(void) {
#if QK_X86
    if (qk__use_avx2()) return qk_dw_row__avx2;
#endif
    return qk_dw_row__scalar;
}
