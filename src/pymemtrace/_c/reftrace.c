/*
 * reftrace.c - ReferenceTracing: a log of every object created and
 * destroyed while a block runs, on CPython 3.13+ through PyRefTracer.
 *
 * What it does.  PyRefTracer_SetTracer (3.13) installs one process-wide
 * callback that CPython calls right after an object is created
 * (PyRefTracer_CREATE, from _Py_NewReference) and right before it is
 * deallocated (PyRefTracer_DESTROY, from _Py_Dealloc, before tp_dealloc).
 * For each object whose type passes the filters we write a NEW: line
 * (address, type, live count of that type, file/line/function of the
 * running Python code) and remember address -> type in a table; its
 * DESTROY writes a DEL: line with the type recorded at NEW (the object is
 * half dead by then and its class may have been reassigned).  The format
 * is docs/reference_tracing.md.
 *
 * Rules inside the callback (PyRefTracer contract): no Python object may
 * be created, no Python code run, no exception set or cleared.  So the
 * callback reads C strings and flags only, keeps its tables in malloc'd
 * memory (core/ptrmap.h), encodes str to UTF-8 itself and writes through
 * core/logwriter (the writer Profile and Trace use); the type name and
 * filter verdict of each type are computed once, at the first object of
 * that type, and cached by type address (a type's entry is dropped when
 * the type object itself is destroyed, so a new type at a reused address
 * is looked at afresh).  Reading the location uses the thread state's
 * current interpreter frame (PyUnstable_InterpreterFrame_GetCode/GetLine),
 * which, unlike PyEval_GetFrame(), never materialises a frame object.
 *
 * Threading model.  CPython calls the tracer with a thread state attached;
 * this module does not declare Py_MOD_GIL_NOT_USED, so the GIL is held on
 * every build, and the GIL protects everything here: the one runtime
 * struct below, each tracer's tables and buffer.  Nothing in this file
 * releases the GIL.  Lock order: the GIL only.
 *
 * The slot is shared.  tracemalloc.start() takes the reference-tracer slot
 * (Python/tracemalloc.c); in later 3.13.x tracemalloc.stop() clears it
 * (3.13.0 leaves its own tracer there).  A tracer that
 * was installed before us is called from our callback (chained), so it
 * keeps working, and is put back at exit.  When something takes the slot
 * while we trace, we cannot know at once (we are simply no longer
 * called); we find out at the next check point (live_object_counts(),
 * write_message_to_log(), tracer_displaced, exit), write a WARN: line and
 * warn the caller at exit with a RuntimeWarning.
 *
 * Lost DESTROY events.  CPython 3.13.0-3.13.2 free objects in the eval
 * loop without calling the tracer (gh-130382), and realloc'd str, bytes
 * and tuple objects move without one on every version.  A NEW at an
 * address we still hold closes the old object; at exit (and in
 * live_object_counts()) instances of GC heap types that the collector no
 * longer knows are closed too (rt_reconcile).  Those DEL: records say
 * <inferred> instead of a location.
 *
 * Nothing lost, nothing torn.  Records go through core/logwriter: its
 * buffers are written by its thread when full, at exit, from a
 * PyUnstable_AtExit hook when the interpreter exits inside the block, and
 * from its fatal-signal flush (SIGTERM too, while nobody else handles
 * it), which writes whole records only and then "# fatal signal: log ends
 * here".  Room for a whole record is reserved before it is formatted, so a
 * buffer ends between records.  A write that fails (a full disk) cuts the
 * file back to its last whole record and stops the log; the errno is
 * raised as OSError by write_message_to_log() and __exit__ (or, when the
 * interpreter exits inside the block, printed on stderr).  A forked child
 * writes nothing (the logwriter forgets inherited logs in the child).
 *
 * Before 3.13 the type exists but constructing it raises RuntimeError.
 */
#include "native.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if PMT_PY313_PLUS
#include "core/logwriter.h"
#include "core/ptrmap.h"
#endif

PyDoc_STRVAR(
    reftrace_doc,
    "ReferenceTracing(message=None, filepath=None, include_builtins=False,\n"
    "                 exclude_tp_names=None, include_tp_names=None,\n"
    "                 gc_collect_on_exit=2, *, max_objects=4000000,\n"
    "                 max_log_bytes=0)\n"
    "--\n"
    "\n"
    "Log every object created (NEW:) and destroyed (DEL:) inside a with\n"
    "block, with its type, the live count of that type and the Python\n"
    "file, line and function that ran.  CPython 3.13 or newer.\n"
    "\n"
    "message: a line written at the top of the log.\n"
    "filepath: the log file; default\n"
    "  YYYYMMDD_HHMMSS_<n>_<pid>_O_0_PY<version>.log in the current directory.\n"
    "include_builtins: also record objects of builtin types (int, str, dict,\n"
    "  list, function, frame, ...).  A user subclass of a builtin is the\n"
    "  user's type and is always recorded.\n"
    "exclude_tp_names, include_tp_names: iterables of type names, matched\n"
    "  exactly against type.__qualname__ or module.qualname; with\n"
    "  include_tp_names only those types are recorded (builtin or not).\n"
    "gc_collect_on_exit: -1, no collection; 0, 1 or 2 (the default): the\n"
    "  generation given to gc.collect() before tracing stops, so garbage\n"
    "  cycles show as DEL:.\n"
    "max_objects: most objects tracked at once (bounded memory); more are\n"
    "  counted as dropped.\n"
    "max_log_bytes: stop writing records when the log reaches this size\n"
    "  (0: no cap); counting continues.\n"
    "\n"
    "\n"
    "Tracers nest: entering one suspends the one already active (its log\n"
    "says MSG: # Detaching ... New file: <path>, then # Re-attaching ...\n"
    "when the inner one exits); the depth is in the default file name.\n"
    "\n"
    "See docs/reference_tracing.md.");

PyDoc_STRVAR(
    reftrace_simple_doc,
    "ReferenceTracingSimple()\n"
    "--\n"
    "\n"
    "Count every object created and destroyed inside a with block, without\n"
    "a log: count_new(), count_del().  Nests with itself and with\n"
    "ReferenceTracing (the one entered last receives the events).  CPython\n"
    "3.13 or newer.");

#define RT_NOT_SUPPORTED_FMT                                                  \
    "%s needs CPython 3.13 or newer (PyRefTracer); this is %s"

#if PMT_PY313_PLUS

/* ---------------------------------------------------------------------- */
/* Writing: core/logwriter, in pieces of any length. */

/* The fatal-signal flush ends the file with this (docs/reference_tracing.md). */
static const char rt_signal_tail[] = "\n# fatal signal: log ends here\n";

/* Room reserved before a record of about n bytes: a buffer is handed to
   the writer thread only between records, so the fatal-signal flush
   (which writes whole lines of the current buffer) never cuts one. */
static inline void
rt_reserve_record(pmt_logwriter *w, size_t n)
{
    (void)pmt_log_reserve(w,
                          n < PMT_LOG_BUFSIZE / 2 ? n : PMT_LOG_BUFSIZE / 2);
}

static inline void
rt_put(pmt_logwriter *w, const char *s, size_t n)
{
    /* pmt_log_bytes cuts a piece at PMT_LOG_MAX_FIELD: ours are whole. */
    while (n > PMT_LOG_MAX_FIELD) {
        pmt_log_bytes(w, s, PMT_LOG_MAX_FIELD);
        s += PMT_LOG_MAX_FIELD;
        n -= PMT_LOG_MAX_FIELD;
    }
    pmt_log_bytes(w, s, n);
}

static inline void
rt_put_str(pmt_logwriter *w, const char *s)
{
    rt_put(w, s, strlen(s));
}

static void
rt_put_hex(pmt_logwriter *w, uintptr_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[2 + 2 * sizeof(uintptr_t)];
    int i = (int)sizeof(tmp);

    do {
        tmp[--i] = digits[v & 0xf];
        v >>= 4;
    } while (v != 0);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    pmt_log_bytes(w, tmp + i, sizeof(tmp) - (size_t)i);
}

/* Seconds as %.6f from nanoseconds, truncated to the microsecond. */
static void
rt_put_clock(pmt_logwriter *w, uint64_t ns)
{
    char *p = pmt_log_reserve(w, 32);
    pmt_log_commit(w, pmt_put_seconds(p, ns / 1000 * 1000));
}

/* UTF-8 of one code point into out (4 bytes); lone surrogates become '?'.
   Returns the byte count. */
