/*
 * core/logwriter.h - a buffered, append-only log file for the tracers.
 *
 * Pure C (no Python.h).  Records are formatted straight into a fixed C
 * buffer (PMT_LOG_BUFSIZE bytes), no stdio.  A full buffer is handed to a
 * writer thread of this log (started when the first buffer fills, so a
 * short log never starts one) and the next free buffer is taken; the
 * traced thread waits only when all PMT_LOG_NBUF buffers are queued, which
 * bounds memory.
 *
 * Every open writer is also listed in a small process-wide registry so that
 * pmt_log_flush_all_signal_safe() can push the buffered bytes out from a
 * fatal-signal handler (write(2) only: async-signal-safe) and at exit.
 *
 * Threading: a writer is used by one tracer, whose hooks run with the GIL
 * held; the mutex (lock/unlock below) makes each record atomic even where
 * hooks of several threads could interleave.  The registry is an array of
 * atomics.  The signal-time flush takes no lock (it cannot); it writes the
 * buffer being filled only up to its last newline, so a record being
 * formatted at that very moment is left out rather than cut short.
 *
 * Whole records only.  Each buffer is written at its own file offset
 * (pwrite: the signal-time flush may write a buffer the writer thread is
 * writing too, and the same bytes land on the same place), and a write
 * that fails half-way (a full disk) cuts the file back to the last newline
 * written and stops the log: the file never ends inside a record, and a
 * failed log reports its errno (pmt_log_error, pmt_log_close).
 */
#ifndef PMT_CORE_LOGWRITER_H
#define PMT_CORE_LOGWRITER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define PMT_LOG_BUFSIZE (512 * 1024)
/* Buffers per log: one being filled, the others queued for the writer
   thread.  Memory per open log is bounded by PMT_LOG_NBUF buffers. */
#define PMT_LOG_NBUF 4
/* The longest piece appended in one go must fit: longer strings are cut. */
#define PMT_LOG_MAX_FIELD 4096

typedef struct pmt_logwriter {
    int fd;     /* -1 when closed */
    char *buf;  /* the buffer being filled (one of bufs) */
    size_t len; /* bytes in buf */
    int cur;    /* index of buf in bufs */
    char *bufs[PMT_LOG_NBUF];
    uint64_t written;      /* bytes written or queued so far */
    uint64_t max_bytes;    /* cap on the file size, 0 = none */
    int error;             /* first errno of a failed write, 0 = none */
    int registry_slot;     /* index in the registry, -1 if not listed */
    int forked;            /* inherited by a fork()ed child: write nothing */
    pthread_mutex_t mutex; /* serialises records (the hooks' side) */
    /* The background writer, started when the first buffer fills: full
       buffers go to it, so the kernel's copy of the data runs off the
       traced thread.  Fields below protected by qmutex. */
    pthread_mutex_t qmutex;
    pthread_cond_t qcond;        /* queue changed (either direction) */
    int queue[PMT_LOG_NBUF];     /* buffer indices, in file order */
    size_t qlen[PMT_LOG_NBUF];   /* their byte counts */
    uint64_t qoff[PMT_LOG_NBUF]; /* their file offsets */
    int qhead, qcount;
    int busy; /* the writer is writing a popped buffer */
    int thread_started, stop;
    pthread_t thread;
    int seekable; /* pwrite at offsets works (not a pipe or a tty) */
    /* Written after the buffers by the fatal-signal flush, or NULL
       (pmt_log_set_signal_tail). */
    const char *signal_tail;
} pmt_logwriter;

/* pmt_log_open's flags. */
enum {
    /* A new file only: never an existing file, never through a symbolic
       link (O_EXCL | O_NOFOLLOW): EEXIST when the name is taken. */
    PMT_LOG_NEW_FILE = 1
};
/* Open path for writing (truncating, unless PMT_LOG_NEW_FILE).  0 on
   success, else an errno value; on failure nothing stays open. */
int pmt_log_open(pmt_logwriter *w, const char *path, uint64_t max_bytes,
                 int flags);
/* Flush and close; returns the first write error seen (errno) or 0. */
int pmt_log_close(pmt_logwriter *w);
/* Write the buffer out; returns 0 or an errno value. */
int pmt_log_flush(pmt_logwriter *w);

