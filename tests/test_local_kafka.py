"""`lakehouse kafka`: a real Apache Kafka broker the project starts, reports on and stops by itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ingestion.local_kafka import server_properties
from tests.cli import LAKEHOUSE, run
from tests.conftest import free_port_pair


def test_the_broker_is_one_kraft_node_listening_on_loopback_only():
    props = dict(line.split("=", 1) for line in server_properties(19092, Path("/lake/kafka/data")).splitlines() if line)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["log.dirs"] == "/lake/kafka/data"
    assert props["offsets.topic.replication.factor"] == "1"


@pytest.mark.integration
def test_start_status_and_stop_manage_a_real_broker_under_the_lake_home(tmp_path):
    port = free_port_pair()
    env = {**os.environ, "LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_KAFKA_PORT": str(port)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    try:
        started = run("kafka", "start", env=env, timeout=180)
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout.splitlines()[-1]
        assert (tmp_path / "kafka" / "data" / "meta.properties").exists()

        again = run("kafka", "start", env=env, timeout=180)  # idempotent: the running broker is reused
        assert again.returncode == 0 and "is running" in again.stdout

        status = run("kafka", "status", env=env, timeout=180)
        assert status.returncode == 0 and "is running" in status.stdout
    finally:
        stopped = run("kafka", "stop", env=env, timeout=180)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    status = run("kafka", "status", env=env, timeout=180)
    assert status.returncode == 1 and "not running" in status.stdout


def test_a_missing_java_is_one_line_saying_what_to_install(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {"PATH": str(bare), "LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_KAFKA_PORT": str(free_port_pair())}
    result = run("kafka", "start", env=env, timeout=180)
    assert result.returncode == 1
    assert "`java` is not installed: install a Java 17+ runtime" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_external_cluster_is_used_as_is_and_nothing_is_started(tmp_path):
    env = {**os.environ, "LAKEHOUSE_HOME": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "broker.example:9093"}
    result = run("kafka", "start", env=env, timeout=180)
    assert result.returncode == 0
    assert "using broker.example:9093" in result.stdout
    assert not (tmp_path / "kafka").exists()


@pytest.mark.integration
def test_a_broker_started_by_a_process_that_ignores_sigterm_still_stops_on_it(tmp_path):
    """A process whose parent ignores SIGINT (nohup, a background job of a script) and that ran
    Dagster in process has SIGTERM ignored (Dagster maps SIGTERM to SIGINT's handler); a broker
    it starts must not inherit that, or `stop` can only kill it, 30 s later."""
    from ingestion.local_kafka import sigterm_disposition

    port = free_port_pair()
    env = {**os.environ, "LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_KAFKA_PORT": str(port)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    ignoring = subprocess.run(
        ["bash", "-c", f'trap "" TERM; exec "{LAKEHOUSE}" kafka start'],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert ignoring.returncode == 0, ignoring.stderr
        pid = int((tmp_path / "kafka" / "broker.pid").read_text())
        assert sigterm_disposition(pid) == "handled"
    finally:
        stopped = run("kafka", "stop", env=env, timeout=180)
    assert stopped.returncode == 0 and "did not stop" not in stopped.stderr
