"""Read-only snapshots of the warehouse, for people: the analysts' shell and the docs site.

DuckDB lets one process write a database file, and a reader holding it open would stop the next
build. So after every good build (still inside the warehouse pool, with no writer about) the
warehouse is copied to `<LAKEHOUSE_HOME>/snapshots/<n>/warehouse.duckdb` (the file keeps its name:
dbt's views name their relations by the database's name) and `LATEST` is pointed at it. A shell
opens the latest snapshot and keeps it, consistent, however many builds follow; older snapshots
are removed (a shell that has one open keeps reading it until it closes).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from ingestion import duck
from ingestion.config import Settings
from ingestion.contracts import Contract
from ingestion.lake import TopicTables, scan_sql

KEEP = 2


def snapshots_dir(settings: Settings) -> Path:
    return settings.home / "snapshots"


def latest_snapshot(settings: Settings) -> Path | None:
    pointer = snapshots_dir(settings) / "LATEST"
    if not pointer.exists():
        return None
    path = snapshots_dir(settings) / pointer.read_text().strip() / "warehouse.duckdb"
    return path if path.exists() else None


def built_at(settings: Settings) -> dict[str, float]:
    """When each model was last built well (epoch seconds), by name."""
    path = snapshots_dir(settings) / "built.json"
    return json.loads(path.read_text()) if path.exists() else {}


def publish_snapshot(settings: Settings, models: Iterable[str] = ()) -> Path | None:
    """Copy the warehouse as the latest snapshot, noting when `models` were built; call it only
    where no build is writing."""

    if not settings.warehouse_path.exists():
        return None
    root = snapshots_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    times = built_at(settings) | dict.fromkeys(models, time.time())
    scratch = root / "built.json.tmp"
    scratch.write_text(json.dumps(times, indent=1, sort_keys=True))
    os.replace(scratch, root / "built.json")
    with duck.connect(str(settings.warehouse_path)) as con:
        con.execute("checkpoint")  # everything in the file, nothing left in a write-ahead log
    name = f"{time.time_ns()}"
    folder = root / name
    folder.mkdir(parents=True)
    scratch = folder / "warehouse.duckdb.tmp"
    shutil.copyfile(settings.warehouse_path, scratch)
    os.replace(scratch, folder / "warehouse.duckdb")
    pointer = root / "LATEST.tmp"
    pointer.write_text(name)
    os.replace(pointer, root / "LATEST")
    for old in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return folder / "warehouse.duckdb"


def raw_views_sql(settings: Settings, contracts: Iterable[Contract]) -> str:
    """Views `raw_<table>` over each topic's raw Iceberg table at its current snapshot (an older
    one is `iceberg_scan(<metadata>, snapshot_from_id = <id>)`; `iceberg_snapshots` lists them)."""
    from ingestion.catalog import is_object_storage
    from ingestion.duck import s3_secret_sql, set_options_sql

    lines = [*set_options_sql(settings), "load avro;", "load iceberg;"]
    if is_object_storage(settings):
        lines += ["load httpfs;", s3_secret_sql(settings) + ";"]
    for contract in contracts:
        tables = TopicTables.load(settings, contract.topic)
        if tables is not None and tables.raw.current_snapshot() is not None:
            lines.append(
                f"create or replace temp view raw_{contract.table_name} as select * from {scan_sql(tables.raw)};"
            )
    return "\n".join(lines) + "\n"
