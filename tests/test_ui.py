"""`lakehouse ui`: Dagster's webserver and daemon under the lake home, stopped cleanly by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port_pair

pytestmark = pytest.mark.integration


def wait_for_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(1)
    return False


def test_the_ui_serves_dagster_with_its_home_under_the_lake_and_stops_on_sigterm(tmp_path):
    port = free_port_pair()
    env = {**os.environ, "LAKEHOUSE_HOME": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    for name in ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH"):
        env.pop(name, None)
    lakehouse = str(Path(sys.executable).with_name("lakehouse"))
    proc = subprocess.Popen(
        [lakehouse, "ui", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/server_info", timeout_s=180), "the webserver never answered"
        assert (tmp_path / "dagster" / "dagster.yaml").exists()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not wait_for_http(f"http://127.0.0.1:{port}/server_info", timeout_s=2)
    leftovers = subprocess.run(["pgrep", "-f", f"dagster.*{port}"], capture_output=True, text=True).stdout.split()
    assert leftovers == []
