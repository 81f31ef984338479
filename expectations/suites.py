"""The expectation suites: kept as JSON in `expectations/<stream>/<suite>.json`, or made from a
declared stream's fields (`ingestion/declared.py`), whose file is then the one place they are written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingestion.declared import Declaration

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
    if path.exists():
        return json.loads(path.read_text())
    if (declaration := _declaration(stream, suite)) is not None:
        return declared_suite(declaration)
    raise UnknownSuite(f"no expectation suite {suite!r} for stream {stream!r} (looked for {path})")


def written_in(stream: str, suite: str) -> str:
    """The file an operator edits to change the suite: its JSON, or the stream's declaration."""
    declaration = _declaration(stream, suite)
    if declaration is not None and not suite_path(stream, suite).exists():
        return f"{declaration.path}: its fields' expect"
    return f"expectations/{stream}/{suite}.json: its mostly or on_failure"


def _declaration(stream: str, suite: str) -> Declaration | None:
    from ingestion.streams import STREAMS

    for contract in STREAMS.get(stream, ()):
        if contract.declared is not None and contract.declared.suite == suite:
            return contract.declared
    return None


# A declared expectation -> GX's, with its arguments.
_DECLARED: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "not_null": ("expect_column_values_to_not_be_null", lambda _: {}),
    "between": ("expect_column_values_to_be_between", lambda a: {"min_value": a[0], "max_value": a[1]}),
    "in": ("expect_column_values_to_be_in_set", lambda a: {"value_set": list(a)}),
    "matches": ("expect_column_values_to_match_regex", lambda a: {"regex": str(a)}),
    "unique": ("expect_column_values_to_be_unique", lambda _: {}),
}

# As in the suites kept as files: a failing record is set aside, and more than 5% of the rows
# validated (of at least 100) failing one expectation blocks the gate, a broken producer.
DECLARED_MOSTLY = 0.95


def declared_suite(declaration: Declaration) -> dict[str, Any]:
    """The suite a declared topic's fields expect, in the form of the suites kept as files."""
    expectations = [
        {
            "type": _DECLARED[kind][0],
            "kwargs": {"column": f.name, **_DECLARED[kind][1](argument), "mostly": DECLARED_MOSTLY},
        }
        for f in declaration.fields
        for kind, argument in f.expect.items()
        if argument is not False
    ]
    return {
        "name": declaration.suite,
        "meta": {"description": f"Made from the expectations of {declaration.path}."},
        "expectations": expectations,
    }


def stream_suites() -> dict[str, list[str]]:
    """Every stream that has suites, with their names."""
    return {
        folder.name: sorted(path.stem for path in folder.glob("*.json"))
        for folder in sorted(SUITES_DIR.iterdir())
        if folder.is_dir() and any(folder.glob("*.json"))
    }
