/* linear_vnni.c -- qk_linear on the AVX512-VNNI 8-bit path.
 *
 * Register tile: 6 rows of x (u8 dwords broadcast) x up to 4 zmm of output channels (4 weight
 * panels [k4/4][16][4] read side by side: no repacking), so one k-quad costs 6 broadcasts and 4
 * loads for 24 vpdpbusd. The rows are read straight from x when K is a multiple of 4 (int8 x
 * turned into u8 x + 128 by a vpxord of each broadcast; otherwise from a u8 copy, K padded with
 * zeros to k4); rows of a partial block
 * repeat the last row (computed, never stored). The k loop keeps the 24 accumulators in
 * registers; the 6 x 64 tile then goes through the stack (the output stage needs registers of
 * its own: keeping both in registers measured no faster) and straight into y:
 * v = raw + (corr[o] + bias[o]) - wzp8[o] * rowsum (mod 2^32, the rowsum term only when some
 * wzp8 != 0), then the fp32 / int32 epilogue of vnni.c's qk__out16, lane for lane: the same
 * operations in the same order as the scalar qk__epi1, so the same bits. Other schemes (fixed
 * point, shifts): the same integer corrections without the bias, then the shared
 * qk__epilogue_channels (which adds it).
 * Measured on Zen 4 (1 core): ~218 GMAC/s on the DeiT-small shapes, the vpdpbusd issue rate of
 * a plain loop of independent vpdpbusd (one zmm a cycle).
 *
 * Work: jobs of (a group of 4 panels = 64 channels) x (a chunk of row blocks), group-major so
 * a thread's consecutive jobs reuse the group's panels from cache. Every element is computed the
 * same way whatever the split: the result does not depend on the thread count.
 */
#include "gemm/gemm_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if QK_X86
#include <immintrin.h>
#define QK_TARGET_VNNI \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

enum { QK__L8_MR = 6, QK__L8_NZ = 4 };

typedef struct {
    const uint8_t *a;      /* rows of u8, lda bytes apart, at least 4 * kq readable each */
    size_t lda, m, kq;
    const int8_t *b;       /* w->data8 */
    size_t bstride;        /* bytes between panels: k4 * 16 */
    size_t panels, groups, rchunks, rows_per_chunk;
    const qk_epilogue *ep;
    int fp32, any_wz;
    int flip;              /* a holds int8 x: bytes ^ 0x80 before use */
    int vec;               /* fp32 / int32 scheme: the output stage below; else the shared
                              qk__epilogue_channels on the corrected tile (cb without bias) */
    _Atomic int status;
    const uint32_t *cb;    /* panels * 16: corr[o] + bias[o] (mod 2^32), 0 past n */
    const int32_t *wz;     /* panels * 16: wzp8[o], 0 past n */
    const float *fb, *sc;  /* panels * 16: float_bias[o] (0 when absent), scale[o] (fp32) */
    const uint32_t *rowsum;/* m (when any_wz) */
    size_t n;
    char *y;
    size_t osz;
} qk__l8_ctx;


