/* conv_fused.c -- conv kernels with the output stage fused (see conv_internal.h): the GEMM tiles
 * of the 8-bit path (12 or 16 channels x 16 pixels, vpdpbusd) and the 8-bit depthwise plane
 * (VBMI), each requantizing its int32 sums in registers and storing bytes; plus the padded-plane
 * copy of the depthwise jobs (whole-block stores). Bit for bit the unfused path: same integer
 * sums (wrapping modulo 2^32), then the operations of vnni.c's qk__out16 in the same order. */
#include "conv/conv_internal.h"

#include <stdlib.h>
#include <string.h>

#if QK_X86
#include <immintrin.h>
#define QK_TARGET_CVNNI \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#define QK_TARGET_CVBMI \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))
#endif

int qk__conv_fused_ok(const qk_epilogue *ep) {
    return qk__use_vnni() && ep->scheme == QK_REQ_FP32 &&
           (ep->out_type == QK_DT_U8 || ep->out_type == QK_DT_S8);
}

#if QK_X86

/* The per-call constants of the output stage. */
typedef struct {
    __m512 flo, fhi;
    __m512i vzp;
} qk__fz;

QK_TARGET_CVNNI static inline qk__fz qk__fz_make(const qk_epilogue *ep) {
    qk__fz z;
    z.flo = _mm512_set1_ps(qk__ep_flo(ep));
    z.fhi = _mm512_set1_ps(qk__ep_fhi(ep));
    z.vzp = _mm512_set1_epi32(ep->zero_point);
    return z;
}

/* corr[o] + bias[o] (mod 2^32): the integer terms added to a channel's sums. The kernels start
 * their accumulators from it (integer sums modulo 2^32: the same bits in any order). */
static inline int32_t qk__cb(const qk_epilogue *ep, const uint32_t *corr, size_t o) {
    return (int32_t)(corr[o] + (ep->bias ? (uint32_t)ep->bias[o] : 0u));
}

/* 16 integer results of channel o (corr and bias in) -> 16 output bytes (the rest of qk__out16,
 * fp32 scheme). */
QK_TARGET_CVNNI static inline __attribute__((always_inline)) __m128i
qk__req16(const qk_epilogue *ep, size_t o, __m512i acc, const qk__fz *z) {
    __m512 f = _mm512_cvtepi32_ps(acc);
    if (ep->float_bias) f = _mm512_add_ps(f, _mm512_set1_ps(ep->float_bias[o]));
    f = _mm512_mul_ps(f, _mm512_set1_ps(ep->scale[o]));
    f = _mm512_min_ps(_mm512_max_ps(f, z->flo), z->fhi);
    __m128i b = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), z->vzp));
    __asm__("" : "+v"(b)); /* register vpmovdb, then a plain store (the memory form is slow) */
    return b;
}

/* ---- GEMM tiles ------------------------------------------------------------------------- */
#define QK__F12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define QK__F16(X) QK__F12(X) X(12) X(13) X(14) X(15)
#define QK__FDECL(r) \
    __m512i acc##r = _mm512_set1_epi32((r) < mr ? qk__cb(ep, corr, o0 + (r)) : 0);
/* vpdpbusd with the weight dword as an embedded broadcast ({1to16}): one instruction a row
 * instead of vpbroadcastd + vpdpbusd (3-6% more MAC/s on Zen 4; compilers do not fold the
 * broadcast themselves). The "m" operand tells the compiler the step reads memory at ap. */
#define QK__FSTEP(r)                                                                   \
    __asm__("vpdpbusd " #r "*4(%[p])%{1to16%}, %[b], %[acc]"                            \
            : [acc] "+v"(acc##r)                                                       \
            : [b] "v"(bv), [p] "r"(ap), "m"(*(const unsigned char(*)[64])ap));
#define QK__FOUT(r)                                                                             \
    if ((r) < mr) {                                                                             \
        const size_t o = o0 + (r);                                                              \
        __m512i v = acc##r;                                                                     \
        if (pixsum) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(wzp8[o]), vps)); \
        const __m128i q = qk__req16(ep, o, v, &z);                                              \
        if (full)                                                                               \
            _mm_storeu_si128((__m128i *)(y + (r) * ystride), q);                                \
        else                                                                                    \
            _mm_mask_storeu_epi8(y + (r) * ystride, mask, q);                                   \
    }

