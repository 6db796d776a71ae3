/* layernorm.c -- integer LayerNorm on PTF-quantized uint8 input, int8 output (SPEC section 7).
 *
 * Two methods share one output stage: `exact` (exact int64 sums, integer square root by Newton,
 * a dyadic per-token reciprocal) and `sole` (SOLE's AILayerNorm: 4-bit dynamic compression of
 * the squares, a 16-entry square table, a 256-entry inverse-square-root table, int8 gamma and
 * beta). All float work happens in qk_layernorm_prepare(); the kernels are integer-only.
 * The statistics and the output stage (int64 lanes) have AVX2 and AVX-512 loops, written once
 * (layernorm_isa.h), and, on AVX-512 for F in [32, 52], the output stage a faster form in int32
 * lanes (qk__ln_fast_avx512);
 * beside their scalar twins all give the same integers (tests/kernels/test_layernorm.py forces
 * each path with QKERNELS_SIMD).
 * The formulas and bit widths are documented in qkernels.h.
 */
#include "core/core.h"
#include "core/pool.h"

#include <string.h>

#if QK_X86
#include <immintrin.h>
#endif

enum { QK__LN_ZF = 16 };                  /* fraction bits of the normalized value z */
#define QK__LN_ZMAX (INT64_C(1) << 24)    /* |z| clamp (only the sole method can reach it) */

/* Round half up of v / 2^n, n >= 0 (arithmetic shift). */
static inline int64_t qk__rhu64(int64_t v, int n) {
    return n <= 0 ? v : (v + (INT64_C(1) << (n - 1))) >> n;
}

/* The number of significant bits of v (0 for 0): one instruction where the compiler has it. */
static inline int qk__bitlen64(uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
    return v ? 64 - __builtin_clzll(v) : 0;
#else
    int b = 0;
    while (v) {
        b++;
        v >>= 1;
    }
    return b;
#endif
}

/* Newton's start for n in [2^59, 2^61) (the exact LayerNorm's D << 2j): ceil(sqrt((k + 65) 2^53))
 * for n in [(k + 64) 2^53, (k + 65) 2^53), k = 0..191, so within 2^-7 above sqrt(n): two
 * divisions where 2^ceil(bitlen/2) took five or six (checked at every bucket's edges in
 * tests/c/test_ptf.c; made by [math.isqrt(((k + 65) << 53) - 1) + 1 for k in range(192)]). */
static const uint32_t qk__isqrt_start[192] = {
    765158776u, 771022147u, 776841265u, 782617116u, 788350651u, 794042788u,
    799694409u, 805306368u, 810879489u, 816414567u, 821912371u, 827373642u,
    832799101u, 838189443u, 843545341u, 848867446u, 854156391u, 859412788u,
    864637230u, 869830293u, 874992536u, 880124501u, 885226714u, 890299688u,
    895343920u, 900359891u, 905348073u, 910308921u, 915242881u, 920150385u,
    925031854u, 929887697u, 934718315u, 939524096u, 944305420u, 949062657u,
    953796166u, 958506299u, 963193399u, 967857801u, 972499832u, 977119809u,
    981718046u, 986294845u, 990850503u, 995385312u, 999899554u, 1004393507u,
    1008867443u, 1013321625u, 1017756314u, 1022171764u, 1026568222u, 1030945931u,
    1035305130u, 1039646051u, 1043968922u, 1048273967u, 1052561404u, 1056831448u,
    1061084308u, 1065320190u, 1069539296u, 1073741824u, 1077927968u, 1082097918u,
    1086251860u, 1090389977u, 1094512449u, 1098619452u, 1102711159u, 1106787739u,
    1110849359u, 1114896183u, 1118928370u, 1122946079u, 1126949465u, 1130938679u,
    1134913871u, 1138875188u, 1142822774u, 1146756771u, 1150677319u, 1154584553u,
    1158478610u, 1162359621u, 1166227717u, 1170083026u, 1173925674u, 1177755784u,
    1181573479u, 1185378878u, 1189172100u, 1192953261u, 1196722475u, 1200479855u,
    1204225511u, 1207959552u, 1211682087u, 1215393220u, 1219093056u, 1222781697u,
    1226459244u, 1230125797u, 1233781454u, 1237426311u, 1241060463u, 1244684005u,
    1248297029u, 1251899625u, 1255491884u, 1259073894u, 1262645742u, 1266207514u,
    1269759295u, 1273301169u, 1276833218u, 1280355523u, 1283868165u, 1287371222u,
    1290864773u, 1294348895u, 1297823664u, 1301289154u, 1304745439u, 1308192593u,
    1311630687u, 1315059793u, 1318479980u, 1321891318u, 1325293875u, 1328687719u,
    1332072916u, 1335449532u, 1338817632u, 1342177280u, 1345528540u, 1348871473u,
    1352206142u, 1355532607u, 1358850929u, 1362161168u, 1365463382u, 1368757629u,
    1372043966u, 1375322451u, 1378593139u, 1381856086u, 1385111347u, 1388358974u,
    1391599023u, 1394831546u, 1398056594u, 1401274220u, 1404484474u, 1407687408u,
    1410883070u, 1414071510u, 1417252777u, 1420426920u, 1423593985u, 1426754020u,
    1429907071u, 1433053185u, 1436192407u, 1439324783u, 1442450356u, 1445569171u,
    1448681272u, 1451786702u, 1454885503u, 1457977718u, 1461063388u, 1464142556u,
    1467215261u, 1470281545u, 1473341448u, 1476395008u, 1479442267u, 1482483261u,
    1485518030u, 1488546613u, 1491569045u, 1494585366u, 1497595612u, 1500599818u,
    1503598023u, 1506590261u, 1509576567u, 1512556978u, 1515531528u, 1518500250u};

