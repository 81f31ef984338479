"""The expectation suites kept as JSON in `expectations/<stream>/<suite>.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUITES_DIR = Path(__file__).resolve().parent


class UnknownSuite(LookupError):
    pass


class InvalidSuite(ValueError):
    """A suite that says something the gate cannot do (an unknown `on_failure`, a `mostly` out of range)."""


def suite_path(stream: str, suite: str) -> Path:
    return SUITES_DIR / stream / f"{suite}.json"


def load_suite(stream: str, suite: str) -> dict[str, Any]:
    """A suite as its JSON document: `name`, `meta` and `expectations` ({type, kwargs})."""
    path = suite_path(stream, suite)
    if not path.exists():
        raise UnknownSuite(f"no expectation suite {suite!r} for stream {stream!r} (looked for {path})")
    return json.loads(path.read_text())


def stream_suites() -> dict[str, list[str]]:
    """Every stream that has suites, with their names."""
    return {
        folder.name: sorted(path.stem for path in folder.glob("*.json"))
        for folder in sorted(SUITES_DIR.iterdir())
        if folder.is_dir() and any(folder.glob("*.json"))
    }
