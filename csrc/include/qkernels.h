/*
 * qkernels.h -- the one public header of the qkernels C library.
 *
 * Integer golden-model kernels for quantized neural networks: quantize, dequantize,
 * requantize (fixed point, float scale, plain shifts), and the layers built on them.
 * Pure C11; no Python, no NumPy. Link with libqkernels.a (`make lib`) and -lm.
 *
 * Conventions (every function below):
 *   - Arrays are contiguous and hold `n` elements; `n == 0` is legal and writes nothing.
 *   - Parameters are checked before any element is written. A function that returns
 *     anything but QK_OK because of a parameter has written nothing.
 *   - Data errors (a NaN input, an accumulator that overflows a left shift) are found while
 *     the loop runs: the elements before the bad one may already be written, and
 *     `*bad_index` (when the pointer is not NULL) receives the index of the first bad element.
 *   - Sizes are checked: a size whose product (elements of an array, bytes of a buffer the
 *     function needs, a padded extent, a window coordinate) does not fit in size_t or exceeds
 *     PTRDIFF_MAX returns QK_ERR_ARG before anything is read or written; no size wraps.
 *   - Functions are reentrant and thread safe: no global state except the CPU-feature choice,
 *     made once (see qk_isa()).
 *   - Rounding names: RNE = round half to even, RHAZ = round half away from zero,
 *     RHU = round half up (toward +inf). The numeric contract is SPEC.md of the project.
 */
#ifndef QKERNELS_H
#define QKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QK_VERSION_MAJOR 0
#define QK_VERSION_MINOR 1
#define QK_VERSION_PATCH 0
#define QK_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------------------------ */
/* Status codes                                                                               */
/* ------------------------------------------------------------------------------------------ */
typedef enum qk_status {
    QK_OK = 0,
    QK_ERR_NAN = 1,         /* a NaN input element (data error, see *bad_index) */
    QK_ERR_SCALE = 2,       /* scale not finite or not > 0 */
    QK_ERR_ZERO_POINT = 3,  /* zero point outside [qmin, qmax] */
    QK_ERR_QRANGE = 4,      /* qmin > qmax, or qmin/qmax outside the output type */
    QK_ERR_SHIFT = 5,       /* shift outside the documented range */
    QK_ERR_MULTIPLIER = 6,  /* fixed-point multiplier negative, or m not finite / < 0 */
    QK_ERR_OVERFLOW = 7,    /* int32 overflow of an accumulator (data error, see *bad_index) */
    QK_ERR_ARG = 8,         /* any other bad argument (NULL pointer, bad shape, ...) */
    QK_ERR_NOMEM = 9        /* an allocation failed */
} qk_status;

/* A short English name of a status ("scale must be finite and > 0"). Never NULL. */
const char *qk_status_str(qk_status status);

/* ------------------------------------------------------------------------------------------ */
/* Library information and CPU dispatch                                                       */
/* ------------------------------------------------------------------------------------------ */
typedef enum qk_isa_kind { QK_ISA_SCALAR = 0, QK_ISA_AVX2 = 1 } qk_isa_kind;

/* The instruction set the kernels use on this CPU: AVX2 (with FMA) when the CPU has it,
 * scalar C otherwise. Chosen once, at the first call. On CPUs with AVX-512 (F, BW; VNNI for the
 * 8-bit GEMM) the hottest loops use 512-bit twins on top of the AVX2 level. Setting the
 * environment variable QKERNELS_SIMD=scalar before the first call forces the portable scalar
 * path, QKERNELS_SIMD=avx2 the AVX2 loops; the tests use both to prove that every path gives the
 * same bits. */
qk_isa_kind qk_isa(void);
const char *qk_isa_name(qk_isa_kind isa);
/* 1 when the CPU supports AVX2 and FMA, whatever qk_isa() chose. */
int qk_cpu_has_avx2(void);
/* The compiler that built the library, e.g. "gcc 12.2.0". */
const char *qk_compiler(void);
const char *qk_version(void);

/* ------------------------------------------------------------------------------------------ */
/* 1. Quantize: float -> integer                                                              */
/* ------------------------------------------------------------------------------------------ */
/*
 * qk_quantize_<in>_<out>_<flavour>(x, n, scale, zero_point, qmin, qmax, y, bad_index)
 *
 *   in:       f32 (float) or f64 (double)
 *   out:      u8, s8, u16, s16, s32
 *   flavour:  pt2e    t = RNE(x * fl(1/scale))   (PyTorch decomposed quantize_per_tensor: PT2E)
 *             onnx    t = RNE(x / scale)         (ONNX Runtime QuantizeLinear)
 *             tflite  t = RHAZ(x / scale)        (TFLite reference quantize)
 *   then      y = clamp(t + zero_point, qmin, qmax)
 *             fbgemm  y = clamp(RNE(fma(x, fl(1/scale), zero_point)), qmin, qmax): the zero point
 *                     is added before the one rounding (FBGEMM Quantize, LEGACY, the AVX2 fmadd),
 *                     which is what torch.quantize_per_tensor gives for quint8 and qint8.
 *             fbgemm_scalar  y = clamp(RNE(fl(fl(x * fl(1/scale)) + zero_point)), qmin, qmax): two
 *                     float roundings (FBGEMM's scalar Quantize): torch.quantize_per_tensor for
 *                     qint32, and torch.quantize_per_channel for every type.
 *
 * For f32 input the products and quotients are float32 operations (exactly what the runtimes
 * compute); for f64 input they are double operations with `scale` widened to double.
 * +inf and -inf saturate to qmax and qmin. A NaN returns QK_ERR_NAN (elements before it are
 * written). scale must be finite and > 0 (QK_ERR_SCALE); the flavours that multiply by
 * fl(1/scale) (pt2e, fbgemm, fbgemm_scalar) also need that reciprocal finite, i.e. scale >
 * 2^-128 (QK_ERR_SCALE for the denormal scales at or below it: x * inf would be NaN for x = 0,
 * and a NaN has no quantized value). With these rules no intermediate is NaN, and the SIMD and
 * scalar loops give the same bits on every input. qmin <= qmax within the output type
 * (QK_ERR_QRANGE); qmin <= zero_point <= qmax (QK_ERR_ZERO_POINT).
 * Sub-byte widths (2..7 bits, 9..15 bits) are expressed by qmin/qmax.
 */
#define QK__DECLARE_QUANTIZE(IN, INT, OUT, OUTT, FLAV)                                          \
    qk_status qk_quantize_##IN##_##OUT##_##FLAV(const INT *x, size_t n, float scale,              \
                                                int32_t zero_point, int32_t qmin, int32_t qmax, \
                                                OUTT *y, size_t *bad_index);
/* X(args..., flavour) for each flavour (also the library's own list of them). */
#define QK__FOR_EACH_FLAVOUR(X, ...)                                                           \
    X(__VA_ARGS__, fbgemm) X(__VA_ARGS__, fbgemm_scalar) X(__VA_ARGS__, pt2e)                  \
    X(__VA_ARGS__, onnx) X(__VA_ARGS__, tflite)
#define QK__DECLARE_QUANTIZE_FLAVOURS(IN, INT, OUT, OUTT) \
    QK__FOR_EACH_FLAVOUR(QK__DECLARE_QUANTIZE, IN, INT, OUT, OUTT)
#define QK__DECLARE_QUANTIZE_OUTS(IN, INT)                  \
    QK__DECLARE_QUANTIZE_FLAVOURS(IN, INT, u8, uint8_t)     \
    QK__DECLARE_QUANTIZE_FLAVOURS(IN, INT, s8, int8_t)      \
    QK__DECLARE_QUANTIZE_FLAVOURS(IN, INT, u16, uint16_t)   \
    QK__DECLARE_QUANTIZE_FLAVOURS(IN, INT, s16, int16_t)    \
    QK__DECLARE_QUANTIZE_FLAVOURS(IN, INT, s32, int32_t)
QK__DECLARE_QUANTIZE_OUTS(f32, float)
QK__DECLARE_QUANTIZE_OUTS(f64, double)

/*
 * qk_quantize_dynamic_f32_u8(x, n, reduce_range, y, scale, zero_point): the per-call input
 * quantization of PyTorch's dynamic Linear (fbgemm quantized::linear_dynamic): the range
 * [min(min x, 0), max(max x, 0)], FBGEMM's ChooseQuantizationParams over [qmin, qmax] = [0, 255]
 * ([0, 127] with reduce_range, PyTorch's default there) in double arithmetic (scale = (max -
 * min) / (qmax - qmin); 0.1 when fl(scale) is 0 or its float reciprocal infinite; below
 * fl(6.1e-5) the scale becomes fl(6.1e-5) and the range is widened as FBGEMM does; the zero
 * point from the end with the smaller error, rounded to nearest even, clamped to [qmin, qmax]),
 * then *scale = fl(scale) and y = the fbgemm flavour of qk_quantize into [0, 255]. Returns
 * QK_ERR_NAN when x holds a NaN or an infinity (nothing written), QK_ERR_ARG for NULL pointers
 * with n > 0. n = 0 gives scale 0.1, zero point 0 (FBGEMM's choice for the range [0, 0]).
 */
qk_status qk_quantize_dynamic_f32_u8(const float *x, size_t n, int reduce_range, uint8_t *y,
                                     float *scale, int32_t *zero_point);

/* ------------------------------------------------------------------------------------------ */
/* 2. Dequantize: integer -> float32                                                          */
/* ------------------------------------------------------------------------------------------ */
/*
 * qk_dequantize_<in>_f32(q, n, scale, zero_point, y):  y = fl(scale * (float)(q - zero_point))
 *   in: u8, s8, u16, s16, s32. (q - zero_point) is exact (int64); its conversion to float is RNE.
 *   scale must be finite and > 0.
 */
#define QK__DECLARE_DEQUANTIZE(IN, INT)                                                      \
    qk_status qk_dequantize_##IN##_f32(const INT *q, size_t n, float scale, int32_t zero_point, \
                                       float *y);
QK__DECLARE_DEQUANTIZE(u8, uint8_t)
QK__DECLARE_DEQUANTIZE(s8, int8_t)
QK__DECLARE_DEQUANTIZE(u16, uint16_t)
QK__DECLARE_DEQUANTIZE(s16, int16_t)
QK__DECLARE_DEQUANTIZE(s32, int32_t)
/*
 * qk_dequantize_channels_<in>_f32(q, rows, cols, scale, zero_point, y): per channel on the last
 *   axis of a rows x cols row-major q: y[r][c] = fl(scale[c] * (float)(q[r][c] - zero_point[c])),
 *   the same value as qk_dequantize_<in>_f32 with that channel's parameters. Every scale finite
 *   and > 0 (QK_ERR_SCALE), cols >= 1.
 */
#define QK__DECLARE_DEQUANTIZE_CH(IN, INT)                                                   \
    qk_status qk_dequantize_channels_##IN##_f32(const INT *q, size_t rows, size_t cols,      \
                                                const float *scale, const int32_t *zero_point, \
                                                float *y);
