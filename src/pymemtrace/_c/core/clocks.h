/*
 * core/clocks.h - clocks and CPU time of this process, cheap enough for
 * the sampler thread.
 *
 * Pure C: no Python.h.  Every function may be called from any thread,
 * with or without the GIL.
 */
#ifndef PMT_CORE_CLOCKS_H
#define PMT_CORE_CLOCKS_H

/* CLOCK_MONOTONIC in seconds (the clock of time.monotonic() on Linux). */
double pmt_clock_monotonic(void);

/* CLOCK_REALTIME in seconds since the epoch (time.time()). */
double pmt_clock_wall(void);

/* User and system CPU time of the whole process, in seconds (getrusage).
   Returns 0 or an errno value. */
int pmt_cpu_times(double *user, double *system);

#endif /* PMT_CORE_CLOCKS_H */
