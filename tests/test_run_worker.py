"""What makes the warm run worker stale: any file the definitions are made of, and nothing dbt writes."""

from __future__ import annotations

from pathlib import Path

from orchestration.run_worker import code_fingerprint


def _paths() -> set[str]:
    return {path for path, _, _ in code_fingerprint()}


def test_the_whole_dbt_project_counts_but_not_what_dbt_writes_into_it():
    paths = _paths()
    assert any(path.endswith("dbt_project/dbt_project.yml") for path in paths)
    assert any("/dbt_project/tests/" in path for path in paths)
    assert any(path.endswith("orchestration/definitions.py") for path in paths)
    assert not any("/dbt_project/target/" in path or "__pycache__" in path for path in paths)


def test_a_changed_stream_declaration_changes_the_fingerprint(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_STREAMS_DIR", str(tmp_path))
    declaration = tmp_path / "sensors.yml"
    declaration.write_text("topics: {}\n")
    before = code_fingerprint()
    declaration.write_text("topics: {sensors.readings: {}}\n")
    assert code_fingerprint() != before
