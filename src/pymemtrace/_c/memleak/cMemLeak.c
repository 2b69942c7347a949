/*
 * cMemLeak.c - pymemtrace.cMemLeak: memory use and leaks made on purpose.
 *
 * The seed system's module of the same name, for tests, examples and
 * documentation: objects that hold a buffer from one allocator and free it
 * in dealloc (CMalloc, PyRawMalloc, PyMalloc), reference-count helpers, and
 * pairs of functions of which one leaks on every call and its twin does the
 * same work without leaking:
 *
 *   leak_malloc / no_leak_malloc          a buffer from malloc()
 *   leak_pymem_raw / no_leak_pymem_raw    a buffer from PyMem_RawMalloc()
 *   leak_pymem / no_leak_pymem            a buffer from PyMem_Malloc()
 *   leak_list / no_leak_list              a new list that nothing holds
 *   leak_incref / no_leak_incref          one reference more on the argument
 *   leak_malloc_nogil / no_leak_malloc_nogil
 *                                         KiB blocks from malloc(), the GIL
 *                                         released (as lxml parses)
 *
 * It is a small extension of its own, apart from pymemtrace._native: the
 * tool must not carry code that leaks on purpose, and this module needs
 * nothing of it.  It keeps no process-wide state, so every interpreter may
 * load its own copy; its functions take the GIL-protected objects they are
 * given and nothing else (no threads, no locks).
 *
 * Buffers are written to, one byte per page, so that a leaked buffer shows
 * in the resident set size, and so that the compiler cannot drop an
 * allocate-and-free twin as dead code (the writes are volatile).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>

#include "compat.h"

/* Sizes above this are refused with MemoryError before any allocator sees
   them: a request that large is a mistake in a test, and AddressSanitizer
   aborts the process on it instead of returning NULL. */
#define MEMLEAK_MAX_SIZE ((Py_ssize_t)1 << 40)
#define MEMLEAK_PAGE 4096

/* Which allocator a buffer comes from (and goes back to). */
typedef enum {
    DOMAIN_MALLOC, /* malloc() / free() */
    DOMAIN_PYRAW,  /* PyMem_RawMalloc() / PyMem_RawFree() */
    DOMAIN_PYMEM,  /* PyMem_Malloc() / PyMem_Free() */
} memleak_domain;

typedef struct {
    PyTypeObject *cmalloc_type;     /* CMalloc */
    PyTypeObject *pyrawmalloc_type; /* PyRawMalloc */
    PyTypeObject *pymalloc_type;    /* PyMalloc */
} memleak_state;

/* An object that owns one buffer, freed in dealloc. */
typedef struct {
    PyObject_HEAD
    size_t size;           /* bytes reserved, at least 1 */
    void *buffer;          /* from the allocator of `domain`; never NULL */
    memleak_domain domain; /* set once by tp_new */
} buffer_object;

static inline memleak_state *
get_state(PyObject *module)
{
    return (memleak_state *)PyModule_GetState(module);
}

/* The size argument checked: 0 with *out set (0 becomes 1, so that every
   object owns a real block), or -1 with ValueError (negative) or
   MemoryError (absurd) set. */
static int
checked_size(Py_ssize_t size, size_t *out)
{
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "size must be >= 0, not %zd", size);
        return -1;
    }
    if (size > MEMLEAK_MAX_SIZE) {
        PyErr_Format(PyExc_MemoryError,
                     "size %zd is more than cMemLeak allocates (1 TiB)", size);
        return -1;
    }
    *out = size == 0 ? 1 : (size_t)size;
    return 0;
}

/* One byte per page and the last byte written, through a volatile pointer:
   the pages become resident and the block cannot be optimised away. */
static void
touch(void *buffer, size_t size)
{
    volatile unsigned char *bytes = buffer;
    size_t i;

    for (i = 0; i < size; i += MEMLEAK_PAGE) {
        bytes[i] = 0xA5;
    }
    bytes[size - 1] = 0xA5;
}

/* A touched buffer of `size` bytes (>= 1) from `domain`, or NULL with
   MemoryError set. */
static void *
buffer_alloc(memleak_domain domain, size_t size)
{
    void *buffer = NULL;

    switch (domain) {
    case DOMAIN_MALLOC:
        buffer = malloc(size);
        break;
    case DOMAIN_PYRAW:
        buffer = PyMem_RawMalloc(size);
        break;
    case DOMAIN_PYMEM:
        buffer = PyMem_Malloc(size);
        break;
    }
    if (buffer == NULL) {
        PyErr_Format(PyExc_MemoryError, "cannot allocate %zu bytes", size);
        return NULL;
    }
    touch(buffer, size);
    return buffer;
}

