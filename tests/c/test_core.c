/*
 * test_core.c - plain-C unit tests of src/pymemtrace/_c/core.
 * Prints one "N passed, N failed" line; exits non-zero on any failure.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clocks.h"
#include "core/gotpatch.h"
#include "core/shrinkwatch.h"
#include "core/faultcount.h"
#include "core/logwriter.h"
#include "core/periodic.h"
#include "core/ringbuf.h"
#include "core/rsspoll.h"
#include "core/ptrtable.h"
#include "core/rss.h"
#include "core/stacktable.h"

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

/* The records' clock: never backwards, and within two microseconds of
   clock_gettime(CLOCK_MONOTONIC) once extrapolating (TSC), over ~60 ms of
   reads (past the 20 ms calibration and many 1 ms anchors).  Sources of
   error: half an anchor's read window, the scale's error over 1 ms, and
   NTP slewing CLOCK_MONOTONIC (up to 0.5 us per ms). */
/* Generous on purpose: a thread preempted while it takes an anchor pairs
   the two clocks a few microseconds apart on a busy machine; a wrong scale
   or offset errs by milliseconds. */
#define PMT_CLOCK_SLACK_NS 100000u

static void
test_fastclock_is_monotonic_and_close(void)
{
    pmt_fastclock c;
    uint64_t start = pmt_clock_monotonic_ns(), prev = 0, worst = 0;
    long reads = 0, backwards = 0;

    memset(&c, 0, sizeof(c));
    for (;;) {
        uint64_t before = pmt_clock_monotonic_ns();
        uint64_t t = pmt_fastclock_now(&c);
        uint64_t after = pmt_clock_monotonic_ns();
        reads++;
        if (t < prev) {
            backwards++;
        }
        prev = t;
        /* The read happened between before and after (give or take the
           extrapolation error). */
        if (t + PMT_CLOCK_SLACK_NS < before && before - t > worst) {
            worst = before - t;
        }
        if (t > after + PMT_CLOCK_SLACK_NS && t - after > worst) {
            worst = t - after;
        }
        if (after - start > 60000000u) {
            break;
        }
    }
    CHECK(reads > 1000);
#if PMT_FASTCLOCK_TSC
    /* Where the kernel's clock source is the TSC, it is extrapolating. */
    CHECK(c.mode == 2 || c.span > 0);
#endif
    CHECK(backwards == 0);
    CHECK(worst == 0);
}

/* Record fields formatted at a pointer match printf. */
static void
test_put_numbers_match_printf(void)
{
    static const uint64_t values[] = {0,
                                      1,
                                      9,
                                      10,
                                      99,
                                      100,
                                      999,
                                      1000,
                                      9999,
                                      10000,
                                      12345,
                                      99999,
                                      100000,
                                      1234567,
                                      10000000,
                                      123456789012ull,
                                      18446744073709551615ull};
    static const uint64_t ns[] = {
        0, 499, 500, 999999499, 999999500, 1234567890123ull, 59999999999ull};
    char got[64], want[64];
    size_t i;

    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char *end = pmt_put_u64(got, values[i]);
        *end = '\0';
        snprintf(want, sizeof(want), "%llu", (unsigned long long)values[i]);
        CHECK(strcmp(got, want) == 0);
        if (values[i] <= (uint64_t)INT64_MAX) {
            end = pmt_put_i64(got, -(int64_t)values[i], 0);
            *end = '\0';
            snprintf(want, sizeof(want), "%lld", -(long long)values[i]);
            CHECK(strcmp(got, want) == 0);
            end = pmt_put_i64(got, (int64_t)values[i], 1);
            *end = '\0';
            snprintf(want, sizeof(want), "%+lld", (long long)values[i]);
            CHECK(strcmp(got, want) == 0);
        }
    }
    for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        char *end = pmt_put_seconds(got, ns[i]);
        uint64_t us = (ns[i] + 500) / 1000;
        *end = '\0';
        snprintf(want, sizeof(want), "%llu.%06llu",
                 (unsigned long long)(us / 1000000),
                 (unsigned long long)(us % 1000000));
        CHECK(strcmp(got, want) == 0);
    }
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

/* ---- ptrtable ---- */

static uint64_t
lcg(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return *state >> 11;
}

/* Random puts and pops against a plain array model, across growth,
   evictions from the young generation and backward-shift deletions.  Like
   an allocator, an address is put again only after it was popped. */
