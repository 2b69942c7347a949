/*
 * stacktable.c - see stacktable.h.
 */
#include "stacktable.h"

#include <stdlib.h>
#include <string.h>

#define INITIAL_STACKS 256
#define INITIAL_FRAMES 4096

int
pmt_stacktable_init(pmt_stacktable *t, uint32_t max_stacks)
{
    memset(t, 0, sizeof(*t));
    t->max_stacks = max_stacks;
    t->stacks = malloc(INITIAL_STACKS * sizeof(pmt_stack));
    t->frames = malloc(INITIAL_FRAMES * sizeof(pmt_frame));
    t->index = calloc(INITIAL_STACKS * 2, sizeof(uint32_t));
    if (t->stacks == NULL || t->frames == NULL || t->index == NULL) {
        pmt_stacktable_fini(t);
        return -1;
    }
    t->capacity = INITIAL_STACKS;
    t->frames_cap = INITIAL_FRAMES;
    t->index_mask = INITIAL_STACKS * 2 - 1;
    /* Epoch 1: stacks start with saved_epoch 0, i.e. "no copy". */
    t->epoch = 1;
    return 0;
}

void
pmt_stacktable_fini(pmt_stacktable *t)
{
    free(t->stacks);
    free(t->frames);
    free(t->index);
    memset(t, 0, sizeof(*t));
}

uint64_t
pmt_stack_hash(const pmt_frame *frames, uint32_t n)
{
    uint64_t h = PMT_STACK_HASH_SEED;
    uint32_t i;

    for (i = 0; i < n; i++) {
        h = pmt_stack_hash_step(h, frames[i].code, frames[i].addr);
    }
    return pmt_stack_hash_final(h, n);
}

static inline int
same_stack(const pmt_stack *s, uint64_t hash, uint32_t n)
{
    return s->hash == hash && s->nframes == n;
}

static int
grow_index(pmt_stacktable *t)
{
    size_t capacity = (t->index_mask + 1) * 2, i;
    uint32_t *index = calloc(capacity, sizeof(uint32_t));

    if (index == NULL) {
        return -1;
    }
    for (i = 0; i < t->count; i++) {
        size_t slot = (size_t)t->stacks[i].hash & (capacity - 1);
        while (index[slot] != 0) {
            slot = (slot + 1) & (capacity - 1);
        }
        index[slot] = (uint32_t)i + 1;
    }
    free(t->index);
    t->index = index;
    t->index_mask = capacity - 1;
    return 0;
}

static int
reserve(pmt_stacktable *t, uint32_t n)
{
    if (t->count == t->capacity) {
        uint32_t capacity = t->capacity * 2;
        pmt_stack *stacks = realloc(t->stacks, capacity * sizeof(pmt_stack));
        if (stacks == NULL) {
            return -1;
        }
        t->stacks = stacks;
        t->capacity = capacity;
    }
    if (t->nframes + n > t->frames_cap) {
        size_t cap = t->frames_cap * 2;
        pmt_frame *frames;
        while (cap < t->nframes + n) {
            cap *= 2;
        }
        frames = realloc(t->frames, cap * sizeof(pmt_frame));
        if (frames == NULL) {
            return -1;
        }
        t->frames = frames;
        t->frames_cap = cap;
    }
    /* Keep the index at most half full. */
    if (((size_t)t->count + 1) * 2 > t->index_mask + 1) {
        if (grow_index(t) < 0) {
            return -1;
        }
    }
    return 0;
}

uint32_t
pmt_stacktable_intern(pmt_stacktable *t, uint64_t hash,
                      const pmt_frame *frames, uint32_t n, int *added)
{
    size_t slot = (size_t)hash & t->index_mask;
    uint32_t id;
    pmt_stack *s;

    *added = 0;
    while (t->index[slot] != 0) {
        id = t->index[slot] - 1;
        if (same_stack(&t->stacks[id], hash, n)) {
            return id;
        }
        slot = (slot + 1) & t->index_mask;
    }
    if ((t->max_stacks != 0 && t->count >= t->max_stacks) ||
        t->count >= PMT_STACK_NONE - 1 || reserve(t, n) < 0) {
        t->drops++;
        return PMT_STACK_NONE;
    }
    /* reserve() may have rebuilt the index: find the free slot again. */
    slot = (size_t)hash & t->index_mask;
    while (t->index[slot] != 0) {
        slot = (slot + 1) & t->index_mask;
    }
    id = t->count++;
    s = &t->stacks[id];
    memset(s, 0, sizeof(*s));
    s->hash = hash;
    s->first = (uint32_t)t->nframes;
    s->nframes = n;
    memcpy(t->frames + t->nframes, frames, n * sizeof(pmt_frame));
    t->nframes += n;
    t->index[slot] = id + 1;
    *added = 1;
    return id;
}

void
pmt_stacktable_reset_peak(pmt_stacktable *t)
{
    t->peak_total = t->total;
    t->epoch++;
}

size_t
pmt_stacktable_memory(const pmt_stacktable *t)
{
    return (size_t)t->capacity * sizeof(pmt_stack) +
           t->frames_cap * sizeof(pmt_frame) +
           (t->index_mask + 1) * sizeof(uint32_t);
}
