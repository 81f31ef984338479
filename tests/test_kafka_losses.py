"""What Kafka itself does to a lake: records removed by retention before a drain, a topic deleted and
created again, and a broker that disappears. Each ends with every offset accounted for (stored,
quarantined, or a named loss) and the operator told, on the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests import lake_tables
from tests.cli import LAKEHOUSE, lakehouse, run
from tests.conftest import free_port_pair, recreate_topics
from tests.test_drain_faults import broker_offsets

pytestmark = pytest.mark.integration

TOPIC = "prices"
GENERATION = "_generation"


def send(bootstrap: str, count: int, first: int = 0) -> None:
    """Good ticks, with a plain confluent-kafka producer that shares no code with the product."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(first, first + count):
        tick = {"ts": f"2021-03-10 16:21:{i % 60:02d}.000", "symbol": "MSFT", "price": 400 + i % 97}
        producer.produce(TOPIC, key=str(i).encode(), value=json.dumps(tick).encode())
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def delete_records_before(bootstrap: str, offsets: dict[int, int]) -> None:
    """What retention does: the broker's log of each partition now begins at the given offset."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_records([TopicPartition(TOPIC, p, o) for p, o in offsets.items()]).values():
        future.result()


def stored_offsets(home: Path, generation: int = 0) -> dict[int, list[int]]:
    """Per partition, every offset the raw table and the quarantine table hold for one generation,
    read through the catalog's current snapshots."""
    columns = ("_kafka_partition", "_kafka_offset", GENERATION)
    found: dict[int, list[int]] = {}
    for namespace in ("raw", "quarantine"):
        held = lake_tables.read_table(home, namespace, TOPIC, columns)
        if not held.num_rows:
            continue
        for partition, offset, g in zip(*(held[c].to_pylist() for c in columns), strict=True):
            if (g or 0) == generation:
                found.setdefault(partition, []).append(offset)
    return {p: sorted(offsets) for p, offsets in found.items()}


def raw_data_files(home: Path) -> dict[str, int]:
    """The raw table's data files at its current snapshot, with their sizes."""
    table = lake_tables.lake_catalog(home).load_table(f"raw.{lake_tables.table_name(TOPIC)}")
    files = table.inspect.data_files()
    return dict(zip(files["file_path"].to_pylist(), files["file_size_in_bytes"].to_pylist(), strict=True))


def verify_json(*topics: str) -> tuple[int, list[dict]]:
    result = run("verify", *topics, "--json")
    return result.returncode, json.loads(result.stdout)


