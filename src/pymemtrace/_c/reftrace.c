/*
 * reftrace.c - placeholder until its issue lands; see native.h.
 */
#include "native.h"

int
pmt_reftrace_exec(PyObject *module)
{
    (void)module;
    return 0;
}

void
pmt_reftrace_shutdown(void)
{
}