#define QK__FUSED_GEMM(NAME, ROWS, MR)                                                          \
    QK_TARGET_CVNNI static void NAME(size_t kq, const int8_t *a, const uint8_t *b,              \
                                     const qk_epilogue *ep, const int32_t *wzp8,                \
                                     const uint32_t *corr, const uint32_t *pixsum, size_t o0,   \
                                     size_t mr, size_t cnt, char *y, size_t ystride) {          \
        ROWS(QK__FDECL)                                                                         \
        for (size_t p = 0; p < kq; p++) {                                                       \
            const unsigned char *ap = (const unsigned char *)a + 4 * (MR) * p;                  \
            const __m512i bv = _mm512_loadu_si512((const void *)(b + 64 * p));                 \
            ROWS(QK__FSTEP)                                                                     \
        }                                                                                       \
        const qk__fz z = qk__fz_make(ep);                                                       \
        const __m512i vps =                                                                     \
            pixsum ? _mm512_loadu_si512((const void *)pixsum) : _mm512_setzero_si512();         \
        const int full = cnt == 16;                                                             \
        const __mmask16 mask = (__mmask16)((1u << cnt) - 1u);                                   \
        ROWS(QK__FOUT)                                                                          \
    }
QK__FUSED_GEMM(qk__conv_fused_12x16, QK__F12, 12)
QK__FUSED_GEMM(qk__conv_fused_16x16, QK__F16, 16)

/* The same tiles reading the channel-quad image directly (implicit GEMM, stride 1, 16 pixels,
 * no weight zero points): quad (tap t, cq) of the panel is the 64 bytes at
 * b0 + 4 * tapoff[t] + cq * plane4 (run 0), lanes of mask m1 replaced by those at
 * b1 + 4 * tapoff[t] + cq * plane4 (run 1, NSEG 2): exactly the panel qk__panel_cq8 would build,
 * without the copy. */
#define QK__DIRECT_GEMM(NAME, ROWS, MR, NSEG)                                                   \
    QK_TARGET_CVNNI static void NAME(size_t taps, size_t nq, const size_t *tapoff,              \
                                     size_t plane4, const int8_t *a, const uint8_t *b0,         \
                                     const uint8_t *b1, uint16_t m1, const qk_epilogue *ep,    \
                                     const uint32_t *corr, size_t o0, size_t mr, size_t cnt,    \
                                     char *y, size_t ystride) {                                 \
        ROWS(QK__FDECL)                                                                         \
        const unsigned char *ap = (const unsigned char *)a;                                     \
        for (size_t t = 0; t < taps; t++) {                                                     \
            const uint8_t *p0 = b0 + 4 * tapoff[t];                                             \
            const uint8_t *p1 = b1 + 4 * tapoff[t];                                             \
            for (size_t cq = 0; cq < nq; cq++, ap += 4 * (MR)) {                                \
                __m512i bv = _mm512_loadu_si512((const void *)(p0 + cq * plane4));              \
                if ((NSEG) > 1)                                                                 \
                    bv = _mm512_mask_loadu_epi32(bv, (__mmask16)m1, (const void *)(p1 + cq * plane4));     \
                ROWS(QK__FSTEP)                                                                 \
            }                                                                                   \
        }                                                                                       \
        const qk__fz z = qk__fz_make(ep);                                                       \
        const int32_t *wzp8 = NULL;                                                             \
        const __m512i vps = _mm512_setzero_si512();                                             \
        const uint32_t *pixsum = NULL;                                                          \
        const int full = cnt == 16;                                                             \
        const __mmask16 mask = (__mmask16)((1u << cnt) - 1u);                                   \
        ROWS(QK__FOUT)                                                                          \
    }
