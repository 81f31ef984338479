"""Compaction merges small files into large ones without losing, doubling or breaking `verify`,
even when it is killed in the middle of the swap: a reader of any snapshot sees the old files or
the new ones, never both."""

from __future__ import annotations

import json
import os
import signal
from datetime import date
from pathlib import Path

import pytest
from confluent_kafka import Producer

from ingestion.failpoints import COMPACT_POINTS
from tests import lake_tables
from tests.cli import run
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

COLUMNS = ("_kafka_partition", "_kafka_offset", "price", "ts")


def no_orphan_age(**extra: str) -> dict[str, str]:
    """The test's environment, where orphans of any age are deleted: nothing else writes to this
    lake, so no unreferenced file is about to be committed."""
    return {**os.environ, "LAKEHOUSE_ORPHAN_MIN_AGE_S": "0", **extra}


def fill(bootstrap: str, home: Path) -> None:
    """Many small drain files over three past days and today, with a field that appears late."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(3000):
        day = "2021-03-1" + str(i % 3) if i % 4 else None
        tick = {"ts": f"{day} 10:00:00.000" if day else "2099-01-01 10:00:00.000", "symbol": "AAPL", "price": i}
        if i > 2000:
            tick["venue"] = "XNAS"
        producer.produce("prices", key=f"k{i % 5}".encode(), value=json.dumps(tick).encode())
    producer.flush(30)
    drained = run("drain", "prices", env={**os.environ, "LAKEHOUSE_BATCH_MAX_RECORDS": "150"}, timeout=300)
    assert drained.returncode == 0, drained.stdout + drained.stderr


def raw_table(home: Path):
    return lake_tables.lake_catalog(home).load_table(f"raw.{lake_tables.table_name('prices')}")


def rows(home: Path, snapshot_id: int | None = None) -> list[tuple]:
    """The raw rows a reader of the snapshot (default: the current one) sees, in order."""
    table = raw_table(home)
    scan = table.scan(selected_fields=COLUMNS, snapshot_id=snapshot_id).to_arrow()
    return sorted(zip(*(scan[c].to_pylist() for c in COLUMNS), strict=True))


def data_files(home: Path, day: str) -> list[str]:
    """The raw table's files of one day partition, at its current snapshot."""
    files = raw_table(home).inspect.data_files().select(["file_path", "partition"]).to_pylist()
    return sorted(f["file_path"] for f in files if (f["partition"] or {}).get("day") == date.fromisoformat(day))


def every_snapshot_reads_each_offset_once(home: Path) -> None:
    """No snapshot, before, during or after a compaction, shows a record twice (old and merged file)."""
    for snapshot in raw_table(home).snapshots():
        offsets = [(p, o) for p, o, *_ in rows(home, snapshot.snapshot_id)]
        assert len(offsets) == len(set(offsets)), f"snapshot {snapshot.snapshot_id} reads a record twice"


def unreferenced_files(home: Path) -> list[Path]:
    """Parquet files in the tables' folders that no snapshot of either table references."""
    referenced = set()
    for namespace in ("raw", "quarantine"):
        table = lake_tables.lake_catalog(home).load_table(f"{namespace}.prices")
        if table.current_snapshot() is not None:
            referenced.update(
                p.removeprefix("file://") for p in table.inspect.all_data_files()["file_path"].to_pylist()
            )
    on_disk = (home / "warehouse").rglob("data/**/*.parquet")
    return sorted(path for path in on_disk if str(path) not in referenced)


def verify_passes() -> None:
    result = run("verify", "prices", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compaction_merges_closed_days_only_and_keeps_every_row_once(kafka_env, lake_home):
    recreate_topics(kafka_env, "prices")
    fill(kafka_env, lake_home)
    before = rows(lake_home)
    old_snapshot = raw_table(lake_home).current_snapshot().snapshot_id
    assert len(data_files(lake_home, "2021-03-10")) > 3
    verify_passes()

    result = run("compact", "prices", "--before", "2030-01-01", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "files ->" in result.stdout
    assert len(data_files(lake_home, "2021-03-10")) == 3  # one per Kafka partition
    assert len(data_files(lake_home, "2099-01-01")) > 3  # not closed: left alone
    assert rows(lake_home) == before
    assert rows(lake_home, old_snapshot) == before  # a reader still at the old snapshot reads the old files
    every_snapshot_reads_each_offset_once(lake_home)
    assert raw_table(lake_home).current_snapshot().summary.operation.value == "replace"  # one swap, no row change
    verify_passes()
    assert "nothing new" in run("drain", "prices", timeout=300).stdout  # the summary still says where to go on


def test_compaction_expires_old_snapshots_and_deletes_the_files_only_they_referenced(kafka_env, lake_home):
    recreate_topics(kafka_env, "prices")
    fill(kafka_env, lake_home)
    before = rows(lake_home)
    small = data_files(lake_home, "2021-03-10")
    assert all(Path(path.removeprefix("file://")).exists() for path in small)

    env = no_orphan_age(LAKEHOUSE_SNAPSHOT_KEEP_DAYS="0")
    result = run("compact", "prices", "--before", "2030-01-01", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "snapshots expired" in result.stdout, result.stdout
    assert len(raw_table(lake_home).snapshots()) == 1  # only the compaction's own remains
    assert not any(Path(path.removeprefix("file://")).exists() for path in small)
    assert unreferenced_files(lake_home) == []
    assert rows(lake_home) == before
    verify_passes()


@pytest.mark.parametrize("point", COMPACT_POINTS)
def test_a_compaction_killed_mid_swap_is_finished_by_the_next_drain(kafka_env, lake_home, point):
    recreate_topics(kafka_env, "prices")
    fill(kafka_env, lake_home)
    before = rows(lake_home)

    killed = run(
        "compact",
        "prices",
        "--before",
        "2030-01-01",
        env={**os.environ, "LAKEHOUSE_FAILPOINT": f"{point}@1"},
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    assert rows(lake_home) == before  # the old files or the new ones, never both
    every_snapshot_reads_each_offset_once(lake_home)
    verify_passes()  # a compaction cut short leaves the lake exact
    if point == "compact-after-files":
        assert unreferenced_files(lake_home)  # the merged files, written and never committed

    assert run("drain", "prices", env=no_orphan_age(), timeout=300).returncode == 0  # cleans up, under the topic lock
    assert rows(lake_home) == before
    assert unreferenced_files(lake_home) == []  # the merged files a crash left uncommitted are gone
    verify_passes()

    assert run("compact", "prices", "--before", "2030-01-01", timeout=300).returncode == 0
    assert rows(lake_home) == before
    assert len(data_files(lake_home, "2021-03-10")) == 3
    every_snapshot_reads_each_offset_once(lake_home)
    verify_passes()
