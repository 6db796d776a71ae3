/* quantize.c -- float -> integer quantization (three flavours), dequantization, fake quantization.
 *
 * Every kernel has a portable scalar loop; the float32 -> 8/16-bit quantizers and the
 * 8/16-bit -> float32 dequantizers also have AVX2 loops, chosen at run time. Both give the same
 * bits: the scalar loop evaluates the same float32 operation (x * inv or x / scale), then clamps
 * and rounds in double, which is exact because the bounds are integers.
 */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* mincore */
#endif
#include "core/core.h"

#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#if QK_X86
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------------------------------- */
/* The value t = x/scale (before rounding), per flavour and input type                        */
/* ---------------------------------------------------------------------------------------- */
/* torch (internal name; the public flavour is pt2e): multiply by the float32 reciprocal, round,
 * then add the zero point: PyTorch's decomposed quantize_per_tensor (PT2E / executorch) and the
 * first step of fake quantization. */
#define QK__PREP_torch float inv = 1.0f / scale;
#define QK__T_torch_f32(v) ((double)((v) * inv))
#define QK__T_torch_f64(v) ((v) * (double)inv)
#define QK__R_torch(t) rint(t)
/* fbgemm: x * inv + zero_point fused into one float rounding (FBGEMM Quantize<T, LEGACY=true>
 * AVX2 `_mm256_fmadd_ps`, i.e. torch.quantize_per_tensor for quint8/qint8); the zero point is
 * inside the rounded value, so the clamp bounds are qmin/qmax themselves. */
#define QK__PREP_fbgemm float inv = 1.0f / scale; const float zpf = (float)zp; (void)zpf;
#define QK__T_fbgemm_f32(v) ((double)fmaf((v), inv, zpf))
#define QK__T_fbgemm_f64(v) (fma((v), (double)inv, (double)zp))
#define QK__R_fbgemm(t) rint(t)
#define QK__FUSED_fbgemm 1
/* fbgemm_scalar: fl(fl(x * inv) + zero_point), then RNE: FBGEMM's scalar Quantize<T, LEGACY>
 * (two float roundings), which torch.quantize_per_tensor uses for qint32. */
#define QK__PREP_fbgemm_scalar QK__PREP_fbgemm
#define QK__T_fbgemm_scalar_f32(v) ((double)((v) * inv + zpf))
#define QK__T_fbgemm_scalar_f64(v) ((v) * (double)inv + (double)zp)
#define QK__R_fbgemm_scalar(t) rint(t)
#define QK__FUSED_fbgemm_scalar 1
#define QK__FUSED_torch 0
#define QK__PREP_pt2e QK__PREP_torch
#define QK__T_pt2e_f32 QK__T_torch_f32
#define QK__T_pt2e_f64 QK__T_torch_f64
#define QK__R_pt2e QK__R_torch
#define QK__FUSED_pt2e 0
#define QK__FUSED_onnx 0
#define QK__FUSED_tflite 0
/* flavours that multiply by fl(1/scale): their scale must keep that reciprocal finite */
#define QK__RECIP_fbgemm 1
#define QK__RECIP_fbgemm_scalar 1
#define QK__RECIP_pt2e 1
#define QK__RECIP_onnx 0
#define QK__RECIP_tflite 0
/* onnx: true division (MLAS QuantizeLinear). */
#define QK__PREP_onnx
#define QK__T_onnx_f32(v) ((double)((v) / scale))
#define QK__T_onnx_f64(v) ((v) / (double)scale)
#define QK__R_onnx(t) rint(t)
/* tflite: true division, round half away from zero (reference AffineQuantize). */
#define QK__PREP_tflite
#define QK__T_tflite_f32(v) ((double)((v) / scale))
#define QK__T_tflite_f64(v) ((v) / (double)scale)
#define QK__R_tflite(t) qk__rhaz(t)

/* for i in [0, n): v = x[i]; a NaN returns QK_ERR_NAN with *bad_index = i (when bad_index is not
 * NULL), any other v runs the statements given. */
#define QK__FOR_EACH_NUMBER(INT, ...)                                                          \
    for (size_t i = 0; i < n; i++) {                                                           \
        const INT v = x[i];                                                                    \
        if (v != v) {                                                                          \
            if (bad_index) *bad_index = i;                                                     \
            return QK_ERR_NAN;                                                                 \
        }                                                                                      \
        __VA_ARGS__                                                                            \
    }

