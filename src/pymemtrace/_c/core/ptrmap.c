/*
 * core/ptrmap.c - see ptrmap.h.
 */
#include "ptrmap.h"

#include <errno.h>
#include <stdlib.h>

#define PTRMAP_MIN_CAPACITY 64

/* Fibonacci hashing of the address without its alignment bits: the top
   bits of the product are well mixed. */
static inline size_t
ptrmap_index(const pmt_ptrmap *map, uintptr_t key)
{
    uint64_t h = (uint64_t)(key >> 3) * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> map->shift);
}

static unsigned
ptrmap_shift_for(size_t capacity)
{
    unsigned bits = 0;

    while (((size_t)1 << bits) < capacity) {
        bits++;
    }
    return 64 - bits;
}

static int
ptrmap_alloc(pmt_ptrmap *map, size_t capacity)
{
    pmt_ptrmap_slot *slots = calloc(capacity, sizeof(*slots));

    if (slots == NULL) {
        return ENOMEM;
    }
    map->slots = slots;
    map->capacity = capacity;
    map->shift = ptrmap_shift_for(capacity);
    map->count = 0;
    return 0;
}

int
pmt_ptrmap_init(pmt_ptrmap *map, size_t min_capacity, size_t limit)
{
    size_t capacity = PTRMAP_MIN_CAPACITY;

    while (capacity < min_capacity) {
        capacity <<= 1;
    }
    map->limit = limit;
    return ptrmap_alloc(map, capacity);
}

void
pmt_ptrmap_fini(pmt_ptrmap *map)
{
    free(map->slots);
    map->slots = NULL;
    map->capacity = 0;
    map->count = 0;
}

int
pmt_ptrmap_get(const pmt_ptrmap *map, uintptr_t key, uint32_t *value)
{
    size_t mask = map->capacity - 1;
    size_t i;

    if (map->slots == NULL || key == 0) {
        return 0;
    }
    for (i = ptrmap_index(map, key);; i = (i + 1) & mask) {
        if (map->slots[i].key == key) {
            *value = map->slots[i].value;
            return 1;
        }
        if (map->slots[i].key == 0) {
            return 0;
        }
    }
}

/* Insert a key known to be absent, into a map with room. */
static void
ptrmap_insert_new(pmt_ptrmap *map, uintptr_t key, uint32_t value)
{
    size_t mask = map->capacity - 1;
    size_t i = ptrmap_index(map, key);

    while (map->slots[i].key != 0) {
        i = (i + 1) & mask;
    }
    map->slots[i].key = key;
    map->slots[i].value = value;
    map->count++;
}

static int
ptrmap_grow(pmt_ptrmap *map)
{
    pmt_ptrmap old = *map;
    size_t i;

    if (ptrmap_alloc(map, old.capacity * 2) != 0) {
        *map = old;
        return -1;
    }
    for (i = 0; i < old.capacity; i++) {
        if (old.slots[i].key != 0) {
            ptrmap_insert_new(map, old.slots[i].key, old.slots[i].value);
        }
    }
    free(old.slots);
    return 0;
}

int
pmt_ptrmap_put(pmt_ptrmap *map, uintptr_t key, uint32_t value, uint32_t *old)
{
    size_t mask;
    size_t i;

    if (map->slots == NULL || key == 0) {
        return -1;
    }
    mask = map->capacity - 1;
    for (i = ptrmap_index(map, key); map->slots[i].key != 0;
         i = (i + 1) & mask) {
        if (map->slots[i].key == key) {
            if (old != NULL) {
                *old = map->slots[i].value;
            }
            map->slots[i].value = value;
            return 1;
        }
    }
    if (map->limit != 0 && map->count >= map->limit) {
        return -1;
    }
    /* Keep the load under 2/3 so probe sequences stay short. */
    if ((map->count + 1) * 3 > map->capacity * 2) {
        if (ptrmap_grow(map) < 0) {
            return -1;
        }
    }
    ptrmap_insert_new(map, key, value);
    return 0;
}

int
pmt_ptrmap_pop(pmt_ptrmap *map, uintptr_t key, uint32_t *value)
{
    size_t mask;
    size_t i, j;

    if (map->slots == NULL || key == 0) {
        return 0;
    }
    mask = map->capacity - 1;
    for (i = ptrmap_index(map, key);; i = (i + 1) & mask) {
        if (map->slots[i].key == key) {
            break;
        }
        if (map->slots[i].key == 0) {
            return 0;
        }
    }
    if (value != NULL) {
        *value = map->slots[i].value;
    }
    /* Backward shift: move later members of the cluster into the hole
       when their home slot is not cyclically inside (hole, current]. */
    for (j = (i + 1) & mask; map->slots[j].key != 0; j = (j + 1) & mask) {
        size_t home = ptrmap_index(map, map->slots[j].key);
        int stays =
            (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            map->slots[i] = map->slots[j];
            i = j;
        }
    }
    map->slots[i].key = 0;
    map->slots[i].value = 0;
    map->count--;
    return 1;
}

void
pmt_ptrmap_walk(const pmt_ptrmap *map,
                void (*visit)(uintptr_t key, uint32_t value, void *arg),
                void *arg)
{
    size_t i;

    for (i = 0; i < map->capacity; i++) {
        if (map->slots[i].key != 0) {
            visit(map->slots[i].key, map->slots[i].value, arg);
        }
    }
}
