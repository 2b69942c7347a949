/*
 * livetable.c - the live allocations of the native tracer: address ->
 * size and stack id (core/ptrtable), and per stack the live and peak
 * bytes and blocks (core/stacktable, the stack machinery the Python
 * allocation tracker uses).
 *
 * Every function here runs with the calling thread's guard set (the
 * tables allocate through malloc, which then goes straight to the real
 * one) and takes pmt_nt_runtime.lock around the tables; the stack is
 * captured before the lock is taken.
 *
 * Sampled mode weighs a recorded block as alloc_hooks.c does: a block of
 * sample_bytes/2 or more stands for itself, a smaller one for
 * sample_bytes bytes and sample_bytes/size blocks.  The weight is a
 * function of the size alone, so a free takes off exactly what the
 * allocation added.
 */
#include "preload.h"

#include <string.h>

#define rt pmt_nt_runtime

/* The process-wide state (see preload.h for who touches what). */
struct pmt_nt_runtime pmt_nt_runtime = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .fd = -1,
};

static size_t
filter_index(uintptr_t addr)
{
    return (size_t)((((uint64_t)addr >> 4) * 0x9E3779B97F4A7C15ull) >>
                    (64 - PMT_NT_FILTER_BITS));
}

/* 0 when addr is surely not in the table (sampled mode), without the
   lock; 1 when it may be (always in exact mode). */
static inline int
maybe_listed(const void *addr)
{
    return rt.filter == NULL ||
           atomic_load_explicit(&rt.filter[filter_index((uintptr_t)addr)],
                                memory_order_relaxed) != 0;
}

/* The lock held. */
static void
filter_change(uintptr_t addr, int delta)
{
    _Atomic uint8_t *c;
    uint8_t v;

    if (rt.filter == NULL) {
        return;
    }
    c = &rt.filter[filter_index(addr)];
    v = atomic_load_explicit(c, memory_order_relaxed);
    if (v != 255 && (delta > 0 || v != 0)) {
        atomic_store_explicit(c, (uint8_t)(v + delta), memory_order_relaxed);
    }
}

int
pmt_nt_table_init(void)
{
    unsigned young_bits = rt.mode == PMT_NT_SAMPLED ? 8 : 14;

    if (rt.mode == PMT_NT_COUNT) {
        return 0;
    }
    if (pmt_ptrtable_init(&rt.ptrs, 1024, young_bits, 0) < 0) {
        return -1;
    }
    /* Stack ids are the ptrtable's 21-bit tags. */
    if (pmt_stacktable_init(&rt.stacks, PMT_PTR_TAG_MAX) < 0) {
        pmt_ptrtable_fini(&rt.ptrs);
        return -1;
    }
    rt.filter = NULL;
    if (rt.mode == PMT_NT_SAMPLED) {
        rt.filter = rt.real.calloc(PMT_NT_FILTER_SIZE, 1);
        if (rt.filter == NULL) {
            pmt_stacktable_fini(&rt.stacks);
            pmt_ptrtable_fini(&rt.ptrs);
            return -1;
        }
    }
    return 0;
}

void
pmt_nt_weight_of(uint64_t size, int64_t *bytes, int64_t *blocks)
{
    if (rt.mode != PMT_NT_SAMPLED || size == 0 ||
        size >= rt.sample_exact_from) {
        *bytes = (int64_t)size;
        *blocks = 1;
        return;
    }
    *bytes = (int64_t)rt.sample_bytes;
    *blocks = (int64_t)((rt.sample_bytes + size / 2) / size);
}

/* The counters of stack id, grown with the stack table; NULL when out of
   memory (the summary then misses these calls).  The lock held. */