static void
test_ptrtable_matches_model(void)
{
    enum {
        KEYS = 5000,
        OPS = 200000
    };
    static uint64_t model[KEYS]; /* 0: absent, else value */
    pmt_ptrtable t;
    uint64_t rng = 42, value = 0, old = 0;
    size_t i, present = 0;
    int bad = 0;

    memset(model, 0, sizeof(model));
    CHECK(pmt_ptrtable_init(&t, 16, 10, 0) == 0);
    for (i = 0; i < OPS; i++) {
        size_t k = (size_t)(lcg(&rng) % KEYS);
        /* 16-byte aligned addresses, like an allocator's */
        uintptr_t key = (uintptr_t)(0x7f0000000000ull + k * 48);
        if (lcg(&rng) % 3 && !model[k]) {
            uint64_t v = lcg(&rng) | 1;
            int rc = pmt_ptrtable_put(&t, key, v, &old);
            if (rc != 0) {
                bad++;
            }
            present++;
            model[k] = v;
        }
        else {
            int rc = pmt_ptrtable_pop(&t, key, &value);
            if (rc != (model[k] ? 1 : 0) || (rc && value != model[k])) {
                bad++;
            }
            if (model[k]) {
                present--;
            }
            model[k] = 0;
        }
    }
    CHECK(bad == 0);
    CHECK(t.count == present);
    for (i = 0; i < KEYS; i++) {
        uintptr_t key = (uintptr_t)(0x7f0000000000ull + i * 48);
        int rc = pmt_ptrtable_get(&t, key, &value);
        if (rc != (model[i] ? 1 : 0) || (rc && value != model[i])) {
            bad++;
        }
    }
    CHECK(bad == 0);
    /* The filter never denies a key the main table holds. */
    for (i = 0; i < KEYS; i++) {
        uintptr_t key = (uintptr_t)(0x7f0000000000ull + i * 48);
        const pmt_ptr_young *y = &t.young[pmt_ptrtable_young_index(&t, key)];
        if (model[i] && y->addr != key && !pmt_ptrtable_maybe_main(&t, key)) {
            bad++;
        }
    }
    CHECK(bad == 0);
    CHECK(t.main_count <= t.capacity * 4 / 5 + 1);
    CHECK(t.count <= t.main_count + t.young_size);
    pmt_ptrtable_fini(&t);
}

static void
test_ptrtable_cap_counts_drops(void)
{
    pmt_ptrtable t;
    uint64_t old = 0, value = 0;
    uintptr_t k;

    CHECK(pmt_ptrtable_init(&t, 16, 10, 10) == 0);
    for (k = 1; k <= 12; k++) {
        int rc = pmt_ptrtable_put(&t, k * 16, k, &old);
        CHECK(rc == (k <= 10 ? 0 : -1));
    }
    CHECK(t.count == 10);
    CHECK(t.drops == 2);
    /* replacing the newest entry of a key is not a drop */
    CHECK(pmt_ptrtable_put(&t, 160, 99, &old) == 1 && old == 10);
    CHECK(pmt_ptrtable_pop(&t, 160, &value) == 1 && value == 99);
    CHECK(pmt_ptrtable_pop(&t, 160, &value) == 0);
    CHECK(pmt_ptrtable_memory(&t) >= 16 * sizeof(pmt_ptr_slot));
    pmt_ptrtable_clear(&t);
    CHECK(t.count == 0 && pmt_ptrtable_get(&t, 32, &value) == 0);
    pmt_ptrtable_fini(&t);

    /* A stale entry (its pop was missed) pushed back to the main table by
       the young generation is reported, so the caller can forget it. */
    CHECK(pmt_ptrtable_init(&t, 16, 10, 0) == 0);
    {
        uintptr_t a = 0x10000, b = 0, c = 0, k2;
        size_t ia = pmt_ptrtable_young_index(&t, a);
        for (k2 = a + 16; c == 0; k2 += 16) {
            if (pmt_ptrtable_young_index(&t, k2) == ia) {
                if (b == 0) {
                    b = k2;
                }
                else {
                    c = k2;
                }
            }
        }
        CHECK(pmt_ptrtable_put(&t, a, 1, &old) == 0);
        CHECK(pmt_ptrtable_put(&t, b, 2, &old) == 0); /* a moves to main */
        CHECK(t.main_count == 1 && t.count == 2);
        /* a's pop is missed; its address comes back */
        CHECK(pmt_ptrtable_put(&t, a, 3, &old) == 0); /* b moves to main */
        CHECK(t.count == 3);
        /* c displaces the new a, which meets the stale a in main */
        CHECK(pmt_ptrtable_put(&t, c, 5, &old) == 1 && old == 1);
        CHECK(t.count == 3);
        CHECK(pmt_ptrtable_pop(&t, a, &value) == 1 && value == 3);
        CHECK(pmt_ptrtable_pop(&t, b, &value) == 1 && value == 2);
        CHECK(pmt_ptrtable_pop(&t, c, &value) == 1 && value == 5);
        CHECK(t.count == 0 && t.main_count == 0);
    }
    pmt_ptrtable_fini(&t);
}

