"""The record of rows a gate set aside: what it keeps, a retried gate run recording once, release."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from ingestion import set_aside
from ingestion.config import settings
from ingestion.set_aside import PENDING


def failing(*coordinates: tuple[int, int], expectation: str = "expect_column_values_to_be_between") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "_kafka_partition": [p for p, _ in coordinates],
            "_kafka_offset": [o for _, o in coordinates],
            "expectation": expectation,
            "column": "price",
            "value": "-5.0",
            "reason": "raw_prices: price = -5.0 fails expect_column_values_to_be_between(min_value=0)",
        }
    )


def test_set_aside_rows_are_kept_with_their_reason_and_counted_once_per_row(lake_home):
    s = settings()
    path = set_aside.record(s, "prices", "raw_prices", {}, {0: 10, 1: 5}, failing((0, 3), (1, 4)))
    set_aside.record(
        s, "prices", "raw_prices", {0: 10, 1: 5}, {0: 20, 1: 5},
        pd.concat([failing((0, 12)), failing((0, 12), expectation="expect_column_values_to_be_in_set")]),
    )  # fmt: skip

    assert path.parent == lake_home / "set_aside" / "prices" and path.suffix == ".parquet"
    frame = set_aside.read_topic(s, "prices")
    assert list(frame.columns) == list(set_aside.COLUMNS)
    assert list(zip(frame["_kafka_partition"], frame["_kafka_offset"], strict=True)) == [
        (0, 3),
        (0, 12),
        (0, 12),
        (1, 4),
    ]
    assert set(frame["suite"]) == {"raw_prices"} and frame["value"].tolist() == ["-5.0"] * 4
    assert frame["set_aside_at"].notna().all()
    assert set_aside.counts(s, "prices") == {(0, 0): 2, (0, 1): 1}  # offset 12 failed two expectations: one row
    assert set_aside.coordinates(s, "prices") == {(0, 3), (0, 12), (1, 4)}
    assert set(set_aside.read_all(s)["topic"]) == {"prices"}
    assert set_aside.counts(s, "office.claims") == {} and set_aside.read_topic(s, "office.claims").empty


def test_nothing_to_set_aside_writes_nothing(lake_home):
    assert set_aside.record(settings(), "prices", "raw_prices", {}, {0: 10}, failing()) is None
    assert not (lake_home / "set_aside").exists()


def test_a_gate_run_retried_over_the_same_range_rewrites_the_same_file(lake_home):
    s = settings()
    first = set_aside.record(s, "prices", "raw_prices", {0: 10}, {0: 20}, failing((0, 12)))
    again = set_aside.record(s, "prices", "raw_prices", {0: 10}, {0: 20}, failing((0, 12)))
    assert first == again
    assert list(first.parent.iterdir()) == [first]
    assert set_aside.counts(s, "prices") == {(0, 0): 1}


def test_a_retry_over_a_longer_range_from_the_same_mark_replaces_the_interrupted_try(lake_home):
    # The first try crashed after its file and before its mark; more was drained before the retry.
    s = settings()
    interrupted = set_aside.record(s, "prices", "raw_prices", {0: 10}, {0: 20}, failing((0, 12)))
    retry = set_aside.record(s, "prices", "raw_prices", {0: 10}, {0: 30}, failing((0, 12), (0, 25)))
    assert not interrupted.exists() and retry.exists()
    assert len(set_aside.read_topic(s, "prices")) == 2
    # Another suite's file over the same range is its own.
    other = set_aside.record(s, "prices", "other_suite", {0: 10}, {0: 20}, failing((0, 12)))
    assert other.exists() and retry.exists()


def test_a_write_a_crash_interrupted_is_invisible_and_cleared_by_the_next(lake_home):
    s = settings()
    path = set_aside.record(s, "prices", "raw_prices", {}, {0: 10}, failing((0, 3)))
    torn = path.with_name("raw_prices-torn.parquet" + PENDING)
    torn.write_bytes(b"half a parquet file")
    assert set_aside.counts(s, "prices") == {(0, 0): 1}
    set_aside.record(s, "prices", "raw_prices", {0: 10}, {0: 20}, failing((0, 15)))
    assert not torn.exists()
    assert set_aside.counts(s, "prices") == {(0, 0): 2}


def test_release_takes_coordinates_out_once_and_keeps_the_rest(lake_home):
    s = settings()
    path = set_aside.record(s, "prices", "raw_prices", {}, {0: 20}, failing((0, 3), (0, 12), (0, 15)))
    assert set_aside.release(s, "prices", [(0, 3), (0, 12), (2, 99)]) == 2
    assert set_aside.coordinates(s, "prices") == {(0, 15)}
    assert pq.read_schema(path).metadata[b"suite"] == b"raw_prices"  # the rewritten file keeps its range
    assert set_aside.release(s, "prices", [(0, 3), (0, 12)]) == 0  # run again: nothing left to release
    assert set_aside.release(s, "prices", [(0, 15)]) == 1
    assert set_aside.counts(s, "prices") == {} and not path.exists()
    assert set_aside.release(s, "prices", []) == 0


def test_release_for_one_suite_leaves_a_row_another_suite_set_aside(lake_home):
    s = settings()
    set_aside.record(s, "prices", "raw_prices", {}, {0: 20}, failing((0, 3), (0, 4)))
    set_aside.record(s, "prices", "other_suite", {}, {0: 20}, failing((0, 4)))
    assert set_aside.release(s, "prices", [(0, 3), (0, 4)], suite="raw_prices") == 1  # (0, 4) is still out
    frame = set_aside.read_topic(s, "prices")
    assert frame[["_kafka_offset", "suite"]].values.tolist() == [[4, "other_suite"]]
    assert set_aside.release(s, "prices", [(0, 4)], suite="other_suite") == 1
