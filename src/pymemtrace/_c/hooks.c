/*
 * hooks.c - cPyMemTrace.Profile and cPyMemTrace.Trace: memory at every
 * call/return (Profile) or line (Trace) where it moved, logged to a file.
 *
 * Exactness.  A record is written at the event at which a read of memory
 * at every event (the seed's method) would first see the move, and every
 * record carries the memory at its event.  Reading /proc/self/statm
 * costs ~325 ns, so the hook reads it only when it may have changed since
 * the last read (memory_at_event): RSS grows only through page faults,
 * counted per thread by core/faultcount.c (one load per watched thread),
 * and shrinks only through calls that give memory back, counted by
 * core/shrinkwatch_linux.c (one load); the poller thread's value (core/rsspoll.c,
 * every millisecond) is compared too, for what neither sees (a thread
 * that is not watched, the kernel reclaiming pages).  While none of them
 * moved, RSS is the value last read, exactly.  measure="heap" loads the
 * allocation counter of alloc.c at every event (exact by construction).
 * Only when memory moved by the trigger is a record formatted
 * (hand-rolled, into the buffers of core/logwriter.c, whose writer thread
 * does the write(2)).  To be able to write the event just before a jump
 * (PREV) the hook keeps that event's code object (one strong reference,
 * swapped only when the code changes), its instruction offset and what;
 * file, line and function are worked out only when written, and the
 * escaped names of the last code object written are reused.
 *
 * Backends: PyEval_SetProfile/SetTrace (3.9-3.11, and on request on
 * 3.12+), sys.monitoring (3.12+): PY_START/RESUME/THROW, PY_RETURN/YIELD/
 * UNWIND, CALL/C_RETURN/C_RAISE (Profile: C_CALL/C_RETURN/C_EXCEPT, as the
 * legacy profile hook reports them), LINE and RAISE (Trace).
 *
 * Threading.  Hooks run with the GIL held (they are called by the
 * interpreter on the thread that runs the code), so a tracer's event
 * state and the memory cache are only touched under the GIL.  The log mutex is taken as well
 * where the GIL is not enough (all_threads, free-threaded builds).
 * hooks_runtime (below) is touched only with the GIL held.
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
#include "native.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    /* The escaped "File\t#line-less" text of the last code object written:
       File and Function columns are copied, not re-encoded, while the
       code object stays the same (the common case: loops, recursion). */
    PyObject *name_code;  /* strong reference, or NULL */
    char *name_buf;       /* NAME_BUF_SIZE bytes while active */
    size_t name_file_len; /* escaped File bytes at name_buf */
    size_t name_func_len; /* escaped Function bytes after them */
    /* Lines of instruction offsets of name_code, direct-mapped by offset
       (PyCode_Addr2Line scans the line table): valid while name_code
       stays the same, emptied (lasti -1) when it changes.  GIL. */
    int line_lasti[LINE_CACHE_SIZE];
    int line_value[LINE_CACHE_SIZE];
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
    struct tracer_object *outer;    /* stack link (hooks_runtime) */
    int backend;                    /* BACKEND_LEGACY or BACKEND_MONITORING */
} TracerObject;

/* Process-wide: the stacks of active tracers, innermost first.  Each
   entry holds a strong reference.  Protected by the GIL. */
static struct {
    TracerObject *top[2];  /* per kind */
    int depth[2];          /* per kind */
    uint64_t file_counter; /* <n> in generated file names */
    int default_backend;   /* BACKEND_* for new tracers (3.12+) */
    int mon_tool;          /* sys.monitoring tool id held, -1 = none */
    int mon_users[2];      /* monitoring-backed tracers active, per kind */
    /* 1 while active tracers belong to more than one interpreter: only
       then do the monitoring callbacks compare interpreters (a call to
       find the thread state per event otherwise saved). */
    int several_interps;
    /* The memory cache of measure="rss" (memory_at_event): RSS read at
       the stamp mem_stamp, when the poller had published mem_polled.
       mem_valid 0 forces a read.  GIL. */
    int mem_valid;
    uint64_t mem_stamp;
    uint64_t mem_polled;
    int64_t mem_value;
    uint64_t mem_reads; /* exact reads made (tests, stats).  GIL */
    /* 1: read RSS at every event, as the seed does (_set_rss_reads):
       the reference the fast path is compared with.  GIL. */
    int read_every_event;
} hooks_runtime = {
    .default_backend = PMT_PY312_PLUS ? BACKEND_MONITORING : BACKEND_LEGACY,
    .mon_tool = -1,
};

