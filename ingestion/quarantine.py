"""The quarantine: records that broke their contract, counted, shown, and replayed once fixed.

The drain commits a batch's bad records, as one file named by the batch's range, to the Iceberg
table `quarantine.<table>`, with their raw key, value, headers, coordinates and reason. A replay
sends a file's quarantined records through the contract and the topic's quality suites again,
and moves those that pass into `raw.<table>`: the raw files of the rows that now pass and a
rewritten quarantine file without them are written first; then one quarantine commit replaces
the old file by the rewritten one and names the raw files in its summary, and one raw commit adds
them. Every offset stays in raw or in quarantine exactly once, whatever the moment of a crash:
the next replay, drain or compaction finishes a move whose raw commit a crash prevented.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
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
from ingestion.parse import QUARANTINE_SCHEMA, parse, partition_days, quarantine_days
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


def read(settings: Settings, topic: str, columns: list[str] | None = None) -> pa.Table:
    """Every quarantined record of the topic: the quarantine table at its current snapshot."""
    schema = QUARANTINE_SCHEMA if columns is None else pa.schema([QUARANTINE_SCHEMA.field(c) for c in columns])
    tables = lake.TopicTables.load(settings, topic)
    if tables is None or tables.quarantine is None or tables.quarantine.current_snapshot() is None:
        return schema.empty_table()
    return tables.quarantine.scan(selected_fields=tuple(schema.names)).to_arrow().select(schema.names).cast(schema)


def _selected(table: pa.Table, reason: str | None, offsets: Offsets | None) -> pa.Array:
    mask = pa.array([True] * table.num_rows, pa.bool_())
    if reason is not None:
        mask = pa.array([reason_matches(r, reason) for r in table["reason"].to_pylist()], pa.bool_())
    if offsets is not None:
        inside = pc.and_(
            pc.equal(table["_kafka_partition"], offsets.partition),
            pc.and_(
                pc.greater_equal(table["_kafka_offset"], offsets.start), pc.less(table["_kafka_offset"], offsets.end)
            ),
        )
        mask = pc.and_(mask, inside)
    return mask


def records(
    settings: Settings, topic: str, reason: str | None = None, offsets: Offsets | None = None, limit: int | None = None
) -> list[Record]:
    """The quarantined records of a topic, in (partition, offset) order; `reason` as in `reason_matches`."""
    table = read(settings, topic)
    table = table.filter(_selected(table, reason, offsets)).sort_by(
        [("_kafka_partition", "ascending"), ("_kafka_offset", "ascending")]
    )
    if limit is not None:
        table = table.slice(0, limit)
    return [
        Record(
            topic=row["_topic"],
            partition=row["_kafka_partition"],
            offset=row["_kafka_offset"],
            timestamp=row["_kafka_timestamp"],
            key=row["_kafka_key"],
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
    table = read(settings, topic, columns=["_kafka_timestamp", "reason"])
    reasons = Counter(table["reason"].to_pylist())
    days = Counter(
        "unknown" if d is None else d.isoformat() for d in pc.cast(table["_kafka_timestamp"], pa.date32()).to_pylist()
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
    with lake.topic_lock(s, contract.topic, lock_wait_s):
        tables = lake.TopicTables.open(s, contract)
        report.recovered = (tables.finish_replays(), 0)
        for path in _quarantine_files(tables):
            _replay_file(contract, s, tables, path, reason, offsets, report)
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
            (entries["_kafka_partition"] == offsets.partition)
            & (entries["_kafka_offset"] >= offsets.start)
            & (entries["_kafka_offset"] < offsets.end)
        ]
    wanted = entries.drop_duplicates(["_generation", "_kafka_partition", "_kafka_offset"])
    for (generation, partition), group in wanted.groupby(["_generation", "_kafka_partition"]):
        key = lake.partition_key(int(generation), int(partition))
        first, last = int(group["_kafka_offset"].min()), int(group["_kafka_offset"].max())
        frames = [
            frame[frame["_kafka_offset"].isin(group["_kafka_offset"])]
            for frame in lake.read_raw(s, contract.topic, since={key: first}, until={key: last + 1})
        ]
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if rows.empty:
            continue
        failing = suite_failures(contract, pa.Table.from_pandas(rows, preserve_index=False))
        passing = [(int(partition), int(o)) for o in rows["_kafka_offset"] if int(o) not in failing]
        report.released += set_aside.release(s, contract.topic, passing, generation=int(generation))
        report.still_set_aside += len(failing)


def _quarantine_files(tables: lake.TopicTables) -> list[str]:
    """The quarantine table's current data files, in offset order."""
    if tables.quarantine is None or tables.quarantine.current_snapshot() is None:
        return []
    paths = [f["file_path"] for f in lake.data_files(tables.quarantine)]
    return sorted(paths, key=lambda p: (lake.file_topic_generation(Path(p)), *(lake.file_span(Path(p)) or (0, 0, 0))))


