/*
 * preload.h - the umbrella header of libpymemtrace_preload.so, the native
 * (malloc-level) tracer (docs/native.md).
 *
 * The library is loaded with LD_PRELOAD into any program (Python or not),
 * so it never includes Python.h.  One file per concern:
 *   interpose.c   the exported malloc/free/... and mmap/munmap, the dlsym
 *                 bootstrap (a static arena while dlsym itself allocates),
 *                 configuration, constructor and destructor
 *   threadstate.c the per-thread state: re-entrancy guard, sampling
 *   livetable.c   the live-allocation table (core/ptrtable) and the stacks
 *                 with live and peak totals (core/stacktable), one lock
 *   stackcap.c    native stack capture (glibc backtrace)
 *   unwind.c      the same frames through a cache of unwind rules
 *   capture.c     the capture file: append-only records, periodic
 *                 snapshots, the last one at exit
 *   fork.c        pthread_atfork: the child starts a capture of its own
 *   signals.c     SIGTERM and SIGHUP left to their default action: the
 *                 exit snapshot first (a handler the program never sees)
 *   python.c      the Python stacks, when the pymemtrace extension is
 *                 loaded in the process (native/pybridge.h)
 *
 * Threading: every table and the capture file are guarded by
 * pmt_nt_runtime.lock (a plain pthread mutex).  The only lock order is
 * "our lock, then whatever the real allocator takes"; the stack is
 * captured before the lock is taken, so the unwinder's loader lock is
 * never taken while ours is held.  A thread in the tracer's own code has
 * its guard set, so allocations made by the tables, the unwinder and the
 * writer go straight to the real allocator.
 */
#ifndef PMT_NATIVE_PRELOAD_H
#define PMT_NATIVE_PRELOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/ptrtable.h"
#include "core/stacktable.h"
#include "native/pybridge.h"

#define PMT_NT_EXPORT __attribute__((visibility("default")))
#define PMT_NT_TLS __attribute__((tls_model("initial-exec"))) __thread
#define PMT_NT_LIKELY(x) __builtin_expect(!!(x), 1)
#define PMT_NT_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define PMT_NT_MAX_DEPTH 64

/* A Python frame in a stack: the tag bit (never set in a user-space
   return address), the code id (pybridge.h) and the line. */
#define PMT_NT_PYFRAME_TAG (1ull << 63)

#define PMT_NT_SIZE_BUCKETS 64

/* The counters of one stack (weighted in sampled mode, as the table). */
struct pmt_nt_site {
    uint64_t allocs;      /* allocations made with this stack */
    uint64_t frees;       /* of those, the ones freed since */
    uint64_t bytes_alloc; /* bytes of the allocations */
    uint64_t bytes_freed; /* bytes of the freed ones */
    int dirty;            /* changed since the last snapshot written */
};

/* Recording modes (PYMEMTRACE_NATIVE_MODE). */
enum pmt_nt_mode {
    PMT_NT_COUNT = 0,  /* counters only: calls and bytes, no table */
    PMT_NT_EXACT = 1,  /* every block in the table, with its stack */
    PMT_NT_SAMPLED = 2 /* blocks sampled by bytes (as issue 4) */
};

/* The real functions, found with dlsym(RTLD_NEXT). */
typedef struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*reallocarray)(void *, size_t, size_t);
    void (*free)(void *);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    int (*munmap)(void *, size_t);
    void (*exit_)(int) __attribute__((noreturn));
} pmt_nt_real;

/* The process-wide state of the tracer.  Who touches what:
   - configuration fields: written once by pmt_nt_init (pthread_once), then
     read-only (a forked child keeps them);
   - `on`: atomic; read by every hook without the lock;
   - tables, counters, capture file: guarded by `lock`. */
