"""The dbt project's manifest, parsed once per version of the project's code, read without Dagster.

`dbt parse` takes 15 to 80 s here and importing dagster-dbt about 9 s, so a command that only
needs the models' names (`lakehouse status`, the demo) must not do either. The manifest depends on
nothing but the project's files, the declared streams' generated models and dbt's version (the lake
home reaches the models at run time, through macros), so it is parsed once per version of those, into
`dbt_project/target/parsed/<version>/`, shared by every lake home and command, and read from there.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ingestion.config import REPO_ROOT, export_for_subprocesses, settings
from orchestration.generated import NOT_CODE, write_generated

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
PARSED_DIR = DBT_PROJECT_DIR / "target" / "parsed"


class ParseFailed(RuntimeError):
    """The dbt project does not parse; the message carries dbt's own words."""


def project_dir() -> Path:
    """The folder dbt runs in: the project, or with declared streams the project composed with
    their models under the lake home (`orchestration/generated.py`), written now."""
    from ingestion.streams import CONTRACTS

    return write_generated(settings(), CONTRACTS.values(), DBT_PROJECT_DIR)


def code_version(project: Path | None = None) -> str:
    """A digest of the dbt project's files, the declared streams' models and dbt's version: what
    the manifest follows from."""
    project = project or project_dir()
    digest = hashlib.sha256(importlib.metadata.version("dbt-core").encode())
    # A composed project links the project's folders in (which a walk of it would not enter):
    # its own files are the generated ones, and the manifest names the folder it was parsed in.
    roots = [DBT_PROJECT_DIR]
    if project != DBT_PROJECT_DIR:
        digest.update(str(project).encode() + b"\0")
        roots.append(project / "generated")
    for root in roots:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root.parent)
            if path.is_file() and relative.parts[1] not in NOT_CODE and not relative.name.startswith("."):
                digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def manifest_path() -> Path:
    """The manifest of the project as its code stands, parsed now if no command parsed it before."""
    project = project_dir()
    folder = PARSED_DIR / code_version(project)
    if not (folder / "manifest.json").exists():
        _parse_into(folder, project)
    return folder / "manifest.json"


def manifest() -> dict[str, Any]:
    """The manifest of the project as its code stands, as dbt wrote it."""
    return _read(manifest_path())


@functools.cache
def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _parse_into(folder: Path, project: Path) -> None:
    """`dbt parse` into a folder of its own, then moved into place whole: commands parsing at once
    never read a half-written manifest, and the first to finish wins."""
    PARSED_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".parsing-", dir=PARSED_DIR))
    dbt = Path(sys.executable).parent / "dbt"
    command = [str(dbt), "parse", "--project-dir", str(project), "--target-path", str(scratch)]
    env = {**export_for_subprocesses(), "DBT_LOG_PATH": str(scratch)}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not (scratch / "manifest.json").exists():
            said = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise ParseFailed(f"the dbt project in {project} does not parse:\n{said}")
        try:
            os.rename(scratch, folder)
        except OSError:  # another command parsed the same version first
            if not (folder / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def model_nodes() -> list[dict[str, Any]]:
    """Every dbt model of the manifest, as dbt describes it."""
    return [n for n in manifest()["nodes"].values() if n["resource_type"] == "model"]


def mart_names() -> list[str]:
    """Every mart of the dbt project, by name."""
    return sorted(n["name"] for n in model_nodes() if n["fqn"][1] == "marts")


def model_meta() -> dict[str, dict[str, Any]]:
    """Every dbt model's `meta`, by name."""
    return {n["name"]: n.get("config", {}).get("meta", {}) for n in model_nodes()}


def model_streams() -> dict[str, str]:
    """The stream (folder under the layer) of every dbt model, by name."""
    return {n["name"]: n["fqn"][2] for n in model_nodes() if len(n["fqn"]) > 3}