static void set_hook_current(int kind, Py_tracefunc func, PyObject *obj);
static int tracer_hook(PyObject *obj, PyFrameObject *frame, int what,
                       PyObject *arg);

/* What a LAST: record of a block that saw no event says: the exit. */
#define WHAT_EXIT 8
#define N_WHATS 9

/* Padded to 8 bytes: a record copies 8 and advances by the length. */
static const char what_names[N_WHATS][8] = {
    "CALL\0\0\0\0", "EXCEPT\0\0", "LINE\0\0\0\0", "RETURN\0\0",   "C_CALL\0\0",
    "C_EXCEPT",     "C_RETURN",   "OPCODE\0\0",   "EXIT\0\0\0\0",
};
static const size_t what_lens[N_WHATS] = {4, 6, 4, 6, 6, 8, 8, 6, 4};

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* RSS now, exactly: a read of /proc/self/statm, unless nothing that can
   change it happened since the last read (see "Exactness" above).  The
   stamp and the poller's value are taken before the read: a change that
   lands between them and the read is seen by the read, and again (as no
   change) by the next event.  GIL held. */
static int64_t
rss_at_event(void)
{
    /* Both counters only go up: their sum moves iff one of them moved. */
    uint64_t stamp = pmt_faultcount_stamp() + pmt_shrinkwatch_generation();
    uint64_t polled = pmt_rsspoll_value();

    if (hooks_runtime.mem_valid && stamp == hooks_runtime.mem_stamp &&
        polled == hooks_runtime.mem_polled &&
        !hooks_runtime.read_every_event) {
        return hooks_runtime.mem_value;
    }
    hooks_runtime.mem_value = (int64_t)pmt_rsspoll_refresh();
    hooks_runtime.mem_stamp = stamp;
    /* The refresh published the value read: what the poller shows now. */
    hooks_runtime.mem_polled = pmt_rsspoll_value();
    hooks_runtime.mem_valid = 1;
    hooks_runtime.mem_reads++;
    return hooks_runtime.mem_value;
}

/* The memory of self's measure at this event, exactly.  GIL held. */
static inline int64_t
memory_at_event(const TracerObject *self)
{
    if (self->measure == MEASURE_HEAP) {
        return pmt_alloc_live_bytes();
    }
    if (self->fault_source == PMT_FAULTS_NONE) {
        hooks_runtime.mem_valid = 0;
    }
    return rss_at_event();
}

/* Memory read now, whatever the stamp says (enter, exit).  GIL held. */
static int64_t
memory_now(const TracerObject *self)
{
    if (self->measure == MEASURE_HEAP) {
        return pmt_alloc_live_bytes();
    }
    hooks_runtime.mem_valid = 0;
    return rss_at_event();
}

/* ---- writing records (GIL held) ---------------------------------------- */

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

/* A str as UTF-8, escaped.  Never raises: a string that cannot be encoded
   (lone surrogates) is written with replacement characters.  whole: the
   whole text (messages); else at most PMT_LOG_MAX_FIELD bytes of it (names
   inside a record, whose room is reserved at once). */
static void
log_str(pmt_logwriter *log, PyObject *s, int whole)
{
    void (*escaped)(pmt_logwriter *, const char *, size_t) =
        whole ? pmt_log_escaped_whole : pmt_log_escaped;
    const char *utf8;
    Py_ssize_t n;

    if (s == NULL || !PyUnicode_Check(s)) {
        pmt_log_char(log, '?');
        return;
    }
    if (PyUnicode_IS_ASCII(s)) {
        utf8 = (const char *)PyUnicode_DATA(s);
        n = PyUnicode_GET_LENGTH(s);
        escaped(log, utf8, (size_t)n);
        return;
    }
    {
        pmt_exc_t saved;
        PMT_EXC_SAVE(saved);
        /* Caches the UTF-8 form in the object: paid once per name. */
        utf8 = PyUnicode_AsUTF8AndSize(s, &n);
        if (utf8 != NULL) {
            escaped(log, utf8, (size_t)n);
        }
        else {
            PyObject *b;
            PyErr_Clear();
            b = PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace");
            if (b != NULL) {
                escaped(log, PyBytes_AS_STRING(b),
                        (size_t)PyBytes_GET_SIZE(b));
                Py_DECREF(b);
            }
            else {
                PyErr_Clear();
                pmt_log_char(log, '?');
            }
        }
        PMT_EXC_RESTORE(saved);
    }
}

