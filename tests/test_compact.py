"""Compaction merges small files into large ones without losing, doubling or breaking `verify`,
even when it is killed in the middle of the swap."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import duckdb
import pytest
from confluent_kafka import Producer

from ingestion.failpoints import COMPACT_POINTS
from tests.cli import run
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration


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
    assert run("drain", "prices", env={**os.environ, "LAKEHOUSE_BATCH_MAX_RECORDS": "150"}, timeout=300).returncode == 0


def snapshot(home: Path) -> list[tuple]:
    glob = str(home / "raw" / "prices" / "**" / "*.parquet")
    return duckdb.sql(
        f"select _kafka_partition, _kafka_offset, price, venue, date from read_parquet('{glob}', union_by_name = true, "
        "hive_partitioning = true) order by all"
    ).fetchall()


def data_files(home: Path, day: str) -> list[Path]:
    return sorted((home / "raw" / "prices" / f"date={day}").glob("*.parquet"))


def test_compaction_merges_closed_days_only_and_keeps_every_row_once(kafka_env, lake_home):
    recreate_topics(kafka_env, "prices")
    fill(kafka_env, lake_home)
    before = snapshot(lake_home)
    assert len(data_files(lake_home, "2021-03-10")) > 3

    result = run("compact", "prices", "--before", "2030-01-01", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "files ->" in result.stdout
    assert len(data_files(lake_home, "2021-03-10")) == 3  # one per Kafka partition
    assert len(data_files(lake_home, "2099-01-01")) > 3  # not closed: left alone
    assert snapshot(lake_home) == before
    assert run("verify", "prices", timeout=300).returncode == 0
    assert "nothing new" in run("drain", "prices", timeout=300).stdout  # the ledger still says where to go on


@pytest.mark.parametrize("point", COMPACT_POINTS)
def test_a_compaction_killed_mid_swap_is_finished_by_the_next_drain(kafka_env, lake_home, point):
    recreate_topics(kafka_env, "prices")
    fill(kafka_env, lake_home)
    before = snapshot(lake_home)

    killed = run(
        "compact",
        "prices",
        "--before",
        "2030-01-01",
        env={**os.environ, "LAKEHOUSE_FAILPOINT": f"{point}@2"},
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    assert run("drain", "prices", timeout=300).returncode == 0  # recovers, under the topic lock
    assert snapshot(lake_home) == before
    assert not list(lake_home.rglob("*.pending"))
    assert run("verify", "prices", timeout=300).returncode == 0

    assert run("compact", "prices", "--before", "2030-01-01", timeout=300).returncode == 0
    assert snapshot(lake_home) == before
