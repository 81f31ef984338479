"""How long the CMS marts take to build from a large raw layer, and what dbt adds to DuckDB.

    uv run python bench/cms_marts.py [--rows 10000000] [--new-rows 100000] [--incremental-runs 3] [--home DIR]

1. Writes N synthetic CMS rows (the producer's own generator, legacy spelling, data year 2023)
   into a fresh lake's raw layer exactly as the drain stores them: parsed by the drain's parser
   against the CMS contract, in files of 250,000 rows over 3 partitions, and marked as passed by
   the quality gate. Kafka and GX are left out: the drain has its own benchmark
   (bench/drain.py), and this one is about the warehouse.
2. Runs the SQL of the CMS models and tests alone, in DuckDB without dbt: each model's compiled
   SQL as `create or replace table|view`, each test's as a count, into a fresh database file.
3. Runs `dbt build` of the CMS models (staging view, incremental dedup, four marts) and their
   tests on a fresh warehouse: the full build.
4. Adds M new rows (a share of them re-sending rows already stored) and runs `dbt build`
   again: the incremental build, three times (`--incremental-runs`), counting the median.
5. Runs dbt on one view without tests: what any dbt invocation costs before its SQL.

Prints the wall time and peak RSS of each, dbt's full build over DuckDB alone, the slowest
models and the processor. Targets on a 2-core machine: full build under 60 s, DuckDB alone under
45 s, incremental under 10 s, peak RSS under 3 GiB, dbt over DuckDB under 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from expectations.gate import mark_path as gate_mark_path  # noqa: E402
from expectations.gate import publish_read_snapshots  # noqa: E402
from ingestion import duck, lake  # noqa: E402
from ingestion.config import export_for_subprocesses, settings  # noqa: E402
from ingestion.parse import parse  # noqa: E402
from ingestion.records import RawBatch  # noqa: E402
from ingestion.streams import cms  # noqa: E402

FILE_ROWS = 250_000
PARTITIONS = 3
SELECTION = "source:raw.cms_provider_services+"


def write_chunk(home: str, part: int, partition: int, start: int, rows: int) -> tuple[str, int]:
    """Generate `rows` records (stream `part` of seed 0) and write them as the drain would, into
    the raw table's folder; return the file and its rows (committed by the caller)."""
    records = list(islice(cms.synthetic(seed=0, part=part), rows))
    now = int(time.time() * 1000)
    year = [(cms.DATA_YEAR_HEADER, str(cms.SYNTHETIC_YEAR).encode())]
    batch = RawBatch.of(
        cms.CONTRACT.topic,
        partition,
        offsets=range(start, start + rows),
        values=[value for _, value in records],
        keys=[key for key, _ in records],
        timestamps=[now] * rows,
        headers=dict.fromkeys(range(rows), year),
    )
    table = lake.with_generation(parse(batch, cms.CONTRACT, record_max_bytes=1 << 20).table, 0)
    os.environ["LAKEHOUSE_HOME"] = home
    tables = lake.TopicTables.open(settings(), cms.CONTRACT)
    day = datetime.fromtimestamp(now / 1000, UTC).date()
    path = tables.data_path("raw", day, lake.data_file_name(partition, start, start + rows))
    tables.write(table, path)
    return path, table.num_rows