QK__DECLARE_DEQUANTIZE_CH(u8, uint8_t)
QK__DECLARE_DEQUANTIZE_CH(s8, int8_t)
QK__DECLARE_DEQUANTIZE_CH(u16, uint16_t)
QK__DECLARE_DEQUANTIZE_CH(s16, int16_t)
QK__DECLARE_DEQUANTIZE_CH(s32, int32_t)

/*
 * qk_fake_quantize_<io>_torch(x, n, scale, zero_point, qmin, qmax, y):
 *   q = clamp(RNE(x * fl(1/scale)) + zero_point, qmin, qmax);  y = (q - zero_point) * scale
 *   (PyTorch fake_quantize_per_tensor_affine / _per_channel_affine). io: f32 or f64 (double
 *   arithmetic). qmin/qmax may be any int32 range (no output type); NaN -> QK_ERR_NAN. scale as
 *   for the pt2e quantizers: finite, > 0 and fl(1/scale) finite (scale > 2^-128).
 */
qk_status qk_fake_quantize_f32_torch(const float *x, size_t n, float scale, int32_t zero_point,
                                     int32_t qmin, int32_t qmax, float *y, size_t *bad_index);
qk_status qk_fake_quantize_f64_torch(const double *x, size_t n, float scale, int32_t zero_point,
                                     int32_t qmin, int32_t qmax, double *y, size_t *bad_index);

/*
 * qk_accumulator_to_f32_fma(acc, n, scale, bias, y):  y = fmaf((float)acc, scale, bias)
 *   int32 accumulators to float with one rounding of acc * scale + bias: FBGEMM's
 *   ReQuantizeForFloat, the output stage of dynamic quantization (torch quantize_dynamic,
 *   quantized::linear_dynamic), scale = fl(x_scale * w_scale). scale must be finite and > 0,
 *   bias finite (QK_ERR_ARG otherwise).
 */
qk_status qk_accumulator_to_f32_fma(const int32_t *acc, size_t n, float scale, float bias,
                                    float *y);

/* ------------------------------------------------------------------------------------------ */
/* 3. Real multiplier -> fixed point (TFLite QuantizeMultiplier)                              */
/* ------------------------------------------------------------------------------------------ */
/*
 * m ~= multiplier * 2^(shift - 31), multiplier in [2^30, 2^31 - 1] (or 0 when m == 0 or
 * m < 2^-32), shift in [-31, 31]; shift > 0 means a left shift. As TFLite, a mantissa that
 * rounds up to 2^31 gives multiplier 2^30 and shift + 1 (m = 2^30 - 2^-2 gives (2^30, 31)).
 * m must be finite and >= 0 (QK_ERR_MULTIPLIER); m >= 2^31 - 2^-1 would need shift > 31 and
 * returns QK_ERR_SHIFT. The requantize functions take shift in [-31, 30]: a multiplier with
 * shift 31 (m >= 2^30 - 2^-2) is representable here but not usable there.
 */
qk_status qk_quantize_multiplier(double m, int32_t *multiplier, int32_t *shift);

/* ------------------------------------------------------------------------------------------ */
/* 4. Requantize: int32 accumulator -> narrow integer                                        */
/* ------------------------------------------------------------------------------------------ */
/*
 * All: y = clamp(R(acc) + zero_point, qmin, qmax), out in u8, s8, u16, s16, s32.
 *
 * qk_requantize_s32_<out>_double(acc, n, multiplier, shift, zp, qmin, qmax, y, bad_index)
 *   R = RDBPOT(SRDHM(acc * 2^max(shift,0), multiplier), max(-shift,0))  -- gemmlowp / TFLite
 *   reference / CMSIS-NN. shift in [-31, 30] (QK_ERR_SHIFT), multiplier >= 0
 *   (QK_ERR_MULTIPLIER). When shift > 0 and acc * 2^shift does not fit in int32 (TFLite would
 *   wrap), returns QK_ERR_OVERFLOW at the first such element.
 * qk_requantize_s32_<out>_single(...same...)
 *   R = (acc * multiplier + 2^(30 - shift)) >> (31 - shift), exact in int64 (RHU of the exact
 *   product): TFLITE_SINGLE_ROUNDING, ruy, CMSIS-NN single rounding.
 * qk_requantize_s32_<out>_fp32(acc, n, scale, zp, qmin, qmax, y)
 *   R = RNE(fl(fl((float)acc) * scale))  -- FBGEMM, QNNPACK, ONNX Runtime MLAS, XNNPACK fp32.
 * qk_requantize_s32_<out>_shift_<rounding>(acc, n, shift, zp, qmin, qmax, y)
 *   R = acc / 2^shift rounded by <rounding>: half_up (RHU, (acc + 2^(shift-1)) >> shift),
 *   half_even (RNE), half_away (RHAZ), floor (acc >> shift). shift in [-31, 31]; a negative
 *   shift is an exact left shift (computed in int64, then clamped).
 */
#define QK__DECLARE_REQUANTIZE(OUT, OUTT)                                                      \
    qk_status qk_requantize_s32_##OUT##_double(const int32_t *acc, size_t n, int32_t multiplier, \
                                               int32_t shift, int32_t zero_point, int32_t qmin,  \
                                               int32_t qmax, OUTT *y, size_t *bad_index);        \
    qk_status qk_requantize_s32_##OUT##_single(const int32_t *acc, size_t n, int32_t multiplier, \
                                               int32_t shift, int32_t zero_point, int32_t qmin,  \
                                               int32_t qmax, OUTT *y);                           \
    qk_status qk_requantize_s32_##OUT##_fp32(const int32_t *acc, size_t n, float scale,          \
                                             int32_t zero_point, int32_t qmin, int32_t qmax,     \
                                             OUTT *y);                                           \
    qk_status qk_requantize_s32_##OUT##_shift_half_up(const int32_t *acc, size_t n,              \
                                                      int32_t shift, int32_t zero_point,         \
                                                      int32_t qmin, int32_t qmax, OUTT *y);      \
    qk_status qk_requantize_s32_##OUT##_shift_half_even(const int32_t *acc, size_t n,            \
                                                        int32_t shift, int32_t zero_point,       \
                                                        int32_t qmin, int32_t qmax, OUTT *y);    \
    qk_status qk_requantize_s32_##OUT##_shift_half_away(const int32_t *acc, size_t n,            \
                                                        int32_t shift, int32_t zero_point,       \
                                                        int32_t qmin, int32_t qmax, OUTT *y);    \
    qk_status qk_requantize_s32_##OUT##_shift_floor(const int32_t *acc, size_t n, int32_t shift, \
                                                    int32_t zero_point, int32_t qmin,            \
                                                    int32_t qmax, OUTT *y);
QK__DECLARE_REQUANTIZE(u8, uint8_t)
QK__DECLARE_REQUANTIZE(s8, int8_t)
QK__DECLARE_REQUANTIZE(u16, uint16_t)
QK__DECLARE_REQUANTIZE(s16, int16_t)
QK__DECLARE_REQUANTIZE(s32, int32_t)

/* The fixed-point primitives the schemes are built from (gemmlowp fixedpoint.h), exposed for
 * test benches that check their own hardware against them. */
int32_t qk_srdhm(int32_t a, int32_t b);          /* SaturatingRoundingDoublingHighMul */
int32_t qk_rdbpot(int32_t x, int32_t exponent);  /* RoundingDivideByPOT, exponent in [0, 31] */
/* MultiplyByQuantizedMultiplier, double rounding; shift in [-31, 30]; wraps acc*2^shift like
 * TFLite (use the requantize functions for the checked version). */
int32_t qk_mul_by_quantized_multiplier(int32_t acc, int32_t multiplier, int32_t shift);

/* ---- section: integer linear / convolution (issue 3) ---- */
/*
 * Integer fully-connected and 2-D convolution (SPEC.md section 5):
 *
 *   acc[o] = sum_k (x[k] - x_zp) * (w[o,k] - w_zp[o])  (+ bias[o], int32)
 *   y[o]   = clamp(R(acc[o]) + zero_point, act_min, act_max)
 *
 * The sums are exact in int32. Before anything runs, the worst case
 * max|x - x_zp| * sum_k |w[o,k] - w_zp[o]| + |bias[o]| (max|x - x_zp| over the whole range of the
 * activation type) is compared with INT32_MAX: beyond it the call returns QK_ERR_OVERFLOW and
 * writes nothing, unless `wrap` is set, in which case the sums wrap modulo 2^32 (documented
 * two's-complement wrap, the same bits on every path).
 *
 * Weights are packed once (qk_pack_linear / qk_pack_conv2d) and reused; the packed object holds
 * the weight panels and the per-channel terms (sum_k |w - w_zp| for the bound; sum_k w, the
 * "a2" zero-point term, for the 8-bit path). Runs are reentrant: several threads may use one
 * packed object at once. `threads` <= 1 runs on the calling thread; more split the output
 * between the caller and up to threads - 1 helper threads (results do not depend on the count).
 *
 * Instruction sets, chosen once per process: with AVX512-VNNI (and qk_isa() == AVX2) the GEMMs
 * multiply raw u8 x s8 bytes with vpdpbusd and apply the zero points afterwards, exactly
 * (sum (x - xz)(w - wz) = sum x w - xz sum w - wz sum x + K xz wz, modulo 2^32, which is exact
 * once the bound holds); otherwise AVX2 multiplies int16 (x - x_zp) by int16 (w - w_zp) with
 * vpmaddwd; otherwise portable C. Every path gives the same bits. QKERNELS_SIMD=avx2 in the
 * environment keeps the int16 AVX2 kernels, QKERNELS_SIMD=scalar the portable C (see qk_isa()).
 * A packed object is laid out for the path chosen when it was packed.
 */
/* QK_DT_F32: the float32 output of QK_REQ_FLOAT (qk_linear's output only); QK_DT_S16: the
 * int16 operand and output of qk_residual_add only. */
typedef enum qk_dtype {
    QK_DT_U8 = 0,
    QK_DT_S8 = 1,
    QK_DT_S32 = 2,
    QK_DT_F32 = 3,
    QK_DT_S16 = 4
} qk_dtype;

typedef struct qk_packed_weights qk_packed_weights;

/* w: n x k row-major (u8 or s8 as w_type); w_zero_point: n values (per output channel; repeat
 * the value for per-tensor), each within the range of w_type. *out receives a new object (free
 * it with qk_packed_weights_free). Errors: QK_ERR_ARG (NULL, n or k == 0, bad type, n or k
 * above 2^40, n * k above PTRDIFF_MAX / 256), QK_ERR_ZERO_POINT, QK_ERR_NOMEM. */
qk_status qk_pack_linear(const void *w, qk_dtype w_type, size_t n, size_t k,
                         const int32_t *w_zero_point, qk_packed_weights **out);
/* w: OIHW, out_c x (in_c / groups) x kh x kw; out_c must be divisible by groups; kh, kw at
 * most 4096 (QK_ERR_ARG). */
