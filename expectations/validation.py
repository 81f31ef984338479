"""Validate a DataFrame against a suite with Great Expectations and decide what each failure does.

GX is imported on first use (it takes seconds), and validates in an ephemeral context over
pandas: the raw rows come from the lake as a DataFrame, so nothing is configured on disk.

Each expectation of a suite says in its `meta` what a failure does (`on_failure`):

- `set_aside` (the default for row-level expectations, GX's column-map, column-pair-map and
  multicolumn-map ones): the failing rows are set aside (`ingestion/set_aside.py`) and the rest
  of the batch flows on. With GX's `mostly` (the share of rows that must pass), the expectation
  blocks instead when more than `1 - mostly` of the validated rows fail, the share taken over at
  least the suite's `meta.mostly_min_rows` rows (100 by default), so that one bad record in a
  small batch is still set aside while a broken producer shows as one failure.
- `block` (the default, and the only choice, for table-level expectations such as
  `expect_table_row_count_to_be_between`, where no single row is to blame): the gate fails, its
  mark stays, and the marts keep their last good state.
- `warn`: recorded in the outcome; nothing stops and nothing is set aside.

An expectation that could not run (a column missing from every row) blocks unless it only warns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import pandas as pd

from expectations.suites import InvalidSuite, load_suite

# Kafka coordinates shown with every failing row, so a reader can find the record.
_COORDINATES = ("_kafka_partition", "_kafka_offset")
ON_FAILURE = ("set_aside", "block", "warn")
DEFAULT_MOSTLY_MIN_ROWS = 100
# Per failing (row, expectation): what the set-aside record keeps, `_expectation` its position in the suite.
_FAILURE_COLUMNS = ["_generation", "_kafka_partition", "_kafka_offset", "_expectation", "value"]


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool  # held for every row
    unexpected: int
    error: str | None = None
    on_failure: str = "set_aside"
    row_level: bool = True
    mostly: float | None = None
    arguments: str = ""  # the kwargs besides the column, as text for a reason
    observed: str | None = None  # a table-level expectation's observed value
    action: str = "passed"  # passed, set_aside, blocked, warned (decided over the whole range)
    why: str | None = None  # why it blocked

    @property
    def label(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation

    def reason(self, suite: str, value: str) -> str:
        """Why a row was set aside: the suite, the expectation with its arguments, the column and its value."""
        subject = f"{self.column} = {value}" if self.column else value
        return f"{suite}: {subject} fails {self.expectation}({self.arguments})"


def _decide(e: ExpectationOutcome, row_count: int, min_rows: int) -> None:
    e.why = None
    if e.success:
        e.action = "passed"
    elif e.on_failure == "warn":
        e.action = "warned"
    elif e.error:
        e.action, e.why = "blocked", f"{e.label} could not run: {e.error}"
    elif e.on_failure == "block" or not e.row_level:
        observed = f" (observed {e.observed})" if e.observed is not None else ""
        e.action = "blocked"
        e.why = f"{e.label} failed{observed}" if not e.row_level else f"{e.label} failed on {e.unexpected} rows"
    elif e.mostly is not None and e.unexpected > (1 - e.mostly) * max(row_count, min_rows):
        e.action = "blocked"
        e.why = (
            f"{e.label} failed on {e.unexpected} of {row_count} rows, more than the {1 - e.mostly:.0%} "
            f"its mostly {e.mostly:g} allows"
        )
    else:
        e.action = "set_aside"


@dataclass
class SuiteOutcome:
    suite: str
    success: bool  # every expectation held for every row
    row_count: int
    failing_rows: int  # rows failing any expectation, warnings included
    expectations: list[ExpectationOutcome] = field(default_factory=list)
    failing_sample: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Every (row, expectation) a set_aside expectation failed: _generation, _kafka_partition, _kafka_offset,
    # _expectation, value.
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_FAILURE_COLUMNS))
    mostly_min_rows: int = DEFAULT_MOSTLY_MIN_ROWS

    def decide(self) -> SuiteOutcome:
        for e in self.expectations:
            _decide(e, self.row_count, self.mostly_min_rows)
        return self

    @property
    def blocked(self) -> bool:
        """The gate fails: its mark stays and nothing is set aside."""
        return any(e.action == "blocked" for e in self.expectations)

    @property
    def blocked_because(self) -> list[str]:
        return [e.why for e in self.expectations if e.action == "blocked" and e.why]

    @property
    def warned(self) -> list[ExpectationOutcome]:
        return [e for e in self.expectations if e.action == "warned"]

    @property
    def set_aside(self) -> pd.DataFrame:
        """The rows to set aside, one per failed expectation: `_generation, _kafka_partition, _kafka_offset,
        expectation, column, value, reason` (none when the suite blocks)."""
        chosen = [i for i, e in enumerate(self.expectations) if e.action == "set_aside"]
        frame = self.failures[self.failures["_expectation"].isin(chosen)] if not self.blocked else self.failures[:0]
        by_index = dict(enumerate(self.expectations))
        return pd.DataFrame(
            {
                "_generation": frame["_generation"].astype("int64"),
                "_kafka_partition": frame["_kafka_partition"].astype("int64"),
                "_kafka_offset": frame["_kafka_offset"].astype("int64"),
                "expectation": [by_index[i].expectation for i in frame["_expectation"]],
                "column": [by_index[i].column for i in frame["_expectation"]],
                "value": frame["value"].astype("object"),
                "reason": [
                    by_index[i].reason(self.suite, v)
                    for i, v in zip(frame["_expectation"], frame["value"], strict=True)
                ],
            }
        ).reset_index(drop=True)

    @property
    def set_aside_rows(self) -> int:
        """How many rows are set aside (a row failing two expectations counts once)."""
        frame = self.set_aside
        return len(frame.drop_duplicates(["_generation", "_kafka_partition", "_kafka_offset"]))

    def summary(self) -> str:
        """One line: passed / N of M rows set aside / BLOCKED: why; warnings after."""
        if self.blocked:
            state = f"BLOCKED: {'; '.join(self.blocked_because)}"
        elif self.set_aside_rows:
            state = f"{self.set_aside_rows} of {self.row_count} rows set aside"
        else:
            state = f"passed ({self.row_count} rows)"
        warned = [f"{e.label} failed on {e.unexpected} rows" for e in self.warned]
        return state + (f"; warned: {'; '.join(warned)}" if warned else "")

    def to_markdown(self) -> str:
        lines = [
            f"**{self.suite}**: {self.summary()}, {self.failing_rows} of {self.row_count} rows failing",
            "",
            "| expectation | column | result | unexpected | on failure | outcome |",
            "|---|---|---|---|---|---|",
        ]
        for e in self.expectations:
            result = "pass" if e.success else f"FAIL: {e.error}" if e.error else "FAIL"
            outcome = {"passed": "-", "set_aside": "set aside", "warned": "warned"}.get(e.action, f"BLOCKED: {e.why}")
            mostly = f" (mostly {e.mostly:g})" if e.mostly is not None else ""
            lines.append(
                f"| {e.expectation} | {e.column or ''} | {result} | {e.unexpected} | {e.on_failure}{mostly} | {outcome} |"
            )
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
    """One outcome for a suite run over the rows in several pieces, decided over all of them (a
    `mostly` is a share of the whole range validated, not of each piece)."""
    if len(outcomes) == 1:
        return outcomes[0].decide()
    if not outcomes:
        raise ValueError("nothing to combine")
    ran = [o for o in outcomes if o.expectations]
    expectations = [
        replace(
            parts[0],
            success=all(p.success for p in parts),
            unexpected=sum(p.unexpected for p in parts),
            error=next((p.error for p in parts if p.error), None),
            observed=next((p.observed for p in parts if not p.success and p.observed is not None), parts[0].observed),
        )
        for parts in zip(*(o.expectations for o in ran), strict=True)
    ]
    samples = [o.failing_sample for o in outcomes if not o.failing_sample.empty]
    failures = [o.failures for o in outcomes if not o.failures.empty]
    return SuiteOutcome(
        suite=outcomes[0].suite,
        success=all(o.success for o in outcomes),
        row_count=sum(o.row_count for o in outcomes),
        failing_rows=sum(o.failing_rows for o in outcomes),
        expectations=expectations,
        failing_sample=pd.concat(samples, ignore_index=True).head(sample_size) if samples else pd.DataFrame(),
        failures=pd.concat(failures, ignore_index=True) if failures else outcomes[0].failures[:0],
        mostly_min_rows=outcomes[0].mostly_min_rows,
    ).decide()


def _as_suite_reads(
    frame: pd.DataFrame, meta: Mapping[str, Any], aliases: Mapping[str, tuple[str, ...]] | None
) -> pd.DataFrame:
    """The rows as the suite reads them, built in one pass: each filter or `assign` copied every
    column of a wide frame of Python strings, 3 s per 250,000 CMS rows."""
    columns = _by_field(frame, aliases) if aliases else {column: frame[column] for column in frame.columns}
    skipped = [
        columns[column].isin(values) for column, values in meta.get("skip_rows_where", {}).items() if column in columns
    ]
    for column in meta.get("read_as_numbers", []):
        if column in columns and not pd.api.types.is_numeric_dtype(columns[column]):
            # Portal exports quote numbers with thousands separators ("1,101.68"); text that is
            # still not a number becomes null, and the suite's not-null expectation names it.
            text = columns[column].astype("string").str.replace(",", "", regex=False).str.strip()
            columns[column] = pd.to_numeric(text, errors="coerce")
    # Not consolidated into one block per type (a copy of every string column, 0.4 s); the
    # rows are filtered, copying them, only where a row is skipped, which is rare.
    read = pd.DataFrame(columns, index=frame.index, copy=False)
    if skipped and (skip := pd.concat(skipped, axis=1).any(axis=1).to_numpy()).any():
        return read[~skip].reset_index(drop=True)
    read.index = pd.RangeIndex(len(read))  # a new frame's own axis: the rows are GX's by position
    return read


def _by_field(frame: pd.DataFrame, aliases: Mapping[str, tuple[str, ...]]) -> dict[str, pd.Series]:
    """Each field under its one name: the first non-null of its spellings (case-insensitive; a
    reader that met two spellings differing only in case suffixes the second one `_1`), after the
    frame's own `_` columns."""
    spelled: dict[str, list[str]] = {}
    for column in frame.columns:
        name = column.lower()
        base = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
        for field_name, spellings in aliases.items():
            if name in spellings or base in spellings:
                spelled.setdefault(field_name, []).append(column)
    fields = {column: frame[column] for column in frame.columns if column.startswith("_")}
    for field_name in aliases:
        columns = spelled.get(field_name, [])
        if not columns:
            fields[field_name] = pd.Series(None, index=frame.index, dtype="object")
        elif len(columns) == 1:
            fields[field_name] = frame[columns[0]]
        else:
            fields[field_name] = frame[columns].bfill(axis=1).iloc[:, 0]
    return fields


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
    return validate_suite(frame, load_suite(stream, suite), sample_size=sample_size, aliases=aliases)


