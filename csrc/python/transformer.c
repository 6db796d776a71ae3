/* transformer.c -- Python glue of the integer transformer kernels (issue 16): batched matmul of two
 * activations, integer softmax, integer GELU.
 *
 * gufuncs / ufuncs (prepared integer parameters are operands, so they broadcast: per-head softmax
 * or matmul parameters, per-channel GELU parameters along the last axis):
 *   matmul_int32       (m,k),(k,n),(),()->(m,n)     sum (a - a_zp)(b - b_zp), int32
 *   softmax_ibert      (n),(),(),(),(),()->(n)      x, x0, b, c (int64), m16, e16 (int32) -> u8
 *   softmax_sole       (n),(),(),()->(n)            x, mult, shift, round (int32) -> u8
 *   softmax_sole_log2  (n),(),(),()->(n),()         -> exponent (u8), row bit (u8)
 *   softmax_lut        (n),(256)->(n)               x (u8/s8), lut (uint32) -> u8
 *   gelu_ibert         x, x_zp, b, c, shift (int64), multiplier, rshift, y_zp, y_min, y_max
 *                      (int32) -> y (u8, s8 or int32: the loop's output type)
 *   gelu_lut           (),(256)->()                 x (u8/s8), table (u8 or s8) -> table's type
 * A kernel error raises the floating-point "invalid" flag (np.errstate); the keyword API in
 * qkernels/transformer.py checks every argument first and raises a named error.
 * Module functions (GIL released while the kernel runs; a status other than QK_OK raises, see
 * status.c):
 *   _bmm(a, b, a_zp, b_zp, b_kn, out, epilogue...) -> None: qk_bmm on C-contiguous 3-D arrays,
 *     the epilogue operands as _linear takes them (qk_numpy.h), naming qmatmul;
 *   _gelu_ibert(x, b, c, shift, multiplier, rshift, x_zp, y_zp, y_min, y_max, out) -> None,
 *     naming qgelu;
 *   _row_range / _row_quantize / _row_rescale / _row_renorm: the row kernels (qk_row_*) on
 *     C-contiguous arrays, outputs given, naming row_range / row_quantize / row_rescale /
 *     row_renorm;
 *   _residual_add: qk_residual_add (the blocks' residual add), naming residual_add;
 *   _gelu_interp(x, in_multiplier, in_rshift, multiplier, rshift, table, y_zp, y_min, y_max,
 *     out) -> None (qk_gelu_interp), naming qgelu;
 *   _softmax_exp2(x, mult, shift, cap, table, out) -> None (qk_softmax_exp2), naming qsoftmax.
 */
#include "qk_numpy.h"

#include <stdlib.h>
#include <string.h>

static qk_dtype qk_py_dt(int npy) {
    return npy == NPY_UINT8 ? QK_DT_U8 : (npy == NPY_INT8 ? QK_DT_S8 : QK_DT_S32);
}

static int32_t qk_py_i32(const char *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int64_t qk_py_i64(const char *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- _bmm ----------------------------------------------------------------------------------- */
/* An aligned C-contiguous 3-D array (of uint8 or int8 when q8), else NULL with a Python error. */
/* A refused gufunc call leaves zeros in every output it was given (never stale or partial
 * numbers): `outer` items of `rows` x `cols` elements of `size` bytes, with their strides. */
static void qk_py_zero_core(char *y, npy_intp outer, npy_intp so, npy_intp rows, npy_intp sr,
                            npy_intp cols, npy_intp sc, int size) {
    for (npy_intp it = 0; it < outer; it++)
        for (npy_intp i = 0; i < rows; i++)
            qk_py_zero_outputs(y + it * so + i * sr, cols, sc, size);
}

static PyArrayObject *qk_py_3d(PyObject *o, int q8, const char *name) {
    if (!PyArray_Check(o) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)o) ||
        !PyArray_ISALIGNED((PyArrayObject *)o) || PyArray_NDIM((PyArrayObject *)o) != 3) {
        PyErr_Format(PyExc_TypeError, "%s: expected an aligned C-contiguous 3-D array", name);
        return NULL;
    }
    const int t = PyArray_TYPE((PyArrayObject *)o);
    if (q8 && t != NPY_UINT8 && t != NPY_INT8) {
        PyErr_Format(PyExc_TypeError, "%s must be uint8 or int8", name);
        return NULL;
    }
    return (PyArrayObject *)o;
}

static PyObject *qk_py_bmm(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ao, *bo, *azo, *bzo, *oo;
    int b_kn;
    qk_py_epi_args e;
    if (!PyArg_ParseTuple(args, "OOOOiOiOOOOOiiiii", &ao, &bo, &azo, &bzo, &b_kn, &oo, &e.scheme,
                          &e.bias, &e.fbias, &e.scale, &e.mult, &e.shift, &e.zp, &e.amin,
                          &e.amax, &e.wrap, &e.threads))
        return NULL;
    PyArrayObject *a = qk_py_3d(ao, 1, "a"), *b = qk_py_3d(bo, 1, "b"), *o = qk_py_3d(oo, 0, "out");
    if (a == NULL || b == NULL || o == NULL) return NULL;
    const npy_intp batch = PyArray_DIM(a, 0), m = PyArray_DIM(a, 1), k = PyArray_DIM(a, 2);
    const npy_intp n = b_kn ? PyArray_DIM(b, 2) : PyArray_DIM(b, 1);
    const npy_intp bk = b_kn ? PyArray_DIM(b, 1) : PyArray_DIM(b, 2);
    if (PyArray_DIM(b, 0) != batch || bk != k || PyArray_DIM(o, 0) != batch ||
        PyArray_DIM(o, 1) != m || PyArray_DIM(o, 2) != n || !PyArray_ISWRITEABLE(o)) {
        PyErr_SetString(PyExc_ValueError, "a, b and out shapes do not match (or out is read-only)");
        return NULL;
    }
    if (qk_py_check_arr(azo, NPY_INT32, batch, "a_zero_point") < 0 ||
        qk_py_check_arr(bzo, NPY_INT32, batch, "b_zero_point") < 0)
        return NULL;
    qk_epilogue ep;
    if (qk_py_epilogue(&e, (size_t)batch, o, &ep) < 0) return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_bmm(PyArray_DATA(a), qk_py_dt(PyArray_TYPE(a)),
                (const int32_t *)PyArray_DATA((PyArrayObject *)azo), PyArray_DATA(b),
                qk_py_dt(PyArray_TYPE(b)), (const int32_t *)PyArray_DATA((PyArrayObject *)bzo),
                b_kn ? QK_BMM_B_KN : QK_BMM_B_NK, (size_t)batch, (size_t)m, (size_t)k, (size_t)n,
                &ep, PyArray_DATA(o), e.threads);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "qmatmul");
    Py_RETURN_NONE;
}