static void
test_ptrtable_tags_huge_sizes_and_bad_addresses(void)
{
    pmt_ptrtable t;
    uint64_t old = 0, value = 0;
    const uint64_t huge = (UINT64_C(5) << 32) + 7; /* 20 GiB + 7 */
    const uint64_t tag = (uint64_t)PMT_PTR_TAG_MAX << PMT_PTR_SIZE_BITS;

    CHECK(pmt_ptrtable_init(&t, 16, 10, 0) == 0);
    CHECK(sizeof(pmt_ptr_slot) == 12);
    CHECK(pmt_ptrtable_put(&t, 0x1000, 100 | tag, &old) == 0);
    CHECK(pmt_ptrtable_put(&t, 0x2000,
                           huge | (UINT64_C(3) << PMT_PTR_SIZE_BITS),
                           &old) == 0);
    CHECK(pmt_ptrtable_get(&t, 0x1000, &value) == 1 && value == (100 | tag));
    CHECK(pmt_ptrtable_get(&t, 0x2000, &value) == 1 &&
          (value & PMT_PTR_SIZE_MASK) == huge &&
          (value >> PMT_PTR_SIZE_BITS) == 3);
    pmt_ptrtable_clear_tags(&t);
    CHECK(pmt_ptrtable_get(&t, 0x1000, &value) == 1 && value == 100);
    CHECK(pmt_ptrtable_pop(&t, 0x2000, &value) == 1 && value == huge);
    CHECK(t.nhuge == 0);
    /* misaligned, null and out-of-range addresses are refused */
    CHECK(pmt_ptrtable_put(&t, 0x1008, 1, &old) == -1);
    CHECK(pmt_ptrtable_put(&t, 0, 1, &old) == -1);
    CHECK(pmt_ptrtable_put(&t, (uintptr_t)1 << 50, 1, &old) == -1);
    CHECK(t.drops == 3 && t.count == 1);
    pmt_ptrtable_fini(&t);
}

/* ---- stacktable ---- */

static void
test_stacktable_interns_equal_stacks(void)
{
    pmt_stacktable t;
    pmt_frame a[3] = {{(void *)0x1000, 10, 0},
                      {(void *)0x2000, 20, 0},
                      {(void *)0x3000, 30, 0}};
    pmt_frame b[3] = {{(void *)0x1000, 12, 0},
                      {(void *)0x2000, 20, 0},
                      {(void *)0x3000, 30, 0}};
    int added = 0;
    uint32_t ia, ib, ia2, ishort, i;

    CHECK(pmt_stacktable_init(&t, 0) == 0);
    ia = pmt_stacktable_intern(&t, pmt_stack_hash(a, 3), a, 3, &added);
    CHECK(added == 1);
    ib = pmt_stacktable_intern(&t, pmt_stack_hash(b, 3), b, 3, &added);
    CHECK(added == 1 && ib != ia);
    ia2 = pmt_stacktable_intern(&t, pmt_stack_hash(a, 3), a, 3, &added);
    CHECK(added == 0 && ia2 == ia);
    ishort = pmt_stacktable_intern(&t, pmt_stack_hash(a, 2), a, 2, &added);
    CHECK(added == 1 && ishort != ia);
    CHECK(pmt_stacktable_frames(&t, ib)[0].addr == 12);
    CHECK(t.stacks[ishort].nframes == 2);
    /* many stacks: the index and pools grow, ids stay stable */
    for (i = 0; i < 5000; i++) {
        pmt_frame f[1] = {
            {(void *)(uintptr_t)(0x10000 + i * 16), (int32_t)i, 0}};
        uint32_t id =
            pmt_stacktable_intern(&t, pmt_stack_hash(f, 1), f, 1, &added);
        CHECK(id != PMT_STACK_NONE);
        if (id == PMT_STACK_NONE) {
            break;
        }
    }
    CHECK(t.count == 5003);
    CHECK(pmt_stacktable_intern(&t, pmt_stack_hash(a, 3), a, 3, &added) == ia);
    CHECK(pmt_stacktable_frames(&t, ia)[2].code == (void *)0x3000);
    pmt_stacktable_fini(&t);
}

