"""Rows a quality gate set aside: they fit their contract, so they stay in the raw layer, but staging
no longer reads them (`raw_source()` in `dbt_project/macros/gates.sql` leaves their coordinates out).

Kept apart from the quarantine, which holds records that broke their contract: raw and quarantine
still hold every Kafka offset exactly once, and a set-aside row is one of the raw ones.

`LAKEHOUSE_HOME/set_aside/<topic>/` holds one Parquet file per gate run that set rows aside, one row
per failing (row, expectation): `_generation, _kafka_partition, _kafka_offset, suite, expectation, column, value,
reason, set_aside_at` (`_generation`: of the topic, 0 until it was deleted and created again). A file's name is derived from the suite and the offsets that run validated, so a gate
retried after a crash (its mark not yet moved) rewrites the same file, and replaces the file of an
interrupted try over a shorter range from the same mark. Files are written under a pending name and
renamed into place; readers only glob `*.parquet`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.config import Settings

if TYPE_CHECKING:
    import pandas as pd

SCHEMA = pa.schema(
    [
        pa.field("_generation", pa.int32(), nullable=False),
        pa.field("_kafka_partition", pa.int32(), nullable=False),
        pa.field("_kafka_offset", pa.int64(), nullable=False),
        pa.field("suite", pa.string(), nullable=False),
        pa.field("expectation", pa.string(), nullable=False),
        pa.field("column", pa.string()),
        pa.field("value", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("set_aside_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
COLUMNS = tuple(SCHEMA.names)
# A file being written: no reader's `*.parquet` glob matches it.
PENDING = ".pending"


def topic_dir(settings: Settings, topic: str) -> Path:
    return settings.set_aside_dir / topic


def glob(settings: Settings, topic: str) -> str:
    """The pattern that matches every set-aside file of a topic (what dbt reads)."""
    return str(topic_dir(settings, topic) / "*.parquet")


def _digest(offsets: Mapping[int, int]) -> str:
    text = json.dumps({str(p): int(o) for p, o in sorted(offsets.items())})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_name(suite: str, since: Mapping[int, int], until: Mapping[int, int]) -> str:
    """From the suite and the validated range: a retried gate run rewrites the same file."""
    return f"{suite}-{_digest(since)}-{_digest(until)}.parquet"


@contextmanager
def _locked(settings: Settings, topic: str) -> Iterator[None]:
    # Writers read, change and rewrite files: a gate run and a release never interleave.
    settings.locks_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.locks_dir / f"set_aside-{topic}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(table: pa.Table, path: Path) -> None:
    """Pending file, fsync, rename: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pending = path.with_name(path.name + PENDING)
    pq.write_table(table, pending, compression="zstd")
    with open(pending, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(pending, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def record(
    settings: Settings,
    topic: str,
    suite: str,
    since: Mapping[int, int],
    until: Mapping[int, int],
    rows: pd.DataFrame,
) -> Path | None:
    """Set aside `rows` (columns `[_generation,] _kafka_partition, _kafka_offset, expectation, column, value, reason`) that
    `suite` failed over the offsets `since` (inclusive) to `until` (exclusive); return the file, or
    None when there is nothing to set aside. Call it before moving the gate's mark."""
    import pandas as pd

    if rows.empty:
        return None
    frame = rows.assign(suite=suite, set_aside_at=pd.Timestamp.now(tz="UTC"))
    frame = frame.assign(
        _generation=(frame["_generation"] if "_generation" in frame.columns else 0),
    )
    frame = frame.assign(
        _generation=frame["_generation"].astype("int32"),
        _kafka_partition=frame["_kafka_partition"].astype("int32"),
        _kafka_offset=frame["_kafka_offset"].astype("int64"),
        value=frame["value"].astype("string"),
        column=frame["column"].astype("string"),
    )
    table = pa.Table.from_pandas(frame[list(COLUMNS)], schema=SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata(
        {
            "suite": suite,
            "since": json.dumps({str(p): int(o) for p, o in sorted(since.items())}),
            "until": json.dumps({str(p): int(o) for p, o in sorted(until.items())}),
        }
    )
    folder = topic_dir(settings, topic)
    path = folder / file_name(suite, since, until)
    with _locked(settings, topic):
        for stale in folder.glob("*" + PENDING):
            stale.unlink()  # a write a crash interrupted; its run will be retried from the same mark
        _write(table, path)
        # An earlier try from the same mark that crashed before the mark moved, over a shorter range:
        # every row it names is validated again in this run.
        for sibling in folder.glob(f"{suite}-{_digest(since)}-*.parquet"):
            if sibling != path:
                sibling.unlink()
    return path


def _files(settings: Settings, topic: str) -> list[Path]:
    return sorted(topic_dir(settings, topic).glob("*.parquet"))


def _empty() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()


def read_topic(settings: Settings, topic: str) -> pd.DataFrame:
    """Every set-aside entry of a topic (a row failing two expectations has two), by coordinates."""
    import pandas as pd

    frames = [pq.read_table(path, schema=SCHEMA).to_pandas() for path in _files(settings, topic)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return _empty()
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["_kafka_partition", "_kafka_offset", "suite", "expectation"], ignore_index=True)


def read_all(settings: Settings) -> pd.DataFrame:
    """Every set-aside entry of every topic, with a `topic` column first."""
    import pandas as pd

    root = settings.set_aside_dir
    topics = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    frames = [read_topic(settings, t).assign(topic=t) for t in topics]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return _empty().assign(topic=pd.Series(dtype="object"))[["topic", *COLUMNS]]
    return pd.concat(frames, ignore_index=True)[["topic", *COLUMNS]]


def coordinates(settings: Settings, topic: str, generation: int = 0) -> set[tuple[int, int]]:
    """The (partition, offset) of every row of the topic's generation that is set aside."""
    frame = read_topic(settings, topic)
    frame = frame[frame["_generation"] == generation]
    return set(zip(frame["_kafka_partition"].astype(int), frame["_kafka_offset"].astype(int), strict=True))


def counts(settings: Settings, topic: str) -> dict[tuple[int, int], int]:
    """Per (generation, partition), how many rows of the topic are set aside (each row once, whatever it failed)."""
    frame = read_topic(settings, topic).drop_duplicates(["_generation", "_kafka_partition", "_kafka_offset"])
    grouped = frame.groupby(["_generation", "_kafka_partition"]).size()
    return {(int(g), int(p)): int(n) for (g, p), n in sorted(grouped.items())}


def release(
    settings: Settings, topic: str, coordinates: list[tuple[int, int]], suite: str | None = None, generation: int = 0
) -> int:
    """Take rows out of the set-aside record (all suites', or one suite's), so staging reads them
    again; return how many of the coordinates were set aside and no longer are.

    Each file is rewritten without them by pending file and rename (or deleted when nothing is
    left in it), so a crash leaves every file whole; running it again finishes the job.
    """
    wanted = {(int(p), int(o)) for p, o in coordinates}
    if not wanted:
        return 0
    released: set[tuple[int, int]] = set()
    with _locked(settings, topic):
        for path in _files(settings, topic):
            table = pq.read_table(path)  # with its metadata: the suite and range it was written for
            frame = table.to_pandas()
            hit = [
                int(g) == generation and (int(p), int(o)) in wanted and (suite is None or s == suite)
                for g, p, o, s in zip(
                    frame["_generation"], frame["_kafka_partition"], frame["_kafka_offset"], frame["suite"], strict=True
                )
            ]
            if not any(hit):
                continue
            released |= {
                (int(p), int(o))
                for p, o, h in zip(frame["_kafka_partition"], frame["_kafka_offset"], hit, strict=True)
                if h
            }
            kept = table.filter(pa.array([not h for h in hit]))
            if kept.num_rows:
                _write(kept.replace_schema_metadata(table.schema.metadata), path)
            else:
                path.unlink()
    # A row another suite also set aside stays out of staging: it is not released.
    return len(released - _still_set_aside(settings, topic, released, generation))


def _still_set_aside(
    settings: Settings, topic: str, candidates: Iterable[tuple[int, int]], generation: int
) -> set[tuple[int, int]]:
    return set(candidates) & coordinates(settings, topic, generation)
