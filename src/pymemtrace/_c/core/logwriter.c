/*
 * core/logwriter.c - buffered log files and their fatal-signal flush.
 * See logwriter.h for the threading model.
 *
 * Process-wide state (the documented exception to "no mutable globals"):
 * logwriter_runtime below, each field commented with what protects it.
 */
#include "logwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define REGISTRY_SLOTS 64

const char pmt_digit_pairs[201] =
    "00010203040506070809"
    "10111213141516171819"
    "20212223242526272829"
    "30313233343536373839"
    "40414243444546474849"
    "50515253545556575859"
    "60616263646566676869"
    "70717273747576777879"
    "80818283848586878889"
    "90919293949596979899";

static const int fatal_signals[] = {SIGSEGV, SIGBUS,  SIGFPE,
                                    SIGILL,  SIGABRT, SIGTERM};
#define N_FATAL (sizeof(fatal_signals) / sizeof(fatal_signals[0]))

static struct {
    /* Open writers, NULL for a free slot.  Atomic: read by signal
       handlers of any thread; a slot is claimed by compare-and-swap. */
    _Atomic(pmt_logwriter *) registry[REGISTRY_SLOTS];
    /* Users of the signal handlers.  Protected by signals_mutex. */
    int signal_users;
    /* 1 where our handler is installed for fatal_signals[i], and the
       action it replaced.  Protected by signals_mutex; read by the
       handler, which only runs while installed. */
    int installed[N_FATAL];
    struct sigaction previous[N_FATAL];
    /* Serialises install/uninstall of the signal handlers (guards
       signal_users, installed, previous).  Never taken by a handler. */
    pthread_mutex_t signals_mutex;
    /* The writers whose locks pmt_log_fork_prepare took, by registry
       slot, for the parent handler to release.  Written and read only by
       the forking thread, between prepare and parent. */
    pmt_logwriter *fork_held[REGISTRY_SLOTS];
} logwriter_runtime = {
    .signals_mutex = PTHREAD_MUTEX_INITIALIZER,
};

/* Buffers come straight from mmap and go back with munmap: a closed log
   returns its 2 MiB to the system at once, whatever malloc's thresholds
   (or a sanitizer's quarantine) would do with blocks this size. */
