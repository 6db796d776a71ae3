/* qops.c -- quantized add, mul, LeakyReLU, clamp, max pooling and adaptive average pooling on 8-bit
 * tensors, as PyTorch's quantized CPU kernels compute them (the formulas are in qkernels.h). */
#include "core/core.h"
#include "elementwise/elementwise.h"
#include "core/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if QK_X86
#include <immintrin.h>
#endif

/* ---- scalar cores ------------------------------------------------------------------------ */
/* An input scale: finite, > 0 and at most 2^118, so that every dequantized value (|q - zp| <=
 * 255) and the sum of two stay finite: no inf - inf or inf * 0 (NaN) anywhere, and the SIMD and
 * scalar loops agree on every input. */
static inline int qk__in_scale_ok(float s) { return qk__scale_ok(s) && s <= 0x1p118f; }

/* Vectorized<quint8>::dequantize: one rounding, fmaf(q, s, -fl(s * zp)). */
static inline float qk__dq(int32_t q, float s, float nb) { return fmaf((float)q, s, nb); }

/* The output stage of type t; 0 when out_zp is outside t. */
static inline int qk__qout_init(qk__qout *o, qk_dtype t, float out_scale, int32_t out_zp) {
    o->s8 = t == QK_DT_S8;
    const int32_t qmin = o->s8 ? INT8_MIN : 0, qmax = o->s8 ? INT8_MAX : UINT8_MAX;
    o->inv = 1.0f / out_scale;
    o->lo = (double)qmin - out_zp;
    o->hi = (double)qmax - out_zp;
    o->zp = out_zp;
    return out_zp >= qmin && out_zp <= qmax;
}

/* 1 when zp is a value of the 8-bit type t */
static inline int qk__zp8_ok(qk_dtype t, int32_t zp) {
    return t == QK_DT_S8 ? zp >= INT8_MIN && zp <= INT8_MAX : zp >= 0 && zp <= UINT8_MAX;
}

static inline uint8_t qk__qout1(const qk__qout *o, float v) {
    const int32_t r = (int32_t)rint(qk__clampd((double)(v * o->inv), o->lo, o->hi)) + o->zp;
    return o->s8 ? (uint8_t)(int8_t)r : (uint8_t)r;
}

static inline int32_t qk__in8(const uint8_t *p, size_t i, int s8) {
    return s8 ? (int32_t)(int8_t)p[i] : (int32_t)p[i];
}

/* ---- quantized add (and LeakyReLU below): their SIMD loops, once per ISA ---------------- */
#define QK_TWINS_TEMPLATE "elementwise/qops_isa.h"
#include "elementwise/simd_twins.h"

qk_status qk__qadd_prepare(qk__qadd_p *p, qk_dtype t, float a_scale, int32_t a_zp, float b_scale,
                           int32_t b_zp, float out_scale, int32_t out_zp, int relu) {
    if (t != QK_DT_U8 && t != QK_DT_S8) return QK_ERR_ARG;
    if (!qk__in_scale_ok(a_scale) || !qk__in_scale_ok(b_scale) || !qk__recip_scale_ok(out_scale))
        return QK_ERR_SCALE;
    if (!qk__qout_init(&p->o, t, out_scale, out_zp) || !qk__zp8_ok(t, a_zp) || !qk__zp8_ok(t, b_zp))
        return QK_ERR_ZERO_POINT;
    p->sa = a_scale;
    p->sb = b_scale;
    p->nba = -(a_scale * (float)a_zp);
    p->nbb = -(b_scale * (float)b_zp);
    p->relu = relu != 0;
    return QK_OK;
}

void qk__qadd_rows(const qk__qadd_p *p, const uint8_t *a, const uint8_t *b, size_t rows,
                   size_t n, size_t stride, uint8_t *y) {
    const float a_scale = p->sa, b_scale = p->sb, nba = p->nba, nbb = p->nbb;
    const int relu = p->relu;
#if QK_X86
    const qk__isa_level level = qk__level();
#endif
    for (size_t r = 0; r < rows; r++, a += stride, b += stride, y += stride) {
        size_t i = 0;
#if QK_X86
        if (level >= QK_LEVEL_AVX512)
            i = qk__qadd_avx512(a, b, n, a_scale, nba, b_scale, nbb, &p->o, relu, y);
        else if (level >= QK_LEVEL_AVX2)
            i = qk__qadd_avx2(a, b, n, a_scale, nba, b_scale, nbb, &p->o, relu, y);
#endif
        for (; i < n; i++) {
            float c = qk__dq(qk__in8(a, i, p->o.s8), a_scale, nba) +
                      qk__dq(qk__in8(b, i, p->o.s8), b_scale, nbb);
            if (relu && c < 0.0f) c = 0.0f;
            y[i] = qk__qout1(&p->o, c);
        }
    }
}

qk_status qk_qadd(const void *a, const void *b, qk_dtype t, size_t n, float a_scale,
                  int32_t a_zp, float b_scale, int32_t b_zp, float out_scale, int32_t out_zp,
                  int relu, void *y) {
    qk__qadd_p p;
    const qk_status st = qk__qadd_prepare(&p, t, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp,
                                          relu);
    if (st != QK_OK) return st;
    if (n > 0 && (a == NULL || b == NULL || y == NULL)) return QK_ERR_ARG;
    qk__qadd_rows(&p, (const uint8_t *)a, (const uint8_t *)b, 1, n, 0, (uint8_t *)y);
    return QK_OK;
}

/* qk_qadd_threads: qk_qadd over jobs of QK__QADD_JOB elements (a multiple of 64: every job but
 * the last runs whole vectors), split between the caller and threads - 1 helpers when the call
 * has at least QK__QADD_SPLIT elements. Each element's result depends on nothing but its inputs
 * (the SIMD loops and the scalar tail agree bit for bit), so the split never changes a result.
 * Thresholds measured (2026-12-07, 2-vCPU Zen 4 shared with other jobs, minima of 300
 * interleaved calls, uint8 add_relu, one thread -> two): 802816 elements (resnet50's 256 x 56 x
 * 56) 135 -> 85 us, 100352 (its 2048 x 7 x 7) 17.7 -> 11.8 us, 50176 9.4 -> 7.1 us, but 32768
 * 7.5 -> 7.6 us and 16384 4.5 -> 4.5 us: below about 48K elements the hand-off to the pool's
 * helper costs what the second thread saves. */
enum { QK__QADD_JOB = 8192, QK__QADD_SPLIT = 49152 };

typedef struct {
    const uint8_t *a, *b;
    uint8_t *y;
    qk_dtype t;
    size_t n;
    float as, bs, os;
    int32_t az, bz, oz;
    int relu;
} qk__qadd_ctx;

static void qk__qadd_jobs(void *vctx, size_t j0, size_t j1) {
    const qk__qadd_ctx *c = (const qk__qadd_ctx *)vctx;
    const size_t i0 = j0 * QK__QADD_JOB, i1 = j1 * QK__QADD_JOB < c->n ? j1 * QK__QADD_JOB : c->n;
    /* the parameters were checked by the caller: this cannot fail */
    (void)qk_qadd(c->a + i0, c->b + i0, c->t, i1 - i0, c->as, c->az, c->bs, c->bz, c->os, c->oz,
                  c->relu, c->y + i0);
}

qk_status qk_qadd_threads(const void *a, const void *b, qk_dtype t, size_t n, float a_scale,
                          int32_t a_zp, float b_scale, int32_t b_zp, float out_scale,
                          int32_t out_zp, int relu, void *y, int threads) {
    if (threads <= 1 || n < QK__QADD_SPLIT)
        return qk_qadd(a, b, t, n, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, relu, y);
    /* the checks of qk_qadd, once, on no elements */
    const qk_status st = qk_qadd(a, b, t, 0, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp,
                                 relu, y);
    if (st != QK_OK) return st;
    if (a == NULL || b == NULL || y == NULL) return QK_ERR_ARG;
    qk__qadd_ctx c = {(const uint8_t *)a, (const uint8_t *)b, (uint8_t *)y, t, n, a_scale,
                      b_scale, out_scale, a_zp, b_zp, out_zp, relu};
    qk__parallel((n + QK__QADD_JOB - 1) / QK__QADD_JOB, threads, qk__qadd_jobs, &c);
    return QK_OK;
}

/* ---- quantized mul ---------------------------------------------------------------------- */
/* quantized::mul(_relu) (qmul_kernel): m = fl(fl(a_scale * b_scale) * fl(1 / out_scale)) in
 * float as PyTorch computes it; y = clamp(RNE(fl((float)c * m)) + out_zp) with c = (a - za) (b -
 * zb) (exact: |c| <= 255^2 < 2^24), relu: the lower bound out_zp. m <= 2^15 keeps |c m| < 2^31,
 * where PyTorch's vector (cvtps) and scalar (lrintf) paths agree. */
