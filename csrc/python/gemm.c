/* gemm.c -- Python glue of the integer linear / conv kernels (issue 3).
 *
 * Private functions behind qkernels/linear.py (the keyword API does every check that needs a
 * message naming an argument; the checks here only keep a bad call from crashing):
 *   _pack_linear(w (n,k) u8/s8, w_zp int32 (n,)) -> capsule
 *   _pack_conv2d(w (o,i/g,kh,kw) u8/s8, w_zp int32 (o,), groups) -> capsule
 *   _packed_bytes(capsule) -> int
 *   _linear(capsule, x (m,k), x_zp, out (m,n), epilogue..., threads) -> None
 *   _linear_rows(capsule, x u8 (m,k), z, wsum, j, e, mt, st, bias, om, os, ozp, out, threads)
 *     -> None: qk_linear_rows, a token-rows Linear with the row rescale as its output stage
 *   _conv2d(capsule, x NCHW, x_zp, sh, sw, pt, pl, pb, pr, dh, dw, out, epilogue..., threads
 *           [, add]) with add None or (other, conv_scale, other_scale, other_zp, out_scale,
 *           out_zp, relu): qk_conv2d_add, the residual add fused (other: out's shape and dtype)
 *     -> None; a status other than QK_OK raises (status.c), naming qlinear / qconv2d
 *   _conv2d_s16(x int16 NCHW, w int8 OIHW, groups, geometry, out, scheme, bias64, multiplier,
 *     shift, scale64, act_min, act_max) -> None (int16 x int8, TFLite 16x8 / CMSIS-NN s16)
 * and the gufunc linear_int32 (m,k),(n,k),(),(n)->(m,n): sum (x - x_zp)(w - w_zp) in int32.
 * The GIL is released while a kernel runs; a packed object may be used from several threads.
 */
#include "qk_numpy.h"

#include <fenv.h>
#include <stdlib.h>
#include <string.h>

static const char *QK_PACKED_NAME = "qkernels.packed_weights";

static void qk_py_packed_free(PyObject *cap) {
    qk_packed_weights *w = (qk_packed_weights *)PyCapsule_GetPointer(cap, QK_PACKED_NAME);
    qk_packed_weights_free(w);
}

static int qk_py_w_type(PyArrayObject *a, qk_dtype *t) {
    const int tn = PyArray_TYPE(a);
    if (tn == NPY_UINT8) *t = QK_DT_U8;
    else if (tn == NPY_INT8) *t = QK_DT_S8;
    else {
        PyErr_SetString(PyExc_TypeError, "weights and activations must be uint8 or int8");
        return -1;
    }
    return 0;
}

static PyObject *qk_py_capsule(qk_status st, qk_packed_weights *w, const char *op) {
    if (st != QK_OK) return qk_py_status_error(st, op);
    PyObject *cap = PyCapsule_New(w, QK_PACKED_NAME, qk_py_packed_free);
    if (cap == NULL) qk_packed_weights_free(w);
    return cap;
}

static PyObject *qk_py_pack_linear(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *wo, *zo;
    if (!PyArg_ParseTuple(args, "OO", &wo, &zo)) return NULL;
    if (!PyArray_Check(wo) || PyArray_NDIM((PyArrayObject *)wo) != 2 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)wo)) {
        PyErr_SetString(PyExc_TypeError, "w must be a C-contiguous 2-D array");
        return NULL;
    }
    PyArrayObject *w = (PyArrayObject *)wo;
    qk_dtype t;
    if (qk_py_w_type(w, &t) < 0) return NULL;
    const npy_intp n = PyArray_DIM(w, 0), k = PyArray_DIM(w, 1);
    if (qk_py_check_arr(zo, NPY_INT32, n, "w_zero_point") < 0) return NULL;
    qk_packed_weights *pw = NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_pack_linear(PyArray_DATA(w), t, (size_t)n, (size_t)k,
                        (const int32_t *)PyArray_DATA((PyArrayObject *)zo), &pw);
    Py_END_ALLOW_THREADS
    return qk_py_capsule(st, pw, "pack_linear");
}

