"""Each mart a good build built, published as the Iceberg table `marts.<name>` of the lake's catalog.

Any engine that speaks Iceberg (Spark, Trino, DuckDB's `iceberg_scan`) then reads the marts
without the DuckDB file. A publication is a full overwrite committed as ONE snapshot (pyiceberg's
`Table.overwrite` would make two, a delete then an append): the mart is written as new Parquet
files in the table's location and one OVERWRITE snapshot removes every current data file and adds
the new ones, with the build in its summary (`lakehouse.build-id`, `lakehouse.built-at`).

Schema: the table's columns follow the mart's. New columns are added, columns the mart lost are
dropped and types widen where Iceberg allows (int -> long, float -> double, a wider decimal), in
the same commit as the data, so a reader never sees a schema without its rows. A change Iceberg
cannot evolve (text -> integer, say) replaces the table: every publication is a full copy of the
mart, so nothing is lost but the older snapshots.

A publication that fails (a type DuckDB has and Iceberg cannot hold, a catalog away) is logged as
a warning naming the mart; the build stays good and the next good build publishes again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingestion.catalog import TABLE_PROPERTIES, catalog
from ingestion.config import Settings

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

NAMESPACE = "marts"
BUILD_ID = "lakehouse.build-id"
BUILT_AT = "lakehouse.built-at"
KEEP_SNAPSHOTS = 10  # per mart; older ones are expired with the data files only they held
BATCH_ROWS = 100_000  # rows DuckDB hands over at a time: memory stays bounded for a large mart

# DuckDB types Iceberg has no type for, and what they are published as. Unsigned integers and
# HUGEINT become the narrowest signed type or decimal that holds every value (a HUGEINT beyond
# 38 digits fails the publication, named); timestamps become microseconds, Iceberg's unit; what
# has no Iceberg counterpart at all (intervals, times with a zone, enums, bit strings, BIGNUM)
# becomes text in DuckDB's own spelling, so no value is changed, only its type.
CASTS = {
    "TINYINT": "INTEGER",
    "SMALLINT": "INTEGER",
    "UTINYINT": "INTEGER",
    "USMALLINT": "INTEGER",
    "UINTEGER": "BIGINT",
    "UBIGINT": "DECIMAL(20, 0)",
    "HUGEINT": "DECIMAL(38, 0)",
    "UHUGEINT": "DECIMAL(38, 0)",
    "TIMESTAMP_S": "TIMESTAMP",
    "TIMESTAMP_MS": "TIMESTAMP",
    "TIMESTAMP_NS": "TIMESTAMP",
    "INTERVAL": "VARCHAR",
    "TIME WITH TIME ZONE": "VARCHAR",
    "BIT": "VARCHAR",
    "BIGNUM": "VARCHAR",
    "VARINT": "VARCHAR",
}


def iceberg_cast(duckdb_type: str) -> str | None:
    """The DuckDB type a column of `duckdb_type` is cast to before it becomes Iceberg, or None
    where Iceberg holds it as it is."""
    if duckdb_type.startswith("ENUM("):
        return "VARCHAR"
    return CASTS.get(duckdb_type)


def mart_names_of(run_results: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """The marts (models under `marts/`) a dbt invocation built well, by name."""
    names = []
    for result in run_results.get("results", []):
        node = manifest.get("nodes", {}).get(result.get("unique_id", ""))
        built = node and node["resource_type"] == "model" and result["status"] == "success"
        if built and len(node["fqn"]) > 1 and node["fqn"][1] == "marts":
            names.append(node["name"])
    return sorted(names)


def build_id_of(run_results: dict[str, Any]) -> str:
    """What identifies a dbt build: its invocation id."""
    return run_results.get("metadata", {}).get("invocation_id") or f"unknown-{datetime.now(UTC).isoformat()}"


def publish_marts(
    settings: Settings, marts: Iterable[str], build_id: str, database: Path | None = None
) -> dict[str, int]:
    """Publish each mart of the DuckDB warehouse (or of `database`, a snapshot of it) as
    `marts.<name>`; the snapshot id per mart published. Never raises: a mart that cannot be
    published is logged and left out; call it only where no build is writing."""
    from ingestion import duck

    marts = list(marts)
    if not marts:
        return {}
    path = database or settings.warehouse_path
    props = {BUILD_ID: build_id, BUILT_AT: datetime.now(UTC).isoformat(timespec="seconds")}
    published: dict[str, int] = {}
    try:
        lake = catalog(settings)
        con = duck.connect(str(path), read_only=True)
    except Exception as error:  # a publication never fails the build
        log.warning(
            "marts %s not published to Iceberg (%s: %s); the next good build publishes them again",
            ", ".join(marts),
            type(error).__name__,
            error,
        )
        return published
    with con:
        con.execute("set TimeZone = 'UTC'")  # timestamptz reaches Arrow in UTC, as Iceberg keeps it
        for name in marts:
            try:
                published[name] = publish_mart(lake, name, lambda name=name: mart_batches(con, name), props)
            except Exception as error:  # one mart's failure must not stop the others
                log.warning(
                    "mart %s not published as Iceberg table %s.%s (%s: %s); the next good build publishes it again",
                    name,
                    NAMESPACE,
                    name,
                    type(error).__name__,
                    error,
                )
    return published


def mart_batches(con: duckdb.DuckDBPyConnection, name: str) -> pa.RecordBatchReader:
    """The mart's rows as Arrow batches, each column cast to a type Iceberg can hold."""
    quoted = '"' + name.replace('"', '""') + '"'
    columns = con.execute(f"describe select * from {quoted}").fetchall()
    select = []
    for column, duckdb_type, *_ in columns:
        ident = '"' + column.replace('"', '""') + '"'
        cast = iceberg_cast(duckdb_type)
        select.append(f"cast({ident} as {cast}) as {ident}" if cast else ident)
    return con.execute(f"select {', '.join(select)} from {quoted}").fetch_record_batch(BATCH_ROWS)


