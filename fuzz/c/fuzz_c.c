/* fuzz_c.c -- libFuzzer harness over the C entry points, with a SIMD-vs-scalar differential.
 *
 * The library is linked twice (see the Makefile's fuzz target): copy A as built, on the CPU's
 * best path (AVX512-VNNI here; QKERNELS_SIMD=avx2 for the AVX2 loops), and copy B with every
 * global symbol renamed qkB_* and its getenv() routed to qkB_getenv below, which answers
 * QKERNELS_SIMD with $FUZZ_B_SIMD (default "scalar"). Each input runs fuzz_ops (fuzz/c/ops.c)
 * in both copies; any difference in a status or an output byte aborts, and copy A also checks
 * the contract (references, nothing written on errors). ASan and UBSan watch both copies. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qkernels.h"

size_t fuzz_ops(const uint8_t *data, size_t size, uint8_t *res, size_t cap, int check);

#ifdef QK_FUZZ_COVERAGE
/* make fuzz-cov: one copy, built for source-based coverage, replays the corpus */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t ra[1 << 20];
    fuzz_ops(data, size, ra, sizeof ra, 1);
    return 0;
}
#else
size_t qkB_fuzz_ops(const uint8_t *data, size_t size, uint8_t *res, size_t cap, int check);
/* core/cpu.h's level (an int here: the enum is internal), of copy A and copy B */
int qk__level_detect(void);
int qkB_qk__level_detect(void);
char *qkB_getenv(const char *name);

char *qkB_getenv(const char *name) {
    if (strcmp(name, "QKERNELS_SIMD") == 0) {
        char *b = getenv("FUZZ_B_SIMD");
        return b != NULL ? b : (char *)"scalar";
    }
    return getenv(name);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    static const char *const names[] = {"scalar", "avx2", "avx512", "avx512vnni", "avx512vbmi"};
    const int a = qk__level_detect(), b = qkB_qk__level_detect();
    fprintf(stderr, "fuzz_c: copy A %s, copy B %s\n", a >= 0 && a < 5 ? names[a] : "?",
            b >= 0 && b < 5 ? names[b] : "?");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t ra[1 << 20], rb[1 << 20];
    const size_t na = fuzz_ops(data, size, ra, sizeof ra, 1);
    const size_t nb = qkB_fuzz_ops(data, size, rb, sizeof rb, 0);
    const size_t n = na < sizeof ra ? na : sizeof ra;
    if (na != nb || memcmp(ra, rb, n) != 0) {
        size_t i = 0;
        while (i < n && i < nb && ra[i] == rb[i]) i++;
        fprintf(stderr, "SIMD/scalar disagreement: op %u, result lengths %zu / %zu, first "
                        "difference at byte %zu (%02x / %02x)\n",
                size ? data[0] % 13 : 0, na, nb, i, i < n ? ra[i] : 0, i < nb ? rb[i] : 0);
        abort();
    }
    return 0;
}
#endif
