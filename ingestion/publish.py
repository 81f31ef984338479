"""Publish a table's new or changed rows to a Kafka topic, once each, even when retried.

The topic itself is the record of what was published: before sending, the publisher reads it
back to its end and keeps the last value sent for each key; it then sends only the rows whose
value differs, with an idempotent producer, and waits for every acknowledgement. A run that
crashed after sending is retried against a topic that already holds what it sent, so nothing
goes out twice; a run that crashed before sending sends it now.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import TopicPartition

from ingestion import kafka

log = logging.getLogger(__name__)


class PublishFailed(RuntimeError):
    pass


def published(topic: str) -> dict[bytes, bytes]:
    """The last value sent for each key of the topic."""
    client = kafka.consumer(f"lakehouse-publish-{uuid.uuid4()}", **{"enable.auto.commit": False})
    try:
        ends = {p: high for p, (_, high) in kafka.watermarks(topic, client).items()}
        remaining = {p for p, end in ends.items() if end > 0}
        client.assign([TopicPartition(topic, p, 0) for p in remaining])
        last: dict[bytes, bytes] = {}
        while remaining:
            message = client.poll(10.0)
            if message is None:
                raise PublishFailed(f"could not read {topic} back to its end")
            if message.error():
                continue
            if message.key() is not None:
                last[message.key()] = message.value()
            if message.offset() + 1 >= ends[message.partition()]:
                remaining.discard(message.partition())
        return last
    finally:
        client.close()


def publish_changes(topic: str, rows: Iterable[Mapping[str, Any]], key: str) -> int:
    """Send each row (as JSON, keyed by `row[key]`) whose value differs from the last sent; return how many."""
    kafka.wait_until_ready()
    kafka.ensure_topic(topic, 1)
    last = published(topic)
    changes = []
    for row in rows:
        k = str(row[key]).encode()
        value = json.dumps(dict(row), sort_keys=True, default=str).encode()
        if last.get(k) != value:
            changes.append((k, value))
    if not changes:
        return 0
    failures: list[str] = []
    client = kafka.producer()
    for k, value in changes:
        client.produce(topic, key=k, value=value, on_delivery=lambda err, _m: err and failures.append(str(err)))
        client.poll(0)
    client.flush()
    if failures:
        raise PublishFailed(f"{len(failures)} of {len(changes)} rows were not delivered to {topic}: {failures[0]}")
    log.info("published %d new or changed rows to %s", len(changes), topic)
    return len(changes)