qk_status qk_pack_conv2d(const void *w, qk_dtype w_type, size_t out_c, size_t in_c_per_group,
                         size_t kh, size_t kw, size_t groups, const int32_t *w_zero_point,
                         qk_packed_weights **out);
void qk_packed_weights_free(qk_packed_weights *w);
/* Output channels, reduction length, and the bytes the object holds. */
size_t qk_packed_weights_n(const qk_packed_weights *w);
size_t qk_packed_weights_k(const qk_packed_weights *w);
size_t qk_packed_weights_bytes(const qk_packed_weights *w);

/* What happens to an accumulator after the sum (the requantization). */
typedef enum qk_requant_scheme {
    QK_REQ_NONE = 0,       /* int32 out: acc + bias, no requantization (out_type QK_DT_S32) */
    QK_REQ_FP32 = 1,       /* f = (float)acc [+ float_bias[o]]; RNE(fl(f * scale[o])) */
    QK_REQ_DOUBLE = 2,     /* double_round with multiplier[o], shift[o] (SPEC section 4) */
    QK_REQ_SINGLE = 3,     /* single_round with multiplier[o], shift[o] */
    QK_REQ_SHIFT_HALF_UP = 4,   /* acc / 2^shift[o], RHU; shift in [-31, 31] */
    QK_REQ_SHIFT_HALF_EVEN = 5, /* ... RNE */
    QK_REQ_SHIFT_HALF_AWAY = 6, /* ... RHAZ */
    QK_REQ_SHIFT_FLOOR = 7,     /* ... floor */
    QK_REQ_FP64 = 8,       /* RHAZ((double)acc * scale64[o]) (TFLite's reference FullyConnected:
                            * round() of the double product; values beyond int32 saturate, where
                            * TFLite's cast is undefined) */
    QK_REQ_DOUBLE_HALF_UP = 9, /* SRDHM(acc * 2^max(shift,0), multiplier) then a rounding right
                            * shift by max(-shift,0) with ties toward +inf (NEON vrshl; TFLite's
                            * optimized built-in kernels on x86 through NEON_2_SSE), as DOUBLE
                            * otherwise (same ranges, same overflow rule) */
    /* int64 accumulators only (qk_conv2d_s16s8 / qk_linear_s16s8; refused by the 8-bit
     * operators): the 16-bit "reduced" multiplier rm = multiplier < 0x7FFF0000 ?
     * (multiplier + 2^15) >> 16 : 0x7FFF, shift in [-31, 7] */
    QK_REQ_REDUCED = 10,   /* (acc * rm + 2^(14 - shift)) >> (15 - shift), then int32 (two's
                            * complement wrap): TFLite's int64 MultiplyByQuantizedMultiplier
                            * (kernels/internal/common.cc, default build) */
    QK_REQ_REDUCED_CMSIS = 11, /* r = int32((acc * rm) >> (14 - shift)) (wrap), then (r + 1) >> 1
                            * with the int32 add wrapping: CMSIS-NN arm_nn_requantize_s64; the
                            * same as QK_REQ_REDUCED wherever (acc * rm) >> (14 - shift) fits in
                            * int32 */
    QK_REQ_FLOAT = 12      /* float32 out (out_type QK_DT_F32; qk_linear only, others return
                            * QK_ERR_ARG): y = fmaf((float)acc, scale[o], float_bias[o]) with
                            * acc = sum [+ bias[o]] (mod 2^32) and float_bias 0 when NULL: one
                            * rounding after the exact int-to-float conversion (FBGEMM's
                            * ReQuantizeForFloat behind PyTorch's dynamic quantized Linear, with
                            * scale[o] = fl(x_scale * w_scale[o])); zero_point, act_min and
                            * act_max are not used. scale finite and > 0, float_bias finite. */
} qk_requant_scheme;

/* Per-call output stage. Arrays hold one value per output channel (n), or are NULL when the
 * scheme does not use them. */
typedef struct qk_epilogue {
    qk_requant_scheme scheme;
    qk_dtype out_type;         /* QK_DT_U8 / QK_DT_S8 (requantized), QK_DT_S32 (QK_REQ_NONE) or
                                * QK_DT_F32 (QK_REQ_FLOAT) */
    const int32_t *bias;       /* int32 bias added to the accumulator (any scheme), or NULL */
    const float *float_bias;   /* QK_REQ_FP32: added in float, fl((float)acc + fb[o]) (FBGEMM);
                                * QK_REQ_FLOAT: the addend of the fmaf */
    const float *scale;        /* QK_REQ_FP32 / QK_REQ_FLOAT: finite and > 0 */
    const int32_t *multiplier; /* QK_REQ_DOUBLE / SINGLE / DOUBLE_HALF_UP: >= 0 */
    const int32_t *shift;      /* DOUBLE / SINGLE / DOUBLE_HALF_UP: [-31, 30]; SHIFT_*: [-31, 31] */
    int32_t zero_point;        /* output zero point, within out_type (it may lie outside
                                * [act_min, act_max]: y = clamp(R(acc) + zero_point, act_min,
                                * act_max), as TFLite and CMSIS-NN compute it) */
    int32_t act_min, act_max;  /* clamping range within out_type (ReLU: act_min = zero_point) */
    int wrap;                  /* 1: the sums wrap modulo 2^32 instead of QK_ERR_OVERFLOW */
    const double *scale64;     /* QK_REQ_FP64: finite and > 0 */
} qk_epilogue;

/* y (m x n, ep->out_type) = epilogue(x (m x k, x_type) . w^T). x_zero_point within x_type.
 * Returns QK_ERR_OVERFLOW before writing when the bound is exceeded (see above), or while
 * running when a double-round left shift overflows (TFLite would wrap). */
qk_status qk_linear(const qk_packed_weights *w, const void *x, qk_dtype x_type, size_t m,
                    int32_t x_zero_point, const qk_epilogue *ep, void *y, int threads);

/* 2-D convolution, NCHW in and out, OIHW weights (packed by qk_pack_conv2d). Padding taps read
 * x_zero_point (contribute 0). out_h = (in_h + pad_top + pad_bottom - dil_h*(kh-1) - 1)/stride_h + 1,
 * likewise out_w; both must be >= 1 (QK_ERR_ARG). The padded extents in + pads and the dilated
 * kernel extents dil*(k-1)+1 must be at most PTRDIFF_MAX, and so must the bytes of x and y
 * (QK_ERR_ARG). Memory follows the work, not the padding: the padded copy of the input the fast
 * paths make is at most 4 x (input + output) elements + 64K; windows of mostly padding (huge
 * padding, stride or dilation) run a direct loop over the taps that read the input instead. */
typedef struct qk_conv2d_shape {
    size_t batch, in_c, in_h, in_w;
    size_t stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w;
} qk_conv2d_shape;
qk_status qk_conv2d_out_size(const qk_conv2d_shape *s, const qk_packed_weights *w,
                             size_t *out_h, size_t *out_w);
qk_status qk_conv2d(const qk_conv2d_shape *s, const qk_packed_weights *w, const void *x,
                    qk_dtype x_type, int32_t x_zero_point, const qk_epilogue *ep, void *y,
                    int threads);
/* qk_conv2d writing images y_image_stride elements apart (0: out_c * out_h * out_w, the
 * contiguous layout): image b's NCHW output at y + b * y_image_stride, e.g. a channel slice
 * [c0, c0 + out_c) of a larger (batch, C, out_h, out_w) array (y = its channel c0, stride
 * C * out_h * out_w: a concatenation written in place). The same outputs; nothing else of y is
 * written. QK_ERR_ARG for a stride under out_c * out_h * out_w. */
qk_status qk_conv2d_strided(const qk_conv2d_shape *s, const qk_packed_weights *w, const void *x,
                            qk_dtype x_type, int32_t x_zero_point, const qk_epilogue *ep, void *y,
                            size_t y_image_stride, int threads);

/* A residual add fused into the conv's output stage (PyTorch's quantized::add / add_relu of a
 * ResNet block or an inverted residual, after the conv that feeds it):
 *   y = qk_qadd(conv, other, ep->out_type, n, conv_scale, ep->zero_point, other_scale,
 *               other_zp, out_scale, out_zp, relu, y)
 * element for element, where conv is the output qk_conv2d(s, w, x, ..., ep) would write (the same
 * bits) and other is an NCHW array of y's shape and type: one call, no 8-bit intermediate for the
 * caller to hold, the add run over y right after the conv wrote it (split over the threads).
 * ep->out_type QK_DT_U8 or QK_DT_S8 (else QK_ERR_ARG); the add's
 * parameters are checked as qk_qadd checks them (the same codes) before anything is written;
 * other must not overlap y (QK_ERR_ARG). add NULL: qk_conv2d. */
typedef struct qk_conv_add {
    const void *other;   /* NCHW, y's shape and type */
    float conv_scale;    /* the scale of the conv's own output (its zero point: ep->zero_point) */
    float other_scale;
    int32_t other_zp;
    float out_scale;     /* y's */
    int32_t out_zp;
    int relu;            /* 1: add_relu */
} qk_conv_add;
qk_status qk_conv2d_add(const qk_conv2d_shape *s, const qk_packed_weights *w, const void *x,
                        qk_dtype x_type, int32_t x_zero_point, const qk_epilogue *ep,
                        const qk_conv_add *add, void *y, int threads);


/* ---- section: int16 activations x int8 weights (TFLite 16x8, CMSIS-NN s16) (issue 12) ---- */
/*
 * TFLite's 16x8 mode (int16 activations, int8 weights, int64 bias) and CMSIS-NN's s16 kernels:
 *
 *   acc[o] = sum_k x[k] * w[o,k] + bias[o]      exact int64; no zero points (both runtimes
 *                                               take symmetric int16 activations and weights)
 *   y[o]   = clamp(R(acc[o]), act_min, act_max)  int16, R = ep->scheme:
 *     QK_REQ_REDUCED        TFLite CONV_2D / DEPTHWISE_CONV_2D (reference and optimized
 *                           built-ins: reference_integer_ops::ConvPerChannel /
 *                           DepthwiseConvPerChannel with an int64 bias)
 *     QK_REQ_REDUCED_CMSIS  CMSIS-NN arm_convolve_s16, arm_depthwise_conv_s16,
 *                           arm_fully_connected_s16 (int64 bias)
 *     QK_REQ_FP64           RHAZ((double)acc * scale64[o]) saturated to int32: TFLite
 *                           FULLY_CONNECTED (reference_integer_ops::FullyConnected[PerChannel],
 *                           the float-scale overload, run for int64 biases by every kernel type)
 *
 * Before anything is written the worst case 32768 * sum_k |w[o,k]| + |bias[o]| is compared with
 * 2^47 (the input range TFLite's int64 MultiplyByQuantizedMultiplier assumes; beyond it
 * acc * rm could leave int64): beyond it the call returns QK_ERR_OVERFLOW. One scalar loop
 * (exact first; no SIMD twin), on the calling thread.
 */
