"""The `lakehouse` command line: thin wrappers over `ingestion` and the Dagster definitions."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import click

from ingestion import local_kafka
from ingestion import streams as registry
from ingestion.config import settings
from ingestion.streams import contracts_for

log = logging.getLogger("lakehouse")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # librdkafka retries transient broker errors itself; its warnings are noise at a terminal.
    logging.getLogger("librdkafka").setLevel(logging.DEBUG if verbose else logging.ERROR)
    # A command says what matters: Great Expectations' registrations (some 200 lines a build) and
    # the libraries' own warnings (pandas on GX's regular expressions) only with --verbose.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose else logging.ERROR)
    logging.getLogger("great_expectations").setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        # The libraries a build runs in this process (Dagster, its SQLite migrations, GX) log their
        # progress at INFO, some setting their own loggers' levels: only this product's is shown.
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ours_or_trouble)


_OURS = ("lakehouse", "ingestion", "orchestration", "expectations", "dbt", "__main__")


def _ours_or_trouble(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name.split(".", 1)[0] in _OURS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logs, and full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Kafka topics to exactly-once Parquet, gated by Great Expectations, modelled by dbt on DuckDB."""
    ctx.obj = {"verbose": verbose}
    _setup_logging(verbose)


# --- kafka -----------------------------------------------------------------------------------


@cli.group()
def kafka() -> None:
    """The local single-node Kafka broker (unused when KAFKA_BOOTSTRAP_SERVERS is set)."""


@kafka.command("start")
@click.option(
    "--port", type=int, default=None, help="Broker port on 127.0.0.1 (default 9092, or LAKEHOUSE_KAFKA_PORT)."
)
def kafka_start(port: int | None) -> None:
    """Resolve the Apache Kafka jars through Maven, start a KRaft broker and wait until it answers."""
    s = settings()
    if s.kafka_bootstrap:
        click.echo(f"KAFKA_BOOTSTRAP_SERVERS is set: using {s.kafka_bootstrap}, starting nothing")
        return
    status = local_kafka.start(port=port)
    click.echo(status.describe())
    click.echo(status.bootstrap if port is None else f"127.0.0.1:{port}")


@kafka.command("stop")
def kafka_stop() -> None:
    """Stop the broker started by `lakehouse kafka start`."""
    click.echo("Kafka stopped" if local_kafka.stop() else "Kafka was not running")


@kafka.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs (exit status 1 if not)."""
    s = settings()
    if s.kafka_bootstrap:
        click.echo(f"using the external cluster {s.kafka_bootstrap}")
        return
    status = local_kafka.status()
    click.echo(status.describe())
    sys.exit(0 if status.running else 1)


# --- produce -----------------------------------------------------------------------------------


def _replay(stream: str, path: Path, topic: str | None, rate: float | None) -> None:
    """Replay a JSON-lines or CSV file into one topic of a stream (see `ingestion.produce.file_messages`)."""
    from ingestion.produce import count_rows, file_messages
    from ingestion.produce import produce as send

    contracts = registry.STREAMS[stream]
    if topic is None and len(contracts) > 1:
        raise click.UsageError(f"{stream} has several topics; give --topic ({', '.join(c.topic for c in contracts)})")
    chosen = [c for c in contracts if topic in (None, c.topic)]
    if not chosen:
        raise click.UsageError(f"{topic!r} is no topic of {stream} ({', '.join(c.topic for c in contracts)})")
    next(iter(file_messages(chosen[0], path)), None)  # an unreadable file fails here, before anything is sent
    lines = count_rows(path) + (path.suffix.lower() != ".csv")  # a JSON-lines file has no header
    sent = send(chosen[0], file_messages(chosen[0], path), rate=rate, total=lines)
    click.echo(f"sent {sent} messages to {chosen[0].topic}")


_FILE_OPTIONS = (
    click.option(
        "--file",
        "path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Replay a JSON-lines file (each line one record, sent as it is) or a CSV file (.csv).",
    ),
    click.option("--topic", default=None, help="With --file, for a stream of several topics: which one."),
)


def replays_files(stream: str):
    """Give a stream's own command `--file`/`--topic`: the generic replay, instead of its generator."""

    def decorate(command):
        @functools.wraps(command)
        def run(*args, path: Path | None = None, topic: str | None = None, **kwargs):
            if path is not None:
                return _replay(stream, path, topic, rate=None)
            return command(*args, **kwargs)

        for option in reversed(_FILE_OPTIONS):
            run = option(run)
        return run

    return decorate


