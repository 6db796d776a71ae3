/* store_floor.c -- what dequantize u8 -> f32 can cost at best on this machine, with no Python,
 * no allocation and no arithmetic to speak of: the evidence behind BENCHMARKS.md's `floor:` rows.
 *
 *   cc -O2 -std=c11 scripts/store_floor.c -o build/store_floor && build/store_floor 1000000
 *
 * Prints the minimum of 100 runs (ms) of: storing n float32 with a plain AVX-512 loop (no input),
 * memset of the same bytes, reading the n input bytes alone, and the dequantize loop itself
 * ((q - zp) * s in AVX-512, aligned stores) -- which costs about the sum of the stores and the
 * reads when the output does not fit in L2 (the input and the read-for-ownership of each output
 * line share the L3 -> L2 path). x86-64 with AVX-512F/BW only. */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define TGT __attribute__((target("avx512f,avx512bw"), noinline))

TGT static void dequant(const uint8_t *q, float *y, size_t n, float s, int zp) {
    const __m512 vs = _mm512_set1_ps(s);
    const __m512i vz = _mm512_set1_epi32(zp);
    for (size_t i = 0; i < n; i += 16) {
        const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + i)));
        _mm512_store_ps(y + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, vz)), vs));
    }
}

TGT static void stores(float *y, size_t n, float s) {
    const __m512 v = _mm512_set1_ps(s);
    for (size_t i = 0; i < n; i += 16) _mm512_store_ps(y + i, v);
}

TGT static int reads(const uint8_t *q, size_t n) {
    __m512i a = _mm512_setzero_si512();
    for (size_t i = 0; i < n; i += 64) a = _mm512_xor_si512(a, _mm512_loadu_si512(q + i));
    return _mm512_reduce_add_epi32(a);
}

int main(int argc, char **argv) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) {
        fprintf(stderr, "needs AVX-512F/BW\n");
        return 2;
    }
    const size_t n = ((argc > 1 ? (size_t)atol(argv[1]) : 1000000) + 63) / 64 * 64;
    uint8_t *q = aligned_alloc(64, n);
    float *y = aligned_alloc(64, n * sizeof(float));
    if (q == NULL || y == NULL) return 1;
    for (size_t i = 0; i < n; i++) q[i] = (uint8_t)(i * 7);
    memset(y, 0, n * sizeof(float));
    volatile int sink = 0;
    double best[4] = {1e9, 1e9, 1e9, 1e9};
    for (int it = 0; it < 100; it++) {
        double t0 = now();
        stores(y, n, 1.5f);
        double t = now() - t0;
        if (t < best[0]) best[0] = t;
        t0 = now();
        memset(y, it, n * sizeof(float));
        t = now() - t0;
        if (t < best[1]) best[1] = t;
        t0 = now();
        const int r = reads(q, n);
        t = now() - t0;
        sink += r;
        if (t < best[2]) best[2] = t;
        t0 = now();
        dequant(q, y, n, 0.02f, 3);
        t = now() - t0;
        if (t < best[3]) best[3] = t;
    }
    printf("n=%zu  stores %.4f ms  memset %.4f ms  read input %.4f ms  dequantize %.4f ms\n", n,
           best[0] * 1e3, best[1] * 1e3, best[2] * 1e3, best[3] * 1e3);
    return sink == 12345 ? 3 : 0;
}
