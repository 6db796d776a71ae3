/* simd_v.h -- the vector primitives of the elementwise ISA templates (requantize_isa.h,
 * quantize_isa.h), in the manner of gemmlowp's fixedpoint.h: each primitive names its AVX2 and
 * its AVX-512 form, and a template included with QK_V_IS512 defined as 0 or 1 gets one of them.
 * The routine is written once; the primitives pick the same instructions the hand-written loops
 * did (masks: vectors of all-ones lanes on AVX2, mask registers on AVX-512). Not installed. */
#ifndef QKERNELS_ELEMENTWISE_SIMD_V_H
#define QKERNELS_ELEMENTWISE_SIMD_V_H

#include "core/core.h"

#include <string.h>

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
#define QK_V_NE(a, b) QK__SEL(_mm256_xor_si256(_mm256_cmpeq_epi32(a, b), _mm256_set1_epi32(-1)), _mm512_cmpneq_epi32_mask(a, b))
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
/* for the integer transformer loops (gelu_isa.h, softmax_isa.h) */
#define QK_V_ABS(a) QK__SEL(_mm256_abs_epi32, _mm512_abs_epi32)(a)
#define QK_V_MINU(a, b) QK__SEL(_mm256_min_epu32, _mm512_min_epu32)(a, b)
#define QK_V_MAX(a, b) QK__SEL(_mm256_max_epi32, _mm512_max_epi32)(a, b)
#define QK_V_MULLO(a, b) QK__SEL(_mm256_mullo_epi32, _mm512_mullo_epi32)(a, b)
#define QK_V_SRLI(a, imm) QK__SEL(_mm256_srli_epi32, _mm512_srli_epi32)(a, imm)
#define QK_V_SLLI(a, imm) QK__SEL(_mm256_slli_epi32, _mm512_slli_epi32)(a, imm)
#define QK_V_SLLV(a, b) QK__SEL(_mm256_sllv_epi32, _mm512_sllv_epi32)(a, b)
#define QK_V_GEU(a, b) QK__SEL(_mm256_cmpeq_epi32(_mm256_max_epu32(a, b), a), _mm512_cmpge_epu32_mask(a, b))
/* a where m, else b */
#define QK_V_SELECT(m, a, b) QK__SEL(_mm256_blendv_epi8(b, a, m), _mm512_mask_blend_epi32(m, b, a))
/* a + b where m, else a; a - b where m, else a */
#define QK_V_ADD_WHERE(a, m, b) QK__SEL(_mm256_add_epi32(a, _mm256_and_si256(m, b)), _mm512_mask_add_epi32(a, m, a, b))
#define QK_V_SUB_WHERE(a, m, b) QK__SEL(_mm256_sub_epi32(a, _mm256_and_si256(m, b)), _mm512_mask_sub_epi32(a, m, a, b))
#define QK_VM_BITS(m) QK__SEL((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(m)), (unsigned)(m))
#define QK_VF_ADD(a, b) QK__SEL(_mm256_add_ps, _mm512_add_ps)(a, b)
#define QK_V_CVTT(f) QK__SEL(_mm256_cvttps_epi32, _mm512_cvttps_epi32)(f)
#define QK_VF_BITS(a) QK__SEL(_mm256_castsi256_ps, _mm512_castsi512_ps)(a)
#define QK_V_MIN(a, b) QK__SEL(_mm256_min_epi32, _mm512_min_epi32)(a, b)
#define QK_VF_FMADD(a, b, c) QK__SEL(_mm256_fmadd_ps, _mm512_fmadd_ps)(a, b, c)    /* a b + c */
#define QK_VF_FNMADD(a, b, c) QK__SEL(_mm256_fnmadd_ps, _mm512_fnmadd_ps)(a, b, c)  /* c - a b */
#define QK_VF_NE(a, b) QK__SEL(_mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_NEQ_UQ)), _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ))
/* float -> int32, round to nearest even whatever MXCSR says (AVX-512: embedded rounding) */
#define QK_V_CVT_RNE_X(a) QK__SEL(_mm256_cvtps_epi32(_mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), _mm512_cvt_roundps_epi32(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
#define QK_VF_LOAD(p) QK__SEL(_mm256_loadu_ps, _mm512_loadu_ps)(p)
#define QK_VF_SUB(a, b) QK__SEL(_mm256_sub_ps, _mm512_sub_ps)(a, b)
#define QK_VF_ABS(a) QK__SEL(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a), _mm512_abs_ps(a))
/* round to nearest, ties to even, whatever MXCSR says */
#define QK_VF_ROUND_RNE(a) QK__SEL(_mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
/* the 32 bits at byte offset 2 idx of base, for each lane (idx >= 0): 16-bit tables read by gathers */
#define QK_V_GATHER32_X2(base, idx) QK__SEL(_mm256_i32gather_epi32((const int *)(base), idx, 2), _mm512_i32gather_epi32(idx, (const void *)(base), 2))
#define QK_VF_GE(a, b) QK__SEL(_mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GE_OQ)), _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ))
/* the low 8 bits of each lane, stored (lanes already within the 8-bit type: is_signed picks the
 * AVX2 pack that keeps them) */