/* One block: rows r0 .. r0+mr-1 (mr <= 6), panels p0 .. p0+NZ-1 (channels o0 = 16 p0 ..). */
QK_TARGET_VNNI static inline __attribute__((always_inline)) void
qk__l8_block(const qk__l8_ctx *c, size_t r0, size_t mr, size_t p0, const int NZ, const int FLIP) {
    const size_t lda = c->lda, kq = c->kq;
    const uint8_t *a0 = c->a + r0 * lda;
    const uint8_t *ar[QK__L8_MR];
    for (size_t r = 0; r < QK__L8_MR; r++) ar[r] = a0 + (r < mr ? r : mr - 1) * lda;
    const int8_t *b = c->b + p0 * c->bstride;
    const size_t bs = c->bstride;
    /* the k loop on named registers (arrays there make GCC shuffle and spill accumulators) */
#define QK__L8_Z(r, z) __m512i c##r##z = _mm512_setzero_si512();
#define QK__L8_R(r) QK__L8_Z(r, 0) QK__L8_Z(r, 1) QK__L8_Z(r, 2) QK__L8_Z(r, 3)
    QK__L8_R(0) QK__L8_R(1) QK__L8_R(2) QK__L8_R(3) QK__L8_R(4) QK__L8_R(5)
#undef QK__L8_Z
    const uint8_t *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    const uint8_t *a0r = ar[0];
    const __m512i vflip = _mm512_set1_epi32((int32_t)0x80808080u); /* int8 x: x + 128 as u8 */
    for (size_t p = 0; p < kq; p++) {
        const int8_t *bp = b + 64 * p;
        const __m512i b0 = _mm512_loadu_si512((const void *)bp);
        const __m512i b1 = NZ > 1 ? _mm512_loadu_si512((const void *)(bp + bs)) : b0;
        const __m512i b2 = NZ > 2 ? _mm512_loadu_si512((const void *)(bp + 2 * bs)) : b0;
        const __m512i b3 = NZ > 3 ? _mm512_loadu_si512((const void *)(bp + 3 * bs)) : b0;
#define QK__L8_STEP(r, ap)                                                     \
        {                                                                      \
            __m512i av = _mm512_set1_epi32(qk__ld32(ap + 4 * p));           \
            if (FLIP) av = _mm512_xor_si512(av, vflip);                        \
            c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, b0);                    \
            if (NZ > 1) c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, b1);        \
            if (NZ > 2) c##r##2 = _mm512_dpbusd_epi32(c##r##2, av, b2);        \
            if (NZ > 3) c##r##3 = _mm512_dpbusd_epi32(c##r##3, av, b3);        \
        }
        QK__L8_STEP(0, a0r) QK__L8_STEP(1, a1) QK__L8_STEP(2, a2) QK__L8_STEP(3, a3)
        QK__L8_STEP(4, a4) QK__L8_STEP(5, a5)
#undef QK__L8_STEP
    }
    /* through a tile in memory (see the top of the file) */
    int32_t tile[QK__L8_MR][64];
#define QK__L8_Z(r, z) if (z < NZ) _mm512_storeu_si512((void *)&tile[r][16 * z], c##r##z);
    QK__L8_R(0) QK__L8_R(1) QK__L8_R(2) QK__L8_R(3) QK__L8_R(4) QK__L8_R(5)
#undef QK__L8_Z
#undef QK__L8_R
    /* output stage */
    const qk_epilogue *ep = c->ep;
    const size_t o0 = 16 * p0;
    const size_t cols = c->n - o0; /* channels left from o0 (> 0) */
    const __m512 flo = _mm512_set1_ps(qk__ep_flo(ep));
    const __m512 fhi = _mm512_set1_ps(qk__ep_fhi(ep));
    const __m512i vzp = _mm512_set1_epi32(ep->zero_point);
    __mmask16 mask[QK__L8_NZ];
#pragma GCC unroll 4
    for (int z = 0; z < NZ; z++) {
        const size_t left = cols > 16 * (size_t)z ? cols - 16 * (size_t)z : 0;
        mask[z] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    }
    if (!c->vec) {
        const size_t cnt = cols < 16 * (size_t)NZ ? cols : 16 * (size_t)NZ;
        for (size_t r = 0; r < mr; r++) {
            const uint32_t rs = c->any_wz ? c->rowsum[r0 + r] : 0u;
            int32_t *t = tile[r];
            for (size_t q = 0; q < cnt; q++)
                t[q] = (int32_t)((uint32_t)t[q] + c->cb[o0 + q] - (uint32_t)c->wz[o0 + q] * rs);
            if (qk__epilogue_channels(ep, o0, t, cnt,
                                      c->y + ((r0 + r) * c->n + o0) * c->osz) != QK_OK)
                atomic_store((_Atomic int *)&c->status, QK_ERR_OVERFLOW);
        }
        return;
    }
    const int any_wz = c->any_wz, fp32 = c->fp32;
    const uint32_t *cb = c->cb + o0;
    const int32_t *wz = c->wz + o0;
    const float *fb = c->fb + o0, *sc = c->sc + o0;
    const size_t ystride = c->n * c->osz;
    char *y0 = c->y + (r0 * c->n + o0) * c->osz;
