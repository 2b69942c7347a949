/*
 * core/faultcount.h - "has any watched thread taken a page fault since I
 * last looked?" for the price of one load per watched thread.
 *
 * Pure C (no Python.h).  RSS grows only through page faults.  Each watched
 * thread gets a perf_event software counter of its page faults
 * (PERF_COUNT_SW_PAGE_FAULTS, sample_period 1) with a one-page ring: the
 * kernel appends an 8-byte record per fault and advances the ring's
 * data_head in a page we have mapped, so the sum of the heads moves iff a
 * watched thread faulted.  The sum is read with plain loads and no system
 * call; a tail is moved up when its head moved, so the ring never stops
 * counting (a full ring still shows a head that moved).
 *
 * Faults the kernel takes on the process's behalf (read(2) into pages
 * never touched) are counted only where the kernel lets us count kernel-
 * mode faults (root, CAP_PERFMON or perf_event_paranoid <= 1):
 * PMT_FAULTS_ALL.  Elsewhere PMT_FAULTS_USER counts faults taken in user
 * mode only.  Where perf_event_open is refused (perf_event_paranoid 3,
 * seccomp, another OS) the source is PMT_FAULTS_NONE and the stamp moves
 * at every call, so a caller falls back to reading memory every time.
 *
 * Threads are watched from their first pmt_faultcount_watch_thread() (a
 * thread-local check, then one perf_event_open and mmap per thread) until
 * the last user releases; a thread that exits keeps its (still) ring
 * until then.  At most PMT_FAULTCOUNT_MAX_THREADS threads; a thread
 * beyond that is not watched (the stamp then moves at every call of that
 * thread: exact reads there).
 *
 * Thread safety: acquire/release/watch_thread take an internal mutex; the
 * stamp is read without it, and the caller must make sure no release
 * that unmaps the rings runs meanwhile (the hooks hold the GIL for both).
 * fork(): the rings are not inherited (perf maps are VM_DONTCOPY); the
 * child forgets every ring and thread, and watches again from the next
 * acquire.
 */
#ifndef PMT_CORE_FAULTCOUNT_H
#define PMT_CORE_FAULTCOUNT_H

#include <stdint.h>

#define PMT_FAULTCOUNT_MAX_THREADS 64

enum {
    PMT_FAULTS_NONE = 0, /* no counter: read memory every time */
    PMT_FAULTS_USER = 1, /* faults taken in user mode */
    PMT_FAULTS_ALL = 2   /* user and kernel mode */
};

/* Reference counted; the first acquire probes the source.  Returns the
   source (PMT_FAULTS_*). */
int pmt_faultcount_acquire(void);
void pmt_faultcount_release(void);

/* Its name for a log header. */
const char *pmt_faultcount_source_name(int source);

/* Watch the calling thread (idempotent; cheap after the first call of a
   thread in this acquisition).  1 when it is watched, 0 when not. */
int pmt_faultcount_watch_thread(void);

/* A number that changes whenever a watched thread faulted, a thread
   started being watched or the source is NONE (then it changes at every
   call).  Monotonic within one acquisition. */
uint64_t pmt_faultcount_stamp(void);

/* fork(), called by fork.c's one pthread_atfork registration in its
   written order: prepare takes the lock, parent releases it, child forgets
   every ring and thread (and starts with a fresh lock). */
void pmt_faultcount_fork_prepare(void);
void pmt_faultcount_fork_parent(void);
void pmt_faultcount_fork_child(void);

#endif /* PMT_CORE_FAULTCOUNT_H */
