"""Small charts as inline SVG strings: no scripts, no fonts or images fetched, no library.

One look for every page retrainer writes (the drift page uses `grouped_bars` too): the
champion or reference in grey, the challenger or current data in blue. Every mark carries
a <title>, so hovering names the value. Inputs are small by construction (shares per
feature, a bounded sample of points, a thinned ROC curve).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

GREY = "#98a2b3"
BLUE = "#1570ef"
GREEN = "#027a48"
RED = "#b42318"
AXIS = "#999"
SVG_NS = "http://www.w3.org/2000/svg"

Series = tuple[str, Sequence[float], str]  # (name, values, colour)


def _open(width: float, height: float, title: str) -> list[str]:
    return [f"<svg xmlns='{SVG_NS}' width='{width:.0f}' height='{height:.0f}' role='img'>"
            f"<title>{html.escape(title)}</title>"]


def _scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _num(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def grouped_bars(labels: Sequence[str], series: Sequence[Series], *,
                 title: str = "shares", value: Callable[[float], str] = "{:.2%}".format,
                 peak_label: Callable[[float], str] = "{:.0%}".format) -> str:
    """Bars side by side per label (one per series), all on one scale from zero."""
    w_bar, gap, h, top, bottom, left = 12, 10, 160, 10, 70, 40
    k, m = len(labels), len(series)
    width = left + k * (m * w_bar + gap) + gap
    peak = max([*(v for _, vals, _ in series for v in vals), 1e-9])
    parts = _open(width, h + top + bottom, title)
    parts += [f"<line x1='{left}' y1='{top + h}' x2='{width}' y2='{top + h}' stroke='{AXIS}'/>",
              f"<text x='2' y='{top + 10}' font-size='10'>{peak_label(peak)}</text>"]
    for i, label in enumerate(labels):
        x0 = left + gap + i * (m * w_bar + gap)
        for j, (name, vals, fill) in enumerate(series):
            v = max(vals[i] if i < len(vals) else 0.0, 0.0)
            bh = h * v / peak
            parts.append(
                f"<rect x='{x0 + j * w_bar}' y='{top + h - bh:.1f}' width='{w_bar}' "
                f"height='{bh:.1f}' fill='{fill}'><title>{html.escape(name)} "
                f"{html.escape(label)}: {value(v)}</title></rect>")
        tx, ty = x0 + m * w_bar / 2, top + h + 8
        parts.append(f"<text x='{tx:g}' y='{ty}' font-size='9' text-anchor='end' "
                     f"transform='rotate(-45 {tx:g} {ty})'>{html.escape(label[:18])}</text>")
    parts.append("</svg>")
    return "".join(parts)


def intervals(rows: Sequence[tuple[str, float, float | None, float | None, bool | None]],
              *, title: str = "challenger minus champion") -> str:
    """One row per metric: the difference and its interval, around a zero line.

    Each row has its own scale (mse and r2 differ by orders of magnitude), symmetric
    around zero so the eye reads "which side of zero". `better` colours the row: True when
    the whole interval favours the challenger, False when it favours the champion.
    """
    row_h, left, right, width = 34, 90, 200, 560
    height = 20 + row_h * len(rows)
    parts = _open(width, height, title)
    mid = left + (width - left - right) / 2
    parts.append(f"<line x1='{mid}' y1='6' x2='{mid}' y2='{height - 4}' stroke='{AXIS}' "
                 "stroke-dasharray='3 3'/>")
    parts.append(f"<text x='{mid}' y='12' font-size='9' text-anchor='middle'>0</text>")
    for i, (metric, delta, lo, hi, better) in enumerate(rows):
        y = 28 + i * row_h
        reach = max(abs(v) for v in (delta, lo or 0.0, hi or 0.0)) or 1.0
        sx = _scale(-reach * 1.1, reach * 1.1, left, width - right)
        colour = GREEN if better else RED if better is False else BLUE
        parts.append(f"<text x='4' y='{y + 4}' font-size='11'>{html.escape(metric)}</text>")
        if lo is not None and hi is not None:
            parts.append(f"<line x1='{sx(lo):.1f}' y1='{y}' x2='{sx(hi):.1f}' y2='{y}' "
                         f"stroke='{colour}' stroke-width='4' stroke-linecap='round'>"
                         f"<title>{html.escape(metric)} interval [{_num(lo)}, {_num(hi)}]"
                         "</title></line>")
        parts.append(f"<circle cx='{sx(delta):.1f}' cy='{y}' r='5' fill='{colour}'><title>"
                     f"{html.escape(metric)} difference {_num(delta)}</title></circle>")
        text = f"{_num(delta)}" + (f"  [{_num(lo)}, {_num(hi)}]" if lo is not None
                                    and hi is not None else "")
        parts.append(f"<text x='{width - right + 10}' y='{y + 4}' font-size='11'>"
                     f"{html.escape(text)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def scatter(series: Sequence[tuple[str, Sequence[float], Sequence[float], str]], *,
            title: str, x_label: str, y_label: str, diagonal: bool = False,
            zero_line: bool = False, size: int = 300) -> str:
    """Points of one or more series; optionally the y = x diagonal or the y = 0 line."""
    pad, w, h = 40, size, size
    xs = [v for _, x, _, _ in series for v in x]
    ys = [v for _, _, y, _ in series for v in y]
    if not xs:
        return "<p>no points to plot</p>"
    lo_x, hi_x, lo_y, hi_y = min(xs), max(xs), min(ys), max(ys)
    if diagonal:  # one square range, so the diagonal is the 45-degree line
        lo_x = lo_y = min(lo_x, lo_y)
        hi_x = hi_y = max(hi_x, hi_y)
    sx, sy = _scale(lo_x, hi_x, pad, w - 10), _scale(lo_y, hi_y, h - pad, 10)
    parts = _open(w, h, title)
    parts += [f"<line x1='{pad}' y1='{h - pad}' x2='{w - 10}' y2='{h - pad}' stroke='{AXIS}'/>",
              f"<line x1='{pad}' y1='10' x2='{pad}' y2='{h - pad}' stroke='{AXIS}'/>",
              f"<text x='{w / 2}' y='{h - 8}' font-size='10' text-anchor='middle'>"
              f"{html.escape(x_label)}</text>",
              f"<text x='10' y='{h / 2}' font-size='10' text-anchor='middle' "
              f"transform='rotate(-90 10 {h / 2})'>{html.escape(y_label)}</text>"]
    if diagonal:
        parts.append(f"<line x1='{sx(lo_x):.1f}' y1='{sy(lo_x):.1f}' x2='{sx(hi_x):.1f}' "
                     f"y2='{sy(hi_x):.1f}' stroke='{AXIS}' stroke-dasharray='4 3'/>")
    if zero_line and lo_y <= 0 <= hi_y:
        parts.append(f"<line x1='{pad}' y1='{sy(0):.1f}' x2='{w - 10}' y2='{sy(0):.1f}' "
                     f"stroke='{AXIS}' stroke-dasharray='4 3'/>")
    for name, x, y, colour in series:
        parts.append(f"<g fill='{colour}' fill-opacity='0.55'><title>{html.escape(name)}</title>")
        parts += [f"<circle cx='{sx(a):.1f}' cy='{sy(b):.1f}' r='2.2'/>" for a, b in zip(x, y)]
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def curves(series: Sequence[tuple[str, Sequence[float], Sequence[float], str]], *,
           title: str, x_label: str, y_label: str, size: int = 300) -> str:
    """Lines on the unit square with the chance diagonal: ROC curves."""
    pad, w, h = 40, size, size
    sx, sy = _scale(0, 1, pad, w - 10), _scale(0, 1, h - pad, 10)
    parts = _open(w, h, title)
    parts += [f"<rect x='{pad}' y='10' width='{w - 10 - pad}' height='{h - pad - 10}' "
              f"fill='none' stroke='{AXIS}'/>",
              f"<line x1='{sx(0)}' y1='{sy(0)}' x2='{sx(1)}' y2='{sy(1)}' stroke='{AXIS}' "
              "stroke-dasharray='4 3'/>",
              f"<text x='{w / 2}' y='{h - 8}' font-size='10' text-anchor='middle'>"
              f"{html.escape(x_label)}</text>",
              f"<text x='10' y='{h / 2}' font-size='10' text-anchor='middle' "
              f"transform='rotate(-90 10 {h / 2})'>{html.escape(y_label)}</text>"]
    for name, x, y, colour in series:
        pts = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(x, y))
        parts.append(f"<polyline points='{pts}' fill='none' stroke='{colour}' "
                     f"stroke-width='2'><title>{html.escape(name)}</title></polyline>")
    parts.append("</svg>")
    return "".join(parts)


def heatmap(matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str,
            colour: str = BLUE) -> str:
    """A confusion matrix: rows actual, columns predicted, counts in the cells."""
    k = len(labels)
    cell, left, top = max(28, min(60, 240 // max(k, 1))), 70, 40
    width, height = left + k * cell + 10, top + k * cell + 10
    peak = max([v for row in matrix for v in row] + [1])
    parts = _open(width, height, title)
    parts.append(f"<text x='{left + k * cell / 2}' y='12' font-size='10' "
                 "text-anchor='middle'>predicted</text>")
    parts.append(f"<text x='4' y='{top - 6}' font-size='10'>actual</text>")
    for j, label in enumerate(labels):
        parts.append(f"<text x='{left + j * cell + cell / 2}' y='{top - 6}' font-size='10' "
                     f"text-anchor='middle'>{html.escape(str(label)[:8])}</text>")
    for i, row in enumerate(matrix):
        y = top + i * cell
        parts.append(f"<text x='{left - 6}' y='{y + cell / 2 + 4}' font-size='10' "
                     f"text-anchor='end'>{html.escape(str(labels[i])[:8])}</text>")
        for j, v in enumerate(row):
            opacity = 0.08 + 0.85 * v / peak
            ink = "#fff" if opacity > 0.5 else "#101828"
            parts.append(
                f"<rect x='{left + j * cell}' y='{y}' width='{cell - 2}' height='{cell - 2}' "
                f"fill='{colour}' fill-opacity='{opacity:.2f}'><title>actual {labels[i]}, "
                f"predicted {labels[j]}: {v}</title></rect>"
                f"<text x='{left + j * cell + cell / 2 - 1}' y='{y + cell / 2 + 4}' "
                f"font-size='11' text-anchor='middle' fill='{ink}'>{v}</text>")
    parts.append("</svg>")
    return "".join(parts)


def timeline(points: Sequence[dict], *, title: str, metric: str, width: int = 720) -> str:
    """A metric across decisions, oldest left: challenger and champion on their clean
    holdout; promotions as green rings, rollbacks as red dashed lines.

    Each point: {label, challenger, champion, promoted, rollback} (values may be None).
    """
    h, pad, top = 200, 50, 14
    values = [p[k] for p in points for k in ("challenger", "champion")
              if p.get(k) is not None]
    parts = _open(width, h + 80, title)
    if not values:
        parts.append(f"<text x='10' y='30' font-size='11'>no {html.escape(metric)} recorded "
                     "yet</text></svg>")
        return "".join(parts)
    lo, hi = min(values), max(values)
    margin = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0
    sy = _scale(lo - margin, hi + margin, top + h, top)
    n = len(points)
    # Room on the left for the first (rotated) label.
    sx = _scale(0, max(n - 1, 1), pad + 70, width - 20)
    parts += [f"<line x1='{pad}' y1='{top + h}' x2='{width - 10}' y2='{top + h}' "
              f"stroke='{AXIS}'/>",
              f"<text x='4' y='{sy(hi):.1f}' font-size='9'>{_num(hi)}</text>",
              f"<text x='4' y='{sy(lo):.1f}' font-size='9'>{_num(lo)}</text>"]
    for key, colour in (("champion", GREY), ("challenger", BLUE)):
        pts = [(sx(i), sy(p[key])) for i, p in enumerate(points) if p.get(key) is not None]
        if len(pts) > 1:
            parts.append(f"<polyline points='{' '.join(f'{x:.1f},{y:.1f}' for x, y in pts)}' "
                         f"fill='none' stroke='{colour}' stroke-width='1.5'/>")
    for i, p in enumerate(points):
        x = sx(i)
        label = html.escape(str(p.get("label", "")))
        if p.get("rollback"):
            parts.append(f"<line x1='{x:.1f}' y1='{top}' x2='{x:.1f}' y2='{top + h}' "
                         f"stroke='{RED}' stroke-dasharray='5 3' class='rollback'>"
                         f"<title>{label}: rollback</title></line>")
        for key, colour in (("champion", GREY), ("challenger", BLUE)):
            v = p.get(key)
            if v is None:
                continue
            parts.append(f"<circle cx='{x:.1f}' cy='{sy(v):.1f}' r='3.5' fill='{colour}'>"
                         f"<title>{label}: {key} {_num(v)}</title></circle>")
        if p.get("promoted") and p.get("challenger") is not None:
            parts.append(f"<circle cx='{x:.1f}' cy='{sy(p['challenger']):.1f}' r='7' "
                         f"fill='none' stroke='{GREEN}' stroke-width='2' class='promotion'>"
                         f"<title>{label}: promoted</title></circle>")
        if n <= 24 or i % math.ceil(n / 24) == 0:
            ty = top + h + 10
            parts.append(f"<text x='{x:.1f}' y='{ty}' font-size='9' text-anchor='end' "
                         f"transform='rotate(-40 {x:.1f} {ty})'>{label[:16]}</text>")
    parts.append("</svg>")
    return "".join(parts)
