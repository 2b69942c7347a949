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
 * frames cannot change under us).
 */
#include "native.h"

#if PMT_PY311_PLUS
#  ifndef Py_BUILD_CORE
#    define Py_BUILD_CORE 1
#  endif
#  include "internal/pycore_frame.h"
#else
#  include <frameobject.h>
#endif

#if PMT_PY313_PLUS
#  define THREAD_FRAME(ts) ((ts)->current_frame)
#  define FRAME_CODE(f) ((PyCodeObject *)(f)->f_executable)
#  define FRAME_ADDR(f) ((int32_t)(_PyInterpreterFrame_LASTI(f) \
                                    * (int)sizeof(_Py_CODEUNIT)))
#elif PMT_PY311_PLUS
#  define THREAD_FRAME(ts) ((ts)->cframe->current_frame)
#  define FRAME_CODE(f) ((f)->f_code)
#  define FRAME_ADDR(f) ((int32_t)(_PyInterpreterFrame_LASTI(f) \
                                    * (int)sizeof(_Py_CODEUNIT)))
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

uint32_t
pmt_collect_frames(pmt_frame *frames, uint32_t max, uint64_t *hash,
                   const void *base)
{
    uint64_t h = PMT_STACK_HASH_SEED;
    uint32_t n = 0;
#if PMT_PY313_PLUS
    PyThreadState *tstate = PyThreadState_GetUnchecked();
#else
    PyThreadState *tstate = _PyThreadState_UncheckedGet();
#endif

    if (tstate == NULL) {
        *hash = pmt_stack_hash_final(h, 0);
        return 0;
    }
#if PMT_PY311_PLUS
    {
        struct _PyInterpreterFrame *f = THREAD_FRAME(tstate);
        while (f != NULL && (const void *)f != base
               && frame_is_skipped_top(f)) {
            f = f->previous;
        }
        for (; f != NULL && n < max && (const void *)f != base;
             f = f->previous) {
            if (frame_is_shim(f)) {
                continue;
            }
            {
                const void *code = FRAME_CODE(f);
                int32_t addr = FRAME_ADDR(f);
                if (frames != NULL) {
                    frames[n].code = code;
                    frames[n].addr = addr;
                    frames[n].unused = 0;
                }
                h = pmt_stack_hash_step(h, code, addr);
            }
            n++;
        }
    }
#else
    {
        PyFrameObject *f = tstate->frame;
        for (; f != NULL && n < max && (const void *)f != base;
             f = f->f_back) {
            int32_t addr;
#if PMT_PY310_PLUS
            addr = f->f_lasti < 0 ? -1 : f->f_lasti * 2;
#else
            addr = f->f_lasti;
#endif
            if (frames != NULL) {
                frames[n].code = f->f_code;
                frames[n].addr = addr;
                frames[n].unused = 0;
            }
            h = pmt_stack_hash_step(h, f->f_code, addr);
            n++;
        }
    }
#endif
    *hash = pmt_stack_hash_final(h, n);
    return n;
}
