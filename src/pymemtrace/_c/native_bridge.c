/*
 * native_bridge.c - the Python stacks for the native tracer
 * (libpymemtrace_preload.so, docs/native.md), when this extension is
 * imported in a process the tracer runs in.
 *
 * At module exec the registration function is looked up with
 * dlsym(RTLD_DEFAULT): absent, the process is not traced and nothing else
 * happens here.  Present, it is given two callbacks (native/pybridge.h):
 *   bridge_stack  called from the tracer's malloc hook: the calling
 *                 thread's Python frames as (code id, line).  When that
 *                 thread holds the GIL, codes seen for the first time are
 *                 added to the table; when it has released it (waiting in
 *                 C: its frames do not change until it returns), its own
 *                 thread state is read without the GIL and only codes
 *                 already in the table are named (stack_without_gil).
 *                 Nothing that allocates through Python or takes the GIL;
 *   bridge_code   the file and function names of a code id, from any
 *                 thread (entries are complete before they are
 *                 published, and never change or move afterwards).
 * Code ids index a bounded table that keeps a strong reference to each
 * code object seen, so an id never names two code objects even when the
 * first dies and its address is reused.  Names are copied to UTF-8 by
 * hand (PyUnicode_AsUTF8 may allocate a cache through Python).
 *
 * Only the main interpreter's threads are read (the module refuses
 * subinterpreters; the check keeps that true here whatever loads it).
 */
#include "native.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "native/pybridge.h"

#define BRIDGE_MAX_CODES (1u << 16)
#define BRIDGE_INDEX_SIZE (2 * BRIDGE_MAX_CODES)
#define BRIDGE_MAX_FRAMES 64
#define BRIDGE_LINE_CACHE 4096

typedef struct {
    PyCodeObject *code; /* a strong reference, never released */
    char *file;         /* UTF-8, malloc'ed, never freed */
    char *function;
} bridge_code_entry;

/* A line found for an instruction offset of a code object in the table
   (kept alive by it, so its address is never reused). */
typedef struct {
    const PyCodeObject *code;
    int32_t addr;
    int32_t line;
} bridge_line_entry;

/* The code table: written only by threads holding the main
   interpreter's GIL (the tracer's callback, serialised by it); `published`,
   the index and the entries below `published` are read by any thread (the
   tracer's writer, threads that released the GIL: code_id_known). */
static struct bridge_runtime {
    bridge_code_entry codes[BRIDGE_MAX_CODES]; /* GIL */
    /* written under the GIL; id + 1, 0: empty; a slot once set is never
       changed */
    _Atomic uint32_t index[BRIDGE_INDEX_SIZE];
    uint32_t ncodes; /* GIL */
    /* GIL: PyCode_Addr2Line walks the line table, each time; never used
       without the GIL (line_without_gil) */
    bridge_line_entry lines[BRIDGE_LINE_CACHE];
    _Atomic uint32_t published; /* entries below it are complete */
    /* Threads reading their frames without the GIL may, until the atexit
       callback closes this (before finalization frees the thread states
       of daemon threads); it waits for the readers inside. */
    _Atomic int nogil_open;    /* 1 from module exec to the atexit call */
    _Atomic int nogil_readers; /* threads inside stack_without_gil */
    int registered;            /* GIL: the lookup was made */
    pmt_nt_live_bytes_fn live_bytes; /* GIL: the tracer's, or NULL */
} rt;

/* 3.12+: the calling thread's current thread state, set while it holds a
   GIL (of any interpreter); before: NULL (it is process-wide there, read
   by gil_holder alone). */
static inline PyThreadState *
current_tstate_of_thread(void)
{
#if PMT_PY313_PLUS
    return PyThreadState_GetUnchecked();
#elif PMT_PY312_PLUS
    return _PyThreadState_UncheckedGet();
#else
    return NULL;
#endif
}

/* The calling thread's state when it holds the GIL, else NULL. */
static PyThreadState *
gil_holder(void)
{
    PyThreadState *tstate;

#if PMT_PY313_PLUS
    /* 3.12+: the current thread state is per thread and cleared when the
       thread releases the GIL. */
    tstate = PyThreadState_GetUnchecked();
#elif PMT_PY312_PLUS
    tstate = _PyThreadState_UncheckedGet();
#else
    /* Before 3.12 it is the process-wide "thread holding the GIL" (NULL
       while the GIL is being handed over): the caller holds the GIL when
       it is this thread's own state.  Pointers are compared, the other
       thread's state is never read. */
    tstate = _PyThreadState_UncheckedGet();
    if (tstate != NULL && tstate != PyGILState_GetThisThreadState()) {
        tstate = NULL;
    }
#endif
    if (tstate != NULL &&
        PyThreadState_GetInterpreter(tstate) != PyInterpreterState_Main()) {
        tstate = NULL;
    }
    return tstate;
}

