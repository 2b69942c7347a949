/*
 * core/ptrmap.h - an open-addressing hash map from pointer-sized keys to
 * 32-bit values.
 *
 * Pure C, no Python.h: the reference tracer (reftrace.c) uses it inside
 * its PyRefTracer callback, where no Python object may be created, to map
 * a live object's address to the index of its type, and a type's address
 * to its entry.  Memory comes from malloc/calloc, never from Python's
 * allocators, so tracemalloc and our own hooks do not see it.
 *
 * Linear probing with backward-shift deletion: no tombstones, so a map
 * with as many removals as insertions (objects created and destroyed)
 * keeps short probe sequences.  Key 0 marks an empty slot and cannot be
 * stored.
 *
 * Thread safety: none; the caller serialises every call (reftrace.c: the
 * GIL).
 */
#ifndef PMT_CORE_PTRMAP_H
#define PMT_CORE_PTRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uintptr_t key;  /* 0: empty slot */
    uint32_t value; /* caller's payload */
} pmt_ptrmap_slot;

typedef struct {
    pmt_ptrmap_slot *slots; /* capacity slots, calloc'd */
    size_t capacity;        /* a power of two, or 0 before init */
    unsigned shift;         /* 64 - log2(capacity), for the hash */
    size_t count;           /* keys stored */
    size_t limit;           /* most keys ever stored; 0: no limit */
} pmt_ptrmap;

/* Prepare an empty map of at least min_capacity slots holding at most
   limit keys (0: no limit).  0 on success, ENOMEM. */
int pmt_ptrmap_init(pmt_ptrmap *map, size_t min_capacity, size_t limit);

/* Release the slots; the map may be initialised again. */
void pmt_ptrmap_fini(pmt_ptrmap *map);

/* 1 and *value when key is present, else 0. */
int pmt_ptrmap_get(const pmt_ptrmap *map, uintptr_t key, uint32_t *value);

/* Store key -> value.  Returns 0 when key was new, 1 when it replaced a
   value (the old one in *old if old is not NULL), -1 when the map is full
   (limit reached) or memory ran out (nothing stored). */
int pmt_ptrmap_put(pmt_ptrmap *map, uintptr_t key, uint32_t value,
                   uint32_t *old);

/* Remove key.  1 and its value in *value (if not NULL) when it was
   present, else 0. */
int pmt_ptrmap_pop(pmt_ptrmap *map, uintptr_t key, uint32_t *value);

/* Call visit(key, value, arg) for every entry, in no order.  The map must
   not change during the walk. */
void pmt_ptrmap_walk(const pmt_ptrmap *map,
                     void (*visit)(uintptr_t key, uint32_t value, void *arg),
                     void *arg);

#endif /* PMT_CORE_PTRMAP_H */