class _Produce(click.Group):
    """The built-in streams' own commands, and for any other declared stream the generic replay."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(registry.STREAMS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None or name not in registry.STREAMS:
            return command

        @click.command(name, help=f"Replay a file into the declared stream {name}.")
        @click.option("--rate", type=float, default=None, help="At most this many messages a second.")
        def replay(path: Path | None, topic: str | None, rate: float | None) -> None:
            if path is None:
                raise click.UsageError(f"{name} has no generator of its own: give --file PATH")
            _replay(name, path, topic, rate)

        for option in _FILE_OPTIONS:  # on a command already made, each option goes last
            replay = option(replay)
        return replay


@cli.group(cls=_Produce)
def produce() -> None:
    """Send a stream's records to Kafka: a built-in stream's generator, or any stream's file (--file)."""


@produce.command("prices")
@replays_files("prices")
@click.option("--count", type=int, default=5000, show_default=True, help="How many ticks to send.")
@click.option("--forever", is_flag=True, help="Keep sending until Ctrl-C (ignores --count).")
@click.option("--rate", type=float, default=None, help="At most this many messages a second.")
@click.option("--seed", type=int, default=None, help="Random seed, for a repeatable stream.")
def produce_prices(count: int, forever: bool, rate: float | None, seed: int | None) -> None:
    """Stock price ticks of 5 symbols, key = symbol."""
    from ingestion.produce import produce as send
    from ingestion.streams import prices

    sent = send(prices.CONTRACT, prices.ticks(seed=seed), count=None if forever else count, rate=rate)
    click.echo(f"sent {sent} messages to {prices.CONTRACT.topic}")


@produce.command("cms")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A real CMS file.")
@click.option("--synthetic", is_flag=True, help="Generate realistic records instead of replaying a file.")
@click.option("--count", type=int, default=None, help="With --synthetic: how many (default: forever).")
@click.option("--limit", type=int, default=None, help="With --file: replay at most this many rows.")
@click.option("--rate", type=float, default=None, help="At most this many messages a second.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --synthetic: the random seed.")
@click.option("--layout", type=click.Choice(["legacy", "new"]), default="legacy", show_default=True)
@click.option(
    "--year",
    type=click.IntRange(2000, 2100),
    default=None,
    help="The data year the rows describe (default: from the file name, as in CY2017 or _D23_; "
    "with --synthetic, 2023). Sent as a Kafka header; re-sent rows of the same year replace each other.",
)
def produce_cms(
    path: Path | None,
    synthetic: bool,
    count: int | None,
    limit: int | None,
    rate: float | None,
    seed: int,
    layout: str,
    year: int | None,
) -> None:
    """CMS provider-services rows, key = NPI: a real file in any spelling, or a synthetic stream."""
    from ingestion.produce import count_rows
    from ingestion.produce import produce as send
    from ingestion.streams import cms

    if synthetic == (path is not None):
        raise click.UsageError("give either --file PATH or --synthetic")
    if path is not None:
        messages = cms.replay(path)
        next(cms.replay(path), None)  # a file in no known spelling fails here, before anything is sent
        total = min(count_rows(path), limit) if limit else count_rows(path)
        year = year or cms.data_year_from_name(path)
        if year is None:
            log.warning(
                "%s: no data year in the file name; give --year so re-sent rows of one year replace each other",
                path.name,
            )
        headers = {cms.DATA_YEAR_HEADER: str(year)} if year else None
        sent = send(cms.CONTRACT, messages, count=limit, rate=rate, total=total, headers=headers)
    else:
        headers = {cms.DATA_YEAR_HEADER: str(year or cms.SYNTHETIC_YEAR)}
        sent = send(cms.CONTRACT, cms.synthetic(seed, layout), count=count, rate=rate, headers=headers)
    click.echo(f"sent {sent} messages to {cms.CONTRACT.topic}")