static struct pmt_nt_site *
site_of(uint32_t id)
{
    struct pmt_nt_site *grown;
    uint32_t cap;

    if (PMT_NT_LIKELY(id < rt.sites_cap)) {
        return &rt.sites[id];
    }
    cap = rt.sites_cap ? rt.sites_cap : 1024;
    while (cap <= id) {
        cap *= 2;
    }
    grown = rt.real.realloc(rt.sites, (size_t)cap * sizeof(*grown));
    if (grown == NULL) {
        return NULL;
    }
    memset(grown + rt.sites_cap, 0,
           (size_t)(cap - rt.sites_cap) * sizeof(*grown));
    rt.sites = grown;
    rt.sites_cap = cap;
    return &rt.sites[id];
}

/* How a change of the table counts in the per-site summary. */
enum {
    NOT_COUNTED = 0,
    COUNTED = 1
};

/* Count n (1, or -1 to undo) allocations (freed 0) or frees (freed 1) of
   the block `value` describes in its stack's summary. */
static void
site_count_unlocked(uint64_t value, int freed, int64_t n)
{
    uint32_t id = (uint32_t)(value >> PMT_PTR_SIZE_BITS);
    struct pmt_nt_site *site;
    int64_t bytes, blocks;

    if (id >= rt.stacks.count || (site = site_of(id)) == NULL) {
        return;
    }
    pmt_nt_weight_of(value & PMT_PTR_SIZE_MASK, &bytes, &blocks);
    if (freed) {
        site->frees += (uint64_t)(n * blocks);
        site->bytes_freed += (uint64_t)(n * bytes);
    }
    else {
        site->allocs += (uint64_t)(n * blocks);
        site->bytes_alloc += (uint64_t)(n * bytes);
    }
    site->dirty = 1;
}

/* Add (sign 1) or take off (sign -1) the block `value` describes to its
   stack; when counted, an allocation or a free of that stack too. */
static void
account_value_unlocked(uint64_t value, int sign, int counted)
{
    uint32_t id = (uint32_t)(value >> PMT_PTR_SIZE_BITS);
    int64_t bytes, blocks;

    if (id >= rt.stacks.count) {
        return;
    }
    pmt_nt_weight_of(value & PMT_PTR_SIZE_MASK, &bytes, &blocks);
    pmt_stacktable_account(&rt.stacks, id, sign * bytes, sign * blocks);
    if (counted) {
        site_count_unlocked(value, sign < 0, 1);
    }
}

void
pmt_nt_maybe_dump_unlocked(void)
{
    uint64_t now;

    if (++rt.events < rt.next_check) {
        return;
    }
    /* The clock (a vDSO call) is read every 1024 events only. */
    rt.next_check = rt.events + 1024;
    now = pmt_nt_now_ns();
    if (now - rt.last_dump_ns >= rt.interval_ns) {
        pmt_nt_capture_dump_unlocked(0);
        rt.last_dump_ns = now;
    }
}

/* Put addr -> value in the table, accounting it (the lock held). */
static void
put_unlocked(uintptr_t addr, uint64_t value, int counted)
{
    uint64_t old = 0;
    int rc = pmt_ptrtable_put(&rt.ptrs, addr, value, &old);

    if (rc == 1) {
        /* A stale entry (a free we did not see): its bytes go, and it
           counts as freed (allocations minus frees stays what is live). */
        account_value_unlocked(old, -1, COUNTED);
    }
    if (rc >= 0) {
        account_value_unlocked(value, 1, counted);
    }
    if (rc == 0) {
        filter_change(addr, 1);
    }
}