qk_status qk_qmul(const void *a, const void *b, qk_dtype t, size_t rows, size_t cols, int b_per_row,
                  float a_scale, int32_t a_zp, float b_scale, int32_t b_zp, float out_scale,
                  int32_t out_zp, int relu, void *y) {
    if (t != QK_DT_U8 && t != QK_DT_S8) return QK_ERR_ARG;
    if (!qk__scale_ok(a_scale) || !qk__scale_ok(b_scale) || !qk__recip_scale_ok(out_scale))
        return QK_ERR_SCALE;
    const float m = (a_scale * b_scale) * (1.0f / out_scale);
    if (!(m <= 0x1p15f)) return QK_ERR_SCALE; /* also NaN / inf */
    qk__qout o;
    if (!qk__qout_init(&o, t, out_scale, out_zp) || !qk__zp8_ok(t, a_zp) || !qk__zp8_ok(t, b_zp))
        return QK_ERR_ZERO_POINT;
    size_t n;
    if (!qk__sz_mul(rows, cols, &n)) return QK_ERR_ARG;
    if (n > 0 && (a == NULL || b == NULL || y == NULL)) return QK_ERR_ARG;
    o.inv = m;
    if (relu) o.lo = 0.0; /* max(y, out_zp) */
    const uint8_t *pa = (const uint8_t *)a, *pb = (const uint8_t *)b;
    uint8_t *py = (uint8_t *)y;
    const size_t nr = b_per_row ? rows : 1, len = b_per_row ? cols : n;
    for (size_t r = 0; r < nr; r++) {
        const uint8_t *ar = pa + r * len, *br = b_per_row ? pb + r : pb;
        uint8_t *yr = py + r * len;
        size_t i = 0;
#if QK_X86
        if (qk__level() >= QK_LEVEL_AVX512)
            i = qk__qmul_avx512(ar, br, b_per_row, len, a_zp, b_zp, &o, yr);
        else if (qk__level() >= QK_LEVEL_AVX2)
            i = qk__qmul_avx2(ar, br, b_per_row, len, a_zp, b_zp, &o, yr);
#endif
        for (; i < len; i++) {
            const int32_t c = (qk__in8(ar, i, o.s8) - a_zp) *
                              (qk__in8(br, b_per_row ? 0 : i, o.s8) - b_zp);
            yr[i] = qk__qout1(&o, (float)c);
        }
    }
    return QK_OK;
}

/* ---- global average pooling, PyTorch's channels-last arithmetic ----------------------------- */
/* The sum of a plane of n 8-bit values (exact: n * 255 < 2^63). */
static int64_t qk__plane_sum(const uint8_t *x, size_t n, int s8) {
    const uint8_t flip = s8 ? 0x80 : 0;
    uint64_t s = 0;
    size_t i = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX512)
        i = qk__sum_bytes_avx512(x, n, flip, &s);
    else if (qk__level() >= QK_LEVEL_AVX2)
        i = qk__sum_bytes_avx2(x, n, flip, &s);
#endif
    for (; i < n; i++) s += (uint8_t)(x[i] ^ flip);
    return (int64_t)s - (s8 ? 128 * (int64_t)n : 0);
}

qk_status qk_qglobal_avg_pool2d(const void *x, qk_dtype t, size_t n, size_t c, size_t hw,
                                int32_t zp, size_t vec_channels, void *y) {
    if ((t != QK_DT_U8 && t != QK_DT_S8) || hw == 0 || hw > (size_t)INT32_MAX / 255 ||
        vec_channels > c)
        return QK_ERR_ARG;
    if (!qk__zp8_ok(t, zp)) return QK_ERR_ZERO_POINT;
    size_t v;
    if (!qk__sz_mul4(n, c, hw, 1, &v)) return QK_ERR_ARG;
    if (n * c == 0) return QK_OK;
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    const int s8 = t == QK_DT_S8;
    const float qmin = s8 ? -128.0f : 0.0f, qmax = s8 ? 127.0f : 255.0f, fz = (float)zp;
    const float scale = 1.0f / (1.0f / (float)hw), inv = 1.0f / scale; /* hw < 2^24: exact */
    const uint8_t *px = (const uint8_t *)x;
    uint8_t *py = (uint8_t *)y;
    for (size_t b = 0; b < n; b++)
        for (size_t ch = 0; ch < c; ch++) {
            const size_t p = b * c + ch;
            /* int32 as PyTorch: |sum - hw zp| <= 255 hw <= INT32_MAX */
            const int32_t acc = (int32_t)(qk__plane_sum(px + p * hw, hw, s8) - (int64_t)hw * zp);
            const float a = (float)acc;
            /* fbgemm::Quantize: its vector loop fuses, its scalar tail adds after rounding */
            float q = ch < vec_channels ? fmaf(a, inv, fz) : a * inv + fz;
            q = nearbyintf(q < qmin ? qmin : (q > qmax ? qmax : q));
            py[p] = s8 ? (uint8_t)(int8_t)q : (uint8_t)q;
        }
    return QK_OK;
}

/* ---- quantized add, QNNPACK (engine "qnnpack", uint8) ----------------------------------- */
/* pytorch_qnnp_compute_add_quantization_params: ratios r = fl(s / s_out); with e the exponent of
 * the larger one, shift = 21 - e and multipliers m = lrintf(r * 2^shift) (exact power-of-two
 * scaling, then RNE); acc = m_a (a - za) + m_b (b - zb) in int32 (|acc| < 2^31: m < 2^22);
 * rounding right shift, ties away from zero; + zo; clamp to [y_min, 255]. */
typedef struct {
    int32_t ma, mb, zpp, mask, thr, zo, ymin;
    int shift;
} qk__qnnp_add;

static inline int32_t qk__qnnp_add1(const qk__qnnp_add *p, int32_t a, int32_t b) {
    const int32_t acc = p->zpp + a * p->ma + b * p->mb;
    const int32_t rem = (acc & p->mask) - (int32_t)(acc < 0);
    /* arithmetic shift right of a negative value, written without implementation-defined >> */
    const int32_t q = acc >= 0 ? acc >> p->shift : -(int32_t)((~(uint32_t)acc) >> p->shift) - 1;
    int32_t y = q + (int32_t)(rem > p->thr) + p->zo;
    y = y < p->ymin ? p->ymin : y;
    return y > 255 ? 255 : y;
}

#if QK_X86
QK_TARGET_AVX2 static size_t qk__qadd_qnnpack_avx2(const uint8_t *a, const uint8_t *b, size_t n,
                                                   const qk__qnnp_add *p, uint8_t *y) {
    const __m256i vma = _mm256_set1_epi32(p->ma), vmb = _mm256_set1_epi32(p->mb);
    const __m256i vzpp = _mm256_set1_epi32(p->zpp), vmask = _mm256_set1_epi32(p->mask);
    const __m256i vthr = _mm256_set1_epi32(p->thr), vzo = _mm256_set1_epi32(p->zo);
    const __m256i vmin = _mm256_set1_epi32(p->ymin), vmax = _mm256_set1_epi32(255);
    const __m128i vshift = _mm_cvtsi32_si128(p->shift);
    const __m256i zero = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i va = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(a + i)));
        const __m256i vb = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + i)));
        const __m256i acc = _mm256_add_epi32(
            _mm256_add_epi32(vzpp, _mm256_mullo_epi32(va, vma)), _mm256_mullo_epi32(vb, vmb));
        /* (acc < 0) is -1 in the compare mask: rem = (acc & mask) - (acc < 0) */
        const __m256i rem = _mm256_add_epi32(_mm256_and_si256(acc, vmask),
                                             _mm256_cmpgt_epi32(zero, acc));
        __m256i r = _mm256_sub_epi32(_mm256_sra_epi32(acc, vshift), _mm256_cmpgt_epi32(rem, vthr));
        r = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, vzo), vmin), vmax);
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64((__m128i *)(y + i), _mm_packus_epi16(w, w));
    }
    return i;
}
#endif

static uint32_t qk__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