def validate_suite(
    frame: pd.DataFrame,
    document: Mapping[str, Any],
    sample_size: int = 10,
    aliases: Mapping[str, tuple[str, ...]] | None = None,
) -> SuiteOutcome:
    """Run a suite given as its JSON document (`name`, `meta`, `expectations`) over the rows."""
    suite = document["name"]
    meta = document.get("meta", {})
    for expectation in document["expectations"]:
        _check_declared(suite, expectation)
    frame = _as_suite_reads(frame, meta, aliases)
    min_rows = int(meta.get("mostly_min_rows", DEFAULT_MOSTLY_MIN_ROWS))
    if frame.empty:
        return SuiteOutcome(suite, success=True, row_count=0, failing_rows=0, mostly_min_rows=min_rows)

    import great_expectations as gx

    gx_suite = gx.ExpectationSuite(name=document["name"], expectations=document["expectations"])
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": _what_gx_reads(frame, document)})
    result = batch.validate(gx_suite, result_format={"result_format": "COMPLETE"})

    outcomes: list[ExpectationOutcome] = []
    failing: set[int] = set()
    failures: list[pd.DataFrame] = []
    for position, r in enumerate(result.results):
        config = r.expectation_config
        kwargs = config.kwargs
        row_level = _is_row_level(config.type)
        on_failure = (config.meta or {}).get("on_failure") or ("set_aside" if row_level else "block")
        error = _error_message(r.exception_info)
        unexpected = [int(i) for i in r.result.get("unexpected_index_list") or []]
        if error:
            # An expectation that could not run (a missing column) condemns every row.
            failing.update(range(len(frame)))
        failing.update(unexpected)
        if unexpected and on_failure == "set_aside" and row_level:
            failures.append(_failures(frame, position, unexpected, _columns(kwargs)))
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=kwargs.get("column") or ", ".join(_columns(kwargs)) or None,
                success=not error and (not unexpected if row_level else bool(r.success)),
                unexpected=len(frame) if error else len(unexpected) if row_level else 0,
                error=error,
                on_failure=on_failure if row_level or on_failure == "warn" else "block",
                row_level=row_level,
                mostly=kwargs.get("mostly"),
                arguments=_arguments(kwargs),
                observed=None if row_level else _text(r.result.get("observed_value")),
            )
        )
    sample = frame.loc[sorted(failing)[:sample_size]]
    leading = [c for c in _COORDINATES if c in sample.columns]
    payload = [c for c in sample.columns if not c.startswith("_") and c != "date"]
    return SuiteOutcome(
        suite=suite,
        success=all(o.success for o in outcomes),
        row_count=len(frame),
        failing_rows=len(failing),
        expectations=outcomes,
        failing_sample=sample[leading + payload].reset_index(drop=True),
        failures=pd.concat(failures, ignore_index=True) if failures else pd.DataFrame(columns=_FAILURE_COLUMNS),
        mostly_min_rows=min_rows,
    ).decide()


