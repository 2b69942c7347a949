/*
 * core/rsspoll.h - a background thread that keeps the process RSS in an
 * atomic, so a profile hook can read it for the price of one load, and
 * watches bands of RSS and of a heap counter for quiet tracers.
 *
 * Pure C (no Python.h): the thread never touches Python.  It re-reads RSS
 * through core/rss.h every PMT_RSSPOLL_INTERVAL_NS and sleeps on a
 * condition variable, so stopping is immediate.  Reference counted: the
 * first start creates the thread, the last stop joins it.  After fork()
 * the child has no poller: a pthread_atfork handler resets the count and
 * the next start creates a fresh thread.
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

/* The last RSS the poller (or a refresh) read, in bytes (one relaxed
   atomic load). */
uint64_t pmt_rsspoll_value(void);
/* Number of reads so far (changes each time the value is refreshed). */
uint64_t pmt_rsspoll_generation(void);
/* Read RSS now on the calling thread and publish it; returns it (the last
   value if the read fails). */
uint64_t pmt_rsspoll_refresh(void);

/* The watches: bands the poller thread checks after each of its reads,
   one per channel.  PMT_WATCH_RSS watches the RSS it reads;
   PMT_WATCH_HEAP watches the value of the heap reader (set with
   pmt_rsspoll_set_heap_reader: a function the poller calls every poll
   while that watch is armed, so it must be cheap, lock-free and callable
   from a thread that holds no lock and no GIL, e.g. an atomic load).
   When a value is <= low or >= high, the poller disarms that watch and
   calls the notify function once, on the poller thread (the same
   conditions); a nonzero return means "not delivered" and re-arms the
   watch for the next read.  One watch per channel per process; watch()
   replaces the channel's band and arms it. */
enum {
    PMT_WATCH_RSS = 0,
    PMT_WATCH_HEAP = 1,
    PMT_WATCH_CHANNELS = 2
};
typedef int (*pmt_rsspoll_notify_fn)(void);
typedef int64_t (*pmt_rsspoll_reader_fn)(void);
void pmt_rsspoll_set_notify(pmt_rsspoll_notify_fn fn);
void pmt_rsspoll_set_heap_reader(pmt_rsspoll_reader_fn fn);
void pmt_rsspoll_watch(int channel, int64_t low, int64_t high);
void pmt_rsspoll_unwatch(int channel);
/* Bit (1 << channel) set for each armed watch. */
int pmt_rsspoll_watching(void);
/* Number of notifications delivered so far (every channel; tests). */
uint64_t pmt_rsspoll_notifications(void);

#endif /* PMT_CORE_RSSPOLL_H */
