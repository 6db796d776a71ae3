/* gelu_isa.h -- the int32-input i-GELU loop with 8-bit output of gelu.c, written once for every
 * ISA (gelu.c defines QK_V_IS512 as 0 or 1 and includes it after qk__igelu_out and
 * qk__igelu_fc; the primitives are elementwise/simd_v.h). No include guard: it is included once
 * per ISA. The arithmetic and why it is exact: gelu.c, "int32 input, 8-bit output". */
#include "elementwise/simd_v.h"

/* Elements [0, n) of x (channel i's constants at index i when pc, else index 0); returns the
 * elements done (a multiple of the lanes). Lanes whose float value is within 2^-12 of a rounding
 * tie are redone by the exact scalar qk__igelu_out. */
QK_V_TARGET static size_t QK__N(qk__igelu32f_)(const qk__igelu_fc *f, int pc,
                                              const qk_gelu_ibert_params *p, const int32_t *x,
                                              size_t n, uint8_t *y, int is_signed, int32_t zp,
                                              int32_t lo, int32_t hi) {
    (void)is_signed; /* AVX-512 truncates; AVX2 packs with it */
    const QK_VF flo = QK_VF_SET1((float)(lo - zp)), fhi = QK_VF_SET1((float)(hi - zp));
    const QK_VF near_tie = QK_VF_SET1(0.5f - 0x1p-12f);
    const QK_V vzp = QK_V_SET1(zp), r14 = QK_V_SET1(16383), zero = QK_V_SET1(0);
    QK_V nb = QK_V_SET1(f->nb[0]), cl = QK_V_SET1(f->cl[0]);
    QK_V ap = QK_V_SET1(f->ap[0]), an = QK_V_SET1(f->an[0]);
    QK_VF mf = QK_VF_SET1(f->mf[0]);
    size_t i = 0;
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        if (pc) {
            nb = QK_V_LOAD(f->nb + i);
            cl = QK_V_LOAD(f->cl + i);
            ap = QK_V_LOAD(f->ap + i);
            an = QK_V_LOAD(f->an + i);
            mf = QK_VF_LOAD(f->mf + i);
        }
        const QK_V xv = QK_V_LOAD(x + i);
        /* t = min(|x|, -b) + b in [b, 0]; u = t^2 + (c mod 2^14) < 2^32 (unsigned lanes) */
        const QK_V t = QK_V_SUB(QK_V_MINU(QK_V_ABS(xv), nb), nb);
        const QK_V u = QK_V_ADD(QK_V_MULLO(t, t), cl);
        /* K = L + shift: x > 0: (cH + shift) + floor(u / 2^14); else (shift - cH) - ceil(u / 2^14) */
        const QK_V kp = QK_V_ADD(ap, QK_V_SRLI(u, 14));
        const QK_V kn = QK_V_SUB(an, QK_V_SRLI(QK_V_ADD(u, r14), 14));
        const QK_V k = QK_V_SELECT(QK_V_GT(xv, zero), kp, kn);
        /* v = -x K M / 2^E in float (mf = -fl(M 2^-E)), clamped to the output's range */
        const QK_VF v = QK_VF_MUL(QK_VF_MUL(QK_VF_CVT(xv), QK_VF_CVT(k)), mf);
        const QK_VF w = QK_VF_MIN(QK_VF_MAX(v, flo), fhi);
        const QK_VF r = QK_VF_ROUND_RNE(w);
        const QK_VM tie = QK_VF_GE(QK_VF_ABS(QK_VF_SUB(w, r)), near_tie);
        QK_V_STORE_8(y + i, QK_V_ADD(QK_V_CVT_RNE(r), vzp), is_signed);
        if (QK_VM_ANY(tie)) {
            unsigned bits = QK_VM_BITS(tie);
            while (bits) {
                const int l = __builtin_ctz(bits);
                bits &= bits - 1;
                y[i + l] = (uint8_t)qk__igelu_out(p, pc ? i + l : 0, x[i + l], zp, lo, hi);
            }
        }
    }
    return i;
}
