/* pool.c -- the thread pool of the C library: qk__parallel (core/pool.h). */
#define _POSIX_C_SOURCE 200809L /* sysconf */
#include "core/pool.h"

#include "core/isa.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#if QK_X86
#include <immintrin.h>
#endif

/* Dynamic split: the calling thread and up to threads - 1 helpers claim jobs from a shared
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
