"""The lake's Iceberg catalog: one SQL catalog named `lakehouse`, shared by every engine.

The catalog is the schema that both Iceberg's JDBC catalog (Spark, Trino, Flink) and pyiceberg's
`SqlCatalog` use, in SQLite by default and in PostgreSQL where several machines share one lake;
the tables' files live in the warehouse, a local folder or an `s3://bucket/prefix`. Namespaces:
`raw` (a topic's records), `quarantine` (its records that broke the contract) and `marts` (the
published marts).

Every table is created with commit retries off: pyiceberg otherwise re-applies a commit that lost
a race on top of the winner's snapshot, and a drain or a publication must re-plan from the new
snapshot instead of committing what it planned against the old one.

Commits cost the same however many snapshots a table keeps: pyiceberg 0.12 works out a
transaction's metadata (the table's, with the updates applied) each time it is asked, about 18
times a commit plus once in the catalog, and deep-copies all of it each time, every snapshot
included; a commit took 0.6 s at 400 snapshots, and a week of drains keeps thousands. The
catalog here works it out once per update and without the copy, which guards nothing: the
metadata models are frozen.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime
from typing import TYPE_CHECKING

from ingestion.config import Settings

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table, Transaction
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.update import TableUpdate

CATALOG_NAME = "lakehouse"
NAMESPACES = ("raw", "quarantine", "marts")
# pyiceberg's default is 4 retries that rebase a commit onto whatever won; a loser must re-plan.
TABLE_PROPERTIES = {"commit.retry.num-retries": "0", "format-version": "2"}


def warehouse_uri(settings: Settings) -> str:
    """The warehouse as a URI: `s3://…` as given, a local folder as `file://<absolute path>`."""
    location = settings.warehouse
    if "://" in location:
        return location.rstrip("/")
    return "file://" + os.path.abspath(os.path.expanduser(location))


def is_object_storage(settings: Settings) -> bool:
    return warehouse_uri(settings).startswith(("s3://", "s3a://"))


def s3_region() -> str:
    # Without a region pyiceberg asks AWS where the bucket is, which a local S3 server cannot answer.
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def file_io_properties(settings: Settings) -> dict[str, str]:
    """How pyiceberg reaches the warehouse's files: S3 credentials from the usual `AWS_*`
    variables, the endpoint from `LAKEHOUSE_S3_ENDPOINT` (an S3-compatible server)."""
    if not is_object_storage(settings):
        return {}
    properties = {"s3.region": s3_region()}
    if settings.s3_endpoint:
        properties["s3.endpoint"] = settings.s3_endpoint
    for key, variable in (
        ("s3.access-key-id", "AWS_ACCESS_KEY_ID"),
        ("s3.secret-access-key", "AWS_SECRET_ACCESS_KEY"),
        ("s3.session-token", "AWS_SESSION_TOKEN"),
    ):
        if os.environ.get(variable):
            properties[key] = os.environ[variable]
    return properties


def sqlalchemy_uri(uri: str) -> str:
    """The catalog URI with its driver named: SQLAlchemy 2.1 reads a bare `postgresql://` as
    psycopg 3, while pyiceberg's `sql-postgres` extra brings psycopg2."""
    for bare in ("postgresql://", "postgres://"):
        if uri.startswith(bare):
            return "postgresql+psycopg2://" + uri.removeprefix(bare)
    return uri


def catalog_exists(settings: Settings) -> bool:
    """False only where the catalog is surely not there yet: a SQLite file not created."""
    uri = sqlalchemy_uri(settings.catalog_uri)
    return not uri.startswith("sqlite:///") or os.path.exists(uri.removeprefix("sqlite:///"))


def catalog(settings: Settings) -> SqlCatalog:
    """The lake's catalog, its namespaces created on first use; opened once per process and
    place (an open costs a SQLAlchemy engine and a look at the namespaces)."""
    key = (sqlalchemy_uri(settings.catalog_uri), warehouse_uri(settings), tuple(file_io_properties(settings).items()))
    if not catalog_exists(settings):  # a SQLite file deleted since (a test's lake, a reset)
        _open.cache_clear()
    return _open(*key)