uint64_t qk_isqrt_u64(uint64_t n) {
    if (n < 2) return n;
    /* Newton's step x -> floor((x + floor(n / x)) / 2) never goes below floor(sqrt(n)) (AM-GM),
     * and from above it decreases monotonically to it (I-BERT int_sqrt). */
    if (n >> 59 != 0 && n >> 61 == 0) {
        /* From the table's start (relative error e <= 2^-7), two steps (e -> e^2 / 2) leave
         * x - sqrt(n) <= 2^-31 sqrt(n) < 1 (sqrt(n) < 2^30.5): x is floor(sqrt(n)) or one more. */
        uint64_t x = qk__isqrt_start[(n >> 53) - 64];
        x = (x + n / x) >> 1;
        x = (x + n / x) >> 1;
        return x * x > n ? x - 1 : x;
    }
    uint64_t x = UINT64_C(1) << ((qk__bitlen64(n) + 1) / 2); /* >= sqrt(n) */
    for (;;) {
        const uint64_t y = (x + n / x) >> 1;
        if (y >= x) return x;
        x = y;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Prepare                                                                                    */
/* ---------------------------------------------------------------------------------------- */
static int qk__fits(double v, double limit) { return fabs(v) + 0.5 < limit; }

qk_status qk_layernorm_prepare(qk_layernorm_params *p, qk_layernorm_method method,
                               size_t channels, float in_scale, const int32_t *alpha,
                               int32_t in_zero_point, const float *gamma, const float *beta,
                               float eps, float out_scale, int32_t out_zero_point,
                               int32_t *gamma_buf, int64_t *beta_buf, uint8_t *alpha_buf) {
    if (p == NULL || gamma == NULL || beta == NULL || alpha == NULL || gamma_buf == NULL ||
        beta_buf == NULL || alpha_buf == NULL)
        return QK_ERR_ARG;
    if (method != QK_LAYERNORM_EXACT && method != QK_LAYERNORM_SOLE_ROUND &&
        method != QK_LAYERNORM_SOLE_TRUNCATE)
        return QK_ERR_ARG;
    if (channels < 1 || channels > QK_LAYERNORM_MAX_CHANNELS) return QK_ERR_ARG;
    if (!qk__scale_ok(in_scale) || !qk__scale_ok(out_scale)) return QK_ERR_SCALE;
    if (!isfinite(eps) || eps < 0.0f) return QK_ERR_ARG;
    if (in_zero_point < 0 || in_zero_point > 255) return QK_ERR_ZERO_POINT;
    if (out_zero_point < INT8_MIN || out_zero_point > INT8_MAX) return QK_ERR_ZERO_POINT;
    double gmax = 0.0, bmax = 0.0;
    for (size_t c = 0; c < channels; c++) {
        if (alpha[c] < 0 || alpha[c] > QK_PTF_MAX_ALPHA) return QK_ERR_SHIFT;
        if (!isfinite(gamma[c]) || !isfinite(beta[c])) return QK_ERR_ARG;
        if (fabs((double)gamma[c]) > gmax) gmax = fabs((double)gamma[c]);
        if (fabs((double)beta[c]) > bmax) bmax = fabs((double)beta[c]);
    }
    const double C = (double)channels, os = (double)out_scale;
    const double e_int = (double)eps * C * C / ((double)in_scale * (double)in_scale);
    if (!(e_int < 0x1p60)) return QK_ERR_ARG;

    /* Per-channel factors in units of the output scale, and the largest Gf that fits. */
    float gs = 0.0f, bs = 0.0f;
    double gunit, bunit; /* magnitude bounds of G_i / 2^Gf and B_i / 2^(16+Gf) */
    if (method == QK_LAYERNORM_EXACT) {
        gunit = gmax / os;
        bunit = bmax / os;
    } else {
        gs = gmax > 0.0 ? (float)(gmax / 127.0) : 1.0f;
        bs = bmax > 0.0 ? (float)(bmax / 127.0) : 1.0f;
        if (!qk__scale_ok(gs) || !qk__scale_ok(bs)) return QK_ERR_SCALE;
        gunit = 127.0 * ((double)gs / os);
        bunit = 127.0 * ((double)bs / os);
    }
    int gf = -1;
    for (int f = 40; f >= 0; f--) {
        if (qk__fits(gunit * ldexp(1.0, f), 0x1p30) &&
            qk__fits(bunit * ldexp(1.0, QK__LN_ZF + f), 0x1p60)) {
            gf = f;
            break;
        }
    }
    if (gf < 0) return QK_ERR_SCALE;

    /* Everything checked: fill the buffers and the struct. */
    p->method = (int32_t)method;
    p->channels = (int32_t)channels;
    p->in_zero_point = in_zero_point;
    p->out_zero_point = out_zero_point;
    p->out_qmin = INT8_MIN;
    p->out_qmax = INT8_MAX;
    p->shift = QK__LN_ZF + gf;
    p->eps_term = (int64_t)qk__rhaz(e_int);
    p->sole_gamma_scale = gs;
    p->sole_beta_scale = bs;
    for (size_t c = 0; c < channels; c++) alpha_buf[c] = (uint8_t)alpha[c];
    for (int m = 0; m < 256; m++)
        p->inv_sqrt_lut[m] = method == QK_LAYERNORM_EXACT || m == 0
                                 ? 0u
                                 : (uint32_t)qk__rhaz(65536.0 / sqrt((double)m));
    if (method == QK_LAYERNORM_EXACT) {
        p->gamma_multiplier = 1;
        p->beta_multiplier = 1;
        for (size_t c = 0; c < channels; c++) {
            gamma_buf[c] = (int32_t)qk__rhaz((double)gamma[c] / os * ldexp(1.0, gf));
            beta_buf[c] = (int64_t)qk__rhaz((double)beta[c] / os * ldexp(1.0, QK__LN_ZF + gf));
        }
    } else {
        p->gamma_multiplier = (int64_t)qk__rhaz((double)gs / os * ldexp(1.0, gf));
        p->beta_multiplier = (int64_t)qk__rhaz((double)bs / os * ldexp(1.0, QK__LN_ZF + gf));
        for (size_t c = 0; c < channels; c++) {
            gamma_buf[c] = (int32_t)qk__clampd(qk__rhaz((double)gamma[c] / (double)gs), -127, 127);
            beta_buf[c] = (int64_t)qk__clampd(qk__rhaz((double)beta[c] / (double)bs), -127, 127);
        }
    }
    p->alpha = alpha_buf;
    p->gamma = gamma_buf;
    p->beta = beta_buf;
    return QK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Kernels                                                                                    */
/* ---------------------------------------------------------------------------------------- */
static qk_status qk__ln_check(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                              const void *y) {
    if (p == NULL || p->alpha == NULL || p->gamma == NULL || p->beta == NULL) return QK_ERR_ARG;
    if (p->channels < 1 || p->channels > QK_LAYERNORM_MAX_CHANNELS) return QK_ERR_ARG;
    if (p->shift < QK__LN_ZF || p->shift > QK__LN_ZF + 40 || p->eps_term < 0) return QK_ERR_ARG;
    if (p->in_zero_point < 0 || p->in_zero_point > 255) return QK_ERR_ZERO_POINT;
    if (p->out_qmin < INT8_MIN || p->out_qmax > INT8_MAX || p->out_qmin > p->out_qmax)
        return QK_ERR_QRANGE;
    if (p->out_zero_point < p->out_qmin || p->out_zero_point > p->out_qmax)
        return QK_ERR_ZERO_POINT;
    if (tokens > 0 && (q == NULL || y == NULL)) return QK_ERR_ARG;
    size_t bytes; /* tokens x channels (and per-token int64 statistics) must be addressable */
    if (!qk__sz_mul4(tokens, (size_t)p->channels, sizeof(int64_t), 1, &bytes)) return QK_ERR_ARG;
    /* The bounds the int64 arithmetic relies on (prepare guarantees them; a struct filled by
     * hand is checked too): |G_i| < 2^30, |B_i| < 2^60, alpha <= 7, lut[m] <= 2^16, E <= 2^60.
     * O(channels) per call, small next to the tokens * channels of the kernel. */
    const int64_t gm = p->gamma_multiplier, bm = p->beta_multiplier;
    const int64_t lim30 = INT64_C(1) << 30, lim60 = INT64_C(1) << 60;
    if (gm < 0 || gm >= lim30 || bm < 0 || bm >= lim60 || p->eps_term > lim60) return QK_ERR_ARG;
    /* |b| * bm < 2^60 iff |b| <= (2^60 - 1) / bm: the division once, not once a channel */
    const int64_t bq = bm > 0 ? (lim60 - 1) / bm : INT64_MAX;
    for (int32_t c = 0; c < p->channels; c++) {
        const int64_t g = p->gamma[c] < 0 ? -(int64_t)p->gamma[c] : p->gamma[c];
        const int64_t b = p->beta[c];
        if (p->alpha[c] > QK_PTF_MAX_ALPHA || g * gm >= lim30) return QK_ERR_ARG;
        if (b <= -lim60 || b >= lim60 || (b < 0 ? -b : b) > bq) return QK_ERR_ARG;
    }
    for (int m = 0; m < 256; m++)
        if (p->inv_sqrt_lut[m] > 65536u) return QK_ERR_ARG;
    return QK_OK;
}

/* A block of n channels of the output stage: their exponents and factors G_i = gamma_i *
 * gamma_multiplier (|G_i| < 2^30) and B_i = beta_i * beta_multiplier (|B_i| < 2^60), as
 * qk__ln_check bounds them. */
typedef struct {
    const uint8_t *alpha;
    const int32_t *g;
    const int64_t *b;
    int32_t n;
} qk__ln_factors;

/* The statistics of both methods and the int64-lane output stage, once per ISA
 * (elementwise/layernorm_isa.h): qk__ln_sums_<isa>, qk__ln_sole_sums_<isa>, qk__ln_output_<isa>. */
#define QK_TWINS_TEMPLATE "elementwise/layernorm_isa.h"
#include "elementwise/simd_twins.h"

/* The per-row statistics: S1 and D (before E) of the method. One pass over the row; the
 * parameters are copied to locals first (the int8 output may alias anything, so reading them
 * through p in the loops would reload them on every element). With xb (AVX-512 only), the row's
 * x_i (int16) are also stored there for the output stage, channels [0, C & ~15). */
static inline void qk__ln_row_stats(const qk_layernorm_params *p, const uint8_t *q, int64_t *s1_out,
                                    int64_t *d_out, int16_t *xb, int32_t steps) {
    const int32_t C = p->channels, zp = p->in_zero_point;
    const uint8_t *alpha = p->alpha;
    int64_t s1 = 0;
    if (p->method == QK_LAYERNORM_EXACT) {
        int64_t s2 = 0;
        int32_t c0 = 0;
#if QK_X86
        if (qk__level() >= QK_LEVEL_AVX512)
            c0 = qk__ln_sums_avx512(q, alpha, C, zp, &s1, &s2, xb, steps);
        if (qk__level() >= QK_LEVEL_AVX2)
            c0 += qk__ln_sums_avx2(q + c0, alpha + c0, C - c0, zp, &s1, &s2,
                                   xb != NULL ? xb + c0 : NULL, steps);
#endif
        for (int32_t c = c0; c < C; c++) {
            /* |x| <= 255 * 2^7 < 2^15, so x and x^2 (< 2^30) are int32 */
            const int32_t x = ((int32_t)q[c] - zp) * (1 << alpha[c]);
            s1 += x;
            s2 += (int64_t)(x * x);
        }
        *s1_out = s1;
        *d_out = (int64_t)C * s2 - s1 * s1;
        return;
    }
    /* sole: 4-bit compression of |q - zp|, squares from a 16-entry table */
    static const uint8_t sq[16] = {0, 1, 4, 9, 16, 25, 36, 49, 64, 81, 100, 121, 144, 169, 196, 225};
    const uint32_t rnd_hi = p->method == QK_LAYERNORM_SOLE_ROUND ? 8u : 0u;
    const uint32_t rnd_lo = p->method == QK_LAYERNORM_SOLE_ROUND ? 2u : 0u;
    uint64_t ex2 = 0;
    int32_t c0 = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX512)
        c0 = qk__ln_sole_sums_avx512(q, alpha, C, zp, rnd_hi, rnd_lo, &s1, &ex2, xb);
    if (qk__level() >= QK_LEVEL_AVX2)
        c0 += qk__ln_sole_sums_avx2(q + c0, alpha + c0, C - c0, zp, rnd_hi, rnd_lo, &s1, &ex2,
                                    xb != NULL ? xb + c0 : NULL);
#endif
    for (int32_t c = c0; c < C; c++) {
        const int32_t d = (int32_t)q[c] - zp;
        s1 += (int64_t)d * ((int64_t)1 << alpha[c]);
        const uint32_t a = (uint32_t)(d < 0 ? -d : d);
        const uint32_t flag = a >= 64;
        uint32_t cv = flag ? (a + rnd_hi) >> 4 : (a + rnd_lo) >> 2;
        if (cv > 15) cv = 15;
        ex2 += ((uint64_t)sq[cv] << (4 * flag)) << (2 * alpha[c]);
    }
    const int64_t e2 = (int64_t)((ex2 << 4) / (uint64_t)C);
    const int64_t dd = e2 * C * C - s1 * s1;
    *s1_out = s1;
    *d_out = dd > 0 ? dd : 0;
}

/* Scalar loop over the block's channels [c0, n): the reference twin of the AVX2 and AVX-512
 * loops below (q and y point at the block's first channel). */
static inline void qk__ln_output_scalar(const qk_layernorm_params *p, const qk__ln_factors *f,
                                        const uint8_t *q, int64_t a, int64_t b, int rshift,
                                        int32_t c0, int8_t *y) {
    const int32_t n = f->n, zp = p->in_zero_point, shift = p->shift;
    const int64_t ozp = p->out_zero_point, qmin = p->out_qmin, qmax = p->out_qmax;
    const uint8_t *alpha = f->alpha;
    const int32_t *G = f->g;
    const int64_t *B = f->b;
    const int64_t oround = INT64_C(1) << (shift - 1);
    for (int32_t c = c0; c < n; c++) {
        const int64_t x = (int64_t)((int32_t)q[c] - zp) * ((int64_t)1 << alpha[c]);
        int64_t z = (x * a + b) >> rshift;
        z = z > QK__LN_ZMAX ? QK__LN_ZMAX : (z < -QK__LN_ZMAX ? -QK__LN_ZMAX : z);
        const int64_t acc = z * (int64_t)G[c] + B[c];
        int64_t v = ((acc + oround) >> shift) + ozp;
        v = v < qmin ? qmin : (v > qmax ? qmax : v);
        y[c] = (int8_t)v;
    }
}

enum { QK__LN_FAST_FMIN = 32, QK__LN_FAST_FMAX = 52 };

typedef struct {
    const int64_t *ge, *go, *be, *bo;
} qk__ln_pairs;

#if QK_X86
/* The AVX-512 output stage for F in [32, 52] (QK__LN_FAST_F*): 16 channels a step, x in int32
 * lanes, its even and odd lanes multiplied as int64 by _mm512_mul_epi32 (which reads the low
 * dword of each qword, sign-extended), so nothing is widened:
 *   z = (x * a + b) >> rshift         a < 2^31: one product; else a = a1 2^24 + a0, two
 *   (sole: clamped to +-2^24; exact: |z| <= sqrt(C - 1) 2^16 + 1 < 2^24 already, since
 *    v_i^2 <= (C - 1) D for v_i = C x_i - S1 and D = C S2 - S1^2, and M / 2^(61-j) exceeds
 *    1 / sqrt(D + E) by less than 2^-28 of it)
 *   acc = z * G_i + B'_i              B'_i = B_i + 2^(F-1) + zp_out 2^F (|acc| < 2^62)
 *   w = acc >> F = (acc >> 32) >> (F - 32): the high dwords of the even and odd products, put
 *   back in channel order by one permute, shifted as int32 (|w| < 2^30), then narrowed with
 *   signed saturation and clamped to [qmin, qmax] as bytes.
 * The same integers as the scalar loop. G_i and B'_i of the even and of the odd channels of each
 * 16 come as int64 arrays (G_i in the low dword): ge[k] = G_{2k}, go[k] = G_{2k+1}, alike be, bo.
 * Returns the channels done (n & ~15). */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m512i qk__ln_z8_avx512(__m512i x, __m512i a0,
                                                                 __m512i a1, __m512i vb,
                                                                 __m128i rs, int two, int clamp) {
    __m512i t = _mm512_add_epi64(_mm512_mul_epi32(x, a0), vb);
    if (two) t = _mm512_add_epi64(t, _mm512_slli_epi64(_mm512_mul_epi32(x, a1), 24));
    __m512i z = _mm512_sra_epi64(t, rs);
    if (clamp) {
        z = _mm512_min_epi64(z, _mm512_set1_epi64(QK__LN_ZMAX));
        z = _mm512_max_epi64(z, _mm512_set1_epi64(-QK__LN_ZMAX));
    }
    return z;
}

QK_TARGET_AVX512 static QK_ALWAYS_INLINE int32_t qk__ln_fast_avx512_(
    const qk_layernorm_params *p, const qk__ln_factors *f, const qk__ln_pairs *pr,
    const uint8_t *q, const int16_t *xb, int64_t a, int64_t b, int rshift, int8_t *y, int two,
    int vx, int clamp, int full) {
    const int32_t n16 = f->n & ~15;
    const uint8_t *alpha = f->alpha;
    const int64_t *ge = pr->ge, *go = pr->go, *be = pr->be, *bo = pr->bo;
    const __m512i zp = _mm512_set1_epi32(p->in_zero_point);
    const __m512i vc = _mm512_set1_epi32(p->channels);
    const __m512i a0 = _mm512_set1_epi64(two ? (a & 0xFFFFFF) : a);
    const __m512i a1 = _mm512_set1_epi64(two ? (a >> 24) : 0);
    const __m512i vb = _mm512_set1_epi64(b);
    const __m128i rs = _mm_cvtsi32_si128(rshift), sh = _mm_cvtsi32_si128(p->shift - 32);
    const __m512i hi_dwords =
        _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    const __m128i qmin = _mm_set1_epi8((char)p->out_qmin), qmax = _mm_set1_epi8((char)p->out_qmax);
    for (int32_t c = 0; c < n16; c += 16) {
        __m512i x;
        if (xb != NULL) { /* the x_i the statistics stored */
            x = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(xb + c)));
        } else {
            const __m512i d = _mm512_sub_epi32(
                _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + c))), zp);
            x = _mm512_sllv_epi32(
                d, _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(alpha + c))));
        }
        if (vx) x = _mm512_mullo_epi32(x, vc); /* C x: -S1 M' is in b */
        const __m512i ze = qk__ln_z8_avx512(x, a0, a1, vb, rs, two, clamp);
        const __m512i zo = qk__ln_z8_avx512(_mm512_srli_epi64(x, 32), a0, a1, vb, rs, two, clamp);
        const __m512i acce = _mm512_add_epi64(
            _mm512_mul_epi32(ze, _mm512_loadu_si512(ge + c / 2)), _mm512_loadu_si512(be + c / 2));
        const __m512i acco = _mm512_add_epi64(
            _mm512_mul_epi32(zo, _mm512_loadu_si512(go + c / 2)), _mm512_loadu_si512(bo + c / 2));
        const __m512i w = _mm512_sra_epi32(_mm512_permutex2var_epi32(acce, hi_dwords, acco), sh);
        __m128i v = _mm512_cvtsepi32_epi8(w);
        if (!full) v = _mm_max_epi8(_mm_min_epi8(v, qmax), qmin);
        _mm_storeu_si128((__m128i *)(y + c), v);
    }
    return n16;
}

