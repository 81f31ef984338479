"""A Kafka consumer that hands over records as Arrow columns, partition by partition.

It is the drain's reader: the C module `_rdkafka_batches` drives the librdkafka that
confluent-kafka's wheel carries and copies each consume call's records into Arrow buffers, so
reading costs no Python object per record. Everything else (metadata, watermarks, offset commits)
stays with confluent-kafka.
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

from ingestion import _rdkafka_batches
from ingestion.records import HEADERS_SCHEMA, RawBatch

PARTITION_EOF = KafkaError._PARTITION_EOF
_OFFSET_UNSET = -1001  # RD_KAFKA_OFFSET_INVALID: a pause names partitions, not offsets

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


@functools.cache
def _load_librdkafka() -> None:
    """Use the librdkafka confluent-kafka was built with, so both clients behave the same."""
    package = Path(confluent_kafka.__file__).parent
    bundled = sorted(package.parent.glob("confluent_kafka.libs/librdkafka*.so*")) + sorted(
        package.glob(".dylibs/librdkafka*.dylib")
    )
    path = str(bundled[0]) if bundled else ctypes.util.find_library("rdkafka")
    if path is None:
        raise ImportError("librdkafka not found: neither in confluent-kafka's wheel nor installed on the system")
    _rdkafka_batches.load(path)


class BatchConsumer:
    def __init__(self, config: Mapping[str, object], logger: logging.Logger):
        _load_librdkafka()
        # The log callable must not hold this object: the C reader holds it, and cannot break cycles.
        log = functools.partial(_log, logger)
        self._reader = _rdkafka_batches.Reader({k: str(v) for k, v in config.items()}, log=log)

    def assign(self, topic: str, starts: Mapping[int, int]) -> None:
        """Read these partitions from these offsets."""
        self._reader.assign(topic, list(starts.items()))

    def pause(self, topic: str, partitions: Iterable[int]) -> None:
        """Stop fetching these partitions: their ranges are read."""
        self._reader.pause(topic, [(p, _OFFSET_UNSET) for p in partitions])

    def consume(self, topic: str, max_records: int, timeout_s: float) -> tuple[list[RawBatch], list[Event]]:
        """Up to `max_records` records, as one batch per partition, and the events among them."""
        runs, events = self._reader.consume(max_records, int(timeout_s * 1000))
        return [_batch(topic, *run) for run in runs], [Event(*e) for e in events]

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> BatchConsumer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


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