/* Scalar loop: x[0..n) -> y, stops at the first NaN. lo/hi = qmin - zp, qmax - zp. */
#define QK__QUANTIZE_SCALAR(IN, INT, OUT, OUTT, FLAV)                                          \
    static qk_status qk__quantize_##IN##_##OUT##_##FLAV##_scalar(                              \
        const INT *x, size_t n, float scale, int32_t zp, int32_t qmin, int32_t qmax, OUTT *y,  \
        size_t *bad_index) {                                                                   \
        QK__PREP_##FLAV const int32_t off = QK__FUSED_##FLAV ? 0 : zp;                         \
        const double lo = (double)qmin - off, hi = (double)qmax - off;                         \
        QK__FOR_EACH_NUMBER(INT, const double t = qk__clampd(QK__T_##FLAV##_##IN(v), lo, hi);  \
                            y[i] = (OUTT)((int64_t)QK__R_##FLAV(t) + off);)                    \
        return QK_OK;                                                                          \
    }

#define QK__QUANTIZE_SCALAR_FLAVOURS(IN, INT, OUT, OUTT) \
    QK__FOR_EACH_FLAVOUR(QK__QUANTIZE_SCALAR, IN, INT, OUT, OUTT)
#define QK__QUANTIZE_SCALAR_F32(OUT, OUTT, TMIN, TMAX) QK__QUANTIZE_SCALAR_FLAVOURS(f32, float, OUT, OUTT)
#define QK__QUANTIZE_SCALAR_F64(OUT, OUTT, TMIN, TMAX) QK__QUANTIZE_SCALAR_FLAVOURS(f64, double, OUT, OUTT)
QK__FOR_EACH_OUT(QK__QUANTIZE_SCALAR_F32)
QK__FOR_EACH_OUT(QK__QUANTIZE_SCALAR_F64)

/* ---------------------------------------------------------------------------------------- */
/* SIMD loops                                                                                 */
/* ---------------------------------------------------------------------------------------- */
/* Non-temporal stores: used when a call reads and writes QK__STREAM_BYTES or more (more than
 * the caches hold: the output would be evicted before it is read again) and the output pages
 * are resident (below). */
#define QK__STREAM_BYTES ((size_t)48 << 20)

/* 1 when the page holding p has been touched before (or when this cannot be asked). Non-temporal
 * stores are chosen only then: a new large NumPy array is fresh memory whose pages fault on first
 * touch, and the kernel zeroes each page then, which leaves it in the caches, where ordinary
 * stores are faster (measured on Zen 4 with 64 MB outputs: 7 ms against 9 ms, while into a
 * reused output non-temporal stores take 2.5 ms against 3.0 ms). One mincore call, for calls
 * of QK__STREAM_BYTES or more only. */
static inline int qk__page_resident(const void *p) {
#if defined(__linux__)
    const long pg = sysconf(_SC_PAGESIZE);
    unsigned char v = 1;
    if (pg <= 0 || mincore((void *)((uintptr_t)p & ~((uintptr_t)pg - 1)), 1, &v) != 0) return 1;
    return v & 1;
#else
    (void)p;
    return 1;
#endif
}

/* Non-temporal stores for a call over n elements of in_size bytes in and out_size bytes out (to
 * y): big enough, and y's pages resident (asked of the page in the middle of the output). */
static inline int qk__stream_ok(const void *y, size_t n, size_t in_size, size_t out_size) {
    return n >= 64 && n * (in_size + out_size) >= QK__STREAM_BYTES &&
           qk__page_resident((const char *)y + n / 2 * out_size);
}

/* Elements before y + i is `align`-byte aligned (at most n). */
static inline size_t qk__head_to_align(const void *y, size_t elem, size_t align, size_t n) {
    const size_t mis = (size_t)((uintptr_t)y % align);
    if (mis == 0) return 0;
    if (mis % elem != 0) return n; /* cannot be aligned: all scalar (not for valid C pointers) */
    const size_t head = (align - mis) / elem;
    return head < n ? head : n;
}

#if QK_X86
enum { QK__FL_TORCH = 0, QK__FL_ONNX = 1, QK__FL_TFLITE = 2, QK__FL_FBGEMM = 3, QK__FL_FBGEMM_SCALAR = 4 };

/* RHAZ of float32 lanes holding integers' neighbours (the tflite flavour): truncate, then step
 * away from zero when the dropped fraction is >= 0.5. */
QK_TARGET_AVX2 static QK_ALWAYS_INLINE __m256 qk__rhaz_avx2(__m256 t) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 tr = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(t, tr));
    const __m256 away = _mm256_or_ps(_mm256_and_ps(t, sign), _mm256_set1_ps(1.0f));
    const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), away);
    return _mm256_add_ps(tr, step);
}

