"""The Kafka-to-Parquet drain: plan offset ranges, read them, parse, write, commit.

A drain is deterministic: it reads exactly the offset range it was given (up to the end
offsets seen when it was planned), in batches bounded by records and bytes, and each batch
becomes part of the lake by one commit of its raw table (see `lake.py`). It never relies on Kafka's
committed offsets; it commits to Kafka afterwards only so that monitoring tools see the lag.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ingestion import kafka, lake
from ingestion.batch_consumer import PARTITION_EOF, BatchConsumer
from ingestion.config import Settings
from ingestion.config import settings as current_settings
from ingestion.contracts import Contract
from ingestion.failpoints import failpoint
from ingestion.parse import Parsed, parse, partition_days, quarantine_days, quarantined
from ingestion.records import RawBatch

if TYPE_CHECKING:
    from pyiceberg.schema import Schema as IcebergSchema

log = logging.getLogger(__name__)

CONSUMER_GROUP = "lakehouse-drain"


# librdkafka pauses fetching a partition for this long once its prefetch queue is full (default
# 1 s). The queue fills whenever parsing falls behind for a moment; a second's pause each time
# halved the drain's speed. An offset the broker no longer has must be an error, never a silent
# jump to whatever the log now begins with: that jump is how retention used to lose records unseen.
# Fetches of 8 MiB a partition instead of 1 MiB: the broker, on the same cores, answers an eighth as
# many requests for a backlog (its CPU for a million records here: about 0.3 s to 0.15 s).
_READER_SETTINGS = {"fetch.queue.backoff.ms": 20, "auto.offset.reset": "error", "max.partition.fetch.bytes": 8 << 20}

# Errors librdkafka recovers from by itself (it reconnects); the stall timeout judges an outage.
_TRANSIENT = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE}


class DrainStalled(RuntimeError):
    """The broker stopped answering in the middle of a range; nothing of the unfinished batch was committed."""


class TopicChanged(RuntimeError):
    """The topic on the broker is not the one the lake stored: it was deleted (and maybe created again)."""


class _OffsetsRemoved(Exception):
    """The broker removed offsets of a partition while the drain was about to read them."""

    def __init__(self, partition: int):
        super().__init__(partition)
        self.partition = partition


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
    commit_seconds: float = 0.0  # of the tables' commits
    lag: int = 0


@dataclass
class DrainReport:
    topic: str
    partitions: list[PartitionReport]
    seconds: float
    recovered: tuple[int, int] = (0, 0)  # (0, deleted): files a crash left uncommitted
    losses: list[lake.Loss] = field(default_factory=list)  # offsets the broker removed before they were stored
    generation: int = 0
    table: str = ""  # the raw table, `raw.<table>`
    snapshot_id: int | None = None  # its current snapshot once the drain was done

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
    """What a drain would read now, and the broker's end offsets; reads the tables' state and the broker only.

    Raises TopicChanged where the topic on the broker is no longer the one the lake stored.
    """
    s = s or current_settings()
    consumer = kafka.consumer(CONSUMER_GROUP)
    try:
        marks = kafka.watermarks(contract.topic, consumer)
    finally:
        consumer.close()
    tables = lake.TopicTables.load(s, contract.topic)
    state = tables.state() if tables else lake.State(contract.topic)
    generation, progress = state.generation, state.progress()
    if generation is not None and (
        problem := identity_problem(contract.topic, generation, _broker_id(contract.topic, generation), progress, marks)
    ):
        raise TopicChanged(problem)
    return plan(progress, marks), {p: high for p, (_, high) in marks.items()}


def _broker_id(topic: str, generation: lake.Generation | None) -> str | None:
    """The broker's topic id, asked for only where the lake has one to compare it with."""
    return kafka.topic_id(topic) if generation is not None and generation.topic_id else None


def new_generation_command(topic: str) -> str:
    return f"lakehouse drain {topic} --new-generation"


