"""`lakehouse docs` serves the dbt docs site built from the latest good build, without the warehouse lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from tests.conftest import free_port_pair, recreate_topics

pytestmark = pytest.mark.integration

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))


def lakehouse(*args: str) -> str:
    result = subprocess.run([LAKEHOUSE, *args], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def fetch(url: str, timeout_s: float = 120) -> bytes:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_docs_site_shows_every_model_with_lineage_from_topic_to_mart(kafka_env, lake_home):
    recreate_topics(kafka_env, "prices")
    lakehouse("produce", "prices", "--count", "50")
    lakehouse("drain", "prices")
    lakehouse("build", "prices")
    port = free_port_pair()
    # The warehouse stays writable all along: docs read a copy.
    writer = duckdb.connect(str(lake_home / "warehouse.duckdb"))
    server = subprocess.Popen([LAKEHOUSE, "docs", "--port", str(port)], env=dict(os.environ), stdout=subprocess.PIPE)
    try:
        assert b"<html" in fetch(f"http://127.0.0.1:{port}/index.html").lower()
        manifest = json.loads(fetch(f"http://127.0.0.1:{port}/manifest.json"))
        models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
        assert {
            "stg_prices__ticks",
            "prices_symbol_stats",
            "stg_cms__provider_services",
            "office_revenue_10min",
        } <= set(models)
        assert all(n["description"] for n in models.values()), "every model is described"
        parents = manifest["parent_map"]
        assert parents[models["stg_prices__ticks"]["unique_id"]] == ["source.lakehouse.raw.prices"]
        assert models["stg_prices__ticks"]["unique_id"] in parents[models["prices_symbol_stats"]["unique_id"]]
        catalog = json.loads(fetch(f"http://127.0.0.1:{port}/catalog.json"))
        assert "model.lakehouse.prices_symbol_stats" in catalog["nodes"]
    finally:
        writer.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
