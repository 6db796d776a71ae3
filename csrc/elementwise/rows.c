/* rows.c -- the row kernels of the integer transformer blocks: per-row (per-token) dynamic 8-bit
 * quantization of an integer tensor and the rescale of a Linear's sums over it
 * (qkernels.transformer's token rows: row_range, row_quantize, row_rescale), the blocks'
 * residual add (qk_residual_add: two requantizations, the sum, the LayerNorm input's shift, in
 * one pass) and the attention's renormalization of P V by the row sums of P (qk_row_renorm: an
 * exact floor division done as IEEE double division, see its section). Integer results; the
 * arithmetic is stated in qkernels.h.
 *
 * Each row: its min / max (int16 or int32 lanes), its range code (j, e) and its zero point in
 * scalar C, then one fixed-point pass over the row in int64 lanes (4 on AVX2, 8 on AVX-512, the
 * loops of elementwise/rows_isa.h written once for both): the product v m of two int32 values is
 * exact in an int64 lane (_mm*_mul_epi32), the rounding shift an arithmetic shift of the exact
 * sum, the clamps int64 compares. The scalar loops are the twins (the literal statements of
 * qkernels.h); all give the same integers (tests/kernels/test_token_rows.py forces each path
 * with QKERNELS_SIMD). Rows are split over threads in blocks (a row's integers do not depend on
 * which thread runs it).
 */
#include "core/core.h"
#include "core/pool.h"
#include "elementwise/elementwise.h"

#include <string.h>

#if QK_X86
#include <immintrin.h>
#endif

/* qk_residual_add's per-column constants: the multipliers and shifts of the two single-round
 * requantizations, the output's shift (>= 0 on the SIMD path) */
typedef struct {
    const int32_t *ma, *sa, *mr, *sr, *so;
} qk__res_cols;

#define QK_TWINS_TEMPLATE "elementwise/rows_isa.h"
#include "elementwise/simd_twins.h"

/* The number of significant bits of v (0 for 0). */
static inline int qk__rows_bitlen(uint64_t v) {
    int b = 0;
    while (v) {
        b++;
        v >>= 1;
    }
    return b;
}

/* The row's lo, j, e (qkernels.h) from its min and max. */
static inline void qk__rows_code(int64_t mn, int64_t mx, int64_t *lo, int32_t *j, int32_t *e) {
    const int64_t l = mn < 0 ? mn : 0, h = mx > 0 ? mx : 0;
    const int64_t m = h - l > 1 ? h - l : 1;
    const int b = qk__rows_bitlen((uint64_t)m);
    const int ee = b - 1 - QK_ROW_MANT_BITS > 0 ? b - 1 - QK_ROW_MANT_BITS : 0;
    *lo = l;
    *j = (int32_t)(m >> ee);
    *e = ee;
}

static void qk__rows_minmax(const void *d, int is16, size_t n, int32_t *mn, int32_t *mx) {
    size_t i = 0;
    *mn = is16 ? ((const int16_t *)d)[0] : ((const int32_t *)d)[0];
    *mx = *mn;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX512)
        i = qk__rows_minmax_avx512(d, is16, n, mn, mx);
    else if (qk__level() >= QK_LEVEL_AVX2)
        i = qk__rows_minmax_avx2(d, is16, n, mn, mx);
#endif
    for (; i < n; i++) {
        const int32_t v = is16 ? ((const int16_t *)d)[i] : ((const int32_t *)d)[i];
        *mn = v < *mn ? v : *mn;
        *mx = v > *mx ? v : *mx;
    }
}

/* (v m + 2^(k-1)) >> k, k in [1, 62], |v| <= 2^32, 0 <= m < 2^31: exact in int64 */
static inline int64_t qk__rows_fx(int64_t v, int32_t m, int k) {
    return (v * m + (INT64_C(1) << (k - 1))) >> k;
}

