"""Stacked bar charts drawn on the server as SVG: no script, readable without colour
(every bar has a <title>), and exactly the numbers of the table below them."""

import math
from datetime import date
from xml.sax.saxutils import escape

from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2f6fde", "#e8833a", "#3aa676", "#c94f7c", "#8a63d2", "#c9a227", "#4fb3c9", "#7a7a7a")
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 28


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten at or above value (an axis top)."""
    if value <= 0:
        return 1.0
    scale = 10 ** math.floor(math.log10(value))
    return next(step * scale for step in (1, 2, 2.5, 5, 10) if step * scale >= value)


def stacked_bars(
    title: str,
    days: list[date],
    series: dict[str, dict[date, float]],
    value_format: str = "{:,.0f}",
) -> SafeString:
    """One bar per day, one stacked segment per series, a legend beneath."""
    labels = sorted(series)
    colours = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    peak = max((sum(series[label].get(day, 0) for label in labels) for day in days), default=0)
    top = _nice_ceiling(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.7, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT + 20 * ((len(labels) + 3) // 4)}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{escape(value_format.format(top * fraction))}</text>"
        )
    for index, day in enumerate(days):
        x = LEFT + index * slot + (slot - bar_w) / 2
        base = TOP + plot_h
        parts.append(f'<g class="day" data-day="{day.isoformat()}">')
        for label in labels:
            value = series[label].get(day, 0)
            if not value:
                continue
            height = plot_h * value / top
            base -= height
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{height:.1f}" '
                f'fill="{colours[label]}"><title>{escape(label)}, {day.isoformat()}: '
                f"{escape(value_format.format(value))}</title></rect>"
            )
        parts.append("</g>")
        if len(days) <= 10 or index % max(len(days) // 8, 1) == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" '
                f'class="axis">{day:%b %d}</text>'
            )
    for i, label in enumerate(labels):
        x, y = LEFT + (i % 4) * 165, HEIGHT + 6 + 20 * (i // 4)
        parts.append(
            f'<rect x="{x}" y="{y}" width="10" height="10" fill="{colours[label]}"/>'
            f'<text x="{x + 14}" y="{y + 9}" class="legend">{escape(label[:24])}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))
