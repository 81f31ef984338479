"""The Dagster code location: loads every module of `defs/` and turns automation on by default."""

from __future__ import annotations

import dagster as dg

from ingestion.config import export_for_subprocesses
from orchestration.defs import dbt, exports, maintenance, quality, raw


@dg.definitions
def defs() -> dg.Definitions:
    export_for_subprocesses()
    automation = dg.AutomationConditionSensorDefinition(
        "lakehouse_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
    return dg.Definitions.merge(
        raw.defs(),
        quality.defs(),
        dbt.defs(),
        exports.defs(),
        maintenance.defs(),
        dg.Definitions(sensors=[automation]),
    )