/* ---- matmul_int32 gufunc: (m,k),(k,n),(),()->(m,n) ------------------------------------------- */
static void qk_py_matmul_int32_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                                    void *data) {
    const qk_dtype *types = (const qk_dtype *)data; /* a's and b's */
    const npy_intp outer = dims[0], m = dims[1], k = dims[2], n = dims[3];
    const npy_intp am = steps[5], ak = steps[6], bk = steps[7], bn = steps[8];
    const npy_intp om = steps[9], on = steps[10];
    qk_status st = QK_OK;
    if (m == 0 || n == 0) return;
    uint8_t *ab = (uint8_t *)malloc((size_t)(m * (k ? k : 1)));
    uint8_t *bb = (uint8_t *)malloc((size_t)(n * (k ? k : 1)));
    int32_t *yb = (int32_t *)malloc((size_t)(m * n) * sizeof(int32_t));
    if (ab == NULL || bb == NULL || yb == NULL) {
        st = QK_ERR_NOMEM;
        goto done;
    }
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = QK_REQ_NONE;
    ep.out_type = QK_DT_S32;
    for (npy_intp it = 0; it < outer; it++) {
        const char *ap = args[0] + it * steps[0], *bp = args[1] + it * steps[1];
        const int32_t za = qk_py_i32(args[2] + it * steps[2]), zb = qk_py_i32(args[3] + it * steps[3]);
        char *op = args[4] + it * steps[4];
        for (npy_intp i = 0; i < m; i++)
            for (npy_intp q = 0; q < k; q++) ab[i * k + q] = *(const uint8_t *)(ap + i * am + q * ak);
        for (npy_intp q = 0; q < k; q++)
            for (npy_intp j = 0; j < n; j++) bb[q * n + j] = *(const uint8_t *)(bp + q * bk + j * bn);
        const qk_status s1 = qk_bmm(ab, types[0], &za, bb, types[1], &zb, QK_BMM_B_KN, 1,
                                    (size_t)m, (size_t)k, (size_t)n, &ep, yb, 1);
        if (s1 == QK_OK)
            for (npy_intp i = 0; i < m; i++)
                for (npy_intp j = 0; j < n; j++) memcpy(op + i * om + j * on, &yb[i * n + j], 4);
        else /* this item refused (zero point, bound beyond int32): zeros, the others go on */
            qk_py_zero_core(op, 1, 0, m, om, n, on, 4);
        if (st == QK_OK) st = s1;
    }
done:
    free(ab);
    free(bb);
    free(yb);
    if (st == QK_ERR_NOMEM) qk_py_zero_core(args[4], outer, steps[4], m, om, n, on, 4);
    qk_py_loop_status(st);
}

/* ---- softmax gufuncs ---------------------------------------------------------------------------
 * Rows are gathered into blocks (contiguous input as it is, else copied) and the kernel runs once
 * per block of rows that share their parameters (8-bit input builds its 256-entry table once a
 * call). */
enum { QK_PY_SM_IBERT = 0, QK_PY_SM_SOLE = 1, QK_PY_SM_SOLE_LOG2 = 2, QK_PY_SM_LUT = 3 };
typedef struct {
    int kind;    /* QK_PY_SM_* */
    int x_npy;   /* input type */
} qk_py_smdef;

/* Reads the parameters of row `it` into *p. */
static void qk_py_sm_params(const qk_py_smdef *d, char **args, npy_intp const *steps, npy_intp it,
                            npy_intp lut_step, qk_softmax_params *p) {
    memset(p, 0, sizeof *p);
    if (d->kind == QK_PY_SM_IBERT) {
        p->method = QK_SOFTMAX_IBERT;
        p->x0 = qk_py_i64(args[1] + it * steps[1]);
        p->b = qk_py_i64(args[2] + it * steps[2]);
        p->c = qk_py_i64(args[3] + it * steps[3]);
        p->m16 = qk_py_i32(args[4] + it * steps[4]);
        p->e16 = qk_py_i32(args[5] + it * steps[5]);
    } else if (d->kind == QK_PY_SM_LUT) {
        p->method = QK_SOFTMAX_LUT;
        const char *l = args[1] + it * steps[1];
        for (int i = 0; i < 256; i++) memcpy(&p->lut[i], l + i * lut_step, 4);
    } else {
        p->method = QK_SOFTMAX_SOLE;
        p->sole_mult = qk_py_i32(args[1] + it * steps[1]);
        p->sole_shift = qk_py_i32(args[2] + it * steps[2]);
        p->sole_round = qk_py_i32(args[3] + it * steps[3]);
    }
}

static void qk_py_softmax_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                               void *data) {
    const qk_py_smdef *d = (const qk_py_smdef *)data;
    const npy_intp outer = dims[0], n = dims[1];
    /* operand indices: x 0, params 1..np, outputs after */
    const int np = d->kind == QK_PY_SM_IBERT ? 5 : (d->kind == QK_PY_SM_LUT ? 1 : 3);
    const int iy = 1 + np;                                   /* y (or exponent) */
    const int nargs = iy + (d->kind == QK_PY_SM_SOLE_LOG2 ? 2 : 1);
    const npy_intp lut_step = d->kind == QK_PY_SM_LUT ? steps[nargs + 1] : 0;
    const npy_intp xs = steps[nargs], ys = steps[nargs + (d->kind == QK_PY_SM_LUT ? 2 : 1)];
    const qk_dtype xt = qk_py_dt(d->x_npy);
    const size_t xsz = xt == QK_DT_S32 ? 4 : 1;
    qk_status st = QK_OK;
    if (outer == 0 || n == 0) return;
    int params_const = 1;
    for (int i = 1; i <= np; i++) params_const &= steps[i] == 0;
    npy_intp block = 65536 / n;
    if (block < 1) block = 1;
    if (block > outer) block = outer;
    unsigned char *xb = (unsigned char *)malloc((size_t)(block * n) * xsz);
    uint8_t *yb = (uint8_t *)malloc((size_t)(block * n));
    uint8_t *rb = (uint8_t *)malloc((size_t)block);
    qk_softmax_params *p = (qk_softmax_params *)malloc(sizeof *p);
    if (xb == NULL || yb == NULL || rb == NULL || p == NULL) {
        st = QK_ERR_NOMEM;
        goto done;
    }
    /* rows that follow each other in memory go to the kernel as they are */
    const int x_direct = xs == (npy_intp)xsz && steps[0] == n * (npy_intp)xsz;
    const int y_direct = ys == 1 && steps[iy] == n && d->kind != QK_PY_SM_SOLE_LOG2;
    for (npy_intp it = 0; it < outer;) {
        qk_py_sm_params(d, args, steps, it, lut_step, p);
        npy_intp cnt = params_const ? (outer - it < block ? outer - it : block) : 1;
        if (params_const && x_direct && (y_direct || d->kind == QK_PY_SM_SOLE_LOG2) &&
            d->kind != QK_PY_SM_SOLE_LOG2)
            cnt = outer - it; /* one kernel call: the 8-bit table is built once */
        const unsigned char *xin = xb;
        if (x_direct) {
            xin = (const unsigned char *)args[0] + it * steps[0];
        } else { /* gather rows it .. it+cnt-1 */
            for (npy_intp r = 0; r < cnt; r++) {
                const char *src = args[0] + (it + r) * steps[0];
                unsigned char *dst = xb + (size_t)(r * n) * xsz;
                if (xs == (npy_intp)xsz)
                    memcpy(dst, src, (size_t)n * xsz);
                else
                    for (npy_intp i = 0; i < n; i++) memcpy(dst + i * xsz, src + i * xs, xsz);
            }
        }
        uint8_t *yout = y_direct ? (uint8_t *)args[iy] + it * steps[iy] : yb;
        qk_status s1;
        if (d->kind == QK_PY_SM_SOLE_LOG2)
            s1 = qk_softmax_sole_log2(p, xin, xt, (size_t)cnt, (size_t)n, yout, rb);
        else
            s1 = qk_softmax_u8(p, xin, xt, (size_t)cnt, (size_t)n, yout);
        if (s1 != QK_OK) { /* these rows' parameters refused: zeros, the other rows go on */
            qk_py_zero_core(args[iy] + it * steps[iy], cnt, steps[iy], 1, 0, n, ys, 1);
            if (d->kind == QK_PY_SM_SOLE_LOG2)
                qk_py_zero_core(args[iy + 1] + it * steps[iy + 1], cnt, steps[iy + 1], 1, 0, 1, 0, 1);
            if (st == QK_OK) st = s1;
            it += cnt;
            continue;
        }
        if (!y_direct)
            for (npy_intp r = 0; r < cnt; r++) {
                char *dst = args[iy] + (it + r) * steps[iy];
                if (ys == 1)
                    memcpy(dst, yb + r * n, (size_t)n);
                else
                    for (npy_intp i = 0; i < n; i++) dst[i * ys] = (char)yb[r * n + i];
                if (d->kind == QK_PY_SM_SOLE_LOG2)
                    *(args[iy + 1] + (it + r) * steps[iy + 1]) = (char)rb[r];
            }
        it += cnt;
    }
done:
    free(xb);
    free(yb);
    free(rb);
    free(p);
    if (st == QK_ERR_NOMEM) {
        qk_py_zero_core(args[iy], outer, steps[iy], 1, 0, n, ys, 1);
        if (d->kind == QK_PY_SM_SOLE_LOG2)
            qk_py_zero_core(args[iy + 1], outer, steps[iy + 1], 1, 0, 1, 0, 1);
    }
    qk_py_loop_status(st);
}