QK__DIRECT_GEMM(qk__conv_direct_12x16_1, QK__F12, 12, 1)
QK__DIRECT_GEMM(qk__conv_direct_16x16_1, QK__F16, 16, 1)
QK__DIRECT_GEMM(qk__conv_direct_12x16_2, QK__F12, 12, 2)
QK__DIRECT_GEMM(qk__conv_direct_16x16_2, QK__F16, 16, 2)

/* Tiles of at most 8 pixels, transposed: the channels are the vector lanes (the weight block's
 * quad p, [mr8][4] bytes, is one vector), each pixel a broadcast of its panel dword, one
 * accumulator a pixel; two sets of accumulators (even and odd quads) for independent chains,
 * summed at the end (sums modulo 2^32: the same bits in any order). Output: the same per-element
 * operations as qk__req16 with the channel parameters as vectors, bytes transposed to rows. */
#define QK__TDECL(i) __m512i e##i = _mm512_setzero_si512(), d##i = _mm512_setzero_si512();
#define QK__TSTEP(A, i, P)                                                               \
    if ((i) < cnt)                                                                       \
        A##i = _mm512_dpbusd_epi32(A##i, _mm512_set1_epi32(qk__ld32(b + 64 * (P) + 4 * (i))), wv);
#define QK__T8(X, A, P) X(A, 0, P) X(A, 1, P) X(A, 2, P) X(A, 3, P) X(A, 4, P) X(A, 5, P) X(A, 6, P) X(A, 7, P)
#define QK__TOUT(i)                                                                      \
    if ((i) < cnt) {                                                                     \
        __m512i v = _mm512_add_epi32(_mm512_add_epi32(e##i, d##i), vcorr);              \
        if (pixsum)                                                                      \
            v = _mm512_sub_epi32(v, _mm512_mullo_epi32(vwz, _mm512_set1_epi32((int32_t)pixsum[i]))); \
        if (ep->bias) v = _mm512_add_epi32(v, vbias);                                    \
        __m512 f = _mm512_cvtepi32_ps(v);                                                \
        if (ep->float_bias) f = _mm512_add_ps(f, vfb);                                   \
        f = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(f, vsc), z.flo), z.fhi);          \
        _mm_storeu_si128((__m128i *)(q + 16 * (i)),                                      \
                         _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), z.vzp))); \
    }
#define QK__T8I(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

QK_TARGET_CVNNI static void qk__conv_fused_tail_avx512(size_t kq, const int8_t *a, size_t mr8,
                                                       const uint8_t *b, const qk_epilogue *ep,
                                                       const int32_t *wzp8, const uint32_t *corr,
                                                       const uint32_t *pixsum, size_t o0,
                                                       size_t mr, size_t cnt, char *y,
                                                       size_t ystride) {
    QK__T8I(QK__TDECL)
    const __mmask16 wm = (__mmask16)((1u << mr8) - 1u); /* mr8 = 12: 48-byte quads */
    size_t p = 0;
    for (; p + 2 <= kq; p += 2) {
        __m512i wv = _mm512_maskz_loadu_epi32(wm, a + 4 * mr8 * p);
        QK__T8(QK__TSTEP, e, p)
        wv = _mm512_maskz_loadu_epi32(wm, a + 4 * mr8 * (p + 1));
        QK__T8(QK__TSTEP, d, p + 1)
    }
    if (p < kq) {
        const __m512i wv = _mm512_maskz_loadu_epi32(wm, a + 4 * mr8 * p);
        QK__T8(QK__TSTEP, e, p)
    }
    const qk__fz z = qk__fz_make(ep);
    const __mmask16 cm = (__mmask16)((1u << mr) - 1u); /* channels o0 .. o0 + mr - 1 exist */
    const __m512i vcorr = _mm512_maskz_loadu_epi32(cm, corr + o0);
    const __m512i vwz = _mm512_maskz_loadu_epi32(cm, wzp8 + o0);
    const __m512i vbias = ep->bias ? _mm512_maskz_loadu_epi32(cm, ep->bias + o0) : _mm512_setzero_si512();
    const __m512 vfb = ep->float_bias ? _mm512_maskz_loadu_ps(cm, ep->float_bias + o0) : _mm512_setzero_ps();
    const __m512 vsc = _mm512_maskz_loadu_ps(cm, ep->scale + o0);
    uint8_t q[8 * 16]; /* q[16 i + r]: pixel i, channel o0 + r */
    QK__T8I(QK__TOUT)
    for (size_t r = 0; r < mr; r++)
        for (size_t i = 0; i < cnt; i++) y[r * ystride + i] = (char)q[16 * i + r];
}

