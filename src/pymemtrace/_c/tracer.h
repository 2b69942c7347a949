/*
 * tracer.h - the private header of cPyMemTrace.Profile and Trace: memory
 * at every call/return (Profile) or line (Trace) where it moved, logged to
 * a file.  Only the tracer_*.c files include it; what other concerns need
 * of the tracer (pmt_tracer_exec, pmt_tracer_shutdown) is in native.h.
 *
 * Files, one concern each:
 *   tracer.c             the Profile/Trace types, enter/exit, the stacks
 *                        of active tracers, module functions
 *   tracer_memory.c      memory at an event, exactly, without reading
 *                        /proc/self/statm at every event (the cache below)
 *   tracer_record.c      the log records (docs/log_format.md): header,
 *                        FRST/NEXT/PREV/LAST, MSG/WARN
 *   tracer_legacy.c      the PyEval_SetProfile/SetTrace backend
 *   tracer_monitoring.c  the sys.monitoring backend (3.12+)
 * The per-event path (tracer_event and what it calls while nothing is
 * written) is static inline here, so the split adds no call to it.
 *
 * Exactness.  A record is written at the event at which a read of memory
 * at every event (the seed's method) would first see the move, and every
 * record carries the memory at its event.  Reading /proc/self/statm
 * costs ~325 ns, so the hook reads it only when it may have changed since
 * the last read (memory_at_event): RSS grows only through page faults,
 * counted per thread by core/faultcount.c (one load per watched thread),
 * and shrinks only through calls that give memory back, counted by
 * core/shrinkwatch_linux.c (one load); the poller thread's value
 * (core/rsspoll.c, every millisecond) is compared too, for what neither
 * sees (a thread that is not watched, the kernel reclaiming pages).  While
 * none of them moved, RSS is the value last read, exactly.
 * measure="heap" loads the allocation counter of alloc.c at every event
 * (exact by construction).  Only when memory moved by the trigger is a
 * record formatted (hand-rolled, into the buffers of core/logwriter.c,
 * whose writer thread does the write(2)).  To be able to write the event
 * just before a jump (PREV) the hook keeps that event's code object (one
 * strong reference, swapped only when the code changes), its instruction
 * offset and what; file, line and function are worked out only when
 * written, and the escaped names of the last code object written are
 * reused.
 *
 * Backends: PyEval_SetProfile/SetTrace (3.9-3.11, and on request on
 * 3.12+), sys.monitoring (3.12+): PY_START/RESUME/THROW, PY_RETURN/YIELD/
 * UNWIND, CALL/C_RETURN/C_RAISE (Profile: C_CALL/C_RETURN/C_EXCEPT, as the
 * legacy profile hook reports them), LINE and RAISE (Trace).
 *
 * Threading.  Hooks run with the GIL held (they are called by the
 * interpreter on the thread that runs the code), so a tracer's event
 * state and the memory cache are only touched under the GIL.  The log
 * mutex is taken as well where the GIL is not enough (all_threads,
 * free-threaded builds).  The runtime structs (pmt_tracer_runtime,
 * pmt_tracer_memory_runtime, the monitoring backend's) are touched only
 * with the GIL held.
 *
 * Hooks of other tools: the entering thread's (func, obj) pair is saved
 * from its thread state and put back with PyEval_SetProfile/SetTrace at
 * exit, which restores C-level hooks (coverage, cProfile < 3.12) as well as
 * sys.setprofile/settrace functions exactly.
 *
 * Errors.  A hook never raises: failures set log.error / a flag that
 * __exit__ turns into an exception.
 *
 * Lock order: the GIL, then a log mutex (then the faultcount mutex, taken
 * once per thread to watch it).  The poller and signal handlers never take
 * the GIL.
 */
#ifndef PMT_TRACER_H
#define PMT_TRACER_H

#include "native.h"

#include <pthread.h>

#include "frameobject.h"

