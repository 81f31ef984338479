"""The dbt project's models as its manifest describes them, read without importing Dagster.

`lakehouse status` answers in seconds only if it need not import dagster-dbt (about 9 s here) to
learn the marts' names; the manifest is parsed once per lake home (`orchestration/defs/dbt.py`)
and read from there.
"""

from __future__ import annotations

import json
from typing import Any

from ingestion.config import settings


def model_nodes() -> list[dict[str, Any]]:
    """Every dbt model of the manifest, as dbt describes it."""
    path = settings().dbt_target_dir / "manifest.json"
    if not path.exists():
        from orchestration.defs.dbt import dbt_project

        path = dbt_project().manifest_path  # parses the project, once per lake home
    nodes = json.loads(path.read_text())["nodes"].values()
    return [n for n in nodes if n["resource_type"] == "model"]


def mart_names() -> list[str]:
    """Every mart of the dbt project, by name."""
    return sorted(n["name"] for n in model_nodes() if n["fqn"][1] == "marts")


def model_meta() -> dict[str, dict[str, Any]]:
    """Every dbt model's `meta`, by name."""
    return {n["name"]: n.get("config", {}).get("meta", {}) for n in model_nodes()}


def model_streams() -> dict[str, str]:
    """The stream (folder under the layer) of every dbt model, by name."""
    return {n["name"]: n["fqn"][2] for n in model_nodes() if len(n["fqn"]) > 3}
