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
#include <unistd.h>

#define REGISTRY_SLOTS 64

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL,
                                    SIGABRT, SIGTERM};
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
} logwriter_runtime;

static pthread_mutex_t signals_mutex = PTHREAD_MUTEX_INITIALIZER;

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

int
pmt_log_open(pmt_logwriter *w, const char *path, uint64_t max_bytes)
{
    int fd;

    memset(w, 0, sizeof(*w));
    w->fd = -1;
    w->registry_slot = -1;
    w->buf = malloc(PMT_LOG_BUFSIZE);
    if (w->buf == NULL) {
        return ENOMEM;
    }
    do {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int err = errno;
        free(w->buf);
        w->buf = NULL;
        return err;
    }
    w->fd = fd;
    w->max_bytes = max_bytes;
    pthread_mutex_init(&w->mutex, NULL);
    registry_add(w);
    return 0;
}

int
pmt_log_flush(pmt_logwriter *w)
{
    int err;

    if (w->fd < 0 || w->len == 0) {
        return 0;
    }
    err = write_all(w->fd, w->buf, w->len);
    if (err && !w->error) {
        w->error = err;
    }
    w->written += w->len;
    w->len = 0;
    return err;
}

int
pmt_log_close(pmt_logwriter *w)
{
    int err;

    if (w->fd < 0) {
        return w->error;
    }
    registry_remove(w);
    (void)pmt_log_flush(w);
    if (close(w->fd) != 0 && !w->error) {
        w->error = errno;
    }
    w->fd = -1;
    free(w->buf);
    w->buf = NULL;
    pthread_mutex_destroy(&w->mutex);
    err = w->error;
    return err;
}

void
pmt_log_reserve_slow(pmt_logwriter *w, size_t n)
{
    (void)n;
    (void)pmt_log_flush(w);
}

void
pmt_log_seconds(pmt_logwriter *w, uint64_t ns)
{
    char tmp[32];
    /* Round to the microsecond as printf("%.6f") would. */
    uint64_t us = (ns + 500) / 1000;
    uint64_t frac = us % 1000000;
    char *end = tmp + sizeof(tmp);
    char *p = end;
    int i;

    for (i = 0; i < 6; i++) {
        *--p = (char)('0' + frac % 10);
        frac /= 10;
    }
    *--p = '.';
    p = pmt_format_u64(p, us / 1000000);
    pmt_log_bytes(w, p, (size_t)(end - p));
}

void
pmt_log_escaped(pmt_logwriter *w, const char *s, size_t n)
{
    size_t i, start = 0;

    if (n > PMT_LOG_MAX_FIELD) {
        n = PMT_LOG_MAX_FIELD;
    }
    for (i = 0; i < n; i++) {
        char c = s[i];
        char esc;
        switch (c) {
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
        if (i > start) {
            pmt_log_bytes(w, s + start, i - start);
        }
        pmt_log_char(w, '\\');
        pmt_log_char(w, esc);
        start = i + 1;
    }
    if (n > start) {
        pmt_log_bytes(w, s + start, n - start);
    }
}

void
pmt_log_flush_all_signal_safe(void)
{
    int i;

    for (i = 0; i < REGISTRY_SLOTS; i++) {
        pmt_logwriter *w = atomic_load(&logwriter_runtime.registry[i]);
        if (w != NULL && w->fd >= 0 && w->len > 0 && w->buf != NULL) {
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

    pthread_mutex_lock(&signals_mutex);
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
    pthread_mutex_unlock(&signals_mutex);
}

void
pmt_log_signals_uninstall(void)
{
    size_t i;

    pthread_mutex_lock(&signals_mutex);
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
    pthread_mutex_unlock(&signals_mutex);
}
