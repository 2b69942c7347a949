/*
 * tracer_legacy.c - the PyEval_SetProfile/SetTrace backend of Profile and
 * Trace (3.9-3.11, and on request on 3.12+): the C hook, installing and
 * removing it on this thread and the others, and noticing another tool
 * that replaced it.
 *
 * Threading: GIL held.  The hook runs on the thread whose code it traces.
 */
#include "tracer.h"

int
pmt_tracer_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    TracerObject *self = (TracerObject *)obj;

    if (what >= PyTrace_C_CALL && what <= PyTrace_C_RETURN &&
        is_tracer_exit(arg)) {
        return 0;
    }
    if (self->state == ST_ACTIVE) {
        /* The frame keeps its code alive: borrowed for the event. */
        PyObject *code = (PyObject *)PyFrame_GetCode(frame);
        Py_DECREF(code);
        (void)tracer_event(self, what, code, frame_lasti(frame), -1, frame);
    }
    return 0;
}

/* ---- installing and removing hooks (GIL held) -------------------------- */

int
pmt_tracer_tstate_hook_is(PyThreadState *tstate, int kind, PyObject *obj)
{
    if (kind == KIND_PROFILE) {
        return tstate->c_profilefunc == pmt_tracer_hook &&
               tstate->c_profileobj == obj;
    }
    return tstate->c_tracefunc == pmt_tracer_hook && tstate->c_traceobj == obj;
}

void
pmt_tracer_set_hook_current(int kind, Py_tracefunc func, PyObject *obj)
{
    if (kind == KIND_PROFILE) {
        PyEval_SetProfile(func, obj);
    }
    else {
        PyEval_SetTrace(func, obj);
    }
}

/* Install self on every thread but the current one. */
static void
set_hook_other_threads(TracerObject *self, int install)
{
    PyThreadState *me = PyThreadState_Get();
#if PMT_PY312_PLUS
    /* Every thread, then the current one set back as it must be. */
    if (install) {
        if (self->kind == KIND_PROFILE) {
            PyEval_SetProfileAllThreads(pmt_tracer_hook, (PyObject *)self);
        }
        else {
            PyEval_SetTraceAllThreads(pmt_tracer_hook, (PyObject *)self);
        }
    }
    else {
        PyThreadState *t =
            PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(me));
        int ours_elsewhere = 0;
        for (; t != NULL; t = PyThreadState_Next(t)) {
            if (t != me &&
                pmt_tracer_tstate_hook_is(t, self->kind, (PyObject *)self)) {
                ours_elsewhere = 1;
            }
        }
        if (ours_elsewhere) {
            if (self->kind == KIND_PROFILE) {
                PyEval_SetProfileAllThreads(NULL, NULL);
            }
            else {
                PyEval_SetTraceAllThreads(NULL, NULL);
            }
        }
    }
    (void)me;
#else
    PyThreadState *t =
        PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(me));
    for (; t != NULL; t = PyThreadState_Next(t)) {
        if (t == me) {
            continue;
        }
        if (install) {
            if (self->kind == KIND_PROFILE) {
                (void)_PyEval_SetProfile(t, pmt_tracer_hook, (PyObject *)self);
            }
            else {
                (void)_PyEval_SetTrace(t, pmt_tracer_hook, (PyObject *)self);
            }
        }
        else if (pmt_tracer_tstate_hook_is(t, self->kind, (PyObject *)self)) {
            if (self->kind == KIND_PROFILE) {
                (void)_PyEval_SetProfile(t, NULL, NULL);
            }
            else {
                (void)_PyEval_SetTrace(t, NULL, NULL);
            }
        }
        if (PyErr_Occurred()) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
    }
#endif
}

