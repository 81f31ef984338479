"""Daily upkeep of the lake: compact yesterday's small files, so readers open few large ones."""

import dagster as dg

from ingestion.compact import compact
from ingestion.streams import CONTRACTS


@dg.op(description="Merge the small raw files of every topic's closed date partitions, exactly once.")
def compact_raw_files(context: dg.OpExecutionContext) -> None:
    for topic in CONTRACTS:
        report = compact(topic)
        context.log.info(
            f"{topic}: {len(report.merged)} merged files replaced {report.files_before}; "
            f"{report.expired} snapshots expired, {report.orphans} unreferenced files deleted"
        )
        for reason in report.skipped:
            context.log.warning(f"{topic}: left alone {reason}")


@dg.job(description="Compact the raw lake (`lakehouse compact` for every topic).")
def compact_lake() -> None:
    compact_raw_files()


compact_daily = dg.ScheduleDefinition(
    job=compact_lake,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=[compact_lake], schedules=[compact_daily])