#include "core/clocks.h"
#include "core/faultcount.h"
#include "core/logwriter.h"
#include "core/rsspoll.h"
#include "core/shrinkwatch.h"

enum {
    KIND_PROFILE = 0,
    KIND_TRACE = 1
};
enum {
    MEASURE_RSS = 0,
    MEASURE_HEAP = 1
};
enum {
    ST_NEW = 0,
    ST_ACTIVE = 1,
    ST_CLOSED = 2
};
enum {
    BACKEND_LEGACY = 0,
    BACKEND_MONITORING = 1
};

/* What a LAST: record of a block that saw no event says: the exit. */
#define WHAT_EXIT 8
#define N_WHATS 9

/* What the hook remembers of one event, enough to write it later. */
typedef struct {
    int what;             /* PyTrace_CALL ... PyTrace_C_RETURN */
    int lasti;            /* byte offset of the instruction, -1 before start */
    int line;             /* line number, or -1: work it out from lasti */
    PyObject *code;       /* strong reference, or NULL */
    uint64_t event;       /* event number */
    int64_t mem;          /* memory seen at the event */
    unsigned long thread; /* thread identifier (all_threads only) */
} pmt_event;

#define LINE_CACHE_SIZE 16 /* a power of two */

/* Largest record: two escaped fields (each at most twice
   PMT_LOG_MAX_FIELD) and the numbers. */
#define NAME_BUF_SIZE (4 * PMT_LOG_MAX_FIELD + 16)
#define MAX_RECORD (NAME_BUF_SIZE + 256)

typedef struct tracer_object {
    PyObject_HEAD
    /* Configuration, fixed by __init__. */
    int kind;               /* KIND_PROFILE or KIND_TRACE */
    int measure;            /* MEASURE_RSS or MEASURE_HEAP */
    int all_threads;        /* trace every thread */
    int64_t trigger;        /* bytes; 0 = every event */
    uint64_t max_log_bytes; /* 0 = no cap */
    PyObject *message;      /* str or NULL */
    PyObject *filepath;     /* str: the given path, or the one made at enter */
    /* Life cycle: ST_NEW -> ST_ACTIVE -> ST_CLOSED.  GIL. */
    int state;
    int depth;           /* tracers of the same kind active at enter */
    unsigned long owner; /* thread that entered */
    /* Interpreter that entered: a subinterpreter's tracers and the main
       interpreter's share the stacks below but never each other's events,
       messages or exit. */
    PyInterpreterState *interp;
    /* Event state, GIL. */
    uint64_t t0_ns;     /* CLOCK_MONOTONIC at enter */
    uint64_t n_events;  /* events seen */
    uint64_t ref_event; /* event of the last FRST/NEXT */
    int64_t ref_mem;    /* memory of the last FRST/NEXT */
    int have_first;     /* FRST written */
    int prev_valid;     /* prev holds an event */
    int prev_written;   /* prev was written as FRST/NEXT */
    pmt_event prev;     /* the last event seen */
    int capped;         /* max_log_bytes reached */
    int displaced;      /* another tool replaced the hook (WARN: written) */
    /* The File and Function columns of the last code object written
       (logfmt.c's cache, one entry): copied, not re-encoded, while the
       code object stays the same (the common case: loops, recursion). */
    PyObject *name_code; /* strong reference keeping names.code alive */
    char *name_buf;      /* NAME_BUF_SIZE bytes while active: names.text */
    pmt_codenames names; /* of name_code when it is not NULL */
    /* Lines of instruction offsets of name_code (PyCode_Addr2Line scans
       the line table): emptied when name_code changes.  GIL. */
    pmt_codeline lines[LINE_CACHE_SIZE];
    /* The RSS column of the last record, formatted: memory moves far less
       often than records are written.  rss_text_len 0 = empty.  GIL. */
    int64_t rss_text_value;
    char rss_text[24];
    size_t rss_text_len;
    /* The Clock column's clock (CLOCK_MONOTONIC, TSC-extrapolated where
       that is safe: core/clocks.h).  All zero until the first read.  GIL
       (or the log mutex with all_threads). */
    pmt_fastclock clock;
    /* Resources held while active. */
    pmt_logwriter log;
    int log_open;
    int heap_acquired;
    int poll_started;
    int faults_acquired;     /* holds core/faultcount (measure="rss") */
    int shrink_acquired;     /* holds core/shrinkwatch (measure="rss") */
    int fault_source;        /* PMT_FAULTS_* given by that acquisition */
    Py_tracefunc saved_func; /* this thread's hook before enter */
    PyObject *saved_obj;     /* its object (strong) */
    PyObject *saved_threading_hook; /* threading._profile_hook/_trace_hook */
    struct tracer_object *outer;    /* stack link (pmt_tracer_runtime) */
    int backend;                    /* BACKEND_LEGACY or BACKEND_MONITORING */
} TracerObject;

