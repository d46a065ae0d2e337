"""Scatter plots of score vs true accuracy (one per task and method), drawn with matplotlib.

The figure is built on matplotlib's object API with the Agg canvas, never through ``pyplot``: no
global backend is switched and no display is needed. The format follows the file's suffix (``.png``,
``.svg``, ``.pdf``); SVG output is byte-identical for identical data (fixed id salt, no date), so
re-running a meta-test does not churn its plots.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Optional, Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .errors import DassError
from .io import atomic_write_bytes

FORMATS = ("png", "svg", "pdf")
POINTS_GID = "points"     # SVG group ids: tests and readers find the markers by them
TOP1_GID = "top1"
_DPI = 100


def _finite_pairs(x: Sequence[float], y: Sequence[float], highlight: Optional[int]):
    """Finite points (the highlighted one apart): ``(xs, ys, top)`` with ``top`` None when not drawable."""
    pts = [(float(a), float(b)) for a, b in zip(x, y)]
    keep = [i for i, (a, b) in enumerate(pts) if math.isfinite(a) and math.isfinite(b)]
    top = pts[highlight] if highlight is not None and highlight in keep else None
    rest = [pts[i] for i in keep if i != highlight]
    return [a for a, _ in rest], [b for _, b in rest], top


def _render(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else None
    with matplotlib.rc_context({"svg.hashsalt": "dass", "svg.fonttype": "none"}):
        FigureCanvasAgg(fig).print_figure(buf, format=fmt, dpi=_DPI, metadata=metadata)
    return buf.getvalue()


def scatter_plot(path: str | Path, x: Sequence[float], y: Sequence[float], title: str = "",
                 xlabel: str = "true accuracy (%)", ylabel: str = "predicted", highlight: Optional[int] = None,
                 width: int = 480, height: int = 400) -> Path:
    """Write a scatter plot of ``(x[i], y[i])`` to ``path`` (format from its suffix), atomically.

    Non-finite points are left out; ``highlight`` marks one point in red (e.g. the top-1 pick).
    ``width`` x ``height`` is the size in pixels.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise DassError(f"plot file {path}: unknown image format {path.suffix!r}; use one of "
                        f"{', '.join('.' + f for f in FORMATS)}")
    xs, ys, top = _finite_pairs(x, y, highlight)
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(xs, ys, s=20, color="#1f77b4", alpha=0.75, gid=POINTS_GID)
    if top is not None:
        ax.scatter([top[0]], [top[1]], s=40, color="#d62728", gid=TOP1_GID, label="top-1")
        ax.legend(loc="best", fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return atomic_write_bytes(path, _render(fig, fmt))

