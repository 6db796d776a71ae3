/* layernorm_golden.c -- reads a data/quantized/ folder written by scripts/collect_real_data.py
 * (SPEC section 8), prepares the integer LayerNorm from the text files exactly as Python does,
 * runs it on every vector and compares:
 *   - with the integer goldens (golden_int_<method>_vecNNN.txt): bit for bit;
 *   - with the float goldens (golden_ref_vecNNN.txt): SQNR and max abs error, printed.
 * Exit status 0 when every integer golden matches, 1 otherwise (2 for unreadable files).
 *
 * Build: make build/layernorm_golden; run: build/layernorm_golden [data/quantized]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qkernels.h"

typedef struct {
    char **line;
    int n, pos;
    char path[1024];
} lines_t;

static void die(const char *path, int line, const char *what) {
    fprintf(stderr, "%s:%d: %s\n", path, line, what);
    exit(2);
}

static lines_t load(const char *dir, const char *name) {
    lines_t L = {NULL, 0, 0, {0}};
    snprintf(L.path, sizeof L.path, "%s/%s", dir, name);
    FILE *f = fopen(L.path, "r");
    if (f == NULL) die(L.path, 0, "cannot open");
    char buf[512];
    int cap = 0;
    while (fgets(buf, sizeof buf, f)) {
        if (L.n == cap) {
            cap = cap ? 2 * cap : 512;
            L.line = realloc(L.line, (size_t)cap * sizeof *L.line);
            if (L.line == NULL) die(L.path, L.n, "out of memory");
        }
        buf[strcspn(buf, "\r\n")] = 0;
        L.line[L.n] = malloc(strlen(buf) + 1);
        if (L.line[L.n] == NULL) die(L.path, L.n, "out of memory");
        strcpy(L.line[L.n++], buf);
    }
    fclose(f);
    return L;
}

static void unload(lines_t *L) {
    for (int i = 0; i < L->n; i++) free(L->line[i]);
    free(L->line);
}

static const char *next(lines_t *L) {
    if (L->pos >= L->n) die(L->path, L->pos + 1, "unexpected end of file");
    return L->line[L->pos++];
}
static void comment(lines_t *L) {
    if (next(L)[0] != '#') die(L->path, L->pos, "expected a comment line");
}
static long get_long(lines_t *L) {
    const char *s = next(L);
    char *end;
    const long v = strtol(s, &end, 10);
    if (end == s || *end != 0) die(L->path, L->pos, "expected an integer");
    return v;
}
static double get_double(lines_t *L) {
    const char *s = next(L);
    char *end;
    const double v = strtod(s, &end);
    if (end == s || *end != 0) die(L->path, L->pos, "expected a number");
    return v;
}
static double get_labelled(lines_t *L, const char *label) {
    const char *s = next(L);
    if (strncmp(s, label, strlen(label)) != 0) die(L->path, L->pos, label);
    return strtod(s + strlen(label), NULL);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "data/quantized";
    char name[256];

    lines_t g = load(dir, "global_params.txt");
    comment(&g);
    const long C = get_long(&g), N = get_long(&g);
    const float S = (float)get_double(&g);
    const long zp = get_long(&g);
    unload(&g);
    if (C < 1 || C > QK_LAYERNORM_MAX_CHANNELS || N < 0) die(dir, 0, "bad hidden_dim/num_vectors");

    int32_t *alpha = malloc((size_t)C * sizeof *alpha);
    float *gamma = malloc((size_t)C * sizeof *gamma), *beta = malloc((size_t)C * sizeof *beta);
    int32_t *gbuf = malloc((size_t)C * sizeof *gbuf);
    int64_t *bbuf = malloc((size_t)C * sizeof *bbuf);
    uint8_t *abuf = malloc((size_t)C), *q = malloc((size_t)(N * C) + 1);
    int8_t *y = malloc((size_t)(N * C) + 1), *gold = malloc((size_t)C);
    double *ref = malloc((size_t)(N * C + 1) * sizeof *ref);
    float *raw = malloc((size_t)C * sizeof *raw);
    uint8_t *requant = malloc((size_t)C);
    long quant_mismatches = 0;
    if (!alpha || !gamma || !beta || !gbuf || !bbuf || !abuf || !q || !y || !gold || !ref ||
        !raw || !requant)
        die(dir, 0, "out of memory");

    /* seed convention -> kernel convention: s = S * 2^min(alpha_seed), alpha = alpha_seed - min */
    lines_t a = load(dir, "alpha_factors.txt");
    comment(&a);
    if (get_long(&a) != C) die(a.path, a.pos, "count differs from hidden_dim");
    int32_t amin = 0;
    for (long c = 0; c < C; c++) {
        alpha[c] = (int32_t)get_long(&a);
        if (alpha[c] < amin) amin = alpha[c];
    }
    unload(&a);
    for (long c = 0; c < C; c++) alpha[c] -= amin;
    const float scale = ldexpf(S, amin);

    lines_t w = load(dir, "layernorm_weights.txt");
    if (get_long(&w) != C) die(w.path, w.pos, "count differs from hidden_dim");
    for (long c = 0; c < C; c++) gamma[c] = (float)get_double(&w);
    for (long c = 0; c < C; c++) beta[c] = (float)get_double(&w);
    unload(&w);

    float eps = 0.0f, out_scale = 0.0f;
    long out_zp = 0;
    char methods[256] = "";
    lines_t p = load(dir, "layernorm_int_params.txt");
    comment(&p);
    while (p.pos < p.n) {
        char key[64], val[256];
        if (sscanf(next(&p), "%63s %255s", key, val) != 2) continue;
        if (strcmp(key, "eps") == 0) eps = (float)strtod(val, NULL);
        if (strcmp(key, "out_scale") == 0) out_scale = (float)strtod(val, NULL);
        if (strcmp(key, "out_zero_point") == 0) out_zp = strtol(val, NULL, 10);
        if (strcmp(key, "methods") == 0) snprintf(methods, sizeof methods, "%s", val);
    }
    unload(&p);

    for (long i = 0; i < N; i++) {
        snprintf(name, sizeof name, "vector_%03ld.txt", i);
        lines_t v = load(dir, name);
        comment(&v);
        if (get_long(&v) != C) die(v.path, v.pos, "count differs from hidden_dim");
        for (long c = 0; c < C; c++) {
            const long x = get_long(&v);
            if (x < 0 || x > 255) die(v.path, v.pos, "not a uint8");
            q[i * C + c] = (uint8_t)x;
        }
        unload(&v);
        snprintf(name, sizeof name, "raw_input_vectors/raw_vec_%03ld.txt", i);
        lines_t rv = load(dir, name);
        if (get_long(&rv) != C) die(rv.path, rv.pos, "count differs from hidden_dim");
        for (long c = 0; c < C; c++) raw[c] = (float)get_double(&rv);
        unload(&rv);
        if (qk_ptf_quantize_f32_u8(raw, 1, (size_t)C, scale, alpha, (int32_t)zp, requant, NULL) !=
            QK_OK)
            die(rv.path, 0, "qk_ptf_quantize_f32_u8 failed");
        for (long c = 0; c < C; c++) quant_mismatches += requant[c] != q[i * C + c];
        snprintf(name, sizeof name, "golden_ref_vec%03ld.txt", i);
        lines_t r = load(dir, name);
        comment(&r);
        get_labelled(&r, "Global S:");
        get_labelled(&r, "Global ZP:");
        get_labelled(&r, "ORIGINAL Mean:");
        get_labelled(&r, "ORIGINAL Variance:");
        get_labelled(&r, "Reconstructed Mean:");
        get_labelled(&r, "Reconstructed Variance:");
        get_labelled(&r, "Output:");
        for (long c = 0; c < C; c++) ref[i * C + c] = get_double(&r);
        unload(&r);
    }
    printf("%s: %ld vectors x %ld channels, S=%.10f zp=%ld, s=%.9g, out_scale=%.9g\n", dir, N, C,
           (double)S, zp, (double)scale, (double)out_scale);
    printf("%-14s qk_ptf_quantize_f32_u8(raw_vec) vs vector files: %s (%ld of %ld differ)\n",
           "ptf_quantize", quant_mismatches ? "MISMATCH" : "bit-exact", quant_mismatches, N * C);

    int failures = quant_mismatches != 0;
    for (char *m = strtok(methods, ","); m != NULL; m = strtok(NULL, ",")) {
        qk_layernorm_method method;
        if (strcmp(m, "exact") == 0) method = QK_LAYERNORM_EXACT;
        else if (strcmp(m, "sole") == 0) method = QK_LAYERNORM_SOLE_ROUND;
        else if (strcmp(m, "sole_truncate") == 0) method = QK_LAYERNORM_SOLE_TRUNCATE;
        else die(dir, 0, "unknown method in layernorm_int_params.txt");
        qk_layernorm_params prm;
        qk_status st = qk_layernorm_prepare(&prm, method, (size_t)C, scale, alpha, (int32_t)zp,
                                            gamma, beta, eps, out_scale, (int32_t)out_zp, gbuf,
                                            bbuf, abuf);
        if (st == QK_OK) st = qk_layernorm_ptf_u8_s8(&prm, q, (size_t)N, y);
        if (st != QK_OK) {
            fprintf(stderr, "%s: %s\n", m, qk_status_str(st));
            return 2;
        }
        /* the prepared integers must equal Python's (layernorm_int_<method>.txt), when present */
        snprintf(name, sizeof name, "%s/layernorm_int_%s.txt", dir, m);
        FILE *pf = fopen(name, "r");
        if (pf != NULL) {
            fclose(pf);
            snprintf(name, sizeof name, "layernorm_int_%s.txt", m);
            lines_t L = load(dir, name);
            comment(&L);
            comment(&L);
            int same = get_long(&L) == C && get_long(&L) == prm.shift &&
                       get_long(&L) == prm.eps_term && get_long(&L) == prm.gamma_multiplier &&
                       get_long(&L) == prm.beta_multiplier;
            for (long c = 0; same && c < C; c++) same = get_long(&L) == prm.gamma[c];
            for (long c = 0; same && c < C; c++) same = get_long(&L) == prm.beta[c];
            for (int k = 0; same && k < 256; k++) same = get_long(&L) == (long)prm.inv_sqrt_lut[k];
            unload(&L);
            printf("%-14s prepared integers (C qk_layernorm_prepare vs %s): %s\n", m, name,
                   same ? "identical" : "DIFFERENT");
            failures += !same;
        }
        long mismatches = 0;
        double sig = 0, noise = 0, maxerr = 0;
        for (long i = 0; i < N; i++) {
            snprintf(name, sizeof name, "golden_int_%s_vec%03ld.txt", m, i);
            lines_t v = load(dir, name);
            comment(&v);
            if (get_long(&v) != C) die(v.path, v.pos, "count differs from hidden_dim");
            for (long c = 0; c < C; c++) gold[c] = (int8_t)get_long(&v);
            unload(&v);
            for (long c = 0; c < C; c++) {
                if (gold[c] != y[i * C + c]) {
                    if (mismatches++ < 5)
                        fprintf(stderr, "%s vector %ld channel %ld: golden %d, C %d\n", m, i, c,
                                gold[c], y[i * C + c]);
                }
                const double yf = (double)out_scale * (y[i * C + c] - out_zp);
                const double d = yf - ref[i * C + c];
                sig += ref[i * C + c] * ref[i * C + c];
                noise += d * d;
                if (fabs(d) > maxerr) maxerr = fabs(d);
            }
        }
        printf("%-14s integer golden: %s (%ld of %ld differ)  vs float golden: SQNR %.2f dB, "
               "max abs err %.4f\n", m, mismatches ? "MISMATCH" : "bit-exact", mismatches, N * C,
               noise > 0 ? 10 * log10(sig / noise) : INFINITY, maxerr);
        failures += mismatches != 0;
    }
    free(alpha); free(gamma); free(beta); free(gbuf); free(bbuf); free(abuf); free(q); free(y);
    free(gold); free(ref); free(raw); free(requant);
    printf("%s\n", failures ? "FAILED" : "all integer goldens reproduced bit for bit");
    return failures ? 1 : 0;
}
