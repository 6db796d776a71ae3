/* block_golden.c -- reproduce a whole integer encoder block (BERT / MiniLM) from the files of
 * `python -m qkernels collect --block N [--token-rows]` with the C library's public kernels, and
 * compare every intermediate integer tensor with its golden, bit for bit. No Python involved.
 *
 *   make build/block_golden && build/block_golden data/block0      (or data/block0_rows)
 *   (or: cc -std=c11 -I csrc/include csrc/examples/block_golden.c build/libqkernels.a -lm -pthread)
 *
 * The folder holds params.txt ("key value" lines: sizes, zero points, the softmax constants, the
 * LayerNorms' scalars; "form" static or token_rows, absent: static) and one "<name>.txt" a tensor
 * or parameter array ("# comment", "# shape d0 d1 ...", the count, one number a line);
 * manifest.json lists them in op order. The block is computed from its input x alone: each step
 * takes the C library's own output of the step before (not the golden), so 0 mismatches
 * everywhere means the library computes the whole block.
 *
 * Steps and the kernel of each (manifest.json "ops" says the same), static form:
 *   query/key/value  qk_linear: int32 sums (QK_REQ_NONE) and int8 (QK_REQ_DOUBLE per channel)
 *   scores           qk_bmm (B x heads items, K laid out n x k), QK_REQ_NONE; masked keys INT32_MIN
 *   probs            qk_softmax_u8 (I-BERT)
 *   pv_acc           qk_bmm (V laid out k x n), QK_REQ_NONE
 *   pv_renorm        qk_row_renorm (t = floor((512 acc + s) / (2 s)), s = sum_j P_ij; only with
 *                    pv_renorm 1)
 *   context          qk_requantize_s32_s8_double
 *   <r>_dense_acc    qk_linear (QK_REQ_NONE)               r = attn, out (the two residual adds)
 *   <r>_dense_rq     qk_requantize_s32_s32_single, per channel
 *   <r>_residual_rq  qk_requantize_s32_s32_single of (residual - zp), per channel
 *   <r>_sum          plain C: the int32 add (exact in int64, saturated; no library kernel)
 *   <r>_ln_input     qk_requantize_s32_u8_shift_half_up, per channel (the PTF input)
 *   <r>_ln_output    qk_layernorm_prepare (from the float gamma, beta, scales: its integers are
 *                    compared with the files' too) + qk_layernorm_ptf_u8_s8
 *   intermediate_acc qk_linear (QK_REQ_NONE)
 *   gelu             qk_gelu_ibert (per-channel constants)
 * token-rows form (QuantConfig(token_rows=True); x and the LayerNorms int16):
 *   <s>_rows (+ _z, _j, _e)  qk_row_quantize_s16 / _s32: the Linear input <s> to uint8 per token
 *                    (s = x, attn_x = context, intermediate_x = attn_ln_output, out_x = gelu)
 *   <L>_wsum, <L>_rescale_multiplier / _shift   computed here from the weights and <L>_p
 *                    (qk_quantize_multiplier((j + 1) / 255 / 2^p)) and compared with the files
 *   <L>_acc          qk_linear (QK_REQ_NONE) on the uint8 rows, no bias
 *   <L>_rescaled     qk_row_rescale (less z wsum, rescaled per row, + bias)
 *   q / k / v        qk_row_rescale_requantize (the rescale and the int8 stage in one pass)
 *   scores           qk_bmm, masked keys INT32_MIN
 *   probs            qk_softmax_exp2 (the row's exponentials, row maximum 255)
 *   pv_acc, pv_renorm qk_bmm, qk_row_renorm
 *   context          qk_requantize_s32_s32_single (int32, heads merged)
 *   <r>_dense_rq, <r>_residual_rq, <r>_sum   as static (the residual int16)
 *   <r>_ln_input     qk_residual_add (int16 out: the two requantizations, the add and the shift
 *                    in one pass, from <r>_dense_rescaled and the residual)
 *   <r>_ln_output    qk_layernorm_prepare (exact, alpha 0) + qk_layernorm_s16_s16_exact
 *   gelu             qk_gelu_interp (int32 out)
 * Exit status: 0 when every tensor matches, 1 on any mismatch, 2 for unreadable files.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qkernels.h"

static const char *g_dir;
static long g_bad, g_values, g_tensors;

static void die(const char *what, const char *name) {
    fprintf(stderr, "%s/%s: %s\n", g_dir, name, what);
    exit(2);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL) die("out of memory", "");
    return p;
}

/* ---- params.txt -------------------------------------------------------------------------- */
static char **g_keys, **g_vals;
static size_t g_nparams;

static void load_params(void) {
    char path[4096], line[1024];
    snprintf(path, sizeof path, "%s/params.txt", g_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) die("cannot open", "params.txt");
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *sp = strchr(line, ' ');
        if (line[0] == '#' || sp == NULL) continue;
        *sp = 0;
        if (g_nparams == cap) {
            cap = cap ? 2 * cap : 64;
            g_keys = realloc(g_keys, cap * sizeof *g_keys);
            g_vals = realloc(g_vals, cap * sizeof *g_vals);
            if (g_keys == NULL || g_vals == NULL) die("out of memory", "params.txt");
        }
        g_keys[g_nparams] = strcpy(xmalloc(strlen(line) + 1), line);
        g_vals[g_nparams] = strcpy(xmalloc(strlen(sp + 1) + 1), sp + 1);
        g_nparams++;
    }
    fclose(f);
}