@functools.lru_cache(maxsize=8)
def _open(uri: str, warehouse: str, io_properties: tuple[tuple[str, str], ...]) -> SqlCatalog:
    SqlCatalog = _catalog_class()

    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
    if warehouse.startswith("file://"):
        os.makedirs(warehouse.removeprefix("file://"), exist_ok=True)
    # Machines opening a fresh shared catalog at once race to create its tables and namespaces
    # (pyiceberg checks, then creates); a loser finds them made by the winner on a second look.
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(3):
        try:
            # An open catalog outlives connections a server may drop (a PostgreSQL restart): each
            # is checked as it is taken from the pool.
            ping = {} if uri.startswith("sqlite") else {"pool_pre_ping": "true"}
            opened = SqlCatalog(CATALOG_NAME, uri=uri, warehouse=warehouse, **dict(io_properties), **ping)
            break
        except (IntegrityError, ProgrammingError):
            if attempt == 2:
                raise
    for namespace in NAMESPACES:
        try:
            opened.create_namespace_if_not_exists(namespace)
        except IntegrityError:
            if not opened.namespace_exists(namespace):
                raise
    return opened


def transaction(table: Table) -> Transaction:
    """A transaction on `table` whose metadata is worked out once per update (see the top)."""
    return _transaction_class()(table)


def updated_metadata(
    base: TableMetadata, updates: tuple[TableUpdate, ...], metadata_location: str | None = None
) -> TableMetadata:
    """`base` with `updates` applied: pyiceberg's `update_table_metadata` (0.12, pinned) without
    its closing deep copy."""
    from pyiceberg.table.update import _apply_table_update, _TableMetadataUpdateContext, _update_table_metadata_log
    from pyiceberg.utils.datetime import datetime_to_millis

    context = _TableMetadataUpdateContext()
    metadata = base
    for update in updates:
        metadata = _apply_table_update(update, metadata, context)
    if context.has_changes():
        if metadata_location:
            metadata = _update_table_metadata_log(metadata, metadata_location, base.last_updated_ms)
        if base.last_updated_ms == metadata.last_updated_ms:
            metadata = metadata.model_copy(update={"last_updated_ms": datetime_to_millis(datetime.now().astimezone())})
    metadata.spec().check_compatible(metadata.schema())
    metadata.sort_order().check_compatible(metadata.schema())
    return metadata


@functools.cache
def _transaction_class() -> type:
    from pyiceberg.table import Transaction

    class _Transaction(Transaction):
        _memo: tuple = (None, -1, None)  # (the table's metadata, the updates applied, the result)

        @property
        def table_metadata(self) -> TableMetadata:
            base, applied, result = self._memo
            if base is not self._table.metadata or applied != len(self._updates):
                result = updated_metadata(self._table.metadata, self._updates)
                self._memo = (self._table.metadata, len(self._updates), result)
            return result

    return _Transaction


@functools.cache
def _catalog_class() -> type:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import StagedTable
    from pyiceberg.table.locations import load_location_provider

    class _LakeCatalog(SqlCatalog):
        def _update_and_stage_table(self, current_table, table_identifier, requirements, updates):
            if current_table is None:  # a table being created: pyiceberg's own, validated
                return super()._update_and_stage_table(current_table, table_identifier, requirements, updates)
            for requirement in requirements:
                requirement.validate(current_table.metadata)
            metadata = updated_metadata(current_table.metadata, updates, current_table.metadata_location)
            version = self._parse_metadata_version(current_table.metadata_location) + 1
            location = load_location_provider(metadata.location, metadata.properties).new_table_metadata_file_location(
                version
            )
            return StagedTable(
                identifier=table_identifier,
                metadata=metadata,
                metadata_location=location,
                io=self._load_file_io(properties=metadata.properties, location=location),
                catalog=self,
            )

    return _LakeCatalog
