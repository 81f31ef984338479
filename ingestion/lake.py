"""The lake on disk: paths, atomic files, the progress ledger, the per-topic lock and recovery.

The ledger (`raw/_ledger.sqlite`) is the source of truth for what the lake holds. A batch is
committed by one SQLite transaction that records its offset range and its files; files are
written beforehand under a `.pending` name that no reader's `*.parquet` glob matches, and are
renamed into place only after the commit. A crash before the commit leaves pending files that
recovery deletes (the range is read again); a crash after it leaves pending files that recovery
publishes. So every Kafka offset is in the lake exactly once, whatever the moment of the crash.
Compaction (`compact.py`) and a quarantine replay (`quarantine.py`) swap files by the same protocol.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.config import Settings

if TYPE_CHECKING:
    import pandas as pd

PENDING = ".pending"
# Rows of a topic's later generations carry it; the first generation's files have no such column.
GENERATION_COLUMN = "_generation"
# A drain or compaction file (`g<N>-` first in a later generation of the topic), or (with `-r<n>`)
# the n-th replay's file of a batch's range.
_DATA_FILE = re.compile(r"(?:g(\d+)-)?p(\d+)-(\d+)-(\d+)(?:-r(\d+))?\.parquet")


class TopicBusy(RuntimeError):
    """Another drain of the same topic holds the lock."""


class LedgerConflict(RuntimeError):
    """A batch would overlap, or leave a hole before, what the ledger already holds."""


@dataclass(frozen=True)
class Generation:
    """One life of a topic: a topic deleted and created again starts a new one, from offset 0."""

    topic: str
    number: int
    topic_id: str | None  # the broker's topic id; None until a drain has seen it (or an old broker)
    started_at: float


@dataclass(frozen=True)
class Loss:
    """Offsets the broker removed before the lake stored them: named, never silent."""

    topic: str
    generation: int
    partition: int
    start: int
    end: int  # exclusive
    found_at: float
    reason: str
    accepted_at: float | None = None

    @property
    def offsets(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] offsets {self.start}-{self.end} ({self.offsets:,}): {self.reason}"


@dataclass(frozen=True)
class Batch:
    topic: str
    partition: int
    start: int  # first offset of the range
    end: int  # one past the last offset of the range
    rows: int
    quarantined: int
    tombstones: int
    files: tuple[str, ...]  # relative to LAKEHOUSE_HOME
    bytes: int
    seconds: float
    committed_at: float = field(default_factory=time.time)
    generation: int = 0


def with_generation(table: pa.Table, generation: int) -> pa.Table:
    """A later generation's rows, marked as its (the first generation's files carry no such column)."""
    return table.append_column(
        pa.field(GENERATION_COLUMN, pa.int32()), pa.array([generation] * table.num_rows, pa.int32())
    )


def partition_key(generation: int, partition: int) -> str:
    """How a gate's mark names a partition: `3` in the first generation, `1:3` in a later one."""
    return f"{generation}:{partition}" if generation else str(partition)


def parse_partition_key(key: str) -> tuple[int, int]:
    generation, _, partition = key.rpartition(":")
    return int(generation or 0), int(partition)


def data_file_name(partition: int, start: int, end: int, generation: int = 0) -> str:
    """A name derived from the offset range, so a retried batch rebuilds the same file; a later
    generation of the topic (its offsets start again at 0) is named apart from the first."""
    name = f"p{partition}-{start:012d}-{end:012d}.parquet"
    return f"g{generation}-{name}" if generation else name


def replay_file_name(partition: int, start: int, end: int, replay: int, generation: int = 0) -> str:
    """The name of the files a batch's `replay`-th quarantine replay writes: its rewritten
    quarantine file and its raw files. The batch's range keeps them beside its drain files in
    offset order; the suffix keeps them from colliding with those, with compaction's merged
    files and with the other replays of the batch."""
    return data_file_name(partition, start, end, generation).removesuffix(".parquet") + f"-r{replay}.parquet"


def topic_dir(root: Path, topic: str) -> Path:
    return root / topic


