/* model_golden.c -- run every conv and linear layer (8-bit, and int16 x int8: conv2d_s16 /
 * linear_s16) of an exported model from its model.h / model.c (IntegerModel.export) with the C
 * library, and compare with the golden outputs, bit for bit. No Python, no file parsing: the model is compiled in. The other layers (pooling, add,
 * softmax, tables...) have no kernel in the C library: it names them ("golden only"), as the
 * export's README.md and report.json (c_library) do.
 *
 *   cc -std=c11 -I csrc/include -I out/resnet csrc/examples/model_golden.c out/resnet/model.c \
 *      build/libqkernels.a -lm -pthread -o model_golden && ./model_golden
 *
 * It walks the table qk_model_layers (name, kind, scalars, arrays) that model.h declares, so it
 * works for any exported model; a bench for one model would use the QK_<LAYER>_<KEY> macros and
 * the qk_<layer>_<key> arrays directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static const qk_model_array *array_of(const qk_model_layer *L, const char *name) {
    for (size_t i = 0; i < L->n_arrays; i++)
        if (strcmp(L->arrays[i].name, name) == 0) return &L->arrays[i];
    return NULL;
}

static int scalar(const qk_model_layer *L, const char *name, double *v) {
    for (size_t i = 0; i < L->n_scalars; i++)
        if (strcmp(L->scalars[i].name, name) == 0) {
            *v = L->scalars[i].value;
            return 1;
        }
    return 0;
}

static long iscalar(const qk_model_layer *L, const char *name, int *ok) {
    double v = 0;
    if (!scalar(L, name, &v)) *ok = 0;
    return (long)v;
}

/* The geometry of a conv layer of input x (NCHW) from its scalars. */
static qk_conv2d_shape conv_shape(const qk_model_layer *L, const qk_model_array *x, int *ok) {
    const qk_conv2d_shape s = {x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                               (size_t)iscalar(L, "stride_0", ok), (size_t)iscalar(L, "stride_1", ok),
                               (size_t)iscalar(L, "padding_tlbr_0", ok),
                               (size_t)iscalar(L, "padding_tlbr_1", ok),
                               (size_t)iscalar(L, "padding_tlbr_2", ok),
                               (size_t)iscalar(L, "padding_tlbr_3", ok),
                               (size_t)iscalar(L, "dilation_0", ok), (size_t)iscalar(L, "dilation_1", ok)};
    return s;
}

/* Runs one conv2d_s16 / linear_s16 layer (int16 x int8, int64 sums: TFLite 16x8, CMSIS-NN
 * s16); returns the number of outputs that differ, -1 on error. */
static long run_layer_s16(const qk_model_layer *L) {
    const int conv = strcmp(L->kind, "conv2d_s16") == 0;
    const qk_model_array *w = array_of(L, "weights"), *x = array_of(L, "input"),
                         *y = array_of(L, "output"), *a;
    if (w == NULL || x == NULL || y == NULL || w->dtype != QK_MODEL_S8 ||
        x->dtype != QK_MODEL_S16 || y->dtype != QK_MODEL_S16)
        return -1;
    int ok = 1;
    qk_epilogue_s16 ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = (qk_requant_scheme)iscalar(L, "scheme", &ok);
    ep.act_min = (int32_t)iscalar(L, "act_min", &ok);
    ep.act_max = (int32_t)iscalar(L, "act_max", &ok);
    if ((a = array_of(L, "requant_scale")) != NULL && a->dtype == QK_MODEL_F64)
        ep.scale64 = (const double *)a->data;
    if ((a = array_of(L, "multiplier")) != NULL) ep.multiplier = (const int32_t *)a->data;
    if ((a = array_of(L, "shift")) != NULL) ep.shift = (const int32_t *)a->data;
    if ((a = array_of(L, "bias")) != NULL && a->dtype == QK_MODEL_S64) ep.bias = (const int64_t *)a->data;
    int16_t *out = malloc(y->count ? y->count * sizeof(int16_t) : 1);
    if (out == NULL || !ok) {
        free(out);
        return -1;
    }
    qk_status st;
    if (conv) {
        const qk_conv2d_shape s = conv_shape(L, x, &ok);
        st = qk_conv2d_s16s8(&s, (const int8_t *)w->data, w->shape[0], w->shape[2], w->shape[3],
                             (size_t)iscalar(L, "groups", &ok), (const int16_t *)x->data, &ep, out);
    } else {
        st = qk_linear_s16s8((const int8_t *)w->data, w->shape[0], w->shape[1],
                             (const int16_t *)x->data, x->count / w->shape[1], &ep, out);
    }
    if (st != QK_OK || !ok) {
        fprintf(stderr, "%s: %s\n", L->name, ok ? qk_status_str(st) : "missing scalars");
        free(out);
        return -1;
    }
    long bad = 0;
    for (size_t i = 0; i < y->count; i++) bad += out[i] != ((const int16_t *)y->data)[i];
    free(out);
    return bad;
}

