/*
 * tracer_record.c - the records of a Profile/Trace log
 * (docs/log_format.md): the header, the event records FRST/NEXT/PREV/LAST
 * and the text records MSG/WARN.  Formatted by hand into the buffers of
 * core/logwriter.c; see tracer.h for what is written when.
 *
 * Threading: GIL held; the log mutex too with all_threads and on
 * free-threaded builds (record_lock).
 */
#include "tracer.h"

#include <string.h>
#include <unistd.h>

/* Padded to 8 bytes: a record copies 8 and advances by the length. */
static const char what_names[N_WHATS][8] = {
    "CALL\0\0\0\0", "EXCEPT\0\0", "LINE\0\0\0\0", "RETURN\0\0",   "C_CALL\0\0",
    "C_EXCEPT",     "C_RETURN",   "OPCODE\0\0",   "EXIT\0\0\0\0",
};
static const size_t what_lens[N_WHATS] = {4, 6, 4, 6, 6, 8, 8, 6, 4};

/* A message (text of any length) as UTF-8, escaped.  Never raises: a
   string that cannot be encoded (lone surrogates) is written with
   replacement characters. */
static void
log_text(pmt_logwriter *log, PyObject *s)
{
    const char *utf8;
    Py_ssize_t n;

    if (s == NULL || !PyUnicode_Check(s)) {
        pmt_log_char(log, '?');
        return;
    }
    if (PyUnicode_IS_ASCII(s)) {
        utf8 = (const char *)PyUnicode_DATA(s);
        n = PyUnicode_GET_LENGTH(s);
        pmt_log_escaped_whole(log, utf8, (size_t)n);
        return;
    }
    {
        pmt_exc_t saved;
        PMT_EXC_SAVE(saved);
        /* Caches the UTF-8 form in the object: paid once per message. */
        utf8 = PyUnicode_AsUTF8AndSize(s, &n);
        if (utf8 != NULL) {
            pmt_log_escaped_whole(log, utf8, (size_t)n);
        }
        else {
            PyObject *b;
            PyErr_Clear();
            b = PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace");
            if (b != NULL) {
                pmt_log_escaped_whole(log, PyBytes_AS_STRING(b),
                                      (size_t)PyBytes_GET_SIZE(b));
                Py_DECREF(b);
            }
            else {
                PyErr_Clear();
                pmt_log_char(log, '?');
            }
        }
        PMT_EXC_RESTORE(saved);
    }
}

static int
event_line(TracerObject *self, const pmt_event *ev)
{
    if (ev->line >= 0) {
        return ev->line;
    }
    if (ev->code == NULL) {
        return 0;
    }
    if (ev->code != self->name_code || ev->lasti < 0) {
        return PyCode_Addr2Line((PyCodeObject *)ev->code, ev->lasti);
    }
    return pmt_codeline_get(self->lines, LINE_CACHE_SIZE - 1,
                            (PyCodeObject *)ev->code, ev->lasti);
}

/* A name inside a record (File, Function), escaped: at most
   PMT_LOG_MAX_FIELD bytes of its UTF-8, whose room the record reserved. */
static void
log_name(pmt_logwriter *log, PyObject *s)
{
    char *p = pmt_log_reserve(log, pmt_escaped_str_room(s, PMT_LOG_MAX_FIELD));
    pmt_log_commit(log, pmt_put_escaped_str(p, s, PMT_LOG_MAX_FIELD,
                                            PMT_STR_SURROGATE_ESCAPE));
}

/* File, #line and Function columns of code, escaped, through the cache.
   Room for the whole record was reserved. */
