"""A small linter for the C sources of pymemtrace, written as a test.

It scans every ``src/pymemtrace/_c/**/*.c`` and ``*.h`` for the rules of
HOUSE_STYLE.md that a compiler does not check (in the spirit of msgspec's
``test_cpylint.py``).  Each problem is reported as ``file:line: [rule] why``.
Run it directly for a plain listing: ``python tests/unit/test_csource_lint.py``.

Rules (names as they appear in the messages):

static-mutable   no mutable variable at file scope, except: one struct
                 whose name ends in ``_runtime`` per file (the documented
                 process-wide runtime), thread-locals (re-entrancy guards),
                 C-API definition tables the API takes non-const
                 (PyMethodDef, PyType_Spec, PyModuleDef, ...), and a line
                 carrying ``pmt-lint: allow-static <reason>``
goto-exit        in a function with ``goto``: every target exists, jumps only
                 go forward (to an exit at the end: ``error``, ``done``,
                 ``out_<what it undoes>``), every label is used, and no
                 label names a loop (``again``, ``retry``, ``loop``, ...)
guard-balance    ``pmt_guard_enter`` and ``pmt_guard_exit`` balance in each
                 function, and no ``return`` comes between an enter statement
                 and its exit
critical-section every ``Py_BEGIN_CRITICAL_SECTION`` has its ``END`` in the
                 same function, in order, with no ``return`` or ``goto`` out
                 of the section
object-malloc    no ``PyObject_Malloc/Calloc/Realloc``: buffers use PyMem_*
                 or the raw allocator
single-phase     no ``PyModule_Create``: multi-phase init only
static-type      no ``PyType_Ready`` and no ``static PyTypeObject``: heap
                 types from ``PyType_FromModuleAndSpec`` only
export-prefix    a non-static function or variable defined in _c/ is named
                 ``pmt_*`` (only the init functions of the extensions,
                 ``PyInit__native`` and ``PyInit_cMemLeak``, are exempt, and
                 the allocation functions _c/native/ interposes)
core-pure        files under _c/core/ do not include Python.h or native.h
braces           the file's braces balance (the other rules need it)
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

try:
    import pytest
except ImportError:  # run as a script (`make lint-c`) where pytest is absent

    class pytest:  # noqa: N801 - stands in for the two names used here
        class mark:
            @staticmethod
            def parametrize(*args, **kwargs):
                return lambda func: func

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "src" / "pymemtrace" / "_c"

# C-API definition types that the API takes as non-const pointers.
API_TABLE_TYPES = {
    "PyMethodDef",
    "PyMemberDef",
    "PyGetSetDef",
    "PyType_Slot",
    "PyType_Spec",
    "PyModuleDef",
    "PyModuleDef_Slot",
    "PyStructSequence_Field",
    "PyStructSequence_Desc",
    "PyNumberMethods",
    "PySequenceMethods",
    "PyMappingMethods",
    "PyAsyncMethods",
    "PyBufferProcs",
}
# _Thread_local, __thread, thread_local, or a macro for one (PMT_TLS, ...).
THREAD_LOCAL_WORD = re.compile(r"^(_Thread_local|__thread|thread_local)$|(^|_)(TLS|THREAD_LOCAL)$")
LOOP_LABEL = re.compile(r"^(again|retry|loop|top|restart|repeat|start|begin)(_\w+)?$")
ALLOW_STATIC = "pmt-lint: allow-static"
# The init functions of the extensions built from _c/ (setup.py).
MODULE_INITS = {"PyInit__native", "PyInit_cMemLeak"}
# The C library functions the native tracer interposes (_c/native/interpose.c,
# signals.c, docs/native.md): exported under their own names by design.
INTERPOSED = {"malloc", "calloc", "realloc", "reallocarray", "free", "posix_memalign", "aligned_alloc",
              "memalign", "valloc", "pvalloc", "mmap", "mmap64", "munmap", "_exit", "_Exit",
              "dlclose", "__deregister_frame", "__deregister_frame_info",
              "sigaction", "signal"}


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    rule: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.why}"


def strip_source(text: str) -> str:
    """Blank out comments, string and char literals and preprocessor lines.

    Every removed character becomes a space (newlines are kept), so offsets
    and line numbers in the result are those of the original text.
    """
    out = list(text)
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if c == "\n":
            at_line_start = True
            i += 1
            continue
        if at_line_start and c in " \t":
            i += 1
            continue
        if at_line_start and c == "#":
            # A preprocessor line, with its backslash continuations.
            while i < n and text[i] != "\n":
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    out[i] = " "
                    i += 2
                    continue
                out[i] = " "
                i += 1
            continue
        at_line_start = False
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
        elif c in "\"'":
            out[i] = " "
            i += 1
            while i < n and text[i] != c and text[i] != "\n":
                if text[i] == "\\":
                    out[i] = " "
                    i += 1
                out[i] = " "
                i += 1
            if i < n and text[i] == c:
                out[i] = " "
                i += 1
        else:
            i += 1
    # GCC attributes carry parentheses that would read as a function.
    stripped = "".join(out)
    return ATTRIBUTE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), stripped)


ATTRIBUTE = re.compile(r"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)")


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


@dataclass
class Function:
    name: str
    is_static: bool
    line: int  # line of the name
    body_start: int  # offset of "{"
    body_end: int  # offset just after "}"


@dataclass
class Declaration:
    text: str  # the declaration, stripped, on one line
    line: int
    offset: int


def matching_close(code: str, start: int) -> Optional[int]:
    """Offset of the bracket closing the one at start, or None."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    opener = code[start]
    closer = pairs[opener]
    depth = 0
    for i in range(start, len(code)):
        if code[i] == opener:
            depth += 1
        elif code[i] == closer:
            depth -= 1
            if depth == 0:
                return i
    return None