qk_status qk_qadd_qnnpack(const uint8_t *a, const uint8_t *b, size_t n, float a_scale,
                          int32_t a_zp, float b_scale, int32_t b_zp, float out_scale,
                          int32_t out_zp, int relu, uint8_t *y) {
    if (!qk__scale_ok(a_scale) || !qk__scale_ok(b_scale) || !qk__scale_ok(out_scale))
        return QK_ERR_SCALE;
    if (out_zp < 0 || out_zp > 255 || a_zp < 0 || a_zp > 255 || b_zp < 0 || b_zp > 255)
        return QK_ERR_ZERO_POINT;
    if (relu && out_zp == 255) return QK_ERR_ARG;   /* QNNPACK: output range [255, 255] refused */
    const float ra = a_scale / out_scale, rb = b_scale / out_scale;
    /* QNNPACK refuses ratios outside [2^-14, 2^8); below 2^-10 its shift exceeds 31 (undefined
     * shifts in its parameter set-up), refused here too */
    if (!(ra >= 0x1.0p-14f && ra < 0x1.0p+8f && rb >= 0x1.0p-14f && rb < 0x1.0p+8f))
        return QK_ERR_SCALE;
    const float rmax = ra > rb ? ra : rb;
    const int e = (int)(qk__f32_bits(rmax) >> 23) - 127;
    const int shift = 21 - e;
    if (shift > 31) return QK_ERR_SCALE;
    if (n > 0 && (a == NULL || b == NULL || y == NULL)) return QK_ERR_ARG;
    const float pw = ldexpf(1.0f, shift);
    qk__qnnp_add p;
    p.ma = (int32_t)lrintf(ra * pw);
    p.mb = (int32_t)lrintf(rb * pw);
    p.zpp = -(p.ma * a_zp + p.mb * b_zp);
    p.shift = shift;
    p.mask = (int32_t)((UINT32_C(1) << shift) - 1u);
    p.thr = (int32_t)((uint32_t)p.mask >> 1);
    p.zo = out_zp;
    p.ymin = relu ? out_zp : 0;
    size_t i = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX2) i = qk__qadd_qnnpack_avx2(a, b, n, &p, y);
#endif
    for (; i < n; i++) y[i] = (uint8_t)qk__qnnp_add1(&p, a[i], b[i]);
    return QK_OK;
}

/* ---- quantized LeakyReLU ------------------------------------------------------------------ */
qk_status qk_qleaky_relu(const void *x, qk_dtype t, size_t n, float x_scale, int32_t x_zp,
                         float slope, float out_scale, int32_t out_zp, void *y) {
    if (t != QK_DT_U8 && t != QK_DT_S8) return QK_ERR_ARG;
    if (!qk__in_scale_ok(x_scale) || !qk__recip_scale_ok(out_scale)) return QK_ERR_SCALE;
    if (!isfinite(slope)) return QK_ERR_ARG;
    qk__qout o;
    if (!qk__qout_init(&o, t, out_scale, out_zp) || !qk__zp8_ok(t, x_zp)) return QK_ERR_ZERO_POINT;
    if (n > 0 && (x == NULL || y == NULL)) return QK_ERR_ARG;
    const float nbx = -(x_scale * (float)x_zp);
    const uint8_t *px = (const uint8_t *)x;
    uint8_t *py = (uint8_t *)y;
    size_t i = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX512)
        i = qk__qleaky_avx512(px, n, x_scale, nbx, slope, &o, py);
    else if (qk__level() >= QK_LEVEL_AVX2)
        i = qk__qleaky_avx2(px, n, x_scale, nbx, slope, &o, py);
#endif
    for (; i < n; i++) {
        const float d = qk__dq(qk__in8(px, i, o.s8), x_scale, nbx);
        py[i] = qk__qout1(&o, d > 0.0f ? d : d * slope);
    }
    return QK_OK;
}

/* ---- clamp -------------------------------------------------------------------------------- */
qk_status qk_qclamp(const void *x, qk_dtype t, size_t n, int32_t lo, int32_t hi, void *y) {
    if (t != QK_DT_U8 && t != QK_DT_S8) return QK_ERR_ARG;
    if (n > 0 && (x == NULL || y == NULL)) return QK_ERR_ARG;
    if (t == QK_DT_U8) {
        const uint8_t l = (uint8_t)(lo < 0 ? 0 : lo > 255 ? 255 : lo);
        const uint8_t h = (uint8_t)(hi < 0 ? 0 : hi > 255 ? 255 : hi);
        const uint8_t *px = (const uint8_t *)x;
        uint8_t *py = (uint8_t *)y;
        for (size_t i = 0; i < n; i++) {
            const uint8_t v = px[i] < l ? l : px[i];
            py[i] = v > h ? h : v;
        }
    } else {
        const int8_t l = (int8_t)(lo < -128 ? -128 : lo > 127 ? 127 : lo);
        const int8_t h = (int8_t)(hi < -128 ? -128 : hi > 127 ? 127 : hi);
        const int8_t *px = (const int8_t *)x;
        int8_t *py = (int8_t *)y;
        for (size_t i = 0; i < n; i++) {
            const int8_t v = px[i] < l ? l : px[i];
            py[i] = v > h ? h : v;
        }
    }
    return QK_OK;
}

/* ---- pooling ------------------------------------------------------------------------------ */
/* The taps a in [*a0, *a1) of a window starting at o*s - p (dilation d) that fall in [0, n). */
static inline void qk__taps(size_t o, size_t s, size_t p, size_t d, size_t k, size_t n,
                            size_t *a0, size_t *a1) {
    const size_t start = o * s; /* + p: coordinates of the padded input */
    size_t lo = 0, hi = k;
    if (start < p) lo = (p - start + d - 1) / d;
    /* start + a*d - p < n  <=>  a*d < n + p - start */
    if (n + p <= start) {
        hi = 0;
    } else {
        const size_t lim = (n + p - start + d - 1) / d;
        if (lim < hi) hi = lim;
    }
    if (lo > hi) lo = hi;
    *a0 = lo;
    *a1 = hi;
}

/* Max pooling by rows: for each output row, the maximum of its window's input rows (a vertical
 * pass over whole rows, 8-bit lanes), then each output's maximum over its columns of that row.
 * The same maximum over the same in-bounds taps as the tap-by-tap loop, in another order. */
enum { QK__POOL_ROW = 4096 }; /* the widest input row pooled by rows (a stack row buffer) */

/* v[x] = max(v[x], r[x]) for x in [x, n): the scalar twin of qk__vmax8_avx2. */
static inline void qk__vmax8_scalar(uint8_t *v, const uint8_t *r, size_t x, size_t n, int s8) {
    for (; x < n; x++) {
        const int gt = s8 ? (int8_t)r[x] > (int8_t)v[x] : r[x] > v[x];
        if (gt) v[x] = r[x];
    }
}

#if QK_X86
QK_TARGET_AVX2 static size_t qk__vmax8_avx2(uint8_t *v, const uint8_t *r, size_t n, int s8) {
    size_t x = 0;
    for (; x + 32 <= n; x += 32) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(v + x));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(r + x));
        _mm256_storeu_si256((__m256i *)(v + x), s8 ? _mm256_max_epi8(a, b) : _mm256_max_epu8(a, b));
    }
    if (x + 16 <= n) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(v + x));
        const __m128i b = _mm_loadu_si128((const __m128i *)(r + x));
        _mm_storeu_si128((__m128i *)(v + x), s8 ? _mm_max_epi8(a, b) : _mm_max_epu8(a, b));
        x += 16;
    }
    return x;
}

/* The 3-wide, stride-2 window (3x3 / 2 pooling, ResNet's stem): y[j] = max(c[2j], c[2j+1],
 * c[2j+2]) for j < n, 16 at a time; returns the outputs done (reads c[0 .. 2 * done + 1]
 * plus one 32-byte load that stays below c + 2 * n + 1). Each pair (c[2j], c[2j+1]) is one
 * 16-bit lane: its bytes widened in place (sign- or zero-extended), compared, packed back. */
QK_TARGET_AVX2 static size_t qk__hmax3s2_avx2(const uint8_t *c, size_t n, int s8, uint8_t *y) {
    size_t j = 0;
    const __m256i lo8 = _mm256_set1_epi16(0xFF);
    for (; j + 16 <= n && 2 * j + 34 <= 2 * n + 1; j += 16) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(c + 2 * j));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(c + 2 * j + 2));
        __m256i m;
        if (s8) {
            const __m256i a0 = _mm256_srai_epi16(_mm256_slli_epi16(a, 8), 8);
            const __m256i a1 = _mm256_srai_epi16(a, 8);
            const __m256i b0 = _mm256_srai_epi16(_mm256_slli_epi16(b, 8), 8);
            m = _mm256_max_epi16(_mm256_max_epi16(a0, a1), b0);
            m = _mm256_packs_epi16(m, m);
        } else {
            const __m256i a0 = _mm256_and_si256(a, lo8), a1 = _mm256_srli_epi16(a, 8);
            const __m256i b0 = _mm256_and_si256(b, lo8);
            m = _mm256_max_epi16(_mm256_max_epi16(a0, a1), b0);
            m = _mm256_packus_epi16(m, m);
        }
        /* the pack works per 128-bit half: the 8 bytes of each half are at qwords 0 and 2 */
        m = _mm256_permute4x64_epi64(m, 0x08);
        _mm_storeu_si128((__m128i *)(y + j), _mm256_castsi256_si128(m));
    }
    return j;
}
#endif

static size_t qk__hmax3s2(const uint8_t *c, size_t n, int s8, uint8_t *y) {
#if QK_X86
    return qk__hmax3s2_avx2(c, n, s8, y);
#else
    (void)c, (void)n, (void)s8, (void)y;
    return 0;
#endif
}

