/* ops.c -- one fuzz "program": decodes the fuzzer's bytes into a call of a public C entry point
 * (every family of csrc/include/qkernels.h and csrc/qops.h) with hostile arguments, and appends
 * the status and every output byte to a result buffer.
 *
 * It is compiled into two copies of the library (see fuzz/c/fuzz_c.c and the Makefile): copy A
 * on the CPU's best path, copy B forced to the scalar (or AVX2) twins. The harness runs both on
 * the same bytes and requires identical results: the SIMD-vs-scalar differential. With
 * `check` set (copy A), the contract is also asserted here: parameter errors write nothing, a
 * NaN is reported at its first index, int32 linear/conv sums equal an int64 reference.
 * A broken contract aborts (libFuzzer then saves the input). */
#include "conv_ref.h"
#include "qkernels.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n;
} fz_in;

typedef struct {
    uint8_t *p;
    size_t n, cap;
} fz_out;

#define FZ_FAIL(...)                                                 \
    do {                                                             \
        fprintf(stderr, "fuzz contract broken: " __VA_ARGS__);       \
        fprintf(stderr, " (%s:%d)\n", __FILE__, __LINE__);           \
        abort();                                                     \
    } while (0)

static uint64_t fz_bits(fz_in *r, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        uint64_t b = 0;
        if (r->n) {
            b = *r->p++;
            r->n--;
        }
        v |= b << (8 * i);
    }
    return v;
}
static uint32_t fz_u8(fz_in *r) { return (uint32_t)fz_bits(r, 1); }
/* lo..hi inclusive (hi - lo < 2^32) */
static size_t fz_range(fz_in *r, size_t lo, size_t hi) {
    return lo + (size_t)(fz_bits(r, hi - lo < 256 ? 1 : 4) % (uint64_t)(hi - lo + 1));
}
/* An int32 drawn near the edges of [lo, hi] or anywhere in int32. */
static int32_t fz_i32(fz_in *r, int32_t lo, int32_t hi) {
    switch (fz_u8(r) % 6) {
        case 0: return (int32_t)(uint32_t)fz_bits(r, 4);
        case 1: return lo;
        case 2: return hi;
        case 3: { /* just outside, at, just inside the low end */
            const int64_t v = (int64_t)lo - 1 + (int64_t)(fz_u8(r) % 3);
            return v < INT32_MIN ? INT32_MIN : (int32_t)v;
        }
        default: {
            const int64_t span = (int64_t)hi - lo + 1;
            return span <= 0 ? lo : (int32_t)(lo + (int64_t)(fz_bits(r, 4) % (uint64_t)span));
        }
    }
}
static float fz_f32bits(fz_in *r) {
    const uint32_t b = (uint32_t)fz_bits(r, 4);
    float f;
    memcpy(&f, &b, 4);
    return f;
}
/* A scale: raw bits (NaN, inf, denormals, negatives), powers of two from 2^-150 to 2^130, the
 * edges of the reciprocal rule, or an ordinary value. */
static float fz_scale(fz_in *r) {
    switch (fz_u8(r) % 6) {
        case 0: return fz_f32bits(r);
        case 1: return ldexpf(1.0f, (int)fz_range(r, 0, 280) - 150);
        case 2: {
            const float e[] = {0x1p-128f, 0x1.000002p-128f, 1e-39f, 0x1p-126f, 0x1p118f,
                               0x1.000002p118f, FLT_MAX, 0.0f, -1.0f, INFINITY, NAN};
            return e[fz_range(r, 0, 10)];
        }
        default: return (float)(fz_range(r, 1, 1000000)) * 1e-5f;
    }
}
/* A float datum around the scale s: raw bits, near-ties (k + 1/2) s +- 1 ulp, k s, specials. */
static float fz_val(fz_in *r, float s) {
    const uint32_t m = fz_u8(r);
    const float k = (float)(int32_t)(int8_t)fz_u8(r) * (m & 64 ? 300.0f : 1.0f);
    switch (m % 5) {
        case 0: return fz_f32bits(r);
        case 1: {
            const float t = (k + 0.5f) * s;
            return m & 8 ? nextafterf(t, INFINITY) : (m & 16 ? nextafterf(t, -INFINITY) : t);
        }
        case 2: return k * s;
        case 3: {
            const float e[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, FLT_MAX, -FLT_MAX,
                               1e-45f, -1e-45f, 0x1p-126f, 2147483648.0f, -2147483904.0f};
            return e[fz_range(r, 0, 11)];
        }
        default: return (float)(int32_t)(uint32_t)fz_bits(r, 2) * 0.37f;
    }
}

static void fz_put(fz_out *o, const void *d, size_t n) {
    if (o->n + n <= o->cap) memcpy(o->p + o->n, d, n);
    o->n += n;
}
static void fz_put_st(fz_out *o, qk_status st) {
    const int32_t v = (int32_t)st;
    fz_put(o, &v, 4);
}

static int fz_untouched(const void *p, size_t n) {
    const uint8_t *b = (const uint8_t *)p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0xA5) return 0;
    return 1;
}
static int fz_param_error(qk_status st) {
    return st != QK_OK && st != QK_ERR_NAN && st != QK_ERR_OVERFLOW;
}

/* ---- quantize / dequantize / fake quantize -------------------------------------------------- */
typedef qk_status (*fz_qfn)(const void *, size_t, float, int32_t, int32_t, int32_t, void *,
                            size_t *);
