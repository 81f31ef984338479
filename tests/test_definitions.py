"""The Dagster code location loads and wires every stream the same way."""

from __future__ import annotations

import itertools
from datetime import timedelta

import dagster as dg
import pytest

from ingestion.streams import CONTRACTS, STREAMS
from orchestration.defs.dbt import GATED_EAGER, WAREHOUSE_POOL, LakehouseTranslator, gated
from orchestration.defs.raw import raw_asset_key
from orchestration.manifest import manifest as parsed_manifest

PRICES_LINEAGE = [
    dg.AssetKey(["raw", "prices"]),
    dg.AssetKey(["staging", "stg_prices__ticks"]),
    dg.AssetKey(["marts", "prices_symbol_stats"]),
]


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dg.Definitions:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_HOME", str(tmp_path_factory.mktemp("defs-home")))
        from orchestration.definitions import defs as load

        yield load()


def test_every_topic_has_a_raw_asset_grouped_by_its_stream(defs):
    graph = defs.resolve_asset_graph()
    for contract in CONTRACTS.values():
        assert graph.get(raw_asset_key(contract)).group_name == contract.stream


def test_the_prices_lineage_runs_from_the_topic_through_staging_to_both_marts(defs):
    graph = defs.resolve_asset_graph()
    for parent, child in itertools.pairwise(PRICES_LINEAGE):
        assert parent in graph.get(child).parent_keys
    outliers = graph.get(dg.AssetKey(["marts", "prices_outliers"]))
    assert dg.AssetKey(["staging", "stg_prices__ticks"]) in outliers.parent_keys
    assert {graph.get(key).group_name for key in PRICES_LINEAGE} == {"prices"}


def test_each_raw_asset_is_gated_by_a_blocking_quality_check(defs):
    graph = defs.resolve_asset_graph()
    for contract in CONTRACTS.values():
        for suite in contract.suites:
            gate = dg.AssetCheckKey(raw_asset_key(contract), suite)
            assert gate in graph.asset_check_keys
            assert graph.get_check_spec(gate).blocking


def test_every_stream_has_a_drain_sensor_on_by_default_and_a_pipeline_job(defs):
    for stream in STREAMS:
        sensor = defs.get_sensor_def(f"{stream}_drain_sensor")
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.minimum_interval_seconds == 60
        assert defs.resolve_job_def(f"{stream}_pipeline")
    assert defs.get_sensor_def("lakehouse_automation").default_status == dg.DefaultSensorStatus.RUNNING


def test_dbt_models_write_the_warehouse_from_one_pool_and_wait_for_passing_gates(defs):
    node = defs.resolve_asset_graph().get(dg.AssetKey(["marts", "prices_symbol_stats"]))
    assert node.assets_def.op.pool == WAREHOUSE_POOL
    assert node.automation_condition == GATED_EAGER


def test_a_mart_is_stale_after_three_sensor_intervals_without_a_build(defs):
    node = defs.resolve_asset_graph().get(dg.AssetKey(["marts", "cms_procedure_reach"]))
    assert node.freshness_policy == dg.FreshnessPolicy.time_window(fail_window=timedelta(seconds=3 * 60))
    staging = defs.resolve_asset_graph().get(dg.AssetKey(["staging", "stg_prices__ticks"]))
    assert staging.freshness_policy is None


def test_a_short_sensor_interval_still_gives_a_freshness_window_dagster_accepts(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_SENSOR_INTERVAL_S", "5")
    manifest = parsed_manifest()
    node = LakehouseTranslator().get_asset_spec(manifest, "model.lakehouse.prices_symbol_stats", None)
    assert node.freshness_policy == dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=1))


def test_the_office_revenue_mart_is_also_rebuilt_every_10_minutes(defs):
    node = defs.resolve_asset_graph().get(dg.AssetKey(["marts", "office_revenue_10min"]))
    assert node.automation_condition == gated("*/10 * * * *")
    assert node.automation_condition != GATED_EAGER


def test_the_lake_is_compacted_daily_by_default(defs):
    schedule = defs.get_schedule_def("compact_lake_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "compact_lake"
