"""Inline SVG charts drawn on the server: the pages work offline, with no script or CDN.

Colours come from the page's CSS classes (and its light or dark palette), never from the SVG itself.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_escape = html.escape
UNIT_INTERVAL = (0.0, 1.0)
CHAR_WIDTH = 6.2  # an 11px label's average character width, to keep axis labels from overlapping


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def nice_step(raw: float) -> float:
    """The round step (1, 2, 2.5 or 5 times a power of ten) at or above `raw`."""
    exponent = math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * 10**exponent >= raw * (1 - 1e-9):
            return factor * 10**exponent
    return 10.0 ** (exponent + 1)


def axis_range(
    values: list[float], *, clamp: tuple[float | None, float | None] | None = None, ticks: int = 4
) -> tuple[float, float, list[float]]:
    """(low, high, tick values) of a y axis covering `values` with round ticks.

    A flat series gets a small range around its value (not ±10% of nothing, nor
    0.9 to 1.1 for a share stuck at 1); `clamp` bounds the axis where the
    quantity cannot go (0 to 1 for shares and probability metrics), so a share
    never shows a negative axis.
    """
    lower, upper = clamp or (None, None)
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 if high > low else (abs(high) * 0.02 or 0.01)
    low, high = low - pad, high + pad
    if lower is not None:
        low = max(low, lower)
    if upper is not None:
        high = min(high, upper)
    step = nice_step((high - low) / ticks)
    low, high = round(math.floor(low / step + 1e-9) * step, 12), round(math.ceil(high / step - 1e-9) * step, 12)
    if lower is not None:
        low = max(low, lower)
    if upper is not None:
        high = min(high, upper)
    first = math.ceil(low / step - 1e-9)
    marks = [round(i * step, 12) for i in range(first, math.floor(high / step + 1e-9) + 1)]
    return low, high, marks


@dataclass(frozen=True)
class ReferenceLine:
    """A horizontal line across the chart: a threshold, an allowed drop, the champion's test value."""

    name: str
    value: float
    style: str


class _Frame:
    """The shared parts of both charts: the y axis with its grid, the reference lines and the legend."""

    def __init__(self, width: int, height: int, margins: tuple[int, int, int, int], low: float, high: float) -> None:
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = margins
        self.plot_right, self.plot_bottom = width - self.right, height - self.bottom
        self.low, self.high = low, high

    def y(self, value: float) -> float:
        return self.top + (self.high - value) / ((self.high - self.low) or 1.0) * (self.plot_bottom - self.top)

    def open(self, title: str, extra_class: str = "") -> str:
        e = _escape
        return (f'<svg class="chart{extra_class}" role="img" aria-label="{e(title)}" viewBox="0 0 {self.width} '
                f'{self.height}" width="{self.width}" height="{self.height}">'
                f'<text x="{self.left}" y="14" class="title">{e(title)}</text>')

    def y_axis(self, ticks: list[float]) -> str:
        return "".join(
            f'<line x1="{self.left}" y1="{self.y(v):.1f}" x2="{self.plot_right}" y2="{self.y(v):.1f}" class="grid"/>'
            f'<text x="{self.left - 6}" y="{self.y(v) + 4:.1f}" text-anchor="end">{v:.4g}</text>'
            for v in ticks
        ) + (f'<line x1="{self.left}" y1="{self.plot_bottom}" x2="{self.plot_right}" y2="{self.plot_bottom}" '
             'class="axis"/>')

    def references(self, lines: list[ReferenceLine]) -> str:
        e = _escape
        return "".join(
            f'<g class="reference {e(line.style)}"><line x1="{self.left}" y1="{self.y(line.value):.1f}" '
            f'x2="{self.plot_right}" y2="{self.y(line.value):.1f}"><title>{e(line.name)}: {line.value:.4g}</title>'
            "</line></g>"
            for line in lines
        )

    def legend(self, entries: list[tuple[str, str, str]]) -> str:
        """(label, style, kind) rows to the right of the plot."""
        e = _escape
        return "".join(
            f'<g class="legend {kind} {e(style)}"><line x1="{self.plot_right + 10}" y1="{self.top + 4 + row * 16}" '
            f'x2="{self.plot_right + 28}" y2="{self.top + 4 + row * 16}"/><text x="{self.plot_right + 32}" '
            f'y="{self.top + 8 + row * 16}">{e(name)}</text></g>'
            for row, (name, style, kind) in enumerate(entries)
        )

    def x_label(self, x: float, text: str) -> str:
        # The outermost labels hang inwards, so neither edge cuts them off.
        anchor = "start" if x <= self.left + 1 else "end" if x >= self.plot_right - 1 else "middle"
        return f'<text x="{x:.1f}" y="{self.plot_bottom + 16}" text-anchor="{anchor}">{_escape(text)}</text>'


