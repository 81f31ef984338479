"""How the tests read the lake: only through the Iceberg catalog's current snapshots, with
pyiceberg alone, independently of the product's own readers."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError


def lake_catalog(home: Path) -> SqlCatalog:
    uri = os.environ.get("LAKEHOUSE_CATALOG_URI") or f"sqlite:///{home / 'catalog.db'}"
    # SQLAlchemy reads a bare postgresql:// as psycopg 3; pyiceberg's extra brings psycopg2.
    uri = uri.replace("postgresql://", "postgresql+psycopg2://", 1) if uri.startswith("postgresql://") else uri
    warehouse = os.environ.get("LAKEHOUSE_WAREHOUSE") or f"file://{home / 'warehouse'}"
    return SqlCatalog("lakehouse", uri=uri, warehouse=warehouse, **_s3())


def _s3() -> dict[str, str]:
    """How pyiceberg reaches an S3 warehouse, from the same variables the product reads."""
    if not os.environ.get("LAKEHOUSE_S3_ENDPOINT"):
        return {}
    return {
        "s3.endpoint": os.environ["LAKEHOUSE_S3_ENDPOINT"],
        "s3.access-key-id": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "s3.secret-access-key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "s3.region": os.environ.get("AWS_REGION", "us-east-1"),
    }


def table_name(topic: str) -> str:
    return topic.replace(".", "_").replace("-", "_")


def read_table(home: Path, namespace: str, topic: str, columns: tuple[str, ...] = ("*",)) -> pa.Table:
    """The table at its current snapshot (an empty table when it does not exist yet)."""
    try:
        table = lake_catalog(home).load_table(f"{namespace}.{table_name(topic)}")
    except NoSuchTableError:
        return pa.table({c: pa.array([], pa.int64()) for c in columns if c != "*"})
    if table.current_snapshot() is None:
        return pa.table({c: pa.array([], pa.int64()) for c in columns if c != "*"})
    return table.scan(selected_fields=columns).to_arrow()


def offsets(home: Path, topic: str) -> pa.Table:
    """`_kafka_partition, _kafka_offset` of every raw row (tombstones included) and every
    quarantined record of the topic, in one table."""
    columns = ("_kafka_partition", "_kafka_offset")
    parts = [read_table(home, ns, topic, columns).select(list(columns)) for ns in ("raw", "quarantine")]
    return pa.concat_tables(
        [p.cast(pa.schema([("_kafka_partition", pa.int32()), ("_kafka_offset", pa.int64())])) for p in parts]
    )


def snapshot_summary(home: Path, namespace: str, topic: str) -> dict[str, str]:
    table = lake_catalog(home).load_table(f"{namespace}.{table_name(topic)}")
    snapshot = table.current_snapshot()
    return dict(snapshot.summary.additional_properties) if snapshot else {}
