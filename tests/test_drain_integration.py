"""The drain on a real broker: every produced record lands once, and a second drain adds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests import lake_tables
from tests.cli import run
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration


def send_independently(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    """A plain confluent-kafka producer, sharing no code with the product."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(topic, key=f"k{i % 7}".encode(), value=value)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def lake_rows(home: Path, topic: str) -> tuple[int, int]:
    """Rows of `raw.<topic>` at its current snapshot, and distinct Kafka coordinates among them."""
    rows = lake_tables.read_table(home, "raw", topic, ("_kafka_partition", "_kafka_offset"))
    return rows.num_rows, len(set(zip(*(rows[c].to_pylist() for c in rows.column_names), strict=True)))


def test_five_thousand_prices_drain_into_five_thousand_distinct_rows_and_a_second_drain_adds_nothing(
    kafka_env, lake_home
):
    recreate_topics(kafka_env, "prices")
    values = [
        json.dumps(
            {"ts": f"2021-03-10 16:{i // 600:02d}:{i % 60:02d}.000", "symbol": "AAPL", "price": 100 + i % 50}
        ).encode()
        for i in range(5000)
    ]
    send_independently(kafka_env, "prices", values)

    first = run("drain", "prices", timeout=300)
    assert first.returncode == 0, first.stderr
    assert "prices[0]: offsets 0-" in first.stdout
    assert lake_rows(lake_home, "prices") == (5000, 5000)

    second = run("drain", "prices", timeout=300)
    assert second.returncode == 0, second.stderr
    assert "nothing new" in second.stdout
    assert lake_rows(lake_home, "prices") == (5000, 5000)


def test_poison_records_and_tombstones_neither_stop_the_drain_nor_vanish(kafka_env, lake_home):
    recreate_topics(kafka_env, "prices", partitions=1)
    good = json.dumps({"ts": "2021-03-10 16:21:32.000", "symbol": "AAPL", "price": 238.32}).encode()
    send_independently(kafka_env, "prices", [good, b"{broken", None, good, b'{"symbol": "AAPL"}'])

    result = run("drain", "prices", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 quarantined, 1 tombstones" in result.stdout
    raw = lake_tables.read_table(lake_home, "raw", "prices", ("_kafka_offset", "_tombstone"))
    stored = sorted(zip(raw["_kafka_offset"].to_pylist(), raw["_tombstone"].to_pylist(), strict=True))
    held = lake_tables.read_table(lake_home, "quarantine", "prices", ("_kafka_offset", "reason"))
    quarantined = sorted(zip(held["_kafka_offset"].to_pylist(), held["reason"].to_pylist(), strict=True))
    assert stored == [(0, False), (2, True), (3, False)]
    assert [offset for offset, _ in quarantined] == [1, 4]
    assert quarantined[1][1] == "required field missing: ts, price"


def test_an_unknown_stream_is_one_clear_line_not_a_traceback(kafka_env, lake_home):
    result = run("drain", "bitcoin", timeout=300)
    assert result.returncode != 0
    assert "unknown stream or topic 'bitcoin'" in result.stderr
    assert "Traceback" not in result.stderr
