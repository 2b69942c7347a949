/*
 * stackcap.c - the native stack of an allocation.
 *
 * DWARF unwinding, whose answer is glibc's backtrace() (the unwinder of
 * libgcc_s): frame pointers are absent from most system libraries, and
 * libunwind is not a default package.  Its first call dlopens libgcc_s
 * and allocates: the constructor calls it once (pmt_nt_stack_warmup)
 * with the guard set.  The frames above the interposed function are
 * dropped: the walk starts at the return address the interposer saw
 * (its caller).
 *
 * On x86-64 Linux the stack is first walked with a cache of rules per
 * return address (unwind.c), the same frames at a fraction of the cost;
 * when that walk declines, backtrace() takes the whole stack.
 * PYMEMTRACE_NATIVE_UNWIND_CACHE=0 switches the cache off (A/B runs);
 * PYMEMTRACE_NATIVE_UNWIND_CHECK=1 takes every stack both ways, keeps
 * backtrace()'s and writes the count of differences to stderr at exit
 * (=planted drops a frame of the cached walk's: the check's own test).
 *
 * PYMEMTRACE_NATIVE_UNWIND=fp walks frame pointers instead: about a
 * hundred times cheaper, exact for code built with frame pointers (the
 * library itself is), and cut short or wrong past the first function
 * built without them (most of Debian's libraries): the walk stops at a
 * frame pointer outside this thread's stack or not above the previous.
 *
 * Called without the table lock (the unwinder takes the loader's lock).
 */
#define _GNU_SOURCE
#include "preload.h"

#include <execinfo.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Frames of the tracer itself above the caller (this function, the
   recorder, the hook and the exported function), with some slack. */
#define OWN_FRAMES 8

/* Configuration written once by pmt_nt_stack_warmup (constructor, before
   recording starts), then read-only; the counters are atomic. */
static struct pmt_nt_stackcap_runtime {
    int cache;                 /* walk with the cache of rules first */
    int check;                 /* take every stack both ways (2: with a
                                  planted difference, for the tests) */
    _Atomic uint64_t stacks;   /* check: stacks compared */
    _Atomic uint64_t cached;   /* check: of those, walked by the cache */
    _Atomic uint64_t differ;   /* check: of those, not backtrace()'s */
    _Atomic uint64_t reported; /* check: differences written out */
} srt;

void
pmt_nt_stack_warmup(void)
{
    void *ips[4];
    const char *cache = getenv("PYMEMTRACE_NATIVE_UNWIND_CACHE");
    const char *check = getenv("PYMEMTRACE_NATIVE_UNWIND_CHECK");

    (void)backtrace(ips, 4);
    pmt_nt_unwind_init();
    srt.cache = cache == NULL || strcmp(cache, "0") != 0;
    srt.check = check == NULL                   ? 0
                : strcmp(check, "1") == 0       ? 1
                : strcmp(check, "planted") == 0 ? 2
                                                : 0;
}

static void
say(const char *text, int len)
{
    if (len > 0) {
        ssize_t ignored = write(2, text, (size_t)len);
        (void)ignored;
    }
}

/* The first few differences, frame by frame (check mode). */
static void
report_difference(const pmt_frame *want, uint32_t nwant, const pmt_frame *got,
                  int ngot)
{
    char line[128];
    uint32_t i;

    if (atomic_fetch_add(&srt.reported, 1) >= 5) {
        return;
    }
    say(line, snprintf(line, sizeof(line),
                       "pymemtrace native: unwind check: backtrace %u "
                       "frames, cache %d\n",
                       nwant, ngot));
    for (i = 0; i < nwant || i < (uint32_t)ngot; i++) {
        say(line, snprintf(line, sizeof(line), "  %2u %18p %18p\n", i,
                           i < nwant ? want[i].code : NULL,
                           i < (uint32_t)ngot ? got[i].code : NULL));
    }
}

/* At exit, in check mode: one line a process, read by the tests. */
__attribute__((destructor)) static void
stack_check_report(void)
{
    char line[160];

    if (!srt.check || atomic_load(&srt.stacks) == 0) {
        return;
    }
    say(line,
        snprintf(line, sizeof(line),
                 "pymemtrace native: unwind check: pid %d, %llu stacks, "
                 "%llu by the cache, %llu differ\n",
                 (int)getpid(), (unsigned long long)atomic_load(&srt.stacks),
                 (unsigned long long)atomic_load(&srt.cached),
                 (unsigned long long)atomic_load(&srt.differ)));
}

static void
set_frame(pmt_frame *frame, void *ip)
{
    frame->code = ip;
    frame->addr = 0;
    frame->unused = 0;
}

