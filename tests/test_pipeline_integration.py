"""The prices pipeline on a real broker and a real Dagster instance: tick, run, raw files, gate, dbt, marts."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from ingestion import duck, set_aside
from ingestion.config import settings
from ingestion.drain import drain
from ingestion.produce import produce
from ingestion.streams import prices
from ingestion.verify import verify
from orchestration.commands.dagster_home import prepare_instance
from tests import lake_tables
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

MARTS = [dg.AssetKey(["marts", "prices_symbol_stats"]), dg.AssetKey(["marts", "prices_outliers"])]


def sent_ticks(count: int, seed: int) -> pd.DataFrame:
    ticks = prices.ticks(seed=seed)
    return pd.DataFrame([json.loads(next(ticks)[1]) for _ in range(count)])


def tick(defs: dg.Definitions, instance: dg.DagsterInstance):
    sensor = defs.get_sensor_def("prices_drain_sensor")
    return sensor(dg.build_sensor_context(instance=instance, definitions=defs))


RAW = dg.AssetKey(["raw", "prices"])
STAGING = dg.AssetKey(["staging", "stg_prices__ticks"])


def run(
    defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest, only_raw: bool = False
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("prices_pipeline")
    return job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        tags=request.tags,
        raise_on_error=False,
        asset_selection=[RAW] if only_raw else None,
    )


def gate_of(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "raw_prices")


def materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def tick_json(symbol: str, price: float) -> tuple[bytes, bytes]:
    return symbol.encode(), json.dumps({"ts": "2021-03-10 16:21:32.000", "symbol": symbol, "price": price}).encode()


def warehouse(sql: str) -> pd.DataFrame:
    with duck.connect(str(settings().warehouse_path), read_only=True) as con:
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
    assert raw["table"].value == "raw.prices" and raw["snapshot_id"].value != "none"
    assert lake_tables.read_table(settings().home, "raw", "prices", ("_kafka_offset",)).num_rows == 3000
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
    produce(prices.CONTRACT, iter([tick_json("AAPL", -5.0)]), progress=False)
    return before


def test_gate_failing_records_followed_by_good_ones_are_set_aside_and_the_good_ones_reach_the_marts_at_once(
    pipeline,
):
    defs, instance = pipeline
    built_then_a_negative_price(defs, instance, good=500)
    # The seed's own misspelling of a symbol, a record that breaks the contract, then good ticks.
    produce(prices.CONTRACT, iter([tick_json("APPL", 238.1), (b"AAPL", b"not json")]), progress=False)
    produce(prices.CONTRACT, prices.ticks(seed=6), count=100, progress=False)
    result = run(defs, instance, tick(defs, instance))

    assert result.success
    gate = gate_of(result)
    assert gate.passed  # only rows set aside: nothing downstream waits, in this run or later
    assert (gate.metadata["set_aside"].value, gate.metadata["failing_rows"].value) == (2, 2)
    assert gate.metadata["outcome"].value == "2 of 102 rows set aside"
    sample = gate.metadata["set_aside_sample"].value
    assert "price = -5.0 fails expect_column_values_to_be_between" in sample and "symbol = APPL" in sample
    assert {RAW, STAGING, *MARTS} <= materialized(result)
    good = pd.concat([sent_ticks(500, seed=3), sent_ticks(100, seed=6)], ignore_index=True)
    stats = warehouse("select * from prices_symbol_stats").set_index("symbol").sort_index()
    expected = expected_stats(good)
    pd.testing.assert_frame_equal(stats[expected.columns], expected, check_dtype=False, check_names=False)

    aside = set_aside.read_topic(settings(), "prices")
    assert sorted(zip(aside["column"], aside["value"], strict=True)) == [("price", "-5.0"), ("symbol", "APPL")]
    assert set(aside["suite"]) == {"raw_prices"} and all(aside["reason"].str.startswith("raw_prices: "))
    # Every record produced is in the marts' input, set aside or quarantined, once.
    checks = verify(["prices"]).checks
    assert all(c.ok for c in checks)
    produced = sum(c.broker_end - c.broker_start for c in checks)
    staged = warehouse("select count(*) as n from stg_prices__ticks")["n"][0]
    quarantined = sum(c.quarantined for c in checks)
    assert (produced, staged, sum(c.set_aside for c in checks), quarantined) == (603, 600, 2, 1)
    in_raw = lake_tables.read_table(settings().home, "raw", "prices", ("_kafka_offset",)).num_rows
    assert in_raw == 602  # the set-aside rows stay in the raw layer

    # The next run builds as usual.
    produce(prices.CONTRACT, prices.ticks(seed=8), count=50, progress=False)
    after = run(defs, instance, tick(defs, instance))
    assert after.success and gate_of(after).passed and gate_of(after).metadata["set_aside"].value == 0
    assert set(MARTS) <= materialized(after)
    assert warehouse("select count(*) as n from stg_prices__ticks")["n"][0] == 650

    # Automation builds the marts later too, after a drain whose check set a row aside.
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
    produce(prices.CONTRACT, iter([tick_json("AAPL", -1.0)]), progress=False)
    produce(prices.CONTRACT, prices.ticks(seed=9), count=20, progress=False)
    drained = run(defs, instance, tick(defs, instance), only_raw=True)
    assert gate_of(drained).passed and gate_of(drained).metadata["set_aside"].value == 1
    automation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert automation.get_num_requested(STAGING) == 1
    assert all(automation.get_num_requested(key) == 1 for key in MARTS)


def test_more_failing_rows_than_mostly_allows_block_the_marts_now_and_later(pipeline):
    defs, instance = pipeline
    before = built_then_a_negative_price(defs, instance, good=500)
    # A broken producer: a third of its ticks under a symbol the suite does not know.
    broken = [tick_json("APPL", 238.0) for _ in range(30)]
    produce(prices.CONTRACT, iter(broken), progress=False)
    produce(prices.CONTRACT, prices.ticks(seed=6), count=70, progress=False)
    result = run(defs, instance, tick(defs, instance))

    gate = gate_of(result)
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    assert gate.metadata["outcome"].value.startswith(
        "BLOCKED: expect_column_values_to_be_in_set(symbol) failed on 30 of 101 rows, more than the 5%"
    )
    assert "lakehouse build prices" in gate.metadata["what_to_do"].value
    assert gate.metadata["set_aside"].value == 0
    assert RAW in materialized(result) and not set(MARTS) & materialized(result)
    pd.testing.assert_frame_equal(warehouse("select * from prices_symbol_stats order by symbol"), before)
    assert set_aside.read_topic(settings(), "prices").empty  # a blocked range sets nothing aside

    automation = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert all(automation.get_num_requested(key) == 0 for key in MARTS)
    # The mark stayed: the next run validates the same rows again and still blocks.
    again = run(defs, instance, dg.RunRequest(run_config={"ops": {"raw__prices": {"config": {"ranges": []}}}}))
    assert not gate_of(again).passed
    pd.testing.assert_frame_equal(warehouse("select * from prices_symbol_stats order by symbol"), before)


def test_a_warn_expectation_records_the_failure_and_lets_every_row_through(pipeline):
    defs, instance = pipeline
    produce(prices.CONTRACT, prices.ticks(seed=3), count=100, progress=False)
    produce(prices.CONTRACT, iter([tick_json("AAPL", 250_000.0)]), progress=False)  # implausible, not wrong
    result = run(defs, instance, tick(defs, instance))

    gate = gate_of(result)
    assert result.success and gate.passed
    assert gate.metadata["outcome"].value == (
        "passed (101 rows); warned: expect_column_values_to_be_between(price) failed on 1 rows"
    )
    assert gate.metadata["set_aside"].value == 0 and set_aside.read_topic(settings(), "prices").empty
    assert set(MARTS) <= materialized(result)
    assert warehouse("select count(*) as n from stg_prices__ticks")["n"][0] == 101
    assert warehouse("select max_price from prices_symbol_stats where symbol = 'AAPL'")["max_price"][0] == 250_000.0


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
