/*
 * native.h - the umbrella header of pymemtrace._native.
 *
 * One extension module is built from one C file per concern:
 *   module.c    module definition, state, exec (calls each concern's exec)
 *   errors.c    OSError from errno values
 *   logfmt.c    str and code locations as log text, object-free
 *   rss.c       rss(), rss_peak(): process memory through core/rss.h
 *   sampler.c   the RSS sampler thread behind pymemtrace.process
 *   tracer*.c   Profile and Trace (cPyMemTrace); tracer.h lists them
 *   reftrace.c  ReferenceTracing (PyRefTracer, 3.13+)
 *   alloc_hooks.c  PEP 445 allocator hooks: live-byte counters and the
 *                  tracker (alloc.h: their interface for alloc_api.c)
 *   alloc_api.c    the alloc_* Python functions
 *   alloc_traced.c  the tracker's view of PyTraceMalloc_Track/Untrack
 *   alloc_revive.c  the tracker's reference tracer (3.13+): a block revived
 *                   from a free list is charged to the stack that revives
 *                   it (the GIL only, no lock of ours)
 *   shrinkwatch.c   private test hooks of core/shrinkwatch (the shrink
 *                   generation)
 *   fork.c      the one pthread_atfork registration (the lock order)
 *   objects.c   _census(): live objects by type (pymemtrace.objects)
 *   refgraph.c  referrer chains, known referrers, external references
 *   native_bridge.c  Python stacks and live bytes shared with the native
 *                    tracer (native/pybridge.h), when it is preloaded
 * core/ holds pure C with no Python.h (rss, tables, buffers).
 *
 * Cross-file functions carry the pmt_ prefix and are declared here; the
 * module is compiled with -fvisibility=hidden so only PyInit__native is
 * exported.
 *
 * Lock order (see docs/design.md): the GIL first, then any table lock of
 * ours.  A function whose name ends in _unlocked expects the lock held.
 */
#ifndef PMT_NATIVE_H
#define PMT_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "compat.h"
#include "core/rss.h"
#include "core/stacktable.h"

/*
 * Per-module state.  It holds only PyObject pointers: m_traverse and
 * m_clear walk it as an array, so a field added here is visited and
 * cleared without further code.  C-level process-wide state lives in the
 * one documented *_runtime struct of the file that owns it.
 */
typedef struct {
    /* module.c */
    PyObject *unused_placeholder; /* keeps the struct non-empty */
    /* sampler.c */
    PyObject *sampler_type;
    /* tracer.c, tracer_monitoring.c */
    PyObject *profile_type;
    PyObject *trace_type;
    PyObject *mon_callbacks; /* sys.monitoring callbacks (3.12+), a tuple */
    PyObject *mon_missing;   /* sys.monitoring.MISSING (3.12+), or NULL */
    /* reftrace.c */
    PyObject *reftrace_type;
    PyObject *reftrace_simple_type;
    PyObject *reftrace_str_module; /* interned "__module__" (3.13+) */
    /* alloc.c */
    PyObject *alloc_snapshot_type;
} pmt_state;

extern struct PyModuleDef pmt_module_def;

static inline pmt_state *
pmt_get_state(PyObject *module)
{
    return (pmt_state *)PyModule_GetState(module);
}

/* State of the module that defined type (or one of its bases).  NULL with
   an exception set when none is found. */
pmt_state *pmt_state_from_type(PyTypeObject *type);

/* dict[key] = value (an int); -1 with an exception set on failure.  The
   statistics functions of every concern build their dicts with them. */
static inline int
pmt_dict_set_int(PyObject *dict, const char *key, long long value)
{
    PyObject *obj = PyLong_FromLongLong(value);
    int rc;

    if (obj == NULL) {
        return -1;
    }
    rc = PyDict_SetItemString(dict, key, obj);
    Py_DECREF(obj);
    return rc;
}

static inline int
pmt_dict_set_u64(PyObject *dict, const char *key, unsigned long long value)
{
    PyObject *obj = PyLong_FromUnsignedLongLong(value);
    int rc;

    if (obj == NULL) {
        return -1;
    }
    rc = PyDict_SetItemString(dict, key, obj);
    Py_DECREF(obj);
    return rc;
}

