"""CarePay (M-TIBA): invoices, invoice items, claims and treatments exported from MySQL as CSV.

A message is one exported row as it stands: the table's own upper-case column names to the
row's string values, the literal `NULL` included, key = the row's ID. Replay a real export, or
synthesize the four tables consistent with each other (items -> invoices -> treatments <- claims)
with the defects the real exports have, at realistic rates.

The extension of `carepay.yml`, which declares the stream.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from ingestion.contracts import Contract

COLUMNS = {
    "invoices": ("ID", "STATUS", "DATE_CREATED", "TREATMENT_ID"),
    "invoice_items": ("ID", "STATUS", "DATE_CREATED", "INVOICE_ID", "PRODUCT_ID", "CURRENCY", "AMOUNT"),
    "claims": ("ID", "STATUS", "TYPE", "DATE_CREATED", "DATE_MODIFIED", "TREATMENT_ID", "PROGRAM_ID", "AMOUNT", "CURRENCY"),
    "treatments": (
        "ID", "STATUS", "TYPE", "DATE_CREATED", "DATE_MODIFIED", "DATE_SUBMITTED", "DATE_TREATMENT", "PROVIDER_ID",
        "PROGRAM_ID",
    ),
}  # fmt: skip

TABLES = tuple(COLUMNS)


class NotAnExport(ValueError):
    pass


def replay(path: Path, table: str) -> Iterator[tuple[bytes, bytes]]:
    """Stream an exported CSV row by row as (ID, the row as header -> string JSON)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        names = [h.strip().upper() for h in header]
        if "ID" not in names:
            raise NotAnExport(f"{path}: not a CarePay export (no ID column in its header {header})")
        missing = set(COLUMNS[table]) - set(names) - {"TYPE"}
        if missing:
            raise NotAnExport(f"{path}: not a {table} export; it lacks {', '.join(sorted(missing))}")
        at = names.index("ID")
        for row in reader:
            if row:
                yield row[at].encode(), json.dumps(dict(zip(header, row, strict=False))).encode()


# --- synthetic ----------------------------------------------------------------------------------

# How often each defect of the real exports turns up.
RATES = {
    "all_null": 0.005,  # a row with every column NULL
    "invoice_date_null": 0.40,  # 23,862 of the 59,218 real invoices
    "item_date_null": 0.05,
    "claim_date_null": 0.03,
    "negative_product": 0.01,
    "zero_amount": 0.01,
    "program_missing": 0.05,  # on treatments
    "modified_before_created": 0.02,
    "shifted_treatment": 0.05,  # a row of the export that lacks its TYPE value
}

