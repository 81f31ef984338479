"""The prices pipeline on a real broker and a real Dagster instance: tick, run, raw files, gate, dbt, marts."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ingestion.config import settings
from ingestion.drain import drain
from ingestion.produce import produce
from ingestion.streams import prices
from orchestration.dagster_home import prepare_instance
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

MARTS = [dg.AssetKey(["marts", "prices_symbol_stats"]), dg.AssetKey(["marts", "prices_outliers"])]


def sent_ticks(count: int, seed: int) -> pd.DataFrame:
    ticks = prices.ticks(seed=seed)
    return pd.DataFrame([json.loads(next(ticks)[1]) for _ in range(count)])


def tick(defs: dg.Definitions, instance: dg.DagsterInstance):
    sensor = defs.get_sensor_def("prices_drain_sensor")
    return sensor(dg.build_sensor_context(instance=instance, definitions=defs))


def run(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("prices_pipeline")
    return job.execute_in_process(
        run_config=request.run_config, instance=instance, tags=request.tags, raise_on_error=False
    )


def warehouse(sql: str) -> pd.DataFrame:
    with duckdb.connect(str(settings().warehouse_path), read_only=True) as con:
        return con.execute(sql).df()


def expected_stats(sent: pd.DataFrame) -> pd.DataFrame:
    grouped = sent.groupby("symbol")["price"]
    return pd.DataFrame(
        {
            "tick_count": grouped.count(),
            "min_price": grouped.min(),
            "max_price": grouped.max(),
            "mean_price": grouped.mean(),
            "stddev_price": grouped.std(),  # sample standard deviation, as the mart documents
        }
    ).sort_index()


@pytest.fixture
def pipeline(kafka_env, lake_home):
    from orchestration.definitions import defs

    recreate_topics(kafka_env, "prices")
    instance = dg.DagsterInstance.from_config(str(prepare_instance(settings())))
    yield defs(), instance
    instance.dispose()


def test_a_sensor_tick_plans_a_run_that_drains_gates_and_builds_marts_equal_to_independent_stats(pipeline):
    defs, instance = pipeline
    assert isinstance(tick(defs, instance), dg.SkipReason)  # nothing produced yet

    produce(prices.CONTRACT, prices.ticks(seed=7), count=3000, progress=False)
    sent = sent_ticks(3000, seed=7)
    request = tick(defs, instance)
    assert isinstance(request, dg.RunRequest)
    planned = request.run_config["ops"]["raw__prices"]["config"]["ranges"]
    assert sum(int(r.split("-")[1]) - int(r.split(":")[1].split("-")[0]) for r in planned) == 3000

    result = run(defs, instance, request)
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {dg.AssetKey(["raw", "prices"]), dg.AssetKey(["staging", "stg_prices__ticks"]), *MARTS} <= materialized
    raw = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", "prices"])
    )
    assert (raw["rows"].value, raw["quarantined"].value, raw["lag"].value) == (3000, 0, 0)
    assert "| partition | offsets | rows | quarantined |" in raw["partitions"].value
    gate = next(e for e in result.get_asset_check_evaluations() if e.check_name == "raw_prices")
    assert gate.passed
    assert list((settings().raw_dir / "prices").rglob("*.parquet"))
    mart = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["marts", "prices_symbol_stats"])
    )
    assert mart["dagster/row_count"].value == 5
    assert mart["preview"].value.startswith("| symbol | tick_count |") and "AAPL" in mart["preview"].value
    assert mart["chart"].value.startswith("![prices_symbol_stats](data:image/svg+xml;base64,")

    stats = warehouse("select * from prices_symbol_stats").set_index("symbol").sort_index()
    expected = expected_stats(sent)
    pd.testing.assert_frame_equal(stats[expected.columns], expected, check_dtype=False, check_names=False)

    outliers = warehouse("select symbol, price from prices_outliers order by symbol, price")
    means, sds = expected["mean_price"], expected["stddev_price"]
    z = (sent["price"] - sent["symbol"].map(means)) / sent["symbol"].map(sds)
    independent = sent[z.abs() > 3].sort_values(["symbol", "price"])[["symbol", "price"]]
    assert outliers.to_numpy().tolist() == independent.to_numpy().tolist()

    assert isinstance(tick(defs, instance), dg.SkipReason)  # everything planned is stored


def built_then_a_negative_price(defs: dg.Definitions, instance: dg.DagsterInstance, good: int) -> pd.DataFrame:
    """Build the marts from `good` ticks, then send a tick with a negative price; the marts as built."""
    produce(prices.CONTRACT, prices.ticks(seed=3), count=good, progress=False)
    assert run(defs, instance, tick(defs, instance)).success
    before = warehouse("select * from prices_symbol_stats order by symbol")
    bad = json.dumps({"ts": "2021-03-10 16:21:32.000", "symbol": "AAPL", "price": -5.0}).encode()
    produce(prices.CONTRACT, iter([(b"AAPL", bad)]), progress=False)
    return before


def test_an_invalid_price_fails_the_gate_and_blocks_the_marts_now_and_later(pipeline):
    defs, instance = pipeline
    before = built_then_a_negative_price(defs, instance, good=500)
    result = run(defs, instance, tick(defs, instance))

    gate = next(e for e in result.get_asset_check_evaluations() if e.check_name == "raw_prices")
    assert not gate.passed
    assert gate.metadata["failing_rows"].value == 1
    assert "-5.0" in gate.metadata["result"].value
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["raw", "prices"]) in materialized
    assert not set(MARTS) & materialized
    pd.testing.assert_frame_equal(warehouse("select * from prices_symbol_stats order by symbol"), before)

    automation = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert all(automation.get_num_requested(key) == 0 for key in MARTS)


def test_a_build_started_between_a_drain_and_its_gate_reads_only_rows_the_gate_passed(pipeline):
    defs, instance = pipeline
    before = built_then_a_negative_price(defs, instance, good=400)

    # A drain commits the bad tick and good ones; before its gate runs, another run builds the models.
    produce(prices.CONTRACT, prices.ticks(seed=6), count=100, progress=False)
    drain(prices.CONTRACT)
    from orchestration.defs.dbt import dbt_resource

    invocation = dbt_resource().cli(["build", "--select", "source:raw.prices+"], raise_on_error=False)
    invocation.wait()

    assert invocation.is_successful()
    assert warehouse("select count(*) as n from stg_prices__ticks")["n"][0] == 400
    pd.testing.assert_frame_equal(warehouse("select * from prices_symbol_stats order by symbol"), before)
