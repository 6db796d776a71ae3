/* fixedpoint.h -- the integer requantization primitives (SPEC section 4), as small named inline
 * functions in the manner of gemmlowp's fixedpoint.h. Not installed; the public qk_srdhm,
 * qk_rdbpot and qk_mul_by_quantized_multiplier (elementwise/requantize.c) are these.
 *
 * The elementwise requantize loops and the GEMM output stage both build on them, so every
 * scheme has one scalar definition; the SIMD loops are tested bit for bit against it. */
#ifndef QKERNELS_CORE_FIXEDPOINT_H
#define QKERNELS_CORE_FIXEDPOINT_H

#include "qkernels.h"

#include <stdint.h>

/* SaturatingRoundingDoublingHighMul: RHAZ(a * b / 2^31), INT32_MIN * INT32_MIN saturated. */
static inline int32_t qk__srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    const int64_t ab = (int64_t)a * b;
    const int64_t nudge = ab >= 0 ? (INT64_C(1) << 30) : (1 - (INT64_C(1) << 30));
    return (int32_t)((ab + nudge) / (INT64_C(1) << 31)); /* C division truncates toward zero */
}

/* RoundingDivideByPOT: x / 2^exponent, ties away from zero; exponent <= 0 is x, > 31 is 31. */
static inline int32_t qk__rdbpot(int32_t x, int32_t exponent) {
    if (exponent <= 0) return x;
    if (exponent > 31) exponent = 31;
    const int32_t mask = (int32_t)((UINT32_C(1) << exponent) - 1u);
    const int32_t rem = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0);
    return (x >> exponent) + (rem > threshold);
}

/* MultiplyByQuantizedMultiplier (double rounding) with TFLite's acc * 2^left in int32, the
 * two's-complement wrap made defined. */
static inline int32_t qk__mul_by_quantized_multiplier(int32_t acc, int32_t multiplier,
                                                      int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)acc << left);
    return qk__rdbpot(qk__srdhm(shifted, multiplier), right);
}

/* *x = acc * 2^max(shift,0) in int32; returns 0 (and leaves *x) when that overflows, where
 * TFLite would wrap. */
static inline int qk__shl_checked(int32_t acc, int32_t shift, int32_t *x) {
    if (shift <= 0) {
        *x = acc;
        return 1;
    }
    const int64_t wide = (int64_t)acc * (INT64_C(1) << shift);
    if (wide < INT32_MIN || wide > INT32_MAX) return 0;
    *x = (int32_t)wide;
    return 1;
}

/* double_round, checked: *r = RDBPOT(SRDHM(acc * 2^max(shift,0), m), max(-shift,0)); returns 0
 * (and leaves *r) when acc * 2^shift overflows int32, where TFLite would wrap. */
static inline int qk__req_double(int32_t acc, int32_t m, int32_t shift, int32_t *r) {
    int32_t x;
    if (!qk__shl_checked(acc, shift, &x)) return 0;
    *r = qk__rdbpot(qk__srdhm(x, m), shift > 0 ? 0 : -shift);
    return 1;
}

/* double rounding with a half-up final shift (NEON vrshl: TFLite's optimized kernels):
 * *r = RHU(SRDHM(acc * 2^max(shift,0), m) / 2^max(-shift,0)); 0 on the same left-shift overflow
 * as qk__req_double. The shift is exact in int64 ((x + 2^(e-1)) >> e never overflows there). */
static inline int qk__req_double_half_up(int32_t acc, int32_t m, int32_t shift, int32_t *r) {
    int32_t x;
    if (!qk__shl_checked(acc, shift, &x)) return 0;
    const int64_t h = qk__srdhm(x, m);
    const int e = shift > 0 ? 0 : (-shift > 31 ? 31 : -shift);
    *r = e == 0 ? (int32_t)h : (int32_t)((h + (INT64_C(1) << (e - 1))) >> e);
    return 1;
}

/* single_round: (acc * m + 2^(30 - shift)) >> (31 - shift), exact in int64 (shift <= 30). */
static inline int64_t qk__req_single(int32_t acc, int32_t m, int32_t shift) {
    const int t = 31 - shift; /* 1..62 */
    return ((int64_t)acc * m + (INT64_C(1) << (t - 1))) >> t;
}

/* acc / 2^n rounded as `scheme` says (QK_REQ_SHIFT_HALF_UP, _HALF_EVEN, _HALF_AWAY, _FLOOR);
 * n <= 0 is an exact left shift (|acc| * 2^31 < 2^62). */
static inline int64_t qk__shift_round(int32_t acc, int32_t n, qk_requant_scheme scheme) {
    const int64_t x = acc;
    if (n <= 0) return x * (INT64_C(1) << -n);
    const int64_t q = x >> n, rem = x & ((INT64_C(1) << n) - 1), half = INT64_C(1) << (n - 1);
    switch (scheme) {
        case QK_REQ_SHIFT_HALF_UP: return q + (rem >= half);
        case QK_REQ_SHIFT_HALF_EVEN: return q + (rem > half || (rem == half && (q & 1)));
        case QK_REQ_SHIFT_HALF_AWAY: return q + (rem > half || (rem == half && x >= 0));
        default: return q; /* QK_REQ_SHIFT_FLOOR */
    }
}

/* The 16-bit multiplier of the int64 requantizations (TFLite's int64
 * MultiplyByQuantizedMultiplier, CMSIS-NN REDUCE_MULTIPLIER): m rounded to Q15, 0x7FFF at most. */
static inline int64_t qk__reduced_multiplier(int32_t m) {
    return m < 0x7FFF0000 ? (int64_t)((m + (INT32_C(1) << 15)) >> 16) : INT64_C(0x7FFF);
}

/* The low 32 bits of v as int32 (two's complement), without implementation-defined casts. */
static inline int32_t qk__wrap32(int64_t v) {
    const uint32_t u = (uint32_t)(uint64_t)v;
    return u <= (uint32_t)INT32_MAX ? (int32_t)u : (int32_t)(u - UINT32_C(0x80000000)) + INT32_MIN;
}

/* TFLite's int64 MultiplyByQuantizedMultiplier (kernels/internal/common.cc, default build):
 * (acc * rm + 2^(14 - shift)) >> (15 - shift), the int64 result cast to int32 (it wraps).
 * |acc| < 2^47, m >= 0, shift in [-31, 7]: the product and the sum stay within int64. */
static inline int32_t qk__req_reduced(int64_t acc, int32_t m, int32_t shift) {
    const int t = 15 - shift;
    return qk__wrap32((acc * qk__reduced_multiplier(m) + (INT64_C(1) << (t - 1))) >> t);
}

/* CMSIS-NN arm_nn_requantize_s64: r = int32((acc * rm) >> (14 - shift)), then (r + 1) >> 1 in
 * int32 (the add wraps on Arm); the same ranges as qk__req_reduced. */
static inline int32_t qk__req_reduced_cmsis(int64_t acc, int32_t m, int32_t shift) {
    const int32_t r = qk__wrap32((acc * qk__reduced_multiplier(m)) >> (14 - shift));
    return qk__wrap32((int64_t)r + 1) >> 1;
}

#endif /* QKERNELS_CORE_FIXEDPOINT_H */
