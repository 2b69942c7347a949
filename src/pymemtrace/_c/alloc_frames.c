/*
 * alloc_frames.c - reading the calling thread's Python stack from inside an
 * allocator hook, without creating frame objects.
 *
 * The public frame API (PyThreadState_GetFrame, PyFrame_GetBack) creates a
 * frame object per frame on 3.11+, which allocates and would re-enter the
 * hook; tracemalloc reads the interpreter frames directly instead, and so
 * do we.  On 3.11+ that needs the interpreter frame struct from the
 * internal headers, so this file alone defines Py_BUILD_CORE (after
 * Python.h, only for pycore_frame.h's inline helpers); every other file
 * stays on the public API.
 *
 * Threading: called with the GIL held by the calling thread (the thread's
 * frames cannot change under us), or, pmt_collect_frames_of only, by a
 * thread that released the GIL for its own thread state: it is inside a C
 * call, so its frames stay as they are until it returns; other threads
 * only read them (gc, sys._current_frames) or set their frame object.
 */
#include "native.h"

#if PMT_PY311_PLUS
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include "internal/pycore_frame.h"
#else
#include <frameobject.h>
#endif

#if PMT_PY313_PLUS
#define THREAD_FRAME(ts) ((ts)->current_frame)
#define FRAME_CODE(f) ((PyCodeObject *)(f)->f_executable)
#define FRAME_ADDR(f)                                                         \
    ((int32_t)(_PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT)))
#elif PMT_PY311_PLUS
#define THREAD_FRAME(ts) ((ts)->cframe->current_frame)
#define FRAME_CODE(f) ((f)->f_code)
#define FRAME_ADDR(f)                                                         \
    ((int32_t)(_PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT)))
#endif

#if PMT_PY311_PLUS
/* Frames that belong to C (3.12+ shim frames) are skipped, as
   traceback.c and tracemalloc.c skip them. */
static inline int
frame_is_shim(struct _PyInterpreterFrame *f)
{
#if PMT_PY312_PLUS
    return f->owner == FRAME_OWNED_BY_CSTACK;
#else
    (void)f;
    return 0;
#endif
}

/* A frame that has not started running its code (its prologue, e.g.
   MAKE_CELL, is allocating) is skipped too.  Only the innermost frames can
   be in that state: a frame below another one is suspended in a call,
   after its prologue, so the walk checks it (a load from the code object)
   only until the first complete frame. */
static inline int
frame_is_skipped_top(struct _PyInterpreterFrame *f)
{
    if (frame_is_shim(f)) {
        return 1;
    }
#if PMT_PY313_PLUS
    if (!PyCode_Check(f->f_executable)) {
        return 1;
    }
#endif
    return _PyFrame_IsIncomplete(f);
}
#endif

/* The calling thread's innermost Python frame (opaque), NULL if none. */
const void *
pmt_current_frame(void)
{
#if PMT_PY313_PLUS
    PyThreadState *tstate = PyThreadState_GetUnchecked();
#else
    PyThreadState *tstate = _PyThreadState_UncheckedGet();
#endif
    if (tstate == NULL) {
        return NULL;
    }
#if PMT_PY311_PLUS
    return THREAD_FRAME(tstate);
#else
    return tstate->frame;
#endif
}

/* What identifies a frame's position in the hash.  On 3.11+ the address
   of the frame's current instruction: it lies inside the code object, so
   it stands for the code and the offset at once (one load instead of
   two).  Two live code objects never share those bytes, and every code
   object an interned stack refers to is kept alive by it, so equal
   identities mean equal frames among the stacks the table holds. */
#if PMT_PY313_PLUS
#define FRAME_IDENT(f) ((uint64_t)(uintptr_t)(f)->instr_ptr)
#elif PMT_PY311_PLUS
#define FRAME_IDENT(f) ((uint64_t)(uintptr_t)(f)->prev_instr)
#else
#define FRAME_IDENT(f)                                                        \
    ((uint64_t)(uintptr_t)(f)->f_code ^                                       \
     ((uint64_t)(uint32_t)(f)->f_lasti << 40))
