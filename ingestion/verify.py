"""Reconcile the lake with the broker, partition by partition, and say whether the lake is exact.

Two independent views are compared: the raw table's snapshot summary (how far each partition is
stored), and the data files of the current snapshots of the raw and quarantine tables themselves
(read with DuckDB). The lake is exact when the files hold each offset of a partition at most once,
nothing past what the summary says is stored, as many rows as the manifests list, and the files
and the recorded losses together account for every offset from the first stored to the end.

Offsets the broker removed before the lake stored them (retention, DeleteRecords) take their
place in the tiling as a recorded loss: a problem, named, until an operator accepts it. A topic
deleted and created again is a new generation of it; the earlier generations are checked
against the summary and the files alone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ingestion import kafka, lake, set_aside
from ingestion.config import Settings
from ingestion.config import settings as current_settings
from ingestion.drain import identity_problem
from ingestion.kafka import BrokerUnreachable


@dataclass
class PartitionCheck:
    topic: str
    partition: int
    broker_start: int | None  # None: the broker could not be asked
    broker_end: int | None
    stored_from: int | None
    stored_to: int | None
    batches: int = 0
    rows: int = 0  # payload rows, tombstones not included
    tombstones: int = 0
    quarantined: int = 0
    # Raw rows a quality gate set aside (ingestion/set_aside.py): counted among `rows`, not read by staging.
    set_aside: int = 0
    files: int = 0
    # Offsets inside the stored ranges that hold no record: transaction markers and compacted
    # records leave these legally.
    gaps: int = 0
    generation: int = 0
    current: bool = True  # of the topic's current generation (the one on the broker)
    lost: int = 0  # offsets the broker removed before they were stored, not yet accepted by an operator
    lost_accepted: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def lag(self) -> int | None:
        if self.broker_end is None:
            return None
        return max(0, self.broker_end - (self.stored_to if self.stored_to is not None else self.broker_start or 0))

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "lag": self.lag, "ok": self.ok}


def _broker_marks(topic: str, consumer: Consumer | None) -> dict[int, tuple[int, int]] | None:
    if consumer is None:
        return None
    try:
        return kafka.watermarks(topic, consumer)
    except KafkaException:
        return None  # the lake is still checked on its own


@dataclass
class Verification:
    checks: list[PartitionCheck]
    broker_reachable: bool

    @property
    def ok(self) -> bool:
        """The lake is exact, and was checked against the broker."""
        return self.broker_reachable and all(c.ok for c in self.checks)


@dataclass
class _Stored:
    """What the data files of the current snapshots hold of one (generation, partition)."""

    rows: int = 0
    tombstones: int = 0
    quarantined: int = 0
    doubled: int = 0  # offsets held more than once, raw and quarantine together
    offsets: int = 0  # distinct offsets held
    first: int | None = None
    last: int | None = None
    files: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)  # the ranges the files' names cover
    # Runs of offsets between the first and the last held that no file holds, the first of them.
    holes: list[tuple[int, int]] = field(default_factory=list)


# Runs of missing offsets listed per partition, and asked of the broker: a transactional producer
# leaves one marker per transaction, so a partition can have very many; a few checked tell.
_HOLES_LISTED = 1_000
_HOLES_ASKED = 100


def _stored(tables: lake.TopicTables, list_holes: bool) -> tuple[dict[tuple[int, int], _Stored], list[str]]:
    """Per (generation, partition), read from the data files themselves with DuckDB, independently
    of the snapshot summaries (with `list_holes`, the runs of offsets no file holds too); and the
    problems of the tables as a whole."""
    from ingestion import duck

    stored: dict[tuple[int, int], _Stored] = {}
    problems: list[str] = []
    listed = 0
    scans = []
    for kind, table in (("raw", tables.raw), ("quarantine", tables.quarantine)):
        files = lake.data_files(table)
        if not files:
            continue
        listed += sum(f["record_count"] for f in files)
        for path in (f["file_path"] for f in files):
            name = path.rsplit("/", 1)[-1]
            span = lake.file_span(Path(name))
            if span is not None:
                key = (lake.file_topic_generation(Path(name)), span[0])
                entry = stored.setdefault(key, _Stored())
                entry.files += 1
                entry.spans.append((span[1], span[2]))
        tombstone = "coalesce(_tombstone, false)" if kind == "raw" else "false"
        scans.append(
            f"select coalesce({lake.GENERATION_COLUMN}, 0) as g, _kafka_partition as p, _kafka_offset as o, "
            f"{tombstone} as tombstone, {kind == 'quarantine'} as quarantined from {lake.scan_sql(table)}"
        )
    if not scans:
        return stored, problems
    holes = []
    with duck.read_iceberg(duck.connect(), tables.settings) as con:
        # The data files are read once: into a table when the runs of missing offsets are wanted too.
        held = f"({' union all '.join(scans)})"
        if list_holes:
            con.execute(f"create temp table held as {held}")
            held = "held"
        rows = con.execute(
            f"""
            select g, p, count(*) filter (where not quarantined and not tombstone),
                count(*) filter (where tombstone), count(*) filter (where quarantined),
                count(*) - count(distinct o), count(distinct o), min(o), max(o)
            from {held} group by all
            """
        ).fetchall()
        if list_holes:
            holes = con.execute(
                f"""
                with offsets as (select distinct g, p, o from held),
                following as (select g, p, o, lead(o) over (partition by g, p order by o) as n from offsets),
                runs as (
                    select g, p, o + 1 as start, n as "end", row_number() over (partition by g, p order by o) as i
                    from following where n > o + 1
                )
                select g, p, start, "end" from runs where i <= {_HOLES_LISTED} order by g, p, start
                """
            ).fetchall()
    for g, p, start, end in holes:
        stored.setdefault((int(g), int(p)), _Stored()).holes.append((int(start), int(end)))
    read = 0
    for g, p, payload, tombstones, quarantined, doubled, distinct, first, last in rows:
        entry = stored.setdefault((int(g), int(p)), _Stored())
        entry.rows, entry.tombstones, entry.quarantined = int(payload), int(tombstones), int(quarantined)
        entry.doubled, entry.offsets, entry.first, entry.last = int(doubled), int(distinct), int(first), int(last)
        read += int(payload) + int(tombstones) + int(quarantined)
    if read != listed:
        problems.append(f"the data files hold {read:,} rows, the tables' manifests list {listed:,}")
    return stored, problems


def verify_topic(
    topic: str, s: Settings, consumer: Consumer | None, ask_about_holes: bool = True
) -> list[PartitionCheck]:
    """Check one topic; without a consumer (no broker reachable) the lake is checked alone.
    `ask_about_holes`: ask the broker about offsets no file holds (a fetch per run of them)."""
    marks = _broker_marks(topic, consumer)
    tables = lake.TopicTables.load(s, topic)
    state = tables.state() if tables else lake.State(topic)
    stored, table_problems = _stored(tables, ask_about_holes) if tables else ({}, [])
    current = state.generation
    live = current.number if current else 0
    changed = None
    if current is not None and marks is not None:
        broker_id = kafka.topic_id(topic) if current.topic_id else None
        changed = identity_problem(topic, current, broker_id, state.progress(), marks)
    if changed:  # the broker's topic is not the one stored: compare the lake with itself alone
        marks = {}
    until = state.stored_until()
    keys = set(until) | set(stored) | {(loss.generation, loss.partition) for loss in state.losses}
    keys |= {(live, p) for p in marks or {}}
    aside = set_aside.counts(s, topic)
    checks = []
    for generation, partition in sorted(keys):
        held = stored.get((generation, partition), _Stored())
        lost = [loss for loss in state.losses if (loss.generation, loss.partition) == (generation, partition)]
        is_live = generation == live
        low, high = (marks or {}).get(partition, (None, None)) if is_live else (None, None)
        starts = [start for start, _ in held.spans] + [loss.start for loss in lost]
        if held.first is not None:
            starts.append(held.first)
        check = PartitionCheck(
            topic,
            partition,
            broker_start=low,
            broker_end=high,
            stored_from=min(starts) if starts else None,
            stored_to=until.get((generation, partition)),
            batches=len(set(held.spans)),
            rows=held.rows,
            tombstones=held.tombstones,
            quarantined=held.quarantined,
            set_aside=aside.get((generation, partition), 0),
            files=held.files,
            generation=generation,
            current=is_live,
            lost=sum(loss.offsets for loss in lost if loss.accepted_at is None),
            lost_accepted=sum(loss.offsets for loss in lost if loss.accepted_at is not None),
        )
        if changed and is_live:
            check.problems.append(changed)
        elif not is_live:
            check.notes.append(
                f"generation {generation}: the topic as it was before it was created again, kept as stored"
            )
        elif marks is None:
            check.notes.append("broker not reachable: lake checked alone")
        check.problems += table_problems
        _check_ranges(check, held, lost)
        _check_losses(check, lost)
        if ask_about_holes and is_live and consumer is not None and marks and not changed:
            _check_holes_on_broker(check, held, lost, consumer)
        checks.append(check)
    return checks


def _check_holes_on_broker(check: PartitionCheck, held: _Stored, losses: list[lake.Loss], consumer: Consumer) -> None:
    """Ask the broker what it holds at offsets inside the stored range that no file holds: none
    of its records may be there (markers and compacted records leave such offsets legally, and the
    broker sends neither); one that is there was lost between the broker and the lake."""
    runs = list(held.holes)
    if held.first is not None and check.stored_from is not None and check.stored_from < held.first:
        runs.insert(0, (check.stored_from, held.first))
    if held.last is not None and check.stored_to is not None and held.last + 1 < check.stored_to:
        runs.append((held.last + 1, check.stored_to))
    asked = 0
    for start, end in runs:
        start = max(start, check.broker_start or 0)
        if start >= end or any(loss.start <= start and end <= loss.end for loss in losses):
            continue
        if asked == _HOLES_ASKED:
            check.notes.append(f"asked the broker about the first {asked} runs of missing offsets only")
            return
        asked += 1
        found = _first_record_at(consumer, check.topic, check.partition, start)
        if found is not None and found < end:
            check.problems.append(
                f"hole: offset {found} (in {start}-{end}) holds a record on the broker that neither table holds"
            )
            return


def _first_record_at(
    consumer: Consumer, topic: str, partition: int, offset: int, timeout_s: float = 10.0
) -> int | None:
    """The offset of the first record the broker sends from `offset` on, None at the end of the log."""
    consumer.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error() is None:
                return message.offset()
            if message.error().code() == KafkaError._PARTITION_EOF:
                return None
        return None
    finally:
        consumer.unassign()


def _check_ranges(check: PartitionCheck, held: _Stored, losses: list[lake.Loss]) -> None:
    """The data files and the recorded losses together account for the partition's offsets up to
    where the snapshot summary says the lake holds it, each offset once."""
    if held.doubled:
        check.problems.append(f"{held.doubled:,} offsets stored more than once (raw and quarantine together)")
    end = check.stored_to
    if held.last is not None and (end is None or held.last >= end):
        check.problems.append(
            f"the data files hold offset {held.last}, past what the snapshot summary says is stored ({end})"
        )
    for loss in losses:
        if held.first is not None and loss.start <= held.last and held.first < loss.end:
            inside = f"{max(loss.start, held.first)}-{min(loss.end, held.last + 1)}"
            check.notes.append(f"a recorded loss ({loss.start}-{loss.end}) overlaps stored offsets near {inside}")
    if end is None or check.stored_from is None:
        return
    if check.broker_start is not None and check.stored_from > check.broker_start:
        check.problems.append(f"hole: offsets {check.broker_start}-{check.stored_from} were never stored")
    if check.broker_end is not None and end > check.broker_end:
        check.problems.append(f"the lake holds offsets up to {end}, past the broker's end {check.broker_end}")
    accounted = held.offsets + sum(loss.offsets for loss in losses)
    check.gaps = max(0, (end - check.stored_from) - accounted)


def _check_losses(check: PartitionCheck, losses: list[lake.Loss]) -> None:
    for loss in losses:
        found = datetime.fromtimestamp(loss.found_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        what = f"offsets {loss.start}-{loss.end} ({loss.offsets:,}) {loss.reason}, found {found}"
        if loss.accepted_at is None:
            check.problems.append(f"lost: {what}; `lakehouse verify --accept-loss {check.topic}` once dealt with")
        else:
            check.notes.append(f"accepted loss: {what}")


def _explain_gaps(topic: str, checks: list[PartitionCheck]) -> None:
    """Say why stored ranges hold offsets without a record, as far as the broker's settings tell."""
    if not any(c.gaps for c in checks):
        return
    policy = kafka.topic_config(topic, timeout_s=5).get("cleanup.policy", "")
    why = "compacted away (cleanup.policy=compact)" if "compact" in policy else "transaction markers or aborted records"
    for c in checks:
        if c.gaps:
            c.notes.append(f"{c.gaps:,} offsets in the stored ranges hold no record: {why}")