void qk__conv_fused_tail(size_t kq, const int8_t *a, size_t mr8, const uint8_t *b,
                         const qk_epilogue *ep, const int32_t *wzp8, const uint32_t *corr,
                         const uint32_t *pixsum, size_t o0, size_t mr, size_t cnt, char *y,
                         size_t ystride) {
    qk__conv_fused_tail_avx512(kq, a, mr8, b, ep, wzp8, corr, pixsum, o0, mr, cnt, y, ystride);
}
#endif


qk__conv_fused_kernel qk__conv_fused_kernel_for(size_t mr8) {
#if QK_X86
    if (qk__use_vnni()) return mr8 == 16 ? qk__conv_fused_16x16 : qk__conv_fused_12x16;
#endif
    (void)mr8;
    return NULL;
}

qk__conv_direct_kernel qk__conv_direct_kernel_for(size_t mr8, size_t nseg) {
#if QK_X86
    if (qk__use_vnni()) {
        if (nseg == 1) return mr8 == 16 ? qk__conv_direct_16x16_1 : qk__conv_direct_12x16_1;
        if (nseg == 2) return mr8 == 16 ? qk__conv_direct_16x16_2 : qk__conv_direct_12x16_2;
    }
#endif
    (void)mr8, (void)nseg;
    return NULL;
}

/* ---- depthwise plane --------------------------------------------------------------------
 * The sums of qk_dw8_plane__avx512vbmi (vnni.c): output j of a row, kernel row r, quad t of
 * taps, one vpdpbusd per quad for 16 outputs on dwords gathered by vpermb from one 64-byte
 * load; then the output stage of channel o. Row i of the plane is stored at y + i * ow: whole
 * 16-byte stores, masked only where they would reach past the plane's last byte or over an
 * output already written (rows of at most 16 outputs spill only into rows written after them). */
#if QK_X86
QK_TARGET_CVBMI static inline __attribute__((always_inline)) void
qk__dw8f_store(uint8_t *y, size_t i, size_t j, size_t oh, size_t ow, __m128i q) {
    const size_t left = ow - j;
    uint8_t *p = y + i * ow + j;
    /* rows of at most 16 outputs are written in row order: a spill lands on rows written later */
    if (left >= 16 || (ow <= 16 && i * ow + 16 <= oh * ow))
        _mm_storeu_si128((__m128i *)p, q);
    else
        _mm_mask_storeu_epi8(p, (__mmask16)((1u << left) - 1u), q);
}

