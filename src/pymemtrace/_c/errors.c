/*
 * errors.c - raising Python exceptions from C error codes, shared by every
 * concern.  Each helper returns NULL so that a caller can write
 * "return pmt_raise_errno(err, what);".
 *
 * Threading: GIL held (they set the thread's exception).
 */
#include "native.h"

#include <errno.h>

PyObject *
pmt_raise_errno(int err, const char *what)
{
    errno = err;
    PyErr_SetFromErrnoWithFilename(PyExc_OSError, what);
    return NULL;
}

PyObject *
pmt_raise_errno_path(int err, PyObject *path)
{
    errno = err;
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
    return NULL;
}