/* Runs one conv2d / linear layer; returns the number of outputs that differ, -1 on error. */
static long run_layer(const qk_model_layer *L) {
    const int conv = strcmp(L->kind, "conv2d") == 0;
    const qk_model_array *w = array_of(L, "weights"), *x = array_of(L, "input"),
                         *y = array_of(L, "output");
    if (w == NULL || x == NULL || y == NULL || w->dtype != QK_MODEL_S8) return -1;
    int ok = 1;
    const int scheme = (int)iscalar(L, "scheme", &ok);
    const int32_t xzp = (int32_t)iscalar(L, "x_zero_point", &ok),
                  ozp = (int32_t)iscalar(L, "out_zero_point", &ok),
                  amin = (int32_t)iscalar(L, "act_min", &ok), amax = (int32_t)iscalar(L, "act_max", &ok);
    if (!ok) return -1;
    const size_t n = w->shape[0];
    int32_t *wzp = calloc(n, sizeof(int32_t));
    const qk_model_array *wz = array_of(L, "w_zero_point");
    if (wzp == NULL) return -1;
    if (wz != NULL && wz->dtype == QK_MODEL_S32)
        for (size_t o = 0; o < n; o++) wzp[o] = ((const int32_t *)wz->data)[wz->count == 1 ? 0 : o];
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = (qk_requant_scheme)scheme;
    ep.out_type = y->dtype == QK_MODEL_U8 ? QK_DT_U8 : QK_DT_S8;
    const qk_model_array *a;
    if ((a = array_of(L, "requant_scale")) != NULL) {   /* float32, or float64 (QK_REQ_FP64) */
        if (a->dtype == QK_MODEL_F64)
            ep.scale64 = (const double *)a->data;
        else
            ep.scale = (const float *)a->data;
    }
    if ((a = array_of(L, "float_bias")) != NULL) ep.float_bias = (const float *)a->data;
    if ((a = array_of(L, "multiplier")) != NULL) ep.multiplier = (const int32_t *)a->data;
    if ((a = array_of(L, "shift")) != NULL) ep.shift = (const int32_t *)a->data;
    if ((a = array_of(L, "bias")) != NULL) ep.bias = (const int32_t *)a->data;
    ep.zero_point = ozp;
    ep.act_min = amin;
    ep.act_max = amax;
    const qk_dtype xt = x->dtype == QK_MODEL_U8 ? QK_DT_U8 : QK_DT_S8;
    void *out = malloc(y->count ? y->count : 1);
    qk_packed_weights *pw = NULL;
    qk_status st;
    if (conv) {
        st = qk_pack_conv2d((const int8_t *)w->data, QK_DT_S8, n, w->shape[1], w->shape[2],
                            w->shape[3], (size_t)iscalar(L, "groups", &ok), wzp, &pw);
        const qk_conv2d_shape s = conv_shape(L, x, &ok);
        if (st == QK_OK && ok) st = qk_conv2d(&s, pw, x->data, xt, xzp, &ep, out, 1);
    } else {
        st = qk_pack_linear((const int8_t *)w->data, QK_DT_S8, n, w->shape[1], wzp, &pw);
        if (st == QK_OK) st = qk_linear(pw, x->data, xt, x->count / w->shape[1], xzp, &ep, out, 1);
    }
    qk_packed_weights_free(pw);
    free(wzp);
    if (st != QK_OK || !ok) {
        fprintf(stderr, "%s: %s\n", L->name, ok ? qk_status_str(st) : "missing scalars");
        free(out);
        return -1;
    }
    long bad = 0;
    for (size_t i = 0; i < y->count; i++) bad += ((const uint8_t *)out)[i] != ((const uint8_t *)y->data)[i];
    free(out);
    return bad;
}

int main(void) {
    size_t layers = 0, outputs = 0, skipped = 0;
    long bad = 0;
    for (size_t i = 0; i < qk_model_n_layers; i++) {
        const qk_model_layer *L = &qk_model_layers[i];
        const int s16 = strcmp(L->kind, "conv2d_s16") == 0 || strcmp(L->kind, "linear_s16") == 0;
        if (strcmp(L->kind, "conv2d") != 0 && strcmp(L->kind, "linear") != 0 && !s16) {
            /* no kernel in the C library: the export holds its parameters and goldens only */
            printf("%-24s %-14s golden only (no C kernel)\n", L->name, L->kind);
            skipped++;
            continue;
        }
        const long b = s16 ? run_layer_s16(L) : run_layer(L);
        if (b < 0) {
            fprintf(stderr, "%s: could not run\n", L->name);
            return 1;
        }
        printf("%-24s %-7s %8zu outputs, %ld differ\n", L->name, L->kind, array_of(L, "output")->count, b);
        layers++;
        outputs += array_of(L, "output")->count;
        bad += b;
    }
    printf("%zu conv / linear layers, %zu outputs, %ld differ from the golden outputs; %zu other "
           "layers golden only\n", layers, outputs, bad, skipped);
    return bad == 0 && layers > 0 ? 0 : 1;
}
