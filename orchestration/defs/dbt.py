"""The dbt project as Dagster assets: keys and groups from the dbt folders, gated automation.

Models are keyed by layer (`staging/stg_prices__ticks`, `marts/prices_symbol_stats`) and
grouped by stream (the folder under the layer), so the UI shows each stream's lineage from
its raw topic to its marts. Every writer of the warehouse runs in one pool of size 1.
"""

import importlib.metadata
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, DbtProject, dbt_assets
from packaging import version

from ingestion import duck, refresh
from ingestion.config import export_for_subprocesses, settings
from orchestration.manifest import manifest, manifest_path, model_meta, project_dir
from orchestration.publish_marts import build_id_of, mart_names_of, publish_marts
from orchestration.snapshots import publish_snapshot

WAREHOUSE_POOL = "duckdb_warehouse"
PREVIEW_ROWS = 10

# Build a model when its inputs changed, never while any blocking check on them fails.
GATED_EAGER = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


def gated(cron: str | None) -> dg.AutomationCondition:
    """GATED_EAGER, and with a cron (a model's `meta.refresh_cron`) also at every tick of it."""
    if cron is None:
        return GATED_EAGER
    on_tick = dg.AutomationCondition.cron_tick_passed(cron) & ~dg.AutomationCondition.in_progress()
    return (dg.AutomationCondition.eager() | on_tick) & dg.AutomationCondition.all_deps_blocking_checks_passed()


def dbt_project() -> DbtProject:
    """The project, its builds writing into the lake home's dbt target folder. Its manifest is
    not parsed here but once per version of the project's code (`orchestration/manifest.py`)."""
    s = settings()
    export_for_subprocesses(s)
    return _project_for(project_dir(), s.dbt_target_dir)


@cache
def _project_for(project: Path, target_dir: Path) -> DbtProject:
    return DbtProject(project_dir=project, target_path=target_dir)


class LakehouseTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([_layer(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[2] if len(fqn) > 3 else super().get_group_name(dbt_resource_props)

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.key.path[0] != "marts":
            return spec
        # A mart not rebuilt for three sensor intervals is stale (the UI marks it so); Dagster
        # takes no window under a minute.
        window = max(timedelta(seconds=3 * settings().sensor_interval_s), timedelta(minutes=1))
        return spec.replace_attributes(freshness_policy=dg.FreshnessPolicy.time_window(fail_window=window))

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        return gated(dbt_resource_props.get("config", {}).get("meta", {}).get("refresh_cron"))


class LakehouseDbtCli(DbtCliResource):
    """dagster-dbt's resource, without the two things it does before every command that this
    product never uses and that cost a run about 6 s here: `dbt --version` in a subprocess of its
    own (dbt's start-up, to learn the version of the dbt beside this interpreter, which is the
    dbt-core installed with it), and an in-process dbt adapter, which serves only the
    `fetch_row_counts`/`fetch_column_metadata` helpers."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


def dbt_resource() -> DbtCliResource:
    return LakehouseDbtCli(project_dir=dbt_project())


def keep_partial_parse(invocation: DbtCliInvocation) -> None:
    """Keep what dbt parsed for the next invocation. dagster-dbt runs each one in a target folder
    of its own, seeded with `partial_parse.msgpack` from the home's target folder if there is one;
    without it every build parses the whole project again (5 s of a run's seconds here). dbt
    checks the file against the project and the environment before it trusts any of it."""
    parsed = invocation.target_path / "partial_parse.msgpack"
    if parsed.exists():
        kept = settings().dbt_target_dir / parsed.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        scratch = kept.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(parsed, scratch)
        os.replace(scratch, kept)


def _layer(props: Mapping[str, Any]) -> str:
    fqn = props.get("fqn", [])
    return fqn[1] if len(fqn) > 2 else "models"


def dbt_models() -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=manifest_path(),
        project=dbt_project(),
        dagster_dbt_translator=LakehouseTranslator(),
        pool=WAREHOUSE_POOL,
        name="lakehouse_dbt_models",
    )
    def _models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        from expectations.gate import publish_read_snapshots
        from ingestion.streams import CONTRACTS

        selected = {key.path[-1] for key in context.selected_asset_keys}
        publish_read_snapshots(settings(), CONTRACTS.values())
        replayed, covered = replayed_topics(selected)
        # The events wait for dbt to finish: only then can the marts be read for their metadata.
        invocation = dbt.cli(["build", *(["--full-refresh"] if replayed else [])], context=context)
        events = list(invocation.stream())
        keep_partial_parse(invocation)
        refresh.done(settings(), covered)
        # Still in the warehouse pool: no build is writing.
        copy = publish_snapshot(settings(), [key.path[-1] for key in context.selected_asset_keys])
        run_results = invocation.get_artifact("run_results.json")
        publish_marts(
            settings(),
            mart_names_of(run_results, invocation.get_artifact("manifest.json")),
            build_id_of(run_results),
            copy,
        )
        yield from with_mart_previews(context, events)

    return _models


def replayed_topics(selected: set[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Of the topics a quarantine replay asked a full refresh for (see `ingestion/refresh.py`):
    those with an incremental model among the selected models, and those all of whose
    incremental models are selected (a build of the selection fulfils their request)."""
    requests = refresh.all_pending(settings())
    needing, covered = {}, {}
    for topic, request in requests.items():
        models = incremental_models_of(request.get("table", ""))
        if models & selected:
            needing[topic] = request
        if models <= selected:
            covered[topic] = request
    return needing, covered


def incremental_models_of(table: str) -> set[str]:
    """The incremental models downstream of a raw table (a source of `raw`), by name."""
    parsed = manifest()
    sources = [uid for uid, s in parsed["sources"].items() if s["source_name"] == "raw" and s["name"] == table]
    seen, todo = set(), list(sources)
    while todo:
        for child in parsed["child_map"].get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    nodes = parsed["nodes"]
    return {
        nodes[uid]["name"]
        for uid in seen
        if uid in nodes
        and nodes[uid]["resource_type"] == "model"
        and nodes[uid].get("config", {}).get("materialized") == "incremental"
    }


def with_mart_previews(context: dg.AssetExecutionContext, events: list) -> Iterator:
    """Each mart's materialization with its row count and its first rows."""

    from expectations.validation import markdown_table
    from orchestration.charts import as_markdown, bar_chart

    charts = {name: meta["chart"] for name, meta in model_meta().items() if "chart" in meta}
    with duck.connect(str(settings().warehouse_path), read_only=True) as con:
        for event in events:
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                if key.path[0] == "marts":
                    name = key.path[-1]
                    (rows,) = con.execute(f'select count(*) from "{name}"').fetchone()
                    preview = con.execute(f'select * from "{name}" limit {PREVIEW_ROWS}').df()
                    extra: dict[str, Any] = {
                        "dagster/row_count": dg.MetadataValue.int(rows),
                        "preview": dg.MetadataValue.md(markdown_table(preview)),
                    }
                    if name in charts:
                        frame = con.execute(f'select * from "{name}"').df()
                        extra["chart"] = dg.MetadataValue.md(as_markdown(bar_chart(frame, charts[name], name), name))
                    event = event.with_metadata({**event.metadata, **extra})
            yield event


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[dbt_models()],
        resources={"dbt": dbt_resource()},
    )
