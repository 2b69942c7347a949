/*
 * logfmt.c - Python values as log text, object-free: a str as escaped
 * UTF-8 (the escaping rule is core/logwriter's pmt_put_escaped), and the
 * File and Function columns of a code object.  Shared by the tracers
 * (tracer_record.c) and ReferenceTracing (reftrace.c).
 *
 * Object-free: no Python object is created, no exception set and no
 * memory allocated, so these may run inside a PyRefTracer callback and do
 * not show in the heap counters a tracer reports (PyUnicode_AsUTF8 would
 * allocate the str's UTF-8 cache).  The str is read in place
 * (PyUnicode_DATA), code point by code point.
 *
 * Threading: GIL held (the str must not change under us; str objects are
 * immutable, so any thread holding a reference may call).
 */
#include "native.h"

#include "core/logwriter.h"

/* UTF-8 of one code point (not a surrogate) at out; returns the end. */
static inline char *
put_utf8(char *out, Py_UCS4 ch)
{
    if (ch < 0x80) {
        *out++ = (char)ch;
    }
    else if (ch < 0x800) {
        *out++ = (char)(0xc0 | (ch >> 6));
        *out++ = (char)(0x80 | (ch & 0x3f));
    }
    else if (ch < 0x10000) {
        *out++ = (char)(0xe0 | (ch >> 12));
        *out++ = (char)(0x80 | ((ch >> 6) & 0x3f));
        *out++ = (char)(0x80 | (ch & 0x3f));
    }
    else {
        *out++ = (char)(0xf0 | (ch >> 18));
        *out++ = (char)(0x80 | ((ch >> 12) & 0x3f));
        *out++ = (char)(0x80 | ((ch >> 6) & 0x3f));
        *out++ = (char)(0x80 | (ch & 0x3f));
    }
    return out;
}

size_t
pmt_escaped_str_room(PyObject *s, size_t max)
{
    size_t n;

    if (s == NULL || !PyUnicode_Check(s)) {
        return 1;
    }
    if (max > SIZE_MAX / 2) {
        max = SIZE_MAX / 2; /* no cut: 2 * max must not wrap */
    }
    n = (size_t)PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_ASCII(s)) {
        n = n < max ? n : max;
        return 2 * n;
    }
    /* Per code point: 4 UTF-8 bytes, or a surrogate's 6-byte \uXXXX of
       which the backslash is doubled; never more than twice max. */
    n = 7 * n;
    return n < 2 * max ? n : 2 * max;
}

char *
pmt_put_escaped_str(char *out, PyObject *s, size_t max, int flags)
{
    Py_ssize_t i, n;
    int kind;
    const void *data;
    size_t used = 0;

    if (s == NULL || !PyUnicode_Check(s)) {
        *out++ = '?';
        return out;
    }
    n = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_ASCII(s)) {
        size_t len = (size_t)n < max ? (size_t)n : max;
        return pmt_put_escaped(out, (const char *)PyUnicode_DATA(s), len);
    }
    kind = PyUnicode_KIND(s);
    data = PyUnicode_DATA(s);
    for (i = 0; i < n && used < max; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        char tmp[8];
        char *end;
        size_t len;

        if (ch >= 0xd800 && ch <= 0xdfff) {
            if (flags & PMT_STR_SURROGATE_ESCAPE) {
                /* What the "backslashreplace" error handler gives. */
                static const char hex[] = "0123456789abcdef";
                tmp[0] = '\\';
                tmp[1] = 'u';
                tmp[2] = hex[(ch >> 12) & 0xf];
                tmp[3] = hex[(ch >> 8) & 0xf];
                tmp[4] = hex[(ch >> 4) & 0xf];
                tmp[5] = hex[ch & 0xf];
                end = tmp + 6;
            }
            else {
                tmp[0] = '?';
                end = tmp + 1;
            }
        }
        else if (ch < 0x80 && ch != '\\' && ch != '\t' && ch != '\n' &&
                 ch != '\r') {
            /* The common case among non-ASCII text: no escape, no cut. */
            *out++ = (char)ch;
            used++;
            continue;
        }
        else {
            end = put_utf8(tmp, ch);
        }
        len = (size_t)(end - tmp);
        /* A cut falls on a byte, as a cut of the encoded text would. */
        if (len > max - used) {
            len = max - used;
        }
        out = pmt_put_escaped(out, tmp, len);
        used += len;
    }
    return out;
}

size_t
pmt_codenames_room(PyCodeObject *code, size_t max)
{
    return pmt_escaped_str_room(code->co_filename, max) +
           pmt_escaped_str_room(pmt_code_function_name(code), max);
}

void
pmt_codenames_fill(pmt_codenames *names, PyCodeObject *code, size_t max,
                   int flags)
{
    char *end =
        pmt_put_escaped_str(names->text, code->co_filename, max, flags);

    names->file_len = (size_t)(end - names->text);
    end = pmt_put_escaped_str(end, pmt_code_function_name(code), max, flags);
    names->func_len = (size_t)(end - names->text) - names->file_len;
    names->code = code;
}