static PyObject *
code_function_name(PyCodeObject *code)
{
#if PMT_PY311_PLUS
    return code->co_qualname;
#else
    return code->co_name;
#endif
}

static inline void
line_cache_clear(TracerObject *self)
{
    int i;
    for (i = 0; i < LINE_CACHE_SIZE; i++) {
        self->line_lasti[i] = -1;
    }
}

static int
event_line(TracerObject *self, const pmt_event *ev)
{
    int slot, line;

    if (ev->line >= 0) {
        return ev->line;
    }
    if (ev->code == NULL) {
        return 0;
    }
    if (ev->code != self->name_code || ev->lasti < 0) {
        return PyCode_Addr2Line((PyCodeObject *)ev->code, ev->lasti);
    }
    /* Offsets are even (code units): drop the low bit. */
    slot = (ev->lasti >> 1) & (LINE_CACHE_SIZE - 1);
    if (self->line_lasti[slot] == ev->lasti) {
        return self->line_value[slot];
    }
    line = PyCode_Addr2Line((PyCodeObject *)ev->code, ev->lasti);
    self->line_lasti[slot] = ev->lasti;
    self->line_value[slot] = line;
    return line;
}

/* Largest record: two escaped fields (each at most twice
   PMT_LOG_MAX_FIELD) and the numbers. */
#define NAME_BUF_SIZE (4 * PMT_LOG_MAX_FIELD + 16)
#define MAX_RECORD (NAME_BUF_SIZE + 256)

/* File and Function columns of code, escaped, through the cache. */
static void
log_code_names(TracerObject *self, PyCodeObject *code, int line)
{
    pmt_logwriter *log = &self->log;
    size_t start;

    if ((PyObject *)code != self->name_code || self->name_buf == NULL) {
        /* Room for the whole record was reserved: no flush happens while
           the names are formatted, so they can be copied from the log. */
        start = log->len;
        log_str(log, code ? code->co_filename : NULL, 0);
        self->name_file_len = log->len - start;
        pmt_log_char(log, '\t');
        pmt_log_i64(log, line, 0);
        pmt_log_char(log, '\t');
        {
            size_t fstart = log->len;
            log_str(log, code ? code_function_name(code) : NULL, 0);
            self->name_func_len = log->len - fstart;
            if (self->name_buf != NULL && code != NULL &&
                self->name_file_len + self->name_func_len <= NAME_BUF_SIZE) {
                memcpy(self->name_buf, log->buf + start, self->name_file_len);
                memcpy(self->name_buf + self->name_file_len, log->buf + fstart,
                       self->name_func_len);
                Py_XSETREF(self->name_code, Py_NewRef((PyObject *)code));
                line_cache_clear(self);
            }
            else {
                Py_CLEAR(self->name_code);
                line_cache_clear(self);
            }
        }
        return;
    }
    pmt_log_bytes(log, self->name_buf, self->name_file_len);
    pmt_log_char(log, '\t');
    pmt_log_i64(log, line, 0);
    pmt_log_char(log, '\t');
    pmt_log_bytes(log, self->name_buf + self->name_file_len,
                  self->name_func_len);
}

/* The cap reached: say so in the log.  Returns 0. */
static int
log_capped(TracerObject *self)
{
    pmt_logwriter *log = &self->log;

    self->capped = 1;
    pmt_log_cstr(log, "# max_log_bytes reached (");
    pmt_log_u64(log, self->max_log_bytes);
    pmt_log_cstr(log, "): records after event ");
    pmt_log_u64(log, self->n_events ? self->n_events - 1 : 0);
    pmt_log_cstr(log, " are not written\n");
    return 0;
}

/* Cap check before a record: 1 if the record may be written. */
static inline int
log_room(TracerObject *self)
{
    pmt_logwriter *log = &self->log;

    if (self->capped) {
        return 0;
    }
    if (self->max_log_bytes &&
        log->written + log->len >= self->max_log_bytes) {
        return log_capped(self);
    }
    return 1;
}