static void qk__vmax8(uint8_t *v, const uint8_t *r, size_t n, int s8) {
    size_t x = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX2) x = qk__vmax8_avx2(v, r, n, s8);
#endif
    qk__vmax8_scalar(v, r, x, n, s8);
}

/* The 3x3 window at stride 1 with padding 1 (the "same" pooling of GoogLeNet's and Inception's
 * branches) over a whole plane of at most QK__POOL_ROW elements at once, every pass a max of
 * long flat ranges (qk__vmax8: AVX2 and its scalar twin): rows first, V_i = max(x_i, x_i+1),
 * then t_i = max(V_i-1, V_i) (t_0 = V_0, t_h-1 = V_h-2); then the columns over the flattened
 * plane, y_k = max(t_k-1, t_k, t_k+1), whose first and last column of each row (which took a
 * neighbour row's element) are redone from their in-bounds taps. The same maxima over the same
 * in-bounds taps as the tap-by-tap loop. Small planes (7x7 to 56x56) are where the row-by-row
 * path spent its time in calls and tails. */
static void qk__maxpool3s1_plane(const uint8_t *x, size_t h, size_t w, int s8, uint8_t *t,
                                 uint8_t *y) {
    const size_t n = h * w;
    if (h == 1) {
        memcpy(t, x, n);
    } else {
        memcpy(y, x, n - w);                           /* y: V_i = max(x_i, x_i+1), i < h-1 */
        qk__vmax8(y, x + w, n - w, s8);
        memcpy(t, y, w);                               /* t_0 = V_0 */
        if (h > 2) {                                   /* t_i = max(V_i-1, V_i), 0 < i < h-1 */
            memcpy(t + w, y, n - 2 * w);
            qk__vmax8(t + w, y + w, n - 2 * w, s8);
        }
        memcpy(t + n - w, y + n - 2 * w, w);           /* t_h-1 = V_h-2 */
    }
    if (n >= 3) {
        memcpy(y + 1, t, n - 2);
        qk__vmax8(y + 1, t + 1, n - 2, s8);
        qk__vmax8(y + 1, t + 2, n - 2, s8);
    }
    for (size_t i = 0; i < h; i++) {                   /* the first and last column of each row */
        const uint8_t *r = t + i * w;
        uint8_t *o = y + i * w;
        if (w == 1) {
            o[0] = r[0];
            continue;
        }
        const int gt0 = s8 ? (int8_t)r[1] > (int8_t)r[0] : r[1] > r[0];
        const int gt1 = s8 ? (int8_t)r[w - 2] > (int8_t)r[w - 1] : r[w - 2] > r[w - 1];
        o[0] = gt0 ? r[1] : r[0];
        o[w - 1] = gt1 ? r[w - 2] : r[w - 1];
    }
}

/* Output columns [j0, j1) of one row from its vertical maxima v (only the in-bounds taps, as the
 * tap-by-tap loop), and the whole pooling by rows. */
#define QK__MAXPOOL_ROWS(T, TMIN)                                                                \
    static void qk__pool_cols_##T(const T *v, size_t w, size_t kw, size_t sw, size_t pw,         \
                                  size_t dw, size_t j0, size_t j1, T *y) {                       \
        for (size_t j = j0; j < j1; j++) {                                                       \
            size_t b0, b1;                                                                       \
            qk__taps(j, sw, pw, dw, kw, w, &b0, &b1);                                            \
            T m = TMIN;                                                                          \
            for (size_t b = b0; b < b1; b++)                                                     \
                if (v[j * sw + b * dw - pw] > m) m = v[j * sw + b * dw - pw];                    \
            y[j] = m;                                                                            \
        }                                                                                        \
    }                                                                                            \
    static void qk__maxpool_rows_##T(const T *x, size_t planes, size_t h, size_t w, size_t kh,   \
                                     size_t kw, size_t sh, size_t sw, size_t ph, size_t pw,      \
                                     size_t dh, size_t dw, size_t oh, size_t ow, T *y) {         \
        T v[QK__POOL_ROW];                                                                       \
        /* interior columns [jl, jr): every tap in bounds, j*sw >= pw and                        \
         * j*sw - pw + (kw-1)*dw <= w - 1 */                                                     \
        const size_t e = (kw - 1) * dw;                                                          \
        size_t jl = pw / sw + (pw % sw != 0), /* ceil(pw / sw) without pw + sw - 1 */            \
               jr = w - 1 + pw >= e ? (w - 1 + pw - e) / sw + 1 : 0;                            \
        if (jl > ow) jl = ow;                                                                    \
        if (jr > ow) jr = ow;                                                                    \
        if (jr < jl) jr = jl;                                                                    \
        for (size_t p = 0; p < planes; p++) {                                                    \
            const T *xp = x + p * h * w;                                                         \
            for (size_t i = 0; i < oh; i++, y += ow) {                                           \
                size_t a0, a1;                                                                   \
                qk__taps(i, sh, ph, dh, kh, h, &a0, &a1);                                        \
                if (a0 == a1) { /* no in-bounds row: t's minimum */                              \
                    for (size_t j = 0; j < ow; j++) y[j] = TMIN;                                 \
                    continue;                                                                    \
                }                                                                                \
                memcpy(v, xp + (i * sh + a0 * dh - ph) * w, w * sizeof(T));                      \
                for (size_t a = a0 + 1; a < a1; a++)                                             \
                    qk__vmax8((uint8_t *)v, (const uint8_t *)(xp + (i * sh + a * dh - ph) * w),  \
                              w, (T)-1 < 0);                                                     \
                qk__pool_cols_##T(v, w, kw, sw, pw, dw, 0, jl, y);                               \
                size_t j = jl;                                                                   \
                if (QK_X86 && kw == 3 && sw == 2 && dw == 1 && qk__level() >= QK_LEVEL_AVX2)     \
                    j += qk__hmax3s2((const uint8_t *)(v + jl * 2 - pw), jr - jl, (T)-1 < 0,      \
                                     (uint8_t *)(y + jl));                                \
                for (; j < jr; j++) {                                                            \
                    const T *c = v + j * sw - pw;                                                \
                    T m = c[0];                                                                  \
                    for (size_t b = 1; b < kw; b++)                                              \
                        if (c[b * dw] > m) m = c[b * dw];                                        \
                    y[j] = m;                                                                    \
                }                                                                                \
                qk__pool_cols_##T(v, w, kw, sw, pw, dw, jr, ow, y);                              \
            }                                                                                    \
        }                                                                                        \
    }
QK__MAXPOOL_ROWS(uint8_t, 0)
QK__MAXPOOL_ROWS(int8_t, INT8_MIN)

enum { QK__MAX_NARROW_KW = 32 }; /* the widest window of the narrow VBMI path */

#if QK_X86

/* Max pooling of planes at most 128 wide into output rows at most 64 wide (AVX-512 VBMI: ResNet's,
 * GoogLeNet's and Inception's 3x3 pools from 112x112 down), one output row a vector: the
 * vertical maximum of the window's in-bounds input rows (two 64-byte halves), then each output
 * byte's maximum over its in-bounds columns by byte permutes (vpermt2b; a column outside the row
 * gives 0). Signed bytes are compared as unsigned after flipping their top bit (the order is kept
 * and the minimum, -128, becomes 0), so an output with no in-bounds tap is t's minimum. The same
 * maxima over the same taps as the tap-by-tap loop. */
QK_TARGET_AVX512VBMI static void qk__maxpool_narrow_vbmi(const uint8_t *x, size_t planes,
                                                         size_t h, size_t w, size_t kh, size_t kw,
                                                         size_t sh, size_t sw, size_t ph,
                                                         size_t pw, size_t dh, size_t dw,
                                                         size_t oh, size_t ow, int s8,
                                                         uint8_t *y) {
    const __m512i flip = _mm512_set1_epi8(s8 ? (char)0x80 : 0);
    const __mmask64 m0 = w >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << w) - 1;
    const __mmask64 m1 = w <= 64 ? 0 : w >= 128 ? ~(__mmask64)0 : ((__mmask64)1 << (w - 64)) - 1;
    const __mmask64 mo = ow >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << ow) - 1;
    __m512i idx[QK__MAX_NARROW_KW];
    __mmask64 mk[QK__MAX_NARROW_KW];
    size_t nt = 0; /* the column taps b that reach the row for some output byte */
    for (size_t b = 0; b < kw; b++) {
        uint8_t id[64];
        __mmask64 m = 0;
        for (size_t j = 0; j < 64; j++) {
            const size_t col = j * sw + b * dw; /* + pw: padded coordinates */
            id[j] = 0;
            if (j < ow && col >= pw && col - pw < w) {
                id[j] = (uint8_t)(col - pw);
                m |= (__mmask64)1 << j;
            }
        }
        if (m == 0) continue;
        idx[nt] = _mm512_loadu_si512((const void *)id);
        mk[nt++] = m;
    }
    for (size_t p = 0; p < planes; p++) {
        const uint8_t *xp = x + p * h * w;
        for (size_t i = 0; i < oh; i++, y += ow) {
            size_t a0, a1;
            qk__taps(i, sh, ph, dh, kh, h, &a0, &a1);
            __m512i v0 = _mm512_setzero_si512(), v1 = v0;
            for (size_t a = a0; a < a1; a++) {
                const uint8_t *r = xp + (i * sh + a * dh - ph) * w;
                v0 = _mm512_max_epu8(v0, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m0, r), flip));
                if (m1)
                    v1 = _mm512_max_epu8(
                        v1, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m1, r + 64), flip));
            }
            __m512i o = _mm512_setzero_si512();
            for (size_t t = 0; t < nt; t++)
                o = _mm512_max_epu8(o, _mm512_maskz_permutex2var_epi8(mk[t], v0, idx[t], v1));
            _mm512_mask_storeu_epi8(y, mo, _mm512_xor_si512(o, flip));
        }
    }
}
#endif