static PyObject *qk_py_pack_conv2d(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *wo, *zo;
    Py_ssize_t groups;
    if (!PyArg_ParseTuple(args, "OOn", &wo, &zo, &groups)) return NULL;
    if (!PyArray_Check(wo) || PyArray_NDIM((PyArrayObject *)wo) != 4 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)wo) || groups < 1) {
        PyErr_SetString(PyExc_TypeError, "w must be a C-contiguous 4-D array, groups >= 1");
        return NULL;
    }
    PyArrayObject *w = (PyArrayObject *)wo;
    qk_dtype t;
    if (qk_py_w_type(w, &t) < 0) return NULL;
    const npy_intp o = PyArray_DIM(w, 0);
    if (qk_py_check_arr(zo, NPY_INT32, o, "w_zero_point") < 0) return NULL;
    qk_packed_weights *pw = NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_pack_conv2d(PyArray_DATA(w), t, (size_t)o, (size_t)PyArray_DIM(w, 1),
                        (size_t)PyArray_DIM(w, 2), (size_t)PyArray_DIM(w, 3), (size_t)groups,
                        (const int32_t *)PyArray_DATA((PyArrayObject *)zo), &pw);
    Py_END_ALLOW_THREADS
    return qk_py_capsule(st, pw, "pack_conv2d");
}

static qk_packed_weights *qk_py_packed(PyObject *cap) {
    return (qk_packed_weights *)PyCapsule_GetPointer(cap, QK_PACKED_NAME);
}

static PyObject *qk_py_packed_bytes(PyObject *self, PyObject *cap) {
    (void)self;
    qk_packed_weights *w = qk_py_packed(cap);
    if (w == NULL) return NULL;
    return PyLong_FromSize_t(qk_packed_weights_bytes(w));
}

static PyObject *qk_py_linear(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *xo, *oo;
    int xzp;
    qk_py_epi_args e;
    if (!PyArg_ParseTuple(args, "OOiOiOOOOOiiiii", &cap, &xo, &xzp, &oo, &e.scheme, &e.bias,
                          &e.fbias, &e.scale, &e.mult, &e.shift, &e.zp, &e.amin, &e.amax,
                          &e.wrap, &e.threads))
        return NULL;
    qk_packed_weights *w = qk_py_packed(cap);
    if (w == NULL) return NULL;
    const size_t n = qk_packed_weights_n(w), k = qk_packed_weights_k(w);
    if (!PyArray_Check(xo) || PyArray_NDIM((PyArrayObject *)xo) != 2 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)xo) ||
        (size_t)PyArray_DIM((PyArrayObject *)xo, 1) != k) {
        PyErr_SetString(PyExc_ValueError, "x must be C-contiguous (m, k)");
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)xo;
    qk_dtype xt;
    if (qk_py_w_type(x, &xt) < 0) return NULL;
    const npy_intp m = PyArray_DIM(x, 0);
    if (!PyArray_Check(oo) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)oo) ||
        PyArray_SIZE((PyArrayObject *)oo) != m * (npy_intp)n ||
        !PyArray_ISWRITEABLE((PyArrayObject *)oo)) {
        PyErr_SetString(PyExc_ValueError, "out must be a writeable C-contiguous (m, n) array");
        return NULL;
    }
    qk_epilogue ep;
    if (qk_py_epilogue(&e, n, (PyArrayObject *)oo, &ep) < 0) return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_linear(w, PyArray_DATA(x), xt, (size_t)m, xzp, &ep,
                   PyArray_DATA((PyArrayObject *)oo), e.threads);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "qlinear");
    Py_RETURN_NONE;
}

/* _linear_rows(capsule, x uint8 (m,k), z|None, wsum|None, j, e, mt, st, bias|None, om|None,
 * os|None, ozp, out, threads) -> None: qk_linear_rows (om None: out int32 (m,n); else out uint8
 * or int8 (m,n), the output stage); z and wsum together, om and os together. */
