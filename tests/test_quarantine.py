"""`lakehouse quarantine`: the quarantine is counted by reason and by day, shown record by record
with its coordinates and raw value, and replayed after a fix so that the records that now pass
the contract and the suites are stored in the raw layer exactly once, through any crash, and
reach the marts (incremental models included) at the next build."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from confluent_kafka import Producer

from ingestion import lake, quarantine, refresh
from ingestion.config import duckdb_extensions_dir, settings
from ingestion.contracts import Contract
from ingestion.failpoints import REPLAY_POINTS, InjectedFault
from ingestion.parse import parse
from ingestion.records import RawBatch
from ingestion.streams import cms, prices
from tests import lake_tables
from tests.cli import lakehouse, run
from tests.conftest import recreate_topics
from tests.test_drain_faults import assert_every_offset_once, assert_verify_passes

TOPIC = "prices"

# The contract as it first shipped: tick times declared in whole seconds, so every tick stamped
# to the millisecond was quarantined as `wrong type`. The fix (the contract of
# ingestion/streams/prices.py) declares milliseconds; both are the raw table's one `timestamp`
# type, so the table takes the fixed contract's rows as it is.
SECOND_TICKS = dataclasses.replace(
    prices.CONTRACT,
    schema=pa.schema(
        [pa.field("ts", pa.timestamp("s")), pa.field("symbol", pa.string()), pa.field("price", pa.float64())]
    ),
)
# A first contract whose fix Iceberg cannot take into the same table: prices declared as whole
# numbers (`long`), fixed as `double`, a change of type Iceberg does not allow.
WHOLE_PRICES = dataclasses.replace(
    prices.CONTRACT,
    schema=pa.schema(
        [pa.field("ts", pa.timestamp("ms")), pa.field("symbol", pa.string()), pa.field("price", pa.int64())]
    ),
)


def tick(i: int, price: object, millis: bool = True) -> bytes:
    ts = f"2021-03-1{i % 3} 16:21:32" + (f".{i % 1000:03d}" if millis else "")
    return json.dumps({"ts": ts, "symbol": "MSFT", "price": price}).encode()


def send(bootstrap: str, records: list[tuple[int, bytes, list | None]]) -> None:
    """(partition, value, headers) records, key = their position, with a plain producer."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, (partition, value, headers) in enumerate(records):
        producer.produce(TOPIC, key=f"k{i}".encode(), value=value, partition=partition, headers=headers)
    assert producer.flush(30) == 0


def quarantined_offsets(home: Path) -> int:
    """How many records the quarantine table holds at its current snapshot."""
    return lake_tables.read_table(home, "quarantine", TOPIC, ("_kafka_offset",)).num_rows


def warehouse() -> duckdb.DuckDBPyConnection:
    """The build's warehouse, read-only, able to read its staging views (over `iceberg_scan`)."""
    con = duckdb.connect(
        str(settings().warehouse_path),
        read_only=True,
        config={"extension_directory": str(duckdb_extensions_dir()), "autoinstall_known_extensions": False},
    )
    con.execute("load avro; load iceberg")
    return con


# --- the pure parts ------------------------------------------------------------------------------


def test_a_reason_s_kind_is_its_text_before_the_first_colon_and_a_filter_matches_kind_or_substring():
    assert quarantine.reason_kind("wrong type: In JSON field 'price': expected a number") == "wrong type"
    assert quarantine.reason_kind("empty value") == "empty value"
    assert quarantine.reason_matches("required field missing: price", "Required field missing")
    assert quarantine.reason_matches("required field missing: price", "price")
    assert not quarantine.reason_matches("not JSON: Expecting value", "wrong type")


def test_raw_values_are_shown_as_text_where_utf8_and_escaped_where_not():
    assert quarantine.as_text(b'{"price": "cheap"}') == ('{"price": "cheap"}', True)
    assert quarantine.as_text(b'{"symbol": "\xff\xfe"}') == ('{"symbol": "\\xff\\xfe"}', False)
    assert quarantine.as_text(b"bell\x07 and escape\x1b[31m") == ("bell\\x07 and escape\\x1b[31m", True)
    assert quarantine.as_text(None) == (None, True)


