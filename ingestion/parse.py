"""Turn a batch of raw Kafka messages into an Arrow table that fits its contract, plus its quarantine.

The fast path parses the whole batch with one `pyarrow.json.read_json` call against the
contract's schema: no Python object per record. Only when that call fails (a poison record
somewhere) does the batch get split in halves until each bad record stands alone with its
reason; the good records still go through the fast path in large pieces.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ingestion.contracts import Contract

Headers = list[tuple[str, bytes | None]] | None

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("_topic", pa.string()),
        pa.field("_partition", pa.int32()),
        pa.field("_offset", pa.int64()),
        pa.field("_timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("_key", pa.binary()),
        pa.field("_value", pa.binary()),
        pa.field("_headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
        pa.field("reason", pa.string()),
    ]
)


@dataclass
class RawBatch:
    """Messages of one topic partition, column by column."""

    topic: str
    partition: int
    offsets: list[int]
    timestamps: list[int]  # Kafka record timestamps, ms since the epoch
    keys: list[bytes | None]
    values: list[bytes | None]
    headers_of: Callable[[int], Headers] = field(default=lambda _i: None)

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Parsed:
    table: pa.Table  # good records and tombstones, contract columns first, then metadata columns
    quarantine: pa.Table  # QUARANTINE_SCHEMA
    tombstones: int

    @property
    def rows(self) -> int:
        return self.table.num_rows


def _read(values: Sequence[bytes], schema: pa.Schema) -> pa.Table:
    joined = b"\n".join(values)
    if joined.count(b"\n") != len(values) - 1 or b"\r" in joined:
        # A pretty-printed record spans lines; outside strings a newline is plain JSON
        # whitespace, and inside a string it is invalid JSON either way.
        joined = b"\n".join(v.replace(b"\r", b" ").replace(b"\n", b" ") for v in values)
    table = pj.read_json(
        io.BytesIO(joined),
        read_options=pj.ReadOptions(use_threads=True, block_size=max(1 << 20, min(len(joined) + 1, 64 << 20))),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
    )
    if table.num_rows != len(values):
        raise ValueError(f"{len(values)} values gave {table.num_rows} rows")
    table.validate(full=True)  # the JSON reader lets invalid UTF-8 through into string columns
    return table


def _reason(value: bytes, error: Exception) -> str:
    """Why a single record could not be read, in words a person can act on."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc.reason} at byte {exc.start}"
    try:
        decoded = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(decoded, dict):
        return f"not a JSON object but a {type(decoded).__name__}"
    return f"wrong type: {error}"


def _parse_many(
    values: list[bytes], indices: list[int], schema: pa.Schema, bad: dict[int, str]
) -> list[tuple[list[int], pa.Table]]:
    """Parse values[indices]; on failure split in halves until each bad record stands alone."""
    pieces: list[tuple[list[int], pa.Table]] = []
    stack = [indices]
    while stack:
        part = stack.pop()
        try:
            pieces.append((part, _read([values[i] for i in part], schema)))
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as exc:
            if len(part) == 1:
                bad[part[0]] = _reason(values[part[0]], exc)
            else:
                middle = len(part) // 2
                stack.extend((part[middle:], part[:middle]))
    pieces.sort(key=lambda piece: piece[0][0])
    return pieces


def _metadata(batch: RawBatch, indices: list[int], tombstone: bool, contract: Contract) -> dict[str, pa.Array]:
    take = pa.array(indices, pa.int64())
    keys = pa.array(batch.keys, pa.binary()).take(take)
    try:
        key_text = keys.cast(pa.string())
    except pa.ArrowInvalid:
        key_text = pa.array(
            [None if k is None else k.decode("utf-8", "backslashreplace") for k in keys.to_pylist()], pa.string()
        )
    n = len(indices)
    columns = {
        "_topic": pa.array([batch.topic] * n, pa.string()),
        "_partition": pa.array([batch.partition] * n, pa.int32()),
        "_offset": pa.array(batch.offsets, pa.int64()).take(take),
        "_timestamp": pa.array(batch.timestamps, pa.int64()).take(take).cast(pa.timestamp("ms", tz="UTC")),
        "_key": key_text,
        "_tombstone": pa.array([tombstone] * n, pa.bool_()),
    }
    if contract.headers:
        found = [dict(batch.headers_of(i) or ()) for i in indices]
        for name in contract.headers:
            values = [None if h.get(name) is None else h[name].decode("utf-8", "replace") for h in found]
            columns[Contract.header_column(name)] = pa.array(values, pa.string())
    return columns


def _with_metadata(
    table: pa.Table, batch: RawBatch, indices: list[int], tombstone: bool, contract: Contract
) -> pa.Table:
    for name, column in _metadata(batch, indices, tombstone, contract).items():
        table = table.append_column(name, column)
    return table


def _quarantine(batch: RawBatch, bad: dict[int, str]) -> pa.Table:
    order = sorted(bad)
    return pa.table(
        {
            "_topic": [batch.topic] * len(order),
            "_partition": [batch.partition] * len(order),
            "_offset": [batch.offsets[i] for i in order],
            "_timestamp": [batch.timestamps[i] for i in order],
            "_key": [batch.keys[i] for i in order],
            "_value": [batch.values[i] for i in order],
            "_headers": [[{"key": k, "value": v} for k, v in (batch.headers_of(i) or [])] or None for i in order],
            "reason": [bad[i] for i in order],
        },
        schema=QUARANTINE_SCHEMA,
    )


