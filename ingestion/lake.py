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
# A drain or compaction file, or (with `-r<n>`) the n-th replay's file of a batch's range.
_DATA_FILE = re.compile(r"p(\d+)-(\d+)-(\d+)(?:-r(\d+))?\.parquet")


class TopicBusy(RuntimeError):
    """Another drain of the same topic holds the lock."""


class LedgerConflict(RuntimeError):
    """A batch would overlap, or leave a hole before, what the ledger already holds."""


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


def data_file_name(partition: int, start: int, end: int) -> str:
    """A name derived from the offset range, so a retried batch rebuilds the same file."""
    return f"p{partition}-{start:012d}-{end:012d}.parquet"


def replay_file_name(partition: int, start: int, end: int, generation: int) -> str:
    """The name of the files a batch's `generation`-th quarantine replay writes: its rewritten
    quarantine file and its raw files. The batch's range keeps them beside its drain files in
    offset order; the suffix keeps them from colliding with those, with compaction's merged
    files and with the other replays of the batch."""
    return f"p{partition}-{start:012d}-{end:012d}-r{generation}.parquet"


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


class Ledger:
    """What each topic partition has stored: committed offset ranges and their files."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # The drain commits from its writer thread, one batch at a time, never concurrently.
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=full")
        self._db.execute(
            """
            create table if not exists batches (
                topic text not null,
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
                primary key (topic, partition, start_offset)
            )
            """
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def progress(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next batch starts at (one past the last stored)."""
        rows = self._db.execute(
            "select partition, max(end_offset) from batches where topic = ? group by partition", (topic,)
        )
        return dict(rows.fetchall())

    def commit(self, batch: Batch) -> None:
        """The one atomic step that makes a batch part of the lake."""
        self._db.execute("begin immediate")
        try:
            (stored_end,) = self._db.execute(
                "select max(end_offset) from batches where topic = ? and partition = ?",
                (batch.topic, batch.partition),
            ).fetchone()
            if stored_end is not None and batch.start != stored_end:
                raise LedgerConflict(
                    f"{batch.topic}[{batch.partition}]: batch starts at {batch.start} "
                    f"but the lake holds offsets up to {stored_end}"
                )
            self._db.execute(
                "insert into batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch.topic,
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
            self._db.execute("commit")
        except BaseException:
            self._db.execute("rollback")
            raise

    def batches(self, topic: str) -> list[Batch]:
        rows = self._db.execute(
            "select topic, partition, start_offset, end_offset, rows, quarantined, tombstones, files, bytes, "
            "seconds, committed_at from batches where topic = ? order by partition, start_offset",
            (topic,),
        ).fetchall()
        return [
            Batch(t, p, s, e, r, q, tb, tuple(json.loads(f)), b, sec, at)
            for t, p, s, e, r, q, tb, f, b, sec, at in rows
        ]

    def replace_files(self, topic: str, replacements: dict[str, str]) -> None:
        """Point every batch of the topic that names an old file at its new one, in one transaction."""
        self._db.execute("begin immediate")
        try:
            rows = self._db.execute(
                "select partition, start_offset, files from batches where topic = ?", (topic,)
            ).fetchall()
            for partition, start, files in rows:
                names = json.loads(files)
                renamed = list(dict.fromkeys(replacements.get(name, name) for name in names))
                if renamed != names:
                    self._db.execute(
                        "update batches set files = ? where topic = ? and partition = ? and start_offset = ?",
                        (json.dumps(renamed), topic, partition, start),
                    )
            self._db.execute("commit")
        except BaseException:
            self._db.execute("rollback")
            raise

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
        self._db.execute("begin immediate")
        try:
            row = self._db.execute(
                "select files, quarantined from batches where topic = ? and partition = ? and start_offset = ?",
                (batch.topic, batch.partition, batch.start),
            ).fetchone()
            if row is None or retired not in json.loads(row[0]) or row[1] < moved:
                raise LedgerConflict(
                    f"{batch.topic}[{batch.partition}]: the batch at {batch.start} no longer names {retired}"
                )
            names = [name for name in json.loads(row[0]) if name != retired]
            names += raw_files + ([quarantine] if quarantine else [])
            self._db.execute(
                "update batches set rows = rows + ?, quarantined = quarantined - ?, files = ?, bytes = bytes + ? "
                "where topic = ? and partition = ? and start_offset = ?",
                (moved, moved, json.dumps(names), bytes_delta, batch.topic, batch.partition, batch.start),
            )
            self._db.execute("commit")
        except BaseException:
            self._db.execute("rollback")
            raise

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
    spans = {(batch.partition, batch.start, batch.end) for batch in batches}
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
        for path in folder.rglob("p*.parquet"):
            if str(path.relative_to(settings.home)) not in committed and _replaced(path, committed, spans, settings):
                path.unlink()
                deleted += 1
    return published, deleted


def file_span(path: Path) -> tuple[int, int, int] | None:
    """(partition, start, end) from a drain, compaction or replay file's name, or None for another file."""
    match = _DATA_FILE.fullmatch(path.name)
    return tuple(map(int, match.groups()[:3])) if match else None  # type: ignore[return-value]


def file_generation(path: Path) -> int:
    """Which replay of its batch wrote the file: 0 for a drain or compaction file."""
    match = _DATA_FILE.fullmatch(path.name)
    return int(match.group(4) or 0) if match else 0


def _replaced(path: Path, committed: set[str], spans: set[tuple[int, int, int]], settings: Settings) -> bool:
    span = file_span(path)
    if span is None:
        return False
    if path.is_relative_to(settings.quarantine_dir):
        # A batch has one quarantine file at a time, and its ledger row names it.
        return span in spans
    for name in committed:
        other = settings.home / name
        # A replay's raw file holds only some offsets of its range: it replaces nothing.
        cover = file_span(other) if other.parent == path.parent and not file_generation(other) else None
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
    since: Mapping[int, int],
    until: Mapping[int, int],
    chunk_rows: int = 250_000,
) -> Iterator[pd.DataFrame]:
    """The committed raw rows of a topic, tombstones left out, as pandas DataFrames of about
    `chunk_rows` rows each: per partition of `until`, the offsets from `since` (inclusive, 0 when
    absent) to `until` (exclusive)."""
    import duckdb

    windows = [
        f"(_partition = {int(p)} and _offset >= {int(since.get(p, 0))} and _offset < {int(end)})"
        for p, end in sorted(until.items())
        if end > since.get(p, 0)
    ]
    if not windows or not has_raw_files(settings, topic):
        return
    query = (
        "select * from read_parquet(?, hive_partitioning = true, union_by_name = true) "
        f"where not coalesce(_tombstone, false) and ({' or '.join(windows)})"
    )
    with duckdb.connect() as con:
        result = con.execute(query, [raw_glob(settings, topic)])
        vectors = max(1, chunk_rows // 2048)
        while True:
            frame = result.fetch_df_chunk(vectors)
            if frame.empty:
                return
            yield frame
