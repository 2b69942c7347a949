/*
 * sampler.c - the RSS sampler thread behind pymemtrace.process.
 *
 * _native.Sampler(interval) owns one plain pthread (modelled on memray's
 * Tracker::BackgroundThread) that every `interval` seconds reads the
 * process memory (core/rss.h), the clocks and the CPU time (core/clocks.h)
 * and pushes the reading into a bounded ring buffer (core/ringbuf.h).
 * Python drains the ring in batches with drain().
 *
 * Threading model:
 * - The sampler thread never touches a Python object, never takes the GIL
 *   and never allocates: it cannot slow down or deadlock the interpreter,
 *   and allocation hooks never see it.  All signals are blocked in it, so
 *   they keep going to the threads Python expects.
 * - Between samples it sleeps on a condition variable (CLOCK_MONOTONIC),
 *   so stop() wakes it at once; stop() then joins it with the GIL released.
 * - When a read fails the thread records the errno, ends its loop and
 *   exits; the next drain() that empties the ring raises the OSError.
 * - Every sampler core is in one process-wide registry so that m_free
 *   (pmt_sampler_shutdown) can stop every thread and fork.c's child
 *   handler (pmt_sampler_fork_child) can forget the threads a fork() did
 *   not copy.
 *
 * Lock order: the GIL (when held), then sampler_runtime.lock, then a
 * core's lock.  The sampler thread takes only its core's lock.
 *
 * Who touches what:
 *   core->interval, capacity, with_cpu, fail_after: set at creation, then
 *       read-only (any thread).
 *   every other core field: under core->lock (the Python side with the
 *       GIL held, the sampler thread without it, the fork handlers).
 *   core->next/prev: under sampler_runtime.lock.
 */
#include "native.h"

#include "core/clocks.h"
#include "core/ringbuf.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Longest interval accepted, in seconds (a day): keeps timespec math far
   from overflow. */
#define SAMPLER_MAX_INTERVAL 86400.0
/* Largest ring accepted, in samples. */
#define SAMPLER_MAX_CAPACITY ((Py_ssize_t)1 << 24)
#define SAMPLER_DEFAULT_CAPACITY 4096

/* The clock of the sleep deadlines: the condition variable is set to
   CLOCK_MONOTONIC where pthread_condattr_setclock exists (not macOS). */
#ifdef __APPLE__
#define SAMPLER_COND_CLOCK CLOCK_REALTIME
#else
#define SAMPLER_COND_CLOCK CLOCK_MONOTONIC
#endif

typedef enum {
    PHASE_IDLE,    /* no thread */
    PHASE_RUNNING, /* a thread was created and nobody has claimed its join */
    PHASE_JOINING, /* stop() or shutdown claimed the join and is in it */
} sampler_phase;

typedef struct sampler_core {
    /* Protects every field below except the read-only ones. */
    pthread_mutex_t lock;
    /* Signalled by stop(): wakes the thread out of its sleep. */
    pthread_cond_t wake;
    /* Broadcast by the thread once it has taken its first sample (or
       failed to): start() waits for it. */
    pthread_cond_t started;
    /* The thread; valid in PHASE_RUNNING and PHASE_JOINING. */
    pthread_t thread;
    sampler_phase phase;
    /* Set by stop(), read by the thread between samples. */
    int stop_requested;
    /* The thread has left its loop (stopped, or failed). */
    int exited;
    /* The thread has run its first sample (or exited). */
    int has_started;
    /* Take the first sample at once (else after one interval); set by
       start() before the thread exists. */
    int immediate;
    /* errno of the read that ended the thread, 0 when none. */
    int error;
    /* What failed (a static string), NULL when error is 0. */
    const char *error_what;
    /* Kernel thread id of the last thread started, 0 before the first. */
    long tid;
    /* Samples taken since creation. */
    uint64_t taken;
    pmt_ringbuf ring;
    /* Read-only after creation: seconds between samples. */
    double interval;
    /* Read-only after creation: also read the CPU times. */
    int with_cpu;
    /* Read-only after creation: test seam, fail with EIO once this many
       samples were taken (0: never). */
    uint64_t fail_after;
    /* Registry links, protected by sampler_runtime.lock. */
    struct sampler_core *prev;
    struct sampler_core *next;
} sampler_core;

/*
 * Process-wide runtime of this file (the documented exception to "no
 * mutable globals"): the registry of every sampler core alive.
 */