static int
rt_utf8_encode(Py_UCS4 ch, char *out)
{
    if (ch < 0x80) {
        out[0] = (char)ch;
        return 1;
    }
    if (ch < 0x800) {
        out[0] = (char)(0xc0 | (ch >> 6));
        out[1] = (char)(0x80 | (ch & 0x3f));
        return 2;
    }
    if (ch >= 0xd800 && ch <= 0xdfff) {
        out[0] = '?';
        return 1;
    }
    if (ch < 0x10000) {
        out[0] = (char)(0xe0 | (ch >> 12));
        out[1] = (char)(0x80 | ((ch >> 6) & 0x3f));
        out[2] = (char)(0x80 | (ch & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (ch >> 18));
    out[1] = (char)(0x80 | ((ch >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((ch >> 6) & 0x3f));
    out[3] = (char)(0x80 | (ch & 0x3f));
    return 4;
}

/* A str written as escaped UTF-8, without creating any object (the UTF-8
   cache of a str may not exist, and making it allocates). */
static void
rt_put_pystr(pmt_logwriter *w, PyObject *s)
{
    Py_ssize_t i, n;
    int kind;
    const void *data;

    if (s == NULL || !PyUnicode_Check(s)) {
        rt_put_str(w, "?");
        return;
    }
    n = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_ASCII(s)) {
        pmt_log_escaped_whole(w, (const char *)PyUnicode_DATA(s), (size_t)n);
        return;
    }
    kind = PyUnicode_KIND(s);
    data = PyUnicode_DATA(s);
    for (i = 0; i < n; i++) {
        char tmp[4];
        int len = rt_utf8_encode(PyUnicode_READ(kind, data, i), tmp);
        pmt_log_escaped_whole(w, tmp, (size_t)len);
    }
}

/* A str as UTF-8 into out (cap > 0 bytes, always NUL-terminated,
   truncated on a character boundary).  Returns the length. */
static size_t
rt_pystr_to_utf8(PyObject *s, char *out, size_t cap)
{
    size_t len = 0;
    Py_ssize_t i, n;
    int kind;
    const void *data;

    if (s == NULL || !PyUnicode_Check(s)) {
        out[0] = '\0';
        return 0;
    }
    n = PyUnicode_GET_LENGTH(s);
    kind = PyUnicode_KIND(s);
    data = PyUnicode_DATA(s);
    for (i = 0; i < n; i++) {
        char tmp[4];
        int k = rt_utf8_encode(PyUnicode_READ(kind, data, i), tmp);
        if (len + (size_t)k + 1 > cap) {
            break;
        }
        memcpy(out + len, tmp, (size_t)k);
        len += (size_t)k;
    }
    out[len] = '\0';
    return len;
}

/* ---------------------------------------------------------------------- */
/* Tables. */

#define RT_NAME_MAX 512

/* One per type seen while tracing (recorded or not). */
typedef struct {
    char *name;         /* "module.qualname" (builtins: qualname), UTF-8,
                         malloc'd, not escaped */
    size_t name_len;    /* strlen(name) */
    char *esc_name;     /* name escaped for the log, malloc'd */
    size_t esc_len;     /* strlen(esc_name) */
    int recorded;       /* the filters let objects of this type through */
    int reconcile;      /* a heap type with Py_TPFLAGS_HAVE_GC: its live
                         instances are always known to the collector */
    int64_t live;       /* recorded objects created and not yet destroyed */
    uint64_t created;   /* NEW records */
    uint64_t destroyed; /* DEL records */
} rt_type;

/* The Python object: a ReferenceTracing, or (simple set) a
   ReferenceTracingSimple, which only counts events and has no log. */
typedef struct rt_object {
    PyObject_HEAD
    /* Configuration, fixed by the constructor. */
    int simple;             /* ReferenceTracingSimple: counters only */
    PyObject *message;      /* str or NULL */
    PyObject *filepath;     /* str: the log path (NULL when simple) */
    int default_path;       /* no filepath given: named again at enter,
                               with the nesting depth in the name */
    int include_builtins;   /* record builtin static types too */
    int gc_collect_on_exit; /* gc.collect() calls at exit */
    char **include_names;   /* UTF-8 names, malloc'd; NULL: no list */
    size_t n_include;
    char **exclude_names; /* UTF-8 names, malloc'd */
    size_t n_exclude;
    size_t max_objects;     /* bound of the object table */
    uint64_t max_log_bytes; /* log size cap; 0: none */
    /* Run state: all protected by the GIL. */
    int phase;               /* RT_CREATED, RT_ACTIVE, RT_DONE */
    struct rt_object *outer; /* the tracer this one suspended (the next
                                one down the stack), NULL at the bottom;
                                borrowed: each active tracer holds a
                                reference to itself */
    unsigned long depth;     /* ReferenceTracing objects (not simple) active
                            below this one when it was entered */
    PyObject *displaced;     /* str: how the slot was lost, or NULL */
    rt_type *types;          /* malloc'd array */
    size_t n_types, cap_types;
    pmt_ptrmap type_index;  /* PyTypeObject * -> index in types */
    pmt_ptrmap objects;     /* live recorded object -> index in types */
    pmt_logwriter *writer;  /* malloc'd; NULL before enter/after close */
    struct timespec t0;     /* CLOCK_MONOTONIC at enter */
    uint64_t last_ns;       /* clock of the last record written */
    uint64_t events;        /* every callback call (CREATE + DESTROY) */
    uint64_t n_new;         /* NEW records */
    uint64_t n_del;         /* DEL records */
    uint64_t n_reused;      /* NEW at an address we still held: the old
                                 object went without DESTROY (realloc) */
    uint64_t n_dropped;     /* objects not tracked: table full / no mem */
    uint64_t n_inferred;    /* DEL records written for objects freed
                                 without a DESTROY event (see
                                 rt_reconcile) */
    uint64_t n_unknown_loc; /* records without a Python location */
    uint64_t log_bytes;     /* size of the closed log */
    int capped;             /* max_log_bytes reached: records dropped */
    int log_error;          /* errno of the log's first failed write (kept
                               after close), 0 if none */
} rt_object;

enum {
    RT_CREATED = 0,
    RT_ACTIVE = 1,
    RT_DONE = 2
};

/* The process-wide runtime (documented exception to "no mutable
   globals"): one reference tracer slot per process, so one tracer receives
   the events at a time.  Tracers nest as a stack: entering one suspends
   the one below (its outer), leaving it resumes that one; the slot holds
   our callback for as long as the stack is not empty.  Every field is
   read and written with the GIL held. */
static struct {
    rt_object *active;       /* the innermost (receiving) tracer, or NULL;
                                the stack goes on through ->outer.  Each
                                holds a reference to itself while active.
                                The callback's data is &rt_runtime */
    PyRefTracer prev_func;   /* the tracer installed before the bottom one
                                of the stack, chained and put back when
                                the stack empties */
    void *prev_data;         /* its data */
    int guard;               /* 1 while our own code creates objects: the
                                callback then ignores events */
    PyObject *str_module;    /* borrowed "__module__" (owned by the module
                                state) for the active tracer */
    unsigned long n_started; /* tracers entered so far, for file names */
    int atexit_registered;   /* PyUnstable_AtExit done */
} rt_runtime;

static uint64_t
rt_clock_ns(rt_object *self)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)(now.tv_sec - self->t0.tv_sec) * UINT64_C(1000000000) +
           (uint64_t)now.tv_nsec - (uint64_t)self->t0.tv_nsec;
}

/* Nonzero when records may be written. */
static inline int
rt_can_write(rt_object *self)
{
    pmt_logwriter *w = self->writer;

    if (w == NULL || self->capped || pmt_log_error(w) != 0) {
        return 0;
    }
    if (self->max_log_bytes != 0 &&
        w->written + w->len >= self->max_log_bytes) {
        self->capped = 1;
        rt_put_str(w,
                   "# max_log_bytes reached: records stop here, "
                   "counting goes on\n");
        return 0;
    }
    return 1;
}

/* Start of a record: TAG \t event \t clock \t.  room: bytes to reserve
   for the whole record first (0: the caller did). */
static void
rt_put_line_head(rt_object *self, const char *tag, size_t room)
{
    pmt_logwriter *w = self->writer;

    if (room != 0) {
        rt_reserve_record(w, room);
    }
    self->last_ns = rt_clock_ns(self);
    rt_put_str(w, tag);
    pmt_log_char(w, '\t');
    pmt_log_u64(w, self->events);
    pmt_log_char(w, '\t');
    rt_put_clock(w, self->last_ns);
    pmt_log_char(w, '\t');
}

/* ---------------------------------------------------------------------- */
/* Type names and filters (computed once per type, in the callback: C
 * strings and flags only). */

/* Fill full ("module.qualname") and qual ("qualname") for tp.  Returns 1
   when tp is a builtin static type (not a heap type, defined in
   builtins). */
static int
rt_type_names(PyTypeObject *tp, char *full, char *qual)
{
    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        /* Static types: tp_name is "module.Name", or "Name" in builtins. */
        const char *dot = strrchr(tp->tp_name, '.');
        snprintf(full, RT_NAME_MAX, "%s", tp->tp_name);
        snprintf(qual, RT_NAME_MAX, "%s", dot ? dot + 1 : tp->tp_name);
        return dot == NULL;
    }
    else {
        PyHeapTypeObject *ht = (PyHeapTypeObject *)tp;
        PyObject *module = NULL;
        char mod[RT_NAME_MAX];
        size_t mlen;

        rt_pystr_to_utf8(ht->ht_qualname, qual, RT_NAME_MAX);
        if (qual[0] == '\0') {
            snprintf(qual, RT_NAME_MAX, "%s", tp->tp_name);
        }
        /* __module__ from the type's dict: a lookup of an interned str
           with a cached hash, which neither allocates nor calls Python.
           Save the current exception around it: we must not touch it. */
        if (tp->tp_dict != NULL && rt_runtime.str_module != NULL) {
            pmt_exc_t saved;
            PMT_EXC_SAVE(saved);
            module =
                PyDict_GetItemWithError(tp->tp_dict, rt_runtime.str_module);
            if (module == NULL) {
                PyErr_Clear();
            }
            PMT_EXC_RESTORE(saved);
        }
        mlen = rt_pystr_to_utf8(module, mod, sizeof(mod));
        if (mlen == 0 || strcmp(mod, "builtins") == 0) {
            snprintf(full, RT_NAME_MAX, "%s", qual);
        }
        else {
            size_t flen = mlen < RT_NAME_MAX - 2 ? mlen : RT_NAME_MAX - 2;
            size_t qlen = strlen(qual);
            memcpy(full, mod, flen);
            full[flen++] = '.';
            if (qlen > RT_NAME_MAX - 1 - flen) {
                qlen = RT_NAME_MAX - 1 - flen;
            }
            memcpy(full + flen, qual, qlen);
            full[flen + qlen] = '\0';
        }
        return 0;
    }
}

