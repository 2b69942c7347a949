/*
 * native_bridge.c - the Python stacks for the native tracer
 * (libpymemtrace_preload.so, docs/native.md), when this extension is
 * imported in a process the tracer runs in.
 *
 * At module exec the registration function is looked up with
 * dlsym(RTLD_DEFAULT): absent, the process is not traced and nothing else
 * happens here.  Present, it is given two callbacks (native/pybridge.h):
 *   bridge_stack  called from the tracer's malloc hook: the calling
 *                 thread's Python frames as (code id, line), only when
 *                 that thread holds the GIL (its frames cannot change and
 *                 no other thread touches this file's tables); nothing
 *                 that allocates through Python or takes the GIL;
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
   interpreter's GIL (the tracer's callback, serialised by it); `published`
   and the entries below it are read by any thread (the tracer's writer). */
static struct bridge_runtime {
    bridge_code_entry codes[BRIDGE_MAX_CODES]; /* GIL */
    uint32_t index[BRIDGE_INDEX_SIZE];         /* GIL; id + 1, 0: empty */
    uint32_t ncodes;                           /* GIL */
    /* GIL: PyCode_Addr2Line walks the line table, each time */
    bridge_line_entry lines[BRIDGE_LINE_CACHE];
    _Atomic uint32_t published;      /* entries below it are complete */
    int registered;                  /* GIL: the lookup was made */
    pmt_nt_live_bytes_fn live_bytes; /* GIL: the tracer's, or NULL */
} rt;

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

    while (rt.index[slot] != 0) {
        id = rt.index[slot] - 1;
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
    rt.index[slot] = id + 1;
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

static uint32_t
bridge_stack(uint64_t *out, uint32_t max)
{
    pmt_frame frames[BRIDGE_MAX_FRAMES];
    uint64_t hash;
    uint32_t n, i, id;
    int line;

    if (gil_holder() == NULL) {
        return 0;
    }
    if (max > BRIDGE_MAX_FRAMES) {
        max = BRIDGE_MAX_FRAMES;
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
            (void)reg(PMT_NT_PYTHON_ABI, bridge_stack, bridge_code);
        }
        rt.live_bytes =
            (pmt_nt_live_bytes_fn)dlsym(RTLD_DEFAULT, PMT_NT_LIVE_BYTES);
    }
#else
    (void)rt.registered;
#endif
    return PyModule_AddFunctions(module, bridge_methods);
}
