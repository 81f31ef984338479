"""CarePay: real exports replay as they stand, the synthetic tables hold every defect, and each
defect ends where it should (cleaned, dropped with a count, or repaired) while the marts equal
the figures computed here."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion import duck
from ingestion.streams import carepay
from tests.cli import lakehouse, run
from tests.conftest import recreate_topics

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_INVOICES = REPO_ROOT / "tests" / "data" / "carepay_invoices.csv"


def test_a_real_export_replays_row_by_row_as_it_stands():
    messages = list(carepay.replay(REAL_INVOICES, "invoices"))
    assert len(messages) == 59_218
    key, value = messages[0]
    record = json.loads(value)
    assert list(record) == ["ID", "STATUS", "DATE_CREATED", "TREATMENT_ID"]  # the byte-order mark is not a name
    assert record == {"ID": "6766", "STATUS": "FINAL", "DATE_CREATED": "NULL", "TREATMENT_ID": "6766"}
    assert key == b"6766"
    assert sum(json.loads(v)["DATE_CREATED"] == "NULL" for _, v in messages) == 23_862


def test_a_file_that_is_not_the_table_is_refused_naming_what_it_lacks(tmp_path):
    with pytest.raises(carepay.NotAnExport, match="lacks AMOUNT, CURRENCY, INVOICE_ID, PRODUCT_ID"):
        next(carepay.replay(REAL_INVOICES, "invoice_items"))


def test_the_synthetic_tables_are_consistent_and_hold_every_defect():
    messages = list(carepay.synthetic(treatments=3000, seed=1))
    assert messages == list(carepay.synthetic(treatments=3000, seed=1))
    rows = defaultdict(list)
    for contract, _, value in messages:
        rows[contract.topic.removeprefix("carepay.")].append(json.loads(value))
    ids = {table: {r["ID"] for r in table_rows} for table, table_rows in rows.items()}
    nulled = {table: sum(set(r.values()) == {"NULL"} for r in table_rows) for table, table_rows in rows.items()}
    # Every reference finds its row, but for the rows the export emptied (every column NULL).
    for table, column, target in (("claims", "TREATMENT_ID", "treatments"), ("invoices", "TREATMENT_ID", "treatments"),
                                  ("invoice_items", "INVOICE_ID", "invoices")):  # fmt: skip
        dangling = {r[column] for r in rows[table]} - {"NULL"} - ids[target]
        assert len(dangling) <= nulled[target], (table, column)
    defects = Counter({("all null", table): count for table, count in nulled.items()})
    items = [r for r in rows["invoice_items"] if r["ID"] != "NULL"]
    defects["negative product"] = sum(int(r["PRODUCT_ID"]) < 0 for r in items)
    defects["zero amount"] = sum(float(r["AMOUNT"]) == 0 for r in items)
    defects["invoice date null"] = sum(r["DATE_CREATED"] == "NULL" for r in rows["invoices"])
    treatments = [r for r in rows["treatments"] if r["ID"] != "NULL"]
    defects["shifted"] = sum("PROGRAM_ID" not in r for r in treatments)
    defects["program missing"] = sum(r.get("PROGRAM_ID") == "NULL" for r in treatments)
    defects["modified before created"] = sum(
        r["DATE_MODIFIED"] < r["DATE_CREATED"]
        for r in rows["claims"]
        if "NULL" not in (r["DATE_MODIFIED"], r["DATE_CREATED"])
    )
    assert all(count > 0 for count in defects.values()), defects
    assert 0.3 < defects["invoice date null"] / len(rows["invoices"]) < 0.5


# --- end to end ------------------------------------------------------------------------------------


def write_export(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """As MySQL's export writes it: a byte-order mark, the literal NULL."""
    with open(path, "w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


TREATMENTS = [
    [
        "1",
        "CLOSED",
        "CONSULTATION",
        "2019-01-01 10:00:00",
        "2019-01-02 10:00:00",
        "2019-01-01 11:00:00",
        "2019-01-01 10:00:00",
        "7",
        "11",
    ],
    [
        "2",
        "CLOSED",
        "LAB",
        "2019-02-01 10:00:00",
        "2019-01-01 10:00:00",
        "2019-02-01 11:00:00",
        "2019-02-01 10:00:00",
        "8",
        "NULL",
    ],
    # The export that lacked TYPE: every later value one column early, the last column empty.
    [
        "3",
        "ACTIVE",
        "2019-03-01 10:00:00",
        "2019-03-02 10:00:00",
        "2019-03-01 11:00:00",
        "2019-03-01 10:00:00",
        "9",
        "13",
    ],
    ["NULL"] * 9,
]
CLAIMS = [
    ["100", "APPROVED", "OUTPATIENT", "NULL", "2019-01-03 10:00:00", "1", "11", "1500.5000", "KES"],
    ["101", "REJECTED", "OUTPATIENT", "2019-02-01 10:00:00", "2019-02-05 10:00:00", "2", "12", "800.0000", "KES"],
    ["102", "APPROVED", "INPATIENT", "2019-03-01 10:00:00", "2019-03-04 10:00:00", "3", "13", "2500.0000", "KES"],
    ["103", "PAID", "DENTAL", "2019-03-01 10:00:00", "2019-03-05 10:00:00", "3", "13", "120.2500", "KES"],
    ["NULL"] * 9,
]
INVOICES = [["200", "FINAL", "NULL", "1"], ["201", "SUBMITTED", "2019-02-01 12:00:00", "2"],
            ["202", "FINAL", "2019-03-01 12:00:00", "3"], ["203", "DRAFT", "NULL", "99"]]  # fmt: skip
ITEMS = [
    ["300", "ACTIVE", "NULL", "200", "17", "KES", "100.0000"],
    ["301", "ACTIVE", "2019-01-01 12:00:00", "200", "-5", "KES", "50.0000"],  # negative PRODUCT_ID: dropped
    ["302", "ACTIVE", "2019-02-01 12:00:00", "201", "18", "KES", "0.0000"],  # zero AMOUNT: dropped
    ["303", "ACTIVE", "2019-02-01 12:00:00", "201", "19", "KES", "75.2500"],
    ["304", "ACTIVE", "2019-03-01 12:00:00", "202", "20", "KES", "300.0000"],
    ["305", "ACTIVE", "2019-03-01 12:00:00", "202", "21", "KES", "20.0000"],
    ["306", "ACTIVE", "NULL", "203", "22", "KES", "9.9900"],
    ["NULL"] * 7,
]


def query(home: Path, sql: str) -> list[tuple]:
    with duck.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.integration
def test_every_defect_ends_where_it_should_and_the_marts_equal_independent_totals(kafka_env, lake_home, tmp_path):
    recreate_topics(kafka_env, *(c.topic for c in carepay.CONTRACTS), partitions=1)
    for table, rows in (
        ("treatments", TREATMENTS),
        ("claims", CLAIMS),
        ("invoices", INVOICES),
        ("invoice_items", ITEMS),
    ):
        path = write_export(tmp_path / f"{table}.csv", list(carepay.COLUMNS[table]), rows)
        assert f"sent {len(rows)} messages" in lakehouse("produce", "carepay", "--file", str(path), "--table", table)
    lakehouse("drain", "carepay")
    built = run("build", "carepay")
    assert built.returncode == 0, built.stdout + built.stderr
    # The build says what matters: its numbers, not GX's registrations nor pandas' warnings.
    assert re.search(r"carepay: built, dbt PASS=\d+ WARN=0 ERROR=0 .*, in [\d.]+ s", built.stdout)
    assert re.search(r"^int_carepay__claims: \d+ rows$", built.stdout, re.MULTILINE)
    assert "Skipping registering" not in built.stderr and "UserWarning" not in built.stderr
    assert " START " not in built.stdout + built.stderr  # dbt's line per model: with --verbose

    rejected = Counter(query(lake_home, "select source_table, rejection_reason from carepay_rejected_rows"))
    assert rejected == {
        ("treatments", "every column null"): 1, ("claims", "every column null"): 1,
        ("invoice_items", "every column null"): 1, ("invoice_items", "negative PRODUCT_ID"): 1,
        ("invoice_items", "zero AMOUNT"): 1,
    }  # fmt: skip
    treatments = {r[0]: r[1:] for r in query(lake_home, """
        select treatment_id, treatment_type, date_created, date_modified, provider_id, program_id, was_shifted,
               program_from_claim from int_carepay__treatments""")}  # fmt: skip
    repaired = treatments[3]
    assert (repaired[0], str(repaired[1]), repaired[3], repaired[4], repaired[5]) == (
        None,
        "2019-03-01 10:00:00",
        9,
        13,
        True,
    )
    assert treatments[2][4:] == (12, False, True)  # the program from the claim
    assert treatments[2][2] is None  # modified before created: not believed
    dates = dict(query(lake_home, "select invoice_id, cast(date_created as varchar) from int_carepay__invoices"))
    assert dates == {200: "2019-01-01 10:00:00", 201: "2019-02-01 12:00:00", 202: "2019-03-01 12:00:00", 203: None}
    assert (
        dict(query(lake_home, "select claim_id, cast(date_created as varchar) from int_carepay__claims"))[100]
        == "2019-01-01 10:00:00"
    )

    # The marts, computed here from the rows that survive the rules.
    claims = [c for c in CLAIMS if c[0] != "NULL"]
    by_status = defaultdict(list)
    for c in claims:
        by_status[c[1]].append(Decimal(c[7]))
    stats = {r[0]: r[1:] for r in query(lake_home, "select * from carepay_claim_stats_by_status")}
    assert stats == {
        status: (len(a), sum(a), max(a), min(a), pytest.approx(float(sum(a) / len(a))))
        for status, a in by_status.items()
    }
    latest_claim = {"1": "APPROVED", "2": "REJECTED", "3": "PAID"}  # treatment 3: claim 103 modified last
    kept_items = [i for i in ITEMS if i[0] != "NULL" and int(i[4]) >= 0 and Decimal(i[6]) != 0]
    totals: dict[str, list] = defaultdict(lambda: [0, 0, Decimal(0)])
    for invoice in INVOICES:
        status = latest_claim.get(invoice[3], "NO CLAIM")
        mine = [i for i in kept_items if i[3] == invoice[0]]
        totals[status][0] += 1
        totals[status][1] += len(mine)
        totals[status][2] += sum(Decimal(i[6]) for i in mine)
    built = {r[0]: list(r[1:]) for r in query(lake_home, "select * from carepay_invoice_totals_by_claim_status")}
    assert built == {status: list(t) for status, t in totals.items()}
