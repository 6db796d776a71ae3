/* ufunc_glue.c -- what the glue files share: the strided ufunc loop of the elementwise kernels,
 * the status flag of every ufunc loop, ufunc / gufunc creation, the array checks of the module
 * functions and the output stage (qk_epilogue) they read from their arguments.
 *
 * Fast path: every parameter operand has stride 0 (a scalar, or a per-channel value constant
 * along the inner loop) and the data operands are contiguous: one call of the C kernel.
 * Strided data: gathered into small stack buffers, one kernel call per block.
 * Parameters that vary along the inner loop: one call per run of equal parameters (one element
 * each for per-channel parameters on the last axis; qkernels' keyword API runs those on the
 * transposed, channels-first array instead, see run_ufunc in qkernels/_checks.py).
 */
#include "qk_numpy.h"

#include <fenv.h>
#include <string.h>

enum { QK_PY_BLOCK = 512 };

static void qk_py_read_params(const qk_py_loopdef *d, char **args, npy_intp i,
                              npy_intp const *steps, qk_py_params *p) {
    memset(p, 0, sizeof(*p));
    for (int k = 0; k < d->nparams; k++) {
        const char *ptr = args[1 + k] + i * steps[1 + k];
        int32_t iv;
        switch (d->params[k]) {
            case QK_P_SCALE: memcpy(&p->scale, ptr, sizeof(float)); break;
            case QK_P_MULTIPLIER: memcpy(&iv, ptr, 4); p->multiplier = iv; break;
            case QK_P_SHIFT: memcpy(&iv, ptr, 4); p->shift = iv; break;
            case QK_P_ZERO_POINT: memcpy(&iv, ptr, 4); p->zero_point = iv; break;
            case QK_P_QMIN: memcpy(&iv, ptr, 4); p->qmin = iv; break;
            case QK_P_QMAX: memcpy(&iv, ptr, 4); p->qmax = iv; break;
            case QK_P_BIAS: memcpy(&p->bias, ptr, sizeof(float)); break;
            default: break;
        }
    }
}

/* 1 when the parameter operands hold the same bytes at elements i and j. */
static int qk_py_same_params(const qk_py_loopdef *d, char **args, npy_intp i, npy_intp j,
                             npy_intp const *steps) {
    for (int k = 1; k <= d->nparams; k++)
        if (steps[k] != 0 && memcmp(args[k] + i * steps[k], args[k] + j * steps[k], 4) != 0)
            return 0;
    return 1;
}

static qk_status qk_py_run_strided(const qk_py_loopdef *d, const char *x, npy_intp sx, char *y,
                                   npy_intp sy, npy_intp n, const qk_py_params *p) {
    if (sx == d->xsize && sy == d->ysize) return d->kernel(x, (size_t)n, p, y);
    _Alignas(16) unsigned char xb[QK_PY_BLOCK * 8], yb[QK_PY_BLOCK * 8];
    for (npy_intp start = 0; start < n; start += QK_PY_BLOCK) {
        const npy_intp m = n - start < QK_PY_BLOCK ? n - start : QK_PY_BLOCK;
        for (npy_intp i = 0; i < m; i++)
            memcpy(xb + i * d->xsize, x + (start + i) * sx, (size_t)d->xsize);
        const qk_status st = d->kernel(xb, (size_t)m, p, yb);
        if (st != QK_OK) return st;
        for (npy_intp i = 0; i < m; i++)
            memcpy(y + (start + i) * sy, yb + i * d->ysize, (size_t)d->ysize);
    }
    return QK_OK;
}

void qk_py_elementwise_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                            void *data) {
    const qk_py_loopdef *d = (const qk_py_loopdef *)data;
    const npy_intp n = dims[0];
    const int nin = 1 + d->nparams;
    int params_const = 1;
    for (int k = 1; k < nin; k++) params_const &= steps[k] == 0;
    qk_status st = QK_OK;
    qk_py_params p;
    if (params_const) {
        qk_py_read_params(d, args, 0, steps, &p);
        st = qk_py_run_strided(d, args[0], steps[0], args[nin], steps[nin], n, &p);
    } else {
        /* one kernel call per run of equal parameters (a per-channel parameter broadcast along
         * the rows of a channels-first array arrives as runs, e.g. from NumPy's buffers) */
        for (npy_intp i = 0, j; i < n && st == QK_OK; i = j) {
            qk_py_read_params(d, args, i, steps, &p);
            for (j = i + 1; j < n && qk_py_same_params(d, args, i, j, steps); j++) {
            }
            st = qk_py_run_strided(d, args[0] + i * steps[0], steps[0], args[nin] + i * steps[nin],
                                   steps[nin], j - i, &p);
        }
    }
    qk_py_loop_end(st, args[nin], n, steps[nin], d->ysize);
}

