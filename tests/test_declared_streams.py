"""A stream declared in one YAML file is drained, gated, staged and shown, with no file of the project changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from confluent_kafka import Producer

from expectations.suites import declared_suite
from ingestion.config import REPO_ROOT
from ingestion.declared import InvalidDeclaration, load_file
from ingestion.produce import file_messages
from ingestion.streams import BUILT_IN_DIR, built_in, cms
from orchestration.generated import staging_sql
from tests.cli import lakehouse, run
from tests.conftest import recreate_topics

# As the issue gives it, word for word.
SENSORS_YML = """\
# sensors.yml
topics:
  sensors.readings:
    format: json
    key: reading_id          # records with the same key: the latest one wins in staging
    event_time: ts
    fields:
      reading_id: {type: string, required: true}
      sensor_id: {type: string, required: true}
      ts: {type: timestamp, required: true}
      value: {type: double, expect: {between: [-50, 150]}}
"""


def declared(folder: Path, text: str, name: str = "sensors") -> Path:
    path = folder / f"{name}.yml"
    path.write_text(text)
    return path


def test_the_issues_declaration_becomes_a_contract_a_suite_and_a_staging_model(tmp_path):
    (contract,) = load_file(declared(tmp_path, SENSORS_YML))
    assert (contract.stream, contract.topic, contract.table_name) == ("sensors", "sensors.readings", "sensors_readings")
    assert contract.schema == pa.schema(
        [("reading_id", pa.string()), ("sensor_id", pa.string()), ("ts", pa.timestamp("us")), ("value", pa.float64())]
    )
    assert contract.required == ("reading_id", "sensor_id", "ts") and contract.event_time == "ts"
    assert contract.suites == ("raw_readings",) and contract.declared.entity == "readings"
    suite = declared_suite(contract.declared)
    assert suite["expectations"] == [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "value", "min_value": -50, "max_value": 150, "mostly": 0.95},
        }
    ]
    sql = staging_sql(contract)
    assert "{{ raw_source('sensors_readings') }}" in sql and "not coalesce(_tombstone, false)" in sql
    assert 'partition by "reading_id"' in sql and 'cast("ts" as timestamp)' in sql


def test_every_declared_type_and_expectation_is_understood(tmp_path):
    text = """
topics:
  shop-orders:
    entity: orders
    fields:
      id: int
      paid: {type: bool}
      day: {type: date}
      total: {type: "decimal(12, 2)", expect: {not_null: true, between: [0, null]}}
      state: {type: string, expect: {in: [new, paid], matches: "^[a-z]+$", unique: false}}
