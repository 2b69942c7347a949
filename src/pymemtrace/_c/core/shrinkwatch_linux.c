/*
 * core/shrinkwatch_linux.c - the shrink watch on Linux (see shrinkwatch.h).
 *
 * The wrappers are installed as one core/gotpatch client, with the hosts
 * patched too (libpython's PyMem_RawFree calls free, obmalloc's arena
 * allocator calls munmap) and libc, the dynamic loader and sanitizer
 * runtimes excluded (found by file name at install).  Each wrapper calls
 * the real function through this object's GOT (never patched), so its
 * caller gets the real result and errno.
 *
 * glibc's free() and realloc() give memory back without going through any
 * PLT: munmap of an mmapped chunk, sbrk(-n) when the main arena's top is
 * trimmed, and a thread arena's heap shrunk (madvise or mmap PROT_NONE) or
 * unmapped.  The wrapper reads the chunk's size word before the call (the
 * block is the caller's until free returns, so the read is safe):
 * IS_MMAPPED (0x2) means the free munmaps; NON_MAIN_ARENA (0x4) with a
 * chunk of 64 KiB or more, counting the free chunk before it when
 * PREV_INUSE (0x1) is clear (they merge), means glibc may shrink that
 * heap (it only tries for merged chunks of FASTBIN_CONSOLIDATION_THRESHOLD,
 * 64 KiB).  The main arena is judged by sbrk(0) before and after, which
 * reads libc's cached break (no system call).  Not seen: a small chunk of
 * a thread arena that merges forward into a large top chunk (reading the
 * neighbour after ours is not safe: another thread may shrink the heap
 * under it), and a main-arena trim hidden by another thread growing the
 * break by more during the call.
 *
 * With another malloc in use (ASan's, jemalloc, tcmalloc: detected once
 * per installation as malloc, free or realloc resolving outside libc), no
 * header is read: the test is malloc_usable_size(p) >= 64 KiB, which all
 * of them provide, plus the break.
 *
 * Counters: the generation is alone on its cache line (read by every
 * Python event of a tracer, written rarely); the per-call counters are
 * spread over SW_STRIPES lines chosen by thread.
 */
#define _GNU_SOURCE
#include "shrinkwatch.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gotpatch.h"

#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#ifndef MADV_REMOVE
#define MADV_REMOVE 9
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif
#ifndef MADV_HWPOISON
#define MADV_HWPOISON 100
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif

/* glibc's chunk size word. */
#define SW_PREV_INUSE ((size_t)0x1)
#define SW_IS_MMAPPED ((size_t)0x2)
#define SW_NON_MAIN_ARENA ((size_t)0x4)
#define SW_SIZE_BITS (~(size_t)0x7)
/* glibc's FASTBIN_CONSOLIDATION_THRESHOLD: smaller merged chunks never
   shrink a heap; also our bar for other allocators. */
#define SW_BIG ((size_t)64 << 10)

#define SW_STRIPES 16

/* Counters of the threads hashed to one stripe. */
typedef struct {
    _Alignas(64) _Atomic uint64_t calls[PMT_SHRINKWATCH_KINDS];
    _Atomic uint64_t bumps;
} sw_stripe;

static struct shrinkwatch_runtime {
    /* Read by every tracer event: alone on its line.  Atomic. */
    _Alignas(64) _Atomic uint64_t generation;
    /* Read by every free: 1 when glibc's malloc is in use.  Written by
       the first acquire before the wrappers are installed. */
    _Alignas(64) _Atomic int header_test;
    _Atomic uint64_t touches;
    sw_stripe stripes[SW_STRIPES]; /* atomics */
    /* Protects the fields below. */
    pthread_mutex_t lock;
    size_t users;    /* acquires not yet released */
    int installed;   /* our gotpatch client is installed */
    int patch_errno; /* result of the last install */
} sw = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

/* The wrapped names: one per kind, in kind order, then aliases: mmap64
   is what code built with _FILE_OFFSET_BITS=64 (Python.h sets it) calls;
   it is mmap where off_t has 64 bits (every target gotpatch supports). */
