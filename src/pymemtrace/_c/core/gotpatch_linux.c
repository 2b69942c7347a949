/*
 * core/gotpatch_linux.c - GOT patching for ELF objects (see gotpatch.h).
 *
 * The loaded objects are walked with dl_iterate_phdr.  For each one its
 * dynamic section gives the symbol and string tables and the two RELA
 * tables that can bind a function's address into a GOT slot: DT_JMPREL
 * (JUMP_SLOT: calls through the PLT, lazily bound or not) and DT_RELA
 * (GLOB_DAT: -fno-plt calls and address-taken functions).  The slot of a
 * relocation against a wanted name is at load base + r_offset.
 *
 * Slot pages under PT_GNU_RELRO are read-only after loading (glibc
 * protects [relro start, relro end) rounded down to pages); they are made
 * writable around the store and read-only again.  A slot outside RELRO
 * must lie in a writable PT_LOAD segment or it is not touched.
 *
 * A lazily bound slot holds the address of its PLT stub until the first
 * call; the stub would rewrite the slot on its first call, so our
 * wrappers never call through saved slot values: they call the real
 * functions through this object's own GOT (which is never patched).
 * Restore writes back the saved value, stub included.
 *
 * Threading: gotpatch_runtime is protected by its mutex, taken by
 * install, restore, stats and the dlopen wrapper's rescan.  No callback
 * of dl_iterate_phdr calls back into the dynamic loader.
 */
#define _GNU_SOURCE
#include "gotpatch.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Both supported architectures are 64-bit: ELF64 relocation info. */
#define GP_R_TYPE ELF64_R_TYPE
#define GP_R_SYM ELF64_R_SYM
#if defined(__x86_64__)
#define GP_R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define GP_R_GLOB_DAT R_X86_64_GLOB_DAT
#define GP_SUPPORTED 1
#elif defined(__aarch64__)
#define GP_R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define GP_R_GLOB_DAT R_AARCH64_GLOB_DAT
#define GP_SUPPORTED 1
#else
#define GP_SUPPORTED 0
#endif

/* One patched slot. */
typedef struct {
    void **slot;             /* the GOT slot */
    void *saved;             /* what it held before us */
    void *replacement;       /* what we stored */
    unsigned char readonly;  /* its page is under RELRO (read-only) */
    unsigned char is_dlopen; /* a host's dlopen slot */
} patched_slot;

static struct gotpatch_runtime {
    /* Protects every field below but `armed`. */
    pthread_mutex_t lock;
    _Atomic int armed; /* 1 while the dlopen wrapper must rescan;
                               read without the lock */
    int installed;     /* between install and restore */
    size_t nnames;
    const char *names[PMT_GOTPATCH_MAX_NAMES]; /* the caller's strings */
    void *replacements[PMT_GOTPATCH_MAX_NAMES];
    uintptr_t exclude[PMT_GOTPATCH_MAX_OBJECTS + 1]; /* +1: this object */
    size_t nexclude;
    uintptr_t hosts[PMT_GOTPATCH_MAX_OBJECTS];
    size_t nhosts;
    patched_slot slots[PMT_GOTPATCH_MAX_SLOTS];
    size_t nslots;
    size_t dlopen_slots; /* slots[] entries with is_dlopen */
    size_t failures;
    size_t rescans;
    unsigned long long seen_adds; /* dlpi_adds at the last scan */
    unsigned long long seen_subs; /* dlpi_subs at the last scan */
    size_t seen_objects;          /* objects listed at the last scan */
    int atfork_done;              /* the fork handlers are registered;
                               written by install only (serialised by
                               its caller) */
} gp = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

/* What a dl_iterate_phdr walk does. */
typedef struct {
    size_t first;   /* objects before this index are skipped */
    size_t index;   /* index of the object being visited */
    size_t patched; /* slots patched by this walk */
    unsigned long long adds, subs;
} scan_ctx;

int
pmt_gotpatch_supported(void)
{
    return GP_SUPPORTED;
}

#if GP_SUPPORTED

static void *dlopen_wrapper(const char *file, int flags);

static size_t
page_size(void)
{
    long size = sysconf(_SC_PAGESIZE);

    return size > 0 ? (size_t)size : 4096;
}

/* A d_ptr value of the dynamic section: glibc stores absolute addresses
   there (it relocates the section), other loaders and the vDSO leave the
   offsets from the load base. */
static uintptr_t
dyn_address(uintptr_t base, ElfW(Addr) value)
{
    return (uintptr_t)value < base ? base + (uintptr_t)value
                                   : (uintptr_t)value;
}

/* 1 when addr lies in one of the object's loaded segments. */
static int
object_contains(const struct dl_phdr_info *info, uintptr_t addr)
{
    ElfW(Half) i;

    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && addr >= start &&
            addr < start + ph->p_memsz) {
            return 1;
        }
    }
    return 0;
}