#define QK_V_STORE_8(p, v, is_signed) QK__SEL(qk__v_store8_avx2(p, v, is_signed), _mm_storeu_si128((__m128i *)(p), _mm512_cvtepi32_epi8(v)))
/* the low 16 bits of each lane (lanes within [0, 65535]) */
#define QK_V_STORE_U16(p, v) QK__SEL(_mm_storeu_si128((__m128i *)(p), _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1))), _mm256_storeu_si256((__m256i *)(p), _mm512_cvtepi32_epi16(v)))

/* for layernorm_isa.h: int16 lanes (twice QK_V_LANES; masks QK_VM16) read from a half-width
 * vector of bytes (QK_VH), and int64 lanes (half QK_V_LANES) */
#define QK_VH QK__SEL(__m128i, __m256i)
#define QK_VM16 QK__SEL(__m256i, __mmask32)
#define QK_VH_LOAD(p) QK__SEL(_mm_loadu_si128((const __m128i *)(p)), _mm256_loadu_si256((const __m256i *)(p)))
/* the bytes of t (16 bytes, repeated in each 128-bit lane on AVX-512) picked by idx (< 16) */
#define QK_VH_SHUFFLE8(t, idx) QK__SEL(_mm_shuffle_epi8, _mm256_shuffle_epi8)(t, idx)
#define QK_VH_BCAST128(v) QK__SEL(v, _mm256_broadcastsi128_si256(v))
#define QK_V_CVTU8_16(h) QK__SEL(_mm256_cvtepu8_epi16, _mm512_cvtepu8_epi16)(h)
#define QK_V_SUB16(a, b) QK__SEL(_mm256_sub_epi16, _mm512_sub_epi16)(a, b)
#define QK_V_ADD16(a, b) QK__SEL(_mm256_add_epi16, _mm512_add_epi16)(a, b)
#define QK_V_MULLO16(a, b) QK__SEL(_mm256_mullo_epi16, _mm512_mullo_epi16)(a, b)
#define QK_V_MADD16(a, b) QK__SEL(_mm256_madd_epi16, _mm512_madd_epi16)(a, b) /* int32 pair sums */
#define QK_V_ABS16(a) QK__SEL(_mm256_abs_epi16, _mm512_abs_epi16)(a)
#define QK_V_MIN16(a, b) QK__SEL(_mm256_min_epi16, _mm512_min_epi16)(a, b)
#define QK_V_SRLI16(a, imm) QK__SEL(_mm256_srli_epi16, _mm512_srli_epi16)(a, imm)
#define QK_V_GT16(a, b) QK__SEL(_mm256_cmpgt_epi16, _mm512_cmpgt_epi16_mask)(a, b)
/* a where m, else b; a << imm where m, else a */
#define QK_V_SELECT16(m, a, b) QK__SEL(_mm256_blendv_epi8(b, a, m), _mm512_mask_blend_epi16(m, b, a))
#define QK_V_SLLI16_WHERE(a, m, imm) QK__SEL(_mm256_blendv_epi8(a, _mm256_slli_epi16(a, imm), m), _mm512_mask_slli_epi16(a, m, a, imm))
#define QK_V_ADD64(a, b) QK__SEL(_mm256_add_epi64, _mm512_add_epi64)(a, b)
#define QK_V_SUB64(a, b) QK__SEL(_mm256_sub_epi64, _mm512_sub_epi64)(a, b)
#define QK_V_SRLI64(a, imm) QK__SEL(_mm256_srli_epi64, _mm512_srli_epi64)(a, imm)
#define QK_V_SLLI64(a, imm) QK__SEL(_mm256_slli_epi64, _mm512_slli_epi64)(a, imm)
#define QK_V_SLLV64(a, b) QK__SEL(_mm256_sllv_epi64, _mm512_sllv_epi64)(a, b)
#define QK_V_MUL32(a, b) QK__SEL(_mm256_mul_epi32, _mm512_mul_epi32)(a, b) /* low dwords, signed */
/* AVX2 has no arithmetic shift, min or max of int64 lanes: qk__*64_avx2 below */
#define QK_V_SRA64(a, cnt) QK__SEL(qk__sra64_avx2, _mm512_sra_epi64)(a, cnt)
#define QK_V_MIN64(a, b) QK__SEL(qk__min64_avx2, _mm512_min_epi64)(a, b)
#define QK_V_MAX64(a, b) QK__SEL(qk__max64_avx2, _mm512_max_epi64)(a, b)
/* the lanes' sum: int32 lanes (wrapping like int32), int64 lanes */
#define QK_V_HSUM32(a) QK__SEL(qk__hsum32_avx2, _mm512_reduce_add_epi32)(a)
#define QK_V_HSUM64(a) QK__SEL(qk__hsum64_avx2, _mm512_reduce_add_epi64)(a)
/* 4 (AVX2) or 8 (AVX-512) bytes, zero-extended to int64 lanes / int32 values sign-extended */
#define QK_V64_LOADU8(p) QK__SEL(qk__v64_loadu8_avx2(p), _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(p))))
#define QK_V64_LOAD32(p) QK__SEL(_mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(p))), _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(p))))
/* the low byte of each int64 lane (lanes within int8), stored: 4 or 8 bytes */
#define QK_V64_STORE8(p, v) QK__SEL(qk__v64_store8_avx2(p, v), _mm_storel_epi64((__m128i *)(p), _mm512_cvtepi64_epi8(v)))

