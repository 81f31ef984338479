"""Streams declared in one YAML file each, `<stream>.yml` in `LAKEHOUSE_STREAMS_DIR`.

A declaration names a stream's topics and, per topic, its format, an optional key (records with
the same key: the latest one wins in staging), the event-time field, the fields with their types
and which are required, and what each field is expected to hold. From it come the contract the
drain applies (`ingestion.contracts.Contract`), the quality suite that gates the raw table
(`expectations/suites.py`) and the staging model over it (`orchestration/generated.py`): one
mechanism for any topic, with nothing of the project to change. The README's "Adding a stream"
shows one, and every key it may hold.

What only a stream needs beyond that is an extension of its declaration, never a second
mechanism: the five built-in streams are declared the same way (`ingestion/streams/<stream>.yml`)
and name their `extension`, the Python module of their producers, whose attributes a topic may
name (`spellings: ALIASES`, the CMS files' names for each field). A topic may also keep every
field as sent (`fields: as_sent`), carry Kafka headers as columns (`headers:`), keep each record's
JSON as text (`raw_json: true`), be gated by suites kept as files (`suites:`) and ship its own
staging models (`staging: own`) instead of the generated one.

A file that says something this cannot do is refused with the file, the place and what is
allowed, never half read.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from ingestion.contracts import Contract, table_name

# Declared type -> the Arrow type the drain parses a JSON value into. A `date` is read as a
# timestamp (pyarrow's JSON reader takes `2024-01-02` for a timestamp, not for a date) and
# staging casts it to a date.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
    "date": pa.timestamp("us"),
}
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
TYPES = (*_ARROW_TYPES, "decimal(p,s)")
EXPECTATIONS = ("not_null", "between", "in", "matches", "unique")
FORMATS = ("json",)  # the declaration has room for more (`avro`), the drain reads JSON today
_STREAM_KEYS = {"topics", "description", "extension"}
_TOPIC_KEYS = {
    "format", "key", "event_time", "fields", "entity", "description", "partitions",
    # extensions: what only some streams need
    "suites", "staging", "headers", "raw_json", "spellings",
}  # fmt: skip
AS_SENT = "as_sent"  # `fields: as_sent`: no declared fields, every field kept as the record has it
STAGING = ("generated", "own")
_FIELD_KEYS = {"type", "required", "expect", "description"}
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_TOPIC = re.compile(r"[A-Za-z0-9._-]+")


class InvalidDeclaration(ValueError):
    """A stream file that cannot be read as a declaration; the message says where and why."""


@dataclass(frozen=True)
class DeclaredField:
    name: str
    type: str  # as declared: `string`, `decimal(10,2)`, …
    required: bool = False
    expect: Mapping[str, Any] = field(default_factory=dict, hash=False)
    description: str = ""


@dataclass(frozen=True)
class Declaration:
    """What a topic's declaration says beyond its contract: what staging and the suite are made from."""

    path: Path  # the file it was declared in
    entity: str  # `readings`: staging's model is `stg_<stream>__<entity>`
    key: str | None
    fields: tuple[DeclaredField, ...]
    # False where the stream ships its own staging models (`staging: own`), as the built-in ones do.
    generates_staging: bool = True

    @property
    def suite(self) -> str | None:
        """The name of the quality suite made from the fields' expectations; None without any."""
        return f"raw_{self.entity}" if any(f.expect for f in self.fields) else None


def arrow_type(declared: str) -> pa.DataType:
    if declared in _ARROW_TYPES:
        return _ARROW_TYPES[declared]
    if match := _DECIMAL.fullmatch(declared):
        precision, scale = int(match[1]), int(match[2])
        if not 1 <= precision <= 38 or scale > precision:
            raise ValueError(f"decimal({precision},{scale}) needs 1 <= precision <= 38 and scale <= precision")
        return pa.decimal128(precision, scale)
    raise ValueError(f"unknown type {declared!r}; known: {', '.join(TYPES)}")


def load_folder(folder: Path) -> list[Contract]:
    """The contracts of every `<stream>.yml` in the folder, in the files' order by name."""
    if not folder.is_dir():
        raise InvalidDeclaration(f"LAKEHOUSE_STREAMS_DIR {folder} is not a folder")
    paths = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    return [contract for path in paths for contract in load_file(path)]


