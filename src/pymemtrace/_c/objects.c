/*
 * objects.c - _census(): live objects counted and sized by type.
 *
 * The walk: every object the gc tracks (one gc.get_objects() list, which
 * is skipped itself), then every object the gc does not track that is
 * reachable from them through tp_traverse (str, int, bytes, float, tuples
 * and dicts of atoms, static types, immortal objects on 3.12+), each
 * counted once (a set of addresses).  Three places tp_traverse does not
 * reach are visited by hand: the keys of dicts (dict_traverse visits the
 * values only when every key is a str), and the names and constants of
 * code objects (not a gc type before 3.14).  Objects only C code refers
 * to, and the keys of split (shared-key) instance dicts, are not reached.
 *
 * The census never counts its own bookkeeping: the caller passes the
 * roots of it (ignore), and every object that exists only because of
 * them (all of its references come from objects already known to be
 * bookkeeping, starting at the roots) is left out, with everything it
 * refers to that nothing else does.  That walk runs first, before the
 * gc list adds a reference to every tracked object.
 *
 * Sizes follow sys.getsizeof: __sizeof__ plus the gc header (and on
 * 3.12+ the managed dict and weakref pointers before the object).
 * __sizeof__ is computed in C for the types whose rule is plain
 * (object.__sizeof__, exact str of ASCII, int, list, set, frozenset) and
 * called for the others (dict, type, bytearray, user classes that
 * define it), once per object, outside any tp_traverse.
 *
 * The walk's memory (two address maps, a stack, the type table) comes
 * from the C allocator and is freed before _census returns.  Threads:
 * the caller holds the GIL throughout; no Python code runs in a visit
 * callback (a __sizeof__ call may run Python code, so every object on the
 * stack is held by a strong reference).
 */
#include "objects.h"

#if !PMT_PY311_PLUS
#include <frameobject.h>
#include <longintrepr.h>
#endif
#if PMT_PY311_PLUS && !PMT_PY312_PLUS
/* 3.11 has no PyFrame_GetVar: a frame's locals are read from its
   interpreter frame, as alloc_frames.c reads frames (the one other file
   that defines Py_BUILD_CORE, after Python.h, for this header only). */
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include "internal/pycore_frame.h"
#endif

/* How an object of a type is sized (the type's __sizeof__, decided once
   per type). */
enum {
    SIZE_BASIC, /* object.__sizeof__: basicsize + itemsize * |ob_size| */
    SIZE_STR,   /* exact str: compact ASCII in C, else the call */
    SIZE_INT,   /* exact int or bool */
    SIZE_LIST,  /* exact list: basicsize + allocated slots */
    SIZE_SET,   /* exact set or frozenset: basicsize + table */
    SIZE_CALL,  /* call the type's __sizeof__ */
};

/* The gc header, and (3.12+) the managed dict and weakref pointers, that
   sys.getsizeof adds in front of an object of a gc type. */
#define GC_HEAD_SIZE (2 * sizeof(void *))

typedef struct {
    PyObject *type;    /* strong reference */
    PyObject *sizeof_; /* the type's __sizeof__ (SIZE_CALL), strong */
    int mode;          /* SIZE_* */
    size_t pre;        /* bytes sys.getsizeof adds before the object
                          besides the gc header */
    Py_ssize_t count;  /* objects of the type */
    Py_ssize_t bytes;  /* their sizes */
} type_row;

/* One census.  Every field is touched by the thread that holds the GIL
   and runs _census. */
typedef struct {
    pmt_ptrmap owned; /* bookkeeping: address -> references from it so
                           far, OWNED once all of them are */
    pmt_ptrmap seen;  /* untracked objects counted */
    pmt_ptrmap types; /* type address -> index in rows */
    type_row *rows;   /* nrows rows, room for rows_cap */
    size_t nrows;
    size_t rows_cap;
    PyObject **stack; /* objects to visit; strong references in the
                           census walk, borrowed in the ownership walk */
    size_t depth;
    size_t stack_cap;
    PyObject *skip;       /* the gc list, or NULL */
    PyObject *frames;     /* what running frames' locals hold, or NULL */
    PyObject *str_sizeof; /* interned "__sizeof__": the type lookup cache
                             keys on a name's address and keeps the name,
                             so a new str per lookup fills it with copies */
    int failed;           /* a visit ran out of memory */
    size_t peak_memory;   /* most C bytes held at once */
} census_t;

