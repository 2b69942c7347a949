/*
 * stackcap.c - the native stack of an allocation.
 *
 * glibc's backtrace() (the DWARF unwinder of libgcc_s): frame pointers
 * are absent from most system libraries, and libunwind is not a default
 * package.  Its first call dlopens libgcc_s and allocates: the
 * constructor calls it once (pmt_nt_stack_warmup) with the guard set.
 * The frames above the interposed function are dropped: the walk starts
 * at the return address the interposer saw (its caller).
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

/* Frames of the tracer itself above the caller (this function, the
   recorder, the hook and the exported function), with some slack. */
#define OWN_FRAMES 8

void
pmt_nt_stack_warmup(void)
{
    void *ips[4];

    (void)backtrace(ips, 4);
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

uint32_t
pmt_nt_stack_capture(pmt_frame *frames, int depth, void *caller)
{
    void *ips[PMT_NT_MAX_DEPTH + OWN_FRAMES];
    int n, i, start = 0;
    uint32_t k = 0;

    if (depth > PMT_NT_MAX_DEPTH) {
        depth = PMT_NT_MAX_DEPTH;
    }
    if (pmt_nt_runtime.unwind_fp) {
        return capture_fp(frames, depth, caller);
    }
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