static PyObject *qk_py_linear_rows(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *xo, *z, *wsum, *j, *e, *mt, *sto, *bias, *om, *os, *out;
    int ozp, threads;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOiOi", &cap, &xo, &z, &wsum, &j, &e, &mt, &sto, &bias,
                          &om, &os, &ozp, &out, &threads))
        return NULL;
    qk_packed_weights *w = qk_py_packed(cap);
    if (w == NULL) return NULL;
    const size_t n = qk_packed_weights_n(w), k = qk_packed_weights_k(w);
    if (!PyArray_Check(xo) || PyArray_NDIM((PyArrayObject *)xo) != 2 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)xo) ||
        PyArray_TYPE((PyArrayObject *)xo) != NPY_UINT8 ||
        (size_t)PyArray_DIM((PyArrayObject *)xo, 1) != k) {
        PyErr_SetString(PyExc_ValueError, "x must be C-contiguous uint8 (m, k)");
        return NULL;
    }
    const npy_intp m = PyArray_DIM((PyArrayObject *)xo, 0);
    if ((z == Py_None) != (wsum == Py_None) || (om == Py_None) != (os == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "z and wsum (om and os) go together");
        return NULL;
    }
    const int stage = om != Py_None;
    const int yt = stage && PyArray_Check(out) ? PyArray_TYPE((PyArrayObject *)out) : NPY_INT32;
    if (stage && yt != NPY_UINT8 && yt != NPY_INT8) {
        PyErr_SetString(PyExc_TypeError, "out must be uint8 or int8 with an output stage");
        return NULL;
    }
    if ((z != Py_None && (qk_py_check_arr(z, NPY_INT32, m, "z") < 0 ||
                          qk_py_check_arr(wsum, NPY_INT32, (npy_intp)n, "wsum") < 0)) ||
        qk_py_check_arr(j, NPY_INT32, m, "j") < 0 || qk_py_check_arr(e, NPY_INT32, m, "e") < 0 ||
        qk_py_check_arr(mt, NPY_INT32, 32, "mt") < 0 ||
        qk_py_check_arr(sto, NPY_INT32, 32, "st") < 0 ||
        (bias != Py_None && qk_py_check_arr(bias, NPY_INT32, (npy_intp)n, "bias") < 0) ||
        (stage && (qk_py_check_arr(om, NPY_INT32, (npy_intp)n, "om") < 0 ||
                   qk_py_check_arr(os, NPY_INT32, (npy_intp)n, "os") < 0)) ||
        qk_py_check_arr(out, yt, m * (npy_intp)n, "out") < 0)
        return NULL;
    if (!PyArray_ISWRITEABLE((PyArrayObject *)out)) {
        PyErr_SetString(PyExc_ValueError, "out is read-only");
        return NULL;
    }
#define QK_PY_I32(o) ((o) == Py_None ? NULL : (const int32_t *)PyArray_DATA((PyArrayObject *)(o)))
    qk_row_stage rs;
    rs.z = QK_PY_I32(z);
    rs.j = QK_PY_I32(j);
    rs.e = QK_PY_I32(e);
    rs.mt = QK_PY_I32(mt);
    rs.st = QK_PY_I32(sto);
    rs.wsum = QK_PY_I32(wsum);
    rs.bias = QK_PY_I32(bias);
    rs.out_multiplier = QK_PY_I32(om);
    rs.out_shift = QK_PY_I32(os);
#undef QK_PY_I32
    rs.out_zero_point = ozp;
    rs.out_type = !stage ? QK_DT_S32 : yt == NPY_UINT8 ? QK_DT_U8 : QK_DT_S8;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_linear_rows(w, (const uint8_t *)PyArray_DATA((PyArrayObject *)xo), (size_t)m, &rs,
                        PyArray_DATA((PyArrayObject *)out), threads);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "linear_rows");
    Py_RETURN_NONE;
}

