"""CMS Medicare provider utilization: replay real files in every spelling, or an endless synthetic stream.

A replayed message is the row exactly as the file has it: a JSON object of the file's own
header names to the row's own string values, key = the NPI. Staging maps the spellings to one
schema; the producer only has to recognise a spelling, to find the NPI and to refuse a file in
none of them with the columns it lacks.

The extension of `cms.yml`, which declares the stream and names `ALIASES` as its spellings.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingestion.contracts import Contract


@dataclass(frozen=True)
class Layout:
    name: str
    npi: str  # the NPI column, as spelled in this layout
    required: tuple[str, ...]  # the columns (lower case) a file of this layout must have


LEGACY = (
    "npi", "nppes_provider_last_org_name", "nppes_provider_first_name", "nppes_provider_mi", "nppes_credentials",
    "nppes_provider_gender", "nppes_entity_code", "nppes_provider_street1", "nppes_provider_street2",
    "nppes_provider_city", "nppes_provider_zip", "nppes_provider_state", "nppes_provider_country", "provider_type",
    "medicare_participation_indicator", "place_of_service", "hcpcs_code", "hcpcs_description",
    "hcpcs_drug_indicator", "line_srvc_cnt", "bene_unique_cnt", "bene_day_srvc_cnt", "average_Medicare_allowed_amt",
    "average_submitted_chrg_amt", "average_Medicare_payment_amt", "average_Medicare_standard_amt",
)  # fmt: skip

LEGACY_DISPLAY = (
    "National Provider Identifier", "Last Name/Organization Name of the Provider", "First Name of the Provider",
    "Middle Initial of the Provider", "Credentials of the Provider", "Gender of the Provider",
    "Entity Type of the Provider", "Street Address 1 of the Provider", "Street Address 2 of the Provider",
    "City of the Provider", "Zip Code of the Provider", "State Code of the Provider", "Country Code of the Provider",
    "Provider Type", "Medicare Participation Indicator", "Place of Service", "HCPCS Code", "HCPCS Description",
    "HCPCS Drug Indicator", "Number of Services", "Number of Medicare Beneficiaries",
    "Number of Distinct Medicare Beneficiary/Per Day Services", "Average Medicare Allowed Amount",
    "Average Submitted Charge Amount", "Average Medicare Payment Amount", "Average Medicare Standardized Amount",
)  # fmt: skip

NEW = (
    "Rndrng_NPI", "Rndrng_Prvdr_Last_Org_Name", "Rndrng_Prvdr_First_Name", "Rndrng_Prvdr_MI",
    "Rndrng_Prvdr_Crdntls", "Rndrng_Prvdr_Gndr", "Rndrng_Prvdr_Ent_Cd", "Rndrng_Prvdr_St1", "Rndrng_Prvdr_St2",
    "Rndrng_Prvdr_City", "Rndrng_Prvdr_State_Abrvtn", "Rndrng_Prvdr_State_FIPS", "Rndrng_Prvdr_Zip5",
    "Rndrng_Prvdr_RUCA", "Rndrng_Prvdr_RUCA_Desc", "Rndrng_Prvdr_Cntry", "Rndrng_Prvdr_Type",
    "Rndrng_Prvdr_Mdcr_Prtcptg_Ind", "HCPCS_Cd", "HCPCS_Desc", "HCPCS_Drug_Ind", "Place_Of_Srvc", "Tot_Benes",
    "Tot_Srvcs", "Tot_Bene_Day_Srvcs", "Avg_Sbmtd_Chrg", "Avg_Mdcr_Alowd_Amt", "Avg_Mdcr_Pymt_Amt",
    "Avg_Mdcr_Stdzd_Amt",
)  # fmt: skip

# The field each spelling's column carries, position by position: the one schema staging maps to.
_LEGACY_FIELDS = (
    "npi", "last_org_name", "first_name", "middle_initial", "credentials", "gender", "entity_code", "street1",
    "street2", "city", "zip", "state", "country", "provider_type", "medicare_participation", "place_of_service",
    "hcpcs_code", "hcpcs_description", "hcpcs_drug_indicator", "services", "beneficiaries",
    "beneficiary_day_services", "avg_allowed_amount", "avg_submitted_charge", "avg_payment_amount",
    "avg_standardized_amount",
)  # fmt: skip
_NEW_FIELDS = (
    "npi", "last_org_name", "first_name", "middle_initial", "credentials", "gender", "entity_code", "street1",
    "street2", "city", "state", "state_fips", "zip", "ruca", "ruca_description", "country", "provider_type",
    "medicare_participation", "hcpcs_code", "hcpcs_description", "hcpcs_drug_indicator", "place_of_service",
    "beneficiaries", "services", "beneficiary_day_services", "avg_submitted_charge", "avg_allowed_amount",
    "avg_payment_amount", "avg_standardized_amount",
)  # fmt: skip


def _aliases() -> dict[str, tuple[str, ...]]:
    aliases: dict[str, tuple[str, ...]] = {}
    for fields, names in ((_LEGACY_FIELDS, LEGACY), (_LEGACY_FIELDS, LEGACY_DISPLAY), (_NEW_FIELDS, NEW)):
        for canonical, name in zip(fields, names, strict=True):
            if name.lower() not in aliases.get(canonical, ()):
                aliases[canonical] = (*aliases.get(canonical, ()), name.lower())
    aliases["services"] += ("tot_srvc",)  # third-party DDL's spelling of Tot_Srvcs
    return aliases


# Field -> its lower-case spellings: what staging and the quality gate read a row through.
ALIASES = _aliases()

SYNTHETIC_YEAR = 2023  # the latest data year CMS has published

_YEAR_PATTERNS = (
    re.compile(r"CY(20\d\d)", re.IGNORECASE),  # Medicare_Provider_Util_Payment_PUF_CY2017.txt
    re.compile(r"_D(\d\d)_", re.IGNORECASE),  # MUP_PHY_R25_P05_V20_D23_Prov_Svc.csv
    re.compile(r"(?<!\d)(20[0-4]\d)(?!\d)"),  # any other name with a year in it
)


def data_year_from_name(path: Path) -> int | None:
    """The data year a CMS file's name gives (CY2017, _D23_, 2019), or None."""
    for pattern in _YEAR_PATTERNS:
        match = pattern.search(path.name)
        if match:
            year = match.group(1)
            return int(year) if len(year) == 4 else 2000 + int(year)
    return None