def write_raw(home: Path, rows: int, first_part: int, next_offset: list[int]) -> float:
    """Write `rows` rows in parallel; `next_offset` (per partition) moves past them. Returns seconds."""
    chunks = []
    for i, start_row in enumerate(range(0, rows, FILE_ROWS)):
        partition = i % PARTITIONS
        size = min(FILE_ROWS, rows - start_row)
        chunks.append((str(home), first_part + i, partition, next_offset[partition], size))
        next_offset[partition] += size
    started = time.monotonic()
    tables = lake.TopicTables.open(settings(), cms.CONTRACT)
    base = tables.state()
    if base.generation is None:
        base = tables.commit_state(
            base, replace(base, generations=(lake.Generation(cms.CONTRACT.topic, 0, None, 0.0),))
        )
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        written = list(pool.map(write_chunk, *zip(*chunks, strict=True)))
    assert sum(n for _, n in written) == rows, f"wrote {sum(n for _, n in written)} of {rows} rows"
    new = replace(
        base, offsets={**base.offsets, **{lake.partition_key(0, p): end for p, end in enumerate(next_offset)}}
    )
    state = tables.commit_state(base, new, [path for path, _ in written])
    # The gate is left out too (GX over 10M rows is its own cost): mark every row as passed, as
    # a passing gate would, so that staging reads them.
    mark = gate_mark_path(settings(), cms.CONTRACT.topic, cms.CONTRACT.suites[0])
    mark.parent.mkdir(parents=True, exist_ok=True)
    snapshot = tables.raw.snapshot_by_id(state.snapshot_id)
    mark.write_text(
        json.dumps(
            {"offsets": dict(new.offsets), "snapshot_id": state.snapshot_id, "sequence": snapshot.sequence_number}
        )
    )
    publish_read_snapshots(settings(), [cms.CONTRACT])
    return time.monotonic() - started


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run a child; return its wall seconds, its peak RSS in MiB and its output."""
    started = time.monotonic()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if child.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed:\n{output[-4000:]}")
    return seconds, usage.ru_maxrss // 1024, output


def dbt(home: Path, *args: str) -> list[str]:
    return [
        str(Path(sys.executable).with_name("dbt")),
        *args,
        "--project-dir",
        str(REPO_ROOT / "dbt_project"),
        "--profiles-dir",
        str(REPO_ROOT / "dbt_project"),
        "--target-path",
        str(home / "dbt" / "target"),
    ]


BARE = """
import duckdb, json, os, sys
statements = json.load(open(sys.argv[1]))
options = {  # dbt's profile's, from the same variables
    "extension_directory": os.environ["LAKEHOUSE_DUCKDB_EXTENSIONS"],
    "autoinstall_known_extensions": False,
    "memory_limit": os.environ["LAKEHOUSE_DUCKDB_MEMORY_LIMIT"],
    "temp_directory": os.environ["LAKEHOUSE_DUCKDB_TEMP_DIR"],
}
con = duckdb.connect(sys.argv[2], config=options)
for sql in statements:
    con.execute(sql).fetchall()
"""


def bare_statements(home: Path) -> list[str]:
    """The SQL dbt ran for the CMS models and tests, as plain DuckDB statements in the same order."""
    target = home / "dbt" / "target"
    manifest = json.loads((target / "manifest.json").read_text())
    results = json.loads((target / "run_results.json").read_text())["results"]
    statements = []
    for result in results:
        node = manifest["nodes"][result["unique_id"]]
        code = result.get("compiled_code") or node.get("compiled_code")
        name = node.get("alias") or node["name"]
        if node["resource_type"] == "model":
            kind = "view" if node["config"]["materialized"] == "view" else "table"
            statements.append(f'create or replace {kind} "{name}" as {code}')
        elif node["resource_type"] == "test":
            statements.append(f"select count(*) from ({code}) as failures")
    return statements


def slowest_nodes(run_results: Path, count: int = 4) -> list[tuple[str, float]]:
    """The models and tests of a dbt invocation that took longest, by dbt's own timing."""
    results = json.loads(run_results.read_text())["results"]
    # unique ids read model.<project>.<name>, test.<project>.<name>.<hash>
    timed_nodes = sorted(((r["unique_id"].split(".")[2], r["execution_time"]) for r in results), key=lambda n: -n[1])
    return timed_nodes[:count]


def processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--new-rows", type=int, default=100_000)
    parser.add_argument("--incremental-runs", type=int, default=3, help="incremental builds, each of --new-rows")
    parser.add_argument("--home", type=Path, default=None, help="Lake home to use (default: a temporary one)")
    args = parser.parse_args()

    home = (args.home or Path(tempfile.mkdtemp(prefix="bench-cms-"))).resolve()
    if (home / "warehouse").exists() or (home / "warehouse.duckdb").exists():
        sys.exit(f"{home} is not empty; give a fresh --home")
    os.environ["LAKEHOUSE_HOME"] = str(home)
    export_for_subprocesses(settings())
    # As `make` runs them: dbt's start-up is measured with its bytecode cached, as any install
    # but one that forbids the caches has it (`make setup` compiles it ahead).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}

    next_offset = [0] * PARTITIONS
    print(f"writing {args.rows:,} raw rows to {home} ...", flush=True)
    seconds = write_raw(home, args.rows, first_part=1, next_offset=next_offset)
    raw_mb = sum(f.stat().st_size for f in (home / "warehouse" / "raw").rglob("*.parquet")) / 2**20
    print(f"  {seconds:.0f} s, {raw_mb:,.0f} MiB of Parquet", flush=True)

    print("full build ...", flush=True)
    full_s, full_mb, output = timed(dbt(home, "build", "--select", SELECTION), env)
    slowest = slowest_nodes(home / "dbt" / "target" / "run_results.json")
    statements = bare_statements(home)
    tests = sum(s.startswith("select count(*)") for s in statements)
    print("DuckDB alone, the same SQL ...", flush=True)
    plan = home / "bare.json"
    plan.write_text(json.dumps(statements))
    # Same file name in another folder: the compiled SQL names its relations by the database's name.
    (home / "bare").mkdir()
    bare_db = home / "bare" / "warehouse.duckdb"
    bare_s, bare_mb, _ = timed([sys.executable, "-c", BARE, str(plan), str(bare_db)], env)

    with duck.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        counts = {
            name: con.execute(f"select count(*) from {name}").fetchone()[0]
            for name in ("stg_cms__provider_services", "int_cms__provider_services_deduped", "cms_cost_by_region")
        }

    # The machines of this kind vary from minute to minute by a second or two in a build of ten:
    # the incremental build runs several times, each over new rows, and counts its median.
    incrementals = []
    for run in range(args.incremental_runs):
        print(f"adding {args.new_rows:,} rows ({run + 1} of {args.incremental_runs}) ...", flush=True)
        write_raw(home, args.new_rows, first_part=10_000 + run, next_offset=next_offset)
        incrementals.append(timed(dbt(home, "build", "--select", SELECTION), env)[:2])
    incremental_s = statistics.median(seconds for seconds, _ in incrementals)
    incremental_mb = max(mb for _, mb in incrementals)
    # What any dbt invocation costs before its SQL (importing dbt, reading the project, writing
    # its artifacts): one view rebuilt, no tests.
    floor_s, _, _ = timed(dbt(home, "run", "--select", "stg_cms__provider_services"), env)

    print()
    print(
        f"CMS marts from {args.rows:,} raw rows ({raw_mb:,.0f} MiB Parquet; {counts['int_cms__provider_services_deduped']:,}"
    )
    print(f"provider-service rows after dedup; {len(statements) - tests} models, {tests} tests):")
    print(f"  {'':<34}{'seconds':>9}{'peak RSS MiB':>14}")
    print(f"  {'dbt build, full':<34}{full_s:>9.1f}{full_mb:>14,}")
    print(f"  {'DuckDB alone, the same SQL':<34}{bare_s:>9.1f}{bare_mb:>14,}")
    print(f"  {f'dbt build, incremental (+{args.new_rows:,})':<34}{incremental_s:>9.1f}{incremental_mb:>14,}")
    print(f"    (median of {', '.join(f'{seconds:.1f}' for seconds, _ in incrementals)} s)")
    print(f"  {'dbt run of one view, no tests':<34}{floor_s:>9.1f}")
    print(f"  dbt over DuckDB alone: {full_s / bare_s:.2f}x (target < 1.5x)")
    targets = [
        ("full build", full_s < 60, "60 s"),
        ("DuckDB alone", bare_s < 45, "45 s"),
        ("incremental", incremental_s < 10, "10 s"),
        ("peak", max(full_mb, bare_mb, incremental_mb) < 3 * 1024, "3 GiB"),
    ]
    print("  " + "; ".join(f"{what} {'under' if met else 'OVER'} {limit}" for what, met, limit in targets))
    print(f"  slowest in the full build: {', '.join(f'{name} {seconds:.1f} s' for name, seconds in slowest)}")
    print(f"  on {processor()}, {os.cpu_count()} cores")
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)
    if "ERROR=0" not in output:
        sys.exit("the full build reported errors")


if __name__ == "__main__":
    main()
