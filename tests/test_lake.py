"""The lake's tables: a batch is in the lake once the raw table's commit names it, never twice,
and the newest snapshot's summary alone says how far each partition is stored."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion import lake
from ingestion.config import settings
from ingestion.parse import QUARANTINE_SCHEMA, raw_schema
from ingestion.streams import CONTRACTS
from tests import lake_tables

CONTRACT = CONTRACTS["prices"]
DAY = date(2021, 3, 10)


def batch(start: int, end: int, quarantined: int = 0) -> lake.Batch:
    return lake.Batch("prices", 0, start, end, end - start, quarantined, 0, (), 0, 0.1)


def raw_rows(start: int, end: int, partition: int = 0) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "ts": datetime(2021, 3, 10, 16, 21, 32),
                "symbol": "AAPL",
                "price": float(offset),
                "_topic": "prices",
                "_kafka_partition": partition,
                "_kafka_offset": offset,
                "_kafka_timestamp": datetime(2021, 3, 10, 16, 21, 33),
                "_kafka_key": "AAPL",
                "_tombstone": False,
                "_generation": 0,
            }
            for offset in range(start, end)
        ],
        schema=raw_schema(CONTRACT),
    )


def quarantined_rows(offsets: list[int], partition: int = 0) -> pa.Table:
    schema = QUARANTINE_SCHEMA.append(pa.field(lake.GENERATION_COLUMN, pa.int32()))
    return pa.Table.from_pylist(
        [
            {
                "_topic": "prices",
                "_kafka_partition": partition,
                "_kafka_offset": offset,
                "_kafka_timestamp": datetime(2021, 3, 10, 16, 21, 33),
                "_kafka_key": b"AAPL",
                "_value": b'{"ts": "2021-03-10 16:21:32.000", "symbol": "AAPL"}',
                "_headers": [],
                "reason": "missing required field 'price'",
                "_generation": 0,
            }
            for offset in offsets
        ],
        schema=schema,
    )


def opened() -> lake.TopicTables:
    """The topic's tables as a drain leaves them before its first batch: its first generation started."""
    tables = lake.TopicTables.open(settings(), CONTRACT)
    state = tables.state()
    if state.generation is None:
        tables.commit_state(state, replace(state, generations=(lake.Generation("prices", 0, None, time.time()),)))
    return tables


def write_raw(tables: lake.TopicTables, start: int, end: int, name: str | None = None) -> str:
    path = tables.data_path("raw", DAY, name or lake.data_file_name(0, start, end))
    tables.write(raw_rows(start, end), path)
    return path


def commit(tables: lake.TopicTables, start: int, end: int) -> lake.State:
    """A drain's batch of `start`..`end`, all of it raw."""
    return tables.commit_batch(tables.state(), batch(start, end), [write_raw(tables, start, end)], [])


def local(uri: str) -> str:
    return uri.removeprefix("file://")


def raw_offsets(lake_home) -> list[int]:
    return sorted(lake_tables.read_table(lake_home, "raw", "prices", ("_kafka_offset",))["_kafka_offset"].to_pylist())


def test_the_state_round_trips_through_the_raw_tables_snapshot_summary(lake_home):
    s = settings()
    tables = lake.TopicTables.open(s, CONTRACT)
    state = lake.State(
        "prices",
        offsets={"0": 25, "2": 7, "1:0": 3},
        generations=(lake.Generation("prices", 0, "id-a", 1.5), lake.Generation("prices", 1, None, 2.5)),
        losses=(lake.Loss("prices", 0, 2, 0, 4, 3.5, "removed by retention", accepted_at=4.5),),
    )
    assert lake.State.from_summary("prices", 42, state.summary()) == replace(state, snapshot_id=42)

    committed = tables.commit_state(tables.state(), state)
    read_back = lake.TopicTables.load(s, "prices").state()
    assert read_back == committed
    assert (
        read_back.snapshot_id
        == lake_tables.lake_catalog(lake_home).load_table("raw.prices").current_snapshot().snapshot_id
    )
    assert read_back.progress() == {0: 3}  # the current generation's partitions only
    assert read_back.stored_until() == {(0, 0): 25, (0, 2): 7, (1, 0): 3}


def test_batches_advance_the_state_per_partition_and_land_in_the_raw_table(lake_home):
    tables = opened()
    commit(tables, 0, 10)
    commit(tables, 10, 25)
    assert lake.TopicTables.load(settings(), "prices").state().progress() == {0: 25}
    assert raw_offsets(lake_home) == list(range(25))
    assert lake.TopicTables.load(settings(), "other") is None  # no table before its first drain


