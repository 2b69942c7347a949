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
 *
 * Async-signal-safe: signals.c writes the exit snapshot from a SIGTERM
 * handler, which may have interrupted the real malloc (its arena lock is
 * not recursive) or stdio.  So nothing here allocates, formats with stdio
 * or takes a lock: a batch is built in anonymous memory of its own
 * (mmap, grown by mremap), paths are formed by hand, and the rest is
 * system calls (open, read, write, close, clock_gettime) and the
 * lock-free code-name callback of the extension (native_bridge.c).
 */
#define _GNU_SOURCE
#include "preload.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
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

#define BUF_FIRST_MAP (64 * 1024)

typedef struct {
    unsigned char *data; /* an anonymous mapping of cap bytes, or NULL */
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

/* Room for need bytes: a first map of 64 KiB, doubled.  The real mmap,
   not ours: the tracer's own memory is not traced. */
static int
buf_grow(buf_t *b, size_t need)
{
    size_t cap = b->cap ? b->cap : BUF_FIRST_MAP;
    void *grown;

    while (cap < need) {
        cap *= 2;
    }
    if (b->data == NULL) {
        grown =
            rt.real.mmap != NULL
                ? rt.real.mmap(NULL, cap, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                : (void *)syscall(SYS_mmap, NULL, cap, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    else {
        grown = mremap(b->data, b->cap, cap, MREMAP_MAYMOVE);
    }
    if (grown == MAP_FAILED) {
        return -1;
    }
    b->data = grown;
    b->cap = cap;
    return 0;
}

static void
buf_release(buf_t *b)
{
    if (b->data != NULL) {
        if (rt.real.munmap != NULL) {
            rt.real.munmap(b->data, b->cap);
        }
        else {
            syscall(SYS_munmap, b->data, b->cap);
        }
    }
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Set the length field of the record whose header starts at offset at
   (its payload: everything appended since). */
static void
buf_patch_length(buf_t *b, size_t at)
{
    uint32_t len = (uint32_t)(b->len - at - 8);

    if (!b->failed) {
        memcpy(b->data + at + 4, &len, sizeof(len));
    }
}

static void
buf_put(buf_t *b, const void *data, size_t len)
{
    if (b->failed) {
        return;
    }
    if (b->len + len > b->cap && buf_grow(b, b->len + len) < 0) {
        b->failed = 1;
        return;
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

/* Appends text to the path being formed (cut at the end of the room). */
static size_t
path_put(char *path, size_t at, size_t room, const char *text)
{
    while (*text != '\0' && at + 1 < room) {
        path[at++] = *text++;
    }
    path[at] = '\0';
    return at;
}

static size_t
path_put_ulong(char *path, size_t at, size_t room, unsigned long value)
{
    char digits[24];
    int n = (int)sizeof(digits) - 1;

    digits[n] = '\0';
    do {
        digits[--n] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    return path_put(path, at, room, digits + n);
}

static int
open_capture(void)
{
    char path[sizeof(rt.outdir) + 64];
    size_t at;
    int k, fd = -1;

    for (k = 0; k < 1000 && fd < 0; k++) {
        at = path_put(path, 0, sizeof(path), rt.outdir);
        at = path_put(path, at, sizeof(path), "/native-");
        at = path_put_ulong(path, at, sizeof(path), (unsigned long)rt.pid);
        if (k != 0) {
            at = path_put(path, at, sizeof(path), "-");
            at = path_put_ulong(path, at, sizeof(path), (unsigned long)k);
        }
        path_put(path, at, sizeof(path), ".pmtn");
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
    struct timespec ts;
    size_t at;

    clock_gettime(CLOCK_REALTIME, &ts);
    buf_put(b, MAGIC, sizeof(MAGIC));
    at = b->len;
    buf_record(b, REC_HEADER, 0);
    buf_u32(b, (uint32_t)rt.pid);
    buf_u32(b, (uint32_t)getppid());
    buf_u32(b, (uint32_t)rt.mode);
    buf_u32(b, (uint32_t)rt.depth);
    buf_u64(b, rt.sample_bytes);
    buf_u64(b, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    buf_file(b, "/proc/self/cmdline");
    buf_patch_length(b, at);
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
    buf_release(&b);
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

/* /proc/self/maps, read into the batch, kept only when it changed. */
static void
maps(buf_t *b)
{
    size_t at = b->len;
    uint64_t h;

    buf_record(b, REC_MAPS, 0);
    buf_file(b, "/proc/self/maps");
    if (b->failed) {
        return;
    }
    h = fnv1a(b->data + at + 8, b->len - at - 8);
    if (b->len == at + 8 || h == rt.maps_hash) {
        b->len = at;
        return;
    }
    buf_patch_length(b, at);
    rt.maps_hash = h;
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
    buf_release(&b);
    if (final) {
        rt.finished = 1;
        close(rt.fd);
        rt.fd = -1;
    }
}