static size_t
census_memory(const census_t *c)
{
    return (c->owned.capacity + c->seen.capacity + c->types.capacity) *
               sizeof(pmt_ptrmap_slot) +
           c->rows_cap * sizeof(type_row) + c->stack_cap * sizeof(PyObject *);
}

static int
stack_push(census_t *c, PyObject *op)
{
    if (c->depth == c->stack_cap) {
        size_t cap = c->stack_cap ? c->stack_cap * 2 : 1024;
        PyObject **stack = PyMem_RawRealloc(c->stack, cap * sizeof(*stack));

        if (stack == NULL) {
            c->failed = 1;
            return -1;
        }
        c->stack = stack;
        c->stack_cap = cap;
    }
    c->stack[c->depth++] = op;
    return 0;
}

/* Referents tp_traverse does not report: a dict's keys, a code object's
   names and constants, a heap type's names, a descriptor's name. */
static int
visit_extra(PyObject *op, visitproc visit, void *arg)
{
    if (PyDict_Check(op)) {
        Py_ssize_t pos = 0;
        PyObject *key;
        PyObject *value;

        /* PyDict_Next runs no Python code and hands out borrowed
           references. */
        while (PyDict_Next(op, &pos, &key, &value)) {
            Py_VISIT(key);
            if (PyDict_CheckExact(op)) {
                Py_VISIT(value);
            }
        }
    }
    else if (PyType_Check(op) &&
             (((PyTypeObject *)op)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        PyHeapTypeObject *heap = (PyHeapTypeObject *)op;

        Py_VISIT(heap->ht_name);
        Py_VISIT(heap->ht_qualname);
    }
    else if (Py_IS_TYPE(op, &PyMethodDescr_Type) ||
             Py_IS_TYPE(op, &PyMemberDescr_Type) ||
             Py_IS_TYPE(op, &PyGetSetDescr_Type) ||
             Py_IS_TYPE(op, &PyWrapperDescr_Type) ||
             Py_IS_TYPE(op, &PyClassMethodDescr_Type)) {
        /* exact types: a subtype check per object would walk its MRO */
        Py_VISIT(PyDescr_NAME(op));
    }
    else if (PyCode_Check(op)) {
        PyCodeObject *code = (PyCodeObject *)op;

        Py_VISIT(code->co_consts);
        Py_VISIT(code->co_names);
        Py_VISIT(code->co_filename);
        Py_VISIT(code->co_name);
#if PMT_PY311_PLUS
        Py_VISIT(code->co_qualname);
        Py_VISIT(code->co_localsplusnames);
#else
        Py_VISIT(code->co_varnames);
#endif
    }
    return 0;
}

int
pmt_visit_referents(PyObject *op, visitproc visit, void *arg)
{
    traverseproc traverse = Py_TYPE(op)->tp_traverse;

    /* An exact dict's values come from PyDict_Next (its tp_traverse
       would report them a second time, or not at all on 3.9 and 3.10
       for some layouts). */
    if (!PyDict_CheckExact(op) && traverse != NULL && PyObject_IS_GC(op)) {
        if (traverse(op, visit, arg) < 0) {
            return -1;
        }
    }
    return visit_extra(op, visit, arg);
}

/* The ownership walk: the owned map, and a stack of borrowed references
   (no Python code runs, so nothing it holds can go). */
typedef struct {
    pmt_ptrmap *owned;
    PyObject **stack;
    size_t depth;
    size_t cap;
} owned_walk;

static int
owned_push(owned_walk *w, PyObject *op)
{
    if (w->depth == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        PyObject **stack = PyMem_RawRealloc(w->stack, cap * sizeof(*stack));

        if (stack == NULL) {
            return -1;
        }
        w->stack = stack;
        w->cap = cap;
    }
    w->stack[w->depth++] = op;
    return 0;
}

static int
owned_visit(PyObject *op, void *arg)
{
    owned_walk *w = arg;
    uint32_t refs = 0;

    if (pmt_ptrmap_get(w->owned, (uintptr_t)op, &refs) && refs == PMT_OWNED) {
        return 0;
    }
    refs++;
    if ((Py_ssize_t)refs >= Py_REFCNT(op)) {
        refs = PMT_OWNED;
    }
    if (pmt_ptrmap_put(w->owned, (uintptr_t)op, refs, NULL) < 0) {
        return -1;
    }
    if (refs == PMT_OWNED && owned_push(w, op) < 0) {
        return -1;
    }
    return 0;
}

int
pmt_mark_owned(pmt_ptrmap *owned, PyObject *ignore)
{
    owned_walk w = {owned, NULL, 0, 0};
    Py_ssize_t i;
    int rc = -1;

    if (pmt_ptrmap_put(owned, (uintptr_t)ignore, PMT_OWNED, NULL) < 0) {
        goto out_free_stack;
    }
    for (i = 0; i < PyTuple_GET_SIZE(ignore); i++) {
        PyObject *root = PyTuple_GET_ITEM(ignore, i);

        if (pmt_ptrmap_put(owned, (uintptr_t)root, PMT_OWNED, NULL) < 0 ||
            owned_push(&w, root) < 0) {
            goto out_free_stack;
        }
    }
    while (w.depth > 0) {
        PyObject *op = w.stack[--w.depth];

        if (pmt_visit_referents(op, owned_visit, &w) < 0) {
            goto out_free_stack;
        }
    }
    rc = 0;

out_free_stack:
    PyMem_RawFree(w.stack);
    if (rc < 0) {
        PyErr_NoMemory();
    }
    return rc;
}

int
pmt_is_owned(const pmt_ptrmap *owned, PyObject *op)
{
    uint32_t refs = 0;

    return pmt_ptrmap_get(owned, (uintptr_t)op, &refs) && refs == PMT_OWNED;
}

static int
is_owned(census_t *c, PyObject *op)
{
    return pmt_is_owned(&c->owned, op);
}

/* The row of op's type, added on first sight; NULL with an exception. */
static type_row *
census_row(census_t *c, PyTypeObject *tp)
{
    uint32_t index = 0;
    type_row *row = NULL;
    PyObject *object_sizeof = NULL;
    PyObject *type_sizeof = NULL;

    if (pmt_ptrmap_get(&c->types, (uintptr_t)tp, &index)) {
        return &c->rows[index];
    }
    if (c->nrows == c->rows_cap) {
        size_t cap = c->rows_cap ? c->rows_cap * 2 : 256;
        type_row *rows = PyMem_RawRealloc(c->rows, cap * sizeof(*rows));

        if (rows == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        c->rows = rows;
        c->rows_cap = cap;
    }
    row = &c->rows[c->nrows];
    row->type = NULL;
    row->sizeof_ = NULL;
    row->count = 0;
    row->bytes = 0;
    row->pre = 0;
#if PMT_PY312_PLUS
    if (tp->tp_flags &
        (Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF)) {
        row->pre += 2 * sizeof(PyObject *);
    }
#elif PMT_PY311_PLUS
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        row->pre += 2 * sizeof(PyObject *);
    }
#endif
    if (tp == &PyUnicode_Type) {
        row->mode = SIZE_STR;
    }
    else if (tp == &PyLong_Type || tp == &PyBool_Type) {
        row->mode = SIZE_INT;
    }
    else if (tp == &PyList_Type) {
        row->mode = SIZE_LIST;
    }
    else if (tp == &PySet_Type || tp == &PyFrozenSet_Type) {
        row->mode = SIZE_SET;
    }
    else {
        object_sizeof =
            PyObject_GetAttr((PyObject *)&PyBaseObject_Type, c->str_sizeof);
        if (object_sizeof == NULL) {
            goto error;
        }
        type_sizeof = PyObject_GetAttr((PyObject *)tp, c->str_sizeof);
        if (type_sizeof == NULL) {
            goto error;
        }
        row->mode = type_sizeof == object_sizeof ? SIZE_BASIC : SIZE_CALL;
    }
    /* SIZE_STR falls back to the call for strings that are not compact
       ASCII. */
    if (row->mode == SIZE_CALL || row->mode == SIZE_STR) {
        if (type_sizeof == NULL) {
            type_sizeof = PyObject_GetAttr((PyObject *)tp, c->str_sizeof);
            if (type_sizeof == NULL) {
                goto error;
            }
        }
        row->sizeof_ = Py_NewRef(type_sizeof);
    }
    if (pmt_ptrmap_put(&c->types, (uintptr_t)tp, (uint32_t)c->nrows, NULL) <
        0) {
        Py_CLEAR(row->sizeof_);
        PyErr_NoMemory();
        goto error;
    }
    row->type = Py_NewRef((PyObject *)tp);
    c->nrows++;
    Py_XDECREF(object_sizeof);
    Py_XDECREF(type_sizeof);
    return row;

error:
    Py_XDECREF(object_sizeof);
    Py_XDECREF(type_sizeof);
    return NULL;
}

/* __sizeof__ of op, without the header; -1 with an exception. */
static Py_ssize_t
object_size(type_row *row, PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    Py_ssize_t size = -1;
    PyObject *result = NULL;

    switch (row->mode) {
    case SIZE_BASIC:
        size = tp->tp_basicsize;
        if (tp->tp_itemsize != 0) {
            Py_ssize_t n = Py_SIZE(op);

            size += (n < 0 ? -n : n) * tp->tp_itemsize;
        }
        return size;
    case SIZE_STR:
        if (PyUnicode_IS_READY(op) && PyUnicode_IS_COMPACT_ASCII(op)
#if !PMT_PY312_PLUS
            && ((PyASCIIObject *)op)->wstr == NULL
#endif
        ) {
            return (Py_ssize_t)sizeof(PyASCIIObject) +
                   PyUnicode_GET_LENGTH(op) + 1;
        }
        break;
    case SIZE_INT: {
#if PMT_PY312_PLUS
        Py_ssize_t digits =
            (Py_ssize_t)(((PyLongObject *)op)->long_value.lv_tag >>
                         _PyLong_NON_SIZE_BITS);

        return (Py_ssize_t)offsetof(PyLongObject, long_value.ob_digit) +
               (digits > 1 ? digits : 1) * (Py_ssize_t)sizeof(digit);
#else
        Py_ssize_t digits = Py_SIZE(op);

        return (Py_ssize_t)offsetof(PyLongObject, ob_digit) +
               (digits < 0 ? -digits : digits) * (Py_ssize_t)sizeof(digit);
#endif
    }
    case SIZE_LIST:
        return tp->tp_basicsize +
               ((PyListObject *)op)->allocated * (Py_ssize_t)sizeof(void *);
    case SIZE_SET: {
        PySetObject *so = (PySetObject *)op;

        size = tp->tp_basicsize;
        if (so->table != so->smalltable) {
            size += (so->mask + 1) * (Py_ssize_t)sizeof(setentry);
        }
        return size;
    }
    default:
        break;
    }
    result = PyObject_CallOneArg(row->sizeof_, op);
    if (result == NULL) {
        return -1;
    }
    size = PyLong_AsSsize_t(result);
    Py_DECREF(result);
    if (size < 0 && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "__sizeof__() should return >= 0");
    }
    return size;
}

