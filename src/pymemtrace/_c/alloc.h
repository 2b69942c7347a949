/*
 * alloc.h - the allocator hooks' interface for their Python API.
 *
 * alloc_hooks.c owns the PEP 445 hooks, the tables and the tracker;
 * alloc_api.c owns the Python functions and drives the hooks through what
 * is declared here; alloc_traced.c (foreign blocks) reports to the hooks
 * through native.h's pmt_alloc_foreign_*; alloc_revive.c (objects revived
 * from free lists, 3.13+) through pmt_tracker_object_created.  The calls
 * go one way:
 *
 *     alloc_api.c --> alloc_traced.c --> alloc_hooks.c
 *          |--------> alloc_revive.c -------^
 *          '-------------------------------^
 *
 * Every function here needs the GIL.
 */
#ifndef PMT_ALLOC_H
#define PMT_ALLOC_H

#include "native.h"

#include "core/ptrtable.h"
#include "core/stacktable.h"

#define PMT_ALLOC_NDOMAINS 3
/* Frames per stack, at most. */
#define PMT_TRACKER_MAX_DEPTH 256
/* Stacks the tracker can tell apart (the id goes into a table slot's tag). */
#define PMT_TRACKER_MAX_STACKS (PMT_PTR_TAG_MAX - 1)

enum {
    PMT_TRACKER_OFF = 0,
    PMT_TRACKER_EXACT = 1,
    PMT_TRACKER_SAMPLED = 2
};

/* Live bytes and blocks of one domain (0 raw, 1 mem, 2 obj) and its name. */
void pmt_alloc_domain_live(int domain, int64_t *bytes, int64_t *blocks);
const char *pmt_alloc_domain_name(int domain);

typedef struct {
    int mode;            /* PMT_TRACKER_EXACT or _SAMPLED */
    int depth;           /* 1..PMT_TRACKER_MAX_DEPTH */
    double sample_bytes; /* mean sampling interval, >= 1 */
    size_t max_traces;   /* cap per table, 0: none */
    uint32_t max_stacks; /* 1..PMT_TRACKER_MAX_STACKS */
    uint64_t seed;       /* of the sampling RNG, 0: from time */
} pmt_tracker_config;

/* PMT_TRACKER_* now. */
int pmt_tracker_mode(void);
/* Start (the tracker is off; cfg checked by the caller): 0, or -1 with an
   exception set and nothing left running. */
int pmt_tracker_start(const pmt_tracker_config *cfg);
/* Stop in two steps: switch_off stops recording (hooks may still be in
   flight); release then frees what the tracker holds.  Whoever watches
   foreign blocks stops between the two (alloc_traced.c), so that none of
   its wrappers is still accounting when the tables go. */
void pmt_tracker_switch_off(void);
void pmt_tracker_release(void);
/* Stacks recorded from now on stop below this frame (NULL: none). */
void pmt_tracker_set_base(const void *frame);
void pmt_tracker_reset_peak(void);

typedef struct {
    size_t memory; /* bytes the tracker holds */
    size_t traces, stacks;
    uint64_t dropped_traces, dropped_stacks, dropped_pending;
} pmt_tracker_stats_t;
void pmt_tracker_stats(pmt_tracker_stats_t *out);
/* The stack table, with the changes queued by threads without the GIL
   applied, and the tracker's depth and sample_bytes.  Valid while the
   GIL is held and the re-entrancy guard set (pmt_alloc_guard_swap). */
const pmt_stacktable *pmt_tracker_stacks(int *depth, double *sample_bytes);

/* An object was created whose memory starts at block (GIL held).  When
   the tracker holds that block under another stack, the object was
   revived from a free list (it never went through the allocator): the
   block moves to the calling thread's stack.  Returns 1 when it moved.
   Never raises; allocates nothing through Python. */
int pmt_tracker_object_created(const void *block);
/* An object whose memory starts at block is about to be deallocated (GIL
   held): its block, which may wait in a free list, is charged to no stack
   until an object is created in it again (exact mode). */
void pmt_tracker_object_destroyed(const void *block);

/* alloc_revive.c: the reference tracer that calls the function above
   (CPython 3.13+, PyRefTracer_CREATE).  start: 0, or -1 with an exception
   set; below 3.13 it does nothing (pmt_revive_supported() is 0).  stop
   puts back the tracer that was there before, when the slot is still
   ours.  add_stats adds its figures to alloc_stats()'s dict. */
int pmt_revive_supported(void);
int pmt_revive_start(void);
void pmt_revive_stop(void);
int pmt_revive_add_stats(PyObject *dict);

/* Set this thread's re-entrancy guard (our own allocations are not
   recorded while it is set); returns its previous value. */
int pmt_alloc_guard_swap(int value);

/* Module shutdown: counting off, the hooks removed when nobody needs
   them.  The tracker is stopped first. */
void pmt_alloc_hooks_shutdown(void);

#endif /* PMT_ALLOC_H */
