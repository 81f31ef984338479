"""Every good build publishes each mart it built as the Iceberg table `marts.<name>`, one snapshot
per build, so any engine reads the marts without the DuckDB file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from ingestion import duck
from ingestion.catalog import catalog
from ingestion.config import settings
from orchestration.publish_marts import BUILD_ID, BUILT_AT, mart_names_of, publish_mart, publish_marts
from tests.cli import lakehouse, run
from tests.conftest import recreate_topics

PRICES_MARTS = ["prices_outliers", "prices_rejected_rows", "prices_symbol_stats"]


def invocation_ids() -> dict[Path, str]:
    """dbt's invocation id of every build so far, by its run_results.json (one folder per build)."""
    return {
        path: json.loads(path.read_text())["metadata"]["invocation_id"]
        for path in settings().home.rglob("run_results.json")
    }


def build_prices() -> tuple[str, str]:
    """`lakehouse build prices`: its dbt invocation id and what it logged."""
    before = invocation_ids()
    result = run("build", "prices")
    assert result.returncode == 0, result.stdout + result.stderr
    (new,) = set(invocation_ids()) - set(before)
    return invocation_ids()[new], result.stderr


def duckdb_rows(name: str) -> list[tuple]:
    with duck.connect(str(settings().warehouse_path), read_only=True) as con:
        return sorted(con.execute(f'select * from "{name}"').fetchall())


def iceberg_rows(name: str) -> list[tuple]:
    table = catalog(settings()).load_table(f"marts.{name}")
    con = duck.read_iceberg(duck.connect(), settings())
    return sorted(con.execute(f"select * from iceberg_scan('{table.metadata_location}')").fetchall())


def build_ids(name: str) -> list[str]:
    table = catalog(settings()).load_table(f"marts.{name}")
    return [snapshot.summary[BUILD_ID] for snapshot in table.snapshots()]


@pytest.mark.integration
def test_each_good_build_publishes_every_prices_mart_as_one_iceberg_snapshot_with_its_build_id(kafka_env, lake_home):
    recreate_topics(kafka_env, "prices")
    lakehouse("produce", "prices", "--count", "300")
    lakehouse("drain", "prices")

    first, _ = build_prices()
    for name in PRICES_MARTS:
        assert build_ids(name) == [first]
        assert iceberg_rows(name) == duckdb_rows(name)
    stats = catalog(settings()).load_table("marts.prices_symbol_stats")
    assert len(iceberg_rows("prices_symbol_stats")) == 5
    assert stats.current_snapshot().summary[BUILT_AT].endswith("+00:00")
    assert {name for _, name in catalog(settings()).list_tables("marts")} == set(PRICES_MARTS)  # no staging

    # The next good build publishes again: one more snapshot per mart, with its own build id. (A
    # publication that fails leaves the build good: the unit tests below cover it; with the raw
    # tables in the same catalog, a catalog out of reach now stops the gates first.)
    second, _ = build_prices()
    for name in PRICES_MARTS:
        assert build_ids(name) == [first, second]
        assert iceberg_rows(name) == duckdb_rows(name)


def node(kind: str, name: str, layer: str) -> dict:
    return {"resource_type": kind, "name": name, "fqn": ["lakehouse", layer, "prices", name]}


def test_mart_names_are_the_models_under_marts_that_built_well():
    manifest = {
        "nodes": {
            "model.lakehouse.stats": node("model", "stats", "marts"),
            "model.lakehouse.failed": node("model", "failed", "marts"),
            "model.lakehouse.stg": node("model", "stg", "staging"),
            "test.lakehouse.t": node("test", "t", "marts"),
        }
    }
    results = {
        "results": [
            {"unique_id": "model.lakehouse.stats", "status": "success"},
            {"unique_id": "model.lakehouse.failed", "status": "error"},
            {"unique_id": "model.lakehouse.stg", "status": "success"},
            {"unique_id": "test.lakehouse.t", "status": "pass"},
        ]
    }
    assert mart_names_of(results, manifest) == ["stats"]


@pytest.fixture
def warehouse(lake_home):
    return settings()


def write_mart(s, sql: str) -> None:
    with duck.connect(str(s.warehouse_path)) as con:
        con.execute(sql)


def test_types_iceberg_lacks_are_cast_by_rule_and_values_survive(warehouse):
    write_mart(
        warehouse,
        """create table odd as select 200::utinyint as small, 4000000000::uinteger as wide,
        18446744073709551615::ubigint as huge_unsigned, 99999999999999999999999999999999999999::hugeint as huge,
        interval 2 days as span, timestamp_ns '2024-01-02 03:04:05.123456' as at_ns,
        timestamptz '2024-01-02 03:04:05+00' as at_tz, 'a'::enum('a', 'b') as kind, 1.25::decimal(10, 2) as amount""",
    )
    published = publish_marts(warehouse, ["odd"], "build-1")
    table = catalog(warehouse).load_table("marts.odd")
    assert published == {"odd": table.current_snapshot().snapshot_id}
    types = {field.name: str(field.field_type) for field in table.schema().fields}
    assert types == {
        "small": "int",
        "wide": "long",
        "huge_unsigned": "decimal(20, 0)",
        "huge": "decimal(38, 0)",
        "span": "string",
        "at_ns": "timestamp",
        "at_tz": "timestamptz",
        "kind": "string",
        "amount": "decimal(10, 2)",
    }
    (row,) = table.scan().to_arrow().to_pylist()
    assert row["huge_unsigned"] == 18446744073709551615 and row["huge"] == 99999999999999999999999999999999999999
    assert row["span"] == "2 days" and row["at_ns"].microsecond == 123456 and row["kind"] == "a"


