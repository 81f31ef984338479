"""`lakehouse docs` serves the dbt docs site built from the latest good build, without the warehouse
lock; a person opening it in a browser finds every stream's models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestion import duck
from tests.browser import chromium, dump_dom, screenshot
from tests.cli import LAKEHOUSE, lakehouse
from tests.conftest import free_port_pair, recreate_topics

pytestmark = pytest.mark.integration


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


@pytest.fixture(scope="module")
def docs_site(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A lake with prices built, and its docs site served; the warehouse is kept open for writing."""
    home = tmp_path_factory.mktemp("docs") / "lake"
    home.mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAKEHOUSE_HOME", str(home))
        env.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
        for name in ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH"):
            env.delenv(name, raising=False)
        recreate_topics(kafka_bootstrap, "prices")
        lakehouse("produce", "prices", "--count", "50")
        lakehouse("drain", "prices")
        lakehouse("build", "prices")
        port = free_port_pair()
        writer = duck.connect(str(home / "warehouse.duckdb"))  # docs read a copy: no lock to take
        server = subprocess.Popen(
            [LAKEHOUSE, "docs", "--port", str(port)], env=dict(os.environ), stdout=subprocess.PIPE
        )
        try:
            url = f"http://127.0.0.1:{port}"
            fetch(f"{url}/index.html")
            yield url, home
        finally:
            writer.close()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def test_the_docs_site_shows_every_model_with_lineage_from_topic_to_mart(docs_site):
    url, _ = docs_site
    assert b"<html" in fetch(f"{url}/index.html").lower()
    manifest = json.loads(fetch(f"{url}/manifest.json"))
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert {"stg_prices__ticks", "prices_symbol_stats", "stg_cms__provider_services", "office_revenue_10min"} <= set(
        models
    )
    assert all(n["description"] for n in models.values()), "every model is described"
    parents = manifest["parent_map"]
    assert parents[models["stg_prices__ticks"]["unique_id"]] == ["source.lakehouse.raw.prices"]
    assert models["stg_prices__ticks"]["unique_id"] in parents[models["prices_symbol_stats"]["unique_id"]]
    catalog = json.loads(fetch(f"{url}/catalog.json"))
    assert "model.lakehouse.prices_symbol_stats" in catalog["nodes"]
    for unique_id, built in catalog["nodes"].items():  # every column of every model built, described
        described = {name for name, column in manifest["nodes"][unique_id]["columns"].items() if column["description"]}
        assert set(built["columns"]) <= described, unique_id


def test_a_person_opening_the_docs_in_a_browser_finds_every_streams_models(docs_site, tmp_path):
    browser = chromium()
    url, _ = docs_site
    page = dump_dom(browser, f"{url}/index.html#!/overview")
    for model in ("prices_symbol_stats", "cms_procedure_reach", "office_revenue_10min", "carepay_claim_stats_by_status",
                  "stedi_customer_risk"):  # fmt: skip
        assert model in page, model
    shot = screenshot(
        browser, f"{url}/index.html#!/model/model.lakehouse.prices_symbol_stats", tmp_path / "dbt-docs.png"
    )
    assert shot.stat().st_size > 10_000
