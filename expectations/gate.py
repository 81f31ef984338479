"""The quality gate of a raw topic: run a suite over what arrived since the gate last passed.

The gate keeps, per topic and suite, the raw table's snapshot it passed and the offsets up to
which that snapshot's rows have been dealt with (`<LAKEHOUSE_HOME>/gates/<topic>/<suite>.json`). Each run validates the rows from there to
what the lake had committed when the run began, in pieces of bounded size, and decides over
the whole range what each failing expectation does (`expectations/validation.py`):

- rows that failed a `set_aside` expectation are recorded in `ingestion/set_aside.py` (staging
  no longer reads them), then the mark moves past the range: the rest flows on;
- a `block` (a table-level expectation, a `mostly` exceeded, an expectation that could not run)
  sets nothing aside and leaves the mark where it was: the range is validated again at every
  run, and staging reads none of it, until the producer or the suite is fixed;
- a `warn` is only recorded.

The set-aside file is in place before the mark moves, and its name is derived from the range,
so a run retried after a crash at any point sets the same rows aside once. A large backlog is
validated once, not again at every run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from expectations.suites import written_in
from ingestion import set_aside
from ingestion.config import Settings
from ingestion.contracts import Contract
from ingestion.lake import TopicTables, partition_key, read_path, read_raw

if TYPE_CHECKING:  # validation imports pandas: `lakehouse status` reads outcomes without it
    from expectations.validation import SuiteOutcome


@dataclass
class GateOutcome:
    topic: str
    suite: str
    outcome: SuiteOutcome
    # By `lake.partition_key` (`3`, or `1:3` in the topic's generation 1): the first offset validated,
    # and one past the last.
    since: dict[str, int] = field(default_factory=dict)
    until: dict[str, int] = field(default_factory=dict)
    stream: str = ""

    def offsets(self) -> str:
        ranges = [f"{p}:{self.since.get(p, 0)}-{end}" for p, end in sorted(self.until.items())]
        return ", ".join(ranges) or "nothing stored"

    @property
    def blocked(self) -> bool:
        return self.outcome.blocked


def what_to_do(stream: str, suite: str) -> str:
    """What an operator does about a blocked gate."""
    return (
        f"the marts keep their last good state; fix the producer, or the suite "
        f"({written_in(stream, suite)}) if it is wrong, "
        f"then run `lakehouse build {stream}` again"
    )


def mark_path(settings: Settings, topic: str, suite: str) -> Path:
    return settings.gates_dir / topic / f"{suite}.json"


def _mark(settings: Settings, topic: str, suite: str) -> dict:
    path = mark_path(settings, topic, suite)
    return json.loads(path.read_text()) if path.exists() else {}


def passed_until(settings: Settings, topic: str, suite: str) -> dict[str, int]:
    """Per partition (by `lake.partition_key`), the offset up to which the topic's rows have passed the suite."""
    return {str(p): int(o) for p, o in _mark(settings, topic, suite).get("offsets", {}).items()}


def publish_read_snapshots(settings: Settings, contracts: Iterable[Contract]) -> None:
    """Name, per topic, the raw snapshot staging reads (`raw_source()` in dbt_project/macros/gates.sql):
    the oldest snapshot that every one of its gates has passed, or the current one for a topic
    without gates; none while a gate has passed nothing yet. With it go the topic (for the rows
    its gates set aside), the contract's field spellings (`spellings()`) and its header columns
    (`header_column()`), so SQL never keeps a copy of any."""
    for contract in contracts:
        tables = TopicTables.load(settings, contract.topic)
        document: dict = {"topic": contract.topic}
        if contract.aliases:  # the spellings staging reads each field under (the CMS files')
            document["spellings"] = {name: list(spellings) for name, spellings in contract.aliases.items()}
        if contract.headers:  # the column each Kafka header is kept in (a CMS row's data year)
            document["headers"] = {name: contract.header_column(name) for name in contract.headers}
        if tables is not None:
            # The newest metadata names every snapshot the table still has, and its schema.
            document["metadata_location"] = tables.raw.metadata_location
            if contract.suites:
                marks = [_mark(settings, contract.topic, suite) for suite in contract.suites]
                if all("snapshot_id" in mark for mark in marks):
                    document["snapshot_id"] = min(marks, key=lambda mark: mark["sequence"])["snapshot_id"]
            elif (snapshot := tables.raw.current_snapshot()) is not None:
                document["snapshot_id"] = snapshot.snapshot_id
        _save_json(read_path(settings, contract.table_name), document)


