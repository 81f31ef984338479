"""The CMS marts hold, for a small fixed input replayed in every spelling, the numbers computed
independently here, re-sent rows included; an incremental build takes in a correction, and a
bad row is set aside at the gate while the marts build without it."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer

from ingestion import duck
from ingestion.streams import cms
from tests import lake_tables
from tests.cli import lakehouse
from tests.cms_files import api_csv, cms_txt, new_csv, portal_csv
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

TOPIC = "cms.provider_services"

PROVIDERS = [  # npi, state, zip
    ("1003000126", "MD", "21502"),
    ("1003000134", "MD", "02150"),
    ("1003000142", "CA", "902101234"),
    ("1003000159", "CA", "94110"),
    ("1003000167", "ZZ", "00501"),
    ("1003000175", "TX", "75001"),
]
CODES = ["99213", "99214", "99203", "J0135", "0001U"]


def row(npi: str, state: str, zip_code: str, code: str, place: str, services: float, payment: float) -> list[str]:
    """A legacy-order row; allowed and charge follow from the payment as in the real file."""
    allowed = payment / 0.79
    return [
        npi, "PROVIDER " + npi[-3:], "ANN", "", "M.D.", "F", "I", "1 MAIN ST", "", "CUMBERLAND", zip_code, state,
        "US", "Internal Medicine", "Y", place, code, f"Procedure {code}, as coded", "Y" if code[0] == "J" else "N",
        f"{services:g}", "11" if services < 20 else "17", "11", f"{allowed:.9f}", f"{allowed * 3:.8f}",
        f"{payment:.9f}", f"{payment * 1.01:.9f}",
    ]  # fmt: skip


def fixed_rows() -> list[list[str]]:
    rows = []
    for i, (npi, state, zip_code) in enumerate(PROVIDERS):
        for j, code in enumerate(CODES):
            if (i + j) % 3 == 0:
                continue
            place = "F" if (i * j) % 2 else "O"
            services = 11 + 7 * i + 3 * j + (0.5 if code == "J0135" else 0)
            payment = (1250.0 + 97 * i if code == "J0135" else 20 + 13.37 * j + 1.11 * i) * (0.9 if place == "F" else 1)
            rows.append(row(npi, state, zip_code, code, place, services, payment))
    # One provider bills 99213 in both settings, so its per-provider average weighs the two.
    rows.append(row("1003000142", "CA", "902101234", "99213", "F", 40, 15.5))
    return rows


def replay(*paths: Path) -> None:
    for path in paths:
        lakehouse("produce", "cms", "--file", str(path))
    lakehouse("drain", "cms")


# --- the metrics, computed independently of the SQL -----------------------------------------------


def latest(files: list[tuple[int, list[list[str]]]]) -> list[dict]:
    """The rows that count: per (npi, code, place, year), the one sent last."""
    kept: dict[tuple, dict] = {}
    for year, rows in files:
        for r in rows:
            v = {
                "npi": r[0], "state": r[11], "place": r[15], "code": r[16], "services": float(r[19]),
                "benes": int(r[20]), "allowed": float(r[22]), "payment": float(r[24]),
            }  # fmt: skip
            kept[(v["npi"], v["code"], v["place"], year)] = v
    return list(kept.values())


def weighted(rows: list[dict], value: str) -> float:
    return sum(r["services"] * r[value] for r in rows) / sum(r["services"] for r in rows)


def group(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r)
    return groups


def provider_averages(rows: list[dict]) -> list[tuple[float, float]]:
    """(services, service-weighted average payment) per provider."""
    return [(sum(r["services"] for r in mine), weighted(mine, "payment")) for mine in group(rows, "npi").values()]


def expected_reach(rows: list[dict]) -> dict[str, tuple]:
    return {
        code: (
            len({r["state"] for r in mine}),
            len({r["npi"] for r in mine}),
            sum(r["services"] for r in mine),
            sum(r["benes"] for r in mine),
        )
        for (code,), mine in group(rows, "code").items()
    }


def expected_variation(rows: list[dict]) -> dict[str, tuple]:
    out = {}
    for (code,), mine in group(rows, "code").items():
        per_provider = provider_averages(mine)
        payments = [p for _, p in per_provider]
        mean_payment = sum(s * p for s, p in per_provider) / sum(s for s, _ in per_provider)
        stdev = statistics.stdev(payments) if len(payments) > 1 else None
        out[code] = (
            len(payments), mean_payment, statistics.fmean(payments), float(np.percentile(payments, 50)), stdev,
            float(np.percentile(payments, 10)), float(np.percentile(payments, 90)), min(payments), max(payments),
        )  # fmt: skip
    return out


def expected_region(rows: list[dict]) -> dict[tuple, tuple]:
    by_state = {}
    for (code, state), mine in group(rows, "code", "state").items():
        per_provider = provider_averages(mine)
        payments = [p for _, p in per_provider]
        avg = sum(s * p for s, p in per_provider) / sum(s for s, _ in per_provider)
        by_state[(code, state)] = [len(payments), sum(r["services"] for r in mine), avg]
        by_state[(code, state)].append(statistics.stdev(payments) if len(payments) > 1 else None)
    for (code, _state), figures in by_state.items():
        costs = [f[2] for (c, _), f in by_state.items() if c == code]
        figures.append(max(costs) / min(costs))
    return {key: tuple(figures) for key, figures in by_state.items()}


def expected_treatment(rows: list[dict]) -> dict[tuple, tuple]:
    def level(code: str) -> tuple[str, int | None]:
        if code in ("99201", "99202", "99203", "99204", "99205"):
            return "new patient", int(code[-1])
        if code in ("99211", "99212", "99213", "99214", "99215"):
            return "established patient", int(code[-1])
        return "other services", None

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["place"], *level(r["code"]))].append(r)
    return {
        key: (
            len({r["npi"] for r in mine}),
            sum(r["services"] for r in mine),
            weighted(mine, "allowed"),
            weighted(mine, "payment"),
        )
        for key, mine in groups.items()
    }


# --- the marts, as built ---------------------------------------------------------------------------


def mart(home: Path, sql: str) -> list[tuple]:
    with duck.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def assert_close(actual: dict[object, tuple], expected: dict[object, tuple]) -> None:
    assert sorted(actual, key=str) == sorted(expected, key=str)
    for key, figures in expected.items():
        as_floats = [[float("nan") if v is None else v for v in values] for values in (actual[key], figures)]
        assert as_floats[0] == pytest.approx(as_floats[1], rel=1e-9, nan_ok=True), key


def assert_marts_match(home: Path, rows: list[dict]) -> None:
    reach = {
        r[0]: r[1:]
        for r in mart(home, "select hcpcs_code, states, providers, services, beneficiaries from cms_procedure_reach")
    }
    assert_close(reach, expected_reach(rows))
    ranks = mart(home, "select hcpcs_code from cms_procedure_reach order by reach_rank")
    providers = [reach[code][1] for (code,) in ranks]
    assert providers == sorted(providers), "the procedures with the fewest providers come first"

    variation = {
        r[0]: r[1:]
        for r in mart(home, """select hcpcs_code, providers, mean_payment, provider_mean_payment, median_payment,
                                      stddev_payment, p10_payment, p90_payment, min_payment, max_payment
                               from cms_procedure_cost_variation""")
    }  # fmt: skip
    assert_close(variation, expected_variation(rows))

    region = {
        (r[0], r[1]): r[2:]
        for r in mart(home, """select hcpcs_code, state, providers, services, avg_payment,
                                      within_state_stddev_payment, state_cost_ratio from cms_cost_by_region""")
    }  # fmt: skip
    assert_close(region, expected_region(rows))

    treatment = {
        (r[0], r[1], r[2]): r[3:]
        for r in mart(home, """select place_of_service, visit_type, visit_level, providers, services,
                                      avg_allowed_amount, avg_payment_amount from cms_treatment_level""")
    }  # fmt: skip
    assert_close(treatment, expected_treatment(rows))


def test_the_marts_equal_independent_figures_over_every_spelling_then_take_in_a_correction(
    kafka_env, lake_home, tmp_path
):
    recreate_topics(kafka_env, TOPIC)
    rows = fixed_rows()
    legacy, portal, new = rows[0::3], rows[1::3], rows[2::3]
    resent = [row(*PROVIDERS[0], "99214", "O", 99, 61.25)]  # corrects a row of the .txt file
    assert any(r[0] == PROVIDERS[0][0] and r[16] == "99214" and r[15] == "O" for r in legacy)
    replay(
        cms_txt(tmp_path / "Medicare_Provider_Util_Payment_PUF_CY2017.txt", legacy),
        portal_csv(tmp_path / "physician_supplier_CY2017_export.csv", portal),
        new_csv(tmp_path / "MUP_PHY_R19_P04_V10_D17_Prov_Svc.csv", new + resent, gender=False),
        # The same rows for another year are other rows, not re-sends.
        api_csv(tmp_path / "provider_services_2018.csv", legacy[:3]),
    )
    built = lakehouse("build", "cms")
    assert "gate cms.provider_services/raw_provider_services: passed" in built

    files = [(2017, legacy), (2017, portal), (2017, new + resent), (2018, legacy[:3])]
    assert_marts_match(lake_home, latest(files))
    (stored,) = mart(lake_home, "select count(*) from int_cms__provider_services_deduped")[0]
    assert stored == len(rows) + 3  # the correction replaced a row; the 2018 rows are new
    # Staging left out the copyright row of the .txt file, and counted it: raw = staging + rejected.
    assert mart(lake_home, "select row_id, rejection_reason from cms_rejected_rows") == [
        ("0000000001", "copyright row")
    ]
    raw = lake_tables.read_table(lake_home, "raw", TOPIC, ("_kafka_offset",)).num_rows
    assert raw == mart(lake_home, "select count(*) from stg_cms__provider_services")[0][0] + 1

    # An incremental build takes in a later correction of one row and nothing else; the copyright
    # row of its file joins the rejected rows, where the first one stays, once.
    correction = [row(*PROVIDERS[2], "99213", "F", 40, 33.0)]
    replay(cms_txt(tmp_path / "Medicare_Provider_Util_Payment_PUF_CY2017_corrected.txt", correction))
    lakehouse("build", "cms")
    assert_marts_match(lake_home, latest([*files, (2017, correction)]))
    assert mart(lake_home, "select count(*) from int_cms__provider_services_deduped")[0][0] == stored
    assert (
        mart(lake_home, "select row_id, rejection_reason from cms_rejected_rows")
        == [("0000000001", "copyright row")] * 2
    )
    mark = json.loads((lake_home / "gates" / TOPIC / "raw_provider_services.json").read_text())
    assert sum(mark["offsets"].values()) == len(rows) + 7  # every offset stored (the copyright rows too) has passed
    assert (
        mark["snapshot_id"]
        == lake_tables.lake_catalog(lake_home)
        .load_table(f"raw.{TOPIC.replace('.', '_')}")
        .current_snapshot()
        .snapshot_id
    )

    # A row that breaks the suite is set aside with its reasons; the marts build without it.
    before = mart(lake_home, "select * from cms_procedure_reach order by hcpcs_code")
    bad = row(*PROVIDERS[3], "99215", "X", 5, -3.0)
    replay(api_csv(tmp_path / "broken_2017.csv", [bad]))
    built = lakehouse("build", "cms")
    assert "raw_provider_services: 1 of 1 rows set aside" in built
    assert "place_of_service = X fails" in built and "avg_payment_amount = -3.0 fails" in built
    assert mart(lake_home, "select * from cms_procedure_reach order by hcpcs_code") == before
    assert "passed (0 rows)" in lakehouse("build", "cms")  # and the next build goes on as usual


def test_a_topic_created_again_reaches_the_incremental_marts_through_its_new_generation(kafka_env, lake_home, tmp_path):
    recreate_topics(kafka_env, TOPIC)
    rows = fixed_rows()
    replay(api_csv(tmp_path / "provider_services_2017.csv", rows))
    lakehouse("build", "cms")
    stored = mart(lake_home, "select count(*) from int_cms__provider_services_deduped")[0][0]
    assert stored == len(rows)

    # The topic is deleted and created again: its offsets start at 0 once more, below those the
    # dedup holds, and the records of the new generation are still new to it.
    recreate_topics(kafka_env, TOPIC)
    correction = [row(*PROVIDERS[2], "99213", "F", 40, 33.0)]
    lakehouse("produce", "cms", "--file", str(new_csv(tmp_path / "MUP_PHY_R20_P04_V10_D17_Prov_Svc.csv", correction)))
    lakehouse("drain", "cms", "--new-generation")
    lakehouse("build", "cms")

    assert_marts_match(lake_home, latest([(2017, rows), (2017, correction)]))
    assert mart(lake_home, "select count(*) from int_cms__provider_services_deduped")[0][0] == stored
    assert mart(
        lake_home,
        "select kafka_generation, kafka_offset from int_cms__provider_services_deduped "
        "where npi = '1003000142' and hcpcs_code = '99213' and place_of_service = 'F'",
    ) == [(1, 0)]


def test_a_provider_in_two_states_counts_once_per_code_and_an_older_table_gets_its_totals(
    kafka_env, lake_home, tmp_path
):
    """int_cms__provider_procedure_costs carries each provider's totals over every state, which
    the marts comparing providers read. A provider billing a code in two states is one provider
    of the code, and one of each state. A table built before those totals existed (an earlier
    version's warehouse) gets them for every row at the next build, which no new row touches."""
    recreate_topics(kafka_env, TOPIC)
    rows = [*fixed_rows(), row("1003000126", "VA", "22030", "99214", "F", 9, 30.0)]  # also bills it in MD
    replay(api_csv(tmp_path / "provider_services_2017.csv", rows))
    lakehouse("build", "cms")
    assert_marts_match(lake_home, latest([(2017, rows)]))

    with duck.connect(str(lake_home / "warehouse.duckdb")) as con:
        for column in ("provider_services", "provider_payment_amount", "is_providers_first_state"):
            con.execute(f"alter table int_cms__provider_procedure_costs drop column {column}")
    lakehouse("build", "cms")
    assert_marts_match(lake_home, latest([(2017, rows)]))
    unfilled = "select count(*) from int_cms__provider_procedure_costs where provider_services is null"
    assert mart(lake_home, unfilled) == [(0,)]


def send_to_partitions(bootstrap: str, records: list[tuple[int, list[str] | None]], year: int = 2017) -> None:
    """(partition, legacy row or None for a tombstone) records, keyed by the NPI as the producer
    keys them, with a plain producer that chooses each record's partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for partition, r in records:
        value = json.dumps(dict(zip(cms.LEGACY, r, strict=True))).encode() if r else None
        key = (r[0] if r else "1003000999").encode()
        producer.produce(TOPIC, key=key, value=value, partition=partition, headers=[("data_year", str(year).encode())])
    assert producer.flush(30) == 0


def test_records_of_a_partition_no_build_has_seen_reach_every_incremental_model(kafka_env, lake_home):
    recreate_topics(kafka_env, TOPIC, partitions=3)
    rows = fixed_rows()
    first, later = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    send_to_partitions(kafka_env, [(0, r) for r in first[::2]] + [(2, r) for r in first[1::2]])
    lakehouse("drain", "cms")
    lakehouse("build", "cms")
    assert mart(lake_home, "select distinct kafka_partition from int_cms__provider_services_deduped order by 1") == [
        (0,),
        (2,),
    ]

    # Partition 1 is a gap below the highest partition the models hold: its records are all new.
    send_to_partitions(kafka_env, [(1, r) for r in later] + [(1, None)])
    lakehouse("drain", "cms")
    lakehouse("build", "cms")
    assert_marts_match(lake_home, latest([(2017, rows)]))
    assert mart(lake_home, "select count(*) from int_cms__provider_services_deduped")[0][0] == len(rows)
    assert mart(lake_home, "select rejection_reason, kafka_partition from cms_rejected_rows") == [("tombstone", 1)]


def test_a_row_that_collides_with_a_held_key_fails_the_scoped_unique_test(kafka_env, lake_home):
    """The dedup's `unique` test reads only the keys of rows new since the next model examined it,
    but every row carrying them: a new row that duplicates a held one is caught."""
    import subprocess
    import sys

    from ingestion.config import export_for_subprocesses, settings
    from orchestration.manifest import DBT_PROJECT_DIR

    recreate_topics(kafka_env, TOPIC, partitions=1)
    send_to_partitions(kafka_env, [(0, r) for r in fixed_rows()])
    lakehouse("drain", "cms")
    lakehouse("build", "cms")

    def unique_test() -> subprocess.CompletedProcess:
        dbt = str(Path(sys.executable).with_name("dbt"))
        selection = "test_name:unique,int_cms__provider_services_deduped"
        command = [dbt, "test", "--select", selection, "--project-dir", str(DBT_PROJECT_DIR)]
        return subprocess.run(command, env=export_for_subprocesses(settings()), capture_output=True, text=True)

    assert unique_test().returncode == 0
    with duck.connect(str(lake_home / "warehouse.duckdb")) as con:  # a held row, as if a merge missed it
        con.execute(
            "insert into int_cms__provider_services_deduped select * replace (kafka_offset + 1000 as kafka_offset)"
            " from int_cms__provider_services_deduped limit 1"
        )
    failed = unique_test()
    assert failed.returncode == 1 and "Got 1 result" in failed.stdout, failed.stdout
