/*
 * signals.c - a process ended by SIGTERM or SIGHUP left to their default
 * action runs no destructor; the tracer writes the exit snapshot first,
 * then the process dies by the same signal (exit status 128 + N, as
 * without the tracer).  SIGINT is left alone (CPython installs its
 * KeyboardInterrupt handler only when it finds SIGINT at SIG_DFL), SIGKILL
 * cannot be caught.
 *
 * At start-up (init_once, once the capture is open) each of the two
 * signals still at SIG_DFL gets our handler.  The program never sees it:
 * sigaction and signal are interposed, and while ours is installed a
 * query reports SIG_DFL (empty mask, no flags), a program setting SIG_DFL
 * keeps ours, and a program installing a handler or SIG_IGN replaces ours
 * (its handler decides from then on; a normal exit still writes the exit
 * snapshot through the destructor).  Setting SIG_DFL again puts ours back.
 * CPython reads and sets dispositions with sigaction, so
 * signal.getsignal() and signal.signal() behave as without the tracer.
 * Not covered: sysv_signal, bsd_signal, sigset, and raw rt_sigaction
 * system calls (they replace ours unseen; our handler is then not run).
 *
 * The handler, on the thread the kernel picked:
 * - inside the tracer (its guard set: it may hold pmt_nt_runtime.lock, or
 *   be in the real malloc from the tables): nothing is written there and
 *   then; the signal is noted and handled when the thread leaves the
 *   tracer (pmt_nt_guard_exit, microseconds later), with the lock free;
 * - otherwise the lock is taken with trylock, retried 1 ms apart for at
 *   most LOCK_TRIES ms (another thread holds it briefly; never block for
 *   good: that thread may wait for an allocator lock this thread holds),
 *   the exit snapshot is written (capture.c: no malloc, no stdio, no
 *   lock) and recording stops;
 * - then SIG_DFL is restored, the signal unblocked and raised again.
 * A forked child inherits the handler and writes its own capture (fork.c
 * gave it its pid; its file is opened at its first snapshot).  A vfork
 * child, or a fork child before fork.c's handler ran, has a pid that is
 * not rt.pid: it writes nothing and changes no shared state (a vfork
 * child shares our memory).  exec resets the handler; the new program's
 * tracer installs its own.
 *
 * Threading: `ours` is atomic, written by the installer, the interposed
 * sigaction and the handler; two threads changing the disposition of the
 * same signal at once race as they would without the tracer.
 */
#define _GNU_SOURCE
#include "preload.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define rt pmt_nt_runtime

#define LOCK_TRIES 200 /* 1 ms apart */
#define NTRACKED 2

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef sighandler_t (*signal_fn)(int, sighandler_t);

static const int TRACKED[NTRACKED] = {SIGTERM, SIGHUP};

/* The real functions (dlsym, on first use) and whether our handler is
   the one installed, per tracked signal. */
static struct pmt_nt_signals_runtime {
    _Atomic(sigaction_fn) sigaction;
    _Atomic(signal_fn) signal;
    _Atomic int ours[NTRACKED];
} sig_runtime;

static int
tracked_index(int signo)
{
    int i;

    for (i = 0; i < NTRACKED; i++) {
        if (TRACKED[i] == signo) {
            return i;
        }
    }
    return -1;
}

static sigaction_fn
real_sigaction(void)
{
    sigaction_fn fn =
        atomic_load_explicit(&sig_runtime.sigaction, memory_order_acquire);

    if (fn == NULL) {
        fn = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
        atomic_store_explicit(&sig_runtime.sigaction, fn,
                              memory_order_release);
    }
    return fn;
}

static signal_fn
real_signal(void)
{
    signal_fn fn =
        atomic_load_explicit(&sig_runtime.signal, memory_order_acquire);

    if (fn == NULL) {
        fn = (signal_fn)dlsym(RTLD_NEXT, "signal");
        atomic_store_explicit(&sig_runtime.signal, fn, memory_order_release);
    }
    return fn;
}

/* This process owns the tracer's state (not a vfork child sharing it). */
static int
owns_state(void)
{
    return rt.pid == getpid();
}

/* The exit snapshot, then recording stops (nothing when recording has
   stopped, in a process that does not own the capture, or when the lock
   stays taken).  Async-signal-safe. */
static void
exit_snapshot(void)
{
    static const struct timespec ms = {0, 1000000};
    int tries;

    if (!atomic_load(&rt.on) || !owns_state() || !pmt_nt_guard_enter()) {
        return;
    }
    for (tries = 0; pthread_mutex_trylock(&rt.lock) != 0; tries++) {
        if (tries == LOCK_TRIES) {
            goto done;
        }
        nanosleep(&ms, NULL);
    }
    /* This thread's counts; pmt_nt_count_flush would also register the
       thread-exit flush, which may allocate. */
    pmt_nt_count_add();
    pmt_nt_capture_dump_unlocked(1);
    atomic_store(&rt.on, 0);
    pthread_mutex_unlock(&rt.lock);
done:
    pmt_nt_guard_exit();
}