def load_file(path: Path) -> list[Contract]:
    """The contracts a stream file declares, one per topic."""
    stream = path.stem
    if not _NAME.fullmatch(stream):
        raise InvalidDeclaration(f"{path}: a stream's name (the file's) must be lower-case letters, digits and _")
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidDeclaration(f"{path}: not readable as YAML: {exc}") from exc
    where = str(path)
    _only(where, document, _STREAM_KEYS)
    topics = document.get("topics")
    if not isinstance(topics, dict) or not topics:
        raise InvalidDeclaration(f"{where}: `topics:` must map each topic's name to its declaration")
    extension = _extension(where, document.get("extension"))
    contracts = [_topic(path, stream, str(topic), spec, extension) for topic, spec in topics.items()]
    entities = [c.declared.entity for c in contracts if c.declared]
    if len(set(entities)) != len(entities):
        raise InvalidDeclaration(f"{where}: two topics have the same entity; give one an `entity:` of its own")
    return contracts


def _extension(where: str, name: Any) -> Any:
    """The module a declaration names as its `extension`, imported; None without one."""
    if name is None:
        return None
    try:
        return importlib.import_module(str(name))
    except ImportError as exc:
        raise InvalidDeclaration(f"{where}: extension {name!r} cannot be imported: {exc}") from exc


def _topic(path: Path, stream: str, topic: str, spec: Any, extension: Any = None) -> Contract:
    where = f"{path}: topic {topic!r}"
    if not _TOPIC.fullmatch(topic):
        raise InvalidDeclaration(f"{where}: a Kafka topic's name is letters, digits, '.', '_' and '-'")
    _only(where, spec, _TOPIC_KEYS)
    format_ = spec.get("format", "json")
    if format_ not in FORMATS:
        raise InvalidDeclaration(f"{where}: format {format_!r} is not read yet; known: {', '.join(FORMATS)}")
    staging = spec.get("staging", "generated")
    if staging not in STAGING:
        raise InvalidDeclaration(f"{where}: staging {staging!r} is not one of {', '.join(STAGING)}")
    fields_spec = spec.get("fields")
    if fields_spec == AS_SENT:
        if staging != "own":
            raise InvalidDeclaration(
                f"{where}: `fields: {AS_SENT}` leaves nothing to generate staging from: say `staging: own`"
            )
        fields_spec = {}
    elif not isinstance(fields_spec, dict) or not fields_spec:
        raise InvalidDeclaration(f"{where}: `fields:` must map each field's name to its type, or be `{AS_SENT}`")
    fields = tuple(_field(f"{where}, field {name!r}", str(name), value) for name, value in fields_spec.items())
    names = [f.name for f in fields]
    key = spec.get("key")
    if key is not None and key not in names:
        raise InvalidDeclaration(f"{where}: key {key!r} is not one of its fields ({', '.join(names)})")
    event_time = spec.get("event_time")
    types = {f.name: f.type for f in fields}
    if event_time is not None and types.get(event_time) not in ("timestamp", "date"):
        raise InvalidDeclaration(f"{where}: event_time {event_time!r} must be a field of type timestamp or date")
    entity = str(spec.get("entity") or table_name(topic.rsplit(".", 1)[-1])).lower()
    if not _NAME.fullmatch(entity):
        raise InvalidDeclaration(f"{where}: entity {entity!r} must be lower-case letters, digits and _")
    partitions = spec.get("partitions", 1)
    if not isinstance(partitions, int) or partitions < 1:
        raise InvalidDeclaration(f"{where}: partitions must be a whole number of at least 1")
    suites = spec.get("suites", [])
    if not isinstance(suites, list) or not all(isinstance(s, str) and _NAME.fullmatch(s) for s in suites):
        raise InvalidDeclaration(f"{where}: `suites:` must list suite names (expectations/{stream}/<suite>.json)")
    headers = spec.get("headers", [])
    if not isinstance(headers, list) or not all(isinstance(h, str) and h for h in headers):
        raise InvalidDeclaration(f"{where}: `headers:` must list the names of Kafka headers to keep")
    raw_json = spec.get("raw_json", False)
    if not isinstance(raw_json, bool):
        raise InvalidDeclaration(f"{where}: raw_json takes true or false")
    declaration = Declaration(
        path=path, entity=entity, key=key, fields=fields, generates_staging=staging == "generated"
    )
    return Contract(
        stream=stream,
        topic=topic,
        schema=pa.schema([pa.field(f.name, arrow_type(f.type)) for f in fields]),
        # Staging keeps one row per key: a record without one has nothing to be kept by.
        required=tuple(f.name for f in fields if f.required or f.name == key),
        event_time=event_time,
        description=str(spec.get("description") or f"Declared in {path.name}: {', '.join(names)}."),
        partitions=partitions,
        suites=(*([declaration.suite] if declaration.suite else []), *suites),
        headers=tuple(headers),
        aliases=_spellings(where, spec.get("spellings"), extension),
        raw_json=raw_json,
        declared=declaration,
    )