def as_raw_batch(topic: str, partition: int, table: pa.Table) -> RawBatch:
    """Quarantined records (QUARANTINE_SCHEMA, one partition) as the batch the drain read them in."""
    headers = {i: [(h["key"], h["value"]) for h in row] for i, row in enumerate(table["_headers"].to_pylist()) if row}
    return RawBatch.of(
        topic,
        partition,
        offsets=table["_kafka_offset"].to_pylist(),
        values=table["_value"].to_pylist(),
        keys=table["_kafka_key"].to_pylist(),
        timestamps=table["_kafka_timestamp"].cast(pa.int64()).to_pylist(),
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
        for offset in outcome.failing_sample["_kafka_offset"].tolist():
            failing.setdefault(int(offset), f"failed suite: {suite}: {failed}")
    return failing


def _fit_raw_table(tables: lake.TopicTables, schema: pa.Schema) -> str | None:
    """Widen the raw table to the fixed contract's columns (new fields, a type widened as Iceberg
    allows) before anything is committed; return why the table cannot take them, if it cannot.
    Refused here, the records stay quarantined: refused at the raw commit, after the quarantine
    gave them up, they would be held by neither table and every later finish would fail again."""
    from pyiceberg.exceptions import ValidationError

    try:
        with tables.raw.update_schema() as update:
            update.union_by_name(schema)
    except ValidationError as exc:
        return f"does not fit the raw table: {exc}"
    return None


def _replay_file(
    contract: Contract,
    s: Settings,
    tables: lake.TopicTables,
    path: str,
    reason: str | None,
    offsets: Offsets | None,
    report: ReplayReport,
) -> None:
    name = Path(path.rsplit("/", 1)[-1])
    span = lake.file_span(name)
    if span is None:
        return  # not a file this product wrote
    partition, start, end = span
    generation = lake.file_topic_generation(name)
    with tables.raw.io.new_input(path).open() as stream:
        table = pq.read_table(stream).select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)
    chosen = table.filter(_selected(table, reason, offsets))
    if not chosen.num_rows:
        return
    parsed = parse(as_raw_batch(contract.topic, partition, chosen), contract, s.record_max_bytes, s.record_limits)
    report.still.update(parsed.quarantine["reason"].to_pylist())
    failing = suite_failures(contract, parsed.table)
    report.still.update(failing.values())
    good = parsed.table.filter(pc.invert(pc.is_in(parsed.table["_kafka_offset"], pa.array(list(failing), pa.int64()))))
    if not good.num_rows:
        return

    file_name = lake.replay_file_name(partition, start, end, lake.file_replay(name) + 1, generation)
    good = lake.with_generation(good, generation)
    if refused := _fit_raw_table(tables, good.schema):
        report.still.update([refused] * good.num_rows)
        return
    raw_files, _ = tables.write_by_day("raw", good, file_name, partition_days(good, contract))
    failpoint("replay-while-writing")
    kept = table.filter(pc.invert(pc.is_in(table["_kafka_offset"], good["_kafka_offset"])))
    new_quarantine = None
    if kept.num_rows:
        # A quarantine file holds the records of one day (of their Kafka timestamp): so does what stays.
        new_quarantine = tables.data_path("quarantine", quarantine_days(kept)[0].as_py(), file_name)
        tables.write(lake.with_generation(kept, generation), new_quarantine)
    failpoint("replay-after-files")

    # Asked for before the commits: a replay killed after them and found with nothing left to do
    # must still leave the request behind.
    refresh.request(s, contract, "a quarantine replay")
    # The quarantine gives the records up first, naming the raw files that take them: a reader
    # may miss them for an instant but never sees one twice, and a crash before the raw commit
    # is finished by the next replay, drain or compaction (`TopicTables.finish_replays`).
    tables.retire_quarantine_file(path, new_quarantine, raw_files)
    failpoint("replay-after-commit")
    failpoint("replay-after-retire")
    tables.commit_replayed(raw_files)
    failpoint("replay-after-publish")
    report.replayed += good.num_rows
    report.files.extend(raw_files)
    log.info(
        "%s[%d]: offsets %d-%d: replayed %d quarantined records, %d still quarantined",
        contract.topic, partition, start, end, good.num_rows, kept.num_rows,
    )  # fmt: skip
