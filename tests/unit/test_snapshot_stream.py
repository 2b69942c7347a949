"""snapshots.allocations: the one persistence of allocation snapshots, read
whole (load) or one site at a time (iter_file), and the streamed JSON
report (allocations_json.write_stream)."""
import io
import json

import pytest

from pymemtrace.allocations import AllocationSnapshot, Frame, Site
from pymemtrace.reporters import allocations_json
from pymemtrace.snapshots import allocations as snap

A = Frame("app.py", 10, "build")
B = Frame("app.py", 20, "main")


def snapshot(n=50):
    sites = [Site((Frame("app.py", 100 + i % 7, "f"), B), 1000 + i, 1 + i % 3) for i in range(n)]
    return AllocationSnapshot(
        sites=snap.merge_stacks(sites), peak_sites=snap.merge_stacks(sites[: n // 2]),
        peak_bytes=123456, bytes=sum(s.bytes for s in sites), mode="sampled", depth=8,
        sample_bytes=4096, stats={"memory": 77, "dropped_traces": 0},
    )


def read_all(path):
    live, peak, header = [], [], None
    for tag, item in snap.iter_file(path):
        {"site": live, "peak_site": peak}.get(tag, []).append(item)
        if tag == "header":
            header = item
    return live, peak, header


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_iter_file_reads_what_save_wrote_at_any_chunk_size(tmp_path, monkeypatch, chunk):
    # GIVEN a saved snapshot, read in chunks small enough to cut numbers,
    # strings and objects anywhere
    monkeypatch.setattr(snap, "_CHUNK", chunk)
    original = snapshot()
    path = tmp_path / "s.json"
    original.save(path)
    # WHEN it is read one site at a time
    live, peak, header = read_all(path)
    # THEN the same sites in the same order, and the same scalar fields
    assert live == original.sites and peak == original.peak_sites
    again = AllocationSnapshot(sites=live, peak_sites=peak, **{k: v for k, v in header.items() if k != "sites"})
    assert again == original == AllocationSnapshot.load(path)


def test_iter_file_takes_any_key_order_and_white_space(tmp_path):
    # GIVEN a hand-written snapshot: indented, peak_sites first, no bytes
    doc = {"peak_sites": [Site((A,), 5, 1).to_dict()], "stats": {}, "schema": 1,
           "sites": [Site((A, B), 10, 1).to_dict(), Site((B,), 7, 2).to_dict()], "peak_bytes": 5}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc, indent=3))
    # WHEN read  THEN the sites, and bytes summed from them as load does
    live, peak, header = read_all(path)
    assert [s.bytes for s in live] == [10, 7] and [s.bytes for s in peak] == [5]
    assert header["bytes"] == 17 == AllocationSnapshot.load(path).bytes


@pytest.mark.parametrize("text, reason", [
    ('{"schema": 2, "sites": [], "peak_bytes": 0}', "schema"),
    ('{"schema": 1, "sites": [], "peak_bytes": 0} {}', "extra data"),
    ('{"schema": 1, "sites": [1], "peak_bytes": 0}', "not an object"),
    ('{"schema": 1, "sites": [], "peak_bytes": 1e400}', "infinity"),
    ('{"schema": 1, "sites": [', "bad JSON"),
    ('[]', "expected '{'"),
    ('{"schema": 1, "peak_bytes": 0}', "sites"),
])
def test_iter_file_refuses_what_load_refuses(tmp_path, text, reason):
    # GIVEN a file that is not a snapshot  WHEN read either way  THEN ValueError/KeyError
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises((ValueError, KeyError, OverflowError), match=reason):
        read_all(path)
    with pytest.raises((ValueError, KeyError, OverflowError, AttributeError, TypeError)):
        AllocationSnapshot.load(path)


def test_write_stream_is_the_document_of_the_snapshot(tmp_path):
    # GIVEN a saved snapshot
    original = snapshot()
    path = tmp_path / "s.json"
    original.save(path)
    # WHEN its document is written one site at a time
    out = io.StringIO()
    _, _, header = read_all(path)
    allocations_json.write_stream(header, snap.iter_file(path), out.write)
    # THEN it is the document save wrote (key order aside)
    assert json.loads(out.getvalue()) == json.loads(path.read_text())


def test_frames_sort_compare_and_hash_as_their_fields():
    assert Frame("a", 1, "f") == Frame("a", 1, "f") and Frame("a", 1, "f") < Frame("a", 2, "f")
    assert len({Site((A,), 1, 1), Site((A,), 1, 1)}) == 1
    assert (A.file, A.line, A.function) == ("app.py", 10, "build")
    assert repr(A) == "Frame(file='app.py', line=10, function='build')"
