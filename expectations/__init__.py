"""Great Expectations suites that gate the raw tables: one JSON file per suite, one folder per stream.

`suites` reads and writes them, `validation` runs them over a DataFrame (importing pandas and,
on first use, Great Expectations), `gate` moves a raw table's mark. Nothing is imported here, so
that reading a gate's last outcome (`lakehouse status`) costs neither.
"""