#endif

/* The multiply is off the loop-carried chain: the running hash only
   rotates and adds (2 cycles a frame, under the pointer chase to the next
   frame), where multiplying the running hash cost 5 and made the walk
   the slowest part of exact mode (measured: 2.0 -> 1.8 on slow_leak with
   16 frames).  Adding (not xoring) keeps a frame repeated 64 frames
   apart, where the rotations meet again, from cancelling out; the final
   mix spreads the result. */
static inline uint64_t
hash_step(uint64_t h, uint64_t ident)
{
    return (h << 7 | h >> 57) + ident * 0x9E3779B97F4A7C15ull;
}

static inline PyThreadState *
current_tstate(void)
{
#if PMT_PY313_PLUS
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

#if PMT_PY311_PLUS
typedef struct _PyInterpreterFrame pmt_iframe;
#define FRAME_FIRST(tstate) THREAD_FRAME(tstate)
#define FRAME_NEXT(f) ((f)->previous)
#else
typedef PyFrameObject pmt_iframe;
#define FRAME_CODE(f) ((f)->f_code)
#define FRAME_FIRST(tstate) ((tstate)->frame)
#define FRAME_NEXT(f) ((f)->f_back)
#define frame_is_shim(f) 0
#define frame_is_skipped_top(f) 0
#endif

/* Instruction offset in bytes, -1 when the frame has not started. */
static inline int32_t
frame_addr(pmt_iframe *f)
{
#if PMT_PY311_PLUS
    return FRAME_ADDR(f);
#elif PMT_PY310_PLUS
    return f->f_lasti < 0 ? -1 : f->f_lasti * 2;
#else
    return f->f_lasti;
#endif
}

/* The one walk: up to max frames from the innermost one the walk reports
   (frames that have not started and shims skipped), stopping before base;
   their hash, and their code and offset into frames unless it is NULL.
   Always inlined, so that the callers' constant arguments (no frames, no
   base) take their tests out of the loop. */
static inline __attribute__((always_inline)) uint64_t
walk(PyThreadState *tstate, uint32_t max, const void *base, pmt_frame *frames,
     uint32_t *nframes)
{
    uint64_t h = PMT_STACK_HASH_SEED;
    uint32_t n = 0;
    pmt_iframe *f = tstate != NULL ? FRAME_FIRST(tstate) : NULL;

    while (f != NULL && (const void *)f != base && frame_is_skipped_top(f)) {
        f = FRAME_NEXT(f);
    }
    for (; f != NULL && n < max && (base == NULL || (const void *)f != base);
         f = FRAME_NEXT(f)) {
        if (frame_is_shim(f)) {
            continue;
        }
        if (frames != NULL) {
            frames[n].code = FRAME_CODE(f);
            frames[n].addr = frame_addr(f);
            frames[n].unused = 0;
        }
        h = hash_step(h, FRAME_IDENT(f));
        n++;
    }
    *nframes = n;
    return pmt_stack_hash_final(h, n);
}

uint64_t
pmt_stack_hash_walk(uint32_t max, const void *base, uint32_t *nframes)
{
    PyThreadState *tstate = current_tstate();

    if (base == NULL) {
        /* The common case, one test less per frame. */
        return walk(tstate, max, NULL, NULL, nframes);
    }
    return walk(tstate, max, base, NULL, nframes);
}

uint32_t
pmt_collect_frames(pmt_frame *frames, uint32_t max, uint64_t *hash,
                   const void *base)
{
    uint32_t n;

    *hash = walk(current_tstate(), max, base, frames, &n);
    return n;
}

uint32_t
pmt_collect_frames_of(PyThreadState *tstate, pmt_frame *frames, uint32_t max)
{
    uint32_t n;

    (void)walk(tstate, max, NULL, frames, &n);
    return n;
}
