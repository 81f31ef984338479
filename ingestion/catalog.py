"""The lake's Iceberg catalog: one SQL catalog named `lakehouse`, shared by every engine.

The catalog is the schema that both Iceberg's JDBC catalog (Spark, Trino, Flink) and pyiceberg's
`SqlCatalog` use, in SQLite by default and in PostgreSQL where several machines share one lake;
the tables' files live in the warehouse, a local folder or an `s3://bucket/prefix`. Namespaces:
`raw` (a topic's records), `quarantine` (its records that broke the contract) and `marts` (the
published marts).

Every table is created with commit retries off: pyiceberg otherwise re-applies a commit that lost
a race on top of the winner's snapshot, and a drain or a publication must re-plan from the new
snapshot instead of committing what it planned against the old one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ingestion.config import Settings

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog

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


def catalog(settings: Settings) -> SqlCatalog:
    """The lake's catalog, its namespaces created on first use."""
    from pyiceberg.catalog.sql import SqlCatalog

    uri, warehouse = sqlalchemy_uri(settings.catalog_uri), warehouse_uri(settings)
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
    if warehouse.startswith("file://"):
        os.makedirs(warehouse.removeprefix("file://"), exist_ok=True)
    # Machines opening a fresh shared catalog at once race to create its tables and namespaces
    # (pyiceberg checks, then creates); a loser finds them made by the winner on a second look.
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(3):
        try:
            opened = SqlCatalog(CATALOG_NAME, uri=uri, warehouse=warehouse, **file_io_properties(settings))
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
