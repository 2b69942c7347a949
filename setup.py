"""Build of the C parts of pymemtrace; metadata lives in pyproject.toml.

Environment switches (all off by default):
  PYMEMTRACE_DEBUG=1     -O0 -g, assert() on
  PYMEMTRACE_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer
  PYMEMTRACE_COVERAGE=1  gcov instrumentation
  PYMEMTRACE_WERROR=1    warnings are errors (CI and `make test` set it)
"""
import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

C_DIR = os.path.join("src", "pymemtrace", "_c")


def flag(name):
    return os.environ.get(name, "") not in ("", "0")


# core/ files with one implementation per platform.
PLATFORM_PREFIXES = ("rss_", "gotpatch_", "shrinkwatch_")


def platform_sources():
    core = os.path.join(C_DIR, "core")
    if sys.platform.startswith("linux"):
        return [os.path.join(core, name) for name in ("rss_linux.c", "gotpatch_linux.c", "shrinkwatch_linux.c")]
    if sys.platform == "darwin":
        return [os.path.join(core, name) for name in ("rss_darwin.c", "gotpatch_other.c", "shrinkwatch_other.c")]
    return [os.path.join(core, name) for name in ("rss_other.c", "gotpatch_other.c", "shrinkwatch_other.c")]


def core_sources():
    """Platform-neutral pure C files of core/ (rss_*.c, gotpatch_*.c and
    shrinkwatch_*.c are chosen above)."""
    return sorted(
        path
        for path in glob.glob(os.path.join(C_DIR, "core", "*.c"))
        if not os.path.basename(path).startswith(PLATFORM_PREFIXES)
    )


def compile_args():
    args = [
        "-std=gnu11",
        "-fvisibility=hidden",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Wno-missing-field-initializers",
        "-Wno-cast-function-type",
    ]
    if flag("PYMEMTRACE_WERROR"):
        args.append("-Werror")
    if flag("PYMEMTRACE_DEBUG") or flag("PYMEMTRACE_SANITIZE"):
        args += ["-O0", "-g3", "-UNDEBUG"]
    else:
        args += ["-O2"]
    if flag("PYMEMTRACE_SANITIZE"):
        args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                 "-fno-sanitize-recover=undefined"]
    if flag("PYMEMTRACE_COVERAGE"):
        args += ["--coverage"]
    return args


def link_args():
    args = ["-pthread"]
    if flag("PYMEMTRACE_SANITIZE"):
        args += ["-fsanitize=address,undefined"]
    if flag("PYMEMTRACE_COVERAGE"):
        args += ["--coverage"]
    return args


sources = sorted(glob.glob(os.path.join(C_DIR, "*.c")))
sources += core_sources() + platform_sources()
headers = glob.glob(os.path.join(C_DIR, "*.h"))
headers += glob.glob(os.path.join(C_DIR, "core", "*.h"))

native = Extension(
    "pymemtrace._native",
    sources=sources,
    depends=headers,
    include_dirs=[C_DIR],
    extra_compile_args=compile_args(),
    extra_link_args=link_args(),
)

# Leaks made on purpose, for tests and examples: an extension of its own, so
# that _native holds no code that leaks (docs/cmemleak.md).
memleak = Extension(
    "pymemtrace.cMemLeak",
    sources=[os.path.join(C_DIR, "memleak", "cMemLeak.c")],
    depends=[os.path.join(C_DIR, "compat.h")],
    include_dirs=[C_DIR],
    extra_compile_args=compile_args(),
    extra_link_args=link_args(),
)

# The native tracer (docs/native.md): a plain shared object, preloaded into
# programs that may never load Python, so it is not an Extension: built
# after the extensions by the compiler setuptools set up, beside _native,
# with the core tables it shares with the allocation tracker.  Never with
# the sanitizers (it must be first in LD_PRELOAD, where libasan must be).
PRELOAD_NAME = "libpymemtrace_preload.so"
PRELOAD_SOURCES = sorted(glob.glob(os.path.join(C_DIR, "native", "*.c"))) + [
    os.path.join(C_DIR, "core", "ptrtable.c"),
    os.path.join(C_DIR, "core", "stacktable.c"),
]


def preload_compile_args():
    args = [arg for arg in compile_args() if not arg.startswith(("-fsanitize", "-fno-sanitize", "--coverage"))]
    return args + ["-fPIC", "-fno-omit-frame-pointer"]


class BuildExt(build_ext):
    def run(self):
        super().run()
        if sys.platform.startswith("linux"):
            self.build_preload()

    def preload_path(self):
        return os.path.join(os.path.dirname(self.get_ext_fullpath("pymemtrace._native")), PRELOAD_NAME)

    def build_preload(self):
        target = self.preload_path()
        depends = PRELOAD_SOURCES + glob.glob(os.path.join(C_DIR, "native", "*.h")) + headers
        if not self.force and os.path.exists(target) and all(
            os.path.getmtime(dep) <= os.path.getmtime(target) for dep in depends
        ):
            return
        objects = self.compiler.compile(
            PRELOAD_SOURCES,
            output_dir=os.path.join(self.build_temp, "preload"),
            include_dirs=[C_DIR],
            extra_postargs=preload_compile_args(),
        )
        self.compiler.link_shared_object(
            objects,
            target,
            libraries=["dl", "m"],
            extra_postargs=["-pthread", "-Wl,-z,nodelete"],
        )

    def get_outputs(self):
        outputs = super().get_outputs()
        if sys.platform.startswith("linux"):
            outputs.append(self.preload_path())
        return outputs


setup(ext_modules=[native, memleak], cmdclass={"build_ext": BuildExt})
