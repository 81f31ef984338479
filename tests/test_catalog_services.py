"""The catalog in a real PostgreSQL, the warehouse in an S3 bucket, and commits fenced across machines.

The servers are the suite's own (tests/services.py): PostgreSQL's binaries from the machine,
moto's S3 server from the dev dependencies. Each test gets a fresh database and bucket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from ingestion import duck
from ingestion.catalog import NAMESPACES, TABLE_PROPERTIES, catalog
from ingestion.config import Settings, settings

ROWS = pa.table({"symbol": ["ACME", "INIT"], "price": [1.5, 2.5], "_kafka_offset": pa.array([0, 1], pa.int64())})


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the settings at a catalog URI and a warehouse; what is not given stays the default."""

    def point(catalog_uri: str | None = None, warehouse: str | None = None) -> Settings:
        monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
        for name, value in (("LAKEHOUSE_CATALOG_URI", catalog_uri), ("LAKEHOUSE_WAREHOUSE", warehouse)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return settings()

    return point


def duckdb_sum_of_prices(lake: Settings, metadata_location: str) -> float:
    con = duck.read_iceberg(duck.connect(), lake)
    (total,) = con.execute(f"select sum(price) from iceberg_scan('{metadata_location}')").fetchone()
    return total


def test_a_postgresql_catalog_holds_the_namespaces_and_tables_both_engines_read(lake, postgres_catalog_uri):
    settings_ = lake(catalog_uri=postgres_catalog_uri)
    assert {ns for (ns,) in catalog(settings_).list_namespaces()} >= set(NAMESPACES)
    table = catalog(settings_).create_table("raw.prices", schema=ROWS.schema, properties=TABLE_PROPERTIES)
    table.append(ROWS)
    table.append(ROWS.slice(0, 1))

    reloaded = catalog(settings_).load_table("raw.prices")
    assert reloaded.scan().to_arrow().num_rows == 3
    assert len(reloaded.snapshots()) == 2
    assert duckdb_sum_of_prices(settings_, reloaded.metadata_location) == 5.5

    import psycopg2

    with psycopg2.connect(postgres_catalog_uri) as connection, connection.cursor() as cursor:
        cursor.execute("select table_namespace, table_name, metadata_location from iceberg_tables")
        assert cursor.fetchall() == [("raw", "prices", reloaded.metadata_location)]


def test_an_s3_warehouse_keeps_the_table_files_in_the_bucket_and_duckdb_reads_them_over_httpfs(
    lake, s3_server, s3_warehouse
):
    settings_ = lake(warehouse=s3_warehouse)
    assert settings_.catalog_uri.startswith("sqlite:///")
    table = catalog(settings_).create_table("raw.prices", schema=ROWS.schema, properties=TABLE_PROPERTIES)
    table.append(ROWS)

    bucket = s3_warehouse.removeprefix("s3://").split("/")[0]
    keys = s3_server.keys(bucket)
    assert table.metadata_location.startswith(f"{s3_warehouse}/raw/prices/metadata/")
    assert table.metadata_location.removeprefix(f"s3://{bucket}/") in keys
    assert [key for key in keys if key.endswith(".parquet")] == [
        task.file.file_path.removeprefix(f"s3://{bucket}/") for task in table.scan().plan_files()
    ]
    assert all(key.startswith("lake/raw/prices/") for key in keys)
    assert not (settings_.home / "warehouse").exists()
    assert duckdb_sum_of_prices(settings_, table.metadata_location) == 4.0


def test_a_postgresql_catalog_and_an_s3_warehouse_together(lake, postgres_catalog_uri, s3_server, s3_warehouse):
    settings_ = lake(catalog_uri=postgres_catalog_uri, warehouse=s3_warehouse)
    catalog(settings_).create_table("marts.prices_symbol_stats", schema=ROWS.schema, properties=TABLE_PROPERTIES)
    catalog(settings_).load_table("marts.prices_symbol_stats").append(ROWS)

    table = catalog(settings_).load_table("marts.prices_symbol_stats")
    assert table.scan().to_arrow().num_rows == 2
    assert table.metadata_location.startswith(f"{s3_warehouse}/marts/prices_symbol_stats/metadata/")
    assert duckdb_sum_of_prices(settings_, table.metadata_location) == 4.0


# One "machine": its own LAKEHOUSE_HOME, the shared catalog and warehouse from the environment.
# It loads the table, says so, waits for "go" on stdin, then appends what it planned.
MACHINE = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa
    from pyiceberg.exceptions import CommitFailedException
    from ingestion.catalog import catalog
    from ingestion.config import settings

    name = sys.argv[1]
    table = catalog(settings()).load_table("raw.prices")
    print(json.dumps({"loaded": table.current_snapshot().snapshot_id}), flush=True)
    sys.stdin.readline()
    rows = pa.table({"symbol": [name], "price": [1.0], "_kafka_offset": pa.array([2], pa.int64())})
    try:
        table.append(rows, snapshot_properties={"writer": name})
    except CommitFailedException as refused:
        print(json.dumps({"outcome": "refused", "error": type(refused).__name__, "message": str(refused)}), flush=True)
    else:
        snapshot = table.current_snapshot()
        print(json.dumps({"outcome": "committed", "snapshot": snapshot.snapshot_id}), flush=True)
    """
)


@pytest.fixture
def start_machines(tmp_path: Path):
    """Start "machines": child processes with a LAKEHOUSE_HOME each and the rest of this
    environment (the shared catalog and warehouse); any still running after the test is killed."""
    started: list[subprocess.Popen] = []

    def start(names: tuple[str, ...], script: str = MACHINE) -> dict[str, subprocess.Popen]:
        machines = {}
        for name in names:
            home = tmp_path / f"machine-{name}"
            home.mkdir()
            machines[name] = subprocess.Popen(
                [sys.executable, "-c", script, name],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "LAKEHOUSE_HOME": str(home)},
            )
            started.append(machines[name])
        return machines

    yield start
    for machine in started:
        if machine.poll() is None:
            machine.kill()
        machine.communicate()


def read_line(machine: subprocess.Popen) -> dict:
    line = machine.stdout.readline()
    if not line:
        raise AssertionError(f"a machine exited early: {machine.wait()} {machine.stderr.read()}")
    return json.loads(line)


def go_and_collect(machines: dict[str, subprocess.Popen], release=None) -> dict[str, dict]:
    for machine in machines.values():
        machine.stdin.write("go\n")
        machine.stdin.flush()
    if release is not None:
        release()
    outcomes = {name: read_line(machine) for name, machine in machines.items()}
    for machine in machines.values():
        _, errors = machine.communicate()
        assert machine.returncode == 0, errors
    return outcomes


def a_table_with_one_snapshot(settings_: Settings):
    table = catalog(settings_).create_table("raw.prices", schema=ROWS.schema, properties=TABLE_PROPERTIES)
    table.append(ROWS, snapshot_properties={"writer": "setup"})
    return table


def assert_exactly_one_won(settings_: Settings, outcomes: dict[str, dict], base_snapshot: int) -> None:
    winners = [name for name, outcome in outcomes.items() if outcome["outcome"] == "committed"]
    losers = [name for name, outcome in outcomes.items() if outcome["outcome"] == "refused"]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert outcomes[losers[0]]["error"] == "CommitFailedException"
    table = catalog(settings_).load_table("raw.prices")
    assert [s.summary["writer"] for s in table.snapshots()] == ["setup", winners[0]]
    assert table.current_snapshot().snapshot_id == outcomes[winners[0]]["snapshot"]
    assert table.current_snapshot().parent_snapshot_id == base_snapshot
    assert sorted(table.scan().to_arrow().column("symbol").to_pylist()) == sorted(["ACME", "INIT", winners[0]])


def test_two_machines_appending_against_the_same_snapshot_one_commits_and_the_other_is_refused(
    lake, postgres_catalog_uri, s3_warehouse, start_machines
):
    settings_ = lake(catalog_uri=postgres_catalog_uri, warehouse=s3_warehouse)
    base = a_table_with_one_snapshot(settings_).current_snapshot().snapshot_id
    machines = start_machines(("a", "b"))
    # Both have loaded the same snapshot before either commits.
    assert [read_line(m)["loaded"] for m in machines.values()] == [base, base]

    outcomes = go_and_collect(machines)

    assert_exactly_one_won(settings_, outcomes, base)


def test_two_commits_that_both_passed_their_checks_are_decided_by_the_catalog_row(
    lake, postgres_catalog_uri, s3_warehouse, start_machines
):
    """The race the snapshot check cannot see: both machines re-read the catalog, find it
    unchanged and write their metadata before either swaps the row. PostgreSQL decides: both
    wait on the row (held here), and the second update finds the metadata location changed."""
    import psycopg2

    settings_ = lake(catalog_uri=postgres_catalog_uri, warehouse=s3_warehouse)
    base = a_table_with_one_snapshot(settings_).current_snapshot().snapshot_id
    machines = start_machines(("a", "b"))
    assert [read_line(m)["loaded"] for m in machines.values()] == [base, base]

    holder = psycopg2.connect(postgres_catalog_uri)
    watcher = psycopg2.connect(postgres_catalog_uri)
    watcher.autocommit = True
    with holder.cursor() as cursor:
        cursor.execute("select 1 from iceberg_tables where table_name = 'prices' for update")

    def release_once_both_wait_on_the_row() -> None:
        wait_for_backends(watcher, "%UPDATE iceberg_tables%", 2)
        holder.rollback()

    try:
        outcomes = go_and_collect(machines, release=release_once_both_wait_on_the_row)
    finally:
        holder.close()
        watcher.close()

    assert_exactly_one_won(settings_, outcomes, base)
    loser = next(o for o in outcomes.values() if o["outcome"] == "refused")
    assert "updated by another process" in loser["message"]


# A machine's first start: everything imported, it waits for "go", then opens the catalog.
FIRST_START = textwrap.dedent(
    """
    import json, sys
    from ingestion.catalog import catalog
    from ingestion.config import settings

    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    namespaces = sorted(ns for (ns,) in catalog(settings()).list_namespaces())
    print(json.dumps({"namespaces": namespaces}), flush=True)
    """
)


def test_machines_opening_a_fresh_postgresql_catalog_at_once_all_find_it_ready(
    lake, postgres_catalog_uri, start_machines
):
    """Each creates the catalog's tables and namespaces if absent. Here the test is the machine
    that wins: its creation stays uncommitted until the others, finding no tables, are blocked
    creating the same; they must then use the winner's tables instead of failing."""
    import psycopg2
    import sqlalchemy
    from pyiceberg.catalog.sql import SqlCatalogBaseTable

    from ingestion.catalog import sqlalchemy_uri

    lake(catalog_uri=postgres_catalog_uri)
    machines = start_machines(("a", "b"), script=FIRST_START)
    assert all(read_line(m) == {"ready": True} for m in machines.values())
    engine = sqlalchemy.create_engine(sqlalchemy_uri(postgres_catalog_uri))
    watcher = psycopg2.connect(postgres_catalog_uri)
    watcher.autocommit = True
    with engine.connect() as winner:
        creation = winner.begin()
        SqlCatalogBaseTable.metadata.create_all(winner)

        def commit_once_both_are_blocked_creating_the_tables() -> None:
            wait_for_backends(watcher, "%CREATE TABLE%", 2)
            creation.commit()

        outcomes = go_and_collect(machines, release=commit_once_both_are_blocked_creating_the_tables)
    watcher.close()
    engine.dispose()

    assert all(outcome["namespaces"] == sorted(NAMESPACES) for outcome in outcomes.values()), outcomes


def wait_for_backends(watcher, query_like: str, count: int) -> None:
    """Until `count` sessions wait on a lock while running a query like `query_like`."""
    deadline = time.monotonic() + 60
    with watcher.cursor() as cursor:
        while True:
            cursor.execute(
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and query like %s",
                (query_like,),
            )
            if cursor.fetchone()[0] == count:
                return
            if time.monotonic() > deadline:
                cursor.execute("select state, wait_event_type, wait_event, query from pg_stat_activity")
                raise TimeoutError(f"{count} sessions never waited on a lock running {query_like}: {cursor.fetchall()}")
            time.sleep(0.05)