static PyObject *qk_py_conv2d(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap, *xo, *oo, *addo = Py_None;
    int xzp;
    Py_ssize_t sh, sw, pt, pl, pb, pr, dh, dw;
    qk_py_epi_args e;
    if (!PyArg_ParseTuple(args, "OOinnnnnnnnOiOOOOOiiiii|O", &cap, &xo, &xzp, &sh, &sw, &pt, &pl,
                          &pb, &pr, &dh, &dw, &oo, &e.scheme, &e.bias, &e.fbias, &e.scale,
                          &e.mult, &e.shift, &e.zp, &e.amin, &e.amax, &e.wrap, &e.threads,
                          &addo))
        return NULL;
    qk_packed_weights *w = qk_py_packed(cap);
    if (w == NULL) return NULL;
    if (!PyArray_Check(xo) || PyArray_NDIM((PyArrayObject *)xo) != 4 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)xo) || sh < 1 || sw < 1 || dh < 1 || dw < 1 ||
        pt < 0 || pl < 0 || pb < 0 || pr < 0) {
        PyErr_SetString(PyExc_ValueError, "x must be C-contiguous NCHW; bad conv geometry");
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)xo;
    qk_dtype xt;
    if (qk_py_w_type(x, &xt) < 0) return NULL;
    qk_conv2d_shape s;
    s.batch = (size_t)PyArray_DIM(x, 0);
    s.in_c = (size_t)PyArray_DIM(x, 1);
    s.in_h = (size_t)PyArray_DIM(x, 2);
    s.in_w = (size_t)PyArray_DIM(x, 3);
    s.stride_h = (size_t)sh;
    s.stride_w = (size_t)sw;
    s.pad_top = (size_t)pt;
    s.pad_left = (size_t)pl;
    s.pad_bottom = (size_t)pb;
    s.pad_right = (size_t)pr;
    s.dil_h = (size_t)dh;
    s.dil_w = (size_t)dw;
    size_t oh = 0, ow = 0;
    qk_status st = qk_conv2d_out_size(&s, w, &oh, &ow);
    if (st != QK_OK) return qk_py_status_error(st, "qconv2d");
    const size_t n = qk_packed_weights_n(w);
    /* out: C-contiguous, or (batch, n, oh, ow) with only its images apart (a channel slice of
     * a larger NCHW array: the images y_image_stride elements apart) */
    size_t ys = 0;
    if (!PyArray_Check(oo) || !PyArray_ISWRITEABLE((PyArrayObject *)oo)) {
        PyErr_SetString(PyExc_ValueError, "out must be a writeable NCHW array");
        return NULL;
    }
    PyArrayObject *o = (PyArrayObject *)oo;
    if (!PyArray_IS_C_CONTIGUOUS(o) || (size_t)PyArray_SIZE(o) != s.batch * n * oh * ow) {
        const npy_intp isz = PyArray_ITEMSIZE(o), *st4 = PyArray_STRIDES(o);
        if (PyArray_NDIM(o) != 4 || (size_t)PyArray_DIM(o, 0) != s.batch ||
            (size_t)PyArray_DIM(o, 1) != n || (size_t)PyArray_DIM(o, 2) != oh ||
            (size_t)PyArray_DIM(o, 3) != ow || (ow > 1 && st4[3] != isz) ||
            (oh > 1 && (size_t)st4[2] != ow * (size_t)isz) ||
            (n > 1 && (size_t)st4[1] != oh * ow * (size_t)isz) || st4[0] <= 0 ||
            st4[0] % isz != 0 || (size_t)(st4[0] / isz) < n * oh * ow) {
            PyErr_SetString(PyExc_ValueError,
                            "out must be a writeable NCHW array, C-contiguous but for its "
                            "batch stride");
            return NULL;
        }
        ys = (size_t)(st4[0] / isz);
    }
    qk_epilogue ep;
    if (qk_py_epilogue(&e, n, o, &ep) < 0) return NULL;
    qk_conv_add add, *ap = NULL;
    if (addo != Py_None) {
        PyObject *other;
        if (!PyArg_ParseTuple(addo, "Offifii", &other, &add.conv_scale, &add.other_scale,
                              &add.other_zp, &add.out_scale, &add.out_zp, &add.relu))
            return NULL;
        if (!PyArray_Check(other) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)other) ||
            PyArray_SIZE((PyArrayObject *)other) != PyArray_SIZE((PyArrayObject *)oo) ||
            PyArray_TYPE((PyArrayObject *)other) != PyArray_TYPE((PyArrayObject *)oo)) {
            PyErr_SetString(PyExc_ValueError,
                            "other (the residual) must be a C-contiguous array of out's shape and dtype");
            return NULL;
        }
        if (ys != 0) {
            PyErr_SetString(PyExc_ValueError, "a fused add needs a C-contiguous out");
            return NULL;
        }
        add.other = PyArray_DATA((PyArrayObject *)other);
        ap = &add;
    }
    Py_BEGIN_ALLOW_THREADS
    st = ap != NULL ? qk_conv2d_add(&s, w, PyArray_DATA(x), xt, xzp, &ep, ap, PyArray_DATA(o),
                                    e.threads)
                    : qk_conv2d_strided(&s, w, PyArray_DATA(x), xt, xzp, &ep, PyArray_DATA(o), ys,
                                        e.threads);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "qconv2d");
    Py_RETURN_NONE;
}