INVOICE_STATUSES = (("SUBMITTED", 29166), ("FINAL", 20196), ("DRAFT", 9582), ("RESUBMITTED", 258), ("REOPENED", 16))
CLAIM_STATUSES = (("APPROVED", 60), ("SUBMITTED", 20), ("REJECTED", 10), ("PAID", 8), ("CANCELLED", 2))
CLAIM_TYPES = ("OUTPATIENT", "INPATIENT", "DENTAL", "OPTICAL")
TREATMENT_TYPES = ("CONSULTATION", "PHARMACY", "LAB", "PROCEDURE")


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def synthetic(treatments: int = 1000, seed: int = 0) -> Iterator[tuple[Contract, bytes, bytes]]:
    """The four tables for `treatments` treatments, each row as the export has it, defects included:
    treatments first, then their claims, invoices and invoice items."""
    from ingestion.streams import contract as contract_of

    rng = random.Random(seed)
    start = datetime(2018, 1, 25)
    rows: dict[str, list[dict[str, str]]] = {t: [] for t in TABLES}
    next_id = {t: 1 + 1000 * i for i, t in enumerate(TABLES)}

    def new_id(table: str) -> str:
        next_id[table] += 1
        return str(next_id[table])

    for _ in range(treatments):
        created = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 670))
        treatment_id, program = new_id("treatments"), str(rng.randint(1, 40))
        modified = created + timedelta(hours=rng.randint(1, 200))
        if rng.random() < RATES["modified_before_created"]:
            modified = created - timedelta(hours=rng.randint(1, 48))
        rows["treatments"].append({
            "ID": treatment_id, "STATUS": rng.choice(("ACTIVE", "CLOSED", "SUBMITTED")),
            "TYPE": rng.choice(TREATMENT_TYPES), "DATE_CREATED": _when(created), "DATE_MODIFIED": _when(modified),
            "DATE_SUBMITTED": _when(created + timedelta(hours=1)), "DATE_TREATMENT": _when(created),
            "PROVIDER_ID": str(rng.randint(1, 300)),
            "PROGRAM_ID": "NULL" if rng.random() < RATES["program_missing"] else program,
        })  # fmt: skip
        for _ in range(rng.choices((0, 1, 2), weights=(10, 85, 5))[0]):
            amount = round(rng.lognormvariate(7.5, 0.9), 2)
            claim_modified = created + timedelta(hours=rng.randint(2, 300))
            if rng.random() < RATES["modified_before_created"]:
                claim_modified = created - timedelta(hours=rng.randint(1, 48))
            rows["claims"].append({
                "ID": new_id("claims"), "STATUS": _pick(rng, CLAIM_STATUSES), "TYPE": rng.choice(CLAIM_TYPES),
                "DATE_CREATED": "NULL" if rng.random() < RATES["claim_date_null"] else _when(created),
                "DATE_MODIFIED": _when(claim_modified), "TREATMENT_ID": treatment_id, "PROGRAM_ID": program,
                "AMOUNT": f"{amount:.4f}", "CURRENCY": "KES",
            })  # fmt: skip
        for _ in range(rng.choices((0, 1, 2), weights=(5, 90, 5))[0]):
            invoice_id = new_id("invoices")
            rows["invoices"].append({
                "ID": invoice_id, "STATUS": _pick(rng, INVOICE_STATUSES),
                "DATE_CREATED": "NULL" if rng.random() < RATES["invoice_date_null"] else _when(created),
                "TREATMENT_ID": treatment_id,
            })  # fmt: skip
            for _ in range(rng.randint(1, 4)):
                product = rng.randint(1, 5000)
                amount = round(rng.lognormvariate(6.5, 1.0), 2)
                if rng.random() < RATES["negative_product"]:
                    product = -product
                if rng.random() < RATES["zero_amount"]:
                    amount = 0.0
                rows["invoice_items"].append({
                    "ID": new_id("invoice_items"), "STATUS": "ACTIVE",
                    "DATE_CREATED": "NULL" if rng.random() < RATES["item_date_null"] else _when(created),
                    "INVOICE_ID": invoice_id, "PRODUCT_ID": str(product), "CURRENCY": "KES", "AMOUNT": f"{amount:.4f}",
                })  # fmt: skip
    for table, table_rows in rows.items():
        contract = contract_of(f"carepay.{table}")
        for row in table_rows:
            if rng.random() < RATES["all_null"]:
                row = dict.fromkeys(row, "NULL")
            elif table == "treatments" and rng.random() < RATES["shifted_treatment"]:
                row = _without_type(row)
            yield contract, row["ID"].encode(), json.dumps(row).encode()


def _without_type(row: dict[str, str]) -> dict[str, str]:
    """A treatments row from the export that lacked its TYPE value: every later value moves one
    column left under the header, and the last column gets nothing."""
    names = list(COLUMNS["treatments"])
    values = [row[name] for name in names if name != "TYPE"]
    return dict(zip(names, values, strict=False))


def __getattr__(name: str) -> Contract | tuple[Contract, ...] | dict[str, Contract]:
    # The contracts are declared in carepay.yml; these names read them from the registry.
    from ingestion.streams import contract, contracts_for

    if name == "CONTRACTS_BY_TABLE":
        return {table: contract(f"carepay.{table}") for table in TABLES}
    if name == "CONTRACTS":
        return contracts_for("carepay")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