#define FZ_QW(IN, INT, OUT, OUTT, FLAV)                                                         \
    static qk_status fzq_##IN##_##OUT##_##FLAV(const void *x, size_t n, float s, int32_t zp,   \
                                               int32_t lo, int32_t hi, void *y, size_t *bad) { \
        return qk_quantize_##IN##_##OUT##_##FLAV((const INT *)x, n, s, zp, lo, hi, (OUTT *)y,   \
                                                 bad);                                          \
    }
#define FZ_QW_FL(IN, INT, OUT, OUTT)                                                            \
    FZ_QW(IN, INT, OUT, OUTT, fbgemm) FZ_QW(IN, INT, OUT, OUTT, fbgemm_scalar)                 \
    FZ_QW(IN, INT, OUT, OUTT, pt2e) FZ_QW(IN, INT, OUT, OUTT, onnx) FZ_QW(IN, INT, OUT, OUTT, tflite)
#define FZ_QW_IN(IN, INT)                                                                       \
    FZ_QW_FL(IN, INT, u8, uint8_t) FZ_QW_FL(IN, INT, s8, int8_t) FZ_QW_FL(IN, INT, u16, uint16_t) \
    FZ_QW_FL(IN, INT, s16, int16_t) FZ_QW_FL(IN, INT, s32, int32_t)
FZ_QW_IN(f32, float)
FZ_QW_IN(f64, double)
#define FZ_QT_FL(IN, OUT) fzq_##IN##_##OUT##_fbgemm, fzq_##IN##_##OUT##_fbgemm_scalar, \
    fzq_##IN##_##OUT##_pt2e, fzq_##IN##_##OUT##_onnx, fzq_##IN##_##OUT##_tflite
static const fz_qfn fz_qtab[2][5][5] = {
    {{FZ_QT_FL(f32, u8)}, {FZ_QT_FL(f32, s8)}, {FZ_QT_FL(f32, u16)}, {FZ_QT_FL(f32, s16)},
     {FZ_QT_FL(f32, s32)}},
    {{FZ_QT_FL(f64, u8)}, {FZ_QT_FL(f64, s8)}, {FZ_QT_FL(f64, u16)}, {FZ_QT_FL(f64, s16)},
     {FZ_QT_FL(f64, s32)}}};
static const size_t fz_osz[5] = {1, 1, 2, 2, 4};
static const int32_t fz_omin[5] = {0, INT8_MIN, 0, INT16_MIN, INT32_MIN};
static const int32_t fz_omax[5] = {UINT8_MAX, INT8_MAX, UINT16_MAX, INT16_MAX, INT32_MAX};

enum { FZ_MAXN = 600 };

static void fz_quantize(fz_in *r, fz_out *o, int check) {
    const int f64 = (int)(fz_u8(r) & 1), ot = (int)fz_range(r, 0, 4), fl = (int)fz_range(r, 0, 4);
    const size_t n = fz_range(r, 0, FZ_MAXN);
    const float s = fz_scale(r);
    const int32_t qmin = fz_i32(r, fz_omin[ot], fz_omax[ot]), qmax = fz_i32(r, fz_omin[ot], fz_omax[ot]);
    const int32_t zp = fz_i32(r, qmin, qmax);
    static float xf[FZ_MAXN];
    static double xd[FZ_MAXN];
    static _Alignas(16) uint8_t y[FZ_MAXN * 4];
    size_t first_nan = n;
    for (size_t i = 0; i < n; i++) {
        xf[i] = fz_val(r, isfinite(s) && s > 0 ? s : 0.01f);
        xd[i] = (fz_u8(r) & 3) == 0 ? (double)xf[i] * (1.0 + 0x1p-40) : (double)xf[i];
        if (first_nan == n && xf[i] != xf[i]) first_nan = i;
    }
    memset(y, 0xA5, sizeof y);
    size_t bad = (size_t)-1;
    const qk_status st = fz_qtab[f64][ot][fl](f64 ? (const void *)xd : (const void *)xf, n, s, zp,
                                              qmin, qmax, y, &bad);
    fz_put_st(o, st);
    if (st == QK_ERR_NAN) {
        fz_put(o, &bad, sizeof bad);
        fz_put(o, y, bad * fz_osz[ot]);
    } else if (st == QK_OK) {
        fz_put(o, y, n * fz_osz[ot]);
    }
    if (check) {
        if (fz_param_error(st) && !fz_untouched(y, sizeof y)) FZ_FAIL("quantize wrote on error %d", st);
        if (st == QK_OK && first_nan < n) FZ_FAIL("quantize missed the NaN at %zu", first_nan);
        if (st == QK_ERR_NAN && bad != first_nan) FZ_FAIL("NaN at %zu reported at %zu", first_nan, bad);
        if (st == QK_OK)
            for (size_t i = 0; i < n; i++) {
                int64_t v = 0;
                memcpy(&v, y + i * fz_osz[ot], fz_osz[ot]);
                v = ot == 1 ? (int8_t)v : ot == 3 ? (int16_t)v : ot == 4 ? (int32_t)v : v;
                if (v < qmin || v > qmax) FZ_FAIL("quantize out of [qmin, qmax]");
                if (xf[i] == INFINITY && !f64 && v != qmax) FZ_FAIL("+inf must give qmax");
                if (xf[i] == -INFINITY && !f64 && v != qmin) FZ_FAIL("-inf must give qmin");
            }
    }
}

