/* module.c -- the qkernels._core extension module: ufunc registration and library info. */
#define QK_NUMPY_IMPORT
#include "qk_numpy.h"

#ifndef QK_NUMPY_BUILD
#define QK_NUMPY_BUILD "unknown"
#endif

#include "core/cpu.h" /* the level chosen for this process */

static PyObject *qk_py_info(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return Py_BuildValue("{s:s,s:s,s:s,s:s,s:O,s:O,s:s}", "version", qk_version(), "compiler",
                         qk_compiler(), "isa", qk_isa_name(qk_isa()), "gemm_isa",
                         qk__level() >= QK_LEVEL_AVX512VNNI ? "avx512-vnni (8-bit GEMM)" : qk_isa_name(qk_isa()),
                         "cpu_has_avx2", qk_cpu_has_avx2() ? Py_True : Py_False,
                         "avx512_loops", qk__level() >= QK_LEVEL_AVX512 ? Py_True : Py_False,
                         "numpy_build_version", QK_NUMPY_BUILD);
}

static PyMethodDef qk_py_methods[] = {
    {"_info", qk_py_info, METH_NOARGS,
     "Library version, compiler, chosen instruction set, CPU features (a dict)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef qk_py_module = {PyModuleDef_HEAD_INIT, "_core",
                                          "qkernels C kernels as NumPy ufuncs.", -1,
                                          qk_py_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void) {
    import_array();
    import_umath();
    PyObject *m = PyModule_Create(&qk_py_module);
    if (m == NULL) return NULL;
    if (qk_py_register_status(m) < 0 || qk_py_register_elementwise(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (qk_py_register_ptf(m) < 0) { Py_DECREF(m); return NULL; }
    if (qk_py_register_gemm(m) < 0) { Py_DECREF(m); return NULL; }
    if (qk_py_register_qops(m) < 0) { Py_DECREF(m); return NULL; }
    if (qk_py_register_transformer(m) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
