"""Reconcile the lake with the broker, partition by partition, and say whether the lake is exact.

Two independent views are compared: the ledger's committed ranges, and the Parquet files
themselves (read with DuckDB). The lake is exact when the committed ranges tile the offsets
with no hole and no overlap, every committed file exists, and the files hold each offset of
a partition at most once, as many rows as the ledger says.

Offsets the broker removed before the lake stored them (retention, DeleteRecords) take their
place in the tiling as a recorded loss: a problem, named, until an operator accepts it. A topic
deleted and created again is a new generation of it; the earlier generations' ranges are checked
against the ledger and the files alone.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import duckdb
from confluent_kafka import Consumer, KafkaException

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


FileCounts = dict[tuple[str, int, int], tuple[int, int]]


def _file_counts(s: Settings, topic: str) -> FileCounts:
    """Per (layer, generation, partition): rows in the published files and distinct offsets among them."""
    counts: FileCounts = {}
    with duckdb.connect() as con:
        for layer, root in (("raw", s.raw_dir), ("quarantine", s.quarantine_dir)):
            folder = lake.topic_dir(root, topic)
            if not any(folder.rglob("*.parquet")):
                continue
            files = f"read_parquet('{folder / '**' / '*.parquet'}', union_by_name = true, hive_partitioning = false)"
            columns = {row[0] for row in con.execute(f"describe select * from {files}").fetchall()}
            generation = f"coalesce({lake.GENERATION_COLUMN}, 0)" if lake.GENERATION_COLUMN in columns else "0"
            rows = con.execute(
                f"select {generation}, _partition, count(*), count(distinct _offset) from {files} group by all"
            ).fetchall()
            for gen, partition, total, distinct in rows:
                counts[(layer, int(gen), int(partition))] = (int(total), int(distinct))
    return counts


def verify_topic(topic: str, s: Settings, consumer: Consumer | None) -> list[PartitionCheck]:
    """Check one topic; without a consumer (no broker reachable) the lake is checked alone."""
    marks = _broker_marks(topic, consumer)
    with lake.Ledger(s.ledger_path) as ledger:
        batches = ledger.batches(topic)
        losses = ledger.losses(topic)
        current = ledger.generation(topic)
        progress = ledger.progress(topic)
    files = _file_counts(s, topic)
    live = current.number if current else 0
    changed = None
    if current is not None and marks is not None:
        broker_id = kafka.topic_id(topic) if current.topic_id else None
        changed = identity_problem(topic, current, broker_id, progress, marks)
    if changed:  # the broker's topic is not the one stored: compare the lake with itself alone
        marks = {}
    keys = {(b.generation, b.partition) for b in batches} | {(loss.generation, loss.partition) for loss in losses}
    keys |= {(live, p) for p in marks or {}}
    aside = set_aside.counts(s, topic)
    checks = []
    for generation, partition in sorted(keys):
        mine = [b for b in batches if (b.generation, b.partition) == (generation, partition)]
        lost = [loss for loss in losses if (loss.generation, loss.partition) == (generation, partition)]
        is_live = generation == live
        low, high = (marks or {}).get(partition, (None, None)) if is_live else (None, None)
        spans = sorted([(b.start, b.end) for b in mine] + [(loss.start, loss.end) for loss in lost])
        check = PartitionCheck(
            topic,
            partition,
            broker_start=low,
            broker_end=high,
            stored_from=spans[0][0] if spans else None,
            stored_to=spans[-1][1] if spans else None,
            batches=len(mine),
            rows=sum(b.rows for b in mine),
            tombstones=sum(b.tombstones for b in mine),
            quarantined=sum(b.quarantined for b in mine),
            set_aside=aside.get((generation, partition), 0),
            files=len({name for b in mine for name in b.files}),  # a compacted file serves many batches
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
        _check_ranges(check, mine, spans)
        _check_losses(check, lost)
        _check_files(check, mine, files, s)
        checks.append(check)
    return checks


def _check_ranges(check: PartitionCheck, batches: list[lake.Batch], spans: list[tuple[int, int]]) -> None:
    """The batches and the recorded losses together tile the partition's offsets."""
    for (_, before_end), (after_start, _) in itertools.pairwise(spans):
        if after_start > before_end:
            check.problems.append(f"hole: offsets {before_end}-{after_start} were never stored")
        elif after_start < before_end:
            check.problems.append(f"overlap: offsets {after_start}-{before_end} stored twice")
    if not spans:
        return
    if check.broker_start is not None and spans[0][0] > check.broker_start:
        check.problems.append(f"hole: offsets {check.broker_start}-{spans[0][0]} were never stored")
    if check.broker_end is not None and spans[-1][1] > check.broker_end:
        check.problems.append(f"the lake holds offsets up to {spans[-1][1]}, past the broker's end {check.broker_end}")
    span = sum(b.end - b.start for b in batches)
    check.gaps = max(0, span - (check.rows + check.tombstones + check.quarantined))


def _check_losses(check: PartitionCheck, losses: list[lake.Loss]) -> None:
    for loss in losses:
        found = datetime.fromtimestamp(loss.found_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        what = f"offsets {loss.start}-{loss.end} ({loss.offsets:,}) {loss.reason}, found {found}"
        if loss.accepted_at is None:
            check.problems.append(f"lost: {what}; `lakehouse verify --accept-loss {check.topic}` once dealt with")
        else:
            check.notes.append(f"accepted loss: {what}")


def _check_files(check: PartitionCheck, batches: list[lake.Batch], counts: FileCounts, s: Settings) -> None:
    unpublished = 0
    for batch in batches:
        for name in batch.files:
            path = s.home / name
            if path.exists():
                continue
            if path.with_name(path.name + lake.PENDING).exists():
                unpublished += 1
            else:
                check.problems.append(f"missing file {name}")
    if unpublished:
        check.notes.append(f"{unpublished} committed files not yet published (a crash; the next drain publishes them)")
    for layer, expected in (("raw", check.rows + check.tombstones), ("quarantine", check.quarantined)):
        total, distinct = counts.get((layer, check.generation, check.partition), (0, 0))
        if total != distinct:
            check.problems.append(f"{layer}: {total - distinct} offsets stored more than once")
        if not unpublished and total != expected:
            check.problems.append(f"{layer}: files hold {total} rows, the ledger {expected}")


def _explain_gaps(topic: str, checks: list[PartitionCheck]) -> None:
    """Say why stored ranges hold offsets without a record, as far as the broker's settings tell."""
    if not any(c.gaps for c in checks):
        return
    policy = kafka.topic_config(topic, timeout_s=5).get("cleanup.policy", "")
    why = "compacted away (cleanup.policy=compact)" if "compact" in policy else "transaction markers or aborted records"
    for c in checks:
        if c.gaps:
            c.notes.append(f"{c.gaps:,} offsets in the stored ranges hold no record: {why}")


def verify(topics: list[str], s: Settings | None = None, broker_timeout_s: float = 5.0) -> Verification:
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
            found = verify_topic(topic, s, consumer)
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
    with lake.Ledger(s.ledger_path) as ledger:
        pending = [loss for loss in ledger.losses(topic) if loss.accepted_at is None]
        ledger.accept_losses(topic)
    return pending
