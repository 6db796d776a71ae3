/* ptf.c (python glue) -- PTF quantize/dequantize as NumPy ufuncs, and the integer LayerNorm as
 * four module functions (_layernorm_prepare, _layernorm_run, _layernorm_s16_run,
 * _layernorm_stats) over contiguous arrays. The LayerNorm runs with the GIL released. Argument checks that name the argument live
 * in qkernels/ptf.py; this file re-checks what memory safety needs (dtypes, sizes, contiguity).
 */
#include "qk_numpy.h"

#include <string.h>

/* ---- ufuncs: (x, scale, alpha, zero_point) -> q and (q, scale, alpha, zero_point) -> x ----- */
/* One PTF kernel call: a row of n channels (contiguous v, alpha and out; one scale and zero
 * point), or one element. */
typedef qk_status (*qk_py_ptf_fn)(const void *v, size_t n, float s, const int32_t *alpha,
                                  int32_t zp, void *out);
static qk_status qk_py_ptf_quantize(const void *v, size_t n, float s, const int32_t *alpha,
                                    int32_t zp, void *out) {
    return qk_ptf_quantize_f32_u8((const float *)v, 1, n, s, alpha, zp, (uint8_t *)out, NULL);
}
static qk_status qk_py_ptf_dequantize(const void *v, size_t n, float s, const int32_t *alpha,
                                      int32_t zp, void *out) {
    return qk_ptf_dequantize_u8_f32((const uint8_t *)v, 1, n, s, alpha, zp, (float *)out);
}

/* The loop of both ufuncs: one kernel call over the inner dimension when the data operands are
 * contiguous and scale / zero point constant, else one call per element. */
static void qk_py_ptf_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                           qk_py_ptf_fn fn, npy_intp vsize, npy_intp osize) {
    const npy_intp n = dims[0];
    qk_status st = QK_OK;
    float s;
    int32_t zp;
    if (steps[0] == vsize && steps[1] == 0 && steps[2] == 4 && steps[3] == 0 && steps[4] == osize) {
        memcpy(&s, args[1], 4);
        memcpy(&zp, args[3], 4);
        st = fn(args[0], (size_t)n, s, (const int32_t *)args[2], zp, args[4]);
    } else {
        for (npy_intp i = 0; i < n && st == QK_OK; i++) {
            _Alignas(4) unsigned char v[4], o[4] = {0, 0, 0, 0};
            int32_t a;
            memcpy(v, args[0] + i * steps[0], (size_t)vsize);
            memcpy(&s, args[1] + i * steps[1], 4);
            memcpy(&a, args[2] + i * steps[2], 4);
            memcpy(&zp, args[3] + i * steps[3], 4);
            st = fn(v, 1, s, &a, zp, o);
            if (st == QK_OK) memcpy(args[4] + i * steps[4], o, (size_t)osize);
        }
    }
    qk_py_loop_end(st, args[4], n, steps[4], (int)osize);
}

static void qk_py_ptf_quantize_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                                    void *data) {
    (void)data;
    qk_py_ptf_loop(args, dims, steps, qk_py_ptf_quantize, 4, 1);
}

static void qk_py_ptf_dequantize_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                                      void *data) {
    (void)data;
    qk_py_ptf_loop(args, dims, steps, qk_py_ptf_dequantize, 1, 4);
}

