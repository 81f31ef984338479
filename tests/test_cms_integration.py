"""CMS rows replayed from a real file and from the synthetic stream land in the lake as sent."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))
SAMPLE = Path(__file__).resolve().parent / "data" / "cms_puf_legacy_sample.tsv"
TOPIC = "cms.provider_services"


def lakehouse(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([LAKEHOUSE, *args], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    return result


def test_a_real_file_and_the_synthetic_stream_are_drained_row_for_row(kafka_env, lake_home):
    recreate_topics(kafka_env, TOPIC)
    assert "sent 8 messages" in lakehouse("produce", "cms", "--file", str(SAMPLE)).stdout
    assert "sent 2000 messages" in lakehouse("produce", "cms", "--synthetic", "--count", "2000").stdout
    lakehouse("drain", "cms")

    glob = str(lake_home / "raw" / TOPIC / "**" / "*.parquet")
    stored = duckdb.sql(
        f"select npi, nppes_provider_zip, hcpcs_description, average_Medicare_payment_amt, _key "
        f"from read_parquet('{glob}', union_by_name = true) order by _partition, _offset"
    ).fetchall()
    assert len(stored) == 2008
    with open(SAMPLE, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    expected = sorted((r[0], r[10], r[17], r[24], r[0]) for r in rows)
    assert sorted(row for row in stored if row[0] in {r[0] for r in rows}) == expected