#define QK__L8_OUT(r, z)                                                                       \
    if (z < NZ) {                                                                              \
        __m512i v = _mm512_add_epi32(_mm512_loadu_si512((const void *)&tile[r][16 * z]),      \
                                     _mm512_loadu_si512((const void *)(cb + 16 * z)));         \
        if (any_wz)                                                                            \
            v = _mm512_sub_epi32(v, _mm512_mullo_epi32(                                        \
                    _mm512_loadu_si512((const void *)(wz + 16 * z)), vrs));                    \
        if (!fp32) {                                                                           \
            _mm512_mask_storeu_epi32(yr + 64 * z, mask[z], v);                                 \
        } else {                                                                               \
            __m512 f = _mm512_cvtepi32_ps(v);                                                  \
            f = _mm512_add_ps(f, _mm512_loadu_ps(fb + 16 * z));                                \
            f = _mm512_mul_ps(f, _mm512_loadu_ps(sc + 16 * z));                                \
            f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);                                     \
            __m128i q = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), vzp));    \
            __asm__("" : "+v"(q)); /* register vpmovdb, then a store (vnni.c qk__out16) */     \
            _mm_mask_storeu_epi8(yr + 16 * z, mask[z], q);                                     \
        }                                                                                      \
    }
#define QK__L8_ROW(r)                                                                          \
    if (r < mr) {                                                                              \
        char *yr = y0 + r * ystride;                                                           \
        const __m512i vrs = any_wz ? _mm512_set1_epi32((int32_t)c->rowsum[r0 + r])             \
                                   : _mm512_setzero_si512();                                   \
        QK__L8_OUT(r, 0) QK__L8_OUT(r, 1) QK__L8_OUT(r, 2) QK__L8_OUT(r, 3)                    \
    }
    QK__L8_ROW(0) QK__L8_ROW(1) QK__L8_ROW(2) QK__L8_ROW(3) QK__L8_ROW(4) QK__L8_ROW(5)
#undef QK__L8_ROW
#undef QK__L8_OUT
}

QK_TARGET_VNNI static void qk__l8_block4(const qk__l8_ctx *c, size_t r0, size_t mr, size_t p0) {
    qk__l8_block(c, r0, mr, p0, 4, 0);
}
QK_TARGET_VNNI static void qk__l8_block4f(const qk__l8_ctx *c, size_t r0, size_t mr, size_t p0) {
    qk__l8_block(c, r0, mr, p0, 4, 1);
}
QK_TARGET_VNNI static void qk__l8_block3(const qk__l8_ctx *c, size_t r0, size_t mr, size_t p0) {
    qk__l8_block(c, r0, mr, p0, 3, 0);
}
QK_TARGET_VNNI static void qk__l8_block3f(const qk__l8_ctx *c, size_t r0, size_t mr, size_t p0) {
    qk__l8_block(c, r0, mr, p0, 3, 1);
}
QK_TARGET_VNNI static void qk__l8_block2(const qk__l8_ctx *c, size_t r0, size_t mr, size_t p0) {
    qk__l8_block(c, r0, mr, p0, 2, 0);
}
QK_TARGET_VNNI static void qk__l8_block2f(const qk__l8_ctx *c, size_t r0, size_t mr, size_t p0) {
    qk__l8_block(c, r0, mr, p0, 2, 1);
}
QK_TARGET_VNNI static void qk__l8_block1(const qk__l8_ctx *c, size_t r0, size_t mr, size_t p0) {
    qk__l8_block(c, r0, mr, p0, 1, 0);
}
QK_TARGET_VNNI static void qk__l8_block1f(const qk__l8_ctx *c, size_t r0, size_t mr, size_t p0) {
    qk__l8_block(c, r0, mr, p0, 1, 1);
}