/* 1 when addr lies in a writable loaded segment of the object. */
static int
object_writable(const struct dl_phdr_info *info, uintptr_t addr)
{
    ElfW(Half) i;

    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W) && addr >= start &&
            addr + sizeof(void *) <= start + ph->p_memsz) {
            return 1;
        }
    }
    return 0;
}

static int
contains_any(const struct dl_phdr_info *info, const uintptr_t *addrs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (addrs[i] != 0 && object_contains(info, addrs[i])) {
            return 1;
        }
    }
    return 0;
}

/* The read-only range glibc made of the object's PT_GNU_RELRO, or an empty
   one. */
static void
relro_range(const struct dl_phdr_info *info, uintptr_t *start, uintptr_t *end)
{
    size_t page = page_size();
    ElfW(Half) i;

    *start = *end = 0;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_RELRO) {
            uintptr_t s = info->dlpi_addr + ph->p_vaddr;
            *start = s & ~(uintptr_t)(page - 1);
            *end = (s + ph->p_memsz) & ~(uintptr_t)(page - 1);
        }
    }
}

/* Store value into slot, making its page writable for the moment when it
   is read-only.  0, or -1 when the page cannot be made writable. */
static int
store_slot(void **slot, void *value, int readonly)
{
    size_t page = page_size();
    void *start = (void *)((uintptr_t)slot & ~(uintptr_t)(page - 1));

    if (readonly && mprotect(start, page, PROT_READ | PROT_WRITE) != 0) {
        return -1;
    }
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    if (readonly) {
        (void)mprotect(start, page, PROT_READ);
    }
    return 0;
}

static patched_slot *
find_slot_unlocked(void **slot)
{
    size_t i;

    for (i = 0; i < gp.nslots; i++) {
        if (gp.slots[i].slot == slot) {
            return &gp.slots[i];
        }
    }
    return NULL;
}

/* Patch one slot of info's object with repl; 1 when patched now. */
static int
patch_slot_unlocked(const struct dl_phdr_info *info, void **slot, void *repl,
                    int is_dlopen, uintptr_t relro_start, uintptr_t relro_end)
{
    void *cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    uintptr_t addr = (uintptr_t)slot;
    int readonly = addr >= relro_start && addr < relro_end;
    patched_slot *rec;

    if (cur == repl || find_slot_unlocked(slot) != NULL) {
        /* Ours already, or rewritten by another tool after us. */
        return 0;
    }
    if (gp.nslots == PMT_GOTPATCH_MAX_SLOTS || !object_writable(info, addr) ||
        store_slot(slot, repl, readonly) < 0) {
        gp.failures++;
        return 0;
    }
    rec = &gp.slots[gp.nslots++];
    rec->slot = slot;
    rec->saved = cur;
    rec->replacement = repl;
    rec->readonly = (unsigned char)readonly;
    rec->is_dlopen = (unsigned char)is_dlopen;
    if (is_dlopen) {
        gp.dlopen_slots++;
    }
    return 1;
}

/* Patch the relocations of one RELA table bound to one of names. */
static size_t
patch_relas_unlocked(const struct dl_phdr_info *info, const ElfW(Rela) * rel,
                     size_t nrel, const ElfW(Sym) * symtab, const char *strtab,
                     size_t strsz, const char *const *names,
                     void *const *repls, size_t nnames, int is_dlopen)
{
    uintptr_t relro_start, relro_end;
    size_t i, j, patched = 0;

    relro_range(info, &relro_start, &relro_end);
    for (i = 0; i < nrel; i++) {
        unsigned long type = GP_R_TYPE(rel[i].r_info);
        unsigned long sym = GP_R_SYM(rel[i].r_info);
        const char *name;
        if ((type != GP_R_JUMP_SLOT && type != GP_R_GLOB_DAT) || sym == 0) {
            continue;
        }
        if (symtab[sym].st_name >= strsz) {
            continue;
        }
        name = strtab + symtab[sym].st_name;
        for (j = 0; j < nnames; j++) {
            if (name[0] == names[j][0] && strcmp(name, names[j]) == 0) {
                void **slot = (void **)(info->dlpi_addr + rel[i].r_offset);
                patched += (size_t)patch_slot_unlocked(
                    info, slot, repls[j], is_dlopen, relro_start, relro_end);
                break;
            }
        }
    }
    return patched;
}