/* ---- gelu_ibert ufunc ------------------------------------------------------------------------- */
typedef struct {
    int x_npy, y_npy;
} qk_py_geludef;

static void qk_py_gelu_ibert_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                                  void *data) {
    const qk_py_geludef *d = (const qk_py_geludef *)data;
    const npy_intp n = dims[0];
    const qk_dtype xt = qk_py_dt(d->x_npy), yt = qk_py_dt(d->y_npy);
    const npy_intp xsz = xt == QK_DT_S32 ? 4 : 1, ysz = yt == QK_DT_S32 ? 4 : 1;
    qk_status st = QK_OK;
    /* operands: 0 x, 1 x_zp, 2 b, 3 c, 4 shift, 5 mult, 6 rshift, 7 y_zp, 8 y_min, 9 y_max, 10 y */
    const int scal_const = steps[1] == 0 && steps[7] == 0 && steps[8] == 0 && steps[9] == 0;
    const int per_tensor = steps[2] == 0 && steps[3] == 0 && steps[4] == 0 && steps[5] == 0 &&
                           steps[6] == 0;
    const int per_elem = steps[2] == 8 && steps[3] == 8 && steps[4] == 8 && steps[5] == 4 &&
                         steps[6] == 4;
    if (n == 0) return;
    if (scal_const && (per_tensor || per_elem) && steps[0] == xsz && steps[10] == ysz) {
        qk_gelu_ibert_params p;
        p.channels = per_tensor ? 1 : (size_t)n;
        p.b = (const int64_t *)args[2];
        p.c = (const int64_t *)args[3];
        p.shift = (const int64_t *)args[4];
        p.multiplier = (const int32_t *)args[5];
        p.rshift = (const int32_t *)args[6];
        /* the arrays of a ufunc loop may be unaligned: copy the per-tensor values */
        int64_t b1, c1, s1;
        int32_t m1, r1;
        if (per_tensor) {
            b1 = qk_py_i64(args[2]);
            c1 = qk_py_i64(args[3]);
            s1 = qk_py_i64(args[4]);
            m1 = qk_py_i32(args[5]);
            r1 = qk_py_i32(args[6]);
            p.b = &b1;
            p.c = &c1;
            p.shift = &s1;
            p.multiplier = &m1;
            p.rshift = &r1;
        }
        if (per_tensor || (((uintptr_t)args[2] | (uintptr_t)args[3] | (uintptr_t)args[4]) % 8 == 0 &&
                           ((uintptr_t)args[5] | (uintptr_t)args[6]) % 4 == 0)) {
            st = qk_gelu_ibert(&p, args[0], xt, qk_py_i32(args[1]), (size_t)n, args[10], yt,
                               qk_py_i32(args[7]), qk_py_i32(args[8]), qk_py_i32(args[9]));
            if (st == QK_OK || per_tensor) { /* one parameter set: refused means all zeros */
                if (st != QK_OK) qk_py_zero_outputs(args[10], n, steps[10], (int)ysz);
                qk_py_loop_status(st);
                return;
            }
            st = QK_OK; /* a refused channel: element by element below, zeros only there */
        }
    }
    for (npy_intp i = 0; i < n; i++) {
        int64_t b1 = qk_py_i64(args[2] + i * steps[2]), c1 = qk_py_i64(args[3] + i * steps[3]);
        int64_t s1 = qk_py_i64(args[4] + i * steps[4]);
        int32_t m1 = qk_py_i32(args[5] + i * steps[5]), r1 = qk_py_i32(args[6] + i * steps[6]);
        qk_gelu_ibert_params p = {1, &b1, &c1, &s1, &m1, &r1};
        unsigned char xv[4], yv[4];
        memcpy(xv, args[0] + i * steps[0], (size_t)xsz);
        const qk_status sr = qk_gelu_ibert(&p, xv, xt, qk_py_i32(args[1] + i * steps[1]), 1, yv, yt,
                                           qk_py_i32(args[7] + i * steps[7]),
                                           qk_py_i32(args[8] + i * steps[8]),
                                           qk_py_i32(args[9] + i * steps[9]));
        if (sr != QK_OK) memset(yv, 0, sizeof yv); /* refused: a zero, the others go on */
        memcpy(args[10] + i * steps[10], yv, (size_t)ysz);
        if (st == QK_OK) st = sr;
    }
    qk_py_loop_status(st);
}

/* _gelu_ibert(x, b, c, shift, multiplier, rshift, x_zp, y_zp, y_min, y_max, out): one kernel
 * call over a C-contiguous x whose last axis holds the channels of the parameter arrays (one
 * value each: per tensor), GIL released; the keyword API's path (the parameters are checked
 * once, not once a row as the ufunc's inner loops must). */
static PyObject *qk_py_gelu_ibert_run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *bo, *co, *so, *mo, *ro, *oo;
    int xzp, yzp, lo, hi;
    if (!PyArg_ParseTuple(args, "OOOOOOiiiiO", &xo, &bo, &co, &so, &mo, &ro, &xzp, &yzp, &lo, &hi,
                          &oo))
        return NULL;
    if (!PyArray_Check(xo) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)xo) ||
        !PyArray_ISALIGNED((PyArrayObject *)xo) || !PyArray_Check(oo) ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)oo) || !PyArray_ISWRITEABLE((PyArrayObject *)oo) ||
        PyArray_SIZE((PyArrayObject *)oo) != PyArray_SIZE((PyArrayObject *)xo)) {
        PyErr_SetString(PyExc_TypeError, "x and out must be C-contiguous arrays of one size");
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)xo, *o = (PyArrayObject *)oo;
    const int xt = PyArray_TYPE(x), yt = PyArray_TYPE(o);
    if ((xt != NPY_UINT8 && xt != NPY_INT8 && xt != NPY_INT32) ||
        (yt != NPY_UINT8 && yt != NPY_INT8 && yt != NPY_INT32)) {
        PyErr_SetString(PyExc_TypeError, "x and out must be uint8, int8 or int32");
        return NULL;
    }
    if (qk_py_check_arr(bo, NPY_INT64, -1, "b") < 0) return NULL;
    const npy_intp ch = PyArray_SIZE((PyArrayObject *)bo);
    if (qk_py_check_arr(co, NPY_INT64, ch, "c") < 0 || qk_py_check_arr(so, NPY_INT64, ch, "shift") < 0 ||
        qk_py_check_arr(mo, NPY_INT32, ch, "multiplier") < 0 ||
        qk_py_check_arr(ro, NPY_INT32, ch, "rshift") < 0)
        return NULL;
    qk_gelu_ibert_params p;
    p.channels = (size_t)ch;
    p.b = (const int64_t *)PyArray_DATA((PyArrayObject *)bo);
    p.c = (const int64_t *)PyArray_DATA((PyArrayObject *)co);
    p.shift = (const int64_t *)PyArray_DATA((PyArrayObject *)so);
    p.multiplier = (const int32_t *)PyArray_DATA((PyArrayObject *)mo);
    p.rshift = (const int32_t *)PyArray_DATA((PyArrayObject *)ro);
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_gelu_ibert(&p, PyArray_DATA(x), qk_py_dt(xt), xzp, (size_t)PyArray_SIZE(x),
                       PyArray_DATA(o), qk_py_dt(yt), yzp, lo, hi);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "qgelu");
    Py_RETURN_NONE;
}