/* ---- LayerNorm -------------------------------------------------------------------------- */
static PyObject *qk_py_layernorm_prepare(PyObject *self, PyObject *args) {
    (void)self;
    int method, in_zp, out_zp;
    float in_scale, eps, out_scale;
    PyObject *alpha_o, *gamma_o, *beta_o;
    if (!PyArg_ParseTuple(args, "ifOiOOffi", &method, &in_scale, &alpha_o, &in_zp, &gamma_o,
                          &beta_o, &eps, &out_scale, &out_zp))
        return NULL;
    if (qk_py_check_arr(alpha_o, NPY_INT32, -1, "alpha") < 0) return NULL;
    const npy_intp C = PyArray_SIZE((PyArrayObject *)alpha_o);
    if (qk_py_check_arr(gamma_o, NPY_FLOAT32, C, "gamma") < 0 ||
        qk_py_check_arr(beta_o, NPY_FLOAT32, C, "beta") < 0)
        return NULL;
    npy_intp dims[1] = {C}, ldims[1] = {256};
    PyArrayObject *g = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_INT32);
    PyArrayObject *b = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_INT64);
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_UINT8);
    PyArrayObject *lut = (PyArrayObject *)PyArray_SimpleNew(1, ldims, NPY_UINT32);
    if (!g || !b || !a || !lut) goto fail;
    qk_layernorm_params p;
    memset(&p, 0, sizeof p);
    const qk_status st = qk_layernorm_prepare(
        &p, (qk_layernorm_method)method, (size_t)C, in_scale,
        (const int32_t *)PyArray_DATA((PyArrayObject *)alpha_o), in_zp,
        (const float *)PyArray_DATA((PyArrayObject *)gamma_o),
        (const float *)PyArray_DATA((PyArrayObject *)beta_o), eps, out_scale, out_zp,
        (int32_t *)PyArray_DATA(g), (int64_t *)PyArray_DATA(b), (uint8_t *)PyArray_DATA(a));
    if (st != QK_OK) {
        qk_py_status_error(st, "layernorm prepare");
        goto fail;
    }
    memcpy(PyArray_DATA(lut), p.inv_sqrt_lut, sizeof p.inv_sqrt_lut);
    return Py_BuildValue("{s:N,s:N,s:N,s:N,s:i,s:L,s:L,s:L,s:f,s:f}", "gamma", (PyObject *)g,
                         "beta", (PyObject *)b, "alpha", (PyObject *)a, "lut", (PyObject *)lut,
                         "shift", (int)p.shift, "eps_term", (long long)p.eps_term,
                         "gamma_multiplier", (long long)p.gamma_multiplier, "beta_multiplier",
                         (long long)p.beta_multiplier, "sole_gamma_scale",
                         (double)p.sole_gamma_scale, "sole_beta_scale",
                         (double)p.sole_beta_scale);
fail:
    Py_XDECREF(g);
    Py_XDECREF(b);
    Py_XDECREF(a);
    Py_XDECREF(lut);
    return NULL;
}

/* Parses (q, method, in_zp, out_zp, shift, eps_term, gamma_mult, beta_mult, alpha, gamma,
 * beta, lut, out[, threads]) into p (threads: 1 when not given); returns the number of tokens, or
 * -1 with an error set. */
