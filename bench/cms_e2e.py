"""The CMS stream end to end at the real file's size: file, Kafka, lake, marts.

    uv run python bench/cms_e2e.py [--rows 10000000] [--home DIR]

1. Writes a synthetic provider-services file of the real export's size (about ten million rows,
   2.2 GiB) in the portal's CSV spelling: display names, a byte-order mark, every value quoted,
   numbers with thousands separators. The rows are the producer's own generator's.
2. Replays it into Kafka with `lakehouse produce cms --file`.
3. Drains the topic into the lake with `lakehouse drain cms`.
4. Gates and builds the CMS marts with `lakehouse build cms`.

Each stage after the first is the product's own command in a process of its own; the bench
prints its records per second and the peak RSS of its process. The producer and the drain
stream (constant memory whatever the file's size); the build's DuckDB is bounded by
LAKEHOUSE_DUCKDB_MEMORY_LIMIT. It uses the broker at KAFKA_BOOTSTRAP_SERVERS, or starts a local
one of its own in the bench's LAKEHOUSE_HOME (removed at the end unless --home is given).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

import cms_files  # noqa: E402  (the tests' writer of the real spellings)
from cms_marts import processor, timed  # noqa: E402

from ingestion.streams import cms  # noqa: E402

FILE_NAME = "Medicare_Provider_Util_Payment_PUF_CY2023.csv"  # the year comes from the name, as in a real file
PARTS = os.cpu_count() or 2


def write_part(path: str, part: int, rows: int) -> int:
    """`rows` generator rows (stream `part`) as portal CSV rows, without the header."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for _, value in islice(cms.synthetic(seed=0, part=part), rows):
            row = list(json.loads(value).values())
            writer.writerow([cms_files.thousands(v) if i in cms_files.NUMERIC else v for i, v in enumerate(row)])
    return rows


def write_file(path: Path, rows: int) -> float:
    """The whole file, its parts generated in parallel; returns seconds."""
    started = time.monotonic()
    sizes = [rows // PARTS + (1 if i < rows % PARTS else 0) for i in range(PARTS)]
    parts = [f"{path}.part{i}" for i in range(PARTS)]
    with ProcessPoolExecutor(max_workers=PARTS) as pool:
        assert sum(pool.map(write_part, parts, range(1, PARTS + 1), sizes)) == rows
    with open(path, "w", newline="", encoding="utf-8-sig") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL).writerow(cms.LEGACY_DISPLAY)
    with open(path, "ab") as out:
        for part in parts:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, 16 << 20)
            os.remove(part)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--home", type=Path, default=None, help="Lake home to use and keep (default: a temporary one)")
    args = parser.parse_args()

    home = (args.home or Path(tempfile.mkdtemp(prefix="bench-cms-e2e-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["LAKEHOUSE_HOME"] = str(home)
    from ingestion import local_kafka

    started_broker = None
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        os.environ.setdefault("LAKEHOUSE_KAFKA_PORT", "19193")
        started_broker = local_kafka.start()
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{os.environ['LAKEHOUSE_KAFKA_PORT']}"
    env = dict(os.environ)
    lakehouse = str(Path(sys.executable).with_name("lakehouse"))
    stages: list[tuple[str, float, int | None]] = []
    try:
        path = home / FILE_NAME
        print(f"writing {args.rows:,} rows to {path} ...", flush=True)
        seconds = write_file(path, args.rows)
        size_mib = path.stat().st_size / 2**20
        stages.append((f"write the file ({size_mib:,.0f} MiB)", seconds, None))
        for label, command in (
            ("lakehouse produce cms --file", [lakehouse, "produce", "cms", "--file", str(path)]),
            ("lakehouse drain cms", [lakehouse, "drain", "cms"]),
            ("lakehouse build cms", [lakehouse, "build", "cms"]),
        ):
            print(f"{label} ...", flush=True)
            seconds, peak_mib, output = timed(command, env)
            stages.append((label, seconds, peak_mib))
            print("  " + "\n  ".join(output.strip().splitlines()[-3:]), flush=True)
    finally:
        if started_broker is not None:
            local_kafka.stop()

    print()
    print(f"The CMS stream end to end, {args.rows:,} rows in the portal's CSV spelling:")
    print(f"  {'stage':<38}{'seconds':>9}{'records/s':>12}{'peak RSS MiB':>14}")
    for label, seconds, peak_mib in stages:
        rss = f"{peak_mib:>14,}" if peak_mib is not None else f"{'':>14}"
        print(f"  {label:<38}{seconds:>9.1f}{args.rows / seconds:>12,.0f}{rss}")
    print(f"  on {processor()}, {os.cpu_count()} cores")
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