/* tracer.c.  Process-wide: the stacks of active tracers, innermost first.
   Each entry holds a strong reference.  Protected by the GIL. */
struct pmt_tracer_runtime {
    TracerObject *top[2];  /* per kind */
    int depth[2];          /* per kind */
    uint64_t file_counter; /* <n> in generated file names */
    int default_backend;   /* BACKEND_* for new tracers (3.12+) */
    /* 1 while active tracers belong to more than one interpreter: only
       then do the monitoring callbacks compare interpreters (a call to
       find the thread state per event otherwise saved). */
    int several_interps;
};
extern struct pmt_tracer_runtime pmt_tracer_runtime;

/* tracer_memory.c.  The memory cache of measure="rss" (memory_at_event):
   RSS read at the stamp mem_stamp, when the poller had published
   mem_polled.  mem_valid 0 forces a read.  GIL. */
struct pmt_tracer_memory_runtime {
    int mem_valid;
    uint64_t mem_stamp;
    uint64_t mem_polled;
    int64_t mem_value;
    uint64_t mem_reads; /* exact reads made (tests, stats).  GIL */
    /* 1: read RSS at every event, as the seed does (_set_rss_reads):
       the reference the fast path is compared with.  GIL. */
    int read_every_event;
};
extern struct pmt_tracer_memory_runtime pmt_tracer_memory_runtime;

static inline const char *
kind_name(int kind)
{
    return kind == KIND_PROFILE ? "Profile" : "Trace";
}

/* The Clock of a record of self (never before self->t0_ns, which was read
   with clock_gettime before the first record). */
static inline uint64_t
tracer_now(TracerObject *self)
{
#ifdef Py_GIL_DISABLED
    /* Hooks of several threads at once: the clock's state is not shared. */
    if (self->all_threads) {
        return pmt_clock_monotonic_ns();
    }
#endif
    return pmt_fastclock_now(&self->clock);
}

/* PyThread_get_thread_ident() without a call into libpython: with POSIX
   threads it is pthread_self() (thread_pthread.h).  Hooks compare it with
   idents PyThread_get_thread_ident() gave. */
static inline unsigned long
current_thread_ident(void)
{
    return (unsigned long)pthread_self();
}

/* ---- memory at an event (tracer_memory.c holds the rest) ---------------- */

/* RSS now, exactly: a read of /proc/self/statm, unless nothing that can
   change it happened since the last read (see "Exactness" above).  The
   stamp and the poller's value are taken before the read: a change that
   lands between them and the read is seen by the read, and again (as no
   change) by the next event.  GIL held. */
static inline int64_t
rss_at_event(void)
{
    struct pmt_tracer_memory_runtime *rt = &pmt_tracer_memory_runtime;
    /* Both counters only go up: their sum moves iff one of them moved. */
    uint64_t stamp = pmt_faultcount_stamp() + pmt_shrinkwatch_generation();
    uint64_t polled = pmt_rsspoll_value();

    if (rt->mem_valid && stamp == rt->mem_stamp && polled == rt->mem_polled &&
        !rt->read_every_event) {
        return rt->mem_value;
    }
    rt->mem_value = (int64_t)pmt_rsspoll_refresh();
    rt->mem_stamp = stamp;
    /* The refresh published the value read: what the poller shows now. */
    rt->mem_polled = pmt_rsspoll_value();
    rt->mem_valid = 1;
    rt->mem_reads++;
    return rt->mem_value;
}