#if defined(__LP64__)
#define SW_NAMES (PMT_SHRINKWATCH_KINDS + 1)
#else
#define SW_NAMES PMT_SHRINKWATCH_KINDS
#endif
static const char *const sw_names[SW_NAMES] = {
    "free",   "realloc", "reallocarray", "munmap", "madvise",
    "mremap", "mmap",    "brk",          "sbrk",   "malloc_trim",
#if defined(__LP64__)
    "mmap64",
#endif
};

/* Objects whose calls are never wrapped (file name prefixes): libc (its
   malloc is what free's header test is about), the dynamic loader, and
   sanitizer runtimes (their interceptors are the functions we call). */
static const char *const sw_excluded_prefixes[] = {
    "libc.so",  "libc.musl",  "ld-linux",    "ld64.so",
    "ld-musl",  "libasan.",   "libubsan.",   "libtsan.",
    "liblsan.", "libhwasan.", "libmemprof.",
};

const char *
pmt_shrinkwatch_kind_name(int kind)
{
    return kind >= 0 && kind < PMT_SHRINKWATCH_KINDS ? sw_names[kind] : NULL;
}

/* ---------------------------------------------------------------- */
/* The hot path. */

static inline sw_stripe *
stripe_of_thread(void)
{
    uint64_t t = (uint64_t)(uintptr_t)pthread_self();

    return &sw.stripes[(t * UINT64_C(0x9E3779B97F4A7C15)) >> 60];
}

static inline sw_stripe *
count_call(int kind)
{
    sw_stripe *stripe = stripe_of_thread();

    atomic_fetch_add_explicit(&stripe->calls[kind], 1, memory_order_relaxed);
    return stripe;
}

static inline void
bump(sw_stripe *stripe)
{
    /* Release: whoever sees the new value sees the call's effect. */
    atomic_fetch_add_explicit(&sw.generation, 1, memory_order_release);
    atomic_fetch_add_explicit(&stripe->bumps, 1, memory_order_relaxed);
}

/* The program break, or 0 when it cannot be read. */
static inline uintptr_t
current_break(void)
{
    void *top = sbrk(0);

    return top == (void *)-1 ? 0 : (uintptr_t)top;
}

/* 1 when giving p back may return memory to the system by itself (not
   counting a main-arena trim, seen by the break).  p is not NULL and is
   the caller's block until the call returns. */
static inline int
block_may_drop(void *p)
{
    if (atomic_load_explicit(&sw.header_test, memory_order_relaxed)) {
        const size_t *words = (const size_t *)p;
        size_t head = words[-1];
        size_t size = head & SW_SIZE_BITS;
        if (head & SW_IS_MMAPPED) {
            return 1;
        }
        if (head & SW_NON_MAIN_ARENA) {
            if (!(head & SW_PREV_INUSE)) {
                size += words[-2]; /* prev_size: the free chunk before */
            }
            return size >= SW_BIG;
        }
        return 0;
    }
    return malloc_usable_size(p) >= SW_BIG;
}

/* The state a free-like wrapper takes before the real call. */
typedef struct {
    uintptr_t brk_before;
    int may_drop;
} free_probe;

static inline free_probe
probe_before(void *p)
{
    int saved_errno = errno;
    free_probe probe;

    probe.may_drop = p != NULL && block_may_drop(p);
    probe.brk_before = current_break();
    errno = saved_errno;
    return probe;
}

static inline void
judge_after(const free_probe *probe, sw_stripe *stripe)
{
    int saved_errno = errno;

    if (probe->may_drop ||
        (probe->brk_before != 0 && current_break() < probe->brk_before)) {
        bump(stripe);
    }
    errno = saved_errno;
}

static void
sw_free(void *p)
{
    sw_stripe *stripe = count_call(PMT_SW_FREE);
    free_probe probe;

    if (p == NULL) {
        return;
    }
    probe = probe_before(p);
    free(p);
    judge_after(&probe, stripe);
}

