/*
 * core/rss_darwin.c - resident set size on macOS through task_info().
 *
 * Not built or tested on our Linux CI yet; kept to the interface of rss.h so
 * the port is one file.
 */
#include "rss.h"

#include <errno.h>
#include <mach/mach.h>
#include <sys/resource.h>
#include <unistd.h>

int
pmt_rss_current(uint64_t *rss_bytes)
{
    mach_task_basic_info_data_t info;
    mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;

    if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, (task_info_t)&info,
                  &count) != KERN_SUCCESS) {
        return EIO;
    }
    *rss_bytes = (uint64_t)info.resident_size;
    return 0;
}

int
pmt_rss_current_slow(uint64_t *rss_bytes)
{
    return pmt_rss_current(rss_bytes);
}

int
pmt_rss_peak(uint64_t *peak_bytes)
{
    struct rusage usage;

    if (getrusage(RUSAGE_SELF, &usage) != 0) {
        return errno;
    }
    /* macOS reports ru_maxrss in bytes. */
    *peak_bytes = (uint64_t)usage.ru_maxrss;
    return 0;
}

size_t
pmt_rss_page_size(void)
{
    return (size_t)getpagesize();
}

const char *
pmt_rss_method(void)
{
    return "task_info";
}

void
pmt_rss_fork_child(void)
{
}

int
pmt_rss_release_free(void)
{
    /* macOS's malloc zones give pages back on their own schedule. */
    return 0;
}
