/*
 * compat.h - CPython version guards, in one place.
 *
 * Every PY_VERSION_HEX test of the project lives here, so the rest of the C
 * code reads as if written for the newest CPython.  Backports follow the
 * semantics of the API they stand in for (new references, -1 with an
 * exception set).
 */
#ifndef PMT_COMPAT_H
#define PMT_COMPAT_H

#include <Python.h>

#define PMT_PY310_PLUS (PY_VERSION_HEX >= 0x030A0000)
#define PMT_PY311_PLUS (PY_VERSION_HEX >= 0x030B0000)
#define PMT_PY312_PLUS (PY_VERSION_HEX >= 0x030C0000)
#define PMT_PY313_PLUS (PY_VERSION_HEX >= 0x030D0000)

/* A function the compiler must not inline (a slow path kept out of a hot
   caller); Py_NO_INLINE is 3.11+. */
#define PMT_NOINLINE __attribute__((noinline))

#if !PMT_PY310_PLUS
static inline PyObject *
Py_NewRef(PyObject *obj)
{
    Py_INCREF(obj);
    return obj;
}

static inline PyObject *
Py_XNewRef(PyObject *obj)
{
    Py_XINCREF(obj);
    return obj;
}

static inline int
PyModule_AddObjectRef(PyObject *mod, const char *name, PyObject *value)
{
    int rc = PyModule_AddObject(mod, name, value);
    if (rc == 0) {
        Py_INCREF(value);
    }
    return rc;
}
#endif

#ifndef Py_TPFLAGS_IMMUTABLETYPE
#define Py_TPFLAGS_IMMUTABLETYPE 0
#endif
#ifndef Py_TPFLAGS_DISALLOW_INSTANTIATION
#define Py_TPFLAGS_DISALLOW_INSTANTIATION 0
#endif

#if !PMT_PY313_PLUS
/* Like PyDict_GetItemRef (3.13): 1 and a new reference when found, 0 and
   NULL when missing, -1 with an exception set on error. */
static inline int
PyDict_GetItemRef(PyObject *dict, PyObject *key, PyObject **result)
{
    PyObject *item = PyDict_GetItemWithError(dict, key);
    if (item != NULL) {
        *result = Py_NewRef(item);
        return 1;
    }
    *result = NULL;
    return PyErr_Occurred() ? -1 : 0;
}
#endif

/* Saving and restoring the current exception around code that may run in a
   hook, where nothing may leak out.  pmt_exc_t is opaque to callers. */
#if PMT_PY312_PLUS
typedef struct {
    PyObject *exc;
} pmt_exc_t;
#define PMT_EXC_SAVE(s) ((s).exc = PyErr_GetRaisedException())
#define PMT_EXC_RESTORE(s) PyErr_SetRaisedException((s).exc)
#else
typedef struct {
    PyObject *type, *value, *tb;
} pmt_exc_t;
#define PMT_EXC_SAVE(s) PyErr_Fetch(&(s).type, &(s).value, &(s).tb)
#define PMT_EXC_RESTORE(s) PyErr_Restore((s).type, (s).value, (s).tb)
#endif

/* 1 while the interpreter is finalizing (public from 3.13). */
#if PMT_PY313_PLUS
#define pmt_is_finalizing() Py_IsFinalizing()
#else
#define pmt_is_finalizing() _Py_IsFinalizing()
#endif

#endif /* PMT_COMPAT_H */