struct pmt_nt_runtime {
    pmt_nt_real real;             /* written once by the bootstrap */
    _Atomic int on;               /* 1 while recording */
    _Atomic int ready;            /* 1 once real is resolved */
    int mode;                     /* enum pmt_nt_mode (config) */
    int depth;                    /* native frames kept (config) */
    int unwind_fp;                /* walk frame pointers, not DWARF (config) */
    uint64_t sample_bytes;        /* mean sampling interval (config) */
    uint64_t sample_exact_from;   /* blocks this big are all recorded */
    uint64_t interval_ns;         /* between periodic snapshots (config) */
    char outdir[4096];            /* capture directory (config) */
    pthread_mutex_t lock;         /* guards everything below */
    pmt_ptrtable ptrs;            /* address -> size | stack id << 40 */
    pmt_stacktable stacks;        /* stacks with live and peak totals */
    pid_t pid;                    /* the process the capture belongs to */
    int fd;                       /* capture file, -1: not open yet */
    int failed;                   /* the capture could not be written */
    int finished;                 /* the exit snapshot is written */
    uint32_t stacks_written;      /* stacks already in the file */
    uint64_t maps_hash;           /* hash of the last maps written */
    int64_t peak_written;         /* peak_total of the last snapshot */
    uint64_t events;              /* allocation events since the start */
    uint64_t next_check;          /* events value of the next clock check */
    uint64_t last_dump_ns;        /* monotonic time of the last snapshot */
    _Atomic uint64_t n_alloc;     /* allocation calls (every mode) */
    _Atomic uint64_t n_free;      /* free calls of non-NULL (every mode) */
    _Atomic uint64_t bytes_alloc; /* bytes requested (every mode) */
    uint64_t unknown_frees;       /* frees of blocks not in the table */
    /* Allocation calls by size, every mode: bucket 0 holds size 0, bucket
       k the sizes in [2^(k-1), 2^k) (the last one everything above). */
    _Atomic uint64_t sizes[PMT_NT_SIZE_BUCKETS];
    /* Per stack id (the lock held): calls and bytes allocated there, and
       frees of the blocks allocated there, for the per-function summary;
       grown with the stack table. */
    struct pmt_nt_site *sites;
    uint32_t sites_cap;     /* entries allocated in sites */
    pthread_key_t exit_key; /* its destructor flushes an ending thread's
                                counts (config: created once) */
    int have_exit_key;      /* exit_key was created */
    /* Sampled mode: a counting filter of the listed addresses, so that
       the free of a block that was not sampled (nearly all) takes no
       lock.  Counters change under the lock, saturate at 255 (then stay);
       read without it, relaxed: a block reaches another thread's free
       only through the program's own synchronisation, after the put. */
    _Atomic uint8_t *filter; /* PMT_NT_FILTER_SIZE counters, or NULL */
    /* The extension's callbacks (python.c): set once, when it registers,
       code before stack; NULL while it is not loaded. */
    _Atomic(pmt_nt_pystack_fn) pystack;
    _Atomic(pmt_nt_pycode_fn) pycode;
    uint32_t pycodes_written; /* code ids already in the file */
};

#define PMT_NT_FILTER_BITS 16
#define PMT_NT_FILTER_SIZE (1u << PMT_NT_FILTER_BITS)

extern struct pmt_nt_runtime pmt_nt_runtime;

/* threadstate.c */
typedef struct {
    int busy;           /* re-entrancy guard: in the tracer's own code */
    uint32_t pending;   /* events to count here before the next flush
                           (0 in a new thread: its first event flushes,
                           which registers the thread-exit flush) */
    uint64_t allocs;    /* allocation calls not yet in pmt_nt_runtime */
    uint64_t frees;     /* free calls not yet in pmt_nt_runtime */
    uint64_t bytes;     /* bytes requested not yet in pmt_nt_runtime */
    int seeded;         /* the sampler's state is set */
    int64_t countdown;  /* bytes to the next sample */
    uint64_t rng;       /* xorshift64* state */
    uintptr_t stack_lo; /* this thread's stack, for the frame-pointer */
    uintptr_t stack_hi; /* walk (0: not known yet) */
    uint16_t sizes[PMT_NT_SIZE_BUCKETS]; /* allocations by size, not yet
                                            in pmt_nt_runtime */
    int exit_flush;                      /* the thread-exit flush is set */
    /* A terminating signal that arrived while this thread was inside the
       tracer (signals.c): handled when the guard is left. */
    volatile int pending_signal;
} pmt_nt_thread;