/* The memory of self's measure at this event, exactly.  GIL held. */
static inline int64_t
memory_at_event(const TracerObject *self)
{
    if (self->measure == MEASURE_HEAP) {
        return pmt_alloc_live_bytes();
    }
    if (self->fault_source == PMT_FAULTS_NONE) {
        pmt_tracer_memory_runtime.mem_valid = 0;
    }
    return rss_at_event();
}

/* Memory read now, whatever the stamp says (enter, exit).  GIL held. */
int64_t pmt_tracer_memory_now(const TracerObject *self);
/* What self's measure needs while active: the heap counter, or the
   poller, the fault counters and the shrink watch.  0, or -1 with an
   exception set (what was acquired is released by ..._release). */
int pmt_tracer_memory_acquire(TracerObject *self);
void pmt_tracer_memory_release(TracerObject *self);
/* Adds _poller_rss and _set_rss_reads to the module. */
int pmt_tracer_memory_exec(PyObject *module);

/* ---- the event path (both backends) ------------------------------------ */

/* Remember ev as the previous event: swap references only on change. */
static inline void
remember(TracerObject *self, int what, PyObject *code, int lasti, int line,
         uint64_t event, int64_t mem, unsigned long thread)
{
    pmt_event *p = &self->prev;

    /* code is borrowed: a reference is taken only when it changes (loops
       and recursion stay in one code object). */
    if (p->code != code) {
        Py_XSETREF(p->code, Py_XNewRef(code));
    }
    p->what = what;
    p->lasti = lasti;
    p->line = line;
    p->event = event;
    p->mem = mem;
    p->thread = thread;
    self->prev_valid = 1;
}

static inline int
frame_lasti(PyFrameObject *frame)
{
#if PMT_PY311_PLUS
    return PyFrame_GetLasti(frame);
#elif PMT_PY310_PLUS
    return frame->f_lasti < 0 ? -1 : frame->f_lasti * 2;
#else
    return frame->f_lasti;
#endif
}

static inline int
crossed(const TracerObject *self, int64_t moved)
{
    return self->trigger == 0 || moved >= self->trigger ||
           -moved >= self->trigger;
}

/* tracer_record.c: an event that memory moved at (or the first): write
   PREV if due, then NEXT/FRST.  Out of line: most events take
   tracer_event's short path. */
PMT_NOINLINE void pmt_tracer_event_written(TracerObject *self, int what,
                                           PyObject *code, int lasti, int line,
                                           PyFrameObject *frame,
                                           uint64_t event, int64_t mem,
                                           unsigned long thread);

/* One event, from either backend.  code is borrowed (the backend keeps it
   alive during the call); line is the line when the backend knows it for
   free, else -1; frame is the frame when there is one (legacy hooks), else
   NULL.  1 when the event was written.  Never raises. */
static inline int
tracer_event(TracerObject *self, int what, PyObject *code, int lasti, int line,
             PyFrameObject *frame)
{
    uint64_t event = self->n_events++;
    int64_t mem = memory_at_event(self);
    unsigned long thread = 0;

    if (self->all_threads) {
        thread = PyThread_get_thread_ident();
    }
    if (self->have_first && !crossed(self, mem - self->ref_mem)) {
        self->prev_written = 0;
        remember(self, what, code, lasti, line, event, mem, thread);
        return 0;
    }
    pmt_tracer_event_written(self, what, code, lasti, line, frame, event, mem,
                             thread);
    return 1;
}

/* tracer.c: __exit__, whose address tells a call of it apart. */
PyObject *pmt_tracer_exit(PyObject *op, PyObject *args);

