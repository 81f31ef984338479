"""Table maintenance: merge the small files of closed days into large ones, expire old snapshots,
delete orphan files, each exactly once.

A closed day is one before today (UTC): the drain rarely writes there again, and when a late
record does land there it simply becomes a new small file for the next compaction. Per day,
generation and Kafka partition, files are merged in offset order into files of about the target
size, named from the offset span they cover. All merges of a topic become visible in one Iceberg
`replace` commit that removes the small files and adds the merged ones, carrying the topic's state
forward: a reader sees the old files or the new ones, never both, and a crash before the commit
leaves only unreferenced files, which the next drain or compaction deletes. Snapshots older than
the keep window (`LAKEHOUSE_SNAPSHOT_KEEP_DAYS`) are then expired, except the one staging reads,
and the files no live snapshot references any more are deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
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
    expired: int = 0  # snapshots expired, of both tables
    orphans: int = 0  # files deleted that no snapshot referenced

    @property
    def files_before(self) -> int:
        return sum(n for _, n in self.merged)


@dataclass(frozen=True)
class _File:
    path: str
    size: int
    day: date | None
    generation: int
    partition: int
    start: int
    end: int


def _groups(files: list[_File], target_bytes: int) -> list[list[_File]]:
    """Consecutive runs of files of about the target size; a run of one needs no merging."""
    groups: list[list[_File]] = [[]]
    size = 0
    for file in files:
        if groups[-1] and size + file.size > target_bytes:
            groups.append([])
            size = 0
        groups[-1].append(file)
        size += file.size
    return [g for g in groups if len(g) > 1]


def _raw_files(tables: lake.TopicTables) -> list[_File]:
    files = lake.data_files(tables.raw)
    found = []
    for row in files:
        name = Path(row["file_path"].rsplit("/", 1)[-1])
        span = lake.file_span(name)
        if span is None:
            continue  # another writer's file
        day = (row["partition"] or {}).get("day")
        found.append(_File(row["file_path"], row["file_size_in_bytes"], day, lake.file_topic_generation(name), *span))
    return found


def compact(
    topic: str, s: Settings | None = None, before: date | None = None, target_mb: int = 256, lock_wait_s: float = 300
) -> CompactReport:
    s = s or current_settings()
    before = before or datetime.now(UTC).date()
    report = CompactReport(topic)
    with lake.topic_lock(s, topic, lock_wait_s):
        tables = lake.TopicTables.load(s, topic)
        if tables is None:
            return report
        tables.finish_replays()
        report.orphans += tables.remove_orphans(s.orphan_min_age_s)
        base = tables.state()
        by_group: dict[tuple, list[_File]] = {}
        for file in sorted(
            _raw_files(tables), key=lambda f: (f.generation, f.partition, f.start, lake.file_replay(Path(f.path)))
        ):
            if file.day is not None and file.day < before:
                by_group.setdefault((file.day, file.generation, file.partition), []).append(file)
        existing = {f.path for files in by_group.values() for f in files}
        replacements: dict[str, list[str]] = {}
        for (day, generation, partition), files in sorted(by_group.items()):
            for group in _groups(files, target_mb * 1024 * 1024):
                name = lake.data_file_name(partition, group[0].start, group[-1].end, generation)
                target = tables.data_path("raw", day, name)
                if target in existing:
                    # A batch's drain file and its replays' files share its range: the merged file
                    # would overwrite a file the current snapshot still reads.
                    report.skipped.append(f"{day}/p{partition}: {name} is a file in use")
                    continue
                try:
                    _merge(tables, [f.path for f in group], target)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    report.skipped.append(f"{day}/p{partition}: {exc}")
                    continue
                replacements[target] = [f.path for f in group]
        failpoint("compact-after-files")
        if replacements:
            tables.replace_files(base, replacements, {"lakehouse.compaction": str(len(replacements))})
            for target, group in replacements.items():
                report.merged.append((target, len(group)))
                log.info("%s: merged %d files into %s", topic, len(group), target)
        failpoint("compact-after-commit")
        report.expired = tables.expire_snapshots(
            datetime.now(UTC) - timedelta(days=s.snapshot_keep_days), protect=_staging_snapshot(s, topic)
        )
        report.orphans += tables.remove_orphans(s.orphan_min_age_s)
    return report


def _staging_snapshot(s: Settings, topic: str) -> set[int]:
    """The snapshot staging reads (the one every gate passed): never expired under it."""
    pointer = lake.read_pointer(s, lake.table_name(topic))
    return {pointer["snapshot_id"]} if pointer.get("snapshot_id") is not None else set()


def _merge(tables: lake.TopicTables, paths: list[str], target: str) -> int:
    """Write the files' rows, in order, into one file; one input file in memory at a time."""
    io = tables.raw.io
    schemas = []
    for path in paths:
        with io.new_input(path).open() as stream:
            schemas.append(pq.read_schema(stream))
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    output = io.new_output(target)
    with output.create(overwrite=True) as sink, pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for path in paths:
            with io.new_input(path).open() as stream:
                table = pq.read_table(stream)
            for f in schema:
                if f.name not in table.schema.names:
                    table = table.append_column(f, pa.nulls(table.num_rows, f.type))
            writer.write_table(table.select(schema.names).cast(schema), row_group_size=256 * 1024)
    return len(output.to_input_file())
