"""Kafka records of one topic partition, column by column, as the drain reads and parses them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Headers = list[tuple[str, bytes | None]]

# One row per header: the position of its record in the batch, its key and its value.
HEADERS_SCHEMA = pa.schema([("record", pa.int32()), ("key", pa.binary()), ("value", pa.binary())])


def _no_headers() -> pa.Table:
    return HEADERS_SCHEMA.empty_table()


@dataclass
class RawBatch:
    """Records of one topic partition in offset order; no Python object per record."""

    topic: str
    partition: int
    offsets: pa.Int64Array
    timestamps: pa.Int64Array  # Kafka record timestamps, ms since the epoch
    keys: pa.BinaryArray
    values: pa.BinaryArray  # null for a tombstone
    headers: pa.Table = field(default_factory=_no_headers)  # HEADERS_SCHEMA

    def __len__(self) -> int:
        return len(self.values)

    @property
    def value_bytes(self) -> int:
        return pc.sum(pc.binary_length(self.values)).as_py() or 0

    def header_values(self, key: str) -> pa.BinaryArray:
        """Each record's value of the header `key` (the last, if sent twice); null where it has none."""
        found = self.headers.filter(pc.equal(self.headers["key"], key.encode()))
        records = found["record"].to_numpy()
        # Header rows come in record order: keep each record's last one.
        last = np.flatnonzero(np.append(records[1:] != records[:-1], True)) if len(records) else records
        slot = np.full(len(self), -1, dtype=np.int64)
        slot[records[last]] = last
        return found["value"].combine_chunks().take(pa.array(slot, mask=slot < 0))

    def headers_of(self, positions: Sequence[int]) -> dict[int, Headers]:
        """The headers of a few records (those set aside), as Python values."""
        rows = self.headers.filter(pc.is_in(self.headers["record"], pa.array(positions, pa.int32())))
        found: dict[int, Headers] = {}
        for row in rows.to_pylist():
            found.setdefault(row["record"], []).append((row["key"].decode("utf-8", "replace"), row["value"]))
        return found

    def head(self, count: int) -> RawBatch:
        """The first `count` records."""
        return RawBatch(
            self.topic,
            self.partition,
            self.offsets.slice(0, count),
            self.timestamps.slice(0, count),
            self.keys.slice(0, count),
            self.values.slice(0, count),
            self.headers.filter(pc.less(self.headers["record"], count)),
        )

    @classmethod
    def concat(cls, batches: Sequence[RawBatch]) -> RawBatch:
        """One batch of consecutive batches of the same partition."""
        if len(batches) == 1:
            return batches[0]
        headers, base = [], 0
        for batch in batches:
            if batch.headers.num_rows:
                moved = pc.add(batch.headers["record"], pa.scalar(base, pa.int32()))
                headers.append(batch.headers.set_column(0, "record", moved))
            base += len(batch)
        return cls(
            batches[0].topic,
            batches[0].partition,
            pa.concat_arrays([b.offsets for b in batches]),
            pa.concat_arrays([b.timestamps for b in batches]),
            pa.concat_arrays([b.keys for b in batches]),
            pa.concat_arrays([b.values for b in batches]),
            pa.concat_tables(headers) if headers else _no_headers(),
        )

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None = None,
        timestamps: Sequence[int] | None = None,
        headers: Mapping[int, Headers] | None = None,
    ) -> RawBatch:
        """A batch from plain Python values (tests, replays); `headers` by position in the batch."""
        rows = [(i, k.encode(), v) for i, pairs in sorted((headers or {}).items()) for k, v in pairs]
        columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[], [], []]
        return cls(
            topic=topic,
            partition=partition,
            offsets=pa.array(offsets, pa.int64()),
            timestamps=pa.array(timestamps if timestamps is not None else [0] * len(values), pa.int64()),
            keys=pa.array(keys if keys is not None else [None] * len(values), pa.binary()),
            values=pa.array(values, pa.binary()),
            headers=pa.Table.from_arrays(
                [pa.array(c, t) for c, t in zip(columns, HEADERS_SCHEMA.types, strict=True)], schema=HEADERS_SCHEMA
            ),
        )
