/* gemm_u8_avx512vnni.c -- the u8 x s8 GEMM tiles on AVX512-VNNI (twins: gemm_u8_scalar.c).
 *
 * Tiles of 12 or 16 rows (the weight block, broadcast a dword a row) x 16 columns (one zmm of
 * the activation panel), K in quads: one vpdpbusd a row and quad. Half tiles (at most 8 pixels)
 * run the same on 256-bit vectors. Conv uses them (qk_linear has its own 6 x 64 tiles:
 * linear_u8_avx512vnni.c). */
#include "ukernels/ukernels.h"

#if QK_X86
#include <immintrin.h>

/* ROWS(X): X(r) for the rows of a tile. Full tiles: one zmm accumulator a row; half tiles: one
 * ymm a row, columns 8-15 stored as zeros. Named registers (not arrays: gcc would keep those in
 * memory). */
#define QK__ROWS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define QK__ROWS16(X) QK__ROWS12(X) X(12) X(13) X(14) X(15)
#define QK__DECL(r) __m512i acc##r = _mm512_setzero_si512();
#define QK__STEP(r) acc##r = _mm512_dpbusd_epi32(acc##r, bv, _mm512_set1_epi32(qk__ld32(ap + 4 * r)));
#define QK__STORE(r) _mm512_storeu_si512((void *)(c + 16 * r), acc##r);
#define QK__LOADB const __m512i bv = _mm512_loadu_si512((const void *)(b + 64 * p));
#define QK__DECLH(r) __m256i acc##r = _mm256_setzero_si256();
#define QK__STEPH(r) acc##r = _mm256_dpbusd_epi32(acc##r, bv, _mm256_set1_epi32(qk__ld32(ap + 4 * r)));
#define QK__STOREH(r)                                     \
    _mm256_storeu_si256((__m256i *)(c + 16 * r), acc##r); \
    _mm256_storeu_si256((__m256i *)(c + 16 * r + 8), _mm256_setzero_si256());
#define QK__LOADBH const __m256i bv = _mm256_loadu_si256((const __m256i *)(b + 64 * p));

#define QK__GEMM_U8(NAME, ROWS, MR, DECL, LOADB, STEP, STORE)                                  \
    QK_TARGET_AVX512VNNI void NAME(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c) { \
        ROWS(DECL)                                                                             \
        for (size_t p = 0; p < kq; p++) {                                                      \
            const unsigned char *ap = (const unsigned char *)a + 4 * (MR) * p;                 \
            LOADB                                                                              \
            ROWS(STEP)                                                                         \
        }                                                                                      \
        ROWS(STORE)                                                                            \
    }
QK__GEMM_U8(qk_gemm_s8u8_12x16__avx512vnni, QK__ROWS12, 12, QK__DECL, QK__LOADB, QK__STEP, QK__STORE)
QK__GEMM_U8(qk_gemm_s8u8_16x16__avx512vnni, QK__ROWS16, 16, QK__DECL, QK__LOADB, QK__STEP, QK__STORE)
QK__GEMM_U8(qk_gemm_s8u8_12x8__avx512vnni, QK__ROWS12, 12, QK__DECLH, QK__LOADBH, QK__STEPH, QK__STOREH)
QK__GEMM_U8(qk_gemm_s8u8_16x8__avx512vnni, QK__ROWS16, 16, QK__DECLH, QK__LOADBH, QK__STEPH, QK__STOREH)
#endif