static void
test_stacktable_cap(void)
{
    pmt_stacktable t;
    int added = 0;
    uint32_t i;

    CHECK(pmt_stacktable_init(&t, 3) == 0);
    for (i = 0; i < 5; i++) {
        pmt_frame f[1] = {{(void *)(uintptr_t)(0x100 + i), 0, 0}};
        uint32_t id =
            pmt_stacktable_intern(&t, pmt_stack_hash(f, 1), f, 1, &added);
        CHECK((i < 3) == (id != PMT_STACK_NONE));
    }
    CHECK(t.drops == 2);
    pmt_stacktable_fini(&t);
}

/* The live set at the peak is kept exactly by the lazy copy. */
static void
test_stacktable_peak(void)
{
    pmt_stacktable t;
    pmt_frame fa[1] = {{(void *)0xa0, 0, 0}}, fb[1] = {{(void *)0xb0, 0, 0}};
    int added = 0;
    uint32_t a, b;
    int64_t bytes = 0, blocks = 0;

    CHECK(pmt_stacktable_init(&t, 0) == 0);
    a = pmt_stacktable_intern(&t, pmt_stack_hash(fa, 1), fa, 1, &added);
    b = pmt_stacktable_intern(&t, pmt_stack_hash(fb, 1), fb, 1, &added);
    pmt_stacktable_account(&t, a, 100, 1);
    pmt_stacktable_account(&t, b, 50, 1);   /* peak 150: a 100, b 50 */
    pmt_stacktable_account(&t, b, -50, -1); /* now a 100, b 0 */
    pmt_stacktable_account(&t, a, 30, 1);   /* now 130 < 150 */
    CHECK(t.total == 130 && t.peak_total == 150);
    pmt_stacktable_peak_of(&t, a, &bytes, &blocks);
    CHECK(bytes == 100 && blocks == 1);
    pmt_stacktable_peak_of(&t, b, &bytes, &blocks);
    CHECK(bytes == 50 && blocks == 1);
    pmt_stacktable_account(&t, b, 40, 1); /* new peak 170: a 130, b 40 */
    CHECK(t.peak_total == 170);
    pmt_stacktable_peak_of(&t, a, &bytes, &blocks);
    CHECK(bytes == 130 && blocks == 2);
    pmt_stacktable_peak_of(&t, b, &bytes, &blocks);
    CHECK(bytes == 40 && blocks == 1);
    pmt_stacktable_account(&t, a, -130, -2);
    pmt_stacktable_peak_of(&t, a, &bytes, &blocks);
    CHECK(bytes == 130 && blocks == 2);
    CHECK(t.stacks[a].bytes == 0);
    pmt_stacktable_reset_peak(&t);
    CHECK(t.peak_total == 40);
    pmt_stacktable_peak_of(&t, a, &bytes, &blocks);
    CHECK(bytes == 0 && blocks == 0);
    pmt_stacktable_fini(&t);
}

/* ------------------------------------------------------------ shrinkwatch
 * This binary is "our object" (it holds the shrinkwatch code): its own
 * calls are never wrapped, nor are libc's.  libstdc++ is a foreign object
 * that calls free through its PLT: operator delete (_ZdlPv) is free. */

#define SW_BIG_BLOCK                                                          \
    ((size_t)40 << 20) /* above glibc's largest mmap
                                           threshold: always mmapped */

typedef void (*sw_delete_fn)(void *);

static sw_delete_fn
sw_foreign_delete(void)
{
    void *lib = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);

    return lib == NULL ? NULL : (sw_delete_fn)dlsym(lib, "_ZdlPv");
}

static void
test_shrinkwatch_touch_and_refcount(void)
{
    pmt_shrinkwatch_stats_t st;
    uint64_t g0 = pmt_shrinkwatch_generation();
    void *p;

    pmt_shrinkwatch_touch();
    CHECK(pmt_shrinkwatch_generation() == g0 + 1);
    CHECK(pmt_shrinkwatch_acquire(NULL) == 0);
    CHECK(pmt_shrinkwatch_acquire(NULL) == 0);
    pmt_shrinkwatch_stats(&st);
    CHECK(st.users == 2 && st.installed == 1 && st.touches >= 1);
    CHECK(st.header_test == 1); /* plain glibc malloc here */
    /* Our own object's free is not wrapped (twin of the libstdc++ case). */
    p = malloc(SW_BIG_BLOCK);
    free(p);
    pmt_shrinkwatch_stats(&st);
    CHECK(st.calls[PMT_SW_FREE] == 0);
    pmt_shrinkwatch_release();
    pmt_shrinkwatch_stats(&st);
    CHECK(st.users == 1 && st.installed == 1);
    pmt_shrinkwatch_release();
    pmt_shrinkwatch_release(); /* one too many: ignored */
    pmt_shrinkwatch_stats(&st);
    CHECK(st.users == 0 && st.installed == 0 && st.slots == 0);
    CHECK(strcmp(pmt_shrinkwatch_kind_name(PMT_SW_MUNMAP), "munmap") == 0);
    CHECK(pmt_shrinkwatch_kind_name(PMT_SHRINKWATCH_KINDS) == NULL);
}

