"""Send a stream's messages to Kafka: idempotent, rate-limited if asked, with a progress bar."""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from ingestion import kafka
from ingestion.contracts import Contract

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    pass


def produce(
    contract: Contract,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    count: int | None = None,
    rate: float | None = None,
    progress: bool = True,
    total: int | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """Send a stream of (key, value) messages to one contract's topic; see `produce_to`."""
    tagged = ((contract, key, value) for key, value in messages)
    return produce_to([contract], tagged, count, rate, progress, total, headers)


def produce_to(
    contracts: list[Contract],
    messages: Iterable[tuple[Contract, bytes | None, bytes | None]],
    count: int | None = None,
    rate: float | None = None,
    progress: bool = True,
    total: int | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """Send up to `count` messages (all of them when None) at most `rate` a second; return how many were sent.

    `total`, when known (the rows of a file), gives the progress bar its ETA; `headers` go
    with every message.

    Every message is acknowledged by the broker before this returns: the producer is flushed
    on the way out, also after Ctrl-C.
    """
    kafka.wait_until_ready()
    for contract in contracts:
        kafka.ensure_topic(contract.topic, contract.partitions)
    topics = ", ".join(c.topic for c in contracts)
    client = kafka.producer()
    kafka_headers = [(name, value.encode()) for name, value in (headers or {}).items()] or None
    failures: list[str] = []

    def on_delivery(error, _message) -> None:
        if error is not None:
            failures.append(str(error))

    source = messages if count is None else itertools.islice(messages, count)
    bar = tqdm(
        total=total or count,
        unit=" msg",
        desc=f"producing to {topics}",
        disable=not progress,
        file=sys.stderr,
        mininterval=0.5,
    )
    sent = 0
    started = time.monotonic()
    try:
        for contract, key, value in source:
            while True:
                try:
                    client.produce(contract.topic, key=key, value=value, headers=kafka_headers, on_delivery=on_delivery)
                    break
                except BufferError:
                    client.poll(0.05)
            sent += 1
            if sent % 1000 == 0:
                client.poll(0)
                bar.update(1000)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    client.poll(0)
                    time.sleep(ahead)
    except KeyboardInterrupt:
        log.info("interrupted: flushing what was sent")
    finally:
        client.flush()
        bar.update(sent % 1000)
        bar.close()
    if failures:
        raise DeliveryFailed(f"{len(failures)} of {sent} messages were not delivered to {topics}: {failures[0]}")
    log.info("sent %d messages to %s in %.1f s", sent, topics, time.monotonic() - started)
    return sent


def count_rows(path: Path) -> int:
    """Data rows in the file (lines after the header), for a progress bar with an ETA."""
    with open(path, "rb") as handle:
        return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) - 1)