static void fz_dequantize(fz_in *r, fz_out *o, int check) {
    const int it = (int)fz_range(r, 0, 4);
    const size_t n = fz_range(r, 0, FZ_MAXN);
    const float s = fz_scale(r);
    const int32_t zp = fz_i32(r, fz_omin[it], fz_omax[it]);
    static _Alignas(16) uint8_t q[FZ_MAXN * 4];
    static float y[FZ_MAXN + 16];
    for (size_t i = 0; i < n * fz_osz[it]; i++) q[i] = (uint8_t)fz_u8(r);
    memset(y, 0xA5, sizeof y);
    /* an unaligned destination too (the SIMD loops align their stores first) */
    float *yd = y + fz_range(r, 0, 3);
    qk_status st;
    switch (it) {
        case 0: st = qk_dequantize_u8_f32(q, n, s, zp, yd); break;
        case 1: st = qk_dequantize_s8_f32((const int8_t *)q, n, s, zp, yd); break;
        case 2: st = qk_dequantize_u16_f32((const uint16_t *)(const void *)q, n, s, zp, yd); break;
        case 3: st = qk_dequantize_s16_f32((const int16_t *)(const void *)q, n, s, zp, yd); break;
        default: st = qk_dequantize_s32_f32((const int32_t *)(const void *)q, n, s, zp, yd); break;
    }
    fz_put_st(o, st);
    if (st == QK_OK) fz_put(o, yd, n * 4);
    if (check && st != QK_OK && !fz_untouched(y, sizeof y)) FZ_FAIL("dequantize wrote on error");
}

static void fz_fake(fz_in *r, fz_out *o, int check) {
    const int f64 = (int)(fz_u8(r) & 1);
    const size_t n = fz_range(r, 0, FZ_MAXN);
    const float s = fz_scale(r);
    const int32_t qmin = fz_i32(r, -128, 255), qmax = fz_i32(r, -128, 255), zp = fz_i32(r, qmin, qmax);
    static float xf[FZ_MAXN], yf[FZ_MAXN];
    static double xd[FZ_MAXN], yd[FZ_MAXN];
    for (size_t i = 0; i < n; i++) xd[i] = xf[i] = fz_val(r, isfinite(s) && s > 0 ? s : 0.01f);
    memset(yf, 0xA5, sizeof yf);
    memset(yd, 0xA5, sizeof yd);
    size_t bad = 0;
    const qk_status st = f64 ? qk_fake_quantize_f64_torch(xd, n, s, zp, qmin, qmax, yd, &bad)
                             : qk_fake_quantize_f32_torch(xf, n, s, zp, qmin, qmax, yf, &bad);
    fz_put_st(o, st);
    if (st == QK_OK) fz_put(o, f64 ? (const void *)yd : (const void *)yf, n * (f64 ? 8 : 4));
    if (st == QK_ERR_NAN) fz_put(o, &bad, sizeof bad);
    if (check && fz_param_error(st) && !(fz_untouched(yf, sizeof yf) && fz_untouched(yd, sizeof yd)))
        FZ_FAIL("fake quantize wrote on error");
}

static void fz_acc2f(fz_in *r, fz_out *o) {
    const size_t n = fz_range(r, 0, FZ_MAXN);
    static int32_t a[FZ_MAXN];
    static float y[FZ_MAXN];
    const float s = fz_scale(r), b = fz_u8(r) & 1 ? fz_f32bits(r) : 0.5f;
    for (size_t i = 0; i < n; i++) a[i] = fz_i32(r, INT32_MIN, INT32_MAX);
    const qk_status st = qk_accumulator_to_f32_fma(a, n, s, b, y);
    fz_put_st(o, st);
    if (st == QK_OK) fz_put(o, y, n * 4);
}

static void fz_qmult(fz_in *r, fz_out *o, int check) {
    double m;
    if (fz_u8(r) & 1) {
        const uint64_t b = fz_bits(r, 8);
        memcpy(&m, &b, 8);
    } else { /* just below a power of two: the mantissa may round up to 2^31 */
        const double p = ldexp(1.0, (int)fz_range(r, 0, 70) - 36);
        m = p - p * ldexp(1.0, -(int)fz_range(r, 28, 60));
    }
    int32_t m0 = -1, sh = -1;
    const qk_status st = qk_quantize_multiplier(m, &m0, &sh);
    fz_put_st(o, st);
    if (st == QK_OK) {
        fz_put(o, &m0, 4);
        fz_put(o, &sh, 4);
    }
    if (check && st == QK_OK) {
        if (m0 != 0 && (m0 < (1 << 30) || sh < -31 || sh > 31)) FZ_FAIL("multiplier out of range");
        /* |m - m0 * 2^(sh - 31)| <= half a step of M0 */
        if (m0 != 0 && fabs(m - ldexp((double)m0, sh - 31)) > ldexp(1.0, sh - 32))
            FZ_FAIL("quantize_multiplier(%.17g) = (%d, %d)", m, m0, sh);
    }
}

typedef qk_status (*fz_rfn)(const int32_t *, size_t, int32_t, int32_t, int32_t, int32_t, int32_t,
                            void *);
