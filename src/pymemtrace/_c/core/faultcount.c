/*
 * core/faultcount.c - per-thread page-fault counters read with plain
 * loads; see faultcount.h.
 *
 * Process-wide state (documented exception to "no mutable globals"):
 * faultcount_runtime, each field commented with what protects it, and one
 * thread-local block (which acquisition this thread is watched in).
 *
 * Linux: perf_event_open.  Elsewhere every function answers "no source".
 */
#define _GNU_SOURCE
#include "faultcount.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FC_SUPPORTED 1
#else
#define FC_SUPPORTED 0
#endif

#define FC_TLS __thread __attribute__((tls_model("initial-exec")))

#if FC_SUPPORTED
/* One watched thread. */
typedef struct {
    struct perf_event_mmap_page *page; /* control page + one data page */
    int fd;
    uint64_t tail; /* the last head we moved data_tail to */
} fc_ring;
#endif

static struct faultcount_runtime {
    pthread_mutex_t lock; /* protects users, source, the rings' set-up */
    int users;            /* acquisitions.  lock */
    /* PMT_FAULTS_* of the current acquisition.  Written under lock, read
       by the stamp (atomic, relaxed). */
    atomic_int source;
    /* Bumped by every acquisition that (re)starts watching, so a thread
       knows whether its thread-local slot is still valid.  Atomic. */
    atomic_uint generation;
    /* Rings in use: slots [0, nrings) are valid.  nrings is written under
       lock (release) after the slot is filled; the stamp reads it
       (acquire) without the lock. */
    atomic_int nrings;
#if FC_SUPPORTED
    fc_ring rings[PMT_FAULTCOUNT_MAX_THREADS];
#endif
    /* Threads that started being watched, and calls of threads that could
       not be: both move the stamp.  Atomic. */
    atomic_uint_fast64_t bumps;
    long page_size; /* set once by the first acquire.  lock */
} fcrt = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

/* This thread: the acquisition generation it was last looked at in, and
   its ring slot then (-1: not watched). */
static FC_TLS struct {
    unsigned generation;
    int slot;
} fc_tls;

const char *
pmt_faultcount_source_name(int source)
{
    switch (source) {
    case PMT_FAULTS_ALL:
        return "page faults (perf, user and kernel mode)";
    case PMT_FAULTS_USER:
        return "page faults (perf, user mode only)";
    default:
        return "none";
    }
}

/* fork(): see faultcount.h; fork.c calls these. */
void
pmt_faultcount_fork_prepare(void)
{
    pthread_mutex_lock(&fcrt.lock);
}

void
pmt_faultcount_fork_parent(void)
{
    pthread_mutex_unlock(&fcrt.lock);
}

#if FC_SUPPORTED

static int
open_counter(int exclude_kernel)
{
    struct perf_event_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof(attr);
    attr.config = PERF_COUNT_SW_PAGE_FAULTS;
    attr.sample_period = 1;
    attr.sample_type = 0; /* the 8-byte header alone */
    attr.exclude_kernel = (unsigned)exclude_kernel;
    attr.exclude_hv = 1;
    /* Nobody polls the fd: no wake-ups. */
    attr.watermark = 1;
    attr.wakeup_watermark = 1u << 30;
    return (int)syscall(SYS_perf_event_open, &attr, 0 /* this thread */,
                        -1 /* any CPU */, -1, PERF_FLAG_FD_CLOEXEC);
}

/* Open and map a counter of the calling thread for source (lock held).
   0, or -1. */
static int
open_ring_unlocked(int source, fc_ring *ring)
{
    void *map;
    int fd = open_counter(source != PMT_FAULTS_ALL);

    if (fd < 0) {
        return -1;
    }
    map = mmap(NULL, (size_t)(2 * fcrt.page_size), PROT_READ | PROT_WRITE,
               MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return -1;
    }
    ring->page = (struct perf_event_mmap_page *)map;
    ring->fd = fd;
    ring->tail = 0;
    return 0;
}

static void
close_ring(fc_ring *ring)
{
    if (ring->page != NULL) {
        (void)munmap(ring->page, (size_t)(2 * fcrt.page_size));
        ring->page = NULL;
    }
    if (ring->fd >= 0) {
        (void)close(ring->fd);
        ring->fd = -1;
    }
}

/* The rings belong to the parent's threads; the maps are gone. */
void
pmt_faultcount_fork_child(void)
{
    int i, n = atomic_load(&fcrt.nrings);

    pthread_mutex_init(&fcrt.lock, NULL);
    for (i = 0; i < n; i++) {
        if (fcrt.rings[i].fd >= 0) {
            (void)close(fcrt.rings[i].fd);
        }
        fcrt.rings[i].page = NULL;
        fcrt.rings[i].fd = -1;
    }
    atomic_store(&fcrt.nrings, 0);
    atomic_store(&fcrt.source, PMT_FAULTS_NONE);
    atomic_fetch_add(&fcrt.generation, 1);
    fcrt.users = 0;
}

/* The first acquisition: which source the kernel allows (lock held).
   PYMEMTRACE_FAULTS=user or =none asks for less than the kernel allows:
   how the fallbacks of a stricter machine are tested here. */
