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
 * Called without the table lock (the unwinder takes the loader's lock).
 */
#include "preload.h"

#include <execinfo.h>

/* Frames of the tracer itself above the caller (this function, the
   recorder, the hook and the exported function), with some slack. */
#define OWN_FRAMES 8

void
pmt_nt_stack_warmup(void)
{
    void *ips[4];

    (void)backtrace(ips, 4);
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
    n = backtrace(ips, depth + OWN_FRAMES);
    for (i = 0; i < n && i < OWN_FRAMES; i++) {
        if (ips[i] == caller) {
            start = i;
            break;
        }
    }
    for (i = start; i < n && k < (uint32_t)depth; i++, k++) {
        frames[k].code = ips[i];
        frames[k].addr = 0;
        frames[k].unused = 0;
    }
    return k;
}