static struct {
    /* Protects head and every core's prev/next.  Taken before any core's
       lock. */
    pthread_mutex_t lock;
    /* First core of the registry, NULL when there is none. */
    sampler_core *head;
} sampler_runtime = {PTHREAD_MUTEX_INITIALIZER, NULL};

/* ---------------------------------------------------------------------- */
/* The sampler thread (no Python from here to the next marker). */

/* Read one sample.  Returns 0, or an errno value with *what naming the
   read that failed. */
static int
take_sample(pmt_sample *sample, int with_cpu, const char **what)
{
    int err;

    sample->monotonic = pmt_clock_monotonic();
    sample->wall = pmt_clock_wall();
    sample->cpu_user = 0.0;
    sample->cpu_system = 0.0;
    err = pmt_rss_current(&sample->rss);
    if (err) {
        *what = pmt_rss_method();
        return err;
    }
    if (with_cpu) {
        err = pmt_cpu_times(&sample->cpu_user, &sample->cpu_system);
        if (err) {
            *what = "getrusage";
            return err;
        }
    }
    return 0;
}

static void
timespec_add(struct timespec *ts, double seconds)
{
    double whole = floor(seconds);
    long nanos = (long)((seconds - whole) * 1e9);

    ts->tv_sec += (time_t)whole;
    ts->tv_nsec += nanos;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec += 1;
        ts->tv_nsec -= 1000000000L;
    }
}

