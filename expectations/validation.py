"""Validate a DataFrame against a suite with Great Expectations and summarise what failed.

GX is imported on first use (it takes seconds), and validates in an ephemeral context over
pandas: the raw rows come from the lake as a DataFrame, so nothing is configured on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pandas as pd

from expectations.suites import load_suite

# Kafka coordinates shown with every failing row, so a reader can find the record.
_COORDINATES = ("_partition", "_offset")


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected: int
    error: str | None = None


@dataclass
class SuiteOutcome:
    suite: str
    success: bool
    row_count: int
    failing_rows: int
    expectations: list[ExpectationOutcome] = field(default_factory=list)
    failing_sample: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_markdown(self) -> str:
        lines = [
            f"**{self.suite}**: {'passed' if self.success else 'FAILED'}, "
            f"{self.failing_rows} of {self.row_count} rows failing",
            "",
            "| expectation | column | result | unexpected |",
            "|---|---|---|---|",
        ]
        for e in self.expectations:
            result = "pass" if e.success else f"FAIL: {e.error}" if e.error else "FAIL"
            lines.append(f"| {e.expectation} | {e.column or ''} | {result} | {e.unexpected} |")
        if not self.failing_sample.empty:
            columns = list(self.failing_sample.columns)
            lines += ["", f"Failing rows (first {len(self.failing_sample)}):", ""]
            lines.append("| " + " | ".join(columns) + " |")
            lines.append("|" + "---|" * len(columns))
            for row in self.failing_sample.itertuples(index=False):
                lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
        return "\n".join(lines)


def _cell(value: Any) -> str:
    return "null" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


@cache
def _batch_definition():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("lakehouse").add_dataframe_asset("rows")
    return asset.add_batch_definition_whole_dataframe("all_rows")


def validate(frame: pd.DataFrame, stream: str, suite: str, sample_size: int = 10) -> SuiteOutcome:
    """Run `expectations/<stream>/<suite>.json` over the rows; an empty frame has nothing to fail."""
    document = load_suite(stream, suite)
    if frame.empty:
        return SuiteOutcome(suite, success=True, row_count=0, failing_rows=0)

    import great_expectations as gx

    frame = frame.reset_index(drop=True)
    gx_suite = gx.ExpectationSuite(name=document["name"], expectations=document["expectations"])
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(gx_suite, result_format={"result_format": "COMPLETE"})

    outcomes: list[ExpectationOutcome] = []
    failing: set[int] = set()
    for r in result.results:
        kwargs = r.expectation_config.kwargs
        error = _error_message(r.exception_info)
        unexpected = r.result.get("unexpected_index_list") or []
        if error:
            # An expectation that could not run (a missing column) condemns every row.
            failing.update(range(len(frame)))
        failing.update(int(i) for i in unexpected)
        outcomes.append(
            ExpectationOutcome(
                expectation=r.expectation_config.type,
                column=kwargs.get("column"),
                success=bool(r.success),
                unexpected=len(frame) if error else int(r.result.get("unexpected_count") or 0),
                error=error,
            )
        )
    sample = frame.loc[sorted(failing)[:sample_size]]
    leading = [c for c in _COORDINATES if c in sample.columns]
    payload = [c for c in sample.columns if not c.startswith("_") and c != "date"]
    return SuiteOutcome(
        suite=suite,
        success=bool(result.success),
        row_count=len(frame),
        failing_rows=len(failing),
        expectations=outcomes,
        failing_sample=sample[leading + payload].reset_index(drop=True),
    )


def _error_message(exception_info: Any) -> str | None:
    if not exception_info:
        return None
    infos = exception_info.values() if "raised_exception" not in exception_info else [exception_info]
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            return str(info.get("exception_message", "error")).removeprefix("Error: ")
    return None
