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

#include "core/clocks.h"
#include "core/ringbuf.h"
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


static pmt_sample
make_sample(double t)
{
    pmt_sample sample;

    memset(&sample, 0, sizeof(sample));
    sample.monotonic = t;
    sample.rss = (uint64_t)t;
    return sample;
}

static void
test_ringbuf_keeps_order(void)
{
    pmt_ringbuf ring;
    pmt_sample out[8];
    pmt_sample s;
    int i;

    CHECK(pmt_ringbuf_init(&ring, 4) == 0);
    for (i = 1; i <= 3; i++) {
        s = make_sample(i);
        CHECK(pmt_ringbuf_push(&ring, &s) == 0);
    }
    CHECK(ring.count == 3);
    CHECK(pmt_ringbuf_pop(&ring, out, 2) == 2);
    CHECK(out[0].rss == 1 && out[1].rss == 2);
    /* wrap around the end of the slots */
    for (i = 4; i <= 6; i++) {
        s = make_sample(i);
        CHECK(pmt_ringbuf_push(&ring, &s) == 0);
    }
    CHECK(pmt_ringbuf_pop(&ring, out, 8) == 4);
    CHECK(out[0].rss == 3 && out[1].rss == 4 && out[3].rss == 6);
    CHECK(ring.count == 0 && ring.dropped == 0);
    CHECK(pmt_ringbuf_pop(&ring, out, 8) == 0);
    pmt_ringbuf_free(&ring);
}

static void
test_ringbuf_full_drops_the_oldest(void)
{
    pmt_ringbuf ring;
    pmt_sample out[8];
    pmt_sample s;
    int i, dropped = 0;

    CHECK(pmt_ringbuf_init(&ring, 3) == 0);
    for (i = 1; i <= 7; i++) {
        s = make_sample(i);
        dropped += pmt_ringbuf_push(&ring, &s);
    }
    CHECK(dropped == 4);
    CHECK(ring.dropped == 4);
    CHECK(pmt_ringbuf_pop(&ring, out, 8) == 3);
    CHECK(out[0].rss == 5 && out[1].rss == 6 && out[2].rss == 7);
    pmt_ringbuf_clear(&ring);
    CHECK(ring.count == 0 && ring.dropped == 4);
    pmt_ringbuf_free(&ring);
}

static void
test_ringbuf_rejects_zero_capacity(void)
{
    pmt_ringbuf ring;

    CHECK(pmt_ringbuf_init(&ring, 0) != 0);
    CHECK(ring.items == NULL);
}

static void
test_clocks_and_cpu_times(void)
{
    double m1 = pmt_clock_monotonic(), m2, user = -1, system = -1;
    volatile unsigned long spin = 0;
    unsigned long i;

    for (i = 0; i < 20000000ul; i++) {
        spin += i;
    }
    m2 = pmt_clock_monotonic();
    CHECK(m1 > 0 && m2 >= m1);
    CHECK(pmt_clock_wall() > 1.5e9); /* after 2017 */
    CHECK(pmt_cpu_times(&user, &system) == 0);
    CHECK(user > 0.0 && system >= 0.0);
}

int
main(void)
{
    test_rss_matches_slow_path();
    test_rss_grows_when_pages_are_touched();
    test_peak_is_at_least_current();
    test_child_reads_its_own_memory();
    test_page_size_is_a_power_of_two();
    test_ringbuf_keeps_order();
    test_ringbuf_full_drops_the_oldest();
    test_ringbuf_rejects_zero_capacity();
    test_clocks_and_cpu_times();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