/* The variant of the row. Exact rows: z = ((C x) M' + 2^(rshift-1-k) - S1 M') >> (rshift - k)
 * with C x in int32 lanes (|C x| < 2^30) and M = M' 2^k, M' < 2^31 (k = 0, or 1 for an even M:
 * M <= 2^31.5; |C x M'| and |S1 M'| < 2^61) -- the same integer as (x a + b) >> rshift (it is
 * (v M + 2^(rshift-1)) >> rshift, v = C x - S1), one product; an odd
 * M >= 2^31 takes (x a + b) with a = C M in two products. Sole rows: a = C lut < 2^31 (C <= 32767),
 * one product (else two); the z clamp only where z can reach it (z at the extreme x of the call,
 * xlo and xhi, beyond +-2^24: z is monotonic in x). The byte clamp only when [qmin, qmax] is
 * narrower than int8. */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE int32_t qk__ln_fast_row_avx512(
    const qk_layernorm_params *p, const qk__ln_factors *f, const qk__ln_pairs *pr,
    const uint8_t *q, const int16_t *xb, int64_t s1, int64_t mult, int64_t a, int64_t b,
    int rshift, int8_t *y, int64_t xlo, int64_t xhi) {
    const int64_t lim31 = INT64_C(1) << 31;
    const int full = p->out_qmin == INT8_MIN && p->out_qmax == INT8_MAX;
    if (p->method == QK_LAYERNORM_EXACT) {
        const int k = mult >= lim31 && (mult & 1) == 0;
        if (mult >> k < lim31 && rshift - k >= 1) {
            const int64_t m = mult >> k, r = (INT64_C(1) << (rshift - 1 - k)) - s1 * m;
            return full ? qk__ln_fast_avx512_(p, f, pr, q, xb, m, r, rshift - k, y, 0, 1, 0, 1)
                        : qk__ln_fast_avx512_(p, f, pr, q, xb, m, r, rshift - k, y, 0, 1, 0, 0);
        }
        return full ? qk__ln_fast_avx512_(p, f, pr, q, xb, a, b, rshift, y, a >= lim31, 0, 0, 1)
                    : qk__ln_fast_avx512_(p, f, pr, q, xb, a, b, rshift, y, a >= lim31, 0, 0, 0);
    }
    const int clamp = (xlo * a + b) >> rshift < -QK__LN_ZMAX || (xhi * a + b) >> rshift > QK__LN_ZMAX;
    const int v = (a < lim31 ? 0 : 4) + (clamp ? 2 : 0) + (full ? 1 : 0);
    switch (v) {
#define QK__LN_FAST(k)                                                                         \
    case k:                                                                                    \
        return qk__ln_fast_avx512_(p, f, pr, q, xb, a, b, rshift, y, (k) >> 2, 0, ((k) >> 1) & 1,   \
                                   (k) & 1);
        QK__LN_FAST(0) QK__LN_FAST(1) QK__LN_FAST(2) QK__LN_FAST(3)
        QK__LN_FAST(4) QK__LN_FAST(5) QK__LN_FAST(6) QK__LN_FAST(7)
#undef QK__LN_FAST
    }
    return 0;
}

