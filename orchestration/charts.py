"""Bar charts of a mart for its materialization in the Dagster UI, as SVG in Markdown.

A model asks for a chart in its `.yml`: `config: meta: chart: {x: <column>, y: <column>,
series: <column, optional>}`. The chart is small and plain on purpose: it shows the shape of
the latest build next to its preview, not a report.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping

import pandas as pd

COLORS = ("#4f6bed", "#e8743b", "#19a979", "#ed4a7b", "#945ecf")
WIDTH, HEIGHT, MARGIN = 640, 260, 40
MAX_BARS = 40


def bar_chart(frame: pd.DataFrame, spec: Mapping[str, str], title: str) -> str:
    """The frame as an SVG bar chart: one bar per x (the last MAX_BARS), one colour per series."""
    x, y, series = spec["x"], spec["y"], spec.get("series")
    table = frame.pivot_table(index=x, columns=series, values=y, aggfunc="sum") if series else frame.set_index(x)[[y]]
    table = table.sort_index().tail(MAX_BARS).fillna(0)
    values = table.to_numpy(dtype=float)
    top = max(float(values.max()), 0.0) if values.size else 0.0
    bottom = min(float(values.min()), 0.0) if values.size else 0.0
    span = (top - bottom) or 1.0
    plot_w, plot_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    slot = plot_w / max(len(table), 1)
    bar = slot * 0.8 / max(len(table.columns), 1)
    zero = MARGIN + plot_h * top / span
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="10">',
        f'<text x="{MARGIN}" y="16" font-size="12">{html.escape(title)}</text>',
        f'<line x1="{MARGIN}" y1="{zero:.1f}" x2="{WIDTH - MARGIN}" y2="{zero:.1f}" stroke="#999"/>',
        f'<text x="4" y="{MARGIN + 4}">{top:,.4g}</text>',
        f'<text x="4" y="{MARGIN + plot_h}">{bottom:,.4g}</text>',
    ]
    for i, label in enumerate(table.index):
        for j, value in enumerate(values[i]):
            height = plot_h * abs(value) / span
            left = MARGIN + i * slot + slot * 0.1 + j * bar
            top_y = zero - height if value >= 0 else zero
            parts.append(
                f'<rect x="{left:.1f}" y="{top_y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{COLORS[j % len(COLORS)]}"><title>{html.escape(str(label))}: {value:,.2f}</title></rect>'
            )
        if len(table) <= 12 or i % max(1, len(table) // 8) == 0:
            parts.append(
                f'<text x="{MARGIN + i * slot + slot / 2:.1f}" y="{HEIGHT - MARGIN + 14}" text-anchor="middle">'
                f"{html.escape(_short(label))}</text>"
            )
    for j, name in enumerate(table.columns if series else []):
        parts.append(
            f'<text x="{WIDTH - MARGIN - 120}" y="{16 + 12 * j}" fill="{COLORS[j % len(COLORS)]}">{html.escape(str(name))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def as_markdown(svg: str, alt: str) -> str:
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


def _short(label: object) -> str:
    if isinstance(label, pd.Timestamp):
        return label.strftime("%H:%M")
    return str(label)[:10]