static void
buffer_free(memleak_domain domain, void *buffer)
{
    switch (domain) {
    case DOMAIN_MALLOC:
        free(buffer);
        break;
    case DOMAIN_PYRAW:
        PyMem_RawFree(buffer);
        break;
    case DOMAIN_PYMEM:
        PyMem_Free(buffer);
        break;
    }
}

/* ---------------------------------------------------- the buffer objects */

static PyObject *
buffer_new(PyTypeObject *type, PyObject *args, PyObject *kwds,
           memleak_domain domain)
{
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t requested = 0;
    size_t size = 0;
    buffer_object *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", kwlist, &requested)) {
        goto error;
    }
    if (checked_size(requested, &size) < 0) {
        goto error;
    }
    self = (buffer_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    self->size = size;
    self->domain = domain;
    self->buffer = buffer_alloc(domain, size);
    if (self->buffer == NULL) {
        goto error;
    }
    return (PyObject *)self;

error:
    /* dealloc frees nothing while buffer is NULL */
    Py_XDECREF(self);
    return NULL;
}

static PyObject *
cmalloc_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return buffer_new(type, args, kwds, DOMAIN_MALLOC);
}

static PyObject *
pyrawmalloc_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return buffer_new(type, args, kwds, DOMAIN_PYRAW);
}

static PyObject *
pymalloc_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return buffer_new(type, args, kwds, DOMAIN_PYMEM);
}

