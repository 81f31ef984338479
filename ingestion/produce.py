"""Send a stream's messages to Kafka: idempotent, rate-limited if asked, with a progress bar."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
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


class UnreadableFile(ValueError):
    """A file `lakehouse produce STREAM --file` cannot replay; the message says why."""


def file_messages(contract: Contract, path: Path) -> Iterator[tuple[bytes | None, bytes | None]]:
    """(key, value) messages replaying a JSON-lines file (each line sent as it is, so a malformed
    one reaches the drain and its quarantine rather than vanishing here) or a CSV file (`.csv`:
    each row as a JSON object, its cells typed as the contract declares them, empty ones left out).
    The key is the declared key's value, where the stream declares one."""
    key = contract.declared.key if contract.declared else None
    if path.suffix.lower() == ".csv":
        return _csv_messages(contract, path, key)
    return _json_lines(path, key)


def _json_lines(path: Path, key: str | None) -> Iterator[tuple[bytes | None, bytes | None]]:
    with open(path, "rb") as handle:
        for line in handle:
            value = line.rstrip(b"\r\n")
            if value.strip():
                yield _key_of(value, key), value


def _key_of(value: bytes, key: str | None) -> bytes | None:
    if key is None:
        return None
    try:
        record = json.loads(value)
    except ValueError:
        return None
    return _key_in(record, key) if isinstance(record, dict) else None


def _key_in(record: dict, key: str | None) -> bytes | None:
    found = record.get(key) if key else None
    return None if found is None else str(found).encode()


def _csv_messages(contract: Contract, path: Path, key: str | None) -> Iterator[tuple[bytes | None, bytes | None]]:
    convert = {f.name: _cell_reader(f.type) for f in contract.schema}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise UnreadableFile(f"{path}: no header row")
        for row in reader:
            record = {
                name: convert.get(name, str)(text) for name, text in row.items() if name and text not in ("", None)
            }
            yield _key_in(record, key), json.dumps(record).encode()


def _cell_reader(kind: pa.DataType) -> Callable[[str], object]:
    """A CSV cell as the JSON value the drain reads into `kind`; a cell that is not one stays text,
    so the drain quarantines its record with the reason."""

    def number(cast: Callable[[str], object]) -> Callable[[str], object]:
        def read(text: str) -> object:
            try:
                return cast(text)
            except ValueError:
                return text

        return read

    if pa.types.is_integer(kind):
        return number(int)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return number(float)
    if pa.types.is_boolean(kind):
        return lambda text: {"true": True, "false": False, "1": True, "0": False}.get(text.strip().lower(), text)
    return str