QK_TARGET_CVBMI static void qk__dw8_fused(const uint8_t *x, size_t wp, const int8_t *w8,
                                          size_t kh, size_t kq, size_t stride_h, size_t stride_w,
                                          size_t dil_h, size_t dil_w, size_t oh, size_t ow,
                                          uint32_t corr, const qk_epilogue *ep, size_t o,
                                          uint8_t *y) {
    enum { MAXQ = 64 };
    const __m512i idx = qk__dw8_gather_index(stride_w, dil_w);
    __m512i wv[MAXQ];
    size_t off[MAXQ];
    const size_t nq = kh * kq;
    qk__dw8_taps(w8, kh, kq, dil_h, dil_w, wp, wv, off);
    const __m512i vc =
        _mm512_set1_epi32((int32_t)(corr + (ep->bias ? (uint32_t)ep->bias[o] : 0u)));
    const qk__fz z = qk__fz_make(ep);
    size_t i = 0;
    for (; i + 4 <= oh; i += 4) {
        const uint8_t *xrow = x + i * stride_h * wp;
        const size_t rs = stride_h * wp;
        for (size_t j = 0; j < ow; j += 16) {
            const uint8_t *base = xrow + j * stride_w;
            __m512i a[4] = {vc, vc, vc, vc};
            qk__dw8_rows4(base, rs, off, wv, nq, idx, a);
            qk__dw8f_store(y, i, j, oh, ow, qk__req16(ep, o, a[0], &z));
            qk__dw8f_store(y, i + 1, j, oh, ow, qk__req16(ep, o, a[1], &z));
            qk__dw8f_store(y, i + 2, j, oh, ow, qk__req16(ep, o, a[2], &z));
            qk__dw8f_store(y, i + 3, j, oh, ow, qk__req16(ep, o, a[3], &z));
        }
    }
    if (i + 2 <= oh) { /* two rows: two independent chains */
        const uint8_t *xrow = x + i * stride_h * wp;
        const size_t rs = stride_h * wp;
        for (size_t j = 0; j < ow; j += 16) {
            const uint8_t *base = xrow + j * stride_w;
            __m512i a0 = vc, a1 = vc;
            for (size_t t = 0; t < nq; t++) {
                const uint8_t *bt = base + off[t];
                a0 = _mm512_dpbusd_epi32(a0, _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)bt)), wv[t]);
                a1 = _mm512_dpbusd_epi32(a1, _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)(bt + rs))), wv[t]);
            }
            qk__dw8f_store(y, i, j, oh, ow, qk__req16(ep, o, a0, &z));
            qk__dw8f_store(y, i + 1, j, oh, ow, qk__req16(ep, o, a1, &z));
        }
        i += 2;
    }
    for (; i < oh; i++) {
        const uint8_t *xrow = x + i * stride_h * wp;
        for (size_t j = 0; j < ow; j += 16) {
            const uint8_t *base = xrow + j * stride_w;
            __m512i acc = vc;
            for (size_t t = 0; t < nq; t++) {
                const __m512i v = _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)(base + off[t])));
                acc = _mm512_dpbusd_epi32(acc, v, wv[t]);
            }
            qk__dw8f_store(y, i, j, oh, ow, qk__req16(ep, o, acc, &z));
        }
    }
}
#endif

qk__dw8_fused_kernel qk__dw8_fused_kernel_get(void) {
#if QK_X86
    if (qk__dw8_plane_kernel() != NULL) return qk__dw8_fused; /* VNNI + VBMI */
#endif
    return NULL;
}

/* ---- padded plane copy ------------------------------------------------------------------- */
#if QK_X86
QK_TARGET_AVX512 static inline void qk__store64(uint8_t *d, size_t total, size_t a, __m512i v) {
    if (a + 64 <= total)
        _mm512_storeu_si512((void *)(d + a), v);
    else
        _mm512_mask_storeu_epi8(d + a, ((__mmask64)1 << (total - a)) - 1, v);
}

/* The lanes l < width (at most 64) of a block starting at padded column c0 that hold input
 * columns (pad_left <= c0 + l < pad_left + n), as a bit mask. */
static inline uint64_t qk__pad_lanes(size_t c0, size_t pad_left, size_t n, size_t width) {
    const size_t lo = c0 < pad_left ? pad_left - c0 : 0;
    const size_t hi = pad_left + n > c0 ? pad_left + n - c0 : 0;
    if (hi <= lo || lo >= width) return 0;
    const size_t h = hi < width ? hi : width;
    return (h == 64 ? ~(uint64_t)0 : ((uint64_t)1 << h) - 1) & ~(((uint64_t)1 << lo) - 1);
}