"""
    (contract,) = load_file(declared(tmp_path, text, "shop"))
    assert contract.schema.field("total").type == pa.decimal128(12, 2)
    assert contract.declared.entity == "orders" and contract.declared.key is None
    kinds = [e["type"] for e in declared_suite(contract.declared)["expectations"]]
    assert kinds == [
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_match_regex",
    ]
    sql = staging_sql(contract)
    assert 'cast("day" as date)' in sql and 'cast("total" as decimal(12,2))' in sql and "qualify" not in sql


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("topics: {}", "`topics:` must map"),
        ("topics:\n  t: {fields: {a: {type: float}}}", "unknown type 'float'; known: string, int"),
        ("topics:\n  t: {format: avro, fields: {a: int}}", "format 'avro' is not read yet"),
        ("topics:\n  t: {key: b, fields: {a: int}}", "key 'b' is not one of its fields (a)"),
        ("topics:\n  t: {event_time: a, fields: {a: int}}", "event_time 'a' must be a field of type timestamp or date"),
        (
            "topics:\n  t: {fields: {a: {type: int, expect: {between: [1]}}}}",
            "expectation 'between': takes [low, high]",
        ),
        ("topics:\n  t: {fields: {a: {type: int, expect: {positive: true}}}}", "expectation 'positive': unknown"),
        (
            "topics:\n  t: {fields: {a: {type: int, expect: {matches: '^1'}}}}",
            "expectation 'matches': applies to text, not to a field of type int",
        ),
        (
            "topics:\n  t: {fields: {a: {type: timestamp, expect: {between: [0, 1]}}}}",
            "expectation 'between': applies to numbers, not to a field of type timestamp",
        ),
        ("topics:\n  t: {feilds: {a: int}}", "unknown feilds; known: description, entity, event_time"),
        ("topics:\n  t: {fields: as_sent}", "leaves nothing to generate staging from: say `staging: own`"),
        ("topics:\n  t: {fields: {a: int}, staging: mine}", "staging 'mine' is not one of generated, own"),
        ("topics:\n  t: {fields: {a: int}, spellings: ALIASES}", "spellings 'ALIASES' must name a mapping"),
        (
            "extension: no.such.module\ntopics:\n  t: {fields: {a: int}}",
            "extension 'no.such.module' cannot be imported",
        ),
        ("topics: [", "not readable as YAML"),
    ],
)
def test_a_declaration_the_product_cannot_follow_is_refused_saying_where_and_why(tmp_path, text, said):
    with pytest.raises(InvalidDeclaration) as refused:
        load_file(declared(tmp_path, text))
    assert said in str(refused.value) and "sensors.yml" in str(refused.value)


def test_the_built_in_streams_are_declared_the_same_way_with_what_only_they_need_as_extensions():
    contracts = built_in()
    assert {c.stream for c in contracts} == {"carepay", "cms", "office", "prices", "stedi"}
    assert {c.declared.path for c in contracts} == {BUILT_IN_DIR / f"{c.stream}.yml" for c in contracts}
    by_topic = {c.topic: c for c in contracts}
    cms_contract = by_topic["cms.provider_services"]
    assert cms_contract.aliases == cms.ALIASES and cms_contract.headers == ("data_year",)
    assert by_topic["redis-server"].raw_json and not by_topic["redis-server"].schema.names
    assert by_topic["prices"].suites == ("raw_prices",) and by_topic["prices"].event_time == "ts"
    # They ship their own staging models: nothing is generated for them.
    assert not any(c.declared.generates_staging for c in contracts)


def test_a_csv_file_is_replayed_with_its_cells_typed_as_declared_and_keyed(tmp_path):
    (contract,) = load_file(declared(tmp_path, SENSORS_YML))
    path = tmp_path / "readings.csv"
    path.write_text("reading_id,sensor_id,ts,value\nr1,s1,2026-01-01 00:00:00,21.5\nr2,s1,2026-01-01 00:01:00,\n")
    messages = list(file_messages(contract, path))
    assert messages[0] == (
        b"r1",
        json.dumps({"reading_id": "r1", "sensor_id": "s1", "ts": "2026-01-01 00:00:00", "value": 21.5}).encode(),
    )
    assert json.loads(messages[1][1]) == {"reading_id": "r2", "sensor_id": "s1", "ts": "2026-01-01 00:01:00"}


def reading(reading_id: str, value: float, minute: int = 0) -> bytes:
    return json.dumps(
        {"reading_id": reading_id, "sensor_id": "s1", "ts": f"2026-12-01 10:{minute:02d}:00", "value": value}
    ).encode()


@pytest.fixture
def own_mart():
    """A user's own mart on top of the declared stream's staging model, where the README says to
    put it; taken away again, since the project's other tests declare no such stream."""
    folder = REPO_ROOT / "dbt_project" / "models" / "marts" / "sensors"
    folder.mkdir()
    (folder / "sensors_by_sensor.sql").write_text(
        "select sensor_id, count(*) as readings, max(value) as max_value\n"
        "from {{ ref('stg_sensors__readings') }}\ngroup by sensor_id\n"
    )
    try:
        yield "sensors_by_sensor"
    finally:
        shutil.rmtree(folder)