/* xb: the row's x_i stored by the statistics (or NULL: x_i from q and alpha) */
QK_TARGET_AVX512 static int32_t qk__ln_fast_avx512(const qk_layernorm_params *p,
                                                   const qk__ln_factors *f, const qk__ln_pairs *pr,
                                                   const uint8_t *q, const int16_t *xb, int64_t s1,
                                                   int64_t mult, int64_t a, int64_t b, int rshift,
                                                   int8_t *y, int64_t xlo, int64_t xhi) {
    if (xb != NULL)
        return qk__ln_fast_row_avx512(p, f, pr, q, xb, s1, mult, a, b, rshift, y, xlo, xhi);
    return qk__ln_fast_row_avx512(p, f, pr, q, NULL, s1, mult, a, b, rshift, y, xlo, xhi);
}
#endif

/* y_i = clamp(RHU(z_i * G_i + B_i, F) + zp) for one row, with
 * z_i = clamp(RHU(v_i * mult, rshift), -2^24, 2^24) and v_i = C x_i - S1.
 * v_i * mult is evaluated as x_i * (C * mult) + (2^(rshift-1) - S1 * mult): the same integer
 * (|C * mult| < 2^47, |x_i * C * mult| and |S1 * mult| < 2^62, their sum is |v_i * mult| + the
 * rounding term < 2^63), one multiplication fewer per element. */
