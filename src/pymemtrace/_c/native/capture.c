/*
 * capture.c - the capture file of one process: OUTDIR/native-<pid>.pmtn
 * (native-<pid>-<k>.pmtn when an earlier program of the same pid, before
 * an exec, left one).
 *
 * An append-only log of records, each `u32 type, u32 length, payload`
 * (native byte order; snapshots/native.py reads it):
 *   HEADER    once, first: pid, ppid, mode, depth, sample_bytes, the
 *             start time, the command line (NUL-separated)
 *   STACK     once per stack, before the first snapshot that names it:
 *             id, number of frames, the return addresses
 *   MAPS      /proc/self/maps, whenever it changed since the last one
 *   SITES     per stack whose counters changed since the last snapshot:
 *             allocations made there, frees of them, and their bytes
 *             (totals since the start, not increments)
 *   SIZES     allocation calls by size, 64 power-of-two buckets (totals)
 *   PYCODE    once per Python code id, before the first stack naming it:
 *             id, the lengths of the file and function names, the names
 *             (a Python frame in a STACK is PMT_NT_PYFRAME_TAG | id << 32
 *             | line)
 *   SNAPSHOT  the totals and, per stack, the live and the peak bytes and
 *             blocks (stacks with nothing live, or nothing at the peak,
 *             are left out)
 * SITES and SIZES belong to the SNAPSHOT that follows them in the same
 * batch (a reader ignores them when that SNAPSHOT is cut off).
 * A snapshot is written every PYMEMTRACE_NATIVE_INTERVAL_MS while the
 * program allocates, and a last one (kind EXIT) by the destructor.  Each
 * batch of records goes out in one write() loop, so a process killed at
 * any point leaves a file whose last complete SNAPSHOT is consistent with
 * the records before it; a reader drops a truncated tail.
 *
 * Every function here is called with pmt_nt_runtime.lock held and the
 * guard set.  A write error stops the capture for good (failed), never
 * the program.
 */
#define _GNU_SOURCE
#include "preload.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define rt pmt_nt_runtime

#define REC_HEADER 1
#define REC_STACK 2
#define REC_MAPS 3
#define REC_SNAPSHOT 4
#define REC_SITES 5
#define REC_SIZES 6
#define REC_PYCODE 7

static const char MAGIC[8] = "PMTNAT1\n";

typedef struct {
    unsigned char *data; /* from the real malloc */
    size_t len;
    size_t cap;
    int failed; /* out of memory: the batch is dropped */
} buf_t;