def identity_problem(
    topic: str,
    generation: lake.Generation,
    broker_id: str | None,
    progress: dict[int, int],
    marks: dict[int, tuple[int, int]],
) -> str | None:
    """Why the topic on the broker is not the one whose offsets the lake stored, or None if it is.

    A topic deleted and created again gets a new id, and its offsets start again at 0: draining it
    as if it were the old one would skip every new offset below the old ones.
    """
    fix = f"`{new_generation_command(topic)}` stores the new topic from its first offset, beside what the lake holds"
    if not marks:
        if progress:
            return f"{topic}: the topic is no longer on the broker (it was deleted); once it exists again, {fix}"
        return None
    if generation.topic_id and broker_id and broker_id != generation.topic_id:
        return (
            f"{topic}: the topic was deleted and created again (its id is {broker_id}, the lake's is "
            f"{generation.topic_id}); {fix}"
        )
    behind = [
        f"[{p}] ends at {marks[p][1]}, the lake holds up to {end}" if p in marks else f"[{p}] is gone"
        for p, end in sorted(progress.items())
        if p not in marks or marks[p][1] < end
    ]
    if behind:
        return f"{topic}: the broker's offsets went backwards ({'; '.join(behind)}): the topic was created again; {fix}"
    return None


def _loss_reason(config: dict[str, str], first_drain: bool) -> str:
    """Why the broker no longer has offsets the lake never stored, as far as the broker lets one tell."""
    when = "before the lake's first drain of the partition" if first_drain else "before the drain stored them"
    policy = config.get("cleanup.policy", "delete")
    if "delete" in policy:
        how = (
            f"retention (retention.ms={config.get('retention.ms', '?')}, "
            f"retention.bytes={config.get('retention.bytes', '?')}) or a DeleteRecords request"
        )
    else:  # a compacted topic's log never starts later by compaction, only by an explicit request
        how = f"a DeleteRecords request (cleanup.policy={policy}: compaction alone never moves the first offset)"
    return f"removed by the broker {when}: {how}"


def _record_losses(
    tables: lake.TopicTables, base: lake.State, generation: int, marks: dict[int, tuple[int, int]]
) -> tuple[lake.State, list[lake.Loss]]:
    """Note, per partition, the offsets below the broker's first one that the lake never stored."""
    topic = tables.topic
    progress = base.progress()
    gone = {p: (progress.get(p), low) for p, (low, _) in marks.items() if low > progress.get(p, 0)}
    if not gone:
        return base, []
    config = kafka.topic_config(topic)
    losses = []
    new = base
    for partition, (stored_to, low) in sorted(gone.items()):
        start = stored_to if stored_to is not None else 0
        loss = lake.Loss(topic, generation, partition, start, low, time.time(), _loss_reason(config, stored_to is None))
        new = replace(new.advanced(generation, partition, start, low), losses=(*new.losses, loss))
        losses.append(loss)
    state = tables.commit_state(base, new)
    log.warning(
        "%s: %s offsets were removed by the broker before the lake stored them (%s; %s); recorded as a loss, "
        "the drain goes on from the broker's first offset; `lakehouse verify --accept-loss %s` acknowledges it",
        topic, f"{sum(loss.offsets for loss in losses):,}",
        ", ".join(f"[{loss.partition}] {loss.start}-{loss.end}" for loss in losses), losses[0].reason, topic,
    )  # fmt: skip
    return state, losses


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
        # Only records and ends of partitions are progress: an unreachable broker makes librdkafka
        # report connection errors over and over, and those must not keep the drain waiting.
        if runs or any(e.code == PARTITION_EOF for e in events):
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > stall_timeout_s:
            behind = ", ".join(f"[{p}] at {c.position} of {c.range.end}" for p, c in cursors.items() if not c.done)
            raise DrainStalled(
                f"{topic}: the broker at {s.bootstrap_servers} sent nothing for {stall_timeout_s:.0f} s ({behind}); "
                "everything before was stored, and the next drain goes on from there once the broker is back"
            )
        for run in runs:
            cursor = cursors.get(run.partition)
            if cursor is not None and not cursor.done:
                taken, size = _take(cursor, run)
                held_records += taken
                held_bytes += size
        for event in events:
            if event.code == KafkaError._AUTO_OFFSET_RESET:
                raise _OffsetsRemoved(event.partition)
            if event.code in _TRANSIENT:
                log.debug("%s[%d]: %s", topic, event.partition, event.text)
                continue
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
    tables: lake.TopicTables,
    contract: Contract,
    parsed: Parsed,
    r: OffsetRange,
    generation: int,
    quarantined_until: int,
) -> tuple[list[str], list[str], int]:
    """Write the batch's files into the tables' folders (nothing reads them before the commit);
    return the raw files, the quarantine files and their total bytes. Quarantined records the
    quarantine already holds (an earlier try committed them, then crashed) are left out."""
    name = lake.data_file_name(r.partition, r.start, r.end, generation)
    table = lake.with_generation(parsed.table, generation)
    quarantine = lake.with_generation(parsed.quarantine, generation)
    if quarantined_until > r.start:  # a crash between the two commits of an earlier try
        quarantine = quarantine.filter(pc.greater_equal(quarantine["_kafka_offset"], quarantined_until))
    raw_files, written = tables.write_by_day("raw", table, name, partition_days(table, contract))
    quarantine_files, quarantined = tables.write_by_day("quarantine", quarantine, name, quarantine_days(quarantine))
    return raw_files, quarantine_files, written + quarantined


