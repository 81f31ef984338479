"""Kafka client settings from the environment, and the few admin helpers the product needs.

`KAFKA_BOOTSTRAP_SERVERS` points every command at an existing cluster; otherwise the local
broker of `lakehouse kafka start` is used. Security settings pass through unchanged: every
variable `KAFKA_SECURITY_*`, `KAFKA_SASL_*` or `KAFKA_SSL_*` becomes the librdkafka property
of the same name in lower case with dots (`KAFKA_SASL_MECHANISM` -> `sasl.mechanism`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from ingestion.batch_consumer import BatchConsumer
from ingestion.config import settings

_PASSTHROUGH_PREFIXES = ("KAFKA_SECURITY_", "KAFKA_SASL_", "KAFKA_SSL_")


class BrokerUnreachable(RuntimeError):
    pass


def security_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {
        name[len("KAFKA_") :].lower().replace("_", "."): value
        for name, value in environ.items()
        if name.startswith(_PASSTHROUGH_PREFIXES) and value
    }


def client_settings(**overrides: object) -> dict[str, object]:
    conf: dict[str, object] = {
        "bootstrap.servers": settings().bootstrap_servers,
        # Notices and worse: at info level librdkafka says "Purging 1 unserved events" on stderr
        # as every client closes, after Python's logging has let go of it.
        "log_level": 5,
        **security_settings(),
    }
    conf.update(overrides)
    return conf


class _Repeats(logging.Filter):
    """Let a message through once per interval: an unreachable broker makes librdkafka repeat
    the same connection error on every reconnect, which buries the one line that matters."""

    def __init__(self, interval_s: float = 60.0):
        super().__init__()
        self.interval_s = interval_s
        self._last_seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = re.sub(r"\d+ms|#consumer-\d+|#producer-\d+", "", record.getMessage())
        now = time.monotonic()
        if now - self._last_seen.get(message, -self.interval_s) < self.interval_s:
            return False
        self._last_seen[message] = now
        return True


# librdkafka logs through Python logging (not straight to stderr), under this logger's name.
_CLIENT_LOG = logging.getLogger("librdkafka")
_CLIENT_LOG.addFilter(_Repeats())


def admin() -> AdminClient:
    return AdminClient(client_settings(), logger=_CLIENT_LOG)


def producer(**overrides: object) -> Producer:
    return Producer(
        client_settings(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "compression.type": "lz4",
                **overrides,
            }
        ),
        logger=_CLIENT_LOG,
    )


def _consumer_settings(group_id: str, **overrides: object) -> dict[str, object]:
    return client_settings(
        **{
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            **overrides,
        }
    )


def consumer(group_id: str, **overrides: object) -> Consumer:
    return Consumer(_consumer_settings(group_id, **overrides), logger=_CLIENT_LOG)


def batch_consumer(group_id: str, **overrides: object) -> BatchConsumer:
    """A consumer that reads records as Arrow columns (the drain's reader), with the same settings."""
    return BatchConsumer(_consumer_settings(group_id, **overrides), _CLIENT_LOG, settings().kafka_reader)


def wait_until_ready(timeout_s: float = 30.0) -> None:
    """Block until the cluster answers a metadata request, or raise BrokerUnreachable."""
    deadline = time.monotonic() + timeout_s
    client = admin()
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.list_topics(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            last_error = exc
            time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))  # never past the deadline
    raise BrokerUnreachable(
        f"no Kafka broker answers at {settings().bootstrap_servers} ({last_error}); "
        "start one with `lakehouse kafka start` or set KAFKA_BOOTSTRAP_SERVERS"
    )


def ensure_topic(topic: str, partitions: int = 1) -> None:
    """Create the topic if it does not exist (an existing topic is left as it is)."""
    client = admin()
    if topic in client.list_topics(timeout=10).topics:
        return
    futures = client.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def partitions_of(topic: str, client: Consumer | AdminClient) -> list[int]:
    meta = client.list_topics(topic, timeout=10)
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        return []
    return sorted(found.partitions)


def watermarks(topic: str, client: Consumer) -> dict[int, tuple[int, int]]:
    """Per partition, the broker's (low, high) offsets: the first stored and the next to be written."""
    return {
        p: client.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
        for p in partitions_of(topic, client)
    }


def topic_id(topic: str, client: AdminClient | None = None, timeout_s: float = 10.0) -> str | None:
    """The broker's id of the topic, which changes when the topic is deleted and created again;
    None where the topic does not exist or the broker does not say (before Kafka 3.x)."""
    client = client or admin()
    try:
        description = client.describe_topics(TopicCollection([topic]), request_timeout=timeout_s)[topic].result()
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise
    found = str(description.topic_id) if description.topic_id is not None else ""
    return found or None


def topic_config(topic: str, client: AdminClient | None = None, timeout_s: float = 10.0) -> dict[str, str]:
    """The topic's settings as the broker reports them (cleanup.policy, retention.ms, ...); empty if it cannot say."""
    client = client or admin()
    try:
        futures = client.describe_configs([ConfigResource("topic", topic)], request_timeout=timeout_s)
        entries = next(iter(futures.values())).result()
    except KafkaException:
        return {}
    return {name: entry.value for name, entry in entries.items() if entry.value is not None}
