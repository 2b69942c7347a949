/*
 * alloc_api.c - the Python functions of the allocator hooks (alloc_*):
 * counters, the tracker's start/stop, stats and snapshots.
 *
 * The hooks themselves are in alloc_hooks.c (through alloc.h); foreign
 * blocks are alloc_traced.c's.  This file calls both; neither calls it, and
 * alloc_hooks.c calls neither of the others (see alloc.h).
 *
 * Threading: every function here runs with the GIL held; api_runtime is
 * touched only then.
 */
#include "native.h"
#include "alloc.h"

#include <math.h>
#include <string.h>

/* Process-wide (documented exception to "no mutable globals").  GIL. */
static struct {
    int python_users; /* alloc_counting_start() callers not yet stopped */
} api_runtime;

/* Stop the tracker if it runs: recording off, foreign blocks no longer
   watched (their wrappers finish first), then its tables released. */
static void
tracker_stop(void)
{
    if (pmt_tracker_mode() == PMT_TRACKER_OFF) {
        return;
    }
    /* Free-list retagging first: it runs the tracker's GIL-side code. */
    pmt_revive_stop();
    pmt_tracker_switch_off();
    pmt_traced_stop();
    pmt_tracker_release();
}

PyDoc_STRVAR(
    alloc_counters_doc,
    "alloc_counters() -> dict\n\n"
    "Live bytes and blocks per allocator domain, counted since counting\n"
    "began ('counting' says whether they are being kept).");

static PyObject *
alloc_counters(PyObject *module, PyObject *unused)
{
    PyObject *dict = NULL;
    int64_t bytes = 0, blocks = 0, b, n;
    char key[32];
    int d;

    dict = PyDict_New();
    if (dict == NULL) {
        goto error;
    }
    for (d = 0; d < PMT_ALLOC_NDOMAINS; d++) {
        pmt_alloc_domain_live(d, &b, &n);
        bytes += b;
        blocks += n;
        snprintf(key, sizeof(key), "%s_bytes", pmt_alloc_domain_name(d));
        if (pmt_dict_set_int(dict, key, b) < 0) {
            goto error;
        }
        snprintf(key, sizeof(key), "%s_blocks", pmt_alloc_domain_name(d));
        if (pmt_dict_set_int(dict, key, n) < 0) {
            goto error;
        }
    }
    /* Foreign blocks (PyTraceMalloc_Track): their own group, not in the
       totals of the three domains. */
    pmt_traced_counters(&b, &n);
    if (pmt_dict_set_int(dict, "traced_bytes", b) < 0 ||
        pmt_dict_set_int(dict, "traced_blocks", n) < 0 ||
        pmt_dict_set_int(dict, "bytes", bytes) < 0 ||
        pmt_dict_set_int(dict, "blocks", blocks) < 0 ||
        PyDict_SetItemString(dict, "counting",
                             pmt_alloc_counting() ? Py_True : Py_False) < 0) {
        goto error;
    }
    return dict;
error:
    Py_XDECREF(dict);
    return NULL;
}

PyDoc_STRVAR(
    alloc_live_bytes_doc,
    "alloc_live_bytes() -> int\n\n"
    "Live bytes of all domains (what pmt_alloc_live_bytes() returns).");

static PyObject *
alloc_live_bytes(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(pmt_alloc_live_bytes());
}

PyDoc_STRVAR(alloc_counting_start_doc,
             "alloc_counting_start() -> None\n\n"
             "Start keeping the live-byte counters (reference counted).");

static PyObject *
alloc_counting_start(PyObject *module, PyObject *unused)
{
    if (pmt_alloc_counting_acquire() < 0) {
        return NULL;
    }
    api_runtime.python_users++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(alloc_counting_stop_doc,
             "alloc_counting_stop() -> None\n\n"
             "Undo one alloc_counting_start().");

static PyObject *
alloc_counting_stop(PyObject *module, PyObject *unused)
{
    if (api_runtime.python_users <= 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "allocation counting was not started");
        return NULL;
    }
    api_runtime.python_users--;
    pmt_alloc_counting_release();
    Py_RETURN_NONE;
}

/* A count option: an int in 0..max, into *out (absent: 0).  ValueError
   otherwise: a negative number must not wrap round to a huge one. */
