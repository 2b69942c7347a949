/*
 * alloc_revive.c - the allocation tracker's view of objects revived from
 * free lists (CPython 3.13+, PyRefTracer).
 *
 * Free lists (tuples, lists, dicts, floats, ...) give a new object the
 * block of a dead one without calling the allocator: the tracker, which
 * records a block when an allocator hands it out, would charge the new
 * object to the code that first allocated the block.  CPython calls the
 * reference tracer (PyRefTracer_SetTracer) with PyRefTracer_CREATE from
 * _Py_NewReference for every new object, free-list reuse included; our
 * callback hands the object's block to pmt_tracker_object_created
 * (alloc_hooks.c), which moves a block found under another stack to the
 * current one; at PyRefTracer_DESTROY (before tp_dealloc) the block is
 * charged to no stack, so that a block waiting in a free list is charged
 * to nobody (3.13.0-3.13.2 miss the DESTROY of some objects the eval loop
 * frees, gh-130382: theirs wait under their old stack, as without this
 * file).  The block of an object is the object's address minus
 * what the allocator put in front of it: the GC header for GC types, and
 * the two pointers of the pre-header (managed dict and weakref list) for
 * types with Py_TPFLAGS_PREHEADER (_PyType_PreHeaderSize, 3.13).
 *
 * Opt-in (alloc_start(retag_revived=True)): the hunt turns it on around
 * the calls that name its sites.  Before 3.13 there is no hook: start does
 * nothing and the stats say so.
 *
 * The slot is shared (reftrace.c's ReferenceTracing, tracemalloc).  The
 * tracer that was installed before ours is called from our callback
 * (chained) and put back at stop when the slot is still ours.  When
 * another tool took the slot meanwhile it is left alone (removing it
 * would break that tool; one that chained to us keeps calling our
 * callback, which then only chains further): `displaced` says so, and
 * ours is not installed again while it may still be in that chain (the
 * chain would reach it twice).  The callback never raises, never
 * allocates through Python and runs only the tracker's GIL-side code.
 *
 * Threading: CPython calls the tracer with the GIL held (the tracker
 * refuses free-threaded builds), and start/stop run with the GIL held:
 * the GIL protects every field below.  Fork: the slot and this state are
 * inherited by the child together with the tracker's hooks, as they are.
 */
#include "native.h"
#include "alloc.h"

#if PMT_PY313_PLUS

/* Process-wide (one reference-tracer slot per process); every field is
   read and written with the GIL held. */
static struct revive_runtime {
    int on;           /* retag at CREATE (between start and stop) */
    int installed;    /* our callback is in the slot, or may be in the
                         chain of the tool that displaced it */
    int displaced;    /* a stop found the slot taken by another tool */
    int in_callback;  /* a chain that comes back to us stops here */
    PyRefTracer prev; /* the tracer before ours, chained */
    void *prev_data;  /* its data */
    unsigned long long retagged; /* blocks moved since start */
} rv;

static int
revive_callback(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (rv.in_callback) {
        return 0;
    }
    rv.in_callback = 1;
    if (rv.on) {
        PyTypeObject *tp = Py_TYPE(op);
        size_t pre = 0;
        /* _PyType_PreHeaderSize: PyGC_Head is two words. */
        if (PyType_IS_GC(tp)) {
            pre += 2 * sizeof(uintptr_t);
        }
        if (PyType_HasFeature(tp, Py_TPFLAGS_PREHEADER)) {
            pre += 2 * sizeof(PyObject *);
        }
        if (event == PyRefTracer_CREATE) {
            rv.retagged +=
                (unsigned)pmt_tracker_object_created((const char *)op - pre);
        }
        else if (event == PyRefTracer_DESTROY) {
            pmt_tracker_object_destroyed((const char *)op - pre);
        }
    }
    if (rv.prev != NULL) {
        (void)rv.prev(op, event, rv.prev_data);
    }
    rv.in_callback = 0;
    return 0;
}

static int
slot_is_ours(void)
{
    void *data = NULL;

    return PyRefTracer_GetTracer(&data) == revive_callback && data == &rv;
}

int
pmt_revive_supported(void)
{
    return 1;
}

int
pmt_revive_start(void)
{
    rv.retagged = 0;
    if (rv.installed && !slot_is_ours()) {
        /* Still linked below the tool that displaced us: installing again
           would make its chain call us twice. */
        return 0;
    }
    if (!rv.installed) {
        rv.prev = PyRefTracer_GetTracer(&rv.prev_data);
        if (PyRefTracer_SetTracer(revive_callback, &rv) < 0) {
            rv.prev = NULL;
            rv.prev_data = NULL;
            return -1;
        }
        rv.installed = 1;
    }
    rv.displaced = 0;
    rv.on = 1;
    return 0;
}

void
pmt_revive_stop(void)
{
    if (!rv.on) {
        return;
    }
    rv.on = 0;
    if (!slot_is_ours()) {
        rv.displaced = 1;
        return;
    }
    (void)PyRefTracer_SetTracer(rv.prev, rv.prev_data);
    rv.prev = NULL;
    rv.prev_data = NULL;
    rv.installed = 0;
}

int
pmt_revive_add_stats(PyObject *dict)
{
    /* Retagging works only while our callback holds the slot. */
    int active = rv.on && slot_is_ours();

    if (PyDict_SetItemString(dict, "retag_revived",
                             active ? Py_True : Py_False) < 0 ||
        pmt_dict_set_int(dict, "revived_retagged", (long long)rv.retagged) <
            0 ||
        pmt_dict_set_int(dict, "retag_displaced",
                         rv.on ? !active : rv.displaced) < 0) {
        return -1;
    }
    return 0;
}

#else /* !PMT_PY313_PLUS */

int
pmt_revive_supported(void)
{
    return 0;
}

int
pmt_revive_start(void)
{
    return 0;
}

void
pmt_revive_stop(void)
{
}

int
pmt_revive_add_stats(PyObject *dict)
{
    if (PyDict_SetItemString(dict, "retag_revived", Py_False) < 0 ||
        pmt_dict_set_int(dict, "revived_retagged", 0) < 0 ||
        pmt_dict_set_int(dict, "retag_displaced", 0) < 0) {
        return -1;
    }
    return 0;
}

#endif /* PMT_PY313_PLUS */
