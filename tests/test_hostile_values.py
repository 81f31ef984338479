"""Hostile values on the real broker: each is stored or quarantined with its reason, and neither the
drain, the build, the shell, the docs nor verify stops over any of them."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from tests import lake_tables
from tests.cli import lakehouse
from tests.conftest import recreate_topics
from tests.test_drain_faults import assert_every_offset_once

pytestmark = pytest.mark.integration

SYMBOLS = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA"]


def tick(i: int) -> dict:
    return {
        "ts": f"2021-03-10 16:{i // 60 % 60:02d}:{i % 60:02d}.000",
        "symbol": SYMBOLS[i % 5],
        "price": 200.0 + i % 7,
    }


def text(i: int, **extra: object) -> bytes:
    return json.dumps({**tick(i), **extra}).encode()


def with_raw(i: int, tail: bytes) -> bytes:
    """A good tick with `tail` (JSON text json.dumps would not write) spliced in before its closing brace."""
    return text(i)[:-1] + b", " + tail + b"}"


def price_spelled(i: int, spelling: bytes) -> bytes:
    return text(i, price=1.5).replace(b'"price": 1.5', b'"price": ' + spelling)


# (key, value, where it must end: "raw" or the quarantine reason, or a prefix of it ending in "...").
HOSTILE: list[tuple[bytes, bytes, str]] = [
    (
        b"AAPL",
        with_raw(1, b'"extra": ' + b'{"a": ' * 1999 + b"1" + b"}" * 1999),
        'too deep: field "extra" nested 2,000 levels > 64',
    ),
    (b"AAPL", text(2, **{f"f{n}": n for n in range(3000)}), "too many fields: 3,003 (nested ones included) > 1,000"),
    (b"AAPL", text(3, **{"n" * 100_000: 1}), f'field name too long: "{"n" * 40}…" (100,000 characters > 256)'),
    (b"AAPL", price_spelled(4, b"NaN"), "not a finite number: price"),
    (b"AAPL", price_spelled(5, b"Infinity"), "not a finite number: price"),
    (b"AAPL", price_spelled(6, b"-Infinity"), "not a finite number: price"),
    (b"AAPL", text(7, price=[1.0, 2.0]), "wrong type: ..."),
    (b"AAPL", text(8, price={"amount": 1.0}), "wrong type: ..."),
    (b"AAPL", with_raw(9, b'"price": 2.0'), 'duplicate field: "price"'),
    (b"AAPL", with_raw(10, b'"note": "a\x01b\x1f"'), "not JSON: Invalid control character..."),
    # Finite, and within the gate's `price > 0`: stored, and the marts must still build.
    (b"AAPL", json.dumps({**tick(0), "symbol": "AAPL", "price": 1e308}).encode(), "raw"),
    (b"AAPL", text(11, note="x" * 900_000), "raw"),
    (b"AAPL", text(12, note="\x00\x01\x1f\x7f"), "raw"),
    (b"\xff\xfe not UTF-8", text(13), "raw"),
]


def test_a_mix_of_hostile_records_is_stored_or_quarantined_and_nothing_stops(kafka_env, lake_home):
    recreate_topics(kafka_env, "prices", partitions=1)
    good = [(SYMBOLS[i % 5].encode(), text(100 + i), "raw") for i in range(200)]
    records = good[:100] + HOSTILE + good[100:]
    producer = Producer({"bootstrap.servers": kafka_env})
    for key, value, _ in records:
        producer.produce("prices", key=key, value=value)
        producer.poll(0)
    assert producer.flush(30) == 0

    drained = lakehouse("drain", "prices", timeout=300)
    assert f"{len(HOSTILE) - 4} quarantined" in drained, drained
    assert_every_offset_once(lake_home, kafka_env)
    held = lake_tables.read_table(lake_home, "quarantine", "prices", ("_kafka_offset", "reason"))
    quarantined = dict(zip(held["_kafka_offset"].to_pylist(), held["reason"].to_pylist(), strict=True))
    stored = set(lake_tables.read_table(lake_home, "raw", "prices", ("_kafka_offset",))["_kafka_offset"].to_pylist())
    for offset, (_, _, expected) in enumerate(records):
        if expected == "raw":
            assert offset in stored, offset
        elif expected.endswith("..."):
            assert quarantined[offset].startswith(expected[:-3]), (offset, quarantined[offset])
        else:
            assert quarantined[offset] == expected, offset

    built = lakehouse("build", "prices", timeout=600)
    assert "prices_symbol_stats" in built, built
    stats = lakehouse("shell", "-c", "select count(*) from prices_symbol_stats")
    assert "5" in stats.split(), stats
    # AAPL's 1e308 tick overflows the sample variance: its deviation is null, the others' are not.
    deviations = lakehouse("shell", "-c", "select symbol from prices_symbol_stats where stddev_price is null")
    assert "AAPL" in deviations and "MSFT" not in deviations, deviations
    raw = lakehouse("shell", "-c", "select count(*) from raw_prices")
    assert str(len(stored)) in raw.split(), raw
    lakehouse("docs", "--no-serve", timeout=600)
    lakehouse("verify", "prices")


def test_an_undeclared_field_whose_type_drifts_between_batches_conforms_to_the_raw_tables_column_or_is_quarantined():
    import pyarrow as pa
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType

    from ingestion.drain import _conform_to_table

    table_schema = Schema(
        NestedField(1, "note", StringType()), NestedField(2, "qty", LongType()), NestedField(3, "rate", DoubleType())
    )
    batch = pa.table(
        {
            "note": pa.array([{"a": 1}, None]),  # the table has text: nested values become JSON text
            "qty": pa.array([1.0, 2.0]),  # whole doubles fit the table's long exactly
            "rate": pa.array([1, 2]),  # whole numbers into the table's double
            "seen_null": pa.nulls(2),  # all null and new: left out, it would fix no type yet
            "venue": pa.array([3, 4]),  # new: added by the commit as it comes
            "_kafka_offset": pa.array([10, 11], pa.int64()),
        }
    )
    conformed, misfits = _conform_to_table(batch, table_schema, "raw.t")
    assert misfits == {}
    assert conformed.column_names == ["note", "qty", "rate", "venue", "_kafka_offset"]
    assert conformed.to_pylist()[0] == {"note": '{"a": 1}', "qty": 1, "rate": 1.0, "venue": 3, "_kafka_offset": 10}

    # Neither 1.5 nor "007" fits a long without changing it: those records, and only those, are set apart.
    for values in (pa.array([1.5, 2.0]), pa.array(["007", None])):
        drifting = pa.table({"qty": values, "_kafka_offset": pa.array([20, 21], pa.int64())})
        conformed, misfits = _conform_to_table(drifting, table_schema, "raw.t")
        assert conformed["_kafka_offset"].to_pylist() == [21]
        assert list(misfits) == [20] and misfits[20].startswith("type drift: field qty is long in raw.t")


def test_fields_whose_names_differ_only_in_case_are_one_column_under_the_tables_spelling():
    import pyarrow as pa
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField

    from ingestion.drain import _conform_to_table

    batch = pa.table(
        {
            "NPI": pa.array([1, None]),  # the table spells it `npi`
            "average_Medicare_amt": pa.array([1.5, None]),
            "average_medicare_amt": pa.array([None, 2.5]),  # the next release's spelling
            "_kafka_offset": pa.array([0, 1], pa.int64()),
        }
    )
    conformed, misfits = _conform_to_table(batch, Schema(NestedField(1, "npi", LongType())), "raw.t")
    assert misfits == {}
    assert conformed.column_names == ["npi", "average_Medicare_amt", "_kafka_offset"]
    assert conformed["average_Medicare_amt"].to_pylist() == [1.5, 2.5]
