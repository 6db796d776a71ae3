/* vnni.c -- the u8 x s8 GEMM micro-kernels for CPUs with AVX512-VNNI (vpdpbusd: four
 * u8 x s8 products summed into each int32 lane, exactly, wrapping modulo 2^32 without
 * saturation), and their portable scalar twins (same sums in uint32, same bits).
 *
 * Operands are raw 8-bit values: activations as u8 (int8 activations are shifted by +128, their
 * zero point too) and weights as s8 (uint8 weights shifted by -128). The zero points are applied
 * afterwards by the drivers, exactly modulo 2^32:
 *   sum (x - xz)(w - wz) = sum x w - xz sum w - wz sum x + K xz wz
 * (sum w per channel is precomputed at pack time). Tiles: 12 rows (broadcast side) x 16 columns
 * (one zmm), K in quads: the vector side is a panel [K4/4][16][4] bytes, the broadcast side rows
 * of K4 bytes read 4 at a time.
 *   qk_gemm_u8s8_12x16: broadcast u8 rows (activations), s8 panel (weights) -- linear.
 *   qk_gemm_s8u8_12x16: broadcast s8 rows (weights), u8 panel (im2col) -- conv.
 */
#include "gemm/gemm_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if QK_X86
#include <immintrin.h>
#define QK_TARGET_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vnni")))
#endif

static _Atomic int qk__vnni_choice = -1;

int qk__use_vnni(void) {
    int v = atomic_load_explicit(&qk__vnni_choice, memory_order_relaxed);
    if (v >= 0) return v;
    v = 0;
#if QK_X86 && defined(__GNUC__)
    const char *env = getenv("QKERNELS_SIMD");
    if (qk__use_avx2() && !(env != NULL && strcmp(env, "avx2") == 0)) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vnni");
    }
#endif
    atomic_store_explicit(&qk__vnni_choice, v, memory_order_relaxed);
    return v;
}

static inline int32_t qk__ld32b(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

void qk_gemm_u8s8_12x16__scalar(size_t mr, size_t kq, const uint8_t *a, size_t lda,
                                const int8_t *b, int32_t *c) {
    for (size_t r = 0; r < QK_VNNI_MR; r++) {
        const uint8_t *ar = a + (r < mr ? r : mr - 1) * lda;
        uint32_t acc[16] = {0};
        for (size_t p = 0; p < kq; p++) {
            const int8_t *bp = b + p * 64;
            for (size_t j = 0; j < 16; j++) {
                int32_t s = 0;
                for (size_t q = 0; q < 4; q++) s += (int32_t)ar[4 * p + q] * bp[4 * j + q];
                acc[j] += (uint32_t)s;
            }
        }
        for (size_t j = 0; j < 16; j++) c[r * 16 + j] = (int32_t)acc[j];
    }
}

void qk_gemm_s8u8_12x16__scalar(size_t mr, size_t kq, const int8_t *a, size_t lda,
                                const uint8_t *b, int32_t *c) {
    for (size_t r = 0; r < QK_VNNI_MR; r++) {
        const int8_t *ar = a + (r < mr ? r : mr - 1) * lda;
        uint32_t acc[16] = {0};
        for (size_t p = 0; p < kq; p++) {
            const uint8_t *bp = b + p * 64;
            for (size_t j = 0; j < 16; j++) {
                int32_t s = 0;
                for (size_t q = 0; q < 4; q++) s += (int32_t)ar[4 * p + q] * bp[4 * j + q];
                acc[j] += (uint32_t)s;
            }
        }
        for (size_t j = 0; j < 16; j++) c[r * 16 + j] = (int32_t)acc[j];
    }
}

#if QK_X86
/* ROWS(X): X(r) for the 12 rows. BCAST(r): the broadcast dword of row r at quad p. */
#define QK__ROWS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define QK__DECL(r) __m512i acc##r = _mm512_setzero_si512(); \
    const unsigned char *a##r = (const unsigned char *)a + (r < mr ? r : mr - 1) * lda;
#define QK__STORE(r) _mm512_storeu_si512((void *)(c + 16 * r), acc##r);
#define QK__STEP_US(r) acc##r = _mm512_dpbusd_epi32(acc##r, _mm512_set1_epi32(qk__ld32b(a##r + 4 * p)), bv);
#define QK__STEP_SU(r) acc##r = _mm512_dpbusd_epi32(acc##r, bv, _mm512_set1_epi32(qk__ld32b(a##r + 4 * p)));

QK_TARGET_VNNI void qk_gemm_u8s8_12x16__avx512vnni(size_t mr, size_t kq, const uint8_t *a,
                                                   size_t lda, const int8_t *b, int32_t *c) {
    QK__ROWS12(QK__DECL)
    for (size_t p = 0; p < kq; p++) {
        const __m512i bv = _mm512_loadu_si512((const void *)(b + 64 * p));
        QK__ROWS12(QK__STEP_US)
    }
    QK__ROWS12(QK__STORE)
}

QK_TARGET_VNNI void qk_gemm_s8u8_12x16__avx512vnni(size_t mr, size_t kq, const int8_t *a,
                                                   size_t lda, const uint8_t *b, int32_t *c) {
    QK__ROWS12(QK__DECL)
    for (size_t p = 0; p < kq; p++) {
        const __m512i bv = _mm512_loadu_si512((const void *)(b + 64 * p));
        QK__ROWS12(QK__STEP_SU)
    }
    QK__ROWS12(QK__STORE)
}
#endif

qk_gemm_u8s8_ukernel qk__gemm_u8s8_ukernel(void) {
#if QK_X86
    if (qk__use_vnni()) return qk_gemm_u8s8_12x16__avx512vnni;
#endif
    return qk_gemm_u8s8_12x16__scalar;
}

qk_gemm_s8u8_ukernel qk__gemm_s8u8_ukernel(void) {
#if QK_X86
    if (qk__use_vnni()) return qk_gemm_s8u8_12x16__avx512vnni;
#endif
    return qk_gemm_s8u8_12x16__scalar;
}
