"""pymemtrace._output: one helper for every output file."""
import os
import stat

import pytest

from pymemtrace import _output
from pymemtrace.errors import PymemtraceError


def test_the_file_appears_only_when_complete(tmp_path):
    # GIVEN an existing output  WHEN the block raises half-way
    path = tmp_path / "out.json"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with _output.atomic_open(str(path)) as stream:
            stream.write("half")
            raise RuntimeError("crash")
    # THEN the old file is intact and no temporary file is left
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_complete_write_replaces_the_file_with_the_umask_mode(tmp_path):
    path = tmp_path / "out.svg"
    path.write_text("old\n")
    _output.write_file(str(path), "<svg/>\n")
    assert path.read_text() == "<svg/>\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_bytes_are_written_as_bytes(tmp_path):
    path = tmp_path / "p.pb.gz"
    _output.write_file(str(path), b"\x1f\x8b\x00")
    assert path.read_bytes() == b"\x1f\x8b\x00"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_device_is_written_in_place_and_a_full_one_is_one_line():
    # GIVEN /dev/full (renaming over it would replace the device)
    with pytest.raises(PymemtraceError) as info:
        _output.write_file("/dev/full", "x" * 100000)
    assert str(info.value) == "cannot write /dev/full: no space left on device"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_missing_directory_and_a_directory_are_refused(tmp_path):
    for bad in (tmp_path / "missing" / "x", tmp_path):
        with pytest.raises(PymemtraceError, match=f"^cannot write {bad}: "):
            _output.check_writable(str(bad))
        with pytest.raises(PymemtraceError, match=f"^cannot write {bad}: "):
            _output.write_file(str(bad), "x")
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_write(tmp_path):
    # GIVEN outputs owned by this process  WHEN a forked child tries to write
    path = tmp_path / "out.json"
    _output.claim()
    pid = os.fork()
    if pid == 0:  # the child: 0 when refused, 1 when it wrote
        try:
            _output.write_file(str(path), "child\n")
            code = 1
        except PymemtraceError:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    # THEN it was refused and nothing was written
    assert os.WEXITSTATUS(status) == 0
    assert not path.exists()