/* The pieces written once for both ISAs (elementwise/quantize_isa.h): qk__q_lanes_<isa>, the
 * dequantize loops qk__dequantize_<isa>. */
#define QK_TWINS_TEMPLATE "elementwise/quantize_isa.h"
#include "elementwise/simd_twins.h"

/* AVX2: float32 -> u8 / s8 / u16 / s16. kind: 0 = u8, 1 = s8, 2 = u16, 3 = s16. Returns the number of elements done before a block
 * that holds a NaN (or n rounded down to the block size). */
QK_TARGET_AVX2 static size_t qk__quantize_f32_avx2(const float *x, size_t n, float scale,
                                                   int32_t zp, int32_t qmin, int32_t qmax,
                                                   void *yv, int flav, int kind) {
    const int fused = flav == QK__FL_FBGEMM || flav == QK__FL_FBGEMM_SCALAR;
    const __m256 k = _mm256_set1_ps(flav == QK__FL_TORCH || fused ? 1.0f / scale : scale);
    const __m256 zpf = _mm256_set1_ps((float)zp);
    const int32_t off = fused ? 0 : zp;
    const __m256 lo = _mm256_set1_ps((float)(qmin - off)), hi = _mm256_set1_ps((float)(qmax - off));
    const __m256i vzp = _mm256_set1_epi32(off);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t i = 0;
    if (kind <= 1) {
        uint8_t *y = (uint8_t *)yv;
        for (; i + 32 <= n; i += 32) {
            const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
            const __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
            /* one unordered compare tests two vectors: true where either lane is NaN */
            const __m256 nan = _mm256_or_ps(_mm256_cmp_ps(x0, x1, _CMP_UNORD_Q),
                                            _mm256_cmp_ps(x2, x3, _CMP_UNORD_Q));
            if (_mm256_movemask_ps(nan)) return i;
            __m256i a = qk__q_lanes_avx2(x0, k, zpf, lo, hi, flav), b = qk__q_lanes_avx2(x1, k, zpf, lo, hi, flav);
            __m256i c = qk__q_lanes_avx2(x2, k, zpf, lo, hi, flav), d = qk__q_lanes_avx2(x3, k, zpf, lo, hi, flav);
            if (!fused) { /* the fused flavours round with the zero point already in */
                a = _mm256_add_epi32(a, vzp);
                b = _mm256_add_epi32(b, vzp);
                c = _mm256_add_epi32(c, vzp);
                d = _mm256_add_epi32(d, vzp);
            }
            const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
            __m256i r = kind == 0 ? _mm256_packus_epi16(ab, cd) : _mm256_packs_epi16(ab, cd);
            r = _mm256_permutevar8x32_epi32(r, perm);
            _mm256_storeu_si256((__m256i *)(y + i), r);
        }
    } else {
        uint16_t *y = (uint16_t *)yv;
        for (; i + 16 <= n; i += 16) {
            const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
            if (_mm256_movemask_ps(_mm256_cmp_ps(x0, x1, _CMP_UNORD_Q))) return i;
            __m256i a = _mm256_add_epi32(qk__q_lanes_avx2(x0, k, zpf, lo, hi, flav), vzp);
            __m256i b = _mm256_add_epi32(qk__q_lanes_avx2(x1, k, zpf, lo, hi, flav), vzp);
            __m256i r = kind == 2 ? _mm256_packus_epi32(a, b) : _mm256_packs_epi32(a, b);
            r = _mm256_permute4x64_epi64(r, 0xD8);
            _mm256_storeu_si256((__m256i *)(y + i), r);
        }
    }
    return i;
}

