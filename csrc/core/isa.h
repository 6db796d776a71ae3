/* isa.h -- the instruction-set vocabulary of the C library: where x86 intrinsics may be used,
 * and the one definition of each target attribute. Not installed, not public.
 *
 * A SIMD function carries the attribute of the level it needs (and its name says the ISA:
 * qk_gemm_s16_6x16__avx2); it runs only where core/cpu.c chose that level or a higher one. The
 * levels nest, each adding to the one before:
 *   QK_TARGET_AVX2         AVX2 + FMA                        (QK_LEVEL_AVX2)
 *   QK_TARGET_AVX512       + AVX-512 F, BW                   (QK_LEVEL_AVX512)
 *   QK_TARGET_AVX512VNNI   + AVX-512 VL, VNNI (vpdpbusd)     (QK_LEVEL_AVX512VNNI)
 *   QK_TARGET_AVX512VBMI   + AVX-512 VBMI (vpermb, vpermt2b) (QK_LEVEL_AVX512VBMI)
 * No -march flag: the library is built for any x86-64 and picks its loops at run time. */
#ifndef QKERNELS_CORE_ISA_H
#define QKERNELS_CORE_ISA_H

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#define QK_X86 1
#define QK_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define QK_TARGET_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw")))
#define QK_TARGET_AVX512VNNI \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#define QK_TARGET_AVX512VBMI \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))
#else
#define QK_X86 0
#endif

/* For the small helpers of a SIMD loop that must melt into it (gcc otherwise keeps some of them
 * as calls, with their vector arguments in memory). */
#define QK_ALWAYS_INLINE inline __attribute__((always_inline))

#endif /* QKERNELS_CORE_ISA_H */
