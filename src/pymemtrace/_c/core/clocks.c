/*
 * core/clocks.c - clocks and process CPU time (see clocks.h).
 */
#include "clocks.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double
read_clock(clockid_t clock)
{
    struct timespec ts;

    if (clock_gettime(clock, &ts) != 0) {
        return 0.0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t
pmt_clock_monotonic_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#if PMT_FASTCLOCK_TSC
/* 1 when the kernel keeps CLOCK_MONOTONIC with the TSC: then the TSC is
   invariant and synchronised across CPUs (the kernel checked). */
static int
kernel_uses_tsc(void)
{
    char name[32] = "";
    FILE *f = fopen(
        "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        "re");

    if (f == NULL) {
        return 0;
    }
    if (fgets(name, sizeof(name), f) == NULL) {
        name[0] = '\0';
    }
    fclose(f);
    return strcmp(name, "tsc\n") == 0 || strcmp(name, "tsc") == 0;
}
#endif

uint64_t
pmt_fastclock_sync(pmt_fastclock *c)
{
    uint64_t ns;
#if PMT_FASTCLOCK_TSC
    uint64_t t1, t2, tsc;

    if (c->mode == 0) {
        c->mode = kernel_uses_tsc() ? 1 : 2;
    }
    if (c->mode == 1) {
        t1 = __rdtsc();
        ns = pmt_clock_monotonic_ns();
        t2 = __rdtsc();
        tsc = t1 + (t2 - t1) / 2;
        /* The anchor's error is half the gap (clock_gettime takes ~150
           ticks): a sample taken across an interrupt, a preemption or a
           CPU switch is used as a clock reading only. */
        if (t2 >= t1 && t2 - t1 < 3000) {
            if (c->mult == 0 && c->ns0 == 0) {
                c->tsc0 = tsc;
                c->ns0 = ns;
            }
            else if (tsc > c->tsc0 && ns > c->ns0 &&
                     ns - c->ns0 >= PMT_FASTCLOCK_CALIB_NS) {
                unsigned __int128 num = (unsigned __int128)(ns - c->ns0) << 32;
                uint64_t mult = (uint64_t)(num / (tsc - c->tsc0));
                /* The span in ticks: SPAN_NS at this scale, and small
                   enough that ticks * mult fits in 64 bits. */
                uint64_t span =
                    mult ? ((uint64_t)PMT_FASTCLOCK_SPAN_NS << 32) / mult : 0;
                if (mult > 0 && span > 0 && span < ((uint64_t)1 << 31)) {
                    c->mult = mult;
                    c->span = span;
                }
            }
            c->tsc_a = tsc;
            c->ns_a = ns;
        }
        else {
            /* No anchor from this one: read the clock next time too. */
            c->tsc_a = t2;
            c->ns_a = ns;
            if (c->span) {
                c->tsc_a = t2 - c->span; /* forces a sync next read */
            }
        }
        goto done;
    }
#endif
    ns = pmt_clock_monotonic_ns();
#if PMT_FASTCLOCK_TSC
done:
#endif
    if (ns > c->last) {
        c->last = ns;
    }
    return c->last;
}

double
pmt_clock_monotonic(void)
{
    return read_clock(CLOCK_MONOTONIC);
}

double
pmt_clock_wall(void)
{
    return read_clock(CLOCK_REALTIME);
}

int
pmt_cpu_times(double *user, double *system)
{
    struct rusage usage;

    if (getrusage(RUSAGE_SELF, &usage) != 0) {
        return errno;
    }
    *user = (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec * 1e-6;
    *system = (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec * 1e-6;
    return 0;
}