/* ---- int16 x int8 (TFLite 16x8, CMSIS-NN s16): _conv2d_s16 ------------------------------- */
/* data of o (n elements of type), or NULL for None */
static int qk_py_opt_data(PyObject *o, int type, size_t n, const char *name, const void **p) {
    *p = NULL;
    if (o == Py_None) return 0;
    if (qk_py_check_arr(o, type, (npy_intp)n, name) < 0) return -1;
    *p = PyArray_DATA((PyArrayObject *)o);
    return 0;
}

/* _conv2d_s16(x int16 NCHW, w int8 OIHW, groups, sh, sw, pt, pl, pb, pr, dh, dw, out int16,
 * scheme, bias int64 | None, multiplier int32 | None, shift int32 | None, scale64 | None,
 * act_min, act_max) -> None; qlinear's int16 path passes a (m, k, 1, 1) x and (n, k, 1, 1) w. */
static PyObject *qk_py_conv2d_s16(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *wo, *oo, *bo, *mo, *so, *fo;
    Py_ssize_t groups, sh, sw, pt, pl, pb, pr, dh, dw;
    int scheme, amin, amax;
    if (!PyArg_ParseTuple(args, "OOnnnnnnnnnOiOOOOii", &xo, &wo, &groups, &sh, &sw, &pt, &pl, &pb,
                          &pr, &dh, &dw, &oo, &scheme, &bo, &mo, &so, &fo, &amin, &amax))
        return NULL;
    if (qk_py_check_arr(xo, NPY_INT16, -1, "x") < 0 || qk_py_check_arr(wo, NPY_INT8, -1, "w") < 0 ||
        qk_py_check_arr(oo, NPY_INT16, -1, "out") < 0)
        return NULL;
    PyArrayObject *x = (PyArrayObject *)xo, *w = (PyArrayObject *)wo, *out = (PyArrayObject *)oo;
    if (PyArray_NDIM(x) != 4 || PyArray_NDIM(w) != 4 || PyArray_NDIM(out) != 4 ||
        !PyArray_ISWRITEABLE(out) || groups < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 ||
        pt < 0 || pl < 0 || pb < 0 || pr < 0) {
        PyErr_SetString(PyExc_ValueError, "x, w, out must be 4-D (out writeable); bad geometry");
        return NULL;
    }
    const qk_conv2d_shape s = {(size_t)PyArray_DIM(x, 0), (size_t)PyArray_DIM(x, 1),
                               (size_t)PyArray_DIM(x, 2), (size_t)PyArray_DIM(x, 3),
                               (size_t)sh, (size_t)sw, (size_t)pt, (size_t)pl, (size_t)pb,
                               (size_t)pr, (size_t)dh, (size_t)dw};
    const size_t n = (size_t)PyArray_DIM(w, 0), kh = (size_t)PyArray_DIM(w, 2),
                 kw = (size_t)PyArray_DIM(w, 3);
    /* out must be (batch, n, oh, ow) for the geometry qk_conv2d_s16s8 checks in full */
    const size_t hp = s.in_h + s.pad_top + s.pad_bottom, wp = s.in_w + s.pad_left + s.pad_right;
    const size_t eh = s.dil_h * (kh - 1) + 1, ew = s.dil_w * (kw - 1) + 1;
    if (kh == 0 || kw == 0 || (size_t)PyArray_DIM(w, 1) * (size_t)groups != s.in_c || eh > hp ||
        ew > wp || (size_t)PyArray_DIM(out, 0) != s.batch || (size_t)PyArray_DIM(out, 1) != n ||
        (size_t)PyArray_DIM(out, 2) != (hp - eh) / s.stride_h + 1 ||
        (size_t)PyArray_DIM(out, 3) != (wp - ew) / s.stride_w + 1) {
        PyErr_SetString(PyExc_ValueError, "w, out: shapes do not match x and the geometry");
        return NULL;
    }
    qk_epilogue_s16 ep;
    const void *b, *m, *sf, *f;
    if (qk_py_opt_data(bo, NPY_INT64, n, "bias", &b) < 0 ||
        qk_py_opt_data(mo, NPY_INT32, n, "multiplier", &m) < 0 ||
        qk_py_opt_data(so, NPY_INT32, n, "shift", &sf) < 0 ||
        qk_py_opt_data(fo, NPY_FLOAT64, n, "scale64", &f) < 0)
        return NULL;
    ep.scheme = (qk_requant_scheme)scheme;
    ep.bias = (const int64_t *)b;
    ep.multiplier = (const int32_t *)m;
    ep.shift = (const int32_t *)sf;
    ep.scale64 = (const double *)f;
    ep.act_min = amin;
    ep.act_max = amax;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_conv2d_s16s8(&s, (const int8_t *)PyArray_DATA(w), n, kh, kw, (size_t)groups,
                         (const int16_t *)PyArray_DATA(x), &ep, (int16_t *)PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "qconv2d/qlinear (int16)");
    Py_RETURN_NONE;
}

