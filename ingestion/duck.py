"""DuckDB connections that read the lake's Iceberg tables, offline.

The iceberg, avro, httpfs, sqlite and postgres extensions come from the official `duckdb-ext-*`
wheels (pinned with DuckDB itself in pyproject.toml) and are loaded from their package folder;
nothing is ever downloaded at run time.
"""

from __future__ import annotations

import itertools
import os

import duckdb

from ingestion.catalog import is_object_storage, s3_region
from ingestion.config import Settings, duckdb_extensions_dir, made_duckdb_temp_dir, settings

_connections = itertools.count()


def options(s: Settings, spill_to: str) -> dict[str, str | bool]:
    """Every DuckDB the product opens: extensions from the wheels' folder, never from the network,
    and memory bounded, spilling beyond it into `spill_to` under the home's DuckDB folder, a folder
    of its own (DuckDB removes the folder it made when it closes). dbt's profile reads the same
    values from the variables `config.export_for_subprocesses` sets."""
    return {
        "extension_directory": str(duckdb_extensions_dir()),
        "autoinstall_known_extensions": False,
        "memory_limit": s.duckdb_memory_limit,
        "temp_directory": str(made_duckdb_temp_dir(s) / spill_to),
    }


def connect(database: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the product's `options`."""
    spill_to = f"{os.getpid()}-{next(_connections)}"
    return duckdb.connect(database, read_only=read_only, config=options(settings(), spill_to))


def set_options_sql(s: Settings) -> list[str]:
    """The `options` as statements, for DuckDB's own shell (this process becomes it)."""

    def literal(value: str | bool) -> str:
        return str(value).lower() if isinstance(value, bool) else "'" + value.replace("'", "''") + "'"

    return [f"set {name} = {literal(value)};" for name, value in options(s, f"shell-{os.getpid()}").items()]


def read_iceberg(con: duckdb.DuckDBPyConnection, settings: Settings) -> duckdb.DuckDBPyConnection:
    """Let the connection read the lake's Iceberg tables (`iceberg_scan(<metadata location>)`)."""
    con.execute("load avro; load iceberg")
    if is_object_storage(settings):
        con.execute("load httpfs")
        con.execute(s3_secret_sql(settings))
    return con


def s3_secret_sql(settings: Settings) -> str:
    """A DuckDB secret for the warehouse's bucket, from the same variables pyiceberg reads."""

    def quoted(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    options = {
        "type": "s3",
        "key_id": quoted(os.environ.get("AWS_ACCESS_KEY_ID", "")),
        "secret": quoted(os.environ.get("AWS_SECRET_ACCESS_KEY", "")),
        "region": quoted(s3_region()),
    }
    if os.environ.get("AWS_SESSION_TOKEN"):
        options["session_token"] = quoted(os.environ["AWS_SESSION_TOKEN"])
    if settings.s3_endpoint:
        scheme, _, host = settings.s3_endpoint.partition("://")
        options["endpoint"] = quoted(host.rstrip("/") if host else scheme)
        options["use_ssl"] = "true" if scheme == "https" else "false"
        options["url_style"] = "'path'"
    return "create or replace secret lakehouse_s3 (" + ", ".join(f"{k} {v}" for k, v in options.items()) + ")"
