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

from typing import TYPE_CHECKING

import dagster as dg

from expectations.gate import run_gate, what_to_do
from ingestion.config import settings
from ingestion.contracts import Contract
from ingestion.streams import CONTRACTS
from orchestration.defs.raw import raw_asset_key

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_ROWS = 20


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
            metadata["set_aside_sample"] = dg.MetadataValue.md(set_aside_sample(contract.topic, outcome.set_aside))
        return dg.AssetCheckResult(
            passed=not gate.blocked,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=outcome.summary(),
        )

    return _check


def set_aside_sample(topic: str, set_aside: "pd.DataFrame") -> str:
    """The first rows set aside, one markdown item each, as the UI and `lakehouse build` show them."""
    shown = set_aside.head(SAMPLE_ROWS)
    lines = [
        f"- set aside {topic}[{partition}]@{offset}: {reason}"
        for partition, offset, reason in zip(
            shown["_kafka_partition"], shown["_kafka_offset"], shown["reason"], strict=True
        )
    ]
    if len(set_aside) > len(shown):
        lines.append(f"- ... and {len(set_aside) - len(shown)} more (`lakehouse verify {topic}` counts them)")
    return "\n".join(lines)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        asset_checks=[quality_check(c, suite) for c in CONTRACTS.values() for suite in c.suites],
    )
