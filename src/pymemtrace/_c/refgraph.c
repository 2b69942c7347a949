/*
 * refgraph.c - the reference graph: who refers to an object, and what
 * refers to it that no object knows of.
 *
 * Two walks, both over what objects.c's census reaches (the gc list, the
 * untracked objects reached from it through tp_traverse and the
 * referents tp_traverse misses, the locals of the running frames):
 *
 * - the breadth-first search (_backref_paths): from roots given in
 *   phases (modules and classes first, then the locals of frames), each
 *   phase run to the end before the next starts, so a chain from a module
 *   wins over a shorter one from a frame; then, if targets remain, from
 *   the objects that only C code refers to.  Each reached object keeps its
 *   parent, so a target's chain is read back from it.
 *
 * - the count of known referrers (heap_count): for every object, the
 *   references to it from objects (tracked, and untracked reached) and
 *   from frames.  Its reference count less these is what C code holds
 *   (the external references): the roots "held only by C code", the
 *   objects nothing refers to (_leaking_objects), and the snapshots of
 *   _external_refs whose growth across calls is a reference leak.
 *
 * The tool's own bookkeeping is never a root, an edge, or a referrer: the
 * caller passes the roots of it (ignore, marked with everything that
 * exists only because of them, as the census does) and objects to skip
 * without that marking (exclude: the tool's own frames, whose callers
 * must stay visible).
 *
 * Memory: address maps and arrays from the C allocator, freed before each
 * function returns.  Threads: the caller holds the GIL throughout.  No
 * Python code runs during a walk (no visit callback allocates a Python
 * object); where Python code may run (gc.get_objects, building results),
 * every object the walk still needs is held by a strong reference.
 */
#include "objects.h"

#if !PMT_PY311_PLUS
#include <frameobject.h> /* PyFrame_Check */
#endif

/* A reached object in the search.  Nodes are kept in the order they were
   reached, which is the queue of the breadth-first search. */
typedef struct {
    PyObject *obj;   /* strong reference */
    uint32_t parent; /* index of the node it was reached from, or NO_NODE */
    uint32_t depth;  /* edges from its root */
    uint32_t root;   /* its root: phase << ROOT_SHIFT | index in phase */
} node_t;

#define NO_NODE UINT32_MAX
#define ROOT_SHIFT 28
#define ROOT_INDEX_MASK ((1u << ROOT_SHIFT) - 1)

/* The count of known referrers per address (low bits), and whether an
   untracked object was traversed (so each is traversed once). */
#define REFS_MASK 0x7FFFFFFFu
#define TRAVERSED 0x80000000u

/* One walk.  Every field is touched by the thread holding the GIL. */
typedef struct {
    pmt_ptrmap owned;   /* the tool's bookkeeping and exclusions */
    pmt_ptrmap refs;    /* address -> known references | TRAVERSED */
    pmt_ptrmap index;   /* search: address -> node index */
    pmt_ptrmap targets; /* address -> target index */
    node_t *nodes;      /* search: nnodes reached, room for nodes_cap */
    size_t nnodes;
    size_t nodes_cap;
    PyObject **stack; /* count: untracked objects to traverse, borrowed */
    size_t depth;
    size_t stack_cap;
    PyObject *objects; /* gc.get_objects(), or NULL before heap_count */
    PyObject *frames;  /* pmt_all_frame_locals(), or NULL */
    uint32_t current;  /* search: the node being expanded */
    uint32_t *found;   /* per target: node index, or NO_NODE */
    size_t remaining;  /* targets not reached yet */
    size_t max_depth;  /* edges a chain may have */
    PyObject *parent;  /* referrers: the object being traversed */
    PyObject **edges;  /* referrers: (parent, target index) pairs; the
                          parents are strong references */
    size_t nedges;
    size_t edges_cap;
    int want_edges; /* referrers: record edges to targets */
    int failed;     /* a visit ran out of memory */
} walk_t;

