"""The STEDI stream: customers decoded from the Redis connector's payloads in every spelling,
other shapes ignored, each customer's latest score joined to their birth year, and the changed
rows published to `stedi-score-agg` once each, also when the build is run again."""

from __future__ import annotations

import base64
import json
from collections import defaultdict

import duckdb
import pytest
from confluent_kafka import Producer

from ingestion.publish import published
from ingestion.streams import stedi
from tests.cli import lakehouse
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def customer_payload(member: dict | str, *, key: str = "Customer", spelling: str = "real") -> dict:
    element = b64(member if isinstance(member, str) else json.dumps(member))
    if spelling == "real":  # the connector's own output: lower-case fields, both entry spellings
        entries = [{"element": element, "score": 0.0}]
        return {"key": b64(key), "existType": "NONE", "ch": False, "incr": False,
                "zSetEntries": entries, "zsetEntries": entries}  # fmt: skip
    # The README's "formatted" spelling, with only one of the entry fields.
    return {"Key": b64(key), "ExistType": "NONE", "Ch": False, "Incr": False,
            "ZsetEntries": [{"Element": element, "Score": 0.0}]}  # fmt: skip


def person(name: str, year: int, **extra: str) -> dict:
    first, last = name.split()
    return {"customerName": name, "email": f"{first}.{last}@test.com", "phone": "8015551212",
            "birthDay": f"{year}-01-01", **extra}  # fmt: skip


def send(bootstrap: str, topic: str, values: list[bytes | None], key: bytes | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def event(email: str, score: float, when: str) -> bytes:
    return json.dumps({"customer": email, "score": score, "riskDate": f"2020-09-{when}Z"}).encode()


def test_customers_in_every_spelling_latest_scores_and_each_change_published_once(kafka_env, lake_home):
    recreate_topics(kafka_env, stedi.REDIS.topic, stedi.EVENTS.topic, stedi.SCORE_TOPIC, partitions=1)
    santosh, sean, sarah = person("Santosh Fibonnaci", 1963), person("Sean Howard", 1958), person("Sarah Clark", 1957)
    redis = [
        customer_payload(santosh),
        customer_payload(sean, spelling="formatted"),
        customer_payload(person("Sarah Clark", 1950)),  # written again below with her right birthday
        customer_payload(person("Frank Aristotle", 1948, accountNumber="750271955", location="Jordan")),
        customer_payload({"accountNumber": "814840107", "location": "France"}),  # no email: not a customer
        customer_payload({"startTime": 1, "stopTime": 2, "totalSteps": 30, "customer": sean}, key="RapidStepTest"),
        {"key": b64("testkey"), "existType": "NONE", "value": "hello"},
        {"key": "%%% not base64 %%%", "zSetEntries": [{"element": "also not", "score": 0.0}]},
        customer_payload("{not json"),
        [1, 2, 3],
        customer_payload(sarah),
    ]
    values: list[bytes | None] = [json.dumps(p).encode() for p in redis]
    values += [b"\xff\xfe not utf-8", None]  # quarantined; a tombstone
    send(kafka_env, stedi.REDIS.topic, values)
    events = [
        event(santosh["email"], 7.0, "14T07:54:06.417"),
        event(santosh["email"], 28.5, "14T08:10:00.000"),
        event(sean["email"], -3.0, "14T08:00:00.000"),
        event(sarah["email"], -4.0, "14T09:00:00.000"),
        event(sarah["email"], 2.0, "13T09:00:00.000"),  # older, though it arrives later
        event("Nobody.Known@test.com", 1.0, "14T09:00:00.000"),  # no customer record: not in the mart
    ]
    send(kafka_env, stedi.EVENTS.topic, events)
    lakehouse("drain", "stedi")
    out = lakehouse("build", "stedi")
    assert "stedi: published 3 new or changed rows" in out

    with duckdb.connect(str(lake_home / "warehouse.duckdb"), read_only=True) as con:
        risk = set(con.execute("select customer, score, birth_year from stedi_customer_risk").fetchall())
        by_year = set(con.execute("select birth_year, customers, avg_score from stedi_risk_by_birth_year").fetchall())
        customers = {r[0] for r in con.execute("select email from stg_stedi__customers").fetchall()}
    assert customers == {santosh["email"], sean["email"], sarah["email"], "Frank.Aristotle@test.com"}
    expected = {(santosh["email"], 28.5, 1963), (sean["email"], -3.0, 1958), (sarah["email"], -4.0, 1957)}
    assert risk == expected
    years: dict[int, list[float]] = defaultdict(list)
    for _, score, year in expected:
        years[year].append(score)
    assert by_year == {(year, len(scores), sum(scores) / len(scores)) for year, scores in years.items()}

    feed = published(stedi.SCORE_TOPIC)
    assert {json.loads(v)["customer"]: json.loads(v) for v in feed.values()}[santosh["email"]] == {
        "customer": santosh["email"], "score": 28.5, "email": santosh["email"], "birthYear": 1963,
    }  # fmt: skip

    # Run again (as a retried run would): nothing new goes out.
    assert "stedi: published 0 new or changed rows" in lakehouse("build", "stedi")
    # A new score for one customer: that customer, once.
    send(kafka_env, stedi.EVENTS.topic, [event(sean["email"], -0.5, "15T08:00:00.000")])
    lakehouse("drain", "stedi")
    assert "stedi: published 1 new or changed rows" in lakehouse("build", "stedi")
    messages = read_all(kafka_env, stedi.SCORE_TOPIC)
    assert sorted(json.loads(v)["customer"] for v in messages) == sorted(
        [santosh["email"], sarah["email"], sean["email"], sean["email"]]
    )
    assert json.loads(messages[-1]) == {
        "customer": sean["email"],
        "score": -0.5,
        "email": sean["email"],
        "birthYear": 1958,
    }


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-read-all", "enable.auto.commit": False})
    _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, 0)])
    values = []
    while len(values) < end:
        message = consumer.poll(10)
        assert message is not None
        if not message.error():
            values.append(message.value())
    consumer.close()
    return values
