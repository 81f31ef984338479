"""Turn a batch of raw Kafka messages into an Arrow table that fits its contract, plus its quarantine.

The fast path parses the whole batch in one call against the contract's schema, with no Python
object per record: simdjson's, where the records are flat objects it reads exactly as pyarrow
would (`ingestion.flat_json`), else `pyarrow.json.read_json`. Only when that call fails (a poison record
somewhere) does the batch get split in halves until each bad record stands alone with its
reason; the good records still go through the fast path in large pieces.

Limits on what a record may carry (`RecordLimits`: nesting depth, fields, name length) cost the
fast path one look at each parsed piece's Arrow schema; a piece whose schema breaks one is split
like a failed piece, so only the records that break it are quarantined. The one check made
before parsing is for nesting deep enough to crash pyarrow's reader, and it looks only at values
long enough to nest that deep.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ingestion import flat_json
from ingestion.config import RecordLimits
from ingestion.contracts import Contract
from ingestion.records import RawBatch

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("_topic", pa.string()),
        pa.field("_kafka_partition", pa.int32()),
        pa.field("_kafka_offset", pa.int64()),
        pa.field("_kafka_timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("_kafka_key", pa.binary()),
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


def _read(values: pa.BinaryArray, schema: pa.Schema, max_fields: int) -> pa.Table:
    fast = flat_json.read(values, schema, max_fields)
    if fast is not None:
        return fast
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


class BeyondLimit(ValueError):
    """Records that carry more than the `RecordLimits` allow; for a single record, its reason."""


def _reason(value: bytes, error: Exception, contract: Contract) -> str:
    """Why a single record could not be read, in words a person can act on."""
    if isinstance(error, BeyondLimit):
        return str(error)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc.reason} at byte {exc.start}"
    duplicates: list[str] = []
    try:
        decoded = json.loads(text, object_pairs_hook=lambda pairs: _no_duplicates(pairs, duplicates))
    except RecursionError:  # deeper than Python's own JSON reader goes, yet within the depth limit
        return f"wrong type: {error}"
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(decoded, dict):
        return f"not a JSON object but a {type(decoded).__name__}"
    if duplicates:
        return "duplicate field: " + ", ".join(f'"{_shown(name)}"' for name in dict.fromkeys(duplicates))
    # pyarrow reads NaN and Infinity into a float field but refuses them in an integer or decimal one.
    non_finite = [
        f.name
        for f in contract.schema
        if _is_numeric(f.type) and isinstance(decoded.get(f.name), float) and not math.isfinite(decoded[f.name])
    ]
    if non_finite:
        return "not a finite number: " + ", ".join(non_finite)
    return f"wrong type: {error}"


def _no_duplicates(pairs: list[tuple[str, object]], duplicates: list[str]) -> dict:
    seen: dict = {}
    for name, value in pairs:
        if name in seen:
            duplicates.append(name)
        seen[name] = value
    return seen


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _shown(name: str, chars: int = 40) -> str:
    """A field name short enough for a reason: a 100,000-character name shows its start."""
    return name if len(name) <= chars else name[:chars] + "…"


def _beyond_limits(schema: pa.Schema, limits: RecordLimits) -> str | None:
    """Which limit the records of a parsed piece break, judged from its Arrow schema alone.

    Nesting is counted as in the JSON text: the record's own object is level 1, and each struct
    or list inside it one level more; fields are the struct fields at every level.
    """
    fields = 0
    deepest, deepest_field = 1, ""
    stack = [(f.name, f.type, 1, f.name) for f in schema]  # (name or None for a list's items, type, level, top field)
    while stack:
        name, type_, level, top = stack.pop()
        if name is not None:
            fields += 1
            if len(name) > limits.field_name_max_chars:
                return f'field name too long: "{_shown(name)}" ({len(name):,} characters > {limits.field_name_max_chars:,})'
        if pa.types.is_nested(type_):
            if level + 1 > deepest:
                deepest, deepest_field = level + 1, top
            for i in range(type_.num_fields):
                child = type_.field(i)
                stack.append((child.name if pa.types.is_struct(type_) else None, child.type, level + 1, top))
    if deepest > limits.max_depth:
        return _too_deep(deepest, deepest_field, limits)
    if fields > limits.max_fields:
        return f"too many fields: {fields:,} (nested ones included) > {limits.max_fields:,}"
    return None


def _too_deep(depth: int, field: str | None, limits: RecordLimits) -> str:
    where = f'field "{_shown(field)}" ' if field else ""
    return f"too deep: {where}nested {depth:,} levels > {limits.max_depth:,}"


Pieces = list[tuple[pa.Int64Array, pa.Table]]  # (positions in the batch, their rows)


def _parse_many(
    values: pa.BinaryArray, indices: pa.Int64Array, contract: Contract, limits: RecordLimits, bad: dict[int, str]
) -> Pieces:
    """Parse values[indices]; on failure, or a piece beyond the limits, split in halves until
    each bad record stands alone."""
    pieces: Pieces = []
    stack = [indices]
    while stack:
        part = stack.pop()
        chosen = values if len(part) == len(values) else values.take(part)
        try:
            table = _read(chosen, contract.schema, limits.max_fields)
            beyond = _beyond_limits(table.schema, limits)
            if beyond:
                raise BeyondLimit(beyond)
            pieces.append((part, table))
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as exc:
            if len(part) == 1:
                bad[part[0].as_py()] = _reason(chosen[0].as_py(), exc, contract)
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
        "_topic": pa.repeat(pa.scalar(batch.topic, pa.string()), n),
        "_kafka_partition": pa.repeat(pa.scalar(batch.partition, pa.int32()), n),
        "_kafka_offset": chosen(batch.offsets),
        "_kafka_timestamp": chosen(batch.timestamps).cast(pa.timestamp("ms", tz="UTC")),
        "_kafka_key": key_text,
        "_tombstone": pa.repeat(pa.scalar(tombstone, pa.bool_()), n),
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
    metadata = _metadata(batch, indices, tombstone, contract)
    if not table.num_columns:  # a contract with no declared field: a table of no column has no rows
        return pa.table(metadata)
    for name, column in metadata.items():
        table = table.append_column(name, column)
    return table


def quarantined(batch: RawBatch, bad: dict[int, str]) -> pa.Table:
    """The records of `batch` at the indices of `bad` as quarantine rows, each with its reason."""
    order = pa.array(sorted(bad), pa.int64())
    headers = batch.headers_of(sorted(bad)) if bad else {}
    return pa.table(
        {
            "_topic": pa.array([batch.topic] * len(order), pa.string()),
            "_kafka_partition": pa.array([batch.partition] * len(order), pa.int32()),
            "_kafka_offset": batch.offsets.take(order),
            "_kafka_timestamp": batch.timestamps.take(order).cast(pa.timestamp("ms", tz="UTC")),
            "_kafka_key": batch.keys.take(order),
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
        except RecursionError:
            bad[i] = "too deep: nested deeper than Python's JSON reader goes"
            continue
        except ValueError as exc:
            bad[i] = f"not JSON: {exc}"
            continue
        kept.append(i)
        texts.append(text)
    return [(pa.array(kept, pa.int64()), pa.table({"_value": pa.array(texts, pa.string())}))] if kept else []


# pyarrow's JSON reader overflows its stack near 16,000 levels (a segfault) and takes a second
# at 5,000; up to this depth it reads a record in a fraction of a second, and the limit is then
# judged from the parsed schema. Deeper values are measured before it sees them; as a value
# needs a byte per level, records shorter than this (nearly all) cost nothing.
_READER_SAFE_DEPTH = 2_000

# A JSON text's strings (skipped, a key marked by its colon) and its runs of brackets.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?|[\[{]+|[\]}]+')


def _nesting(value: bytes) -> tuple[int, str | None]:
    """The nesting depth of a JSON text (its outer object level 1) and the top-level field where it
    is deepest; brackets inside strings do not count."""
    depth = deepest = 0
    field = deepest_field = None
    for match in _TOKENS.finditer(value):
        token = match.group()
        if token[0] == 0x22:  # a string
            if match.group(1) and depth == 1:
                field = token[1 : token.rindex(b'"')].decode("utf-8", "replace")
        elif token[0] in b"[{":
            depth += len(token)
            if depth > deepest:
                deepest, deepest_field = depth, field
        else:
            depth -= len(token)
    return deepest, deepest_field


def _set_aside_deep(
    values: pa.BinaryArray, lengths: pa.Array, from_depth: int, limits: RecordLimits, bad: dict[int, str]
) -> None:
    """Quarantine the values nested deeper than the limit among those that could nest `from_depth`
    levels: a level takes a byte, an opening bracket (the oversized come with length 0)."""
    long = pc.indices_nonzero(pc.fill_null(pc.greater_equal(lengths, from_depth), False))
    if not len(long):
        return
    chosen = values if len(long) == len(values) else values.take(long)
    # Bracket positions counted per value: one pass in numpy (`| 0x20` turns `[` into `{` and
    # nothing else into either).
    offsets = np.frombuffer(chosen.buffers()[1], np.int32, len(chosen) + 1, chosen.offset * 4)
    data = np.frombuffer(chosen.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    positions = np.flatnonzero((data | 0x20) == 0x7B) + offsets[0]
    brackets = np.bincount(np.searchsorted(offsets, positions, side="right") - 1, minlength=len(chosen))
    for position in np.flatnonzero(brackets >= from_depth).tolist():
        depth, field = _nesting(chosen[position].as_py())
        if depth > limits.max_depth:
            bad[long[position].as_py()] = _too_deep(depth, field, limits)


def _set_aside(
    values: pa.BinaryArray,
    record_max_bytes: int,
    bad: dict[int, str],
    limits: RecordLimits,
    deep_from: int,
) -> pa.Int64Array:
    """Positions of the values worth parsing; the empty, the oversized and those nested too deep
    for the reader go to `bad` with their reason."""
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
    _set_aside_deep(values, pc.if_else(pc.greater(lengths, record_max_bytes), 0, lengths), deep_from, limits, bad)
    kept = values.is_valid().to_numpy(zero_copy_only=False)
    kept[list(bad)] = False
    return pc.indices_nonzero(pa.array(kept))


_DEFAULT_LIMITS = RecordLimits()


def parse(batch: RawBatch, contract: Contract, record_max_bytes: int, limits: RecordLimits = _DEFAULT_LIMITS) -> Parsed:
    values = batch.values
    schema = RAW_JSON_SCHEMA if contract.raw_json else contract.schema
    bad: dict[int, str] = {}
    # A raw_json record is kept as text, with no schema to judge its depth from: every value that
    # could break the limit is measured (it is read one by one in Python anyway).
    deep_from = min(limits.max_depth + 1, _READER_SAFE_DEPTH) if contract.raw_json else _READER_SAFE_DEPTH
    candidates = _set_aside(values, record_max_bytes, bad, limits, deep_from)
    tombstones = pc.indices_nonzero(values.is_null())

    tables: list[pa.Table] = []
    if len(candidates):
        pieces = (
            _as_json_text(values, candidates, bad)
            if contract.raw_json
            else _parse_many(values, candidates, contract, limits, bad)
        )
        for indices, table in pieces:
            table, indices = _drop_missing_required(table, indices, contract, bad)
            table, indices = _drop_non_finite(table, indices, contract, bad)
            if len(indices):
                tables.append(_with_metadata(table, batch, indices, False, contract))
    if len(tombstones):
        empty = pa.table({f.name: pa.nulls(len(tombstones), f.type) for f in schema})
        tables.append(_with_metadata(empty, batch, tombstones, True, contract))

    if tables:
        table = pa.concat_tables(_unify_undeclared(tables, contract), promote_options="permissive")
        if len(tables) > 1:
            table = table.sort_by("_kafka_offset")
    else:
        empty = pa.table({f.name: pa.nulls(0, f.type) for f in schema})
        table = _with_metadata(empty, batch, pa.array([], pa.int64()), False, contract)
    return Parsed(table=table, quarantine=quarantined(batch, bad), tombstones=len(tombstones))


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


def text_column(column: pa.ChunkedArray) -> pa.Array:
    """A column's values as text, nested ones as JSON: how a field whose type drifts is kept."""
    return _as_text(column)


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