static void *
sw_realloc(void *p, size_t size)
{
    sw_stripe *stripe = count_call(PMT_SW_REALLOC);
    free_probe probe = probe_before(p);
    void *result = realloc(p, size);

    judge_after(&probe, stripe);
    return result;
}

static void *
sw_reallocarray(void *p, size_t nmemb, size_t size)
{
    sw_stripe *stripe = count_call(PMT_SW_REALLOCARRAY);
    free_probe probe = probe_before(p);
    void *result = reallocarray(p, nmemb, size);

    judge_after(&probe, stripe);
    return result;
}

static int
sw_munmap(void *addr, size_t length)
{
    sw_stripe *stripe = count_call(PMT_SW_MUNMAP);
    int rc = munmap(addr, length);

    if (rc == 0) {
        bump(stripe);
    }
    return rc;
}

/* 1 for the advice values that drop pages (now, or at the kernel's
   leisure for MADV_FREE). */
static inline int
advice_drops(int advice)
{
    switch (advice) {
    case MADV_DONTNEED:
    case MADV_FREE:
    case MADV_REMOVE:
    case MADV_PAGEOUT:
    case MADV_DONTNEED_LOCKED:
    case MADV_HWPOISON:
    case MADV_GUARD_INSTALL:
        return 1;
    default:
        return 0;
    }
}

static int
sw_madvise(void *addr, size_t length, int advice)
{
    sw_stripe *stripe = count_call(PMT_SW_MADVISE);
    int rc = madvise(addr, length, advice);

    if (rc == 0 && advice_drops(advice)) {
        bump(stripe);
    }
    return rc;
}

static void *
sw_mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...)
{
    sw_stripe *stripe = count_call(PMT_SW_MREMAP);
    void *new_address = NULL, *result;

    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        new_address = va_arg(ap, void *);
        va_end(ap);
    }
    result = mremap(old_address, old_size, new_size, flags, new_address);
    if (result != MAP_FAILED &&
        (new_size < old_size || (flags & MREMAP_FIXED))) {
        bump(stripe);
    }
    return result;
}

static void *
sw_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
    sw_stripe *stripe = count_call(PMT_SW_MMAP);
    void *result = mmap(addr, length, prot, flags, fd, offset);

    if (result != MAP_FAILED && (flags & MAP_FIXED)) {
        bump(stripe);
    }
    return result;
}

static int
sw_brk(void *addr)
{
    sw_stripe *stripe = count_call(PMT_SW_BRK);
    int saved_errno = errno;
    uintptr_t before = current_break();
    int rc;

    errno = saved_errno;
    rc = brk(addr);
    if (rc == 0 && before != 0 && (uintptr_t)addr < before) {
        bump(stripe);
    }
    return rc;
}

static void *
sw_sbrk(intptr_t increment)
{
    sw_stripe *stripe = count_call(PMT_SW_SBRK);
    void *result = sbrk(increment);

    if (result != (void *)-1 && increment < 0) {
        bump(stripe);
    }
    return result;
}

static int
sw_malloc_trim(size_t pad)
{
    sw_stripe *stripe = count_call(PMT_SW_MALLOC_TRIM);
    int rc = malloc_trim(pad);

    if (rc == 1) {
        bump(stripe);
    }
    return rc;
}

/* Our gotpatch client: installed and removed by these replacements, in
   the order of sw_names. */
static void *const sw_replacements[SW_NAMES] = {
    (void *)sw_free,        (void *)sw_realloc, (void *)sw_reallocarray,
    (void *)sw_munmap,      (void *)sw_madvise, (void *)sw_mremap,
    (void *)sw_mmap,        (void *)sw_brk,     (void *)sw_sbrk,
    (void *)sw_malloc_trim,
#if defined(__LP64__)
    (void *)sw_mmap,
#endif
};

/* ---------------------------------------------------------------- */
/* Installation. */

/* 1 when the object holding addr is the one holding libc's version
   function (libc itself). */
static int
in_libc(void *addr, const Dl_info *libc)
{
    Dl_info info;

    return addr != NULL && dladdr(addr, &info) != 0 &&
           info.dli_fbase == libc->dli_fbase;
}