/* A malloc'd copy of s with \\ \t \n \r escaped; NULL on no memory. */
static char *
rt_escape_cstr(const char *s, size_t *len)
{
    size_t n = strlen(s);
    char *out = malloc(2 * n + 1);

    if (out == NULL) {
        return NULL;
    }
    *len = (size_t)(pmt_put_escaped(out, s, n) - out);
    out[*len] = '\0';
    return out;
}

/* 1 when one of names is the type's qualname, module.qualname, tp_name,
   or (for builtins) "builtins.<name>". */
static int
rt_type_matches(char **names, size_t n, PyTypeObject *tp, const char *full,
                const char *qual, int builtin)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const char *name = names[i];
        if (strcmp(name, full) == 0 || strcmp(name, qual) == 0 ||
            strcmp(name, tp->tp_name) == 0) {
            return 1;
        }
        if (builtin && strncmp(name, "builtins.", 9) == 0 &&
            strcmp(name + 9, tp->tp_name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The entry of tp, created on first sight.  -1 when out of memory. */
static int64_t
rt_type_lookup(rt_object *self, PyTypeObject *tp)
{
    uint32_t index;
    char full[RT_NAME_MAX], qual[RT_NAME_MAX];
    int builtin;
    int recorded;
    rt_type *entry;

    if (pmt_ptrmap_get(&self->type_index, (uintptr_t)tp, &index)) {
        return index;
    }
    if (self->n_types == self->cap_types) {
        size_t cap = self->cap_types ? self->cap_types * 2 : 64;
        rt_type *grown;
        if (cap > UINT32_MAX) {
            return -1;
        }
        grown = realloc(self->types, cap * sizeof(rt_type));
        if (grown == NULL) {
            return -1;
        }
        self->types = grown;
        self->cap_types = cap;
    }
    builtin = rt_type_names(tp, full, qual);
    if (self->include_names != NULL) {
        recorded = rt_type_matches(self->include_names, self->n_include, tp,
                                   full, qual, builtin);
    }
    else {
        recorded = self->include_builtins || !builtin;
    }
    if (recorded && rt_type_matches(self->exclude_names, self->n_exclude, tp,
                                    full, qual, builtin)) {
        recorded = 0;
    }
    entry = &self->types[self->n_types];
    memset(entry, 0, sizeof(*entry));
    entry->name_len = strlen(full);
    entry->name = malloc(entry->name_len + 1);
    if (entry->name == NULL) {
        return -1;
    }
    memcpy(entry->name, full, entry->name_len + 1);
    entry->esc_name = rt_escape_cstr(full, &entry->esc_len);
    if (entry->esc_name == NULL) {
        free(entry->name);
        return -1;
    }
    entry->recorded = recorded;
    entry->reconcile = (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) &&
                       (tp->tp_flags & Py_TPFLAGS_HAVE_GC);
    index = (uint32_t)self->n_types;
    if (pmt_ptrmap_put(&self->type_index, (uintptr_t)tp, index, NULL) < 0) {
        free(entry->esc_name);
        free(entry->name);
        return -1;
    }
    self->n_types++;
    return index;
}

/* ---------------------------------------------------------------------- */
/* The callback. */

/* Location caches: formatting a location costs a line-table walk
 * (PyCode_Addr2Line) and the escaping of two strings, so both are cached
 * by code object and by (code, instruction offset), through logfmt.c's
 * pmt_codenames and pmt_codeline (the tracers' too).  Direct-mapped,
 * fixed size (bounded memory); emptied whenever a code object is
 * destroyed, as its address may then be reused by another. */

#define RT_CODE_SLOTS 512
#define RT_LINE_SLOTS 4096

typedef struct {
    PyObject *code;  /* not a reference: key only */
    char *text;      /* malloc'd "file\t" ... escaped */
    size_t file_len; /* bytes of the escaped file name */
    size_t func_off; /* offset of the escaped function name in text */
    size_t func_len;
} rt_code_slot;

/* Process-wide like the runtime (one active tracer): GIL. */
/* pmt-lint: allow-static a cache of the one active tracer, GIL */
static rt_code_slot rt_code_cache[RT_CODE_SLOTS];
/* pmt-lint: allow-static a cache of the one active tracer, GIL */
static pmt_codeline rt_line_cache[RT_LINE_SLOTS];

static void
rt_cache_clear(void)
{
    size_t i;

    for (i = 0; i < RT_CODE_SLOTS; i++) {
        free(rt_code_cache[i].text);
    }
    memset(rt_code_cache, 0, sizeof(rt_code_cache));
    memset(rt_line_cache, 0, sizeof(rt_line_cache));
}

static rt_code_slot *
rt_code_lookup(PyCodeObject *code)
{
    size_t h = ((uintptr_t)code >> 4) * 2654435761u;
    rt_code_slot *slot = &rt_code_cache[h % RT_CODE_SLOTS];
    pmt_codenames names;

    if (slot->code == (PyObject *)code) {
        return slot;
    }
    /* One byte more: never a malloc of 0 bytes. */
    names.text = malloc(pmt_codenames_room(code, SIZE_MAX) + 1);
    if (names.text == NULL) {
        return NULL;
    }
    pmt_codenames_fill(&names, code, SIZE_MAX, 0);
    free(slot->text);
    slot->text = names.text;
    slot->file_len = names.file_len;
    slot->func_off = names.file_len;
    slot->func_len = names.func_len;
    slot->code = (PyObject *)code;
    return slot;
}

static int
rt_line_lookup(struct _PyInterpreterFrame *frame, PyObject *code)
{
    /* PyUnstable_InterpreterFrame_GetLine(frame) is PyCode_Addr2Line of
       this offset. */
    return pmt_codeline_get(rt_line_cache, RT_LINE_SLOTS - 1,
                            (PyCodeObject *)code,
                            PyUnstable_InterpreterFrame_GetLasti(frame));
}

/* Room for a record's fixed fields (tag, event, clock, address, live,
   line, tabs and newline) besides its names. */
#define RT_RECORD_FIXED 128

/* The cached names of the code running on this thread and its line, from
   the current interpreter frame (no frame object is created); NULL when
   no Python code runs. */
static rt_code_slot *
rt_find_location(int *line)
{
    PyThreadState *tstate = PyThreadState_GetUnchecked();
    struct _PyInterpreterFrame *frame;
    PyObject *code;
    rt_code_slot *slot;

    frame = tstate != NULL ? tstate->current_frame : NULL;
    if (frame == NULL) {
        return NULL;
    }
    /* A strong reference; the frame holds another, so the DECREF below
       never deallocates.  A shim frame (C calling Python) holds None. */
    code = PyUnstable_InterpreterFrame_GetCode(frame);
    if (code == NULL) {
        return NULL;
    }
    if (!PyCode_Check(code)) {
        Py_DECREF(code);
        return NULL;
    }
    slot = rt_code_lookup((PyCodeObject *)code);
    if (slot != NULL) {
        *line = rt_line_lookup(frame, code);
    }
    Py_DECREF(code);
    return slot;
}

static void
rt_put_record(rt_object *self, const char *tag, PyObject *op,
              const rt_type *type)
{
    pmt_logwriter *w = self->writer;
    int line = 0;
    rt_code_slot *slot = rt_find_location(&line);

    rt_put_line_head(self, tag,
                     RT_RECORD_FIXED + type->esc_len +
                         (slot ? slot->file_len + slot->func_len : 32));
    rt_put_hex(w, (uintptr_t)op);
    pmt_log_char(w, '\t');
    rt_put(w, type->esc_name, type->esc_len);
    pmt_log_char(w, '\t');
    pmt_log_i64(w, type->live, 0);
    pmt_log_char(w, '\t');
    if (slot != NULL) {
        rt_put(w, slot->text, slot->file_len);
        pmt_log_char(w, '\t');
        pmt_log_i64(w, line, 0);
        pmt_log_char(w, '\t');
        rt_put(w, slot->text + slot->func_off, slot->func_len);
    }
    else {
        self->n_unknown_loc++;
        rt_put_str(w, "<unknown>\t0\t<unknown>");
    }
    pmt_log_char(w, '\n');
}

/* A DEL: record for an object that CPython freed without a DESTROY event
   (CPython 3.13.0-3.13.2 skip it for objects freed by the eval loop,
   gh-130382): the place is unknown. */
static void
rt_put_inferred_del(rt_object *self, uintptr_t addr, const rt_type *type)
{
    pmt_logwriter *w = self->writer;

    self->n_inferred++;
    if (!rt_can_write(self)) {
        return;
    }
    rt_put_line_head(self, "DEL:", RT_RECORD_FIXED + 64 + type->esc_len);
    rt_put_hex(w, addr);
    pmt_log_char(w, '\t');
    rt_put(w, type->esc_name, type->esc_len);
    pmt_log_char(w, '\t');
    pmt_log_i64(w, type->live, 0);
    rt_put_str(w, "\t<inferred>\t0\t<freed without a DESTROY event>\n");
}

static void
rt_on_create(rt_object *self, PyObject *op)
{
    int64_t index = rt_type_lookup(self, Py_TYPE(op));
    rt_type *type;
    uint32_t old;
    int rc;

    if (index < 0) {
        self->n_dropped++;
        return;
    }
    type = &self->types[index];
    if (!type->recorded) {
        return;
    }
    rc = pmt_ptrmap_put(&self->objects, (uintptr_t)op, (uint32_t)index, &old);
    if (rc < 0) {
        if (self->n_dropped++ == 0 && rt_can_write(self)) {
            static const char text[] =
                "max_objects reached (or no memory): objects created from "
                "here on are counted as dropped, not recorded\n";
            rt_put_line_head(self, "WARN:", PMT_LOG_MAX_FIELD);
            rt_put(self->writer, text, sizeof(text) - 1);
        }
        return;
    }
    if (rc == 1) {
        /* We still held this address: the old object went away without a
           DESTROY event (a str/bytes/tuple resized by realloc, or freed by
           the eval loop on 3.13.0-3.13.2).  Close it first. */
        self->types[old].live--;
        self->types[old].destroyed++;
        self->n_del++;
        self->n_reused++;
        rt_put_inferred_del(self, (uintptr_t)op, &self->types[old]);
    }
    type->live++;
    type->created++;
    self->n_new++;
    if (rt_can_write(self)) {
        rt_put_record(self, "NEW:", op, type);
    }
}

/* An object dying, told to every tracer of the stack (the suspended ones
   too: an object they recorded must not look alive because it died while
   a nested tracer ran). */
static void
rt_on_destroy(rt_object *self, PyObject *op)
{
    uint32_t index;

    /* A type dying: its address may come back as another one, so forget
       what we cached about it. */
    if (PyType_Check(op)) {
        (void)pmt_ptrmap_pop(&self->type_index, (uintptr_t)op, NULL);
    }
    if (!pmt_ptrmap_pop(&self->objects, (uintptr_t)op, &index)) {
        return; /* not created while we traced, or not recorded */
    }
    self->types[index].live--;
    self->types[index].destroyed++;
    self->n_del++;
    if (rt_can_write(self)) {
        rt_put_record(self, "DEL:", op, &self->types[index]);
    }
}

static int
rt_callback(PyObject *op, PyRefTracerEvent event, void *data)
{
    rt_object *self = rt_runtime.active;

    (void)data; /* always &rt_runtime */
    if (self != NULL && !rt_runtime.guard) {
        rt_runtime.guard = 1;
        self->events++;
        if (event == PyRefTracer_CREATE) {
            if (self->simple) {
                self->n_new++;
            }
            else {
                rt_on_create(self, op);
            }
        }
        else if (event == PyRefTracer_DESTROY) {
            rt_object *t;
            /* A code object dying: its address may come back as another
               one, so forget the locations cached for it. */
            if (PyCode_Check(op)) {
                rt_cache_clear();
            }
            if (self->simple) {
                self->n_del++;
            }
            for (t = self; t != NULL; t = t->outer) {
                if (!t->simple) {
                    rt_on_destroy(t, op);
                }
            }
        }
        rt_runtime.guard = 0;
    }
    /* Chain to the tracer that was there before us (tracemalloc keeps
       object tracebacks through it). */
    if (rt_runtime.prev_func != NULL) {
        return rt_runtime.prev_func(op, event, rt_runtime.prev_data);
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Reconciliation.  Some CPython versions free objects without a DESTROY
 * event (3.13.0-3.13.2: everything the eval loop frees itself,
 * gh-130382; realloc'd str/bytes/tuple on every version).  Instances of a
 * heap type with Py_TPFLAGS_HAVE_GC are always known to the collector
 * while alive, so an entry of such a type that the collector no longer
 * knows is gone: we write its DEL: as inferred.  Builtin containers may
 * be untracked by the collector while alive, so they are left alone. */

#define RT_MARK UINT32_C(0x80000000)

static int
rt_mark_visit(PyObject *op, void *arg)
{
    rt_object *self = (rt_object *)arg;
    uint32_t index;

    if (pmt_ptrmap_get(&self->objects, (uintptr_t)op, &index)) {
        (void)pmt_ptrmap_put(&self->objects, (uintptr_t)op, index | RT_MARK,
                             NULL);
    }
    return 1;
}

typedef struct {
    rt_object *self;
    uintptr_t *dead; /* malloc'd, n_dead entries */
    size_t n_dead, cap_dead;
    int failed; /* out of memory */
} rt_sweep;

static void
rt_sweep_visit(uintptr_t key, uint32_t value, void *arg)
{
    rt_sweep *sweep = (rt_sweep *)arg;

    if (value & RT_MARK) {
        return;
    }
    if (!sweep->self->types[value].reconcile) {
        return;
    }
    if (sweep->n_dead == sweep->cap_dead) {
        size_t cap = sweep->cap_dead ? sweep->cap_dead * 2 : 256;
        uintptr_t *grown = realloc(sweep->dead, cap * sizeof(uintptr_t));
        if (grown == NULL) {
            sweep->failed = 1;
            return;
        }
        sweep->dead = grown;
        sweep->cap_dead = cap;
    }
    sweep->dead[sweep->n_dead++] = key;
}

static void
rt_unmark_visit(uintptr_t key, uint32_t value, void *arg)
{
    rt_object *self = (rt_object *)arg;

    if (value & RT_MARK) {
        /* Replacing a value never moves entries: safe during the walk. */
        (void)pmt_ptrmap_put(&self->objects, key, value & ~RT_MARK, NULL);
    }
}

static void
rt_reconcile(rt_object *self)
{
    rt_sweep sweep = {self, NULL, 0, 0, 0};
    size_t i;

    if (self->objects.count == 0) {
        return;
    }
    PyUnstable_GC_VisitObjects(rt_mark_visit, self);
    pmt_ptrmap_walk(&self->objects, rt_sweep_visit, &sweep);
    pmt_ptrmap_walk(&self->objects, rt_unmark_visit, self);
    for (i = 0; i < sweep.n_dead; i++) {
        uint32_t index;
        if (pmt_ptrmap_pop(&self->objects, sweep.dead[i], &index)) {
            rt_type *type = &self->types[index];
            type->live--;
            type->destroyed++;
            self->n_del++;
            rt_put_inferred_del(self, sweep.dead[i], type);
        }
    }
    free(sweep.dead);
}

/* ---------------------------------------------------------------------- */
/* Slot checks and stopping. */

static int
rt_slot_is_ours(void)
{
    void *data = NULL;
    PyRefTracer func = PyRefTracer_GetTracer(&data);

    return func == rt_callback && data == (void *)&rt_runtime;
}

/* Note that the slot was taken (once): remember how, and write WARN:.
   Returns -1 with an exception set only on memory errors. */
static int
rt_note_displaced(rt_object *self)
{
    void *data = NULL;
    PyRefTracer func;
    PyObject *tm = NULL, *tracing = NULL;
    const char *text;
    int is_tracemalloc = 0;
    int saved_guard;
    char buf[256];

    if (self->displaced != NULL || self->phase != RT_ACTIVE ||
        rt_slot_is_ours()) {
        return 0;
    }
    func = PyRefTracer_GetTracer(&data);
    /* Ask tracemalloc whether it is the culprit (it has no C API).  Our
       own objects: not recorded. */
    saved_guard = rt_runtime.guard;
    rt_runtime.guard = 1;
    tm = PyImport_ImportModule("tracemalloc");
    if (tm != NULL) {
        tracing = PyObject_CallMethod(tm, "is_tracing", NULL);
    }
    rt_runtime.guard = saved_guard;
    if (tracing == NULL) {
        PyErr_Clear();
    }
    else {
        is_tracemalloc = PyObject_IsTrue(tracing) == 1;
    }
    Py_XDECREF(tracing);
    Py_XDECREF(tm);
    if (func == NULL) {
        text =
            "the reference tracer was removed by another tool "
            "(tracemalloc.stop() does this); events after this point "
            "were not seen";
    }
    else if (is_tracemalloc) {
        text =
            "tracemalloc took the reference tracer slot "
            "(tracemalloc.start() while tracing); events after this "
            "point were not seen";
    }
    else {
        snprintf(buf, sizeof(buf),
                 "another tool took the reference tracer slot (tracer "
                 "function at %p); events after this point were not seen",
                 (void *)func);
        text = buf;
    }
    rt_runtime.guard = 1;
    self->displaced = PyUnicode_FromString(text);
    rt_runtime.guard = saved_guard;
    if (self->displaced == NULL) {
        return -1;
    }
    if (self->writer != NULL) {
        rt_put_line_head(self, "WARN:", PMT_LOG_MAX_FIELD);
        pmt_log_escaped_whole(self->writer, text, strlen(text));
        pmt_log_char(self->writer, '\n');
        (void)pmt_log_flush(self->writer);
    }
    return 0;
}

static void
rt_writer_close(rt_object *self)
{
    pmt_logwriter *w = self->writer;
    int err;

    if (w == NULL) {
        return;
    }
    err = pmt_log_close(w);
    pmt_log_signals_uninstall();
    self->log_bytes = w->written;
    if (err != 0 && self->log_error == 0) {
        self->log_error = err;
    }
    free(w);
    self->writer = NULL;
}

/* OSError for the log's write error; -1 when one was raised. */
static int
rt_raise_log_error(rt_object *self)
{
    int err = self->log_error;

    if (err == 0 && self->writer != NULL) {
        err = pmt_log_error(self->writer);
    }
    if (err == 0) {
        return 0;
    }
    errno = err;
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->filepath);
    return -1;
}

/* The summary and EOF.  Written even when the cap was reached. */
static void
rt_write_trailer(rt_object *self, const char *why)
{
    pmt_logwriter *w = self->writer;
    size_t i;

    if (w == NULL || pmt_log_error(w) != 0) {
        return;
    }
    self->capped = 0;
    if (why != NULL) {
        rt_put_str(w, "# ");
        rt_put_str(w, why);
        pmt_log_char(w, '\n');
    }
    for (i = 0; i < self->n_types; i++) {
        const rt_type *t = &self->types[i];
        if (t->created == 0) {
            continue;
        }
        rt_put_str(w, "LIVE:\t");
        rt_put(w, t->esc_name, t->esc_len);
        pmt_log_char(w, '\t');
        pmt_log_i64(w, t->live, 0);
        pmt_log_char(w, '\t');
        pmt_log_u64(w, t->created);
        pmt_log_char(w, '\t');
        pmt_log_u64(w, t->destroyed);
        pmt_log_char(w, '\n');
    }
    rt_put_line_head(self, "END:", RT_RECORD_FIXED);
    pmt_log_u64(w, self->n_new);
    pmt_log_char(w, '\t');
    pmt_log_u64(w, self->n_del);
    pmt_log_char(w, '\t');
    pmt_log_u64(w, self->n_reused);
    pmt_log_char(w, '\t');
    pmt_log_u64(w, self->n_dropped);
    pmt_log_char(w, '\t');
    pmt_log_u64(w, self->n_inferred);
    pmt_log_char(w, '\n');
    rt_put_str(w, "EOF\n");
}

/* A MSG: record written by us (not the program) into t's log. */
static void
rt_put_own_message(rt_object *t, const char *text, PyObject *tail)
{
    if (t->simple || t->writer == NULL) {
        return;
    }
    rt_put_line_head(t, "MSG:", PMT_LOG_MAX_FIELD);
    rt_put_str(t->writer, text);
    if (tail != NULL) {
        rt_put_pystr(t->writer, tail);
    }
    pmt_log_char(t->writer, '\n');
    (void)pmt_log_flush(t->writer);
}

/* Take self off the stack.  The innermost one: the one below resumes
   (and its log says so), or, when the stack empties, the previous tracer
   goes back in the slot if the slot is still ours.  One further down (a
   tracer left out of order, e.g. from another thread): it is unlinked and
   the innermost keeps the events. */
static void
rt_unlink(rt_object *self)
{
    rt_object *t;

    if (rt_runtime.active == self) {
        rt_runtime.active = self->outer;
        if (self->outer == NULL) {
            if (rt_slot_is_ours()) {
                (void)PyRefTracer_SetTracer(rt_runtime.prev_func,
                                            rt_runtime.prev_data);
            }
            rt_runtime.prev_func = NULL;
            rt_runtime.prev_data = NULL;
            rt_runtime.str_module = NULL;
        }
        else {
            rt_put_own_message(
                self->outer,
                "# Re-attaching this Reference Tracing file wrapper.", NULL);
        }
    }
    else {
        for (t = rt_runtime.active; t != NULL; t = t->outer) {
            if (t->outer == self) {
                t->outer = self->outer;
                break;
            }
        }
    }
    self->outer = NULL;
}

/* Stop tracing: leave the stack, write the trailer, close the log.  Safe
   to call in any phase. */
static void
rt_stop(rt_object *self, const char *why)
{
    if (self->phase != RT_ACTIVE) {
        return;
    }
    rt_unlink(self);
    self->phase = RT_DONE;
    rt_cache_clear();
    rt_write_trailer(self, why);
    rt_writer_close(self);
    pmt_ptrmap_fini(&self->objects);
}

/* PyUnstable_AtExit: the interpreter is finalising with a tracer still
   active (never exited): stop it while Python is still whole. */
static void
rt_atexit(void *unused)
{
    rt_object *self;

    (void)unused;
    while ((self = rt_runtime.active) != NULL) {
        pmt_exc_t saved;
        PMT_EXC_SAVE(saved);
        (void)rt_note_displaced(self);
        PyErr_Clear();
        PMT_EXC_RESTORE(saved);
        rt_reconcile(self);
        rt_stop(self, "interpreter exit while tracing");
        /* Nobody left to raise to: one line says the log is short. */
        if (self->log_error != 0) {
            PySys_FormatStderr(
                "pymemtrace: ReferenceTracing could not write "
                "its log %R: %s\n",
                self->filepath, strerror(self->log_error));
            PyErr_Clear();
        }
        Py_DECREF(self);
    }
}

/* ---------------------------------------------------------------------- */
/* Construction. */

static void
rt_free_names(char **names, size_t n)
{
    size_t i;

    if (names == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

/* Any iterable of str -> malloc'd array of UTF-8 copies.  0, or -1 with
   an exception set. */
static int
rt_parse_names(PyObject *arg, const char *what, char ***out, size_t *n_out)
{
    PyObject *iter = NULL, *item = NULL;
    char **names = NULL;
    size_t n = 0, cap = 0;

    *out = NULL;
    *n_out = 0;
    if (arg == NULL || arg == Py_None) {
        return 0;
    }
    if (PyUnicode_Check(arg) || PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be an iterable of type names, not a single "
                     "%s (write [%R])",
                     what, Py_TYPE(arg)->tp_name, arg);
        goto error;
    }
    iter = PyObject_GetIter(arg);
    if (iter == NULL) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be an iterable of type names, not %s", what,
                     Py_TYPE(arg)->tp_name);
        goto error;
    }
    while ((item = PyIter_Next(iter)) != NULL) {
        const char *utf8;
        Py_ssize_t len;
        if (!PyUnicode_Check(item)) {
            PyErr_Format(PyExc_TypeError,
                         "%s must hold type names (str), not %s", what,
                         Py_TYPE(item)->tp_name);
            goto error;
        }
        utf8 = PyUnicode_AsUTF8AndSize(item, &len);
        if (utf8 == NULL) {
            goto error;
        }
        if (n == cap) {
            size_t new_cap = cap ? cap * 2 : 8;
            char **grown = realloc(names, new_cap * sizeof(char *));
            if (grown == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            names = grown;
            cap = new_cap;
        }
        names[n] = malloc((size_t)len + 1);
        if (names[n] == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        memcpy(names[n], utf8, (size_t)len + 1);
        n++;
        Py_CLEAR(item);
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(iter);
    if (names == NULL) {
        /* An empty list: keep a non-NULL array so "include nothing" is
           distinguishable from "no include list". */
        names = malloc(sizeof(char *));
        if (names == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    *out = names;
    *n_out = n;
    return 0;
error:
    Py_XDECREF(item);
    Py_XDECREF(iter);
    rt_free_names(names, n);
    return -1;
}

/* ReferenceTracing objects (simple ones: ReferenceTracingSimple) on the
   stack. */
static unsigned long
rt_stack_count(int simple)
{
    unsigned long n = 0;
    rt_object *t;

    for (t = rt_runtime.active; t != NULL; t = t->outer) {
        n += (t->simple != 0) == (simple != 0);
    }
    return n;
}

/* YYYYMMDD_HHMMSS_<ordinal>_<pid>_O_<depth>_PY<version>.log, depth being
   the ReferenceTracing objects active below this one. */
static PyObject *
rt_default_path(unsigned long depth)
{
    time_t now = time(NULL);
    struct tm utc;
    char stamp[32];

    gmtime_r(&now, &utc);
    strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &utc);
    return PyUnicode_FromFormat("%s_%lu_%ld_O_%lu_PY%s.log", stamp,
                                rt_runtime.n_started, (long)getpid(), depth,
                                PY_VERSION);
}

static PyObject *
rt_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "message",          "filepath",         "include_builtins",
        "exclude_tp_names", "include_tp_names", "gc_collect_on_exit",
        "max_objects",      "max_log_bytes",    NULL};
    PyObject *message = Py_None, *filepath = Py_None;
    PyObject *exclude = Py_None, *include = Py_None;
    int include_builtins = 0, gc_collect_on_exit = 2;
    Py_ssize_t max_objects = 4000000, max_log_bytes = 0;
    rt_object *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "|OOpOOi$nn:ReferenceTracing", kwlist, &message,
            &filepath, &include_builtins, &exclude, &include,
            &gc_collect_on_exit, &max_objects, &max_log_bytes)) {
        return NULL;
    }
    if (message != Py_None && !PyUnicode_Check(message)) {
        PyErr_Format(PyExc_TypeError, "message must be str or None, not %s",
                     Py_TYPE(message)->tp_name);
        return NULL;
    }
    if (gc_collect_on_exit < -1 || gc_collect_on_exit > 2) {
        PyErr_Format(PyExc_ValueError,
                     "gc_collect_on_exit must be -1 (no collection) or the "
                     "generation 0, 1 or 2 given to gc.collect(), not %d",
                     gc_collect_on_exit);
        return NULL;
    }
    if (max_objects < 1 || max_log_bytes < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "max_log_bytes must be >= 0, max_objects >= 1");
        return NULL;
    }
    self = (rt_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->include_builtins = include_builtins;
    self->gc_collect_on_exit = gc_collect_on_exit;
    self->max_objects = (size_t)max_objects;
    if (message != Py_None) {
        self->message = Py_NewRef(message);
    }
    if (filepath == Py_None) {
        /* Provisional: named again at enter, at its depth. */
        self->default_path = 1;
        self->filepath = rt_default_path(rt_stack_count(0));
    }
    else {
        PyObject *path = PyOS_FSPath(filepath);
        if (path != NULL && !PyUnicode_Check(path)) {
            Py_SETREF(path,
                      PyUnicode_DecodeFSDefaultAndSize(
                          PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path)));
        }
        self->filepath = path;
    }
    if (self->filepath == NULL) {
        goto error;
    }
    if (rt_parse_names(exclude, "exclude_tp_names", &self->exclude_names,
                       &self->n_exclude) < 0) {
        goto error;
    }
    if (rt_parse_names(include, "include_tp_names", &self->include_names,
                       &self->n_include) < 0) {
        goto error;
    }
    self->max_log_bytes = (uint64_t)max_log_bytes;
    return (PyObject *)self;
error:
    Py_DECREF(self);
    return NULL;
}

static int
rt_traverse(rt_object *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->message);
    Py_VISIT(self->filepath);
    Py_VISIT(self->displaced);
    return 0;
}

static int
rt_clear(rt_object *self)
{
    Py_CLEAR(self->message);
    Py_CLEAR(self->filepath);
    Py_CLEAR(self->displaced);
    return 0;
}

static void
rt_dealloc(rt_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    size_t i;

    PyObject_GC_UnTrack(self);
    /* An active tracer holds a reference to itself, so it cannot get here
       while active; close whatever is left all the same. */
    rt_writer_close(self);
    pmt_ptrmap_fini(&self->objects);
    pmt_ptrmap_fini(&self->type_index);
    for (i = 0; i < self->n_types; i++) {
        free(self->types[i].name);
        free(self->types[i].esc_name);
    }
    free(self->types);
    rt_free_names(self->include_names, self->n_include);
    rt_free_names(self->exclude_names, self->n_exclude);
    (void)rt_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---------------------------------------------------------------------- */
/* Methods. */

static int
rt_write_header(rt_object *self)
{
    pmt_logwriter *w = self->writer;
    size_t i;

    if (self->message != NULL) {
        rt_put_pystr(w, self->message);
        pmt_log_char(w, '\n');
    }
    rt_put_str(w, "SOF\n# pymemtrace ReferenceTracing log, format 1\n");
    rt_put_str(w, "# python: " PY_VERSION "\n# pid: ");
    pmt_log_u64(w, (uint64_t)getpid());
    rt_put_str(w, "\n# depth: ");
    pmt_log_u64(w, (uint64_t)self->depth);
    rt_put_str(w, "\n# include_builtins: ");
    rt_put_str(w, self->include_builtins ? "True" : "False");
    rt_put_str(w, "\n# include_tp_names:");
    if (self->include_names == NULL) {
        rt_put_str(w, " None");
    }
    for (i = 0; i < self->n_include; i++) {
        pmt_log_char(w, ' ');
        pmt_log_escaped_whole(w, self->include_names[i],
                              strlen(self->include_names[i]));
    }
    rt_put_str(w, "\n# exclude_tp_names:");
    for (i = 0; i < self->n_exclude; i++) {
        pmt_log_char(w, ' ');
        pmt_log_escaped_whole(w, self->exclude_names[i],
                              strlen(self->exclude_names[i]));
    }
    if (Py_Version < 0x030D03F0) {
        /* gh-130382, fixed in 3.13.3. */
        rt_put_str(w,
                   "\n# warning: this CPython does not report objects "
                   "freed by the eval loop itself (gh-130382, fixed in "
                   "3.13.3): their DEL: records are inferred (File "
                   "<inferred>) at address reuse and, for instances of "
                   "classes, at exit; builtin types may show as live "
                   "after they are gone");
    }
    rt_put_str(w, "\n# previous_tracer: ");
    rt_put_str(w, rt_runtime.prev_func != NULL ? "chained" : "none");
    rt_put_str(w,
               "\nHDR:\tEvent\tClock\tAddress\tType\tLive\tFile\t#line"
               "\tFunction\n");
    return 0;
}

/* Open the log of a (not simple) tracer entering at depth: writer, tables,
   clock.  0, or -1 with an exception set and nothing left open. */
static int
rt_open_log(rt_object *self, unsigned long depth)
{
    PyObject *path_bytes = NULL;
    pmt_logwriter *w = NULL;
    int attempt, err;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    /* A name we made never opens an existing file or a planted symbolic
       link (a shared working directory): the next name is taken instead. */
    for (attempt = 0;; attempt++) {
        if (self->default_path) {
            PyObject *path = rt_default_path(depth);
            if (path == NULL) {
                goto error;
            }
            Py_SETREF(self->filepath, path);
        }
        if (!PyUnicode_FSConverter(self->filepath, &path_bytes)) {
            goto error;
        }
        err = pmt_log_open(w, PyBytes_AS_STRING(path_bytes), 0,
                           self->default_path ? PMT_LOG_NEW_FILE : 0);
        Py_CLEAR(path_bytes);
        if (!(self->default_path && err == EEXIST && attempt < 100)) {
            break;
        }
        rt_runtime.n_started++;
    }
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, self->filepath);
        goto error;
    }
    if (pmt_ptrmap_init(&self->objects, 1024, self->max_objects) != 0 ||
        (self->type_index.slots == NULL &&
         pmt_ptrmap_init(&self->type_index, 256, 0) != 0)) {
        pmt_ptrmap_fini(&self->objects);
        (void)pmt_log_close(w);
        PyErr_NoMemory();
        goto error;
    }
    pmt_log_set_signal_tail(w, rt_signal_tail);
    pmt_log_signals_install();
    self->writer = w;
    return 0;
error:
    free(w);
    return -1;
}