/* A malloc'ed UTF-8 copy of a str, encoded here: reading the characters
   never allocates.  NULL when out of memory or not a ready str. */
static char *
utf8_copy(PyObject *str)
{
    Py_ssize_t len, i;
    unsigned int kind;
    const void *data;
    char *out, *p;

    if (str == NULL || !PyUnicode_Check(str) || !PyUnicode_IS_READY(str)) {
        return NULL;
    }
    len = PyUnicode_GET_LENGTH(str);
    if (len > 4096) {
        len = 4096;
    }
    kind = PyUnicode_KIND(str);
    data = PyUnicode_DATA(str);
    out = malloc((size_t)len * 4 + 1);
    if (out == NULL) {
        return NULL;
    }
    p = out;
    for (i = 0; i < len; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 0x80) {
            *p++ = (char)c;
        }
        else if (c < 0x800) {
            *p++ = (char)(0xC0 | (c >> 6));
            *p++ = (char)(0x80 | (c & 0x3F));
        }
        else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF) {
                c = 0xFFFD; /* a lone surrogate (surrogateescape) */
            }
            *p++ = (char)(0xE0 | (c >> 12));
            *p++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *p++ = (char)(0x80 | (c & 0x3F));
        }
        else {
            *p++ = (char)(0xF0 | (c >> 18));
            *p++ = (char)(0x80 | ((c >> 12) & 0x3F));
            *p++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *p++ = (char)(0x80 | (c & 0x3F));
        }
    }
    *p = '\0';
    return out;
}

static size_t
index_slot(const void *code)
{
    return (size_t)((((uint64_t)(uintptr_t)code >> 4) *
                     0x9E3779B97F4A7C15ull) >>
                    40) &
           (BRIDGE_INDEX_SIZE - 1);
}

/* The id of code, added when new; PMT_NT_PYCODE_UNKNOWN when the table is
   full or out of memory.  The GIL held. */
static uint32_t
code_id(PyCodeObject *code)
{
    size_t slot = index_slot(code);
    bridge_code_entry *entry;
    uint32_t id;

    while ((id = atomic_load_explicit(&rt.index[slot],
                                      memory_order_relaxed)) != 0) {
        id--;
        if (rt.codes[id].code == code) {
            return id;
        }
        slot = (slot + 1) & (BRIDGE_INDEX_SIZE - 1);
    }
    if (rt.ncodes >= BRIDGE_MAX_CODES) {
        return PMT_NT_PYCODE_UNKNOWN;
    }
    id = rt.ncodes;
    entry = &rt.codes[id];
    entry->file = utf8_copy(code->co_filename);
    entry->function = utf8_copy(code->co_name);
    if (entry->file == NULL || entry->function == NULL) {
        free(entry->file);
        free(entry->function);
        entry->file = entry->function = NULL;
        return PMT_NT_PYCODE_UNKNOWN;
    }
    Py_INCREF(code);
    entry->code = code;
    /* read without the GIL by code_id_known */
    atomic_store_explicit(&rt.index[slot], id + 1, memory_order_relaxed);
    rt.ncodes = id + 1;
    atomic_store_explicit(&rt.published, id + 1, memory_order_release);
    return id;
}

/* The line frame (code, addr) is at; code has id (in the table unless
   PMT_NT_PYCODE_UNKNOWN).  The GIL held. */
static int
frame_line(PyCodeObject *code, int32_t addr, uint32_t id)
{
    bridge_line_entry *entry;

    if (addr < 0) {
        return code->co_firstlineno; /* not started */
    }
    if (id == PMT_NT_PYCODE_UNKNOWN) {
        return PyCode_Addr2Line(code, addr);
    }
    entry = &rt.lines[(index_slot(code) ^ (size_t)addr * 0x9E3779B1u) &
                      (BRIDGE_LINE_CACHE - 1)];
    if (entry->code != code || entry->addr != addr) {
        entry->code = code;
        entry->addr = addr;
        entry->line = PyCode_Addr2Line(code, addr);
    }
    return entry->line;
}