@produce.command("office")
@replays_files("office")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between claim+diagnosis pairs.")
@click.option("--duplicates", type=click.FloatRange(0, 1), default=0.05, show_default=True, help="Share re-sent.")
@click.option("--count", type=int, default=None, help="How many claim+diagnosis pairs (default: forever).")
@click.option("--seed", type=int, default=0, show_default=True, help="The random seed.")
@click.option("--first-id", type=int, default=0, show_default=True, help="The id of the first claim and diagnosis.")
def produce_office(interval: float, duplicates: float, count: int | None, seed: int, first_id: int) -> None:
    """The doctor's office: its 1,000 patients, then one claim and one diagnosis every interval."""
    from ingestion.produce import produce as send
    from ingestion.produce import produce_to
    from ingestion.streams import office

    patients = send(office.PATIENTS_CONTRACT, office.patients(seed), progress=False)
    click.echo(f"sent {patients} patients to {office.PATIENTS_CONTRACT.topic}")
    rate = 2 * (1 + duplicates) / interval if interval > 0 else None
    sent = produce_to([office.CLAIMS, office.DIAGNOSES], office.activity(count, duplicates, seed, first_id), rate=rate)
    click.echo(f"sent {sent} messages to {office.CLAIMS.topic} and {office.DIAGNOSES.topic}")


@produce.command("carepay")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A real export.")
@click.option("--table", type=click.Choice(["invoices", "invoice_items", "claims", "treatments"]), default=None)
@click.option("--synthetic", is_flag=True, help="Generate the four tables, consistent and with the real defects.")
@click.option("--treatments", type=int, default=1000, show_default=True, help="With --synthetic: how many treatments.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --synthetic: the random seed.")
@click.option("--rate", type=float, default=None, help="At most this many messages a second.")
def produce_carepay(
    path: Path | None, table: str | None, synthetic: bool, treatments: int, seed: int, rate: float | None
) -> None:
    """CarePay rows as exported from MySQL, key = ID: a real export of one table, or all four synthesized."""
    from ingestion.produce import count_rows, produce_to
    from ingestion.produce import produce as send
    from ingestion.streams import carepay

    if synthetic == (path is not None):
        raise click.UsageError("give either --file PATH --table TABLE or --synthetic")
    if path is not None:
        if table is None:
            raise click.UsageError("--file needs --table (invoices, invoice_items, claims or treatments)")
        contract = carepay.CONTRACTS_BY_TABLE[table]
        next(carepay.replay(path, table), None)  # a file that is no such export fails here, before anything is sent
        sent = send(contract, carepay.replay(path, table), rate=rate, total=count_rows(path))
        click.echo(f"sent {sent} messages to {contract.topic}")
    else:
        sent = produce_to(list(carepay.CONTRACTS), carepay.synthetic(treatments, seed), rate=rate)
        click.echo(f"sent {sent} messages to {', '.join(c.topic for c in carepay.CONTRACTS)}")