/* ---- row_range ---------------------------------------------------------------------------- */
static qk_status qk__row_range(const void *d, int is16, size_t rows, size_t cols, int64_t *lo,
                               int32_t *j, int32_t *e) {
    size_t bytes;
    if (cols < 1 || !qk__sz_mul4(rows, cols, 4, 1, &bytes)) return QK_ERR_ARG;
    if (rows > 0 && (d == NULL || lo == NULL || j == NULL || e == NULL)) return QK_ERR_ARG;
    const size_t es = is16 ? 2 : 4;
    for (size_t r = 0; r < rows; r++) {
        int32_t mn, mx;
        qk__rows_minmax((const char *)d + r * cols * es, is16, cols, &mn, &mx);
        qk__rows_code(mn, mx, &lo[r], &j[r], &e[r]);
    }
    return QK_OK;
}

qk_status qk_row_range_s16(const int16_t *d, size_t rows, size_t cols, int64_t *lo, int32_t *j,
                           int32_t *e) {
    return qk__row_range(d, 1, rows, cols, lo, j, e);
}

qk_status qk_row_range_s32(const int32_t *d, size_t rows, size_t cols, int64_t *lo, int32_t *j,
                           int32_t *e) {
    return qk__row_range(d, 0, rows, cols, lo, j, e);
}

/* ---- row_quantize ------------------------------------------------------------------------- */
/* Rows in jobs of this many (each job's work is independent); below QK__ROWS_MT_MIN elements the
 * calling thread does it all: these passes run at well under a nanosecond an element, so a
 * MiniLM tensor (128 x 384, 128 x 1536) is a few tens of microseconds, where handing half to a
 * helper thread gains little on a quiet machine and costs CPU time (the helper's wake-up and
 * wait) on a loaded one. */
enum { QK__ROWS_JOB = 8 };
#define QK__ROWS_MT_MIN ((size_t)1 << 18)

typedef struct {
    const void *d;
    int is16;
    size_t rows, cols;
    uint8_t *x;
    int32_t *z, *j, *e;
    int32_t mt[32], st[32]; /* quantize_multiplier(255 / (j + 1)), j = 1..31 */
} qk__rowq_job;

static void qk__rowq_rows(void *ctx, size_t j0, size_t j1) {
    const qk__rowq_job *s = (const qk__rowq_job *)ctx;
    const size_t r1 = j1 * QK__ROWS_JOB < s->rows ? j1 * QK__ROWS_JOB : s->rows;
    const size_t n = s->cols, es = s->is16 ? 2 : 4;
    for (size_t r = j0 * QK__ROWS_JOB; r < r1; r++) {
        const void *row = (const char *)s->d + r * n * es;
        int32_t mn, mx, jj, ee;
        int64_t lo;
        qk__rows_minmax(row, s->is16, n, &mn, &mx);
        qk__rows_code(mn, mx, &lo, &jj, &ee);
        const int32_t m = s->mt[jj];
        const int k = 31 - (s->st[jj] - ee); /* shift s = S_j - e in [-28, 8]: k in [23, 59] */
        const int64_t zz = qk__rows_fx(-lo, m, k);
        const int32_t z = (int32_t)(zz < 0 ? 0 : (zz > 255 ? 255 : zz));
        s->z[r] = z;
        s->j[r] = jj;
        s->e[r] = ee;
        uint8_t *x = s->x + r * n;
        size_t i = 0;
#if QK_X86
        if (qk__level() >= QK_LEVEL_AVX512)
            i = qk__rows_quantize_avx512(row, s->is16, n, m, k, z, x);
        else if (qk__level() >= QK_LEVEL_AVX2)
            i = qk__rows_quantize_avx2(row, s->is16, n, m, k, z, x);
#endif
        for (; i < n; i++) {
            const int64_t v = s->is16 ? ((const int16_t *)row)[i] : ((const int32_t *)row)[i];
            const int64_t q = qk__rows_fx(v, m, k) + z;
            x[i] = (uint8_t)(q < 0 ? 0 : (q > 255 ? 255 : q));
        }
    }
}