/* The id of code when the table already has it, else
   PMT_NT_PYCODE_UNKNOWN; any thread, the GIL not needed.  code_id fills an
   entry, then sets its index slot, then publishes the id with release; a
   slot once set never changes.  Loading `published` first (acquire) and
   trusting only the ids below it reads complete entries; a slot set after
   that load holds an id at or past it and is passed over (when it is this
   code, the code is unknown this time).  The probe sequence of a code in
   the table runs through set slots only, so the first empty slot ends the
   search. */
static uint32_t
code_id_known(const PyCodeObject *code)
{
    uint32_t published =
        atomic_load_explicit(&rt.published, memory_order_acquire);
    size_t slot = index_slot(code), probes;
    uint32_t id;

    for (probes = 0; probes < BRIDGE_INDEX_SIZE; probes++) {
        id = atomic_load_explicit(&rt.index[slot], memory_order_relaxed);
        if (id == 0) {
            break;
        }
        id--;
        if (id < published && rt.codes[id].code == code) {
            return id;
        }
        slot = (slot + 1) & (BRIDGE_INDEX_SIZE - 1);
    }
    return PMT_NT_PYCODE_UNKNOWN;
}

/* The line of (code, addr) without the GIL, computed every time: the
   cache rt.lines is written by GIL holders without a lock, and two
   GIL-less writers could tear an entry.  The line table is read only:
   PyCode_Addr2Line reads co_lnotab (3.9) or co_linetable (3.10, 3.12+);
   on 3.11 it prefers _co_linearray, which a tracing thread may be filling
   (its pointer is stored before its entry size and contents), so
   PyCode_Addr2Location, which reads co_linetable alone, is used there. */
static int
line_without_gil(PyCodeObject *code, int32_t addr)
{
#if PMT_PY311_PLUS && !PMT_PY312_PLUS
    int line, column, end_line, end_column;
#endif

    if (addr < 0) {
        return code->co_firstlineno; /* not started */
    }
#if PMT_PY311_PLUS && !PMT_PY312_PLUS
    if (!PyCode_Addr2Location(code, addr, &line, &column, &end_line,
                              &end_column)) {
        return code->co_firstlineno;
    }
    return line;
#else
    return PyCode_Addr2Line(code, addr);
#endif
}

/* The Python frames of a thread that released the GIL: its own thread
   state (a thread-specific read), of the main interpreter, walked read
   only.  A code not in the table yet keeps its frame, as
   PMT_NT_PYCODE_UNKNOWN with line 0 (shown `<python>`, the line of a
   code without a name would not help): the frames outside it, which may
   be named, are the line that called into C.  Nothing is read once
   finalization has begun, or once the atexit callback closed the path
   before it: Py_FinalizeEx frees the thread states of daemon threads,
   which may still be running C code. */
static uint32_t
stack_without_gil(uint64_t *out, uint32_t max)
{
    pmt_frame frames[BRIDGE_MAX_FRAMES];
    PyThreadState *tstate;
    uint32_t n = 0, i, id;
    int line;

    /* seq_cst, paired with close_without_gil: either it sees this reader
       and waits, or this reader sees the path closed. */
    atomic_fetch_add(&rt.nogil_readers, 1);
    if (!atomic_load(&rt.nogil_open) || pmt_is_finalizing()) {
        goto done;
    }
    if (current_tstate_of_thread() != NULL) {
        /* 3.12+: the caller holds another interpreter's GIL; native
           frames only */
        goto done;
    }
    tstate = PyGILState_GetThisThreadState();
    if (tstate == NULL ||
        PyThreadState_GetInterpreter(tstate) != PyInterpreterState_Main()) {
        goto done; /* a C thread that never ran Python, or being deleted */
    }
    n = pmt_collect_frames_of(tstate, frames, max);
    for (i = 0; i < n; i++) {
        PyCodeObject *code = (PyCodeObject *)frames[i].code;
        id = code_id_known(code);
        line = id == PMT_NT_PYCODE_UNKNOWN
                   ? 0
                   : line_without_gil(code, frames[i].addr);
        out[i] = (uint64_t)id << 32 | (uint32_t)line;
    }

done:
    atomic_fetch_sub(&rt.nogil_readers, 1);
    return n;
}

