/*
 * ptrtable.c - see ptrtable.h.
 */
#include "ptrtable.h"

#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 16
/* Grow at 70% full, by half. */
#define LOAD_NUM 7
#define LOAD_DEN 10

static int
alloc_slots(pmt_ptrtable *t, size_t capacity)
{
    pmt_ptr_slot *slots = calloc(capacity, sizeof(pmt_ptr_slot));

    if (slots == NULL) {
        return -1;
    }
    t->slots = slots;
    t->capacity = capacity;
    t->grow_at = capacity / LOAD_DEN * LOAD_NUM +
                 capacity % LOAD_DEN * LOAD_NUM / LOAD_DEN;
    return 0;
}

int
pmt_ptrtable_init(pmt_ptrtable *t, size_t capacity, unsigned young_bits,
                  size_t max_count)
{
    memset(t, 0, sizeof(*t));
    t->max_count = max_count;
    if (capacity < MIN_CAPACITY) {
        capacity = MIN_CAPACITY;
    }
    if (young_bits < PMT_YOUNG_BITS_MIN) {
        young_bits = PMT_YOUNG_BITS_MIN;
    }
    if (young_bits > PMT_YOUNG_BITS_MAX) {
        young_bits = PMT_YOUNG_BITS_MAX;
    }
    t->young_size = (size_t)1 << young_bits;
    t->young_shift = 64 - young_bits;
    t->young = calloc(t->young_size, sizeof(pmt_ptr_young));
    if (t->young == NULL) {
        return -1;
    }
    if (alloc_slots(t, capacity) < 0) {
        free(t->young);
        t->young = NULL;
        return -1;
    }
    return 0;
}

void
pmt_ptrtable_fini(pmt_ptrtable *t)
{
    free(t->young);
    free(t->slots);
    free(t->huge);
    memset(t, 0, sizeof(*t));
}

void
pmt_ptrtable_clear(pmt_ptrtable *t)
{
    if (t->slots != NULL) {
        memset(t->slots, 0, t->capacity * sizeof(pmt_ptr_slot));
    }
    if (t->young != NULL) {
        memset(t->young, 0, t->young_size * sizeof(pmt_ptr_young));
    }
    memset(t->filter, 0, sizeof(t->filter));
    t->count = 0;
    t->main_count = 0;
    t->nhuge = 0;
}

void
pmt_ptrtable_clear_tags(pmt_ptrtable *t)
{
    size_t i;

    for (i = 0; t->slots != NULL && i < t->capacity; i++) {
        t->slots[i].keytag &= PMT_PTR_KEY_MASK;
    }
    for (i = 0; t->young != NULL && i < t->young_size; i++) {
        t->young[i].value &= PMT_PTR_SIZE_MASK;
    }
}

size_t
pmt_ptrtable_memory(const pmt_ptrtable *t)
{
    return sizeof(t->filter) + t->capacity * sizeof(pmt_ptr_slot) +
           t->huge_cap * sizeof(pmt_ptr_huge) +
           (t->young != NULL ? t->young_size * sizeof(pmt_ptr_young) : 0);
}

static inline int
slot_empty(const pmt_ptr_slot *s)
{
    return (s->keytag & PMT_PTR_KEY_MASK) == 0;
}

/* Place a slot's content at the first free slot of its probe run. */
static void
place(pmt_ptrtable *t, const pmt_ptr_slot *src)
{
    size_t i = pmt_ptrtable_home(t, pmt_ptrtable_slot_key(src));

    while (!slot_empty(&t->slots[i])) {
        if (++i == t->capacity) {
            i = 0;
        }
    }
    t->slots[i] = *src;
}

static int
grow(pmt_ptrtable *t)
{
    pmt_ptr_slot *old = t->slots;
    size_t old_capacity = t->capacity, i;

    if (alloc_slots(t, old_capacity + old_capacity / 2) < 0) {
        return -1;
    }
    for (i = 0; i < old_capacity; i++) {
        if (!slot_empty(&old[i])) {
            place(t, &old[i]);
        }
    }
    free(old);
    return 0;
}

uint64_t
pmt_ptrtable_huge_size(pmt_ptrtable *t, uintptr_t addr, int take)
{
    size_t i;

    for (i = 0; i < t->nhuge; i++) {
        if (t->huge[i].addr == addr) {
            uint64_t size = t->huge[i].size;
            if (take) {
                t->huge[i] = t->huge[--t->nhuge];
            }
            return size;
        }
    }
    return UINT32_MAX; /* not reached when the table is consistent */
}

static int
huge_add(pmt_ptrtable *t, uintptr_t addr, uint64_t size)
{
    if (t->nhuge == t->huge_cap) {
        size_t cap = t->huge_cap ? t->huge_cap * 2 : 8;
        pmt_ptr_huge *huge = realloc(t->huge, cap * sizeof(pmt_ptr_huge));
        if (huge == NULL) {
            return -1;
        }
        t->huge = huge;
        t->huge_cap = cap;
    }
    t->huge[t->nhuge].addr = addr;
    t->huge[t->nhuge].size = size;
    t->nhuge++;
    return 0;
}

/* Fill slot s with addr -> value; -1 when a huge size cannot be kept. */
static int
fill(pmt_ptrtable *t, pmt_ptr_slot *s, uintptr_t addr, uint64_t value)
{
    uint64_t key = pmt_ptrtable_key(addr);
    uint64_t size = value & PMT_PTR_SIZE_MASK;
    uint32_t tag = (uint32_t)(value >> PMT_PTR_SIZE_BITS) & PMT_PTR_TAG_MAX;

    if (size >= UINT32_MAX) {
        if (huge_add(t, addr, size) < 0) {
            return -1;
        }
        size = UINT32_MAX;
    }
    s->keytag = key | ((uint64_t)tag << PMT_PTR_KEY_BITS);
    s->size = (uint32_t)size;
    return 0;
}

int
pmt_ptrtable_put_slow(pmt_ptrtable *t, uintptr_t addr, uint64_t value,
                      uint64_t *old)
{
    uint64_t key = pmt_ptrtable_key(addr);
    size_t i;

    if (t->slots == NULL || key == 0 || (key >> PMT_PTR_KEY_BITS) != 0 ||
        (addr & 15) != 0) {
        t->drops++;
        return -1;
    }
    i = pmt_ptrtable_find(t, addr);
    if (i != (size_t)-1) {
        *old = pmt_ptrtable_value_at(t, i, addr, 1);
        if (fill(t, &t->slots[i], addr, value) < 0) {
            pmt_ptrtable_remove_at(t, i);
            t->drops++;
            return -1;
        }
        return 1;
    }
    if (t->main_count + 1 > t->grow_at && grow(t) < 0) {
        t->drops++;
        return -1;
    }
    i = pmt_ptrtable_home(t, key);
    while (!slot_empty(&t->slots[i])) {
        if (++i == t->capacity) {
            i = 0;
        }
    }
    if (fill(t, &t->slots[i], addr, value) < 0) {
        t->drops++;
        return -1;
    }
    pmt_ptrtable_filter_add(t, key);
    t->count++;
    t->main_count++;
    return 0;
}
