"""`lakehouse build`: a stream's quality gates, then its dbt models, as the Dagster run does them."""

from __future__ import annotations

from dataclasses import dataclass, field

from expectations.gate import GateOutcome, publish_read_snapshots, run_gate
from ingestion import duck, refresh
from ingestion.config import settings
from ingestion.contracts import Contract
from ingestion.lake import has_raw_files
from ingestion.streams import EXPORTS
from orchestration.snapshots import publish_snapshot


@dataclass
class StreamBuild:
    stream: str
    gates: list[tuple[str, GateOutcome]] = field(default_factory=list)
    dbt_ran: bool = False
    dbt_succeeded: bool = False
    row_counts: dict[str, int] = field(default_factory=dict)
    nothing_stored: list[str] = field(default_factory=list)  # topics with no raw file yet
    published: int | None = None  # messages the stream's export sent on, if it has one

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


def build_stream(stream: str, contracts: tuple[Contract, ...]) -> StreamBuild:
    from orchestration.defs.dbt import dbt_resource

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
    invocation = dbt_resource().cli(args, raise_on_error=False)
    invocation.wait()
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
    # Staging models are views over `iceberg_scan`: the connection loads the extension from the
    # wheels' folder, where plain DuckDB would try to download it.
    with duck.read_iceberg(duck.connect(str(settings().warehouse_path), read_only=True), settings()) as con:
        for node in models:
            (count,) = con.execute(f"select count(*) from {node['relation_name']}").fetchone()
            result.row_counts[node["name"]] = count
    if result.dbt_succeeded:
        publish_snapshot(settings(), [node["name"] for node in models])
    export = EXPORTS.get(stream)
    if export is not None and result.dbt_succeeded:
        result.published = export(settings().warehouse_path)
    return result
