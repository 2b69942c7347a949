/*
 * core/rsspoll.c - the RSS poller thread; see rsspoll.h.
 *
 * Process-wide state (documented exception to "no mutable globals"):
 * rsspoll_runtime, each field commented with what protects it.
 */
#include "rsspoll.h"
#include "rss.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static struct {
    /* Last RSS read, bytes.  Atomic (relaxed): written by the poller
       thread and pmt_rsspoll_refresh(), read by hooks on any thread; a
       value a little old is fine, it is re-read exactly before logging. */
    atomic_uint_fast64_t current;
    /* Count of reads.  Atomic, as value. */
    atomic_uint_fast64_t generation;
    /* Users of the thread.  Protected by mutex. */
    int users;
    /* 1 while the thread runs; stop request flag.  Protected by mutex. */
    int running;
    int stop;
    pthread_t thread; /* Protected by mutex. */
    pthread_mutex_t mutex;
    pthread_cond_t wake; /* Signalled by stop; waited on by the thread. */
    /* Initialises wake and the fork handler once; its own lock. */
    pthread_once_t once;
} rsspoll_runtime = {
    .mutex = PTHREAD_MUTEX_INITIALIZER,
    .once = PTHREAD_ONCE_INIT,
};

static void
forget_thread_in_child(void)
{
    /* Only the forking thread exists in the child. */
    pthread_mutex_init(&rsspoll_runtime.mutex, NULL);
    pthread_cond_init(&rsspoll_runtime.wake, NULL);
    rsspoll_runtime.users = 0;
    rsspoll_runtime.running = 0;
    rsspoll_runtime.stop = 0;
}

static void
init_once(void)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&rsspoll_runtime.wake, &attr);
    pthread_condattr_destroy(&attr);
    (void)pthread_atfork(NULL, NULL, forget_thread_in_child);
}

static void
publish(uint64_t value)
{
    atomic_store_explicit(&rsspoll_runtime.current, value,
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&rsspoll_runtime.generation, 1,
                              memory_order_release);
}

uint64_t
pmt_rsspoll_refresh(void)
{
    uint64_t value = 0;

    if (pmt_rss_current(&value) == 0) {
        publish(value);
        return value;
    }
    return atomic_load_explicit(&rsspoll_runtime.current,
                                memory_order_relaxed);
}

uint64_t
pmt_rsspoll_value(void)
{
    return atomic_load_explicit(&rsspoll_runtime.current,
                                memory_order_relaxed);
}

uint64_t
pmt_rsspoll_generation(void)
{
    return atomic_load_explicit(&rsspoll_runtime.generation,
                                memory_order_acquire);
}

static void *
poller_main(void *arg)
{
    struct timespec deadline;

    (void)arg;
    pthread_mutex_lock(&rsspoll_runtime.mutex);
    while (!rsspoll_runtime.stop) {
        if (rsspoll_runtime.users == 0) {
            /* Parked: nobody needs samples; start() or shutdown wakes. */
            pthread_cond_wait(&rsspoll_runtime.wake, &rsspoll_runtime.mutex);
            continue;
        }
        pthread_mutex_unlock(&rsspoll_runtime.mutex);
        {
            uint64_t value;
            if (pmt_rss_current(&value) == 0) {
                publish(value);
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += PMT_RSSPOLL_INTERVAL_NS;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec += 1;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&rsspoll_runtime.mutex);
        while (!rsspoll_runtime.stop && rsspoll_runtime.users > 0) {
            if (pthread_cond_timedwait(&rsspoll_runtime.wake,
                                       &rsspoll_runtime.mutex,
                                       &deadline) == ETIMEDOUT) {
                break;
            }
        }
    }
    pthread_mutex_unlock(&rsspoll_runtime.mutex);
    return NULL;
}

int
pmt_rsspoll_start(void)
{
    int err = 0;

    (void)pthread_once(&rsspoll_runtime.once, init_once);
    (void)pmt_rsspoll_refresh();
    pthread_mutex_lock(&rsspoll_runtime.mutex);
    if (rsspoll_runtime.users++ == 0) {
        if (!rsspoll_runtime.running) {
            rsspoll_runtime.stop = 0;
            err = pthread_create(&rsspoll_runtime.thread, NULL, poller_main,
                                 NULL);
            if (err) {
                rsspoll_runtime.users = 0;
            }
            else {
                rsspoll_runtime.running = 1;
            }
        }
        else {
            pthread_cond_signal(&rsspoll_runtime.wake);
        }
    }
    pthread_mutex_unlock(&rsspoll_runtime.mutex);
    return err;
}

void
pmt_rsspoll_stop(void)
{
    /* The thread parks itself when the count drops to 0: starting again
       costs a wake-up, not a thread creation. */
    pthread_mutex_lock(&rsspoll_runtime.mutex);
    if (rsspoll_runtime.users > 0) {
        rsspoll_runtime.users--;
    }
    pthread_mutex_unlock(&rsspoll_runtime.mutex);
}

void
pmt_rsspoll_shutdown(void)
{
    pthread_t thread;
    int join = 0;

    pthread_mutex_lock(&rsspoll_runtime.mutex);
    if (rsspoll_runtime.running) {
        rsspoll_runtime.stop = 1;
        rsspoll_runtime.running = 0;
        thread = rsspoll_runtime.thread;
        join = 1;
        pthread_cond_signal(&rsspoll_runtime.wake);
    }
    pthread_mutex_unlock(&rsspoll_runtime.mutex);
    if (join) {
        pthread_join(thread, NULL);
    }
}