def split_top_level(code: str) -> Tuple[List[Function], List[Declaration], List[Problem]]:
    """Split stripped code into function definitions and other declarations."""
    functions: List[Function] = []
    declarations: List[Declaration] = []
    problems: List[Problem] = []
    i, n = 0, len(code)
    item_start = 0
    while i < n:
        c = code[i]
        if c == ";":
            chunk = code[item_start:i]
            if chunk.strip():
                declarations.append(_declaration(code, item_start, chunk))
            item_start = i + 1
        elif c in "([":
            close = matching_close(code, i)
            if close is None:
                problems.append(Problem("", line_of(code, i), "braces", f"unclosed '{c}'"))
                return functions, declarations, problems
            i = close
        elif c == "{":
            close = matching_close(code, i)
            if close is None:
                problems.append(Problem("", line_of(code, i), "braces", "unclosed '{'"))
                return functions, declarations, problems
            head = code[item_start:i]
            if head.rstrip().endswith(")") and "=" not in head:
                fn = _function(code, item_start, head, i, close + 1)
                if fn is not None:
                    functions.append(fn)
                item_start = close + 1
            i = close
        elif c in ")]}":
            problems.append(Problem("", line_of(code, i), "braces", f"unmatched '{c}'"))
        i += 1
    return functions, declarations, problems


def _declaration(code: str, start: int, chunk: str) -> Declaration:
    lead = len(chunk) - len(chunk.lstrip())
    return Declaration(" ".join(chunk.split()), line_of(code, start + lead), start + lead)


def _function(code: str, start: int, head: str, body_start: int, body_end: int) -> Optional[Function]:
    # The name is the identifier before the parameter list's "(".
    depth = 0
    for j in range(len(head) - 1, -1, -1):
        if head[j] == ")":
            depth += 1
        elif head[j] == "(":
            depth -= 1
            if depth == 0:
                match = re.search(r"(\w+)\s*$", head[:j])
                if match is None:
                    return None
                words = set(re.findall(r"\w+", head[: match.start()]))
                return Function(
                    name=match.group(1),
                    is_static="static" in words,
                    line=line_of(code, start + match.start(1)),
                    body_start=body_start,
                    body_end=body_end,
                )
    return None


def _outside_braces(text: str) -> str:
    """text with every {...} body removed (nested ones too)."""
    flat, depth = [], 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            flat.append(ch)
    return "".join(flat)


def _declared_names(decl: str) -> List[str]:
    """Names declared at top level of a declaration (best effort)."""
    # Drop aggregate bodies and initialisers, keep the declarators.
    flat, depth = [], 0
    for ch in decl:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            flat.append(ch)
    text = "".join(flat)
    names = []
    for part in text.split(","):
        part = part.split("=")[0]
        part = re.sub(r"\[[^\]]*\]", "", part)
        match = re.search(r"(\w+)\s*\)?\s*(\(.*\))?\s*$", part.strip())
        if match:
            names.append(match.group(1))
    return names