static const char *pfind(const char *key) {
    for (size_t i = 0; i < g_nparams; i++)
        if (strcmp(g_keys[i], key) == 0) return g_vals[i];
    return NULL;
}
static const char *pstr(const char *key) {
    const char *v = pfind(key);
    if (v != NULL) return v;
    fprintf(stderr, "%s/params.txt: no key %s\n", g_dir, key);
    exit(2);
}
static long long pint(const char *key) {
    char *end;
    const char *s = pstr(key);
    const long long v = strtoll(s, &end, 10);
    if (end == s || *end != 0) die("not an integer", key);
    return v;
}
static float pfloat(const char *key) {
    char *end;
    const char *s = pstr(key);
    const float v = strtof(s, &end);
    if (end == s || *end != 0) die("not a number", key);
    return v;
}

/* ---- arrays: "# comment", "# shape ...", count, one number a line ------------------------- */
typedef struct {
    long long *i; /* integer files */
    float *f;     /* float files */
    size_t n;
} arr_t;

static arr_t read_arr(const char *name, size_t expect, int is_float) {
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/%s.txt", g_dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL) die("cannot open (.txt)", name);
    arr_t a = {NULL, NULL, 0};
    long long count = -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] == '#' || line[0] == 0) continue;
        char *end;
        if (count < 0) {
            count = strtoll(line, &end, 10);
            if (end == line || *end != 0 || count < 0 || (size_t)count != expect) {
                fprintf(stderr, "%s: count %s, expected %zu\n", path, line, expect);
                exit(2);
            }
            if (is_float)
                a.f = xmalloc((size_t)count * sizeof *a.f);
            else
                a.i = xmalloc((size_t)count * sizeof *a.i);
            continue;
        }
        if (a.n == (size_t)count) die("more values than the count", name);
        if (is_float)
            a.f[a.n] = strtof(line, &end);
        else
            a.i[a.n] = strtoll(line, &end, 10);
        if (end == line || *end != 0) die("not a number", name);
        a.n++;
    }
    fclose(f);
    if (count < 0 || a.n != (size_t)count) die("fewer values than the count", name);
    return a;
}

#define CONVERTER(NAME, T)                                  \
    static T *NAME(const char *name, size_t n) {            \
        arr_t a = read_arr(name, n, 0);                     \
        T *out = xmalloc(n * sizeof(T));                    \
        for (size_t i = 0; i < n; i++) out[i] = (T)a.i[i];  \
        free(a.i);                                          \
        return out;                                         \
    }
CONVERTER(read_s8, int8_t)
CONVERTER(read_u8, uint8_t)
CONVERTER(read_s16, int16_t)
CONVERTER(read_s32, int32_t)
CONVERTER(read_s64, int64_t)

static float *read_f32(const char *name, size_t n) { return read_arr(name, n, 1).f; }

/* Compares n computed values with the golden file <name>.txt; prints and counts the mismatches. */
static long compare(const char *name, const long long *got, size_t n) {
    arr_t g = read_arr(name, n, 0);
    long bad = 0;
    size_t first = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != g.i[i] && bad++ == 0) first = i;
    printf("%-31s %9zu values, %6ld differ", name, n, bad);
    if (bad) printf("  (first at %zu: C %lld, golden %lld)", first, got[first], g.i[first]);
    printf("\n");
    free(g.i);
    g_bad += bad;
    g_values += (long)n;
    g_tensors++;
    return bad;
}

#define COMPARE_AS(NAME, T)                                         \
    static long NAME(const char *name, const T *v, size_t n) {      \
        long long *w = xmalloc(n * sizeof *w);                      \
        for (size_t i = 0; i < n; i++) w[i] = v[i];                 \
        const long bad = compare(name, w, n);                       \
        free(w);                                                    \
        return bad;                                                 \
    }
COMPARE_AS(cmp_s8, int8_t)
COMPARE_AS(cmp_u8, uint8_t)
COMPARE_AS(cmp_s16, int16_t)
COMPARE_AS(cmp_s32, int32_t)

static void check(qk_status st, const char *what) {
    if (st != QK_OK) {
        fprintf(stderr, "%s: %s\n", what, qk_status_str(st));
        exit(2);
    }
}

static char *key(const char *prefix, const char *suffix) {
    static char buf[8][128];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s_%s", prefix, suffix);
    return b;
}

/* An output stage: int32 sums (QK_REQ_NONE, int32 out) or the int8 fixed-point requantization. */
static qk_epilogue output_stage(qk_requant_scheme scheme, const int32_t *bias,
                                const int32_t *multiplier, const int32_t *shift,
                                int32_t zero_point) {
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = scheme;
    ep.out_type = scheme == QK_REQ_NONE ? QK_DT_S32 : QK_DT_S8;
    ep.bias = bias;
    ep.multiplier = multiplier;
    ep.shift = shift;
    ep.zero_point = zero_point;
    ep.act_min = scheme == QK_REQ_NONE ? INT32_MIN : -128;
    ep.act_max = scheme == QK_REQ_NONE ? INT32_MAX : 127;
    return ep;
}

/* y (m x n) = x (m x k) . w^T + bias, int32 sums (QK_REQ_NONE). */
static void linear_acc(const qk_packed_weights *pw, const void *x, qk_dtype xt, size_t m,
                       int32_t xzp, const int32_t *bias, int32_t *acc) {
    const qk_epilogue ep = output_stage(QK_REQ_NONE, bias, NULL, NULL, 0);
    check(qk_linear(pw, x, xt, m, xzp, &ep, acc, 1), "qk_linear (int32 sums)");
}

/* (B, T, H, D) <-> (B, H, T, D) of elements of es bytes. */
static void split_heads(const void *a, void *h, size_t B, size_t T, size_t H, size_t D, size_t es) {
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; j < H; j++)
                memcpy((char *)h + ((b * H + j) * T + t) * D * es,
                       (const char *)a + ((b * T + t) * H + j) * D * es, D * es);
}
static void merge_heads(const void *h, void *a, size_t B, size_t T, size_t H, size_t D, size_t es) {
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; j < H; j++)
                memcpy((char *)a + ((b * T + t) * H + j) * D * es,
                       (const char *)h + ((b * H + j) * T + t) * D * es, D * es);
}

/* The LayerNorm r prepared from the float parameters (qk_layernorm_prepare), its integers compared
 * with the files' (<r>_ln_gamma_int, _beta_int and the scalars). The caller frees ln->buf_*. */
typedef struct {
    qk_layernorm_params p;
    int32_t *gbuf;
    int64_t *bbuf;
    uint8_t *abuf;
} prepared_ln;

static void prepare_ln(const char *r, size_t c, qk_layernorm_method lm, const int32_t *alpha,
                       int32_t zero_point, prepared_ln *ln) {
    float *gamma = read_f32(key(r, "ln_gamma"), c), *beta = read_f32(key(r, "ln_beta"), c);
    ln->gbuf = xmalloc(c * sizeof *ln->gbuf);
    ln->bbuf = xmalloc(c * sizeof *ln->bbuf);
    ln->abuf = xmalloc(c);
    check(qk_layernorm_prepare(&ln->p, lm, c, pfloat(key(r, "ln_in_scale")), alpha, zero_point,
                               gamma, beta, pfloat(key(r, "ln_eps")),
                               pfloat(key(r, "ln_out_scale")),
                               (int32_t)pint(key(r, "ln_out_zero_point")), ln->gbuf, ln->bbuf,
                               ln->abuf),
          "qk_layernorm_prepare");
    cmp_s32(key(r, "ln_gamma_int"), ln->gbuf, c);
    long long *b64 = xmalloc(c * sizeof *b64);
    for (size_t i = 0; i < c; i++) b64[i] = ln->bbuf[i];
    compare(key(r, "ln_beta_int"), b64, c);
    const long long sc[4] = {ln->p.shift, ln->p.eps_term, ln->p.gamma_multiplier,
                             ln->p.beta_multiplier};
    const char *names[4] = {"ln_shift", "ln_eps_term", "ln_gamma_multiplier", "ln_beta_multiplier"};
    for (int i = 0; i < 4; i++)
        if (sc[i] != pint(key(r, names[i]))) {
            printf("%-31s prepared %lld, params.txt %lld: DIFFERENT\n", key(r, names[i]), sc[i],
                   pint(key(r, names[i])));
            g_bad++;
        }
    free(gamma), free(beta), free(b64);
}

static void free_ln(prepared_ln *ln) { free(ln->gbuf), free(ln->bbuf), free(ln->abuf); }

/* The residual's first three steps, the same in both forms: <r>_dense_rq and <r>_residual_rq (the
 * Linear's int32 a and the residual, r_zp taken out, requantized per channel to the unit u) and
 * their saturated int32 sum <r>_sum. res is int8 (static) or int16 (token rows). */
static int32_t *residual_sum(const char *r, const int32_t *acc, const void *res, qk_dtype rt,
                             size_t m, size_t c) {
    const size_t n = m * c;
    int32_t *dm = read_s32(key(r, "dense_multiplier"), c), *ds = read_s32(key(r, "dense_shift"), c);
    int32_t *rm = read_s32(key(r, "residual_multiplier"), c);
    int32_t *rs = read_s32(key(r, "residual_shift"), c);
    int32_t *a = xmalloc(n * sizeof *a), *rr = xmalloc(n * sizeof *rr), *t = xmalloc(n * sizeof *t);
    const int32_t rzp = (int32_t)pint(key(r, "residual_zero_point"));
    for (size_t i = 0; i < n; i++) {   /* per-channel multipliers: one call per element */
        const size_t ch = i % c;
        check(qk_requantize_s32_s32_single(acc + i, 1, dm[ch], ds[ch], 0, INT32_MIN, INT32_MAX,
                                           a + i), "qk_requantize_s32_s32_single (dense)");
        const int32_t v = rt == QK_DT_S16 ? ((const int16_t *)res)[i] : ((const int8_t *)res)[i];
        const int32_t d = v - rzp;
        check(qk_requantize_s32_s32_single(&d, 1, rm[ch], rs[ch], 0, INT32_MIN, INT32_MAX, rr + i),
              "qk_requantize_s32_s32_single (residual)");
    }
    cmp_s32(key(r, "dense_rq"), a, n);
    cmp_s32(key(r, "residual_rq"), rr, n);
    /* plain C: the int32 residual add (exact in int64, saturated); the library has no kernel */
    for (size_t i = 0; i < n; i++) {
        const int64_t s = (int64_t)a[i] + rr[i];
        t[i] = s > INT32_MAX ? INT32_MAX : s < INT32_MIN ? INT32_MIN : (int32_t)s;
    }
    cmp_s32(key(r, "sum"), t, n);
    free(dm), free(ds), free(rm), free(rs), free(a), free(rr);
    return t;
}

