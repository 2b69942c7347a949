/*
 * core/ringbuf.h - a bounded ring buffer of process samples.
 *
 * Pure C: no Python.h.  Used by the RSS sampler thread (sampler.c), which
 * pushes, and by the Python side, which pops in batches.
 *
 * Thread safety: none of its own.  The owner serialises every call with
 * its own mutex (sampler.c: the sampler's lock).
 *
 * When full, a push overwrites the oldest sample and counts it as dropped:
 * a reader that falls behind keeps the most recent history.
 */
#ifndef PMT_CORE_RINGBUF_H
#define PMT_CORE_RINGBUF_H

#include <stddef.h>
#include <stdint.h>

/* One reading of this process. */
typedef struct {
    double monotonic;  /* CLOCK_MONOTONIC, seconds */
    double wall;       /* CLOCK_REALTIME, seconds since the epoch */
    uint64_t rss;      /* resident set size, bytes */
    double cpu_user;   /* user CPU time of the process, seconds */
    double cpu_system; /* system CPU time of the process, seconds */
} pmt_sample;

typedef struct {
    pmt_sample *items; /* capacity slots, malloc'ed */
    size_t capacity;   /* number of slots, >= 1 */
    size_t head;       /* index of the oldest sample */
    size_t count;      /* samples held, <= capacity */
    uint64_t dropped;  /* samples overwritten before being popped */
} pmt_ringbuf;

/* Allocate capacity slots.  Returns 0, EINVAL (capacity 0) or ENOMEM. */
int pmt_ringbuf_init(pmt_ringbuf *ring, size_t capacity);

/* Release the slots; the ring is then empty with capacity 0. */
void pmt_ringbuf_free(pmt_ringbuf *ring);

/* Append a sample; when full the oldest is overwritten.  Returns 1 when a
   sample was dropped, else 0. */
int pmt_ringbuf_push(pmt_ringbuf *ring, const pmt_sample *sample);

/* Move up to max of the oldest samples to out, oldest first.  Returns how
   many were moved. */
size_t pmt_ringbuf_pop(pmt_ringbuf *ring, pmt_sample *out, size_t max);

/* Forget every sample held (the dropped count stays). */
void pmt_ringbuf_clear(pmt_ringbuf *ring);

#endif /* PMT_CORE_RINGBUF_H */
