"""`lakehouse demo`: the whole product on the embedded defaults, from an empty lake to printed marts."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pandas as pd

from ingestion import duck, local_kafka
from ingestion.config import settings
from ingestion.produce import produce, produce_to
from ingestion.streams import carepay, cms, office, prices, stedi
from orchestration.commands.dagster_home import interrupt_on_sigterm, start_dev, stop_dev

log = logging.getLogger(__name__)

DEMO_SENSOR_INTERVAL_S = "10"  # the demo should not make a new user wait two minutes for the first tick


class DemoFailed(RuntimeError):
    pass


def _latest_build(instance, key: tuple[str, ...], since: float) -> bool:
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey(list(key)))
    return event is not None and event.timestamp >= since


def _failed_runs(instance, since: float) -> list[str]:
    import dagster as dg

    runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=_utc(since)))
    return [run.run_id for run in runs]


def _utc(ts: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


def _query_when_free(path: Path, sql: str, timeout_s: float = 60.0) -> pd.DataFrame:
    """Read the warehouse; a build holding its write lock only makes us wait a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with duck.connect(str(path), read_only=True) as con:
                return con.execute(sql).df()
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def wait_for_marts(instance, marts: list[str], since: float, timeout_s: float, ui: object, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(_latest_build(instance, ("marts", name), since) for name in marts):
        if getattr(ui, "poll", lambda: None)() is not None:
            raise DemoFailed(f"Dagster stopped unexpectedly; see its log in {log}")
        if log.exists() and "Error loading repository location" in log.read_text(errors="replace"):
            raise DemoFailed(f"Dagster could not load the project's definitions; the error is in {log}")
        failed = _failed_runs(instance, since)
        if failed:
            raise DemoFailed(f"run {failed[0]} failed; open the Dagster UI to see which step and why")
        if time.monotonic() > deadline:
            raise DemoFailed(f"the marts were not built within {timeout_s:.0f} s; see the Dagster UI")
        time.sleep(2)


def keep_streaming(cms_year: dict[str, str], office_first_id: int) -> Callable[[], None]:
    """Start the endless streams of a running demo in the background; return what stops them
    (each flushes what it sent, so the broker can then be stopped without a word from them)."""
    import threading

    stop = threading.Event()

    def until_stopped(messages: Iterator) -> Iterator:
        return itertools.takewhile(lambda _: not stop.is_set(), messages)

    office_activity = office.activity(seed=1, first_id=office_first_id)
    streams = [
        lambda: produce_to(
            [office.CLAIMS, office.DIAGNOSES], until_stopped(office_activity), rate=2.1 / 2, progress=False
        ),
        lambda: produce(
            cms.CONTRACT, until_stopped(cms.synthetic(seed=1, part=1)), rate=20, progress=False, headers=cms_year
        ),
    ]
    threads = [threading.Thread(target=stream, daemon=True) for stream in streams]
    for thread in threads:
        thread.start()

    def stop_streams() -> None:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    return stop_streams


def run(
    once: bool,
    count: int = 5000,
    cms_count: int = 20_000,
    office_count: int = 1000,
    stedi_count: int = 400,
    carepay_treatments: int = 500,
    port: int = 3000,
    timeout_s: float = 900.0,
) -> None:
    import dagster as dg

    os.environ.setdefault("LAKEHOUSE_SENSOR_INTERVAL_S", DEMO_SENSOR_INTERVAL_S)
    s = settings()
    started_kafka = False
    if s.kafka_bootstrap:
        print(f"Using the Kafka cluster at {s.kafka_bootstrap}")
    else:
        started_kafka = not local_kafka.status().running
        print(local_kafka.start().describe())
    ui = None
    stop_streams: Callable[[], None] = lambda: None  # noqa: E731
    try:
        since = time.time()
        sent = produce(prices.CONTRACT, prices.ticks(), count=count)
        print(f"Sent {sent} prices to topic `prices`.")
        year = {cms.DATA_YEAR_HEADER: str(cms.SYNTHETIC_YEAR)}
        sent = produce(cms.CONTRACT, cms.synthetic(seed=0), count=cms_count, headers=year)
        print(f"Sent {sent} synthetic CMS provider-services rows to topic `{cms.CONTRACT.topic}`.")
        produce(office.PATIENTS_CONTRACT, office.patients(), progress=False)
        sent = produce_to([office.CLAIMS, office.DIAGNOSES], office.activity(count=office_count))
        print(f"Sent {sent} office claims and diagnoses (re-sent copies included) and its {office.PATIENTS} patients.")
        sent = produce_to(list(carepay.CONTRACTS), carepay.synthetic(treatments=carepay_treatments))
        print(f"Sent {sent} CarePay rows: {carepay_treatments} treatments with their claims, invoices and items.")
        sent = produce_to(list(stedi.CONTRACTS), stedi.feed(customer_count=30), count=stedi_count)
        print(f"Sent {sent} STEDI messages: 30 customers on `{stedi.REDIS.topic}`, then risk events.")
        log_file = s.dagster_home / "dev.log"
        s.dagster_home.mkdir(parents=True, exist_ok=True)
        ui = start_dev(s, port=port, log_to=log_file)
        print(f"Dagster is starting at http://127.0.0.1:{port} (log: {log_file}); waiting for the sensor's run...")
        instance = dg.DagsterInstance.from_config(str(s.dagster_home))
        from ingestion.streams import built_in
        from orchestration.manifest import mart_names, model_streams

        # The demo sends only the built-in streams: a declared stream's marts wait for its own records.
        built_in_streams = {c.stream for c in built_in()}
        marts = [name for name in mart_names() if model_streams().get(name) in built_in_streams]
        wait_for_marts(instance, marts, since, timeout_s, ui, log_file)
        print("\nEvery mart is built:")
        width = max(map(len, marts))
        for name in marts:
            rows = _query_when_free(s.warehouse_path, f"select count(*) as n from {name}")
            print(f"  {name:<{width}} {int(rows.n[0]):>8} rows")
        stats = _query_when_free(s.warehouse_path, "select * from prices_symbol_stats order by symbol")
        print("\nprices_symbol_stats\n" + stats.to_string(index=False))
        print(f"\nDagster UI: http://127.0.0.1:{port}   (runs, lineage, checks)")
        if once:
            return
        stop_streams = keep_streaming(year, office_first_id=office_count)
        print(
            "Running, with the office (a claim and a diagnosis every 2 s) and CMS (20 rows/s) streams going on; "
            "the sensors drain them every few seconds. Ctrl-C stops Dagster and Kafka."
        )
        interrupt_on_sigterm()
        try:
            ui.wait()
        except KeyboardInterrupt:
            print("\nStopping...")
    finally:
        stop_streams()
        if ui is not None:
            stop_dev(ui)
        if started_kafka:
            local_kafka.stop()
