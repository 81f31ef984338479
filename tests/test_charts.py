"""Charts of a mart for the Dagster UI: one bar per x, one colour per series, embedded as SVG."""

from __future__ import annotations

import base64

import pandas as pd

from orchestration.charts import as_markdown, bar_chart


def test_one_bar_per_x_and_negative_values_below_the_axis():
    frame = pd.DataFrame({"birth_year": [1950, 1940, 1960], "avg_score": [2.5, -1.0, 7.0]})
    svg = bar_chart(frame, {"x": "birth_year", "y": "avg_score"}, "stedi_risk_by_birth_year")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 3
    assert svg.index("1940: -1.00") < svg.index("1950: 2.50") < svg.index("1960: 7.00")  # sorted by x


def test_a_series_column_gives_a_bar_per_x_and_series():
    frame = pd.DataFrame(
        {
            "window_start": pd.to_datetime(["2026-03-02 09:00", "2026-03-02 09:00", "2026-03-02 09:10"]),
            "category": ["Amnesia", "Asthma", "Asthma"],
            "revenue": [10.0, 20.0, 5.0],
        }
    )
    svg = bar_chart(frame, {"x": "window_start", "y": "revenue", "series": "category"}, "office_revenue_10min")
    assert svg.count("<rect") == 4  # a missing window and category is a zero bar
    assert "Amnesia" in svg and "Asthma" in svg and "09:10" in svg


def test_the_chart_is_embedded_as_a_markdown_image():
    markdown = as_markdown("<svg></svg>", "chart")
    prefix = "![chart](data:image/svg+xml;base64,"
    assert markdown.startswith(prefix)
    assert base64.b64decode(markdown[len(prefix) : -1]) == b"<svg></svg>"