@produce.command("stedi")
@replays_files("stedi")
@click.option("--customers", type=int, default=30, show_default=True, help="Customers the Redis feed adds.")
@click.option("--rate", type=float, default=5.0, show_default=True, help="At most this many messages a second.")
@click.option("--count", type=int, default=None, help="How many messages in all (default: forever).")
@click.option("--seed", type=int, default=0, show_default=True, help="The random seed.")
def produce_stedi(customers: int, rate: float, count: int | None, seed: int) -> None:
    """STEDI: customers as the Redis connector's payloads on redis-server, then risk events on stedi-events."""
    from ingestion.produce import produce_to
    from ingestion.streams import stedi

    sent = produce_to(list(stedi.CONTRACTS), stedi.feed(customers, seed), count=count, rate=rate or None)
    click.echo(f"sent {sent} messages to {stedi.REDIS.topic} and {stedi.EVENTS.topic}")


# --- drain, build --------------------------------------------------------------------------------


@cli.command()
@click.argument("stream")
@click.option(
    "--new-generation",
    is_flag=True,
    help="For a topic deleted and created again: store the new topic from its first offset, beside what the "
    "lake holds of the old one.",
)
def drain(stream: str, new_generation: bool) -> None:
    """Store everything new on a stream's topics in the lake, exactly once (one micro-batch)."""
    from ingestion.drain import DrainStalled, TopicChanged
    from ingestion.drain import drain as run_drain

    failed = []
    for contract in contracts_for(stream):
        try:
            report = run_drain(contract, new_generation=new_generation)
        except (TopicChanged, DrainStalled) as exc:
            click.echo(f"error: {exc}", err=True)
            failed.append(contract.topic)
            continue
        if not report.partitions:
            click.echo(f"{contract.topic}: nothing new")
        for p in report.partitions:
            click.echo(
                f"{contract.topic}[{p.partition}]: offsets {p.start}-{p.end}, {p.rows} rows, "
                f"{p.quarantined} quarantined, {p.tombstones} tombstones, {len(p.files)} files, {p.seconds:.2f} s"
            )
    sys.exit(1 if failed else 0)


@cli.command()
@click.argument("topics", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--accept-loss",
    "accept",
    metavar="TOPIC",
    multiple=True,
    help="Acknowledge the offsets the broker removed from TOPIC before they were stored (after dealing with "
    "them: re-sent from the source, or known to be expendable); verify then names them as accepted.",
)
def verify(topics: tuple[str, ...], as_json: bool, accept: tuple[str, ...]) -> None:
    """Reconcile the lake with the broker per partition; exit 1 on a hole, an overlap, a missing file, an
    unaccepted loss, or a broker that cannot be asked."""
    from ingestion.verify import accept_losses
    from ingestion.verify import verify as run_verify

    for name in accept:
        for contract in contracts_for(name):
            accepted = accept_losses(contract.topic)
            offsets = sum(loss.offsets for loss in accepted)
            click.echo(f"{contract.topic}: accepted {len(accepted)} recorded losses ({offsets:,} offsets)", err=as_json)
    names = [c.topic for name in topics or accept for c in contracts_for(name)] or list(registry.CONTRACTS)
    result = run_verify(names)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in result.checks], indent=2))
    else:
        _print_checks(result.checks)
    if not result.broker_reachable:
        click.echo(
            f"the broker at {settings().bootstrap_servers} does not answer: the lake was checked alone "
            f"({'exact' if all(c.ok for c in result.checks) else 'with problems'}); run verify again once it is up",
            err=True,
        )
    sys.exit(0 if result.ok else 1)


def _print_checks(checks: list) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = ["topic", "part", "broker", "stored", "rows", "tombstones", "quarantined", "set aside", "lost", "gaps"]
    table = Table(*columns, "lag", "files", "")
    for c in checks:
        table.add_row(
            c.topic if c.current else f"{c.topic} (gen {c.generation})", str(c.partition),
            "?" if c.broker_end is None else f"{c.broker_start}-{c.broker_end}",
            "-" if c.stored_from is None else f"{c.stored_from}-{c.stored_to}",
            str(c.rows), str(c.tombstones), str(c.quarantined), str(c.set_aside), str(c.lost), str(c.gaps),
            "?" if c.lag is None else str(c.lag), str(c.files), "ok" if c.ok else "[red]FAIL[/red]",
        )  # fmt: skip
    Console(width=max(shutil.get_terminal_size().columns, 120)).print(table)
    for c in checks:
        for line in c.problems + c.notes:
            click.echo(f"{c.topic}[{c.partition}]: {line}")
    if not checks:
        click.echo("nothing stored and no topics on the broker yet")


