/* elementwise.c -- registers the quantize / dequantize / fake-quantize / requantize kernels as
 * NumPy ufuncs. Each ufunc takes its parameters as operands (they broadcast), one loop per input
 * dtype; the output dtype is part of the ufunc's name (quantize_pt2e_u8, requantize_double_s8).
 */
#include "qk_numpy.h"

#include <fenv.h>
#include <stdio.h>
#include <string.h>

/* ---- adapters: the typed C kernels behind the uniform qk_py_kernel signature ------------- */
#define QK_PY_QUANTIZE(IN, INT, OUT, OUTT, FLAV)                                                 \
    static qk_status qk_py_quantize_##IN##_##OUT##_##FLAV(const void *x, size_t n,             \
                                                          const qk_py_params *p, void *y) {    \
        return qk_quantize_##IN##_##OUT##_##FLAV((const INT *)x, n, p->scale, p->zero_point,    \
                                                 p->qmin, p->qmax, (OUTT *)y, NULL);            \
    }
#define QK_PY_QUANTIZE_FL(IN, INT, OUT, OUTT) QK__FOR_EACH_FLAVOUR(QK_PY_QUANTIZE, IN, INT, OUT, OUTT)
#define QK_PY_QUANTIZE_IN(OUT, OUTT)           \
    QK_PY_QUANTIZE_FL(f32, float, OUT, OUTT)   \
    QK_PY_QUANTIZE_FL(f64, double, OUT, OUTT)

#define QK_PY_DEQUANTIZE(IN, INT)                                                              \
    static qk_status qk_py_dequantize_##IN(const void *x, size_t n, const qk_py_params *p,     \
                                           void *y) {                                          \
        return qk_dequantize_##IN##_f32((const INT *)x, n, p->scale, p->zero_point, (float *)y); \
    }

#define QK_PY_REQUANTIZE(OUT, OUTT)                                                              \
    static qk_status qk_py_req_double_##OUT(const void *x, size_t n, const qk_py_params *p,     \
                                            void *y) {                                          \
        return qk_requantize_s32_##OUT##_double((const int32_t *)x, n, p->multiplier, p->shift, \
                                                p->zero_point, p->qmin, p->qmax, (OUTT *)y,     \
                                                NULL);                                          \
    }                                                                                           \
    static qk_status qk_py_req_single_##OUT(const void *x, size_t n, const qk_py_params *p,     \
                                            void *y) {                                          \
        return qk_requantize_s32_##OUT##_single((const int32_t *)x, n, p->multiplier, p->shift, \
                                                p->zero_point, p->qmin, p->qmax, (OUTT *)y);    \
    }                                                                                           \
    static qk_status qk_py_req_fp32_##OUT(const void *x, size_t n, const qk_py_params *p,       \
                                          void *y) {                                            \
        return qk_requantize_s32_##OUT##_fp32((const int32_t *)x, n, p->scale, p->zero_point,   \
                                              p->qmin, p->qmax, (OUTT *)y);                     \
    }                                                                                           \
    QK_PY_REQ_SHIFT(OUT, OUTT, half_up)                                                         \
    QK_PY_REQ_SHIFT(OUT, OUTT, half_even)                                                       \
    QK_PY_REQ_SHIFT(OUT, OUTT, half_away)                                                       \
    QK_PY_REQ_SHIFT(OUT, OUTT, floor)
#define QK_PY_REQ_SHIFT(OUT, OUTT, RND)                                                          \
    static qk_status qk_py_req_shift_##RND##_##OUT(const void *x, size_t n,                     \
                                                   const qk_py_params *p, void *y) {            \
        return qk_requantize_s32_##OUT##_shift_##RND((const int32_t *)x, n, p->shift,           \
                                                     p->zero_point, p->qmin, p->qmax,           \
                                                     (OUTT *)y);                                \
    }

QK_PY_QUANTIZE_IN(u8, uint8_t)
QK_PY_QUANTIZE_IN(s8, int8_t)
QK_PY_QUANTIZE_IN(u16, uint16_t)
QK_PY_QUANTIZE_IN(s16, int16_t)
QK_PY_QUANTIZE_IN(s32, int32_t)
QK_PY_DEQUANTIZE(u8, uint8_t)
QK_PY_DEQUANTIZE(s8, int8_t)
QK_PY_DEQUANTIZE(u16, uint16_t)
QK_PY_DEQUANTIZE(s16, int16_t)
QK_PY_DEQUANTIZE(s32, int32_t)
QK_PY_REQUANTIZE(u8, uint8_t)
QK_PY_REQUANTIZE(s8, int8_t)
QK_PY_REQUANTIZE(u16, uint16_t)
QK_PY_REQUANTIZE(s16, int16_t)
QK_PY_REQUANTIZE(s32, int32_t)

