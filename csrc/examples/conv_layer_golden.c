/* conv_layer_golden.c -- run one exported conv layer from its text files with the C library and
 * compare with the golden output, bit for bit. No Python involved.
 *
 *   cc -std=c11 -I csrc/include csrc/examples/conv_layer_golden.c build/libqkernels.a -lm -pthread
 *   ./a.out out/resnet_w8a8/layers/stem_0
 *
 * The layer directory is what IntegerModel.export() writes: params.txt (key value lines; the
 * requantization scheme by its name),
 * weights.txt, input.txt, output.txt, and the epilogue arrays (requant_scale.txt + float_bias.txt,
 * or multiplier.txt + shift.txt, and bias.txt), each "# comment / # shape ... / count / values".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qkernels.h"

typedef struct {
    double *v;
    size_t n;
} array;

/* Reads a one-number-a-line file; returns 0 when the file does not exist (optional arrays). */
static int read_array(const char *dir, const char *name, array *a) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.txt", dir, name);
    FILE *f = fopen(path, "r");
    a->v = NULL;
    a->n = 0;
    if (!f) return 0;
    char line[256];
    long count = -1;
    size_t i = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        if (count < 0) {
            count = strtol(line, NULL, 10);
            a->v = calloc(count > 0 ? (size_t)count : 1, sizeof(double));
            if (!a->v) { fclose(f); return -1; }
            continue;
        }
        if (i < (size_t)count) a->v[i++] = strtod(line, NULL);
    }
    fclose(f);
    if (count < 0 || i != (size_t)count) {
        fprintf(stderr, "%s: expected %ld values, read %zu\n", path, count, i);
        return -1;
    }
    a->n = i;
    return 1;
}

/* params.txt: "key v1 v2 ..."; fills up to max values, returns how many. */
static int param(const char *dir, const char *key, long *out, int max) {
    char path[4096], line[512];
    snprintf(path, sizeof path, "%s/params.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int found = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            char *p = line + klen;
            found = 0;
            while (found < max) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p) break;
                out[found++] = v;
                p = end;
            }
            break;
        }
    }
    fclose(f);
    return found;
}

/* The requantization scheme params.txt names ("fp32", "double_round", ...); -1 if unknown. */
static int scheme_of(const char *dir) {
    static const char *const names[] = {"none", "fp32", "double_round", "single_round",
                                        "shift_half_up", "shift_half_even", "shift_half_away",
                                        "shift_floor"};
    char path[4096], line[512], name[64] = "";
    snprintf(path, sizeof path, "%s/params.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "scheme %63s", name) == 1) break;
    fclose(f);
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(name, names[i]) == 0) return i; /* the qk_requant_scheme numbers */
    return -1;
}

