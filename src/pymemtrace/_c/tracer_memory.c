/*
 * tracer_memory.c - the memory a Profile/Trace writes at an event, exactly
 * (docs/design.md section 10): the cache of the last RSS read and the
 * stamp it was read at (the per-event test is static inline in tracer.h:
 * rss_at_event, memory_at_event), what a tracer acquires for it at enter
 * (the poller thread, the page-fault counters, the shrink watch; the
 * allocation counter for measure="heap"), and the private functions that
 * tests use to look at it or turn it off.
 *
 * Threading: GIL held.  The poller thread (core/rsspoll.c) never takes the
 * GIL; the stamp's counters are read without a lock (see
 * core/faultcount.h).
 */
#include "tracer.h"

#include <string.h>

struct pmt_tracer_memory_runtime pmt_tracer_memory_runtime;

int64_t
pmt_tracer_memory_now(const TracerObject *self)
{
    if (self->measure == MEASURE_HEAP) {
        return pmt_alloc_live_bytes();
    }
    pmt_tracer_memory_runtime.mem_valid = 0;
    return rss_at_event();
}

int
pmt_tracer_memory_acquire(TracerObject *self)
{
    int err;

    if (self->measure == MEASURE_HEAP) {
        if (pmt_alloc_counting_acquire() < 0) {
            return -1;
        }
        self->heap_acquired = 1;
    }
    if (self->measure == MEASURE_RSS) {
        err = pmt_rsspoll_start();
        if (err) {
            pmt_raise_errno(err, "cannot start the rss poller thread");
            return -1;
        }
        self->poll_started = 1;
        self->fault_source = pmt_faultcount_acquire();
        self->faults_acquired = 1;
        (void)pmt_faultcount_watch_thread();
        /* Where the interpreter loads extensions from (their dlopen). */
        if (pmt_shrinkwatch_acquire((const void *)&PyMem_RawFree) != 0) {
            /* Releases of memory cannot be seen (no GOT patching here):
               the stamp would miss them, so this tracer reads statm at
               every event. */
            self->fault_source = PMT_FAULTS_NONE;
        }
        self->shrink_acquired = 1;
    }
    return 0;
}

void
pmt_tracer_memory_release(TracerObject *self)
{
    if (self->poll_started) {
        self->poll_started = 0;
        pmt_rsspoll_stop();
    }
    if (self->faults_acquired) {
        self->faults_acquired = 0;
        pmt_faultcount_release();
    }
    if (self->shrink_acquired) {
        self->shrink_acquired = 0;
        pmt_shrinkwatch_release();
    }
    if (self->heap_acquired) {
        self->heap_acquired = 0;
        pmt_alloc_counting_release();
    }
}

PyDoc_STRVAR(
    poller_rss_doc,
    "_poller_rss() -> (int, int, int)\n\n"
    "The RSS the poller thread last published, its generation and the number\n"
    "of exact reads of RSS the tracers made (tests).");

static PyObject *
poller_rss(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue(
        "KKK", (unsigned long long)pmt_rsspoll_value(),
        (unsigned long long)pmt_rsspoll_generation(),
        (unsigned long long)pmt_tracer_memory_runtime.mem_reads);
}

PyDoc_STRVAR(
    set_rss_reads_doc,
    "_set_rss_reads(mode: str) -> str\n\n"
    "How measure=\"rss\" tracers read RSS: \"when-moved\" (the default: only\n"
    "when a page fault or a release of memory says it may have moved) or\n"
    "\"every-event\" (the seed's way, the reference for tests).  Returns the\n"
    "previous mode.");

static PyObject *
set_rss_reads(PyObject *module, PyObject *arg)
{
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    const char *old = pmt_tracer_memory_runtime.read_every_event
                          ? "every-event"
                          : "when-moved";

    if (name == NULL) {
        PyErr_SetString(PyExc_TypeError, "mode must be a str");
        return NULL;
    }
    if (strcmp(name, "every-event") == 0) {
        pmt_tracer_memory_runtime.read_every_event = 1;
    }
    else if (strcmp(name, "when-moved") == 0) {
        pmt_tracer_memory_runtime.read_every_event = 0;
    }
    else {
        PyErr_Format(PyExc_ValueError,
                     "mode must be \"when-moved\" or \"every-event\", not %R",
                     arg);
        return NULL;
    }
    return PyUnicode_FromString(old);
}

static PyMethodDef memory_functions[] = {
    {"_set_rss_reads", set_rss_reads, METH_O, set_rss_reads_doc},
    {"_poller_rss", poller_rss, METH_NOARGS, poller_rss_doc},
    {NULL, NULL, 0, NULL},
};

int
pmt_tracer_memory_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, memory_functions);
}
