"""The quarantine: records that broke their contract, counted, shown, and replayed once fixed.

The drain writes a batch's bad records to one file, `quarantine/<topic>/p<partition>-<start>-
<end>.parquet`, with their raw key, value, headers, coordinates and reason. A replay sends a
batch's quarantined records through the contract and the topic's quality suites again, and
moves those that pass into the raw layer by the lake's commit protocol (`lake.py`): the raw
files of the rows that now pass and a rewritten quarantine file without them are written
pending, one ledger transaction moves the records (the batch's counts and files), the old
quarantine file is deleted and the new files are renamed into place. Every offset stays in raw
or in quarantine exactly once, whatever the moment of a crash; the next replay, drain or
compaction finishes an interrupted swap.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingestion import lake, refresh
from ingestion.config import Settings
from ingestion.config import settings as current_settings
from ingestion.contracts import Contract
from ingestion.failpoints import failpoint
from ingestion.parse import QUARANTINE_SCHEMA, event_dates, parse
from ingestion.records import RawBatch

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes | None]]


def reason_kind(reason: str) -> str:
    """What kind of failure a reason names: its text before the first colon (`wrong type`)."""
    return reason.split(":", 1)[0].strip()


def reason_matches(reason: str, wanted: str) -> bool:
    """`--reason`: the kind exactly, or any part of the full reason (case-insensitive)."""
    wanted = wanted.casefold().strip()
    return reason_kind(reason).casefold() == wanted or wanted in reason.casefold()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def as_text(data: bytes | None) -> tuple[str | None, bool]:
    """Bytes as text a terminal shows safely, and whether they were UTF-8: invalid bytes and
    control characters (a newline and a tab excepted) are escaped as `\\xNN`."""
    if data is None:
        return None, True
    try:
        text, utf8 = data.decode("utf-8"), True
    except UnicodeDecodeError:
        text, utf8 = data.decode("utf-8", "backslashreplace"), False
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text), utf8


@dataclass(frozen=True)
class Record:
    """One quarantined record, as the drain kept it."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str

    @property
    def kind(self) -> str:
        return reason_kind(self.reason)

    def as_dict(self) -> dict:
        value, utf8 = as_text(self.value)
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "key": as_text(self.key)[0],
            "headers": [{"key": k, "value": as_text(v)[0]} for k, v in self.headers],
            "value": value,
            "value_is_utf8": utf8,
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Offsets:
    """`--offsets P:A-B`: offsets A (inclusive) to B (exclusive) of partition P, as `drain` prints ranges."""

    partition: int
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Offsets:
        match = re.fullmatch(r"\s*(\d+):(\d+)-(\d+)\s*", text)
        if not match:
            raise ValueError(f"offsets must read PARTITION:START-END (END exclusive), not {text!r}")
        return cls(*map(int, match.groups()))


def files(settings: Settings, topic: str) -> list[Path]:
    """The topic's quarantine files that readers see (published), in offset order."""
    folder = lake.topic_dir(settings.quarantine_dir, topic)
    return sorted(
        (p for p in folder.glob("*.parquet") if lake.file_span(p)),
        key=lambda p: (lake.file_topic_generation(p), *(lake.file_span(p) or (0, 0, 0))),
    )


def read(settings: Settings, topic: str, columns: list[str] | None = None) -> pa.Table:
    """Every quarantined record of the topic, as readers see them."""
    schema = QUARANTINE_SCHEMA if columns is None else pa.schema([QUARANTINE_SCHEMA.field(c) for c in columns])
    tables = []
    for path in files(settings, topic):
        try:
            tables.append(pq.read_table(path, columns=columns).cast(schema))
        except FileNotFoundError:
            continue  # retired by a replay since the listing: its records are published anew in an instant
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _selected(table: pa.Table, reason: str | None, offsets: Offsets | None) -> pa.Array:
    mask = pa.array([True] * table.num_rows, pa.bool_())
    if reason is not None:
        mask = pa.array([reason_matches(r, reason) for r in table["reason"].to_pylist()], pa.bool_())
    if offsets is not None:
        inside = pc.and_(
            pc.equal(table["_partition"], offsets.partition),
            pc.and_(pc.greater_equal(table["_offset"], offsets.start), pc.less(table["_offset"], offsets.end)),
        )
        mask = pc.and_(mask, inside)
    return mask


def records(
    settings: Settings, topic: str, reason: str | None = None, offsets: Offsets | None = None, limit: int | None = None
) -> list[Record]:
    """The quarantined records of a topic, in (partition, offset) order; `reason` as in `reason_matches`."""
    table = read(settings, topic)
    table = table.filter(_selected(table, reason, offsets)).sort_by(
        [("_partition", "ascending"), ("_offset", "ascending")]
    )
    if limit is not None:
        table = table.slice(0, limit)
    return [
        Record(
            topic=row["_topic"],
            partition=row["_partition"],
            offset=row["_offset"],
            timestamp=row["_timestamp"],
            key=row["_key"],
            value=row["_value"],
            headers=[(h["key"], h["value"]) for h in row["_headers"] or []],
            reason=row["reason"],
        )
        for row in table.to_pylist()
    ]


