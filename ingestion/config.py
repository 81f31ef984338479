"""Every setting the product reads from the environment, with its safe default, in one place.

Everything the product writes at run time lives under one folder, ``LAKEHOUSE_HOME``
(``data_lake/`` in the repository by default), so moving or wiping that folder moves or
wipes the whole state: the lake, the quarantine, the progress ledger, the warehouse,
Kafka's data and Dagster's home. The Iceberg catalog and its warehouse default to
`catalog.db` and `warehouse/` there too, and can live elsewhere (a PostgreSQL catalog shared by
several machines, an S3 warehouse): `LAKEHOUSE_CATALOG_URI`, `LAKEHOUSE_WAREHOUSE`.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_KAFKA_PORT = 9092
# With dbt's own few hundred MiB beside it, a build stays under 3 GiB (bench/cms_marts.py).
DEFAULT_DUCKDB_MEMORY_LIMIT = "2GB"


def _int(name: str, default: int) -> int:
    return _number(name, default, int, "a whole number")


def _float(name: str, default: float) -> float:
    return _number(name, default, float, "a number")


def _number(name: str, default, kind: type, what: str):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be {what}, got {raw!r}") from exc


# pyarrow's JSON reader recurses once per level and overflows its thread's stack near 16,000
# levels (a segfault, not an error), so a higher depth limit is refused.
RECORD_MAX_DEPTH_CEILING = 10_000


@dataclass(frozen=True)
class RecordLimits:
    """What one record may carry; a record beyond a limit is quarantined with the limit's reason.

    The defaults are far beyond any real stream (the widest, CMS, has 30 flat fields with names of
    at most 35 characters; a Kafka Connect envelope nests 4 or 5 levels) and far below what hurts:
    DuckDB ran out of memory on a Parquet column nested 2,000 levels deep, and every extra field
    is a column in each file and in every reader's schema.
    """

    max_depth: int = 64  # nesting levels, the record's own object being level 1
    max_fields: int = 1_000  # fields, nested ones included
    field_name_max_chars: int = 256  # SQL engines stop at 63 (Postgres) or 64 (MySQL)


def _record_limits() -> RecordLimits:
    defaults = RecordLimits()
    depth = _int("LAKEHOUSE_RECORD_MAX_DEPTH", defaults.max_depth)
    if not 1 <= depth <= RECORD_MAX_DEPTH_CEILING:
        raise ValueError(f"LAKEHOUSE_RECORD_MAX_DEPTH must be between 1 and {RECORD_MAX_DEPTH_CEILING:,}, got {depth}")
    return RecordLimits(
        max_depth=depth,
        max_fields=_int("LAKEHOUSE_RECORD_MAX_FIELDS", defaults.max_fields),
        field_name_max_chars=_int("LAKEHOUSE_FIELD_NAME_MAX_CHARS", defaults.field_name_max_chars),
    )


@dataclass(frozen=True)
class Settings:
    home: Path
    kafka_bootstrap: str | None  # an external cluster; None means the local broker
    kafka_port: int
    sensor_interval_s: int
    batch_max_records: int
    batch_max_bytes: int
    record_max_bytes: int
    drain_stall_timeout_s: float
    record_limits: RecordLimits
    catalog_uri: str  # the Iceberg SQL catalog: a SQLAlchemy URI, sqlite:///… or postgresql://…
    warehouse: str  # where the Iceberg tables' files live: a local folder or s3://bucket/prefix
    s3_endpoint: str | None  # an S3-compatible server's URL; None means AWS itself
    # A file in a table's folder that no snapshot references is deleted once it is this old: a
    # drain on another machine may be about to commit the files it has just written.
    orphan_min_age_s: int
    snapshot_keep_days: int  # `lakehouse compact` expires the tables' snapshots older than this
    # A drain commits the batches it has written at most this often (and when it is done): a
    # commit's cost grows with a table's snapshots, so fewer, larger commits keep it cheap.
    commit_interval_s: float
    # The drain's Kafka reader: `c` (records copied straight into Arrow buffers), `python` (the
    # confluent-kafka consumer, slower) or `auto`, the C one where it loads, else Python's.
    kafka_reader: str = "auto"
    # A folder of `<stream>.yml` declarations (`ingestion/declared.py`), read besides the built-in streams.
    streams_dir: Path | None = None
    # What DuckDB (dbt's builds, the shell, verify) may hold in memory before it spills to
    # `duckdb_temp_dir`: by default it takes 80% of the machine, and the CMS full build peaked at 6 GiB.
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT

    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def gates_dir(self) -> Path:
        return self.home / "gates"

    @property
    def set_aside_dir(self) -> Path:
        return self.home / "set_aside"

    @property
    def ledger_path(self) -> Path:
        return self.raw_dir / "_ledger.sqlite"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    @property
    def warehouse_path(self) -> Path:
        """dbt's DuckDB database (the Iceberg tables' files are under `warehouse`)."""
        return self.home / "warehouse.duckdb"

    @property
    def duckdb_temp_dir(self) -> Path:
        return self.home / "duckdb_tmp"

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def dbt_target_dir(self) -> Path:
        return self.home / "dbt" / "target"

    @property
    def dbt_log_dir(self) -> Path:
        return self.home / "dbt" / "logs"

    @property
    def generated_dir(self) -> Path:
        """What the declared streams' files make for dbt (their sources and staging models)."""
        return self.home / "generated"

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"


