"""The CMS producer replays every real spelling unchanged, refuses others clearly, and generates
realistic synthetic records, the same for the same seed."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from ingestion.produce import count_rows
from ingestion.streams import cms
from tests.cms_files import api_csv, new_csv, portal_csv, thousands, write

# A copy of the real CMS tab-separated sample (shared/data/), so a fresh clone has it.
SAMPLE = Path(__file__).resolve().parent / "data" / "cms_puf_legacy_sample.tsv"


def sample_rows() -> list[list[str]]:
    with open(SAMPLE, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))[1:]


@pytest.fixture
def spellings(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    rows = sample_rows()
    return {
        "cms_txt": (SAMPLE, "legacy"),
        "api_csv": (api_csv(tmp_path / "api.csv", rows), "legacy"),
        "portal_csv": (portal_csv(tmp_path / "portal.csv", rows), "legacy_display"),
        "new_with_gender": (new_csv(tmp_path / "new29.csv", rows, gender=True), "new"),
        "new_without_gender": (new_csv(tmp_path / "new28.csv", rows, gender=False), "new"),
        "upper_case_headers": (write(tmp_path / "upper.csv", [c.upper() for c in cms.NEW], []), "new"),
    }


def test_every_real_spelling_is_recognised(spellings):
    for name, (path, layout) in spellings.items():
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))
        assert cms.detect_layout(header).name == layout, name


def test_a_replayed_message_is_the_rows_own_header_to_string_mapping_keyed_by_npi(spellings):
    path, _ = spellings["portal_csv"]
    messages = list(cms.replay(path))
    assert len(messages) == len(sample_rows())
    key, value = messages[0]
    record = json.loads(value)
    assert key == b"1003000126" == record["National Provider Identifier"].encode()
    assert list(record) == list(cms.LEGACY_DISPLAY)  # no byte-order mark in the first name
    for (_, value), row in zip(messages, sample_rows(), strict=True):
        record = json.loads(value)
        assert record["HCPCS Description"] == row[17]  # commas inside quotes survive
        assert record["Average Submitted Charge Amount"] == thousands(row[23])  # "1,101.68" unchanged
    assert any("," in row[17] for row in sample_rows())


def test_the_tab_separated_file_keeps_leading_zeros_and_blank_values_as_text():
    record = json.loads(next(cms.replay(SAMPLE))[1])
    assert record["nppes_provider_zip"] == sample_rows()[0][10]
    assert record["nppes_provider_mi"] == ""
    assert all(isinstance(v, str) for v in record.values())


def test_every_spelling_replays_all_its_rows(spellings):
    for name, (path, _) in spellings.items():
        expected = 0 if name == "upper_case_headers" else len(sample_rows())
        assert len(list(cms.replay(path))) == expected, name
        assert count_rows(path) == expected, name


def test_a_file_in_no_known_spelling_is_refused_naming_the_columns_it_lacks(tmp_path):
    path = write(tmp_path / "other.csv", ["npi", "hcpcs_code", "price"], [["1", "99213", "3"]])
    with pytest.raises(cms.UnknownLayout, match=r"closest is legacy, which lacks \d+ columns: nppes_provider"):
        next(cms.replay(path))


def test_synthetic_records_are_realistic_and_repeatable():
    records = [json.loads(v) for _, v in itertools.islice(cms.synthetic(seed=3), 5000)]
    again = [json.loads(v) for _, v in itertools.islice(cms.synthetic(seed=3), 5000)]
    assert records == again
    assert all(len(r["npi"]) == 10 and len(r["hcpcs_code"]) == 5 for r in records)
    assert {r["place_of_service"] for r in records} == {"F", "O"}
    assert {r["nppes_provider_state"] for r in records} <= set(cms.STATES)
    assert min(int(r["bene_unique_cnt"]) for r in records) >= 11
    assert len({r["hcpcs_code"] for r in records}) > 500
    assert len({r["provider_type"] for r in records}) > 50
    for r in records:
        allowed = float(r["average_Medicare_allowed_amt"])
        assert 2 <= float(r["average_submitted_chrg_amt"]) / allowed <= 5
        assert 0.77 <= float(r["average_Medicare_payment_amt"]) / allowed <= 0.81
    services_at_least_benes = sum(float(r["line_srvc_cnt"]) >= int(r["bene_unique_cnt"]) for r in records)
    assert services_at_least_benes / len(records) > 0.85


def test_the_new_layout_has_the_new_columns():
    record = json.loads(next(cms.synthetic(seed=1, layout="new"))[1])
    assert list(record) == list(cms.NEW)
    assert cms.detect_layout(list(record)).name == "new"


def test_every_column_of_every_layout_has_a_field_to_be_read_as():
    every_column = {c.lower() for c in (*cms.LEGACY, *cms.LEGACY_DISPLAY, *cms.NEW)}
    assert every_column <= {name for names in cms.ALIASES.values() for name in names}


def test_the_data_year_comes_from_the_file_name():
    assert cms.data_year_from_name(Path("Medicare_Provider_Util_Payment_PUF_CY2017.txt")) == 2017
    assert cms.data_year_from_name(Path("MUP_PHY_R25_P05_V20_D23_Prov_Svc.csv")) == 2023
    assert cms.data_year_from_name(Path("physician_services_2019.csv")) == 2019
    assert cms.data_year_from_name(Path("export.csv")) is None