static PyObject *
rt_enter(rt_object *self, PyObject *Py_UNUSED(ignored))
{
    pmt_state *state;
    rt_object *outer = rt_runtime.active;

    if (self->phase != RT_CREATED) {
        PyErr_Format(PyExc_RuntimeError,
                     "this %s was already used; create a new one for each "
                     "with block",
                     self->simple ? "ReferenceTracingSimple"
                                  : "ReferenceTracing");
        return NULL;
    }
    state = pmt_state_from_type(Py_TYPE(self));
    if (state == NULL) {
        return NULL;
    }
    if (!rt_runtime.atexit_registered) {
        if (PyUnstable_AtExit(PyInterpreterState_Get(), rt_atexit, NULL) < 0) {
            return NULL;
        }
        rt_runtime.atexit_registered = 1;
    }
    self->depth = rt_stack_count(0);
    if (!self->simple && rt_open_log(self, self->depth) < 0) {
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &self->t0);
    if (outer == NULL) {
        rt_runtime.prev_func = PyRefTracer_GetTracer(&rt_runtime.prev_data);
        rt_runtime.str_module = state->reftrace_str_module;
    }
    if (!self->simple) {
        rt_runtime.n_started++;
        rt_write_header(self);
        /* The header is on disk before the block runs: a log that cannot
           be written (a full disk) is refused here, not found empty. */
        if (pmt_log_flush(self->writer) != 0) {
            rt_writer_close(self);
            pmt_ptrmap_fini(&self->objects);
            if (outer == NULL) {
                rt_runtime.prev_func = NULL;
                rt_runtime.prev_data = NULL;
                rt_runtime.str_module = NULL;
            }
            (void)rt_raise_log_error(self);
            self->log_error = 0;
            return NULL;
        }
    }
    /* The tracer below is suspended from here on: say so in its log. */
    if (outer != NULL) {
        if (self->simple) {
            rt_put_own_message(outer,
                               "# Detaching this Reference Tracing file "
                               "wrapper. New tracer: ReferenceTracingSimple",
                               NULL);
        }
        else {
            rt_put_own_message(outer,
                               "# Detaching this Reference Tracing file "
                               "wrapper. New file: ",
                               self->filepath);
        }
    }
    /* Everything is ready: push, and take the slot last (the stack below
       already holds it, unless another tool took it meanwhile: then it is
       left to that tool and the next check point reports it). */
    self->phase = RT_ACTIVE;
    self->outer = outer;
    rt_runtime.active = (rt_object *)Py_NewRef(self);
    if (outer == NULL && PyRefTracer_SetTracer(rt_callback, &rt_runtime) < 0) {
        rt_stop(self, "could not install the reference tracer");
        Py_DECREF(self);
        return NULL;
    }
    return Py_NewRef(self);
}

