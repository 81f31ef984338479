"""The drain's reader on a real broker: records arrive as Arrow columns, exactly as they were sent."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import Producer

from ingestion import kafka
from ingestion.batch_consumer import PARTITION_EOF, BatchConsumer
from ingestion.records import RawBatch
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

TOPIC = "reader.test"


def send(bootstrap: str, records: list[tuple[int, bytes | None, bytes | None, list | None]]) -> None:
    """(partition, key, value, headers) each, with a plain producer that shares no code with the product."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for partition, key, value, headers in records:
        producer.produce(TOPIC, key=key, value=value, partition=partition, headers=headers, timestamp=1_700_000_000_000)
    assert producer.flush(30) == 0


def read_all(reader: BatchConsumer, partitions: int) -> tuple[dict[int, RawBatch], list]:
    """Every record up to the end of each partition, one batch per partition."""
    runs: dict[int, list[RawBatch]] = {}
    events, at_end = [], set()
    while len(at_end) < partitions:
        batches, new_events = reader.consume(TOPIC, 1000, timeout_s=0.5)
        for batch in batches:
            runs.setdefault(batch.partition, []).append(batch)
        events += new_events
        at_end |= {e.partition for e in new_events if e.code == PARTITION_EOF}
    return {p: RawBatch.concat(r) for p, r in runs.items()}, events


def test_keys_values_tombstones_timestamps_and_headers_arrive_as_sent(kafka_env):
    recreate_topics(kafka_env, TOPIC, partitions=2)
    sent = [
        (0, b"k0", b'{"a": 1}', None),
        (0, None, b'{"a": 2}', [("trace", b"t-1"), ("empty", None)]),
        (0, b"k2", None, None),  # a tombstone
        (1, b"\xff\xfe", b"\x00not json", None),  # bytes are bytes: judging them is the parser's job
        (1, b"k4", b"", [("trace", b"t-2")]),
    ]
    send(kafka_env, sent)

    with kafka.batch_consumer("reader-test") as reader:
        reader.assign(TOPIC, {0: 0, 1: 0})
        batches, events = read_all(reader, partitions=2)

    assert batches[0].offsets.to_pylist() == [0, 1, 2] and batches[1].offsets.to_pylist() == [0, 1]
    assert batches[0].keys.to_pylist() == [b"k0", None, b"k2"]
    assert batches[0].values.to_pylist() == [b'{"a": 1}', b'{"a": 2}', None]
    assert batches[1].keys.to_pylist() == [b"\xff\xfe", b"k4"]
    assert batches[1].values.to_pylist() == [b"\x00not json", b""]
    assert batches[0].timestamps.to_pylist() == [1_700_000_000_000] * 3
    assert batches[0].headers_of(range(3)) == {1: [("trace", b"t-1"), ("empty", None)]}
    assert batches[1].headers_of(range(2)) == {1: [("trace", b"t-2")]}
    assert batches[0].header_values("trace").to_pylist() == [None, b"t-1", None]
    assert {(e.partition, e.offset) for e in events} == {(0, 3), (1, 2)}
    assert batches[0].value_bytes == 16


def test_reading_starts_at_the_assigned_offsets(kafka_env):
    recreate_topics(kafka_env, TOPIC, partitions=2)
    send(kafka_env, [(p, None, f'{{"i": {i}}}'.encode(), None) for i in range(10) for p in (0, 1)])

    with kafka.batch_consumer("reader-test") as reader:
        reader.assign(TOPIC, {0: 7, 1: 3})
        batches, _ = read_all(reader, partitions=2)

    assert batches[0].offsets.to_pylist() == [7, 8, 9]
    assert batches[1].values.to_pylist()[0] == b'{"i": 3}'


def test_a_batch_of_consecutive_runs_keeps_each_records_headers_in_place():
    first = RawBatch.of("t", 0, [0, 1], [b"a", b"b"], headers={1: [("h", b"1")]})
    second = RawBatch.of("t", 0, [2, 3], [b"c", None], headers={0: [("h", b"2")]})
    joined = RawBatch.concat([first, second])
    assert joined.offsets.to_pylist() == [0, 1, 2, 3]
    assert joined.values.to_pylist() == [b"a", b"b", b"c", None]
    assert joined.headers_of(range(4)) == {1: [("h", b"1")], 2: [("h", b"2")]}
    assert joined.head(2).headers_of(range(2)) == {1: [("h", b"1")]} and len(joined.head(2)) == 2


def test_client_log_lines_go_to_python_logging(caplog):
    with caplog.at_level(logging.WARNING, logger="reader-test"):
        reader = BatchConsumer(
            {"bootstrap.servers": "127.0.0.1:1", "group.id": "g", "reconnect.backoff.ms": 10},
            logging.getLogger("reader-test"),
        )
        reader.assign(TOPIC, {0: 0})
        reader.consume(TOPIC, 10, timeout_s=1)
        reader.close()
    assert any("127.0.0.1:1" in record.getMessage() for record in caplog.records)


def test_a_consumer_without_a_group_is_refused_clearly():
    with pytest.raises(ValueError, match=r"group\.id"):
        BatchConsumer({"bootstrap.servers": "127.0.0.1:1"}, logging.getLogger("reader-test"))
