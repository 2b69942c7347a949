/*
 * alloc.c - placeholder until its issue lands; see native.h.
 */
#include "native.h"

int
pmt_alloc_exec(PyObject *module)
{
    (void)module;
    return 0;
}

void
pmt_alloc_shutdown(void)
{
}

int
pmt_alloc_counting(void)
{
    return 0;
}

int64_t
pmt_alloc_live_bytes(void)
{
    return 0;
}

int
pmt_alloc_counting_acquire(void)
{
    PyErr_SetString(PyExc_NotImplementedError,
                    "the allocation counters are not built yet");
    return -1;
}

void
pmt_alloc_counting_release(void)
{
}