static PyObject *
rt_exit(rt_object *self, PyObject *args)
{
    if (self->phase != RT_ACTIVE) {
        Py_RETURN_FALSE;
    }
    /* Collect while we still trace, so garbage cycles show as DEL:.
       gc.collect(generation) rather than PyGC_Collect(): it runs even when
       the program disabled automatic collection.  -1: no collection. */
    if (!self->simple && self->gc_collect_on_exit >= 0) {
        PyObject *gc, *r = NULL;
        /* Importing is our doing, not the program's: do not record it. */
        rt_runtime.guard = 1;
        gc = PyImport_ImportModule("gc");
        rt_runtime.guard = 0;
        if (gc != NULL) {
            r = PyObject_CallMethod(gc, "collect", "i",
                                    self->gc_collect_on_exit);
        }
        Py_XDECREF(r);
        Py_XDECREF(gc);
        /* A failure here must not keep the tracer installed. */
        PyErr_Clear();
    }
    if (rt_note_displaced(self) < 0) {
        PyErr_Clear();
    }
    rt_reconcile(self);
    rt_stop(self, NULL);
    /* The reference the active tracer held on itself. */
    Py_DECREF(self);
    if (rt_raise_log_error(self) < 0) {
        return NULL;
    }
    if (self->displaced != NULL) {
        int rc = self->simple
                     ? PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                                        "ReferenceTracingSimple: %U",
                                        self->displaced)
                     : PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                                        "ReferenceTracing(%R): %U",
                                        self->filepath, self->displaced);
        if (rc < 0) {
            return NULL;
        }
    }
    Py_RETURN_FALSE;
}

