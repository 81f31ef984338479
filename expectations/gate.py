"""The quality gate of a raw topic: run a suite over what arrived since the gate last passed.

The gate keeps, per topic and suite, the offsets up to which the raw rows have passed
(`<LAKEHOUSE_HOME>/gates/<topic>/<suite>.json`). Each run validates the rows from there to
what the lake had committed when the run began, in pieces of bounded size, and moves the
mark only when every piece passed: a failing batch keeps failing until it is dealt with,
and a large backlog is validated once, not again at every run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from expectations.validation import SuiteOutcome, combine, validate
from ingestion.config import Settings
from ingestion.contracts import Contract
from ingestion.lake import Ledger, read_raw


@dataclass
class GateOutcome:
    topic: str
    suite: str
    outcome: SuiteOutcome
    since: dict[int, int] = field(default_factory=dict)  # partition -> first offset validated
    until: dict[int, int] = field(default_factory=dict)  # partition -> one past the last offset validated

    def offsets(self) -> str:
        ranges = [f"{p}:{self.since.get(p, 0)}-{end}" for p, end in sorted(self.until.items())]
        return ", ".join(ranges) or "nothing stored"


def mark_path(settings: Settings, topic: str, suite: str) -> Path:
    return settings.gates_dir / topic / f"{suite}.json"


def passed_until(settings: Settings, topic: str, suite: str) -> dict[int, int]:
    """Per partition, the offset up to which the topic's rows have passed the suite."""
    path = mark_path(settings, topic, suite)
    if not path.exists():
        return {}
    return {int(p): int(o) for p, o in json.loads(path.read_text()).items()}


def _save_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(document))
    os.replace(scratch, path)


def run_gate(settings: Settings, contract: Contract, suite: str, chunk_rows: int = 250_000) -> GateOutcome:
    """Validate the rows stored since the gate last passed; move the mark if they pass."""
    since = passed_until(settings, contract.topic, suite)
    with Ledger(settings.ledger_path) as ledger:
        until = ledger.progress(contract.topic)
    # A partition the mark is ahead of (a lake rebuilt from scratch) is validated from its start.
    since = {p: o for p, o in since.items() if o <= until.get(p, 0)}
    outcomes = [
        validate(frame, contract.stream, suite, aliases=contract.aliases)
        for frame in read_raw(settings, contract.topic, since=since, until=until, chunk_rows=chunk_rows)
    ]
    outcome = combine(outcomes) if outcomes else SuiteOutcome(suite, success=True, row_count=0, failing_rows=0)
    if outcome.success:
        _save_json(mark_path(settings, contract.topic, suite), {str(p): o for p, o in sorted(until.items())})
    _save_json(
        last_outcome_path(settings, contract.topic, suite),
        {"passed": outcome.success, "rows": outcome.row_count, "failing_rows": outcome.failing_rows, "at": time.time()},
    )
    return GateOutcome(contract.topic, suite, outcome, since=since, until=until)


def last_outcome_path(settings: Settings, topic: str, suite: str) -> Path:
    return settings.gates_dir / topic / f"{suite}.last.json"


def last_outcome(settings: Settings, topic: str, suite: str) -> dict | None:
    """How the suite's last run over the topic went: passed, rows, failing_rows, at (epoch seconds)."""
    path = last_outcome_path(settings, topic, suite)
    return json.loads(path.read_text()) if path.exists() else None