#if QK_X86
/* The 3x3 window at stride 1 with padding 1 over whole planes of at most QK__POOL_ROW elements,
 * 64 flat elements a vector whatever the row width (AVX-512 BW: the 7x7 to 28x28 planes of
 * GoogLeNet's branches, whose rows fill a quarter of the narrow path's vectors or less): first
 * the vertical maxima v_i = max(x_i-w, x_i, x_i+w) of the flattened plane (taps outside the
 * plane masked out), then y_i = max(v_i-1, v_i, v_i+1) with v_i-1 masked out in each row's first
 * column and v_i+1 in its last (the per-vector column masks made once a call). Bytes in the
 * unsigned order (signed ones with the top bit flipped: a masked tap's 0 is then the minimum,
 * neutral); always at least the tap x_i itself. The same maxima over the same in-bounds taps as
 * the tap-by-tap loop. */
QK_TARGET_AVX512 static void qk__maxpool3s1_flat_avx512(const uint8_t *x, size_t planes, size_t h,
                                                        size_t w, int s8, uint8_t *y) {
    enum { V = QK__POOL_ROW / 64 };
    const size_t n = h * w, nv = (n + 63) / 64;
    __mmask64 first[V], last[V]; /* lanes in a row's first / last column */
    for (size_t k = 0; k < nv; k++) {
        first[k] = last[k] = 0;
        for (size_t j = 0, c = (64 * k) % w; j < 64; j++, c = c + 1 == w ? 0 : c + 1) {
            if (c == 0) first[k] |= (__mmask64)1 << j;
            if (c == w - 1) last[k] |= (__mmask64)1 << j;
        }
    }
    const __m512i flip = _mm512_set1_epi8(s8 ? (char)0x80 : 0);
    /* v[64 + i]: vertical maximum of element i (flipped); one vector either side for the
     * shifted loads (their out-of-plane lanes are masked) */
    uint8_t vb[QK__POOL_ROW + 192] __attribute__((aligned(64)));
    uint8_t *v = vb + 64;
    for (size_t p = 0; p < planes; p++, x += n, y += n) {
        for (size_t k = 0; k < nv; k++) {
            const size_t o = 64 * k, left = n - o;
            const __mmask64 m = left >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << left) - 1;
            /* lanes with a row above (i >= w) and below (i + w < n) */
            const __mmask64 mu = o >= w ? m : w - o >= 64 ? 0 : m & (~(__mmask64)0 << (w - o));
            const __mmask64 md = left <= w ? 0 : left - w >= 64 ? m : ((__mmask64)1 << (left - w)) - 1;
            __m512i c = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x + o), flip);
            c = _mm512_max_epu8(
                c, _mm512_maskz_mov_epi8(mu, _mm512_xor_si512(
                                                 _mm512_maskz_loadu_epi8(mu, x + o - w), flip)));
            c = _mm512_max_epu8(
                c, _mm512_maskz_mov_epi8(md, _mm512_xor_si512(
                                                 _mm512_maskz_loadu_epi8(md, x + o + w), flip)));
            _mm512_store_si512((void *)(v + o), c);
        }
        for (size_t k = 0; k < nv; k++) {
            const size_t o = 64 * k, left = n - o;
            const __mmask64 m = left >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << left) - 1;
            __m512i c = _mm512_load_si512((const void *)(v + o));
            c = _mm512_max_epu8(c, _mm512_maskz_loadu_epi8(m & ~first[k], v + o - 1));
            c = _mm512_max_epu8(c, _mm512_maskz_loadu_epi8(m & ~last[k], v + o + 1));
            _mm512_mask_storeu_epi8(y + o, m, _mm512_xor_si512(c, flip));
        }
    }
}
#endif

static void qk__maxpool_narrow(const uint8_t *x, size_t planes, size_t h, size_t w, size_t kh,
                               size_t kw, size_t sh, size_t sw, size_t ph, size_t pw, size_t dh,
                               size_t dw, size_t oh, size_t ow, int s8, uint8_t *y) {
#if QK_X86
    qk__maxpool_narrow_vbmi(x, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, s8, y);
#else
    (void)x, (void)planes, (void)h, (void)w, (void)kh, (void)kw, (void)sh, (void)sw, (void)ph;
    (void)pw, (void)dh, (void)dw, (void)oh, (void)ow, (void)s8, (void)y;
#endif
}

/* Planes with rows at most this wide take the flat 3x3 / 1 / 1 path instead of the narrow one
 * (one output row a vector). CPU time of the pooling alone, uint8, narrow -> flat: 192x28x28
 * 28.3 -> 11.8 us, 256x28x28 46.0 -> 15.4, 480x14x14 35.4 -> 10.5, 832x7x7 30.7 -> 10.3,
 * 64x35x35 12.0 -> 7.0, 32x56x56 9.9 -> 9.9 (rows that nearly fill a vector: a tie). */
enum { QK__FLAT_MAX_W = 64 };

static void qk__maxpool3s1_flat(const uint8_t *x, size_t planes, size_t h, size_t w, int s8,
                                uint8_t *y) {
#if QK_X86
    qk__maxpool3s1_flat_avx512(x, planes, h, w, s8, y);
#else
    (void)x, (void)planes, (void)h, (void)w, (void)s8, (void)y;
#endif
}