def _y_range(values: list[float], clamp: tuple[float | None, float | None] | None,
             value_range: tuple[float, float] | None) -> tuple[float, float, list[float]]:
    if value_range is None:
        return axis_range(values, clamp=clamp)
    low, high = value_range
    return low, high, [low + (high - low) * i / 4 for i in range(5)]


def line_chart_svg(
    points: list[tuple[str, Any]],
    title: str,
    references: list[ReferenceLine] | None = None,
    *,
    clamp: tuple[float | None, float | None] | None = None,
    width: int = 760,
    height: int = 220,
) -> str:
    """An inline SVG line chart of labelled values (non-numbers are left out), with reference lines.

    The y axis covers every point and reference line; `clamp` bounds it (e.g. (0, 1) for roc_auc).
    """
    values = [(label, float(v)) for label, v in points if _number(v)]
    references = references or []
    e = _escape
    if not values:
        return f'<p class="empty">{e(title)}: no data yet</p>'
    low, high, ticks = axis_range([v for _, v in values] + [line.value for line in references], clamp=clamp)
    frame = _Frame(width, height, (56, 190 if references else 16, 26, 40), low, high)
    step = (frame.plot_right - frame.left) / max(len(values) - 1, 1)
    coords = [(frame.left + i * step, frame.y(v)) for i, (_, v) in enumerate(values)]
    label_width = max(len(label) for label, _ in values) * CHAR_WIDTH + 12
    every = max(1, math.ceil(label_width / step)) if len(values) > 1 else 1
    shown = list(range(0, len(values), every))
    shown[-1] = len(values) - 1  # the newest always has its label (in place of a neighbour too close to it)
    labels = "".join(frame.x_label(coords[i][0], values[i][0]) for i in shown)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{e(label)}: {v:.4g}</title></circle>'
        for (x, y), (label, v) in zip(coords, values, strict=True)
    )
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    return (
        frame.open(title) + frame.y_axis(ticks) + labels + frame.references(references)
        + f'<g class="series primary"><polyline points="{path}" fill="none"/>{dots}</g>'
        + frame.legend([(f"{line.name} {line.value:.4g}", line.style, "reference") for line in references])
        + "</svg>"
    )


@dataclass(frozen=True)
class TimePoint:
    """One measurement: `passed` False draws it as a breach, None as "no verdict" (hollow);
    `band` is its [lower, upper] range, drawn as a whisker and a shaded area."""

    at: datetime
    value: Any
    passed: bool | None = True
    band: tuple[float, float] | None = None


@dataclass(frozen=True)
class TimeSeries:
    """One line of a time chart; `style` names its CSS class (colour, dashes)."""

    name: str
    style: str
    points: list[TimePoint] = field(default_factory=list)


