/* epilogue.c -- the output stage shared by qk_linear and qk_conv2d: int32 bias, requantization
 * (fp32 / double_round / single_round / shifts, the cores of requantize.c), zero point, clamp;
 * the accumulator bound check; and the small thread pool split. */
#define _POSIX_C_SOURCE 200809L /* sysconf */
#include "gemm/gemm_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

qk_status qk__epilogue_check(const qk_epilogue *ep, size_t n) {
    if (ep == NULL) return QK_ERR_ARG;
    const qk_requant_scheme s = ep->scheme;
    if ((int)s < (int)QK_REQ_NONE || (int)s > (int)QK_REQ_SHIFT_FLOOR) return QK_ERR_ARG;
    if (s == QK_REQ_NONE) {
        if (ep->out_type != QK_DT_S32 || ep->float_bias != NULL) return QK_ERR_ARG;
        return QK_OK;
    }
    if (ep->out_type != QK_DT_U8 && ep->out_type != QK_DT_S8) return QK_ERR_ARG;
    if (ep->float_bias != NULL && s != QK_REQ_FP32) return QK_ERR_ARG;
    const int64_t tmin = ep->out_type == QK_DT_U8 ? 0 : -128;
    const int64_t tmax = ep->out_type == QK_DT_U8 ? 255 : 127;
    qk_status st = qk__check_range(ep->zero_point, ep->act_min, ep->act_max, tmin, tmax);
    if (st != QK_OK) return st;
    if (s == QK_REQ_FP32) {
        if (ep->scale == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++) {
            if (!qk__scale_ok(ep->scale[o])) return QK_ERR_SCALE;
            if (ep->float_bias != NULL && !isfinite(ep->float_bias[o])) return QK_ERR_ARG;
        }
    } else if (s == QK_REQ_DOUBLE || s == QK_REQ_SINGLE) {
        if (ep->multiplier == NULL || ep->shift == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++) {
            if (ep->multiplier[o] < 0) return QK_ERR_MULTIPLIER;
            if (ep->shift[o] < -31 || ep->shift[o] > 30) return QK_ERR_SHIFT;
        }
    } else {
        if (ep->shift == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++)
            if (ep->shift[o] < -31 || ep->shift[o] > 31) return QK_ERR_SHIFT;
    }
    return QK_OK;
}

qk_status qk__bound_check(const qk_packed_weights *w, qk_dtype x_type, int32_t x_zp,
                          const qk_epilogue *ep) {
    if (x_type != QK_DT_U8 && x_type != QK_DT_S8) return QK_ERR_ARG;
    const int32_t lo = x_type == QK_DT_U8 ? 0 : -128, hi = x_type == QK_DT_U8 ? 255 : 127;
    if (x_zp < lo || x_zp > hi) return QK_ERR_ZERO_POINT;
    if (ep->wrap) return QK_OK;
    const int64_t xmax = (x_zp - lo) > (hi - x_zp) ? (x_zp - lo) : (hi - x_zp);
    for (size_t o = 0; o < w->n; o++) {
        int64_t b = ep->bias ? (int64_t)ep->bias[o] : 0;
        b = b < 0 ? -b : b;
        /* abs_sum <= 255 * 2^40, xmax <= 255: the product fits in int64 */
        if (xmax * w->abs_sum[o] + b > INT32_MAX) return QK_ERR_OVERFLOW;
    }
    return QK_OK;
}

static inline void qk__store(qk_dtype t, void *y, size_t i, int32_t v) {
    if (t == QK_DT_U8)
        ((uint8_t *)y)[i] = (uint8_t)v;
    else if (t == QK_DT_S8)
        ((int8_t *)y)[i] = (int8_t)v;
    else
        ((int32_t *)y)[i] = v;
}

/* One element; returns 0 on a strict double-round overflow. */
static inline int qk__epi1(const qk_epilogue *ep, size_t o, int32_t raw, int32_t *q) {
    const int32_t acc = ep->bias ? (int32_t)((uint32_t)raw + (uint32_t)ep->bias[o]) : raw;
    int64_t v;
    switch (ep->scheme) {
        case QK_REQ_NONE: *q = acc; return 1;
        case QK_REQ_FP32: {
            float f = (float)acc;
            if (ep->float_bias) f = f + ep->float_bias[o];
            f = f * ep->scale[o];
            const float flo = qk__ep_flo(ep);
            const float fhi = qk__ep_fhi(ep);
            f = f < flo ? flo : (f > fhi ? fhi : f);
            *q = (int32_t)nearbyintf(f) + ep->zero_point;
            return 1;
        }
        case QK_REQ_DOUBLE: {
            int32_t r;
            if (!qk__req_double(acc, ep->multiplier[o], ep->shift[o], &r)) {
                if (!ep->wrap) return 0;
                r = qk_mul_by_quantized_multiplier(acc, ep->multiplier[o], ep->shift[o]);
            }
            v = (int64_t)r;
            break;
        }
        case QK_REQ_SINGLE: v = qk__req_single(acc, ep->multiplier[o], ep->shift[o]); break;
        case QK_REQ_SHIFT_HALF_UP: v = qk__shift_round(acc, ep->shift[o], 0); break;
        case QK_REQ_SHIFT_HALF_EVEN: v = qk__shift_round(acc, ep->shift[o], 1); break;
        case QK_REQ_SHIFT_HALF_AWAY: v = qk__shift_round(acc, ep->shift[o], 2); break;
        default: v = qk__shift_round(acc, ep->shift[o], 3); break;
    }
    *q = (int32_t)qk__clamp64(v + ep->zero_point, ep->act_min, ep->act_max);
    return 1;
}