#define FZ_RW(OUT, OUTT)                                                                        \
    static qk_status fzr_d_##OUT(const int32_t *a, size_t n, int32_t m, int32_t s, int32_t zp,  \
                                 int32_t lo, int32_t hi, void *y) {                             \
        return qk_requantize_s32_##OUT##_double(a, n, m, s, zp, lo, hi, (OUTT *)y, NULL);       \
    }                                                                                           \
    static qk_status fzr_s_##OUT(const int32_t *a, size_t n, int32_t m, int32_t s, int32_t zp,  \
                                 int32_t lo, int32_t hi, void *y) {                             \
        return qk_requantize_s32_##OUT##_single(a, n, m, s, zp, lo, hi, (OUTT *)y);             \
    }                                                                                           \
    static qk_status fzr_hu_##OUT(const int32_t *a, size_t n, int32_t m, int32_t s, int32_t zp, \
                                  int32_t lo, int32_t hi, void *y) {                            \
        (void)m;                                                                                \
        return qk_requantize_s32_##OUT##_shift_half_up(a, n, s, zp, lo, hi, (OUTT *)y);         \
    }                                                                                           \
    static qk_status fzr_he_##OUT(const int32_t *a, size_t n, int32_t m, int32_t s, int32_t zp, \
                                  int32_t lo, int32_t hi, void *y) {                            \
        (void)m;                                                                                \
        return qk_requantize_s32_##OUT##_shift_half_even(a, n, s, zp, lo, hi, (OUTT *)y);       \
    }                                                                                           \
    static qk_status fzr_ha_##OUT(const int32_t *a, size_t n, int32_t m, int32_t s, int32_t zp, \
                                  int32_t lo, int32_t hi, void *y) {                            \
        (void)m;                                                                                \
        return qk_requantize_s32_##OUT##_shift_half_away(a, n, s, zp, lo, hi, (OUTT *)y);       \
    }                                                                                           \
    static qk_status fzr_fl_##OUT(const int32_t *a, size_t n, int32_t m, int32_t s, int32_t zp, \
                                  int32_t lo, int32_t hi, void *y) {                            \
        (void)m;                                                                                \
        return qk_requantize_s32_##OUT##_shift_floor(a, n, s, zp, lo, hi, (OUTT *)y);           \
    }
FZ_RW(u8, uint8_t)
FZ_RW(s8, int8_t)
FZ_RW(u16, uint16_t)
FZ_RW(s16, int16_t)
FZ_RW(s32, int32_t)
#define FZ_RT(OUT) {fzr_d_##OUT, fzr_s_##OUT, fzr_hu_##OUT, fzr_he_##OUT, fzr_ha_##OUT, fzr_fl_##OUT}
static const fz_rfn fz_rtab[5][6] = {FZ_RT(u8), FZ_RT(s8), FZ_RT(u16), FZ_RT(s16), FZ_RT(s32)};

static void fz_requantize(fz_in *r, fz_out *o, int check) {
    const int ot = (int)fz_range(r, 0, 4), sch = (int)fz_range(r, 0, 6);
    const size_t n = fz_range(r, 0, FZ_MAXN);
    static int32_t a[FZ_MAXN];
    static _Alignas(16) uint8_t y[FZ_MAXN * 4];
    const int32_t m = fz_i32(r, 0, INT32_MAX), sh = fz_i32(r, -31, 31);
    const int32_t qmin = fz_i32(r, fz_omin[ot], fz_omax[ot]), qmax = fz_i32(r, fz_omin[ot], fz_omax[ot]);
    const int32_t zp = fz_i32(r, qmin, qmax);
    const float s = fz_scale(r);
    for (size_t i = 0; i < n; i++) a[i] = fz_i32(r, -(1 << 20), 1 << 20);
    memset(y, 0xA5, sizeof y);
    qk_status st;
    if (sch == 6) {
        switch (ot) {
            case 0: st = qk_requantize_s32_u8_fp32(a, n, s, zp, qmin, qmax, y); break;
            case 1: st = qk_requantize_s32_s8_fp32(a, n, s, zp, qmin, qmax, (int8_t *)y); break;
            case 2: st = qk_requantize_s32_u16_fp32(a, n, s, zp, qmin, qmax, (uint16_t *)(void *)y); break;
            case 3: st = qk_requantize_s32_s16_fp32(a, n, s, zp, qmin, qmax, (int16_t *)(void *)y); break;
            default: st = qk_requantize_s32_s32_fp32(a, n, s, zp, qmin, qmax, (int32_t *)(void *)y); break;
        }
    } else {
        st = fz_rtab[ot][sch](a, n, m, sh, zp, qmin, qmax, y);
    }
    fz_put_st(o, st);
    if (st == QK_OK) fz_put(o, y, n * fz_osz[ot]);
    if (check && fz_param_error(st) && !fz_untouched(y, sizeof y)) FZ_FAIL("requantize wrote on error");
}

/* ---- linear and conv ---------------------------------------------------------------------- */
enum { FZ_MAXC = 48 };

static double fz_scale64[FZ_MAXC]; /* QK_REQ_FP64's scales (the fuzzer runs one input at a time) */