def _recorded_port(home: Path) -> int:
    """The port the local broker under this home was last started on (`lakehouse kafka start --port`)."""
    try:
        return int((home / "kafka" / "port").read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_KAFKA_PORT


def settings() -> Settings:
    """Read the settings now (not at import), so tests and commands can change the environment first."""
    home = Path(os.environ.get("LAKEHOUSE_HOME") or REPO_ROOT / "data_lake").expanduser().resolve()
    return Settings(
        home=home,
        kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        kafka_port=_int("LAKEHOUSE_KAFKA_PORT", _recorded_port(home)),
        # A minute keeps a record's way to a mart under two minutes (bench/freshness.py); a tick that
        # finds nothing new costs one look at the broker's end offsets.
        sensor_interval_s=_int("LAKEHOUSE_SENSOR_INTERVAL_S", 60),
        batch_max_records=_int("LAKEHOUSE_BATCH_MAX_RECORDS", 100_000),
        batch_max_bytes=_int("LAKEHOUSE_BATCH_MAX_BYTES", 64 * 1024 * 1024),
        record_max_bytes=_int("LAKEHOUSE_RECORD_MAX_BYTES", 1024 * 1024),
        # A drain whose broker sends nothing for this long gives up, saying so; the next one goes on.
        drain_stall_timeout_s=_int("LAKEHOUSE_DRAIN_STALL_TIMEOUT_S", 120),
        record_limits=_record_limits(),
        catalog_uri=os.environ.get("LAKEHOUSE_CATALOG_URI") or f"sqlite:///{home / 'catalog.db'}",
        warehouse=os.environ.get("LAKEHOUSE_WAREHOUSE") or str(home / "warehouse"),
        s3_endpoint=os.environ.get("LAKEHOUSE_S3_ENDPOINT") or None,
        orphan_min_age_s=_int("LAKEHOUSE_ORPHAN_MIN_AGE_S", 3600),
        snapshot_keep_days=_int("LAKEHOUSE_SNAPSHOT_KEEP_DAYS", 7),
        commit_interval_s=_float("LAKEHOUSE_COMMIT_INTERVAL_S", 2.0),
        kafka_reader=_choice("LAKEHOUSE_KAFKA_READER", ("auto", "c", "python")),
        streams_dir=Path(os.environ["LAKEHOUSE_STREAMS_DIR"]).expanduser().resolve()
        if os.environ.get("LAKEHOUSE_STREAMS_DIR")
        else None,
        duckdb_memory_limit=_memory_size("LAKEHOUSE_DUCKDB_MEMORY_LIMIT", DEFAULT_DUCKDB_MEMORY_LIMIT),
    )


def _memory_size(name: str, default: str) -> str:
    """A size as DuckDB reads it: a number and a unit, `2GB`, `512MiB`."""
    value = (os.environ.get(name) or default).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B)", value, re.IGNORECASE):
        raise ValueError(f"{name} must be a size such as 2GB or 512MiB, got {value!r}")
    return value


def _choice(name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first is the default)."""
    value = (os.environ.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {os.environ[name]!r}")
    return value


def made_duckdb_temp_dir(s: Settings) -> Path:
    """The home's folder for what DuckDB spills, made: DuckDB makes only the last folder of the
    path it is given, and each DuckDB is given one of its own inside this one."""
    s.duckdb_temp_dir.mkdir(parents=True, exist_ok=True)
    return s.duckdb_temp_dir


def duckdb_extensions_dir() -> Path:
    """Where the official `duckdb-ext-*` wheels put their binaries; DuckDB loads them from there,
    offline, and never downloads one."""
    import duckdb_ext

    return Path(next(iter(duckdb_ext.__path__))) / "extensions"


def export_for_subprocesses(s: Settings | None = None) -> dict[str, str]:
    """The environment that dbt, Dagster and the DuckDB shell need to find the same lake."""
    s = s or settings()
    # Derived from the home every time, so one process can move between homes (tests do).
    os.environ["LAKEHOUSE_HOME"] = str(s.home)
    os.environ["DAGSTER_HOME"] = str(s.dagster_home)
    os.environ["DBT_TARGET_PATH"] = str(s.dbt_target_dir)
    os.environ["DBT_LOG_PATH"] = str(s.dbt_log_dir)
    os.environ["LAKEHOUSE_DUCKDB_EXTENSIONS"] = str(duckdb_extensions_dir())
    os.environ["LAKEHOUSE_DUCKDB_MEMORY_LIMIT"] = s.duckdb_memory_limit
    os.environ["LAKEHOUSE_DUCKDB_TEMP_DIR"] = str(made_duckdb_temp_dir(s))
    os.environ.setdefault("DBT_PROFILES_DIR", str(REPO_ROOT / "dbt_project"))
    # dbt, dagster and duckdb are console scripts beside this interpreter; callers need not activate the venv.
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    return dict(os.environ)