def _what_gx_reads(frame: pd.DataFrame, document: Mapping[str, Any]) -> pd.DataFrame:
    """Only the columns the expectations name, where nothing else can matter to them, in one
    block per type: GX filters and copies the whole frame for each expectation, and the CMS rows
    carry 37 columns, 25 of them Python strings, of which its suite reads 12 (a third of the
    gate's time went to those copies). An expectation on the table's columns, or with a row
    condition, sees them all."""
    named: set[str] = set()
    for expectation in document["expectations"]:
        kwargs = expectation.get("kwargs") or {}
        if expectation["type"].startswith("expect_table_column") or kwargs.get("row_condition"):
            return frame.copy()
        named.update(_columns(kwargs))
    if not named:  # only table-level expectations, such as a row count
        return frame.copy()
    return frame[[column for column in frame.columns if column in named]].copy()


def _check_declared(suite: str, expectation: Mapping[str, Any]) -> None:
    """A clear error for an `on_failure` or a `mostly` the gate cannot act on."""
    on_failure = (expectation.get("meta") or {}).get("on_failure")
    if on_failure is not None and on_failure not in ON_FAILURE:
        raise InvalidSuite(
            f"suite {suite!r}: {expectation['type']} has on_failure {on_failure!r}; "
            f"it must be one of {', '.join(ON_FAILURE)}"
        )
    mostly = (expectation.get("kwargs") or {}).get("mostly")
    if mostly is not None and not 0 <= mostly <= 1:
        raise InvalidSuite(f"suite {suite!r}: {expectation['type']} has mostly {mostly}; it must be between 0 and 1")