/* The residual add + LayerNorm r ("attn" or "out") of the static form: dense(x) (m x k, type xt)
 * + res (m x c, int8). Returns the int8 LayerNorm output (m x c). */
static int8_t *residual(const char *r, const void *x, qk_dtype xt, size_t k, const int8_t *res,
                        size_t m, size_t c) {
    const size_t n = m * c;
    int8_t *w = read_s8(key(r, "dense_weight"), c * k);
    int32_t *bias = read_s32(key(r, "dense_bias"), c), *zeros = calloc(c, sizeof(int32_t));
    qk_packed_weights *pw = NULL;
    if (zeros == NULL) die("out of memory", r);
    check(qk_pack_linear(w, QK_DT_S8, c, k, zeros, &pw), "qk_pack_linear");
    int32_t *acc = xmalloc(n * sizeof *acc);
    linear_acc(pw, x, xt, m, (int32_t)pint(key(r, "x_zero_point")), bias, acc);
    cmp_s32(key(r, "dense_acc"), acc, n);
    int32_t *t = residual_sum(r, acc, res, QK_DT_S8, m, c);
    int32_t *ps = read_s32(key(r, "ptf_shift"), c);
    uint8_t *q = xmalloc(n);
    const int32_t lzp = (int32_t)pint(key(r, "ln_in_zero_point"));
    for (size_t i = 0; i < n; i++)
        check(qk_requantize_s32_u8_shift_half_up(t + i, 1, ps[i % c], lzp, 0, 255, q + i),
              "qk_requantize_s32_u8_shift_half_up");
    cmp_u8(key(r, "ln_input"), q, n);

    /* the LayerNorm prepared from the float parameters, its integers compared with the files' */
    const char *meth = pstr(key(r, "ln_method"));
    const qk_layernorm_method lm = strcmp(meth, "exact") == 0 ? QK_LAYERNORM_EXACT
                                   : strcmp(meth, "sole_round") == 0 ? QK_LAYERNORM_SOLE_ROUND
                                                                    : QK_LAYERNORM_SOLE_TRUNCATE;
    int32_t *alpha = read_s32(key(r, "ln_alpha"), c);
    prepared_ln ln;
    prepare_ln(r, c, lm, alpha, lzp, &ln);
    int8_t *y = xmalloc(n);
    check(qk_layernorm_ptf_u8_s8(&ln.p, q, m, y), "qk_layernorm_ptf_u8_s8");
    cmp_s8(key(r, "ln_output"), y, n);

    qk_packed_weights_free(pw);
    free_ln(&ln);
    free(w), free(bias), free(zeros), free(acc), free(ps), free(t), free(q), free(alpha);
    return y;
}

/* ---- the token-rows form ------------------------------------------------------------------ */
/* A tensor quantized to uint8 per token (row): x, and per row z, j, e. */
typedef struct {
    uint8_t *x;
    int32_t *z, *j, *e;
} rows_t;

/* qk_row_quantize_s16 / _s32 of d (rows x cols), compared with <src>_rows, _rows_z, _j, _e. */
static rows_t row_quantize(const char *src_, const void *d, qk_dtype t, size_t rows, size_t cols) {
    char src[96];
    snprintf(src, sizeof src, "%s", src_);   /* key()'s buffers rotate: keep the name here */
    rows_t q = {xmalloc(rows * cols), xmalloc(rows * sizeof(int32_t)),
                xmalloc(rows * sizeof(int32_t)), xmalloc(rows * sizeof(int32_t))};
    if (t == QK_DT_S16)
        check(qk_row_quantize_s16(d, rows, cols, q.x, q.z, q.j, q.e, 1), "qk_row_quantize_s16");
    else
        check(qk_row_quantize_s32(d, rows, cols, q.x, q.z, q.j, q.e, 1), "qk_row_quantize_s32");
    cmp_u8(key(src, "rows"), q.x, rows * cols);
    cmp_s32(key(src, "rows_z"), q.z, rows);
    cmp_s32(key(src, "rows_j"), q.j, rows);
    cmp_s32(key(src, "rows_e"), q.e, rows);
    return q;
}

static void free_rows(rows_t *q) { free(q->x), free(q->z), free(q->j), free(q->e); }