/* ---- token rows: _row_range, _row_quantize, _row_rescale ----------------------------------- */
/* d (int16 or int32, C-contiguous, last axis the row) as rows x cols; 0 with a Python error. */
static int qk_py_rows_of(PyObject *o, const char *name, npy_intp *rows, npy_intp *cols, int *is16) {
    if (!PyArray_Check(o) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)o) ||
        !PyArray_ISALIGNED((PyArrayObject *)o) || PyArray_NDIM((PyArrayObject *)o) < 1) {
        PyErr_Format(PyExc_TypeError, "%s: expected an aligned C-contiguous array", name);
        return 0;
    }
    PyArrayObject *a = (PyArrayObject *)o;
    const int t = PyArray_TYPE(a);
    if (t != NPY_INT16 && t != NPY_INT32) {
        PyErr_Format(PyExc_TypeError, "%s must be int16 or int32", name);
        return 0;
    }
    *is16 = t == NPY_INT16;
    *cols = PyArray_DIM(a, PyArray_NDIM(a) - 1);
    if (*cols < 1) {
        PyErr_Format(PyExc_ValueError, "%s must have a non-empty last axis", name);
        return 0;
    }
    *rows = PyArray_SIZE(a) / *cols;
    return 1;
}

/* a writeable C-contiguous array of `type` and `count` elements; 0 with a Python error */
static int qk_py_rows_out(PyObject *o, int type, npy_intp count, const char *name) {
    if (qk_py_check_arr(o, type, count, name) < 0) return 0;
    if (!PyArray_ISWRITEABLE((PyArrayObject *)o)) {
        PyErr_Format(PyExc_ValueError, "%s is read-only", name);
        return 0;
    }
    return 1;
}

#define QK_PY_DATA(o) PyArray_DATA((PyArrayObject *)(o))

/* _row_range(d, lo, j, e) -> None: qk_row_range_s16 / _s32 (lo int64, j, e int32 per row). */
static PyObject *qk_py_row_range(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d, *lo, *j, *e;
    if (!PyArg_ParseTuple(args, "OOOO", &d, &lo, &j, &e)) return NULL;
    npy_intp rows, cols;
    int is16;
    if (!qk_py_rows_of(d, "d", &rows, &cols, &is16) || !qk_py_rows_out(lo, NPY_INT64, rows, "lo") ||
        !qk_py_rows_out(j, NPY_INT32, rows, "j") || !qk_py_rows_out(e, NPY_INT32, rows, "e"))
        return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = is16 ? qk_row_range_s16((const int16_t *)QK_PY_DATA(d), (size_t)rows, (size_t)cols,
                                 (int64_t *)QK_PY_DATA(lo), (int32_t *)QK_PY_DATA(j),
                                 (int32_t *)QK_PY_DATA(e))
              : qk_row_range_s32((const int32_t *)QK_PY_DATA(d), (size_t)rows, (size_t)cols,
                                 (int64_t *)QK_PY_DATA(lo), (int32_t *)QK_PY_DATA(j),
                                 (int32_t *)QK_PY_DATA(e));
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "row_range");
    Py_RETURN_NONE;
}

/* _row_quantize(d, x, z, j, e, threads) -> None: qk_row_quantize_s16 / _s32. */
static PyObject *qk_py_row_quantize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *d, *x, *z, *j, *e;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOOOi", &d, &x, &z, &j, &e, &threads)) return NULL;
    npy_intp rows, cols;
    int is16;
    if (!qk_py_rows_of(d, "d", &rows, &cols, &is16) ||
        !qk_py_rows_out(x, NPY_UINT8, rows * cols, "x") ||
        !qk_py_rows_out(z, NPY_INT32, rows, "z") || !qk_py_rows_out(j, NPY_INT32, rows, "j") ||
        !qk_py_rows_out(e, NPY_INT32, rows, "e"))
        return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    if (is16)
        st = qk_row_quantize_s16((const int16_t *)QK_PY_DATA(d), (size_t)rows, (size_t)cols,
                                 (uint8_t *)QK_PY_DATA(x), (int32_t *)QK_PY_DATA(z),
                                 (int32_t *)QK_PY_DATA(j), (int32_t *)QK_PY_DATA(e), threads);
    else
        st = qk_row_quantize_s32((const int32_t *)QK_PY_DATA(d), (size_t)rows, (size_t)cols,
                                 (uint8_t *)QK_PY_DATA(x), (int32_t *)QK_PY_DATA(z),
                                 (int32_t *)QK_PY_DATA(j), (int32_t *)QK_PY_DATA(e), threads);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "row_quantize");
    Py_RETURN_NONE;
}

/* _row_rescale(acc, z|None, wsum|None, j, e, mt, st, bias|None, om|None, os|None, ozp, out,
 * threads) -> None: qk_row_rescale (om None: out int32) or qk_row_rescale_requantize (out uint8 or
 * int8); z and wsum given together or not at all. */