static int
count_option(PyObject *value, const char *name, unsigned long long max,
             unsigned long long *out)
{
    unsigned long long v;

    if (value == NULL) {
        *out = 0;
        return 0;
    }
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    /* OverflowError for a negative number as for one above 2**64-1. */
    v = PyLong_AsUnsignedLongLong(value);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        goto out_of_range;
    }
    if (v > max) {
        goto out_of_range;
    }
    *out = v;
    return 0;
out_of_range:
    PyErr_Format(PyExc_ValueError,
                 "%s must be an integer between 0 and %llu, "
                 "not %R",
                 name, max, value);
    return -1;
}

/* The caps are counts (0: none); beyond 2**63-1 a number is no count of
   anything this process could hold. */
#define COUNT_LIMIT ((unsigned long long)INT64_MAX)

PyDoc_STRVAR(
    alloc_start_doc,
    "alloc_start(mode='exact', depth=16, sample_bytes=524288, max_traces=0,\n"
    "            max_stacks=0, seed=0, retag_revived=False) -> None\n\n"
    "Start the allocation tracker.  mode is 'exact' (every block) or\n"
    "'sampled' (one sample per sample_bytes allocated on average; blocks of\n"
    "sample_bytes/2 or more are all recorded).\n"
    "max_traces/max_stacks cap the tables (0: no cap); seed fixes the\n"
    "sampling sequence (0: random).  retag_revived: an object revived from a\n"
    "free list moves its block to the stack that revived it (CPython 3.13+,\n"
    "a reference tracer; alloc_stats()['retag_revived'] says whether it is\n"
    "working).");

static PyObject *
alloc_start(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"mode",          "depth",      "sample_bytes",
                             "max_traces",    "max_stacks", "seed",
                             "retag_revived", NULL};
    const char *mode_name = "exact";
    int depth = 16;
    double sample_bytes = 512.0 * 1024.0;
    PyObject *max_traces_obj = NULL, *max_stacks_obj = NULL, *seed_obj = NULL;
    unsigned long long max_traces, max_stacks, seed;
    int retag_revived = 0;
    pmt_tracker_config cfg;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|sidOOOp:alloc_start",
                                     kwlist, &mode_name, &depth, &sample_bytes,
                                     &max_traces_obj, &max_stacks_obj,
                                     &seed_obj, &retag_revived)) {
        return NULL;
    }
#ifdef Py_GIL_DISABLED
    PyErr_SetString(PyExc_NotImplementedError,
                    "the allocation tracker needs a build with the GIL");
    return NULL;
