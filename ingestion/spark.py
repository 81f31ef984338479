"""Apache Spark over the lake's Iceberg catalog: the conf, the jars, and a session.

Spark reads the same catalog pyiceberg writes, through Iceberg's JDBC catalog (the SQL schema
both share) under the same name, `lakehouse`, so `select * from lakehouse.raw.prices` names the
table every engine sees. The jars (Iceberg's Spark 4.0 runtime, its AWS bundle for an `s3://`
warehouse, the SQLite and PostgreSQL JDBC drivers) are resolved by Maven from
`interop/spark/pom.xml` once; Spark itself is the `pyspark` wheel of the uv group `interop`,
imported only when a session is asked for, so nothing else here needs it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ingestion import maven
from ingestion.catalog import CATALOG_NAME, is_object_storage, s3_region, warehouse_uri
from ingestion.config import REPO_ROOT, Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

POM = REPO_ROOT / "interop" / "spark" / "pom.xml"
PREFIX = f"spark.sql.catalog.{CATALOG_NAME}"


class SparkSetupError(RuntimeError):
    """Spark cannot be set up over the lake (Maven, pyspark or the catalog URI), worded for a person."""


def jars() -> list[str]:
    """The jars Spark needs for the catalog, resolved through Maven once and cached by the pom's content."""
    try:
        found = maven.classpath(POM, "spark-iceberg", "the Iceberg jars for Spark", "read the lake from Spark")
    except maven.MavenError as exc:
        raise SparkSetupError(str(exc)) from None
    return found.split(os.pathsep)


def jdbc_catalog(catalog_uri: str) -> dict[str, str]:
    """The JDBC catalog's `uri` (and `jdbc.user`, `jdbc.password`) for the catalog's SQLAlchemy URI.

    `sqlite:///path` becomes `jdbc:sqlite:path`; `postgresql[+driver]://user:pw@host:port/db?opts`
    becomes `jdbc:postgresql://host:port/db?opts`, the credentials going apart so no URL holds them.
    """
    if catalog_uri.startswith("sqlite:///"):
        return {"uri": "jdbc:sqlite:" + catalog_uri.removeprefix("sqlite:///")}
    parts = urlsplit(catalog_uri)
    if parts.scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise SparkSetupError(
            f"Spark reads a SQLite or PostgreSQL catalog; LAKEHOUSE_CATALOG_URI is {parts.scheme}://…"
        )
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    address = f"{host}:{parts.port}" if parts.port else host
    query = f"?{parts.query}" if parts.query else ""
    conf = {"uri": f"jdbc:postgresql://{address}{parts.path}{query}"}
    if parts.username:
        conf["jdbc.user"] = unquote(parts.username)
    if parts.password:
        conf["jdbc.password"] = unquote(parts.password)
    return conf


def s3_file_io(settings: Settings) -> dict[str, str]:
    """Iceberg's S3FileIO for an `s3://` warehouse: the same endpoint and `AWS_*` credentials pyiceberg uses."""
    if not is_object_storage(settings):
        return {}
    conf = {"io-impl": "org.apache.iceberg.aws.s3.S3FileIO", "client.region": s3_region()}
    if settings.s3_endpoint:
        conf["s3.endpoint"] = settings.s3_endpoint
        conf["s3.path-style-access"] = "true"  # S3-compatible servers (MinIO and the like) serve paths
    for key, variable in (
        ("s3.access-key-id", "AWS_ACCESS_KEY_ID"),
        ("s3.secret-access-key", "AWS_SECRET_ACCESS_KEY"),
        ("s3.session-token", "AWS_SESSION_TOKEN"),
    ):
        if os.environ.get(variable):
            conf[key] = os.environ[variable]
    return conf


def catalog_conf(settings: Settings) -> dict[str, str]:
    """The `spark.sql.catalog.lakehouse.*` settings that make the lake's catalog Spark's `lakehouse`."""
    conf = {
        "": "org.apache.iceberg.spark.SparkCatalog",
        "type": "jdbc",
        **jdbc_catalog(settings.catalog_uri),
        "warehouse": warehouse_uri(settings),
        # Iceberg would otherwise create (or check) its tables in a transaction that leaves a SQLite
        # read open, and the next pyiceberg commit fails with "database is locked"; pyiceberg creates them.
        "jdbc.init-catalog-tables": "false",
        # Every query sees the latest commit of every writer, not the snapshot Spark first loaded.
        "cache-enabled": "false",
        **s3_file_io(settings),
    }
    return {f"{PREFIX}.{key}" if key else PREFIX: value for key, value in conf.items()}


def session_conf(settings: Settings) -> dict[str, str]:
    """Everything a local Spark session over the lake is started with: the jars, the catalog, a small local JVM."""
    return {
        "spark.master": "local[2]",
        "spark.app.name": "lakehouse",
        "spark.jars": ",".join(jars()),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # On a laptop or CI the machine's hostname may not resolve; everything is local anyway.
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
        **catalog_conf(settings),
    }


def ensure_catalog(settings: Settings) -> None:
    """Create the catalog's tables and namespaces if no writer has yet: Iceberg's JDBC catalog is
    told not to (see `catalog_conf`), and would fail on a new lake with "no such table"."""
    from ingestion.catalog import catalog

    catalog(settings)


def session(settings: Settings) -> SparkSession:
    """A local Spark session whose catalog `lakehouse` is the lake's (started, or the running one
    given this lake's catalog)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkSetupError(
            "pyspark is not installed: it is in the uv group `interop` (`uv sync --group interop`)"
        ) from None
    ensure_catalog(settings)
    active = SparkSession.getActiveSession()
    if active is not None:
        return over(active, settings)
    # Spark's launcher warns when the hostname resolves to loopback; a local session binds there anyway.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def over(spark: SparkSession, settings: Settings) -> SparkSession:
    """A new session on `spark`'s JVM (its jars) whose `lakehouse` catalog is this lake's; several
    lakes can be read side by side without starting Spark again."""
    ensure_catalog(settings)
    fresh = spark.newSession()
    for key, value in catalog_conf(settings).items():
        fresh.conf.set(key, value)
    return fresh


def main() -> int:
    """`python -m ingestion.spark`: resolve the jars, then print what a user's own Spark needs."""
    from ingestion.config import settings as current

    try:
        found = jars()
        conf = catalog_conf(current())
    except SparkSetupError as exc:
        print(exc, file=sys.stderr)
        return 1
    print("--jars " + ",".join(found))
    for key, value in conf.items():
        shown = "<hidden>" if key.endswith(("password", "secret-access-key", "session-token")) else value
        print(f"--conf {key}={shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