def check_file(path: str, text: str) -> List[Problem]:
    """Every problem of one C source or header (path is for messages)."""
    code = strip_source(text)
    raw_lines = text.splitlines()
    functions, declarations, problems = split_top_level(code)
    problems = [Problem(path, p.line, p.rule, p.why) for p in problems]
    problems += _check_file_scope(path, declarations, raw_lines)
    problems += _check_exports(path, functions)
    for fn in functions:
        body = code[fn.body_start : fn.body_end]
        problems += _check_gotos(path, code, fn, body)
        problems += _check_pairs(
            path, code, fn, body, "guard-balance", r"\bpmt_guard_enter\s*\(", r"\bpmt_guard_exit\s*\(",
            statement_only=True,
        )
        problems += _check_pairs(
            path, code, fn, body, "critical-section",
            r"\bPy_BEGIN_CRITICAL_SECTION\w*\s*\(", r"\bPy_END_CRITICAL_SECTION\w*\s*\(",
            statement_only=False, forbid_goto=True,
        )
    problems += _check_calls(path, code)
    if "/core/" in "/" + path.replace("\\", "/"):
        for number, line in enumerate(raw_lines, 1):
            if re.match(r"\s*#\s*include\s*[<\"](Python\.h|native\.h)[>\"]", line):
                problems.append(Problem(path, number, "core-pure",
                                        "core/ is pure C: it must not include Python.h or native.h"))
    return sorted(problems, key=lambda p: (p.path, p.line, p.rule))


def _allowed_by_comment(raw_lines: List[str], line: int) -> bool:
    for number in (line - 1, line):
        if 1 <= number <= len(raw_lines) and ALLOW_STATIC in raw_lines[number - 1]:
            return True
    return False


def _check_file_scope(path: str, declarations: List[Declaration], raw_lines: List[str]) -> List[Problem]:
    problems = []
    runtimes = []
    for decl in declarations:
        text = decl.text
        outside = _outside_braces(text)
        head = outside.split("=", 1)[0]
        words = re.findall(r"\w+", head)
        if not words or words[0] in ("typedef", "extern"):
            continue
        if words[0] in ("struct", "union", "enum") and len(re.findall(r"\w+", outside)) <= 2:
            continue  # a type definition ("enum { A = 1 };"), not a variable
        paren = head.find("(")
        if paren >= 0 and not head[paren + 1 :].lstrip().startswith("*"):
            continue  # a prototype or a macro call; "(*name)" is a pointer
        is_static = "static" in words
        names = _declared_names(text)
        name = names[0] if names else "?"
        if not is_static and not name.startswith("pmt_"):
            problems.append(Problem(path, decl.line, "export-prefix",
                                    f"global '{name}' is visible to other files: make it static or name it pmt_{name}"))
        if any(THREAD_LOCAL_WORD.search(word) for word in words):
            continue  # per thread: re-entrancy guards
        if "const" in words:
            continue  # const data (a pointer to const counts: tables of names)
        if API_TABLE_TYPES & set(words):
            continue
        struct_tag = words[words.index("struct") + 1] if "struct" in words[:-1] else ""
        if (name.endswith("_runtime") or struct_tag.endswith("_runtime")) and "struct" in words:
            runtimes.append(decl)
            if len(runtimes) > 1:
                problems.append(Problem(path, decl.line, "static-mutable",
                                        f"second runtime struct '{name}': one *_runtime struct per file "
                                        f"(the first is at line {runtimes[0].line})"))
            continue
        if _allowed_by_comment(raw_lines, decl.line):
            continue
        problems.append(Problem(path, decl.line, "static-mutable",
                                f"mutable file-scope variable '{name}': move it into this file's "
                                "*_runtime struct (with a comment saying what protects it), "
                                "make it const, or put it in the module state"))
    return problems


def _check_exports(path: str, functions: List[Function]) -> List[Problem]:
    return [
        Problem(path, fn.line, "export-prefix",
                f"function '{fn.name}' is not static: make it static or name it pmt_{fn.name}")
        for fn in functions
        if not fn.is_static and not fn.name.startswith("pmt_") and fn.name not in MODULE_INITS
        and not (fn.name in INTERPOSED and Path(path).parent.name == "native")
    ]