/* 1 when params.txt says the activations (input and output) are int8, 0 for uint8. */
static int activations_signed(const char *dir) {
    char path[4096], line[512];
    snprintf(path, sizeof path, "%s/params.txt", dir);
    FILE *f = fopen(path, "r");
    int s = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "x_dtype int8", 12) == 0) s = 1;
    fclose(f);
    return s;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LAYER_DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    long in_shape[4], w_shape[4], out_shape[4], stride[2], pad[2], dil[2], groups, xzp, ozp, amin,
        amax;
    const int scheme = scheme_of(dir);
    if (param(dir, "input_shape", in_shape, 4) != 4 || param(dir, "weight_shape", w_shape, 4) != 4 ||
        param(dir, "output_shape", out_shape, 4) != 4 || param(dir, "stride", stride, 2) != 2 ||
        param(dir, "padding", pad, 2) != 2 || param(dir, "dilation", dil, 2) != 2 ||
        param(dir, "groups", &groups, 1) != 1 || scheme < 0 ||
        param(dir, "x_zero_point", &xzp, 1) != 1 || param(dir, "out_zero_point", &ozp, 1) != 1 ||
        param(dir, "act_min", &amin, 1) != 1 || param(dir, "act_max", &amax, 1) != 1) {
        fprintf(stderr, "%s/params.txt: missing keys (is this a conv layer?)\n", dir);
        return 2;
    }
    array w, x, y, rs, fb, mult, shift, bias;
    if (read_array(dir, "weights", &w) != 1 || read_array(dir, "input", &x) != 1 ||
        read_array(dir, "output", &y) != 1 || read_array(dir, "requant_scale", &rs) < 0 ||
        read_array(dir, "float_bias", &fb) < 0 || read_array(dir, "multiplier", &mult) < 0 ||
        read_array(dir, "shift", &shift) < 0 || read_array(dir, "bias", &bias) < 0) {
        fprintf(stderr, "%s: missing or bad array files\n", dir);
        return 2;
    }
    const size_t oc = (size_t)w_shape[0];
    int8_t *wq = malloc(w.n);
    uint8_t *xq = malloc(x.n);
    uint8_t *yq = malloc(y.n);
    int32_t *wzp = calloc(oc, sizeof(int32_t));
    float *f_rs = calloc(oc, sizeof(float)), *f_fb = calloc(oc, sizeof(float));
    int32_t *i_m = calloc(oc, sizeof(int32_t)), *i_sh = calloc(oc, sizeof(int32_t)),
            *i_b = calloc(oc, sizeof(int32_t));
    if (!wq || !xq || !yq || !wzp || !f_rs || !f_fb || !i_m || !i_sh || !i_b) return 3;
    for (size_t i = 0; i < w.n; i++) wq[i] = (int8_t)w.v[i];
    const int sgn = activations_signed(dir);
    const qk_dtype at = sgn ? QK_DT_S8 : QK_DT_U8;
    /* the same bytes serve int8 and uint8 data: store the value's two's-complement byte */
    for (size_t i = 0; i < x.n; i++) xq[i] = (uint8_t)(int)x.v[i];
    for (size_t o = 0; o < oc; o++) {
        if (rs.n) f_rs[o] = (float)rs.v[rs.n == 1 ? 0 : o];
        if (fb.n) f_fb[o] = (float)fb.v[o];
        if (mult.n) i_m[o] = (int32_t)mult.v[mult.n == 1 ? 0 : o];
        if (shift.n) i_sh[o] = (int32_t)shift.v[shift.n == 1 ? 0 : o];
        if (bias.n) i_b[o] = (int32_t)bias.v[o];
    }
    qk_packed_weights *pw = NULL;
    qk_status st = qk_pack_conv2d(wq, QK_DT_S8, oc, (size_t)w_shape[1], (size_t)w_shape[2],
                                  (size_t)w_shape[3], (size_t)groups, wzp, &pw);
    if (st != QK_OK) {
        fprintf(stderr, "qk_pack_conv2d: %s\n", qk_status_str(st));
        return 1;
    }
    qk_conv2d_shape s = {(size_t)in_shape[0], (size_t)in_shape[1], (size_t)in_shape[2],
                         (size_t)in_shape[3], (size_t)stride[0], (size_t)stride[1], (size_t)pad[0],
                         (size_t)pad[1], (size_t)pad[0], (size_t)pad[1], (size_t)dil[0],
                         (size_t)dil[1]};
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = (qk_requant_scheme)scheme;
    ep.out_type = at;
    ep.bias = bias.n ? i_b : NULL;
    ep.float_bias = fb.n ? f_fb : NULL;
    ep.scale = rs.n ? f_rs : NULL;
    ep.multiplier = mult.n ? i_m : NULL;
    ep.shift = shift.n ? i_sh : NULL;
    ep.zero_point = (int32_t)ozp;
    ep.act_min = (int32_t)amin;
    ep.act_max = (int32_t)amax;
    st = qk_conv2d(&s, pw, xq, at, (int32_t)xzp, &ep, yq, 1);
    if (st != QK_OK) {
        fprintf(stderr, "qk_conv2d: %s\n", qk_status_str(st));
        return 1;
    }
    size_t bad = 0;
    for (size_t i = 0; i < y.n; i++) bad += yq[i] != (uint8_t)(int)y.v[i];
    printf("%s: %zu x %zu x %zu x %zu -> %zu outputs, %zu differ from the golden output\n", dir,
           s.batch, s.in_c, s.in_h, s.in_w, y.n, bad);
    qk_packed_weights_free(pw);
    free(wq); free(xq); free(yq); free(wzp); free(f_rs); free(f_fb); free(i_m); free(i_sh); free(i_b);
    free(w.v); free(x.v); free(y.v); free(rs.v); free(fb.v); free(mult.v); free(shift.v); free(bias.v);
    return bad == 0 ? 0 : 1;
}