/* Tiles of QK_PY_TILE_C channels x QK_PY_TILE_R rows, transposed into channel-major buffers. */
enum { QK_PY_TILE_C = 16, QK_PY_TILE_R = 128 };

/* dst[j * nr + i] = src[i * row + j] for i < nr, j < nc (elements of `size` bytes; row in
 * elements): a tile in or out of channel-major order. */
#define QK_PY_TILE_COPY(T, DST, DROW, DCOL, SRC, SROW, SCOL)                                  \
    for (npy_intp i = 0; i < nr; i++)                                                        \
        for (npy_intp j = 0; j < nc; j++)                                                    \
            memcpy((DST) + ((DROW) * i + (DCOL) * j) * (npy_intp)sizeof(T),                  \
                   (SRC) + ((SROW) * i + (SCOL) * j) * (npy_intp)sizeof(T), sizeof(T));
static void qk_py_tile(char *dst, npy_intp drow, npy_intp dcol, const char *src, npy_intp srow,
                       npy_intp scol, npy_intp nr, npy_intp nc, int size) {
    switch (size) {
        case 1: QK_PY_TILE_COPY(uint8_t, dst, drow, dcol, src, srow, scol) break;
        case 2: QK_PY_TILE_COPY(uint16_t, dst, drow, dcol, src, srow, scol) break;
        case 4: QK_PY_TILE_COPY(uint32_t, dst, drow, dcol, src, srow, scol) break;
        default: QK_PY_TILE_COPY(uint64_t, dst, drow, dcol, src, srow, scol) break;
    }
}

qk_status qk_py_elementwise_channels(const qk_py_loopdef *d, const char *x, char *const *params,
                                     const npy_intp *pstep, char *y, npy_intp rows,
                                     npy_intp chans) {
    _Alignas(64) char xb[QK_PY_TILE_C * QK_PY_TILE_R * 8], yb[QK_PY_TILE_C * QK_PY_TILE_R * 8];
    const npy_intp zero[8] = {0};
    qk_py_params p;
    for (npy_intp r0 = 0; r0 < rows; r0 += QK_PY_TILE_R) {
        const npy_intp nr = rows - r0 < QK_PY_TILE_R ? rows - r0 : QK_PY_TILE_R;
        for (npy_intp c0 = 0; c0 < chans; c0 += QK_PY_TILE_C) {
            const npy_intp nc = chans - c0 < QK_PY_TILE_C ? chans - c0 : QK_PY_TILE_C;
            qk_py_tile(xb, 1, nr, x + (r0 * chans + c0) * d->xsize, chans, 1, nr, nc, d->xsize);
            for (npy_intp j = 0; j < nc; j++) {
                char *a[8];
                for (int k = 0; k < d->nparams; k++) a[1 + k] = params[k] + (c0 + j) * pstep[k];
                qk_py_read_params(d, a, 0, zero, &p);
                const qk_status st = d->kernel(xb + j * nr * d->xsize, (size_t)nr, &p,
                                               yb + j * nr * d->ysize);
                if (st != QK_OK) return st;
            }
            qk_py_tile(y + (r0 * chans + c0) * d->ysize, chans, 1, yb, 1, nr, nr, nc, d->ysize);
        }
    }
    return QK_OK;
}

void qk_py_loop_status(qk_status st) {
    /* Our kernels can raise overflow/underflow flags in intermediate products that saturate by
     * design (x * inv -> inf clamps to qmax); only an error of ours is reported. */
    feclearexcept(FE_ALL_EXCEPT & ~FE_INVALID);
    if (st != QK_OK) feraiseexcept(FE_INVALID);
}

void qk_py_loop_end(qk_status st, char *y, npy_intp n, npy_intp step, int size) {
    if (st != QK_OK && st != QK_ERR_NAN && st != QK_ERR_OVERFLOW) /* refused before writing */
        qk_py_zero_outputs(y, n, step, size);
    qk_py_loop_status(st);
}

void qk_py_zero_outputs(char *y, npy_intp n, npy_intp step, int size) {
    for (npy_intp i = 0; i < n; i++) memset(y + i * step, 0, (size_t)size);
}

int qk_py_add_gufunc(PyObject *module, const char *name, const char *doc, int nin, int nout,
                     int ntypes, PyUFuncGenericFunction *funcs, void **data, char *types,
                     const char *signature) {
    PyObject *uf = PyUFunc_FromFuncAndDataAndSignature(funcs, data, types, ntypes, nin, nout,
                                                       PyUFunc_None, name, doc, 0, signature);
    if (uf == NULL) return -1;
    if (PyModule_AddObject(module, name, uf) < 0) {
        Py_DECREF(uf);
        return -1;
    }
    return 0;
}

