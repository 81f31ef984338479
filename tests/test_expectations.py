"""The raw-prices suite, run by Great Expectations over DataFrames as the gate runs it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from expectations import UnknownSuite, combine, stream_suites, validate
from ingestion.streams import CONTRACTS, cms


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


def test_staging_waits_for_every_suite_each_contract_names():
    project = yaml.safe_load((Path(__file__).resolve().parents[1] / "dbt_project" / "dbt_project.yml").read_text())
    gates = {c.table_name: {"topic": c.topic, "suites": list(c.suites)} for c in CONTRACTS.values() if c.suites}
    assert project["vars"]["raw_gates"] == gates


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


def test_outcomes_of_pieces_combine_into_one():
    whole = combine(
        [
            validate(ticks(("AAPL", 1.0), ("AAPL", -1.0)), "prices", "raw_prices"),
            validate(ticks(("XXX", 1.0)), "prices", "raw_prices"),
        ]
    )
    assert not whole.success
    assert (whole.row_count, whole.failing_rows) == (3, 2)
    assert {e.column: e.unexpected for e in whole.expectations if not e.success} == {"price": 1, "symbol": 1}


# --- CMS: one suite over every spelling ------------------------------------------------------------


def cms_frame(header: tuple[str, ...], *rows: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame([dict(zip(header, r, strict=True)) for r in rows])
    return frame.assign(_partition=0, _offset=range(len(frame)))


def cms_row(**changes: str) -> list[str]:
    values = dict(zip(cms.LEGACY, SAMPLE_ROW, strict=True)) | changes
    return [values[c] for c in cms.LEGACY]


SAMPLE_ROW = [
    "1003000126", "ENKESHAFI", "ARDALAN", "", "M.D.", "M", "I", "900 SETON DR", "", "CUMBERLAND", "21502", "MD",
    "US", "Internal Medicine", "Y", "F", "99217", "Hospital observation care on day of discharge", "N", "68", "67",
    "68", "73.821029412", "381.30882353", "57.880294118", "58.2125",
]  # fmt: skip


def check_cms(frame: pd.DataFrame):
    return validate(frame, "cms", "raw_provider_services", aliases=cms.ALIASES)


def test_cms_rows_pass_in_every_spelling_read_as_one_schema():
    legacy = cms_frame(cms.LEGACY, cms_row())
    display = cms_frame(cms.LEGACY_DISPLAY, cms_row(average_submitted_chrg_amt="1,381.30882353"))
    mixed = pd.concat([legacy, display], ignore_index=True)  # two spellings in one batch
    assert check_cms(mixed).success
    assert check_cms(mixed).row_count == 2


def test_cms_copyright_row_is_not_data():
    notice = ["0000000001", "CPT copyright 2016 American Medical Association."] + [""] * 24
    outcome = check_cms(cms_frame(cms.LEGACY, notice, cms_row()))
    assert outcome.success and outcome.row_count == 1


def test_cms_defects_fail_naming_the_field():
    outcome = check_cms(
        cms_frame(
            cms.LEGACY,
            cms_row(npi="12345"),
            cms_row(hcpcs_code="9921"),
            cms_row(nppes_provider_state="Maryland"),
            cms_row(place_of_service="X"),
            cms_row(average_Medicare_payment_amt="-1"),
            cms_row(bene_unique_cnt="7"),
            cms_row(line_srvc_cnt="many"),
            cms_row(),
        )
    )
    assert (outcome.row_count, outcome.failing_rows) == (8, 7)
    failed = {
        (e.expectation.removeprefix("expect_column_values_to_"), e.column)
        for e in outcome.expectations
        if not e.success
    }
    assert failed == {
        ("match_regex", "npi"),
        ("match_regex", "hcpcs_code"),
        ("match_regex", "state"),
        ("be_in_set", "place_of_service"),
        ("be_between", "avg_payment_amount"),
        ("be_between", "beneficiaries"),
        ("not_be_null", "services"),
    }


def test_cms_fields_absent_from_every_spelling_fail_every_row():
    frame = cms_frame(cms.LEGACY, cms_row()).drop(columns=["hcpcs_code"])
    outcome = check_cms(frame)
    assert not outcome.success and outcome.failing_rows == 1
