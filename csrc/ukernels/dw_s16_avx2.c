/* dw_s16_avx2.c -- the int16 depthwise plane on AVX2 (twin: dw_s16_scalar.c). */
#include "ukernels/simd_avx2.h"

#if QK_X86
/* 16 outputs of a row at a time; taps are taken in pairs, interleaved (unpacklo/hi) and
 * multiplied by the weight pair with vpmaddwd (exact for |x|, |w| <= 255); an odd last tap pairs
 * with weight 0. The last block of a row computes 16 outputs and keeps ow - j of them: reads may
 * run up to 2 * 16 + 31 elements past the last input the plane needs (the caller provides that
 * slack; the extra lanes are discarded). Strides other than 1 and 2: the scalar twin. */
QK_TARGET_AVX2 void qk_dw_plane__avx2(const int16_t *x, size_t wp, const int16_t *w, size_t kh,
                                      size_t kw, size_t stride_h, size_t stride_w, size_t dil_h,
                                      size_t dil_w, size_t oh, size_t ow, int32_t *out) {
    size_t off[QK_DW_S16_MAXT + 1];
    int32_t wpair[QK_DW_S16_MAXT / 2 + 1];
    if (!qk__dw_s16_taps(w, kh, kw, stride_w, dil_h, dil_w, wp, off, wpair)) {
        qk_dw_plane__scalar(x, wp, w, kh, kw, stride_h, stride_w, dil_h, dil_w, oh, ow, out);
        return;
    }
    const size_t taps = kh * kw;
    int32_t tmp[16];
    for (size_t i = 0; i < oh; i++) {
        const int16_t *xrow = x + i * stride_h * wp;
        int32_t *orow = out + i * ow;
        for (size_t j = 0; j < ow; j += 16) {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            const int16_t *base = xrow + j * stride_w;
            for (size_t t = 0; t < taps; t += 2) {
                const __m256i v0 = qk__load16_s16__avx2(base + off[t], stride_w);
                const __m256i v1 = qk__load16_s16__avx2(base + off[t + 1], stride_w);
                const __m256i wv = _mm256_set1_epi32(wpair[t / 2]);
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(v0, v1), wv));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(v0, v1), wv));
            }
            int32_t *dst = j + 16 <= ow ? orow + j : tmp;
            _mm256_storeu_si256((__m256i *)dst, _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(dst + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
            if (dst == tmp)
                for (size_t q = 0; j + q < ow; q++) orow[j + q] = tmp[q];
        }
    }
}
/* The same sums with the output stage in registers (fp32 scheme to 8 bits: qk__epilogue_fused):
 * each block of 16 outputs through qk__fp32_row16__avx2 (the bits of qk_epilogue_run), the row's
 * last block keeping ow - j bytes (writing 16 where they stay in the plane: see below); no int32
 * plane; nothing written past the plane. Strides other than 1 and 2: the scalar twin. */
QK_TARGET_AVX2 void qk_dw_plane_fused__avx2(const int16_t *x, size_t wp, const int16_t *w,
                                            size_t kh, size_t kw, size_t stride_h,
                                            size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                                            size_t ow, const qk_epilogue *ep, size_t o,
                                            uint8_t *y) {
    size_t off[QK_DW_S16_MAXT + 1];
    int32_t wpair[QK_DW_S16_MAXT / 2 + 1];
    if (!qk__dw_s16_taps(w, kh, kw, stride_w, dil_h, dil_w, wp, off, wpair)) {
        qk_dw_plane_fused__scalar(x, wp, w, kh, kw, stride_h, stride_w, dil_h, dil_w, oh, ow, ep,
                                  o, y);
        return;
    }
    const size_t taps = kh * kw;
    qk__fp32_ch k;
    qk__fp32_ch__avx2(ep, o, &k);
    for (size_t i = 0; i < oh; i++) {
        const int16_t *xrow = x + i * stride_h * wp;
        for (size_t j = 0; j < ow; j += 16) {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            const int16_t *base = xrow + j * stride_w;
            for (size_t t = 0; t < taps; t += 2) {
                const __m256i v0 = qk__load16_s16__avx2(base + off[t], stride_w);
                const __m256i v1 = qk__load16_s16__avx2(base + off[t + 1], stride_w);
                const __m256i wv = _mm256_set1_epi32(wpair[t / 2]);
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(v0, v1), wv));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(v0, v1), wv));
            }
            /* a row's last block stores all 16 bytes while they stay in the plane: those past
             * the row are the next row's first, which it writes afterwards (a short store
             * costs more than the block on rows of 7 to 56) */
            const size_t left = (oh - i) * ow - j;
            qk__fp32_row16__avx2(&k, _mm256_permute2x128_si256(lo, hi, 0x20),
                                 _mm256_permute2x128_si256(lo, hi, 0x31),
                                 left >= 16 ? 16 : ow - j, y + i * ow + j);
        }
    }
}
#endif