def publish_mart(lake: Catalog, name: str, batches: Callable[[], pa.RecordBatchReader], props: dict[str, str]) -> int:
    """Overwrite `marts.<name>` with the rows `batches()` yields, as one snapshot; its id.

    Publications run in the warehouse pool, one at a time, but the catalog's commit is still a
    compare-and-swap: a publication that lost a race reloads the table and tries once more (it
    replaces the whole table, so redoing it on top of the winner is right, unlike a raw table's
    append)."""
    from pyiceberg.exceptions import CommitFailedException

    try:
        return _overwrite(lake, name, batches(), props)
    except CommitFailedException:
        log.info("marts.%s changed under its publication; publishing again on the new snapshot", name)
        return _overwrite(lake, name, batches(), props)


def _overwrite(lake: Catalog, name: str, reader: pa.RecordBatchReader, props: dict[str, str]) -> int:
    from pyiceberg.exceptions import TableAlreadyExistsError

    identifier = (NAMESPACE, name)
    if not lake.table_exists(identifier):
        with contextlib.suppress(TableAlreadyExistsError):  # another publication created it first
            lake.create_table(identifier, schema=reader.schema, properties=TABLE_PROPERTIES)
    table = lake.load_table(identifier)
    try:
        _commit(table, reader, props)
    except _SchemaChange as error:
        log.info("marts.%s: %s, which Iceberg cannot evolve; replacing the table", name, error.__cause__)
        lake.purge_table(identifier)  # the files of the old schema would otherwise stay for good
        table = lake.create_table(identifier, schema=reader.schema, properties=TABLE_PROPERTIES)
        _commit(table, reader, props)
    snapshot = table.current_snapshot()  # the commit updated `table`: this is its snapshot
    assert snapshot is not None
    _expire_old_snapshots(table)
    return snapshot.snapshot_id


class _SchemaChange(ValueError):
    """The mart's columns changed in a way Iceberg's schema evolution cannot follow."""


def _commit(table: Table, reader: pa.RecordBatchReader, props: dict[str, str]) -> None:
    """One transaction, one snapshot: the schema aligned, every current file out, the mart's in."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    written: list[str] = []
    try:
        with table.transaction() as tx:
            try:
                _align_schema(tx, reader.schema)
            except Exception as error:
                raise _SchemaChange(str(error)) from error
            with tx.update_snapshot(snapshot_properties=props).overwrite() as overwrite:
                for data_file in _current_data_files(table):
                    overwrite.delete_data_file(data_file)
                for data_file in _dataframe_to_data_files(
                    table_metadata=tx.table_metadata, df=reader, io=table.io, write_uuid=overwrite.commit_uuid
                ):
                    written.append(data_file.file_path)
                    overwrite.append_data_file(data_file)
    except BaseException:
        for path in written:  # files no snapshot will ever reference
            with contextlib.suppress(OSError):
                table.io.delete(path)
        raise


def _align_schema(tx: Any, schema: pa.Schema) -> None:
    """Make the table's columns the mart's: add, widen, and drop what the mart no longer has."""
    gone = {field.name for field in tx.table_metadata.schema().fields} - set(schema.names)
    with tx.update_schema() as update:
        update.union_by_name(schema)
        for column in sorted(gone):
            update.delete_column(column)


def _current_data_files(table: Table) -> list[Any]:
    """Every data file the table's current snapshot holds."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    return [
        entry.data_file
        for manifest in snapshot.manifests(table.io)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
    ]


def _expire_old_snapshots(table: Table) -> None:
    """Keep the last KEEP_SNAPSHOTS snapshots; delete the data files only expired ones held
    (pyiceberg's expiry removes snapshots from the metadata, not their files)."""
    snapshots = sorted(table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number))
    old, kept = snapshots[:-KEEP_SNAPSHOTS], snapshots[-KEEP_SNAPSHOTS:]
    if not old:
        return

    def files(snapshot: Any) -> set[str]:
        return {
            entry.data_file.file_path
            for manifest in snapshot.manifests(table.io)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        }

    doomed = set().union(*(files(s) for s in old)) - set().union(*(files(s) for s in kept))
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in old]).commit()
    for path in doomed:
        try:
            table.io.delete(path)
        except OSError as error:
            log.warning("marts table %s: could not delete the expired file %s: %s", table.name(), path, error)
