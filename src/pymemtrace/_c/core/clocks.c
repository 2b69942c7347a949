/*
 * core/clocks.c - clocks and process CPU time (see clocks.h).
 */
#include "clocks.h"

#include <errno.h>
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