static void
write_event(TracerObject *self, const char *tag, const pmt_event *ev,
            uint64_t clock_ns, int force)
{
    pmt_logwriter *log = &self->log;
    PyCodeObject *code = (PyCodeObject *)ev->code;
    unsigned what = (unsigned)ev->what;
    int line;
    char *p;

    record_lock(self);
    if (!force && !log_room(self)) {
        goto out_unlock;
    }
    line = event_line(self, ev);
    /* Room for the whole record: fields are formatted at p with no
       bounds check of their own, and the length is committed once. */
    p = pmt_log_reserve(log, MAX_RECORD);
    memcpy(p, tag, 5); /* "NEXT:" and the others: 5 bytes */
    p[5] = '\t';
    p = pmt_put_u64(p + 6, ev->event);
    p[0] = '\t';
    p[1] = '+';
    p = pmt_put_u64(p + 2, ev->event - self->ref_event);
    *p++ = '\t';
    p = pmt_put_seconds(p, clock_ns - self->t0_ns);
    *p++ = '\t';
    if (what < N_WHATS) {
        memcpy(p, what_names[what], 8);
        p += what_lens[what];
    }
    else {
        *p++ = '?';
    }
    *p++ = '\t';
    if ((PyObject *)code == self->name_code && code != NULL) {
        /* The common case: the names of the last code object written. */
        p = pmt_put_bytes(p, self->name_buf, self->name_file_len);
        *p++ = '\t';
        p = pmt_put_i64(p, line, 0);
        *p++ = '\t';
        p = pmt_put_bytes(p, self->name_buf + self->name_file_len,
                          self->name_func_len);
    }
    else {
        pmt_log_commit(log, p);
        log_code_names(self, code, line);
        p = log->buf + log->len;
    }
    *p++ = '\t';
    if (self->rss_text_len == 0 || self->rss_text_value != ev->mem) {
        char *q = pmt_put_i64(self->rss_text, ev->mem, 0);
        self->rss_text_len = (size_t)(q - self->rss_text);
        self->rss_text_value = ev->mem;
    }
    memcpy(p, self->rss_text, sizeof(self->rss_text));
    p += self->rss_text_len;
    *p++ = '\t';
    /* From the last FRST/NEXT; a LAST of a block that saw no event: from
       the memory read at enter. */
    p = pmt_put_i64(
        p, memcmp(tag, "FRST", 4) == 0 ? 0 : ev->mem - self->ref_mem, 1);
    if (self->all_threads) {
        *p++ = '\t';
        p = pmt_put_u64(p, ev->thread);
    }
    *p++ = '\n';
    pmt_log_commit(log, p);
out_unlock:
    record_unlock(self);
}

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

/* An event that memory moved at (or the first): write PREV if due, then
   NEXT/FRST.  Out of line: most events take tracer_event's short path. */
static PMT_NOINLINE void
tracer_event_written(TracerObject *self, int what, PyObject *code, int lasti,
                     int line, PyFrameObject *frame, uint64_t event,
                     int64_t mem, unsigned long thread)
{
    {
        uint64_t clock = tracer_now(self);
        int had_first = self->have_first;
        if (had_first && self->prev_valid && !self->prev_written) {
            write_event(self, "PREV:", &self->prev, clock, 0);
        }
        if (line < 0 && frame != NULL) {
            line = PyFrame_GetLineNumber(frame);
        }
        remember(self, what, code, lasti, line, event, mem, thread);
        write_event(self, had_first ? "NEXT:" : "FRST:", &self->prev, clock,
                    0);
        self->have_first = 1;
        self->ref_mem = mem;
        self->ref_event = event;
        self->prev_written = 1;
    }
}

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
    tracer_event_written(self, what, code, lasti, line, frame, event, mem,
                         thread);
    return 1;
}

static PyObject *tracer_exit(PyObject *op, PyObject *args);

/* 1 when callable is a tracer's __exit__ (bound): the call that ends the
   block is not an event of the code watched, and a block in which nothing
   else happens shows its growth in LAST (from the memory at enter). */
static inline int
is_tracer_exit(PyObject *callable)
{
    return callable != NULL && PyCFunction_Check(callable) &&
           PyCFunction_GET_FUNCTION(callable) == (PyCFunction)tracer_exit;
}

