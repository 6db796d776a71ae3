/* simd_v.h -- the vector primitives of the elementwise ISA templates (requantize_isa.h,
 * quantize_isa.h), in the manner of gemmlowp's fixedpoint.h: each primitive names its AVX2 and
 * its AVX-512 form, and a template included with QK_V_IS512 defined as 0 or 1 gets one of them.
 * The routine is written once; the primitives pick the same instructions the hand-written loops
 * did (masks: vectors of all-ones lanes on AVX2, mask registers on AVX-512). Not installed. */
#ifndef QKERNELS_ELEMENTWISE_SIMD_V_H
#define QKERNELS_ELEMENTWISE_SIMD_V_H

#include "core/core.h"

#if QK_X86
#include <immintrin.h>

#define QK__SEL(avx2, avx512) QK__SEL_(QK_V_IS512, avx2, avx512)
#define QK__SEL_(is512, a, b) QK__SEL__(is512, a, b)
#define QK__SEL__(is512, a, b) QK__SEL_##is512(a, b)
#define QK__SEL_0(a, b) a
#define QK__SEL_1(a, b) b
/* name##_avx2 or name##_avx512 */
#define QK__N(name) QK__N_(name, QK__SEL(avx2, avx512))
#define QK__N_(name, isa) QK__N__(name, isa)
#define QK__N__(name, isa) name##isa

#define QK_V_TARGET QK__SEL(QK_TARGET_AVX2, QK_TARGET_AVX512)
#define QK_V_LANES QK__SEL(8, 16)
#define QK_V QK__SEL(__m256i, __m512i)    /* int32 lanes */
#define QK_VF QK__SEL(__m256, __m512)     /* float lanes */
#define QK_VM QK__SEL(__m256i, __mmask16) /* a lane mask */
#define QK_V_LOAD(p) QK__SEL(_mm256_loadu_si256((const __m256i *)(p)), _mm512_loadu_si512((const void *)(p)))
#define QK_V_SET1(v) QK__SEL(_mm256_set1_epi32, _mm512_set1_epi32)(v)
#define QK_V_SET1_64(v) QK__SEL(_mm256_set1_epi64x, _mm512_set1_epi64)(v)
#define QK_V_SET1_16(v) QK__SEL(_mm256_set1_epi16, _mm512_set1_epi16)(v)
#define QK_V_SET1_8(v) QK__SEL(_mm256_set1_epi8, _mm512_set1_epi8)(v)
#define QK_VF_SET1(v) QK__SEL(_mm256_set1_ps, _mm512_set1_ps)(v)
#define QK_V_ADD(a, b) QK__SEL(_mm256_add_epi32, _mm512_add_epi32)(a, b)
#define QK_V_SUB(a, b) QK__SEL(_mm256_sub_epi32, _mm512_sub_epi32)(a, b)
#define QK_V_AND(a, b) QK__SEL(_mm256_and_si256, _mm512_and_si512)(a, b)
#define QK_V_SRA(a, cnt) QK__SEL(_mm256_sra_epi32, _mm512_sra_epi32)(a, cnt)
#define QK_V_GT(a, b) QK__SEL(_mm256_cmpgt_epi32, _mm512_cmpgt_epi32_mask)(a, b)
#define QK_V_EQ(a, b) QK__SEL(_mm256_cmpeq_epi32, _mm512_cmpeq_epi32_mask)(a, b)
/* q odd; a >= 0; q + 1 where m (AVX2: m is -1 there) */
#define QK_V_ODD(q, one) QK__SEL(_mm256_cmpeq_epi32(_mm256_and_si256(q, one), one), _mm512_test_epi32_mask(q, one))
#define QK_V_NONNEG(a) QK__SEL(_mm256_cmpgt_epi32(a, _mm256_set1_epi32(-1)), _mm512_cmpge_epi32_mask(a, _mm512_setzero_si512()))
#define QK_V_INC_WHERE(q, m, one) QK__SEL(_mm256_sub_epi32(q, m), _mm512_mask_add_epi32(q, m, q, one))
#define QK_VM_OR(a, b) QK__SEL(_mm256_or_si256(a, b), (__mmask16)((a) | (b)))
#define QK_VM_AND(a, b) QK__SEL(_mm256_and_si256(a, b), (__mmask16)((a) & (b)))
#define QK_VM_ANY(m) QK__SEL(!_mm256_testz_si256(m, m), (m) != 0)
#define QK_VF_CVT(a) QK__SEL(_mm256_cvtepi32_ps, _mm512_cvtepi32_ps)(a)
#define QK_VF_MUL(a, b) QK__SEL(_mm256_mul_ps, _mm512_mul_ps)(a, b)
#define QK_VF_MIN(a, b) QK__SEL(_mm256_min_ps, _mm512_min_ps)(a, b)
#define QK_VF_MAX(a, b) QK__SEL(_mm256_max_ps, _mm512_max_ps)(a, b)
#define QK_V_CVT_RNE(f) QK__SEL(_mm256_cvtps_epi32, _mm512_cvtps_epi32)(f) /* default MXCSR: RNE */
/* narrowing: int32 -> int16 (saturating), int16 adds (saturating), int16 -> int8 / uint8
 * (saturating), 8-bit min / max; the packs work within 128-bit lanes, QK_V_DWORD_ORDER puts the
 * dwords of four packed vectors back in order */
#define QK_V_PACKS32(a, b) QK__SEL(_mm256_packs_epi32, _mm512_packs_epi32)(a, b)
#define QK_V_ADDS16(a, b) QK__SEL(_mm256_adds_epi16, _mm512_adds_epi16)(a, b)
#define QK_V_PACKS16(a, b) QK__SEL(_mm256_packs_epi16, _mm512_packs_epi16)(a, b)
#define QK_V_PACKUS16(a, b) QK__SEL(_mm256_packus_epi16, _mm512_packus_epi16)(a, b)
#define QK_V_MIN8(a, b) QK__SEL(_mm256_min_epi8, _mm512_min_epi8)(a, b)
#define QK_V_MAX8(a, b) QK__SEL(_mm256_max_epi8, _mm512_max_epi8)(a, b)
#define QK_V_MINU8(a, b) QK__SEL(_mm256_min_epu8, _mm512_min_epu8)(a, b)
#define QK_V_MAXU8(a, b) QK__SEL(_mm256_max_epu8, _mm512_max_epu8)(a, b)
#define QK_V_DWORD_ORDER(r)                                                                   \
    QK__SEL(_mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)),        \
            _mm512_permutexvar_epi32(                                                         \
                _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r))
#define QK_V_STORE(p, v) QK__SEL(_mm256_storeu_si256((__m256i *)(p), v), _mm512_storeu_si512((void *)(p), v))
#endif

#endif /* QKERNELS_ELEMENTWISE_SIMD_V_H */
