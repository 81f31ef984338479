"""Great Expectations suites as blocking asset checks on the raw assets.

A failing suite stops the stream's dbt models in the same run, and the automation condition
of those models keeps them from being built later until the check passes again: bad data
never reaches a mart.
"""

import dagster as dg

from expectations import validate
from ingestion.config import settings
from ingestion.contracts import Contract
from ingestion.lake import read_raw
from ingestion.streams import CONTRACTS
from orchestration.defs.raw import raw_asset_key


def quality_check(contract: Contract, suite: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=raw_asset_key(contract),
        name=suite,
        blocking=True,
        description=f"Great Expectations suite `expectations/{contract.stream}/{suite}.json` over the raw rows.",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        frame = read_raw(settings(), contract.topic)
        outcome = validate(frame, contract.stream, suite)
        context.log.info(
            f"{suite}: {outcome.row_count} rows, {outcome.failing_rows} failing, success={outcome.success}"
        )
        return dg.AssetCheckResult(
            passed=outcome.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "rows": outcome.row_count,
                "failing_rows": outcome.failing_rows,
                "result": dg.MetadataValue.md(outcome.to_markdown()),
            },
        )

    return _check


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        asset_checks=[quality_check(c, suite) for c in CONTRACTS.values() for suite in c.suites],
    )