static int
census_count(census_t *c, PyObject *op)
{
    type_row *row = census_row(c, Py_TYPE(op));
    Py_ssize_t size;

    if (row == NULL) {
        return -1;
    }
    size = object_size(row, op);
    if (size < 0) {
        /* A __sizeof__ that fails is sys.getsizeof's error too; the
           object is counted with its basic size rather than ending the
           census. */
        PyErr_Clear();
        size = Py_TYPE(op)->tp_basicsize;
    }
    row->count++;
    /* The gc header is per object: a static type is not a gc object. */
    row->bytes += size + (Py_ssize_t)row->pre +
                  (PyObject_IS_GC(op) ? (Py_ssize_t)GC_HEAD_SIZE : 0);
    return 0;
}

static int
seen_visit(PyObject *op, void *arg)
{
    census_t *c = arg;
    int added;

    /* Tracked objects are counted from the gc list. */
    if (PyObject_IS_GC(op) && PyObject_GC_IsTracked(op)) {
        return 0;
    }
    if (is_owned(c, op)) {
        return 0;
    }
    added = pmt_ptrmap_put(&c->seen, (uintptr_t)op, 1, NULL);
    if (added < 0) {
        c->failed = 1;
        return -1;
    }
    if (added == 1) {
        return 0;
    }
    if (stack_push(c, op) < 0) {
        return -1;
    }
    Py_INCREF(op);
    return 0;
}

