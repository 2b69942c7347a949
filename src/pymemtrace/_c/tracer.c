/*
 * tracer.c - the cPyMemTrace.Profile and Trace types: configuration,
 * enter (log, memory source, backend, hooks) and exit (LAST, EOF, hooks
 * put back), the process-wide stacks of active tracers, and the module
 * functions of the tracers.  See tracer.h for the files around it.
 *
 * Threading: GIL held everywhere; pmt_tracer_runtime is touched only with
 * the GIL.
 */
#include "tracer.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct pmt_tracer_runtime pmt_tracer_runtime = {
    .default_backend = PMT_PY312_PLUS ? BACKEND_MONITORING : BACKEND_LEGACY,
};

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the type ---------------------------------------------------------- */

static void
tracer_release_resources(TracerObject *self)
{
    PyMem_RawFree(self->name_buf);
    self->name_buf = NULL;
    memset(&self->names, 0, sizeof(self->names));
    Py_CLEAR(self->name_code);
    pmt_tracer_memory_release(self);
}

static int
tracer_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "d_rss_trigger", "message",       "filepath", "measure",
        "all_threads",   "max_log_bytes", NULL};
    TracerObject *self = (TracerObject *)op;
    long long trigger = -1;
    PyObject *message = Py_None, *filepath = Py_None, *max_bytes = Py_None;
    const char *measure = "rss";
    int all_threads = 0;

    if (self->state != ST_NEW) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot re-initialise a tracer once entered");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|LOO$spO", kwlist, &trigger,
                                     &message, &filepath, &measure,
                                     &all_threads, &max_bytes)) {
        return -1;
    }
    if (trigger < -1) {
        PyErr_SetString(PyExc_ValueError,
                        "d_rss_trigger must be -1 (page size), 0 (every "
                        "event) or a positive number of bytes");
        return -1;
    }
    if (strcmp(measure, "rss") == 0) {
        self->measure = MEASURE_RSS;
    }
    else if (strcmp(measure, "heap") == 0) {
        self->measure = MEASURE_HEAP;
    }
    else {
        PyErr_Format(PyExc_ValueError,
                     "measure must be \"rss\" or \"heap\", not \"%s\"",
                     measure);
        return -1;
    }
    if (message != Py_None && !PyUnicode_Check(message)) {
        PyErr_SetString(PyExc_TypeError, "message must be a str or None");
        return -1;
    }
    if (max_bytes == Py_None) {
        self->max_log_bytes = 0;
    }
    else {
        long long v = PyLong_AsLongLong(max_bytes);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (v <= 0) {
            PyErr_SetString(PyExc_ValueError,
                            "max_log_bytes must be a positive int or None");
            return -1;
        }
        self->max_log_bytes = (uint64_t)v;
    }
    if (filepath != Py_None) {
        PyObject *path = PyOS_FSPath(filepath);
        PyObject *str;
        Py_ssize_t nul;
        if (path == NULL) {
            return -1;
        }
        if (PyBytes_Check(path)) {
            str = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(path),
                                                   PyBytes_GET_SIZE(path));
            Py_DECREF(path);
            if (str == NULL) {
                return -1;
            }
        }
        else {
            str = path;
        }
        nul = PyUnicode_FindChar(str, 0, 0, PyUnicode_GET_LENGTH(str), 1);
        if (nul != -1) {
            Py_DECREF(str);
            if (nul >= 0) {
                PyErr_SetString(PyExc_ValueError,
                                "filepath must not contain a NUL byte");
            }
            return -1;
        }
        Py_XSETREF(self->filepath, str);
    }
    else {
        Py_CLEAR(self->filepath);
    }
    self->trigger =
        trigger == -1 ? (int64_t)pmt_rss_page_size() : (int64_t)trigger;
    self->all_threads = all_threads;
    Py_XSETREF(self->message, message == Py_None ? NULL : Py_NewRef(message));
    return 0;
}

static PyObject *
tracer_new(PyTypeObject *type, PyObject *args, PyObject *kwds, int kind)
{
    TracerObject *self = (TracerObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->kind = kind;
    self->state = ST_NEW;
    self->backend = pmt_tracer_runtime.default_backend;
    self->trigger = (int64_t)pmt_rss_page_size();
    self->log.fd = -1;
    return (PyObject *)self;
}

static PyObject *
profile_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return tracer_new(type, args, kwds, KIND_PROFILE);
}

