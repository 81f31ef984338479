"""The STEDI stream: customers decoded from the Redis connector's payloads in every spelling,
other shapes ignored, each customer's latest score joined to their birth year, and the changed
rows published to `stedi-score-agg` once each, also when the build is run again."""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict

import pytest
from confluent_kafka import Producer

from ingestion import duck
from ingestion.publish import published
from ingestion.streams import stedi
from tests import lake_tables
from tests.cli import lakehouse
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration


# The Redis connector's record for Sam Test, byte for byte as the STEDI seed's console prints it.
SAM_LINE = (
    b'{"key":"Q3VzdG9tZXI=","existType":"NONE","ch":false,"incr":false,"zSetEntries":[{"element":"eyJjdXN0b21lck5h'
    b"bWUiOiJTYW0gVGVzdCIsImVtYWlsIjoic2FtLnRlc3RAdGVzdC5jb20iLCJwaG9uZSI6IjgwMTU1NTEyMTIiLCJiaXJ0aERheSI6IjIwMDEt"
    b'MDEtMDMifQ==","score":0.0}],"zsetEntries":[{"element":"eyJjdXN0b21lck5hbWUiOiJTYW0gVGVzdCIsImVtYWlsIjoic2Ft'
    b'LnRlc3RAdGVzdC5jb20iLCJwaG9uZSI6IjgwMTU1NTEyMTIiLCJiaXJ0aERheSI6IjIwMDEtMDEtMDMifQ==","score":0.0}]}'
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def customer_payload(member: dict | str, *, key: str = "Customer", spelling: str = "real") -> dict:
    element = b64(member if isinstance(member, str) else json.dumps(member))
    if spelling == "real":  # the connector's own output: lower-case fields, both entry spellings
        entries = [{"element": element, "score": 0.0}]
        return {"key": b64(key), "existType": "NONE", "ch": False, "incr": False,
                "zSetEntries": entries, "zsetEntries": entries}  # fmt: skip
    if spelling == "readme":  # the README's formatted version: `__`-wrapped key and zSetEntries element
        return {"key": f"__{b64(key)}__", "existType": "NONE", "Ch": False, "Incr": False,
                "zSetEntries": [{"element": f"__{element}__", "Score": 0.0}],
                "zsetEntries": [{"element": element, "Score": 0.0}]}  # fmt: skip
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

    with duck.connect(str(lake_home / "warehouse.duckdb"), read_only=True) as con:
        risk = set(con.execute("select customer, score, birth_year from stedi_customer_risk").fetchall())
        by_year = set(con.execute("select birth_year, customers, avg_score from stedi_risk_by_birth_year").fetchall())
        customers = {r[0] for r in con.execute("select email from stg_stedi__customers").fetchall()}
    assert customers == {santosh["email"], sean["email"], sarah["email"], "Frank.Aristotle@test.com"}
    # Every record staging left out is counted with its reason: raw = staging + rejected.
    assert rejected_reasons(lake_home) == Counter(
        {
            ("redis_server", "superseded by a later write of the same email"): 1,  # Sarah's first birthday
            ("redis_server", "member without email"): 1,
            ("redis_server", "Redis key RapidStepTest, not Customer"): 1,
            ("redis_server", "Redis key testkey, not Customer"): 1,
            ("redis_server", "key not base64"): 1,
            ("redis_server", "entry element not a JSON object"): 1,
            ("redis_server", "not a JSON object"): 1,
            ("redis_server", "tombstone"): 1,
        }
    )
    assert_every_raw_record_accounted_for(lake_home)
    left_out = json.loads(lakehouse("status", "--json"))["rejected"]["stedi"]  # and the operator sees them
    assert left_out == {reason: n for (_, reason), n in rejected_reasons(lake_home).items()}
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


def rejected_reasons(lake_home) -> Counter:
    with duck.connect(str(lake_home / "warehouse.duckdb"), read_only=True) as con:
        return Counter(con.execute("select source_table, rejection_reason from stedi_rejected_rows").fetchall())


def assert_every_raw_record_accounted_for(lake_home, members_beyond_one: int = 0) -> None:
    """Per topic, each raw record is in staging or among the rejected rows, and the counts add up:
    raw rows = staging rows + rejected rows (a payload with several members counts each of them)."""
    with duck.connect(str(lake_home / "warehouse.duckdb"), read_only=True) as con:
        for table, topic, staging in (
            ("redis_server", stedi.REDIS.topic, "stg_stedi__customers"),
            ("stedi_events", stedi.EVENTS.topic, "stg_stedi__risk_events"),
        ):
            held = lake_tables.read_table(lake_home, "raw", topic, ("_kafka_partition", "_kafka_offset"))
            raw = set(zip(held["_kafka_partition"].to_pylist(), held["_kafka_offset"].to_pylist(), strict=True))
            kept = con.execute(f"select kafka_partition, kafka_offset from {staging}").fetchall()
            rejected = con.execute(
                "select kafka_partition, kafka_offset from stedi_rejected_rows where source_table = ?", [table]
            ).fetchall()
            assert len(kept) + len(rejected) == len(raw) + (members_beyond_one if table == "redis_server" else 0), table
            assert set(kept) | set(rejected) == raw, table


def test_payloads_in_every_spelling_the_seed_shows_reach_the_marts_and_the_score_topic(kafka_env, lake_home):
    recreate_topics(kafka_env, stedi.REDIS.topic, stedi.EVENTS.topic, stedi.SCORE_TOPIC, partitions=1)
    people = [person(name, 1940 + i) for i, name in enumerate(
        ["Gail Spencer", "Craig Lincoln", "Edward Wu", "Lyn Davis", "Jason Mitra", "Dan Phillips", "Suresh Clark"]
    )]  # fmt: skip
    gail, craig, edward, lyn, jason, dan, suresh = people
    element = b64(json.dumps(edward))
    lyn_element = b64(json.dumps(lyn))
    redis = [
        # The real console output's shape, for Gail (Sam Test's line goes verbatim, below).
        customer_payload(gail),
        # The README's formatted version: `__` around the key and the zSetEntries element, Ch/Incr/Score.
        customer_payload(craig, spelling="readme"),
        # zSetEntries malformed, zsetEntries valid: the valid copy makes up for it.
        {
            "key": b64("Customer"),
            "existType": "NONE",
            "ch": False,
            "incr": False,
            "zSetEntries": [{"element": "%%% not base64 %%%", "score": 0.0}],
            "zsetEntries": [{"element": element, "score": 0.0}],
        },
        # And the other way round, with a wrapped key and a list that is not a list at all.
        {
            "Key": f"__{b64('Customer')}__",
            "ZSETENTRIES": "not a list",
            "zSetEntries": [{"Element": f"__{lyn_element}__", "Score": 0.0}],
            "zsetEntries": [{"Element": "__bm90IGpzb24=__", "Score": 0.0}],
        },
        # Only the wrapped list.
        {
            "key": f"__{b64('Customer')}__",
            "Ch": False,
            "Incr": False,
            "zSetEntries": [{"element": f"__{b64(json.dumps(jason))}__", "Score": 0.0}],
        },
        # The README's capitalised single list.
        customer_payload(dan, spelling="formatted"),
        # Two members in one payload, each list carrying both.
        {
            "key": b64("Customer"),
            "zSetEntries": [
                {"element": b64(json.dumps(suresh)), "score": 0.0},
                {"element": b64(json.dumps(person("Gail Clark", 1962))), "score": 1.0},
            ],
            "zsetEntries": [
                {"element": b64(json.dumps(suresh)), "score": 0.0},
                {"element": b64(json.dumps(person("Gail Clark", 1962))), "score": 1.0},
            ],
        },
        # Left out, each for its reason.
        {"key": b64("Customer"), "zSetEntries": [{"element": "%%%", "score": 0.0}], "zsetEntries": ["x"]},
        {"key": b64("Customer"), "existType": "NONE"},
        {"key": b64("Customer"), "zSetEntries": []},
        {"existType": "NONE", "zSetEntries": [{"element": element}]},
        customer_payload({"customerName": "No Birthday", "email": "No.Birthday@test.com"}),
        {**customer_payload(person("Gail Spencer", 1940), key="SortedSet"), "key": "__U29ydGVkU2V0__"},
    ]
    values: list[bytes | None] = [SAM_LINE, *(json.dumps(p).encode() for p in redis)]
    send(kafka_env, stedi.REDIS.topic, values)
    emails = [p["email"] for p in people] + ["sam.test@test.com", "Gail.Clark@test.com"]
    send(kafka_env, stedi.EVENTS.topic, [event(email, -1.0 - i, "14T08:00:00.000") for i, email in enumerate(emails)])
    lakehouse("drain", "stedi")
    out = lakehouse("build", "stedi")
    assert f"stedi: published {len(emails)} new or changed rows" in out

    with duck.connect(str(lake_home / "warehouse.duckdb"), read_only=True) as con:
        customers = {r[0] for r in con.execute("select email from stg_stedi__customers").fetchall()}
        risk = {r[0] for r in con.execute("select customer from stedi_customer_risk").fetchall()}
        scored = con.execute("select sum(customers) from stedi_risk_by_birth_year").fetchone()[0]
    assert customers == risk == set(emails)
    assert scored == len(emails)
    assert {json.loads(v)["customer"] for v in published(stedi.SCORE_TOPIC).values()} == set(emails)

    assert rejected_reasons(lake_home) == Counter(
        {
            ("redis_server", "entry element not base64"): 1,  # neither list makes up for it
            ("redis_server", "no entry list"): 1,
            ("redis_server", "empty entry list"): 1,
            ("redis_server", "no key"): 1,
            ("redis_server", "member without birthDay"): 1,
            ("redis_server", "Redis key SortedSet, not Customer"): 1,
        }
    )
    assert_every_raw_record_accounted_for(lake_home, members_beyond_one=1)  # Suresh and Gail Clark, one payload