static qk_status qk__row_quantize(const void *d, int is16, size_t rows, size_t cols, uint8_t *x,
                                  int32_t *z, int32_t *j, int32_t *e, int threads) {
    size_t bytes;
    if (cols < 1 || !qk__sz_mul4(rows, cols, 4, 1, &bytes)) return QK_ERR_ARG;
    if (rows > 0 && (d == NULL || x == NULL || z == NULL || j == NULL || e == NULL))
        return QK_ERR_ARG;
    qk__rowq_job s;
    s.d = d;
    s.is16 = is16;
    s.rows = rows;
    s.cols = cols;
    s.x = x;
    s.z = z;
    s.j = j;
    s.e = e;
    s.mt[0] = s.st[0] = 0; /* j >= 1 */
    for (int k = 1; k < 32; k++) {
        const qk_status st = qk_quantize_multiplier(255.0 / (double)(k + 1), &s.mt[k], &s.st[k]);
        if (st != QK_OK) return st; /* never: 255 / (j + 1) is in [7.9, 128) */
    }
    const size_t njobs = rows / QK__ROWS_JOB + (rows % QK__ROWS_JOB != 0);
    if (threads <= 1 || njobs < 2 || rows * cols < QK__ROWS_MT_MIN)
        qk__rowq_rows(&s, 0, njobs);
    else
        qk__parallel(njobs, threads, qk__rowq_rows, &s);
    return QK_OK;
}

qk_status qk_row_quantize_s16(const int16_t *d, size_t rows, size_t cols, uint8_t *x, int32_t *z,
                              int32_t *j, int32_t *e, int threads) {
    return qk__row_quantize(d, 1, rows, cols, x, z, j, e, threads);
}

qk_status qk_row_quantize_s32(const int32_t *d, size_t rows, size_t cols, uint8_t *x, int32_t *z,
                              int32_t *j, int32_t *e, int threads) {
    return qk__row_quantize(d, 0, rows, cols, x, z, j, e, threads);
}

/* ---- row_rescale ------------------------------------------------------------------------- */
typedef struct {
    const int32_t *acc, *z, *wsum, *j, *e, *mt, *st, *bias;
    const int32_t *om, *os; /* the output stage (NULL: int32 out) */
    int32_t ozp;
    int yt;
    size_t rows, cols;
    void *y;
    _Atomic int bad; /* some acc - z wsum outside int32 */
} qk__rowr_job;

/* One row's segment of row_rescale (the loop of qk__rowr_rows, and of qk_linear_rows' output
 * stage on the tile rows its GEMM has just written): n columns, wsum / bias / om / os already at
 * the segment's first column, the row's multiplier m and shift k = 31 - (st[j] + e). Returns 1
 * when some acc - z wsum leaves int32 (that element's y then unspecified), else 0. */
int qk__row_rescale_seg(const int32_t *acc, size_t n, int32_t z, const int32_t *wsum, int32_t m,
                        int k, const int32_t *bias, const int32_t *om, const int32_t *os,
                        int32_t ozp, int yt, void *y) {
    const int64_t omin = yt == QK_DT_U8 ? 0 : INT8_MIN, omax = yt == QK_DT_U8 ? 255 : INT8_MAX;
    int bad = 0;
    size_t i = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX512)
        i = qk__rows_rescale_avx512(acc, n, z, wsum, m, k, bias, om, os, ozp, yt, y, &bad);
    else if (qk__level() >= QK_LEVEL_AVX2)
        i = qk__rows_rescale_avx2(acc, n, z, wsum, m, k, bias, om, os, ozp, yt, y, &bad);
#endif
    for (; i < n; i++) {
        int64_t a = acc[i];
        if (wsum != NULL) {
            a -= (int64_t)z * wsum[i];
            if (a < INT32_MIN || a > INT32_MAX) {
                bad = 1;
                a = 0;
            }
        }
        int64_t v = qk__clamp64(qk__rows_fx(a, m, k), INT32_MIN, INT32_MAX);
        if (bias != NULL) v = qk__clamp64(v + bias[i], INT32_MIN, INT32_MAX);
        if (om == NULL) {
            ((int32_t *)y)[i] = (int32_t)v;
            continue;
        }
        v = qk__clamp64(qk__rows_fx(v, om[i], 31 - os[i]) + ozp, omin, omax);
        if (yt == QK_DT_U8)
            ((uint8_t *)y)[i] = (uint8_t)v;
        else
            ((int8_t *)y)[i] = (int8_t)v;
    }
    return bad;
}

