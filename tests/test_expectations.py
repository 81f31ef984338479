"""The raw-prices suite, run by Great Expectations over DataFrames as the gate runs it."""

from __future__ import annotations

import pandas as pd
import pytest

from expectations import UnknownSuite, stream_suites, validate
from ingestion.streams import CONTRACTS


def ticks(*rows: tuple[str | None, float | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "_partition": [0] * len(rows),
            "_offset": list(range(len(rows))),
            "ts": pd.to_datetime(["2021-03-10 16:21:32"] * len(rows)),
            "symbol": [symbol for symbol, _ in rows],
            "price": [price for _, price in rows],
        }
    )


def test_every_suite_a_contract_names_exists():
    suites = stream_suites()
    for contract in CONTRACTS.values():
        assert set(contract.suites) <= set(suites.get(contract.stream, []))


def test_good_ticks_pass():
    outcome = validate(ticks(("AAPL", 238.32), ("TSLA", 251.0)), "prices", "raw_prices")
    assert outcome.success
    assert (outcome.row_count, outcome.failing_rows) == (2, 0)
    assert outcome.failing_sample.empty


def test_a_negative_price_an_unknown_symbol_and_a_null_price_fail_with_a_sample_of_the_rows():
    outcome = validate(ticks(("AAPL", 238.32), ("AAPL", -5.0), ("XXX", 10.0), ("MSFT", None)), "prices", "raw_prices")
    assert not outcome.success
    assert outcome.failing_rows == 3
    assert outcome.failing_sample["_offset"].tolist() == [1, 2, 3]
    report = outcome.to_markdown()
    assert "FAILED" in report and "-5.0" in report and "XXX" in report


def test_the_sample_is_bounded():
    outcome = validate(ticks(*[("AAPL", -1.0)] * 50), "prices", "raw_prices", sample_size=5)
    assert outcome.failing_rows == 50
    assert len(outcome.failing_sample) == 5


def test_nothing_stored_yet_passes():
    assert validate(pd.DataFrame(), "prices", "raw_prices").success


def test_a_missing_column_fails_every_row_with_a_reason():
    outcome = validate(ticks(("AAPL", 1.0)).drop(columns=["price"]), "prices", "raw_prices")
    assert not outcome.success
    assert outcome.failing_rows == 1
    assert "price" in outcome.to_markdown() and "does not exist" in outcome.to_markdown()


def test_an_unknown_suite_is_a_clear_error():
    with pytest.raises(UnknownSuite, match="no expectation suite 'nope'"):
        validate(ticks(("AAPL", 1.0)), "prices", "nope")
