/*
 * core/shrinkwatch_other.c - platforms without GOT patching (see
 * shrinkwatch.h): acquire answers ENOSYS (and counts its user all the
 * same), the generation changes only on pmt_shrinkwatch_touch.
 */
#include "shrinkwatch.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

static struct shrinkwatch_runtime {
    _Atomic uint64_t generation; /* atomic */
    _Atomic uint64_t touches;    /* atomic */
    _Atomic size_t users;        /* atomic: acquires not yet released */
} sw;

static const char *const sw_names[PMT_SHRINKWATCH_KINDS] = {
    "free",   "realloc", "reallocarray", "munmap", "madvise",
    "mremap", "mmap",    "brk",          "sbrk",   "malloc_trim",
};

const char *
pmt_shrinkwatch_kind_name(int kind)
{
    return kind >= 0 && kind < PMT_SHRINKWATCH_KINDS ? sw_names[kind] : NULL;
}

int
pmt_shrinkwatch_acquire(const void *host)
{
    (void)host;
    atomic_fetch_add(&sw.users, 1);
    return ENOSYS;
}

void
pmt_shrinkwatch_release(void)
{
    size_t users = atomic_load(&sw.users);

    while (users > 0 &&
           !atomic_compare_exchange_weak(&sw.users, &users, users - 1)) {
    }
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
    memset(out, 0, sizeof(*out));
    out->generation = pmt_shrinkwatch_generation();
    out->touches = atomic_load(&sw.touches);
    out->users = atomic_load(&sw.users);
    out->patch_errno = ENOSYS;
}

void
pmt_shrinkwatch_fork_prepare(void)
{
}

void
pmt_shrinkwatch_fork_parent(void)
{
}

void
pmt_shrinkwatch_fork_child(void)
{
    atomic_store(&sw.touches, 0);
    atomic_fetch_add_explicit(&sw.generation, 1, memory_order_release);
}
