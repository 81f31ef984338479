"""The ledger and recovery: a batch is in the lake once it is committed, and never twice."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ingestion import lake
from ingestion.config import settings


def batch(start: int, end: int, files: tuple[str, ...] = ()) -> lake.Batch:
    return lake.Batch("prices", 0, start, end, end - start, 0, 0, files, 0, 0.1)


def test_the_ledger_records_progress_per_partition(lake_home):
    with lake.Ledger(settings().ledger_path) as ledger:
        ledger.commit(batch(0, 10))
        ledger.commit(batch(10, 25))
        assert ledger.progress("prices") == {0: 25}
        assert ledger.progress("other") == {}


@pytest.mark.parametrize(("start", "end"), [(5, 30), (26, 30)])
def test_the_ledger_refuses_a_batch_that_overlaps_or_leaves_a_hole(lake_home, start, end):
    with lake.Ledger(settings().ledger_path) as ledger:
        ledger.commit(batch(0, 25))
        with pytest.raises(lake.LedgerConflict):
            ledger.commit(batch(start, end))
        assert ledger.progress("prices") == {0: 25}


def test_recovery_publishes_committed_files_and_deletes_uncommitted_ones(lake_home):
    s = settings()
    table = pa.table({"x": [1, 2]})
    committed = s.raw_dir / "prices" / "date=2021-03-10" / lake.data_file_name(0, 0, 2)
    orphan = s.raw_dir / "prices" / "date=2021-03-10" / lake.data_file_name(0, 2, 9)
    lake.write_pending(table, committed)
    lake.write_pending(table, orphan)
    with lake.Ledger(s.ledger_path) as ledger:
        ledger.commit(batch(0, 2, files=(str(committed.relative_to(s.home)),)))
        assert not committed.exists()  # committed, not yet visible: the crash came before publishing
        assert lake.recover(s, ledger, "prices") == (1, 1)
    assert committed.exists()
    assert not orphan.exists()
    assert not list((s.raw_dir / "prices").rglob("*" + lake.PENDING))


def test_a_second_drain_of_the_same_topic_waits_for_the_lock_or_refuses(lake_home):
    s = settings()
    with lake.topic_lock(s, "prices"), pytest.raises(lake.TopicBusy), lake.topic_lock(s, "prices", wait_s=0.3):
        pass
    with lake.topic_lock(s, "prices", wait_s=0.3):
        pass  # released by the first holder
