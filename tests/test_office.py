"""The office stream: re-sent claims and diagnoses count once (the first copy wins), and
`office_revenue_10min` equals the revenue computed here from the same records, also after an
incremental build."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from ingestion import duck
from ingestion.streams import office
from tests import lake_tables
from tests.cli import lakehouse
from tests.conftest import recreate_topics

# Yesterday morning: a fixed date would fall out of the broker's 7-day retention as the calendar moves
# on, and the broker would delete the records before the drain reads them.
START = (datetime.now(UTC) - timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)


def test_the_producer_sends_a_claim_and_a_diagnosis_per_pair_and_re_sends_some_unchanged():
    messages = list(office.activity(count=2000, duplicates=0.1, seed=3))
    assert messages == list(office.activity(count=2000, duplicates=0.1, seed=3))
    for contract in (office.CLAIMS, office.DIAGNOSES):
        values = [json.loads(value) for c, _, value in messages if c is contract]
        ids = [v["id"] for v in values]
        assert set(ids) == set(range(2000))
        resent = len(ids) - 2000
        assert 120 < resent < 280  # about 10% of 2000
        first = {}
        for v in values:  # a re-sent object is the same object
            assert first.setdefault(v["id"], v) == v
        assert all(0 <= v["patient_id"] < office.PATIENTS for v in values)
    patients = [json.loads(value) for _, value in office.patients()]
    assert [p["id"] for p in patients] == list(range(1000))


# --- end to end -------------------------------------------------------------------------------------


def send(bootstrap: str, topic: str, records: list[tuple[dict, datetime]]) -> None:
    """An independent producer: plain confluent-kafka, explicit Kafka timestamps."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for record, at in records:
        producer.produce(topic, key=str(record["id"]), value=json.dumps(record), timestamp=int(at.timestamp() * 1000))
    assert producer.flush(30) == 0


def expected_revenue(claims: list[tuple[dict, datetime]], diagnoses: list[tuple[dict, datetime]]) -> dict:
    first_claims: dict[int, tuple[dict, datetime]] = {}
    for record, at in sorted(claims, key=lambda c: c[1]):
        first_claims.setdefault(record["id"], (record, at))
    first_diagnoses: dict[int, tuple[dict, datetime]] = {}
    for record, at in sorted(diagnoses, key=lambda d: d[1]):
        first_diagnoses.setdefault(record["id"], (record, at))
    diagnosed = {
        (record["patient_id"], {"R41.3": "Amnesia", "J44.9": "Asthma"}.get(record["icd10_code"]))
        for record, _ in first_diagnoses.values()
    }
    windows: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0])
    for record, at in first_claims.values():
        for category in ("Amnesia", "Asthma"):
            if (record["patient_id"], category) in diagnosed:
                start = at.replace(minute=at.minute - at.minute % 10, second=0, microsecond=0)
                windows[(start.replace(tzinfo=None), category)][0] += record["price"]
                windows[(start.replace(tzinfo=None), category)][1] += 1
    return {key: (revenue, count) for key, (revenue, count) in windows.items()}


def built(home: Path) -> dict:
    with duck.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("select window_start, category, revenue, claims from office_revenue_10min").fetchall()
    return {(start, category): (float(revenue), count) for start, category, revenue, count in rows}


def rejected(home: Path) -> set[tuple[str, str, str]]:
    with duck.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return set(con.execute("select source_table, row_id, rejection_reason from office_rejected_rows").fetchall())


def assert_raw_is_staging_plus_rejected(home: Path) -> None:
    with duck.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        for contract, staging in zip(office.CONTRACTS, ("claims", "diagnoses", "patients"), strict=True):
            assert contract.table_name == f"office_{staging}"
            raw = lake_tables.read_table(home, "raw", contract.topic, ("_kafka_offset",)).num_rows
            kept = con.execute(f"select count(*) from stg_office__{staging}").fetchone()[0]
            left_out = con.execute(
                "select count(*) from office_rejected_rows where source_table = ?", [contract.table_name]
            ).fetchone()[0]
            assert raw == kept + left_out, contract.topic


