/*
 * core/periodic.c - a thread ticking every period or when signalled; see
 * periodic.h.  No process-wide state: each user owns its pmt_periodic.
 */
#include "periodic.h"

#include <errno.h>
#include <signal.h>
#include <time.h>

/* The condition variable waits against CLOCK_MONOTONIC (a wall clock set
   back would stretch a sleep); macOS has no pthread_condattr_setclock and
   waits against the wall clock. */
#ifdef __APPLE__
#define PERIODIC_CLOCK CLOCK_REALTIME
#else
#define PERIODIC_CLOCK CLOCK_MONOTONIC
#endif

static int
init_cond(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int err = pthread_condattr_init(&attr);

    if (err) {
        return err;
    }
#ifndef __APPLE__
    err = pthread_condattr_setclock(&attr, PERIODIC_CLOCK);
    if (err) {
        goto out_attr;
    }
#endif
    err = pthread_cond_init(cond, &attr);
#ifndef __APPLE__
out_attr:
#endif
    pthread_condattr_destroy(&attr);
    return err;
}

int
pmt_periodic_init(pmt_periodic *p, uint64_t period_ns, void (*tick)(void *arg),
                  void *arg)
{
    int err;

    p->tick = tick;
    p->arg = arg;
    p->period_ns = period_ns;
    p->ticks = 0;
    p->running = 0;
    p->stop = 0;
    p->signalled = 0;
    p->joining = 0;
    err = pthread_mutex_init(&p->mutex, NULL);
    if (err) {
        return err;
    }
    err = init_cond(&p->wake);
    if (err) {
        pthread_mutex_destroy(&p->mutex);
    }
    return err;
}

void
pmt_periodic_fini(pmt_periodic *p)
{
    pmt_periodic_stop(p);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mutex);
}

static void
deadline_after(struct timespec *t, uint64_t ns)
{
    clock_gettime(PERIODIC_CLOCK, t);
    t->tv_sec += (time_t)(ns / 1000000000u);
    t->tv_nsec += (long)(ns % 1000000000u);
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec += 1;
        t->tv_nsec -= 1000000000L;
    }
}

static void *
periodic_main(void *arg)
{
    pmt_periodic *p = arg;

    pthread_mutex_lock(&p->mutex);
    while (!p->stop) {
        /* Sleep one period (or until signalled); a new period restarts
           the sleep with it. */
        uint64_t period = p->period_ns;
        struct timespec deadline;
        int timed_out = 0;
        if (period != 0) {
            deadline_after(&deadline, period);
        }
        while (!p->stop && !p->signalled && p->period_ns == period &&
               !timed_out) {
            if (period == 0) {
                pthread_cond_wait(&p->wake, &p->mutex);
            }
            else {
                timed_out = pthread_cond_timedwait(&p->wake, &p->mutex,
                                                   &deadline) == ETIMEDOUT;
            }
        }
        if (p->stop) {
            break;
        }
        if (!timed_out && !p->signalled) {
            continue; /* the period changed: sleep again with it */
        }
        p->signalled = 0;
        pthread_mutex_unlock(&p->mutex);
        p->tick(p->arg);
        pthread_mutex_lock(&p->mutex);
        p->ticks++;
    }
    pthread_mutex_unlock(&p->mutex);
    return NULL;
}

int
pmt_periodic_start(pmt_periodic *p)
{
    int err = 0;

    pthread_mutex_lock(&p->mutex);
    if (!p->running) {
        sigset_t all, old;
        p->stop = 0;
        /* The thread takes no signal: they keep going to the threads the
           program expects. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        err = pthread_create(&p->thread, NULL, periodic_main, p);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        p->running = err == 0;
    }
    pthread_mutex_unlock(&p->mutex);
    return err;
}

void
pmt_periodic_stop(pmt_periodic *p)
{
    pthread_t thread;

    pthread_mutex_lock(&p->mutex);
    /* A second stop meanwhile finds nothing to join. */
    if (!p->running || p->joining) {
        pthread_mutex_unlock(&p->mutex);
        return;
    }
    p->stop = 1;
    p->joining = 1;
    thread = p->thread;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    pthread_join(thread, NULL);
    pthread_mutex_lock(&p->mutex);
    p->running = 0;
    p->joining = 0;
    p->stop = 0;
    pthread_mutex_unlock(&p->mutex);
}

void
pmt_periodic_signal(pmt_periodic *p)
{
    pthread_mutex_lock(&p->mutex);
    p->signalled = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
}

void
pmt_periodic_set_period(pmt_periodic *p, uint64_t period_ns)
{
    pthread_mutex_lock(&p->mutex);
    if (p->period_ns != period_ns) {
        p->period_ns = period_ns;
        pthread_cond_broadcast(&p->wake);
    }
    pthread_mutex_unlock(&p->mutex);
}

uint64_t
pmt_periodic_ticks(pmt_periodic *p)
{
    uint64_t n;

    pthread_mutex_lock(&p->mutex);
    n = p->ticks;
    pthread_mutex_unlock(&p->mutex);
    return n;
}

int
pmt_periodic_running(pmt_periodic *p)
{
    int running;

    pthread_mutex_lock(&p->mutex);
    running = p->running;
    pthread_mutex_unlock(&p->mutex);
    return running;
}

void
pmt_periodic_fork_prepare(pmt_periodic *p)
{
    pthread_mutex_lock(&p->mutex);
}

void
pmt_periodic_fork_parent(pmt_periodic *p)
{
    pthread_mutex_unlock(&p->mutex);
}

void
pmt_periodic_fork_child(pmt_periodic *p)
{
    /* Only the forking thread exists here; the condition variable may
       list the parent's thread as a waiter. */
    p->running = 0;
    p->stop = 0;
    p->signalled = 0;
    p->joining = 0;
    (void)init_cond(&p->wake);
    (void)pthread_mutex_init(&p->mutex, NULL);
}