static void qk__rowr_rows(void *ctx, size_t j0, size_t j1) {
    qk__rowr_job *s = (qk__rowr_job *)ctx;
    const size_t r1 = j1 * QK__ROWS_JOB < s->rows ? j1 * QK__ROWS_JOB : s->rows;
    const size_t n = s->cols, yb = s->om != NULL ? 1 : 4;
    int bad = 0;
    for (size_t r = j0 * QK__ROWS_JOB; r < r1; r++) {
        const int32_t jj = s->j[r];
        bad |= qk__row_rescale_seg(s->acc + r * n, n, s->wsum != NULL ? s->z[r] : 0, s->wsum,
                                   s->mt[jj], 31 - (s->st[jj] + s->e[r]), s->bias, s->om, s->os,
                                   s->ozp, s->yt, (char *)s->y + r * n * yb);
    }
    if (bad) s->bad = 1;
}

/* qk_row_rescale(_requantize)'s checks (qkernels.h), before anything is written; also
 * qk_linear_rows'. */
qk_status qk__row_rescale_check(size_t rows, size_t cols, const int32_t *z, const int32_t *wsum,
                                const int32_t *j, const int32_t *e, const int32_t *mt,
                                const int32_t *st, const int32_t *om, const int32_t *os,
                                int32_t ozp, qk_dtype yt) {
    size_t bytes;
    if (cols < 1 || !qk__sz_mul4(rows, cols, 4, 1, &bytes)) return QK_ERR_ARG;
    if (mt == NULL || st == NULL) return QK_ERR_ARG;
    if (rows > 0 && (j == NULL || e == NULL || (wsum != NULL && z == NULL))) return QK_ERR_ARG;
    for (int k = 1; k < 32; k++)
        if (mt[k] < 0) return QK_ERR_MULTIPLIER;
    if (om != NULL) {
        if (os == NULL || (yt != QK_DT_U8 && yt != QK_DT_S8)) return QK_ERR_ARG;
        if (yt == QK_DT_U8 ? (ozp < 0 || ozp > 255) : (ozp < INT8_MIN || ozp > INT8_MAX))
            return QK_ERR_ZERO_POINT;
        for (size_t c = 0; c < cols; c++) {
            if (om[c] < 0) return QK_ERR_MULTIPLIER;
            if (os[c] < -31 || os[c] > 30) return QK_ERR_SHIFT;
        }
    }
    /* every row's code and shift checked before anything is written */
    for (size_t r = 0; r < rows; r++) {
        if (j[r] < 1 || j[r] > 31 || e[r] < 0 || e[r] > 62) return QK_ERR_ARG;
        const int64_t s = (int64_t)st[j[r]] + e[r];
        if (s < -31 || s > 30) return QK_ERR_SHIFT;
        if (wsum != NULL && (z[r] < 0 || z[r] > 255)) return QK_ERR_ZERO_POINT;
    }
    return QK_OK;
}