static void
buffer_dealloc(buffer_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    if (self->buffer != NULL) {
        buffer_free(self->domain, self->buffer);
        self->buffer = NULL;
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
buffer_get_size(buffer_object *self, void *closure)
{
    return PyLong_FromSize_t(self->size);
}

static PyObject *
buffer_get_buffer(buffer_object *self, void *closure)
{
    return PyLong_FromVoidPtr(self->buffer);
}

PyDoc_STRVAR(buffer_refcnt_doc,
             "refcnt($self, /)\n--\n\n"
             "The reference count of this object.");

static PyObject *
buffer_refcnt(buffer_object *self, PyObject *unused)
{
    return PyLong_FromSsize_t(Py_REFCNT(self));
}

PyDoc_STRVAR(
    buffer_inc_refcnt_doc,
    "inc_refcnt($self, n, /)\n--\n\n"
    "Add n to the reference count (subtract when n is negative) and return\n"
    "the new count.  A positive n leaks the object; a negative n that would\n"
    "take the count below 1 (free the object while it is in use) raises\n"
    "ValueError.");

static PyObject *
buffer_inc_refcnt(buffer_object *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    Py_ssize_t i;

    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0 && Py_REFCNT(self) + n < 1) {
        PyErr_Format(PyExc_ValueError,
                     "inc_refcnt(%zd) would take the reference count of %zd "
                     "below 1",
                     n, Py_REFCNT(self));
        return NULL;
    }
    /* One Py_INCREF/Py_DECREF at a time, so that a debug build's total
       reference count sees every one of them. */
    for (i = 0; i < n; i++) {
        Py_INCREF(self);
    }
    for (i = 0; i > n; i--) {
        Py_DECREF(self);
    }
    return PyLong_FromSsize_t(Py_REFCNT(self));
}

static PyGetSetDef buffer_getset[] = {
    {"size", (getter)buffer_get_size, NULL,
     "Bytes reserved (at least 1: a size of 0 reserves one byte).", NULL},
    {"buffer", (getter)buffer_get_buffer, NULL,
     "Address of the buffer, as an int.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef buffer_methods[] = {
    {"refcnt", (PyCFunction)buffer_refcnt, METH_NOARGS, buffer_refcnt_doc},
    {"inc_refcnt", (PyCFunction)buffer_inc_refcnt, METH_O,
     buffer_inc_refcnt_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(cmalloc_doc,
             "CMalloc(size)\n--\n\n"
             "An object holding a buffer of size bytes from malloc(), freed "
             "with\nfree() when the object is freed.");

PyDoc_STRVAR(pyrawmalloc_doc,
             "PyRawMalloc(size)\n--\n\n"
             "An object holding a buffer of size bytes from "
             "PyMem_RawMalloc(),\nfreed with PyMem_RawFree() when the object "
             "is freed.");

PyDoc_STRVAR(pymalloc_doc,
             "PyMalloc(size)\n--\n\n"
             "An object holding a buffer of size bytes from PyMem_Malloc(), "
             "freed\nwith PyMem_Free() when the object is freed.");

/* The objects hold no Python object: no HAVE_GC.  BASETYPE as in the seed
   system.  The type names are the seed's ("cMemLeak.CMalloc", so __module__
   is "cMemLeak"): its examples select the objects by that name, e.g.
   ReferenceTracing(include_tp_names=["cMemLeak.CMalloc"]). */
#define BUFFER_FLAGS                                                          \
    (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE)

static PyType_Slot cmalloc_slots[] = {
    {Py_tp_new, cmalloc_new},         {Py_tp_dealloc, buffer_dealloc},
    {Py_tp_getset, buffer_getset},    {Py_tp_methods, buffer_methods},
    {Py_tp_doc, (void *)cmalloc_doc}, {0, NULL},
};

static PyType_Slot pyrawmalloc_slots[] = {
    {Py_tp_new, pyrawmalloc_new},         {Py_tp_dealloc, buffer_dealloc},
    {Py_tp_getset, buffer_getset},        {Py_tp_methods, buffer_methods},
    {Py_tp_doc, (void *)pyrawmalloc_doc}, {0, NULL},
};

static PyType_Slot pymalloc_slots[] = {
    {Py_tp_new, pymalloc_new},         {Py_tp_dealloc, buffer_dealloc},
    {Py_tp_getset, buffer_getset},     {Py_tp_methods, buffer_methods},
    {Py_tp_doc, (void *)pymalloc_doc}, {0, NULL},
};

static PyType_Spec cmalloc_spec = {
    .name = "cMemLeak.CMalloc",
    .basicsize = sizeof(buffer_object),
    .flags = BUFFER_FLAGS,
    .slots = cmalloc_slots,
};

static PyType_Spec pyrawmalloc_spec = {
    .name = "cMemLeak.PyRawMalloc",
    .basicsize = sizeof(buffer_object),
    .flags = BUFFER_FLAGS,
    .slots = pyrawmalloc_slots,
};

static PyType_Spec pymalloc_spec = {
    .name = "cMemLeak.PyMalloc",
    .basicsize = sizeof(buffer_object),
    .flags = BUFFER_FLAGS,
    .slots = pymalloc_slots,
};

/* ---------------------------------------------- reference-count helpers */

PyDoc_STRVAR(py_incref_doc,
             "py_incref(obj, /)\n--\n\n"
             "Add one reference to obj that nothing will ever release (a "
             "leak).");

static PyObject *
py_incref(PyObject *module, PyObject *obj)
{
    Py_INCREF(obj);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(
    py_decref_doc,
    "py_decref(obj, /)\n--\n\n"
    "Release one reference to obj that its owner still thinks it has.\n"
    "Dangerous: the owner's own release later frees the object early and\n"
    "the process may crash.  Refused (ValueError) when obj would be freed\n"
    "during this very call.");

static PyObject *
py_decref(PyObject *module, PyObject *obj)
{
    /* The caller's argument is one reference: taking the last one would free
       obj under the caller's feet before this function returns. */
    if (Py_REFCNT(obj) <= 1) {
        PyErr_SetString(PyExc_ValueError,
                        "py_decref() would free the object during the call");
        return NULL;
    }
    Py_DECREF(obj);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(py_bytes_of_size_doc,
             "py_bytes_of_size(size)\n--\n\n"
             "A new bytes object of size zero bytes.");

static PyObject *
py_bytes_of_size(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size = 0;
    PyObject *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", kwlist, &size)) {
        goto error;
    }
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "size must be >= 0, not %zd", size);
        goto error;
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        goto error;
    }
    /* The seed system left the content uninitialised; zeros show no stale
       heap and cost nothing worth measuring. */
    memset(PyBytes_AS_STRING(result), 0, (size_t)size);
    return result;

error:
    Py_XDECREF(result);
    return NULL;
}

PyDoc_STRVAR(py_refcnt_of_object_doc,
             "py_refcnt_of_object(obj, /)\n--\n\n"
             "The reference count of obj, counting the argument as "
             "sys.getrefcount()\ndoes.");

static PyObject *
py_refcnt_of_object(PyObject *module, PyObject *obj)
{
    return PyLong_FromSsize_t(Py_REFCNT(obj));
}

PyDoc_STRVAR(
    py_refcnt_of_address_doc,
    "py_refcnt_of_address(address, /)\n--\n\n"
    "The reference count of the object at address (as id() gives it),\n"
    "counted as sys.getrefcount(obj) would count it.  An address that is\n"
    "not 0 mod the pointer size, 0 or negative raises ValueError; any other\n"
    "address that is not a live object's may crash the process.");

static PyObject *
py_refcnt_of_address(PyObject *module, PyObject *arg)
{
    int overflow = 0;
    long long value = 0;
    unsigned long long big = 0;
    PyObject *obj = NULL;
    Py_ssize_t count = 0;

    if (!PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "address must be an int, not %.200s",
                     Py_TYPE(arg)->tp_name);
        goto error;
    }
    value = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        goto error;
    }
    if (overflow < 0 || (overflow == 0 && value <= 0)) {
        PyErr_SetString(PyExc_ValueError, "address must be > 0");
        goto error;
    }
    big =
        overflow ? PyLong_AsUnsignedLongLong(arg) : (unsigned long long)value;
    if (big == (unsigned long long)-1 && PyErr_Occurred()) {
        goto error;
    }
    if (big > UINTPTR_MAX || big % sizeof(void *) != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "address is not one an object can have");
        goto error;
    }
    obj = (PyObject *)(uintptr_t)big;
    /* Holding a reference while reading counts the object as an argument
       would, as sys.getrefcount() does; on an immortal object (3.12+) both
       the reference and the reading leave the count as it is, again as
       sys.getrefcount() does. */
    Py_INCREF(obj);
    count = Py_REFCNT(obj);
    Py_DECREF(obj);
    return PyLong_FromSsize_t(count);

error:
    return NULL;
}