static void
log_code_names(TracerObject *self, PyCodeObject *code, int line)
{
    pmt_logwriter *log = &self->log;
    pmt_codenames *names = &self->names;
    char *p;

    if ((PyObject *)code != self->name_code || self->name_buf == NULL) {
        memset(self->lines, 0, sizeof(self->lines));
        if (self->name_buf == NULL || code == NULL) {
            /* Nothing to cache (no code, or no memory at enter). */
            Py_CLEAR(self->name_code);
            log_name(log, code ? code->co_filename : NULL);
            pmt_log_char(log, '\t');
            pmt_log_i64(log, line, 0);
            pmt_log_char(log, '\t');
            log_name(log, code ? pmt_code_function_name(code) : NULL);
            return;
        }
        /* At most twice PMT_LOG_MAX_FIELD per name: NAME_BUF_SIZE. */
        names->text = self->name_buf;
        pmt_codenames_fill(names, code, PMT_LOG_MAX_FIELD,
                           PMT_STR_SURROGATE_ESCAPE);
        Py_XSETREF(self->name_code, Py_NewRef((PyObject *)code));
    }
    p = log->buf + log->len;
    p = pmt_put_bytes(p, names->text, names->file_len);
    *p++ = '\t';
    p = pmt_put_i64(p, line, 0);
    *p++ = '\t';
    p = pmt_put_bytes(p, names->text + names->file_len, names->func_len);
    pmt_log_commit(log, p);
}

/* The cap reached: say so in the log.  Returns 0. */
static int
log_capped(TracerObject *self)
{
    pmt_logwriter *log = &self->log;

    self->capped = 1;
    pmt_log_cstr(log, "# max_log_bytes reached (");
    pmt_log_u64(log, self->max_log_bytes);
    pmt_log_cstr(log, "): records after event ");
    pmt_log_u64(log, self->n_events ? self->n_events - 1 : 0);
    pmt_log_cstr(log, " are not written\n");
    return 0;
}

/* Cap check before a record: 1 if the record may be written. */
static inline int
log_room(TracerObject *self)
{
    pmt_logwriter *log = &self->log;

    if (self->capped) {
        return 0;
    }
    if (self->max_log_bytes &&
        log->written + log->len >= self->max_log_bytes) {
        return log_capped(self);
    }
    return 1;
}

void
pmt_tracer_write_event(TracerObject *self, const char *tag,
                       const pmt_event *ev, uint64_t clock_ns, int force)
{
    pmt_logwriter *log = &self->log;
    PyCodeObject *code = (PyCodeObject *)ev->code;
    unsigned what = (unsigned)ev->what;
    int line;
    char *p;

    record_lock(self);
    if (!force && !log_room(self)) {
        goto out_unlock;
    }
    line = event_line(self, ev);
    /* Room for the whole record: fields are formatted at p with no
       bounds check of their own, and the length is committed once. */
    p = pmt_log_reserve(log, MAX_RECORD);
    memcpy(p, tag, 5); /* "NEXT:" and the others: 5 bytes */
    p[5] = '\t';
    p = pmt_put_u64(p + 6, ev->event);
    p[0] = '\t';
    p[1] = '+';
    p = pmt_put_u64(p + 2, ev->event - self->ref_event);
    *p++ = '\t';
    p = pmt_put_seconds(p, clock_ns - self->t0_ns);
    *p++ = '\t';
    if (what < N_WHATS) {
        memcpy(p, what_names[what], 8);
        p += what_lens[what];
    }
    else {
        *p++ = '?';
    }
    *p++ = '\t';
    if ((PyObject *)code == self->name_code && code != NULL) {
        /* The common case: the names of the last code object written. */
        p = pmt_put_bytes(p, self->names.text, self->names.file_len);
        *p++ = '\t';
        p = pmt_put_i64(p, line, 0);
        *p++ = '\t';
        p = pmt_put_bytes(p, self->names.text + self->names.file_len,
                          self->names.func_len);
    }
    else {
        pmt_log_commit(log, p);
        log_code_names(self, code, line);
        p = log->buf + log->len;
    }
    *p++ = '\t';
    if (self->rss_text_len == 0 || self->rss_text_value != ev->mem) {
        char *q = pmt_put_i64(self->rss_text, ev->mem, 0);
        self->rss_text_len = (size_t)(q - self->rss_text);
        self->rss_text_value = ev->mem;
    }
    memcpy(p, self->rss_text, sizeof(self->rss_text));
    p += self->rss_text_len;
    *p++ = '\t';
    /* From the last FRST/NEXT; a LAST of a block that saw no event: from
       the memory read at enter. */
    p = pmt_put_i64(
        p, memcmp(tag, "FRST", 4) == 0 ? 0 : ev->mem - self->ref_mem, 1);
    if (self->all_threads) {
        *p++ = '\t';
        p = pmt_put_u64(p, ev->thread);
    }
    *p++ = '\n';
    pmt_log_commit(log, p);
out_unlock:
    record_unlock(self);
}

