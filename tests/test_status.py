"""`lakehouse status` tells an operator whether data is fresh and complete, what a gate set aside, and what blocks."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from ingestion import duck
from tests import lake_tables
from tests.cli import lakehouse, run
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration


def status() -> dict:
    document = json.loads(lakehouse("status", "--json"))
    return {
        "topics": {t["topic"]: t for t in document["topics"]},
        "marts": {m["mart"]: m for m in document["marts"]},
    }


def test_status_after_a_drain_and_build_then_a_row_set_aside_then_a_blocked_gate(kafka_env, lake_home, monkeypatch):
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
    built = lakehouse("build", "prices")  # exits 0: the row is only set aside
    assert "gate prices/raw_prices: 1 of 1 rows set aside" in built
    assert "set aside prices[" in built and "price = -1.0 fails expect_column_values_to_be_between" in built
    assert "prices_symbol_stats: 5 rows" in built
    prices = status()["topics"]["prices"]
    assert prices["gates"] == ["raw_prices: passed, 1 of 1 rows set aside"] and not prices["failing"]
    assert (prices["stored"], prices["set_aside"], prices["quarantined"]) == (301, 1, 0)
    verified = json.loads(lakehouse("verify", "prices", "--json"))
    assert sum(c["set_aside"] for c in verified) == 1 and all(c["ok"] for c in verified)
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal, so no cell is wrapped
    table = lakehouse("status")
    assert "301 (1 set aside)" in table and "prices_symbol_stats" in table
    assert "set aside" in lakehouse("verify", "prices")

    # A broken producer: every tick of the next batch under an unknown symbol blocks the gate.
    for _ in range(10):
        producer.produce("prices", key=b"X", value=b'{"ts": "2021-03-10 16:21:32.000", "symbol": "APPL", "price": 1}')
    producer.flush(10)
    lakehouse("drain", "prices")
    blocked = run("build", "prices")
    assert blocked.returncode == 1
    assert (
        "gate prices/raw_prices: BLOCKED: expect_column_values_to_be_in_set(symbol) failed on 10 of 10"
        in blocked.stdout
    )
    assert "what to do: the marts keep their last good state" in blocked.stdout
    assert "prices: dbt models not built, a quality gate blocked" in blocked.stdout
    prices = status()["topics"]["prices"]
    assert prices["gates"][0].startswith("raw_prices: BLOCKED: expect_column_values_to_be_in_set(symbol)")
    assert prices["failing"] and prices["set_aside"] == 1
    table = lakehouse("status")
    assert "BLOCKED" in table and "expectations/prices/raw_prices.json" in table


def test_status_counts_what_staging_left_out_per_stream_and_reason(kafka_env, lake_home, monkeypatch):
    recreate_topics(kafka_env, "prices", partitions=1)
    lakehouse("produce", "prices", "--count", "20")
    producer = Producer({"bootstrap.servers": kafka_env})
    for _ in range(2):
        producer.produce("prices", key=b"AAPL", value=None)  # tombstones: staging leaves them out
    producer.flush(10)
    assert json.loads(lakehouse("status", "--json"))["rejected"] == {}  # nothing built yet

    lakehouse("drain", "prices")
    lakehouse("build", "prices")
    assert json.loads(lakehouse("status", "--json"))["rejected"] == {"prices": {"tombstone": 2}}
    with duck.connect(str(lake_home / "warehouse.duckdb"), read_only=True) as con:
        kept = con.execute("select count(*) from stg_prices__ticks").fetchone()[0]
        rejected = con.execute("select row_id, rejection_reason, kafka_offset from prices_rejected_rows").fetchall()
    raw = lake_tables.read_table(lake_home, "raw", "prices", ("_kafka_offset",)).num_rows
    assert (raw, kept) == (22, 20)
    assert sorted(rejected) == [("AAPL", "tombstone", 20), ("AAPL", "tombstone", 21)]
    monkeypatch.setenv("COLUMNS", "200")
    table = lakehouse("status")
    assert "left out by staging" in table and "tombstone: 2" in table