/* AVX-512: float32 -> u8 / s8 for the round-half-even flavours (all but tflite), 64 elements
 * an iteration; the same operations as the AVX2 loop on 16 lanes. The rounded values are already
 * inside [qmin - off, qmax - off], so the int16 / 8-bit saturating packs are exact. Written without
 * arrays of vectors (gcc -O2 keeps those in memory). */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE size_t qk__quantize_8bit_avx512_loop(const float *x, size_t n,
                                                                    float scale, int32_t zp,
                                                                    int32_t qmin, int32_t qmax,
                                                                    uint8_t *y, int flav,
                                                                    int is_signed, int stream) {
    const int fused = flav == QK__FL_FBGEMM || flav == QK__FL_FBGEMM_SCALAR;
    const __m512 k = _mm512_set1_ps(flav == QK__FL_TORCH || fused ? 1.0f / scale : scale);
    const __m512 zpf = _mm512_set1_ps((float)zp);
    const int32_t off = fused ? 0 : zp;
    const __m512 lo = _mm512_set1_ps((float)(qmin - off)), hi = _mm512_set1_ps((float)(qmax - off));
    const __m512i off16 = _mm512_set1_epi16((int16_t)off);
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    size_t i = 0;
    /* streaming: the elements before the first 64-byte boundary of y by a block whose store is
     * masked to them, then aligned non-temporal stores (n >= 64 here) */
    const size_t head = stream ? qk__head_to_align(y, 1, 64, n) : 0;
    for (int first = head > 0; i + 64 <= n; i += 64) {
        const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
        const __m512 x2 = _mm512_loadu_ps(x + i + 32), x3 = _mm512_loadu_ps(x + i + 48);
        if (_mm512_cmp_ps_mask(x0, x1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x2, x3, _CMP_UNORD_Q))
            break;
        const __m512i v0 = qk__q_lanes_avx512(x0, k, zpf, lo, hi, flav);
        const __m512i v1 = qk__q_lanes_avx512(x1, k, zpf, lo, hi, flav);
        const __m512i v2 = qk__q_lanes_avx512(x2, k, zpf, lo, hi, flav);
        const __m512i v3 = qk__q_lanes_avx512(x3, k, zpf, lo, hi, flav);
        __m512i ab = _mm512_packs_epi32(v0, v1), cd = _mm512_packs_epi32(v2, v3);
        if (!fused) {
            ab = _mm512_add_epi16(ab, off16);
            cd = _mm512_add_epi16(cd, off16);
        }
        const __m512i r = _mm512_permutexvar_epi32(
            perm, is_signed ? _mm512_packs_epi16(ab, cd) : _mm512_packus_epi16(ab, cd));
        if (!stream) {
            _mm512_storeu_si512((void *)(y + i), r);
        } else if (first) {
            _mm512_mask_storeu_epi8((void *)y, ((__mmask64)1 << head) - 1, r);
            i = head - 64; /* the loop goes on at y + head, aligned */
            first = 0;
        } else {
            _mm512_stream_si512((void *)(y + i), r);
        }
    }
    if (stream) _mm_sfence();
    return i;
}

