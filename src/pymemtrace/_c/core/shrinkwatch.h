/*
 * core/shrinkwatch.h - a generation counter that changes after every call
 * that may have lowered the process RSS.
 *
 * Pure C, no Python.h.  RSS grows only through page faults; it shrinks
 * only through calls that give memory back.  While acquired, the GOT
 * slots through which loaded objects (libpython and the interpreter
 * included, extension modules loaded later too) call those functions are
 * pointed at wrappers (core/gotpatch.h) that call the real function, then
 * bump the generation when the call may have lowered RSS:
 *
 *   free, realloc, reallocarray  the block was mmapped (glibc munmaps it),
 *                    or is in a thread arena and 64 KiB or more with its
 *                    free neighbour before it (glibc may shrink that
 *                    heap), or the program break went down across the call
 *                    (main-arena trim).  With another malloc (ASan,
 *                    jemalloc, tcmalloc) no header is read: the test is
 *                    malloc_usable_size(p) >= 64 KiB, plus the break.
 *   munmap           on success
 *   madvise          on success with an advice that drops pages at once
 *                    or lets the kernel drop them: DONTNEED, FREE, REMOVE,
 *                    PAGEOUT, DONTNEED_LOCKED, HWPOISON, GUARD_INSTALL
 *                    (not COLD, WILLNEED, DONTFORK, MERGEABLE, ...)
 *   mremap           on success when the size goes down or MREMAP_FIXED
 *                    replaced what was at the new address
 *   mmap, mmap64     on success with MAP_FIXED (it replaces what was there)
 *   brk, sbrk        on success when the break goes down
 *   malloc_trim      when it returns 1 (memory was released)
 *
 * Not seen (docs/design.md, "Shrink watch"): calls through pointers from
 * dlsym (ctypes), from statically linked code, from libc itself (other
 * than free/realloc's own munmap or trim, which the tests above cover),
 * the dynamic loader, sanitizer runtimes and pymemtrace's own extension;
 * allocators' background threads that purge (jemalloc) from within their
 * own object; MADV_FREE pages reclaimed later; shmdt, process_madvise,
 * hole punching in mapped files.
 *
 * Wrappers: no allocation, no lock, errno left as the real call left it,
 * any thread with or without the GIL; async-signal-safe where the real
 * function is (munmap, madvise, mremap, mmap, brk, sbrk).  Counters are
 * spread over cache lines by thread, so threads freeing at once do not
 * fight over one line.
 *
 * fork(): the child keeps the wrappers (its GOT is a copy) and the users
 * count (its copies of the users release as usual); its call counters
 * start again from zero and its generation is bumped once.
 */
#ifndef PMT_CORE_SHRINKWATCH_H
#define PMT_CORE_SHRINKWATCH_H

#include <stddef.h>
#include <stdint.h>

/* The wrapped functions, for pmt_shrinkwatch_stats_t.calls. */
enum {
    PMT_SW_FREE,
    PMT_SW_REALLOC,
    PMT_SW_REALLOCARRAY,
    PMT_SW_MUNMAP,
    PMT_SW_MADVISE,
    PMT_SW_MREMAP,
    PMT_SW_MMAP,
    PMT_SW_BRK,
    PMT_SW_SBRK,
    PMT_SW_MALLOC_TRIM,
    PMT_SHRINKWATCH_KINDS
};

/*
 * Install the wrappers (reference counted: the first acquire installs, the
 * last release restores).  host: an address inside the object that loads
 * extension modules (libpython or the python executable; the caller passes
 * e.g. the address of a CPython API function), whose dlopen slot is
 * wrapped so that objects loaded later are patched too; NULL for none.
 * Returns 0, or an errno value (ENOSYS where GOT patching is unsupported:
 * then the generation still works but only changes on
 * pmt_shrinkwatch_touch).  Every acquire, whatever it returned, is paired
 * with one release.  Thread-safe.
 */
int pmt_shrinkwatch_acquire(const void *host);
void pmt_shrinkwatch_release(void);

/* Changes (increases) after any wrapped call that may have lowered RSS
   returned; one atomic load (acquire: a plain load on x86-64). */
uint64_t pmt_shrinkwatch_generation(void);

/* Bump it by hand (e.g. a poller thread that saw RSS change for a reason
   nobody reported, or after freeing pymemtrace's own big buffers).
   Async-signal-safe. */
void pmt_shrinkwatch_touch(void);

typedef struct {
    uint64_t generation;
    uint64_t calls[PMT_SHRINKWATCH_KINDS]; /* wrapper calls, per function */
    uint64_t bumps;   /* generation bumps by the wrappers */
    uint64_t touches; /* by pmt_shrinkwatch_touch */
    size_t slots;     /* GOT slots holding our wrappers now */
    size_t users;     /* acquires not yet released */
    int installed;    /* the wrappers are installed */
    int header_test;  /* 1: glibc's malloc, chunk headers are read */
    int patch_errno;  /* result of the last installation, 0: it worked */
} pmt_shrinkwatch_stats_t;

/* Counters for tests (calls and bumps since the first acquire of this
   process). */
void pmt_shrinkwatch_stats(pmt_shrinkwatch_stats_t *out);

/* The wrapped function's name of a PMT_SW_* kind ("free", ...), or NULL. */
const char *pmt_shrinkwatch_kind_name(int kind);

/* fork(), called by fork.c's one pthread_atfork registration in its
   written order: prepare takes this file's lock (before gotpatch's),
   parent releases it, child resets the counters and releases it. */
void pmt_shrinkwatch_fork_prepare(void);
void pmt_shrinkwatch_fork_parent(void);
void pmt_shrinkwatch_fork_child(void);

#endif /* PMT_CORE_SHRINKWATCH_H */
