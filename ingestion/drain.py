"""The Kafka-to-Parquet drain: plan offset ranges, read them, parse, write, commit.

A drain is deterministic: it reads exactly the offset range it was given (up to the end
offsets seen when it was planned), in batches bounded by records and bytes, and each batch
becomes part of the lake by one ledger commit (see `lake.py`). It never relies on Kafka's
committed offsets; it commits to Kafka afterwards only so that monitoring tools see the lag.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaException, TopicPartition

from ingestion import kafka, lake
from ingestion.batch_consumer import PARTITION_EOF, BatchConsumer
from ingestion.config import Settings
from ingestion.config import settings as current_settings
from ingestion.contracts import Contract
from ingestion.failpoints import failpoint
from ingestion.parse import Parsed, event_dates, parse
from ingestion.records import RawBatch

log = logging.getLogger(__name__)

CONSUMER_GROUP = "lakehouse-drain"


# librdkafka pauses fetching a partition for this long once its prefetch queue is full (default
# 1 s). The queue fills whenever parsing falls behind for a moment; a second's pause each time
# halved the drain's speed.
_READER_SETTINGS = {"fetch.queue.backoff.ms": 20}


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


@dataclass
class _Cursor:
    """Reading state of one partition's range."""

    range: OffsetRange
    position: int
    batch_start: int
    runs: list[RawBatch] = field(default_factory=list)
    records: int = 0
    size: int = 0

    @property
    def done(self) -> bool:
        return self.position >= self.range.end


def _read_ranges(
    reader: BatchConsumer, topic: str, ranges: Sequence[OffsetRange], s: Settings, stall_timeout_s: float
) -> Iterator[tuple[int, int, RawBatch]]:
    """Yield (start, end, records) batches that tile every range exactly.

    All partitions are read at once, so the broker's fetches for them overlap. The records held
    across partitions stay within the batch bounds: when they are reached, the largest
    partition's batch is yielded. A partition's batches come in offset order.
    """
    cursors = {r.partition: _Cursor(r, r.start, r.start) for r in ranges if r.end > r.start}
    if not cursors:
        return
    reader.assign(topic, {p: c.range.start for p, c in cursors.items()})
    held_records = held_bytes = 0
    last_progress = time.monotonic()
    finished: set[int] = set()

    def cut(partition: int, cursor: _Cursor, end: int) -> tuple[int, int, RawBatch]:
        nonlocal held_records, held_bytes
        records = RawBatch.concat(cursor.runs) if cursor.runs else RawBatch.of(topic, partition, [], [])
        batch = (cursor.batch_start, end, records)
        held_records -= cursor.records
        held_bytes -= cursor.size
        cursor.runs, cursor.records, cursor.size, cursor.batch_start = [], 0, 0, end
        return batch

    while len(finished) < len(cursors):
        runs, events = reader.consume(topic, min(s.batch_max_records, 10_000), timeout_s=0.5)
        if not runs and not events:
            if time.monotonic() - last_progress > stall_timeout_s:
                behind = ", ".join(f"[{p}] at {c.position} of {c.range.end}" for p, c in cursors.items() if not c.done)
                raise DrainStalled(f"{topic}: no data for {stall_timeout_s:.0f} s ({behind}); is the broker up?")
            continue
        last_progress = time.monotonic()
        for run in runs:
            cursor = cursors.get(run.partition)
            if cursor is not None and not cursor.done:
                taken, size = _take(cursor, run)
                held_records += taken
                held_bytes += size
        for event in events:
            if event.code != PARTITION_EOF:
                event.raise_error()
            # Everything up to the end of the log has been read; offsets between the last record
            # and the end are transaction markers or compacted away.
            cursor = cursors.get(event.partition)
            if cursor is not None:
                cursor.position = max(cursor.position, min(event.offset, cursor.range.end))
        for partition, cursor in cursors.items():
            if cursor.done and partition not in finished:
                finished.add(partition)
                reader.pause(topic, [partition])
                yield cut(partition, cursor, cursor.range.end)
        while held_records >= s.batch_max_records or held_bytes >= s.batch_max_bytes:
            partition, largest = max(cursors.items(), key=lambda item: (item[1].size, item[1].records))
            yield cut(partition, largest, largest.position)


def _take(cursor: _Cursor, run: RawBatch) -> tuple[int, int]:
    """Add a run of one partition's records to its batch; return the records and bytes taken."""
    end = cursor.range.end
    if run.offsets[-1].as_py() >= end:
        run = run.head(pc.sum(pc.less(run.offsets, end)).as_py())
        cursor.position = end
    if not len(run):
        return 0, 0
    cursor.position = max(cursor.position, run.offsets[-1].as_py() + 1)
    size = run.value_bytes
    cursor.runs.append(run)
    cursor.records += len(run)
    cursor.size += size
    return len(run), size


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


def _drain_ranges(
    consumer: Consumer,
    ledger: lake.Ledger,
    contract: Contract,
    ranges: Sequence[OffsetRange],
    s: Settings,
    stall_timeout_s: float,
) -> list[PartitionReport]:
    """Read batch N+2 on this thread while one thread parses batch N+1 and another writes and commits batch N.

    Reading, parsing and writing all release the GIL, so the three overlap. At most two batches
    wait behind the reader, so memory stays bounded whatever the backlog; batches are committed
    in the order they were read, so each partition's ledger stays contiguous.
    """
    reports = {r.partition: PartitionReport(r.partition, r.start, r.end) for r in ranges}
    started = time.monotonic()
    if ranges:
        with (
            kafka.batch_consumer(CONSUMER_GROUP, **_READER_SETTINGS) as reader,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="drain-parser") as parser,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="drain-writer") as writer,
        ):
            in_flight: deque[Future] = deque()
            for start, end, raw in _read_ranges(reader, contract.topic, ranges, s, stall_timeout_s):
                if len(in_flight) == 2:
                    in_flight.popleft().result()
                piece = OffsetRange(raw.partition, start, end)
                parsing = parser.submit(_parse_batch, contract, raw, s)
                report = reports[raw.partition]
                in_flight.append(writer.submit(_store_batch, consumer, ledger, contract, parsing, piece, s, report))
            while in_flight:
                in_flight.popleft().result()
    for report in reports.values():
        report.seconds = time.monotonic() - started
    return list(reports.values())


def _parse_batch(contract: Contract, raw: RawBatch, s: Settings) -> tuple[Parsed, float]:
    started = time.monotonic()
    return parse(raw, contract, s.record_max_bytes, s.record_limits), time.monotonic() - started


def _store_batch(
    consumer: Consumer,
    ledger: lake.Ledger,
    contract: Contract,
    parsing: Future[tuple[Parsed, float]],
    piece: OffsetRange,
    s: Settings,
    report: PartitionReport,
) -> None:
    parsed, parse_seconds = parsing.result()
    batch_started = time.monotonic()
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
        seconds=parse_seconds + time.monotonic() - batch_started,
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
            reports = _drain_ranges(consumer, ledger, contract, todo, s, stall_timeout_s)
            highs = {p: high for p, (_, high) in marks.items()}
            for report in reports:
                report.lag = max(0, highs.get(report.partition, report.end) - report.end)
        finally:
            consumer.close()
    return DrainReport(contract.topic, reports, time.monotonic() - started, recovered)