static void
test_shrinkwatch_sees_a_foreign_free(void)
{
    sw_delete_fn del = sw_foreign_delete();
    pmt_shrinkwatch_stats_t st;
    uint64_t g0, g1;
    void *p;

    if (del == NULL) {
        printf("note: no libstdc++.so.6: foreign-object checks skipped\n");
        return;
    }
    CHECK(pmt_shrinkwatch_acquire(NULL) == 0);
    pmt_shrinkwatch_stats(&st);
    CHECK(st.slots >= 1); /* libstdc++'s free, malloc..., realloc */
    /* A big (mmapped) block freed from libstdc++: seen, and bumps. */
    g0 = pmt_shrinkwatch_generation();
    p = malloc(SW_BIG_BLOCK);
    errno = 1234;
    del(p);
    CHECK(errno == 1234); /* errno as free left it */
    g1 = pmt_shrinkwatch_generation();
    CHECK(g1 > g0);
    /* Its twin: a small block, seen, no bump. */
    p = malloc(100);
    del(p);
    CHECK(pmt_shrinkwatch_generation() == g1);
    pmt_shrinkwatch_stats(&st);
    CHECK(st.calls[PMT_SW_FREE] == 2 && st.bumps >= 1);
    /* After release: not seen any more, and the slots are back. */
    pmt_shrinkwatch_release();
    pmt_shrinkwatch_stats(&st);
    CHECK(st.slots == 0);
    p = malloc(SW_BIG_BLOCK);
    del(p);
    CHECK(pmt_shrinkwatch_generation() == g1);
    pmt_shrinkwatch_stats(&st);
    CHECK(st.calls[PMT_SW_FREE] == 2);
}

/* A second gotpatch client, as alloc_traced.c is one: counts libstdc++'s
   calls of malloc (operator new). */
static struct {
    int calls;
} sw_test_client; /* the test binary's own state */

static void *
counting_malloc(size_t size)
{
    sw_test_client.calls++;
    return malloc(size);
}

static void
test_two_gotpatch_clients_are_removed_independently(void)
{
    static const char *const names[1] = {"malloc"};
    void *const repls[1] = {(void *)counting_malloc};
    void *lib = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);
    void *(*new_fn)(size_t) = NULL;
    sw_delete_fn del = NULL;
    pmt_gotpatch_stats_t gs;
    pmt_shrinkwatch_stats_t st;
    int order;

    if (lib != NULL) {
        new_fn = (void *(*)(size_t))dlsym(lib, "_Znwm");
        del = (sw_delete_fn)dlsym(lib, "_ZdlPv");
    }
    if (new_fn == NULL || del == NULL) {
        return;
    }
    for (order = 0; order < 2; order++) {
        sw_test_client.calls = 0;
        CHECK(pmt_gotpatch_install(names, repls, 1, NULL, 0, NULL, 0, 0) >= 1);
        CHECK(pmt_shrinkwatch_acquire(NULL) == 0);
        /* the same names again: a rescan; other replacements: EBUSY */
        CHECK(pmt_gotpatch_install(names, repls, 1, NULL, 0, NULL, 0, 0) == 0);
        {
            void *const other[1] = {(void *)malloc};
            errno = 0;
            CHECK(pmt_gotpatch_install(names, other, 1, NULL, 0, NULL, 0, 0) ==
                      -1 &&
                  errno == EBUSY);
        }
        del(new_fn(SW_BIG_BLOCK));
        CHECK(sw_test_client.calls == 1);
        pmt_shrinkwatch_stats(&st);
        CHECK(st.calls[PMT_SW_FREE] >= 1);
        if (order == 0) {
            pmt_shrinkwatch_release(); /* shrinkwatch first */
            del(new_fn(SW_BIG_BLOCK));
            CHECK(sw_test_client.calls == 2); /* the other still works */
            CHECK(pmt_gotpatch_slots_of(repls, 1) >= 1);
            CHECK(pmt_gotpatch_remove(repls, 1) >= 1);
        }
        else {
            CHECK(pmt_gotpatch_remove(repls, 1) >= 1); /* the other first */
            del(new_fn(SW_BIG_BLOCK));
            CHECK(sw_test_client.calls == 1);
            pmt_shrinkwatch_stats(&st);
            CHECK(st.slots >= 1 && st.installed == 1);
            pmt_shrinkwatch_release();
        }
        pmt_gotpatch_stats(&gs);
        CHECK(gs.slots == 0 && gs.names == 0 && gs.installed == 0);
    }
}