/* errors.c: raise OSError from an errno value, naming what failed (a C
   string, or the path of a file as a str); return NULL. */
PyObject *pmt_raise_errno(int err, const char *what);
PyObject *pmt_raise_errno_path(int err, PyObject *path);

/* logfmt.c: a str as escaped UTF-8 for a log (the rule of core/logwriter's
   pmt_put_escaped), object-free (no object, no exception, no allocation:
   safe in a PyRefTracer callback).  At most max bytes of the UTF-8 are
   written (cut on a byte); NULL or a non-str gives "?".  A lone surrogate
   gives "?", or with PMT_STR_SURROGATE_ESCAPE the \uXXXX that the
   "backslashreplace" error handler gives.  out has room for
   pmt_escaped_str_room(s, max) bytes; returns the end.  GIL held. */
enum {
    PMT_STR_SURROGATE_ESCAPE = 1
};
size_t pmt_escaped_str_room(PyObject *s, size_t max);
char *pmt_put_escaped_str(char *out, PyObject *s, size_t max, int flags);

/* logfmt.c: the location the tracers and ReferenceTracing write (File,
   #line, Function), cached by code object.  An entry's key is a code
   object's address, not a reference: its owner keeps the code alive while
   it is cached (a tracer holds a reference) or empties its tables when a
   code object dies (ReferenceTracing).  The tables (their size, the
   text's storage) are the owner's.  Object-free, GIL held. */
typedef struct {
    const void *code; /* key; NULL: empty */
    char *text;       /* the owner's storage: File, then Function, escaped */
    size_t file_len;  /* bytes of File at text */
    size_t func_len;  /* bytes of Function after it */
} pmt_codenames;
/* The Function column's name: the qualified name where there is one. */
static inline PyObject *
pmt_code_function_name(PyCodeObject *code)
{
#if PMT_PY311_PLUS
    return code->co_qualname;
#else
    return code->co_name;
#endif
}
/* The bytes pmt_codenames_fill writes for code. */
size_t pmt_codenames_room(PyCodeObject *code, size_t max);
/* names->text (room: pmt_codenames_room) gets code's co_filename and
   co_qualname (co_name before 3.11) as pmt_put_escaped_str writes them
   with max and flags; names->code becomes code. */
void pmt_codenames_fill(pmt_codenames *names, PyCodeObject *code, size_t max,
                        int flags);

/* The line of an instruction offset (PyCode_Addr2Line walks the line
   table), in a direct-mapped table of mask + 1 entries (a power of two,
   zeroed: empty): consecutive offsets of one code object take consecutive
   entries. */
typedef struct {
    const void *code; /* key, with lasti; NULL: empty */
    int lasti;
    int line;
} pmt_codeline;

static inline int
pmt_codeline_get(pmt_codeline *table, size_t mask, PyCodeObject *code,
                 int lasti)
{
    size_t h = (size_t)(((uintptr_t)code >> 4) * 2654435761u);
    /* Offsets are even (code units): drop the low bit. */
    pmt_codeline *entry = &table[(h + ((unsigned)lasti >> 1)) & mask];

    if (entry->code != (const void *)code || entry->lasti != lasti) {
        entry->code = code;
        entry->lasti = lasti;
        entry->line = PyCode_Addr2Line(code, lasti);
    }
    return entry->line;
}

/* Each concern adds its functions and types to the module. */
int pmt_rss_exec(PyObject *module);
int pmt_sampler_exec(PyObject *module);
int pmt_tracer_exec(PyObject *module);
int pmt_reftrace_exec(PyObject *module);
int pmt_alloc_exec(PyObject *module);
int pmt_shrinkwatch_exec(PyObject *module);
int pmt_objects_exec(PyObject *module);
int pmt_refgraph_exec(PyObject *module);
/* native_bridge.c: Python stacks for the native tracer, when preloaded. */
int pmt_native_bridge_exec(PyObject *module);

/* Called from m_free: stop whatever a concern runs in the background. */
void pmt_sampler_shutdown(void);
void pmt_tracer_shutdown(void);
void pmt_reftrace_shutdown(void);
void pmt_alloc_shutdown(void);
/* Releases the acquisitions made by _shrinkwatch_acquire(). */
void pmt_shrinkwatch_shutdown(void);