static inline void qk__ln_output(const qk_layernorm_params *p, const qk__ln_factors *f,
                                 const qk__ln_pairs *pr, const uint8_t *q, const int16_t *xb,
                                 int64_t s1, int64_t mult, int rshift, int64_t xlo, int64_t xhi,
                                 int8_t *y) {
    const int64_t a = (int64_t)p->channels * mult;
    const int64_t b = (rshift > 0 ? (INT64_C(1) << (rshift - 1)) : 0) - s1 * mult;
    int32_t done = 0;
#if QK_X86
    if (pr != NULL)
        done = qk__ln_fast_avx512(p, f, pr, q, xb, s1, mult, a, b, rshift, y, xlo, xhi);
    else if (qk__level() >= QK_LEVEL_AVX512)
        done = qk__ln_output_avx512(p, f, q, a, b, rshift, y);
    else if (qk__level() >= QK_LEVEL_AVX2)
        done = qk__ln_output_avx2(p, f, q, a, b, rshift, y);
#else
    (void)pr;
    (void)xb;
    (void)xlo;
    (void)xhi;
#endif
    qk__ln_output_scalar(p, f, q, a, b, rshift, done, y);
}

/* The exact method's 1/sqrt(d) as the dyadic mult / 2^rshift (qkernels.h). */
static inline void qk__ln_inv_sqrt_exact(int64_t d, int64_t *mult, int *rshift) {
    *mult = 0;
    *rshift = 0;
    if (d > 0) {
        const int j = (61 - qk__bitlen64((uint64_t)d)) / 2;
        const uint64_t r = qk_isqrt_u64((uint64_t)d << (2 * j));
        *mult = (int64_t)(((UINT64_C(1) << 61) + r / 2) / r);
        *rshift = 45 - j;
    }
}

