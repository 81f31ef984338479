"""The Kafka-to-Parquet drain: plan offset ranges, read them, parse, write, commit.

A drain is deterministic: it reads exactly the offset range it was given (up to the end
offsets seen when it was planned), in batches bounded by records and bytes, and each batch
becomes part of the lake by one ledger commit (see `lake.py`). It never relies on Kafka's
committed offsets; it commits to Kafka afterwards only so that monitoring tools see the lag.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ingestion import kafka, lake
from ingestion.config import Settings
from ingestion.config import settings as current_settings
from ingestion.contracts import Contract
from ingestion.failpoints import failpoint
from ingestion.parse import RawBatch, event_dates, parse

log = logging.getLogger(__name__)

CONSUMER_GROUP = "lakehouse-drain"


class DrainStalled(RuntimeError):
    """The broker stopped answering in the middle of a range; nothing of the unfinished batch was committed."""


@dataclass(frozen=True)
class OffsetRange:
    partition: int
    start: int
    end: int  # exclusive

    def __str__(self) -> str:
        return f"{self.partition}:{self.start}-{self.end}"

    @classmethod
    def parse(cls, text: str) -> OffsetRange:
        partition, _, span = text.partition(":")
        start, _, end = span.partition("-")
        return cls(int(partition), int(start), int(end))


@dataclass
class PartitionReport:
    partition: int
    start: int
    end: int
    rows: int = 0
    quarantined: int = 0
    tombstones: int = 0
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    batches: int = 0
    seconds: float = 0.0
    lag: int = 0


@dataclass
class DrainReport:
    topic: str
    partitions: list[PartitionReport]
    seconds: float
    recovered: tuple[int, int] = (0, 0)  # (published, deleted) pending files left by a crash

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def quarantined(self) -> int:
        return sum(p.quarantined for p in self.partitions)

    @property
    def files(self) -> list[str]:
        return [name for p in self.partitions for name in p.files]


def plan(progress: dict[int, int], marks: dict[int, tuple[int, int]]) -> list[OffsetRange]:
    """The ranges still to store: from what the lake holds (else the broker's first offset) to the end."""
    ranges = []
    for partition, (low, high) in sorted(marks.items()):
        start = progress.get(partition, low)
        if high > start:
            ranges.append(OffsetRange(partition, start, high))
    return ranges


def pending_ranges(contract: Contract, s: Settings | None = None) -> tuple[list[OffsetRange], dict[int, int]]:
    """What a drain would read now, and the broker's end offsets; reads the ledger and the broker only."""
    s = s or current_settings()
    consumer = kafka.consumer(CONSUMER_GROUP)
    try:
        marks = kafka.watermarks(contract.topic, consumer)
    finally:
        consumer.close()
    with lake.Ledger(s.ledger_path) as ledger:
        progress = ledger.progress(contract.topic)
    return plan(progress, marks), {p: high for p, (_, high) in marks.items()}


def _clip(ranges: Sequence[OffsetRange], progress: dict[int, int], marks: dict[int, tuple[int, int]]):
    """Start each planned range where the lake really ends, so a stale plan can neither overlap nor leave a hole."""
    clipped = []
    for r in ranges:
        start = progress.get(r.partition, marks.get(r.partition, (r.start, r.start))[0])
        if r.end > start:
            clipped.append(OffsetRange(r.partition, start, r.end))
    return clipped


def _read_range(
    consumer: Consumer, topic: str, r: OffsetRange, s: Settings, stall_timeout_s: float
) -> Iterator[tuple[int, int, list[Message]]]:
    """Yield (start, end, messages) batches that tile [r.start, r.end) exactly, each bounded in records and bytes."""
    consumer.assign([TopicPartition(topic, r.partition, r.start)])
    batch: list[Message] = []
    size = 0
    batch_start = position = r.start
    last_progress = time.monotonic()
    while position < r.end:
        messages = consumer.consume(num_messages=min(s.batch_max_records, 50_000), timeout=0.5)
        if not messages:
            if time.monotonic() - last_progress > stall_timeout_s:
                raise DrainStalled(
                    f"{topic}[{r.partition}]: no data for {stall_timeout_s:.0f} s at offset {position} "
                    f"(range ends at {r.end}); is the broker up?"
                )
            continue
        last_progress = time.monotonic()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    # Everything up to the end of the log has been read; offsets between the last
                    # message and the end are transaction markers or compacted away.
                    position = max(position, min(message.offset(), r.end))
                    continue
                raise KafkaException(error)
            offset = message.offset()
            if offset >= r.end:
                position = r.end
                break
            batch.append(message)
            size += len(message)
            position = offset + 1
            if len(batch) >= s.batch_max_records or size >= s.batch_max_bytes:
                yield batch_start, position, batch
                batch, size, batch_start = [], 0, position
    if batch or batch_start < r.end:
        yield batch_start, r.end, batch


def _raw_batch(topic: str, partition: int, messages: list[Message]) -> RawBatch:
    return RawBatch(
        topic=topic,
        partition=partition,
        offsets=[m.offset() for m in messages],
        timestamps=[m.timestamp()[1] for m in messages],
        keys=[m.key() for m in messages],
        values=[m.value() for m in messages],
        headers_of=lambda i: messages[i].headers(),
    )


def _write_batch(
    contract: Contract, parsed_table: pa.Table, quarantine: pa.Table, r: OffsetRange, s: Settings
) -> tuple[list[str], int]:
    """Write the batch's files under their pending names; return their lake paths and total bytes."""
    name = lake.data_file_name(r.partition, r.start, r.end)
    files: list[str] = []
    written = 0
    if parsed_table.num_rows:
        dates = event_dates(parsed_table, contract)
        for day in pc.unique(dates).to_pylist():
            part = parsed_table.filter(pc.equal(dates, pa.scalar(day, pa.date32())))
            path = lake.topic_dir(s.raw_dir, contract.topic) / f"date={day.isoformat()}" / name
            written += lake.write_pending(part, path)
            files.append(str(path.relative_to(s.home)))
            failpoint("while-writing")
    if quarantine.num_rows:
        path = lake.topic_dir(s.quarantine_dir, contract.topic) / name
        written += lake.write_pending(quarantine, path)
        files.append(str(path.relative_to(s.home)))
    return files, written


def _drain_partition(
    consumer: Consumer, ledger: lake.Ledger, contract: Contract, r: OffsetRange, s: Settings, stall_timeout_s: float
) -> PartitionReport:
    """Read batches on this thread while a writer thread parses, writes and commits the previous one.

    Parsing and writing release the GIL, so on two cores reading and writing overlap. At most one
    batch waits for the writer, so memory holds two batches at most, whatever the backlog; the
    writer commits batches in order, so the ledger stays contiguous.
    """
    report = PartitionReport(r.partition, r.start, r.end)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"drain-{r.partition}") as writer:
        in_flight: Future | None = None
        for start, end, messages in _read_range(consumer, contract.topic, r, s, stall_timeout_s):
            raw = _raw_batch(contract.topic, r.partition, messages)
            del messages
            if in_flight is not None:
                in_flight.result()
            piece = OffsetRange(r.partition, start, end)
            in_flight = writer.submit(_store_batch, consumer, ledger, contract, raw, piece, s, report)
        if in_flight is not None:
            in_flight.result()
    report.seconds = time.monotonic() - started
    return report


