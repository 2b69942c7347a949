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
    /* Registers the fork handler once; pthread_once is its own lock. */
    pthread_once_t atfork_once;
} logwriter_runtime = {
    .signals_mutex = PTHREAD_MUTEX_INITIALIZER,
    .atfork_once = PTHREAD_ONCE_INIT,
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

static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t got = write(fd, p, n);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
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

/* In a fork()ed child the writer threads do not exist and the files are
   the parent's: inherited logs stop writing (their buffered and queued
   bytes are the parent's to write), so the child neither deadlocks
   waiting for a writer nor interleaves its records into the parent's. */
static void
forget_writers_in_child(void)
{
    int i;

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
    }
}

static void
register_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, forget_writers_in_child);
}

int
pmt_log_open(pmt_logwriter *w, const char *path, uint64_t max_bytes, int flags)
{
    int fd, i;
    int oflags = O_WRONLY | O_CREAT | O_CLOEXEC;

    oflags |= (flags & PMT_LOG_NEW_FILE) ? O_EXCL | O_NOFOLLOW : O_TRUNC;

    (void)pthread_once(&logwriter_runtime.atfork_once, register_atfork);

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
        int idx;
        size_t n;
        int err;
        while (w->qcount == 0 && !w->stop) {
            pthread_cond_wait(&w->qcond, &w->qmutex);
        }
        if (w->qcount == 0) {
            break; /* stop requested and nothing left */
        }
        idx = w->queue[w->qhead];
        n = w->qlen[w->qhead];
        w->busy = 1;
        pthread_mutex_unlock(&w->qmutex);
        err = write_all(w->fd, w->bufs[idx], n);
        pthread_mutex_lock(&w->qmutex);
        if (err && !w->error) {
            w->error = err;
        }
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
    int i;

    for (i = 1; i < PMT_LOG_NBUF; i++) {
        w->bufs[i] = buffer_new();
        if (w->bufs[i] == NULL) {
            goto out_free;
        }
    }
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
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
    int next;

    if (w->forked) {
        w->len = 0; /* see forget_writers_in_child */
        return;
    }
    if (w->len == 0) {
        return;
    }
    if (!w->thread_started && start_writer(w) < 0) {
        /* No thread: write here. */
        int err = write_all(w->fd, w->buf, w->len);
        if (err && !w->error) {
            w->error = err;
        }
        w->written += w->len;
        w->len = 0;
        return;
    }
    pthread_mutex_lock(&w->qmutex);
    w->queue[(w->qhead + w->qcount) % PMT_LOG_NBUF] = w->cur;
    w->qlen[(w->qhead + w->qcount) % PMT_LOG_NBUF] = w->len;
    w->qcount++;
    w->written += w->len;
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
    w->len = 0;
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
        int q;
        if (w == NULL || w->fd < 0 || w->forked) {
            continue;
        }
        /* Queued buffers first (the writer thread may be half-way through
           the first: its tail can then appear twice), then the current. */
        for (q = 0; q < w->qcount; q++) {
            int k = (w->qhead + q) % PMT_LOG_NBUF;
            if (w->bufs[w->queue[k]] != NULL) {
                (void)write_all(w->fd, w->bufs[w->queue[k]], w->qlen[k]);
            }
        }
        if (w->len > 0 && w->buf != NULL) {
            (void)write_all(w->fd, w->buf, w->len);
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