static char *
buffer_new(void)
{
    void *p = mmap(NULL, PMT_LOG_BUFSIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void
buffer_free(char *p)
{
    if (p != NULL) {
        (void)munmap(p, PMT_LOG_BUFSIZE);
    }
}

/* Bytes of p[0..n) up to and including its last newline, 0 if none. */
static size_t
whole_lines(const char *p, size_t n)
{
    while (n > 0 && p[n - 1] != '\n') {
        n--;
    }
    return n;
}

/* Write p[0..n) at file offset off (at the file position when the file
   is not seekable); 0 or an errno value.  A failure after part of it was
   written cuts the file back to the last newline written, so the file
   never ends inside a record.  Async-signal-safe. */
static int
write_at(const pmt_logwriter *w, const char *p, size_t n, uint64_t off)
{
    size_t done = 0;

    while (done < n) {
        ssize_t got = w->seekable ? pwrite(w->fd, p + done, n - done,
                                           (off_t)(off + done))
                                  : write(w->fd, p + done, n - done);
        if (got <= 0) {
            int err = got == 0 ? ENOSPC : errno;
            if (err == EINTR) {
                continue;
            }
            if (w->seekable) {
                (void)ftruncate(w->fd, (off_t)(off + whole_lines(p, done)));
            }
            return err;
        }
        done += (size_t)got;
    }
    return 0;
}

static void
set_error(pmt_logwriter *w, int err)
{
    if (err && !w->error) {
        __atomic_store_n(&w->error, err, __ATOMIC_RELAXED);
    }
}

static void
registry_add(pmt_logwriter *w)
{
    int i;

    w->registry_slot = -1;
    for (i = 0; i < REGISTRY_SLOTS; i++) {
        pmt_logwriter *expected = NULL;
        if (atomic_compare_exchange_strong(&logwriter_runtime.registry[i],
                                           &expected, w)) {
            w->registry_slot = i;
            return;
        }
    }
    /* More than REGISTRY_SLOTS open logs: this one is flushed at exit
       and when full, but not from a signal handler. */
}

static void
registry_remove(pmt_logwriter *w)
{
    if (w->registry_slot >= 0) {
        atomic_store(&logwriter_runtime.registry[w->registry_slot], NULL);
        w->registry_slot = -1;
    }
}

/* fork(): every open log's record lock, then its queue lock (the order
   the hooks take them in), then the signal-handler lock. */
void
pmt_log_fork_prepare(void)
{
    int i;

    for (i = 0; i < REGISTRY_SLOTS; i++) {
        pmt_logwriter *w = atomic_load(&logwriter_runtime.registry[i]);
        logwriter_runtime.fork_held[i] = w;
        if (w != NULL) {
            pthread_mutex_lock(&w->mutex);
            pthread_mutex_lock(&w->qmutex);
        }
    }
    pthread_mutex_lock(&logwriter_runtime.signals_mutex);
}

void
pmt_log_fork_parent(void)
{
    int i;

    pthread_mutex_unlock(&logwriter_runtime.signals_mutex);
    for (i = REGISTRY_SLOTS - 1; i >= 0; i--) {
        pmt_logwriter *w = logwriter_runtime.fork_held[i];
        if (w != NULL) {
            pthread_mutex_unlock(&w->qmutex);
            pthread_mutex_unlock(&w->mutex);
        }
        logwriter_runtime.fork_held[i] = NULL;
    }
}

/* In a fork()ed child the writer threads do not exist and the files are
   the parent's: inherited logs stop writing (their buffered and queued
   bytes are the parent's to write), so the child neither deadlocks
   waiting for a writer nor interleaves its records into the parent's. */
void
pmt_log_fork_child(void)
{
    int i;

    pthread_mutex_init(&logwriter_runtime.signals_mutex, NULL);

    for (i = 0; i < REGISTRY_SLOTS; i++) {
        pmt_logwriter *w = atomic_load(&logwriter_runtime.registry[i]);
        if (w == NULL) {
            continue;
        }
        pthread_mutex_init(&w->mutex, NULL);
        pthread_mutex_init(&w->qmutex, NULL);
        pthread_cond_init(&w->qcond, NULL);
        w->thread_started = 0;
        w->qcount = 0;
        w->qhead = 0;
        w->busy = 0;
        w->len = 0;
        w->forked = 1;
        logwriter_runtime.fork_held[i] = NULL;
    }
}

int
pmt_log_open(pmt_logwriter *w, const char *path, uint64_t max_bytes, int flags)
{
    int fd, i;
    int oflags = O_WRONLY | O_CREAT | O_CLOEXEC;

    oflags |= (flags & PMT_LOG_NEW_FILE) ? O_EXCL | O_NOFOLLOW : O_TRUNC;

    memset(w, 0, sizeof(*w));
    w->fd = -1;
    w->registry_slot = -1;
    /* Only the first buffer now: the others when the writer starts. */
    w->bufs[0] = buffer_new();
    if (w->bufs[0] == NULL) {
        return ENOMEM;
    }
    do {
        fd = open(path, oflags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int err = errno;
        buffer_free(w->bufs[0]);
        w->bufs[0] = NULL;
        return err;
    }
    for (i = 1; i < PMT_LOG_NBUF; i++) {
        w->bufs[i] = NULL;
    }
    w->buf = w->bufs[0];
    w->cur = 0;
    w->fd = fd;
    w->seekable = lseek(fd, 0, SEEK_CUR) >= 0;
    w->max_bytes = max_bytes;
    pthread_mutex_init(&w->mutex, NULL);
    pthread_mutex_init(&w->qmutex, NULL);
    pthread_cond_init(&w->qcond, NULL);
    registry_add(w);
    return 0;
}

static void *
writer_main(void *arg)
{
    pmt_logwriter *w = arg;

    pthread_mutex_lock(&w->qmutex);
    for (;;) {
        int idx, err = 0;
        size_t n;
        uint64_t off;
        int failed;
        while (w->qcount == 0 && !w->stop) {
            pthread_cond_wait(&w->qcond, &w->qmutex);
        }
        if (w->qcount == 0) {
            break; /* stop requested and nothing left */
        }
        idx = w->queue[w->qhead];
        n = w->qlen[w->qhead];
        off = w->qoff[w->qhead];
        /* After a failed write nothing more is written: the file ends at
           the last whole record before the failure, without a gap. */
        failed = w->error != 0;
        w->busy = 1;
        pthread_mutex_unlock(&w->qmutex);
        if (!failed) {
            err = write_at(w, w->bufs[idx], n, off);
        }
        pthread_mutex_lock(&w->qmutex);
        set_error(w, err);
        w->qhead = (w->qhead + 1) % PMT_LOG_NBUF;
        w->qcount--;
        w->busy = 0;
        pthread_cond_broadcast(&w->qcond);
    }
    pthread_mutex_unlock(&w->qmutex);
    return NULL;
}

/* Start the writer and its buffers; 0, or -1 to stay synchronous. */
static int
start_writer(pmt_logwriter *w)
{
    sigset_t all, old;
    int i, rc;

    for (i = 1; i < PMT_LOG_NBUF; i++) {
        w->bufs[i] = buffer_new();
        if (w->bufs[i] == NULL) {
            goto out_free;
        }
    }
    /* The writer takes no signal: a SIGTERM for the process then runs the
       flush on a thread of the program, never beside a write of ours. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        goto out_free;
    }
    w->thread_started = 1;
    return 0;
out_free:
    for (i = 1; i < PMT_LOG_NBUF; i++) {
        buffer_free(w->bufs[i]);
        w->bufs[i] = NULL;
    }
    return -1;
}

static int
buffer_queued(const pmt_logwriter *w, int idx)
{
    int i;
    for (i = 0; i < w->qcount; i++) {
        if (w->queue[(w->qhead + i) % PMT_LOG_NBUF] == idx) {
            return 1;
        }
    }
    return 0;
}

/* Hand the current buffer over and take a free one. */
static void
rotate(pmt_logwriter *w)
{
    int next, k;
    size_t n;

    if (w->forked) {
        w->len = 0; /* see forget_writers_in_child */
        return;
    }
    if (w->len == 0) {
        return;
    }
    if (!w->thread_started && start_writer(w) < 0) {
        /* No thread: write here. */
        n = w->len;
        if (!w->error) {
            set_error(w, write_at(w, w->buf, n, w->written));
        }
        w->len = 0;
        atomic_signal_fence(memory_order_seq_cst);
        w->written += n;
        return;
    }
    pthread_mutex_lock(&w->qmutex);
    k = (w->qhead + w->qcount) % PMT_LOG_NBUF;
    w->queue[k] = w->cur;
    w->qlen[k] = w->len;
    w->qoff[k] = w->written;
    /* In this order, so that a fatal-signal flush on this thread sees the
       buffer queued, or current, or both at the same offset (the same
       bytes written twice to the same place), never at two offsets. */
    atomic_signal_fence(memory_order_seq_cst);
    w->qcount++;
    atomic_signal_fence(memory_order_seq_cst);
    n = w->len;
    w->len = 0;
    atomic_signal_fence(memory_order_seq_cst);
    w->written += n;
    pthread_cond_broadcast(&w->qcond);
    next = (w->cur + 1) % PMT_LOG_NBUF;
    /* Buffers are queued in ring order, so the next one is free once it
       has left the queue. */
    while (buffer_queued(w, next)) {
        pthread_cond_wait(&w->qcond, &w->qmutex);
    }
    pthread_mutex_unlock(&w->qmutex);
    w->cur = next;
    w->buf = w->bufs[next];
}

int
pmt_log_flush(pmt_logwriter *w)
{
    int err;

    if (w->fd < 0) {
        return 0;
    }
    rotate(w);
    if (w->thread_started) {
        pthread_mutex_lock(&w->qmutex);
        while (w->qcount > 0) {
            pthread_cond_wait(&w->qcond, &w->qmutex);
        }
        err = w->error;
        pthread_mutex_unlock(&w->qmutex);
    }
    else {
        err = w->error;
    }
    return err;
}

int
pmt_log_close(pmt_logwriter *w)
{
    int i;

    if (w->fd < 0) {
        return w->error;
    }
    registry_remove(w);
    if (w->forked) {
        w->len = 0;
    }
    (void)pmt_log_flush(w);
    if (w->thread_started) {
        pthread_mutex_lock(&w->qmutex);
        w->stop = 1;
        pthread_cond_broadcast(&w->qcond);
        pthread_mutex_unlock(&w->qmutex);
        pthread_join(w->thread, NULL);
        w->thread_started = 0;
    }
    if (close(w->fd) != 0 && !w->error) {
        w->error = errno;
    }
    w->fd = -1;
    for (i = 0; i < PMT_LOG_NBUF; i++) {
        buffer_free(w->bufs[i]);
        w->bufs[i] = NULL;
    }
    w->buf = NULL;
    pthread_mutex_destroy(&w->mutex);
    pthread_mutex_destroy(&w->qmutex);
    pthread_cond_destroy(&w->qcond);
    return w->error;
}

void
pmt_log_reserve_slow(pmt_logwriter *w, size_t n)
{
    (void)n;
    rotate(w);
}

void
pmt_log_seconds(pmt_logwriter *w, uint64_t ns)
{
    char *p = pmt_log_reserve(w, 32);
    pmt_log_commit(w, pmt_put_seconds(p, ns));
}

char *
pmt_put_escaped(char *out, const char *s, size_t n)
{
    size_t i, start = 0;

    for (i = 0; i < n; i++) {
        char esc;
        switch (s[i]) {
        case '\\':
            esc = '\\';
            break;
        case '\t':
            esc = 't';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        default:
            continue;
        }
        out = pmt_put_bytes(out, s + start, i - start);
        out[0] = '\\';
        out[1] = esc;
        out += 2;
        start = i + 1;
    }
    return pmt_put_bytes(out, s + start, n - start);
}

void
pmt_log_escaped(pmt_logwriter *w, const char *s, size_t n)
{
    char *p;

    if (n > PMT_LOG_MAX_FIELD) {
        n = PMT_LOG_MAX_FIELD;
    }
    /* At most twice PMT_LOG_MAX_FIELD: within what reserve allows. */
    p = pmt_log_reserve(w, 2 * n);
    pmt_log_commit(w, pmt_put_escaped(p, s, n));
}

void
pmt_log_escaped_whole(pmt_logwriter *w, const char *s, size_t n)
{
    /* Escaping looks at one byte at a time: pieces may cut anywhere. */
    while (n > PMT_LOG_MAX_FIELD) {
        pmt_log_escaped(w, s, PMT_LOG_MAX_FIELD);
        s += PMT_LOG_MAX_FIELD;
        n -= PMT_LOG_MAX_FIELD;
    }
    pmt_log_escaped(w, s, n);
}

void
pmt_log_flush_all_signal_safe(void)
{
    int i;

    for (i = 0; i < REGISTRY_SLOTS; i++) {
        pmt_logwriter *w = atomic_load(&logwriter_runtime.registry[i]);
        uint64_t end;
        int q;
        if (w == NULL || w->fd < 0 || w->forked || w->error) {
            continue;
        }
        /* Queued buffers first, each at its offset (the writer thread may
           be writing the first one too: the same bytes, the same place),
           then the current one up to its last newline: a record being
           formatted on this thread right now is left out, not cut. */
        for (q = 0; q < w->qcount; q++) {
            int k = (w->qhead + q) % PMT_LOG_NBUF;
            if (w->bufs[w->queue[k]] != NULL) {
                (void)write_at(w, w->bufs[w->queue[k]], w->qlen[k],
                               w->qoff[k]);
            }
        }
        end = w->written;
        if (w->len > 0 && w->buf != NULL) {
            size_t n = whole_lines(w->buf, w->len);
            if (write_at(w, w->buf, n, end) == 0) {
                end += n;
            }
        }
        if (w->signal_tail != NULL) {
            size_t n = 0;
            while (w->signal_tail[n] != '\0') {
                n++;
            }
            (void)write_at(w, w->signal_tail, n, end);
        }
    }
}

static void
fatal_handler(int sig)
{
    size_t i;
    int saved_errno = errno;

    pmt_log_flush_all_signal_safe();
    /* Put the previous action back and deliver the signal again: the
       process ends (or the previous handler runs) as without us. */
    for (i = 0; i < N_FATAL; i++) {
        if (fatal_signals[i] == sig) {
            (void)sigaction(sig, &logwriter_runtime.previous[i], NULL);
            logwriter_runtime.installed[i] = 0;
            break;
        }
    }
    errno = saved_errno;
    (void)raise(sig);
}

void
pmt_log_signals_install(void)
{
    size_t i;

    pthread_mutex_lock(&logwriter_runtime.signals_mutex);
    if (logwriter_runtime.signal_users++ > 0) {
        goto out_unlock;
    }
    for (i = 0; i < N_FATAL; i++) {
        struct sigaction action, old;
        if (sigaction(fatal_signals[i], NULL, &old) != 0) {
            continue;
        }
        /* SIGTERM is only ours while nobody handles it: a program with
           its own SIGTERM handler may go on running after it. */
        if (fatal_signals[i] == SIGTERM && old.sa_handler != SIG_DFL) {
            continue;
        }
        if (old.sa_handler == SIG_IGN) {
            continue;
        }
        memset(&action, 0, sizeof(action));
        action.sa_handler = fatal_handler;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_NODEFER | SA_ONSTACK;
        if (sigaction(fatal_signals[i], &action,
                      &logwriter_runtime.previous[i]) == 0) {
            logwriter_runtime.installed[i] = 1;
        }
    }
out_unlock:
    pthread_mutex_unlock(&logwriter_runtime.signals_mutex);
}

void
pmt_log_signals_uninstall(void)
{
    size_t i;

    pthread_mutex_lock(&logwriter_runtime.signals_mutex);
    if (logwriter_runtime.signal_users == 0 ||
        --logwriter_runtime.signal_users > 0) {
        goto out_unlock;
    }
    for (i = 0; i < N_FATAL; i++) {
        struct sigaction current;
        if (!logwriter_runtime.installed[i]) {
            continue;
        }
        logwriter_runtime.installed[i] = 0;
        /* Someone (faulthandler, signal.signal) may have replaced us
           since: then leave their handler in place. */
        if (sigaction(fatal_signals[i], NULL, &current) == 0 &&
            current.sa_handler == fatal_handler) {
            (void)sigaction(fatal_signals[i], &logwriter_runtime.previous[i],
                            NULL);
        }
    }
out_unlock:
    pthread_mutex_unlock(&logwriter_runtime.signals_mutex);
}