/* The 256-entry table lookup: 1/sqrt(d) ~= lut[m] * 2^-(16 + e/2). */
static inline void qk__ln_inv_sqrt_lut(const qk_layernorm_params *p, int64_t d, int64_t *mult,
                                       int *rshift) {
    if (d <= 0) {
        *mult = 0;
        *rshift = 0;
        return;
    }
    int e = 0;
    int64_t m = d;
    if (d >= 256) {
        e = qk__bitlen64((uint64_t)d) - 8;
        if (e & 1) e++;
        m = qk__rhu64(d, e);
        if (m >= 256) {
            e += 2;
            m = qk__rhu64(d, e);
        }
    }
    /* m is in [1, 255] here (after the second step m <= 65); the mask only tells the compiler */
    *mult = (int64_t)p->inv_sqrt_lut[m & 255];
    *rshift = e / 2;
}

/* 1/sqrt(D + E) by the method. */
static inline void qk__ln_inv_sqrt(const qk_layernorm_params *p, int64_t d, int sole, int64_t *mult,
                                   int *rshift) {
    if (sole)
        qk__ln_inv_sqrt_lut(p, d + p->eps_term, mult, rshift);
    else
        qk__ln_inv_sqrt_exact(d + p->eps_term, mult, rshift);
}

/* Tokens and channels in blocks, so that G_i and B_i are formed once for many tokens without an
 * allocation: a block's token statistics first (stack arrays), then the output stage channel
 * block by channel block (the factors on the stack, 12 bytes a channel, and 16 for the fast
 * path's pairs); with one channel block (C <= 512) on the fast path, row by row instead. */
enum { QK__LN_TOKENS = 32, QK__LN_CHANNELS = 512 };

