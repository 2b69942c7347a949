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
 * Clients: each install adds a client (its names, its exclusions, whether
 * the hosts get its names too); an object is scanned for the names of every
 * client that does not exclude it.  remove restores the slots of one
 * client's replacements and forgets its names; the hosts' dlopen slots go
 * with the last client.
 *
 * Threading: gotpatch_runtime is protected by its mutex, taken by
 * install, remove, restore, stats and the dlopen wrapper's rescan.  No callback
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

/* One installed client. */
typedef struct {
    uintptr_t exclude[PMT_GOTPATCH_MAX_OBJECTS]; /* addresses in objects */
    size_t nexclude;
    unsigned flags; /* PMT_GOTPATCH_HOSTS_TOO */
    int used;       /* has names */
} client_rec;

static struct gotpatch_runtime {
    /* Protects every field below but `armed`. */
    pthread_mutex_t lock;
    _Atomic int armed; /* 1 while the dlopen wrapper must rescan;
                               read without the lock */
    int installed;     /* while some client is installed */
    uintptr_t self;    /* an address in this object */
    size_t nnames;
    const char *names[PMT_GOTPATCH_MAX_NAMES]; /* the caller's strings */
    void *replacements[PMT_GOTPATCH_MAX_NAMES];
    unsigned char name_client[PMT_GOTPATCH_MAX_NAMES]; /* index in clients */
    client_rec clients[PMT_GOTPATCH_MAX_CLIENTS];
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
    const char *names[PMT_GOTPATCH_MAX_NAMES];
    void *repls[PMT_GOTPATCH_MAX_NAMES];
    signed char skip[PMT_GOTPATCH_MAX_CLIENTS]; /* -1: not computed yet */
    size_t i, n = 0;
    int is_host;

