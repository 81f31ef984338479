"""A Kafka consumer that hands over records as Arrow columns, partition by partition.

It is the drain's reader, in one of two kinds that give the same batches:

- `c`: the C module `_rdkafka_batches` drives the librdkafka that confluent-kafka's wheel carries
  and copies each consume call's records into Arrow buffers, so reading costs no Python object per
  record. It declares the few parts of librdkafka's API it uses by hand, for librdkafka 2.x, and
  refuses to load another major version.
- `python`: confluent-kafka's own consumer, a Python message per record (several times slower),
  which takes over, with a warning, wherever the C reader cannot load.

Everything else (metadata, watermarks, offset commits) stays with confluent-kafka.
"""

from __future__ import annotations

import ctypes.util
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka
import pyarrow as pa
from confluent_kafka import KafkaError, KafkaException

from ingestion.records import HEADERS_SCHEMA, RawBatch

PARTITION_EOF = KafkaError._PARTITION_EOF
_OFFSET_UNSET = -1001  # RD_KAFKA_OFFSET_INVALID: a pause names partitions, not offsets

# The librdkafka major version whose rdkafka.h the C reader's declarations copy.
LIBRDKAFKA_MAJOR = 2

# syslog levels, as librdkafka logs, to Python's
_LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR, 4: logging.WARNING}


@dataclass(frozen=True)
class Event:
    """Something the broker or client says about a partition instead of a record."""

    partition: int
    offset: int
    code: int
    text: str

    def raise_error(self) -> None:
        raise KafkaException(KafkaError(self.code, f"partition {self.partition}: {self.text}"))


def check_version(version: int, path: str) -> None:
    """Refuse a librdkafka whose major version is not the one the C reader was written for: its
    structs and signatures may differ, and a wrong guess reads garbage or crashes."""
    major, minor, patch = version >> 24, (version >> 16) & 0xFF, (version >> 8) & 0xFF
    if major != LIBRDKAFKA_MAJOR:
        raise ImportError(
            f"librdkafka {major}.{minor}.{patch} at {path}: the C reader is written for {LIBRDKAFKA_MAJOR}.x"
        )


@functools.cache
def _load_librdkafka() -> None:
    """Use the librdkafka confluent-kafka was built with, so both clients behave the same."""
    from ingestion import _rdkafka_batches

    package = Path(confluent_kafka.__file__).parent
    bundled = sorted(package.parent.glob("confluent_kafka.libs/librdkafka*.so*")) + sorted(
        package.glob(".dylibs/librdkafka*.dylib")
    )
    path = str(bundled[0]) if bundled else ctypes.util.find_library("rdkafka")
    if path is None:
        raise ImportError("librdkafka not found: neither in confluent-kafka's wheel nor installed on the system")
    check_version(_rdkafka_batches.load(path), path)


@functools.cache
def c_reader_unavailable() -> str | None:
    """Why the C reader cannot load here, or None when it can."""
    try:
        _load_librdkafka()
    except ImportError as exc:
        return str(exc)
    return None


class BatchConsumer:
    """`reader` is `c`, `python` or `auto` (the C reader where it loads, else Python's, with a warning)."""

    def __init__(self, config: Mapping[str, object], logger: logging.Logger, reader: str = "auto"):
        if "group.id" not in config:
            raise ValueError("a consumer needs a group.id")
        why = c_reader_unavailable() if reader != "python" else None
        if reader == "c" and why:
            raise ImportError(f"the C Kafka reader cannot load: {why}")
        if reader == "auto" and why:
            _warn_once(logger, why)
        self.kind = "python" if reader == "python" or why else "c"
        self._reader = _CReader(config, logger) if self.kind == "c" else _PythonReader(config, logger)

    def assign(self, topic: str, starts: Mapping[int, int]) -> None:
        """Read these partitions from these offsets."""
        self._reader.assign(topic, starts)

    def pause(self, topic: str, partitions: Iterable[int]) -> None:
        """Stop fetching these partitions: their ranges are read."""
        self._reader.pause(topic, list(partitions))

    def consume(self, topic: str, max_records: int, timeout_s: float) -> tuple[list[RawBatch], list[Event]]:
        """Up to `max_records` records, as one batch per partition (in the order of their first
        record), and the events among them: what is queued now, else what arrives first within
        the timeout with what came along."""
        return self._reader.consume(topic, max_records, timeout_s)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> BatchConsumer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@functools.cache