/* Patch every slot of info's object bound to one of names. */
static size_t
patch_object_unlocked(const struct dl_phdr_info *info,
                      const char *const *names, void *const *repls,
                      size_t nnames, int is_dlopen)
{
    const ElfW(Dyn) *dyn = NULL;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    uintptr_t base = info->dlpi_addr, jmprel = 0, rela = 0;
    size_t strsz = 0, pltrelsz = 0, relasz = 0, patched = 0;
    ElfW(Sxword) pltrel = 0;
    ElfW(Half) i;

    for (i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(base + info->dlpi_phdr[i].p_vaddr);
        }
    }
    if (dyn == NULL) {
        return 0;
    }
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB:
            symtab = (const ElfW(Sym) *)dyn_address(base, dyn->d_un.d_ptr);
            break;
        case DT_STRTAB:
            strtab = (const char *)dyn_address(base, dyn->d_un.d_ptr);
            break;
        case DT_STRSZ:
            strsz = (size_t)dyn->d_un.d_val;
            break;
        case DT_JMPREL:
            jmprel = dyn_address(base, dyn->d_un.d_ptr);
            break;
        case DT_PLTRELSZ:
            pltrelsz = (size_t)dyn->d_un.d_val;
            break;
        case DT_PLTREL:
            pltrel = (ElfW(Sxword))dyn->d_un.d_val;
            break;
        case DT_RELA:
            rela = dyn_address(base, dyn->d_un.d_ptr);
            break;
        case DT_RELASZ:
            relasz = (size_t)dyn->d_un.d_val;
            break;
        default:
            break;
        }
    }
    if (symtab == NULL || strtab == NULL) {
        return 0;
    }
    if (jmprel != 0 && pltrel == DT_RELA) {
        patched += patch_relas_unlocked(
            info, (const ElfW(Rela) *)jmprel, pltrelsz / sizeof(ElfW(Rela)),
            symtab, strtab, strsz, names, repls, nnames, is_dlopen);
    }
    if (rela != 0) {
        patched += patch_relas_unlocked(
            info, (const ElfW(Rela) *)rela, relasz / sizeof(ElfW(Rela)),
            symtab, strtab, strsz, names, repls, nnames, is_dlopen);
    }
    return patched;
}

/* dl_iterate_phdr callback: patch one object as install asked. */
static int
scan_object(struct dl_phdr_info *info, size_t size, void *data)
{
    static const char *const dlopen_name[1] = {"dlopen"};
    void *const dlopen_repl[1] = {(void *)dlopen_wrapper};
    scan_ctx *ctx = (scan_ctx *)data;
    size_t index = ctx->index++;

    if (size >=
        offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
        ctx->adds = info->dlpi_adds;
        ctx->subs = info->dlpi_subs;
    }
    if (index < ctx->first) {
        return 0;
    }
    if (contains_any(info, gp.hosts, gp.nhosts)) {
        ctx->patched +=
            patch_object_unlocked(info, dlopen_name, dlopen_repl, 1, 1);
    }
    else if (!contains_any(info, gp.exclude, gp.nexclude)) {
        ctx->patched += patch_object_unlocked(info, gp.names, gp.replacements,
                                              gp.nnames, 0);
    }
    return 0;
}

/* Walk the objects from index first; returns the slots patched. */
static size_t
scan_unlocked(size_t first)
{
    scan_ctx ctx = {first, 0, 0, 0, 0};

    dl_iterate_phdr(scan_object, &ctx);
    gp.seen_adds = ctx.adds;
    gp.seen_subs = ctx.subs;
    gp.seen_objects = ctx.index;
    return ctx.patched;
}

/* dl_iterate_phdr callback: read the load counters off the first object. */
static int
read_counters(struct dl_phdr_info *info, size_t size, void *data)
{
    scan_ctx *ctx = (scan_ctx *)data;

    if (size >=
        offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
        ctx->adds = info->dlpi_adds;
        ctx->subs = info->dlpi_subs;
        ctx->index = 1;
    }
    return 1;
}

/* After a host's dlopen: patch what it loaded. */
static void
rescan(void)
{
    scan_ctx ctx = {0, 0, 0, 0, 0};
    int saved_errno = errno;

    dl_iterate_phdr(read_counters, &ctx);
    pthread_mutex_lock(&gp.lock);
    if (!gp.installed) {
        goto out_unlock;
    }
    if (ctx.index == 1 && ctx.adds == gp.seen_adds &&
        ctx.subs == gp.seen_subs) {
        goto out_unlock; /* nothing was loaded */
    }
    gp.rescans++;
    /* Objects are listed in load order: with nothing unloaded since, the
       new ones follow the ones already seen. */
    (void)scan_unlocked(
        ctx.index == 1 && ctx.subs == gp.seen_subs ? gp.seen_objects : 0);
out_unlock:
    pthread_mutex_unlock(&gp.lock);
    errno = saved_errno;
}

/* Replaces dlopen in the hosts: this object's own GOT reaches the real
   one.  The real dlopen sees us as its caller, which only matters for a
   file name without a slash (searched with the caller's RUNPATH); the
   interpreter passes paths. */