QK_TARGET_AVX512 static void qk__pad_plane8_avx512(const uint8_t *src, size_t rows, size_t n,
                                                  uint8_t flip, uint8_t fill, size_t pad_top,
                                                  size_t pad_left, size_t hp, size_t wp,
                                                  uint8_t *d) {
    const __m512i vf = _mm512_set1_epi8((char)flip), vfill = _mm512_set1_epi8((char)fill);
    /* rows in order, whole 64-byte blocks: a block that runs past its row is overwritten by the
     * rows written after it; a block that would reach past the plane is a masked store */
    const size_t total = hp * wp;
    for (size_t h = 0; h < hp; h++) {
        if (h < pad_top || h >= pad_top + rows) {
            for (size_t c0 = 0; c0 < wp; c0 += 64) qk__store64(d, total, h * wp + c0, vfill);
            continue;
        }
        /* source bytes: padded column c0 + l reads src row byte c0 + l - pad_left */
        const uintptr_t sr = (uintptr_t)(src + (h - pad_top) * n);
        for (size_t c0 = 0; c0 < wp; c0 += 64) {
            const __mmask64 m = qk__pad_lanes(c0, pad_left, n, 64);
            /* masked-off lanes are not read (no fault): the address may lie before the row */
            const __m512i v = _mm512_maskz_loadu_epi8(m, (const void *)(sr + c0 - pad_left));
            const __m512i r = _mm512_mask_mov_epi8(vfill, m, _mm512_xor_si512(v, vf));
            qk__store64(d, total, h * wp + c0, r);
        }
    }
}
#endif

int qk__pad_plane8(const uint8_t *src, size_t rows, size_t n, uint8_t flip, uint8_t fill,
                   size_t pad_top, size_t pad_left, size_t hp, size_t wp, uint8_t *d) {
#if QK_X86
    if (qk__use_avx512()) {
        qk__pad_plane8_avx512(src, rows, n, flip, fill, pad_top, pad_left, hp, wp, d);
        return 1;
    }
#endif
    (void)src, (void)rows, (void)n, (void)flip, (void)fill, (void)pad_top, (void)pad_left;
    (void)hp, (void)wp, (void)d;
    return 0;
}

/* ---- padded plane by 64-byte blocks ------------------------------------------------------ */
int qk__plane_blocks_init(qk__plane_blocks *t, size_t rows, size_t n, size_t pad_top,
                          size_t pad_left, size_t hp, size_t wp) {
    memset(t, 0, sizeof *t);
    const size_t total = hp * wp;
    t->nblk = (total + 63) / 64;
    t->mask = (uint64_t *)calloc(t->nblk, sizeof(uint64_t));
    t->start = (uint32_t *)calloc(t->nblk, sizeof(uint32_t));
    t->cnt = (uint32_t *)calloc(t->nblk, sizeof(uint32_t));
    t->idx = (uint8_t *)calloc(t->nblk * 64, 1);
    if (t->mask == NULL || t->start == NULL || t->cnt == NULL || t->idx == NULL) {
        qk__plane_blocks_free(t);
        return 0;
    }
    size_t src = 0; /* input bytes placed so far */
    for (size_t b = 0; b < t->nblk; b++) t->start[b] = (uint32_t)-1;
    for (size_t h = 0; h < rows; h++) {
        const size_t p0 = (pad_top + h) * wp + pad_left;
        for (size_t i = 0; i < n; i++, src++) {
            const size_t p = p0 + i, b = p / 64;
            if (t->start[b] == (uint32_t)-1) t->start[b] = (uint32_t)src;
            t->mask[b] |= (uint64_t)1 << (p % 64);
            t->idx[p] = (uint8_t)(src - t->start[b]);
            t->cnt[b]++;
        }
    }
    for (size_t b = 0; b < t->nblk; b++)
        if (t->start[b] == (uint32_t)-1) t->start[b] = 0;
    return 1;
}