/* A random epilogue over n channels (arrays owned by the caller, FZ_MAXC long). */
static void fz_epilogue(fz_in *r, size_t n, qk_epilogue *ep, int32_t *bias, float *fbias,
                        float *scale, int32_t *mult, int32_t *shift) {
    memset(ep, 0, sizeof *ep);
    ep->scheme = (qk_requant_scheme)fz_range(r, 0, 10); /* 10: an invalid scheme */
    ep->out_type = ep->scheme == QK_REQ_NONE ? QK_DT_S32 : (fz_u8(r) & 1 ? QK_DT_U8 : QK_DT_S8);
    if (fz_u8(r) % 7 == 0) ep->out_type = (qk_dtype)fz_range(r, 0, 3);
    const int32_t tmin = ep->out_type == QK_DT_U8 ? 0 : -128, tmax = ep->out_type == QK_DT_U8 ? 255 : 127;
    ep->act_min = fz_i32(r, tmin, tmax);
    ep->act_max = fz_i32(r, tmin, tmax);
    if (ep->act_min > ep->act_max && (fz_u8(r) & 3)) {
        const int32_t t = ep->act_min;
        ep->act_min = ep->act_max;
        ep->act_max = t;
    }
    ep->zero_point = fz_i32(r, ep->act_min, ep->act_max);
    ep->wrap = (int)(fz_u8(r) & 1);
    const int small = (int)(fz_u8(r) & 1);
    for (size_t o = 0; o < n; o++) {
        bias[o] = small ? fz_i32(r, -1000, 1000) : fz_i32(r, INT32_MIN, INT32_MAX);
        fbias[o] = fz_u8(r) & 7 ? (float)fz_i32(r, -100, 100) * 0.25f : fz_f32bits(r);
        scale[o] = fz_u8(r) & 7 ? (float)fz_range(r, 1, 100000) * 1e-6f : fz_scale(r);
        mult[o] = fz_i32(r, 1 << 30, INT32_MAX);
        fz_scale64[o] = fz_u8(r) & 7 ? (double)scale[o] : (double)fz_f32bits(r);
        shift[o] = fz_u8(r) & 7 ? (int32_t)fz_range(r, 0, 20) - 15 : fz_i32(r, -31, 31);
    }
    const uint32_t use = fz_u8(r);
    ep->bias = use & 1 ? bias : NULL;
    ep->float_bias = ep->scheme == QK_REQ_FP32 && (use & 2) ? fbias : NULL;
    ep->scale = ep->scheme == QK_REQ_FP32 || (use & 4) ? scale : NULL;
    ep->multiplier = ep->scheme == QK_REQ_DOUBLE || ep->scheme == QK_REQ_SINGLE ||
                             ep->scheme == QK_REQ_DOUBLE_HALF_UP || (use & 8) ? mult : NULL;
    ep->scale64 = ep->scheme == QK_REQ_FP64 || (use & 32) ? fz_scale64 : NULL;
    ep->shift = ep->scheme >= QK_REQ_DOUBLE || (use & 16) ? shift : NULL;
}

static size_t fz_out_size(qk_dtype t) { return t == QK_DT_S32 ? 4 : 1; }

static void fz_linear(fz_in *r, fz_out *o, int check) {
    const qk_dtype xt = fz_u8(r) & 1 ? QK_DT_U8 : QK_DT_S8, wt = fz_u8(r) & 1 ? QK_DT_U8 : QK_DT_S8;
    const size_t n = fz_range(r, 1, FZ_MAXC), k = fz_range(r, 1, 300), m = fz_range(r, 0, 24);
    static uint8_t x[24 * 300], w[FZ_MAXC * 300];
    static _Alignas(16) uint8_t y[24 * FZ_MAXC * 4];
    int32_t wzp[FZ_MAXC], bias[FZ_MAXC], mult[FZ_MAXC], shift[FZ_MAXC];
    float fbias[FZ_MAXC], scale[FZ_MAXC];
    const int32_t wlo = wt == QK_DT_U8 ? 0 : -128, xlo = xt == QK_DT_U8 ? 0 : -128;
    for (size_t o2 = 0; o2 < n; o2++) wzp[o2] = fz_u8(r) & 3 ? (int32_t)fz_range(r, 0, 255) + wlo : fz_i32(r, wlo, wlo + 255);
    for (size_t i = 0; i < n * k; i++) w[i] = (uint8_t)fz_u8(r);
    for (size_t i = 0; i < m * k; i++) x[i] = (uint8_t)fz_u8(r);
    const int32_t xzp = fz_u8(r) & 3 ? (int32_t)fz_range(r, 0, 255) + xlo : fz_i32(r, xlo, xlo + 255);
    qk_epilogue ep;
    fz_epilogue(r, n, &ep, bias, fbias, scale, mult, shift);
    const int threads = (int)fz_range(r, 0, 3);
    qk_packed_weights *pw = NULL;
    qk_status st = qk_pack_linear(w, wt, n, k, wzp, &pw);
    fz_put_st(o, st);
    if (st != QK_OK) return;
    memset(y, 0xA5, sizeof y);
    st = qk_linear(pw, x, xt, m, xzp, &ep, y, threads);
    fz_put_st(o, st);
    if (st == QK_OK) fz_put(o, y, m * n * fz_out_size(ep.out_type));
    if (check && fz_param_error(st) && !fz_untouched(y, sizeof y)) FZ_FAIL("linear wrote on error %d", st);
    if (check && st == QK_OK && ep.scheme == QK_REQ_NONE)
        for (size_t i = 0; i < m; i++)
            for (size_t c = 0; c < n; c++) {
                int64_t acc = ep.bias ? ep.bias[c] : 0;
                for (size_t q = 0; q < k; q++)
                    acc += (int64_t)(qk_ref_q8(x, xt, i * k + q) - xzp) * (qk_ref_q8(w, wt, c * k + q) - wzp[c]);
                int32_t got;
                memcpy(&got, y + (i * n + c) * 4, 4);
                if (got != (int32_t)(uint32_t)(uint64_t)acc || (!ep.wrap && acc != got))
                    FZ_FAIL("linear (%zu, %zu): %d, reference %lld", i, c, got, (long long)acc);
            }
    qk_packed_weights_free(pw);
}