static qk_status qk_py_fake_f32(const void *x, size_t n, const qk_py_params *p, void *y) {
    return qk_fake_quantize_f32_torch((const float *)x, n, p->scale, p->zero_point, p->qmin,
                                      p->qmax, (float *)y, NULL);
}
static qk_status qk_py_fake_f64(const void *x, size_t n, const qk_py_params *p, void *y) {
    return qk_fake_quantize_f64_torch((const double *)x, n, p->scale, p->zero_point, p->qmin,
                                      p->qmax, (double *)y, NULL);
}

static qk_status qk_py_acc_to_f32(const void *x, size_t n, const qk_py_params *p, void *y) {
    return qk_accumulator_to_f32_fma((const int32_t *)x, n, p->scale, p->bias, (float *)y);
}

/* quantize_multiplier has two outputs: its own small loop. */
static void qk_py_quantize_multiplier_loop(char **args, npy_intp const *dims,
                                           npy_intp const *steps, void *data) {
    (void)data;
    int bad = 0;
    for (npy_intp i = 0; i < dims[0]; i++) {
        double m;
        int32_t m0 = 0, shift = 0;
        memcpy(&m, args[0] + i * steps[0], sizeof m);
        if (qk_quantize_multiplier(m, &m0, &shift) != QK_OK) bad = 1;
        memcpy(args[1] + i * steps[1], &m0, 4);
        memcpy(args[2] + i * steps[2], &shift, 4);
    }
    if (bad) feraiseexcept(FE_INVALID);
}

/* ---- the table ---------------------------------------------------------------------------- */
enum { QK_MAX_LOOPS = 5, QK_MAX_UFUNCS = 96 };

typedef struct qk_py_ufunc {
    char name[48];
    int nin, nout, ntypes;
    PyUFuncGenericFunction funcs[QK_MAX_LOOPS];
    void *data[QK_MAX_LOOPS];
    char types[QK_MAX_LOOPS * 8];
    qk_py_loopdef defs[QK_MAX_LOOPS];
    char doc[512];
} qk_py_ufunc;

static qk_py_ufunc qk_py_ufuncs[QK_MAX_UFUNCS];
static int qk_py_nufuncs;

/* Adds one loop to the ufunc being built. in/out: NumPy type numbers of the data operands. */
static void qk_py_loop(qk_py_ufunc *u, qk_py_kernel k, int in_type, int in_size, int out_type,
                       int out_size, int nparams, const int *params, const int *param_types) {
    const int t = u->ntypes++;
    qk_py_loopdef *d = &u->defs[t];
    d->kernel = k;
    d->xsize = in_size;
    d->ysize = out_size;
    d->nparams = nparams;
    memcpy(d->params, params, sizeof(int) * (size_t)nparams);
    u->funcs[t] = qk_py_elementwise_loop;
    u->data[t] = d;
    char *ty = u->types + t * (u->nin + u->nout);
    ty[0] = (char)in_type;
    for (int j = 0; j < nparams; j++) ty[1 + j] = (char)param_types[j];
    ty[1 + nparams] = (char)out_type;
}

static qk_py_ufunc *qk_py_new(const char *name, int nin, const char *doc) {
    qk_py_ufunc *u = &qk_py_ufuncs[qk_py_nufuncs++];
    snprintf(u->name, sizeof u->name, "%s", name);
    snprintf(u->doc, sizeof u->doc, "%s", doc);
    u->nin = nin;
    u->nout = 1;
    return u;
}

