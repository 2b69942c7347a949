/*
 * ptrtable.c - see ptrtable.h.
 */
#include "ptrtable.h"

#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 16

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
void
pmt_ptrtable_insert_new(pmt_ptrtable *t, uintptr_t key, uint64_t value)
{
    size_t i = pmt_ptrtable_slot(t, key);

    while (t->slots[i].key != 0) {
        i = (i + 1) & t->mask;
    }
    t->slots[i].key = key;
    t->slots[i].value = value;
}

int
pmt_ptrtable_grow(pmt_ptrtable *t)
{
    pmt_ptr_entry *old = t->slots;
    size_t old_capacity = t->mask + 1, i;

    if (alloc_slots(t, old_capacity * 2) < 0) {
        return -1;
    }
    for (i = 0; i < old_capacity; i++) {
        if (old[i].key != 0) {
            pmt_ptrtable_insert_new(t, old[i].key, old[i].value);
        }
    }
    free(old);
    return 0;
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
