"""`lakehouse docs`: the dbt docs site, generated from a copy of the latest good build and served.

`dbt docs generate` reads the database for its catalog (column types, row counts); run against
the warehouse it would take the lock every build needs, so it runs against a copy of the latest
snapshot (`LAKEHOUSE_HOME/docs/warehouse.duckdb`, the `docs` target of the profile).
"""

from __future__ import annotations

import functools
import http.server
import shutil
from pathlib import Path

from ingestion.config import Settings
from orchestration.snapshots import latest_snapshot


class NothingBuilt(RuntimeError):
    pass


def generate(settings: Settings) -> Path:
    """Build the docs site; return its folder (index.html, manifest.json, catalog.json)."""
    from orchestration.defs.dbt import LakehouseDbtCli, dbt_project

    snapshot = latest_snapshot(settings)
    if snapshot is None:
        raise NothingBuilt("nothing is built yet: run `lakehouse build` (or `make demo`) first")
    folder = settings.home / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(snapshot, folder / "warehouse.duckdb")
    site = folder / "site"
    dbt = LakehouseDbtCli(project_dir=dbt_project(), target="docs")  # exports the environment dbt needs
    invocation = dbt.cli(["docs", "generate", "--target-path", str(site)], raise_on_error=True)
    invocation.wait()
    return site


def serve(site: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the site until interrupted."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    with http.server.ThreadingHTTPServer((host, port), handler) as server:
        server.serve_forever()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