def _save_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(document))
    os.replace(scratch, path)


def run_gate(settings: Settings, contract: Contract, suite: str, chunk_rows: int = 250_000) -> GateOutcome:
    """Validate the rows stored since the gate's mark; set failing rows aside and move the mark,
    unless the suite blocks."""
    from expectations.validation import SuiteOutcome, combine, validate

    since = passed_until(settings, contract.topic, suite)
    tables = TopicTables.load(settings, contract.topic)
    state = tables.state() if tables else None
    until = {partition_key(g, p): end for (g, p), end in state.stored_until().items()} if state else {}
    # A partition the mark is ahead of (a lake rebuilt from scratch) is validated from its start.
    since = {p: o for p, o in since.items() if o <= until.get(p, 0)}
    span = sum(end - since.get(p, 0) for p, end in until.items())
    pieces: list[SuiteOutcome] = []
    snapshot_id = state.snapshot_id if state else None
    for frame in read_raw(settings, contract.topic, since, until, chunk_rows=chunk_rows, snapshot_id=snapshot_id):
        pieces.append(validate(frame, contract.stream, suite, aliases=contract.aliases))
        if _surely_blocked(pieces, span):
            # Nothing of a blocked range is set aside: its failing rows need not be kept.
            pieces = [replace(p, failures=p.failures[:0]) for p in pieces]
    outcome = combine(pieces) if pieces else SuiteOutcome(suite, success=True, row_count=0, failing_rows=0)
    if not outcome.blocked:
        set_aside.record(settings, contract.topic, suite, since, until, outcome.set_aside)
        mark = {"offsets": dict(sorted(until.items()))}
        if tables and snapshot_id is not None:
            snapshot = tables.raw.snapshot_by_id(snapshot_id)
            mark |= {"snapshot_id": snapshot_id, "sequence": snapshot.sequence_number}
        _save_json(mark_path(settings, contract.topic, suite), mark)
    _save_json(
        last_outcome_path(settings, contract.topic, suite),
        {
            "passed": not outcome.blocked,
            "rows": outcome.row_count,
            "failing_rows": outcome.failing_rows,
            "set_aside": 0 if outcome.blocked else outcome.set_aside_rows,
            "blocked": outcome.blocked_because,
            "warned": [f"{e.label} failed on {e.unexpected} rows" for e in outcome.warned],
            "at": time.time(),
        },
    )
    return GateOutcome(contract.topic, suite, outcome, since=since, until=until, stream=contract.stream)


def _surely_blocked(pieces: list[SuiteOutcome], span: int) -> bool:
    """Whether the range blocks whatever its other pieces hold: judged over `span`, the most rows
    the range can have, a `mostly` exceeded now stays exceeded."""
    from expectations.validation import combine

    probe = combine([replace(p, expectations=[replace(e) for e in p.expectations]) for p in pieces])
    probe.row_count = max(probe.row_count, span)
    return probe.decide().blocked


def last_outcome_path(settings: Settings, topic: str, suite: str) -> Path:
    return settings.gates_dir / topic / f"{suite}.last.json"


def last_outcome(settings: Settings, topic: str, suite: str) -> dict | None:
    """How the suite's last run over the topic went: passed (not blocked), rows, failing_rows,
    set_aside (rows), blocked (why), warned (what), at (epoch seconds)."""
    path = last_outcome_path(settings, topic, suite)
    return json.loads(path.read_text()) if path.exists() else None