def _store_batch(
    consumer: Consumer,
    ledger: lake.Ledger,
    contract: Contract,
    raw: RawBatch,
    piece: OffsetRange,
    s: Settings,
    report: PartitionReport,
) -> None:
    batch_started = time.monotonic()
    parsed = parse(raw, contract, s.record_max_bytes)
    failpoint("before-write")
    files, written = _write_batch(contract, parsed.table, parsed.quarantine, piece, s)
    failpoint("after-files")
    batch = lake.Batch(
        topic=contract.topic,
        partition=piece.partition,
        start=piece.start,
        end=piece.end,
        rows=parsed.rows - parsed.tombstones,
        quarantined=parsed.quarantine.num_rows,
        tombstones=parsed.tombstones,
        files=tuple(files),
        bytes=written,
        seconds=time.monotonic() - batch_started,
    )
    ledger.commit(batch)
    failpoint("after-commit")
    for name in files:
        lake.publish(s.home / name)
    failpoint("after-publish")
    _mirror_commit(consumer, contract.topic, piece.partition, piece.end)
    report.rows += batch.rows
    report.quarantined += batch.quarantined
    report.tombstones += batch.tombstones
    report.files.extend(files)
    report.bytes += written
    report.batches += 1
    log.info(
        "%s[%d]: offsets %d-%d, %d rows, %d quarantined, %d files, %.2f s",
        contract.topic, piece.partition, piece.start, piece.end, batch.rows, batch.quarantined, len(files),
        batch.seconds,
    )  # fmt: skip


def _mirror_commit(consumer: Consumer, topic: str, partition: int, end: int) -> None:
    """Mirror progress to Kafka for monitoring tools; the lake's ledger stays the truth."""
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, end)], asynchronous=False)
    except KafkaException as exc:
        log.warning("%s[%d]: could not mirror offset %d to Kafka: %s", topic, partition, end, exc)


def drain(
    contract: Contract,
    ranges: Sequence[OffsetRange] | None = None,
    s: Settings | None = None,
    lock_wait_s: float = 300.0,
    stall_timeout_s: float = 120.0,
) -> DrainReport:
    """Store the given ranges (default: everything new) of the contract's topic in the lake, exactly once."""
    s = s or current_settings()
    started = time.monotonic()
    with lake.topic_lock(s, contract.topic, lock_wait_s), lake.Ledger(s.ledger_path) as ledger:
        recovered = lake.recover(s, ledger, contract.topic)
        if any(recovered):
            log.info("%s: recovered after a crash: published %d, deleted %d pending files", contract.topic, *recovered)
        consumer = kafka.consumer(CONSUMER_GROUP)
        try:
            marks = kafka.watermarks(contract.topic, consumer)
            progress = ledger.progress(contract.topic)
            todo = plan(progress, marks) if ranges is None else _clip(ranges, progress, marks)
            reports = [_drain_partition(consumer, ledger, contract, r, s, stall_timeout_s) for r in todo]
            highs = {p: high for p, (_, high) in marks.items()}
            for report in reports:
                report.lag = max(0, highs.get(report.partition, report.end) - report.end)
        finally:
            consumer.close()
    return DrainReport(contract.topic, reports, time.monotonic() - started, recovered)