def test_an_empty_mart_is_published_with_no_rows_in_one_snapshot(warehouse):
    write_mart(warehouse, "create table nothing as select 1 as id where false")
    publish_marts(warehouse, ["nothing"], "build-1")
    publish_marts(warehouse, ["nothing"], "build-2")
    table = catalog(warehouse).load_table("marts.nothing")
    assert [s.summary[BUILD_ID] for s in table.snapshots()] == ["build-1", "build-2"]
    assert table.scan().to_arrow().num_rows == 0


def test_a_mart_whose_columns_change_evolves_its_table_or_replaces_it_where_iceberg_cannot(warehouse):
    write_mart(warehouse, "create table m as select 1::integer as id, 'x' as name, 1.5::float as score")
    publish_marts(warehouse, ["m"], "build-1")
    # Added, dropped and widened columns evolve: the table and its history stay.
    write_mart(warehouse, "create or replace table m as select 2::bigint as id, 2.5::double as score, true as fresh")
    publish_marts(warehouse, ["m"], "build-2")
    table = catalog(warehouse).load_table("marts.m")
    assert [(f.name, str(f.field_type)) for f in table.schema().fields] == [
        ("id", "long"),
        ("score", "double"),
        ("fresh", "boolean"),
    ]
    assert [s.summary[BUILD_ID] for s in table.snapshots()] == ["build-1", "build-2"]
    assert table.scan().to_arrow().to_pylist() == [{"id": 2, "score": 2.5, "fresh": True}]
    # A type Iceberg cannot evolve (number -> text) replaces the table.
    write_mart(warehouse, "create or replace table m as select 'three' as id")
    publish_marts(warehouse, ["m"], "build-3")
    table = catalog(warehouse).load_table("marts.m")
    assert [s.summary[BUILD_ID] for s in table.snapshots()] == ["build-3"]
    assert table.scan().to_arrow().to_pylist() == [{"id": "three"}]


def test_a_mart_that_cannot_be_read_is_named_and_the_others_are_still_published(warehouse, caplog):
    write_mart(warehouse, "create table good as select 1 as id")
    published = publish_marts(warehouse, ["missing", "good"], "build-1")
    assert list(published) == ["good"]
    assert "mart missing not published as Iceberg table marts.missing" in caplog.text


def test_a_publication_that_lost_a_race_is_published_again_on_the_winners_snapshot(warehouse):
    lake = catalog(warehouse)
    schema = pa.schema([("id", pa.int64())])
    props = {BUILD_ID: "first"}
    publish_mart(lake, "raced", lambda: pa.RecordBatchReader.from_batches(schema, []), props)
    attempts = []

    def batches() -> pa.RecordBatchReader:
        def rows():
            if not attempts:  # another writer commits between this publication's load and its commit
                publish_mart(
                    catalog(warehouse), "raced", lambda: pa.table({"id": [99]}).to_reader(), {BUILD_ID: "rival"}
                )
            attempts.append(1)
            yield pa.record_batch([pa.array([1, 2])], schema=schema)

        return pa.RecordBatchReader.from_batches(schema, rows())

    publish_mart(lake, "raced", batches, {BUILD_ID: "mine"})
    table = catalog(warehouse).load_table("marts.raced")
    assert len(attempts) == 2
    assert [s.summary[BUILD_ID] for s in table.snapshots()] == ["first", "rival", "mine"]
    assert sorted(table.scan().to_arrow()["id"].to_pylist()) == [1, 2]
    live = {task.file.file_path for task in table.scan().plan_files()}
    on_disk = {f"file://{p}" for p in Path(warehouse.home / "warehouse" / "marts" / "raced" / "data").iterdir()}
    assert on_disk == live | {
        task.file.file_path
        for snapshot in table.snapshots()
        if snapshot.summary[BUILD_ID] == "rival"
        for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files()
    }  # the lost attempt's files are gone


def test_only_the_last_snapshots_are_kept_with_their_files(warehouse):
    from orchestration.publish_marts import KEEP_SNAPSHOTS

    write_mart(warehouse, "create table kept as select 1 as id")
    for n in range(KEEP_SNAPSHOTS + 3):
        publish_marts(warehouse, ["kept"], f"build-{n}")
    table = catalog(warehouse).load_table("marts.kept")
    assert [s.summary[BUILD_ID] for s in table.snapshots()] == [f"build-{n}" for n in range(3, KEEP_SNAPSHOTS + 3)]
    assert len(list((warehouse.home / "warehouse" / "marts" / "kept" / "data").iterdir())) == KEEP_SNAPSHOTS
