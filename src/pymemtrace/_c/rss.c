/*
 * rss.c - rss() and rss_peak(): the process memory probe for Python.
 *
 * No state of its own: core/rss_<platform>.c keeps the descriptor.  The
 * calls are short enough that releasing the GIL would cost more than the
 * read itself.
 */
#include "native.h"

PyDoc_STRVAR(rss_doc,
             "rss() -> int\n"
             "\n"
             "Resident set size of this process, in bytes.");

static PyObject *
rss(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    uint64_t value = 0;
    int err = pmt_rss_current(&value);

    if (err) {
        return pmt_raise_errno(err, pmt_rss_method());
    }
    return PyLong_FromUnsignedLongLong(value);
}

PyDoc_STRVAR(rss_peak_doc,
             "rss_peak() -> int\n"
             "\n"
             "Peak resident set size of this process so far, in bytes.");

static PyObject *
rss_peak(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    uint64_t value = 0;
    int err = pmt_rss_peak(&value);

    if (err) {
        return pmt_raise_errno(err, "getrusage");
    }
    return PyLong_FromUnsignedLongLong(value);
}

PyDoc_STRVAR(
    rss_slow_doc,
    "_rss_slow() -> int\n"
    "\n"
    "rss() the way the seed system reads it (fopen, fscanf, fclose per call).\n"
    "Only for benchmarks/: it shows what the kept-open descriptor saves.");

static PyObject *
rss_slow(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    uint64_t value = 0;
    int err = pmt_rss_current_slow(&value);

    if (err) {
        return pmt_raise_errno(err, pmt_rss_method());
    }
    return PyLong_FromUnsignedLongLong(value);
}

PyDoc_STRVAR(page_size_doc,
             "page_size() -> int\n"
             "\n"
             "The memory page size of this machine, in bytes.");

static PyObject *
page_size(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(pmt_rss_page_size());
}

PyDoc_STRVAR(
    release_free_doc,
    "_release_free_memory() -> bool\n"
    "\n"
    "Hand the C allocator's free memory back to the system (glibc's\n"
    "malloc_trim), so that rss() counts live memory; False where the\n"
    "platform cannot or nothing was released.");

static PyObject *
release_free_memory(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    int released;

    /* malloc_trim walks every arena: long enough to let other threads run. */
    Py_BEGIN_ALLOW_THREADS
    released = pmt_rss_release_free();
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(released);
}

static PyMethodDef rss_methods[] = {
    {"rss", rss, METH_NOARGS, rss_doc},
    {"rss_peak", rss_peak, METH_NOARGS, rss_peak_doc},
    {"_rss_slow", rss_slow, METH_NOARGS, rss_slow_doc},
    {"page_size", page_size, METH_NOARGS, page_size_doc},
    {"_release_free_memory", release_free_memory, METH_NOARGS,
     release_free_doc},
    {NULL, NULL, 0, NULL},
};

int
pmt_rss_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, rss_methods);
}
