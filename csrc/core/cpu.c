/* cpu.c -- the one place that asks the CPU what it has: the instruction-set level of this
 * process, chosen once; and the library's information strings. */
#include "core/cpu.h"

#include "qkernels.h"

#include <stdlib.h>
#include <string.h>

#if QK_X86 && defined(__GNUC__)
#define QK__HAS(feature) __builtin_cpu_supports(feature)
#endif

int qk_cpu_has_avx2(void) {
#ifdef QK__HAS
    __builtin_cpu_init();
    return QK__HAS("avx2") && QK__HAS("fma");
#else
    return 0;
#endif
}

_Atomic int qk__level_chosen = -1;

/* The highest level the CPU has (each level needs the one below), capped by QKERNELS_SIMD:
 * "scalar" keeps the portable C, "avx2" the AVX2 loops (no AVX-512). */
qk__isa_level qk__level_detect(void) {
    int v = QK_LEVEL_SCALAR;
    const char *env = getenv("QKERNELS_SIMD");
    const int scalar = env != NULL && strcmp(env, "scalar") == 0;
    const int avx2_only = env != NULL && strcmp(env, "avx2") == 0;
#ifdef QK__HAS
    if (!scalar && qk_cpu_has_avx2()) {
        v = QK_LEVEL_AVX2;
        if (!avx2_only && QK__HAS("avx512f") && QK__HAS("avx512bw")) {
            v = QK_LEVEL_AVX512;
            if (QK__HAS("avx512vnni") && QK__HAS("avx512vl")) {
                v = QK_LEVEL_AVX512VNNI;
                if (QK__HAS("avx512vbmi")) v = QK_LEVEL_AVX512VBMI;
            }
        }
    }
#else
    (void)scalar, (void)avx2_only;
#endif
    /* Every thread computes the same value; storing it twice is harmless. */
    atomic_store_explicit(&qk__level_chosen, v, memory_order_relaxed);
    return (qk__isa_level)v;
}

qk_isa_kind qk_isa(void) { return qk__level() >= QK_LEVEL_AVX2 ? QK_ISA_AVX2 : QK_ISA_SCALAR; }

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
        case QK_ERR_OVERFLOW:
            return "int32 accumulator overflow (past the worst-case bound, or in a double_round "
                   "left shift acc * 2^shift)";
        case QK_ERR_ARG: return "invalid argument";
        case QK_ERR_NOMEM: return "out of memory";
    }
    return "unknown status";
}
