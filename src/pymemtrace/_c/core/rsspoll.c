/*
 * core/rsspoll.c - the RSS poller thread; see rsspoll.h.
 *
 * Process-wide state (documented exception to "no mutable globals"):
 * rsspoll_runtime, each field commented with what protects it.
 */
#include "rsspoll.h"
#include "periodic.h"
#include "rss.h"

#include <pthread.h>
#include <stdatomic.h>

static struct {
    /* Last RSS read, bytes.  Atomic (relaxed): written by the poller
       thread and pmt_rsspoll_refresh(), read by hooks on any thread; a
       value a little old is fine, it is re-read exactly before logging. */
    atomic_uint_fast64_t current;
    /* Count of reads.  Atomic, as value. */
    atomic_uint_fast64_t generation;
    /* Users of the thread.  Protected by mutex. */
    int users;
    /* Serialises start/stop/shutdown (guards users); taken before the
       poller's own lock. */
    pthread_mutex_t mutex;
    /* The thread (core/periodic): ticks every PMT_RSSPOLL_INTERVAL_NS
       while there are users, parked (period 0) while there are none. */
    pmt_periodic poller;
    /* Initialises poller once; its own lock. */
    pthread_once_t once;
} rsspoll_runtime = {
    .mutex = PTHREAD_MUTEX_INITIALIZER,
    .once = PTHREAD_ONCE_INIT,
};

static void poll_tick(void *arg);

static void
init_once(void)
{
    (void)pmt_periodic_init(&rsspoll_runtime.poller, 0, poll_tick, NULL);
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

static void
poll_tick(void *arg)
{
    uint64_t value;

    (void)arg;
    if (pmt_rss_current(&value) == 0) {
        publish(value);
    }
}

int
pmt_rsspoll_start(void)
{
    int err = 0;

    (void)pthread_once(&rsspoll_runtime.once, init_once);
    (void)pmt_rsspoll_refresh();
    pthread_mutex_lock(&rsspoll_runtime.mutex);
    if (rsspoll_runtime.users++ == 0) {
        pmt_periodic_set_period(&rsspoll_runtime.poller,
                                PMT_RSSPOLL_INTERVAL_NS);
        err = pmt_periodic_start(&rsspoll_runtime.poller);
        if (err) {
            rsspoll_runtime.users = 0;
            pmt_periodic_set_period(&rsspoll_runtime.poller, 0);
        }
    }
    pthread_mutex_unlock(&rsspoll_runtime.mutex);
    return err;
}

void
pmt_rsspoll_stop(void)
{
    /* The thread parks when the count drops to 0: starting again costs a
       wake-up, not a thread creation. */
    pthread_mutex_lock(&rsspoll_runtime.mutex);
    if (rsspoll_runtime.users > 0 && --rsspoll_runtime.users == 0) {
        pmt_periodic_set_period(&rsspoll_runtime.poller, 0);
    }
    pthread_mutex_unlock(&rsspoll_runtime.mutex);
}

void
pmt_rsspoll_shutdown(void)
{
    (void)pthread_once(&rsspoll_runtime.once, init_once);
    pthread_mutex_lock(&rsspoll_runtime.mutex);
    pmt_periodic_stop(&rsspoll_runtime.poller);
    pthread_mutex_unlock(&rsspoll_runtime.mutex);
}

int
pmt_rsspoll_running(void)
{
    (void)pthread_once(&rsspoll_runtime.once, init_once);
    return pmt_periodic_running(&rsspoll_runtime.poller);
}

void
pmt_rsspoll_fork_prepare(void)
{
    (void)pthread_once(&rsspoll_runtime.once, init_once);
    pthread_mutex_lock(&rsspoll_runtime.mutex);
    pmt_periodic_fork_prepare(&rsspoll_runtime.poller);
}

void
pmt_rsspoll_fork_parent(void)
{
    pmt_periodic_fork_parent(&rsspoll_runtime.poller);
    pthread_mutex_unlock(&rsspoll_runtime.mutex);
}

void
pmt_rsspoll_fork_child(void)
{
    /* The child has no poller: the next start makes one. */
    pmt_periodic_fork_child(&rsspoll_runtime.poller);
    pmt_periodic_set_period(&rsspoll_runtime.poller, 0);
    rsspoll_runtime.users = 0;
    pthread_mutex_init(&rsspoll_runtime.mutex, NULL);
}
