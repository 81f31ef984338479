"""Runs forked from a warm worker, not started as a new interpreter.

Dagster's default launcher has the code server spawn a fresh Python for every run, which imports
Dagster, loads the definitions and imports Great Expectations again: 9 s of a 22 s prices run on
the slower machine, every sensor tick, for every stream. `WarmRunLauncher` keeps one worker
(`python -m orchestration.run_worker`) that did all of that once and forks a child per run; the
child runs the run exactly as `dagster api execute_run` would, against the same instance, so the
run, its logs and its events are in the UI as before.

The worker never stands in the way of a run: while it starts, when it is gone, or when the
project's code changed since it loaded (it would run the old code), the run is launched the
default way, and a new worker is started for the next one.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dagster._core.launcher.base import LaunchRunContext
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher

from ingestion.config import REPO_ROOT

WORKER_PID_TAG = "lakehouse/worker_pid"
READY, STALE = "ready", "stale"
# What the definitions are made of: a change to any of these files makes a loaded worker stale.
# The whole dbt project counts (its tests are asset checks, dbt_project.yml configures the models).
CODE_FOLDERS = ("orchestration", "ingestion", "expectations", "dbt_project")
CODE_SUFFIXES = (".py", ".yml", ".yaml", ".sql", ".json")
REPLY_TIMEOUT_S = 10.0


def code_fingerprint() -> tuple:
    """The size and modification time of every file the definitions are made of."""
    from orchestration.generated import NOT_CODE

    folders = [REPO_ROOT / folder for folder in CODE_FOLDERS]
    streams = os.environ.get("LAKEHOUSE_STREAMS_DIR")
    if streams:
        folders.append(Path(streams).expanduser())
    skip = {"__pycache__", *NOT_CODE}
    return tuple(
        (str(path), stat.st_mtime_ns, stat.st_size)
        for folder in folders
        for path, stat in _files(folder, skip)
        if path.suffix in CODE_SUFFIXES
    )


def _files(folder: Path, skip: set[str]) -> Iterator[tuple[Path, os.stat_result]]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(names):
            path = Path(root) / name
            try:
                yield path, path.stat()
            except OSError:  # removed while we looked
                continue


class WarmRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher, but a run is a fork of a worker that loaded everything once."""

    def __init__(self, inst_data: Any = None) -> None:
        super().__init__(inst_data=inst_data)
        self._lock = threading.Lock()
        self._worker: subprocess.Popen | None = None
        self._ready = False

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        with self._lock:
            pid = self._fork(run.run_id)
        if pid is None:
            super().launch_run(context)
            return
        self._instance.add_run_tags(run.run_id, {WORKER_PID_TAG: str(pid)})
        self._run_ids.add(run.run_id)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or WORKER_PID_TAG not in run.tags:
            return super().terminate(run_id)
        self._instance.report_run_canceling(run)
        try:
            os.kill(int(run.tags[WORKER_PID_TAG]), signal.SIGINT)  # the run stops as on Ctrl-C
        except ProcessLookupError:
            return False
        return True

    def dispose(self) -> None:
        with self._lock:
            self._stop_worker()
        super().dispose()

    def _fork(self, run_id: str) -> int | None:
        """The pid of the child running the run, or None when the worker cannot take it now."""
        worker = self._worker
        if worker is None or worker.poll() is not None:
            self._start_worker()
            return None
        if not self._ready:
            line = _read_line(worker.stdout, timeout=0)
            if line is None:
                return None  # still loading: this run goes the default way
            if line != READY:
                self._stop_worker()
                return None
            self._ready = True
        try:
            worker.stdin.write(run_id + "\n")
            worker.stdin.flush()
        except (BrokenPipeError, OSError):
            self._start_worker()
            return None
        reply = _read_line(worker.stdout, timeout=REPLY_TIMEOUT_S)
        if reply is None or not reply.isdigit():
            # STALE: the code changed since the worker loaded it. Anything else: it failed.
            self._start_worker()
            return None
        return int(reply)

    def _start_worker(self) -> None:
        self._stop_worker()
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "orchestration.run_worker"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _stop_worker(self) -> None:
        if self._worker is not None and self._worker.poll() is None:
            self._worker.stdin.close()  # the worker leaves at the end of its input; its runs go on
            try:
                self._worker.wait(5)
            except subprocess.TimeoutExpired:
                self._worker.kill()
                self._worker.wait()
        self._worker, self._ready = None, False


def _read_line(stream: IO[str] | None, timeout: float) -> str | None:
    if stream is None or not select.select([stream], [], [], timeout)[0]:
        return None
    line = stream.readline()
    return line.strip() if line else "eof"


def _load() -> None:
    """Import and build once what every run needs, so that each fork finds it done."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    ReconstructableRepository.for_module("orchestration.definitions", "defs", str(REPO_ROOT)).get_definition()
    import dagster._cli.api  # noqa: F401 - what a child runs the run with
    import great_expectations  # noqa: F401 - the quality gates' 5 s import


def _run(run_id: str) -> None:
    """In the forked child: execute the run as `dagster api execute_run` does."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import DagsterInstance
    from dagster._utils.interrupts import capture_interrupts

    with capture_interrupts(), DagsterInstance.get() as instance:
        _execute_run_command_body(run_id, instance, lambda event: None, set_exit_code_on_failure=False)


def _serve(requests: IO[str], replies: IO[str]) -> None:
    loaded = code_fingerprint()
    _load()
    replies.write(READY + "\n")
    replies.flush()
    while True:
        ready = select.select([requests], [], [], 1.0)[0]
        _reap()
        if not ready:
            continue
        run_id = requests.readline().strip()
        if not run_id:
            return  # the launcher is gone or let us go
        if code_fingerprint() != loaded:
            replies.write(STALE + "\n")
            replies.flush()
            return
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                requests.close()
                replies.close()
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                _run(run_id)
                code = 0
            except BaseException:  # the run's own failures are in its event log; this is the rest
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        replies.write(f"{pid}\n")
        replies.flush()


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def main() -> None:
    # Replies go on a descriptor of their own: what a run prints goes where the launcher's output goes.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    # `lakehouse ui` stopped with Ctrl-C: the whole process group got it, this worker too.
    with contextlib.suppress(KeyboardInterrupt):
        _serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