PyDoc_STRVAR(rt_count_new_doc,
             "count_new() -> int\n"
             "\n"
             "Objects created while this tracer received the events: every\n"
             "one for ReferenceTracingSimple, the recorded ones (NEW:) for\n"
             "ReferenceTracing.  Still readable after exit.");

static PyObject *
rt_count_new(rt_object *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(self->n_new);
}

PyDoc_STRVAR(rt_count_del_doc,
             "count_del() -> int\n"
             "\n"
             "Objects destroyed while this tracer received the events: every\n"
             "one for ReferenceTracingSimple, the recorded ones (DEL:) for\n"
             "ReferenceTracing.  Still readable after exit.");

static PyObject *
rt_count_del(rt_object *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(self->n_del);
}

PyDoc_STRVAR(
    rt_live_doc,
    "live_object_counts() -> dict[str, int]\n"
    "\n"
    "{type name: count} of the recorded objects created while tracing and\n"
    "not destroyed yet (after exit: not destroyed before tracing stopped).");

static PyObject *
rt_live_object_counts(rt_object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result = NULL, *key = NULL, *value = NULL;
    size_t i;
    int saved_guard = rt_runtime.guard;

    if (self->phase == RT_ACTIVE) {
        if (rt_note_displaced(self) < 0) {
            return NULL;
        }
        rt_reconcile(self);
    }
    /* Objects made here are ours: do not trace them (and keep the type
       array from growing under the loop). */
    rt_runtime.guard = 1;
    result = PyDict_New();
    if (result == NULL) {
        goto error;
    }
    for (i = 0; i < self->n_types; i++) {
        const rt_type *t = &self->types[i];
        PyObject *old = NULL;
        int64_t total = t->live;
        int rc;
        if (t->live <= 0) {
            continue;
        }
        key =
            PyUnicode_DecodeUTF8(t->name, (Py_ssize_t)t->name_len, "replace");
        if (key == NULL) {
            goto error;
        }
        /* Two types may share a name (a class defined twice). */
        rc = PyDict_GetItemRef(result, key, &old);
        if (rc < 0) {
            goto error;
        }
        if (rc == 1) {
            total += PyLong_AsLongLong(old);
            Py_DECREF(old);
        }
        value = PyLong_FromLongLong(total);
        if (value == NULL || PyDict_SetItem(result, key, value) < 0) {
            goto error;
        }
        Py_CLEAR(key);
        Py_CLEAR(value);
    }
    rt_runtime.guard = saved_guard;
    return result;
error:
    rt_runtime.guard = saved_guard;
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(result);
    return NULL;
}