@dataclass
class Summary:
    """What a topic's quarantine holds: counts by kind of reason (and by full reason) and by day."""

    topic: str
    total: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> full reason -> count
    by_day: dict[str, int] = field(default_factory=dict)  # the record's Kafka timestamp date (UTC)

    def as_dict(self) -> dict:
        return {
            "topic": self.topic,
            "total": self.total,
            "by_kind": self.by_kind,
            "by_reason": self.by_reason,
            "by_day": self.by_day,
        }


def summarize(settings: Settings, topic: str) -> Summary:
    table = read(settings, topic, columns=["_timestamp", "reason"])
    reasons = Counter(table["reason"].to_pylist())
    days = Counter(
        "unknown" if d is None else d.isoformat() for d in pc.cast(table["_timestamp"], pa.date32()).to_pylist()
    )
    by_reason: dict[str, dict[str, int]] = {}
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        by_reason.setdefault(reason_kind(reason), {})[reason] = count
    by_kind = {kind: sum(counts.values()) for kind, counts in by_reason.items()}
    return Summary(
        topic,
        total=table.num_rows,
        by_kind=dict(sorted(by_kind.items(), key=lambda item: (-item[1], item[0]))),
        by_reason=by_reason,
        by_day=dict(sorted(days.items())),
    )


# --- replay --------------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    topic: str
    replayed: int = 0  # records now stored in the raw layer
    still: Counter[str] = field(default_factory=Counter)  # why the others are still held, now: reason -> count
    files: list[str] = field(default_factory=list)  # the raw files written
    recovered: tuple[int, int] = (0, 0)  # (published, deleted) files a crash had left
    released: int = 0  # rows a gate had set aside that now pass: staging reads them again
    still_set_aside: int = 0

    @property
    def still_quarantined(self) -> int:
        return sum(self.still.values())

    @property
    def still_by_kind(self) -> dict[str, int]:
        kinds: Counter[str] = Counter()
        for reason, count in self.still.items():
            kinds[reason_kind(reason)] += count
        return dict(kinds.most_common())

    def as_dict(self) -> dict:
        return {
            "topic": self.topic,
            "replayed": self.replayed,
            "still_quarantined": self.still_quarantined,
            "still_by_kind": self.still_by_kind,
            "still_by_reason": dict(self.still.most_common()),
            "files": self.files,
            "released": self.released,
            "still_set_aside": self.still_set_aside,
        }


def replay(
    contract: Contract,
    s: Settings | None = None,
    reason: str | None = None,
    offsets: Offsets | None = None,
    lock_wait_s: float = 300.0,
) -> ReplayReport:
    """Send the topic's quarantined records (those of `reason` or `offsets`, else all) through
    the contract and its suites again; store those that now pass in the raw layer, exactly once."""
    s = s or current_settings()
    report = ReplayReport(contract.topic)
    with lake.topic_lock(s, contract.topic, lock_wait_s), lake.Ledger(s.ledger_path) as ledger:
        report.recovered = lake.recover(s, ledger, contract.topic)
        for batch, name in _quarantine_files(s, ledger, contract.topic):
            _replay_file(contract, s, ledger, batch, name, reason, offsets, report)
        _replay_set_aside(contract, s, reason, offsets, report)
    if report.replayed or report.released:
        # Renewed after the last swap: a build that began before it must not drop the request.
        refresh.request(s, contract, f"replayed {report.replayed} quarantined and {report.released} set-aside records")
    return report


def _replay_set_aside(
    contract: Contract, s: Settings, reason: str | None, offsets: Offsets | None, report: ReplayReport
) -> None:
    """The second source of a replay: rows a gate set aside, already in the raw layer. They go
    through the suites again, and those that now pass are released, so staging reads them again;
    nothing is moved, so no offset can be held twice."""
    import pandas as pd

    from ingestion import set_aside

    entries = set_aside.read_topic(s, contract.topic)
    if reason is not None:
        entries = entries[entries["reason"].map(lambda text: reason_matches(text, reason)).astype(bool)]
    if offsets is not None:
        entries = entries[
            (entries["_partition"] == offsets.partition)
            & (entries["_offset"] >= offsets.start)
            & (entries["_offset"] < offsets.end)
        ]
    wanted = entries.drop_duplicates(["_generation", "_partition", "_offset"])
    for (generation, partition), group in wanted.groupby(["_generation", "_partition"]):
        key = lake.partition_key(int(generation), int(partition))
        first, last = int(group["_offset"].min()), int(group["_offset"].max())
        frames = [
            frame[frame["_offset"].isin(group["_offset"])]
            for frame in lake.read_raw(s, contract.topic, since={key: first}, until={key: last + 1})
        ]
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if rows.empty:
            continue
        failing = suite_failures(contract, pa.Table.from_pandas(rows, preserve_index=False))
        passing = [(int(partition), int(o)) for o in rows["_offset"] if int(o) not in failing]
        report.released += set_aside.release(s, contract.topic, passing, generation=int(generation))
        report.still_set_aside += len(failing)


