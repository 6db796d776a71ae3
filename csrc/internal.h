/* internal.h -- shared by the kernel files of the C library; not installed, not public. */
#ifndef QKERNELS_INTERNAL_H
#define QKERNELS_INTERNAL_H

#include "qkernels.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#define QK_X86 1
#define QK_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define QK_X86 0
#endif

/* 1 when the elementwise AVX-512 (F + BW) loops are to be used: the CPU has them, the AVX2 level
 * is chosen, and QKERNELS_SIMD is not "avx2" (chosen once, thread-safe). */
int qk__use_avx512(void);
#if QK_X86
#define QK_TARGET_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw")))
#endif

/* 1 when the AVX2 loops are to be used (chosen once; see qk_isa()). */
static inline int qk__use_avx2(void) { return qk_isa() == QK_ISA_AVX2; }

static inline int qk__scale_ok(float s) { return isfinite(s) && s > 0.0f; }
/* A scale the kernels multiply by the reciprocal of: also fl(1/s) finite (s > 2^-128). */
static inline int qk__recip_scale_ok(float s) { return qk__scale_ok(s) && isfinite(1.0f / s); }

/* Checked sizes. Every size the library computes from caller-given sizes goes through these:
 * a result that does not fit in size_t, or exceeds PTRDIFF_MAX (no object can be that large, and
 * pointer differences must stay defined), returns 0 and the caller returns QK_ERR_ARG (or takes
 * another path); never a wrapped size. */
static inline int qk__sz_add(size_t a, size_t b, size_t *r) {
    return !__builtin_add_overflow(a, b, r) && *r <= (size_t)PTRDIFF_MAX;
}
static inline int qk__sz_mul(size_t a, size_t b, size_t *r) {
    return !__builtin_mul_overflow(a, b, r) && *r <= (size_t)PTRDIFF_MAX;
}
/* a * b * c * d, checked (pass 1 for unused factors). */
static inline int qk__sz_mul4(size_t a, size_t b, size_t c, size_t d, size_t *r) {
    return qk__sz_mul(a, b, r) && qk__sz_mul(*r, c, r) && qk__sz_mul(*r, d, r);
}

/* Checks shared by every kernel that writes a clamped integer type. */
static inline qk_status qk__check_range(int32_t zp, int32_t qmin, int32_t qmax, int64_t tmin,
                                        int64_t tmax) {
    if (qmin > qmax || (int64_t)qmin < tmin || (int64_t)qmax > tmax) return QK_ERR_QRANGE;
    if (zp < qmin || zp > qmax) return QK_ERR_ZERO_POINT;
    return QK_OK;
}

static inline int64_t qk__clamp64(int64_t v, int64_t lo, int64_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}
static inline double qk__clampd(double v, double lo, double hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* RHAZ of a double without libm's errno games: round() is exact for every double. */
static inline double qk__rhaz(double v) { return round(v); }

/* Per-element requantization cores (SPEC section 4), shared by requantize.c and the GEMM
 * epilogue. The fixed-point primitives qk_srdhm / qk_rdbpot are in requantize.c. */
/* double_round; returns 0 when acc * 2^left overflows int32. */
static inline int qk__req_double(int32_t acc, int32_t m, int32_t shift, int32_t *r) {
    int32_t x = acc;
    if (shift > 0) {
        const int64_t wide = (int64_t)acc * (INT64_C(1) << shift);
        if (wide < INT32_MIN || wide > INT32_MAX) return 0;
        x = (int32_t)wide;
    }
    *r = qk_rdbpot(qk_srdhm(x, m), shift > 0 ? 0 : -shift);
    return 1;
}

static inline int64_t qk__req_single(int32_t acc, int32_t m, int32_t shift) {
    const int t = 31 - shift; /* 1..62 */
    return ((int64_t)acc * m + (INT64_C(1) << (t - 1))) >> t;
}

static inline int64_t qk__shift_round(int32_t acc, int32_t n, int rounding) {
    const int64_t x = acc;
    if (n <= 0) return x * (INT64_C(1) << -n); /* exact left shift, |x| * 2^31 < 2^62 */
    const int64_t q = x >> n, rem = x & ((INT64_C(1) << n) - 1), half = INT64_C(1) << (n - 1);
    switch (rounding) {
        case 0: return q + (rem >= half);                                   /* half_up */
        case 1: return q + (rem > half || (rem == half && (q & 1)));        /* half_even */
        case 2: return q + (rem > half || (rem == half && x >= 0));         /* half_away */
        default: return q;                                                  /* floor */
    }
}

/* The output types, for the X-macro instantiations. (name, C type, min, max) */
#define QK__FOR_EACH_OUT(X)                        \
    X(u8, uint8_t, 0, UINT8_MAX)                   \
    X(s8, int8_t, INT8_MIN, INT8_MAX)              \
    X(u16, uint16_t, 0, UINT16_MAX)                \
    X(s16, int16_t, INT16_MIN, INT16_MAX)          \
    X(s32, int32_t, INT32_MIN, INT32_MAX)

#endif /* QKERNELS_INTERNAL_H */
