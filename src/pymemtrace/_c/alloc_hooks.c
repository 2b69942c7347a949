/*
 * alloc_hooks.c - PEP 445 allocator hooks: always-on live-byte counters and
 * the allocation tracker (exact or sampled, with interned Python stacks).
 * Their Python functions are in alloc_api.c, which drives this file through
 * alloc.h; alloc_traced.c reports foreign blocks here (pmt_alloc_foreign_*).
 * This file calls neither: the calls go one way.
 *
 * Model: CPython's Python/tracemalloc.c.  What differs, and why:
 *   - Bookkeeping memory comes from the C library's malloc, not from the
 *     saved allocator: when tracemalloc sits below us its raw hook takes the
 *     GIL, and calling it while we hold our raw-table mutex would invert
 *     the lock order.  libc malloc never re-enters any Python hook.
 *   - A live block costs one 12-byte slot (address/16 and stack id in 64
 *     bits, size in 32) of a flat open-addressing array, behind an
 *     direct-mapped young generation where most blocks live and
 *     die (core/ptrtable.c); tracemalloc mallocs a trace per allocation.  Per-stack live totals are kept
 *     incrementally (core/stacktable.c), so a snapshot scans stacks, not
 *     allocations, and the live set at the peak is kept exactly by a lazy
 *     copy on write (see stacktable.h).
 *   - Code objects are kept by strong reference in interned stacks and
 *     line numbers are resolved at snapshot time, so the hot path never
 *     creates a Python object.
 *
 * Threading model and lock order (GIL, then raw_lock):
 *   - MEM and OBJ domain hooks run with the GIL held (PEP 445 requires it
 *     on GIL builds): gil_table, the stack table and the MEM/OBJ counters
 *     are protected by the GIL, no lock of ours on that path.
 *   - RAW domain hooks may run without the GIL.  raw_table, the pending
 *     queue and the RAW counters are protected by raw_lock.  A RAW call
 *     made by a thread holding the GIL attributes the block to its Python
 *     stack and updates the stack totals directly (it holds the GIL); a
 *     RAW call without the GIL cannot read frames nor touch the stack
 *     table: it attributes the block to the empty stack ("no Python
 *     frame") or, on free, queues the stack-total change in `pending`,
 *     applied by the next RAW call with the GIL or by a snapshot.
 *   - Nothing is called while raw_lock is held except libc malloc/free.
 *   - Free-threaded builds (Py_GIL_DISABLED) are refused at start: the
 *     GIL-protected side would need its own lock.
 *
 * Re-entrancy: a thread-local guard is set around the call to the saved
 * allocator (pymalloc serves blocks over 512 bytes with PyMem_RawMalloc,
 * which would otherwise be counted twice) and around snapshot building.
 *
 * Start/stop ordering: hooks are installed and tables ready before
 * `active`/`mode` are switched on; they are switched off before the hooks
 * are removed or the tables freed; RAW hooks re-check `active` after
 * taking raw_lock.  When another tool (tracemalloc) has installed its hooks
 * on top of ours, ours are left in the chain as pass-through hooks instead
 * of being removed (removing them would remove the other tool's too).
 */
#include "native.h"
#include "alloc.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ptrtable.h"
#include "core/stacktable.h"

#define PMT_TLS __thread __attribute__((tls_model("initial-exec")))

enum {
    DOM_RAW = 0,
    DOM_MEM = 1,
    DOM_OBJ = 2,
    NDOMAINS = 3
};
enum {
    MODE_OFF = PMT_TRACKER_OFF,
    MODE_EXACT = PMT_TRACKER_EXACT,
    MODE_SAMPLED = PMT_TRACKER_SAMPLED
};

/* Bits of rt.state. */
#define ST_ACTIVE 1
#define ST_COUNTING 2
#define ST_EXACT 4
#define ST_SAMPLED 8
#define STATE() atomic_load_explicit(&rt.state, memory_order_relaxed)

#define MAX_DEPTH PMT_TRACKER_MAX_DEPTH
/* A table value: size in the low 40 bits, stack id + 1 above (21 bits;
   0: the block is counted but attributed to no stack). */
#define SIZE_BITS 40
#define SIZE_MASK ((UINT64_C(1) << SIZE_BITS) - 1)
#define MAX_STACKS (PMT_PTR_TAG_MAX - 1)
#define VALUE_SIZE(v) ((size_t)((v)&SIZE_MASK))
#define VALUE_SID(v) ((uint32_t)((v) >> SIZE_BITS))

/* The hooks every allocation runs: aligned to a cache line, so that their
   speed does not depend on where the linker happens to place them (a
   neighbour's size moved them by a few bytes and sampled mode by 3%). */
#define PMT_HOT __attribute__((aligned(64)))

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Relaxed read-modify-write by the single writer of a counter (the GIL or
   raw_lock serialises writers); readers may load at any time. */
#define COUNTER_ADD(c, d)                                                     \
    atomic_store_explicit(                                                    \
        &(c), atomic_load_explicit(&(c), memory_order_relaxed) + (d),         \
        memory_order_relaxed)

/* One installation of our hooks: what it calls through.  Never freed: a
   hook left in another tool's chain may call it until the process ends
   (alloc_runtime.ctx_pool serves all installations but those). */
typedef struct {
    PyMemAllocatorEx orig; /* the allocator below ours */
    int domain;            /* DOM_* */
} hook_ctx;

/* A stack-total change queued by a RAW call made without the GIL. */
typedef struct {
    uint32_t sid;  /* stack id + 1 */
    int32_t sign;  /* +1 alloc, -1 free */
    uint64_t size; /* block size */
} pending_op;

/* Hook contexts kept for reuse.  One would do but for another tool that
   hooks on top of ours and outlives our stop (see uninstall_hooks). */
#define CTX_POOL 8

static struct alloc_runtime {
    /* Hooks: written with the GIL held, by start/stop/acquire/release. */
    hook_ctx *ctx; /* ctx[NDOMAINS] of the installation on top,
                               NULL when ours are not installed by us */
    hook_ctx ctx_pool[CTX_POOL][NDOMAINS]; /* installations reuse these */
    unsigned char pool_chained[CTX_POOL];  /* an uninstall found that entry
                               not on top: it may still be linked below
                               another tool, so it is not reused */
    int counting_users;       /* pmt_alloc_counting_acquire() holders */
    int depth;                /* frames per stack (tracker) */
    double sample_bytes;      /* mean sampling interval in bytes (I) */
    size_t sample_exact_from; /* blocks this big or more are all recorded
                               (ceil(I/2), see next_gap) */
    size_t sample_fast_max;   /* the sampled fast paths take sizes up to
                               this: below sample_exact_from and served by
                               pymalloc (no nested call to guard against) */
    uint64_t seed;            /* seed of the sampling RNG, 0: from time */