static int
probe_source_unlocked(void)
{
    const char *ask = getenv("PYMEMTRACE_FAULTS");
    int fd;

    if (ask != NULL && strcmp(ask, "none") == 0) {
        return PMT_FAULTS_NONE;
    }
    fd = (ask != NULL && strcmp(ask, "user") == 0) ? -1 : open_counter(0);
    if (fd >= 0) {
        close(fd);
        return PMT_FAULTS_ALL;
    }
    fd = open_counter(1);
    if (fd >= 0) {
        close(fd);
        return PMT_FAULTS_USER;
    }
    return PMT_FAULTS_NONE;
}

int
pmt_faultcount_acquire(void)
{
    int source;

    pthread_mutex_lock(&fcrt.lock);
    if (fcrt.users++ == 0) {
        long page = sysconf(_SC_PAGESIZE);
        fcrt.page_size = page > 0 ? page : 4096;
        atomic_store(&fcrt.nrings, 0);
        atomic_fetch_add(&fcrt.generation, 1);
        atomic_store(&fcrt.source, probe_source_unlocked());
    }
    source = atomic_load(&fcrt.source);
    pthread_mutex_unlock(&fcrt.lock);
    return source;
}

void
pmt_faultcount_release(void)
{
    int i, n;

    pthread_mutex_lock(&fcrt.lock);
    if (fcrt.users == 0 || --fcrt.users > 0) {
        goto out_unlock;
    }
    n = atomic_load(&fcrt.nrings);
    atomic_store(&fcrt.nrings, 0);
    for (i = 0; i < n; i++) {
        close_ring(&fcrt.rings[i]);
    }
    atomic_store(&fcrt.source, PMT_FAULTS_NONE);
    atomic_fetch_add(&fcrt.generation, 1);
out_unlock:
    pthread_mutex_unlock(&fcrt.lock);
}

int
pmt_faultcount_watch_thread(void)
{
    unsigned gen =
        atomic_load_explicit(&fcrt.generation, memory_order_acquire);
    int n;

    if (fc_tls.generation == gen) {
        return fc_tls.slot >= 0;
    }
    pthread_mutex_lock(&fcrt.lock);
    gen = atomic_load(&fcrt.generation);
    fc_tls.generation = gen;
    fc_tls.slot = -1;
    n = atomic_load(&fcrt.nrings);
    if (fcrt.users > 0 && atomic_load(&fcrt.source) != PMT_FAULTS_NONE &&
        n < PMT_FAULTCOUNT_MAX_THREADS &&
        open_ring_unlocked(atomic_load(&fcrt.source), &fcrt.rings[n]) == 0) {
        fc_tls.slot = n;
        atomic_store_explicit(&fcrt.nrings, n + 1, memory_order_release);
    }
    /* Faults this thread took before now were not counted. */
    atomic_fetch_add(&fcrt.bumps, 1);
    pthread_mutex_unlock(&fcrt.lock);
    return fc_tls.slot >= 0;
}

uint64_t
pmt_faultcount_stamp(void)
{
    uint64_t sum;
    int i, n;

    if (fc_tls.generation !=
            atomic_load_explicit(&fcrt.generation, memory_order_relaxed) ||
        fc_tls.slot < 0) {
        /* Not watched (yet): this call cannot tell, so it says "moved". */
        if (!pmt_faultcount_watch_thread()) {
            atomic_fetch_add_explicit(&fcrt.bumps, 1, memory_order_relaxed);
        }
    }
    sum = atomic_load_explicit(&fcrt.bumps, memory_order_relaxed);
    n = atomic_load_explicit(&fcrt.nrings, memory_order_acquire);
    for (i = 0; i < n; i++) {
        fc_ring *ring = &fcrt.rings[i];
        uint64_t head =
            __atomic_load_n(&ring->page->data_head, __ATOMIC_ACQUIRE);
        if (head != ring->tail) {
            /* Keep the ring empty so it never stops the count.  Racing
               writers store heads they read: never past the real head. */
            ring->tail = head;
            __atomic_store_n(&ring->page->data_tail, head, __ATOMIC_RELEASE);
        }
        sum += head;
    }
    return sum;
}

#else /* !FC_SUPPORTED */

int
pmt_faultcount_acquire(void)
{
    pthread_mutex_lock(&fcrt.lock);
    fcrt.users++;
    pthread_mutex_unlock(&fcrt.lock);
    return PMT_FAULTS_NONE;
}

void
pmt_faultcount_release(void)
{
    pthread_mutex_lock(&fcrt.lock);
    if (fcrt.users > 0) {
        fcrt.users--;
    }
    pthread_mutex_unlock(&fcrt.lock);
}

int
pmt_faultcount_watch_thread(void)
{
    return 0;
}

uint64_t
pmt_faultcount_stamp(void)
{
    return atomic_fetch_add_explicit(&fcrt.bumps, 1, memory_order_relaxed);
}

void
pmt_faultcount_fork_child(void)
{
    pthread_mutex_init(&fcrt.lock, NULL);
    fcrt.users = 0;
}

#endif /* FC_SUPPORTED */
