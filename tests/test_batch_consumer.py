"""The drain's reader on a real broker: records arrive as Arrow columns, exactly as they were sent,
from the C reader and from the pure-Python one that takes over where the C one cannot load."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import Producer

from ingestion import batch_consumer, kafka
from ingestion.batch_consumer import PARTITION_EOF, BatchConsumer
from ingestion.records import RawBatch
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

TOPIC = "reader.test"
# An hour ago, to the millisecond: a timestamp older than the broker's 7-day retention may be deleted.
SENT_AT = int(time.time() * 1000) - 3_600_000


@pytest.fixture(params=["c", "python"])
def reader_kind(request, monkeypatch) -> str:
    monkeypatch.setenv("LAKEHOUSE_KAFKA_READER", request.param)
    return request.param


def send(bootstrap: str, records: list[tuple[int, bytes | None, bytes | None, list | None]]) -> None:
    """(partition, key, value, headers) each, with a plain producer that shares no code with the product."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for partition, key, value, headers in records:
        producer.produce(TOPIC, key=key, value=value, partition=partition, headers=headers, timestamp=SENT_AT)
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


def test_keys_values_tombstones_timestamps_and_headers_arrive_as_sent(kafka_env, reader_kind):
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
        assert reader.kind == reader_kind
        reader.assign(TOPIC, {0: 0, 1: 0})
        batches, events = read_all(reader, partitions=2)

    assert batches[0].offsets.to_pylist() == [0, 1, 2] and batches[1].offsets.to_pylist() == [0, 1]
    assert batches[0].keys.to_pylist() == [b"k0", None, b"k2"]
    assert batches[0].values.to_pylist() == [b'{"a": 1}', b'{"a": 2}', None]
    assert batches[1].keys.to_pylist() == [b"\xff\xfe", b"k4"]
    assert batches[1].values.to_pylist() == [b"\x00not json", b""]
    assert batches[0].timestamps.to_pylist() == [SENT_AT] * 3
    assert batches[0].headers_of(range(3)) == {1: [("trace", b"t-1"), ("empty", None)]}
    assert batches[1].headers_of(range(2)) == {1: [("trace", b"t-2")]}
    assert batches[0].header_values("trace").to_pylist() == [None, b"t-1", None]
    assert {(e.partition, e.offset) for e in events} == {(0, 3), (1, 2)}
    assert batches[0].value_bytes == 16


def test_reading_starts_at_the_assigned_offsets(kafka_env, reader_kind):
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


def test_a_paused_partition_sends_nothing_more(kafka_env, reader_kind):
    recreate_topics(kafka_env, TOPIC, partitions=2)
    send(kafka_env, [(0, None, b'{"i": 0}', None), (1, None, b'{"i": 0}', None)])
    with kafka.batch_consumer("reader-test") as reader:
        reader.assign(TOPIC, {0: 0, 1: 0})
        reader.pause(TOPIC, [1])
        batches, _ = reader.consume(TOPIC, 100, timeout_s=5)
        while not batches:
            batches, _ = reader.consume(TOPIC, 100, timeout_s=5)
        send(kafka_env, [(0, None, b'{"i": 1}', None), (1, None, b'{"i": 1}', None)])
        later, _ = reader.consume(TOPIC, 100, timeout_s=5)
    assert {b.partition for b in batches + later} == {0}


def test_client_log_lines_go_to_python_logging(caplog, reader_kind):
    with caplog.at_level(logging.WARNING, logger="reader-test"):
        reader = BatchConsumer(
            {"bootstrap.servers": "127.0.0.1:1", "group.id": "g", "reconnect.backoff.ms": 10},
            logging.getLogger("reader-test"),
            reader_kind,
        )
        reader.assign(TOPIC, {0: 0})
        reader.consume(TOPIC, 10, timeout_s=1)
        reader.close()
    assert any("127.0.0.1:1" in record.getMessage() for record in caplog.records)


def test_a_consumer_without_a_group_is_refused_clearly(reader_kind):
    with pytest.raises(ValueError, match=r"group\.id"):
        BatchConsumer({"bootstrap.servers": "127.0.0.1:1"}, logging.getLogger("reader-test"), reader_kind)


def test_the_c_reader_refuses_a_librdkafka_of_another_major_version():
    batch_consumer.check_version(0x021001FF, "librdkafka.so.1")  # 2.16.1: the major it is written for
    with pytest.raises(
        ImportError, match=r"librdkafka 3\.0\.0 at /x/librdkafka\.so\.1: the C reader is written for 2\.x"
    ):
        batch_consumer.check_version(0x030000FF, "/x/librdkafka.so.1")


def test_where_the_c_reader_cannot_load_the_python_one_reads_with_a_warning(kafka_env, monkeypatch, caplog):
    monkeypatch.setattr(batch_consumer, "c_reader_unavailable", lambda: "librdkafka 3.0.0: written for 2.x")
    monkeypatch.setattr(batch_consumer, "_warn_once", batch_consumer._warn_once.__wrapped__)
    recreate_topics(kafka_env, TOPIC, partitions=1)
    send(kafka_env, [(0, b"k", b'{"a": 1}', None)])
    with caplog.at_level(logging.WARNING), kafka.batch_consumer("reader-test") as reader:
        reader.assign(TOPIC, {0: 0})
        batches, _ = read_all(reader, partitions=1)
    assert reader.kind == "python" and batches[0].values.to_pylist() == [b'{"a": 1}']
    assert any("C Kafka reader cannot load (librdkafka 3.0.0" in r.getMessage() for r in caplog.records)


def test_asked_for_the_c_reader_where_it_cannot_load_a_consumer_says_why(monkeypatch):
    monkeypatch.setattr(batch_consumer, "c_reader_unavailable", lambda: "librdkafka not found")
    with pytest.raises(ImportError, match="the C Kafka reader cannot load: librdkafka not found"):
        BatchConsumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, logging.getLogger("reader-test"), "c")
