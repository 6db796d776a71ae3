/* dispatch.c -- the one table of micro-kernels: for each instruction-set level (core/cpu.h), the
 * kernels that level runs. qk__uk() returns the table of the level this process chose; the
 * operators take their kernels from it and ask nothing else. A new SIMD kernel is a field of
 * qk__ukernels (ukernels.h) and its entry at the level that first has it here.
 *
 * Each level is written as the level below it plus what it adds: in a designated initializer a
 * later entry of a field replaces an earlier one (C11 6.7.9p19; the compilers' warning about
 * that is turned off for this file, which holds nothing else). */
#include "ukernels/ukernels.h"

#if defined(__clang__)
#pragma clang diagnostic ignored "-Winitializer-overrides"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Woverride-init"
#endif

/* The u8 GEMM tiles of one ISA: [16-row block][tile of at most 8 pixels]. */
#define QK__GEMM_U8(ISA)                                          \
    {                                                             \
        {qk_gemm_s8u8_12x16__##ISA, qk_gemm_s8u8_12x8__##ISA},    \
            {qk_gemm_s8u8_16x16__##ISA, qk_gemm_s8u8_16x8__##ISA} \
    }

/* Portable C: every kernel with a scalar twin; no 8-bit path (pack_u8 0), so the kernels
 * without a twin are NULL. */
#define QK__LEVEL_SCALAR                                                                        \
    .gemm_s16 = qk_gemm_s16_6x16__scalar, .dw_s16 = qk_dw_plane__scalar,                        \
    .dw_s16_fused = qk_dw_plane_fused__scalar,                                                  \
    .widen_s16 = qk_widen_s16__scalar, .im2col_s16 = qk_im2col_s16__scalar,                     \
    .panel_s16_1x1 = qk_panel_s16_1x1__scalar, .gemm_s16_fused = qk_gemm_s16_fused_6x16__scalar, \
    .im2col_s16_segs = qk_im2col_s16_segs__scalar,                                              \
    .epilogue_run = qk_epilogue_run__scalar, .epilogue_channels = qk_epilogue_channels__scalar, \
    .gemm_u8 = QK__GEMM_U8(scalar), .conv_tile_out = qk_conv_tile_out__scalar,                  \
    .pad_u8 = qk_pad_u8__scalar, .pad_u8x4 = qk_pad_u8x4__scalar,                               \
    .im2col_u8x4 = qk_im2col_u8x4__scalar, .bmm_pack_a8 = qk_bmm_pack_a8__scalar,               \
    .bmm_pack_b8 = qk_bmm_pack_b8__scalar, .bmm_tile_fix = qk_bmm_tile_fix__scalar,   \
    .transpose_u8 = qk_transpose_u8__scalar

#define QK__LEVEL_AVX2                                                                 \
    QK__LEVEL_SCALAR, .gemm_s16 = qk_gemm_s16_6x16__avx2, .dw_s16 = qk_dw_plane__avx2, \
        .dw_s16_fused = qk_dw_plane_fused__avx2,                                       \
        .widen_s16 = qk_widen_s16__avx2, .widen_s16_over = qk_widen_s16_over__avx2,    \
        .im2col_s16 = qk_im2col_s16__avx2, .epilogue_run = qk_epilogue_run__avx2,      \
        .epilogue_channels = qk_epilogue_channels__avx2, .transpose_u8 = qk_transpose_u8__avx2, \
        .panel_s16_1x1 = qk_panel_s16_1x1__avx2, .gemm_s16_fused = qk_gemm_s16_fused_6x16__avx2, \
        .im2col_s16_segs = qk_im2col_s16_segs__avx2

#define QK__LEVEL_AVX512 QK__LEVEL_AVX2, .widen_s16 = qk_widen_s16__avx512, .pad_u8 = qk_pad_u8__avx512

/* The 8-bit path. (The int16 depthwise plane takes its AVX-512 form only from here, as it did
 * when it was written for this path.) */
#define QK__LEVEL_AVX512VNNI                                                                      \
    QK__LEVEL_AVX512, .pack_u8 = 1, .dw_s16 = qk_dw_plane__avx512, .dw_s16_fused = NULL,          \
        .epilogue_run = qk_epilogue_run__avx512, .gemm_u8 = QK__GEMM_U8(avx512vnni),              \
        .conv_tile_out = qk_conv_tile_out__avx512, .pad_u8x4 = qk_pad_u8x4__avx512vnni,           \
        .im2col_u8 = qk_im2col_u8__avx2, .im2col_u8x4 = qk_im2col_u8x4__avx512vnni,               \
        .conv_fused = {qk_conv_fused_12x16__avx512vnni, qk_conv_fused_16x16__avx512vnni},         \
        .conv_direct = {{qk_conv_direct_12x16_1__avx512vnni, qk_conv_direct_12x16_2__avx512vnni}, \
                        {qk_conv_direct_16x16_1__avx512vnni, qk_conv_direct_16x16_2__avx512vnni}}, \
        .conv_fused_tail = qk_conv_fused_tail__avx512vnni,                                        \
        .linear_u8 = qk_linear_u8_6x64__avx512vnni,                                               \
        .linear_u8_setup = qk_linear_u8_setup__avx512vnni, .sum_u8 = qk_sum_u8__avx512vnni,     \
        .bmm_pack_a8 = qk_bmm_pack_a8__avx512vnni, .bmm_pack_b8 = qk_bmm_pack_b8__avx512vnni,     \
        .bmm_tile_fix = qk_bmm_tile_fix__avx512vnni

#define QK__LEVEL_AVX512VBMI                                                                      \
    QK__LEVEL_AVX512VNNI, .im2col_u8 = qk_im2col_u8__avx512vbmi, .dw8 = qk_dw8_plane__avx512vbmi, \
        .dw8_fused = qk_dw8_plane_fused__avx512vbmi,                                              \
        .pad_u8_blocks = qk_pad_u8_blocks__avx512vbmi

static const qk__ukernels qk__uk_table[QK_LEVEL_COUNT] = {
    [QK_LEVEL_SCALAR] = {QK__LEVEL_SCALAR},
#if QK_X86
    [QK_LEVEL_AVX2] = {QK__LEVEL_AVX2},
    [QK_LEVEL_AVX512] = {QK__LEVEL_AVX512},
    [QK_LEVEL_AVX512VNNI] = {QK__LEVEL_AVX512VNNI},
    [QK_LEVEL_AVX512VBMI] = {QK__LEVEL_AVX512VBMI},
#endif
};

/* (Without x86 the level is always QK_LEVEL_SCALAR.) */
const qk__ukernels *qk__uk(void) { return &qk__uk_table[qk__level()]; }
