"""`lakehouse status`: is the data fresh and complete? Per topic and per mart, at a glance."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from expectations.gate import last_outcome
from ingestion import duck, lake
from ingestion.config import Settings
from ingestion.streams import CONTRACTS
from ingestion.verify import verify
from orchestration.snapshots import built_at, latest_snapshot


@dataclass
class TopicStatus:
    stream: str
    topic: str
    broker_end: int | None  # offsets the broker holds (end minus start, summed over partitions); None: unreachable
    stored: int  # offsets the lake accounts for: rows, tombstones and quarantined records
    quarantined: int
    lag: int | None
    last_drain: float | None  # epoch seconds
    # "suite: passed" / "suite: passed, 3 of 120 rows set aside" / "suite: BLOCKED: why" / "suite: not run"
    gates: list[str]
    problems: list[str]
    broker_reachable: bool = True
    set_aside: int = 0  # raw rows a gate set aside (among `stored`; staging does not read them)

    @property
    def failing(self) -> bool:
        return any(": BLOCKED" in g for g in self.gates) or bool(self.problems)


@dataclass
class MartStatus:
    stream: str
    mart: str
    rows: int | None
    built: float | None  # epoch seconds of its last good build
    stale: bool  # not rebuilt for more than three sensor intervals while its topics had new data


def topic_status(settings: Settings) -> list[TopicStatus]:
    # An operator asking for the status wants an answer now: a broker that does not answer within
    # a second and a half is shown as down, and the lake is described alone.
    # A status answers in seconds: the broker is asked about missing offsets by `lakehouse verify`.
    result = verify(list(CONTRACTS), settings, broker_timeout_s=1.5, ask_about_holes=False)
    checks = result.checks
    drained = {topic: lake.last_commit_at(settings, topic) for topic in CONTRACTS}
    statuses = []
    for topic, contract in CONTRACTS.items():
        mine = [c for c in checks if c.topic == topic]
        live = [c for c in mine if c.current]
        reachable = result.broker_reachable and all(c.broker_end is not None for c in live) and bool(live)
        gates = []
        for suite in contract.suites:
            outcome = last_outcome(settings, topic, suite)
            if outcome is None:
                gates.append(f"{suite}: not run")
            else:
                gates.append(f"{suite}: {gate_state(outcome)}")
        statuses.append(
            TopicStatus(
                stream=contract.stream,
                topic=topic,
                broker_end=sum(c.broker_end - (c.broker_start or 0) for c in live) if reachable else None,
                stored=sum(c.rows + c.tombstones + c.quarantined for c in mine),
                quarantined=sum(c.quarantined for c in mine),
                lag=sum(c.lag or 0 for c in live) if reachable else None,
                last_drain=drained[topic],
                gates=gates,
                problems=[p for c in mine for p in c.problems],
                broker_reachable=result.broker_reachable,
                set_aside=sum(c.set_aside for c in mine),
            )
        )
    return statuses


def gate_state(outcome: dict) -> str:
    """A gate's last run in a few words: passed, with the rows it set aside, or BLOCKED and why."""
    if not outcome["passed"]:
        return "BLOCKED: " + "; ".join(outcome.get("blocked") or [f"{outcome['failing_rows']} rows failing"])
    aside = outcome.get("set_aside", 0)
    return "passed" + (f", {aside} of {outcome['rows']} rows set aside" if aside else "")


def mart_status(settings: Settings, topics: list[TopicStatus]) -> list[MartStatus]:

    from orchestration.manifest import mart_names, model_streams

    streams = model_streams()
    built = built_at(settings)
    snapshot = latest_snapshot(settings)
    counts: dict[str, int] = {}
    if snapshot is not None:
        with duck.connect(str(snapshot), read_only=True) as con:
            present = {name for (name,) in con.execute("select table_name from duckdb_tables()").fetchall()}
            for name in mart_names():
                if name in present:
                    counts[name] = con.execute(f'select count(*) from "{name}"').fetchone()[0]
    newest_drain = {}
    for t in topics:
        if t.last_drain is not None:
            newest_drain[t.stream] = max(newest_drain.get(t.stream, 0.0), t.last_drain)
    window = 3 * settings.sensor_interval_s
    statuses = []
    for name in mart_names():
        stream = streams.get(name, "")
        last = built.get(name)
        drained = newest_drain.get(stream)
        stale = drained is not None and (last is None or drained - last > window)
        statuses.append(MartStatus(stream, name, counts.get(name), last, stale))
    return statuses


REJECTED_SUFFIX = "_rejected_rows"


def rejected_counts(settings: Settings) -> dict[str, dict[str, int]]:
    """What staging left out, from the latest good build: {stream: {reason: rows}}, read from each
    `<stream>_rejected_rows` mart it holds (a stream not built yet is absent)."""

    snapshot = latest_snapshot(settings)
    if snapshot is None:
        return {}
    counts: dict[str, dict[str, int]] = {}
    with duck.connect(str(snapshot), read_only=True) as con:
        present = {name for (name,) in con.execute("select table_name from duckdb_tables()").fetchall()}
        for name in sorted(n for n in present if n.endswith(REJECTED_SUFFIX)):
            rows = con.execute(
                f'select rejection_reason, count(*) from "{name}" group by all order by 2 desc, 1'
            ).fetchall()
            counts[name.removesuffix(REJECTED_SUFFIX)] = {str(reason): n for reason, n in rows}
    return counts


def as_dict(
    topics: list[TopicStatus], marts: list[MartStatus], rejected: dict[str, dict[str, int]] | None = None
) -> dict:
    return {
        "topics": [asdict(t) | {"failing": t.failing} for t in topics],
        "marts": [asdict(m) for m in marts],
        "rejected": rejected or {},
        "at": time.time(),
    }


def age(at: float | None, now: float | None = None) -> str:
    """'12 s ago', '5 min ago', '3 h ago', '2 d ago', or '-'."""
    if at is None:
        return "-"
    seconds = max(0.0, (now or time.time()) - at)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
