/*
 * hooks.c - placeholder until its issue lands; see native.h.
 */
#include "native.h"

int
pmt_hooks_exec(PyObject *module)
{
    (void)module;
    return 0;
}

void
pmt_hooks_shutdown(void)
{
}
