"""What streams send on after their marts are built: `stedi_customer_risk` to `stedi-score-agg`."""

import dagster as dg

from ingestion.config import settings
from ingestion.streams.stedi import SCORE_TOPIC, publish_scores
from orchestration.defs.dbt import GATED_EAGER, WAREHOUSE_POOL


@dg.asset(
    key=["exports", "stedi_score_agg"],
    deps=[dg.AssetKey(["marts", "stedi_customer_risk"])],
    group_name="stedi",
    kinds={"kafka"},
    pool=WAREHOUSE_POOL,
    automation_condition=GATED_EAGER,
    description=f"The new or changed rows of `stedi_customer_risk`, published to the topic `{SCORE_TOPIC}` "
    'as {"customer", "score", "email", "birthYear"} for the STEDI app, once each even when retried.',
)
def stedi_score_agg(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    sent = publish_scores(settings().warehouse_path)
    context.log.info(f"published {sent} new or changed customer scores to {SCORE_TOPIC}")
    return dg.MaterializeResult(metadata={"published": sent, "topic": SCORE_TOPIC})


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[stedi_score_agg])
