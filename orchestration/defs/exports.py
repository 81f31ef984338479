"""What streams send on after their marts are built, one asset per export that `ingestion.streams`
declares (`exports/stedi_score_agg`: `stedi_customer_risk` to `stedi-score-agg`)."""

import dagster as dg

from ingestion.config import settings
from ingestion.contracts import Export
from ingestion.streams import EXPORTS
from orchestration.defs.dbt import GATED_EAGER, WAREHOUSE_POOL


def export_asset(export: Export) -> dg.AssetsDefinition:
    @dg.asset(
        key=["exports", export.name],
        deps=[dg.AssetKey(["marts", export.mart])],
        group_name=export.stream,
        kinds={"kafka"},
        pool=WAREHOUSE_POOL,
        automation_condition=GATED_EAGER,
        description=export.description,
    )
    def _export(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        sent = export.publish(settings().warehouse_path)
        context.log.info(f"published {sent} new or changed rows of {export.mart} to {export.topic}")
        return dg.MaterializeResult(metadata={"published": sent, "topic": export.topic})

    return _export


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[export_asset(e) for e in EXPORTS.values()])
