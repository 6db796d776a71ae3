/* qops.c -- Python glue of the quantized elementwise / pooling ops (csrc/elementwise/qops.c);
 * the integer model runtime of qkernels/torch uses them. Private functions (the callers validate the
 * parameters once, when the model is built; the checks here keep a bad call from crashing):
 *   _qadd(a, b, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, relu[, qnnpack[, threads]])
 *     -> new array like a; qnnpack: QNNPACK's integer add (uint8 only); threads: the split of
 *     the fbgemm add (qk_qadd_threads)
 *   _qmul(a, b, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, relu) -> new array like a;
 *     b like a, or (N, C, 1, ...) of a's (N, C, ...) (one value a plane)
 *   _qglobal_avg_pool2d(x NCHW, zp, vec_channels) -> (n, c, 1, 1)
 *   _qleaky_relu(x, x_scale, x_zp, slope, out_scale, out_zp) -> new array like x
 *   _qclamp(x, lo, hi) -> new array like x
 *   _qmax_pool2d(x NCHW, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow) -> (n, c, oh, ow)
 *   _qadaptive_avg_pool2d(x NCHW, oh, ow) -> (n, c, oh, ow)
 *   _qavg_pool2d(x NCHW, kh, kw, sh, sw, ph, pw, oh, ow, count_include_pad, divisor_override,
 *                zp, vec_channels) -> (n, c, oh, ow)
 * Arrays are C-contiguous uint8 or int8. The GIL is released while a kernel runs. */
#include "qk_numpy.h"