QK_TARGET_AVX512 static size_t qk__quantize_f32_8bit_avx512(const float *x, size_t n,
                                                            float scale, int32_t zp, int32_t qmin,
                                                            int32_t qmax, void *yv, int flav,
                                                            int is_signed) {
    uint8_t *y = (uint8_t *)yv;
    const int stream = qk__stream_ok(y, n, sizeof(float), 1);
#define QK__Q_CASE(F)                                                                           \
    case F:                                                                                    \
        return is_signed                                                                       \
                   ? qk__quantize_8bit_avx512_loop(x, n, scale, zp, qmin, qmax, y, F, 1, stream) \
                   : qk__quantize_8bit_avx512_loop(x, n, scale, zp, qmin, qmax, y, F, 0, stream);
    switch (flav) {
        QK__Q_CASE(QK__FL_TORCH)
        QK__Q_CASE(QK__FL_ONNX)
        QK__Q_CASE(QK__FL_FBGEMM)
        QK__Q_CASE(QK__FL_FBGEMM_SCALAR)
        default: return 0;
    }
#undef QK__Q_CASE
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* Public entry points                                                                        */
/* ---------------------------------------------------------------------------------------- */
#if QK_X86
#define QK__FLAV_ID_fbgemm QK__FL_FBGEMM
#define QK__FLAV_ID_fbgemm_scalar QK__FL_FBGEMM_SCALAR
#define QK__FLAV_ID_pt2e QK__FL_TORCH
#define QK__FLAV_ID_onnx QK__FL_ONNX
#define QK__FLAV_ID_tflite QK__FL_TFLITE
#define QK__KIND_u8 0
#define QK__KIND_s8 1
#define QK__KIND_u16 2
#define QK__KIND_s16 3
/* float32 -> 8/16-bit: AVX2 blocks, then the scalar loop for the tail (or the NaN block). */
#define QK__QUANTIZE_SIMD_PART(IN, OUT, FLAV)                                                  \
    if (QK__KIND_##OUT <= 1 && QK__FLAV_ID_##FLAV != QK__FL_TFLITE && qk__level() >= QK_LEVEL_AVX512) {     \
        done = qk__quantize_f32_8bit_avx512(x, n, scale, zero_point, qmin, qmax, y,            \
                                            QK__FLAV_ID_##FLAV, QK__KIND_##OUT == 1);          \
    } else if (qk__level() >= QK_LEVEL_AVX2) {                                                               \
        done = qk__quantize_f32_avx2(x, n, scale, zero_point, qmin, qmax, y,                   \
                                     QK__FLAV_ID_##FLAV, QK__KIND_##OUT);                      \
    }
#else
#define QK__QUANTIZE_SIMD_PART(IN, OUT, FLAV)
#endif
#define QK__QUANTIZE_NO_SIMD(IN, OUT, FLAV)

#define QK__QUANTIZE_PUBLIC(IN, INT, OUT, OUTT, TMIN, TMAX, SIMD, FLAV)                        \
    qk_status qk_quantize_##IN##_##OUT##_##FLAV(const INT *x, size_t n, float scale,             \
                                                int32_t zero_point, int32_t qmin, int32_t qmax, \
                                                OUTT *y, size_t *bad_index) {                  \
        const int scale_ok = QK__RECIP_##FLAV ? qk__recip_scale_ok(scale) : qk__scale_ok(scale);\
        qk_status st =                                                                         \
            qk__check_scaled(scale_ok, zero_point, qmin, qmax, TMIN, TMAX, n, x, y);           \
        if (st != QK_OK) return st;                                                            \
        size_t done = 0;                                                                       \
        SIMD(IN, OUT, FLAV)                                                                    \
        st = qk__quantize_##IN##_##OUT##_##FLAV##_scalar(x + done, n - done, scale, zero_point, \
                                                         qmin, qmax, y + done, bad_index);     \
        if (st == QK_ERR_NAN && bad_index) *bad_index += done;                                 \
        return st;                                                                             \
    }

#define QK__QUANTIZE_PUBLIC_FLAVOURS(IN, INT, OUT, OUTT, TMIN, TMAX, SIMD) \
    QK__FOR_EACH_FLAVOUR(QK__QUANTIZE_PUBLIC, IN, INT, OUT, OUTT, TMIN, TMAX, SIMD)

QK__QUANTIZE_PUBLIC_FLAVOURS(f32, float, u8, uint8_t, 0, UINT8_MAX, QK__QUANTIZE_SIMD_PART)
QK__QUANTIZE_PUBLIC_FLAVOURS(f32, float, s8, int8_t, INT8_MIN, INT8_MAX, QK__QUANTIZE_SIMD_PART)
QK__QUANTIZE_PUBLIC_FLAVOURS(f32, float, u16, uint16_t, 0, UINT16_MAX, QK__QUANTIZE_SIMD_PART)
QK__QUANTIZE_PUBLIC_FLAVOURS(f32, float, s16, int16_t, INT16_MIN, INT16_MAX, QK__QUANTIZE_SIMD_PART)
QK__QUANTIZE_PUBLIC_FLAVOURS(f32, float, s32, int32_t, INT32_MIN, INT32_MAX, QK__QUANTIZE_NO_SIMD)
#define QK__QUANTIZE_PUBLIC_F64(OUT, OUTT, TMIN, TMAX) \
    QK__QUANTIZE_PUBLIC_FLAVOURS(f64, double, OUT, OUTT, TMIN, TMAX, QK__QUANTIZE_NO_SIMD)
QK__FOR_EACH_OUT(QK__QUANTIZE_PUBLIC_F64)

/* ---------------------------------------------------------------------------------------- */
/* Dequantize                                                                                 */
/* ---------------------------------------------------------------------------------------- */
/* y = scale * (float)(q - zp): the SIMD loops subtract in int32 lanes, exact (no wrap) when
 * zp is at least 2^16 away from both int32 bounds, which the public functions check first (the
 * raw C API takes any int32 zero point; the scalar loop subtracts in int64).
 * Stores: the destination is first brought to a 64-byte boundary by the scalar loop (NumPy's
 * large arrays start 16 bytes past one, and a 64-byte store that straddles two cache lines costs
 * about half as much again); outputs of QK__STREAM_BYTES or more, which cannot stay in the
 * caches anyway, are written with non-temporal stores if their pages are resident (no
 * read-for-ownership of the destination lines: about a third less memory traffic). */
#define QK__DEQ_ZP_SIMD_OK(zp) ((zp) >= INT32_MIN + 65536 && (zp) <= INT32_MAX - 65536)
#if QK_X86
/* Head (scalar) to the alignment, the SIMD blocks, the tail (scalar). */
#define QK__DEQ_SIMD(IN, KIND)                                                                   \
    if ((KIND) >= 0 && QK__DEQ_ZP_SIMD_OK(zero_point) && qk__level() >= QK_LEVEL_AVX2) {                     \
        const int w512 = qk__level() >= QK_LEVEL_AVX512;                                                     \
        const size_t head = qk__head_to_align(y, sizeof(float), w512 ? 64 : 32, n);            \
        qk__dequantize_##IN##_scalar(q, head, scale, zero_point, y);                           \
        done = head + (w512 ? qk__dequantize_avx512(q + head, n - head, scale, zero_point,     \
                                                    y + head, KIND)                            \
                            : qk__dequantize_avx2(q + head, n - head, scale, zero_point,       \
                                                  y + head, KIND));                            \
    }
#else
#define QK__DEQ_SIMD(IN, KIND)
#endif

#define QK__DEQUANTIZE(IN, INT, KIND)                                                          \
    static void qk__dequantize_##IN##_scalar(const INT *q, size_t n, float scale, int32_t zp,  \
                                             float *y) {                                       \
        for (size_t i = 0; i < n; i++) y[i] = scale * (float)((int64_t)q[i] - zp);             \
    }                                                                                          \
    qk_status qk_dequantize_##IN##_f32(const INT *q, size_t n, float scale, int32_t zero_point, \
                                       float *y) {                                             \
        if (!qk__scale_ok(scale)) return QK_ERR_SCALE;                                         \
        if (n > 0 && (q == NULL || y == NULL)) return QK_ERR_ARG;                              \
        size_t done = 0;                                                                       \
        QK__DEQ_SIMD(IN, KIND)                                                                 \
        qk__dequantize_##IN##_scalar(q + done, n - done, scale, zero_point, y + done);         \
        return QK_OK;                                                                          \
    }