def _quarantine_files(s: Settings, ledger: lake.Ledger, topic: str) -> Iterator[tuple[lake.Batch, str]]:
    """Each committed batch's quarantine file (a batch has at most one)."""
    folder = lake.topic_dir(s.quarantine_dir, topic)
    for batch in ledger.batches(topic):
        for name in batch.files:
            if (s.home / name).parent == folder:
                yield batch, name


def as_raw_batch(topic: str, partition: int, table: pa.Table) -> RawBatch:
    """Quarantined records (QUARANTINE_SCHEMA, one partition) as the batch the drain read them in."""
    headers = {i: [(h["key"], h["value"]) for h in row] for i, row in enumerate(table["_headers"].to_pylist()) if row}
    return RawBatch.of(
        topic,
        partition,
        offsets=table["_offset"].to_pylist(),
        values=table["_value"].to_pylist(),
        keys=table["_key"].to_pylist(),
        timestamps=table["_timestamp"].cast(pa.int64()).to_pylist(),
        headers=headers,
    )


def suite_failures(contract: Contract, table: pa.Table) -> dict[int, str]:
    """The rows of one partition (a parsed table) that fail one of the contract's suites, by
    offset, with the reason: the suite and the expectations that failed."""
    rows = table.filter(pc.invert(pc.fill_null(table["_tombstone"], False)))
    if not rows.num_rows or not contract.suites:
        return {}
    from expectations.validation import validate

    frame = rows.to_pandas()
    failing: dict[int, str] = {}
    for suite in contract.suites:
        outcome = validate(frame, contract.stream, suite, sample_size=len(frame), aliases=contract.aliases)
        if outcome.success:
            continue
        failed = ", ".join(
            f"{e.expectation}" + (f" on {e.column}" if e.column else "") for e in outcome.expectations if not e.success
        )
        for offset in outcome.failing_sample["_offset"].tolist():
            failing.setdefault(int(offset), f"failed suite: {suite}: {failed}")
    return failing


def _replay_file(
    contract: Contract,
    s: Settings,
    ledger: lake.Ledger,
    batch: lake.Batch,
    name: str,
    reason: str | None,
    offsets: Offsets | None,
    report: ReplayReport,
) -> None:
    path = s.home / name
    # A later generation's quarantine carries its generation as a column, which the schema lacks.
    table = pq.read_table(path).select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)
    chosen = table.filter(_selected(table, reason, offsets))
    if not chosen.num_rows:
        return
    parsed = parse(as_raw_batch(contract.topic, batch.partition, chosen), contract, s.record_max_bytes, s.record_limits)
    report.still.update(parsed.quarantine["reason"].to_pylist())
    failing = suite_failures(contract, parsed.table)
    report.still.update(failing.values())
    good = parsed.table.filter(pc.invert(pc.is_in(parsed.table["_offset"], pa.array(list(failing), pa.int64()))))
    if not good.num_rows:
        return

    file_name = lake.replay_file_name(
        batch.partition, batch.start, batch.end, lake.file_replay(path) + 1, batch.generation
    )
    if batch.generation:
        good = lake.with_generation(good, batch.generation)
    raw_names, written = [], 0
    dates = event_dates(good, contract)
    for day in pc.unique(dates).to_pylist():
        target = lake.topic_dir(s.raw_dir, contract.topic) / f"date={day.isoformat()}" / file_name
        written += lake.write_pending(good.filter(pc.equal(dates, pa.scalar(day, pa.date32()))), target)
        raw_names.append(str(target.relative_to(s.home)))
        failpoint("replay-while-writing")
    kept = table.filter(pc.invert(pc.is_in(table["_offset"], good["_offset"])))
    if batch.generation:
        kept = lake.with_generation(kept, batch.generation)
    new_quarantine = None
    if kept.num_rows:
        target = path.with_name(file_name)
        written += lake.write_pending(kept, target)
        new_quarantine = str(target.relative_to(s.home))
    failpoint("replay-after-files")

    # Asked for before the commit: a replay killed after it and found with nothing left to do
    # must still leave the request behind.
    refresh.request(s, contract, "a quarantine replay")
    ledger.move_out_of_quarantine(
        batch, name, new_quarantine, raw_names, moved=good.num_rows, bytes_delta=written - path.stat().st_size
    )
    failpoint("replay-after-commit")
    # As compaction does: the old file goes first, so a reader may miss the records for an
    # instant but never sees one twice.
    path.unlink()
    failpoint("replay-after-retire")
    for new_name in [*raw_names, *([new_quarantine] if new_quarantine else [])]:
        lake.publish(s.home / new_name)
    failpoint("replay-after-publish")
    report.replayed += good.num_rows
    report.files.extend(raw_names)
    log.info(
        "%s[%d]: offsets %d-%d: replayed %d quarantined records, %d still quarantined",
        contract.topic, batch.partition, batch.start, batch.end, good.num_rows, kept.num_rows,
    )  # fmt: skip
