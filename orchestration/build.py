"""`lakehouse build`: a stream's quality gates, then its dbt models, as the Dagster run does them."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from dataclasses import dataclass, field

from expectations.gate import GateOutcome, publish_read_snapshots, run_gate
from ingestion import duck, refresh
from ingestion.config import settings
from ingestion.contracts import Contract
from ingestion.lake import has_raw_files
from ingestion.streams import EXPORTS
from orchestration.publish_marts import build_id_of, mart_names_of, publish_marts
from orchestration.snapshots import publish_snapshot

dbt_log = logging.getLogger("dbt")


@dataclass
class StreamBuild:
    stream: str
    gates: list[tuple[str, GateOutcome]] = field(default_factory=list)
    dbt_ran: bool = False
    dbt_succeeded: bool = False
    row_counts: dict[str, int] = field(default_factory=dict)
    nothing_stored: list[str] = field(default_factory=list)  # topics with no raw file yet
    published: int | None = None  # messages the stream's export sent on, if it has one
    dbt_summary: str | None = None  # dbt's own count of what it ran: "PASS=27 WARN=0 ERROR=0 SKIP=0 …"
    seconds: float = 0.0

    @property
    def gates_passed(self) -> bool:
        """No gate blocked (rows set aside or warnings do not stop the models)."""
        return not any(gate.blocked for _, gate in self.gates)

    @property
    def succeeded(self) -> bool:
        return bool(self.nothing_stored) or (self.gates_passed and self.dbt_succeeded)


def run_gates(contracts: tuple[Contract, ...]) -> list[tuple[str, GateOutcome]]:
    s = settings()
    return [(f"{c.topic}/{suite}", run_gate(s, c, suite)) for c in contracts for suite in c.suites]


class _DbtLines(io.TextIOBase):
    """What dbt says as the invocation re-emits it on stdout, as log lines: each model's and test's
    line at DEBUG (`--verbose` shows them), its errors, failures and warnings at WARNING, and its
    closing count kept for the build's summary."""

    _TROUBLE = re.compile(r"\b(ERROR|FAIL|WARN|Error|Failure|Warning)\b")

    def __init__(self) -> None:
        self.summary: str | None = None
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.startswith("Done. PASS="):
                self.summary = line.removeprefix("Done. ")
                dbt_log.debug("%s", line)
            else:
                dbt_log.log(logging.WARNING if self._TROUBLE.search(line) else logging.DEBUG, "%s", line)
        return len(text)


def build_stream(stream: str, contracts: tuple[Contract, ...]) -> StreamBuild:
    started = time.monotonic()
    result = _build_stream(stream, contracts)
    result.seconds = time.monotonic() - started
    return result


def _build_stream(stream: str, contracts: tuple[Contract, ...]) -> StreamBuild:
    from orchestration.defs.dbt import dbt_resource, keep_partial_parse

    s = settings()
    empty = [c.topic for c in contracts if not has_raw_files(s, c.topic)]
    if len(empty) == len(contracts):
        return StreamBuild(stream, nothing_stored=empty)
    result = StreamBuild(stream, gates=run_gates(contracts))
    if not result.gates_passed:
        return result
    publish_read_snapshots(s, contracts)
    selection = " ".join(f"source:raw.{c.table_name}+" for c in contracts)
    # Rows a quarantine replay stored carry old offsets, which incremental models never take in.
    replayed = refresh.pending(s, [c.topic for c in contracts])
    args = ["build", "--select", selection] + (["--full-refresh"] if replayed else [])
    said = _DbtLines()
    with contextlib.redirect_stdout(said):
        invocation = dbt_resource().cli(args, raise_on_error=False)
        invocation.wait()
    keep_partial_parse(invocation)
    result.dbt_summary = said.summary
    result.dbt_ran = True
    result.dbt_succeeded = invocation.is_successful()
    if result.dbt_succeeded:
        refresh.done(s, replayed)
    run_results = invocation.get_artifact("run_results.json")
    manifest = invocation.get_artifact("manifest.json")
    models = [
        manifest["nodes"][r["unique_id"]]
        for r in run_results["results"]
        if r["unique_id"].startswith("model.") and r["status"] == "success"
    ]
    with duck.connect(str(settings().warehouse_path), read_only=True) as con:
        for node in models:
            (count,) = con.execute(f"select count(*) from {node['relation_name']}").fetchone()
            result.row_counts[node["name"]] = count
    if result.dbt_succeeded:
        copy = publish_snapshot(settings(), [node["name"] for node in models])
        publish_marts(settings(), mart_names_of(run_results, manifest), build_id_of(run_results), copy)
    export = EXPORTS.get(stream)
    if export is not None and result.dbt_succeeded:
        result.published = export.publish(settings().warehouse_path)
    return result