/* 1 when callable is a tracer's __exit__ (bound): the call that ends the
   block is not an event of the code watched, and a block in which nothing
   else happens shows its growth in LAST (from the memory at enter). */
static inline int
is_tracer_exit(PyObject *callable)
{
    return callable != NULL && PyCFunction_Check(callable) &&
           PyCFunction_GET_FUNCTION(callable) == (PyCFunction)pmt_tracer_exit;
}

/* ---- records (tracer_record.c) ----------------------------------------- */

/* Records are written with the GIL held, which already serialises them on
   a GIL build when only one thread is traced; the log mutex is taken where
   that is not enough: all_threads (hooks of several threads) and
   free-threaded builds.  It costs ~20 ns a record, which matters when
   every event is written. */
static inline void
record_lock(TracerObject *self)
{
#ifndef Py_GIL_DISABLED
    if (!self->all_threads) {
        return;
    }
#endif
    pmt_log_lock(&self->log);
}

static inline void
record_unlock(TracerObject *self)
{
#ifndef Py_GIL_DISABLED
    if (!self->all_threads) {
        return;
    }
#endif
    pmt_log_unlock(&self->log);
}

/* An event record (tag: "FRST:", "NEXT:", "PREV:", "LAST:"); force writes
   it past max_log_bytes. */
void pmt_tracer_write_event(TracerObject *self, const char *tag,
                            const pmt_event *ev, uint64_t clock_ns, int force);
/* A MSG: (or WARN:) record: the text on one line, escaped. */
void pmt_tracer_write_text_record(TracerObject *self, const char *tag,
                                  PyObject *text);
/* The message line, SOF and the # lines, HDR:. */
void pmt_tracer_write_header(TracerObject *self);

/* ---- the legacy backend (tracer_legacy.c) ------------------------------ */

/* The Py_tracefunc of the legacy backend.  Never raises. */
int pmt_tracer_hook(PyObject *obj, PyFrameObject *frame, int what,
                    PyObject *arg);
/* 1 when tstate's hook of kind is pmt_tracer_hook with obj. */
int pmt_tracer_tstate_hook_is(PyThreadState *tstate, int kind, PyObject *obj);
/* PyEval_SetProfile or PyEval_SetTrace, by kind, on this thread. */
void pmt_tracer_set_hook_current(int kind, Py_tracefunc func, PyObject *obj);
/* At enter: save this thread's hook (and threading's, with all_threads,
   where self becomes threading's hook).  0, or -1 with an exception. */
int pmt_tracer_legacy_save(TracerObject *self, PyThreadState *tstate);
/* At enter, once active: self's hook on this thread (and the others). */
void pmt_tracer_legacy_install(TracerObject *self);
/* At exit: what legacy_save saved put back where self is still the
   hook.  GIL held. */
void pmt_tracer_legacy_restore(TracerObject *self);
/* Another tool replaced self's hook on its thread: a WARN: record (once).
   GIL held. */
void pmt_tracer_check_displaced(TracerObject *self);

/* ---- the sys.monitoring backend (tracer_monitoring.c, 3.12+) ----------- */

#if PMT_PY312_PLUS
/* Count self among the users of the events of its kind (claims the tool
   id and registers the callbacks on first use).  0, or -1 with an
   exception set. */
int pmt_tracer_mon_install(TracerObject *self, pmt_state *state);
/* The reverse; state NULL: only the count (the module is going away). */
void pmt_tracer_mon_uninstall(TracerObject *self, pmt_state *state);
/* The callbacks, as functions of module, in state->mon_callbacks. */
int pmt_tracer_mon_exec(PyObject *module, pmt_state *state);
#endif

/* ---- tracer.c ---------------------------------------------------------- */

/* The innermost active tracer of a kind entered by this thread in this
   interpreter. */
TracerObject *pmt_tracer_innermost_of_thread(int kind, unsigned long thread);

#endif /* PMT_TRACER_H */
