"""The lake's Iceberg catalog: where it is, how tables commit, and that DuckDB reads them offline."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.exceptions import CommitFailedException

from ingestion import duck
from ingestion.catalog import TABLE_PROPERTIES, catalog, warehouse_uri
from ingestion.config import settings


@pytest.fixture
def lake(lake_home):
    return settings()


def test_the_catalog_and_warehouse_default_to_the_lake_home(lake):
    assert lake.catalog_uri == f"sqlite:///{lake.home / 'catalog.db'}"
    assert warehouse_uri(lake) == f"file://{lake.home / 'warehouse'}"
    assert {ns for (ns,) in catalog(lake).list_namespaces()} >= {"raw", "quarantine", "marts"}


def test_a_commit_planned_against_an_old_snapshot_is_refused_not_rebased(lake, tmp_path):
    rows = pa.table({"symbol": ["ACME"], "_kafka_offset": pa.array([0], pa.int64())})
    table = catalog(lake).create_table("raw.fenced", schema=rows.schema, properties=TABLE_PROPERTIES)
    path = tmp_path / "rows.parquet"
    pq.write_table(rows, path)
    stale = catalog(lake).load_table("raw.fenced")
    with table.transaction() as tx:
        tx.add_files([str(path)], snapshot_properties={"writer": "first"})
    with pytest.raises(CommitFailedException), stale.transaction() as tx:
        tx.add_files([str(path)], snapshot_properties={"writer": "second"})
    current = catalog(lake).load_table("raw.fenced")
    assert [s.summary["writer"] for s in current.snapshots()] == ["first"]


def test_duckdb_reads_a_table_with_the_extensions_from_the_wheels(lake):
    rows = pa.table({"symbol": ["ACME", "INIT"], "price": [1.5, 2.5]})
    table = catalog(lake).create_table("raw.readable", schema=rows.schema, properties=TABLE_PROPERTIES)
    table.append(rows)
    con = duck.read_iceberg(duck.connect(), lake)
    (total,) = con.execute(f"select sum(price) from iceberg_scan('{table.metadata_location}')").fetchone()
    assert total == 4.0
    assert con.execute("select current_setting('autoinstall_known_extensions')").fetchone() == (False,)