typedef struct qk_epilogue_s16 {
    qk_requant_scheme scheme;  /* QK_REQ_REDUCED, QK_REQ_REDUCED_CMSIS or QK_REQ_FP64 */
    const int64_t *bias;       /* n values, or NULL */
    const int32_t *multiplier; /* REDUCED*: n values >= 0 (TFLite's Q31 M0) */
    const int32_t *shift;      /* REDUCED*: n values in [-31, 7] */
    const double *scale64;     /* FP64: n values, finite and > 0 */
    int32_t act_min, act_max;  /* within int16, act_min <= act_max */
} qk_epilogue_s16;

/* 2-D convolution, NCHW int16 in and out, OIHW int8 weights out_c x (in_c / groups) x kh x kw
 * (unpacked), groups dividing in_c and out_c (depthwise: groups == in_c). Geometry as qk_conv2d
 * (padding taps contribute 0). Errors: QK_ERR_ARG (NULL, sizes, geometry), QK_ERR_QRANGE,
 * QK_ERR_MULTIPLIER, QK_ERR_SHIFT, QK_ERR_SCALE, QK_ERR_OVERFLOW (the bound above). */
qk_status qk_conv2d_s16s8(const qk_conv2d_shape *s, const int8_t *w, size_t out_c, size_t kh,
                          size_t kw, size_t groups, const int16_t *x,
                          const qk_epilogue_s16 *ep, int16_t *y);
/* y (m x n) = R(x (m x k, int16) . w^T (w: n x k, int8)): the 1 x 1 convolution of m images of
 * k channels and one pixel. Errors as qk_conv2d_s16s8. */
qk_status qk_linear_s16s8(const int8_t *w, size_t n, size_t k, const int16_t *x, size_t m,
                          const qk_epilogue_s16 *ep, int16_t *y);


/* ---- section: PTF and integer LayerNorm (issue 4) ---- */
/*
 * PTF: power-of-two factor quantization (FQ-ViT, SOLE; SPEC section 6).
 *
 * Layout: `tokens` rows of `channels` contiguous elements (row-major, channels last).
 * One scale `s` and one zero point `zp` for the tensor, and a per-channel exponent alpha[c]:
 *
 *   d[c] = fl(s * 2^alpha[c])                       (exact: a power-of-two multiple of s)
 *   q    = clamp(RNE(fl(x / d[c])) + zp, 0, 255)    uint8; the quotient is a float32 division
 *   x^   = fl(d[c] * (float)(q - zp))               (dequantize)
 *   integer-domain value of q: (q - zp) << alpha[c]  (what the LayerNorm kernels use)
 *
 * Ranges: s finite and > 0 with every d[c] finite (QK_ERR_SCALE); zp in [0, 255]
 * (QK_ERR_ZERO_POINT); alpha[c] in [0, QK_PTF_MAX_ALPHA] (QK_ERR_SHIFT); alpha == NULL with
 * channels > 0, or x/q/y NULL with elements to do: QK_ERR_ARG. Parameters are checked before
 * anything is written. +inf/-inf saturate to 255/0; a NaN returns QK_ERR_NAN with *bad_index
 * (flat index, when not NULL) at the first NaN; the elements before it are written.
 * qk_ptf_quantize_f32_u8 has an AVX2 loop beside its scalar twin (same bits; a block holding a
 * NaN is left to the scalar loop, which reports it).
 * The seed's sign convention (alpha_seed <= 0, scale S) is the same kernel with
 * s = S * 2^min(alpha_seed) and alpha = alpha_seed - min(alpha_seed).
 */
#define QK_PTF_MAX_ALPHA 7
qk_status qk_ptf_quantize_f32_u8(const float *x, size_t tokens, size_t channels, float scale,
                                 const int32_t *alpha, int32_t zero_point, uint8_t *q,
                                 size_t *bad_index);
qk_status qk_ptf_dequantize_u8_f32(const uint8_t *q, size_t tokens, size_t channels, float scale,
                                   const int32_t *alpha, int32_t zero_point, float *y);

/*
 * Integer LayerNorm over the last axis of PTF-quantized uint8 input (SPEC section 7).
 * Output: int8 y = clamp(RHU(value / out_scale) + out_zp, out_qmin, out_qmax), where value
 * approximates gamma * (x - mean) / sqrt(var + eps) + beta.
 *
 * Prepare once (all float work, double precision), then run the integer-only kernel:
 *
 *   qk_layernorm_prepare(p, method, channels, in_scale, alpha, in_zp, gamma, beta, eps,
 *                        out_scale, out_zp, gamma_buf, beta_buf, alpha_buf)
 *     method: QK_LAYERNORM_EXACT, QK_LAYERNORM_SOLE_ROUND, QK_LAYERNORM_SOLE_TRUNCATE.
 *     channels in [1, QK_LAYERNORM_MAX_CHANNELS]; alpha/in_zp/in_scale as PTF above;
 *     gamma, beta: `channels` finite floats (QK_ERR_ARG otherwise); eps finite and >= 0;
 *     out_scale finite and > 0; out_zp in [-128, 127]. The caller owns gamma_buf (int32,
 *     channels), beta_buf (int64, channels) and alpha_buf (uint8, channels); p points into
 *     them, so they must outlive p. QK_ERR_SCALE when gamma/out_scale or beta/out_scale is too
 *     large for the fixed-point output stage (|gamma/out_scale| >= 2^30 or
 *     |beta/out_scale| >= 2^44).
 *
 * Shared integer notation, per token (row), C = channels:
 *   x_i = (q_i - in_zp) << alpha_i             |x_i| < 2^15
 *   S1  = sum x_i                               int64
 *   v_i = C * x_i - S1                          |v_i| <= C * 2^16 < 2^31
 *   E   = RHAZ(eps * C^2 / in_scale^2)          prepared (eps in integer units), int64
 *   normalized value in Q16:  z_i ~= v_i / sqrt(D) * 2^16 with D from the method
 *   output stage (both): y_i = clamp(((z_i * G_i + B_i + 2^(F-1)) >> F) + out_zp, qmin, qmax)
 *     (RHU, arithmetic shift, int64; |z_i * G_i| < 2^54, |B_i| < 2^60, F = 16 + Gf, Gf in
 *     [0, 40] chosen by prepare as large as the bounds allow)
 *
 * QK_LAYERNORM_EXACT:
 *   S2 = sum x_i^2 (int64), D = C*S2 - S1^2 + E   (= C^2 (var + eps) / s^2, exact)
 *   j  = floor((61 - bitlen(D)) / 2);  R = isqrt(D << 2j)   (floor; Newton iteration as I-BERT)
 *   M  = (2^61 + floor(R/2)) / R  (RHU integer division; M in (2^30.5, 2^31.5])
 *   z_i = RHU(v_i * M >> (45 - j))                  (M / 2^(61-j) is the dyadic 1/sqrt(D))
 *   G_i = RHAZ(gamma_i / out_scale * 2^Gf), B_i = RHAZ(beta_i / out_scale * 2^(16+Gf))
 *   D == 0 (a constant row and E == 0): z_i = 0, y_i = beta only.
 *
 * QK_LAYERNORM_SOLE_ROUND / _TRUNCATE (SOLE AILayerNorm stages 1-2, ICCAD 2023, Alg. 2):
 *   a_i = |q_i - in_zp| (0..255), compressed to 4 bits:
 *     round:    a_i >= 64: c = min((a_i + 8) >> 4, 15), flag 1; else c = min((a_i + 2) >> 2, 15)
 *     truncate: a_i >= 64: c = a_i >> 4, flag 1;                else c = a_i >> 2
 *   Ex2 = sum (c^2 << (4 flag)) << (2 alpha_i)      (c^2 from a 16-entry square table)
 *   E2  = (Ex2 << 4) / C                             (floor: the mean of squares)
 *   D   = max(E2 * C^2 - S1^2, 0) + E                 (mean is exact: v_i uses S1)
 *   1/sqrt(D) from a 256-entry table: e = even shift with m = RHU(D >> e) in [64, 255] (or
 *     e = 0, m = D when D < 256); lut[m] = RHAZ(2^16 / sqrt(m)), lut[0] = 0;
 *   z_i = RHU(v_i * lut[m] >> (e/2)), then clamped to [-2^24, 2^24] (compression can
 *   underestimate D; the exact z never reaches the clamp since |v_i| / sqrt(D) <= sqrt(C))
 *   gamma and beta as int8: gamma_q = RHAZ(gamma / gs) with gs = fl(max|gamma| / 127) (beta
 *   alike); G_i = gamma_q_i * MG, B_i = beta_q_i * MB, MG = RHAZ(gs / out_scale * 2^Gf),
 *   MB = RHAZ(bs / out_scale * 2^(16+Gf)).
 *
 * qk_layernorm_ptf_u8_s8_exact / _sole(p, q, tokens, y): q is tokens x channels uint8, y is
 * tokens x channels int8. Integer-only; returns QK_ERR_ARG for a NULL or unprepared p (or the
 * wrong method for the function), NULL q/y with tokens > 0, or a p whose integers break the
 * bounds above (|G_i| >= 2^30, |B_i| >= 2^60, E > 2^60, alpha > 7, lut[m] > 2^16: checked on
 * every call, O(channels)). No allocation, reentrant.
 * qk_layernorm_ptf_u8_s8 dispatches on p->method; qk_layernorm_ptf_u8_s8_threads does too, with
 * `threads` <= 1 on the calling thread, more splitting the tokens between the caller and up to
 * threads - 1 helper threads when the call has at least 24576 tokens x channels (below that
 * the calling thread does it all); results do not depend on the count. The statistics have AVX-512 (32 channels a
 * step) and AVX2 loops, the output stage AVX-512 and AVX2 loops (int64 lanes; on AVX-512 with
 * F in [32, 52], int32 lanes whose even and odd halves are multiplied as int64, and for exact
 * rows z = ((C x_i) M' + 2^(r-1-k) - S1 M') >> (r - k) with M = M' 2^k, M' < 2^31: the same
 * integer), all chosen at run time beside a scalar twin that gives the same bits
 * (QKERNELS_SIMD=avx2 / scalar). qk_isqrt_u64 takes two Newton steps from a 192-entry table
 * on [2^59, 2^61) (then floor or floor + 1, corrected by one multiply): the same floor sqrt.
 * qk_layernorm_ptf_stats(p, q, tokens, s1, d): per-token S1 and D (before E is added) of the
 * method, for test benches and error reports: mean = in_scale * S1 / C,
 * var = in_scale^2 * D / C^2.
 */
#define QK_LAYERNORM_MAX_CHANNELS 32768
typedef enum qk_layernorm_method {
    QK_LAYERNORM_EXACT = 0,
    QK_LAYERNORM_SOLE_ROUND = 1,
    QK_LAYERNORM_SOLE_TRUNCATE = 2
} qk_layernorm_method;