# What a `raw_json` contract stores of a record: its JSON text, unparsed.
RAW_JSON_SCHEMA = pa.schema([pa.field("_value", pa.string())])


def _as_json_text(values: list[bytes], indices: list[int], bad: dict[int, str]) -> list[tuple[list[int], pa.Table]]:
    """Records kept as JSON text: only those that are not UTF-8 or not JSON are set aside."""
    kept, texts = [], []
    for i in indices:
        try:
            text = values[i].decode("utf-8")
            json.loads(text)
        except UnicodeDecodeError as exc:
            bad[i] = f"not UTF-8: {exc.reason} at byte {exc.start}"
            continue
        except ValueError as exc:
            bad[i] = f"not JSON: {exc}"
            continue
        kept.append(i)
        texts.append(text)
    return [(kept, pa.table({"_value": pa.array(texts, pa.string())}))] if kept else []


def parse(batch: RawBatch, contract: Contract, record_max_bytes: int) -> Parsed:
    values = batch.values
    schema = RAW_JSON_SCHEMA if contract.raw_json else contract.schema
    candidates = [
        i for i, v in enumerate(values) if v is not None and 0 < len(v) <= record_max_bytes and not v.isspace()
    ]
    tombstones = [i for i, v in enumerate(values) if v is None]
    bad: dict[int, str] = {}
    if len(candidates) + len(tombstones) != len(values):
        for i, v in enumerate(values):
            if v is not None and len(v) > record_max_bytes:
                bad[i] = f"over the size limit: {len(v)} bytes > {record_max_bytes}"
            elif v is not None and (not v or v.isspace()):
                bad[i] = "empty value"

    tables: list[pa.Table] = []
    if candidates:
        pieces = (
            _as_json_text(values, candidates, bad)  # type: ignore[arg-type]
            if contract.raw_json
            else _parse_many(values, candidates, schema, bad)  # type: ignore[arg-type]
        )
        for indices, table in pieces:
            table, indices = _drop_missing_required(table, indices, contract, bad)
            if indices:
                tables.append(_with_metadata(table, batch, indices, False, contract))
    if tombstones:
        empty = pa.table({f.name: pa.nulls(len(tombstones), f.type) for f in schema})
        tables.append(_with_metadata(empty, batch, tombstones, True, contract))

    if tables:
        table = pa.concat_tables(_unify_undeclared(tables, contract), promote_options="permissive")
        if len(tables) > 1:
            table = table.sort_by("_offset")
    else:
        table = _with_metadata(pa.table({f.name: pa.nulls(0, f.type) for f in schema}), batch, [], False, contract)
    return Parsed(table=table, quarantine=_quarantine(batch, bad), tombstones=len(tombstones))


def _unify_undeclared(tables: list[pa.Table], contract: Contract) -> list[pa.Table]:
    """The schema-drift rule for fields the contract does not declare: kept with the type JSON
    gives them, and where pieces of a batch disagree (a number here, a string there) kept as
    text, as DuckDB's `union_by_name` does across files. Declared fields have fixed types: a
    record that breaks one is quarantined as `wrong type`."""
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for f in table.schema:
            if f.name not in contract.schema.names and not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    conflicting = {name for name, seen in types.items() if len(seen) > 1 and not all(map(_is_number, seen))}
    if not conflicting:
        return tables
    return [_texts(table, conflicting) for table in tables]


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _texts(table: pa.Table, names: set[str]) -> pa.Table:
    for name in names & set(table.schema.names):
        table = table.set_column(table.schema.get_field_index(name), name, _as_text(table[name]))
    return table


def _as_text(column: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_nested(column.type):
        return pa.array([None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], pa.string())
    return pc.cast(column, pa.string())


def _drop_missing_required(
    table: pa.Table, indices: list[int], contract: Contract, bad: dict[int, str]
) -> tuple[pa.Table, list[int]]:
    if not contract.required:
        return table, indices
    masks = {name: pc.is_null(table[name]) for name in contract.required}
    any_missing = masks[contract.required[0]]
    for name in contract.required[1:]:
        any_missing = pc.or_(any_missing, masks[name])
    if not pc.any(any_missing).as_py():
        return table, indices
    flags = any_missing.to_pylist()
    for row, missing in enumerate(flags):
        if missing:
            fields = [name for name in contract.required if masks[name][row].as_py()]
            bad[indices[row]] = "required field missing: " + ", ".join(fields)
    keep = [i for i, missing in zip(indices, flags, strict=True) if not missing]
    return table.filter(pc.invert(any_missing)), keep


def event_dates(table: pa.Table, contract: Contract) -> pa.Array:
    """The date that places each row in the lake: its event time, else its Kafka timestamp (UTC)."""
    kafka_date = pc.cast(table["_timestamp"], pa.date32())
    if contract.event_time is None:
        return kafka_date.combine_chunks() if isinstance(kafka_date, pa.ChunkedArray) else kafka_date
    event = table[contract.event_time]
    if pa.types.is_timestamp(event.type):
        event_date = pc.cast(event, pa.date32())
    else:
        event_date = pc.cast(pc.strptime(event, format="%Y-%m-%d", unit="s", error_is_null=True), pa.date32())
    dates = pc.coalesce(event_date, kafka_date)
    return dates.combine_chunks() if isinstance(dates, pa.ChunkedArray) else dates