def write_pending(table: pa.Table, path: Path) -> int:
    """Write a Parquet file under its pending name, durably; return its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pending = path.with_name(path.name + PENDING)
    # A column with many distinct values (ids, amounts) outgrows a 64 KiB dictionary at once and
    # is stored plain. On the drain benchmark's records that writes a quarter faster and a quarter
    # smaller than the default 1 MiB limit; on CMS rows in 250,000-row files it is 10% larger, and
    # `compact` rewrites closed days with the default limit.
    pq.write_table(table, pending, compression="zstd", row_group_size=256 * 1024, dictionary_pagesize_limit=64 << 10)
    fsync_file(pending)
    return pending.stat().st_size


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def publish(path: Path) -> None:
    """Make a committed file visible to readers (idempotent)."""
    pending = path.with_name(path.name + PENDING)
    if pending.exists():
        os.replace(pending, path)
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_BATCH_COLUMNS = (
    "topic, generation, partition, start_offset, end_offset, rows, quarantined, tombstones, files, bytes, seconds, "
    "committed_at"
)

_SCHEMA = (
    """
    create table if not exists batches (
        topic text not null,
        generation integer not null default 0,
        partition integer not null,
        start_offset integer not null,
        end_offset integer not null,
        rows integer not null,
        quarantined integer not null,
        tombstones integer not null,
        files text not null,
        bytes integer not null,
        seconds real not null,
        committed_at real not null,
        primary key (topic, generation, partition, start_offset)
    )
    """,
    """
    create table if not exists generations (
        topic text not null,
        generation integer not null,
        topic_id text,
        started_at real not null,
        primary key (topic, generation)
    )
    """,
    # Offsets the broker removed before they were stored. They take their place in a partition's
    # sequence like a batch with no rows, so the lake's ranges still tile the offsets, and stay a
    # problem for `verify` until an operator accepts them.
    """
    create table if not exists losses (
        topic text not null,
        generation integer not null,
        partition integer not null,
        start_offset integer not null,
        end_offset integer not null,
        found_at real not null,
        reason text not null,
        accepted_at real,
        primary key (topic, generation, partition, start_offset)
    )
    """,
)


class Ledger:
    """What each topic partition has stored: committed offset ranges and their files, per
    generation of the topic, and the offsets the broker removed before they could be stored."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # The drain commits from its writer thread, one batch at a time, never concurrently.
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=full")
        with self._transaction():
            for statement in _SCHEMA:
                self._db.execute(statement)
            columns = [row[1] for row in self._db.execute("pragma table_info(batches)")]
            if "generation" not in columns:  # a lake from before topic generations: all of it is generation 0
                self._db.execute("alter table batches rename to batches_before_generations")
                self._db.execute(_SCHEMA[0])
                self._db.execute(
                    f"insert into batches ({_BATCH_COLUMNS}) select {_BATCH_COLUMNS.replace('generation', '0')} from batches_before_generations"
                )
                self._db.execute("drop table batches_before_generations")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction: all of it or nothing."""
        self._db.execute("begin immediate")
        try:
            yield
            self._db.execute("commit")
        except BaseException:
            self._db.execute("rollback")
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generation(self, topic: str) -> Generation | None:
        """The topic's current generation, None before its first drain."""
        row = self._db.execute(
            "select generation, topic_id, started_at from generations where topic = ? order by generation desc limit 1",
            (topic,),
        ).fetchone()
        if row is None:
            # A lake from before generations that already holds batches: that is generation 0.
            if self._db.execute("select 1 from batches where topic = ? limit 1", (topic,)).fetchone():
                return Generation(topic, 0, None, 0.0)
            return None
        return Generation(topic, row[0], row[1], row[2])

    def start_generation(self, topic: str, topic_id: str | None) -> Generation:
        """Begin the topic's next generation (the first one when it has none): later batches and
        losses belong to it, and its offsets start again wherever the broker's log begins."""
        current = self.generation(topic)
        number = 0 if current is None else current.number + 1
        self._db.execute("insert into generations values (?, ?, ?, ?)", (topic, number, topic_id, time.time()))
        return Generation(topic, number, topic_id, time.time())

    def remember_topic_id(self, topic: str, generation: int, topic_id: str) -> None:
        """The broker's id of the topic, first seen by a drain of this generation."""
        self._db.execute(
            "insert into generations values (?, ?, ?, ?) "
            "on conflict (topic, generation) do update set topic_id = excluded.topic_id",
            (topic, generation, topic_id, time.time()),
        )

    def progress(self, topic: str) -> dict[int, int]:
        """Per partition of the current generation, the offset the next batch starts at: one past
        the last stored, or past the last offsets the broker removed before they were stored."""
        current = self.generation(topic)
        if current is None:
            return {}
        rows = self._db.execute(
            "select partition, max(end_offset) from ("
            "  select partition, end_offset from batches where topic = ? and generation = ?"
            "  union all select partition, end_offset from losses where topic = ? and generation = ?"
            ") group by partition",
            (topic, current.number, topic, current.number),
        )
        return dict(rows.fetchall())

    def stored_until(self, topic: str) -> dict[tuple[int, int], int]:
        """Per (generation, partition) of every generation, one past the last offset the lake
        accounts for: what the gates validate up to, whichever generation a row belongs to."""
        rows = self._db.execute(
            "select generation, partition, max(end_offset) from ("
            "  select generation, partition, end_offset from batches where topic = ?"
            "  union all select generation, partition, end_offset from losses where topic = ?"
            ") group by generation, partition",
            (topic, topic),
        )
        return {(g, p): end for g, p, end in rows.fetchall()}

    def commit(self, batch: Batch) -> None:
        """The one atomic step that makes a batch part of the lake."""
        with self._transaction():
            self._check_contiguous(batch.topic, batch.generation, batch.partition, batch.start)
            self._db.execute(
                f"insert into batches ({_BATCH_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch.topic,
                    batch.generation,
                    batch.partition,
                    batch.start,
                    batch.end,
                    batch.rows,
                    batch.quarantined,
                    batch.tombstones,
                    json.dumps(list(batch.files)),
                    batch.bytes,
                    batch.seconds,
                    batch.committed_at,
                ),
            )

    def _check_contiguous(self, topic: str, generation: int, partition: int, start: int) -> None:
        stored_end = self._stored_end(topic, generation, partition)
        if stored_end is not None and start != stored_end:
            raise LedgerConflict(
                f"{topic}[{partition}]: a batch starts at {start} but the lake holds offsets up to {stored_end}"
            )

    def _stored_end(self, topic: str, generation: int, partition: int) -> int | None:
        (end,) = self._db.execute(
            "select max(end_offset) from ("
            "  select end_offset from batches where topic = ? and generation = ? and partition = ?"
            "  union all select end_offset from losses where topic = ? and generation = ? and partition = ?"
            ")",
            (topic, generation, partition) * 2,
        ).fetchone()
        return end

    def record_loss(self, loss: Loss) -> None:
        """Note offsets the broker no longer has, in their place in the partition's sequence."""
        with self._transaction():
            stored_end = self._stored_end(loss.topic, loss.generation, loss.partition)
            if stored_end is not None and stored_end != loss.start:
                raise LedgerConflict(
                    f"{loss.topic}[{loss.partition}]: a loss from {loss.start} but the lake holds offsets up to "
                    f"{stored_end}"
                )
            self._db.execute(
                "insert into losses values (?, ?, ?, ?, ?, ?, ?, null)",
                (loss.topic, loss.generation, loss.partition, loss.start, loss.end, loss.found_at, loss.reason),
            )

    def losses(self, topic: str) -> list[Loss]:
        rows = self._db.execute(
            "select topic, generation, partition, start_offset, end_offset, found_at, reason, accepted_at "
            "from losses where topic = ? order by generation, partition, start_offset",
            (topic,),
        ).fetchall()
        return [Loss(*row) for row in rows]

    def accept_losses(self, topic: str) -> int:
        """An operator has dealt with the topic's losses: `verify` names them as accepted from now on."""
        cursor = self._db.execute(
            "update losses set accepted_at = ? where topic = ? and accepted_at is null", (time.time(), topic)
        )
        return cursor.rowcount

    def batches(self, topic: str) -> list[Batch]:
        """Every batch of the topic, of every generation, in order."""
        rows = self._db.execute(
            "select topic, partition, start_offset, end_offset, rows, quarantined, tombstones, files, bytes, "
            "seconds, committed_at, generation from batches where topic = ? "
            "order by generation, partition, start_offset",
            (topic,),
        ).fetchall()
        return [
            Batch(t, p, s, e, r, q, tb, tuple(json.loads(f)), b, sec, at, g)
            for t, p, s, e, r, q, tb, f, b, sec, at, g in rows
        ]

    def replace_files(self, topic: str, replacements: dict[str, str]) -> None:
        """Point every batch of the topic that names an old file at its new one, in one transaction."""
        with self._transaction():
            rows = self._db.execute(
                "select generation, partition, start_offset, files from batches where topic = ?", (topic,)
            ).fetchall()
            for generation, partition, start, files in rows:
                names = json.loads(files)
                renamed = list(dict.fromkeys(replacements.get(name, name) for name in names))
                if renamed != names:
                    self._db.execute(
                        "update batches set files = ? "
                        "where topic = ? and generation = ? and partition = ? and start_offset = ?",
                        (json.dumps(renamed), topic, generation, partition, start),
                    )

    def move_out_of_quarantine(
        self,
        batch: Batch,
        retired: str,
        quarantine: str | None,
        raw_files: list[str],
        moved: int,
        bytes_delta: int,
    ) -> None:
        """The one atomic step of a quarantine replay: `moved` records of the batch leave its
        quarantine file `retired` (for `quarantine`, the file of those that stay, or None) for
        the new `raw_files`."""
        with self._transaction():
            row = self._db.execute(
                "select files, quarantined from batches "
                "where topic = ? and generation = ? and partition = ? and start_offset = ?",
                (batch.topic, batch.generation, batch.partition, batch.start),
            ).fetchone()
            if row is None or retired not in json.loads(row[0]) or row[1] < moved:
                raise LedgerConflict(
                    f"{batch.topic}[{batch.partition}]: the batch at {batch.start} no longer names {retired}"
                )
            names = [name for name in json.loads(row[0]) if name != retired]
            names += raw_files + ([quarantine] if quarantine else [])
            self._db.execute(
                "update batches set rows = rows + ?, quarantined = quarantined - ?, files = ?, bytes = bytes + ? "
                "where topic = ? and generation = ? and partition = ? and start_offset = ?",
                (
                    moved,
                    moved,
                    json.dumps(names),
                    bytes_delta,
                    batch.topic,
                    batch.generation,
                    batch.partition,
                    batch.start,
                ),
            )

    def committed_files(self, topic: str) -> set[str]:
        return {name for batch in self.batches(topic) for name in batch.files}


