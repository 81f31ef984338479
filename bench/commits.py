"""What a drain's commit costs as a raw table's snapshots pile up, against pyiceberg's own commit.

    uv run python bench/commits.py [--snapshots 1000]

Commits the topic's state (as a drain does, with no file) again and again to one raw table in a
fresh lake, and at each checkpoint times one more commit each way on the same table:

  ours   - the lake's commit (`lake.TopicTables.commit_state`, through `ingestion.catalog`)
  stock  - the same commit through pyiceberg's own `SqlCatalog` and `Table.transaction()`

and prints both in milliseconds with the ratio stock/ours. A week of drains every two minutes
keeps about 5,000 snapshots (the default expiry window is 7 days): a commit's cost must not
follow them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import pyarrow as pa  # noqa: E402

from ingestion.contracts import Contract  # noqa: E402

CONTRACT = Contract(stream="bench", topic="bench.commits", schema=pa.schema([pa.field("id", pa.string())]))
CHECKPOINTS = (1, 100, 200, 400, 1000, 2000, 5000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, default=1000)
    args = parser.parse_args()
    os.environ["LAKEHOUSE_HOME"] = tempfile.mkdtemp(prefix="bench-commits-")

    from pyiceberg.catalog.sql import SqlCatalog

    from ingestion import lake
    from ingestion.catalog import CATALOG_NAME, warehouse_uri
    from ingestion.config import settings

    s = settings()
    tables = lake.TopicTables.open(s, CONTRACT)
    stock = SqlCatalog(CATALOG_NAME, uri=s.catalog_uri, warehouse=warehouse_uri(s))
    state = tables.state()
    offset = 0

    def ours() -> float:
        nonlocal state, offset
        started = time.perf_counter()
        state = tables.commit_state(state, state.advanced(0, 0, offset, offset + 1))
        offset += 1
        return time.perf_counter() - started

    def theirs() -> float:
        nonlocal state, offset
        table = stock.load_table(tables.raw.name())
        started = time.perf_counter()
        with table.transaction() as tx:
            tx.add_files([], snapshot_properties=state.advanced(0, 0, offset, offset + 1).summary())
        seconds = time.perf_counter() - started
        offset += 1
        tables.raw = tables.raw.refresh()
        state = tables.state()
        return seconds

    print(f"{'snapshots':>9} {'ours':>9} {'stock':>9} {'stock/ours':>11}")
    while len(tables.raw.snapshots()) < args.snapshots:
        count = len(tables.raw.snapshots())
        if count + 1 in CHECKPOINTS or count + 1 == args.snapshots:
            mine, stocks = ours(), theirs()
            print(f"{count:>9,} {mine * 1000:>7.1f}ms {stocks * 1000:>7.1f}ms {stocks / mine:>10.1f}x", flush=True)
        else:
            ours()


if __name__ == "__main__":
    main()