@cli.command()
@click.argument("topic")
@click.option("--target-mb", type=int, default=256, show_default=True, help="Size of the merged files.")
@click.option(
    "--before",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Compact date partitions before this date (default: today, UTC).",
)
def compact(topic: str, target_mb: int, before) -> None:
    """Merge the small files of a topic's closed date partitions into large ones, exactly once; expire old
    snapshots (LAKEHOUSE_SNAPSHOT_KEEP_DAYS) and delete the files no snapshot references."""
    from ingestion.compact import compact as run_compact

    for contract in contracts_for(topic):
        report = run_compact(contract.topic, target_mb=target_mb, before=before.date() if before else None)
        for name, replaced in report.merged:
            click.echo(f"{contract.topic}: {replaced} files -> {name}")
        for reason in report.skipped:
            click.echo(f"{contract.topic}: left alone {reason}")
        if not report.merged:
            click.echo(f"{contract.topic}: nothing to compact")
        if report.expired or report.orphans:
            click.echo(
                f"{contract.topic}: {report.expired} snapshots expired, {report.orphans} unreferenced files deleted"
            )


@cli.command()
def migrate() -> None:
    """Move a lake written before the Iceberg tables (raw/_ledger.sqlite) into raw.<table> and quarantine.<table>."""
    from ingestion.contracts import table_name
    from ingestion.migrate import migrate as run_migrate
    from ingestion.migrate import old_layout

    s = settings()
    if not old_layout(s):
        click.echo(f"{s.home}: nothing to migrate (no ledger of the previous layout)")
        return
    report = run_migrate(s)
    for topic, files in report.topics.items():
        click.echo(f"{topic}: {files} files rewritten into raw.{table_name(topic)}")
    for topic in report.already:
        click.echo(f"{topic}: its tables already hold data; left alone")
    click.echo(f"the old files stay in {s.raw_dir} and {s.quarantine_dir}: delete them once the marts look right")


# --- quarantine ----------------------------------------------------------------------------------


@cli.group()
def quarantine() -> None:
    """Records that broke their contract: count them, look at them, replay them once fixed."""


def _quarantine_topics(name: str | None) -> list[str]:
    return [c.topic for c in contracts_for(name)] if name else list(registry.CONTRACTS)


@quarantine.command("list")
@click.argument("topic", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def quarantine_list(topic: str | None, as_json: bool) -> None:
    """Quarantined records per topic, counted by reason and by day (of their Kafka timestamp)."""
    from ingestion import quarantine as q

    s = settings()
    summaries = [q.summarize(s, name) for name in _quarantine_topics(topic)]
    if topic is None:
        summaries = [summary for summary in summaries if summary.total]
    if as_json:
        click.echo(json.dumps([summary.as_dict() for summary in summaries], indent=2))
        return
    if not summaries:
        click.echo("nothing quarantined")
    for summary in summaries:
        click.echo(f"{summary.topic}: {summary.total} quarantined")
        for kind, count in summary.by_kind.items():
            click.echo(f"  {count:>8}  {kind}")
            for reason, n in summary.by_reason[kind].items():
                if reason != kind:
                    click.echo(f"  {n:>8}    {reason}")
        if summary.by_day:
            click.echo("  by day: " + ", ".join(f"{day} {count}" for day, count in summary.by_day.items()))


@quarantine.command("show")
@click.argument("topic")
@click.option("--reason", default=None, help="Only records of this kind of reason, or whose reason contains it.")
@click.option("--limit", type=int, default=20, show_default=True, help="At most this many records.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def quarantine_show(topic: str, reason: str | None, limit: int, as_json: bool) -> None:
    """Quarantined records with their coordinates, key, headers, raw value and reason."""
    from ingestion import quarantine as q

    s = settings()
    shown = [r for name in _quarantine_topics(topic) for r in q.records(s, name, reason=reason, limit=limit)][:limit]
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in shown], indent=2))
        return
    if not shown:
        click.echo(f"{topic}: no quarantined record" + (f" matches {reason!r}" if reason else ""))
    for r in shown:
        d = r.as_dict()
        click.echo(f"{r.topic}[{r.partition}] offset {r.offset}  {d['timestamp'] or 'no timestamp'}  key {d['key']!r}")
        click.echo(f"  reason: {r.reason}")
        if d["headers"]:
            click.echo("  headers: " + ", ".join(f"{h['key']}={h['value']}" for h in d["headers"]))
        click.echo(f"  value{'' if d['value_is_utf8'] else ' (not UTF-8, escaped)'}: {d['value']}")


