/*
 * core/gotpatch_other.c - platforms without GOT patching (not ELF): every
 * install answers ENOSYS, which the tracker reports as "not available".
 */
#include "gotpatch.h"

#include <errno.h>
#include <string.h>

int
pmt_gotpatch_supported(void)
{
    return 0;
}

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

void
pmt_gotpatch_stats(pmt_gotpatch_stats_t *out)
{
    memset(out, 0, sizeof(*out));
}
