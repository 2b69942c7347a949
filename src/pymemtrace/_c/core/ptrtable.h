/*
 * ptrtable.h - open-addressing hash table from a block address to its size
 * and a 21-bit tag (alloc.c: the stack id).
 *
 * Pure C (no Python.h).  Built for the allocator hook's hot path and for
 * memory: one flat array of 12-byte slots (the address in 16-byte units,
 * 43 bits, the tag, 21 bits, the size, 32 bits), filled up to 70% and grown
 * by half (any capacity, not a power of two), so a block costs 17 to 26
 * bytes of table.  (Doubling a power-of-two capacity made the index a shift
 * but cost up to 34 bytes a block, 0.63x of tracemalloc's memory where the
 * target is 0.5x; with the young generation in front, few operations reach
 * this table and the multiply-shift costs little: 2.4 against 2.25 ns per
 * event replaying a recorded trace.)  No per-entry allocation; linear
 * probing; removal shifts the following entries back (no tombstones).  Blocks of 4 GiB or more keep
 * their size in a small side list.  In front of it, a direct-mapped young
 * generation (its size set by the caller, 16 to 256 KiB) takes new entries;
 * blocks freed while there never touch the big array.
 *
 * Protocol: an address is put again only after it was popped (as an
 * allocator hands it out).  If a pop was missed, the stale entry is found
 * and reported (put returns 1) when the newer one reaches the main table.
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

#define PMT_PTR_KEY_BITS 43
#define PMT_PTR_KEY_MASK ((UINT64_C(1) << PMT_PTR_KEY_BITS) - 1)

/* 12 bytes, 4-byte aligned: keytag may be an unaligned 8-byte load. */
typedef struct __attribute__((packed, aligned(4))) {
    uint64_t keytag; /* bits 0..42: address / 16 (0: empty slot);
                        bits 43..63: the tag */
    uint32_t size;   /* block size, UINT32_MAX: see the huge list */
} pmt_ptr_slot;

typedef struct {
    uintptr_t addr; /* block address */
    uint64_t size;  /* its size (>= UINT32_MAX) */
} pmt_ptr_huge;

/* The young generation: a direct-mapped array in front of the main table.
   New entries go there; the one they displace moves to the main table.
   Blocks freed soon after their allocation (most of them) never reach the
   main table, whose lines are cache misses. */
#define PMT_YOUNG_BITS_MIN 4
#define PMT_YOUNG_BITS_MAX 20

typedef struct {
    uintptr_t addr; /* block address, 0: empty */
    uint64_t value; /* size | tag << 40 */
} pmt_ptr_young;

/* A counting filter of the main table's keys: a free of an address whose
   counter is 0 needs no probe (sampled mode, where the main table is tiny
   but not empty, probes it on no free). */
#define PMT_FILTER_BITS 12
#define PMT_FILTER_SIZE (1u << PMT_FILTER_BITS)

typedef struct {
    pmt_ptr_young *young; /* young_size entries, or NULL */
    size_t young_size;    /* 2^young_bits */
    unsigned young_shift; /* 64 - young_bits */
    pmt_ptr_slot *slots;  /* capacity slots, or NULL */
    size_t capacity;      /* number of slots */
    size_t grow_at;       /* main_count that triggers growth (70%) */
    size_t count;         /* entries in use, young and main */
    size_t main_count;    /* entries in the main table */
    size_t max_count;     /* cap on count; 0: no cap */
    uint64_t drops;       /* puts refused (cap, bad address, no memory) */
    pmt_ptr_huge *huge;   /* sizes of blocks >= 4 GiB */
    size_t nhuge;
    size_t huge_cap;
    uint8_t filter[PMT_FILTER_SIZE]; /* main-table keys per filter slot,
                                        saturating at 255 (then kept) */
} pmt_ptrtable;

/* Empty table with room for at least capacity slots (>= 16) and a young
   generation of 2^young_bits entries (16 bytes each; clamped to
   PMT_YOUNG_BITS_MIN..MAX).  Returns 0, or -1 when out of memory. */
int pmt_ptrtable_init(pmt_ptrtable *t, size_t capacity, unsigned young_bits,
                      size_t max_count);
void pmt_ptrtable_fini(pmt_ptrtable *t);
/* Remove every entry, keeping the array. */
void pmt_ptrtable_clear(pmt_ptrtable *t);
/* Set every entry's tag to 0. */
void pmt_ptrtable_clear_tags(pmt_ptrtable *t);
/* Bytes of memory the table holds. */
size_t pmt_ptrtable_memory(const pmt_ptrtable *t);

/* The general insertion into the main table (its inline put's slow
   path). */
int pmt_ptrtable_put_slow(pmt_ptrtable *t, uintptr_t addr, uint64_t value,
                          uint64_t *old);

/* Internal to the inline functions below. */
uint64_t pmt_ptrtable_huge_size(pmt_ptrtable *t, uintptr_t addr, int take);

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
    return s->keytag & PMT_PTR_KEY_MASK;
}