static int
timespec_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec ||
           (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Sleep until the deadline (SAMPLER_COND_CLOCK) or until stop() signals.
   Expects core->lock held; returns with it held. */
static void
sleep_until_unlocked(sampler_core *core, const struct timespec *deadline)
{
    while (!core->stop_requested) {
        int rc = pthread_cond_timedwait(&core->wake, &core->lock, deadline);
        if (rc == ETIMEDOUT) {
            return;
        }
    }
}

static void *
sampler_main(void *arg)
{
    sampler_core *core = (sampler_core *)arg;
    struct timespec next, now;
    pmt_sample sample;
    const char *what = NULL;
    int err;

#ifdef __linux__
    (void)pthread_setname_np(pthread_self(), "pmt-sampler");
#endif
    clock_gettime(SAMPLER_COND_CLOCK, &next);
    pthread_mutex_lock(&core->lock);
#ifdef SYS_gettid
    core->tid = (long)syscall(SYS_gettid);
#endif
    if (!core->immediate) {
        timespec_add(&next, core->interval);
        sleep_until_unlocked(core, &next);
    }
    while (!core->stop_requested) {
        pthread_mutex_unlock(&core->lock);
        err = take_sample(&sample, core->with_cpu, &what);
        pthread_mutex_lock(&core->lock);
        if (!err && core->fail_after && core->taken >= core->fail_after) {
            err = EIO;
            what = "injected failure (test)";
        }
        if (err) {
            core->error = err;
            core->error_what = what;
            break;
        }
        (void)pmt_ringbuf_push(&core->ring, &sample);
        core->taken++;
        if (!core->has_started) {
            core->has_started = 1;
            pthread_cond_broadcast(&core->started);
        }
        /* A fixed cadence; after a stall, restart it from now rather than
           taking a burst of late samples. */
        timespec_add(&next, core->interval);
        clock_gettime(SAMPLER_COND_CLOCK, &now);
        if (timespec_before(&next, &now)) {
            next = now;
            timespec_add(&next, core->interval);
        }
        sleep_until_unlocked(core, &next);
    }
    core->exited = 1;
    core->has_started = 1;
    pthread_cond_broadcast(&core->started);
    pthread_mutex_unlock(&core->lock);
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* Registry, shutdown and fork. */

/* fork(), called by fork.c in its written order: the registry lock, then
   every core's lock. */
void
pmt_sampler_fork_prepare(void)
{
    sampler_core *core;

    pthread_mutex_lock(&sampler_runtime.lock);
    for (core = sampler_runtime.head; core != NULL; core = core->next) {
        pthread_mutex_lock(&core->lock);
    }
}

void
pmt_sampler_fork_parent(void)
{
    sampler_core *core;

    for (core = sampler_runtime.head; core != NULL; core = core->next) {
        pthread_mutex_unlock(&core->lock);
    }
    pthread_mutex_unlock(&sampler_runtime.lock);
}

static int
init_wake_cond(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int err = pthread_condattr_init(&attr);

    if (err) {
        return err;
    }
#ifndef __APPLE__
    err = pthread_condattr_setclock(&attr, SAMPLER_COND_CLOCK);
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

/* The child has only the thread that called fork(): no sampler thread
   survives, so every core forgets its thread.  The condition variable may
   have had the parent's thread as a waiter: it starts afresh. */
void
pmt_sampler_fork_child(void)
{
    sampler_core *core;

    for (core = sampler_runtime.head; core != NULL; core = core->next) {
        core->phase = PHASE_IDLE;
        core->stop_requested = 0;
        core->exited = 1;
        core->tid = 0;
        pmt_ringbuf_clear(&core->ring);
        memset(&core->wake, 0, sizeof(core->wake));
        (void)init_wake_cond(&core->wake);
        memset(&core->started, 0, sizeof(core->started));
        (void)pthread_cond_init(&core->started, NULL);
        pthread_mutex_unlock(&core->lock);
    }
    pthread_mutex_unlock(&sampler_runtime.lock);
}

/* Ask the thread to stop and claim its join.  Returns 1 when the caller
   must join *thread, 0 when there is nothing to join (idle, or another
   caller is joining). */
static int
claim_join(sampler_core *core, pthread_t *thread)
{
    int claimed = 0;

    pthread_mutex_lock(&core->lock);
    if (core->phase == PHASE_RUNNING) {
        core->stop_requested = 1;
        pthread_cond_signal(&core->wake);
        core->phase = PHASE_JOINING;
        *thread = core->thread;
        claimed = 1;
    }
    pthread_mutex_unlock(&core->lock);
    return claimed;
}

static void
finish_join(sampler_core *core)
{
    pthread_mutex_lock(&core->lock);
    core->phase = PHASE_IDLE;
    pthread_mutex_unlock(&core->lock);
}

/* Stop and join without releasing the GIL: the thread never needs it. */
static void
stop_and_join(sampler_core *core)
{
    pthread_t thread;

    if (claim_join(core, &thread)) {
        (void)pthread_join(thread, NULL);
        finish_join(core);
    }
}

void
pmt_sampler_shutdown(void)
{
    sampler_core *core;

    pthread_mutex_lock(&sampler_runtime.lock);
    for (core = sampler_runtime.head; core != NULL; core = core->next) {
        stop_and_join(core);
    }
    pthread_mutex_unlock(&sampler_runtime.lock);
}

static sampler_core *
core_new(double interval, size_t capacity, int with_cpu, uint64_t fail_after)
{
    sampler_core *core = PyMem_RawCalloc(1, sizeof(sampler_core));
    int err;

    if (core == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    err = pmt_ringbuf_init(&core->ring, capacity);
    if (err) {
        goto out_free;
    }
    err = pthread_mutex_init(&core->lock, NULL);
    if (err) {
        goto out_ring;
    }
    err = init_wake_cond(&core->wake);
    if (err) {
        goto out_mutex;
    }
    err = pthread_cond_init(&core->started, NULL);
    if (err) {
        goto out_wake;
    }
    core->phase = PHASE_IDLE;
    core->exited = 1;
    core->interval = interval;
    core->with_cpu = with_cpu;
    core->fail_after = fail_after;

    pthread_mutex_lock(&sampler_runtime.lock);
    core->next = sampler_runtime.head;
    if (core->next != NULL) {
        core->next->prev = core;
    }
    sampler_runtime.head = core;
    pthread_mutex_unlock(&sampler_runtime.lock);
    return core;

out_wake:
    pthread_cond_destroy(&core->wake);
out_mutex:
    pthread_mutex_destroy(&core->lock);
out_ring:
    pmt_ringbuf_free(&core->ring);
out_free:
    PyMem_RawFree(core);
    pmt_raise_errno(err, "sampler");
    return NULL;
}

/* Stop the thread, leave the registry, free.  The GIL is held. */
static void
core_free(sampler_core *core)
{
    stop_and_join(core);
    pthread_mutex_lock(&sampler_runtime.lock);
    if (core->prev != NULL) {
        core->prev->next = core->next;
    }
    else {
        sampler_runtime.head = core->next;
    }
    if (core->next != NULL) {
        core->next->prev = core->prev;
    }
    pthread_mutex_unlock(&sampler_runtime.lock);
    pthread_cond_destroy(&core->started);
    pthread_cond_destroy(&core->wake);
    pthread_mutex_destroy(&core->lock);
    pmt_ringbuf_free(&core->ring);
    PyMem_RawFree(core);
}

/* ---------------------------------------------------------------------- */
/* The Python type. */

typedef struct {
    PyObject_HEAD
    sampler_core *core; /* owned; NULL only while being created */
} SamplerObject;

static PyObject *
sample_to_tuple(const pmt_sample *sample)
{
    return Py_BuildValue("(ddKdd)", sample->monotonic, sample->wall,
                         (unsigned long long)sample->rss, sample->cpu_user,
                         sample->cpu_system);
}

static PyObject *
sampler_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"interval", "capacity", "cpu", "_fail_after",
                             NULL};
    double interval = 0.0;
    Py_ssize_t capacity = SAMPLER_DEFAULT_CAPACITY;
    int with_cpu = 1;
    Py_ssize_t fail_after = 0;
    SamplerObject *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "d|npn:Sampler", kwlist,
                                     &interval, &capacity, &with_cpu,
                                     &fail_after)) {
        return NULL;
    }
    if (!(isfinite(interval) && interval > 0.0 &&
          interval <= SAMPLER_MAX_INTERVAL)) {
        PyErr_Format(PyExc_ValueError,
                     "interval must be a number of seconds > 0 and <= %d, "
                     "got %R",
                     (int)SAMPLER_MAX_INTERVAL,
                     PyTuple_GET_SIZE(args) ? PyTuple_GET_ITEM(args, 0)
                                            : Py_None);
        return NULL;
    }
    if (capacity < 1 || capacity > SAMPLER_MAX_CAPACITY) {
        PyErr_Format(PyExc_ValueError,
                     "capacity must be between 1 and %zd samples, got %zd",
                     SAMPLER_MAX_CAPACITY, capacity);
        return NULL;
    }
    if (fail_after < 0) {
        PyErr_SetString(PyExc_ValueError, "_fail_after must be >= 0");
        return NULL;
    }
    self = (SamplerObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->core =
        core_new(interval, (size_t)capacity, with_cpu, (uint64_t)fail_after);
    if (self->core == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
sampler_traverse(SamplerObject *self, visitproc visit, void *arg)
{
    /* Instances of heap types own a reference to their type. */
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void
sampler_dealloc(SamplerObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    if (self->core != NULL) {
        core_free(self->core);
        self->core = NULL;
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

PyDoc_STRVAR(
    sampler_start_doc,
    "start(immediate=True) -> None\n"
    "\n"
    "Start the sampler thread.  With immediate true the thread takes its\n"
    "first sample at once and start() waits for it (so tid and one sample are\n"
    "there on return); otherwise the first sample comes one interval later\n"
    "and start() does not wait.  RuntimeError when it is already running.");

static PyObject *
sampler_start(SamplerObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"immediate", NULL};
    sampler_core *core = self->core;
    sigset_t all, saved;
    int immediate = 1;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:start", kwlist,
                                     &immediate)) {
        return NULL;
    }

    pthread_mutex_lock(&core->lock);
    if (core->phase != PHASE_IDLE) {
        pthread_mutex_unlock(&core->lock);
        PyErr_SetString(PyExc_RuntimeError, "the sampler is already running");
        return NULL;
    }
    core->stop_requested = 0;
    core->exited = 0;
    core->has_started = 0;
    core->immediate = immediate;
    core->error = 0;
    core->error_what = NULL;
    /* The thread inherits the signal mask: block everything in it. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    err = pthread_create(&core->thread, NULL, sampler_main, core);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (err) {
        core->exited = 1;
        pthread_mutex_unlock(&core->lock);
        return pmt_raise_errno(err, "pthread_create");
    }
    core->phase = PHASE_RUNNING;
    pthread_mutex_unlock(&core->lock);
    if (!immediate) {
        Py_RETURN_NONE;
    }
    /* Wait for the first sample, so that tid and the first reading are
       there when start() returns.  The GIL is released (and it comes
       before core->lock: never wait for it holding the lock). */
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&core->lock);
    while (!core->has_started) {
        pthread_cond_wait(&core->started, &core->lock);
    }
    pthread_mutex_unlock(&core->lock);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(
    sampler_stop_doc,
    "stop() -> None\n"
    "\n"
    "Wake the sampler thread and join it (with the GIL released).  Returns at\n"
    "once whatever the interval.  Idempotent.  Samples taken stay in the ring\n"
    "until drained.");

static PyObject *
sampler_stop(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    sampler_core *core = self->core;
    pthread_t thread;

    if (claim_join(core, &thread)) {
        Py_BEGIN_ALLOW_THREADS(void)
        pthread_join(thread, NULL);
        Py_END_ALLOW_THREADS
        finish_join(core);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(
    sampler_drain_doc,
    "drain(max=-1) -> list\n"
    "\n"
    "Remove and return the samples held, oldest first, at most max of them\n"
    "(all when max < 0).  Each sample is a tuple (monotonic, wall, rss,\n"
    "cpu_user, cpu_system): seconds of time.monotonic(), seconds of\n"
    "time.time(), bytes, CPU seconds.  When the thread stopped because a read\n"
    "failed, the call that finds the ring empty raises that OSError once.");

static PyObject *
sampler_drain(SamplerObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"max", NULL};
    sampler_core *core = self->core;
    Py_ssize_t max = -1;
    pmt_sample *batch = NULL;
    size_t n = 0, i;
    int error = 0;
    const char *error_what = NULL;
    PyObject *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|n:drain", kwlist, &max)) {
        return NULL;
    }
    pthread_mutex_lock(&core->lock);
    n = core->ring.count;
    if (max >= 0 && (size_t)max < n) {
        n = (size_t)max;
    }
    if (n > 0) {
        batch = PyMem_RawMalloc(n * sizeof(pmt_sample));
        if (batch == NULL) {
            pthread_mutex_unlock(&core->lock);
            return PyErr_NoMemory();
        }
        n = pmt_ringbuf_pop(&core->ring, batch, n);
    }
    else if (core->error && core->exited) {
        /* Everything before the failure was drained: report it once. */
        error = core->error;
        error_what = core->error_what;
        core->error = 0;
        core->error_what = NULL;
    }
    pthread_mutex_unlock(&core->lock);

    if (error) {
        errno = error;
        PyErr_Format(PyExc_OSError, "rss sampler stopped: %s: %s", error_what,
                     strerror(error));
        goto out_free;
    }
    result = PyList_New((Py_ssize_t)n);
    if (result == NULL) {
        goto out_free;
    }
    for (i = 0; i < n; i++) {
        PyObject *item = sample_to_tuple(&batch[i]);
        if (item == NULL) {
            Py_CLEAR(result);
            goto out_free;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, item);
    }
out_free:
    PyMem_RawFree(batch);
    return result;
}

PyDoc_STRVAR(
    sampler_request_stop_doc,
    "request_stop() -> None\n"
    "\n"
    "Wake the sampler thread and tell it to end, without waiting; stop() then\n"
    "joins it.  Lets the caller do other work while the thread ends.");

static PyObject *
sampler_request_stop(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    sampler_core *core = self->core;

    pthread_mutex_lock(&core->lock);
    if (core->phase == PHASE_RUNNING) {
        core->stop_requested = 1;
        pthread_cond_signal(&core->wake);
    }
    pthread_mutex_unlock(&core->lock);
    Py_RETURN_NONE;
}

static PyObject *
sampler_enter(SamplerObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *empty = PyTuple_New(0);
    PyObject *rc;

    if (empty == NULL) {
        return NULL;
    }
    rc = sampler_start(self, empty, NULL);
    Py_DECREF(empty);

    if (rc == NULL) {
        return NULL;
    }
    Py_DECREF(rc);
    return Py_NewRef((PyObject *)self);
}

static PyObject *
sampler_exit(SamplerObject *self, PyObject *Py_UNUSED(args))
{
    PyObject *rc = sampler_stop(self, NULL);

    if (rc == NULL) {
        return NULL;
    }
    Py_DECREF(rc);
    Py_RETURN_FALSE;
}

static PyObject *
sampler_get_running(SamplerObject *self, void *Py_UNUSED(closure))
{
    int running;

    pthread_mutex_lock(&self->core->lock);
    running = self->core->phase == PHASE_RUNNING && !self->core->exited;
    pthread_mutex_unlock(&self->core->lock);
    return PyBool_FromLong(running);
}

static PyObject *
sampler_get_dropped(SamplerObject *self, void *Py_UNUSED(closure))
{
    uint64_t dropped;

    pthread_mutex_lock(&self->core->lock);
    dropped = self->core->ring.dropped;
    pthread_mutex_unlock(&self->core->lock);
    return PyLong_FromUnsignedLongLong((unsigned long long)dropped);
}

static PyObject *
sampler_get_taken(SamplerObject *self, void *Py_UNUSED(closure))
{
    uint64_t taken;

    pthread_mutex_lock(&self->core->lock);
    taken = self->core->taken;
    pthread_mutex_unlock(&self->core->lock);
    return PyLong_FromUnsignedLongLong((unsigned long long)taken);
}

static PyObject *
sampler_get_pending(SamplerObject *self, void *Py_UNUSED(closure))
{
    size_t count;

    pthread_mutex_lock(&self->core->lock);
    count = self->core->ring.count;
    pthread_mutex_unlock(&self->core->lock);
    return PyLong_FromSize_t(count);
}

static PyObject *
sampler_get_tid(SamplerObject *self, void *Py_UNUSED(closure))
{
    long tid;

    pthread_mutex_lock(&self->core->lock);
    tid = self->core->tid;
    pthread_mutex_unlock(&self->core->lock);
    if (tid == 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(tid);
}

static PyObject *
sampler_get_interval(SamplerObject *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->core->interval);
}

static PyObject *
sampler_get_capacity(SamplerObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->core->ring.capacity);
}

static PyGetSetDef sampler_getset[] = {
    {"running", (getter)sampler_get_running, NULL,
     "True while the sampler thread is sampling.", NULL},
    {"dropped", (getter)sampler_get_dropped, NULL,
     "Samples overwritten because the ring was full before a drain.", NULL},
    {"taken", (getter)sampler_get_taken, NULL,
     "Samples taken since the sampler was created.", NULL},
    {"pending", (getter)sampler_get_pending, NULL,
     "Samples in the ring, waiting for drain().", NULL},
    {"tid", (getter)sampler_get_tid, NULL,
     "Kernel thread id of the last thread started (None before start).", NULL},
    {"interval", (getter)sampler_get_interval, NULL,
     "Seconds between samples.", NULL},
    {"capacity", (getter)sampler_get_capacity, NULL, "Samples the ring holds.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef sampler_methods[] = {
    {"start", (PyCFunction)(void (*)(void))sampler_start,
     METH_VARARGS | METH_KEYWORDS, sampler_start_doc},
    {"stop", (PyCFunction)sampler_stop, METH_NOARGS, sampler_stop_doc},
    {"request_stop", (PyCFunction)sampler_request_stop, METH_NOARGS,
     sampler_request_stop_doc},
    {"drain", (PyCFunction)(void (*)(void))sampler_drain,
     METH_VARARGS | METH_KEYWORDS, sampler_drain_doc},
    {"__enter__", (PyCFunction)sampler_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)sampler_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(
    sampler_doc,
    "Sampler(interval, capacity=4096, cpu=True)\n"
    "\n"
    "A C thread that samples this process every interval seconds (RSS, the\n"
    "clocks, and the CPU times when cpu is true) into a ring of capacity\n"
    "samples, without holding the GIL.  Use start()/stop() or a with block,\n"
    "and drain() from Python.");

static PyType_Slot sampler_slots[] = {
    {Py_tp_new, sampler_new},
    {Py_tp_dealloc, sampler_dealloc},
    {Py_tp_traverse, sampler_traverse},
    {Py_tp_methods, sampler_methods},
    {Py_tp_getset, sampler_getset},
    {Py_tp_doc, (void *)sampler_doc},
    {0, NULL},
};

static PyType_Spec sampler_spec = {
    .name = "pymemtrace._native.Sampler",
    .basicsize = sizeof(SamplerObject),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = sampler_slots,
};

PyDoc_STRVAR(
    process_sample_doc,
    "process_sample() -> tuple\n"
    "\n"
    "One sample taken now by the calling thread, in the shape drain() returns:\n"
    "(monotonic, wall, rss, cpu_user, cpu_system).");

static PyObject *
process_sample(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    pmt_sample sample;
    const char *what = NULL;
    int err = take_sample(&sample, 1, &what);

    if (err) {
        return pmt_raise_errno(err, what);
    }
    return sample_to_tuple(&sample);
}

static PyMethodDef sampler_functions[] = {
    {"process_sample", process_sample, METH_NOARGS, process_sample_doc},
    {NULL, NULL, 0, NULL},
};

int
pmt_sampler_exec(PyObject *module)
{
    pmt_state *state = pmt_get_state(module);

    if (PyModule_AddFunctions(module, sampler_functions) < 0) {
        return -1;
    }
    state->sampler_type =
        PyType_FromModuleAndSpec(module, &sampler_spec, NULL);
    if (state->sampler_type == NULL) {
        return -1;
    }
    return PyModule_AddType(module, (PyTypeObject *)state->sampler_type);
}
