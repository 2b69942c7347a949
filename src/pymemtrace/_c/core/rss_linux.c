/*
 * core/rss_linux.c - resident set size on Linux.
 *
 * /proc/self/statm is opened once and re-read with pread(): one system call
 * per sample instead of open/read/close plus stdio parsing.  /proc/self is
 * resolved when the file is opened, so a descriptor inherited across fork()
 * would report the parent: fork.c's child handler (pmt_rss_fork_child)
 * forgets it and the next call reopens it in the child.
 *
 * Process-wide state (the one documented exception to "no mutable globals"
 * for this file): statm_runtime below.  The descriptor is a C11 atomic so
 * any thread can read it without a lock; a lazy open races benignly (the
 * loser closes its own descriptor).
 */
#include "rss.h"

#include <errno.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

static struct {
    /* Descriptor of /proc/self/statm, -1 until first use or after fork.
       Atomic: read by any thread, replaced by compare-and-swap. */
    atomic_int statm_fd;
    /* Page size in bytes; 0 until first use.  Atomic: set once, idempotent. */
    atomic_size_t page_size;
} statm_runtime = {-1, 0};

void
pmt_rss_fork_child(void)
{
    int fd = atomic_exchange(&statm_runtime.statm_fd, -1);
    if (fd >= 0) {
        close(fd);
    }
}

size_t
pmt_rss_page_size(void)
{
    size_t size =
        atomic_load_explicit(&statm_runtime.page_size, memory_order_relaxed);
    if (size == 0) {
        long value = sysconf(_SC_PAGESIZE);
        size = value > 0 ? (size_t)value : 4096;
        atomic_store(&statm_runtime.page_size, size);
    }
    return size;
}

static int
statm_fd(void)
{
    int fd =
        atomic_load_explicit(&statm_runtime.statm_fd, memory_order_acquire);
    int expected = -1;
    if (fd >= 0) {
        return fd;
    }
    fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    if (!atomic_compare_exchange_strong(&statm_runtime.statm_fd, &expected,
                                        fd)) {
        close(fd);
        fd = expected;
    }
    return fd;
}

/* The second field of statm is the resident page count. */
static int
parse_resident_pages(const char *buf, size_t len, uint64_t *pages)
{
    size_t i = 0;
    uint64_t value = 0;
    int digits = 0;

    while (i < len && buf[i] != ' ') {
        i++;
    }
    i++;
    for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
        value = value * 10 + (uint64_t)(buf[i] - '0');
        digits++;
    }
    if (digits == 0) {
        return EINVAL;
    }
    *pages = value;
    return 0;
}

int
pmt_rss_current(uint64_t *rss_bytes)
{
    char buf[128];
    ssize_t got;
    uint64_t pages = 0;
    int fd = statm_fd();
    int err;

    if (fd < 0) {
        return errno ? errno : EIO;
    }
    do {
        got = pread(fd, buf, sizeof(buf) - 1, 0);
    } while (got < 0 && errno == EINTR);
    if (got <= 0) {
        return got < 0 ? errno : EIO;
    }
    err = parse_resident_pages(buf, (size_t)got, &pages);
    if (err) {
        return err;
    }
    *rss_bytes = pages * pmt_rss_page_size();
    return 0;
}

int
pmt_rss_current_slow(uint64_t *rss_bytes)
{
    unsigned long long size = 0, resident = 0;
    int err = 0;
    FILE *file = fopen("/proc/self/statm", "r");

    if (file == NULL) {
        return errno;
    }
    if (fscanf(file, "%llu %llu", &size, &resident) != 2) {
        err = EINVAL;
        goto out_close;
    }
    *rss_bytes = (uint64_t)resident * pmt_rss_page_size();
out_close:
    fclose(file);
    return err;
}

int
pmt_rss_peak(uint64_t *peak_bytes)
{
    struct rusage usage;

    if (getrusage(RUSAGE_SELF, &usage) != 0) {
        return errno;
    }
    /* Linux reports ru_maxrss in KiB. */
    *peak_bytes = (uint64_t)usage.ru_maxrss * 1024u;
    return 0;
}

const char *
pmt_rss_method(void)
{
    return "/proc/self/statm";
}

int
pmt_rss_release_free(void)
{
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    /* musl gives freed pages back itself. */
    return 0;
#endif
}
