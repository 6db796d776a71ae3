/* linear_vnni.c -- qk_linear on the 8-bit path (weights packed while the level is AVX512-VNNI):
 * the driver of the 6 x 64 tiles of ukernels/linear_u8_avx512vnni.c.
 *
 * The rows are read straight from x when K is a multiple of 4 (int8 x turned into u8 x + 128 by
 * the kernel); otherwise from a u8 copy, K padded with zeros to k4. The per-channel terms
 * (zero-point correction, bias, scale) are laid out once per call, 16 channels a panel.
 * Work: jobs of (a group of 4 panels = 64 channels) x (a chunk of row blocks), group-major so
 * a thread's consecutive jobs reuse the group's panels from cache. Every element is computed the
 * same way whatever the split: the result does not depend on the thread count.
 */
#include "operators/operators.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { QK__L8_MR = 6, QK__L8_NZ = 4 }; /* rows and panels of a kernel block */

typedef struct {
    qk_linear_u8_args k; /* the kernel's operands */
    size_t m, panels, groups, rchunks, rows_per_chunk;
    _Atomic int status;
} qk__l8_ctx;

static void qk__l8_jobs(void *vctx, size_t j0, size_t j1) {
    qk__l8_ctx *c = (qk__l8_ctx *)vctx;
    const qk_linear_u8_fn kernel = qk__uk()->linear_u8;
    for (size_t j = j0; j < j1; j++) {
        const size_t g = j / c->rchunks, rc = j % c->rchunks;
        const size_t p0 = g * QK__L8_NZ;
        const size_t nz = c->panels - p0 < QK__L8_NZ ? c->panels - p0 : QK__L8_NZ;
        const size_t rbeg = rc * c->rows_per_chunk;
        const size_t rend = rbeg + c->rows_per_chunk < c->m ? rbeg + c->rows_per_chunk : c->m;
        if (kernel(&c->k, rbeg, rend, p0, nz) != QK_OK)
            atomic_store(&c->status, QK_ERR_OVERFLOW);
    }
}

qk_status qk__linear_vnni(const qk_packed_weights *w, const void *x, qk_dtype xt, size_t m,
                          int32_t xz8, const qk_epilogue *ep, void *y, int threads) {
    const qk__ukernels *uk = qk__uk();
    if (uk->linear_u8 == NULL) return QK_ERR_ARG; /* not packed at this level: never reached */
    const size_t n = w->n, k = w->k, k4 = w->k4;
    const size_t panels = (n + QK_GEMM_NR - 1) / QK_GEMM_NR, np = panels * QK_GEMM_NR;
    /* rows straight from x when whole quads cover K (int8 x: flipped to u8 in the kernel) */
    const int direct = (k & 3) == 0;
    const int any_wz = w->any_wzp8;
    /* one allocation: cb, wz, fb, sc, mul, shf (np each), rowsum (m), then the u8 copy of x */
    const size_t head = 6 * np * 4 + (any_wz ? m * 4 : 0);
    const size_t hpad = (head + 63) & ~(size_t)63;
    char *mem = (char *)malloc(hpad + (direct ? 0 : m * k4));
    if (mem == NULL) return QK_ERR_NOMEM;
    uint32_t *cb = (uint32_t *)mem;
    int32_t *wz = (int32_t *)(cb + np);
    float *fb = (float *)(wz + np);
    float *sc = fb + np;
    int32_t *mul = (int32_t *)(sc + np);
    int32_t *shf = mul + np;
    uint32_t *rowsum = (uint32_t *)(shf + np);
    const int flt = ep->scheme == QK_REQ_FLOAT;
    const int fx = qk__epilogue_fx(ep);
    const int vec = flt || fx || qk__epilogue_vec(ep);
    uk->linear_u8_setup(n, k, w->wzp8, w->colsum, xz8, ep, vec, np, cb, wz, fb, sc);
    if (fx)
        for (size_t o = 0; o < np; o++) {
            mul[o] = o < n ? ep->multiplier[o] : 0;
            shf[o] = o < n ? ep->shift[o] : 0;
        }
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
        for (size_t r = 0; r < m; r++)
            rowsum[r] = uk->sum_u8(a + r * lda, k, direct ? flip : 0);
    qk__l8_ctx c;
    memset(&c, 0, sizeof c);
    c.k.a = a;
    c.k.lda = lda;
    c.k.flip = direct && flip;
    c.k.kq = k4 / 4;
    c.k.b = w->data8;
    c.k.bstride = k4 * QK_GEMM_NR;
    c.k.ep = ep;
    c.k.fp32 = ep->scheme == QK_REQ_FP32;
    c.k.vec = vec;
    c.k.flt = flt;
    c.k.fx = fx;
    c.k.half_up = ep->scheme == QK_REQ_DOUBLE_HALF_UP;
    c.k.mul = mul;
    c.k.shf = shf;
    c.k.any_wz = any_wz;
    c.k.cb = cb;
    c.k.wz = wz;
    c.k.fb = fb;
    c.k.sc = sc;
    c.k.rowsum = rowsum;
    c.k.n = n;
    c.k.y = (char *)y;
    c.k.osz = qk__dtype_size(ep->out_type);
    c.m = m;
    c.panels = panels;
    c.groups = (panels + QK__L8_NZ - 1) / QK__L8_NZ;
    atomic_init(&c.status, QK_OK);
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
}