/* A geometry value: small, a power of two up to 2^40, or any size_t (wrapping on purpose). */
static size_t fz_geo(fz_in *r, size_t lo, size_t small) {
    switch (fz_u8(r) % 8) {
        case 0: return (size_t)1 << fz_range(r, 0, 40);
        case 1: return (size_t)fz_bits(r, 8);
        case 2: return ((size_t)1 << fz_range(r, 8, 33)) + fz_range(r, 0, 3) - 1;
        default: return fz_range(r, lo, small);
    }
}

static void fz_conv(fz_in *r, fz_out *o, int check) {
    qk_conv2d_shape s;
    memset(&s, 0, sizeof s);
    const qk_dtype xt = fz_u8(r) & 1 ? QK_DT_U8 : QK_DT_S8, wt = fz_u8(r) & 1 ? QK_DT_U8 : QK_DT_S8;
    const size_t groups = fz_range(r, 1, 3), cpg = fz_u8(r) & 1 ? fz_range(r, 1, 2) : 4 * fz_range(r, 1, 3);
    const size_t ocg = fz_range(r, 1, 20), kh = fz_range(r, 1, 4), kw = fz_range(r, 1, 4);
    const size_t oc = ocg * groups;
    s.batch = fz_range(r, 1, 2);
    s.in_c = cpg * groups;
    s.in_h = fz_range(r, 1, 9);
    s.in_w = fz_range(r, 1, 26);
    s.pad_top = fz_geo(r, 0, 3);
    s.pad_left = fz_geo(r, 0, 3);
    s.pad_bottom = fz_geo(r, 0, 3);
    s.pad_right = fz_geo(r, 0, 3);
    s.stride_h = fz_geo(r, 1, 3);
    s.stride_w = fz_geo(r, 1, 3);
    s.dil_h = fz_geo(r, 1, 2);
    s.dil_w = fz_geo(r, 1, 2);
    const int huge_batch = fz_u8(r) % 32 == 0; /* the input cannot exist: must be QK_ERR_ARG */
    static uint8_t x[2 * 36 * 9 * 26], w[60 * 12 * 16];
    static _Alignas(16) uint8_t y[1 << 17];
    int32_t wzp[FZ_MAXC * 2], bias[FZ_MAXC], mult[FZ_MAXC], shift[FZ_MAXC];
    float fbias[FZ_MAXC], scale[FZ_MAXC];
    const int32_t wlo = wt == QK_DT_U8 ? 0 : -128, xlo = xt == QK_DT_U8 ? 0 : -128;
    const int sym = (int)(fz_u8(r) & 1); /* the 8-bit depthwise layout wants 0 / 128 zero points */
    for (size_t c = 0; c < oc; c++) wzp[c] = sym ? (wt == QK_DT_U8 ? 128 : 0) : (int32_t)fz_range(r, 0, 255) + wlo;
    for (size_t i = 0; i < oc * cpg * kh * kw; i++) w[i] = (uint8_t)fz_u8(r);
    const size_t nx = s.batch * s.in_c * s.in_h * s.in_w;
    for (size_t i = 0; i < nx; i++) x[i] = (uint8_t)fz_u8(r);
    const int32_t xzp = (int32_t)fz_range(r, 0, 255) + xlo;
    qk_epilogue ep;
    fz_epilogue(r, oc > FZ_MAXC ? FZ_MAXC : oc, &ep, bias, fbias, scale, mult, shift);
    if (oc > FZ_MAXC) return;
    const int threads = (int)fz_range(r, 0, 3);
    qk_packed_weights *pw = NULL;
    qk_status st = qk_pack_conv2d(w, wt, oc, cpg, kh, kw, groups, wzp, &pw);
    fz_put_st(o, st);
    if (st != QK_OK) return;
    size_t oh = 0, ow = 0;
    const qk_status sz = qk_conv2d_out_size(&s, pw, &oh, &ow);
    fz_put_st(o, sz);
    if (huge_batch) s.batch = (SIZE_MAX >> 1) + 1;
    size_t ny = 0; /* output bytes, or SIZE_MAX when they do not fit */
    if (__builtin_mul_overflow(s.batch, oc, &ny) || __builtin_mul_overflow(ny, oh, &ny) ||
        __builtin_mul_overflow(ny, ow, &ny) || __builtin_mul_overflow(ny, fz_out_size(ep.out_type), &ny))
        ny = SIZE_MAX;
    if (sz == QK_OK && (huge_batch || ny <= sizeof y)) {
        memset(y, 0xA5, sizeof y);
        st = qk_conv2d(&s, pw, x, xt, xzp, &ep, y, threads);
        fz_put_st(o, st);
        if (check && huge_batch && st != QK_ERR_ARG && st != QK_ERR_ZERO_POINT && st != QK_ERR_SCALE &&
            st != QK_ERR_QRANGE && st != QK_ERR_SHIFT && st != QK_ERR_MULTIPLIER && st != QK_ERR_OVERFLOW)
            FZ_FAIL("conv with an input beyond memory: status %d", st);
        if (huge_batch) s.batch = 1;
        if (st == QK_OK) fz_put(o, y, ny);
        if (check && fz_param_error(st) && !fz_untouched(y, sizeof y)) FZ_FAIL("conv wrote on error %d", st);
        if (check && st == QK_OK && ep.scheme == QK_REQ_NONE && ny <= 4 * 4096)
            for (size_t b = 0; b < s.batch; b++)
                for (size_t c = 0; c < oc; c++)
                    for (size_t i = 0; i < oh; i++)
                        for (size_t j = 0; j < ow; j++) {
                            const int64_t acc = (ep.bias ? ep.bias[c] : 0) +
                                                qk_ref_conv_acc(&s, x, xt, xzp, w, wt, wzp, ocg,
                                                                cpg, kh, kw, b, c, i, j);
                            int32_t got;
                            memcpy(&got, y + (((b * oc + c) * oh + i) * ow + j) * 4, 4);
                            if (got != (int32_t)(uint32_t)(uint64_t)acc || (!ep.wrap && acc != got))
                                FZ_FAIL("conv (%zu, %zu, %zu, %zu): %d, reference %lld", b, c, i, j, got, (long long)acc);
                        }
    } else if (sz != QK_OK) {
        /* the conv itself must refuse the geometry the same way */
        st = qk_conv2d(&s, pw, x, xt, xzp, &ep, y, threads);
        if (check && st == QK_OK) FZ_FAIL("conv ran a geometry qk_conv2d_out_size refused (%d)", sz);
        fz_put_st(o, st);
    }
    qk_packed_weights_free(pw);
}