QK__DEQUANTIZE(u8, uint8_t, 0)
QK__DEQUANTIZE(s8, int8_t, 1)
QK__DEQUANTIZE(u16, uint16_t, 2)
QK__DEQUANTIZE(s16, int16_t, 3)
QK__DEQUANTIZE(s32, int32_t, zero_point == 0 ? 4 : -1) /* q - 0 exact in int32 lanes */

/* Per channel on the last axis of rows x cols (row-major): the same products as
 * qk_dequantize_<in>_f32 with channel c's scale and zero point, a row at a time (SIMD: the
 * channels' parameters loaded as vectors). */
#if QK_X86
#define QK__DEQ_CH_SIMD(KIND)                                                                  \
    if ((KIND) >= 0 && zp_ok && qk__level() >= QK_LEVEL_AVX512)                                \
        done = qk__deq_row_ch_avx512(qr, cols, scale, zero_point, yr, KIND);                   \
    else if ((KIND) >= 0 && zp_ok && qk__level() >= QK_LEVEL_AVX2)                             \
        done = qk__deq_row_ch_avx2(qr, cols, scale, zero_point, yr, KIND);
#else
#define QK__DEQ_CH_SIMD(KIND)
#endif
#define QK__DEQUANTIZE_CH(IN, INT, KIND)                                                       \
    qk_status qk_dequantize_channels_##IN##_f32(const INT *q, size_t rows, size_t cols,        \
                                                const float *scale, const int32_t *zero_point, \
                                                float *y) {                                    \
        size_t bytes;                                                                          \
        if (cols < 1 || !qk__sz_mul4(rows, cols, sizeof(float), 1, &bytes)) return QK_ERR_ARG; \
        if (scale == NULL || zero_point == NULL) return QK_ERR_ARG;                            \
        if (rows > 0 && (q == NULL || y == NULL)) return QK_ERR_ARG;                           \
        int zp_ok = 1, s32_zero = 1;                                                           \
        for (size_t c = 0; c < cols; c++) {                                                    \
            if (!qk__scale_ok(scale[c])) return QK_ERR_SCALE;                                  \
            if (!QK__DEQ_ZP_SIMD_OK(zero_point[c])) zp_ok = 0;                                 \
            if (zero_point[c] != 0) s32_zero = 0;                                              \
        }                                                                                      \
        (void)zp_ok;                                                                           \
        (void)s32_zero;                                                                        \
        for (size_t r = 0; r < rows; r++) {                                                    \
            const INT *qr = q + r * cols;                                                      \
            float *yr = y + r * cols;                                                          \
            size_t done = 0;                                                                   \
            QK__DEQ_CH_SIMD(KIND)                                                              \
            for (size_t c = done; c < cols; c++)                                               \
                yr[c] = scale[c] * (float)((int64_t)qr[c] - zero_point[c]);                    \
        }                                                                                      \
        return QK_OK;                                                                          \
    }
