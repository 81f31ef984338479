"""The contract parser: good records take the fast path, every bad one is quarantined with its reason."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from ingestion.config import RecordLimits
from ingestion.contracts import Contract
from ingestion.parse import QUARANTINE_SCHEMA, parse, partition_column, partition_days
from ingestion.records import RawBatch
from ingestion.streams.prices import CONTRACT

GOOD = {"ts": "2021-03-10 16:21:32.000", "symbol": "AAPL", "price": 238.32}


def batch(*values: bytes | None, start: int = 100) -> RawBatch:
    n = len(values)
    return RawBatch.of(
        "prices",
        2,
        offsets=range(start, start + n),
        values=values,
        keys=[b"AAPL"] * n,
        timestamps=[1_615_393_292_000 + i for i in range(n)],
        headers={i: [("trace", b"abc")] for i in range(n)},
    )


def good(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_a_clean_batch_becomes_typed_rows_with_kafka_metadata():
    parsed = parse(batch(good(), good(price=1.5)), CONTRACT, record_max_bytes=10_000)
    assert parsed.rows == 2
    assert parsed.quarantine.num_rows == 0
    row = parsed.table.to_pylist()[0]
    assert row["symbol"] == "AAPL" and row["price"] == 238.32
    assert row["ts"].isoformat() == "2021-03-10T16:21:32"
    assert (row["_topic"], row["_kafka_partition"], row["_kafka_offset"], row["_kafka_key"]) == (
        "prices",
        2,
        100,
        "AAPL",
    )
    assert row["_tombstone"] is False


def test_each_kind_of_poison_is_quarantined_with_its_reason_and_the_rest_is_kept():
    values = [
        good(),
        b"not json at all",
        b'{"ts": "2021-03-10 16:21:32.000", "symbol": "A\xff", "price": 1}',
        good(price="expensive"),
        json.dumps({"symbol": "AAPL", "price": 3.0}).encode(),
        b"[1, 2, 3]",
        b"",
        b"x" * 600,
        good(ts="yesterday"),
        good(symbol="MSFT"),
    ]
    parsed = parse(batch(*values), CONTRACT, record_max_bytes=500)
    reasons = dict(
        zip(parsed.quarantine["_kafka_offset"].to_pylist(), parsed.quarantine["reason"].to_pylist(), strict=True)
    )
    assert parsed.table["_kafka_offset"].to_pylist() == [100, 109]
    assert reasons[101].startswith("not JSON")
    assert reasons[102].startswith("not UTF-8")
    assert reasons[103].startswith("wrong type")
    assert reasons[104] == "required field missing: ts"
    assert reasons[105].startswith("not a JSON object")
    assert reasons[106] == "empty value"
    assert reasons[107].startswith("over the size limit")
    assert reasons[108].startswith("wrong type")
    assert len(reasons) == 8


def test_quarantined_records_keep_their_raw_bytes_key_and_headers():
    parsed = parse(batch(b"\x00\x01garbage"), CONTRACT, record_max_bytes=500)
    assert parsed.quarantine.schema == QUARANTINE_SCHEMA
    record = parsed.quarantine.to_pylist()[0]
    assert record["_value"] == b"\x00\x01garbage"
    assert record["_kafka_key"] == b"AAPL"
    assert record["_headers"] == [{"key": "trace", "value": b"abc"}]
    assert record["_kafka_offset"] == 100


def test_tombstones_are_kept_as_flagged_rows_in_offset_order():
    parsed = parse(batch(good(), None, good()), CONTRACT, record_max_bytes=500)
    assert parsed.table["_kafka_offset"].to_pylist() == [100, 101, 102]
    assert parsed.table["_tombstone"].to_pylist() == [False, True, False]
    assert parsed.tombstones == 1
    assert parsed.table["price"][1].as_py() is None


def test_a_tombstone_of_a_stream_with_no_declared_field_is_a_flagged_row_too():
    from ingestion.streams import cms

    record = json.dumps({"npi": "1003000126"}).encode()
    for values in ([record, None], [None]):  # beside a record, and alone in its batch
        n = len(values)
        year = {i: [(cms.DATA_YEAR_HEADER, b"2017")] for i in range(n)}
        records = RawBatch.of(cms.CONTRACT.topic, 1, offsets=range(n), values=values, keys=[b"k"] * n, headers=year)
        parsed = parse(records, cms.CONTRACT, record_max_bytes=10_000)
        assert parsed.table["_tombstone"].to_pylist() == [False] * (n - 1) + [True] and parsed.tombstones == 1
        assert parsed.table["_header_data_year"].to_pylist() == ["2017"] * n


def test_a_pretty_printed_record_spanning_lines_is_read_as_one_record():
    pretty = json.dumps(GOOD, indent=2).encode()
    parsed = parse(batch(pretty, good()), CONTRACT, record_max_bytes=500)
    assert parsed.rows == 2 and parsed.quarantine.num_rows == 0


def test_whitespace_around_a_record_is_json_whitespace_and_a_blank_record_is_empty():
    parsed = parse(batch(b"  " + good() + b"\n", b" \t\r\n", good()), CONTRACT, record_max_bytes=500)
    assert parsed.table["_kafka_offset"].to_pylist() == [100, 102]
    assert parsed.quarantine["reason"].to_pylist() == ["empty value"]


def test_a_record_larger_than_a_parse_block_is_read_whole():
    big = good(symbol="A" * (5 << 20))
    parsed = parse(batch(good(), big, good()), CONTRACT, record_max_bytes=8 << 20)
    assert parsed.rows == 3 and len(parsed.table["symbol"][1].as_py()) == 5 << 20


def test_a_new_field_is_kept_and_a_missing_optional_field_is_null():
    parsed = parse(batch(good(venue="XNAS")), CONTRACT, record_max_bytes=500)
    assert parsed.table["venue"].to_pylist() == ["XNAS"]


def test_schema_drift_new_fields_kept_missing_ones_null_and_conflicting_undeclared_types_kept_as_text():
    parsed = parse(
        batch(good(venue="XNAS", lot=100), good(lot="odd"), b"not json", good(lot=[1, 2]), good(lot=7.5)),
        CONTRACT,
        record_max_bytes=500,
    )
    assert parsed.quarantine.num_rows == 1  # the bisection splits the batch; its pieces still form one table
    assert parsed.table["venue"].to_pylist() == ["XNAS", None, None, None]
    assert parsed.table["lot"].type == pa.string()
    assert parsed.table["lot"].to_pylist() == ["100", "odd", "[1, 2]", "7.5"]


def test_a_declared_field_that_changes_type_is_quarantined_as_wrong_type():
    parsed = parse(batch(good(price="238.32"), good()), CONTRACT, record_max_bytes=500)
    assert parsed.rows == 1
    assert parsed.quarantine["reason"][0].as_py().startswith("wrong type")


def test_rows_land_on_the_day_of_their_event_time_and_a_tombstone_without_one_on_no_day():
    parsed = parse(batch(good(ts="2021-03-10 23:59:59.999"), None), CONTRACT, record_max_bytes=500)
    days = partition_days(parsed.table, CONTRACT)
    assert [d and d.isoformat() for d in days.to_pylist()] == ["2021-03-10", None]
    assert days.type == pa.date32()


def test_a_stream_without_an_event_time_is_partitioned_by_the_day_of_its_kafka_timestamp():
    untimed = Contract(stream="t", topic="t", schema=CONTRACT.schema, required=CONTRACT.required)
    assert partition_column(untimed) == "_kafka_timestamp"
    assert partition_column(CONTRACT) == "ts"


def test_a_raw_json_stream_keeps_any_json_as_text_and_quarantines_the_rest():
    from ingestion.streams.stedi import REDIS

    values = (b'{"key": "Q3VzdG9tZXI=", "zSetEntries": []}', b"[1, 2]", b"{not json", b"\xff\xfe", None)
    parsed = parse(batch(*values), REDIS, record_max_bytes=1 << 20)
    assert parsed.table["_value"].to_pylist() == ['{"key": "Q3VzdG9tZXI=", "zSetEntries": []}', "[1, 2]", None]
    assert parsed.table["_tombstone"].to_pylist() == [False, False, True]
    reasons = dict(
        zip(parsed.quarantine["_kafka_offset"].to_pylist(), parsed.quarantine["reason"].to_pylist(), strict=True)
    )
    assert reasons[102].startswith("not JSON") and reasons[103].startswith("not UTF-8")


def test_a_contract_header_becomes_a_column():
    from ingestion.streams.cms import CONTRACT as CMS

    raw = RawBatch.of(
        "cms.provider_services",
        0,
        offsets=[0, 1, 2],
        values=[b'{"npi": "1003000126"}', b'{"npi": "1003000134"}', b'{"npi": "1003000142"}'],
        headers={0: [("data_year", b"2016"), ("data_year", b"2017")], 2: [("trace", b"x"), ("data_year", b"\xff")]},
    )
    parsed = parse(raw, CMS, record_max_bytes=1 << 20)
    assert parsed.table["_header_data_year"].to_pylist() == ["2017", None, "\ufffd"]


# Limits on what a record may carry, and numbers that are not finite.

LIMITS = RecordLimits(max_depth=8, max_fields=20, field_name_max_chars=16)


def nested(levels: int, field: str = "extra") -> bytes:
    """A good tick whose undeclared `field` makes the record `levels` deep (its own object is level 1)."""
    inner = '{"a": ' * (levels - 1) + "1" + "}" * (levels - 1)
    return good()[:-1] + f', "{field}": {inner}}}'.encode()


def reasons_of(parsed) -> dict[int, str]:
    return dict(
        zip(parsed.quarantine["_kafka_offset"].to_pylist(), parsed.quarantine["reason"].to_pylist(), strict=True)
    )


def test_a_record_nested_deeper_than_the_limit_is_quarantined_naming_the_field_and_the_depth():
    parsed = parse(batch(good(), nested(8), nested(9), good()), CONTRACT, record_max_bytes=1 << 20, limits=LIMITS)
    assert parsed.table["_kafka_offset"].to_pylist() == [100, 101, 103]
    assert reasons_of(parsed) == {102: 'too deep: field "extra" nested 9 levels > 8'}


def test_nesting_counts_lists_as_levels_and_brackets_inside_strings_not_at_all():
    lists = good()[:-1] + b', "extra": [[[[[[[[1]]]]]]]]}'  # 9 levels with the record
    in_a_string = good(note="[[[[{{{{[[[[{{{{")
    parsed = parse(batch(lists, in_a_string), CONTRACT, record_max_bytes=1 << 20, limits=LIMITS)
    assert reasons_of(parsed) == {100: 'too deep: field "extra" nested 9 levels > 8'}
    assert parsed.table["_kafka_offset"].to_pylist() == [101]


def test_a_record_too_deep_for_pyarrows_reader_is_quarantined_before_the_reader_sees_it():
    # pyarrow's JSON reader segfaults near 16,000 levels; 2,000 already takes it a noticeable time.
    for hostile in (nested(2_000), nested(100_000), b"[" * 500_000):
        parsed = parse(batch(good(), hostile, good()), CONTRACT, record_max_bytes=1 << 20)
        assert parsed.table["_kafka_offset"].to_pylist() == [100, 102]
        assert reasons_of(parsed)[101].startswith("too deep: ")
    assert reasons_of(parse(batch(nested(2_000)), CONTRACT, record_max_bytes=1 << 20)) == {
        100: 'too deep: field "extra" nested 2,000 levels > 64'
    }


def test_the_default_depth_limit_keeps_every_real_shape():
    parsed = parse(batch(nested(64), nested(65)), CONTRACT, record_max_bytes=1 << 20)
    assert parsed.table["_kafka_offset"].to_pylist() == [100]
    assert reasons_of(parsed) == {101: 'too deep: field "extra" nested 65 levels > 64'}


def test_a_record_with_more_fields_than_the_limit_nested_ones_included_is_quarantined():
    flat = good(**{f"f{i}": i for i in range(17)})  # 3 declared + 17 = 20 fields
    wide = good(**{f"f{i}": i for i in range(18)})
    inside = good(box={f"f{i}": i for i in range(17)})  # 3 + box + 17
    parsed = parse(batch(flat, wide, inside), CONTRACT, record_max_bytes=1 << 20, limits=LIMITS)
    assert parsed.table["_kafka_offset"].to_pylist() == [100]
    assert reasons_of(parsed) == {
        101: "too many fields: 21 (nested ones included) > 20",
        102: "too many fields: 21 (nested ones included) > 20",
    }


def test_records_within_the_field_limit_each_stay_even_when_together_they_hold_more_names():
    values = [good(**{f"r{r}_f{i}": i for i in range(10)}) for r in range(6)]
    parsed = parse(batch(*values), CONTRACT, record_max_bytes=1 << 20, limits=LIMITS)
    assert parsed.rows == 6 and parsed.quarantine.num_rows == 0


def test_a_field_name_longer_than_the_limit_is_quarantined_showing_its_start():
    parsed = parse(
        batch(good(**{"n" * 16: 1}), good(**{"n" * 100_000: 1}), good(box={"m" * 17: 1})),
        CONTRACT,
        record_max_bytes=1 << 20,
        limits=LIMITS,
    )
    assert parsed.table["_kafka_offset"].to_pylist() == [100]
    assert reasons_of(parsed) == {
        101: f'field name too long: "{"n" * 40}…" (100,000 characters > 16)',
        102: f'field name too long: "{"m" * 17}" (17 characters > 16)',
    }


def test_nan_and_infinities_in_a_declared_number_are_quarantined_as_not_finite():
    spellings = [b"NaN", b"Infinity", b"-Infinity"]
    values = [good()[:-1].replace(b"238.32", spelling) + b"}" for spelling in spellings]
    parsed = parse(batch(good(), *values, good(price=1e308)), CONTRACT, record_max_bytes=1 << 20)
    assert parsed.table["_kafka_offset"].to_pylist() == [100, 104]  # 1e308 is finite: the gate judges it
    assert reasons_of(parsed) == {offset: "not a finite number: price" for offset in (101, 102, 103)}


def test_nan_in_a_declared_integer_field_is_not_a_finite_number_either():
    from ingestion.streams.office import CLAIMS

    ok = {"id": 1, "patient_id": 7, "code": "X", "price": 10.0}
    values = [json.dumps(ok).encode(), json.dumps({**ok, "patient_id": float("nan")}).encode()]
    parsed = parse(batch(*values), CLAIMS, record_max_bytes=1 << 20)
    assert parsed.rows == 1
    assert reasons_of(parsed) == {101: "not a finite number: patient_id"}


def test_nan_and_infinities_in_an_undeclared_field_are_kept_as_they_are():
    values = [good()[:-1] + b', "extra": ' + spelling + b"}" for spelling in (b"NaN", b"Infinity", b"-Infinity")]
    parsed = parse(batch(*values, good(extra=1.5)), CONTRACT, record_max_bytes=1 << 20)
    assert parsed.quarantine.num_rows == 0
    extra = parsed.table["extra"].to_pylist()
    assert math.isnan(extra[0]) and extra[1:] == [math.inf, -math.inf, 1.5]


def test_a_number_too_big_for_a_double_is_not_a_finite_number():
    parsed = parse(batch(good()[:-1].replace(b"238.32", b"1e309") + b"}"), CONTRACT, record_max_bytes=1 << 20)
    assert reasons_of(parsed) == {100: "not a finite number: price"}


def test_a_record_with_a_duplicate_key_is_quarantined_naming_the_key():
    twice = b'{"ts": "2021-03-10 16:21:32.000", "symbol": "AAPL", "price": 1.0, "price": 2.0}'
    parsed = parse(batch(good(), twice), CONTRACT, record_max_bytes=1 << 20)
    assert reasons_of(parsed) == {101: 'duplicate field: "price"'}


def test_a_raw_json_record_nested_deeper_than_the_limit_is_quarantined_and_shallower_ones_kept():
    from ingestion.streams.stedi import REDIS

    shallow = b'{"key": "Q3VzdG9tZXI=", "zSetEntries": [{"element": "e30=", "score": 0}]}'
    deep = b'{"key": ' + b"[" * 9 + b"]" * 9 + b"}"
    huge = b'{"key": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    parsed = parse(batch(shallow, deep, huge), REDIS, record_max_bytes=1 << 20, limits=LIMITS)
    assert parsed.table["_kafka_offset"].to_pylist() == [100]
    assert reasons_of(parsed) == {
        101: 'too deep: field "key" nested 10 levels > 8',
        102: 'too deep: field "key" nested 200,001 levels > 8',
    }


def test_the_limits_come_from_the_environment_and_a_depth_the_reader_cannot_take_is_refused(monkeypatch):
    from ingestion.config import settings

    monkeypatch.setenv("LAKEHOUSE_RECORD_MAX_DEPTH", "12")
    monkeypatch.setenv("LAKEHOUSE_RECORD_MAX_FIELDS", "50")
    monkeypatch.setenv("LAKEHOUSE_FIELD_NAME_MAX_CHARS", "30")
    assert settings().record_limits == RecordLimits(max_depth=12, max_fields=50, field_name_max_chars=30)
    monkeypatch.setenv("LAKEHOUSE_RECORD_MAX_DEPTH", "20000")
    with pytest.raises(ValueError, match="LAKEHOUSE_RECORD_MAX_DEPTH must be between 1 and 10,000"):
        settings()