static PyObject *qk_py_row_rescale(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *acc, *z, *wsum, *j, *e, *mt, *sto, *bias, *om, *os, *out;
    int ozp, threads;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOiOi", &acc, &z, &wsum, &j, &e, &mt, &sto, &bias, &om,
                          &os, &ozp, &out, &threads))
        return NULL;
    if (qk_py_check_arr(acc, NPY_INT32, -1, "acc") < 0) return NULL;
    const npy_intp n = PyArray_SIZE((PyArrayObject *)acc);
    if (PyArray_NDIM((PyArrayObject *)acc) < 1) {
        PyErr_SetString(PyExc_ValueError, "acc must have a last axis");
        return NULL;
    }
    const npy_intp cols = PyArray_DIM((PyArrayObject *)acc, PyArray_NDIM((PyArrayObject *)acc) - 1);
    if (cols < 1) {
        PyErr_SetString(PyExc_ValueError, "acc must have a non-empty last axis");
        return NULL;
    }
    const npy_intp rows = n / cols;
    if ((z == Py_None) != (wsum == Py_None) || (om == Py_None) != (os == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "z and wsum (om and os) go together");
        return NULL;
    }
    const int stage = om != Py_None;
    const int yt_np = stage && PyArray_Check(out) ? PyArray_TYPE((PyArrayObject *)out) : NPY_INT32;
    if (stage && yt_np != NPY_UINT8 && yt_np != NPY_INT8) {
        PyErr_SetString(PyExc_TypeError, "out must be uint8 or int8 with an output stage");
        return NULL;
    }
    if ((z != Py_None && (qk_py_check_arr(z, NPY_INT32, rows, "z") < 0 ||
                          qk_py_check_arr(wsum, NPY_INT32, cols, "wsum") < 0)) ||
        qk_py_check_arr(j, NPY_INT32, rows, "j") < 0 ||
        qk_py_check_arr(e, NPY_INT32, rows, "e") < 0 ||
        qk_py_check_arr(mt, NPY_INT32, 32, "mt") < 0 ||
        qk_py_check_arr(sto, NPY_INT32, 32, "st") < 0 ||
        (bias != Py_None && qk_py_check_arr(bias, NPY_INT32, cols, "bias") < 0) ||
        (stage && (qk_py_check_arr(om, NPY_INT32, cols, "om") < 0 ||
                   qk_py_check_arr(os, NPY_INT32, cols, "os") < 0)) ||
        !qk_py_rows_out(out, yt_np, n, "out"))
        return NULL;
    const int32_t *zp_ = z == Py_None ? NULL : (const int32_t *)QK_PY_DATA(z);
    const int32_t *ws = wsum == Py_None ? NULL : (const int32_t *)QK_PY_DATA(wsum);
    const int32_t *bs = bias == Py_None ? NULL : (const int32_t *)QK_PY_DATA(bias);
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    if (stage)
        st = qk_row_rescale_requantize(
            (const int32_t *)QK_PY_DATA(acc), (size_t)rows, (size_t)cols, zp_, ws,
            (const int32_t *)QK_PY_DATA(j), (const int32_t *)QK_PY_DATA(e),
            (const int32_t *)QK_PY_DATA(mt), (const int32_t *)QK_PY_DATA(sto), bs,
            (const int32_t *)QK_PY_DATA(om), (const int32_t *)QK_PY_DATA(os), ozp,
            yt_np == NPY_UINT8 ? QK_DT_U8 : QK_DT_S8, QK_PY_DATA(out), threads);
    else
        st = qk_row_rescale((const int32_t *)QK_PY_DATA(acc), (size_t)rows, (size_t)cols, zp_, ws,
                            (const int32_t *)QK_PY_DATA(j), (const int32_t *)QK_PY_DATA(e),
                            (const int32_t *)QK_PY_DATA(mt), (const int32_t *)QK_PY_DATA(sto), bs,
                            (int32_t *)QK_PY_DATA(out), threads);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "row_rescale");
    Py_RETURN_NONE;
}

/* _row_renorm(acc, p, out, threads) -> None: qk_row_renorm; acc int32 and p uint8 C-contiguous
 * with the same leading axes (rows), out int32 of acc's shape. */
static PyObject *qk_py_row_renorm(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *acc, *p, *out;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOi", &acc, &p, &out, &threads)) return NULL;
    if (qk_py_check_arr(acc, NPY_INT32, -1, "acc") < 0 ||
        qk_py_check_arr(p, NPY_UINT8, -1, "p") < 0)
        return NULL;
    PyArrayObject *a = (PyArrayObject *)acc, *pa = (PyArrayObject *)p;
    const int nd = PyArray_NDIM(a);
    if (nd < 1 || PyArray_NDIM(pa) != nd ||
        !PyArray_CompareLists(PyArray_DIMS(a), PyArray_DIMS(pa), nd - 1)) {
        PyErr_SetString(PyExc_ValueError,
                        "acc and p must have the same axes but the last (one row of acc per row "
                        "of p)");
        return NULL;
    }
    const npy_intp cols = PyArray_DIM(a, nd - 1), n = PyArray_DIM(pa, nd - 1);
    if (cols < 1 || n < 1) {
        PyErr_SetString(PyExc_ValueError, "acc and p must have non-empty last axes");
        return NULL;
    }
    const npy_intp rows = PyArray_SIZE(a) / cols;
    if (!qk_py_rows_out(out, NPY_INT32, PyArray_SIZE(a), "out")) return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_row_renorm((const int32_t *)QK_PY_DATA(acc), (size_t)rows, (size_t)cols,
                       (const uint8_t *)QK_PY_DATA(p), (size_t)n, (int32_t *)QK_PY_DATA(out),
                       threads);
    Py_END_ALLOW_THREADS
    if (st == QK_ERR_ARG) {
        PyErr_SetString(PyExc_ValueError,
                        "p: a row sums to 0 (row_renorm divides by the row sums of p; a softmax "
                        "row's max maps to >= 1, so its row never does)");
        return NULL;
    }
    if (st == QK_ERR_OVERFLOW) {
        PyErr_SetString(PyExc_OverflowError,
                        "row_renorm: floor((2^9 acc + rs) / (2 rs)) leaves int32 (acc too large "
                        "for the row sums of p)");
        return NULL;
    }
    if (st != QK_OK) return qk_py_status_error(st, "row_renorm");
    Py_RETURN_NONE;
}

/* _residual_add(acc, r, r_zp, ma, sa, mr, sr, so, out_zp, out, threads) -> None:
 * qk_residual_add on C-contiguous arrays of one shape (r and out uint8 / int8 / int16, the
 * parameter arrays int32 of the last axis' length). */
static int qk_py_res_type(PyObject *o, const char *name, qk_dtype *t) {
    if (!PyArray_Check(o) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)o) ||
        !PyArray_ISALIGNED((PyArrayObject *)o)) {
        PyErr_Format(PyExc_TypeError, "%s: expected an aligned C-contiguous array", name);
        return 0;
    }
    const int n = PyArray_TYPE((PyArrayObject *)o);
    if (n != NPY_UINT8 && n != NPY_INT8 && n != NPY_INT16) {
        PyErr_Format(PyExc_TypeError, "%s must be uint8, int8 or int16", name);
        return 0;
    }
    *t = n == NPY_UINT8 ? QK_DT_U8 : (n == NPY_INT8 ? QK_DT_S8 : QK_DT_S16);
    return 1;
}

static PyObject *qk_py_residual_add(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *acc, *r, *ma, *sa, *mr, *sr, *so, *out;
    int rzp, ozp, threads;
    if (!PyArg_ParseTuple(args, "OOiOOOOOiOi", &acc, &r, &rzp, &ma, &sa, &mr, &sr, &so, &ozp,
                          &out, &threads))
        return NULL;
    if (qk_py_check_arr(acc, NPY_INT32, -1, "acc") < 0) return NULL;
    PyArrayObject *a = (PyArrayObject *)acc;
    const npy_intp n = PyArray_SIZE(a);
    if (PyArray_NDIM(a) < 1 || PyArray_DIM(a, PyArray_NDIM(a) - 1) < 1) {
        PyErr_SetString(PyExc_ValueError, "acc must have a non-empty last axis");
        return NULL;
    }
    const npy_intp cols = PyArray_DIM(a, PyArray_NDIM(a) - 1);
    qk_dtype rt, yt;
    if (!qk_py_res_type(r, "r", &rt) || !qk_py_res_type(out, "out", &yt)) return NULL;
    if (PyArray_SIZE((PyArrayObject *)r) != n || PyArray_SIZE((PyArrayObject *)out) != n) {
        PyErr_SetString(PyExc_ValueError, "acc, r and out must have one size");
        return NULL;
    }
    if (qk_py_check_arr(ma, NPY_INT32, cols, "acc_multiplier") < 0 ||
        qk_py_check_arr(sa, NPY_INT32, cols, "acc_shift") < 0 ||
        qk_py_check_arr(mr, NPY_INT32, cols, "r_multiplier") < 0 ||
        qk_py_check_arr(sr, NPY_INT32, cols, "r_shift") < 0 ||
        qk_py_check_arr(so, NPY_INT32, cols, "out_shift") < 0 ||
        !qk_py_rows_out(out, PyArray_TYPE((PyArrayObject *)out), n, "out"))
        return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_residual_add((const int32_t *)QK_PY_DATA(acc), QK_PY_DATA(r), rt, rzp,
                         (size_t)(n / cols), (size_t)cols, (const int32_t *)QK_PY_DATA(ma),
                         (const int32_t *)QK_PY_DATA(sa), (const int32_t *)QK_PY_DATA(mr),
                         (const int32_t *)QK_PY_DATA(sr), (const int32_t *)QK_PY_DATA(so), ozp,
                         yt, QK_PY_DATA(out), threads);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "residual_add");
    Py_RETURN_NONE;
}

