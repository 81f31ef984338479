"""Named points where a test can crash the drain, to prove recovery from a crash there.

`LAKEHOUSE_FAILPOINT=<name>[@<n>][:raise]` acts the n-th time (default: the first) the process
reaches <name>: it kills the process with SIGKILL, or with `:raise` raises `InjectedFault` (to
fail a Dagster run inside a test process). Unset, a failpoint costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

# The points of a batch's life, in order.
# "between-commits" falls after the quarantine table's commit and before the raw table's.
POINTS = ("before-write", "while-writing", "after-files", "between-commits", "after-commit")
# The points of a compaction's swap.
COMPACT_POINTS = ("compact-after-files", "compact-after-commit")
# The points of a quarantine replay's swap of one quarantine file, in order.
REPLAY_POINTS = (
    "replay-while-writing",
    "replay-after-files",
    "replay-after-commit",
    "replay-after-retire",
    "replay-after-publish",
)

_reached: Counter[str] = Counter()


class InjectedFault(RuntimeError):
    pass


def failpoint(name: str) -> None:
    spec = os.environ.get("LAKEHOUSE_FAILPOINT")
    if not spec:
        return
    target, _, mode = spec.partition(":")
    point, _, nth = target.partition("@")
    if point != name:
        return
    _reached[spec] += 1
    if _reached[spec] < int(nth or 1):
        return
    if mode == "raise":
        raise InjectedFault(f"injected fault at {name}")
    os.kill(os.getpid(), signal.SIGKILL)