def _check_gotos(path: str, code: str, fn: Function, body: str) -> List[Problem]:
    gotos = [(m.group(1), fn.body_start + m.start()) for m in re.finditer(r"\bgoto\s+(\w+)\s*;", body)]
    labels = {}
    for m in re.finditer(r"(?m)^[ \t]*(\w+)[ \t]*:(?!:)", body):
        if m.group(1) not in ("default", "case"):
            labels[m.group(1)] = fn.body_start + m.start(1)
    problems = []
    where = f"in {fn.name}()"
    for name, offset in labels.items():
        line = line_of(code, offset)
        if LOOP_LABEL.match(name):
            problems.append(Problem(path, line, "goto-exit",
                                    f"label '{name}' {where} names a loop: labels are exits "
                                    "(error, done, out_<what it undoes>); write a loop"))
        if not any(target == name for target, _ in gotos):
            problems.append(Problem(path, line, "goto-exit", f"label '{name}' {where} is never jumped to"))
    for target, offset in gotos:
        line = line_of(code, offset)
        if target not in labels:
            problems.append(Problem(path, line, "goto-exit", f"goto {target} {where}: no such label"))
        elif labels[target] < offset:
            problems.append(Problem(path, line, "goto-exit",
                                    f"goto {target} {where} jumps backwards: gotos only jump forward "
                                    "to the function's exit; write a loop"))
    return problems


def _check_pairs(path, code, fn, body, rule, begin, end, statement_only, forbid_goto=False):
    events = []
    for m in re.finditer(begin, body):
        events.append((m.start(), "begin", m))
    for m in re.finditer(end, body):
        events.append((m.start(), "end", m))
    if not events:
        return []
    for m in re.finditer(r"\breturn\b", body):
        events.append((m.start(), "return", m))
    if forbid_goto:
        for m in re.finditer(r"\bgoto\b", body):
            events.append((m.start(), "goto", m))
    events.sort(key=lambda e: e[0])
    what = "pmt_guard_enter/exit" if rule == "guard-balance" else "Py_BEGIN/END_CRITICAL_SECTION"
    problems = []
    begins = sum(1 for e in events if e[1] == "begin")
    ends = sum(1 for e in events if e[1] == "end")
    if begins != ends:
        problems.append(Problem(path, fn.line, rule,
                                f"{fn.name}() has {begins} begin and {ends} end of {what}: they must pair up"))
    depth = 0
    open_is_statement = []
    for offset, kind, _ in events:
        line = line_of(code, fn.body_start + offset)
        if kind == "begin":
            before = body[:offset].rstrip()
            open_is_statement.append(not statement_only or before.endswith((";", "{", "}")))
            depth += 1
        elif kind == "end":
            if depth == 0:
                problems.append(Problem(path, line, rule, f"end of {what} in {fn.name}() without a begin"))
            else:
                depth -= 1
                open_is_statement.pop()
        elif depth and any(open_is_statement):
            problems.append(Problem(path, line, rule,
                                    f"{kind} inside {what} in {fn.name}(): leave through the end"))
    return problems


FORBIDDEN_CALLS = [
    (r"\bPyObject_(Malloc|Calloc|Realloc)\s*\(", "object-malloc",
     "PyObject_{0} is for Python objects: use PyMem_{0} or PyMem_Raw{0} for buffers"),
    (r"\bPyModule_Create2?\s*\(", "single-phase",
     "PyModule_Create is single-phase init: use PyModuleDef_Init with a Py_mod_exec slot"),
    (r"\bPyType_Ready\s*\(", "static-type",
     "PyType_Ready is for static types: create heap types with PyType_FromModuleAndSpec"),
    (r"\bstatic\s+PyTypeObject\b", "static-type",
     "static PyTypeObject: use a heap type (PyType_Spec + PyType_FromModuleAndSpec)"),
]


def _check_calls(path: str, code: str) -> List[Problem]:
    problems = []
    for pattern, rule, why in FORBIDDEN_CALLS:
        for m in re.finditer(pattern, code):
            detail = m.group(1) if m.groups() and m.group(1) else ""
            problems.append(Problem(path, line_of(code, m.start()), rule, why.format(detail)))
    return problems


def c_sources() -> Iterator[Path]:
    for pattern in ("*.c", "*.h"):
        yield from sorted(C_DIR.rglob(pattern))


def lint_tree() -> List[Problem]:
    problems = []
    for source in c_sources():
        rel = str(source.relative_to(ROOT))
        problems += check_file(rel, source.read_text(encoding="utf-8"))
    return problems


# ---------------------------------------------------------------- the tests


def test_the_tree_is_clean():
    # GIVEN every C file of _c/  WHEN linted  THEN no rule is broken
    sources = list(c_sources())
    assert sources, f"no C sources under {C_DIR}"
    problems = lint_tree()
    assert not problems, "C source lint (rules: tests/unit/test_csource_lint.py):\n" + "\n".join(
        map(str, problems)
    )