/* The arrays of the softmax calls: x C-contiguous and aligned, at least 1-D, uint8, int8 or
 * int32; out C-contiguous, writeable, uint8, of x's size. 0, or -1 with a TypeError set. */
static int qk_py_softmax_arrays(PyObject *xo, PyObject *oo) {
    if (!PyArray_Check(xo) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)xo) ||
        !PyArray_ISALIGNED((PyArrayObject *)xo) || PyArray_NDIM((PyArrayObject *)xo) < 1 ||
        !PyArray_Check(oo) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)oo) ||
        !PyArray_ISWRITEABLE((PyArrayObject *)oo) || PyArray_TYPE((PyArrayObject *)oo) != NPY_UINT8 ||
        PyArray_SIZE((PyArrayObject *)oo) != PyArray_SIZE((PyArrayObject *)xo)) {
        PyErr_SetString(PyExc_TypeError, "x and out must be C-contiguous arrays of one size, out uint8");
        return -1;
    }
    const int xt = PyArray_TYPE((PyArrayObject *)xo);
    if (xt != NPY_UINT8 && xt != NPY_INT8 && xt != NPY_INT32) {
        PyErr_SetString(PyExc_TypeError, "x must be uint8, int8 or int32");
        return -1;
    }
    return 0;
}

/* _softmax_run(x, method, a, b, c, d, e, out): one qk_softmax_u8 call over a C-contiguous x (rows
 * of its last axis) with one set of parameters, GIL released: the keyword API's path for
 * I-BERT (method 0: x0, b, c, m16, e16) and SOLE (method 1: mult, shift, round, -, -). */
static PyObject *qk_py_softmax_run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *oo;
    int method, d, e;
    long long a, b, c;
    if (!PyArg_ParseTuple(args, "OiLLLiiO", &xo, &method, &a, &b, &c, &d, &e, &oo)) return NULL;
    if (qk_py_softmax_arrays(xo, oo) < 0) return NULL;
    PyArrayObject *x = (PyArrayObject *)xo;
    const int xt = PyArray_TYPE(x);
    qk_softmax_params p;
    memset(&p, 0, sizeof p);
    if (method == 0) {
        p.method = QK_SOFTMAX_IBERT;
        p.x0 = a;
        p.b = b;
        p.c = c;
        p.m16 = d;
        p.e16 = e;
    } else if (method == 1) {
        if (a < INT32_MIN || a > INT32_MAX || b < INT32_MIN || b > INT32_MAX || c < INT32_MIN ||
            c > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "qsoftmax: SOLE parameters out of range");
            return NULL;
        }
        p.method = QK_SOFTMAX_SOLE;
        p.sole_mult = (int32_t)a;
        p.sole_shift = (int32_t)b;
        p.sole_round = (int32_t)c;
    } else {
        PyErr_SetString(PyExc_ValueError, "_softmax_run: method must be 0 (ibert) or 1 (sole)");
        return NULL;
    }
    const npy_intp cols = PyArray_DIM(x, PyArray_NDIM(x) - 1);
    const npy_intp size = PyArray_SIZE(x);
    const size_t rows = cols > 0 ? (size_t)(size / cols) : 0;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_softmax_u8(&p, PyArray_DATA(x), qk_py_dt(xt), rows, (size_t)cols,
                       (uint8_t *)PyArray_DATA((PyArrayObject *)oo));
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "qsoftmax");
    Py_RETURN_NONE;
}

/* _gelu_interp(x, in_multiplier, in_rshift, multiplier, rshift, table, y_zp, y_min, y_max, out):
 * one qk_gelu_interp call over a C-contiguous int32 x (channels along the last axis, or one
 * value each: per tensor), GIL released. */
static PyObject *qk_py_gelu_interp_run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *mio, *eio, *mo, *eo, *to, *oo;
    int yzp, lo, hi;
    if (!PyArg_ParseTuple(args, "OOOOOOiiiO", &xo, &mio, &eio, &mo, &eo, &to, &yzp, &lo, &hi, &oo))
        return NULL;
    if (!PyArray_Check(xo) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)xo) ||
        !PyArray_ISALIGNED((PyArrayObject *)xo) || PyArray_TYPE((PyArrayObject *)xo) != NPY_INT32 ||
        !PyArray_Check(oo) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)oo) ||
        !PyArray_ISWRITEABLE((PyArrayObject *)oo) ||
        PyArray_SIZE((PyArrayObject *)oo) != PyArray_SIZE((PyArrayObject *)xo)) {
        PyErr_SetString(PyExc_TypeError, "x (int32) and out must be C-contiguous arrays of one size");
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)xo, *o = (PyArrayObject *)oo;
    const int yt = PyArray_TYPE(o);
    if (yt != NPY_UINT8 && yt != NPY_INT8 && yt != NPY_INT32) {
        PyErr_SetString(PyExc_TypeError, "out must be uint8, int8 or int32");
        return NULL;
    }
    if (qk_py_check_arr(mio, NPY_INT32, -1, "in_multiplier") < 0) return NULL;
    const npy_intp ch = PyArray_SIZE((PyArrayObject *)mio);
    if (qk_py_check_arr(eio, NPY_INT32, ch, "in_rshift") < 0 ||
        qk_py_check_arr(mo, NPY_INT32, ch, "multiplier") < 0 ||
        qk_py_check_arr(eo, NPY_INT32, ch, "rshift") < 0 ||
        qk_py_check_arr(to, NPY_INT32, QK_GELU_INTERP_ENTRIES, "table") < 0)
        return NULL;
    qk_gelu_interp_params p;
    p.channels = (size_t)ch;
    p.in_multiplier = (const int32_t *)PyArray_DATA((PyArrayObject *)mio);
    p.in_rshift = (const int32_t *)PyArray_DATA((PyArrayObject *)eio);
    p.multiplier = (const int32_t *)PyArray_DATA((PyArrayObject *)mo);
    p.rshift = (const int32_t *)PyArray_DATA((PyArrayObject *)eo);
    p.table = (const int32_t *)PyArray_DATA((PyArrayObject *)to);
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_gelu_interp(&p, (const int32_t *)PyArray_DATA(x), (size_t)PyArray_SIZE(x),
                        PyArray_DATA(o), qk_py_dt(yt), yzp, lo, hi);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "qgelu");
    Py_RETURN_NONE;
}

/* _softmax_exp2(x, mult, shift, cap, table, out): one qk_softmax_exp2 call over a C-contiguous x
 * (rows of its last axis), GIL released. */