/* A Linear L on uint8 rows: its weights packed, wsum (computed from the weights) and the per-row
 * rescale table (from L_p), both compared with the files, the int32 bias. */
typedef struct {
    qk_packed_weights *pw;
    int32_t *wsum, *bias, mt[32], st[32];
} row_linear_t;

/* m rows of k uint8 values -> n outputs: acc (the sums, compared with <L>_acc) and, when v is not
 * NULL, v = qk_row_rescale of them (compared with <L>_rescaled). */
static row_linear_t row_linear(const char *lin_, const rows_t *q, size_t m, size_t k, size_t n,
                               int32_t *acc, int32_t *v) {
    char lin[96];
    snprintf(lin, sizeof lin, "%s", lin_);
    row_linear_t L;
    int8_t *w = read_s8(key(lin, "weight"), n * k);
    int32_t *zeros = calloc(n, sizeof(int32_t));
    if (zeros == NULL) die("out of memory", lin);
    L.pw = NULL;
    check(qk_pack_linear(w, QK_DT_S8, n, k, zeros, &L.pw), "qk_pack_linear");
    L.wsum = xmalloc(n * sizeof *L.wsum);
    for (size_t o = 0; o < n; o++) {
        int64_t s = 0;
        for (size_t i = 0; i < k; i++) s += w[o * k + i];
        L.wsum[o] = (int32_t)s;   /* |s| <= 128 k */
    }
    cmp_s32(key(lin, "wsum"), L.wsum, n);
    const long long p = pint(key(lin, "p"));
    if (p < 0 || p > 24) die("rescale p outside 0..24", key(lin, "p"));
    for (int j = 0; j < 32; j++)
        check(qk_quantize_multiplier((double)(j + 1) / 255.0 / ldexp(1.0, (int)p), &L.mt[j],
                                     &L.st[j]),
              "qk_quantize_multiplier");
    cmp_s32(key(lin, "rescale_multiplier"), L.mt, 32);
    cmp_s32(key(lin, "rescale_shift"), L.st, 32);
    L.bias = read_s32(key(lin, "bias"), n);
    linear_acc(L.pw, q->x, QK_DT_U8, m, 0, NULL, acc);
    cmp_s32(key(lin, "acc"), acc, m * n);
    if (v != NULL) {
        check(qk_row_rescale(acc, m, n, q->z, L.wsum, q->j, q->e, L.mt, L.st, L.bias, v, 1),
              "qk_row_rescale");
        cmp_s32(key(lin, "rescaled"), v, m * n);
    }
    free(w), free(zeros);
    return L;
}

static void free_row_linear(row_linear_t *L) {
    qk_packed_weights_free(L->pw);
    free(L->wsum), free(L->bias);
}

/* The residual add + int16 LayerNorm r of the token-rows form: dense(x) (x int32, m x k, on its
 * uint8 rows) + res (m x c, int16). Returns the int16 LayerNorm output (m x c). */
static int16_t *residual_rows(const char *r, const int32_t *x, size_t k, const int16_t *res,
                              size_t m, size_t c) {
    const size_t n = m * c;
    rows_t q = row_quantize(key(r, "x"), x, QK_DT_S32, m, k);
    int32_t *acc = xmalloc(n * sizeof *acc), *v = xmalloc(n * sizeof *v);
    row_linear_t L = row_linear(key(r, "dense"), &q, m, k, c, acc, v);
    int32_t *t = residual_sum(r, v, res, QK_DT_S16, m, c);
    free(t);   /* the fused pass below recomputes it on its way to the LayerNorm's input */
    int32_t *dm = read_s32(key(r, "dense_multiplier"), c), *ds = read_s32(key(r, "dense_shift"), c);
    int32_t *rm = read_s32(key(r, "residual_multiplier"), c);
    int32_t *rs = read_s32(key(r, "residual_shift"), c), *so = read_s32(key(r, "ln_in_shift"), c);
    int16_t *in = xmalloc(n * sizeof *in);
    check(qk_residual_add(v, res, QK_DT_S16, (int32_t)pint(key(r, "residual_zero_point")), m, c,
                          dm, ds, rm, rs, so, 0, QK_DT_S16, in, 1),
          "qk_residual_add");
    cmp_s16(key(r, "ln_input"), in, n);
    if (strcmp(pstr(key(r, "ln_method")), "exact") != 0)
        die("the token-rows LayerNorm must be exact", key(r, "ln_method"));
    int32_t *alpha = calloc(c, sizeof(int32_t));   /* int16 input: no PTF (alpha 0, zp 0) */
    if (alpha == NULL) die("out of memory", r);
    prepared_ln ln;
    prepare_ln(r, c, QK_LAYERNORM_EXACT, alpha, 0, &ln);
    int16_t *y = xmalloc(n * sizeof *y);
    check(qk_layernorm_s16_s16_exact(&ln.p, in, m, y, 1), "qk_layernorm_s16_s16_exact");
    cmp_s16(key(r, "ln_output"), y, n);
    free_ln(&ln);
    free_row_linear(&L);
    free_rows(&q);
    free(acc), free(v), free(dm), free(ds), free(rm), free(rs), free(so), free(in), free(alpha);
    return y;
}