extern PMT_NT_TLS pmt_nt_thread pmt_nt_tls;

/* Enter the tracer's own code: 1 when entered (call pmt_nt_guard_exit
   later), 0 when this thread is already inside (do not record). */
static inline int
pmt_nt_guard_enter(void)
{
    if (pmt_nt_tls.busy) {
        return 0;
    }
    pmt_nt_tls.busy = 1;
    /* A signal handler on this thread reads busy (signals.c): the store
       is not moved past the tracer's code (a compiler barrier, no cost). */
    atomic_signal_fence(memory_order_seq_cst);
    return 1;
}

void pmt_nt_signal_deferred(void);

static inline void
pmt_nt_guard_exit(void)
{
    atomic_signal_fence(memory_order_seq_cst);
    pmt_nt_tls.busy = 0;
    atomic_signal_fence(memory_order_seq_cst);
    if (PMT_NT_UNLIKELY(pmt_nt_tls.pending_signal != 0)) {
        pmt_nt_signal_deferred();
    }
}

int pmt_nt_sample_hit(size_t size);
void pmt_nt_count_add(void);
void pmt_nt_count_flush(void);
void pmt_nt_thread_exit_init(void);

/* The bucket of size in pmt_nt_runtime.sizes. */
static inline int
pmt_nt_size_bucket(uint64_t size)
{
    int k = size == 0 ? 0 : 64 - __builtin_clzll(size);

    return k < PMT_NT_SIZE_BUCKETS ? k : PMT_NT_SIZE_BUCKETS - 1;
}

/* Count calls per thread, added to the shared atomics every 256 events
   (a locked add per call would cost more than the call); a snapshot
   misses at most 255 events of each other thread. */
static inline void
pmt_nt_count(uint64_t allocs, uint64_t frees, uint64_t bytes)
{
    if (allocs) {
        pmt_nt_tls.sizes[pmt_nt_size_bucket(bytes)]++;
    }
    pmt_nt_tls.allocs += allocs;
    pmt_nt_tls.frees += frees;
    pmt_nt_tls.bytes += bytes;
    if (PMT_NT_UNLIKELY(pmt_nt_tls.pending-- == 0)) {
        pmt_nt_count_flush();
    }
}
void pmt_nt_weight_of(uint64_t size, int64_t *bytes, int64_t *blocks);

/* livetable.c */
int pmt_nt_table_init(void);
void pmt_nt_record_alloc(void *ptr, size_t size, void *caller);
void pmt_nt_record_free(void *ptr);
void pmt_nt_record_munmap(void *addr, size_t len);
/* realloc with the guard held: old leaves the table, the real realloc
   runs, the new block enters it (or old comes back when realloc fails). */
void *pmt_nt_realloc_traced(void *old, size_t size, void *caller);
/* The periodic snapshot when it is due (the lock held). */
void pmt_nt_maybe_dump_unlocked(void);

/* stackcap.c */
void pmt_nt_stack_warmup(void);
uint32_t pmt_nt_stack_capture(pmt_frame *frames, int depth, void *caller);

/* unwind.c: the frames above caller, as backtrace() gives them, or -1
   when the cached walk declines (own: tracer frames allowed first). */
void pmt_nt_unwind_init(void);
void pmt_nt_unwind_stale(void);
int pmt_nt_unwind_cached(pmt_frame *frames, int depth, void *caller, int own,
                         uintptr_t lo, uintptr_t hi);

/* capture.c */
uint64_t pmt_nt_now_ns(void);
void pmt_nt_capture_start_unlocked(void);
void pmt_nt_capture_dump_unlocked(int final);

/* python.c: appends the calling thread's Python frames (at most max) to
   frames; how many. */
uint32_t pmt_nt_python_frames(pmt_nt_pystack_fn stack, pmt_frame *frames,
                              uint32_t max);

/* fork.c */
void pmt_nt_fork_install(void);

/* signals.c: once the capture is started (init_once) */
void pmt_nt_signals_install(void);

/* Kinds of snapshot record. */
#define PMT_NT_SNAP_PERIODIC 1
#define PMT_NT_SNAP_EXIT 2

#endif /* PMT_NATIVE_PRELOAD_H */