static inline size_t
pmt_ptrtable_filter_index(uint64_t key)
{
    return (size_t)((key * 0xD6E8FEB86659FD93ull) >> (64 - PMT_FILTER_BITS));
}

static inline void
pmt_ptrtable_filter_add(pmt_ptrtable *t, uint64_t key)
{
    uint8_t *c = &t->filter[pmt_ptrtable_filter_index(key)];

    if (*c != 255) {
        (*c)++;
    }
}

static inline void
pmt_ptrtable_filter_remove(pmt_ptrtable *t, uint64_t key)
{
    uint8_t *c = &t->filter[pmt_ptrtable_filter_index(key)];

    if (*c != 255) {
        (*c)--;
    }
}

/* 0 when addr is surely not in the main table. */
static inline int
pmt_ptrtable_maybe_main(const pmt_ptrtable *t, uintptr_t addr)
{
    return t->main_count != 0 &&
           t->filter[pmt_ptrtable_filter_index(pmt_ptrtable_key(addr))] != 0;
}

/* Index of addr's slot, or (size_t)-1 when absent. */
static inline __attribute__((always_inline)) size_t
pmt_ptrtable_find(const pmt_ptrtable *t, uintptr_t addr)
{
    uint64_t key = pmt_ptrtable_key(addr);
    size_t i;

    if (t->main_count == 0 || (key >> PMT_PTR_KEY_BITS) != 0 || key == 0) {
        return (size_t)-1;
    }
    i = pmt_ptrtable_home(t, key);
    for (;;) {
        uint64_t k = t->slots[i].keytag & PMT_PTR_KEY_MASK;
        if (k == key) {
            return i;
        }
        if (k == 0) {
            return (size_t)-1;
        }
        if (++i == t->capacity) {
            i = 0;
        }
    }
}

static inline __attribute__((always_inline)) uint64_t
pmt_ptrtable_value_at(pmt_ptrtable *t, size_t i, uintptr_t addr, int take)
{
    const pmt_ptr_slot *s = &t->slots[i];
    uint64_t size = s->size;

    if (size == UINT32_MAX) {
        size = pmt_ptrtable_huge_size(t, addr, take);
    }
    return size | ((s->keytag >> PMT_PTR_KEY_BITS) << PMT_PTR_SIZE_BITS);
}

/* Remove the entry in slot i.  Backward-shift deletion: later entries of
   the probe run move into the hole when their home slot is at or before
   it, so no tombstones are left. */
static inline __attribute__((always_inline)) void
pmt_ptrtable_remove_at(pmt_ptrtable *t, size_t i)
{
    size_t j = i, cap = t->capacity;

    pmt_ptrtable_filter_remove(t, pmt_ptrtable_slot_key(&t->slots[i]));
    t->count--;
    t->main_count--;
    for (;;) {
        size_t home, dist_home, dist_hole;
        const pmt_ptr_slot *sj;
        if (++j == cap) {
            j = 0;
        }
        sj = &t->slots[j];
        if ((sj->keytag & PMT_PTR_KEY_MASK) == 0) {
            break;
        }
        home = pmt_ptrtable_home(t, pmt_ptrtable_slot_key(sj));
        dist_home = j >= home ? j - home : j + cap - home;
        dist_hole = j >= i ? j - i : j + cap - i;
        if (dist_home >= dist_hole) {
            t->slots[i] = *sj;
            i = j;
        }
    }
    t->slots[i].keytag = 0;
    t->slots[i].size = 0;
}

/* Remove addr from the main table. */
static inline __attribute__((always_inline)) int
pmt_ptrtable_main_pop(pmt_ptrtable *t, uintptr_t addr, uint64_t *value)
{
    size_t i = pmt_ptrtable_find(t, addr);

    if (i == (size_t)-1) {
        return 0;
    }
    *value = pmt_ptrtable_value_at(t, i, addr, 1);
    pmt_ptrtable_remove_at(t, i);
    return 1;
}

static inline __attribute__((always_inline)) int
pmt_ptrtable_main_get(pmt_ptrtable *t, uintptr_t addr, uint64_t *value)
{
    size_t i = pmt_ptrtable_find(t, addr);

    if (i == (size_t)-1) {
        return 0;
    }
    *value = pmt_ptrtable_value_at(t, i, addr, 0);
    return 1;
}

/* Insert into the main table; the common case (a new small block, no
   growth) is one probe loop, inline.  No cap check (the caller's). */