static const int QK_QUANT_P[] = {QK_P_SCALE, QK_P_ZERO_POINT, QK_P_QMIN, QK_P_QMAX};
static const int QK_QUANT_T[] = {NPY_FLOAT32, NPY_INT32, NPY_INT32, NPY_INT32};
static const int QK_DEQ_P[] = {QK_P_SCALE, QK_P_ZERO_POINT};
static const int QK_ACC_P[] = {QK_P_SCALE, QK_P_BIAS};
static const int QK_ACC_T[] = {NPY_FLOAT32, NPY_FLOAT32};
static const int QK_DEQ_T[] = {NPY_FLOAT32, NPY_INT32};
static const int QK_FIX_P[] = {QK_P_MULTIPLIER, QK_P_SHIFT, QK_P_ZERO_POINT, QK_P_QMIN, QK_P_QMAX};
static const int QK_FIX_T[] = {NPY_INT32, NPY_INT32, NPY_INT32, NPY_INT32, NPY_INT32};
static const int QK_SHIFT_P[] = {QK_P_SHIFT, QK_P_ZERO_POINT, QK_P_QMIN, QK_P_QMAX};
static const int QK_SHIFT_T[] = {NPY_INT32, NPY_INT32, NPY_INT32, NPY_INT32};

typedef struct {
    const char *name;
    int type, size;
} qk_py_out;
static const qk_py_out QK_OUTS[5] = {
    {"u8", NPY_UINT8, 1}, {"s8", NPY_INT8, 1}, {"u16", NPY_UINT16, 2},
    {"s16", NPY_INT16, 2}, {"s32", NPY_INT32, 4}};

#define QK_PY_KERNELS_BY_OUT(PREFIX, SUFFIX) \
    { PREFIX##u8##SUFFIX, PREFIX##s8##SUFFIX, PREFIX##u16##SUFFIX, PREFIX##s16##SUFFIX, PREFIX##s32##SUFFIX }

/* _quantize_dynamic(x float32 C-contiguous, reduce_range) -> (q uint8 of x's shape, scale,
 * zero_point): qk_quantize_dynamic_f32_u8. */
static PyObject *qk_py_quantize_dynamic(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo;
    int reduce_range;
    if (!PyArg_ParseTuple(args, "Op", &xo, &reduce_range)) return NULL;
    if (!PyArray_Check(xo) || PyArray_TYPE((PyArrayObject *)xo) != NPY_FLOAT32 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)xo)) {
        PyErr_SetString(PyExc_TypeError, "x must be a C-contiguous float32 array");
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)xo;
    PyObject *y = PyArray_SimpleNew(PyArray_NDIM(x), PyArray_DIMS(x), NPY_UINT8);
    if (y == NULL) return NULL;
    float scale = 0.0f;
    int32_t zp = 0;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_quantize_dynamic_f32_u8((const float *)PyArray_DATA(x), (size_t)PyArray_SIZE(x),
                                    reduce_range, (uint8_t *)PyArray_DATA((PyArrayObject *)y),
                                    &scale, &zp);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) {
        Py_DECREF(y);
        return qk_py_status_error(st, "quantize_dynamic");
    }
    return Py_BuildValue("Ndi", y, (double)scale, (int)zp);
}

/* _channels(ufunc, x, params) -> y or NotImplemented: an elementwise ufunc of this module over a
 * C-contiguous 2-D x (rows, channels), each parameter a scalar (0-d) or one value per channel
 * (1-D), by qk_py_elementwise_channels: what the ufunc computes for the same elements and
 * parameters, without a kernel call per element. NotImplemented when the ufunc has no exact loop
 * for these dtypes (the caller calls the ufunc); None when a kernel reported an error (the
 * caller locates it). */