def _conform_to_table(table: pa.Table, schema: IcebergSchema, table_name: str) -> tuple[pa.Table, dict[int, str]]:
    """The schema-drift rule at the table's edge: an Iceberg column keeps its type for ever (it can
    only widen, int to long, float to double), while an undeclared field's JSON type may change
    from one batch to the next. A column the table does not have yet is added as it comes, at the
    commit (`lake._commit` adds it to the schema), except one all null in this batch, which is left out (reading
    it gives null all the same) so that it does not fix the type of values yet to come. A column
    the table has, of a type that does not widen to the table's: as text when the table's column
    is a string (nested values as JSON text, as `parse` unifies the pieces of a batch); numbers
    into a number column of the table's type when every value converts exactly (whole doubles
    into a long); a record with any other value for it is quarantined with the reason, rather
    than store a value the table cannot hold (text is never read as a number: "007" is not 7).
    Returns the table of the records that fit, and the offsets of those that do not, with why."""
    from pyiceberg.exceptions import ResolveError
    from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids, schema_to_pyarrow
    from pyiceberg.schema import promote
    from pyiceberg.types import StringType

    from ingestion.parse import text_column

    table = _one_column_per_name(table, [f.name for f in schema.fields])
    top = {f.name: f for f in schema.fields}
    misfits: dict[int, str] = {}
    for f in table.schema:
        held = top.get(f.name)
        if pa.types.is_null(f.type):
            if held is None:
                table = table.drop_columns([f.name])
            else:
                nulls = pa.nulls(table.num_rows, schema_to_pyarrow(held.field_type))
                table = table.set_column(table.schema.get_field_index(f.name), f.name, nulls)
            continue
        if held is None:
            continue
        try:
            incoming = _pyarrow_to_schema_without_ids(pa.schema([f])).fields[0].field_type
        except (ValueError, TypeError):
            incoming = None
        if incoming == held.field_type:
            continue
        try:
            if incoming is not None:
                promote(incoming, held.field_type)
                continue
        except ResolveError:
            pass
        index = table.schema.get_field_index(f.name)
        if isinstance(held.field_type, StringType):
            table = table.set_column(index, f.name, text_column(table[f.name]))
            continue
        target = schema_to_pyarrow(held.field_type)
        column = table[f.name]
        if _is_number(f.type) and _is_number(target):
            stored = pc.cast(column, target, safe=False)
            # A value that does not come back the same from the table's type does not fit it.
            exact = pc.fill_null(pc.equal(pc.cast(stored, f.type, safe=False), column), True)
        else:
            stored, exact = pa.nulls(len(column), target), pc.is_null(column)
        for offset in table["_kafka_offset"].filter(pc.invert(exact)).to_pylist():
            misfits.setdefault(
                offset,
                f"type drift: field {f.name} is {held.field_type} in {table_name}, this record has {f.type}; "
                "declare the field in the stream's contract as text",
            )
        table = table.set_column(index, f.name, stored)
    if misfits:
        table = table.filter(pc.invert(pc.is_in(table["_kafka_offset"], pa.array(list(misfits), pa.int64()))))
    return table, misfits


def _one_column_per_name(table: pa.Table, held: list[str]) -> pa.Table:
    """Fields whose names differ only in case (`average_Medicare_allowed_amt` in one release of a
    file, `average_medicare_allowed_amt` in the next) as one column, under the spelling the table
    already has, else the first one seen: most engines (DuckDB, Spark) resolve names regardless of
    case and cannot read a table that has both. The values are coalesced, as text where the types
    differ."""
    from ingestion.parse import text_column

    spelling = {name.casefold(): name for name in reversed(held)}
    groups: dict[str, list[str]] = {}
    for name in table.column_names:
        groups.setdefault(spelling.setdefault(name.casefold(), name), []).append(name)
    for canonical, names in groups.items():
        if names == [canonical]:
            continue
        columns = [table[name] for name in names]
        if len({c.type for c in columns}) > 1:
            columns = [text_column(c) for c in columns]
        merged = pc.coalesce(*columns) if len(columns) > 1 else columns[0]
        position = table.schema.get_field_index(names[0])
        table = table.drop_columns(names[1:]).set_column(position, canonical, merged)
    return table


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


