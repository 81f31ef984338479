"""Merge the small files of closed date partitions into large ones, exactly once.

A closed date partition is one before today (UTC): the drain rarely writes there again, and
when a late record does land there it simply becomes a new small file for the next compaction.
Per date and Kafka partition, files are merged in offset order into files of about the target
size, named from the offset span they cover. The swap is the drain's commit protocol: the merged
file is written pending, one ledger transaction points the batches at it, then the old files are
deleted and the merged one renamed into place. A reader may miss those rows for that instant,
but never sees them twice; a crash anywhere is finished by the next drain's or compaction's
recovery, which publishes committed files and deletes files the ledger no longer names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingestion import lake
from ingestion.config import Settings
from ingestion.config import settings as current_settings
from ingestion.failpoints import failpoint

log = logging.getLogger(__name__)


@dataclass
class CompactReport:
    topic: str
    merged: list[tuple[str, int]] = field(default_factory=list)  # (new file, how many files it replaced)
    skipped: list[str] = field(default_factory=list)  # why a group was left alone

    @property
    def files_before(self) -> int:
        return sum(n for _, n in self.merged)


def _groups(files: list[Path], target_bytes: int) -> list[list[Path]]:
    """Consecutive runs of files of about the target size; a run of one needs no merging."""
    groups: list[list[Path]] = [[]]
    size = 0
    for path in files:
        if groups[-1] and size + path.stat().st_size > target_bytes:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += path.stat().st_size
    return [g for g in groups if len(g) > 1]


def _merge(paths: list[Path], target: Path) -> int:
    """Write the files' rows, in order, into one pending file; one input file in memory at a time."""
    schema = pa.unify_schemas([pq.read_schema(p) for p in paths], promote_options="permissive")
    pending = target.with_name(target.name + lake.PENDING)
    with pq.ParquetWriter(pending, schema, compression="zstd") as writer:
        for path in paths:
            table = pq.read_table(path)
            for f in schema:
                if f.name not in table.schema.names:
                    table = table.append_column(f, pa.nulls(table.num_rows, f.type))
            writer.write_table(table.select(schema.names).cast(schema), row_group_size=256 * 1024)
    lake.fsync_file(pending)
    return pending.stat().st_size


def compact(
    topic: str, s: Settings | None = None, before: date | None = None, target_mb: int = 256, lock_wait_s: float = 300
) -> CompactReport:
    s = s or current_settings()
    before = before or datetime.now(UTC).date()
    report = CompactReport(topic)
    with lake.topic_lock(s, topic, lock_wait_s), lake.Ledger(s.ledger_path) as ledger:
        lake.recover(s, ledger, topic)
        for day_dir in sorted(lake.topic_dir(s.raw_dir, topic).glob("date=*")):
            if date.fromisoformat(day_dir.name.removeprefix("date=")) >= before:
                continue
            by_partition: dict[int, list[Path]] = {}
            for path in sorted(day_dir.glob("p*.parquet"), key=lambda p: _span(p)[1]):
                by_partition.setdefault(_span(path)[0], []).append(path)
            for partition, files in sorted(by_partition.items()):
                for group in _groups(files, target_mb * 1024 * 1024):
                    _swap(s, ledger, topic, partition, group, report)
    return report


def _span(path: Path) -> tuple[int, int, int]:
    span = lake.file_span(path)
    if span is None:
        raise ValueError(f"{path} is not a drain file")
    return span


def _swap(s: Settings, ledger: lake.Ledger, topic: str, partition: int, group: list[Path], report: CompactReport):
    merged = group[0].parent / lake.data_file_name(partition, _span(group[0])[1], _span(group[-1])[2])
    if merged.exists() and merged not in group:
        # A batch's drain file and its replays' files share its range: merging only the replays'
        # would overwrite the drain file. The next compaction, with other bounds, may take them.
        report.skipped.append(f"{merged.parent.name}/p{partition}: {merged.name} is outside the group")
        return
    try:
        _merge(group, merged)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        merged.with_name(merged.name + lake.PENDING).unlink(missing_ok=True)
        report.skipped.append(f"{merged.parent.name}/p{partition}: {exc}")
        return
    failpoint("compact-after-files")
    rel = str(merged.relative_to(s.home))
    ledger.replace_files(topic, {str(p.relative_to(s.home)): rel for p in group})
    failpoint("compact-after-commit")
    for path in group:
        path.unlink()
    lake.publish(merged)
    report.merged.append((rel, len(group)))
    log.info("%s: merged %d files into %s", topic, len(group), rel)