@quarantine.command("replay")
@click.argument("topic")
@click.option("--reason", default=None, help="Only records of this kind of reason, or whose reason contains it.")
@click.option("--offsets", default=None, metavar="P:A-B", help="Only offsets A to B (exclusive) of partition P.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def quarantine_replay(topic: str, reason: str | None, offsets: str | None, as_json: bool) -> None:
    """Send quarantined records through the fixed contract and the suites again; store those that pass, once."""
    from ingestion import quarantine as q

    if reason is not None and offsets is not None:
        raise click.UsageError("give --reason or --offsets, not both")
    try:
        span = q.Offsets.parse(offsets) if offsets is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--offsets") from None
    reports = [q.replay(contract, reason=reason, offsets=span) for contract in contracts_for(topic)]
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
        return
    for r in reports:
        still = ", ".join(f"{kind} {n}" for kind, n in r.still_by_kind.items())
        click.echo(
            f"{r.topic}: replayed {r.replayed}, still quarantined {r.still_quarantined}"
            + (f" ({still})" if still else "")
        )
        if r.released or r.still_set_aside:
            click.echo(f"{r.topic}: released {r.released} set-aside rows, still set aside {r.still_set_aside}")
        for reason_text, n in r.still.most_common():
            click.echo(f"  {n:>8}  {reason_text}")
        if r.replayed or r.released:
            click.echo(f"{r.topic}: the next build rebuilds its incremental models from scratch, to take those rows in")


@cli.command()
@click.argument("stream", required=False)
def build(stream: str | None) -> None:
    """Run a stream's pipeline job once, all but its drain: gates, dbt models, publication, export
    (all streams when none is named)."""
    from orchestration.commands.build import build_stream

    failed = False
    selected = [contracts_for(stream)] if stream else list(registry.STREAMS.values())
    for contracts in selected:
        name = contracts[0].stream
        result = build_stream(name, contracts)
        if result.nothing_stored:
            click.echo(f"{name}: nothing stored yet in {', '.join(result.nothing_stored)}; drain it first")
            continue
        for gate in result.gates:
            _print_gate(gate)
        if not result.gates_passed:
            click.echo(f"{name}: dbt models not built, a quality gate blocked")
        for model, rows in result.row_counts.items():
            click.echo(f"{model}: {rows} rows")
        if result.published is not None:
            click.echo(f"{name}: published {result.published} new or changed rows")
        for failure in result.failures:
            click.echo(f"{name}: step {failure}", err=True)
        if result.dbt_ran:
            outcome = "built" if result.dbt_succeeded else "dbt build failed (its errors are above)"
            said = f", dbt {result.dbt_summary}" if result.dbt_summary else ""
            click.echo(f"{name}: {outcome}{said}, in {result.seconds:.1f} s")
        failed |= not result.succeeded
    sys.exit(1 if failed else 0)


def _print_gate(gate) -> None:
    """passed / N rows set aside, with their reasons / BLOCKED, with why and what to do."""
    click.echo(f"gate {gate.name}: {gate.summary}")
    if gate.passed:
        for line in gate.detail.splitlines():
            click.echo(f"  {line.removeprefix('- ')}")
        return
    click.echo(gate.detail)
    if gate.what_to_do:
        click.echo(f"what to do: {gate.what_to_do}")


@cli.command()
@click.option("-c", "--command", "sql", default=None, help="Run one SQL statement, print its result and exit.")
def shell(sql: str | None) -> None:
    """The DuckDB SQL shell on the latest good build: every model by name, the raw topics as raw_<table>."""
    from orchestration.snapshots import latest_snapshot, raw_views_sql

    s = settings()
    snapshot = latest_snapshot(s)
    if snapshot is None:
        raise click.ClickException("nothing is built yet: run `lakehouse build` (or `make demo`) first")
    duckdb_cli = Path(sys.executable).with_name("duckdb")
    init = snapshot.parent / "shell-init.sql"
    init.write_text(raw_views_sql(s, registry.CONTRACTS.values()))
    args = [str(duckdb_cli), "-readonly", "-init", str(init), str(snapshot)]
    if sql is not None:
        args += ["-c", sql]
    else:
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot.stat().st_mtime))
        click.echo(f"DuckDB on the build of {built} (read-only; builds go on beside it). .quit leaves.")
    os.execv(args[0], args)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Per topic: broker offsets, what the lake holds, lag, last drain, gates; per mart: rows and freshness."""
    from rich.console import Console
    from rich.table import Table

    from expectations.gate import what_to_do
    from orchestration.commands.status import age, as_dict, mart_status, rejected_counts, topic_status

    s = settings()
    topics = topic_status(s)
    marts = mart_status(s, topics)
    rejected = rejected_counts(s)
    if as_json:
        click.echo(json.dumps(as_dict(topics, marts, rejected), indent=2))
        return
    # One table, stream by stream: its topics (what the broker and the lake hold, the lag, the last
    # drain, the gates), then its marts (rows, last good build, freshness).
    console = Console(width=shutil.get_terminal_size().columns)
    table = Table("stream", "topic / mart", "broker", "lake", "lag", "updated", "state")
    for stream in dict.fromkeys(t.stream for t in topics):
        label = stream
        for t in (t for t in topics if t.stream == stream):
            results = [g.split(": ", 1)[1] for g in t.gates]
            failed = [r for r in results if r.startswith("BLOCKED")]
            if t.problems:
                state = "[red]verify fails[/red]"
            elif failed:
                state = "[red]" + "; ".join(failed) + "[/red]"
            elif results and all(r == "not run" for r in results):
                state = "no gate run"
            else:
                state = "ok"
            held = [f"{t.quarantined:,} quar."] if t.quarantined else []
            held += [f"{t.set_aside:,} set aside"] if t.set_aside else []
            lake = f"{t.stored:,}" + (f" ({', '.join(held)})" if held else "")
            broker = ("down" if not t.broker_reachable else "?") if t.broker_end is None else f"{t.broker_end:,}"
            lag = "?" if t.lag is None else f"{t.lag:,}"
            table.add_row(label, t.topic, broker, lake, lag, age(t.last_drain), state)
            label = ""
        for m in (m for m in marts if m.stream == stream):
            state = "[yellow]stale[/yellow]" if m.stale else ("not built" if m.built is None else "fresh")
            rows = "-" if m.rows is None else f"{m.rows:,} rows"
            table.add_row("", m.mart, "", rows, "", age(m.built), state)
        if rejected.get(stream):  # what staging left out, by reason (see <stream>_rejected_rows)
            reasons = "; ".join(f"{reason}: {n:,}" for reason, n in rejected[stream].items())
            table.add_row("", "left out by staging", "", f"{sum(rejected[stream].values()):,} rows", "", "", reasons)
        table.add_section()
    console.print(table)
    if topics and not topics[0].broker_reachable:
        console.print(f"[red]the broker at {s.bootstrap_servers} does not answer[/red] (see `lakehouse kafka status`)")
    for t in topics:
        for problem in t.problems:
            console.print(f"[red]{t.topic}: {problem}[/red] (see `lakehouse verify {t.topic}`)")
        for gate in (g for g in t.gates if ": BLOCKED" in g):
            suite = gate.split(": ", 1)[0]
            console.print(f"[red]{t.topic}: gate {gate}[/red]; {what_to_do(t.stream, suite)}", highlight=False)


@cli.command()
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--no-serve", is_flag=True, help="Only generate the site (under LAKEHOUSE_HOME/docs/site).")
def docs(port: int, host: str, no_serve: bool) -> None:
    """Generate the dbt docs site from the latest good build (no warehouse lock taken) and serve it."""
    from orchestration.commands import docs as docs_site
    from orchestration.commands.dagster_home import interrupt_on_sigterm

    try:
        site = docs_site.generate(settings())
    except docs_site.NothingBuilt as exc:
        raise click.ClickException(str(exc)) from None
    if no_serve:
        click.echo(f"docs site in {site}")
        return
    interrupt_on_sigterm()
    click.echo(f"dbt docs at http://{host}:{port} (Ctrl-C stops)")
    try:
        docs_site.serve(site, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port} ({exc.strerror}); give another --port") from None
    except KeyboardInterrupt:
        click.echo("stopped")


# --- ui, demo ------------------------------------------------------------------------------------


@cli.command()
@click.option("--port", type=int, default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--only",
    type=click.Choice(["webserver", "daemon", "code-server"]),
    default=None,
    help="Run just the webserver, the daemon or the code location's gRPC server (one per container, "
    "as docker-compose does).",
)
@click.option(
    "--code-server",
    default=None,
    metavar="HOST:PORT",
    help="With --only webserver|daemon: load the code from this gRPC code server.",
)
def ui(port: int, host: str, only: str | None, code_server: str | None) -> None:
    """Start the Dagster web UI and daemon (sensors, automation) until Ctrl-C or SIGTERM."""
    from orchestration.commands.dagster_home import interrupt_on_sigterm, start_dev, stop_dev

    interrupt_on_sigterm()
    proc = start_dev(settings(), host=host, port=port, only=only, code_server=code_server)
    what = {
        "daemon": "Dagster daemon running",
        "code-server": f"Dagster code server at {host}:{port}",
    }.get(only or "", f"Dagster UI at http://{host}:{port}")
    click.echo(f"{what} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    try:
        proc.wait()
    except KeyboardInterrupt:
        click.echo("stopping Dagster...")
    finally:
        stop_dev(proc)


@cli.command()
@click.option("--once", is_flag=True, help="Exit 0 as soon as the marts are built (for tests and CI).")
@click.option("--count", type=int, default=5000, show_default=True, help="Prices to send.")
@click.option("--cms-count", type=int, default=20_000, show_default=True, help="Synthetic CMS rows to send.")
@click.option("--port", type=int, default=3000, show_default=True, help="Dagster UI port.")
def demo(once: bool, count: int, cms_count: int, port: int) -> None:
    """Start Kafka, send a sample of every stream, run Dagster until every mart is built, print them."""
    from orchestration.commands import demo as demo_flow

    demo_flow.run(once=once, count=count, cms_count=cms_count, port=port)


def main() -> None:
    """Entry point: known problems become one clear line, not a traceback (unless --verbose)."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        if "-v" in sys.argv or "--verbose" in sys.argv:
            raise
        click.echo(f"error: {exc}", err=True)
        click.echo("(run with --verbose for details)", err=True)
        sys.exit(1)