@cache
def _is_row_level(expectation_type: str) -> bool:
    """Whether GX judges the expectation row by row (a map expectation), so failing rows can be named."""
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    implementation = get_expectation_impl(expectation_type)
    return issubclass(implementation, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation))


def _columns(kwargs: Mapping[str, Any]) -> list[str]:
    if kwargs.get("column"):
        return [kwargs["column"]]
    if kwargs.get("column_A"):
        return [kwargs["column_A"], kwargs["column_B"]]
    return list(kwargs.get("column_list") or [])


def _failures(frame: pd.DataFrame, position: int, rows: list[int], columns: list[str]) -> pd.DataFrame:
    failed = frame.loc[rows]
    if len(columns) == 1 and columns[0] in failed.columns:
        values = failed[columns[0]].map(_cell)
    else:
        present = [c for c in columns if c in failed.columns]
        values = pd.Series(
            [
                json.dumps({c: _cell(v) for c, v in zip(present, row, strict=True)})
                for row in failed[present].itertuples(False)
            ],
            index=failed.index,
        )
    generation = failed["_generation"].astype("int64") if "_generation" in failed.columns else 0
    return pd.DataFrame(
        {
            "_generation": generation,
            "_kafka_partition": failed["_kafka_partition"].astype("int64"),
            "_kafka_offset": failed["_kafka_offset"].astype("int64"),
            "_expectation": position,
            "value": values.astype("object"),
        }
    )


def _arguments(kwargs: Mapping[str, Any]) -> str:
    shown = {
        k: v
        for k, v in kwargs.items()
        if k not in ("column", "column_A", "column_B", "column_list", "mostly", "batch_id")
    }
    return ", ".join(f"{k}={_text(v)}" for k, v in shown.items() if v is not None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = json.dumps(value, default=str) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _error_message(exception_info: Any) -> str | None:
    if not exception_info:
        return None
    infos = exception_info.values() if "raised_exception" not in exception_info else [exception_info]
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            return str(info.get("exception_message", "error")).removeprefix("Error: ")
    return None