#if QK_X86
#include <immintrin.h>

/* The fp32 and int32 (no requantization) schemes, 8 elements at a time, bit-identical to
 * qk__epi1: vpaddd wraps like the uint32 add, cvtdq2ps and cvtps2dq round to nearest even as
 * the scalar conversions and nearbyintf do in the default rounding mode, and the clamp happens
 * on integral float bounds. per_ch: channel o + i for element i (linear); else channel o. */
QK_TARGET_AVX2 static size_t qk__epi_avx2(const qk_epilogue *ep, size_t o, int per_ch,
                                          const int32_t *src, size_t cnt, void *y) {
    const int fp32 = ep->scheme == QK_REQ_FP32;
    if (!fp32 && ep->scheme != QK_REQ_NONE) return 0;
    const __m256 flo = _mm256_set1_ps(qk__ep_flo(ep));
    const __m256 fhi = _mm256_set1_ps(qk__ep_fhi(ep));
    const __m256i vzp = _mm256_set1_epi32(ep->zero_point);
    const int is_s8 = ep->out_type == QK_DT_S8;
    size_t i = 0;
    for (; i + 8 <= cnt; i += 8) {
        __m256i acc = _mm256_loadu_si256((const __m256i *)(src + i));
        if (ep->bias)
            acc = _mm256_add_epi32(acc, per_ch ? _mm256_loadu_si256((const __m256i *)(ep->bias + o + i))
                                               : _mm256_set1_epi32(ep->bias[o]));
        if (!fp32) {
            _mm256_storeu_si256((__m256i *)((int32_t *)y + i), acc);
            continue;
        }
        __m256 f = _mm256_cvtepi32_ps(acc);
        if (ep->float_bias)
            f = _mm256_add_ps(f, per_ch ? _mm256_loadu_ps(ep->float_bias + o + i)
                                        : _mm256_set1_ps(ep->float_bias[o]));
        f = _mm256_mul_ps(f, per_ch ? _mm256_loadu_ps(ep->scale + o + i) : _mm256_set1_ps(ep->scale[o]));
        f = _mm256_min_ps(_mm256_max_ps(f, flo), fhi);
        const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(f), vzp);
        const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        const __m128i b8 = is_s8 ? _mm_packs_epi16(w16, w16) : _mm_packus_epi16(w16, w16);
        _mm_storel_epi64((__m128i *)((uint8_t *)y + i), b8);
    }
    return i;
}
#endif

static qk_status qk__epi_tail(const qk_epilogue *ep, size_t o, int per_ch, const int32_t *src,
                              size_t i, size_t cnt, void *y) {
    for (; i < cnt; i++) {
        int32_t q;
        if (!qk__epi1(ep, per_ch ? o + i : o, src[i], &q)) return QK_ERR_OVERFLOW;
        qk__store(ep->out_type, y, i, q);
    }
    return QK_OK;
}

qk_status qk__epilogue_run(const qk_epilogue *ep, size_t o, const int32_t *src, size_t cnt,
                           void *y) {
    size_t i = 0;
#if QK_X86
    if (qk__use_vnni()) i = qk__epilogue_run_avx512(ep, o, src, cnt, y);
    if (qk__use_avx2())
        i += qk__epi_avx2(ep, o, 0, src + i, cnt - i,
                          (char *)y + i * (ep->out_type == QK_DT_S32 ? 4 : 1));
#endif
    return qk__epi_tail(ep, o, 0, src, i, cnt, y);
}

qk_status qk__epilogue_channels(const qk_epilogue *ep, size_t o0, const int32_t *src, size_t cnt,
                                void *y) {
    size_t i = 0;
#if QK_X86
    if (qk__use_avx2()) i = qk__epi_avx2(ep, o0, 1, src, cnt, y);
#endif
    return qk__epi_tail(ep, o0, 1, src, i, cnt, y);
}