/* ---- gufunc linear_int32: (m,k),(n,k),(),(n)->(m,n) -------------------------------------- */
static void qk_py_linear_int32_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                                    void *data) {
    const qk_dtype xt = ((const qk_dtype *)data)[0], wt = ((const qk_dtype *)data)[1];
    const npy_intp outer = dims[0], m = dims[1], k = dims[2], n = dims[3];
    const npy_intp xs_m = steps[5], xs_k = steps[6], ws_n = steps[7], ws_k = steps[8];
    const npy_intp zs_n = steps[9], os_m = steps[10], os_n = steps[11];
    int bad = 0;
    if (m == 0 || n == 0) return;
    uint8_t *xb = (uint8_t *)malloc((size_t)(m * (k ? k : 1)));
    uint8_t *wb = (uint8_t *)malloc((size_t)(n * (k ? k : 1)));
    int32_t *zb = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    int32_t *yb = (int32_t *)malloc((size_t)(m * n) * sizeof(int32_t));
    if (xb == NULL || wb == NULL || zb == NULL || yb == NULL) {
        bad = 1; /* out of memory: zeros too */
        const int32_t zero = 0;
        for (npy_intp it = 0; it < outer; it++)
            for (npy_intp i = 0; i < m; i++)
                for (npy_intp o = 0; o < n; o++)
                    memcpy(args[4] + it * steps[4] + i * os_m + o * os_n, &zero, 4);
        goto done;
    }
    for (npy_intp it = 0; it < outer; it++) {
        const char *xp = args[0] + it * steps[0], *wp = args[1] + it * steps[1];
        const char *zxp = args[2] + it * steps[2], *zwp = args[3] + it * steps[3];
        char *op = args[4] + it * steps[4];
        int32_t xzp;
        memcpy(&xzp, zxp, 4);
        for (npy_intp i = 0; i < m; i++)
            for (npy_intp q = 0; q < k; q++) xb[i * k + q] = *(const uint8_t *)(xp + i * xs_m + q * xs_k);
        for (npy_intp o = 0; o < n; o++) {
            for (npy_intp q = 0; q < k; q++) wb[o * k + q] = *(const uint8_t *)(wp + o * ws_n + q * ws_k);
            memcpy(&zb[o], zwp + o * zs_n, 4);
        }
        if (k == 0) {
            memset(yb, 0, (size_t)(m * n) * sizeof(int32_t));
        } else {
            qk_packed_weights *pw = NULL;
            qk_epilogue ep;
            memset(&ep, 0, sizeof ep);
            ep.scheme = QK_REQ_NONE;
            ep.out_type = QK_DT_S32;
            if (qk_pack_linear(wb, wt, (size_t)n, (size_t)k, zb, &pw) != QK_OK ||
                qk_linear(pw, xb, xt, (size_t)m, xzp, &ep, yb, 1) != QK_OK) {
                /* a rejected call (zero point outside its type, or a worst case beyond int32)
                 * writes zeros, never what the buffer held, and raises 'invalid' */
                bad = 1;
                memset(yb, 0, (size_t)(m * n) * sizeof(int32_t));
            }
            qk_packed_weights_free(pw);
        }
        for (npy_intp i = 0; i < m; i++)
            for (npy_intp o = 0; o < n; o++) memcpy(op + i * os_m + o * os_n, &yb[i * n + o], 4);
    }
done:
    free(xb);
    free(wb);
    free(zb);
    free(yb);
    if (bad) feraiseexcept(FE_INVALID);
}

