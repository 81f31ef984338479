"""The streams: the five built-in ones, each declared in `<stream>.yml` here with its extension
(`<stream>.py`: its producers), and those declared the same way in `LAKEHOUSE_STREAMS_DIR`
(`ingestion/declared.py`). `CONTRACTS` is the registry every command reads."""

from __future__ import annotations

import functools
from pathlib import Path

from ingestion.config import settings
from ingestion.contracts import Contract, Export
from ingestion.declared import InvalidDeclaration, load_folder
from ingestion.streams import stedi

BUILT_IN_DIR = Path(__file__).resolve().parent


@functools.cache
def built_in() -> tuple[Contract, ...]:
    """The built-in streams' contracts, from their declarations beside this module."""
    return tuple(load_folder(BUILT_IN_DIR))


def _declared() -> tuple[Contract, ...]:
    folder = settings().streams_dir
    if folder is None:
        return ()
    contracts = tuple(load_folder(folder))
    built_in_names = {c.stream for c in built_in()} | {c.topic for c in built_in()}
    for contract in contracts:
        if contract.stream in built_in_names or contract.topic in built_in_names:
            raise InvalidDeclaration(
                f"{contract.declared.path if contract.declared else folder}: {contract.stream!r} "
                f"({contract.topic}) is a built-in stream or topic already"
            )
    return contracts


# What streams send on after their marts are built, by stream.
EXPORTS: dict[str, Export] = {export.stream: export for export in (stedi.EXPORT,)}


@functools.cache
def _registry() -> tuple[dict[str, Contract], dict[str, tuple[Contract, ...]]]:
    contracts: dict[str, Contract] = {}
    for contract in (*built_in(), *_declared()):
        same_table = [c.topic for c in contracts.values() if c.table_name == contract.table_name]
        if same_table:
            raise InvalidDeclaration(
                f"topics {same_table[0]!r} and {contract.topic!r} would share the table {contract.table_name}"
            )
        contracts[contract.topic] = contract
    streams: dict[str, tuple[Contract, ...]] = {}
    for contract in contracts.values():
        streams[contract.stream] = (*streams.get(contract.stream, ()), contract)
    return contracts, streams


def __getattr__(name: str):
    # `CONTRACTS` (by topic) and `STREAMS` (by stream) are read on first use, not at import: a
    # declaration that cannot be read is then an error the command line reports, not a traceback.
    if name == "CONTRACTS":
        return _registry()[0]
    if name == "STREAMS":
        return _registry()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class UnknownStream(ValueError):
    pass


def contract(topic: str) -> Contract:
    """The contract of one topic; for the streams' own modules, which name their topics."""
    return _registry()[0][topic]


def contracts_for(name: str) -> tuple[Contract, ...]:
    """The contracts of a stream (`prices`) or of a single topic (`prices`, `cms.provider_services`)."""
    contracts, streams = _registry()
    if name in streams:
        return streams[name]
    if name in contracts:
        return (contracts[name],)
    known = ", ".join(sorted(set(streams) | set(contracts)))
    raise UnknownStream(f"unknown stream or topic {name!r}; known: {known}")
