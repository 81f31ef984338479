"""Every DuckDB the product opens holds at most its configured memory and spills under the home."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from ingestion import duck
from ingestion.config import export_for_subprocesses, settings


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    return tmp_path


def test_a_connection_is_bounded_to_the_configured_memory_and_spills_under_the_home(home, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DUCKDB_MEMORY_LIMIT", "512MiB")
    with duck.connect() as con:
        limit, temp = con.execute(
            "select current_setting('memory_limit'), current_setting('temp_directory')"
        ).fetchone()
    assert limit == "512.0 MiB"
    assert Path(temp).parent == home / "duckdb_tmp"


def test_two_connections_never_spill_into_the_same_folder(home):
    with duck.connect() as one, duck.connect() as other:
        folders = {con.execute("select current_setting('temp_directory')").fetchone()[0] for con in (one, other)}
    assert len(folders) == 2


def test_the_default_keeps_a_build_under_three_gib(home, monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_DUCKDB_MEMORY_LIMIT", raising=False)
    with duck.connect() as con:
        limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
    assert limit.endswith("GiB") and float(limit.split()[0]) <= 2


def test_dbt_and_the_shell_are_given_the_same_bounds(home, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DUCKDB_MEMORY_LIMIT", "1GB")
    monkeypatch.setattr(os, "environ", os.environ.copy())  # what it exports stays in this test
    env = export_for_subprocesses(settings())
    assert env["LAKEHOUSE_DUCKDB_MEMORY_LIMIT"] == "1GB"
    assert env["LAKEHOUSE_DUCKDB_TEMP_DIR"] == str(home / "duckdb_tmp")
    con = duckdb.connect()
    for statement in duck.set_options_sql(settings()):
        con.execute(statement)
    assert con.execute("select current_setting('memory_limit')").fetchone()[0] == "953.6 MiB"


@pytest.mark.parametrize("value", ["lots", "2", "-1GB", "2 GBs"])
def test_a_memory_limit_that_is_not_a_size_is_refused_by_name(home, monkeypatch, value):
    monkeypatch.setenv("LAKEHOUSE_DUCKDB_MEMORY_LIMIT", value)
    with pytest.raises(ValueError, match="LAKEHOUSE_DUCKDB_MEMORY_LIMIT must be a size"):
        settings()
