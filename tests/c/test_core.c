/*
 * test_core.c - plain-C unit tests of src/pymemtrace/_c/core.
 * Prints one "N passed, N failed" line; exits non-zero on any failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/rss.h"

static int passed;
static int failed;

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (cond) {                                                           \
            passed++;                                                         \
        }                                                                     \
        else {                                                                \
            failed++;                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                   \
        }                                                                     \
    } while (0)

static void
test_rss_matches_slow_path(void)
{
    uint64_t fast = 0, slow = 0;

    const uint64_t slack = 2u << 20;

    /* The slow path first: stdio's buffers and locale data then count in
       both readings. */
    CHECK(pmt_rss_current_slow(&slow) == 0);
    CHECK(pmt_rss_current(&fast) == 0);
    CHECK(fast > 0);
    CHECK(fast + slack > slow && slow + slack > fast);
}

static void
test_rss_grows_when_pages_are_touched(void)
{
    const size_t size = 64u << 20;
    uint64_t before = 0, after = 0;
    char *block = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    CHECK(block != MAP_FAILED);
    if (block == MAP_FAILED) {
        return;
    }
    CHECK(pmt_rss_current(&before) == 0);
    memset(block, 1, size);
    CHECK(pmt_rss_current(&after) == 0);
    CHECK(after >= before + size * 9 / 10);
    munmap(block, size);
}

static void
test_peak_is_at_least_current(void)
{
    uint64_t current = 0, peak = 0;

    CHECK(pmt_rss_current(&current) == 0);
    CHECK(pmt_rss_peak(&peak) == 0);
    CHECK(peak + pmt_rss_page_size() >= current);
}

/* A descriptor inherited across fork() would read the parent's statm. */
static void
test_child_reads_its_own_memory(void)
{
    const size_t size = 32u << 20;
    uint64_t parent = 0;
    pid_t pid;
    int status = 0;

    CHECK(pmt_rss_current(&parent) == 0);
    pid = fork();
    if (pid == 0) {
        uint64_t child_before = 0, child_after = 0;
        /* volatile: the compiler may drop stores to memory never read */
        volatile char *block = malloc(size);
        size_t i;
        if (pmt_rss_current(&child_before) != 0 || block == NULL) {
            _exit(2);
        }
        for (i = 0; i < size; i += 512) {
            block[i] = 1;
        }
        if (pmt_rss_current(&child_after) != 0) {
            _exit(2);
        }
        _exit(child_after >= child_before + size * 9 / 10 ? 0 : 1);
    }
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void
test_page_size_is_a_power_of_two(void)
{
    size_t size = pmt_rss_page_size();

    CHECK(size >= 4096);
    CHECK((size & (size - 1)) == 0);
}

int
main(void)
{
    test_rss_matches_slow_path();
    test_rss_grows_when_pages_are_touched();
    test_peak_is_at_least_current();
    test_child_reads_its_own_memory();
    test_page_size_is_a_power_of_two();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