static void run_rows(size_t B, size_t T, size_t C, size_t H, size_t D, size_t I) {
    const size_t M = B * T, NX = M * C, NS = B * H * T * T, NH = B * H;
    int16_t *x = read_s16("x", NX);
    uint8_t *mask = read_u8("mask", B * T * T);
    rows_t xr = row_quantize("x", x, QK_DT_S16, M, C);

    /* Q, K, V: the sums of the uint8 rows, rescaled, and the int8 stage fused with the rescale */
    const char *lin[3] = {"query", "key", "value"}, *out[3] = {"q", "k", "v"};
    int8_t *qkv[3], *tmp = xmalloc(NX);
    int32_t *acc = xmalloc(M * I * sizeof(int32_t)), *v = xmalloc(M * I * sizeof(int32_t));
    for (int p = 0; p < 3; p++) {
        row_linear_t L = row_linear(lin[p], &xr, M, C, C, acc, v);
        int32_t *mult = read_s32(key(lin[p], "multiplier"), C);
        int32_t *shift = read_s32(key(lin[p], "shift"), C);
        check(qk_row_rescale_requantize(acc, M, C, xr.z, L.wsum, xr.j, xr.e, L.mt, L.st, L.bias,
                                        mult, shift, (int32_t)pint(key(out[p], "zero_point")),
                                        QK_DT_S8, tmp, 1),
              "qk_row_rescale_requantize");
        qkv[p] = xmalloc(NX);
        split_heads(tmp, qkv[p], B, T, H, D, 1);
        cmp_s8(out[p], qkv[p], NX);
        free_row_linear(&L);
        free(mult), free(shift);
    }

    /* scores = Q K^T per (batch, head), exact int32; masked keys INT32_MIN */
    int32_t *za = xmalloc(NH * sizeof *za), *zb = xmalloc(NH * sizeof *zb);
    int32_t *scores = xmalloc(NS * sizeof *scores);
    const qk_epilogue none = output_stage(QK_REQ_NONE, NULL, NULL, NULL, 0);
    for (size_t i = 0; i < NH; i++)
        za[i] = (int32_t)pint("q_zero_point"), zb[i] = (int32_t)pint("k_zero_point");
    check(qk_bmm(qkv[0], QK_DT_S8, za, qkv[1], QK_DT_S8, zb, QK_BMM_B_NK, NH, T, D, T, &none,
                 scores, 1),
          "qk_bmm (Q K^T)");
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t ij = 0; ij < T * T; ij++)
                if (!mask[b * T * T + ij]) scores[(b * H + h) * T * T + ij] = INT32_MIN;
    cmp_s32("scores", scores, NS);

    /* the exp2 softmax: the row's exponentials, the row maximum at 255 */
    if (strcmp(pstr("softmax_method"), "exp2") != 0)
        die("softmax_method must be exp2", "params.txt");
    int32_t *table = read_s32("softmax_table", QK_EXP2_TABLE);
    const qk_softmax_exp2_params sp = {(int32_t)pint("softmax_mult"),
                                       (int32_t)pint("softmax_shift"),
                                       (int32_t)pint("softmax_cap"), table};
    uint8_t *probs = xmalloc(NS);
    check(qk_softmax_exp2(&sp, scores, QK_DT_S32, NH * T, T, probs), "qk_softmax_exp2");
    cmp_u8("probs", probs, NS);

    /* P V, exact int32, divided by the row sums of P; the context's fine int32 */
    int32_t *pv = xmalloc(NX * sizeof *pv), *rn = xmalloc(NX * sizeof *rn);
    for (size_t i = 0; i < NH; i++) za[i] = 0, zb[i] = (int32_t)pint("v_zero_point");
    check(qk_bmm(probs, QK_DT_U8, za, qkv[2], QK_DT_S8, zb, QK_BMM_B_KN, NH, T, T, D, &none, pv, 1),
          "qk_bmm (P V)");
    cmp_s32("pv_acc", pv, NX);
    check(qk_row_renorm(pv, NH * T, D, probs, T, rn, 1), "qk_row_renorm");
    cmp_s32("pv_renorm", rn, NX);
    check(qk_requantize_s32_s32_single(rn, NX, (int32_t)pint("pv_multiplier"),
                                       (int32_t)pint("pv_shift"),
                                       (int32_t)pint("context_zero_point"), INT32_MIN, INT32_MAX,
                                       pv),
          "qk_requantize_s32_s32_single (context)");
    int32_t *ctx = xmalloc(NX * sizeof *ctx);
    merge_heads(pv, ctx, B, T, H, D, sizeof(int32_t));
    cmp_s32("context", ctx, NX);

    /* attention output: dense(context) + x, the int16 LayerNorm */
    int16_t *h1 = residual_rows("attn", ctx, C, x, M, C);

    /* intermediate: the sums of h1's uint8 rows, rescaled, the interp GELU (int32) */
    rows_t hr = row_quantize("intermediate_x", h1, QK_DT_S16, M, C);
    row_linear_t L = row_linear("intermediate", &hr, M, C, I, acc, v);
    if (strcmp(pstr("gelu_method"), "interp") != 0) die("gelu_method must be interp", "params.txt");
    int32_t *gim = read_s32("gelu_in_multiplier", I), *gir = read_s32("gelu_in_rshift", I);
    int32_t *gm = read_s32("gelu_multiplier", I), *gr = read_s32("gelu_rshift", I);
    int32_t *gt = read_s32("gelu_table", QK_GELU_INTERP_ENTRIES);
    const qk_gelu_interp_params gp = {I, gim, gir, gm, gr, gt};
    int32_t *gelu = xmalloc(M * I * sizeof *gelu);
    check(qk_gelu_interp(&gp, v, M * I, gelu, QK_DT_S32, (int32_t)pint("gelu_zero_point"),
                         INT32_MIN, INT32_MAX),
          "qk_gelu_interp");
    cmp_s32("gelu", gelu, M * I);

    /* output: dense(gelu) + h1, the int16 LayerNorm: the block's output */
    int16_t *y = residual_rows("out", gelu, I, h1, M, C);

    free_row_linear(&L);
    free_rows(&xr), free_rows(&hr);
    for (int p = 0; p < 3; p++) free(qkv[p]);
    free(x), free(mask), free(tmp), free(acc), free(v), free(za), free(zb), free(scores);
    free(table), free(probs), free(pv), free(rn), free(ctx), free(h1), free(gim), free(gir);
    free(gm), free(gr), free(gt), free(gelu), free(y);
}

