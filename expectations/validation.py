"""Validate a DataFrame against a suite with Great Expectations and summarise what failed.

GX is imported on first use (it takes seconds), and validates in an ephemeral context over
pandas: the raw rows come from the lake as a DataFrame, so nothing is configured on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
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
            lines += ["", f"Failing rows (first {len(self.failing_sample)}):", "", markdown_table(self.failing_sample)]
        return "\n".join(lines)


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, nulls written `null`."""
    columns = list(frame.columns)
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def combine(outcomes: list[SuiteOutcome], sample_size: int = 10) -> SuiteOutcome:
    """One outcome for a suite run over the rows in several pieces."""
    if len(outcomes) == 1:
        return outcomes[0]
    if not outcomes:
        raise ValueError("nothing to combine")
    ran = [o for o in outcomes if o.expectations]
    expectations = [
        ExpectationOutcome(
            expectation=parts[0].expectation,
            column=parts[0].column,
            success=all(p.success for p in parts),
            unexpected=sum(p.unexpected for p in parts),
            error=next((p.error for p in parts if p.error), None),
        )
        for parts in zip(*(o.expectations for o in ran), strict=True)
    ]
    samples = [o.failing_sample for o in outcomes if not o.failing_sample.empty]
    return SuiteOutcome(
        suite=outcomes[0].suite,
        success=all(o.success for o in outcomes),
        row_count=sum(o.row_count for o in outcomes),
        failing_rows=sum(o.failing_rows for o in outcomes),
        expectations=expectations,
        failing_sample=pd.concat(samples, ignore_index=True).head(sample_size) if samples else pd.DataFrame(),
    )


def _as_suite_reads(
    frame: pd.DataFrame, meta: Mapping[str, Any], aliases: Mapping[str, tuple[str, ...]] | None
) -> pd.DataFrame:
    if aliases:
        frame = _by_field(frame, aliases)
    for column, values in meta.get("skip_rows_where", {}).items():
        if column in frame.columns:
            frame = frame[~frame[column].isin(values)]
    for column in meta.get("read_as_numbers", []):
        if column in frame.columns and not pd.api.types.is_numeric_dtype(frame[column]):
            # Portal exports quote numbers with thousands separators ("1,101.68"); text that is
            # still not a number becomes null, and the suite's not-null expectation names it.
            text = frame[column].astype("string").str.replace(",", "", regex=False).str.strip()
            frame = frame.assign(**{column: pd.to_numeric(text, errors="coerce")})
    return frame


def _by_field(frame: pd.DataFrame, aliases: Mapping[str, tuple[str, ...]]) -> pd.DataFrame:
    """Each field under its one name: the first non-null of its spellings (case-insensitive; a
    reader that met two spellings differing only in case suffixes the second one `_1`)."""
    spelled: dict[str, list[str]] = {}
    for column in frame.columns:
        name = column.lower()
        base = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
        for field_name, spellings in aliases.items():
            if name in spellings or base in spellings:
                spelled.setdefault(field_name, []).append(column)
    fields = {}
    for field_name in aliases:
        columns = spelled.get(field_name, [])
        if not columns:
            fields[field_name] = pd.Series(None, index=frame.index, dtype="object")
        elif len(columns) == 1:
            fields[field_name] = frame[columns[0]]
        else:
            fields[field_name] = frame[columns].bfill(axis=1).iloc[:, 0]
    meta = [c for c in frame.columns if c.startswith("_")]
    return pd.concat([frame[meta], pd.DataFrame(fields, index=frame.index)], axis=1)


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


def validate(
    frame: pd.DataFrame,
    stream: str,
    suite: str,
    sample_size: int = 10,
    aliases: Mapping[str, tuple[str, ...]] | None = None,
) -> SuiteOutcome:
    """Run `expectations/<stream>/<suite>.json` over the rows; an empty frame has nothing to fail.

    With `aliases` (field -> spellings), the suite sees each field under one name whatever
    spelling a row arrived in; the suite's `meta` says which rows it skips and which text
    fields it reads as numbers.
    """
    document = load_suite(stream, suite)
    frame = _as_suite_reads(frame, document.get("meta", {}), aliases)
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
