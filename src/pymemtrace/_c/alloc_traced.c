/*
 * alloc_traced.c - the allocation tracker's view of PyTraceMalloc_Track
 * and PyTraceMalloc_Untrack ("foreign" blocks).
 *
 * Extensions that allocate memory outside Python's allocators report it to
 * tracemalloc with PyTraceMalloc_Track(domain, ptr, size) (numpy: domain
 * 389047, one call per data buffer, whether or not tracemalloc runs).
 * Those calls never reach a PEP 445 hook.  While the tracker runs, the GOT
 * slots through which extensions call the two functions are pointed at
 * the wrappers below (core/gotpatch.h; extensions loaded later are
 * patched from a wrapper of the interpreter's dlopen).  A wrapper calls
 * the real function first, so tracemalloc sees every call and the caller
 * gets its return value unchanged, then records or forgets the block:
 * attributed to the calling thread's Python stack like a raw-domain block
 * (the empty stack when the caller does not hold the GIL), sampled like
 * any block in sampled mode, and counted in a group of its own ("traced").
 *
 * The blocks live in traced_runtime.table, keyed by address only (the
 * domain is ignored: the same address tracked in two domains is one
 * block).  Addresses the table cannot hold (not 16-byte aligned) are
 * counted as dropped.
 *
 * Threading and lock order: GIL, then traced_runtime.lock, then alloc_hooks.c's
 * raw_lock (taken by pmt_alloc_foreign_account without the GIL).  The
 * wrappers may run on any thread, with or without the GIL; start and stop
 * run with the GIL held.  Re-entrancy: the tracker's thread-local guard
 * (pmt_alloc_foreign_enter) is held around the bookkeeping, and a call
 * made while it is set (from inside our own hooks) is not recorded.
 */
#include "native.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "core/gotpatch.h"
#include "core/ptrtable.h"

#define TRACED_SIZE_MASK PMT_PTR_SIZE_MASK
/* Foreign blocks are few and large (data buffers): a small young
   generation (64 entries, 1 KiB). */
#define TRACED_YOUNG_BITS 6

static struct traced_runtime {
    /* Protects table and table_ready; counters are written under it. */
    pthread_mutex_t lock;
    pmt_ptrtable table; /* address -> size | stack id + 1 << 40 */
    int table_ready;
    _Atomic int on;             /* wrappers record; written with the GIL */
    _Atomic int64_t live_bytes; /* blocks in the table */
    _Atomic int64_t live_blocks;
    _Atomic uint64_t tracks; /* calls seen since start */
    _Atomic uint64_t untracks;
    /* Written with the GIL held. */
    int patch_errno;      /* errno of the last install, 0: it worked */
    int patched_at_start; /* slots patched by the last start */
    int installed;        /* our names are installed (until stop) */
    int hooks_removed;    /* a check found our allocator hooks gone */
} trt = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

static const char *const traced_names[2] = {"PyTraceMalloc_Track",
                                            "PyTraceMalloc_Untrack"};

static int traced_track(unsigned int domain, uintptr_t ptr, size_t size);
static int traced_untrack(unsigned int domain, uintptr_t ptr);

/* Our GOT client: installed and removed by these replacements. */
static void *const traced_replacements[2] = {(void *)traced_track,
                                             (void *)traced_untrack};

/* Forget an entry found in the table: counters and stack totals.  Lock
   held. */
static void
drop_value_unlocked(uint64_t value, int with_gil)
{
    size_t size = (size_t)(value & TRACED_SIZE_MASK);

    atomic_fetch_sub_explicit(&trt.live_bytes, (int64_t)size,
                              memory_order_relaxed);
    atomic_fetch_sub_explicit(&trt.live_blocks, 1, memory_order_relaxed);
    pmt_alloc_foreign_account((uint32_t)(value >> PMT_PTR_SIZE_BITS), size, -1,
                              with_gil);
}

static void
record_block(uintptr_t ptr, size_t size)
{
    uint64_t value, old = 0;
    uint32_t sid;
    int with_gil = 0, keep = 0, rc;

    if (!pmt_alloc_foreign_enter(&with_gil)) {
        return;
    }
    sid = pmt_alloc_foreign_sid(size, with_gil, &keep);
    if (!keep) {
        goto done;
    }
    if (size > TRACED_SIZE_MASK) {
        size = TRACED_SIZE_MASK;
    }
    value = ((uint64_t)sid << PMT_PTR_SIZE_BITS) | (uint64_t)size;
    pthread_mutex_lock(&trt.lock);
    if (!trt.table_ready || !atomic_load(&trt.on)) {
        goto out_unlock;
    }
    rc = pmt_ptrtable_put(&trt.table, ptr, value, &old);
    if (rc < 0) {
        goto out_unlock;
    }
    if (rc == 1) {
        /* Tracked again without an untrack in between. */
        drop_value_unlocked(old, with_gil);
    }
    atomic_fetch_add_explicit(&trt.live_bytes, (int64_t)size,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&trt.live_blocks, 1, memory_order_relaxed);
    pmt_alloc_foreign_account(sid, size, +1, with_gil);
out_unlock:
    pthread_mutex_unlock(&trt.lock);
done:
    pmt_alloc_foreign_exit();
}

