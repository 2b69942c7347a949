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
    /* The watches (pmt_rsspoll_watch), one per channel: a band
       [low, high] and a function called once when a value leaves it.
       armed is 1 while the band is valid; the poller disarms it
       (exchange) before calling notify.  low/high are atomics written by
       the watcher (any thread) and read by the poller; a band read while
       being changed costs at worst one needless notify or one poll of
       delay. */
    struct {
        atomic_int armed;
        atomic_int_fast64_t low;
        atomic_int_fast64_t high;
    } watch[PMT_WATCH_CHANNELS];
    /* Set once (pmt_rsspoll_set_notify / set_heap_reader) before the
       first watch; atomic so the poller reads them race-free. */
    _Atomic(pmt_rsspoll_notify_fn) notify;
    _Atomic(pmt_rsspoll_reader_fn) heap_reader;
    /* Notifications delivered.  Atomic: written by the poller, read by
       anyone. */
    atomic_uint_fast64_t notifications;
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
    for (int c = 0; c < PMT_WATCH_CHANNELS; c++) {
        atomic_store(&rsspoll_runtime.watch[c].armed, 0);
    }
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

void
pmt_rsspoll_set_notify(pmt_rsspoll_notify_fn fn)
{
    atomic_store(&rsspoll_runtime.notify, fn);
}

void
pmt_rsspoll_set_heap_reader(pmt_rsspoll_reader_fn fn)
{
    atomic_store(&rsspoll_runtime.heap_reader, fn);
}

void
pmt_rsspoll_watch(int channel, int64_t low, int64_t high)
{
    if (channel < 0 || channel >= PMT_WATCH_CHANNELS) {
        return;
    }
    atomic_store_explicit(&rsspoll_runtime.watch[channel].low, low,
                          memory_order_relaxed);
    atomic_store_explicit(&rsspoll_runtime.watch[channel].high, high,
                          memory_order_relaxed);
    atomic_store_explicit(&rsspoll_runtime.watch[channel].armed, 1,
                          memory_order_release);
}

void
pmt_rsspoll_unwatch(int channel)
{
    if (channel < 0 || channel >= PMT_WATCH_CHANNELS) {
        return;
    }
    atomic_store_explicit(&rsspoll_runtime.watch[channel].armed, 0,
                          memory_order_release);
}

int
pmt_rsspoll_watching(void)
{
    int mask = 0;

    for (int c = 0; c < PMT_WATCH_CHANNELS; c++) {
        if (atomic_load_explicit(&rsspoll_runtime.watch[c].armed,
                                 memory_order_relaxed)) {
            mask |= 1 << c;
        }
    }
    return mask;
}

/* Poller thread: 1 when channel's watch is armed. */
static int
watch_armed(int channel)
{
    return atomic_load_explicit(&rsspoll_runtime.watch[channel].armed,
                                memory_order_acquire);
}

/* Poller thread: after a read, call notify once if it left the band. */
static void
check_watch(int channel, int64_t value)
{
    pmt_rsspoll_notify_fn fn;
    int64_t low, high;
    int armed = 1;

    if (!watch_armed(channel)) {
        return;
    }
    low = atomic_load_explicit(&rsspoll_runtime.watch[channel].low,
                               memory_order_relaxed);
    high = atomic_load_explicit(&rsspoll_runtime.watch[channel].high,
                                memory_order_relaxed);
    if (value > low && value < high) {
        return;
    }
    fn = atomic_load(&rsspoll_runtime.notify);
    if (fn == NULL || !atomic_compare_exchange_strong(
                          &rsspoll_runtime.watch[channel].armed, &armed, 0)) {
        return;
    }
    if (fn() != 0) {
        /* Could not be delivered (queue full): try again next read. */
        atomic_store(&rsspoll_runtime.watch[channel].armed, 1);
        return;
    }
    atomic_fetch_add(&rsspoll_runtime.notifications, 1);
}

uint64_t
pmt_rsspoll_notifications(void)
{
    return atomic_load(&rsspoll_runtime.notifications);
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
        /* The watch first: a thread that sees the new value finds the
           notification already made (a quiet tracer's pending call is
           queued before the traced code can see the jump and return). */
        {
            uint64_t value;
            pmt_rsspoll_reader_fn heap;
            if (pmt_rss_current(&value) == 0) {
                check_watch(PMT_WATCH_RSS,
                            value > INT64_MAX ? INT64_MAX : (int64_t)value);
                publish(value);
            }
            /* The heap counter: no system call, read only while a
               watch needs it. */
            heap = atomic_load(&rsspoll_runtime.heap_reader);
            if (heap != NULL && watch_armed(PMT_WATCH_HEAP)) {
                check_watch(PMT_WATCH_HEAP, heap());
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