/* The Py_tracefunc of the legacy backend.  Never raises. */
static int
tracer_hook(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
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

static int
tstate_hook_is(PyThreadState *tstate, int kind, PyObject *obj)
{
    if (kind == KIND_PROFILE) {
        return tstate->c_profilefunc == tracer_hook &&
               tstate->c_profileobj == obj;
    }
    return tstate->c_tracefunc == tracer_hook && tstate->c_traceobj == obj;
}

static void
set_hook_current(int kind, Py_tracefunc func, PyObject *obj)
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
            PyEval_SetProfileAllThreads(tracer_hook, (PyObject *)self);
        }
        else {
            PyEval_SetTraceAllThreads(tracer_hook, (PyObject *)self);
        }
    }
    else {
        PyThreadState *t =
            PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(me));
        int ours_elsewhere = 0;
        for (; t != NULL; t = PyThreadState_Next(t)) {
            if (t != me && tstate_hook_is(t, self->kind, (PyObject *)self)) {
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
                (void)_PyEval_SetProfile(t, tracer_hook, (PyObject *)self);
            }
            else {
                (void)_PyEval_SetTrace(t, tracer_hook, (PyObject *)self);
            }
        }
        else if (tstate_hook_is(t, self->kind, (PyObject *)self)) {
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

#if PMT_PY312_PLUS
/* ---- the sys.monitoring backend (3.12+) ---------------------------------
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
 */

#define MON_WHAT_CALL PyTrace_CALL
#define MON_WHAT_RETURN PyTrace_RETURN

/* Dispatch one event to the tracer of kind that wants it, if any. */
static inline void
mon_dispatch(int kind, int what, PyObject *code, int lasti, int line)
{
    TracerObject *t = hooks_runtime.top[kind];
    PyInterpreterState *interp;
    unsigned long me;

    if (t == NULL) {
        return;
    }
    me = current_thread_ident();
    interp = hooks_runtime.several_interps ? PyInterpreterState_Get() : NULL;
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

    if (nargs < 4 || hooks_runtime.top[KIND_PROFILE] == NULL) {
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
    int want_profile = hooks_runtime.mon_users[KIND_PROFILE] > 0;
    int want_trace = hooks_runtime.mon_users[KIND_TRACE] > 0;
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
    if (hooks_runtime.mon_tool < 0 && (want_profile || want_trace)) {
        /* Ids CPython does not name: 3 and 4. */
        int id;
        for (id = 4; id >= 3; id--) {
            res = PyObject_CallMethod(mon, "use_tool_id", "is", id,
                                      "pymemtrace");
            if (res != NULL) {
                hooks_runtime.mon_tool = id;
                break;
            }
            PyErr_Clear();
        }
        if (hooks_runtime.mon_tool < 0) {
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
                                      hooks_runtime.mon_tool, ev, cb);
            Py_DECREF(ev);
            if (res == NULL) {
                goto done;
            }
            Py_CLEAR(res);
        }
    }
    if (hooks_runtime.mon_tool < 0) {
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
    res = PyObject_CallMethod(mon, "set_events", "il", hooks_runtime.mon_tool,
                              mask);
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
            res = PyObject_CallMethod(mon, "register_callback", "iOO",
                                      hooks_runtime.mon_tool, ev, Py_None);
            Py_DECREF(ev);
            if (res == NULL) {
                goto done;
            }
            Py_CLEAR(res);
        }
        res = PyObject_CallMethod(mon, "free_tool_id", "i",
                                  hooks_runtime.mon_tool);
        if (res == NULL) {
            goto done;
        }
        hooks_runtime.mon_tool = -1;
    }
    rc = 0;
done:
    Py_XDECREF(res);
    Py_XDECREF(events);
    Py_XDECREF(mon);
    return rc;
}

/* Count self among the users of the events of its kind. */
static int
mon_install(TracerObject *self, pmt_state *state)
{
    hooks_runtime.mon_users[self->kind]++;
    if (mon_update(state) < 0) {
        hooks_runtime.mon_users[self->kind]--;
        return -1;
    }
    return 0;
}

