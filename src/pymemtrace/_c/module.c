/*
 * module.c - definition of pymemtrace._native: multi-phase init, module
 * state, and the exec slot that lets each concern add its functions and
 * types (see native.h for the list of files).
 *
 * The hooks are process-wide (a profile function, allocator hooks, a
 * sampler thread), so the module refuses to load in a subinterpreter with
 * its own GIL, as _lsprof does.
 */
#include "native.h"

#include <stdatomic.h>

#define STATE_SLOTS (sizeof(pmt_state) / sizeof(PyObject *))

/* What PyModule_GetState() points to: the PyObject slots first (so
   pmt_get_state() may cast), then what m_clear must not touch. */
typedef struct {
    pmt_state objects;
    int counted; /* this instance is in module_runtime.instances */
} module_memory;

/* The background machinery (samplers, hooks, tracers, allocator hooks) is
   process-wide, shared by every instance of the module (importlib can make
   several); only the last instance to go may shut it down. */
static struct module_runtime {
    atomic_int instances; /* executed, not yet freed instances */
} module_runtime;

static int module_exec_concerns(PyObject *module);

static int
module_exec(PyObject *module)
{
    if (module_exec_concerns(module) < 0) {
        return -1;
    }
    ((module_memory *)PyModule_GetState(module))->counted = 1;
    atomic_fetch_add(&module_runtime.instances, 1);
    return 0;
}

static int
module_exec_concerns(PyObject *module)
{
    /* fork.c's one registration (once per process) comes before any
       concern that can take a lock or start a thread. */
    if (pmt_fork_register() < 0) {
        return -1;
    }
    if (pmt_rss_exec(module) < 0) {
        return -1;
    }
    if (pmt_sampler_exec(module) < 0) {
        return -1;
    }
    if (pmt_tracer_exec(module) < 0) {
        return -1;
    }
    if (pmt_reftrace_exec(module) < 0) {
        return -1;
    }
    if (pmt_alloc_exec(module) < 0) {
        return -1;
    }
    if (pmt_shrinkwatch_exec(module) < 0) {
        return -1;
    }
    if (pmt_objects_exec(module) < 0) {
        return -1;
    }
    if (pmt_refgraph_exec(module) < 0) {
        return -1;
    }
    if (pmt_native_bridge_exec(module) < 0) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    PyObject **slots = (PyObject **)pmt_get_state(module);
    size_t i;

    if (slots == NULL) {
        return 0;
    }
    for (i = 0; i < STATE_SLOTS; i++) {
        Py_VISIT(slots[i]);
    }
    return 0;
}

static int
module_clear(PyObject *module)
{
    PyObject **slots = (PyObject **)pmt_get_state(module);
    size_t i;

    if (slots == NULL) {
        return 0;
    }
    for (i = 0; i < STATE_SLOTS; i++) {
        Py_CLEAR(slots[i]);
    }
    return 0;
}

static void
module_free(void *module)
{
    module_memory *memory = PyModule_GetState((PyObject *)module);

    if (memory != NULL && memory->counted) {
        memory->counted = 0;
        if (atomic_fetch_sub(&module_runtime.instances, 1) == 1) {
            pmt_sampler_shutdown();
            pmt_tracer_shutdown();
            pmt_reftrace_shutdown();
            pmt_alloc_shutdown();
            pmt_shrinkwatch_shutdown();
        }
    }
    (void)module_clear((PyObject *)module);
}

pmt_state *
pmt_state_from_type(PyTypeObject *type)
{
#if PMT_PY311_PLUS
    PyObject *module = PyType_GetModuleByDef(type, &pmt_module_def);
    if (module == NULL) {
        return NULL;
    }
    return pmt_get_state(module);
#else
    PyObject *mro = type->tp_mro;
    Py_ssize_t i;

    for (i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        PyObject *module;
        if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        module = PyType_GetModule(base);
        if (module == NULL) {
            PyErr_Clear();
            continue;
        }
        if (PyModule_GetDef(module) == &pmt_module_def) {
            return pmt_get_state(module);
        }
    }
    PyErr_Format(PyExc_TypeError, "type '%s' does not belong to %s",
                 type->tp_name, pmt_module_def.m_name);
    return NULL;
#endif
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PMT_PY312_PLUS
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
             "The C core of pymemtrace.  Private: use the public modules\n"
             "(pymemtrace.cPyMemTrace, pymemtrace.process, ...).");

struct PyModuleDef pmt_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pymemtrace._native",
    .m_doc = module_doc,
    .m_size = sizeof(module_memory),
    .m_methods = NULL,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&pmt_module_def);
}
