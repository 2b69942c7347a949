/*
 * core/gotpatch.h - redirect calls that other loaded objects make to a
 * named function, by rewriting their GOT slots (ELF "PLT/GOT patching").
 *
 * Pure C, no Python.h.  The allocation tracker (alloc_traced.c) uses it to
 * see the PyTraceMalloc_Track/Untrack calls of extension modules (numpy
 * reports its data buffers that way): those calls go straight into
 * CPython's tracemalloc and never pass through the PEP 445 hooks.
 *
 * What is patched: in every loaded object but the excluded ones, each
 * relocation of type JUMP_SLOT (calls through the PLT) or GLOB_DAT (calls
 * of -fno-plt builds, and function pointers taken) against one of the
 * names.  Pages made read-only by RELRO are made writable for the store
 * and read-only again.  Every patched slot is remembered with the value it
 * held (the real function, an unresolved lazy-binding stub, or another
 * tool's wrapper), and restore puts exactly that value back.
 *
 * Objects loaded later: the dlopen slots of the "host" objects (where the
 * interpreter loads extension modules from: libpython or the python
 * executable) are patched with a wrapper that calls the real dlopen and
 * then patches the objects that were added (dl_iterate_phdr's dlpi_adds
 * says whether anything was).
 *
 * Limits (documented in docs/allocations.md): ELF on x86-64 and AArch64
 * only (gotpatch_other.c answers ENOSYS elsewhere); calls made through a
 * pointer obtained with dlsym, or from a statically linked object, do not
 * go through a GOT slot and are not seen; objects loaded by a dlopen that
 * is not one of the hosts' (ctypes) are patched at the next host dlopen.
 * Our wrapper calls the real functions (from our own GOT), so a foreign
 * wrapper found in a slot is bypassed while we are installed (and put
 * back by restore).
 *
 * Clients: alloc_traced.c (PyTraceMalloc_Track/Untrack, hosts left alone)
 * and core/shrinkwatch (free, munmap, ..., hosts patched too) may be
 * installed at once and removed independently (pmt_gotpatch_remove); each
 * has its own exclusions, the hosts' dlopen slots are shared.
 *
 * Thread safety: install, remove and restore are serialised by an
 * internal mutex and may race with calls through the slots (a slot is one
 * aligned pointer store).  The dlopen wrapper may run on any thread.
 */
#ifndef PMT_CORE_GOTPATCH_H
#define PMT_CORE_GOTPATCH_H

#include <stddef.h>

/* Most slots remembered at once; beyond it slots are left unpatched
   (counted by pmt_gotpatch_stats).  free and munmap (core/shrinkwatch.h)
   are referenced by nearly every loaded object. */
#define PMT_GOTPATCH_MAX_SLOTS 4096
/* Most names patched at once, all clients together. */
#define PMT_GOTPATCH_MAX_NAMES 16
/* Most objects given as exclusions (per client) or hosts (all clients). */
#define PMT_GOTPATCH_MAX_OBJECTS 8
/* Most installations at once (alloc_traced.c, shrinkwatch). */
#define PMT_GOTPATCH_MAX_CLIENTS 4

/* Flag of pmt_gotpatch_install: patch these names in the hosts too. */
#define PMT_GOTPATCH_HOSTS_TOO 1u

/* 1 where GOT patching is implemented on this platform. */
int pmt_gotpatch_supported(void);

/* fork(), called by fork.c's one pthread_atfork registration in its
   written order (after core/shrinkwatch's lock, which is held around
   install): prepare takes this file's lock, parent and child release it. */
void pmt_gotpatch_fork_prepare(void);
void pmt_gotpatch_fork_release(void);

/*
 * Add a client: patch the GOT slots bound to names[i] (n names) with
 * replacements[i] in every loaded object except the ones containing an
 * address of exclude[0..nexclude), this file's own object, and (unless
 * flags has PMT_GOTPATCH_HOSTS_TOO) the hosts.  The dlopen slots of the
 * objects containing hosts[i] are patched (hosts of every client together)
 * so that objects loaded later are patched too, for every client.
 *
 * Several clients may be installed at once, with distinct names.  Calling
 * it again with the same names and replacements only rescans; a name that
 * is installed with another replacement, or some of the names but not all,
 * is EBUSY.
 *
 * Returns the number of slots patched by this call, or -1 with errno set
 * (ENOSYS: not supported here; EINVAL: bad arguments; EBUSY: see above;
 * ENOSPC: more names, clients or hosts than the limits).  A slot whose page
 * cannot be made writable is skipped and counted as a failure.
 */
int pmt_gotpatch_install(const char *const *names, void *const *replacements,
                         size_t n, const void *const *exclude, size_t nexclude,
                         const void *const *hosts, size_t nhosts,
                         unsigned flags);

/*
 * Remove the client whose replacements are replacements[0..n): put back
 * the saved value of each remembered slot holding one of them (as
 * pmt_gotpatch_restore does) and forget those names.  The last client's
 * removal also restores the hosts' dlopen slots.  Returns the number of
 * slots restored.  Removing names that are not installed does nothing.
 */
int pmt_gotpatch_remove(void *const *replacements, size_t n);

/*
 * Put back the saved value of every remembered slot that still holds our
 * replacement in an object that is still loaded (a slot another tool
 * rewrote after us is left to it), and forget them all: every client is
 * removed.  Returns the number of slots restored.  Idempotent.
 */
int pmt_gotpatch_restore(void);

/* Slots remembered now that hold one of replacements[0..n). */
size_t pmt_gotpatch_slots_of(void *const *replacements, size_t n);

typedef struct {
    size_t slots;        /* slots patched now, every client */
    size_t dlopen_slots; /* of which dlopen slots of the hosts */
    size_t failures;     /* slots we could not patch (mprotect, full) */
    size_t rescans;      /* scans after a host dlopen loaded something */
    size_t names;        /* names installed now, every client */
    int installed;       /* 1 while some client is installed */
} pmt_gotpatch_stats_t;

/* Figures of the current (or last) installation. */
void pmt_gotpatch_stats(pmt_gotpatch_stats_t *out);

#endif /* PMT_CORE_GOTPATCH_H */
