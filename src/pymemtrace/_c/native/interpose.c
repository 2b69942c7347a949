/*
 * interpose.c - the allocation functions libpymemtrace_preload.so exports
 * in place of the C library's, their bootstrap, and the configuration.
 *
 * Bootstrap: the real functions are found with dlsym(RTLD_NEXT), and dlsym
 * itself may call calloc/malloc before they are known.  The thread that
 * resolves them has its guard set; an allocation on that thread before
 * `ready` is served from a small static arena (never freed: free ignores
 * its addresses), an mmap by the system call.  Other threads wait in
 * pthread_once.
 *
 * Hot path when recording is off (no PYMEMTRACE_NATIVE_DIR, or after the
 * exit snapshot): one relaxed atomic load after the real call.  A block
 * leaves the table before the real free returns it, so no other thread
 * can be handed the same address while it is still listed.
 *
 * Threading: see preload.h.  This file holds the bootstrap arena alone
 * (boot_runtime); the rest of the state is pmt_nt_runtime (livetable.c).
 */
#define _GNU_SOURCE
#include "preload.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BOOT_ARENA_SIZE (64 * 1024)

/* The bootstrap arena: bump allocation while dlsym runs.  Written only by
   the thread inside pthread_once (the others wait there). */
static struct pmt_nt_boot_runtime {
    pthread_once_t once;                               /* init, once */
    size_t used;                                       /* bytes handed out */
    _Alignas(16) unsigned char arena[BOOT_ARENA_SIZE]; /* the memory */
} boot_runtime = {.once = PTHREAD_ONCE_INIT};

#define rt pmt_nt_runtime

static void *
boot_alloc(size_t size)
{
    size_t start = (boot_runtime.used + 15) & ~(size_t)15;

    if (size > BOOT_ARENA_SIZE || start > BOOT_ARENA_SIZE - size) {
        return NULL;
    }
    boot_runtime.used = start + size;
    return boot_runtime.arena + start;
}

static int
in_boot_arena(const void *ptr)
{
    const unsigned char *p = ptr;

    return p >= boot_runtime.arena && p < boot_runtime.arena + BOOT_ARENA_SIZE;
}

static uint64_t
env_u64(const char *name, uint64_t fallback, uint64_t lo, uint64_t hi)
{
    const char *text = getenv(name);
    char *end = NULL;
    unsigned long long value;

    if (text == NULL || *text == '\0') {
        return fallback;
    }
    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < lo ||
        value > hi) {
        return fallback;
    }
    return (uint64_t)value;
}

static void
read_config(void)
{
    const char *dir = getenv("PYMEMTRACE_NATIVE_DIR");
    const char *mode = getenv("PYMEMTRACE_NATIVE_MODE");

    rt.outdir[0] = '\0';
    if (dir != NULL && strlen(dir) < sizeof(rt.outdir)) {
        strcpy(rt.outdir, dir);
    }
    rt.mode = PMT_NT_EXACT;
    if (mode != NULL && strcmp(mode, "count") == 0) {
        rt.mode = PMT_NT_COUNT;
    }
    else if (mode != NULL && strcmp(mode, "sampled") == 0) {
        rt.mode = PMT_NT_SAMPLED;
    }
    rt.depth =
        (int)env_u64("PYMEMTRACE_NATIVE_DEPTH", 16, 1, PMT_NT_MAX_DEPTH);
    mode = getenv("PYMEMTRACE_NATIVE_UNWIND");
    rt.unwind_fp = mode != NULL && strcmp(mode, "fp") == 0;
    rt.sample_bytes = env_u64("PYMEMTRACE_NATIVE_SAMPLE_BYTES", 512 * 1024, 1,
                              UINT64_C(1) << 40);
    rt.sample_exact_from = rt.sample_bytes / 2 > 0 ? rt.sample_bytes / 2 : 1;
    rt.interval_ns =
        env_u64("PYMEMTRACE_NATIVE_INTERVAL_MS", 1000, 1, 86400000) * 1000000;
}

