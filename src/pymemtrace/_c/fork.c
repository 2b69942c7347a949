/*
 * fork.c - the extension's one pthread_atfork registration.
 *
 * A fork()ed child has only the thread that called fork(): a lock held by
 * any other thread at that moment would stay held in the child forever,
 * and a background thread does not exist there.  So the prepare handler
 * takes every lock of the extension, in the one order below, and the
 * parent and child handlers release (or reset) them in reverse.  The order
 * is the lock order of docs/design.md section 3: a lock comes before every
 * lock that code may take while holding it, so prepare never waits for a
 * lock whose holder waits for one prepare already took.
 *
 *   #  concern                 prepare takes                 child
 *   1  core/logwriter          each open log's record lock,  inherited logs
 *                              then its queue lock; the      write nothing
 *                              signal-handler lock           (the parent's)
 *   2  sampler.c               the registry lock, then each  no thread: idle,
 *                              sampler's lock                fresh conds
 *   3  alloc_traced.c          the traced table lock         released
 *   4  alloc_hooks.c           raw_lock                      released
 *   5  core/shrinkwatch        its lock                      counters reset
 *   6  core/gotpatch           its lock                      released
 *   7  core/faultcount         its lock                      rings closed
 *   8  core/rsspoll            its start/stop lock, then     no poller
 *                              its periodic thread's lock
 *   9  core/rss (statm)        (no lock)                     descriptor closed
 *
 * Why this order: the tracers' hooks hold a log's record lock while they
 * format (and may read faults, 7, or allocate, 4, meanwhile); a traced
 * wrapper holds 3 while it accounts under 4; shrinkwatch installs through
 * gotpatch under its own lock (5 before 6); 2 and 8 nest only within
 * their concern (registry before sampler, start/stop before the thread's
 * lock); the queue and signal locks of 1, and 7, are leaves.
 *
 * The GIL is not ours: os.fork() holds it around fork(), and CPython's
 * own handlers run before ours.
 */
#include "native.h"

#include <errno.h>
#include <pthread.h>

#include "core/faultcount.h"
#include "core/gotpatch.h"
#include "core/logwriter.h"
#include "core/rss.h"
#include "core/rsspoll.h"
#include "core/shrinkwatch.h"

static void
fork_prepare(void)
{
    pmt_log_fork_prepare();
    pmt_sampler_fork_prepare();
    pmt_traced_fork_prepare();
    pmt_alloc_fork_prepare();
    pmt_shrinkwatch_fork_prepare();
    pmt_gotpatch_fork_prepare();
    pmt_faultcount_fork_prepare();
    pmt_rsspoll_fork_prepare();
}

static void
fork_parent(void)
{
    pmt_rsspoll_fork_parent();
    pmt_faultcount_fork_parent();
    pmt_gotpatch_fork_release();
    pmt_shrinkwatch_fork_parent();
    pmt_alloc_fork_release();
    pmt_traced_fork_release();
    pmt_sampler_fork_parent();
    pmt_log_fork_parent();
}

static void
fork_child(void)
{
    pmt_rss_fork_child();
    pmt_rsspoll_fork_child();
    pmt_faultcount_fork_child();
    pmt_gotpatch_fork_release();
    pmt_shrinkwatch_fork_child();
    pmt_alloc_fork_release();
    pmt_traced_fork_release();
    pmt_sampler_fork_child();
    pmt_log_fork_child();
}

/* pthread_once is its own lock; the result is read after it. */
static struct {
    pthread_once_t once;
    int err; /* pthread_atfork's result */
} fork_runtime = {PTHREAD_ONCE_INIT, 0};

static void
register_once(void)
{
    fork_runtime.err = pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int
pmt_fork_register(void)
{
    (void)pthread_once(&fork_runtime.once, register_once);
    if (fork_runtime.err != 0) {
        errno = fork_runtime.err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}
