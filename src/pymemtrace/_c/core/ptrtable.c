/*
 * ptrtable.c - see ptrtable.h.
 */
#include "ptrtable.h"

#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 16
/* Grow when count would exceed 3/4 of the capacity. */
#define MAX_LOAD_NUM 3
#define MAX_LOAD_DEN 4

/* Fibonacci hashing: the multiply spreads the low bits of an aligned
   pointer into the high bits, which pick the slot. */
static inline size_t
slot_of(const pmt_ptrtable *t, uintptr_t key)
{
    return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> t->shift);
}

static unsigned
log2_of(size_t capacity)
{
    unsigned bits = 0;

    while (((size_t)1 << bits) < capacity) {
        bits++;
    }
    return bits;
}

static int
alloc_slots(pmt_ptrtable *t, size_t capacity)
{
    unsigned bits = log2_of(capacity);
    pmt_ptr_entry *slots;

    capacity = (size_t)1 << bits;
    slots = calloc(capacity, sizeof(pmt_ptr_entry));
    if (slots == NULL) {
        return -1;
    }
    t->slots = slots;
    t->mask = capacity - 1;
    t->shift = 64 - bits;
    return 0;
}

int
pmt_ptrtable_init(pmt_ptrtable *t, size_t capacity, size_t max_count)
{
    memset(t, 0, sizeof(*t));
    t->max_count = max_count;
    if (capacity < MIN_CAPACITY) {
        capacity = MIN_CAPACITY;
    }
    return alloc_slots(t, capacity);
}

void
pmt_ptrtable_fini(pmt_ptrtable *t)
{
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

void
pmt_ptrtable_clear(pmt_ptrtable *t)
{
    if (t->slots != NULL) {
        memset(t->slots, 0, (t->mask + 1) * sizeof(pmt_ptr_entry));
    }
    t->count = 0;
}

/* Insert into a table known to have room and not to hold key. */
static void
insert_new(pmt_ptrtable *t, uintptr_t key, uint64_t value)
{
    size_t i = slot_of(t, key);

    while (t->slots[i].key != 0) {
        i = (i + 1) & t->mask;
    }
    t->slots[i].key = key;
    t->slots[i].value = value;
}

static int
grow(pmt_ptrtable *t)
{
    pmt_ptr_entry *old = t->slots;
    size_t old_capacity = t->mask + 1, i;

    if (alloc_slots(t, old_capacity * 2) < 0) {
        return -1;
    }
    for (i = 0; i < old_capacity; i++) {
        if (old[i].key != 0) {
            insert_new(t, old[i].key, old[i].value);
        }
    }
    free(old);
    return 0;
}

int
pmt_ptrtable_put(pmt_ptrtable *t, uintptr_t key, uint64_t value,
                 uint64_t *old)
{
    size_t i;

    if (t->slots == NULL) {
        t->drops++;
        return -1;
    }
    i = slot_of(t, key);
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
    if ((t->count + 1) * MAX_LOAD_DEN > (t->mask + 1) * MAX_LOAD_NUM) {
        if (grow(t) < 0) {
            t->drops++;
            return -1;
        }
        insert_new(t, key, value);
    }
    else {
        t->slots[i].key = key;
        t->slots[i].value = value;
    }
    t->count++;
    return 0;
}

int
pmt_ptrtable_get(const pmt_ptrtable *t, uintptr_t key, uint64_t *value)
{
    size_t i;

    if (t->slots == NULL || t->count == 0) {
        return 0;
    }
    i = slot_of(t, key);
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

int
pmt_ptrtable_pop(pmt_ptrtable *t, uintptr_t key, uint64_t *value)
{
    size_t i, j;

    if (t->slots == NULL || t->count == 0) {
        return 0;
    }
    i = slot_of(t, key);
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
        home = slot_of(t, t->slots[j].key);
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].key = 0;
    t->slots[i].value = 0;
    return 1;
}

void
pmt_ptrtable_foreach(pmt_ptrtable *t,
                     void (*fn)(pmt_ptr_entry *entry, void *arg), void *arg)
{
    size_t i;

    if (t->slots == NULL) {
        return;
    }
    for (i = 0; i <= t->mask; i++) {
        if (t->slots[i].key != 0) {
            fn(&t->slots[i], arg);
        }
    }
}

size_t
pmt_ptrtable_memory(const pmt_ptrtable *t)
{
    return t->slots == NULL ? 0 : (t->mask + 1) * sizeof(pmt_ptr_entry);
}
