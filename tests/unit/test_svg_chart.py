"""The SVG charts (pymemtrace.reporters.svg_chart): line_chart and
timeline_svg draw through one core, so what one does the other does too."""
import xml.etree.ElementTree as ET

import pytest

from pymemtrace.reporters.svg_chart import byte_ticks, human_bytes, line_chart, timeline_svg

SVG = "{http://www.w3.org/2000/svg}"
MiB = 1 << 20


def texts(svg):
    return [t.text for t in ET.fromstring(svg).iter(SVG + "text")]


def series(svg):
    root = ET.fromstring(svg)
    corners = root.find(f".//{SVG}polyline").get("points").split()
    data = [tuple(map(float, p.split(","))) for p in root.find(f".//{SVG}metadata").text.split()]
    return corners, data


def test_human_bytes_picks_the_largest_unit_below_the_value():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(-3 * MiB) == "-3.0 MiB"
    assert human_bytes(5 << 50) == "5120.0 TiB"


def test_byte_ticks_are_round_in_binary_units():
    # GIVEN sizes between 10 and 12 MiB  WHEN ticks are chosen
    ticks = byte_ticks(10 * MiB, 12 * MiB)
    # THEN they cover the range on whole fractions of a MiB, not of 10**6
    assert ticks[0] <= 10 * MiB and ticks[-1] >= 12 * MiB
    assert all((t * 10) % MiB == 0 for t in ticks)


@pytest.mark.parametrize("chart", ["line", "timeline"])
def test_both_charts_share_axes_labels_markers_and_data(chart):
    # GIVEN the same byte series and marker  WHEN drawn by either chart
    points = [(0.0, 10.0 * MiB), (5.0, 12.0 * MiB), (9.0, 11.0 * MiB)]
    if chart == "line":
        svg = line_chart(points, title="a < b", x_label="x", y_label="y",
                         markers=[(5.0, "gc & co")], y_is_bytes=True)
    else:
        svg = timeline_svg(points, title="a < b", x_label="x", y_label="y",
                           markers=[(5.0, "gc & co")])
    shown = texts(svg)
    # THEN each has the title, axis labels, human-readable sizes on the y
    # axis, the marker's label, and the data as metadata (6 digits)
    assert {"a < b", "x", "y", "gc & co"} <= set(shown)
    assert any(t.endswith(" MiB") for t in shown)
    data = series(svg)[1]
    assert [x for x, _ in data] == [x for x, _ in points]
    assert [y for _, y in data] == pytest.approx([y for _, y in points], rel=1e-5)


def test_timeline_is_a_step_line_sorted_by_event():
    # GIVEN records out of order  WHEN drawn as a timeline
    svg = timeline_svg([(9, 3), (0, 1), (5, 2)], y_is_bytes=False)
    corners, data = series(svg)
    # THEN the data is sorted and each value holds until the next event
    # (two corners per step), while line_chart joins the points directly
    assert data == [(0, 1), (5, 2), (9, 3)]
    assert len(corners) == 5
    assert len(series(line_chart(data, title="t", x_label="x", y_label="y"))[0]) == 3


def test_only_the_line_chart_is_a_standalone_xml_file():
    # The report command writes the timeline as it is (it starts at <svg).
    assert line_chart([(0, 1)], title="t", x_label="x", y_label="y").startswith("<?xml")
    assert timeline_svg([(0, 1)]).startswith("<svg")
    assert "no data" in texts(timeline_svg([]))
