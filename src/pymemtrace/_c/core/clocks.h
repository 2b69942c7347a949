/*
 * core/clocks.h - clocks and CPU time of this process, cheap enough for
 * the sampler thread.
 *
 * Pure C: no Python.h.  Every function may be called from any thread,
 * with or without the GIL.
 */
#ifndef PMT_CORE_CLOCKS_H
#define PMT_CORE_CLOCKS_H

#include <stdint.h>
#if defined(__x86_64__) && defined(__linux__)
#include <x86intrin.h>
#define PMT_FASTCLOCK_TSC 1
#else
#define PMT_FASTCLOCK_TSC 0
#endif

/* CLOCK_MONOTONIC in seconds (the clock of time.monotonic() on Linux). */
double pmt_clock_monotonic(void);

/* CLOCK_REALTIME in seconds since the epoch (time.time()). */
double pmt_clock_wall(void);

/* User and system CPU time of the whole process, in seconds (getrusage).
   Returns 0 or an errno value. */
int pmt_cpu_times(double *user, double *system);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t pmt_clock_monotonic_ns(void);

/*
 * pmt_fastclock: CLOCK_MONOTONIC nanoseconds for the tracers' Clock column,
 * read once per record.  clock_gettime costs ~40 ns in this VM (vDSO, TSC
 * clock source), RDTSC ~9 ns.  On x86_64 Linux where the kernel itself
 * keeps time with the TSC (clocksource "tsc": invariant and synchronised
 * across CPUs), a record reads the TSC and extrapolates from an anchor
 * (tsc, ns) taken with clock_gettime; the anchor is renewed at least every
 * PMT_FASTCLOCK_SPAN_NS, and the ticks-to-ns scale is refined at each
 * renewal from the whole time since the clock was started.  Until that
 * span is long enough (PMT_FASTCLOCK_CALIB_NS) every read is a
 * clock_gettime.  Error: half an anchor's read window + scale error x
 * span + NTP slew over the span: typically well under a microsecond.
 * Values never go backwards (each read is at least the previous one).
 * Elsewhere every read is a clock_gettime.
 *
 * Not thread-safe: one per tracer, read under that tracer's serialisation
 * (the GIL or its log mutex).  All zero is a valid, unstarted clock.
 */
#define PMT_FASTCLOCK_SPAN_NS 1000000u   /* 1 ms between anchors */
#define PMT_FASTCLOCK_CALIB_NS 20000000u /* 20 ms before extrapolating */

typedef struct {
    uint64_t tsc_a; /* TSC at the anchor */
    uint64_t ns_a;  /* CLOCK_MONOTONIC ns at the anchor */
    uint64_t span;  /* ticks after tsc_a that may be extrapolated,
                           0 = read the clock every time */
    uint64_t mult;  /* ns per tick, 32.32 fixed point (0: unknown) */
    uint64_t tsc0;  /* calibration base: TSC ... */
    uint64_t ns0;   /* ... and ns of the first good sample */
    uint64_t last;  /* last value returned */
    int mode;       /* 0 unstarted, 1 TSC, 2 clock_gettime only */
} pmt_fastclock;

/* Slow path: take an anchor (and start the clock on the first call). */
uint64_t pmt_fastclock_sync(pmt_fastclock *c);

static inline uint64_t
pmt_fastclock_now(pmt_fastclock *c)
{
#if PMT_FASTCLOCK_TSC
    uint64_t d = __rdtsc() - c->tsc_a;
    /* Unsigned: a TSC behind the anchor (another CPU) is huge, and
       renews the anchor as well. */
    if (d < c->span) {
        uint64_t ns = c->ns_a + ((d * c->mult) >> 32);
        if (ns > c->last) {
            c->last = ns;
        }
        return c->last;
    }
#endif
    return pmt_fastclock_sync(c);
}

#endif /* PMT_CORE_CLOCKS_H */