/* ---- PTF and LayerNorm ------------------------------------------------------------------- */
static void fz_ptf(fz_in *r, fz_out *o, int check) {
    const size_t tokens = fz_range(r, 0, 8), ch = fz_range(r, 1, 70);
    static float x[8 * 70], y[8 * 70];
    static uint8_t q[8 * 70];
    int32_t alpha[70];
    const float s = fz_scale(r);
    const int32_t zp = fz_i32(r, 0, 255);
    for (size_t c = 0; c < ch; c++) alpha[c] = fz_u8(r) & 15 ? (int32_t)fz_range(r, 0, 7) : fz_i32(r, 0, 7);
    for (size_t i = 0; i < tokens * ch; i++) x[i] = fz_val(r, isfinite(s) && s > 0 ? s : 0.01f);
    memset(q, 0xA5, sizeof q);
    size_t bad = 0;
    qk_status st = qk_ptf_quantize_f32_u8(x, tokens, ch, s, alpha, zp, q, &bad);
    fz_put_st(o, st);
    if (st == QK_OK) fz_put(o, q, tokens * ch);
    if (st == QK_ERR_NAN) fz_put(o, &bad, sizeof bad);
    if (check && fz_param_error(st) && !fz_untouched(q, sizeof q)) FZ_FAIL("ptf wrote on error");
    for (size_t i = 0; i < tokens * ch; i++) q[i] = (uint8_t)fz_u8(r);
    st = qk_ptf_dequantize_u8_f32(q, tokens, ch, s, alpha, zp, y);
    fz_put_st(o, st);
    if (st == QK_OK) fz_put(o, y, tokens * ch * 4);
}

static void fz_layernorm(fz_in *r, fz_out *o) {
    const qk_layernorm_method method = (qk_layernorm_method)fz_range(r, 0, 2);
    const size_t ch = fz_u8(r) % 16 ? fz_range(r, 1, 64) : fz_range(r, 0, 40000);
    const size_t use = ch > 64 ? 64 : ch;
    int32_t alpha[64], gb[64];
    int64_t bb[64];
    uint8_t ab[64];
    float gamma[64], beta[64];
    const float in_s = fz_scale(r), out_s = fz_scale(r), eps = fz_u8(r) & 3 ? 1e-5f : fz_f32bits(r);
    const int32_t in_zp = fz_i32(r, 0, 255), out_zp = fz_i32(r, -128, 127);
    for (size_t c = 0; c < use; c++) {
        alpha[c] = fz_u8(r) & 15 ? (int32_t)fz_range(r, 0, 7) : fz_i32(r, 0, 7);
        gamma[c] = fz_u8(r) & 7 ? (float)fz_i32(r, -1000, 1000) * 0.01f : fz_f32bits(r);
        beta[c] = fz_u8(r) & 7 ? (float)fz_i32(r, -1000, 1000) * 0.01f : fz_f32bits(r);
    }
    qk_layernorm_params p;
    /* more than 64: a count above QK_LAYERNORM_MAX_CHANNELS, which must be refused */
    qk_status st = qk_layernorm_prepare(&p, method, ch > 64 ? QK_LAYERNORM_MAX_CHANNELS + ch : ch, in_s, alpha, in_zp,
                                        gamma, beta, eps, out_s, out_zp, gb, bb, ab);
    fz_put_st(o, st);
    if (ch > 64 && st == QK_OK) FZ_FAIL("layernorm took %zu channels", QK_LAYERNORM_MAX_CHANNELS + ch);
    if (st != QK_OK || ch > 64) return;
    const size_t tokens = fz_range(r, 0, 6);
    static uint8_t q[6 * 64];
    static int8_t y[6 * 64];
    int64_t s1[6], d[6];
    for (size_t i = 0; i < tokens * ch; i++) q[i] = (uint8_t)fz_u8(r);
    st = qk_layernorm_ptf_u8_s8(&p, q, tokens, y);
    fz_put_st(o, st);
    if (st == QK_OK) fz_put(o, y, tokens * ch);
    st = qk_layernorm_ptf_stats(&p, q, tokens, s1, d);
    fz_put_st(o, st);
    if (st == QK_OK) {
        fz_put(o, s1, tokens * 8);
        fz_put(o, d, tokens * 8);
    }
}

