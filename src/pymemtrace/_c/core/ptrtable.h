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

/* Insert key -> value.  Returns 0 when inserted, 1 when key was present
   (its previous value goes to *old, the new one replaces it), -1 when
   refused (cap reached or growth failed; drops is incremented). */
int pmt_ptrtable_put(pmt_ptrtable *t, uintptr_t key, uint64_t value,
                     uint64_t *old);
/* Remove key.  Returns 1 and its value in *value, or 0 when absent. */
int pmt_ptrtable_pop(pmt_ptrtable *t, uintptr_t key, uint64_t *value);
/* 1 and the value in *value when present, else 0. */
int pmt_ptrtable_get(const pmt_ptrtable *t, uintptr_t key, uint64_t *value);

/* Call fn(entry, arg) on every entry; fn may rewrite entry->value but
   must not change the key. */
void pmt_ptrtable_foreach(pmt_ptrtable *t,
                          void (*fn)(pmt_ptr_entry *entry, void *arg),
                          void *arg);

/* Bytes of memory the table holds. */
size_t pmt_ptrtable_memory(const pmt_ptrtable *t);

#endif /* PMT_CORE_PTRTABLE_H */
