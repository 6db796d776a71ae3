/* cpu.h -- the instruction-set level of this process: detected once (cpu.c), read everywhere.
 * Not installed, not public.
 *
 * core/cpu.c is the only place that asks the CPU (and reads QKERNELS_SIMD). The micro-kernels
 * are chosen from this level by one table (ukernels/dispatch.c); the elementwise kernels pick
 * their loops by comparing it with the level a loop needs. */
#ifndef QKERNELS_CORE_CPU_H
#define QKERNELS_CORE_CPU_H

#include "core/isa.h"

#include <stdatomic.h>

/* Ordered: each level includes the ones below it (see isa.h for what each adds). */
typedef enum qk_level {
    QK_LEVEL_SCALAR = 0,      /* portable C: no x86, no AVX2, or QKERNELS_SIMD=scalar */
    QK_LEVEL_AVX2 = 1,        /* also where the CPU has more, with QKERNELS_SIMD=avx2 */
    QK_LEVEL_AVX512 = 2,
    QK_LEVEL_AVX512VNNI = 3,
    QK_LEVEL_AVX512VBMI = 4
} qk__isa_level;
#define QK_LEVEL_COUNT 5

/* Detects the level, stores it in qk__level_chosen and returns it (thread-safe: every caller
 * computes the same value). */
qk__isa_level qk__level_detect(void);
extern _Atomic int qk__level_chosen; /* -1 until the first call */

/* The level of this process: after the first call, one relaxed load. */
static inline qk__isa_level qk__level(void) {
    const int v = atomic_load_explicit(&qk__level_chosen, memory_order_relaxed);
    return v >= 0 ? (qk__isa_level)v : qk__level_detect();
}

#endif /* QKERNELS_CORE_CPU_H */
