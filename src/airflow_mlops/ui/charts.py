"""Inline SVG charts drawn on the server: the pages work offline, with no script or CDN."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_escape = html.escape


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def line_chart_svg(points: list[tuple[str, Any]], title: str, width: int = 560, height: int = 180) -> str:
    """A small inline SVG line chart of labelled values (non-numbers are left out)."""
    values = [(label, float(v)) for label, v in points if _number(v)]
    e = _escape
    if not values:
        return f'<p class="empty">{e(title)}: no data yet</p>'
    left, right, top, bottom = 48, 12, 24, 36
    low, high = min(v for _, v in values), max(v for _, v in values)
    span = (high - low) or abs(high) or 1.0
    low, high = low - span * 0.1, high + span * 0.1
    step = (width - left - right) / max(len(values) - 1, 1)

    def xy(i: int, value: float) -> tuple[float, float]:
        return left + i * step, top + (high - value) / (high - low) * (height - top - bottom)

    coords = [xy(i, v) for i, (_, v) in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{e(label)}: {v:.4g}</title></circle>'
        for (x, y), (label, v) in zip(coords, values, strict=True)
    )
    every = max(1, len(values) // 8)
    labels = "".join(
        f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle">{e(label)}</text>'
        for i, ((x, _), (label, _)) in enumerate(zip(coords, values, strict=True)) if i % every == 0
    )
    axis = (f'<text x="4" y="{top + 4}">{high:.4g}</text>'
            f'<text x="4" y="{height - bottom}">{low:.4g}</text>')
    return (
        f'<svg class="chart" role="img" aria-label="{e(title)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f'<text x="{left}" y="14" class="title">{e(title)}</text>{axis}'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" class="axis"/>'
        f'<polyline points="{path}" fill="none"/>{dots}{labels}</svg>'
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


@dataclass(frozen=True)
class ReferenceLine:
    """A horizontal line across the chart: a threshold, an allowed drop, the champion's test value."""

    name: str
    value: float
    style: str


def time_chart_svg(
    title: str,
    series: list[TimeSeries],
    references: list[ReferenceLine] | None = None,
    *,
    value_range: tuple[float, float] | None = None,
    width: int = 760,
    height: int = 240,
) -> str:
    """Several series over time, each point placed at its time, with reference lines and shaded bands.

    Non-numeric values are left out. The vertical range covers every point,
    band and reference line (so a threshold far off is still drawn), unless
    `value_range` fixes it (shares, coverage).
    """
    e = _escape
    references = references or []
    plotted = [
        TimeSeries(s.name, s.style, [p for p in s.points if _number(p.value)]) for s in series
    ]
    if not any(s.points for s in plotted):
        return f'<p class="empty">{e(title)}: no data yet</p>'
    times = [p.at for s in plotted for p in s.points]
    if value_range is None:
        values = [float(p.value) for s in plotted for p in s.points]
        values += [bound for s in plotted for p in s.points if p.band for bound in p.band]
        values += [line.value for line in references]
        low, high = min(values), max(values)
        margin = ((high - low) or abs(high) or 1.0) * 0.08
        low, high = low - margin, high + margin
    else:
        low, high = value_range
    left, right, top, bottom = 56, 190, 26, 40
    plot_right, plot_bottom = width - right, height - bottom
    first, last = min(times), max(times)
    seconds = (last - first).total_seconds()

    def x(at: datetime) -> float:
        if not seconds:
            return (left + plot_right) / 2
        return left + (at - first).total_seconds() / seconds * (plot_right - left)

    def y(value: float) -> float:
        return top + (high - value) / ((high - low) or 1.0) * (plot_bottom - top)

    parts = [
        f'<svg class="chart time-chart" role="img" aria-label="{e(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">',
        f'<text x="{left}" y="14" class="title">{e(title)}</text>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = low + (high - low) * fraction
        parts.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{plot_right}" y2="{y(value):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.4g}</text>')
    ticks = sorted({first, last} if seconds else {first})
    if seconds:
        ticks.insert(1, first + (last - first) / 2)
    tick_format = "%Y-%m-%d %H:%M:%S" if 0 < seconds < 3600 else "%Y-%m-%d %H:%M"
    for at in ticks:
        parts.append(f'<text x="{x(at):.1f}" y="{plot_bottom + 16}" text-anchor="middle">'
                     f'{at.strftime(tick_format)}</text>')
    parts.append(f'<line x1="{left}" y1="{plot_bottom}" x2="{plot_right}" y2="{plot_bottom}" class="axis"/>')
    for line in references:
        parts.append(
            f'<g class="reference {e(line.style)}"><line x1="{left}" y1="{y(line.value):.1f}" x2="{plot_right}" '
            f'y2="{y(line.value):.1f}"><title>{e(line.name)}: {line.value:.4g}</title></line></g>'
        )
    for s in plotted:
        parts.append(_series_svg(s, x, y))
    legend = [(s.name, s.style, "series") for s in plotted if s.points]
    legend += [(f"{line.name} {line.value:.4g}", line.style, "reference") for line in references]
    for row, (name, style, kind) in enumerate(legend):
        legend_y = top + 4 + row * 16
        parts.append(
            f'<g class="legend {kind} {e(style)}"><line x1="{plot_right + 10}" y1="{legend_y}" '
            f'x2="{plot_right + 28}" y2="{legend_y}"/><text x="{plot_right + 32}" y="{legend_y + 4}">{e(name)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


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
