"""redirect_stdout: capture of C-level and Python-level stdout/stderr."""
import ctypes
import io
import os
import subprocess
import sys

import psutil
import pytest

from pymemtrace.redirect_stdout import stderr_redirector, stdout_redirector

libc = ctypes.CDLL(None)
libc.printf.argtypes = [ctypes.c_char_p]
libc.puts.argtypes = [ctypes.c_char_p]
libc.fflush.argtypes = [ctypes.c_void_p]


def c_printf(text):
    """printf() without a flush: the bytes stay in C's stdout buffer."""
    libc.printf(text.encode())


def c_puts(text):
    libc.puts(text.encode())
    libc.fflush(None)


def fd_identity(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def test_captures_c_printf_without_flush_and_python_print():
    # GIVEN C output left in the stdio buffer, C output flushed, a raw
    # write(2) and a print()
    out = io.StringIO()
    with stdout_redirector(out):
        c_puts("from puts")
        os.write(1, b"from os.write\n")
        print("from print")
        c_printf("from printf, not flushed\n")
    # THEN everything lands in the stream, nothing else
    text = out.getvalue()
    assert "from puts\n" in text
    assert "from os.write\n" in text
    assert "from print\n" in text
    assert "from printf, not flushed\n" in text


def test_output_after_the_block_is_not_captured(capfd):
    # GIVEN a finished redirection
    out = io.StringIO()
    with stdout_redirector(out):
        c_puts("inside")
    # WHEN C code writes afterwards
    c_puts("outside")
    # THEN it goes to the real descriptor 1 (here pytest's capture)
    assert out.getvalue() == "inside\n"
    assert "outside" in capfd.readouterr().out


def test_stderr_captures_fd_2():
    err = io.StringIO()
    with stderr_redirector(err):
        os.write(2, b"to fd 2\n")
        print("to sys.stderr", file=sys.stderr)
    assert err.getvalue() == "to fd 2\nto sys.stderr\n"


def test_binary_stream_receives_bytes():
    # GIVEN a BytesIO and non-ASCII output
    out = io.BytesIO()
    with stdout_redirector(out):
        os.write(1, "caf\u00e9\n".encode("utf-8"))
    assert out.getvalue() == "caf\u00e9\n".encode("utf-8")


def test_text_stream_receives_decoded_text():
    out = io.StringIO()
    with stdout_redirector(out):
        print("\u00fcber")
    assert out.getvalue() == "\u00fcber\n"


def test_child_process_output_is_captured():
    # GIVEN a subprocess inheriting descriptor 1
    out = io.StringIO()
    with stdout_redirector(out):
        subprocess.run([sys.executable, "-c", "print('from child')"], check=True)
    assert out.getvalue() == "from child\n"


def test_descriptors_restored_when_the_body_raises():
    # GIVEN where descriptors 1 and 2 point, and sys.stdout/sys.stderr
    before = (fd_identity(1), fd_identity(2), sys.stdout, sys.stderr)
    out = io.StringIO()
    # WHEN the body raises
    with pytest.raises(RuntimeError, match="boom"):
        with stdout_redirector(out):
            c_puts("before the error")
            raise RuntimeError("boom")
    # THEN all is restored and the output before the error was kept
    assert (fd_identity(1), fd_identity(2), sys.stdout, sys.stderr) == before
    assert out.getvalue() == "before the error\n"


def test_no_descriptor_leaks():
    # GIVEN the number of open descriptors
    proc = psutil.Process()
    out = io.StringIO()
    with stdout_redirector(out):
        pass
    before = proc.num_fds()
    # WHEN redirecting many times, some of them raising
    for i in range(50):
        try:
            with stderr_redirector(out), stdout_redirector(out):
                c_puts("x")
                if i % 2:
                    raise ValueError
        except ValueError:
            pass
    # THEN no descriptor is left open
    assert proc.num_fds() == before


def test_nested_stdout_inside_stderr():
    out, err = io.StringIO(), io.StringIO()
    with stderr_redirector(err):
        os.write(2, b"err 1\n")
        with stdout_redirector(out):
            c_puts("out 1")
            os.write(2, b"err 2\n")
        c_puts("not captured by out")
    assert out.getvalue() == "out 1\n"
    assert err.getvalue() == "err 1\nerr 2\n"


def test_nested_stdout_inside_stdout():
    outer, inner = io.StringIO(), io.StringIO()
    with stdout_redirector(outer):
        c_puts("outer a")
        with stdout_redirector(inner):
            c_puts("inner")
        c_puts("outer b")
    assert inner.getvalue() == "inner\n"
    assert outer.getvalue() == "outer a\nouter b\n"


def test_pending_c_output_before_the_block_is_not_captured(capfd):
    # GIVEN C output still in the stdio buffer when the block starts
    c_printf("pending before\n")
    out = io.StringIO()
    with stdout_redirector(out):
        c_puts("inside")
    # THEN the pending output went where it was meant to go
    assert out.getvalue() == "inside\n"
    assert "pending before" in capfd.readouterr().out


def test_works_without_pytest_capture():
    # GIVEN a fresh interpreter whose descriptors are a real pipe
    code = (
        "import ctypes, io, os\n"
        "from pymemtrace.redirect_stdout import stdout_redirector\n"
        "libc = ctypes.CDLL(None)\n"
        "buf = io.StringIO()\n"
        "with stdout_redirector(buf):\n"
        "    libc.printf(b'hidden\\n')\n"
        "    print('hidden too')\n"
        "print('shown', repr(buf.getvalue()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=True)
    assert result.stdout == "shown 'hidden\\nhidden too\\n'\n"


INNER_TEST = '''
import ctypes, io, os, sys
from pymemtrace.redirect_stdout import stdout_redirector, stderr_redirector

def test_inner():
    libc = ctypes.CDLL(None)
    out, err = io.StringIO(), io.BytesIO()
    before = sys.stdout
    with stderr_redirector(err), stdout_redirector(out):
        libc.printf(b"c level\\n")
        print("python level")
        os.write(2, b"fd 2\\n")
    assert out.getvalue() == "c level\\npython level\\n"
    assert err.getvalue() == b"fd 2\\n"
    assert sys.stdout is before
'''


@pytest.mark.parametrize("mode", ["--capture=fd", "--capture=sys", "--capture=no",
                                  "--capture=tee-sys"])
def test_works_under_every_pytest_capture_mode(tmp_path, mode):
    # GIVEN a test using the redirectors  WHEN pytest runs it in each mode
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", mode,
         str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, cwd=tmp_path)
    # THEN it passes and nothing leaked to the real output
    assert result.returncode == 0, result.stdout + result.stderr
    assert "c level" not in result.stdout and "fd 2" not in result.stderr
