/*
 * threadstate.c - what the native tracer keeps per thread: the
 * re-entrancy guard (set while the thread runs the tracer's own code, so
 * that the tables' and the writer's allocations are not traced), the
 * byte-sampling countdown of sampled mode, and the counts of calls, bytes
 * and sizes, added to the shared ones every 256 calls and when the thread
 * ends (a pthread key's destructor).
 *
 * Initial-exec TLS: the library is loaded at start-up (LD_PRELOAD), so its
 * thread-locals sit in the static TLS block and reading them never calls
 * __tls_get_addr, which may allocate.  Only the owning thread touches its
 * state; no lock.
 */
#include "preload.h"

#include <math.h>
#include <time.h>

#define rt pmt_nt_runtime

/* Zero-initialised per thread: not busy, not seeded. */
PMT_NT_TLS pmt_nt_thread pmt_nt_tls;

static uint64_t
rng_next(void)
{
    /* xorshift64* */
    uint64_t x = pmt_nt_tls.rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    pmt_nt_tls.rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static double
unit_random(void)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static int64_t
clamp_gap(double gap)
{
    if (gap < 1.0) {
        return 1;
    }
    if (gap > 9.0e18) {
        return INT64_MAX;
    }
    return (int64_t)gap;
}

/* The renewal process of alloc_hooks.c: gaps uniform in [I/2, 3I/2], the
   first gap from their equilibrium distribution. */
static int64_t
next_gap(void)
{
    return clamp_gap((double)rt.sample_bytes * (0.5 + unit_random()));
}

static int64_t
first_gap(void)
{
    double interval = (double)rt.sample_bytes;
    double u = unit_random(), v = unit_random();

    if (u < 0.5) {
        return clamp_gap(0.5 * interval * v);
    }
    return clamp_gap(1.5 * interval - interval * sqrt(v));
}

static void
seed_thread(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    pmt_nt_tls.rng = ((uint64_t)(uintptr_t)&pmt_nt_tls ^
                      (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull) |
                     1;
    pmt_nt_tls.seeded = 1;
    pmt_nt_tls.countdown = first_gap();
}

int
pmt_nt_sample_hit(size_t size)
{
    if (size >= rt.sample_exact_from) {
        return 1;
    }
    if (PMT_NT_UNLIKELY(!pmt_nt_tls.seeded)) {
        seed_thread();
    }
    pmt_nt_tls.countdown -= (int64_t)size;
    if (PMT_NT_LIKELY(pmt_nt_tls.countdown > 0)) {
        return 0;
    }
    pmt_nt_tls.countdown += next_gap();
    return 1;
}

/* Atomics only: async-signal-safe (signals.c calls it from a handler). */
void
pmt_nt_count_add(void)
{
    int k;

    atomic_fetch_add_explicit(&rt.n_alloc, pmt_nt_tls.allocs,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&rt.n_free, pmt_nt_tls.frees,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&rt.bytes_alloc, pmt_nt_tls.bytes,
                              memory_order_relaxed);
    for (k = 0; k < PMT_NT_SIZE_BUCKETS; k++) {
        if (pmt_nt_tls.sizes[k] != 0) {
            atomic_fetch_add_explicit(&rt.sizes[k], pmt_nt_tls.sizes[k],
                                      memory_order_relaxed);
            pmt_nt_tls.sizes[k] = 0;
        }
    }
    pmt_nt_tls.allocs = 0;
    pmt_nt_tls.frees = 0;
    pmt_nt_tls.bytes = 0;
    pmt_nt_tls.pending = 255;
}

void
pmt_nt_count_flush(void)
{
    pmt_nt_count_add();
    /* Once per thread: without it a thread that ends would take its last
       (up to 255) counts with it.  Called with the guard set: should
       pthread_setspecific allocate, the real malloc serves it. */
    if (!pmt_nt_tls.exit_flush && rt.have_exit_key) {
        pmt_nt_tls.exit_flush = 1;
        pthread_setspecific(rt.exit_key, &pmt_nt_tls);
    }
}

/* A thread ends: its counts join the shared ones (atomics only). */
static void
thread_exit_flush(void *unused)
{
    (void)unused;
    pmt_nt_count_flush();
}

/* Once, from the bootstrap (the guard set). */
void
pmt_nt_thread_exit_init(void)
{
    rt.have_exit_key =
        pthread_key_create(&rt.exit_key, thread_exit_flush) == 0;
}
