/* qk_numpy.h -- the NumPy C-API set-up shared by every file of the extension. Only module.c
 * imports the API tables; the other files see them through the unique symbols. */
#ifndef QK_NUMPY_H
#define QK_NUMPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL qk_ARRAY_API
#define PY_UFUNC_UNIQUE_SYMBOL qk_UFUNC_API
#ifndef QK_NUMPY_IMPORT
#define NO_IMPORT_ARRAY
#define NO_IMPORT_UFUNC
#endif
#include <numpy/arrayobject.h>
#include <numpy/ufuncobject.h>

#include "qkernels.h"

/* ---- Elementwise kernels behind a generic strided loop ---------------------------------- */

/* The per-call parameters of an elementwise kernel, read from the ufunc's operands. */
typedef struct qk_py_params {
    float scale, bias;
    int32_t multiplier, shift, zero_point, qmin, qmax;
} qk_py_params;

/* Which field each non-data operand fills (operands 1..nin-1, in order). */
enum { QK_P_SCALE = 1, QK_P_MULTIPLIER, QK_P_SHIFT, QK_P_ZERO_POINT, QK_P_QMIN, QK_P_QMAX, QK_P_BIAS };

typedef qk_status (*qk_py_kernel)(const void *x, size_t n, const qk_py_params *p, void *y);

/* One loop of a ufunc: the kernel, the element sizes of the data operands, the parameters. */
typedef struct qk_py_loopdef {
    qk_py_kernel kernel;
    int xsize, ysize;
    int nparams;
    int params[6]; /* QK_P_* for operands 1..nparams */
} qk_py_loopdef;

/* The generic ufunc inner loop; `data` is a qk_py_loopdef. On a kernel error it sets the outputs
 * of this inner loop to 0 (a refused parameter; a NaN leaves the elements before it written)
 * and raises the floating-point "invalid" flag, which NumPy turns into a
 * warning or FloatingPointError per np.errstate; the keyword API in qkernels/ raises a
 * ValueError that names the argument. */
void qk_py_elementwise_loop(char **args, npy_intp const *dims, npy_intp const *steps,
                            void *data);

/* Loop d's kernel over a C-contiguous (rows, chans) array x (y likewise) whose parameters are
 * per channel (the last axis): channel c's at params[k] + c * pstep[k] (pstep 0: one value for
 * all). Tiles of 16 channels x 256 rows are transposed into channel-major buffers, and the
 * kernel runs once per channel and tile with that channel's parameters: the same kernel on the
 * same elements with the same parameters as the ufunc's loop, ~0.5 ns an element instead of a
 * kernel call an element. The floating-point flags are left as the kernels leave them (the
 * caller clears them once). Returns the first error (the output is then incomplete). */
qk_status qk_py_elementwise_channels(const qk_py_loopdef *d, const char *x, char *const *params,
                                     const npy_intp *pstep, char *y, npy_intp rows,
                                     npy_intp chans);

/* The end of every ufunc loop: clears the floating-point flags our kernels raise by design and
 * raises "invalid" when st is an error (the keyword API then names the argument). */
void qk_py_loop_status(qk_status st);

/* n output elements of `size` bytes, `step` apart, set to 0: what an inner loop leaves in its
 * output when its kernel refused a parameter (it wrote nothing; the output is then defined,
 * never the buffer's old contents). A data error (NaN, overflow) leaves the elements before it
 * written, as the kernels document. */
void qk_py_zero_outputs(char *y, npy_intp n, npy_intp step, int size);

/* The end of an elementwise loop: qk_py_zero_outputs of its output when st refused a parameter
 * (not QK_ERR_NAN / QK_ERR_OVERFLOW), then qk_py_loop_status. */
void qk_py_loop_end(qk_status st, char *y, npy_intp n, npy_intp step, int size);

/* Creates a ufunc (or, with a signature, a gufunc) and stores it in the module under `name`.
 * The arrays must live forever (static storage). Returns 0, or -1 with a Python error set. */
int qk_py_add_ufunc(PyObject *module, const char *name, const char *doc, int nin, int nout,
                    int ntypes, PyUFuncGenericFunction *funcs, void **data, char *types);
int qk_py_add_gufunc(PyObject *module, const char *name, const char *doc, int nin, int nout,
                     int ntypes, PyUFuncGenericFunction *funcs, void **data, char *types,
                     const char *signature);

/* The loops of the int32 gufuncs of two 8-bit operands (linear_int32, matmul_int32): the four
 * (first, second) type pairs, uint8/int8, each with three int32 operands after them (two zero
 * points, the output), and each loop's data: its pair as `const qk_dtype[2]`. */
extern char qk_py_q8pair_types[4 * 5];
extern void *qk_py_q8pair_data[4];

/* ---- Module functions ---------------------------------------------------------------------- */

/* o is an aligned C-contiguous array of NumPy type `type` with `count` elements (-1: any);
 * else -1 with a TypeError / ValueError naming `name`. */
int qk_py_check_arr(PyObject *o, int type, npy_intp count, const char *name);

/* The output-stage operands of a module function (qkernels.presets.Epilogue.args() and the
 * scalars after it), in the order the call takes them:
 *   scheme, bias|None, float_bias|None, scale|None, multiplier|None, shift|None, zero_point,
 *   act_min, act_max, wrap, threads */
typedef struct {
    PyObject *bias, *fbias, *scale, *mult, *shift;
    int scheme, zp, amin, amax, wrap, threads;
} qk_py_epi_args;

/* The qk_epilogue of n output channels (or batch items) writing `out`'s type; -1 with a Python
 * error on a wrong operand. The arrays stay owned by the caller's arguments. */
int qk_py_epilogue(const qk_py_epi_args *a, size_t n, PyArrayObject *out, qk_epilogue *ep);

/* status.c: raises the exception of a C status (not QK_OK) for operator `op` and returns NULL.
 * The only place a status becomes an exception. */
PyObject *qk_py_status_error(qk_status st, const char *op);

/* Registration of each kernel family (one file each), and of the exception type and constants
 * (status.c). */
int qk_py_register_status(PyObject *module);
int qk_py_register_elementwise(PyObject *module);
int qk_py_register_ptf(PyObject *module);
int qk_py_register_gemm(PyObject *module);
int qk_py_register_qops(PyObject *module);
int qk_py_register_transformer(PyObject *module);

#endif
