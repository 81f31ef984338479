"""Kafka records of one topic partition, column by column, as the drain reads and parses them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

Headers = list[tuple[str, bytes | None]]


@dataclass
class RawBatch:
    """Records of one topic partition in offset order; no Python object per record.

    Headers are kept only for the records that carry any, by position in the batch.
    """

    topic: str
    partition: int
    offsets: pa.Int64Array
    timestamps: pa.Int64Array  # Kafka record timestamps, ms since the epoch
    keys: pa.BinaryArray
    values: pa.BinaryArray  # null for a tombstone
    headers: dict[int, Headers] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def value_bytes(self) -> int:
        return pc.sum(pc.binary_length(self.values)).as_py() or 0

    def head(self, count: int) -> RawBatch:
        """The first `count` records."""
        return RawBatch(
            self.topic,
            self.partition,
            self.offsets.slice(0, count),
            self.timestamps.slice(0, count),
            self.keys.slice(0, count),
            self.values.slice(0, count),
            {i: h for i, h in self.headers.items() if i < count},
        )

    @classmethod
    def concat(cls, batches: Sequence[RawBatch]) -> RawBatch:
        """One batch of consecutive batches of the same partition."""
        if len(batches) == 1:
            return batches[0]
        headers: dict[int, Headers] = {}
        base = 0
        for batch in batches:
            headers.update({base + i: h for i, h in batch.headers.items()})
            base += len(batch)
        return cls(
            batches[0].topic,
            batches[0].partition,
            pa.concat_arrays([b.offsets for b in batches]),
            pa.concat_arrays([b.timestamps for b in batches]),
            pa.concat_arrays([b.keys for b in batches]),
            pa.concat_arrays([b.values for b in batches]),
            headers,
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
        headers: dict[int, Headers] | None = None,
    ) -> RawBatch:
        """A batch from plain Python values (tests, replays)."""
        return cls(
            topic=topic,
            partition=partition,
            offsets=pa.array(offsets, pa.int64()),
            timestamps=pa.array(timestamps if timestamps is not None else [0] * len(values), pa.int64()),
            keys=pa.array(keys if keys is not None else [None] * len(values), pa.binary()),
            values=pa.array(values, pa.binary()),
            headers=dict(headers or {}),
        )
