"""The RSS sampler thread (sampler.c, core/ringbuf.c, core/clocks.c)."""
import gc
import math
import mmap
import os
import threading
import time
import warnings

import psutil
import pytest

from pymemtrace import _native

MiB = 1 << 20


def task_names():
    """Names of this process's kernel threads."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass  # the thread ended while we looked
    return names


def thread_alive(tid):
    return os.path.exists(f"/proc/self/task/{tid}")


def wait_for(predicate, polls=2000, step=0.005):
    """Poll until predicate() is true; False after `polls` polls (no clock)."""
    for _ in range(polls):
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_process_sample_shape():
    mono, wall, rss, user, system = _native.process_sample()
    assert mono == pytest.approx(time.monotonic(), abs=1.0)
    assert wall == pytest.approx(time.time(), abs=1.0)
    assert abs(rss - psutil.Process().memory_info().rss) < 4 * MiB
    assert user > 0 and system >= 0


def test_start_takes_a_first_sample_and_names_the_thread():
    # GIVEN a sampler with a long interval  WHEN started
    sampler = _native.Sampler(10)
    sampler.start()
    try:
        # THEN the first sample is there at once, from a thread of our own
        assert sampler.running
        assert sampler.pending == 1
        assert sampler.tid is not None and thread_alive(sampler.tid)
        with open(f"/proc/self/task/{sampler.tid}/comm") as f:
            assert f.read().strip() == "pmt-sampler"
    finally:
        sampler.stop()


def test_stop_returns_and_the_thread_is_gone_with_a_long_interval():
    # GIVEN a sampler asleep for 10 s
    sampler = _native.Sampler(10.0)
    sampler.start()
    tid = sampler.tid
    # WHEN stopped  THEN stop() returns (no wall-clock bound here) and the
    # thread no longer exists
    sampler.stop()
    assert not sampler.running
    assert not thread_alive(tid)
    assert "pmt-sampler" not in task_names()
    sampler.stop()  # idempotent


@pytest.mark.parametrize("megabytes", [32, 64])
def test_sampler_sees_rss_grow_by_the_memory_touched(megabytes):
    # GIVEN a running sampler and its baseline
    with _native.Sampler(0.005) as sampler:
        assert wait_for(lambda: sampler.taken >= 2)
        before = max(s[2] for s in sampler.drain())
        # WHEN N MiB are touched
        block = mmap.mmap(-1, megabytes * MiB)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        seen = sampler.taken
        assert wait_for(lambda: sampler.taken >= seen + 2)
        after = max(s[2] for s in sampler.drain())
    block.close()
    # THEN the samples show about N MiB more
    assert 0.9 * megabytes * MiB <= after - before <= 1.3 * megabytes * MiB


def test_samples_are_ordered_and_timestamped():
    with _native.Sampler(0.002) as sampler:
        assert wait_for(lambda: sampler.taken >= 10)
    samples = sampler.drain()
    assert len(samples) >= 10
    monos = [s[0] for s in samples]
    assert monos == sorted(monos)
    for _mono, wall, rss, user, system in samples:
        assert rss > 0 and user >= 0 and system >= 0
        assert math.isfinite(wall) and wall > 1.5e9
    # and drain() emptied the ring
    assert sampler.pending == 0
    assert sampler.drain() == []


def test_drain_max_returns_the_oldest_first():
    with _native.Sampler(0.002) as sampler:
        assert wait_for(lambda: sampler.taken >= 6)
    first = sampler.drain(2)
    rest = sampler.drain()
    assert len(first) == 2
    assert first[-1][0] <= rest[0][0]


def test_full_ring_drops_the_oldest_and_counts_them():
    # GIVEN a ring of 4 samples nobody drains
    sampler = _native.Sampler(0.001, capacity=4)
    with sampler:
        assert wait_for(lambda: sampler.taken >= 20)
    # THEN all but the last 4 were dropped, and counted
    samples = sampler.drain()
    assert len(samples) == 4
    assert sampler.dropped == sampler.taken - 4
    assert sampler.dropped >= 16


def test_a_read_failure_stops_the_thread_and_is_raised_once():
    # GIVEN a sampler whose 4th read fails (test seam)
    sampler = _native.Sampler(0.001, _fail_after=3)
    sampler.start()
    tid = sampler.tid
    # THEN the thread ends by itself, without crashing the host
    assert wait_for(lambda: not sampler.running)
    assert wait_for(lambda: not thread_alive(tid))
    # and the samples taken before the failure are still delivered
    assert len(sampler.drain()) == 3
    with pytest.raises(OSError, match="injected failure"):
        sampler.drain()
    assert sampler.drain() == []  # raised once
    sampler.stop()
    # and the sampler can start again
    sampler.start()
    sampler.stop()


def test_start_twice_is_an_error_and_restart_after_stop_works():
    sampler = _native.Sampler(1.0)
    sampler.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            sampler.start()
    finally:
        sampler.stop()
    first_tid = sampler.tid
    sampler.start()
    assert sampler.running and sampler.tid != first_tid
    sampler.stop()
    assert not thread_alive(sampler.tid)


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), 1e9])
def test_bad_interval_is_a_value_error(interval):
    with pytest.raises(ValueError, match="interval must be"):
        _native.Sampler(interval)


def test_bad_arguments():
    with pytest.raises(TypeError):
        _native.Sampler("fast")
    with pytest.raises(ValueError, match="capacity"):
        _native.Sampler(1.0, capacity=0)
    with pytest.raises(ValueError):
        _native.Sampler(1.0, _fail_after=-1)


def test_several_samplers_run_side_by_side():
    samplers = [_native.Sampler(0.002) for _ in range(3)]
    for s in samplers:
        s.start()
    tids = {s.tid for s in samplers}
    assert len(tids) == 3
    assert wait_for(lambda: all(s.taken >= 3 for s in samplers))
    for s in samplers:
        s.stop()
    assert not any(thread_alive(t) for t in tids)


def test_deleting_a_running_sampler_stops_its_thread():
    sampler = _native.Sampler(10)
    sampler.start()
    tid = sampler.tid
    del sampler
    gc.collect()
    assert not thread_alive(tid)


def test_no_thread_or_descriptor_left_behind():
    proc = psutil.Process()
    _native.process_sample()  # opens the kept statm descriptor once
    fds, threads = proc.num_fds(), len(os.listdir("/proc/self/task"))
    py_threads = threading.active_count()
    for _ in range(20):
        with _native.Sampler(0.001) as sampler:
            sampler.drain()
    del sampler
    gc.collect()
    assert proc.num_fds() == fds
    assert len(os.listdir("/proc/self/task")) == threads
    assert threading.active_count() == py_threads


def test_fork_leaves_the_child_without_the_thread_and_the_parent_sampling():
    # GIVEN a running sampler
    sampler = _native.Sampler(0.002)
    sampler.start()
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # 3.12+ warns that forking a multi-threaded process may deadlock:
        # that is what this test checks does not happen.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(read_fd)
            checks = [
                "pmt-sampler" not in task_names(),
                len(os.listdir("/proc/self/task")) == 1,
                not sampler.running,
            ]
            sampler.stop()  # nothing to join: must not hang
            # a sampler still works in the child, reading the child's memory
            with _native.Sampler(0.002) as fresh:
                checks.append(wait_for(lambda: fresh.taken >= 2))
            sampler.start()
            checks.append(sampler.running)
            sampler.stop()
            os.write(write_fd, "".join("1" if c else "0" for c in checks).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    result = os.read(read_fd, 100).decode()
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    # THEN the child had no sampler thread and could sample again
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert result == "11111"
    # AND the parent's sampler kept running
    assert sampler.running
    taken = sampler.taken
    assert wait_for(lambda: sampler.taken > taken + 2)
    sampler.stop()


def test_start_not_immediate_samples_after_one_interval():
    # GIVEN a sampler started with immediate=False and a 10 s interval
    sampler = _native.Sampler(10.0)
    sampler.start(immediate=False)
    assert wait_for(lambda: sampler.tid is not None)
    # THEN it is running but has taken nothing yet
    assert sampler.running and sampler.taken == 0
    sampler.stop()
    assert sampler.taken == 0 and not thread_alive(sampler.tid)


def test_request_stop_ends_the_thread_without_joining():
    sampler = _native.Sampler(10.0)
    sampler.start()
    tid = sampler.tid
    sampler.request_stop()
    # the thread ends by itself; stop() then only joins it
    assert wait_for(lambda: not sampler.running)
    assert wait_for(lambda: not thread_alive(tid))
    sampler.stop()
    sampler.request_stop()  # harmless when idle
    sampler.start()
    assert sampler.running
    sampler.stop()