QK_TARGET_AVX2 static inline __m256i qk__sra64_avx2(__m256i v, __m128i count) {
    const __m256i neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v); /* flip, shift, flip */
    return _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(v, neg), count), neg);
}
QK_TARGET_AVX2 static inline __m256i qk__min64_avx2(__m256i a, __m256i b) {
    return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(a, b));
}
QK_TARGET_AVX2 static inline __m256i qk__max64_avx2(__m256i a, __m256i b) {
    return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a));
}
QK_TARGET_AVX2 static inline int32_t qk__hsum32_avx2(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}
QK_TARGET_AVX2 static inline int64_t qk__hsum64_avx2(__m256i v) {
    const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_cvtsi128_si64(_mm_add_epi64(s, _mm_unpackhi_epi64(s, s)));
}
QK_TARGET_AVX2 static inline __m256i qk__v64_loadu8_avx2(const uint8_t *p) {
    int32_t b4;
    memcpy(&b4, p, 4);
    return _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(b4));
}
QK_TARGET_AVX2 static inline void qk__v64_store8_avx2(int8_t *p, __m256i v) {
    const __m128i d = _mm256_castsi256_si128(
        _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
    const int32_t b4 = _mm_cvtsi128_si32(_mm_packs_epi16(_mm_packs_epi32(d, d), d));
    memcpy(p, &b4, 4);
}

/* t[idx] for idx in [0, 15], the table as one vector (AVX-512) or two halves (AVX2: bit 3 of
 * idx, moved to the sign, picks the half) */
#define qk__lookup16_avx512(lo, hi, idx) _mm512_permutexvar_epi32(idx, lo)
QK_TARGET_AVX2 static inline __m256i qk__lookup16_avx2(__m256i lo, __m256i hi, __m256i idx) {
    const __m256i a = _mm256_permutevar8x32_epi32(lo, idx), b = _mm256_permutevar8x32_epi32(hi, idx);
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b),
                                                _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28))));
}

QK_TARGET_AVX2 static inline void qk__v_store8_avx2(uint8_t *p, __m256i v, int is_signed) {
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)p, is_signed ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w));
}
#endif

#endif /* QKERNELS_ELEMENTWISE_SIMD_V_H */