# Columns some releases leave out: the new layout's gender (2025 re-releases), the legacy standardized amount.
_OPTIONAL = {"rndrng_prvdr_gndr", "nppes_provider_gender", "gender of the provider"}

LAYOUTS = (
    Layout("legacy", "npi", tuple(c.lower() for c in LEGACY if c.lower() not in _OPTIONAL)),
    Layout("legacy_display", "national provider identifier", tuple(c.lower() for c in LEGACY_DISPLAY if c.lower() not in _OPTIONAL)),
    Layout("new", "rndrng_npi", tuple(c.lower() for c in NEW if c.lower() not in _OPTIONAL)),
)  # fmt: skip


class UnknownLayout(ValueError):
    pass


def detect_layout(header: list[str]) -> Layout:
    """The layout whose columns the header has, matching names case-insensitively."""
    names = {h.strip().lower() for h in header}
    for layout in LAYOUTS:
        if set(layout.required) <= names:
            return layout
    closest = min(LAYOUTS, key=lambda layout: len(set(layout.required) - names))
    missing = [c for c in closest.required if c not in names]
    raise UnknownLayout(
        f"not a CMS provider-services file in any known spelling; closest is {closest.name}, "
        f"which lacks {len(missing)} columns: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"
    )


def replay(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Stream a real file row by row as (NPI, the row as header -> string JSON); constant memory."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        first = handle.readline()
        delimiter = "\t" if first.count("\t") > first.count(",") else ","
        header = next(csv.reader(io.StringIO(first), delimiter=delimiter))
        layout = detect_layout(header)
        npi_at = [h.strip().lower() for h in header].index(layout.npi)
        for row in csv.reader(handle, delimiter=delimiter):
            if not row:
                continue
            yield row[npi_at].encode(), json.dumps(dict(zip(header, row, strict=False))).encode()


# --- synthetic -------------------------------------------------------------------------------------

STATES = [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "DC",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
    "AA",
    "AE",
    "AP",
    "AS",
    "GU",
    "MP",
    "PR",
    "VI",
    "XX",
    "ZZ",
]  # the 61 codes of CY2017

PROVIDER_TYPES = (
    "Diagnostic Radiology", "Internal Medicine", "Family Practice", "Nurse Practitioner", "Cardiology",
    "Physician Assistant", "Physical Therapist", "Orthopedic Surgery", "Ophthalmology", "Emergency Medicine",
    "Dermatology", "Clinical Laboratory", "Anesthesiology", "General Surgery", "Urology", "Gastroenterology",
    "Obstetrics & Gynecology", "Neurology", "Pulmonary Disease", "Psychiatry", "Podiatry", "Optometry",
    "Hematology-Oncology", "Nephrology", "Otolaryngology", "Ambulance Service Provider", "Chiropractic",
    "Endocrinology", "Rheumatology", "Infectious Disease", "Physical Medicine and Rehabilitation",
    "Clinical Psychologist", "Licensed Clinical Social Worker", "Pathology", "Radiation Oncology",
    "Medical Oncology", "Hematology", "Vascular Surgery", "Neurosurgery", "Plastic and Reconstructive Surgery",
    "Thoracic Surgery", "Cardiac Surgery", "Colorectal Surgery (Proctology)", "Hand Surgery",
    "Interventional Radiology", "Interventional Pain Management", "Pain Management", "Geriatric Medicine",
    "Allergy/Immunology", "Critical Care (Intensivists)", "Sports Medicine", "Nuclear Medicine",
    "Hospice and Palliative Care", "Osteopathic Manipulative Medicine", "Certified Nurse Midwife",
    "Certified Registered Nurse Anesthetist (CRNA)", "Anesthesiology Assistant", "Audiologist",
    "Occupational Therapist", "Speech Language Pathologist", "Registered Dietitian or Nutrition Professional",
    "Mass Immunizer Roster Biller", "Independent Diagnostic Testing Facility (IDTF)", "Portable X-Ray Supplier",
    "Ambulatory Surgical Center", "Centralized Flu", "Clinical Cardiac Electrophysiology",
    "Advanced Heart Failure and Transplant Cardiology", "Interventional Cardiology", "Cardiac Electrophysiology",
    "Geriatric Psychiatry", "Neuropsychiatry", "Addiction Medicine", "Preventive Medicine", "General Practice",
    "Pediatric Medicine", "Maxillofacial Surgery", "Oral Surgery (Dentist only)", "Surgical Oncology",
    "Gynecological Oncology", "Peripheral Vascular Disease", "Sleep Medicine", "Hospitalist",
    "Undersea and Hyperbaric Medicine", "Medical Toxicology", "Micrographic Dermatologic Surgery",
    "Adult Congenital Heart Disease", "Epileptologists", "Slide Preparation Facility", "Psychologist, Clinical",
    "Public Health or Welfare Agency", "Unknown Supplier/Provider Specialty", "Multispecialty Clinic/Group Practice",
    "Emergency Medicine, Pediatric", "Radiology, Neuroradiology", "Pharmacy", "Mammography Center",
    "Single or Multispecialty Clinic or Group Practice", "Dentist", "Rural Health Clinic",
)  # fmt: skip

# Office visits by how often they are billed: 99213 and 99214 lead the real file.
EM_CODES = ("99213", "99214", "99212", "99215", "99204", "99203", "99205", "99211", "99202", "99201")


def _codes(rng: random.Random, n: int = 3000) -> list[str]:
    """About 3,000 HCPCS codes of the real shapes, most billed first: E&M visits, then CPT, J, G and U codes."""
    codes = list(EM_CODES)
    seen = set(codes)
    while len(codes) < n:
        shape = rng.random()
        if shape < 0.75:
            code = f"{rng.randrange(10000, 99999):05d}"
        elif shape < 0.88:
            code = f"J{rng.randrange(10000):04d}"
        elif shape < 0.97:
            code = f"G{rng.randrange(10000):04d}"
        else:
            code = f"{rng.randrange(10000):04d}U"
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


@dataclass(frozen=True)
class _Provider:
    npi: str
    last: str
    first: str
    gender: str
    entity: str
    city: str
    zip5: str
    state: str
    ptype: str


def _providers(rng: random.Random, n: int = 20_000) -> list[_Provider]:
    lasts = ("SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "NGUYEN", "PATEL")
    firsts = ("JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "ARDALAN", "WEI")
    cities = ("SPRINGFIELD", "FRANKLIN", "CUMBERLAND", "GREENVILLE", "BRISTOL", "CLINTON", "SALEM", "MADISON")
    # Big states get more providers, as in the real file.
    state_weights = [
        12 if s in ("CA", "TX", "FL", "NY", "PA") else 0.2 if len(s) == 2 and s in "AA AE AP AS GU MP VI XX ZZ" else 3
        for s in STATES
    ]
    type_weights = [1 / (i + 1) ** 0.8 for i in range(len(PROVIDER_TYPES))]
    states = rng.choices(STATES, weights=state_weights, k=n)
    types = rng.choices(PROVIDER_TYPES, weights=type_weights, k=n)
    providers = []
    for i in range(n):
        organization = rng.random() < 0.05
        providers.append(
            _Provider(
                npi=f"{rng.randrange(10**9, 2 * 10**9)}",
                last=rng.choice(lasts) + (" MEDICAL GROUP" if organization else ""),
                first="" if organization else rng.choice(firsts),
                gender="" if organization else rng.choice("MF"),
                entity="O" if organization else "I",
                city=rng.choice(cities),
                zip5=f"{rng.randrange(100000):05d}",
                state=states[i],
                ptype=types[i],
            )
        )
    return providers


def synthetic(seed: int = 0, layout: str = "legacy", part: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """An endless stream of realistic records in the legacy or the new layout; the same for the same seed.

    Streams of one seed and different `part`s draw different records from the same providers and
    procedures, so several processes can generate one realistic data set in parallel.
    """
    if layout not in ("legacy", "new"):
        raise ValueError(f"layout must be legacy or new, not {layout!r}")
    rng = random.Random(seed)
    codes = _codes(rng)
    code_weights = list(itertools.accumulate(1 / (rank + 1) ** 1.1 for rank in range(len(codes))))
    base_payment = {code: rng.lognormvariate(3.9, 1.1) for code in codes}  # median ~ $49 a service
    providers = _providers(rng)
    if part:
        rng = random.Random(f"{seed}/{part}")
    # A plain template rather than json.dumps: the generated values hold no quote or backslash, and
    # this is the producer's hot loop (json.dumps alone would cap it below 50,000 records a second).
    template = "{" + ", ".join(f'"{name}": "%s"' for name in (LEGACY if layout == "legacy" else NEW)) + "}"
    while True:
        provider = rng.choice(providers)
        code = rng.choices(codes, cum_weights=code_weights)[0]
        place = "F" if rng.random() < 0.35 else "O"
        benes = 11 + int(rng.lognormvariate(2.9, 1.0))
        services = benes * (1 + rng.lognormvariate(-0.5, 0.9)) if rng.random() < 0.9 else benes * rng.uniform(0.9, 1.0)
        services = round(services, 1) if rng.random() < 0.05 else round(services)
        bene_days = rng.randint(benes, max(benes, int(services)))
        allowed = base_payment[code] / 0.79 * rng.uniform(0.8, 1.25) * (0.85 if place == "F" else 1.0)
        payment = allowed * rng.uniform(0.78, 0.80)
        values = [
            provider.npi, provider.last, provider.first, "", "" if provider.entity == "O" else "M.D.",
            provider.gender, provider.entity, f"{rng.randrange(1, 9999)} MAIN ST", "", provider.city,
            provider.zip5, provider.state, "US", provider.ptype, "Y", place, code, f"Procedure {code}, as coded",
            "Y" if code.startswith("J") else "N", f"{services}", f"{benes}", f"{bene_days}", f"{allowed:.8f}",
            f"{allowed * rng.uniform(2, 5):.8f}", f"{payment:.8f}", f"{payment * rng.uniform(0.95, 1.05):.8f}",
        ]  # fmt: skip
        if layout == "new":
            values = _as_new(values, provider, rng)
        yield provider.npi.encode(), (template % tuple(values)).encode()


def _as_new(legacy: list[str], provider: _Provider, rng: random.Random) -> list[str]:
    """The same record in the new layout's column order, with its extra columns."""
    v = dict(zip(LEGACY, legacy, strict=True))
    ruca = rng.choice(("1", "1.1", "2", "4", "7.1", "10", "10.3"))
    return [
        v["npi"], v["nppes_provider_last_org_name"], v["nppes_provider_first_name"], v["nppes_provider_mi"],
        v["nppes_credentials"], v["nppes_provider_gender"], v["nppes_entity_code"], v["nppes_provider_street1"],
        v["nppes_provider_street2"], v["nppes_provider_city"], v["nppes_provider_state"],
        f"{STATES.index(provider.state) + 1:02d}", v["nppes_provider_zip"], ruca,
        "Metropolitan area core: primary flow within an urbanized area of 50,000 and greater",
        v["nppes_provider_country"], v["provider_type"], v["medicare_participation_indicator"], v["hcpcs_code"],
        v["hcpcs_description"], v["hcpcs_drug_indicator"], v["place_of_service"], v["bene_unique_cnt"],
        v["line_srvc_cnt"], v["bene_day_srvc_cnt"], v["average_submitted_chrg_amt"],
        v["average_Medicare_allowed_amt"], v["average_Medicare_payment_amt"], v["average_Medicare_standard_amt"],
    ]  # fmt: skip


def __getattr__(name: str) -> Contract | str:
    # The contract is declared in cms.yml, and with it the one header a row's data year travels
    # in (`headers:`, which staging reads as `_header_<name>`): these names read the registry.
    from ingestion.streams import contract

    if name == "CONTRACT":
        return contract("cms.provider_services")
    if name == "DATA_YEAR_HEADER":
        (header,) = contract("cms.provider_services").headers
        return header
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
