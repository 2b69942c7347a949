/*
 * tracer_monitoring.c - the sys.monitoring backend of Profile and Trace
 * (3.12+).
 *
 * sys.monitoring calls a C function with (code, offset, ...) at PY_START,
 * PY_RETURN etc.: no frame object is made and the events that are not
 * asked for cost nothing.  Profile asks for the starts and ends of Python
 * functions and for CALL/C_RETURN/C_RAISE, of which it keeps the calls of
 * C functions (builtin functions and method descriptors, as the legacy
 * profile hook reports them on 3.12+) as C_CALL/C_RETURN/C_EXCEPT charged
 * to the calling code; Trace asks for the starts and ends, LINE and RAISE
 * (EXCEPT).  The events are process-wide, so a callback looks for the
 * innermost active tracer of the kind entered by its thread (or with
 * all_threads) on the stack of active tracers (GIL held).  Every location
 * stays on while a tracer is active: a location switched off
 * (sys.monitoring.DISABLE) would not see the next move of memory there.
 * Other tools' hooks (sys.setprofile, coverage, debuggers, cProfile) are
 * not touched at all.
 *
 * Threading: GIL held (callbacks, install, uninstall).
 */
#include "tracer.h"

#if PMT_PY312_PLUS

/* The tool id and who uses its events.  GIL. */
static struct tracer_monitoring_runtime {
    int mon_tool;     /* sys.monitoring tool id held, -1 = none */
    int mon_users[2]; /* monitoring-backed tracers active, per kind */
} monitoring_runtime = {
    .mon_tool = -1,
};

#define MON_WHAT_CALL PyTrace_CALL
#define MON_WHAT_RETURN PyTrace_RETURN

/* Dispatch one event to the tracer of kind that wants it, if any. */
static inline void
mon_dispatch(int kind, int what, PyObject *code, int lasti, int line)
{
    TracerObject *t = pmt_tracer_runtime.top[kind];
    PyInterpreterState *interp;
    unsigned long me;

    if (t == NULL) {
        return;
    }
    me = current_thread_ident();
    interp =
        pmt_tracer_runtime.several_interps ? PyInterpreterState_Get() : NULL;
    for (; t != NULL; t = t->outer) {
        if (t->backend == BACKEND_MONITORING &&
            (interp == NULL || t->interp == interp) &&
            (t->all_threads || t->owner == me)) {
            break;
        }
    }
    if (t == NULL || t->state != ST_ACTIVE || !PyCode_Check(code)) {
        return;
    }
    (void)tracer_event(t, what, code, lasti, line, NULL);
}

static inline int
mon_offset(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || !PyLong_CheckExact(args[1])) {
        return -1;
    }
    /* Offsets fit in one digit: read it inline (no call per event). */
    if (PyUnstable_Long_IsCompact((PyLongObject *)args[1])) {
        return (int)PyUnstable_Long_CompactValue((PyLongObject *)args[1]);
    }
    return (int)PyLong_AsLong(args[1]);
}

/* PY_START, PY_RESUME, PY_THROW: (code, offset, ...) */
static PyObject *
mon_on_start(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 2) {
        int lasti = mon_offset(args, nargs);
        mon_dispatch(KIND_PROFILE, MON_WHAT_CALL, args[0], lasti, -1);
        mon_dispatch(KIND_TRACE, MON_WHAT_CALL, args[0], lasti, -1);
    }
    Py_RETURN_NONE;
}

/* PY_RETURN, PY_YIELD, PY_UNWIND: (code, offset, value or exc) */
static PyObject *
mon_on_return(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 2) {
        int lasti = mon_offset(args, nargs);
        mon_dispatch(KIND_PROFILE, MON_WHAT_RETURN, args[0], lasti, -1);
        mon_dispatch(KIND_TRACE, MON_WHAT_RETURN, args[0], lasti, -1);
    }
    Py_RETURN_NONE;
}

/* LINE: (code, line) */
static PyObject *
mon_on_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 2 && PyLong_CheckExact(args[1])) {
        mon_dispatch(KIND_TRACE, PyTrace_LINE, args[0], -1,
                     (int)PyLong_AsLong(args[1]));
    }
    Py_RETURN_NONE;
}

/* RAISE: (code, offset, exc) */
static PyObject *
mon_on_raise(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 2) {
        mon_dispatch(KIND_TRACE, PyTrace_EXCEPTION, args[0],
                     mon_offset(args, nargs), -1);
    }
    Py_RETURN_NONE;
}