#define SW_THREADS 4
#define SW_ROUNDS 200

static void *
sw_free_loop(void *arg)
{
    sw_delete_fn del = (sw_delete_fn)arg;
    int i;

    for (i = 0; i < SW_ROUNDS; i++) {
        del(malloc(i % 2 ? SW_BIG_BLOCK : 64));
    }
    return NULL;
}

static void
test_shrinkwatch_threads_lose_no_count(void)
{
    sw_delete_fn del = sw_foreign_delete();
    pthread_t threads[SW_THREADS];
    pmt_shrinkwatch_stats_t before, after;
    uint64_t g0;
    int i;

    if (del == NULL) {
        return;
    }
    CHECK(pmt_shrinkwatch_acquire(NULL) == 0);
    pmt_shrinkwatch_stats(&before);
    g0 = pmt_shrinkwatch_generation();
    for (i = 0; i < SW_THREADS; i++) {
        CHECK(pthread_create(&threads[i], NULL, sw_free_loop, (void *)del) ==
              0);
    }
    for (i = 0; i < SW_THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    pmt_shrinkwatch_stats(&after);
    CHECK(after.calls[PMT_SW_FREE] - before.calls[PMT_SW_FREE] ==
          SW_THREADS * SW_ROUNDS);
    /* every big block bumps; the small ones may (a thread heap trimmed) */
    CHECK(pmt_shrinkwatch_generation() - g0 >= SW_THREADS * SW_ROUNDS / 2);
    CHECK(after.bumps - before.bumps >= SW_THREADS * SW_ROUNDS / 2);
    pmt_shrinkwatch_release();
}

static void
test_shrinkwatch_fork_child(void)
{
    sw_delete_fn del = sw_foreign_delete();
    pmt_shrinkwatch_stats_t st;
    uint64_t g0;
    pid_t pid;
    int status = -1;

    if (del == NULL) {
        return;
    }
    CHECK(pmt_shrinkwatch_acquire(NULL) == 0);
    del(malloc(SW_BIG_BLOCK)); /* a call counted in the parent */
    g0 = pmt_shrinkwatch_generation();
    pid = fork();
    if (pid == 0) {
        int bad = 0;
        pmt_shrinkwatch_stats(&st);
        /* counters start again, the generation went up, still installed */
        bad |= st.calls[PMT_SW_FREE] != 0 || st.users != 1 || !st.installed ||
               st.generation <= g0;
        del(malloc(SW_BIG_BLOCK));
        pmt_shrinkwatch_stats(&st);
        bad |= st.calls[PMT_SW_FREE] != 1 || st.bumps != 1;
        pmt_shrinkwatch_release();
        pmt_shrinkwatch_stats(&st);
        bad |= st.slots != 0 || st.users != 0;
        _exit(bad ? 1 : 0);
    }
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the parent is untouched by the child's release */
    pmt_shrinkwatch_stats(&st);
    CHECK(st.users == 1 && st.slots >= 1);
    pmt_shrinkwatch_release();
}

/* ---- fork: the core part of fork.c's order ----------------------------
 * The extension registers one pthread_atfork handler (fork.c) that calls
 * every concern in one written order; this program has no fork.c, so it
 * registers the same calls for the core concerns, in the same order. */

static void
core_fork_prepare(void)
{
    pmt_log_fork_prepare();
    pmt_shrinkwatch_fork_prepare();
    pmt_gotpatch_fork_prepare();
    pmt_faultcount_fork_prepare();
    pmt_rsspoll_fork_prepare();
}

static void
core_fork_parent(void)
{
    pmt_rsspoll_fork_parent();
    pmt_faultcount_fork_parent();
    pmt_gotpatch_fork_release();
    pmt_shrinkwatch_fork_parent();
    pmt_log_fork_parent();
}

static void
core_fork_child(void)
{
    pmt_rss_fork_child();
    pmt_rsspoll_fork_child();
    pmt_faultcount_fork_child();
    pmt_gotpatch_fork_release();
    pmt_shrinkwatch_fork_child();
    pmt_log_fork_child();
}

/* ---- periodic ---------------------------------------------------------- */

typedef struct {
    pthread_mutex_t lock;
    int ticks;
} tick_count;

static void
count_tick(void *arg)
{
    tick_count *t = arg;
    pthread_mutex_lock(&t->lock);
    t->ticks++;
    pthread_mutex_unlock(&t->lock);
}

static int
ticks_of(tick_count *t)
{
    int n;
    pthread_mutex_lock(&t->lock);
    n = t->ticks;
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* Wait (by polling, no time bound asserted) until the count reaches n;
   gives up after many tries so a broken thread fails rather than hangs. */
static int
wait_ticks(tick_count *t, int n)
{
    long i;
    for (i = 0; i < 200000 && ticks_of(t) < n; i++) {
        usleep(50);
    }
    return ticks_of(t);
}

static void
test_periodic_ticks_every_period(void)
{
    tick_count t = {PTHREAD_MUTEX_INITIALIZER, 0};
    pmt_periodic p;

    CHECK(pmt_periodic_init(&p, 1000000, count_tick, &t) == 0);
    CHECK(!pmt_periodic_running(&p));
    CHECK(pmt_periodic_start(&p) == 0);
    CHECK(pmt_periodic_start(&p) == 0); /* already running: no second one */
    CHECK(wait_ticks(&t, 3) >= 3);
    pmt_periodic_stop(&p);
    CHECK(!pmt_periodic_running(&p));
    CHECK(pmt_periodic_ticks(&p) == (uint64_t)ticks_of(&t));
    pmt_periodic_fini(&p);
}

static void
test_periodic_stop_is_immediate(void)
{
    tick_count t = {PTHREAD_MUTEX_INITIALIZER, 0};
    pmt_periodic p;

    /* An hour's period: stop returns without a tick (it would hang the
       test for an hour if the thread slept through the stop). */
    CHECK(pmt_periodic_init(&p, UINT64_C(3600000000000), count_tick, &t) == 0);
    CHECK(pmt_periodic_start(&p) == 0);
    pmt_periodic_stop(&p);
    CHECK(ticks_of(&t) == 0);
    CHECK(!pmt_periodic_running(&p));
    pmt_periodic_stop(&p); /* twice: nothing to join */
    pmt_periodic_fini(&p);
}

static void
test_periodic_signal_wakes_a_parked_thread(void)
{
    tick_count t = {PTHREAD_MUTEX_INITIALIZER, 0};
    pmt_periodic p;

    CHECK(pmt_periodic_init(&p, 0, count_tick, &t) == 0);
    CHECK(pmt_periodic_start(&p) == 0);
    pmt_periodic_signal(&p);
    CHECK(wait_ticks(&t, 1) == 1);
    pmt_periodic_signal(&p);
    CHECK(wait_ticks(&t, 2) == 2);
    /* Parked again: a new period starts it ticking. */
    pmt_periodic_set_period(&p, 1000000);
    CHECK(wait_ticks(&t, 4) >= 4);
    pmt_periodic_stop(&p);
    pmt_periodic_fini(&p);
}

static void
test_periodic_thread_is_forgotten_in_a_child(void)
{
    tick_count t = {PTHREAD_MUTEX_INITIALIZER, 0};
    pmt_periodic p;
    pid_t pid;
    int status = -1;

    CHECK(pmt_periodic_init(&p, 1000000, count_tick, &t) == 0);
    CHECK(pmt_periodic_start(&p) == 0);
    pmt_periodic_fork_prepare(&p);
    pid = fork();
    if (pid == 0) {
        int bad;
        pmt_periodic_fork_child(&p);
        bad = pmt_periodic_running(&p);
        t.ticks = 0;
        pthread_mutex_init(&t.lock, NULL);
        /* a fresh thread in the child, and it stops */
        bad |= pmt_periodic_start(&p) != 0;
        bad |= wait_ticks(&t, 2) < 2;
        pmt_periodic_stop(&p);
        _exit(bad);
    }
    pmt_periodic_fork_parent(&p);
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pmt_periodic_stop(&p);
    pmt_periodic_fini(&p);
}

/* ---- logwriter: whole records only ------------------------------------ */

static size_t
read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    ssize_t n;
    if (fd < 0) {
        return 0;
    }
    n = read(fd, buf, cap - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n > 0 ? (size_t)n : 0;
}

static void
test_log_signal_flush_writes_whole_lines_and_the_tail(void)
{
    char path[] = "/tmp/pmt_test_logXXXXXX";
    char buf[256];
    pmt_logwriter w;
    int fd = mkstemp(path);

    CHECK(fd >= 0);
    close(fd);
    CHECK(pmt_log_open(&w, path, 0, 0) == 0);
    pmt_log_set_signal_tail(&w, "# ends here\n");
    pmt_log_cstr(&w, "one\ntwo\nthr"); /* a record being formatted */
    pmt_log_flush_all_signal_safe();
    read_file(path, buf, sizeof(buf));
    CHECK(strcmp(buf, "one\ntwo\n# ends here\n") == 0);
    /* twice (a second signal): the same bytes at the same place */
    pmt_log_flush_all_signal_safe();
    read_file(path, buf, sizeof(buf));
    CHECK(strcmp(buf, "one\ntwo\n# ends here\n") == 0);
    pmt_log_cstr(&w, "ee\n");
    CHECK(pmt_log_close(&w) == 0);
    read_file(path, buf, sizeof(buf));
    CHECK(strncmp(buf, "one\ntwo\nthree\n", 14) == 0);
    unlink(path);
}

/* A write that fails half-way (the file size limit, as a full disk) cuts
   the file back to its last newline and the close reports the errno. */
static void
test_log_failed_write_cuts_back_to_a_whole_line(void)
{
    char path[] = "/tmp/pmt_test_logXXXXXX";
    int fd = mkstemp(path);
    pid_t pid;
    int status = -1;
    struct stat st;
    char last = 0;

    CHECK(fd >= 0);
    close(fd);
    pid = fork();
    if (pid == 0) {
        struct rlimit lim = {1000, 1000};
        pmt_logwriter w;
        int i, err;
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0 ||
            pmt_log_open(&w, path, 0, 0) != 0) {
            _exit(2);
        }
        /* 28 bytes and a newline: the limit falls inside line 35 */
        for (i = 0; i < 40000; i++) {
            pmt_log_cstr(&w, "abcdefghijklmnopqrstuvwxyz01\n");
            if (pmt_log_error(&w) != 0) {
                break;
            }
        }
        err = pmt_log_close(&w);
        _exit(err == EFBIG ? 0 : 1);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(stat(path, &st) == 0 && st.st_size == 1000 / 29 * 29);
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, &last, 1, 1000 / 29 * 29 - 1) == 1 &&
          last == '\n');
    close(fd);
    unlink(path);
}

