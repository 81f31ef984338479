"""The suites, run by Great Expectations over DataFrames as the gate runs them, and what each failure does."""

from __future__ import annotations

import pandas as pd
import pytest

from expectations.suites import InvalidSuite, UnknownSuite, load_suite, stream_suites
from expectations.validation import combine, validate, validate_suite
from ingestion.streams import CONTRACTS, cms


def ticks(*rows: tuple[str | None, float | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "_kafka_partition": [0] * len(rows),
            "_kafka_offset": list(range(len(rows))),
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
    assert outcome.failing_sample["_kafka_offset"].tolist() == [1, 2, 3]
    report = outcome.to_markdown()
    assert "3 of 4 rows set aside" in report and "-5.0" in report and "XXX" in report


def test_failing_rows_are_set_aside_each_with_the_suite_expectation_column_and_value_as_reason():
    outcome = validate(
        ticks(("AAPL", 238.32), ("APPL", 238.1), ("AAPL", -5.0), ("MSFT", 410.0)), "prices", "raw_prices"
    )
    assert not outcome.blocked
    assert outcome.set_aside_rows == 2
    aside = outcome.set_aside.sort_values("_kafka_offset")
    assert aside[["_kafka_partition", "_kafka_offset", "column", "value"]].values.tolist() == [
        [0, 1, "symbol", "APPL"],
        [0, 2, "price", "-5.0"],
    ]
    assert aside["expectation"].tolist() == ["expect_column_values_to_be_in_set", "expect_column_values_to_be_between"]
    assert aside["reason"].tolist()[0].startswith("raw_prices: symbol = APPL fails expect_column_values_to_be_in_set(")
    assert outcome.summary() == "2 of 4 rows set aside"


def test_a_row_failing_two_expectations_is_one_row_set_aside_with_two_reasons():
    suite = {
        "name": "two",
        "expectations": [
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "price", "min_value": 0}},
            {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "symbol", "value_set": ["AAPL"]}},
        ],
    }
    outcome = validate_suite(ticks(("APPL", -1.0), ("AAPL", 1.0)), suite)
    assert (outcome.set_aside_rows, len(outcome.set_aside)) == (1, 2)


def test_a_warning_is_recorded_and_nothing_is_set_aside_or_blocked():
    outcome = validate(ticks(("AAPL", 238.32), ("AAPL", 250_000.0)), "prices", "raw_prices")
    assert not outcome.success and not outcome.blocked
    assert outcome.set_aside.empty
    assert [(e.column, e.action, e.unexpected) for e in outcome.warned] == [("price", "warned", 1)]
    assert outcome.summary() == "passed (2 rows); warned: expect_column_values_to_be_between(price) failed on 1 rows"


def test_more_failing_rows_than_mostly_allows_block_and_set_nothing_aside():
    outcome = validate(ticks(*[("APPL", 238.0)] * 6, *[("AAPL", 238.0)] * 94), "prices", "raw_prices")
    assert outcome.blocked and outcome.set_aside.empty
    assert outcome.blocked_because == [
        "expect_column_values_to_be_in_set(symbol) failed on 6 of 100 rows, more than the 5% its mostly 0.95 allows"
    ]
    assert "BLOCKED" in outcome.to_markdown()


def test_one_bad_record_in_a_small_batch_is_set_aside_not_blocked():
    # The share a mostly allows is taken over at least 100 rows: one bad record is not a broken producer.
    alone = validate(ticks(("AAPL", -5.0)), "prices", "raw_prices")
    among_a_hundred = validate(ticks(("AAPL", -5.0), *[("AAPL", 238.0)] * 100), "prices", "raw_prices")
    for outcome in (alone, among_a_hundred):
        assert not outcome.blocked and outcome.set_aside_rows == 1