/* Out of line (tracer.h): most events take tracer_event's short path. */
PMT_NOINLINE void
pmt_tracer_event_written(TracerObject *self, int what, PyObject *code,
                         int lasti, int line, PyFrameObject *frame,
                         uint64_t event, int64_t mem, unsigned long thread)
{
    {
        uint64_t clock = tracer_now(self);
        int had_first = self->have_first;
        if (had_first && self->prev_valid && !self->prev_written) {
            pmt_tracer_write_event(self, "PREV:", &self->prev, clock, 0);
        }
        if (line < 0 && frame != NULL) {
            line = PyFrame_GetLineNumber(frame);
        }
        remember(self, what, code, lasti, line, event, mem, thread);
        pmt_tracer_write_event(
            self, had_first ? "NEXT:" : "FRST:", &self->prev, clock, 0);
        self->have_first = 1;
        self->ref_mem = mem;
        self->ref_event = event;
        self->prev_written = 1;
    }
}

void
pmt_tracer_write_text_record(TracerObject *self, const char *tag,
                             PyObject *text)
{
    pmt_logwriter *log = &self->log;

    record_lock(self);
    if (log_room(self)) {
        pmt_log_cstr(log, tag);
        pmt_log_char(log, '\t');
        pmt_log_u64(log, self->n_events ? self->n_events - 1 : 0);
        pmt_log_char(log, '\t');
        pmt_log_seconds(log, tracer_now(self) - self->t0_ns);
        pmt_log_char(log, '\t');
        log_text(log, text);
        pmt_log_char(log, '\n');
    }
    record_unlock(self);
}

void
pmt_tracer_write_header(TracerObject *self)
{
    pmt_logwriter *log = &self->log;

    if (self->message != NULL) {
        log_text(log, self->message);
        pmt_log_char(log, '\n');
    }
    pmt_log_cstr(log, "SOF\n# tracer: ");
    pmt_log_cstr(log, kind_name(self->kind));
    pmt_log_cstr(log, "\n# measure: ");
    pmt_log_cstr(log, self->measure == MEASURE_RSS ? "rss" : "heap");
    pmt_log_cstr(log, "\n# d_rss_trigger: ");
    pmt_log_i64(log, self->trigger, 0);
    pmt_log_cstr(log, "\n# python: " PY_VERSION "\n# pid: ");
    pmt_log_u64(log, (uint64_t)getpid());
    pmt_log_cstr(log, "\n# all_threads: ");
    pmt_log_cstr(log, self->all_threads ? "1" : "0");
    pmt_log_cstr(log, "\n# depth: ");
    pmt_log_u64(log, (uint64_t)self->depth);
    pmt_log_cstr(log, "\n# backend: ");
    pmt_log_cstr(log, self->backend == BACKEND_MONITORING ? "monitoring"
                                                          : "legacy");
    pmt_log_cstr(log, "\n# rss_source: ");
    if (self->measure == MEASURE_HEAP) {
        pmt_log_cstr(log, "heap counter (exact at every event)");
    }
    else if (self->fault_source == PMT_FAULTS_NONE) {
        pmt_log_cstr(log, "statm read at every event");
    }
    else {
        pmt_log_cstr(log, "statm read when ");
        pmt_log_cstr(log, pmt_faultcount_source_name(self->fault_source));
        pmt_log_cstr(log, " or a release of memory says it may have moved");
    }
    pmt_log_cstr(log,
                 "\nHDR:\tEvent\tdEvent\tClock\tWhat\tFile\t#line\t"
                 "Function\t");
    pmt_log_cstr(log, self->measure == MEASURE_RSS ? "RSS" : "HEAP");
    pmt_log_cstr(log, "\tdRSS");
    if (self->all_threads) {
        pmt_log_cstr(log, "\tThread");
    }
    pmt_log_char(log, '\n');
}