def test_offsets_read_partition_start_and_exclusive_end():
    assert quarantine.Offsets.parse("2:100-250") == quarantine.Offsets(2, 100, 250)
    with pytest.raises(ValueError, match="PARTITION:START-END"):
        quarantine.Offsets.parse("2:100")


def drained_batch(contract: Contract, prices_of: list[object], millis: list[bool]) -> str:
    """One batch of partition 0 committed to the lake under `contract`, as the drain commits it;
    return its raw file."""
    s = settings()
    tables = lake.TopicTables.open(s, contract)
    values = [
        json.dumps({"ts": "2021-03-10 16:21:32" + (".125" if m else ""), "symbol": "MSFT", "price": p}).encode()
        for p, m in zip(prices_of, millis, strict=True)
    ]  # all of one day: one raw file
    offsets = range(len(values))
    timestamps = [1_615_393_292_000 + i for i in offsets]
    parsed = parse(RawBatch.of(TOPIC, 0, offsets, values, timestamps=timestamps), contract, s.record_max_bytes)
    name = lake.data_file_name(0, 0, len(values))
    raw_file = tables.data_path("raw", date(2021, 3, 10), name)
    quarantine_file = tables.data_path("quarantine", None, name)
    tables.write(lake.with_generation(parsed.table, 0), raw_file)
    tables.write(lake.with_generation(parsed.quarantine, 0), quarantine_file)
    rows, quarantined = parsed.table.num_rows, parsed.quarantine.num_rows
    batch = lake.Batch(TOPIC, 0, 0, len(values), rows, quarantined, 0, (raw_file, quarantine_file), 0, 0.1)
    tables.commit_batch(tables.state(), batch, [raw_file], [quarantine_file])
    return raw_file


def test_a_replay_stopped_between_its_two_commits_is_finished_once_by_the_next_replay(lake_home, monkeypatch):
    # Under the first contract offsets 0 and 1 (stamped to the millisecond) were quarantined.
    raw_file = drained_batch(SECOND_TICKS, [400.25] * 2 + [400.0] * 8, [True] * 2 + [False] * 8)
    assert stored(lake_home) == (list(range(2, 10)), [0, 1])

    # The fixed contract's replay is stopped after the quarantine gave the records up and
    # before the raw table took them in.
    monkeypatch.setenv("LAKEHOUSE_FAILPOINT", "replay-after-commit:raise")
    with pytest.raises(InjectedFault):
        quarantine.replay(prices.CONTRACT)
    monkeypatch.delenv("LAKEHOUSE_FAILPOINT")
    assert stored(lake_home) == (list(range(2, 10)), [])  # for an instant, neither holds them
    assert json.loads(lake_tables.snapshot_summary(lake_home, "quarantine", TOPIC)[lake.REPLAY])

    report = quarantine.replay(prices.CONTRACT)
    assert report.recovered == (1, 0) and report.replayed == 0
    assert stored(lake_home) == (list(range(10)), [])
    raw_files = lake_tables.lake_catalog(lake_home).load_table(f"raw.{TOPIC}").inspect.data_files()["file_path"]
    names = {Path(f).name for f in raw_files.to_pylist()}
    assert names == {Path(raw_file).name, lake.replay_file_name(0, 0, 10, 1)}
    assert quarantine.replay(prices.CONTRACT).recovered == (0, 0)  # finished once, not again
    assert stored(lake_home) == (list(range(10)), [])


def test_a_fix_the_raw_table_cannot_take_keeps_the_records_quarantined_with_the_reason(lake_home):
    drained_batch(WHOLE_PRICES, [400.25, 400, 401], [True] * 3)  # offset 0 quarantined
    report = quarantine.replay(prices.CONTRACT)
    assert report.replayed == 0 and report.still_by_kind == {"does not fit the raw table": 1}
    assert "price: long -> double" in next(iter(report.still))
    assert stored(lake_home) == ([1, 2], [0])  # nothing was committed
    assert quarantine.replay(WHOLE_PRICES).still_quarantined == 1  # and nothing is stuck


