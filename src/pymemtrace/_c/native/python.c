/*
 * python.c - the Python stacks of allocations, when the pymemtrace
 * extension is imported in the traced process (native/pybridge.h).
 *
 * The extension registers two callbacks; from then on every recorded
 * allocation appends the calling thread's Python frames (when it holds
 * the GIL) after its native frames, tagged with PMT_NT_PYFRAME_TAG, so
 * they are part of the stack's identity: two Python callers of one C
 * function are two stacks.  The capture writes the code ids' names
 * (capture.c); the report merges the frames (analyses/native.py).
 *
 * Before registration (and in every program without Python) the hook
 * pays one load and one predictable branch.
 */
#include "preload.h"

#define rt pmt_nt_runtime

PMT_NT_EXPORT int
pmt_nt_register_python(int abi, pmt_nt_pystack_fn stack, pmt_nt_pycode_fn code)
{
    if (abi != PMT_NT_PYTHON_ABI || stack == NULL || code == NULL) {
        return -1;
    }
    /* code first: a stack naming a code id is never written before the
       names can be. */
    atomic_store_explicit(&rt.pycode, code, memory_order_release);
    atomic_store_explicit(&rt.pystack, stack, memory_order_release);
    return 0;
}

PMT_NT_EXPORT int
pmt_nt_live_bytes(int64_t *bytes)
{
    int entered;

    if (rt.mode == PMT_NT_COUNT || !atomic_load(&rt.ready)) {
        return -1;
    }
    /* The guard: a SIGTERM arriving while the lock is held here waits
       for it to be released (signals.c). */
    entered = pmt_nt_guard_enter();
    pthread_mutex_lock(&rt.lock);
    *bytes = rt.stacks.total;
    pthread_mutex_unlock(&rt.lock);
    if (entered) {
        pmt_nt_guard_exit();
    }
    return 0;
}

uint32_t
pmt_nt_python_frames(pmt_nt_pystack_fn stack, pmt_frame *frames, uint32_t max)
{
    uint64_t py[PMT_NT_MAX_DEPTH];
    uint32_t n, i;

    if (max > PMT_NT_MAX_DEPTH) {
        max = PMT_NT_MAX_DEPTH;
    }
    n = stack(py, max);
    if (n > max) {
        n = max;
    }
    for (i = 0; i < n; i++) {
        frames[i].code =
            (const void *)(uintptr_t)(PMT_NT_PYFRAME_TAG |
                                      (py[i] & ~PMT_NT_PYFRAME_TAG));
        frames[i].addr = 0;
        frames[i].unused = 0;
    }
    return n;
}
