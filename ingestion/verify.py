"""Reconcile the lake with the broker, partition by partition, and say whether the lake is exact.

Two independent views are compared: the ledger's committed ranges, and the Parquet files
themselves (read with DuckDB). The lake is exact when the committed ranges tile the offsets
with no hole and no overlap, every committed file exists, and the files hold each offset of
a partition at most once, as many rows as the ledger says.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import duckdb
from confluent_kafka import Consumer, KafkaException

from ingestion import kafka, lake, set_aside
from ingestion.config import Settings
from ingestion.config import settings as current_settings
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


def _file_counts(s: Settings, topic: str) -> dict[tuple[str, int], tuple[int, int]]:
    """Per (layer, partition): rows in the published files and distinct offsets among them."""
    counts: dict[tuple[str, int], tuple[int, int]] = {}
    with duckdb.connect() as con:
        for layer, root in (("raw", s.raw_dir), ("quarantine", s.quarantine_dir)):
            folder = lake.topic_dir(root, topic)
            if not any(folder.rglob("*.parquet")):
                continue
            rows = con.execute(
                "select _partition, count(*), count(distinct _offset) "
                "from read_parquet(?, union_by_name = true, hive_partitioning = false) group by _partition",
                [str(folder / "**" / "*.parquet")],
            ).fetchall()
            for partition, total, distinct in rows:
                counts[(layer, int(partition))] = (int(total), int(distinct))
    return counts


def verify_topic(topic: str, s: Settings, consumer: Consumer | None) -> list[PartitionCheck]:
    """Check one topic; without a consumer (no broker reachable) the lake is checked alone."""
    marks = _broker_marks(topic, consumer)
    with lake.Ledger(s.ledger_path) as ledger:
        batches = ledger.batches(topic)
    files = _file_counts(s, topic)
    aside = set_aside.counts(s, topic)
    partitions = sorted({b.partition for b in batches} | set(marks or {}))
    checks = []
    for partition in partitions:
        mine = [b for b in batches if b.partition == partition]
        low, high = (marks or {}).get(partition, (None, None))
        check = PartitionCheck(
            topic,
            partition,
            broker_start=low,
            broker_end=high,
            stored_from=mine[0].start if mine else None,
            stored_to=mine[-1].end if mine else None,
            batches=len(mine),
            rows=sum(b.rows for b in mine),
            tombstones=sum(b.tombstones for b in mine),
            quarantined=sum(b.quarantined for b in mine),
            set_aside=aside.get(partition, 0),
            files=len({name for b in mine for name in b.files}),  # a compacted file serves many batches
        )
        if marks is None:
            check.notes.append("broker not reachable: lake checked alone")
        _check_ranges(check, mine)
        _check_files(check, mine, files, s)
        checks.append(check)
    return checks


def _check_ranges(check: PartitionCheck, batches: list[lake.Batch]) -> None:
    for before, after in itertools.pairwise(batches):
        if after.start > before.end:
            check.problems.append(f"hole: offsets {before.end}-{after.start} were never stored")
        elif after.start < before.end:
            check.problems.append(f"overlap: offsets {after.start}-{before.end} stored twice")
    if not batches:
        return
    if check.broker_start is not None and batches[0].start > check.broker_start:
        check.problems.append(f"hole: offsets {check.broker_start}-{batches[0].start} were never stored")
    if check.broker_end is not None and batches[-1].end > check.broker_end:
        check.problems.append(
            f"the lake holds offsets up to {batches[-1].end}, past the broker's end {check.broker_end}"
        )
    span = sum(b.end - b.start for b in batches)
    check.gaps = max(0, span - (check.rows + check.tombstones + check.quarantined))


def _check_files(
    check: PartitionCheck, batches: list[lake.Batch], counts: dict[tuple[str, int], tuple[int, int]], s: Settings
) -> None:
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
        total, distinct = counts.get((layer, check.partition), (0, 0))
        if total != distinct:
            check.problems.append(f"{layer}: {total - distinct} offsets stored more than once")
        if not unpublished and total != expected:
            check.problems.append(f"{layer}: files hold {total} rows, the ledger {expected}")


def verify(topics: list[str], s: Settings | None = None) -> list[PartitionCheck]:
    s = s or current_settings()
    # Ask whether the broker answers once, not once per topic: a down broker costs one timeout.
    try:
        kafka.wait_until_ready(timeout_s=5)
        consumer = kafka.consumer("lakehouse-verify")
    except BrokerUnreachable:
        consumer = None
    try:
        return [check for topic in topics for check in verify_topic(topic, s, consumer)]
    finally:
        if consumer is not None:
            consumer.close()
