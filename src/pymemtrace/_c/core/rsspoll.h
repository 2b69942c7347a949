/*
 * core/rsspoll.h - a background thread that keeps the process RSS in an
 * atomic, so a profile hook can see for the price of one load that RSS
 * changed for a reason its page-fault and release counters did not see
 * (a thread that is not watched, the kernel reclaiming pages).
 *
 * Pure C (no Python.h): the thread never touches Python.  It re-reads RSS
 * through core/rss.h every PMT_RSSPOLL_INTERVAL_NS (a core/periodic
 * thread: it sleeps on a condition variable, so stopping is immediate).
 * Reference counted: the first start creates the thread (or wakes it),
 * the last stop parks it; shutdown joins it.  After fork() the child has
 * no poller: fork.c's child handler resets the count and the next start
 * creates a fresh thread.
 *
 * Thread safety: start/stop may be called from any thread (they take the
 * poller mutex); pmt_rsspoll_value()/pmt_rsspoll_refresh() from any thread.
 */
#ifndef PMT_CORE_RSSPOLL_H
#define PMT_CORE_RSSPOLL_H

#include <stdatomic.h>
#include <stdint.h>

/* Sampling period of the poller thread. */
#define PMT_RSSPOLL_INTERVAL_NS 1000000

/* 0 on success, else an errno value (the thread could not start). */
int pmt_rsspoll_start(void);
void pmt_rsspoll_stop(void);
/* Join the thread (module shutdown).  Safe when it never started. */
void pmt_rsspoll_shutdown(void);
/* 1 while the thread exists (parked or polling). */
int pmt_rsspoll_running(void);

/* fork(), called by fork.c's one pthread_atfork registration in its
   written order: prepare takes the start/stop lock, then the thread's. */
void pmt_rsspoll_fork_prepare(void);
void pmt_rsspoll_fork_parent(void);
void pmt_rsspoll_fork_child(void);

/* The last RSS the poller (or a refresh) read, in bytes (one relaxed
   atomic load). */
uint64_t pmt_rsspoll_value(void);
/* Number of reads so far (changes each time the value is refreshed). */
uint64_t pmt_rsspoll_generation(void);
/* Read RSS now on the calling thread and publish it; returns it (the last
   value if the read fails). */
uint64_t pmt_rsspoll_refresh(void);

#endif /* PMT_CORE_RSSPOLL_H */