typedef struct qk_layernorm_params {
    int32_t method;           /* qk_layernorm_method */
    int32_t channels;         /* C */
    int32_t in_zero_point;    /* 0..255 */
    int32_t out_zero_point;   /* out_qmin..out_qmax */
    int32_t out_qmin, out_qmax; /* within int8: -128, 127 by prepare */
    int32_t shift;            /* F = 16 + Gf */
    int64_t eps_term;         /* E >= 0 */
    int64_t gamma_multiplier; /* sole: MG; exact: 1 */
    int64_t beta_multiplier;  /* sole: MB; exact: 1 */
    const uint8_t *alpha;     /* channels exponents, 0..QK_PTF_MAX_ALPHA */
    const int32_t *gamma;     /* exact: G_i; sole: gamma_q_i (int8 values) */
    const int64_t *beta;      /* exact: B_i; sole: beta_q_i (int8 values) */
    uint32_t inv_sqrt_lut[256]; /* sole: lut[m] (zeros for exact) */
    float sole_gamma_scale;   /* sole: gs (1 when gamma is all zero); exact: 0 */
    float sole_beta_scale;    /* sole: bs; exact: 0 */
} qk_layernorm_params;

qk_status qk_layernorm_prepare(qk_layernorm_params *p, qk_layernorm_method method,
                               size_t channels, float in_scale, const int32_t *alpha,
                               int32_t in_zero_point, const float *gamma, const float *beta,
                               float eps, float out_scale, int32_t out_zero_point,
                               int32_t *gamma_buf, int64_t *beta_buf, uint8_t *alpha_buf);
qk_status qk_layernorm_ptf_u8_s8_exact(const qk_layernorm_params *p, const uint8_t *q,
                                       size_t tokens, int8_t *y);
qk_status qk_layernorm_ptf_u8_s8_sole(const qk_layernorm_params *p, const uint8_t *q,
                                      size_t tokens, int8_t *y);
qk_status qk_layernorm_ptf_u8_s8(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                                 int8_t *y);
qk_status qk_layernorm_ptf_u8_s8_threads(const qk_layernorm_params *p, const uint8_t *q,
                                         size_t tokens, int8_t *y, int threads);
qk_status qk_layernorm_ptf_stats(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                                 int64_t *s1, int64_t *d);
/* qk_layernorm_s16_s16_exact(p, x, tokens, y, threads): the exact method on int16 input x
 * (|x_i| <= 2^15; no PTF decode: p prepared with alpha 0 and in_zero_point 0, the int16 input's
 * step as in_scale) with int16 output (out_zero_point 0; the int8 qmin / qmax are not used):
 * per row S1 = sum x_i, D = C sum x_i^2 - S1^2, (mult, rshift) = 1/sqrt(D + E) as above,
 * z_i = (v_i mult + 2^(rshift-1)) >> rshift (v_i = C x_i - S1; 0 when D + E <= 0),
 * y_i = clamp((z_i G_i + B_i + 2^(F-1)) >> F, -32768, 32767): the integers the int8 kernel
 * computes before its int8 clamp. QK_ERR_ARG for another method, a nonzero alpha or zero point,
 * or what qk_layernorm_ptf_u8_s8 refuses. threads as qk_layernorm_ptf_u8_s8_threads. */
qk_status qk_layernorm_s16_s16_exact(const qk_layernorm_params *p, const int16_t *x,
                                     size_t tokens, int16_t *y, int threads);
/* Floor integer square root (Newton iteration from above, as I-BERT's int_sqrt). */
uint64_t qk_isqrt_u64(uint64_t n);

/* ---- section: quantized elementwise and pooling ops (PyTorch's quantized CPU backend) ---- */
/*
 * 8-bit tensors (t = QK_DT_U8 or QK_DT_S8), one scale and zero point a tensor, bit-exact with
 * PyTorch's quantized CPU kernels (quantized::add / add_relu, leaky_relu, clamp, max_pool2d,
 * adaptive_avg_pool2d), as the NumPy references of qkernels.torch compute them. Float steps
 * are float32 operations; "dequantize" below is Vectorized<quint8>::dequantize,
 * d = fmaf((float)q, s, -fl(s * zp)) (one rounding), and "quantize" is
 * y = clamp(RNE(fl(v * fl(1 / out_scale))) + out_zp, type range).
 *
 * qk_qadd(a, b, t, n, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, relu, y)
 *   c = fl(da + db) of the two dequantized inputs (n elements each); relu != 0: c = max(c, 0);
 *   y = quantize(c).
 * qk_qadd_qnnpack(a, b, n, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, relu, y)
 *   quantized::add(_relu) of uint8 tensors as PyTorch runs it with engine "qnnpack" (QNNPACK's
 *   add operator, integer only): ratios r_a = fl(a_scale / out_scale), r_b likewise; with e the
 *   exponent of max(r_a, r_b), shift = 21 - e and m_x = lrintf(r_x * 2^shift);
 *   acc = m_a (a - a_zp) + m_b (b - b_zp) (int32, exact); y = (acc >> shift) rounded half away
 *   from zero, + out_zp, clamped to [relu ? out_zp : 0, 255]. Ratios outside [2^-14, 2^8)
 *   (QNNPACK refuses them) or with max(r_a, r_b) < 2^-10 (shift > 31): QK_ERR_SCALE; relu with
 *   out_zp = 255 (QNNPACK refuses the empty range): QK_ERR_ARG. AVX2 loop, same bits.
 * qk_qmul(a, b, t, rows, cols, b_per_row, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, relu, y)
 *   quantized::mul(_relu) (fbgemm and qnnpack engines alike): a and y hold rows x cols
 *   elements; b holds as many (b_per_row 0) or one value a row (b_per_row 1: PyTorch's
 *   broadcast of an (N, C, 1, 1) tensor over NCHW planes, as squeeze-excitation multiplies).
 *   c = (a - a_zp)(b - b_zp) (exact int32), m = fl(fl(a_scale * b_scale) * fl(1 / out_scale))
 *   (float, as PyTorch's qmul_kernel), y = clamp(RNE(fl((float)c * m)) + out_zp) to t's range,
 *   relu: to [out_zp, qmax]. Scales finite and > 0, m <= 2^15 (|c m| < 2^31, where PyTorch's
 *   vector and scalar paths agree), else QK_ERR_SCALE. AVX-512 / AVX2 loops, the same bits.
 * qk_qglobal_avg_pool2d(x, t, n, c, hw, zp, vec_channels, y)
 *   quantized adaptive_avg_pool2d to 1 x 1 as PyTorch computes it on the channels-last tensors
 *   its quantized convs hand on (any plane size; qk_qadaptive_avg_pool2d covers the
 *   power-of-two ones): x is n x c planes of hw values (NCHW), y n x c values, parameters kept;
 *   acc = sum - hw zp (exact, int32: hw <= INT32_MAX / 255, else QK_ERR_ARG), s = fl(1 /
 *   fl(1 / hw)), inv = fl(1 / s); channels below vec_channels (the ones PyTorch's vector loop
 *   takes: c rounded down to its vector width) y = RNE(fmaf(acc, inv, zp)), the others
 *   RNE(fl(fl(acc inv) + zp)) (fbgemm::Quantize's vector and scalar steps), clamped to t.
 *   The byte sums: AVX-512 / AVX2 psadbw beside the scalar loop (exact sums: the same bits).
 * qk_qleaky_relu(x, t, n, x_scale, x_zp, slope, out_scale, out_zp, y)
 *   dy = dx > 0 ? dx : fl(dx * slope); y = quantize(dy). slope finite (QK_ERR_ARG).
 *   Both: the input scales finite, > 0 and at most 2^118 (every dequantized value and the sum
 *   of two stay finite), the output scale finite, > 0 and with fl(1 / out_scale) finite
 *   (> 2^-128), else QK_ERR_SCALE (then no intermediate is NaN); every zero point within t
 *   (QK_ERR_ZERO_POINT). An AVX2 loop beside the scalar twin, the same bits.
 * qk_qclamp(x, t, n, lo, hi, y)
 *   y = min(max(x, lo), hi) on the integers, lo and hi first clamped to t's range.
 * qk_qmax_pool2d(x, t, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, y)
 *   x: planes x h x w (NCHW with planes = N * C), y: planes x oh x ow (the caller's output size:
 *   PyTorch's floor or ceil rule). Output (i, j) is the maximum over input rows
 *   i * sh - ph + a * dh (a < kh) and columns j * sw - pw + b * dw (b < kw), in-bounds taps
 *   only (padding never wins); a window without an in-bounds tap gives t's minimum. Kernel
 *   sizes, strides and dilations >= 1 (QK_ERR_ARG). With AVX-512 VBMI, planes up to 128 wide
 *   into output rows up to 64 wide (windows up to 32 columns): one output row a vector (byte
 *   permutes). Otherwise rows up to 4096 wide are pooled by rows (the vertical maximum of a
 *   window's rows, AVX2 beside the scalar twin, then the columns; 3-wide stride-2 windows in
 *   AVX2 too), wider ones tap by tap: the same maxima.
 * qk_qadaptive_avg_pool2d(x, t, planes, h, w, oh, ow, y)
 *   Output (i, j) = RNE(sum / count) over PyTorch's adaptive window: rows
 *   floor(i h / oh) .. ceil((i + 1) h / oh) - 1, columns likewise (the sum exact in int64, the
 *   quotient correctly rounded). h, w >= 1 (QK_ERR_ARG). PyTorch's own float steps give the
 *   same result only where every window has the same power-of-two size (qkernels.torch uses
 *   this kernel there).
 * qk_qavg_pool2d(x, t, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, count_include_pad,
 *                divisor_override, zp, vec_channels, y)
 *   PyTorch's quantized avg_pool2d (fbgemm / x86 engines; qparams kept, zp the tensor's zero
 *   point). x: n x c x h x w (NCHW), y: n x c x oh x ow (the caller's output size: PyTorch's
 *   floor or ceil rule). Window (i, j) starts at row i*sh - ph, column j*sw - pw; its sum over
 *   the in-bounds taps (exact, int32), valid = the number of those taps, pool = the window
 *   clipped to the padded input (rows up to h + ph, columns up to w + pw), and
 *   acc = sum - valid * zp, d = divisor_override if nonzero, else pool (count_include_pad) or
 *   valid. Channels below vec_channels of each image (the vector channels of PyTorch's NHWC
 *   kernel, qavg_pool2d_nhwc_kernel with QuantizeAvx2 / QuantizeAvx512):
 *     y = clamp(RNE(fl((float)acc * fl(1.0f / (float)d))) + zp);
 *   the others (avg_pool2d_out_frame, and the NHWC kernel's scalar channels):
 *     y = clamp(RNE(fl(fl((float)acc * (float)(1.0 / (double)d)) + (float)zp))),
 *   clamped to t's range. Sizes and strides >= 1, ph <= kh / 2 and pw <= kw / 2 (as PyTorch
 *   requires), kh * kw <= 2^22 (int32 sums), (oh - 1) * sh < h + ph and (ow - 1) * sw < w + pw
 *   (every window holds an input element), vec_channels <= c: else QK_ERR_ARG; zp outside t:
 *   QK_ERR_ZERO_POINT. The window sums are exact integers, so every order gives the same bits:
 *   planes at most 16 wide, one output row a vector (AVX-512); "same" windows (stride 1,
 *   k = 2 p + 1) over several planes stacked as one image, each pass one flat range; otherwise
 *   a plane by rows. AVX2 and AVX-512 loops beside the scalar twin. Needs scratch memory
 *   (QK_ERR_NOMEM).
 * All: t not 8-bit, or NULL arrays with elements to do: QK_ERR_ARG.
 */
