/*
 * core/periodic.h - the shape our background threads share: a thread that
 * calls a function every period, or at once when signalled, and sleeps on
 * a condition variable in between, so that stopping it is immediate.
 *
 * Pure C (no Python.h): the tick function runs on the thread without any
 * lock of this file held and must not touch Python.
 *
 * A period of 0 parks the thread: it sleeps until signalled (or stopped)
 * and then ticks once.  Changing the period wakes the thread, which sleeps
 * again with the new period from then on.
 *
 * Thread safety: every function may be called from any thread but the
 * periodic thread itself (stop joins it).  fork(): the thread does not
 * survive in the child; pmt_periodic_fork_child forgets it (the next start
 * creates a fresh one), called by the owner's fork child handler after
 * pmt_periodic_fork_prepare took the lock.
 */
#ifndef PMT_CORE_PERIODIC_H
#define PMT_CORE_PERIODIC_H

#include <pthread.h>
#include <stdint.h>

typedef struct pmt_periodic {
    /* Fixed by init. */
    void (*tick)(void *arg);
    void *arg;
    /* Protects every field below. */
    pthread_mutex_t mutex;
    pthread_cond_t wake; /* signalled by signal, set_period and stop */
    uint64_t period_ns;  /* 0: parked until signalled */
    uint64_t ticks;      /* tick calls so far */
    int running;         /* a thread exists (started, not joined) */
    int stop;            /* the thread must return */
    int signalled;       /* a tick is asked for now */
    int joining;         /* a stop is joining the thread */
    pthread_t thread;
} pmt_periodic;

/* 0, or an errno value. */
int pmt_periodic_init(pmt_periodic *p, uint64_t period_ns,
                      void (*tick)(void *arg), void *arg);
/* Stop the thread if it runs, and free what init made. */
void pmt_periodic_fini(pmt_periodic *p);

/* Start the thread if it does not run (its first tick comes after one
   period, or when signalled).  0, or an errno value. */
int pmt_periodic_start(pmt_periodic *p);
/* Wake the thread and join it; returns at once when it does not run. */
void pmt_periodic_stop(pmt_periodic *p);
/* Ask for a tick now (the thread wakes; a parked one too). */
void pmt_periodic_signal(pmt_periodic *p);
/* A new period (0 parks); the sleep in progress starts again with it. */
void pmt_periodic_set_period(pmt_periodic *p, uint64_t period_ns);
/* tick calls so far. */
uint64_t pmt_periodic_ticks(pmt_periodic *p);
/* 1 while a thread exists. */
int pmt_periodic_running(pmt_periodic *p);

/* fork(): prepare takes the lock (the thread is then asleep or ticking
   without it), parent releases it, child forgets the thread and starts
   with a fresh lock and condition variable. */
void pmt_periodic_fork_prepare(pmt_periodic *p);
void pmt_periodic_fork_parent(pmt_periodic *p);
void pmt_periodic_fork_child(pmt_periodic *p);

#endif /* PMT_CORE_PERIODIC_H */