    if (index < ctx->first || object_contains(info, gp.self)) {
        return 0;
    }
    is_host = contains_any(info, gp.hosts, gp.nhosts);
    if (is_host) {
        ctx->patched +=
            patch_object_unlocked(info, dlopen_name, dlopen_repl, 1, 1);
    }
    memset(skip, -1, sizeof(skip));
    for (i = 0; i < gp.nnames; i++) {
        unsigned c = gp.name_client[i];
        if (skip[c] < 0) {
            const client_rec *client = &gp.clients[c];
            skip[c] = (signed char)((is_host && !(client->flags &
                                                  PMT_GOTPATCH_HOSTS_TOO)) ||
                                    contains_any(info, client->exclude,
                                                 client->nexclude));
        }
        if (!skip[c]) {
            names[n] = gp.names[i];
            repls[n] = gp.replacements[i];
            n++;
        }
    }
    if (n > 0) {
        ctx->patched += patch_object_unlocked(info, names, repls, n, 0);
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
void
pmt_gotpatch_fork_prepare(void)
{
    pthread_mutex_lock(&gp.lock);
}

void
pmt_gotpatch_fork_release(void)
{
    pthread_mutex_unlock(&gp.lock);
}

/* Index of name among the installed names, or -1. */
static int
find_name_unlocked(const char *name)
{
    size_t i;

    for (i = 0; i < gp.nnames; i++) {
        if (strcmp(gp.names[i], name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Add hosts to the union; -1 when it would not fit (nothing added). */
static int
add_hosts_unlocked(const void *const *hosts, size_t nhosts)
{
    uintptr_t fresh[PMT_GOTPATCH_MAX_OBJECTS];
    size_t i, j, nfresh = 0;

    for (i = 0; i < nhosts; i++) {
        int known = 0;
        for (j = 0; j < gp.nhosts && !known; j++) {
            known = gp.hosts[j] == (uintptr_t)hosts[i];
        }
        if (!known) {
            fresh[nfresh++] = (uintptr_t)hosts[i];
        }
    }
    if (gp.nhosts + nfresh > PMT_GOTPATCH_MAX_OBJECTS) {
        return -1;
    }
    for (i = 0; i < nfresh; i++) {
        gp.hosts[gp.nhosts++] = fresh[i];
    }
    return 0;
}

/* Register a new client with its names; errno value, 0 when added. */
static int
add_client_unlocked(const char *const *names, void *const *replacements,
                    size_t n, const void *const *exclude, size_t nexclude,
                    const void *const *hosts, size_t nhosts, unsigned flags)
{
    client_rec *client = NULL;
    size_t i, c;

    for (c = 0; c < PMT_GOTPATCH_MAX_CLIENTS && client == NULL; c++) {
        if (!gp.clients[c].used) {
            client = &gp.clients[c];
        }
    }
    if (client == NULL || gp.nnames + n > PMT_GOTPATCH_MAX_NAMES) {
        return ENOSPC;
    }
    if (!gp.installed) {
        gp.nhosts = 0;
        gp.nslots = gp.dlopen_slots = gp.failures = gp.rescans = 0;
        gp.self = (uintptr_t)(void *)dlopen_wrapper;
    }
    if (add_hosts_unlocked(hosts, nhosts) < 0) {
        return ENOSPC;
    }
    c = (size_t)(client - gp.clients);
    client->used = 1;
    client->flags = flags;
    client->nexclude = 0;
    for (i = 0; i < nexclude; i++) {
        client->exclude[client->nexclude++] = (uintptr_t)exclude[i];
    }
    for (i = 0; i < n; i++) {
        gp.names[gp.nnames] = names[i];
        gp.replacements[gp.nnames] = replacements[i];
        gp.name_client[gp.nnames] = (unsigned char)c;
        gp.nnames++;
    }
    gp.installed = 1;
    return 0;
}

int
pmt_gotpatch_install(const char *const *names, void *const *replacements,
                     size_t n, const void *const *exclude, size_t nexclude,
                     const void *const *hosts, size_t nhosts, unsigned flags)
{
    size_t i, known = 0;
    int err = 0, patched = -1;

    if (n == 0 || n > PMT_GOTPATCH_MAX_NAMES ||
        nexclude > PMT_GOTPATCH_MAX_OBJECTS ||
        nhosts > PMT_GOTPATCH_MAX_OBJECTS) {
        errno = EINVAL;
        return -1;
    }
    /* Registered before the lock is taken: a fork running the handlers
       meanwhile must not wait for it. */
    pthread_mutex_lock(&gp.lock);
    for (i = 0; i < n; i++) {
        int j = find_name_unlocked(names[i]);
        if (j >= 0) {
            known++;
            if (gp.replacements[j] != replacements[i]) {
                err = EBUSY;
            }
        }
    }
    if (err == 0 && known != 0 && known != n) {
        err = EBUSY; /* some of a client's names, not all */
    }
    if (err == 0 && known == 0) {
        err = add_client_unlocked(names, replacements, n, exclude, nexclude,
                                  hosts, nhosts, flags);
    }
    if (err == 0) {
        patched = (int)scan_unlocked(0);
        atomic_store_explicit(&gp.armed, 1, memory_order_release);
    }
    pthread_mutex_unlock(&gp.lock);
    if (err != 0) {
        errno = err;
    }
    return patched;
}

/* What restore_object does: done[i] is 0 for a slot to restore, nonzero
   for one already handled (1: found, not ours any more; 2: restored; 3:
   not selected). */
typedef struct {
    unsigned char *done;
} restore_ctx;

/* dl_iterate_phdr callback: restore the selected slots of one object. */
static int
restore_object(struct dl_phdr_info *info, size_t size, void *data)
{
    restore_ctx *ctx = (restore_ctx *)data;
    size_t i;

    (void)size;
    for (i = 0; i < gp.nslots; i++) {
        patched_slot *rec = &gp.slots[i];
        if (ctx->done[i] || !object_writable(info, (uintptr_t)rec->slot)) {
            continue;
        }
        ctx->done[i] = 1;
        if (__atomic_load_n(rec->slot, __ATOMIC_ACQUIRE) == rec->replacement) {
            (void)store_slot(rec->slot, rec->saved, rec->readonly);
            ctx->done[i] = 2;
        }
    }
    return 0;
}

static int
is_one_of(void *value, void *const *set, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (set[i] == value) {
            return 1;
        }
    }
    return 0;
}

/* Restore the slots holding one of repls[0..n) (every slot when repls is
   NULL), forget them (also those of objects since unloaded) and their
   names.  Returns the slots restored. */
static int
remove_unlocked(void *const *repls, size_t n)
{
    unsigned char done[PMT_GOTPATCH_MAX_SLOTS];
    restore_ctx ctx = {done};
    size_t i, kept = 0, nnames = 0;
    int restored = 0, any = 0;

    for (i = 0; i < gp.nnames; i++) {
        any |= repls == NULL || is_one_of(gp.replacements[i], repls, n);
    }
    if (!any) {
        return 0;
    }
    /* Drop the names (and the clients left without any). */
    for (i = 0; i < gp.nnames; i++) {
        if (repls != NULL && !is_one_of(gp.replacements[i], repls, n)) {
            gp.names[nnames] = gp.names[i];
            gp.replacements[nnames] = gp.replacements[i];
            gp.name_client[nnames] = gp.name_client[i];
            nnames++;
        }
    }
    gp.nnames = nnames;
    for (i = 0; i < PMT_GOTPATCH_MAX_CLIENTS; i++) {
        size_t j;
        int used = 0;
        for (j = 0; j < gp.nnames; j++) {
            used |= gp.name_client[j] == i;
        }
        gp.clients[i].used = used;
    }
    /* The dlopen slots go with the last client. */
    for (i = 0; i < gp.nslots; i++) {
        const patched_slot *rec = &gp.slots[i];
        int selected =
            rec->is_dlopen
                ? gp.nnames == 0
                : repls == NULL || is_one_of(rec->replacement, repls, n);
        done[i] = selected ? 0 : 3;
    }
    /* Only objects still loaded are written to. */
    dl_iterate_phdr(restore_object, &ctx);
    gp.dlopen_slots = 0;
    for (i = 0; i < gp.nslots; i++) {
        restored += done[i] == 2;
        if (done[i] == 3) {
            gp.dlopen_slots += gp.slots[i].is_dlopen;
            gp.slots[kept++] = gp.slots[i];
        }
    }
    gp.nslots = kept;
    if (gp.nnames == 0) {
        atomic_store_explicit(&gp.armed, 0, memory_order_release);
        gp.installed = 0;
        gp.nhosts = 0;
    }
    return restored;
}

int
pmt_gotpatch_remove(void *const *replacements, size_t n)
{
    int restored;

    if (replacements == NULL || n == 0) {
        return 0;
    }
    pthread_mutex_lock(&gp.lock);
    restored = remove_unlocked(replacements, n);
    pthread_mutex_unlock(&gp.lock);
    return restored;
}

int
pmt_gotpatch_restore(void)
{
    int restored;

    atomic_store_explicit(&gp.armed, 0, memory_order_release);
    pthread_mutex_lock(&gp.lock);
    restored = remove_unlocked(NULL, 0);
    pthread_mutex_unlock(&gp.lock);
    return restored;
}

size_t
pmt_gotpatch_slots_of(void *const *replacements, size_t n)
{
    size_t i, count = 0;

    pthread_mutex_lock(&gp.lock);
    for (i = 0; i < gp.nslots; i++) {
        count += is_one_of(gp.slots[i].replacement, replacements, n);
    }
    pthread_mutex_unlock(&gp.lock);
    return count;
}

#else /* !GP_SUPPORTED */

void
pmt_gotpatch_fork_prepare(void)
{
}

void
pmt_gotpatch_fork_release(void)
{
}

int
pmt_gotpatch_install(const char *const *names, void *const *replacements,
                     size_t n, const void *const *exclude, size_t nexclude,
                     const void *const *hosts, size_t nhosts, unsigned flags)
{
    (void)names;
    (void)replacements;
    (void)n;
    (void)exclude;
    (void)nexclude;
    (void)hosts;
    (void)nhosts;
    (void)flags;
    errno = ENOSYS;
    return -1;
}

int
pmt_gotpatch_remove(void *const *replacements, size_t n)
{
    (void)replacements;
    (void)n;
    return 0;
}

int
pmt_gotpatch_restore(void)
{
    return 0;
}

size_t
pmt_gotpatch_slots_of(void *const *replacements, size_t n)
{
    (void)replacements;
    (void)n;
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
    out->names = gp.nnames;
    out->installed = gp.installed;
    pthread_mutex_unlock(&gp.lock);
}
