"""The `lakehouse` command as a user runs it: a child process with the test's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))


def run(*args: str, env: Mapping[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`lakehouse ARGS`, with this process's environment unless `env` is given; the caller judges the result."""
    return subprocess.run(
        [LAKEHOUSE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ if env is None else env),
    )


def lakehouse(*args: str, timeout: float = 600) -> str:
    """What `lakehouse ARGS` prints; a non-zero exit fails the test, showing all it printed."""
    result = run(*args, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
