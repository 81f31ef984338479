"""The CMS producer replays every real spelling unchanged, refuses others clearly, and generates
realistic synthetic records, the same for the same seed."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from ingestion.streams import cms

# A copy of the real CMS tab-separated sample (shared/data/), so a fresh clone has it.
SAMPLE = Path(__file__).resolve().parent / "data" / "cms_puf_legacy_sample.tsv"


def sample_rows() -> list[list[str]]:
    with open(SAMPLE, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))[1:]


def thousands(value: str) -> str:
    """The portal export's number format: "1101.6777778" -> "1,101.6777778"."""
    whole, _, fraction = value.partition(".")
    return f"{int(whole):,}" + (f".{fraction}" if fraction else "")


def write(path: Path, header: list[str], rows: list[list[str]], **dialect) -> Path:
    encoding = dialect.pop("encoding", "utf-8")
    with open(path, "w", newline="", encoding=encoding) as handle:
        csv.writer(handle, **dialect).writerows([header, *rows])
    return path


def as_new(row: list[str], gender: bool) -> list[str]:
    v = dict(zip(cms.LEGACY, row, strict=True))
    new = [
        v["npi"], v["nppes_provider_last_org_name"], v["nppes_provider_first_name"], v["nppes_provider_mi"],
        v["nppes_credentials"], v["nppes_provider_gender"], v["nppes_entity_code"], v["nppes_provider_street1"],
        v["nppes_provider_street2"], v["nppes_provider_city"], v["nppes_provider_state"], "24",
        v["nppes_provider_zip"][:5], "1", "Metropolitan area core: primary flow within an urbanized area of 50,000",
        v["nppes_provider_country"], v["provider_type"], v["medicare_participation_indicator"], v["hcpcs_code"],
        v["hcpcs_description"], v["hcpcs_drug_indicator"], v["place_of_service"], v["bene_unique_cnt"],
        v["line_srvc_cnt"], v["bene_day_srvc_cnt"], v["average_submitted_chrg_amt"],
        v["average_Medicare_allowed_amt"], v["average_Medicare_payment_amt"], v["average_Medicare_standard_amt"],
    ]  # fmt: skip
    return new if gender else new[:5] + new[6:]


@pytest.fixture
def spellings(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    rows = sample_rows()
    amounts = range(19, 26)
    portal_rows = [[thousands(v) if i in amounts else v for i, v in enumerate(r)] for r in rows]
    new_header = list(cms.NEW)
    return {
        "cms_txt": (SAMPLE, "legacy"),
        "api_csv": (write(tmp_path / "api.csv", [c.lower() for c in cms.LEGACY], rows), "legacy"),
        "portal_csv": (
            write(
                tmp_path / "portal.csv",
                list(cms.LEGACY_DISPLAY),
                portal_rows,
                encoding="utf-8-sig",
                quoting=csv.QUOTE_ALL,
            ),
            "legacy_display",
        ),
        "new_with_gender": (write(tmp_path / "new29.csv", new_header, [as_new(r, True) for r in rows]), "new"),
        "new_without_gender": (
            write(tmp_path / "new28.csv", new_header[:5] + new_header[6:], [as_new(r, False) for r in rows]),
            "new",
        ),
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
        assert cms.count_rows(path) == expected, name


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