/* Runs once, on the first allocation or in the constructor, whichever
   comes first, with the guard set. */
static void
init_once(void)
{
    int entered = pmt_nt_guard_enter();

    rt.real.malloc = dlsym(RTLD_NEXT, "malloc");
    rt.real.calloc = dlsym(RTLD_NEXT, "calloc");
    rt.real.realloc = dlsym(RTLD_NEXT, "realloc");
    rt.real.reallocarray = dlsym(RTLD_NEXT, "reallocarray");
    rt.real.free = dlsym(RTLD_NEXT, "free");
    rt.real.posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    rt.real.aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    rt.real.memalign = dlsym(RTLD_NEXT, "memalign");
    rt.real.valloc = dlsym(RTLD_NEXT, "valloc");
    rt.real.pvalloc = dlsym(RTLD_NEXT, "pvalloc");
    rt.real.mmap = dlsym(RTLD_NEXT, "mmap");
    rt.real.munmap = dlsym(RTLD_NEXT, "munmap");
    rt.real.exit_ = dlsym(RTLD_NEXT, "_exit");
    if (rt.real.malloc == NULL || rt.real.free == NULL ||
        rt.real.calloc == NULL || rt.real.realloc == NULL) {
        /* Without them nothing works: better a clear death than a crash
           somewhere later (no C library lacks them). */
        static const char msg[] =
            "libpymemtrace_preload: malloc not found by dlsym\n";
        ssize_t ignored = write(2, msg, sizeof(msg) - 1);
        (void)ignored;
        _exit(127);
    }
    atomic_store(&rt.ready, 1);
    read_config();
    if (rt.outdir[0] == '\0' || pmt_nt_table_init() < 0) {
        goto done;
    }
    pmt_nt_stack_warmup();
    pmt_nt_thread_exit_init();
    pmt_nt_fork_install();
    pthread_mutex_lock(&rt.lock);
    rt.pid = getpid();
    rt.last_dump_ns = pmt_nt_now_ns();
    pmt_nt_capture_start_unlocked();
    pthread_mutex_unlock(&rt.lock);
    atomic_store(&rt.on, 1);
    pmt_nt_signals_install();
done:
    if (entered) {
        pmt_nt_guard_exit();
    }
}

/* 1 when the real functions are known; 0 on the resolving thread while
   dlsym runs (the caller uses the arena). */
static int
ensure_ready(void)
{
    if (PMT_NT_LIKELY(atomic_load_explicit(&rt.ready, memory_order_acquire))) {
        return 1;
    }
    if (pmt_nt_tls.busy) {
        return 0;
    }
    pthread_once(&boot_runtime.once, init_once);
    return atomic_load(&rt.ready);
}

static inline int
recording(void)
{
    return atomic_load_explicit(&rt.on, memory_order_relaxed);
}

static void
after_alloc(void *ptr, size_t size, void *caller)
{
    if (ptr == NULL || !pmt_nt_guard_enter()) {
        return;
    }
    pmt_nt_count(1, 0, size);
    pmt_nt_record_alloc(ptr, size, caller);
    pmt_nt_guard_exit();
}

static void
before_free(void *ptr)
{
    if (!pmt_nt_guard_enter()) {
        return;
    }
    pmt_nt_count(0, 1, 0);
    pmt_nt_record_free(ptr);
    pmt_nt_guard_exit();
}

PMT_NT_EXPORT void *
malloc(size_t size)
{
    void *ptr;

    if (PMT_NT_UNLIKELY(!ensure_ready())) {
        return boot_alloc(size);
    }
    ptr = rt.real.malloc(size);
    if (recording()) {
        after_alloc(ptr, size, __builtin_return_address(0));
    }
    return ptr;
}

PMT_NT_EXPORT void *
calloc(size_t n, size_t size)
{
    void *ptr;

    if (PMT_NT_UNLIKELY(!ensure_ready())) {
        /* The arena is static, so zeroed; overflow checked. */
        return size != 0 && n > SIZE_MAX / size ? NULL : boot_alloc(n * size);
    }
    ptr = rt.real.calloc(n, size);
    if (recording()) {
        after_alloc(ptr, n * size, __builtin_return_address(0));
    }
    return ptr;
}