static PyObject *qk_py_softmax_exp2_run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *to, *oo;
    int mult, shift, cap;
    if (!PyArg_ParseTuple(args, "OiiiOO", &xo, &mult, &shift, &cap, &to, &oo)) return NULL;
    if (qk_py_softmax_arrays(xo, oo) < 0) return NULL;
    PyArrayObject *x = (PyArrayObject *)xo;
    const int xt = PyArray_TYPE(x);
    if (qk_py_check_arr(to, NPY_INT32, QK_EXP2_TABLE, "table") < 0) return NULL;
    qk_softmax_exp2_params p = {mult, shift, cap, (const int32_t *)PyArray_DATA((PyArrayObject *)to)};
    const npy_intp cols = PyArray_DIM(x, PyArray_NDIM(x) - 1);
    const npy_intp size = PyArray_SIZE(x);
    const size_t rows = cols > 0 ? (size_t)(size / cols) : 0;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_softmax_exp2(&p, PyArray_DATA(x), qk_py_dt(xt), rows, (size_t)cols,
                         (uint8_t *)PyArray_DATA((PyArrayObject *)oo));
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "qsoftmax");
    Py_RETURN_NONE;
}

/* ---- gelu_lut gufunc: (),(256)->() -------------------------------------------------------------- */
static void qk_py_gelu_lut_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                                void *data) {
    (void)data;
    const npy_intp n = dims[0], ts = steps[3];
    uint8_t t[256];
    const char *tp = NULL;
    for (npy_intp i = 0; i < n;) {
        const char *tbl = args[1] + i * steps[1];
        if (tbl != tp) {
            for (int j = 0; j < 256; j++) t[j] = *(const uint8_t *)(tbl + j * ts);
            tp = tbl;
        }
        /* the run of elements that share this table */
        npy_intp cnt = steps[1] == 0 ? n - i : 1;
        if (steps[0] == 1 && steps[2] == 1) {
            (void)qk_gelu_lut(t, args[0] + i, (size_t)cnt, args[2] + i);
        } else {
            for (npy_intp j = 0; j < cnt; j++)
                *(uint8_t *)(args[2] + (i + j) * steps[2]) = t[*(const uint8_t *)(args[0] + (i + j) * steps[0])];
        }
        i += cnt;
    }
}

/* ---- registration ------------------------------------------------------------------------------- */
static PyUFuncGenericFunction qk_mm_funcs[4] = {qk_py_matmul_int32_loop, qk_py_matmul_int32_loop,
                                                qk_py_matmul_int32_loop, qk_py_matmul_int32_loop};

static qk_py_smdef qk_sm_ibert[3] = {{QK_PY_SM_IBERT, NPY_UINT8}, {QK_PY_SM_IBERT, NPY_INT8},
                                     {QK_PY_SM_IBERT, NPY_INT32}};
static qk_py_smdef qk_sm_sole[3] = {{QK_PY_SM_SOLE, NPY_UINT8}, {QK_PY_SM_SOLE, NPY_INT8},
                                    {QK_PY_SM_SOLE, NPY_INT32}};
static qk_py_smdef qk_sm_sole2[3] = {{QK_PY_SM_SOLE_LOG2, NPY_UINT8},
                                     {QK_PY_SM_SOLE_LOG2, NPY_INT8},
                                     {QK_PY_SM_SOLE_LOG2, NPY_INT32}};
static qk_py_smdef qk_sm_lut[2] = {{QK_PY_SM_LUT, NPY_UINT8}, {QK_PY_SM_LUT, NPY_INT8}};
static PyUFuncGenericFunction qk_sm_funcs[3] = {qk_py_softmax_loop, qk_py_softmax_loop,
                                                qk_py_softmax_loop};
static void *qk_sm_ibert_data[3] = {&qk_sm_ibert[0], &qk_sm_ibert[1], &qk_sm_ibert[2]};
static void *qk_sm_sole_data[3] = {&qk_sm_sole[0], &qk_sm_sole[1], &qk_sm_sole[2]};
static void *qk_sm_sole2_data[3] = {&qk_sm_sole2[0], &qk_sm_sole2[1], &qk_sm_sole2[2]};
static void *qk_sm_lut_data[2] = {&qk_sm_lut[0], &qk_sm_lut[1]};
#define QK_IB(X) X, NPY_INT64, NPY_INT64, NPY_INT64, NPY_INT32, NPY_INT32, NPY_UINT8
static char qk_sm_ibert_sig[3 * 7] = {QK_IB(NPY_UINT8), QK_IB(NPY_INT8), QK_IB(NPY_INT32)};
#define QK_SO(X) X, NPY_INT32, NPY_INT32, NPY_INT32, NPY_UINT8
static char qk_sm_sole_sig[3 * 5] = {QK_SO(NPY_UINT8), QK_SO(NPY_INT8), QK_SO(NPY_INT32)};
#define QK_SO2(X) X, NPY_INT32, NPY_INT32, NPY_INT32, NPY_UINT8, NPY_UINT8
static char qk_sm_sole2_sig[3 * 6] = {QK_SO2(NPY_UINT8), QK_SO2(NPY_INT8), QK_SO2(NPY_INT32)};
static char qk_sm_lut_sig[2 * 3] = {NPY_UINT8, NPY_UINT32, NPY_UINT8, NPY_INT8, NPY_UINT32,
                                    NPY_UINT8};

static qk_py_geludef qk_gl_defs[9] = {
    {NPY_UINT8, NPY_UINT8}, {NPY_UINT8, NPY_INT8}, {NPY_UINT8, NPY_INT32},
    {NPY_INT8, NPY_UINT8},  {NPY_INT8, NPY_INT8},  {NPY_INT8, NPY_INT32},
    {NPY_INT32, NPY_UINT8}, {NPY_INT32, NPY_INT8}, {NPY_INT32, NPY_INT32}};
static PyUFuncGenericFunction qk_gl_funcs[9] = {
    qk_py_gelu_ibert_loop, qk_py_gelu_ibert_loop, qk_py_gelu_ibert_loop,
    qk_py_gelu_ibert_loop, qk_py_gelu_ibert_loop, qk_py_gelu_ibert_loop,
    qk_py_gelu_ibert_loop, qk_py_gelu_ibert_loop, qk_py_gelu_ibert_loop};
static void *qk_gl_data[9] = {&qk_gl_defs[0], &qk_gl_defs[1], &qk_gl_defs[2],
                              &qk_gl_defs[3], &qk_gl_defs[4], &qk_gl_defs[5],
                              &qk_gl_defs[6], &qk_gl_defs[7], &qk_gl_defs[8]};
#define QK_GL(X, Y)                                                                             \
    X, NPY_INT32, NPY_INT64, NPY_INT64, NPY_INT64, NPY_INT32, NPY_INT32, NPY_INT32, NPY_INT32, \
        NPY_INT32, Y
static char qk_gl_sig[9 * 11] = {
    QK_GL(NPY_UINT8, NPY_UINT8), QK_GL(NPY_UINT8, NPY_INT8), QK_GL(NPY_UINT8, NPY_INT32),
    QK_GL(NPY_INT8, NPY_UINT8),  QK_GL(NPY_INT8, NPY_INT8),  QK_GL(NPY_INT8, NPY_INT32),
    QK_GL(NPY_INT32, NPY_UINT8), QK_GL(NPY_INT32, NPY_INT8), QK_GL(NPY_INT32, NPY_INT32)};

static PyUFuncGenericFunction qk_gt_funcs[4] = {qk_py_gelu_lut_loop, qk_py_gelu_lut_loop,
                                                qk_py_gelu_lut_loop, qk_py_gelu_lut_loop};
static void *qk_gt_data[4] = {NULL, NULL, NULL, NULL};
static char qk_gt_sig[4 * 3] = {NPY_UINT8, NPY_UINT8, NPY_UINT8, NPY_INT8, NPY_UINT8, NPY_UINT8,
                                NPY_UINT8, NPY_INT8,  NPY_INT8,  NPY_INT8, NPY_INT8,  NPY_INT8};

