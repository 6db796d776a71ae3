/* ufunc_glue.c -- the strided ufunc loop shared by all elementwise kernels, and ufunc creation.
 *
 * Fast path: every parameter operand has stride 0 (a scalar, or a per-channel value constant
 * along the inner loop) and the data operands are contiguous: one call of the C kernel.
 * Strided data: gathered into small stack buffers, one kernel call per block.
 * Parameters that vary along the inner loop (per-channel on the last axis): one call per element.
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
        for (npy_intp i = 0; i < n && st == QK_OK; i++) {
            qk_py_read_params(d, args, i, steps, &p);
            st = qk_py_run_strided(d, args[0] + i * steps[0], steps[0], args[nin] + i * steps[nin],
                                   steps[nin], 1, &p);
        }
    }
    /* Our kernels can raise overflow/underflow flags in intermediate products that saturate by
     * design (x * inv -> inf clamps to qmax); only an error of ours is reported. */
    feclearexcept(FE_ALL_EXCEPT & ~FE_INVALID);
    if (st != QK_OK) {
        if (st != QK_ERR_NAN && st != QK_ERR_OVERFLOW) /* refused before writing anything */
            qk_py_zero_outputs(args[nin], n, steps[nin], d->ysize);
        feraiseexcept(FE_INVALID);
    }
}

void qk_py_zero_outputs(char *y, npy_intp n, npy_intp step, int size) {
    for (npy_intp i = 0; i < n; i++) memset(y + i * step, 0, (size_t)size);
}

int qk_py_add_ufunc(PyObject *module, const char *name, const char *doc, int nin, int nout,
                    int ntypes, PyUFuncGenericFunction *funcs, void **data, char *types) {
    PyObject *uf = PyUFunc_FromFuncAndData(funcs, data, types, ntypes, nin, nout, PyUFunc_None,
                                           name, doc, 0);
    if (uf == NULL) return -1;
    if (PyModule_AddObject(module, name, uf) < 0) {
        Py_DECREF(uf);
        return -1;
    }
    return 0;
}
