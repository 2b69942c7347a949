/*
 * ptrtable.h - open-addressing hash table from a pointer to a 64-bit value.
 *
 * Pure C (no Python.h).  Linear probing over one flat array of 16-byte
 * entries: no per-entry allocation, one cache line touched on most
 * operations.  Key 0 marks an empty slot (NULL is never stored).  Removal
 * shifts the following entries back, so there are no tombstones and
 * lookups never slow down after many frees.
 *
 * Not thread-safe: the caller serialises every call (alloc.c uses the GIL
 * for the Python domains and its own mutex for the raw domain).  The table
 * allocates with the C library's malloc, never through Python's allocators.
 */
#ifndef PMT_CORE_PTRTABLE_H
#define PMT_CORE_PTRTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uintptr_t key;  /* the pointer; 0 when the slot is empty */
    uint64_t value; /* caller's data (alloc.c packs size and stack id) */
} pmt_ptr_entry;

typedef struct {
    pmt_ptr_entry *slots; /* capacity = mask + 1 entries, or NULL */
    size_t mask;          /* capacity - 1 (capacity is a power of two) */
    unsigned shift;       /* 64 - log2(capacity), for Fibonacci hashing */
    size_t count;         /* entries in use */
    size_t max_count;     /* cap on count; 0: no cap */
    uint64_t drops;       /* puts refused (cap reached or out of memory) */
} pmt_ptrtable;

/* Empty table; capacity is rounded up to a power of two (>= 16).
   Returns 0, or -1 when out of memory. */
int pmt_ptrtable_init(pmt_ptrtable *t, size_t capacity, size_t max_count);
void pmt_ptrtable_fini(pmt_ptrtable *t);
/* Remove every entry, keeping the array. */
void pmt_ptrtable_clear(pmt_ptrtable *t);

/* Call fn(entry, arg) on every entry; fn may rewrite entry->value but
   must not change the key. */
void pmt_ptrtable_foreach(pmt_ptrtable *t,
                          void (*fn)(pmt_ptr_entry *entry, void *arg),
                          void *arg);

/* Bytes of memory the table holds. */
size_t pmt_ptrtable_memory(const pmt_ptrtable *t);

/* Internal to the inline functions below. */
int pmt_ptrtable_grow(pmt_ptrtable *t);
void pmt_ptrtable_insert_new(pmt_ptrtable *t, uintptr_t key, uint64_t value);

/* Grow when count would exceed 3/4 of the capacity. */
#define PMT_PTRTABLE_LOAD_NUM 3
#define PMT_PTRTABLE_LOAD_DEN 4

/* Fibonacci hashing of the address in 16-byte units (allocators align
   blocks to 16 bytes, so the low 4 bits carry nothing).  Measured against
   locality-keeping variants (address chunks of 64 B to 16 KiB placed at
   random slots), plain hashing was as fast or faster: the win of nearby
   slots is eaten by the clusters that dense pools build. */
static inline size_t
pmt_ptrtable_slot(const pmt_ptrtable *t, uintptr_t key)
{
    return (size_t)((((uint64_t)key >> 4) * 0x9E3779B97F4A7C15ull)
                    >> t->shift);
}

/* Insert key -> value.  Returns 0 when inserted, 1 when key was present
   (its previous value goes to *old, the new one replaces it), -1 when
   refused (cap reached or growth failed; drops is incremented). */
static inline int
pmt_ptrtable_put(pmt_ptrtable *t, uintptr_t key, uint64_t value,
                 uint64_t *old)
{
    size_t i;

    if (t->slots == NULL) {
        t->drops++;
        return -1;
    }
    i = pmt_ptrtable_slot(t, key);
    for (;;) {
        pmt_ptr_entry *e = &t->slots[i];
        if (e->key == key) {
            *old = e->value;
            e->value = value;
            return 1;
        }
        if (e->key == 0) {
            break;
        }
        i = (i + 1) & t->mask;
    }
    if (t->max_count != 0 && t->count >= t->max_count) {
        t->drops++;
        return -1;
    }
    if ((t->count + 1) * PMT_PTRTABLE_LOAD_DEN > (t->mask + 1) * PMT_PTRTABLE_LOAD_NUM) {
        if (pmt_ptrtable_grow(t) < 0) {
            t->drops++;
            return -1;
        }
        pmt_ptrtable_insert_new(t, key, value);
    }
    else {
        t->slots[i].key = key;
        t->slots[i].value = value;
    }
    t->count++;
    return 0;
}

static inline int
pmt_ptrtable_get(const pmt_ptrtable *t, uintptr_t key, uint64_t *value)
{
    size_t i;

    if (t->slots == NULL || t->count == 0) {
        return 0;
    }
    i = pmt_ptrtable_slot(t, key);
    for (;;) {
        const pmt_ptr_entry *e = &t->slots[i];
        if (e->key == key) {
            *value = e->value;
            return 1;
        }
        if (e->key == 0) {
            return 0;
        }
        i = (i + 1) & t->mask;
    }
}

static inline int
pmt_ptrtable_pop(pmt_ptrtable *t, uintptr_t key, uint64_t *value)
{
    size_t i, j;

    if (t->slots == NULL || t->count == 0) {
        return 0;
    }
    i = pmt_ptrtable_slot(t, key);
    for (;;) {
        if (t->slots[i].key == key) {
            break;
        }
        if (t->slots[i].key == 0) {
            return 0;
        }
        i = (i + 1) & t->mask;
    }
    *value = t->slots[i].value;
    t->count--;
    /* Backward-shift deletion: move later entries of the same probe run
       into the hole when their home slot is at or before it. */
    j = i;
    for (;;) {
        size_t home;
        j = (j + 1) & t->mask;
        if (t->slots[j].key == 0) {
            break;
        }
        home = pmt_ptrtable_slot(t, t->slots[j].key);
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].key = 0;
    t->slots[i].value = 0;
    return 1;
}


#endif /* PMT_CORE_PTRTABLE_H */