/* threading.setprofile/settrace(obj) for threads started while active. */
static int
set_threading_hook(TracerObject *self, PyObject *hook, int save)
{
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *res = NULL;
    const char *attr =
        self->kind == KIND_PROFILE ? "_profile_hook" : "_trace_hook";
    const char *setter =
        self->kind == KIND_PROFILE ? "setprofile" : "settrace";
    int rc = -1;

    if (threading == NULL) {
        goto done;
    }
    if (save) {
        PyObject *old = PyObject_GetAttrString(threading, attr);
        if (old == NULL) {
            PyErr_Clear();
            old = Py_NewRef(Py_None);
        }
        Py_XSETREF(self->saved_threading_hook, old);
    }
    res = PyObject_CallMethod(threading, setter, "O", hook);
    if (res == NULL) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(res);
    Py_XDECREF(threading);
    return rc;
}

int
pmt_tracer_legacy_save(TracerObject *self, PyThreadState *tstate)
{
    /* This thread's current hook, to be restored at exit. */
    if (self->kind == KIND_PROFILE) {
        self->saved_func = tstate->c_profilefunc;
        Py_XSETREF(self->saved_obj, Py_XNewRef(tstate->c_profileobj));
    }
    else {
        self->saved_func = tstate->c_tracefunc;
        Py_XSETREF(self->saved_obj, Py_XNewRef(tstate->c_traceobj));
    }
    if (self->all_threads) {
        if (set_threading_hook(self, (PyObject *)self, 1) < 0) {
            return -1;
        }
    }
    return 0;
}

void
pmt_tracer_legacy_install(TracerObject *self)
{
    if (self->all_threads) {
        set_hook_other_threads(self, 1);
    }
    pmt_tracer_set_hook_current(self->kind, pmt_tracer_hook, (PyObject *)self);
}

void
pmt_tracer_legacy_restore(TracerObject *self)
{
    PyThreadState *tstate = PyThreadState_Get();
    TracerObject *t;
    /* Before the other threads are cleared: on 3.12+ that clears this
       one too. */
    int mine_here =
        pmt_tracer_tstate_hook_is(tstate, self->kind, (PyObject *)self);

    if (self->all_threads) {
        set_hook_other_threads(self, 0);
        if (set_threading_hook(self,
                               self->saved_threading_hook
                                   ? self->saved_threading_hook
                                   : Py_None,
                               0) < 0) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
    }
    if (mine_here) {
        pmt_tracer_set_hook_current(self->kind, self->saved_func,
                                    self->saved_obj);
    }
    /* A tracer entered inside this one that is still active restores
       what this one replaced, not this one. */
    for (t = pmt_tracer_runtime.top[self->kind]; t != NULL; t = t->outer) {
        if (t->saved_obj == (PyObject *)self &&
            t->saved_func == pmt_tracer_hook) {
            t->saved_func = self->saved_func;
            Py_XSETREF(t->saved_obj, Py_XNewRef(self->saved_obj));
        }
    }
}

/* Another tool replaced this tracer's hook on its thread (sys.setprofile,
   cProfile.enable(), a debugger) while it is the innermost of its kind
   there.  Noted once: a WARN: record now, a RuntimeWarning at exit.  GIL
   held, the owner's thread. */
void
pmt_tracer_check_displaced(TracerObject *self)
{
    PyThreadState *tstate;
    PyObject *text;

    if (self->displaced || self->backend != BACKEND_LEGACY ||
        self->state != ST_ACTIVE ||
        self->owner != PyThread_get_thread_ident() ||
        pmt_tracer_innermost_of_thread(self->kind, self->owner) != self) {
        return;
    }
    tstate = PyThreadState_Get();
    if (pmt_tracer_tstate_hook_is(tstate, self->kind, (PyObject *)self)) {
        return;
    }
    self->displaced = 1;
    text = PyUnicode_FromFormat(
        "another tool replaced this %s's hook (sys.%s, cProfile, a "
        "debugger) after event %llu: later events were not seen",
        kind_name(self->kind),
        self->kind == KIND_PROFILE ? "setprofile" : "settrace",
        (unsigned long long)(self->n_events ? self->n_events - 1 : 0));
    if (text == NULL) {
        PyErr_Clear();
        return;
    }
    pmt_tracer_write_text_record(self, "WARN:", text);
    Py_DECREF(text);
}
