/* qk_test.h -- a tiny test harness for the C test programs (no Python in the loop).
 * Each program ends with QK_TEST_SUMMARY(), which prints "N passed, N failed" and returns the
 * exit status (0 when nothing failed). */
#ifndef QK_TEST_H
#define QK_TEST_H

#include <stdio.h>

#include "qkernels.h"

static int qk_test_passed = 0, qk_test_failed = 0;

#define QK_CHECK(cond, ...)                                           \
    do {                                                              \
        if (cond) {                                                   \
            qk_test_passed++;                                         \
        } else {                                                      \
            qk_test_failed++;                                         \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                             \
            fprintf(stderr, "\n");                                    \
        }                                                             \
    } while (0)

#define QK_TEST_SUMMARY()                                                  \
    (printf("%d passed, %d failed\n", qk_test_passed, qk_test_failed),     \
     qk_test_failed == 0 ? 0 : 1)

/* Deterministic generator (splitmix64) so the tests need no libc rand state. */
static unsigned long long qk_test_rng = 0x9E3779B97F4A7C15ULL;
static inline unsigned long long qk_test_next(void) {
    unsigned long long z = (qk_test_rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Sets the output stage of *ep (other fields kept) to double-round requantization with per
 * channel (or per item) M0 mult and shift, zero point 3, int8 output over the whole int8 range:
 * the output stage the tests compare with qk_requantize_s32_s8_double. */
static inline void qk_test_double_s8(qk_epilogue *ep, const int32_t *mult, const int32_t *shift) {
    ep->scheme = QK_REQ_DOUBLE;
    ep->out_type = QK_DT_S8;
    ep->multiplier = mult;
    ep->shift = shift;
    ep->zero_point = 3;
    ep->act_min = -128;
    ep->act_max = 127;
}

#endif
