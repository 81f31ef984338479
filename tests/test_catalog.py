"""The lake's Iceberg catalog: where it is, how tables commit, and that DuckDB reads them offline."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.exceptions import CommitFailedException

from ingestion import duck
from ingestion.catalog import TABLE_PROPERTIES, catalog, transaction, warehouse_uri
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


def test_a_commit_through_the_lake_leaves_the_metadata_pyiceberg_itself_would(lake, tmp_path):
    """The catalog works a transaction's metadata out once per update instead of deep-copying it
    at every look; what it commits must not differ from pyiceberg's own path."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table.update import update_table_metadata

    rows = pa.table({"symbol": ["ACME"], "_kafka_offset": pa.array([0], pa.int64())})
    ours = catalog(lake).create_table("raw.memo", schema=rows.schema, properties=TABLE_PROPERTIES)
    for i in range(3):
        path = tmp_path / f"rows-{i}.parquet"
        pq.write_table(rows, path)
        base = ours.metadata
        with transaction(ours) as tx:
            if i == 1:
                with tx.update_schema() as update:
                    update.union_by_name(pa.schema([pa.field("price", pa.float64())]))
            tx.add_files([str(path)], snapshot_properties={"batch": str(i)})
            staged = tx._updates
        expected = update_table_metadata(base, staged, metadata_location=None)
        assert ours.metadata.model_dump(exclude={"last_updated_ms", "metadata_log"}) == expected.model_dump(
            exclude={"last_updated_ms", "metadata_log"}
        )

    stock = SqlCatalog("lakehouse", uri=lake.catalog_uri, warehouse=warehouse_uri(lake)).load_table("raw.memo")
    assert stock.metadata == ours.metadata  # what the catalog holds is what the writer was left at
    assert [s.summary["batch"] for s in stock.snapshots()] == ["0", "1", "2"]
    assert [s.parent_snapshot_id for s in stock.snapshots()][1:] == [s.snapshot_id for s in stock.snapshots()][:-1]
    assert len(stock.metadata.metadata_log) == 3  # the creation and each commit but the last
    assert stock.schema().find_field("price") and stock.scan().to_arrow().num_rows == 3


def test_duckdb_reads_a_table_with_the_extensions_from_the_wheels(lake):
    rows = pa.table({"symbol": ["ACME", "INIT"], "price": [1.5, 2.5]})
    table = catalog(lake).create_table("raw.readable", schema=rows.schema, properties=TABLE_PROPERTIES)
    table.append(rows)
    con = duck.read_iceberg(duck.connect(), lake)
    (total,) = con.execute(f"select sum(price) from iceberg_scan('{table.metadata_location}')").fetchone()
    assert total == 4.0
    assert con.execute("select current_setting('autoinstall_known_extensions')").fetchone() == (False,)
