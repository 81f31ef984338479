"""`lakehouse verify` on offsets inside the stored range that no file holds: the broker says whether
they are legal (transaction markers hold no record) or a record the lake lost."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from ingestion import lake
from ingestion.config import settings
from tests.cli import lakehouse, run
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

TOPIC = "prices"


def send_in_transactions(bootstrap: str, transactions: int, per_transaction: int) -> None:
    """Ticks in committed transactions: each commit leaves a marker, an offset with no record."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "verify-test"})
    producer.init_transactions(30)
    for t in range(transactions):
        producer.begin_transaction()
        for i in range(per_transaction):
            tick = {"ts": f"2021-03-10 16:21:{i:02d}.000", "symbol": "MSFT", "price": 400 + t + i / 100}
            producer.produce(TOPIC, key=b"MSFT", value=json.dumps(tick).encode())
        producer.commit_transaction(30)


def verify_json() -> tuple[int, list[dict]]:
    result = run("verify", TOPIC, "--json")
    return result.returncode, json.loads(result.stdout)


def drop_offset(offset: int) -> None:
    """What a lost record looks like: the raw file that held `offset` rewritten without it."""
    tables = lake.TopicTables.load(settings(), TOPIC)
    state = tables.state()
    (path,) = [f["file_path"] for f in lake.data_files(tables.raw)]
    held = pq.read_table(tables.raw.io.new_input(path).open())
    kept = held.filter(pc.not_equal(held["_kafka_offset"], offset))
    rewritten = path.replace(".parquet", "-rewritten.parquet")
    tables.write(kept, rewritten)
    tables.replace_files(state, {rewritten: [path]})


def test_transaction_markers_are_gaps_the_broker_confirms_and_a_lost_record_is_a_hole(kafka_env, lake_home):
    recreate_topics(kafka_env, TOPIC, partitions=1)
    send_in_transactions(kafka_env, transactions=3, per_transaction=10)
    lakehouse("drain", TOPIC)

    code, (check,) = verify_json()
    assert code == 0, check
    assert check["rows"] == 30 and check["gaps"] == 3  # a marker after each transaction
    assert any("transaction markers" in note for note in check["notes"])

    drop_offset(15)
    code, (check,) = verify_json()
    assert code == 1
    assert check["problems"] == ["hole: offset 15 (in 15-16) holds a record on the broker that neither table holds"], (
        check
    )