PMT_NT_EXPORT void
free(void *ptr)
{
    if (ptr == NULL || in_boot_arena(ptr)) {
        return;
    }
    if (PMT_NT_UNLIKELY(!ensure_ready())) {
        return; /* not ours and nothing to free it with: left alone */
    }
    if (recording()) {
        before_free(ptr);
    }
    rt.real.free(ptr);
}

static void *
do_realloc(void *old, size_t size, void *caller)
{
    void *ptr;

    if (in_boot_arena(old)) {
        /* A block of the arena: move it to the real heap (its size is not
           known; the arena is small, so copy what can be copied). */
        size_t room = (size_t)(boot_runtime.arena + BOOT_ARENA_SIZE -
                               (unsigned char *)old);
        ptr = malloc(size);
        if (ptr != NULL) {
            memcpy(ptr, old, size < room ? size : room);
        }
        return ptr;
    }
    if (old == NULL) {
        ptr = rt.real.realloc(NULL, size);
        if (recording()) {
            after_alloc(ptr, size, caller);
        }
        return ptr;
    }
    if (!recording() || !pmt_nt_guard_enter()) {
        return rt.real.realloc(old, size);
    }
    /* The old block leaves the table first (see the header); if realloc
       fails it is put back. */
    ptr = pmt_nt_realloc_traced(old, size, caller);
    pmt_nt_guard_exit();
    return ptr;
}

PMT_NT_EXPORT void *
realloc(void *old, size_t size)
{
    if (PMT_NT_UNLIKELY(!ensure_ready())) {
        return old == NULL ? boot_alloc(size) : NULL;
    }
    return do_realloc(old, size, __builtin_return_address(0));
}

PMT_NT_EXPORT void *
reallocarray(void *old, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    if (PMT_NT_UNLIKELY(!ensure_ready())) {
        return old == NULL ? boot_alloc(n * size) : NULL;
    }
    return do_realloc(old, n * size, __builtin_return_address(0));
}

PMT_NT_EXPORT int
posix_memalign(void **out, size_t align, size_t size)
{
    int rc;

    if (PMT_NT_UNLIKELY(!ensure_ready()) || rt.real.posix_memalign == NULL) {
        return ENOMEM;
    }
    rc = rt.real.posix_memalign(out, align, size);
    if (rc == 0 && recording()) {
        after_alloc(*out, size, __builtin_return_address(0));
    }
    return rc;
}

PMT_NT_EXPORT void *
aligned_alloc(size_t align, size_t size)
{
    void *ptr;

    if (PMT_NT_UNLIKELY(!ensure_ready()) || rt.real.aligned_alloc == NULL) {
        return NULL;
    }
    ptr = rt.real.aligned_alloc(align, size);
    if (recording()) {
        after_alloc(ptr, size, __builtin_return_address(0));
    }
    return ptr;
}

PMT_NT_EXPORT void *
memalign(size_t align, size_t size)
{
    void *ptr;

    if (PMT_NT_UNLIKELY(!ensure_ready()) || rt.real.memalign == NULL) {
        return NULL;
    }
    ptr = rt.real.memalign(align, size);
    if (recording()) {
        after_alloc(ptr, size, __builtin_return_address(0));
    }
    return ptr;
}

PMT_NT_EXPORT void *
valloc(size_t size)
{
    void *ptr;

    if (PMT_NT_UNLIKELY(!ensure_ready()) || rt.real.valloc == NULL) {
        return NULL;
    }
    ptr = rt.real.valloc(size);
    if (recording()) {
        after_alloc(ptr, size, __builtin_return_address(0));
    }
    return ptr;
}