uint64_t
pmt_nt_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
buf_put(buf_t *b, const void *data, size_t len)
{
    if (b->failed) {
        return;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        unsigned char *grown;
        while (cap < b->len + len) {
            cap *= 2;
        }
        grown = rt.real.realloc(b->data, cap);
        if (grown == NULL) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void
buf_u32(buf_t *b, uint32_t v)
{
    buf_put(b, &v, sizeof(v));
}

static void
buf_u64(buf_t *b, uint64_t v)
{
    buf_put(b, &v, sizeof(v));
}

static void
buf_record(buf_t *b, uint32_t type, uint32_t len)
{
    buf_u32(b, type);
    buf_u32(b, len);
}

static int
write_all(int fd, const unsigned char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The whole of a small /proc file into b (appended). */
static void
buf_file(buf_t *b, const char *path)
{
    unsigned char chunk[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0) {
        return;
    }
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        buf_put(b, chunk, (size_t)n);
    }
    close(fd);
}

static int
open_capture(void)
{
    char path[sizeof(rt.outdir) + 64];
    int k, fd = -1;

    for (k = 0; k < 1000 && fd < 0; k++) {
        if (k == 0) {
            snprintf(path, sizeof(path), "%s/native-%ld.pmtn", rt.outdir,
                     (long)rt.pid);
        }
        else {
            snprintf(path, sizeof(path), "%s/native-%ld-%d.pmtn", rt.outdir,
                     (long)rt.pid, k);
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
                  0644);
        if (fd < 0 && errno != EEXIST) {
            break;
        }
    }
    return fd;
}

static void
header(buf_t *b)
{
    buf_t cmd = {0};
    struct timespec ts;

    buf_file(&cmd, "/proc/self/cmdline");
    clock_gettime(CLOCK_REALTIME, &ts);
    buf_put(b, MAGIC, sizeof(MAGIC));
    buf_record(b, REC_HEADER, (uint32_t)(32 + cmd.len));
    buf_u32(b, (uint32_t)rt.pid);
    buf_u32(b, (uint32_t)getppid());
    buf_u32(b, (uint32_t)rt.mode);
    buf_u32(b, (uint32_t)rt.depth);
    buf_u64(b, rt.sample_bytes);
    buf_u64(b, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    if (cmd.len) {
        buf_put(b, cmd.data, cmd.len);
    }
    rt.real.free(cmd.data);
}

static int
flush(buf_t *b)
{
    if (b->failed || (b->len && write_all(rt.fd, b->data, b->len) < 0)) {
        rt.failed = 1;
        return -1;
    }
    return 0;
}

void
pmt_nt_capture_start_unlocked(void)
{
    buf_t b = {0};

    if (rt.fd >= 0 || rt.failed) {
        return;
    }
    rt.fd = open_capture();
    if (rt.fd < 0) {
        rt.failed = 1;
        return;
    }
    header(&b);
    flush(&b);
    rt.real.free(b.data);
}

static uint64_t
fnv1a(const unsigned char *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ data[i]) * 0x100000001b3ull;
    }
    return h;
}

/* The names of the Python code ids published since the last batch;
   returns the number of ids written once this batch is. */
static uint32_t
new_pycodes(buf_t *b)
{
    pmt_nt_pycode_fn code =
        atomic_load_explicit(&rt.pycode, memory_order_acquire);
    const char *file, *function;
    uint32_t id = rt.pycodes_written, flen, nlen;

    while (code != NULL && code(id, &file, &function)) {
        flen = (uint32_t)strnlen(file, 4096);
        nlen = (uint32_t)strnlen(function, 4096);
        buf_record(b, REC_PYCODE, 16 + flen + nlen);
        buf_u32(b, id);
        buf_u32(b, flen);
        buf_u32(b, nlen);
        buf_u32(b, 0);
        buf_put(b, file, flen);
        buf_put(b, function, nlen);
        id++;
    }
    return id;
}

static void
new_stacks(buf_t *b)
{
    uint32_t id, i;

    for (id = rt.stacks_written; id < rt.stacks.count; id++) {
        const pmt_stack *s = &rt.stacks.stacks[id];
        const pmt_frame *frames = pmt_stacktable_frames(&rt.stacks, id);
        buf_record(b, REC_STACK, 8 + 8 * s->nframes);
        buf_u32(b, id);
        buf_u32(b, s->nframes);
        for (i = 0; i < s->nframes; i++) {
            buf_u64(b, (uint64_t)(uintptr_t)frames[i].code);
        }
    }
}

static void
maps(buf_t *b)
{
    buf_t text = {0};
    uint64_t h;

    buf_file(&text, "/proc/self/maps");
    h = fnv1a(text.data, text.len);
    if (!text.failed && text.len && h != rt.maps_hash) {
        buf_record(b, REC_MAPS, (uint32_t)text.len);
        buf_put(b, text.data, text.len);
        rt.maps_hash = h;
    }
    rt.real.free(text.data);
}

static void
entry(buf_t *b, uint32_t id, int64_t bytes, int64_t blocks)
{
    buf_u32(b, id);
    buf_u32(b, 0);
    buf_u64(b, (uint64_t)bytes);
    buf_u64(b, (uint64_t)blocks);
}

static void
sites(buf_t *b)
{
    uint32_t id, n = 0;

    for (id = 0; id < rt.sites_cap; id++) {
        n += rt.sites[id].dirty != 0;
    }
    if (n == 0) {
        return;
    }
    buf_record(b, REC_SITES, 8 + 40 * n);
    buf_u32(b, n);
    buf_u32(b, 0);
    for (id = 0; id < rt.sites_cap; id++) {
        struct pmt_nt_site *site = &rt.sites[id];
        if (site->dirty) {
            buf_u32(b, id);
            buf_u32(b, 0);
            buf_u64(b, site->allocs);
            buf_u64(b, site->frees);
            buf_u64(b, site->bytes_alloc);
            buf_u64(b, site->bytes_freed);
            site->dirty = 0;
        }
    }
}

static void
sizes(buf_t *b)
{
    int k;

    buf_record(b, REC_SIZES, 8 * PMT_NT_SIZE_BUCKETS);
    for (k = 0; k < PMT_NT_SIZE_BUCKETS; k++) {
        buf_u64(b, atomic_load_explicit(&rt.sizes[k], memory_order_relaxed));
    }
}

static void
snapshot(buf_t *b, int final)
{
    uint32_t id, nlive = 0, npeak = 0;
    int64_t bytes, blocks;

    for (id = 0; id < rt.stacks.count; id++) {
        pmt_stacktable_peak_of(&rt.stacks, id, &bytes, &blocks);
        nlive += rt.stacks.stacks[id].blocks != 0;
        npeak += blocks != 0;
    }
    buf_record(b, REC_SNAPSHOT, 80 + 24 * (nlive + npeak));
    buf_u32(b, final ? PMT_NT_SNAP_EXIT : PMT_NT_SNAP_PERIODIC);
    buf_u32(b, nlive);
    buf_u32(b, npeak);
    buf_u32(b, 0);
    buf_u64(b, (uint64_t)rt.stacks.total);
    buf_u64(b, (uint64_t)rt.stacks.peak_total);
    buf_u64(b, atomic_load(&rt.n_alloc));
    buf_u64(b, atomic_load(&rt.n_free));
    buf_u64(b, atomic_load(&rt.bytes_alloc));
    buf_u64(b, rt.ptrs.drops + rt.stacks.drops);
    buf_u64(b, rt.unknown_frees);
    buf_u64(b, pmt_nt_now_ns());
    for (id = 0; id < rt.stacks.count; id++) {
        const pmt_stack *s = &rt.stacks.stacks[id];
        if (s->blocks != 0) {
            entry(b, id, s->bytes, s->blocks);
        }
    }
    for (id = 0; id < rt.stacks.count; id++) {
        pmt_stacktable_peak_of(&rt.stacks, id, &bytes, &blocks);
        if (blocks != 0) {
            entry(b, id, bytes, blocks);
        }
    }
}

void
pmt_nt_capture_dump_unlocked(int final)
{
    buf_t b = {0};
    uint32_t pycodes;

    if (rt.finished) {
        return;
    }
    if (rt.fd < 0) {
        pmt_nt_capture_start_unlocked(); /* a forked child's first */
    }
    if (rt.failed) {
        return;
    }
    pycodes = new_pycodes(&b);
    new_stacks(&b);
    maps(&b);
    sites(&b);
    sizes(&b);
    snapshot(&b, final);
    if (flush(&b) == 0) {
        rt.stacks_written = rt.stacks.count;
        rt.pycodes_written = pycodes;
        rt.peak_written = rt.stacks.peak_total;
    }
    rt.real.free(b.data);
    if (final) {
        rt.finished = 1;
        close(rt.fd);
        rt.fd = -1;
    }
}