    /* Read by every hook; written with the GIL held. */
    _Atomic int active;          /* 1 while hooks must record anything */
    _Atomic int counting;        /* 1 while every block goes to the tables */
    _Atomic int mode;            /* MODE_* of the tracker */
    _Atomic uint32_t sample_gen; /* bumped at each start, resets TLS */
    _Atomic int state;           /* ST_* bits derived from the three above by
                               publish_state(): the one word hooks read */

    /* Protected by the GIL. */
    pmt_ptrtable gil_table; /* MEM and OBJ blocks */
    pmt_stacktable stacks;  /* interned stacks with live/peak totals */
    uint32_t nogil_sid;     /* sid of the empty stack (no Python frame) */
    struct {
        uint64_t hash;      /* stack hash, 0: empty */
        uint32_t sid;       /* its sid */
    } sid_cache[256];       /* direct-mapped, by the hash's top byte;
                               cleared with the stack table */
    const void *base_frame; /* stacks stop below this frame (set by the
                               CLI around the script it runs), or NULL */
    int tables_ready;       /* gil_table/raw_table initialised */
    size_t max_traces;      /* cap per table, 0: none */
    int64_t started_ns;     /* monotonic time of start */

    /* Protected by raw_lock. */
    pthread_mutex_t raw_lock;
    pmt_ptrtable raw_table; /* RAW blocks */
    pending_op *pending;    /* queued stack changes */
    size_t npending;
    size_t pending_cap;
    uint64_t pending_drops;
    _Atomic size_t raw_count; /* raw_table.count, for a lock-free "empty" */

