"""One lake shared by machines: a PostgreSQL catalog and an S3 warehouse, each machine with a home
of its own. Drains on two machines never both commit a range: the catalog's compare-and-swap
fences the loser, which plans again from the newer snapshot; every offset is stored once."""

from __future__ import annotations

import itertools
import json
import os
import subprocess

import pytest

from tests import lake_tables
from tests.cli import LAKEHOUSE
from tests.conftest import recreate_topics
from tests.test_drain_faults import TOPIC, ForeignProducer, assert_every_offset_once, backlog

pytestmark = pytest.mark.integration


@pytest.fixture
def shared_lake(kafka_env, lake_home, postgres_catalog_uri, s3_warehouse, monkeypatch, tmp_path):
    """The environment of two machines sharing one catalog and one warehouse."""
    monkeypatch.setenv("LAKEHOUSE_CATALOG_URI", postgres_catalog_uri)
    monkeypatch.setenv("LAKEHOUSE_WAREHOUSE", s3_warehouse)
    machines = []
    for name in ("a", "b"):
        home = tmp_path / f"machine-{name}"
        home.mkdir()
        machines.append({**os.environ, "LAKEHOUSE_HOME": str(home), "LAKEHOUSE_BATCH_MAX_RECORDS": "150"})
    return machines


def batches(home) -> dict[int, list[tuple[int, int]]]:
    """Per partition, the ranges the raw table's live snapshots say their batches committed."""
    table = lake_tables.lake_catalog(home).load_table(f"raw.{TOPIC}")
    found: dict[int, list[tuple[int, int]]] = {}
    for snapshot in table.snapshots():
        held = (snapshot.summary.additional_properties if snapshot.summary else {}).get("lakehouse.batch")
        for described in json.loads(held or "[]"):
            found.setdefault(described["partition"], []).append((described["start"], described["end"]))
    return found


def test_drains_on_two_machines_never_both_commit_a_range(shared_lake, kafka_env, lake_home):
    recreate_topics(kafka_env, TOPIC)
    backlog(kafka_env, seconds=1.5, rate=6000)
    drains = [
        subprocess.Popen(
            [LAKEHOUSE, "--verbose", "drain", TOPIC], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for env in shared_lake
    ]
    outputs = [drain.communicate(timeout=600) for drain in drains]
    assert [drain.returncode for drain in drains] == [0, 0], outputs

    assert_every_offset_once(lake_home, kafka_env)
    for partition, ranges in batches(lake_home).items():
        ordered = sorted(ranges)
        for (_, end), (start, _) in itertools.pairwise(ordered):
            assert start == end, f"partition {partition}: ranges {ordered} overlap or leave a hole"


def test_a_chaos_run_on_a_shared_catalog_and_bucket_ends_exact(shared_lake, kafka_env, lake_home):
    """SIGKILLs at points of a batch's life while a foreign producer sends good and poison records."""
    recreate_topics(kafka_env, TOPIC)
    producer = ForeignProducer(kafka_env, rate=2000)
    producer.start()
    try:
        for i, point in enumerate(["after-files", "between-commits", "after-commit", "while-writing"]):
            env = {**shared_lake[i % 2], "LAKEHOUSE_FAILPOINT": f"{point}@2"}
            result = subprocess.run([LAKEHOUSE, "drain", TOPIC], env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode in (0, -9), result.stderr
    finally:
        producer.stop()
    for env in shared_lake:
        final = subprocess.run([LAKEHOUSE, "drain", TOPIC], env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
    assert_every_offset_once(lake_home, kafka_env)
    verified = subprocess.run(
        [LAKEHOUSE, "verify", TOPIC, "--json"], env=shared_lake[0], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