@contextmanager
def topic_lock(settings: Settings, topic: str, wait_s: float = 300.0) -> Iterator[None]:
    """One drain per topic at a time; the lock dies with its process, so a killed drain never wedges it."""
    settings.locks_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.locks_dir / f"{topic}.lock", "w") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TopicBusy(
                        f"another drain of {topic!r} has been running for over {wait_s:.0f} s; try again later"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recover(settings: Settings, ledger: Ledger, topic: str) -> tuple[int, int]:
    """Finish what a crash interrupted: publish committed pending files, delete uncommitted
    pending files, and delete published files that a committed compaction or replay replaced.

    A published raw file the ledger does not name is deleted only when a committed drain or
    compaction file in the same folder covers its offsets, and a quarantine file only when the
    ledger holds its batch (which names the batch's current quarantine file, if any is left): a
    lost or foreign ledger must never cost data. Must be called under the topic lock. Returns
    (published, deleted).
    """
    batches = ledger.batches(topic)
    committed = {name for batch in batches for name in batch.files}
    spans = {(batch.generation, batch.partition, batch.start, batch.end) for batch in batches}
    published = deleted = 0
    for root in (settings.raw_dir, settings.quarantine_dir):
        folder = topic_dir(root, topic)
        if not folder.exists():
            continue
        for pending in folder.rglob("*" + PENDING):
            final = pending.with_name(pending.name.removesuffix(PENDING))
            if str(final.relative_to(settings.home)) in committed:
                publish(final)
                published += 1
            else:
                pending.unlink()
                deleted += 1
        for path in folder.rglob("*.parquet"):
            if str(path.relative_to(settings.home)) not in committed and _replaced(path, committed, spans, settings):
                path.unlink()
                deleted += 1
    return published, deleted


def file_span(path: Path) -> tuple[int, int, int] | None:
    """(partition, start, end) from a drain, compaction or replay file's name, or None for another file."""
    match = _DATA_FILE.fullmatch(path.name)
    return tuple(map(int, match.groups()[1:4])) if match else None  # type: ignore[return-value]


def file_topic_generation(path: Path) -> int:
    """Which generation of its topic the file belongs to (0 for the first)."""
    match = _DATA_FILE.fullmatch(path.name)
    return int(match.group(1) or 0) if match else 0


def file_replay(path: Path) -> int:
    """Which replay of its batch wrote the file: 0 for a drain or compaction file."""
    match = _DATA_FILE.fullmatch(path.name)
    return int(match.group(5) or 0) if match else 0


def _replaced(path: Path, committed: set[str], spans: set[tuple[int, int, int, int]], settings: Settings) -> bool:
    span = file_span(path)
    if span is None:
        return False
    generation = file_topic_generation(path)
    if path.is_relative_to(settings.quarantine_dir):
        # A batch has one quarantine file at a time, and its ledger row names it.
        return (generation, *span) in spans
    for name in committed:
        other = settings.home / name
        # A replay's raw file holds only some offsets of its range: it replaces nothing.
        same_kind = other.parent == path.parent and file_topic_generation(other) == generation
        cover = file_span(other) if same_kind and not file_replay(other) else None
        if cover and cover[0] == span[0] and cover[1] <= span[1] and span[2] <= cover[2]:
            return True
    return False


def raw_glob(settings: Settings, topic: str) -> str:
    return str(topic_dir(settings.raw_dir, topic) / "**" / "*.parquet")


def has_raw_files(settings: Settings, topic: str) -> bool:
    """Whether any Parquet file of the topic is in the lake yet."""
    return any(topic_dir(settings.raw_dir, topic).rglob("*.parquet"))


def read_raw(
    settings: Settings,
    topic: str,
    since: Mapping[str, int],
    until: Mapping[str, int],
    chunk_rows: int = 250_000,
) -> Iterator[pd.DataFrame]:
    """The committed raw rows of a topic, tombstones left out, as pandas DataFrames of about
    `chunk_rows` rows each: per partition of `until` (by `partition_key`, so of any generation),
    the offsets from `since` (inclusive, 0 when absent) to `until` (exclusive). Each row carries
    its `_generation` (0 in the first generation)."""
    import duckdb

    if not has_raw_files(settings, topic):
        return
    files = "read_parquet(?, hive_partitioning = true, union_by_name = true)"
    with duckdb.connect() as con:
        glob = raw_glob(settings, topic)
        columns = {row[0] for row in con.execute(f"describe select * from {files}", [glob]).fetchall()}
        # The first generation's files have no generation column: their rows are generation 0.
        generation = f"coalesce({GENERATION_COLUMN}, 0)" if GENERATION_COLUMN in columns else "0"
        windows = []
        for key, end in sorted(until.items()):
            g, p = parse_partition_key(key)
            if end > since.get(key, 0):
                windows.append(
                    f"({generation} = {g} and _partition = {p} and _offset >= {int(since.get(key, 0))} "
                    f"and _offset < {int(end)})"
                )
        if not windows:
            return
        query = (
            f"select * exclude ({GENERATION_COLUMN}), {generation}::integer as {GENERATION_COLUMN} from {files} "
            if GENERATION_COLUMN in columns
            else f"select *, 0::integer as {GENERATION_COLUMN} from {files} "
        ) + f"where not coalesce(_tombstone, false) and ({' or '.join(windows)})"
        result = con.execute(query, [glob])
        vectors = max(1, chunk_rows // 2048)
        while True:
            frame = result.fetch_df_chunk(vectors)
            if frame.empty:
                return
            yield frame