/* A child of fork() writes nothing into a log it inherited. */
static void
test_log_child_writes_nothing(void)
{
    char path[] = "/tmp/pmt_test_logXXXXXX";
    char buf[256];
    pmt_logwriter w;
    pid_t pid;
    int status = -1;
    int fd = mkstemp(path);

    CHECK(fd >= 0);
    close(fd);
    CHECK(pmt_log_open(&w, path, 0, 0) == 0);
    pmt_log_cstr(&w, "parent\n");
    pid = fork();
    if (pid == 0) {
        pmt_log_cstr(&w, "child\n");
        (void)pmt_log_flush(&w);
        _exit(pmt_log_close(&w) == 0 ? 0 : 1);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(pmt_log_close(&w) == 0);
    read_file(path, buf, sizeof(buf));
    CHECK(strcmp(buf, "parent\n") == 0);
    unlink(path);
}

int
main(void)
{
    (void)pthread_atfork(core_fork_prepare, core_fork_parent, core_fork_child);
    test_rss_matches_slow_path();
    test_rss_grows_when_pages_are_touched();
    test_peak_is_at_least_current();
    test_child_reads_its_own_memory();
    test_page_size_is_a_power_of_two();
    test_ringbuf_keeps_order();
    test_ringbuf_full_drops_the_oldest();
    test_ringbuf_rejects_zero_capacity();
    test_clocks_and_cpu_times();
    test_fastclock_is_monotonic_and_close();
    test_put_numbers_match_printf();
    test_ptrtable_matches_model();
    test_ptrtable_cap_counts_drops();
    test_ptrtable_tags_huge_sizes_and_bad_addresses();
    test_stacktable_interns_equal_stacks();
    test_stacktable_cap();
    test_stacktable_peak();
    test_shrinkwatch_touch_and_refcount();
    test_shrinkwatch_sees_a_foreign_free();
    test_two_gotpatch_clients_are_removed_independently();
    test_shrinkwatch_threads_lose_no_count();
    test_shrinkwatch_fork_child();
    test_periodic_ticks_every_period();
    test_periodic_stop_is_immediate();
    test_periodic_signal_wakes_a_parked_thread();
    test_periodic_thread_is_forgotten_in_a_child();
    test_log_signal_flush_writes_whole_lines_and_the_tail();
    test_log_failed_write_cuts_back_to_a_whole_line();
    test_log_child_writes_nothing();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