/* ---- the static form ---------------------------------------------------------------------- */
static void run_static(size_t B, size_t T, size_t C, size_t H, size_t D, size_t I) {
    const size_t M = B * T, NX = M * C, NS = B * H * T * T, NH = B * H;
    int8_t *x = read_s8("x", NX);
    uint8_t *mask = read_u8("mask", B * T * T);
    const int32_t xzp = (int32_t)pint("x_zero_point");

    /* Q, K, V: int32 sums, then the fused int8 linear (double rounding), split into heads */
    const char *lin[3] = {"query", "key", "value"}, *out[3] = {"q", "k", "v"};
    int8_t *qkv[3];
    int32_t *zeros = calloc(C, sizeof(int32_t)), *acc = xmalloc(M * I * sizeof(int32_t));
    int8_t *tmp = xmalloc(NX);
    if (zeros == NULL) die("out of memory", "");
    for (int p = 0; p < 3; p++) {
        int8_t *w = read_s8(key(lin[p], "weight"), C * C);
        int32_t *bias = read_s32(key(lin[p], "bias"), C), *mult = read_s32(key(lin[p], "multiplier"), C),
                *shift = read_s32(key(lin[p], "shift"), C);
        qk_packed_weights *pw = NULL;
        check(qk_pack_linear(w, QK_DT_S8, C, C, zeros, &pw), "qk_pack_linear");
        linear_acc(pw, x, QK_DT_S8, M, xzp, bias, acc);
        cmp_s32(key(lin[p], "acc"), acc, NX);
        const qk_epilogue ep = output_stage(QK_REQ_DOUBLE, bias, mult, shift,
                                            (int32_t)pint(key(out[p], "zero_point")));
        check(qk_linear(pw, x, QK_DT_S8, M, xzp, &ep, tmp, 1), "qk_linear (int8)");
        qkv[p] = xmalloc(NX);
        split_heads(tmp, qkv[p], B, T, H, D, 1);
        cmp_s8(out[p], qkv[p], NX);
        qk_packed_weights_free(pw);
        free(w), free(bias), free(mult), free(shift);
    }

    /* scores = Q K^T per (batch, head), exact int32; masked keys INT32_MIN */
    int32_t *za = xmalloc(NH * sizeof *za), *zb = xmalloc(NH * sizeof *zb);
    int32_t *scores = xmalloc(NS * sizeof *scores);
    const qk_epilogue none = output_stage(QK_REQ_NONE, NULL, NULL, NULL, 0);
    for (size_t i = 0; i < NH; i++) za[i] = (int32_t)pint("q_zero_point"), zb[i] = (int32_t)pint("k_zero_point");
    check(qk_bmm(qkv[0], QK_DT_S8, za, qkv[1], QK_DT_S8, zb, QK_BMM_B_NK, NH, T, D, T, &none, scores, 1),
          "qk_bmm (Q K^T)");
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t ij = 0; ij < T * T; ij++)
                if (!mask[b * T * T + ij]) scores[(b * H + h) * T * T + ij] = INT32_MIN;
    cmp_s32("scores", scores, NS);

    /* probabilities: I-BERT's integer softmax, uint8 of scale 1/256 */
    if (strcmp(pstr("softmax_method"), "ibert") != 0) die("softmax_method must be ibert", "params.txt");
    qk_softmax_params sp;
    memset(&sp, 0, sizeof sp);
    sp.method = QK_SOFTMAX_IBERT;
    sp.x0 = pint("softmax_x0");
    sp.b = pint("softmax_b");
    sp.c = pint("softmax_c");
    sp.m16 = (int32_t)pint("softmax_m16");
    sp.e16 = (int32_t)pint("softmax_e16");
    uint8_t *probs = xmalloc(NS);
    check(qk_softmax_u8(&sp, scores, QK_DT_S32, NH * T, T, probs), "qk_softmax_u8");
    cmp_u8("probs", probs, NS);

    /* P V, exact int32 */
    int32_t *pv = xmalloc(NX * sizeof *pv);
    for (size_t i = 0; i < NH; i++) za[i] = 0, zb[i] = (int32_t)pint("v_zero_point");
    check(qk_bmm(probs, QK_DT_U8, za, qkv[2], QK_DT_S8, zb, QK_BMM_B_KN, NH, T, T, D, &none, pv, 1),
          "qk_bmm (P V)");
    cmp_s32("pv_acc", pv, NX);
    if (pint("pv_renorm")) {
        /* P V divided by the integer row sums s of P, rounded half up: t = floor((512 acc + s) /
         * (2 s)) (a softmax row never sums to 0: its maximum maps to >= 1) */
        int32_t *rn = xmalloc(NX * sizeof *rn);
        check(qk_row_renorm(pv, NH * T, D, probs, T, rn, 1), "qk_row_renorm");
        memcpy(pv, rn, NX * sizeof *pv);
        free(rn);
        cmp_s32("pv_renorm", pv, NX);
    }
    check(qk_requantize_s32_s8_double(pv, NX, (int32_t)pint("pv_multiplier"), (int32_t)pint("pv_shift"),
                                      (int32_t)pint("context_zero_point"), -128, 127, tmp, NULL),
          "qk_requantize_s32_s8_double (context)");
    int8_t *ctx = xmalloc(NX);
    merge_heads(tmp, ctx, B, T, H, D, 1);
    cmp_s8("context", ctx, NX);

    /* attention output: dense(context) + x, LayerNorm */
    int8_t *h1 = residual("attn", ctx, QK_DT_S8, C, x, M, C);

    /* intermediate: int32 sums, i-GELU (uint8) */
    int8_t *wi = read_s8("intermediate_weight", I * C);
    int32_t *bi = read_s32("intermediate_bias", I), *zi = calloc(I, sizeof(int32_t));
    if (zi == NULL) die("out of memory", "");
    qk_packed_weights *pw = NULL;
    check(qk_pack_linear(wi, QK_DT_S8, I, C, zi, &pw), "qk_pack_linear");
    linear_acc(pw, h1, QK_DT_S8, M, (int32_t)pint("intermediate_x_zero_point"), bi, acc);
    cmp_s32("intermediate_acc", acc, M * I);
    int64_t *gb = read_s64("gelu_b", I), *gc = read_s64("gelu_c", I), *gs = read_s64("gelu_shift", I);
    int32_t *gm = read_s32("gelu_multiplier", I), *gr = read_s32("gelu_rshift", I);
    const qk_gelu_ibert_params gp = {I, gb, gc, gs, gm, gr};
    uint8_t *gelu = xmalloc(M * I);
    check(qk_gelu_ibert(&gp, acc, QK_DT_S32, 0, M * I, gelu, QK_DT_U8, (int32_t)pint("gelu_zero_point"),
                        0, 255),
          "qk_gelu_ibert");
    cmp_u8("gelu", gelu, M * I);

    /* output: dense(gelu) + h1, LayerNorm: the block's output */
    int8_t *y = residual("out", gelu, QK_DT_U8, I, h1, M, C);

    qk_packed_weights_free(pw);
    for (int p = 0; p < 3; p++) free(qkv[p]);
    free(x), free(mask), free(zeros), free(acc), free(tmp), free(za), free(zb), free(scores);
    free(probs), free(pv), free(ctx), free(h1), free(wi), free(bi), free(zi), free(gb), free(gc);
    free(gs), free(gm), free(gr), free(gelu), free(y);
}

