/* simd_twins.h -- includes the ISA template named by QK_TWINS_TEMPLATE (a string, e.g.
 * "elementwise/gelu_isa.h") twice: with QK_V_IS512 defined as 0 (the AVX2 functions, ..._avx2)
 * and as 1 (AVX-512 F/BW, ..._avx512); x86 only. The including .c file defines
 * QK_TWINS_TEMPLATE just before, and this file undefines it. No include guard: one use per
 * template. */
#if QK_X86
#define QK_V_IS512 0
#include QK_TWINS_TEMPLATE
#undef QK_V_IS512
#define QK_V_IS512 1
#include QK_TWINS_TEMPLATE
#undef QK_V_IS512
#endif
#undef QK_TWINS_TEMPLATE
