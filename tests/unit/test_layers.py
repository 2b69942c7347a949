"""The layer rule (docs/design.md section 1): no module imports one from a
later layer, lazily or not.

    base < probes < snapshots < analyses < reporters < front ends

Every module under src/pymemtrace is parsed with ``ast`` (imports inside
functions included) and each ``pymemtrace`` import is checked against the
table below.  Snapshots, analyses and reporters may not import a probe at
all: plain data, answers and renderings never measure.
"""

import ast
import os

import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src", "pymemtrace")

BASE, PROBES, SNAPSHOTS, ANALYSES, REPORTERS, FRONT_ENDS = range(6)
NAMES = ["base", "probes", "snapshots", "analyses", "reporters", "front ends"]

#: THE table: the layer of each module, by its name or the folder it is in
#: (the longest matching prefix wins).  A new module goes in its folder's
#: layer; a module at the top of the package must be named here.
LAYERS = {
    # base: helpers every layer may use; they import nothing of the layers.
    "pymemtrace": BASE,  # the package itself: __version__ only
    "pymemtrace.errors": BASE,
    "pymemtrace._output": BASE,
    "pymemtrace._argtypes": BASE,
    # probes: the C extension (and a probes/ package, should one come).
    "pymemtrace._native": PROBES,
    "pymemtrace.probes": PROBES,
    "pymemtrace.snapshots": SNAPSHOTS,
    "pymemtrace.analyses": ANALYSES,
    "pymemtrace.reporters": REPORTERS,
    # front ends: the CLI, the seed-named modules, the Python APIs, the
    # script runner, and util/ (shims keeping the names of before issue 9).
    "pymemtrace.cli": FRONT_ENDS,
    "pymemtrace.util": FRONT_ENDS,
    "pymemtrace.__main__": FRONT_ENDS,
    "pymemtrace._runner": FRONT_ENDS,
    "pymemtrace._child": FRONT_ENDS,
    "pymemtrace.allocations": FRONT_ENDS,
    "pymemtrace.objects": FRONT_ENDS,
    "pymemtrace.hunting": FRONT_ENDS,
    "pymemtrace.native": FRONT_ENDS,
    "pymemtrace.pytest_plugin": FRONT_ENDS,
    "pymemtrace.cPyMemTrace": FRONT_ENDS,
    "pymemtrace.cpymemtrace_decs": FRONT_ENDS,
    "pymemtrace.trace_malloc": FRONT_ENDS,
    "pymemtrace.debug_malloc_stats": FRONT_ENDS,
    "pymemtrace.redirect_stdout": FRONT_ENDS,
    "pymemtrace.process": FRONT_ENDS,
    "pymemtrace.process_tree": FRONT_ENDS,
    # The seed's C module of leaks made on purpose (an extension of its own):
    # a front end, so that no probe, snapshot, analysis or reporter can
    # depend on code that leaks.
    "pymemtrace.cMemLeak": FRONT_ENDS,
}

#: Lazy re-exports the package may make from a later layer: its
#: ``__getattr__`` hands out ``pymemtrace.hunt`` (a front end) on first use,
#: so that ``import pymemtrace`` stays cheap.  (importer, imported)
REEXPORTS = {("pymemtrace", "pymemtrace.hunting")}


def layer_of(module: str) -> int:
    best = None
    for prefix in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best):
                best = prefix
    if best is None or best == "pymemtrace" and module != "pymemtrace":
        raise KeyError(f"{module} has no layer: add it to LAYERS in {__file__}")
    return LAYERS[best]


def all_modules():
    """module name -> path of every .py file under src/pymemtrace."""
    found = {}
    for folder, dirs, files in os.walk(SRC):
        dirs[:] = [d for d in dirs if d not in ("_c", "__pycache__")]
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), SRC)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            found[".".join(["pymemtrace", *rel])] = os.path.join(folder, name)
    return found


MODULES = all_modules()
# The compiled modules (no .py file to find).
KNOWN = set(MODULES) | {"pymemtrace._native", "pymemtrace.cMemLeak"}


def imports_of(source: str, module: str, is_package: bool):
    """(line, imported module) for every pymemtrace import in source,
    those inside functions included."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                # `from pymemtrace import _native` imports a module.
                full = f"{base}.{alias.name}"
                out.append((node.lineno, full if full in KNOWN else base))
    return [(line, name) for line, name in out if name.split(".")[0] == "pymemtrace"]


def violations(module: str, source: str, is_package: bool = False):
    mine = layer_of(module)
    bad = []
    for line, imported in imports_of(source, module, is_package):
        if (module, imported) in REEXPORTS:
            continue
        theirs = layer_of(imported)
        if theirs > mine:
            bad.append(f"{module}:{line} imports {imported} ({NAMES[theirs]} > {NAMES[mine]})")
        elif theirs == PROBES and mine in (SNAPSHOTS, ANALYSES, REPORTERS):
            bad.append(f"{module}:{line} imports the probe {imported} ({NAMES[mine]} never measure)")
    return bad


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_later_layer(module):
    path = MODULES[module]
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    bad = violations(module, source, path.endswith("__init__.py"))
    assert bad == []


# The twins: the check finds what it must find.


@pytest.mark.parametrize("module, source", [
    ("pymemtrace.snapshots.x", "def f():\n    from pymemtrace.reporters import log_report\n"),
    ("pymemtrace.snapshots.x", "from pymemtrace import _native\n"),
    ("pymemtrace.analyses.x", "from ..reporters import _units\n"),
    ("pymemtrace.reporters.x", "import pymemtrace.cli.report\n"),
    ("pymemtrace.reporters.x", "from pymemtrace import allocations\n"),
    ("pymemtrace._output", "from pymemtrace.snapshots import allocations\n"),
    ("pymemtrace.analyses.x", "from pymemtrace import cMemLeak\n"),
])
def test_a_planted_later_import_is_found(module, source):
    assert len(violations(module, source)) == 1


@pytest.mark.parametrize("module, source", [
    ("pymemtrace.reporters.x", "from pymemtrace.analyses.allocations import group_sites\n"),
    ("pymemtrace.reporters.x", "from pymemtrace import _output, __version__\n"),
    ("pymemtrace.analyses.x", "from ..snapshots import logtext\n"),
    ("pymemtrace.cli.x", "from pymemtrace import _native, allocations\n"),
])
def test_an_earlier_import_passes(module, source):
    assert violations(module, source) == []


def test_a_module_outside_the_table_is_an_error():
    with pytest.raises(KeyError, match="no layer"):
        layer_of("pymemtrace.new_thing")