/* The bounds of the calling thread's stack, asked once per thread
   (pthread_getattr_np allocates: the guard is set here). */
static int
stack_bounds(uintptr_t *lo, uintptr_t *hi)
{
    pthread_attr_t attr;
    void *addr = NULL;
    size_t size = 0;

    if (pmt_nt_tls.stack_hi == 0) {
        if (pthread_getattr_np(pthread_self(), &attr) != 0) {
            return -1;
        }
        pthread_attr_getstack(&attr, &addr, &size);
        pthread_attr_destroy(&attr);
        pmt_nt_tls.stack_lo = (uintptr_t)addr;
        pmt_nt_tls.stack_hi = (uintptr_t)addr + size;
    }
    *lo = pmt_nt_tls.stack_lo;
    *hi = pmt_nt_tls.stack_hi;
    return 0;
}

static uint32_t
capture_fp(pmt_frame *frames, int depth, void *caller)
{
    const uintptr_t *fp = __builtin_frame_address(0);
    uintptr_t lo, hi;
    uint32_t k = 0;
    int started = 0;

    if (stack_bounds(&lo, &hi) < 0) {
        return 0;
    }
    while (k < (uint32_t)depth) {
        const uintptr_t *next;
        void *ret;
        if ((uintptr_t)fp < lo || (uintptr_t)fp > hi - 16 ||
            ((uintptr_t)fp & 7) != 0) {
            break;
        }
        next = (const uintptr_t *)fp[0];
        ret = (void *)fp[1];
        if (started) {
            set_frame(&frames[k++], ret);
        }
        else if (ret == caller) {
            /* The interposed function's record: its return address is
               the first frame we keep. */
            started = 1;
            set_frame(&frames[k++], ret);
        }
        if (next <= fp) {
            break;
        }
        fp = next;
    }
    return k;
}

static uint32_t
capture_backtrace(pmt_frame *frames, int depth, void *caller)
{
    void *ips[PMT_NT_MAX_DEPTH + OWN_FRAMES];
    int n, i, start = 0;
    uint32_t k = 0;

    n = backtrace(ips, depth + OWN_FRAMES);
    for (i = 0; i < n && i < OWN_FRAMES; i++) {
        if (ips[i] == caller) {
            start = i;
            break;
        }
    }
    for (i = start; i < n && k < (uint32_t)depth; i++, k++) {
        set_frame(&frames[k], ips[i]);
    }
    return k;
}

/* Both ways: backtrace()'s frames are kept, the cache's compared.  The
   cached walk searches one frame less for the caller: backtrace() may see
   one more frame of ours first (capture_backtrace not inlined), and a
   caller found by one search and missed by the other would differ. */
static uint32_t
capture_checked(pmt_frame *frames, int depth, void *caller, uintptr_t lo,
                uintptr_t hi)
{
    pmt_frame got[PMT_NT_MAX_DEPTH];
    int n = pmt_nt_unwind_cached(got, depth, caller, OWN_FRAMES - 1, lo, hi);
    uint32_t k = capture_backtrace(frames, depth, caller);
    uint32_t i;

    atomic_fetch_add(&srt.stacks, 1);
    if (n < 0) {
        return k;
    }
    atomic_fetch_add(&srt.cached, 1);
    if (srt.check == 2 && n > 1) {
        n--; /* the test's planted fault: a frame lost */
    }
    for (i = 0; i < k && (uint32_t)n == k; i++) {
        if (frames[i].code != got[i].code) {
            break;
        }
    }
    if ((uint32_t)n != k || i < k) {
        atomic_fetch_add(&srt.differ, 1);
        report_difference(frames, k, got, n);
    }
    return k;
}

uint32_t
pmt_nt_stack_capture(pmt_frame *frames, int depth, void *caller)
{
    uintptr_t lo, hi;
    int n;

    if (depth > PMT_NT_MAX_DEPTH) {
        depth = PMT_NT_MAX_DEPTH;
    }
    if (pmt_nt_runtime.unwind_fp) {
        return capture_fp(frames, depth, caller);
    }
    if (srt.cache && stack_bounds(&lo, &hi) == 0) {
        if (PMT_NT_UNLIKELY(srt.check)) {
            return capture_checked(frames, depth, caller, lo, hi);
        }
        n = pmt_nt_unwind_cached(frames, depth, caller, OWN_FRAMES - 1, lo,
                                 hi);
        if (n >= 0) {
            return (uint32_t)n;
        }
    }
    return capture_backtrace(frames, depth, caller);
}
