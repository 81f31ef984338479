"""The dbt manifest: parsed once per version of the project's code, whatever the lake home."""

from __future__ import annotations

import shutil

import pytest

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

    def no_second_parse(folder):
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