PyDoc_STRVAR(close_without_gil_doc,
             "_native_close_without_gil()\n\n"
             "Stop reading Python frames of threads that released the GIL "
             "(registered\nwith atexit: finalization frees the thread "
             "states of daemon threads).");

static PyObject *
close_without_gil(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    atomic_store(&rt.nogil_open, 0);
    /* A reader never waits for anything (the GIL held here included): a
       bounded walk, then it leaves. */
    while (atomic_load(&rt.nogil_readers) != 0) {
        sched_yield();
    }
    Py_RETURN_NONE;
}

static uint32_t
bridge_stack(uint64_t *out, uint32_t max)
{
    pmt_frame frames[BRIDGE_MAX_FRAMES];
    uint64_t hash;
    uint32_t n, i, id;
    int line;

    if (max > BRIDGE_MAX_FRAMES) {
        max = BRIDGE_MAX_FRAMES;
    }
    if (gil_holder() == NULL) {
        return stack_without_gil(out, max);
    }
    n = pmt_collect_frames(frames, max, &hash, NULL);
    for (i = 0; i < n; i++) {
        PyCodeObject *code = (PyCodeObject *)frames[i].code;
        id = code_id(code);
        line = frame_line(code, frames[i].addr, id);
        out[i] = (uint64_t)id << 32 | (uint32_t)line;
    }
    return n;
}

static int
bridge_code(uint32_t id, const char **file, const char **function)
{
    if (id >= atomic_load_explicit(&rt.published, memory_order_acquire)) {
        return 0;
    }
    *file = rt.codes[id].file;
    *function = rt.codes[id].function;
    return 1;
}

PyDoc_STRVAR(native_live_bytes_doc,
             "_native_live_bytes() -> int or None\n\n"
             "Bytes live in the native tracer's table (pymemtrace native), "
             "or None when\nthis process is not traced with a table (not "
             "preloaded, or --count).");

static PyObject *
native_live_bytes(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    int64_t bytes = 0;
    int rc;

    if (rt.live_bytes == NULL) {
        Py_RETURN_NONE;
    }
    /* The tracer's lock is held by allocating threads, which may wait for
       the GIL only after releasing it: no cycle, but let them run. */
    Py_BEGIN_ALLOW_THREADS
    rc = rt.live_bytes(&bytes);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong(bytes);
}

static PyMethodDef bridge_methods[] = {
    {"_native_live_bytes", native_live_bytes, METH_NOARGS,
     native_live_bytes_doc},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef close_without_gil_def = {"_native_close_without_gil",
                                            close_without_gil, METH_NOARGS,
                                            close_without_gil_doc};

/* Opens the GIL-less path once its closing is registered with atexit
   (which runs before finalization frees any thread state). */
static int
open_without_gil(PyObject *module)
{
    PyObject *atexit = NULL, *func = NULL, *result = NULL;

    atexit = PyImport_ImportModule("atexit");
    if (atexit == NULL) {
        goto error;
    }
    func = PyCFunction_NewEx(&close_without_gil_def, module, NULL);
    if (func == NULL) {
        goto error;
    }
    result = PyObject_CallMethod(atexit, "register", "O", func);
    if (result == NULL) {
        goto error;
    }
    Py_DECREF(result);
    Py_DECREF(func);
    Py_DECREF(atexit);
    atomic_store(&rt.nogil_open, 1);
    return 0;

error:
    Py_XDECREF(func);
    Py_XDECREF(atexit);
    return -1;
}

int
pmt_native_bridge_exec(PyObject *module)
{
#ifndef Py_GIL_DISABLED
    if (!rt.registered) {
        pmt_nt_register_python_fn reg;
        rt.registered = 1;
        reg = (pmt_nt_register_python_fn)dlsym(RTLD_DEFAULT,
                                               PMT_NT_REGISTER_PYTHON);
        if (reg != NULL) {
            if (open_without_gil(module) < 0) {
                goto error;
            }
            (void)reg(PMT_NT_PYTHON_ABI, bridge_stack, bridge_code);
        }
        rt.live_bytes =
            (pmt_nt_live_bytes_fn)dlsym(RTLD_DEFAULT, PMT_NT_LIVE_BYTES);
    }
#else
    (void)rt.registered;
#endif
    return PyModule_AddFunctions(module, bridge_methods);

error:
    return -1;
}
