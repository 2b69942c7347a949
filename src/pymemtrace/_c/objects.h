/*
 * objects.h - what the object walks share: the census (objects.c) and the
 * reference graph (refgraph.c).  Private to those two files, as tracer.h
 * is to the tracer's.
 *
 * Every function here expects the GIL held and runs no Python code, except
 * where its comment says otherwise.
 */
#ifndef PMT_OBJECTS_H
#define PMT_OBJECTS_H

#include "native.h"

#include "core/ptrmap.h"

/* The value an address has in an owned map once every reference to it
   comes from the tool's bookkeeping. */
#define PMT_OWNED UINT32_MAX

/* Calls visit on every referent of op, each reference once: tp_traverse,
   plus what it does not report (a dict's keys, a code object's names and
   constants).  Runs no Python code; returns visit's first nonzero
   result. */
int pmt_visit_referents(PyObject *op, visitproc visit, void *arg);

/* Marks in owned (PMT_OWNED) the tuple ignore, each of its items, and
   every object that exists only because of them (all of its references
   come from objects already marked).  owned must be initialised.  0, or
   -1 with MemoryError. */
int pmt_mark_owned(pmt_ptrmap *owned, PyObject *ignore);

/* 1 when op is marked PMT_OWNED in owned. */
int pmt_is_owned(const pmt_ptrmap *owned, PyObject *op);

/* Appends to held what frame's local variables (and cells) refer to: the
   values, or (named) (name, value) tuples.  May allocate (no Python code
   runs).  0, or -1 with an exception. */
int pmt_frame_locals(PyFrameObject *frame, PyObject *held, int named);

/* What the running frames of every thread hold in their locals, in a new
   list (calls sys._current_frames, Python code). */
PyObject *pmt_all_frame_locals(void);

#endif /* PMT_OBJECTS_H */
