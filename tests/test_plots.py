"""Scatter plots (dass.plots): the files are written, in the asked format, and are valid images."""
import xml.etree.ElementTree as ET

import matplotlib.image
import pytest

from dass.errors import DassError
from dass.plots import POINTS_GID, TOP1_GID, scatter_plot


def marker_counts(svg_path):
    """Markers drawn in the points group and in the top-1 group of a plot's SVG."""
    root = ET.parse(svg_path).getroot()
    counts = {}
    for g in root.iter():
        if g.get("id") in (POINTS_GID, TOP1_GID):
            counts[g.get("id")] = sum(1 for e in g.iter() if e.tag.endswith("use"))
    return counts, "".join(root.itertext())


def test_svg_has_one_marker_per_finite_point_and_the_pick_apart(tmp_path):
    p = scatter_plot(tmp_path / "a.svg", [50, 60, 70, float("nan")], [1, 2, 3, 4], title="a <&> b", highlight=2)
    counts, text = marker_counts(p)
    assert counts == {POINTS_GID: 2, TOP1_GID: 1}
    assert "a <&> b" in text and "true accuracy (%)" in text


def test_svg_is_byte_identical_for_the_same_data(tmp_path):
    a = scatter_plot(tmp_path / "a.svg", [1, 2, 3], [3, 1, 2], title="t", highlight=0).read_bytes()
    b = scatter_plot(tmp_path / "b.svg", [1, 2, 3], [3, 1, 2], title="t", highlight=0).read_bytes()
    c = scatter_plot(tmp_path / "c.svg", [1, 2, 3], [3, 1, 2.5], title="t", highlight=0).read_bytes()
    assert a == b and a != c


def test_png_is_a_readable_image_of_the_asked_size(tmp_path):
    p = scatter_plot(tmp_path / "sub" / "a.png", [50, 60, 70], [1, 2, 3], highlight=1, width=320, height=240)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(p)
    assert img.shape[:2] == (240, 320)
    assert img[..., :3].min() < 0.5        # something was drawn on the white background


@pytest.mark.parametrize("x, y, highlight", [([5, 5], [1, 1], None),                  # constant values
                                             ([float("nan")], [1.0], 0),              # nothing finite
                                             ([], [], None),
                                             ([1, 2], [1, 2], 7)])                    # pick out of range
def test_degenerate_data_still_draws(tmp_path, x, y, highlight):
    counts, _ = marker_counts(scatter_plot(tmp_path / "d.svg", x, y, highlight=highlight))
    finite = sum(1 for a in x if a == a)
    assert counts.get(POINTS_GID, 0) + counts.get(TOP1_GID, 0) == finite


def test_unknown_format_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(DassError, match=r"a\.gif.*\.png, \.svg, \.pdf"):
        scatter_plot(tmp_path / "a.gif", [1], [1])
    assert list(tmp_path.iterdir()) == []
