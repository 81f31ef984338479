"""`lakehouse build`: the stream's Dagster pipeline job run in this process, all but the drain.

The job the drain sensor launches is the one definition of what a build does (gates, dbt models
and tests, the warehouse snapshot, the marts' publication, exports); the command runs it over the
raw tables as they are stored, without draining, and reports what its steps recorded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

from ingestion import duck
from ingestion.config import settings
from ingestion.contracts import Contract
from ingestion.lake import has_raw_files

dbt_log = logging.getLogger("dbt")
log = logging.getLogger(__name__)

DBT_STEP = "lakehouse_dbt_models"


@dataclass(frozen=True)
class GateReport:
    """What a quality check recorded: its summary, and the set-aside sample or why it blocked."""

    name: str  # topic/suite
    passed: bool
    summary: str
    detail: str  # markdown: the set-aside sample, or the suite's result when it blocked
    what_to_do: str | None


@dataclass
class StreamBuild:
    stream: str
    gates: list[GateReport] = field(default_factory=list)
    dbt_ran: bool = False
    dbt_succeeded: bool = False
    row_counts: dict[str, int] = field(default_factory=dict)
    nothing_stored: list[str] = field(default_factory=list)  # topics with no raw file yet
    published: int | None = None  # messages the stream's export sent on, if it has one
    dbt_summary: str | None = None  # dbt's own count of what it ran: "PASS=27 WARN=0 ERROR=0 SKIP=0 …"
    failures: list[str] = field(default_factory=list)  # steps that failed other than by dbt or a gate
    seconds: float = 0.0

    @property
    def gates_passed(self) -> bool:
        """No gate blocked (rows set aside or warnings do not stop the models)."""
        return all(gate.passed for gate in self.gates)

    @property
    def succeeded(self) -> bool:
        return bool(self.nothing_stored) or (self.gates_passed and self.dbt_succeeded and not self.failures)


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


@cache
def _definitions():
    from orchestration.definitions import defs

    return defs()


def build_stream(stream: str, contracts: tuple[Contract, ...]) -> StreamBuild:
    started = time.monotonic()
    empty = [c.topic for c in contracts if not has_raw_files(settings(), c.topic)]
    if len(empty) == len(contracts):
        return StreamBuild(stream, nothing_stored=empty)
    result = _run_pipeline(stream, contracts)
    result.seconds = time.monotonic() - started
    return result


@contextlib.contextmanager
def sigterm_kept() -> Iterator[None]:
    """Leave SIGTERM as it was before a job ran in this process.

    Dagster, running a job in process, hands SIGTERM whatever SIGINT does and leaves it so: in a
    process started with SIGINT ignored (a CI job, `nohup`, a script's `&`), SIGTERM was ignored
    from then on, and `kill` no longer stopped the command, nor any process it went on to start.
    """
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _run_pipeline(stream: str, contracts: tuple[Contract, ...]) -> StreamBuild:
    import dagster as dg

    from orchestration.defs.raw import pipeline_job_name, raw_asset_key

    job = _definitions().resolve_job_def(pipeline_job_name(stream))
    topics = {raw_asset_key(c): c.topic for c in contracts}
    # Everything the sensor's run does after its drain: the raw assets' checks, every downstream
    # asset, and their checks (dbt's tests).
    subset = job.get_subset(
        asset_selection=set(job.asset_layer.selected_asset_keys) - set(topics),
        asset_check_selection=set(job.asset_layer.asset_graph.asset_check_keys),
    )
    level = "DEBUG" if log.isEnabledFor(logging.DEBUG) else "WARNING"
    said = _DbtLines()
    with contextlib.redirect_stdout(said), sigterm_kept():
        run = subset.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            run_config={"loggers": {"console": {"config": {"log_level": level}}}},
            tags={"lakehouse/command": "build"},
            raise_on_error=False,
        )

    result = StreamBuild(stream, dbt_summary=said.summary)
    for check in run.get_asset_check_evaluations():
        if check.asset_key in topics:
            meta = {key: value.value for key, value in check.metadata.items()}
            result.gates.append(
                GateReport(
                    name=f"{topics[check.asset_key]}/{check.check_name}",
                    passed=check.passed,
                    summary=meta.get("outcome", ""),
                    detail=meta.get("result" if not check.passed else "set_aside_sample", ""),
                    what_to_do=meta.get("what_to_do"),
                )
            )
    models = []
    for event in run.get_asset_materialization_events():
        key = event.asset_key
        if key.path[0] == "exports":
            result.published = (result.published or 0) + event.materialization.metadata["published"].value
        else:  # a dbt model
            models.append(key.path[-1])
    # Counted here, not in the job: a staging view's count reads the whole raw layer, a cost the
    # sensor's runs need not pay every few minutes.
    with duck.connect(str(settings().warehouse_path), read_only=True) as con:
        for name in models:
            (result.row_counts[name],) = con.execute(f'select count(*) from "{name}"').fetchone()
    started = {e.step_key for e in run.all_events if e.event_type_value == "STEP_START"}
    result.dbt_ran = DBT_STEP in started
    result.dbt_succeeded = any(e.step_key == DBT_STEP for e in run.get_step_success_events())
    # A gate that blocks fails its step on purpose, and dbt says why it failed itself.
    blocked = {
        e.step_key
        for e in run.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
    }
    for failure in run.get_step_failure_events():
        if failure.step_key != DBT_STEP and failure.step_key not in blocked:
            result.failures.append(f"{failure.step_key}: {failure.step_failure_data.error.message.strip()}")
    return result