/* ------------------------------------------------ leaks and their twins */

/* The size argument of the leak functions (METH_O): 0 and *out set, or -1
   with an exception set. */
static int
size_argument(PyObject *arg, size_t *out)
{
    Py_ssize_t size = PyNumber_AsSsize_t(arg, PyExc_OverflowError);

    if (size == -1 && PyErr_Occurred()) {
        return -1;
    }
    return checked_size(size, out);
}

/* Allocate size bytes from domain, touch them, and either leak the buffer
   (returning its address) or free it (returning None). */
static PyObject *
allocate(PyObject *arg, memleak_domain domain, int leak)
{
    size_t size = 0;
    void *buffer = NULL;
    PyObject *result = NULL;

    if (size_argument(arg, &size) < 0) {
        goto error;
    }
    buffer = buffer_alloc(domain, size);
    if (buffer == NULL) {
        goto error;
    }
    result = leak ? PyLong_FromVoidPtr(buffer) : Py_NewRef(Py_None);
    if (result == NULL || !leak) {
        /* the twin frees; and a failure must not leak either: only a
           successful leak_* call leaks */
        buffer_free(domain, buffer);
    }
    return result;

error:
    return NULL;
}

PyDoc_STRVAR(leak_malloc_doc,
             "leak_malloc(size, /)\n--\n\n"
             "Leak size bytes from malloc() (touched, so they are resident); "
             "return\nthe address.  The twin is no_leak_malloc().");

static PyObject *
leak_malloc(PyObject *module, PyObject *arg)
{
    return allocate(arg, DOMAIN_MALLOC, 1);
}

PyDoc_STRVAR(no_leak_malloc_doc,
             "no_leak_malloc(size, /)\n--\n\n"
             "Allocate size bytes with malloc(), touch them and free them.");

static PyObject *
no_leak_malloc(PyObject *module, PyObject *arg)
{
    return allocate(arg, DOMAIN_MALLOC, 0);
}

PyDoc_STRVAR(leak_pymem_raw_doc,
             "leak_pymem_raw(size, /)\n--\n\n"
             "Leak size bytes from PyMem_RawMalloc(); return the address.\n"
             "The twin is no_leak_pymem_raw().");

static PyObject *
leak_pymem_raw(PyObject *module, PyObject *arg)
{
    return allocate(arg, DOMAIN_PYRAW, 1);
}

PyDoc_STRVAR(no_leak_pymem_raw_doc,
             "no_leak_pymem_raw(size, /)\n--\n\n"
             "Allocate size bytes with PyMem_RawMalloc(), touch them and free "
             "them.");

static PyObject *
no_leak_pymem_raw(PyObject *module, PyObject *arg)
{
    return allocate(arg, DOMAIN_PYRAW, 0);
}

PyDoc_STRVAR(leak_pymem_doc,
             "leak_pymem(size, /)\n--\n\n"
             "Leak size bytes from PyMem_Malloc(); return the address.\n"
             "The twin is no_leak_pymem().");

