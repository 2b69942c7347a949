/*
 * core/rss_other.c - platforms without an implementation: every probe
 * answers ENOSYS, which the Python layer turns into a clear error.
 */
#include "rss.h"

#include <errno.h>

int
pmt_rss_current(uint64_t *rss_bytes)
{
    (void)rss_bytes;
    return ENOSYS;
}

int
pmt_rss_current_slow(uint64_t *rss_bytes)
{
    (void)rss_bytes;
    return ENOSYS;
}

int
pmt_rss_peak(uint64_t *peak_bytes)
{
    (void)peak_bytes;
    return ENOSYS;
}

size_t
pmt_rss_page_size(void)
{
    return 4096;
}

const char *
pmt_rss_method(void)
{
    return "none";
}

void
pmt_rss_fork_child(void)
{
}

int
pmt_rss_release_free(void)
{
    return 0;
}