def test_records_removed_by_retention_before_a_drain_are_a_named_loss_until_an_operator_accepts_it(
    kafka_env, lake_home
):
    recreate_topics(kafka_env, TOPIC)
    send(kafka_env, 1000)
    lakehouse("drain", TOPIC)
    drained = {p: high for p, (_, high) in broker_offsets(kafka_env).items()}
    send(kafka_env, 2000, first=1000)
    removed_to = {p: drained[p] + (high - drained[p]) // 2 for p, (_, high) in broker_offsets(kafka_env).items()}
    delete_records_before(kafka_env, removed_to)

    again = run("drain", TOPIC)
    assert again.returncode == 0, again.stderr
    lost = sum(removed_to[p] - drained[p] for p in drained)
    warning = [line for line in again.stderr.splitlines() if "removed by the broker" in line]
    assert len(warning) == 1 and f"{lost:,} offsets" in warning[0], again.stderr
    assert f"lakehouse verify --accept-loss {TOPIC}" in warning[0]

    # Every offset the broker ever had is stored once, or inside the named loss.
    stored = stored_offsets(lake_home)
    for partition, (low, high) in broker_offsets(kafka_env).items():
        assert low == removed_to[partition]
        assert stored[partition] == list(range(drained[partition])) + list(range(low, high))

    code, checks = verify_json(TOPIC)
    assert code == 1
    assert {c["partition"]: c["lost"] for c in checks} == {p: removed_to[p] - drained[p] for p in drained}
    problems = [line for c in checks for line in c["problems"]]
    assert len(problems) == 3 and all(line.startswith("lost: offsets ") for line in problems)
    assert all("retention" in line and "--accept-loss" in line for line in problems)
    table = run("verify", TOPIC)
    assert table.returncode == 1 and "removed by the broker before the drain stored them" in table.stdout

    accepted = run("verify", "--accept-loss", TOPIC)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert f"accepted 3 recorded losses ({lost:,} offsets)" in accepted.stdout
    code, checks = verify_json(TOPIC)
    assert code == 0 and all(c["lost"] == 0 and c["lost_accepted"] > 0 for c in checks)
    assert all(any(note.startswith("accepted loss: ") for note in c["notes"]) for c in checks)


def test_a_topic_deleted_and_created_again_is_refused_until_a_new_generation_then_stored_once(kafka_env, lake_home):
    recreate_topics(kafka_env, TOPIC)
    send(kafka_env, 500)
    lakehouse("drain", TOPIC)
    first_generation = raw_data_files(lake_home)

    recreate_topics(kafka_env, TOPIC)
    send(kafka_env, 100, first=500)
    refused = run("drain", TOPIC)
    assert refused.returncode == 1
    assert "deleted and created again" in refused.stderr
    assert f"`lakehouse drain {TOPIC} --new-generation`" in refused.stderr
    assert len([line for line in refused.stderr.splitlines() if line.startswith("error:")]) == 1
    code, checks = verify_json(TOPIC)  # what the lake stored is exact, but the new records wait
    assert code == 1
    assert {line for c in checks for line in c["problems"]} == {refused.stderr.splitlines()[0].removeprefix("error: ")}

    lakehouse("drain", TOPIC, "--new-generation")
    send(kafka_env, 6000, first=600)
    lakehouse("drain", TOPIC)
    assert "nothing new" in lakehouse("drain", TOPIC)

    new = stored_offsets(lake_home, generation=1)
    assert {p: offsets for p, offsets in new.items()} == {
        p: list(range(low, high)) for p, (low, high) in broker_offsets(kafka_env).items() if high > low
    }
    assert sum(len(offsets) for offsets in new.values()) == 6100
    assert sum(len(offsets) for offsets in stored_offsets(lake_home).values()) == 500
    now = raw_data_files(lake_home)
    untouched = {path: size for path, size in now.items() if path in first_generation}
    assert untouched == first_generation  # the first generation's files, as they were, still in the table

    code, checks = verify_json(TOPIC)
    assert code == 0, checks
    assert sum(c["rows"] for c in checks if c["generation"] == 1) == 6100
    assert sum(c["rows"] for c in checks if c["generation"] == 0) == 500
    assert all(c["current"] == (c["generation"] == 1) for c in checks)
    raw_rows = lake_tables.read_table(lake_home, "raw", TOPIC, ("_kafka_offset",)).num_rows
    assert raw_rows == 6600  # the topic still reads as one table

    # Both generations reach the marts: the gates and staging tell their offsets apart.
    built = lakehouse("build", TOPIC)
    assert "gate prices/raw_prices: passed" in built and "stg_prices__ticks: 6600 rows" in built
    assert "prices_symbol_stats: 1 rows" in built
    shell = lakehouse("shell", "-c", "select kafka_generation, count(*) from stg_prices__ticks group by all order by 1")
    assert "500" in shell and "6100" in shell


def test_a_drain_whose_broker_is_killed_gives_up_saying_so_and_the_next_one_stores_everything_once(
    own_broker, lake_home
):
    from ingestion import local_kafka

    recreate_topics(own_broker, TOPIC)
    send(own_broker, 60_000)
    # Batches of 2,000: each is one Iceberg commit, and the records librdkafka fetched before the kill
    # are all still stored before the drain finds the broker gone.
    env = {**os.environ, "LAKEHOUSE_BATCH_MAX_RECORDS": "2000", "LAKEHOUSE_DRAIN_STALL_TIMEOUT_S": "5"}
    drain = subprocess.Popen(
        [LAKEHOUSE, "drain", TOPIC], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    while not lake_tables.offsets(lake_home, TOPIC).num_rows:  # a first batch committed
        assert drain.poll() is None, drain.communicate()
        time.sleep(0.05)
    broker_pid = int((lake_home / "kafka" / "broker.pid").read_text())
    os.kill(broker_pid, signal.SIGKILL)
    # A hang would show here as a timeout; the drain has its own 5 s stall limit and must not wait on the broker.
    _, stderr = drain.communicate(timeout=120)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    if drain.returncode != 0:  # it may have finished just before the kill
        assert errors and "sent nothing for 5 s" in errors[0] and "next drain goes on" in errors[0], stderr

    local_kafka.start()
    again = run("drain", TOPIC)
    assert again.returncode == 0, again.stderr
    stored = stored_offsets(lake_home)
    for partition, (low, high) in broker_offsets(own_broker).items():
        assert stored.get(partition, []) == list(range(low, high))
    code, checks = verify_json(TOPIC)
    assert code == 0 and all(c["lag"] == 0 for c in checks)


def test_without_a_reachable_broker_verify_fails_saying_it_checked_the_lake_alone_and_status_shows_it_down(
    lake_home, monkeypatch
):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port_pair()}")  # nothing listens there
    result = run("verify")
    assert result.returncode == 1
    assert "does not answer: the lake was checked alone" in result.stderr

    document = json.loads(lakehouse("status", "--json"))
    assert all(not t["broker_reachable"] and t["broker_end"] is None for t in document["topics"])
    monkeypatch.setenv("COLUMNS", "200")
    assert "does not answer" in lakehouse("status")


def generation(topic_id: str | None = "id-1"):
    from ingestion.lake import Generation

    return Generation(TOPIC, 0, topic_id, 0.0)


def test_a_topic_is_the_one_the_lake_stored_while_its_id_and_offsets_agree():
    from ingestion.drain import identity_problem

    assert identity_problem(TOPIC, generation(), "id-1", {0: 10, 1: 5}, {0: (0, 12), 1: (3, 5), 2: (0, 0)}) is None
    assert identity_problem(TOPIC, generation(None), None, {0: 10}, {0: (0, 10)}) is None  # an older broker
    assert identity_problem(TOPIC, generation(), "id-1", {}, {}) is None  # nothing stored, nothing there


@pytest.mark.parametrize(
    ("broker_id", "progress", "marks", "says"),
    [
        ("id-2", {0: 10}, {0: (0, 50)}, "deleted and created again (its id is id-2, the lake's is id-1)"),
        (None, {0: 10}, {0: (0, 4)}, "offsets went backwards ([0] ends at 4, the lake holds up to 10)"),
        ("id-1", {0: 10, 1: 3}, {0: (0, 10)}, "[1] is gone"),
        ("id-1", {0: 10}, {}, "no longer on the broker (it was deleted)"),
    ],
)
def test_a_topic_with_another_id_or_fewer_offsets_is_a_new_generation_to_start_by_command(
    broker_id, progress, marks, says
):
    from ingestion.drain import identity_problem

    problem = identity_problem(TOPIC, generation(), broker_id, progress, marks)
    assert says in problem and f"`lakehouse drain {TOPIC} --new-generation`" in problem


def test_the_dagster_raw_asset_shows_a_loss_and_the_sensor_names_a_recreated_topic(kafka_env, lake_home):
    import dagster as dg

    from ingestion.config import settings
    from orchestration.commands.dagster_home import prepare_instance
    from orchestration.definitions import defs as load

    recreate_topics(kafka_env, TOPIC, partitions=1)
    send(kafka_env, 300)
    lakehouse("drain", TOPIC)
    send(kafka_env, 300, first=300)
    delete_records_before(kafka_env, {0: 450})

    defs = load()
    instance = dg.DagsterInstance.from_config(str(prepare_instance(settings())))
    sensor = defs.get_sensor_def("prices_drain_sensor")
    request = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert isinstance(request, dg.RunRequest), request
    result = defs.resolve_job_def("prices_pipeline").execute_in_process(
        run_config=request.run_config, instance=instance, asset_selection=[dg.AssetKey(["raw", TOPIC])]
    )
    raw = next(e.materialization.metadata for e in result.get_asset_materialization_events())
    assert (raw["rows"].value, raw["lost"].value) == (150, 150)
    assert "[0] 300-450 (150)" in raw["losses"].value and "--accept-loss prices" in raw["losses"].value

    recreate_topics(kafka_env, TOPIC, partitions=1)
    send(kafka_env, 10)
    skipped = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert isinstance(skipped, dg.SkipReason)
    assert "deleted and created again" in skipped.skip_message and "--new-generation" in skipped.skip_message
    instance.dispose()