static void
forget_block(uintptr_t ptr)
{
    uint64_t value;
    int with_gil = 0;

    if (!pmt_alloc_foreign_enter(&with_gil)) {
        return;
    }
    pthread_mutex_lock(&trt.lock);
    if (trt.table_ready && pmt_ptrtable_pop(&trt.table, ptr, &value)) {
        drop_value_unlocked(value, with_gil);
    }
    pthread_mutex_unlock(&trt.lock);
    pmt_alloc_foreign_exit();
}

/* The wrappers the patched GOT slots point to.  This file's own calls go
   through our object's GOT, which is never patched: they reach CPython. */
static int
traced_track(unsigned int domain, uintptr_t ptr, size_t size)
{
    int rc = PyTraceMalloc_Track(domain, ptr, size);

    if (atomic_load_explicit(&trt.on, memory_order_relaxed) && ptr != 0) {
        atomic_fetch_add_explicit(&trt.tracks, 1, memory_order_relaxed);
        record_block(ptr, size);
    }
    return rc;
}

static int
traced_untrack(unsigned int domain, uintptr_t ptr)
{
    int rc = PyTraceMalloc_Untrack(domain, ptr);

    if (atomic_load_explicit(&trt.on, memory_order_relaxed) && ptr != 0) {
        atomic_fetch_add_explicit(&trt.untracks, 1, memory_order_relaxed);
        if (atomic_load_explicit(&trt.live_blocks, memory_order_relaxed) > 0) {
            forget_block(ptr);
        }
    }
    return rc;
}

/* fork(): the child must not inherit the lock held by a thread that does
   not exist there.  fork.c takes it before alloc's raw_lock (the lock
   order: a wrapper holds it while accounting under raw_lock). */
void
pmt_traced_fork_prepare(void)
{
    pthread_mutex_lock(&trt.lock);
}

void
pmt_traced_fork_release(void)
{
    pthread_mutex_unlock(&trt.lock);
}

void
pmt_traced_start(void)
{
    /* The interpreter: where PyTraceMalloc_Track is defined (libpython, or
       the python executable when it is linked statically), and where
       extension modules are loaded from. */
    const void *hosts[1] = {(const void *)&PyTraceMalloc_Track};
    int n;

    pthread_mutex_lock(&trt.lock);
    if (!trt.table_ready) {
        trt.table_ready =
            pmt_ptrtable_init(&trt.table, 256, TRACED_YOUNG_BITS, 0) == 0;
    }
    atomic_store(&trt.live_bytes, 0);
    atomic_store(&trt.live_blocks, 0);
    pthread_mutex_unlock(&trt.lock);
    atomic_store(&trt.tracks, 0);
    atomic_store(&trt.untracks, 0);
    trt.hooks_removed = 0;
    if (!trt.table_ready) {
        trt.patch_errno = ENOMEM;
        trt.patched_at_start = 0;
        return;
    }
    atomic_store(&trt.on, 1);
    /* The interpreter's own calls are not patched (flags 0): only
       extensions report foreign blocks. */
    n = pmt_gotpatch_install(traced_names, traced_replacements, 2, NULL, 0,
                             hosts, 1, 0);
    trt.patch_errno = n < 0 ? errno : 0;
    trt.patched_at_start = n < 0 ? 0 : n;
    trt.installed = n >= 0;
}

void
pmt_traced_stop(void)
{
    atomic_store(&trt.on, 0);
    /* Only our names: another client (core/shrinkwatch) may stay. */
    (void)pmt_gotpatch_remove(traced_replacements, 2);
    trt.installed = 0;
    /* A wrapper still running without the GIL finishes before the table
       goes (it holds the lock) or finds it gone. */
    pthread_mutex_lock(&trt.lock);
    if (trt.table_ready) {
        pmt_ptrtable_fini(&trt.table);
        trt.table_ready = 0;
    }
    atomic_store(&trt.live_bytes, 0);
    atomic_store(&trt.live_blocks, 0);
    pthread_mutex_unlock(&trt.lock);
}

/* ---------------------------------------------------------------- */
/* Are our PEP 445 hooks still in the allocator chains? */

/* Load base of the object holding addr, or NULL. */
static const void *
object_of(const void *addr)
{
    Dl_info info;

    if (addr == NULL || dladdr(addr, &info) == 0) {
        return NULL;
    }
    return info.dli_fbase;
}

