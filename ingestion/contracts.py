"""What a stream's records must look like (one contract type for every stream), and what it sends on.

A contract is data, not code: the topic, the Arrow schema of the declared fields, the
fields a record cannot do without, and the field whose date places a record in the lake.
The drain applies any contract the same way, so adding a stream never touches the drain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from ingestion.declared import Declaration


@dataclass(frozen=True)
class Contract:
    stream: str
    topic: str
    schema: pa.Schema
    required: tuple[str, ...] = ()
    # The field whose date names the lake's hive partition; records without one (tombstones,
    # streams whose records carry no time) fall back to the Kafka record timestamp.
    event_time: str | None = None
    description: str = ""
    partitions: int = 1
    # Names of the expectation suites (in expectations/<stream>/) that gate the raw table.
    suites: tuple[str, ...] = field(default=())
    # Kafka headers kept as text columns `_header_<name>`: facts the producer knows about a
    # record that its value does not carry (a CMS row's data year comes from the file's name).
    headers: tuple[str, ...] = ()
    # Field name -> the spellings (matched case-insensitively) it arrives under, for streams
    # whose source files name the same field differently from release to release.
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    # Keep each record's JSON as text (`_value`) instead of parsing it into fields: for topics
    # where record shapes and field-name case vary (a Redis change feed), which staging decodes.
    raw_json: bool = False
    # A stream declared in a YAML file (`ingestion/declared.py`): what its suite and staging model are made from.
    declared: Declaration | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        missing = [name for name in self.required if name not in self.schema.names]
        if missing:
            raise ValueError(f"{self.topic}: required fields {missing} are not in the schema")
        if self.event_time and self.event_time not in self.schema.names:
            raise ValueError(f"{self.topic}: event_time {self.event_time!r} is not in the schema")

    @staticmethod
    def header_column(name: str) -> str:
        return f"_header_{name}"

    @property
    def table_name(self) -> str:
        """The topic as a SQL-friendly name: `cms.provider_services` -> `cms_provider_services`."""
        return table_name(self.topic)


def table_name(topic: str) -> str:
    """A topic as a SQL-friendly name: `cms.provider_services` -> `cms_provider_services`."""
    return topic.replace(".", "_").replace("-", "_")


@dataclass(frozen=True)
class Export:
    """What a stream sends on once its marts are built: a mart's new or changed rows to a topic,
    once each. `lakehouse build` and the Dagster asset `exports/<name>` both run `publish`."""

    stream: str
    name: str
    mart: str  # the mart it follows
    topic: str
    publish: Callable[[Path], int]  # the warehouse's path -> how many messages it sent
    description: str
