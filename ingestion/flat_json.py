"""The drain's fast path for JSON records: flat objects read by simdjson, or nothing.

pyarrow's JSON reader costs about 5 µs for a 460-byte record on some processors, most of a
drain's time. The C++ module `_flat_json` reads flat records (strings, numbers, booleans, nulls)
several times faster into the very table pyarrow would give: the same columns in the same order,
the same types (a declared field's, or the one pyarrow infers for an undeclared one) and values.
Wherever it cannot be sure of that (a nested value, a type it does not know, a value that does not
fit its column, a string pyarrow would infer as a timestamp, a duplicate field, more fields than
allowed, a record that is not one JSON object) it reads nothing, and pyarrow reads the batch, so
what is stored and quarantined, and why, never depends on which reader ran.
"""

from __future__ import annotations

import functools

import pyarrow as pa

# The declared types the fast path reads, by the kind letter the C++ module uses.
_KINDS = {pa.string(): "s", pa.int64(): "i", pa.float64(): "d", pa.bool_(): "b"}
_TYPES = {"s": pa.string(), "i": pa.int64(), "d": pa.float64(), "b": pa.bool_(), "n": pa.null()}


@functools.cache
def _module():
    try:
        from ingestion import _flat_json
    except ImportError:  # not built here: pyarrow reads everything, as it did before the fast path
        return None
    return _flat_json


def read(values: pa.BinaryArray, schema: pa.Schema, max_fields: int) -> pa.Table | None:
    """The records as pyarrow's JSON reader would read them against `schema` (undeclared fields
    inferred), or None where only pyarrow can say."""
    module = _module()
    declared = [(f.name, _KINDS.get(f.type)) for f in schema]
    # The module reads 32-bit offsets: a large-binary batch is pyarrow's.
    if module is None or values.type != pa.binary() or values.null_count or any(k is None for _, k in declared):
        return None
    _, offsets, data = values.buffers()
    offsets = memoryview(offsets).cast("B")[values.offset * 4 : (values.offset + len(values) + 1) * 4]
    columns = module.read(offsets, memoryview(data) if data is not None else b"", len(values), declared, max_fields)
    if columns is None:
        return None
    fields, arrays = [], []
    for name, kind, nulls, valid, buffer, text in columns:
        type_ = _TYPES[kind]
        if kind == "n":
            array = pa.nulls(len(values))
        else:
            buffers = [pa.py_buffer(valid) if valid is not None else None, pa.py_buffer(buffer)]
            if text is not None:
                buffers.append(pa.py_buffer(text))
            array = pa.Array.from_buffers(type_, len(values), buffers, null_count=nulls)
        fields.append(schema.field(name) if name in schema.names else pa.field(name, type_))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
