"""`lakehouse demo --once`: from an empty lake, its own Kafka and Dagster, to the printed marts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import lake_tables
from tests.conftest import free_port_pair

pytestmark = pytest.mark.integration


def test_the_demo_starts_everything_builds_every_mart_prints_them_and_stops_everything(tmp_path):
    kafka_port = free_port_pair()
    ui_port = free_port_pair()
    env = {
        **os.environ,
        "LAKEHOUSE_HOME": str(tmp_path),
        "LAKEHOUSE_KAFKA_PORT": str(kafka_port),
        "LAKEHOUSE_SENSOR_INTERVAL_S": "5",
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH"):
        env.pop(name, None)
    lakehouse = str(Path(sys.executable).with_name("lakehouse"))
    result = subprocess.run(
        [lakehouse, "demo", "--once", "--port", str(ui_port)], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Sent 5000 prices" in out
    assert "Sent 20000 synthetic CMS provider-services rows" in out
    for mart in ("prices_symbol_stats", "prices_outliers", "cms_procedure_reach", "cms_procedure_cost_variation",
                 "cms_cost_by_region", "cms_treatment_level", "office_revenue_10min", "stedi_customer_risk",
                 "stedi_risk_by_birth_year", "carepay_claim_stats_by_status",
                 "carepay_invoice_totals_by_claim_status", "carepay_rejected_rows"):  # fmt: skip
        assert re.search(rf"^  {mart} +[1-9][0-9]* rows$", out, re.MULTILINE), mart
    for symbol in ("AAPL", "MSFT", "GOOG", "AMZN", "TSLA"):
        assert symbol in out
    assert f"http://127.0.0.1:{ui_port}" in out
    assert not (tmp_path / "kafka" / "broker.pid").exists()  # the demo stopped the broker it started
    assert lake_tables.read_table(tmp_path, "raw", "prices", ("_kafka_offset",)).num_rows