static PyObject *
trace_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return tracer_new(type, args, kwds, KIND_TRACE);
}

static int
tracer_traverse(PyObject *op, visitproc visit, void *arg)
{
    TracerObject *self = (TracerObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->message);
    Py_VISIT(self->filepath);
    Py_VISIT(self->prev.code);
    Py_VISIT(self->name_code);
    Py_VISIT(self->saved_obj);
    Py_VISIT(self->saved_threading_hook);
    return 0;
}

static int
tracer_clear(PyObject *op)
{
    TracerObject *self = (TracerObject *)op;
    Py_CLEAR(self->message);
    Py_CLEAR(self->filepath);
    Py_CLEAR(self->prev.code);
    Py_CLEAR(self->name_code);
    Py_CLEAR(self->saved_obj);
    Py_CLEAR(self->saved_threading_hook);
    return 0;
}

static void
tracer_dealloc(PyObject *op)
{
    TracerObject *self = (TracerObject *)op;
    PyTypeObject *tp = Py_TYPE(op);

    PyObject_GC_UnTrack(op);
    /* An active tracer is referenced by the stack: it cannot get here.
       A tracer whose exit failed half-way may still hold a log. */
    if (self->log_open) {
        self->log_open = 0;
        (void)pmt_log_close(&self->log);
    }
    tracer_release_resources(self);
    (void)tracer_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* YYYYMMDD_HHMMSS_<n>_<pid>_<P|T>_<depth>_PY<version>.log, UTC. */
static PyObject *
default_path(TracerObject *self)
{
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32];

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &tm);
    return PyUnicode_FromFormat(
        "%s_%llu_%ld_%c_%d_PY%s.log", stamp,
        (unsigned long long)pmt_tracer_runtime.file_counter++, (long)getpid(),
        self->kind == KIND_PROFILE ? 'P' : 'T', self->depth, PY_VERSION);
}

TracerObject *
pmt_tracer_innermost_of_thread(int kind, unsigned long thread)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    TracerObject *t = pmt_tracer_runtime.top[kind];
    for (; t != NULL; t = t->outer) {
        if (t->owner == thread && t->interp == interp) {
            return t;
        }
    }
    return NULL;
}

/* Recompute pmt_tracer_runtime.several_interps from the stacks. */
static void
stack_interps_changed(void)
{
    PyInterpreterState *seen = NULL;
    TracerObject *t;
    int kind;

    pmt_tracer_runtime.several_interps = 0;
    for (kind = 0; kind < 2; kind++) {
        for (t = pmt_tracer_runtime.top[kind]; t != NULL; t = t->outer) {
            if (seen != NULL && t->interp != seen) {
                pmt_tracer_runtime.several_interps = 1;
            }
            seen = t->interp;
        }
    }
}

static void
stack_push(TracerObject *self)
{
    Py_INCREF(self);
    self->outer = pmt_tracer_runtime.top[self->kind];
    pmt_tracer_runtime.top[self->kind] = self;
    pmt_tracer_runtime.depth[self->kind]++;
    stack_interps_changed();
}

static void
stack_remove(TracerObject *self)
{
    TracerObject **link = &pmt_tracer_runtime.top[self->kind];
    while (*link != NULL) {
        if (*link == self) {
            *link = self->outer;
            self->outer = NULL;
            pmt_tracer_runtime.depth[self->kind]--;
            stack_interps_changed();
            Py_DECREF(self);
            return;
        }
        link = &(*link)->outer;
    }
}