static void *
dlopen_wrapper(const char *file, int flags)
{
    void *handle = dlopen(file, flags);

    if (handle != NULL &&
        atomic_load_explicit(&gp.armed, memory_order_acquire)) {
        rescan();
    }
    return handle;
}

/* fork(): the child must not inherit the lock held by a thread that does
   not exist there (a dlopen wrapper rescanning). */
static void
atfork_prepare(void)
{
    pthread_mutex_lock(&gp.lock);
}

static void
atfork_release(void)
{
    pthread_mutex_unlock(&gp.lock);
}

int
pmt_gotpatch_install(const char *const *names, void *const *replacements,
                     size_t n, const void *const *exclude, size_t nexclude,
                     const void *const *hosts, size_t nhosts)
{
    size_t i, patched;

    if (n == 0 || n > PMT_GOTPATCH_MAX_NAMES ||
        nexclude > PMT_GOTPATCH_MAX_OBJECTS ||
        nhosts > PMT_GOTPATCH_MAX_OBJECTS) {
        errno = EINVAL;
        return -1;
    }
    /* Registered before the lock is taken: a fork running the handlers
       meanwhile must not wait for it.  (Install calls are serialised by
       the caller: atfork_done needs no lock.) */
    if (!gp.atfork_done) {
        gp.atfork_done = pthread_atfork(atfork_prepare, atfork_release,
                                        atfork_release) == 0;
    }
    pthread_mutex_lock(&gp.lock);
    if (!gp.installed) {
        gp.nnames = n;
        for (i = 0; i < n; i++) {
            gp.names[i] = names[i];
            gp.replacements[i] = replacements[i];
        }
        gp.nexclude = 0;
        for (i = 0; i < nexclude; i++) {
            gp.exclude[gp.nexclude++] = (uintptr_t)exclude[i];
        }
        gp.exclude[gp.nexclude++] = (uintptr_t)(void *)dlopen_wrapper;
        gp.nhosts = 0;
        for (i = 0; i < nhosts; i++) {
            gp.hosts[gp.nhosts++] = (uintptr_t)hosts[i];
        }
        gp.nslots = gp.dlopen_slots = gp.failures = gp.rescans = 0;
        gp.installed = 1;
    }
    patched = scan_unlocked(0);
    atomic_store_explicit(&gp.armed, 1, memory_order_release);
    pthread_mutex_unlock(&gp.lock);
    return (int)patched;
}

/* dl_iterate_phdr callback: restore the remembered slots of one object. */
static int
restore_object(struct dl_phdr_info *info, size_t size, void *data)
{
    unsigned char *done = (unsigned char *)data;
    size_t i;

    (void)size;
    for (i = 0; i < gp.nslots; i++) {
        patched_slot *rec = &gp.slots[i];
        if (done[i] || !object_writable(info, (uintptr_t)rec->slot)) {
            continue;
        }
        done[i] = 1;
        if (__atomic_load_n(rec->slot, __ATOMIC_ACQUIRE) == rec->replacement) {
            (void)store_slot(rec->slot, rec->saved, rec->readonly);
            done[i] = 2;
        }
    }
    return 0;
}

int
pmt_gotpatch_restore(void)
{
    unsigned char done[PMT_GOTPATCH_MAX_SLOTS];
    int restored = 0;
    size_t i;

    atomic_store_explicit(&gp.armed, 0, memory_order_release);
    pthread_mutex_lock(&gp.lock);
    if (!gp.installed) {
        goto out_unlock;
    }
    /* Only objects still loaded are written to. */
    memset(done, 0, sizeof(done));
    dl_iterate_phdr(restore_object, done);
    for (i = 0; i < gp.nslots; i++) {
        restored += done[i] == 2;
    }
    gp.nslots = gp.dlopen_slots = 0;
    gp.installed = 0;
out_unlock:
    pthread_mutex_unlock(&gp.lock);
    return restored;
}

#else /* !GP_SUPPORTED */

int
pmt_gotpatch_install(const char *const *names, void *const *replacements,
                     size_t n, const void *const *exclude, size_t nexclude,
                     const void *const *hosts, size_t nhosts)
{
    (void)names;
    (void)replacements;
    (void)n;
    (void)exclude;
    (void)nexclude;
    (void)hosts;
    (void)nhosts;
    errno = ENOSYS;
    return -1;
}

int
pmt_gotpatch_restore(void)
{
    return 0;
}

#endif /* GP_SUPPORTED */

void
pmt_gotpatch_stats(pmt_gotpatch_stats_t *out)
{
    pthread_mutex_lock(&gp.lock);
    out->slots = gp.nslots;
    out->dlopen_slots = gp.dlopen_slots;
    out->failures = gp.failures;
    out->rescans = gp.rescans;
    out->installed = gp.installed;
    pthread_mutex_unlock(&gp.lock);
}