static PyObject *
leak_pymem(PyObject *module, PyObject *arg)
{
    return allocate(arg, DOMAIN_PYMEM, 1);
}

PyDoc_STRVAR(no_leak_pymem_doc,
             "no_leak_pymem(size, /)\n--\n\n"
             "Allocate size bytes with PyMem_Malloc(), touch them and free "
             "them.");

static PyObject *
no_leak_pymem(PyObject *module, PyObject *arg)
{
    return allocate(arg, DOMAIN_PYMEM, 0);
}

PyDoc_STRVAR(leak_list_doc,
             "leak_list()\n--\n\n"
             "Make a new empty list and drop it without releasing it: a "
             "list that\nno container and no variable refers to, with a "
             "reference count of 1\nforever.  The twin is no_leak_list().");

static PyObject *
leak_list(PyObject *module, PyObject *unused)
{
    /* The new reference is dropped on purpose: this is the leak. */
    if (PyList_New(0) == NULL) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(no_leak_list_doc,
             "no_leak_list()\n--\n\n"
             "Make a new empty list and release it.");

static PyObject *
no_leak_list(PyObject *module, PyObject *unused)
{
    PyObject *list = PyList_New(0);

    if (list == NULL) {
        return NULL;
    }
    Py_DECREF(list);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(leak_incref_doc,
             "leak_incref(obj, /)\n--\n\n"
             "Take a reference to obj and never release it: one extra "
             "reference\nper call.  The twin is no_leak_incref().");

static PyObject *
leak_incref(PyObject *module, PyObject *obj)
{
    Py_INCREF(obj);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(no_leak_incref_doc,
             "no_leak_incref(obj, /)\n--\n\n"
             "Take a reference to obj and release it.");

static PyObject *
no_leak_incref(PyObject *module, PyObject *obj)
{
    Py_INCREF(obj);
    Py_DECREF(obj);
    Py_RETURN_NONE;
}

/* Blocks of 1 KiB from malloc, each touched, leaked or freed, by a thread
   that does not hold the GIL: what a C library does between
   Py_BEGIN_ALLOW_THREADS and Py_END_ALLOW_THREADS. */
typedef struct {
    size_t blocks;
    int leak;
    size_t failed;
} nogil_work;

static void
nogil_blocks(nogil_work *work)
{
    size_t i;

    for (i = 0; i < work->blocks; i++) {
        void *block = malloc(1024);
        if (block == NULL) {
            work->failed++;
            continue;
        }
        touch(block, 1024);
        if (!work->leak) {
            free(block);
        }
    }
}

/* kib blocks from the calling thread with the GIL released. */
static PyObject *
allocate_nogil(PyObject *arg, int leak)
{
    nogil_work work = {0, leak, 0};

    if (size_argument(arg, &work.blocks) < 0) {
        goto error;
    }
    if (work.blocks > (size_t)MEMLEAK_MAX_SIZE / 1024) {
        PyErr_SetString(PyExc_MemoryError,
                        "more KiB than cMemLeak allocates (1 TiB)");
        goto error;
    }
    Py_BEGIN_ALLOW_THREADS
    nogil_blocks(&work);
    Py_END_ALLOW_THREADS
    if (work.failed != 0) {
        PyErr_Format(PyExc_MemoryError, "%zu blocks of 1 KiB not allocated",
                     work.failed);
        goto error;
    }
    Py_RETURN_NONE;

error:
    return NULL;
}

PyDoc_STRVAR(leak_malloc_nogil_doc,
             "leak_malloc_nogil(kib, /)\n--\n\n"
             "Leak kib blocks of 1 KiB from malloc(), made with the GIL "
             "released.\nThe twin is no_leak_malloc_nogil().");

static PyObject *
leak_malloc_nogil(PyObject *module, PyObject *arg)
{
    return allocate_nogil(arg, 1);
}

PyDoc_STRVAR(no_leak_malloc_nogil_doc,
             "no_leak_malloc_nogil(kib, /)\n--\n\n"
             "Allocate kib blocks of 1 KiB from malloc() with the GIL "
             "released, touch\nthem and free them.");

static PyObject *
no_leak_malloc_nogil(PyObject *module, PyObject *arg)
{
    return allocate_nogil(arg, 0);
}

/* ----------------------------------------------------------- the module */

static PyMethodDef memleak_methods[] = {
    {"py_incref", py_incref, METH_O, py_incref_doc},
    {"py_decref", py_decref, METH_O, py_decref_doc},
    {"py_bytes_of_size", (PyCFunction)(void (*)(void))py_bytes_of_size,
     METH_VARARGS | METH_KEYWORDS, py_bytes_of_size_doc},
    {"py_refcnt_of_object", py_refcnt_of_object, METH_O,
     py_refcnt_of_object_doc},
    {"py_refcnt_of_address", py_refcnt_of_address, METH_O,
     py_refcnt_of_address_doc},
    {"leak_malloc", leak_malloc, METH_O, leak_malloc_doc},
    {"no_leak_malloc", no_leak_malloc, METH_O, no_leak_malloc_doc},
    {"leak_pymem_raw", leak_pymem_raw, METH_O, leak_pymem_raw_doc},
    {"no_leak_pymem_raw", no_leak_pymem_raw, METH_O, no_leak_pymem_raw_doc},
    {"leak_pymem", leak_pymem, METH_O, leak_pymem_doc},
    {"no_leak_pymem", no_leak_pymem, METH_O, no_leak_pymem_doc},
    {"leak_list", leak_list, METH_NOARGS, leak_list_doc},
    {"no_leak_list", no_leak_list, METH_NOARGS, no_leak_list_doc},
    {"leak_incref", leak_incref, METH_O, leak_incref_doc},
    {"no_leak_incref", no_leak_incref, METH_O, no_leak_incref_doc},
    {"leak_malloc_nogil", leak_malloc_nogil, METH_O, leak_malloc_nogil_doc},
    {"no_leak_malloc_nogil", no_leak_malloc_nogil, METH_O,
     no_leak_malloc_nogil_doc},
    {NULL, NULL, 0, NULL},
};

/* Create the type of spec, store it in *slot and add it to the module. */
static int
add_type(PyObject *module, PyType_Spec *spec, PyTypeObject **slot)
{
    PyObject *type = PyType_FromModuleAndSpec(module, spec, NULL);

    if (type == NULL) {
        return -1;
    }
    *slot = (PyTypeObject *)type;
    return PyModule_AddType(module, *slot);
}

static int
memleak_exec(PyObject *module)
{
    memleak_state *state = get_state(module);

    if (add_type(module, &cmalloc_spec, &state->cmalloc_type) < 0) {
        goto error;
    }
    if (add_type(module, &pyrawmalloc_spec, &state->pyrawmalloc_type) < 0) {
        goto error;
    }
    if (add_type(module, &pymalloc_spec, &state->pymalloc_type) < 0) {
        goto error;
    }
    return 0;

error:
    /* m_clear releases what was stored */
    return -1;
}

static int
memleak_traverse(PyObject *module, visitproc visit, void *arg)
{
    memleak_state *state = get_state(module);

    Py_VISIT(state->cmalloc_type);
    Py_VISIT(state->pyrawmalloc_type);
    Py_VISIT(state->pymalloc_type);
    return 0;
}

static int
memleak_clear(PyObject *module)
{
    memleak_state *state = get_state(module);

    Py_CLEAR(state->cmalloc_type);
    Py_CLEAR(state->pyrawmalloc_type);
    Py_CLEAR(state->pymalloc_type);
    return 0;
}

static void
memleak_free(void *module)
{
    (void)memleak_clear((PyObject *)module);
}

static PyModuleDef_Slot memleak_slots[] = {
    {Py_mod_exec, memleak_exec},
#if PMT_PY312_PLUS
    /* No process-wide state: every interpreter has its own module. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(memleak_doc,
             "Memory use and leaks on demand, for tests and examples.\n\n"
             "Objects holding a buffer from malloc, PyMem_RawMalloc or "
             "PyMem_Malloc\n(CMalloc, PyRawMalloc, PyMalloc), "
             "reference-count helpers, and pairs\nof functions that leak on "
             "every call (leak_*) or do the same work\nwithout leaking "
             "(no_leak_*).  See docs/cmemleak.md.");

static struct PyModuleDef memleak_module_def = {
    PyModuleDef_HEAD_INIT,          .m_name = "pymemtrace.cMemLeak",
    .m_doc = memleak_doc,           .m_size = sizeof(memleak_state),
    .m_methods = memleak_methods,   .m_slots = memleak_slots,
    .m_traverse = memleak_traverse, .m_clear = memleak_clear,
    .m_free = memleak_free,
};

PyMODINIT_FUNC
PyInit_cMemLeak(void)
{
    return PyModuleDef_Init(&memleak_module_def);
}