/* CALL, C_RETURN, C_RAISE: (code, offset, callable, arg0).  Only calls of
   C functions are Profile events, as the legacy profile hook reports them
   on 3.12+: builtin functions and methods, and method descriptors called
   with their self (arg0 is sys.monitoring.MISSING when there is none).
   A Python function's own PY_START/PY_RETURN follow. */
static inline void
mon_c_event(PyObject *module, int what, PyObject *const *args,
            Py_ssize_t nargs)
{
    PyObject *callable;

    if (nargs < 4 || pmt_tracer_runtime.top[KIND_PROFILE] == NULL) {
        return;
    }
    callable = args[2];
    if (Py_IS_TYPE(callable, &PyFunction_Type)) {
        return; /* the common case, first */
    }
    if (!PyCFunction_Check(callable)) {
        if (!Py_IS_TYPE(callable, &PyMethodDescr_Type) ||
            args[3] == pmt_get_state(module)->mon_missing) {
            return;
        }
    }
    else if (is_tracer_exit(callable)) {
        return;
    }
    mon_dispatch(KIND_PROFILE, what, args[0], mon_offset(args, nargs), -1);
}

static PyObject *
mon_on_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    mon_c_event(module, PyTrace_C_CALL, args, nargs);
    Py_RETURN_NONE;
}

static PyObject *
mon_on_c_return(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    mon_c_event(module, PyTrace_C_RETURN, args, nargs);
    Py_RETURN_NONE;
}

static PyObject *
mon_on_c_raise(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    mon_c_event(module, PyTrace_C_EXCEPTION, args, nargs);
    Py_RETURN_NONE;
}

static PyMethodDef mon_callback_defs[] = {
    {"_mon_on_start", (PyCFunction)(void (*)(void))mon_on_start, METH_FASTCALL,
     NULL},
    {"_mon_on_return", (PyCFunction)(void (*)(void))mon_on_return,
     METH_FASTCALL, NULL},
    {"_mon_on_line", (PyCFunction)(void (*)(void))mon_on_line, METH_FASTCALL,
     NULL},
    {"_mon_on_raise", (PyCFunction)(void (*)(void))mon_on_raise, METH_FASTCALL,
     NULL},
    {"_mon_on_call", (PyCFunction)(void (*)(void))mon_on_call, METH_FASTCALL,
     NULL},
    {"_mon_on_c_return", (PyCFunction)(void (*)(void))mon_on_c_return,
     METH_FASTCALL, NULL},
    {"_mon_on_c_raise", (PyCFunction)(void (*)(void))mon_on_c_raise,
     METH_FASTCALL, NULL},
};

enum {
    MON_FOR_BOTH = 0,
    MON_FOR_TRACE = 1,
    MON_FOR_PROFILE = 2
};

/* Event numbers and callback (index in mon_callback_defs) of each kind. */
typedef struct {
    const char *event;
    int callback;
    int wanted_by; /* MON_FOR_* */
} mon_binding;

static const mon_binding mon_bindings[] = {
    {"PY_START", 0, MON_FOR_BOTH},   {"PY_RESUME", 0, MON_FOR_BOTH},
    {"PY_THROW", 0, MON_FOR_BOTH},   {"PY_RETURN", 1, MON_FOR_BOTH},
    {"PY_YIELD", 1, MON_FOR_BOTH},   {"PY_UNWIND", 1, MON_FOR_BOTH},
    {"LINE", 2, MON_FOR_TRACE},      {"RAISE", 3, MON_FOR_TRACE},
    {"CALL", 4, MON_FOR_PROFILE},    {"C_RETURN", 5, MON_FOR_PROFILE},
    {"C_RAISE", 6, MON_FOR_PROFILE},
};
#define N_MON_BINDINGS (sizeof(mon_bindings) / sizeof(mon_bindings[0]))

/* Set the events of our tool from the kinds in use; claim/free the tool
   id as needed.  0, or -1 with an exception set. */