@dataclass
class _Committer:
    """The writer thread's view of the tables: written batches wait, in order, for the next
    commit, which takes them all against the state the previous commit left. A commit's cost
    grows with the table's snapshots, so batches commit together every `interval_s` (and at the
    end of the drain), not one by one."""

    tables: lake.TopicTables
    state: lake.State
    quarantined_until: dict[str, int]
    interval_s: float
    consumer: Consumer
    reports: dict[int, PartitionReport]
    pending: list[tuple[lake.Batch, list[str], list[str]]] = field(default_factory=list)
    last_commit: float = field(default_factory=time.monotonic)
    # Once a batch failed to be written or committed, the batches behind it must not commit: they
    # would start past a hole (and say so, hiding why the first one failed).
    failed: bool = False

    def add(self, batch: lake.Batch, raw_files: list[str], quarantine_files: list[str]) -> None:
        self.pending.append((batch, raw_files, quarantine_files))
        if quarantine_files:
            self.quarantined_until[lake.partition_key(batch.generation, batch.partition)] = batch.end
        if time.monotonic() - self.last_commit >= self.interval_s:
            self.commit()

    def commit(self) -> None:
        """Commit the batches written since the last commit."""
        if self.failed or not self.pending:
            return
        committing = time.monotonic()
        try:
            self.state = self.tables.commit_batches(self.state, self.pending)
        except BaseException:
            self.failed = True
            raise
        seconds = time.monotonic() - committing
        failpoint("after-commit")
        self.last_commit = time.monotonic()
        for batch, _, _ in self.pending:
            report = self.reports[batch.partition]
            report.commit_seconds += seconds / len(self.pending)
            report.rows += batch.rows
            report.quarantined += batch.quarantined
            report.tombstones += batch.tombstones
            report.files.extend(batch.files)
            report.bytes += batch.bytes
            report.batches += 1
            _mirror_commit(self.consumer, batch.topic, batch.partition, batch.end)
        log.info("%s: committed %d batches in %.2f s", self.tables.topic, len(self.pending), seconds)
        self.pending = []


def _drain_ranges(
    consumer: Consumer,
    committer: _Committer,
    contract: Contract,
    ranges: Sequence[OffsetRange],
    s: Settings,
    stall_timeout_s: float,
    generation: int,
    reports: dict[int, PartitionReport],
) -> None:
    """Read batch N+2 on this thread while one thread parses batch N+1 and another writes and commits batch N.

    Reading, parsing and writing all release the GIL, so the three overlap. At most two batches
    wait behind the reader, so memory stays bounded whatever the backlog; batches are committed
    in the order they were read, so each partition's offsets stay contiguous. What was read but
    not yet cut into a batch when reading fails is simply read again by the next attempt.
    """
    if not ranges:
        return
    for r in ranges:
        reports.setdefault(r.partition, PartitionReport(r.partition, r.start, r.end)).end = r.end
    with (
        kafka.batch_consumer(CONSUMER_GROUP, **_READER_SETTINGS) as reader,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="drain-parser") as parser,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="drain-writer") as writer,
    ):
        in_flight: deque[Future] = deque()
        try:
            for start, end, raw in _read_ranges(reader, contract.topic, ranges, s, stall_timeout_s):
                if len(in_flight) == 2:
                    in_flight.popleft().result()
                piece = OffsetRange(raw.partition, start, end)
                parsing = parser.submit(_parse_batch, contract, raw, s, committer.tables.raw.schema())
                in_flight.append(writer.submit(_store_batch, committer, contract, parsing, piece, generation))
        finally:
            # The batches already cut are committed in order whatever stopped the reading.
            while in_flight:
                in_flight.popleft().result()
            committer.commit()


def _parse_batch(contract: Contract, raw: RawBatch, s: Settings, schema: IcebergSchema) -> tuple[Parsed, float]:
    """Parse a batch, and quarantine the records whose undeclared fields the raw table (at `schema`)
    cannot hold."""
    started = time.monotonic()
    parsed = parse(raw, contract, s.record_max_bytes, s.record_limits)
    table, misfits = _conform_to_table(parsed.table, schema, f"raw.{contract.table_name}")
    if misfits:
        index = {offset: i for i, offset in enumerate(raw.offsets.to_pylist())}
        moved = quarantined(raw, {index[offset]: reason for offset, reason in misfits.items()})
        together = pa.concat_tables([parsed.quarantine, moved]).sort_by("_kafka_offset")
        parsed = Parsed(table=table, quarantine=together, tombstones=parsed.tombstones)
    else:
        parsed = Parsed(table=table, quarantine=parsed.quarantine, tombstones=parsed.tombstones)
    return parsed, time.monotonic() - started