qk_status qk_qadd(const void *a, const void *b, qk_dtype t, size_t n, float a_scale,
                  int32_t a_zp, float b_scale, int32_t b_zp, float out_scale, int32_t out_zp,
                  int relu, void *y);
/* qk_qadd_threads: qk_qadd with `threads` <= 1 on the calling thread, more splitting the
 * elements between the caller and up to threads - 1 helper threads when n >= 49152 (results do
 * not depend on the count). */
qk_status qk_qadd_threads(const void *a, const void *b, qk_dtype t, size_t n, float a_scale,
                          int32_t a_zp, float b_scale, int32_t b_zp, float out_scale,
                          int32_t out_zp, int relu, void *y, int threads);
qk_status qk_qadd_qnnpack(const uint8_t *a, const uint8_t *b, size_t n, float a_scale,
                          int32_t a_zp, float b_scale, int32_t b_zp, float out_scale,
                          int32_t out_zp, int relu, uint8_t *y);
qk_status qk_qmul(const void *a, const void *b, qk_dtype t, size_t rows, size_t cols,
                  int b_per_row, float a_scale, int32_t a_zp, float b_scale, int32_t b_zp,
                  float out_scale, int32_t out_zp, int relu, void *y);
qk_status qk_qglobal_avg_pool2d(const void *x, qk_dtype t, size_t n, size_t c, size_t hw,
                                int32_t zp, size_t vec_channels, void *y);
qk_status qk_qleaky_relu(const void *x, qk_dtype t, size_t n, float x_scale, int32_t x_zp,
                         float slope, float out_scale, int32_t out_zp, void *y);
qk_status qk_qclamp(const void *x, qk_dtype t, size_t n, int32_t lo, int32_t hi, void *y);
qk_status qk_qmax_pool2d(const void *x, qk_dtype t, size_t planes, size_t h, size_t w, size_t kh,
                         size_t kw, size_t sh, size_t sw, size_t ph, size_t pw, size_t dh,
                         size_t dw, size_t oh, size_t ow, void *y);
qk_status qk_qadaptive_avg_pool2d(const void *x, qk_dtype t, size_t planes, size_t h, size_t w,
                                  size_t oh, size_t ow, void *y);
qk_status qk_qavg_pool2d(const void *x, qk_dtype t, size_t n, size_t c, size_t h, size_t w,
                         size_t kh, size_t kw, size_t sh, size_t sw, size_t ph, size_t pw,
                         size_t oh, size_t ow, int count_include_pad, int32_t divisor_override,
                         int32_t zp, size_t vec_channels, void *y);

/* ---- section: integer transformer kernels (issue 16) ---- */
/*
 * qk_bmm: batched int8 x int8 matrix product of two activations (attention's Q K^T and P V).
 *
 *   a: batch x m x k (u8 or s8), row-major;  b: batch x n x k (QK_BMM_B_NK, as K for Q K^T) or
 *   batch x k x n (QK_BMM_B_KN, as V for P V), u8 or s8; y: batch x m x n of ep->out_type.
 *   acc[t][i][j] = sum_k (a[t][i][k] - a_zp[t]) * (b[t][j][k] - b_zp[t])      exact, int32
 *   y[t][i][j]   = epilogue(acc) with item t's parameters: ep->scale[t] (QK_REQ_FP32),
 *                  ep->multiplier[t] / ep->shift[t] (double / single round), ep->shift[t]
 *                  (QK_REQ_SHIFT_*), or the raw int32 (QK_REQ_NONE), then + zero_point, clamp
 *                  (SPEC section 4; the same output stage as qk_linear).
 * Every epilogue array and both zero-point arrays hold `batch` values, one per batch item (a
 * head: per-head parameters; repeat a value for per-tensor). ep->bias and ep->float_bias must be
 * NULL. Zero points within their type (QK_ERR_ZERO_POINT); k < 2^24 (QK_ERR_ARG).
 * Overflow: before anything is written, k * max|a - a_zp| * max|b - b_zp| (over the types'
 * whole ranges) is compared with INT32_MAX; when it is larger, the bound is taken with b's own
 * values, max|a - a_zp| * max_j sum_k |b[t][j][k] - b_zp[t]| (as qk_linear does with its
 * weights), and beyond INT32_MAX the call returns QK_ERR_OVERFLOW, unless ep->wrap (sums
 * modulo 2^32). A double-round left shift that overflows returns QK_ERR_OVERFLOW while running.
 * Paths (same bits): AVX512-VNNI (raw u8 x s8 bytes, zero points applied afterwards, exactly
 * modulo 2^32), AVX2 and portable C (int16 operands minus their zero points), as qk_linear.
 * `threads` <= 1 runs on the calling thread; results do not depend on the count.
 */
typedef enum qk_bmm_layout { QK_BMM_B_NK = 0, QK_BMM_B_KN = 1 } qk_bmm_layout;
qk_status qk_bmm(const void *a, qk_dtype a_type, const int32_t *a_zero_point, const void *b,
                 qk_dtype b_type, const int32_t *b_zero_point, qk_bmm_layout b_layout,
                 size_t batch, size_t m, size_t k, size_t n, const qk_epilogue *ep, void *y,
                 int threads);

/*
 * Integer softmax over the last axis: x is rows x cols (u8, s8 or s32), y rows x cols uint8.
 * Softmax is shift invariant, so zero points never enter: each method works on
 *   d_i = x_i - max_j x_j  (<= 0; int64)
 * and gives an integer exponent value V_i; the row is then normalized. The parameters come from
 * the float input scale S, derived once (qkernels.prepare_softmax does it; the formulas below).
 *
 * QK_SOFTMAX_IBERT (I-BERT, Kim et al. 2021, Alg. 2 i-exp over Alg. 1 i-poly, Alg. 3
 * i-softmax; the arithmetic of IntSoftmax in kssteven418/I-BERT quant_modules.py):
 *   prepared in float32 as that code does (fl = float32 rounding):
 *     x0 = floor(fl(fl(1/S) * fl(-0.6931)))                       (-ln 2 / S, < 0)
 *     b  = floor(fl(fl(1/S) * fl(0.96963238 / 0.35815147)))
 *     c  = floor(fl(fl(1/fl(S*S)) * fl(1 / 0.35815147)))          (1 <= c < 2^31)
 *     m16, e16: the 16-bit activation quantizer after the exponent (QuantAct(16), calibrated on
 *       the largest exponent value c 2^30): ratio = 32767 / (c 2^30) in double, m16 =
 *       RHAZ(mant * 2^31), e16 = 31 - exp with ratio = mant 2^exp, mant in [0.5, 1)
 *   per element:
 *     d  = max(d, 30 x0);  q = floor(d / x0) in [0, 30];  r = d - x0 q  in (x0, 0]
 *     z  = (r + b) r + c                                          (i-poly, scale 0.358 S^2)
 *     e  = max(z << (30 - q), 0)                                  (i-exp, scale 0.358 S^2 / 2^30)
 *     V  = min(RNE(e * m16 / 2^e16), 32767)                       (exact; 16-bit exponent)
 *   row: s = sum V (int64), f = floor(2^32 / s),  y_i = min(floor(V_i f / 2^24), 255)
 *   I-BERT's output_bit = 8: scale 1/256; a single dominant element would be 256 in I-BERT (a
 *   9-bit value): here it saturates at 255.
 *   Parameter ranges (QK_ERR_ARG otherwise): -2^31 <= x0 < 0, 0 <= b < 2^32, 1 <= c < 2^31,
 *   |x0| (|x0| + b) + c < 2^32, 0 <= m16, 30 <= e16 <= 126.
 *
 * QK_SOFTMAX_SOLE (E2Softmax, Wang et al., ICCAD 2023: log2-quantized exponent and approximate
 * log-based division). Steps:
 *   1. v = floor(d S 2^16) in fixed point Q16: v = (d * sole_mult) >> sole_shift (arithmetic
 *      shift), S = mant 2^ex, sole_mult = RHAZ(mant 2^30), sole_shift = 14 - ex (exact for
 *      power-of-two S).
 *   2. Log2Exp: t = v + (v >> 1) - (v >> 4)   (= 1.4375 v ~ v log2 e, shifts and adds only)
 *      k = min(-floor(t / 2^16), 15)           sole_round = 0: -floor(x log2 e) (the floor
 *                                              bracket as quoted), 4-bit k
 *      k = min(-floor(t / 2^16 + 1/2), 15)     sole_round = 1: rounded
 *      exp(d S) ~ 2^-k, V = 2^(16 - k)
 *   3. reduction: s = sum V (an exact Q16 sum, >= 2^16: the row maximum has k = 0)
 *   4. ALDivision: w = floor(log2 s) (leading one), bit = bit w-1 of s (s = 2^w (1 + f):
 *      bit = [f >= 1/2]); 1 / (1 + f) ~ C_bit with C_0 = 0.818, C_1 = 0.568, so
 *      p_i ~ C_bit 2^-(k_i + w - 16).
 *   uint8 output (qk_softmax_u8): y_i = RHU(C_bit 2^(8 - e_i)), e_i = k_i + w - 16, with the
 *   constants in 8-bit fixed point, QK_SOLE_C0 = 209 (0.8164), QK_SOLE_C1 = 145 (0.5664):
 *   y_i = (C V_i + 2^(w-1)) >> w (the same bytes as rounding 0.818 / 0.568 times 2^(8 - e)).
 *   log2 output (qk_softmax_sole_log2): exponent[i] = e_i (uint8) and row_bit[r] = bit:
 *   p_i = C_bit 2^-e_i.
 *   Sources: the paper's own text could not be retrieved; Log2Exp (the shift-add, 4 bits) is as
 *   a review of the paper quotes it, the ALDivision (leading one, the bit below it choosing
 *   0.818 or 0.568) as a public C model of E2Softmax has it (qkernels/transformer.py names both).
 *   Check these steps against the paper's Algorithm 1 before relying on SOLE-exact goldens.
 *   Ranges: 0 <= sole_mult <= 2^30, 0 <= sole_shift <= 62, sole_round in {0, 1}.
 *
 * QK_SOFTMAX_LUT (8-bit input only): V = lut[d] (prepared: lut[d] = RHAZ(2^15 exp(-d S)),
 *   d = 0..255, lut[0] = 32768), then I-BERT's normalization with rounding:
 *   y_i = min(floor((V_i f + 2^23) / 2^24), 255). lut values <= 32768, lut[0] > 0.
 *
 * Output scale 1/256 (uint8, zero point 0) for every method: I-BERT's output_bit 8 and
 * TFLite's uint8 softmax; a power of two, so P V's requantization is a shift, and 1.0 is the only
 * value lost (it saturates at 255/256).
 * 8-bit input: the method's arithmetic runs once for each of the 256 possible d (the same
 * integers), and the row loops (max, look-up and sum, normalization) use AVX-512 (F+BW) or
 * AVX2 with a scalar twin, same bits. int32 input, 16 (AVX-512) or 8 (AVX2) elements at a
 * time, same bits: I-BERT's i-exp in int32 lanes with its final rounding from float products
 * within a proven error bound, lanes that may lie across a tie redone in exact integers (for
 * parameters with 30 |x0| < 2^31, b >= |x0|, |x0| (|x0| + b) < 2^31, |x0| < 270000,
 * 31 <= e16 <= 120, m16 >= 1: every prepared set; others: 64-bit lanes, or for a call of at
 * least 2 (30 |x0| + 1) elements with 30 |x0| < 2^20 the i-exp once per difference and
 * gathered, or scalar C); SOLE's k
 * from 15 thresholds of max - x found once a call (k never decreases as x falls). cols <= 2^24
 * (QK_ERR_ARG); rows * cols == 0 is a no-op.
 * qk_softmax_table(p, value, k): the 256 values V[d] (and SOLE's k[d], zeros otherwise) the
 * kernel uses for 8-bit input, for test benches.
 */