def stored(home: Path) -> tuple[list[int], list[int]]:
    """The offsets of the raw table's rows and of the quarantine table's records, sorted."""
    return tuple(
        sorted(lake_tables.read_table(home, namespace, TOPIC, ("_kafka_offset",))["_kafka_offset"].to_pylist())
        for namespace in ("raw", "quarantine")
    )


# --- on the real broker ----------------------------------------------------------------------------


def test_list_counts_by_reason_and_day_show_prints_each_record_and_replay_with_the_same_contract_moves_nothing(
    kafka_env, lake_home
):
    recreate_topics(kafka_env, TOPIC)
    send(
        kafka_env,
        [(i % 3, tick(i, 400 + i), None) for i in range(30)]
        + [
            (0, b"not json at all", [("source", b"feed-7")]),
            (1, tick(1, "cheap"), None),
            (2, tick(2, "dear"), None),
            (2, json.dumps({"ts": "2021-03-10 16:21:32.000", "symbol": "AAPL"}).encode(), None),
            (1, b'{"ts": "2021-03-10 16:21:32.000", "symbol": "\xff\xfe", "price": 1.0}', None),
        ],
    )
    lakehouse("drain", TOPIC)

    (listed,) = json.loads(lakehouse("quarantine", "list", TOPIC, "--json"))
    assert listed["total"] == 5
    assert listed["by_kind"] == {"wrong type": 2, "not JSON": 1, "not UTF-8": 1, "required field missing": 1}
    assert listed["by_reason"]["required field missing"] == {"required field missing: price": 1}
    assert sum(listed["by_day"].values()) == 5  # all produced today
    assert json.loads(lakehouse("quarantine", "list", "--json")) == [listed]  # only topics with a quarantine
    text = lakehouse("quarantine", "list", TOPIC)
    assert "prices: 5 quarantined" in text and "wrong type" in text and "required field missing: price" in text

    shown = json.loads(lakehouse("quarantine", "show", TOPIC, "--reason", "wrong type", "--json"))
    assert [(r["partition"], r["kind"]) for r in shown] == [(1, "wrong type"), (2, "wrong type")]
    assert json.loads(shown[0]["value"])["price"] == "cheap" and shown[0]["key"] == "k31"
    (not_json,) = json.loads(lakehouse("quarantine", "show", TOPIC, "--reason", "not JSON", "--json"))
    assert (not_json["partition"], not_json["offset"], not_json["value"]) == (0, 10, "not json at all")
    assert not_json["headers"] == [{"key": "source", "value": "feed-7"}]
    text = lakehouse("quarantine", "show", TOPIC, "--reason", "utf-8")
    assert "prices[1] offset 11" in text and "(not UTF-8, escaped)" in text and "\\xff\\xfe" in text
    assert len(json.loads(lakehouse("quarantine", "show", TOPIC, "--limit", "2", "--json"))) == 2

    out = lakehouse("quarantine", "replay", TOPIC)
    assert "prices: replayed 0, still quarantined 5" in out
    assert quarantined_offsets(lake_home) == 5
    assert not refresh.pending(settings(), [TOPIC])
    assert_every_offset_once(lake_home, kafka_env)
    assert_verify_passes(dict(os.environ))

    refused = run("quarantine", "replay", TOPIC, "--reason", "x", "--offsets", "0:0-5")
    assert refused.returncode != 0 and "not both" in refused.stderr


