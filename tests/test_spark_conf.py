"""The Spark conf that reads the lake's catalog, derived from the same settings as pyiceberg's (no Spark needed)."""

from __future__ import annotations

import pytest

from ingestion import spark
from ingestion.config import settings

PREFIX = "spark.sql.catalog.lakehouse"


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    for name in ("LAKEHOUSE_CATALOG_URI", "LAKEHOUSE_WAREHOUSE", "LAKEHOUSE_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_default_sqlite_catalog_becomes_spark_s_jdbc_catalog_named_lakehouse(lake):
    assert spark.catalog_conf(settings()) == {
        PREFIX: "org.apache.iceberg.spark.SparkCatalog",
        f"{PREFIX}.type": "jdbc",
        f"{PREFIX}.uri": f"jdbc:sqlite:{lake / 'catalog.db'}",
        f"{PREFIX}.warehouse": f"file://{lake / 'warehouse'}",
        f"{PREFIX}.jdbc.init-catalog-tables": "false",
        f"{PREFIX}.cache-enabled": "false",
    }


@pytest.mark.parametrize(
    ("catalog_uri", "expected"),
    [
        (
            "postgresql://lake:s%40cret@db.example.com:5433/lakehouse",
            {"uri": "jdbc:postgresql://db.example.com:5433/lakehouse", "jdbc.user": "lake", "jdbc.password": "s@cret"},
        ),
        (
            "postgresql+psycopg2://lake@db/lakehouse?sslmode=require",
            {"uri": "jdbc:postgresql://db/lakehouse?sslmode=require", "jdbc.user": "lake"},
        ),
        ("sqlite:////srv/lake/catalog.db", {"uri": "jdbc:sqlite:/srv/lake/catalog.db"}),
    ],
)
def test_a_catalog_uri_becomes_a_jdbc_url_with_the_credentials_apart(catalog_uri, expected):
    assert spark.jdbc_catalog(catalog_uri) == expected


def test_a_catalog_spark_cannot_reach_is_refused_with_the_reason():
    with pytest.raises(spark.SparkSetupError, match="SQLite or PostgreSQL"):
        spark.jdbc_catalog("mysql://lake@db/lakehouse")


def test_an_s3_warehouse_reads_through_s3_file_io_with_the_endpoint_and_aws_credentials(lake, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_WAREHOUSE", "s3://bucket/lake")
    monkeypatch.setenv("LAKEHOUSE_S3_ENDPOINT", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    conf = spark.catalog_conf(settings())
    assert conf[f"{PREFIX}.warehouse"] == "s3://bucket/lake"
    assert {
        k.removeprefix(PREFIX + "."): v for k, v in conf.items() if "s3" in k or "io-impl" in k or "region" in k
    } == {
        "io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        "client.region": "eu-west-1",
        "s3.endpoint": "http://127.0.0.1:9000",
        "s3.path-style-access": "true",
        "s3.access-key-id": "key",
        "s3.secret-access-key": "secret",
    }


def test_importing_the_module_does_not_import_pyspark():
    import subprocess
    import sys

    code = "import sys, ingestion.spark; sys.exit('pyspark' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