typedef enum qk_softmax_method {
    QK_SOFTMAX_IBERT = 0,
    QK_SOFTMAX_SOLE = 1,
    QK_SOFTMAX_LUT = 2
} qk_softmax_method;
#define QK_SOLE_C0 209 /* 0.818 in 8-bit fixed point: 1 / (1 + f), f < 1/2 */
#define QK_SOLE_C1 145 /* 0.568: f >= 1/2 */
typedef struct qk_softmax_params {
    int32_t method;     /* qk_softmax_method */
    int32_t m16, e16;   /* IBERT */
    int32_t sole_mult, sole_shift, sole_round; /* SOLE */
    int64_t x0, b, c;   /* IBERT */
    uint32_t lut[256];  /* LUT */
} qk_softmax_params;
qk_status qk_softmax_u8(const qk_softmax_params *p, const void *x, qk_dtype x_type, size_t rows,
                        size_t cols, uint8_t *y);
qk_status qk_softmax_sole_log2(const qk_softmax_params *p, const void *x, qk_dtype x_type,
                               size_t rows, size_t cols, uint8_t *exponent, uint8_t *row_bit);
qk_status qk_softmax_table(const qk_softmax_params *p, uint32_t *value, uint8_t *k);

/*
 * qk_softmax_exp2(p, x, x_type, rows, cols, y): the row's exponentials on the step 1/255 of the
 * row maximum's (which is 255), rounded, integer-only, no division: y_i = RHU(255 exp((x_i - max)
 * S)) up to the table's rounding. The row's probabilities are y_i / sum_j y_j: the consumer
 * divides by the integer row sum (qkernels' attention: P V / sum_j P, exact), so the 8 bits of
 * y resolve the row's largest probabilities by 1/255 of the row maximum instead of 1/256 of 1.
 * RHU(v / 2^e) = floor((v + 2^(e-1)) / 2^e).
 *   prepared (qkernels.prepare_softmax(method="exp2", output="rowmax")), S the input scale:
 *     mult / 2^shift ~ S log2(e) 2^10 (mult = RHAZ(mant 2^31), shift = 31 - exp),
 *     cap = ceil(17 2^(10 + shift) / mult)  (d >= cap: exp below 2^-17, y = 0),
 *     table[j] = RNE(2^15 2^(-j / 32)), table[32 + j] = RNE(2^15 2^(-j / 1024)), j = 0..31
 *       (QK_EXP2_TABLE = 64 values; QK_EXP2_FRAC_BITS = 10)
 *   per element, d = max_j x_j - x_i (int64, >= 0):
 *     y = 0 if d >= cap; else z = RHU(d mult / 2^shift), k = z >> 10, f = z mod 2^10,
 *     e = RHU(table[f >> 5] table[32 + (f mod 32)] / 2^15)                 (2^15 2^(-f / 2^10))
 *     y = 0 if k > 16, else y = RHU(255 e / 2^(15 + k))                  (255 at the maximum)
 *   Ranges (QK_ERR_*): mult >= 0, 1 <= shift <= 62, cap >= 1, RHU((cap - 1) mult / 2^shift) <
 *   2^31, 0 <= table[i] <= 32768. int32 input: AVX-512 rows (the tables in registers, read by
 *   permutes) / AVX2 rows (gathers)
 *   with a scalar twin, the same bytes; 8-bit input: the 256 values of d once a call.
 */
#define QK_EXP2_FRAC_BITS 10
#define QK_EXP2_TABLE 64
typedef struct qk_softmax_exp2_params {
    int32_t mult, shift, cap;
    const int32_t *table; /* QK_EXP2_TABLE values */
} qk_softmax_exp2_params;
qk_status qk_softmax_exp2(const qk_softmax_exp2_params *p, const void *x, qk_dtype x_type,
                          size_t rows, size_t cols, uint8_t *y);

/*
 * Integer GELU.
 *
 * qk_gelu_ibert(p, x, x_type, x_zp, n, y, y_type, y_zp, y_min, y_max): I-BERT's i-GELU (Kim et
 * al. 2021, Alg. 2 with the i-erf polynomial; IntGELU in quant_modules.py) on n elements; element
 * i uses channel i % p->channels of the parameter arrays (p->channels == 1: per tensor; per-channel
 * input scales, e.g. a Linear's int32 accumulators with per-channel weights, along the last axis).
 *   prepared in float32 as IntGELU does (S the input scale, fl = float32):
 *     S' = fl(S / fl(1.4142));  b = floor(fl(fl(1/S') * fl(-1.769)))            (< 0)
 *     c = floor(fl(fl(1/fl(S'*S')) * fl(1 / -0.2888)))                         (< 0)
 *     sig = fl(fl(fl(S'*S') * fl(-0.2888)) * 2^14);  shift = floor(fl(1 / sig)) (< 0)
 *     I-BERT's output scale S sig / 2 is negative; here y has the positive scale S |sig| / 2
 *     (g below is I-BERT's integer negated), requantized as I-BERT's QuantAct (fixedpoint_mul):
 *     ratio = (S |sig| / 2) / out_scale in double, multiplier = RHAZ(mant 2^31), rshift =
 *     31 - exp (ratio = mant 2^exp).
 *   per element, x = input - x_zp (int64):
 *     a = min(|x|, -b);  L = sign(x) ((a + b)^2 + c);  L = floor(L / 2^14)     (i-erf, Alg. 2)
 *     g = -x (L + shift)                                                        (i-GELU)
 *     y = clamp(RNE(g * multiplier / 2^rshift) + y_zp, y_min, y_max)            (exact, 96-bit)
 *   y_type u8, s8 or s32 (y_min <= y_zp <= y_max within it). Ranges (QK_ERR_ARG): -2^30 < b <= 0,
 *   -2^60 < c <= 0, |shift| < 2^47, multiplier >= 0, 0 <= rshift <= 126, and
 *   max|x| (max((-b)^2, -c) / 2^14 + |shift| + 2) < 2^62 over the input type's range (for int32
 *   input this needs S above about 1e-6). n a multiple of channels.
 *   8-bit input with one channel (and n >= 512) evaluates the 256 input bytes once and looks the
 *   results up (the same bytes). int32 input with zero point 0, same bits: to 8-bit output 16
 *   (AVX-512) or 8 (AVX2) elements at a time, the i-erf in int32 lanes and the requantization
 *   from float products within a proven error bound, lanes within 2^-12 of a tie redone in
 *   exact integers (when every channel has -b <= 65535 and |floor(c / 2^14)| + |shift| + 2^18
 *   < 2^24 - 1: every prepared set with x_scale >= 3.8e-5); to int32 output (or other
 *   parameters) 8 or 4 int64 lanes when every rshift is in [32, 96), else scalar C.
 * qk_gelu_lut(table, x, n, y): y[i] = table[byte x[i]] (u8 or s8 bytes; the table holds the
 *   output bytes, indexed by the input's byte: qkernels.prepare_gelu(method="lut") fills
 *   table[q] = clamp(RNE(gelu((q - x_zp) x_scale) / out_scale) + out_zp) with the exact erf GELU
 *   in double). AVX-512 VBMI / AVX2 / scalar, same bytes.
 */
typedef struct qk_gelu_ibert_params {
    size_t channels;              /* >= 1; each array below holds `channels` values */
    const int64_t *b, *c, *shift;
    const int32_t *multiplier, *rshift;
} qk_gelu_ibert_params;
qk_status qk_gelu_ibert(const qk_gelu_ibert_params *p, const void *x, qk_dtype x_type,
                        int32_t x_zero_point, size_t n, void *y, qk_dtype y_type,
                        int32_t y_zero_point, int32_t y_min, int32_t y_max);
qk_status qk_gelu_lut(const uint8_t *table, const void *x, size_t n, void *y);