#endif
    if (strcmp(mode_name, "exact") == 0) {
        cfg.mode = PMT_TRACKER_EXACT;
    }
    else if (strcmp(mode_name, "sampled") == 0) {
        cfg.mode = PMT_TRACKER_SAMPLED;
    }
    else {
        PyErr_Format(PyExc_ValueError,
                     "mode must be 'exact' or 'sampled', not '%s'", mode_name);
        return NULL;
    }
    if (depth < 1 || depth > PMT_TRACKER_MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError, "depth must be in 1..%d",
                     PMT_TRACKER_MAX_DEPTH);
        return NULL;
    }
    if (!(sample_bytes >= 1.0) || sample_bytes > 1e15) {
        PyErr_SetString(PyExc_ValueError, "sample_bytes must be at least 1");
        return NULL;
    }
    if (count_option(max_traces_obj, "max_traces", COUNT_LIMIT, &max_traces) <
            0 ||
        count_option(max_stacks_obj, "max_stacks", COUNT_LIMIT, &max_stacks) <
            0 ||
        count_option(seed_obj, "seed", UINT64_MAX, &seed) < 0) {
        return NULL;
    }
    if (pmt_tracker_mode() != PMT_TRACKER_OFF) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the allocation tracker is already running");
        return NULL;
    }
    /* 0, or more stacks than ids can tell apart: as many as they can. */
    if (max_stacks == 0 || max_stacks > PMT_TRACKER_MAX_STACKS) {
        max_stacks = PMT_TRACKER_MAX_STACKS;
    }
    cfg.depth = depth;
    cfg.sample_bytes = sample_bytes;
    cfg.max_traces = (size_t)max_traces;
    cfg.max_stacks = (uint32_t)max_stacks;
    cfg.seed = seed;
    if (pmt_tracker_start(&cfg) < 0) {
        return NULL;
    }
    pmt_traced_start();
    if (retag_revived && pmt_revive_start() < 0) {
        tracker_stop();
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(alloc_stop_doc,
             "alloc_stop() -> None\n\n"
             "Stop the allocation tracker and forget its data (idempotent).");

static PyObject *
alloc_stop(PyObject *module, PyObject *unused)
{
    int rc = 0;

    if (pmt_tracker_mode() != PMT_TRACKER_OFF) {
        rc = pmt_traced_check_hooks();
    }
    tracker_stop();
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(alloc_is_tracking_doc, "alloc_is_tracking() -> bool");

static PyObject *
alloc_is_tracking(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(pmt_tracker_mode() != PMT_TRACKER_OFF);
}

PyDoc_STRVAR(
    alloc_set_stack_base_doc,
    "alloc_set_stack_base(on) -> None\n\n"
    "on=True: stacks recorded from now on stop below the caller's frame\n"
    "(it and its callers are left out); the caller must call it again with\n"
    "False before its frame returns.");

static PyObject *
alloc_set_stack_base(PyObject *module, PyObject *on)
{
    int flag = PyObject_IsTrue(on);

    if (flag < 0) {
        return NULL;
    }
    pmt_tracker_set_base(flag ? pmt_current_frame() : NULL);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(alloc_reset_peak_doc,
             "alloc_reset_peak() -> None\n\n"
             "Restart the peak from the memory live now.");

static PyObject *
alloc_reset_peak(PyObject *module, PyObject *unused)
{
    if (pmt_tracker_mode() == PMT_TRACKER_OFF) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the allocation tracker is not running");
        return NULL;
    }
    pmt_tracker_reset_peak();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(
    alloc_stats_doc,
    "alloc_stats() -> dict\n\n"
    "The tracker's own figures: memory it holds, table sizes, drops.");

static PyObject *
alloc_stats(PyObject *module, PyObject *unused)
{
    PyObject *dict = PyDict_New();
    pmt_tracker_stats_t st;

    if (dict == NULL) {
        return NULL;
    }
    pmt_tracker_stats(&st);
    if (pmt_dict_set_int(dict, "memory", (long long)st.memory) < 0 ||
        pmt_dict_set_int(dict, "traces", (long long)st.traces) < 0 ||
        pmt_dict_set_int(dict, "stacks", (long long)st.stacks) < 0 ||
        pmt_dict_set_int(dict, "dropped_traces",
                         (long long)st.dropped_traces) < 0 ||
        pmt_dict_set_int(dict, "dropped_stacks",
                         (long long)st.dropped_stacks) < 0 ||
        pmt_dict_set_int(dict, "dropped_pending",
                         (long long)st.dropped_pending) < 0 ||
        pmt_traced_add_stats(dict) < 0 || pmt_revive_add_stats(dict) < 0) {
        Py_DECREF(dict);
        return NULL;
    }
    return dict;
}

/* (file, function, line) of one frame, a new tuple. */
static PyObject *
frame_tuple(const pmt_frame *frame)
{
    PyCodeObject *code = (PyCodeObject *)frame->code;
    int line = frame->addr < 0 ? code->co_firstlineno
                               : PyCode_Addr2Line(code, frame->addr);

    return Py_BuildValue("(OOi)", code->co_filename, code->co_name, line);
}

/* List of (frames, bytes, blocks, peak_bytes, peak_blocks); GIL held and
   the guard set, so the stack table does not change under us. */
static PyObject *
stacks_list(const pmt_stacktable *stacks)
{
    PyObject *list = NULL, *frames = NULL, *item = NULL;
    uint32_t id, i;

    list = PyList_New(0);
    if (list == NULL) {
        goto error;
    }
    for (id = 0; id < stacks->count; id++) {
        const pmt_stack *s = &stacks->stacks[id];
        const pmt_frame *fr = pmt_stacktable_frames(stacks, id);
        int64_t peak_bytes, peak_blocks;

        pmt_stacktable_peak_of(stacks, id, &peak_bytes, &peak_blocks);
        if (s->bytes == 0 && s->blocks == 0 && peak_bytes == 0 &&
            peak_blocks == 0) {
            continue;
        }
        frames = PyTuple_New(s->nframes);
        if (frames == NULL) {
            goto error;
        }
        for (i = 0; i < s->nframes; i++) {
            PyObject *t = frame_tuple(&fr[i]);
            if (t == NULL) {
                goto error;
            }
            PyTuple_SET_ITEM(frames, i, t);
        }
        item = Py_BuildValue("(OLLLL)", frames, (long long)s->bytes,
                             (long long)s->blocks, (long long)peak_bytes,
                             (long long)peak_blocks);
        Py_CLEAR(frames);
        if (item == NULL || PyList_Append(list, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
    }
    return list;
error:
    Py_XDECREF(frames);
    Py_XDECREF(item);
    Py_XDECREF(list);
    return NULL;
}

PyDoc_STRVAR(
    alloc_snapshot_doc,
    "alloc_snapshot() -> dict\n\n"
    "The tracker's live and peak totals by stack: keys mode, depth,\n"
    "sample_bytes, bytes, peak_bytes, stacks (list of (frames, bytes,\n"
    "blocks, peak_bytes, peak_blocks); frames innermost first as (file,\n"
    "function, line)), and the tracker's own stats.");

static PyObject *
alloc_snapshot(PyObject *module, PyObject *unused)
{
    PyObject *dict = NULL, *stacks = NULL, *stats = NULL, *mode = NULL;
    int mode_value = pmt_tracker_mode();
    const pmt_stacktable *table;
    int saved_guard, depth;
    double sample_bytes;

    if (mode_value == PMT_TRACKER_OFF) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the allocation tracker is not running");
        return NULL;
    }
    if (pmt_traced_check_hooks() < 0) {
        return NULL;
    }
    /* Our own objects are not tracked, and the stack table stays still. */
    saved_guard = pmt_alloc_guard_swap(1);
    table = pmt_tracker_stacks(&depth, &sample_bytes);
    stacks = stacks_list(table);
    if (stacks == NULL) {
        goto error;
    }
    stats = alloc_stats(module, NULL);
    if (stats == NULL) {
        goto error;
    }
    dict = PyDict_New();
    if (dict == NULL) {
        goto error;
    }
    mode = PyUnicode_FromString(mode_value == PMT_TRACKER_EXACT ? "exact"
                                                                : "sampled");
    if (mode == NULL || PyDict_SetItemString(dict, "mode", mode) < 0 ||
        pmt_dict_set_int(dict, "depth", depth) < 0 ||
        pmt_dict_set_int(dict, "sample_bytes", (long long)sample_bytes) < 0 ||
        pmt_dict_set_int(dict, "bytes", (long long)table->total) < 0 ||
        pmt_dict_set_int(dict, "peak_bytes", (long long)table->peak_total) <
            0 ||
        PyDict_SetItemString(dict, "stacks", stacks) < 0 ||
        PyDict_SetItemString(dict, "stats", stats) < 0) {
        goto error;
    }
    Py_DECREF(mode);
    Py_DECREF(stacks);
    Py_DECREF(stats);
    (void)pmt_alloc_guard_swap(saved_guard);
    return dict;
error:
    Py_XDECREF(mode);
    Py_XDECREF(stacks);
    Py_XDECREF(stats);
    Py_XDECREF(dict);
    (void)pmt_alloc_guard_swap(saved_guard);
    return NULL;
}

static PyMethodDef alloc_methods[] = {
    {"alloc_counters", alloc_counters, METH_NOARGS, alloc_counters_doc},
    {"alloc_live_bytes", alloc_live_bytes, METH_NOARGS, alloc_live_bytes_doc},
    {"alloc_counting_start", alloc_counting_start, METH_NOARGS,
     alloc_counting_start_doc},
    {"alloc_counting_stop", alloc_counting_stop, METH_NOARGS,
     alloc_counting_stop_doc},
    {"alloc_start", (PyCFunction)(void (*)(void))alloc_start,
     METH_VARARGS | METH_KEYWORDS, alloc_start_doc},
    {"alloc_stop", alloc_stop, METH_NOARGS, alloc_stop_doc},
    {"alloc_is_tracking", alloc_is_tracking, METH_NOARGS,
     alloc_is_tracking_doc},
    {"alloc_reset_peak", alloc_reset_peak, METH_NOARGS, alloc_reset_peak_doc},
    {"alloc_stats", alloc_stats, METH_NOARGS, alloc_stats_doc},
    {"alloc_set_stack_base", alloc_set_stack_base, METH_O,
     alloc_set_stack_base_doc},
    {"alloc_snapshot", alloc_snapshot, METH_NOARGS, alloc_snapshot_doc},
    {NULL, NULL, 0, NULL},
};

int
pmt_alloc_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, alloc_methods);
}

void
pmt_alloc_shutdown(void)
{
    tracker_stop();
    api_runtime.python_users = 0;
    pmt_alloc_hooks_shutdown();
}
