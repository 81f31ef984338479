"""The dbt manifest: parsed once per version of the project's code, whatever the lake home."""

from __future__ import annotations

import shutil

import pytest

from ingestion import streams as registry
from orchestration import manifest


@pytest.fixture
def project(lake_home, tmp_path, monkeypatch):
    """A copy of the dbt project, so that the test can change its code."""
    copy = tmp_path / "dbt_project"
    shutil.copytree(manifest.DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    monkeypatch.setattr(manifest, "DBT_PROJECT_DIR", copy)
    monkeypatch.setattr(manifest, "PARSED_DIR", copy / "target" / "parsed")
    return copy


def test_a_second_home_reads_the_manifest_parsed_for_the_first(project, tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "one"))
    parsed = manifest.manifest_path()
    assert "prices_symbol_stats" in manifest.mart_names()

    def no_second_parse(folder, _project):
        raise AssertionError(f"parsed again into {folder}")

    monkeypatch.setattr(manifest, "_parse_into", no_second_parse)
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "two"))
    assert manifest.manifest_path() == parsed


def test_a_change_to_the_projects_code_is_a_new_version(project):
    before = manifest.code_version()
    (project / ".user.yml").write_text("id: written by dbt, not code\n")
    assert manifest.code_version() == before
    model = next((project / "models").rglob("*.sql"))
    model.write_text(model.read_text() + "\n-- changed\n")
    assert manifest.code_version() != before


def test_a_project_that_does_not_parse_says_so_in_dbts_words(project):
    (project / "models" / "broken.sql").write_text("select * from {{ ref('no_such_model') }}\n")
    with pytest.raises(manifest.ParseFailed, match="no_such_model"):
        manifest.manifest_path()


@pytest.fixture
def declared_stream(tmp_path, monkeypatch):
    """A stream declared in LAKEHOUSE_STREAMS_DIR, the registry read again with it and without it after."""
    folder = tmp_path / "streams"
    folder.mkdir()
    path = folder / "sensors.yml"
    path.write_text("topics:\n  sensors.readings:\n    fields:\n      reading_id: string\n")
    monkeypatch.setenv("LAKEHOUSE_STREAMS_DIR", str(folder))
    registry._registry.cache_clear()
    yield path
    monkeypatch.delenv("LAKEHOUSE_STREAMS_DIR")
    registry._registry.cache_clear()


def test_with_a_declared_stream_both_the_project_and_the_declaration_make_the_version(project, declared_stream):
    before = manifest.code_version()
    assert manifest.project_dir() != project  # dbt runs in the project composed under the home
    model = next((project / "models").rglob("*.sql"))
    model.write_text(model.read_text() + "\n-- changed\n")
    changed = manifest.code_version()
    assert changed != before
    declared_stream.write_text(declared_stream.read_text() + "      value: double\n")
    registry._registry.cache_clear()
    assert manifest.code_version() != changed
