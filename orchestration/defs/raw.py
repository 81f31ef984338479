"""Raw assets and drain sensors: one of each per stream, made from the stream's contracts.

The sensor only plans. It compares the lake's ledger with the broker's end offsets and asks
for a run over exactly the new offset ranges; the run's raw asset drains those ranges (the
drain itself refuses to overlap what is stored), and the stream's dbt models follow in the
same run behind the blocking quality checks.
"""

# No `from __future__ import annotations` here: Dagster reads the run config's type from the
# asset function's annotations at definition time, and cannot resolve them as strings.
import hashlib
from typing import TYPE_CHECKING

import dagster as dg
from confluent_kafka import KafkaException
from pydantic import Field

from ingestion.config import settings
from ingestion.contracts import Contract
from ingestion.drain import DrainReport, OffsetRange, TopicChanged, drain, pending_ranges
from ingestion.kafka import BrokerUnreachable
from ingestion.streams import STREAMS

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

STREAM_TAG = "lakehouse/stream"
PLAN_TAG = "lakehouse/plan"


def raw_asset_key(contract: Contract) -> dg.AssetKey:
    return dg.AssetKey(["raw", contract.table_name])


def pipeline_job_name(stream: str) -> str:
    return f"{stream}_pipeline"


class DrainConfig(dg.Config):
    ranges: list[str] = Field(
        default_factory=list,
        description='Offset ranges "partition:start-end" as the sensor planned them; empty: everything new.',
    )


def drain_metadata(report: DrainReport) -> dict[str, dg.MetadataValue | int | float | str]:
    lines = [
        "| partition | offsets | rows | quarantined | tombstones | files | bytes | seconds | lag |",
        "|---" * 9 + "|",
    ]
    lines += [
        f"| {p.partition} | {p.start}-{p.end} | {p.rows} | {p.quarantined} | {p.tombstones} | {len(p.files)} "
        f"| {p.bytes} | {p.seconds:.2f} | {p.lag} |"
        for p in report.partitions
    ]
    metadata: dict[str, dg.MetadataValue | int | float | str] = {
        "rows": report.rows,
        "quarantined": report.quarantined,
        "files": len(report.files),
        "bytes": sum(p.bytes for p in report.partitions),
        "seconds": round(report.seconds, 3),
        "lag": sum(p.lag for p in report.partitions),
        "offsets": ", ".join(f"{p.partition}:{p.start}-{p.end}" for p in report.partitions) or "nothing new",
        "partitions": dg.MetadataValue.md("\n".join(lines)),
        "generation": report.generation,
        "lost": sum(loss.offsets for loss in report.losses),
        "table": report.table,
        "snapshot_id": str(report.snapshot_id) if report.snapshot_id is not None else "none",
        "commit_seconds": round(sum(p.commit_seconds for p in report.partitions), 3),
    }
    if report.losses:
        metadata["losses"] = dg.MetadataValue.md(
            "**Offsets the broker removed before they were stored** (recorded; `lakehouse verify` fails until "
            f"`lakehouse verify --accept-loss {report.topic}`):\n\n"
            + "\n".join(
                f"- [{loss.partition}] {loss.start}-{loss.end} ({loss.offsets:,}): {loss.reason}"
                for loss in report.losses
            )
        )
    return metadata


def raw_asset(contract: Contract) -> dg.AssetsDefinition:
    @dg.asset(
        key=raw_asset_key(contract),
        group_name=contract.stream,
        kinds={"kafka", "iceberg"},
        description=(
            f"Kafka topic `{contract.topic}` stored exactly once as the Iceberg table "
            f"`raw.{contract.table_name}` (quarantine: `quarantine.{contract.table_name}`). {contract.description}"
        ),
        metadata={
            "topic": contract.topic,
            "table": f"raw.{contract.table_name}",
            "quarantine_table": f"quarantine.{contract.table_name}",
        },
    )
    def _raw(context: dg.AssetExecutionContext, config: DrainConfig) -> dg.MaterializeResult:
        ranges = [OffsetRange.parse(text) for text in config.ranges] or None
        report = drain(contract, ranges)
        context.log.info(
            f"{contract.topic}: {report.rows} rows, {report.quarantined} quarantined in {report.seconds:.1f} s"
        )
        for loss in report.losses:
            context.log.warning(f"lost before it was stored: {loss}")
        return dg.MaterializeResult(metadata=drain_metadata(report))

    return _raw


def _plan_key(plan: str) -> str:
    return plan if len(plan) <= 200 else hashlib.sha256(plan.encode()).hexdigest()


def drain_sensor(stream: str, contracts: tuple[Contract, ...]) -> dg.SensorDefinition:
    job_name = pipeline_job_name(stream)

    @dg.sensor(
        name=f"{stream}_drain_sensor",
        job_name=job_name,
        minimum_interval_seconds=settings().sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Plans a drain of the new offsets of the {stream} topics and asks for a run over exactly them.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        active = context.instance.get_runs_count(
            dg.RunsFilter(
                job_name=job_name,
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.NOT_STARTED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                ],
            )
        )
        if active:
            return dg.SkipReason(f"a {job_name} run is still in progress; planning resumes after it")
        ops: dict[str, dict] = {}
        plan_parts = []
        refused = []
        try:
            for contract in contracts:
                try:
                    ranges, _ = pending_ranges(contract)
                except TopicChanged as exc:
                    context.log.warning(str(exc))
                    refused.append(str(exc))
                    continue
                if ranges:
                    key = raw_asset_key(contract)
                    ops[key.to_python_identifier()] = {"config": {"ranges": [str(r) for r in ranges]}}
                    plan_parts.append(f"{contract.topic}:" + ",".join(str(r) for r in ranges))
        except (KafkaException, BrokerUnreachable) as exc:
            return dg.SkipReason(f"Kafka is not reachable: {exc}")
        if not ops:
            return dg.SkipReason("; ".join(refused) or "no new offsets on " + ", ".join(c.topic for c in contracts))
        plan = ";".join(plan_parts)
        # A run key is used once per sensor: a plan whose run failed gets a fresh key to be retried.
        failed = context.instance.get_runs_count(
            dg.RunsFilter(
                tags={PLAN_TAG: _plan_key(plan)},
                statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
            )
        )
        return dg.RunRequest(
            run_key=f"{_plan_key(plan)}#{failed}",
            run_config={"ops": ops},
            tags={STREAM_TAG: stream, PLAN_TAG: _plan_key(plan)},
        )

    return _sensor


def pipeline_job(stream: str, contracts: tuple[Contract, ...]) -> "UnresolvedAssetJobDefinition":
    raw_keys = [raw_asset_key(c) for c in contracts]
    return dg.define_asset_job(
        pipeline_job_name(stream),
        selection=dg.AssetSelection.assets(*raw_keys).downstream(),
        description=f"Drain the {stream} topics, gate them, and build their dbt models.",
        tags={STREAM_TAG: stream},
        # One process per run rather than per step: each step's process would import Dagster, dbt
        # and GX again, seconds each, every few minutes, for every stream.
        executor_def=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[raw_asset(c) for contracts in STREAMS.values() for c in contracts],
        sensors=[drain_sensor(stream, contracts) for stream, contracts in STREAMS.items()],
        jobs=[pipeline_job(stream, contracts) for stream, contracts in STREAMS.items()],
    )
