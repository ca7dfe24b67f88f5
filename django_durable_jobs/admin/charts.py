"""The dashboard's throughput chart as server-rendered SVG: no JavaScript, no CDN.

Bars per minute, successes and failures stacked; each bar has a tooltip
(``<title>``) with its exact figures. Every text goes through ``format_html``.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from .. import operations

WIDTH, HEIGHT = 760, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 24


def _n(value: float) -> str:
    """SVG coordinates as text (``format_html`` escapes its arguments before formatting)."""
    return f"{value:.1f}"


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^k that is >= value (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover


def throughput_svg(series: operations.Throughput) -> SafeString:
    minutes = len(series.succeeded)
    pairs = list(zip(series.succeeded, series.failed, strict=True))
    top = nice_ceiling(max((ok + failed for ok, failed in pairs), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(minutes, 1)
    bar = max(slot - 2, 1)

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    grid = format_html_join(
        "",
        '<line class="ddj-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
        '<text class="ddj-axis" x="{}" y="{}" text-anchor="end">{}</text>',
        (
            (
                LEFT,
                WIDTH - RIGHT,
                _n(y(value)),
                _n(y(value)),
                LEFT - 6,
                _n(y(value) + 4),
                f"{value:,}",
            )
            for value in (0, top // 2 if top >= 2 else 0, top)
        ),
    )
    bars = []
    for index, (ok, failed) in enumerate(pairs):
        when = timezone.localtime(series.start + timedelta(minutes=index)).strftime("%H:%M")
        x = LEFT + index * slot + 1
        bars.append(
            format_html(
                "<g><title>{} - {} succeeded, {} failed attempts</title>"
                '<rect class="ddj-bar-hit" x="{}" y="{}" width="{}" height="{}"/>'
                '<rect class="ddj-bar-ok" x="{}" y="{}" width="{}" height="{}"/>'
                '<rect class="ddj-bar-failed" x="{}" y="{}" width="{}" '
                'height="{}"/>'
                "</g>",
                when,
                f"{ok:,}",
                f"{failed:,}",
                _n(x),
                TOP,
                _n(bar),
                plot_h,
                _n(x),
                _n(y(ok)),
                _n(bar),
                _n(plot_h * ok / top),
                _n(x),
                _n(y(ok + failed)),
                _n(bar),
                _n(plot_h * failed / top),
            )
        )
    labels = format_html_join(
        "",
        '<text class="ddj-axis" x="{}" y="{}" text-anchor="middle">{}</text>',
        (
            (
                _n(LEFT + index * slot + slot / 2),
                HEIGHT - 6,
                timezone.localtime(series.start + timedelta(minutes=index)).strftime("%H:%M"),
            )
            for index in range(0, minutes, 10)
        ),
    )
    return format_html(
        '<svg class="ddj-chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}{}</svg>',
        WIDTH,
        HEIGHT,
        "Jobs succeeded and attempts failed per minute over the last hour",
        grid,
        mark_safe("".join(bars)),  # noqa: S308 - each part built by format_html
        labels,
    )