/* The default action of signo, as if we had never been there. */
static void
die_by(int signo)
{
    struct sigaction dfl;
    sigaction_fn real = real_sigaction();
    sigset_t set;
    int i = tracked_index(signo);

    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    if (i >= 0 && owns_state()) {
        atomic_store(&sig_runtime.ours[i], 0);
    }
    if (real != NULL) {
        real(signo, &dfl, NULL);
    }
    sigemptyset(&set);
    sigaddset(&set, signo);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(signo);
}

static void
on_signal(int signo)
{
    int saved = errno;

    if (pmt_nt_tls.busy) {
        pmt_nt_tls.pending_signal = signo;
    }
    else {
        exit_snapshot();
        die_by(signo);
    }
    errno = saved;
}

/* Called by pmt_nt_guard_exit once the guard is left. */
void
pmt_nt_signal_deferred(void)
{
    int saved = errno;
    int signo = pmt_nt_tls.pending_signal;

    pmt_nt_tls.pending_signal = 0;
    exit_snapshot();
    die_by(signo);
    errno = saved;
}

static void
our_action(struct sigaction *act)
{
    int i;

    memset(act, 0, sizeof(*act));
    act->sa_handler = on_signal;
    sigemptyset(&act->sa_mask);
    for (i = 0; i < NTRACKED; i++) {
        sigaddset(&act->sa_mask, TRACKED[i]);
    }
    act->sa_flags = SA_RESTART;
}

static void
report_default(struct sigaction *oldact)
{
    if (oldact != NULL) {
        memset(oldact, 0, sizeof(*oldact));
        oldact->sa_handler = SIG_DFL;
        sigemptyset(&oldact->sa_mask);
    }
}

/* Once, from init_once (recording on, the guard set). */
void
pmt_nt_signals_install(void)
{
    struct sigaction ours, old;
    sigaction_fn real = real_sigaction();
    int i;

    if (real == NULL) {
        return;
    }
    our_action(&ours);
    for (i = 0; i < NTRACKED; i++) {
        if (real(TRACKED[i], NULL, &old) == 0 &&
            !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL &&
            real(TRACKED[i], &ours, NULL) == 0) {
            atomic_store(&sig_runtime.ours[i], 1);
        }
    }
}

static int
do_sigaction(int signo, const struct sigaction *act, struct sigaction *oldact)
{
    struct sigaction ours;
    sigaction_fn real = real_sigaction();
    int i = tracked_index(signo);
    int rc;

    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (i < 0 || !owns_state() || !atomic_load(&rt.on)) {
        /* A vfork child's change is its own: the table is not shared,
           our memory is.  It still sees SIG_DFL for ours. */
        rc = real(signo, act, oldact);
        if (rc == 0 && i >= 0 && oldact != NULL &&
            oldact->sa_handler == on_signal) {
            report_default(oldact);
        }
        return rc;
    }
    if (atomic_load(&sig_runtime.ours[i])) {
        if (act != NULL && act->sa_handler != SIG_DFL) {
            rc = real(signo, act, NULL);
            if (rc != 0) {
                return rc;
            }
            atomic_store(&sig_runtime.ours[i], 0);
        }
        report_default(oldact);
        return 0;
    }
    if (act != NULL && act->sa_handler == SIG_DFL) {
        /* The program goes back to the default: ours is the default. */
        our_action(&ours);
        rc = real(signo, &ours, oldact);
        if (rc == 0) {
            atomic_store(&sig_runtime.ours[i], 1);
        }
        return rc;
    }
    return real(signo, act, oldact);
}

PMT_NT_EXPORT int
sigaction(int signo, const struct sigaction *act, struct sigaction *oldact)
{
    return do_sigaction(signo, act, oldact);
}

/* glibc's signal(): BSD semantics (SA_RESTART, the signal blocked in its
   handler), through our sigaction for the tracked signals. */
PMT_NT_EXPORT sighandler_t
signal(int signo, sighandler_t handler)
{
    struct sigaction act, old;
    signal_fn real;

    if (tracked_index(signo) < 0) {
        real = real_signal();
        if (real == NULL) {
            errno = ENOSYS;
            return SIG_ERR;
        }
        return real(signo, handler);
    }
    if (handler == SIG_ERR) {
        errno = EINVAL;
        return SIG_ERR;
    }
    memset(&act, 0, sizeof(act));
    act.sa_handler = handler;
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, signo);
    act.sa_flags = SA_RESTART;
    if (do_sigaction(signo, &act, &old) < 0) {
        return SIG_ERR;
    }
    return old.sa_handler;
}
