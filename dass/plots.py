"""A dependency-free SVG scatter plot (predicted vs true accuracy per task and method).

matplotlib is not a runtime dependency; an SVG is plain text, opens in any browser and diffs well.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence
from xml.sax.saxutils import escape

from .io import atomic_write_text


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-2:
        return f"{v:.2g}"
    return f"{v:.4g}"


def scatter_svg(path: str | Path, x: Sequence[float], y: Sequence[float], title: str = "",
                xlabel: str = "true accuracy (%)", ylabel: str = "predicted", highlight: Optional[int] = None,
                width: int = 480, height: int = 400) -> Path:
    """Write a scatter plot of ``(x[i], y[i])``; ``highlight`` marks one point (e.g. the top-1 pick)."""
    pts = [(float(a), float(b)) for a, b in zip(x, y)]
    ok = [(a, b) for a, b in pts if math.isfinite(a) and math.isfinite(b)]
    ml, mr, mt, mb = 64, 16, 36, 48
    pw, ph = width - ml - mr, height - mt - mb

    def rng(vals):
        if not vals:
            return 0.0, 1.0
        lo, hi = min(vals), max(vals)
        pad = (hi - lo) * 0.05 or max(abs(lo) * 0.05, 0.5)
        return lo - pad, hi + pad

    x0, x1 = rng([a for a, _ in ok])
    y0, y1 = rng([b for _, b in ok])

    def sx(v):
        return ml + (v - x0) / (x1 - x0) * pw

    def sy(v):
        return mt + ph - (v - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>']
    for t in nice_ticks(x0, x1):
        if x0 <= t <= x1:
            X = sx(t)
            out.append(f'<line x1="{X:.1f}" y1="{mt + ph}" x2="{X:.1f}" y2="{mt + ph + 4}" stroke="#444"/>')
            out.append(f'<text x="{X:.1f}" y="{mt + ph + 16}" text-anchor="middle">{_fmt(t)}</text>')
    for t in nice_ticks(y0, y1):
        if y0 <= t <= y1:
            Y = sy(t)
            out.append(f'<line x1="{ml - 4}" y1="{Y:.1f}" x2="{ml}" y2="{Y:.1f}" stroke="#444"/>')
            out.append(f'<text x="{ml - 6}" y="{Y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 10}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{mt + ph / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {mt + ph / 2:.1f})">{escape(ylabel)}</text>')
    for i, (a, b) in enumerate(pts):
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        if i == highlight:
            continue
        out.append(f'<circle cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="3.5" fill="#1f77b4" fill-opacity="0.75"/>')
    if highlight is not None and 0 <= highlight < len(pts) and all(map(math.isfinite, pts[highlight])):
        a, b = pts[highlight]
        out.append(f'<circle cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="5" fill="#d62728"><title>top-1</title></circle>')
    out.append("</svg>")
    return atomic_write_text(path, "\n".join(out) + "\n")