static void
mon_uninstall(TracerObject *self, pmt_state *state)
{
    hooks_runtime.mon_users[self->kind]--;
    if (state != NULL && mon_update(state) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
}

#endif /* PMT_PY312_PLUS */

/* ---- the type ---------------------------------------------------------- */

static void
tracer_release_resources(TracerObject *self)
{
    PyMem_RawFree(self->name_buf);
    self->name_buf = NULL;
    Py_CLEAR(self->name_code);
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
    self->backend = hooks_runtime.default_backend;
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

static const char *
kind_name(int kind)
{
    return kind == KIND_PROFILE ? "Profile" : "Trace";
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
        (unsigned long long)hooks_runtime.file_counter++, (long)getpid(),
        self->kind == KIND_PROFILE ? 'P' : 'T', self->depth, PY_VERSION);
}

/* A MSG: (or WARN:) record: the text on one line, escaped. */
static void
write_text_record(TracerObject *self, const char *tag, PyObject *text)
{
    pmt_logwriter *log = &self->log;

    record_lock(self);
    if (log_room(self)) {
        pmt_log_cstr(log, tag);
        pmt_log_char(log, '\t');
        pmt_log_u64(log, self->n_events ? self->n_events - 1 : 0);
        pmt_log_char(log, '\t');
        pmt_log_seconds(log, tracer_now(self) - self->t0_ns);
        pmt_log_char(log, '\t');
        log_str(log, text, 1);
        pmt_log_char(log, '\n');
    }
    record_unlock(self);
}

static void
write_header(TracerObject *self)
{
    pmt_logwriter *log = &self->log;

    if (self->message != NULL) {
        log_str(log, self->message, 1);
        pmt_log_char(log, '\n');
    }
    pmt_log_cstr(log, "SOF\n# tracer: ");
    pmt_log_cstr(log, kind_name(self->kind));
    pmt_log_cstr(log, "\n# measure: ");
    pmt_log_cstr(log, self->measure == MEASURE_RSS ? "rss" : "heap");
    pmt_log_cstr(log, "\n# d_rss_trigger: ");
    pmt_log_i64(log, self->trigger, 0);
    pmt_log_cstr(log, "\n# python: " PY_VERSION "\n# pid: ");
    pmt_log_u64(log, (uint64_t)getpid());
    pmt_log_cstr(log, "\n# all_threads: ");
    pmt_log_cstr(log, self->all_threads ? "1" : "0");
    pmt_log_cstr(log, "\n# depth: ");
    pmt_log_u64(log, (uint64_t)self->depth);
    pmt_log_cstr(log, "\n# backend: ");
    pmt_log_cstr(log, self->backend == BACKEND_MONITORING ? "monitoring"
                                                          : "legacy");
    pmt_log_cstr(log, "\n# rss_source: ");
    if (self->measure == MEASURE_HEAP) {
        pmt_log_cstr(log, "heap counter (exact at every event)");
    }
    else if (self->fault_source == PMT_FAULTS_NONE) {
        pmt_log_cstr(log, "statm read at every event");
    }
    else {
        pmt_log_cstr(log, "statm read when ");
        pmt_log_cstr(log, pmt_faultcount_source_name(self->fault_source));
        pmt_log_cstr(log, " or a release of memory says it may have moved");
    }
    pmt_log_cstr(log,
                 "\nHDR:\tEvent\tdEvent\tClock\tWhat\tFile\t#line\t"
                 "Function\t");
    pmt_log_cstr(log, self->measure == MEASURE_RSS ? "RSS" : "HEAP");
    pmt_log_cstr(log, "\tdRSS");
    if (self->all_threads) {
        pmt_log_cstr(log, "\tThread");
    }
    pmt_log_char(log, '\n');
}

/* The innermost active tracer of a kind entered by this thread in this
   interpreter. */
static TracerObject *
innermost_of_thread(int kind, unsigned long thread)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    TracerObject *t = hooks_runtime.top[kind];
    for (; t != NULL; t = t->outer) {
        if (t->owner == thread && t->interp == interp) {
            return t;
        }
    }
    return NULL;
}

/* Recompute hooks_runtime.several_interps from the stacks. */
static void
stack_interps_changed(void)
{
    PyInterpreterState *seen = NULL;
    TracerObject *t;
    int kind;

    hooks_runtime.several_interps = 0;
    for (kind = 0; kind < 2; kind++) {
        for (t = hooks_runtime.top[kind]; t != NULL; t = t->outer) {
            if (seen != NULL && t->interp != seen) {
                hooks_runtime.several_interps = 1;
            }
            seen = t->interp;
        }
    }
}

static void
stack_push(TracerObject *self)
{
    Py_INCREF(self);
    self->outer = hooks_runtime.top[self->kind];
    hooks_runtime.top[self->kind] = self;
    hooks_runtime.depth[self->kind]++;
    stack_interps_changed();
}