    /* Live blocks per domain; written under the GIL (MEM, OBJ) or
       raw_lock (RAW), read anywhere. */
    _Atomic int64_t live_bytes[NDOMAINS];
    _Atomic int64_t live_blocks[NDOMAINS];
} rt = {
    .raw_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* Per thread: re-entrancy guard and the sampler's countdown. */
/* One thread-local block: the hooks reach it through a single GOT entry
   (a separate variable each costs a load of its own). */
static PMT_TLS struct {
    int guard;         /* re-entrancy guard */
    uint32_t gen;      /* sample_gen the countdown belongs to */
    int64_t countdown; /* bytes to the next sample */
    uint64_t rng;      /* the sampler's RNG state */
} tls;

/* Error raised on the next Python call when a hook had to give up. */
static const char *const domain_names[NDOMAINS] = {"raw", "mem", "obj"};

/* ---------------------------------------------------------------- */
/* Sampling */

static uint64_t
rng_next(void)
{
    /* xorshift64* */
    uint64_t x = tls.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tls.rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* A uniform double in [0, 1). */
static inline double
unit_random(void)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static int64_t
clamp_gap(double gap)
{
    if (gap < 1.0) {
        return 1;
    }
    if (gap > 9.0e18) {
        return INT64_MAX;
    }
    return (int64_t)gap;
}

/* Sampling is a renewal process over the bytes a thread allocates: the
   gaps between samples are uniform in [I/2, 3I/2] (I = sample_bytes).
   Every byte has the same chance 1/I of holding a sample, as with Poisson
   (exponential) gaps, but the number of samples that fall in a site's
   bytes varies far less: for 10 MB at I = 512 KiB its relative error is
   about 6% where Poisson's is 23%.  A block smaller than the shortest gap
   holds at most one sample, with probability exactly size/I: it stands for
   I bytes and I/size blocks (weight_of).  Blocks of I/2 bytes or more are
   all recorded, exactly, outside the countdown. */
static int64_t
next_gap(void)
{
    return clamp_gap(rt.sample_bytes * (0.5 + unit_random()));
}

/* A thread's first gap, from the gaps' equilibrium distribution (density
   P(gap > x)/I: flat on [0, I/2), then falling to 0 at 3I/2, half the
   mass each), so the bytes it allocates first are sampled like any
   others. */
static int64_t
first_gap(void)
{
    double interval = rt.sample_bytes;
    double u = unit_random(), v = unit_random();

    if (u < 0.5) {
        return clamp_gap(0.5 * interval * v);
    }
    return clamp_gap(1.5 * interval - interval * sqrt(v));
}

static void
reseed_thread(uint32_t gen)
{
    static _Atomic uint64_t thread_counter;
    uint64_t n = atomic_fetch_add(&thread_counter, 1) + 1;
    uint64_t seed = rt.seed;

    if (seed == 0) {
        seed = (uint64_t)(uintptr_t)&tls.rng ^ (uint64_t)time(NULL);
    }
    tls.rng = (seed + n * 0x9E3779B97F4A7C15ull) | 1;
    if (rt.seed != 0) {
        /* Deterministic per thread order, for tests. */
        tls.rng = (seed * 0x9E3779B97F4A7C15ull + (n - 1)) | 1;
    }
    tls.gen = gen;
    tls.countdown = first_gap();
}

/* 1 when the allocation of size bytes is sampled.  The countdown of a
   thread that has not sampled since an earlier start keeps that start's
   interval until its next sample (alloc_start resets the calling
   thread's). */
static inline int
sample_hit(size_t size)
{
    uint32_t gen;

    if (UNLIKELY(size >= rt.sample_exact_from)) {
        return 1;
    }
    tls.countdown -= (int64_t)size;
    if (LIKELY(tls.countdown > 0)) {
        return 0;
    }
    gen = atomic_load_explicit(&rt.sample_gen, memory_order_relaxed);
    if (UNLIKELY(tls.gen != gen)) {
        reseed_thread(gen);
        tls.countdown -= (int64_t)size;
        if (tls.countdown > 0) {
            return 0;
        }
    }
    /* The sample fell inside this block; the next one is a gap further
       on (the block is shorter than any gap: the countdown ends > 0). */
    tls.countdown += next_gap();
    return 1;
}

/* What one recorded block of size bytes stands for in the totals: itself
   in exact mode and for blocks of I/2 bytes or more; I bytes and I/size
   blocks for a sampled smaller block (sampled with probability size/I). */
static inline void
weight_of(size_t size, int64_t *bytes, int64_t *blocks)
{
    if (!(STATE() & ST_SAMPLED) || size == 0 || size >= rt.sample_exact_from) {
        *bytes = (int64_t)size;
        *blocks = 1;
        return;
    }
    *bytes = (int64_t)llround(rt.sample_bytes);
    *blocks = (int64_t)llround(rt.sample_bytes / (double)size);
}

/* ---------------------------------------------------------------- */
/* Stacks (GIL held) */

/* sid (id + 1) of a stack not in the cache: found in the table, or
   interned (its frames copied) when new.  0 when the table is full. */
static __attribute__((noinline)) uint32_t
lookup_sid(uint64_t hash, uint32_t n)
{
    pmt_frame frames[MAX_DEPTH];
    uint32_t i, id;
    int added = 0;
    unsigned slot = (unsigned)(hash >> 56);

    id = pmt_stacktable_find(&rt.stacks, hash, n);
    if (id == PMT_STACK_NONE) {
        n = pmt_collect_frames(frames, (uint32_t)rt.depth, &hash,
                               rt.base_frame);
        id = pmt_stacktable_intern(&rt.stacks, hash, frames, n, &added);
        if (id == PMT_STACK_NONE) {
            return 0;
        }
        if (added) {
            for (i = 0; i < n; i++) {
                Py_INCREF((PyObject *)frames[i].code);
            }
        }
    }
    rt.sid_cache[slot].hash = hash;
    rt.sid_cache[slot].sid = id + 1;
    return id + 1;
}

/* sid (id + 1) of the calling thread's stack, 0 when the table is full.
   The hash alone identifies a known stack: a walk and a cache probe. */
static inline __attribute__((always_inline)) uint32_t
current_sid(void)
{
    uint32_t n;
    uint64_t hash = pmt_stack_hash_walk((uint32_t)rt.depth, rt.base_frame, &n);
    unsigned slot = (unsigned)(hash >> 56);

    if (LIKELY(rt.sid_cache[slot].hash == hash)) {
        return rt.sid_cache[slot].sid;
    }
    return lookup_sid(hash, n);
}

/* sid for a new block, or 0 when it is only counted.  GIL held. */
static inline uint32_t
choose_sid(int st, size_t size)
{
    if (st & ST_EXACT) {
        return current_sid();
    }
    if ((st & ST_SAMPLED) && sample_hit(size)) {
        return current_sid();
    }
    return 0;
}

static inline void
account_unlocked(uint32_t sid, size_t size, int sign)
{
    int64_t bytes, blocks;

    weight_of(size, &bytes, &blocks);
    pmt_stacktable_account(&rt.stacks, sid - 1, sign * bytes, sign * blocks);
}

/* GIL and raw_lock held. */
static void
apply_pending_unlocked(void)
{
    size_t i;

    for (i = 0; i < rt.npending; i++) {
        pending_op *op = &rt.pending[i];
        if (op->sid != 0 && op->sid - 1 < rt.stacks.count) {
            account_unlocked(op->sid, (size_t)op->size, op->sign);
        }
    }
    rt.npending = 0;
}

/* raw_lock held, GIL not held. */
static void
queue_pending_unlocked(uint32_t sid, size_t size, int sign)
{
    if (rt.npending == rt.pending_cap) {
        size_t cap = rt.pending_cap ? rt.pending_cap * 2 : 256;
        pending_op *ops;
        if (cap > ((size_t)1 << 24)) {
            rt.pending_drops++;
            return;
        }
        ops = realloc(rt.pending, cap * sizeof(pending_op));
        if (ops == NULL) {
            rt.pending_drops++;
            return;
        }
        rt.pending = ops;
        rt.pending_cap = cap;
    }
    rt.pending[rt.npending].sid = sid;
    rt.pending[rt.npending].sign = sign;
    rt.pending[rt.npending].size = size;
    rt.npending++;
}

/* ---------------------------------------------------------------- */
/* Recording: MEM and OBJ (GIL held) */

/* 1 and the entry's value in *value when ptr was recorded. */
/* Counters and stack totals of a block removed from gil_table. */
static inline __attribute__((always_inline)) void
gil_forget(int domain, uint64_t value)
{
    COUNTER_ADD(rt.live_bytes[domain], -(int64_t)VALUE_SIZE(value));
    COUNTER_ADD(rt.live_blocks[domain], -1);
    if (VALUE_SID(value) != 0) {
        account_unlocked(VALUE_SID(value), VALUE_SIZE(value), -1);
    }
}

/* 1 and the entry's value in *value when ptr was recorded. */
static inline __attribute__((always_inline)) int
gil_remove(int domain, void *ptr, uint64_t *out)
{
    uint64_t value;

    if (!pmt_ptrtable_pop(&rt.gil_table, (uintptr_t)ptr, &value)) {
        return 0;
    }
    *out = value;
    gil_forget(domain, value);
    return 1;
}

/* Counters and stack totals of a block added to gil_table. */
static inline __attribute__((always_inline)) void
gil_remember(int domain, uint64_t value)
{
    COUNTER_ADD(rt.live_bytes[domain], (int64_t)VALUE_SIZE(value));
    COUNTER_ADD(rt.live_blocks[domain], 1);
    if (VALUE_SID(value) != 0) {
        account_unlocked(VALUE_SID(value), VALUE_SIZE(value), +1);
    }
}

/* gil_insert's general case: through the table's own put. */
static __attribute__((noinline)) void
gil_insert_slow(int domain, void *ptr, uint64_t value)
{
    uint64_t old = 0;
    int rc = pmt_ptrtable_put(&rt.gil_table, (uintptr_t)ptr, value, &old);

    if (rc < 0) {
        return;
    }
    if (rc == 1) {
        /* A stale entry: its free went past us (another tool removed our
           hooks for a while).  Forget it. */
        gil_forget(domain, old);
    }
    gil_remember(domain, value);
}

static inline uint64_t
make_value(size_t size, uint32_t sid)
{
    return ((uint64_t)sid << SIZE_BITS) |
           (size > SIZE_MASK ? SIZE_MASK : (uint64_t)size);
}

/* Into young entry y (ptr's), when free, else the general way. */
static inline __attribute__((always_inline)) void
gil_insert_at(pmt_ptr_young *y, int domain, void *ptr, uint64_t value)
{
    /* The common case inline: a free young entry (blocks die young, and
       an allocator hands an address back to the entry it left). */
    if (LIKELY(y->addr == 0 &&
               pmt_ptrtable_young_ok(&rt.gil_table, (uintptr_t)ptr))) {
        y->addr = (uintptr_t)ptr;
        y->value = value;
        rt.gil_table.count++;
        gil_remember(domain, value);
        return;
    }
    gil_insert_slow(domain, ptr, value);
}

static inline void
gil_insert(int domain, void *ptr, size_t size, uint32_t sid)
{
    pmt_ptr_young *y =
        &rt.gil_table
             .young[pmt_ptrtable_young_index(&rt.gil_table, (uintptr_t)ptr)];

    gil_insert_at(y, domain, ptr, make_value(size, sid));
}

static inline __attribute__((always_inline)) void
gil_track(int st, int domain, void *ptr, size_t size)
{
    pmt_ptr_young *y =
        &rt.gil_table
             .young[pmt_ptrtable_young_index(&rt.gil_table, (uintptr_t)ptr)];
    uint32_t sid;

    /* An entry in ptr's young slot will move to the main table: fetch
       its line there while the stack is read. */
    if (y->addr != 0) {
        pmt_ptrtable_prefetch_home(&rt.gil_table, y->addr);
    }
    sid = choose_sid(st, size);
    if (sid == 0 && !(st & ST_COUNTING)) {
        return;
    }
    gil_insert_at(y, domain, ptr, make_value(size, sid));
}

/* ---------------------------------------------------------------- */
/* Recording: RAW (GIL maybe not held) */

static inline int
gil_held(void)
{
    PyThreadState *mine = PyGILState_GetThisThreadState();
#if PMT_PY313_PLUS
    return mine != NULL && mine == PyThreadState_GetUnchecked();
#else
    return mine != NULL && mine == _PyThreadState_UncheckedGet();
#endif
}

static int
raw_remove_unlocked(void *ptr, int with_gil, uint64_t *out)
{
    uint64_t value;

    if (!pmt_ptrtable_pop(&rt.raw_table, (uintptr_t)ptr, &value)) {
        return 0;
    }
    *out = value;
    atomic_store_explicit(&rt.raw_count, rt.raw_table.count,
                          memory_order_relaxed);
    COUNTER_ADD(rt.live_bytes[DOM_RAW], -(int64_t)VALUE_SIZE(value));
    COUNTER_ADD(rt.live_blocks[DOM_RAW], -1);
    if (VALUE_SID(value) != 0) {
        if (with_gil) {
            account_unlocked(VALUE_SID(value), VALUE_SIZE(value), -1);
        }
        else {
            queue_pending_unlocked(VALUE_SID(value), VALUE_SIZE(value), -1);
        }
    }
    return 1;
}

static void
raw_remove(void *ptr)
{
    uint64_t value;
    int with_gil;

    if (atomic_load_explicit(&rt.raw_count, memory_order_relaxed) == 0) {
        return;
    }
    with_gil = gil_held();
    pthread_mutex_lock(&rt.raw_lock);
    if (STATE()) {
        if (with_gil) {
            apply_pending_unlocked();
        }
        (void)raw_remove_unlocked(ptr, with_gil, &value);
    }
    pthread_mutex_unlock(&rt.raw_lock);
}

static void
raw_insert(void *ptr, size_t size, uint32_t sid, int with_gil)
{
    uint64_t old = 0;
    uint64_t value = ((uint64_t)sid << SIZE_BITS) |
                     (size > SIZE_MASK ? SIZE_MASK : (uint64_t)size);
    int rc;

    pthread_mutex_lock(&rt.raw_lock);
    if (!STATE()) {
        goto out_unlock;
    }
    if (with_gil) {
        apply_pending_unlocked();
    }
    rc = pmt_ptrtable_put(&rt.raw_table, (uintptr_t)ptr, value, &old);
    if (rc < 0) {
        goto out_unlock;
    }
    atomic_store_explicit(&rt.raw_count, rt.raw_table.count,
                          memory_order_relaxed);
    if (rc == 1) {
        COUNTER_ADD(rt.live_bytes[DOM_RAW], -(int64_t)VALUE_SIZE(old));
        COUNTER_ADD(rt.live_blocks[DOM_RAW], -1);
        if (VALUE_SID(old) != 0) {
            if (with_gil) {
                account_unlocked(VALUE_SID(old), VALUE_SIZE(old), -1);
            }
            else {
                queue_pending_unlocked(VALUE_SID(old), VALUE_SIZE(old), -1);
            }
        }
    }
    COUNTER_ADD(rt.live_bytes[DOM_RAW], (int64_t)VALUE_SIZE(value));
    COUNTER_ADD(rt.live_blocks[DOM_RAW], 1);
    if (sid != 0) {
        if (with_gil) {
            account_unlocked(sid, VALUE_SIZE(value), +1);
        }
        else {
            queue_pending_unlocked(sid, VALUE_SIZE(value), +1);
        }
    }
out_unlock:
    pthread_mutex_unlock(&rt.raw_lock);
}

static void
raw_track(int st, void *ptr, size_t size)
{
    int with_gil = gil_held();
    uint32_t sid = 0;

    if (with_gil) {
        sid = choose_sid(st, size);
    }
    else if ((st & ST_EXACT) || ((st & ST_SAMPLED) && sample_hit(size))) {
        sid = rt.nogil_sid;
    }
    if (sid == 0 && !(st & ST_COUNTING)) {
        return;
    }
    raw_insert(ptr, size, sid, with_gil);
}

/* ---------------------------------------------------------------- */
/* The hooks.  GIL domains (MEM, OBJ) and RAW get their own functions so
   the hot path has no domain test. */

static inline void
track(int st, int domain, void *ptr, size_t size)
{
    if (domain == DOM_RAW) {
        raw_track(st, ptr, size);
    }
    else {
        gil_track(st, domain, ptr, size);
    }
}

/* pymalloc serves requests up to this size itself; larger ones go to
   PyMem_RawMalloc, the only nested call our guard must stop. */
#define PYMALLOC_THRESHOLD 512
#define ST_SAMPLED_ONLY (ST_ACTIVE | ST_SAMPLED)

/* The general malloc/calloc hooks. */
#define DEFINE_ALLOC_HOOKS(SUFFIX, DOMAIN_EXPR)                               \
    static __attribute__((noinline)) void *hook_malloc_##SUFFIX(void *ctx,    \
                                                                size_t size)  \
    {                                                                         \
        hook_ctx *h = (hook_ctx *)ctx;                                        \
        void *ptr;                                                            \
        int st;                                                               \
        if (tls.guard) {                                                      \
            return h->orig.malloc(h->orig.ctx, size);                         \
        }                                                                     \
        tls.guard = 1;                                                        \
        ptr = h->orig.malloc(h->orig.ctx, size);                              \
        st = STATE();                                                         \
        if (ptr != NULL && st) {                                              \
            track(st, DOMAIN_EXPR, ptr, size);                                \
        }                                                                     \
        tls.guard = 0;                                                        \
        return ptr;                                                           \
    }                                                                         \
                                                                              \
    static void *hook_calloc_##SUFFIX(void *ctx, size_t nelem, size_t elsize) \
    {                                                                         \
        hook_ctx *h = (hook_ctx *)ctx;                                        \
        void *ptr;                                                            \
        int st;                                                               \
        if (tls.guard) {                                                      \
            return h->orig.calloc(h->orig.ctx, nelem, elsize);                \
        }                                                                     \
        tls.guard = 1;                                                        \
        ptr = h->orig.calloc(h->orig.ctx, nelem, elsize);                     \
        st = STATE();                                                         \
        /* calloc succeeded, so the product did not overflow */               \
        if (ptr != NULL && st) {                                              \
            track(st, DOMAIN_EXPR, ptr, nelem *elsize);                       \
        }                                                                     \
        tls.guard = 0;                                                        \
        return ptr;                                                           \
    }

DEFINE_ALLOC_HOOKS(gil_slow, h->domain)
DEFINE_ALLOC_HOOKS(raw, DOM_RAW)

/* The MEM/OBJ malloc and calloc hooks: sampled mode's fast path is one
   subtract and compare, then a tail call to the allocator (no nested call
   to guard against below pymalloc's threshold); the rest goes to the
   general hook, kept out of line so this one needs no stack frame. */
static PMT_HOT void *
hook_malloc_gil(void *ctx, size_t size)
{
    if (STATE() == ST_SAMPLED_ONLY && size <= rt.sample_fast_max &&
        !tls.guard) {
        hook_ctx *h = (hook_ctx *)ctx;
        if (LIKELY((tls.countdown -= (int64_t)size) > 0)) {
            return h->orig.malloc(h->orig.ctx, size);
        }
        /* Sampled: the general hook counts the size down again. */
        tls.countdown += (int64_t)size;
    }
    return hook_malloc_gil_slow(ctx, size);
}

static PMT_HOT void *
hook_calloc_gil(void *ctx, size_t nelem, size_t elsize)
{
    size_t size;

    if (STATE() == ST_SAMPLED_ONLY &&
        !__builtin_mul_overflow(nelem, elsize, &size) &&
        size <= rt.sample_fast_max && !tls.guard) {
        hook_ctx *h = (hook_ctx *)ctx;
        if (LIKELY((tls.countdown -= (int64_t)size) > 0)) {
            return h->orig.calloc(h->orig.ctx, nelem, elsize);
        }
        tls.countdown += (int64_t)size;
    }
    return hook_calloc_gil_slow(ctx, nelem, elsize);
}

static PMT_HOT __attribute__((noinline)) void
hook_free_gil_slow(hook_ctx *h, void *ptr, int st)
{
    pmt_ptr_young *y;
    uint64_t value;

    if (st == ST_SAMPLED_ONLY) {
        /* A nested raw free finds nothing to do in sampled mode. */
        (void)gil_remove(h->domain, ptr, &value);
        h->orig.free(h->orig.ctx, ptr);
        return;
    }
    /* The GIL is held: nobody can get ptr back from malloc before we
       forget it.  A young block (most) is taken from the young generation
       found here; otherwise the main table's lines are fetched while the
       allocator works and the entry is removed after the free. */
    y = &rt.gil_table
             .young[pmt_ptrtable_young_index(&rt.gil_table, (uintptr_t)ptr)];
    if (y->addr == (uintptr_t)ptr) {
        value = pmt_ptrtable_young_take(&rt.gil_table, y);
        tls.guard = 1;
        h->orig.free(h->orig.ctx, ptr);
        tls.guard = 0;
        gil_forget(h->domain, value);
        return;
    }
    pmt_ptrtable_prefetch_home(&rt.gil_table, (uintptr_t)ptr);
    tls.guard = 1;
    h->orig.free(h->orig.ctx, ptr);
    if (pmt_ptrtable_main_pop(&rt.gil_table, (uintptr_t)ptr, &value)) {
        gil_forget(h->domain, value);
    }
    tls.guard = 0;
}

static PMT_HOT void
hook_free_gil(void *ctx, void *ptr)
{
    hook_ctx *h = (hook_ctx *)ctx;
    int st = STATE();

    if (!st || tls.guard || ptr == NULL || rt.gil_table.count == 0) {
        h->orig.free(h->orig.ctx, ptr);
        return;
    }
    /* Sampled mode: the few sampled blocks sit in the young generation;
       a block not there, and not in the main table's filter, was not
       sampled. */
    if (st == ST_SAMPLED_ONLY &&
        rt.gil_table
                .young[pmt_ptrtable_young_index(&rt.gil_table, (uintptr_t)ptr)]
                .addr != (uintptr_t)ptr &&
        !pmt_ptrtable_maybe_main(&rt.gil_table, (uintptr_t)ptr)) {
        h->orig.free(h->orig.ctx, ptr);
        return;
    }
    hook_free_gil_slow(h, ptr, st);
}

static void
hook_free_raw(void *ctx, void *ptr)
{
    hook_ctx *h = (hook_ctx *)ctx;

    if (tls.guard || ptr == NULL || !STATE()) {
        h->orig.free(h->orig.ctx, ptr);
        return;
    }
    /* Forgotten before the free: once freed, another thread may get the
       same address from malloc and record it. */
    tls.guard = 1;
    raw_remove(ptr);
    h->orig.free(h->orig.ctx, ptr);
    tls.guard = 0;
}

/* The old block is forgotten before the call (another thread may get its
   address back from malloc as soon as it is freed) and remembered again
   if realloc fails. */
static PMT_HOT void *
hook_realloc(void *ctx, void *ptr, size_t size)
{
    hook_ctx *h = (hook_ctx *)ctx;
    void *ptr2;
    uint64_t old = 0;
    int had = 0, st;

    if (tls.guard) {
        return h->orig.realloc(h->orig.ctx, ptr, size);
    }
    tls.guard = 1;
    if (!STATE()) {
        ptr2 = h->orig.realloc(h->orig.ctx, ptr, size);
        goto done;
    }
    if (ptr != NULL) {
        if (h->domain == DOM_RAW) {
            int with_gil = gil_held();
            pthread_mutex_lock(&rt.raw_lock);
            if (with_gil) {
                apply_pending_unlocked();
            }
            had = raw_remove_unlocked(ptr, with_gil, &old);
            pthread_mutex_unlock(&rt.raw_lock);
        }
        else {
            had = gil_remove(h->domain, ptr, &old);
        }
    }
    ptr2 = h->orig.realloc(h->orig.ctx, ptr, size);
    st = STATE();
    if (!st) {
        goto done;
    }
    if (ptr2 != NULL) {
        track(st, h->domain, ptr2, size);
    }
    else if (had && size != 0) {
        /* Failed: the old block is still live. */
        if (h->domain == DOM_RAW) {
            raw_insert(ptr, VALUE_SIZE(old), VALUE_SID(old), gil_held());
        }
        else {
            gil_insert(h->domain, ptr, VALUE_SIZE(old), VALUE_SID(old));
        }
    }
done:
    tls.guard = 0;
    return ptr2;
}

/* ---------------------------------------------------------------- */
/* Installing and removing the hooks (GIL held) */

static int
hooks_on_top(void)
{
    PyMemAllocatorEx cur;
    int d;

    for (d = 0; d < NDOMAINS; d++) {
        PyMem_GetAllocator((PyMemAllocatorDomain)d, &cur);
        if (cur.malloc != hook_malloc_gil && cur.malloc != hook_malloc_raw) {
            return 0;
        }
    }
    return 1;
}

static int
install_hooks(void)
{
    hook_ctx *ctx;
    PyMemAllocatorEx hook;
    int d;

    if (rt.ctx != NULL) {
        return 0;
    }
    if (hooks_on_top()) {
        /* An earlier stop left ours in place below another tool, which has
           since gone: adopt that installation, so the next uninstall can
           remove it. */
        PyMem_GetAllocator((PyMemAllocatorDomain)0, &hook);
        ctx = (hook_ctx *)hook.ctx;
        for (d = 1; d < NDOMAINS; d++) {
            PyMem_GetAllocator((PyMemAllocatorDomain)d, &hook);
            if (hook.ctx != &ctx[d]) {
                return 0; /* not one installation: leave it as it is */
            }
        }
        rt.ctx = ctx;
        return 0;
    }
    /* The pool serves every start/stop cycle.  Only when all its entries
       may still be linked below another tool (such a hook keeps reading
       its ctx) does an installation need memory of its own, which then
       lives as long as the process, like that chain. */
    ctx = NULL;
    for (d = 0; d < CTX_POOL; d++) {
        if (!rt.pool_chained[d]) {
            /* No memset: a raw hook of an earlier installation may still
               be running without the GIL; the fields below get the same
               values again unless the allocator below changed. */
            ctx = rt.ctx_pool[d];
            break;
        }
    }
    if (ctx == NULL) {
        ctx = calloc(NDOMAINS, sizeof(hook_ctx));
        if (ctx == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    for (d = 0; d < NDOMAINS; d++) {
        ctx[d].domain = d;
        PyMem_GetAllocator((PyMemAllocatorDomain)d, &ctx[d].orig);
    }
    for (d = 0; d < NDOMAINS; d++) {
        hook.ctx = &ctx[d];
        hook.malloc = d == DOM_RAW ? hook_malloc_raw : hook_malloc_gil;
        hook.calloc = d == DOM_RAW ? hook_calloc_raw : hook_calloc_gil;
        hook.realloc = hook_realloc;
        hook.free = d == DOM_RAW ? hook_free_raw : hook_free_gil;
        PyMem_SetAllocator((PyMemAllocatorDomain)d, &hook);
    }
    rt.ctx = ctx;
    return 0;
}

/* Remove our hooks where they are on top; elsewhere they stay as
   pass-through hooks (active is 0) since removing them would also remove
   the hooks installed above them. */
static void
uninstall_hooks(void)
{
    PyMemAllocatorEx cur;
    int chained = 0;
    int d;

    if (rt.ctx == NULL) {
        return;
    }
    for (d = 0; d < NDOMAINS; d++) {
        PyMem_GetAllocator((PyMemAllocatorDomain)d, &cur);
        if (cur.ctx == &rt.ctx[d]) {
            PyMem_SetAllocator((PyMemAllocatorDomain)d, &rt.ctx[d].orig);
        }
        else {
            chained = 1;
        }
    }
    for (d = 0; d < CTX_POOL; d++) {
        if (rt.ctx == rt.ctx_pool[d]) {
            rt.pool_chained[d] = (unsigned char)chained;
        }
    }
    /* rt.ctx is not freed: a hook left in a chain still uses it, and a
       thread without the GIL may still be inside a raw hook. */
    rt.ctx = NULL;
}

/* ---------------------------------------------------------------- */
/* Tables (GIL held) */

/* Young generations: 256 KiB for MEM/OBJ blocks (blocks that a program
   keeps for a few thousand allocations, such as a batch being built, then
   mostly die there instead of in the main table: replaying a recorded
   trace of the alloc_heavy benchmark, 2.2 ns per event against 4.2 with
   16 KiB), 16 KiB for RAW ones (fewer, larger, taken under a lock) and
   for tables made for sampled mode alone (few blocks, and its free hook
   probes the young generation on every free: a small one stays in L1). */
#define GIL_YOUNG_BITS 14
#define RAW_YOUNG_BITS 10
#define SAMPLED_YOUNG_BITS 10

/* Tables for MEM/OBJ blocks with a young generation of 2^young_bits
   entries, unless they exist already. */
static int
tables_init(unsigned young_bits)
{
    int d;

    if (rt.tables_ready) {
        return 0;
    }
    if (pmt_ptrtable_init(&rt.gil_table, 1 << 10, young_bits, rt.max_traces) <
        0) {
        PyErr_NoMemory();
        return -1;
    }
    pthread_mutex_lock(&rt.raw_lock);
    if (pmt_ptrtable_init(&rt.raw_table, 1 << 8, RAW_YOUNG_BITS,
                          rt.max_traces) < 0) {
        pthread_mutex_unlock(&rt.raw_lock);
        pmt_ptrtable_fini(&rt.gil_table);
        PyErr_NoMemory();
        return -1;
    }
    atomic_store(&rt.raw_count, 0);
    rt.npending = 0;
    pthread_mutex_unlock(&rt.raw_lock);
    for (d = 0; d < NDOMAINS; d++) {
        atomic_store(&rt.live_bytes[d], 0);
        atomic_store(&rt.live_blocks[d], 0);
    }
    rt.tables_ready = 1;
    return 0;
}

static void
tables_fini(void)
{
    if (!rt.tables_ready) {
        return;
    }
    pmt_ptrtable_fini(&rt.gil_table);
    pthread_mutex_lock(&rt.raw_lock);
    pmt_ptrtable_fini(&rt.raw_table);
    atomic_store(&rt.raw_count, 0);
    free(rt.pending);
    rt.pending = NULL;
    rt.npending = rt.pending_cap = 0;
    pthread_mutex_unlock(&rt.raw_lock);
    rt.tables_ready = 0;
}

/* Release what the tracker holds; mode is already MODE_OFF. */
static void
tracker_clear(void)
{
    pmt_stacktable old;
    size_t i;

    if (rt.tables_ready) {
        pmt_ptrtable_clear_tags(&rt.gil_table);
        pthread_mutex_lock(&rt.raw_lock);
        pmt_ptrtable_clear_tags(&rt.raw_table);
        rt.npending = 0;
        pthread_mutex_unlock(&rt.raw_lock);
    }
    /* Detach the stacks first: releasing a code object may free memory,
       which runs our hooks. */
    old = rt.stacks;
    memset(&rt.stacks, 0, sizeof(rt.stacks));
    memset(rt.sid_cache, 0, sizeof(rt.sid_cache));
    rt.nogil_sid = 0;
    for (i = 0; i < old.nframes; i++) {
        Py_DECREF((PyObject *)old.frames[i].code);
    }
    pmt_stacktable_fini(&old);
}

/* Derive the hooks' state word from active, counting and mode. */
static void
publish_state(void)
{
    int st = 0, mode = atomic_load(&rt.mode);

    if (atomic_load(&rt.active)) {
        st |= ST_ACTIVE;
        if (atomic_load(&rt.counting)) {
            st |= ST_COUNTING;
        }
        if (mode == MODE_EXACT) {
            st |= ST_EXACT;
        }
        else if (mode == MODE_SAMPLED) {
            st |= ST_SAMPLED;
        }
    }
    atomic_store(&rt.state, st);
}

static int
hooks_needed(void)
{
    return rt.counting_users > 0 || atomic_load(&rt.mode) != MODE_OFF;
}

/* After a user went away: switch off and remove what nobody needs. */
static void
settle(void)
{
    if (hooks_needed()) {
        return;
    }
    atomic_store(&rt.active, 0);
    publish_state();
    uninstall_hooks();
    tables_fini();
}

/* ---------------------------------------------------------------- */
/* The interface of native.h */

int
pmt_alloc_counting(void)
{
    return atomic_load_explicit(&rt.counting, memory_order_relaxed);
}

int64_t
pmt_alloc_live_bytes(void)
{
    int64_t total = 0;
    int d;

    for (d = 0; d < NDOMAINS; d++) {
        total += atomic_load_explicit(&rt.live_bytes[d], memory_order_relaxed);
    }
    return total;
}

int
pmt_alloc_counting_acquire(void)
{
#ifdef Py_GIL_DISABLED
    PyErr_SetString(PyExc_NotImplementedError,
                    "allocation counters need a build with the GIL");
    return -1;
#else
    if (rt.counting_users > 0) {
        rt.counting_users++;
        return 0;
    }
    if (atomic_load(&rt.mode) == MODE_OFF) {
        rt.max_traces = 0;
    }
    if (tables_init(GIL_YOUNG_BITS) < 0) {
        return -1;
    }
    if (install_hooks() < 0) {
        settle();
        return -1;
    }
    rt.counting_users = 1;
    atomic_store(&rt.counting, 1);
    atomic_store(&rt.active, 1);
    publish_state();
    return 0;
#endif
}

void
pmt_alloc_counting_release(void)
{
    if (rt.counting_users <= 0) {
        return;
    }
    if (--rt.counting_users > 0) {
        return;
    }
    /* Exact mode records every block: the counters stay exact. */
    if (atomic_load(&rt.mode) != MODE_EXACT) {
        atomic_store(&rt.counting, 0);
        publish_state();
    }
    settle();
}

/* ---------------------------------------------------------------- */
/* Foreign blocks (PyTraceMalloc_Track, see alloc_traced.c) */

int
pmt_alloc_foreign_enter(int *with_gil)
{
    if (tls.guard || !(STATE() & (ST_EXACT | ST_SAMPLED))) {
        return 0;
    }
    tls.guard = 1;
    *with_gil = gil_held();
    return 1;
}

void
pmt_alloc_foreign_exit(void)
{
    tls.guard = 0;
}

/* Like raw_track's choice: without the GIL, the empty stack. */
uint32_t
pmt_alloc_foreign_sid(size_t size, int with_gil, int *keep)
{
    int st = STATE();
    uint32_t sid = 0;

    if (with_gil) {
        sid = choose_sid(st, size);
    }
    else if ((st & ST_EXACT) || ((st & ST_SAMPLED) && sample_hit(size))) {
        sid = rt.nogil_sid;
    }
    *keep = sid != 0 || (st & ST_COUNTING) != 0;
    return sid;
}

void
pmt_alloc_foreign_account(uint32_t sid, size_t size, int sign, int with_gil)
{
    if (sid == 0) {
        return;
    }
    if (with_gil) {
        if (sid - 1 < rt.stacks.count) {
            account_unlocked(sid, size, sign);
        }
        return;
    }
    pthread_mutex_lock(&rt.raw_lock);
    if (STATE()) {
        queue_pending_unlocked(sid, size, sign);
    }
    pthread_mutex_unlock(&rt.raw_lock);
}

/* ---------------------------------------------------------------- */
/* The tracker, for alloc_api.c (alloc.h).  GIL held. */

void
pmt_alloc_domain_live(int domain, int64_t *bytes, int64_t *blocks)
{
    *bytes = atomic_load(&rt.live_bytes[domain]);
    *blocks = atomic_load(&rt.live_blocks[domain]);
}

const char *
pmt_alloc_domain_name(int domain)
{
    return domain_names[domain];
}

int
pmt_tracker_mode(void)
{
    return atomic_load(&rt.mode);
}

int
pmt_tracker_start(const pmt_tracker_config *cfg)
{
    pmt_frame none[1];
    int added = 0;
    uint32_t id;

    rt.depth = cfg->depth;
    rt.sample_bytes = cfg->sample_bytes;
    rt.sample_exact_from = (size_t)ceil(cfg->sample_bytes / 2.0);
    rt.sample_fast_max = rt.sample_exact_from - 1 < PYMALLOC_THRESHOLD
                             ? rt.sample_exact_from - 1
                             : PYMALLOC_THRESHOLD;
    rt.seed = cfg->seed;
    if (!rt.tables_ready) {
        rt.max_traces = cfg->max_traces;
    }
    if (pmt_stacktable_init(&rt.stacks, cfg->max_stacks) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    /* The empty stack: blocks of RAW calls made without the GIL. */
    id = pmt_stacktable_intern(&rt.stacks, pmt_stack_hash(none, 0), none, 0,
                               &added);
    rt.nogil_sid = id + 1;
    if (tables_init(cfg->mode == MODE_SAMPLED ? SAMPLED_YOUNG_BITS
                                              : GIL_YOUNG_BITS) < 0) {
        goto error;
    }
    if (install_hooks() < 0) {
        goto error;
    }
    rt.started_ns = 0;
    reseed_thread(atomic_fetch_add(&rt.sample_gen, 1) + 1);
    if (cfg->mode == MODE_EXACT) {
        atomic_store(&rt.counting, 1);
    }
    atomic_store(&rt.mode, cfg->mode);
    atomic_store(&rt.active, 1);
    publish_state();
    return 0;
error:
    tracker_clear();
    settle();
    return -1;
}

void
pmt_tracker_switch_off(void)
{
    if (atomic_load(&rt.mode) == MODE_OFF) {
        return;
    }
    atomic_store(&rt.mode, MODE_OFF);
    rt.base_frame = NULL;
    if (rt.counting_users == 0) {
        atomic_store(&rt.counting, 0);
        atomic_store(&rt.active, 0);
    }
    publish_state();
}

void
pmt_tracker_release(void)
{
    if (atomic_load(&rt.mode) != MODE_OFF) {
        return;
    }
    tracker_clear();
    settle();
}

void
pmt_tracker_set_base(const void *frame)
{
    rt.base_frame = frame;
}

/* The queued stack changes of RAW calls made without the GIL, applied. */
static void
apply_pending(void)
{
    pthread_mutex_lock(&rt.raw_lock);
    apply_pending_unlocked();
    pthread_mutex_unlock(&rt.raw_lock);
}

void
pmt_tracker_reset_peak(void)
{
    apply_pending();
    pmt_stacktable_reset_peak(&rt.stacks);
}

void
pmt_tracker_stats(pmt_tracker_stats_t *out)
{
    size_t raw_traces = 0, raw_memory = 0;
    uint64_t raw_drops = 0, pending_drops = 0;

    if (rt.tables_ready) {
        pthread_mutex_lock(&rt.raw_lock);
        raw_traces = rt.raw_table.count;
        raw_drops = rt.raw_table.drops;
        pending_drops = rt.pending_drops;
        raw_memory = pmt_ptrtable_memory(&rt.raw_table) +
                     rt.pending_cap * sizeof(pending_op);
        pthread_mutex_unlock(&rt.raw_lock);
    }
    out->memory = pmt_stacktable_memory(&rt.stacks);
    if (rt.tables_ready) {
        out->memory += pmt_ptrtable_memory(&rt.gil_table) + raw_memory;
    }
    out->traces = rt.gil_table.count + raw_traces;
    out->stacks = rt.stacks.count;
    out->dropped_traces = rt.gil_table.drops + raw_drops;
    out->dropped_stacks = rt.stacks.drops;
    out->dropped_pending = pending_drops;
}

const pmt_stacktable *
pmt_tracker_stacks(int *depth, double *sample_bytes)
{
    apply_pending();
    *depth = rt.depth;
    *sample_bytes = rt.sample_bytes;
    return &rt.stacks;
}

/* Free lists (tuples, lists, dicts, floats...) hand an object's old
   block back to a new object without calling the allocator, so the block
   keeps the stack of whoever first allocated it.  alloc_revive.c calls
   this at every object creation: a block found under another stack moves
   to the current one (as tracemalloc's _PyTraceMalloc_NewReference
   does).  A fresh block was recorded a moment ago by the same code: its
   stack is the current one and nothing moves.  In sampled mode only a
   sampled block moves (an unsampled one stays unsampled: its weight is
   not ours to change). */
int
pmt_tracker_object_created(const void *block)
{
    int st = STATE(), moved = 0;
    uint64_t value, old;
    uint32_t sid;

    if (!(st & (ST_EXACT | ST_SAMPLED)) || tls.guard ||
        rt.gil_table.count == 0 ||
        !pmt_ptrtable_get(&rt.gil_table, (uintptr_t)block, &value)) {
        return 0;
    }
    if (VALUE_SID(value) == 0 && !(st & ST_EXACT)) {
        return 0;
    }
    /* Interning a new stack mallocs: not a block of the program's. */
    tls.guard = 1;
    sid = current_sid();
    if (sid != 0 && sid != VALUE_SID(value) &&
        gil_remove(DOM_OBJ, (void *)block, &old)) {
        gil_insert(DOM_OBJ, (void *)block, VALUE_SIZE(old), sid);
        moved = 1;
    }
    tls.guard = 0;
    return moved;
}

/* An object at block is about to be deallocated (GIL held).  Its block
   may go to a free list instead of the allocator and wait there, live to
   the allocator, for the next object: charged to no stack meanwhile (it
   keeps its size in the counters), it is charged again to the code that
   revives it (pmt_tracker_object_created), or forgotten when freed.  In
   exact mode only (sampled mode keeps its samples' stacks). */
void
pmt_tracker_object_destroyed(const void *block)
{
    uint64_t value, old;

    if (!(STATE() & ST_EXACT) || tls.guard || rt.gil_table.count == 0 ||
        !pmt_ptrtable_get(&rt.gil_table, (uintptr_t)block, &value) ||
        VALUE_SID(value) == 0) {
        return;
    }
    tls.guard = 1;
    if (gil_remove(DOM_OBJ, (void *)block, &old)) {
        gil_insert(DOM_OBJ, (void *)block, VALUE_SIZE(old), 0);
    }
    tls.guard = 0;
}

int
pmt_alloc_guard_swap(int value)
{
    int old = tls.guard;
    tls.guard = value;
    return old;
}

void
pmt_alloc_hooks_shutdown(void)
{
    rt.counting_users = 0;
    atomic_store(&rt.counting, 0);
    publish_state();
    settle();
}

/* fork(): the child must not inherit raw_lock held by a thread that does
   not exist there.  fork.c calls these in its written order. */
void
pmt_alloc_fork_prepare(void)
{
    pthread_mutex_lock(&rt.raw_lock);
}

void
pmt_alloc_fork_release(void)
{
    /* In the child only the forking thread exists, and it holds it. */
    pthread_mutex_unlock(&rt.raw_lock);
}