QK__DEQUANTIZE_CH(u8, uint8_t, 0)
QK__DEQUANTIZE_CH(s8, int8_t, 1)
QK__DEQUANTIZE_CH(u16, uint16_t, 2)
QK__DEQUANTIZE_CH(s16, int16_t, 3)
QK__DEQUANTIZE_CH(s32, int32_t, s32_zero ? 4 : -1) /* every zero point 0 */

/* ---------------------------------------------------------------------------------------- */
/* Fake quantize (PyTorch): quantize (torch flavour), then dequantize, in one pass             */
/* ---------------------------------------------------------------------------------------- */
#define QK__FAKE_QUANTIZE(IN, INT)                                                             \
    qk_status qk_fake_quantize_##IN##_torch(const INT *x, size_t n, float scale,               \
                                            int32_t zero_point, int32_t qmin, int32_t qmax,    \
                                            INT *y, size_t *bad_index) {                       \
        const qk_status st = qk__check_scaled(qk__recip_scale_ok(scale), zero_point, qmin, qmax,\
                                              INT32_MIN, INT32_MAX, n, x, y);                  \
        if (st != QK_OK) return st;                                                            \
        const float inv = 1.0f / scale;                                                        \
        const double lo = (double)qmin - zero_point, hi = (double)qmax - zero_point;           \
        /* through an integer, as PyTorch does: -0.5 rounds to +0, never -0; then the exact    \
         * product, one rounding */                                                            \
        QK__FOR_EACH_NUMBER(                                                                   \
            INT, const int64_t r = (int64_t)rint(qk__clampd(QK__T_torch_##IN(v), lo, hi));     \
            y[i] = (INT)((double)r * (double)scale);)                                          \
        return QK_OK;                                                                          \
    }
QK__FAKE_QUANTIZE(f32, float)
QK__FAKE_QUANTIZE(f64, double)

/* ---------------------------------------------------------------------------------------- */
/* Dynamic quantization (fbgemm quantized::linear_dynamic's input)                           */
/* ---------------------------------------------------------------------------------------- */
/* min and max of x; 0 when x holds a NaN or an infinity. The minimum and maximum of a set do
 * not depend on the order of the comparisons (up to the sign of a zero, which the range
 * [min(lo, 0), max(hi, 0)] then drops), so the SIMD loop and the scalar one agree. */
static int qk__minmax_scalar(const float *x, size_t n, float *lo, float *hi) {
    float a = *lo, b = *hi;
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        if (!isfinite(v)) return 0;
        a = v < a ? v : a;
        b = v > b ? v : b;
    }
    *lo = a;
    *hi = b;
    return 1;
}

#if QK_X86
/* 32 floats an iteration (4 independent min / max chains); a lane that is NaN or infinite sets
 * the flag (|v| == inf or unordered). Returns the elements done. */
QK_TARGET_AVX2 static size_t qk__minmax_avx2(const float *x, size_t n, float *lo, float *hi,
                                             int *bad) {
    if (n < 32) return 0;
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 mn[4], mx[4], nf = _mm256_setzero_ps();
    for (int j = 0; j < 4; j++) mn[j] = mx[j] = _mm256_loadu_ps(x + 8 * j);
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 4; j++) {
            const __m256 v = _mm256_loadu_ps(x + i + 8 * j);
            /* not (|v| < inf): NaN (unordered) or an infinity */
            nf = _mm256_or_ps(nf, _mm256_cmp_ps(_mm256_and_ps(v, absm), inf, _CMP_NLT_UQ));
            mn[j] = _mm256_min_ps(mn[j], v);
            mx[j] = _mm256_max_ps(mx[j], v);
        }
    if (_mm256_movemask_ps(nf)) {
        *bad = 1;
        return i;
    }
    const __m256 a = _mm256_min_ps(_mm256_min_ps(mn[0], mn[1]), _mm256_min_ps(mn[2], mn[3]));
    const __m256 b = _mm256_max_ps(_mm256_max_ps(mx[0], mx[1]), _mm256_max_ps(mx[2], mx[3]));
    float la[8], lb[8];
    _mm256_storeu_ps(la, a);
    _mm256_storeu_ps(lb, b);
    float l = *lo, h = *hi;
    for (int j = 0; j < 8; j++) {
        l = la[j] < l ? la[j] : l;
        h = lb[j] > h ? lb[j] : h;
    }
    *lo = l;
    *hi = h;
    return i;
}
#endif