def _drop_non_finite(
    table: pa.Table, indices: pa.Int64Array, contract: Contract, bad: dict[int, str]
) -> tuple[pa.Table, pa.Int64Array]:
    """NaN, Infinity and -Infinity, which pyarrow's reader takes into a float field, break the
    contract of a declared number: no sum, mean or deviation over them means anything."""
    names = [f.name for f in contract.schema if pa.types.is_floating(f.type) and f.name in table.column_names]
    if not names:
        return table, indices
    masks = {name: pc.fill_null(pc.invert(pc.is_finite(table[name])), False) for name in names}
    any_bad = masks[names[0]]
    for name in names[1:]:
        any_bad = pc.or_(any_bad, masks[name])
    if not pc.any(any_bad).as_py():
        return table, indices
    for row in pc.indices_nonzero(any_bad).to_pylist():
        fields = [name for name in names if masks[name][row].as_py()]
        bad[indices[row].as_py()] = "not a finite number: " + ", ".join(fields)
    keep = pc.invert(any_bad)
    return table.filter(keep), indices.filter(keep)


def partition_column(contract: Contract) -> str:
    """The column whose day partitions the raw table (Iceberg's hidden partitioning): the event
    time where the records carry one as a timestamp, else the Kafka timestamp."""
    if contract.event_time and pa.types.is_timestamp(contract.schema.field(contract.event_time).type):
        return contract.event_time
    return "_kafka_timestamp"