/* sum of the n bytes s[i] ^ flip (vpsadbw, 64 at a time, a masked tail) */
QK_TARGET_VNNI static uint32_t qk__l8_sum(const uint8_t *s, size_t n, uint8_t flip) {
    const __m512i vf = _mm512_set1_epi8((char)flip);
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(
            _mm512_xor_si512(_mm512_loadu_si512((const void *)(s + i)), vf), _mm512_setzero_si512()));
    if (i < n) {
        const __mmask64 m = (__mmask64)((~0ull) >> (64 - (n - i)));
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(
            _mm512_maskz_mov_epi8(m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, s + i), vf)),
            _mm512_setzero_si512()));
    }
    return (uint32_t)_mm512_reduce_add_epi64(acc);
}

/* The per-channel vectors of a call, 16 channels at a time (masked past n; zeros there):
 * cb = k * xz8 * wzp8 - xz8 * colsum [+ bias when vec] (mod 2^32), wz, fb (0 without a float
 * bias), sc. */
QK_TARGET_VNNI static void qk__l8_setup(const qk_packed_weights *w, int32_t xz8,
                                        const qk_epilogue *ep, uint32_t *cb, int32_t *wz,
                                        float *fb, float *sc, size_t np, int vec) {
    const size_t n = w->n;
    const __m512i kx = _mm512_set1_epi32((int32_t)((uint32_t)w->k * (uint32_t)xz8));
    const __m512i vx = _mm512_set1_epi32(xz8);
    for (size_t o = 0; o < np; o += 16) {
        const __mmask16 m = n - o >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - o)) - 1u);
        const __m512i z = _mm512_maskz_loadu_epi32(m, w->wzp8 + o);
        __m512i v = _mm512_sub_epi32(_mm512_mullo_epi32(kx, z),
                                     _mm512_mullo_epi32(vx, _mm512_maskz_loadu_epi32(m, w->colsum + o)));
        if (ep->bias && vec) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(m, ep->bias + o));
        _mm512_storeu_si512((void *)(cb + o), v);
        _mm512_storeu_si512((void *)(wz + o), z);
        _mm512_storeu_ps(fb + o, ep->float_bias ? _mm512_maskz_loadu_ps(m, ep->float_bias + o)
                                                : _mm512_setzero_ps());
        _mm512_storeu_ps(sc + o, ep->scale ? _mm512_maskz_loadu_ps(m, ep->scale + o)
                                           : _mm512_setzero_ps());
    }
}

static void qk__l8_jobs(void *vctx, size_t j0, size_t j1) {
    const qk__l8_ctx *c = (const qk__l8_ctx *)vctx;
    for (size_t j = j0; j < j1; j++) {
        const size_t g = j / c->rchunks, rc = j % c->rchunks;
        const size_t p0 = g * QK__L8_NZ;
        const size_t nz = c->panels - p0 < QK__L8_NZ ? c->panels - p0 : QK__L8_NZ;
        const size_t rbeg = rc * c->rows_per_chunk;
        const size_t rend = rbeg + c->rows_per_chunk < c->m ? rbeg + c->rows_per_chunk : c->m;
        for (size_t r = rbeg; r < rend; r += QK__L8_MR) {
            const size_t mr = rend - r < QK__L8_MR ? rend - r : QK__L8_MR;
            if (c->flip) {
                switch (nz) {
                    case 4: qk__l8_block4f(c, r, mr, p0); break;
                    case 3: qk__l8_block3f(c, r, mr, p0); break;
                    case 2: qk__l8_block2f(c, r, mr, p0); break;
                    default: qk__l8_block1f(c, r, mr, p0); break;
                }
            } else {
                switch (nz) {
                    case 4: qk__l8_block4(c, r, mr, p0); break;
                    case 3: qk__l8_block3(c, r, mr, p0); break;
                    case 2: qk__l8_block2(c, r, mr, p0); break;
                    default: qk__l8_block1(c, r, mr, p0); break;
                }
            }
        }
    }
}
#endif