static inline __attribute__((always_inline)) int
pmt_ptrtable_main_put(pmt_ptrtable *t, uintptr_t addr, uint64_t value,
                      uint64_t *old)
{
    uint64_t key = pmt_ptrtable_key(addr);
    uint64_t size = value & PMT_PTR_SIZE_MASK;
    pmt_ptr_slot *s;
    size_t i;

    if (t->slots == NULL || key == 0 || (key >> PMT_PTR_KEY_BITS) != 0 ||
        (addr & 15) != 0 || size >= UINT32_MAX ||
        t->main_count + 1 > t->grow_at) {
        return pmt_ptrtable_put_slow(t, addr, value, old);
    }
    i = pmt_ptrtable_home(t, key);
    for (;;) {
        uint64_t k;
        s = &t->slots[i];
        k = s->keytag & PMT_PTR_KEY_MASK;
        if (k == key) {
            return pmt_ptrtable_put_slow(t, addr, value, old);
        }
        if (k == 0) {
            break;
        }
        if (++i == t->capacity) {
            i = 0;
        }
    }
    s->keytag = key | ((value >> PMT_PTR_SIZE_BITS) << PMT_PTR_KEY_BITS);
    s->size = (uint32_t)size;
    pmt_ptrtable_filter_add(t, key);
    t->count++;
    t->main_count++;
    return 0;
}

static inline size_t
pmt_ptrtable_young_index(const pmt_ptrtable *t, uintptr_t addr)
{
    return (size_t)((((uint64_t)addr >> 4) * 0x9E3779B97F4A7C15ull) >>
                    t->young_shift);
}

/* 1 when addr may take a free young entry now: a valid address (16-byte
   aligned, nonzero, below 2^47) and the cap not reached. */
static inline __attribute__((always_inline)) int
pmt_ptrtable_young_ok(const pmt_ptrtable *t, uintptr_t addr)
{
    return addr != 0 &&
           (((uint64_t)addr & 15) | ((uint64_t)addr >> 47)) == 0 &&
           (t->max_count == 0 || t->count < t->max_count);
}

/* Insert addr -> value (size | tag << 40).  Returns 0 when inserted, 1
   when an entry was replaced (addr's own, or a stale one of the block the
   young generation displaced; its value goes to *old), -1 when refused
   (cap reached, bad address, no memory: drops is incremented). */
static inline __attribute__((always_inline)) int
pmt_ptrtable_put(pmt_ptrtable *t, uintptr_t addr, uint64_t value,
                 uint64_t *old)
{
    uint64_t key = pmt_ptrtable_key(addr);
    pmt_ptr_young *y;
    int rc = 0;

    if (t->young == NULL || key == 0 || (key >> PMT_PTR_KEY_BITS) != 0 ||
        (addr & 15) != 0) {
        t->drops++;
        return -1;
    }
    y = &t->young[pmt_ptrtable_young_index(t, addr)];
    if (y->addr == addr) {
        *old = y->value;
        y->value = value;
        return 1;
    }
    if (t->max_count != 0 && t->count >= t->max_count) {
        t->drops++;
        return -1;
    }
    if (y->addr != 0) {
        /* The displaced entry moves to the main table; if it cannot, the
           new one is refused (nothing is lost silently). */
        rc = pmt_ptrtable_main_put(t, y->addr, y->value, old);
        if (rc < 0) {
            return -1;
        }
        t->count--; /* counted again below */
    }
    y->addr = addr;
    y->value = value;
    t->count++;
    return rc;
}

/* Empty young entry y (whose addr is set) and return its value. */
static inline __attribute__((always_inline)) uint64_t
pmt_ptrtable_young_take(pmt_ptrtable *t, pmt_ptr_young *y)
{
    uint64_t value = y->value;

    y->addr = 0;
    y->value = 0;
    t->count--;
    return value;
}

/* Remove addr.  Returns 1 and its value in *value, or 0 when absent. */
static inline __attribute__((always_inline)) int
pmt_ptrtable_pop(pmt_ptrtable *t, uintptr_t addr, uint64_t *value)
{
    pmt_ptr_young *y;

    if (t->count == 0) {
        return 0;
    }
    y = &t->young[pmt_ptrtable_young_index(t, addr)];
    if (y->addr == addr) {
        *value = pmt_ptrtable_young_take(t, y);
        return 1;
    }
    return pmt_ptrtable_main_pop(t, addr, value);
}

/* 1 and the value in *value when present, else 0. */
static inline __attribute__((always_inline)) int
pmt_ptrtable_get(pmt_ptrtable *t, uintptr_t addr, uint64_t *value)
{
    const pmt_ptr_young *y;

    if (t->count == 0) {
        return 0;
    }
    y = &t->young[pmt_ptrtable_young_index(t, addr)];
    if (y->addr == addr) {
        *value = y->value;
        return 1;
    }
    return pmt_ptrtable_main_get(t, addr, value);
}

/* Start fetching the main-table line where addr's probe starts, so the
   miss overlaps other work.  Always inlined: GCC finds a separate function
   with nothing but a prefetch free of side effects and deletes the call.
   A read prefetch: without PRFCHW (not in the x86-64 baseline) the
   compiler drops a write prefetch altogether. */
static inline __attribute__((always_inline)) void
pmt_ptrtable_prefetch_home(const pmt_ptrtable *t, uintptr_t addr)
{
    if (t->main_count != 0) {
        __builtin_prefetch(
            &t->slots[pmt_ptrtable_home(t, pmt_ptrtable_key(addr))], 0);
    }
}

#endif /* PMT_CORE_PTRTABLE_H */