static PyUFuncGenericFunction qk_lin_funcs[4] = {qk_py_linear_int32_loop, qk_py_linear_int32_loop,
                                                 qk_py_linear_int32_loop, qk_py_linear_int32_loop};

static PyMethodDef qk_py_gemm_methods[] = {
    {"_pack_linear", qk_py_pack_linear, METH_VARARGS, "_pack_linear(w, w_zp) -> capsule"},
    {"_pack_conv2d", qk_py_pack_conv2d, METH_VARARGS, "_pack_conv2d(w, w_zp, groups) -> capsule"},
    {"_packed_bytes", qk_py_packed_bytes, METH_O, "_packed_bytes(capsule) -> int"},
    {"_linear", qk_py_linear, METH_VARARGS, "_linear(...) -> None, raises on a bad status (see qkernels/linear.py)"},
    {"_linear_rows", qk_py_linear_rows, METH_VARARGS, "_linear_rows(...) -> None: qk_linear_rows (use qkernels.transformer.prepare_linear_rows)"},
    {"_conv2d", qk_py_conv2d, METH_VARARGS, "_conv2d(...) -> None, raises on a bad status (see qkernels/linear.py)"},
    {"_conv2d_s16", qk_py_conv2d_s16, METH_VARARGS, "_conv2d_s16(...) -> None: int16 x int8, int64 sums (see qkernels/linear16.py)"},
    {NULL, NULL, 0, NULL}};

int qk_py_register_gemm(PyObject *module) {
    if (PyModule_AddFunctions(module, qk_py_gemm_methods) < 0) return -1;
    return qk_py_add_gufunc(
        module, "linear_int32",
        "linear_int32(x, w, x_zero_point, w_zero_point, /, out=None, ...)\n\n"
        "Exact int32 sums y[..., i, o] = sum_k (x[i,k] - x_zp) * (w[o,k] - w_zp[o]), signature\n"
        "(m,k),(n,k),(),(n)->(m,n). x uint8/int8, w int8/uint8, zero points int32. A bad zero\n"
        "point or an accumulator bound beyond int32 makes that (m,n) block all zeros and raises\n"
        "the floating-point 'invalid' flag (a RuntimeWarning by default, FloatingPointError\n"
        "under np.errstate(invalid='raise')); qkernels.linear_int32 checks first and raises a\n"
        "named error.",
        4, 1, 4, qk_lin_funcs, qk_py_q8pair_data, qk_py_q8pair_types,
        "(m,k),(n,k),(),(n)->(m,n)");
}