static PyObject *qk_py_channels(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ufo, *xo, *params;
    if (!PyArg_ParseTuple(args, "OOO!", &ufo, &xo, &PyTuple_Type, &params)) return NULL;
    if (!PyObject_TypeCheck(ufo, &PyUFunc_Type) || !PyArray_Check(xo)) Py_RETURN_NOTIMPLEMENTED;
    PyUFuncObject *uf = (PyUFuncObject *)ufo;
    PyArrayObject *x = (PyArrayObject *)xo;
    const int nin = uf->nin, nargs = uf->nin + uf->nout;
    const Py_ssize_t np_ = PyTuple_GET_SIZE(params);
    if (uf->nout != 1 || np_ != nin - 1 || nargs > 8 || PyArray_NDIM(x) != 2 ||
        !PyArray_IS_C_CONTIGUOUS(x) || !PyArray_ISALIGNED(x))
        Py_RETURN_NOTIMPLEMENTED;
    const npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    int loop = -1;
    for (int i = 0; i < uf->ntypes && loop < 0; i++) {
        const char *ty = uf->types + (size_t)i * (size_t)nargs;
        if (uf->functions[i] != qk_py_elementwise_loop || ty[0] != PyArray_TYPE(x)) continue;
        int ok = 1;
        for (int k = 0; k < np_ && ok; k++) {
            PyObject *p = PyTuple_GET_ITEM(params, k);
            ok = PyArray_Check(p) && PyArray_TYPE((PyArrayObject *)p) == ty[1 + k];
        }
        if (ok) loop = i;
    }
    if (loop < 0) Py_RETURN_NOTIMPLEMENTED;
    const char *ty = uf->types + (size_t)loop * (size_t)nargs;
    const qk_py_loopdef *d = (const qk_py_loopdef *)uf->data[loop];
    char *pp[8];
    npy_intp pstep[8];
    for (int k = 0; k < np_; k++) {
        PyArrayObject *p = (PyArrayObject *)PyTuple_GET_ITEM(params, k);
        const int nd = PyArray_NDIM(p);
        if (!PyArray_ISALIGNED(p) || (nd == 1 && (PyArray_DIM(p, 0) != cols ||
                                                  !PyArray_IS_C_CONTIGUOUS(p))) || nd > 1)
            Py_RETURN_NOTIMPLEMENTED;
        pp[k] = PyArray_BYTES(p);
        pstep[k] = nd == 1 ? PyArray_ITEMSIZE(p) : 0;
    }
    npy_intp dims[2] = {rows, cols};
    PyArrayObject *y = (PyArrayObject *)PyArray_SimpleNew(2, dims, ty[nin]);
    if (y == NULL) return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_py_elementwise_channels(d, PyArray_BYTES(x), pp, pstep, PyArray_BYTES(y), rows, cols);
    Py_END_ALLOW_THREADS
    qk_py_loop_status(QK_OK); /* the flags our kernels raise by design, cleared once */
    if (st != QK_OK) {
        Py_DECREF(y);
        Py_RETURN_NONE;
    }
    return (PyObject *)y;
}

/* _dequantize_channels(q, scale, zero_point) -> y: per-channel dequantize on the last axis of a
 * C-contiguous 2-D q (uint8 / int8 / uint16 / int16 / int32), scale float32 and zero_point int32
 * of its last dimension (qk_dequantize_channels_<in>_f32; a bad status raises). */
static PyObject *qk_py_dequantize_channels(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *qo, *so, *zo;
    if (!PyArg_ParseTuple(args, "OOO", &qo, &so, &zo)) return NULL;
    if (!PyArray_Check(qo) || PyArray_NDIM((PyArrayObject *)qo) != 2 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)qo) || !PyArray_ISALIGNED((PyArrayObject *)qo)) {
        PyErr_SetString(PyExc_TypeError, "q: expected an aligned C-contiguous 2-D array");
        return NULL;
    }
    PyArrayObject *q = (PyArrayObject *)qo;
    const npy_intp rows = PyArray_DIM(q, 0), cols = PyArray_DIM(q, 1);
    if (qk_py_check_arr(so, NPY_FLOAT32, cols, "scale") < 0 ||
        qk_py_check_arr(zo, NPY_INT32, cols, "zero_point") < 0)
        return NULL;
    const int t = PyArray_TYPE(q);
    if (t != NPY_UINT8 && t != NPY_INT8 && t != NPY_UINT16 && t != NPY_INT16 && t != NPY_INT32) {
        PyErr_SetString(PyExc_TypeError, "q must be uint8, int8, uint16, int16 or int32");
        return NULL;
    }
    npy_intp dims[2] = {rows, cols};
    PyArrayObject *y = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (y == NULL) return NULL;
    const float *sc = (const float *)PyArray_DATA((PyArrayObject *)so);
    const int32_t *zp = (const int32_t *)PyArray_DATA((PyArrayObject *)zo);
    const void *qd = PyArray_DATA(q);
    float *yd = (float *)PyArray_DATA(y);
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    switch (t) {
    case NPY_UINT8: st = qk_dequantize_channels_u8_f32(qd, (size_t)rows, (size_t)cols, sc, zp, yd); break;
    case NPY_INT8: st = qk_dequantize_channels_s8_f32(qd, (size_t)rows, (size_t)cols, sc, zp, yd); break;
    case NPY_UINT16: st = qk_dequantize_channels_u16_f32(qd, (size_t)rows, (size_t)cols, sc, zp, yd); break;
    case NPY_INT16: st = qk_dequantize_channels_s16_f32(qd, (size_t)rows, (size_t)cols, sc, zp, yd); break;
    default: st = qk_dequantize_channels_s32_f32(qd, (size_t)rows, (size_t)cols, sc, zp, yd); break;
    }
    Py_END_ALLOW_THREADS
    if (st != QK_OK) {
        Py_DECREF(y);
        return qk_py_status_error(st, "dequantize");
    }
    return (PyObject *)y;
}

