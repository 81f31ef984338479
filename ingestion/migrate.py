"""`lakehouse migrate`: move a lake written before the Iceberg tables into them, exactly once.

The previous layout kept each topic as loose Parquet under `raw/<topic>/date=…/` and
`quarantine/<topic>/`, with a SQLite ledger (`raw/_ledger.sqlite`) of the committed offset ranges,
generations and losses, and named the Kafka coordinates `_partition`, `_offset`, `_timestamp`,
`_key`. Those names are reserved or ambiguous in other engines (Spark refuses a column
`_partition`), so the files cannot be registered as they are: each committed file is rewritten
once, coordinates renamed and its generation added, into the topic's tables, and the ledger's
ranges, generations and losses become the raw table's state, in one commit per table (quarantine
first). Files the ledger does not name (an interrupted write) are left out, as recovery would
have deleted them. The old files stay where they are, and the ledger is renamed
`_ledger.sqlite.migrated`, so a migration interrupted at any point is simply run again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.parquet as pq

from ingestion import lake
from ingestion.config import Settings
from ingestion.contracts import Contract
from ingestion.parse import partition_days, quarantine_days
from ingestion.streams import CONTRACTS

log = logging.getLogger(__name__)

RENAMED = {
    "_partition": "_kafka_partition",
    "_offset": "_kafka_offset",
    "_timestamp": "_kafka_timestamp",
    "_key": "_kafka_key",
}


@dataclass
class MigrateReport:
    topics: dict[str, int] = field(default_factory=dict)  # topic -> files rewritten
    already: list[str] = field(default_factory=list)  # topics whose tables held data: left alone


def old_layout(settings: Settings) -> bool:
    """Whether LAKEHOUSE_HOME holds a lake of the previous layout, not yet migrated."""
    return settings.ledger_path.exists()


def _rows(db: sqlite3.Connection, sql: str, *args: object) -> list[tuple]:
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # a ledger from before that table existed
        return []


def migrate(settings: Settings) -> MigrateReport:
    """Rewrite every committed file of the previous layout into the Iceberg tables."""
    report = MigrateReport()
    if not old_layout(settings):
        return report
    db = sqlite3.connect(settings.ledger_path)
    try:
        topics = [t for (t,) in _rows(db, "select distinct topic from batches")]
        for topic in topics:
            contract = CONTRACTS.get(topic)
            if contract is None:
                log.warning("%s: no stream declares this topic; its files stay in %s", topic, settings.raw_dir)
                continue
            with lake.topic_lock(settings, topic):
                tables = lake.TopicTables.open(settings, contract, allow_old_layout=True)
                state = tables.state()
                if state.offsets:
                    report.already.append(topic)
                    continue
                report.topics[topic] = _migrate_topic(settings, db, contract, tables, state)
    finally:
        db.close()
    _rename_set_aside(settings)
    _convert_gate_marks(settings)
    settings.ledger_path.rename(settings.ledger_path.with_name(settings.ledger_path.name + ".migrated"))
    return report


def _migrate_topic(
    settings: Settings, db: sqlite3.Connection, contract: Contract, tables: lake.TopicTables, base: lake.State
) -> int:
    topic = tables.topic
    offsets: dict[str, int] = {}
    raw_files: list[str] = []
    quarantine_files: list[str] = []
    for generation, partition, end, files in _rows(
        db, "select generation, partition, end_offset, files from batches where topic = ?", topic
    ):
        key = lake.partition_key(generation, partition)
        offsets[key] = max(offsets.get(key, 0), end)
        for name in _json_list(files):
            path = settings.home / name
            if not path.exists():
                continue
            rows = _renamed(pq.read_table(path), generation)
            if path.is_relative_to(settings.quarantine_dir):
                written, _ = tables.write_by_day("quarantine", rows, path.name, quarantine_days(rows))
                quarantine_files += written
            else:
                written, _ = tables.write_by_day("raw", rows, path.name, partition_days(rows, contract))
                raw_files += written
    generations = tuple(
        lake.Generation(topic, number, topic_id, started)
        for number, topic_id, started in _rows(
            db, "select generation, topic_id, started_at from generations where topic = ? order by generation", topic
        )
    ) or (lake.Generation(topic, 0, None, 0.0),)
    losses = tuple(
        lake.Loss(topic, *row)
        for row in _rows(
            db,
            "select generation, partition, start_offset, end_offset, found_at, reason, accepted_at from losses "
            "where topic = ? order by generation, partition, start_offset",
            topic,
        )
    )
    for loss in losses:
        key = lake.partition_key(loss.generation, loss.partition)
        offsets[key] = max(offsets.get(key, 0), loss.end)
    if quarantine_files:
        tables.commit_quarantine(quarantine_files, offsets)
    tables.commit_state(
        base,
        replace(base, offsets=offsets, generations=generations, losses=losses),
        raw_files,
        {"lakehouse.migrated-from": str(settings.ledger_path)},
    )
    log.info("%s: %d raw and %d quarantine files moved into the tables", topic, len(raw_files), len(quarantine_files))
    return len(raw_files) + len(quarantine_files)


def _json_list(text: str) -> list[str]:
    return list(json.loads(text))


def _renamed(table: pa.Table, generation: int) -> pa.Table:
    table = table.rename_columns([RENAMED.get(name, name) for name in table.column_names])
    if lake.GENERATION_COLUMN in table.column_names:
        table = table.drop_columns([lake.GENERATION_COLUMN])
    return lake.with_generation(table, generation)


def _rename_set_aside(settings: Settings) -> None:
    """Set-aside files name rows by their coordinates, under the old names too: renamed in place."""
    for path in settings.set_aside_dir.glob("*/*.parquet"):
        table = pq.read_table(path)
        if any(name in RENAMED for name in table.column_names):
            renamed = table.rename_columns([RENAMED.get(name, name) for name in table.column_names])
            scratch = path.with_name(path.name + ".migrating")
            pq.write_table(renamed, scratch, compression="zstd")
            scratch.replace(path)


def _convert_gate_marks(settings: Settings) -> None:
    """A gate's mark was its offsets alone; it is now `{"offsets": ...}` beside the snapshot it passed.
    Without a snapshot, the gates validate again what arrived since the mark and record one."""
    for path in settings.gates_dir.glob("*/*.json"):
        if path.name.endswith(".last.json") or path.parent.name == "_read":
            continue
        mark = json.loads(path.read_text())
        if "offsets" not in mark:
            path.write_text(json.dumps({"offsets": mark}))