void
pmt_nt_record_alloc(void *ptr, size_t size, void *caller)
{
    pmt_frame frames[2 * PMT_NT_MAX_DEPTH];
    pmt_nt_pystack_fn pystack;
    uint32_t n, id;
    uint64_t hash;
    int added = 0;

    if (rt.mode == PMT_NT_COUNT) {
        return;
    }
    if (rt.mode == PMT_NT_SAMPLED && !pmt_nt_sample_hit(size)) {
        return;
    }
    if (size > PMT_PTR_SIZE_MASK) {
        size = PMT_PTR_SIZE_MASK;
    }
    n = pmt_nt_stack_capture(frames, rt.depth, caller);
    pystack = atomic_load_explicit(&rt.pystack, memory_order_acquire);
    if (PMT_NT_UNLIKELY(pystack != NULL)) {
        n += pmt_nt_python_frames(pystack, frames + n, (uint32_t)rt.depth);
    }
    hash = pmt_stack_hash(frames, n);
    pthread_mutex_lock(&rt.lock);
    if (atomic_load_explicit(&rt.on, memory_order_relaxed)) {
        id = pmt_stacktable_intern(&rt.stacks, hash, frames, n, &added);
        if (id != PMT_STACK_NONE) {
            put_unlocked((uintptr_t)ptr,
                         (uint64_t)size | (uint64_t)id << PMT_PTR_SIZE_BITS,
                         COUNTED);
        }
        pmt_nt_maybe_dump_unlocked();
    }
    pthread_mutex_unlock(&rt.lock);
}

/* Remove ptr from the table: 1 and its value in *value when it was
   there (its bytes are taken off), else 0.  The lock held. */
static int
take_unlocked(void *ptr, uint64_t *value, int counted)
{
    if (!pmt_ptrtable_pop(&rt.ptrs, (uintptr_t)ptr, value)) {
        if (rt.mode == PMT_NT_EXACT) {
            rt.unknown_frees++;
        }
        return 0;
    }
    account_value_unlocked(*value, -1, counted);
    filter_change((uintptr_t)ptr, -1);
    return 1;
}

void
pmt_nt_record_free(void *ptr)
{
    uint64_t value;

    if (rt.mode == PMT_NT_COUNT || !maybe_listed(ptr)) {
        return;
    }
    pthread_mutex_lock(&rt.lock);
    if (atomic_load_explicit(&rt.on, memory_order_relaxed)) {
        take_unlocked(ptr, &value, COUNTED);
        pmt_nt_maybe_dump_unlocked();
    }
    pthread_mutex_unlock(&rt.lock);
}

void
pmt_nt_record_munmap(void *addr, size_t len)
{
    uint64_t value, size;

    pmt_nt_count(0, 1, 0);
    if (rt.mode == PMT_NT_COUNT || !maybe_listed(addr)) {
        return;
    }
    pthread_mutex_lock(&rt.lock);
    if (atomic_load_explicit(&rt.on, memory_order_relaxed) &&
        take_unlocked(addr, &value, NOT_COUNTED)) {
        /* Unmapping the head of a mapping leaves its tail live, under the
           same stack (a hole in the middle is counted as the whole); the
           mapping counts as freed when its last part goes. */
        size = value & PMT_PTR_SIZE_MASK;
        len = (len + 4095) & ~(size_t)4095;
        if (len < size) {
            put_unlocked((uintptr_t)addr + len,
                         (value & ~PMT_PTR_SIZE_MASK) | (size - len),
                         NOT_COUNTED);
        }
        else {
            site_count_unlocked(value, 1, 1);
        }
    }
    pthread_mutex_unlock(&rt.lock);
}

void *
pmt_nt_realloc_traced(void *old, size_t size, void *caller)
{
    uint64_t value = 0;
    int had = 0;
    void *ptr;

    pmt_nt_count(0, 1, 0);
    if (rt.mode != PMT_NT_COUNT && maybe_listed(old)) {
        pthread_mutex_lock(&rt.lock);
        had = take_unlocked(old, &value, COUNTED);
        pthread_mutex_unlock(&rt.lock);
    }
    ptr = rt.real.realloc(old, size);
    if (ptr == NULL) {
        if (had && size != 0) {
            /* Failed: the old block is still live. */
            pthread_mutex_lock(&rt.lock);
            site_count_unlocked(value, 1, -1);
            put_unlocked((uintptr_t)old, value, NOT_COUNTED);
            pthread_mutex_unlock(&rt.lock);
        }
        return NULL;
    }
    pmt_nt_count(1, 0, size);
    pmt_nt_record_alloc(ptr, size, caller);
    return ptr;
}