/* 1 when the chain from alloc down reaches a hook of this extension's, or
   passes a hook we cannot see through (another tool's: it may well call
   ours); 0 when it ends without ours.  The interpreter's own hooks above
   ours (tracemalloc's) keep the allocator they call in a PyMemAllocatorEx
   that their ctx points to, inside the interpreter: those are followed. */
static int
chain_reaches_us(PyMemAllocatorEx alloc, const void *ours,
                 const void *interpreter)
{
    int step;

    for (step = 0; step < 8; step++) {
        const void *owner;
        if (alloc.malloc == NULL) {
            /* Not an allocator: the ctx followed was not a
               PyMemAllocatorEx (the debug hooks' is not), so the chain
               seen from here is the interpreter's own. */
            return 0;
        }
        owner = object_of((const void *)alloc.malloc);
        if (owner == ours) {
            return 1;
        }
        if (owner != interpreter) {
            return 1; /* another tool's hook: assume it chains */
        }
        if (alloc.ctx == NULL || object_of(alloc.ctx) != interpreter) {
            return 0; /* an allocator of the interpreter's own */
        }
        alloc = *(const PyMemAllocatorEx *)alloc.ctx;
    }
    return 1;
}

int
pmt_traced_check_hooks(void)
{
    static const PyMemAllocatorDomain domains[3] = {
        PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};
    const void *ours = object_of((const void *)pmt_traced_check_hooks);
    const void *interpreter = object_of((const void *)PyMem_Malloc);
    PyMemAllocatorEx alloc;
    int d;

    if (trt.hooks_removed || ours == NULL || interpreter == NULL ||
        ours == interpreter) {
        return 0;
    }
    for (d = 0; d < 3; d++) {
        PyMem_GetAllocator(domains[d], &alloc);
        if (!chain_reaches_us(alloc, ours, interpreter)) {
            trt.hooks_removed = 1;
            return PyErr_WarnEx(PyExc_RuntimeWarning,
                                "allocation hooks were removed by another "
                                "tool; blocks allocated since are not "
                                "tracked",
                                1);
        }
    }
    return 0;
}

void
pmt_traced_counters(int64_t *bytes, int64_t *blocks)
{
    *bytes = atomic_load_explicit(&trt.live_bytes, memory_order_relaxed);
    *blocks = atomic_load_explicit(&trt.live_blocks, memory_order_relaxed);
}

int
pmt_traced_add_stats(PyObject *dict)
{
    pmt_gotpatch_stats_t gs;
    PyObject *memory;
    size_t own_slots = pmt_gotpatch_slots_of(traced_replacements, 2);
    /* The hosts' dlopen slots are shared with other clients: ours while
       we are installed. */
    size_t dlopen_slots;
    size_t table_memory = 0;
    uint64_t drops = 0;

    pmt_gotpatch_stats(&gs);
    dlopen_slots = trt.installed ? gs.dlopen_slots : 0;
    pthread_mutex_lock(&trt.lock);
    if (trt.table_ready) {
        table_memory = pmt_ptrtable_memory(&trt.table);
        drops = trt.table.drops;
    }
    pthread_mutex_unlock(&trt.lock);
    /* The table is part of the tracker's memory. */
    memory = PyDict_GetItemString(dict, "memory"); /* borrowed */
    if (memory != NULL && table_memory > 0) {
        long long total = PyLong_AsLongLong(memory);
        if (total == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (pmt_dict_set_int(dict, "memory", total + (long long)table_memory) <
            0) {
            return -1;
        }
    }
    if (pmt_dict_set_int(dict, "got_patching",
                         pmt_gotpatch_supported() && trt.patch_errno == 0) <
            0 ||
        pmt_dict_set_int(dict, "got_slots",
                         (long long)(own_slots + dlopen_slots)) < 0 ||
        pmt_dict_set_int(dict, "got_dlopen_slots", (long long)dlopen_slots) <
            0 ||
        pmt_dict_set_int(dict, "got_failures", (long long)gs.failures) < 0 ||
        pmt_dict_set_int(dict, "got_rescans", (long long)gs.rescans) < 0 ||
        pmt_dict_set_int(dict, "traced_calls",
                         (long long)atomic_load(&trt.tracks)) < 0 ||
        pmt_dict_set_int(dict, "untraced_calls",
                         (long long)atomic_load(&trt.untracks)) < 0 ||
        pmt_dict_set_int(dict, "traced_blocks",
                         (long long)atomic_load(&trt.live_blocks)) < 0 ||
        pmt_dict_set_int(dict, "traced_bytes",
                         (long long)atomic_load(&trt.live_bytes)) < 0 ||
        pmt_dict_set_int(dict, "dropped_traced", (long long)drops) < 0 ||
        pmt_dict_set_int(dict, "hooks_removed", trt.hooks_removed) < 0) {
        return -1;
    }
    return 0;
}
