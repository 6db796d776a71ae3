/* cpu.c -- library information and the one-time choice of instruction set. */
#include "core/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int qk_cpu_has_avx2(void) {
#if QK_X86 && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static _Atomic int qk__isa_choice = -1;

qk_isa_kind qk_isa(void) {
    int v = atomic_load_explicit(&qk__isa_choice, memory_order_relaxed);
    if (v >= 0) return (qk_isa_kind)v;
    const char *env = getenv("QKERNELS_SIMD");
    v = (env != NULL && strcmp(env, "scalar") == 0) ? QK_ISA_SCALAR
        : (qk_cpu_has_avx2() ? QK_ISA_AVX2 : QK_ISA_SCALAR);
    /* Every thread computes the same value; storing it twice is harmless. */
    atomic_store_explicit(&qk__isa_choice, v, memory_order_relaxed);
    return (qk_isa_kind)v;
}

static _Atomic int qk__avx512_choice = -1;

int qk__use_avx512(void) {
    int v = atomic_load_explicit(&qk__avx512_choice, memory_order_relaxed);
    if (v >= 0) return v;
    v = 0;
#if QK_X86 && defined(__GNUC__)
    const char *env = getenv("QKERNELS_SIMD");
    if (qk_isa() == QK_ISA_AVX2 && !(env != NULL && strcmp(env, "avx2") == 0)) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    }
#endif
    atomic_store_explicit(&qk__avx512_choice, v, memory_order_relaxed);
    return v;
}

const char *qk_isa_name(qk_isa_kind isa) {
    switch (isa) {
        case QK_ISA_AVX2: return "avx2+fma";
        case QK_ISA_SCALAR: return "scalar";
    }
    return "unknown";
}

const char *qk_compiler(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown C compiler";
#endif
}

const char *qk_version(void) { return QK_VERSION_STRING; }

const char *qk_status_str(qk_status status) {
    switch (status) {
        case QK_OK: return "ok";
        case QK_ERR_NAN: return "input contains NaN";
        case QK_ERR_SCALE: return "scale must be finite and > 0";
        case QK_ERR_ZERO_POINT: return "zero point outside [qmin, qmax]";
        case QK_ERR_QRANGE: return "qmin/qmax invalid for the output type (or qmin > qmax)";
        case QK_ERR_SHIFT: return "shift out of range";
        case QK_ERR_MULTIPLIER: return "multiplier invalid (negative or not finite)";
        case QK_ERR_OVERFLOW: return "int32 accumulator overflow";
        case QK_ERR_ARG: return "invalid argument";
        case QK_ERR_NOMEM: return "out of memory";
    }
    return "unknown status";
}
