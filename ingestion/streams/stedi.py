"""STEDI balance-risk scores: customers from a Redis change feed, and risk events.

The STEDI app keeps its customers in a Redis sorted set; the Redis source connector streams every
change to the topic `redis-server` as `{"key": <base64 Redis key>, "existType", "ch", "incr",
"zSetEntries": [{"element": <base64 member JSON>, "score"}], "zsetEntries": [...]}`, with field
names in either case, beside other keys and shapes from other simulators on the same Redis. The
app publishes `{"customer", "score", "riskDate"}` to `stedi-events` after each assessment, and
reads its chart back from `stedi-score-agg`.

The extension of `stedi.yml`, which declares the stream.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingestion import duck
from ingestion.contracts import Contract, Export

REDIS_TOPIC, EVENTS_TOPIC = "redis-server", "stedi-events"

# Where the app reads its chart: one message per new or changed row of `stedi_customer_risk`.
SCORE_TOPIC = "stedi-score-agg"

_FIRST = ("Jacob", "Sarah", "Santosh", "Sean", "Lyn", "Gail", "Craig", "Edward", "Suresh", "Frank", "Jason", "Dan")
_LAST = ("Howard", "Lincoln", "Phillips", "Clark", "Davis", "Spencer", "Wu", "Mitra", "Fibonnaci", "Aristotle")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _zset(key: str, member: dict, rng: random.Random) -> dict:
    """A connector payload adding `member` to the sorted set `key`, in one of the spellings seen."""
    entries = [{"element": _b64(json.dumps(member, separators=(",", ":"))), "score": 0.0}]
    payload = {"key": _b64(key), "existType": "NONE", "ch": False, "incr": False}
    if rng.random() < 0.2:  # the README's spelling of the same fields
        payload = {"key": _b64(key), "existType": "NONE", "Ch": False, "Incr": False}
        entries = [{"element": entries[0]["element"], "Score": 0.0}]
    payload["zSetEntries"] = entries
    if rng.random() < 0.8:  # both spellings are usually there, redundant
        payload["zsetEntries"] = entries
    return payload


def customers(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(f"customers/{seed}")
    people, seen = [], set()
    while len(people) < count:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        suffix = "" if (first, last) not in seen else str(len(people))
        seen.add((first, last))
        people.append(
            {
                "customerName": f"{first} {last}{suffix}",
                "email": f"{first}.{last}{suffix}@test.com",
                "phone": "8015551212",
                "birthDay": f"{rng.randint(1937, 1963)}-01-01",
            }
        )
    return people


def feed(
    customer_count: int = 30, seed: int = 0, start: datetime | None = None
) -> Iterator[tuple[Contract, bytes | None, bytes]]:
    """The connector's payloads for `customer_count` customers (and the noise the topic also
    carries), then risk events for them, endlessly: each customer gets a score now and then."""
    from ingestion.streams import contract

    redis, events = contract(REDIS_TOPIC), contract(EVENTS_TOPIC)
    rng = random.Random(seed)
    clock = start or datetime.now(UTC)
    people = customers(customer_count, seed)
    for person in people:
        yield redis, None, json.dumps(_zset("Customer", person, rng)).encode()
        if rng.random() < 0.3:  # other simulators write to the same Redis and topic
            yield redis, None, json.dumps(_noise(person, rng)).encode()
    while True:
        person = rng.choice(people)
        clock += timedelta(seconds=rng.randint(1, 30))
        event = {
            "customer": person["email"],
            "score": rng.choice([-5.0, -4.5, -4.0, -3.0, -2.0, -0.5, 0.5, 2.0, 7.0, 8.0, 28.5]),
            "riskDate": clock.strftime("%Y-%m-%dT%H:%M:%S.") + f"{clock.microsecond // 1000:03d}Z",
        }
        yield events, person["email"].encode(), json.dumps(event).encode()


def _noise(person: dict, rng: random.Random) -> dict:
    """Payloads that share the topic and must be ignored: other keys, other shapes."""
    choice = rng.randrange(4)
    if choice == 0:
        test = {"startTime": 1600000000000, "stopTime": 1600000030000, "testTime": 30000, "totalSteps": 30,
                "customer": person}  # fmt: skip
        return _zset("RapidStepTest", test, rng)
    if choice == 1:
        return _zset("Customer", {"accountNumber": "814840107", "location": "France"}, rng)  # no email, no birthDay
    if choice == 2:
        return {"key": _b64("testkey"), "existType": "NONE", "value": "hello", "expiredType": None}
    return {"key": _b64("SortedSet"), "existType": "NONE", "ch": False, "incr": False, "zSetEntries": []}


def publish_scores(warehouse: Path) -> int:
    """Publish the new or changed rows of `stedi_customer_risk` to `stedi-score-agg`; return how many."""

    from ingestion.publish import publish_changes

    with duck.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            'select customer, score, email, birth_year as "birthYear" from stedi_customer_risk order by customer'
        ).fetchall()
    names = ("customer", "score", "email", "birthYear")
    return publish_changes(SCORE_TOPIC, [dict(zip(names, row, strict=True)) for row in rows], key="customer")


EXPORT = Export(
    stream="stedi",
    name="stedi_score_agg",
    mart="stedi_customer_risk",
    topic=SCORE_TOPIC,
    publish=publish_scores,
    description=f"The new or changed rows of `stedi_customer_risk`, published to the topic `{SCORE_TOPIC}` "
    'as {"customer", "score", "email", "birthYear"} for the STEDI app, once each even when retried.',
)


def __getattr__(name: str) -> Contract | tuple[Contract, ...]:
    # The contracts are declared in stedi.yml; these names read them from the registry.
    from ingestion.streams import contract, contracts_for

    if name in ("REDIS", "EVENTS"):
        return contract(REDIS_TOPIC if name == "REDIS" else EVENTS_TOPIC)
    if name == "CONTRACTS":
        return contracts_for("stedi")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
