/* pool.h -- the thread pool of the C library. Not installed, not public. */
#ifndef QKERNELS_CORE_POOL_H
#define QKERNELS_CORE_POOL_H

#include <stddef.h>

/* Runs fn(ctx, j0, j1) over the jobs [0, njobs), split between the calling thread and up to
 * threads - 1 helpers (threads <= 1: all on the calling thread). Jobs are claimed dynamically,
 * so which thread runs a job varies; a job's result must not depend on it. When a helper cannot
 * be started, or the control block cannot be allocated, the caller does the work itself. */
typedef void (*qk__job_fn)(void *ctx, size_t j0, size_t j1);
void qk__parallel(size_t njobs, int threads, qk__job_fn fn, void *ctx);

#endif /* QKERNELS_CORE_POOL_H */
