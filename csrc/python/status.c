/* status.c -- the one place where a C status code becomes a Python exception, and the C
 * constants the Python side reads (the requantization schemes of qk_requant_scheme).
 *
 * QK_ERR_OVERFLOW raises qkernels.AccumulatorOverflowError (an OverflowError and a ValueError,
 * defined here and re-exported by the package), QK_ERR_NOMEM MemoryError, every other status
 * ValueError; the message is "<operator>: <qk_status_str(status)>". */
#include "qk_numpy.h"

static PyObject *qk_py_overflow_error; /* set once, at module init */

PyObject *qk_py_status_error(qk_status st, const char *op) {
    switch (st) {
        case QK_ERR_NOMEM: return PyErr_Format(PyExc_MemoryError, "%s: %s", op, qk_status_str(st));
        case QK_ERR_OVERFLOW:
            return PyErr_Format(qk_py_overflow_error,
                                "%s: %s; TFLite would wrap (pass overflow='wrap' to do the same)",
                                op, qk_status_str(st));
        default: return PyErr_Format(PyExc_ValueError, "%s: %s", op, qk_status_str(st));
    }
}

int qk_py_register_status(PyObject *module) {
    PyObject *bases = PyTuple_Pack(2, PyExc_OverflowError, PyExc_ValueError);
    if (bases == NULL) return -1;
    qk_py_overflow_error = PyErr_NewExceptionWithDoc(
        "qkernels.AccumulatorOverflowError",
        "An int32 accumulator overflowed (or would overflow) where the hardware would wrap.",
        bases, NULL);
    Py_DECREF(bases);
    if (qk_py_overflow_error == NULL) return -1;
    Py_INCREF(qk_py_overflow_error); /* one reference for the module, one kept here */
    if (PyModule_AddObject(module, "AccumulatorOverflowError", qk_py_overflow_error) < 0) {
        Py_DECREF(qk_py_overflow_error);
        return -1;
    }
    static const struct {
        const char *name;
        long value;
    } constants[] = {{"REQ_NONE", QK_REQ_NONE},
                     {"REQ_FP32", QK_REQ_FP32},
                     {"REQ_DOUBLE", QK_REQ_DOUBLE},
                     {"REQ_SINGLE", QK_REQ_SINGLE},
                     {"REQ_SHIFT_HALF_UP", QK_REQ_SHIFT_HALF_UP},
                     {"REQ_SHIFT_HALF_EVEN", QK_REQ_SHIFT_HALF_EVEN},
                     {"REQ_SHIFT_HALF_AWAY", QK_REQ_SHIFT_HALF_AWAY},
                     {"REQ_SHIFT_FLOOR", QK_REQ_SHIFT_FLOOR},
                     {"REQ_FP64", QK_REQ_FP64},
                     {"REQ_DOUBLE_HALF_UP", QK_REQ_DOUBLE_HALF_UP},
                     {"REQ_REDUCED", QK_REQ_REDUCED},
                     {"REQ_REDUCED_CMSIS", QK_REQ_REDUCED_CMSIS},
                     {"REQ_FLOAT", QK_REQ_FLOAT}};
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (PyModule_AddIntConstant(module, constants[i].name, constants[i].value) < 0) return -1;
    return 0;
}