/* The first write error (errno) seen so far, 0 if none.  Set by the
   writer thread: read without its lock, for a hook's "stop writing". */
static inline int
pmt_log_error(const pmt_logwriter *w)
{
    return __atomic_load_n(&w->error, __ATOMIC_RELAXED);
}

/* A static line (ending in a newline) the fatal-signal flush writes after
   this log's buffers, so the file says why it ends there; NULL: none. */
static inline void
pmt_log_set_signal_tail(pmt_logwriter *w, const char *tail)
{
    w->signal_tail = tail;
}

static inline void
pmt_log_lock(pmt_logwriter *w)
{
    pthread_mutex_lock(&w->mutex);
}

static inline void
pmt_log_unlock(pmt_logwriter *w)
{
    pthread_mutex_unlock(&w->mutex);
}

/* Make room for n more bytes (n <= PMT_LOG_BUFSIZE / 2). */
void pmt_log_reserve_slow(pmt_logwriter *w, size_t n);

static inline char *
pmt_log_reserve(pmt_logwriter *w, size_t n)
{
    if (w->len + n > PMT_LOG_BUFSIZE) {
        pmt_log_reserve_slow(w, n);
    }
    return w->buf + w->len;
}

/* Copy of a short piece (names, numbers): 8-byte moves, with the last
   one overlapping, beat the string instructions the compiler would pick
   for a variable length (their start-up cost dominates below ~100 bytes). */
static inline void
pmt_copy_short(char *dst, const char *src, size_t n)
{
    if (n >= 8) {
        size_t i;
        for (i = 0; i + 8 <= n; i += 8) {
            __builtin_memcpy(dst + i, src + i, 8);
        }
        __builtin_memcpy(dst + n - 8, src + n - 8, 8);
        return;
    }
    if (n >= 4) {
        __builtin_memcpy(dst, src, 4);
        __builtin_memcpy(dst + n - 4, src + n - 4, 4);
        return;
    }
    while (n--) {
        *dst++ = *src++;
    }
}

static inline void
pmt_log_bytes(pmt_logwriter *w, const char *s, size_t n)
{
    char *p;
    if (n > PMT_LOG_MAX_FIELD) {
        n = PMT_LOG_MAX_FIELD;
    }
    p = pmt_log_reserve(w, n);
    if (n <= 256) {
        pmt_copy_short(p, s, n);
    }
    else {
        __builtin_memcpy(p, s, n);
    }
    w->len += n;
}

static inline void
pmt_log_cstr(pmt_logwriter *w, const char *s)
{
    pmt_log_bytes(w, s, __builtin_strlen(s));
}

static inline void
pmt_log_char(pmt_logwriter *w, char c)
{
    char *p = pmt_log_reserve(w, 1);
    *p = c;
    w->len++;
}

/* "00" "01" ... "99": two digits per division when formatting. */
extern const char pmt_digit_pairs[201];

/* Digits of v written backwards ending at end; returns the first. */
static inline char *
pmt_format_u64(char *end, uint64_t v)
{
    char *p = end;
    while (v >= 100) {
        unsigned pair = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        __builtin_memcpy(p, pmt_digit_pairs + 2 * pair, 2);
    }
    if (v >= 10) {
        p -= 2;
        __builtin_memcpy(p, pmt_digit_pairs + 2 * v, 2);
    }
    else {
        *--p = (char)('0' + v);
    }
    return p;
}

/* Decimal integer. */
static inline void
pmt_log_u64(pmt_logwriter *w, uint64_t v)
{
    char tmp[24];
    char *start = pmt_format_u64(tmp + sizeof(tmp), v);
    pmt_log_bytes(w, start, (size_t)(tmp + sizeof(tmp) - start));
}

/* Signed decimal; with plus, a leading '+' for values >= 0. */
static inline void
pmt_log_i64(pmt_logwriter *w, int64_t v, int plus)
{
    char tmp[24];
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *start = pmt_format_u64(tmp + sizeof(tmp), mag);

    if (v < 0) {
        *--start = '-';
    }
    else if (plus) {
        *--start = '+';
    }
    pmt_log_bytes(w, start, (size_t)(tmp + sizeof(tmp) - start));
}