#define QK__MAXPOOL(T, TMIN)                                                                     \
    static void qk__maxpool_##T(const T *x, size_t planes, size_t h, size_t w, size_t kh,       \
                                size_t kw, size_t sh, size_t sw, size_t ph, size_t pw, size_t dh, \
                                size_t dw, size_t oh, size_t ow, T *y) {                        \
        if (QK_X86 && qk__level() >= QK_LEVEL_AVX512 && kh == 3 && kw == 3 && sh == 1 &&      \
            sw == 1 && ph == 1 && pw == 1 && dh == 1 && dw == 1 && oh == h && ow == w &&        \
            w <= QK__FLAT_MAX_W && h >= 1 && w >= 1 && h <= QK__POOL_ROW / w) {                 \
            qk__maxpool3s1_flat((const uint8_t *)x, planes, h, w, (T)-1 < 0, (uint8_t *)y);     \
            return;                                                                             \
        }                                                                                       \
        if (QK_X86 && qk__level() >= QK_LEVEL_AVX512VBMI && w <= 128 && ow <= 64 &&            \
            kw <= QK__MAX_NARROW_KW) {                                                          \
            qk__maxpool_narrow((const uint8_t *)x, planes, h, w, kh, kw, sh, sw, ph, pw, dh,    \
                               dw, oh, ow, (T)-1 < 0, (uint8_t *)y);                            \
            return;                                                                             \
        }                                                                                       \
        if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && dh == 1 &&       \
            dw == 1 && 2 * oh <= h && 2 * ow <= w) {                                            \
            /* the common 2x2 / stride 2 window, every tap in bounds */                        \
            for (size_t p = 0; p < planes; p++) {                                               \
                const T *xp = x + p * h * w;                                                    \
                for (size_t i = 0; i < oh; i++) {                                               \
                    const T *r0 = xp + 2 * i * w, *r1 = r0 + w;                                 \
                    for (size_t j = 0; j < ow; j++) {                                           \
                        const T a = r0[2 * j] > r0[2 * j + 1] ? r0[2 * j] : r0[2 * j + 1];      \
                        const T b = r1[2 * j] > r1[2 * j + 1] ? r1[2 * j] : r1[2 * j + 1];      \
                        y[j] = a > b ? a : b;                                                   \
                    }                                                                           \
                    y += ow;                                                                    \
                }                                                                               \
            }                                                                                   \
            return;                                                                             \
        }                                                                                       \
        if (kh == 3 && kw == 3 && sh == 1 && sw == 1 && ph == 1 && pw == 1 && dh == 1 &&       \
            dw == 1 && oh == h && ow == w && h >= 1 && w >= 1 && h <= QK__POOL_ROW / w) {        \
            /* 3x3, stride 1, padding 1 over small planes: whole planes at once */              \
            uint8_t t[QK__POOL_ROW];                                                            \
            for (size_t p = 0; p < planes; p++)                                                 \
                qk__maxpool3s1_plane((const uint8_t *)(x + p * h * w), h, w, (T)-1 < 0, t,      \
                                     (uint8_t *)(y + p * h * w));                                \
            return;                                                                             \
        }                                                                                       \
        if (w >= 1 && w <= QK__POOL_ROW) { /* by rows: a vertical pass, then the columns */      \
            qk__maxpool_rows_##T(x, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, y);    \
            return;                                                                             \
        }                                                                                       \
        for (size_t p = 0; p < planes; p++) {                                                   \
            const T *xp = x + p * h * w;                                                        \
            for (size_t i = 0; i < oh; i++) {                                                   \
                size_t a0, a1;                                                                  \
                qk__taps(i, sh, ph, dh, kh, h, &a0, &a1);                                       \
                for (size_t j = 0; j < ow; j++) {                                               \
                    size_t b0, b1;                                                              \
                    qk__taps(j, sw, pw, dw, kw, w, &b0, &b1);                                   \
                    T m = TMIN;                                                                 \
                    for (size_t a = a0; a < a1; a++) {                                          \
                        const T *row = xp + (i * sh + a * dh - ph) * w;                         \
                        for (size_t b = b0; b < b1; b++) /* in-bounds columns only */           \
                            if (row[j * sw + b * dw - pw] > m) m = row[j * sw + b * dw - pw];   \
                    }                                                                           \
                    *y++ = m;                                                                   \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }
QK__MAXPOOL(uint8_t, 0)
QK__MAXPOOL(int8_t, INT8_MIN)

qk_status qk_qmax_pool2d(const void *x, qk_dtype t, size_t planes, size_t h, size_t w, size_t kh,
                         size_t kw, size_t sh, size_t sw, size_t ph, size_t pw, size_t dh,
                         size_t dw, size_t oh, size_t ow, void *y) {
    if ((t != QK_DT_U8 && t != QK_DT_S8) || kh == 0 || kw == 0 || sh == 0 || sw == 0 ||
        dh == 0 || dw == 0)
        return QK_ERR_ARG;
    /* the arrays, and every window coordinate (last window start plus its dilated extent, the
     * padded extent plus a dilation step) must fit: no wrapped index */
    size_t v, e;
    if (!qk__sz_mul4(planes, h, w, 1, &v) || !qk__sz_mul4(planes, oh, ow, 1, &v) ||
        !qk__sz_add(h, ph, &v) || !qk__sz_add(v, dh, &v) || !qk__sz_add(w, pw, &v) ||
        !qk__sz_add(v, dw, &v) ||
        (oh > 0 && (!qk__sz_mul(oh - 1, sh, &v) || !qk__sz_mul(kh - 1, dh, &e) ||
                    !qk__sz_add(v, e, &v))) ||
        (ow > 0 && (!qk__sz_mul(ow - 1, sw, &v) || !qk__sz_mul(kw - 1, dw, &e) ||
                    !qk__sz_add(v, e, &v))))
        return QK_ERR_ARG;
    if (planes * oh * ow == 0) return QK_OK; /* no output: no loop over the other sizes */
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    if (t == QK_DT_U8)
        qk__maxpool_uint8_t((const uint8_t *)x, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh,
                            ow, (uint8_t *)y);
    else
        qk__maxpool_int8_t((const int8_t *)x, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh,
                           ow, (int8_t *)y);
    return QK_OK;
}

/* RNE(sum / count): the quotient of two integers below 2^53 is correctly rounded in double. */
static inline double qk__avg(int64_t s, size_t count) { return nearbyint((double)s / (double)count); }

#define QK__AVGPOOL(T)                                                                           \
    static void qk__avgpool_##T(const T *x, size_t planes, size_t h, size_t w, size_t oh,       \
                                size_t ow, T *y) {                                              \
        if (oh == 1 && ow == 1 && h * w <= ((size_t)1 << 23)) { /* global: int32 sums */        \
            const size_t hw = h * w;                                                            \
            for (size_t p = 0; p < planes; p++) {                                               \
                const T *xp = x + p * hw;                                                       \
                int32_t s = 0;                                                                  \
                for (size_t a = 0; a < hw; a++) s += xp[a];                                     \
                y[p] = (T)qk__avg(s, hw);                                                       \
            }                                                                                   \
            return;                                                                             \
        }                                                                                       \
        for (size_t p = 0; p < planes; p++) {                                                   \
            const T *xp = x + p * h * w;                                                        \
            for (size_t i = 0; i < oh; i++) {                                                   \
                const size_t h0 = i * h / oh, h1 = ((i + 1) * h + oh - 1) / oh;                 \
                for (size_t j = 0; j < ow; j++) {                                               \
                    const size_t w0 = j * w / ow, w1 = ((j + 1) * w + ow - 1) / ow;             \
                    int64_t s = 0;                                                              \
                    for (size_t a = h0; a < h1; a++)                                            \
                        for (size_t b = w0; b < w1; b++) s += xp[a * w + b];                    \
                    *y++ = (T)qk__avg(s, (h1 - h0) * (w1 - w0));                                \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }
QK__AVGPOOL(uint8_t)
QK__AVGPOOL(int8_t)

qk_status qk_qadaptive_avg_pool2d(const void *x, qk_dtype t, size_t planes, size_t h, size_t w,
                                  size_t oh, size_t ow, void *y) {
    if ((t != QK_DT_U8 && t != QK_DT_S8) || h == 0 || w == 0) return QK_ERR_ARG;
    size_t v; /* the arrays and the window bounds (i + 1) * h, (j + 1) * w must fit */
    if (!qk__sz_mul4(planes, h, w, 1, &v) || !qk__sz_mul4(planes, oh, ow, 1, &v) ||
        !qk__sz_mul(oh, h, &v) || !qk__sz_mul(ow, w, &v))
        return QK_ERR_ARG;
    if (planes * oh * ow == 0) return QK_OK; /* no output: no loop over the other sizes */
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    if (t == QK_DT_U8)
        qk__avgpool_uint8_t((const uint8_t *)x, planes, h, w, oh, ow, (uint8_t *)y);
    else
        qk__avgpool_int8_t((const int8_t *)x, planes, h, w, oh, ow, (int8_t *)y);
    return QK_OK;
}

/* ---- average pooling (PyTorch's quantized avg_pool2d, the formulas in qkernels.h) -------- */
/* Scalar twins of qk__avg_vsum_ / qk__avg_hsum_ / qk__avg_out_ (qops_isa.h), from element k. */
static inline void qk__avg_vsum_scalar(int32_t *v, const uint8_t *x, size_t stride, size_t na,
                                       size_t k, size_t n, int s8) {
    if (s8) {
        const int8_t *xs = (const int8_t *)x;
        for (; k < n; k++) {
            int32_t acc = 0;
            for (size_t a = 0; a < na; a++) acc += xs[a * stride + k];
            v[k] = acc;
        }
    } else {
        for (; k < n; k++) {
            int32_t acc = 0;
            for (size_t a = 0; a < na; a++) acc += x[a * stride + k];
            v[k] = acc;
        }
    }
}

static inline void qk__avg_hsum_scalar(int32_t *s, const int32_t *v, size_t nb, size_t k,
                                       size_t n) {
    for (; k < n; k++) {
        int32_t acc = 0;
        for (size_t b = 0; b < nb; b++) acc += v[k + b];
        s[k] = acc;
    }
}

static inline void qk__avg_out_scalar(const int32_t *s, const int32_t *bias, const float *m,
                                      size_t k, size_t n, int vecf, int32_t zp, int s8,
                                      uint8_t *y) {
    const int32_t qmin = s8 ? INT8_MIN : 0, qmax = s8 ? INT8_MAX : UINT8_MAX;
    for (; k < n; k++) {
        const float f = (float)(s[k] + bias[k]) * m[k];
        int32_t r = vecf ? (int32_t)nearbyintf(f) + zp : (int32_t)nearbyintf(f + (float)zp);
        r = r < qmin ? qmin : r > qmax ? qmax : r;
        y[k] = s8 ? (uint8_t)(int8_t)r : (uint8_t)r;
    }
}

/* The three steps at the CPU level (qk__level(): AVX-512, AVX2, then the scalar twin). */
static void qk__avg_vsum(int32_t *v, const uint8_t *x, size_t stride, size_t na, size_t n,
                         int s8) {
    size_t k = 0;
#if QK_X86
    const qk__isa_level l = qk__level();
    if (l >= QK_LEVEL_AVX512) k = qk__avg_vsum_avx512(v, x, stride, na, n, s8);
    else if (l >= QK_LEVEL_AVX2) k = qk__avg_vsum_avx2(v, x, stride, na, n, s8);
#endif
    qk__avg_vsum_scalar(v, x, stride, na, k, n, s8);
}

static void qk__avg_hsum(int32_t *s, const int32_t *v, size_t nb, size_t n) {
    size_t k = 0;
#if QK_X86
    const qk__isa_level l = qk__level();
    if (l >= QK_LEVEL_AVX512) k = qk__avg_hsum_avx512(s, v, nb, n);
    else if (l >= QK_LEVEL_AVX2) k = qk__avg_hsum_avx2(s, v, nb, n);
#endif
    qk__avg_hsum_scalar(s, v, nb, k, n);
}

static void qk__avg_out(const int32_t *s, const int32_t *bias, const float *m, size_t n, int vecf,
                        int32_t zp, int s8, uint8_t *y) {
    size_t k = 0;
#if QK_X86
    const qk__isa_level l = qk__level();
    if (l >= QK_LEVEL_AVX512) k = qk__avg_out_avx512(s, bias, m, n, vecf, zp, s8, y);
    else if (l >= QK_LEVEL_AVX2) k = qk__avg_out_avx2(s, bias, m, n, vecf, zp, s8, y);
#endif
    qk__avg_out_scalar(s, bias, m, k, n, vecf, zp, s8, y);
}

/* Columns j of row sums v (one output row, w wide) to window sums s[j] over the in-bounds taps,
 * tap by tap (the borders and strides other than 1). */
static inline void qk__avg_cols(const int32_t *v, size_t w, size_t kw, size_t sw, size_t pw,
                                size_t j0, size_t j1, int32_t *s) {
    for (size_t j = j0; j < j1; j++) {
        /* in-bounds columns [lo, hi) of the window j*sw - pw .. + kw - 1 (kw > pw) */
        const size_t start = j * sw, lo = start > pw ? start - pw : 0,
                     hi = start + kw - pw < w ? start + kw - pw : w;
        int32_t acc = 0;
        for (size_t b = lo; b < hi; b++) acc += v[b];
        s[j] = acc;
    }
}

/* The window sums of one plane: v (oh x w) the sums over each output row's in-bounds input rows
 * (stride 1: the rows whose taps are all in bounds as one flat range), then s (oh x ow) over
 * the columns (interior columns at stride 1 as one range a row). */
static void qk__avg_plane_sums(const uint8_t *x, size_t h, size_t w, size_t kh, size_t kw,
                               size_t sh, size_t sw, size_t ph, size_t pw, size_t oh, size_t ow,
                               int s8, int32_t *v, int32_t *s) {
    /* stride 1: rows [ia, ib) have every tap in bounds (i - ph >= 0, i - ph + kh <= h) */
    size_t ia = ph, ib = h + ph >= kh ? h + ph - kh + 1 : 0;
    if (sh != 1) ib = 0;
    if (ib > oh) ib = oh;
    if (ia > ib) ia = ib;
    for (size_t i = 0; i < oh; i++) {
        if (i == ia && ib > ia) {
            qk__avg_vsum(v + ia * w, x + (ia - ph) * w, w, kh, (ib - ia) * w, s8);
            i = ib - 1;
            continue;
        }
        size_t a0, a1;
        qk__taps(i, sh, ph, 1, kh, h, &a0, &a1); /* a1 > a0: the caller checked the geometry */
        qk__avg_vsum(v + i * w, x + (i * sh + a0 - ph) * w, w, a1 - a0, w, s8);
    }
    /* interior columns [jl, jr) at stride 1: every tap in bounds */
    size_t jl = pw, jr = w + pw >= kw ? w + pw - kw + 1 : 0;
    if (sw != 1) jl = jr = 0;
    if (jr > ow) jr = ow;
    if (jl > jr) jl = jr;
    for (size_t i = 0; i < oh; i++) {
        const int32_t *vr = v + i * w;
        int32_t *sr = s + i * ow;
        qk__avg_cols(vr, w, kw, sw, pw, 0, jl, sr);
        if (jr > jl) qk__avg_hsum(sr + jl, vr + jl - pw, kw, jr - jl);
        qk__avg_cols(vr, w, kw, sw, pw, jr, ow, sr);
    }
}

/* "Same" pooling (stride 1, kh = 2 ph + 1, kw = 2 pw + 1: oh = h, ow = w; Inception's and
 * GoogLeNet's branches) of np planes at once, stacked as one image of np * h rows, every pass one
 * flat range: the rows, then the columns; then the rows and columns whose windows took a
 * neighbour plane's or row's elements (each plane's first and last ph rows, each row's first
 * and last pw columns) redone from their in-bounds taps. Small planes (5x5, 12x12) are where a
 * plane at a time spent its time in tails. */
static void qk__avg_same_sums(const uint8_t *x, size_t np, size_t h, size_t w, size_t ph,
                              size_t pw, int s8, int32_t *v, int32_t *s) {
    const size_t kh = 2 * ph + 1, kw = 2 * pw + 1, rows = np * h, nn = rows * w;
    if (rows > 2 * ph) qk__avg_vsum(v + ph * w, x, w, kh, (rows - 2 * ph) * w, s8);
    const size_t il = ph < h ? ph : h, ir = h > ph && h - ph > il ? h - ph : il;
    for (size_t p = 0; p < np; p++)
        for (size_t i = 0; i < h; i++) {
            if (i == il) i = ir; /* rows [il, ir): every tap in the plane */
            if (i >= h) break;
            /* in-bounds rows [lo, hi) of the plane */
            const size_t lo = i > ph ? i - ph : 0, hi = i + ph + 1 < h ? i + ph + 1 : h;
            const size_t r = p * h + i;
            if (w >= 16)
                qk__avg_vsum(v + r * w, x + (p * h + lo) * w, w, hi - lo, w, s8);
            else
                qk__avg_vsum_scalar(v + r * w, x + (p * h + lo) * w, w, hi - lo, 0, w, s8);
        }
    if (nn > 2 * pw) qk__avg_hsum(s + pw, v, kw, nn - 2 * pw);
    const size_t jl = pw < w ? pw : w, jr = w > pw && w - pw > jl ? w - pw : jl;
    if (pw == 1 && w >= 2) {
        /* 3 columns (Inception's and GoogLeNet's pools): a row's first and last sums are the
         * two in-bounds taps, straight-line (the tap loops of qk__avg_cols, two iterations
         * behind unpredictable bounds, took a quarter of the pool's time on 17x17 planes) */
        for (size_t r = 0; r < rows; r++) {
            const int32_t *vr = v + r * w;
            int32_t *sr = s + r * w;
            sr[0] = vr[0] + vr[1];
            sr[w - 1] = vr[w - 2] + vr[w - 1];
        }
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        qk__avg_cols(v + r * w, w, kw, 1, pw, 0, jl, s + r * w);
        qk__avg_cols(v + r * w, w, kw, 1, pw, jr, w, s + r * w);
    }
}

/* In-bounds taps and clipped window size of output index o (window o*s - p .. + k - 1, input
 * n, padding p each side). */
static inline void qk__avg_extent(size_t o, size_t s, size_t p, size_t k, size_t n,
                                  size_t *valid, size_t *pool) {
    size_t a0, a1;
    qk__taps(o, s, p, 1, k, n, &a0, &a1);
    *valid = a1 - a0;
    const size_t start = o * s, end = start + k < n + 2 * p ? start + k : n + 2 * p;
    *pool = end - start; /* padded coordinates: start < n + p, so end > start */
}

enum { QK__AVG_BLOCK = 4096 }; /* elements of the planes "same" pooling takes at once */
enum { QK__AVG_NARROW_KW = 32 }; /* the widest window of the narrow AVX-512 path */

#if QK_X86
/* Planes at most 16 wide (Inception's 12x12 and 5x5, any window of at most 32 columns), AVX-512:
 * one output row is one vector, nothing left to a tail. The row sums of its window's in-bounds
 * input rows (the difference of two running sums of the plane's rows, pre: each input row loaded
 * and widened once, not once per window that holds it; masked loads: lanes w.. are 0; the sums
 * wrap modulo 2^32 and the difference of two is the window's exact sum, which fits), then the columns by lane permutes (lane j takes
 * lane j*sw + b - pw of the row sums, 0 where that is outside the row), then the output stage
 * of qk__avg_out_ on the lanes of the row (masked store). The same sums and float steps as the
 * other paths, in another order. */
QK_TARGET_AVX512 static void qk__avg_narrow_avx512(const uint8_t *x, size_t planes, size_t c,
                                                   size_t vec_channels, size_t h, size_t w,
                                                   size_t kh, size_t kw, size_t sh, size_t sw,
                                                   size_t ph, size_t pw, size_t oh, size_t ow,
                                                   const int32_t *bias, const float *mvec,
                                                   const float *mtail, int32_t zp, int s8,
                                                   int32_t *pre, uint8_t *y) {
    const __mmask64 mw = (__mmask64)((1u << w) - 1u);
    const __mmask16 mo = (__mmask16)((1u << ow) - 1u);
    __m512i idx[QK__AVG_NARROW_KW];
    __mmask16 mk[QK__AVG_NARROW_KW];
    size_t nt = 0; /* the column taps b that reach the row for some output lane */
    for (size_t b = 0; b < kw; b++) {
        int32_t id[16];
        unsigned m = 0;
        for (size_t j = 0; j < 16; j++) {
            const size_t col = j * sw + b; /* + pw: padded coordinates */
            id[j] = 0;
            if (j < ow && col >= pw && col - pw < w) {
                id[j] = (int32_t)(col - pw);
                m |= 1u << j;
            }
        }
        if (m == 0) continue;
        idx[nt] = _mm512_loadu_si512((const void *)id);
        mk[nt++] = (__mmask16)m;
    }
    const __m512i vzp = _mm512_set1_epi32(zp), qmin = _mm512_set1_epi32(s8 ? INT8_MIN : 0),
                  qmax = _mm512_set1_epi32(s8 ? INT8_MAX : UINT8_MAX);
    const __m512 fzp = _mm512_set1_ps((float)zp);
    for (size_t p = 0; p < planes; p++) {
        const int vecf = p % c < vec_channels;
        const float *mult = vecf ? mvec : mtail;
        const uint8_t *xp = x + p * h * w;
        __m512i run = _mm512_setzero_si512();
        _mm512_storeu_si512((void *)pre, run);
        for (size_t a = 0; a < h; a++) {
            const __m128i b = _mm512_castsi512_si128(_mm512_maskz_loadu_epi8(mw, xp + a * w));
            run = _mm512_add_epi32(run, s8 ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b));
            _mm512_storeu_si512((void *)(pre + (a + 1) * 16), run);
        }
        for (size_t i = 0; i < oh; i++, y += ow) {
            const size_t start = i * sh, lo = start > ph ? start - ph : 0,
                         hi = start + kh - ph < h ? start + kh - ph : h;
            const __m512i v = _mm512_sub_epi32(_mm512_loadu_si512((const void *)(pre + hi * 16)),
                                               _mm512_loadu_si512((const void *)(pre + lo * 16)));
            __m512i sum = _mm512_maskz_loadu_epi32(mo, bias + i * ow);
            for (size_t t = 0; t < nt; t++)
                sum = _mm512_add_epi32(sum, _mm512_maskz_permutexvar_epi32(mk[t], idx[t], v));
            const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(sum),
                                           _mm512_maskz_loadu_ps(mo, mult + i * ow));
            __m512i r = vecf ? _mm512_add_epi32(_mm512_cvtps_epi32(f), vzp)
                             : _mm512_cvtps_epi32(_mm512_add_ps(f, fzp));
            r = _mm512_min_epi32(_mm512_max_epi32(r, qmin), qmax);
            _mm512_mask_cvtepi32_storeu_epi8(y, mo, r);
        }
    }
}
#endif

qk_status qk_qavg_pool2d(const void *x, qk_dtype t, size_t n, size_t c, size_t h, size_t w,
                         size_t kh, size_t kw, size_t sh, size_t sw, size_t ph, size_t pw,
                         size_t oh, size_t ow, int count_include_pad, int32_t divisor_override,
                         int32_t zp, size_t vec_channels, void *y) {
    if ((t != QK_DT_U8 && t != QK_DT_S8) || kh == 0 || kw == 0 || sh == 0 || sw == 0 ||
        ph > kh / 2 || pw > kw / 2 || kh > ((size_t)1 << 22) / kw || vec_channels > c)
        return QK_ERR_ARG;
    size_t planes, v, e;
    /* the arrays and the padded extents */
    if (!qk__sz_mul(n, c, &planes) || !qk__sz_mul4(planes, h, w, 1, &v) ||
        !qk__sz_mul4(planes, oh, ow, 1, &v) || !qk__sz_mul4(oh, w, 4, 1, &v) ||
        !qk__sz_mul4(oh, ow, 4, 4, &v) || !qk__sz_add(h, 2 * ph, &v) ||
        !qk__sz_add(w, 2 * pw, &v) ||
        (oh > 0 && (!qk__sz_mul(oh - 1, sh, &v) || !qk__sz_add(v, kh, &e) || v >= h + ph)) ||
        (ow > 0 && (!qk__sz_mul(ow - 1, sw, &v) || !qk__sz_add(v, kw, &e) || v >= w + pw)))
        return QK_ERR_ARG;
    if (!qk__zp8_ok(t, zp)) return QK_ERR_ZERO_POINT;
    if (planes * oh * ow == 0) return QK_OK; /* no output: no loop over the other sizes */
    if (x == NULL || y == NULL || h == 0 || w == 0) return QK_ERR_ARG;
    const int narrow = QK_X86 && qk__level() >= QK_LEVEL_AVX512 && w <= 16 && ow <= 16 &&
                       kw <= QK__AVG_NARROW_KW;
    const int same = !narrow && sh == 1 && sw == 1 && kh == 2 * ph + 1 && kw == 2 * pw + 1 &&
                     oh == h && ow == w;
    const size_t no = oh * ow;
    size_t np = same && no < QK__AVG_BLOCK ? QK__AVG_BLOCK / no : 1;
    if (np > planes) np = planes;
    /* scratch for np planes: row sums v, window sums s, then per output position -valid * zp
     * and the two multipliers (np copies of one plane's); fits: np * no <= max(4096, no) */
    const size_t nv = np * oh * w, ns = np * no;
    unsigned char *buf = (unsigned char *)malloc((nv + 4 * ns) * 4);
    if (buf == NULL) return QK_ERR_NOMEM;
    int32_t *vs = (int32_t *)buf, *ss = vs + nv, *bias = ss + ns;
    float *mvec = (float *)(bias + ns), *mtail = mvec + ns;
    for (size_t i = 0; i < oh; i++) {
        size_t vh, pool_h;
        qk__avg_extent(i, sh, ph, kh, h, &vh, &pool_h);
        for (size_t j = 0; j < ow; j++) {
            size_t vw, pool_w;
            qk__avg_extent(j, sw, pw, kw, w, &vw, &pool_w);
            const int32_t valid = (int32_t)(vh * vw);
            const int32_t d = divisor_override != 0 ? divisor_override
                              : count_include_pad   ? (int32_t)(pool_h * pool_w)
                                                    : valid;
            bias[i * ow + j] = -valid * zp;
            mvec[i * ow + j] = 1.0f / (float)d;
            mtail[i * ow + j] = (float)(1.0 / (double)d);
        }
    }
    for (size_t q = 1; q < np; q++) {
        memcpy(bias + q * no, bias, no * sizeof(int32_t));
        memcpy(mvec + q * no, mvec, no * sizeof(float));
        memcpy(mtail + q * no, mtail, no * sizeof(float));
    }
    const int s8 = t == QK_DT_S8;
    const uint8_t *xb = (const uint8_t *)x;
    uint8_t *yb = (uint8_t *)y;
#if QK_X86
    if (narrow) {
        /* h + 1 running row sums of 16 lanes */
        size_t npre;
        int32_t *pre = qk__sz_add(h, 1, &npre) && qk__sz_mul4(npre, 16, sizeof(int32_t), 1, &npre)
                           ? (int32_t *)malloc(npre)
                           : NULL;
        if (pre == NULL) {
            free(buf);
            return QK_ERR_NOMEM;
        }
        qk__avg_narrow_avx512(xb, planes, c, vec_channels, h, w, kh, kw, sh, sw, ph, pw, oh, ow,
                              bias, mvec, mtail, zp, s8, pre, yb);
        free(pre);
        free(buf);
        return QK_OK;
    }
#endif
    for (size_t p = 0; p < planes;) {
        /* np planes at most, all of one formula: up to the next image or vec_channels */
        const size_t ch = p % c, stop = ch < vec_channels ? vec_channels : c;
        const size_t m = stop - ch < np ? stop - ch : np;
        const int vecf = ch < vec_channels;
        if (same)
            qk__avg_same_sums(xb + p * h * w, m, h, w, ph, pw, s8, vs, ss);
        else
            qk__avg_plane_sums(xb + p * h * w, h, w, kh, kw, sh, sw, ph, pw, oh, ow, s8, vs, ss);
        qk__avg_out(ss, bias, vecf ? mvec : mtail, m * no, vecf, zp, s8, yb + p * no);
        p += m;
    }
    free(buf);
    return QK_OK;
}