/* x must be a C-contiguous uint8/int8 array (ndim >= min_ndim; exactly 4 when min_ndim is 4). */
static int qk_py_q8(PyObject *o, const char *name, int ndim4, qk_dtype *t) {
    if (!PyArray_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array", name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)o;
    const int tn = PyArray_TYPE(a);
    if (tn != NPY_UINT8 && tn != NPY_INT8) {
        PyErr_Format(PyExc_TypeError, "%s must be uint8 or int8", name);
        return -1;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous", name);
        return -1;
    }
    if (ndim4 && PyArray_NDIM(a) != 4) {
        PyErr_Format(PyExc_ValueError, "%s must be NCHW (4 dimensions)", name);
        return -1;
    }
    *t = tn == NPY_INT8 ? QK_DT_S8 : QK_DT_U8;
    return 0;
}

static PyObject *qk_py_qops_result(qk_status st, PyObject *y, const char *op) {
    if (st != QK_OK) {
        Py_DECREF(y);
        return qk_py_status_error(st, op);
    }
    return y;
}

static PyObject *qk_py_like(PyArrayObject *x) {
    return PyArray_NewLikeArray(x, NPY_CORDER, NULL, 0);
}

/* An elementwise op's input x (checked as qk_py_q8 does, its type in *t) and a new output like
 * it; NULL with a Python error set. */
static PyObject *qk_py_q8_like(PyObject *xo, qk_dtype *t) {
    if (qk_py_q8(xo, "x", 0, t) < 0) return NULL;
    return qk_py_like((PyArrayObject *)xo);
}

static PyObject *qk_py_qadd(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ao, *bo;
    float sa, sb, so;
    int za, zb, zo, relu, qnnpack = 0, threads = 1;
    if (!PyArg_ParseTuple(args, "OOfififip|pi", &ao, &bo, &sa, &za, &sb, &zb, &so, &zo, &relu,
                          &qnnpack, &threads))
        return NULL;
    qk_dtype ta, tb;
    if (qk_py_q8(ao, "a", 0, &ta) < 0 || qk_py_q8(bo, "b", 0, &tb) < 0) return NULL;
    PyArrayObject *a = (PyArrayObject *)ao, *b = (PyArrayObject *)bo;
    if (ta != tb || !PyArray_SAMESHAPE(a, b) || (qnnpack && ta != QK_DT_U8)) {
        PyErr_SetString(PyExc_ValueError, qnnpack ? "a and b must be uint8 arrays of the same shape"
                                                  : "a and b must have the same shape and dtype");
        return NULL;
    }
    PyObject *y = qk_py_like(a);
    if (y == NULL) return NULL;
    qk_status st;
    const size_t n = (size_t)PyArray_SIZE(a);
    void *py = PyArray_DATA((PyArrayObject *)y);
    Py_BEGIN_ALLOW_THREADS
    st = qnnpack ? qk_qadd_qnnpack(PyArray_DATA(a), PyArray_DATA(b), n, sa, za, sb, zb, so, zo,
                                   relu, py)
                 : qk_qadd_threads(PyArray_DATA(a), PyArray_DATA(b), ta, n, sa, za, sb, zb, so,
                                   zo, relu, py, threads);
    Py_END_ALLOW_THREADS
    return qk_py_qops_result(st, y, qnnpack ? "qadd_qnnpack" : "qadd");
}

/* _qmul(a, b, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, relu): b the shape of a, or of
 * a's first two dimensions followed by ones (one value per (n, c) plane: PyTorch's broadcast of
 * a squeeze-excitation scale). */
static PyObject *qk_py_qmul(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ao, *bo;
    float sa, sb, so;
    int za, zb, zo, relu;
    if (!PyArg_ParseTuple(args, "OOfififip", &ao, &bo, &sa, &za, &sb, &zb, &so, &zo, &relu))
        return NULL;
    qk_dtype ta, tb;
    if (qk_py_q8(ao, "a", 0, &ta) < 0 || qk_py_q8(bo, "b", 0, &tb) < 0) return NULL;
    PyArrayObject *a = (PyArrayObject *)ao, *b = (PyArrayObject *)bo;
    int per_row = 0;
    const int nd = PyArray_NDIM(a);
    if (ta == tb && !PyArray_SAMESHAPE(a, b) && nd >= 2 && PyArray_NDIM(b) == nd) {
        per_row = 1; /* (n, c, 1, ..., 1) */
        for (int d = 0; d < nd; d++)
            if (PyArray_DIM(b, d) != (d < 2 ? PyArray_DIM(a, d) : 1)) per_row = 0;
    }
    if (ta != tb || (!per_row && !PyArray_SAMESHAPE(a, b))) {
        PyErr_SetString(PyExc_ValueError, "a and b must have the same dtype, and b the shape of a "
                                          "or (N, C, 1, ...) of a's (N, C, ...)");
        return NULL;
    }
    PyObject *y = qk_py_like(a);
    if (y == NULL) return NULL;
    const size_t n = (size_t)PyArray_SIZE(a);
    const size_t rows = per_row ? (size_t)PyArray_SIZE(b) : 1;
    const size_t cols = per_row ? (rows ? n / rows : 0) : n;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_qmul(PyArray_DATA(a), PyArray_DATA(b), ta, rows, cols, per_row, sa, za,
                 sb, zb, so, zo, relu, PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    return qk_py_qops_result(st, y, "qmul");
}

/* _qglobal_avg_pool2d(x NCHW, zp, vec_channels) -> (n, c, 1, 1) */
static PyObject *qk_py_qglobal_avg_pool2d(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo;
    int zp;
    Py_ssize_t vc;
    if (!PyArg_ParseTuple(args, "Oin", &xo, &zp, &vc)) return NULL;
    qk_dtype t;
    if (qk_py_q8(xo, "x", 1, &t) < 0) return NULL;
    if (vc < 0) {
        PyErr_SetString(PyExc_ValueError, "vec_channels must be >= 0");
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)xo;
    npy_intp dims[4] = {PyArray_DIM(x, 0), PyArray_DIM(x, 1), 1, 1};
    PyObject *y = PyArray_SimpleNew(4, dims, PyArray_TYPE(x));
    if (y == NULL) return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_qglobal_avg_pool2d(PyArray_DATA(x), t, (size_t)dims[0], (size_t)dims[1],
                               (size_t)(PyArray_DIM(x, 2) * PyArray_DIM(x, 3)), zp, (size_t)vc,
                               PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    return qk_py_qops_result(st, y, "qglobal_avg_pool2d");
}

static PyObject *qk_py_qleaky_relu(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo;
    float sx, slope, so;
    int zx, zo;
    if (!PyArg_ParseTuple(args, "Ofiffi", &xo, &sx, &zx, &slope, &so, &zo)) return NULL;
    qk_dtype t;
    PyObject *y = qk_py_q8_like(xo, &t);
    if (y == NULL) return NULL;
    PyArrayObject *x = (PyArrayObject *)xo;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_qleaky_relu(PyArray_DATA(x), t, (size_t)PyArray_SIZE(x), sx, zx, slope, so, zo,
                        PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    return qk_py_qops_result(st, y, "qleaky_relu");
}

static PyObject *qk_py_qclamp(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo;
    int lo, hi;
    if (!PyArg_ParseTuple(args, "Oii", &xo, &lo, &hi)) return NULL;
    qk_dtype t;
    PyObject *y = qk_py_q8_like(xo, &t);
    if (y == NULL) return NULL;
    PyArrayObject *x = (PyArrayObject *)xo;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_qclamp(PyArray_DATA(x), t, (size_t)PyArray_SIZE(x), lo, hi,
                   PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    return qk_py_qops_result(st, y, "qclamp");
}

static PyObject *qk_py_pool_out(PyArrayObject *x, Py_ssize_t oh, Py_ssize_t ow) {
    npy_intp dims[4] = {PyArray_DIM(x, 0), PyArray_DIM(x, 1), (npy_intp)oh, (npy_intp)ow};
    return PyArray_SimpleNew(4, dims, PyArray_TYPE(x));
}

/* A windowed pool's input x (NCHW, checked as qk_py_q8 does, its type in *t) and its new
 * (n, c, oh, ow) output, once the window is valid: kernel and stride >= 1, padding and output
 * size >= 0, and own_ok (the pool's own arguments: dilation, vec_channels); else NULL with a
 * Python error set ("bad <what> geometry"). */
static PyObject *qk_py_pool_new(PyObject *xo, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                                Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t oh,
                                Py_ssize_t ow, int own_ok, const char *what, qk_dtype *t) {
    if (qk_py_q8(xo, "x", 1, t) < 0) return NULL;
    if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0 || oh < 0 || ow < 0 || !own_ok) {
        PyErr_Format(PyExc_ValueError, "bad %s geometry", what);
        return NULL;
    }
    return qk_py_pool_out((PyArrayObject *)xo, oh, ow);
}

static PyObject *qk_py_qmax_pool2d(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo;
    Py_ssize_t kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
    if (!PyArg_ParseTuple(args, "Onnnnnnnnnn", &xo, &kh, &kw, &sh, &sw, &ph, &pw, &dh, &dw, &oh,
                          &ow))
        return NULL;
    qk_dtype t;
    PyObject *y = qk_py_pool_new(xo, kh, kw, sh, sw, ph, pw, oh, ow, dh >= 1 && dw >= 1,
                                 "max-pool", &t);
    if (y == NULL) return NULL;
    PyArrayObject *x = (PyArrayObject *)xo;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_qmax_pool2d(PyArray_DATA(x), t, (size_t)(PyArray_DIM(x, 0) * PyArray_DIM(x, 1)),
                        (size_t)PyArray_DIM(x, 2), (size_t)PyArray_DIM(x, 3), (size_t)kh,
                        (size_t)kw, (size_t)sh, (size_t)sw, (size_t)ph, (size_t)pw, (size_t)dh,
                        (size_t)dw, (size_t)oh, (size_t)ow, PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    return qk_py_qops_result(st, y, "qmax_pool2d");
}

static PyObject *qk_py_qadaptive_avg_pool2d(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo;
    Py_ssize_t oh, ow;
    if (!PyArg_ParseTuple(args, "Onn", &xo, &oh, &ow)) return NULL;
    qk_dtype t;
    if (qk_py_q8(xo, "x", 1, &t) < 0) return NULL;
    PyArrayObject *x = (PyArrayObject *)xo;
    if (oh < 1 || ow < 1 || PyArray_DIM(x, 2) < 1 || PyArray_DIM(x, 3) < 1) {
        PyErr_SetString(PyExc_ValueError, "adaptive_avg_pool2d: empty input or output size");
        return NULL;
    }
    PyObject *y = qk_py_pool_out(x, oh, ow);
    if (y == NULL) return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_qadaptive_avg_pool2d(PyArray_DATA(x), t,
                                 (size_t)(PyArray_DIM(x, 0) * PyArray_DIM(x, 1)),
                                 (size_t)PyArray_DIM(x, 2), (size_t)PyArray_DIM(x, 3), (size_t)oh,
                                 (size_t)ow, PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    return qk_py_qops_result(st, y, "qadaptive_avg_pool2d");
}

static PyObject *qk_py_qavg_pool2d(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo;
    Py_ssize_t kh, kw, sh, sw, ph, pw, oh, ow, vec_channels;
    int cip, div, zp;
    if (!PyArg_ParseTuple(args, "Onnnnnnnnpiin", &xo, &kh, &kw, &sh, &sw, &ph, &pw, &oh, &ow,
                          &cip, &div, &zp, &vec_channels))
        return NULL;
    qk_dtype t;
    PyObject *y = qk_py_pool_new(xo, kh, kw, sh, sw, ph, pw, oh, ow, vec_channels >= 0,
                                 "avg-pool", &t);
    if (y == NULL) return NULL;
    PyArrayObject *x = (PyArrayObject *)xo;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_qavg_pool2d(PyArray_DATA(x), t, (size_t)PyArray_DIM(x, 0), (size_t)PyArray_DIM(x, 1),
                        (size_t)PyArray_DIM(x, 2), (size_t)PyArray_DIM(x, 3), (size_t)kh,
                        (size_t)kw, (size_t)sh, (size_t)sw, (size_t)ph, (size_t)pw, (size_t)oh,
                        (size_t)ow, cip, div, zp, (size_t)vec_channels,
                        PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    return qk_py_qops_result(st, y, "qavg_pool2d");
}

static PyMethodDef qk_py_qops_methods[] = {
    {"_qadd", qk_py_qadd, METH_VARARGS,
     "_qadd(a, b, sa, za, sb, zb, so, zo, relu, qnnpack=False, threads=1) -> array"},
    {"_qmul", qk_py_qmul, METH_VARARGS,
     "_qmul(a, b, sa, za, sb, zb, so, zo, relu) -> array (b like a, or (N, C, 1, ...))"},
    {"_qglobal_avg_pool2d", qk_py_qglobal_avg_pool2d, METH_VARARGS,
     "_qglobal_avg_pool2d(x, zp, vec_channels) -> (n, c, 1, 1)"},
    {"_qleaky_relu", qk_py_qleaky_relu, METH_VARARGS, "_qleaky_relu(x, sx, zx, slope, so, zo)"},
    {"_qclamp", qk_py_qclamp, METH_VARARGS, "_qclamp(x, lo, hi) -> array"},
    {"_qmax_pool2d", qk_py_qmax_pool2d, METH_VARARGS,
     "_qmax_pool2d(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow) -> array"},
    {"_qadaptive_avg_pool2d", qk_py_qadaptive_avg_pool2d, METH_VARARGS,
     "_qadaptive_avg_pool2d(x, oh, ow) -> array"},
    {"_qavg_pool2d", qk_py_qavg_pool2d, METH_VARARGS,
     "_qavg_pool2d(x, kh, kw, sh, sw, ph, pw, oh, ow, count_include_pad, divisor_override, zp, "
     "vec_channels) -> array"},
    {NULL, NULL, 0, NULL}};

int qk_py_register_qops(PyObject *module) { return PyModule_AddFunctions(module, qk_py_qops_methods); }