static int
mon_update(pmt_state *state)
{
    PyObject *mon = NULL, *events = NULL, *res = NULL;
    long mask = 0;
    int want_profile = monitoring_runtime.mon_users[KIND_PROFILE] > 0;
    int want_trace = monitoring_runtime.mon_users[KIND_TRACE] > 0;
    size_t i;
    int rc = -1;

    mon = PyImport_ImportModule("sys");
    if (mon == NULL) {
        goto done;
    }
    Py_SETREF(mon, PyObject_GetAttrString(mon, "monitoring"));
    if (mon == NULL) {
        goto done;
    }
    events = PyObject_GetAttrString(mon, "events");
    if (events == NULL) {
        goto done;
    }
    if (monitoring_runtime.mon_tool < 0 && (want_profile || want_trace)) {
        /* Ids CPython does not name: 3 and 4. */
        int id;
        for (id = 4; id >= 3; id--) {
            res = PyObject_CallMethod(mon, "use_tool_id", "is", id,
                                      "pymemtrace");
            if (res != NULL) {
                monitoring_runtime.mon_tool = id;
                break;
            }
            PyErr_Clear();
        }
        if (monitoring_runtime.mon_tool < 0) {
            PyErr_SetString(PyExc_RuntimeError,
                            "no free sys.monitoring tool id (3 and 4 are "
                            "taken)");
            goto done;
        }
        Py_CLEAR(res);
        if (state->mon_missing == NULL) {
            state->mon_missing = PyObject_GetAttrString(mon, "MISSING");
            if (state->mon_missing == NULL) {
                goto done;
            }
        }
        for (i = 0; i < N_MON_BINDINGS; i++) {
            PyObject *ev =
                PyObject_GetAttrString(events, mon_bindings[i].event);
            PyObject *cb = PyTuple_GET_ITEM(state->mon_callbacks,
                                            mon_bindings[i].callback);
            if (ev == NULL) {
                goto done;
            }
            res = PyObject_CallMethod(mon, "register_callback", "iOO",
                                      monitoring_runtime.mon_tool, ev, cb);
            Py_DECREF(ev);
            if (res == NULL) {
                goto done;
            }
            Py_CLEAR(res);
        }
    }
    if (monitoring_runtime.mon_tool < 0) {
        rc = 0;
        goto done;
    }
    for (i = 0; i < N_MON_BINDINGS; i++) {
        PyObject *ev;
        long bit;
        int by = mon_bindings[i].wanted_by;
        if (!((by != MON_FOR_PROFILE && want_trace) ||
              (by != MON_FOR_TRACE && want_profile))) {
            continue;
        }
        ev = PyObject_GetAttrString(events, mon_bindings[i].event);
        if (ev == NULL) {
            goto done;
        }
        bit = PyLong_AsLong(ev);
        Py_DECREF(ev);
        if (bit == -1 && PyErr_Occurred()) {
            goto done;
        }
        mask |= bit;
    }
    res = PyObject_CallMethod(mon, "set_events", "il",
                              monitoring_runtime.mon_tool, mask);
    if (res == NULL) {
        goto done;
    }
    Py_CLEAR(res);
    if (mask == 0) {
        for (i = 0; i < N_MON_BINDINGS; i++) {
            PyObject *ev =
                PyObject_GetAttrString(events, mon_bindings[i].event);
            if (ev == NULL) {
                goto done;
            }
            res =
                PyObject_CallMethod(mon, "register_callback", "iOO",
                                    monitoring_runtime.mon_tool, ev, Py_None);
            Py_DECREF(ev);
            if (res == NULL) {
                goto done;
            }
            Py_CLEAR(res);
        }
        res = PyObject_CallMethod(mon, "free_tool_id", "i",
                                  monitoring_runtime.mon_tool);
        if (res == NULL) {
            goto done;
        }
        monitoring_runtime.mon_tool = -1;
    }
    rc = 0;
done:
    Py_XDECREF(res);
    Py_XDECREF(events);
    Py_XDECREF(mon);
    return rc;
}

int
pmt_tracer_mon_install(TracerObject *self, pmt_state *state)
{
    monitoring_runtime.mon_users[self->kind]++;
    if (mon_update(state) < 0) {
        monitoring_runtime.mon_users[self->kind]--;
        return -1;
    }
    return 0;
}

void
pmt_tracer_mon_uninstall(TracerObject *self, pmt_state *state)
{
    monitoring_runtime.mon_users[self->kind]--;
    if (state != NULL && mon_update(state) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
}

int
pmt_tracer_mon_exec(PyObject *module, pmt_state *state)
{
    size_t i;
    size_t n = sizeof(mon_callback_defs) / sizeof(mon_callback_defs[0]);

    state->mon_callbacks = PyTuple_New((Py_ssize_t)n);
    if (state->mon_callbacks == NULL) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        PyObject *f = PyCFunction_NewEx(&mon_callback_defs[i], module, NULL);
        if (f == NULL) {
            return -1;
        }
        PyTuple_SET_ITEM(state->mon_callbacks, (Py_ssize_t)i, f);
    }
    return 0;
}

#endif /* PMT_PY312_PLUS */
