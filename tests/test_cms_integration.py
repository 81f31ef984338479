"""CMS rows replayed from a real file and from the synthetic stream land in the lake as sent."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests import lake_tables
from tests.cli import lakehouse
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parent / "data" / "cms_puf_legacy_sample.tsv"
TOPIC = "cms.provider_services"


def test_a_real_file_and_the_synthetic_stream_are_drained_row_for_row(kafka_env, lake_home):
    recreate_topics(kafka_env, TOPIC)
    assert "sent 8 messages" in lakehouse("produce", "cms", "--file", str(SAMPLE), timeout=300)
    assert "sent 2000 messages" in lakehouse("produce", "cms", "--synthetic", "--count", "2000", timeout=300)
    lakehouse("drain", "cms", timeout=300)

    columns = ("npi", "nppes_provider_zip", "hcpcs_description", "average_Medicare_payment_amt", "_kafka_key")
    held = lake_tables.read_table(lake_home, "raw", TOPIC, (*columns, "_kafka_partition", "_kafka_offset"))
    held = held.sort_by([("_kafka_partition", "ascending"), ("_kafka_offset", "ascending")])
    stored = list(zip(*(held[c].to_pylist() for c in columns), strict=True))
    assert len(stored) == 2008
    with open(SAMPLE, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    expected = sorted((r[0], r[10], r[17], r[24], r[0]) for r in rows)
    assert sorted(row for row in stored if row[0] in {r[0] for r in rows}) == expected
