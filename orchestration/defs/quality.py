"""Great Expectations suites as blocking asset checks on the raw assets.

A failing suite stops the stream's dbt models in the same run, and the automation condition
of those models keeps them from being built later until the check passes again: bad data
never reaches a mart. Each check validates only what arrived since it last passed
(`expectations/gate.py`), so its cost follows the new data, not the size of the lake.
"""

import dagster as dg

from expectations.gate import run_gate
from ingestion.config import settings
from ingestion.contracts import Contract
from ingestion.streams import CONTRACTS
from orchestration.defs.raw import raw_asset_key


def quality_check(contract: Contract, suite: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=raw_asset_key(contract),
        name=suite,
        blocking=True,
        description=f"Great Expectations suite `expectations/{contract.stream}/{suite}.json` over the raw rows "
        "stored since the suite last passed.",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        gate = run_gate(settings(), contract, suite)
        outcome = gate.outcome
        context.log.info(
            f"{suite} over {contract.topic} offsets {gate.offsets()}: {outcome.row_count} rows, "
            f"{outcome.failing_rows} failing, success={outcome.success}"
        )
        return dg.AssetCheckResult(
            passed=outcome.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "rows": outcome.row_count,
                "failing_rows": outcome.failing_rows,
                "offsets": gate.offsets(),
                "result": dg.MetadataValue.md(outcome.to_markdown()),
            },
        )

    return _check


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        asset_checks=[quality_check(c, suite) for c in CONTRACTS.values() for suite in c.suites],
    )
