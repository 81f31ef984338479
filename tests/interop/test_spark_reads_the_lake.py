"""Another engine reads the lake: Spark, through Iceberg's JDBC catalog, sees what pyiceberg and
`lakehouse build` commit, and its reads never get in the way of the next commit."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from ingestion import duck
from ingestion.catalog import TABLE_PROPERTIES, catalog
from ingestion.config import settings
from ingestion.drain import drain
from ingestion.produce import produce
from ingestion.streams import prices
from tests.cli import lakehouse
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration


def ticks(first_offset: int, count: int) -> pa.Table:
    offsets = list(range(first_offset, first_offset + count))
    return pa.table(
        {
            "symbol": pa.array(["ACME" if o % 2 else "INIT" for o in offsets]),
            "price": pa.array([o * 0.25 for o in offsets], pa.float64()),
            "ts": pa.array([pd.Timestamp("2021-03-10 16:21:32") + pd.Timedelta(seconds=o) for o in offsets]),
            "_kafka_offset": pa.array(offsets, pa.int64()),
        }
    )


def figures(spark, table: str) -> tuple:
    row = spark.sql(f"select count(*), sum(price), sum(_kafka_offset), min(ts), max(ts) from lakehouse.{table}").first()
    return tuple(row)


def expected(rows: pa.Table) -> tuple:
    frame = rows.to_pandas()
    return (len(frame), frame["price"].sum(), frame["_kafka_offset"].sum(), frame["ts"].min(), frame["ts"].max())


def test_spark_reads_the_rows_pyiceberg_committed_and_pyiceberg_commits_again_after_it(spark, lake_home):
    first, second = ticks(0, 1000), ticks(1000, 250)
    table = catalog(settings()).create_table("raw.spark_ticks", schema=first.schema, properties=TABLE_PROPERTIES)
    table.append(first)

    assert figures(spark, "raw.spark_ticks") == expected(first)

    # Spark's JDBC catalog holds no SQLite read open: the next writer commits ("database is locked" otherwise).
    table.append(second)
    # And Spark does not cache the table: its next query sees the new snapshot.
    assert figures(spark, "raw.spark_ticks") == expected(pa.concat_tables([first, second]))
    reread = catalog(settings()).load_table("raw.spark_ticks")
    assert len(reread.snapshots()) == 2


def test_spark_sees_a_table_created_after_its_first_query(spark, lake_home):
    assert spark.sql("show tables in lakehouse.raw").count() == 0
    rows = ticks(0, 10)
    catalog(settings()).create_table("raw.later", schema=rows.schema, properties=TABLE_PROPERTIES).append(rows)
    assert [r.tableName for r in spark.sql("show tables in lakehouse.raw").collect()] == ["later"]
    assert figures(spark, "raw.later") == expected(rows)


STATS = ["symbol", "tick_count", "min_price", "max_price", "mean_price", "stddev_price"]


def test_spark_reads_raw_prices_and_the_published_mart_with_the_figures_duckdb_has(spark, kafka_env):
    recreate_topics(kafka_env, "prices")
    produce(prices.CONTRACT, prices.ticks(seed=13), count=2000, progress=False)
    drain(prices.CONTRACT)
    lakehouse("build", "prices")

    raw = catalog(settings()).load_table("raw.prices")
    figures_sql = (
        "select count(*), count(distinct _kafka_partition || ':' || _kafka_offset), sum(price), min(ts), max(ts)"
    )
    with duck.read_iceberg(duck.connect(), settings()) as con:
        in_duckdb = con.execute(f"{figures_sql} from iceberg_scan('{raw.metadata_location}')").fetchone()
    in_spark = tuple(spark.sql(f"{figures_sql} from lakehouse.raw.prices").first())
    assert in_spark[:2] == in_duckdb[:2] == (2000, 2000)
    assert in_spark[2] == pytest.approx(in_duckdb[2], rel=1e-12)
    assert in_spark[3:] == in_duckdb[3:]

    columns = ", ".join(STATS)
    with duck.connect(str(settings().warehouse_path), read_only=True) as con:
        built = con.execute(f"select {columns} from prices_symbol_stats order by symbol").df()
    read = spark.sql(f"select {columns} from lakehouse.marts.prices_symbol_stats order by symbol").toPandas()

    assert len(read) == len(built) > 0
    pd.testing.assert_frame_equal(read, built, check_dtype=False, rtol=1e-12)
    (ticks_read,) = spark.sql("select sum(tick_count) from lakehouse.marts.prices_symbol_stats").first()
    assert ticks_read == 2000