/*
 * alloc_hooks.c: always-on counters of memory live through Python's allocators,
 * all domains together.  pmt_alloc_counting() is 1 while the counting hook
 * is installed; pmt_alloc_live_bytes() is then exact and costs one atomic
 * load, so other hooks (Profile with measure="heap") may call it per event.
 */
int pmt_alloc_counting(void);
int64_t pmt_alloc_live_bytes(void);
/* Reference-counted use of the counting hook: acquire installs it on first
   use (0, or -1 with an exception set), release removes it after the last
   user.  Both need the GIL. */
int pmt_alloc_counting_acquire(void);
void pmt_alloc_counting_release(void);

/* alloc_hooks.c, for alloc_traced.c: foreign blocks (PyTraceMalloc_Track).
   enter: 0 when nothing is to be recorded (tracker off, or this thread is
   inside the tracker already); else 1 with the tracker's re-entrancy guard
   set and *with_gil telling whether the caller holds the GIL; every 1 is
   followed by one exit.  sid: the stack (id + 1) to attribute a new block
   of size bytes to, 0 for none; *keep is 0 when the block is not to be
   kept at all (sampled out and not counting).  account: add (sign +1) or
   remove (-1) a block of the stack's live totals (queued when the GIL is
   not held). */
int pmt_alloc_foreign_enter(int *with_gil);
void pmt_alloc_foreign_exit(void);
uint32_t pmt_alloc_foreign_sid(size_t size, int with_gil, int *keep);
void pmt_alloc_foreign_account(uint32_t sid, size_t size, int sign,
                               int with_gil);

/* alloc_traced.c: PyTraceMalloc_Track/Untrack seen through GOT patching
   while the tracker runs.  start/stop: GIL held, called by alloc_start and
   the tracker's stop (after the mode is off).  counters: live foreign
   blocks.  add_stats: adds its figures to an alloc_stats() dict (-1 with
   an exception set on failure). */
void pmt_traced_start(void);
void pmt_traced_stop(void);
void pmt_traced_counters(int64_t *bytes, int64_t *blocks);
/* Warn (RuntimeWarning, once per tracker run) when another tool removed
   our allocator hooks from a chain (tracemalloc.stop() while tracemalloc
   was started before us).  GIL held, tracker running; -1 with an exception
   set when the warning is an error. */
int pmt_traced_check_hooks(void);
int pmt_traced_add_stats(PyObject *dict);

/* fork.c: one pthread_atfork registration for the whole extension, made
   once per process (0, or -1 with an exception set).  The handlers call
   each concern's functions below (and core/'s) in the order written at the
   top of fork.c. */
int pmt_fork_register(void);
void pmt_sampler_fork_prepare(void);
void pmt_sampler_fork_parent(void);
void pmt_sampler_fork_child(void);
void pmt_traced_fork_prepare(void);
void pmt_traced_fork_release(void);
void pmt_alloc_fork_prepare(void);
void pmt_alloc_fork_release(void);

/* alloc_frames.c: up to max frames of the calling thread's Python stack,
   innermost first, without creating frame objects, and their hash.  The
   walk stops before the frame base (an outer frame to leave out, or NULL).
   The hash is the one pmt_stack_hash_walk returns for the same stack (not
   pmt_stack_hash's: it is computed from what identifies a frame in the
   running interpreter, see alloc_frames.c).  Both need the GIL. */
uint32_t pmt_collect_frames(pmt_frame *frames, uint32_t max, uint64_t *hash,
                            const void *base);
/* The same walk over the frames of tstate, which must be the calling
   thread's own state, the GIL held or not (native_bridge.c: while the
   thread waits in C its frames do not change); no hash. */
uint32_t pmt_collect_frames_of(PyThreadState *tstate, pmt_frame *frames,
                               uint32_t max);
/* The hot path's walk: the hash alone, the number of frames in *n. */
uint64_t pmt_stack_hash_walk(uint32_t max, const void *base, uint32_t *n);
/* The calling thread's innermost Python frame (opaque), NULL if none. */
const void *pmt_current_frame(void);

#endif /* PMT_NATIVE_H */