/* FBGEMM's ChooseQuantizationParams (fbgemm/src/QuantUtils.cc, as PyTorch's dynamic Linear calls
 * it: preserve_sparsity false, force_scale_power_of_two false) for the finite range [mn, mx]. */
static void qk__fbgemm_choose_qparams(float mn, float mx, int32_t qmin, int32_t qmax,
                                      double *scale_out, int32_t *zp_out) {
    const float small = 6.1e-5f;
    mn = mn < 0.0f ? mn : 0.0f;
    mx = mx > 0.0f ? mx : 0.0f;
    double scale = ((double)mx - (double)mn) / (double)(qmax - qmin);
    if ((float)scale == 0.0f || isinf(1.0f / (float)scale)) scale = 0.1;
    if (scale < (double)small) {
        const float org = (float)scale;
        scale = (double)small;
        if (mn == 0.0f) {
            mx = small * (float)(qmax - qmin);
        } else if (mx == 0.0f) {
            mn = -small * (float)(qmax - qmin);
        } else {
            const float amp = small / org;
            mn *= amp;
            mx *= amp;
        }
    }
    const double zmin = (double)qmin - (double)mn / scale;
    const double zmax = (double)qmax - (double)mx / scale;
    const double emin = fabs((double)qmin) - fabs((double)mn / scale);
    const double emax = fabs((double)qmax) - fabs((double)mx / scale);
    const double z0 = emin < emax ? zmin : zmax;
    *zp_out = z0 < (double)qmin ? qmin : z0 > (double)qmax ? qmax : (int32_t)nearbyint(z0);
    *scale_out = scale;
}

qk_status qk_quantize_dynamic_f32_u8(const float *x, size_t n, int reduce_range, uint8_t *y,
                                     float *scale, int32_t *zero_point) {
    if (scale == NULL || zero_point == NULL || (n > 0 && (x == NULL || y == NULL)))
        return QK_ERR_ARG;
    float lo = n ? x[0] : 0.0f, hi = lo;
    size_t done = 0;
    int bad = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX2) done = qk__minmax_avx2(x, n, &lo, &hi, &bad);
#endif
    if (bad || !qk__minmax_scalar(x + done, n - done, &lo, &hi)) return QK_ERR_NAN;
    const int32_t qmax = reduce_range ? 127 : 255;
    double sd;
    int32_t zp;
    qk__fbgemm_choose_qparams(lo, hi, 0, qmax, &sd, &zp);
    const float s = (float)sd;
    const qk_status st = qk_quantize_f32_u8_fbgemm(x, n, s, zp, 0, 255, y, NULL);
    if (st != QK_OK) return st;
    *scale = s;
    *zero_point = zp;
    return QK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* int32 accumulators -> float with one fused rounding (FBGEMM ReQuantizeForFloat)           */
/* ---------------------------------------------------------------------------------------- */
#if QK_X86
QK_TARGET_AVX2 static size_t qk__acc_to_f32_avx2(const int32_t *acc, size_t n, float scale,
                                                 float bias, float *y) {
    const __m256 s = _mm256_set1_ps(scale), b = _mm256_set1_ps(bias);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 f = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(f, s, b));
    }
    return i;
}
#endif

qk_status qk_accumulator_to_f32_fma(const int32_t *acc, size_t n, float scale, float bias,
                                    float *y) {
    if (!qk__scale_ok(scale)) return QK_ERR_SCALE;
    if (!isfinite(bias)) return QK_ERR_ARG;
    if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;
    size_t i = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX2) i = qk__acc_to_f32_avx2(acc, n, scale, bias, y);
#endif
    for (; i < n; i++) y[i] = fmaf((float)acc[i], scale, bias);
    return QK_OK;
}
