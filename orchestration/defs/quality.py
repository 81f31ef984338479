"""Great Expectations suites as blocking asset checks on the raw assets.

A suite's failing rows are set aside (`ingestion/set_aside.py`) and the rest of the batch flows on
to the dbt models in the same run; a failure that blocks (a table-level expectation, a `mostly`
exceeded, see `expectations/validation.py`) stops the stream's dbt models in the same run, and
their automation condition keeps them from being built later until the check passes again: bad
data never reaches a mart. Each check validates only what arrived since its mark
(`expectations/gate.py`), so its cost follows the new data, not the size of the lake.

A check that only set rows aside or warned reports `passed=True` with the figures in its metadata:
in Dagster 1.13 a `passed=False` result of WARN severity does not stop the run's downstream steps
(only ERROR does), but it is stored as a failed check, and `all_deps_blocking_checks_passed()`
(which asks for a check that succeeded) would then keep the marts from being built later.
"""

import dagster as dg

from expectations.gate import run_gate, what_to_do
from expectations.validation import markdown_table
from ingestion.config import settings
from ingestion.contracts import Contract
from ingestion.streams import CONTRACTS
from orchestration.defs.raw import raw_asset_key

SAMPLE_ROWS = 10


def quality_check(contract: Contract, suite: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=raw_asset_key(contract),
        name=suite,
        blocking=True,
        description=f"Great Expectations suite `expectations/{contract.stream}/{suite}.json` over the raw rows "
        "stored since the suite's mark: failing rows are set aside, a blocking failure stops the marts.",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        gate = run_gate(settings(), contract, suite)
        outcome = gate.outcome
        context.log.info(f"{suite} over {contract.topic} offsets {gate.offsets()}: {outcome.summary()}")
        metadata = {
            "rows": outcome.row_count,
            "failing_rows": outcome.failing_rows,
            "set_aside": 0 if gate.blocked else outcome.set_aside_rows,
            "offsets": gate.offsets(),
            "outcome": outcome.summary(),
            "result": dg.MetadataValue.md(outcome.to_markdown()),
        }
        if gate.blocked:
            metadata["what_to_do"] = what_to_do(contract.stream, suite)
        elif outcome.set_aside_rows:
            reasons = outcome.set_aside[["_kafka_partition", "_kafka_offset", "reason"]].head(SAMPLE_ROWS)
            metadata["set_aside_sample"] = dg.MetadataValue.md(markdown_table(reasons))
        return dg.AssetCheckResult(
            passed=not gate.blocked,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=outcome.summary(),
        )

    return _check


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        asset_checks=[quality_check(c, suite) for c in CONTRACTS.values() for suite in c.suites],
    )