static PyObject *
tracer_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    TracerObject *self = (TracerObject *)op;
    PyThreadState *tstate = PyThreadState_Get();
    TracerObject *outer;
    PyObject *path_bytes = NULL;
    void *mon_state = NULL; /* pmt_state, once mon_install succeeded */
    int generated_path = 0; /* filepath is a default name we made */
    int attempt;
    int err;

    if (self->state != ST_NEW) {
        PyErr_Format(PyExc_RuntimeError,
                     "this %s was already entered: make a new one",
                     kind_name(self->kind));
        return NULL;
    }
    self->depth = pmt_tracer_runtime.depth[self->kind];
    if (self->filepath == NULL) {
        self->filepath = default_path(self);
        if (self->filepath == NULL) {
            goto error;
        }
        generated_path = 1;
    }
    if (pmt_tracer_memory_acquire(self) < 0) {
        goto error;
    }
    if (self->backend == BACKEND_MONITORING) {
#if PMT_PY312_PLUS
        /* Falls back to the legacy hooks when sys.monitoring cannot be
           used (no free tool id). */
        pmt_state *state = pmt_state_from_type(Py_TYPE(op));
        if (state == NULL || state->mon_callbacks == NULL ||
            pmt_tracer_mon_install(self, state) < 0) {
            PyErr_Clear();
            self->backend = BACKEND_LEGACY;
        }
        else {
            mon_state = state;
        }
#else
        self->backend = BACKEND_LEGACY;
        (void)mon_state;
#endif
    }
    path_bytes = PyUnicode_EncodeFSDefault(self->filepath);
    if (path_bytes == NULL) {
        goto error;
    }
    /* A name we made never opens an existing file or a planted symbolic
       link (a shared working directory): the next name is taken instead. */
    for (attempt = 0;; attempt++) {
        err = pmt_log_open(&self->log, PyBytes_AS_STRING(path_bytes),
                           self->max_log_bytes,
                           generated_path ? PMT_LOG_NEW_FILE : 0);
        if (!(generated_path && err == EEXIST && attempt < 100)) {
            break;
        }
        Py_CLEAR(path_bytes);
        Py_XSETREF(self->filepath, default_path(self));
        if (self->filepath == NULL) {
            goto error;
        }
        path_bytes = PyUnicode_EncodeFSDefault(self->filepath);
        if (path_bytes == NULL) {
            goto error;
        }
    }
    if (err) {
        pmt_raise_errno_path(err, self->filepath);
        goto error;
    }
    self->log_open = 1;
    self->name_buf = PyMem_RawMalloc(NAME_BUF_SIZE);
    self->names.text = self->name_buf;
    pmt_tracer_write_header(self);

    self->owner = PyThread_get_thread_ident();
    self->interp = PyInterpreterState_Get();
    outer = pmt_tracer_innermost_of_thread(self->kind, self->owner);
    if (outer != NULL) {
        PyObject *text = PyUnicode_FromFormat(
            "# Detaching this %s: nested one writes to %U",
            kind_name(self->kind), self->filepath);
        if (text != NULL) {
            pmt_tracer_write_text_record(outer, "MSG:", text);
            Py_DECREF(text);
        }
        PyErr_Clear();
    }
    if (self->backend == BACKEND_LEGACY) {
        if (pmt_tracer_legacy_save(self, tstate) < 0) {
            goto error;
        }
    }
    self->t0_ns = now_ns();
    self->ref_mem = pmt_tracer_memory_now(self);
    self->state = ST_ACTIVE;
    stack_push(self);
    pmt_log_signals_install();
    if (self->backend == BACKEND_LEGACY) {
        pmt_tracer_legacy_install(self);
    }
    Py_DECREF(path_bytes);
    return Py_NewRef(op);
error:
    Py_XDECREF(path_bytes);
#if PMT_PY312_PLUS
    if (mon_state != NULL) {
        /* It calls sys.monitoring: keep the error being raised. */
        pmt_exc_t saved;
        PMT_EXC_SAVE(saved);
        pmt_tracer_mon_uninstall(self, (pmt_state *)mon_state);
        PMT_EXC_RESTORE(saved);
    }
#endif
    if (self->log_open) {
        self->log_open = 0;
        (void)pmt_log_close(&self->log);
    }
    tracer_release_resources(self);
    Py_CLEAR(self->saved_obj);
    if (generated_path) {
        /* A new name at the next enter, made for it. */
        Py_CLEAR(self->filepath);
    }
    self->state = ST_NEW;
    return NULL;
}

/* The location of the running Python frame, as an EXIT event (a new
   reference to its code in ev->code, or NULL). */