static npy_intp qk_py_ln_parse(PyObject *args, qk_layernorm_params *p, PyArrayObject **q,
                               PyObject **out, int *threads, int q_type) {
    int method, in_zp, out_zp, shift;
    long long eps_term, gm, bm;
    PyObject *q_o, *alpha_o, *gamma_o, *beta_o, *lut_o;
    *threads = 1;
    if (!PyArg_ParseTuple(args, "OiiiiLLLOOOOO|i", &q_o, &method, &in_zp, &out_zp, &shift,
                          &eps_term, &gm, &bm, &alpha_o, &gamma_o, &beta_o, &lut_o, out, threads))
        return -1;
    if (qk_py_check_arr(alpha_o, NPY_UINT8, -1, "alpha") < 0) return -1;
    const npy_intp C = PyArray_SIZE((PyArrayObject *)alpha_o);
    if (qk_py_check_arr(gamma_o, NPY_INT32, C, "gamma") < 0 ||
        qk_py_check_arr(beta_o, NPY_INT64, C, "beta") < 0 ||
        qk_py_check_arr(lut_o, NPY_UINT32, 256, "lut") < 0 ||
        qk_py_check_arr(q_o, q_type, -1, "q") < 0)
        return -1;
    if (C < 1 || PyArray_SIZE((PyArrayObject *)q_o) % C != 0) {
        PyErr_SetString(PyExc_ValueError, "q: size is not a multiple of the channel count");
        return -1;
    }
    const uint8_t *al = (const uint8_t *)PyArray_DATA((PyArrayObject *)alpha_o);
    for (npy_intp c = 0; c < C; c++) {
        if (al[c] > QK_PTF_MAX_ALPHA) {
            PyErr_SetString(PyExc_ValueError, "alpha out of range");
            return -1;
        }
    }
    memset(p, 0, sizeof *p);
    p->method = method;
    p->channels = (int32_t)(C > INT32_MAX ? INT32_MAX : C);
    p->in_zero_point = in_zp;
    p->out_zero_point = out_zp;
    p->out_qmin = INT8_MIN;
    p->out_qmax = INT8_MAX;
    p->shift = shift;
    p->eps_term = eps_term;
    p->gamma_multiplier = gm;
    p->beta_multiplier = bm;
    p->alpha = al;
    p->gamma = (const int32_t *)PyArray_DATA((PyArrayObject *)gamma_o);
    p->beta = (const int64_t *)PyArray_DATA((PyArrayObject *)beta_o);
    memcpy(p->inv_sqrt_lut, PyArray_DATA((PyArrayObject *)lut_o), sizeof p->inv_sqrt_lut);
    /* the bounds of gamma/beta/eps/lut are checked by the C kernel (qk__ln_check) */
    *q = (PyArrayObject *)q_o;
    return PyArray_SIZE((PyArrayObject *)q_o) / C;
}

/* out (the last argument of _layernorm_run / _layernorm_stats): a writeable C-contiguous array of
 * `count` elements of `type`; else -1 with a Python error. */
static int qk_py_ln_out(PyObject *out, int type, npy_intp count) {
    if (qk_py_check_arr(out, type, count, "out") < 0) return -1;
    if (!PyArray_ISWRITEABLE((PyArrayObject *)out)) {
        PyErr_SetString(PyExc_ValueError, "out is read-only");
        return -1;
    }
    return 0;
}

static PyObject *qk_py_layernorm_run(PyObject *self, PyObject *args) {
    (void)self;
    qk_layernorm_params p;
    PyArrayObject *q;
    PyObject *out;
    int threads;
    const npy_intp tokens = qk_py_ln_parse(args, &p, &q, &out, &threads, NPY_UINT8);
    if (tokens < 0 || qk_py_ln_out(out, NPY_INT8, PyArray_SIZE(q)) < 0) return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_layernorm_ptf_u8_s8_threads(&p, (const uint8_t *)PyArray_DATA(q), (size_t)tokens,
                                        (int8_t *)PyArray_DATA((PyArrayObject *)out), threads);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "layernorm");
    Py_RETURN_NONE;
}

/* _layernorm_s16_run: _layernorm_run's arguments with q and out int16
 * (qk_layernorm_s16_s16_exact). */
static PyObject *qk_py_layernorm_s16_run(PyObject *self, PyObject *args) {
    (void)self;
    qk_layernorm_params p;
    PyArrayObject *q;
    PyObject *out;
    int threads;
    const npy_intp tokens = qk_py_ln_parse(args, &p, &q, &out, &threads, NPY_INT16);
    if (tokens < 0 || qk_py_ln_out(out, NPY_INT16, PyArray_SIZE(q)) < 0) return NULL;
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_layernorm_s16_s16_exact(&p, (const int16_t *)PyArray_DATA(q), (size_t)tokens,
                                    (int16_t *)PyArray_DATA((PyArrayObject *)out), threads);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "layernorm_s16");
    Py_RETURN_NONE;
}