void qk__plane_blocks_free(qk__plane_blocks *t) {
    free(t->mask);
    free(t->start);
    free(t->cnt);
    free(t->idx);
    memset(t, 0, sizeof *t);
}

#if QK_X86
QK_TARGET_CVBMI static void qk__plane_blocks_copy_vbmi(const qk__plane_blocks *t,
                                                       const uint8_t *src, uint8_t flip,
                                                       uint8_t fill, uint8_t *d) {
    const __m512i vf = _mm512_set1_epi8((char)flip), vfill = _mm512_set1_epi8((char)fill);
    for (size_t b = 0; b < t->nblk; b++) {
        const __mmask64 m = t->mask[b];
        __m512i v = vfill;
        if (m) {
            const uint32_t c = t->cnt[b];
            const __mmask64 lm = c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << c) - 1);
            const __m512i x = _mm512_maskz_loadu_epi8(lm, src + t->start[b]);
            v = _mm512_mask_permutexvar_epi8(vfill, m,
                                             _mm512_loadu_si512((const void *)(t->idx + 64 * b)),
                                             _mm512_xor_si512(x, vf));
        }
        _mm512_store_si512((void *)(d + 64 * b), v);
    }
}
#endif

void qk__plane_blocks_copy(const qk__plane_blocks *t, const uint8_t *src, uint8_t flip,
                           uint8_t fill, uint8_t *d) {
#if QK_X86
    qk__plane_blocks_copy_vbmi(t, src, flip, fill, d);
#else
    (void)t, (void)src, (void)flip, (void)fill, (void)d;
#endif
}

/* ---- channel-quad image and its panels ---------------------------------------------------- */
#if QK_X86
QK_TARGET_CVNNI static void qk__pad_quad8_avx512(const uint8_t *src, size_t plane_in, size_t rows,
                                                 size_t n, uint8_t flip, uint8_t fill,
                                                 size_t pad_top, size_t pad_left, size_t hp,
                                                 size_t wp, uint8_t *d) {
    const __m128i vf = _mm_set1_epi8((char)flip), vfill = _mm_set1_epi8((char)fill);
    const __m512i zfill = _mm512_set1_epi8((char)fill);
    const size_t total = hp * wp * 4;
    /* rows in order, 16 pixels (64 bytes) a store: a store past a row's end is overwritten by
     * the next row; one past the plane is masked */
    for (size_t h = 0; h < hp; h++) {
        if (h < pad_top || h >= pad_top + rows) {
            for (size_t x0 = 0; x0 < wp; x0 += 16) qk__store64(d, total, (h * wp + x0) * 4, zfill);
            continue;
        }
        const uintptr_t sr = (uintptr_t)(src + (h - pad_top) * n);
        for (size_t x0 = 0; x0 < wp; x0 += 16) {
            const __mmask16 m = (__mmask16)qk__pad_lanes(x0, pad_left, n, 16);
            const uintptr_t a = sr + x0 - pad_left; /* masked-off lanes are not read */
            __m128i v[4];
            for (size_t c = 0; c < 4; c++)
                v[c] = _mm_mask_mov_epi8(
                    vfill, m,
                    _mm_xor_si128(_mm_maskz_loadu_epi8(m, (const void *)(a + c * plane_in)), vf));
            const __m128i p01 = _mm_unpacklo_epi8(v[0], v[1]), q01 = _mm_unpackhi_epi8(v[0], v[1]);
            const __m128i p23 = _mm_unpacklo_epi8(v[2], v[3]), q23 = _mm_unpackhi_epi8(v[2], v[3]);
            __m512i z = _mm512_castsi128_si512(_mm_unpacklo_epi16(p01, p23));
            z = _mm512_inserti32x4(z, _mm_unpackhi_epi16(p01, p23), 1);
            z = _mm512_inserti32x4(z, _mm_unpacklo_epi16(q01, q23), 2);
            z = _mm512_inserti32x4(z, _mm_unpackhi_epi16(q01, q23), 3);
            qk__store64(d, total, (h * wp + x0) * 4, z);
        }
    }
}