static void
exit_event(TracerObject *self, pmt_event *ev)
{
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */

    memset(ev, 0, sizeof(*ev));
    ev->what = WHAT_EXIT;
    ev->lasti = -1;
    ev->line = 0;
    ev->event = self->n_events;
    if (frame != NULL) {
        ev->code = (PyObject *)PyFrame_GetCode(frame);
        ev->lasti = frame_lasti(frame);
        ev->line = PyFrame_GetLineNumber(frame);
    }
}

/* Stop tracing and close the log.  Used by __exit__, at interpreter exit
   and on module shutdown.  Returns the log's first write error (errno). */
static int
tracer_finish(TracerObject *self, int restore_hooks)
{
    pmt_event last;
    int err;

    if (self->state != ST_ACTIVE) {
        return 0;
    }
    if (restore_hooks) {
        pmt_tracer_check_displaced(self);
    }
    self->state = ST_CLOSED;
#if PMT_PY312_PLUS
    if (self->backend == BACKEND_MONITORING) {
        pmt_state *state = NULL;
        if (restore_hooks) {
            state = pmt_state_from_type(Py_TYPE(self));
            if (state == NULL) {
                PyErr_Clear();
            }
        }
        {
            pmt_exc_t saved;
            PMT_EXC_SAVE(saved);
            pmt_tracer_mon_uninstall(self, state);
            PMT_EXC_RESTORE(saved);
        }
    }
#endif
    if (restore_hooks && self->backend == BACKEND_LEGACY) {
        pmt_tracer_legacy_restore(self);
    }
    Py_CLEAR(self->saved_obj);
    /* LAST: the last event seen, with the memory read now; a block that
       saw no event says where it exits, so its growth still shows. */
    if (self->prev_valid) {
        last = self->prev;
    }
    else {
        exit_event(self, &last);
    }
    last.mem = pmt_tracer_memory_now(self);
    pmt_tracer_write_event(self, "LAST:", &last, tracer_now(self), 1);
    if (last.code != self->prev.code) {
        Py_XDECREF(last.code);
    }
    record_lock(self);
    pmt_log_cstr(&self->log, "EOF\n");
    record_unlock(self);
    self->log_open = 0;
    err = pmt_log_close(&self->log);
    pmt_log_signals_uninstall();
    tracer_release_resources(self);
    Py_CLEAR(self->prev.code);
    {
        TracerObject *outer;
        unsigned long owner = self->owner;
        int kind = self->kind;
        Py_INCREF(self);
        stack_remove(self);
        outer = pmt_tracer_innermost_of_thread(kind, owner);
        if (outer != NULL && restore_hooks) {
            PyObject *text = PyUnicode_FromFormat(
                "# Re-attaching this %s: nested one wrote to %U",
                kind_name(kind), self->filepath);
            if (text != NULL) {
                pmt_tracer_write_text_record(outer, "MSG:", text);
                Py_DECREF(text);
            }
            PyErr_Clear();
        }
        Py_DECREF(self);
    }
    return err;
}

PyObject *
pmt_tracer_exit(PyObject *op, PyObject *args)
{
    TracerObject *self = (TracerObject *)op;
    int err;

    if (self->state != ST_ACTIVE) {
        PyErr_Format(PyExc_RuntimeError, "this %s is not active",
                     kind_name(self->kind));
        return NULL;
    }
    err = tracer_finish(self, 1);
    if (err) {
        return pmt_raise_errno_path(err, self->filepath);
    }
    if (self->displaced &&
        PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                         "another tool replaced the hook of this %s while "
                         "it was active: its log %U misses the events after "
                         "that (see its WARN: record)",
                         kind_name(self->kind), self->filepath) < 0) {
        return NULL;
    }
    Py_RETURN_FALSE;
}

static int
check_active(TracerObject *self, const char *what)
{
    if (self->state == ST_ACTIVE) {
        return 0;
    }
    PyErr_Format(PyExc_RuntimeError, "%s() needs an active %s: %s", what,
                 kind_name(self->kind),
                 self->state == ST_NEW ? "it was not entered yet"
                                       : "it has exited");
    return -1;
}

