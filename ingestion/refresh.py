"""Which topics' incremental dbt models must be rebuilt from scratch at their next build.

An incremental model takes in only what is new since it last ran: the offsets past those it
holds (`rows_past`), or the claims past its last window (`office_revenue_10min`). A quarantine
replay stores rows with old offsets and old event times, which no incremental build would take
in. So the replay leaves a marker (`LAKEHOUSE_HOME/full_refresh/<topic>.json`), the next build of
the topic's models runs them with `--full-refresh`, and removes the marker once that succeeded,
unless another replay has renewed it in the meantime.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from ingestion.config import Settings
from ingestion.contracts import Contract


def marker_path(settings: Settings, topic: str) -> Path:
    return settings.home / "full_refresh" / f"{topic}.json"


def request(settings: Settings, contract: Contract, why: str) -> None:
    """Ask for a full refresh of the topic's incremental models; each request is new (see `done`)."""
    path = marker_path(settings, contract.topic)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"topic": contract.topic, "table": contract.table_name, "why": why, "at": time.time()}
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps({**document, "request": uuid.uuid4().hex}))
    os.replace(scratch, path)


def pending(settings: Settings, topics: Iterable[str]) -> dict[str, dict]:
    """The topics (of those given) whose incremental models await a full refresh, with the request."""
    found = {}
    for topic in topics:
        path = marker_path(settings, topic)
        try:
            found[topic] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def all_pending(settings: Settings) -> dict[str, dict]:
    """Every topic whose incremental models await a full refresh."""
    folder = settings.home / "full_refresh"
    return pending(settings, sorted(p.stem for p in folder.glob("*.json"))) if folder.exists() else {}


def done(settings: Settings, seen: Mapping[str, dict]) -> None:
    """A build that started after these requests has refreshed the models: drop the requests,
    but not one renewed since the build read it (a replay during the build)."""
    for topic, request_seen in seen.items():
        if pending(settings, [topic]).get(topic) == request_seen:
            marker_path(settings, topic).unlink(missing_ok=True)