/*
 * Per-row (per-token) dynamic 8-bit quantization of an integer tensor (qkernels.transformer's
 * token rows), integer only. d is rows x cols (row-major, cols >= 1), int16 or int32.
 *
 * qk_row_range_<in>(d, rows, cols, lo, j, e): per row lo = min(0, min_c d), hi = max(0, max_c d),
 *   m = max(1, hi - lo) (int64), e = max(0, bitlen(m) - 1 - QK_ROW_MANT_BITS), j = m >> e (the
 *   range's top 5 bits, 1..31): the row's bound U = (j + 1) 2^e > hi - lo. lo int64, j and e
 *   int32, one each per row.
 * qk_row_quantize_<in>(d, rows, cols, x, z, j, e, threads): with (lo, j, e) as above,
 *   (M_j, S_j) = qk_quantize_multiplier(255 / (j + 1)) and s = S_j - e (in [-24, 7]):
 *   z = clamp(R(-lo), 0, 255), x = clamp(R(d) + z, 0, 255) (uint8, d's shape), with
 *   R(v) = (v M_j + 2^(30 - s)) >> (31 - s) exact in int64 (single rounding): x ~= round(d 255 /
 *   U) + z. z, j, e int32, one each per row. AVX-512 / AVX2 / scalar, same integers.
 * qk_row_rescale(acc, rows, cols, z, wsum, j, e, mt, st, bias, y, threads): a Linear's int32 sums
 *   over row_quantize's x brought back to units of d: per row r and column c,
 *   a = acc - z_r wsum_c (int64; wsum NULL: a = acc and z is not read; an a outside int32
 *   returns QK_ERR_OVERFLOW, y then unspecified), M = mt[j_r], s = st[j_r] + e_r,
 *   v = clamp((a M + 2^(30 - s)) >> (31 - s)) to int32, y = clamp(v + bias_c) to int32 (bias
 *   NULL: y = v). mt, st: 32 entries (index j; mt >= 0, QK_ERR_MULTIPLIER); j_r in 1..31 and
 *   e_r in 0..62 (QK_ERR_ARG), s in [-31, 30] (QK_ERR_SHIFT), z_r in 0..255
 *   (QK_ERR_ZERO_POINT), all checked before anything is written. qkernels.transformer's
 *   row_rescale_params(p) fills mt, st with qk_quantize_multiplier((j + 1) / 255 / 2^p).
 * qk_row_rescale_requantize(acc, rows, cols, z, wsum, j, e, mt, st, bias, om, os, ozp, out_type,
 *   y, threads): qk_row_rescale's y (call it v), then the Linear's output stage in the same pass
 *   (per column c, as qk_requantize_s32_<out>_single): y = clamp(((v om_c + 2^(30 - os_c)) >>
 *   (31 - os_c)) + ozp) to out_type (QK_DT_U8 or QK_DT_S8, else QK_ERR_ARG); om >= 0
 *   (QK_ERR_MULTIPLIER), os in [-31, 30] (QK_ERR_SHIFT), ozp within out_type
 *   (QK_ERR_ZERO_POINT), checked before anything is written.
 * threads: rows split over up to that many threads (same integers).
 *
 * qk_row_renorm(acc, rows, cols, p, n, y, threads): the attention's P V renormalized by the row
 *   sums of the integer probabilities (qkernels.torch.blocks.renorm_floor): acc (int32, rows x
 *   cols: the int32 P V, one row per row of p), p (uint8, rows x n), per row r
 *   rs = sum_j p[r, j] (int64) and y[r, c] = floor((2^9 acc[r, c] + rs) / (2 rs)) (int32, the
 *   exact floor division: round(2^8 acc / rs) half up). A row with rs = 0 returns QK_ERR_ARG (a
 *   softmax row never sums to 0: its max maps to >= 1); a y outside int32 QK_ERR_OVERFLOW (y
 *   then unspecified); cols, n >= 1 (n < 2^48), else QK_ERR_ARG. AVX-512 / AVX2 / scalar (IEEE
 *   double division then floor, exact for rs < 2^40; int64 division beyond), same integers;
 *   threads split the rows.
 */
/*
 * The residual add of the integer transformer blocks (qkernels.torch.blocks: a Linear's sums
 * plus the residual, brought to a LayerNorm's input), in one pass:
 * qk_residual_add(acc, r, r_type, r_zp, rows, cols, ma, sa, mr, sr, so, out_zp, out_type, y,
 *   threads): per row and column c (the parameter arrays hold cols values each),
 *   a = clamp32((acc M_a + 2^(30 - s_a)) >> (31 - s_a))          (M_a = ma[c], s_a = sa[c])
 *   b = clamp32(((r - r_zp) M_r + 2^(30 - s_r)) >> (31 - s_r))   (mr[c], sr[c])
 *   t = clamp32(a + b)
 *   y = clamp(RHU(t, so[c]) + out_zp) to out_type, RHU(t, k) = (t + 2^(k-1)) >> k for k > 0, t
 *   for k = 0, t 2^-k (exact) for k < 0
 *   (each requantization: qk_requantize_s32_s32_single; the last: _shift_half_up). acc int32; r
 *   and y uint8 / int8 / int16 (QK_DT_U8 / _S8 / _S16; QK_ERR_ARG otherwise); r_zp and out_zp
 *   within their types (QK_ERR_ZERO_POINT); ma, mr >= 0 (QK_ERR_MULTIPLIER); sa, sr in [-31, 30],
 *   so in [-31, 31] (QK_ERR_SHIFT); all checked before anything is written. AVX-512 / AVX2 (int64
 *   lanes; when every so >= 0) / scalar, same integers; threads split the rows.
 */
qk_status qk_residual_add(const int32_t *acc, const void *r, qk_dtype r_type, int32_t r_zero_point,
                          size_t rows, size_t cols, const int32_t *acc_multiplier,
                          const int32_t *acc_shift, const int32_t *r_multiplier,
                          const int32_t *r_shift, const int32_t *out_shift,
                          int32_t out_zero_point, qk_dtype out_type, void *y, int threads);
#define QK_ROW_MANT_BITS 4
qk_status qk_row_range_s16(const int16_t *d, size_t rows, size_t cols, int64_t *lo, int32_t *j,
                           int32_t *e);
qk_status qk_row_range_s32(const int32_t *d, size_t rows, size_t cols, int64_t *lo, int32_t *j,
                           int32_t *e);
qk_status qk_row_quantize_s16(const int16_t *d, size_t rows, size_t cols, uint8_t *x, int32_t *z,
                              int32_t *j, int32_t *e, int threads);
qk_status qk_row_quantize_s32(const int32_t *d, size_t rows, size_t cols, uint8_t *x, int32_t *z,
                              int32_t *j, int32_t *e, int threads);
qk_status qk_row_rescale(const int32_t *acc, size_t rows, size_t cols, const int32_t *z,
                         const int32_t *wsum, const int32_t *j, const int32_t *e,
                         const int32_t *mt, const int32_t *st, const int32_t *bias, int32_t *y,
                         int threads);
qk_status qk_row_rescale_requantize(const int32_t *acc, size_t rows, size_t cols,
                                    const int32_t *z, const int32_t *wsum, const int32_t *j,
                                    const int32_t *e, const int32_t *mt, const int32_t *st,
                                    const int32_t *bias, const int32_t *out_multiplier,
                                    const int32_t *out_shift, int32_t out_zero_point,
                                    qk_dtype out_type, void *y, int threads);
qk_status qk_row_renorm(const int32_t *acc, size_t rows, size_t cols, const uint8_t *p, size_t n,
                        int32_t *y, int threads);
/*
 * qk_linear_rows(w, x, m, rs, y, threads): a token-rows Linear in one operator, the row rescale
 * fused into the GEMM's output stage: the same y as
 *   qk_linear(w, x, QK_DT_U8, m, 0, {QK_REQ_NONE, QK_DT_S32, no bias}, acc, threads), then
 *   qk_row_rescale(acc, m, n, rs->z, rs->wsum, rs->j, rs->e, rs->mt, rs->st, rs->bias, y) (or,
 *   with rs->out_multiplier, qk_row_rescale_requantize(..., rs->out_multiplier, rs->out_shift,
 *   rs->out_zero_point, rs->out_type, y)),
 * without the m x n int32 sums in memory: each block of rows is rescaled while the tiles its GEMM
 * has just written are in cache. x: uint8 (m x k, row_quantize's x, zero point 0). rs->out_type:
 * QK_DT_S32 without the output stage, QK_DT_U8 / QK_DT_S8 with it. The same checks and codes as
 * the pair, all before anything is written (QK_ERR_OVERFLOW for an acc - z wsum outside int32:
 * y then unspecified). Same integers for any thread count and SIMD level.
 */
typedef struct qk_row_stage {
    const int32_t *z, *j, *e;        /* per row of x: zero point (NULL with wsum), code, exponent */
    const int32_t *mt, *st;          /* 32 entries: row_rescale_params */
    const int32_t *wsum, *bias;      /* per output column, or NULL */
    const int32_t *out_multiplier, *out_shift; /* per output column, or NULL: int32 out */
    int32_t out_zero_point;
    qk_dtype out_type;
} qk_row_stage;
qk_status qk_linear_rows(const qk_packed_weights *w, const uint8_t *x, size_t m,
                         const qk_row_stage *rs, void *y, int threads);
/*
 * qk_gelu_interp(p, x, n, y, y_type, y_zp, y_min, y_max): GELU of int32 input (a Linear's int32
 * sums, zero point 0) by piecewise-quadratic segments, integer-only; element i uses channel
 * i % p->channels (per-channel input and output scales along the last axis). gelu(x) = max(x, 0)
 * - h(|x|) with h(t) = t Q(t) = t erfc(t / sqrt 2) / 2 (0 <= h <= 0.17, below 4e-4 / 2^16 from
 * t = 6). RHU(v / 2^e) = floor((v + 2^(e-1)) / 2^e) (round half up; int64, arithmetic shift).
 *   prepared (qkernels.prepare_gelu(method="interp")), S the input scale, So the output scale:
 *     in_multiplier / 2^in_rshift ~ S 2^16, multiplier / 2^rshift ~ 2^-16 / So
 *       (M = RHAZ(mant 2^31), rshift = 31 - exp with ratio = mant 2^exp)
 *     table = A[96], B[96], C[96] (QK_GELU_INTERP_SEGMENTS = 96 segments of 1/16 on [0, 6)),
 *       t_i = i / 16, exact erf in double, RNE: A[i] = 2^16 h(t_i), B[i] = 2^16 (h(t_i+1) -
 *       h(t_i)), C[i] = 2^16 (2 h(t_i) + 2 h(t_i+1) - 4 h(t_i + 1/32)) (the quadratic through the
 *       segment's ends and middle)
 *   per element:
 *     u = clamp(RHU(x in_multiplier / 2^in_rshift), -(2^31 - 1), 2^31 - 1)   (x on the grid 2^-16)
 *     t = |u|;  h = 0 if t >= 6 2^16, else with i = t >> 12, f = t mod 2^12,
 *       w = floor(f (f - 2^12) / 2^12)  (in [-2^10, 0]),
 *       h = A[i] + RHU((B[i] f + C[i] w) / 2^12)
 *     g = max(u, 0) - h
 *     y = clamp(RHU(g multiplier / 2^rshift) + y_zp, y_min, y_max)
 *   Error of g 2^-16 against GELU(u 2^-16): below 4 2^-16 (the quadratic's error 0.78 / 16^3 /
 *   (9 sqrt 3) < 2^-16, the tables' and the two roundings). Ranges (QK_ERR_*): multipliers >= 0,
 *   shifts in [1, 62], |A| < 2^17, |B| < 2^13, |C| < 2^12; y_type u8, s8 or s32 with y_min <=
 *   y_zp <= y_max in it; n a multiple of channels. AVX-512 (16 lanes, the tables in registers
 *   read by permutes) / AVX2 (8 lanes, gathers; the 64-bit arithmetic shift as a biased logical
 *   one) / scalar C, the same integers.
 */
#define QK_GELU_INTERP_GRID_BITS 16
#define QK_GELU_INTERP_SEGMENT_BITS 12
#define QK_GELU_INTERP_SEGMENTS 96
#define QK_GELU_INTERP_ENTRIES (3 * QK_GELU_INTERP_SEGMENTS)
typedef struct qk_gelu_interp_params {
    size_t channels;                      /* >= 1; each array below holds `channels` values */
    const int32_t *in_multiplier, *in_rshift, *multiplier, *rshift;
    const int32_t *table;                 /* QK_GELU_INTERP_ENTRIES values: A, B, C */
} qk_gelu_interp_params;
qk_status qk_gelu_interp(const qk_gelu_interp_params *p, const int32_t *x, size_t n, void *y,
                         qk_dtype y_type, int32_t y_zero_point, int32_t y_min, int32_t y_max);

#ifdef __cplusplus
}
#endif

#endif /* QKERNELS_H */