static PyObject *
tracer_log_file_path(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    TracerObject *self = (TracerObject *)op;
    /* After exit too (the seed's API): the log is where it was written. */
    if (self->state == ST_NEW) {
        (void)check_active(self, "log_file_path");
        return NULL;
    }
    return Py_NewRef(self->filepath);
}

static PyObject *
tracer_write_message(PyObject *op, PyObject *msg)
{
    TracerObject *self = (TracerObject *)op;
    if (check_active(self, "write_message_to_log") < 0) {
        return NULL;
    }
    if (!PyUnicode_Check(msg)) {
        PyErr_Format(PyExc_TypeError, "message must be a str, not %s",
                     Py_TYPE(msg)->tp_name);
        return NULL;
    }
    pmt_tracer_check_displaced(self);
    pmt_tracer_write_text_record(self, "MSG:", msg);
    Py_RETURN_NONE;
}

/* Called by threading for a thread started while all_threads is on: the
   first event of that thread installs the C hook there. */
static PyObject *
tracer_call(PyObject *op, PyObject *args, PyObject *kwds)
{
    TracerObject *self = (TracerObject *)op;

    if (self->state == ST_ACTIVE) {
        pmt_tracer_set_hook_current(self->kind, pmt_tracer_hook, op);
    }
    Py_RETURN_NONE;
}

static PyObject *
tracer_get_events(PyObject *op, void *closure)
{
    return PyLong_FromUnsignedLongLong(((TracerObject *)op)->n_events);
}

static PyObject *
tracer_get_trigger(PyObject *op, void *closure)
{
    return PyLong_FromLongLong(((TracerObject *)op)->trigger);
}

static PyObject *
tracer_get_measure(PyObject *op, void *closure)
{
    return PyUnicode_FromString(
        ((TracerObject *)op)->measure == MEASURE_RSS ? "rss" : "heap");
}

static PyObject *
tracer_get_depth(PyObject *op, void *closure)
{
    return PyLong_FromLong(((TracerObject *)op)->depth);
}

static PyObject *
tracer_get_thread(PyObject *op, void *closure)
{
    return PyLong_FromUnsignedLong(((TracerObject *)op)->owner);
}

static PyObject *
tracer_get_active(PyObject *op, void *closure)
{
    return PyBool_FromLong(((TracerObject *)op)->state == ST_ACTIVE);
}

static PyObject *
tracer_get_backend(PyObject *op, void *closure)
{
    return PyUnicode_FromString(
        ((TracerObject *)op)->backend == BACKEND_MONITORING ? "monitoring"
                                                            : "legacy");
}

/* The seed's tracers write through a "file wrapper" object
   (trace.trace_file_wrapper.write_message_to_log(...)): here the tracer
   is its own. */
static PyObject *
tracer_get_self(PyObject *op, void *closure)
{
    return Py_NewRef(op);
}

static PyGetSetDef tracer_getset[] = {
    {"profile_file_wrapper", tracer_get_self, NULL,
     "the tracer itself (the seed's name for the object that writes the "
     "log)",
     NULL},
    {"trace_file_wrapper", tracer_get_self, NULL,
     "the tracer itself (the seed's name for the object that writes the "
     "log)",
     NULL},
    {"backend", tracer_get_backend, NULL,
     "\"monitoring\" (sys.monitoring, 3.12+) or \"legacy\" "
     "(PyEval_SetProfile/SetTrace); settled at enter",
     NULL},
    {"events", tracer_get_events, NULL, "events seen so far", NULL},
    {"d_rss_trigger", tracer_get_trigger, NULL,
     "the trigger in bytes (0: every event)", NULL},
    {"measure", tracer_get_measure, NULL, "\"rss\" or \"heap\"", NULL},
    {"depth", tracer_get_depth, NULL,
     "tracers of this kind already active when this one was entered", NULL},
    {"thread_id", tracer_get_thread, NULL,
     "identifier of the thread that entered it", NULL},
    {"active", tracer_get_active, NULL, "True between enter and exit", NULL},
    {NULL},
};

PyDoc_STRVAR(
    log_file_path_doc,
    "log_file_path() -> str\n\n"
    "Path of this tracer's log, also after exit.  RuntimeError before\n"
    "enter.");