static PyObject *qk_py_layernorm_stats(PyObject *self, PyObject *args) {
    (void)self;
    qk_layernorm_params p;
    PyArrayObject *q;
    PyObject *out;
    int threads; /* not used: the statistics run on the calling thread */
    const npy_intp tokens = qk_py_ln_parse(args, &p, &q, &out, &threads, NPY_UINT8);
    if (tokens < 0 || qk_py_ln_out(out, NPY_INT64, 2 * tokens) < 0) return NULL;
    int64_t *o = (int64_t *)PyArray_DATA((PyArrayObject *)out);
    qk_status st;
    Py_BEGIN_ALLOW_THREADS
    st = qk_layernorm_ptf_stats(&p, (const uint8_t *)PyArray_DATA(q), (size_t)tokens, o,
                                o + tokens);
    Py_END_ALLOW_THREADS
    if (st != QK_OK) return qk_py_status_error(st, "layernorm stats");
    Py_RETURN_NONE;
}

static PyMethodDef qk_py_ptf_methods[] = {
    {"_layernorm_prepare", qk_py_layernorm_prepare, METH_VARARGS,
     "_layernorm_prepare(method, in_scale, alpha, in_zp, gamma, beta, eps, out_scale, out_zp)"
     " -> dict (qk_layernorm_prepare; use qkernels.prepare_layernorm)."},
    {"_layernorm_run", qk_py_layernorm_run, METH_VARARGS,
     "_layernorm_run(q, method, in_zp, out_zp, shift, eps_term, gamma_mult, beta_mult, alpha,"
     " gamma, beta, lut, out, threads=1) (qk_layernorm_ptf_u8_s8_threads; use"
     " qkernels.ptf_layernorm)."},
    {"_layernorm_s16_run", qk_py_layernorm_s16_run, METH_VARARGS,
     "_layernorm_run's arguments with int16 q and out (qk_layernorm_s16_s16_exact; use"
     " qkernels.ptf.layernorm_s16)."},
    {"_layernorm_stats", qk_py_layernorm_stats, METH_VARARGS,
     "Same arguments as _layernorm_run; out is int64 of 2*tokens (S1 then D)."},
    {NULL, NULL, 0, NULL}};

int qk_py_register_ptf(PyObject *module) {
    static PyUFuncGenericFunction qf[1] = {qk_py_ptf_quantize_loop};
    static PyUFuncGenericFunction df[1] = {qk_py_ptf_dequantize_loop};
    static void *nodata[1] = {NULL};
    static char qt[5] = {NPY_FLOAT32, NPY_FLOAT32, NPY_INT32, NPY_INT32, NPY_UINT8};
    static char dt[5] = {NPY_UINT8, NPY_FLOAT32, NPY_INT32, NPY_INT32, NPY_FLOAT32};
    if (qk_py_add_ufunc(module, "ptf_quantize",
                        "ptf_quantize(x, scale, alpha, zero_point, /, out=None, ...)\n\n"
                        "PTF quantization to uint8: clamp(RNE(x / (scale * 2^alpha)) + zp, 0, "
                        "255). x, scale float32; alpha, zero_point int32; all broadcast.\n"
                        "A NaN or a bad parameter raises the 'invalid' flag (np.errstate).",
                        4, 1, 1, qf, nodata, qt) < 0)
        return -1;
    if (qk_py_add_ufunc(module, "ptf_dequantize",
                        "ptf_dequantize(q, scale, alpha, zero_point, /, out=None, ...)\n\n"
                        "fl(fl(scale * 2^alpha) * (q - zero_point)) as float32.",
                        4, 1, 1, df, nodata, dt) < 0)
        return -1;
    for (PyMethodDef *m = qk_py_ptf_methods; m->ml_name != NULL; m++) {
        PyObject *f = PyCFunction_New(m, NULL);
        if (f == NULL) return -1;
        if (PyModule_AddObject(module, m->ml_name, f) < 0) {
            Py_DECREF(f);
            return -1;
        }
    }
    return 0;
}
