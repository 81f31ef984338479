"""Dagster's home under LAKEHOUSE_HOME, and `dagster dev` as a child process that stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ingestion.config import REPO_ROOT, Settings, export_for_subprocesses

# One pool, size 1, for every writer of the DuckDB warehouse (DuckDB allows one writing process).
# Runs fork from a warm worker (orchestration/run_worker.py), and a queued run waits at most a
# second for the daemon to launch it, not Dagster's default five: both are seconds of freshness.
DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
run_queue:
  dequeue_interval_seconds: 1
run_launcher:
  module: orchestration.run_worker
  class: WarmRunLauncher
"""


def prepare_instance(s: Settings) -> Path:
    """Write the instance settings into DAGSTER_HOME (under the lake home) and return that folder."""
    export_for_subprocesses(s)
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() != DAGSTER_YAML:
        config.write_text(DAGSTER_YAML)
    return home


def dev_command(host: str, port: int, only: str | None = None, code_server: str | None = None) -> list[str]:
    """`dagster dev` (webserver and daemon), or just one of them, or the code location's gRPC
    server, for a container of its own; `code_server` (host:port) is where the webserver and
    daemon then find the code."""
    scripts = Path(sys.executable).parent
    location = ["-m", "orchestration.definitions"]
    if code_server:
        code_host, _, code_port = code_server.rpartition(":")
        location = ["--grpc-host", code_host, "--grpc-port", code_port]
    if only == "code-server":
        return [
            str(scripts / "dagster"),
            "code-server",
            "start",
            "-m",
            "orchestration.definitions",
            "-h",
            host,
            "-p",
            str(port),
        ]
    if only == "webserver":
        return [str(scripts / "dagster-webserver"), *location, "-h", host, "-p", str(port)]
    if only == "daemon":
        return [str(scripts / "dagster-daemon"), "run", *location]
    # Without `env --default-signal`, `dagster dev` started from a non-interactive parent ignores SIGTERM.
    return ["env", "--default-signal=INT,TERM", str(scripts / "dagster"), "dev", *location, "-h", host, "-p", str(port)]


def _create_storage(home: Path) -> None:
    """Create the instance's SQLite databases here, once. `dagster dev` starts the webserver, the
    daemon and the code server at the same moment; on a fresh home each created them, and the one
    that lost the race failed with "Version table 'alembic_version' has more than one head present",
    leaving the demo waiting for runs that never came."""
    import dagster as dg

    dg.DagsterInstance.from_config(str(home)).dispose()  # its storages are created as it is made


def start_dev(
    s: Settings,
    host: str = "127.0.0.1",
    port: int = 3000,
    log_to: Path | None = None,
    only: str | None = None,
    code_server: str | None = None,
) -> subprocess.Popen:
    _create_storage(prepare_instance(s))
    out = open(log_to, "ab") if log_to else None  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(
        dev_command(host, port, only, code_server),
        cwd=REPO_ROOT,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches us once; we pass it on
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_sigterm() -> None:
    """Treat SIGTERM as Ctrl-C, so one `finally` stops the children either way.

    Stopping the children inside the handler would deadlock: the main thread is in
    `Popen.wait()`, holding the lock a second wait needs.
    """
    signal.signal(signal.SIGTERM, _interrupt)


def stop_dev(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGINT (what Ctrl-C sends), then SIGKILL to the whole group after the timeout."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