def test_a_field_the_contract_does_not_declare_joins_the_raw_tables_schema(lake_home):
    tables = opened()
    commit(tables, 0, 10)
    drifted = raw_rows(10, 12).append_column("venue", pa.array(["XNAS", None], pa.string()))
    path = tables.data_path("raw", DAY, lake.data_file_name(0, 10, 12))
    tables.write(drifted, path)
    tables.commit_batch(tables.state(), batch(10, 12), [path], [])
    venues = lake_tables.read_table(lake_home, "raw", "prices", ("_kafka_offset", "venue")).sort_by("_kafka_offset")
    assert venues["venue"].to_pylist() == [None] * 10 + ["XNAS", None]


def test_replacing_files_is_one_replace_snapshot_that_carries_the_state_forward(lake_home):
    tables = opened()
    commit(tables, 0, 10)
    commit(tables, 10, 25)
    small = tables.raw.inspect.data_files()["file_path"].to_pylist()
    merged = write_raw(tables, 0, 25)
    base = tables.state()
    after = tables.replace_files(base, {merged: small})
    assert lake_tables.snapshot_summary(lake_home, "raw", "prices")[lake.OFFSETS] == base.summary()[lake.OFFSETS]
    current = lake_tables.lake_catalog(lake_home).load_table("raw.prices").current_snapshot()
    assert current.summary.operation.value == "replace"
    assert current.snapshot_id == after.snapshot_id
    assert tables.raw.inspect.data_files()["file_path"].to_pylist() == [merged]
    assert raw_offsets(lake_home) == list(range(25))


def test_a_commit_planned_against_an_old_snapshot_is_fenced(lake_home):
    s = settings()
    first = opened()
    second = lake.TopicTables.open(s, CONTRACT)
    planned = second.state()  # both plan from the same snapshot
    commit(first, 0, 10)

    late = write_raw(second, 0, 10, name="p0-late.parquet")
    # The loser has not even seen the new snapshot: the table's own compare-and-swap refuses it.
    with pytest.raises(lake.Fenced):
        second.commit_batch(planned, batch(0, 10), [late], [])
    # Nor does moving to the newest snapshot make the old plan committable.
    second.refresh()
    with pytest.raises(lake.Fenced):
        second.commit_batch(planned, batch(0, 10), [late], [])
    assert raw_offsets(lake_home) == list(range(10))

    assert second.state().progress() == {0: 10}  # planning again from the new snapshot goes on
    commit(second, 10, 12)
    assert raw_offsets(lake_home) == list(range(12))


@pytest.mark.parametrize(("start", "end"), [(5, 30), (26, 30)], ids=["overlap", "hole"])
def test_a_range_that_overlaps_or_leaves_a_hole_is_refused(lake_home, start, end):
    tables = opened()
    commit(tables, 0, 25)
    quarantine_file = tables.data_path("quarantine", None, lake.data_file_name(0, start, end))
    tables.write(quarantined_rows([start]), quarantine_file)
    with pytest.raises(lake.LedgerConflict):
        tables.commit_batch(
            tables.state(), batch(start, end, 1), [write_raw(tables, start + 1, end)], [quarantine_file]
        )
    assert lake.TopicTables.load(settings(), "prices").state().progress() == {0: 25}
    assert raw_offsets(lake_home) == list(range(25))
    assert lake_tables.read_table(lake_home, "quarantine", "prices").num_rows == 0  # refused before any commit


def test_orphans_older_than_the_age_are_removed_and_younger_ones_kept(lake_home):
    tables = opened()
    commit(tables, 0, 10)
    committed = local(tables.raw.inspect.data_files()["file_path"][0].as_py())
    old_orphan = local(write_raw(tables, 10, 20))  # a crash between writing and committing
    young_orphan = local(write_raw(tables, 20, 30, name="p0-young.parquet"))  # another machine's drain, about to commit
    quarantine_orphan = tables.data_path("quarantine", None, lake.data_file_name(0, 10, 20))
    tables.write(quarantined_rows([15]), quarantine_orphan)
    quarantine_orphan = local(quarantine_orphan)
    long_ago = time.time() - 7200
    for path in (committed, old_orphan, quarantine_orphan):
        os.utime(path, (long_ago, long_ago))

    assert tables.remove_orphans(3600) == 2
    assert os.path.exists(committed)  # old, but a snapshot references it
    assert os.path.exists(young_orphan)
    assert not os.path.exists(old_orphan)
    assert not os.path.exists(quarantine_orphan)
    assert raw_offsets(lake_home) == list(range(10))