def test_the_share_a_mostly_allows_is_judged_over_every_piece_of_the_range():
    small_share = validate(ticks(("APPL", 1.0), *[("AAPL", 1.0)] * 99), "prices", "raw_prices")
    burst = validate(ticks(*[("APPL", 1.0)] * 5), "prices", "raw_prices")
    assert not small_share.blocked and not burst.blocked  # each alone: at most 5 of (at least) 100 rows
    whole = combine([small_share, burst])
    assert whole.blocked and whole.row_count == 105  # 6 of 105 rows
    assert not combine([small_share, validate(ticks(("APPL", 1.0)), "prices", "raw_prices")]).blocked


def test_a_table_level_expectation_blocks_by_default_and_can_only_warn_otherwise():
    def suite(meta: dict) -> dict:
        rows = {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 5}, "meta": meta}
        return {"name": "table", "expectations": [rows]}

    blocked = validate_suite(ticks(("AAPL", 1.0)), suite({}))
    assert blocked.blocked and blocked.set_aside.empty
    assert blocked.blocked_because == ["expect_table_row_count_to_be_between failed (observed 1)"]
    assert validate_suite(ticks(("AAPL", 1.0)), suite({"on_failure": "set_aside"})).blocked  # no row to blame
    warned = validate_suite(ticks(("AAPL", 1.0)), suite({"on_failure": "warn"}))
    assert not warned.blocked and warned.warned


def test_an_expectation_on_the_tables_columns_sees_every_column_others_only_name_theirs():
    columns = {
        "type": "expect_table_columns_to_match_set",
        "kwargs": {"column_set": ["_kafka_partition", "_kafka_offset", "ts", "symbol", "price"]},
    }
    symbols = {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "symbol", "value_set": ["AAPL"]}}
    assert validate_suite(ticks(("AAPL", 1.0)), {"name": "shape", "expectations": [columns, symbols]}).success

    outcome = validate_suite(ticks(("AAPL", 1.0), ("XXX", 2.0)), {"name": "symbols", "expectations": [symbols]})
    # the sample still shows the whole row, not only what the suite read
    assert outcome.failing_sample[["_kafka_offset", "symbol", "price"]].values.tolist() == [[1, "XXX", 2.0]]


def test_a_row_level_expectation_may_be_declared_to_block():
    suite = {
        "name": "strict",
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "price", "min_value": 0},
                "meta": {"on_failure": "block"},
            }
        ],
    }
    outcome = validate_suite(ticks(("AAPL", -1.0), ("AAPL", 1.0)), suite)
    assert outcome.blocked and outcome.blocked_because == ["expect_column_values_to_be_between(price) failed on 1 rows"]


def test_an_unknown_on_failure_is_a_clear_error():
    suite = {
        "name": "odd",
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "price"},
                "meta": {"on_failure": "ignore"},
            }
        ],
    }
    with pytest.raises(InvalidSuite, match="on_failure 'ignore'; it must be one of set_aside, block, warn"):
        validate_suite(ticks(("AAPL", 1.0)), suite)


def test_every_suite_declares_only_what_the_gate_does_and_a_mostly_where_it_serves():
    for stream, names in stream_suites().items():
        for name in names:
            for expectation in load_suite(stream, name)["expectations"]:
                assert (expectation.get("meta") or {}).get("on_failure", "set_aside") in ("set_aside", "block", "warn")
                if expectation.get("meta", {}).get("on_failure") != "warn":
                    assert 0.9 <= expectation["kwargs"]["mostly"] < 1, (stream, name, expectation)


def test_the_sample_is_bounded():
    outcome = validate(ticks(*[("AAPL", -1.0)] * 50), "prices", "raw_prices", sample_size=5)
    assert outcome.failing_rows == 50
    assert len(outcome.failing_sample) == 5


def test_nothing_stored_yet_passes():
    assert validate(pd.DataFrame(), "prices", "raw_prices").success


def test_a_missing_column_fails_every_row_and_blocks_with_a_reason():
    outcome = validate(ticks(("AAPL", 1.0)).drop(columns=["price"]), "prices", "raw_prices")
    assert not outcome.success and outcome.blocked  # no single row is to blame
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
    return frame.assign(_kafka_partition=0, _kafka_offset=range(len(frame)))


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