PyDoc_STRVAR(write_message_doc,
             "write_message_to_log(message: str) -> None\n\n"
             "Write a MSG: record (one line, escaped) to this tracer's log.\n"
             "RuntimeError before enter or after exit.");

static PyMethodDef tracer_methods[] = {
    {"__enter__", tracer_enter, METH_NOARGS, NULL},
    {"__exit__", pmt_tracer_exit, METH_VARARGS, NULL},
    {"log_file_path", tracer_log_file_path, METH_NOARGS, log_file_path_doc},
    {"write_message_to_log", tracer_write_message, METH_O, write_message_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(
    profile_doc,
    "Profile(d_rss_trigger=-1, message=None, filepath=None, *, measure='rss',\n"
    "        all_threads=False, max_log_bytes=None)\n\n"
    "Context manager logging memory at Python/C calls and returns where it\n"
    "moved by at least d_rss_trigger bytes (-1: the page size, 0: every\n"
    "event).  See docs/cpymemtrace.md.");

PyDoc_STRVAR(
    trace_doc,
    "Trace(d_rss_trigger=-1, message=None, filepath=None, *, measure='rss',\n"
    "      all_threads=False, max_log_bytes=None)\n\n"
    "Context manager logging memory at every line, call and return where it\n"
    "moved by at least d_rss_trigger bytes (-1: the page size, 0: every\n"
    "event).  See docs/cpymemtrace.md.");

static PyType_Slot profile_slots[] = {
    {Py_tp_doc, (void *)profile_doc}, {Py_tp_new, profile_new},
    {Py_tp_init, tracer_init},        {Py_tp_call, tracer_call},
    {Py_tp_dealloc, tracer_dealloc},  {Py_tp_traverse, tracer_traverse},
    {Py_tp_clear, tracer_clear},      {Py_tp_methods, tracer_methods},
    {Py_tp_getset, tracer_getset},    {0, NULL},
};

static PyType_Slot trace_slots[] = {
    {Py_tp_doc, (void *)trace_doc},  {Py_tp_new, trace_new},
    {Py_tp_init, tracer_init},       {Py_tp_call, tracer_call},
    {Py_tp_dealloc, tracer_dealloc}, {Py_tp_traverse, tracer_traverse},
    {Py_tp_clear, tracer_clear},     {Py_tp_methods, tracer_methods},
    {Py_tp_getset, tracer_getset},   {0, NULL},
};

static PyType_Spec profile_spec = {
    .name = "pymemtrace.cPyMemTrace.Profile",
    .basicsize = sizeof(TracerObject),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = profile_slots,
};

static PyType_Spec trace_spec = {
    .name = "pymemtrace.cPyMemTrace.Trace",
    .basicsize = sizeof(TracerObject),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = trace_slots,
};

/* ---- module functions -------------------------------------------------- */

PyDoc_STRVAR(
    active_tracers_doc,
    "_active_tracers(kind: int) -> list\n\n"
    "Active Profile (kind 0) or Trace (kind 1) objects, outermost first.");

static PyObject *
active_tracers(PyObject *module, PyObject *arg)
{
    long kind = PyLong_AsLong(arg);
    PyObject *list;
    TracerObject *t;

    if (kind == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (kind != KIND_PROFILE && kind != KIND_TRACE) {
        PyErr_SetString(PyExc_ValueError, "kind must be 0 or 1");
        return NULL;
    }
    list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (t = pmt_tracer_runtime.top[kind]; t != NULL; t = t->outer) {
        if (PyList_Insert(list, 0, (PyObject *)t) < 0) {
            Py_DECREF(list);
            return NULL;
        }
    }
    return list;
}

/* Close every active tracer of interp (NULL: of every interpreter):
   interpreter exit (a subinterpreter's leaves the main one's alone),
   module shutdown. */
static void
finish_all(int restore_hooks, PyInterpreterState *interp)
{
    int kind;
    TracerObject *t;

    for (kind = 0; kind < 2; kind++) {
        do {
            for (t = pmt_tracer_runtime.top[kind]; t != NULL; t = t->outer) {
                if (interp == NULL || t->interp == interp) {
                    break;
                }
            }
            if (t != NULL) {
                (void)tracer_finish(t, restore_hooks);
            }
        } while (t != NULL);
    }
}

PyDoc_STRVAR(
    close_all_doc,
    "_close_all_tracers() -> None\n\n"
    "Stop every active Profile/Trace of this interpreter and complete its\n"
    "log (LAST, EOF).\n"
    "Registered with atexit by pymemtrace.cPyMemTrace.");

static PyObject *
close_all_tracers(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    finish_all(1, PyInterpreterState_Get());
    Py_RETURN_NONE;
}

/* A hook that does nothing: the floor every C profile/trace hook pays,
   for benchmarks/ to print beside the tracers. */
static int
noop_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    return 0;
}

PyDoc_STRVAR(
    set_noop_hook_doc,
    "_set_noop_hook(kind: int, on: bool) -> None\n\n"
    "Install (or remove) a C profile (kind 0) or trace (kind 1) hook that\n"
    "does nothing, on this thread.  For benchmarks only.");

static PyObject *
set_noop_hook(PyObject *module, PyObject *args)
{
    int kind, on;

    if (!PyArg_ParseTuple(args, "ip", &kind, &on)) {
        return NULL;
    }
    pmt_tracer_set_hook_current(kind == KIND_PROFILE ? KIND_PROFILE
                                                     : KIND_TRACE,
                                on ? noop_hook : NULL, NULL);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(
    noop_doc,
    "_noop(*args) -> None\n\n"
    "Does nothing, as fast as a C function can: a sys.monitoring callback\n"
    "for benchmarks/ (the floor of a monitoring-based tracer on 3.12+).");

static PyObject *
noop(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_RETURN_NONE;
}

PyDoc_STRVAR(
    set_default_backend_doc,
    "_set_default_backend(name: str) -> str\n\n"
    "Backend of the tracers made from now on: \"monitoring\" (3.12+ only) or\n"
    "\"legacy\".  Returns the previous one.  For tests and benchmarks.");

static PyObject *
set_default_backend(PyObject *module, PyObject *arg)
{
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    const char *old = pmt_tracer_runtime.default_backend == BACKEND_MONITORING
                          ? "monitoring"
                          : "legacy";

    if (name == NULL) {
        PyErr_SetString(PyExc_TypeError, "backend must be a str");
        return NULL;
    }
    if (strcmp(name, "legacy") == 0) {
        pmt_tracer_runtime.default_backend = BACKEND_LEGACY;
    }
    else if (strcmp(name, "monitoring") == 0 && PMT_PY312_PLUS) {
        pmt_tracer_runtime.default_backend = BACKEND_MONITORING;
    }
    else {
        PyErr_Format(PyExc_ValueError, "unknown or unavailable backend: %s",
                     name);
        return NULL;
    }
    return PyUnicode_FromString(old);
}

static PyMethodDef tracer_functions[] = {
    {"_set_default_backend", set_default_backend, METH_O,
     set_default_backend_doc},
    {"_noop", (PyCFunction)(void (*)(void))noop, METH_FASTCALL, noop_doc},
    {"_set_noop_hook", set_noop_hook, METH_VARARGS, set_noop_hook_doc},
    {"_active_tracers", active_tracers, METH_O, active_tracers_doc},
    {"_close_all_tracers", close_all_tracers, METH_NOARGS, close_all_doc},
    {NULL, NULL, 0, NULL},
};

int
pmt_tracer_exec(PyObject *module)
{
    pmt_state *state = pmt_get_state(module);

    state->profile_type =
        PyType_FromModuleAndSpec(module, &profile_spec, NULL);
    if (state->profile_type == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, (PyTypeObject *)state->profile_type) < 0) {
        return -1;
    }
    state->trace_type = PyType_FromModuleAndSpec(module, &trace_spec, NULL);
    if (state->trace_type == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, (PyTypeObject *)state->trace_type) < 0) {
        return -1;
    }
#if PMT_PY312_PLUS
    if (pmt_tracer_mon_exec(module, state) < 0) {
        return -1;
    }
#endif
    if (pmt_tracer_memory_exec(module) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, tracer_functions);
}

void
pmt_tracer_shutdown(void)
{
    /* The interpreter is going away: complete the logs, leave hooks. */
    finish_all(0, NULL);
    pmt_rsspoll_shutdown();
}