int qk_py_add_ufunc(PyObject *module, const char *name, const char *doc, int nin, int nout,
                    int ntypes, PyUFuncGenericFunction *funcs, void **data, char *types) {
    return qk_py_add_gufunc(module, name, doc, nin, nout, ntypes, funcs, data, types, NULL);
}

int qk_py_check_arr(PyObject *o, int type, npy_intp count, const char *name) {
    if (!PyArray_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array", name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)o;
    if (PyArray_TYPE(a) != type || !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_TypeError, "%s: wrong dtype or not C-contiguous", name);
        return -1;
    }
    if (count >= 0 && PyArray_SIZE(a) != count) {
        PyErr_Format(PyExc_ValueError, "%s must have %zd elements", name, (Py_ssize_t)count);
        return -1;
    }
    return 0;
}

/* *p = the data of o (n elements of `type`), or NULL for None. */
static int qk_py_optional(PyObject *o, int type, size_t n, const char *name, const void **p) {
    *p = NULL;
    if (o == Py_None) return 0;
    if (qk_py_check_arr(o, type, (npy_intp)n, name) < 0) return -1;
    *p = PyArray_DATA((PyArrayObject *)o);
    return 0;
}

int qk_py_epilogue(const qk_py_epi_args *a, size_t n, PyArrayObject *out, qk_epilogue *ep) {
    memset(ep, 0, sizeof *ep);
    ep->scheme = (qk_requant_scheme)a->scheme;
    const int ot = PyArray_TYPE(out);
    ep->out_type = ot == NPY_UINT8 ? QK_DT_U8 : ot == NPY_INT8 ? QK_DT_S8
                 : ot == NPY_FLOAT32 ? QK_DT_F32 : QK_DT_S32;
    if (ot != NPY_UINT8 && ot != NPY_INT8 && ot != NPY_INT32 && ot != NPY_FLOAT32) {
        PyErr_SetString(PyExc_TypeError, "out must be uint8, int8, int32 or float32");
        return -1;
    }
    const void *bias, *fbias, *scale, *mult, *shift;
    if (qk_py_optional(a->bias, NPY_INT32, n, "bias", &bias) < 0 ||
        qk_py_optional(a->fbias, NPY_FLOAT32, n, "float_bias", &fbias) < 0 ||
        /* QK_REQ_FP64 (TFLite's reference FullyConnected) takes a float64 scale */
        qk_py_optional(a->scale, a->scheme == QK_REQ_FP64 ? NPY_FLOAT64 : NPY_FLOAT32, n, "scale",
                       &scale) < 0 ||
        qk_py_optional(a->mult, NPY_INT32, n, "multiplier", &mult) < 0 ||
        qk_py_optional(a->shift, NPY_INT32, n, "shift", &shift) < 0)
        return -1;
    ep->bias = (const int32_t *)bias;
    ep->float_bias = (const float *)fbias;
    if (a->scheme == QK_REQ_FP64)
        ep->scale64 = (const double *)scale;
    else
        ep->scale = (const float *)scale;
    ep->multiplier = (const int32_t *)mult;
    ep->shift = (const int32_t *)shift;
    ep->zero_point = a->zp;
    ep->act_min = a->amin;
    ep->act_max = a->amax;
    ep->wrap = a->wrap;
    return 0;
}

/* (x, w) = (u8, s8), (s8, s8), (u8, u8), (s8, u8): NumPy's loop order of the int32 gufuncs. */
static const qk_dtype QK_PY_Q8PAIRS[4][2] = {
    {QK_DT_U8, QK_DT_S8}, {QK_DT_S8, QK_DT_S8}, {QK_DT_U8, QK_DT_U8}, {QK_DT_S8, QK_DT_U8}};
void *qk_py_q8pair_data[4] = {(void *)QK_PY_Q8PAIRS[0], (void *)QK_PY_Q8PAIRS[1],
                              (void *)QK_PY_Q8PAIRS[2], (void *)QK_PY_Q8PAIRS[3]};
char qk_py_q8pair_types[4 * 5] = {
    NPY_UINT8, NPY_INT8,  NPY_INT32, NPY_INT32, NPY_INT32, NPY_INT8,  NPY_INT8,
    NPY_INT32, NPY_INT32, NPY_INT32, NPY_UINT8, NPY_UINT8, NPY_INT32, NPY_INT32,
    NPY_INT32, NPY_INT8,  NPY_UINT8, NPY_INT32, NPY_INT32, NPY_INT32};
