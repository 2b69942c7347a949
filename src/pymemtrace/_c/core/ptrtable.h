/*
 * ptrtable.h - open-addressing hash table from a block address to its size
 * and a 21-bit tag (alloc.c: the stack id).
 *
 * Pure C (no Python.h).  Built for the allocator hook's hot path and for
 * memory: one flat array of 12-byte slots (the address in 16-byte units,
 * 43 bits, the tag, 21 bits, the size, 32 bits), filled up to 80% and grown
 * by half (any capacity, not a power of two), so a block costs 15 to 23
 * bytes of table.  No per-entry allocation; linear probing; removal shifts
 * the following entries back (no tombstones).  Blocks of 4 GiB or more keep
 * their size in a small side list.
 *
 * Limits: addresses must be 16-byte aligned and below 2^47 (user space on
 * x86-64 and arm64 with 4-level page tables); others are refused (counted
 * in drops).
 *
 * Not thread-safe: the caller serialises every call.  Memory comes from the
 * C library's malloc, never through Python's allocators.
 */
#ifndef PMT_CORE_PTRTABLE_H
#define PMT_CORE_PTRTABLE_H

#include <stddef.h>
#include <stdint.h>

/* A value as callers see it: size in the low 40 bits, tag above. */
#define PMT_PTR_SIZE_BITS 40
#define PMT_PTR_SIZE_MASK ((UINT64_C(1) << PMT_PTR_SIZE_BITS) - 1)
#define PMT_PTR_TAG_BITS 21
#define PMT_PTR_TAG_MAX ((UINT32_C(1) << PMT_PTR_TAG_BITS) - 1)

typedef struct {
    uint32_t key_lo; /* bits 0..31 of address / 16; key 0: empty slot */
    uint32_t key_hi; /* bits 32..42 of address / 16, tag in bits 11..31 */
    uint32_t size;   /* block size, UINT32_MAX: see the huge list */
} pmt_ptr_slot;

typedef struct {
    uintptr_t addr; /* block address */
    uint64_t size;  /* its size (>= UINT32_MAX) */
} pmt_ptr_huge;

typedef struct {
    pmt_ptr_slot *slots;  /* capacity slots, or NULL */
    size_t capacity;      /* number of slots */
    size_t grow_at;       /* count that triggers growth (80%) */
    size_t count;         /* entries in use */
    size_t max_count;     /* cap on count; 0: no cap */
    uint64_t drops;       /* puts refused (cap, bad address, no memory) */
    pmt_ptr_huge *huge;   /* sizes of blocks >= 4 GiB */
    size_t nhuge;
    size_t huge_cap;
} pmt_ptrtable;

/* Empty table with room for at least capacity slots (>= 16).
   Returns 0, or -1 when out of memory. */
int pmt_ptrtable_init(pmt_ptrtable *t, size_t capacity, size_t max_count);
void pmt_ptrtable_fini(pmt_ptrtable *t);
/* Remove every entry, keeping the array. */
void pmt_ptrtable_clear(pmt_ptrtable *t);
/* Set every entry's tag to 0. */
void pmt_ptrtable_clear_tags(pmt_ptrtable *t);
/* Bytes of memory the table holds. */
size_t pmt_ptrtable_memory(const pmt_ptrtable *t);

/* Insert addr -> value (size | tag << 40).  Returns 0 when inserted, 1
   when addr was present (its previous value goes to *old, the new one
   replaces it), -1 when refused (drops is incremented). */
int pmt_ptrtable_put(pmt_ptrtable *t, uintptr_t addr, uint64_t value,
                     uint64_t *old);

/* Internal to the inline functions below. */
uint64_t pmt_ptrtable_huge_size(pmt_ptrtable *t, uintptr_t addr, int take);
void pmt_ptrtable_remove_at(pmt_ptrtable *t, size_t i);

static inline uint64_t
pmt_ptrtable_key(uintptr_t addr)
{
    return (uint64_t)addr >> 4;
}

/* Home slot: Fibonacci hashing, then a multiply-shift onto [0, capacity). */
static inline size_t
pmt_ptrtable_home(const pmt_ptrtable *t, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (size_t)(((unsigned __int128)h * t->capacity) >> 64);
}

static inline uint64_t
pmt_ptrtable_slot_key(const pmt_ptr_slot *s)
{
    return (uint64_t)s->key_lo | ((uint64_t)(s->key_hi & 0x7FF) << 32);
}

/* Index of addr's slot, or (size_t)-1 when absent. */
static inline size_t
pmt_ptrtable_find(const pmt_ptrtable *t, uintptr_t addr)
{
    uint64_t key = pmt_ptrtable_key(addr);
    uint32_t lo = (uint32_t)key, hi = (uint32_t)(key >> 32);
    size_t i;

    if (t->count == 0 || (key >> 43) != 0) {
        return (size_t)-1;
    }
    i = pmt_ptrtable_home(t, key);
    for (;;) {
        const pmt_ptr_slot *s = &t->slots[i];
        if (s->key_lo == lo && (s->key_hi & 0x7FF) == hi) {
            if (lo != 0 || hi != 0) {
                return i;
            }
        }
        if (s->key_lo == 0 && (s->key_hi & 0x7FF) == 0) {
            return (size_t)-1;
        }
        if (++i == t->capacity) {
            i = 0;
        }
    }
}

static inline uint64_t
pmt_ptrtable_value_at(pmt_ptrtable *t, size_t i, uintptr_t addr, int take)
{
    const pmt_ptr_slot *s = &t->slots[i];
    uint64_t size = s->size;

    if (size == UINT32_MAX) {
        size = pmt_ptrtable_huge_size(t, addr, take);
    }
    return size | ((uint64_t)(s->key_hi >> 11) << PMT_PTR_SIZE_BITS);
}

/* Remove addr.  Returns 1 and its value in *value, or 0 when absent. */
static inline int
pmt_ptrtable_pop(pmt_ptrtable *t, uintptr_t addr, uint64_t *value)
{
    size_t i = pmt_ptrtable_find(t, addr);

    if (i == (size_t)-1) {
        return 0;
    }
    *value = pmt_ptrtable_value_at(t, i, addr, 1);
    pmt_ptrtable_remove_at(t, i);
    return 1;
}

/* 1 and the value in *value when present, else 0. */
static inline int
pmt_ptrtable_get(pmt_ptrtable *t, uintptr_t addr, uint64_t *value)
{
    size_t i = pmt_ptrtable_find(t, addr);

    if (i == (size_t)-1) {
        return 0;
    }
    *value = pmt_ptrtable_value_at(t, i, addr, 0);
    return 1;
}

/* Address of addr's home slot, for __builtin_prefetch. */
static inline const void *
pmt_ptrtable_home_addr(const pmt_ptrtable *t, uintptr_t addr)
{
    return &t->slots[pmt_ptrtable_home(t, pmt_ptrtable_key(addr))];
}

#endif /* PMT_CORE_PTRTABLE_H */