# (rule, bad sample, good twin, path)
SAMPLES = [
    (
        "static-mutable",
        "static int counter = 0;\n",
        "static const int counter = 0;\n",
        "_c/x.c",
    ),
    (
        "static-mutable",
        "static PyObject *cache;\n",
        "static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}};\n",
        "_c/x.c",
    ),
    (
        "static-mutable",
        "static int (*saved_hook)(void *);\n",
        "static _Thread_local int in_hook;\n",
        "_c/x.c",
    ),
    (
        "static-mutable",
        "static struct { int a; } one_runtime;\nstatic struct { int b; } two_runtime;\n",
        "static struct {\n    int a; /* GIL */\n} one_runtime = {0};\nstatic int f(void);\n",
        "_c/x.c",
    ),
    (
        "static-mutable",
        "static pthread_once_t once = PTHREAD_ONCE_INIT;\n",
        "/* pmt-lint: allow-static pthread_once needs an object of its own */\n"
        "static pthread_once_t once = PTHREAD_ONCE_INIT;\n",
        "_c/x.c",
    ),
    (
        "goto-exit",
        "static int\nf(int x)\n{\n    if (x) {\n        goto error;\n    }\n    return 0;\nerror:\n"
        "    return -1;\nout_unused:\n    return -2;\n}\n",
        "static int\nf(int x)\n{\n    if (x) {\n        goto not_found;\n    }\n    return 0;\nnot_found:\n"
        "    return -1;\n}\n",
        "_c/x.c",
    ),
    (
        "goto-exit",
        "static int\nf(int x)\n{\nagain:\n    x--;\n    if (x) {\n        goto again;\n    }\n    return 0;\n}\n",
        "static int\nf(int x)\n{\n    while (x) {\n        x--;\n    }\n    return 0;\n}\n",
        "_c/x.c",
    ),
    (
        "goto-exit",
        "static int\nf(int x)\n{\n    goto done;\n    return x;\n}\n",
        "static int\nf(int x)\n{\n    goto done;\ndone:\n    return x;\n}\n",
        "_c/x.c",
    ),
    (
        "guard-balance",
        "static void\nf(void)\n{\n    pmt_guard_enter();\n    work();\n}\n",
        "static void\nf(void)\n{\n    pmt_guard_enter();\n    work();\n    pmt_guard_exit();\n}\n",
        "_c/x.c",
    ),
    (
        "guard-balance",
        "static int\nf(int x)\n{\n    pmt_guard_enter();\n    if (x) {\n        return 1;\n    }\n"
        "    pmt_guard_exit();\n    return 0;\n}\n",
        "static int\nf(int x)\n{\n    int r = 0;\n    pmt_guard_enter();\n    if (x) {\n"
        "        r = 1;\n    }\n    pmt_guard_exit();\n    return r;\n}\n",
        "_c/x.c",
    ),
    (
        "critical-section",
        "static void\nf(PyObject *o)\n{\n    Py_BEGIN_CRITICAL_SECTION(o);\n    g(o);\n}\n",
        "static void\nf(PyObject *o)\n{\n    Py_BEGIN_CRITICAL_SECTION(o);\n    g(o);\n"
        "    Py_END_CRITICAL_SECTION();\n}\n",
        "_c/x.c",
    ),
    (
        "critical-section",
        "static int\nf(PyObject *o)\n{\n    Py_BEGIN_CRITICAL_SECTION(o);\n    if (g(o)) {\n"
        "        return -1;\n    }\n    Py_END_CRITICAL_SECTION();\n    return 0;\n}\n",
        "static int\nf(PyObject *o)\n{\n    int r;\n    Py_BEGIN_CRITICAL_SECTION(o);\n"
        "    r = g(o);\n    Py_END_CRITICAL_SECTION();\n    return r;\n}\n",
        "_c/x.c",
    ),
    (
        "object-malloc",
        "static char *\nf(void)\n{\n    return PyObject_Malloc(10);\n}\n",
        "static char *\nf(void)\n{\n    return PyMem_Malloc(10); /* not PyObject_Malloc */\n}\n",
        "_c/x.c",
    ),
    (
        "single-phase",
        "PyMODINIT_FUNC\nPyInit__native(void)\n{\n    return PyModule_Create(&def);\n}\n",
        "PyMODINIT_FUNC\nPyInit__native(void)\n{\n    return PyModuleDef_Init(&def);\n}\n",
        "_c/x.c",
    ),
    (
        "static-type",
        "static PyTypeObject T = {PyVarObject_HEAD_INIT(NULL, 0)};\n",
        "static PyType_Spec T_spec = {.name = \"m.T\"};\n",
        "_c/x.c",
    ),
    (
        "static-type",
        "static int\nf(PyObject *m)\n{\n    return PyType_Ready(t);\n}\n",
        "static int\nf(PyObject *m)\n{\n    return PyModule_AddType(m, t);\n}\n",
        "_c/x.c",
    ),
    (
        "export-prefix",
        "int\nhelper(void)\n{\n    return 0;\n}\n",
        "int\npmt_helper(void)\n{\n    return 0;\n}\n",
        "_c/x.c",
    ),
    (
        "export-prefix",
        "struct PyModuleDef module_def = {0};\n",
        "struct PyModuleDef pmt_module_def = {0};\n",
        "_c/x.c",
    ),
    (
        "core-pure",
        "#include <Python.h>\nint\npmt_f(void)\n{\n    return 0;\n}\n",
        "#include <stdint.h>\nint\npmt_f(void)\n{\n    return 0;\n}\n",
        "_c/core/x.c",
    ),
    (
        "braces",
        "static int\nf(void)\n{\n    if (1) {\n        return 0;\n}\n",
        "static int\nf(void)\n{\n    if (1) {\n        return 0;\n    }\n    return 1;\n}\n",
        "_c/x.c",
    ),
]