/* 16 pixels (dwords) of a run: at p + 4 * (i * sw) for lane i. */
QK_TARGET_CVNNI static inline __attribute__((always_inline)) __m512i
qk__cq_row(const uint8_t *p, size_t sw, __m512i even) {
    if (sw == 1) return _mm512_loadu_si512((const void *)p);
    return _mm512_permutex2var_epi32(_mm512_loadu_si512((const void *)p), even,
                                     _mm512_loadu_si512((const void *)(p + 64)));
}

QK_TARGET_CVNNI static inline __attribute__((always_inline)) void
qk__panel_cq8_body(const uint8_t *src, size_t plane4, const size_t *tapoff, size_t taps,
                   size_t nq, size_t nseg, const size_t *start, const size_t *base, size_t sw,
                   uint8_t *panel) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    __mmask16 ms[4] = {0, 0, 0, 0};
    for (size_t r = 1; r < nseg; r++) ms[r] = (__mmask16)(0xFFFFu << start[r]);
    for (size_t t = 0; t < taps; t++) {
        const uint8_t *p0 = src + (tapoff[t] + base[0]) * 4;
        for (size_t cq = 0; cq < nq; cq++) {
            __m512i v = qk__cq_row(p0 + cq * plane4, sw, even);
            for (size_t r = 1; r < nseg; r++)
                v = _mm512_mask_mov_epi32(
                    v, ms[r], qk__cq_row(src + (tapoff[t] + base[r]) * 4 + cq * plane4, sw, even));
            _mm512_store_si512((void *)(panel + (t * nq + cq) * 64), v);
        }
    }
}

QK_TARGET_CVNNI static void qk__panel_cq8_s1(const uint8_t *src, size_t plane4,
                                             const size_t *tapoff, size_t taps, size_t nq,
                                             size_t nseg, const size_t *start, const size_t *base,
                                             uint8_t *panel) {
    qk__panel_cq8_body(src, plane4, tapoff, taps, nq, nseg, start, base, 1, panel);
}

QK_TARGET_CVNNI static void qk__panel_cq8_s2(const uint8_t *src, size_t plane4,
                                             const size_t *tapoff, size_t taps, size_t nq,
                                             size_t nseg, const size_t *start, const size_t *base,
                                             uint8_t *panel) {
    qk__panel_cq8_body(src, plane4, tapoff, taps, nq, nseg, start, base, 2, panel);
}
#endif

int qk__pad_quad8(const uint8_t *src, size_t plane_in, size_t rows, size_t n, uint8_t flip,
                  uint8_t fill, size_t pad_top, size_t pad_left, size_t hp, size_t wp,
                  uint8_t *d) {
#if QK_X86
    if (qk__use_vnni()) {
        qk__pad_quad8_avx512(src, plane_in, rows, n, flip, fill, pad_top, pad_left, hp, wp, d);
        return 1;
    }
#endif
    (void)src, (void)plane_in, (void)rows, (void)n, (void)flip, (void)fill, (void)pad_top;
    (void)pad_left, (void)hp, (void)wp, (void)d;
    return 0;
}

void qk__panel_cq8(const uint8_t *src, size_t plane4, const size_t *tapoff, size_t taps,
                   size_t nq, size_t nseg, const size_t *start, const size_t *base, size_t sw,
                   uint8_t *panel) {
#if QK_X86
    if (sw == 1)
        qk__panel_cq8_s1(src, plane4, tapoff, taps, nq, nseg, start, base, panel);
    else
        qk__panel_cq8_s2(src, plane4, tapoff, taps, nq, nseg, start, base, panel);
#else
    (void)src, (void)plane4, (void)tapoff, (void)taps, (void)nq, (void)nseg, (void)start;
    (void)base, (void)sw, (void)panel;
#endif
}
