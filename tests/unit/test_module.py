"""pymemtrace._native as a module (module.c): multi-phase init, module state,
garbage-collector support, subinterpreters, docstrings.

These checks are generic: they walk whatever functions and types the module
has, so each new concern is covered as soon as it is added.
"""
import gc
import importlib.util
import inspect
import re
import subprocess
import sys
import textwrap

import pytest

import pymemtrace._native as native

NAME = "pymemtrace._native"


def fresh_module():
    """A new module object for _native through the import machinery."""
    spec = importlib.util.find_spec(NAME)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def functions(module):
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isbuiltin(obj) and not name.startswith("__")
    }


def types_of(module):
    return {name: obj for name, obj in vars(module).items() if isinstance(obj, type)}


def test_init_is_multi_phase():
    # GIVEN the module's definition  THEN it is a multi-phase module: its
    # spec's loader made it with a PyModuleDef and per-module state
    first, second = fresh_module(), fresh_module()
    # WHEN imported twice  THEN there are two independent module objects
    assert first is not second
    assert first is not native and second is not native


def test_each_import_has_its_own_functions_and_types():
    first, second = fresh_module(), fresh_module()
    # THEN every function is bound to the module object it came from
    for name, func in functions(first).items():
        assert func.__self__ is first, name
        assert functions(second)[name].__self__ is second, name
    # AND every heap type is created per module, not shared
    for name, cls in types_of(first).items():
        assert types_of(second)[name] is not cls, name


def test_each_import_keeps_working_after_the_other_is_gone():
    # GIVEN two imports  WHEN one is dropped and collected
    first, second = fresh_module(), fresh_module()
    del first
    gc.collect()
    # THEN the other still works (its state was its own)
    assert second.rss() > 0
    assert native.rss() > 0


def test_dropping_another_instance_leaves_the_background_work_running(tmp_path):
    # GIVEN a sampler thread and a Profile started through the main import
    sampler = native.Sampler(0.01)
    sampler.start()
    profile = native.Profile(filepath=str(tmp_path / "p.log"))
    profile.__enter__()
    try:
        # WHEN a second instance of the module is made and collected
        other = fresh_module()
        del other
        gc.collect()
        # THEN the process-wide machinery was not shut down with it
        assert sampler.running
        assert native._active_tracers(0) == [profile]
    finally:
        profile.__exit__(None, None, None)
        sampler.stop()
    assert "EOF" in (tmp_path / "p.log").read_text()


def test_the_gc_sees_the_module_state():
    # GIVEN a fresh import  WHEN the gc asks the module for its referents
    module = fresh_module()
    referents = gc.get_referents(module)
    # THEN traverse ran without error and returned real objects
    assert all(type(obj) is not None for obj in referents)
    assert module.__dict__ in referents
    # AND every heap type of the module is held by the state (m_traverse
    # visits it), not only by the module dict
    held = {id(obj) for obj in referents}
    for name, cls in types_of(module).items():
        assert id(cls) in held, f"type {name} is not in the module state (see native.h)"


def test_module_can_be_cleared_and_freed_in_a_fresh_interpreter():
    # GIVEN a process that imports, clears and drops the module  WHEN it
    # exits  THEN it exits cleanly (m_clear and m_free are safe)
    code = textwrap.dedent(
        f"""
        import gc, importlib.util, sys
        spec = importlib.util.find_spec({NAME!r})
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        m.__dict__.clear()
        del m
        gc.collect()
        import {NAME}
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _subinterpreter_api():
    """The private module that runs code in an isolated subinterpreter."""
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


@pytest.mark.skipif(sys.version_info < (3, 12), reason="no per-interpreter GIL before CPython 3.12")
def test_refuses_subinterpreters_with_their_own_gil():
    if _subinterpreter_api() is None:
        pytest.skip("this CPython has neither _interpreters nor _xxsubinterpreters")
    # GIVEN an isolated subinterpreter (own GIL)  WHEN it imports _native
    # (in a child process: a failure here must not take the suite down)
    inner = textwrap.dedent(
        f"""
        import os, sys
        sys.path[:] = {sys.path!r}
        try:
            import {NAME}
            result = b"imported"
        except ImportError as exc:
            result = ("refused: " + str(exc)).encode()
        os.write(WRITE_FD, result)
        """
    )
    outer = textwrap.dedent(
        """
        import importlib, os, sys
        for name in ("_interpreters", "_xxsubinterpreters"):
            try:
                api = importlib.import_module(name)
                break
            except ImportError:
                pass
        r, w = os.pipe()
        interp = api.create()
        api.run_string(interp, INNER.replace("WRITE_FD", str(w)))
        api.destroy(interp)
        os.close(w)
        print(os.read(r, 1000).decode())
        """
    ).replace("INNER", repr(inner))
    done = subprocess.run([sys.executable, "-c", outer], capture_output=True, text=True, timeout=60)
    # THEN the import is refused with an ImportError, and nothing crashes
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: "), done.stdout + done.stderr
    assert "subinterpreter" in done.stdout or "interpreter" in done.stdout


SIGNATURE = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)( -> .+)?$", re.S)


def _documented(qualname, obj):
    """None when obj's docstring opens with its signature, else why not.

    The signature may wrap over several lines (until its parentheses
    close); a description, if any, follows after one blank line.
    """
    doc = obj.__doc__ or ""
    if getattr(obj, "__text_signature__", None):
        return None  # Argument Clinic-style signature: inspect can read it
    lines = doc.splitlines()
    taken = depth = 0
    while taken < len(lines):
        depth += lines[taken].count("(") - lines[taken].count(")")
        taken += 1
        if depth <= 0:
            break
    signature = " ".join(line.strip() for line in lines[:taken])
    match = SIGNATURE.match(signature)
    if not match:
        return f"{qualname}: docstring must start with a signature line like 'name(args) -> type', got {signature!r}"
    if match.group("name") != obj.__name__:
        return f"{qualname}: signature line names {match.group('name')!r}, not {obj.__name__!r}"
    if len(lines) > taken and lines[taken].strip():
        return f"{qualname}: a blank line must separate the signature from the description"
    return None


def test_signature_lines_are_checked():
    # GIVEN docstrings of each shape  WHEN checked  THEN only the bad fail
    def doc(text):
        def f():
            pass

        f.__doc__ = text
        return f

    assert _documented("f", doc("f() -> int\n\nWhat it does.")) is None
    assert _documented("f", doc("f(a,\n  b=1) -> None\n\nWrapped signature.")) is None
    assert _documented("f", doc("f() -> bool")) is None
    assert "signature line" in _documented("f", doc("Does things."))
    assert "names 'g'" in _documented("f", doc("g() -> int"))
    assert "blank line" in _documented("f", doc("f() -> int\nWhat it does."))
    assert "signature line" in _documented("f", doc(None))


def test_every_function_and_method_has_a_docstring_with_a_signature():
    # GIVEN every function of _native and every public method of its types
    problems = []
    for name, func in functions(native).items():
        problems.append(_documented(name, func))
    for tname, cls in types_of(native).items():
        if not (cls.__doc__ or "").strip():
            problems.append(f"{tname}: the type has no docstring")
        for mname, meth in vars(cls).items():
            if mname.startswith("_") or not callable(meth):
                continue
            if inspect.ismethoddescriptor(meth) or inspect.isbuiltin(meth):
                problems.append(_documented(f"{tname}.{mname}", meth))
    # THEN each starts with "name(args) -> type", a blank line, a description
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