int main(int argc, char **argv) {
    g_dir = argc > 1 ? argv[1] : "data/block0";
    load_params();
    const size_t B = (size_t)pint("batch"), T = (size_t)pint("tokens"), C = (size_t)pint("hidden"),
                 H = (size_t)pint("heads"), D = (size_t)pint("head_dim"),
                 I = (size_t)pint("intermediate");
    if (B < 1 || T < 1 || H < 1 || D < 1 || H * D != C || I < 1) die("bad sizes", "params.txt");
    const char *form = pfind("form") != NULL ? pstr("form") : "static";   /* absent: static */
    const int rows = strcmp(form, "token_rows") == 0;
    if (!rows && strcmp(form, "static") != 0)
        die("form must be static or token_rows", "params.txt");
    printf("block: batch %zu, tokens %zu, hidden %zu = %zu heads x %zu, intermediate %zu, %s form "
           "(%s)\n", B, T, C, H, D, I, rows ? "token-rows" : "static", qk_isa_name(qk_isa()));
    if (rows)
        run_rows(B, T, C, H, D, I);
    else
        run_static(B, T, C, H, D, I);
    printf("%ld tensors, %ld values: %ld differ from the goldens\n", g_tensors, g_values, g_bad);
    for (size_t i = 0; i < g_nparams; i++) free(g_keys[i]), free(g_vals[i]);
    free(g_keys), free(g_vals);
    return g_bad == 0 ? 0 : 1;
}
