/*
 * core/ringbuf.c - bounded ring buffer of samples (see ringbuf.h).
 */
#include "ringbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
pmt_ringbuf_init(pmt_ringbuf *ring, size_t capacity)
{
    memset(ring, 0, sizeof(*ring));
    if (capacity == 0) {
        return EINVAL;
    }
    if (capacity > SIZE_MAX / sizeof(pmt_sample)) {
        return ENOMEM;
    }
    ring->items = malloc(capacity * sizeof(pmt_sample));
    if (ring->items == NULL) {
        return ENOMEM;
    }
    ring->capacity = capacity;
    return 0;
}

void
pmt_ringbuf_free(pmt_ringbuf *ring)
{
    free(ring->items);
    ring->items = NULL;
    ring->capacity = 0;
    ring->head = 0;
    ring->count = 0;
}

int
pmt_ringbuf_push(pmt_ringbuf *ring, const pmt_sample *sample)
{
    size_t tail;

    if (ring->capacity == 0) {
        ring->dropped++;
        return 1;
    }
    if (ring->count == ring->capacity) {
        /* Full: the slot of the oldest becomes the newest. */
        ring->items[ring->head] = *sample;
        ring->head = (ring->head + 1) % ring->capacity;
        ring->dropped++;
        return 1;
    }
    tail = (ring->head + ring->count) % ring->capacity;
    ring->items[tail] = *sample;
    ring->count++;
    return 0;
}

size_t
pmt_ringbuf_pop(pmt_ringbuf *ring, pmt_sample *out, size_t max)
{
    size_t n = ring->count < max ? ring->count : max;
    size_t i;

    for (i = 0; i < n; i++) {
        out[i] = ring->items[ring->head];
        ring->head = (ring->head + 1) % ring->capacity;
    }
    ring->count -= n;
    if (ring->count == 0) {
        ring->head = 0;
    }
    return n;
}

void
pmt_ringbuf_clear(pmt_ringbuf *ring)
{
    ring->head = 0;
    ring->count = 0;
}