static PyMethodDef qk_py_tf_methods[] = {
    {"_bmm", qk_py_bmm, METH_VARARGS,
     "_bmm(a, b, a_zp, b_zp, b_kn, out, scheme, bias, float_bias, scale, multiplier, shift, zp,"
     " act_min, act_max, wrap, threads) -> None, raises on a bad status (qk_bmm; use"
     " qkernels.qmatmul)"},
    {"_softmax_run", qk_py_softmax_run, METH_VARARGS,
     "_softmax_run(x, method, a, b, c, d, e, out) -> None, raises on a bad status (qk_softmax_u8"
     " on a contiguous array, one set of I-BERT (0) or SOLE (1) parameters; use qkernels.qsoftmax)"},
    {"_row_range", qk_py_row_range, METH_VARARGS,
     "_row_range(d, lo, j, e) -> None (qk_row_range_s16 / _s32; use qkernels.transformer.row_range)"},
    {"_row_quantize", qk_py_row_quantize, METH_VARARGS,
     "_row_quantize(d, x, z, j, e, threads) -> None (qk_row_quantize_s16 / _s32; use"
     " qkernels.transformer.row_quantize)"},
    {"_row_rescale", qk_py_row_rescale, METH_VARARGS,
     "_row_rescale(acc, z, wsum, j, e, mt, st, bias, om, os, ozp, out, threads) -> None"
     " (qk_row_rescale / qk_row_rescale_requantize; use qkernels.transformer.row_rescale)"},
    {"_row_renorm", qk_py_row_renorm, METH_VARARGS,
     "_row_renorm(acc, p, out, threads) -> None (qk_row_renorm; use"
     " qkernels.transformer.row_renorm)"},
    {"_residual_add", qk_py_residual_add, METH_VARARGS,
     "_residual_add(acc, r, r_zp, ma, sa, mr, sr, so, out_zp, out, threads) -> None"
     " (qk_residual_add; use qkernels.transformer.prepare_residual_add)"},
    {"_gelu_interp", qk_py_gelu_interp_run, METH_VARARGS,
     "_gelu_interp(x, in_multiplier, in_rshift, multiplier, rshift, table, y_zp, y_min, y_max, "
     "out) -> None, raises on a bad status (qk_gelu_interp; use qkernels.qgelu)"},
    {"_softmax_exp2", qk_py_softmax_exp2_run, METH_VARARGS,
     "_softmax_exp2(x, mult, shift, cap, table, out) -> None, raises on a bad status "
     "(qk_softmax_exp2; use qkernels.qsoftmax)"},
    {"_gelu_ibert", qk_py_gelu_ibert_run, METH_VARARGS,
     "_gelu_ibert(x, b, c, shift, multiplier, rshift, x_zp, y_zp, y_min, y_max, out) -> None,"
     " raises on a bad status (qk_gelu_ibert on contiguous arrays; use qkernels.qgelu)"},
    {NULL, NULL, 0, NULL}};

/* The ufuncs and gufuncs of this file (signature NULL: a plain ufunc). */
static const struct {
    const char *name, *doc, *signature;
    int nin, nout, ntypes;
    PyUFuncGenericFunction *funcs;
    void **data;
    char *types;
} qk_py_tf_ufuncs[] = {
    {"matmul_int32",
     "matmul_int32(a, b, a_zero_point, b_zero_point, /, out=None, ...)\n\n"
     "Exact int32 sums y[..., i, j] = sum_k (a[i,k] - a_zp) * (b[k,j] - b_zp), signature\n"
     "(m,k),(k,n),(),()->(m,n); a, b uint8/int8, zero points int32 (they broadcast: per\n"
     "batch item). A bad zero point or an accumulator bound beyond int32 raises the\n"
     "floating-point 'invalid' flag; qkernels.matmul_int32 checks first.",
     "(m,k),(k,n),(),()->(m,n)", 4, 1, 4, qk_mm_funcs, qk_py_q8pair_data, qk_py_q8pair_types},
    {"softmax_ibert",
     "softmax_ibert(x, x0, b, c, m16, e16, /, out=None, ...)\n\n"
     "I-BERT integer softmax over the last axis, uint8 probabilities (scale 1/256); x "
     "uint8/int8/int32; parameters from qkernels.prepare_softmax.",
     "(n),(),(),(),(),()->(n)", 6, 1, 3, qk_sm_funcs, qk_sm_ibert_data, qk_sm_ibert_sig},
    {"softmax_sole",
     "softmax_sole(x, mult, shift, round, /, out=None, ...)\n\n"
     "SOLE E2Softmax over the last axis, uint8 probabilities (scale 1/256).",
     "(n),(),(),()->(n)", 4, 1, 3, qk_sm_funcs, qk_sm_sole_data, qk_sm_sole_sig},
    {"softmax_sole_log2",
     "softmax_sole_log2(x, mult, shift, round, /, out=(None, None), ...)\n\n"
     "SOLE E2Softmax, log2 form: exponent e (uint8) per element and the row's ALDivision bit: "
     "p = (0.568 if bit else 0.818) * 2^-e.",
     "(n),(),(),()->(n),()", 4, 2, 3, qk_sm_funcs, qk_sm_sole2_data, qk_sm_sole2_sig},
    {"softmax_lut",
     "softmax_lut(x, lut, /, out=None, ...)\n\n"
     "Integer softmax from a 256-entry exponent table of max - x (uint8 or int8 input), uint8 "
     "probabilities (scale 1/256).",
     "(n),(256)->(n)", 2, 1, 2, qk_sm_funcs, qk_sm_lut_data, qk_sm_lut_sig},
    {"gelu_ibert",
     "gelu_ibert(x, x_zp, b, c, shift, multiplier, rshift, y_zp, y_min, y_max, /, out=None, "
     "...)\n\nI-BERT i-GELU, requantized (qkernels.h); x uint8/int8/int32; parameters from "
     "qkernels.prepare_gelu (they broadcast: per-channel along the last axis). The output type "
     "picks the loop: pass out= or signature= for int8/int32.",
     NULL, 10, 1, 9, qk_gl_funcs, qk_gl_data, qk_gl_sig},
    {"gelu_lut",
     "gelu_lut(x, table, /, out=None, ...)\n\n"
     "y = table[byte of x] (GELU from a 256-entry table, qkernels.prepare_gelu(method='lut')); "
     "x uint8/int8, table uint8 or int8 (the output type).",
     "(),(256)->()", 2, 1, 4, qk_gt_funcs, qk_gt_data, qk_gt_sig},
};

int qk_py_register_transformer(PyObject *module) {
    if (PyModule_AddFunctions(module, qk_py_tf_methods) < 0) return -1;
    for (size_t i = 0; i < sizeof qk_py_tf_ufuncs / sizeof qk_py_tf_ufuncs[0]; i++) {
        const char *name = qk_py_tf_ufuncs[i].name;
        if (qk_py_add_gufunc(module, name, qk_py_tf_ufuncs[i].doc, qk_py_tf_ufuncs[i].nin,
                             qk_py_tf_ufuncs[i].nout, qk_py_tf_ufuncs[i].ntypes,
                             qk_py_tf_ufuncs[i].funcs, qk_py_tf_ufuncs[i].data,
                             qk_py_tf_ufuncs[i].types, qk_py_tf_ufuncs[i].signature) < 0)
            return -1;
    }
    return 0;
}