def test_the_state_survives_a_foreign_snapshot_without_the_summary_keys(lake_home):
    s = settings()
    tables = opened()
    commit(tables, 0, 10)
    # Another engine adds a file (plain pyarrow and pyiceberg, as an analyst's backfill would): no lakehouse keys.
    foreign = lake_tables.lake_catalog(lake_home).load_table("raw.prices")
    backfill = local(f"{foreign.location()}/data/day={DAY.isoformat()}/backfill.parquet")
    pq.write_table(raw_rows(100, 102, partition=2), backfill)
    foreign.add_files([backfill])
    assert lake.OFFSETS not in lake_tables.snapshot_summary(lake_home, "raw", "prices")

    tables = lake.TopicTables.load(s, "prices")
    state = tables.state()
    assert state.progress() == {0: 10}
    assert state.snapshot_id == foreign.refresh().current_snapshot().snapshot_id  # plans against the newest
    commit(tables, 10, 20)
    assert lake.TopicTables.load(s, "prices").state().progress() == {0: 20}
    assert raw_offsets(lake_home) == [*range(20), 100, 101]


def test_finish_replays_completes_a_replay_whose_raw_commit_was_missed(lake_home):
    s = settings()
    tables = opened()
    # A batch of 0..10 whose offsets 3 and 7 broke the contract.
    quarantine_file = tables.data_path("quarantine", None, lake.data_file_name(0, 0, 10))
    tables.write(quarantined_rows([3, 7]), quarantine_file)
    raw = [write_raw(tables, 0, 3, "p0-a.parquet"), write_raw(tables, 4, 7, "p0-b.parquet")]
    raw.append(write_raw(tables, 8, 10, "p0-c.parquet"))
    tables.commit_batch(tables.state(), batch(0, 10, 2), raw, [quarantine_file])

    # A replay (the contract was fixed) moves both records to raw; it crashes between its commits.
    replayed = tables.data_path("raw", DAY, lake.replay_file_name(0, 0, 10, 1))
    tables.write(pa.concat_tables([raw_rows(3, 4), raw_rows(7, 8)]), replayed)
    tables.retire_quarantine_file(quarantine_file, None, [replayed])
    assert lake_tables.read_table(lake_home, "quarantine", "prices").num_rows == 0
    assert raw_offsets(lake_home) == [0, 1, 2, 4, 5, 6, 8, 9]  # the two records are in neither table

    recovering = lake.TopicTables.load(s, "prices")
    assert recovering.finish_replays() == 1
    assert raw_offsets(lake_home) == list(range(10))
    assert lake.TopicTables.load(s, "prices").state().progress() == {0: 10}
    assert lake.TopicTables.load(s, "prices").finish_replays() == 0  # finished once, never twice
    assert raw_offsets(lake_home) == list(range(10))


def test_a_second_drain_of_the_same_topic_waits_for_the_lock_or_refuses(lake_home):
    s = settings()
    with lake.topic_lock(s, "prices"), pytest.raises(lake.TopicBusy), lake.topic_lock(s, "prices", wait_s=0.3):
        pass
    with lake.topic_lock(s, "prices", wait_s=0.3):
        pass  # released by the first holder


# Every type a raw table holds, a row of values and a row of nulls: DuckDB picks nullable pandas
# types only for a batch that has nulls, so both kinds of batch are read.
EVERY_TYPE = """
    select * from (values
        (1, 3::bigint, 2.5::double, 1.5::decimal(10, 2), true, date '2024-01-02',
         timestamp '2024-01-01 10:00:00', '2024-01-01 10:00:00+00'::timestamptz, 'x', '', ['a'], {'a': 1}),
        (null, null, null, null, null, null, null, null, null, null, null, null)
    ) as rows(i, bi, f, d, b, dt, ts, tstz, s, blank, l, st)
"""


@pytest.mark.parametrize("where", ["true", "i is not null"])
def test_raw_rows_reach_pandas_exactly_as_duckdb_itself_converts_them(where):
    import duckdb
    import pandas as pd

    con = duckdb.connect()
    sql = f"select * from ({EVERY_TYPE}) where {where}"
    batch = con.execute(sql).fetch_record_batch(100).read_next_batch()

    pd.testing.assert_frame_equal(lake.as_pandas(batch), con.execute(sql).fetch_df())