static int
walk_init(walk_t *w, PyObject *args, PyObject *ignore, PyObject *exclude)
{
    Py_ssize_t i;

    memset(w, 0, sizeof(*w));
    if (!PyTuple_Check(ignore) || !PyTuple_Check(exclude)) {
        PyErr_SetString(PyExc_TypeError, "ignore and exclude must be tuples");
        return -1;
    }
    if (pmt_ptrmap_init(&w->owned, 64, 0) ||
        pmt_ptrmap_init(&w->refs, 1024, 0) ||
        pmt_ptrmap_init(&w->index, 1024, 0) ||
        pmt_ptrmap_init(&w->targets, 16, 0)) {
        PyErr_NoMemory();
        return -1;
    }
    if (pmt_mark_owned(&w->owned, ignore) < 0) {
        return -1;
    }
    /* Excluded objects are skipped, not what they refer to: a frame of
       the tool refers to its caller's frame.  So are the tuples that
       carry the arguments, which only this call holds. */
    if (pmt_ptrmap_put(&w->owned, (uintptr_t)exclude, PMT_OWNED, NULL) < 0 ||
        pmt_ptrmap_put(&w->owned, (uintptr_t)args, PMT_OWNED, NULL) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < PyTuple_GET_SIZE(exclude); i++) {
        if (pmt_ptrmap_put(&w->owned, (uintptr_t)PyTuple_GET_ITEM(exclude, i),
                           PMT_OWNED, NULL) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static void
walk_fini(walk_t *w)
{
    size_t i;

    for (i = 0; i < w->nnodes; i++) {
        Py_DECREF(w->nodes[i].obj);
    }
    for (i = 0; i < w->nedges; i++) {
        Py_DECREF(w->edges[2 * i]);
    }
    PyMem_RawFree(w->nodes);
    PyMem_RawFree(w->stack);
    PyMem_RawFree(w->found);
    PyMem_RawFree(w->edges);
    pmt_ptrmap_fini(&w->owned);
    pmt_ptrmap_fini(&w->refs);
    pmt_ptrmap_fini(&w->index);
    pmt_ptrmap_fini(&w->targets);
    Py_CLEAR(w->objects);
    Py_CLEAR(w->frames);
}

static int
is_tracked(PyObject *op)
{
    return PyObject_IS_GC(op) && PyObject_GC_IsTracked(op);
}

static int
is_immortal(PyObject *op)
{
#if PMT_PY312_PLUS
    return _Py_IsImmortal(op);
#else
    (void)op;
    return 0;
#endif
}

static int
walk_skips(walk_t *w, PyObject *op)
{
    return op == w->objects || op == w->frames || pmt_is_owned(&w->owned, op);
}

/* ------------------------------------------------------------------ */
/* The count of known referrers                                        */

static int
stack_push(walk_t *w, PyObject *op)
{
    if (w->depth == w->stack_cap) {
        size_t cap = w->stack_cap ? w->stack_cap * 2 : 1024;
        PyObject **stack = PyMem_RawRealloc(w->stack, cap * sizeof(*stack));

        if (stack == NULL) {
            w->failed = 1;
            return -1;
        }
        w->stack = stack;
        w->stack_cap = cap;
    }
    w->stack[w->depth++] = op;
    return 0;
}

/* Adds n references to op; an untracked object is queued for traversal
   the first time (tracked ones are traversed from the gc list). */
static int
count_refs(walk_t *w, PyObject *op, uint32_t n)
{
    uint32_t value = 0;

    (void)pmt_ptrmap_get(&w->refs, (uintptr_t)op, &value);
    value = (value & TRAVERSED) | (((value & REFS_MASK) + n) & REFS_MASK);
    if (!(value & TRAVERSED) && !is_tracked(op) && !walk_skips(w, op)) {
        value |= TRAVERSED;
        if (stack_push(w, op) < 0) {
            return -1;
        }
    }
    if (pmt_ptrmap_put(&w->refs, (uintptr_t)op, value, NULL) < 0) {
        w->failed = 1;
        return -1;
    }
    return 0;
}

static int
record_edge(walk_t *w, PyObject *target)
{
    uint32_t ti = 0;

    if (w->parent == NULL ||
        !pmt_ptrmap_get(&w->targets, (uintptr_t)target, &ti)) {
        return 0;
    }
    if (w->nedges == w->edges_cap) {
        size_t cap = w->edges_cap ? w->edges_cap * 2 : 64;
        PyObject **edges =
            PyMem_RawRealloc(w->edges, 2 * cap * sizeof(*edges));

        if (edges == NULL) {
            w->failed = 1;
            return -1;
        }
        w->edges = edges;
        w->edges_cap = cap;
    }
    /* A strong reference to the referrer (Py_INCREF allocates nothing);
       the target index is stored in the pointer-sized slot after it. */
    w->edges[2 * w->nedges] = Py_NewRef(w->parent);
    w->edges[2 * w->nedges + 1] = (PyObject *)(uintptr_t)ti;
    w->nedges++;
    return 0;
}

static int
count_visit(PyObject *op, void *arg)
{
    walk_t *w = arg;

    if (w->want_edges && record_edge(w, op) < 0) {
        return -1;
    }
    return count_refs(w, op, 1);
}

static int
count_drain(walk_t *w)
{
    while (w->depth > 0) {
        PyObject *op = w->stack[--w->depth];

        w->parent = op;
        if (pmt_visit_referents(op, count_visit, w) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Takes the frames' locals and the gc list, once per walk (Python code
   may run: a collection). */
static int
heap_lists(walk_t *w)
{
    PyObject *gc = NULL;
    PyObject *name = NULL;
    int rc = -1;

    if (w->objects != NULL) {
        return 0;
    }
    /* The frames list first, so that the gc list has it (and the walk
       knows to skip it). */
    w->frames = pmt_all_frame_locals();
    if (w->frames == NULL) {
        goto error;
    }
    gc = PyImport_ImportModule("gc");
    if (gc == NULL) {
        goto error;
    }
    /* interned, as objects.c's census does */
    name = PyUnicode_InternFromString("get_objects");
    if (name == NULL) {
        goto error;
    }
    w->objects = PyObject_CallMethodNoArgs(gc, name);
    if (w->objects == NULL) {
        goto error;
    }
    if (!PyList_Check(w->objects)) {
        PyErr_SetString(PyExc_TypeError, "gc.get_objects() returned no list");
        Py_CLEAR(w->objects);
        goto error;
    }
    rc = 0;

error:
    Py_XDECREF(name);
    Py_XDECREF(gc);
    return rc;
}

/* Counts every known reference: from the tracked objects (not the
   tool's), from the untracked objects they reach, and from frames.  0, or
   -1 with an exception. */
static int
heap_count(walk_t *w)
{
    Py_ssize_t i;

    if (heap_lists(w) < 0) {
        return -1;
    }
    for (i = 0; i < PyList_GET_SIZE(w->objects); i++) {
        PyObject *op = PyList_GET_ITEM(w->objects, i);

        if (walk_skips(w, op)) {
            continue;
        }
        w->parent = op;
        if (pmt_visit_referents(op, count_visit, w) < 0 ||
            count_drain(w) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    /* Each local is one reference from its frame and one from the frames
       list. */
    w->parent = NULL;
    for (i = 0; i < PyList_GET_SIZE(w->frames); i++) {
        if (count_refs(w, PyList_GET_ITEM(w->frames, i), 2) < 0 ||
            count_drain(w) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static uint32_t
known_refs(walk_t *w, PyObject *op)
{
    uint32_t value = 0;

    (void)pmt_ptrmap_get(&w->refs, (uintptr_t)op, &value);
    return value & REFS_MASK;
}

/* References to op that no known referrer accounts for.  The gc list
   holds one to every tracked object, and a search node one more. */
static Py_ssize_t
external_refs(walk_t *w, PyObject *op)
{
    uint32_t node = 0;
    Py_ssize_t n = Py_REFCNT(op) - (Py_ssize_t)known_refs(w, op);

    if (is_tracked(op)) {
        n--;
    }
    if (pmt_ptrmap_get(&w->index, (uintptr_t)op, &node)) {
        n--;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* The search                                                          */

static int
add_node(walk_t *w, PyObject *op, uint32_t parent, uint32_t depth,
         uint32_t root)
{
    uint32_t ti = 0;
    uint32_t index = (uint32_t)w->nnodes;

    if (w->nnodes == w->nodes_cap) {
        size_t cap = w->nodes_cap ? w->nodes_cap * 2 : 1024;
        node_t *nodes = PyMem_RawRealloc(w->nodes, cap * sizeof(*nodes));

        if (nodes == NULL || cap >= NO_NODE) {
            if (nodes != NULL) {
                w->nodes = nodes;
            }
            w->failed = 1;
            return -1;
        }
        w->nodes = nodes;
        w->nodes_cap = cap;
    }
    if (pmt_ptrmap_put(&w->index, (uintptr_t)op, index, NULL) < 0) {
        w->failed = 1;
        return -1;
    }
    w->nodes[index].obj = Py_NewRef(op);
    w->nodes[index].parent = parent;
    w->nodes[index].depth = depth;
    w->nodes[index].root = root;
    w->nnodes++;
    if (pmt_ptrmap_get(&w->targets, (uintptr_t)op, &ti) &&
        w->found[ti] == NO_NODE) {
        w->found[ti] = index;
        w->remaining--;
    }
    return 0;
}

static int
is_target(walk_t *w, PyObject *op)
{
    uint32_t ti = 0;

    return pmt_ptrmap_get(&w->targets, (uintptr_t)op, &ti);
}

static int
search_visit(PyObject *op, void *arg)
{
    walk_t *w = arg;
    uint32_t node = 0;
    const node_t *from;

    if (pmt_ptrmap_get(&w->index, (uintptr_t)op, &node)) {
        return 0;
    }
    if (walk_skips(w, op) && !is_target(w, op)) {
        return 0;
    }
    from = &w->nodes[w->current];
    return add_node(w, op, w->current, from->depth + 1, from->root);
}

static int
search_seed(walk_t *w, PyObject *op, uint32_t phase, size_t index)
{
    uint32_t node = 0;

    if (pmt_ptrmap_get(&w->index, (uintptr_t)op, &node)) {
        return 0;
    }
    if (walk_skips(w, op) && !is_target(w, op)) {
        return 0;
    }
    return add_node(w, op, NO_NODE, 0,
                    phase << ROOT_SHIFT | ((uint32_t)index & ROOT_INDEX_MASK));
}

/* Expands the queue until every target is reached or nothing is left. */
static int
search_run(walk_t *w, size_t *head)
{
    while (*head < w->nnodes && w->remaining > 0) {
        uint32_t current = (uint32_t)(*head)++;
        PyObject *op = w->nodes[current].obj;

        if (w->nodes[current].depth >= w->max_depth) {
            continue;
        }
        w->current = current;
        if (pmt_visit_referents(op, search_visit, w) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* The objects only C code refers to, as the last roots: first the ones no
   object refers to (pass 0), then (pass 1) the ones whose referrers were
   not reached from those either (a cycle that C code holds).  Each pass
   is searched before the next is seeded, so an object inside a container
   only C code holds is reached through it. */
static int
search_seed_c(walk_t *w, int pass)
{
    Py_ssize_t n = PyList_GET_SIZE(w->objects);
    Py_ssize_t i;

    for (i = 0; i < n; i++) {
        PyObject *op = PyList_GET_ITEM(w->objects, i);
        uint32_t node = 0;
        int referred;

        if (pmt_ptrmap_get(&w->index, (uintptr_t)op, &node) ||
            walk_skips(w, op) || is_immortal(op)) {
            continue;
        }
        referred = known_refs(w, op) > 0;
        if (referred != pass || external_refs(w, op) <= 0) {
            continue;
        }
        if (search_seed(w, op, 3, (size_t)i) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* Classes no module reaches (defined in a function, say) are roots too,
   after the modules: a class attribute that grows is held by its class. */
static int
search_seed_classes(walk_t *w)
{
    Py_ssize_t i;

    for (i = 0; i < PyList_GET_SIZE(w->objects); i++) {
        PyObject *op = PyList_GET_ITEM(w->objects, i);

        if (PyType_Check(op) &&
            (((PyTypeObject *)op)->tp_flags & Py_TPFLAGS_HEAPTYPE) &&
            search_seed(w, op, 1, (size_t)i) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static int
seed_list(walk_t *w, PyObject *roots, uint32_t phase)
{
    Py_ssize_t i;

    for (i = 0; i < PyList_GET_SIZE(roots); i++) {
        if (search_seed(w, PyList_GET_ITEM(roots, i), phase, (size_t)i) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static int
targets_init(walk_t *w, PyObject *targets)
{
    Py_ssize_t n = PyTuple_GET_SIZE(targets);
    Py_ssize_t i;

    w->found = PyMem_RawMalloc((n ? n : 1) * sizeof(*w->found));
    if (w->found == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++) {
        w->found[i] = NO_NODE;
        if (pmt_ptrmap_put(&w->targets,
                           (uintptr_t)PyTuple_GET_ITEM(targets, i),
                           (uint32_t)i, NULL) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    /* A target given twice is one key. */
    w->remaining = w->targets.count;
    return 0;
}

/* (phase, root index, (root, ..., target)) of a reached target. */
static PyObject *
path_of(walk_t *w, uint32_t index)
{
    node_t *node = &w->nodes[index];
    uint32_t root = node->root;
    Py_ssize_t length = (Py_ssize_t)node->depth + 1;
    PyObject *path = PyTuple_New(length);
    Py_ssize_t i;

    if (path == NULL) {
        return NULL;
    }
    for (i = length - 1; i >= 0; i--) {
        PyTuple_SET_ITEM(path, i, Py_NewRef(w->nodes[index].obj));
        index = w->nodes[index].parent;
    }
    return Py_BuildValue("(IIN)", root >> ROOT_SHIFT, root & ROOT_INDEX_MASK,
                         path);
}

PyDoc_STRVAR(
    backref_paths_doc,
    "_backref_paths(targets, modules, locals, ignore, exclude, max_depth,\n"
    "               c_roots) -> [None | (phase, root_index, path), ...]\n"
    "\n"
    "The shortest chain of references to each target (a tuple), from the\n"
    "roots in the list modules (phase 1; then the classes no module\n"
    "reaches), else from the values in the list\n"
    "locals (phase 2), else (c_roots) from the objects only C code refers\n"
    "to (phase 3).  path is (root, ..., target); root_index is the root's\n"
    "index in its phase's list (classes, phase 3: in the gc list).\n"
    "max_depth < 0: no limit.  ignore and exclude as for _census.");

static PyObject *
backref_paths(PyObject *module, PyObject *args)
{
    walk_t w;
    PyObject *targets;
    PyObject *modules;
    PyObject *locals;
    PyObject *ignore;
    PyObject *exclude;
    Py_ssize_t max_depth;
    int c_roots;
    PyObject *result = NULL;
    size_t head = 0;
    Py_ssize_t i;

    memset(&w, 0, sizeof(w));
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!np:_backref_paths", &PyTuple_Type,
                          &targets, &PyList_Type, &modules, &PyList_Type,
                          &locals, &PyTuple_Type, &ignore, &PyTuple_Type,
                          &exclude, &max_depth, &c_roots)) {
        return NULL;
    }
    if (walk_init(&w, args, ignore, exclude) < 0 ||
        targets_init(&w, targets) < 0) {
        goto error;
    }
    w.max_depth = max_depth < 0 ? SIZE_MAX : (size_t)max_depth;
    if (seed_list(&w, modules, 1) < 0 || search_run(&w, &head) < 0) {
        goto error;
    }
    /* Python code may run in gc.get_objects (a collection): the nodes
       hold their objects. */
    if (w.remaining > 0 &&
        (heap_lists(&w) < 0 || search_seed_classes(&w) < 0 ||
         search_run(&w, &head) < 0)) {
        goto error;
    }
    if (w.remaining > 0 &&
        (seed_list(&w, locals, 2) < 0 || search_run(&w, &head) < 0)) {
        goto error;
    }
    if (w.remaining > 0 && c_roots) {
        if (heap_count(&w) < 0 || search_seed_c(&w, 0) < 0 ||
            search_run(&w, &head) < 0) {
            goto error;
        }
        if (w.remaining > 0 &&
            (search_seed_c(&w, 1) < 0 || search_run(&w, &head) < 0)) {
            goto error;
        }
    }
    result = PyList_New(PyTuple_GET_SIZE(targets));
    if (result == NULL) {
        goto error;
    }
    for (i = 0; i < PyTuple_GET_SIZE(targets); i++) {
        uint32_t ti = 0;
        PyObject *item;

        (void)pmt_ptrmap_get(&w.targets,
                             (uintptr_t)PyTuple_GET_ITEM(targets, i), &ti);
        if (w.found[ti] == NO_NODE) {
            item = Py_NewRef(Py_None);
        }
        else {
            item = path_of(&w, w.found[ti]);
            if (item == NULL) {
                Py_CLEAR(result);
                goto error;
            }
        }
        PyList_SET_ITEM(result, i, item);
    }

error:
    walk_fini(&w);
    return result;
}

/* ------------------------------------------------------------------ */
/* Objects nothing refers to, external references, referrers            */

PyDoc_STRVAR(leaking_objects_doc,
             "_leaking_objects(ignore, exclude) -> list\n"
             "\n"
             "The tracked objects that no object (tracked, or untracked and\n"
             "reached) and no frame refers to, though something holds them:\n"
             "C code.  ignore and exclude as for _census.");

static PyObject *
leaking_objects(PyObject *module, PyObject *args)
{
    walk_t w;
    PyObject *ignore;
    PyObject *exclude;
    PyObject *result = NULL;
    PyObject **found = NULL;
    size_t nfound = 0;
    Py_ssize_t i;

    memset(&w, 0, sizeof(w));
    if (!PyArg_ParseTuple(args, "O!O!:_leaking_objects", &PyTuple_Type,
                          &ignore, &PyTuple_Type, &exclude)) {
        return NULL;
    }
    if (walk_init(&w, args, ignore, exclude) < 0 || heap_count(&w) < 0) {
        goto error;
    }
    found = PyMem_RawMalloc(((size_t)PyList_GET_SIZE(w.objects) + 1) *
                            sizeof(*found));
    if (found == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < PyList_GET_SIZE(w.objects); i++) {
        PyObject *op = PyList_GET_ITEM(w.objects, i);

        if (!walk_skips(&w, op) && known_refs(&w, op) == 0 &&
            external_refs(&w, op) > 0) {
            found[nfound++] = op;
        }
    }
    /* The gc list holds them while the result is built. */
    result = PyList_New((Py_ssize_t)nfound);
    if (result == NULL) {
        goto error;
    }
    for (i = 0; i < (Py_ssize_t)nfound; i++) {
        PyList_SET_ITEM(result, i, Py_NewRef(found[i]));
    }

error:
    PyMem_RawFree(found);
    walk_fini(&w);
    return result;
}

/* One object in an _external_refs snapshot. */
typedef struct {
    uint64_t addr;    /* its address */
    uint64_t type;    /* its type's address */
    int64_t external; /* references no known referrer accounts for, or
                          IMMORTAL */
} ref_record;

#define IMMORTAL INT64_MIN

typedef struct {
    walk_t *w;
    ref_record *records;
    size_t n;
} record_walk;

static void
record_untracked(uintptr_t key, uint32_t value, void *arg)
{
    record_walk *r = arg;
    PyObject *op = (PyObject *)key;
    ref_record *rec;

    /* Only untracked objects are traversed through the map; the tracked
       ones come from the gc list. */
    if (!(value & TRAVERSED)) {
        return;
    }
    rec = &r->records[r->n++];
    rec->addr = (uint64_t)key;
    rec->type = (uint64_t)(uintptr_t)Py_TYPE(op);
    rec->external =
        is_immortal(op) ? IMMORTAL : (int64_t)external_refs(r->w, op);
}

PyDoc_STRVAR(
    external_refs_doc,
    "_external_refs(ignore, exclude) -> bytes\n"
    "\n"
    "For every object the walk reaches, its address, its type's address and\n"
    "its reference count less the references of known referrers, as\n"
    "records of three native 64-bit integers (the last INT64_MIN for an\n"
    "immortal object).  ignore and exclude as for _census.");

static PyObject *
external_refs_snapshot(PyObject *module, PyObject *args)
{
    walk_t w;
    PyObject *ignore;
    PyObject *exclude;
    PyObject *result = NULL;
    record_walk r = {NULL, NULL, 0};
    size_t cap;
    Py_ssize_t i;

    memset(&w, 0, sizeof(w));
    if (!PyArg_ParseTuple(args, "O!O!:_external_refs", &PyTuple_Type, &ignore,
                          &PyTuple_Type, &exclude)) {
        return NULL;
    }
    if (walk_init(&w, args, ignore, exclude) < 0 || heap_count(&w) < 0) {
        goto error;
    }
    cap = (size_t)PyList_GET_SIZE(w.objects) + w.refs.count + 1;
    r.w = &w;
    r.records = PyMem_RawMalloc(cap * sizeof(*r.records));
    if (r.records == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < PyList_GET_SIZE(w.objects); i++) {
        PyObject *op = PyList_GET_ITEM(w.objects, i);
        ref_record *rec;

        if (walk_skips(&w, op)) {
            continue;
        }
        rec = &r.records[r.n++];
        rec->addr = (uint64_t)(uintptr_t)op;
        rec->type = (uint64_t)(uintptr_t)Py_TYPE(op);
        rec->external =
            is_immortal(op) ? IMMORTAL : (int64_t)external_refs(&w, op);
    }
    pmt_ptrmap_walk(&w.refs, record_untracked, &r);
    result = PyBytes_FromStringAndSize((const char *)r.records,
                                       (Py_ssize_t)(r.n * sizeof(ref_record)));

error:
    PyMem_RawFree(r.records);
    walk_fini(&w);
    return result;
}

PyDoc_STRVAR(
    refs_grown_doc,
    "_refs_grown(snapshots) -> [(address, type_address, externals), ...]\n"
    "\n"
    "The objects (same address, same type) in every snapshot of the tuple\n"
    "(each from _external_refs, oldest first) whose external references\n"
    "grew from each snapshot to the next (externals: one per snapshot);\n"
    "immortal ones are left out.");

static PyObject *
refs_grown(PyObject *module, PyObject *snapshots)
{
    pmt_ptrmap first;
    int64_t *values = NULL;
    const ref_record *base;
    PyObject *result = NULL;
    Py_ssize_t nsnap;
    size_t n0;
    size_t i;
    Py_ssize_t s;

    memset(&first, 0, sizeof(first));
    if (!PyTuple_Check(snapshots) || PyTuple_GET_SIZE(snapshots) < 2) {
        PyErr_SetString(PyExc_TypeError,
                        "_refs_grown() needs a tuple of 2 or more snapshots");
        return NULL;
    }
    nsnap = PyTuple_GET_SIZE(snapshots);
    for (s = 0; s < nsnap; s++) {
        PyObject *snap = PyTuple_GET_ITEM(snapshots, s);

        if (!PyBytes_Check(snap) ||
            PyBytes_GET_SIZE(snap) % (Py_ssize_t)sizeof(ref_record) != 0) {
            PyErr_SetString(PyExc_ValueError,
                            "not an _external_refs snapshot");
            return NULL;
        }
    }
    base =
        (const ref_record *)PyBytes_AS_STRING(PyTuple_GET_ITEM(snapshots, 0));
    n0 = (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(snapshots, 0)) /
         sizeof(ref_record);
    if (pmt_ptrmap_init(&first, n0 * 2 + 16, 0) != 0) {
        PyErr_NoMemory();
        goto error;
    }
    /* values[i * nsnap + s]: the external references of the first
       snapshot's object i in snapshot s; IMMORTAL when it is absent. */
    values = PyMem_RawMalloc((n0 * (size_t)nsnap + 1) * sizeof(*values));
    if (values == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < n0; i++) {
        size_t s2;

        values[i * (size_t)nsnap] = base[i].external;
        for (s2 = 1; s2 < (size_t)nsnap; s2++) {
            values[i * (size_t)nsnap + s2] = IMMORTAL;
        }
        if (base[i].external != IMMORTAL &&
            pmt_ptrmap_put(&first, (uintptr_t)base[i].addr, (uint32_t)i,
                           NULL) < 0) {
            PyErr_NoMemory();
            goto error;
        }
    }
    for (s = 1; s < nsnap; s++) {
        PyObject *snap = PyTuple_GET_ITEM(snapshots, s);
        const ref_record *recs = (const ref_record *)PyBytes_AS_STRING(snap);
        size_t n = (size_t)PyBytes_GET_SIZE(snap) / sizeof(ref_record);

        for (i = 0; i < n; i++) {
            uint32_t j = 0;

            if (pmt_ptrmap_get(&first, (uintptr_t)recs[i].addr, &j) &&
                base[j].type == recs[i].type) {
                values[(size_t)j * (size_t)nsnap + (size_t)s] =
                    recs[i].external;
            }
        }
    }
    result = PyList_New(0);
    if (result == NULL) {
        goto error;
    }
    for (i = 0; i < n0; i++) {
        const int64_t *v = &values[i * (size_t)nsnap];
        PyObject *row;
        PyObject *exts;
        int grew = v[0] != IMMORTAL;

        for (s = 1; s < nsnap && grew; s++) {
            grew = v[s] != IMMORTAL && v[s] > v[s - 1];
        }
        if (!grew) {
            continue;
        }
        exts = PyTuple_New(nsnap);
        if (exts == NULL) {
            Py_CLEAR(result);
            goto error;
        }
        for (s = 0; s < nsnap; s++) {
            PyObject *value = PyLong_FromLongLong(v[s]);

            if (value == NULL) {
                Py_DECREF(exts);
                Py_CLEAR(result);
                goto error;
            }
            PyTuple_SET_ITEM(exts, s, value);
        }
        row = Py_BuildValue("(KKN)", (unsigned long long)base[i].addr,
                            (unsigned long long)base[i].type, exts);
        if (row == NULL || PyList_Append(result, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(result);
            goto error;
        }
        Py_DECREF(row);
    }

error:
    PyMem_RawFree(values);
    pmt_ptrmap_fini(&first);
    return result;
}

typedef struct {
    walk_t *w;
    pmt_ptrmap *wanted;
    PyObject **found;
    size_t n;
} find_walk;

static void
find_untracked(uintptr_t key, uint32_t value, void *arg)
{
    find_walk *f = arg;
    uint32_t unused = 0;

    if ((value & TRAVERSED) && pmt_ptrmap_get(f->wanted, key, &unused)) {
        /* Py_INCREF allocates nothing: the walk may take it here. */
        f->found[f->n++] = Py_NewRef((PyObject *)key);
    }
}

PyDoc_STRVAR(objects_at_doc,
             "_objects_at(addresses, ignore, exclude) -> {address: object}\n"
             "\n"
             "The live objects, among those the walk reaches, at the given\n"
             "addresses (a tuple of ints).");

static PyObject *
objects_at(PyObject *module, PyObject *args)
{
    walk_t w;
    pmt_ptrmap wanted;
    PyObject *addresses;
    PyObject *ignore;
    PyObject *exclude;
    PyObject *result = NULL;
    find_walk f = {NULL, NULL, NULL, 0};
    Py_ssize_t i;
    size_t k;

    memset(&w, 0, sizeof(w));
    memset(&wanted, 0, sizeof(wanted));
    if (!PyArg_ParseTuple(args, "O!O!O!:_objects_at", &PyTuple_Type,
                          &addresses, &PyTuple_Type, &ignore, &PyTuple_Type,
                          &exclude)) {
        return NULL;
    }
    if (pmt_ptrmap_init(&wanted, 16, 0) != 0) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < PyTuple_GET_SIZE(addresses); i++) {
        void *addr = PyLong_AsVoidPtr(PyTuple_GET_ITEM(addresses, i));

        if (addr == NULL && PyErr_Occurred()) {
            goto error;
        }
        if (pmt_ptrmap_put(&wanted, (uintptr_t)addr, 1, NULL) < 0) {
            PyErr_NoMemory();
            goto error;
        }
    }
    if (walk_init(&w, args, ignore, exclude) < 0 || heap_count(&w) < 0) {
        goto error;
    }
    f.w = &w;
    f.wanted = &wanted;
    f.found = PyMem_RawMalloc((wanted.count + 1) * sizeof(*f.found));
    if (f.found == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < PyList_GET_SIZE(w.objects) && f.n < wanted.count; i++) {
        PyObject *op = PyList_GET_ITEM(w.objects, i);
        uint32_t unused = 0;

        if (!walk_skips(&w, op) &&
            pmt_ptrmap_get(&wanted, (uintptr_t)op, &unused)) {
            f.found[f.n++] = Py_NewRef(op);
        }
    }
    pmt_ptrmap_walk(&w.refs, find_untracked, &f);
    result = PyDict_New();
    if (result == NULL) {
        goto error;
    }
    for (k = 0; k < f.n; k++) {
        PyObject *key = PyLong_FromVoidPtr(f.found[k]);

        if (key == NULL || PyDict_SetItem(result, key, f.found[k]) < 0) {
            Py_XDECREF(key);
            Py_CLEAR(result);
            goto error;
        }
        Py_DECREF(key);
    }

error:
    if (f.found != NULL) {
        for (k = 0; k < f.n; k++) {
            Py_DECREF(f.found[k]);
        }
        PyMem_RawFree(f.found);
    }
    pmt_ptrmap_fini(&wanted);
    walk_fini(&w);
    return result;
}

typedef struct {
    PyObject *type; /* a type, or NULL to match name */
    const char *name;
    PyObject **found;
    size_t n;
} type_walk;

static int
type_matches(type_walk *t, PyObject *op)
{
    if (t->type != NULL) {
        return (PyObject *)Py_TYPE(op) == t->type;
    }
    return strcmp(_PyType_Name(Py_TYPE(op)), t->name) == 0;
}

static void
type_untracked(uintptr_t key, uint32_t value, void *arg)
{
    type_walk *t = arg;

    if ((value & TRAVERSED) && type_matches(t, (PyObject *)key)) {
        /* Py_INCREF allocates nothing: the walk may take it here. */
        t->found[t->n++] = Py_NewRef((PyObject *)key);
    }
}

PyDoc_STRVAR(by_type_doc,
             "_by_type(type_or_name, ignore, exclude) -> list\n"
             "\n"
             "Every live object the walk reaches (tracked or not) whose type\n"
             "is the given type, or whose type's bare name is the given str.");

static PyObject *
by_type(PyObject *module, PyObject *args)
{
    walk_t w;
    PyObject *which;
    PyObject *ignore;
    PyObject *exclude;
    PyObject *result = NULL;
    type_walk t = {NULL, NULL, NULL, 0};
    Py_ssize_t i;
    size_t k;

    memset(&w, 0, sizeof(w));
    if (!PyArg_ParseTuple(args, "OO!O!:_by_type", &which, &PyTuple_Type,
                          &ignore, &PyTuple_Type, &exclude)) {
        return NULL;
    }
    if (PyType_Check(which)) {
        t.type = which;
    }
    else if (PyUnicode_Check(which)) {
        t.name = PyUnicode_AsUTF8(which);
        if (t.name == NULL) {
            return NULL;
        }
    }
    else {
        PyErr_SetString(PyExc_TypeError, "_by_type() needs a type or a str");
        return NULL;
    }
    if (walk_init(&w, args, ignore, exclude) < 0 || heap_count(&w) < 0) {
        goto error;
    }
    t.found = PyMem_RawMalloc(
        ((size_t)PyList_GET_SIZE(w.objects) + w.refs.count + 1) *
        sizeof(*t.found));
    if (t.found == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < PyList_GET_SIZE(w.objects); i++) {
        PyObject *op = PyList_GET_ITEM(w.objects, i);

        if (!walk_skips(&w, op) && type_matches(&t, op)) {
            t.found[t.n++] = Py_NewRef(op);
        }
    }
    pmt_ptrmap_walk(&w.refs, type_untracked, &t);
    result = PyList_New((Py_ssize_t)t.n);
    if (result == NULL) {
        goto error;
    }
    for (k = 0; k < t.n; k++) {
        PyList_SET_ITEM(result, (Py_ssize_t)k, t.found[k]);
    }
    /* the list took the references */
    t.n = 0;

error:
    if (t.found != NULL) {
        for (k = 0; k < t.n; k++) {
            Py_DECREF(t.found[k]);
        }
        PyMem_RawFree(t.found);
    }
    walk_fini(&w);
    return result;
}

PyDoc_STRVAR(referrers_doc,
             "_referrers(targets, ignore, exclude) -> [[referrer, ...], ...]\n"
             "\n"
             "For each target (a tuple), the objects that refer to it (not\n"
             "frames: their locals are read with _frame_locals).");

static PyObject *
referrers(PyObject *module, PyObject *args)
{
    walk_t w;
    PyObject *targets;
    PyObject *ignore;
    PyObject *exclude;
    PyObject *result = NULL;
    Py_ssize_t i;
    size_t k;

    memset(&w, 0, sizeof(w));
    if (!PyArg_ParseTuple(args, "O!O!O!:_referrers", &PyTuple_Type, &targets,
                          &PyTuple_Type, &ignore, &PyTuple_Type, &exclude)) {
        return NULL;
    }
    if (walk_init(&w, args, ignore, exclude) < 0 ||
        targets_init(&w, targets) < 0) {
        goto error;
    }
    w.want_edges = 1;
    if (heap_count(&w) < 0) {
        goto error;
    }
    result = PyList_New(PyTuple_GET_SIZE(targets));
    if (result == NULL) {
        goto error;
    }
    for (i = 0; i < PyTuple_GET_SIZE(targets); i++) {
        PyObject *list = PyList_New(0);

        if (list == NULL) {
            Py_CLEAR(result);
            goto error;
        }
        PyList_SET_ITEM(result, i, list);
    }
    for (k = 0; k < w.nedges; k++) {
        PyObject *parent = w.edges[2 * k];
        uint32_t ti = (uint32_t)(uintptr_t)w.edges[2 * k + 1];

        for (i = 0; i < PyTuple_GET_SIZE(targets); i++) {
            uint32_t tj = 0;

            /* A target given twice gets its referrers under each index. */
            (void)pmt_ptrmap_get(&w.targets,
                                 (uintptr_t)PyTuple_GET_ITEM(targets, i), &tj);
            if (tj == ti &&
                PyList_Append(PyList_GET_ITEM(result, i), parent) < 0) {
                Py_CLEAR(result);
                goto error;
            }
        }
    }

error:
    walk_fini(&w);
    return result;
}

PyDoc_STRVAR(frame_locals_doc,
             "_frame_locals(frame) -> [(name, value), ...]\n"
             "\n"
             "The bound local variables, cells and free variables of a frame\n"
             "(running or not), without making an f_locals dict.");

static PyObject *
frame_locals(PyObject *module, PyObject *frame)
{
    PyObject *held = NULL;

    if (!PyFrame_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "_frame_locals() needs a frame");
        return NULL;
    }
    held = PyList_New(0);
    if (held == NULL) {
        return NULL;
    }
    if (pmt_frame_locals((PyFrameObject *)frame, held, 1) < 0) {
        Py_CLEAR(held);
    }
    return held;
}

PyDoc_STRVAR(is_immortal_doc,
             "_is_immortal(obj) -> bool\n"
             "\n"
             "Whether obj is immortal (3.12+): its reference count never\n"
             "changes, so a reference leak on it cannot be seen (nor harm).");

static PyObject *
is_immortal_py(PyObject *module, PyObject *obj)
{
    return PyBool_FromLong(is_immortal(obj));
}

static PyMethodDef refgraph_methods[] = {
    {"_backref_paths", backref_paths, METH_VARARGS, backref_paths_doc},
    {"_leaking_objects", leaking_objects, METH_VARARGS, leaking_objects_doc},
    {"_external_refs", external_refs_snapshot, METH_VARARGS,
     external_refs_doc},
    {"_refs_grown", refs_grown, METH_O, refs_grown_doc},
    {"_objects_at", objects_at, METH_VARARGS, objects_at_doc},
    {"_referrers", referrers, METH_VARARGS, referrers_doc},
    {"_by_type", by_type, METH_VARARGS, by_type_doc},
    {"_frame_locals", frame_locals, METH_O, frame_locals_doc},
    {"_is_immortal", is_immortal_py, METH_O, is_immortal_doc},
    {NULL, NULL, 0, NULL},
};

int
pmt_refgraph_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, refgraph_methods);
}