/* Every token of q (p checked): its statistics, 1/sqrt(D + E) by the method, the output stage. */
static inline void qk__ln_rows(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                               int8_t *y, int sole) {
    const size_t C = (size_t)p->channels;
    int32_t G[QK__LN_CHANNELS];
    int64_t B[QK__LN_CHANNELS];
    /* the AVX-512 fast output stage: F in its range, G_i and B'_i of even / odd channels */
    int64_t pairs[4][QK__LN_CHANNELS / 2];
    int fast = 0;
#if QK_X86
    fast = qk__level() >= QK_LEVEL_AVX512 && p->shift >= QK__LN_FAST_FMIN &&
           p->shift <= QK__LN_FAST_FMAX;
#endif
    const qk__ln_pairs pr = {pairs[0], pairs[1], pairs[2], pairs[3]};
    /* every x of the call is in [xlo, xhi]: (0 - zp) and (255 - zp) times 2^max(alpha) */
    int amax = 0;
    for (size_t c = 0; c < C; c++) amax = p->alpha[c] > amax ? p->alpha[c] : amax;
    const int64_t xlo = (int64_t)(-p->in_zero_point) * (1 << amax);
    const int64_t xhi = (int64_t)(255 - p->in_zero_point) * (1 << amax);
    /* 32-channel steps whose x^2 pair sums (<= 2 (255 2^amax)^2) add up in int32 */
    const int64_t pair = 2 * (INT64_C(255) << amax) * (INT64_C(255) << amax);
    const int32_t steps = (int32_t)(INT32_MAX / pair);
    /* G_i and B_i (and the pairs) of a channel block; once a call when one block holds them */
    const int one_block = C <= QK__LN_CHANNELS;
    for (size_t t0 = 0; t0 < tokens; t0 += QK__LN_TOKENS) {
        const size_t nt = tokens - t0 < QK__LN_TOKENS ? tokens - t0 : QK__LN_TOKENS;
        int64_t s1[QK__LN_TOKENS], m[QK__LN_TOKENS];
        int rshift[QK__LN_TOKENS];
        if (!(fast && one_block)) {
            for (size_t t = 0; t < nt; t++) {
                int64_t d;
                qk__ln_row_stats(p, q + (t0 + t) * C, &s1[t], &d, NULL, steps);
                qk__ln_inv_sqrt(p, d, sole, &m[t], &rshift[t]);
            }
        }
        for (size_t c0 = 0; c0 < C; c0 += QK__LN_CHANNELS) {
            const size_t nc = C - c0 < QK__LN_CHANNELS ? C - c0 : QK__LN_CHANNELS;
            if (!one_block || t0 == 0) {
                for (size_t c = 0; c < nc; c++) {
                    G[c] = (int32_t)((int64_t)p->gamma[c0 + c] * p->gamma_multiplier);
                    B[c] = p->beta[c0 + c] * p->beta_multiplier;
                }
                if (fast) {
                    const int64_t bias = (INT64_C(1) << (p->shift - 1)) +
                                         (int64_t)p->out_zero_point * (INT64_C(1) << p->shift);
                    for (size_t k = 0; 2 * k + 1 < (nc & ~(size_t)15); k++) {
                        pairs[0][k] = G[2 * k];
                        pairs[1][k] = G[2 * k + 1];
                        pairs[2][k] = B[2 * k] + bias;
                        pairs[3][k] = B[2 * k + 1] + bias;
                    }
                }
            }
            const qk__ln_factors f = {p->alpha + c0, G, B, (int32_t)nc};
            if (fast && one_block) {
                /* row by row: the statistics store the row's x_i, the output stage reads them */
                _Alignas(64) int16_t xb[QK__LN_CHANNELS];
                for (size_t t = 0; t < nt; t++) {
                    const uint8_t *qr = q + (t0 + t) * C;
                    int64_t d, mt;
                    int rt;
                    qk__ln_row_stats(p, qr, &s1[t], &d, xb, steps);
                    qk__ln_inv_sqrt(p, d, sole, &mt, &rt);
                    qk__ln_output(p, &f, &pr, qr, xb, s1[t], mt, rt, xlo, xhi, y + (t0 + t) * C);
                }
                continue;
            }
            for (size_t t = 0; t < nt; t++)
                qk__ln_output(p, &f, fast ? &pr : NULL, q + (t0 + t) * C + c0, NULL, s1[t], m[t],
                              rshift[t], xlo, xhi, y + (t0 + t) * C + c0);
        }
    }
}

/* The thread split: the tokens in jobs of QK__LN_JOB_TOKENS rows (each job forms its own G_i and
 * B_i: O(C), a few percent of a job), claimed by the caller and the pool's helpers (core/pool.h);
 * a row's integers do not depend on which thread runs it. Below QK__LN_MT_MIN tokens x channels
 * the calling thread does it all. Measured on the 2-vCPU Zen 4 with the threshold off (1 vs 2
 * threads, interleaved rounds in one process; the machine was shared, load average 8-9, so the
 * fastest round of 31 is quoted, medians being mostly other processes' time): C = 384, 32 / 48 /
 * 64 / 96 / 197 tokens: 5.5 / 7.5 / 9.4 / 13.0 / 25.9 us on one thread, 5.8 / 8.2 / 8.2 / 10.3 /
 * 19.0 on two; C = 768, 32 / 48 tokens: 9.7 / 14.1 vs 6.5 / 11.1. Two threads pay from about
 * 24k elements (9 us of one thread's work) on. */
enum { QK__LN_JOB_TOKENS = 16 };
#define QK__LN_MT_MIN ((size_t)24576)

typedef struct {
    const qk_layernorm_params *p;
    const uint8_t *q;
    int8_t *y;
    const int16_t *x16; /* int16 rows (qk_layernorm_s16_s16_exact) instead of q and y */
    int16_t *y16;
    size_t tokens;
    int sole;
} qk__ln_split;

static void qk__ln16_rows(const qk_layernorm_params *p, const int16_t *x, size_t tokens,
                          int16_t *y);

static void qk__ln_jobs(void *ctx, size_t j0, size_t j1) {
    const qk__ln_split *s = (const qk__ln_split *)ctx;
    const size_t C = (size_t)s->p->channels, t0 = j0 * QK__LN_JOB_TOKENS;
    const size_t t1 = j1 * QK__LN_JOB_TOKENS < s->tokens ? j1 * QK__LN_JOB_TOKENS : s->tokens;
    if (s->x16 != NULL)
        qk__ln16_rows(s->p, s->x16 + t0 * C, t1 - t0, s->y16 + t0 * C);
    else if (s->sole)
        qk__ln_rows(s->p, s->q + t0 * C, t1 - t0, s->y + t0 * C, 1);
    else
        qk__ln_rows(s->p, s->q + t0 * C, t1 - t0, s->y + t0 * C, 0);
}

static qk_status qk__ln_run(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                            int8_t *y, int sole, int threads) {
    const qk_status st = qk__ln_check(p, q, tokens, y);
    if (st != QK_OK) return st;
    if (sole ? p->method != QK_LAYERNORM_SOLE_ROUND && p->method != QK_LAYERNORM_SOLE_TRUNCATE
             : p->method != QK_LAYERNORM_EXACT)
        return QK_ERR_ARG;
    /* tokens x channels x 8 bytes is addressable (qk__ln_check): the product does not wrap */
    const size_t njobs = tokens / QK__LN_JOB_TOKENS + (tokens % QK__LN_JOB_TOKENS != 0);
    if (threads <= 1 || njobs < 2 || tokens * (size_t)p->channels < QK__LN_MT_MIN) {
        if (sole)
            qk__ln_rows(p, q, tokens, y, 1);
        else
            qk__ln_rows(p, q, tokens, y, 0);
        return QK_OK;
    }
    const qk__ln_split s = {p, q, y, NULL, NULL, tokens, sole};
    qk__parallel(njobs, threads, qk__ln_jobs, (void *)&s);
    return QK_OK;
}

