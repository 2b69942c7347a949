/*
 * core/rss.h - the process memory probe, one interface for every platform.
 *
 * Pure C: no Python.h, so it can be used by the sampler thread (which never
 * holds the GIL), by the preloaded native tracer and by tests/c.
 *
 * Implementations: rss_linux.c (/proc/self/statm through a kept-open
 * descriptor), rss_darwin.c (task_info), rss_other.c (ENOSYS).  Exactly one
 * of them is compiled, chosen by setup.py.
 *
 * Thread safety: every function may be called from any thread at any time,
 * including from a thread that does not hold the GIL.
 */
#ifndef PMT_CORE_RSS_H
#define PMT_CORE_RSS_H

#include <stddef.h>
#include <stdint.h>

/* Resident set size of this process in bytes.  Returns 0 on success, or an
   errno value (ENOSYS where the platform has no implementation). */
int pmt_rss_current(uint64_t *rss_bytes);

/* Peak resident set size of this process in bytes (high-water mark). */
int pmt_rss_peak(uint64_t *peak_bytes);

/* Name of the method used, for error messages and docs ("statm", ...). */
const char *pmt_rss_method(void);

/* The reference slow path, fopen/fscanf/fclose per call, kept only so the
   benchmark can show what the kept-open descriptor saves. */
int pmt_rss_current_slow(uint64_t *rss_bytes);

/* Hands the C allocator's free memory back to the system (glibc's
   malloc_trim), so that the resident set counts live memory only: a
   measurement that freed much (a census walk) would otherwise lend its
   pages to the allocations it measures.  Returns 1 when memory was
   released, 0 when none was or the platform cannot. */
int pmt_rss_release_free(void);

/* Page size in bytes, read once. */
size_t pmt_rss_page_size(void);

/* fork() child, called by fork.c: a descriptor of /proc/self inherited by
   the child would read the parent; it is closed and reopened at the next
   read. */
void pmt_rss_fork_child(void);

#endif /* PMT_CORE_RSS_H */
