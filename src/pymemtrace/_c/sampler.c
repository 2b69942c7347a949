/*
 * sampler.c - placeholder until its issue lands; see native.h.
 */
#include "native.h"

int
pmt_sampler_exec(PyObject *module)
{
    (void)module;
    return 0;
}

void
pmt_sampler_shutdown(void)
{
}