def partition_days(table: pa.Table, contract: Contract) -> pa.Array:
    """Each row's day in the raw table's partitioning (null for a row without an event time)."""
    days = pc.cast(table[partition_column(contract)], pa.date32())
    return days.combine_chunks() if isinstance(days, pa.ChunkedArray) else days


def quarantine_days(table: pa.Table) -> pa.Array:
    """Each quarantined record's day in the quarantine table's partitioning: its Kafka timestamp's."""
    days = pc.cast(table["_kafka_timestamp"], pa.date32())
    return days.combine_chunks() if isinstance(days, pa.ChunkedArray) else days


def raw_schema(contract: Contract) -> pa.Schema:
    """The columns of the contract's raw table, as the drain writes them."""
    declared = list(RAW_JSON_SCHEMA) if contract.raw_json else list(contract.schema)
    metadata = [
        pa.field("_topic", pa.string()),
        pa.field("_kafka_partition", pa.int32()),
        pa.field("_kafka_offset", pa.int64()),
        pa.field("_kafka_timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("_kafka_key", pa.string()),
        pa.field("_tombstone", pa.bool_()),
    ]
    headers = [pa.field(Contract.header_column(name), pa.string()) for name in contract.headers]
    return pa.schema([*declared, *metadata, *headers, pa.field("_generation", pa.int32())])