static void
stack_remove(TracerObject *self)
{
    TracerObject **link = &hooks_runtime.top[self->kind];
    while (*link != NULL) {
        if (*link == self) {
            *link = self->outer;
            self->outer = NULL;
            hooks_runtime.depth[self->kind]--;
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
    self->depth = hooks_runtime.depth[self->kind];
    if (self->filepath == NULL) {
        self->filepath = default_path(self);
        if (self->filepath == NULL) {
            goto error;
        }
        generated_path = 1;
    }
    if (self->measure == MEASURE_HEAP) {
        if (pmt_alloc_counting_acquire() < 0) {
            goto error;
        }
        self->heap_acquired = 1;
    }
    if (self->measure == MEASURE_RSS) {
        err = pmt_rsspoll_start();
        if (err) {
            pmt_raise_errno(err, "cannot start the rss poller thread");
            goto error;
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
    if (self->backend == BACKEND_MONITORING) {
#if PMT_PY312_PLUS
        /* Falls back to the legacy hooks when sys.monitoring cannot be
           used (no free tool id). */
        pmt_state *state = pmt_state_from_type(Py_TYPE(op));
        if (state == NULL || state->mon_callbacks == NULL ||
            mon_install(self, state) < 0) {
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
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->filepath);
        goto error;
    }
    self->log_open = 1;
    self->name_buf = PyMem_RawMalloc(NAME_BUF_SIZE);
    write_header(self);

    self->owner = PyThread_get_thread_ident();
    self->interp = PyInterpreterState_Get();
    outer = innermost_of_thread(self->kind, self->owner);
    if (outer != NULL) {
        PyObject *text = PyUnicode_FromFormat(
            "# Detaching this %s: nested one writes to %U",
            kind_name(self->kind), self->filepath);
        if (text != NULL) {
            write_text_record(outer, "MSG:", text);
            Py_DECREF(text);
        }
        PyErr_Clear();
    }
    if (self->backend == BACKEND_LEGACY) {
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
            if (set_threading_hook(self, op, 1) < 0) {
                goto error;
            }
        }
    }
    self->t0_ns = now_ns();
    self->ref_mem = memory_now(self);
    self->state = ST_ACTIVE;
    stack_push(self);
    pmt_log_signals_install();
    if (self->backend == BACKEND_LEGACY) {
        if (self->all_threads) {
            set_hook_other_threads(self, 1);
        }
        set_hook_current(self->kind, tracer_hook, op);
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
        mon_uninstall(self, (pmt_state *)mon_state);
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

/* Legacy backend: another tool replaced this tracer's hook on its thread
   (sys.setprofile, cProfile.enable(), a debugger) while it is the
   innermost of its kind there.  Noted once: a WARN: record now, a
   RuntimeWarning at exit.  GIL held, the owner's thread. */
static void
check_displaced(TracerObject *self)
{
    PyThreadState *tstate;
    PyObject *text;

    if (self->displaced || self->backend != BACKEND_LEGACY ||
        self->state != ST_ACTIVE ||
        self->owner != PyThread_get_thread_ident() ||
        innermost_of_thread(self->kind, self->owner) != self) {
        return;
    }
    tstate = PyThreadState_Get();
    if (tstate_hook_is(tstate, self->kind, (PyObject *)self)) {
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
    write_text_record(self, "WARN:", text);
    Py_DECREF(text);
}

/* Stop tracing and close the log.  Used by __exit__, at interpreter exit
   and on module shutdown.  Returns the log's first write error (errno). */
static int
tracer_finish(TracerObject *self, int restore_hooks)
{
    TracerObject *t;
    pmt_event last;
    int err;

    if (self->state != ST_ACTIVE) {
        return 0;
    }
    if (restore_hooks) {
        check_displaced(self);
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
            mon_uninstall(self, state);
            PMT_EXC_RESTORE(saved);
        }
    }
#endif
    if (restore_hooks && self->backend == BACKEND_LEGACY) {
        PyThreadState *tstate = PyThreadState_Get();
        /* Before the other threads are cleared: on 3.12+ that clears this
           one too. */
        int mine_here = tstate_hook_is(tstate, self->kind, (PyObject *)self);
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
            set_hook_current(self->kind, self->saved_func, self->saved_obj);
        }
        /* A tracer entered inside this one that is still active restores
           what this one replaced, not this one. */
        for (t = hooks_runtime.top[self->kind]; t != NULL; t = t->outer) {
            if (t->saved_obj == (PyObject *)self &&
                t->saved_func == tracer_hook) {
                t->saved_func = self->saved_func;
                Py_XSETREF(t->saved_obj, Py_XNewRef(self->saved_obj));
            }
        }
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
    last.mem = memory_now(self);
    write_event(self, "LAST:", &last, tracer_now(self), 1);
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
        outer = innermost_of_thread(kind, owner);
        if (outer != NULL && restore_hooks) {
            PyObject *text = PyUnicode_FromFormat(
                "# Re-attaching this %s: nested one wrote to %U",
                kind_name(kind), self->filepath);
            if (text != NULL) {
                write_text_record(outer, "MSG:", text);
                Py_DECREF(text);
            }
            PyErr_Clear();
        }
        Py_DECREF(self);
    }
    return err;
}

static PyObject *
tracer_exit(PyObject *op, PyObject *args)
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
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->filepath);
        return NULL;
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
    check_displaced(self);
    write_text_record(self, "MSG:", msg);
    Py_RETURN_NONE;
}

/* Called by threading for a thread started while all_threads is on: the
   first event of that thread installs the C hook there. */
static PyObject *
tracer_call(PyObject *op, PyObject *args, PyObject *kwds)
{
    TracerObject *self = (TracerObject *)op;

    if (self->state == ST_ACTIVE) {
        set_hook_current(self->kind, tracer_hook, op);
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
    {"__exit__", tracer_exit, METH_VARARGS, NULL},
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
    for (t = hooks_runtime.top[kind]; t != NULL; t = t->outer) {
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
            for (t = hooks_runtime.top[kind]; t != NULL; t = t->outer) {
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

PyDoc_STRVAR(
    poller_rss_doc,
    "_poller_rss() -> (int, int, int)\n\n"
    "The RSS the poller thread last published, its generation and the number\n"
    "of exact reads of RSS the tracers made (tests).");

static PyObject *
poller_rss(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("KKK", (unsigned long long)pmt_rsspoll_value(),
                         (unsigned long long)pmt_rsspoll_generation(),
                         (unsigned long long)hooks_runtime.mem_reads);
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
    set_hook_current(kind == KIND_PROFILE ? KIND_PROFILE : KIND_TRACE,
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
    const char *old = hooks_runtime.default_backend == BACKEND_MONITORING
                          ? "monitoring"
                          : "legacy";

    if (name == NULL) {
        PyErr_SetString(PyExc_TypeError, "backend must be a str");
        return NULL;
    }
    if (strcmp(name, "legacy") == 0) {
        hooks_runtime.default_backend = BACKEND_LEGACY;
    }
    else if (strcmp(name, "monitoring") == 0 && PMT_PY312_PLUS) {
        hooks_runtime.default_backend = BACKEND_MONITORING;
    }
    else {
        PyErr_Format(PyExc_ValueError, "unknown or unavailable backend: %s",
                     name);
        return NULL;
    }
    return PyUnicode_FromString(old);
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
    const char *old =
        hooks_runtime.read_every_event ? "every-event" : "when-moved";

    if (name == NULL) {
        PyErr_SetString(PyExc_TypeError, "mode must be a str");
        return NULL;
    }
    if (strcmp(name, "every-event") == 0) {
        hooks_runtime.read_every_event = 1;
    }
    else if (strcmp(name, "when-moved") == 0) {
        hooks_runtime.read_every_event = 0;
    }
    else {
        PyErr_Format(PyExc_ValueError,
                     "mode must be \"when-moved\" or \"every-event\", not %R",
                     arg);
        return NULL;
    }
    return PyUnicode_FromString(old);
}

static PyMethodDef hooks_functions[] = {
    {"_set_rss_reads", set_rss_reads, METH_O, set_rss_reads_doc},
    {"_set_default_backend", set_default_backend, METH_O,
     set_default_backend_doc},
    {"_noop", (PyCFunction)(void (*)(void))noop, METH_FASTCALL, noop_doc},
    {"_set_noop_hook", set_noop_hook, METH_VARARGS, set_noop_hook_doc},
    {"_active_tracers", active_tracers, METH_O, active_tracers_doc},
    {"_close_all_tracers", close_all_tracers, METH_NOARGS, close_all_doc},
    {"_poller_rss", poller_rss, METH_NOARGS, poller_rss_doc},
    {NULL, NULL, 0, NULL},
};

int
pmt_hooks_exec(PyObject *module)
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
    {
        size_t i;
        size_t n = sizeof(mon_callback_defs) / sizeof(mon_callback_defs[0]);
        state->mon_callbacks = PyTuple_New((Py_ssize_t)n);
        if (state->mon_callbacks == NULL) {
            return -1;
        }
        for (i = 0; i < n; i++) {
            PyObject *f =
                PyCFunction_NewEx(&mon_callback_defs[i], module, NULL);
            if (f == NULL) {
                return -1;
            }
            PyTuple_SET_ITEM(state->mon_callbacks, (Py_ssize_t)i, f);
        }
    }
#endif
    return PyModule_AddFunctions(module, hooks_functions);
}

void
pmt_hooks_shutdown(void)
{
    /* The interpreter is going away: complete the logs, leave hooks. */
    finish_all(0, NULL);
    pmt_rsspoll_shutdown();
}