static PyMethodDef qk_py_elementwise_methods[] = {
    {"_channels", qk_py_channels, METH_VARARGS,
     "_channels(ufunc, x, params) -> y | None | NotImplemented (see qkernels/_checks.py "
     "run_ufunc)"},
    {"_dequantize_channels", qk_py_dequantize_channels, METH_VARARGS,
     "_dequantize_channels(q, scale, zero_point) -> y (qk_dequantize_channels_<in>_f32 on a"
     " C-contiguous 2-D q; see qkernels/_checks.py _per_channel_last)"},
    {"_quantize_dynamic", qk_py_quantize_dynamic, METH_VARARGS,
     "_quantize_dynamic(x, reduce_range) -> (q, scale, zero_point)"},
    {NULL, NULL, 0, NULL}};

int qk_py_register_elementwise(PyObject *module) {
    if (PyModule_AddFunctions(module, qk_py_elementwise_methods) < 0) return -1;
    char name[48], doc[512];
    static PyUFuncGenericFunction qm_funcs[1] = {qk_py_quantize_multiplier_loop};
    static void *qm_data[1] = {NULL};
    static char qm_types[3] = {NPY_FLOAT64, NPY_INT32, NPY_INT32};

#define QK_PY_FLAVOUR_NAME(UNUSED, FLAV) #FLAV,
#define QK_PY_FLAVOUR_ROW(IN, FLAV) QK_PY_KERNELS_BY_OUT(qk_py_quantize_##IN##_, _##FLAV),
    const char *flavours[5] = {QK__FOR_EACH_FLAVOUR(QK_PY_FLAVOUR_NAME, 0)};
    const qk_py_kernel q32[5][5] = {QK__FOR_EACH_FLAVOUR(QK_PY_FLAVOUR_ROW, f32)};
    const qk_py_kernel q64[5][5] = {QK__FOR_EACH_FLAVOUR(QK_PY_FLAVOUR_ROW, f64)};
#undef QK_PY_FLAVOUR_NAME
#undef QK_PY_FLAVOUR_ROW
    for (int f = 0; f < 5; f++) {
        for (int o = 0; o < 5; o++) {
            snprintf(name, sizeof name, "quantize_%s_%s", flavours[f], QK_OUTS[o].name);
            snprintf(doc, sizeof doc,
                     "%s(x, scale, zero_point, qmin, qmax, /, out=None, ...)\n\n"
                     "Quantize float32/float64 x to %s, flavour '%s' (see qkernels.quantize).\n"
                     "scale is float32, the others int32; all broadcast. A NaN or a bad\n"
                     "parameter raises the floating-point 'invalid' flag (np.errstate).",
                     name, QK_OUTS[o].name, flavours[f]);
            qk_py_ufunc *u = qk_py_new(name, 5, doc);
            qk_py_loop(u, q32[f][o], NPY_FLOAT32, 4, QK_OUTS[o].type, QK_OUTS[o].size, 4,
                       QK_QUANT_P, QK_QUANT_T);
            qk_py_loop(u, q64[f][o], NPY_FLOAT64, 8, QK_OUTS[o].type, QK_OUTS[o].size, 4,
                       QK_QUANT_P, QK_QUANT_T);
        }
    }

    {
        qk_py_ufunc *u = qk_py_new("dequantize", 3,
                                   "dequantize(q, scale, zero_point, /, out=None, ...)\n\n"
                                   "fl(scale * (float)(q - zero_point)) as float32 (see "
                                   "qkernels.dequantize).");
        const qk_py_kernel k[5] = QK_PY_KERNELS_BY_OUT(qk_py_dequantize_, );
        for (int o = 0; o < 5; o++)
            qk_py_loop(u, k[o], QK_OUTS[o].type, QK_OUTS[o].size, NPY_FLOAT32, 4, 2, QK_DEQ_P,
                       QK_DEQ_T);
    }
    qk_py_loop(qk_py_new("accumulator_to_float", 3,
                         "accumulator_to_float(acc, scale, bias, /, out=None, ...)\n\n"
                         "fmaf((float)acc, scale, bias): int32 accumulators to float32 with one "
                         "rounding (FBGEMM ReQuantizeForFloat)."),
               qk_py_acc_to_f32, NPY_INT32, 4, NPY_FLOAT32, 4, 2, QK_ACC_P, QK_ACC_T);
    {
        qk_py_ufunc *u = qk_py_new("fake_quantize_torch", 5,
                                   "fake_quantize_torch(x, scale, zero_point, qmin, qmax, /, ...)"
                                   "\n\nPyTorch fake_quantize_per_tensor_affine, elementwise.");
        qk_py_loop(u, qk_py_fake_f32, NPY_FLOAT32, 4, NPY_FLOAT32, 4, 4, QK_QUANT_P, QK_QUANT_T);
        qk_py_loop(u, qk_py_fake_f64, NPY_FLOAT64, 8, NPY_FLOAT64, 8, 4, QK_QUANT_P, QK_QUANT_T);
    }

    const qk_py_kernel rd[5] = QK_PY_KERNELS_BY_OUT(qk_py_req_double_, );
    const qk_py_kernel rs[5] = QK_PY_KERNELS_BY_OUT(qk_py_req_single_, );
    const qk_py_kernel rf[5] = QK_PY_KERNELS_BY_OUT(qk_py_req_fp32_, );
    const char *roundings[4] = {"half_up", "half_even", "half_away", "floor"};
    const qk_py_kernel rsh[4][5] = {
        QK_PY_KERNELS_BY_OUT(qk_py_req_shift_half_up_, ),
        QK_PY_KERNELS_BY_OUT(qk_py_req_shift_half_even_, ),
        QK_PY_KERNELS_BY_OUT(qk_py_req_shift_half_away_, ),
        QK_PY_KERNELS_BY_OUT(qk_py_req_shift_floor_, )};
    for (int o = 0; o < 5; o++) {
        const qk_py_out *out = &QK_OUTS[o];
        snprintf(name, sizeof name, "requantize_double_%s", out->name);
        qk_py_loop(qk_py_new(name, 6,
                             "(acc, multiplier, shift, zero_point, qmin, qmax): double-rounding "
                             "fixed-point requantization (gemmlowp/TFLite)."),
                   rd[o], NPY_INT32, 4, out->type, out->size, 5, QK_FIX_P, QK_FIX_T);
        snprintf(name, sizeof name, "requantize_single_%s", out->name);
        qk_py_loop(qk_py_new(name, 6,
                             "(acc, multiplier, shift, zero_point, qmin, qmax): single-rounding "
                             "fixed-point requantization (TFLITE_SINGLE_ROUNDING)."),
                   rs[o], NPY_INT32, 4, out->type, out->size, 5, QK_FIX_P, QK_FIX_T);
        snprintf(name, sizeof name, "requantize_fp32_%s", out->name);
        qk_py_loop(qk_py_new(name, 5,
                             "(acc, scale, zero_point, qmin, qmax): float-scale "
                             "requantization (FBGEMM/ONNX Runtime)."),
                   rf[o], NPY_INT32, 4, out->type, out->size, 4, QK_QUANT_P, QK_QUANT_T);
        for (int r = 0; r < 4; r++) {
            snprintf(name, sizeof name, "requantize_shift_%s_%s", roundings[r], out->name);
            qk_py_loop(qk_py_new(name, 5,
                                 "(acc, shift, zero_point, qmin, qmax): power-of-two "
                                 "requantization by a rounding shift."),
                       rsh[r][o], NPY_INT32, 4, out->type, out->size, 4, QK_SHIFT_P,
                       QK_SHIFT_T);
        }
    }

    for (int i = 0; i < qk_py_nufuncs; i++) {
        qk_py_ufunc *u = &qk_py_ufuncs[i];
        if (qk_py_add_ufunc(module, u->name, u->doc, u->nin, u->nout, u->ntypes, u->funcs,
                            u->data, u->types) < 0)
            return -1;
    }
    return qk_py_add_ufunc(module, "quantize_multiplier",
                           "quantize_multiplier(m, /) -> (multiplier, shift)\n\n"
                           "TFLite QuantizeMultiplier, elementwise (float64 -> int32, int32).",
                           1, 2, 1, qm_funcs, qm_data, qm_types);
}
