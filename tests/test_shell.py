"""`lakehouse shell`: analysts query the latest good build while the pipeline goes on building."""

from __future__ import annotations

import pytest

from ingestion import duck
from ingestion.config import settings
from orchestration.snapshots import latest_snapshot
from tests.cli import lakehouse, run
from tests.conftest import recreate_topics

pytestmark = pytest.mark.integration


def add_prices(count: int) -> None:
    lakehouse("produce", "prices", "--count", str(count))
    lakehouse("drain", "prices")
    lakehouse("build", "prices")


def test_an_open_shell_and_the_builds_never_get_in_each_others_way(kafka_env, lake_home):
    recreate_topics(kafka_env, "prices")
    result = run("shell", "-c", "select 1")
    assert result.returncode != 0 and "nothing is built yet" in result.stderr
    add_prices(200)

    # An analyst's session stays open on the latest build (read-only, as the shell opens it).
    session = duck.connect(str(latest_snapshot(settings())), read_only=True)
    count = "select sum(tick_count) from prices_symbol_stats"
    assert session.execute(count).fetchone()[0] == 200

    add_prices(100)  # a build while the session is open: not blocked
    add_prices(50)  # and another, after which the session's snapshot is gone from the folder
    assert session.execute(count).fetchone()[0] == 200  # the session still works, on a consistent state
    # Its staging views too: they read the lake, but only what that build's gates had passed.
    assert session.execute("select count(*) from stg_prices__ticks").fetchone()[0] == 200
    session.close()

    out = lakehouse("shell", "-c", count)
    assert "350" in out
    raw = lakehouse("shell", "-c", "select count(*) as n from raw_prices")
    assert "350" in raw
