"""A lake of the layout before the Iceberg tables is refused in one line, and `lakehouse migrate`
moves it into the tables, every committed offset once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.config import settings
from ingestion.lake import TopicTables
from tests import lake_tables
from tests.cli import LAKEHOUSE

# The previous layout's ledger, as far as migration reads it.
LEDGER = """
create table batches (topic text, generation integer, partition integer, start_offset integer, end_offset integer,
    rows integer, quarantined integer, tombstones integer, files text, bytes integer, seconds real, committed_at real);
create table generations (topic text, generation integer, topic_id text, started_at real);
create table losses (topic text, generation integer, partition integer, start_offset integer, end_offset integer,
    found_at real, reason text, accepted_at real);
"""


def old_lake(home: Path) -> None:
    """Two committed batches of prices (one with a quarantined record), an uncommitted file, a loss."""
    raw = home / "raw" / "prices" / "date=2021-03-10"
    raw.mkdir(parents=True)
    (home / "quarantine" / "prices").mkdir(parents=True)

    def ticks(offsets: list[int]) -> pa.Table:
        n = len(offsets)
        return pa.table(
            {
                "ts": pa.array([1615393292000] * n, pa.timestamp("ms")),
                "symbol": ["AAPL"] * n,
                "price": [238.32] * n,
                "_topic": ["prices"] * n,
                "_partition": pa.array([0] * n, pa.int32()),
                "_offset": pa.array(offsets, pa.int64()),
                "_timestamp": pa.array([1615393292000] * n, pa.timestamp("ms", tz="UTC")),
                "_key": ["AAPL"] * n,
                "_tombstone": [False] * n,
            }
        )

    pq.write_table(ticks([2, 3]), raw / "p0-000000000002-000000000004.parquet")
    pq.write_table(ticks([4, 5, 7]), raw / "p0-000000000004-000000000008.parquet")
    pq.write_table(ticks([8]), raw / "p0-000000000008-000000000009.parquet")  # never committed
    quarantined = pa.table(
        {
            "_topic": ["prices"],
            "_partition": pa.array([0], pa.int32()),
            "_offset": pa.array([6], pa.int64()),
            "_timestamp": pa.array([1615393292000], pa.timestamp("ms", tz="UTC")),
            "_key": [b"AAPL"],
            "_value": [b"{broken"],
            "_headers": pa.array([None], pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
            "reason": ["not JSON: broken"],
        }
    )
    pq.write_table(quarantined, home / "quarantine" / "prices" / "p0-000000000004-000000000008.parquet")
    (home / "set_aside" / "prices").mkdir(parents=True)
    pq.write_table(
        pa.table({"_generation": pa.array([0], pa.int32()), "_partition": pa.array([0], pa.int32()),
                  "_offset": pa.array([5], pa.int64()), "reason": ["raw_prices: price below 0"]}),
        home / "set_aside" / "prices" / "raw_prices-a-b.parquet",
    )  # fmt: skip
    (home / "gates" / "prices").mkdir(parents=True)
    (home / "gates" / "prices" / "raw_prices.json").write_text(json.dumps({"0": 8}))
    db = sqlite3.connect(home / "raw" / "_ledger.sqlite")
    db.executescript(LEDGER)
    for start, end, rows, q, files in (
        (2, 4, 2, 0, ["raw/prices/date=2021-03-10/p0-000000000002-000000000004.parquet"]),
        (
            4,
            8,
            3,
            1,
            [
                "raw/prices/date=2021-03-10/p0-000000000004-000000000008.parquet",
                "quarantine/prices/p0-000000000004-000000000008.parquet",
            ],
        ),
    ):
        db.execute(
            "insert into batches values ('prices', 0, 0, ?, ?, ?, ?, 0, ?, 0, 0.1, 0)",
            (start, end, rows, q, json.dumps(files)),
        )
    db.execute("insert into generations values ('prices', 0, 'abc', 1.0)")
    db.execute("insert into losses values ('prices', 0, 0, 0, 2, 5.0, 'removed by the broker', null)")
    db.commit()
    db.close()


def test_an_old_lake_is_refused_in_one_line_naming_the_command_that_migrates_it(lake_home):
    old_lake(lake_home)
    result = subprocess.run([LAKEHOUSE, "status"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "run `lakehouse migrate`" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_moves_every_committed_offset_into_the_tables_once_and_keeps_losses_and_generations(lake_home):
    old_lake(lake_home)
    result = subprocess.run([LAKEHOUSE, "migrate"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "prices: 3 files rewritten into raw.prices" in result.stdout

    raw = lake_tables.read_table(lake_home, "raw", "prices", ("_kafka_partition", "_kafka_offset", "_generation"))
    assert sorted(raw["_kafka_offset"].to_pylist()) == [2, 3, 4, 5, 7]  # offset 8 was never committed
    assert set(raw["_generation"].to_pylist()) == {0}
    quarantine = lake_tables.read_table(lake_home, "quarantine", "prices", ("_kafka_offset", "reason"))
    assert quarantine.to_pylist() == [{"_kafka_offset": 6, "reason": "not JSON: broken"}]
    state = TopicTables.load(settings(), "prices").state()
    assert state.progress() == {0: 8}
    assert [(g.number, g.topic_id) for g in state.generations] == [(0, "abc")]
    assert [(loss.start, loss.end, loss.accepted_at) for loss in state.losses] == [(0, 2, None)]
    assert (lake_home / "raw" / "_ledger.sqlite.migrated").exists()
    aside = pq.read_table(lake_home / "set_aside" / "prices" / "raw_prices-a-b.parquet")
    assert aside.select(["_kafka_partition", "_kafka_offset"]).to_pylist() == [
        {"_kafka_partition": 0, "_kafka_offset": 5}
    ]
    mark = json.loads((lake_home / "gates" / "prices" / "raw_prices.json").read_text())
    assert mark == {"offsets": {"0": 8}}

    again = subprocess.run([LAKEHOUSE, "migrate"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout
