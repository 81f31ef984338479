"""Exactly once through crashes: SIGKILL at every point of a batch, a broker restart, a failed
Dagster run, and two drains at once. After each, the lake and the quarantine together hold every
offset the broker holds, once, read through the catalog independently of `verify`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from ingestion.failpoints import POINTS
from tests import lake_tables
from tests.cli import LAKEHOUSE
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

TOPIC = "prices"


def record(i: int) -> bytes | None:
    """A foreign mix: mostly good ticks, some poison of every kind, some tombstones."""
    kind = i % 50
    if kind == 7:
        return None
    if kind == 13:
        return b"not json at all"
    if kind == 17:
        return b'{"ts": "2021-03-10 16:21:32.000", "symbol": "\xff\xfe", "price": 1.0}'
    if kind == 23:
        return b'{"ts": "2021-03-10 16:21:32.000", "symbol": "AAPL"}'
    if kind == 29:
        return b'{"ts": "2021-03-10 16:21:32.000", "symbol": "AAPL", "price": "cheap"}'
    day = 10 + i % 3  # several date partitions per batch
    return json.dumps(
        {"ts": f"2021-03-{day} 16:21:32.{i % 1000:03d}", "symbol": "MSFT", "price": 400 + i % 97}
    ).encode()


class ForeignProducer(threading.Thread):
    """Keeps producing until stopped, with plain confluent-kafka and headers on some records."""

    def __init__(self, bootstrap: str, rate: float):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        self.rate = rate
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for _ in range(int(self.rate / 20)):
                headers = [("source", b"faults")] if self.sent % 11 == 0 else None
                self.producer.produce(TOPIC, key=str(self.sent % 5).encode(), value=record(self.sent), headers=headers)
                self.sent += 1
            self.producer.poll(0)
            time.sleep(0.05)

    def stop(self) -> None:
        self.halt.set()
        self.join()
        assert self.producer.flush(30) == 0


def backlog(bootstrap: str, seconds: float, rate: float) -> None:
    """Produce for a while, then stop: a backlog for a drain to work through."""
    producer = ForeignProducer(bootstrap, rate)
    producer.start()
    time.sleep(seconds)
    producer.stop()


def broker_offsets(bootstrap: str) -> dict[int, tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-check"})
    try:
        partitions = consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10) for p in partitions}
    finally:
        consumer.close()


def assert_every_offset_once(home: Path, bootstrap: str) -> None:
    """Raw rows (tombstones included) and quarantined records, together, hold each offset once:
    read through the catalog's current snapshots of `raw.prices` and `quarantine.prices`."""
    stored = (
        duckdb.from_arrow(lake_tables.offsets(home, TOPIC))
        .query(
            "held",
            "select _kafka_partition, count(*), count(distinct _kafka_offset), min(_kafka_offset), max(_kafka_offset) "
            "from held group by _kafka_partition order by _kafka_partition",
        )
        .fetchall()
    )
    for partition, total, distinct, first, last in stored:
        low, high = broker_offsets(bootstrap)[partition]
        assert total == distinct, f"partition {partition}: {total - distinct} offsets stored twice"
        assert (first, last + 1, total) == (low, high, high - low), f"partition {partition}: offsets missing"
    assert {row[0] for row in stored} == {p for p, (low, high) in broker_offsets(bootstrap).items() if high > low}


def assert_verify_passes(env: dict) -> dict:
    result = subprocess.run([LAKEHOUSE, "verify", TOPIC, "--json"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads(result.stdout)
    assert all(c["lag"] == 0 and c["gaps"] == 0 for c in checks), checks
    return checks


def drain_env(**extra: str) -> dict:
    # Every batch its own commit, so that each point of a batch's life is reached batch after batch.
    return {**os.environ, "LAKEHOUSE_BATCH_MAX_RECORDS": "400", "LAKEHOUSE_COMMIT_INTERVAL_S": "0", **extra}


def test_sigkill_at_every_point_of_a_batch_while_producing_loses_nothing_and_doubles_nothing(kafka_env, lake_home):
    recreate_topics(kafka_env, TOPIC)
    producer = ForeignProducer(kafka_env, rate=3000)
    producer.start()
    rng = random.Random(5)
    kills = 0
    try:
        time.sleep(1)
        for i in range(30):
            if i % 6 == 5:  # and from outside, at a random moment
                proc = subprocess.Popen([LAKEHOUSE, "drain", TOPIC], env=drain_env(), stdout=subprocess.DEVNULL)
                time.sleep(rng.uniform(0.5, 2.5))
                proc.send_signal(signal.SIGKILL)
                kills += proc.wait() == -signal.SIGKILL
                continue
            point = POINTS[i % len(POINTS)]
            env = drain_env(LAKEHOUSE_FAILPOINT=f"{point}@{1 + i % 3}")
            result = subprocess.run([LAKEHOUSE, "drain", TOPIC], env=env, capture_output=True, text=True, timeout=120)
            assert result.returncode in (0, -signal.SIGKILL), result.stderr
            kills += result.returncode == -signal.SIGKILL
    finally:
        producer.stop()
    assert kills >= 20

    # The rest (most of what was sent: each killed drain stored a batch or two) in large batches and
    # few commits: a commit's cost grows with the table's snapshots, hundreds by now.
    rest = drain_env(LAKEHOUSE_COMMIT_INTERVAL_S="2", LAKEHOUSE_BATCH_MAX_RECORDS="2000")
    final = subprocess.run([LAKEHOUSE, "drain", TOPIC], env=rest, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert_every_offset_once(lake_home, kafka_env)
    checks = assert_verify_passes(dict(os.environ))
    assert sum(c["rows"] + c["tombstones"] + c["quarantined"] for c in checks) == producer.sent

    quarantined = lake_tables.read_table(lake_home, "quarantine", TOPIC, ("reason", "_headers"))
    reasons = list(zip(quarantined["reason"].to_pylist(), quarantined["_headers"].to_pylist(), strict=True))
    assert {r.split(":")[0] for r, _ in reasons} == {"not JSON", "not UTF-8", "required field missing", "wrong type"}
    assert [{"key": "source", "value": b"faults"}] in [headers for _, headers in reasons]


def test_two_drains_of_one_topic_at_once_never_both_write(kafka_env, lake_home):
    recreate_topics(kafka_env, TOPIC)
    backlog(kafka_env, seconds=1.5, rate=20000)
    env = drain_env(LAKEHOUSE_BATCH_MAX_RECORDS="100")
    procs = [
        subprocess.Popen(
            [LAKEHOUSE, "drain", TOPIC], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    # The lock serialises them: the second found the whole topic already stored.
    assert sum("nothing new" in out for out, _ in outputs) == 1, outputs
    assert_every_offset_once(lake_home, kafka_env)


def test_a_broker_restart_in_the_middle_of_a_drain_loses_nothing_and_doubles_nothing(own_broker, lake_home):
    from ingestion import local_kafka

    recreate_topics(own_broker, TOPIC)
    backlog(own_broker, seconds=2, rate=20000)

    # Each batch is an Iceberg commit (two with quarantined records): 80 of them, not 800.
    env = drain_env(LAKEHOUSE_BATCH_MAX_RECORDS="500")
    drain = subprocess.Popen([LAKEHOUSE, "drain", TOPIC], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not lake_tables.offsets(lake_home, TOPIC).num_rows:
        assert time.monotonic() < deadline, "the drain never committed a batch"
        time.sleep(0.1)
    local_kafka.stop()
    time.sleep(3)
    local_kafka.start()
    drain.communicate(timeout=300)  # it rides out the outage or fails cleanly; either way, drain again

    again = subprocess.run([LAKEHOUSE, "drain", TOPIC], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert_every_offset_once(lake_home, own_broker)
    assert_verify_passes(dict(os.environ))


@pytest.mark.parametrize("point", ["after-files", "after-commit"])
def test_a_failed_dagster_drain_run_is_planned_again_and_its_retry_completes_the_lake(
    kafka_env, lake_home, monkeypatch, point
):
    from ingestion.config import settings
    from orchestration.commands.dagster_home import prepare_instance
    from orchestration.definitions import defs as load

    recreate_topics(kafka_env, TOPIC)
    backlog(kafka_env, seconds=1, rate=4000)

    defs = load()
    instance = dg.DagsterInstance.from_config(str(prepare_instance(settings())))
    sensor = defs.get_sensor_def("prices_drain_sensor")
    job = defs.resolve_job_def("prices_pipeline")

    def tick_and_run() -> dg.ExecuteInProcessResult:
        request = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        assert isinstance(request, dg.RunRequest), request
        return job.execute_in_process(
            run_config=request.run_config,
            instance=instance,
            tags=request.tags,
            raise_on_error=False,
            asset_selection=[dg.AssetKey(["raw", TOPIC])],
        )

    monkeypatch.setenv("LAKEHOUSE_BATCH_MAX_RECORDS", "200")
    monkeypatch.setenv("LAKEHOUSE_COMMIT_INTERVAL_S", "0")  # every batch its own commit: the third one fails
    monkeypatch.setenv("LAKEHOUSE_FAILPOINT", f"{point}@3:raise")
    failed = tick_and_run()
    assert not failed.success
    monkeypatch.delenv("LAKEHOUSE_FAILPOINT")
    retried = tick_and_run()
    assert retried.success
    assert_every_offset_once(lake_home, kafka_env)
    assert_verify_passes(dict(os.environ))
    instance.dispose()