def verify(
    topics: list[str], s: Settings | None = None, broker_timeout_s: float = 5.0, ask_about_holes: bool = True
) -> Verification:
    s = s or current_settings()
    # Ask whether the broker answers once, not once per topic: a down broker costs one timeout.
    try:
        kafka.wait_until_ready(timeout_s=broker_timeout_s)
        consumer = kafka.consumer("lakehouse-verify")
    except BrokerUnreachable:
        consumer = None
    try:
        checks = []
        for topic in topics:
            found = verify_topic(topic, s, consumer, ask_about_holes)
            if consumer is not None:
                _explain_gaps(topic, found)
            checks += found
        return Verification(checks, broker_reachable=consumer is not None)
    finally:
        if consumer is not None:
            consumer.close()


def accept_losses(topic: str, s: Settings | None = None) -> list[lake.Loss]:
    """An operator acknowledges the topic's recorded losses; returns those newly accepted."""
    s = s or current_settings()
    tables = lake.TopicTables.load(s, topic)
    if tables is None:
        return []
    for _ in range(10):  # a drain may commit in between: accept against its newer snapshot
        state = tables.refresh().state()
        pending = [loss for loss in state.losses if loss.accepted_at is None]
        if not pending:
            return []
        now = time.time()
        accepted = tuple(loss if loss.accepted_at else replace(loss, accepted_at=now) for loss in state.losses)
        try:
            tables.commit_state(state, replace(state, losses=accepted))
            return pending
        except lake.Fenced:
            continue
    raise lake.Fenced(f"{topic}: the raw table kept changing; try again")