def millisecond_backlog(bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Ticks drained under the first contract: those stamped in whole seconds stored, those
    stamped to the millisecond (their prices end in .25) quarantined, in many small batches;
    among the quarantined some negative (the suite refuses them)."""
    from ingestion.drain import drain

    recreate_topics(bootstrap, TOPIC)
    records = []
    for i in range(600):
        millis = True
        if i % 10 == 3:
            price: object = 400 + i % 50 + 0.25
        elif i % 100 == 7:
            price = -3.5
        else:
            price, millis = 400 + i % 50, False
        records.append((i % 3, tick(i, price, millis), [("source", b"test")] if i % 4 == 0 else None))
    records += [(0, b"not json at all", None), (2, b"{", None)]
    send(bootstrap, records)
    monkeypatch.setenv("LAKEHOUSE_BATCH_MAX_RECORDS", "60")
    drain(SECOND_TICKS)
    monkeypatch.delenv("LAKEHOUSE_BATCH_MAX_RECORDS")
    return {"seconds": 600 - 60 - 6, "millis": 60, "negative": 6, "not JSON": 2}


def test_a_replay_after_the_contract_is_fixed_stores_the_records_that_now_pass_once_and_the_marts_take_them_in(
    kafka_env, lake_home, monkeypatch
):
    counts = millisecond_backlog(kafka_env, monkeypatch)
    assert quarantined_offsets(lake_home) == counts["millis"] + counts["negative"] + counts["not JSON"]
    lakehouse("build", TOPIC)  # the marts hold the ticks stamped in seconds; the gate's marks move to the end

    out = lakehouse("quarantine", "replay", TOPIC, "--reason", "wrong type")
    assert f"replayed {counts['millis']}, still quarantined {counts['negative']} (failed suite" in out
    assert "expect_column_values_to_be_between on price" in out
    (left,) = json.loads(lakehouse("quarantine", "list", TOPIC, "--json"))
    assert left["by_kind"] == {"wrong type": counts["negative"], "not JSON": counts["not JSON"]}
    assert_every_offset_once(lake_home, kafka_env)
    checks = assert_verify_passes(dict(os.environ))
    assert sum(c["rows"] for c in checks) == counts["seconds"] + counts["millis"]
    assert sum(c["quarantined"] for c in checks) == counts["negative"] + counts["not JSON"]
    assert "replayed 0" in lakehouse("quarantine", "replay", TOPIC)  # twice is once

    lakehouse("build", TOPIC)
    with warehouse() as con:
        ticks, quarter_prices = con.execute(
            "select sum(tick_count), (select count(*) from stg_prices__ticks where price % 1 = 0.25) "
            "from prices_symbol_stats"
        ).fetchone()
    assert (ticks, quarter_prices) == (counts["seconds"] + counts["millis"], counts["millis"])


def test_a_replay_killed_at_every_point_of_its_swap_and_run_again_stores_none_twice(kafka_env, lake_home, monkeypatch):
    counts = millisecond_backlog(kafka_env, monkeypatch)
    for point in REPLAY_POINTS:
        # At the second file's swap, so that each run also finishes one swap and recovers another.
        killed = run("quarantine", "replay", TOPIC, env={**os.environ, "LAKEHOUSE_FAILPOINT": f"{point}@2"})
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    lakehouse("quarantine", "replay", TOPIC)

    assert_every_offset_once(lake_home, kafka_env)
    checks = assert_verify_passes(dict(os.environ))
    assert sum(c["rows"] for c in checks) == counts["seconds"] + counts["millis"]
    assert quarantined_offsets(lake_home) == counts["negative"] + counts["not JSON"]
    assert refresh.pending(settings(), [TOPIC])  # the killed runs asked for it, before committing

    # Compaction merges a replay's raw files with the drain's files of the same days, once.
    assert "files ->" in lakehouse("compact", TOPIC, "--before", "2030-01-01")
    raw_files = lake_tables.lake_catalog(lake_home).load_table(f"raw.{TOPIC}").inspect.data_files()["file_path"]
    assert not [f for f in raw_files.to_pylist() if lake.file_replay(Path(f))]
    assert_every_offset_once(lake_home, kafka_env)
    assert sum(c["rows"] for c in assert_verify_passes(dict(os.environ))) == counts["seconds"] + counts["millis"]


def test_a_replayed_cms_row_reaches_the_incremental_deduplicated_model(kafka_env, lake_home, monkeypatch):
    from ingestion.drain import drain

    topic = cms.CONTRACT.topic
    recreate_topics(kafka_env, topic)
    lakehouse("produce", "cms", "--synthetic", "--count", "60", "--seed", "3", "--layout", "legacy")
    lakehouse("produce", "cms", "--synthetic", "--count", "20", "--seed", "4", "--layout", "new")
    # The first contract required the legacy `npi` field: rows in the new layout were quarantined.
    legacy_only = dataclasses.replace(cms.CONTRACT, schema=pa.schema([pa.field("npi", pa.string())]), required=("npi",))
    drain(legacy_only)
    new_layout = {(r.partition, r.offset) for r in quarantine.records(settings(), topic)}
    assert len(new_layout) == 20
    lakehouse("build", "cms")
    assert not deduplicated() & new_layout

    assert "replayed 20, still quarantined 0" in lakehouse("quarantine", "replay", topic)
    assert refresh.pending(settings(), [topic])
    lakehouse("build", "cms")
    assert deduplicated() & new_layout  # the latest row of a key wins, so some may have been replaced
    assert not refresh.pending(settings(), [topic])  # the full refresh is done
    assert not quarantine.records(settings(), topic)
    assert run("verify", topic).returncode == 0


def test_the_dagster_dbt_asset_fully_refreshes_a_replayed_topic_s_incremental_models_once_all_are_selected(
    lake_home,
):
    from orchestration.defs.dbt import incremental_models_of, replayed_topics

    assert incremental_models_of("cms_provider_services") == {
        "int_cms__provider_services_deduped",
        "int_cms__provider_procedure_costs",
        "cms_rejected_rows",
    }
    assert incremental_models_of("office_claims") == {"office_revenue_10min"}
    refresh.request(settings(), cms.CONTRACT, "a test")
    refresh.request(settings(), prices.CONTRACT, "a test")
    needing, covered = replayed_topics({"stg_cms__provider_services", "prices_symbol_stats"})
    assert (set(needing), set(covered)) == (set(), {"prices"})  # prices has no incremental model
    needing, covered = replayed_topics({"int_cms__provider_services_deduped"})
    assert (set(needing), set(covered)) == ({"cms.provider_services"}, {"prices"})  # not all of its models
    needing, covered = replayed_topics(
        {"int_cms__provider_services_deduped", "int_cms__provider_procedure_costs", "cms_rejected_rows"}
    )
    assert (set(needing), set(covered)) == ({"cms.provider_services"}, {"cms.provider_services", "prices"})


def deduplicated() -> set[tuple[int, int]]:
    """The Kafka coordinates of the rows in int_cms__provider_services_deduped."""
    with warehouse() as con:
        rows = con.execute("select kafka_partition, kafka_offset from int_cms__provider_services_deduped").fetchall()
    return set(rows)


def test_rows_a_gate_set_aside_are_replayed_through_the_fixed_suites_and_reach_staging_once(kafka_env, lake_home):
    from ingestion import set_aside

    recreate_topics(kafka_env, TOPIC, partitions=1)
    records = [(0, tick(i, 100 + i), None) for i in range(20)] + [(0, tick(20, -5), None), (0, b"{broken", None)]
    send(kafka_env, records)
    lakehouse("drain", TOPIC)
    assert "1 of 21 rows set aside" in lakehouse("build", TOPIC)

    unfixed = lakehouse("quarantine", "replay", TOPIC)  # the suite still says no
    assert "released 0 set-aside rows, still set aside 1" in unfixed
    assert set_aside.counts(settings(), TOPIC) == {(0, 0): 1}

    # The suite is fixed (here: a contract whose suites no longer refuse negative prices).
    report = quarantine.replay(dataclasses.replace(prices.CONTRACT, suites=()))
    assert (report.released, report.still_set_aside, report.replayed) == (1, 0, 0)
    assert set_aside.counts(settings(), TOPIC) == {}
    assert_every_offset_once(lake_home, kafka_env)  # nothing was moved: the row was in raw all along
    assert_verify_passes(dict(os.environ))

    built = lakehouse("build", TOPIC)
    assert "stg_prices__ticks: 21 rows" in built
    with warehouse() as con:
        assert con.execute("select count(*) from stg_prices__ticks where price = -5").fetchone() == (1,)
