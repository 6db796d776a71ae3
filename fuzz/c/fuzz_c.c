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
qk_isa_kind qkB_qk_isa(void);
int qkB_qk__use_vnni(void);
int qk__use_vnni(void);
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
    fprintf(stderr, "fuzz_c: copy A %s%s, copy B %s%s\n", qk_isa_name(qk_isa()),
            qk__use_vnni() ? " + AVX512-VNNI" : "", qk_isa_name(qkB_qk_isa()),
            qkB_qk__use_vnni() ? " + AVX512-VNNI" : "");
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