/* ---- quantized elementwise ops and pooling -------------------------------------------------- */
static void fz_qops(fz_in *r, fz_out *o) {
    const qk_dtype t = fz_u8(r) & 1 ? QK_DT_U8 : QK_DT_S8;
    const int32_t lo = t == QK_DT_U8 ? 0 : -128, hi = t == QK_DT_U8 ? 255 : 127;
    const size_t n = fz_range(r, 0, 200);
    static uint8_t a[200], b[200], y[200];
    for (size_t i = 0; i < n; i++) a[i] = (uint8_t)fz_u8(r), b[i] = (uint8_t)fz_u8(r);
    const float sa = fz_scale(r), sb = fz_scale(r), so = fz_scale(r);
    const int32_t za = fz_i32(r, lo, hi), zb = fz_i32(r, lo, hi), zo = fz_i32(r, lo, hi);
    qk_status st;
    switch (fz_u8(r) % 3) {
        case 0: st = qk_qadd(a, b, t, n, sa, za, sb, zb, so, zo, (int)(fz_u8(r) & 1), y); break;
        case 1: {
            const float slope = fz_u8(r) & 1 ? fz_f32bits(r) : 0.01f * (float)fz_range(r, 0, 200);
            st = qk_qleaky_relu(a, t, n, sa, za, slope, so, zo, y);
            break;
        }
        default: st = qk_qclamp(a, t, n, fz_i32(r, lo, hi), fz_i32(r, lo, hi), y); break;
    }
    fz_put_st(o, st);
    if (st == QK_OK) fz_put(o, y, n);
}

static void fz_pool(fz_in *r, fz_out *o) {
    const qk_dtype t = fz_u8(r) & 1 ? QK_DT_U8 : QK_DT_S8;
    const size_t planes = fz_range(r, 0, 3), h = fz_range(r, 1, 12), w = fz_range(r, 1, 12);
    static uint8_t x[3 * 12 * 12], y[1 << 14];
    for (size_t i = 0; i < planes * h * w; i++) x[i] = (uint8_t)fz_u8(r);
    const int maxpool = (int)(fz_u8(r) & 1);
    size_t oh = fz_geo(r, 0, 8), ow = fz_geo(r, 0, 8);
    if (!maxpool && oh == 0) oh = 1; /* the adaptive pool needs an output */
    if (!maxpool && ow == 0) ow = 1;
    size_t tot;
    const int overflows = __builtin_mul_overflow(planes, oh, &tot) || __builtin_mul_overflow(tot, ow, &tot) ||
                          tot > (size_t)PTRDIFF_MAX;
    if (!overflows && tot > sizeof y) return; /* a real output we cannot hold: not a call to make */
    qk_status st;
    if (maxpool) {
        const size_t kh = fz_geo(r, 1, 4), kw = fz_geo(r, 1, 4), sh = fz_geo(r, 1, 3), sw = fz_geo(r, 1, 3);
        const size_t ph = fz_geo(r, 0, 2), pw = fz_geo(r, 0, 2), dh = fz_geo(r, 1, 2), dw = fz_geo(r, 1, 2);
        st = qk_qmax_pool2d(x, t, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, y);
    } else {
        st = qk_qadaptive_avg_pool2d(x, t, planes, h, w, oh, ow, y);
    }
    if (overflows && st == QK_OK && planes) FZ_FAIL("pooling ran an output beyond memory");
    fz_put_st(o, st);
    if (st == QK_OK && !overflows) fz_put(o, y, planes * oh * ow);
}

static void fz_prims(fz_in *r, fz_out *o) {
    const int32_t a = fz_i32(r, INT32_MIN, INT32_MAX), b = fz_i32(r, INT32_MIN, INT32_MAX);
    int32_t v[4];
    v[0] = qk_srdhm(a, b);
    v[1] = qk_rdbpot(a, (int32_t)fz_range(r, 0, 31));
    v[2] = qk_mul_by_quantized_multiplier(a, fz_i32(r, 0, INT32_MAX), (int32_t)fz_range(r, 0, 61) - 31);
    const uint64_t n = fz_bits(r, 8), s = qk_isqrt_u64(n);
    fz_put(o, v, 12);
    fz_put(o, &s, 8);
    if (!(s * s <= n && (s + 1 > UINT32_MAX || (s + 1) * (s + 1) > n))) FZ_FAIL("isqrt(%llu) = %llu", (unsigned long long)n, (unsigned long long)s);
}

/* The entry point (renamed qkB_fuzz_ops in copy B). Returns the bytes of result written. */
size_t fuzz_ops(const uint8_t *data, size_t size, uint8_t *res, size_t cap, int check);
size_t fuzz_ops(const uint8_t *data, size_t size, uint8_t *res, size_t cap, int check) {
    fz_in r = {data, size};
    fz_out o = {res, 0, cap};
    fz_put(&o, qk_isa_name(qk_isa()), 0); /* chooses the ISA once, before any kernel */
    const uint32_t op = fz_u8(&r);
    switch (op % 13) {
        case 0: fz_quantize(&r, &o, check); break;
        case 1: fz_dequantize(&r, &o, check); break;
        case 2: fz_fake(&r, &o, check); break;
        case 3: fz_acc2f(&r, &o); break;
        case 4: fz_qmult(&r, &o, check); break;
        case 5: fz_requantize(&r, &o, check); break;
        case 6: fz_linear(&r, &o, check); break;
        case 7: fz_conv(&r, &o, check); break;
        case 8: fz_ptf(&r, &o, check); break;
        case 9: fz_layernorm(&r, &o); break;
        case 10: fz_qops(&r, &o); break;
        case 11: fz_pool(&r, &o); break;
        default: fz_prims(&r, &o); break;
    }
    return o.n;
}