def time_chart_svg(
    title: str,
    series: list[TimeSeries],
    references: list[ReferenceLine] | None = None,
    *,
    value_range: tuple[float, float] | None = None,
    clamp: tuple[float | None, float | None] | None = None,
    width: int = 760,
    height: int = 240,
) -> str:
    """Several series over time, each point placed at its time, with reference lines and shaded bands.

    Non-numeric values are left out. The vertical range covers every point,
    band and reference line (so a threshold far off is still drawn), within
    `clamp`, unless `value_range` fixes it (shares, coverage).
    """
    e = _escape
    references = references or []
    plotted = [
        TimeSeries(s.name, s.style, [p for p in s.points if _number(p.value)]) for s in series
    ]
    if not any(s.points for s in plotted):
        return f'<p class="empty">{e(title)}: no data yet</p>'
    times = [p.at for s in plotted for p in s.points]
    values = [float(p.value) for s in plotted for p in s.points]
    values += [bound for s in plotted for p in s.points if p.band for bound in p.band]
    values += [line.value for line in references]
    low, high, y_ticks = _y_range(values, clamp, value_range)
    frame = _Frame(width, height, (56, 190, 26, 40), low, high)
    first, last = min(times), max(times)
    seconds = (last - first).total_seconds()

    def x(at: datetime) -> float:
        if not seconds:
            return (frame.left + frame.plot_right) / 2
        return frame.left + (at - first).total_seconds() / seconds * (frame.plot_right - frame.left)

    tick_format = "%Y-%m-%d %H:%M:%S" if 0 < seconds < 3600 else "%Y-%m-%d %H:%M"
    # One label per distinct text: points a few seconds apart would print the same time three times.
    ticks = {at.strftime(tick_format): at for at in (first, first + (last - first) / 2, last)}.items()
    legend = [(s.name, s.style, "series") for s in plotted if s.points]
    legend += [(f"{line.name} {line.value:.4g}", line.style, "reference") for line in references]
    return (
        frame.open(title, " time-chart") + frame.y_axis(y_ticks)
        + "".join(frame.x_label(x(at), text) for text, at in ticks)
        + frame.references(references) + "".join(_series_svg(s, x, frame.y) for s in plotted)
        + frame.legend(legend) + "</svg>"
    )


def _series_svg(series: TimeSeries, x: Any, y: Any) -> str:
    e = _escape
    points = sorted(series.points, key=lambda p: p.at)
    banded = [p for p in points if p.band]
    parts = [f'<g class="series {e(series.style)}" data-series="{e(series.name)}">']
    if len(banded) > 1:
        outline = [(x(p.at), y(p.band[1])) for p in banded] + [(x(p.at), y(p.band[0])) for p in reversed(banded)]
        parts.append(f'<polygon class="band" points="{" ".join(f"{px:.1f},{py:.1f}" for px, py in outline)}"/>')
    for p in banded:
        parts.append(f'<line class="whisker" x1="{x(p.at):.1f}" y1="{y(p.band[0]):.1f}" x2="{x(p.at):.1f}" '
                     f'y2="{y(p.band[1]):.1f}"/>')
    parts.append(f'<polyline fill="none" points="{" ".join(f"{x(p.at):.1f},{y(float(p.value)):.1f}" for p in points)}"/>')
    for p in points:
        verdict = {True: "passed", False: "breach", None: "no-verdict"}[p.passed]
        band = f" (band {p.band[0]:.4g} to {p.band[1]:.4g})" if p.band else ""
        parts.append(
            f'<circle class="{verdict}" cx="{x(p.at):.1f}" cy="{y(float(p.value)):.1f}" r="{4 if p.passed is False else 3}">'
            f'<title>{e(series.name)} {p.at.strftime("%Y-%m-%d %H:%M")}: {float(p.value):.4g}{band}'
            f'{"" if p.passed else " — breach" if p.passed is False else " — no verdict"}</title></circle>'
        )
    parts.append("</g>")
    return "".join(parts)