qk_status qk_layernorm_ptf_u8_s8_exact(const qk_layernorm_params *p, const uint8_t *q,
                                       size_t tokens, int8_t *y) {
    return qk__ln_run(p, q, tokens, y, 0, 1);
}

qk_status qk_layernorm_ptf_u8_s8_sole(const qk_layernorm_params *p, const uint8_t *q,
                                      size_t tokens, int8_t *y) {
    return qk__ln_run(p, q, tokens, y, 1, 1);
}

qk_status qk_layernorm_ptf_u8_s8_threads(const qk_layernorm_params *p, const uint8_t *q,
                                         size_t tokens, int8_t *y, int threads) {
    if (p == NULL) return QK_ERR_ARG;
    return qk__ln_run(p, q, tokens, y, p->method != QK_LAYERNORM_EXACT, threads);
}

qk_status qk_layernorm_ptf_u8_s8(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                                 int8_t *y) {
    return qk_layernorm_ptf_u8_s8_threads(p, q, tokens, y, 1);
}

qk_status qk_layernorm_ptf_stats(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                                 int64_t *s1, int64_t *d) {
    const qk_status st = qk__ln_check(p, q, tokens, s1);
    if (st != QK_OK) return st;
    if (tokens > 0 && d == NULL) return QK_ERR_ARG;
    const size_t C = (size_t)p->channels;
    for (size_t t = 0; t < tokens; t++) {
        const uint8_t *qr = q + t * C;
        qk__ln_row_stats(p, qr, &s1[t], &d[t], NULL, 1);
    }
    return QK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* int16 in, int16 out (the exact method; qkernels.ptf.layernorm_s16)                         */
/* ---------------------------------------------------------------------------------------- */
/* One row (AVX-512 / AVX2 loops of layernorm_isa.h, qk__ln16_*, beside the scalar twin): S1 and
 * S2 exact in int64 (|x| <= 2^15), D = C S2 - S1^2, 1/sqrt(D + E) as the int8
 * kernel's mult / 2^rshift, z_i = (x_i (C mult) + 2^(rshift-1) - S1 mult) >> rshift (the same
 * integer as (v_i mult + 2^(rshift-1)) >> rshift, v_i = C x_i - S1: |C mult| < 2^47, each term
 * below 2^62), y_i = clamp((z_i G_i + B_i + 2^(F-1)) >> F) to int16 (|z_i| < 2^24 for the exact
 * method, see qk__ln_z8_avx512, so |z_i G_i| < 2^54). */
static void qk__ln16_rows(const qk_layernorm_params *p, const int16_t *x, size_t tokens,
                          int16_t *y) {
    const size_t C = (size_t)p->channels;
    const int shift = p->shift;
    const int64_t oround = INT64_C(1) << (shift - 1);
    /* the SIMD output stage reads G_i and B_i as gamma and beta (prepare's exact multipliers) */
    const int unit = p->gamma_multiplier == 1 && p->beta_multiplier == 1;
    (void)unit;
    for (size_t t = 0; t < tokens; t++) {
        const int16_t *xr = x + t * C;
        int16_t *yr = y + t * C;
        int64_t s1 = 0, s2 = 0;
        size_t c0 = 0;
#if QK_X86
        if (qk__level() >= QK_LEVEL_AVX512)
            c0 = qk__ln16_sums_avx512(xr, C, &s1, &s2);
        else if (qk__level() >= QK_LEVEL_AVX2)
            c0 = qk__ln16_sums_avx2(xr, C, &s1, &s2);
#endif
        for (size_t c = c0; c < C; c++) {
            const int32_t v = xr[c];
            s1 += v;
            s2 += (int64_t)v * v;
        }
        int64_t mult;
        int rshift;
        qk__ln_inv_sqrt_exact((int64_t)C * s2 - s1 * s1 + p->eps_term, &mult, &rshift);
        const int64_t a = (int64_t)C * mult;
        const int64_t b = (rshift > 0 ? (INT64_C(1) << (rshift - 1)) : 0) - s1 * mult;
        c0 = 0;
#if QK_X86
        if (unit && qk__level() >= QK_LEVEL_AVX512)
            c0 = qk__ln16_out_avx512(xr, C, a, b, rshift, p->gamma, p->beta, shift, yr);
        else if (unit && qk__level() >= QK_LEVEL_AVX2)
            c0 = qk__ln16_out_avx2(xr, C, a, b, rshift, p->gamma, p->beta, shift, yr);
#endif
        for (size_t c = c0; c < C; c++) {
            const int64_t z = ((int64_t)xr[c] * a + b) >> rshift;
            const int64_t acc = z * ((int64_t)p->gamma[c] * p->gamma_multiplier) +
                                p->beta[c] * p->beta_multiplier + oround;
            const int64_t v = acc >> shift;
            yr[c] = (int16_t)(v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v));
        }
    }
}

qk_status qk_layernorm_s16_s16_exact(const qk_layernorm_params *p, const int16_t *x,
                                     size_t tokens, int16_t *y, int threads) {
    const qk_status st = qk__ln_check(p, (const uint8_t *)x, tokens, y);
    if (st != QK_OK) return st;
    if (p->method != QK_LAYERNORM_EXACT || p->in_zero_point != 0 || p->out_zero_point != 0)
        return QK_ERR_ARG;
    for (int32_t c = 0; c < p->channels; c++)
        if (p->alpha[c] != 0) return QK_ERR_ARG;
    const size_t njobs = tokens / QK__LN_JOB_TOKENS + (tokens % QK__LN_JOB_TOKENS != 0);
    if (threads <= 1 || njobs < 2 || tokens * (size_t)p->channels < QK__LN_MT_MIN) {
        qk__ln16_rows(p, x, tokens, y);
        return QK_OK;
    }
    const qk__ln_split s = {p, NULL, NULL, x, y, tokens, 0};
    qk__parallel(njobs, threads, qk__ln_jobs, (void *)&s);
    return QK_OK;
}