/* dl_iterate_phdr callback: the main program comes first; data is the
   address, set to NULL when it lies in one of the program's segments. */
static int
check_main_program(struct dl_phdr_info *info, size_t size, void *data)
{
    const void **addr = (const void **)data;
    ElfW(Half) i;

    (void)size;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (uintptr_t)*addr >= start &&
            (uintptr_t)*addr < start + ph->p_memsz) {
            *addr = NULL;
        }
    }
    return 1; /* the first object only */
}

/* 1 when addr lies in the main program.  A program built without -fPIE
   that takes malloc's address exports a "canonical" PLT entry for it, and
   every reference in the process resolves there (function pointers must
   compare equal); that entry jumps on to libc's malloc.  Debian's
   python3.11d is such a program. */
static int
in_main_program(const void *addr)
{
    if (addr == NULL) {
        return 0;
    }
    dl_iterate_phdr(check_main_program, &addr);
    return addr == NULL;
}

/* dl_iterate_phdr callback: *data set to 1 when an object of a known
   allocator other than glibc's is loaded. */
static int
note_other_allocator(struct dl_phdr_info *info, size_t size, void *data)
{
    static const char *const libs[] = {"libasan", "libjemalloc", "libtcmalloc",
                                       "libmimalloc", "libhwasan"};
    const char *name = info->dlpi_name, *base;
    size_t i;

    (void)size;
    if (name == NULL || name[0] == '\0') {
        return 0;
    }
    base = strrchr(name, '/');
    base = base != NULL ? base + 1 : name;
    for (i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
        if (strncmp(base, libs[i], strlen(libs[i])) == 0) {
            *(int *)data = 1;
            return 1;
        }
    }
    return 0;
}

/* 1 when a known allocator other than glibc's is loaded: ASan, jemalloc,
   tcmalloc, mimalloc (then malloc's address proves nothing when it is a
   canonical PLT entry of the main program).  Found by object name: a
   dlsym of a missing name would leave its message for the program's
   dlerror(). */
static int
other_allocator_loaded(void)
{
    int found = 0;

    dl_iterate_phdr(note_other_allocator, &found);
    return found;
}

/* 1 when malloc, free and realloc are glibc's own (no allocator was
   preloaded or linked before libc): their chunk headers may be read. */
static int
glibc_malloc_in_use(void)
{
    static const char *const names[] = {"malloc", "free", "realloc"};
    void *version = dlsym(RTLD_DEFAULT, "gnu_get_libc_version");
    Dl_info libc;
    size_t i;

    if (version == NULL || dladdr(version, &libc) == 0) {
        return 0; /* not glibc (musl) */
    }
    if (other_allocator_loaded()) {
        return 0;
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        void *addr = dlsym(RTLD_DEFAULT, names[i]);
        if (!in_libc(addr, &libc) && !in_main_program(addr)) {
            return 0;
        }
    }
    return 1;
}

typedef struct {
    const void *found[PMT_GOTPATCH_MAX_OBJECTS];
    size_t n;
} excluded_list;

/* dl_iterate_phdr callback: note an address inside each excluded object. */
static int
note_excluded(struct dl_phdr_info *info, size_t size, void *data)
{
    excluded_list *list = (excluded_list *)data;
    const char *name = info->dlpi_name, *slash;
    size_t i;
    ElfW(Half) ph;

    (void)size;
    if (name == NULL || name[0] == '\0') {
        return 0;
    }
    slash = strrchr(name, '/');
    if (slash != NULL) {
        name = slash + 1;
    }
    for (i = 0; i < sizeof(sw_excluded_prefixes) / sizeof(char *); i++) {
        const char *prefix = sw_excluded_prefixes[i];
        if (strncmp(name, prefix, strlen(prefix)) != 0) {
            continue;
        }
        for (ph = 0; ph < info->dlpi_phnum; ph++) {
            if (info->dlpi_phdr[ph].p_type == PT_LOAD &&
                info->dlpi_phdr[ph].p_memsz > 0 &&
                list->n < PMT_GOTPATCH_MAX_OBJECTS) {
                list->found[list->n++] =
                    (const void *)(info->dlpi_addr +
                                   info->dlpi_phdr[ph].p_vaddr);
                break;
            }
        }
        break;
    }
    return 0;
}