/* ---- threads ---------------------------------------------------------------------------
 * Dynamic split: the calling thread and up to threads - 1 helpers claim jobs from a shared
 * counter, so a helper that the OS schedules late (a busy machine) takes fewer jobs instead of
 * holding everyone up. The caller waits for every *claimed* job to finish, never for a helper
 * that has not started: the control block of a call is reference counted (a late helper finds no
 * job left and only touches the control block). Which thread runs a job never changes its result.
 *
 * Helpers are persistent: a process-wide pool of detached threads that, after a call, spin
 * briefly on the call counter (a layer that follows at once finds them awake) and then sleep on a
 * condition variable. One caller at a time owns the pool; a concurrent caller (another
 * application thread) starts its own short-lived helpers, as the pool does when it cannot grow.
 * After fork() the child starts from an empty pool. */
typedef struct {
    _Atomic size_t next; /* claimed in chunks of `chunk` jobs */
    char pad0[64 - sizeof(size_t)];
    _Atomic size_t done; /* on its own cache line: the claims do not bounce it */
    char pad1[64 - sizeof(size_t)];
    _Atomic int refs;
    _Atomic int seats; /* helpers that may still join this call */
    /* the caller sleeps on `cv` once it has spun a while (its core goes idle, so the OS may move
     * a preempted helper there); whoever finishes the last job wakes it */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sync_ok;       /* mu and cv were initialized */
    size_t njobs, chunk;
    qk__job_fn fn;
    void *ctx;
} qk__pool_ctl;

static void qk__pool_release(qk__pool_ctl *ctl) {
    if (atomic_fetch_sub(&ctl->refs, 1) == 1) {
        if (ctl->sync_ok) {
            pthread_cond_destroy(&ctl->cv);
            pthread_mutex_destroy(&ctl->mu);
        }
        free(ctl);
    }
}

static void qk__pool_work(qk__pool_ctl *ctl) {
    for (;;) {
        const size_t j = atomic_fetch_add(&ctl->next, ctl->chunk);
        if (j >= ctl->njobs) break;
        const size_t j1 = ctl->njobs - j < ctl->chunk ? ctl->njobs : j + ctl->chunk;
        ctl->fn(ctl->ctx, j, j1);
        if (atomic_fetch_add(&ctl->done, j1 - j) + (j1 - j) == ctl->njobs && ctl->sync_ok) {
            pthread_mutex_lock(&ctl->mu); /* the last job: wake the caller if it sleeps */
            pthread_cond_broadcast(&ctl->cv);
            pthread_mutex_unlock(&ctl->mu);
        }
    }
}

static void qk__pool_join(qk__pool_ctl *ctl) {
    if (atomic_fetch_sub(&ctl->seats, 1) > 0) qk__pool_work(ctl);
    qk__pool_release(ctl);
}

static void *qk__pool_main(void *arg) { /* a short-lived helper of one call */
    qk__pool_join((qk__pool_ctl *)arg);
    return NULL;
}

enum { QK__MAX_THREADS = 256, QK__SPIN = 3000 };

static pthread_mutex_t qk__pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qk__pool_cv = PTHREAD_COND_INITIALIZER;
static pthread_once_t qk__pool_once = PTHREAD_ONCE_INIT;
static _Atomic unsigned long qk__pool_gen;  /* calls published so far (written under the mutex) */
static qk__pool_ctl *qk__pool_cur;          /* the call being published (under the mutex) */
static size_t qk__pool_workers;             /* persistent helpers started (under the mutex) */
static size_t qk__pool_sleepers;            /* helpers waiting on the condition (under the mutex) */
static _Atomic int qk__pool_owned;          /* a caller owns the pool */

/* Helpers spin only while they do not outnumber the CPUs (with more, spinning would take the
 * caller's CPU time); written under the mutex, read relaxed. */
static _Atomic int qk__pool_spin = 1;

static void qk__pool_atfork_child(void) {
    pthread_mutex_init(&qk__pool_mu, NULL);
    pthread_cond_init(&qk__pool_cv, NULL);
    qk__pool_cur = NULL;
    qk__pool_workers = 0;
    qk__pool_sleepers = 0;
    atomic_store(&qk__pool_owned, 0);
    atomic_store(&qk__pool_spin, 1);
}

static void qk__pool_init_once(void) { pthread_atfork(NULL, NULL, qk__pool_atfork_child); }

static inline void qk__cpu_relax(void) {
#if QK_X86
    _mm_pause();
#endif
}

static void *qk__pool_worker(void *arg) {
    unsigned long seen = (unsigned long)(uintptr_t)arg;
    for (;;) {
        const int spin = atomic_load_explicit(&qk__pool_spin, memory_order_relaxed) ? QK__SPIN : 0;
        for (int i = 0; i < spin && atomic_load(&qk__pool_gen) == seen; i++) qk__cpu_relax();
        pthread_mutex_lock(&qk__pool_mu);
        while (atomic_load(&qk__pool_gen) == seen) {
            qk__pool_sleepers++;
            pthread_cond_wait(&qk__pool_cv, &qk__pool_mu);
            qk__pool_sleepers--;
        }
        seen = atomic_load(&qk__pool_gen);
        qk__pool_ctl *ctl = qk__pool_cur;
        if (ctl != NULL) atomic_fetch_add(&ctl->refs, 1);
        pthread_mutex_unlock(&qk__pool_mu);
        if (ctl != NULL) qk__pool_join(ctl);
    }
    return NULL;
}