@pytest.mark.parametrize(
    "rule, bad, good, path",
    SAMPLES,
    ids=[f"{s[0]}-{i}" for i, s in enumerate(SAMPLES)],
)
def test_each_rule_fires_on_a_bad_sample_and_not_on_its_twin(rule, bad, good, path):
    # GIVEN a sample breaking one rule  WHEN linted  THEN that rule fires,
    # with file:line; AND its fixed twin passes every rule
    problems = check_file(path, bad)
    assert any(p.rule == rule for p in problems), problems
    first = next(p for p in problems if p.rule == rule)
    assert str(first).startswith(f"{path}:{first.line}: [{rule}] ")
    assert 1 <= first.line <= bad.count("\n") + 1
    assert check_file(path, good) == []


def test_comments_strings_and_macros_are_not_code():
    # GIVEN forbidden words only in comments, strings and #define lines
    text = (
        "/* static int x; PyModule_Create(&d); */\n"
        "#define BAD(x) \\\n    PyObject_Malloc(x)\n"
        "static const char *const doc = \"PyType_Ready( { \";\n"
        "// goto nowhere;\n"
    )
    # WHEN linted  THEN nothing is reported
    assert check_file("_c/x.c", text) == []


def test_declarations_that_are_not_mutable_globals_pass():
    # GIVEN type definitions, prototypes (with function-pointer parameters),
    # a runtime struct named by its tag, and thread-locals behind a macro
    text = (
        "enum { KIND_A = 0, KIND_B = 1 };\n"
        "struct pair { int a; int b; };\n"
        "typedef struct { int x; } point;\n"
        "int pmt_walk(const void *map,\n"
        "             void (*visit)(int key, void *arg),\n"
        "             void *arg);\n"
        "static struct alloc_runtime {\n    int users; /* GIL */\n} rt = {0};\n"
        "static PMT_TLS int tls_guard;\n"
        "static const int limits[] = {1, 2};\n"
        "PyDoc_STRVAR(doc, \"f() -> None\");\n"
    )
    # WHEN linted  THEN none is mistaken for a mutable global
    assert check_file("_c/x.c", text) == []


def test_line_numbers_point_at_the_offence():
    text = "/* header */\n\nstatic int\nf(void)\n{\n    return 0;\n}\n\nstatic long hits;\n"
    (problem,) = check_file("_c/y.c", text)
    assert (problem.line, problem.rule) == (9, "static-mutable")
    assert "'hits'" in problem.why


if __name__ == "__main__":
    found = lint_tree()
    for problem in found:
        print(problem)
    print(f"{len(found)} problem(s) in {len(list(c_sources()))} C files")
    sys.exit(1 if found else 0)


def test_attributes_do_not_read_as_functions():
    # GIVEN a packed struct type  WHEN linted  THEN it is a type, not a function
    text = (
        "typedef struct __attribute__((packed, aligned(4))) {\n"
        "    int x;\n"
        "} pmt_slot;\n"
    )
    assert check_file("x.h", text) == []