def _store_batch(
    committer: _Committer,
    contract: Contract,
    parsing: Future[tuple[Parsed, float]],
    piece: OffsetRange,
    generation: int,
) -> None:
    """Write a parsed batch's files and queue it for the next commit."""
    if committer.failed:
        return
    try:
        _write(committer, contract, parsing.result(), piece, generation)
    except BaseException:
        committer.failed = True
        raise


def _write(
    committer: _Committer, contract: Contract, parsed_in: tuple[Parsed, float], piece: OffsetRange, generation: int
) -> None:
    parsed, parse_seconds = parsed_in
    batch_started = time.monotonic()
    key = lake.partition_key(generation, piece.partition)
    failpoint("before-write")
    raw_files, quarantine_files, written = _write_batch(
        committer.tables, contract, parsed, piece, generation, committer.quarantined_until.get(key, 0)
    )
    failpoint("after-files")
    batch = lake.Batch(
        topic=contract.topic,
        partition=piece.partition,
        start=piece.start,
        end=piece.end,
        rows=parsed.rows - parsed.tombstones,
        quarantined=parsed.quarantine.num_rows,
        tombstones=parsed.tombstones,
        files=tuple(raw_files + quarantine_files),
        bytes=written,
        seconds=parse_seconds + time.monotonic() - batch_started,
        generation=generation,
    )
    log.info(
        "%s[%d]: offsets %d-%d, %d rows, %d quarantined, %d files, %.2f s",
        contract.topic, piece.partition, piece.start, piece.end, batch.rows, batch.quarantined, len(batch.files),
        batch.seconds,
    )  # fmt: skip
    committer.add(batch, raw_files, quarantine_files)


def _mirror_commit(consumer: Consumer, topic: str, partition: int, end: int) -> None:
    """Mirror progress to Kafka for monitoring tools; the raw table's snapshots stay the truth. Sent
    without waiting: a synchronous commit waits for as long as the broker is away."""
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, end)], asynchronous=True)
    except KafkaException as exc:
        log.warning("%s[%d]: could not mirror offset %d to Kafka: %s", topic, partition, end, exc)


# A drain that finds offsets removed under it records the loss and plans again; a broker that
# removes offsets faster than they can be read would make it go round for ever.
_MAX_ATTEMPTS = 100


def drain(
    contract: Contract,
    ranges: Sequence[OffsetRange] | None = None,
    s: Settings | None = None,
    lock_wait_s: float = 300.0,
    stall_timeout_s: float | None = None,
    new_generation: bool = False,
) -> DrainReport:
    """Store the given ranges (default: everything new) of the contract's topic in the lake, exactly once.

    Offsets the broker removed before they were stored are recorded as a loss and the drain goes
    on from the broker's first offset. A topic that is no longer the one the lake stored (deleted,
    created again) raises TopicChanged, unless `new_generation` starts storing the new topic, from
    its first offset, beside the old one's records.
    """
    s = s or current_settings()
    stall_timeout_s = s.drain_stall_timeout_s if stall_timeout_s is None else stall_timeout_s
    started = time.monotonic()
    topic = contract.topic
    with lake.topic_lock(s, topic, lock_wait_s):
        tables = lake.TopicTables.open(s, contract)
        _freeze_what_imports_made()
        if finished := tables.finish_replays():
            log.info("%s: finished %d quarantine replays a crash had interrupted", topic, finished)
        orphans = _sweep_orphans(s, tables)
        if orphans:
            log.info("%s: deleted %d files a crash left uncommitted", topic, orphans)
        consumer = kafka.consumer(CONSUMER_GROUP)
        reports: dict[int, PartitionReport] = {}
        losses: list[lake.Loss] = []
        try:
            for _ in range(_MAX_ATTEMPTS):
                try:
                    tables.refresh()
                    state, generation = _generation(tables, kafka.watermarks(topic, consumer), new_generation)
                    new_generation = False  # started (or found unneeded) once; a re-plan must not start another
                    marks = kafka.watermarks(topic, consumer)
                    state, lost = _record_losses(tables, state, generation, marks)
                    losses += lost
                    progress = state.progress()
                    todo = plan(progress, marks) if ranges is None else _clip(ranges, progress, marks)
                    committer = _Committer(
                        tables, state, tables.quarantined_until(), s.commit_interval_s, consumer, reports
                    )
                    _drain_ranges(consumer, committer, contract, todo, s, stall_timeout_s, generation, reports)
                    break
                except _OffsetsRemoved as exc:
                    log.info("%s[%d]: the broker removed offsets the drain was about to read", topic, exc.partition)
                except lake.Fenced as exc:
                    log.warning("%s: %s; planning again from the newest snapshot", topic, exc)
            else:
                raise DrainStalled(
                    f"{topic}: the topic kept changing under the drain (offsets removed by the broker, or other "
                    "drains committing first); the next drain goes on from what is stored"
                )
            highs = {p: high for p, (_, high) in marks.items()}
            elapsed = time.monotonic() - started
            for report in reports.values():
                report.seconds = elapsed
                report.lag = max(0, highs.get(report.partition, report.end) - report.end)
        finally:
            _close_without_waiting_for_the_broker(consumer)
    snapshot = tables.raw.current_snapshot()
    return DrainReport(
        topic,
        list(reports.values()),
        time.monotonic() - started,
        (0, orphans),
        losses,
        generation,
        table=f"raw.{lake.table_name(topic)}",
        snapshot_id=snapshot.snapshot_id if snapshot else None,
    )


