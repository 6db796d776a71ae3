/* core.h -- the bottom layer of the C library, included by every kernel file: the public types
 * (qkernels.h), the ISA vocabulary (isa.h), the level chosen for this process (cpu.h), the
 * fixed-point primitives (fixedpoint.h) and the small checks below. Not installed, not public.
 * (The thread pool, core/pool.h, is included by the files that split work.) */
#ifndef QKERNELS_CORE_H
#define QKERNELS_CORE_H

#include "qkernels.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cpu.h"
#include "core/fixedpoint.h"
#include "core/isa.h"

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

/* Element i of an array of type t (QK_DT_U8, QK_DT_S8 or QK_DT_S32) set to v (already within t). */
static inline void qk__store(qk_dtype t, void *y, size_t i, int32_t v) {
    if (t == QK_DT_U8)
        ((uint8_t *)y)[i] = (uint8_t)v;
    else if (t == QK_DT_S8)
        ((int8_t *)y)[i] = (int8_t)v;
    else
        ((int32_t *)y)[i] = v;
}

/* RHAZ of a double without libm's errno games: round() is exact for every double. */
static inline double qk__rhaz(double v) { return round(v); }

/* The output types, for the X-macro instantiations. (name, C type, min, max) */
#define QK__FOR_EACH_OUT(X)                        \
    X(u8, uint8_t, 0, UINT8_MAX)                   \
    X(s8, int8_t, INT8_MIN, INT8_MAX)              \
    X(u16, uint16_t, 0, UINT16_MAX)                \
    X(s16, int16_t, INT16_MIN, INT16_MAX)          \
    X(s32, int32_t, INT32_MIN, INT32_MAX)

#endif /* QKERNELS_CORE_H */