qk_status qk__linear_vnni(const qk_packed_weights *w, const void *x, qk_dtype xt, size_t m,
                          int32_t xz8, const qk_epilogue *ep, void *y, int threads) {
#if QK_X86
    const size_t n = w->n, k = w->k, k4 = w->k4;
    const size_t panels = (n + QK_GEMM_NR - 1) / QK_GEMM_NR, np = panels * QK_GEMM_NR;
    /* rows straight from x when whole quads cover K (int8 x: flipped to u8 in the kernel) */
    const int direct = (k & 3) == 0;
    const int any_wz = w->any_wzp8;
    /* one allocation: cb, wz, fb, sc (np each), rowsum (m), then the u8 copy of x */
    const size_t head = 4 * np * 4 + (any_wz ? m * 4 : 0);
    const size_t hpad = (head + 63) & ~(size_t)63;
    char *mem = (char *)malloc(hpad + (direct ? 0 : m * k4));
    if (mem == NULL) return QK_ERR_NOMEM;
    uint32_t *cb = (uint32_t *)mem;
    int32_t *wz = (int32_t *)(cb + np);
    float *fb = (float *)(wz + np);
    float *sc = fb + np;
    uint32_t *rowsum = (uint32_t *)(sc + np);
    const int vec = ep->scheme == QK_REQ_FP32 || ep->scheme == QK_REQ_NONE;
    qk__l8_setup(w, xz8, ep, cb, wz, fb, sc, np, vec);
    const uint8_t *a = (const uint8_t *)x;
    size_t lda = k;
    const uint8_t flip = xt == QK_DT_S8 ? 0x80 : 0;
    if (!direct) {
        uint8_t *abuf = (uint8_t *)(mem + hpad);
        for (size_t r = 0; r < m; r++) {
            const uint8_t *s = (const uint8_t *)x + r * k;
            uint8_t *d = abuf + r * k4;
            for (size_t i = 0; i < k; i++) d[i] = (uint8_t)(s[i] ^ flip);
            for (size_t i = k; i < k4; i++) d[i] = 0;
        }
        a = abuf;
        lda = k4;
    }
    if (any_wz)
        for (size_t r = 0; r < m; r++) rowsum[r] = qk__l8_sum(a + r * lda, k, direct ? flip : 0);
    qk__l8_ctx c;
    memset(&c, 0, sizeof c);
    c.a = a;
    c.lda = lda;
    c.flip = direct && flip;
    c.m = m;
    c.kq = k4 / 4;
    c.b = w->data8;
    c.bstride = k4 * QK_GEMM_NR;
    c.panels = panels;
    c.groups = (panels + QK__L8_NZ - 1) / QK__L8_NZ;
    c.ep = ep;
    c.fp32 = ep->scheme == QK_REQ_FP32;
    c.vec = vec;
    atomic_init(&c.status, QK_OK);
    c.any_wz = any_wz;
    c.cb = cb;
    c.wz = wz;
    c.fb = fb;
    c.sc = sc;
    c.rowsum = rowsum;
    c.n = n;
    c.y = (char *)y;
    c.osz = qk__dtype_size(ep->out_type);
    const size_t t = threads < 1 ? 1 : (size_t)threads;
    const size_t blocks = (m + QK__L8_MR - 1) / QK__L8_MR;
    size_t rchunks = 1;
    if (t > 1) { /* about 16 jobs a thread (the pool claims them dynamically) */
        rchunks = (16 * t + c.groups - 1) / c.groups;
        if (rchunks > blocks) rchunks = blocks;
    }
    const size_t bpc = (blocks + rchunks - 1) / rchunks;
    c.rows_per_chunk = bpc * QK__L8_MR;
    c.rchunks = (m + c.rows_per_chunk - 1) / c.rows_per_chunk;
    qk__parallel(c.groups * c.rchunks, (int)t, qk__l8_jobs, &c);
    free(mem);
    return (qk_status)atomic_load(&c.status);
#else
    (void)w; (void)x; (void)xt; (void)m; (void)xz8; (void)ep; (void)y; (void)threads;
    return QK_ERR_ARG;
#endif
}
