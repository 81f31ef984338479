"""Write CMS provider-services files in each real spelling, for tests to replay."""

from __future__ import annotations

import csv
from pathlib import Path

from ingestion.streams import cms

# The legacy columns that hold numbers: the portal export writes them with thousands separators.
NUMERIC = range(19, 26)


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
    """A legacy row in the new `Rndrng_*` layout's column order (with or without the gender column)."""
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


def cms_txt(path: Path, rows: list[list[str]], copyright_row: bool = True) -> Path:
    """The CMS tab-separated .txt: lower-case names, a copyright notice as the first data row."""
    notice = ["0000000001", "CPT copyright 2016 American Medical Association. All Rights Reserved."]
    notice += [""] * (len(cms.LEGACY) - len(notice))
    return write(path, list(cms.LEGACY), ([notice] if copyright_row else []) + rows, delimiter="\t")


def api_csv(path: Path, rows: list[list[str]]) -> Path:
    return write(path, [c.lower() for c in cms.LEGACY], rows)


def portal_csv(path: Path, rows: list[list[str]]) -> Path:
    """The portal's export: display names, a byte-order mark, every value quoted, numbers with separators."""
    portal_rows = [[thousands(v) if i in NUMERIC else v for i, v in enumerate(r)] for r in rows]
    return write(path, list(cms.LEGACY_DISPLAY), portal_rows, encoding="utf-8-sig", quoting=csv.QUOTE_ALL)


def new_csv(path: Path, rows: list[list[str]], gender: bool = True) -> Path:
    header = list(cms.NEW) if gender else [c for c in cms.NEW if c != "Rndrng_Prvdr_Gndr"]
    return write(path, header, [as_new(r, gender) for r in rows])