def bar_chart_svg(bars: list[tuple[str, Any]], title: str, *, errors: list[Any] | None = None, width: int = 760,
                  row_height: int = 18) -> str:
    """Horizontal bars from zero, one per labelled value (negative values go left), with optional ± whiskers.

    Labels sit left of the axis, cut to fit; each bar's tooltip has the whole label and the value.
    """
    e = _escape
    rows = [(label, float(v), float(err) if errors and _number(err) else None)
            for (label, v), err in zip(bars, errors or [None] * len(bars), strict=True) if _number(v)]
    if not rows:
        return f'<p class="empty">{e(title)}: no data yet</p>'
    label_chars = min(max(len(label) for label, _, _ in rows), 28)
    left = int(label_chars * CHAR_WIDTH) + 16
    right, top = 64, 26
    height = top + len(rows) * row_height + 8
    ends = [v + (err or 0.0) * (1 if v >= 0 else -1) for _, v, err in rows]
    low, high = min(0.0, *ends), max(0.0, *ends)
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return left + (value - low) / span * (width - left - right)

    parts = [f'<svg class="chart bar-chart" role="img" aria-label="{e(title)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}"><text x="{left}" y="14" class="title">{e(title)}</text>',
             f'<line x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{height - 4}" class="axis"/>']
    for row, (label, value, err) in enumerate(rows):
        y = top + row * row_height
        start, stop = sorted((x(0), x(value)))
        shown = label if len(label) <= label_chars else label[: label_chars - 1] + "…"
        parts.append(
            f'<g class="bar-row" data-label="{e(label)}"><title>{e(label)}: {value:.4g}'
            f'{f" ± {err:.2g}" if err is not None else ""}</title>'
            f'<text x="{left - 6}" y="{y + row_height - 6}" text-anchor="end">{e(shown)}</text>'
            f'<rect class="{"negative" if value < 0 else "positive"}" x="{start:.1f}" y="{y + 3}" '
            f'width="{max(stop - start, 0.5):.1f}" height="{row_height - 6}"/>'
        )
        if err:
            parts.append(f'<line class="whisker" x1="{x(value - err):.1f}" y1="{y + row_height / 2:.1f}" '
                         f'x2="{x(value + err):.1f}" y2="{y + row_height / 2:.1f}"/>')
        end = max(x(value), x(0), x(value + (err or 0.0)) if value >= 0 else x(0))  # right of bar and whisker
        parts.append(f'<text x="{end + 4:.1f}" y="{y + row_height - 6}">{value:.3g}</text></g>')
    return "".join(parts) + "</svg>"


def calibration_chart_svg(mean_predicted: list[float], fraction_positive: list[float], rows: list[int],
                          title: str = "calibration: observed vs predicted probability",
                          *, width: int = 420, height: int = 320) -> str:
    """Observed against predicted probability on a 0-1 square, with the diagonal of perfect calibration."""
    e = _escape
    points = [(p, o, n) for p, o, n in zip(mean_predicted, fraction_positive, rows, strict=True)
              if _number(p) and _number(o)]
    if not points:
        return f'<p class="empty">{e(title)}: no data yet</p>'
    frame = _Frame(width, height, (48, 16, 26, 40), 0.0, 1.0)

    def x(value: float) -> float:
        return frame.left + value * (frame.plot_right - frame.left)

    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    path = " ".join(f"{x(p):.1f},{frame.y(o):.1f}" for p, o, _ in points)
    dots = "".join(f'<circle cx="{x(p):.1f}" cy="{frame.y(o):.1f}" r="3"><title>predicted {p:.3g}: observed '
                   f'{o:.3g} ({n} rows)</title></circle>' for p, o, n in points)
    return (
        frame.open(title, " calibration") + frame.y_axis(ticks)
        + "".join(frame.x_label(x(t), f"{t:g}") for t in ticks)
        + f'<g class="reference threshold"><line x1="{x(0):.1f}" y1="{frame.y(0):.1f}" x2="{x(1):.1f}" '
          f'y2="{frame.y(1):.1f}"><title>perfectly calibrated</title></line></g>'
        + f'<g class="series primary"><polyline points="{path}" fill="none"/>{dots}</g></svg>'
    )
