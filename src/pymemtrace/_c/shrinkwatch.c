/*
 * shrinkwatch.c - private test hooks of core/shrinkwatch for Python tests:
 * _shrinkwatch_acquire(), _shrinkwatch_release(), _shrinkwatch_generation()
 * and _shrinkwatch_stats().
 *
 * The acquisitions made from Python are counted, so that release without
 * acquire raises instead of taking another user's reference, and the ones
 * still held when the last module instance goes are released then.
 */
#include "native.h"

#include "core/gotpatch.h"
#include "core/shrinkwatch.h"

static struct shrinkwatch_py_runtime {
    size_t held; /* GIL: acquires made from Python, not yet released */
} swpy;

PyDoc_STRVAR(sw_acquire_doc,
             "_shrinkwatch_acquire() -> int\n"
             "\n"
             "Install the shrink watch (reference counted) with the\n"
             "interpreter as host.  Returns 0, or the errno value of the\n"
             "installation (ENOSYS where GOT patching is not supported).\n"
             "Pair every call with _shrinkwatch_release().");

static PyObject *
sw_acquire(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    /* The interpreter (libpython or the python executable) loads the
       extension modules. */
    int err = pmt_shrinkwatch_acquire((const void *)&PyLong_FromLong);

    swpy.held++;
    return PyLong_FromLong(err);
}

PyDoc_STRVAR(sw_release_doc,
             "_shrinkwatch_release() -> None\n"
             "\n"
             "Release one _shrinkwatch_acquire(); the last release restores\n"
             "every patched slot.");

static PyObject *
sw_release(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    if (swpy.held == 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "_shrinkwatch_release() without "
                        "_shrinkwatch_acquire()");
        return NULL;
    }
    swpy.held--;
    pmt_shrinkwatch_release();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sw_generation_doc,
             "_shrinkwatch_generation() -> int\n"
             "\n"
             "The shrink generation: it increases after every wrapped call\n"
             "that may have lowered RSS.");

static PyObject *
sw_generation(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(pmt_shrinkwatch_generation());
}

PyDoc_STRVAR(
    sw_stats_doc,
    "_shrinkwatch_stats() -> dict\n"
    "\n"
    "The shrink watch's counters: generation, bumps, touches, slots (GOT\n"
    "slots holding its wrappers), users, installed, header_test (1: glibc\n"
    "chunk headers are read), patch_errno, calls (per wrapped function),\n"
    "got_slots_total and got_names (every gotpatch client together).");

static PyObject *
sw_stats(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    pmt_shrinkwatch_stats_t st;
    pmt_gotpatch_stats_t gs;
    PyObject *dict = NULL, *calls = NULL;
    int kind;

    pmt_shrinkwatch_stats(&st);
    pmt_gotpatch_stats(&gs);
    dict = PyDict_New();
    calls = PyDict_New();
    if (dict == NULL || calls == NULL) {
        goto error;
    }
    for (kind = 0; kind < PMT_SHRINKWATCH_KINDS; kind++) {
        if (pmt_dict_set_u64(calls, pmt_shrinkwatch_kind_name(kind),
                             st.calls[kind]) < 0) {
            goto error;
        }
    }
    if (pmt_dict_set_u64(dict, "generation", st.generation) < 0 ||
        pmt_dict_set_u64(dict, "bumps", st.bumps) < 0 ||
        pmt_dict_set_u64(dict, "touches", st.touches) < 0 ||
        pmt_dict_set_u64(dict, "slots", st.slots) < 0 ||
        pmt_dict_set_u64(dict, "users", st.users) < 0 ||
        pmt_dict_set_u64(dict, "installed", (unsigned long long)st.installed) <
            0 ||
        pmt_dict_set_u64(dict, "header_test",
                         (unsigned long long)st.header_test) < 0 ||
        pmt_dict_set_u64(dict, "patch_errno",
                         (unsigned long long)st.patch_errno) < 0 ||
        pmt_dict_set_u64(dict, "got_slots_total", gs.slots) < 0 ||
        pmt_dict_set_u64(dict, "got_names", gs.names) < 0 ||
        PyDict_SetItemString(dict, "calls", calls) < 0) {
        goto error;
    }
    Py_DECREF(calls);
    return dict;
error:
    Py_XDECREF(calls);
    Py_XDECREF(dict);
    return NULL;
}

static PyMethodDef sw_methods[] = {
    {"_shrinkwatch_acquire", sw_acquire, METH_NOARGS, sw_acquire_doc},
    {"_shrinkwatch_release", sw_release, METH_NOARGS, sw_release_doc},
    {"_shrinkwatch_generation", sw_generation, METH_NOARGS, sw_generation_doc},
    {"_shrinkwatch_stats", sw_stats, METH_NOARGS, sw_stats_doc},
    {NULL, NULL, 0, NULL},
};

int
pmt_shrinkwatch_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, sw_methods);
}

void
pmt_shrinkwatch_shutdown(void)
{
    while (swpy.held > 0) {
        swpy.held--;
        pmt_shrinkwatch_release();
    }
}