/* fork(): the child must not inherit our lock held by a thread that does
   not exist there.  fork.c takes it before gotpatch's (the order acquire
   takes them in). */
void
pmt_shrinkwatch_fork_prepare(void)
{
    pthread_mutex_lock(&sw.lock);
}

void
pmt_shrinkwatch_fork_parent(void)
{
    pthread_mutex_unlock(&sw.lock);
}

void
pmt_shrinkwatch_fork_child(void)
{
    size_t i, k;

    /* Counters are per process; the generation only goes up (stamps
       taken before the fork stay stale), once more for the new process. */
    for (i = 0; i < SW_STRIPES; i++) {
        for (k = 0; k < PMT_SHRINKWATCH_KINDS; k++) {
            atomic_store_explicit(&sw.stripes[i].calls[k], 0,
                                  memory_order_relaxed);
        }
        atomic_store_explicit(&sw.stripes[i].bumps, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&sw.touches, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&sw.generation, 1, memory_order_release);
    pthread_mutex_unlock(&sw.lock);
}

int
pmt_shrinkwatch_acquire(const void *host)
{
    excluded_list excluded;
    int n, err;

    pthread_mutex_lock(&sw.lock);
    if (sw.users++ == 0) {
        atomic_store_explicit(&sw.header_test, glibc_malloc_in_use(),
                              memory_order_relaxed);
        excluded.n = 0;
        dl_iterate_phdr(note_excluded, &excluded);
        n = pmt_gotpatch_install(sw_names, sw_replacements, SW_NAMES,
                                 excluded.found, excluded.n,
                                 host != NULL ? &host : NULL,
                                 host != NULL ? 1 : 0, PMT_GOTPATCH_HOSTS_TOO);
        sw.patch_errno = n < 0 ? errno : 0;
        sw.installed = n >= 0;
    }
    err = sw.patch_errno;
    pthread_mutex_unlock(&sw.lock);
    return err;
}

void
pmt_shrinkwatch_release(void)
{
    pthread_mutex_lock(&sw.lock);
    if (sw.users > 0 && --sw.users == 0 && sw.installed) {
        (void)pmt_gotpatch_remove(sw_replacements, SW_NAMES);
        sw.installed = 0;
    }
    pthread_mutex_unlock(&sw.lock);
}

uint64_t
pmt_shrinkwatch_generation(void)
{
    return atomic_load_explicit(&sw.generation, memory_order_acquire);
}

void
pmt_shrinkwatch_touch(void)
{
    atomic_fetch_add_explicit(&sw.generation, 1, memory_order_release);
    atomic_fetch_add_explicit(&sw.touches, 1, memory_order_relaxed);
}

void
pmt_shrinkwatch_stats(pmt_shrinkwatch_stats_t *out)
{
    size_t i, k;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < SW_STRIPES; i++) {
        for (k = 0; k < PMT_SHRINKWATCH_KINDS; k++) {
            out->calls[k] += atomic_load_explicit(&sw.stripes[i].calls[k],
                                                  memory_order_relaxed);
        }
        out->bumps +=
            atomic_load_explicit(&sw.stripes[i].bumps, memory_order_relaxed);
    }
    out->touches = atomic_load_explicit(&sw.touches, memory_order_relaxed);
    out->generation = pmt_shrinkwatch_generation();
    out->slots = pmt_gotpatch_slots_of(sw_replacements, SW_NAMES);
    out->header_test =
        atomic_load_explicit(&sw.header_test, memory_order_relaxed);
    pthread_mutex_lock(&sw.lock);
    out->users = sw.users;
    out->installed = sw.installed;
    out->patch_errno = sw.patch_errno;
    pthread_mutex_unlock(&sw.lock);
}
