"""`lakehouse ui`: Dagster's webserver and daemon under the lake home, showing every stream's assets
to a person in a browser, and stopped cleanly by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium, dump_dom, screenshot
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


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, subprocess.Popen]]:
    home = tmp_path_factory.mktemp("ui")
    port = free_port_pair()
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    for name in ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH"):
        env.pop(name, None)
    lakehouse = str(Path(sys.executable).with_name("lakehouse"))
    proc = subprocess.Popen(
        [lakehouse, "ui", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/server_info", timeout_s=180), "the webserver never answered"
        yield port, home, proc
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_ui_serves_dagster_with_its_home_under_the_lake(ui):
    _, home, _ = ui
    assert (home / "dagster" / "dagster.yaml").exists()


def test_a_person_opening_the_ui_finds_the_assets_of_every_stream(ui, tmp_path):
    browser = chromium()
    port, _, _ = ui
    page = dump_dom(browser, f"http://127.0.0.1:{port}/assets?view=flat")
    for asset in ("prices_symbol_stats", "cms_procedure_reach", "office_revenue_10min", "carepay_claim_stats_by_status",
                  "stedi_customer_risk", "stedi_score_agg"):  # fmt: skip
        assert asset in page, asset
    lineage = dump_dom(browser, f"http://127.0.0.1:{port}/asset-groups")
    for group in ("prices", "cms", "office", "carepay", "stedi"):
        assert f">{group}<" in lineage, group
    shot = screenshot(browser, f"http://127.0.0.1:{port}/asset-groups", tmp_path / "dagster-asset-groups.png")
    assert shot.stat().st_size > 10_000


def test_runs_fork_from_the_warm_worker_once_it_is_up_and_land_in_the_uis_instance(ui):
    from dagster_graphql import DagsterGraphQLClient

    from orchestration.run_worker import WORKER_PID_TAG

    port, home, _ = ui
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    # The first run starts the worker and goes the default way; once the worker has loaded the
    # definitions (seconds), a run is a fork of it.
    deadline = time.monotonic() + 240
    while True:
        run_id = client.submit_job_execution("compact_lake")
        status = _finished(home, run_id, timeout_s=180)
        assert status == "SUCCESS", status
        if WORKER_PID_TAG in _run(home, run_id).tags:
            break
        assert time.monotonic() < deadline, "no run was ever forked from the warm worker"
        time.sleep(5)


def _run(home: Path, run_id: str):
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        return instance.get_run_by_id(run_id)


def _finished(home: Path, run_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = _run(home, run_id)
        if run is not None and run.is_finished:
            return run.status.value
        time.sleep(1)
    return "not finished"


def _processes_of_home(home: Path) -> list[int]:
    """The processes whose environment names this lake home: the UI's children, whatever they
    run, and none of another test's (the suite runs tests side by side)."""
    mine = f"LAKEHOUSE_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mine in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


def test_sigterm_stops_the_ui_and_everything_it_started(ui):
    port, home, proc = ui
    assert len(_processes_of_home(home)) > 1  # the webserver, the daemon, the code server...
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert not wait_for_http(f"http://127.0.0.1:{port}/server_info", timeout_s=2)
    leftovers = subprocess.run(["pgrep", "-f", f"dagster.*{port}"], capture_output=True, text=True).stdout.split()
    assert leftovers == []
    assert _processes_of_home(home) == []  # the warm run worker too