@pytest.mark.integration
def test_revenue_per_10_minutes_counts_each_claim_once_for_the_patients_diagnosed(kafka_env, lake_home):
    recreate_topics(kafka_env, *(c.topic for c in office.CONTRACTS), partitions=1)
    send(kafka_env, office.PATIENTS_CONTRACT.topic, [(json.loads(v), START) for _, v in office.patients()])
    minute = timedelta(minutes=1)
    diagnoses = [
        ({"id": 0, "patient_id": 1, "icd10_code": "R41.3"}, START),
        ({"id": 1, "patient_id": 2, "icd10_code": "J44.9"}, START + 12 * minute),
        ({"id": 2, "patient_id": 3, "icd10_code": "R41.3"}, START + 1 * minute),
        ({"id": 2, "patient_id": 3, "icd10_code": "R41.3"}, START + 30 * minute),  # re-sent: the first counts
        ({"id": 3, "patient_id": 3, "icd10_code": "J44.9"}, START + 2 * minute),  # both categories
        ({"id": 4, "patient_id": 4, "icd10_code": "I10"}, START),  # not watched
    ]
    prices = itertools.cycle([3, 60, 95, 8, 12])
    claims = [
        ({"id": i, "patient_id": 1 + i % 4, "code": "99213", "price": next(prices)}, START + (i * 97 // 60) * minute)
        for i in range(30)
    ]
    claims += [(claims[3][0], START + 40 * minute), (claims[11][0], START + 41 * minute)]  # re-sent claims
    send(kafka_env, office.DIAGNOSES.topic, diagnoses)
    send(kafka_env, office.CLAIMS.topic, claims)
    tombstone = Producer({"bootstrap.servers": kafka_env})
    tombstone.produce(office.CLAIMS.topic, key=b"7", value=None)
    assert tombstone.flush(30) == 0
    lakehouse("drain", "office")
    out = lakehouse("build", "office")
    assert "stg_office__claims: 30 rows" in out and "stg_office__diagnoses: 5 rows" in out
    # What staging left out is counted, with why: raw = staging + rejected, per topic.
    assert rejected(lake_home) == {
        ("office_claims", "3", "duplicate id: an earlier copy counts"),
        ("office_claims", "11", "duplicate id: an earlier copy counts"),
        ("office_claims", "7", "tombstone"),
        ("office_diagnoses", "2", "duplicate id: an earlier copy counts"),
    }
    assert_raw_is_staging_plus_rejected(lake_home)

    expected = expected_revenue(claims, diagnoses)
    assert {k for k in expected if k[1] == "Asthma"} and {k for k in expected if k[1] == "Amnesia"}
    assert built(lake_home) == expected

    # An incremental build: later claims, and a claim that reaches the lake late within the hour.
    more = [
        ({"id": 100 + i, "patient_id": 1 + i % 4, "code": "03230", "price": 5 + i}, START + (50 + i * 3) * minute)
        for i in range(10)
    ]
    more.append(({"id": 200, "patient_id": 3, "code": "81002", "price": 7}, START + 35 * minute))
    later = [({"id": 300, "patient_id": 1, "code": "99214", "price": 120}, START + 180 * minute)]  # hours later
    send(kafka_env, office.CLAIMS.topic, more + later)
    lakehouse("drain", "office")
    lakehouse("build", "office")
    assert built(lake_home) == expected_revenue(claims + more + later, diagnoses)
    assert_raw_is_staging_plus_rejected(lake_home)

    # A diagnosis that changes windows far older than the late-arrival allowance.
    news = [({"id": 5, "patient_id": 4, "icd10_code": "R41.3"}, START + 190 * minute)]
    send(kafka_env, office.DIAGNOSES.topic, news)
    lakehouse("drain", "office")
    lakehouse("build", "office")
    assert built(lake_home) == expected_revenue(claims + more + later, diagnoses + news)
