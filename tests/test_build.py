"""`lakehouse build` runs the stream's Dagster job in its own process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from ingestion.config import REPO_ROOT

# A process started with Ctrl-C ignored, as a CI job or `nohup` starts one, runs a Dagster job in
# process as the build does, then asks itself to stop with SIGTERM, as `kill` would.
RUN_A_JOB_THEN_SIGTERM = textwrap.dedent(
    """
    import os, signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a shell gives it, whatever runs this test
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    import dagster as dg
    from orchestration.commands.build import sigterm_kept

    @dg.asset
    def one() -> int:
        return 1

    with sigterm_kept():
        assert dg.materialize([one]).success
    os.kill(os.getpid(), signal.SIGTERM)
    print("still running after SIGTERM")
    """
)


def test_a_build_started_with_ctrl_c_ignored_still_stops_on_sigterm():
    done = subprocess.run(
        [sys.executable, "-c", RUN_A_JOB_THEN_SIGTERM],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == -signal.SIGTERM, done.stdout + done.stderr[-2000:]
