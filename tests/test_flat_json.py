"""The fast JSON reader reads a batch exactly as pyarrow's reader would, or not at all."""

import json
import random

import pyarrow as pa
import pyarrow.json as pj
import pytest

from ingestion import flat_json

DECLARED = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("count", pa.int64()),
        pa.field("price", pa.float64()),
        pa.field("active", pa.bool_()),
    ]
)


def values(*records: str | bytes) -> pa.BinaryArray:
    return pa.array([r.encode() if isinstance(r, str) else r for r in records], pa.binary())


def pyarrow_reads(batch: pa.BinaryArray, schema: pa.Schema) -> pa.Table:
    lines = b"\n".join(batch.to_pylist())
    return pj.read_json(
        pa.BufferReader(lines),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
    )


def assert_same_as_pyarrow(batch: pa.BinaryArray, schema: pa.Schema = DECLARED) -> pa.Table:
    fast = flat_json.read(batch, schema, max_fields=1000)
    assert fast is not None, "the fast reader gave up on records it should read"
    expected = pyarrow_reads(batch, schema)
    assert fast.schema == expected.schema
    assert fast.equals(expected), (fast.to_pylist(), expected.to_pylist())
    return fast


def test_flat_records_come_out_as_pyarrow_reads_them_declared_fields_first():
    table = assert_same_as_pyarrow(
        values(
            '{"zip": "02134", "id": "a", "count": 3, "price": 2, "active": true, "note": null}',
            '{"id": "b", "price": 2.5, "extra": 1, "zip": "10001"}',
            '{"active": false, "extra": 2.5, "id": "c\\u00e9\\n\\"q\\"", "count": -0}',
            "{}",
        )
    )
    assert table.column_names == ["id", "count", "price", "active", "zip", "note", "extra"]
    assert table["extra"].type == pa.float64()  # an inferred integer column widens to double
    assert table["note"].type == pa.null()


def test_an_undeclared_column_that_starts_null_takes_the_type_of_its_first_value():
    assert_same_as_pyarrow(values('{"x": null}', '{"y": 1}', '{"x": "text"}', '{"x": null}'))


def test_escaped_keys_and_unicode_values_match():
    assert_same_as_pyarrow(values('{"a\\u0062": "\\ud83d\\ude00", "id": "ü"}', ' {"ab": "x"} '))


@pytest.mark.parametrize(
    "record",
    [
        '{"id": 1}',  # a declared string given a number
        '{"count": 1.5}',  # a declared integer given a fraction
        '{"count": "3"}',
        '{"active": 1}',
        '{"id": "a", "id": "b"}',  # a duplicate field
        '{"nested": {"a": 1}}',
        '{"list": [1, 2]}',
        '{"big": 9223372036854775808}',  # beyond int64: pyarrow reads it as a double from its text
        '{"when": "2024-01-01T10:00:00"}',  # pyarrow infers an undeclared date-like string as a timestamp
        '{"a": NaN}',
        '{"a": 1} {"a": 2}',  # two objects in one record
        "[1, 2]",
        '"text"',
        '{"a": 1',
        b'{"a": "\xff"}',  # not UTF-8
        '{"a": "tab\tinside"}',
        '{"a": 01}',
    ],
)
def test_records_only_pyarrow_can_judge_are_left_to_pyarrow(record):
    assert flat_json.read(values('{"id": "fine"}', record), DECLARED, max_fields=1000) is None


def test_a_column_mixing_strings_and_numbers_is_left_to_pyarrow():
    assert flat_json.read(values('{"x": "a"}', '{"x": 1}'), DECLARED, max_fields=1000) is None
    assert flat_json.read(values('{"x": 1}', '{"x": "a"}'), DECLARED, max_fields=1000) is None


def test_more_undeclared_fields_than_allowed_are_left_to_pyarrow():
    record = json.dumps({f"f{i}": i for i in range(10)})
    assert flat_json.read(values(record), DECLARED, max_fields=9) is None
    assert flat_json.read(values(record), DECLARED, max_fields=10) is not None


def test_a_contract_with_a_type_the_fast_reader_does_not_know_is_left_to_pyarrow():
    schema = pa.schema([pa.field("ts", pa.timestamp("ms"))])
    assert flat_json.read(values('{"ts": "2024-01-01"}'), schema, max_fields=1000) is None


def test_a_slice_of_a_larger_batch_reads_only_its_own_records():
    batch = values('{"id": "a"}', '{"id": "b", "count": 2}', '{"id": "c"}')[1:]
    assert assert_same_as_pyarrow(batch).to_pylist()[0]["id"] == "b"


def test_random_flat_records_match_pyarrow_whenever_the_fast_reader_reads_them():
    rng = random.Random(7)
    names = ["id", "count", "price", "active", "u1", "u2", "u3"]
    makers = {
        "id": lambda: rng.choice([None, "x", "", "1999-12-31x", "ünï", 'q"uote']),
        "count": lambda: rng.choice([None, 0, -5, 2**62]),
        "price": lambda: rng.choice([None, 1, 2.5, -0.0, 1e300, 123456789.123456789]),
        "active": lambda: rng.choice([None, True, False]),
        "u1": lambda: rng.choice([None, "a", "b"]),
        "u2": lambda: rng.choice([None, 1, 2, 3.25]),
        "u3": lambda: rng.choice([None, True]),
    }
    read = 0
    for _ in range(200):
        records = []
        for _ in range(rng.randrange(1, 30)):
            chosen = rng.sample(names, rng.randrange(0, len(names) + 1))
            records.append(json.dumps({name: makers[name]() for name in chosen}, ensure_ascii=rng.random() < 0.5))
        batch = values(*records)
        fast = flat_json.read(batch, DECLARED, max_fields=1000)
        if fast is not None:
            read += 1
            expected = pyarrow_reads(batch, DECLARED)
            assert fast.schema == expected.schema and fast.equals(expected), records
    assert read == 200  # none of these needs pyarrow


def test_a_batch_with_64_bit_offsets_is_left_to_pyarrow():
    values = pa.array([b'{"a": "x"}'], pa.large_binary())
    assert flat_json.read(values, pa.schema([]), 100) is None