static qk_status qk__row_rescale(const int32_t *acc, size_t rows, size_t cols, const int32_t *z,
                                 const int32_t *wsum, const int32_t *j, const int32_t *e,
                                 const int32_t *mt, const int32_t *st, const int32_t *bias,
                                 const int32_t *om, const int32_t *os, int32_t ozp, qk_dtype yt,
                                 void *y, int threads) {
    const qk_status cs = qk__row_rescale_check(rows, cols, z, wsum, j, e, mt, st, om, os, ozp, yt);
    if (cs != QK_OK) return cs;
    if (rows > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;
    qk__rowr_job s = {acc, z, wsum, j, e, mt, st, bias, om, os, ozp, (int)yt, rows, cols, y, 0};
    const size_t njobs = rows / QK__ROWS_JOB + (rows % QK__ROWS_JOB != 0);
    if (threads <= 1 || njobs < 2 || rows * cols < QK__ROWS_MT_MIN)
        qk__rowr_rows(&s, 0, njobs);
    else
        qk__parallel(njobs, threads, qk__rowr_rows, &s);
    return s.bad ? QK_ERR_OVERFLOW : QK_OK;
}

qk_status qk_row_rescale(const int32_t *acc, size_t rows, size_t cols, const int32_t *z,
                         const int32_t *wsum, const int32_t *j, const int32_t *e,
                         const int32_t *mt, const int32_t *st, const int32_t *bias, int32_t *y,
                         int threads) {
    return qk__row_rescale(acc, rows, cols, z, wsum, j, e, mt, st, bias, NULL, NULL, 0,
                           QK_DT_S32, y, threads);
}

qk_status qk_row_rescale_requantize(const int32_t *acc, size_t rows, size_t cols,
                                    const int32_t *z, const int32_t *wsum, const int32_t *j,
                                    const int32_t *e, const int32_t *mt, const int32_t *st,
                                    const int32_t *bias, const int32_t *out_multiplier,
                                    const int32_t *out_shift, int32_t out_zero_point,
                                    qk_dtype out_type, void *y, int threads) {
    if (out_multiplier == NULL) return QK_ERR_ARG;
    return qk__row_rescale(acc, rows, cols, z, wsum, j, e, mt, st, bias, out_multiplier,
                           out_shift, out_zero_point, out_type, y, threads);
}

/* ---- residual add ------------------------------------------------------------------------- */
typedef struct {
    const int32_t *acc;
    const void *r;
    int rt, yt;
    int32_t rzp, ozp, omin, omax;
    size_t rows, cols;
    qk__res_cols cp;
    int simd; /* every output shift >= 0 */
    void *y;
} qk__res_job;

static inline int64_t qk__res_rhu(int64_t t, int32_t sh) {
    if (sh > 0) return (t + (INT64_C(1) << (sh - 1))) >> sh;
    return t * ((int64_t)1 << -sh); /* sh <= 0: an exact left shift (|t| < 2^31, sh >= -31) */
}

static void qk__res_rows(void *ctx, size_t j0, size_t j1) {
    const qk__res_job *s = (const qk__res_job *)ctx;
    const size_t r1 = j1 * QK__ROWS_JOB < s->rows ? j1 * QK__ROWS_JOB : s->rows;
    const size_t n = s->cols;
    const size_t rb = s->rt == QK_DT_S16 ? 2 : 1, yb = s->yt == QK_DT_S16 ? 2 : 1;
    for (size_t row = j0 * QK__ROWS_JOB; row < r1; row++) {
        const int32_t *acc = s->acc + row * n;
        const void *r = (const char *)s->r + row * n * rb;
        void *y = (char *)s->y + row * n * yb;
        size_t i = 0;
#if QK_X86
        if (s->simd && qk__level() >= QK_LEVEL_AVX512)
            i = qk__res_row_avx512(&s->cp, acc, r, s->rt, s->rzp, n, y, s->yt, s->ozp, s->omin,
                                   s->omax);
        else if (s->simd && qk__level() >= QK_LEVEL_AVX2)
            i = qk__res_row_avx2(&s->cp, acc, r, s->rt, s->rzp, n, y, s->yt, s->ozp, s->omin,
                                 s->omax);
#endif
        for (; i < n; i++) {
            const int64_t a = qk__clamp64(qk__rows_fx(acc[i], s->cp.ma[i], 31 - s->cp.sa[i]),
                                          INT32_MIN, INT32_MAX);
            const int64_t rv = s->rt == QK_DT_S16 ? ((const int16_t *)r)[i]
                               : s->rt == QK_DT_S8 ? ((const int8_t *)r)[i]
                                                   : ((const uint8_t *)r)[i];
            const int64_t b = qk__clamp64(qk__rows_fx(rv - s->rzp, s->cp.mr[i], 31 - s->cp.sr[i]),
                                          INT32_MIN, INT32_MAX);
            const int64_t t = qk__clamp64(a + b, INT32_MIN, INT32_MAX);
            const int64_t v = qk__clamp64(qk__res_rhu(t, s->cp.so[i]) + s->ozp, s->omin,
                                          s->omax);
            if (s->yt == QK_DT_S16)
                ((int16_t *)y)[i] = (int16_t)v;
            else if (s->yt == QK_DT_S8)
                ((int8_t *)y)[i] = (int8_t)v;
            else
                ((uint8_t *)y)[i] = (uint8_t)v;
        }
    }
}

qk_status qk_residual_add(const int32_t *acc, const void *r, qk_dtype r_type, int32_t r_zero_point,
                          size_t rows, size_t cols, const int32_t *acc_multiplier,
                          const int32_t *acc_shift, const int32_t *r_multiplier,
                          const int32_t *r_shift, const int32_t *out_shift,
                          int32_t out_zero_point, qk_dtype out_type, void *y, int threads) {
    size_t bytes;
    if (cols < 1 || !qk__sz_mul4(rows, cols, 4, 1, &bytes)) return QK_ERR_ARG;
    if (acc_multiplier == NULL || acc_shift == NULL || r_multiplier == NULL || r_shift == NULL ||
        out_shift == NULL)
        return QK_ERR_ARG;
    if (rows > 0 && (acc == NULL || r == NULL || y == NULL)) return QK_ERR_ARG;
    int32_t rmin, rmax, omin, omax;
    switch (r_type) {
    case QK_DT_U8: rmin = 0; rmax = 255; break;
    case QK_DT_S8: rmin = INT8_MIN; rmax = INT8_MAX; break;
    case QK_DT_S16: rmin = INT16_MIN; rmax = INT16_MAX; break;
    default: return QK_ERR_ARG;
    }
    switch (out_type) {
    case QK_DT_U8: omin = 0; omax = 255; break;
    case QK_DT_S8: omin = INT8_MIN; omax = INT8_MAX; break;
    case QK_DT_S16: omin = INT16_MIN; omax = INT16_MAX; break;
    default: return QK_ERR_ARG;
    }
    if (r_zero_point < rmin || r_zero_point > rmax) return QK_ERR_ZERO_POINT;
    if (out_zero_point < omin || out_zero_point > omax) return QK_ERR_ZERO_POINT;
    int simd = 1;
    for (size_t c = 0; c < cols; c++) {
        if (acc_multiplier[c] < 0 || r_multiplier[c] < 0) return QK_ERR_MULTIPLIER;
        if (acc_shift[c] < -31 || acc_shift[c] > 30 || r_shift[c] < -31 || r_shift[c] > 30 ||
            out_shift[c] < -31 || out_shift[c] > 31)
            return QK_ERR_SHIFT;
        if (out_shift[c] < 0) simd = 0;
    }
    const qk__res_job s = {acc,  r,    (int)r_type, (int)out_type, r_zero_point, out_zero_point,
                           omin, omax, rows,        cols,          {acc_multiplier, acc_shift,
                                                                   r_multiplier, r_shift, out_shift},
                           simd, y};
    const size_t njobs = rows / QK__ROWS_JOB + (rows % QK__ROWS_JOB != 0);
    if (threads <= 1 || njobs < 2 || rows * cols < QK__ROWS_MT_MIN)
        qk__res_rows((void *)&s, 0, njobs);
    else
        qk__parallel(njobs, threads, qk__res_rows, (void *)&s);
    return QK_OK;
}

/* ---- the attention's renormalization ------------------------------------------------------ */
/* qk_row_renorm: per row, rs = sum_j p (int64, > 0) and y = floor((512 acc + rs) / (2 rs)).
 *
 * Why doubles give floor division's integer (for rs < 2^40, i.e. below 2^32 columns of p; a
 * longer row takes the int64 division): acc is int32, so a = 512 acc + rs (|a| < 2^41) and
 * d = 2 rs (< 2^41) are integers exact in a double (below 2^53), and the one rounding is the
 * quotient's, q = fl(a / d) (round to nearest). With x = a / d and f = floor(x): f is an integer
 * of magnitude < 2^42, exact, and x >= f, so q >= f (rounding is monotone). If x is an integer,
 * q = x. Otherwise x is at least 1/d below f + 1 (x d = a is an integer), while f + 1 and every
 * value between x and it have magnitude at most |f| + 1, whose half ulp is at most
 * (|f| + 1) 2^-53 <= (|a| + 2 d) / d 2^-53 < 2^43 / d 2^-53 < 1 / d: so q < f + 1 (nor does a
 * nonzero x round to 0: |x| >= 1 / d is a normal double). floor(q) = f. The AVX-512 / AVX2 lanes
 * do the same IEEE operations (int32 -> double, x 512, + rs, / 2 rs, floor: the same bits, the
 * compiler may not contract the multiply and add into anything inexact: 512 acc is exact), then
 * int32 when f fits (QK_ERR_OVERFLOW otherwise). */
typedef struct {
    const int32_t *acc;
    const uint8_t *p;
    size_t rows, cols, n;
    int32_t *y;
    _Atomic int bad;  /* some quotient outside int32 */
    _Atomic int zero; /* some row of p sums to 0 */
} qk__renorm_job;

#define QK__RENORM_F64_MAX (INT64_C(1) << 40) /* rs below this: the double path */

static void qk__renorm_rows(void *ctx, size_t j0, size_t j1) {
    qk__renorm_job *s = (qk__renorm_job *)ctx;
    const size_t r1 = j1 * QK__ROWS_JOB < s->rows ? j1 * QK__ROWS_JOB : s->rows;
    const size_t n = s->n, cols = s->cols;
    int bad = 0, zero = 0;
    for (size_t r = j0 * QK__ROWS_JOB; r < r1; r++) {
        const uint8_t *p = s->p + r * n;
        const int32_t *acc = s->acc + r * cols;
        int32_t *y = s->y + r * cols;
        int64_t rs = 0;
        size_t i = 0;
#if QK_X86
        if (qk__level() >= QK_LEVEL_AVX512)
            i = qk__rows_usum_avx512(p, n, &rs);
        else if (qk__level() >= QK_LEVEL_AVX2)
            i = qk__rows_usum_avx2(p, n, &rs);
#endif
        for (; i < n; i++) rs += p[i];
        if (rs <= 0) {
            zero = 1;
            continue;
        }
        if (rs >= QK__RENORM_F64_MAX) { /* int64 floor division (|512 acc + rs| < 2^57) */
            for (size_t c = 0; c < cols; c++) {
                const int64_t a = (int64_t)acc[c] * 512 + rs, d = 2 * rs;
                int64_t q = a / d;
                if (a % d != 0 && a < 0) q--;
                if (q < INT32_MIN || q > INT32_MAX) bad = 1;
                else y[c] = (int32_t)q;
            }
            continue;
        }
        const double rd = (double)rs, dd = 2.0 * (double)rs;
        size_t c = 0;
#if QK_X86
        if (qk__level() >= QK_LEVEL_AVX512)
            c = qk__rows_renorm_avx512(acc, cols, rd, dd, y, &bad);
        else if (qk__level() >= QK_LEVEL_AVX2)
            c = qk__rows_renorm_avx2(acc, cols, rd, dd, y, &bad);
#endif
        for (; c < cols; c++) {
            const double a = (double)acc[c] * 512.0;
            const double t = floor((a + rd) / dd);
            if (t < (double)INT32_MIN || t > (double)INT32_MAX) bad = 1;
            else y[c] = (int32_t)t;
        }
    }
    if (bad) s->bad = 1;
    if (zero) s->zero = 1;
}

qk_status qk_row_renorm(const int32_t *acc, size_t rows, size_t cols, const uint8_t *p, size_t n,
                        int32_t *y, int threads) {
    size_t bytes;
    if (cols < 1 || n < 1 || n > ((size_t)1 << 48) || !qk__sz_mul4(rows, cols, 4, 1, &bytes) ||
        !qk__sz_mul4(rows, n, 1, 1, &bytes))
        return QK_ERR_ARG;
    if (rows > 0 && (acc == NULL || p == NULL || y == NULL)) return QK_ERR_ARG;
    qk__renorm_job s = {acc, p, rows, cols, n, y, 0, 0};
    const size_t njobs = rows / QK__ROWS_JOB + (rows % QK__ROWS_JOB != 0);
    if (threads <= 1 || njobs < 2 || rows * (cols + n) < QK__ROWS_MT_MIN)
        qk__renorm_rows(&s, 0, njobs);
    else
        qk__parallel(njobs, threads, qk__renorm_rows, &s);
    if (s.zero) return QK_ERR_ARG;
    return s.bad ? QK_ERR_OVERFLOW : QK_OK;
}
