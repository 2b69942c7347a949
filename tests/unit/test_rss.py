"""rss() and rss_peak(): the process memory probe (rss.c, core/rss_linux.c)."""
import mmap
import os
import subprocess
import sys

import psutil
import pytest

from pymemtrace import cPyMemTrace

MiB = 1 << 20


def test_rss_agrees_with_psutil():
    # GIVEN the same process  WHEN both read its RSS  THEN they agree closely
    ours = cPyMemTrace.rss()
    theirs = psutil.Process().memory_info().rss
    assert abs(ours - theirs) < 4 * MiB


@pytest.mark.parametrize("megabytes", [16, 64])
def test_rss_grows_by_the_memory_touched(megabytes):
    # GIVEN an anonymous mapping  WHEN N MiB of it are touched
    # (the data is made before the first reading and freed after the last:
    # freeing N MiB inside the window lets ASan's quarantine hand older freed
    # blocks back to the kernel there, which shrank RSS under make test-asan)
    size = megabytes * MiB
    data = b"x" * size
    before = cPyMemTrace.rss()
    block = mmap.mmap(-1, size)
    block.write(data)
    after = cPyMemTrace.rss()
    block.close()
    del data
    # THEN RSS grew by about N MiB
    grown = after - before
    assert 0.9 * size <= grown <= 2.2 * size


def test_rss_peak_is_at_least_rss():
    assert cPyMemTrace.rss_peak() + cPyMemTrace.page_size() >= cPyMemTrace.rss()


def test_slow_path_reads_the_same_counter():
    from pymemtrace import _native

    assert abs(_native._rss_slow() - cPyMemTrace.rss()) < 4 * MiB


def test_forked_child_reads_its_own_memory():
    # GIVEN a parent that has read its RSS (so the descriptor is open)
    cPyMemTrace.rss()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            before = cPyMemTrace.rss()
            block = bytearray(64 * MiB)
            for i in range(0, len(block), 4096):
                block[i] = 1
            os.write(write_fd, str(cPyMemTrace.rss() - before).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    grown = int(os.read(read_fd, 100) or b"0")
    os.close(read_fd)
    os.waitpid(pid, 0)
    # THEN the child saw its own 64 MiB, not the parent's unchanged memory
    assert grown >= 60 * MiB


def test_no_descriptor_leak_across_many_calls():
    proc = psutil.Process()
    cPyMemTrace.rss()
    fds = proc.num_fds()
    for _ in range(1000):
        cPyMemTrace.rss()
    assert proc.num_fds() == fds


def test_module_loads_in_a_fresh_interpreter_twice():
    code = (
        "import importlib, sys\n"
        "import pymemtrace._native as a\n"
        "del sys.modules['pymemtrace._native']\n"
        "import pymemtrace._native as b\n"
        "assert a is not b and a.rss() > 0 and b.rss() > 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
