/*
 * test_ptrmap.c - plain-C tests of core/ptrmap.c against a brute-force
 * model, with many removals (backward-shift deletion) and growth.
 * Built and run by tests/unit/test_ptrmap.py; prints "N passed, N failed".
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/ptrmap.h"

static int passed, failed;

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (cond) {                                                           \
            passed++;                                                         \
        }                                                                     \
        else {                                                                \
            failed++;                                                         \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__,        \
                    #cond);                                                   \
        }                                                                     \
    } while (0)

#define N_KEYS 20000

static uint64_t rng = 88172645463325252ULL;

static uint64_t
next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void
visit_count(uintptr_t key, uint32_t value, void *arg)
{
    (void)key;
    (void)value;
    (*(size_t *)arg)++;
}

int
main(void)
{
    static uintptr_t keys[N_KEYS];
    static uint32_t model[N_KEYS]; /* value + 1, 0: absent */
    pmt_ptrmap map;
    size_t i, present = 0, walked = 0;
    int ok = 1;

    CHECK(pmt_ptrmap_init(&map, 0, 0) == 0);
    /* Object-like addresses: 16-byte aligned, clustered. */
    for (i = 0; i < N_KEYS; i++) {
        keys[i] = (uintptr_t)0x7f0000000000ULL + (uintptr_t)i * 16 +
                  (uintptr_t)((next_random() % 4) << 20);
    }
    for (i = 0; i < N_KEYS; i++) {
        /* Keys may repeat (same address twice): the model follows. */
        size_t j;
        int rc = pmt_ptrmap_put(&map, keys[i], (uint32_t)i, NULL);
        int seen = 0;
        for (j = 0; j < i && !seen; j++) {
            seen = keys[j] == keys[i] && model[j] != 0;
            if (seen) {
                model[j] = 0;
            }
        }
        ok &= rc == (seen ? 1 : 0);
        model[i] = (uint32_t)i + 1;
    }
    CHECK(ok);
    /* Remove a random two thirds, then check every key. */
    for (i = 0; i < N_KEYS; i++) {
        if (model[i] != 0 && next_random() % 3 != 0) {
            uint32_t value = 0;
            ok &= pmt_ptrmap_pop(&map, keys[i], &value) == 1 &&
                  value == model[i] - 1;
            model[i] = 0;
        }
    }
    CHECK(ok);
    for (i = 0; i < N_KEYS; i++) {
        uint32_t value = 0;
        int found = pmt_ptrmap_get(&map, keys[i], &value);
        if (model[i] != 0) {
            present++;
            ok &= found == 1 && value == model[i] - 1;
        }
    }
    CHECK(ok);
    CHECK(map.count == present);
    pmt_ptrmap_walk(&map, visit_count, &walked);
    CHECK(walked == present);
    CHECK(pmt_ptrmap_pop(&map, (uintptr_t)0x1234, NULL) == 0);
    CHECK(pmt_ptrmap_put(&map, 0, 1, NULL) == -1);
    pmt_ptrmap_fini(&map);

    /* A limit stops new keys but still replaces existing ones. */
    CHECK(pmt_ptrmap_init(&map, 0, 2) == 0);
    CHECK(pmt_ptrmap_put(&map, 16, 1, NULL) == 0);
    CHECK(pmt_ptrmap_put(&map, 32, 2, NULL) == 0);
    CHECK(pmt_ptrmap_put(&map, 48, 3, NULL) == -1);
    {
        uint32_t old = 0;
        CHECK(pmt_ptrmap_put(&map, 32, 5, &old) == 1 && old == 2);
    }
    pmt_ptrmap_fini(&map);

    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
