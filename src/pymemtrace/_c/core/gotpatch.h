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
 * Thread safety: install and restore are serialised by an internal mutex
 * and may race with calls through the slots (a slot is one aligned
 * pointer store).  The dlopen wrapper may run on any thread.
 */
#ifndef PMT_CORE_GOTPATCH_H
#define PMT_CORE_GOTPATCH_H

#include <stddef.h>

/* Most slots remembered at once; beyond it slots are left unpatched
   (counted by pmt_gotpatch_stats). */
#define PMT_GOTPATCH_MAX_SLOTS 512
/* Most names patched at once. */
#define PMT_GOTPATCH_MAX_NAMES 8
/* Most objects given as exclusions or hosts. */
#define PMT_GOTPATCH_MAX_OBJECTS 8

/* 1 where GOT patching is implemented on this platform. */
int pmt_gotpatch_supported(void);

/*
 * Patch the GOT slots bound to names[i] (n names) with replacements[i] in
 * every loaded object except the ones containing an address of
 * exclude[0..nexclude) or of hosts[0..nhosts), and this file's own object.
 * Patch the dlopen slots of the objects containing hosts[i] so that
 * objects loaded later are patched too.  Calling it again while installed
 * only rescans (the names stay the first call's).
 *
 * Returns the number of slots patched by this call, or -1 with errno set
 * (ENOSYS: not supported here; EINVAL: bad arguments).  A slot whose page
 * cannot be made writable is skipped and counted as a failure.
 */
int pmt_gotpatch_install(const char *const *names, void *const *replacements,
                         size_t n, const void *const *exclude, size_t nexclude,
                         const void *const *hosts, size_t nhosts);

/*
 * Put back the saved value of every remembered slot that still holds our
 * replacement in an object that is still loaded (a slot another tool
 * rewrote after us is left to it), and forget them all.  Returns the
 * number of slots restored.  Idempotent.
 */
int pmt_gotpatch_restore(void);

typedef struct {
    size_t slots;        /* slots patched now */
    size_t dlopen_slots; /* of which dlopen slots of the hosts */
    size_t failures;     /* slots we could not patch (mprotect, full) */
    size_t rescans;      /* scans after a host dlopen loaded something */
    int installed;       /* 1 between install and restore */
} pmt_gotpatch_stats_t;

/* Figures of the current (or last) installation. */
void pmt_gotpatch_stats(pmt_gotpatch_stats_t *out);

#endif /* PMT_CORE_GOTPATCH_H */