@pytest.mark.integration
@pytest.mark.serial  # its mart is a file of the project, which every dbt parse meanwhile would read
def test_a_stream_never_seen_is_drained_gated_staged_and_shown_from_its_file_alone(
    kafka_env, lake_home, tmp_path, monkeypatch, own_mart
):
    streams = tmp_path / "streams"
    streams.mkdir()
    declared(streams, SENSORS_YML)
    monkeypatch.setenv("LAKEHOUSE_STREAMS_DIR", str(streams))
    recreate_topics(kafka_env, "sensors.readings", partitions=2)

    # An independent producer: good readings, one sent again with a new value, one out of range,
    # one that is no JSON at all.
    producer = Producer({"bootstrap.servers": kafka_env})
    for i in range(1, 5):
        producer.produce("sensors.readings", key=f"r{i}".encode(), value=reading(f"r{i}", 20.0 + i, minute=i))
    producer.produce("sensors.readings", key=b"r2", value=reading("r2", 99.5, minute=30))  # the latest r2
    producer.produce("sensors.readings", key=b"r9", value=reading("r9", 999.0))  # fails between [-50, 150]
    producer.produce("sensors.readings", key=b"bad", value=b"{not json")
    producer.flush(10)
    # And the generic replay of a CSV file.
    csv = tmp_path / "more.csv"
    csv.write_text("reading_id,sensor_id,ts,value\nr5,s2,2026-12-01 11:00:00,-3.5\nr1,s2,2026-12-01 11:05:00,1.25\n")
    assert "sent 2 messages to sensors.readings" in lakehouse("produce", "sensors", "--file", str(csv))

    lakehouse("drain", "sensors")
    built = lakehouse("build", "sensors")
    assert "gate sensors.readings/raw_readings: 1 of 8 rows set aside" in built
    assert "stg_sensors__readings: 5 rows" in built

    # Each key once, its latest record; the reading out of range set aside, the non-JSON quarantined.
    staged = lakehouse(
        "shell",
        "-c",
        "select string_agg(reading_id || '=' || value, ' ' order by reading_id) as kept from stg_sensors__readings",
    )
    assert "r1=1.25 r2=99.5 r3=23.0 r4=24.0 r5=-3.5" in staged
    mart = lakehouse(
        "shell", "-c", f"select string_agg(sensor_id || '=' || readings, ' ' order by sensor_id) from {own_mart}"
    )
    assert "s1=3 s2=2" in mart

    document = json.loads(lakehouse("status", "--json"))
    (topic,) = [t for t in document["topics"] if t["topic"] == "sensors.readings"]
    assert (topic["stored"], topic["quarantined"], topic["set_aside"]) == (9, 1, 1)  # every offset is accounted for
    assert topic["gates"] == ["raw_readings: passed, 1 of 8 rows set aside"]
    verified = json.loads(lakehouse("verify", "sensors", "--json"))
    assert all(check["ok"] for check in verified)

    # The Dagster code location has the stream's raw asset, sensor, job and staging model.
    probe = (
        "from orchestration.definitions import defs as load\n"
        "defs = load()\n"
        "keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}\n"
        "print('raw/sensors_readings' in keys, 'staging/stg_sensors__readings' in keys)\n"
        "print(defs.resolve_sensor_def('sensors_drain_sensor').name, defs.resolve_job_def('sensors_pipeline').name)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ), timeout=300, check=False
    )
    assert loaded.stdout.split() == ["True", "True", "sensors_drain_sensor", "sensors_pipeline"], loaded.stderr


@pytest.mark.integration
def test_a_broken_declaration_stops_every_command_with_its_reason_not_a_traceback(lake_home, tmp_path, monkeypatch):
    streams = tmp_path / "streams"
    streams.mkdir()
    declared(streams, "topics:\n  t: {fields: {a: {type: float}}}")
    monkeypatch.setenv("LAKEHOUSE_STREAMS_DIR", str(streams))
    refused = run("status")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "sensors.yml: topic 't', field 'a': unknown type 'float'" in refused.stderr
