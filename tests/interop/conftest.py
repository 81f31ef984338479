"""Spark for the interop tests: one JVM for the session, a session of its own over each test's lake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pyspark", reason="pyspark is in the uv group interop: run `make test-interop`")

from pyspark.sql import SparkSession

from ingestion import spark as lake_spark
from ingestion.config import settings


@pytest.fixture(scope="session")
def spark_jvm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """A local Spark with the Iceberg jars; started once, since a start takes about 10 s."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAKEHOUSE_HOME", str(tmp_path_factory.mktemp("spark-home")))
        for name in ("LAKEHOUSE_CATALOG_URI", "LAKEHOUSE_WAREHOUSE"):
            env.delenv(name, raising=False)
        started = lake_spark.session(settings())
    yield started
    started.stop()


@pytest.fixture
def spark(spark_jvm: SparkSession, lake_home: Path) -> SparkSession:
    """A Spark session whose `lakehouse` catalog is this test's lake."""
    return lake_spark.over(spark_jvm, settings())