/* Starts short-lived helpers for `want` seats (when the pool is owned by another caller). */
static void qk__spawn_helpers(qk__pool_ctl *ctl, size_t want) {
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return;
    if (pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0) {
        for (size_t i = 0; i < want; i++) {
            pthread_t tid;
            atomic_fetch_add(&ctl->refs, 1);
            if (pthread_create(&tid, &attr, qk__pool_main, ctl) != 0) {
                atomic_fetch_sub(&ctl->refs, 1);
                break; /* fewer helpers; the caller does the rest */
            }
        }
    }
    pthread_attr_destroy(&attr);
}

/* Publishes ctl to the persistent helpers, starting more of them when needed. */
static void qk__pool_publish(qk__pool_ctl *ctl, size_t want) {
    pthread_once(&qk__pool_once, qk__pool_init_once);
    pthread_mutex_lock(&qk__pool_mu);
    if (qk__pool_workers < want) {
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) == 0) {
            if (pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0) {
                const unsigned long g = atomic_load(&qk__pool_gen);
                while (qk__pool_workers < want) {
                    pthread_t tid;
                    if (pthread_create(&tid, &attr, qk__pool_worker, (void *)(uintptr_t)g) != 0)
                        break;
                    qk__pool_workers++;
                }
                const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
                atomic_store(&qk__pool_spin, ncpu < 1 || (long)qk__pool_workers + 1 <= ncpu);
            }
            pthread_attr_destroy(&attr);
        }
    }
    qk__pool_cur = ctl;
    atomic_fetch_add(&qk__pool_gen, 1);
    if (qk__pool_sleepers > 0) pthread_cond_broadcast(&qk__pool_cv);
    pthread_mutex_unlock(&qk__pool_mu);
}

static void qk__pool_unpublish(void) {
    pthread_mutex_lock(&qk__pool_mu);
    qk__pool_cur = NULL;
    pthread_mutex_unlock(&qk__pool_mu);
}

void qk__parallel(size_t njobs, int threads, qk__job_fn fn, void *ctx) {
    if (njobs == 0) return;
    size_t t = threads < 1 ? 1 : (size_t)threads;
    if (t > QK__MAX_THREADS) t = QK__MAX_THREADS;
    if (t > njobs) t = njobs;
    qk__pool_ctl *ctl = t > 1 ? (qk__pool_ctl *)malloc(sizeof *ctl) : NULL;
    if (ctl == NULL) { /* one thread, or no memory for the control block: run inline */
        fn(ctx, 0, njobs);
        return;
    }
    atomic_init(&ctl->next, 0);
    atomic_init(&ctl->done, 0);
    atomic_init(&ctl->refs, 1);
    atomic_init(&ctl->seats, (int)(t - 1));
    ctl->sync_ok = 0;
    if (pthread_mutex_init(&ctl->mu, NULL) == 0) {
        if (pthread_cond_init(&ctl->cv, NULL) == 0)
            ctl->sync_ok = 1;
        else
            pthread_mutex_destroy(&ctl->mu);
    }
    ctl->njobs = njobs;
    /* about 16 claims a thread: few enough not to bounce the counter's cache line per job,
     * enough to even out a helper that starts late */
    ctl->chunk = njobs / (16 * t) > 0 ? njobs / (16 * t) : 1;
    ctl->fn = fn;
    ctl->ctx = ctx;
    const int own = atomic_exchange(&qk__pool_owned, 1) == 0;
    if (own)
        qk__pool_publish(ctl, t - 1);
    else
        qk__spawn_helpers(ctl, t - 1);
    qk__pool_work(ctl);
    for (int i = 0; i < QK__SPIN && atomic_load(&ctl->done) < njobs; i++) qk__cpu_relax();
    if (atomic_load(&ctl->done) < njobs) { /* jobs claimed by helpers still run */
        if (ctl->sync_ok) {
            pthread_mutex_lock(&ctl->mu);
            while (atomic_load(&ctl->done) < njobs) pthread_cond_wait(&ctl->cv, &ctl->mu);
            pthread_mutex_unlock(&ctl->mu);
        } else {
            while (atomic_load(&ctl->done) < njobs) sched_yield();
        }
    }
    if (own) {
        qk__pool_unpublish();
        atomic_store(&qk__pool_owned, 0);
    }
    qk__pool_release(ctl);
}