def _warn_once(logger: logging.Logger, why: str) -> None:
    logger.warning(
        "the C Kafka reader cannot load (%s): reading with confluent-kafka's consumer, several times slower; "
        "LAKEHOUSE_KAFKA_READER=python silences this",
        why,
    )


class _CReader:
    def __init__(self, config: Mapping[str, object], logger: logging.Logger):
        from ingestion import _rdkafka_batches

        # The log callable must not hold this object: the C reader holds it, and cannot break cycles.
        log = functools.partial(_log, logger)
        self._reader = _rdkafka_batches.Reader({k: str(v) for k, v in config.items()}, log=log)

    def assign(self, topic: str, starts: Mapping[int, int]) -> None:
        self._reader.assign(topic, list(starts.items()))

    def pause(self, topic: str, partitions: list[int]) -> None:
        self._reader.pause(topic, [(p, _OFFSET_UNSET) for p in partitions])

    def consume(self, topic: str, max_records: int, timeout_s: float) -> tuple[list[RawBatch], list[Event]]:
        runs, events = self._reader.consume(max_records, int(timeout_s * 1000))
        return [_batch(topic, *run) for run in runs], [Event(*e) for e in events]

    def close(self) -> None:
        self._reader.close()


class _PythonReader:
    """The same batches from confluent-kafka's consumer: a Python message per record."""

    def __init__(self, config: Mapping[str, object], logger: logging.Logger):
        self._consumer = confluent_kafka.Consumer(dict(config), logger=logger)

    def assign(self, topic: str, starts: Mapping[int, int]) -> None:
        self._consumer.assign([confluent_kafka.TopicPartition(topic, p, o) for p, o in starts.items()])

    def pause(self, topic: str, partitions: list[int]) -> None:
        self._consumer.pause([confluent_kafka.TopicPartition(topic, p) for p in partitions])

    def consume(self, topic: str, max_records: int, timeout_s: float) -> tuple[list[RawBatch], list[Event]]:
        # A consume call with a timeout waits for a full batch; the C reader's rule instead.
        messages = self._consumer.consume(max_records, timeout=0)
        if not messages:
            first = self._consumer.poll(timeout_s)
            messages = [first, *self._consumer.consume(max_records - 1, timeout=0)] if first is not None else []
        runs: dict[int, list] = {}
        events: list[Event] = []
        for m in messages:
            error = m.error()
            if error is not None:
                events.append(Event(m.partition(), m.offset(), error.code(), error.str()))
            else:
                runs.setdefault(m.partition(), []).append(m)
        return [_python_batch(topic, partition, run) for partition, run in runs.items()], events

    def close(self) -> None:
        self._consumer.close()


def _python_batch(topic: str, partition: int, messages: list) -> RawBatch:
    headers = {i: [(k, v) for k, v in m.headers()] for i, m in enumerate(messages) if m.headers()}
    return RawBatch.of(
        topic,
        partition,
        [m.offset() for m in messages],
        [m.value() for m in messages],
        [m.key() for m in messages],
        [m.timestamp()[1] for m in messages],
        headers,
    )


def _log(logger: logging.Logger, level: int, facility: str, message: str) -> None:
    logger.log(_LEVELS.get(level, logging.INFO if level < 7 else logging.DEBUG), "%s: %s", facility, message)


Column = tuple[bytes, bytes, bytes, int]  # a binary column's offsets, data, validity and null count


def _binary(count: int, column: Column) -> pa.BinaryArray:
    offsets, data, valid, nulls = column
    validity = pa.py_buffer(valid) if nulls else None
    return pa.Array.from_buffers(
        pa.binary(), count, [validity, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls
    )


def _batch(
    topic: str,
    partition: int,
    count: int,
    offsets: bytes,
    timestamps: bytes,
    keys: Column,
    values: Column,
    header_count: int,
    header_records: bytes,
    header_keys: Column,
    header_values: Column,
) -> RawBatch:
    headers = pa.Table.from_arrays(
        [
            pa.Array.from_buffers(pa.int32(), header_count, [None, pa.py_buffer(header_records)]),
            _binary(header_count, header_keys),
            _binary(header_count, header_values),
        ],
        schema=HEADERS_SCHEMA,
    )
    return RawBatch(
        topic=topic,
        partition=partition,
        offsets=pa.Array.from_buffers(pa.int64(), count, [None, pa.py_buffer(offsets)]),
        timestamps=pa.Array.from_buffers(pa.int64(), count, [None, pa.py_buffer(timestamps)]),
        keys=_binary(count, keys),
        values=_binary(count, values),
        headers=headers,
    )
