"""Turn a batch of raw Kafka messages into an Arrow table that fits its contract, plus its quarantine.

The fast path parses the whole batch with one `pyarrow.json.read_json` call against the
contract's schema: no Python object per record. Only when that call fails (a poison record
somewhere) does the batch get split in halves until each bad record stands alone with its
reason; the good records still go through the fast path in large pieces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ingestion.contracts import Contract
from ingestion.records import RawBatch

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
class Parsed:
    table: pa.Table  # good records and tombstones, contract columns first, then metadata columns
    quarantine: pa.Table  # QUARANTINE_SCHEMA
    tombstones: int

    @property
    def rows(self) -> int:
        return self.table.num_rows


def _lines(values: pa.BinaryArray) -> pa.Buffer:
    """The values as newline-delimited text, joined in Arrow."""
    one_list = pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)
    return pc.binary_join(one_list, b"\n").buffers()[2]


# Blocks of a few MiB let the JSON reader parse a batch on all cores; a record must fit in one.
_BLOCK_BYTES = 4 << 20


def _read(values: pa.BinaryArray, schema: pa.Schema) -> pa.Table:
    block_size = max(_BLOCK_BYTES, 2 * (pc.max(pc.binary_length(values)).as_py() or 0) + 2)
    try:
        return _read_lines(_lines(values), len(values), schema, block_size)
    except (pa.ArrowInvalid, ValueError):
        if not pc.any(pc.match_substring_regex(values, r"[\r\n]")).as_py():
            raise
    # A pretty-printed record spans lines: outside strings a newline is plain JSON whitespace,
    # and inside a string it is invalid JSON either way.
    flat = pc.replace_substring_regex(values, r"[\r\n]", " ")
    return _read_lines(_lines(flat), len(values), schema, block_size)


def _read_lines(lines: pa.Buffer, count: int, schema: pa.Schema, block_size: int) -> pa.Table:
    table = pj.read_json(
        pa.BufferReader(lines),
        read_options=pj.ReadOptions(use_threads=True, block_size=block_size),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
    )
    if table.num_rows != count:
        raise ValueError(f"{count} values gave {table.num_rows} rows")
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


Pieces = list[tuple[pa.Int64Array, pa.Table]]  # (positions in the batch, their rows)


def _parse_many(values: pa.BinaryArray, indices: pa.Int64Array, schema: pa.Schema, bad: dict[int, str]) -> Pieces:
    """Parse values[indices]; on failure split in halves until each bad record stands alone."""
    pieces: Pieces = []
    stack = [indices]
    while stack:
        part = stack.pop()
        chosen = values if len(part) == len(values) else values.take(part)
        try:
            pieces.append((part, _read(chosen, schema)))
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as exc:
            if len(part) == 1:
                bad[part[0].as_py()] = _reason(chosen[0].as_py(), exc)
            else:
                middle = len(part) // 2
                stack.extend((part.slice(middle), part.slice(0, middle)))
    pieces.sort(key=lambda piece: piece[0][0].as_py())
    return pieces


def _metadata(batch: RawBatch, indices: pa.Int64Array, tombstone: bool, contract: Contract) -> dict[str, pa.Array]:
    def chosen(array: pa.Array) -> pa.Array:
        return array if len(indices) == len(batch) else array.take(indices)

    key_text = _decoded(chosen(batch.keys), errors="backslashreplace")
    n = len(indices)
    columns = {
        "_topic": pa.array([batch.topic] * n, pa.string()),
        "_partition": pa.array([batch.partition] * n, pa.int32()),
        "_offset": chosen(batch.offsets),
        "_timestamp": chosen(batch.timestamps).cast(pa.timestamp("ms", tz="UTC")),
        "_key": key_text,
        "_tombstone": pa.array([tombstone] * n, pa.bool_()),
    }
    for name in contract.headers:
        columns[Contract.header_column(name)] = _decoded(chosen(batch.header_values(name)), errors="replace")
    return columns


def _decoded(values: pa.BinaryArray, errors: str) -> pa.StringArray:
    """Bytes as text; the rare value that is not UTF-8 decoded with `errors` (a codec error handler)."""
    try:
        return values.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([None if v is None else v.decode("utf-8", errors) for v in values.to_pylist()], pa.string())


def _with_metadata(
    table: pa.Table, batch: RawBatch, indices: pa.Int64Array, tombstone: bool, contract: Contract
) -> pa.Table:
    for name, column in _metadata(batch, indices, tombstone, contract).items():
        table = table.append_column(name, column)
    return table


def _quarantine(batch: RawBatch, bad: dict[int, str]) -> pa.Table:
    order = pa.array(sorted(bad), pa.int64())
    headers = batch.headers_of(sorted(bad)) if bad else {}
    return pa.table(
        {
            "_topic": pa.array([batch.topic] * len(order), pa.string()),
            "_partition": pa.array([batch.partition] * len(order), pa.int32()),
            "_offset": batch.offsets.take(order),
            "_timestamp": batch.timestamps.take(order).cast(pa.timestamp("ms", tz="UTC")),
            "_key": batch.keys.take(order),
            "_value": batch.values.take(order),
            "_headers": [[{"key": k, "value": v} for k, v in headers.get(i, [])] or None for i in sorted(bad)],
            "reason": pa.array([bad[i] for i in sorted(bad)], pa.string()),
        },
        schema=QUARANTINE_SCHEMA,
    )


# What a `raw_json` contract stores of a record: its JSON text, unparsed.
RAW_JSON_SCHEMA = pa.schema([pa.field("_value", pa.string())])


def _as_json_text(values: pa.BinaryArray, indices: pa.Int64Array, bad: dict[int, str]) -> Pieces:
    """Records kept as JSON text: only those that are not UTF-8 or not JSON are set aside."""
    kept, texts = [], []
    for i, value in zip(indices.to_pylist(), values.take(indices).to_pylist(), strict=True):
        try:
            text = value.decode("utf-8")
            json.loads(text)
        except UnicodeDecodeError as exc:
            bad[i] = f"not UTF-8: {exc.reason} at byte {exc.start}"
            continue
        except ValueError as exc:
            bad[i] = f"not JSON: {exc}"
            continue
        kept.append(i)
        texts.append(text)
    return [(pa.array(kept, pa.int64()), pa.table({"_value": pa.array(texts, pa.string())}))] if kept else []


def _set_aside(values: pa.BinaryArray, record_max_bytes: int, bad: dict[int, str]) -> pa.Int64Array:
    """Positions of the values worth parsing; the empty and the oversized go to `bad` with their reason."""
    lengths = pc.binary_length(values)
    # Only a value whose first byte is whitespace can be blank: few enough to look at one by one.
    maybe_blank = pc.is_in(pc.binary_slice(values, 0, 1), value_set=pa.array([b" ", b"\t", b"\n", b"\r"]))
    suspects = pc.or_(pc.or_(pc.equal(lengths, 0), pc.greater(lengths, record_max_bytes)), maybe_blank)
    for i in pc.indices_nonzero(pc.fill_null(suspects, False)).to_pylist():
        value = values[i].as_py()
        if len(value) > record_max_bytes:
            bad[i] = f"over the size limit: {len(value)} bytes > {record_max_bytes}"
        elif not value or value.isspace():
            bad[i] = "empty value"
    kept = values.is_valid().to_numpy(zero_copy_only=False)
    kept[list(bad)] = False
    return pc.indices_nonzero(pa.array(kept))


def parse(batch: RawBatch, contract: Contract, record_max_bytes: int) -> Parsed:
    values = batch.values
    schema = RAW_JSON_SCHEMA if contract.raw_json else contract.schema
    bad: dict[int, str] = {}
    candidates = _set_aside(values, record_max_bytes, bad)
    tombstones = pc.indices_nonzero(values.is_null())

    tables: list[pa.Table] = []
    if len(candidates):
        pieces = (
            _as_json_text(values, candidates, bad)
            if contract.raw_json
            else _parse_many(values, candidates, schema, bad)
        )
        for indices, table in pieces:
            table, indices = _drop_missing_required(table, indices, contract, bad)
            if len(indices):
                tables.append(_with_metadata(table, batch, indices, False, contract))
    if len(tombstones):
        empty = pa.table({f.name: pa.nulls(len(tombstones), f.type) for f in schema})
        tables.append(_with_metadata(empty, batch, tombstones, True, contract))

    if tables:
        table = pa.concat_tables(_unify_undeclared(tables, contract), promote_options="permissive")
        if len(tables) > 1:
            table = table.sort_by("_offset")
    else:
        empty = pa.table({f.name: pa.nulls(0, f.type) for f in schema})
        table = _with_metadata(empty, batch, pa.array([], pa.int64()), False, contract)
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
    table: pa.Table, indices: pa.Int64Array, contract: Contract, bad: dict[int, str]
) -> tuple[pa.Table, pa.Int64Array]:
    if not contract.required:
        return table, indices
    masks = {name: pc.is_null(table[name]) for name in contract.required}
    any_missing = masks[contract.required[0]]
    for name in contract.required[1:]:
        any_missing = pc.or_(any_missing, masks[name])
    if not pc.any(any_missing).as_py():
        return table, indices
    for row in pc.indices_nonzero(any_missing).to_pylist():
        fields = [name for name in contract.required if masks[name][row].as_py()]
        bad[indices[row].as_py()] = "required field missing: " + ", ".join(fields)
    keep = pc.invert(any_missing)
    return table.filter(keep), indices.filter(keep)


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