PMT_NT_EXPORT void *
pvalloc(size_t size)
{
    void *ptr;

    if (PMT_NT_UNLIKELY(!ensure_ready()) || rt.real.pvalloc == NULL) {
        return NULL;
    }
    ptr = rt.real.pvalloc(size);
    if (recording()) {
        after_alloc(ptr, size, __builtin_return_address(0));
    }
    return ptr;
}

static void *
do_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off,
        void *caller)
{
    void *ptr;

    if (PMT_NT_UNLIKELY(!ensure_ready()) || rt.real.mmap == NULL) {
        return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    }
    ptr = rt.real.mmap(addr, len, prot, flags, fd, off);
    /* Anonymous private or shared memory only: a mapped file is not an
       allocation. */
    if (ptr != MAP_FAILED && (flags & MAP_ANONYMOUS) && recording()) {
        after_alloc(ptr, len, caller);
    }
    return ptr;
}

PMT_NT_EXPORT void *
mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return do_mmap(addr, len, prot, flags, fd, off,
                   __builtin_return_address(0));
}

PMT_NT_EXPORT void *
mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return do_mmap(addr, len, prot, flags, fd, off,
                   __builtin_return_address(0));
}

PMT_NT_EXPORT int
munmap(void *addr, size_t len)
{
    if (PMT_NT_UNLIKELY(!ensure_ready()) || rt.real.munmap == NULL) {
        return (int)syscall(SYS_munmap, addr, len);
    }
    if (recording() && pmt_nt_guard_enter()) {
        pmt_nt_record_munmap(addr, len);
        pmt_nt_guard_exit();
    }
    return rt.real.munmap(addr, len);
}

__attribute__((constructor)) static void
preload_init(void)
{
    ensure_ready();
}

/* The exit snapshot, then recording stops: later frees only reach the
   real allocator.  Not in a vfork child (it shares our memory, under
   another pid: writing would close the parent's capture), and not when
   this thread is inside the tracer (a signal handler calling _exit: the
   lock may be ours). */
static void
final_snapshot(void)
{
    if (!recording() || rt.pid != getpid() || !pmt_nt_guard_enter()) {
        return;
    }
    pmt_nt_count_flush();
    pthread_mutex_lock(&rt.lock);
    pmt_nt_capture_dump_unlocked(1);
    atomic_store(&rt.on, 0);
    pthread_mutex_unlock(&rt.lock);
    pmt_nt_guard_exit();
}

/* After the program's atexit handlers and the destructors of the
   libraries loaded after us (all of them: we are preloaded). */
__attribute__((destructor)) static void
preload_fini(void)
{
    final_snapshot();
}

/* _exit and _Exit (os._exit, a child ending without exit()) skip the
   destructors: the exit snapshot is written here. */
static __attribute__((noreturn)) void
do_exit(int status)
{
    final_snapshot();
    if (rt.real.exit_ != NULL) {
        rt.real.exit_(status);
    }
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}

PMT_NT_EXPORT void
_exit(int status)
{
    do_exit(status);
}

PMT_NT_EXPORT void
_Exit(int status)
{
    do_exit(status);
}

/* Unloading code (a library, or JIT frames registered with libgcc) can
   leave stale rules in the unwinder's cache (unwind.c): it is switched
   off for good, before the code goes. */
PMT_NT_EXPORT int
dlclose(void *handle)
{
    int (*real)(void *);

    pmt_nt_unwind_stale();
    real = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
    return real != NULL ? real(handle) : -1;
}

PMT_NT_EXPORT void
__deregister_frame(void *begin)
{
    void (*real)(void *);

    pmt_nt_unwind_stale();
    real = (void (*)(void *))dlsym(RTLD_NEXT, "__deregister_frame");
    if (real != NULL) {
        real(begin);
    }
}

PMT_NT_EXPORT void *
__deregister_frame_info(const void *begin)
{
    void *(*real)(const void *);

    pmt_nt_unwind_stale();
    real =
        (void *(*)(const void *))dlsym(RTLD_NEXT, "__deregister_frame_info");
    return real != NULL ? real(begin) : NULL;
}