/* Counts op and what it reaches that the gc does not track. */
static int
census_walk_from(census_t *c, PyObject *op)
{
    if (census_count(c, op) < 0) {
        return -1;
    }
    if (pmt_visit_referents(op, seen_visit, c) < 0) {
        goto nomemory;
    }
    while (c->depth > 0) {
        PyObject *next = c->stack[--c->depth];
        int rc = census_count(c, next);

        if (rc == 0 && pmt_visit_referents(next, seen_visit, c) < 0) {
            Py_DECREF(next);
            goto nomemory;
        }
        Py_DECREF(next);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;

nomemory:
    PyErr_NoMemory();
    return -1;
}

static void
census_fini(census_t *c)
{
    size_t i;

    while (c->depth > 0) {
        PyObject *op = c->stack[--c->depth];

        if (c->skip != NULL) {
            Py_DECREF(op);
        }
    }
    for (i = 0; i < c->nrows; i++) {
        Py_CLEAR(c->rows[i].type);
        Py_CLEAR(c->rows[i].sizeof_);
    }
    PyMem_RawFree(c->rows);
    PyMem_RawFree(c->stack);
    pmt_ptrmap_fini(&c->owned);
    pmt_ptrmap_fini(&c->seen);
    pmt_ptrmap_fini(&c->types);
}

/* [(type, count, bytes), ...] in the order types were met. */
static PyObject *
census_result(census_t *c)
{
    PyObject *rows = PyList_New((Py_ssize_t)c->nrows);
    size_t i;

    if (rows == NULL) {
        return NULL;
    }
    for (i = 0; i < c->nrows; i++) {
        type_row *row = &c->rows[i];
        PyObject *item =
            Py_BuildValue("(Onn)", row->type, row->count, row->bytes);

        if (item == NULL) {
            Py_DECREF(rows);
            return NULL;
        }
        PyList_SET_ITEM(rows, (Py_ssize_t)i, item);
    }
    return rows;
}

/* A running frame's locals are seen by nothing the gc lists (before 3.11
   the frame is not tracked while it runs; from 3.11 it is no object, or
   one whose traverse skips them), so they are read: PyFrame_GetVar on
   3.12+, the interpreter frame's slots on 3.11 (PyFrame_GetLocals there
   would leave an f_locals dict on the frame), f_localsplus before. */
static int
held_append(PyObject *held, PyObject *name, PyObject *value, int named)
{
    PyObject *item = NULL;
    int rc;

    if (!named) {
        return PyList_Append(held, value);
    }
    item = PyTuple_Pack(2, name, value);
    if (item == NULL) {
        return -1;
    }
    rc = PyList_Append(held, item);
    Py_DECREF(item);
    return rc;
}

int
pmt_frame_locals(PyFrameObject *frame, PyObject *held, int named)
{
#if PMT_PY312_PLUS
    PyCodeObject *code = PyFrame_GetCode(frame);
    PyObject *names = code->co_localsplusnames;
    Py_ssize_t i;
    int rc = 0;

    for (i = 0; i < PyTuple_GET_SIZE(names) && rc == 0; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        PyObject *value = PyFrame_GetVar(frame, name);

        if (value == NULL) {
            /* an unbound local: NameError */
            PyErr_Clear();
            continue;
        }
        rc = held_append(held, name, value, named);
        Py_DECREF(value);
    }
    Py_DECREF(code);
    return rc;
#elif PMT_PY311_PLUS
    _PyInterpreterFrame *f = frame->f_frame;
    int i;

    for (i = 0; i < f->f_code->co_nlocalsplus; i++) {
        PyObject *value = f->localsplus[i];

        if (value != NULL &&
            held_append(held,
                        PyTuple_GET_ITEM(f->f_code->co_localsplusnames, i),
                        value, named) < 0) {
            return -1;
        }
    }
    return 0;
#else
    /* A running frame is not tracked (the gc list misses it) until it
       outlives its call.  f_localsplus holds the locals, then the cells,
       then the free variables, named in that order. */
    PyCodeObject *code = frame->f_code;
    PyObject *groups[3] = {code->co_varnames, code->co_cellvars,
                           code->co_freevars};
    Py_ssize_t slot = 0;
    int g;

    for (g = 0; g < 3; g++) {
        Py_ssize_t n = g == 0 ? code->co_nlocals : PyTuple_GET_SIZE(groups[g]);
        Py_ssize_t i;

        for (i = 0; i < n; i++, slot++) {
            PyObject *value = frame->f_localsplus[slot];

            if (value != NULL &&
                held_append(held, PyTuple_GET_ITEM(groups[g], i), value,
                            named) < 0) {
                return -1;
            }
        }
    }
    return 0;
#endif
}

/* What the running frames of every thread hold in their locals, in a new
   list. */
PyObject *
pmt_all_frame_locals(void)
{
    PyObject *get_frames = NULL;
    PyObject *current = NULL;
    PyObject *held = NULL;
    PyObject *top = NULL;
    Py_ssize_t pos = 0;
    PyObject *key;

    held = PyList_New(0);
    if (held == NULL) {
        return NULL;
    }
    /* sys._current_frames from the sys module's dict */
    get_frames = Py_XNewRef(PySys_GetObject("_current_frames"));
    if (get_frames == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lost sys._current_frames");
        goto error;
    }
    current = PyObject_CallNoArgs(get_frames);
    if (current == NULL) {
        goto error;
    }
    if (!PyDict_Check(current)) {
        PyErr_SetString(PyExc_TypeError,
                        "sys._current_frames() returned no dict");
        goto error;
    }
    while (PyDict_Next(current, &pos, &key, &top)) {
        PyFrameObject *frame = NULL;

        if (!PyFrame_Check(top)) {
            continue;
        }
        frame = (PyFrameObject *)Py_NewRef(top);
        while (frame != NULL) {
            PyFrameObject *back = NULL;

            if (pmt_frame_locals(frame, held, 0) < 0) {
                Py_DECREF(frame);
                goto error;
            }
            back = PyFrame_GetBack(frame);
            Py_DECREF(frame);
            frame = back;
        }
    }
    Py_DECREF(current);
    Py_DECREF(get_frames);
    return held;

error:
    Py_XDECREF(held);
    Py_XDECREF(current);
    Py_XDECREF(get_frames);
    return NULL;
}

PyDoc_STRVAR(
    census_doc,
    "_census(ignore) -> ([(type, count, bytes), ...], memory)\n"
    "\n"
    "Live objects by type: every object the gc tracks and every object it\n"
    "does not track that they reach, each once, sized as sys.getsizeof\n"
    "sizes it.  The tuple ignore, its items and the objects that exist only\n"
    "because of them are left out.  memory is the most bytes the walk held\n"
    "(freed on return).");

static PyObject *
census(PyObject *module, PyObject *ignore)
{
    census_t c;
    PyObject *gc = NULL;
    PyObject *name = NULL;
    PyObject *objects = NULL;
    PyObject *rows = NULL;
    PyObject *result = NULL;
    Py_ssize_t i;

    memset(&c, 0, sizeof(c));
    if (!PyTuple_Check(ignore)) {
        PyErr_SetString(PyExc_TypeError, "_census() argument must be a tuple");
        return NULL;
    }
    if (pmt_ptrmap_init(&c.owned, 64, 0) ||
        pmt_ptrmap_init(&c.seen, 1024, 0) ||
        pmt_ptrmap_init(&c.types, 256, 0)) {
        PyErr_NoMemory();
        goto error;
    }
    c.str_sizeof = PyUnicode_InternFromString("__sizeof__");
    if (c.str_sizeof == NULL) {
        goto error;
    }
    if (pmt_mark_owned(&c.owned, ignore) < 0) {
        goto error;
    }
    c.frames = pmt_all_frame_locals();
    if (c.frames == NULL) {
        goto error;
    }
    gc = PyImport_ImportModule("gc");
    if (gc == NULL) {
        goto error;
    }
    /* An interned name: the type lookup cache keys on the name's address
       and keeps it, so a new str per call would take a new slot each. */
    name = PyUnicode_InternFromString("get_objects");
    if (name == NULL) {
        goto error;
    }
    objects = PyObject_CallMethodNoArgs(gc, name);
    if (objects == NULL) {
        goto error;
    }
    if (!PyList_Check(objects)) {
        PyErr_SetString(PyExc_TypeError, "gc.get_objects() returned no list");
        goto error;
    }
    c.skip = objects;
    /* The list holds every object in it while __sizeof__ calls may run
       Python code; one added during the walk is not in it. */
    for (i = 0; i < PyList_GET_SIZE(objects); i++) {
        PyObject *op = PyList_GET_ITEM(objects, i);

        if (op == objects || op == c.frames || is_owned(&c, op)) {
            continue;
        }
        Py_INCREF(op);
        if (census_walk_from(&c, op) < 0) {
            Py_DECREF(op);
            goto error;
        }
        Py_DECREF(op);
    }
    /* Locals the gc does not see (3.11+): the untracked ones among them
       are counted here, with what they reach. */
    for (i = 0; i < PyList_GET_SIZE(c.frames); i++) {
        PyObject *op = PyList_GET_ITEM(c.frames, i);
        int added;

        if ((PyObject_IS_GC(op) && PyObject_GC_IsTracked(op)) ||
            is_owned(&c, op)) {
            continue;
        }
        added = pmt_ptrmap_put(&c.seen, (uintptr_t)op, 1, NULL);
        if (added < 0) {
            PyErr_NoMemory();
            goto error;
        }
        if (added == 0) {
            Py_INCREF(op);
            if (census_walk_from(&c, op) < 0) {
                Py_DECREF(op);
                goto error;
            }
            Py_DECREF(op);
        }
    }
    c.peak_memory = census_memory(&c);
    Py_CLEAR(objects);
    rows = census_result(&c);
    if (rows == NULL) {
        goto error;
    }
    result = Py_BuildValue("(Nn)", rows, (Py_ssize_t)c.peak_memory);
    rows = NULL;

error:
    census_fini(&c);
    Py_XDECREF(rows);
    Py_XDECREF(objects);
    Py_XDECREF(c.frames);
    Py_XDECREF(c.str_sizeof);
    Py_XDECREF(name);
    Py_XDECREF(gc);
    return result;
}

static PyMethodDef objects_methods[] = {
    {"_census", census, METH_O, census_doc},
    {NULL, NULL, 0, NULL},
};

int
pmt_objects_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, objects_methods);
}
