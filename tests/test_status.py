"""`lakehouse status` tells an operator whether data is fresh and complete, and what fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))


def lakehouse(*args: str, ok: bool = True) -> str:
    result = subprocess.run([LAKEHOUSE, *args], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0 or not ok, result.stdout + result.stderr
    return result.stdout


def status() -> dict:
    document = json.loads(lakehouse("status", "--json"))
    return {
        "topics": {t["topic"]: t for t in document["topics"]},
        "marts": {m["mart"]: m for m in document["marts"]},
    }


def test_status_after_a_drain_and_build_then_after_a_failing_check(kafka_env, lake_home, monkeypatch):
    recreate_topics(kafka_env, "prices")
    lakehouse("produce", "prices", "--count", "300")
    before = status()["topics"]["prices"]
    assert (before["broker_end"], before["stored"], before["lag"], before["last_drain"]) == (300, 0, 300, None)

    lakehouse("drain", "prices")
    lakehouse("build", "prices")
    now = status()
    prices = now["topics"]["prices"]
    assert (prices["broker_end"], prices["stored"], prices["lag"]) == (300, 300, 0)
    assert prices["last_drain"] is not None and prices["gates"] == ["raw_prices: passed"] and not prices["failing"]
    assert now["marts"]["prices_symbol_stats"]["rows"] == 5 and now["marts"]["prices_symbol_stats"]["built"]
    assert not now["marts"]["prices_symbol_stats"]["stale"]
    assert now["marts"]["cms_procedure_reach"]["rows"] is None  # never built

    producer = Producer({"bootstrap.servers": kafka_env})
    producer.produce("prices", key=b"AAPL", value=b'{"ts": "2021-03-10 16:21:32.000", "symbol": "AAPL", "price": -1}')
    producer.flush(10)
    lakehouse("drain", "prices")
    lakehouse("build", "prices", ok=False)
    prices = status()["topics"]["prices"]
    assert prices["gates"] == ["raw_prices: FAILED 1 of 1 rows"] and prices["failing"]
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal, so no cell is wrapped
    table = lakehouse("status")
    assert "FAILED 1 of 1 rows" in table and "prices_symbol_stats" in table
