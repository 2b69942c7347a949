/*
 * fork.c - a forked child gets a capture of its own.
 *
 * No lock is held across fork(): glibc's fork may take the loader's lock
 * after the prepare handlers, and a thread inside dlopen may be waiting
 * for our lock in malloc, so holding ours there could deadlock.  Instead
 * the child, where only the forking thread lives, abandons the tables it
 * inherited (another thread may have been changing them; their memory is
 * a copy-on-write leftover of the parent) and starts empty ones, with a
 * new lock, under its own pid.  Its capture file is opened at its first
 * snapshot, so a child that only execs leaves none (the exec'd program
 * starts its own).
 */
#include "preload.h"

#include <string.h>
#include <unistd.h>

#define rt pmt_nt_runtime

static void
in_child(void)
{
    int entered = pmt_nt_guard_enter();
    int k;

    pthread_mutex_init(&rt.lock, NULL);
    rt.fd = -1;
    rt.failed = 0;
    rt.finished = 0;
    rt.pid = getpid();
    rt.stacks_written = 0;
    rt.pycodes_written = 0;
    rt.maps_hash = 0;
    rt.peak_written = 0;
    rt.events = 0;
    rt.next_check = 0;
    rt.unknown_frees = 0;
    atomic_store(&rt.n_alloc, 0);
    atomic_store(&rt.n_free, 0);
    atomic_store(&rt.bytes_alloc, 0);
    for (k = 0; k < PMT_NT_SIZE_BUCKETS; k++) {
        atomic_store(&rt.sizes[k], 0);
    }
    memset(pmt_nt_tls.sizes, 0, sizeof(pmt_nt_tls.sizes));
    rt.sites = NULL; /* abandoned with the tables (counters of the parent) */
    rt.sites_cap = 0;
    pmt_nt_tls.allocs = 0;
    pmt_nt_tls.frees = 0;
    pmt_nt_tls.bytes = 0;
    pmt_nt_tls.pending = 0;
    pmt_nt_tls.stack_lo = 0; /* the child's thread is the forking one, but
                                ask again: cheap, and always right */
    pmt_nt_tls.stack_hi = 0;
    memset(&rt.ptrs, 0, sizeof(rt.ptrs));
    memset(&rt.stacks, 0, sizeof(rt.stacks));
    if (pmt_nt_table_init() < 0) {
        atomic_store(&rt.on, 0);
    }
    rt.last_dump_ns = pmt_nt_now_ns();
    if (entered) {
        pmt_nt_guard_exit();
    }
}

void
pmt_nt_fork_install(void)
{
    pthread_atfork(NULL, NULL, in_child);
}