@functools.cache
def _freeze_what_imports_made() -> None:
    """Move the objects alive once the catalog is open (about 150,000: pyiceberg's, sqlalchemy's,
    pandas' modules and classes, which live as long as the process) out of the cyclic collector's
    sight. It walked them at every full collection and again at the interpreter's exit: 0.4 s of
    a million-record drain here. Once a process, so that a long-lived one freezes no later garbage."""
    gc.freeze()


def _sweep_orphans(s: Settings, tables: lake.TopicTables) -> int:
    """Delete the files a crash left uncommitted, at most once per orphan age: a younger file is
    never deleted anyway, and the sweep reads every live manifest of both tables."""
    marker = s.locks_dir / f"{tables.topic}.swept"
    if marker.exists() and time.time() - marker.stat().st_mtime < s.orphan_min_age_s:
        return 0
    deleted = tables.remove_orphans(s.orphan_min_age_s)
    marker.touch()
    return deleted


def _close_without_waiting_for_the_broker(consumer: Consumer, wait_s: float = 2.0) -> None:
    """Close the consumer that mirrors offsets; with the broker gone, its close waits for the mirrored
    commits to time out (36 s measured), and a drain that gave up must not wait that long."""
    closing = threading.Thread(target=consumer.close, name="drain-mirror-close", daemon=True)
    closing.start()
    closing.join(wait_s)


def _generation(
    tables: lake.TopicTables, marks: dict[int, tuple[int, int]], new_generation: bool
) -> tuple[lake.State, int]:
    """The state and the generation this drain stores into, after checking that the broker's
    topic is the lake's."""
    topic = tables.topic
    state = tables.state()
    current = state.generation
    broker_id = kafka.topic_id(topic) if marks else None
    problem = None if current is None else identity_problem(topic, current, broker_id, state.progress(), marks)
    if problem is None:
        if new_generation:
            log.info("%s: the topic is the one the lake stored; no new generation started", topic)
        if current is None:
            if not marks:
                return state, 0
            return _start_generation(tables, state, broker_id, 0)
        if broker_id and not current.topic_id:
            known = replace(current, topic_id=broker_id)
            state = tables.commit_state(state, replace(state, generations=(*state.generations[:-1], known)))
        return state, current.number
    if not new_generation or not marks:
        raise TopicChanged(problem)
    state, number = _start_generation(tables, state, broker_id, current.number + 1)
    log.warning(
        "%s: generation %d starts at the broker's first offsets; the %d earlier one(s) stay in the lake as stored",
        topic, number, number,
    )  # fmt: skip
    return state, number


def _start_generation(
    tables: lake.TopicTables, state: lake.State, broker_id: str | None, number: int
) -> tuple[lake.State, int]:
    """Begin the topic's next generation (the first one when it has none): later batches and
    losses belong to it, and its offsets start again wherever the broker's log begins."""
    started = lake.Generation(tables.topic, number, broker_id, time.time())
    return tables.commit_state(state, replace(state, generations=(*state.generations, started))), number