def _spellings(where: str, spec: Any, extension: Any) -> dict[str, tuple[str, ...]]:
    """Field -> the lower-case names it arrives under: a mapping, or the name of the extension's."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        if extension is None or not isinstance(getattr(extension, spec, None), Mapping):
            raise InvalidDeclaration(f"{where}: spellings {spec!r} must name a mapping of the stream's extension")
        spec = getattr(extension, spec)
    if not isinstance(spec, Mapping) or not all(isinstance(v, list | tuple) for v in spec.values()):
        raise InvalidDeclaration(f"{where}: `spellings:` must map each field to the names it arrives under")
    return {str(name): tuple(str(s).lower() for s in spellings) for name, spellings in spec.items()}


def _field(where: str, name: str, spec: Any) -> DeclaredField:
    if isinstance(spec, str):
        spec = {"type": spec}
    _only(where, spec, _FIELD_KEYS)
    declared = str(spec.get("type", "")).replace(" ", "").lower()
    try:
        arrow_type(declared)
    except ValueError as exc:
        raise InvalidDeclaration(f"{where}: {exc}") from exc
    expect = spec.get("expect") or {}
    if not isinstance(expect, dict):
        raise InvalidDeclaration(f"{where}: `expect:` must map expectations ({', '.join(EXPECTATIONS)}) to arguments")
    for kind, argument in expect.items():
        problem = _expectation_problem(kind, argument, declared)
        if problem:
            raise InvalidDeclaration(f"{where}: expectation {kind!r}: {problem}")
    return DeclaredField(
        name=name,
        type=declared,
        required=bool(spec.get("required", False)),
        expect=expect,
        description=str(spec.get("description") or ""),
    )


def _expectation_problem(kind: str, argument: Any, declared: str) -> str | None:
    if kind not in EXPECTATIONS:
        return f"unknown; known: {', '.join(EXPECTATIONS)}"
    # Said at load time: a check that cannot apply to the field's type would fail each run instead.
    if kind == "matches" and declared != "string":
        return f"applies to text, not to a field of type {declared}"
    if kind == "between" and not (declared in ("int", "double") or _DECIMAL.fullmatch(declared)):
        return f"applies to numbers, not to a field of type {declared}"
    if kind in ("not_null", "unique"):
        return None if isinstance(argument, bool) else "takes true or false"
    if kind == "between":
        ok = isinstance(argument, list) and len(argument) == 2 and any(v is not None for v in argument)
        numbers = all(v is None or isinstance(v, int | float) for v in argument) if ok else False
        return None if numbers else "takes [low, high], numbers, one of them may be null"
    if kind == "in":
        return None if isinstance(argument, list) and argument else "takes a list of the values allowed"
    try:
        re.compile(str(argument))
    except re.error as exc:
        return f"not a regular expression: {exc}"
    return None


def _only(where: str, spec: Any, allowed: set[str]) -> None:
    if not isinstance(spec, dict):
        raise InvalidDeclaration(f"{where}: expected a mapping of {', '.join(sorted(allowed))}")
    unknown = sorted(str(k) for k in spec if k not in allowed)
    if unknown:
        raise InvalidDeclaration(f"{where}: unknown {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
