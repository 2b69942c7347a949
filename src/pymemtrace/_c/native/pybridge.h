/*
 * pybridge.h - the interface between the native tracer
 * (libpymemtrace_preload.so, no Python.h) and the pymemtrace._native
 * extension (native_bridge.c), which gives the tracer the Python stack of
 * the thread that allocates.
 *
 * The extension looks pmt_nt_register_python up with
 * dlsym(RTLD_DEFAULT, ...) when it is imported: absent, the process is not
 * traced and nothing happens.  Then, on every recorded allocation, the
 * tracer calls `stack` with the calling thread's guard set and no lock of
 * its own held; it fills at most max Python frames, innermost first, each
 * (code id << 32 | the line as uint32), and returns how many (0 for a
 * thread that never ran Python; a thread that released the GIL gets its
 * frames too, PMT_NT_PYCODE_UNKNOWN for codes the extension has not named
 * yet).  A code id stays valid for the life of
 * the process (the extension keeps the code object alive); `code` gives
 * its file and function names (UTF-8, owned by the extension, never
 * freed) for every id below the number the extension published, from any
 * thread, and returns 0 past it.
 */
#ifndef PMT_NATIVE_PYBRIDGE_H
#define PMT_NATIVE_PYBRIDGE_H

#include <stdint.h>

#define PMT_NT_PYTHON_ABI 1
#define PMT_NT_REGISTER_PYTHON "pmt_nt_register_python"

/* A code object the extension could not keep (its table is full). */
#define PMT_NT_PYCODE_UNKNOWN 0x7fffffffu

typedef uint32_t (*pmt_nt_pystack_fn)(uint64_t *frames, uint32_t max);
typedef int (*pmt_nt_pycode_fn)(uint32_t id, const char **file,
                                const char **function);
/* 0 when registered, -1 when abi is not PMT_NT_PYTHON_ABI. */
typedef int (*pmt_nt_register_python_fn)(int abi, pmt_nt_pystack_fn stack,
                                         pmt_nt_pycode_fn code);

/* The bytes the tracer's table holds live now (weighted estimates in
   sampled mode), for the hunt's native_bytes: 0 and *bytes set, or -1 in
   counting mode (no table).  Takes the tracer's lock; any thread that is
   not inside the tracer may call it. */
#define PMT_NT_LIVE_BYTES "pmt_nt_live_bytes"
typedef int (*pmt_nt_live_bytes_fn)(int64_t *bytes);

#endif /* PMT_NATIVE_PYBRIDGE_H */