PyDoc_STRVAR(rt_log_path_doc,
             "log_file_path() -> str\n"
             "\n"
             "The path of this tracer's log file.");

static PyObject *
rt_log_file_path(rt_object *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->filepath);
}

PyDoc_STRVAR(
    rt_write_msg_doc,
    "write_message_to_log(message: str) -> None\n"
    "\n"
    "Write a MSG: record (one line; newlines are escaped) to this tracer's\n"
    "log.  Only while tracing.");

static PyObject *
rt_write_message_to_log(rt_object *self, PyObject *message)
{
    if (!PyUnicode_Check(message)) {
        PyErr_Format(PyExc_TypeError, "message must be str, not %s",
                     Py_TYPE(message)->tp_name);
        return NULL;
    }
    if (self->phase != RT_ACTIVE || self->writer == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "write_message_to_log() needs an active "
                        "ReferenceTracing (inside its with block)");
        return NULL;
    }
    if (rt_note_displaced(self) < 0) {
        return NULL;
    }
    rt_put_line_head(self, "MSG:", PMT_LOG_MAX_FIELD);
    rt_put_pystr(self->writer, message);
    pmt_log_char(self->writer, '\n');
    (void)pmt_log_flush(self->writer);
    if (rt_raise_log_error(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(
    rt_stats_doc,
    "stats() -> dict[str, int]\n"
    "\n"
    "Counters: events (every create/destroy seen), new and del (records),\n"
    "reused (an address recorded twice without a destroy in between),\n"
    "dropped (objects not tracked: max_objects reached), unknown_location\n"
    "(records without a Python frame), inferred_del (DEL: records for objects\n"
    "freed without a DESTROY event), log_bytes.");

static PyObject *
rt_stats(rt_object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result;
    int saved_guard = rt_runtime.guard;
    uint64_t log_bytes = self->log_bytes;

    if (self->writer != NULL) {
        log_bytes = self->writer->written + self->writer->len;
    }
    rt_runtime.guard = 1;
    result = Py_BuildValue(
        "{sKsKsKsKsKsKsKsK}", "events", (unsigned long long)self->events,
        "new", (unsigned long long)self->n_new, "del",
        (unsigned long long)self->n_del, "reused",
        (unsigned long long)self->n_reused, "dropped",
        (unsigned long long)self->n_dropped, "unknown_location",
        (unsigned long long)self->n_unknown_loc, "inferred_del",
        (unsigned long long)self->n_inferred, "log_bytes",
        (unsigned long long)log_bytes);
    rt_runtime.guard = saved_guard;
    return result;
}

static PyObject *
rt_get_displaced(rt_object *self, void *Py_UNUSED(closure))
{
    if (self->phase == RT_ACTIVE && rt_note_displaced(self) < 0) {
        return NULL;
    }
    if (self->displaced == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef(self->displaced);
}

static PyObject *
rt_get_active(rt_object *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->phase == RT_ACTIVE);
}

static PyObject *
rt_get_message(rt_object *self, void *Py_UNUSED(closure))
{
    if (self->message == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef(self->message);
}

static PyMethodDef rt_methods[] = {
    {"__enter__", (PyCFunction)rt_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)rt_exit, METH_VARARGS, NULL},
    {"live_object_counts", (PyCFunction)rt_live_object_counts, METH_NOARGS,
     rt_live_doc},
    {"log_file_path", (PyCFunction)rt_log_file_path, METH_NOARGS,
     rt_log_path_doc},
    {"write_message_to_log", (PyCFunction)rt_write_message_to_log, METH_O,
     rt_write_msg_doc},
    {"stats", (PyCFunction)rt_stats, METH_NOARGS, rt_stats_doc},
    {"count_new", (PyCFunction)rt_count_new, METH_NOARGS, rt_count_new_doc},
    {"count_del", (PyCFunction)rt_count_del, METH_NOARGS, rt_count_del_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef rt_getset[] = {
    {"tracer_displaced", (getter)rt_get_displaced, NULL,
     "None, or how another tool took the reference tracer slot while this "
     "tracer ran (records after that point are missing)",
     NULL},
    {"active", (getter)rt_get_active, NULL, "True inside the with block",
     NULL},
    {"message", (getter)rt_get_message, NULL, "the message= given", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef rt_members[] = {
    {"include_builtins", Py_T_BOOL, offsetof(rt_object, include_builtins),
     Py_READONLY, NULL},
    {"gc_collect_on_exit", Py_T_INT, offsetof(rt_object, gc_collect_on_exit),
     Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot rt_slots[] = {
    {Py_tp_doc, (void *)reftrace_doc},
    {Py_tp_new, rt_new},
    {Py_tp_dealloc, rt_dealloc},
    {Py_tp_traverse, rt_traverse},
    {Py_tp_clear, rt_clear},
    {Py_tp_methods, rt_methods},
    {Py_tp_getset, rt_getset},
    {Py_tp_members, rt_members},
    {0, NULL},
};

static PyType_Spec rt_spec = {
    .name = "pymemtrace._native.ReferenceTracing",
    .basicsize = sizeof(rt_object),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rt_slots,
};

/* ReferenceTracingSimple: the same object with simple set; it shares the
   stack (and the slot) with ReferenceTracing. */
static PyObject *
rt_simple_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    rt_object *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":ReferenceTracingSimple",
                                     kwlist)) {
        return NULL;
    }
    self = (rt_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->simple = 1;
    self->gc_collect_on_exit = -1;
    return (PyObject *)self;
}

static PyMethodDef rt_simple_methods[] = {
    {"__enter__", (PyCFunction)rt_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)rt_exit, METH_VARARGS, NULL},
    {"count_new", (PyCFunction)rt_count_new, METH_NOARGS, rt_count_new_doc},
    {"count_del", (PyCFunction)rt_count_del, METH_NOARGS, rt_count_del_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef rt_simple_getset[] = {
    {"active", (getter)rt_get_active, NULL, "True inside the with block",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot rt_simple_slots[] = {
    {Py_tp_doc, (void *)reftrace_simple_doc},
    {Py_tp_new, rt_simple_new},
    {Py_tp_dealloc, rt_dealloc},
    {Py_tp_traverse, rt_traverse},
    {Py_tp_clear, rt_clear},
    {Py_tp_methods, rt_simple_methods},
    {Py_tp_getset, rt_simple_getset},
    {0, NULL},
};

static PyType_Spec rt_simple_spec = {
    .name = "pymemtrace._native.ReferenceTracingSimple",
    .basicsize = sizeof(rt_object),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rt_simple_slots,
};

PyDoc_STRVAR(
    rt_slot_doc,
    "_reftrace_slot() -> tuple[int, bool] | None\n"
    "\n"
    "For tests: (address of the installed reference tracer function, whether\n"
    "it is ReferenceTracing's), or None when the slot is empty.");

static PyObject *
rt_reftrace_slot(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    void *data = NULL;
    PyRefTracer func = PyRefTracer_GetTracer(&data);

    if (func == NULL) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NO)", PyLong_FromVoidPtr((void *)func),
                         rt_slot_is_ours() ? Py_True : Py_False);
}

PyDoc_STRVAR(
    rt_stack_doc,
    "_reftrace_stack() -> list\n"
    "\n"
    "The active ReferenceTracing and ReferenceTracingSimple objects, the\n"
    "bottom of the stack first, the one receiving the events last.");

static PyObject *
rt_reftrace_stack(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    PyObject *result;
    rt_object *t;
    Py_ssize_t n = 0, i;
    int saved_guard = rt_runtime.guard;

    for (t = rt_runtime.active; t != NULL; t = t->outer) {
        n++;
    }
    /* Our own list: not the program's object. */
    rt_runtime.guard = 1;
    result = PyList_New(n);
    rt_runtime.guard = saved_guard;
    if (result == NULL) {
        return NULL;
    }
    for (t = rt_runtime.active, i = n - 1; t != NULL; t = t->outer, i--) {
        PyList_SET_ITEM(result, i, Py_NewRef((PyObject *)t));
    }
    return result;
}

static PyMethodDef rt_functions[] = {
    {"_reftrace_slot", rt_reftrace_slot, METH_NOARGS, rt_slot_doc},
    {"_reftrace_stack", rt_reftrace_stack, METH_NOARGS, rt_stack_doc},
    {NULL, NULL, 0, NULL},
};

void
pmt_reftrace_shutdown(void)
{
    rt_object *self;

    while ((self = rt_runtime.active) != NULL) {
        rt_stop(self, "module unloaded while tracing");
        Py_DECREF(self);
    }
}

int
pmt_reftrace_exec(PyObject *module)
{
    pmt_state *state = pmt_get_state(module);

    state->reftrace_str_module = PyUnicode_InternFromString("__module__");
    if (state->reftrace_str_module == NULL) {
        return -1;
    }
    state->reftrace_type = PyType_FromModuleAndSpec(module, &rt_spec, NULL);
    if (state->reftrace_type == NULL) {
        return -1;
    }
    state->reftrace_simple_type =
        PyType_FromModuleAndSpec(module, &rt_simple_spec, NULL);
    if (state->reftrace_simple_type == NULL) {
        return -1;
    }
    if (PyModule_AddFunctions(module, rt_functions) < 0) {
        return -1;
    }
    if (PyModule_AddType(module, (PyTypeObject *)state->reftrace_simple_type) <
        0) {
        return -1;
    }
    return PyModule_AddType(module, (PyTypeObject *)state->reftrace_type);
}

#else /* !PMT_PY313_PLUS */

/* Before 3.13 there is no PyRefTracer: the type exists (so imports and
   isinstance work everywhere) and constructing it says what is needed. */

typedef struct {
    PyObject_HEAD
} rt_object;

static PyObject *
rt_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *version = NULL;
    const char *full = Py_GetVersion();
    const char *space = strchr(full, ' ');
    const char *name = strrchr(type->tp_name, '.');

    version = PyUnicode_FromStringAndSize(
        full, space ? (Py_ssize_t)(space - full) : (Py_ssize_t)strlen(full));
    if (version == NULL) {
        return NULL;
    }
    PyErr_Format(PyExc_RuntimeError, RT_NOT_SUPPORTED_FMT,
                 name != NULL ? name + 1 : type->tp_name,
                 PyUnicode_AsUTF8(version));
    Py_DECREF(version);
    return NULL;
}

static void
rt_dealloc(rt_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyType_Slot rt_slots[] = {
    {Py_tp_doc, (void *)reftrace_doc},
    {Py_tp_new, rt_new},
    {Py_tp_dealloc, rt_dealloc},
    {0, NULL},
};

static PyType_Spec rt_spec = {
    .name = "pymemtrace._native.ReferenceTracing",
    .basicsize = sizeof(rt_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rt_slots,
};

static PyType_Slot rt_simple_slots[] = {
    {Py_tp_doc, (void *)reftrace_simple_doc},
    {Py_tp_new, rt_new},
    {Py_tp_dealloc, rt_dealloc},
    {0, NULL},
};

static PyType_Spec rt_simple_spec = {
    .name = "pymemtrace._native.ReferenceTracingSimple",
    .basicsize = sizeof(rt_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rt_simple_slots,
};

PyDoc_STRVAR(
    rt_stack_doc,
    "_reftrace_stack() -> list\n"
    "\n"
    "The active ReferenceTracing and ReferenceTracingSimple objects: always\n"
    "empty before CPython 3.13.");

static PyObject *
rt_reftrace_stack(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyList_New(0);
}

static PyMethodDef rt_functions[] = {
    {"_reftrace_stack", rt_reftrace_stack, METH_NOARGS, rt_stack_doc},
    {NULL, NULL, 0, NULL},
};

void
pmt_reftrace_shutdown(void)
{
}

int
pmt_reftrace_exec(PyObject *module)
{
    pmt_state *state = pmt_get_state(module);

    state->reftrace_type = PyType_FromModuleAndSpec(module, &rt_spec, NULL);
    if (state->reftrace_type == NULL) {
        return -1;
    }
    state->reftrace_simple_type =
        PyType_FromModuleAndSpec(module, &rt_simple_spec, NULL);
    if (state->reftrace_simple_type == NULL) {
        return -1;
    }
    if (PyModule_AddFunctions(module, rt_functions) < 0) {
        return -1;
    }
    if (PyModule_AddType(module, (PyTypeObject *)state->reftrace_simple_type) <
        0) {
        return -1;
    }
    return PyModule_AddType(module, (PyTypeObject *)state->reftrace_type);
}

#endif /* PMT_PY313_PLUS */
