"""The contract parser: good records take the fast path, every bad one is quarantined with its reason."""

from __future__ import annotations

import json

import pyarrow as pa

from ingestion.parse import QUARANTINE_SCHEMA, event_dates, parse
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
    assert (row["_topic"], row["_partition"], row["_offset"], row["_key"]) == ("prices", 2, 100, "AAPL")
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
    reasons = dict(zip(parsed.quarantine["_offset"].to_pylist(), parsed.quarantine["reason"].to_pylist(), strict=True))
    assert parsed.table["_offset"].to_pylist() == [100, 109]
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
    assert record["_key"] == b"AAPL"
    assert record["_headers"] == [{"key": "trace", "value": b"abc"}]
    assert record["_offset"] == 100


def test_tombstones_are_kept_as_flagged_rows_in_offset_order():
    parsed = parse(batch(good(), None, good()), CONTRACT, record_max_bytes=500)
    assert parsed.table["_offset"].to_pylist() == [100, 101, 102]
    assert parsed.table["_tombstone"].to_pylist() == [False, True, False]
    assert parsed.tombstones == 1
    assert parsed.table["price"][1].as_py() is None


def test_a_pretty_printed_record_spanning_lines_is_read_as_one_record():
    pretty = json.dumps(GOOD, indent=2).encode()
    parsed = parse(batch(pretty, good()), CONTRACT, record_max_bytes=500)
    assert parsed.rows == 2 and parsed.quarantine.num_rows == 0


def test_whitespace_around_a_record_is_json_whitespace_and_a_blank_record_is_empty():
    parsed = parse(batch(b"  " + good() + b"\n", b" \t\r\n", good()), CONTRACT, record_max_bytes=500)
    assert parsed.table["_offset"].to_pylist() == [100, 102]
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


def test_rows_land_on_the_date_of_their_event_time_else_their_kafka_timestamp():
    parsed = parse(batch(good(ts="2021-03-10 23:59:59.999"), None), CONTRACT, record_max_bytes=500)
    dates = event_dates(parsed.table, CONTRACT)
    assert [d.isoformat() for d in dates.to_pylist()] == ["2021-03-10", "2021-03-10"]
    assert dates.type == pa.date32()


def test_a_raw_json_stream_keeps_any_json_as_text_and_quarantines_the_rest():
    from ingestion.streams.stedi import REDIS

    values = (b'{"key": "Q3VzdG9tZXI=", "zSetEntries": []}', b"[1, 2]", b"{not json", b"\xff\xfe", None)
    parsed = parse(batch(*values), REDIS, record_max_bytes=1 << 20)
    assert parsed.table["_value"].to_pylist() == ['{"key": "Q3VzdG9tZXI=", "zSetEntries": []}', "[1, 2]", None]
    assert parsed.table["_tombstone"].to_pylist() == [False, False, True]
    reasons = dict(zip(parsed.quarantine["_offset"].to_pylist(), parsed.quarantine["reason"].to_pylist(), strict=True))
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