/* ---- formatting at a pointer ---------------------------------------------
 * The record writers reserve room for a whole record once
 * (pmt_log_reserve), format every field at a local pointer with the
 * helpers below and commit the length once (pmt_log_commit): the length
 * is not reloaded and stored around every field, and no field does its
 * own bounds check.  Each returns the pointer past what it wrote. */

/* Decimal digits of v (1..20). */
static inline int
pmt_u64_digits(uint64_t v)
{
    int n = 1;
    while (v >= 10000) {
        v /= 10000;
        n += 4;
    }
    if (v >= 10) {
        n++;
        if (v >= 100) {
            n++;
            if (v >= 1000) {
                n++;
            }
        }
    }
    return n;
}

static inline char *
pmt_put_u64(char *p, uint64_t v)
{
    if (v < 10) {
        *p = (char)('0' + v);
        return p + 1;
    }
    p += pmt_u64_digits(v);
    (void)pmt_format_u64(p, v);
    return p;
}

/* Signed decimal; with plus, a leading '+' for values >= 0. */
static inline char *
pmt_put_i64(char *p, int64_t v, int plus)
{
    if (v < 0) {
        *p++ = '-';
        return pmt_put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    if (plus) {
        *p++ = '+';
    }
    return pmt_put_u64(p, (uint64_t)v);
}

static inline char *
pmt_put_bytes(char *p, const char *s, size_t n)
{
    if (n <= 256) {
        pmt_copy_short(p, s, n);
    }
    else {
        __builtin_memcpy(p, s, n);
    }
    return p + n;
}

/* Seconds with six decimals (%.6f, rounded to the microsecond) from
   nanoseconds: integer seconds, '.', three digit pairs. */
static inline char *
pmt_put_seconds(char *p, uint64_t ns)
{
    uint64_t us = (ns + 500) / 1000;
    uint32_t frac = (uint32_t)(us % 1000000);
    uint32_t hi = frac / 10000, lo = frac % 10000;

    p = pmt_put_u64(p, us / 1000000);
    *p++ = '.';
    __builtin_memcpy(p, pmt_digit_pairs + 2 * hi, 2);
    __builtin_memcpy(p + 2, pmt_digit_pairs + 2 * (lo / 100), 2);
    __builtin_memcpy(p + 4, pmt_digit_pairs + 2 * (lo % 100), 2);
    return p + 6;
}

/* The record formatted at p (from pmt_log_reserve) ends at end. */
static inline void
pmt_log_commit(pmt_logwriter *w, const char *end)
{
    w->len = (size_t)(end - w->buf);
}

/* Seconds with six decimals (%.6f) from nanoseconds. */
void pmt_log_seconds(pmt_logwriter *w, uint64_t ns);

/* The escaping rule of every log of ours (docs/log_format.md), written
   once: a backslash, tab, newline and carriage return become two
   characters, \\ \t \n \r, so that a record stays on one line and its
   fields split on tabs.  The n bytes at s, escaped, at out, which has room
   for 2 * n bytes; returns the end.  Every other escaping function (the
   ones below, logfmt.c's for str) calls this one. */
char *pmt_put_escaped(char *out, const char *s, size_t n);
/* A string escaped per docs/log_format.md: \\ \t \n \r.  At most
   PMT_LOG_MAX_FIELD bytes of it. */
void pmt_log_escaped(pmt_logwriter *w, const char *s, size_t n);
/* The same for text of any length (messages): written whole, in pieces
   of at most PMT_LOG_MAX_FIELD bytes. */
void pmt_log_escaped_whole(pmt_logwriter *w, const char *s, size_t n);

/* Flush the whole buffer of every registered writer with write(2) only.
   Async-signal-safe; takes no lock and changes no state but the files. */
void pmt_log_flush_all_signal_safe(void);

/* fork(), called by fork.c's one pthread_atfork registration in its
   written order: prepare takes every open log's record lock and queue
   lock, then the signal-handler lock; parent releases them; in the child
   inherited logs write nothing more (the bytes are the parent's). */
void pmt_log_fork_prepare(void);
void pmt_log_fork_parent(void);
void pmt_log_fork_child(void);

/* Install the fatal-signal flushers (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
   SIGABRT, and SIGTERM while its disposition is the default).  Reference
   counted: the last uninstall restores the previous actions. */
void pmt_log_signals_install(void);
void pmt_log_signals_uninstall(void);

#endif /* PMT_CORE_LOGWRITER_H */
