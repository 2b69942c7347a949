/*
 * stacktable.h - interned call stacks with live totals and a lazy copy of
 * the totals at the peak.
 *
 * Pure C (no Python.h).  A stack is an array of frames (an opaque code
 * pointer and an instruction offset); equal stacks get one id.  The table
 * keeps, per stack, the live bytes and blocks attributed to it, updated
 * incrementally, so a snapshot never scans the allocations.
 *
 * Peak, exact and O(1) per update: `total` is the sum of every stack's
 * bytes; each time it exceeds `peak_total` the table opens a new epoch,
 * which stands for "the state right now".  Before a stack's counters change
 * it copies them to peak_bytes/peak_blocks once per epoch (copy on write),
 * so the value of a stack at the peak is its copy when the copy belongs to
 * the current epoch, else its live value.
 *
 * Not thread-safe: the caller serialises every call.  Memory comes from the
 * C library's malloc.
 */
#ifndef PMT_CORE_STACKTABLE_H
#define PMT_CORE_STACKTABLE_H

#include <stddef.h>
#include <stdint.h>

#define PMT_STACK_NONE UINT32_MAX

typedef struct {
    const void *code; /* opaque code pointer (alloc.c: a PyCodeObject) */
    int32_t addr;     /* instruction offset in bytes; -1: not started */
    int32_t unused;   /* padding, always 0 so frames compare with memcmp */
} pmt_frame;

typedef struct {
    uint64_t hash;        /* hash of the frames */
    uint32_t first;       /* index of the first frame in the frame pool */
    uint32_t nframes;     /* number of frames (0: no Python frame) */
    int64_t bytes;        /* live bytes now */
    int64_t blocks;       /* live blocks now */
    int64_t peak_bytes;   /* bytes at the peak, valid when saved_epoch ==
                            table epoch, else bytes is the peak value */
    int64_t peak_blocks;  /* likewise for blocks */
    uint64_t saved_epoch; /* epoch of peak_bytes/peak_blocks */
    uint64_t unused;      /* to 64 bytes: one cache line per stack, and an
                            index that is a shift */
} pmt_stack;

typedef struct {
    pmt_stack *stacks;   /* stacks[id] */
    uint32_t count;      /* stacks in use */
    uint32_t capacity;   /* allocated stacks */
    uint32_t max_stacks; /* cap on count; 0: no cap */
    pmt_frame *frames;   /* frame pool */
    size_t nframes;      /* frames in use */
    size_t frames_cap;   /* allocated frames */
    uint32_t *index;     /* open addressing: id + 1, 0 when empty */
    size_t index_mask;   /* index capacity - 1 */
    uint64_t drops;      /* stacks refused (cap or out of memory) */
    int64_t total;       /* sum of every stack's bytes */
    int64_t peak_total;  /* highest total seen */
    uint64_t epoch;      /* increments when total sets a new peak */
} pmt_stacktable;

int pmt_stacktable_init(pmt_stacktable *t, uint32_t max_stacks);
void pmt_stacktable_fini(pmt_stacktable *t);

/* Hash of n frames, the value pmt_stacktable_intern expects: start from
   PMT_STACK_HASH_SEED, mix each frame in order with pmt_stack_hash_step,
   end with pmt_stack_hash_final(h, n).  (Callers that walk frames mix as
   they go; pmt_stack_hash does it for an array.) */
#define PMT_STACK_HASH_SEED 0x84222325cbf29ce4ull

/* One multiply per frame (the walk is on the allocation hot path). */
static inline uint64_t
pmt_stack_hash_step(uint64_t h, const void *code, int32_t addr)
{
    uint64_t v = (uint64_t)(uintptr_t)code ^ ((uint64_t)(uint32_t)addr << 40) ^
                 ((uint64_t)(uint32_t)addr >> 24);
    return ((h << 7 | h >> 57) ^ v) * 0x9E3779B97F4A7C15ull;
}

/* The steps leave the high bits well mixed; one more multiply spreads
   them to the low bits (the index uses those) and folds in the length. */
static inline uint64_t
pmt_stack_hash_final(uint64_t h, uint32_t n)
{
    h = (h ^ (h >> 29) ^ n) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

uint64_t pmt_stack_hash(const pmt_frame *frames, uint32_t n);

/* Id of the stack made of frames[0..n), adding it when new (*added = 1).
   PMT_STACK_NONE when the table is full or out of memory (drops counts).
   Stacks are told apart by their 64-bit hash and length only (frames are
   not compared): with a million distinct stacks the chance that two
   collide is about 3e-8. */
uint32_t pmt_stacktable_intern(pmt_stacktable *t, uint64_t hash,
                               const pmt_frame *frames, uint32_t n,
                               int *added);

/* Id of the stack with this hash and length, PMT_STACK_NONE if absent. */
static inline uint32_t
pmt_stacktable_find(const pmt_stacktable *t, uint64_t hash, uint32_t n)
{
    size_t slot = (size_t)hash & t->index_mask;

    while (t->index[slot] != 0) {
        uint32_t id = t->index[slot] - 1;
        if (t->stacks[id].hash == hash && t->stacks[id].nframes == n) {
            return id;
        }
        slot = (slot + 1) & t->index_mask;
    }
    return PMT_STACK_NONE;
}

/* Frames of stack id. */
static inline const pmt_frame *
pmt_stacktable_frames(const pmt_stacktable *t, uint32_t id)
{
    return t->frames + t->stacks[id].first;
}

/* Add dbytes/dblocks (negative on free) to stack id, keeping the peak. */
static inline void
pmt_stacktable_account(pmt_stacktable *t, uint32_t id, int64_t dbytes,
                       int64_t dblocks)
{
    pmt_stack *s = &t->stacks[id];

    if (s->saved_epoch != t->epoch) {
        s->peak_bytes = s->bytes;
        s->peak_blocks = s->blocks;
        s->saved_epoch = t->epoch;
    }
    s->bytes += dbytes;
    s->blocks += dblocks;
    t->total += dbytes;
    if (t->total > t->peak_total) {
        t->peak_total = t->total;
        t->epoch++;
    }
}

/* Bytes and blocks of stack id at the peak. */
static inline void
pmt_stacktable_peak_of(const pmt_stacktable *t, uint32_t id, int64_t *bytes,
                       int64_t *blocks)
{
    const pmt_stack *s = &t->stacks[id];

    if (s->saved_epoch == t->epoch) {
        *bytes = s->peak_bytes;
        *blocks = s->peak_blocks;
    }
    else {
        *bytes = s->bytes;
        *blocks = s->blocks;
    }
}

/* Forget the peak: it restarts from the current total. */
void pmt_stacktable_reset_peak(pmt_stacktable *t);

size_t pmt_stacktable_memory(const pmt_stacktable *t);

#endif /* PMT_CORE_STACKTABLE_H */
